//! The backup pipeline: decide what to send, send it into volumes, commit the manifest,
//! protect the next incremental base.
//!
//! Order of effects, so that a run killed at any instant leaves either a committed
//! backup or nothing a restore would mistake for one: volumes first (invisible to the
//! catalog without a manifest), the manifest last with a create-if-absent (its existence
//! is the commit), and only then the base protection on the local dataset.
//!
//! Crash-safe resume: the whole run holds the dataset's lock ([`crate::lock`]); the
//! backup in progress is described in the dataset's journal ([`crate::journal`]),
//! written before the first upload starts and kept up to date part by part. A run that
//! finds a journal whose target snapshot still exists continues that backup (same
//! backup id, kind and base, no new planning) instead of planning a new one; the
//! journal is deleted once the manifest has committed.

use std::path::PathBuf;

use ring::rand::SystemRandom;
use zib_planner::{
    decide_backup, BackupDecision, IncrementalEstimate, LocalSnapshot, PlannedBackup, Policy,
    PriceTable, RemoteBackup, SnapshotId, UnixTime,
};
use zib_snapshot_source::{
    DatasetName, Protection, SendBase, SendFlags, SendRequest, SnapshotInfo, SnapshotName,
    SnapshotSource,
};
use zib_storage_backend::{PutPrecondition, WriteOptions};

use crate::catalog::{read_catalog, Catalog, CatalogBackup};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{BackupId, DatasetId};
use crate::journal::{
    clear_pending_snapshot, journal_path, pending_snapshot_path, read_journal,
    read_pending_snapshot, record_pending_snapshot, set_aside, Journal, JournalFile,
    JournalIdentity, JournalKind, JournalSnapshot,
};
use crate::layout::ObjectRole;
use crate::lock::lock_dataset;
use crate::metadata::sealed_metadata;
use crate::progress::Progress;
use crate::prune::{file_system_says_zib_created, prune_after_commit, Committed, PruneReport};
use crate::records::{
    volume_list_hash, BackupKind, ManifestRecord, SendFlagBits, SnapshotIdentity, SourceKind,
};
use crate::repository::Repository;
use crate::volumes::{upload_journalled, Attempt, Recorder, VolumeShape};

/// Which snapshot to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotChoice {
    /// Take a new snapshot named `zib-YYYYMMDDTHHMMSSZ` (UTC, from the injected clock),
    /// marked as created by zib.
    Create,
    /// Back up an existing snapshot.
    Existing(SnapshotName),
}

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The dataset (ZFS) or subvolume (BTRFS).
    pub dataset: DatasetName,
    /// Which snapshot.
    pub snapshot: SnapshotChoice,
    /// Which file system the source is (recorded in the manifest: it says which tool
    /// receives the stream).
    pub source_kind: SourceKind,
    /// Extra send flags: a property of the chain (changing them forces a full).
    pub send_flags: SendFlags,
    /// Volume and part sizes, upload parallelism.
    pub shape: VolumeShape,
    /// Planner policy (consolidation, horizon, ...).
    pub policy: Policy,
    /// Prices for the cost figures.
    pub prices: PriceTable,
    /// Local state: the dataset's lock and resume journal live here. Nothing in it is
    /// needed to restore; deleting it only loses the ability to resume an interrupted
    /// backup.
    pub state_dir: PathBuf,
    /// When another run holds the dataset's lock: wait for it (`true`) or fail at once
    /// with [`Error::Locked`] (`false`).
    pub wait_for_lock: bool,
    /// Destroy the local snapshots zib created once a newer backup has committed (the
    /// newest stays as the next incremental base). Snapshots zib did not create are never
    /// destroyed, whatever this says.
    pub prune_created_snapshots: bool,
}

/// A backup that committed.
#[derive(Debug, Clone)]
pub struct CommittedBackup {
    /// The manifest as written.
    pub manifest: ManifestRecord,
    /// Why the planner chose this kind of backup, and its estimated cost.
    pub decision: BackupDecision,
    /// How the sent snapshot is protected as the next incremental base, if it could be.
    pub protection: Option<Protection>,
    /// What happened to the older snapshots zib created, and the previous base's
    /// protection.
    pub pruned: PruneReport,
    /// Things the user should know (e.g. no base protection on BTRFS).
    pub warnings: Vec<String>,
}

/// What a backup run did.
#[derive(Debug, Clone)]
pub enum BackupOutcome {
    /// The snapshot was already backed up; nothing was sent.
    UpToDate {
        /// The planner's reasoning.
        decision: Box<BackupDecision>,
    },
    /// A new backup committed.
    Committed(Box<CommittedBackup>),
}

/// The marker stored on snapshots zib creates (`zib:created=<value>`).
pub fn created_marker(repository: &Repository) -> String {
    repository.id().to_string()
}

/// How often a changed send stream is read again before the backup gives up.
const MAX_STREAM_RESTARTS: u32 = 3;

/// Backs up one snapshot of `options.dataset` into `repository`, or continues the
/// backup of it that an earlier run left unfinished.
///
/// # Errors
///
/// [`Error::Locked`] when another run is backing up the dataset (unless
/// `options.wait_for_lock`); source errors (unknown dataset, `zfs send` failed — nothing
/// is committed then, and the upload is kept for the next run) and storage errors (the
/// upload is kept and the next run resumes it), [`Error::VolumeMissing`] when a volume
/// vanished from the bucket before the commit (the next run sends it again),
/// [`Error::LocalState`] when the state directory is not writable,
/// [`Error::StreamUnstable`], [`Error::UnfinishedBackup`] when another snapshot is asked
/// for than the one an unfinished backup is sending (the message says how to finish or
/// discard that backup), and [`Error::InvalidInput`] for an impossible request.
pub async fn back_up(
    repository: &Repository,
    source: &dyn SnapshotSource,
    options: &BackupOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<BackupOutcome> {
    options.shape.validate()?;
    let dataset_name = options.dataset.to_string();
    // Held until this function returns (dropping it releases the flock).
    let _lock = lock_dataset(
        &options.state_dir,
        repository.id(),
        &dataset_name,
        options.wait_for_lock,
    )
    .await?;
    let catalog = read_catalog(repository).await?;
    let mut local = source.list_snapshots(&options.dataset).await?;
    // OpenZFS bookmarks of backed-up snapshots the user destroyed since: still good
    // incremental bases, so a snapshot rotation tool does not force a new full.
    let bookmarks =
        bookmarks_without_snapshot(source.list_bookmarks(&options.dataset).await?, &local);
    let journal_path = journal_path(&options.state_dir, repository.id(), &dataset_name);
    let pending_path = pending_snapshot_path(&options.state_dir, repository.id(), &dataset_name);
    let journal = open_journal(&journal_path, clock)?;
    reap_pending_snapshot(
        repository,
        source,
        options,
        &pending_path,
        journal.as_ref(),
        &catalog,
        &mut local,
    )
    .await?;
    if let Some(journal) = journal {
        let file = JournalFile::new(journal_path.clone(), journal);
        match resumable(file.journal(), &catalog, &local, &bookmarks, options) {
            Resumable::Resume(target) => {
                let found = LocalPoints {
                    earlier_backups: catalog.backups(file.journal().dataset()),
                    local: &local,
                    bookmarks: &bookmarks,
                };
                return resume(
                    repository, source, options, clock, progress, file, &target, found,
                )
                .await;
            }
            Resumable::Committed => {
                tracing::info!(journal = %journal_path.display(), "the journalled backup committed before its journal was deleted");
                file.remove().await?;
                // The run stopped between the commit and the protection of the base.
                let target = local
                    .iter()
                    .find(|snapshot| snapshot.name.to_string() == file.journal().target.name)
                    .cloned();
                if let Some(target) = target {
                    if let Err(error) = source.protect(&options.dataset, &target.name).await {
                        tracing::info!(%error, "protecting the committed backup's snapshot as the next base");
                    }
                }
            }
            Resumable::No(reason) => {
                tracing::warn!(
                    journal = %journal_path.display(),
                    "the interrupted backup of {dataset_name} cannot be continued ({reason}); \
                     discarding its uploads and planning afresh"
                );
                // A discard that fails (a bucket policy that denies deletes, say) must
                // not stop every later run: the journal goes aside, and the leftovers
                // to the age-based clean-up.
                if let Err(error) = Recorder::journalled(file).abandon(repository).await {
                    let aside = set_aside(
                        &journal_path,
                        "abandoned",
                        crate::clock::unix_seconds(clock),
                    )?;
                    tracing::warn!(
                        %error,
                        moved_to = %aside.display(),
                        "could not discard the uploads of the interrupted backup; its journal \
                         was moved aside and `zib cleanup` removes its uploads once old"
                    );
                }
            }
            Resumable::OtherSnapshot { asked } => {
                let journal = file.journal();
                return Err(Error::UnfinishedBackup {
                    dataset: dataset_name,
                    backup: journal.backup(),
                    snapshot: journal.target.name.clone(),
                    asked,
                    journal: journal_path,
                });
            }
        }
    }

    let target = match &options.snapshot {
        SnapshotChoice::Existing(name) => local
            .iter()
            .find(|snapshot| &snapshot.name == name)
            .cloned()
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "snapshot {name} of {} does not exist; list them with `zfs list -t snapshot` (or create one)",
                    options.dataset
                ))
            })?,
        SnapshotChoice::Create => {
            progress.phase("creating a snapshot");
            let name = snapshot_name(options.source_kind, &zib_snapshot_name(crate::clock::unix_seconds(clock)))?;
            // Until the journal names it, this record is what lets the next run remove
            // the snapshot if this one dies first.
            record_pending_snapshot(&pending_path, name.as_str()).await?;
            let created = source
                .create_snapshot(&options.dataset, &name, Some(&created_marker(repository)))
                .await?;
            local.push(created.clone());
            created
        }
    };

    let dataset_id = find_dataset(
        &catalog,
        &options.dataset,
        &[local.as_slice(), bookmarks.as_slice()].concat(),
    )
    .map_or_else(|| DatasetId::generate(&SystemRandom::new()), Ok)
    .map_err(|_| Error::InvalidInput("the system random generator failed".into()))?;
    let backups = catalog.backups(dataset_id);

    let planner_catalog = zib_planner::Catalog::new(
        backups
            .iter()
            .map(|backup| RemoteBackup {
                id: zib_planner::BackupId(backup.manifest.backup_id.to_string()),
                kind: match &backup.manifest.kind {
                    BackupKind::Full => zib_planner::BackupKind::Full,
                    BackupKind::Incremental { base_backup, .. } => {
                        zib_planner::BackupKind::Incremental {
                            base: zib_planner::BackupId(base_backup.to_string()),
                        }
                    }
                },
                snapshot: SnapshotId(lineage(&backup.manifest.snapshot_identity)),
                created: UnixTime(backup.manifest.committed_at),
                stored_bytes: backup.volume_sizes.iter().sum(),
                volumes: backup.volume_sizes.clone(),
                parts: 0,
                // The manifest does not record the snapshot's size (yet).
                snapshot_bytes: None,
            })
            .collect(),
    )
    .map_err(|error| Error::InvalidInput(format!("the catalog is inconsistent: {error}")))?;
    // The planner orders snapshots by creation time, which has one-second resolution;
    // the source lists them in true creation order (createtxg / generation). Times are
    // made strictly increasing along that order so two snapshots taken within one second
    // keep their order.
    let mut previous_created = i64::MIN;
    let mut points: Vec<(&SnapshotInfo, char)> = local
        .iter()
        .map(|snapshot| (snapshot, '@'))
        .chain(bookmarks.iter().map(|bookmark| (bookmark, '#')))
        .collect();
    points.sort_by_key(|(point, _)| point.created_txg);
    let local_for_planner: Vec<LocalSnapshot> = points
        .iter()
        .filter_map(|(snapshot, separator)| {
            let created = snapshot
                .created_at
                .unix_timestamp()
                .max(previous_created.saturating_add(1));
            previous_created = created;
            Some(LocalSnapshot {
                id: SnapshotId(lineage(&record_identity(snapshot).ok()?)),
                name: format!("{}{separator}{}", options.dataset, snapshot.name),
                created: UnixTime(created),
                full_bytes: None,
                incremental: None,
            })
        })
        .collect();
    let target_identity = record_identity(&target)?;
    let target_id = SnapshotId(lineage(&target_identity));
    let plan = |local: &[LocalSnapshot]| {
        decide_backup(
            &planner_catalog,
            local,
            Some(&target_id),
            &options.policy,
            &options.prices,
            UnixTime(crate::clock::unix_seconds(clock)),
        )
        .map_err(|error| Error::InvalidInput(format!("planning the backup failed: {error}")))
    };
    // A first plan names the base; the source's size estimates for the full and for the
    // incremental from that base then let the planner choose between them (a full can be
    // cheaper than a large incremental, and starts a shorter chain).
    let mut decision = plan(&local_for_planner)?;
    if !matches!(decision.plan, PlannedBackup::UpToDate) {
        let estimated = with_size_estimates(
            source,
            options,
            &local,
            &bookmarks,
            &target,
            &decision.plan,
            local_for_planner,
        )
        .await;
        decision = plan(&estimated)?;
    }

    let mut warnings = Vec::new();
    let mut send_base = None;
    let kind = match &decision.plan {
        PlannedBackup::UpToDate => {
            return Ok(BackupOutcome::UpToDate {
                decision: Box::new(decision),
            })
        }
        PlannedBackup::Full => BackupKind::Full,
        PlannedBackup::Incremental {
            base_backup,
            base_snapshot,
        } => {
            let base_id: BackupId = base_backup.0.parse().map_err(|error| {
                Error::InvalidInput(format!("planner returned an unknown base: {error}"))
            })?;
            let base_manifest = backups
                .iter()
                .find(|backup| backup.manifest.backup_id == base_id)
                .map(|backup| &backup.manifest)
                .ok_or_else(|| {
                    Error::InvalidInput(format!("planner returned unknown base backup {base_id}"))
                })?;
            let (base_local, base) =
                find_base(&local, &bookmarks, base_snapshot, options.source_kind)?.ok_or_else(
                    || Error::InvalidInput(format!("base snapshot {base_snapshot} vanished")),
                )?;
            if base_manifest.send_flags != send_flag_bits(options.send_flags) {
                warnings.push(format!(
                    "the send flags changed since backup {base_id}; sending a full stream (an \
                     incremental with other flags may not be receivable on top of the chain)"
                ));
                BackupKind::Full
            } else {
                send_base = Some(base);
                BackupKind::Incremental {
                    base_backup: base_id,
                    base_snapshot_name: base_local.name.to_string(),
                    base_identity: base_manifest.snapshot_identity,
                }
            }
        }
    };

    let request = match send_base {
        None => SendRequest::full(options.dataset.clone(), target.name.clone()),
        Some(base) => SendRequest::incremental(options.dataset.clone(), base, target.name.clone()),
    }
    .with_flags(options.send_flags);

    let backup_id = BackupId::generate(&SystemRandom::new())
        .map_err(|_| Error::InvalidInput("the system random generator failed".into()))?;
    // Journalled before the first upload starts, so every upload is findable locally.
    let file = JournalFile::new(
        journal_path,
        Journal {
            repository_id: *repository.id().as_bytes(),
            dataset_name,
            dataset_id: *dataset_id.as_bytes(),
            backup_id: *backup_id.as_bytes(),
            source: options.source_kind.into(),
            target: JournalSnapshot {
                name: target.name.to_string(),
                identity: target_identity.into(),
            },
            snapshot_created_by_zib: matches!(options.snapshot, SnapshotChoice::Create),
            kind: JournalKind::from(&kind),
            send_flags: send_flag_bits(options.send_flags).0,
            shape: (&options.shape).into(),
            volumes: Vec::new(),
        },
    );
    file.save().await?;
    clear_pending_snapshot(&pending_path).await?;
    let expected_len = source.estimate_send_size(&request).await.ok().flatten();
    let manifest = send_and_commit(
        repository,
        source,
        clock,
        progress,
        file,
        &request,
        &target,
        expected_len,
        options.shape.parts_in_flight,
    )
    .await?;

    let found = LocalPoints {
        earlier_backups: backups,
        local: &local,
        bookmarks: &bookmarks,
    };
    let (protection, pruned) =
        after_commit(repository, source, options, &target, found, &mut warnings).await;
    Ok(BackupOutcome::Committed(Box::new(CommittedBackup {
        manifest,
        decision,
        protection,
        pruned,
        warnings,
    })))
}

/// What a run found before it sent: the dataset's committed backups, its snapshots and
/// the bookmarks whose snapshot is gone.
#[derive(Clone, Copy)]
struct LocalPoints<'a> {
    earlier_backups: &'a [CatalogBackup],
    local: &'a [SnapshotInfo],
    bookmarks: &'a [SnapshotInfo],
}

/// After the commit: protects the sent snapshot as the next incremental base, then
/// prunes what it supersedes.
async fn after_commit(
    repository: &Repository,
    source: &dyn SnapshotSource,
    options: &BackupOptions,
    target: &SnapshotInfo,
    found: LocalPoints<'_>,
    warnings: &mut Vec<String>,
) -> (Option<Protection>, PruneReport) {
    let protection_available = source
        .capabilities(&options.dataset)
        .await
        .is_ok_and(|capabilities| capabilities.protection_available());
    let protection = if protection_available {
        match source.protect(&options.dataset, &target.name).await {
            Ok(protection) => Some(protection),
            Err(error) => {
                warnings.push(format!(
                    "the backup committed, but {}@{} could not be protected as the next \
                     incremental base ({error}); if it is destroyed, the next backup will be a full",
                    options.dataset, target.name
                ));
                None
            }
        }
    } else {
        warnings.push(format!(
            "{}@{} cannot be protected (the file system has no holds or bookmarks): keep \
             that snapshot, or the next backup will be a full",
            options.dataset, target.name
        ));
        None
    };
    let pruned = prune_after_commit(
        source,
        Committed {
            dataset: &options.dataset,
            target,
            protection: protection.as_ref(),
            protection_available,
            earlier_backups: found.earlier_backups,
            local: found.local,
            bookmarks: found.bookmarks,
            marker: &created_marker(repository),
        },
        options.prune_created_snapshots,
    )
    .await;
    (protection, pruned)
}

/// Removes the snapshot an earlier run recorded as about to be created, when that run
/// died before its journal named it: zib created it (ZFS: `zib:created` holds this
/// repository's id; BTRFS: it is in zib's own snapshot directory), no committed backup
/// holds it and no journal sends it. Anything else named by the record is left alone.
async fn reap_pending_snapshot(
    repository: &Repository,
    source: &dyn SnapshotSource,
    options: &BackupOptions,
    pending_path: &std::path::Path,
    journalled: Option<&Journal>,
    catalog: &Catalog,
    local: &mut Vec<SnapshotInfo>,
) -> Result<()> {
    let Some(name) = read_pending_snapshot(pending_path)? else {
        return Ok(());
    };
    let marker = created_marker(repository);
    let leaked = local.iter().position(|snapshot| {
        let ours = file_system_says_zib_created(snapshot, &marker);
        let backed_up = record_identity(snapshot).is_ok_and(|identity| {
            catalog
                .datasets
                .values()
                .flatten()
                .any(|backup| lineage(&backup.manifest.snapshot_identity) == lineage(&identity))
        });
        let journalled = journalled.is_some_and(|journal| journal.target.name == name);
        snapshot.name.as_str() == name && ours && !backed_up && !journalled
    });
    if let Some(index) = leaked {
        let snapshot = local.remove(index);
        match source
            .destroy_snapshot(&options.dataset, &snapshot.name)
            .await
        {
            Ok(()) => tracing::info!(
                snapshot = %snapshot.name,
                "removed the snapshot an interrupted run created but never started to back up"
            ),
            Err(error) => tracing::warn!(
                snapshot = %snapshot.name, %error,
                "could not remove the snapshot an interrupted run created; it only uses disk space"
            ),
        }
    }
    clear_pending_snapshot(pending_path).await
}

/// Reads the dataset's journal; an unreadable one is reported, moved aside and treated
/// as absent (its uploads are left for `clean_up`).
fn open_journal(path: &std::path::Path, clock: &dyn Clock) -> Result<Option<Journal>> {
    match read_journal(path) {
        Ok(journal) => Ok(journal),
        Err(error @ Error::Journal { .. }) => {
            let aside = set_aside(path, "unreadable", crate::clock::unix_seconds(clock))?;
            tracing::warn!(
                %error,
                moved_to = %aside.display(),
                "ignoring an unreadable resume journal: the interrupted backup it described \
                 starts again from scratch; its uploads are removed by `zib cleanup` once old"
            );
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Whether a journalled backup can be continued.
enum Resumable {
    /// Yes: its target snapshot exists with the same identity (and its base, for an
    /// incremental).
    Resume(SnapshotInfo),
    /// Its manifest committed already; only the journal is left.
    Committed,
    /// No, because of the reason given.
    No(String),
    /// Another snapshot was asked for: the unfinished backup is neither continued nor
    /// silently discarded.
    OtherSnapshot {
        /// The snapshot asked for.
        asked: String,
    },
}

fn resumable(
    journal: &Journal,
    catalog: &Catalog,
    local: &[SnapshotInfo],
    bookmarks: &[SnapshotInfo],
    options: &BackupOptions,
) -> Resumable {
    let committed = catalog
        .backups(journal.dataset())
        .iter()
        .any(|backup| backup.manifest.backup_id == journal.backup());
    if committed {
        return Resumable::Committed;
    }
    if journal.source_kind() != options.source_kind {
        return Resumable::No("it was a backup of another file system".into());
    }
    let same = |snapshot: &SnapshotInfo, name: &str, identity: JournalIdentity| {
        snapshot.name.to_string() == name
            && record_identity(snapshot).is_ok_and(|id| JournalIdentity::from(id) == identity)
    };
    let Some(target) = local
        .iter()
        .find(|snapshot| same(snapshot, &journal.target.name, journal.target.identity))
    else {
        return Resumable::No(format!(
            "snapshot {} no longer exists with the same identity",
            journal.target.name
        ));
    };
    // Only a backup that could be finished is worth refusing for: one whose snapshot is
    // gone is discarded whatever is asked.
    if let SnapshotChoice::Existing(name) = &options.snapshot {
        if name.to_string() != journal.target.name {
            return Resumable::OtherSnapshot {
                asked: name.to_string(),
            };
        }
    }
    if let JournalKind::Incremental {
        base_snapshot_name,
        base_identity,
        ..
    } = &journal.kind
    {
        // The manifest would name a base that is gone: the chain could not be restored.
        let base_backup = match journal.backup_kind() {
            BackupKind::Incremental { base_backup, .. } => Some(base_backup),
            BackupKind::Full => None,
        };
        let base_committed = catalog
            .backups(journal.dataset())
            .iter()
            .any(|backup| Some(backup.manifest.backup_id) == base_backup);
        if !base_committed {
            return Resumable::No(format!(
                "its base backup {} is no longer in the repository",
                base_backup.map(|id| id.to_string()).unwrap_or_default()
            ));
        }
        let base_lineage = lineage(&(*base_identity).into());
        let base_present = local.iter().chain(bookmarks).any(|snapshot| {
            snapshot.name.to_string() == *base_snapshot_name
                && record_identity(snapshot).is_ok_and(|id| lineage(&id) == base_lineage)
        });
        if !base_present {
            return Resumable::No(format!(
                "its incremental base {base_snapshot_name} no longer exists"
            ));
        }
    }
    Resumable::Resume(target.clone())
}

/// Continues the journalled backup: same backup id, kind, base, flags and shape.
#[allow(clippy::too_many_arguments)] // private: one call site, each argument named there
async fn resume(
    repository: &Repository,
    source: &dyn SnapshotSource,
    options: &BackupOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
    file: JournalFile,
    target: &SnapshotInfo,
    found: LocalPoints<'_>,
) -> Result<BackupOutcome> {
    let journal = file.journal().clone();
    tracing::info!(
        backup = %journal.backup(),
        completed_volumes = journal.completed_volumes(),
        confirmed_parts = journal.confirmed_parts(),
        "continuing an interrupted backup"
    );
    progress.phase("continuing an interrupted backup");
    let request = match &journal.kind {
        JournalKind::Full => SendRequest::full(options.dataset.clone(), target.name.clone()),
        JournalKind::Incremental { base_identity, .. } => {
            let base_id = SnapshotId(lineage(&(*base_identity).into()));
            let (_, base) = find_base(
                found.local,
                found.bookmarks,
                &base_id,
                journal.source_kind(),
            )?
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "the base of the interrupted backup {} vanished",
                    journal.backup()
                ))
            })?;
            SendRequest::incremental(options.dataset.clone(), base, target.name.clone())
        }
    }
    .with_flags(send_flags_from_bits(journal.send_flag_bits()));
    let expected_len = source.estimate_send_size(&request).await.ok().flatten();
    let decision = BackupDecision {
        snapshot: SnapshotId(lineage(&journal.target.identity.into())),
        plan: match journal.backup_kind() {
            BackupKind::Full => PlannedBackup::Full,
            BackupKind::Incremental {
                base_backup,
                base_identity,
                ..
            } => PlannedBackup::Incremental {
                base_backup: zib_planner::BackupId(base_backup.to_string()),
                base_snapshot: SnapshotId(lineage(&base_identity)),
            },
        },
        reason: format!(
            "continuing backup {} of {}@{}, which an earlier run left unfinished",
            journal.backup(),
            options.dataset,
            target.name
        ),
        estimated_bytes: expected_len,
        cost: zib_planner::Cost::default(),
        consolidation: None,
    };
    let manifest = send_and_commit(
        repository,
        source,
        clock,
        progress,
        file,
        &request,
        target,
        expected_len,
        options.shape.parts_in_flight,
    )
    .await?;
    let mut warnings = Vec::new();
    let (protection, pruned) =
        after_commit(repository, source, options, target, found, &mut warnings).await;
    Ok(BackupOutcome::Committed(Box::new(CommittedBackup {
        manifest,
        decision,
        protection,
        pruned,
        warnings,
    })))
}

/// Sends the journalled backup's stream (again from the start if it changed under a
/// resumed upload), commits its manifest, then deletes the journal.
#[allow(clippy::too_many_arguments)] // private: one call per way in
async fn send_and_commit(
    repository: &Repository,
    source: &dyn SnapshotSource,
    clock: &dyn Clock,
    progress: &dyn Progress,
    file: JournalFile,
    request: &SendRequest,
    target: &SnapshotInfo,
    expected_len: Option<u64>,
    parts_in_flight: usize,
) -> Result<ManifestRecord> {
    let mut recorder = Recorder::journalled(file).with_parts_in_flight(parts_in_flight);
    let mut restarts = 0;
    progress.phase("sending");
    let uploaded = loop {
        let stream = source.send(request).await?;
        match upload_journalled(repository, stream, progress, expected_len, &mut recorder).await? {
            Attempt::Uploaded(uploaded) => break uploaded,
            Attempt::StreamChanged { volume } => {
                restarts += 1;
                if restarts > MAX_STREAM_RESTARTS {
                    // The journal stays if the discard fails: the next run tries again.
                    if let Err(error) = recorder.abandon(repository).await {
                        tracing::warn!(%error, "could not discard the uploads of an unstable stream");
                    }
                    return Err(Error::StreamUnstable {
                        snapshot: format!("{}@{}", request.dataset, request.snapshot),
                        attempts: restarts,
                    });
                }
                progress.phase(&format!(
                    "the send stream changed at volume {volume}; reading it again"
                ));
            }
        }
    };
    let file = recorder
        .journal_file()
        .ok_or_else(|| Error::InvalidInput("the journal vanished".into()))?;
    let journal = file.journal();
    let manifest = ManifestRecord {
        source: journal.source_kind(),
        kind: journal.backup_kind(),
        snapshot_created_by_zib: journal.snapshot_created_by_zib,
        send_flags: journal.send_flag_bits(),
        dataset_id: journal.dataset(),
        backup_id: journal.backup(),
        dataset_name: journal.dataset_name.clone(),
        snapshot_name: journal.target.name.clone(),
        snapshot_identity: journal.target.identity.into(),
        snapshot_created_at: target.created_at.unix_timestamp(),
        committed_at: crate::clock::unix_seconds(clock),
        stream_len: uploaded.stream_len,
        stream_sha256: uploaded.stream_sha256,
        stored_len: uploaded.stored_len(),
        volume_count: u32::try_from(uploaded.volumes.len()).unwrap_or(u32::MAX),
        volume_plaintext_len: journal.shape.volume_plaintext_len,
        volume_list_sha256: volume_list_hash(&uploaded.volumes),
    };
    progress.phase("committing");
    commit_manifest(repository, &manifest).await?;
    // After the commit: a run killed in between finds the manifest and drops the journal.
    if let Err(error) = file.remove().await {
        tracing::warn!(%error, "the backup committed but its journal could not be deleted; the next run will");
    }
    Ok(manifest)
}

/// `local` with the target's full and incremental stream sizes filled in, where the
/// source can estimate them (zfs-fuse cannot; OpenZFS can).
async fn with_size_estimates(
    source: &dyn SnapshotSource,
    options: &BackupOptions,
    local: &[SnapshotInfo],
    bookmarks: &[SnapshotInfo],
    target: &SnapshotInfo,
    plan: &PlannedBackup,
    mut for_planner: Vec<LocalSnapshot>,
) -> Vec<LocalSnapshot> {
    let estimate = |request: SendRequest| async move {
        match source
            .estimate_send_size(&request.with_flags(options.send_flags))
            .await
        {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(%error, "no send size estimate");
                None
            }
        }
    };
    let full_bytes = estimate(SendRequest::full(
        options.dataset.clone(),
        target.name.clone(),
    ))
    .await;
    let mut incremental = None;
    if let PlannedBackup::Incremental { base_snapshot, .. } = plan {
        let base = find_base(local, bookmarks, base_snapshot, options.source_kind);
        if let Ok(Some((_, base))) = base {
            incremental = estimate(SendRequest::incremental(
                options.dataset.clone(),
                base,
                target.name.clone(),
            ))
            .await
            .map(|bytes| IncrementalEstimate {
                base: base_snapshot.clone(),
                bytes,
            });
        }
    }
    let target_lineage = record_identity(target).map(|id| lineage(&id)).ok();
    for snapshot in &mut for_planner {
        if Some(&snapshot.id.0) == target_lineage.as_ref() {
            snapshot.full_bytes = full_bytes;
            snapshot.incremental = incremental.clone();
        }
    }
    for_planner
}

/// Writes the manifest: its existence is the backup's commit.
///
/// A retried PUT whose first answer was lost finds its own manifest already there: the
/// existing manifest is read back (HEAD) and, when it is this very record, the commit
/// stands. Any other manifest under the backup id is never overwritten.
///
/// # Errors
///
/// Storage errors; a `Precondition` failure means another manifest already exists under
/// this backup id.
pub async fn commit_manifest(repository: &Repository, manifest: &ManifestRecord) -> Result<()> {
    let role = ObjectRole::Manifest {
        dataset: manifest.dataset_id,
        backup: manifest.backup_id,
    };
    let metadata = sealed_metadata(
        &role,
        repository.id(),
        repository.data_key(),
        &manifest.encode()?,
    )?;
    // The body repeats the sealed record, so the manifest survives tools that drop
    // metadata when copying objects.
    let body = bytes::Bytes::from(metadata[crate::metadata::RECORD_NAME].clone().into_bytes());
    let options = WriteOptions {
        storage_class: repository.archive_class().clone(),
        metadata,
    };
    let key = repository.key(&role)?;
    let refused = match repository
        .backend()
        .put(&key, body, &options, &PutPrecondition::IfAbsent)
        .await
    {
        Ok(_) => return Ok(()),
        Err(error @ zib_storage_backend::Error::Precondition { .. }) => error,
        Err(error) => return Err(error.into()),
    };
    let existing = repository.backend().head(&key).await?;
    let record = crate::metadata::open_sealed_metadata(
        &existing.metadata,
        &role,
        repository.id(),
        repository.data_key(),
    )?;
    if record == manifest.encode()? {
        tracing::info!(%key, "the manifest was already written (a retried request whose answer was lost): committed");
        Ok(())
    } else {
        Err(refused.into())
    }
}

/// `zib-YYYYMMDDTHHMMSSZ` for a Unix time.
pub fn zib_snapshot_name(unix_seconds: i64) -> String {
    let (year, month, day) = crate::layout::civil_from_days(unix_seconds.div_euclid(86_400));
    let second = unix_seconds.rem_euclid(86_400);
    format!(
        "zib-{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        second / 3600,
        second % 3600 / 60,
        second % 60
    )
}

/// The bookmarks whose snapshot no longer exists (a bookmark of an existing snapshot
/// adds nothing: the snapshot is the better base).
fn bookmarks_without_snapshot(
    bookmarks: Vec<SnapshotInfo>,
    snapshots: &[SnapshotInfo],
) -> Vec<SnapshotInfo> {
    bookmarks
        .into_iter()
        .filter(|bookmark| {
            !snapshots
                .iter()
                .any(|snapshot| snapshot.identity.same_snapshot(&bookmark.identity))
        })
        .collect()
}

/// The local snapshot — or, failing that, bookmark — with the planner's base identity,
/// and how to send from it.
fn find_base<'a>(
    local: &'a [SnapshotInfo],
    bookmarks: &'a [SnapshotInfo],
    base: &SnapshotId,
    kind: SourceKind,
) -> Result<Option<(&'a SnapshotInfo, SendBase)>> {
    let matches =
        |info: &&SnapshotInfo| record_identity(info).is_ok_and(|id| lineage(&id) == base.0);
    if let Some(snapshot) = local.iter().find(matches) {
        return Ok(Some((
            snapshot,
            SendBase::Snapshot(snapshot_name(kind, snapshot.name.as_str())?),
        )));
    }
    Ok(bookmarks
        .iter()
        .find(matches)
        .map(|bookmark| (bookmark, SendBase::Bookmark(bookmark.name.clone()))))
}

/// The dataset id to continue: one whose backups' snapshots exist locally (a renamed or
/// restored dataset keeps its chain), else one backed up under the same name.
fn find_dataset(
    catalog: &Catalog,
    name: &DatasetName,
    local: &[SnapshotInfo],
) -> Option<DatasetId> {
    let local_lineages: Vec<String> = local
        .iter()
        .filter_map(|snapshot| record_identity(snapshot).ok())
        .map(|identity| lineage(&identity))
        .collect();
    catalog
        .datasets
        .iter()
        .find(|(_, backups)| {
            backups
                .iter()
                .any(|backup| local_lineages.contains(&lineage(&backup.manifest.snapshot_identity)))
        })
        .map(|(id, _)| *id)
        .or_else(|| catalog.dataset_named(&name.to_string()))
}

/// The identity a manifest records for a local snapshot.
///
/// # Errors
///
/// [`Error::InvalidInput`] for a BTRFS UUID that is not 32 hex digits.
pub fn record_identity(snapshot: &SnapshotInfo) -> Result<SnapshotIdentity> {
    match &snapshot.identity {
        zib_snapshot_source::SnapshotIdentity::Zfs { guid } => Ok(SnapshotIdentity::ZfsGuid(*guid)),
        zib_snapshot_source::SnapshotIdentity::Btrfs {
            uuid,
            received_uuid,
        } => {
            let text = received_uuid.as_deref().unwrap_or(uuid);
            let hex_digits: String = text.chars().filter(|c| *c != '-').collect();
            let mut bytes = [0u8; 16];
            hex::decode_to_slice(&hex_digits, &mut bytes).map_err(|_| {
                Error::InvalidInput(format!("BTRFS UUID {text:?} is not 32 hexadecimal digits"))
            })?;
            Ok(SnapshotIdentity::BtrfsUuid(bytes))
        }
        _ => Err(Error::InvalidInput(
            "a snapshot identity this zib does not know".into(),
        )),
    }
}

/// A stable text form of an identity, shared by the catalog and local snapshots.
pub fn lineage(identity: &SnapshotIdentity) -> String {
    match identity {
        SnapshotIdentity::ZfsGuid(guid) => format!("zfs-guid:{guid}"),
        SnapshotIdentity::BtrfsUuid(uuid) => format!("btrfs-uuid:{}", hex::encode(uuid)),
    }
}

fn snapshot_name(kind: SourceKind, name: &str) -> Result<SnapshotName> {
    Ok(match kind {
        SourceKind::Zfs => SnapshotName::zfs(name)?,
        SourceKind::Btrfs => SnapshotName::btrfs(name)?,
    })
}

fn send_flags_from_bits(bits: SendFlagBits) -> SendFlags {
    let mut flags = SendFlags::NONE;
    flags.large_blocks = bits.0 & 1 != 0;
    flags.compressed = bits.0 & 1 << 1 != 0;
    flags.embedded = bits.0 & 1 << 2 != 0;
    flags.raw = bits.0 & 1 << 3 != 0;
    flags
}

fn send_flag_bits(flags: SendFlags) -> SendFlagBits {
    SendFlagBits(
        u32::from(flags.large_blocks)
            | u32::from(flags.compressed) << 1
            | u32::from(flags.embedded) << 2
            | u32::from(flags.raw) << 3,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_follow_the_documented_pattern() {
        assert_eq!(zib_snapshot_name(0), "zib-19700101T000000Z");
        assert_eq!(zib_snapshot_name(1_795_913_045), "zib-20261129T004405Z");
    }

    #[test]
    fn send_flags_map_to_the_format_bits() {
        let mut flags = SendFlags::NONE;
        assert_eq!(send_flag_bits(flags), SendFlagBits(0));
        flags.large_blocks = true;
        flags.raw = true;
        assert_eq!(send_flag_bits(flags), SendFlagBits(0b1001));
        assert_eq!(
            send_flag_bits(SendFlags::ALL),
            SendFlagBits(SendFlagBits::KNOWN)
        );
        for bits in 0..=SendFlagBits::KNOWN {
            assert_eq!(
                send_flag_bits(send_flags_from_bits(SendFlagBits(bits))),
                SendFlagBits(bits)
            );
        }
    }
}
