//! The snapshot-source conformance suite against real BTRFS on a loop device.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use zib_snapshot_source::btrfs::BtrfsSource;
use zib_snapshot_source::{
    DatasetName, SendFlags, SendStream, SnapshotInfo, SnapshotName, SnapshotSource,
};
use zib_test_utils::btrfs::BtrfsFs;
use zib_test_utils::data::Names;
use zib_test_utils::snapshot_conformance::{self as suite, ConformanceParams, SourceFixture};

struct BtrfsFixture {
    fs: BtrfsFs,
    snapshot_dir: PathBuf,
    source: BtrfsSource,
    params: ConformanceParams,
    counter: AtomicU32,
}

fn btrfs_snapshot_name(word: &str) -> SnapshotName {
    SnapshotName::btrfs(&format!("zib ü {word}")).expect("valid name")
}

impl BtrfsFixture {
    fn new() -> Option<Self> {
        let fs = BtrfsFs::create()?;
        let snapshot_dir = fs.mount_point().join("snapshots ü");
        std::fs::create_dir(&snapshot_dir).expect("snapshot directory");
        Some(BtrfsFixture {
            source: BtrfsSource::new(&snapshot_dir),
            snapshot_dir,
            fs,
            params: ConformanceParams {
                file_names: Names::Unicode,
                dataset_label: "fotos ü 日本",
                snapshot_name: btrfs_snapshot_name,
                size_estimates: false,
                bookmarks: false,
                holds: false,
                user_properties: false,
                send_flags: SendFlags::NONE,
                zfs_names: false,
            },
            counter: AtomicU32::new(0),
        })
    }

    fn unique(&self, label: &str) -> String {
        format!("{label} {}", self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

impl SourceFixture for BtrfsFixture {
    fn source(&self) -> &dyn SnapshotSource {
        &self.source
    }

    fn params(&self) -> &ConformanceParams {
        &self.params
    }

    fn new_dataset(&self, label: &str) -> (DatasetName, PathBuf) {
        let path = self.fs.create_subvolume(&self.unique(label));
        (DatasetName::path(&path).expect("valid path"), path)
    }

    fn new_target(&self, label: &str) -> DatasetName {
        DatasetName::path(self.fs.mount_point().join(self.unique(label))).expect("valid path")
    }

    fn received_contents(&self, target: &DatasetName, snapshot: &SnapshotInfo) -> PathBuf {
        target.as_path().join(snapshot.name.as_str())
    }

    fn rename_target(&self, target: &DatasetName, label: &str) -> DatasetName {
        let renamed = self.new_target(label);
        std::fs::rename(target.as_path(), renamed.as_path()).expect("rename the receive directory");
        renamed
    }

    fn contents_of_target(&self, target: &DatasetName) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(target.as_path()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    fn nonexistent_dataset(&self) -> DatasetName {
        DatasetName::path(self.fs.mount_point().join("does not exist")).expect("valid path")
    }

    fn source_with_missing_tool(&self) -> Box<dyn SnapshotSource> {
        Box::new(BtrfsSource::with_binary(
            "/nonexistent/zib-test/btrfs",
            &self.snapshot_dir,
        ))
    }

    fn kill_send(&self, stream: &SendStream) {
        suite::kill_send_process(stream);
    }
}

zib_test_utils::snapshot_conformance_tests!(BtrfsFixture::new());
