//! The deep-health document parser and the probe's judge on an arbitrary response body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    steerdns::fuzzing::deep_health(data);
});
