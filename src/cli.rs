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

use crate::admin::client::{AdminArgs, AdminCommand};
use crate::server::Sockets;
use crate::state::Snapshot;

/// Print a line to stdout; a closed pipe (`steerdns status | head`) is not an error worth a
/// panic, so write errors are ignored.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `outln!` without the newline.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// Exit code for invalid configuration or data.
pub(crate) const EXIT_INVALID: u8 = 3;
/// The config file serve, demo, check-config and explain read without `--config`.
const DEFAULT_CONFIG: &str = "steerdns.toml";
/// Exit code for runtime failures.
pub(crate) const EXIT_FAILURE: u8 = 1;

/// steerdns: an authoritative DNS server that answers a global name with the lowest-latency
/// healthy replica for each client.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve DNS on the configured addresses until SIGTERM or SIGINT.
    Serve {
        /// Listen on ADDR:PORT instead of the configured addresses (repeatable; port 0 picks a
        /// free port, logged at start).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Vec<SocketAddr>,
        /// Serve the admin API on ADDR:PORT instead of `[admin] listen` (port 0 allowed).
        #[arg(long, value_name = "ADDR:PORT")]
        admin_listen: Option<SocketAddr>,
    },
    #[command(flatten)]
    Admin(AdminCommand),
    /// Run the demo: the server plus simulated replicas, with commands to try.
    ///
    /// Serves the config (default: the repository's) together with simulated replicas — real
    /// HTTP deep-health endpoints on the loopback addresses its health URLs name — and prints
    /// the commands to watch routing move and to break and mend replicas.
    Demo {
        /// Sign the zones with keys made on the spot (printed: the DS for the parent and a
        /// `delv` command that validates the steered name with the key as trust anchor).
        #[arg(long)]
        dnssec: bool,
    },
    /// Validate the config, the zones and the geo data; print a summary or every problem.
    CheckConfig,
    /// DNSSEC keys in BIND's file format: make one, or print the DS records for the parent.
    Dnssec {
        /// keygen | ds.
        #[command(subcommand)]
        action: DnssecAction,
    },
    /// Print the manual page, steerdns(8), in roff, generated from this command line.
    #[command(hide = true)]
    Manpage,
    /// Show how a query for a global name would be answered for a client.
    ///
    /// Prints the ranking (replica, region, RTT), the basis, the matched prefix, the answer
    /// and the ECS scope. Every replica counts as healthy (the offline view; the admin API's
    /// /v1/explain explains with live health).
    Explain {
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

/// `steerdns dnssec …`.
#[derive(Debug, Subcommand)]
enum DnssecAction {
    /// Make a key for ZONE: `K<zone>+<alg>+<tag>.key` and `.private` (mode 0600) in DIR.
    Keygen {
        /// The zone, e.g. registry.example.
        zone: String,
        /// 13 (ECDSA P-256, default) or 15 (Ed25519).
        #[arg(long, default_value_t = 13)]
        algorithm: u8,
        /// A zone-signing key (flags 256) instead of a key-signing or combined key (257).
        #[arg(long)]
        zsk: bool,
        /// Where the files go.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// When it enters the DNSKEY RRset: now (default), +DURATION or YYYYMMDDHHMMSS.
        #[arg(long)]
        publish: Option<String>,
        /// When it starts signing (published but not signing before: a pre-published key):
        /// now (default), +DURATION (+1d) or YYYYMMDDHHMMSS.
        #[arg(long)]
        activate: Option<String>,
    },
    /// Change a key's timing, as dnssec-settime does: when it is published, signs, stops
    /// signing, leaves the DNSKEY RRset. Takes effect at the next load or reload.
    Settime {
        /// The key's `.key` file.
        key_file: PathBuf,
        /// now, +DURATION, YYYYMMDDHHMMSS or none.
        #[arg(long)]
        publish: Option<String>,
        #[arg(long)]
        activate: Option<String>,
        #[arg(long)]
        inactive: Option<String>,
        #[arg(long)]
        delete: Option<String>,
    },
    /// Print ZONE's static part signed, as a zone file for dnssec-verify or
    /// ldns-verify-zone: its RRsets with their RRSIGs and the key RRsets, with an NSEC chain
    /// made for the dump (steerdns answers with compact denial, which has no chain).
    Dump {
        /// The zone, e.g. registry.example.
        zone: String,
    },
    /// Print the DS records (SHA-256) of ZONE's key-signing keys in DIR, for the parent.
    Ds {
        /// The zone.
        zone: String,
        /// Where the key files are.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

impl Cli {
    /// The config file the command reads (`--config`, else `steerdns.toml`).
    pub fn config_path(&self) -> PathBuf {
        self.admin
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    /// Run the parsed command.
    pub fn run(self) -> ExitCode {
        let config = self.config_path();
        match self.command {
            Command::Serve {
                listen,
                admin_listen,
            } => serve(config, listen, admin_listen),
            Command::Admin(command) => admin_client(&self.admin, &command),
            Command::CheckConfig => check_config(config),
            Command::Manpage => manpage(),
            Command::Dnssec { action } => dnssec(action, &config),
            Command::Demo { dnssec } => demo(config, dnssec),
            Command::Explain {
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

fn serve(config: PathBuf, listen: Vec<SocketAddr>, admin_listen: Option<SocketAddr>) -> ExitCode {
    let snapshot = match load(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    serve_snapshot(snapshot, listen, admin_listen, |_| async { Ok(()) })
}

/// Serve a loaded snapshot; `before` runs inside the runtime first (the demo starts its
/// replicas there).
fn serve_snapshot<F, Fut>(
    snapshot: Snapshot,
    listen: Vec<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    before: F,
) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
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
        let admin_addr = admin_listen.unwrap_or(snapshot.config.admin.listen);
        let workers = snapshot.config.udp.workers;
        let sockets =
            match Sockets::bind_workers(&addrs, workers).and_then(|s| s.with_admin(admin_addr)) {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, addresses = ?addrs, "cannot bind");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        if let Err(e) = before(shutdown.clone()).await {
            error!(error = %e, "cannot start");
            return ExitCode::from(EXIT_FAILURE);
        }
        let shutdown_for_service = shutdown.clone();
        let (handles, task) = match crate::app::spawn(snapshot, sockets, shutdown) {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "cannot start");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        crate::service::spawn(&handles, shutdown_for_service);
        tokio::spawn(reload_on_sighup(handles.control.commands.clone()));
        if let Err(e) = task.await {
            error!(error = %e, "the server task ended abnormally");
            return ExitCode::from(EXIT_FAILURE);
        }
        info!("steerdns stopped");
        ExitCode::SUCCESS
    })
}

/// `steerdns dnssec keygen|ds`.
fn dnssec(action: DnssecAction, config: &std::path::Path) -> ExitCode {
    use crate::dnssec::{Algorithm, FLAGS_KSK, FLAGS_ZSK, Key};
    match action {
        DnssecAction::Keygen {
            zone,
            algorithm,
            zsk,
            dir,
            publish,
            activate,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let time = |t: &Option<String>| -> Result<Option<u64>, String> {
                t.as_deref()
                    .map_or(Ok(None), |t| crate::dnssec::parse_time(t, now))
            };
            let made = Algorithm::from_number(algorithm)
                .and_then(|a| Key::generate(&zone, if zsk { FLAGS_ZSK } else { FLAGS_KSK }, a))
                .and_then(|mut k| {
                    k.times.publish = time(&publish)?;
                    k.times.activate = time(&activate)?;
                    Ok(k)
                })
                .and_then(|k| {
                    std::fs::create_dir_all(&dir)
                        .and_then(|()| k.write(&dir))
                        .map_err(|e| {
                            format!("cannot write the key files in {}: {e}", dir.display())
                        })
                });
            match made {
                Ok(stem) => {
                    outln!("{}", stem.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_INVALID)
                }
            }
        }
        DnssecAction::Settime {
            key_file,
            publish,
            activate,
            inactive,
            delete,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let changed = Key::read(&key_file, None)
                .map_err(|e| e.to_string())
                .and_then(|mut k| {
                    for (t, slot) in [
                        (&publish, &mut k.times.publish),
                        (&activate, &mut k.times.activate),
                        (&inactive, &mut k.times.inactive),
                        (&delete, &mut k.times.delete),
                    ] {
                        if let Some(t) = t {
                            *slot = crate::dnssec::parse_time(t, now)?;
                        }
                    }
                    k.rewrite_private(&key_file)
                        .map_err(|e| format!("{}: {e}", key_file.display()))?;
                    Ok(k)
                });
            match changed {
                Ok(k) => {
                    outln!("{}: {}", key_file.display(), k.times.describe(now));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_INVALID)
                }
            }
        }
        DnssecAction::Dump { zone } => {
            let snap = match crate::state::Snapshot::load(config) {
                Ok(s) => s,
                Err(problems) => {
                    eprintln!("{problems}");
                    return ExitCode::from(EXIT_INVALID);
                }
            };
            match snap.dump_signed(&zone, std::time::SystemTime::now()) {
                Ok(text) => {
                    out!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_INVALID)
                }
            }
        }
        DnssecAction::Ds { zone, dir } => match Key::read_zone(&dir, &zone) {
            Ok(keys) => {
                let sep: Vec<&Key> = keys.iter().filter(|k| k.flags & 1 == 1).collect();
                if sep.is_empty() {
                    eprintln!("error: no key-signing key for {zone} in {}", dir.display());
                    return ExitCode::from(EXIT_INVALID);
                }
                for k in sep {
                    outln!("{}", k.ds());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_INVALID)
            }
        },
    }
}

/// steerdns(8) in roff on stdout: every subcommand and flag, as `--help` shows them.
fn manpage() -> ExitCode {
    use clap::CommandFactory;
    let cmd = Cli::command().name("steerdns").after_help(MANPAGE_FILES);
    let man = clap_mangen::Man::new(cmd).section("8");
    let mut out = Vec::new();
    if let Err(e) = man.render(&mut out) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    out!("{}", String::from_utf8_lossy(&out));
    ExitCode::SUCCESS
}

/// The FILES part of the manual page (the Debian package's layout).
const MANPAGE_FILES: &str = "Files: /etc/steerdns/steerdns.toml (configuration), /etc/steerdns/zones (zone files), \
/var/lib/steerdns (operator overrides, the catalog journal, fleet state). \
The service: systemctl reload steerdns (or SIGHUP) reloads configuration, zones and geo data. \
Documentation: /usr/share/doc/steerdns.";

/// SIGHUP reloads config, zones and geo data (the outcome is logged by the writer task).
async fn reload_on_sighup(commands: tokio::sync::mpsc::Sender<crate::admin::context::Command>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        error!("cannot install the SIGHUP handler");
        return;
    };
    while hup.recv().await.is_some() {
        info!(signal = "SIGHUP", "reloading");
        crate::service::reloading();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let cmd = crate::admin::context::Command::Reload {
            who: "SIGHUP".into(),
            reply,
        };
        if commands.send(cmd).await.is_err() {
            return;
        }
        // The writer logs the outcome; the service manager hears it too.
        let outcome = match answer.await {
            Ok(Ok(ack)) => ack.message,
            Ok(Err(e)) => format!("reload rejected, previous configuration serving: {e}"),
            Err(_) => "reload: the writer is gone".to_string(),
        };
        crate::service::reloaded(&outcome);
    }
}

/// Run an admin API client command and print its result.
fn admin_client(args: &AdminArgs, command: &AdminCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(crate::admin::client::run(args, command)) {
        Ok(text) => {
            out!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
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
    outln!("{}: OK", config.display());
    let listen: Vec<String> = c.listen.iter().map(ToString::to_string).collect();
    outln!("  listen      {} (udp+tcp)", listen.join(", "));
    outln!(
        "  admin       {} (state file {})",
        c.admin.listen,
        c.admin.state_file.display()
    );
    outln!(
        "  tcp         idle {:?}, max {} connections",
        c.tcp_idle_timeout,
        c.tcp_max_connections
    );
    let mut zones: Vec<_> = snapshot.zones.zones().collect();
    zones.sort_by(|a, b| a.origin().cmp(b.origin()));
    outln!(
        "  zones       {} from {}",
        zones.len(),
        c.zones_dir.display()
    );
    for z in zones {
        outln!(
            "    {:<32} serial {:<10} {:>6} records  {}",
            z.origin().to_ascii(),
            z.serial(),
            z.record_count(),
            z.file().display()
        );
    }
    outln!(
        "  regions     {}",
        c.regions
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    match snapshot.locator.geo() {
        Some(geo) => {
            outln!("  mmdb        {} file(s)", geo.databases().len());
            for line in geo.report() {
                outln!("    {line}");
            }
        }
        None => outln!("  mmdb        none"),
    }
    // One line per replica set: a config registry (its name) or a template.
    let set_line = |label: &str, t: &crate::config::Template| {
        let reps: Vec<String> = t
            .replicas
            .iter()
            .map(|p| format!("{}@{}", p.key, p.region))
            .collect();
        outln!(
            "    {:<32} ttl {:>4}s answers {}  {}",
            label,
            t.ttl,
            t.answers,
            reps.join(" ")
        );
    };
    outln!("  registries  {}", c.registries.len());
    for r in &c.registries {
        set_line(&r.name.to_ascii(), &r.set);
    }
    if let Some(cat) = &c.catalog {
        let g = &snapshot.globals;
        outln!(
            "  catalog     {} registries from {} (+ {}), {} health profiles",
            g.len() - c.registries.len(),
            cat.file.display(),
            cat.journal.display(),
            g.profiles.len()
        );
        for t in &c.templates {
            set_line(&format!("template {}", t.key), t);
        }
    }
    if let Some(d) = &c.dnssec {
        outln!(
            "  dnssec      {} zone(s), keys in {}, signatures valid {}, inception -{}, jitter {}",
            d.zones.len(),
            d.key_dir.display(),
            humantime::format_duration(d.timing.validity),
            humantime::format_duration(d.timing.inception_offset),
            humantime::format_duration(d.timing.jitter)
        );
        for z in &d.zones {
            let keys: Vec<String> = z
                .keys
                .iter()
                .map(|k| {
                    let role = if k.flags == crate::dnssec::FLAGS_KSK {
                        "KSK"
                    } else {
                        "ZSK"
                    };
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    format!(
                        "{role} {} alg {} ({})",
                        k.tag(),
                        k.algorithm.number(),
                        k.times.describe(now)
                    )
                })
                .collect();
            outln!("    {:<32} {}", z.zone.to_ascii(), keys.join(", "));
        }
    }
    let g = &snapshot.globals;
    outln!(
        "  zone tree   {} empty non-terminals above global names, {} global names at a zone apex",
        g.ent_count(),
        g.iter().filter(|r| r.apex).count()
    );
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
    let subnet = ecs.map(crate::wire::ClientSubnet::from_net);
    let Some(x) = snapshot.explain(&qname, u16::from(rtype), client, subnet.as_ref()) else {
        eprintln!("{qname} is not a global name in {}", config.display());
        return ExitCode::from(EXIT_INVALID);
    };
    if json {
        match serde_json::to_string_pretty(&x) {
            Ok(s) => outln!("{s}"),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
        return ExitCode::SUCCESS;
    }
    outln!(
        "{} {} for client {} (registry {})",
        x.name,
        x.qtype,
        x.client,
        x.registry
    );
    outln!(
        "basis: {}   matched: {}   label: {}",
        x.basis,
        x.network.as_deref().unwrap_or("-"),
        x.label.as_deref().unwrap_or("-")
    );
    if let Some(g) = &x.geo {
        let at = match (g.latitude, g.longitude) {
            (Some(lat), Some(lon)) => format!("coordinates: {lat}, {lon}"),
            _ => "coordinates: none in the record".to_string(),
        };
        outln!(
            "geo: {} ({} schema)   network: {}   {at}",
            g.database,
            g.schema,
            g.network.map_or_else(|| "-".to_string(), |n| n.to_string())
        );
    }
    // The distance column only when the RTTs are estimated from it.
    let km = x.ranking.iter().any(|r| r.distance_km.is_some());
    let header = if km { "    distance" } else { "" };
    outln!(
        "{:<4} {:<20} {:<20} {:>8}{header}",
        "rank",
        "replica",
        "region",
        "rtt"
    );
    for (i, r) in x.ranking.iter().enumerate() {
        let rtt = r.rtt_ms.map_or("-".to_string(), |v| format!("{v} ms"));
        let distance = match (km, r.distance_km) {
            (false, _) => String::new(),
            (true, Some(d)) => format!(" {:>11}", format!("{d:.0} km")),
            (true, None) => format!(" {:>11}", "-"),
        };
        let mark = if r.chosen {
            "answer"
        } else if r.eligible {
            ""
        } else {
            "not eligible"
        };
        outln!(
            "{:<4} {:<20} {:<20} {:>8}{distance}  {}",
            i + 1,
            r.replica,
            r.region,
            rtt,
            mark
        );
    }
    if x.answer.is_empty() {
        outln!("answer: NODATA");
    }
    for a in &x.answer {
        outln!("answer: {a}");
    }
    match subnet {
        Some(cs) => outln!(
            "ecs: {}/{} scope /{}",
            cs.addr,
            cs.source_prefix,
            x.scope_prefix
        ),
        None => outln!(
            "ecs: none in the query (scope would be /{})",
            x.scope_prefix
        ),
    }
    if x.fail_open {
        outln!("note: every replica able to answer is degraded; failing open");
    }
    ExitCode::SUCCESS
}

/// The demo's snapshot with every zone signed by a key made now (in a new directory under
/// the temporary directory), and what to tell the operator about it.
fn demo_signed(config: &std::path::Path) -> Result<(Snapshot, String), ExitCode> {
    let unsigned = load(config)?;
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_INVALID)
    };
    let dir = std::env::temp_dir().join(format!("steerdns-demo-dnssec-{}", std::process::id()));
    let mut origins: Vec<_> = unsigned.zones.zones().map(|z| z.origin().clone()).collect();
    origins.sort();
    let dnssec = crate::config::dnssec::DnssecConfig::fresh(origins, dir.clone(), true, 1 << 16)
        .map_err(fail)?;
    let mut ds = String::new();
    let mut anchors = String::from("trust-anchors {\n");
    for key in dnssec.zones.iter().flat_map(|z| &z.keys) {
        ds.push_str(&format!("  {}\n", key.ds()));
        anchors.push_str(&format!("  {}\n", key.trust_anchor()));
    }
    anchors.push_str("};\n");
    let anchors_file = dir.join("anchors.conf");
    std::fs::write(&anchors_file, anchors)
        .map_err(|e| fail(format!("{}: {e}", anchors_file.display())))?;
    let mut cfg = crate::config::Config::load(config).map_err(|p| {
        for p in &p.0 {
            eprintln!("{p}");
        }
        ExitCode::from(EXIT_INVALID)
    })?;
    cfg.dnssec = Some(dnssec);
    let snap = Snapshot::from_config(cfg).map_err(|p| {
        for p in &p.0 {
            eprintln!("{p}");
        }
        ExitCode::from(EXIT_INVALID)
    })?;
    let (ip, port) = snap
        .config
        .listen
        .first()
        .map_or(("127.0.0.1".to_string(), 5300), |a| {
            (a.ip().to_string(), a.port())
        });
    let name = snap
        .config
        .registries
        .first()
        .map_or("contoso.registry.example.".to_string(), |r| {
            r.name.to_ascii()
        });
    let root = snap
        .zones
        .find(&hickory_proto::rr::Name::from_ascii(&name).unwrap_or_default())
        .map_or(".".to_string(), |z| z.origin().to_ascii());
    let help = format!(
        "\nDNSSEC: the zones are signed with keys made now, in {dir}\n\
         (a reload re-reads the config file, which does not sign them).\n\
         DS records for the parent:\n{ds}\
         Validate the steered name with the key as trust anchor:\n  \
         delv @{ip} -p {port} -a {anchors} +root={root} {name} A\n  \
         dig @{ip} -p {port} +dnssec {name} A\n",
        dir = dir.display(),
        anchors = anchors_file.display(),
    );
    Ok((snap, help))
}

fn demo(config: PathBuf, dnssec: bool) -> ExitCode {
    let (snapshot, dnssec_help) = if dnssec {
        match demo_signed(&config) {
            Ok(s) => s,
            Err(code) => return code,
        }
    } else {
        match load(&config) {
            Ok(s) => (s, String::new()),
            Err(code) => return code,
        }
    };
    // Every loopback host:port named by a health URL gets a simulated replica.
    let mut replicas: Vec<(SocketAddr, Vec<String>)> = Vec::new();
    for (set, template) in snapshot.config.sets() {
        for rep in &set.replicas {
            let Some(url) = rep
                .health
                .url
                .as_deref()
                .and_then(|u| reqwest::Url::parse(u).ok())
            else {
                continue;
            };
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                continue;
            };
            let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() else {
                continue;
            };
            if !ip.is_loopback() {
                continue;
            }
            let addr = SocketAddr::new(ip, port);
            let label = match template {
                true => format!("template {}/{}", set.key, rep.key),
                false => format!("{}/{}", set.key, rep.key),
            };
            match replicas.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, labels)) => labels.push(label),
                None => replicas.push((addr, vec![label])),
            }
        }
    }
    let listen = snapshot.config.listen.clone();
    let dns = listen.first().copied();
    let names: Vec<String> = snapshot
        .config
        .registries
        .iter()
        .map(|r| r.name.to_ascii())
        .collect();
    serve_snapshot(snapshot, Vec::new(), None, move |shutdown| async move {
        let mut started = Vec::new();
        for (addr, labels) in &replicas {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("demo replica {addr}: {e}"))?;
            let replica =
                crate::demo_replica::DemoReplica::start(listener).map_err(|e| e.to_string())?;
            info!(replica = %addr, serves = %labels.join(" "), "demo replica started");
            started.push(replica);
        }
        tokio::spawn(async move {
            shutdown.cancelled().await;
            for r in started {
                r.shutdown().await;
            }
        });
        print_demo_help(dns, &names, &replicas);
        if !dnssec_help.is_empty() {
            out!("{dnssec_help}");
        }
        Ok(())
    })
}

fn print_demo_help(
    dns: Option<SocketAddr>,
    names: &[String],
    replicas: &[(SocketAddr, Vec<String>)],
) {
    let (ip, port) = dns.map_or(("127.0.0.1".to_string(), 5300), |a| {
        (a.ip().to_string(), a.port())
    });
    let name = names
        .first()
        .map_or("contoso.registry.example.", String::as_str);
    let mut help = String::new();
    help.push_str(
        "\nsteerdns demo is running. Simulated replicas (deep health at /health?registry=NAME):\n",
    );
    for (addr, labels) in replicas {
        help.push_str(&format!("  http://{addr}   {}\n", labels.join(", ")));
    }
    help.push_str(&format!(
        "\nWatch routing (clients near westeurope, eastus, southeastasia per geo/latency.csv):\n  \
         watch -n1 'for c in 127.0.1.1 127.0.2.1 127.0.3.1; do dig +short -b $c @{ip} -p {port} {name}; done'\n  \
         dig @{ip} -p {port} {name} +subnet=198.51.100.0/24     # ECS: the answer and its scope\n"
    ));
    if let Some((addr, labels)) = replicas.first() {
        let registry = labels
            .first()
            .and_then(|l| l.split('/').next())
            .unwrap_or("contoso");
        help.push_str(&format!(
            "\nBreak the first replica's storage for {registry} only (its front door still says 200):\n  \
             curl -X POST 'http://{addr}/fail?dep=storage&registry={registry}'\n\
             After failure_threshold failed probes the clients near it get the next best replica.\n\
             Mend it:\n  curl -X POST 'http://{addr}/recover'\n"
        ));
    }
    help.push_str("\nStop with Ctrl-C.\n");
    out!("{help}");
}
