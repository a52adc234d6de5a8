//! What an interrupted run left: its journal (continue, finish or discard it) and the
//! record of a snapshot it was creating.

use std::path::Path;

use zib_snapshot_source::{SnapshotInfo, SnapshotSource, SourceKind};

use super::{prune::file_system_says_zib_created, SnapshotChoice};
use crate::catalog::Catalog;
use crate::clock::{unix_seconds, Clock};
use crate::error::{Error, Result};
use crate::format::records::BackupKind;
use crate::state::journal::{read_journal, Journal};
use crate::state::{clear_pending_snapshot, off_the_runtime, read_pending_snapshot, set_aside};

/// Reads the dataset's journal; an unreadable one is reported, moved aside and treated
/// as absent (its uploads are left for clean-up).
pub(super) async fn open_journal(path: &Path, clock: &dyn Clock) -> Result<Option<Journal>> {
    match read_journal(path).await {
        Ok(journal) => Ok(journal),
        Err(error @ Error::Journal { .. }) => {
            let now = unix_seconds(clock);
            let aside = off_the_runtime(path, "move a resume journal aside", move |path| {
                set_aside(path, "unreadable", now)
            })
            .await?;
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
pub(super) enum Resumable {
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

/// What the local file system holds, as a run found it.
pub(super) struct Found<'a> {
    pub(super) catalog: &'a Catalog,
    pub(super) snapshots: &'a [SnapshotInfo],
    pub(super) bookmarks: &'a [SnapshotInfo],
    pub(super) kind: SourceKind,
}

/// Decides what to do with a journalled backup.
pub(super) fn resumable(journal: &Journal, found: &Found<'_>, asked: &SnapshotChoice) -> Resumable {
    let committed = found
        .catalog
        .backups(journal.dataset_id)
        .iter()
        .any(|backup| backup.manifest.backup_id == journal.backup_id);
    if committed {
        return Resumable::Committed;
    }
    if journal.source != found.kind {
        return Resumable::No("it was a backup of another file system".into());
    }
    let Some(target) = found.snapshots.iter().find(|snapshot| {
        snapshot.name.as_str() == journal.target.name
            && snapshot.identity == journal.target.identity
    }) else {
        return Resumable::No(format!(
            "snapshot {} no longer exists with the same identity",
            journal.target.name
        ));
    };
    // Only a backup that could be finished is worth refusing for: one whose snapshot is
    // gone is discarded whatever is asked.
    if let SnapshotChoice::Existing(name) = asked {
        if name.as_str() != journal.target.name {
            return Resumable::OtherSnapshot {
                asked: name.to_string(),
            };
        }
    }
    if let BackupKind::Incremental {
        base_backup,
        base_snapshot_name,
        base_identity,
    } = &journal.kind
    {
        // The manifest would name a base that is gone: the chain could not be restored.
        let base_committed = found
            .catalog
            .backups(journal.dataset_id)
            .iter()
            .any(|backup| backup.manifest.backup_id == *base_backup);
        if !base_committed {
            return Resumable::No(format!(
                "its base backup {base_backup} is no longer in the repository"
            ));
        }
        let base_present = found
            .snapshots
            .iter()
            .chain(found.bookmarks)
            .any(|snapshot| {
                snapshot.name.as_str() == base_snapshot_name && snapshot.identity == *base_identity
            });
        if !base_present {
            return Resumable::No(format!(
                "its incremental base {base_snapshot_name} no longer exists"
            ));
        }
    }
    Resumable::Resume(target.clone())
}

/// Removes the snapshot an earlier run recorded as about to be created, when that run
/// died before its journal named it: zib created it (ZFS: `zib:created` holds this
/// repository's id; BTRFS: it is in zib's own snapshot directory), no committed backup
/// holds it and no journal sends it. Anything else named by the record is left alone.
pub(super) async fn reap_pending_snapshot(
    source: &dyn SnapshotSource,
    dataset: &zib_snapshot_source::DatasetName,
    pending_path: &Path,
    marker: &str,
    journalled: Option<&Journal>,
    catalog: &Catalog,
    snapshots: &mut Vec<SnapshotInfo>,
) -> Result<()> {
    let Some(name) = read_pending_snapshot(pending_path).await? else {
        return Ok(());
    };
    let leaked = snapshots.iter().position(|snapshot| {
        let ours = file_system_says_zib_created(snapshot, marker);
        let backed_up = catalog
            .datasets
            .values()
            .flatten()
            .any(|backup| backup.manifest.snapshot_identity == snapshot.identity);
        let journalled = journalled.is_some_and(|journal| journal.target.name == name);
        snapshot.name.as_str() == name && ours && !backed_up && !journalled
    });
    if let Some(index) = leaked {
        let snapshot = snapshots.remove(index);
        match source.destroy_snapshot(dataset, &snapshot.name).await {
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
