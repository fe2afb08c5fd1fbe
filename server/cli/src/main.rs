//! The `tessera` binary: see `args` for its commands.

mod args;
mod client;
mod commands;
mod render;

use clap::Parser;

// The one static of the binary: Rust picks its allocator at link time. The
// counting wrapper lets an expression's evaluation be stopped past its memory budget.
#[global_allocator]
static ALLOCATOR: tessera_runtime::expression::CountingAllocator<mimalloc::MiMalloc> =
    tessera_runtime::expression::CountingAllocator(mimalloc::MiMalloc);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
