//! The steerdns binary: parse the command line, set up logging, run. Everything else is in
//! the library so that the tests drive the same code.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: after a reload, `mi_collect` returns the old registry set's pages (see
/// `state::trim`), where glibc kept a third of them as fragments.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = steerdns::cli::Cli::parse();
    // Info by default; RUST_LOG overrides (e.g. RUST_LOG=steerdns=debug). The format comes
    // from the config's [log] table.
    steerdns::service::init_logging(steerdns::service::log_format_of(&cli.config_path()));
    cli.run()
}
