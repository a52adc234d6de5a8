//! Pruning after a commit, on a real zfs-fuse pool: the snapshots zib created are
//! destroyed once a newer backup committed, the newest stays held as the next base, and
//! snapshots without both of zib's marks — the user's own, another repository's, or
//! zib's but never committed — are never touched.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use zib_engine::backup::{back_up, created_marker, BackupOptions, SnapshotChoice};
use zib_engine::progress::NoProgress;
use zib_engine::records::{BackupKind, SourceKind};
use zib_snapshot_source::zfs::ZfsSource;
use zib_snapshot_source::{DatasetName, SnapshotName, SnapshotSource};
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
        ..backup_options(dataset.clone(), SourceKind::Zfs)
    };
    let first = committed(
        back_up(
            &repository,
            &source,
            &options(SnapshotChoice::Existing(mine.clone())),
            &clock,
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
            back_up(
                &repository,
                &source,
                &options(SnapshotChoice::Create),
                &clock,
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
        back_up(
            &repository,
            &source,
            &BackupOptions {
                prune_created_snapshots: false,
                ..options(SnapshotChoice::Create)
            },
            &clock,
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

/// A run killed after creating its snapshot but before its journal named it leaves a
/// record in the state directory; the next run removes that snapshot (zib's, never backed
/// up) and backs up a fresh one. A record naming a snapshot without zib's mark — or one a
/// committed backup holds — removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_left_by_a_run_killed_before_its_journal_is_removed() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let LocalRepository {
        dir: _dir,
        clock,
        repository,
    } = local_dir_repository("leak passphrase").await;
    let source = ZfsSource::new();
    let dataset = pool.create_dataset("leaky");
    write_tree(&pool.mountpoint(&dataset), 51, Names::Ascii).unwrap();
    let state = tempfile::tempdir().unwrap();
    let options = BackupOptions {
        state_dir: state.path().to_owned(),
        ..backup_options(dataset.clone(), SourceKind::Zfs)
    };
    let record =
        zib_engine::journal::pending_snapshot_path(state.path(), repository.id(), dataset.as_str());

    // What the killed run left: its snapshot, marked, and the record naming it.
    source
        .create_snapshot(
            &dataset,
            &SnapshotName::zfs("zib-20261129T010000Z").unwrap(),
            Some(&created_marker(&repository)),
        )
        .await
        .unwrap();
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    std::fs::write(&record, "zib-20261129T010000Z").unwrap();
    clock.advance(Duration::from_secs(3600));
    let first = committed(
        back_up(&repository, &source, &options, &clock, &NoProgress)
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
        let outcome = back_up(
            &repository,
            &source,
            &BackupOptions {
                snapshot: SnapshotChoice::Existing(
                    SnapshotName::zfs(&first.manifest.snapshot_name).unwrap(),
                ),
                ..options.clone()
            },
            &clock,
            &NoProgress,
        )
        .await
        .unwrap();
        assert!(matches!(
            outcome,
            zib_engine::backup::BackupOutcome::UpToDate { .. }
        ));
        let names = snapshot_names(&source, &dataset).await;
        assert!(names.contains(&"mine".to_owned()), "{names:?}");
        assert!(names.contains(&first.manifest.snapshot_name), "{names:?}");
        assert!(!record.exists());
    }
}
