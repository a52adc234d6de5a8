//! Consolidation carried out, on the in-memory backend (Deep Archive semantics: reads
//! refused until a restore thawed them on the fake clock) and the in-memory snapshot
//! source: months of backups in milliseconds, a fresh full, the deletion of the chain it
//! supersedes within the safety rules (minimum age, grace period, a later backup,
//! vanished data, delete permission), stops at every step, and the restore job bringing
//! back both the consolidated chain and older restore points byte for byte.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zib_engine::crypto::KdfParams;
use zib_engine::planner::{ConsolidationMode, PlannedBackup, Policy};
use zib_engine::storage::faults::{Fault, FaultInjecting, FaultRule, Trigger};
use zib_engine::storage::memory::{MemoryBackend, MemoryConfig};
use zib_engine::storage::{
    BucketProtection, DefaultRetention, ObjectLock, Operation, RetentionMode, StorageBackend,
    StorageClass, Versioning,
};
use zib_engine::{
    BackupId, BackupKind, BackupOptions, CommittedBackup, ConsolidateOptions, DatasetName,
    DeletionOptions, DeletionReport, FakeClock, Host, InitOptions, Location, NewRestore,
    NoProgress, Passphrase, Repository, RestoreState, VolumeShape, WaitingFor,
};
use zib_test_utils::data::{hash_tree, TestRng};
use zib_test_utils::memory_source::{MemorySource, Script};

use common::committed;

const PASSPHRASE: &str = "the family's passphrase";
const KIB: usize = 1 << 10;
const DAY: u64 = 24 * 3600;
/// The start of the simulated history.
const EPOCH: u64 = 1_800_000_000;

type Tree = BTreeMap<String, String>;

struct Setup {
    clock: FakeClock,
    memory: Arc<MemoryBackend>,
    state: tempfile::TempDir,
    repository: Repository,
    source: MemorySource,
    dataset: DatasetName,
    rng: TestRng,
    /// What each committed backup's snapshot held: what restoring it must give back.
    expected: BTreeMap<BackupId, Tree>,
    /// Every backup committed, oldest first.
    history: Vec<BackupId>,
    /// Every deletion made, with the time it was made.
    deletions: Vec<(SystemTime, zib_engine::DeletedBackup)>,
    restores: u32,
}

/// A Deep Archive repository on the in-memory backend and a dataset of `files` photos of
/// 64 KiB, on a fake clock at day 0.
async fn setup(files: usize) -> Setup {
    let clock = FakeClock::new(UNIX_EPOCH + Duration::from_secs(EPOCH));
    let memory = Arc::new(MemoryBackend::new(
        MemoryConfig::default(),
        Arc::new(clock.clone()),
    ));
    let state = tempfile::tempdir().unwrap();
    let repository = Repository::init(
        &location(&(memory.clone() as Arc<dyn StorageBackend>)),
        &Passphrase::new(PASSPHRASE.into()),
        &InitOptions {
            archive_class: StorageClass::DeepArchive,
            kdf: KdfParams::new(10, 8, 1).unwrap(),
        },
        host(&state, &clock),
    )
    .await
    .unwrap()
    .0;
    let source = MemorySource::new().with_clock(Arc::new(clock.clone()));
    let dataset = DatasetName::zfs("tank/photos").unwrap();
    source.create_dataset(&dataset);
    let mut setup = Setup {
        clock,
        memory,
        state,
        repository,
        source,
        dataset,
        rng: TestRng::new(11),
        expected: BTreeMap::new(),
        history: Vec::new(),
        deletions: Vec::new(),
        restores: 0,
    };
    for _ in 0..files {
        setup.add_photo();
    }
    setup
}

fn location(backend: &Arc<dyn StorageBackend>) -> Location {
    Location::new(backend.clone(), "family").unwrap()
}

fn host(state: &tempfile::TempDir, clock: &FakeClock) -> Host {
    Host::new(state.path()).with_clock(Arc::new(clock.clone()))
}

/// Volumes of 128 KiB, so a backup spans a few of them; the planner off (each test says
/// when it wants a consolidation).
fn options() -> BackupOptions {
    BackupOptions {
        shape: VolumeShape {
            volume_plaintext_len: 128 * KIB as u64,
            part_len: 5 << 20,
            parts_in_flight: 2,
        },
        policy: Policy {
            consolidation: ConsolidationMode::Never,
            ..Policy::default()
        },
        ..BackupOptions::default()
    }
}

/// The same options with the policy's consolidation `auto`: backups delete what is due.
fn auto() -> BackupOptions {
    let mut options = options();
    options.policy.consolidation = ConsolidationMode::Auto;
    options
}

fn deletion_options(confirm: bool) -> DeletionOptions {
    DeletionOptions {
        policy: auto().policy,
        confirm,
        ..DeletionOptions::default()
    }
}

impl Setup {
    fn now(&self) -> SystemTime {
        zib_engine::Clock::now(&self.clock)
    }

    /// Moves the clock to `day` days after the start of the history.
    fn day(&self, day: u64) {
        let target = UNIX_EPOCH + Duration::from_secs(EPOCH + day * DAY);
        let now = self.now();
        assert!(target >= now, "day {day} is in the past");
        self.clock.advance(target.duration_since(now).unwrap());
    }

    fn add_photo(&mut self) {
        let name = format!("photo {}.jpg", self.rng.next_u64() % 1_000_000);
        let bytes = self.rng.bytes(64 * KIB);
        self.source.write_file(&self.dataset, &name, &bytes);
    }

    fn photos(&self) -> Vec<String> {
        let tree = hash_tree(&self.source.mountpoint(&self.dataset).unwrap()).unwrap();
        tree.keys()
            .map(|name| name.trim_matches('"').to_owned())
            .collect()
    }

    fn tree(&self) -> Tree {
        hash_tree(&self.source.mountpoint(&self.dataset).unwrap()).unwrap()
    }

    /// Records a committed backup's expected contents (the dataset as it is now, which
    /// is what its new snapshot captured) and the deletions it made.
    fn record(&mut self, backup: &CommittedBackup) {
        self.expected.insert(backup.manifest.backup_id, self.tree());
        self.history.push(backup.manifest.backup_id);
        if let Some(report) = &backup.deletions {
            self.record_deletions(report);
        }
    }

    fn record_deletions(&mut self, report: &DeletionReport) {
        let now = self.now();
        self.deletions
            .extend(report.deleted.iter().map(|deleted| (now, deleted.clone())));
    }

    async fn backup_with(&mut self, options: &BackupOptions) -> CommittedBackup {
        let backup = committed(
            self.repository
                .backup(&self.source, &self.dataset, options, &NoProgress)
                .await
                .unwrap(),
        );
        self.record(&backup);
        backup
    }

    async fn consolidate(
        &mut self,
        options: &ConsolidateOptions,
    ) -> zib_engine::ConsolidationReport {
        let report = self
            .repository
            .consolidate(&self.source, &self.dataset, options, &NoProgress)
            .await
            .unwrap();
        self.record(&committed(report.backup.clone()));
        self.record_deletions(&report.deletions);
        report
    }

    async fn delete_superseded(&mut self, options: &DeletionOptions) -> DeletionReport {
        let report = self
            .repository
            .delete_superseded("tank/photos", options)
            .await
            .unwrap();
        self.record_deletions(&report);
        report
    }

    /// The backups the bucket holds now, oldest first.
    async fn held(&self) -> Vec<BackupId> {
        let catalog = self.repository.catalog().await.unwrap();
        let dataset = catalog.dataset_named("tank/photos").unwrap();
        catalog
            .backups(dataset)
            .iter()
            .map(|backup| backup.manifest.backup_id)
            .collect()
    }

    /// Every backup the catalog lists whose chain is complete has every volume its
    /// manifest names: no manifest points at a missing volume.
    async fn every_restore_point_complete(&self) {
        let catalog = self.repository.catalog().await.unwrap();
        let dataset = catalog.dataset_named("tank/photos").unwrap();
        for backup in catalog.backups(dataset) {
            assert_eq!(
                backup.volume_sizes.len() as u32,
                backup.manifest.volume_count,
                "backup {} lists {} of its {} volumes",
                backup.manifest.backup_id,
                backup.volume_sizes.len(),
                backup.manifest.volume_count
            );
        }
    }

    /// Restores `point` with the restore job (thaws on the fake clock) into a new
    /// dataset and checks it holds exactly what that backup's snapshot held.
    async fn restores(&mut self, point: BackupId) {
        self.restores += 1;
        let target = DatasetName::zfs(&format!("tank/restored{}", self.restores)).unwrap();
        let staging = tempfile::tempdir().unwrap();
        let request = NewRestore {
            restore_point: Some(point),
            ..NewRestore::new("tank/photos", target.clone(), staging.path())
        };
        let (job, _) = self
            .repository
            .create_restore(&request, &self.source)
            .await
            .unwrap();
        for _ in 0..10 {
            let status = self
                .repository
                .advance_restore(job.id, &self.source, &NoProgress)
                .await
                .unwrap();
            if status.state == RestoreState::Done {
                assert_eq!(
                    hash_tree(&self.source.mountpoint(&target).unwrap()).unwrap(),
                    self.expected[&point],
                    "restore point {point}"
                );
                return;
            }
            self.clock.advance(Duration::from_secs(2 * DAY + 3600));
        }
        panic!("the restore of {point} did not finish");
    }

    /// Nothing was ever deleted before the policy's minimum age.
    fn nothing_deleted_young(&self) {
        for (when, deleted) in &self.deletions {
            let committed = UNIX_EPOCH + Duration::from_secs(deleted.committed_at as u64);
            let age = when.duration_since(committed).unwrap();
            assert!(
                age >= Duration::from_secs(180 * DAY),
                "backup {} deleted at {} days old",
                deleted.backup,
                age.as_secs() / DAY
            );
        }
    }

    /// The same repository, seen through `backend` wrapped around the same objects.
    async fn through(&self, backend: Arc<dyn StorageBackend>) -> Repository {
        Repository::open(
            &location(&backend),
            &Passphrase::new(PASSPHRASE.into()),
            host(&self.state, &self.clock),
        )
        .await
        .unwrap()
    }
}

/// A full on day 0 and incrementals every `every` days up to `until` (exclusive), each
/// adding a photo: an append-only library, as most are.
async fn history(setup: &mut Setup, every: u64, until: u64) {
    let mut day = 0;
    while day < until {
        setup.day(day);
        if day > 0 {
            setup.add_photo();
        }
        setup.backup_with(&options()).await;
        day += every;
    }
}

fn forced() -> ConsolidateOptions {
    ConsolidateOptions {
        backup: options(),
        force: true,
        confirm: false,
    }
}

fn waiting(report: &DeletionReport) -> Vec<&WaitingFor> {
    report.pending.iter().map(|p| &p.waiting_for).collect()
}

#[tokio::test]
async fn consolidation_after_200_days_then_every_kept_restore_point_restores() {
    let mut setup = setup(12).await;
    history(&mut setup, 20, 200).await;
    let old_chain = setup.held().await;
    assert_eq!(old_chain.len(), 10, "a full and nine incrementals");

    // Day 200: a fresh full, committed; nothing deleted by it.
    setup.day(200);
    setup.add_photo();
    let report = setup.consolidate(&forced()).await;
    let full = committed(report.backup.clone());
    assert_eq!(full.manifest.kind, BackupKind::Full);
    assert!(
        full.decision.consolidation.is_some(),
        "{}",
        full.decision.reason
    );
    // It records its data size and the incremental it replaced (from the old chain's
    // tip), so later runs can measure what vanished across it.
    assert_eq!(full.manifest.snapshot_bytes, Some(full.manifest.stream_len));
    let replaced = full
        .manifest
        .replaced_incremental
        .expect("the replaced incremental");
    assert_eq!(replaced.base_backup, *old_chain.last().unwrap());
    assert!(report.deletions.deleted.is_empty());
    assert!(report
        .deletions
        .pending
        .iter()
        .all(|p| matches!(p.waiting_for, WaitingFor::GracePeriod { full: f, .. } if f == full.manifest.backup_id)
            || matches!(p.waiting_for, WaitingFor::MinimumAge { .. })));
    assert_eq!(report.deletions.pending.len(), 10);

    // During the grace period an old restore point restores byte for byte.
    setup.day(205);
    setup.restores(old_chain[5]).await;

    // Day 231: the grace period is over, but no backup has followed the full yet.
    setup.day(231);
    let report = setup.delete_superseded(&deletion_options(false)).await;
    assert!(report.deleted.is_empty(), "{report:?}");
    assert!(
        waiting(&report)
            .iter()
            .any(|w| matches!(w, WaitingFor::LaterBackup { .. })),
        "{report:?}"
    );

    // Then monthly backups under `auto`: each deletes what has become due — the oldest
    // first, the younger incrementals as each reaches 180 days.
    let mut day = 232;
    while day <= 400 {
        setup.day(day);
        setup.add_photo();
        let backup = setup.backup_with(&auto()).await;
        let deletions = backup.deletions.expect("auto deletes");
        assert!(deletions.stopped.is_none(), "{deletions:?}");
        assert_eq!(deletions.early_deletion_fees, 0.0);
        for deleted in &deletions.deleted {
            assert!(deleted.storage_per_month > 0.0);
        }
        assert!(
            deletions.pending.iter().all(|p| !p.needs_confirmation),
            "an append-only library loses nothing: {deletions:?}"
        );
        if !deletions.deleted.is_empty() {
            assert!(deletions.saved_per_month > 0.0);
        }
        day += 30;
    }
    setup.nothing_deleted_young();
    let held = setup.held().await;
    assert!(
        old_chain.iter().all(|old| !held.contains(old)),
        "the old chain is gone: {held:?}"
    );
    assert_eq!(held[0], full.manifest.backup_id);
    let catalog = setup.repository.catalog().await.unwrap();
    assert!(catalog.leftovers.orphan_volumes.is_empty());
    assert_eq!(setup.deletions.len(), old_chain.len());

    // The consolidated chain restores, and so does its full, an older restore point.
    setup.restores(*held.last().unwrap()).await;
    setup.restores(full.manifest.backup_id).await;
}

/// The old chain 0, 10, 20; a fresh full on day 200; a backup on day 231 that may delete.
async fn superseded(files: usize) -> (Setup, BackupId) {
    let mut setup = setup(files).await;
    history(&mut setup, 10, 30).await;
    setup.day(200);
    setup.add_photo();
    let report = setup.consolidate(&forced()).await;
    let full = committed(report.backup).manifest.backup_id;
    setup.day(231);
    setup.add_photo();
    (setup, full)
}

#[tokio::test]
async fn a_stop_at_each_step_leaves_every_kept_restore_point_restorable() {
    // Steps of the deletion: per old backup, its manifest then its volumes.
    let (setup, _) = superseded(6).await;
    let catalog = setup.repository.catalog().await.unwrap();
    let dataset = catalog.dataset_named("tank/photos").unwrap();
    let steps: u64 = catalog.backups(dataset)[..3]
        .iter()
        .map(|backup| 1 + u64::from(backup.manifest.volume_count))
        .sum();
    assert!(steps >= 6, "{steps} steps");
    drop(setup);

    for stop in 1..=steps {
        let (mut setup, full) = superseded(6).await;
        let old = setup.held().await[..3].to_vec();
        // The backup commits; its deletions stop before the stop-th delete (a process
        // killed there leaves the bucket exactly so).
        let stopping = setup
            .through(Arc::new(FaultInjecting::new(
                setup.memory.clone(),
                vec![FaultRule {
                    operation: Some(Operation::Delete),
                    trigger: Trigger::From(stop),
                    fault: Fault::Transient,
                }],
                stop,
            )))
            .await;
        let backup = committed(
            stopping
                .backup(&setup.source, &setup.dataset, &auto(), &NoProgress)
                .await
                .unwrap(),
        );
        setup.record(&backup);
        let deletions = backup.deletions.unwrap();
        assert!(deletions.stopped.is_some(), "stop {stop}: {deletions:?}");
        // Every restore point the catalog still lists is complete, and the kept ones
        // restore.
        setup.every_restore_point_complete().await;
        let newest = backup.manifest.backup_id;
        setup.restores(newest).await;
        // Rerun: the deletions finish, a half-deleted backup's volumes included. Once
        // the old chain's tip is gone, what was written between the older restore points
        // and the fresh full can no longer be measured (the tip carried it): those wait
        // for a confirmation, never for less — and a confirmed run finishes.
        let mut rerun = setup.delete_superseded(&deletion_options(false)).await;
        assert!(rerun.stopped.is_none());
        if !rerun.pending.is_empty() {
            assert!(
                rerun
                    .pending
                    .iter()
                    .all(|p| matches!(p.waiting_for, WaitingFor::Confirmation { .. })),
                "stop {stop}: {rerun:?}"
            );
            rerun = setup.delete_superseded(&deletion_options(true)).await;
            assert!(
                rerun.stopped.is_none() && rerun.pending.is_empty(),
                "{rerun:?}"
            );
        }
        let held = setup.held().await;
        assert_eq!(held, vec![full, newest], "stop {stop}: {rerun:?}");
        let catalog = setup.repository.catalog().await.unwrap();
        assert!(
            catalog.leftovers.orphan_volumes.is_empty(),
            "stop {stop}: {:?}",
            catalog.leftovers.orphan_volumes
        );
        let deleted: Vec<BackupId> = setup.deletions.iter().map(|(_, d)| d.backup).collect();
        for backup in &old {
            assert!(
                deleted.contains(backup),
                "stop {stop}: {backup} not reported"
            );
        }
        setup.nothing_deleted_young();
        if stop == 1 || stop == steps {
            setup.restores(full).await;
        }
    }
}

#[tokio::test]
async fn half_the_files_gone_is_not_deleted_without_confirmation() {
    let mut setup = setup(12).await;
    history(&mut setup, 100, 200).await;
    let old_chain = setup.held().await;
    // Half the library disappears (a mistaken rm, a failing sync, ransomware...).
    setup.day(200);
    let photos = setup.photos();
    for photo in &photos[..photos.len() / 2] {
        setup.source.remove_file(&setup.dataset, photo);
    }
    let report = setup.consolidate(&forced()).await;
    let full = committed(report.backup.clone());
    let evaluation = full.decision.consolidation.expect("evaluated");
    assert!(evaluation.needs_confirmation, "{}", evaluation.reason);

    // After the grace period, the minimum age (the day-100 backup is 180 days old on
    // day 280) and a later backup, the automatic run still deletes nothing, and says why.
    setup.day(281);
    let backup = setup.backup_with(&auto()).await;
    let deletions = backup.deletions.unwrap();
    assert!(deletions.deleted.is_empty(), "{deletions:?}");
    assert_eq!(deletions.pending.len(), old_chain.len());
    for pending in &deletions.pending {
        assert!(pending.needs_confirmation);
        let WaitingFor::Confirmation {
            vanished_fraction: Some(fraction),
            ..
        } = pending.waiting_for
        else {
            panic!("{pending:?}");
        };
        assert!(fraction > 0.4, "{fraction}");
        assert!(pending.waiting_for.to_string().contains("--confirm"));
    }
    // An admin run without confirmation: the same.
    let again = setup.delete_superseded(&deletion_options(false)).await;
    assert!(again.deleted.is_empty());
    // The old restore point still restores what the library held before.
    setup.restores(old_chain[1]).await;

    // Confirmed: deleted.
    let confirmed = setup.delete_superseded(&deletion_options(true)).await;
    assert_eq!(confirmed.deleted.len(), old_chain.len(), "{confirmed:?}");
    assert!(confirmed
        .deleted
        .iter()
        .all(|d| d.vanished_fraction.unwrap() > 0.4));
    setup.nothing_deleted_young();
    assert_eq!(
        setup.held().await,
        vec![full.manifest.backup_id, backup.manifest.backup_id]
    );
    setup.restores(backup.manifest.backup_id).await;
}

#[tokio::test]
async fn the_superseded_chain_waits_for_the_grace_period_and_a_later_backup() {
    let mut setup = setup(6).await;
    history(&mut setup, 10, 30).await;
    let old_chain = setup.held().await;
    setup.day(200);
    let report = setup.consolidate(&forced()).await;
    let full = committed(report.backup).manifest.backup_id;

    // Day 229: within the grace period, even when confirmed.
    setup.day(229);
    let report = setup.delete_superseded(&deletion_options(true)).await;
    assert!(report.deleted.is_empty());
    assert!(
        waiting(&report)
            .iter()
            .all(|w| matches!(w, WaitingFor::GracePeriod { full: f, .. } if *f == full)),
        "{report:?}"
    );
    // Day 231: over, but no backup since the full.
    setup.day(231);
    let report = setup.delete_superseded(&deletion_options(true)).await;
    assert!(report.deleted.is_empty());
    assert!(
        waiting(&report)
            .iter()
            .all(|w| matches!(w, WaitingFor::LaterBackup { .. })),
        "{report:?}"
    );
    // A backup under `never` deletes nothing on its own.
    setup.add_photo();
    let never = setup.backup_with(&options()).await;
    assert!(never.deletions.is_none());
    assert_eq!(setup.held().await.len(), old_chain.len() + 2);
    // The next backup under `auto` does.
    setup.day(232);
    setup.add_photo();
    let backup = setup.backup_with(&auto()).await;
    let deletions = backup.deletions.unwrap();
    assert_eq!(
        deletions
            .deleted
            .iter()
            .map(|d| d.backup)
            .collect::<Vec<_>>(),
        old_chain.iter().rev().copied().collect::<Vec<_>>(),
        "newest first: {deletions:?}"
    );
    assert!(deletions.saved_per_month > 0.0);
    assert_eq!(deletions.bucket, Some(BucketProtection::default()));
    setup.nothing_deleted_young();
}

#[tokio::test]
async fn without_delete_permission_a_backup_leaves_deletions_to_an_admin_run() {
    let (mut setup, full) = superseded(6).await;
    let old = setup.held().await[..3].to_vec();
    let backup_host = setup
        .through(Arc::new(FaultInjecting::new(
            setup.memory.clone(),
            vec![FaultRule {
                operation: Some(Operation::Delete),
                trigger: Trigger::From(1),
                fault: Fault::PermissionDenied,
            }],
            1,
        )))
        .await;
    let backup = committed(
        backup_host
            .backup(&setup.source, &setup.dataset, &auto(), &NoProgress)
            .await
            .unwrap(),
    );
    setup.record(&backup);
    let deletions = backup.deletions.unwrap();
    assert!(deletions.deleted.is_empty());
    assert!(deletions.stopped.is_none(), "a refusal is no failure");
    assert_eq!(deletions.pending.len(), 3);
    assert!(deletions
        .pending
        .iter()
        .all(|p| p.waiting_for == WaitingFor::DeletePermission));
    assert!(
        deletions
            .notes
            .iter()
            .any(|note| note.contains("s3:DeleteObject")),
        "{:?}",
        deletions.notes
    );
    assert_eq!(setup.held().await.len(), 5);

    // An admin run with credentials that may delete.
    let admin = setup.delete_superseded(&deletion_options(false)).await;
    assert_eq!(admin.deleted.len(), 3, "{admin:?}");
    assert_eq!(setup.held().await, vec![full, backup.manifest.backup_id]);
    for backup in old {
        assert!(admin.deleted.iter().any(|d| d.backup == backup));
    }
}

#[tokio::test]
async fn a_versioned_or_locked_bucket_is_said_to_save_nothing_yet() {
    let (mut setup, _) = superseded(6).await;
    setup.memory.set_bucket_protection(BucketProtection {
        versioning: Versioning::Enabled,
        object_lock: ObjectLock::Enabled {
            default_retention: Some(DefaultRetention {
                mode: RetentionMode::Compliance,
                days: 365,
            }),
        },
    });
    let backup = setup.backup_with(&auto()).await;
    let deletions = backup.deletions.unwrap();
    assert_eq!(deletions.deleted.len(), 3);
    assert_eq!(deletions.saved_per_month, 0.0);
    assert!(deletions.deleted.iter().all(|d| d.storage_per_month > 0.0));
    let note = deletions.notes.join("\n");
    assert!(note.contains("noncurrent version"), "{note}");
    assert!(note.contains("365 days in COMPLIANCE mode"), "{note}");
}

#[tokio::test]
async fn a_stopped_fresh_full_resumes_and_still_records_what_it_replaced() {
    let mut setup = setup(12).await;
    history(&mut setup, 10, 30).await;
    let tip = *setup.held().await.last().unwrap();
    setup.day(200);
    setup.add_photo();
    setup.source.script(Script::SendFails {
        after_bytes: 300 * KIB as u64,
    });
    setup
        .repository
        .consolidate(&setup.source, &setup.dataset, &forced(), &NoProgress)
        .await
        .expect_err("the send died");
    let report = setup.consolidate(&forced()).await;
    let full = committed(report.backup);
    assert!(full.resumed);
    assert!(full.transfer.parts_skipped > 0, "{:?}", full.transfer);
    assert_eq!(full.manifest.kind, BackupKind::Full);
    assert_eq!(
        full.manifest.replaced_incremental.map(|r| r.base_backup),
        Some(tip)
    );
    setup.restores(full.manifest.backup_id).await;
}

#[tokio::test]
async fn under_auto_the_planner_consolidates_a_churning_dataset_on_its_own() {
    let mut setup = setup(16).await;
    // Prices that make a few hundred kilobytes matter as terabytes would: storage
    // dominates the request fees, so waste is worth a fresh full.
    let mut options = auto();
    options.prices.archive_storage_per_gb_month = 1.0e6;
    options.policy.max_vanished_fraction = 1.0;
    let mut consolidated = None;
    for month in 0..14u64 {
        setup.day(month * 30);
        if month > 0 {
            // Monthly churn: one photo replaced by another.
            let photos = setup.photos();
            setup.source.remove_file(&setup.dataset, &photos[0]);
            setup.add_photo();
        }
        let backup = setup.backup_with(&options).await;
        let recommended = backup
            .decision
            .consolidation
            .as_ref()
            .is_some_and(|c| c.recommend);
        if recommended && matches!(backup.decision.plan, PlannedBackup::Full) {
            consolidated.get_or_insert(backup.manifest.backup_id);
        }
    }
    let full = consolidated.expect("the planner chose a fresh full on its own");
    assert!(
        !setup.deletions.is_empty(),
        "and the chain it superseded went"
    );
    setup.nothing_deleted_young();
    let held = setup.held().await;
    assert!(held.contains(&full) || held.len() < setup.history.len());
    setup.restores(*held.last().unwrap()).await;
}
