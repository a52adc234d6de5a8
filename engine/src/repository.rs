//! A repository: one keyring, a README, and the backups of any number of datasets,
//! under one [`Location`] — and the handle a program works through.
//!
//! [`Repository::init`] creates the keyring (and its archived copy) and the README with
//! create-if-absent puts, so two hosts initialising the same place cannot overwrite each
//! other; [`Repository::open`] reads the keyring and unlocks it before any other work,
//! so a wrong passphrase is the first error a user sees.
//!
//! `init` runs the whole [access check](crate::access) before writing anything, so a
//! missing permission is reported, with the permission's name, before the location holds
//! half a repository; then it sets the bucket's lifecycle rule for abandoned uploads when
//! allowed. `open` writes nothing: a refusal while reading the keyring names the missing
//! permission, and [`Repository::check_access`] reports the rest (a missing lifecycle rule
//! is a warning there).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use zib_crypto::{KdfParams, Keyring, Passphrase};
use zib_snapshot_source::{DatasetName, SnapshotInfo, SnapshotSource};
use zib_storage_backend::{
    ByteRange, Error as StorageError, PutPrecondition, StorageBackend, StorageBackendExt,
    StorageClass, WriteOptions,
};

use crate::access::{
    check_access, check_listing, ensure_lifecycle_rule, keyring_read_error, AccessCheckOptions,
    AccessReport, LifecycleStatus,
};
use crate::backup::{BackupOptions, BackupOutcome};
use crate::catalog::Catalog;
use crate::cleanup::{CleanupOptions, CleanupReport};
use crate::clock::{unix_seconds, Clock, SystemClock};
use crate::context::Repo;
use crate::error::{Error, Result};
use crate::format::layout::{keyring_archive_prefix, object_key, ObjectRole};
use crate::format::metadata::{plain_metadata, REPOSITORY_NAME};
use crate::ids::{BackupId, DatasetId, RepositoryId, RestoreJobId};
use crate::keyring::{self, ArchivedKeyring, KeyringRepair};
use crate::location::Location;
use crate::progress::Progress;
use crate::state::StateDir;

/// What a repository handle needs from the machine it runs on: where this host keeps
/// its local state (resume journals, locks) and what time it is.
///
/// The state directory MUST be local to the host (not shared between hosts: its locks
/// keep two runs on this host apart, and another host's runs are not visible there).
/// Nothing in it is needed to restore.
#[derive(Debug, Clone)]
pub struct Host {
    state_dir: PathBuf,
    clock: Arc<dyn Clock>,
}

impl Host {
    /// This host, keeping its state in `state_dir` (created when first needed), on the
    /// system clock.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same host on another clock (tests drive months and thaw delays with a
    /// [`FakeClock`](crate::FakeClock)). Every time the engine reads comes from it.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

/// How a new repository is set up.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where volumes, manifests and the keyring's archived copy go (`DEEP_ARCHIVE` by
    /// default). Fixed for the repository's life: later opens read it back.
    pub archive_class: StorageClass,
    /// scrypt cost of the keyring (format v1's fixed default unless a test needs speed).
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            archive_class: StorageClass::DeepArchive,
            kdf: KdfParams::default(),
        }
    }
}

/// An open repository: the location, the repository id, the unlocked data key, and the
/// host it is used from. Every operation is a method; the handle is cheap to clone and
/// may be used from many tasks at once.
#[derive(Debug, Clone)]
pub struct Repository {
    context: Arc<Repo>,
}

/// What [`Repository::init`] did, for the caller to tell the user.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The new repository's id.
    pub repository_id: RepositoryId,
    /// The keyring bytes: the user MUST be told to keep an offline copy (without the
    /// keyring and the passphrase, nothing in the repository can be read).
    pub keyring: Vec<u8>,
    /// Key of the archived copy of the keyring.
    pub keyring_archive_key: String,
    /// What the access check found before anything was written (warnings for missing
    /// permissions that backups do not need at once), with the lifecycle rule as it is
    /// after init.
    pub access: AccessReport,
    /// The bucket rule that aborts abandoned uploads: set, already present, not
    /// applicable, or missing with a warning naming the permission to add.
    pub lifecycle: LifecycleStatus,
}

/// What [`Repository::change_passphrase`] wrote.
#[derive(Debug, Clone)]
pub struct PassphraseChange {
    /// The new keyring bytes: the offline copy the user keeps must be replaced by these.
    pub keyring: Vec<u8>,
    /// Key of the new archived copy of the keyring.
    pub keyring_archive_key: String,
}

impl Repository {
    /// Creates a repository at `location`.
    ///
    /// # Errors
    ///
    /// [`Error::AccessDenied`] when a permission zib needs is missing (nothing is
    /// written; the error names the permission); [`Error::AlreadyInitialised`] when a
    /// keyring exists there (nothing is written); storage errors as they come.
    pub async fn init(
        location: &Location,
        passphrase: &Passphrase,
        options: &InitOptions,
        host: Host,
    ) -> Result<(Self, InitReport)> {
        let backend = location.backend().clone();
        let prefix = location.prefix().to_owned();
        let keyring_key = object_key(&prefix, &ObjectRole::Keyring)?;
        // Listing first: without s3:ListBucket, S3 answers a HEAD of a missing key with
        // 403, which would otherwise be blamed on the wrong permission.
        check_listing(backend.as_ref(), &prefix).await?;
        if backend
            .exists(&keyring_key)
            .await
            .map_err(|error| keyring_read_error(&prefix, error))?
        {
            return Err(Error::AlreadyInitialised {
                location: keyring_key.as_str().to_owned(),
            });
        }
        let mut access = check_access(
            backend.as_ref(),
            &prefix,
            &AccessCheckOptions {
                write_probe: true,
                read_keyring: false,
            },
        )
        .await?;
        let id = RepositoryId::generate(&ring::rand::SystemRandom::new())?;
        let (keyring, data_key) = Keyring::create(passphrase, options.kdf)?;
        let keyring_bytes = keyring.to_bytes();

        // The decoder kit and the README first: harmless if we stop here, and they tell
        // whoever finds the bucket what it is and how to read it.
        crate::kit::write_files(backend.as_ref(), &prefix, id, &options.archive_class).await?;
        put_small(
            backend.as_ref(),
            &prefix,
            &ObjectRole::Readme,
            id,
            Bytes::from(readme_text(id)?),
            StorageClass::Standard,
            &PutPrecondition::IfAbsent,
        )
        .await?;
        // The archived copy before the live keyring: the live keyring's existence is what
        // makes the location a repository, so it is written last.
        let archive_role = ObjectRole::KeyringArchive {
            written_at: unix_seconds(host.clock.as_ref()),
        };
        put_small(
            backend.as_ref(),
            &prefix,
            &archive_role,
            id,
            Bytes::from(keyring_bytes.clone()),
            options.archive_class.clone(),
            &PutPrecondition::IfAbsent,
        )
        .await?;
        match put_small(
            backend.as_ref(),
            &prefix,
            &ObjectRole::Keyring,
            id,
            Bytes::from(keyring_bytes.clone()),
            StorageClass::Standard,
            &PutPrecondition::IfAbsent,
        )
        .await
        {
            Err(Error::Storage(StorageError::Precondition { .. })) => {
                return Err(Error::AlreadyInitialised {
                    location: keyring_key.as_str().to_owned(),
                })
            }
            other => other?,
        }
        let lifecycle = ensure_lifecycle_rule(backend.as_ref(), &prefix).await;
        if let Some(warning) = lifecycle.warning() {
            tracing::warn!(%warning, "bucket lifecycle rule");
        }
        // The check saw the rule before init set it; report it as it is now.
        access.lifecycle = lifecycle.clone();
        let report = InitReport {
            repository_id: id,
            keyring: keyring_bytes,
            keyring_archive_key: format!("{prefix}{}", archive_role.key()),
            access,
            lifecycle,
        };
        Ok((
            Self::from_context(Repo {
                backend,
                prefix,
                id,
                data_key,
                archive_class: options.archive_class.clone(),
                clock: host.clock,
                state: StateDir::new(host.state_dir),
                downloaded: location.downloaded().clone(),
            }),
            report,
        ))
    }

    /// Opens the repository at `location` with `passphrase`. The class new backups are
    /// written in is the repository's own (chosen at init), read back from its archived
    /// keyring copies.
    ///
    /// # Errors
    ///
    /// [`Error::NotARepository`] when there is no keyring; [`Error::AccessDenied`] when
    /// the keyring may not be listed or read (naming the permission); [`Error::Crypto`]
    /// with `WrongPassphrase` or a corrupt keyring; storage errors as they come.
    pub async fn open(location: &Location, passphrase: &Passphrase, host: Host) -> Result<Self> {
        let backend = location.backend().clone();
        let prefix = location.prefix().to_owned();
        let keyring_key = object_key(&prefix, &ObjectRole::Keyring)?;
        let meta = match backend.head(&keyring_key).await {
            Err(StorageError::NotFound { .. }) => {
                // Backups without their keyring are a lost keyring, not a new location.
                return Err(
                    match keyring::repository_id_of(backend.as_ref(), &prefix).await {
                        Ok(_) => Error::KeyringMissing {
                            location: keyring_key.as_str().to_owned(),
                        },
                        Err(_) => Error::NotARepository {
                            location: keyring_key.as_str().to_owned(),
                        },
                    },
                );
            }
            // S3 refuses a HEAD without s3:GetObject, and also a HEAD of a missing key
            // without s3:ListBucket: a listing tells which permission is missing.
            Err(error @ StorageError::PermissionDenied { .. }) => {
                check_listing(backend.as_ref(), &prefix).await?;
                return Err(keyring_read_error(&prefix, error));
            }
            other => other?,
        };
        let id: RepositoryId = meta
            .metadata
            .get(REPOSITORY_NAME)
            .ok_or_else(|| Error::Corrupt {
                object: keyring_key.as_str().to_owned(),
                reason: format!("metadata {REPOSITORY_NAME} is missing"),
            })?
            .parse()
            .map_err(|error| Error::Corrupt {
                object: keyring_key.as_str().to_owned(),
                reason: format!("{error}"),
            })?;
        let bytes = backend
            .get_bytes(&keyring_key, ByteRange::full())
            .await
            .map_err(|error| keyring_read_error(&prefix, error))?;
        let data_key =
            zib_crypto::open_keyring(&bytes, passphrase).map_err(|error| match error {
                zib_crypto::Error::CorruptKeyring { reason } => Error::KeyringDamaged {
                    location: keyring_key.as_str().to_owned(),
                    reason,
                },
                other => other.into(),
            })?;
        let archive_class = archive_class_of(backend.as_ref(), &prefix).await?;
        Ok(Self::from_context(Repo {
            backend,
            prefix,
            id,
            data_key,
            archive_class,
            clock: host.clock,
            state: StateDir::new(host.state_dir),
            downloaded: location.downloaded().clone(),
        }))
    }

    /// Opens the repository at `location` with a keyring from elsewhere — the user's
    /// offline copy, or an archived copy from [`Repository::fetch_archived_keyring`] —
    /// for when the live `keyring` object is lost or damaged. Nothing is written; put
    /// the live keyring back with [`Repository::repair_keyring`].
    ///
    /// The copy must belong to this repository: its key id must equal the live
    /// keyring's (when that still parses) and it must open a backup's sealed metadata
    /// (when there is one).
    ///
    /// # Errors
    ///
    /// [`Error::Crypto`] when `keyring` is not a keyring or `passphrase` does not open
    /// it; [`Error::ForeignKeyring`] when it belongs to another repository;
    /// [`Error::NotARepository`] when no object at `location` names a repository;
    /// storage errors as they come.
    pub async fn open_with_keyring(
        location: &Location,
        passphrase: &Passphrase,
        keyring: &[u8],
        host: Host,
    ) -> Result<Self> {
        let backend = location.backend().clone();
        let prefix = location.prefix().to_owned();
        let (parsed, data_key) = keyring::unlock(keyring, passphrase)?;
        let id = keyring::repository_id_of(backend.as_ref(), &prefix).await?;
        let archive_class = archive_class_of(backend.as_ref(), &prefix).await?;
        let repository = Self::from_context(Repo {
            backend,
            prefix,
            id,
            data_key,
            archive_class,
            clock: host.clock,
            state: StateDir::new(host.state_dir),
            downloaded: location.downloaded().clone(),
        });
        keyring::check_belongs(&repository.context, &parsed).await?;
        Ok(repository)
    }

    /// Fetches the newest archived copy of the keyring (`keyring-archive/<time>`), the
    /// way a volume is restored: the first call requests its restore (Standard tier; Deep
    /// Archive thaws it within 12 hours) and answers [`ArchivedKeyring::Thawing`]; a call
    /// once it has thawed answers [`ArchivedKeyring::Ready`] with the bytes, to open the
    /// repository with ([`Repository::open_with_keyring`]). No passphrase is needed: the
    /// copy is useless without it. The bytes read count in the state directory's
    /// download ledger.
    ///
    /// # Errors
    ///
    /// [`Error::NoArchivedKeyring`] when the repository has no archived copy; storage
    /// errors as they come.
    pub async fn fetch_archived_keyring(
        location: &Location,
        host: Host,
    ) -> Result<ArchivedKeyring> {
        let ledger = crate::state::ledger::Ledger::new(&host.state_dir);
        keyring::fetch_archived(
            location.backend().as_ref(),
            location.prefix(),
            &ledger,
            unix_seconds(host.clock.as_ref()),
        )
        .await
    }

    /// Puts `keyring` (the copy this repository was opened with, or another copy of the
    /// same key) back as the live `keyring` object when that is missing, damaged or
    /// foreign; an intact live keyring is left alone. A damaged one is replaced only if
    /// it is still the object read here (`If-Match`).
    ///
    /// # Errors
    ///
    /// [`Error::Crypto`] when `keyring` is not a keyring; [`Error::ForeignKeyring`] when
    /// it wraps another data key; storage errors as they come.
    pub async fn repair_keyring(&self, keyring: &[u8]) -> Result<KeyringRepair> {
        let parsed = zib_crypto::Keyring::from_bytes(keyring)?;
        keyring::repair(&self.context, &parsed).await
    }

    /// Re-wraps the data key under `new` (scrypt cost `kdf`, normally
    /// [`KdfParams::default`]) without touching any backup: the new keyring is first
    /// written as a new archived copy (create-if-absent), then replaces the live
    /// `keyring` only if that is still the one this change read (`If-Match`). A run
    /// killed in between leaves the old keyring live (the old passphrase still opens the
    /// repository) and an archived copy that the new one opens; running the change again
    /// finishes it. The user's offline copy of the keyring must be replaced by the one
    /// returned.
    ///
    /// # Errors
    ///
    /// [`Error::Crypto`] with `WrongPassphrase` when `old` does not open the keyring;
    /// storage errors (a `Precondition` when another change replaced the keyring
    /// meanwhile: open the repository again and retry).
    pub async fn change_passphrase(
        &self,
        old: &Passphrase,
        new: &Passphrase,
        kdf: KdfParams,
    ) -> Result<PassphraseChange> {
        let context = &self.context;
        let keyring_key = context.key(&ObjectRole::Keyring)?;
        let current = context.backend.head(&keyring_key).await?;
        let bytes = context
            .backend
            .get_bytes(&keyring_key, ByteRange::full())
            .await?;
        let rewrapped = zib_crypto::change_passphrase(&bytes, old, new, kdf)?;
        // A copy already archived within this second (`init`, or another change just
        // now) takes the name: the next free second is used, so the newest copy keeps
        // the newest name.
        let mut written_at = unix_seconds(context.clock());
        let archive_role = loop {
            let role = ObjectRole::KeyringArchive { written_at };
            match put_small(
                context.backend.as_ref(),
                &context.prefix,
                &role,
                context.id,
                Bytes::from(rewrapped.clone()),
                context.archive_class.clone(),
                &PutPrecondition::IfAbsent,
            )
            .await
            {
                Ok(()) => break role,
                Err(Error::Storage(StorageError::Precondition { .. }))
                    if written_at < unix_seconds(context.clock()) + ARCHIVE_NAME_TRIES =>
                {
                    written_at += 1;
                }
                Err(error) => return Err(error),
            }
        };
        put_small(
            context.backend.as_ref(),
            &context.prefix,
            &ObjectRole::Keyring,
            context.id,
            Bytes::from(rewrapped.clone()),
            StorageClass::Standard,
            &PutPrecondition::IfMatch(current.etag),
        )
        .await?;
        Ok(PassphraseChange {
            keyring: rewrapped,
            keyring_archive_key: format!("{}{}", context.prefix, archive_role.key()),
        })
    }

    /// Checks, step by step, what the credentials may do in this repository (each
    /// [`AccessStep`](crate::AccessStep) proves one IAM permission with the cheapest
    /// request that needs it), and whether the bucket's lifecycle rule for abandoned uploads
    /// is in place (reported, never written). With `write_probe` a zero-byte probe
    /// object is written and deleted again; without, the check only reads.
    ///
    /// # Errors
    ///
    /// [`Error::AccessDenied`] naming the first missing permission that backups need;
    /// storage errors as they come.
    pub async fn check_access(&self, write_probe: bool) -> Result<AccessReport> {
        check_access(
            self.context.backend.as_ref(),
            &self.context.prefix,
            &AccessCheckOptions {
                write_probe,
                read_keyring: true,
            },
        )
        .await
    }

    /// The catalog — every committed backup, by dataset, with its chain, sizes and
    /// dates — read from the bucket alone with LIST and HEAD requests (never a GET of an
    /// archived object, never a restore).
    ///
    /// # Errors
    ///
    /// Storage errors; [`Error::Corrupt`] / [`Error::Crypto`] when a manifest's metadata
    /// does not decode or open (an altered or foreign object under `manifests/`).
    pub async fn catalog(&self) -> Result<Catalog> {
        crate::catalog::read_catalog(&self.context).await
    }

    /// Backs up one snapshot of `dataset` from `source`, or continues the backup of it
    /// that an earlier run on this host left unfinished (killed, out of network, ...):
    /// then nothing the bucket confirmed is sent again.
    ///
    /// Dropping the returned future stops the backup: its part uploads are cancelled, and
    /// the next run resumes it.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] when another run is backing up the dataset on this host (unless
    /// `options.wait_for_lock`); source errors (unknown dataset, `zfs send` failed —
    /// nothing is committed then, and the upload is kept for the next run) and storage
    /// errors (the upload is kept and the next run resumes it); [`Error::VolumeMissing`]
    /// when a volume vanished from the bucket before the commit (the next run sends it
    /// again); [`Error::LocalState`] when the state directory is not writable;
    /// [`Error::StreamUnstable`]; [`Error::UnfinishedBackup`] when another snapshot is
    /// asked for than the one an unfinished backup is sending (the message says how to
    /// finish or discard that backup); [`Error::SnapshotNotFound`]; [`Error::InvalidInput`]
    /// for an invalid volume shape.
    pub async fn backup(
        &self,
        source: &dyn SnapshotSource,
        dataset: &DatasetName,
        options: &BackupOptions,
        progress: &dyn Progress,
    ) -> Result<BackupOutcome> {
        self.ensure_kit().await;
        crate::backup::back_up(
            &self.context,
            source,
            dataset,
            options,
            crate::backup::Intent::BACKUP,
            progress,
        )
        .await
    }

    /// Consolidates `dataset`: backs it up — a fresh full when the planner finds that a
    /// full plus the incrementals after it costs less than keeping the chain, or always
    /// with `options.force` — and, once that backup has committed, deletes from the
    /// bucket the backups no kept restore point needs whose time has come (see
    /// [`DeletionOptions`](crate::DeletionOptions) for the rules). The superseded chain is not deleted by this
    /// call's full: it waits for the grace period and a later backup, and a later
    /// backup (policy `auto`) or consolidation deletes it.
    ///
    /// A stop at any instant leaves every kept restore point restorable: the full is a
    /// backup like any other (the next run resumes it), and deletions go manifest first,
    /// newest backup first.
    ///
    /// ```
    /// # use zib_engine::{ConsolidateOptions, DatasetName, Host, InitOptions, Location, NoProgress, Passphrase, Repository};
    /// # use zib_test_utils::memory_source::MemorySource;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::create_dir(dir.path().join("repository"))?;
    /// # let location = Location::from_url(dir.path().join("repository").to_str().unwrap(), &Default::default()).await?;
    /// # let options = InitOptions { kdf: zib_engine::crypto::KdfParams::new(10, 8, 1)?, ..InitOptions::default() };
    /// # let clock = zib_engine::FakeClock::new(std::time::SystemTime::now());
    /// # let host = Host::new(dir.path().join("state")).with_clock(std::sync::Arc::new(clock.clone()));
    /// # let (repository, _) = Repository::init(&location, &Passphrase::new("pw".into()), &options, host).await?;
    /// # let source = MemorySource::new().with_clock(std::sync::Arc::new(clock.clone()));
    /// # let dataset = DatasetName::zfs("tank/photos")?;
    /// # source.create_dataset(&dataset);
    /// # source.write_file(&dataset, "IMG_0001.jpg", b"a photo");
    /// # repository.backup(&source, &dataset, &Default::default(), &NoProgress).await?;
    /// # clock.advance(std::time::Duration::from_secs(3600));
    /// // A fresh full now, whatever the planner thinks; delete what is due (confirming
    /// // nothing: restore points that lost much of their data stay until confirmed).
    /// let options = ConsolidateOptions { force: true, ..ConsolidateOptions::default() };
    /// let report = repository.consolidate(&source, &dataset, &options, &NoProgress).await?;
    /// for pending in &report.deletions.pending {
    ///     println!("{} stays: {}", pending.snapshot, pending.waiting_for);
    /// }
    /// println!(
    ///     "deleted {} backup(s), saving ${:.2}/month (early-deletion fees ${:.2})",
    ///     report.deletions.deleted.len(),
    ///     report.deletions.saved_per_month,
    ///     report.deletions.early_deletion_fees
    /// );
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The backup's errors (see [`backup`](Self::backup)); then the deletion's: storage
    /// errors other than a refused delete (what was deleted stays deleted; running again
    /// goes on), [`Error::Locked`].
    pub async fn consolidate(
        &self,
        source: &dyn SnapshotSource,
        dataset: &DatasetName,
        options: &crate::consolidate::ConsolidateOptions,
        progress: &dyn Progress,
    ) -> Result<crate::consolidate::ConsolidationReport> {
        self.ensure_kit().await;
        crate::consolidate::consolidate(&self.context, source, dataset, options, progress).await
    }

    /// Deletes the superseded backups of `dataset` (named as it was backed up) that are
    /// due — no snapshot source needed, so an admin host with delete permission can run
    /// it for a backup host whose credentials cannot delete. The rules are those of
    /// [`DeletionOptions`](crate::DeletionOptions); what is not due yet is reported as pending, with why.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDataset`]; [`Error::Locked`] while a backup of the dataset runs
    /// on this host; storage errors other than a refused delete (what was deleted stays
    /// deleted; running again goes on); [`Error::Planner`] for an invalid policy.
    pub async fn delete_superseded(
        &self,
        dataset: &str,
        options: &crate::deletion::DeletionOptions,
    ) -> Result<crate::deletion::DeletionReport> {
        crate::deletion::delete_superseded(&self.context, dataset, options).await
    }

    /// What [`backup`](Self::backup) would do now with the same arguments — which
    /// snapshot, full or incremental from which base, why, and at what one-time cost —
    /// without any effect: no snapshot is created, no lock taken, nothing written to the
    /// bucket or the state directory. For `--dry-run` and plans shown to the user.
    ///
    /// # Errors
    ///
    /// Source errors (unknown dataset); [`Error::SnapshotNotFound`]; storage errors
    /// while reading the catalog; [`Error::Planner`]; [`Error::InvalidInput`] for an
    /// invalid volume shape.
    pub async fn plan_backup(
        &self,
        source: &dyn SnapshotSource,
        dataset: &DatasetName,
        options: &BackupOptions,
    ) -> Result<crate::backup::BackupPreview> {
        crate::backup::preview(&self.context, source, dataset, options).await
    }

    /// The live keyring's bytes (the data key wrapped with the passphrase), for the
    /// offline copy the user keeps: checked to parse and to hold this repository's
    /// data key before they are handed out.
    ///
    /// # Errors
    ///
    /// [`Error::KeyringDamaged`] when the live keyring does not parse;
    /// [`Error::ForeignKeyring`] when it holds another data key (replaced since this
    /// handle was opened); storage errors (`NotFound` when it is missing: open with a
    /// copy and [`repair_keyring`](Self::repair_keyring) first).
    pub async fn keyring_bytes(&self) -> Result<Vec<u8>> {
        keyring::live_copy(&self.context).await
    }

    /// Removes leftovers no committed backup needs (see [`CleanupOptions`]).
    ///
    /// # Errors
    ///
    /// Storage errors; what was removed before the error stays removed (each step is
    /// idempotent, so running again finishes the job).
    pub async fn clean_up(&self, options: &CleanupOptions) -> Result<CleanupReport> {
        crate::cleanup::clean_up(&self.context, options).await
    }

    /// Receives the chain that restores `backup` of `dataset` (its full first, then each
    /// incremental) into `target` through `source`, verifying every volume, and returns
    /// the snapshots received. The volumes must be readable now: a local directory, or
    /// objects already restored from the archive class.
    ///
    /// Each stream is verified as it is received: a volume that fails to decrypt, or a
    /// stream whose length or hash differs from its manifest, ends the stream with an
    /// error before its last bytes, and the snapshot source then discards what it
    /// received.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenChain`]; storage errors (`NotRestored` when an object still needs
    /// a thaw); [`Error::Corrupt`] naming a volume or manifest that does not verify; the
    /// source's receive errors.
    pub async fn receive_chain(
        &self,
        catalog: &Catalog,
        dataset: DatasetId,
        backup: BackupId,
        source: &dyn SnapshotSource,
        target: &DatasetName,
        progress: &dyn Progress,
    ) -> Result<Vec<SnapshotInfo>> {
        crate::restore::receive_readable_chain(
            self.context.clone(),
            catalog,
            dataset,
            backup,
            source,
            target,
            progress,
        )
        .await
    }

    /// Creates a restore job — the chain of `request.restore_point` (default: the
    /// dataset's newest backup) into `request.target`, which must not exist — and
    /// returns it with its schedule, month by month: bytes, restore requests, cost and
    /// expected finish. Nothing is requested or downloaded yet: run
    /// [`advance_restore`](Self::advance_restore) to start, and again (daily) until it
    /// is done.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDataset`], [`Error::BrokenChain`], [`Error::TargetExists`];
    /// [`Error::Planner`] when no plan can work (a volume larger than the monthly budget,
    /// a link too slow to download a volume within a month, too little staging space —
    /// the message says which and what to change).
    pub async fn create_restore(
        &self,
        request: &crate::restore::NewRestore,
        source: &dyn SnapshotSource,
    ) -> Result<(crate::restore::RestoreJob, zib_planner::RestorePlan)> {
        crate::restore::create(&self.context, request, source).await
    }

    /// The restore jobs of this host (its state directory) for this repository.
    ///
    /// # Errors
    ///
    /// [`Error::LocalState`] when the state directory cannot be read.
    pub async fn restore_jobs(&self) -> Result<Vec<crate::restore::RestoreJob>> {
        crate::restore::jobs(&self.context).await
    }

    /// Advances a restore job as far as it can go now — requests the restores due,
    /// downloads what is thawed within this month's budget, receives what is complete —
    /// and says what it waits for. Safe to run at any time and to kill at any instant:
    /// the next run goes on from the last finished step.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchRestore`]; [`Error::Locked`] when another run advances it;
    /// [`Error::VolumeGone`] naming a volume missing from the bucket and the restore
    /// points it breaks; [`Error::Corrupt`] naming a volume that does not verify;
    /// [`Error::StagingFull`]; the source's receive errors (the staged volumes are kept:
    /// fix the cause and run again); storage errors.
    pub async fn advance_restore(
        &self,
        id: RestoreJobId,
        source: &dyn SnapshotSource,
        progress: &dyn Progress,
    ) -> Result<crate::restore::RestoreStatus> {
        // A drill is a restore job whose end, passed or failed, removes its target.
        if crate::verify::drill::is_drill(&self.context, id).await? {
            return crate::verify::drill::advance_as_restore(&self.context, id, source, progress)
                .await;
        }
        crate::restore::advance(&self.context, id, source, progress).await
    }

    /// Cancels a restore job: deletes its state, its staged volumes and the target its
    /// receives created (with what was received into it); touches nothing else.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchRestore`]; [`Error::Locked`] while a run advances it; the source's
    /// errors when the target cannot be removed.
    pub async fn cancel_restore(
        &self,
        id: RestoreJobId,
        source: &dyn SnapshotSource,
    ) -> Result<()> {
        crate::restore::cancel(&self.context, id, source).await
    }

    /// Verifies the repository without thawing anything: every committed backup's
    /// volumes are listed with the sizes its manifest implies and in the archive class,
    /// every chain reaches a full, the keyring and the manifests' sealed metadata open,
    /// and every object is accounted for. LIST and HEAD requests only, plus one GET of
    /// the small Standard-class keyring — never a GET of an archived object, never a
    /// restore; the report says what the verify cost. See [`VerifyReport`](crate::VerifyReport) for what it
    /// says, and [`drill`](Self::drill) for the proof that a restore works.
    ///
    /// # Example
    ///
    /// ```
    /// use zib_engine::{
    ///     BackupOptions, DatasetName, DrillRequest, DrillState, Host, InitOptions, Location,
    ///     NoProgress, Passphrase, Repository, VerifyOptions,
    /// };
    /// use zib_test_utils::memory_source::MemorySource;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let (repository_dir, state_dir) = (dir.path().join("repository"), dir.path().join("state"));
    /// # std::fs::create_dir(&repository_dir)?;
    /// # let source = MemorySource::new();
    /// # let dataset = DatasetName::zfs("tank/photos")?;
    /// # source.create_dataset(&dataset);
    /// # source.write_file(&dataset, "IMG_0001.jpg", b"a photo");
    /// # let location = Location::from_url(repository_dir.to_str().unwrap(), &Default::default()).await?;
    /// # let passphrase = Passphrase::new("correct horse battery staple".into());
    /// # let options = InitOptions { kdf: zib_engine::crypto::KdfParams::new(10, 8, 1)?, ..InitOptions::default() };
    /// # let (repository, _) = Repository::init(&location, &passphrase, &options, Host::new(&state_dir)).await?;
    /// # repository.backup(&source, &dataset, &BackupOptions::default(), &NoProgress).await?;
    /// // A repository with a backup of tank/photos (set up as in the crate example).
    /// let report = repository
    ///     .verify(&VerifyOptions { passphrase: Some(&passphrase), ..Default::default() }, &NoProgress)
    ///     .await?;
    /// for problem in &report.problems {
    ///     eprintln!("{problem}"); // what, which key, which restore points it breaks, what to do
    /// }
    /// assert!(report.is_clean(), "{:?}", report.problems);
    /// println!(
    ///     "{} restore point(s) intact; the verify made {} LIST and {} HEAD requests (${:.6})",
    ///     report.restore_points.len(),
    ///     report.cost.list_requests,
    ///     report.cost.head_requests,
    ///     report.cost.usd
    /// );
    ///
    /// // The drill: the smallest chain restored for real into a throwaway target. On
    /// // Deep Archive it spans runs (the thaw): call `drill` again daily until it ends.
    /// let drill = DrillRequest::new(DatasetName::zfs("tank/zib-drill")?, dir.path().join("staging"));
    /// let outcome = repository.drill(&report, &drill, &source, &NoProgress).await?;
    /// assert!(matches!(outcome.state, DrillState::Passed(_)), "{:?}", outcome.state);
    /// assert!(source.mountpoint(&DatasetName::zfs("tank/zib-drill")?).is_none()); // thrown away
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Only when the repository cannot be checked at all: it cannot be listed
    /// ([`Error::AccessDenied`] naming `s3:ListBucket`, or the storage error), or a
    /// request fails mid-way for a reason a second run gets past (the network). Damage
    /// is reported in the [`VerifyReport`](crate::VerifyReport), never as an error.
    pub async fn verify(
        &self,
        options: &crate::verify::VerifyOptions<'_>,
        progress: &dyn Progress,
    ) -> Result<crate::verify::VerifyReport> {
        crate::verify::verify(&self.context, options, progress).await
    }

    /// Runs the restore drill one step: starts one when none is under way on this host,
    /// else advances the one that is.
    ///
    /// A new drill restores the restore point `request` names — by default the smallest
    /// chain among those `verified` (a [`verify`](Self::verify) report) lists as intact
    /// ([`smallest_chain`](crate::smallest_chain): fewest bytes to download) — into
    /// `request.target`, a throwaway target that must not exist. It starts only when the
    /// whole chain fits in what this month's free egress has left after every download
    /// the state directory's ledger counts; otherwise the report says it was skipped,
    /// why, and from when it would fit.
    ///
    /// A drill is a restore job (listed by [`restore_jobs`](Self::restore_jobs) with
    /// `drill` set): on Deep Archive it requests the thaw and has to wait for it, so it
    /// spans several runs — call `drill` again (or [`advance_restore`](Self::advance_restore)
    /// on its job; daily from cron is right) until it has passed or failed. When it
    /// ends, either way, its target and staged volumes are removed and its job deleted;
    /// [`cancel_restore`](Self::cancel_restore) ends it early the same way.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `request.restore_point` is not an intact restore
    /// point; [`Error::TargetExists`]; [`Error::Planner`] when no restore schedule can
    /// work; storage, state-directory and lock errors that interrupt a run (the drill
    /// goes on at the next one). What the drill itself finds — a volume that does not
    /// verify, a receive that fails — is [`DrillState::Failed`](crate::DrillState::Failed),
    /// not an error.
    pub async fn drill(
        &self,
        verified: &crate::verify::VerifyReport,
        request: &crate::verify::DrillRequest,
        source: &dyn SnapshotSource,
        progress: &dyn Progress,
    ) -> Result<crate::verify::DrillReport> {
        crate::verify::drill::drill(&self.context, verified, request, source, progress).await
    }

    /// The repository's id.
    pub fn id(&self) -> RepositoryId {
        self.context.id
    }

    /// The class volumes and manifests are written in (chosen at init).
    pub fn archive_class(&self) -> &StorageClass {
        &self.context.archive_class
    }

    fn from_context(context: Repo) -> Self {
        Self {
            context: Arc::new(context),
        }
    }

    /// Adds the decoder kit to a repository made before it existed (or by an older zib).
    /// Never fails the backup that calls it: a kit that cannot be written now is written
    /// by a later backup, and verify reports it missing meanwhile.
    async fn ensure_kit(&self) {
        match crate::kit::ensure(&self.context).await {
            Ok(crate::kit::KitStatus::Written) => {
                tracing::info!("added the decoder kit (kit/) to the repository");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                %error,
                "could not add the decoder kit (kit/) to the repository; the next backup \
                 tries again"
            ),
        }
    }

    /// What the pipelines work with (the crate's own tests drive them directly).
    pub(crate) fn context(&self) -> &Arc<Repo> {
        &self.context
    }
}

/// The class the repository's archived objects are written in: that of its oldest
/// archived keyring copy (init writes it in the class chosen then). A repository whose
/// copies are all gone falls back to Deep Archive, with a warning.
async fn archive_class_of(backend: &dyn StorageBackend, prefix: &str) -> Result<StorageClass> {
    let listing = format!("{prefix}{}", keyring_archive_prefix());
    let oldest = match backend.list(&listing).try_next().await {
        Ok(oldest) => oldest,
        Err(StorageError::PermissionDenied { .. }) => {
            // Names s3:ListBucket, the permission this needs.
            check_listing(backend, prefix).await?;
            backend.list(&listing).try_next().await?
        }
        Err(error) => return Err(error.into()),
    };
    Ok(match oldest {
        Some(entry) => entry.storage_class,
        None => {
            tracing::warn!(
                "the repository has no archived keyring copy (keyring-archive/); new backups \
                 go to DEEP_ARCHIVE. Run `zib key export` to keep an offline copy"
            );
            StorageClass::DeepArchive
        }
    })
}

/// The README stored at the repository root: what a stranger (or the user, decades from
/// now) needs to know to make sense of the bucket.
///
/// # Errors
///
/// As [`crate::kit::readme_lines`].
pub(crate) fn readme_text(id: RepositoryId) -> Result<String> {
    let kit = crate::kit::readme_lines()?;
    Ok(format!(
        "This is a zib backup repository (format version 1).\n\
         \n\
         Repository id: {id}\n\
         \n\
         zib keeps ZFS and BTRFS snapshots as encrypted send streams. Objects:\n\
         \n\
         \x20 README.txt                        this file (plaintext)\n\
         \x20 keyring                           the data key, wrapped with the passphrase (scrypt + AES-256-GCM)\n\
         \x20 keyring-archive/<time>            archived copies of the keyring\n\
         \x20 manifests/<dataset>/<backup>      one per committed backup (its existence is the commit)\n\
         \x20 volumes/<dataset>/<backup>/<n>    the backup's send stream, encrypted, in volumes n = 0, 1, ...\n\
         \x20 kit/v1/<hash>/<file>              the decoder kit below (kit-archive/: its archived copy)\n\
         \n\
         Dataset and backup ids are random; names live only inside encrypted metadata.\n\
         Everything but this file, the keyring and the kit is in an archive storage class and\n\
         must be restored (S3 RestoreObject) before it can be downloaded.\n\
         \n\
         To read anything you need the passphrase and the keyring (keep an offline copy).\n\
         The format is specified byte by byte in FORMAT.md (below; also docs/FORMAT.md of\n\
         the zib source), which also explains how to restore by hand with the aws CLI, a\n\
         short script and `zfs receive` (or `btrfs receive`).\n\
         \n\
         {kit}"
    ))
}

/// How many seconds past now a passphrase change looks for a free archived-keyring name.
const ARCHIVE_NAME_TRIES: i64 = 60;

pub(crate) async fn put_small(
    backend: &dyn StorageBackend,
    prefix: &str,
    role: &ObjectRole,
    id: RepositoryId,
    body: Bytes,
    class: StorageClass,
    precondition: &PutPrecondition,
) -> Result<()> {
    let key = object_key(prefix, role)?;
    let options = WriteOptions {
        storage_class: class,
        metadata: plain_metadata(role, id),
    };
    backend.put(&key, body, &options, precondition).await?;
    Ok(())
}
