//! The backup pipeline: decide what to send, send it into volumes, commit the manifest,
//! protect the next incremental base.
//!
//! Order of effects, so that a run killed at any instant leaves either a committed
//! backup or nothing a restore would mistake for one: volumes first (invisible to the
//! catalog without a manifest), the manifest last with a create-if-absent (its existence
//! is the commit), and only then the base protection on the local dataset.

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

use crate::catalog::{read_catalog, Catalog};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{BackupId, DatasetId};
use crate::layout::ObjectRole;
use crate::metadata::sealed_metadata;
use crate::progress::Progress;
use crate::prune::{prune_after_commit, Committed, PruneReport};
use crate::records::{
    volume_list_hash, BackupKind, ManifestRecord, SendFlagBits, SnapshotIdentity, SourceKind,
};
use crate::repository::Repository;
use crate::volumes::{upload_stream, VolumeShape};

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

/// Backs up one snapshot of `options.dataset` into `repository`.
///
/// # Errors
///
/// Source errors (unknown dataset, `zfs send` failed — nothing is committed then),
/// storage errors, and [`Error::InvalidInput`] for an impossible request.
pub async fn back_up(
    repository: &Repository,
    source: &dyn SnapshotSource,
    options: &BackupOptions,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<BackupOutcome> {
    options.shape.validate()?;
    let catalog = read_catalog(repository).await?;
    let mut local = source.list_snapshots(&options.dataset).await?;

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
            let created = source
                .create_snapshot(&options.dataset, &name, Some(&created_marker(repository)))
                .await?;
            local.push(created.clone());
            created
        }
    };

    // OpenZFS bookmarks of backed-up snapshots the user destroyed since: still good
    // incremental bases, so a snapshot rotation tool does not force a new full.
    let bookmarks =
        bookmarks_without_snapshot(source.list_bookmarks(&options.dataset).await?, &local);
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
    let expected_len = source.estimate_send_size(&request).await.ok().flatten();
    progress.phase("sending");
    let stream = source.send(&request).await?;
    let uploaded = upload_stream(
        repository,
        dataset_id,
        backup_id,
        stream,
        &options.shape,
        progress,
        expected_len,
    )
    .await?;

    let manifest = ManifestRecord {
        source: options.source_kind,
        kind,
        snapshot_created_by_zib: matches!(options.snapshot, SnapshotChoice::Create),
        send_flags: send_flag_bits(options.send_flags),
        dataset_id,
        backup_id,
        dataset_name: options.dataset.to_string(),
        snapshot_name: target.name.to_string(),
        snapshot_identity: target_identity,
        snapshot_created_at: target.created_at.unix_timestamp(),
        committed_at: crate::clock::unix_seconds(clock),
        stream_len: uploaded.stream_len,
        stream_sha256: uploaded.stream_sha256,
        stored_len: uploaded.stored_len(),
        volume_count: u32::try_from(uploaded.volumes.len()).unwrap_or(u32::MAX),
        volume_plaintext_len: options.shape.volume_plaintext_len,
        volume_list_sha256: volume_list_hash(&uploaded.volumes),
    };
    progress.phase("committing");
    commit_manifest(repository, &manifest).await?;

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
            target: &target,
            protection: protection.as_ref(),
            protection_available,
            earlier_backups: backups,
            local: &local,
            bookmarks: &bookmarks,
            marker: &created_marker(repository),
        },
        options.prune_created_snapshots,
    )
    .await;
    Ok(BackupOutcome::Committed(Box::new(CommittedBackup {
        manifest,
        decision,
        protection,
        pruned,
        warnings,
    })))
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
/// # Errors
///
/// Storage errors; a `Precondition` failure means a manifest already exists under this
/// backup id (never overwritten).
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
    repository
        .backend()
        .put(
            &repository.key(&role)?,
            body,
            &options,
            &PutPrecondition::IfAbsent,
        )
        .await?;
    Ok(())
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
    }
}
