//! `zib verify [DATASET] [--drill]`: the engine's verify (LIST and HEAD only, no thaw),
//! and with `--drill` its restore drill, one step per run.

use anyhow::Context as _;
use serde_json::{json, Value};
use zib_engine::snapshot_source::btrfs::BtrfsSource;
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::{
    DatasetName, DrillReport, DrillRequest, DrillSkip, DrillState, Problem, RestorePoint, Severity,
    SnapshotSource, VerifyOptions, VerifyReport,
};

use super::Outcome;
use crate::app::App;
use crate::args::VerifyArgs;
use crate::exit::{CliError, Exit};
use crate::passphrase;
use crate::progress::Reporter;
use crate::units;

pub(super) async fn verify(app: &App, args: &VerifyArgs) -> anyhow::Result<Outcome> {
    app.repository_config()?;
    let passphrase = passphrase::read(&app.passphrase_sources(), false)?;
    let (repository, config) = app.open_with(&passphrase).await?;
    let reporter = Reporter::new(app.mode, "verify");
    let verified = repository
        .verify(
            &VerifyOptions {
                passphrase: Some(&passphrase),
                prices: app.prices(),
            },
            &reporter,
        )
        .await;
    reporter.finish();
    let report = verified.with_context(|| format!("could not verify {}", config.url))?;

    let points: Vec<&RestorePoint> = report
        .restore_points
        .iter()
        .filter(|point| {
            args.dataset
                .as_deref()
                .is_none_or(|name| point.dataset_name == name)
        })
        .collect();
    if let Some(name) = &args.dataset {
        let known = points.iter().any(|point| &point.dataset_name == name)
            || report
                .problems
                .iter()
                .flat_map(|problem| &problem.breaks)
                .any(|point| &point.dataset_name == name);
        if !known {
            return Err(anyhow::Error::new(zib_engine::Error::UnknownDataset {
                dataset: name.clone(),
            }));
        }
    }
    let problems: Vec<&Problem> = report
        .problems
        .iter()
        .filter(|problem| {
            args.dataset.as_deref().is_none_or(|name| {
                problem.breaks.is_empty()
                    || problem
                        .breaks
                        .iter()
                        .any(|point| point.dataset_name == name)
            })
        })
        .collect();
    say_report(app, &report, &points, &problems);
    let damaged = problems
        .iter()
        .any(|problem| problem.severity == Severity::Damage);
    let mut json = report_json(&report, &points, &problems);
    let mut exit = if damaged { Exit::Error } else { Exit::Done };

    if args.drill {
        let target = drill_target(args, &points)?;
        let mut request = DrillRequest::new(target.clone(), app.state_dir.join("staging"));
        request.prices = app.prices();
        if let Some(name) = &args.dataset {
            request.restore_point = zib_engine::smallest_chain(
                &points
                    .iter()
                    .map(|point| (*point).clone())
                    .collect::<Vec<_>>(),
            )
            .map(|point| point.backup);
            if request.restore_point.is_none() {
                return Err(CliError::new(
                    Exit::Error,
                    format!("{name} has no intact restore point to drill"),
                )
                .into());
            }
        }
        std::fs::create_dir_all(&request.staging_dir).with_context(|| {
            format!(
                "could not create the staging directory {}",
                request.staging_dir.display()
            )
        })?;
        let source: Box<dyn SnapshotSource> = if target.is_zfs() {
            Box::new(ZfsSource::new())
        } else {
            Box::new(BtrfsSource::new(app.state_dir.join("btrfs-snapshots")))
        };
        let reporter = Reporter::new(app.mode, "drill");
        let drilled = repository
            .drill(&report, &request, source.as_ref(), &reporter)
            .await;
        reporter.finish();
        let drill = drilled.context("the restore drill could not run")?;
        let (drill_exit, drill_json) = say_drill(app, &drill);
        if exit == Exit::Done {
            exit = drill_exit;
        }
        json["drill"] = drill_json;
    }
    Ok(Outcome { exit, json })
}

/// The drill's target: `--drill-target`, else `POOL/zib-drill` beside the ZFS datasets.
fn drill_target(args: &VerifyArgs, points: &[&RestorePoint]) -> Result<DatasetName, CliError> {
    let name = match &args.drill_target {
        Some(name) => name.clone(),
        None => {
            let pool = args
                .dataset
                .as_deref()
                .or_else(|| points.first().map(|point| point.dataset_name.as_str()))
                .filter(|name| !name.starts_with('/'))
                .and_then(|name| name.split('/').next())
                .ok_or_else(|| {
                    CliError::usage("the drill needs a throwaway target")
                        .hint("name one with --drill-target (a ZFS dataset that does not exist, or a BTRFS directory)")
                })?;
            format!("{pool}/zib-drill")
        }
    };
    if name.starts_with('/') {
        DatasetName::path(std::path::Path::new(&name))
    } else {
        DatasetName::zfs(&name)
    }
    .map_err(|error| CliError::usage(error.to_string()))
}

fn say_report(app: &App, report: &VerifyReport, points: &[&RestorePoint], problems: &[&Problem]) {
    app.say(format!(
        "Checked {} object(s): {} backup(s), {} volume(s), {} stored.",
        report.objects,
        report.backups,
        report.volumes,
        units::bytes(report.stored_bytes)
    ));
    app.say(format!("{} restore point(s) intact:", points.len()));
    for point in points {
        app.say(format!(
            "  {}@{}  chain of {}, {}, committed {}",
            point.dataset_name,
            point.snapshot_name,
            point.chain_len,
            units::bytes(point.chain_bytes),
            units::date_time(point.committed_at)
        ));
    }
    if problems.is_empty() {
        app.say("No problem found.");
    }
    for problem in problems {
        app.say(format!("  {problem}"));
    }
    for unchecked in &report.unchecked {
        app.say(format!("  not checked: {unchecked}"));
    }
    app.say(format!(
        "The verify made {} LIST and {} HEAD request(s) ({}).",
        report.cost.list_requests,
        report.cost.head_requests,
        units::money(report.cost.usd)
    ));
}

fn report_json(report: &VerifyReport, points: &[&RestorePoint], problems: &[&Problem]) -> Value {
    let point_json = |point: &RestorePoint| {
        json!({
            "dataset": point.dataset_name,
            "snapshot": point.snapshot_name,
            "backup_id": point.backup.to_string(),
            "chain_length": point.chain_len,
            "chain_bytes": point.chain_bytes,
            "committed_at": units::rfc3339(point.committed_at),
        })
    };
    json!({
        "clean": problems.is_empty(),
        "objects": report.objects,
        "backups": report.backups,
        "volumes": report.volumes,
        "stored_bytes": report.stored_bytes,
        "restore_points": points.iter().map(|point| point_json(point)).collect::<Vec<_>>(),
        "problems": problems.iter().map(|problem| json!({
            "severity": problem.severity.to_string(),
            "what": problem.kind.to_string(),
            "key": problem.key.as_ref().map(ToString::to_string),
            "breaks": problem.breaks.iter().map(point_json).collect::<Vec<_>>(),
            "action": problem.action,
        })).collect::<Vec<_>>(),
        "unchecked": report.unchecked,
        "cost": {
            "list_requests": report.cost.list_requests,
            "head_requests": report.cost.head_requests,
            "usd": report.cost.usd,
        },
    })
}

fn say_drill(app: &App, drill: &DrillReport) -> (Exit, Value) {
    if let Some(start) = &drill.started {
        app.say(format!(
            "Drill: restoring {} ({} to download, {}).",
            start.restore_point,
            units::bytes(start.plan.total_bytes),
            units::money(start.plan.cost.total())
        ));
    }
    match &drill.state {
        DrillState::Running(status) => {
            app.say(format!(
                "Drill under way: {} of {} stream(s) received; run `zib verify --drill` (or `zib restore`) again later.",
                status.job.received,
                status.job.chain.len()
            ));
            (
                Exit::RestoreWaiting,
                json!({ "state": "running", "job_id": status.job.id.to_string() }),
            )
        }
        DrillState::Passed(status) => {
            app.say(format!(
                "Drill passed: {} stream(s) restored and received; the throwaway target is removed.",
                status.job.chain.len()
            ));
            (
                Exit::Done,
                json!({ "state": "passed", "job_id": status.job.id.to_string() }),
            )
        }
        DrillState::Failed { job, error } => {
            let message = error.to_string();
            app.say(format!("Drill FAILED: {message}"));
            (
                Exit::Error,
                json!({ "state": "failed", "job_id": job.id.to_string(), "error": message }),
            )
        }
        DrillState::Skipped(skip) => {
            app.say(format!("{skip}"));
            let exit = match skip {
                DrillSkip::OverBudget {
                    fits_from: Some(_), ..
                } => Exit::RestoreWaiting,
                _ => Exit::Error,
            };
            (
                exit,
                json!({ "state": "skipped", "reason": skip.to_string() }),
            )
        }
    }
}
