//! Pruning after a commit, on a real zfs-fuse pool: the snapshots zib created are
//! destroyed once a newer backup committed, the newest stays held as the next base, and
//! snapshots without both of zib's marks — the user's own, another repository's, or
//! zib's but never committed — are never touched.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::snapshot_source::{DatasetName, SnapshotName, SnapshotSource};
use zib_engine::{BackupKind, BackupOptions, NoProgress, Repository, SnapshotChoice};
use zib_test_utils::data::{modify_tree, write_tree, Names};
use zib_test_utils::zfs::{run_checked, ZfsPool};

use common::{backup_options, committed, local_dir_repository, LocalRepository};

async fn snapshot_names(source: &ZfsSource, dataset: &DatasetName) -> Vec<String> {
    source
        .list_snapshots(dataset)
        .await
        .unwrap()
        .into_iter()
        .map(|snapshot| snapshot.name.to_string())
        .collect()
}

/// The `zib:created` value zib gives the snapshots it creates: the repository's id.
fn created_marker(repository: &Repository) -> String {
    repository.id().to_string()
}

fn userrefs(dataset: &DatasetName, snapshot: &str) -> u32 {
    run_checked(
        "zfs",
        &[
            "get",
            "-H",
            "-o",
            "value",
            "userrefs",
            &format!("{dataset}@{snapshot}"),
        ],
    )
    .trim()
    .parse()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_snapshots_with_both_marks_are_pruned_and_the_base_stays_held() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let LocalRepository {
        dir: _dir,
        clock,
        repository,
    } = local_dir_repository("pruning passphrase").await;
    let source = ZfsSource::new();
    let dataset = pool.create_dataset("videos");
    let mountpoint = pool.mountpoint(&dataset);
    write_tree(&mountpoint, 41, Names::Ascii).unwrap();

    // The user's own snapshot, one another repository created, and one carrying this
    // repository's mark that no backup ever committed.
    let mine = SnapshotName::zfs("mine").unwrap();
    source.create_snapshot(&dataset, &mine, None).await.unwrap();
    source
        .create_snapshot(
            &dataset,
            &SnapshotName::zfs("other-repository").unwrap(),
            Some("0123456789abcdef0123456789abcdef"),
        )
        .await
        .unwrap();
    source
        .create_snapshot(
            &dataset,
            &SnapshotName::zfs("never-committed").unwrap(),
            Some(&created_marker(&repository)),
        )
        .await
        .unwrap();

    let options = |snapshot| BackupOptions {
        snapshot,
        ..backup_options()
    };
    let first = committed(
        repository
            .backup(
                &source,
                &dataset,
                &options(SnapshotChoice::Existing(mine.clone())),
                &NoProgress,
            )
            .await
            .unwrap(),
    );
    assert!(!first.manifest.snapshot_created_by_zib);
    assert_eq!(userrefs(&dataset, "mine"), 1, "the base is held");

    let mut created = Vec::new();
    for round in 0..2 {
        modify_tree(&mountpoint, 42 + round).unwrap();
        clock.advance(Duration::from_secs(3600));
        let backup = committed(
            repository
                .backup(
                    &source,
                    &dataset,
                    &options(SnapshotChoice::Create),
                    &NoProgress,
                )
                .await
                .unwrap(),
        );
        assert!(
            matches!(backup.manifest.kind, BackupKind::Incremental { .. }),
            "{}",
            backup.decision.reason
        );
        assert!(backup.pruned.warnings.is_empty(), "{:?}", backup.pruned);
        assert!(backup.pruned.released.is_some(), "{:?}", backup.pruned);
        created.push(backup);
    }

    // The user's snapshot lost zib's hold but exists; the first snapshot zib created was
    // destroyed by the third backup; the newest is held as the next base.
    let names = snapshot_names(&source, &dataset).await;
    let newest = &created[1].manifest.snapshot_name;
    assert_eq!(
        names,
        vec![
            "mine".to_owned(),
            "other-repository".to_owned(),
            "never-committed".to_owned(),
            newest.clone(),
        ]
    );
    assert_eq!(
        created[1].pruned.destroyed,
        vec![SnapshotName::zfs(&created[0].manifest.snapshot_name).unwrap()]
    );
    assert!(
        created[0].pruned.destroyed.is_empty(),
        "{:?}",
        created[0].pruned
    );
    assert_eq!(userrefs(&dataset, "mine"), 0);
    assert_eq!(userrefs(&dataset, newest), 1);

    // With pruning off, the superseded snapshot stays (only zib's hold moves on).
    modify_tree(&mountpoint, 50).unwrap();
    clock.advance(Duration::from_secs(3600));
    let kept = committed(
        repository
            .backup(
                &source,
                &dataset,
                &BackupOptions {
                    prune_created_snapshots: false,
                    ..options(SnapshotChoice::Create)
                },
                &NoProgress,
            )
            .await
            .unwrap(),
    );
    assert!(kept.pruned.destroyed.is_empty());
    let names = snapshot_names(&source, &dataset).await;
    assert!(names.contains(newest), "{names:?}");
    assert_eq!(userrefs(&dataset, newest), 0);
    assert_eq!(userrefs(&dataset, &kept.manifest.snapshot_name), 1);
}
