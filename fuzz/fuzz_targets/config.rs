//! The config loader (TOML text, then validation) on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        steerdns::fuzzing::config_text(text);
    }
});
