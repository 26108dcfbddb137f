//! Global names in the zone tree: a CNAME (or a chain) in our zones that reaches a global name
//! gets the chain plus the global name's per-client answer; every ancestor of a global name
//! below its apex is an empty non-terminal; a wildcard never answers at or below them; a global
//! name at a zone apex answers A, AAAA and ANY per client, the zone everything else.
//!
//! Each behaviour is asked through `dns::handle` on a loaded snapshot (no sockets), then once
//! with the real `dig` over UDP; the empty non-terminals follow catalog puts and deletes sent
//! through the writer's commands (what the admin API's `PUT`/`DELETE /v1/registries/KEY` send).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use steerdns::admin::context::{Command, OverrideAction, OverrideCommand};
use steerdns::dns::{Transport, handle};
use steerdns::metrics::DnsCounters;
use steerdns::overrides::Target;
use steerdns::routing::ReplicaMask;
use steerdns::state::view::RegistryRequest;
use steerdns::state::{HealthMasks, Snapshot};

use crate::support::*;

//----------- The tree ----------------------------------------------------------------------------

const REGISTRY_ZONE: &str = "$ORIGIN registry.example.\n$TTL 3600\n\
@ SOA ns1 hostmaster 1 3600 600 1209600 60\n\
@ NS ns1\n\
ns1 A 127.0.0.1\n\
www A 192.0.2.80\n\
pull CNAME contoso\n\
pull2 CNAME pull\n\
viacn CNAME cn\n\
cn-westeurope A 192.0.2.40\n\
* A 192.0.2.98\n\
* TXT \"wildcard text\"\n\
*.wild CNAME contoso\n";

/// Another of our zones: an alias across zones, and no wildcard (so NXDOMAIN shows).
const OTHER_ZONE: &str = "$ORIGIN other.example.\n$TTL 3600\n\
@ SOA ns1.registry.example. hostmaster 1 3600 600 1209600 30\n\
@ NS ns1.registry.example.\n\
alias CNAME contoso.registry.example.\n";

/// A zone whose apex is a global name: SOA, NS, MX and TXT stay zone data.
const APEX_ZONE: &str = "$ORIGIN apex.example.\n$TTL 3600\n\
@ SOA ns1.registry.example. hostmaster 1 3600 600 1209600 45\n\
@ NS ns1.registry.example.\n\
@ MX 10 mail.registry.example.\n\
@ TXT \"apex text\"\n\
www CNAME apex.example.\n";

/// Three replicas with A and AAAA, in the demo's regions (the latency table puts 127.0.1.x
/// and 192.0.2.0/24 nearest westeurope, 127.0.2.x and 198.51.100.0/24 nearest eastus).
fn replicas(table: &str, last: u8) -> String {
    [
        ("westeurope", "192.0.2", "2001:db8:"),
        ("eastus", "198.51.100", "2001:db8:1:"),
        ("southeastasia", "203.0.113", "2001:db8:2:"),
    ]
    .iter()
    .map(|(region, v4, v6)| {
        format!("[{table}.replicas.{region}]\nipv4 = [\"{v4}.{last}\"]\nipv6 = [\"{v6}:{last}\"]\n")
    })
    .collect()
}

fn config(zones: &std::path::Path) -> String {
    let geo = repo().join("geo");
    format!(
        "version = 1\n[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {zones:?}\ngeo_dir = {geo:?}\n\
         [routing]\nlatency_table = \"latency.csv\"\n\
         default_order = [\"westeurope\", \"eastus\", \"southeastasia\"]\n\
         [regions.westeurope]\n[regions.eastus]\n[regions.southeastasia]\n\
         [catalog]\nfile = \"registries.csv\"\n\
         [templates.fleet]\nttl = \"7s\"\n{fleet}\
         [registries.contoso]\nname = \"contoso.registry.example.\"\nttl = \"5s\"\n{contoso}\
         [registries.fab]\nname = \"fab.eu.registry.example.\"\n{fab}\
         [registries.apex]\nname = \"apex.example.\"\nttl = \"9s\"\n{apex}\
         [registries.cn]\nname = \"cn.registry.example.\"\n\
         [registries.cn.replicas.westeurope]\ncname = \"cn-westeurope.registry.example.\"\n",
        fleet = replicas("templates.fleet", 70),
        contoso = replicas("registries.contoso", 10),
        fab = replicas("registries.fab", 11),
        apex = replicas("registries.apex", 12),
    )
}

/// The tree's files in a temporary directory: (directory, config path).
fn files(long_chain: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).expect("mkdir");
    let mut registry = REGISTRY_ZONE.to_string();
    if long_chain {
        registry.push_str(&long_chain_records());
    }
    for (file, text) in [
        ("registry.example.zone", registry.as_str()),
        ("other.example.zone", OTHER_ZONE),
        ("apex.example.zone", APEX_ZONE),
    ] {
        std::fs::write(zones.join(file), text).expect("zone");
    }
    std::fs::write(
        dir.path().join("registries.csv"),
        "key,name,template,depends_on,ttl,answers\n",
    )
    .expect("catalog");
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, config(&zones)).expect("config");
    (dir, path)
}

fn tree() -> (tempfile::TempDir, Snapshot) {
    let (dir, path) = files(true);
    let snap = Snapshot::load(&path).unwrap_or_else(|e| panic!("loads:\n{e}"));
    (dir, snap)
}

/// Seven CNAMEs with long labels, `long1` → … → `long7` → contoso: more than 512 octets.
fn long_chain_records() -> String {
    let label = |i: usize| format!("long{i}-{}", "x".repeat(56));
    let mut text = String::new();
    for i in 1..=7 {
        let target = if i == 7 {
            "contoso".to_string()
        } else {
            label(i + 1)
        };
        let owner = if i == 1 { "long".to_string() } else { label(i) };
        text.push_str(&format!("{owner} CNAME {target}\n"));
    }
    text
}

//----------- Asking without sockets --------------------------------------------------------------

fn ask_over(snap: &Snapshot, q: &Message, source: &str, transport: Transport) -> Message {
    let mut out = Vec::new();
    handle(
        snap,
        &q.to_vec().expect("query"),
        source.parse::<IpAddr>().expect("ip"),
        transport,
        &mut out,
        &DnsCounters::default(),
    )
    .expect("an answer");
    Message::from_vec(&out).expect("decodable answer")
}

fn ask(snap: &Snapshot, name: &str, t: RecordType, source: &str) -> Message {
    ask_over(snap, &query(name, t, None), source, Transport::Udp)
}

fn ask_ecs(snap: &Snapshot, name: &str, t: RecordType, subnet: &str) -> Message {
    ask_over(
        snap,
        &query(name, t, Some(edns_ecs(subnet))),
        "127.0.3.1",
        Transport::Udp,
    )
}

/// A record as `owner ttl TYPE rdata`.
fn rr(r: &Record) -> String {
    format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data)
}

fn answers(m: &Message) -> Vec<String> {
    m.answers.iter().map(rr).collect()
}

fn authority(m: &Message) -> Vec<String> {
    m.authorities.iter().map(rr).collect()
}

const CONTOSO: &str = "contoso.registry.example.";
const PULL: &str = "pull.registry.example. 3600 CNAME contoso.registry.example.";

/// NOERROR, AA, not truncated.
fn assert_authoritative(m: &Message, what: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{what}");
    assert!(m.metadata.authoritative, "{what}: AA");
    assert!(!m.metadata.truncation, "{what}: TC");
}

//----------- CNAME to a global name --------------------------------------------------------------

#[test]
fn an_alias_gets_its_chain_and_the_per_client_answer_of_the_global_name() {
    let (_dir, snap) = tree();
    for (client, v4, v6) in [
        ("127.0.1.1", "192.0.2.10", "2001:db8::10"),
        ("127.0.2.1", "198.51.100.10", "2001:db8:1::10"),
    ] {
        for (t, addr) in [(RecordType::A, v4), (RecordType::AAAA, v6)] {
            let direct = ask(&snap, CONTOSO, t, client);
            let last = format!("{CONTOSO} 5 {t} {addr}");
            assert_eq!(
                answers(&direct),
                std::slice::from_ref(&last),
                "{client} {t}"
            );
            for (alias, chain) in [
                ("pull.registry.example.", vec![PULL]),
                (
                    "pull2.registry.example.",
                    vec![
                        "pull2.registry.example. 3600 CNAME pull.registry.example.",
                        PULL,
                    ],
                ),
                (
                    "alias.other.example.",
                    vec!["alias.other.example. 3600 CNAME contoso.registry.example."],
                ),
                (
                    "x.y.wild.registry.example.",
                    vec!["x.y.wild.registry.example. 3600 CNAME contoso.registry.example."],
                ),
            ] {
                let m = ask(&snap, alias, t, client);
                assert_authoritative(&m, alias);
                let mut want: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
                want.push(last.clone());
                assert_eq!(answers(&m), want, "{alias} {t} from {client}");
                assert!(m.authorities.is_empty(), "{alias}");
            }
        }
    }
    // 0x20: the question and the alias's owner come back as asked; TCP answers the same.
    let q = query("PuLl.ReGiStRy.ExAmPlE.", RecordType::A, None);
    let m = ask_over(&snap, &q, "127.0.1.1", Transport::Tcp);
    assert_eq!(m.queries[0].name().to_string(), "PuLl.ReGiStRy.ExAmPlE.");
    assert_eq!(m.answers[0].name.to_string(), "PuLl.ReGiStRy.ExAmPlE.");
    assert_eq!(answers(&m)[1], format!("{CONTOSO} 5 A 192.0.2.10"));
}

#[test]
fn the_ecs_scope_is_the_one_that_decided_the_final_answer() {
    let (_dir, snap) = tree();
    // 10.0.0.0/8 decides 10.9.9.0/24, lengthened to /13 because 10.1.2.0/24 inside it is
    // routed differently (DESIGN: never longer than needed); 198.51.100.0/24 decides /24.
    for (subnet, addr, scope) in [
        ("10.9.9.0/24", "192.0.2.10", 13),
        ("10.1.2.0/24", "198.51.100.10", 24),
        ("198.51.100.0/24", "198.51.100.10", 24),
    ] {
        let direct = ask_ecs(&snap, CONTOSO, RecordType::A, subnet);
        let via = ask_ecs(&snap, "pull2.registry.example.", RecordType::A, subnet);
        for m in [&direct, &via] {
            assert_eq!(
                answers(m).last().map(String::as_str),
                Some(format!("{CONTOSO} 5 A {addr}").as_str()),
                "{subnet}"
            );
            let ecs = answer_ecs(m).expect("ECS echoed");
            assert_eq!(
                (ecs.source_prefix(), ecs.scope_prefix()),
                (24, scope),
                "{subnet}"
            );
        }
    }
    // Source /0 (RFC 7871 §7.1.2): the answer for the resolver (127.0.3.1: southeastasia),
    // scope 0.
    let m = ask_ecs(&snap, "pull.registry.example.", RecordType::A, "0.0.0.0/0");
    assert_eq!(answers(&m)[1], format!("{CONTOSO} 5 A 203.0.113.10"));
    assert_eq!(answer_ecs(&m).map(|e| e.scope_prefix()), Some(0));
    // A static answer is the same for everybody: scope 0.
    let m = ask_ecs(&snap, "www.registry.example.", RecordType::A, "10.9.9.0/24");
    assert_eq!(answer_ecs(&m).map(|e| e.scope_prefix()), Some(0));
    // No EDNS in the query, none in the answer.
    let m = ask(&snap, "pull.registry.example.", RecordType::A, "127.0.1.1");
    assert!(m.edns.is_none());
}

#[test]
fn other_types_get_the_chain_and_what_the_global_name_gets() {
    let (_dir, snap) = tree();
    let soa = "registry.example. 60 SOA ns1.registry.example. hostmaster.registry.example. 1 3600 600 1209600 60";
    // TXT: the global name has none; NODATA with the SOA of the global name's zone.
    let direct = ask(&snap, CONTOSO, RecordType::TXT, "127.0.1.1");
    assert_authoritative(&direct, "direct TXT");
    assert!(direct.answers.is_empty());
    assert_eq!(authority(&direct), [soa]);
    let m = ask(
        &snap,
        "pull.registry.example.",
        RecordType::TXT,
        "127.0.1.1",
    );
    assert_authoritative(&m, "alias TXT");
    assert_eq!(answers(&m), [PULL]);
    assert_eq!(authority(&m), [soa]);
    // Across zones, the SOA is still the global name's zone's, not the alias's.
    let m = ask(&snap, "alias.other.example.", RecordType::MX, "127.0.1.1");
    assert_eq!(authority(&m), [soa]);
    // CNAME matches the alias's own record, and so does ANY (RFC 1034 §4.3.2 step 3a): the
    // CNAME alone, as for every alias in the zones.
    for t in [RecordType::CNAME, RecordType::ANY] {
        let m = ask(&snap, "pull.registry.example.", t, "127.0.1.1");
        assert_authoritative(&m, "alias CNAME/ANY");
        assert_eq!(answers(&m), [PULL], "{t}");
    }
    // ANY on the global name itself: its A set, per client (RFC 8482).
    let m = ask(&snap, CONTOSO, RecordType::ANY, "127.0.2.1");
    assert_eq!(answers(&m), [format!("{CONTOSO} 5 A 198.51.100.10")]);
}

#[test]
fn a_cname_replica_keeps_its_own_chain_behind_the_alias() {
    let (_dir, snap) = tree();
    let m = ask(&snap, "viacn.registry.example.", RecordType::A, "127.0.2.1");
    assert_authoritative(&m, "viacn");
    assert_eq!(
        answers(&m),
        [
            "viacn.registry.example. 3600 CNAME cn.registry.example.",
            "cn.registry.example. 30 CNAME cn-westeurope.registry.example.",
            "cn-westeurope.registry.example. 3600 A 192.0.2.40",
        ]
    );
}

#[test]
fn health_and_fail_open_apply_through_the_alias_as_to_the_name() {
    let (_dir, snap) = tree();
    let with_routable = |routable: u64| {
        let mut s = snap.clone();
        let mut h: HealthMasks = (*s.health).clone();
        for p in &mut h.profiles {
            p.routable = ReplicaMask::from_bits(routable);
        }
        s.health = Arc::new(h);
        s
    };
    // Replicas are indexed by key: eastus 0, southeastasia 1, westeurope 2.
    for (routable, want) in [
        // westeurope degraded: the next best for a westeurope client.
        (0b011, "198.51.100.10"),
        // every replica degraded: fail open, as if all were healthy (DESIGN).
        (0b000, "192.0.2.10"),
    ] {
        let s = with_routable(routable);
        for name in [CONTOSO, "pull.registry.example."] {
            let m = ask(&s, name, RecordType::A, "127.0.1.1");
            assert_eq!(
                answers(&m).last().map(String::as_str),
                Some(format!("{CONTOSO} 5 A {want}").as_str()),
                "{name} with routable {routable:#b}"
            );
        }
    }
}

#[test]
fn a_chain_that_does_not_fit_is_truncated_over_udp_and_whole_over_tcp() {
    let (_dir, snap) = tree();
    let q = query("long.registry.example.", RecordType::A, None);
    let m = ask_over(&snap, &q, "127.0.1.1", Transport::Udp);
    assert!(m.metadata.truncation, "over 512 octets without EDNS");
    assert!(m.answers.is_empty());
    let m = ask_over(&snap, &q, "127.0.1.1", Transport::Tcp);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 8, "seven CNAMEs and the A");
    assert_eq!(
        answers(&m).last().map(String::as_str),
        Some(format!("{CONTOSO} 5 A 192.0.2.10").as_str())
    );
}

//----------- Empty non-terminals and wildcards -----------------------------------------------------

#[test]
fn ancestors_of_a_global_name_are_empty_non_terminals_and_block_the_wildcard() {
    let (_dir, snap) = tree();
    let soa = "registry.example. 60 SOA ns1.registry.example. hostmaster.registry.example. 1 3600 600 1209600 60";
    // eu.registry.example. is above fab.eu: NODATA for every type, not NXDOMAIN, and not the
    // zone's `*` (RFC 4592: it exists, so the wildcard does not apply to it).
    for t in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::ANY,
    ] {
        let m = ask(&snap, "eu.registry.example.", t, "127.0.1.1");
        assert_authoritative(&m, "eu");
        assert!(m.answers.is_empty(), "{t}: {m:?}");
        assert_eq!(authority(&m), [soa], "{t}");
    }
    // Below an ENT or a global name, the closest encloser is that name, which has no `*`
    // child: NXDOMAIN, not the wildcard.
    for name in [
        "x.eu.registry.example.",
        "x.contoso.registry.example.",
        "y.x.fab.eu.registry.example.",
    ] {
        let m = ask(&snap, name, RecordType::A, "127.0.1.1");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_eq!(authority(&m), [soa], "{name}");
    }
    // The global names answer; the wildcard still answers names that do not exist.
    let m = ask(
        &snap,
        "fab.eu.registry.example.",
        RecordType::A,
        "127.0.2.1",
    );
    assert_eq!(answers(&m), ["fab.eu.registry.example. 30 A 198.51.100.11"]);
    let m = ask(&snap, "nope.registry.example.", RecordType::A, "127.0.2.1");
    assert_eq!(answers(&m), ["nope.registry.example. 3600 A 192.0.2.98"]);
}

//----------- A global name at the apex -------------------------------------------------------------

#[test]
fn a_global_name_at_the_apex_answers_the_address_types_and_the_zone_the_rest() {
    let (_dir, snap) = tree();
    let apex = "apex.example.";
    for (client, v4, v6) in [
        ("127.0.1.1", "192.0.2.12", "2001:db8::12"),
        ("127.0.2.1", "198.51.100.12", "2001:db8:1::12"),
    ] {
        let m = ask(&snap, apex, RecordType::A, client);
        assert_authoritative(&m, "apex A");
        assert_eq!(answers(&m), [format!("{apex} 9 A {v4}")]);
        let m = ask(&snap, apex, RecordType::AAAA, client);
        assert_eq!(answers(&m), [format!("{apex} 9 AAAA {v6}")]);
        let m = ask(&snap, "www.apex.example.", RecordType::A, client);
        assert_eq!(
            answers(&m),
            [
                "www.apex.example. 3600 CNAME apex.example.".to_string(),
                format!("{apex} 9 A {v4}")
            ]
        );
    }
    let m = ask_ecs(&snap, apex, RecordType::A, "198.51.100.0/24");
    assert_eq!(answer_ecs(&m).map(|e| e.scope_prefix()), Some(24));
    // SOA, NS, MX, TXT: the zone file's, also through the alias; a type the apex lacks is
    // NODATA with the zone's SOA.
    let m = ask(&snap, apex, RecordType::SOA, "127.0.1.1");
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let m = ask(&snap, apex, RecordType::NS, "127.0.1.1");
    assert_eq!(answers(&m), ["apex.example. 3600 NS ns1.registry.example."]);
    let m = ask(&snap, apex, RecordType::MX, "127.0.1.1");
    assert_eq!(
        answers(&m),
        ["apex.example. 3600 MX 10 mail.registry.example."]
    );
    let m = ask(&snap, "www.apex.example.", RecordType::TXT, "127.0.1.1");
    assert_eq!(
        answers(&m),
        [
            "www.apex.example. 3600 CNAME apex.example.",
            "apex.example. 3600 TXT apex text"
        ]
    );
    let m = ask(&snap, apex, RecordType::SRV, "127.0.1.1");
    assert_authoritative(&m, "apex SRV");
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 45);
}

#[test]
fn an_apex_the_registry_cannot_own_is_refused_naming_the_file_and_the_name() {
    // Addresses at the apex in the zone file: two sources for one RRset.
    let (dir, path) = files(false);
    let zone = dir.path().join("zones/apex.example.zone");
    std::fs::write(&zone, format!("{APEX_ZONE}@ A 192.0.2.1\n")).expect("zone");
    let e = Snapshot::load(&path).expect_err("refused").to_string();
    assert!(
        e.contains("registry apex: global name apex.example. is the apex of the zone in")
            && e.contains("apex.example.zone, which has A records there"),
        "{e}"
    );
    assert!(
        e.contains("steerdns.toml:"),
        "the config file and line: {e}"
    );
    // A CNAME replica at the apex (no CNAME may be there).
    let (_dir, path) = files(false);
    let text = std::fs::read_to_string(&path).expect("config").replace(
        "[registries.cn]\nname = \"cn.registry.example.\"",
        "[registries.cn]\nname = \"other.example.\"",
    );
    std::fs::write(&path, text).expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("registry cn: global name other.example. is the apex of the zone in")
            && stderr.contains("other.example.zone, where a CNAME cannot be")
            && stderr.contains("replica westeurope of cn answers with a CNAME"),
        "{stderr}"
    );
    // The valid tree: check-config counts what the zone tree holds.
    let (_dir, path) = files(false);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "zone tree   1 empty non-terminals above global names, 1 global names at a zone apex"
        ),
        "{stdout}"
    );
}

//----------- Over the wire, and through the writer -------------------------------------------------

async fn put(s: &TestServer, key: &str, name: &str) {
    let request = RegistryRequest {
        name: name.into(),
        template: "fleet".into(),
        depends_on: None,
        ttl: None,
        answers: None,
    };
    crate::support::ask(s, |reply| Command::PutRegistry {
        key: key.into(),
        request,
        who: "test".into(),
        reply,
    })
    .await
    .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

async fn delete(s: &TestServer, key: &str) {
    crate::support::ask(s, |reply| Command::DeleteRegistry {
        key: key.into(),
        who: "test".into(),
        reply,
    })
    .await
    .unwrap_or_else(|e| panic!("delete {key}: {e:?}"));
}

/// The tree served on 127.0.0.1, port 0.
async fn serve() -> TestServer {
    let (dir, path) = files(false);
    let text = std::fs::read_to_string(path).expect("config");
    TestServer::start_in(dir, &text, &[], "127.0.0.1:0".parse().expect("addr")).await
}

async fn dig_at(server: SocketAddr, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dig(server, &args)
    })
    .await
    .expect("dig ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_over_udp_sees_the_alias_the_empty_non_terminal_and_the_apex() {
    let s = serve().await;
    for (client, addr) in [("127.0.1.1", "192.0.2.10"), ("127.0.2.1", "198.51.100.10")] {
        let out = dig_at(
            s.addr,
            &["-b", client, "+norec", "pull2.registry.example", "A"],
        )
        .await;
        assert_eq!(field(&out, "status"), "NOERROR", "{out}");
        assert!(flags(&out).contains(&"aa"), "{out}");
        let answer = section(&out, "ANSWER");
        assert_eq!(answer.len(), 3, "{out}");
        assert!(answer[0].contains("CNAME\tpull.registry.example."), "{out}");
        assert!(
            answer[1].contains("CNAME\tcontoso.registry.example."),
            "{out}"
        );
        assert!(
            answer[2].starts_with("contoso.registry.example.")
                && answer[2].ends_with(&format!("A\t{addr}")),
            "{out}"
        );
    }
    let out = dig_at(
        s.addr,
        &["+subnet=198.51.100.0/24", "pull.registry.example", "AAAA"],
    )
    .await;
    assert!(out.contains("CLIENT-SUBNET: 198.51.100.0/24/24"), "{out}");
    assert!(
        section(&out, "ANSWER")[1].ends_with("AAAA\t2001:db8:1::10"),
        "{out}"
    );

    let out = dig_at(s.addr, &["eu.registry.example", "A"]).await;
    assert_eq!(field(&out, "status"), "NOERROR", "{out}");
    assert_eq!(field(&out, "ANSWER"), "0", "{out}");
    assert!(section(&out, "AUTHORITY")[0].contains("SOA"), "{out}");

    let out = dig_at(s.addr, &["-b", "127.0.2.1", "apex.example", "A"]).await;
    let answer = section(&out, "ANSWER");
    assert_eq!(answer.len(), 1, "{out}");
    let cols: Vec<&str> = answer[0].split_whitespace().collect();
    assert_eq!(
        cols,
        ["apex.example.", "9", "IN", "A", "198.51.100.12"],
        "{out}"
    );
    let out = dig_at(s.addr, &["apex.example", "SOA"]).await;
    assert!(section(&out, "ANSWER")[0].contains("SOA"), "{out}");
    s.stop().await;
}

/// The A answer through the alias from a westeurope client, asked over UDP.
async fn via_alias(s: &TestServer) -> Vec<String> {
    let q = query("pull.registry.example.", RecordType::A, None);
    answers(&udp_from("127.0.1.1".parse().expect("ip"), s.addr, &q).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_empty_non_terminals_follow_catalog_puts_and_deletes_and_overrides_reach_the_alias() {
    let s = serve().await;
    let rcode = |m: &Message| m.metadata.response_code;
    let ent = "eu.other.example.";
    let addr = s.addr;
    let ask_udp =
        |name: &'static str| async move { udp(addr, &query(name, RecordType::A, None)).await };
    let m = ask_udp(ent).await;
    assert_eq!(
        rcode(&m),
        ResponseCode::NXDomain,
        "no global name below it yet"
    );

    // A registry below it makes it exist (NODATA); a second one under it keeps it when the
    // first goes; the last one going makes it NXDOMAIN again.
    put(&s, "fab-other", "fab.eu.other.example.").await;
    let m = ask_udp(ent).await;
    assert_eq!(rcode(&m), ResponseCode::NoError, "{m:?}");
    assert!(m.answers.is_empty() && m.authorities.len() == 1, "{m:?}");
    let m = ask_udp("fab.eu.other.example.").await;
    assert_eq!(answers(&m), ["fab.eu.other.example. 7 A 192.0.2.70"]);
    put(&s, "deep-other", "a.b.eu.other.example.").await;
    for name in ["b.eu.other.example.", ent] {
        assert_eq!(rcode(&ask_udp(name).await), ResponseCode::NoError, "{name}");
    }
    delete(&s, "fab-other").await;
    assert_eq!(
        rcode(&ask_udp(ent).await),
        ResponseCode::NoError,
        "a.b is still below"
    );
    delete(&s, "deep-other").await;
    for name in [ent, "b.eu.other.example.", "fab.eu.other.example."] {
        assert_eq!(
            rcode(&ask_udp(name).await),
            ResponseCode::NXDomain,
            "{name}"
        );
    }

    // An operator override reaches the alias exactly as it reaches the name.
    assert_eq!(via_alias(&s).await[1], format!("{CONTOSO} 5 A 192.0.2.10"));
    crate::support::ask(&s, |reply| Command::Override {
        command: OverrideCommand {
            action: OverrideAction::Disable,
            target: Target::Replica {
                registry: "contoso".into(),
                replica: "westeurope".into(),
            },
            reason: "maintenance".into(),
            who: "test".into(),
            duration: None,
        },
        reply,
    })
    .await
    .expect("disable");
    assert_eq!(
        via_alias(&s).await[1],
        format!("{CONTOSO} 5 A 198.51.100.10")
    );
    s.stop().await;
}
