//! The `tessera-lb` binary: read the configuration, start, stop on SIGTERM or SIGINT.

use std::path::PathBuf;

use clap::Parser;
use tessera_lb::{telemetry, Config, LoadBalancer};

#[derive(Parser)]
#[command(name = "tessera-lb", version, about = "Routes each Tessera tenant's requests to a healthy node of its cluster")]
struct Args {
    /// A TOML configuration file; `TESSERA_LB_*` variables override it.
    #[arg(long, env = "TESSERA_LB_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tessera-lb: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(&config.log);
    let lb = match LoadBalancer::start(config).await {
        Ok(lb) => lb,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    stop_signal().await;
    tracing::info!("stop signal: finishing in-flight requests");
    lb.stop().await;
    std::process::ExitCode::SUCCESS
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
