//! Throughput, CPU time and peak memory of the whole backup pipeline — source →
//! SHA-256 → encrypt → multipart parts → local-directory backend — through the engine's
//! public API (`Repository::init` on a `LocalDirBackend`, then `Repository::backup` of a
//! source whose one snapshot sends the measured stream, with the resume journal written
//! durably before each part is sent and when it is confirmed), each next to a plain copy
//! onto the same file system in the same run.
//!
//! Run: `scripts/bench-pipeline.sh` (release build; options below), or
//! `cargo bench -p zib-engine --bench pipeline -- [OPTIONS]`. Run without any argument
//! (as `cargo test --benches` does) it makes a quick smoke run with 64 MiB streams.
//!
//! Measurements, each repeated `--rounds` times (default 3) with the baseline and the
//! pipeline interleaved so background load hits both alike; the table shows the median
//! and the range over rounds:
//!
//! - (a) a pre-generated 2 GiB file of incompressible bytes, read once beforehand so it
//!   is in the page cache, streamed in 256 KiB chunks exactly as a send stream arrives
//!   (`tokio_util::io::ReaderStream`); baseline `cat SRC > DST && sync`. The same
//!   stream also goes through the pipeline with its parts discarded instead of stored
//!   (a decorator around the local-directory backend that drops part bytes): the
//!   difference between the two rows is what storing costs, the rest is the pipeline's
//!   own work (reading, hashing, encrypting, cutting parts). Beside them, the format's
//!   work alone — the file read, the two SHA-256 passes and AES-256-GCM of every
//!   segment, on one thread with nothing else — the floor under the pipeline's CPU;
//!   the table's note gives each pipeline's CPU as a multiple of it, round by round;
//! - (b) a live `zfs send` (zfs-fuse) of a dataset holding ~1.5 GiB of files, through
//!   the snapshot source `ZfsSource`; baseline `zfs send … > DST && sync`. Skipped, with
//!   a message, when zfs-fuse is not installed or not running, or without root;
//! - peak RSS of a 1 GiB and an 8 GiB stream generated on the fly (no source file) with
//!   the default `VolumeShape`, against the documented bound;
//! - (r), `--only restore` (not in the default set): (a)'s stream backed up to a local
//!   directory, then restored through `Repository::create_restore` and `advance_restore`
//!   — download into the staging directory, verify, decrypt, receive into a file —
//!   next to `cat STREAM > DST && sync`, and the format's work alone as in (a) (opening
//!   a segment costs what sealing it does).
//!
//! Every pipeline measurement runs in a fresh child process (this binary re-executed with
//! a `child-*` subcommand) so that CPU time and peak RSS are its own. CPU time is user +
//! system time of the whole process (all threads) over the upload, from
//! `/proc/self/stat`; peak RSS is the kernel's high-water mark `VmHWM` from
//! `/proc/self/status` — the figure `getrusage(RUSAGE_SELF).ru_maxrss` reports, read
//! without `unsafe`. A baseline's CPU time is its child commands' (`cat`/`zfs send`,
//! `sync`), from the reaped children's times in `/proc/self/stat`.
//!
//! Options:
//!
//! - `--dir DIR`: where sources, destinations and the pool file go (default: the system
//!   temporary directory); everything is deleted afterwards.
//! - `--rounds N`: repetitions per measurement (default 3).
//! - `--stream-gib G`: size of (a)'s file (default 2).
//! - `--zfs-mib M`: data written into (b)'s dataset (default 1536).
//! - `--rss-gib LIST`: stream sizes for the peak-RSS runs (default `1,8`).
//! - `--only a|b|rss|restore`: run one section (repeatable); default a, b and rss.
//!
//! The machine must have room in `--dir` for each section (checked before it starts):
//! (a) about 2 × the stream plus one volume, (b) the pool plus 2 × its data, RSS the
//! largest stream plus one volume.

// A bench binary reports on stdout and stderr; a failed set-up step panics with its
// reason, which is the report.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tempfile::TempDir;
use tokio_util::io::ReaderStream;
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::snapshot_source::{
    Capabilities, DatasetName, Protection, ReceiveOptions, ReceiveStream, SendFlags, SendRequest,
    SendStream, SnapshotIdentity, SnapshotInfo, SnapshotName, SnapshotSource, SourceKind,
};
use zib_engine::storage::local_dir::LocalDirBackend;
use zib_engine::storage::{
    CompletePrecondition, CompletedPart, ETag, Forwarding, ObjectKey, ObjectMeta, PartInfo,
    Result as StorageResult, StorageBackend, SystemClock, UploadId,
};
use zib_engine::{
    BackupOptions, BackupOutcome, Host, InitOptions, Location, NewRestore, NoProgress, Passphrase,
    Repository, RestoreState, SnapshotChoice, VolumeShape,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Read size for the file source: the send path's (`snapshot-source`'s `STREAM_CHUNK`).
const STREAM_CHUNK: usize = 256 * 1024;
/// Size of each file written into (b)'s dataset.
const ZFS_FILE_LEN: u64 = 64 * MIB;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) runs
    // this binary with no arguments at all: then a quick smoke run with small sizes
    // checks that the benchmark still works without taking minutes and gigabytes.
    let smoke = args.is_empty();
    let args: Vec<&str> = if smoke {
        eprintln!(
            "not run by `cargo bench`: a smoke run with small sizes (figures: scripts/bench-pipeline.sh)"
        );
        vec![
            "--rounds",
            "1",
            "--stream-gib",
            "0.0625",
            "--rss-gib",
            "0.0625",
            "--only",
            "a",
            "--only",
            "rss",
        ]
    } else {
        args.iter()
            .map(String::as_str)
            .filter(|arg| *arg != "--bench")
            .collect()
    };
    match args.first().copied() {
        Some("child-file") => child(Source::File(PathBuf::from(args[1])), args[2], Sink::Store),
        Some("child-file-discard") => child(
            Source::File(PathBuf::from(args[1])),
            args[2],
            Sink::DiscardParts,
        ),
        Some("child-zfs") => child(
            Source::Zfs {
                dataset: args[1].to_owned(),
                snapshot: args[2].to_owned(),
            },
            args[3],
            Sink::Store,
        ),
        Some("child-generated") => child(
            Source::Generated(args[1].parse().unwrap()),
            args[2],
            Sink::Store,
        ),
        Some("child-restore") => child_restore(args[1], Path::new(args[2])),
        Some("child-floor") => child_floor(Path::new(args[1])),
        _ => run(&Options::parse(&args)),
    }
}

// ---------------------------------------------------------------------------------------
// Options and orchestration (the parent process)
// ---------------------------------------------------------------------------------------

struct Options {
    dir: PathBuf,
    rounds: usize,
    stream_len: u64,
    zfs_len: u64,
    rss_lens: Vec<u64>,
    sections: Vec<String>,
}

impl Options {
    fn parse(args: &[&str]) -> Options {
        let mut options = Options {
            dir: std::env::temp_dir(),
            rounds: 3,
            stream_len: 2 * GIB,
            zfs_len: 1536 * MIB,
            rss_lens: vec![GIB, 8 * GIB],
            sections: Vec::new(),
        };
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let mut value = || {
                *rest
                    .next()
                    .unwrap_or_else(|| panic!("{flag} needs a value"))
            };
            match *flag {
                "--dir" => options.dir = PathBuf::from(value()),
                "--rounds" => options.rounds = value().parse().expect("--rounds N"),
                "--stream-gib" => {
                    options.stream_len = gib(value().parse::<f64>().expect("--stream-gib G"));
                }
                "--zfs-mib" => options.zfs_len = value().parse::<u64>().expect("--zfs-mib M") * MIB,
                "--rss-gib" => {
                    options.rss_lens = value()
                        .split(',')
                        .map(|g| gib(g.parse::<f64>().expect("--rss-gib G,G")))
                        .collect();
                }
                "--only" => options.sections.push(value().to_owned()),
                other => panic!(
                    "unknown argument {other:?}; options: --dir DIR --rounds N --stream-gib G \
                     --zfs-mib M --rss-gib G,G --only a|b|rss"
                ),
            }
        }
        assert!(options.rounds > 0, "--rounds must be at least 1");
        options
    }

    fn wants(&self, section: &str) -> bool {
        (self.sections.is_empty() && section != "restore")
            || self.sections.iter().any(|s| s == section)
    }
}

fn gib(g: f64) -> u64 {
    (g * GIB as f64) as u64
}

fn run(options: &Options) {
    let shape = VolumeShape::default();
    std::fs::create_dir_all(&options.dir)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", options.dir.display()));
    println!("zib pipeline benchmark");
    println!("  machine: {}", machine());
    println!(
        "  directory: {} ({})",
        options.dir.display(),
        file_system(&options.dir)
    );
    println!(
        "  shape: {} MiB parts, {} in flight, {} MiB volumes; {} rounds per measurement",
        shape.part_len / MIB,
        shape.parts_in_flight,
        shape.volume_plaintext_len / MIB,
        options.rounds
    );
    let mut table = Table::default();
    if options.wants("a") {
        bench_file(options, &mut table);
    }
    if options.wants("b") {
        bench_zfs(options, &mut table);
    }
    if options.wants("restore") {
        bench_restore(options, &mut table);
    }
    let mut rss = Vec::new();
    if options.wants("rss") {
        rss = bench_rss(options);
    }
    table.print();
    print_rss(&rss, &shape);
}

/// (a): a page-cached file → pipeline, next to `cat SRC > DST && sync`.
fn bench_file(options: &Options, table: &mut Table) {
    let shape = VolumeShape::default();
    let need = 2 * options.stream_len + shape.volume_plaintext_len + GIB / 2;
    if !room_for(&options.dir, need, "(a)") {
        return;
    }
    let work = scratch(&options.dir, "zib-bench-a-");
    let source = source_file(work.path(), options.stream_len, "(a)");
    sync();
    let cached = Instant::now();
    let read = read_through(&source);
    eprintln!(
        "(a) read it once into the page cache ({} MiB in {:.2} s)",
        read / MIB,
        cached.elapsed().as_secs_f64()
    );
    let label = format!("(a) {} GiB cached file", fmt_gib(options.stream_len));
    let mut baseline = Runs::default();
    let mut pipeline = Runs::default();
    let mut discard = Runs::default();
    let mut floor = Runs::default();
    for round in 1..=options.rounds {
        let dest = work.path().join("copy.bin");
        sync();
        baseline.push(copy_to_file("cat", &[source.to_str().unwrap()], &dest));
        std::fs::remove_file(&dest).unwrap();
        let repo = scratch(work.path(), "repo-");
        sync();
        pipeline.push(spawn_child(&[
            "child-file",
            source.to_str().unwrap(),
            repo.path().to_str().unwrap(),
        ]));
        drop(repo);
        let repo = scratch(work.path(), "repo-");
        discard.push(spawn_child(&[
            "child-file-discard",
            source.to_str().unwrap(),
            repo.path().to_str().unwrap(),
        ]));
        drop(repo);
        floor.push(spawn_child(&["child-floor", source.to_str().unwrap()]));
        eprintln!(
            "(a) round {round}: baseline {:.0} MiB/s, pipeline {:.0} MiB/s, parts discarded {:.0} MiB/s, the format's work alone {:.0} MiB/s",
            baseline.last_rate(),
            pipeline.last_rate(),
            discard.last_rate(),
            floor.last_rate()
        );
    }
    table.add(
        &label,
        "cat SRC > DST && sync",
        &baseline,
        "zib pipeline",
        &pipeline,
    );
    table.add_pipeline(
        &label,
        "zib pipeline, parts discarded (not stored)",
        &baseline,
        &discard,
    );
    table.add_floor(
        &label,
        &baseline,
        &floor,
        &[("stored", &pipeline), ("parts discarded", &discard)],
    );
}

/// `stream.bin` in `dir`: `len` incompressible bytes, the stream sections (a) and (r)
/// back up.
fn source_file(dir: &Path, len: u64, section: &str) -> PathBuf {
    let source = dir.join("stream.bin");
    eprintln!(
        "{section} writing a {} MiB source file of incompressible bytes",
        len / MIB
    );
    write_random_file(&source, len);
    source
}

/// (r): the restore of (a)'s stream from a local-directory repository — download to the
/// staging directory, verify, decrypt, receive (into a file) — next to `cat STREAM > DST
/// && sync` of the same stream.
fn bench_restore(options: &Options, table: &mut Table) {
    // Source, repository, staged volumes, restored copy.
    let need = 4 * options.stream_len + GIB;
    if !room_for(&options.dir, need, "(r)") {
        return;
    }
    let work = scratch(&options.dir, "zib-bench-r-");
    let source = source_file(work.path(), options.stream_len, "(r)");
    eprintln!("(r) backing it up");
    let repo = scratch(work.path(), "repo-");
    spawn_child(&[
        "child-file",
        source.to_str().unwrap(),
        repo.path().to_str().unwrap(),
    ]);
    read_through(&source);
    let label = format!(
        "(r) restore of a {} GiB stream",
        fmt_gib(options.stream_len)
    );
    let mut baseline = Runs::default();
    let mut restore = Runs::default();
    let mut floor = Runs::default();
    for round in 1..=options.rounds {
        let dest = work.path().join("restored.bin");
        sync();
        baseline.push(copy_to_file("cat", &[source.to_str().unwrap()], &dest));
        std::fs::remove_file(&dest).unwrap();
        sync();
        restore.push(spawn_child(&[
            "child-restore",
            repo.path().to_str().unwrap(),
            dest.to_str().unwrap(),
        ]));
        assert_eq!(
            std::fs::metadata(&dest).unwrap().len(),
            options.stream_len,
            "the restored stream has the backed-up length"
        );
        std::fs::remove_file(&dest).unwrap();
        floor.push(spawn_child(&["child-floor", source.to_str().unwrap()]));
        eprintln!(
            "(r) round {round}: baseline {:.0} MiB/s, restore {:.0} MiB/s, the format's work alone {:.0} MiB/s",
            baseline.last_rate(),
            restore.last_rate(),
            floor.last_rate()
        );
    }
    table.add(
        &label,
        "cat STREAM > DST && sync",
        &baseline,
        "zib restore from a local directory into a file",
        &restore,
    );
    // Opening a segment costs what sealing it does, so the backup's floor is the format's
    // floor for the restore too. The restore does more by design — it opens every segment
    // twice (verified as it is staged, again as it is received) and reads the staged copy
    // back — and the ratio counts that as work above the floor.
    table.add_floor(&label, &baseline, &floor, &[("restore", &restore)]);
}

/// (b): a live zfs-fuse `zfs send` → pipeline, next to `zfs send … > DST && sync`.
fn bench_zfs(options: &Options, table: &mut Table) {
    if let Some(why) = zfs_unavailable() {
        eprintln!("(b) skipped: {why}");
        table.skipped.push(format!("(b) zfs send: skipped — {why}"));
        return;
    }
    let shape = VolumeShape::default();
    let need = 3 * options.zfs_len + shape.volume_plaintext_len + GIB;
    if !room_for(&options.dir, need, "(b)") {
        return;
    }
    let work = scratch(&options.dir, "zib-bench-b-");
    let pool = BenchPool::create(work.path(), options.zfs_len);
    let dataset = format!("{}/data", pool.name);
    run_checked("zfs", &["create", &dataset]);
    let mountpoint = run_checked("zfs", &["get", "-H", "-o", "value", "mountpoint", &dataset]);
    let mountpoint = PathBuf::from(mountpoint.trim_end());
    let files = options.zfs_len.div_ceil(ZFS_FILE_LEN);
    eprintln!(
        "(b) writing {files} files of {} MiB into {dataset}",
        ZFS_FILE_LEN / MIB
    );
    let filled = Instant::now();
    for index in 0..files {
        write_random_file(
            &mountpoint.join(format!("file-{index:03}.bin")),
            ZFS_FILE_LEN,
        );
    }
    sync();
    eprintln!("(b) filled in {:.1} s", filled.elapsed().as_secs_f64());
    let snapshot = "bench";
    let full = format!("{dataset}@{snapshot}");
    run_checked("zfs", &["snapshot", &full]);
    let label = format!("(b) zfs send, {} MiB of files", files * ZFS_FILE_LEN / MIB);
    let mut baseline = Runs::default();
    let mut pipeline = Runs::default();
    for round in 1..=options.rounds {
        let dest = work.path().join("send.bin");
        sync();
        baseline.push(copy_to_file("zfs", &["send", &full], &dest));
        std::fs::remove_file(&dest).unwrap();
        let repo = scratch(work.path(), "repo-");
        sync();
        pipeline.push(spawn_child(&[
            "child-zfs",
            &dataset,
            snapshot,
            repo.path().to_str().unwrap(),
        ]));
        drop(repo);
        eprintln!(
            "(b) round {round}: baseline {:.0} MiB/s, pipeline {:.0} MiB/s",
            baseline.last_rate(),
            pipeline.last_rate()
        );
    }
    table.add(
        &label,
        "zfs send … > DST && sync",
        &baseline,
        "zib pipeline",
        &pipeline,
    );
    drop(pool);
}

/// Peak RSS of generated streams of each size, default shape.
fn bench_rss(options: &Options) -> Vec<(u64, Runs)> {
    let shape = VolumeShape::default();
    let largest = options.rss_lens.iter().copied().max().unwrap_or(0);
    if !room_for(
        &options.dir,
        largest + shape.volume_plaintext_len + GIB / 2,
        "peak RSS",
    ) {
        return Vec::new();
    }
    let work = scratch(&options.dir, "zib-bench-rss-");
    let mut results: Vec<(u64, Runs)> = options
        .rss_lens
        .iter()
        .map(|len| (*len, Runs::default()))
        .collect();
    for round in 1..=options.rounds {
        for (len, runs) in &mut results {
            let repo = scratch(work.path(), "repo-");
            sync();
            runs.push(spawn_child(&[
                "child-generated",
                &len.to_string(),
                repo.path().to_str().unwrap(),
            ]));
            drop(repo);
            eprintln!(
                "peak RSS round {round}: {} GiB stream: {:.1} MiB ({:.0} MiB/s)",
                fmt_gib(*len),
                runs.0.last().unwrap().max_rss_kib as f64 / 1024.0,
                runs.last_rate()
            );
        }
    }
    results
}

// ---------------------------------------------------------------------------------------
// The measured child process
// ---------------------------------------------------------------------------------------

/// Where the measured child's parts go.
#[derive(Clone, Copy)]
enum Sink {
    /// Into the local-directory repository.
    Store,
    /// Nowhere: [`DiscardParts`] around the local-directory repository.
    DiscardParts,
}

enum Source {
    File(PathBuf),
    Zfs { dataset: String, snapshot: String },
    Generated(u64),
}

/// Initialises a repository in `repo_dir`, backs up the source's stream, and prints one
/// `RESULT` line: bytes, seconds, user and system CPU seconds, peak RSS in KiB.
fn child(source: Source, repo_dir: &str, sink: Sink) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let measurement = runtime.block_on(async {
        let local = LocalDirBackend::open(repo_dir, Arc::new(SystemClock)).unwrap();
        let backend: Arc<dyn StorageBackend> = match sink {
            Sink::Store => Arc::new(local),
            Sink::DiscardParts => Arc::new(DiscardParts::new(local)),
        };
        // The state directory on the same file system as the repository, as a real
        // run's usually is.
        let state_parent = Path::new(repo_dir).parent().unwrap_or(Path::new("/tmp"));
        let state_dir = tempfile::tempdir_in(state_parent).unwrap();
        // The default scrypt cost, as a real run has: its 128 MiB are freed before the
        // upload and are below the pipeline's own peak.
        let (repository, _) = Repository::init(
            &Location::new(backend, "").unwrap(),
            &Passphrase::new("benchmark passphrase".to_owned()),
            &InitOptions::default(),
            Host::new(state_dir.path()),
        )
        .await
        .unwrap();
        let stopwatch = InProcess::start();
        let uploaded = match source {
            Source::File(path) => {
                let stream = OneStream::new(move || {
                    let file = std::fs::File::open(&path).unwrap();
                    ReaderStream::with_capacity(tokio::fs::File::from_std(file), STREAM_CHUNK)
                        .map(|chunk| {
                            chunk.map_err(|error| zib_engine::snapshot_source::Error::Io {
                                command: "read the source file".into(),
                                source: error,
                            })
                        })
                        .boxed()
                });
                back_up(
                    &repository,
                    &stream,
                    &OneStream::dataset(),
                    SnapshotChoice::Create,
                )
                .await
            }
            Source::Zfs {
                dataset: name,
                snapshot,
            } => {
                back_up(
                    &repository,
                    &ZfsSource::new(),
                    &DatasetName::zfs(&name).unwrap(),
                    SnapshotChoice::Existing(SnapshotName::zfs(&snapshot).unwrap()),
                )
                .await
            }
            Source::Generated(len) => {
                let stream = OneStream::new(move || generated(len).boxed());
                back_up(
                    &repository,
                    &stream,
                    &OneStream::dataset(),
                    SnapshotChoice::Create,
                )
                .await
            }
        };
        stopwatch.finish(|| uploaded)
    });
    println!("{}", measurement.to_line());
}

/// The work the format itself requires of a backup, and nothing else, on one thread:
/// the file read in [`STREAM_CHUNK`] pieces, both SHA-256 passes the format records (the
/// stream's and the volume's), and every 64 KiB segment sealed with AES-256-GCM where
/// it lies (ring, the pipeline's own primitives). No thread hand-over, no copy, no
/// storage: the floor under the pipeline's CPU on this machine. Prints one `RESULT`
/// line, as [`child`].
fn child_floor(source: &Path) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    use ring::digest::{Context, SHA256};
    const SEGMENT: usize = 64 * 1024;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    let mut file = File::open(source).unwrap();
    let mut chunk = vec![0; STREAM_CHUNK];
    let stopwatch = InProcess::start();
    let mut stream = Context::new(&SHA256);
    let mut volume = Context::new(&SHA256);
    let mut counter: u64 = 0;
    let mut total = 0_u64;
    loop {
        let read = file.read(&mut chunk).unwrap();
        if read == 0 {
            break;
        }
        total += read as u64;
        stream.update(&chunk[..read]);
        volume.update(&chunk[..read]);
        for segment in chunk[..read].chunks_mut(SEGMENT) {
            let mut nonce = [0; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            counter += 1;
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    segment,
                )
                .unwrap();
            let _ = std::hint::black_box(tag);
        }
    }
    std::hint::black_box([stream.finish(), volume.finish()]);
    let measurement = stopwatch.finish(|| total);
    println!("{}", measurement.to_line());
}

/// Restores the newest backup of the repository in `repo_dir` into the file `dest`
/// (staging beside the repository) and prints one `RESULT` line, as [`child`].
fn child_restore(repo_dir: &str, dest: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let measurement = runtime.block_on(async {
        let local = LocalDirBackend::open(repo_dir, Arc::new(SystemClock)).unwrap();
        let parent = Path::new(repo_dir).parent().unwrap_or(Path::new("/tmp"));
        let state_dir = tempfile::tempdir_in(parent).unwrap();
        let staging = tempfile::tempdir_in(parent).unwrap();
        let repository = Repository::open(
            &Location::new(Arc::new(local), "").unwrap(),
            &Passphrase::new("benchmark passphrase".to_owned()),
            Host::new(state_dir.path()),
        )
        .await
        .unwrap();
        let target = OneStream::receiving_into(dest.to_owned());
        let stopwatch = InProcess::start();
        let request = NewRestore::new(
            OneStream::dataset().to_string(),
            DatasetName::zfs("bench/restored").unwrap(),
            staging.path(),
        );
        let (job, _) = repository.create_restore(&request, &target).await.unwrap();
        loop {
            let status = repository
                .advance_restore(job.id, &target, &NoProgress)
                .await
                .unwrap();
            match status.state {
                RestoreState::Done => break,
                RestoreState::Waiting { reason, .. } => {
                    // The local directory thaws nothing: only a restore request's own
                    // bookkeeping makes a run stop short.
                    eprintln!("restore waiting: {reason:?}");
                }
            }
        }
        stopwatch.finish(|| std::fs::metadata(dest).unwrap().len())
    });
    println!("{}", measurement.to_line());
}

/// Backs up one snapshot with the default shape; returns the stream's length.
async fn back_up(
    repository: &Repository,
    source: &dyn SnapshotSource,
    dataset: &DatasetName,
    snapshot: SnapshotChoice,
) -> u64 {
    let options = BackupOptions {
        snapshot,
        shape: VolumeShape::default(),
        ..BackupOptions::default()
    };
    match repository
        .backup(source, dataset, &options, &NoProgress)
        .await
        .unwrap()
    {
        BackupOutcome::Committed(committed) => committed.manifest.stream_len,
        BackupOutcome::UpToDate { .. } => panic!("nothing was backed up"),
    }
}

/// A snapshot source whose datasets all send the stream `open` makes: the benchmark's
/// stream goes through the whole backup (catalog, plan, journal, upload, commit).
struct OneStream {
    open: Box<
        dyn Fn() -> BoxStream<'static, zib_engine::snapshot_source::Result<Bytes>> + Send + Sync,
    >,
    snapshots: Mutex<Vec<SnapshotInfo>>,
    /// Where a receive writes its stream (a restore's target), and what it received.
    receive_to: Option<PathBuf>,
    received: Mutex<Option<SnapshotInfo>>,
}

impl OneStream {
    fn new(
        open: impl Fn() -> BoxStream<'static, zib_engine::snapshot_source::Result<Bytes>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Self {
            open: Box::new(open),
            snapshots: Mutex::new(Vec::new()),
            receive_to: None,
            received: Mutex::new(None),
        }
    }

    /// A source whose receives write the stream into the file `dest`.
    fn receiving_into(dest: PathBuf) -> Self {
        Self {
            receive_to: Some(dest),
            ..Self::new(|| futures::stream::empty().boxed())
        }
    }

    fn dataset() -> DatasetName {
        DatasetName::zfs("bench/dataset").unwrap()
    }
}

#[async_trait]
impl SnapshotSource for OneStream {
    fn kind(&self) -> SourceKind {
        SourceKind::Zfs
    }
    async fn capabilities(
        &self,
        _dataset: &DatasetName,
    ) -> zib_engine::snapshot_source::Result<Capabilities> {
        Ok(Capabilities::new(
            "benchmark stream".into(),
            false,
            false,
            false,
            false,
            SendFlags::NONE,
        ))
    }
    async fn list_snapshots(
        &self,
        dataset: &DatasetName,
    ) -> zib_engine::snapshot_source::Result<Vec<SnapshotInfo>> {
        if *dataset == Self::dataset() {
            return Ok(self.snapshots.lock().unwrap().clone());
        }
        match self.received.lock().unwrap().clone() {
            Some(received) => Ok(vec![received]),
            None => Err(zib_engine::snapshot_source::Error::DatasetNotFound {
                dataset: dataset.to_string(),
            }),
        }
    }
    async fn create_snapshot(
        &self,
        _dataset: &DatasetName,
        snapshot: &SnapshotName,
        _marker: Option<&str>,
    ) -> zib_engine::snapshot_source::Result<SnapshotInfo> {
        let info = SnapshotInfo::new(
            snapshot.clone(),
            SnapshotIdentity::ZfsGuid(1),
            1,
            time::OffsetDateTime::now_utc(),
            None,
        );
        self.snapshots.lock().unwrap().push(info.clone());
        Ok(info)
    }
    async fn destroy_snapshot(
        &self,
        _dataset: &DatasetName,
        _snapshot: &SnapshotName,
    ) -> zib_engine::snapshot_source::Result<()> {
        Ok(())
    }
    async fn estimate_send_size(
        &self,
        _request: &SendRequest,
    ) -> zib_engine::snapshot_source::Result<Option<u64>> {
        Ok(None)
    }
    async fn send(
        &self,
        _request: &SendRequest,
    ) -> zib_engine::snapshot_source::Result<SendStream> {
        Ok(SendStream::from_stream((self.open)()))
    }
    async fn receive(
        &self,
        _target: &DatasetName,
        mut stream: ReceiveStream,
        _options: &ReceiveOptions,
    ) -> zib_engine::snapshot_source::Result<SnapshotInfo> {
        use tokio::io::AsyncWriteExt as _;
        let dest = self.receive_to.as_ref().expect("a source made to receive");
        let mut file = tokio::fs::File::create(dest).await.unwrap();
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.unwrap()).await.unwrap();
        }
        file.sync_all().await.unwrap();
        // The identity every backup of this source has (`create_snapshot`).
        let info = SnapshotInfo::new(
            SnapshotName::zfs("restored").unwrap(),
            SnapshotIdentity::ZfsGuid(1),
            1,
            time::OffsetDateTime::now_utc(),
            None,
        );
        *self.received.lock().unwrap() = Some(info.clone());
        Ok(info)
    }
    async fn discard_target(
        &self,
        _target: &DatasetName,
    ) -> zib_engine::snapshot_source::Result<()> {
        if let Some(dest) = &self.receive_to {
            let _ = std::fs::remove_file(dest);
        }
        *self.received.lock().unwrap() = None;
        Ok(())
    }
    async fn protect(
        &self,
        _dataset: &DatasetName,
        _snapshot: &SnapshotName,
    ) -> zib_engine::snapshot_source::Result<Protection> {
        unimplemented!("the source says it cannot protect")
    }
    async fn release(&self, _protection: &Protection) -> zib_engine::snapshot_source::Result<()> {
        Ok(())
    }
}

/// `len` bytes from a fast deterministic generator, in fresh 256 KiB chunks.
fn generated(
    len: u64,
) -> impl Stream<Item = zib_engine::snapshot_source::Result<Bytes>> + Unpin + Send {
    let mut generator = Generator::new(len);
    let mut left = len;
    futures::stream::iter(std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let take = left.min(STREAM_CHUNK as u64) as usize;
        left -= take as u64;
        let mut chunk = vec![0u8; take];
        generator.fill(&mut chunk);
        Some(Ok(Bytes::from(chunk)))
    }))
}

// ---------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------

struct Measurement {
    bytes: u64,
    elapsed: Duration,
    user: f64,
    system: f64,
    max_rss_kib: u64,
    /// Resident set size when the upload started (the program, its runtime and the
    /// repository; the key derivation's memory already freed).
    rss_before_kib: u64,
}

impl Measurement {
    fn rate(&self) -> f64 {
        self.bytes as f64 / MIB as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu(&self) -> f64 {
        self.user + self.system
    }

    fn to_line(&self) -> String {
        format!(
            "RESULT {} {:.6} {:.2} {:.2} {} {}",
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.user,
            self.system,
            self.max_rss_kib,
            self.rss_before_kib
        )
    }

    fn from_line(line: &str) -> Option<Measurement> {
        let mut fields = line.strip_prefix("RESULT ")?.split(' ');
        let mut next = || fields.next();
        Some(Measurement {
            bytes: next()?.parse().ok()?,
            elapsed: Duration::from_secs_f64(next()?.parse().ok()?),
            user: next()?.parse().ok()?,
            system: next()?.parse().ok()?,
            max_rss_kib: next()?.parse().ok()?,
            rss_before_kib: next()?.parse().ok()?,
        })
    }
}

/// Runs this binary again with `args` and returns the measurement it printed.
fn spawn_child(args: &[&str]) -> Measurement {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(&exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the measured child {args:?} failed ({})",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(Measurement::from_line)
        .unwrap_or_else(|| panic!("the child {args:?} printed no RESULT line: {stdout}"))
}

/// `program args > dest && sync`: the child's standard output is `dest`, opened here.
fn copy_to_file(program: &str, args: &[&str], dest: &Path) -> Measurement {
    let before = cpu_times();
    let started = Instant::now();
    let out = File::create(dest).unwrap();
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::from(out))
        .status()
        .unwrap();
    assert!(status.success(), "{program} {args:?} failed ({status})");
    sync();
    let elapsed = started.elapsed();
    let after = cpu_times();
    Measurement {
        bytes: std::fs::metadata(dest).unwrap().len(),
        elapsed,
        user: after.children_user - before.children_user,
        system: after.children_system - before.children_system,
        max_rss_kib: 0,
        rss_before_kib: 0,
    }
}

/// A measurement of work done in this process: its CPU time, peak RSS and the clock,
/// from [`start`](Self::start) to [`finish`](Self::finish).
struct InProcess {
    rss_before_kib: u64,
    before: CpuTimes,
    started: Instant,
}

impl InProcess {
    fn start() -> Self {
        let rss_before_kib = status_kib("VmRSS:");
        let before = cpu_times();
        InProcess {
            rss_before_kib,
            before,
            started: Instant::now(),
        }
    }

    /// Stops the clock and the CPU count; `bytes` is asked for after both.
    fn finish(self, bytes: impl FnOnce() -> u64) -> Measurement {
        let elapsed = self.started.elapsed();
        let after = cpu_times();
        Measurement {
            bytes: bytes(),
            elapsed,
            user: after.user - self.before.user,
            system: after.system - self.before.system,
            max_rss_kib: status_kib("VmHWM:"),
            rss_before_kib: self.rss_before_kib,
        }
    }
}

#[derive(Clone, Copy)]
struct CpuTimes {
    user: f64,
    system: f64,
    children_user: f64,
    children_system: f64,
}

/// This process's CPU times and its reaped children's, from `/proc/self/stat`.
fn cpu_times() -> CpuTimes {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let field = |number: usize| fields[number - 3].parse::<f64>().unwrap() / ticks;
    CpuTimes {
        user: field(14),
        system: field(15),
        children_user: field(16),
        children_system: field(17),
    }
}

/// A memory figure of this process from `/proc/self/status`, in KiB: `VmHWM:` is the
/// peak resident set size (what `ru_maxrss` reports), `VmRSS:` the current one.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Every round of one measurement.
#[derive(Default)]
struct Runs(Vec<Measurement>);

impl Runs {
    fn push(&mut self, measurement: Measurement) {
        self.0.push(measurement);
    }

    fn last_rate(&self) -> f64 {
        self.0.last().map_or(0.0, Measurement::rate)
    }

    fn rates(&self) -> Vec<f64> {
        self.0.iter().map(Measurement::rate).collect()
    }

    fn cpus(&self) -> Vec<f64> {
        self.0.iter().map(Measurement::cpu).collect()
    }
}

/// Median, minimum and maximum.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    (median, sorted[0], sorted[n - 1])
}

fn fmt_spread(values: &[f64], decimals: usize) -> String {
    let (median, low, high) = spread(values);
    format!("{median:.decimals$} ({low:.decimals$}–{high:.decimals$})")
}

#[derive(Default)]
struct Table {
    rows: Vec<String>,
    /// Lines printed under the table.
    notes: Vec<String>,
    skipped: Vec<String>,
}

impl Table {
    fn add(
        &mut self,
        label: &str,
        baseline_name: &str,
        baseline: &Runs,
        pipeline_name: &str,
        pipeline: &Runs,
    ) {
        let mib = baseline.0.first().map_or(0, |m| m.bytes) / MIB;
        self.rows.push(format!(
            "| {label} ({mib} MiB) | baseline: {baseline_name} | {} | | {} |",
            fmt_spread(&baseline.rates(), 0),
            fmt_spread(&baseline.cpus(), 2),
        ));
        self.add_pipeline(label, pipeline_name, baseline, pipeline);
    }

    fn add_pipeline(&mut self, label: &str, name: &str, baseline: &Runs, pipeline: &Runs) {
        // The ratio is taken per round (pipeline and baseline ran back to back), then
        // summarised, so one slow round does not skew it.
        let ratios: Vec<f64> = pipeline
            .rates()
            .iter()
            .zip(baseline.rates())
            .map(|(p, b)| p / b)
            .collect();
        let mib = pipeline.0.first().map_or(0, |m| m.bytes) / MIB;
        self.rows.push(format!(
            "| {label} ({mib} MiB) | {name} | {} | {} | {} |",
            fmt_spread(&pipeline.rates(), 0),
            fmt_spread(&ratios, 2),
            fmt_spread(&pipeline.cpus(), 2),
        ));
    }

    /// The row of the format's work alone (`child-floor`), and a note giving each of
    /// `pipelines`' CPU as a multiple of it, round by round.
    fn add_floor(
        &mut self,
        label: &str,
        baseline: &Runs,
        floor: &Runs,
        pipelines: &[(&str, &Runs)],
    ) {
        self.add_pipeline(
            label,
            "the format's work alone: read, SHA-256 × 2, AES-256-GCM (one thread)",
            baseline,
            floor,
        );
        let ratios: Vec<String> = pipelines
            .iter()
            .map(|(name, runs)| {
                let per_round: Vec<f64> = runs
                    .cpus()
                    .iter()
                    .zip(floor.cpus())
                    .map(|(cpu, floor)| cpu / floor)
                    .collect();
                format!("{name} {}", fmt_spread(&per_round, 2))
            })
            .collect();
        self.notes.push(format!(
            "{label}: CPU ÷ the format's work alone, per round: {}",
            ratios.join(", ")
        ));
    }

    fn print(&self) {
        println!();
        println!("Throughput: median (min–max) over rounds; ratio = pipeline ÷ baseline per round; CPU = user+sys seconds");
        println!();
        println!("| stream | what | MiB/s | ratio | CPU s |");
        println!("|---|---|---|---|---|");
        for row in &self.rows {
            println!("{row}");
        }
        if !self.notes.is_empty() {
            println!();
        }
        for line in &self.notes {
            println!("{line}");
        }
        for line in &self.skipped {
            println!();
            println!("{line}");
        }
    }
}

fn print_rss(results: &[(u64, Runs)], shape: &VolumeShape) {
    if results.is_empty() {
        return;
    }
    let bound = (shape.parts_in_flight as u64 + 1) * shape.part_len + STREAM_CHUNK as u64;
    println!();
    println!(
        "Peak RSS (VmHWM = ru_maxrss), default shape; documented bound (parts in flight + 1) × part size + one chunk = {:.1} MiB (plus the program itself); target ≤ 512 MiB",
        bound as f64 / MIB as f64
    );
    println!();
    println!("| stream | peak RSS MiB | RSS at upload start MiB | MiB/s | CPU s |");
    println!("|---|---|---|---|---|");
    let mut medians = Vec::new();
    for (len, runs) in results {
        let rss: Vec<f64> = runs
            .0
            .iter()
            .map(|m| m.max_rss_kib as f64 / 1024.0)
            .collect();
        let start: Vec<f64> = runs
            .0
            .iter()
            .map(|m| m.rss_before_kib as f64 / 1024.0)
            .collect();
        medians.push(spread(&rss).0);
        println!(
            "| {} GiB generated | {} | {} | {} | {} |",
            fmt_gib(*len),
            fmt_spread(&rss, 1),
            fmt_spread(&start, 1),
            fmt_spread(&runs.rates(), 0),
            fmt_spread(&runs.cpus(), 2)
        );
    }
    if let (Some(low), Some(high)) = (
        medians.iter().copied().reduce(f64::min),
        medians.iter().copied().reduce(f64::max),
    ) {
        println!();
        println!(
            "Largest median over smallest: {:.3} (goal ≤ 1.10); largest median {:.1} MiB (goal ≤ 512 MiB)",
            high / low,
            high
        );
    }
}

// ---------------------------------------------------------------------------------------
// Set-up helpers
// ---------------------------------------------------------------------------------------

/// xorshift64*: fast, deterministic, and incompressible for any compressor in the path.
struct Generator(u64);

impl Generator {
    fn new(seed: u64) -> Generator {
        // xorshift never leaves zero: force an odd state.
        Generator((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for word in out.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let value = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            word.copy_from_slice(&value[..word.len()]);
        }
    }
}

fn write_random_file(path: &Path, len: u64) {
    let mut generator = Generator::new(len ^ path.as_os_str().len() as u64);
    let mut file = File::create(path).unwrap();
    let mut buffer = vec![0u8; 4 << 20];
    let mut left = len;
    while left > 0 {
        let take = left.min(buffer.len() as u64) as usize;
        generator.fill(&mut buffer[..take]);
        file.write_all(&buffer[..take]).unwrap();
        left -= take as u64;
    }
}

fn read_through(path: &Path) -> u64 {
    let mut file = File::open(path).unwrap();
    let mut buffer = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buffer).unwrap();
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

fn sync() {
    let status = Command::new("sync").status().unwrap();
    assert!(status.success(), "sync failed ({status})");
}

fn run_checked(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|error| panic!("could not run {program} {args:?}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn scratch(dir: &Path, prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .unwrap_or_else(|error| panic!("cannot create a directory in {}: {error}", dir.display()))
}

/// True when `dir`'s file system has `need` bytes free; otherwise says so.
fn room_for(dir: &Path, need: u64, section: &str) -> bool {
    let stat = rustix::fs::statvfs(dir)
        .unwrap_or_else(|error| panic!("cannot stat {}: {error}", dir.display()));
    let free = stat.f_bavail * stat.f_frsize;
    if free < need {
        eprintln!(
            "{section} skipped: {} has {} MiB free, the measurement needs {} MiB; choose another --dir",
            dir.display(),
            free / MIB,
            need / MIB
        );
        return false;
    }
    true
}

fn fmt_gib(len: u64) -> String {
    let g = len as f64 / GIB as f64;
    if g.fract() == 0.0 {
        format!("{g:.0}")
    } else {
        format!("{g:.2}")
    }
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024 / 1024);
    format!("{model}, {cores} cores, {memory} GiB RAM")
}

fn file_system(dir: &Path) -> String {
    let Ok(output) = Command::new("df").args(["-hT"]).arg(dir).output() else {
        return "unknown file system".to_owned();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Why (b) cannot run, if it cannot.
fn zfs_unavailable() -> Option<String> {
    let found = |program: &str| {
        Command::new(program)
            .arg("-?")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !found("zfs") || !found("zpool") {
        return Some("zfs-fuse is not installed (`apt-get install zfs-fuse`)".to_owned());
    }
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    });
    if !root {
        return Some("creating a zfs-fuse pool needs root (run the benchmark as root)".to_owned());
    }
    let running = Command::new("zpool")
        .arg("list")
        .output()
        .is_ok_and(|output| output.status.success());
    if !running {
        return Some(
            "the zfs-fuse daemon is not running (start it as root: `zfs-fuse`)".to_owned(),
        );
    }
    None
}

/// A pool on a sparse file, destroyed on drop.
struct BenchPool {
    name: String,
}

impl BenchPool {
    fn create(dir: &Path, data_len: u64) -> BenchPool {
        let name = format!("zibbench-{}", std::process::id());
        let file = dir.join("pool.img");
        let mount = dir.join("mnt");
        // Sparse: only what is written takes space. Room for the data and ZFS's overhead.
        File::create(&file)
            .and_then(|f| f.set_len(data_len + data_len / 2 + GIB))
            .unwrap();
        run_checked(
            "zpool",
            &[
                "create",
                "-m",
                mount.to_str().unwrap(),
                &name,
                file.to_str().unwrap(),
            ],
        );
        BenchPool { name }
    }
}

impl Drop for BenchPool {
    fn drop(&mut self) {
        // zfs-fuse may report "busy" for a moment after heavy I/O.
        for _ in 0..20 {
            let destroyed = Command::new("zpool")
                .args(["destroy", "-f", &self.name])
                .output()
                .is_ok_and(|output| output.status.success());
            if destroyed {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!(
            "could not destroy the benchmark pool {}: destroy it with `zpool destroy -f {}`",
            self.name, self.name
        );
    }
}

/// The local-directory backend with multipart part bytes dropped instead of stored: what
/// the pipeline costs without its storage. Parts get a placeholder ETag, completion
/// aborts the (empty) upload so no object appears; everything else is the local
/// directory's. For this benchmark only: nothing it "uploads" can be read back.
///
/// `head` answers for a discarded object with the size its parts had, so the engine's
/// check that every volume exists before the commit passes as it would have.
#[derive(Debug)]
struct DiscardParts {
    inner: LocalDirBackend,
    /// Bytes "uploaded" per upload id, then per completed key.
    sizes: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl DiscardParts {
    fn new(inner: LocalDirBackend) -> Self {
        Self {
            inner,
            sizes: std::sync::Mutex::default(),
        }
    }
}

#[async_trait]
impl Forwarding for DiscardParts {
    fn inner(&self) -> &dyn StorageBackend {
        &self.inner
    }

    async fn upload_part(
        &self,
        _key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> StorageResult<PartInfo> {
        *self
            .sizes
            .lock()
            .unwrap()
            .entry(upload.as_str().to_owned())
            .or_default() += data.len() as u64;
        Ok(PartInfo {
            number,
            size: data.len() as u64,
            etag: ETag::new(format!("\"discarded-{number}\"")),
        })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        _parts: &[CompletedPart],
        _precondition: CompletePrecondition,
    ) -> StorageResult<ETag> {
        self.inner.abort_multipart(key, upload).await?;
        let mut sizes = self.sizes.lock().unwrap();
        let size = sizes.remove(upload.as_str()).unwrap_or(0);
        sizes.insert(key.as_str().to_owned(), size);
        Ok(ETag::new("\"discarded\""))
    }

    async fn head(&self, key: &ObjectKey) -> StorageResult<ObjectMeta> {
        let discarded = self.sizes.lock().unwrap().get(key.as_str()).copied();
        match discarded {
            Some(size) => Ok(ObjectMeta {
                key: key.clone(),
                size,
                storage_class: zib_engine::storage::StorageClass::DeepArchive,
                metadata: Default::default(),
                etag: ETag::new("\"discarded\""),
                last_modified: std::time::SystemTime::now(),
                archive_state: zib_engine::storage::ArchiveState::Archived,
            }),
            None => self.inner.head(key).await,
        }
    }
}
