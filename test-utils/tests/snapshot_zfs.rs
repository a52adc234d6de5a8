//! The snapshot-source conformance suite against real ZFS (zfs-fuse here; OpenZFS in the
//! opt-in VM tier, selected with `ZIB_ZFS_DIALECT=openzfs`).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use zib_snapshot_source::zfs::ZfsSource;
use zib_snapshot_source::{
    DatasetName, SendFlags, SendStream, SnapshotInfo, SnapshotName, SnapshotSource,
};
use zib_test_utils::data::Names;
use zib_test_utils::snapshot_conformance::{self as suite, ConformanceParams, SourceFixture};
use zib_test_utils::zfs::{run_checked, ZfsPool};

struct ZfsFixture {
    pool: ZfsPool,
    source: ZfsSource,
    params: ConformanceParams,
    counter: AtomicU32,
}

fn zfs_snapshot_name(word: &str) -> SnapshotName {
    SnapshotName::zfs(&format!("zib {word}")).expect("valid name")
}

/// What the ZFS under test can do: zfs-fuse by default; OpenZFS 2.x when the tier asks.
fn params() -> ConformanceParams {
    let openzfs = std::env::var("ZIB_ZFS_DIALECT").is_ok_and(|dialect| dialect == "openzfs");
    ConformanceParams {
        file_names: Names::Unicode,
        dataset_label: "family photos",
        snapshot_name: zfs_snapshot_name,
        size_estimates: openzfs,
        bookmarks: openzfs,
        holds: true,
        user_properties: true,
        send_flags: if openzfs {
            SendFlags::ALL
        } else {
            SendFlags::NONE
        },
        zfs_names: true,
    }
}

impl ZfsFixture {
    fn new() -> Option<Self> {
        let pool = ZfsPool::create()?;
        Some(ZfsFixture {
            pool,
            source: ZfsSource::new(),
            params: params(),
            counter: AtomicU32::new(0),
        })
    }

    fn unique(&self, label: &str) -> String {
        format!("{label} {}", self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

impl SourceFixture for ZfsFixture {
    fn source(&self) -> &dyn SnapshotSource {
        &self.source
    }

    fn params(&self) -> &ConformanceParams {
        &self.params
    }

    fn new_dataset(&self, label: &str) -> (DatasetName, PathBuf) {
        let dataset = self.pool.create_dataset(&self.unique(label));
        let mountpoint = self.pool.mountpoint(&dataset);
        (dataset, mountpoint)
    }

    fn new_target(&self, label: &str) -> DatasetName {
        self.pool.dataset(&self.unique(label))
    }

    fn received_contents(&self, target: &DatasetName, _snapshot: &SnapshotInfo) -> PathBuf {
        // Reading files with atime=on changes the dataset, and ZFS then refuses the next
        // incremental ("modified since most recent snapshot") unless it rolls back.
        run_checked("zfs", &["set", "atime=off", target.as_str()]);
        // zfs-fuse: the kernel's FUSE cache may still hold pages from before the receive.
        self.pool.remount(target);
        self.pool.mountpoint(target)
    }

    fn rename_target(&self, target: &DatasetName, label: &str) -> DatasetName {
        let renamed = self.pool.dataset(&self.unique(label));
        self.pool.rename(target, &renamed);
        renamed
    }

    fn contents_of_target(&self, target: &DatasetName) -> Vec<String> {
        let own = |name: &String| {
            name == target.as_str()
                || [
                    format!("{target}@"),
                    format!("{target}/"),
                    format!("{target}%"),
                ]
                .iter()
                .any(|prefix| name.starts_with(prefix))
        };
        self.pool.everything().into_iter().filter(own).collect()
    }

    fn nonexistent_dataset(&self) -> DatasetName {
        self.pool.dataset("does not exist")
    }

    fn source_with_missing_tool(&self) -> Box<dyn SnapshotSource> {
        Box::new(ZfsSource::with_binaries(
            "/nonexistent/zib-test/zfs",
            "/nonexistent/zib-test/zpool",
        ))
    }

    fn kill_send(&self, stream: &SendStream) {
        suite::kill_send_process(stream);
    }
}

zib_test_utils::snapshot_conformance_tests!(ZfsFixture::new());
