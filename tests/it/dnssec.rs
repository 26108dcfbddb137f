//! DNSSEC keys in BIND's file format, both ways, with BIND's own tools: a key made by
//! `dnssec-keygen` is read by `steerdns dnssec ds`, a key made by `steerdns dnssec keygen`
//! is read by `dnssec-dsfromkey`, and in every case the DS records are the same, for
//! algorithms 13 and 15. A key for another zone or with an unsupported algorithm is
//! refused with the file and the reason.
//!
//! Needs `dnssec-keygen` and `dnssec-dsfromkey` (Debian `bind9-utils`, which the resolver
//! lab's `bind9` brings); without them the test says so and passes.

use std::path::Path;
use std::process::Command;

use steerdns::admin::context::{Command as Control, OverrideAction, OverrideCommand};
use steerdns::overrides::Target;

fn run(cmd: &str, args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn steerdns(args: &[&str], dir: &Path) -> (i32, String, String) {
    run(env!("CARGO_BIN_EXE_steerdns"), args, dir)
}

/// `steerdns dnssec keygen registry.example --dir keys` in `dir`, with `extra` flags; must
/// succeed.
fn keygen(dir: &Path, extra: &[&str]) {
    let mut args = vec!["dnssec", "keygen", "registry.example", "--dir", "keys"];
    args.extend_from_slice(extra);
    let (code, _, err) = steerdns(&args, dir);
    assert_eq!(code, 0, "{err}");
}

/// Whether every tool of `tools` (absolute paths) is installed. A missing one fails the test
/// under `STEERDNS_REQUIRE_DNSSEC_TOOLS` (`tests/run.sh` sets it and installs `packages`);
/// otherwise the caller skips, with a note.
fn tools_present(tools: &[&str], packages: &str) -> bool {
    let Some(t) = tools.iter().find(|t| !Path::new(t).exists()) else {
        return true;
    };
    assert!(
        std::env::var_os("STEERDNS_REQUIRE_DNSSEC_TOOLS").is_none(),
        "{t} is missing (apt-get install {packages})"
    );
    eprintln!("SKIPPED: {t} is missing (apt-get install {packages})");
    false
}

#[test]
fn keys_and_ds_records_agree_with_bind() {
    if !tools_present(
        &["/usr/bin/dnssec-keygen", "/usr/bin/dnssec-dsfromkey"],
        "bind9-utils",
    ) {
        return;
    }
    for (alg, bind_alg) in [("13", "ECDSAP256SHA256"), ("15", "ED25519")] {
        // BIND's key, our DS.
        let dir = tempfile::tempdir().expect("tmp");
        let (code, stem, err) = run(
            "dnssec-keygen",
            &["-q", "-a", bind_alg, "-f", "KSK", "bind.example"],
            dir.path(),
        );
        assert_eq!(code, 0, "{err}");
        let (code, theirs, err) = run(
            "dnssec-dsfromkey",
            &["-2", &format!("{}.key", stem.trim())],
            dir.path(),
        );
        assert_eq!(code, 0, "{err}");
        let (code, ours, err) =
            steerdns(&["dnssec", "ds", "bind.example", "--dir", "."], dir.path());
        assert_eq!(code, 0, "{err}");
        assert_eq!(ours, theirs, "algorithm {alg}");

        // Our key, BIND's DS.
        let (code, out, err) = steerdns(
            &[
                "dnssec",
                "keygen",
                "ours.example",
                "--algorithm",
                alg,
                "--dir",
                ".",
            ],
            dir.path(),
        );
        assert_eq!(code, 0, "{err}");
        let stem = out.trim().trim_start_matches("./").to_owned();
        assert!(
            stem.starts_with(&format!("Kours.example.+0{alg}+")),
            "{stem}"
        );
        let (code, theirs, err) = run(
            "dnssec-dsfromkey",
            &["-2", &format!("{stem}.key")],
            dir.path(),
        );
        assert_eq!(code, 0, "dnssec-dsfromkey reads our key: {err}");
        let (code, ours, err) = steerdns(&["dnssec", "ds", "ours.example."], dir.path());
        assert_eq!(code, 0, "{err}");
        assert_eq!(ours, theirs, "algorithm {alg}");
        // A zone-signing key has no DS.
        let (code, _, _) = steerdns(&["dnssec", "keygen", "zsk.example", "--zsk"], dir.path());
        assert_eq!(code, 0);
        let (code, _, err) = steerdns(&["dnssec", "ds", "zsk.example"], dir.path());
        assert_eq!(code, 3);
        assert!(err.contains("no key-signing key for zsk.example"), "{err}");
    }
    // Refusals: an algorithm we do not sign with, and a key file for another zone.
    let dir = tempfile::tempdir().expect("tmp");
    let (code, _, err) = steerdns(
        &["dnssec", "keygen", "x.example", "--algorithm", "8"],
        dir.path(),
    );
    assert_eq!(code, 3);
    assert!(err.contains("algorithm 8 is not supported"), "{err}");
    let (code, stem, _) = run(
        "dnssec-keygen",
        &["-q", "-a", "ECDSAP256SHA256", "-f", "KSK", "a.example"],
        dir.path(),
    );
    assert_eq!(code, 0);
    std::fs::rename(
        dir.path().join(format!("{}.key", stem.trim())),
        dir.path().join("Kb.example.+013+00001.key"),
    )
    .expect("rename");
    let (code, _, err) = steerdns(&["dnssec", "ds", "b.example"], dir.path());
    assert_eq!(code, 3);
    assert!(
        err.contains("Kb.example.+013+00001.key:")
            && err.contains("this key is for a.example., not b.example."),
        "{err}"
    );
}

/// A steered name: three regions, nearest first from the default order (westeurope).
const STEERED: &str = r#"
[routing]
latency_table = "latency.csv"
default_order = ["westeurope", "eastus", "southeastasia"]
[regions.westeurope]
[regions.eastus]
[regions.southeastasia]
[registries.contoso]
name = "contoso.registry.example."
ttl = "30s"
[registries.contoso.replicas.westeurope]
ipv4 = ["192.0.2.10"]
ipv6 = ["2001:db8::10"]
[registries.contoso.replicas.eastus]
ipv4 = ["198.51.100.10"]
ipv6 = ["2001:db8:1::10"]
[registries.contoso.replicas.southeastasia]
ipv4 = ["203.0.113.10"]
[registries.deep]
name = "app.eu.registry.example."
[registries.deep.replicas.eastus]
ipv4 = ["198.51.100.20"]
"#;

/// `delv` (BIND's validating lookup) with the zone's KSK as its trust anchor, against the
/// server at `addr`: its output.
async fn delv(addr: std::net::SocketAddr, anchors: &Path, name: &str, rtype: &str) -> String {
    let args: Vec<String> = vec![
        format!("@{}", addr.ip()),
        "-p".into(),
        addr.port().to_string(),
        "-a".into(),
        anchors.display().to_string(),
        "+root=registry.example".into(),
        name.into(),
        rtype.into(),
    ];
    tokio::task::spawn_blocking(move || {
        let out = Command::new("delv").args(&args).output().expect("delv");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .await
    .expect("delv task")
}

/// BIND's trust-anchors clause for the KSKs of registry.example. in `dir`.
fn anchors_of(dir: &Path) -> String {
    let keys = steerdns::dnssec::Key::read_zone(dir, "registry.example.").expect("keys");
    let mut out = String::from("trust-anchors {\n");
    for k in keys
        .iter()
        .filter(|k| k.flags == steerdns::dnssec::FLAGS_KSK)
    {
        out.push_str(&format!("  {}\n", k.trust_anchor()));
    }
    out.push_str("};\n");
    out
}

/// `steerdns dnssec dump` of the static part is accepted by BIND's `dnssec-verify` (`-z`
/// for a CSK: every RRset signed by the key with the SEP flag) and by `ldns-verify-zone`;
/// the same dump with one RRSIG's signature changed is refused by both (the check can fail).
fn static_dump_verifies(dir: &Path, csk: bool) {
    let (code, dump, err) = steerdns(
        &[
            "--config",
            "steerdns.toml",
            "dnssec",
            "dump",
            "registry.example",
        ],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    assert!(dump.contains(" IN TYPE47 "), "an NSEC chain: {dump}");
    std::fs::write(dir.join("dump.zone"), &dump).expect("dump");
    // The SOA's first RRSIG with the last octet of its signature changed.
    let mut lines: Vec<String> = dump.lines().map(str::to_owned).collect();
    let soa_sig = lines
        .iter()
        .position(|l| {
            l.contains(" IN TYPE46 \\# ")
                && l.split(' ').nth(6).is_some_and(|r| r.starts_with("0006"))
        })
        .expect("the SOA's RRSIG");
    let last = lines[soa_sig].pop().expect("a hex digit");
    lines[soa_sig].push(if last == '0' { '1' } else { '0' });
    std::fs::write(dir.join("tampered.zone"), lines.join("\n") + "\n").expect("tampered");
    let mut args = vec!["-o", "registry.example"];
    if csk {
        args.push("-z");
    }
    for (file, good) in [("dump.zone", true), ("tampered.zone", false)] {
        let mut a = args.clone();
        a.push(file);
        let (code, out, err) = run("dnssec-verify", &a, dir);
        assert_eq!(code == 0, good, "dnssec-verify {file}: {out}{err}");
        if good {
            assert!(
                err.contains("Zone fully signed") || out.contains("Zone fully signed"),
                "{out}{err}"
            );
        }
    }
    if !tools_present(&["/usr/bin/ldns-verify-zone"], "ldnsutils") {
        return;
    }
    for (file, good) in [("dump.zone", true), ("tampered.zone", false)] {
        let (code, out, err) = run("ldns-verify-zone", &[file], dir);
        assert_eq!(code == 0, good, "ldns-verify-zone {file}: {out}{err}");
        if good {
            assert!(out.contains("Zone is verified and complete"), "{out}{err}");
        }
    }
}

/// The demo zone signed, served, and validated by `delv` with the KSK as trust anchor:
/// with BIND's keys (a KSK and a ZSK, algorithm 13) and with ours (one CSK, algorithm 15).
/// Positive answers (a name, the apex keys and CDS, a CNAME, a wildcard, an RRset that only
/// fits over TCP) validate; so do the denials, by compact answers: NODATA at a name, at an
/// empty non-terminal and at a wildcard's name, and a name that does not exist (NOERROR with
/// an NSEC at that name holding NXNAME, nothing else listed). A referral proves that the child
/// is unsigned with the NSEC at the cut. Without the DO bit, answers are as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_zone_validates_with_delv() {
    use crate::support::{TestServer, demo_config, dig, section};
    if !tools_present(
        &[
            "/usr/bin/delv",
            "/usr/bin/dnssec-keygen",
            "/usr/bin/dnssec-verify",
        ],
        "bind9-dnsutils bind9-utils",
    ) {
        return;
    }
    for (case, listen) in [("bind", "127.0.22.1:0"), ("ours", "127.0.22.2:0")] {
        let dir = tempfile::tempdir().expect("tmp");
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).expect("keys dir");
        if case == "bind" {
            for flags in [&["-f", "KSK"][..], &[][..]] {
                let mut args = vec!["-q", "-a", "ECDSAP256SHA256"];
                args.extend_from_slice(flags);
                args.push("registry.example");
                let (code, _, err) = run("dnssec-keygen", &args, &keys);
                assert_eq!(code, 0, "{err}");
            }
        } else {
            keygen(dir.path(), &["--algorithm", "15"]);
        }
        let anchors = dir.path().join("anchors.conf");
        std::fs::write(&anchors, anchors_of(&keys)).expect("anchors");
        let config = demo_config(&format!(
            "[dnssec]\nzones = [\"registry.example.\"]\nkey_dir = \"keys\"\nvalidity = \"7d\"\n{STEERED}"
        ));
        let s = TestServer::start_in(dir, &config, &[], listen.parse().expect("addr")).await;
        static_dump_verifies(s.dir(), case == "ours");

        for (name, rtype) in [
            ("www.registry.example", "A"),
            ("registry.example", "DNSKEY"),
            ("registry.example", "CDS"),
            ("registry.example", "SOA"),
            ("api.registry.example", "A"),
            ("x.y.wild.registry.example", "A"),
            ("big.registry.example", "TXT"),
            ("contoso.registry.example", "A"),
            ("contoso.registry.example", "AAAA"),
        ] {
            let out = delv(s.addr, &anchors, name, rtype).await;
            assert!(
                out.starts_with("; fully validated"),
                "{case} {name} {rtype}: {out}"
            );
        }
        for (name, rtype) in [
            ("www.registry.example", "TXT"),
            ("_tcp.registry.example", "A"),
            ("x.wild.registry.example", "TXT"),
            ("nope.registry.example", "A"),
            ("a.b.nope.registry.example", "AAAA"),
            ("api.registry.example", "MX"),
            ("contoso.registry.example", "TXT"),
            // The empty non-terminal above a steered name, and the steered name's AAAA
            // when no replica has one.
            ("eu.registry.example", "A"),
            ("app.eu.registry.example", "AAAA"),
        ] {
            // A CNAME to a name without the type: the CNAME validated, then the denial.
            let out = delv(s.addr, &anchors, name, rtype).await;
            let denial = out.lines().filter(|l| l.contains("NXRRSET")).count();
            assert!(
                out.contains("fully validated") && denial == 1 && !out.contains("insecure"),
                "{case} {name} {rtype}: {out}"
            );
        }
        // A failover: the new answer is signed when it is first given, and validates.
        let before = delv(s.addr, &anchors, "contoso.registry.example", "A").await;
        assert!(before.contains("\tA\t192.0.2.10"), "{before}");
        crate::support::ask(&s, |reply| Control::Override {
            command: OverrideCommand {
                action: OverrideAction::Disable,
                target: Target::Replica {
                    registry: "contoso".into(),
                    replica: "westeurope".into(),
                },
                reason: "failover".into(),
                who: "test".into(),
                duration: None,
            },
            reply,
        })
        .await
        .expect("disable");
        let after = delv(s.addr, &anchors, "contoso.registry.example", "A").await;
        assert!(
            after.starts_with("; fully validated") && after.contains("\tA\t198.51.100.10"),
            "{case}: {after}"
        );
        // The NSEC of a steered name's NODATA lists what it answers.
        let out = dig(
            s.addr,
            &["+dnssec", "+norec", "contoso.registry.example", "TXT"],
        );
        assert!(
            out.contains("\\000.contoso.registry.example. A AAAA RRSIG NSEC"),
            "{out}"
        );
        // The compact answer for a name that does not exist, as it is on the wire.
        let out = dig(s.addr, &["+dnssec", "+norec", "nope.registry.example", "A"]);
        assert!(out.contains("status: NOERROR"), "{out}");
        let auth = section(&out, "AUTHORITY");
        let nsec: Vec<&&str> = auth.iter().filter(|l| l.contains("\tNSEC\t")).collect();
        assert_eq!(nsec.len(), 1, "{out}");
        assert!(
            nsec[0].starts_with("nope.registry.example.")
                && nsec[0].contains("\\000.nope.registry.example. RRSIG NSEC TYPE128"),
            "{out}"
        );
        // A querier that signals Compact Answers OK (CO, RFC 9824 §4) gets NXDOMAIN back,
        // with the same proof, and the CO bit echoed; on a name that exists CO changes
        // nothing but the echo. (dig 9.18 cannot set CO: the query is made here.)
        for (name, rcode) in [
            (
                "nope.registry.example.",
                hickory_proto::op::ResponseCode::NXDomain,
            ),
            (
                "www.registry.example.",
                hickory_proto::op::ResponseCode::NoError,
            ),
        ] {
            let mut e = crate::support::edns(1232);
            e.set_dnssec_ok(true);
            let mut packet = crate::support::query(name, hickory_proto::rr::RecordType::A, Some(e))
                .to_vec()
                .expect("query");
            // The OPT record ends the query (no options): its flags are the TTL's low half.
            let flags = packet.len() - 4;
            assert_eq!(packet[flags], 0x80, "DO set");
            packet[flags] |= 0x40;
            let reply = crate::support::udp_raw(s.addr, &packet)
                .await
                .expect("a reply");
            let m = hickory_proto::op::Message::from_vec(&reply).expect("parses");
            assert_eq!(m.metadata.response_code, rcode, "{name}");
            // The reply's OPT flags (its TTL's low half): DO and CO.
            assert_eq!(
                &reply[reply.len() - 4..reply.len() - 2],
                &[0xc0, 0],
                "{name}"
            );
            let nxname = m.authorities.iter().any(|r| {
                matches!(&r.data, hickory_proto::rr::RData::Unknown { code, rdata }
                    if *code == hickory_proto::rr::RecordType::NSEC
                        // Window 0 of 17 octets: the last holds type 128 (NXNAME).
                        && rdata.anything.ends_with(&[0x80]))
            });
            assert_eq!(
                nxname,
                rcode == hickory_proto::op::ResponseCode::NXDomain,
                "{name}: {m:?}"
            );
        }
        // An explicit NXNAME query is a format error (RFC 9824 §3.5).
        let out = dig(
            s.addr,
            &["+dnssec", "+norec", "nope.registry.example", "TYPE128"],
        );
        assert!(out.contains("status: FORMERR"), "{out}");
        // The referral to the unsigned child: NS, and the NSEC at the cut (no DS), signed.
        let out = dig(
            s.addr,
            &["+dnssec", "+norec", "host.child.registry.example", "A"],
        );
        let auth = section(&out, "AUTHORITY");
        assert!(
            auth.iter().any(|l| l.contains("\tNSEC\t")
                && l.contains("\\000.child.registry.example. NS RRSIG NSEC")),
            "{out}"
        );
        assert!(auth.iter().any(|l| l.contains("RRSIG\tNSEC ")), "{out}");
        assert!(
            !out.contains(" aa"),
            "a referral is not authoritative: {out}"
        );
        // ANY with DO: one RRset (RFC 8482), signed; no AD from an authoritative.
        let out = dig(
            s.addr,
            &["+dnssec", "+norec", "contoso.registry.example", "ANY"],
        );
        let answer = section(&out, "ANSWER");
        assert!(
            answer.iter().any(|l| l.contains("\tA\t"))
                && answer.iter().any(|l| l.contains("RRSIG\tA ")),
            "{out}"
        );
        assert!(!crate::support::flags(&out).contains(&"ad"), "{out}");
        // ECS with DO: the same scope as without.
        let scope = |extra: &[&str]| {
            let mut args = vec![
                "+norec",
                "+subnet=198.51.100.0/24",
                "contoso.registry.example",
                "A",
            ];
            args.extend_from_slice(extra);
            let out = dig(s.addr, &args);
            out.lines()
                .find(|l| l.contains("CLIENT-SUBNET"))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("no ECS echoed: {out}"))
        };
        assert_eq!(scope(&["+dnssec"]), scope(&[]));
        // The signing is visible to Prometheus: signatures made, cache hits and misses (the
        // steered answers above were asked more than once), the static signatures' expiry.
        let text = s.handles.stats.metrics.render();
        let zone = ["zone=\"registry.example.\""];
        assert!(
            crate::support::metric(&text, "steerdns_dnssec_signatures_total", &zone) > 10.0,
            "{text}"
        );
        let hits = crate::support::metric(
            &text,
            "steerdns_dnssec_signature_cache_lookups_total",
            &["result=\"hit\"", zone[0]],
        );
        let misses = crate::support::metric(
            &text,
            "steerdns_dnssec_signature_cache_lookups_total",
            &["result=\"miss\"", zone[0]],
        );
        assert!(hits >= 1.0 && misses >= 1.0, "hits {hits}, misses {misses}");
        // Signed ahead (the failover above had the other answers signed): exported per zone.
        assert!(
            text.contains("steerdns_dnssec_presigned_signatures_total{zone=\"registry.example.\"}"),
            "{text}"
        );
        let expiry = crate::support::metric(
            &text,
            "steerdns_dnssec_static_signatures_expiry_timestamp_seconds",
            &zone,
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        // validity 7 days less the default jitter (1 day): 6 days from now.
        assert!(
            (expiry - now - 6.0 * 86_400.0).abs() < 120.0,
            "{expiry} vs {now}"
        );
        // Without DO: no DNSSEC records.
        let out = dig(s.addr, &["+norec", "www.registry.example", "A"]);
        assert!(!out.contains("RRSIG"), "{out}");
        let out = dig(s.addr, &["+norec", "nope.registry.example", "A"]);
        assert!(out.contains("status: NXDOMAIN"), "{out}");
        s.stop().await;
    }
}

/// A fleet signs with the same key files (deployed like the config): two instances, each
/// with its own copy of the keys, give answers that validate with the same trust anchor,
/// whichever answers — the steered name, a static name, a denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_the_same_keys_validate_the_same() {
    use crate::support::{TestServer, demo_config};
    if !tools_present(&["/usr/bin/delv"], "bind9-dnsutils") {
        return;
    }
    let first = tempfile::tempdir().expect("tmp");
    keygen(first.path(), &[]);
    let second = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(second.path().join("keys")).expect("keys");
    for e in std::fs::read_dir(first.path().join("keys"))
        .expect("keys")
        .flatten()
    {
        std::fs::copy(e.path(), second.path().join("keys").join(e.file_name())).expect("copy");
    }
    let anchors = first.path().join("anchors.conf");
    std::fs::write(&anchors, anchors_of(&first.path().join("keys"))).expect("anchors");
    let anchors_copy = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::copy(&anchors, anchors_copy.path()).expect("copy");
    let config = demo_config(&format!(
        "[dnssec]\nzones = [\"registry.example.\"]\nkey_dir = \"keys\"\n{STEERED}"
    ));
    let a = TestServer::start_in(first, &config, &[], "127.0.22.3:0".parse().expect("addr")).await;
    let b = TestServer::start_in(second, &config, &[], "127.0.22.4:0".parse().expect("addr")).await;
    for (name, rtype) in [
        ("contoso.registry.example", "A"),
        ("www.registry.example", "AAAA"),
        ("registry.example", "DNSKEY"),
        ("nope.registry.example", "A"),
    ] {
        let one = delv(a.addr, anchors_copy.path(), name, rtype).await;
        let two = delv(b.addr, anchors_copy.path(), name, rtype).await;
        for (which, out) in [("first", &one), ("second", &two)] {
            assert!(
                out.contains("fully validated"),
                "{which} {name} {rtype}: {out}"
            );
        }
        // The same data (the signatures differ: ECDSA signs with a fresh nonce).
        let data = |out: &str| -> Vec<String> {
            out.lines()
                .filter(|l| !l.contains("RRSIG") && !l.starts_with(';'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(data(&one), data(&two), "{name} {rtype}");
    }
    a.stop().await;
    b.stop().await;
}

/// `check-config` names key problems with their file and line: a zone without keys (the
/// config's `zones` line), a key file for another zone (the key file, line 1), a zone no zone
/// file serves, only a ZSK.
#[test]
fn key_problems_are_reported_by_check_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys");
    let zones = crate::support::repo().join("zones");
    let config = |zones_list: &str| {
        format!(
            "version = 1\n[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {zones:?}\n\n[dnssec]\nzones = [{zones_list}]\n"
        )
    };
    let path = dir.path().join("steerdns.toml");
    let check = || {
        steerdns(
            &["check-config", "--config", &path.display().to_string()],
            dir.path(),
        )
    };
    std::fs::write(&path, config("\"registry.example.\"")).expect("write");
    let (code, out, err) = check();
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("steerdns.toml:7:") && err.contains("no key for registry.example."),
        "{err}"
    );
    // A ZSK alone.
    keygen(dir.path(), &["--zsk"]);
    let (_, _, err) = check();
    assert!(err.contains("has only ZSKs"), "{err}");
    // A key file named for the zone that holds another zone's key.
    let (code, stem, err) = steerdns(
        &["dnssec", "keygen", "other.example", "--dir", "keys"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    let stem = std::path::PathBuf::from(stem.trim());
    let file = stem
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    std::fs::rename(
        keys.join(format!("{file}.key")),
        keys.join("Kregistry.example.+013+00001.key"),
    )
    .expect("rename");
    let (_, _, err) = check();
    assert!(
        err.contains("Kregistry.example.+013+00001.key:") && err.contains("other.example."),
        "{err}"
    );
    std::fs::remove_file(keys.join("Kregistry.example.+013+00001.key")).expect("rm");
    // A zone no zone file serves.
    let (code, _, err) = steerdns(
        &["dnssec", "keygen", "nowhere.example", "--dir", "keys"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    std::fs::write(&path, config("\"nowhere.example.\"")).expect("write");
    let (_, _, err) = check();
    assert!(
        err.contains("steerdns.toml:7:") && err.contains("no zone file serves"),
        "{err}"
    );
}

/// `steerdns demo --dnssec` signs the zones with keys made on the spot and prints the DS and
/// a `delv` command; that command, run as printed, validates the steered name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_signs_with_keys_made_on_the_spot() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    if !tools_present(&["/usr/bin/delv"], "bind9-dnsutils") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let repo = crate::support::repo();
    let config = format!(
        "version = 1\n[server]\nlisten = [\"127.0.22.9:5300\"]\nzones_dir = {:?}\ngeo_dir = {:?}\n\
         [admin]\nlisten = \"127.0.22.9:8053\"\n{STEERED}",
        repo.join("zones"),
        repo.join("geo")
    );
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, config).expect("config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(["demo", "--dnssec", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    let delv_line = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(l)) = lines.next_line().await {
            printed.push(l.clone());
            if l.trim_start().starts_with("delv @") {
                return Some(l);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("no delv command printed: {printed:?}"));
    assert!(
        printed
            .iter()
            .any(|l| l.contains("registry.example. IN DS ")),
        "{printed:?}"
    );
    let args: Vec<String> = delv_line
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("delv").args(&args).output().expect("delv")
    })
    .await
    .expect("delv task");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("; fully validated") && text.contains("\tA\t192.0.2.10"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    child.kill().await.expect("kill");
    let key_dir = printed
        .iter()
        .find_map(|l| l.split(" in ").nth(1).filter(|_| l.starts_with("DNSSEC:")))
        .map(|d| d.trim().to_string());
    if let Some(d) = key_dir {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A reload keeps the signatures cached for steered answers when the keys are the same (the
/// first DO query after it is a hit, nothing is signed again), and drops them when a
/// rollover step changed the keys (a new ZSK: the answer is signed again, with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_cached_signatures_only_with_the_same_keys() {
    use crate::support::{TestServer, ask, demo_config, dig};
    let dir = tempfile::tempdir().expect("tmp");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys dir");
    keygen(dir.path(), &[]);
    let config = demo_config(&format!(
        "[dnssec]\nzones = [\"registry.example.\"]\nkey_dir = \"keys\"\n{STEERED}"
    ));
    let s = TestServer::start_in(dir, &config, &[], "127.0.22.5:0".parse().expect("addr")).await;
    let counts = || {
        s.handles
            .shared
            .load()
            .signer_of("registry.example.")
            .expect("signed")
            .cache()
            .counts()
    };
    let ask_signed = || {
        let out = dig(
            s.addr,
            &["+dnssec", "+norec", "contoso.registry.example", "A"],
        );
        assert!(out.contains("RRSIG\tA "), "{out}");
    };
    let reload = || async {
        ask(&s, |reply| Control::Reload {
            who: "test".into(),
            reply,
        })
        .await
        .expect("reload");
    };
    ask_signed();
    assert_eq!(counts(), (0, 1), "signed on first query");
    reload().await;
    assert_eq!(counts(), (0, 0), "a new signer");
    ask_signed();
    assert_eq!(counts(), (1, 0), "the same keys: kept across the reload");
    // A rollover step: a ZSK added. Signatures made without it are not carried over.
    keygen(s.dir(), &["--zsk"]);
    reload().await;
    ask_signed();
    assert_eq!(counts(), (0, 1), "other keys: signed again");
    s.stop().await;
}
