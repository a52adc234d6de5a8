//! Crash-safe resume with real components: a real backup process killed with SIGKILL
//! mid-upload (zfs-fuse + moto behind the fault proxy) and run again; the dataset lock
//! between concurrent runs; journals that cannot be continued.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use zib_crypto::{Passphrase, HEADER_LEN, SEGMENT_CIPHERTEXT_LEN};
use zib_snapshot_source::zfs::ZfsSource;
use zib_snapshot_source::{
    DatasetName, ForwardingSource, SendRequest, SendStream, SnapshotName, SnapshotSource,
    SourceKind,
};
use zib_storage_backend::counting::Counting;
use zib_storage_backend::faults::{Fault, FaultInjecting, FaultRule, Trigger};
use zib_storage_backend::local_dir::LocalDirBackend;
use zib_storage_backend::s3::S3Backend;
use zib_storage_backend::{Operation, RestoreTier, StorageBackend, StorageBackendExt};
use zib_test_utils::data::{hash_tree, TestRng};
use zib_test_utils::moto::MotoServer;
use zib_test_utils::proxy::{FaultProxy, ProxyFault, ProxyRule, ProxyTrigger};
use zib_test_utils::zfs::ZfsPool;

use super::{
    backup_options, committed, fast_init, host, journal_path, location, s3_config_at, s3_on_moto,
};
use crate::backup::{BackupOptions, BackupOutcome, SnapshotChoice};
use crate::error::Error;
use crate::format::records::{BackupKind, SendFlagBits};
use crate::ids::{BackupId, DatasetId};
use crate::progress::NoProgress;
use crate::repository::Repository;
use crate::state::journal::{
    read_journal, Journal, JournalFile, JournalSnapshot, JournalVolume, VolumeState,
};
use crate::upload::parts::PartCheck;
use crate::upload::shape::PartCutting;
use crate::upload::VolumeShape;
use crate::FakeClock;

const MIB: usize = 1 << 20;
const PASSPHRASE: &str = "a long family passphrase";
const SNAPSHOT: &str = "before-the-trip";
/// Carries the job of a child backup process (see `resume_child_process`).
const CHILD_JOB: &str = "ZIB_TEST_RESUME_CHILD_JOB";

/// 12 MiB volumes in 5 MiB parts (3 parts each), 2 in flight.
fn shape() -> VolumeShape {
    VolumeShape {
        volume_plaintext_len: 12 * MIB as u64,
        part_len: 5 * MIB as u64,
        parts_in_flight: 2,
    }
}

fn options(snapshot: &str) -> BackupOptions {
    BackupOptions {
        snapshot: SnapshotChoice::Existing(SnapshotName::zfs(snapshot).unwrap()),
        shape: shape(),
        ..backup_options()
    }
}

/// The repository at `backend` (prefix `prefix`), from a host keeping its state in
/// `state`.
async fn open(
    backend: Arc<dyn StorageBackend>,
    prefix: &str,
    state: &Path,
    clock: &FakeClock,
) -> Repository {
    Repository::open(
        &location(backend, prefix),
        &Passphrase::new(PASSPHRASE.into()),
        host(state, clock),
    )
    .await
    .unwrap()
}

/// Parts a volume object of `len` bytes was uploaded in (every part but the last is
/// exactly the aligned part length).
fn parts_of(len: u64, shape: &VolumeShape) -> u64 {
    let first = HEADER_LEN
        + (shape.part_len - HEADER_LEN).div_ceil(SEGMENT_CIPHERTEXT_LEN) * SEGMENT_CIPHERTEXT_LEN;
    let later = shape.part_len.div_ceil(SEGMENT_CIPHERTEXT_LEN) * SEGMENT_CIPHERTEXT_LEN;
    if len <= first {
        1
    } else {
        1 + (len - first).div_ceil(later)
    }
}

/// Parts the journal lists: all parts of completed volumes plus the journalled parts of
/// the volume being uploaded.
fn journalled_parts(journal: &Journal) -> u64 {
    journal
        .volumes
        .iter()
        .map(|volume| match &volume.state {
            VolumeState::Uploading { parts } => parts.len() as u64,
            VolumeState::Completed { parts, .. } => *parts,
        })
        .sum()
}

/// Writes `megabytes` of incompressible files into the dataset and snapshots it.
async fn dataset_with_data(pool: &ZfsPool, name: &str, megabytes: usize, seed: u64) -> DatasetName {
    let dataset = pool.create_dataset(name);
    let mountpoint = pool.mountpoint(&dataset);
    let mut rng = TestRng::new(seed);
    for file in 0..megabytes.div_ceil(10) {
        let len = (megabytes - file * 10).min(10) * MIB;
        std::fs::write(mountpoint.join(format!("photo-{file}.raw")), rng.bytes(len)).unwrap();
    }
    ZfsSource::new()
        .create_snapshot(&dataset, &SnapshotName::zfs(SNAPSHOT).unwrap(), None)
        .await
        .unwrap();
    dataset
}

/// The child side of the kill test: a whole backup in its own process, through the
/// proxy. Ignored, so that it never counts as a passing test: the parent test runs it
/// explicitly (`--ignored --exact`) with a job; run any other way it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the kill tests; they start it themselves"]
async fn resume_child_process() {
    let job = std::env::var(CHILD_JOB).unwrap_or_else(|_| {
        panic!(
            "{CHILD_JOB} is not set: this is the child process of the kill tests, which start it"
        )
    });
    let fields: Vec<&str> = job.lines().collect();
    let [endpoint, bucket, dataset, state_dir] = fields[..] else {
        panic!("malformed job {job:?}");
    };
    let backend = Arc::new(
        S3Backend::connect(&s3_config_at(endpoint, bucket))
            .await
            .unwrap(),
    );
    let clock = FakeClock::new(SystemTime::now());
    let repository = open(backend, "zib", Path::new(state_dir), &clock).await;
    let outcome = repository
        .backup(
            &ZfsSource::new(),
            &DatasetName::zfs(dataset).unwrap(),
            &options(SNAPSHOT),
            &NoProgress,
        )
        .await;
    panic!("this backup should have been killed before it ended: {outcome:?}");
}

fn child_output(child: &mut Child, stderr: &Path) -> Option<String> {
    child.try_wait().unwrap().map(|status| {
        format!(
            "the backup process exited ({status}) before it was killed: {}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        )
    })
}

/// Where a kill cut the upload, as the journal left by the killed run must show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Volume 0 complete, volume 1 with some parts confirmed and some not.
    MidVolume,
    /// Volumes 0 and 1 complete, nothing of volume 2 confirmed.
    VolumeBoundary,
}

/// Kills a real backup process while the proxy stalls every part upload from the
/// `stalled`-th request on, once the journal shows the parts before it confirmed; checks
/// the journal shows the kill at `cut`; then runs the backup again.
async fn kill_and_resume(stalled: u64, cut: Cut) {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let (bucket, backend) = s3_on_moto(&moto).await;
    let upstream: SocketAddr = format!("127.0.0.1:{}", moto.port()).parse().unwrap();
    let proxy = FaultProxy::start(
        upstream,
        // Every request from the stalled one on: a part of the next volume (or a later
        // part of this one) overtaking the stalled request cannot be confirmed either.
        vec![ProxyRule {
            operation: Some(Operation::UploadPart),
            trigger: ProxyTrigger::From(stalled),
            fault: ProxyFault::Stall(Duration::from_secs(600)),
        }],
        1,
    )
    .await
    .unwrap();
    let clock = FakeClock::new(SystemTime::now());
    // 40 MiB of stream: 4 volumes, 10 parts.
    let dataset = dataset_with_data(&pool, "photos", 40, stalled).await;
    let expected = hash_tree(&pool.mountpoint(&dataset)).unwrap();
    let state = tempfile::tempdir().unwrap();
    let (repository, _) = Repository::init(
        &location(backend.clone(), "zib"),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(state.path(), &clock),
    )
    .await
    .unwrap();
    let journal_file = journal_path(state.path(), repository.id(), dataset.as_str());

    let stderr = state.path().join("child.stderr");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "tests::resume_real::resume_child_process",
            "--nocapture",
        ])
        .env(
            CHILD_JOB,
            format!(
                "{}\n{bucket}\n{dataset}\n{}",
                proxy.endpoint(),
                state.path().display()
            ),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();

    // Wait for the stalled part to reach the proxy, then for the journal to settle:
    // behind a stalled part nothing more can be confirmed (ETags are journalled in order).
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = None;
    let mut unchanged_since = Instant::now();
    loop {
        if let Some(exit) = child_output(&mut child, &stderr) {
            panic!("{exit}");
        }
        assert!(Instant::now() < deadline, "the backup made no progress");
        if proxy.seen(Operation::UploadPart) >= stalled {
            let confirmed = read_journal(&journal_file)
                .await
                .unwrap()
                .map(|journal| journal.confirmed_parts());
            if confirmed != last {
                last = confirmed;
                unchanged_since = Instant::now();
            } else if confirmed.is_some_and(|confirmed| confirmed + 2 >= stalled)
                && unchanged_since.elapsed() > Duration::from_secs(1)
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = read_journal(&journal_file)
        .await
        .unwrap()
        .expect("the journal outlives the killed run");
    let confirmed = at_kill.confirmed_parts();
    assert!(proxy.injected()[0] >= 1, "no part upload was stalled");
    // The cut is where the test says: complete volumes, then the one being uploaded.
    let confirmed_in = |index: usize| match at_kill.volumes.get(index).map(|v| &v.state) {
        Some(VolumeState::Uploading { parts }) => (
            parts.iter().filter(|part| part.etag.is_some()).count(),
            parts.len(),
        ),
        Some(VolumeState::Completed { .. }) => panic!("volume {index} completed: {at_kill:?}"),
        None => (0, 0),
    };
    match cut {
        Cut::MidVolume => {
            assert_eq!(at_kill.completed_volumes(), 1, "{at_kill:?}");
            let (confirmed_parts, journalled) = confirmed_in(1);
            assert!(
                confirmed_parts >= 1 && journalled > confirmed_parts,
                "volume 1 must be cut between parts: {confirmed_parts} of {journalled} journalled \
                 parts confirmed"
            );
        }
        Cut::VolumeBoundary => {
            assert_eq!(at_kill.completed_volumes(), 2, "{at_kill:?}");
            assert_eq!(
                confirmed_in(2).0,
                0,
                "nothing of volume 2 confirmed: {at_kill:?}"
            );
            assert_eq!(
                confirmed, 6,
                "the two volumes' 3 parts each, and nothing more"
            );
        }
    }

    // Run again, counting requests.
    let counting = Counting::new(backend.clone());
    let repository = open(Arc::new(counting.clone()), "zib", state.path(), &clock).await;
    let source = ZfsSource::new();
    let backup = committed(
        repository
            .backup(&source, &dataset, &options(SNAPSHOT), &NoProgress)
            .await
            .unwrap(),
    );
    assert_eq!(
        backup.manifest.backup_id, at_kill.backup_id,
        "the same backup"
    );
    assert_eq!(backup.manifest.dataset_id, at_kill.dataset_id);
    assert!(
        backup.decision.reason.contains("continuing"),
        "{}",
        backup.decision.reason
    );
    assert!(
        !journal_file.exists(),
        "the journal goes once the manifest commits"
    );

    let catalog = repository.catalog().await.unwrap();
    let stored = &catalog.backups(backup.manifest.dataset_id)[0];
    assert_eq!(stored.volume_sizes.len(), 4);
    let total: u64 = stored
        .volume_sizes
        .iter()
        .map(|len| parts_of(*len, &shape()))
        .sum();
    let sent = counting.count(Operation::UploadPart);
    assert_eq!(
        sent,
        total - confirmed,
        "confirmed parts are not sent again"
    );
    let resent = sent - (total - journalled_parts(&at_kill));
    assert!(
        (1..=shape().parts_in_flight as u64).contains(&resent),
        "{resent} parts re-sent; at most the {} in flight may be",
        shape().parts_in_flight
    );
    assert!(
        catalog.leftovers.incomplete_uploads.is_empty(),
        "{:?}",
        catalog.leftovers
    );
    assert!(
        catalog.leftovers.orphan_volumes.is_empty(),
        "{:?}",
        catalog.leftovers
    );

    // The stored stream is the snapshot: zfs receive takes it, files are identical.
    for entry in backend.list_all("zib/volumes/").await.unwrap() {
        backend
            .request_restore(&entry.key, 1, RestoreTier::Bulk)
            .await
            .unwrap();
    }
    let target = pool.dataset("restored");
    Arc::new(repository)
        .receive_chain(
            &catalog,
            backup.manifest.dataset_id,
            backup.manifest.backup_id,
            &source,
            &target,
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(hash_tree(&pool.mountpoint(&target)).unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_mid_volume_resumes_the_same_backup() {
    // Request 5: the second part of volume 1.
    kill_and_resume(5, Cut::MidVolume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_at_a_volume_boundary_resumes_the_same_backup() {
    // Request 7: the first part of volume 2, right after volume 1 completed.
    kill_and_resume(7, Cut::VolumeBoundary).await;
}

/// A source whose sends of one dataset wait at a gate, so a backup can be caught
/// running.
struct Gated {
    inner: ZfsSource,
    dataset: DatasetName,
    entered: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl ForwardingSource for Gated {
    fn inner(&self) -> &dyn SnapshotSource {
        &self.inner
    }

    async fn send(&self, request: &SendRequest) -> zib_snapshot_source::Result<SendStream> {
        if request.dataset == self.dataset {
            self.entered.notify_one();
            self.gate.acquire().await.unwrap().forget();
        }
        self.inner.send(request).await
    }
}

async fn local_repository(
    dir: &Path,
    state: &Path,
    clock: &FakeClock,
) -> (Arc<dyn StorageBackend>, Repository) {
    let backend: Arc<dyn StorageBackend> =
        Arc::new(LocalDirBackend::open(dir, Arc::new(clock.clone())).unwrap());
    let (repository, _) = Repository::init(
        &location(backend.clone(), ""),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(state, clock),
    )
    .await
    .unwrap();
    (backend, repository)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_a_dataset_gets_the_lock_error_another_dataset_does_not() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let photos = dataset_with_data(&pool, "photos", 3, 1).await;
    let music = dataset_with_data(&pool, "music", 3, 2).await;
    let repository_dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(SystemTime::now());
    let state = tempfile::tempdir().unwrap();
    let (_, repository) = local_repository(repository_dir.path(), state.path(), &clock).await;
    let source = Gated {
        inner: ZfsSource::new(),
        dataset: photos.clone(),
        entered: tokio::sync::Notify::new(),
        gate: tokio::sync::Semaphore::new(0),
    };
    let first_options = options(SNAPSHOT);
    let first = repository.backup(&source, &photos, &first_options, &NoProgress);
    let others = async {
        // The first run is sending: it holds the lock of `photos`.
        source.entered.notified().await;
        let started = Instant::now();
        let error = repository
            .backup(&source, &photos, &options(SNAPSHOT), &NoProgress)
            .await
            .expect_err("a second run on the same dataset must not start");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "it fails at once"
        );
        match &error {
            Error::Locked { dataset, pid, .. } => {
                assert_eq!(dataset, &photos.to_string());
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("expected the lock error, got {other}"),
        }
        assert!(error.to_string().contains("another zib backup"), "{error}");

        // Another dataset is not blocked.
        let music_backup = committed(
            repository
                .backup(&source, &music, &options(SNAPSHOT), &NoProgress)
                .await
                .unwrap(),
        );
        assert_eq!(music_backup.manifest.dataset_name, music.to_string());

        // A run that asks to wait does so until the first one is done.
        let waiting_options = BackupOptions {
            wait_for_lock: true,
            ..options(SNAPSHOT)
        };
        let mut waiting =
            Box::pin(repository.backup(&source, &photos, &waiting_options, &NoProgress));
        tokio::select! {
            outcome = &mut waiting => panic!("the waiting run must wait: {outcome:?}"),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        source.gate.add_permits(1);
        waiting.await
    };
    let (first, waited) = tokio::join!(first, others);
    let first = committed(first.unwrap());
    // The waiting run found the snapshot backed up by the first.
    match waited.unwrap() {
        BackupOutcome::UpToDate { .. } => {}
        BackupOutcome::Committed(backup) => panic!(
            "the waiting run should find {} backed up, committed {}",
            SNAPSHOT, backup.manifest.backup_id
        ),
    }
    assert_eq!(first.manifest.dataset_name, photos.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journals_that_cannot_be_continued_are_reported_and_replaced() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let dataset = dataset_with_data(&pool, "photos", 14, 3).await;
    let repository_dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(SystemTime::now());
    let state = tempfile::tempdir().unwrap();
    let (backend, repository) = local_repository(repository_dir.path(), state.path(), &clock).await;
    let journal_file = journal_path(state.path(), repository.id(), dataset.as_str());
    let source = ZfsSource::new();

    // A corrupt journal: reported, moved aside, and the backup planned afresh.
    std::fs::create_dir_all(journal_file.parent().unwrap()).unwrap();
    std::fs::write(&journal_file, b"ZIBJRNL\n\x01\0\0\0 not really").unwrap();
    let fresh = committed(
        repository
            .backup(&source, &dataset, &options(SNAPSHOT), &NoProgress)
            .await
            .unwrap(),
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(journal_file.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains(".journal.unreadable-"))
        .collect();
    assert_eq!(aside.len(), 1, "the unreadable journal is kept aside");
    assert!(!journal_file.exists());

    // An interrupted backup of a snapshot that is then destroyed: its uploads and
    // volumes are discarded and a new backup is planned.
    std::fs::write(
        pool.mountpoint(&dataset).join("more.raw"),
        TestRng::new(9).bytes(MIB),
    )
    .unwrap();
    let doomed = SnapshotName::zfs("doomed").unwrap();
    source
        .create_snapshot(&dataset, &doomed, None)
        .await
        .unwrap();
    let faulty = open(
        Arc::new(FaultInjecting::new(
            backend.clone(),
            vec![FaultRule {
                operation: Some(Operation::UploadPart),
                trigger: Trigger::Nth(1),
                fault: Fault::PermissionDenied,
            }],
            3,
        )),
        "",
        state.path(),
        &clock,
    )
    .await;
    // An incremental on top of the first backup; its first part is refused.
    let error = faulty
        .backup(
            &source,
            &dataset,
            &BackupOptions {
                shape: VolumeShape {
                    volume_plaintext_len: 12 * MIB as u64,
                    part_len: 5 * MIB as u64,
                    parts_in_flight: 1,
                },
                ..options("doomed")
            },
            &NoProgress,
        )
        .await
        .expect_err("the injected fault stops the backup");
    assert!(matches!(error, Error::Storage(_)), "{error}");
    let interrupted = read_journal(&journal_file)
        .await
        .unwrap()
        .expect("journal kept");
    assert_ne!(interrupted.backup_id, fresh.manifest.backup_id);
    assert_eq!(
        repository
            .catalog()
            .await
            .unwrap()
            .leftovers
            .incomplete_uploads
            .len(),
        1
    );
    source.destroy_snapshot(&dataset, &doomed).await.unwrap();

    clock.advance(Duration::from_secs(60));
    let replanned = repository
        .backup(
            &source,
            &dataset,
            &BackupOptions {
                snapshot: SnapshotChoice::Create,
                ..options(SNAPSHOT)
            },
            &NoProgress,
        )
        .await
        .unwrap();
    let replanned = committed(replanned);
    assert_ne!(replanned.manifest.backup_id, interrupted.backup_id);
    let catalog = repository.catalog().await.unwrap();
    assert!(
        catalog.leftovers.incomplete_uploads.is_empty(),
        "{:?}",
        catalog.leftovers
    );
    assert!(
        catalog.leftovers.orphan_volumes.is_empty(),
        "{:?}",
        catalog.leftovers
    );
    assert!(!journal_file.exists());

    // A journal whose backup committed (the run died between the commit and deleting
    // it): dropped, nothing sent again.
    let manifest = &replanned.manifest;
    let leftover = Journal {
        repository_id: repository.id(),
        dataset_name: dataset.to_string(),
        dataset_id: manifest.dataset_id,
        backup_id: manifest.backup_id,
        source: SourceKind::Zfs,
        target: JournalSnapshot {
            name: manifest.snapshot_name.clone(),
            identity: manifest.snapshot_identity,
        },
        snapshot_created_by_zib: true,
        kind: manifest.kind.clone(),
        send_flags: SendFlagBits(0),
        shape: shape(),
        // Were this journal discarded instead, its volume would be deleted.
        volumes: vec![JournalVolume {
            index: 0,
            upload_id: "completed".into(),
            salt: [0; 32],
            state: VolumeState::Completed {
                plaintext_len: manifest.stream_len,
                ciphertext_len: manifest.stored_len,
                plaintext_sha256: manifest.stream_sha256,
                parts: 1,
            },
        }],
        cutting: PartCutting::FinalSegmentInLastPart,
        part_check: PartCheck::SegmentTags,
    };
    JournalFile::new(journal_file.clone(), leftover)
        .save()
        .await
        .unwrap();
    let again = repository
        .backup(
            &source,
            &dataset,
            &options(&manifest.snapshot_name),
            &NoProgress,
        )
        .await
        .unwrap();
    assert!(matches!(again, BackupOutcome::UpToDate { .. }), "{again:?}");
    assert!(!journal_file.exists());
    assert_eq!(repository.catalog().await.unwrap(), catalog);
}

/// The repository at `backend`, through a decorator that fails `rules`; the decorator
/// too, to count what it injected.
async fn through_faults(
    backend: &Arc<dyn StorageBackend>,
    rules: Vec<FaultRule>,
    state: &Path,
    clock: &FakeClock,
) -> (Repository, FaultInjecting<Arc<dyn StorageBackend>>) {
    let faults = FaultInjecting::new(backend.clone(), rules, 3);
    let repository = open(Arc::new(faults.clone()), "", state, clock).await;
    (repository, faults)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_backup_is_not_dropped_for_another_snapshot_nor_blocks_when_undeletable() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let dataset = dataset_with_data(&pool, "photos", 14, 11).await;
    std::fs::write(
        pool.mountpoint(&dataset).join("more.raw"),
        TestRng::new(12).bytes(MIB),
    )
    .unwrap();
    let source = ZfsSource::new();
    source
        .create_snapshot(&dataset, &SnapshotName::zfs("later").unwrap(), None)
        .await
        .unwrap();
    let repository_dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(SystemTime::now());
    let state = tempfile::tempdir().unwrap();
    let (backend, repository) = local_repository(repository_dir.path(), state.path(), &clock).await;
    let journal_file = journal_path(state.path(), repository.id(), dataset.as_str());

    // A backup of the first snapshot stops at its second part.
    let (faulty, faults) = through_faults(
        &backend,
        vec![FaultRule {
            operation: Some(Operation::UploadPart),
            trigger: Trigger::Nth(2),
            fault: Fault::PermissionDenied,
        }],
        state.path(),
        &clock,
    )
    .await;
    let one_at_a_time = VolumeShape {
        parts_in_flight: 1,
        ..shape()
    };
    faulty
        .backup(
            &source,
            &dataset,
            &BackupOptions {
                shape: one_at_a_time,
                ..options(SNAPSHOT)
            },
            &NoProgress,
        )
        .await
        .expect_err("the injected fault stops the backup");
    assert_eq!(faults.injected(), [1]);
    let interrupted = read_journal(&journal_file)
        .await
        .unwrap()
        .expect("journal kept");
    // Volume 0's upload, with one part stored: an upload to abort, no object to delete.
    assert_eq!(interrupted.volumes.len(), 1, "{interrupted:?}");
    assert_eq!(interrupted.completed_volumes(), 0, "{interrupted:?}");
    let uploads = || async {
        repository
            .catalog()
            .await
            .unwrap()
            .leftovers
            .incomplete_uploads
            .len()
    };
    assert_eq!(uploads().await, 1);

    // Asking for another snapshot names the unfinished backup and keeps it.
    let error = repository
        .backup(&source, &dataset, &options("later"), &NoProgress)
        .await
        .expect_err("an unfinished backup of another snapshot must not be dropped silently");
    assert!(matches!(error, Error::UnfinishedBackup { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&interrupted.backup_id.to_string()) && message.contains("unfinished"),
        "{message}"
    );
    assert_eq!(
        read_journal(&journal_file).await.unwrap(),
        Some(interrupted.clone())
    );
    assert_eq!(uploads().await, 1);

    // Its snapshot is destroyed, so it cannot be finished; the bucket refuses to abort
    // or delete anything: the journal goes aside and a new backup is made.
    source
        .destroy_snapshot(&dataset, &SnapshotName::zfs(SNAPSHOT).unwrap())
        .await
        .unwrap();
    let (denying, refusals) = through_faults(
        &backend,
        [Operation::AbortMultipart, Operation::Delete]
            .into_iter()
            .map(|operation| FaultRule {
                operation: Some(operation),
                trigger: Trigger::From(1),
                fault: Fault::PermissionDenied,
            })
            .collect(),
        state.path(),
        &clock,
    )
    .await;
    let fresh = committed(
        denying
            .backup(&source, &dataset, &options("later"), &NoProgress)
            .await
            .unwrap(),
    );
    assert_ne!(fresh.manifest.backup_id, interrupted.backup_id);
    assert!(!journal_file.exists());
    let aside = std::fs::read_dir(journal_file.parent().unwrap())
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".journal.abandoned-")
        })
        .count();
    assert_eq!(aside, 1, "the journal is moved aside");
    // The run did try to discard the unfinished backup: its abort was refused (and the
    // discard ends at the first refusal, before the delete that follows an abort).
    assert_eq!(
        refusals.injected(),
        [1, 0],
        "one refused abort (rules: abort, delete)"
    );
    // The leftovers wait for the clean-up.
    assert_eq!(uploads().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journalled_incremental_whose_base_backup_is_gone_is_not_resumed() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let dataset = dataset_with_data(&pool, "photos", 3, 21).await;
    std::fs::write(
        pool.mountpoint(&dataset).join("more.raw"),
        TestRng::new(22).bytes(MIB),
    )
    .unwrap();
    let source = ZfsSource::new();
    let later = source
        .create_snapshot(&dataset, &SnapshotName::zfs("later").unwrap(), None)
        .await
        .unwrap();
    let base = source
        .list_snapshots(&dataset)
        .await
        .unwrap()
        .into_iter()
        .find(|snapshot| snapshot.name.to_string() == SNAPSHOT)
        .unwrap();
    let repository_dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(SystemTime::now());
    let state = tempfile::tempdir().unwrap();
    let (_, repository) = local_repository(repository_dir.path(), state.path(), &clock).await;
    let journal_file = journal_path(state.path(), repository.id(), dataset.as_str());
    // An incremental on top of a backup the repository does not hold (deleted since).
    let journal = Journal {
        repository_id: repository.id(),
        dataset_name: dataset.to_string(),
        dataset_id: DatasetId::from_bytes([5; 16]),
        backup_id: BackupId::from_bytes([6; 16]),
        source: SourceKind::Zfs,
        target: JournalSnapshot {
            name: "later".into(),
            identity: later.identity,
        },
        snapshot_created_by_zib: false,
        kind: BackupKind::Incremental {
            base_backup: BackupId::from_bytes([7; 16]),
            base_snapshot_name: SNAPSHOT.into(),
            base_identity: base.identity,
        },
        send_flags: SendFlagBits(0),
        shape: shape(),
        volumes: Vec::new(),
        cutting: PartCutting::FinalSegmentInLastPart,
        part_check: PartCheck::SegmentTags,
    };
    JournalFile::new(journal_file.clone(), journal.clone())
        .save()
        .await
        .unwrap();

    let outcome = committed(
        repository
            .backup(&source, &dataset, &options("later"), &NoProgress)
            .await
            .unwrap(),
    );
    // Planned afresh: a full, as the repository holds nothing to build on.
    assert_eq!(outcome.manifest.kind, BackupKind::Full);
    assert_ne!(outcome.manifest.backup_id, journal.backup_id);
    assert!(!journal_file.exists());
}
