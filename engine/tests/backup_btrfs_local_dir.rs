//! The backup pipeline on BTRFS (a real file system on a loop device) into a
//! local-directory repository: full, incremental, catalog, and the chain received back
//! with identical files, unicode names included.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zib_engine::snapshot_source::btrfs::BtrfsSource;
use zib_engine::snapshot_source::{DatasetName, SnapshotSource};
use zib_engine::storage::local_dir::LocalDirBackend;
use zib_engine::storage::{StorageBackend, StorageBackendExt};
use zib_engine::{BackupKind, BackupOutcome, FakeClock, NoProgress, Passphrase, Repository};
use zib_test_utils::btrfs::BtrfsFs;
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names};

use common::{backup_options, fast_init, host, location};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_full_then_incremental_into_a_local_directory() {
    let Some(fs) = BtrfsFs::create() else { return };
    let repository_dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(SystemTime::now());
    let backend: Arc<dyn StorageBackend> =
        Arc::new(LocalDirBackend::open(repository_dir.path(), Arc::new(clock.clone())).unwrap());
    let (repository, _) = Repository::init(
        &location(&backend, ""),
        &Passphrase::new("photos of the grandchildren".into()),
        &fast_init(),
        host(&clock),
    )
    .await
    .unwrap();
    let repository = Arc::new(repository);

    let subvolume = fs.create_subvolume("Fotos für Oma");
    write_tree(&subvolume, 21, Names::Unicode).unwrap();
    let snapshot_dir = fs.mount_point().join("zib snapshots");
    std::fs::create_dir(&snapshot_dir).unwrap();
    let source = BtrfsSource::new(&snapshot_dir);
    let dataset = DatasetName::path(&subvolume).unwrap();
    let options = backup_options();

    let mut manifests = Vec::new();
    for round in 0..2 {
        if round > 0 {
            modify_tree(&subvolume, 22).unwrap();
            clock.advance(Duration::from_secs(3600));
        }
        match repository
            .backup(&source, &dataset, &options, &NoProgress)
            .await
            .unwrap()
        {
            BackupOutcome::Committed(committed) => manifests.push(committed.manifest),
            BackupOutcome::UpToDate { .. } => panic!("round {round} found nothing to back up"),
        }
    }
    assert_eq!(manifests[0].kind, BackupKind::Full);
    assert!(
        matches!(&manifests[1].kind, BackupKind::Incremental { base_backup, .. } if *base_backup == manifests[0].backup_id),
        "{:?}",
        manifests[1].kind
    );
    let expected = hash_tree(&subvolume).unwrap();
    // The first snapshot zib created is pruned once the second backup committed; the
    // newest stays as the next base (BTRFS cannot hold it, so it is simply kept).
    let local: Vec<String> = source
        .list_snapshots(&dataset)
        .await
        .unwrap()
        .into_iter()
        .map(|snapshot| snapshot.name.to_string())
        .collect();
    assert_eq!(local, vec![manifests[1].snapshot_name.clone()]);

    let catalog = repository.catalog().await.unwrap();
    let dataset_id = manifests[0].dataset_id;
    assert_eq!(catalog.backups(dataset_id).len(), 2);
    assert_eq!(catalog.dataset_named(dataset.as_str()), Some(dataset_id));
    // Object keys carry ids only: the unicode dataset name appears nowhere in them.
    for entry in backend.list_all("").await.unwrap() {
        assert!(!entry.key.as_str().contains("Fotos"), "{}", entry.key);
    }

    let target = DatasetName::path(fs.mount_point().join("restored")).unwrap();
    let received = repository
        .receive_chain(
            &catalog,
            dataset_id,
            manifests[1].backup_id,
            &source,
            &target,
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(received.len(), 2);
    let newest = target.as_path().join(received[1].name.as_str());
    assert_eq!(hash_tree(&newest).unwrap(), expected);
}
