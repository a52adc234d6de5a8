//! Set-up shared by the engine's integration tests (public API only).

// Each test file uses a different subset of these helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use zib_engine::snapshot_source::{
    DatasetName, ForwardingSource, ReceiveOptions, ReceiveStream, SnapshotInfo, SnapshotSource,
};

use zib_engine::crypto::KdfParams;
use zib_engine::storage::counting::Counting;
use zib_engine::storage::memory::{MemoryBackend, MemoryConfig};
use zib_engine::storage::s3::{S3Backend, S3Config, StaticCredentials};
use zib_engine::storage::{StorageBackend, StorageClass};
use zib_engine::{
    BackupOptions, BackupOutcome, CommittedBackup, FakeClock, Host, InitOptions, Location,
    Passphrase, Repository, VolumeShape,
};
use zib_test_utils::moto::MotoServer;

/// Deep Archive, with a cheap scrypt cost so tests are quick (the format allows any cost
/// within the v1 ceiling).
pub(crate) fn fast_init() -> InitOptions {
    InitOptions {
        archive_class: StorageClass::DeepArchive,
        kdf: KdfParams::new(10, 8, 1).unwrap(),
    }
}

/// Small volumes so a few MiB of data span several of them.
pub(crate) fn small_shape() -> VolumeShape {
    VolumeShape {
        volume_plaintext_len: 1 << 20,
        part_len: 5 << 20,
        parts_in_flight: 2,
    }
}

/// Back up into a new snapshot in small volumes, default policy and prices.
pub(crate) fn backup_options() -> BackupOptions {
    BackupOptions {
        shape: small_shape(),
        ..BackupOptions::default()
    }
}

/// Backups in 3 MiB volumes (parts of S3's smallest size, two in flight), never
/// consolidated: the chains the restore and verify tests read back.
pub(crate) fn three_mib_volumes() -> BackupOptions {
    BackupOptions {
        shape: VolumeShape {
            volume_plaintext_len: 3 << 20,
            part_len: 5 << 20,
            parts_in_flight: 2,
        },
        policy: zib_engine::planner::Policy {
            consolidation: zib_engine::planner::ConsolidationMode::Never,
            ..zib_engine::planner::Policy::default()
        },
        ..BackupOptions::default()
    }
}

/// A Deep Archive repository on the memory backend, every request counted below the
/// engine, on a fake clock.
pub(crate) struct MemoryRepository {
    pub(crate) clock: FakeClock,
    pub(crate) memory: Arc<MemoryBackend>,
    pub(crate) counting: Counting<Arc<MemoryBackend>>,
    /// Its own state directory (kept alive with it).
    pub(crate) state: tempfile::TempDir,
    pub(crate) repository: Repository,
}

/// Initialises a [`MemoryRepository`] under `prefix`, on a backend configured by
/// `config`, with the clock in the middle of a month (so "this month" has a part left).
pub(crate) async fn memory_repository(
    prefix: &str,
    passphrase: &str,
    config: MemoryConfig,
) -> MemoryRepository {
    let clock =
        FakeClock::new(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000));
    let memory = Arc::new(MemoryBackend::new(config, Arc::new(clock.clone())));
    let counting = Counting::new(memory.clone());
    let state = tempfile::tempdir().unwrap();
    let location = Location::new(Arc::new(counting.clone()), prefix).unwrap();
    let (repository, _) = Repository::init(
        &location,
        &Passphrase::new(passphrase.into()),
        &fast_init(),
        host_at(state.path(), &clock),
    )
    .await
    .unwrap();
    MemoryRepository {
        clock,
        memory,
        counting,
        state,
        repository,
    }
}

/// A state directory for this test process (tests that resume use their own).
pub(crate) fn test_state_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// This test process's host on `clock`.
pub(crate) fn host(clock: &FakeClock) -> Host {
    Host::new(test_state_dir()).with_clock(Arc::new(clock.clone()))
}

/// A host keeping its state in `state_dir`, on `clock`.
pub(crate) fn host_at(state_dir: &Path, clock: &FakeClock) -> Host {
    Host::new(state_dir).with_clock(Arc::new(clock.clone()))
}

/// `backend` under `prefix`.
pub(crate) fn location(backend: &Arc<dyn StorageBackend>, prefix: &str) -> Location {
    Location::new(backend.clone(), prefix).unwrap()
}

/// How to reach `bucket` on the moto server.
pub(crate) fn s3_config(moto: &MotoServer, bucket: &str) -> S3Config {
    s3_config_at(&moto.endpoint(), bucket)
}

/// How to reach `bucket` on a moto server at `endpoint` (or a proxy in front of it).
pub(crate) fn s3_config_at(endpoint: &str, bucket: &str) -> S3Config {
    let mut config = S3Config::new(bucket);
    config.region = Some("us-east-1".to_owned());
    config.endpoint_url = Some(endpoint.to_owned());
    config.credentials = Some(StaticCredentials {
        access_key_id: "test".to_owned(),
        secret_access_key: "test".to_owned(),
    });
    config
}

/// A fresh bucket on `moto` and an S3 backend for it.
pub(crate) async fn s3_on_moto(moto: &MotoServer) -> (String, Arc<dyn StorageBackend>) {
    let bucket = moto.create_bucket().await;
    let backend = Arc::new(S3Backend::connect(&s3_config(moto, &bucket)).await.unwrap());
    (bucket, backend)
}

/// The backup an outcome committed; a test expecting one fails when it was up to date.
pub(crate) fn committed(outcome: BackupOutcome) -> CommittedBackup {
    match outcome {
        BackupOutcome::Committed(committed) => *committed,
        BackupOutcome::UpToDate { decision } => {
            panic!("expected a backup, got up to date: {}", decision.reason)
        }
    }
}

/// A new repository in a temporary local directory, on a fake clock.
pub(crate) struct LocalRepository {
    /// Keeps the directory alive for the test.
    pub(crate) dir: tempfile::TempDir,
    pub(crate) clock: FakeClock,
    pub(crate) repository: Arc<Repository>,
}

/// Initialises a repository (Deep Archive, cheap scrypt) in a fresh temporary directory.
pub(crate) async fn local_dir_repository(passphrase: &str) -> LocalRepository {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(std::time::SystemTime::now());
    let backend: Arc<dyn StorageBackend> = Arc::new(
        zib_engine::storage::local_dir::LocalDirBackend::open(dir.path(), Arc::new(clock.clone()))
            .unwrap(),
    );
    let (repository, _) = Repository::init(
        &location(&backend, ""),
        &Passphrase::new(passphrase.into()),
        &fast_init(),
        host(&clock),
    )
    .await
    .unwrap();
    LocalRepository {
        dir,
        clock,
        repository: Arc::new(repository),
    }
}

/// A snapshot source seen through: every file of a receive target is hashed just before
/// the target is discarded (what a restore drill restored, byte for byte, before it is
/// thrown away), and the n-th receive can be made to fail or to hang.
pub(crate) struct Inspecting<S> {
    pub(crate) inner: S,
    /// Where a dataset's files are, if it exists and is mounted.
    mountpoint: fn(&S, &DatasetName) -> Option<PathBuf>,
    receives: AtomicUsize,
    fail_receive: AtomicUsize,
    /// The receive that hangs, and the file it creates once it hangs.
    hang_receive: Mutex<Option<(usize, PathBuf)>>,
    discarded: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl<S: SnapshotSource> Inspecting<S> {
    pub(crate) fn new(inner: S, mountpoint: fn(&S, &DatasetName) -> Option<PathBuf>) -> Self {
        Self {
            inner,
            mountpoint,
            receives: AtomicUsize::new(0),
            fail_receive: AtomicUsize::new(0),
            hang_receive: Mutex::default(),
            discarded: Mutex::default(),
        }
    }

    /// The `n`-th receive from now on (1-based) gets half its stream and then nothing
    /// more, and `marker` is created: a receive in progress when its process dies.
    pub(crate) fn hang_receive(&self, n: usize, marker: PathBuf) {
        *self.hang_receive.lock().unwrap() = Some((self.receives() + n, marker));
    }

    /// The `n`-th receive from now on (1-based) fails, after reading its whole stream.
    pub(crate) fn fail_receive(&self, n: usize) {
        self.fail_receive
            .store(self.receives() + n, Ordering::SeqCst);
    }

    /// Receives started so far.
    pub(crate) fn receives(&self) -> usize {
        self.receives.load(Ordering::SeqCst)
    }

    /// Every file (path → SHA-256) `target` held when it was discarded.
    pub(crate) fn discarded(&self, target: &DatasetName) -> Option<BTreeMap<String, String>> {
        self.discarded.lock().unwrap().get(target.as_str()).cloned()
    }
}

#[async_trait]
impl<S: SnapshotSource> ForwardingSource for Inspecting<S> {
    fn inner(&self) -> &dyn SnapshotSource {
        &self.inner
    }

    async fn receive(
        &self,
        target: &DatasetName,
        stream: ReceiveStream,
        options: &ReceiveOptions,
    ) -> zib_engine::snapshot_source::Result<SnapshotInfo> {
        let number = self.receives.fetch_add(1, Ordering::SeqCst) + 1;
        if number == self.fail_receive.load(Ordering::SeqCst) {
            // Read the whole stream, then fail like a full pool.
            use futures::StreamExt;
            let mut stream = stream;
            while stream.next().await.is_some() {}
            return Err(zib_engine::snapshot_source::Error::ReceiveIncomplete {
                target: target.to_string(),
                detail: "injected failure (a full pool)".to_owned(),
            });
        }
        let hang = self.hang_receive.lock().unwrap().clone();
        if let Some((_, marker)) = hang.filter(|(at, _)| *at == number) {
            // The whole stream, then half of it fed and the rest withheld forever.
            use futures::StreamExt;
            let chunks: Vec<bytes::Bytes> = stream.map(|chunk| chunk.unwrap()).collect().await;
            let whole: Vec<u8> = chunks.concat();
            let half = bytes::Bytes::from(whole[..whole.len() / 2].to_vec());
            let hanging = futures::stream::iter([Ok(half)])
                .chain(futures::stream::once(async move {
                    std::fs::write(&marker, b"hanging").unwrap();
                    std::future::pending::<std::io::Result<bytes::Bytes>>().await
                }))
                .boxed();
            return self.inner.receive(target, hanging, options).await;
        }
        self.inner.receive(target, stream, options).await
    }

    async fn discard_target(
        &self,
        target: &DatasetName,
    ) -> zib_engine::snapshot_source::Result<()> {
        if let Some(dir) = (self.mountpoint)(&self.inner, target) {
            let files = zib_test_utils::data::hash_tree(&dir).unwrap();
            self.discarded
                .lock()
                .unwrap()
                .insert(target.as_str().to_owned(), files);
        }
        self.inner.discard_target(target).await
    }
}
