//! The request path: `dns::handle` on arbitrary bytes from an IPv4 or IPv6 client over UDP or
//! TCP, with the health masks the input chooses, against `fuzz/config` (mmdb and latency
//! routing, many and CNAME replicas, `answers = N`, aliases, empty non-terminals, wildcards).
//! Every reply must satisfy `steerdns::fuzzing::check_reply`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use steerdns::fuzzing::RequestHarness;

static HARNESS: LazyLock<RequestHarness> = LazyLock::new(|| {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/steerdns.toml");
    match RequestHarness::load(config.as_ref()) {
        Ok(h) => h,
        Err(p) => panic!("fuzz config does not load: {p}"),
    }
});

fuzz_target!(|input: &[u8]| {
    let mut out = Vec::new();
    if let Err(e) = HARNESS.run(input, &mut out) {
        panic!("reply invariant broken: {e}\nreply: {out:02x?}");
    }
});
