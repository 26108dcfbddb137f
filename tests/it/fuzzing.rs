//! The fuzzing config's inputs and the request path's reply invariants on stable.
//!
//! `fuzz/` holds cargo-fuzz targets (nightly); they answer from `fuzz/config` and check every
//! reply with `steerdns::fuzzing::check_reply`. This module generates what those targets
//! need — the tiny mmdb of the fuzzing config and the seed corpora, dig-like queries — and
//! checks the committed files are exactly what it generates
//! (`STEERDNS_WRITE_FUZZ_INPUTS=1 cargo test fuzz_inputs` rewrites them). The proptest runs
//! the same harness and the same check on generated and mutated queries.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;
use steerdns::dns::Transport;
use steerdns::fuzzing::{RequestHarness, SeedHealth, check_reply};

use crate::support::{city, nested_mmdb, repo};

fn fuzz_dir() -> PathBuf {
    repo().join("fuzz")
}

//------------ The mmdb ---------------------------------------------------------------------

/// GeoIP2-City-shaped: clients the latency table does not know, near each of the regions,
/// one network nested in another (the ECS scope rule) and IPv6.
fn mmdb() -> Vec<u8> {
    let rows = [
        ("100.64.0.0/10", 1.35, 103.82, "SG", "AS"),
        ("100.66.0.0/16", 52.37, 4.9, "NL", "EU"),
        ("172.16.0.0/12", 40.71, -74.0, "US", "NA"),
        ("203.0.113.0/24", -33.86, 151.2, "AU", "OC"),
        ("198.51.100.0/24", 35.68, 139.69, "JP", "AS"),
        ("2001:db8:8000::/33", -23.55, -46.63, "BR", "SA"),
        ("2a00::/12", 53.35, -6.26, "IE", "EU"),
    ]
    .map(|(net, lat, lon, cc, cont)| (net, city(Some((lat, lon)), cc, Some(cont))));
    nested_mmdb("Fuzz-City", &rows)
}

/// The same networks and records (the writer stamps its build time, so bytes differ).
fn same_mmdb(a: &[u8], b: &[u8]) -> bool {
    let (Ok(a), Ok(b)) = (
        maxminddb::Reader::from_source(a),
        maxminddb::Reader::from_source(b),
    ) else {
        return false;
    };
    let probes = [
        "100.64.1.1",
        "100.66.1.1",
        "172.16.0.1",
        "203.0.113.1",
        "198.51.100.1",
        "2001:db8:8000::1",
        "2a00::1",
        "8.8.8.8",
        "2001:db8::1",
    ];
    probes.iter().all(|p| {
        let ip: IpAddr = p.parse().expect("ip");
        let look = |r: &maxminddb::Reader<&[u8]>| {
            let res = r.lookup(ip).ok()?;
            let city: Option<maxminddb::geoip2::City<'_>> = res.decode().ok()?;
            let net = res.network().ok()?;
            Some((
                net,
                city.map(|c| (c.location.latitude, c.location.longitude)),
            ))
        };
        look(&a) == look(&b)
    })
}

//------------ Seeds ------------------------------------------------------------------------

const NAMES: [&str; 16] = [
    "big.fuzz.example.",
    "cn.fuzz.example.",
    "a.b.c.deep.fuzz.example.",
    "b.c.deep.fuzz.example.",
    "apex.example.",
    "www.apex.example.",
    "alias2.fuzz.example.",
    "viacn.fuzz.example.",
    "deepalias.fuzz.example.",
    "www.fuzz.example.",
    "nope.x.fuzz.example.",
    "below.x.fuzz.example.",
    "any.wild.fuzz.example.",
    "host.child.fuzz.example.",
    "bigtxt.fuzz.example.",
    "www.example.org.",
];

const TYPES: [RecordType; 6] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::ANY,
    RecordType::TXT,
    RecordType::NS,
    RecordType::SOA,
];

/// A query as dig sends it: RD, and EDNS with 1232 (or `payload`) and an optional ECS.
fn query(id: u16, name: &str, rtype: RecordType, edns: Option<(u16, Option<&str>)>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
    m.edns = edns.map(|(payload, subnet)| {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        if let Some(s) = subnet {
            e.options_mut()
                .insert(EdnsOption::Subnet(s.parse::<ClientSubnet>().expect("ecs")));
        }
        e
    });
    m.to_vec().expect("query")
}

const CLIENTS: [&str; 6] = [
    "10.1.2.3",
    "100.64.9.9",
    "172.16.0.1",
    "2001:db8:1::9",
    "2a00:1::1",
    "127.0.0.1",
];

/// Seed inputs of the request target: file name → bytes.
fn request_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    type EdnsKind<'a> = (&'a str, Option<(u16, Option<&'a str>)>);
    let edns_kinds: [EdnsKind<'_>; 4] = [
        ("plain", None),
        ("edns", Some((1232, None))),
        ("ecs4", Some((4096, Some("100.66.1.0/24")))),
        ("ecs6", Some((512, Some("2001:db8:8000::/48")))),
    ];
    let mut n = 0u16;
    for (ni, name) in NAMES.iter().enumerate() {
        for rtype in TYPES {
            // Not the full product: a few combinations per name and type keep the corpus small.
            let (kind, edns) = edns_kinds[(ni + usize::from(u16::from(rtype))) % 4];
            let client: IpAddr = CLIENTS[(ni + n as usize) % CLIENTS.len()]
                .parse()
                .expect("ip");
            let transport = if n % 5 == 4 {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            let health = (n % 3 == 2).then_some(SeedHealth {
                enabled: 0xff,
                routable: 0x0f,
                fail_open: n.is_multiple_of(4),
                guard: false,
                expired: n.is_multiple_of(7),
            });
            let mut input = steerdns::fuzzing::Request::encode(client, transport, health);
            input.extend(query(n, name, rtype, edns));
            let label = name.trim_end_matches('.').replace('.', "_");
            seeds.push((format!("{label}-{rtype}-{kind}"), input));
            n += 1;
        }
    }
    seeds
}

const DEEP_DOCS: [&str; 5] = [
    r#"{"status":"ok"}"#,
    r#"{"status":"unhealthy"}"#,
    r#"{"status":"ok","checks":{"storage":{"status":"down"},"cache":"up"}}"#,
    r#"{"dependencies":[{"name":"db","status":"healthy"},{"name":"queue","state":"fail"}]}"#,
    r#"[{"name":"x","status":true}]"#,
];

/// Every generated file under `fuzz/`: relative path → bytes.
fn fuzz_inputs() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = vec![(PathBuf::from("config/geo/fuzz-city.mmdb"), mmdb())];
    for (name, bytes) in request_seeds() {
        files.push((Path::new("seeds/request").join(name), bytes));
    }
    let read = |p: &str| std::fs::read(repo().join(p)).expect("read");
    for (i, p) in [
        "zones/registry.example.zone",
        "fuzz/config/zones/fuzz.example.zone",
    ]
    .iter()
    .enumerate()
    {
        files.push((PathBuf::from(format!("seeds/zone_file/{i}")), read(p)));
    }
    for (i, p) in ["steerdns.toml", "fuzz/config/steerdns.toml"]
        .iter()
        .enumerate()
    {
        files.push((PathBuf::from(format!("seeds/config/{i}")), read(p)));
    }
    for (i, p) in ["geo/latency.csv", "fuzz/config/geo/latency.csv"]
        .iter()
        .enumerate()
    {
        // 16 octets choose the address looked up: 10.1.2.3 for the first, 2001:db8:1::1 next.
        let mut v = if i == 0 {
            vec![0, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        } else {
            vec![0x21, 1, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        };
        v.extend(read(p));
        files.push((PathBuf::from(format!("seeds/latency_table/{i}")), v));
    }
    for (i, doc) in DEEP_DOCS.iter().enumerate() {
        files.push((
            PathBuf::from(format!("seeds/deep_health/{i}")),
            doc.as_bytes().to_vec(),
        ));
    }
    files
}

#[test]
fn fuzz_inputs_are_generated_by_this_module() {
    let write = std::env::var_os("STEERDNS_WRITE_FUZZ_INPUTS").is_some();
    for (rel, bytes) in fuzz_inputs() {
        let path = fuzz_dir().join(&rel);
        if write {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write");
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        let same = if rel.extension().is_some_and(|e| e == "mmdb") {
            same_mmdb(&committed, &bytes)
        } else {
            committed == bytes
        };
        assert!(
            same,
            "fuzz/{} differs from what tests/it/fuzzing.rs generates; \
             rerun with STEERDNS_WRITE_FUZZ_INPUTS=1",
            rel.display()
        );
    }
}

//------------ The invariants ---------------------------------------------------------------

fn harness() -> RequestHarness {
    RequestHarness::load(&fuzz_dir().join("config/steerdns.toml")).expect("fuzz config loads")
}

#[test]
fn every_seed_satisfies_the_invariants_and_the_config_reaches_each_path() {
    let h = harness();
    let mut out = Vec::new();
    let mut truncated = 0;
    for (name, input) in request_seeds() {
        h.run(&input, &mut out)
            .unwrap_or_else(|e| panic!("seed {name}: {e}"));
        let m = Message::from_vec(&out).expect("reply");
        truncated += usize::from(m.metadata.truncation);
    }
    // The big global answer (8 replicas x 8 AAAA) truncates over UDP somewhere in the seeds.
    assert!(truncated > 0, "no seed reached a truncated answer");
    // The mmdb decides for a client the latency table does not know (100.66/16 is near
    // westeurope, 100.64/10 near southeastasia): different first answers.
    let mut first = |client: &str| {
        let mut input =
            steerdns::fuzzing::Request::encode(client.parse().expect("ip"), Transport::Udp, None);
        input.extend(query(1, "cn.fuzz.example.", RecordType::A, None));
        h.run(&input, &mut out).expect("invariants");
        Message::from_vec(&out).expect("reply").answers[0]
            .data
            .to_string()
    };
    assert_eq!(first("100.66.1.1"), "cn-westeurope.fuzz.example.");
    assert_eq!(first("100.64.1.1"), "cn-southeastasia.fuzz.example.");
}

#[test]
fn the_check_rejects_broken_replies() {
    let q = query(7, "www.fuzz.example.", RecordType::A, None);
    // No reply to a query: wrong. A reply without QR, with another ID, or too big: wrong.
    assert!(check_reply(&q, Transport::Udp, None).is_err());
    let mut r = q.clone();
    assert!(
        check_reply(&q, Transport::Udp, Some(&r)).is_err(),
        "QR unset"
    );
    r[2] |= 0x80;
    assert!(check_reply(&q, Transport::Udp, Some(&r)).is_ok());
    r[1] ^= 1;
    assert!(check_reply(&q, Transport::Udp, Some(&r)).is_err(), "ID");
    r[1] ^= 1;
    let mut big = r.clone();
    big[7] = 1; // ANCOUNT 1: a TXT record of 600 octets
    big.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 2, 88, 255]);
    big.extend(std::iter::repeat_n(b'x', 255));
    big.push(255);
    big.extend(std::iter::repeat_n(b'y', 255));
    big.push(87);
    big.extend(std::iter::repeat_n(b'z', 87));
    assert!(check_reply(&q, Transport::Tcp, Some(&big)).is_ok());
    assert!(
        check_reply(&q, Transport::Udp, Some(&big)).is_err(),
        "> 512"
    );
    // A response (QR=1) is never answered.
    let mut resp = q;
    resp[2] |= 0x80;
    assert!(check_reply(&resp, Transport::Udp, None).is_ok());
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let edns = prop_oneof![
        Just(None),
        (0u16..5000).prop_map(|p| Some((p, None))),
        (0u16..5000, 0usize..4).prop_map(|(p, i)| {
            Some((
                p,
                Some(
                    [
                        "100.66.1.0/24",
                        "10.1.2.0/24",
                        "2001:db8:8000::/48",
                        "0.0.0.0/0",
                    ][i],
                ),
            ))
        }),
    ];
    (
        any::<u16>(),
        0..NAMES.len(),
        0..TYPES.len(),
        edns,
        0..CLIENTS.len(),
        any::<bool>(),
        any::<Option<(u32, u32, bool, bool, bool)>>(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        any::<Option<usize>>(),
    )
        .prop_map(|(id, name, rtype, edns, client, tcp, health, flips, cut)| {
            let transport = if tcp { Transport::Tcp } else { Transport::Udp };
            let health = health.map(
                |(enabled, routable, fail_open, guard, expired)| SeedHealth {
                    enabled,
                    routable,
                    fail_open,
                    guard,
                    expired,
                },
            );
            let client = CLIENTS[client].parse().expect("ip");
            let mut input = steerdns::fuzzing::Request::encode(client, transport, health);
            let header = input.len();
            input.extend(query(id, NAMES[name], TYPES[rtype], edns));
            // Mutations like the fuzzer's: flipped octets and a cut, past the input header.
            let body = input.len() - header;
            for (at, x) in flips {
                input[header + at % body] ^= x;
            }
            if let Some(c) = cut {
                input.truncate(header + c % (body + 1));
            }
            input
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn replies_satisfy_the_invariants(input in request()) {
        let h = harness_once();
        let mut out = Vec::new();
        if let Err(e) = h.run(&input, &mut out) {
            prop_assert!(false, "{e}");
        }
    }
}

fn harness_once() -> &'static RequestHarness {
    static H: std::sync::OnceLock<RequestHarness> = std::sync::OnceLock::new();
    H.get_or_init(harness)
}

/// The signed request path (the `signed` fuzz target's check, on stable): every name of the
/// fuzzing config's zones and beside them, every common type, over UDP and TCP, from clients
/// the latency table and the mmdb place differently, with the DO bit; every RRSIG verifies
/// with its zone's public key and every answer RRset is signed.
#[test]
fn every_signature_of_the_signed_request_path_verifies() {
    let h = steerdns::fuzzing::SignedHarness::load(&fuzz_dir().join("config/steerdns.toml"))
        .expect("the fuzzing config loads signed");
    let names = [
        "fuzz.example.",
        "www.fuzz.example.",
        "mail.fuzz.example.",
        "alias.fuzz.example.",
        "alias2.fuzz.example.",
        "deepalias.fuzz.example.",
        "viacn.fuzz.example.",
        "out.fuzz.example.",
        "loop1.fuzz.example.",
        "bigtxt.fuzz.example.",
        "x.wild.fuzz.example.",
        "y.x.deep.fuzz.example.",
        "nope.fuzz.example.",
        "a.nope.fuzz.example.",
        "child.fuzz.example.",
        "host.child.fuzz.example.",
        "_sip._udp.fuzz.example.",
        "_udp.fuzz.example.",
        "ent.below.x.fuzz.example.",
        "below.x.fuzz.example.",
        "big.fuzz.example.",
        "cn.fuzz.example.",
        "a.b.c.deep.fuzz.example.",
        "b.c.deep.fuzz.example.",
        "c.deep.fuzz.example.",
        "z.a.b.c.deep.fuzz.example.",
        "apex.example.",
        "www.apex.example.",
        "nope.apex.example.",
    ];
    let types: [u16; 14] = [1, 28, 16, 15, 2, 6, 5, 255, 48, 43, 47, 46, 59, 33];
    let clients: [[u8; 4]; 3] = [[127, 0, 1, 9], [127, 0, 2, 9], [100, 66, 1, 1]];
    let mut out = Vec::new();
    let mut checked = 0;
    for name in names {
        for t in types {
            for (i, c) in clients.iter().enumerate() {
                for tcp in [false, true] {
                    let mut input = vec![u8::from(tcp) | 4];
                    input.extend_from_slice(c);
                    input.extend_from_slice(&t.to_be_bytes());
                    input.extend_from_slice(name.as_bytes());
                    if let Err(e) = h.run(&input, &mut out) {
                        panic!("{name} type {t} client {i} tcp {tcp}: {e}\nreply: {out:02x?}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, names.len() * types.len() * 3 * 2);
}
