//! How long one durable journal update takes (encode, write a temporary file, fsync,
//! rename, fsync the directory), for a journal as large as a 1 TiB backup's gets near
//! its end with the default shape: 1,023 completed volumes and 16 parts of the volume
//! in flight. A backup does one such update per part (before sending it; a confirmed
//! part's ETag rides along with the next).
//!
//! `cargo bench -p zib-engine --features internals --bench journal_save [-- STATE_DIR]`
//! (default: a temporary directory, which is usually on tmpfs: pass a directory on the
//! disk the state directory will live on).

// A benchmark reports by printing.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

fn main() {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let dir = match std::env::args().nth(1).filter(|arg| arg != "--bench") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => temporary.path().to_owned(),
    };
    let rounds = 200u32;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (bytes, elapsed) = runtime
        .block_on(zib_engine::internals::journal_save_benchmark(&dir, rounds))
        .unwrap();
    let each = elapsed / rounds;
    println!(
        "journal of {bytes} bytes in {}: {:.2} ms per durable update; \
         one update per 64 MiB part = {:.1} s per TiB",
        dir.display(),
        each.as_secs_f64() * 1e3,
        each.as_secs_f64() * 16_384.0
    );
}
