//! Fuzz target: `zib_snapshot_source::fuzz_targets::stream_header` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = zib_snapshot_source::fuzz_targets::stream_header(data);
});
