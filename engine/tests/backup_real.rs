//! The backup pipeline end to end with real components: a zfs-fuse pool and a moto S3
//! server (Deep Archive semantics, RestoreObject), the stored bytes proven by receiving
//! them back and comparing every file.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::snapshot_source::{
    ForwardingSource, SendRequest, SendStream, SnapshotName, SnapshotSource,
};
use zib_engine::storage::counting::Counting;
use zib_engine::storage::s3::S3Backend;
use zib_engine::storage::{
    ByteRange, Operation, RestoreTier, StorageBackend, StorageBackendExt, StorageClass,
};
use zib_engine::{
    BackupKind, BackupOptions, BackupOutcome, Error, FakeClock, NoProgress, Passphrase, Repository,
    SnapshotChoice,
};
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names};
use zib_test_utils::moto::MotoServer;
use zib_test_utils::zfs::ZfsPool;

use common::{backup_options, committed, fast_init, host, location, s3_config, s3_on_moto};

const MARKER: &[u8] = b"ZIB-PLAINTEXT-MARKER-7f3a9c";
const PASSPHRASE: &str = "a long family passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zfs_full_then_incremental_to_moto_restores_identical_files() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let (_, backend) = s3_on_moto(&moto).await;
    let clock = FakeClock::new(SystemTime::now());

    let dataset = pool.create_dataset("family photos");
    let mountpoint = pool.mountpoint(&dataset);
    write_tree(&mountpoint, 1, Names::Ascii).unwrap();
    std::fs::write(mountpoint.join("marker.txt"), MARKER.repeat(100)).unwrap();

    let (repository, _) = Repository::init(
        &location(&backend, "zib"),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(&clock),
    )
    .await
    .unwrap();
    let repository = Arc::new(repository);
    let source = ZfsSource::new();

    let first = committed(
        repository
            .backup(&source, &dataset, &backup_options(), &NoProgress)
            .await
            .unwrap(),
    );
    assert_eq!(first.manifest.kind, BackupKind::Full);
    assert!(
        first.manifest.volume_count >= 2,
        "{} volumes",
        first.manifest.volume_count
    );
    assert!(first.manifest.snapshot_created_by_zib);
    assert!(
        first.protection.is_some(),
        "zfs-fuse supports holds: {:?}",
        first.warnings
    );
    // The leak check below proves something only if the marker is in what zib was given
    // to encrypt: the raw send stream of the first backup's snapshot.
    let mut raw = Vec::new();
    let mut send = source
        .send(&SendRequest::full(
            dataset.clone(),
            SnapshotName::zfs(&first.manifest.snapshot_name).unwrap(),
        ))
        .await
        .unwrap();
    while let Some(chunk) = send.next().await {
        raw.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(raw.len() as u64, first.manifest.stream_len);
    assert!(
        raw.windows(MARKER.len()).any(|w| w == MARKER),
        "the plaintext marker is not in the raw send stream: the leak check would prove nothing"
    );

    modify_tree(&mountpoint, 2).unwrap();
    clock.advance(Duration::from_secs(3600));
    let second = committed(
        repository
            .backup(&source, &dataset, &backup_options(), &NoProgress)
            .await
            .unwrap(),
    );
    match &second.manifest.kind {
        BackupKind::Incremental { base_backup, .. } => {
            assert_eq!(*base_backup, first.manifest.backup_id)
        }
        BackupKind::Full => panic!(
            "the second backup should be incremental: {}",
            second.decision.reason
        ),
    }
    assert!(second.manifest.stream_len < first.manifest.stream_len);
    let expected = hash_tree(&mountpoint).unwrap();

    // Nothing new: up to date.
    let third = repository
        .backup(
            &source,
            &dataset,
            &BackupOptions {
                snapshot: SnapshotChoice::Existing(
                    SnapshotName::zfs(&second.manifest.snapshot_name).unwrap(),
                ),
                ..backup_options()
            },
            &NoProgress,
        )
        .await
        .unwrap();
    assert!(matches!(third, BackupOutcome::UpToDate { .. }));

    // The catalog from the bucket alone (a fresh open: no local state).
    let reopened = Arc::new(
        Repository::open(
            &location(&backend, "zib"),
            &Passphrase::new(PASSPHRASE.into()),
            host(&clock),
        )
        .await
        .unwrap(),
    );
    let catalog = reopened.catalog().await.unwrap();
    let dataset_id = catalog.dataset_named(dataset.as_str()).unwrap();
    let backups = catalog.backups(dataset_id);
    assert_eq!(backups.len(), 2);
    assert_eq!(backups[0].manifest, first.manifest);
    assert_eq!(backups[1].manifest, second.manifest);
    assert!(
        catalog.leftovers.orphan_volumes.is_empty()
            && catalog.leftovers.incomplete_uploads.is_empty()
    );

    // Every object but the README, the keyring and the decoder kit is in Deep Archive;
    // after a restore request, none of their bytes shows the plaintext marker.
    let objects = backend.list_all("zib/").await.unwrap();
    for entry in &objects {
        let key = entry.key.as_str();
        if key == "zib/README.txt" || key == "zib/keyring" || key.starts_with("zib/kit/") {
            assert_eq!(entry.storage_class, StorageClass::Standard, "{key}");
            continue;
        }
        assert_eq!(entry.storage_class, StorageClass::DeepArchive, "{key}");
        let archived = backend.get(&entry.key, ByteRange::full()).await;
        assert!(
            matches!(
                archived,
                Err(zib_engine::storage::Error::NotRestored { .. })
            ),
            "{key} must refuse reads before a restore"
        );
        backend
            .request_restore(&entry.key, 1, RestoreTier::Bulk)
            .await
            .unwrap();
        let bytes = backend
            .get_bytes(&entry.key, ByteRange::full())
            .await
            .unwrap();
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "{key} leaks plaintext"
        );
    }

    // Receive the newest chain into a new dataset: identical files.
    let target = pool.dataset("restored");
    let received = reopened
        .receive_chain(
            &catalog,
            dataset_id,
            second.manifest.backup_id,
            &source,
            &target,
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(hash_tree(&pool.mountpoint(&target)).unwrap(), expected);
}

/// A source whose `zfs send` is killed with SIGKILL (by [`KillAfterFirstPart`]) once the
/// backup stored its first part: a real failed send, not a simulated error. The stream
/// is passed on untouched, so what the killed run stored is a true prefix of the
/// snapshot's stream, which the next run can resume.
struct KilledSend(ZfsSource, Arc<KillAfterFirstPart>);

/// Progress that kills the send process when the first part has been uploaded.
#[derive(Default)]
struct KillAfterFirstPart {
    pid: std::sync::Mutex<Option<u32>>,
    killed: std::sync::atomic::AtomicBool,
}

impl zib_engine::Progress for KillAfterFirstPart {
    fn part_uploaded(&self, _bytes: u64) {
        if self.killed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let pid = self.pid.lock().unwrap().expect("the send has started");
        let status = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[async_trait]
impl ForwardingSource for KilledSend {
    fn inner(&self) -> &dyn SnapshotSource {
        &self.0
    }

    async fn send(&self, request: &SendRequest) -> zib_engine::snapshot_source::Result<SendStream> {
        let stream = self.0.send(request).await?;
        *self.1.pid.lock().unwrap() = Some(stream.process_id().expect("a running send has a pid"));
        Ok(stream)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_zfs_send_commits_nothing_and_the_next_run_resumes_it() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let (_, backend) = s3_on_moto(&moto).await;
    let clock = FakeClock::new(SystemTime::now());
    let dataset = pool.create_dataset("photos");
    write_tree(&pool.mountpoint(&dataset), 3, Names::Ascii).unwrap();
    let (repository, _) = Repository::init(
        &location(&backend, ""),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(&clock),
    )
    .await
    .unwrap();

    // Both runs go through request counters, to see what the second sends again.
    let counted = |counting: &Counting<Arc<dyn StorageBackend>>| {
        let backend: Arc<dyn StorageBackend> = Arc::new(counting.clone());
        location(&backend, "")
    };
    let killed_run = Counting::new(backend.clone());
    let killed_repository = Repository::open(
        &counted(&killed_run),
        &Passphrase::new(PASSPHRASE.into()),
        host(&clock),
    )
    .await
    .unwrap();
    let killer = Arc::new(KillAfterFirstPart::default());
    let result = killed_repository
        .backup(
            &KilledSend(ZfsSource::new(), killer.clone()),
            &dataset,
            &backup_options(),
            killer.as_ref(),
        )
        .await;
    assert!(
        killer.killed.load(std::sync::atomic::Ordering::SeqCst),
        "the send was never killed: {result:?}"
    );
    let error = result.expect_err("a killed send must fail the backup");
    assert!(matches!(error, Error::Source(_)), "{error}");

    let catalog = repository.catalog().await.unwrap();
    assert!(catalog.datasets.is_empty(), "nothing may be committed");
    assert!(backend.list_all("manifests/").await.unwrap().is_empty());
    // What was uploaded is kept for the next run.
    let stored = killed_run.count(Operation::CompleteMultipart);
    let started = killed_run.count(Operation::CreateMultipart);
    assert!(stored >= 1, "the killed run stored its first volume");

    // A plain source resumes that same backup and commits it, sending only what the
    // killed run did not store.
    let source = ZfsSource::new();
    let resuming_run = Counting::new(backend.clone());
    let resuming = Repository::open(
        &counted(&resuming_run),
        &Passphrase::new(PASSPHRASE.into()),
        host(&clock),
    )
    .await
    .unwrap();
    let resumed = committed(
        resuming
            .backup(&source, &dataset, &backup_options(), &NoProgress)
            .await
            .unwrap(),
    );
    assert!(resumed.resumed, "the next run continues the failed backup");
    // Volumes are 1 MiB, parts 5 MiB: one part per volume, sent when the volume is
    // complete. The stored volumes are not sent again, and the upload the killed run
    // started for the next one is continued, not started anew.
    let volumes = u64::from(resumed.manifest.volume_count);
    assert_eq!(
        resuming_run.count(Operation::UploadPart),
        volumes - stored,
        "parts sent by the resumed run ({volumes} volumes, {stored} stored before the kill)"
    );
    assert_eq!(
        resuming_run.count(Operation::CreateMultipart),
        volumes - started,
        "uploads started by the resumed run ({volumes} volumes, {started} started before)"
    );
    assert_eq!(
        (
            resuming_run.count(Operation::AbortMultipart),
            resuming_run.count(Operation::Delete)
        ),
        (0, 0),
        "nothing stored by the killed run was discarded"
    );
    let catalog = repository.catalog().await.unwrap();
    assert!(
        catalog.leftovers.orphan_volumes.is_empty()
            && catalog.leftovers.incomplete_uploads.is_empty(),
        "{:?}",
        catalog.leftovers
    );
    for entry in backend.list_all("").await.unwrap() {
        let key = entry.key.as_str();
        if !(key.starts_with("volumes/") || key.starts_with("manifests/")) {
            continue;
        }
        backend
            .request_restore(&entry.key, 1, RestoreTier::Bulk)
            .await
            .unwrap();
    }
    let dataset_id = catalog.dataset_named(dataset.as_str()).unwrap();
    let target = pool.dataset("restored");
    Arc::new(repository)
        .receive_chain(
            &catalog,
            dataset_id,
            resumed.manifest.backup_id,
            &source,
            &target,
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(
        hash_tree(&pool.mountpoint(&target)).unwrap(),
        hash_tree(&pool.mountpoint(&dataset)).unwrap()
    );
}

#[tokio::test]
async fn wrong_passphrase_and_unreachable_bucket_are_clear_errors() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let (bucket, backend) = s3_on_moto(&moto).await;
    let clock = FakeClock::new(SystemTime::now());
    Repository::init(
        &location(&backend, ""),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(&clock),
    )
    .await
    .unwrap();
    let wrong = Repository::open(
        &location(&backend, ""),
        &Passphrase::new("not it".into()),
        host(&clock),
    )
    .await;
    let error = wrong.expect_err("wrong passphrase");
    assert!(
        matches!(
            error,
            Error::Crypto(zib_engine::crypto::Error::WrongPassphrase)
        ),
        "{error}"
    );
    assert!(error.to_string().contains("wrong passphrase"), "{error}");

    // Nothing listens on this port.
    let closed = zib_test_utils::moto::free_port();
    let mut config = s3_config(&moto, &bucket);
    config.endpoint_url = Some(format!("http://127.0.0.1:{closed}"));
    let unreachable: Arc<dyn StorageBackend> = Arc::new(S3Backend::connect(&config).await.unwrap());
    let error = Repository::open(
        &location(&unreachable, ""),
        &Passphrase::new(PASSPHRASE.into()),
        host(&clock),
    )
    .await
    .expect_err("nothing listens there");
    assert!(matches!(error, Error::Storage(_)), "{error}");
    let text = error.to_string();
    assert!(
        !text.contains(PASSPHRASE),
        "errors never carry secrets: {text}"
    );
    assert!(
        text.contains("127.0.0.1") || text.to_lowercase().contains("connect"),
        "the error says what failed: {text}"
    );
}
