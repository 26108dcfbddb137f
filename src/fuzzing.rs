//! The seam the fuzz targets (`fuzz/`) and the reply-invariant proptest (`tests/it/fuzzing.rs`)
//! call: thin wrappers over the crate-private parsers, the request harness that turns one
//! arbitrary input into a client, a transport, health masks and a packet, and the one check
//! of the reply invariants both of them assert. Not an API: hidden from the docs, and nothing
//! else in the crate uses it.
//!
//! A request input is laid out as
//!
//! ```text
//!  [flags: 1] [enabled mask: 4, LE] [routable mask: 4, LE] [client: 4 or 16] [DNS message ...]
//!   bit 0: IPv6 client   bit 1: TCP   bit 2: use the masks   bit 3: fail-open   bit 4: guard
//!   bit 5: shadow mode   bit 6: the health view is past its deadline (the writer stopped)
//! ```
//!
//! so the fuzzer (and a seed file) chooses the family, the transport and the health state.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, RecordType};

use crate::config::Config;
use crate::dns::{self, Transport};
use crate::health::book::Masks;
use crate::health::outcome::DeepDoc;
use crate::health::spec::{HttpCheck, StatusRange};
use crate::metrics::DnsCounters;
use crate::problem::Problems;
use crate::routing::{BuiltinRegions, LatencyTable, RegionSpec, ReplicaMask, resolve_regions};
use crate::state::freshness::HealthClock;
use crate::state::{HealthMasks, Snapshot};
use crate::wire::{self, HEADER_LEN, Reject};
use crate::zone::{NoOutside, Zone, ZoneSet};

/// The largest message over TCP (RFC 1035 §4.2.2: a two-octet length).
const TCP_MAX: usize = u16::MAX as usize;

//------------ The request path -------------------------------------------------------------

/// A snapshot to answer fuzzed requests from, with reusable buffers.
pub struct RequestHarness {
    snap: Snapshot,
    counters: DnsCounters,
}

/// One decoded request input.
#[derive(Debug)]
pub struct Request<'a> {
    /// The transport source address.
    pub client: IpAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// The DNS message.
    pub packet: &'a [u8],
    flags: u8,
    enabled: u32,
    routable: u32,
}

impl<'a> Request<'a> {
    /// Decode an input (the layout in the module doc); `None` when it is too short.
    pub fn decode(input: &'a [u8]) -> Option<Self> {
        let (&flags, rest) = input.split_first()?;
        let enabled = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
        let routable = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
        let rest = &rest[8..];
        let (client, packet) = if flags & 1 == 0 {
            let a: [u8; 4] = rest.get(..4)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(a)), &rest[4..])
        } else {
            let a: [u8; 16] = rest.get(..16)?.try_into().ok()?;
            // The socket loops canonicalise (`::ffff:a.b.c.d` is IPv4); so does this.
            (IpAddr::V6(Ipv6Addr::from(a)).to_canonical(), &rest[16..])
        };
        let transport = if flags & 2 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        Some(Self {
            client,
            transport,
            packet,
            flags,
            enabled,
            routable,
        })
    }

    /// Encode a request (for seed corpora and the proptest).
    pub fn encode(client: IpAddr, transport: Transport, health: Option<SeedHealth>) -> Vec<u8> {
        let h = health.unwrap_or_default();
        let mut flags = u8::from(client.is_ipv6());
        flags |= u8::from(transport == Transport::Tcp) << 1;
        if health.is_some() {
            flags |= 1 << 2;
        }
        flags |= u8::from(h.fail_open) << 3;
        flags |= u8::from(h.guard) << 4;
        flags |= u8::from(h.expired) << 6;
        let mut v = vec![flags];
        v.extend_from_slice(&h.enabled.to_le_bytes());
        v.extend_from_slice(&h.routable.to_le_bytes());
        match client {
            IpAddr::V4(a) => v.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => v.extend_from_slice(&a.octets()),
        }
        v
    }
}

/// Health state a seed asks for: which replicas are enabled and routable (bit i = replica
/// i of every profile, rotated by the profile index), fail-open and the guard.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeedHealth {
    /// Enabled replicas.
    pub enabled: u32,
    /// Routable replicas (only enabled ones count).
    pub routable: u32,
    /// The profile is failing open.
    pub fail_open: bool,
    /// The mass-failure guard is engaged.
    pub guard: bool,
    /// The health view is past its deadline (every verdict counts as unknown).
    pub expired: bool,
}

impl RequestHarness {
    /// Load a config (and everything it names) as the server does.
    pub fn load(config: &Path) -> Result<Self, Problems> {
        Ok(Self {
            snap: Snapshot::load(config)?,
            counters: DnsCounters::default(),
        })
    }

    /// Answer one request input and check the reply invariants; `out` is reused.
    pub fn run(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let Some(req) = Request::decode(input) else {
            return Ok(());
        };
        out.clear();
        let answered = if req.flags & 4 == 0 {
            dns::handle(
                &self.snap,
                req.packet,
                req.client,
                req.transport,
                out,
                &self.counters,
            )
        } else {
            let snap = Snapshot {
                health: Arc::new(self.masks(&req)),
                health_clock: if req.flags & 64 != 0 {
                    Arc::new(HealthClock::expired_long_ago())
                } else {
                    Arc::clone(&self.snap.health_clock)
                },
                ..self.snap.clone()
            };
            dns::handle(
                &snap,
                req.packet,
                req.client,
                req.transport,
                out,
                &self.counters,
            )
        };
        check_reply(req.packet, req.transport, answered.map(|_| out.as_slice()))
    }

    /// Health masks as the writer could publish them: enabled ⊆ the profile's replicas,
    /// routable ⊆ enabled.
    fn masks(&self, req: &Request<'_>) -> HealthMasks {
        let profiles = self
            .snap
            .health
            .profiles
            .iter()
            .enumerate()
            .map(|(i, all)| {
                let rot = (i % 32) as u32;
                let enabled =
                    ReplicaMask::from_bits(u64::from(req.enabled.rotate_left(rot))) & all.enabled;
                let routable =
                    ReplicaMask::from_bits(u64::from(req.routable.rotate_left(rot))) & enabled;
                let fail_open = req.flags & 8 != 0;
                Masks {
                    // Failing open routes on every enabled replica.
                    routable: if fail_open { enabled } else { routable },
                    enabled,
                    fail_open,
                    shadow_deep: (req.flags & 32 != 0).then_some(routable),
                }
            })
            .collect();
        HealthMasks {
            profiles,
            exceptions: Default::default(),
            guard_engaged: req.flags & 16 != 0,
        }
    }
}

/// The reply invariants of the request path, for any query bytes:
///
/// - nothing is sent only for a message shorter than a header or a response (QR=1);
/// - the reply parses (hickory `Message::from_vec`), has QR set and the query's ID;
/// - when the server parsed a question (to answer it, or to echo it with an error), the reply
///   carries exactly that question, byte for byte, and hickory reads it as the same question;
/// - over UDP the reply fits the client's payload size: 512 without EDNS, else the EDNS size
///   clamped to 512..=1232 as the server does; over TCP it fits 65535 octets.
pub fn check_reply(query: &[u8], transport: Transport, reply: Option<&[u8]>) -> Result<(), String> {
    let parsed = wire::parse_query(query);
    let Some(reply) = reply else {
        return match parsed {
            Err(Reject::Drop) if query.len() < HEADER_LEN || query[2] & 0x80 != 0 => Ok(()),
            _ => Err(format!("no reply to a query that needs one: {parsed:?}")),
        };
    };
    if matches!(parsed, Err(Reject::Drop)) {
        return Err("a reply to a message that must be dropped".into());
    }
    let m = Message::from_vec(reply).map_err(|e| format!("the reply does not parse: {e}"))?;
    if m.metadata.message_type != MessageType::Response {
        return Err("QR is not set".into());
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    if m.metadata.id != id {
        return Err(format!("ID {} answers ID {id}", m.metadata.id));
    }
    let (question, udp_limit) = match &parsed {
        Ok(q) => (q.question, q.udp_limit()),
        Err(Reject::Error {
            question_len, edns, ..
        }) => (
            &query[HEADER_LEN..HEADER_LEN + question_len],
            edns.map_or(512, |e| {
                usize::from(e.udp_payload.clamp(512, wire::OUR_UDP_PAYLOAD))
            }),
        ),
        Err(Reject::Drop) => unreachable!("returned above"),
    };
    if question.is_empty() {
        if !m.queries.is_empty() {
            return Err("a question in the reply to a query without one".into());
        }
    } else {
        if reply.get(HEADER_LEN..HEADER_LEN + question.len()) != Some(question) {
            return Err("the reply's question is not the query's".into());
        }
        // hickory's reading of the question alone (a header with QDCOUNT 1, nothing else).
        let mut alone = query[..HEADER_LEN + question.len()].to_vec();
        alone[4..HEADER_LEN].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        let echoed = Message::from_vec(&alone)
            .ok()
            .filter(|q| q.queries.len() == 1);
        if let Some(q) = echoed
            && m.queries != q.queries
        {
            return Err(format!("question {:?} answers {:?}", m.queries, q.queries));
        }
    }
    let limit = match transport {
        Transport::Udp => udp_limit,
        Transport::Tcp => TCP_MAX,
    };
    if reply.len() > limit {
        return Err(format!(
            "{} octets over {transport:?} where the limit is {limit}",
            reply.len()
        ));
    }
    Ok(())
}

//------------ The file parsers -------------------------------------------------------------

/// The zone-file loader on zone text (origin `fuzz.example.`); a zone that loads is also
/// asked for its apex SOA and a few names.
pub fn zone_file(text: &str) -> bool {
    let origin = Name::from_ascii("fuzz.example.").unwrap_or_else(|_| Name::root());
    let Ok(zone) = Zone::parse(Path::new("fuzz.zone"), text, &origin) else {
        return false;
    };
    let zones = ZoneSet::from_zones([zone]);
    let apex = zones.zones().next().map(|z| z.origin().clone());
    for name in apex.iter().chain(&[origin]) {
        for rtype in [RecordType::SOA, RecordType::A, RecordType::ANY] {
            let _ = zones.lookup(name, rtype, &NoOutside);
        }
    }
    true
}

/// The config loader on TOML text (the file's directory does not exist: nothing is read).
pub fn config_text(text: &str) -> bool {
    Config::from_toml(text, Path::new("/nonexistent/steerdns.toml")).is_ok()
}

/// The latency table parser (regions westeurope, eastus, southeastasia); a table that parses
/// is also looked up, with its ECS scope.
pub fn latency_table(text: &str, probe: IpAddr) -> bool {
    let specs: Vec<RegionSpec<'_>> = ["westeurope", "eastus", "southeastasia"]
        .into_iter()
        .map(|name| RegionSpec {
            name,
            ..Default::default()
        })
        .collect();
    let Ok(regions) = resolve_regions(&specs, &BuiltinRegions::bundled()) else {
        return false;
    };
    let Ok(table) = LatencyTable::parse(text, "fuzz.csv", &regions) else {
        return false;
    };
    if let Some(m) = table.lookup(probe) {
        let scope = table.match_scope(probe, &m);
        let max = if probe.is_ipv4() { 32 } else { 128 };
        assert!(scope <= max, "scope /{scope} for {probe}");
    }
    true
}

/// The deep-health document parser and the judge on a body (status 200, a `json` rule on
/// `status`); `Some(passed)` when the body was a deep-health document.
pub fn deep_health(body: &[u8]) -> Option<bool> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let doc = json.as_ref().and_then(DeepDoc::parse);
    let check = HttpCheck {
        url: "http://127.0.0.1/health".parse().ok()?,
        headers: vec![],
        expect_status: vec![StatusRange { lo: 200, hi: 299 }],
        body_contains: None,
        json: Some(("status".into(), "ok".into())),
        fresh_connection: false,
        insecure_skip_verify: false,
    };
    let verdict = crate::health::check::judge(
        &check,
        200,
        None,
        Ok(body.to_vec()),
        json.as_ref(),
        doc.as_ref(),
    );
    let doc = doc?;
    // A failing dependency always fails the probe.
    if !doc.failing().is_empty() {
        assert!(verdict.is_err(), "failing dependencies passed: {doc:?}");
    }
    Some(verdict.is_ok())
}

//------------ The signed request path ------------------------------------------------------

/// The request path with the DO bit against a config whose every zone is signed by a key
/// made here: every RRSIG of every reply must verify with its zone's public key (RFC 4034
/// §3.1.8.1, rebuilt here independently of the signer), and every RRset of an authoritative
/// answer must carry one.
pub struct SignedHarness {
    snap: Snapshot,
    keys: Vec<crate::dnssec::Key>,
    counters: DnsCounters,
}

/// One parsed RRSIG: its RDATA up to the signature, and the parts the check needs.
struct Sig<'a> {
    covered: u16,
    labels: u8,
    original_ttl: u32,
    tag: u16,
    signer: String,
    signed_part: &'a [u8],
    signature: &'a [u8],
}

fn parse_sig(rdata: &[u8]) -> Option<Sig<'_>> {
    let head = rdata.get(..18)?;
    let mut at = 18;
    let mut signer = String::new();
    loop {
        let len = usize::from(*rdata.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        let label = rdata.get(at..at + len)?;
        signer.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        signer.push('.');
        at += len;
    }
    if signer.is_empty() {
        signer.push('.');
    }
    Some(Sig {
        covered: u16::from_be_bytes([head[0], head[1]]),
        labels: head[3],
        original_ttl: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
        tag: u16::from_be_bytes([head[16], head[17]]),
        signer,
        signed_part: &rdata[..at],
        signature: &rdata[at..],
    })
}

impl SignedHarness {
    /// Load `config` with every zone it serves signed by a new key (ECDSA P-256, a CSK, kept
    /// in memory only).
    pub fn load(config: &Path) -> Result<Self, String> {
        let unsigned = Snapshot::load(config).map_err(|e| e.to_string())?;
        let origins = unsigned.zones.zones().map(|z| z.origin().clone());
        let dnssec = crate::config::dnssec::DnssecConfig::fresh(
            origins,
            std::env::temp_dir(),
            false,
            1 << 12,
        )?;
        let keys = dnssec.zones.iter().flat_map(|z| z.keys.clone()).collect();
        let mut cfg = Config::load(config).map_err(|e| e.to_string())?;
        cfg.dnssec = Some(dnssec);
        Ok(Self {
            snap: Snapshot::from_config(cfg).map_err(|e| e.to_string())?,
            keys,
            counters: DnsCounters::default(),
        })
    }

    /// Its signed snapshot (sharing the signers and their caches), to serve it another way.
    pub fn snapshot(&self) -> Snapshot {
        self.snap.clone()
    }

    /// One input: `[flags: 1] [client: 4] [qtype: 2, BE] [name: the rest]`; flags bit 0:
    /// TCP, bit 1: under `apex.example.` instead of `fuzz.example.`, bit 2: the name as given
    /// (else the rest's bytes become labels of letters, digits, `-` and `*` under the zone).
    /// The query carries the DO bit and EDNS 1232.
    pub fn run(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        use hickory_proto::op::{Edns, OpCode, Query};
        let (Some(&flags), Some(client), Some(qtype)) =
            (input.first(), input.get(1..5), input.get(5..7))
        else {
            return Ok(());
        };
        let rest = &input[7..];
        let client = IpAddr::V4(Ipv4Addr::new(client[0], client[1], client[2], client[3]));
        let qtype = RecordType::from(u16::from_be_bytes([qtype[0], qtype[1]]));
        let zone = if flags & 2 == 0 {
            "fuzz.example."
        } else {
            "apex.example."
        };
        let text = if flags & 4 != 0 {
            String::from_utf8_lossy(rest).into_owned()
        } else {
            let mut labels: Vec<String> = rest
                .split(|b| *b == b'.' || *b == 0)
                .filter(|l| !l.is_empty())
                .take(4)
                .map(|l| {
                    l.iter()
                        .take(20)
                        .map(|b| match b % 39 {
                            n @ 0..=25 => char::from(b'a' + n),
                            n @ 26..=35 => char::from(b'0' + n - 26),
                            36 => '-',
                            _ => '*',
                        })
                        .collect()
                })
                .collect();
            labels.push(zone.to_owned());
            labels.join(".")
        };
        let Ok(name) = Name::from_ascii(&text) else {
            return Ok(());
        };
        let mut m = Message::new(0x5353, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(name, qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(true);
        m.set_edns(edns);
        let Ok(packet) = m.to_vec() else {
            return Ok(());
        };
        let transport = if flags & 1 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        out.clear();
        let answered = dns::handle(&self.snap, &packet, client, transport, out, &self.counters);
        check_reply(&packet, transport, answered.map(|_| out.as_slice()))?;
        self.check_signatures(out)
    }

    /// Every RRSIG verifies over the RRset it covers in its section; every answer RRset of
    /// an authoritative, complete NOERROR answer has one.
    pub fn check_signatures(&self, reply: &[u8]) -> Result<(), String> {
        use hickory_proto::rr::{RData, Record};
        use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
        let Ok(m) = Message::from_vec(reply) else {
            return Err("the reply does not parse".into());
        };
        let sections: [&[Record]; 3] = [&m.answers, &m.authorities, &m.additionals];
        for (s, records) in sections.iter().enumerate() {
            for r in records.iter() {
                let RData::Unknown { code, rdata } = &r.data else {
                    continue;
                };
                if *code != RecordType::RRSIG {
                    continue;
                }
                let sig = parse_sig(&rdata.anything)
                    .ok_or_else(|| format!("a malformed RRSIG at {}", r.name))?;
                let covered = RecordType::from(sig.covered);
                let set: Vec<&Record> = records
                    .iter()
                    .filter(|x| x.record_type() == covered && x.name == r.name)
                    .collect();
                if set.is_empty() {
                    return Err(format!(
                        "section {s}: an RRSIG over {} {covered} without the RRset",
                        r.name
                    ));
                }
                // The owner as signed: the wildcard when the RRSIG has fewer labels.
                let owner = if sig.labels < r.name.num_labels() {
                    r.name
                        .trim_to(usize::from(sig.labels))
                        .prepend_label("*")
                        .map_err(|e| e.to_string())?
                } else {
                    r.name.clone()
                };
                let owner = crate::dnssec::sign::canonical_wire(&owner);
                let mut rdatas: Vec<Vec<u8>> = set
                    .iter()
                    .map(|x| crate::dnssec::sign::canonical_rdata(x))
                    .collect();
                rdatas.sort();
                rdatas.dedup();
                let mut data = sig.signed_part.to_vec();
                for rd in &rdatas {
                    data.extend_from_slice(&owner);
                    data.extend_from_slice(&sig.covered.to_be_bytes());
                    data.extend_from_slice(&1u16.to_be_bytes());
                    data.extend_from_slice(&sig.original_ttl.to_be_bytes());
                    data.extend_from_slice(&(rd.len() as u16).to_be_bytes());
                    data.extend_from_slice(rd);
                }
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.tag() == sig.tag && k.zone == sig.signer)
                    .ok_or_else(|| format!("no key {} of {}", sig.tag, sig.signer))?;
                let ok = match key.algorithm {
                    crate::dnssec::Algorithm::EcdsaP256Sha256 => {
                        let mut point = vec![4];
                        point.extend_from_slice(&key.public);
                        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                            .verify(&data, sig.signature)
                    }
                    crate::dnssec::Algorithm::Ed25519 => {
                        UnparsedPublicKey::new(&ED25519, &key.public).verify(&data, sig.signature)
                    }
                };
                if ok.is_err() {
                    return Err(format!(
                        "section {s}: the RRSIG over {} {covered} does not verify",
                        r.name
                    ));
                }
            }
        }
        if m.metadata.authoritative
            && !m.metadata.truncation
            && m.metadata.response_code == hickory_proto::op::ResponseCode::NoError
        {
            for r in &m.answers {
                if r.record_type() == RecordType::RRSIG {
                    continue;
                }
                let signed = m.answers.iter().any(|x| {
                    x.name == r.name
                        && matches!(&x.data, RData::Unknown { code, rdata }
                            if *code == RecordType::RRSIG
                                && rdata.anything.get(..2)
                                    == Some(&u16::from(r.record_type()).to_be_bytes()[..]))
                });
                if !signed {
                    return Err(format!(
                        "the answer {} {} has no RRSIG",
                        r.name,
                        r.record_type()
                    ));
                }
            }
        }
        Ok(())
    }
}
