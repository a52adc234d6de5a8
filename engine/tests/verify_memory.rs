//! Verify without thawing, and the restore drill, on the in-memory backend (Deep
//! Archive semantics: reads refused until a restore has thawed, on the fake clock) and
//! the in-memory snapshot source: a healthy repository verifies clean without a GET of
//! any volume; each kind of damage is named with its key and the restore points it
//! breaks; the drill restores the smallest chain byte for byte, waits for the month's
//! free egress, and leaves nothing behind when it fails.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use zib_engine::storage::counting::Counting;
use zib_engine::storage::memory::{MemoryBackend, MemoryConfig};
use zib_engine::storage::{
    ByteRange, ObjectKey, Operation, PutPrecondition, StorageBackend, StorageBackendExt,
    StorageClass, WriteOptions,
};
use zib_engine::{
    BackupId, DatasetId, DatasetName, DrillRequest, DrillSkip, DrillState, Error, FakeClock,
    NoProgress, Passphrase, ProblemKind, Repository, RestoreState, Severity, VerifyOptions,
    VerifyReport,
};
use zib_test_utils::data::{hash_tree, TestRng};
use zib_test_utils::memory_source::MemorySource;

use common::{committed, memory_repository, three_mib_volumes, Inspecting, MemoryRepository};

const MIB: usize = 1 << 20;
const PASSPHRASE: &str = "the family's passphrase";
const PREFIX: &str = "family";

/// The ids of one committed backup.
#[derive(Debug, Clone, Copy)]
struct Backup {
    dataset: DatasetId,
    backup: BackupId,
}

impl Backup {
    fn volume(&self, index: u32) -> ObjectKey {
        ObjectKey::new(format!(
            "{PREFIX}/volumes/{}/{}/{index:08}",
            self.dataset, self.backup
        ))
        .unwrap()
    }

    fn manifest(&self) -> ObjectKey {
        ObjectKey::new(format!(
            "{PREFIX}/manifests/{}/{}",
            self.dataset, self.backup
        ))
        .unwrap()
    }
}

struct Setup {
    clock: FakeClock,
    memory: Arc<MemoryBackend>,
    /// Every request, below the engine.
    counting: Counting<Arc<MemoryBackend>>,
    _state: tempfile::TempDir,
    staging: tempfile::TempDir,
    repository: Repository,
    source: Inspecting<MemorySource>,
    /// tank/photos: a full of 7 MiB, then two incrementals of 2 MiB.
    photos: [Backup; 3],
    /// tank/letters: one full of 1 MiB — the smallest chain.
    letters: Backup,
    /// Every file of tank/letters when it was backed up.
    letters_files: BTreeMap<String, String>,
}

/// A Deep Archive repository with two datasets: tank/photos (a full and two
/// incrementals, in 3 MiB volumes) and tank/letters (one small full).
async fn setup() -> Setup {
    let MemoryRepository {
        clock,
        memory,
        counting,
        state,
        repository,
    } = memory_repository(PREFIX, PASSPHRASE, MemoryConfig::default()).await;
    let staging = tempfile::tempdir().unwrap();
    let source = Inspecting::new(
        MemorySource::new().with_clock(Arc::new(clock.clone())),
        |source: &MemorySource, target| source.mountpoint(target),
    );
    let options = three_mib_volumes();
    let mut rng = TestRng::new(11);
    let photos = DatasetName::zfs("tank/photos").unwrap();
    source.inner.create_dataset(&photos);
    for file in 0..7 {
        source
            .inner
            .write_file(&photos, &format!("photo {file}.jpg"), &rng.bytes(MIB));
    }
    let mut photo_backups = Vec::new();
    for round in 0..3 {
        if round > 0 {
            clock.advance(Duration::from_secs(3600));
            source.inner.write_file(
                &photos,
                &format!("album {round}/new.jpg"),
                &rng.bytes(2 * MIB),
            );
        }
        let backup = committed(
            repository
                .backup(&source, &photos, &options, &NoProgress)
                .await
                .unwrap(),
        );
        photo_backups.push(Backup {
            dataset: backup.manifest.dataset_id,
            backup: backup.manifest.backup_id,
        });
    }
    let letters = DatasetName::zfs("tank/letters").unwrap();
    source.inner.create_dataset(&letters);
    source
        .inner
        .write_file(&letters, "to grandma.txt", &rng.bytes(MIB));
    source
        .inner
        .write_file(&letters, "from grandma.txt", &rng.bytes(1000));
    clock.advance(Duration::from_secs(3600));
    let letters_backup = committed(
        repository
            .backup(&source, &letters, &options, &NoProgress)
            .await
            .unwrap(),
    );
    let letters_files = hash_tree(&source.inner.mountpoint(&letters).unwrap()).unwrap();
    Setup {
        clock,
        memory,
        counting,
        _state: state,
        staging,
        repository,
        source,
        photos: photo_backups.try_into().unwrap(),
        letters: Backup {
            dataset: letters_backup.manifest.dataset_id,
            backup: letters_backup.manifest.backup_id,
        },
        letters_files,
    }
}

impl Setup {
    async fn verify(&self) -> VerifyReport {
        self.repository
            .verify(&VerifyOptions::default(), &NoProgress)
            .await
            .unwrap()
    }

    fn drill_target(&self) -> DatasetName {
        DatasetName::zfs("tank/zib-drill").unwrap()
    }

    fn drill_request(&self) -> DrillRequest {
        DrillRequest::new(self.drill_target(), self.staging.path())
    }

    /// A drill that ended left nothing: no target, no staged volume, no job.
    async fn assert_nothing_left(&self) {
        assert!(self.source.inner.mountpoint(&self.drill_target()).is_none());
        assert!(self.staging_is_empty());
        assert!(self.repository.restore_jobs().await.unwrap().is_empty());
    }

    fn staging_is_empty(&self) -> bool {
        std::fs::read_dir(self.staging.path())
            .unwrap()
            .next()
            .is_none()
    }

    /// Replaces `key` with `bytes` in `class`, keeping its metadata unless `metadata`
    /// is given (a damage done behind zib's back, straight on the store).
    async fn replace(
        &self,
        key: &ObjectKey,
        bytes: Vec<u8>,
        class: StorageClass,
        metadata: Option<BTreeMap<String, String>>,
    ) {
        let head = self.memory.head(key).await.unwrap();
        self.memory.delete(key).await.unwrap();
        self.memory
            .put(
                key,
                bytes.into(),
                &WriteOptions {
                    storage_class: class,
                    metadata: metadata.unwrap_or(head.metadata),
                },
                &PutPrecondition::IfAbsent,
            )
            .await
            .unwrap();
    }

    async fn size_of(&self, key: &ObjectKey) -> u64 {
        self.memory.head(key).await.unwrap().size
    }
}

/// The one problem of `kind`'s shape, or a failure listing what was found.
fn the_problem(
    report: &VerifyReport,
    matches: impl Fn(&ProblemKind) -> bool,
) -> &zib_engine::Problem {
    let found: Vec<_> = report
        .problems
        .iter()
        .filter(|problem| matches(&problem.kind))
        .collect();
    assert_eq!(found.len(), 1, "{:#?}", report.problems);
    found[0]
}

fn backups_of(points: &[zib_engine::RestorePoint]) -> Vec<BackupId> {
    points.iter().map(|point| point.backup).collect()
}

#[tokio::test]
async fn a_healthy_repository_verifies_clean_without_reading_a_volume() {
    let setup = setup().await;
    let before = setup.counting.counts();
    let bytes_before = setup.counting.bytes_read().get();
    let passphrase = Passphrase::new(PASSPHRASE.into());
    let report = setup
        .repository
        .verify(
            &VerifyOptions {
                passphrase: Some(&passphrase),
                ..VerifyOptions::default()
            },
            &NoProgress,
        )
        .await
        .unwrap();
    assert!(report.is_clean(), "{:#?}", report.problems);
    assert_eq!(report.backups, 4);
    assert_eq!(report.restore_points.len(), 4);
    // tank/photos: 3 + 1 + 1 volumes; tank/letters: 1.
    assert_eq!(report.volumes, 6);
    let delta = |operation| setup.counting.count(operation) - before.get(&operation).unwrap_or(&0);
    // One GET, of the keyring (160 bytes, Standard class): never a volume or manifest.
    assert_eq!(delta(Operation::Get), 1);
    assert_eq!(setup.counting.bytes_read().get() - bytes_before, 160);
    assert_eq!(delta(Operation::RequestRestore), 0);
    for operation in [
        Operation::Put,
        Operation::Delete,
        Operation::CreateMultipart,
        Operation::AbortMultipart,
    ] {
        assert_eq!(delta(operation), 0, "{operation:?}: verify writes nothing");
    }
    // The report's own count is what reached the storage: a HEAD per manifest (4), per
    // archived keyring copy (1), and the keyring's.
    assert_eq!(report.cost.head_requests, delta(Operation::Head));
    assert_eq!(report.cost.head_requests, 6);
    assert_eq!(report.cost.get_requests, 1);
    assert_eq!(report.cost.bytes_downloaded, 160);
    // One listing page of objects, one of incomplete uploads.
    assert_eq!(report.cost.list_requests, 2);
    assert!(
        report.cost.usd > 0.0 && report.cost.usd < 0.001,
        "{}",
        report.cost.usd
    );
    let chain_lens: Vec<usize> = report.restore_points.iter().map(|p| p.chain_len).collect();
    assert_eq!(chain_lens, [1, 2, 3, 1]);
}

#[tokio::test]
async fn a_missing_volume_is_named_with_the_restore_points_it_breaks() {
    let setup = setup().await;
    let [full, second, third] = setup.photos;
    let key = second.volume(0);
    let size = setup.size_of(&key).await;
    setup.memory.delete(&key).await.unwrap();
    let report = setup.verify().await;
    let problem = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::VolumeMissing { .. })
    });
    assert_eq!(problem.severity, Severity::Damage);
    assert_eq!(problem.key.as_ref(), Some(&key));
    assert_eq!(
        problem.kind,
        ProblemKind::VolumeMissing {
            backup: second.backup,
            index: 0,
            expected_size: size
        }
    );
    // The second and third restore points need it; the first and the letters do not.
    assert_eq!(backups_of(&problem.breaks), [second.backup, third.backup]);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(
        backups_of(&report.restore_points),
        [full.backup, setup.letters.backup]
    );
    let text = problem.to_string();
    assert!(
        text.contains(key.as_str())
            && text.contains("tank/photos@")
            && text.contains("back it up again"),
        "{text}"
    );
}

#[tokio::test]
async fn a_volume_of_the_wrong_size_is_named() {
    let setup = setup().await;
    let [full, second, third] = setup.photos;
    let key = full.volume(1);
    let size = setup.size_of(&key).await;
    // Truncated by one byte, metadata and class kept.
    setup
        .replace(
            &key,
            vec![7; size as usize - 1],
            StorageClass::DeepArchive,
            None,
        )
        .await;
    let report = setup.verify().await;
    let problem = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::VolumeSize { .. })
    });
    assert_eq!(problem.severity, Severity::Damage);
    assert_eq!(problem.key.as_ref(), Some(&key));
    assert_eq!(
        problem.kind,
        ProblemKind::VolumeSize {
            backup: full.backup,
            index: 1,
            expected: size,
            found: size - 1
        }
    );
    assert_eq!(
        backups_of(&problem.breaks),
        [full.backup, second.backup, third.backup]
    );
    assert_eq!(backups_of(&report.restore_points), [setup.letters.backup]);
}

#[tokio::test]
async fn a_volume_in_another_storage_class_is_a_warning_that_breaks_nothing() {
    let setup = setup().await;
    let key = setup.photos[2].volume(0);
    let size = setup.size_of(&key).await;
    setup
        .replace(&key, vec![7; size as usize], StorageClass::Standard, None)
        .await;
    let report = setup.verify().await;
    let problem = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::StorageClass { .. })
    });
    assert_eq!(problem.severity, Severity::Warning);
    assert_eq!(problem.key.as_ref(), Some(&key));
    assert_eq!(
        problem.kind,
        ProblemKind::StorageClass {
            expected: StorageClass::DeepArchive,
            found: StorageClass::Standard
        }
    );
    assert!(problem.breaks.is_empty());
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(report.restore_points.len(), 4);
}

#[tokio::test]
async fn a_manifest_whose_base_is_missing_breaks_its_chain() {
    let setup = setup().await;
    let [full, second, third] = setup.photos;
    setup.memory.delete(&second.manifest()).await.unwrap();
    let report = setup.verify().await;
    let problem = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::BrokenChain { .. })
    });
    assert_eq!(problem.severity, Severity::Damage);
    assert_eq!(
        problem.kind,
        ProblemKind::BrokenChain {
            backup: third.backup,
            missing_base: second.backup
        }
    );
    assert_eq!(problem.key.as_ref(), Some(&third.manifest()));
    assert_eq!(backups_of(&problem.breaks), [third.backup]);
    // The uncommitted backup's volume is an orphan now.
    let orphan = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::OrphanVolume { .. })
    });
    assert_eq!(orphan.severity, Severity::Leftover);
    assert_eq!(orphan.key.as_ref(), Some(&second.volume(0)));
    assert_eq!(
        backups_of(&report.restore_points),
        [full.backup, setup.letters.backup]
    );
}

#[tokio::test]
async fn a_tampered_manifest_is_named_and_its_volumes_are_not_orphans() {
    let setup = setup().await;
    let [full, second, third] = setup.photos;
    let key = full.manifest();
    let mut metadata = setup.memory.head(&key).await.unwrap().metadata;
    // One character of the sealed record changed (still valid base64url).
    let record = metadata.get_mut("zib-record").unwrap();
    let middle = record.len() / 2;
    let changed = if &record[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    record.replace_range(middle..=middle, changed);
    let body = record.clone().into_bytes();
    setup
        .replace(&key, body, StorageClass::DeepArchive, Some(metadata))
        .await;
    let report = setup.verify().await;
    let problem = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::ManifestUnreadable { .. })
    });
    assert_eq!(problem.severity, Severity::Damage);
    assert_eq!(problem.key.as_ref(), Some(&key));
    assert!(
        matches!(&problem.kind, ProblemKind::ManifestUnreadable { backup, .. } if *backup == full.backup)
    );
    // The incrementals on top of it cannot be restored either.
    assert_eq!(backups_of(&problem.breaks), [second.backup, third.backup]);
    // Its volumes belong to it: not reported again as orphans.
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(backups_of(&report.restore_points), [setup.letters.backup]);
}

#[tokio::test]
async fn a_tampered_keyring_or_archived_copy_is_named() {
    let setup = setup().await;
    let keyring = ObjectKey::new(format!("{PREFIX}/keyring")).unwrap();
    let good = setup
        .memory
        .get_bytes(&keyring, ByteRange::full())
        .await
        .unwrap()
        .to_vec();

    // A wrong passphrase does not open a good keyring.
    let wrong = Passphrase::new("not the passphrase".into());
    let report = setup
        .repository
        .verify(
            &VerifyOptions {
                passphrase: Some(&wrong),
                ..VerifyOptions::default()
            },
            &NoProgress,
        )
        .await
        .unwrap();
    let problem = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::KeyringDamaged { .. })
    });
    assert!(problem.to_string().contains("passphrase"), "{problem}");

    // A flipped byte in the keyring.
    let mut bad = good.clone();
    bad[100] ^= 1;
    setup
        .replace(&keyring, bad, StorageClass::Standard, None)
        .await;
    let report = setup.verify().await;
    let problem = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::KeyringDamaged { .. })
    });
    assert_eq!(problem.severity, Severity::Damage);
    assert_eq!(problem.key.as_ref(), Some(&keyring));
    assert!(problem.to_string().contains("checksum"), "{problem}");
    assert!(
        problem.action.contains("offline copy"),
        "{}",
        problem.action
    );
    // The archived copy no longer matches the live keyring either.
    the_problem(&report, |kind| {
        matches!(kind, ProblemKind::KeyringArchiveDamaged { .. })
    });

    // The live keyring good again, its archived copy altered.
    setup
        .replace(&keyring, good.clone(), StorageClass::Standard, None)
        .await;
    assert!(setup.verify().await.is_clean());
    let copies = setup
        .memory
        .list_all(&format!("{PREFIX}/keyring-archive/"))
        .await
        .unwrap();
    assert_eq!(copies.len(), 1);
    let mut altered = good;
    altered[50] ^= 1;
    setup
        .replace(&copies[0].key, altered, StorageClass::DeepArchive, None)
        .await;
    let report = setup.verify().await;
    let problem = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::KeyringArchiveDamaged { .. })
    });
    assert_eq!(problem.severity, Severity::Warning);
    assert_eq!(problem.key.as_ref(), Some(&copies[0].key));
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);

    // No archived copy at all.
    setup.memory.delete(&copies[0].key).await.unwrap();
    let report = setup.verify().await;
    let problem = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::KeyringArchiveMissing)
    });
    assert_eq!(problem.severity, Severity::Warning);
}

#[tokio::test]
async fn every_object_no_backup_accounts_for_is_listed() {
    let setup = setup().await;
    let [full, ..] = setup.photos;
    let orphan = ObjectKey::new(format!(
        "{PREFIX}/volumes/{}/{}/00000000",
        full.dataset,
        "ab".repeat(16)
    ))
    .unwrap();
    let extra = full.volume(7);
    let unknown = ObjectKey::new(format!("{PREFIX}/photos/IMG_0001.jpg")).unwrap();
    let probe = ObjectKey::new(format!("{PREFIX}/access-probe/0123456789abcdef")).unwrap();
    for (key, class) in [
        (&orphan, StorageClass::DeepArchive),
        (&extra, StorageClass::DeepArchive),
        (&unknown, StorageClass::Standard),
        (&probe, StorageClass::Standard),
    ] {
        setup
            .memory
            .put(
                key,
                vec![1; 10].into(),
                &WriteOptions {
                    storage_class: class,
                    metadata: BTreeMap::new(),
                },
                &PutPrecondition::IfAbsent,
            )
            .await
            .unwrap();
    }
    let upload_key = ObjectKey::new(format!(
        "{PREFIX}/volumes/{}/{}/00000000",
        full.dataset,
        "cd".repeat(16)
    ))
    .unwrap();
    let upload = setup
        .memory
        .create_multipart(
            &upload_key,
            &WriteOptions {
                storage_class: StorageClass::DeepArchive,
                metadata: BTreeMap::new(),
            },
        )
        .await
        .unwrap();

    let report = setup.verify().await;
    let key_of =
        |matches: &dyn Fn(&ProblemKind) -> bool| the_problem(&report, matches).key.clone().unwrap();
    assert_eq!(
        key_of(&|kind| matches!(kind, ProblemKind::OrphanVolume { .. })),
        orphan
    );
    assert_eq!(
        key_of(&|kind| matches!(kind, ProblemKind::ExtraVolume { index: 7, .. })),
        extra
    );
    assert_eq!(
        key_of(&|kind| matches!(kind, ProblemKind::UnknownObject { size: 10 })),
        unknown
    );
    assert_eq!(
        key_of(&|kind| matches!(kind, ProblemKind::LeftoverProbe { .. })),
        probe
    );
    let incomplete = the_problem(&report, |kind| {
        matches!(kind, ProblemKind::IncompleteUpload { .. })
    });
    assert_eq!(incomplete.key.as_ref(), Some(&upload_key));
    assert!(matches!(
        &incomplete.kind,
        ProblemKind::IncompleteUpload { upload_id, of_committed_backup: false, .. } if *upload_id == upload
    ));
    assert_eq!(report.problems.len(), 5, "{:#?}", report.problems);
    assert!(report
        .problems
        .iter()
        .all(|problem| problem.severity == Severity::Leftover && problem.breaks.is_empty()));
    assert_eq!(report.restore_points.len(), 4, "leftovers break nothing");
}

// ---------------------------------------------------------------------------------
// The restore drill.

#[tokio::test]
async fn the_drill_restores_the_smallest_chain_byte_for_byte_and_throws_it_away() {
    let setup = setup().await;
    let report = setup.verify().await;
    let smallest = zib_engine::smallest_chain(&report.restore_points).unwrap();
    assert_eq!(
        smallest.backup, setup.letters.backup,
        "{:#?}",
        report.restore_points
    );
    let bytes_before = setup.counting.bytes_read().get();

    let first = setup
        .repository
        .drill(&report, &setup.drill_request(), &setup.source, &NoProgress)
        .await
        .unwrap();
    let started = first.started.expect("a drill starts");
    assert_eq!(started.restore_point.backup, setup.letters.backup);
    let DrillState::Running(status) = &first.state else {
        panic!("Deep Archive needs a thaw first: {:?}", first.state);
    };
    assert!(status.job.drill);
    assert!(status.restores_requested > 0);
    assert!(matches!(status.state, RestoreState::Waiting { .. }));
    assert_eq!(setup.repository.restore_jobs().await.unwrap().len(), 1);

    // Two days later: thawed, downloaded, verified, received, compared, thrown away.
    setup.clock.advance(Duration::from_secs(49 * 3600));
    let second = setup
        .repository
        .drill(&report, &setup.drill_request(), &setup.source, &NoProgress)
        .await
        .unwrap();
    assert!(second.started.is_none(), "the drill under way was advanced");
    let DrillState::Passed(status) = &second.state else {
        panic!("the drill should pass: {:?}", second.state);
    };
    assert_eq!(status.job.restore_point, setup.letters.backup);
    // Byte for byte: every file the target held before it was thrown away.
    let seen = setup.source.discarded(&setup.drill_target());
    assert_eq!(seen.as_ref(), Some(&setup.letters_files));
    // Exactly the smallest chain was downloaded.
    assert_eq!(
        setup.counting.bytes_read().get() - bytes_before,
        smallest.chain_bytes
    );
    // Nothing is left: no target, no staging, no job.
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn the_drill_waits_while_the_months_free_egress_is_spent() {
    let setup = setup().await;
    let report = setup.verify().await;
    let needed = zib_engine::smallest_chain(&report.restore_points)
        .unwrap()
        .chain_bytes;

    // An allowance below the chain: it never fits.
    let too_small = DrillRequest {
        free_egress_per_month: needed - 1,
        ..setup.drill_request()
    };
    let outcome = setup
        .repository
        .drill(&report, &too_small, &setup.source, &NoProgress)
        .await
        .unwrap();
    assert!(
        matches!(
            &outcome.state,
            DrillState::Skipped(DrillSkip::OverBudget { fits_from: None, remaining, .. }) if *remaining == needed - 1
        ),
        "{:?}",
        outcome.state
    );

    // One drill this month spends `needed` of the ledger…
    let allowance = 2 * needed - 1;
    let request = DrillRequest {
        free_egress_per_month: allowance,
        ..setup.drill_request()
    };
    setup
        .repository
        .drill(&report, &request, &setup.source, &NoProgress)
        .await
        .unwrap();
    setup.clock.advance(Duration::from_secs(49 * 3600));
    let passed = setup
        .repository
        .drill(&report, &request, &setup.source, &NoProgress)
        .await
        .unwrap();
    assert!(
        matches!(passed.state, DrillState::Passed(_)),
        "{:?}",
        passed.state
    );
    // …so a second one this month does not fit, and says from when it does.
    let outcome = setup
        .repository
        .drill(&report, &request, &setup.source, &NoProgress)
        .await
        .unwrap();
    let DrillState::Skipped(skip) = &outcome.state else {
        panic!("the month's free egress is spent: {:?}", outcome.state);
    };
    let DrillSkip::OverBudget {
        needed: said_needed,
        remaining,
        fits_from: Some(fits_from),
        ..
    } = skip
    else {
        panic!("{skip:?}");
    };
    assert_eq!((*said_needed, *remaining), (needed, needed - 1));
    assert!(skip.to_string().contains("next month"), "{skip}");
    assert!(setup.repository.restore_jobs().await.unwrap().is_empty());
    // Next month it starts.
    let now = zib_engine::Clock::now(&setup.clock);
    setup
        .clock
        .advance(fits_from.duration_since(now).unwrap() + Duration::from_secs(1));
    let outcome = setup
        .repository
        .drill(&report, &request, &setup.source, &NoProgress)
        .await
        .unwrap();
    assert!(outcome.started.is_some(), "{:?}", outcome.state);
}

#[tokio::test]
async fn a_drill_that_fails_removes_its_target_and_staging() {
    let setup = setup().await;
    let report = setup.verify().await;
    // The newest photos: its full is received (the target exists), then the second
    // receive fails.
    let request = DrillRequest {
        restore_point: Some(setup.photos[2].backup),
        ..setup.drill_request()
    };
    setup.source.fail_receive(2);
    setup
        .repository
        .drill(&report, &request, &setup.source, &NoProgress)
        .await
        .unwrap();
    setup.clock.advance(Duration::from_secs(49 * 3600));
    let outcome = setup
        .repository
        .drill(&report, &request, &setup.source, &NoProgress)
        .await
        .unwrap();
    let DrillState::Failed { job, error } = &outcome.state else {
        panic!("the receive failed: {:?}", outcome.state);
    };
    assert!(job.drill);
    assert!(matches!(error, Error::Source(_)), "{error}");
    assert_eq!(setup.source.receives(), 2, "the full was received first");
    assert!(setup.source.discarded(&setup.drill_target()).is_some());
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn a_drill_that_finds_a_damaged_volume_names_it_and_leaves_nothing() {
    let setup = setup().await;
    let report = setup.verify().await;
    // The letters' volume altered in place (same size: a verify cannot see it).
    let key = setup.letters.volume(0);
    setup
        .memory
        .request_restore(&key, 1, Default::default())
        .await
        .unwrap();
    setup.clock.advance(Duration::from_secs(49 * 3600));
    let mut bytes = setup
        .memory
        .get_bytes(&key, ByteRange::full())
        .await
        .unwrap()
        .to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    setup
        .replace(&key, bytes, StorageClass::DeepArchive, None)
        .await;
    assert!(setup.verify().await.is_clean(), "only a drill reads bytes");

    setup
        .repository
        .drill(&report, &setup.drill_request(), &setup.source, &NoProgress)
        .await
        .unwrap();
    setup.clock.advance(Duration::from_secs(49 * 3600));
    let outcome = setup
        .repository
        .drill(&report, &setup.drill_request(), &setup.source, &NoProgress)
        .await
        .unwrap();
    let DrillState::Failed { error, .. } = &outcome.state else {
        panic!(
            "the altered volume must fail the drill: {:?}",
            outcome.state
        );
    };
    assert!(
        matches!(error, Error::Corrupt { object, .. } if *object == key.to_string()),
        "{error}"
    );
    assert_eq!(setup.source.receives(), 0, "nothing reached a receive");
    assert!(setup.staging_is_empty());
    assert!(setup.repository.restore_jobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_drill_advanced_as_a_restore_job_is_thrown_away_too() {
    let setup = setup().await;
    let report = setup.verify().await;
    let first = setup
        .repository
        .drill(&report, &setup.drill_request(), &setup.source, &NoProgress)
        .await
        .unwrap();
    let DrillState::Running(status) = first.state else {
        panic!("{:?}", first.state);
    };
    // A daily job that advances every restore job advances the drill the same way.
    setup.clock.advance(Duration::from_secs(49 * 3600));
    let done = setup
        .repository
        .advance_restore(status.job.id, &setup.source, &NoProgress)
        .await
        .unwrap();
    assert_eq!(done.state, RestoreState::Done);
    assert_eq!(
        setup.source.discarded(&setup.drill_target()).as_ref(),
        Some(&setup.letters_files)
    );
    setup.assert_nothing_left().await;
}
