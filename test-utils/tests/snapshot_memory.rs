//! The snapshot-source conformance suite against [`MemorySource`], the in-memory
//! ZFS-like source the engine's root-less tests use: twice, once protecting bases with
//! holds (as zfs-fuse) and once with bookmarks (as OpenZFS), so a fake that drifted from
//! the contract fails here, not in the tests built on it.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use zib_snapshot_source::{
    DatasetName, SendFlags, SendStream, SnapshotInfo, SnapshotName, SnapshotSource,
};
use zib_test_utils::data::Names;
use zib_test_utils::memory_source::MemorySource;
use zib_test_utils::snapshot_conformance::{ConformanceParams, SourceFixture};

struct MemoryFixture {
    source: MemorySource,
    params: ConformanceParams,
    counter: AtomicU32,
}

fn snapshot_name(word: &str) -> SnapshotName {
    SnapshotName::zfs(&format!("zib {word}")).expect("valid name")
}

impl MemoryFixture {
    fn new(bookmarks: bool) -> Option<Self> {
        let source = if bookmarks {
            MemorySource::new().with_bookmarks()
        } else {
            MemorySource::new()
        };
        Some(Self {
            source,
            params: ConformanceParams {
                file_names: Names::Unicode,
                dataset_label: "family photos",
                snapshot_name,
                size_estimates: true,
                bookmarks,
                holds: true,
                user_properties: true,
                send_flags: SendFlags::NONE,
                zfs_names: true,
            },
            counter: AtomicU32::new(0),
        })
    }

    fn name(&self, label: &str) -> DatasetName {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        DatasetName::zfs(&format!("memory/{label} {n}")).expect("valid dataset name")
    }
}

impl SourceFixture for MemoryFixture {
    fn source(&self) -> &dyn SnapshotSource {
        &self.source
    }

    fn params(&self) -> &ConformanceParams {
        &self.params
    }

    fn new_dataset(&self, label: &str) -> (DatasetName, PathBuf) {
        let dataset = self.name(label);
        let dir = self.source.create_dataset(&dataset);
        (dataset, dir)
    }

    fn new_target(&self, label: &str) -> DatasetName {
        self.name(label)
    }

    fn received_contents(&self, target: &DatasetName, _snapshot: &SnapshotInfo) -> PathBuf {
        self.source.mountpoint(target).expect("the target exists")
    }

    fn rename_target(&self, target: &DatasetName, label: &str) -> DatasetName {
        let renamed = self.name(label);
        self.source.rename_dataset(target, &renamed);
        renamed
    }

    fn contents_of_target(&self, target: &DatasetName) -> Vec<String> {
        self.source.everything_under(target.as_str())
    }

    fn nonexistent_dataset(&self) -> DatasetName {
        DatasetName::zfs("memory/does not exist").expect("valid")
    }

    fn source_with_missing_tool(&self) -> Box<dyn SnapshotSource> {
        Box::new(self.source.without_tool())
    }

    fn kill_send(&self, _stream: &SendStream) {
        self.source.kill_sends();
    }
}

mod with_holds {
    use super::MemoryFixture;
    zib_test_utils::snapshot_conformance_tests!(MemoryFixture::new(false));
}

mod with_bookmarks {
    use super::MemoryFixture;
    zib_test_utils::snapshot_conformance_tests!(MemoryFixture::new(true));
}

/// Every check in turn on one source, as a source's author would run the suite.
#[tokio::test]
async fn run_all_on_one_source() {
    let fixture = MemoryFixture::new(true).unwrap();
    zib_test_utils::snapshot_conformance::run_all(&fixture).await;
}
