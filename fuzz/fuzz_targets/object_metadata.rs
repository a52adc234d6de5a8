//! Fuzz target: `zib_engine::fuzz_targets::object_metadata` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = zib_engine::fuzz_targets::object_metadata(data);
});
