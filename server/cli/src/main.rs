//! The `tessera` binary: reads the command line (`args`), runs an operator
//! command (`operator`) or a client command (`client`), and prints through
//! the renderer (`render`).

mod args;
mod client;
mod operator;
mod render;

use clap::Parser;

use args::{Cli, Command};
use render::Terminal;

// The one static of the binary: Rust picks its allocator at link time. The
// counting wrapper lets an expression's evaluation be stopped past its memory budget.
#[global_allocator]
static ALLOCATOR: tessera_runtime::expression::CountingAllocator<mimalloc::MiMalloc> =
    tessera_runtime::expression::CountingAllocator(mimalloc::MiMalloc);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let out = Terminal;
    match run(cli, out).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, out: Terminal) -> anyhow::Result<()> {
    match cli.command {
        Command::Client(command) => client::commands::run(command, out).await,
        Command::Operator(command) => {
            let config = tessera_server::config::Config::load(cli.config.as_deref())?;
            operator::run(config, command, out).await
        }
    }
}
