//! Clean-up of what no committed backup needs: volumes of backups that never committed,
//! incomplete multipart uploads (billed at S3 Standard rates until aborted), and probes
//! an interrupted access check left behind — never a live run's uploads, and never a
//! committed backup's objects.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use zib_storage_backend::ObjectKey;

use crate::catalog::read_catalog;
use crate::context::Repo;
use crate::error::Result;
use crate::format::layout::ObjectRole;
use crate::ids::{BackupId, DatasetId, RepositoryId};
use crate::state::journal::{read_journal_blocking, VolumeState};
use crate::state::lock::{lock_file, DatasetLock};
use crate::state::{off_the_runtime, DatasetFiles, StateDir};

/// What [`Repository::clean_up`](crate::Repository::clean_up) may remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupOptions {
    /// Leftovers younger than this are kept: they may belong to a backup another host is
    /// running right now (default 7 days, longer than any single volume upload).
    pub min_age: Duration,
    /// Report what would be removed, by the same rules, and remove nothing (the report's
    /// lists then name what a real run would delete or abort).
    pub dry_run: bool,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(7 * 24 * 3600),
            dry_run: false,
        }
    }
}

/// What [`Repository::clean_up`](crate::Repository::clean_up) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Orphan volumes deleted.
    pub deleted_volumes: Vec<ObjectKey>,
    /// Incomplete uploads aborted.
    pub aborted_uploads: Vec<ObjectKey>,
    /// Access-check probes left behind by an interrupted check, deleted.
    pub deleted_probes: Vec<ObjectKey>,
    /// Leftovers kept because they, or another leftover of the same backup, are younger
    /// than the minimum age.
    pub kept_recent: usize,
    /// Uploads and volumes kept because a backup running on this host owns them (its
    /// lock is held).
    pub kept_live: usize,
}

/// Removes leftovers older than `options.min_age`: volumes of backups that never
/// committed, incomplete multipart uploads, and access-check probes an interrupted check
/// left behind. Committed backups' objects are never touched (their volumes have a
/// manifest); an incomplete upload to a committed backup's volume is a stray (a retried
/// `CreateMultipartUpload` whose first answer was lost) and is aborted whatever its age.
///
/// Leftovers are aged per backup, not per object: a backup's orphan volumes are deleted
/// only when every one of its volumes and every incomplete upload of it is older than
/// the minimum age. (S3 dates a multipart object by the start of its upload, so one
/// volume can look old while the backup is still being written, or resumed.)
///
/// This host's journals (in the repository's state directory) decide first. They are read after the
/// bucket is listed, so every upload listed was started before its journal was read: the
/// uploads and volumes of a backup whose run is alive (its lock is held) are kept
/// whatever their age, matched by the (dataset, backup) their key names; the uploads a
/// dead run journalled (its lock can be taken) are aborted whatever their age — the
/// journal stays, so its completed volumes can still be resumed. Each dead journal's
/// lock is held while its uploads are aborted, so no backup resumes them meanwhile.
///
/// # Errors
///
/// Storage errors; what was removed before the error stays removed (each step is
/// idempotent, so running again finishes the job).
pub(crate) async fn clean_up(repository: &Repo, options: &CleanupOptions) -> Result<CleanupReport> {
    // The listing first: an upload a run starts after it is not seen at all, and one it
    // started before is named by the journal read next.
    let catalog = read_catalog(repository).await?;
    let journals = local_journals(repository.state(), repository.id()).await?;
    let now = repository.clock().now();
    let old_enough = |since: SystemTime| {
        now.duration_since(since)
            .is_ok_and(|age| age >= options.min_age)
    };
    let backup_of = |key: &ObjectKey| match key
        .as_str()
        .strip_prefix(repository.prefix())
        .and_then(ObjectRole::parse)
    {
        Some(ObjectRole::Volume {
            dataset, backup, ..
        }) => Some((dataset, backup)),
        _ => None,
    };
    // Backups with anything young: their orphan volumes all wait.
    let mut young_backups = BTreeSet::new();
    for upload in &catalog.leftovers.incomplete_uploads {
        if !old_enough(upload.initiated) {
            young_backups.extend(backup_of(&upload.key));
        }
    }
    for volume in &catalog.leftovers.orphan_volumes {
        if !old_enough(volume.written) {
            young_backups.extend(backup_of(&volume.key));
        }
    }
    let live = |key: &ObjectKey| {
        backup_of(key).is_some_and(|backup| journals.live_backups.contains(&backup))
    };
    // A committed backup's volume is complete: an upload still open on its key is a
    // stray that nothing will ever complete.
    let committed = |key: &ObjectKey| {
        backup_of(key).is_some_and(|(dataset, backup)| {
            catalog
                .backups(dataset)
                .iter()
                .any(|entry| entry.manifest.backup_id == backup)
        })
    };
    let mut report = CleanupReport::default();
    for upload in &catalog.leftovers.incomplete_uploads {
        let id = upload.upload_id.as_str();
        if journals.live.contains(id) || live(&upload.key) {
            report.kept_live += 1;
            continue;
        }
        if !journals.dead.contains(id) && !committed(&upload.key) && !old_enough(upload.initiated) {
            report.kept_recent += 1;
            continue;
        }
        if !options.dry_run {
            match repository
                .backend()
                .abort_multipart(&upload.key, &upload.upload_id)
                .await
            {
                // Gone meanwhile (completed or aborted by its owner): nothing to do.
                Ok(()) | Err(zib_storage_backend::Error::NoSuchUpload { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        report.aborted_uploads.push(upload.key.clone());
    }
    for volume in &catalog.leftovers.orphan_volumes {
        if live(&volume.key) {
            report.kept_live += 1;
            continue;
        }
        let young = backup_of(&volume.key).map_or(!old_enough(volume.written), |backup| {
            young_backups.contains(&backup)
        });
        if young {
            report.kept_recent += 1;
            continue;
        }
        if !options.dry_run {
            repository.backend().delete(&volume.key).await?;
        }
        report.deleted_volumes.push(volume.key.clone());
    }
    let probes =
        crate::access::leftover_probes(repository.backend().as_ref(), repository.prefix()).await?;
    for probe in probes {
        // Same age rule: a probe this young may belong to a check running right now.
        if !old_enough(probe.last_modified) {
            report.kept_recent += 1;
            continue;
        }
        if !options.dry_run {
            repository.backend().delete(&probe.key).await?;
        }
        report.deleted_probes.push(probe.key);
    }
    drop(journals);
    Ok(report)
}

/// Upload ids in this host's journals, by whether their run is alive.
#[derive(Debug, Default)]
struct LocalJournals {
    /// Uploads of runs that hold their lock: never aborted.
    live: BTreeSet<String>,
    /// Backups those runs are uploading: their volumes are never deleted (they have no
    /// manifest yet, and a large backup may take longer than the minimum age).
    live_backups: BTreeSet<(DatasetId, BackupId)>,
    /// Uploads of runs that died: aborted whatever their age.
    dead: BTreeSet<String>,
    /// The dead runs' locks, held until the clean-up ends.
    _locks: Vec<DatasetLock>,
}

async fn local_journals(state: &StateDir, repository: RepositoryId) -> Result<LocalJournals> {
    let state = state.clone();
    let dir = state.repository(repository);
    off_the_runtime(&dir, "read the resume journals", move |_| {
        let mut journals = LocalJournals::default();
        for path in state.journals(repository)? {
            let lock = lock_file(&DatasetFiles::of_journal(&path).lock, false)?;
            let journal = match read_journal_blocking(&path) {
                Ok(Some(journal)) => journal,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "skipping an unreadable journal; its uploads are removed once old");
                    continue;
                }
            };
            let uploads = journal
                .volumes
                .iter()
                .filter(|volume| matches!(volume.state, VolumeState::Uploading { .. }))
                .map(|volume| volume.upload_id.clone());
            match lock {
                Some(lock) => {
                    journals.dead.extend(uploads);
                    journals._locks.push(lock);
                }
                None => {
                    journals.live.extend(uploads);
                    journals
                        .live_backups
                        .insert((journal.dataset_id, journal.backup_id));
                }
            }
        }
        Ok(journals)
    })
    .await
}
