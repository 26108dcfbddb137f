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

#[test]
fn keys_and_ds_records_agree_with_bind() {
    let tools = ["/usr/bin/dnssec-keygen", "/usr/bin/dnssec-dsfromkey"];
    if let Some(t) = tools.iter().find(|t| !Path::new(t).exists()) {
        eprintln!("SKIPPED: {t} is missing (apt-get install bind9-utils)");
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
