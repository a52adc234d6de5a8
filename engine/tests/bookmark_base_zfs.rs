//! A backed-up base snapshot destroyed by the user (a snapshot rotation tool, say): on
//! OpenZFS its bookmark keeps the chain going — the next backup is an incremental from
//! the bookmark, and the chain still restores file for file; without bookmarks
//! (zfs-fuse) the next backup is a full, saying why. Runs on zfs-fuse in the default
//! tier and on real OpenZFS in the VM tier (`scripts/openzfs-vm-tier.sh`, which sets
//! `ZIB_ZFS_DIALECT=openzfs`).

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::snapshot_source::{Protection, SnapshotName, SnapshotSource};
use zib_engine::{BackupKind, BackupOptions, NoProgress, SnapshotChoice};
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names};
use zib_test_utils::zfs::ZfsPool;

use common::{backup_options, committed, local_dir_repository, LocalRepository};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_base_continues_from_its_bookmark_where_there_are_bookmarks() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let LocalRepository {
        dir: _dir,
        clock,
        repository,
    } = local_dir_repository("bookmark passphrase").await;
    let source = ZfsSource::new();
    let dataset = pool.create_dataset("rotated");
    let mountpoint = pool.mountpoint(&dataset);
    write_tree(&mountpoint, 71, Names::Ascii).unwrap();
    let bookmarks = source.capabilities(&dataset).await.unwrap().bookmarks;
    if std::env::var("ZIB_ZFS_DIALECT").as_deref() == Ok("openzfs") {
        assert!(bookmarks, "OpenZFS pools have bookmarks");
    }

    // The user's own hourly snapshot, backed up, then rotated away.
    let hourly = SnapshotName::zfs("hourly-1").unwrap();
    source
        .create_snapshot(&dataset, &hourly, None)
        .await
        .unwrap();
    let first = committed(
        repository
            .backup(
                &source,
                &dataset,
                &BackupOptions {
                    snapshot: SnapshotChoice::Existing(hourly.clone()),
                    ..backup_options()
                },
                &NoProgress,
            )
            .await
            .unwrap(),
    );
    match first.protection.clone().expect("zfs protects the base") {
        hold @ Protection::Hold { .. } => source.release(&hold).await.unwrap(),
        Protection::Bookmark { .. } => assert!(bookmarks),
        other => panic!("unexpected protection {other:?}"),
    }
    source.destroy_snapshot(&dataset, &hourly).await.unwrap();

    modify_tree(&mountpoint, 72).unwrap();
    clock.advance(Duration::from_secs(3600));
    let second = committed(
        repository
            .backup(&source, &dataset, &backup_options(), &NoProgress)
            .await
            .unwrap(),
    );
    if !bookmarks {
        assert_eq!(second.manifest.kind, BackupKind::Full);
        assert!(
            second
                .decision
                .reason
                .contains("no committed backup's snapshot exists locally"),
            "{}",
            second.decision.reason
        );
        return;
    }
    assert!(
        matches!(&second.manifest.kind, BackupKind::Incremental { base_backup, .. } if *base_backup == first.manifest.backup_id),
        "{:?}: {}",
        second.manifest.kind,
        second.decision.reason
    );
    // The old bookmark gave way to the new base's.
    assert!(
        matches!(&second.pruned.released, Some(Protection::Bookmark { bookmark, .. }) if *bookmark == hourly),
        "{:?}",
        second.pruned
    );
    let remaining: Vec<String> = source
        .list_bookmarks(&dataset)
        .await
        .unwrap()
        .into_iter()
        .map(|bookmark| bookmark.name.to_string())
        .collect();
    assert_eq!(remaining, vec![second.manifest.snapshot_name.clone()]);

    let expected = hash_tree(&mountpoint).unwrap();
    let catalog = repository.catalog().await.unwrap();
    let target = pool.dataset("restored");
    let received = repository
        .receive_chain(
            &catalog,
            first.manifest.dataset_id,
            second.manifest.backup_id,
            &source,
            &target,
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(received.len(), 2);
    pool.remount(&target);
    assert_eq!(hash_tree(&pool.mountpoint(&target)).unwrap(), expected);
}
