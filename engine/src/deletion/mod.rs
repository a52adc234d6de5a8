//! Deleting from the bucket the backups that no kept restore point needs — the second
//! half of a consolidation, after the fresh full has committed — within the safety
//! rules, and saying what that saved and cost.
//!
//! Which backups may go is decided twice: the planner's `plan_pruning` lists them with
//! their dates and flags, and the engine's own rules ([`rules`]) check every one against
//! the catalog before anything is deleted. Both are re-derived from the bucket on every
//! run, so there is no deletion state to lose: what is not due yet is reported as
//! pending, and a later run (the next backup, or an admin's) deletes it.
//!
//! Order of effects, so that a run stopped at any instant leaves every kept restore
//! point restorable and no manifest pointing at a missing volume: backups newest first
//! (dependents before their bases); per backup, its manifest first — from then on it is
//! no longer committed, and nothing reads its volumes — then its volumes. A run stopped
//! between the two leaves volumes that no manifest claims: the catalog lists them as
//! orphans (so do clean-up and verify), and the next deletion run removes them once they
//! are older than the policy's minimum age, which they are (the backup was).
//!
//! Credentials without `s3:DeleteObject` (a backup host whose IAM policy only writes)
//! are not an error: the deletions stay pending, reported as waiting for delete
//! permission, and a run with other credentials deletes them.

mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use zib_planner::cost::{early_deletion_fee, monthly_storage};
use zib_planner::{plan_pruning, Policy, PriceTable, UnixTime, DAY_SECS};
use zib_storage_backend::{
    BucketProtection, DefaultRetention, Error as StorageError, ObjectKey, ObjectLock,
    RetentionMode, Versioning,
};

use self::rules::{Facts, Verdict};
use crate::catalog::planning::{engine_backup_id, planner_catalog};
use crate::catalog::{read_catalog, Catalog, CatalogBackup};
use crate::clock::unix_seconds;
use crate::context::Repo;
use crate::error::{Error, Result};
use crate::format::layout::ObjectRole;
use crate::format::records::BackupKind;
use crate::ids::{BackupId, DatasetId, RestoreJobId};
use crate::state::lock::lock_dataset;

/// How superseded backups are deleted.
///
/// [`Default`]: the default policy (180-day minimum age, 30-day grace, confirmation above
/// 10 % of vanished data, one restore point kept) and AWS us-east-1 prices, without
/// confirmation, failing at once when another run holds the dataset's lock.
#[derive(Debug, Clone, Default)]
pub struct DeletionOptions {
    /// The rules: which restore points are kept, minimum age, grace period, how much
    /// vanished data needs a confirmation. Use the policy the backups run with.
    pub policy: Policy,
    /// Prices for what the deletions save and the early-deletion fees.
    pub prices: PriceTable,
    /// Delete restore points that lost more than the policy's `max_vanished_fraction` of
    /// their data by the newest snapshot (the CLI's `zib consolidate --confirm`). Such a
    /// loss is also what ransomware, a mistaken `rm -rf` or a failing sync looks like:
    /// confirm only when the data went away on purpose. Every other rule still applies.
    pub confirm: bool,
    /// When a backup of the dataset holds its lock on this host: wait for it (`true`) or
    /// fail at once (`false`).
    pub wait_for_lock: bool,
}

/// Why a superseded backup is not deleted yet.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitingFor {
    /// It is younger than the policy's minimum age (Deep Archive bills 180 days anyway).
    MinimumAge {
        /// When it reaches that age.
        until: SystemTime,
    },
    /// The full that supersedes it has not been committed for the grace period yet: old
    /// restore points outlive a mistake in the live data long enough to be noticed.
    GracePeriod {
        /// That full.
        full: BackupId,
        /// When the grace period ends.
        until: SystemTime,
    },
    /// No backup has committed since the full that supersedes it: a fresh full is
    /// trusted only once a later backup succeeded.
    LaterBackup {
        /// The commit time a later backup must follow.
        after: SystemTime,
    },
    /// The planner's own date for it, later than the engine's rules would say.
    Schedule {
        /// Not before then.
        until: SystemTime,
    },
    /// More than the policy's fraction of a restore point's data is gone from the newest
    /// snapshot (or it cannot be measured): only a confirmation deletes it.
    Confirmation {
        /// The largest fraction lost, when it could be measured.
        vanished_fraction: Option<f64>,
        /// The restore points deleting it takes away: itself, and those restorable only
        /// through it.
        restore_points: Vec<BackupId>,
    },
    /// These credentials may not delete (`s3:DeleteObject` refused): an admin run with
    /// other credentials deletes it.
    DeletePermission,
    /// A restore job on this host needs it.
    Restore {
        /// The job.
        job: RestoreJobId,
    },
}

impl std::fmt::Display for WaitingFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let date = |time: &SystemTime| {
            crate::format::layout::compact_utc(
                time.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| {
                        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
                    }),
            )
        };
        match self {
            Self::MinimumAge { until } => {
                write!(
                    f,
                    "younger than the policy's minimum age until {}",
                    date(until)
                )
            }
            Self::GracePeriod { full, until } => write!(
                f,
                "kept for the grace period after full {full} committed, until {}",
                date(until)
            ),
            Self::LaterBackup { after } => write!(
                f,
                "kept until a backup commits after the fresh full of {} succeeded",
                date(after)
            ),
            Self::Schedule { until } => write!(f, "not before {}", date(until)),
            Self::Confirmation {
                vanished_fraction,
                restore_points,
            } => {
                match vanished_fraction {
                    Some(fraction) => write!(
                        f,
                        "{:.0} % of the data of restore point(s) ",
                        fraction * 100.0
                    )?,
                    None => write!(
                        f,
                        "an unknown share (sizes not recorded) of the data of restore point(s) "
                    )?,
                }
                let points: Vec<String> = restore_points.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{} is gone from the newest snapshot; that can be ransomware, a mistaken \
                     deletion or a failing sync: check the live data, and delete only with \
                     confirmation (`zib consolidate --confirm`)",
                    points.join(", ")
                )
            }
            Self::DeletePermission => f.write_str(
                "these credentials may not delete (s3:DeleteObject refused); run `zib \
                 consolidate` with credentials that may",
            ),
            Self::Restore { job } => write!(f, "restore job {job} on this host needs it"),
        }
    }
}

/// A backup that was deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedBackup {
    /// Its id.
    pub backup: BackupId,
    /// `dataset@snapshot` as it was backed up.
    pub snapshot: String,
    /// A full backup (else an incremental).
    pub full: bool,
    /// When it had committed (Unix seconds).
    pub committed_at: i64,
    /// Objects deleted: its manifest and volumes.
    pub objects: u64,
    /// Bytes its volumes held.
    pub stored_bytes: u64,
    /// What storing it cost per month.
    pub storage_per_month: f64,
    /// The minimum-duration fee paid for deleting it before the archive's minimum
    /// storage duration (zero at the default 180-day minimum age).
    pub early_deletion_fee: f64,
    /// The largest fraction of data lost from the restore points deleted with it, when
    /// it could be measured.
    pub vanished_fraction: Option<f64>,
    /// Why it could go (the planner's words).
    pub reason: String,
}

/// A superseded backup that is not deleted yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDeletion {
    /// Its id.
    pub backup: BackupId,
    /// `dataset@snapshot` as it was backed up.
    pub snapshot: String,
    /// Bytes its volumes hold.
    pub stored_bytes: u64,
    /// What keeping it costs per month meanwhile.
    pub storage_per_month: f64,
    /// What it waits for first.
    pub waiting_for: WaitingFor,
    /// Whether it will need a confirmation once nothing else holds it back.
    pub needs_confirmation: bool,
    /// The largest fraction of data lost from the restore points it would take with it,
    /// when known.
    pub vanished_fraction: Option<f64>,
    /// Why it will go (the planner's words).
    pub reason: String,
}

/// What a deletion run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeletionReport {
    /// Backups deleted, in the order they went (newest first).
    pub deleted: Vec<DeletedBackup>,
    /// Superseded backups still kept, and why.
    pub pending: Vec<PendingDeletion>,
    /// Volumes of backups whose deletion an earlier run left half done (their manifest
    /// gone), removed by this run.
    pub finished: Vec<ObjectKey>,
    /// Storage no longer billed per month from now on: what the deleted backups cost —
    /// zero when the bucket keeps deleted data (see `bucket` and `notes`).
    pub saved_per_month: f64,
    /// Early-deletion fees paid for the deleted backups.
    pub early_deletion_fees: f64,
    /// What the bucket does with deleted objects, when it was asked (there was something
    /// to delete) and could tell.
    pub bucket: Option<BucketProtection>,
    /// What the user should know: a versioned or locked bucket, missing permissions,
    /// half-finished deletions.
    pub notes: Vec<String>,
    /// Set when the run stopped early on an error (after a backup, which committed
    /// anyway); what was deleted before stays deleted, and the next run goes on.
    pub stopped: Option<String>,
}

impl DeletionReport {
    /// The report of a deletion run that failed before or while deleting.
    pub(crate) fn stopped_by(error: &Error) -> Self {
        Self {
            stopped: Some(format!(
                "deleting superseded backups stopped: {error}; the backup itself committed, \
                 and the next run goes on"
            )),
            ..Self::default()
        }
    }
}

/// Deletes the superseded backups of the dataset backed up as `dataset_name` that are
/// due, holding the dataset's lock on this host (an admin run, or a consolidation after
/// its backup released the lock).
///
/// # Errors
///
/// [`Error::UnknownDataset`]; [`Error::Locked`]; storage errors other than a refused
/// delete (what was deleted before stays deleted; running again goes on); planner errors
/// for an invalid policy or price table.
pub(crate) async fn delete_superseded(
    repository: &Repo,
    dataset_name: &str,
    options: &DeletionOptions,
) -> Result<DeletionReport> {
    let files = repository.state().dataset(repository.id(), dataset_name);
    let _lock = lock_dataset(&files.lock, dataset_name, options.wait_for_lock).await?;
    let catalog = read_catalog(repository).await?;
    let dataset = catalog
        .dataset_named(dataset_name)
        .or_else(|| dataset_name.parse().ok())
        .filter(|id| !catalog.backups(*id).is_empty())
        .ok_or_else(|| Error::UnknownDataset {
            dataset: dataset_name.to_owned(),
        })?;
    delete_due_in(repository, &catalog, dataset, options).await
}

/// Deletes the superseded backups of `dataset` that are due. The caller holds the
/// dataset's lock (a backup run, after its commit).
///
/// # Errors
///
/// As [`delete_superseded`], without the lock's.
pub(crate) async fn delete_due(
    repository: &Repo,
    dataset: DatasetId,
    options: &DeletionOptions,
) -> Result<DeletionReport> {
    let catalog = read_catalog(repository).await?;
    delete_due_in(repository, &catalog, dataset, options).await
}

async fn delete_due_in(
    repository: &Repo,
    catalog: &Catalog,
    dataset: DatasetId,
    options: &DeletionOptions,
) -> Result<DeletionReport> {
    let backups = catalog.backups(dataset);
    let now = unix_seconds(repository.clock());
    let planned = plan_pruning(
        &planner_catalog(backups)?,
        &options.policy,
        &options.prices,
        UnixTime(now),
    )?;
    let leftovers =
        interrupted_deletions(catalog, repository.prefix(), dataset, &options.policy, now);
    let mut report = DeletionReport::default();
    if planned.is_empty() && leftovers.is_empty() {
        return Ok(report);
    }
    report.bucket = bucket_protection(repository, &mut report.notes).await;
    let mut facts = Facts::new(
        backups,
        &options.policy,
        unfinished_restores(repository).await?,
        now,
    );
    let mut refused = false;
    for deletion in &planned {
        let id = engine_backup_id(&deletion.backup)?;
        let Some(backup) = backups.iter().find(|entry| entry.manifest.backup_id == id) else {
            continue;
        };
        let money = Money::of(backup, &options.prices, now);
        let pending = |waiting_for, needs_confirmation, vanished_fraction| PendingDeletion {
            backup: id,
            snapshot: snapshot_name(backup),
            stored_bytes: money.bytes,
            storage_per_month: money.per_month,
            waiting_for,
            needs_confirmation,
            vanished_fraction,
            reason: deletion.reason.clone(),
        };
        let verdict = facts.verdict(deletion, id, options.confirm);
        if refused {
            let (needs_confirmation, vanished_fraction) = match verdict {
                Verdict::Wait {
                    needs_confirmation,
                    vanished_fraction,
                    ..
                } => (needs_confirmation, vanished_fraction),
                _ => (false, None),
            };
            report.pending.push(pending(
                WaitingFor::DeletePermission,
                needs_confirmation,
                vanished_fraction,
            ));
            continue;
        }
        match verdict {
            Verdict::Kept => {
                tracing::warn!(backup = %id, "the planner listed a backup a kept restore point needs; keeping it");
                report.notes.push(format!(
                    "backup {id} was listed for deletion, but a kept restore point needs it: \
                     kept (please report this)"
                ));
            }
            Verdict::Wait {
                waiting_for,
                needs_confirmation,
                vanished_fraction,
            } => report
                .pending
                .push(pending(waiting_for, needs_confirmation, vanished_fraction)),
            Verdict::Delete { vanished_fraction } => {
                let deleted = DeletedBackup {
                    backup: id,
                    snapshot: snapshot_name(backup),
                    full: matches!(backup.manifest.kind, BackupKind::Full),
                    committed_at: backup.manifest.committed_at,
                    objects: money.objects,
                    stored_bytes: money.bytes,
                    storage_per_month: money.per_month,
                    early_deletion_fee: money.early_deletion_fee,
                    vanished_fraction,
                    reason: deletion.reason.clone(),
                };
                match delete_backup(repository, backup).await {
                    Removal::Done => {
                        facts.mark_deleted(id);
                        tracing::info!(backup = %id, snapshot = %snapshot_name(backup), "deleted a superseded backup");
                        report.deleted.push(deleted);
                    }
                    Removal::Stopped {
                        manifest_gone,
                        error,
                    } => {
                        // What was deleted stays deleted and is reported as such; the
                        // next run re-derives the rest from the bucket.
                        if manifest_gone {
                            report.deleted.push(deleted);
                            report.notes.push(format!(
                                "backup {id} is deleted (its manifest is gone) but some of its                                  volumes are left: the next deletion run removes them"
                            ));
                        }
                        report.stopped = Some(format!(
                            "deleting superseded backups stopped: {error}; what was deleted                              stays deleted, and the next run goes on"
                        ));
                        break;
                    }
                    Removal::Refused { manifest_gone } => {
                        refused = true;
                        report.notes.push(refused_note());
                        if manifest_gone {
                            facts.mark_deleted(id);
                            report.notes.push(format!(
                                "the manifest of backup {id} was deleted but its volumes could \
                                 not be: they are orphan volumes now, which a run allowed to \
                                 delete removes"
                            ));
                        }
                        report.pending.push(pending(
                            WaitingFor::DeletePermission,
                            false,
                            vanished_fraction,
                        ));
                    }
                }
            }
        }
    }
    if !refused && report.stopped.is_none() {
        for key in leftovers {
            match repository.backend().delete(&key).await {
                Ok(()) => report.finished.push(key),
                Err(StorageError::PermissionDenied { .. }) => {
                    report.notes.push(refused_note());
                    break;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    let keeps_deleted_data = report
        .bucket
        .is_some_and(|bucket| bucket.keeps_deleted_data());
    report.saved_per_month = if keeps_deleted_data {
        0.0
    } else {
        report.deleted.iter().map(|d| d.storage_per_month).sum()
    };
    report.early_deletion_fees = report.deleted.iter().map(|d| d.early_deletion_fee).sum();
    Ok(report)
}

/// What deleting one backup saves and costs.
struct Money {
    objects: u64,
    bytes: u64,
    per_month: f64,
    early_deletion_fee: f64,
}

impl Money {
    fn of(backup: &CatalogBackup, prices: &PriceTable, now: i64) -> Self {
        let bytes = backup
            .volume_sizes
            .iter()
            .fold(0u64, |sum, &size| sum.saturating_add(size));
        let objects =
            u64::from(backup.manifest.volume_count).max(backup.volume_sizes.len() as u64) + 1;
        let age_days = now.saturating_sub(backup.manifest.committed_at) as f64 / DAY_SECS as f64;
        Self {
            objects,
            bytes,
            per_month: monthly_storage(prices, bytes, objects).total(),
            early_deletion_fee: early_deletion_fee(prices, bytes, objects, age_days),
        }
    }
}

/// How far deleting a backup got.
enum Removal {
    /// Manifest and volumes are gone.
    Done,
    /// The storage refused a delete (no `s3:DeleteObject`); `manifest_gone` when the
    /// refusal came after the manifest was deleted.
    Refused { manifest_gone: bool },
    /// Another storage error stopped it; `manifest_gone` as above.
    Stopped { manifest_gone: bool, error: Error },
}

/// Deletes a backup: its manifest first (from then on it is not committed: a stop here
/// leaves only volumes no manifest claims), then its volumes.
async fn delete_backup(repository: &Repo, backup: &CatalogBackup) -> Removal {
    let (dataset, id) = (backup.manifest.dataset_id, backup.manifest.backup_id);
    let manifest = repository.key(&ObjectRole::Manifest {
        dataset,
        backup: id,
    });
    let volumes = backup
        .manifest
        .volume_count
        .max(u32::try_from(backup.volume_sizes.len()).unwrap_or(u32::MAX));
    let mut keys = vec![manifest];
    for index in 0..volumes {
        keys.push(repository.key(&ObjectRole::Volume {
            dataset,
            backup: id,
            index,
        }));
    }
    for (step, key) in keys.into_iter().enumerate() {
        let result = match key {
            Ok(key) => repository.backend().delete(&key).await.map_err(Error::from),
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {}
            Err(Error::Storage(StorageError::PermissionDenied { .. })) => {
                return Removal::Refused {
                    manifest_gone: step > 0,
                }
            }
            Err(error) => {
                return Removal::Stopped {
                    manifest_gone: step > 0,
                    error,
                }
            }
        }
    }
    Removal::Done
}

/// Volumes of `dataset` that no manifest claims, of backups whose every volume is older
/// than the policy's minimum age and that no upload is still writing: what a deletion
/// stopped between a manifest and its volumes left (a backup this old is never still
/// being written; one that never committed is a leftover clean-up would remove anyway).
fn interrupted_deletions(
    catalog: &Catalog,
    prefix: &str,
    dataset: DatasetId,
    policy: &Policy,
    now: i64,
) -> Vec<ObjectKey> {
    let volume_of = |key: &ObjectKey| -> Option<(DatasetId, BackupId)> {
        match ObjectRole::parse(key.as_str().strip_prefix(prefix)?) {
            Some(ObjectRole::Volume {
                dataset, backup, ..
            }) => Some((dataset, backup)),
            _ => None,
        }
    };
    let busy: BTreeSet<BackupId> = catalog
        .leftovers
        .incomplete_uploads
        .iter()
        .filter_map(|upload| volume_of(&upload.key))
        .map(|(_, backup)| backup)
        .collect();
    let cutoff = rules::at(now.saturating_sub(i64::from(policy.min_age_days) * DAY_SECS));
    let mut groups: BTreeMap<BackupId, (bool, Vec<ObjectKey>)> = BTreeMap::new();
    for volume in &catalog.leftovers.orphan_volumes {
        let Some((volume_dataset, backup)) = volume_of(&volume.key) else {
            continue;
        };
        if volume_dataset != dataset {
            continue;
        }
        let group = groups.entry(backup).or_insert((true, Vec::new()));
        group.0 &= volume.written <= cutoff;
        group.1.push(volume.key.clone());
    }
    groups
        .into_iter()
        .filter(|(backup, (old, _))| *old && !busy.contains(backup))
        .flat_map(|(_, (_, keys))| keys)
        .collect()
}

/// The unfinished restore jobs of this host, with the backups their chains need.
async fn unfinished_restores(repository: &Repo) -> Result<Vec<(RestoreJobId, Vec<BackupId>)>> {
    Ok(crate::restore::jobs(repository)
        .await?
        .into_iter()
        .filter(|job| job.finished_at.is_none())
        .map(|job| (job.id, job.chain))
        .collect())
}

/// What the bucket does with deleted objects; a note for the user when deleting saves
/// less than it seems, or when it cannot tell.
async fn bucket_protection(repository: &Repo, notes: &mut Vec<String>) -> Option<BucketProtection> {
    match repository.backend().bucket_protection().await {
        Ok(protection) => {
            notes.extend(protection_note(&protection));
            Some(protection)
        }
        Err(StorageError::PermissionDenied { .. }) => {
            notes.push(
                "could not tell whether the bucket keeps deleted objects (versioning, Object \
                 Lock): allow s3:GetBucketVersioning and s3:GetBucketObjectLockConfiguration \
                 to know what deleting saves"
                    .to_owned(),
            );
            None
        }
        Err(error) => {
            notes.push(format!(
                "could not tell whether the bucket keeps deleted objects: {error}"
            ));
            None
        }
    }
}

/// What deleting does and does not save in a bucket with these settings; `None` when it
/// saves what it seems to.
pub(crate) fn protection_note(protection: &BucketProtection) -> Option<String> {
    let mut note = match protection.versioning {
        Versioning::Unversioned if protection.object_lock == ObjectLock::Disabled => return None,
        Versioning::Unversioned | Versioning::Enabled => {
            String::from("the bucket keeps versions (versioning is enabled)")
        }
        Versioning::Suspended => String::from(
            "the bucket keeps the versions written while versioning was enabled (it is \
             suspended now)",
        ),
    };
    note.push_str(
        ": deleting a backup removes it from the catalog, but each object's bytes stay \
         stored — and billed — as a noncurrent version until a lifecycle rule expires \
         noncurrent versions (NoncurrentVersionExpiration) or they are deleted by version \
         id; this saves nothing until then (noncurrent Deep Archive versions removed \
         before 180 days still pay the early-deletion fee)",
    );
    if let ObjectLock::Enabled { default_retention } = protection.object_lock {
        note.push_str("; Object Lock is enabled");
        match default_retention {
            Some(DefaultRetention { mode, days }) => note.push_str(&format!(
                " with a default retention of {days} days in {} mode: no version can be \
                 removed before {days} days after it was written{}",
                match mode {
                    RetentionMode::Governance => "GOVERNANCE",
                    RetentionMode::Compliance => "COMPLIANCE",
                },
                match mode {
                    RetentionMode::Governance => {
                        " (except by a user allowed s3:BypassGovernanceRetention)"
                    }
                    RetentionMode::Compliance => ", by anyone, the account's root user included",
                }
            )),
            None => note.push_str(
                " without a default retention: versions that carry a retention date or a \
                 legal hold cannot be removed before it ends",
            ),
        }
        note.push_str(", so their storage is paid until then whatever is deleted");
    }
    Some(note)
}

fn refused_note() -> String {
    "deleting was refused (403): these credentials lack s3:DeleteObject on the repository's \
     objects. The backups stay, pending; run `zib consolidate` with credentials that may \
     delete (docs/PERMISSIONS.md)"
        .to_owned()
}

fn snapshot_name(backup: &CatalogBackup) -> String {
    format!(
        "{}@{}",
        backup.manifest.dataset_name, backup.manifest.snapshot_name
    )
}
