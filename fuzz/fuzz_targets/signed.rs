//! The signed request path: a query with the DO bit for a name under the fuzzing config's
//! zones (the input picks the type, the client, the transport and the labels), every zone
//! signed by a key made at start. Every RRSIG of the reply must verify with its zone's public
//! key, and every answer RRset must carry one (`steerdns::fuzzing::SignedHarness`).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use steerdns::fuzzing::SignedHarness;

static HARNESS: LazyLock<SignedHarness> = LazyLock::new(|| {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/steerdns.toml");
    match SignedHarness::load(config.as_ref()) {
        Ok(h) => h,
        Err(e) => panic!("fuzz config does not load signed: {e}"),
    }
});

fuzz_target!(|input: &[u8]| {
    let mut out = Vec::new();
    if let Err(e) = HARNESS.run(input, &mut out) {
        panic!("signed reply invariant broken: {e}\nreply: {out:02x?}");
    }
});
