//! The one place where the engine's vocabulary becomes the planner's: the planner is a
//! pure crate with its own string-keyed types (no ids, no I/O), so the catalog read from
//! the bucket and the snapshots listed locally are translated here, and the planner's
//! answers translated back.

use zib_planner::{LocalSnapshot, RemoteBackup, SnapshotId, UnixTime};
use zib_snapshot_source::{DatasetName, SnapshotIdentity, SnapshotInfo};

use super::CatalogBackup;
use crate::error::{Error, Result};
use crate::format::records::BackupKind;
use crate::ids::BackupId;

/// The planner's name for a snapshot: its identity's one textual form.
pub(crate) fn snapshot_id(identity: &SnapshotIdentity) -> SnapshotId {
    SnapshotId(identity.to_string())
}

/// The planner's name for a backup.
pub(crate) fn planner_backup_id(id: BackupId) -> zib_planner::BackupId {
    zib_planner::BackupId(id.to_string())
}

/// A backup id the planner returned, which must be one it was given.
///
/// # Errors
///
/// [`Error::Internal`]: the planner only names backups of the catalog it was handed.
pub(crate) fn engine_backup_id(id: &zib_planner::BackupId) -> Result<BackupId> {
    id.0.parse().map_err(|error| {
        Error::Internal(format!(
            "the planner named backup {:?}, which is not an id it was given: {error}",
            id.0
        ))
    })
}

/// One dataset's committed backups as the planner sees them.
///
/// # Errors
///
/// [`Error::Planner`] when the catalog is inconsistent (a chain that loops, say: the
/// catalog comes from the bucket, so it is checked, not trusted).
pub(crate) fn planner_catalog(backups: &[CatalogBackup]) -> Result<zib_planner::Catalog> {
    Ok(zib_planner::Catalog::new(
        backups
            .iter()
            .map(|backup| RemoteBackup {
                id: planner_backup_id(backup.manifest.backup_id),
                kind: match &backup.manifest.kind {
                    BackupKind::Full => zib_planner::BackupKind::Full,
                    BackupKind::Incremental { base_backup, .. } => {
                        zib_planner::BackupKind::Incremental {
                            base: planner_backup_id(*base_backup),
                        }
                    }
                },
                snapshot: snapshot_id(&backup.manifest.snapshot_identity),
                created: UnixTime(backup.manifest.committed_at),
                // Sizes come from bucket metadata: a sum that would overflow saturates,
                // and the planner refuses the catalog, naming the backup.
                stored_bytes: backup
                    .volume_sizes
                    .iter()
                    .fold(0u64, |sum, &v| sum.saturating_add(v)),
                volumes: backup.volume_sizes.clone(),
                parts: 0,
                // Recorded by manifests since format records of version 2; a full's own
                // stream is a full send of its snapshot, whichever version wrote it.
                snapshot_bytes: backup
                    .manifest
                    .snapshot_bytes
                    .or(match backup.manifest.kind {
                        BackupKind::Full => Some(backup.manifest.stream_len),
                        BackupKind::Incremental { .. } => None,
                    }),
            })
            .collect(),
    )?)
}

/// The local snapshots (and the bookmarks whose snapshot is gone) as the planner sees
/// them, oldest first.
///
/// The planner orders snapshots by creation time, which has one-second resolution; the
/// source lists them in true creation order (createtxg / generation). Times are made
/// strictly increasing along that order so two snapshots taken within one second keep
/// their order.
pub(crate) fn planner_snapshots(
    dataset: &DatasetName,
    snapshots: &[SnapshotInfo],
    bookmarks: &[SnapshotInfo],
) -> Vec<LocalSnapshot> {
    let mut points: Vec<(&SnapshotInfo, char)> = snapshots
        .iter()
        .map(|snapshot| (snapshot, '@'))
        .chain(bookmarks.iter().map(|bookmark| (bookmark, '#')))
        .collect();
    points.sort_by_key(|(point, _)| point.created_txg);
    let mut previous_created = i64::MIN;
    points
        .iter()
        .map(|(snapshot, separator)| {
            let created = snapshot
                .created_at
                .unix_timestamp()
                .max(previous_created.saturating_add(1));
            previous_created = created;
            LocalSnapshot {
                id: snapshot_id(&snapshot.identity),
                name: format!("{dataset}{separator}{}", snapshot.name),
                created: UnixTime(created),
                full_bytes: None,
                incremental: None,
            }
        })
        .collect()
}
