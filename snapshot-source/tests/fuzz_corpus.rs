//! Runs the send-stream header fuzz target body
//! (`zib_snapshot_source::fuzz_targets::stream_header`) over the checked-in corpus in
//! `fuzz/corpus/stream_header/` on stable Rust, plus truncations and bit flips of every
//! entry: entries named `good_*` must be accepted and `fail_*` refused, and no input may
//! panic (the target asserts what a parsed header must satisfy). The seeds must still be
//! judged as named and be in the corpus (`ZIB_WRITE_FUZZ_SEEDS=1` writes them there).

// Helpers outside #[test] fns unwrap too: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use zib_snapshot_source::fuzz_targets::{seeds, stream_header};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/stream_header")
}

#[test]
fn stream_header_target_over_corpus() {
    let dir = corpus_dir();
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
        "no good_ entry in {}",
        dir.display()
    );
    for (name, data) in entries {
        let accepted = stream_header(&data);
        if name.starts_with("good_") {
            assert!(accepted, "{name} was refused");
        } else if name.starts_with("fail_") {
            assert!(!accepted, "{name} was accepted");
        }
        for cut in [0, 1, data.len() / 2, data.len().saturating_sub(1)] {
            stream_header(&data[..cut.min(data.len())]);
        }
        let step = (data.len() / 64).max(1);
        for pos in (0..data.len()).step_by(step) {
            let mut flipped = data.clone();
            flipped[pos] ^= 1 << (pos % 8);
            stream_header(&flipped);
        }
    }
}

#[test]
fn seeds_are_judged_as_named_and_in_the_corpus() {
    let write = std::env::var("ZIB_WRITE_FUZZ_SEEDS").is_ok_and(|v| v == "1");
    for (name, bytes) in seeds() {
        assert_eq!(stream_header(&bytes), name.starts_with("good_"), "{name}");
        let path = corpus_dir().join(&name);
        if write {
            std::fs::create_dir_all(corpus_dir()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert!(
            path.is_file(),
            "{} is missing: run this test with ZIB_WRITE_FUZZ_SEEDS=1",
            path.display()
        );
    }
}
