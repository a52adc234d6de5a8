//! zib's engine: the library a program embeds to "back up dataset X to bucket Y" and to
//! get it back.
//!
//! Everything goes through a [`Repository`], opened (or initialised) at a [`Location`]
//! with the user's passphrase, on a [`Host`] that says where this machine keeps its
//! local state and what time it is:
//!
//! - [`Repository::backup`] sends one snapshot of a dataset — a full or an incremental,
//!   as the planner decides — encrypted into volumes, and commits it; a run killed at any
//!   instant is resumed by the next one without re-sending what the bucket confirmed;
//! - [`Repository::catalog`] reads which backups exist from the bucket alone (LIST and
//!   HEAD, never a restore);
//! - [`Repository::receive_chain`] receives a backup's chain from readable objects;
//! - [`Repository::verify`] checks, without a thaw, that every backup is still
//!   restorable and every object accounted for; [`Repository::drill`] proves it by
//!   restoring the smallest chain into a throwaway target;
//! - [`Repository::consolidate`] replaces a long chain by a fresh full when that pays,
//!   and deletes what no kept restore point needs once the safety rules allow
//!   ([`Repository::delete_superseded`] does the deleting alone, for an admin run);
//! - [`Repository::clean_up`], [`Repository::check_access`],
//!   [`Repository::change_passphrase`].
//!
//! Snapshots come from a [`SnapshotSource`] (ZFS, BTRFS, or your own); objects go to a
//! [`StorageBackend`](storage::StorageBackend) (S3, a local directory, or your own).
//! The crates behind these are re-exported ([`snapshot_source`], [`storage`],
//! [`planner`], [`crypto`]), so a program needs only this one.
//!
//! # Example
//!
//! Back up a dataset into a repository in a local directory, list the catalog, and
//! receive the newest backup's chain into another dataset. The snapshots here come from
//! the in-memory source of `zib-test-utils`, so the example runs anywhere; a real
//! program uses [`ZfsSource`](snapshot_source::zfs::ZfsSource) or
//! [`BtrfsSource`](snapshot_source::btrfs::BtrfsSource) the same way.
//!
//! ```
//! use zib_engine::{
//!     BackupOptions, BackupOutcome, DatasetName, Host, InitOptions, Location, NoProgress,
//!     Passphrase, Repository,
//! };
//! use zib_test_utils::memory_source::MemorySource;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let (repository_dir, state_dir) = (dir.path().join("repository"), dir.path().join("state"));
//! # std::fs::create_dir(&repository_dir)?;
//! // A dataset with a photo (a real program: `let source = ZfsSource::new();`).
//! let source = MemorySource::new();
//! let dataset = DatasetName::zfs("tank/photos")?;
//! source.create_dataset(&dataset);
//! source.write_file(&dataset, "IMG_0001.jpg", b"a photo");
//!
//! // A repository in a local directory (or "s3://bucket/prefix"), and this host's
//! // state directory (resume journals, locks).
//! let location = Location::from_url(repository_dir.to_str().unwrap(), &Default::default()).await?;
//! let passphrase = Passphrase::new("correct horse battery staple".into());
//! let host = Host::new(&state_dir);
//! # // A cheap scrypt cost keeps the example fast; real repositories use the default.
//! # let options = InitOptions { kdf: zib_engine::crypto::KdfParams::new(10, 8, 1)?, ..InitOptions::default() };
//! # /*
//! let options = InitOptions::default();
//! # */
//! let (repository, report) = Repository::init(&location, &passphrase, &options, host).await?;
//! // `report.keyring` is the keyring: the user must keep an offline copy of it.
//!
//! let outcome = repository
//!     .backup(&source, &dataset, &BackupOptions::default(), &NoProgress)
//!     .await?;
//! let BackupOutcome::Committed(backup) = outcome else { panic!("nothing to back up?") };
//! println!("sent {} bytes in {} volume(s)", backup.transfer.bytes_sent, backup.manifest.volume_count);
//!
//! // What the repository holds, from the bucket alone.
//! let catalog = repository.catalog().await?;
//! let dataset_id = catalog.dataset_named("tank/photos").unwrap();
//! let newest = catalog.backups(dataset_id).last().unwrap().manifest.backup_id;
//!
//! // Its chain (a full, then incrementals) received into a new dataset.
//! let target = DatasetName::zfs("tank/restored")?;
//! repository
//!     .receive_chain(&catalog, dataset_id, newest, &source, &target, &NoProgress)
//!     .await?;
//! assert_eq!(source.read_file(&target, "IMG_0001.jpg").as_deref(), Some(&b"a photo"[..]));
//! # Ok(())
//! # }
//! ```
//!
//! # What this crate is not
//!
//! It never prints, prompts or parses flags: that is the CLI's job. It logs with
//! `tracing`, reports progress through an injected [`Progress`], and reads time only
//! from the [`Host`]'s clock. Its internals — the resume journal, the locks, the volume
//! pipeline — are private: what is stored in the bucket is specified in
//! `docs/FORMAT.md`, and the way through is the [`Repository`].

mod access;
mod backup;
mod catalog;
mod cleanup;
mod clock;
mod consolidate;
mod context;
mod deletion;
mod download;
mod error;
mod export;
mod file_chunks;
mod format;
mod hashing;
// Bodies of the fuzz targets in `fuzz/`, run over the corpus by `tests/fuzz_corpus.rs`.
#[doc(hidden)]
pub mod fuzz_targets;
mod ids;
mod keyring;
mod kit;
mod location;
mod progress;
mod repository;
mod restore;
mod state;
mod upload;
mod verify;

#[cfg(test)]
mod tests;

/// What the engine's own benchmarks measure below the API (`--features internals`).
/// Not part of the API: no stability promise, and nothing a program should call.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::state::journal::journal_save_benchmark;

    /// Commits `manifest` as a backup would, and writes a one-byte object for each volume
    /// it names: a catalog of thousands of backups without sending thousands of streams.
    /// The volumes do not decrypt; nothing but a catalog benchmark may read them.
    pub async fn commit_catalog_benchmark_backup(
        repository: &crate::Repository,
        manifest: &crate::ManifestRecord,
    ) -> crate::Result<()> {
        use zib_storage_backend::{PutPrecondition, StorageBackend as _, WriteOptions};
        let context = repository.context();
        for index in 0..manifest.volume_count {
            let key = context.key(&crate::format::layout::ObjectRole::Volume {
                dataset: manifest.dataset_id,
                backup: manifest.backup_id,
                index,
            })?;
            context
                .backend()
                .put(
                    &key,
                    bytes::Bytes::from_static(b"v"),
                    &WriteOptions::new(zib_storage_backend::StorageClass::Standard),
                    &PutPrecondition::None,
                )
                .await?;
        }
        crate::backup::commit_manifest(context, manifest).await
    }
}

pub use access::{
    AccessReport, AccessStep, AccessWarning, LifecycleStatus, ABORT_AFTER_DAYS, LIFECYCLE_RULE_ID,
};
pub use backup::{
    BackupOptions, BackupOutcome, BackupPreview, CommittedBackup, PruneReport, SnapshotChoice,
    Transfer,
};
pub use catalog::{Catalog, CatalogBackup, IncompleteUpload, Leftovers, OrphanVolume};
pub use cleanup::{CleanupOptions, CleanupReport};
pub use clock::{Clock, FakeClock, SystemClock};
pub use consolidate::{ConsolidateOptions, ConsolidationReport};
pub use deletion::{DeletedBackup, DeletionOptions, DeletionReport, PendingDeletion, WaitingFor};
pub use error::{Error, Result};
pub use export::{OfflineCopy, OfflineCopyOptions, SHEET_NAME};
pub use format::records::{BackupKind, ManifestRecord, ReplacedIncremental, SendFlagBits};
pub use ids::{BackupId, DatasetId, InvalidId, RandomUnavailable, RepositoryId, RestoreJobId};
pub use keyring::{ArchivedKeyring, KeyringRepair};
pub use location::{ConnectOptions, Location};
pub use progress::{NoProgress, Progress};
pub use repository::{Host, InitOptions, InitReport, PassphraseChange, Repository};
pub use restore::{NewRestore, RestoreJob, RestoreState, RestoreStatus, WaitReason};
pub use upload::VolumeShape;
pub use verify::{
    smallest_chain, DrillReport, DrillRequest, DrillSkip, DrillStart, DrillState, Problem,
    ProblemKind, RestorePoint, Severity, VerifyCost, VerifyOptions, VerifyReport,
};

// What an embedder names most, so one `use zib_engine::…` line does.
pub use zib_crypto::Passphrase;
pub use zib_snapshot_source::{DatasetName, SnapshotName, SnapshotSource, SourceKind};

/// The crates the engine is built on, for what the root does not re-export.
pub use zib_crypto as crypto;
pub use zib_planner as planner;
pub use zib_snapshot_source as snapshot_source;
pub use zib_storage_backend as storage;
