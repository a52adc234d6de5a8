//! Verify and the restore drill with real components: a zfs-fuse pool and a moto S3
//! server holding Deep Archive objects (reads refused until RestoreObject). The
//! requests are counted at a `Counting` wrapper between the engine and the S3 client.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::snapshot_source::DatasetName;
use zib_engine::storage::counting::Counting;
use zib_engine::storage::{ObjectKey, Operation, StorageBackend};
use zib_engine::{
    DrillRequest, DrillState, FakeClock, NoProgress, Passphrase, ProblemKind, Repository, Severity,
    VerifyOptions,
};
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names};
use zib_test_utils::moto::MotoServer;
use zib_test_utils::zfs::{run_bounded, ZfsPool};

use common::{backup_options, committed, fast_init, host_at, location, s3_on_moto, Inspecting};

const PASSPHRASE: &str = "a long family passphrase";

/// A Deep Archive repository on moto (behind a request counter) holding a full and an
/// incremental of a small zfs-fuse dataset.
struct Setup {
    pool: ZfsPool,
    _moto: MotoServer,
    backend: Arc<dyn StorageBackend>,
    counting: Counting<Arc<dyn StorageBackend>>,
    _state: tempfile::TempDir,
    repository: Repository,
    source: Inspecting<ZfsSource>,
    /// The two backups, oldest first.
    backups: [zib_engine::CommittedBackup; 2],
    /// Every file of the dataset at the full backup.
    files_at_full: std::collections::BTreeMap<String, String>,
}

async fn setup() -> Option<Setup> {
    let pool = ZfsPool::create()?;
    let moto = MotoServer::start().await?;
    let (_, backend) = s3_on_moto(&moto).await;
    let counting = Counting::new(backend.clone());
    let counted: Arc<dyn StorageBackend> = Arc::new(counting.clone());
    let clock = FakeClock::new(SystemTime::now());
    let state = tempfile::tempdir().unwrap();
    let (repository, _) = Repository::init(
        &location(&counted, "zib"),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host_at(state.path(), &clock),
    )
    .await
    .unwrap();
    let source = Inspecting::new(ZfsSource::new(), |_: &ZfsSource, target| {
        zfs_mountpoint(target)
    });
    let dataset = pool.create_dataset("family photos");
    let mountpoint = pool.mountpoint(&dataset);
    write_tree(&mountpoint, 3, Names::Ascii).unwrap();
    let full = committed(
        repository
            .backup(&source, &dataset, &backup_options(), &NoProgress)
            .await
            .unwrap(),
    );
    let files_at_full = hash_tree(&mountpoint).unwrap();
    modify_tree(&mountpoint, 4).unwrap();
    clock.advance(Duration::from_secs(3600));
    let incremental = committed(
        repository
            .backup(&source, &dataset, &backup_options(), &NoProgress)
            .await
            .unwrap(),
    );
    Some(Setup {
        pool,
        _moto: moto,
        backend,
        counting,
        _state: state,
        repository,
        source,
        backups: [full, incremental],
        files_at_full,
    })
}

/// Where `dataset` is mounted, if it exists.
fn zfs_mountpoint(dataset: &DatasetName) -> Option<PathBuf> {
    let output = run_bounded(
        "zfs",
        &["get", "-H", "-o", "value", "mountpoint", dataset.as_str()],
    );
    output
        .status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim_end()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_on_deep_archive_reads_no_volume_and_finds_a_deleted_one() {
    let Some(setup) = setup().await else {
        return;
    };
    let [full, incremental] = &setup.backups;
    let gets = setup.counting.count(Operation::Get);
    let report = setup
        .repository
        .verify(&VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.problems);
    assert_eq!(report.restore_points.len(), 2);
    let volumes = u64::from(full.manifest.volume_count + incremental.manifest.volume_count);
    assert_eq!(report.volumes, volumes);
    // The one GET is the Standard-class keyring; every volume and manifest is Deep
    // Archive, and no GET of one was even tried.
    assert_eq!(setup.counting.count(Operation::Get) - gets, 1);
    assert_eq!(report.cost.get_requests, 1);
    assert_eq!(report.cost.bytes_downloaded, 160);
    assert_eq!(
        report.cost.head_requests,
        2 + 1 + 1,
        "manifests, archived keyring, keyring"
    );

    // A volume of the full, deleted behind zib's back.
    let key = ObjectKey::new(format!(
        "zib/volumes/{}/{}/00000001",
        full.manifest.dataset_id, full.manifest.backup_id
    ))
    .unwrap();
    setup.backend.delete(&key).await.unwrap();
    let report = setup
        .repository
        .verify(&VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    let missing: Vec<_> = report
        .problems
        .iter()
        .filter(|problem| matches!(problem.kind, ProblemKind::VolumeMissing { index: 1, .. }))
        .collect();
    assert_eq!(missing.len(), 1, "{:#?}", report.problems);
    assert_eq!(missing[0].severity, Severity::Damage);
    assert_eq!(missing[0].key.as_ref(), Some(&key));
    let breaks: Vec<_> = missing[0].breaks.iter().map(|point| point.backup).collect();
    assert_eq!(
        breaks,
        [full.manifest.backup_id, incremental.manifest.backup_id]
    );
    assert!(report.restore_points.is_empty());
    assert_eq!(
        setup.counting.count(Operation::Get) - gets,
        2,
        "the keyring, twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_the_smallest_chain_from_deep_archive_into_a_throwaway_dataset() {
    let Some(setup) = setup().await else {
        return;
    };
    let [full, _] = &setup.backups;
    let report = setup
        .repository
        .verify(&VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    let staging = tempfile::tempdir().unwrap();
    let target = setup.pool.dataset("drill");
    let request = DrillRequest::new(target.clone(), staging.path());
    let first = setup
        .repository
        .drill(&report, &request, &setup.source, &NoProgress)
        .await
        .unwrap();
    let started = first.started.expect("the drill starts");
    assert_eq!(
        started.restore_point.backup, full.manifest.backup_id,
        "the full alone is smallest"
    );
    assert!(
        matches!(first.state, DrillState::Running(_)),
        "the first run requests the restores: {:?}",
        first.state
    );
    assert!(setup.counting.count(Operation::RequestRestore) > 0);
    // moto thaws at once: the next run downloads, receives, compares and throws away.
    let second = setup
        .repository
        .drill(&report, &request, &setup.source, &NoProgress)
        .await
        .unwrap();
    assert!(
        matches!(second.state, DrillState::Passed(_)),
        "{:?}",
        second.state
    );
    assert_eq!(
        setup.source.discarded(&target).as_ref(),
        Some(&setup.files_at_full),
        "every file as it was at the full backup"
    );
    assert!(
        !setup.pool.exists(&target),
        "the drill's dataset is destroyed"
    );
    assert!(std::fs::read_dir(staging.path()).unwrap().next().is_none());
    assert!(setup.repository.restore_jobs().await.unwrap().is_empty());
}
