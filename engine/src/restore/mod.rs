//! Restoring: a backup's chain brought back from Deep Archive into a dataset, as a job
//! that each run advances — run it daily (cron, a systemd timer) until it is done.
//!
//! A job is created once ([`Repository::create_restore`](crate::Repository::create_restore))
//! with its inputs: the restore point and its chain, the target (which must not exist),
//! the tier, the monthly download budget, the account's free egress, the link's rate and
//! a staging directory. Each run ([`Repository::advance_restore`](crate::Repository::advance_restore))
//! re-plans what is left from now with the planner's `plan_restore` — so a change of the
//! schedule's rules needs no migration — and goes as far as it can:
//!
//! 1. receive, in chain order, every stream whose volumes are all staged;
//! 2. ask the bucket (HEAD) where each remaining volume stands: archived, thawing,
//!    restored (until when);
//! 3. request restores (`RestoreObject`, the plan's tier and `Days`) for the thaw waves
//!    due now — never the whole chain at once, since restored copies are billed at S3
//!    Standard per day — and again for a copy that would expire before its download;
//! 4. download the volumes whose copies are ready, in chain order, while this month's
//!    downloads (all jobs', from the state directory's ledger) stay within the budget
//!    and the staging directory has room; each is resumed where an earlier run stopped
//!    and verified as it arrives, before it counts as staged;
//! 5. beside the downloads, receive each stream whose missing volumes this run
//!    downloads, starting once its first volume is staged (when the staging space runs
//!    short, volumes the receive has read are deleted if that makes the room); then stop,
//!    saying what it waits for (a thaw, next month's budget, the next wave) and until
//!    when.
//!
//! Streams are received in chain order, the target left read-only until the chain's
//! last stream is in (so a file browser between two months cannot make the next
//! incremental fail), and each stream's volumes stay staged until its receive completed
//! (a killed receive is discarded by the file system; its volumes are not paid for
//! again) — unless the staging space ran short and they were deleted once read. A
//! stream's manifest hashes are checked before its last bytes reach the receive. Every
//! step is written to the job's file before the next begins: a run killed at any instant
//! downloads again at most the volume in flight (and the volumes of the stream in
//! receive that a short staging space made it delete) and never feeds a byte twice into
//! a receive.
//!
//! [`chain`] is the short path for volumes that are readable now (a local directory).

mod chain;
pub(crate) mod job;
mod run;
mod staging;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zib_planner::{PriceTable, RestorePlan, Tier, GB};
use zib_snapshot_source::{DatasetName, SnapshotSource, SourceKind};

pub(crate) use self::chain::receive_readable_chain;
use self::job::{Job, JobFiles};
use crate::catalog::read_catalog;
use crate::clock::unix_seconds;
use crate::context::Repo;
use crate::error::{Error, Result};
use crate::ids::{BackupId, RestoreJobId};
use crate::state::lock::lock_dataset;

pub(crate) use self::run::advance;

/// A restore to create: what, where, and how fast it may go.
#[derive(Debug, Clone)]
pub struct NewRestore {
    /// The dataset, by the name it was backed up under (as the catalog shows it).
    pub dataset: String,
    /// The backup to restore; `None` for the dataset's newest.
    pub restore_point: Option<BackupId>,
    /// Where to receive the chain: a ZFS dataset that does not exist yet (its parent
    /// must), or a BTRFS directory.
    pub target: DatasetName,
    /// Where verified volumes wait for their stream's receive: needs room for the
    /// largest stream that spans months (the plan says how much).
    pub staging_dir: PathBuf,
    /// The retrieval tier (Bulk, the cheapest, by default).
    pub tier: Tier,
    /// Bytes this host may download per UTC calendar month, all restores together
    /// (default 100 GB = 100·2^30, AWS's free egress).
    pub monthly_budget: u64,
    /// The account's free egress per month (default 100 GB): the plan prices what goes
    /// beyond it.
    pub free_egress_per_month: u64,
    /// The link's download rate in bytes per second (default 5 MiB/s), for the schedule.
    pub download_bytes_per_sec: u64,
    /// Prices for the plan's cost figures.
    pub prices: PriceTable,
}

impl NewRestore {
    /// A restore of `dataset`'s newest backup into `target`, staging in `staging_dir`,
    /// with the defaults above.
    pub fn new(
        dataset: impl Into<String>,
        target: DatasetName,
        staging_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            dataset: dataset.into(),
            restore_point: None,
            target,
            staging_dir: staging_dir.into(),
            tier: Tier::Bulk,
            monthly_budget: 100 * GB,
            free_egress_per_month: 100 * GB,
            download_bytes_per_sec: 5 << 20,
            prices: PriceTable::default(),
        }
    }
}

/// A restore job as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreJob {
    /// Its id (local to this host).
    pub id: RestoreJobId,
    /// The dataset restored, by the name it was backed up under.
    pub dataset: String,
    /// The backup restored.
    pub restore_point: BackupId,
    /// The backups received in order, full first.
    pub chain: Vec<BackupId>,
    /// Where the chain is received.
    pub target: DatasetName,
    /// Where volumes are staged.
    pub staging_dir: PathBuf,
    /// Tier, budget, free egress and link rate, as given.
    pub tier: Tier,
    /// Bytes per month, all restores together.
    pub monthly_budget: u64,
    /// The account's free egress per month.
    pub free_egress_per_month: u64,
    /// The link's rate, bytes per second.
    pub download_bytes_per_sec: u64,
    /// When it was created.
    pub created_at: SystemTime,
    /// Streams received so far.
    pub received: usize,
    /// Volumes downloaded, verified and waiting for their stream's receive.
    pub staged_volumes: usize,
    /// When the last stream was received; `None` while it runs.
    pub finished_at: Option<SystemTime>,
    /// A restore drill ([`Repository::drill`](crate::Repository::drill)): its target and
    /// staged volumes are removed when it ends, passed or failed.
    pub drill: bool,
}

/// What one run of a restore did, and where the job stands.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreStatus {
    /// The job after this run.
    pub job: RestoreJob,
    /// Restore requests sent by this run.
    pub restores_requested: usize,
    /// Volumes downloaded and verified by this run.
    pub volumes_downloaded: usize,
    /// Their bytes.
    pub bytes_downloaded: u64,
    /// Snapshots received by this run (`dataset@snapshot` as backed up).
    pub received: Vec<String>,
    /// This month's downloads, all restores of this host together, after this run.
    pub month_downloaded: u64,
    /// Done, or what it waits for.
    pub state: RestoreState,
    /// The schedule of what is left (`None` when done).
    pub plan: Option<RestorePlan>,
}

/// Whether a restore is done, and if not, what it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreState {
    /// Every stream is received; the target is ready.
    Done,
    /// Nothing more can be done now: run again later (daily is right).
    Waiting {
        /// What it waits for.
        reason: WaitReason,
        /// When that is expected to pass (a run before then does nothing more).
        until: Option<SystemTime>,
    },
}

/// What a restore waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// Restores were requested and the archive has not thawed them yet (Bulk: up to
    /// 48 hours).
    Thaw {
        /// Volumes still thawing.
        volumes: usize,
        /// When the oldest of those requests was made.
        since: SystemTime,
    },
    /// This month's download budget holds no more volumes (`downloaded` of `budget`
    /// used); the next waits for the next month.
    Budget {
        /// Bytes downloaded this month, all restores together.
        downloaded: u64,
        /// The monthly budget.
        budget: u64,
    },
    /// The next thaw wave is scheduled later (its restores are not requested yet, so
    /// restored copies are not billed while they would wait).
    NextWave,
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Thaw { volumes, .. } => write!(f, "{volumes} volume(s) thawing in the archive"),
            Self::Budget { downloaded, budget } => write!(
                f,
                "this month's download budget holds no more volumes ({} of {} bytes used)",
                downloaded, budget
            ),
            Self::NextWave => f.write_str("the next thaw wave is scheduled later"),
        }
    }
}

pub(crate) fn system_time(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

pub(crate) fn target_of(job: &Job) -> Result<DatasetName> {
    Ok(if job.target_is_zfs {
        DatasetName::zfs(&job.target)?
    } else {
        DatasetName::path(&job.target)?
    })
}

/// The public view of a job.
pub(crate) fn view(job: &Job) -> Result<RestoreJob> {
    Ok(RestoreJob {
        id: job.id,
        dataset: job.dataset_name.clone(),
        restore_point: job.restore_point,
        chain: job.chain.clone(),
        target: target_of(job)?,
        staging_dir: job.staging_dir.clone(),
        tier: job.tier,
        monthly_budget: job.monthly_budget,
        free_egress_per_month: job.free_egress_per_month,
        download_bytes_per_sec: job.download_bytes_per_sec,
        created_at: system_time(job.created_at),
        received: job.received.len(),
        staged_volumes: job.staged.len(),
        finished_at: job.finished_at.map(system_time),
        drill: job.drill,
    })
}

/// Creates a restore job and plans it (see [`crate::Repository::create_restore`]).
pub(crate) async fn create(
    repository: &Repo,
    request: &NewRestore,
    source: &dyn SnapshotSource,
) -> Result<(RestoreJob, RestorePlan)> {
    create_job(repository, request, source, false).await
}

/// Creates a restore job; a `drill` is one whose target is thrown away when it ends.
pub(crate) async fn create_job(
    repository: &Repo,
    request: &NewRestore,
    source: &dyn SnapshotSource,
    drill: bool,
) -> Result<(RestoreJob, RestorePlan)> {
    let catalog = read_catalog(repository).await?;
    let dataset_id = catalog
        .dataset_named(&request.dataset)
        .or_else(|| request.dataset.parse().ok())
        .filter(|id| !catalog.backups(*id).is_empty())
        .ok_or_else(|| Error::UnknownDataset {
            dataset: request.dataset.clone(),
        })?;
    let backups = catalog.backups(dataset_id);
    let restore_point = match request.restore_point {
        Some(backup) => backup,
        None => backups
            .last()
            .map(|backup| backup.manifest.backup_id)
            .ok_or_else(|| Error::UnknownDataset {
                dataset: request.dataset.clone(),
            })?,
    };
    let chain: Vec<BackupId> = catalog
        .chain(dataset_id, restore_point)?
        .iter()
        .map(|backup| backup.manifest.backup_id)
        .collect();
    ensure_target_absent(source, &request.target).await?;
    if request.monthly_budget == 0 {
        return Err(Error::InvalidInput(
            "a monthly download budget of 0 would never download anything".into(),
        ));
    }
    let id = RestoreJobId::generate(&ring::rand::SystemRandom::new())?;
    let job = Job {
        id,
        repository_id: repository.id(),
        dataset_id,
        dataset_name: request.dataset.clone(),
        restore_point,
        chain,
        target: request.target.as_str().to_owned(),
        target_is_zfs: request.target.is_zfs(),
        staging_dir: request.staging_dir.clone(),
        tier: request.tier,
        monthly_budget: request.monthly_budget,
        free_egress_per_month: request.free_egress_per_month,
        download_bytes_per_sec: request.download_bytes_per_sec,
        prices_json: serde_json::to_string(&request.prices).map_err(|error| {
            Error::Internal(format!("could not encode the price table: {error}"))
        })?,
        created_at: unix_seconds(repository.clock()),
        requested: Default::default(),
        staged: Default::default(),
        received: Vec::new(),
        target_created: false,
        finished_at: None,
        drill,
    };
    // The plan first: a restore the planner refuses (a volume above the budget, a link
    // too slow, too little staging) is not created.
    let plan = run::plan_from_scratch(repository, &job, &catalog).await?;
    let files = JobFiles::of(repository.state(), repository.id(), id);
    job::save(&files.file, &job).await?;
    Ok((view(&job)?, plan))
}

/// Fails when `target` exists (a restore never receives into something that is there).
async fn ensure_target_absent(source: &dyn SnapshotSource, target: &DatasetName) -> Result<()> {
    match source.list_snapshots(target).await {
        Err(zib_snapshot_source::Error::DatasetNotFound { .. }) => Ok(()),
        // A BTRFS target is a directory of received snapshots: an empty one may exist.
        Ok(snapshots) if snapshots.is_empty() && source.kind() == SourceKind::Btrfs => Ok(()),
        Ok(_) => Err(Error::TargetExists {
            target: target.to_string(),
        }),
        Err(error) => Err(error.into()),
    }
}

/// Every job of this host for the repository.
pub(crate) async fn jobs(repository: &Repo) -> Result<Vec<RestoreJob>> {
    let mut out = Vec::new();
    for id in job::job_ids(repository.state(), repository.id()).await? {
        let files = JobFiles::of(repository.state(), repository.id(), id);
        if let Some(job) = job::load(&files.file).await? {
            out.push(view(&job)?);
        }
    }
    Ok(out)
}

/// Cancels a job: its staged files, the target it created (with what was received
/// into it) and its state go; nothing else is touched.
pub(crate) async fn cancel(
    repository: &Repo,
    id: RestoreJobId,
    source: &dyn SnapshotSource,
) -> Result<()> {
    let files = JobFiles::of(repository.state(), repository.id(), id);
    let _lock = lock_dataset(&files.lock, &format!("restore job {id}"), false).await?;
    let job = job::load(&files.file)
        .await?
        .ok_or(Error::NoSuchRestore { id })?;
    if job.target_created && job.finished_at.is_none() {
        let target = target_of(&job)?;
        match source.discard_target(&target).await {
            Ok(()) | Err(zib_snapshot_source::Error::DatasetNotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let staging = job.staging();
    crate::state::off_the_runtime(&staging, "remove the staged volumes", |dir| {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::LocalState {
                path: dir.to_owned(),
                action: "remove the staged volumes",
                source,
            }),
        }
    })
    .await?;
    job::remove(&files.file).await?;
    let _ = tokio::fs::remove_file(&files.lock).await;
    Ok(())
}
