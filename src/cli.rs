//! The command line: `serve`, `check-config`. Exit codes:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | runtime failure (cannot bind, I/O error) |
//! | 2 | usage error (unknown flag or command; printed by clap) |
//! | 3 | the configuration, a zone or geo data is invalid (every problem is printed) |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::server::Sockets;
use crate::state::Snapshot;

/// Exit code for invalid configuration or data.
pub const EXIT_INVALID: u8 = 3;
/// Exit code for runtime failures.
pub const EXIT_FAILURE: u8 = 1;

/// steerdns: an authoritative DNS server that answers a global name with the lowest-latency
/// healthy replica for each client.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve DNS on the configured addresses until SIGTERM or SIGINT.
    Serve {
        /// The config file.
        #[arg(long, default_value = "steerdns.toml")]
        config: PathBuf,
        /// Listen on ADDR:PORT instead of the configured addresses (repeatable; port 0 picks a
        /// free port, logged at start).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Vec<SocketAddr>,
    },
    /// Validate the config, the zones and the geo data; print a summary or every problem.
    CheckConfig {
        /// The config file.
        #[arg(long, default_value = "steerdns.toml")]
        config: PathBuf,
    },
}

impl Cli {
    /// Run the parsed command.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Serve { config, listen } => serve(config, listen),
            Command::CheckConfig { config } => check_config(config),
        }
    }
}

fn load(config: &std::path::Path) -> Result<Snapshot, ExitCode> {
    Snapshot::load(config).map_err(|problems| {
        for p in &problems.0 {
            eprintln!("{p}");
        }
        eprintln!("{} problem(s) found; nothing was started", problems.0.len());
        ExitCode::from(EXIT_INVALID)
    })
}

fn serve(config: PathBuf, listen: Vec<SocketAddr>) -> ExitCode {
    let snapshot = match load(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let addrs = if listen.is_empty() {
        snapshot.config.listen.clone()
    } else {
        listen
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        let sockets = match Sockets::bind(&addrs) {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, addresses = ?addrs, "cannot bind");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        crate::app::run(snapshot, sockets, shutdown).await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM and SIGINT stop the server gracefully.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => info!(signal = "SIGINT", "shutting down"),
    }
    shutdown.cancel();
}

fn check_config(config: PathBuf) -> ExitCode {
    let snapshot = match load(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let c = &snapshot.config;
    println!("{}: OK", config.display());
    let listen: Vec<String> = c.listen.iter().map(ToString::to_string).collect();
    println!("  listen      {} (udp+tcp)", listen.join(", "));
    if let Some(a) = c.admin_listen {
        println!("  admin       {a}");
    }
    println!(
        "  tcp         idle {:?}, max {} connections",
        c.tcp_idle_timeout, c.tcp_max_connections
    );
    let mut zones: Vec<_> = snapshot.zones.zones().collect();
    zones.sort_by(|a, b| a.origin().cmp(b.origin()));
    println!(
        "  zones       {} from {}",
        zones.len(),
        c.zones_dir.display()
    );
    for z in zones {
        println!(
            "    {:<32} serial {:<10} {:>6} records  {}",
            z.origin().to_ascii(),
            z.serial(),
            z.record_count(),
            z.file().display()
        );
    }
    println!(
        "  regions     {}",
        c.regions
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  registries  {}", c.registries.len());
    for r in &c.registries {
        let reps: Vec<String> = r
            .replicas
            .iter()
            .map(|p| format!("{}@{}", p.key, p.region))
            .collect();
        println!(
            "    {:<32} ttl {:>4}s answers {}  {}",
            r.name.to_ascii(),
            r.ttl,
            r.answers,
            reps.join(" ")
        );
    }
    ExitCode::SUCCESS
}
