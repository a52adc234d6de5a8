//! Clean-up against a real S3 server (moto): it ages leftovers by the times S3 reports —
//! an incomplete upload's initiation, an orphan volume's last modification — so those
//! times must arrive intact through the S3 backend. A misread time (1970, say) makes
//! every leftover look old, and clean-up would abort uploads a running backup still
//! needs.
//!
//! moto reports one fixed initiation date for every upload
//! ([`reported_upload_initiation`], 2010); AWS reports the real one. The clean-up clock
//! is set relative to the dates the server is known to report, never to what the
//! backend read, so a backend that misreads them fails here. Clean-up runs as another
//! host would: without the failed run's journal, age alone decides.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::snapshot_source::{SnapshotName, SnapshotSource};
use zib_engine::storage::faults::{Fault, FaultInjecting, FaultRule, Trigger};
use zib_engine::storage::{Operation, StorageBackend};
use zib_engine::{
    BackupOptions, CleanupOptions, FakeClock, NoProgress, Passphrase, Repository, SnapshotChoice,
    VolumeShape,
};
use zib_test_utils::data::TestRng;
use zib_test_utils::moto::{reported_upload_initiation, MotoServer};
use zib_test_utils::zfs::ZfsPool;

use common::{backup_options, fast_init, host_at, location, s3_on_moto};

const MIB: usize = 1 << 20;
const DAY: Duration = Duration::from_secs(24 * 3600);
const PASSPHRASE: &str = "a long family passphrase";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_up_on_s3_ages_leftovers_by_the_times_s3_reports() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let (_, backend) = s3_on_moto(&moto).await;
    let dataset = pool.create_dataset("photos");
    let mut rng = TestRng::new(31);
    std::fs::write(pool.mountpoint(&dataset).join("a.raw"), rng.bytes(10 * MIB)).unwrap();
    std::fs::write(pool.mountpoint(&dataset).join("b.raw"), rng.bytes(4 * MIB)).unwrap();
    let snapshot = SnapshotName::zfs("summer").unwrap();
    let source = ZfsSource::new();
    source
        .create_snapshot(&dataset, &snapshot, None)
        .await
        .unwrap();
    let clock = FakeClock::new(SystemTime::now());
    let state = tempfile::tempdir().unwrap();
    Repository::init(
        &location(&backend, "zib"),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host_at(state.path(), &clock),
    )
    .await
    .unwrap();

    // A backup that dies at its fourth part, the first of volume 1 (12 MiB volumes of
    // 5 MiB parts): volume 0 is stored without a manifest, volume 1's upload is left.
    let started = SystemTime::now();
    let faults = FaultInjecting::new(
        backend.clone(),
        vec![FaultRule {
            operation: Some(Operation::UploadPart),
            trigger: Trigger::Nth(4),
            fault: Fault::PermissionDenied,
        }],
        5,
    );
    let faulty: Arc<dyn StorageBackend> = Arc::new(faults.clone());
    let faulty = Repository::open(
        &location(&faulty, "zib"),
        &Passphrase::new(PASSPHRASE.into()),
        host_at(state.path(), &clock),
    )
    .await
    .unwrap();
    faulty
        .backup(
            &source,
            &dataset,
            &BackupOptions {
                snapshot: SnapshotChoice::Existing(snapshot.clone()),
                shape: VolumeShape {
                    volume_plaintext_len: 12 * MIB as u64,
                    part_len: 5 * MIB as u64,
                    parts_in_flight: 1,
                },
                ..backup_options()
            },
            &NoProgress,
        )
        .await
        .expect_err("the refused part stops the backup");
    assert_eq!(faults.injected(), [1]);
    let written_by = SystemTime::now();

    // Another host cleans up: it has no journal of the failed run, so only the age of
    // the leftovers tells it whether a backup may still be writing them.
    let cleaner_state = tempfile::tempdir().unwrap();
    let cleaner_clock = FakeClock::new(reported_upload_initiation());
    let repository = Repository::open(
        &location(&backend, "zib"),
        &Passphrase::new(PASSPHRASE.into()),
        host_at(cleaner_state.path(), &cleaner_clock),
    )
    .await
    .unwrap();
    let catalog = repository.catalog().await.unwrap();
    let [upload] = &catalog.leftovers.incomplete_uploads[..] else {
        panic!("one incomplete upload: {:?}", catalog.leftovers)
    };
    let [volume] = &catalog.leftovers.orphan_volumes[..] else {
        panic!("one orphan volume: {:?}", catalog.leftovers)
    };
    let by_age = CleanupOptions::default();
    assert_eq!(by_age.min_age, 7 * DAY);

    // A day after the upload started (as moto dates it), both leftovers are young: a
    // backup may still be writing them. The volume was written after that clock's "now".
    cleaner_clock.set(reported_upload_initiation() + DAY);
    let report = repository.clean_up(&by_age).await.unwrap();
    assert!(
        report.aborted_uploads.is_empty() && report.deleted_volumes.is_empty(),
        "young leftovers removed (upload initiated {:?}, volume written {:?}): {report:?}",
        upload.initiated,
        volume.written
    );
    assert_eq!(report.kept_recent, 2, "{report:?}");
    assert_eq!(backend.list_multipart_uploads("").await.unwrap().len(), 1);

    // The dates clean-up decided by are the ones the server sent.
    assert_eq!(
        upload.initiated,
        reported_upload_initiation(),
        "moto reports this date for every upload; if it now reports the real one, age the \
         upload from `started` instead"
    );
    assert!(
        volume.written + Duration::from_secs(2) >= started
            && volume.written <= written_by + Duration::from_secs(2),
        "volume written {:?}, outside the backup's {started:?}..{written_by:?}",
        volume.written
    );

    // Eight days after the upload started, it is old and aborted; the volume, written
    // later than this clock's "now", stays.
    cleaner_clock.set(reported_upload_initiation() + 8 * DAY);
    let report = repository.clean_up(&by_age).await.unwrap();
    assert_eq!(
        report.aborted_uploads,
        std::slice::from_ref(&upload.key),
        "{report:?}"
    );
    assert!(report.deleted_volumes.is_empty(), "{report:?}");
    assert_eq!(report.kept_recent, 1, "{report:?}");
    assert!(backend.list_multipart_uploads("").await.unwrap().is_empty());
    backend.head(&volume.key).await.unwrap();

    // Eight days after the volume was written, it goes too.
    cleaner_clock.set(written_by + 8 * DAY);
    let report = repository.clean_up(&by_age).await.unwrap();
    assert_eq!(
        report.deleted_volumes,
        std::slice::from_ref(&volume.key),
        "{report:?}"
    );
    assert_eq!(report.kept_recent, 0, "{report:?}");
    let leftovers = repository.catalog().await.unwrap().leftovers;
    assert!(
        leftovers.incomplete_uploads.is_empty() && leftovers.orphan_volumes.is_empty(),
        "{leftovers:?}"
    );
}
