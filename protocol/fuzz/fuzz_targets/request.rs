//! Fuzzes request parsing: any payload must parse or yield a typed error, never panic, and a
//! parsed request must survive its own re-encoding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vigil_protocol::fuzz_one(data);
});
