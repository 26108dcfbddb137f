//! Heap allocations per answered query in `dns::handle`, once its output buffer has grown:
//! zero on the global name's path (with and without ECS, A and AAAA), and zero for static
//! answers, NODATA and NXDOMAIN, which are copied from answers prepared at load
//! (`zone::fast`). A CNAME chain inside the zones still goes through the full lookup (a
//! hickory `Name`, `Vec`s of records, hickory's encoder): it is held to today's count so it
//! cannot get worse.
//!
//! A counting global allocator counts allocations made by this test's thread while a flag is
//! set; it is the one place in the project that needs `unsafe` (implementing `GlobalAlloc`),
//! which is why this test is a binary of its own.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::path::Path;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use steerdns::dns::{Transport, handle};
use steerdns::metrics::DnsCounters;
use steerdns::state::Snapshot;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches
// only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

fn query(name: &str, qtype: RecordType, ecs: Option<&str>) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if let Some(net) = ecs {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::from(
                net.parse::<ipnet::IpNet>().expect("net"),
            )));
        m.set_edns(edns);
    }
    m.to_vec().expect("encode")
}

#[test]
fn answering_allocates_nothing_on_the_global_static_alias_and_nxdomain_paths() {
    let snap = Snapshot::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/steerdns.toml"
    )))
    .expect("the demo config loads");
    let counters = DnsCounters::default();
    let source: IpAddr = "127.0.1.9".parse().expect("ip");
    let source6: IpAddr = "::1".parse().expect("ip");
    // (what, query, client, rcode, allocations allowed per answer)
    let cases: [(&str, Vec<u8>, IpAddr, ResponseCode, u64); 11] = [
        (
            "global, ECS /24",
            query(
                "contoso.registry.example.",
                RecordType::A,
                Some("192.0.2.0/24"),
            ),
            source,
            ResponseCode::NoError,
            0,
        ),
        (
            "global AAAA, ECS /56",
            query(
                "contoso.registry.example.",
                RecordType::AAAA,
                Some("2001:db8:1::/56"),
            ),
            source6,
            ResponseCode::NoError,
            0,
        ),
        (
            "global, no EDNS",
            query("contoso.registry.example.", RecordType::A, None),
            source,
            ResponseCode::NoError,
            0,
        ),
        (
            "static A",
            query("www.registry.example.", RecordType::A, None),
            source,
            ResponseCode::NoError,
            0,
        ),
        (
            "static AAAA in mixed case, EDNS + ECS",
            query(
                "WwW.ReGiStRy.example.",
                RecordType::AAAA,
                Some("192.0.2.0/24"),
            ),
            source,
            ResponseCode::NoError,
            0,
        ),
        (
            "static MX with its additional address",
            query("registry.example.", RecordType::MX, None),
            source,
            ResponseCode::NoError,
            0,
        ),
        (
            "static NS at the apex",
            query("registry.example.", RecordType::NS, None),
            source,
            ResponseCode::NoError,
            0,
        ),
        (
            "NODATA",
            query("www.registry.example.", RecordType::TXT, None),
            source,
            ResponseCode::NoError,
            0,
        ),
        (
            "static CNAME chain",
            query("api.registry.example.", RecordType::AAAA, None),
            source,
            ResponseCode::NoError,
            14,
        ),
        (
            "NXDOMAIN",
            query("nope.registry.example.", RecordType::A, None),
            source,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "NXDOMAIN with EDNS",
            query(
                "nope.registry.example.",
                RecordType::TXT,
                Some("192.0.2.0/24"),
            ),
            source,
            ResponseCode::NXDomain,
            0,
        ),
    ];
    let mut out = Vec::with_capacity(4096);
    for (what, packet, client, rcode, budget) in &cases {
        // The first answer checks the reply (and may grow `out`, which is not the path's cost).
        handle(&snap, packet, *client, Transport::Udp, &mut out, &counters).expect("answered");
        let reply = Message::from_vec(&out).expect("reply parses");
        assert_eq!(reply.metadata.response_code, *rcode, "{what}: {reply:?}");
        if *rcode == ResponseCode::NoError && !what.starts_with("NODATA") {
            assert!(!reply.answers.is_empty(), "{what}: an answer");
        }
        let n = allocations(|| {
            for _ in 0..1000 {
                let o = handle(&snap, packet, *client, Transport::Udp, &mut out, &counters);
                std::hint::black_box(o);
            }
        });
        assert!(
            n <= budget * 1000,
            "{what}: {n} heap allocations in 1000 answers, budget {budget} per answer"
        );
        eprintln!("{what}: {} allocations per answer", n / 1000);
    }
    // The geo basis (mmdb lookup, distances) and a truncated UDP answer, from the fuzzing
    // config, which routes clients the latency table does not know through its mmdb.
    let fuzz = Snapshot::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/config/steerdns.toml"
    )))
    .expect("the fuzzing config loads");
    for (what, packet) in [
        (
            "global via the mmdb, ECS",
            query("cn.fuzz.example.", RecordType::A, Some("100.66.1.0/24")),
        ),
        (
            "global, truncated over UDP",
            query("big.fuzz.example.", RecordType::A, None),
        ),
    ] {
        handle(&fuzz, &packet, source, Transport::Udp, &mut out, &counters).expect("answered");
        Message::from_vec(&out).expect("reply parses");
        let n = allocations(|| {
            for _ in 0..1000 {
                let o = handle(&fuzz, &packet, source, Transport::Udp, &mut out, &counters);
                std::hint::black_box(o);
            }
        });
        assert_eq!(n, 0, "{what}: {n} heap allocations in 1000 answers");
    }
    // The counter sees allocations at all (the check above could not pass by accident).
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);
}

/// The demo config with its zone signed (a key made here): the DO bit on a steered name is
/// answered from the signature cache without a heap allocation, positive (A, AAAA, with ECS)
/// and NODATA alike, and so are signed static answers and NODATA (prepared at load); a name
/// that does not exist (its proof names it) is held to today's count.
#[test]
fn signed_steered_answers_allocate_nothing_once_cached() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tmp");
    let keys = dir.path().join("keys");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(["dnssec", "keygen", "registry.example", "--dir"])
        .arg(&keys)
        .output()
        .expect("keygen");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(repo.join("steerdns.toml"))
        .expect("demo config")
        .replace(
            "zones_dir = \"zones\"",
            &format!("zones_dir = {:?}", repo.join("zones")),
        )
        .replace(
            "geo_dir = \"geo\"",
            &format!("geo_dir = {:?}", repo.join("geo")),
        );
    let path = dir.path().join("steerdns.toml");
    std::fs::write(
        &path,
        format!("{text}\n[dnssec]\nzones = [\"registry.example.\"]\n"),
    )
    .expect("config");
    let snap = Snapshot::load(&path).expect("the signed demo config loads");
    let counters = DnsCounters::default();
    let source: IpAddr = "127.0.1.9".parse().expect("ip");
    let with_do = |name: &str, qtype: RecordType, ecs: Option<&str>| {
        let mut m = Message::from_vec(&query(name, qtype, ecs)).expect("query");
        let mut edns = m.edns.take().unwrap_or_default();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(true);
        m.set_edns(edns);
        m.to_vec().expect("encode")
    };
    let cases: [(&str, Vec<u8>, u64); 6] = [
        (
            "signed global A, ECS /24",
            with_do(
                "contoso.registry.example.",
                RecordType::A,
                Some("192.0.2.0/24"),
            ),
            0,
        ),
        (
            "signed global AAAA",
            with_do("contoso.registry.example.", RecordType::AAAA, None),
            0,
        ),
        (
            "signed global NODATA",
            with_do("contoso.registry.example.", RecordType::TXT, None),
            0,
        ),
        (
            "signed static A (prepared)",
            with_do("www.registry.example.", RecordType::A, None),
            0,
        ),
        (
            "signed static NODATA (prepared)",
            with_do("www.registry.example.", RecordType::TXT, None),
            0,
        ),
        (
            "signed NXDOMAIN (compact, cached NSEC)",
            with_do("nope.registry.example.", RecordType::A, None),
            40,
        ),
    ];
    let mut out = Vec::with_capacity(4096);
    for (what, packet, budget) in &cases {
        // The first answer signs (a cache miss) and checks the reply.
        handle(&snap, packet, source, Transport::Udp, &mut out, &counters).expect("answered");
        let reply = Message::from_vec(&out).expect("reply parses");
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{what}"
        );
        let sigs = reply
            .answers
            .iter()
            .chain(&reply.authorities)
            .filter(|r| r.record_type() == RecordType::RRSIG)
            .count();
        assert!(sigs >= 1, "{what}: signed: {reply:?}");
        let n = allocations(|| {
            for _ in 0..1000 {
                let o = handle(&snap, packet, source, Transport::Udp, &mut out, &counters);
                std::hint::black_box(o);
            }
        });
        assert!(
            n <= budget * 1000,
            "{what}: {n} heap allocations in 1000 answers, budget {budget} per answer"
        );
        eprintln!("{what}: {} allocations per answer", n / 1000);
    }
}
