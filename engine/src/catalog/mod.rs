//! The catalog — which backups exist, their chains, sizes and dates — read from the
//! bucket with LIST and HEAD requests (never a GET of an archived object, never a
//! restore), decrypting each manifest's sealed metadata.
//!
//! The bucket is the source of truth: [`cache`] keeps this host's copy of the HEAD
//! answers so that a manifest already seen costs no request, and deleting every local
//! file loses nothing but that speed.

pub(crate) mod cache;
pub(crate) mod planning;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use zib_crypto::DataKey;
use zib_storage_backend::{
    ListEntry, MultipartUploadInfo, ObjectKey, StorageBackend, StorageBackendExt, UploadId,
};

use self::cache::ManifestCache;

use crate::context::Repo;
use crate::error::{Error, Result};
use crate::format::layout::{manifests_prefix, volumes_prefix, ObjectRole};
use crate::format::metadata::{open_sealed_metadata, Metadata};
use crate::format::records::{BackupKind, ManifestRecord};
use crate::ids::{BackupId, DatasetId, RepositoryId};

/// Manifest HEADs in flight at once while the catalog is read without a cache: enough to
/// hide round trips of latency behind each other (10,000 HEADs at 40 ms each take
/// about 13 s), far below what S3 serves per prefix (5,500 a second).
const CATALOG_HEADS_IN_FLIGHT: usize = 32;

/// One committed backup as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogBackup {
    /// What its manifest says.
    pub manifest: ManifestRecord,
    /// Sizes of its volume objects 0, 1, 2, … as listed, up to the first index that is
    /// not listed: the length is the first missing volume's index (or the count listed,
    /// when none is missing), and entry `i` is always volume `i`'s size.
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

/// Opens the manifest found at `key` (whose `role` is a manifest's) from the metadata a
/// HEAD returned: its plaintext pairs, its sealed record, the record's layout, and that
/// the record names the dataset and backup its key names.
///
/// # Errors
///
/// [`Error::Corrupt`] / [`Error::Crypto`] naming what does not open or decode.
pub(crate) fn open_manifest(
    repository: &Repo,
    key: &ObjectKey,
    role: &ObjectRole,
    metadata: &Metadata,
) -> Result<ManifestRecord> {
    decode_manifest(
        repository.id(),
        repository.data_key(),
        key.as_str(),
        role,
        metadata,
    )
}

/// [`open_manifest`] on its inputs alone: the repository's id and data key, the key's
/// text (for messages), its role and the metadata.
///
/// # Errors
///
/// As [`open_manifest`].
pub(crate) fn decode_manifest(
    repository: RepositoryId,
    data_key: &DataKey,
    key: &str,
    role: &ObjectRole,
    metadata: &Metadata,
) -> Result<ManifestRecord> {
    let plaintext = open_sealed_metadata(metadata, role, repository, data_key)?;
    let manifest = ManifestRecord::decode(&plaintext, key)?;
    let named = match role {
        ObjectRole::Manifest { dataset, backup } => {
            manifest.dataset_id == *dataset && manifest.backup_id == *backup
        }
        _ => false,
    };
    if !named {
        return Err(Error::Corrupt {
            object: key.to_owned(),
            reason: "the manifest's record names another dataset or backup than its key".into(),
        });
    }
    Ok(manifest)
}

/// Reads the catalog of `repository` from its backend.
///
/// # Errors
///
/// Storage errors; [`Error::Corrupt`] / [`Error::Crypto`] when a manifest's metadata
/// does not decode or open (an altered or foreign object under `manifests/`).
pub(crate) async fn read_catalog(repository: &Repo) -> Result<Catalog> {
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
    let manifests: Vec<(ListEntry, ObjectRole)> = entries
        .into_iter()
        .filter_map(|entry| {
            let relative = entry.key.as_str().strip_prefix(prefix)?;
            match ObjectRole::parse(relative) {
                Some(role @ ObjectRole::Manifest { .. }) => Some((entry, role)),
                _ => {
                    tracing::warn!(key = %entry.key, "ignoring an object under manifests/ that zib did not write");
                    None
                }
            }
        })
        .collect();
    let mut cache = ManifestCache::load(repository).await;
    let relative = |entry: &ListEntry| entry.key.as_str()[prefix.len()..].to_owned();
    let mut opened = Vec::with_capacity(manifests.len());
    let mut unknown = Vec::new();
    for (entry, role) in manifests {
        let key = relative(&entry);
        let cached = cache.take(&key, &entry).and_then(|metadata| {
            open_manifest(repository, &entry.key, &role, &metadata)
                .ok()
                .map(|manifest| (manifest, metadata))
        });
        match cached {
            Some((manifest, metadata)) => {
                cache.keep_cached(key, &entry, metadata);
                opened.push(manifest);
            }
            None => unknown.push((entry, role)),
        }
    }
    // One HEAD per manifest the cache does not know, a bounded number at once.
    let mut heads = futures::stream::iter(unknown)
        .map(|(entry, role)| async move {
            let head = backend.head(&entry.key).await;
            (entry, role, head)
        })
        .buffer_unordered(CATALOG_HEADS_IN_FLIGHT);
    while let Some((entry, role, head)) = heads.next().await {
        let head = head?;
        opened.push(open_manifest(
            repository,
            &entry.key,
            &role,
            &head.metadata,
        )?);
        cache.keep_fetched(relative(&entry), &entry, head.metadata);
    }
    drop(heads);
    cache.save().await;
    for manifest in opened {
        let (dataset, backup) = (manifest.dataset_id, manifest.backup_id);
        let sizes = volume_sizes.remove(&(dataset, backup)).unwrap_or_default();
        committed.insert((dataset, backup));
        catalog
            .datasets
            .entry(dataset)
            .or_default()
            .push(CatalogBackup {
                volume_sizes: contiguous_sizes(sizes),
                manifest,
            });
    }
    for backups in catalog.datasets.values_mut() {
        sort_oldest_first(backups);
    }
    for (id, keys) in volume_keys {
        if !committed.contains(&id) {
            catalog.leftovers.orphan_volumes.extend(keys);
        }
    }
    for upload in uploads_if_listed(backend, prefix).await? {
        catalog.leftovers.incomplete_uploads.push(IncompleteUpload {
            key: upload.key,
            upload_id: upload.upload_id,
            initiated: upload.initiated,
        });
    }
    Ok(catalog)
}

/// The incomplete uploads under `prefix`; none on a server that cannot list them (an
/// S3-compatible server without ListMultipartUploads), where only the journal of the
/// host that started an upload knows it.
pub(crate) async fn uploads_if_listed(
    backend: &dyn StorageBackend,
    prefix: &str,
) -> Result<Vec<MultipartUploadInfo>> {
    match backend.list_multipart_uploads(prefix).await {
        Ok(uploads) => Ok(uploads),
        Err(zib_storage_backend::Error::Unsupported { message, .. }) => {
            tracing::debug!(%message, "incomplete uploads cannot be listed on this server");
            Ok(Vec::new())
        }
        Err(error) => Err(error.into()),
    }
}

/// The sizes of volumes 0, 1, 2, … up to the first index missing from `listed`. (All
/// of them would shift the sizes after a gap onto the wrong indices, and a restore
/// would name the wrong volume as missing.)
fn contiguous_sizes(listed: BTreeMap<u32, u64>) -> Vec<u64> {
    listed
        .into_iter()
        .zip(0u32..)
        .take_while(|((index, _), expected)| index == expected)
        .map(|((_, size), _)| size)
        .collect()
}

/// Oldest committed first; backups committed within the same second (a consolidation
/// followed at once by a backup) by their depth in the chain, so a base precedes what was
/// sent from it and the last is the newest restore point; then by id.
fn sort_oldest_first(backups: &mut [CatalogBackup]) {
    let base_of: BTreeMap<BackupId, BackupId> = backups
        .iter()
        .filter_map(|backup| match &backup.manifest.kind {
            BackupKind::Incremental { base_backup, .. } => {
                Some((backup.manifest.backup_id, *base_backup))
            }
            BackupKind::Full => None,
        })
        .collect();
    // Base links followed down to a full or a base not in the list; bounded, so a cycle
    // (which `chain` refuses) cannot loop.
    let depth = |mut id: BackupId| {
        let mut depth = 0usize;
        while let Some(base) = base_of.get(&id) {
            if depth > base_of.len() {
                break;
            }
            depth += 1;
            id = *base;
        }
        depth
    };
    backups.sort_by_cached_key(|backup| {
        (
            backup.manifest.committed_at,
            depth(backup.manifest.backup_id),
            backup.manifest.backup_id,
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::records::SendFlagBits;
    use zib_snapshot_source::{SnapshotIdentity, SourceKind};

    #[test]
    fn volume_sizes_stop_at_the_first_missing_index() {
        let listed = |pairs: &[(u32, u64)]| pairs.iter().copied().collect::<BTreeMap<_, _>>();
        assert_eq!(
            contiguous_sizes(listed(&[(0, 10), (1, 11), (2, 12)])),
            [10, 11, 12]
        );
        // Volume 1 gone: volume 2's size is not taken for volume 1's.
        assert_eq!(contiguous_sizes(listed(&[(0, 10), (2, 12), (3, 13)])), [10]);
        assert_eq!(contiguous_sizes(listed(&[(1, 11)])), Vec::<u64>::new());
        assert_eq!(contiguous_sizes(BTreeMap::new()), Vec::<u64>::new());
    }

    fn backup(id: u8, base: Option<u8>, committed_at: i64) -> CatalogBackup {
        let kind = match base {
            None => BackupKind::Full,
            Some(base) => BackupKind::Incremental {
                base_backup: BackupId::from_bytes([base; 16]),
                base_snapshot_name: format!("s{base}"),
                base_identity: SnapshotIdentity::ZfsGuid(u64::from(base)),
            },
        };
        CatalogBackup {
            volume_sizes: vec![100],
            manifest: ManifestRecord {
                source: SourceKind::Zfs,
                kind,
                snapshot_created_by_zib: true,
                send_flags: SendFlagBits(0),
                dataset_id: DatasetId::from_bytes([9; 16]),
                backup_id: BackupId::from_bytes([id; 16]),
                dataset_name: "tank/photos".into(),
                snapshot_name: format!("s{id}"),
                snapshot_identity: SnapshotIdentity::ZfsGuid(u64::from(id)),
                snapshot_created_at: committed_at,
                committed_at,
                stream_len: 10,
                stream_sha256: [0; 32],
                stored_len: 100,
                volume_count: 1,
                volume_plaintext_len: 10,
                volume_list_sha256: [0; 32],
                snapshot_bytes: None,
                replaced_incremental: None,
            },
        }
    }

    #[test]
    fn backups_committed_in_one_second_keep_their_chain_order() {
        // Ids that sort against the chain: 3 is the full, 2 was sent from it, 1 from 2,
        // and 4 is older than all of them.
        let mut backups = vec![
            backup(1, Some(2), 100),
            backup(2, Some(3), 100),
            backup(3, None, 100),
            backup(4, None, 99),
        ];
        sort_oldest_first(&mut backups);
        let order: Vec<BackupId> = backups.iter().map(|b| b.manifest.backup_id).collect();
        let expected: Vec<BackupId> = [4, 3, 2, 1].map(|id| BackupId::from_bytes([id; 16])).into();
        assert_eq!(order, expected);
    }
}
