//! After a backup commits: hand the base protection to the new snapshot and destroy the
//! local snapshots zib created that no backup needs any more.
//!
//! A snapshot is destroyed only when it carries both of zib's marks — the manifest of a
//! committed backup in this repository says zib created it, and the file system agrees
//! (ZFS: the `zib:created` user property holds this repository's id; BTRFS: it lives in
//! zib's own snapshot directory, the only place the BTRFS source lists) — and it is
//! older than the snapshot just committed, which stays as the next incremental base.
//! Snapshots the user made are never touched, whatever their name.

use zib_snapshot_source::{
    DatasetName, Protection, SnapshotIdentity, SnapshotInfo, SnapshotName, SnapshotSource,
};

use crate::catalog::CatalogBackup;

/// What pruning did, for the caller to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Snapshots destroyed, oldest first.
    pub destroyed: Vec<SnapshotName>,
    /// The previous base's protection, released because the new snapshot is now the base.
    pub released: Option<Protection>,
    /// What could not be done (nothing is lost: a snapshot left behind is only disk use).
    pub warnings: Vec<String>,
}

/// What the backup that just committed leaves for pruning to work from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committed<'a> {
    /// The dataset backed up.
    pub(crate) dataset: &'a DatasetName,
    /// The snapshot just committed: the chain's new base, never destroyed.
    pub(crate) target: &'a SnapshotInfo,
    /// How the target is protected, if it is.
    pub(crate) protection: Option<&'a Protection>,
    /// Whether the source can protect snapshots at all (BTRFS cannot: there the base
    /// is kept simply by never destroying the newest backed-up snapshot).
    pub(crate) protection_available: bool,
    /// The dataset's committed backups before this one.
    pub(crate) earlier_backups: &'a [CatalogBackup],
    /// The local snapshots, oldest first.
    pub(crate) local: &'a [SnapshotInfo],
    /// Bookmarks whose snapshot is gone (OpenZFS).
    pub(crate) bookmarks: &'a [SnapshotInfo],
    /// The `zib:created` value of this repository.
    pub(crate) marker: &'a str,
}

/// Releases the previous base's protection and destroys zib's superseded snapshots.
///
/// Does nothing but warn when the new snapshot could not be protected on a source that
/// protects: the previous base then stays as it is, so the chain always keeps a
/// protected base.
pub(crate) async fn prune_after_commit(
    source: &dyn SnapshotSource,
    committed: Committed<'_>,
    destroy_created: bool,
) -> PruneReport {
    let mut report = PruneReport::default();
    if committed.protection.is_none() && committed.protection_available {
        report.warnings.push(format!(
            "no snapshot of {} was pruned: the new base could not be protected, so the previous one keeps its protection",
            committed.dataset
        ));
        return report;
    }
    let older: Vec<&SnapshotInfo> = committed
        .local
        .iter()
        .filter(|snapshot| snapshot.created_txg < committed.target.created_txg)
        .collect();

    if let Some(new_base) = committed.protection {
        let mut points: Vec<&SnapshotInfo> = older
            .iter()
            .copied()
            .chain(committed.bookmarks.iter())
            .collect();
        points.sort_by_key(|point| point.created_txg);
        let previous_base = points
            .iter()
            .rev()
            .find(|snapshot| backed_up(committed.earlier_backups, snapshot).is_some());
        if let Some(previous) = previous_base {
            if let Some(protection) = same_kind_for(new_base, committed.dataset, previous) {
                // It may never have been protected (that backup's protection failed, or
                // it was made by another tool): then there is nothing to release.
                match source.release(&protection).await {
                    Ok(()) => report.released = Some(protection),
                    Err(error) => tracing::debug!(
                        snapshot = %previous.name, %error,
                        "the previous base had no protection of zib's to release"
                    ),
                }
            }
        }
    }
    if !destroy_created {
        return report;
    }
    for snapshot in older {
        let Some(backup) = backed_up(committed.earlier_backups, snapshot) else {
            continue;
        };
        if !(backup.manifest.snapshot_created_by_zib
            && file_system_says_zib_created(snapshot, committed.marker))
        {
            continue;
        }
        match source
            .destroy_snapshot(committed.dataset, &snapshot.name)
            .await
        {
            Ok(()) => report.destroyed.push(snapshot.name.clone()),
            Err(error) => report.warnings.push(format!(
                "{}@{} (created by zib, superseded by a newer backup) could not be destroyed: \
                 {error}; it only uses disk space, and the next backup tries again",
                committed.dataset, snapshot.name
            )),
        }
    }
    report
}

/// The file system's half of zib's mark: ZFS's `zib:created` property holds `marker`
/// (this repository's id); on BTRFS, where snapshots carry no properties, every snapshot
/// the source lists is in zib's own snapshot directory.
pub(crate) fn file_system_says_zib_created(snapshot: &SnapshotInfo, marker: &str) -> bool {
    match snapshot.identity {
        SnapshotIdentity::BtrfsUuid(_) => true,
        _ => snapshot.zib_created.as_deref() == Some(marker),
    }
}

/// The committed backup of `snapshot`, if there is one.
fn backed_up<'b>(
    backups: &'b [CatalogBackup],
    snapshot: &SnapshotInfo,
) -> Option<&'b CatalogBackup> {
    backups
        .iter()
        .find(|backup| backup.manifest.snapshot_identity == snapshot.identity)
}

/// The protection `previous` would carry had it been protected the way the new base was.
fn same_kind_for(
    new_base: &Protection,
    dataset: &DatasetName,
    previous: &SnapshotInfo,
) -> Option<Protection> {
    match (new_base, &previous.identity) {
        (Protection::Hold { tag, .. }, _) => Some(Protection::Hold {
            dataset: dataset.clone(),
            snapshot: previous.name.clone(),
            tag: tag.clone(),
        }),
        (Protection::Bookmark { .. }, SnapshotIdentity::ZfsGuid(guid)) => {
            Some(Protection::Bookmark {
                dataset: dataset.clone(),
                bookmark: previous.name.clone(),
                guid: *guid,
            })
        }
        _ => None,
    }
}
