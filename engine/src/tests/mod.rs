//! Tests of the engine's internals — the volume pipeline, the resume journal, the locks
//! and the state directory — which are private, so they live in the crate. The public
//! API is tested from `engine/tests/`.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod catalog_cache;
mod part_boundaries;
mod pending_snapshot;
mod pipeline_memory;
mod resume_memory;
mod resume_real;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use zib_crypto::KdfParams;
use zib_storage_backend::s3::{S3Backend, S3Config, StaticCredentials};
use zib_storage_backend::{StorageBackend, StorageClass};
use zib_test_utils::moto::MotoServer;

use crate::backup::{BackupOptions, BackupOutcome, CommittedBackup};
use crate::context::Repo;
use crate::error::{Error, Result};
use crate::ids::{BackupId, DatasetId};
use crate::location::Location;
use crate::progress::Progress;
use crate::repository::{Host, InitOptions};
use crate::state::journal::{read_journal, Journal, JournalFile, JournalSnapshot};
use crate::state::lock::lock_dataset;
use crate::state::{DatasetFiles, StateDir};
use crate::upload::parts::PartCheck;
use crate::upload::recorder::Recorder;
use crate::upload::shape::PartCutting;
use crate::upload::{upload_journalled, Attempt, UploadedStream, VolumeShape};
use crate::FakeClock;

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

/// Back up into a new snapshot in small volumes.
pub(crate) fn backup_options() -> BackupOptions {
    BackupOptions {
        shape: small_shape(),
        ..BackupOptions::default()
    }
}

/// `backend` under `prefix`.
pub(crate) fn location(backend: Arc<dyn StorageBackend>, prefix: &str) -> Location {
    Location::new(backend, prefix).unwrap()
}

/// A host keeping its state in `state_dir`, on `clock`.
pub(crate) fn host(state_dir: &Path, clock: &FakeClock) -> Host {
    Host::new(state_dir).with_clock(Arc::new(clock.clone()))
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
    let backend = Arc::new(
        S3Backend::connect(&s3_config_at(&moto.endpoint(), &bucket))
            .await
            .unwrap(),
    );
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

/// Where the journal of `dataset`'s backups into `repository` lives under `state_dir`.
pub(crate) fn journal_path(
    state_dir: &Path,
    repository: crate::ids::RepositoryId,
    dataset: &str,
) -> PathBuf {
    StateDir::new(state_dir)
        .dataset(repository, dataset)
        .journal
}

/// A new full backup's journal for `dataset`, with nothing uploaded yet.
pub(crate) fn new_journal(repository: &Repo, dataset: &str, shape: VolumeShape) -> Journal {
    let random = ring::rand::SystemRandom::new();
    Journal {
        repository_id: repository.id(),
        dataset_name: dataset.into(),
        dataset_id: DatasetId::generate(&random).unwrap(),
        backup_id: BackupId::generate(&random).unwrap(),
        source: zib_snapshot_source::SourceKind::Zfs,
        target: JournalSnapshot {
            name: "zib-20270115T000000Z".into(),
            identity: zib_snapshot_source::SnapshotIdentity::ZfsGuid(42),
        },
        snapshot_created_by_zib: true,
        kind: crate::format::records::BackupKind::Full,
        send_flags: crate::format::records::SendFlagBits(0),
        shape,
        volumes: Vec::new(),
        cutting: PartCutting::FinalSegmentInLastPart,
        part_check: PartCheck::SegmentTags,
    }
}

/// The upload step of a backup on a stream the test brings: the journal at
/// `journal_path` decides (as in a backup run: a journal on disk is resumed, and
/// `journal` only starts a new one), under the dataset's lock.
pub(crate) async fn upload_resumable<S>(
    repository: &Repo,
    journal_path: &Path,
    journal: Journal,
    stream: S,
    progress: &dyn Progress,
) -> Result<Attempt>
where
    S: Stream<Item = std::result::Result<Bytes, Error>> + Unpin + Send,
{
    let lock_path = DatasetFiles::of_journal(journal_path).lock;
    let _lock = lock_dataset(&lock_path, &journal.dataset_name, false).await?;
    let parts_in_flight = journal.shape.parts_in_flight;
    let journal = match read_journal(journal_path).await? {
        Some(on_disk) => {
            assert_eq!(
                on_disk.backup_id, journal.backup_id,
                "the test resumes its own backup"
            );
            on_disk
        }
        None => {
            let file = JournalFile::new(journal_path.to_owned(), journal);
            file.save().await?;
            file.journal().clone()
        }
    };
    let mut recorder = Recorder::new(
        JournalFile::new(journal_path.to_owned(), journal),
        parts_in_flight,
    );
    upload_journalled(repository, stream, progress, None, &mut recorder).await
}

/// Uploads `stream` as backup `backup` of `dataset` (a throwaway journal), returning
/// what the manifest would record; the caller commits.
pub(crate) async fn upload_stream<S>(
    repository: &Repo,
    dataset: DatasetId,
    backup: BackupId,
    stream: S,
    shape: &VolumeShape,
    progress: &dyn Progress,
) -> Result<UploadedStream>
where
    S: Stream<Item = std::result::Result<Bytes, Error>> + Unpin + Send,
{
    let state = tempfile::tempdir().unwrap();
    let journal = Journal {
        dataset_id: dataset,
        backup_id: backup,
        ..new_journal(repository, "tank/photos", *shape)
    };
    let path = journal_path(state.path(), repository.id(), "tank/photos");
    match upload_resumable(repository, &path, journal, stream, progress).await? {
        Attempt::Uploaded(uploaded) => Ok(uploaded),
        Attempt::StreamChanged { .. } => panic!("a new backup cannot see a changed stream"),
    }
}
