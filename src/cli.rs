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
    /// Show how a query for a global name would be answered for a client: the ranking
    /// (replica, region, RTT), the basis, the matched prefix, the answer and the ECS scope.
    /// Every replica counts as healthy (the offline view; the admin API explains live).
    Explain {
        /// The config file.
        #[arg(long, default_value = "steerdns.toml")]
        config: PathBuf,
        /// The global name.
        name: String,
        /// The client (the resolver's address, the packet source).
        client: std::net::IpAddr,
        /// The EDNS Client Subnet the resolver sends, e.g. 203.0.113.0/24.
        #[arg(long, value_name = "SUBNET")]
        ecs: Option<ipnet::IpNet>,
        /// The query type (A, AAAA, ...).
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// Run the parsed command.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Serve { config, listen } => serve(config, listen),
            Command::CheckConfig { config } => check_config(config),
            Command::Explain {
                config,
                name,
                client,
                ecs,
                qtype,
                json,
            } => explain(config, &name, client, ecs, &qtype, json),
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
        match crate::app::run(snapshot, sockets, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = %e, "cannot start");
                ExitCode::from(EXIT_FAILURE)
            }
        }
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

fn explain(
    config: PathBuf,
    name: &str,
    client: std::net::IpAddr,
    ecs: Option<ipnet::IpNet>,
    qtype: &str,
    json: bool,
) -> ExitCode {
    use std::str::FromStr;

    use hickory_proto::rr::{Name, RecordType};

    let snapshot = match load(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Ok(rtype) = RecordType::from_str(&qtype.to_ascii_uppercase()) else {
        eprintln!("unknown query type {qtype:?}");
        return ExitCode::from(2);
    };
    let Ok(mut qname) = Name::from_ascii(name) else {
        eprintln!("{name:?} is not a domain name");
        return ExitCode::from(2);
    };
    qname.set_fqdn(true);
    let Some((index, reg)) = snapshot.globals.find_name(&qname) else {
        eprintln!("{qname} is not a global name in {}", config.display());
        return ExitCode::from(EXIT_INVALID);
    };
    let subnet = ecs.map(|n| crate::dns::wire::ClientSubnet {
        family: if n.addr().is_ipv4() { 1 } else { 2 },
        source_prefix: n.prefix_len(),
        scope_prefix: 0,
        addr: n.network(),
    });
    let x = crate::global::explain(
        &snapshot.locator,
        reg,
        snapshot.health.get(index),
        u16::from(rtype),
        client.to_canonical(),
        subnet.as_ref(),
    );
    if json {
        match serde_json::to_string_pretty(&x) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "{} {} for client {} (registry {})",
        x.name, x.qtype, x.client, x.registry
    );
    println!(
        "basis: {}   matched: {}   label: {}",
        x.basis,
        x.network.as_deref().unwrap_or("-"),
        x.label.as_deref().unwrap_or("-")
    );
    println!(
        "{:<4} {:<20} {:<20} {:>8}",
        "rank", "replica", "region", "rtt"
    );
    for (i, r) in x.ranking.iter().enumerate() {
        let rtt = r.rtt_ms.map_or("-".to_string(), |v| format!("{v} ms"));
        let mark = if r.chosen {
            "answer"
        } else if r.eligible {
            ""
        } else {
            "not eligible"
        };
        println!(
            "{:<4} {:<20} {:<20} {:>8}  {}",
            i + 1,
            r.replica,
            r.region,
            rtt,
            mark
        );
    }
    if x.answer.is_empty() {
        println!("answer: NODATA");
    }
    for a in &x.answer {
        println!("answer: {a}");
    }
    match subnet {
        Some(cs) => println!(
            "ecs: {}/{} scope /{}",
            cs.addr, cs.source_prefix, x.scope_prefix
        ),
        None => println!(
            "ecs: none in the query (scope would be /{})",
            x.scope_prefix
        ),
    }
    if x.fail_open {
        println!("note: every replica able to answer is degraded; failing open");
    }
    ExitCode::SUCCESS
}
