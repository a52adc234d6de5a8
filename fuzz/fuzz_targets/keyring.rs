//! Fuzz target: `zib_crypto::fuzz_targets::keyring` on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = zib_crypto::fuzz_targets::keyring(data);
});
