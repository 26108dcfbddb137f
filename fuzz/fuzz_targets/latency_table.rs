//! The latency table parser on arbitrary text; the first 16 bytes choose an address to look
//! up in a table that parses (IPv4 when the first byte is even).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((addr, text)) = data.split_at_checked(16) else {
        return;
    };
    let mut a = [0u8; 16];
    a.copy_from_slice(addr);
    let probe = if a[0] % 2 == 0 {
        IpAddr::V4(Ipv4Addr::new(a[1], a[2], a[3], a[4]))
    } else {
        IpAddr::V6(Ipv6Addr::from(a))
    };
    if let Ok(text) = std::str::from_utf8(text) {
        steerdns::fuzzing::latency_table(text, probe);
    }
});
