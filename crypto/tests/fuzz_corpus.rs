//! Runs the fuzz target bodies (`zib_crypto::fuzz_targets`) over the checked-in corpus
//! in `fuzz/corpus/<target>/` on stable Rust, plus truncations and bit flips of every
//! corpus entry. Entries named `good_*` must be accepted and `fail_*` rejected; no input
//! may panic.

// Helpers outside #[test] fns unwrap too: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use zib_crypto::fuzz_targets;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    entries.sort();
    assert!(
        entries.iter().any(|(n, _)| n.starts_with("good_")),
        "{target}: no good_ entry"
    );
    entries
}

/// Truncations and single-bit flips of `data` (at most 64 flips, spread evenly).
fn mutations(data: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    for cut in [0, 1, data.len() / 2, data.len().saturating_sub(1)] {
        if cut < data.len() {
            out.push((usize::MAX, data[..cut].to_vec()));
        }
    }
    let step = (data.len() / 64).max(1);
    for pos in (0..data.len()).step_by(step) {
        let mut flipped = data.to_vec();
        flipped[pos] ^= 1 << (pos % 8);
        out.push((pos, flipped));
    }
    out
}

fn run<T>(
    target: &str,
    body: fn(&[u8]) -> T,
    accepted: fn(&T) -> bool,
    first_byte_is_selector: bool,
) {
    let mut runs = 0;
    for (name, data) in corpus(target) {
        let ok = accepted(&body(&data));
        if name.starts_with("good_") {
            assert!(ok, "{target}/{name} was rejected");
        } else if name.starts_with("fail_") {
            assert!(!ok, "{target}/{name} was accepted");
        }
        for (pos, mutated) in mutations(&data) {
            let ok_mutated = accepted(&body(&mutated));
            runs += 1;
            // A changed or truncated good input must be rejected, except a flip in a
            // selector byte that only changes how the input is split.
            let selector = first_byte_is_selector && pos == 0;
            if name.starts_with("good_") && !selector && pos != usize::MAX {
                assert!(
                    !ok_mutated,
                    "{target}/{name} with bit flipped at {pos} was accepted"
                );
            }
        }
    }
    assert!(runs > 0);
}

#[test]
fn keyring_target_over_corpus() {
    run("keyring", fuzz_targets::keyring, |&ok| ok, false);
}

#[test]
fn volume_header_target_over_corpus() {
    // Header flips outside magic and version (key id, salt) still parse: only the
    // decryptor can reject them, so here only the absence of panics is checked for those.
    for (name, data) in corpus("volume_header") {
        assert_eq!(
            fuzz_targets::volume_header(&data),
            name.starts_with("good_"),
            "{name}"
        );
        for (_, mutated) in mutations(&data) {
            fuzz_targets::volume_header(&mutated);
        }
    }
}

#[test]
fn volume_target_over_corpus() {
    run("volume", fuzz_targets::volume, Option::is_some, true);
}

#[test]
fn record_target_over_corpus() {
    run("record", fuzz_targets::record, Option::is_some, false);
}
