//! The zone-file loader (hickory's text parser and our checks) on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        steerdns::fuzzing::zone_file(text);
    }
});
