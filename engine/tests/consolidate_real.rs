//! Consolidation with real components: a zfs-fuse pool and a moto S3 server whose
//! DEEP_ARCHIVE objects refuse reads until a restore is requested. The engine's clock is
//! the test's, set so that the simulated history (more than 200 days) ends at about the
//! real time: moto dates a restored copy's expiry from the real time of the request, so
//! copies restored on the simulated days are still valid when the engine reads them.
//!
//! zfs-fuse cannot estimate send sizes, so manifests carry no data sizes for
//! incrementals and the share of an old restore point's data gone from the newest
//! snapshot cannot be measured: every deletion of a restore point on zfs-fuse waits for
//! a confirmation (an unknown share counts as too much). The measured case, and a stop
//! before every single delete, are in `consolidate_memory.rs`.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zib_engine::planner::{ConsolidationMode, Policy};
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::storage::faults::{Fault, FaultInjecting, FaultRule, Trigger};
use zib_engine::storage::s3::S3Backend;
use zib_engine::storage::{BucketProtection, Operation, StorageBackend};
use zib_engine::{
    BackupId, BackupKind, BackupOptions, ConsolidateOptions, DatasetName, DeletionOptions,
    FakeClock, Location, NewRestore, NoProgress, Passphrase, Repository, RestoreState, WaitingFor,
};
use zib_test_utils::data::{hash_tree, TestRng};
use zib_test_utils::moto::MotoServer;
use zib_test_utils::zfs::ZfsPool;

use common::{committed, fast_init, host_at, s3_config_at};

const KIB: usize = 1 << 10;
const DAY: u64 = 24 * 3600;
const PASSPHRASE: &str = "a long family passphrase";
/// How many simulated days the history spans: the clock starts this long before now.
const HISTORY_DAYS: u64 = 290;

type Tree = BTreeMap<String, String>;

struct Setup {
    pool: ZfsPool,
    _moto: MotoServer,
    endpoint: String,
    bucket: String,
    clock: FakeClock,
    start: SystemTime,
    state: tempfile::TempDir,
    repository: Repository,
    dataset: DatasetName,
    rng: TestRng,
    /// What each committed backup's snapshot held.
    expected: BTreeMap<BackupId, Tree>,
    restores: u32,
}

async fn setup(files: usize) -> Option<Setup> {
    let pool = ZfsPool::create()?;
    let moto = MotoServer::start().await?;
    let bucket = moto.create_bucket().await;
    let endpoint = moto.endpoint();
    let start = SystemTime::now() - Duration::from_secs(HISTORY_DAYS * DAY);
    let clock = FakeClock::new(start);
    let state = tempfile::tempdir().unwrap();
    let s3: Arc<dyn StorageBackend> = Arc::new(
        S3Backend::connect(&s3_config_at(&endpoint, &bucket))
            .await
            .unwrap(),
    );
    let (repository, _) = Repository::init(
        &Location::new(s3, "zib").unwrap(),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host_at(state.path(), &clock),
    )
    .await
    .unwrap();
    let dataset = pool.create_dataset("photos");
    let mut setup = Setup {
        pool,
        _moto: moto,
        endpoint,
        bucket,
        clock,
        start,
        state,
        repository,
        dataset,
        rng: TestRng::new(files as u64),
        expected: BTreeMap::new(),
        restores: 0,
    };
    for _ in 0..files {
        setup.add_photo();
    }
    Some(setup)
}

/// Small volumes; the planner's consolidation off (each test says when it wants one).
fn options() -> BackupOptions {
    let mut options = common::backup_options();
    options.policy.consolidation = ConsolidationMode::Never;
    options
}

fn auto_policy() -> Policy {
    Policy {
        consolidation: ConsolidationMode::Auto,
        ..options().policy
    }
}

fn deletion_options(confirm: bool) -> DeletionOptions {
    DeletionOptions {
        policy: auto_policy(),
        confirm,
        ..DeletionOptions::default()
    }
}

fn forced() -> ConsolidateOptions {
    ConsolidateOptions {
        backup: options(),
        force: true,
        confirm: false,
    }
}

impl Setup {
    /// Moves the clock to `day` days after the start of the history.
    fn day(&self, day: u64) {
        use zib_engine::Clock;
        let target = self.start + Duration::from_secs(day * DAY);
        let now = self.clock.now();
        assert!(target >= now, "day {day} is in the past");
        self.clock.advance(target.duration_since(now).unwrap());
    }

    fn mountpoint(&self) -> std::path::PathBuf {
        self.pool.mountpoint(&self.dataset)
    }

    fn add_photo(&mut self) {
        let name = format!("IMG_{:06}.jpg", self.rng.next_u64() % 1_000_000);
        std::fs::write(self.mountpoint().join(name), self.rng.bytes(96 * KIB)).unwrap();
    }

    fn tree(&self) -> Tree {
        hash_tree(&self.mountpoint()).unwrap()
    }

    async fn backup(&mut self, options: &BackupOptions) -> zib_engine::CommittedBackup {
        let backup = committed(
            self.repository
                .backup(&ZfsSource::new(), &self.dataset, options, &NoProgress)
                .await
                .unwrap(),
        );
        self.expected.insert(backup.manifest.backup_id, self.tree());
        backup
    }

    async fn consolidate(
        &mut self,
        options: &ConsolidateOptions,
    ) -> zib_engine::ConsolidationReport {
        let report = self
            .repository
            .consolidate(&ZfsSource::new(), &self.dataset, options, &NoProgress)
            .await
            .unwrap();
        let backup = committed(report.backup.clone());
        self.expected.insert(backup.manifest.backup_id, self.tree());
        report
    }

    async fn held(&self) -> Vec<BackupId> {
        let catalog = self.repository.catalog().await.unwrap();
        let id = catalog.dataset_named(self.dataset.as_str()).unwrap();
        catalog
            .backups(id)
            .iter()
            .map(|backup| backup.manifest.backup_id)
            .collect()
    }

    /// Restores `point` from DEEP_ARCHIVE objects with the restore job (restores
    /// requested, then read once moto has thawed them) into a new dataset, and checks it
    /// holds exactly what that backup's snapshot held.
    async fn restores(&mut self, point: BackupId) {
        self.restores += 1;
        let target = self.pool.dataset(&format!("restored{}", self.restores));
        let staging = tempfile::tempdir().unwrap();
        let request = NewRestore {
            restore_point: Some(point),
            ..NewRestore::new(self.dataset.as_str(), target.clone(), staging.path())
        };
        let (job, _) = self
            .repository
            .create_restore(&request, &ZfsSource::new())
            .await
            .unwrap();
        for _ in 0..5 {
            let status = self
                .repository
                .advance_restore(job.id, &ZfsSource::new(), &NoProgress)
                .await
                .unwrap();
            if status.state == RestoreState::Done {
                // zfs-fuse shows what a receive wrote underneath a mount only after a
                // remount.
                self.pool.remount(&target);
                assert_eq!(
                    hash_tree(&self.pool.mountpoint(&target)).unwrap(),
                    self.expected[&point],
                    "restore point {point}"
                );
                return;
            }
            self.clock.advance(Duration::from_secs(3600));
        }
        panic!("the restore of {point} did not finish");
    }

    /// The same repository, through `wrap` around a new S3 client of the same bucket.
    async fn through(
        &self,
        wrap: impl FnOnce(Arc<dyn StorageBackend>) -> Arc<dyn StorageBackend>,
    ) -> Repository {
        let s3: Arc<dyn StorageBackend> = Arc::new(
            S3Backend::connect(&s3_config_at(&self.endpoint, &self.bucket))
                .await
                .unwrap(),
        );
        Repository::open(
            &Location::new(wrap(s3), "zib").unwrap(),
            &Passphrase::new(PASSPHRASE.into()),
            host_at(self.state.path(), &self.clock),
        )
        .await
        .unwrap()
    }
}

/// A full on day 0 and incrementals every `every` days before `until`, each adding a
/// photo.
async fn history(setup: &mut Setup, every: u64, until: u64) -> Vec<BackupId> {
    let mut day = 0;
    let mut ids = Vec::new();
    while day < until {
        setup.day(day);
        if day > 0 {
            setup.add_photo();
        }
        ids.push(setup.backup(&options()).await.manifest.backup_id);
        day += every;
    }
    ids
}

/// Consolidation after 200 simulated days; a process stopped between the commit of the
/// next backup and its deletions (the future dropped while the first delete hangs);
/// then the deletion confirmed, and restores of the consolidated chain, of the fresh
/// full (a kept older restore point) and — before the deletion — of a superseded one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidation_after_200_days_on_zfs_fuse_and_moto() {
    let Some(mut setup) = setup(6).await else {
        return;
    };
    let old = history(&mut setup, 10, 50).await;
    assert_eq!(old.len(), 5);

    // Day 200: the fresh full, through the normal backup pipeline; nothing deleted.
    setup.day(200);
    setup.add_photo();
    let report = setup.consolidate(&forced()).await;
    let full = committed(report.backup.clone());
    assert_eq!(full.manifest.kind, BackupKind::Full);
    assert!(full.decision.consolidation.is_some());
    assert!(
        report.deletions.deleted.is_empty(),
        "{:?}",
        report.deletions
    );
    assert_eq!(report.deletions.pending.len(), old.len());
    assert!(report.deletions.pending.iter().all(|p| matches!(
        p.waiting_for,
        WaitingFor::GracePeriod { .. } | WaitingFor::MinimumAge { .. }
    )));

    // During the grace period a superseded restore point restores from Deep Archive.
    setup.day(205);
    setup.restores(old[2]).await;

    // Day 231: a backup commits, and its process stops before its first delete is
    // answered (a confirmed consolidation, so that it would delete: zfs-fuse leaves the
    // vanished share unknown).
    setup.day(231);
    setup.add_photo();
    let hanging = setup
        .through(|s3| {
            Arc::new(FaultInjecting::new(
                s3,
                vec![FaultRule {
                    operation: Some(Operation::Delete),
                    trigger: Trigger::From(1),
                    fault: Fault::Hang,
                }],
                1,
            ))
        })
        .await;
    let dataset = setup.dataset.clone();
    let options = ConsolidateOptions {
        backup: options(),
        force: false,
        confirm: true,
    };
    // The run is stopped (its future dropped, as a killed process stops) once its
    // backup has committed: the catalog shows it, and the run is past its commit.
    let committed_in_bucket = async {
        while setup.held().await.len() < old.len() + 2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let zfs = ZfsSource::new();
    tokio::select! {
        outcome = hanging.consolidate(&zfs, &dataset, &options, &NoProgress) => {
            panic!("the run was to hang at its first delete: {outcome:?}")
        }
        () = committed_in_bucket => {}
    }
    drop(hanging);
    let held = setup.held().await;
    assert_eq!(
        held.len(),
        old.len() + 2,
        "committed, nothing deleted: {held:?}"
    );
    let later = *held.last().unwrap();
    setup.expected.insert(later, setup.tree());
    // Every restore point is still whole: the newest restores.
    setup.restores(later).await;

    // An automatic run (no confirmation) deletes nothing here, and says why.
    setup.day(232);
    let automatic = setup
        .repository
        .delete_superseded(dataset.as_str(), &deletion_options(false))
        .await
        .unwrap();
    assert!(automatic.deleted.is_empty(), "{automatic:?}");
    assert_eq!(automatic.pending.len(), old.len());
    for pending in &automatic.pending {
        assert!(
            matches!(
                pending.waiting_for,
                WaitingFor::Confirmation {
                    vanished_fraction: None,
                    ..
                }
            ),
            "{pending:?}"
        );
        assert!(pending.waiting_for.to_string().contains("--confirm"));
    }

    // Confirmed: the old chain goes, newest first; nothing young, no fee.
    let confirmed = setup
        .repository
        .delete_superseded(dataset.as_str(), &deletion_options(true))
        .await
        .unwrap();
    assert!(confirmed.stopped.is_none(), "{confirmed:?}");
    assert_eq!(
        confirmed
            .deleted
            .iter()
            .map(|d| d.backup)
            .collect::<Vec<_>>(),
        old.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(confirmed.bucket, Some(BucketProtection::default()));
    assert!(confirmed.saved_per_month > 0.0);
    assert_eq!(confirmed.early_deletion_fees, 0.0);
    let now = setup.start + Duration::from_secs(232 * DAY);
    for deleted in &confirmed.deleted {
        let committed = SystemTime::UNIX_EPOCH + Duration::from_secs(deleted.committed_at as u64);
        assert!(now.duration_since(committed).unwrap() >= Duration::from_secs(180 * DAY));
    }
    assert_eq!(setup.held().await, vec![full.manifest.backup_id, later]);
    let catalog = setup.repository.catalog().await.unwrap();
    assert!(catalog.leftovers.orphan_volumes.is_empty());
    println!(
        "deleted {} backups ({} bytes), saving ${:.9}/month, early-deletion fees ${:.2}",
        confirmed.deleted.len(),
        confirmed
            .deleted
            .iter()
            .map(|d| d.stored_bytes)
            .sum::<u64>(),
        confirmed.saved_per_month,
        confirmed.early_deletion_fees
    );

    // The consolidated chain and its full, a kept older restore point, restore.
    setup.restores(later).await;
    setup.restores(full.manifest.backup_id).await;
}

/// Half the files gone before a consolidation: the old restore points, the last good
/// copy of those files, are not deleted by any automatic run; they restore; only a
/// confirmation deletes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_deletion_on_zfs_fuse_is_not_consolidated_away_alone() {
    let Some(mut setup) = setup(8).await else {
        return;
    };
    let old = history(&mut setup, 100, 200).await;
    setup.day(200);
    let mut photos: Vec<_> = std::fs::read_dir(setup.mountpoint())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    photos.sort();
    let before = photos.len();
    for photo in &photos[..before / 2] {
        std::fs::remove_file(photo).unwrap();
    }
    let report = setup.consolidate(&forced()).await;
    let full = committed(report.backup);
    assert_eq!(full.manifest.kind, BackupKind::Full);

    // Past the grace period and the minimum age, a later backup under `auto`.
    setup.day(281);
    let mut auto = options();
    auto.policy = auto_policy();
    let later = setup.backup(&auto).await;
    let deletions = later.deletions.expect("auto deletes what is due");
    assert!(deletions.deleted.is_empty(), "{deletions:?}");
    assert_eq!(deletions.pending.len(), old.len());
    assert!(deletions
        .pending
        .iter()
        .all(|p| p.needs_confirmation && matches!(p.waiting_for, WaitingFor::Confirmation { .. })));
    // An admin run without confirmation: the same.
    let again = setup
        .repository
        .delete_superseded(setup.dataset.as_str(), &deletion_options(false))
        .await
        .unwrap();
    assert!(again.deleted.is_empty(), "{again:?}");
    // The last good copy of the vanished files restores.
    setup.restores(old[1]).await;
    assert_eq!(
        setup.expected[&old[1]].len(),
        before,
        "the old restore point has every file"
    );

    let confirmed = setup
        .repository
        .delete_superseded(setup.dataset.as_str(), &deletion_options(true))
        .await
        .unwrap();
    assert_eq!(confirmed.deleted.len(), old.len(), "{confirmed:?}");
}
