//! `zib restore`: wraps the engine's restore job. `zib restore DATASET --into TARGET`
//! creates a job and shows its schedule before it starts; a bare `zib restore` advances
//! every open job (run it daily); `--status` shows them; `--cancel` removes one.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::Context as _;
use serde_json::{json, Value};
use zib_engine::planner::{RestorePlan, Tier};
use zib_engine::snapshot_source::btrfs::BtrfsSource;
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::{
    BackupId, DatasetName, NewRestore, Repository, RestoreJob, RestoreJobId, RestoreState,
    RestoreStatus, SnapshotSource, WaitReason,
};

use super::{error_json, report_error, Outcome};
use crate::app::App;
use crate::args::{RestoreArgs, TierArg};
use crate::exit::{CliError, Exit};
use crate::progress::Reporter;
use crate::units;

pub(super) async fn restore(app: &App, args: &RestoreArgs) -> anyhow::Result<Outcome> {
    if args.status {
        return status(app).await;
    }
    if let Some(job) = &args.cancel {
        return cancel(app, job).await;
    }
    match &args.dataset {
        Some(dataset) => create(app, args, dataset).await,
        None => advance_all(app).await,
    }
}

/// The source that receives into `target`: ZFS for `pool/name`, BTRFS for a directory.
fn target_source(app: &App, target: &DatasetName) -> Box<dyn SnapshotSource> {
    if target.is_zfs() {
        Box::new(ZfsSource::new())
    } else {
        Box::new(BtrfsSource::new(app.state_dir.join("btrfs-snapshots")))
    }
}

/// The target a user typed: a ZFS dataset, or a BTRFS directory (a path).
fn parse_target(name: &str) -> Result<DatasetName, CliError> {
    if name.starts_with('/') || name.starts_with('.') {
        let path = std::path::absolute(name)
            .map_err(|error| CliError::usage(format!("could not make {name} absolute: {error}")))?;
        DatasetName::path(&path).map_err(|error| CliError::usage(error.to_string()))
    } else {
        DatasetName::zfs(name).map_err(|error| {
            CliError::usage(error.to_string()).hint(
                "name a ZFS dataset that does not exist yet (pool/restored), or a BTRFS directory by its path",
            )
        })
    }
}

async fn create(app: &App, args: &RestoreArgs, dataset: &str) -> anyhow::Result<Outcome> {
    let into = args
        .into
        .as_deref()
        .ok_or_else(|| CliError::usage("a restore needs --into TARGET"))?;
    let target = parse_target(into)?;
    let defaults = &app
        .config
        .as_ref()
        .map(|c| c.restore.clone())
        .unwrap_or_default();
    let tier = match (args.tier, defaults.tier.as_deref()) {
        (Some(TierArg::Bulk), _) => Tier::Bulk,
        (Some(TierArg::Standard), _) => Tier::Standard,
        (None, None) => Tier::Bulk,
        (None, Some(name)) => match name.to_ascii_lowercase().as_str() {
            "bulk" => Tier::Bulk,
            "standard" => Tier::Standard,
            _ => {
                return Err(CliError::usage(format!(
                    "the config's [restore] tier {name:?} is not bulk or standard"
                ))
                .into())
            }
        },
    };
    let staging = args
        .staging
        .clone()
        .or_else(|| defaults.staging_dir.clone())
        .unwrap_or_else(|| app.state_dir.join("staging"));
    std::fs::create_dir_all(&staging).with_context(|| {
        format!(
            "could not create the staging directory {}",
            staging.display()
        )
    })?;
    let (repository, _) = app.open().await?;
    let restore_point = match &args.snapshot {
        None => None,
        Some(snapshot) => Some(restore_point(&repository, dataset, snapshot).await?),
    };
    let mut request = NewRestore::new(dataset, target.clone(), &staging);
    request.restore_point = restore_point;
    request.tier = tier;
    request.prices = app.prices();
    if let Some(budget) = args
        .monthly_budget
        .map(|size| size.0)
        .or(defaults.monthly_budget.map(|size| size.0))
    {
        request.monthly_budget = budget;
    }
    if let Some(rate) = defaults.download_rate {
        request.download_bytes_per_sec = rate.0;
    }
    let source = target_source(app, &target);
    let (job, plan) = repository
        .create_restore(&request, source.as_ref())
        .await
        .with_context(|| format!("could not create the restore of {dataset} into {target}"))?;
    app.say(format!(
        "Restore {} of {dataset} into {target}: {} stream(s), {} to download.",
        job.id,
        job.chain.len(),
        units::bytes(plan.total_bytes)
    ));
    show_plan(app, &plan);
    if !args.yes && !confirm(app)? {
        repository
            .cancel_restore(job.id, source.as_ref())
            .await
            .context("could not remove the restore job that was not started")?;
        app.say("Not started; nothing was requested.");
        return Ok(Outcome::done(json!({
            "job": job_json(&job),
            "plan": plan_json(&plan),
            "started": false,
        })));
    }
    let reporter = Reporter::new(app.mode, format!("restore {}", job.id));
    let advanced = repository
        .advance_restore(job.id, source.as_ref(), &reporter)
        .await;
    reporter.finish();
    let status = advanced.map_err(|error| advance_error(&job, error))?;
    say_status(app, &status);
    Ok(Outcome {
        exit: exit_of(&status),
        json: json!({
            "job": job_json(&status.job),
            "plan": plan_json(&plan),
            "started": true,
            "run": status_json(&status),
        }),
    })
}

/// The backup of `dataset` whose snapshot is `snapshot`.
async fn restore_point(
    repository: &Repository,
    dataset: &str,
    snapshot: &str,
) -> anyhow::Result<BackupId> {
    let catalog = repository
        .catalog()
        .await
        .context("could not read the catalog")?;
    let id = catalog
        .dataset_named(dataset)
        .ok_or_else(|| zib_engine::Error::UnknownDataset {
            dataset: dataset.to_owned(),
        })?;
    let snapshot = snapshot.rsplit('@').next().unwrap_or(snapshot);
    catalog
        .backups(id)
        .iter()
        .rev()
        .find(|backup| backup.manifest.snapshot_name == snapshot)
        .map(|backup| backup.manifest.backup_id)
        .ok_or_else(|| {
            CliError::new(
                Exit::Error,
                format!("{dataset} has no backup of the snapshot {snapshot}"),
            )
            .hint(format!("`zib list {dataset}` shows its backups"))
            .into()
        })
}

/// Asks whether to start; `--yes` is needed where nobody can answer.
#[allow(clippy::print_stderr)]
fn confirm(app: &App) -> anyhow::Result<bool> {
    if app.global.json || !std::io::stdin().is_terminal() {
        return Err(CliError::usage(
            "the restore is planned but not started: there is no terminal to ask on",
        )
        .hint("add --yes to start it without asking (as scripts do)")
        .into());
    }
    eprint!("Start it? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// The schedule, a line per month with a bar of its bytes.
fn show_plan(app: &App, plan: &RestorePlan) {
    let widest = plan
        .batches
        .iter()
        .map(|batch| batch.bytes)
        .max()
        .unwrap_or(0);
    app.say(format!(
        "  {:<8} {:>11} {:>9} {:>9}  {}",
        "month", "download", "requests", "cost", ""
    ));
    for batch in &plan.batches {
        let bar = if widest > 0 {
            ((batch.bytes as f64 / widest as f64) * 30.0).round() as usize
        } else {
            0
        };
        app.say(format!(
            "  {:<8} {:>11} {:>9} {:>9}  {}",
            batch.month.to_string(),
            units::bytes(batch.bytes),
            batch.volumes.len(),
            units::money(batch.cost.total()),
            "█".repeat(bar.max(1))
        ));
    }
    app.say(format!(
        "  total {} over {:.1} month(s), {}; expected to finish by {}; staging needs up to {}",
        units::bytes(plan.total_bytes),
        plan.months,
        units::money(plan.cost.total()),
        units::date_time(units::from_unix(plan.finish.0)),
        units::bytes(plan.peak_staging_bytes)
    ));
}

async fn status(app: &App) -> anyhow::Result<Outcome> {
    let (repository, _) = app.open().await?;
    let jobs = repository
        .restore_jobs()
        .await
        .context("could not read the restore jobs")?;
    if jobs.is_empty() {
        app.say("No restore job on this host.");
    }
    for job in &jobs {
        app.say(format!(
            "{}  {} into {}: {} of {} stream(s) received, {} volume(s) staged, {}",
            job.id,
            job.dataset,
            job.target,
            job.received,
            job.chain.len(),
            job.staged_volumes,
            match job.finished_at {
                Some(at) => format!("done {}", units::date_time(at)),
                None => format!("open since {}", units::date_time(job.created_at)),
            }
        ));
    }
    Ok(Outcome::done(json!({
        "jobs": jobs.iter().map(job_json).collect::<Vec<_>>(),
    })))
}

async fn cancel(app: &App, which: &str) -> anyhow::Result<Outcome> {
    let (repository, _) = app.open().await?;
    let jobs = repository
        .restore_jobs()
        .await
        .context("could not read the restore jobs")?;
    let job = if which.is_empty() {
        let open: Vec<&RestoreJob> = jobs
            .iter()
            .filter(|job| job.finished_at.is_none())
            .collect();
        match open.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(
                    CliError::new(Exit::Error, "there is no open restore job to cancel")
                        .hint("`zib restore --status` lists the jobs")
                        .into(),
                )
            }
            _ => {
                return Err(CliError::usage(format!(
                    "{} restore jobs are open; say which: zib restore --cancel JOB",
                    open.len()
                ))
                .hint("`zib restore --status` lists them with their ids")
                .into())
            }
        }
    } else {
        let id: RestoreJobId = which.parse().map_err(|_| {
            CliError::usage(format!("{which:?} is not a restore job id"))
                .hint("`zib restore --status` lists the jobs with their ids")
        })?;
        jobs.iter()
            .find(|job| job.id == id)
            .cloned()
            .ok_or_else(|| {
                CliError::new(
                    Exit::Error,
                    format!("there is no restore job {id} on this host"),
                )
                .hint("`zib restore --status` lists the jobs")
            })?
    };
    let source = target_source(app, &job.target);
    repository
        .cancel_restore(job.id, source.as_ref())
        .await
        .with_context(|| format!("could not cancel the restore {}", job.id))?;
    app.say(format!(
        "Cancelled the restore {} of {} into {}: its staged volumes and what it received are removed.",
        job.id, job.dataset, job.target
    ));
    Ok(Outcome::done(json!({ "cancelled": job_json(&job) })))
}

/// Why a run could not advance `job` — and, when the target's side failed (its receive:
/// a full pool, a target changed meanwhile), that the downloads are kept and what to do.
fn advance_error(job: &RestoreJob, error: zib_engine::Error) -> anyhow::Error {
    let message = format!("could not advance the restore {}", job.id);
    if matches!(error, zib_engine::Error::Source(_)) {
        let hint = format!(
            "the downloaded volumes stay staged in {}: fix what the receive into {} \
             reports (out of space: free space in its pool, or grow the pool) and run \
             `zib restore` again; nothing is downloaded again",
            job.staging_dir.display(),
            job.target
        );
        return CliError::new(Exit::Error, message)
            .hint(hint)
            .caused_by(error)
            .into();
    }
    anyhow::Error::new(error).context(message)
}

/// A bare `zib restore`: every open job advanced as far as it goes now.
async fn advance_all(app: &App) -> anyhow::Result<Outcome> {
    let (repository, _) = app.open().await?;
    let jobs = repository
        .restore_jobs()
        .await
        .context("could not read the restore jobs")?;
    let open: Vec<&RestoreJob> = jobs
        .iter()
        .filter(|job| job.finished_at.is_none())
        .collect();
    if open.is_empty() {
        app.say("No restore in progress; start one with: zib restore DATASET --into TARGET");
        return Ok(Outcome::done(json!({ "jobs": [] })));
    }
    let mut results = Vec::new();
    let mut failed = 0usize;
    let mut waiting = false;
    for job in open {
        let source = target_source(app, &job.target);
        let reporter = Reporter::new(app.mode, format!("restore {}", job.id));
        let advanced = repository
            .advance_restore(job.id, source.as_ref(), &reporter)
            .await;
        reporter.finish();
        match advanced.map_err(|error| advance_error(job, error)) {
            Ok(status) => {
                say_status(app, &status);
                waiting |= exit_of(&status) == Exit::RestoreWaiting;
                results.push(status_json(&status));
            }
            Err(error) => {
                report_error(&format!("restore {}", job.id), &error);
                results.push(json!({ "job_id": job.id.to_string(), "error": error_json(&error) }));
                if failed == 0 && results.len() == 1 {
                    // A single job keeps its own exit code (a lock held is 11).
                    failed = crate::exit::exit_for(&error) as usize;
                } else {
                    failed = Exit::Error as usize;
                }
            }
        }
    }
    let exit = match failed {
        0 if waiting => Exit::RestoreWaiting,
        0 => Exit::Done,
        code if code == Exit::Locked as usize && results.len() == 1 => Exit::Locked,
        _ => Exit::Error,
    };
    Ok(Outcome {
        exit,
        json: json!({ "jobs": results }),
    })
}

fn exit_of(status: &RestoreStatus) -> Exit {
    match status.state {
        RestoreState::Done => Exit::Done,
        _ => Exit::RestoreWaiting,
    }
}

fn say_status(app: &App, status: &RestoreStatus) {
    let job = &status.job;
    let mut did = Vec::new();
    if status.restores_requested > 0 {
        did.push(format!(
            "{} restore request(s) sent",
            status.restores_requested
        ));
    }
    if status.volumes_downloaded > 0 {
        did.push(format!(
            "{} volume(s) downloaded ({})",
            status.volumes_downloaded,
            units::bytes(status.bytes_downloaded)
        ));
    }
    for snapshot in &status.received {
        did.push(format!("received {snapshot}"));
    }
    if did.is_empty() {
        did.push("nothing to do now".to_owned());
    }
    app.say(format!(
        "Restore {} of {} into {}: {}.",
        job.id,
        job.dataset,
        job.target,
        did.join(", ")
    ));
    match &status.state {
        RestoreState::Done => app.say(format!(
            "Done: {} is restored ({} stream(s)).",
            job.target,
            job.chain.len()
        )),
        RestoreState::Waiting { reason, until } => app.say(format!(
            "Waiting: {}{}; {} of {} stream(s) received. Run `zib restore` again later (daily is right).",
            wait_text(reason),
            until
                .map(|until| format!(", until about {}", units::date_time(until)))
                .unwrap_or_default(),
            job.received,
            job.chain.len()
        )),
    }
}

fn wait_text(reason: &WaitReason) -> String {
    match reason {
        WaitReason::Budget { downloaded, budget } => format!(
            "this month's download budget is used ({} of {})",
            units::bytes(*downloaded),
            units::bytes(*budget)
        ),
        other => other.to_string(),
    }
}

fn job_json(job: &RestoreJob) -> Value {
    json!({
        "job_id": job.id.to_string(),
        "dataset": job.dataset,
        "restore_point": job.restore_point.to_string(),
        "chain": job.chain.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "target": job.target.as_str(),
        "staging_dir": job.staging_dir,
        "tier": match job.tier { Tier::Bulk => "bulk", _ => "standard" },
        "monthly_budget_bytes": job.monthly_budget,
        "created_at": units::rfc3339(job.created_at),
        "received": job.received,
        "staged_volumes": job.staged_volumes,
        "finished_at": job.finished_at.map(units::rfc3339),
        "drill": job.drill,
    })
}

fn plan_json(plan: &RestorePlan) -> Value {
    json!({
        "total_bytes": plan.total_bytes,
        "cost_usd": plan.cost.total(),
        "months": plan.months,
        "finish": units::rfc3339(units::from_unix(plan.finish.0)),
        "peak_staging_bytes": plan.peak_staging_bytes,
        "batches": plan.batches.iter().map(|batch| json!({
            "month": batch.month.to_string(),
            "bytes": batch.bytes,
            "volumes": batch.volumes.len(),
            "paid_egress_bytes": batch.paid_egress_bytes,
            "cost_usd": batch.cost.total(),
        })).collect::<Vec<_>>(),
    })
}

fn status_json(status: &RestoreStatus) -> Value {
    let (state, reason, until) = match &status.state {
        RestoreState::Done => ("done", None, None),
        RestoreState::Waiting { reason, until } => (
            "waiting",
            Some(match reason {
                WaitReason::Thaw { .. } => "thaw",
                WaitReason::Budget { .. } => "budget",
                WaitReason::NextWave => "next_wave",
            }),
            until.map(units::rfc3339),
        ),
    };
    json!({
        "job_id": status.job.id.to_string(),
        "dataset": status.job.dataset,
        "target": status.job.target.as_str(),
        "state": state,
        "waiting_for": reason,
        "until": until,
        "restores_requested": status.restores_requested,
        "volumes_downloaded": status.volumes_downloaded,
        "bytes_downloaded": status.bytes_downloaded,
        "received": status.received,
        "streams_received": status.job.received,
        "chain_length": status.job.chain.len(),
        "month_downloaded_bytes": status.month_downloaded,
    })
}
