//! The backup, resume and prune logic through the public API, on the in-memory snapshot
//! source and the in-memory backend: plain `cargo test`, no root, no real components.
//! (The same logic runs on zfs-fuse, BTRFS and moto in the `*_real` tests.)

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use zib_engine::crypto::KdfParams;
use zib_engine::snapshot_source::{Protection, SnapshotName, SnapshotSource};
use zib_engine::storage::counting::Counting;
use zib_engine::storage::faults::{Fault, FaultInjecting, FaultRule, Trigger};
use zib_engine::storage::memory::{MemoryBackend, MemoryConfig};
use zib_engine::storage::retry::{RetryPolicy, Retrying, Sleeper};
use zib_engine::storage::{
    ByteRange, Forwarding, ObjectKey, Operation, PartInfo, Result as StorageResult, StorageBackend,
    StorageBackendExt, StorageClass, UploadId, WriteOptions,
};
use zib_engine::{
    BackupKind, BackupOptions, BackupOutcome, CleanupOptions, DatasetName, Error, FakeClock, Host,
    InitOptions, NoProgress, Passphrase, Progress, Repository, SnapshotChoice, VolumeShape,
};
use zib_test_utils::memory_source::{MemorySource, Script};

use common::{committed, location};

const PASSPHRASE: &str = "the family's passphrase";
const MIB: usize = 1 << 20;

/// 3 MiB volumes of 5 MiB parts: a volume is one part, so part and volume counts agree.
fn shape() -> VolumeShape {
    VolumeShape {
        volume_plaintext_len: 3 * MIB as u64,
        part_len: 5 * MIB as u64,
        parts_in_flight: 2,
    }
}

/// Small volumes; no consolidation (this source's exact size estimates would let the
/// planner weigh fresh fulls against a megabyte of waste, which is noise here).
fn options() -> BackupOptions {
    BackupOptions {
        shape: shape(),
        policy: zib_engine::planner::Policy {
            consolidation: zib_engine::planner::ConsolidationMode::Never,
            ..zib_engine::planner::Policy::default()
        },
        ..BackupOptions::default()
    }
}

struct Setup {
    clock: FakeClock,
    memory: Arc<MemoryBackend>,
    state: tempfile::TempDir,
    repository: Repository,
    source: MemorySource,
    dataset: DatasetName,
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    zib_test_utils::data::TestRng::new(seed).bytes(len)
}

/// A STANDARD-class repository (readable at once) on the in-memory backend, and a
/// dataset holding `megabytes` of photos.
async fn setup(megabytes: usize) -> Setup {
    let clock = FakeClock::new(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let memory = Arc::new(MemoryBackend::new(
        MemoryConfig::default(),
        Arc::new(clock.clone()),
    ));
    let state = tempfile::tempdir().unwrap();
    let (repository, _) = Repository::init(
        &location(&(memory.clone() as Arc<dyn StorageBackend>), "family"),
        &Passphrase::new(PASSPHRASE.into()),
        &InitOptions {
            archive_class: StorageClass::Standard,
            kdf: KdfParams::new(10, 8, 1).unwrap(),
        },
        host(&state, &clock),
    )
    .await
    .unwrap();
    let source = MemorySource::new().with_clock(Arc::new(clock.clone()));
    let dataset = DatasetName::zfs("tank/photos").unwrap();
    source.create_dataset(&dataset);
    for file in 0..megabytes {
        source.write_file(
            &dataset,
            &format!("photo {file}.jpg"),
            &bytes(MIB, file as u64),
        );
    }
    Setup {
        clock,
        memory,
        state,
        repository,
        source,
        dataset,
    }
}

fn host(state: &tempfile::TempDir, clock: &FakeClock) -> Host {
    Host::new(state.path()).with_clock(Arc::new(clock.clone()))
}

impl Setup {
    /// The same repository through `backend` (a decorator around the same objects).
    async fn through(&self, backend: Arc<dyn StorageBackend>) -> Repository {
        Repository::open(
            &location(&backend, "family"),
            &Passphrase::new(PASSPHRASE.into()),
            host(&self.state, &self.clock),
        )
        .await
        .unwrap()
    }

    async fn backup(&self, repository: &Repository) -> zib_engine::Result<BackupOutcome> {
        repository
            .backup(&self.source, &self.dataset, &options(), &NoProgress)
            .await
    }

    /// Receives the newest backup's chain into a new dataset and returns its name.
    async fn restore_newest(&self) -> DatasetName {
        let repository = Arc::new(self.through(self.memory.clone()).await);
        let catalog = repository.catalog().await.unwrap();
        let dataset_id = catalog.dataset_named(self.dataset.as_str()).unwrap();
        let newest = catalog
            .backups(dataset_id)
            .last()
            .unwrap()
            .manifest
            .backup_id;
        let target = DatasetName::zfs("tank/restored").unwrap();
        repository
            .receive_chain(
                &catalog,
                dataset_id,
                newest,
                &self.source,
                &target,
                &NoProgress,
            )
            .await
            .unwrap();
        target
    }

    fn assert_restored_equal(&self, target: &DatasetName) {
        let files = |dataset: &DatasetName| {
            zib_test_utils::data::hash_tree(&self.source.mountpoint(dataset).unwrap()).unwrap()
        };
        assert_eq!(files(target), files(&self.dataset));
    }
}

/// Everything progress reports, in order.
#[derive(Default)]
struct Recorded {
    phases: Mutex<Vec<String>>,
    streamed: AtomicU64,
    uploaded: Mutex<Vec<u64>>,
    skipped: AtomicU64,
}

impl Progress for Recorded {
    fn phase(&self, description: &str) {
        self.phases.lock().unwrap().push(description.to_owned());
    }
    fn stream_bytes(&self, bytes: u64, _expected: Option<u64>) {
        self.streamed.fetch_add(bytes, Ordering::SeqCst);
    }
    fn part_uploaded(&self, bytes: u64) {
        self.uploaded.lock().unwrap().push(bytes);
    }
    fn part_skipped(&self, bytes: u64) {
        self.skipped.fetch_add(bytes, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_full_then_an_incremental_restore_the_dataset_and_report_what_they_sent() {
    let setup = setup(7).await;
    let progress = Recorded::default();
    let first = committed(
        setup
            .repository
            .backup(&setup.source, &setup.dataset, &options(), &progress)
            .await
            .unwrap(),
    );
    assert_eq!(first.manifest.kind, BackupKind::Full);
    assert!(!first.resumed);
    // 7 MiB of files and the stream's own bytes: 3 volumes of one part each.
    assert_eq!(first.manifest.volume_count, 3);
    assert_eq!(first.transfer.parts_sent, 3);
    assert_eq!(first.transfer.bytes_sent, first.manifest.stored_len);
    assert_eq!(first.transfer.parts_skipped, 0);
    // Progress: each part as it was confirmed, each stream byte once, each volume named.
    let uploaded = progress.uploaded.lock().unwrap().clone();
    assert_eq!(uploaded.len(), 3, "{uploaded:?}");
    assert_eq!(uploaded.iter().sum::<u64>(), first.manifest.stored_len);
    assert_eq!(
        progress.streamed.load(Ordering::SeqCst),
        first.manifest.stream_len
    );
    let phases = progress.phases.lock().unwrap().clone();
    for volume in ["volume 1", "volume 2", "volume 3"] {
        assert!(phases.iter().any(|phase| phase == volume), "{phases:?}");
    }
    assert!(
        phases.iter().any(|phase| phase == "committing"),
        "{phases:?}"
    );
    assert!(
        matches!(first.protection, Some(Protection::Hold { .. })),
        "{:?}",
        first.protection
    );

    setup
        .source
        .write_file(&setup.dataset, "new album/IMG_1.jpg", &bytes(MIB / 2, 99));
    setup.source.remove_file(&setup.dataset, "photo 0.jpg");
    setup.clock.advance(Duration::from_secs(3600));
    let second = committed(setup.backup(&setup.repository).await.unwrap());
    assert!(
        matches!(&second.manifest.kind, BackupKind::Incremental { base_backup, .. } if *base_backup == first.manifest.backup_id),
        "{}",
        second.decision.reason
    );
    assert!(
        second.manifest.stream_len < MIB as u64,
        "only the change travels"
    );
    // The first snapshot zib made is pruned; the newest is the held base.
    let names: Vec<String> = setup
        .source
        .list_snapshots(&setup.dataset)
        .await
        .unwrap()
        .into_iter()
        .map(|snapshot| snapshot.name.to_string())
        .collect();
    assert_eq!(names, vec![second.manifest.snapshot_name.clone()]);

    let target = setup.restore_newest().await;
    setup.assert_restored_equal(&target);
}

/// A snapshot pruned here keeps its name in its chain: a backup taken when the clock has
/// stepped back to that second gets another name, and the chain still restores (one
/// name twice in a chain cannot be received).
#[tokio::test]
async fn a_snapshot_name_already_in_the_chain_is_not_taken_again() {
    let setup = setup(2).await;
    let started = zib_engine::Clock::now(&setup.clock);
    let full = committed(setup.backup(&setup.repository).await.unwrap());
    setup.clock.advance(Duration::from_secs(60));
    setup
        .source
        .write_file(&setup.dataset, "later.jpg", &bytes(MIB, 90));
    let incremental = committed(setup.backup(&setup.repository).await.unwrap());
    assert!(
        incremental
            .pruned
            .destroyed
            .iter()
            .any(|name| name.as_str() == full.manifest.snapshot_name),
        "the full's snapshot is pruned here: {:?}",
        incremental.pruned
    );
    setup.clock.set(started);
    setup
        .source
        .write_file(&setup.dataset, "again.jpg", &bytes(MIB, 91));
    let again = committed(setup.backup(&setup.repository).await.unwrap());
    assert_eq!(
        again.manifest.snapshot_name,
        format!("{}-2", full.manifest.snapshot_name)
    );
    let target = setup.restore_newest().await;
    setup.assert_restored_equal(&target);
}

#[tokio::test]
async fn each_fact_about_the_source_is_asked_once_per_run() {
    let setup = setup(2).await;
    committed(setup.backup(&setup.repository).await.unwrap());
    setup
        .source
        .write_file(&setup.dataset, "more.jpg", &bytes(1000, 5));
    setup.clock.advance(Duration::from_secs(60));
    let before = |method| setup.source.calls(method);
    let (capabilities, listed, estimates) = (
        before("capabilities"),
        before("list_snapshots"),
        before("estimate_send_size"),
    );
    committed(setup.backup(&setup.repository).await.unwrap());
    assert_eq!(setup.source.calls("capabilities") - capabilities, 1);
    assert_eq!(setup.source.calls("list_snapshots") - listed, 1);
    // The full and the incremental from the planner's base: one each, never repeated
    // for the send.
    assert_eq!(setup.source.calls("estimate_send_size") - estimates, 2);
    // No bookmarks on this source: never asked for.
    assert_eq!(setup.source.calls("list_bookmarks"), 0);
}

#[tokio::test]
async fn an_unknown_dataset_is_a_clear_error_and_leaves_no_state_behind() {
    let setup = setup(1).await;
    let missing = DatasetName::zfs("tank/does not exist").unwrap();
    let error = setup
        .repository
        .backup(&setup.source, &missing, &options(), &NoProgress)
        .await
        .expect_err("no such dataset");
    assert!(
        matches!(
            &error,
            Error::Source(zib_engine::snapshot_source::Error::DatasetNotFound { .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("tank/does not exist"), "{error}");
    let left: Vec<_> = walk(setup.state.path());
    assert!(left.is_empty(), "the state directory holds {left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_backup_stopped_by_the_storage_resumes_without_resending_confirmed_parts() {
    let setup = setup(10).await;
    // The 3rd part upload is refused (after two were confirmed).
    let faulty = setup
        .through(Arc::new(FaultInjecting::new(
            setup.memory.clone(),
            vec![FaultRule {
                operation: Some(Operation::UploadPart),
                trigger: Trigger::Nth(3),
                fault: Fault::PermissionDenied,
            }],
            1,
        )))
        .await;
    let error = setup.backup(&faulty).await.expect_err("the fault stops it");
    assert!(matches!(error, Error::Storage(_)), "{error}");
    assert!(setup
        .repository
        .catalog()
        .await
        .unwrap()
        .datasets
        .is_empty());

    let counting = Counting::new(setup.memory.clone());
    let repository = setup.through(Arc::new(counting.clone())).await;
    let progress = Recorded::default();
    let resumed = committed(
        repository
            .backup(&setup.source, &setup.dataset, &options(), &progress)
            .await
            .unwrap(),
    );
    assert!(resumed.resumed, "{}", resumed.decision.reason);
    assert!(
        resumed.transfer.parts_skipped >= 1,
        "{:?}",
        resumed.transfer
    );
    assert_eq!(
        resumed.transfer.parts_sent + resumed.transfer.parts_skipped,
        u64::from(resumed.manifest.volume_count)
    );
    assert_eq!(
        counting.count(Operation::UploadPart),
        resumed.transfer.parts_sent,
        "only the parts reported as sent went up"
    );
    assert_eq!(
        resumed.transfer.bytes_sent + resumed.transfer.bytes_skipped,
        resumed.manifest.stored_len
    );
    assert_eq!(
        progress.skipped.load(Ordering::SeqCst),
        resumed.transfer.bytes_skipped
    );
    let target = setup.restore_newest().await;
    setup.assert_restored_equal(&target);
}

#[tokio::test]
async fn a_send_that_dies_midway_commits_nothing_and_the_next_run_finishes_it() {
    let setup = setup(10).await;
    setup.source.script(Script::SendFails {
        after_bytes: 7 * MIB as u64,
    });
    let error = setup
        .backup(&setup.repository)
        .await
        .expect_err("a failed send fails the backup");
    assert!(
        matches!(
            &error,
            Error::Source(zib_engine::snapshot_source::Error::CommandFailed { .. })
        ),
        "{error}"
    );
    let catalog = setup.repository.catalog().await.unwrap();
    assert!(catalog.datasets.is_empty(), "nothing committed");
    let again = committed(setup.backup(&setup.repository).await.unwrap());
    assert!(again.resumed);
    // The two volumes the dead send had completed were checked, not sent again.
    assert_eq!(again.transfer.parts_skipped, 2, "{:?}", again.transfer);
    let target = setup.restore_newest().await;
    setup.assert_restored_equal(&target);
}

#[tokio::test]
async fn a_stream_that_changed_between_runs_is_stored_as_the_new_one() {
    let setup = setup(10).await;
    setup.source.script(Script::SendFails {
        after_bytes: 8 * MIB as u64,
    });
    setup.backup(&setup.repository).await.expect_err("killed");
    // The next send differs inside the first (completed) volume.
    setup.source.script(Script::SendDiffers { at: MIB as u64 });
    let changed = committed(setup.backup(&setup.repository).await.unwrap());
    assert!(changed.resumed);
    // The changed volume and everything after it went up again under fresh salts; the
    // stored stream is the one the last read produced, which here is the altered one:
    // the backup holds exactly what the source sent, never a mix.
    assert_eq!(changed.transfer.parts_skipped, 0, "{:?}", changed.transfer);
    let catalog = setup.repository.catalog().await.unwrap();
    assert_eq!(catalog.datasets.len(), 1);
    assert!(catalog.leftovers.incomplete_uploads.is_empty());
    assert!(catalog.leftovers.orphan_volumes.is_empty());
}

#[tokio::test]
async fn a_snapshot_that_vanished_is_discarded_and_a_new_backup_made() {
    let setup = setup(4).await;
    setup.source.script(Script::SnapshotVanishesOnSend);
    let error = setup
        .backup(&setup.repository)
        .await
        .expect_err("the snapshot vanished");
    assert!(
        matches!(
            &error,
            Error::Source(zib_engine::snapshot_source::Error::SnapshotNotFound { .. })
        ),
        "{error}"
    );
    setup.clock.advance(Duration::from_secs(60));
    let fresh = committed(setup.backup(&setup.repository).await.unwrap());
    assert!(
        !fresh.resumed,
        "the vanished snapshot's backup cannot be continued"
    );
    let target = setup.restore_newest().await;
    setup.assert_restored_equal(&target);
}

#[tokio::test]
async fn a_destroyed_base_continues_from_its_bookmark() {
    let mut setup = setup(3).await;
    setup.source = MemorySource::new()
        .with_bookmarks()
        .with_clock(Arc::new(setup.clock.clone()));
    setup.source.create_dataset(&setup.dataset);
    setup
        .source
        .write_file(&setup.dataset, "a.jpg", &bytes(MIB, 1));
    let hourly = SnapshotName::zfs("hourly-1").unwrap();
    setup
        .source
        .create_snapshot(&setup.dataset, &hourly, None)
        .await
        .unwrap();
    let first = committed(
        setup
            .repository
            .backup(
                &setup.source,
                &setup.dataset,
                &BackupOptions {
                    snapshot: SnapshotChoice::Existing(hourly.clone()),
                    ..options()
                },
                &NoProgress,
            )
            .await
            .unwrap(),
    );
    assert!(
        matches!(first.protection, Some(Protection::Bookmark { .. })),
        "{:?}",
        first.protection
    );
    // A snapshot rotation tool destroys the user's snapshot.
    setup
        .source
        .destroy_snapshot(&setup.dataset, &hourly)
        .await
        .unwrap();
    setup
        .source
        .write_file(&setup.dataset, "b.jpg", &bytes(MIB, 2));
    setup.clock.advance(Duration::from_secs(3600));
    let second = committed(setup.backup(&setup.repository).await.unwrap());
    assert!(
        matches!(&second.manifest.kind, BackupKind::Incremental { base_backup, .. } if *base_backup == first.manifest.backup_id),
        "{:?}: {}",
        second.manifest.kind,
        second.decision.reason
    );
    assert!(
        matches!(&second.pruned.released, Some(Protection::Bookmark { bookmark, .. }) if *bookmark == hourly),
        "{:?}",
        second.pruned
    );
    let target = setup.restore_newest().await;
    setup.assert_restored_equal(&target);
}

/// A backend whose part uploads never finish, counting those in progress.
#[derive(Debug)]
struct StallingParts {
    inner: Arc<MemoryBackend>,
    in_progress: Arc<AtomicU64>,
    started: Arc<AtomicU64>,
}

/// Decrements the count when the upload's future is dropped (cancelled).
struct InProgress(Arc<AtomicU64>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Forwarding for StallingParts {
    fn inner(&self) -> &dyn StorageBackend {
        &self.inner
    }

    async fn upload_part(
        &self,
        _key: &ObjectKey,
        _upload: &UploadId,
        _number: u32,
        _data: Bytes,
    ) -> StorageResult<PartInfo> {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        let _guard = InProgress(self.in_progress.clone());
        std::future::pending::<()>().await;
        unreachable!("a stalled part never finishes")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_backup_future_leaves_no_part_upload_running() {
    let setup = setup(20).await;
    let in_progress = Arc::new(AtomicU64::new(0));
    let started = Arc::new(AtomicU64::new(0));
    let stalling = setup
        .through(Arc::new(StallingParts {
            inner: setup.memory.clone(),
            in_progress: in_progress.clone(),
            started: started.clone(),
        }))
        .await;
    // Three parts per volume, two in flight.
    let options = BackupOptions {
        shape: VolumeShape {
            volume_plaintext_len: 12 * MIB as u64,
            ..shape()
        },
        ..options()
    };
    let backup = stalling.backup(&setup.source, &setup.dataset, &options, &NoProgress);
    // A caller's timeout (or Ctrl-C) while parts are uploading.
    let outcome = tokio::time::timeout(Duration::from_secs(2), backup).await;
    assert!(outcome.is_err(), "the stalled backup cannot finish");
    assert_eq!(
        started.load(Ordering::SeqCst),
        shape().parts_in_flight as u64,
        "the backup was mid-upload with its parts in flight"
    );
    // The part uploads were tasks of the dropped future: they are cancelled with it.
    for _ in 0..100 {
        if in_progress.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        in_progress.load(Ordering::SeqCst),
        0,
        "part uploads still running"
    );
}

/// Never waits: retries happen at once.
#[derive(Debug)]
struct NoWait;

#[async_trait]
impl Sleeper for NoWait {
    async fn sleep(&self, _duration: Duration) {}
}

#[tokio::test]
async fn a_lost_answer_to_create_multipart_leaves_no_upload_behind() {
    let setup = setup(7).await;
    // The first and third CreateMultipartUpload take effect but their answers are lost;
    // the retry layer then starts another upload of the same volume.
    let lossy = FaultInjecting::new(
        setup.memory.clone(),
        [1, 3]
            .into_iter()
            .map(|nth| FaultRule {
                operation: Some(Operation::CreateMultipart),
                trigger: Trigger::Nth(nth),
                fault: Fault::LostAnswer,
            })
            .collect(),
        1,
    );
    let retrying = Retrying::with_sleeper(lossy, RetryPolicy::default(), Arc::new(NoWait), 7);
    let repository = setup.through(Arc::new(retrying)).await;
    committed(setup.backup(&repository).await.unwrap());
    let uploads = setup.memory.list_multipart_uploads("").await.unwrap();
    assert!(uploads.is_empty(), "left behind: {uploads:?}");
}

#[tokio::test]
async fn a_committed_backups_stray_upload_is_removed_by_the_next_clean_up_whatever_its_age() {
    let setup = setup(4).await;
    let backup = committed(setup.backup(&setup.repository).await.unwrap());
    // A stray upload to the committed backup's first volume (a lost create answer that
    // was applied after the run looked).
    let key = ObjectKey::new(format!(
        "family/volumes/{}/{}/00000000",
        backup.manifest.dataset_id, backup.manifest.backup_id
    ))
    .unwrap();
    setup
        .memory
        .create_multipart(&key, &WriteOptions::new(StorageClass::Standard))
        .await
        .unwrap();
    // A dry run names it and leaves it.
    let dry = setup
        .repository
        .clean_up(&CleanupOptions {
            dry_run: true,
            ..CleanupOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(dry.aborted_uploads, vec![key.clone()]);
    assert_eq!(
        setup.memory.list_multipart_uploads("").await.unwrap().len(),
        1,
        "a dry run removed nothing"
    );
    let report = setup
        .repository
        .clean_up(&CleanupOptions::default())
        .await
        .unwrap();
    assert_eq!(report.aborted_uploads, vec![key]);
    assert!(setup
        .memory
        .list_multipart_uploads("")
        .await
        .unwrap()
        .is_empty());
    // The committed backup is whole.
    let target = setup.restore_newest().await;
    setup.assert_restored_equal(&target);
}

#[tokio::test]
async fn changing_the_passphrase_rewraps_the_keyring_and_survives_a_stop_between_its_writes() {
    let setup = setup(1).await;
    committed(setup.backup(&setup.repository).await.unwrap());
    let old = Passphrase::new(PASSPHRASE.into());
    let new = Passphrase::new("a new and longer passphrase".into());
    let archived = || async {
        setup
            .memory
            .list_all("family/keyring-archive/")
            .await
            .unwrap()
            .len()
    };
    assert_eq!(archived().await, 1);
    let open = |passphrase: &'static str| {
        let memory = setup.memory.clone();
        let clock = setup.clock.clone();
        let state = setup.state.path().to_owned();
        async move {
            Repository::open(
                &location(&(memory as Arc<dyn StorageBackend>), "family"),
                &Passphrase::new(passphrase.into()),
                Host::new(state).with_clock(Arc::new(clock)),
            )
            .await
        }
    };

    // Stopped between the two writes: the archived copy is written, the live keyring is
    // refused (as a process killed there would leave it).
    setup.clock.advance(Duration::from_secs(5));
    let interrupted = setup
        .through(Arc::new(FaultInjecting::new(
            setup.memory.clone(),
            vec![FaultRule {
                operation: Some(Operation::Put),
                trigger: Trigger::Nth(2),
                fault: Fault::Transient,
            }],
            1,
        )))
        .await;
    interrupted
        .change_passphrase(&old, &new, KdfParams::new(10, 8, 1).unwrap())
        .await
        .expect_err("the second write fails");
    assert_eq!(archived().await, 2, "the new copy went first");
    open(PASSPHRASE)
        .await
        .expect("the old passphrase still opens it");
    assert!(matches!(
        open("a new and longer passphrase").await,
        Err(Error::Crypto(zib_engine::crypto::Error::WrongPassphrase))
    ));

    // Run again: done.
    setup.clock.advance(Duration::from_secs(5));
    let change = setup
        .repository
        .change_passphrase(&old, &new, KdfParams::new(10, 8, 1).unwrap())
        .await
        .unwrap();
    assert_eq!(archived().await, 3);
    let reopened = open("a new and longer passphrase").await.unwrap();
    assert_eq!(reopened.id(), setup.repository.id());
    assert!(matches!(
        open(PASSPHRASE).await,
        Err(Error::Crypto(zib_engine::crypto::Error::WrongPassphrase))
    ));
    // The same data key: the backup made before still restores.
    let catalog = reopened.catalog().await.unwrap();
    assert_eq!(catalog.datasets.len(), 1);
    assert_eq!(
        change.keyring,
        setup
            .memory
            .get_bytes(
                &ObjectKey::new("family/keyring").unwrap(),
                ByteRange::full()
            )
            .await
            .unwrap()
            .to_vec()
    );
    // The wrong old passphrase changes nothing.
    let error = reopened
        .change_passphrase(&old, &new, KdfParams::new(10, 8, 1).unwrap())
        .await
        .expect_err("the old passphrase no longer opens it");
    assert!(
        matches!(
            error,
            Error::Crypto(zib_engine::crypto::Error::WrongPassphrase)
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_url_names_a_local_directory_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let location =
        zib_engine::Location::from_url(dir.path().to_str().unwrap(), &Default::default())
            .await
            .unwrap();
    assert_eq!(location.prefix(), "");
    assert!(
        format!("{:?}", location.backend()).contains("Retrying"),
        "a location from a URL retries: {:?}",
        location.backend()
    );
    let missing = dir.path().join("not here");
    let error = zib_engine::Location::from_url(missing.to_str().unwrap(), &Default::default())
        .await
        .expect_err("no such directory");
    assert!(error.to_string().contains("not here"), "{error}");
}

#[tokio::test]
async fn a_backup_plan_says_what_the_backup_would_do_and_does_nothing() {
    let setup = setup(2).await;
    let objects = || async {
        let mut keys: Vec<String> = setup
            .memory
            .list_all("")
            .await
            .unwrap()
            .into_iter()
            .map(|entry| entry.key.to_string())
            .collect();
        keys.sort();
        keys
    };
    let before = objects().await;
    let first = setup
        .repository
        .plan_backup(&setup.source, &setup.dataset, &options())
        .await
        .unwrap();
    assert_eq!(
        first.decision.plan,
        zib_engine::planner::PlannedBackup::Full
    );
    assert!(first.new_snapshot && first.snapshot.starts_with("zib-"));
    assert_eq!(first.dataset_id, None);
    assert!(!first.unfinished_backup);
    // Nothing was created or written, and no lock is left held.
    assert!(setup
        .source
        .list_snapshots(&setup.dataset)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(objects().await, before);

    let backup = committed(setup.backup(&setup.repository).await.unwrap());
    setup.clock.advance(Duration::from_secs(3600));
    let next = setup
        .repository
        .plan_backup(&setup.source, &setup.dataset, &options())
        .await
        .unwrap();
    assert_eq!(next.dataset_id, Some(backup.manifest.dataset_id));
    assert!(
        matches!(
            next.decision.plan,
            zib_engine::planner::PlannedBackup::Incremental { .. }
        ),
        "{:?}",
        next.decision
    );
    // The snapshot already backed up is up to date.
    let existing = BackupOptions {
        snapshot: SnapshotChoice::Existing(
            SnapshotName::zfs(&backup.manifest.snapshot_name).unwrap(),
        ),
        ..options()
    };
    let again = setup
        .repository
        .plan_backup(&setup.source, &setup.dataset, &existing)
        .await
        .unwrap();
    assert_eq!(
        again.decision.plan,
        zib_engine::planner::PlannedBackup::UpToDate
    );
    assert!(!again.new_snapshot);
    assert_eq!(
        setup
            .source
            .list_snapshots(&setup.dataset)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_full_backup_can_be_asked_for_when_an_incremental_would_do() {
    let setup = setup(1).await;
    committed(setup.backup(&setup.repository).await.unwrap());
    setup
        .source
        .write_file(&setup.dataset, "new.jpg", &bytes(MIB, 99));
    setup.clock.advance(Duration::from_secs(3600));
    let full = BackupOptions {
        full: true,
        ..options()
    };
    let planned = setup
        .repository
        .plan_backup(&setup.source, &setup.dataset, &full)
        .await
        .unwrap();
    assert_eq!(
        planned.decision.plan,
        zib_engine::planner::PlannedBackup::Full
    );
    let second = committed(
        setup
            .repository
            .backup(&setup.source, &setup.dataset, &full, &NoProgress)
            .await
            .unwrap(),
    );
    assert_eq!(second.manifest.kind, BackupKind::Full);
    assert!(
        second.decision.reason.contains("asked for"),
        "{}",
        second.decision.reason
    );
    // Without the option the next one is an incremental again.
    setup.clock.advance(Duration::from_secs(3600));
    let third = committed(setup.backup(&setup.repository).await.unwrap());
    assert!(matches!(
        third.manifest.kind,
        BackupKind::Incremental { .. }
    ));
}
