//! The resolver lab: steerdns behind a real delegation, reached through real recursive
//! resolvers, all on loopback.
//!
//! ```text
//!  dig -b 127.0.6.x ──► Unbound 127.0.5.3 (ECS /28) ─┐      fake root  Knot 127.0.5.1 (.)
//!                  └──► BIND    127.0.5.4 (no ECS) ──┼────► parent     Knot 127.0.5.2 (example.)
//!                                                    └────► steerdns       127.0.5.53 (registry.example.)
//!                                                             │ deep-health probes
//!                                   demo replicas 127.0.5.101-103 (HTTP /health)
//! ```
//!
//! Checks, through each resolver, over UDP and TCP: SOA, NS, A, AAAA, NODATA, NXDOMAIN, a
//! record set larger than 1232 bytes (fetched by the resolver over TCP after truncation);
//! clients on different source addresses behind Unbound get their own nearest replica and
//! Unbound's cache does not leak one subnet's answer to another; clients behind BIND get the
//! answer for BIND's address; the alias `pull CNAME contoso` resolves to the CNAME plus the same
//! per-client answer through both; failing the nearest replica's deep health moves the answer within
//! interval × threshold + TTL (plus slack), and recovery moves it back. Asked directly, steerdns
//! must truncate the large set over UDP and answer each client /28 with ECS scope /28. After
//! the lab, no process, address or port may be left.
//!
//! DNSSEC: steerdns signs `registry.example.` (and `tampered.example.`) with keys the harness
//! makes with `steerdns dnssec keygen`; Knot signs the parent `example.`, which carries their
//! DS records (`steerdns dnssec ds`); both resolvers validate, with the parent's KSK as trust
//! anchor (the fake root is unsigned). Every answer above is then validated as well, and the
//! DNSSEC checks add: AD for the steered name from three client networks and after each
//! failover, for static data, NODATA and names that do not exist (compact answers: NOERROR);
//! under Unbound's aggressive NSEC caching, after denials of neighbouring names every real
//! name still resolves, validated; a signature corrupted on the way (a proxy on 127.0.5.54
//! flips a byte of the A RRSIGs of `tampered.example.`) is SERVFAIL while the zone's SOA
//! still validates; DNSViz (`dnsviz probe` through Unbound, `dnsviz grok`) finds no error or
//! warning; a ZSK and a KSK rollover, step by step, never fail validation.
//!
//! So the lab fails when steerdns ignores ECS (every Unbound client would get the replica for
//! Unbound's own address), answers with scope /0 or too short a scope (Unbound would hand client
//! A's cached answer to B and C), or does not fail over.
//!
//! Environment:
//! - `STEERDNS_BIN`: the steerdns binary (default: the one cargo built for this test).
//! - `STEERDNS_LAB_OPTIONAL=1`: skip (pass with a message) when a tool or root is missing;
//!   by default that fails. `tests/lab/packages.txt` lists the Debian packages needed.
//! - `STEERDNS_LAB_AUTH=knot`: serve the subzone with Knot instead of steerdns and run only
//!   the resolver-chain checks (to debug the lab itself).
//! - `STEERDNS_LAB_KEEP=1`: keep the run directory (configs, logs); it is kept on failure anyway.
//!
//! Needs root (port 53, `ip addr add` for BIND's address). Every process is stopped by PID and
//! the address removed when the test ends, also when a check fails.

#[path = "lab/dig.rs"]
mod dig;
#[path = "lab/harness.rs"]
mod harness;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use dig::{Query, Reply};
use harness::{LoAddr, Poll, Proc};
use steerdns::demo_replica::DemoReplica;

//----------- Addresses and data -----------------------------------------------------------------

const ROOT: Ipv4Addr = Ipv4Addr::new(127, 0, 5, 1);
const PARENT: Ipv4Addr = Ipv4Addr::new(127, 0, 5, 2);
const UNBOUND: Ipv4Addr = Ipv4Addr::new(127, 0, 5, 3);
const BIND: Ipv4Addr = Ipv4Addr::new(127, 0, 5, 4);
const AUTH: Ipv4Addr = Ipv4Addr::new(127, 0, 5, 53);
/// The proxy in front of steerdns for `tampered.example.` that corrupts A RRSIGs.
const TAMPER: Ipv4Addr = Ipv4Addr::new(127, 0, 5, 54);

/// Client A: 127.0.6.0/28 in the latency table, nearest West Europe.
const CLIENT_A: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 1);
/// A second client in client A's /28.
const CLIENT_A2: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 2);
/// Client B: 127.0.6.16/28, nearest East US.
const CLIENT_B: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 17);
/// Client C: 127.0.6.32/28, nearest Southeast Asia.
const CLIENT_C: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 33);
/// The address the harness's own readiness probes come from.
const HARNESS: Ipv4Addr = Ipv4Addr::new(127, 0, 6, 254);

const ZONE: &str = "registry.example.";
/// The zones steerdns signs in the lab (their DS records go into the parent).
const SIGNED: [&str; 2] = ["registry.example.", "tampered.example."];
const GLOBAL: &str = "contoso.registry.example.";
/// `pull CNAME contoso` in the lab's zone file: an alias of the global name.
const ALIAS: &str = "pull.registry.example.";
/// The registry's key in `tests/lab/steerdns.toml.in` (and in its health URLs).
const REGISTRY: &str = "contoso";

/// Health settings in `tests/lab/steerdns.toml.in`; failover must show within
/// interval × failure_threshold + TTL, plus [`SLACK`] for probe phase, jitter and timeouts.
const INTERVAL: Duration = Duration::from_secs(1);
const FAILURE_THRESHOLD: u32 = 2;
const SUCCESS_THRESHOLD: u32 = 2;
const TTL: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_secs(3);

struct Region {
    name: &'static str,
    v4: &'static str,
    v6: &'static str,
    replica_ip: Ipv4Addr,
}

const WESTEUROPE: usize = 0;
const EASTUS: usize = 1;
const SOUTHEASTASIA: usize = 2;
const REGIONS: [Region; 3] = [
    Region {
        name: "westeurope",
        v4: "192.0.2.10",
        v6: "2001:db8::10",
        replica_ip: Ipv4Addr::new(127, 0, 5, 101),
    },
    Region {
        name: "eastus",
        v4: "192.0.2.20",
        v6: "2001:db8::20",
        replica_ip: Ipv4Addr::new(127, 0, 5, 102),
    },
    Region {
        name: "southeastasia",
        v4: "192.0.2.30",
        v6: "2001:db8::30",
        replica_ip: Ipv4Addr::new(127, 0, 5, 103),
    },
];

/// Names the region whose address this is, for messages.
fn region_of(addr: &str) -> &'static str {
    REGIONS
        .iter()
        .find(|r| r.v4 == addr || r.v6 == addr)
        .map_or("no replica of contoso", |r| r.name)
}

#[derive(Clone, Copy)]
struct Resolver {
    name: &'static str,
    addr: Ipv4Addr,
}

const RESOLVERS: [Resolver; 2] = [
    Resolver {
        name: "unbound",
        addr: UNBOUND,
    },
    Resolver {
        name: "bind",
        addr: BIND,
    },
];

/// Which server answers for `registry.example.` at 127.0.5.53.
#[derive(Clone, Debug, PartialEq)]
enum Auth {
    Steerdns(PathBuf),
    Knot,
}

struct Tools {
    knot: PathBuf,
    unbound: PathBuf,
    named: PathBuf,
    dig: PathBuf,
    ip: PathBuf,
}

//----------- The test ---------------------------------------------------------------------------

#[test]
fn resolvers_reach_steerdns_through_a_delegation() {
    let started = Instant::now();
    let Some((tools, auth)) = prerequisites() else {
        return;
    };

    let mut lab = Lab::new(tools, auth);
    if let Err(e) = lab.start() {
        lab.print_logs();
        panic!("lab setup failed: {e}");
    }
    eprintln!(
        "lab: started in {:.1?}, run directory {}",
        started.elapsed(),
        lab.dir().display()
    );

    let mut checks = Checks::default();
    lab.check_static_names(&mut checks);
    lab.check_large_answer(&mut checks);
    if matches!(lab.auth, Auth::Steerdns(_)) {
        lab.check_steerdns_directly(&mut checks);
        lab.check_clients_behind_unbound(&mut checks);
        lab.check_clients_behind_bind(&mut checks);
        lab.check_alias_through_resolvers(&mut checks);
        lab.check_dnssec(&mut checks);
        lab.check_dnsviz(&mut checks);
        lab.check_failover(&mut checks);
        lab.check_rollovers(&mut checks);
    } else {
        eprintln!(
            "lab: STEERDNS_LAB_AUTH=knot: Knot stands in for steerdns; the ECS, cache-scope and \
             failover checks were not run"
        );
    }

    if !checks.failed.is_empty() {
        lab.print_logs();
        lab.keep_dir = true;
    }
    let dir = lab.dir().to_path_buf();
    let ip_tool = lab.tools.ip.clone();
    let pids: Vec<(String, u32)> = lab
        .procs
        .iter()
        .map(|p| (p.name().to_owned(), p.pid()))
        .collect();
    drop(lab);
    check_nothing_left(&mut checks, &pids, &ip_tool);

    let elapsed = started.elapsed();
    eprintln!(
        "lab: {} checks passed, {} failed, in {elapsed:.1?}",
        checks.passed,
        checks.failed.len()
    );
    if !checks.failed.is_empty() {
        panic!(
            "{} lab check(s) failed (run directory kept: {}):\n\n{}",
            checks.failed.len(),
            dir.display(),
            checks.failed.join("\n\n")
        );
    }
}

/// After the lab is dropped: every process it started is gone, BIND's address is off `lo`,
/// and port 53 is free on every lab address.
fn check_nothing_left(checks: &mut Checks, pids: &[(String, u32)], ip_tool: &Path) {
    for (name, pid) in pids {
        if Path::new(&format!("/proc/{pid}")).exists() {
            checks.fail(format!(
                "[teardown] {name} (pid {pid}) still exists after the lab ended"
            ));
        } else {
            checks.passed += 1;
        }
    }
    let addrs = Command::new(ip_tool)
        .args(["-4", "addr", "show", "dev", "lo"])
        .output();
    match addrs {
        Ok(out) if !String::from_utf8_lossy(&out.stdout).contains(&format!(" {BIND}/")) => {
            checks.passed += 1;
        }
        Ok(_) => checks.fail(format!(
            "[teardown] {BIND}/32 is still on lo after the lab ended"
        )),
        Err(e) => checks.fail(format!("[teardown] cannot list the addresses of lo: {e}")),
    }
    for addr in [ROOT, PARENT, UNBOUND, BIND, AUTH, TAMPER] {
        match harness::ensure_port_free(addr, 53) {
            Ok(()) => checks.passed += 1,
            Err(e) => checks.fail(format!("[teardown] {e}")),
        }
    }
}

/// Finds the tools and the authoritative to test; `None` means skip (only with
/// `STEERDNS_LAB_OPTIONAL=1`). Anything missing fails otherwise.
fn prerequisites() -> Option<(Tools, Auth)> {
    let optional = std::env::var("STEERDNS_LAB_OPTIONAL").is_ok_and(|v| v == "1");
    let mut missing = Vec::new();
    let mut tool = |name: &str, package: &str| {
        harness::find_tool(name).unwrap_or_else(|| {
            missing.push(format!("{name} (Debian package {package})"));
            PathBuf::new()
        })
    };
    let tools = Tools {
        knot: tool("knotd", "knot"),
        unbound: tool("unbound", "unbound"),
        named: tool("named", "bind9"),
        dig: tool("dig", "dnsutils"),
        ip: tool("ip", "iproute2"),
    };
    let auth = match std::env::var("STEERDNS_LAB_AUTH").as_deref() {
        Ok("knot") => Auth::Knot,
        Ok("steerdns") | Err(_) => {
            let bin = std::env::var_os("STEERDNS_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_steerdns")),
                PathBuf::from,
            );
            if !bin.is_file() {
                missing.push(format!("the steerdns binary at {}", bin.display()));
            }
            Auth::Steerdns(bin)
        }
        Ok(other) => panic!("STEERDNS_LAB_AUTH={other}: expected `steerdns` or `knot`"),
    };
    if !harness::is_root() {
        missing.push("root privileges (port 53 on 127.0.5.x, `ip addr add` on lo)".to_owned());
    }
    if missing.is_empty() {
        return Some((tools, auth));
    }
    let message = format!(
        "the resolver lab needs: {}. Install the packages in tests/lab/packages.txt \
         (tests/run.sh does) and run as root",
        missing.join(", ")
    );
    if optional {
        eprintln!("lab: SKIPPED (STEERDNS_LAB_OPTIONAL=1): {message}");
        None
    } else {
        panic!("{message}; set STEERDNS_LAB_OPTIONAL=1 to skip instead");
    }
}

//----------- Lab --------------------------------------------------------------------------------

/// Everything the lab started. Dropping it stops the processes (resolvers first), removes the
/// address from `lo`, stops the replicas, and deletes the run directory unless a check failed
/// or `STEERDNS_LAB_KEEP=1`.
struct Lab {
    tools: Tools,
    auth: Auth,
    procs: Vec<Proc>,
    lo_addr: Option<LoAddr>,
    replicas: Vec<DemoReplica>,
    /// The parent's KSKs: (algorithm, base64 key), the resolvers' trust anchors.
    anchors: Vec<(String, String)>,
    /// The signature-corrupting proxy for `tampered.example.`.
    tamper: Option<harness::TamperProxy>,
    runtime: tokio::runtime::Runtime,
    dir: Option<tempfile::TempDir>,
    /// Keep the run directory when dropped (a check failed).
    keep_dir: bool,
}

impl Lab {
    fn new(tools: Tools, auth: Auth) -> Lab {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::Builder::new()
            .prefix("steerdns-lab-")
            .tempdir()
            .expect("temp dir");
        Lab {
            tools,
            auth,
            procs: Vec::new(),
            lo_addr: None,
            replicas: Vec::new(),
            anchors: Vec::new(),
            tamper: None,
            runtime,
            dir: Some(dir),
            keep_dir: false,
        }
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).expect("run directory")
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("dir", self.dir().display().to_string()),
            ("lab", harness::lab_src().display().to_string()),
        ]
    }

    fn start(&mut self) -> Result<(), String> {
        for addr in [ROOT, PARENT, UNBOUND, BIND, AUTH, TAMPER] {
            harness::ensure_port_free(addr, 53)?;
        }
        fs::create_dir_all(self.dir().join("bind")).map_err(|e| e.to_string())?;

        // the replicas' deep-health endpoints
        for region in &REGIONS {
            let replica = self
                .runtime
                .block_on(async {
                    let listener = tokio::net::TcpListener::bind((region.replica_ip, 0)).await?;
                    DemoReplica::start(listener)
                })
                .map_err(|e| format!("replica {} on {}: {e}", region.name, region.replica_ip))?;
            self.replicas.push(replica);
        }

        // the fake root, and the parent zone signed by Knot with the DS records of
        // steerdns's keys
        let lab = harness::lab_src();
        self.start_knot("root", ROOT, ".", &lab.join("root.zone"), "")?;
        let parent = self.parent_zone()?;
        self.start_knot(
            "parent",
            PARENT,
            "example.",
            &parent,
            "    dnssec-signing: on",
        )?;
        for (name, server, zone) in [("root", ROOT, "."), ("parent", PARENT, "example.")] {
            self.wait_authoritative(name, server, zone)?;
        }
        self.anchors = self.wait_parent_ksk()?;

        // the subzone: steerdns, or Knot standing in for it
        match self.auth.clone() {
            Auth::Steerdns(bin) => self.start_steerdns(&bin)?,
            Auth::Knot => {
                let zonefile = lab.join("zones").join("registry.example.zone");
                self.start_knot("standin", AUTH, ZONE, &zonefile, "")?;
            }
        }
        self.wait_authoritative("auth", AUTH, ZONE)?;
        if matches!(self.auth, Auth::Steerdns(_)) {
            self.tamper = Some(harness::TamperProxy::start(TAMPER, AUTH)?);
        }

        // the resolvers
        self.start_unbound()?;
        self.lo_addr = Some(LoAddr::add(&self.tools.ip, BIND)?);
        self.start_bind()?;
        for resolver in RESOLVERS {
            self.wait_resolver(resolver)?;
        }
        Ok(())
    }

    fn write_config(&self, file: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.dir().join(file);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// The parent zone `example.`: the committed file plus, when steerdns serves the
    /// subzones, the DS records of the keys made here for them (`steerdns dnssec keygen`,
    /// `steerdns dnssec ds`, as an operator would).
    fn parent_zone(&self) -> Result<PathBuf, String> {
        let mut text = fs::read_to_string(harness::lab_src().join("example.zone"))
            .map_err(|e| format!("example.zone: {e}"))?;
        if let Auth::Steerdns(bin) = &self.auth {
            let keys = self.dir().join("keys");
            text.push_str("\n; DS records of steerdns's keys, made by the harness\n");
            for zone in SIGNED {
                let dir = keys.display().to_string();
                steerdns_cli(bin, &["dnssec", "keygen", zone, "--dir", &dir])?;
                let ds = steerdns_cli(bin, &["dnssec", "ds", zone, "--dir", &dir])?;
                text.push_str(&format!("{ds}\n"));
            }
        }
        let path = self.dir().join("example.zone");
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Waits until Knot serves the parent's DNSKEY RRset; its KSKs (flags 257) as
    /// (algorithm, public key in base64), the resolvers' trust anchors. (`dig +short`: the
    /// parsed replies lower-case record data, and base64 is case-sensitive.)
    fn wait_parent_ksk(&mut self) -> Result<Vec<(String, String)>, String> {
        let dig = self.tools.dig.clone();
        let args = [
            "+norec".to_owned(),
            "+short".to_owned(),
            "+time=2".to_owned(),
            "+tries=1".to_owned(),
            "-b".to_owned(),
            HARNESS.to_string(),
            format!("@{PARENT}"),
            "example.".to_owned(),
            "DNSKEY".to_owned(),
        ];
        harness::wait_until("Knot signing example.", Duration::from_secs(15), || {
            let out = Command::new(&dig).args(&args).output();
            let text = out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let ksks: Vec<(String, String)> = text
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() > 3 && f[0] == "257").then(|| (f[2].to_owned(), f[3..].concat()))
                })
                .collect();
            if ksks.is_empty() {
                Poll::Pending(format!("dig {}: {text}", args.join(" ")))
            } else {
                Poll::Ready(ksks)
            }
        })
    }

    /// The trust-anchor lines for Unbound and BIND.
    fn anchor_lines(&self) -> (String, String) {
        let mut unbound = String::new();
        let mut bind = String::from("trust-anchors {\n");
        for (alg, key) in &self.anchors {
            unbound.push_str(&format!(
                "    trust-anchor: \"example. DNSKEY 257 3 {alg} {key}\"\n"
            ));
            bind.push_str(&format!("    example. static-key 257 3 {alg} \"{key}\";\n"));
        }
        bind.push_str("};\n");
        (unbound, bind)
    }

    fn start_knot(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        zone: &str,
        zonefile: &Path,
        signing: &str,
    ) -> Result<(), String> {
        let mut vars = self.vars();
        vars.extend([
            ("name", name.to_owned()),
            ("ip", ip.to_string()),
            ("zone", zone.to_owned()),
            ("zonefile", zonefile.display().to_string()),
            ("signing", signing.to_owned()),
        ]);
        fs::create_dir_all(self.dir().join(format!("knot-{name}"))).map_err(|e| e.to_string())?;
        let conf = self.write_config(
            &format!("knot-{name}.conf"),
            &harness::render("knot.conf.in", &vars),
        )?;
        let mut cmd = Command::new(&self.tools.knot);
        cmd.arg("-c").arg(&conf);
        let proc = Proc::spawn(&format!("knot-{name}"), self.dir(), &mut cmd)?;
        self.procs.push(proc);
        Ok(())
    }

    fn start_steerdns(&mut self, bin: &Path) -> Result<(), String> {
        let mut vars = self.vars();
        for (region, replica) in REGIONS.iter().zip(&self.replicas) {
            vars.push((region.name, replica.addr().to_string()));
        }
        let zones: Vec<String> = SIGNED.iter().map(|z| format!("\"{z}\"")).collect();
        vars.push((
            "dnssec",
            format!(
                "[dnssec]\nzones = [{}]\nkey_dir = \"{}\"\ndnskey_ttl = \"2s\"\n",
                zones.join(", "),
                self.dir().join("keys").display()
            ),
        ));
        let conf =
            self.write_config("steerdns.toml", &harness::render("steerdns.toml.in", &vars))?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&conf)
            .env("RUST_LOG", "info");
        let proc = Proc::spawn("steerdns", self.dir(), &mut cmd)?;
        self.procs.push(proc);
        Ok(())
    }

    fn start_unbound(&mut self) -> Result<(), String> {
        let mut vars = self.vars();
        vars.push(("anchors", self.anchor_lines().0));
        let conf = self.write_config("unbound.conf", &harness::render("unbound.conf.in", &vars))?;
        let mut cmd = Command::new(&self.tools.unbound);
        cmd.arg("-d").arg("-c").arg(&conf);
        let mut proc = Proc::spawn("unbound", self.dir(), &mut cmd)?;
        proc.logs.push(self.dir().join("unbound.log"));
        self.procs.push(proc);
        Ok(())
    }

    fn start_bind(&mut self) -> Result<(), String> {
        let mut vars = self.vars();
        vars.push(("anchors", self.anchor_lines().1));
        let conf = self.write_config("named.conf", &harness::render("named.conf.in", &vars))?;
        let mut cmd = Command::new(&self.tools.named);
        cmd.args(["-g", "-4", "-n", "1", "-c"]).arg(&conf);
        let proc = Proc::spawn("named", self.dir(), &mut cmd)?;
        self.procs.push(proc);
        Ok(())
    }

    /// Fails when any started process has exited.
    fn all_alive(&mut self) -> Result<(), String> {
        self.procs.iter_mut().try_for_each(Proc::check_alive)
    }

    /// Waits until an authoritative answers its zone's SOA.
    fn wait_authoritative(
        &mut self,
        name: &str,
        server: Ipv4Addr,
        zone: &str,
    ) -> Result<(), String> {
        let mut q = Query::new(server, HARNESS, zone, "SOA");
        q.norec = true;
        self.wait_soa(
            &format!("{name} ({server}) serving {zone}"),
            &q,
            Duration::from_secs(15),
        )
    }

    /// Waits until a resolver resolves the subzone's SOA (through root and parent).
    fn wait_resolver(&mut self, resolver: Resolver) -> Result<(), String> {
        let q = Query::new(resolver.addr, HARNESS, ZONE, "SOA");
        let what = format!("{} ({}) resolving {ZONE}", resolver.name, resolver.addr);
        self.wait_soa(&what, &q, Duration::from_secs(20))
    }

    /// Polls `q` until it returns a SOA; stops at once when a started process has exited.
    fn wait_soa(&mut self, what: &str, q: &Query, timeout: Duration) -> Result<(), String> {
        let dig = self.tools.dig.clone();
        harness::wait_until(what, timeout, || {
            if let Err(e) = self.all_alive() {
                return Poll::Fatal(e);
            }
            let reply = q.run(&dig);
            if reply.status.as_deref() == Some("NOERROR") && !reply.answer_data("SOA").is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{}: {reply}", q.cmdline()))
            }
        })
    }

    fn print_logs(&self) {
        for proc in &self.procs {
            eprintln!(
                "lab: output of {} (pid {}):\n{}\n",
                proc.name(),
                proc.pid(),
                proc.log_tails(40)
            );
        }
    }

    fn ask(&self, query: &Query) -> Reply {
        query.run(&self.tools.dig)
    }

    //----------- Checks -------------------------------------------------------------------------

    /// SOA, NS, A, AAAA, NODATA and NXDOMAIN through each resolver over UDP and TCP.
    fn check_static_names(&self, checks: &mut Checks) {
        for resolver in RESOLVERS {
            for tcp in [false, true] {
                let ask = |name: &str, qtype: &'static str| {
                    let q = Query::new(resolver.addr, CLIENT_A, name, qtype).tcp(tcp);
                    let reply = self.ask(&q);
                    (q, reply)
                };
                let (q, r) = ask(ZONE, "SOA");
                checks.record(resolver.name, &q, &r, expect_soa(&r));
                let (q, r) = ask(ZONE, "NS");
                checks.record(
                    resolver.name,
                    &q,
                    &r,
                    expect_rrset(&r, "NS", &["ns1.registry.example."]),
                );
                let (q, r) = ask("www.registry.example.", "A");
                checks.record(
                    resolver.name,
                    &q,
                    &r,
                    expect_rrset(&r, "A", &["192.0.2.80"]),
                );
                let (q, r) = ask("www.registry.example.", "AAAA");
                checks.record(
                    resolver.name,
                    &q,
                    &r,
                    expect_rrset(&r, "AAAA", &["2001:db8::80"]),
                );
                let (q, r) = ask("v4only.registry.example.", "AAAA");
                checks.record(resolver.name, &q, &r, expect_negative(&r, "NOERROR"));
                // Signed by steerdns, a name that does not exist is a compact answer (RFC
                // 9824): NOERROR with nothing, validated; these resolvers (Unbound 1.17, BIND
                // 9.18) predate NXNAME and pass the NOERROR on. Unsigned (Knot stand-in):
                // NXDOMAIN.
                let (q, r) = ask("nope.registry.example.", "A");
                let verdict = match self.auth {
                    Auth::Steerdns(_) => expect_negative(&r, "NOERROR").and_then(|()| {
                        if r.has_flag("ad") {
                            Ok(())
                        } else {
                            Err("a compact denial, but not validated (no AD)".to_owned())
                        }
                    }),
                    Auth::Knot => expect_negative(&r, "NXDOMAIN"),
                };
                checks.record(resolver.name, &q, &r, verdict);
            }
        }
    }

    /// The TXT set at big.registry.example. (> 1232 bytes): the resolvers' EDNS buffer is 1232,
    /// so a complete answer through them means they refetched over TCP after truncation. Against
    /// steerdns directly, UDP with a 1232 buffer must be truncated (TC), TCP complete.
    fn check_large_answer(&self, checks: &mut Checks) {
        let expected = big_txt_strings();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        for resolver in RESOLVERS {
            for tcp in [false, true] {
                // over UDP the resolver's own reply is truncated too (max-udp-size 1232); dig
                // then retries over TCP, as any stub would
                let q =
                    Query::new(resolver.addr, CLIENT_A, "big.registry.example.", "TXT").tcp(tcp);
                let r = self.ask(&q);
                checks.record(resolver.name, &q, &r, expect_rrset(&r, "TXT", &expected));
            }
        }
        let mut q = Query::new(AUTH, CLIENT_A, "big.registry.example.", "TXT");
        q.norec = true;
        q.bufsize = Some(1232);
        q.ignore_tc = true;
        let r = self.ask(&q);
        let verdict = if r.status.as_deref() == Some("NOERROR") && r.has_flag("tc") {
            Ok(())
        } else {
            Err("expected a truncated (TC) UDP answer at a 1232-byte buffer".to_owned())
        };
        checks.record("direct", &q, &r, verdict);
        let mut q = Query::new(AUTH, CLIENT_A, "big.registry.example.", "TXT").tcp(true);
        q.norec = true;
        let r = self.ask(&q);
        checks.record("direct", &q, &r, expect_rrset(&r, "TXT", &expected));
    }

    /// steerdns asked directly with ECS: each /28 gets its own replica and a scope of /28 (the
    /// table entry that decided), never /0; a /0 source gets the answer for the packet source.
    fn check_steerdns_directly(&self, checks: &mut Checks) {
        let cases: [(Ipv4Addr, Option<&'static str>, usize, u8); 5] = [
            (CLIENT_C, Some("127.0.6.0/28"), WESTEUROPE, 28),
            (CLIENT_C, Some("127.0.6.16/28"), EASTUS, 28),
            (CLIENT_A, Some("127.0.6.32/28"), SOUTHEASTASIA, 28),
            (CLIENT_B, Some("0.0.0.0/0"), EASTUS, 0),
            (CLIENT_C, None, SOUTHEASTASIA, 0),
        ];
        for (client, subnet, region, scope) in cases {
            let mut q = Query::new(AUTH, client, GLOBAL, "A");
            q.norec = true;
            q.subnet = subnet;
            let r = self.ask(&q);
            let mut verdict = expect_region(&r, "A", region);
            if verdict.is_ok() && !r.has_flag("aa") {
                verdict = Err("expected an authoritative answer (AA)".to_owned());
            }
            if verdict.is_ok() {
                verdict = match (subnet, r.ecs) {
                    (Some(_), Some(ecs)) if ecs.scope == scope => Ok(()),
                    (Some(_), Some(ecs)) => {
                        Err(format!("expected ECS scope /{scope}, got /{}", ecs.scope))
                    }
                    (Some(_), None) => Err("expected an ECS option in the answer".to_owned()),
                    (None, _) => Ok(()),
                };
            }
            checks.record("direct", &q, &r, verdict);
        }
    }

    /// Through Unbound (ECS /28): A, B, C and A2 each get their own nearest replica, asked one
    /// right after the other (within the 2 s TTL), so a /0 or too-short scope would hand
    /// client A's cached answer to B and C, and a server ignoring ECS would send all of them
    /// to East US (Unbound's own address).
    fn check_clients_behind_unbound(&self, checks: &mut Checks) {
        let order = [
            (CLIENT_A, WESTEUROPE),
            (CLIENT_B, EASTUS),
            (CLIENT_C, SOUTHEASTASIA),
            (CLIENT_A2, WESTEUROPE),
        ];
        for tcp in [false, true] {
            for (client, region) in order {
                let q = Query::new(UNBOUND, client, GLOBAL, "A").tcp(tcp);
                let r = self.ask(&q);
                checks.record("unbound", &q, &r, expect_region(&r, "A", region));
            }
            for (client, region) in [(CLIENT_B, EASTUS), (CLIENT_A, WESTEUROPE)] {
                let q = Query::new(UNBOUND, client, GLOBAL, "AAAA").tcp(tcp);
                let r = self.ask(&q);
                checks.record("unbound", &q, &r, expect_region(&r, "AAAA", region));
            }
        }
    }

    /// Through BIND (no ECS): every client gets the answer for BIND's own address
    /// (127.0.5.4 -> Southeast Asia).
    fn check_clients_behind_bind(&self, checks: &mut Checks) {
        for tcp in [false, true] {
            for client in [CLIENT_A, CLIENT_B] {
                let q = Query::new(BIND, client, GLOBAL, "A").tcp(tcp);
                let r = self.ask(&q);
                checks.record("bind", &q, &r, expect_region(&r, "A", SOUTHEASTASIA));
            }
            let q = Query::new(BIND, CLIENT_A, GLOBAL, "AAAA").tcp(tcp);
            let r = self.ask(&q);
            checks.record("bind", &q, &r, expect_region(&r, "AAAA", SOUTHEASTASIA));
        }
    }

    /// The alias `pull CNAME contoso` through each resolver: the CNAME plus the per-client
    /// answer of the global name — each Unbound client /28 its own region (Unbound caches the
    /// chained answer by the scope steerdns gave the final record), every BIND client the
    /// region for BIND's address.
    fn check_alias_through_resolvers(&self, checks: &mut Checks) {
        for tcp in [false, true] {
            for (client, region) in [
                (CLIENT_A, WESTEUROPE),
                (CLIENT_B, EASTUS),
                (CLIENT_C, SOUTHEASTASIA),
                (CLIENT_A2, WESTEUROPE),
            ] {
                let q = Query::new(UNBOUND, client, ALIAS, "A").tcp(tcp);
                let r = self.ask(&q);
                checks.record("unbound", &q, &r, expect_alias(&r, "A", region));
            }
            let q = Query::new(UNBOUND, CLIENT_B, ALIAS, "AAAA").tcp(tcp);
            let r = self.ask(&q);
            checks.record("unbound", &q, &r, expect_alias(&r, "AAAA", EASTUS));
            for client in [CLIENT_A, CLIENT_B] {
                let q = Query::new(BIND, client, ALIAS, "A").tcp(tcp);
                let r = self.ask(&q);
                checks.record("bind", &q, &r, expect_alias(&r, "A", SOUTHEASTASIA));
            }
        }
    }

    /// Failing the nearest replica's deep health moves the answer seen through each resolver
    /// within interval × failure_threshold + TTL (+ slack); recovery moves it back within
    /// interval × success_threshold + TTL (+ slack).
    fn check_failover(&self, checks: &mut Checks) {
        // steerdns must be probing the replicas at all
        let probed =
            harness::wait_until("deep-health probes of every replica", INTERVAL * 5, || {
                let counts: Vec<u64> = self.replicas.iter().map(|r| r.hits(REGISTRY)).collect();
                if counts.iter().all(|&n| n >= u64::from(SUCCESS_THRESHOLD)) {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!(
                        "probes seen per replica (westeurope, eastus, southeastasia): {counts:?}"
                    ))
                }
            });
        if let Err(e) = probed {
            checks.fail(format!(
                "[replicas] steerdns does not probe the deep-health URLs: {e}"
            ));
            return;
        }
        let fail_within = INTERVAL * FAILURE_THRESHOLD + TTL + SLACK;
        let recover_within = INTERVAL * SUCCESS_THRESHOLD + TTL + SLACK;

        // 1. West Europe fails: client A behind Unbound moves to East US, and back.
        self.flip(
            checks,
            WESTEUROPE,
            true,
            fail_within,
            &[("unbound", UNBOUND, CLIENT_A, EASTUS)],
        );
        self.flip(
            checks,
            WESTEUROPE,
            false,
            recover_within,
            &[("unbound", UNBOUND, CLIENT_A, WESTEUROPE)],
        );

        // 2. Southeast Asia fails: BIND (its own address: next is West Europe) and client C
        //    behind Unbound (next is East US) move, and back.
        self.flip(
            checks,
            SOUTHEASTASIA,
            true,
            fail_within,
            &[
                ("bind", BIND, CLIENT_A, WESTEUROPE),
                ("unbound", UNBOUND, CLIENT_C, EASTUS),
            ],
        );
        self.flip(
            checks,
            SOUTHEASTASIA,
            false,
            recover_within,
            &[
                ("bind", BIND, CLIENT_A, SOUTHEASTASIA),
                ("unbound", UNBOUND, CLIENT_C, SOUTHEASTASIA),
            ],
        );
    }

    /// DNSSEC through validating resolvers (the parent signed by Knot with the DS of
    /// steerdns's key, the parent's KSK as trust anchor): the steered name from three client
    /// networks, static names, NODATA and names that do not exist all come back with AD; after
    /// NXDOMAIN for neighbouring names under aggressive NSEC caching (Unbound), every name
    /// still resolves, validated; a corrupted signature is SERVFAIL while the zone's other
    /// data still validates.
    fn check_dnssec(&self, checks: &mut Checks) {
        let validated = |r: &Reply| -> Result<(), String> {
            if r.has_flag("ad") {
                Ok(())
            } else {
                Err("not validated: no AD flag".to_owned())
            }
        };
        // The steered name: each Unbound client its own region, BIND its own; all validated.
        for (resolver, server, client, want) in [
            ("unbound", UNBOUND, CLIENT_A, WESTEUROPE),
            ("unbound", UNBOUND, CLIENT_B, EASTUS),
            ("unbound", UNBOUND, CLIENT_C, SOUTHEASTASIA),
            ("bind", BIND, CLIENT_A, SOUTHEASTASIA),
        ] {
            let q = Query::new(server, client, GLOBAL, "A");
            let r = self.ask(&q);
            let verdict = expect_region(&r, "A", want).and_then(|()| validated(&r));
            checks.record(resolver, &q, &r, verdict);
        }
        for resolver in RESOLVERS {
            // Data, NODATA (a static name, the steered name) and a name that does not exist
            // (a compact answer: NOERROR, or NXDOMAIN from a resolver that knows NXNAME).
            for (name, qtype, want) in [
                ("www.registry.example.", "A", "data"),
                ("registry.example.", "DNSKEY", "data"),
                ("www.registry.example.", "TXT", "nodata"),
                (GLOBAL, "TXT", "nodata"),
                ("nope.registry.example.", "A", "none"),
            ] {
                let q = Query::new(resolver.addr, CLIENT_A, name, qtype);
                let r = self.ask(&q);
                let shape = match want {
                    "data" => expect_status(&r, "NOERROR").and_then(|()| {
                        if r.answer_data(qtype).is_empty() {
                            Err(format!("no {qtype} in the answer"))
                        } else {
                            Ok(())
                        }
                    }),
                    _ => match r.status.as_deref() {
                        Some("NOERROR") | Some("NXDOMAIN") if r.answer.is_empty() => Ok(()),
                        Some("NXDOMAIN") if want == "none" => Ok(()),
                        other => Err(format!("expected a validated denial, got {other:?}")),
                    },
                };
                checks.record(resolver.name, &q, &r, shape.and_then(|()| validated(&r)));
            }
        }
        // RFC 8198: Unbound caches the NSEC of each denial and may deny from it. Names next to
        // the steered and static names do not exist; afterwards every real name still
        // resolves, validated (a wrong next owner in a proof would deny them now).
        for name in [
            "contosn.registry.example.",
            "contoso0.registry.example.",
            "contosp.registry.example.",
            "a.contoso.registry.example.",
            "www0.registry.example.",
            "wwv.registry.example.",
            "pulk.registry.example.",
            "zzz.registry.example.",
        ] {
            let q = Query::new(UNBOUND, CLIENT_A, name, "A");
            let r = self.ask(&q);
            let verdict = if r.answer.is_empty() && r.status.is_some() {
                validated(&r)
            } else {
                Err("expected a denial".to_owned())
            };
            checks.record("unbound", &q, &r, verdict);
        }
        for (name, qtype) in [
            (GLOBAL, "A"),
            (GLOBAL, "AAAA"),
            (ALIAS, "A"),
            ("www.registry.example.", "A"),
            ("www.registry.example.", "AAAA"),
            ("v4only.registry.example.", "A"),
            ("registry.example.", "SOA"),
        ] {
            let q = Query::new(UNBOUND, CLIENT_A, name, qtype);
            let r = self.ask(&q);
            let verdict = expect_status(&r, "NOERROR").and_then(|()| {
                if r.answer_data(qtype).is_empty() {
                    Err(format!("{qtype} denied after the neighbours' denials"))
                } else {
                    validated(&r)
                }
            });
            checks.record("unbound", &q, &r, verdict);
        }
        // A corrupted signature: SERVFAIL through both; the zone's SOA (not tampered) still
        // validates, so the failure is the signature's.
        for resolver in RESOLVERS {
            let q = Query::new(resolver.addr, CLIENT_A, "www.tampered.example.", "A");
            let r = self.ask(&q);
            checks.record(resolver.name, &q, &r, expect_status(&r, "SERVFAIL"));
            let q = Query::new(resolver.addr, CLIENT_A, "tampered.example.", "SOA");
            let r = self.ask(&q);
            let verdict = expect_status(&r, "NOERROR").and_then(|()| validated(&r));
            checks.record(resolver.name, &q, &r, verdict);
        }
    }

    /// DNSViz analyses the chain as an operator's check would: `dnsviz probe` through Unbound
    /// (which knows the fake root; the ancestry from `example.`), then `dnsviz grok`: no
    /// errors or warnings for the zone, the steered name, a static name and a name that does
    /// not exist, and their signatures VALID.
    fn check_dnsviz(&self, checks: &mut Checks) {
        let Some(dnsviz) = harness::find_tool("dnsviz") else {
            checks.fail("[dnsviz] dnsviz is missing (Debian package dnsviz)".into());
            return;
        };
        let dir = self.dir();
        // Bounded: dnsviz asks its own resolver for what it is not told, and the lab has no
        // network; through Unbound (which knows the fake root) it needs none.
        let probe = Command::new("timeout")
            .arg("60")
            .arg(&dnsviz)
            .args(["probe", "-a", "example.", "-s"])
            .arg(UNBOUND.to_string())
            .args(["-o"])
            .arg(dir.join("dnsviz-probe.json"))
            .args([
                ZONE,
                GLOBAL,
                "www.registry.example.",
                "nope.registry.example.",
            ])
            .output();
        match probe {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return checks.fail(format!(
                    "[dnsviz] probe failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            Err(e) => return checks.fail(format!("[dnsviz] probe: {e}")),
        }
        // Without `-t`: Debian's dnsviz 0.9.4 refuses trusted keys with its pygraphviz 1.7
        // ("pygraphviz is required": it looks for `pygraphviz.release`, gone in 1.7). The
        // analysis still checks every signature against the DNSKEYs and every denial.
        let grok = Command::new("timeout")
            .arg("60")
            .arg(&dnsviz)
            .arg("grok")
            .arg("-r")
            .arg(dir.join("dnsviz-probe.json"))
            .output();
        let text = match grok {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => {
                return checks.fail(format!(
                    "[dnsviz] grok failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            Err(e) => return checks.fail(format!("[dnsviz] grok: {e}")),
        };
        let _ = fs::write(dir.join("dnsviz-grok.json"), &text);
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            return checks.fail(format!("[dnsviz] grok's output is not JSON:\n{text}"));
        };
        // Every "errors" and "warnings" list anywhere in the analysis, and how many
        // signatures it found VALID.
        fn walk(v: &serde_json::Value, path: &str, found: &mut Vec<String>, valid: &mut usize) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, x) in m {
                        if k == "errors" || k == "warnings" {
                            found.push(format!("{path}/{k}: {x}"));
                        }
                        if k == "status" && x == "VALID" {
                            *valid += 1;
                        }
                        walk(x, &format!("{path}/{k}"), found, valid);
                    }
                }
                serde_json::Value::Array(a) => {
                    for (i, x) in a.iter().enumerate() {
                        walk(x, &format!("{path}[{i}]"), found, valid);
                    }
                }
                _ => {}
            }
        }
        let (mut found, mut valid) = (Vec::new(), 0);
        walk(&json, "", &mut found, &mut valid);
        let names = [
            ZONE,
            GLOBAL,
            "www.registry.example.",
            "nope.registry.example.",
        ];
        let analysed = names.iter().all(|n| json.get(n).is_some());
        if found.is_empty() && analysed && valid >= 10 {
            checks.passed += 1;
            eprintln!("lab: dnsviz grok: no errors or warnings, {valid} signatures VALID");
        } else {
            checks.fail(format!(
                "[dnsviz] grok: {} error/warning list(s), {valid} signatures VALID, every name analysed: {analysed}:\n{}",
                found.len(),
                found.join("\n")
            ));
        }
    }

    /// The documented rollovers (docs/dnssec.md), step by step, with `steerdns dnssec keygen`,
    /// `settime` and reloads, through both validating resolvers (which cache nothing longer
    /// than 4 s here): after each step, for longer than the resolvers' caches last, the
    /// steered name, a static name and a denial stay validated (AD) — no validation failure at
    /// any step. A ZSK is introduced and then rolled by pre-publication; the KSK by double DS
    /// (the parent's DS set changed in its zone file, Knot reloaded).
    fn check_rollovers(&mut self, checks: &mut Checks) {
        let Auth::Steerdns(bin) = self.auth.clone() else {
            return;
        };
        let keys = self.dir().join("keys");
        let keys_s = keys.display().to_string();
        let steerdns = |args: &[&str]| steerdns_cli(&bin, args);
        // A pre-published ZSK: in the DNSKEY RRset, signing from an hour on (until settime).
        let new_zsk = || {
            steerdns(&[
                "dnssec",
                "keygen",
                ZONE,
                "--zsk",
                "--activate",
                "+1h",
                "--dir",
                &keys_s,
            ])
        };
        let tag_of = |stem: &str| -> String {
            stem.rsplit('+')
                .next()
                .unwrap_or("")
                .trim_start_matches('0')
                .to_owned()
        };
        let key_file = |stem: &str| format!("{stem}.key");
        let Some(csk) = fs::read_dir(&keys).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path().display().to_string())
                .find(|p| p.contains("Kregistry.example.+") && p.ends_with(".key"))
                .map(|p| p.trim_end_matches(".key").to_owned())
        }) else {
            checks.fail("[rollover] the lab's key for registry.example. is missing".into());
            return;
        };
        let mut step = |lab: &mut Lab,
                        what: &str,
                        act: &dyn Fn() -> Result<(), String>,
                        want_tag: &str,
                        want_keys: usize,
                        reload_parent: bool| {
            if let Err(e) = act() {
                checks.fail(format!("[rollover] {what}: {e}"));
                return;
            }
            if reload_parent && let Err(e) = lab.reload_parent() {
                checks.fail(format!("[rollover] {what}: {e}"));
                return;
            }
            if let Err(e) = lab.reload_steerdns(want_tag, want_keys) {
                checks.fail(format!("[rollover] {what}: {e}"));
                return;
            }
            lab.validated_for(checks, what, Duration::from_secs(6));
        };
        // ZSK 1, pre-published, then signing.
        let zsk1 = match new_zsk() {
            Ok(s) => s,
            Err(e) => return checks.fail(format!("[rollover] {e}")),
        };
        let csk_tag = tag_of(&csk);
        step(
            self,
            "a ZSK published, not signing",
            &|| Ok(()),
            &csk_tag,
            2,
            false,
        );
        let activate1 =
            || steerdns(&["dnssec", "settime", &key_file(&zsk1), "--activate", "now"]).map(drop);
        step(
            self,
            "the ZSK signing",
            &activate1,
            &tag_of(&zsk1),
            2,
            false,
        );
        // ZSK 1 -> ZSK 2 by pre-publication.
        let zsk2 = match new_zsk() {
            Ok(s) => s,
            Err(e) => return checks.fail(format!("[rollover] {e}")),
        };
        step(
            self,
            "ZSK 2 published",
            &|| Ok(()),
            &tag_of(&zsk1),
            3,
            false,
        );
        let swap = || {
            steerdns(&["dnssec", "settime", &key_file(&zsk2), "--activate", "now"])?;
            steerdns(&["dnssec", "settime", &key_file(&zsk1), "--inactive", "now"]).map(drop)
        };
        step(
            self,
            "ZSK 2 signing, ZSK 1 still published",
            &swap,
            &tag_of(&zsk2),
            3,
            false,
        );
        let remove1 =
            || steerdns(&["dnssec", "settime", &key_file(&zsk1), "--delete", "now"]).map(drop);
        step(self, "ZSK 1 removed", &remove1, &tag_of(&zsk2), 2, false);
        // KSK by double DS: a new KSK signs the DNSKEY RRset beside the old one, its DS joins
        // the parent's, the old KSK goes, then its DS.
        let ksk = match steerdns(&["dnssec", "keygen", ZONE, "--dir", &keys_s]) {
            Ok(s) => s,
            Err(e) => return checks.fail(format!("[rollover] {e}")),
        };
        step(
            self,
            "KSK 2 published and signing the keys",
            &|| Ok(()),
            &tag_of(&zsk2),
            3,
            false,
        );
        let parent = self.dir().join("example.zone");
        // One key's DS record, as `steerdns dnssec ds` prints it.
        let ds_of = |stem: &str| -> Result<String, String> {
            steerdns::dnssec::Key::read(Path::new(&key_file(stem)), Some(ZONE))
                .map(|k| k.ds())
                .map_err(|e| e.to_string())
        };
        let add_ds = || {
            let ds = ds_of(&ksk)?;
            let mut text = fs::read_to_string(&parent).map_err(|e| e.to_string())?;
            text.push_str(&format!("{ds}\n"));
            fs::write(&parent, text).map_err(|e| e.to_string())
        };
        step(
            self,
            "both DS at the parent",
            &add_ds,
            &tag_of(&zsk2),
            3,
            true,
        );
        let retire =
            || steerdns(&["dnssec", "settime", &key_file(&csk), "--delete", "now"]).map(drop);
        step(
            self,
            "the old KSK removed",
            &retire,
            &tag_of(&zsk2),
            2,
            false,
        );
        let drop_ds = || {
            let old = ds_of(&csk)?;
            let text = fs::read_to_string(&parent).map_err(|e| e.to_string())?;
            let kept: Vec<&str> = text.lines().filter(|l| l.trim() != old.trim()).collect();
            if kept.len() == text.lines().count() {
                return Err("the old DS is not in the parent zone".into());
            }
            fs::write(&parent, kept.join("\n") + "\n").map_err(|e| e.to_string())
        };
        step(
            self,
            "the old DS removed from the parent",
            &drop_ds,
            &tag_of(&zsk2),
            2,
            true,
        );
    }

    /// SIGHUP to steerdns, then wait until it serves `keys` DNSKEYs and signs www's A with
    /// key `tag`.
    fn reload_steerdns(&mut self, tag: &str, keys: usize) -> Result<(), String> {
        let pid = self
            .procs
            .iter()
            .find(|p| p.name() == "steerdns")
            .map(|p| p.pid().to_string())
            .ok_or("steerdns is not running")?;
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .map_err(|e| e.to_string())?;
        let dig = self.tools.dig.clone();
        harness::wait_until(
            "steerdns reloaded with the new keys",
            Duration::from_secs(10),
            || {
                let short = |name: &str, t: &str| {
                    Command::new(&dig)
                        .args(["+short", "+dnssec", "+norec", "+time=1", "+tries=1", "-b"])
                        .arg(HARNESS.to_string())
                        .arg(format!("@{AUTH}"))
                        .args([name, t])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default()
                };
                let dnskeys = short(ZONE, "DNSKEY")
                    .lines()
                    .filter(|l| l.starts_with("256 ") || l.starts_with("257 "))
                    .count();
                let sig = short("www.registry.example.", "A");
                let signed_by = sig
                    .lines()
                    .filter(|l| l.starts_with("A "))
                    .any(|l| l.split_whitespace().nth(6) == Some(tag));
                if dnskeys == keys && signed_by {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{dnskeys} DNSKEYs (want {keys}); www A: {sig}"))
                }
            },
        )
    }

    /// `knotc zone-reload example.`: Knot reads the parent's zone file again and signs it.
    fn reload_parent(&mut self) -> Result<(), String> {
        let knotc = harness::find_tool("knotc").ok_or("knotc is missing")?;
        let sock = self.dir().join("knot-parent").join("knot.sock");
        let out = Command::new(knotc)
            .arg("-s")
            .arg(&sock)
            .args(["zone-reload", "example."])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "knotc zone-reload: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// For `span` (longer than the resolvers' caches), every 0.5 s through both resolvers:
    /// the steered name, a static name and a denial validated (AD).
    fn validated_for(&self, checks: &mut Checks, what: &str, span: Duration) {
        let end = Instant::now() + span;
        let mut failed = false;
        while Instant::now() < end && !failed {
            for (via, server) in [("unbound", UNBOUND), ("bind", BIND)] {
                for (name, qtype) in [
                    (GLOBAL, "A"),
                    ("www.registry.example.", "A"),
                    ("nope.registry.example.", "A"),
                ] {
                    let q = Query::new(server, CLIENT_A, name, qtype);
                    let r = self.ask(&q);
                    if !r.has_flag("ad") || r.status.as_deref() != Some("NOERROR") {
                        checks.record(
                            via,
                            &q,
                            &r,
                            Err(format!(
                                "during the rollover step \"{what}\": not validated"
                            )),
                        );
                        failed = true;
                    }
                }
            }
            thread::sleep(Duration::from_millis(500));
        }
        if !failed {
            checks.passed += 1;
            eprintln!("lab: rollover step \"{what}\": validated throughout");
        }
    }

    /// Fails (or recovers) one replica, then polls each (resolver, client) until it sees the
    /// expected replica or `within` has passed since the flip.
    fn flip(
        &self,
        checks: &mut Checks,
        replica: usize,
        failed: bool,
        within: Duration,
        watch: &[(&'static str, Ipv4Addr, Ipv4Addr, usize)],
    ) {
        let action = if failed { "failed" } else { "recovered" };
        // the deep check fails on a backing dependency while the front door stays up: the
        // outage a shallow check misses
        if failed {
            self.replicas[replica].fail("storage", Some(REGISTRY));
        } else {
            self.replicas[replica].recover(Some("storage"), Some(REGISTRY));
        }
        let flipped = Instant::now();
        let deadline = flipped + within;
        for &(resolver, server, client, want) in watch {
            let q = Query::new(server, client, GLOBAL, "A");
            let mut seen: Vec<String> = Vec::new();
            let outcome = loop {
                let r = self.ask(&q);
                let got = r.answer_data("A").join(" ");
                let label = format!(
                    "{} ({})",
                    if got.is_empty() { "-" } else { &got },
                    region_of(&got)
                );
                if seen.last() != Some(&label) {
                    seen.push(label);
                }
                // steerdns signs the new answer: the resolvers validate it (AD) as before.
                let signed = matches!(self.auth, Auth::Steerdns(_));
                if expect_region(&r, "A", want).is_ok() && (!signed || r.has_flag("ad")) {
                    break Ok((r, flipped.elapsed()));
                }
                if Instant::now() >= deadline {
                    break Err(r);
                }
                thread::sleep(Duration::from_millis(200));
            };
            match outcome {
                Ok((r, took)) => {
                    eprintln!(
                        "lab: {} {action}: {resolver} client {client} -> {} after {took:.1?}",
                        REGIONS[replica].name, REGIONS[want].name
                    );
                    checks.record(resolver, &q, &r, Ok(()));
                }
                Err(r) => checks.record(
                    resolver,
                    &q,
                    &r,
                    Err(format!(
                        "after replica {} {action}, expected {} ({}) within {within:?}; answers \
                         seen in turn: {}",
                        REGIONS[replica].name,
                        REGIONS[want].name,
                        REGIONS[want].v4,
                        seen.join(" -> ")
                    )),
                ),
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // resolvers first, then the authoritatives
        while let Some(mut proc) = self.procs.pop() {
            proc.stop();
        }
        self.tamper = None;
        self.lo_addr = None;
        let keep = self.keep_dir
            || thread::panicking()
            || std::env::var("STEERDNS_LAB_KEEP").is_ok_and(|v| v == "1");
        if let Some(dir) = self.dir.take()
            && keep
        {
            let path = dir.keep();
            eprintln!("lab: run directory kept at {}", path.display());
        }
    }
}

/// `steerdns ARGS` (an offline command of the binary under test): its output, trimmed.
fn steerdns_cli(bin: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "steerdns {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

//----------- Expectations -----------------------------------------------------------------------

/// Collected check results: every check runs, failures are reported together at the end.
#[derive(Default)]
struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    fn record(&mut self, via: &str, q: &Query, r: &Reply, verdict: Result<(), String>) {
        match verdict {
            Ok(()) => self.passed += 1,
            Err(why) => self.failed.push(format!(
                "[{via} @{} {}] client {} asked {} {}: {why}\n    got:     {}\n    command: {}",
                q.server,
                q.transport(),
                q.client,
                q.qtype,
                q.name,
                r.summary(),
                q.cmdline()
            )),
        }
    }

    fn fail(&mut self, message: String) {
        self.failed.push(message);
    }
}

fn expect_status(r: &Reply, status: &str) -> Result<(), String> {
    match r.status.as_deref() {
        Some(s) if s == status => Ok(()),
        Some(s) => Err(format!("expected {status}, got {s}")),
        None => Err(format!("expected {status}, got no reply")),
    }
}

/// NOERROR with exactly `expected` as the answer records of `rtype`.
fn expect_rrset(r: &Reply, rtype: &str, expected: &[&str]) -> Result<(), String> {
    expect_status(r, "NOERROR")?;
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    let got = r.answer_data(rtype);
    if got == want {
        Ok(())
    } else {
        Err(format!("expected {rtype} {want:?}, got {got:?}"))
    }
}

/// The zone's SOA as in tests/lab/zones/registry.example.zone.
fn expect_soa(r: &Reply) -> Result<(), String> {
    expect_status(r, "NOERROR")?;
    let got = r.answer_data("SOA");
    match got.as_slice() {
        [soa]
            if soa
                .starts_with("ns1.registry.example. hostmaster.registry.example. 2026112701 ") =>
        {
            Ok(())
        }
        _ => Err(format!(
            "expected the registry.example. SOA (serial 2026112701), got {got:?}"
        )),
    }
}

/// NXDOMAIN or NODATA: the given status, no answer, and the zone's SOA in the authority
/// section (RFC 2308).
fn expect_negative(r: &Reply, status: &str) -> Result<(), String> {
    expect_status(r, status)?;
    if !r.answer.is_empty() {
        return Err(format!(
            "expected an empty answer section, got {} record(s)",
            r.answer.len()
        ));
    }
    if r.authority
        .iter()
        .any(|rr| rr.rtype == "SOA" && rr.name == ZONE)
    {
        Ok(())
    } else {
        Err(format!("expected the {ZONE} SOA in the authority section"))
    }
}

/// NOERROR with exactly the region's address of `qtype` (`answers = 1`), TTL at most the
/// registry's.
fn expect_region(r: &Reply, qtype: &str, region: usize) -> Result<(), String> {
    let want = &REGIONS[region];
    let addr = if qtype == "AAAA" { want.v6 } else { want.v4 };
    expect_status(r, "NOERROR")?;
    let got = r.answer_data(qtype);
    if got != [addr] {
        let names: Vec<&str> = got.iter().map(|a| region_of(a)).collect();
        return Err(format!(
            "expected {qtype} {addr} ({}), got {got:?} {names:?}",
            want.name
        ));
    }
    let ttl = r.answer.iter().map(|rr| rr.ttl).max().unwrap_or(0);
    if u64::from(ttl) > TTL.as_secs() {
        return Err(format!(
            "expected TTL <= {}s (the registry's), got {ttl}",
            TTL.as_secs()
        ));
    }
    Ok(())
}

/// The alias's CNAME to the global name, then exactly the region's address of `qtype` with
/// at most the registry's TTL.
fn expect_alias(r: &Reply, qtype: &str, region: usize) -> Result<(), String> {
    expect_status(r, "NOERROR")?;
    let cname = r.answer_data("CNAME");
    if cname != [GLOBAL] {
        return Err(format!("expected CNAME {GLOBAL}, got {cname:?}"));
    }
    let want = &REGIONS[region];
    let addr = if qtype == "AAAA" { want.v6 } else { want.v4 };
    let got: Vec<(&str, &str, u32)> = r
        .answer
        .iter()
        .filter(|rr| rr.rtype == qtype)
        .map(|rr| (rr.name.as_str(), rr.rdata.as_str(), rr.ttl))
        .collect();
    match got.as_slice() {
        [(name, a, ttl)] if *name == GLOBAL && *a == addr && u64::from(*ttl) <= TTL.as_secs() => {
            Ok(())
        }
        _ => Err(format!(
            "expected {GLOBAL} {qtype} {addr} ({}) with TTL <= {}s, got {got:?}",
            want.name,
            TTL.as_secs()
        )),
    }
}

/// The TXT strings at big.registry.example., read from the lab's zone file.
fn big_txt_strings() -> Vec<String> {
    let path = harness::lab_src()
        .join("zones")
        .join("registry.example.zone");
    let zone = fs::read_to_string(&path).expect("lab zone file");
    let strings: Vec<String> = zone
        .lines()
        .filter(|l| l.starts_with("big ") && l.contains(" TXT "))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    let bytes: usize = strings.iter().map(|s| s.len() + 13).sum();
    assert!(
        bytes > 1232,
        "big.registry.example. must exceed 1232 bytes, has ~{bytes}"
    );
    strings
}
