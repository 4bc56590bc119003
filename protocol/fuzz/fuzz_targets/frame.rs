//! Fuzzes framing: a byte stream split into frames, each parsed as a request.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(frame) = vigil_protocol::read_frame(&mut rest) {
        vigil_protocol::fuzz_one(&frame);
    }
});
