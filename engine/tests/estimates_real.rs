//! The source's send size estimates reach the planner: on a real zfs-fuse pool (which
//! cannot estimate by itself) a source that reports an incremental no smaller than a
//! full makes the backup a full, as the planner's cost model says it should.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::snapshot_source::{
    Capabilities, DatasetName, ForwardingSource, SendRequest, SnapshotSource,
};
use zib_engine::{BackupKind, NoProgress};
use zib_test_utils::data::{modify_tree, write_tree, Names};
use zib_test_utils::zfs::ZfsPool;

use common::{backup_options, committed, local_dir_repository, LocalRepository};

/// Real ZFS, with fixed size estimates: a full is 1 MB, an incremental 2 MB. Records
/// every estimate asked for.
struct Estimating {
    zfs: ZfsSource,
    asked: Mutex<Vec<SendRequest>>,
}

#[async_trait]
impl ForwardingSource for Estimating {
    fn inner(&self) -> &dyn SnapshotSource {
        &self.zfs
    }

    async fn capabilities(
        &self,
        dataset: &DatasetName,
    ) -> zib_engine::snapshot_source::Result<Capabilities> {
        // This source estimates (zfs-fuse alone cannot): it says so.
        let mut capabilities = self.zfs.capabilities(dataset).await?;
        capabilities.size_estimates = true;
        Ok(capabilities)
    }

    async fn estimate_send_size(
        &self,
        request: &SendRequest,
    ) -> zib_engine::snapshot_source::Result<Option<u64>> {
        self.asked.lock().unwrap().push(request.clone());
        Ok(Some(if request.base.is_some() {
            2_000_000
        } else {
            1_000_000
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_estimated_larger_than_a_full_is_sent_as_a_full() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let LocalRepository {
        dir: _dir,
        clock,
        repository,
    } = local_dir_repository("estimates passphrase").await;
    let source = Estimating {
        zfs: ZfsSource::new(),
        asked: Mutex::new(Vec::new()),
    };
    let dataset = pool.create_dataset("scans");
    let mountpoint = pool.mountpoint(&dataset);
    write_tree(&mountpoint, 61, Names::Ascii).unwrap();
    let options = backup_options();

    let first = committed(
        repository
            .backup(&source, &dataset, &options, &NoProgress)
            .await
            .unwrap(),
    );
    assert_eq!(first.manifest.kind, BackupKind::Full);
    assert_eq!(first.decision.estimated_bytes, Some(1_000_000));

    modify_tree(&mountpoint, 62).unwrap();
    clock.advance(Duration::from_secs(3600));
    let second = committed(
        repository
            .backup(&source, &dataset, &options, &NoProgress)
            .await
            .unwrap(),
    );
    assert_eq!(
        second.manifest.kind,
        BackupKind::Full,
        "{}",
        second.decision.reason
    );
    assert!(
        second.decision.reason.contains("no smaller than a full"),
        "{}",
        second.decision.reason
    );
    // The incremental was estimated from the first backup's snapshot.
    let asked = source.asked.lock().unwrap();
    assert!(
        asked.iter().any(|request| request.base.is_some()
            && request.snapshot.as_str() == second.manifest.snapshot_name),
        "{asked:?}"
    );
}
