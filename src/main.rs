//! The steerdns binary: parse the command line, set up logging, run. Everything else is in
//! the library so that the tests drive the same code.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = steerdns::cli::Cli::parse();
    // Info by default; RUST_LOG overrides (e.g. RUST_LOG=steerdns=debug).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    cli.run()
}
