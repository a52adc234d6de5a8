//! Runs the engine's fuzz target bodies (`zib_engine::fuzz_targets`) over the checked-in
//! corpus in `fuzz/corpus/<target>/` on stable Rust, plus truncations and bit flips of
//! every entry: entries named `good_*` must be accepted and `fail_*` refused, and no
//! input may panic (the targets assert their round trips). The seeds the real encoders
//! make now must still be accepted or refused as named, and be in the corpus
//! (`ZIB_WRITE_FUZZ_SEEDS=1` writes them there).

// Helpers outside #[test] fns unwrap too: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use zib_engine::fuzz_targets;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// The target's corpus, sorted by name; fails when the directory is missing or holds
/// no `good_` entry.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
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
        "{target}: no good_ entry in {}",
        dir.display()
    );
    entries
}

/// Truncations and single-bit flips of `data` (at most 64 flips, spread evenly).
fn mutations(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for cut in [0, 1, data.len() / 2, data.len().saturating_sub(1)] {
        if cut < data.len() {
            out.push(data[..cut].to_vec());
        }
    }
    let step = (data.len() / 64).max(1);
    for pos in (0..data.len()).step_by(step) {
        let mut flipped = data.to_vec();
        flipped[pos] ^= 1 << (pos % 8);
        out.push(flipped);
    }
    out
}

fn run(target: &str, body: fn(&[u8]) -> bool) {
    let mut runs = 0;
    for (name, data) in corpus(target) {
        let accepted = body(&data);
        if name.starts_with("good_") {
            assert!(accepted, "{target}/{name} was refused");
        } else if name.starts_with("fail_") {
            assert!(!accepted, "{target}/{name} was accepted");
        }
        for mutated in mutations(&data) {
            body(&mutated);
            runs += 1;
        }
    }
    assert!(runs > 0, "{target}: nothing was run");
}

#[test]
fn object_metadata_target_over_corpus() {
    run("object_metadata", fuzz_targets::object_metadata);
}

#[test]
fn journal_target_over_corpus() {
    run("journal", fuzz_targets::journal);
}

#[test]
fn restore_state_target_over_corpus() {
    run("restore_state", fuzz_targets::restore_state);
}

#[test]
fn seeds_from_the_encoders_are_judged_as_named_and_in_the_corpus() {
    let write = std::env::var("ZIB_WRITE_FUZZ_SEEDS").is_ok_and(|v| v == "1");
    let seeds = fuzz_targets::seeds();
    for target in ["object_metadata", "journal", "restore_state"] {
        assert!(
            seeds
                .iter()
                .any(|(t, n, _)| *t == target && n.starts_with("good_")),
            "no good seed for {target}"
        );
    }
    for (target, name, bytes) in seeds {
        let body = match target {
            "object_metadata" => fuzz_targets::object_metadata,
            "journal" => fuzz_targets::journal,
            "restore_state" => fuzz_targets::restore_state,
            other => panic!("seed for unknown target {other}"),
        };
        assert_eq!(
            body(&bytes),
            name.starts_with("good_"),
            "{target}/{name} as the encoders make it now"
        );
        let path = corpus_dir(target).join(&name);
        if write {
            std::fs::create_dir_all(corpus_dir(target)).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert!(
            path.is_file(),
            "{} is missing: run this test with ZIB_WRITE_FUZZ_SEEDS=1",
            path.display()
        );
    }
}
