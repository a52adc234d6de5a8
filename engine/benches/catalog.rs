//! Reading the catalog of a repository holding thousands of backups — 20 years of daily
//! backups of one dataset, or 30 datasets backed up weekly for 6 years — through a
//! backend that answers every request after a fixed latency (40 ms by default: an S3
//! round trip from a home connection), with and without this host's catalog cache; and
//! `Repository::backup` of an unchanged dataset in that repository.
//!
//! Run: `cargo bench -p zib-engine --features internals --bench catalog -- [OPTIONS]`.
//! Run without any argument (as `cargo test --benches` does) it makes a quick smoke run
//! with 300 backups and 2 ms of latency.
//!
//! Options:
//! - `--backups N`: backups in the repository (default 10,000), two of them real
//!   backups of `tank/photos` from an in-memory snapshot source, the rest manifests (and
//!   one one-byte volume object each) committed directly;
//! - `--layout daily|weekly`: the others as one dataset's daily chains (a full every
//!   30 days) or as 30 datasets' weekly chains (default daily);
//! - `--latency-ms L`: latency per request, and per LIST page of 1,000 keys (default 40).
//!
//! Requests are counted by kind at the latency layer; a LIST counts one request per page
//! of up to 1,000 keys (S3's page). The build is whatever profile cargo uses (`cargo
//! bench`: optimised); the cached read's time beyond its requests' latency is the CPU
//! that opens each manifest's sealed metadata.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use zib_engine::crypto::KdfParams;
use zib_engine::snapshot_source::{DatasetName, SnapshotIdentity, SourceKind};
use zib_engine::storage::memory::{MemoryBackend, MemoryConfig};
use zib_engine::storage::{
    AbortIncompleteUploadsRule, BucketProtection, ByteRange, ByteStream, CompletePrecondition,
    CompletedPart, ETag, ListEntry, MultipartUploadInfo, ObjectKey, ObjectMeta, PartInfo,
    PutPrecondition, RestoreTier, Result, StorageBackend, UploadId, WriteOptions,
};
use zib_engine::{
    BackupId, BackupKind, BackupOptions, DatasetId, Host, InitOptions, Location, ManifestRecord,
    NoProgress, Passphrase, Repository, SendFlagBits, SystemClock,
};
use zib_test_utils::memory_source::MemorySource;

const PASSPHRASE: &str = "twenty years of photos";
const PAGE: u64 = 1000;

/// A backend answering each request after `latency`; counts requests by kind.
#[derive(Debug)]
struct Slow<B> {
    inner: B,
    latency: Duration,
    requests: Mutex<BTreeMap<&'static str, u64>>,
}

impl<B> Slow<B> {
    async fn request(&self, kind: &'static str) {
        *self.requests.lock().unwrap().entry(kind).or_default() += 1;
        tokio::time::sleep(self.latency).await;
    }

    fn take_counts(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

#[async_trait]
impl<B: StorageBackend> StorageBackend for Slow<B> {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        precondition: &PutPrecondition,
    ) -> Result<ETag> {
        self.request("PUT").await;
        self.inner.put(key, data, options, precondition).await
    }
    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        self.request("CreateMultipart").await;
        self.inner.create_multipart(key, options).await
    }
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        self.request("UploadPart").await;
        self.inner.upload_part(key, upload, number, data).await
    }
    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        self.request("ListParts").await;
        self.inner.list_parts(key, upload).await
    }
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        precondition: CompletePrecondition,
    ) -> Result<ETag> {
        self.request("CompleteMultipart").await;
        self.inner
            .complete_multipart(key, upload, parts, precondition)
            .await
    }
    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        self.request("AbortMultipart").await;
        self.inner.abort_multipart(key, upload).await
    }
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.request("ListMultipartUploads").await;
        self.inner.list_multipart_uploads(prefix).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.request("HEAD").await;
        self.inner.head(key).await
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        // One request per page of up to 1,000 keys, paid with the page's first key (an
        // empty listing is one page too).
        futures::stream::unfold(
            (self.inner.list(prefix), 0u64),
            move |(mut inner, seen)| async move {
                if seen == 0 {
                    self.request("LIST page").await;
                }
                let entry = inner.next().await?;
                if seen > 0 && seen % PAGE == 0 {
                    self.request("LIST page").await;
                }
                Some((entry, (inner, seen + 1)))
            },
        )
        .boxed()
    }
    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        self.request("GET").await;
        self.inner.get(key, range).await
    }
    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()> {
        self.request("RestoreObject").await;
        self.inner.request_restore(key, days, tier).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.request("DELETE").await;
        self.inner.delete(key).await
    }
    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        self.request("GetLifecycle").await;
        self.inner.abort_incomplete_uploads_rules().await
    }
    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        self.request("PutLifecycle").await;
        self.inner.put_abort_incomplete_uploads_rule(rule).await
    }
    async fn bucket_protection(&self) -> Result<BucketProtection> {
        self.request("GetBucketProtection").await;
        self.inner.bucket_protection().await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Daily,
    Weekly,
}

struct Options {
    backups: u32,
    layout: Layout,
    latency: Duration,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut options = if args.is_empty() {
        Options {
            backups: 300,
            layout: Layout::Daily,
            latency: Duration::from_millis(2),
        }
    } else {
        Options {
            backups: 10_000,
            layout: Layout::Daily,
            latency: Duration::from_millis(40),
        }
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--backups" => options.backups = value.parse().expect("--backups N"),
            "--latency-ms" => {
                options.latency = Duration::from_millis(value.parse().expect("--latency-ms L"));
            }
            "--layout" => {
                options.layout = match value.as_str() {
                    "daily" => Layout::Daily,
                    "weekly" => Layout::Weekly,
                    other => panic!("--layout daily|weekly, not {other}"),
                }
            }
            other => panic!("unknown option {other}"),
        }
    }
    options
}

/// The `n`th of the generated backups: in chains of 30 (a full, then incrementals on
/// the one before), one day or one week apart, of one dataset or of 30.
fn generated_manifest(layout: Layout, n: u32) -> ManifestRecord {
    let (dataset, position, spacing_days) = match layout {
        Layout::Daily => (0, n, 1),
        Layout::Weekly => (n % 30, n / 30, 7),
    };
    let id = |kind: u8, value: u32| {
        let mut bytes = [kind; 16];
        bytes[..4].copy_from_slice(&value.to_be_bytes());
        bytes
    };
    let dataset_id = DatasetId::from_bytes(id(0xd5, dataset));
    let backup_id = |position: u32| BackupId::from_bytes(id(0xb0 + dataset as u8, position));
    let at = 1_500_000_000 + i64::from(position) * 86_400 * spacing_days;
    let snapshot = |position: u32| format!("zib-{position:08}");
    let kind = if position % 30 == 0 {
        BackupKind::Full
    } else {
        BackupKind::Incremental {
            base_backup: backup_id(position - 1),
            base_snapshot_name: snapshot(position - 1),
            base_identity: SnapshotIdentity::ZfsGuid(u64::from(position - 1) + 1),
        }
    };
    ManifestRecord {
        source: SourceKind::Zfs,
        kind,
        snapshot_created_by_zib: true,
        send_flags: SendFlagBits(0),
        dataset_id,
        backup_id: backup_id(position),
        dataset_name: format!("tank/archive-{dataset:02}"),
        snapshot_name: snapshot(position),
        snapshot_identity: SnapshotIdentity::ZfsGuid(u64::from(position) + 1),
        snapshot_created_at: at,
        committed_at: at + 600,
        stream_len: 1,
        stream_sha256: [7; 32],
        stored_len: 1,
        volume_count: 1,
        volume_plaintext_len: 1 << 30,
        volume_list_sha256: [9; 32],
        snapshot_bytes: Some(1),
        replaced_incremental: None,
    }
}

fn show(what: &str, elapsed: Duration, counts: &BTreeMap<&'static str, u64>) {
    let total: u64 = counts.values().sum();
    let kinds: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "| {what} | {:.2} | {total} | {} |",
        elapsed.as_secs_f64(),
        kinds.join(", ")
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    assert!(options.backups >= 3, "--backups must be at least 3");
    let memory = Arc::new(MemoryBackend::new(
        MemoryConfig::default(),
        Arc::new(SystemClock),
    ));
    let seeding_state = tempfile::tempdir().unwrap();
    let passphrase = Passphrase::new(PASSPHRASE.into());
    let init = InitOptions {
        kdf: KdfParams::new(10, 8, 1).unwrap(),
        ..InitOptions::default()
    };
    let (repository, _) = Repository::init(
        &Location::new(memory.clone(), "family/").unwrap(),
        &passphrase,
        &init,
        Host::new(seeding_state.path()),
    )
    .await
    .unwrap();

    // Two real backups of tank/photos: the dataset backed up again below.
    let source = MemorySource::new();
    let photos = DatasetName::zfs("tank/photos").unwrap();
    source.create_dataset(&photos);
    for day in 0..2u8 {
        source.write_file(&photos, &format!("day-{day}.jpg"), &vec![day; 1 << 20]);
        repository
            .backup(&source, &photos, &BackupOptions::default(), &NoProgress)
            .await
            .unwrap();
    }
    let started = Instant::now();
    for n in 0..options.backups - 2 {
        zib_engine::internals::commit_catalog_benchmark_backup(
            &repository,
            &generated_manifest(options.layout, n),
        )
        .await
        .unwrap();
    }
    eprintln!(
        "seeded {} backups in {:.1} s",
        options.backups,
        started.elapsed().as_secs_f64()
    );
    drop(repository);

    // This host: the same repository through the slow backend, no catalog cache yet.
    let slow = Arc::new(Slow {
        inner: memory.clone(),
        latency: options.latency,
        requests: Mutex::default(),
    });
    let state = tempfile::tempdir().unwrap();
    let repository = Repository::open(
        &Location::new(slow.clone(), "family/").unwrap(),
        &passphrase,
        Host::new(state.path()),
    )
    .await
    .unwrap();
    slow.take_counts();

    println!(
        "\n{} backups ({:?}), {} ms per request and per LIST page of 1,000 keys\n",
        options.backups,
        options.layout,
        options.latency.as_millis()
    );
    println!("| what | seconds | requests | by kind |");
    println!("|---|---|---|---|");
    for what in [
        "catalog, no cache (first run on this host)",
        "catalog, cached",
    ] {
        let started = Instant::now();
        let catalog = repository.catalog().await.unwrap();
        let elapsed = started.elapsed();
        let listed: usize = catalog.datasets.values().map(Vec::len).sum();
        assert_eq!(listed, options.backups as usize, "every backup is listed");
        show(what, elapsed, &slow.take_counts());
    }
    let started = Instant::now();
    let outcome = repository
        .backup(&source, &photos, &BackupOptions::default(), &NoProgress)
        .await
        .unwrap();
    show(
        "`backup` of unchanged tank/photos, cached",
        started.elapsed(),
        &slow.take_counts(),
    );
    if let zib_engine::BackupOutcome::Committed(committed) = &outcome {
        eprintln!(
            "the backup committed a {:?} backup, {} part(s) sent",
            committed.manifest.kind, committed.transfer.parts_sent
        );
    } else {
        eprintln!("the backup did not commit: {outcome:?}");
    }
}
