//! A run killed between creating its snapshot and journalling it, on a real zfs-fuse
//! pool: the record of the snapshot being created lets the next run remove it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zib_crypto::Passphrase;
use zib_snapshot_source::zfs::ZfsSource;
use zib_snapshot_source::{DatasetName, SnapshotName, SnapshotSource};
use zib_storage_backend::local_dir::LocalDirBackend;
use zib_storage_backend::StorageBackend;
use zib_test_utils::data::{write_tree, Names};
use zib_test_utils::zfs::ZfsPool;

use super::{backup_options, committed, fast_init, host, location};
use crate::backup::{created_marker, BackupOutcome, SnapshotChoice};
use crate::progress::NoProgress;
use crate::repository::Repository;
use crate::state::StateDir;
use crate::{BackupOptions, FakeClock};

async fn snapshot_names(source: &ZfsSource, dataset: &DatasetName) -> Vec<String> {
    source
        .list_snapshots(dataset)
        .await
        .unwrap()
        .into_iter()
        .map(|snapshot| snapshot.name.to_string())
        .collect()
}

/// A run killed after creating its snapshot but before its journal named it leaves a
/// record in the state directory; the next run removes that snapshot (zib's, never backed
/// up) and backs up a fresh one. A record naming a snapshot without zib's mark — or one a
/// committed backup holds — removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_left_by_a_run_killed_before_its_journal_is_removed() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(SystemTime::now());
    let backend: Arc<dyn StorageBackend> =
        Arc::new(LocalDirBackend::open(dir.path(), Arc::new(clock.clone())).unwrap());
    let (repository, _) = Repository::init(
        &location(backend, ""),
        &Passphrase::new("leak passphrase".into()),
        &fast_init(),
        host(state.path(), &clock),
    )
    .await
    .unwrap();
    let source = ZfsSource::new();
    let dataset = pool.create_dataset("leaky");
    write_tree(&pool.mountpoint(&dataset), 51, Names::Ascii).unwrap();
    let options = backup_options();
    let record = StateDir::new(state.path())
        .dataset(repository.id(), dataset.as_str())
        .pending;

    // What the killed run left: its snapshot, marked, and the record naming it.
    source
        .create_snapshot(
            &dataset,
            &SnapshotName::zfs("zib-20261129T010000Z").unwrap(),
            Some(&created_marker(repository.context())),
        )
        .await
        .unwrap();
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::fs::write(&record, "zib-20261129T010000Z").unwrap();
    clock.advance(Duration::from_secs(3600));
    let first = committed(
        repository
            .backup(&source, &dataset, &options, &NoProgress)
            .await
            .unwrap(),
    );
    let names = snapshot_names(&source, &dataset).await;
    assert_eq!(names, vec![first.manifest.snapshot_name.clone()]);
    assert!(
        !record.exists(),
        "the record is cleared once the journal names the snapshot"
    );

    // A record naming the user's snapshot, or the committed backup's: nothing removed.
    let mine = SnapshotName::zfs("mine").unwrap();
    source.create_snapshot(&dataset, &mine, None).await.unwrap();
    for name in ["mine", first.manifest.snapshot_name.as_str()] {
        std::fs::write(&record, name).unwrap();
        let outcome = repository
            .backup(
                &source,
                &dataset,
                &BackupOptions {
                    snapshot: SnapshotChoice::Existing(
                        SnapshotName::zfs(&first.manifest.snapshot_name).unwrap(),
                    ),
                    ..options.clone()
                },
                &NoProgress,
            )
            .await
            .unwrap();
        assert!(matches!(outcome, BackupOutcome::UpToDate { .. }));
        let names = snapshot_names(&source, &dataset).await;
        assert!(names.contains(&"mine".to_owned()), "{names:?}");
        assert!(names.contains(&first.manifest.snapshot_name), "{names:?}");
        assert!(!record.exists());
    }
}
