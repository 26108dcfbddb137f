//! The answers prepared at load (`zone::fast`) give exactly what the full lookup gives: every
//! name of two zones (and names beside them: missing, below a node, under a wildcard, at and
//! below a cut, global names and the empty non-terminals above them), every common type, in
//! the zone's case and in mixed case, with and without EDNS and ECS, over UDP and TCP.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

use super::*;

const ZONE: &str = "$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ NS ns1
@ NS ns2.elsewhere.test.
@ MX 10 mail
ns1 A 192.0.2.1
mail A 192.0.2.25
mail AAAA 2001:db8::25
MiXeD A 192.0.2.3
a.b.c A 192.0.2.4
*.w MX 10 mail
*.w TXT \"wild\"
alias CNAME a.b.c
toglobal CNAME g.x
sub NS ns.sub
ns.sub A 192.0.2.5
sub2 NS ns1.sub2
ns1.sub2 A 192.0.2.6
srv SRV 0 5 443 mail
";

const CHILD: &str = "$TTL 60
@ IN SOA ns1 hostmaster.example.test. 7 3600 600 86400 30
@ NS ns1
ns1 A 192.0.2.6
www A 192.0.2.7
";

/// A snapshot serving `example.test.` and its child `sub2.example.test.`, with global names
/// at the apex and below an empty non-terminal (`g.x`).
fn snapshot(dir: &std::path::Path) -> Snapshot {
    snapshot_with(dir, "")
}

/// [`snapshot`] with both zones signed (a CSK each, made here).
fn signed_snapshot(dir: &std::path::Path) -> Snapshot {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for zone in ["example.test.", "sub2.example.test."] {
        crate::dnssec::Key::generate(
            zone,
            crate::dnssec::FLAGS_KSK,
            crate::dnssec::Algorithm::EcdsaP256Sha256,
        )
        .unwrap()
        .write(&keys)
        .unwrap();
    }
    snapshot_with(
        dir,
        "[dnssec]\nzones = [\"example.test.\", \"sub2.example.test.\"]\n",
    )
}

fn snapshot_with(dir: &std::path::Path, extra: &str) -> Snapshot {
    let geo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("geo");
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(dir.join("zones/example.test.zone"), ZONE).unwrap();
    std::fs::write(dir.join("zones/sub2.example.test.zone"), CHILD).unwrap();
    let config = format!(
        "version = 1\n[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = \"zones\"\ngeo_dir = {geo:?}\n\
         [routing]\ndefault_order = [\"westeurope\"]\n[regions.westeurope]\n\
         [registries.apex]\nname = \"example.test.\"\n[registries.apex.replicas.westeurope]\nipv4 = [\"192.0.2.100\"]\n\
         [registries.deep]\nname = \"g.x.example.test.\"\n[registries.deep.replicas.westeurope]\nipv4 = [\"192.0.2.101\"]\n{extra}"
    );
    std::fs::write(dir.join("steerdns.toml"), config).unwrap();
    Snapshot::load(&dir.join("steerdns.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn query(name: &str, rtype: RecordType, edns: Option<Edns>) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    m.edns = edns;
    m.to_vec().unwrap()
}

/// The response's bytes.
fn bytes(snap: &Snapshot, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let counters = DnsCounters::default();
    let source: IpAddr = "127.0.1.1".parse().unwrap();
    handle(snap, packet, source, transport, &mut out, &counters)?;
    Some(out)
}

fn answer(snap: &Snapshot, packet: &[u8], transport: Transport) -> Option<Message> {
    bytes(snap, packet, transport).map(|b| Message::from_vec(&b).unwrap())
}

/// Mixed case: every other letter upper-cased.
fn mixed(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[test]
fn prepared_answers_equal_the_full_lookup() {
    let dir = tempfile::tempdir().unwrap();
    compare_prepared(snapshot(dir.path()), false);
}

/// With both zones signed and the DO bit: the prepared signed answers and NODATA equal the
/// full signed path's (the same signatures: the snapshots share the zones).
#[test]
fn signed_prepared_answers_equal_the_full_lookup() {
    let dir = tempfile::tempdir().unwrap();
    compare_prepared(signed_snapshot(dir.path()), true);
}

fn compare_prepared(fast: Snapshot, dnssec_ok: bool) {
    let mut slow = fast.clone();
    slow.zones = Arc::new(fast.zones.without_prepared());
    let names = [
        "example.test.",
        "ns1.example.test.",
        "mail.example.test.",
        "mixed.example.test.",
        "a.b.c.example.test.",
        "b.c.example.test.",
        "c.example.test.",
        "zz.a.b.c.example.test.",
        "nope.example.test.",
        "a.nope.example.test.",
        "q.w.example.test.",
        "*.w.example.test.",
        "w.example.test.",
        "alias.example.test.",
        "toglobal.example.test.",
        "x.example.test.",
        "g.x.example.test.",
        "y.x.example.test.",
        "h.g.x.example.test.",
        "sub.example.test.",
        "ns.sub.example.test.",
        "deep.sub.example.test.",
        "sub2.example.test.",
        "ns1.sub2.example.test.",
        "www.sub2.example.test.",
        "nope.sub2.example.test.",
        "srv.example.test.",
        "other.test.",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::MX,
        RecordType::NS,
        RecordType::SOA,
        RecordType::TXT,
        RecordType::CNAME,
        RecordType::SRV,
        RecordType::DS,
        RecordType::ANY,
    ];
    let edns = |ecs: Option<&str>| {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(dnssec_ok);
        if let Some(s) = ecs {
            e.options_mut()
                .insert(EdnsOption::Subnet(s.parse::<ClientSubnet>().unwrap()));
        }
        e
    };
    let mut prepared = 0;
    let mut compared = 0;
    for name in names {
        for spelled in [name.to_string(), mixed(name)] {
            for t in types {
                for e in [None, Some(edns(None)), Some(edns(Some("192.0.2.0/24")))] {
                    let packet = query(&spelled, t, e);
                    for transport in [Transport::Udp, Transport::Tcp] {
                        // The same message; the bytes differ only where the full path
                        // compresses a name in the negative SOA against the whole question
                        // (an SOA MNAME equal to the query name), which the SOA prepared
                        // for the apex cannot know.
                        let a = answer(&fast, &packet, transport);
                        let b = answer(&slow, &packet, transport);
                        assert_eq!(a, b, "{spelled} {t} over {transport:?}");
                        compared += 1;
                    }
                    let q = wire::parse_query(&packet).unwrap();
                    let mut lower = [0u8; wire::MAX_NAME_LEN];
                    let key = wire::lowercase_wire(q.qname_wire(), &mut lower);
                    let with_do = q.edns.is_some_and(|e| e.dnssec_ok);
                    prepared += usize::from(
                        fast.zones
                            .fast(key, q.qtype, &*fast.globals, with_do)
                            .is_some(),
                    );
                }
            }
        }
    }
    // The prepared path answered many of them (and not everything: chains, wildcards, cuts
    // and global names stay on the full lookup).
    assert!(prepared > compared / 8, "{prepared} of {compared}");
    assert!(prepared < compared / 2, "{prepared} of {compared}");
}

#[test]
fn a_prepared_answer_moves_the_soa_to_the_apex_inside_the_question() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot(dir.path());
    let m = answer(
        &snap,
        &query("NoPe.ExAmPlE.tEsT.", RecordType::A, None),
        Transport::Udp,
    )
    .unwrap();
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
    assert!(m.metadata.authoritative);
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(
        m.authorities[0].name,
        Name::from_str("example.test.").unwrap()
    );
    assert_eq!(m.authorities[0].ttl, 60);
    let m = answer(
        &snap,
        &query("a.nope.b.c.example.test.", RecordType::A, None),
        Transport::Udp,
    )
    .unwrap();
    assert_eq!(
        m.authorities[0].name,
        Name::from_str("example.test.").unwrap()
    );
    let m = answer(
        &snap,
        &query("MAIL.example.test.", RecordType::MX, None),
        Transport::Udp,
    )
    .unwrap();
    assert_eq!(m.answers.len(), 0);
    assert_eq!(
        m.authorities[0].name,
        Name::from_str("example.test.").unwrap()
    );
    let m = answer(
        &snap,
        &query("EXAMPLE.test.", RecordType::MX, None),
        Transport::Udp,
    )
    .unwrap();
    assert_eq!(m.answers[0].name, Name::from_str("example.test.").unwrap());
    assert_eq!(m.additionals.len(), 2, "mail's A and AAAA");
}

/// Static signatures are made again at half their validity without a reload: before, none
/// is due; a week later (validity 14 days less a day of jitter) every signature of the zone
/// — prepared answers, the NODATA proof of a global name, the negative SOA — carries the new
/// inception, and nothing is due again.
#[test]
fn signatures_are_renewed_at_half_their_validity() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let dir = tempfile::tempdir().unwrap();
    let snap = signed_snapshot(dir.path());
    let now = SystemTime::now();
    assert!(snap.resigned(now).is_none(), "nothing due yet");
    let later = now + Duration::from_secs(7 * 86_400);
    let next = snap.resigned(later).expect("due after half the validity");
    assert!(next.resigned(later).is_none(), "renewed");
    // The inception of every RRSIG in the answer to `name`/`t` with the DO bit.
    let inceptions = |s: &Snapshot, name: &str, t: RecordType| -> Vec<u32> {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(true);
        let m = answer(s, &query(name, t, Some(e)), Transport::Udp).unwrap();
        m.answers
            .iter()
            .chain(&m.authorities)
            .filter_map(|r| match &r.data {
                hickory_proto::rr::RData::Unknown { code, rdata } if *code == RecordType::RRSIG => {
                    let b = &rdata.anything;
                    Some(u32::from_be_bytes([b[12], b[13], b[14], b[15]]))
                }
                _ => None,
            })
            .collect()
    };
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs() as u32 - 3_600;
    for (name, t) in [
        ("mail.example.test.", RecordType::A),
        ("mail.example.test.", RecordType::TXT),
        ("g.x.example.test.", RecordType::TXT),
    ] {
        let before = inceptions(&snap, name, t);
        let after = inceptions(&next, name, t);
        assert!(
            !before.is_empty() && before.len() == after.len(),
            "{name} {t}"
        );
        assert!(
            before.iter().all(|i| i.abs_diff(secs(now)) <= 2),
            "{name} {t}: {before:?}"
        );
        // The steered name's NSEC is from the cache (renewed at its own half-life); the SOA
        // and everything made at load are new.
        assert!(
            after.iter().any(|i| *i == secs(later)),
            "{name} {t}: {after:?}"
        );
        if t != RecordType::TXT || !name.starts_with('g') {
            assert!(
                after.iter().all(|i| *i == secs(later)),
                "{name} {t}: {after:?}"
            );
        }
    }
}
