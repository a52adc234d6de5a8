//! Crash-safe resume at the stream level, against the in-memory backend: an upload
//! stopped by a storage failure continues without re-sending confirmed parts; a stream
//! that changed between runs is detected and the affected volume re-uploaded under a
//! fresh salt, never mixed; clean-up follows the local journals.

// Helpers outside #[test] functions panic on failure too: that is the report.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::{stream, TryStreamExt};
use zib_crypto::{KdfParams, Passphrase};
use zib_storage_backend::counting::Counting;
use zib_storage_backend::faults::{Fault, FaultInjecting, FaultRule, Trigger};
use zib_storage_backend::memory::{MemoryBackend, MemoryConfig};
use zib_storage_backend::{ByteRange, Operation, StorageBackend, StorageBackendExt, StorageClass};

use super::{host, journal_path, location, new_journal, upload_resumable};
use crate::backup::commit_manifest;
use crate::cleanup::{clean_up, CleanupOptions};
use crate::context::Repo;
use crate::download::{backup_stream, Volumes};
use crate::error::Error;
use crate::format::layout::ObjectRole;
use crate::format::records::{volume_list_hash, BackupKind, ManifestRecord, SendFlagBits};
use crate::progress::Progress;
use crate::repository::{InitOptions, Repository};
use crate::state::journal::{read_journal, Journal, JournalFile, VolumeState};
use crate::state::lock::lock_dataset;
use crate::state::DatasetFiles;
use crate::upload::parts::PartCheck;
use crate::upload::shape::PartCutting;
use crate::upload::{Attempt, UploadedStream, VolumeShape};
use crate::FakeClock;
use zib_snapshot_source::{SnapshotIdentity, SourceKind};

const MIB: usize = 1 << 20;
const PASSPHRASE: &str = "correct horse battery staple";
const DATASET: &str = "tank/photos";
/// 30 MiB in 12 MiB volumes of 5 MiB parts: parts 3 + 3 + 2.
const STREAM_LEN: usize = 30 * MIB;

fn shape() -> VolumeShape {
    VolumeShape {
        volume_plaintext_len: 12 * MIB as u64,
        part_len: 5 * MIB as u64,
        parts_in_flight: 2,
    }
}

fn stream_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn chunked(bytes: &[u8]) -> impl futures::Stream<Item = Result<Bytes, Error>> + Unpin + Send {
    let chunks: Vec<Result<Bytes, Error>> = bytes
        .chunks(256 * 1024 + 7)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    stream::iter(chunks)
}

struct Setup {
    clock: Arc<FakeClock>,
    backend: Arc<MemoryBackend>,
    repository: Arc<Repo>,
    state: tempfile::TempDir,
    journal_path: PathBuf,
    journal: Journal,
}

/// A repository whose objects are readable at once (STANDARD), and a new backup's
/// journal.
async fn setup() -> Setup {
    let clock = Arc::new(FakeClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let backend = Arc::new(MemoryBackend::new(MemoryConfig::default(), clock.clone()));
    let state = tempfile::tempdir().unwrap();
    let (repository, _) = Repository::init(
        &location(backend.clone(), "family"),
        &Passphrase::new(PASSPHRASE.into()),
        &InitOptions {
            archive_class: StorageClass::Standard,
            kdf: KdfParams::new(10, 8, 1).unwrap(),
        },
        host(state.path(), &clock),
    )
    .await
    .unwrap();
    let repository = repository.context().clone();
    let journal_path = journal_path(state.path(), repository.id(), DATASET);
    let journal = new_journal(&repository, DATASET, shape());
    Setup {
        clock,
        backend,
        repository,
        state,
        journal_path,
        journal,
    }
}

impl Setup {
    /// The same repository through another backend stack (same objects).
    async fn through(&self, backend: Arc<dyn StorageBackend>) -> Arc<Repo> {
        Repository::open(
            &location(backend, "family"),
            &Passphrase::new(PASSPHRASE.into()),
            host(self.state.path(), &self.clock),
        )
        .await
        .unwrap()
        .context()
        .clone()
    }

    /// The same repository seen from another host: none of this host's journals.
    async fn elsewhere(&self, state: &std::path::Path) -> Arc<Repo> {
        Repository::open(
            &location(self.backend.clone(), "family"),
            &Passphrase::new(PASSPHRASE.into()),
            host(state, &self.clock),
        )
        .await
        .unwrap()
        .context()
        .clone()
    }

    async fn journal_on_disk(&self) -> Journal {
        read_journal(&self.journal_path)
            .await
            .unwrap()
            .expect("a journal")
    }

    /// Takes the dataset's lock as a live run would.
    async fn hold_lock(&self) -> crate::state::lock::DatasetLock {
        lock_dataset(
            &DatasetFiles::of_journal(&self.journal_path).lock,
            DATASET,
            false,
        )
        .await
        .unwrap()
    }

    /// Runs the upload through a backend that refuses the `nth` part upload; the run
    /// stops with that storage error and keeps its journal.
    async fn interrupted(&self, bytes: &[u8], fault: FaultRule) -> Journal {
        let faulty = self
            .through(Arc::new(FaultInjecting::new(
                self.backend.clone(),
                vec![fault],
                7,
            )))
            .await;
        let error = upload_resumable(
            &faulty,
            &self.journal_path,
            self.journal.clone(),
            chunked(bytes),
            &Bytes_(Default::default()),
        )
        .await
        .expect_err("the injected fault stops the upload");
        assert!(matches!(error, Error::Storage(_)), "{error}");
        self.journal_on_disk().await
    }

    fn volume_key(&self, journal: &Journal, index: u32) -> zib_storage_backend::ObjectKey {
        self.repository
            .key(&ObjectRole::Volume {
                dataset: journal.dataset_id,
                backup: journal.backup_id,
                index,
            })
            .unwrap()
    }

    /// Commits and reads the backup back: the bytes must be `expected`.
    async fn commit_and_read_back(&self, uploaded: &UploadedStream, expected: &[u8]) {
        let manifest = ManifestRecord {
            source: SourceKind::Zfs,
            kind: BackupKind::Full,
            snapshot_created_by_zib: true,
            send_flags: SendFlagBits(0),
            dataset_id: self.journal.dataset_id,
            backup_id: self.journal.backup_id,
            dataset_name: DATASET.into(),
            snapshot_name: "zib-20270115T000000Z".into(),
            snapshot_identity: SnapshotIdentity::ZfsGuid(42),
            snapshot_created_at: 1_800_000_000,
            committed_at: 1_800_000_100,
            stream_len: uploaded.stream_len,
            stream_sha256: uploaded.stream_sha256,
            stored_len: uploaded.stored_len(),
            volume_count: uploaded.volumes.len() as u32,
            volume_plaintext_len: shape().volume_plaintext_len,
            volume_list_sha256: volume_list_hash(&uploaded.volumes),
            snapshot_bytes: Some(uploaded.stream_len),
            replaced_incremental: None,
        };
        commit_manifest(&self.repository, &manifest).await.unwrap();
        let read: Vec<Bytes> = backup_stream(
            self.through(self.backend.clone()).await,
            manifest,
            Volumes::Bucket,
        )
        .try_collect()
        .await
        .unwrap();
        assert!(read.concat() == expected, "the stored stream differs");
        assert!(
            self.backend
                .list_multipart_uploads("")
                .await
                .unwrap()
                .is_empty(),
            "no upload may be left"
        );
    }

    /// Whether volume `index`'s header (58 bytes, which carry the salt) holds `salt`.
    async fn has_salt(&self, journal: &Journal, index: u32, salt: &[u8; 32]) -> bool {
        let header = self
            .backend
            .get_bytes(
                &self.volume_key(journal, index),
                ByteRange::new(0, 58).unwrap(),
            )
            .await
            .unwrap();
        header.windows(32).any(|window| window == salt)
    }
}

/// Counts the bytes progress reports: streamed, uploaded, skipped.
#[derive(Default)]
struct Bytes_(std::sync::Mutex<(u64, u64, u64)>);

impl Progress for Bytes_ {
    fn stream_bytes(&self, bytes: u64, _: Option<u64>) {
        self.0.lock().unwrap().0 += bytes;
    }
    fn part_uploaded(&self, bytes: u64) {
        self.0.lock().unwrap().1 += bytes;
    }
    fn part_skipped(&self, bytes: u64) {
        self.0.lock().unwrap().2 += bytes;
    }
}

fn fail_part(nth: u64) -> FaultRule {
    FaultRule {
        operation: Some(Operation::UploadPart),
        trigger: Trigger::Nth(nth),
        fault: Fault::PermissionDenied,
    }
}

fn uploading_parts(journal: &Journal) -> (usize, usize) {
    journal
        .volumes
        .iter()
        .filter_map(|volume| match &volume.state {
            VolumeState::Uploading { parts } => Some((
                parts.len(),
                parts.iter().filter(|part| part.etag.is_some()).count(),
            )),
            VolumeState::Completed { .. } => None,
        })
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_without_resending_confirmed_parts() {
    let setup = setup().await;
    let bytes = stream_bytes(STREAM_LEN, 0x2545_f491_4f6c_dd1d);
    // Part 6 is the third part of volume 1. With two parts in flight it is sent only
    // once part 4 or 5 is confirmed, and the journal update before it carries that
    // confirmation: the journal at the failure holds a confirmed part of the volume
    // whatever the timing (failing part 5 raced part 4's confirmation).
    let before = setup.interrupted(&bytes, fail_part(6)).await;
    assert_eq!(before.completed_volumes(), 1, "{before:?}");
    assert_eq!(before.volumes.len(), 2);
    let (journalled, confirmed_in_flight) = uploading_parts(&before);
    assert!(journalled >= 3, "part 6 is journalled before it is sent");
    assert!(confirmed_in_flight >= 1, "{before:?}");
    let confirmed = before.confirmed_parts();

    let counting = Counting::new(setup.backend.clone());
    let repository = setup.through(Arc::new(counting.clone())).await;
    let progress = Bytes_::default();
    let uploaded = match upload_resumable(
        &repository,
        &setup.journal_path,
        setup.journal_on_disk().await,
        chunked(&bytes),
        &progress,
    )
    .await
    .unwrap()
    {
        Attempt::Uploaded(uploaded) => uploaded,
        other => panic!("expected the upload to finish: {other:?}"),
    };
    assert_eq!(uploaded.parts, 8);
    let sent = counting.count(Operation::UploadPart);
    assert_eq!(
        sent,
        uploaded.parts - confirmed,
        "only unconfirmed parts are sent"
    );
    // Of the parts the first run had journalled, only the unconfirmed ones (at most the
    // parts in flight) went again.
    let never_journalled = uploaded.parts - 3 - journalled as u64;
    let resent = sent - never_journalled;
    assert!(
        resent >= 1 && resent <= shape().parts_in_flight as u64,
        "{resent}"
    );
    // Volume 0 was verified, not uploaded; volume 1's upload was continued.
    assert_eq!(counting.count(Operation::CreateMultipart), 1);
    assert_eq!(counting.count(Operation::CompleteMultipart), 2);
    // Progress counts each stream byte once, and each stored byte once: as uploaded by
    // this run, or as skipped because the first run had stored it.
    let (streamed, sent_bytes, skipped_bytes) = *progress.0.lock().unwrap();
    assert_eq!(streamed, STREAM_LEN as u64);
    assert_eq!(sent_bytes + skipped_bytes, uploaded.stored_len());
    assert!(
        skipped_bytes > 0 && sent_bytes > 0,
        "{sent_bytes} {skipped_bytes}"
    );
    // The salts are the journalled ones: the same ciphertext was produced again.
    for volume in &before.volumes {
        assert!(setup.has_salt(&before, volume.index, &volume.salt).await);
    }
    setup.commit_and_read_back(&uploaded, &bytes).await;
}

/// A journal written before the last part absorbed the final segment (version 1, read
/// as `FinalSegmentAlone`) resumes cut the old way: its journalled parts stay valid, and
/// none is sent again. Cut the new way, part 2 would differ from its journal entry (it
/// would be the last) and the whole volume would go again under a fresh salt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_the_old_part_cutting_resumes_without_resending() {
    let mut setup = setup().await;
    setup.journal.cutting = PartCutting::FinalSegmentAlone;
    // 10 MiB fills two 5 MiB parts exactly: cut the old way, a third part of 16 bytes.
    let bytes = stream_bytes(10 * MIB, 0x0dd_ba11);
    let before = setup.interrupted(&bytes, fail_part(3)).await;
    assert_eq!(before.cutting, PartCutting::FinalSegmentAlone);
    let confirmed = before.confirmed_parts();
    assert!(confirmed >= 1, "{before:?}");
    let salt = before.volumes[0].salt;

    let counting = Counting::new(setup.backend.clone());
    let repository = setup.through(Arc::new(counting.clone())).await;
    let uploaded = match upload_resumable(
        &repository,
        &setup.journal_path,
        setup.journal_on_disk().await,
        chunked(&bytes),
        &Bytes_::default(),
    )
    .await
    .unwrap()
    {
        Attempt::Uploaded(uploaded) => uploaded,
        other => panic!("expected the upload to finish: {other:?}"),
    };
    assert_eq!(uploaded.parts, 3, "cut as the journal's run began");
    assert_eq!(counting.count(Operation::UploadPart), 3 - confirmed);
    assert_eq!(counting.count(Operation::CreateMultipart), 0);
    assert!(
        setup.has_salt(&before, 0, &salt).await,
        "the journalled salt"
    );
    setup.commit_and_read_back(&uploaded, &bytes).await;
}

/// A journal whose parts are checked by their plaintext's SHA-256 (versions 1 and 2, read
/// as `PlaintextSha256`) resumes checked that way: its journalled parts stay valid, and
/// none is sent again. Checked by their tags, every journalled part would differ from
/// its entry and the volume would go again under a fresh salt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_plaintext_checks_resumes_without_resending() {
    let mut setup = setup().await;
    setup.journal.part_check = PartCheck::PlaintextSha256;
    let bytes = stream_bytes(STREAM_LEN, 0x5eed_0fc0_ffee);
    let before = setup.interrupted(&bytes, fail_part(6)).await;
    assert_eq!(before.part_check, PartCheck::PlaintextSha256);
    let (journalled, confirmed_in_flight) = uploading_parts(&before);
    assert!(journalled >= 3 && confirmed_in_flight >= 1, "{before:?}");
    let confirmed = before.confirmed_parts();

    let counting = Counting::new(setup.backend.clone());
    let repository = setup.through(Arc::new(counting.clone())).await;
    let uploaded = resumed_from_disk(&setup, &repository, &bytes).await;
    assert_eq!(
        counting.count(Operation::UploadPart),
        uploaded.parts - confirmed
    );
    assert_eq!(
        counting.count(Operation::CreateMultipart),
        1,
        "volume 2 only"
    );
    for volume in &before.volumes {
        assert!(setup.has_salt(&before, volume.index, &volume.salt).await);
    }
    setup.commit_and_read_back(&uploaded, &bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_completed_but_not_journalled_is_verified_not_sent_again() {
    let setup = setup().await;
    let bytes = stream_bytes(STREAM_LEN, 0x1234_5678_9abc_def1);
    // Volume 0's completion takes effect, but its answer is lost: the journal still
    // says "uploading" while the object exists.
    let before = setup
        .interrupted(
            &bytes,
            FaultRule {
                operation: Some(Operation::CompleteMultipart),
                trigger: Trigger::Nth(1),
                fault: Fault::LostAnswer,
            },
        )
        .await;
    assert_eq!(before.completed_volumes(), 0);
    assert!(setup
        .backend
        .exists(&setup.volume_key(&before, 0))
        .await
        .unwrap());

    let counting = Counting::new(setup.backend.clone());
    let repository = setup.through(Arc::new(counting.clone())).await;
    let uploaded = resumed_from_disk(&setup, &repository, &bytes).await;
    // Volume 0 (3 parts) is neither re-sent nor re-completed.
    assert_eq!(counting.count(Operation::UploadPart), uploaded.parts - 3);
    assert_eq!(counting.count(Operation::CompleteMultipart), 2);
    setup.commit_and_read_back(&uploaded, &bytes).await;
}

/// The first run, journalling `part_check`s, stops in volume 1; the stream then differs
/// from `change_at` on.
async fn changed_stream(change_at: usize, changed_volume: u32, part_check: PartCheck) {
    let mut setup = setup().await;
    setup.journal.part_check = part_check;
    let old = stream_bytes(STREAM_LEN, 0x0bad_cafe_dead_beef);
    let before = setup.interrupted(&old, fail_part(5)).await;
    assert_eq!(before.volumes.len(), 2);
    assert_eq!(before.part_check, part_check);
    let mut new = old.clone();
    for byte in &mut new[change_at..change_at + 1000] {
        *byte ^= 0x5a;
    }

    let Attempt::StreamChanged { volume } = upload_resumable(
        &setup.repository,
        &setup.journal_path,
        setup.journal_on_disk().await,
        chunked(&new),
        &Bytes_::default(),
    )
    .await
    .unwrap() else {
        panic!("the changed stream must be detected")
    };
    assert_eq!(volume, changed_volume);
    // Before anything of the new stream was sent under an old salt, everything of the
    // old one from that volume on is gone: the upload aborted, a completed volume
    // deleted, the journal shortened.
    let after = setup.journal_on_disk().await;
    assert_eq!(after.volumes.len(), changed_volume as usize);
    assert!(setup
        .backend
        .list_multipart_uploads("")
        .await
        .unwrap()
        .is_empty());
    for index in changed_volume..2 {
        assert!(!setup
            .backend
            .exists(&setup.volume_key(&before, index))
            .await
            .unwrap());
    }

    // The stream is read again from its beginning.
    let Attempt::Uploaded(uploaded) = upload_resumable(
        &setup.repository,
        &setup.journal_path,
        after,
        chunked(&new),
        &Bytes_::default(),
    )
    .await
    .unwrap() else {
        panic!("the second read must finish")
    };
    for volume in &before.volumes {
        let kept = setup.has_salt(&before, volume.index, &volume.salt).await;
        if volume.index < changed_volume {
            assert!(kept, "an unchanged volume is kept");
        } else {
            assert!(!kept, "a changed volume gets a fresh salt");
        }
    }
    // Every volume decrypts and hashes to the new stream: no old part is mixed in.
    setup.commit_and_read_back(&uploaded, &new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_changed_in_the_volume_being_uploaded_restarts_it_with_a_fresh_salt() {
    // Inside the first part of volume 1, which the first run confirmed.
    changed_stream(13 * MIB, 1, PartCheck::SegmentTags).await;
}

/// As above, for an upload journalled by a zib that checked parts by their plaintext's
/// hash (journal versions 1 and 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_changed_under_plaintext_checks_restarts_the_volume_with_a_fresh_salt() {
    changed_stream(13 * MIB, 1, PartCheck::PlaintextSha256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_changed_in_a_completed_volume_replaces_it_with_a_fresh_salt() {
    changed_stream(2 * MIB, 0, PartCheck::SegmentTags).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_got_shorter_is_detected() {
    let setup = setup().await;
    let old = stream_bytes(STREAM_LEN, 0x7777_1111_2222_3333);
    setup.interrupted(&old, fail_part(5)).await;
    // Ends inside volume 1's confirmed first part.
    let shorter = &old[..13 * MIB];
    let attempt = upload_resumable(
        &setup.repository,
        &setup.journal_path,
        setup.journal_on_disk().await,
        chunked(shorter),
        &Bytes_::default(),
    )
    .await
    .unwrap();
    assert!(
        matches!(attempt, Attempt::StreamChanged { volume: 1 }),
        "{attempt:?}"
    );
    let Attempt::Uploaded(uploaded) = upload_resumable(
        &setup.repository,
        &setup.journal_path,
        setup.journal_on_disk().await,
        chunked(shorter),
        &Bytes_::default(),
    )
    .await
    .unwrap() else {
        panic!("the second read must finish")
    };
    setup.commit_and_read_back(&uploaded, shorter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_beyond_the_end_of_a_shorter_stream_are_removed() {
    let setup = setup().await;
    let old = stream_bytes(STREAM_LEN, 0x9999_8888_7777_6666);
    // The first part of volume 2 is refused: volumes 0 and 1 are complete, 2 started.
    let before = setup.interrupted(&old, fail_part(7)).await;
    assert_eq!(before.volumes.len(), 3);
    assert_eq!(before.completed_volumes(), 2);
    // The stream now ends exactly after volume 1.
    let shorter = &old[..24 * MIB];
    let Attempt::Uploaded(uploaded) = upload_resumable(
        &setup.repository,
        &setup.journal_path,
        setup.journal_on_disk().await,
        chunked(shorter),
        &Bytes_::default(),
    )
    .await
    .unwrap() else {
        panic!("the shorter stream is stored")
    };
    assert_eq!(uploaded.volumes.len(), 2);
    assert!(setup.journal_on_disk().await.volumes.len() == 2);
    assert!(!setup
        .backend
        .exists(&setup.volume_key(&before, 2))
        .await
        .unwrap());
    setup.commit_and_read_back(&uploaded, shorter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_up_aborts_a_dead_runs_young_upload_and_keeps_a_live_ones() {
    let setup = setup().await;
    let bytes = stream_bytes(STREAM_LEN, 0x4444_5555_6666_7777);
    let before = setup.interrupted(&bytes, fail_part(5)).await;
    let uploads = || async { setup.backend.list_multipart_uploads("").await.unwrap() };
    assert_eq!(uploads().await.len(), 1);

    // From another host (none of these journals): young, so kept.
    let other_state = tempfile::tempdir().unwrap();
    let elsewhere = setup.elsewhere(other_state.path()).await;
    let report = clean_up(&elsewhere, &CleanupOptions::default())
        .await
        .unwrap();
    assert!(report.aborted_uploads.is_empty());
    assert_eq!(uploads().await.len(), 1);

    // A live run holds the lock: kept even when old enough.
    let held = setup.hold_lock().await;
    let report = clean_up(
        &setup.repository,
        &CleanupOptions {
            min_age: Duration::ZERO,
            ..CleanupOptions::default()
        },
    )
    .await
    .unwrap();
    // Its upload and its completed volume 0 (no manifest yet) both stay.
    assert_eq!(report.kept_live, 2, "{report:?}");
    assert!(report.aborted_uploads.is_empty(), "{report:?}");
    assert!(report.deleted_volumes.is_empty(), "{report:?}");
    assert_eq!(uploads().await.len(), 1);
    drop(held);

    // The run is dead (its lock is free): its upload goes, however young; the young
    // orphan volume 0 stays.
    let report = clean_up(&setup.repository, &CleanupOptions::default())
        .await
        .unwrap();
    assert_eq!(
        report.aborted_uploads,
        vec![setup.volume_key(&before, 1)],
        "{report:?}"
    );
    assert!(report.deleted_volumes.is_empty());
    assert!(uploads().await.is_empty());

    // The journal stays usable: the next run verifies volume 0 and re-uploads volume 1
    // under a fresh salt.
    let Attempt::Uploaded(uploaded) = upload_resumable(
        &setup.repository,
        &setup.journal_path,
        setup.journal_on_disk().await,
        chunked(&bytes),
        &Bytes_::default(),
    )
    .await
    .unwrap() else {
        panic!("the resumed upload must finish")
    };
    assert!(setup.has_salt(&before, 0, &before.volumes[0].salt).await);
    assert!(!setup.has_salt(&before, 1, &before.volumes[1].salt).await);
    setup.commit_and_read_back(&uploaded, &bytes).await;
}

/// Runs `upload_resumable` with the journal's header (no volumes) to the end.
async fn resumed(setup: &Setup, repository: &Repo, bytes: &[u8]) -> UploadedStream {
    finished(setup, repository, setup.journal.clone(), bytes).await
}

/// Continues the interrupted upload whose journal is on disk, through `repository`.
async fn resumed_from_disk(setup: &Setup, repository: &Repo, bytes: &[u8]) -> UploadedStream {
    finished(setup, repository, setup.journal_on_disk().await, bytes).await
}

async fn finished(
    setup: &Setup,
    repository: &Repo,
    journal: Journal,
    bytes: &[u8],
) -> UploadedStream {
    match upload_resumable(
        repository,
        &setup.journal_path,
        journal,
        chunked(bytes),
        &Bytes_::default(),
    )
    .await
    .unwrap()
    {
        Attempt::Uploaded(uploaded) => uploaded,
        other => panic!("expected the upload to finish: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_in_flight_come_from_the_current_run_not_the_journal() {
    let setup = setup().await;
    let bytes = stream_bytes(STREAM_LEN, 0x2718_2818_2845_9045);
    let mut before = setup.interrupted(&bytes, fail_part(5)).await;
    // A journal written with a concurrency this run cannot use (0 is refused by every
    // shape check): the run's own (2, from the header it is given) applies.
    before.shape.parts_in_flight = 0;
    JournalFile::new(setup.journal_path.clone(), before)
        .save()
        .await
        .unwrap();
    let uploaded = resumed(&setup, &setup.repository, &bytes).await;
    setup.commit_and_read_back(&uploaded, &bytes).await;
}

/// Deletes one volume object when the `at`-th part is reported: the volumes before it
/// are complete by then.
struct DeleteVolumeAt {
    backend: Arc<MemoryBackend>,
    key: zib_storage_backend::ObjectKey,
    at: u64,
    parts: std::sync::Mutex<u64>,
}

impl Progress for DeleteVolumeAt {
    fn part_uploaded(&self, _: u64) {
        let mut parts = self.parts.lock().unwrap();
        *parts += 1;
        if *parts == self.at {
            futures::executor::block_on(self.backend.delete(&self.key)).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_gone_before_the_commit_fails_the_upload_and_is_sent_again_fresh() {
    let setup = setup().await;
    let bytes = stream_bytes(STREAM_LEN, 0x1618_0339_8874_9894);
    let progress = DeleteVolumeAt {
        backend: setup.backend.clone(),
        key: setup.volume_key(&setup.journal, 0),
        // Volume 0 has 3 parts; the 4th is volume 1's first.
        at: 4,
        parts: std::sync::Mutex::new(0),
    };
    let error = upload_resumable(
        &setup.repository,
        &setup.journal_path,
        setup.journal.clone(),
        chunked(&bytes),
        &progress,
    )
    .await
    .expect_err("a volume missing before the commit fails the upload");
    match &error {
        Error::VolumeMissing {
            key, found: None, ..
        } => assert_eq!(*key, setup.volume_key(&setup.journal, 0).to_string()),
        other => panic!("expected the missing volume, got {other}"),
    }
    // Volume 0 and the later ones are dropped, objects and journal entries alike.
    let after = setup.journal_on_disk().await;
    assert!(after.volumes.is_empty(), "{after:?}");
    for index in 0..3 {
        assert!(!setup
            .backend
            .exists(&setup.volume_key(&setup.journal, index))
            .await
            .unwrap());
    }
    let uploaded = resumed(&setup, &setup.repository, &bytes).await;
    let journal = setup.journal_on_disk().await;
    assert_eq!(journal.completed_volumes(), 3);
    setup.commit_and_read_back(&uploaded, &bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_volume_gone_when_resuming_is_uploaded_again_under_a_fresh_salt() {
    let setup = setup().await;
    let bytes = stream_bytes(STREAM_LEN, 0x5772_1566_4901_5328);
    let before = setup.interrupted(&bytes, fail_part(5)).await;
    assert_eq!(before.completed_volumes(), 1);
    setup
        .backend
        .delete(&setup.volume_key(&before, 0))
        .await
        .unwrap();
    let uploaded = resumed(&setup, &setup.repository, &bytes).await;
    for volume in &before.volumes {
        assert!(
            !setup.has_salt(&before, volume.index, &volume.salt).await,
            "volume {} is sent again under a fresh salt",
            volume.index
        );
    }
    setup.commit_and_read_back(&uploaded, &bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_up_keeps_a_backups_old_volumes_while_it_has_a_young_upload() {
    let setup = setup().await;
    let bytes = stream_bytes(STREAM_LEN, 0x6931_4718_0559_9453);
    let before = setup.interrupted(&bytes, fail_part(5)).await;
    // Eight days later the upload of volume 1 is gone (a lifecycle rule), and the
    // backup is resumed: volume 0 verified, volume 1 started again — and stopped again.
    setup.clock.advance(Duration::from_secs(8 * 24 * 3600));
    setup
        .backend
        .abort_multipart(
            &setup.volume_key(&before, 1),
            &zib_storage_backend::UploadId::new(before.volumes[1].upload_id.clone()),
        )
        .await
        .unwrap();
    let faulty = setup
        .through(Arc::new(FaultInjecting::new(
            setup.backend.clone(),
            vec![fail_part(2)],
            7,
        )))
        .await;
    upload_resumable(
        &faulty,
        &setup.journal_path,
        setup.journal.clone(),
        chunked(&bytes),
        &Bytes_::default(),
    )
    .await
    .expect_err("the injected fault stops the upload");
    assert_eq!(
        setup
            .backend
            .list_multipart_uploads("")
            .await
            .unwrap()
            .len(),
        1
    );

    // Volume 0 is eight days old, the backup's upload a moment: nothing goes (seen from
    // another host, where no journal says the run is dead).
    let other_state = tempfile::tempdir().unwrap();
    let report = clean_up(
        &*setup.elsewhere(other_state.path()).await,
        &CleanupOptions::default(),
    )
    .await
    .unwrap();
    assert!(report.deleted_volumes.is_empty(), "{report:?}");
    assert!(report.aborted_uploads.is_empty(), "{report:?}");
    assert_eq!(report.kept_recent, 2, "{report:?}");
    let uploaded = resumed(&setup, &setup.repository, &bytes).await;
    assert!(setup.has_salt(&before, 0, &before.volumes[0].salt).await);
    setup.commit_and_read_back(&uploaded, &bytes).await;

    // Once everything of a backup is old, its orphan volumes go.
    let abandoned = self::setup().await;
    abandoned.interrupted(&bytes, fail_part(5)).await;
    abandoned.clock.advance(Duration::from_secs(8 * 24 * 3600));
    let report = clean_up(
        &*abandoned.elsewhere(other_state.path()).await,
        &CleanupOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.deleted_volumes.len(), 1, "{report:?}");
    assert_eq!(report.aborted_uploads.len(), 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_up_keeps_every_upload_of_a_live_backup_by_its_key() {
    let setup = setup().await;
    let bytes = stream_bytes(STREAM_LEN, 0x1414_2135_6237_3095);
    let before = setup.interrupted(&bytes, fail_part(5)).await;
    // The live run holds its lock and has just started volume 2's upload, which its
    // journal does not name yet (the upload is created before it is journalled).
    let held = setup.hold_lock().await;
    let key = setup.volume_key(&before, 2);
    setup
        .backend
        .create_multipart(
            &key,
            &zib_storage_backend::WriteOptions::new(StorageClass::Standard),
        )
        .await
        .unwrap();
    let report = clean_up(
        &setup.repository,
        &CleanupOptions {
            min_age: Duration::ZERO,
            ..CleanupOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(report.aborted_uploads.is_empty(), "{report:?}");
    assert!(report.deleted_volumes.is_empty(), "{report:?}");
    assert_eq!(report.kept_live, 3, "{report:?}");
    assert_eq!(
        setup
            .backend
            .list_multipart_uploads("")
            .await
            .unwrap()
            .len(),
        2
    );
    drop(held);
}

/// The in-memory backend, storing a copy of each part and dropping the part's own
/// bytes, as the local directory and S3 backends do once a part is sent: the upload then
/// gets each part's buffer back for a later part. Records the distinct buffers seen.
#[derive(Debug)]
struct CopyingParts {
    inner: Arc<MemoryBackend>,
    buffers: std::sync::Mutex<std::collections::BTreeSet<usize>>,
}

impl CopyingParts {
    fn over(setup: &Setup) -> Arc<Self> {
        Arc::new(Self {
            inner: setup.backend.clone(),
            buffers: std::sync::Mutex::default(),
        })
    }

    /// No more buffers than parts in flight plus the one being filled, however many
    /// parts were sent.
    fn assert_few_buffers(&self, uploaded: &UploadedStream) {
        let buffers = self.buffers.lock().unwrap().len();
        assert!(
            (1..=shape().parts_in_flight + 1).contains(&buffers),
            "{buffers} buffers for {} parts",
            uploaded.parts
        );
    }
}

#[async_trait::async_trait]
impl zib_storage_backend::Forwarding for CopyingParts {
    fn inner(&self) -> &dyn StorageBackend {
        self.inner.as_ref()
    }

    async fn upload_part(
        &self,
        key: &zib_storage_backend::ObjectKey,
        upload: &zib_storage_backend::UploadId,
        number: u32,
        data: Bytes,
    ) -> zib_storage_backend::Result<zib_storage_backend::PartInfo> {
        self.buffers.lock().unwrap().insert(data.as_ptr() as usize);
        let copy = Bytes::copy_from_slice(&data);
        drop(data);
        self.inner.upload_part(key, upload, number, copy).await
    }
}

/// Part buffers handed back and filled again carry no byte of an earlier part into a
/// later one, fresh or resumed (a resumed run also hands back the parts it skips), and
/// there are never more of them than parts in flight plus the one being filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_part_buffers_leave_every_volume_whole() {
    let setup = setup().await;
    let bytes = stream_bytes(STREAM_LEN, 0x0b0f_fe75_u64);
    let before = setup.interrupted(&bytes, fail_part(6)).await;
    assert!(before.confirmed_parts() >= 3, "{before:?}");
    let copying = CopyingParts::over(&setup);
    let repository = setup.through(copying.clone()).await;
    let uploaded = resumed_from_disk(&setup, &repository, &bytes).await;
    copying.assert_few_buffers(&uploaded);
    setup.commit_and_read_back(&uploaded, &bytes).await;

    // A fresh backup of another stream through the same stack.
    let fresh = self::setup().await;
    let other = stream_bytes(STREAM_LEN + 12_345, 0x5eed_b0f5_u64);
    let copying = CopyingParts::over(&fresh);
    let repository = fresh.through(copying.clone()).await;
    let uploaded = resumed(&fresh, &repository, &other).await;
    copying.assert_few_buffers(&uploaded);
    fresh.commit_and_read_back(&uploaded, &other).await;
}
