//! The restore drill: a restore point's chain restored for real into a throwaway
//! target, through the restore job — the only way to learn, before a disaster, that a
//! restore works end to end (keyring, thaw, download, decryption, `zfs receive`).
//!
//! A drill IS a restore job, marked as a drill when it is created
//! (`restore::create_job(…, drill: true)`): the same thaw requests, the same downloads
//! counted in the state directory's egress ledger, the same verification of every
//! volume, of each stream's manifest hashes and of each received snapshot's identity.
//! On Deep Archive it spans several runs (the thaw takes up to 48 hours): each call of
//! [`Repository::drill`](crate::Repository::drill) — or of `advance_restore` on the
//! drill's job, which comes here too — advances it as far as it can go. When it ends,
//! passed or failed, its target and staged volumes are removed and its job is deleted;
//! a run that is merely interrupted (the storage unreachable, the process killed)
//! leaves the job for the next run, like any restore.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use zib_planner::{PriceTable, RestorePlan, Tier, UnixTime, GB};
use zib_snapshot_source::{DatasetName, SnapshotSource};

use super::report::{RestorePoint, VerifyReport};
use crate::clock::unix_seconds;
use crate::context::Repo;
use crate::error::{Error, Result};
use crate::ids::{BackupId, RestoreJobId};
use crate::progress::Progress;
use crate::restore::job::{self, JobFiles};
use crate::restore::{NewRestore, RestoreJob, RestoreState, RestoreStatus};
use crate::state::ledger::Ledger;

/// A drill to run: where, and within what egress.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    /// A throwaway target that does not exist yet (a ZFS dataset whose parent exists,
    /// or a BTRFS directory). It is destroyed when the drill ends.
    pub target: DatasetName,
    /// Where the drill's volumes are staged (in `zib-<job id>/` below it, removed when
    /// the drill ends).
    pub staging_dir: PathBuf,
    /// The restore point to drill; `None` for the smallest chain (see
    /// [`smallest_chain`]).
    pub restore_point: Option<BackupId>,
    /// The retrieval tier (Bulk, the cheapest, by default).
    pub tier: Tier,
    /// The account's free egress per UTC calendar month (default 100 GB = 100·2^30). A
    /// drill starts only when its whole chain fits in what this month has left of it
    /// after every download the state directory's ledger counts, and never downloads
    /// beyond it in any month.
    pub free_egress_per_month: u64,
    /// The link's download rate in bytes per second (default 5 MiB/s), for the schedule.
    pub download_bytes_per_sec: u64,
    /// Prices for the schedule's cost figures.
    pub prices: PriceTable,
}

impl DrillRequest {
    /// A drill of the smallest chain into `target`, staging in `staging_dir`, with the
    /// defaults above.
    pub fn new(target: DatasetName, staging_dir: impl Into<PathBuf>) -> Self {
        Self {
            target,
            staging_dir: staging_dir.into(),
            restore_point: None,
            tier: Tier::Bulk,
            free_egress_per_month: 100 * GB,
            download_bytes_per_sec: 5 << 20,
            prices: PriceTable::default(),
        }
    }
}

/// What one call of [`Repository::drill`](crate::Repository::drill) did.
#[derive(Debug)]
pub struct DrillReport {
    /// Set when this call started the drill: the restore point chosen and the restore's
    /// schedule and cost. `None` when it advanced a drill started earlier, or skipped.
    pub started: Option<DrillStart>,
    /// Where the drill stands.
    pub state: DrillState,
}

/// A drill just started.
#[derive(Debug, Clone)]
pub struct DrillStart {
    /// The restore point drilled.
    pub restore_point: RestorePoint,
    /// The restore's schedule: thaw waves, downloads per month, and cost.
    pub plan: RestorePlan,
}

/// Where a drill stands.
#[derive(Debug)]
pub enum DrillState {
    /// Under way: run [`Repository::drill`](crate::Repository::drill) again later (daily
    /// is right; on Deep Archive the thaw alone takes up to 48 hours). The status says
    /// what it waits for and until when.
    Running(Box<RestoreStatus>),
    /// The chain was restored: every volume authenticated, every stream matched its
    /// manifest's length, volume list and SHA-256, and every received snapshot has the
    /// identity its manifest names. The target and staging are removed. The status is
    /// that of the run that finished it.
    Passed(Box<RestoreStatus>),
    /// The drill found a restore that does not work; the error names what failed (a
    /// volume that does not verify, a missing volume, a receive that failed). The
    /// target and staging are removed.
    Failed {
        /// The drill's job as it ended.
        job: RestoreJob,
        /// What failed.
        error: Error,
    },
    /// No drill was started.
    Skipped(DrillSkip),
}

/// Why no drill was started.
#[derive(Debug, Clone, PartialEq)]
pub enum DrillSkip {
    /// The verify found no intact restore point to drill.
    NoRestorePoint,
    /// The chain does not fit in this month's remaining free egress.
    OverBudget {
        /// The restore point that would be drilled.
        restore_point: RestorePoint,
        /// Bytes its chain downloads.
        needed: u64,
        /// Free egress left this month (the allowance minus the ledger's count).
        remaining: u64,
        /// The monthly free egress.
        allowance: u64,
        /// When a drill of it would fit (the start of next month, whose free egress is
        /// untouched); `None` when it needs more than a whole month's allowance.
        fits_from: Option<SystemTime>,
    },
}

impl std::fmt::Display for DrillSkip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoRestorePoint => f.write_str(
                "no drill: the repository holds no intact restore point (see the verify's \
                 problems)",
            ),
            Self::OverBudget {
                restore_point,
                needed,
                remaining,
                allowance,
                fits_from,
            } => {
                write!(
                    f,
                    "no drill: restoring {restore_point} downloads {needed} bytes, and this \
                     month's free egress has {remaining} of {allowance} bytes left"
                )?;
                match fits_from {
                    Some(_) => f.write_str("; it fits from the start of next month"),
                    None => f.write_str(
                        "; it needs more than a whole month's free egress: drill a smaller \
                         restore point, or raise the allowance if paying for egress is fine",
                    ),
                }
            }
        }
    }
}

/// The restore point a drill chooses when none is named: among those the verify found
/// intact, the one whose chain downloads the fewest bytes (the cheapest proof that
/// restores work); on a tie, the longer chain (it exercises an incremental receive
/// too), then the newest.
pub fn smallest_chain(restore_points: &[RestorePoint]) -> Option<&RestorePoint> {
    restore_points.iter().min_by(|a, b| {
        a.chain_bytes
            .cmp(&b.chain_bytes)
            .then(b.chain_len.cmp(&a.chain_len))
            .then(b.committed_at.cmp(&a.committed_at))
    })
}

/// Starts a drill, or advances the one under way (see
/// [`Repository::drill`](crate::Repository::drill)).
pub(crate) async fn drill(
    repository: &Arc<Repo>,
    verified: &VerifyReport,
    request: &DrillRequest,
    source: &dyn SnapshotSource,
    progress: &dyn Progress,
) -> Result<DrillReport> {
    if let Some(id) = current_drill(repository).await? {
        progress.phase("advancing the restore drill");
        return Ok(DrillReport {
            started: None,
            state: advance(repository, id, source, progress).await?,
        });
    }
    let choice = match request.restore_point {
        Some(backup) => verified
            .restore_points
            .iter()
            .find(|point| point.backup == backup)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "backup {backup} is not an intact restore point of this repository (the \
                     verify lists those that are); drill one of them, or none to drill the \
                     smallest"
                ))
            })?,
        None => match smallest_chain(&verified.restore_points) {
            Some(point) => point,
            None => return Ok(skipped(DrillSkip::NoRestorePoint)),
        },
    };
    let month = UnixTime(unix_seconds(repository.clock())).month();
    let used = Ledger::new(repository.state().root())
        .downloaded_in(month)
        .await?;
    let allowance = request.free_egress_per_month;
    let remaining = allowance.saturating_sub(used);
    if choice.chain_bytes > remaining {
        return Ok(skipped(DrillSkip::OverBudget {
            restore_point: choice.clone(),
            needed: choice.chain_bytes,
            remaining,
            allowance,
            fits_from: (choice.chain_bytes <= allowance)
                .then(|| crate::restore::system_time(month.next().start().0)),
        }));
    }
    progress.phase(&format!("starting a restore drill of {choice}"));
    let restore = NewRestore {
        // By id: two datasets may share a name (one renamed, another created).
        dataset: choice.dataset.to_string(),
        restore_point: Some(choice.backup),
        target: request.target.clone(),
        staging_dir: request.staging_dir.clone(),
        tier: request.tier,
        // Never beyond the free egress, in any month the drill spans.
        monthly_budget: allowance,
        free_egress_per_month: allowance,
        download_bytes_per_sec: request.download_bytes_per_sec,
        prices: request.prices.clone(),
    };
    let (job, plan) = crate::restore::create_job(repository, &restore, source, true).await?;
    let state = advance(repository, job.id, source, progress).await?;
    Ok(DrillReport {
        started: Some(DrillStart {
            restore_point: choice.clone(),
            plan,
        }),
        state,
    })
}

fn skipped(reason: DrillSkip) -> DrillReport {
    DrillReport {
        started: None,
        state: DrillState::Skipped(reason),
    }
}

/// The drill job of this host for the repository, if one is under way.
async fn current_drill(repository: &Repo) -> Result<Option<RestoreJobId>> {
    for id in job::job_ids(repository.state(), repository.id()).await? {
        if is_drill(repository, id).await? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Whether job `id` is a drill.
pub(crate) async fn is_drill(repository: &Repo, id: RestoreJobId) -> Result<bool> {
    let files = JobFiles::of(repository.state(), repository.id(), id);
    Ok(job::load(&files.file).await?.is_some_and(|job| job.drill))
}

/// Advances drill `id` one run, and ends it — target, staging and job removed — when
/// it passed or failed.
pub(crate) async fn advance(
    repository: &Arc<Repo>,
    id: RestoreJobId,
    source: &dyn SnapshotSource,
    progress: &dyn Progress,
) -> Result<DrillState> {
    let files = JobFiles::of(repository.state(), repository.id(), id);
    match crate::restore::advance(repository, id, source, progress).await {
        Ok(status) if status.state == RestoreState::Done => {
            // Done means every stream was received and verified (volumes, manifest
            // hashes, snapshot identity): the drill passed. A run killed from here on
            // finds the job done again and finishes removing.
            progress.phase("restore drill passed; removing its target");
            match source.discard_target(&status.job.target).await {
                Ok(()) | Err(zib_snapshot_source::Error::DatasetNotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
            crate::restore::cancel(repository, id, source).await?;
            Ok(DrillState::Passed(Box::new(status)))
        }
        Ok(status) => Ok(DrillState::Running(Box::new(status))),
        Err(error) if ends_the_drill(&error) => {
            let job = match job::load(&files.file).await? {
                Some(job) => crate::restore::view(&job)?,
                None => return Err(error),
            };
            progress.phase("restore drill failed; removing its target and staging");
            // Removes the target the drill's receives created, its staged volumes and its
            // state: nothing of a failed drill stays.
            crate::restore::cancel(repository, id, source).await?;
            Ok(DrillState::Failed { job, error })
        }
        Err(error) => Err(error),
    }
}

/// Whether an error of a drill's run is the drill's finding (the drill ends, failed)
/// rather than an interruption the next run gets past (the storage or the state
/// directory unreachable, another run holding the job).
fn ends_the_drill(error: &Error) -> bool {
    !matches!(
        error,
        Error::Storage(_) | Error::Locked { .. } | Error::LocalState { .. }
    )
}

/// A drill advanced through `advance_restore`: the same run, seen as a restore — done
/// when it passed, its finding as the error when it failed (its target removed either
/// way).
pub(crate) async fn advance_as_restore(
    repository: &Arc<Repo>,
    id: RestoreJobId,
    source: &dyn SnapshotSource,
    progress: &dyn Progress,
) -> Result<RestoreStatus> {
    match advance(repository, id, source, progress).await? {
        DrillState::Running(status) | DrillState::Passed(status) => Ok(*status),
        DrillState::Failed { error, .. } => Err(error),
        DrillState::Skipped(_) => Err(Error::Internal("advancing a drill skipped it".to_owned())),
    }
}
