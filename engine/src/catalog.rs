//! The catalog — which backups exist, their chains, sizes and dates — read from the
//! bucket alone with LIST and HEAD requests (never a GET of an archived object, never a
//! restore), decrypting each manifest's sealed metadata.
//!
//! A local cache may later speed this up, but this is the source of truth: deleting
//! every local file loses nothing.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use zib_storage_backend::{ObjectKey, StorageBackendExt, UploadId};

use crate::clock::Clock;

use crate::error::{Error, Result};
use crate::ids::{BackupId, DatasetId, RepositoryId};
use crate::journal::{list_journals, lock_path_for_journal, read_journal, VolumeState};
use crate::layout::{manifests_prefix, volumes_prefix, ObjectRole};
use crate::lock::lock_file;
use crate::metadata::open_sealed_metadata;
use crate::records::{BackupKind, ManifestRecord};
use crate::repository::Repository;

/// One committed backup as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogBackup {
    /// What its manifest says.
    pub manifest: ManifestRecord,
    /// Sizes of its volume objects, in index order, as listed.
    pub volume_sizes: Vec<u64>,
}

/// A volume object whose backup has no manifest: a backup that never committed, or
/// one another host is uploading right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanVolume {
    /// The object's backend key.
    pub key: ObjectKey,
    /// When it was written.
    pub written: SystemTime,
}

/// A multipart upload that was never completed or aborted (its parts are billed at
/// S3 Standard rates while it waits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteUpload {
    /// The key it uploads to.
    pub key: ObjectKey,
    /// Its upload id.
    pub upload_id: UploadId,
    /// When it was started.
    pub initiated: SystemTime,
}

/// Objects that belong to no committed backup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Volume objects whose backup has no manifest.
    pub orphan_volumes: Vec<OrphanVolume>,
    /// Incomplete multipart uploads under the repository.
    pub incomplete_uploads: Vec<IncompleteUpload>,
}

/// Every committed backup in the repository, grouped by dataset, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Backups by dataset.
    pub datasets: BTreeMap<DatasetId, Vec<CatalogBackup>>,
    /// What a clean-up would remove.
    pub leftovers: Leftovers,
}

impl Catalog {
    /// The dataset id whose newest backup was taken from the dataset named `name`.
    pub fn dataset_named(&self, name: &str) -> Option<DatasetId> {
        self.datasets
            .iter()
            .filter_map(|(id, backups)| {
                backups
                    .iter()
                    .filter(|backup| backup.manifest.dataset_name == name)
                    .map(|backup| backup.manifest.committed_at)
                    .max()
                    .map(|newest| (newest, *id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// The backups of one dataset, oldest first (empty if none).
    pub fn backups(&self, dataset: DatasetId) -> &[CatalogBackup] {
        self.datasets.get(&dataset).map_or(&[], Vec::as_slice)
    }

    /// The chain that restores `backup`: its full backup first, then each incremental.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenChain`] when a base backup is missing from the catalog.
    pub fn chain(&self, dataset: DatasetId, backup: BackupId) -> Result<Vec<&CatalogBackup>> {
        let backups = self.backups(dataset);
        let find = |id: BackupId| backups.iter().find(|entry| entry.manifest.backup_id == id);
        let mut chain = Vec::new();
        let mut current = find(backup).ok_or(Error::BrokenChain {
            backup,
            missing: backup,
        })?;
        loop {
            chain.push(current);
            if chain.len() > backups.len() {
                return Err(Error::BrokenChain {
                    backup,
                    missing: current.manifest.backup_id,
                });
            }
            match &current.manifest.kind {
                BackupKind::Full => break,
                BackupKind::Incremental { base_backup, .. } => {
                    current = find(*base_backup).ok_or(Error::BrokenChain {
                        backup,
                        missing: *base_backup,
                    })?;
                }
            }
        }
        chain.reverse();
        Ok(chain)
    }
}

/// Reads the catalog of `repository` from its backend.
///
/// # Errors
///
/// Storage errors; [`Error::Corrupt`] / [`Error::Crypto`] when a manifest's metadata
/// does not decode or open (an altered or foreign object under `manifests/`).
pub async fn read_catalog(repository: &Repository) -> Result<Catalog> {
    let backend = repository.backend();
    let prefix = repository.prefix();

    // Volume sizes from one listing of volumes/.
    let mut volume_sizes: BTreeMap<(DatasetId, BackupId), BTreeMap<u32, u64>> = BTreeMap::new();
    let mut volume_keys: BTreeMap<(DatasetId, BackupId), Vec<OrphanVolume>> = BTreeMap::new();
    let volumes_listing = format!("{prefix}{}", volumes_prefix());
    let mut listing = backend.list(&volumes_listing);
    while let Some(entry) = listing.try_next().await? {
        let Some(relative) = entry.key.as_str().strip_prefix(prefix) else {
            continue;
        };
        if let Some(ObjectRole::Volume {
            dataset,
            backup,
            index,
        }) = ObjectRole::parse(relative)
        {
            volume_sizes
                .entry((dataset, backup))
                .or_default()
                .insert(index, entry.size);
            volume_keys
                .entry((dataset, backup))
                .or_default()
                .push(OrphanVolume {
                    key: entry.key.clone(),
                    written: entry.last_modified,
                });
        }
    }
    drop(listing);

    let mut catalog = Catalog::default();
    let mut committed = BTreeSet::new();
    let manifests_listing = format!("{prefix}{}", manifests_prefix());
    let entries = backend.list_all(&manifests_listing).await?;
    for entry in entries {
        let Some(relative) = entry.key.as_str().strip_prefix(prefix) else {
            continue;
        };
        let Some(role @ ObjectRole::Manifest { dataset, backup }) = ObjectRole::parse(relative)
        else {
            tracing::warn!(key = %entry.key, "ignoring an object under manifests/ that zib did not write");
            continue;
        };
        let head = backend.head(&entry.key).await?;
        let plaintext = open_sealed_metadata(
            &head.metadata,
            &role,
            repository.id(),
            repository.data_key(),
        )?;
        let manifest = ManifestRecord::decode(&plaintext, entry.key.as_str())?;
        if manifest.dataset_id != dataset || manifest.backup_id != backup {
            return Err(Error::Corrupt {
                object: entry.key.as_str().to_owned(),
                reason: "the manifest's record names another dataset or backup than its key".into(),
            });
        }
        let sizes = volume_sizes.remove(&(dataset, backup)).unwrap_or_default();
        committed.insert((dataset, backup));
        catalog
            .datasets
            .entry(dataset)
            .or_default()
            .push(CatalogBackup {
                volume_sizes: sizes.into_values().collect(),
                manifest,
            });
    }
    for backups in catalog.datasets.values_mut() {
        backups.sort_by_key(|backup| (backup.manifest.committed_at, backup.manifest.backup_id));
    }
    for (id, keys) in volume_keys {
        if !committed.contains(&id) {
            catalog.leftovers.orphan_volumes.extend(keys);
        }
    }
    for upload in backend.list_multipart_uploads(prefix).await? {
        catalog.leftovers.incomplete_uploads.push(IncompleteUpload {
            key: upload.key,
            upload_id: upload.upload_id,
            initiated: upload.initiated,
        });
    }
    Ok(catalog)
}

/// What [`clean_up`] may remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupOptions {
    /// Leftovers younger than this are kept: they may belong to a backup another host is
    /// running right now (default 7 days, longer than any single volume upload).
    pub min_age: Duration,
    /// This host's state directory (as given to `back_up`), if any: uploads listed in a
    /// journal whose run died (its lock is free) are aborted whatever their age, and
    /// uploads of a running backup (its lock is held) are never touched.
    pub state_dir: Option<PathBuf>,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(7 * 24 * 3600),
            state_dir: None,
        }
    }
}

/// What [`clean_up`] did.
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
/// left behind. Committed backups are never touched
/// (their volumes have a manifest).
///
/// Leftovers are aged per backup, not per object: a backup's orphan volumes are deleted
/// only when every one of its volumes and every incomplete upload of it is older than
/// the minimum age. (S3 dates a multipart object by the start of its upload, so one
/// volume can look old while the backup is still being written, or resumed.)
///
/// With `options.state_dir`, this host's journals decide first. They are read after the
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
pub async fn clean_up(
    repository: &Repository,
    clock: &dyn Clock,
    options: &CleanupOptions,
) -> Result<CleanupReport> {
    // The listing first: an upload a run starts after it is not seen at all, and one it
    // started before is named by the journal read next.
    let catalog = read_catalog(repository).await?;
    let journals = match &options.state_dir {
        Some(state_dir) => local_journals(state_dir, repository.id()).await?,
        None => LocalJournals::default(),
    };
    let now = clock.now();
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
    let mut report = CleanupReport::default();
    for upload in catalog.leftovers.incomplete_uploads {
        let id = upload.upload_id.as_str();
        if journals.live.contains(id) || live(&upload.key) {
            report.kept_live += 1;
            continue;
        }
        if !journals.dead.contains(id) && !old_enough(upload.initiated) {
            report.kept_recent += 1;
            continue;
        }
        match repository
            .backend()
            .abort_multipart(&upload.key, &upload.upload_id)
            .await
        {
            // Gone meanwhile (completed or aborted by its owner): nothing to do.
            Ok(()) | Err(zib_storage_backend::Error::NoSuchUpload { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        report.aborted_uploads.push(upload.key);
    }
    for volume in catalog.leftovers.orphan_volumes {
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
        repository.backend().delete(&volume.key).await?;
        report.deleted_volumes.push(volume.key);
    }
    let probes =
        crate::access::leftover_probes(repository.backend().as_ref(), repository.prefix()).await?;
    for probe in probes {
        // Same age rule: a probe this young may belong to a check running right now.
        if !old_enough(probe.last_modified) {
            report.kept_recent += 1;
            continue;
        }
        repository.backend().delete(&probe.key).await?;
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
    _locks: Vec<crate::lock::DatasetLock>,
}

async fn local_journals(state_dir: &Path, repository: RepositoryId) -> Result<LocalJournals> {
    let state_dir = state_dir.to_owned();
    let state_dir_for_error = state_dir.clone();
    tokio::task::spawn_blocking(move || {
        let mut journals = LocalJournals::default();
        for path in list_journals(&state_dir, repository)? {
            let lock = lock_file(&lock_path_for_journal(&path), false)?;
            let journal = match read_journal(&path) {
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
                        .insert((journal.dataset(), journal.backup()));
                }
            }
        }
        Ok(journals)
    })
    .await
    .map_err(|error| Error::LocalState {
        path: crate::journal::repository_state_dir(&state_dir_for_error, repository),
        action: "read the resume journals",
        source: std::io::Error::other(error.to_string()),
    })?
}
