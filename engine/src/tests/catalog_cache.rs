//! The catalog read twice costs its HEADs once: the local cache of manifest HEAD answers
//! is used only while the listing matches, is checked like a HEAD's answer, and is
//! rebuilt from the bucket when it is damaged, altered or gone.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use zib_crypto::Passphrase;
use zib_snapshot_source::{SnapshotIdentity, SourceKind};
use zib_storage_backend::counting::Counting;
use zib_storage_backend::memory::{MemoryBackend, MemoryConfig};
use zib_storage_backend::{Operation, StorageBackend};

use super::{fast_init, host, location};
use crate::backup::commit_manifest;
use crate::catalog::{read_catalog, Catalog};
use crate::context::Repo;
use crate::format::layout::ObjectRole;
use crate::format::records::{BackupKind, ManifestRecord, SendFlagBits};
use crate::ids::{BackupId, DatasetId};
use crate::repository::Repository;
use crate::FakeClock;

const PASSPHRASE: &str = "cache me if you can";

struct Setup {
    clock: Arc<FakeClock>,
    backend: Arc<MemoryBackend>,
    state: tempfile::TempDir,
    repository: Arc<Repo>,
    counting: Counting<Arc<MemoryBackend>>,
    manifests: Vec<ManifestRecord>,
}

fn manifest(number: u8) -> ManifestRecord {
    ManifestRecord {
        source: SourceKind::Zfs,
        kind: BackupKind::Full,
        snapshot_created_by_zib: true,
        send_flags: SendFlagBits(0),
        dataset_id: DatasetId::from_bytes([1; 16]),
        backup_id: BackupId::from_bytes([number; 16]),
        dataset_name: "tank/photos".into(),
        snapshot_name: format!("zib-2027011{number}T000000Z"),
        snapshot_identity: SnapshotIdentity::ZfsGuid(u64::from(number)),
        snapshot_created_at: 1_800_000_000 + i64::from(number),
        committed_at: 1_800_000_100 + i64::from(number),
        stream_len: 0,
        stream_sha256: [0; 32],
        stored_len: 0,
        volume_count: 0,
        volume_plaintext_len: 1 << 20,
        volume_list_sha256: [0; 32],
        snapshot_bytes: None,
        replaced_incremental: None,
    }
}

/// A repository with five committed backups, opened through a request counter.
async fn setup() -> Setup {
    let clock = Arc::new(FakeClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let backend = Arc::new(MemoryBackend::new(MemoryConfig::default(), clock.clone()));
    let state = tempfile::tempdir().unwrap();
    let (repository, _) = Repository::init(
        &location(backend.clone(), "family/"),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(state.path(), &clock),
    )
    .await
    .unwrap();
    let manifests: Vec<ManifestRecord> = (1..=5).map(manifest).collect();
    for record in &manifests {
        commit_manifest(repository.context(), record).await.unwrap();
    }
    let counting = Counting::new(backend.clone());
    let repository = Repository::open(
        &location(Arc::new(counting.clone()), "family/"),
        &Passphrase::new(PASSPHRASE.into()),
        host(state.path(), &clock),
    )
    .await
    .unwrap()
    .context()
    .clone();
    Setup {
        clock,
        backend,
        state,
        repository,
        counting,
        manifests,
    }
}

impl Setup {
    /// Reads the catalog; returns it and the HEADs the read made.
    async fn read(&self) -> (Catalog, u64) {
        let before = self.counting.count(Operation::Head);
        let catalog = read_catalog(&self.repository).await.unwrap();
        (catalog, self.counting.count(Operation::Head) - before)
    }

    fn listed(catalog: &Catalog) -> Vec<ManifestRecord> {
        catalog
            .datasets
            .values()
            .flatten()
            .map(|backup| backup.manifest.clone())
            .collect()
    }

    fn cache_path(&self) -> std::path::PathBuf {
        self.state
            .path()
            .join(self.repository.id().to_string())
            .join(crate::catalog::cache::tests::FILE_NAME)
    }

    fn manifest_key(&self, record: &ManifestRecord) -> zib_storage_backend::ObjectKey {
        self.repository
            .key(&ObjectRole::Manifest {
                dataset: record.dataset_id,
                backup: record.backup_id,
            })
            .unwrap()
    }
}

#[tokio::test]
async fn a_second_read_makes_no_head_and_sees_the_same_catalog() {
    let setup = setup().await;
    let (first, heads) = setup.read().await;
    assert_eq!(heads, 5, "one HEAD per manifest without a cache");
    assert_eq!(Setup::listed(&first), setup.manifests);
    assert!(setup.cache_path().exists());
    let (second, heads) = setup.read().await;
    assert_eq!(heads, 0, "every manifest from the cache");
    assert_eq!(second, first);
}

#[tokio::test]
async fn a_rewritten_manifest_is_fetched_again_and_a_deleted_one_is_gone() {
    let setup = setup().await;
    setup.read().await;
    // Manifest 2 is written again, later (its last-modified time changes), and
    // manifest 4 is deleted.
    setup.clock.advance(Duration::from_secs(60));
    let rewritten = &setup.manifests[1];
    setup
        .backend
        .delete(&setup.manifest_key(rewritten))
        .await
        .unwrap();
    commit_manifest(&setup.repository, rewritten).await.unwrap();
    setup
        .backend
        .delete(&setup.manifest_key(&setup.manifests[3]))
        .await
        .unwrap();
    let (catalog, heads) = setup.read().await;
    assert_eq!(heads, 1, "only the rewritten manifest");
    let mut expected = setup.manifests.clone();
    expected.remove(3);
    assert_eq!(Setup::listed(&catalog), expected);
    let (_, heads) = setup.read().await;
    assert_eq!(heads, 0);
}

#[tokio::test]
async fn a_damaged_or_missing_cache_is_rebuilt_from_the_bucket() {
    let setup = setup().await;
    let (expected, _) = setup.read().await;
    let mut bytes = std::fs::read(setup.cache_path()).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(setup.cache_path(), &bytes).unwrap();
    let (catalog, heads) = setup.read().await;
    assert_eq!((catalog, heads), (expected.clone(), 5));
    std::fs::remove_file(setup.cache_path()).unwrap();
    let (catalog, heads) = setup.read().await;
    assert_eq!((catalog, heads), (expected.clone(), 5));
    let (catalog, heads) = setup.read().await;
    assert_eq!((catalog, heads), (expected, 0), "rebuilt");
}

/// A cache whose entries were swapped (each key keeping its listing, so the validators
/// match) cannot change a backup: the sealed metadata names its own key, does not open
/// under another, and those manifests are fetched again.
#[tokio::test]
async fn an_altered_cache_cannot_change_a_backup() {
    let setup = setup().await;
    let (expected, _) = setup.read().await;
    let path = setup.cache_path();
    let mut entries = crate::catalog::cache::tests::read(&path);
    let keys: Vec<String> = entries.keys().cloned().collect();
    assert_eq!(keys.len(), 5);
    crate::catalog::cache::tests::swap_metadata(&mut entries, &keys[0], &keys[1]);
    crate::catalog::cache::tests::write(&path, &entries);
    let (catalog, heads) = setup.read().await;
    assert_eq!(heads, 2, "the two swapped entries");
    assert_eq!(catalog, expected);
}
