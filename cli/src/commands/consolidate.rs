//! `zib consolidate`: a fresh full when it pays (or is forced), then the deletion of the
//! superseded backups that are due; `--delete-only` is the deletion alone (an admin run
//! with delete permission). The deletion lines are also what `zib backup` prints when
//! its policy's consolidation is `auto`.

use std::time::Instant;

use anyhow::Context as _;
use serde_json::{json, Value};
use zib_engine::storage::{BucketProtection, ObjectLock, Versioning};
use zib_engine::{
    BackupOutcome, ConsolidateOptions, DatasetName, DeletionOptions, DeletionReport,
    PendingDeletion, Repository, WaitingFor,
};

use super::backup::{committed, finish, options, plan_with, wanted};
use super::{record, Outcome};
use crate::app::App;
use crate::args::ConsolidateArgs;
use crate::exit::CliError;
use crate::progress::Reporter;
use crate::units;

pub(super) async fn consolidate(app: &App, args: &ConsolidateArgs) -> anyhow::Result<Outcome> {
    if args.dry_run && args.delete_only {
        return Err(CliError::usage(
            "--dry-run cannot show which backups --delete-only would delete: zib has no \
             preview of deletions",
        )
        .hint(
            "`zib consolidate --dry-run` shows the backup half; `zib list` shows the chains, \
             and a real run reports every backup it keeps and why",
        )
        .into());
    }
    let named: Vec<String> = args.dataset.iter().cloned().collect();
    let wanted = wanted(app, &named, false)?;
    let (repository, _) = app.open().await?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (name, recursive) in wanted {
        let datasets = if args.delete_only {
            // No snapshot source is needed (an admin host may have none): the datasets
            // below a recursive entry are those the catalog knows.
            below_in_catalog(&repository, &name, recursive).await
        } else {
            super::backup::expand(&name, recursive).await
        };
        let datasets = match datasets {
            Ok(datasets) => datasets,
            Err(error) => {
                record(&name, Err(error), &mut results, &mut failures);
                continue;
            }
        };
        for dataset in datasets {
            let result = if args.delete_only {
                delete_only(app, &repository, &dataset, args).await
            } else if args.dry_run {
                plan_one(app, &repository, &dataset, args).await
            } else {
                consolidate_one(app, &repository, &dataset, args).await
            };
            record(&dataset, result, &mut results, &mut failures);
        }
    }
    finish(results, failures)
}

/// `name` and, with `recursive`, the datasets below it that have backups.
async fn below_in_catalog(
    repository: &Repository,
    name: &str,
    recursive: bool,
) -> anyhow::Result<Vec<String>> {
    if !recursive {
        return Ok(vec![name.to_owned()]);
    }
    let catalog = repository
        .catalog()
        .await
        .context("could not read the catalog")?;
    let prefix = format!("{name}/");
    let mut names: Vec<String> = catalog
        .datasets
        .values()
        .filter_map(|backups| backups.last())
        .map(|backup| backup.manifest.dataset_name.clone())
        .filter(|dataset| dataset == name || dataset.starts_with(&prefix))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        names.push(name.to_owned());
    }
    Ok(names)
}

fn consolidate_options(
    app: &App,
    name: &str,
    dataset: &DatasetName,
    args: &ConsolidateArgs,
) -> anyhow::Result<ConsolidateOptions> {
    Ok(ConsolidateOptions {
        backup: options(app, name, None, dataset.is_zfs())?,
        force: args.force,
        confirm: args.confirm,
    })
}

async fn plan_one(
    app: &App,
    repository: &Repository,
    name: &str,
    args: &ConsolidateArgs,
) -> anyhow::Result<Value> {
    let (source, dataset) = app.source_for(name)?;
    let mut options = consolidate_options(app, name, &dataset, args)?.backup;
    // As the consolidation itself does: the planner is asked, whatever the policy says.
    options.policy.consolidation = zib_engine::planner::ConsolidationMode::Auto;
    options.full = args.force;
    let mut json = plan_with(app, repository, source.as_ref(), &dataset, &options).await?;
    app.say("  deletions: not previewed (they are decided from the bucket when the run commits)");
    json["deletions"] = Value::Null;
    Ok(json)
}

async fn consolidate_one(
    app: &App,
    repository: &Repository,
    name: &str,
    args: &ConsolidateArgs,
) -> anyhow::Result<Value> {
    let (source, dataset) = app.source_for(name)?;
    if let zib_engine::SourceKind::Btrfs = source.kind() {
        super::backup::ensure_snapshot_dir(app, &dataset)?;
    }
    let options = consolidate_options(app, name, &dataset, args)?;
    let reporter = Reporter::new(app.mode, dataset.as_str());
    let started = Instant::now();
    let report = repository
        .consolidate(source.as_ref(), &dataset, &options, &reporter)
        .await;
    reporter.finish();
    let report = report.with_context(|| format!("could not consolidate {dataset}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let mut json = match &report.backup {
        BackupOutcome::UpToDate { decision } => {
            app.say(format!("{dataset}: up to date ({})", decision.reason));
            json!({ "dataset": dataset.as_str(), "status": "up_to_date", "reason": decision.reason })
        }
        BackupOutcome::Committed(backup) => committed(app, &dataset, backup, seconds),
    };
    let consolidation = match &report.backup {
        BackupOutcome::UpToDate { decision } => decision.consolidation.as_ref(),
        BackupOutcome::Committed(backup) => backup.decision.consolidation.as_ref(),
    };
    if let Some(consolidation) = consolidation {
        app.say(format!(
            "  consolidation: {}: {}",
            if consolidation.recommend {
                "recommended"
            } else {
                "not now"
            },
            consolidation.reason
        ));
    }
    json["consolidation"] = consolidation.map_or(Value::Null, |consolidation| {
        json!({ "recommended": consolidation.recommend, "reason": consolidation.reason })
    });
    json["deletions"] = deletions(app, dataset.as_str(), &report.deletions);
    Ok(json)
}

async fn delete_only(
    app: &App,
    repository: &Repository,
    name: &str,
    args: &ConsolidateArgs,
) -> anyhow::Result<Value> {
    let backup = options(app, name, None, !name.starts_with('/'))?;
    let options = DeletionOptions {
        policy: backup.policy,
        prices: backup.prices,
        confirm: args.confirm,
        wait_for_lock: backup.wait_for_lock,
    };
    let report = repository
        .delete_superseded(name, &options)
        .await
        .with_context(|| format!("could not delete the superseded backups of {name}"))?;
    if report.deleted.is_empty() && report.pending.is_empty() && report.finished.is_empty() {
        app.say(format!("{name}: nothing superseded to delete"));
    } else {
        app.say(format!("{name}:"));
    }
    Ok(json!({
        "dataset": name,
        "status": "deletions_only",
        "deletions": deletions(app, name, &report),
    }))
}

/// Prints a deletion run's lines (under the dataset's own line) and returns its JSON
/// (docs/CLI.md).
pub(super) fn deletions(app: &App, dataset: &str, report: &DeletionReport) -> Value {
    for deleted in &report.deleted {
        app.say(format!(
            "  deleted {} backup {} (@{}): {} freed, saves {}/month, early-deletion fee {}",
            if deleted.full { "full" } else { "incremental" },
            deleted.backup,
            snapshot_of(&deleted.snapshot),
            units::bytes(deleted.stored_bytes),
            units::money(deleted.storage_per_month),
            units::money(deleted.early_deletion_fee),
        ));
    }
    if !report.finished.is_empty() {
        app.say(format!(
            "  removed {} volume(s) an earlier deletion left behind",
            report.finished.len()
        ));
    }
    if !report.deleted.is_empty() {
        app.say(format!(
            "  saved {}/month from now on; early-deletion fees {}",
            units::money(report.saved_per_month),
            units::money(report.early_deletion_fees)
        ));
    }
    for pending in &report.pending {
        let then = if pending.needs_confirmation
            && !matches!(pending.waiting_for, WaitingFor::Confirmation { .. })
        {
            "; after that it needs a confirmation (`zib consolidate --confirm`)"
        } else {
            ""
        };
        app.say(format!(
            "  kept for now: backup {} (@{}), {} at {}/month: {}{then}",
            pending.backup,
            snapshot_of(&pending.snapshot),
            units::bytes(pending.stored_bytes),
            units::money(pending.storage_per_month),
            pending.waiting_for
        ));
    }
    let needs_confirmation = report
        .pending
        .iter()
        .any(|pending| matches!(pending.waiting_for, WaitingFor::Confirmation { .. }));
    if needs_confirmation {
        app.say(format!(
            "  some deletions need a confirmation: check the live data of {dataset}, then run \
             `zib consolidate --confirm {dataset}`"
        ));
    }
    for note in &report.notes {
        app.say(format!("  note: {note}"));
    }
    if let Some(stopped) = &report.stopped {
        tracing::warn!("{dataset}: {stopped}");
    }
    json!({
        "deleted": report.deleted.iter().map(|deleted| json!({
            "backup_id": deleted.backup.to_string(),
            "snapshot": deleted.snapshot,
            "kind": if deleted.full { "full" } else { "incremental" },
            "committed_at": units::rfc3339(units::from_unix(deleted.committed_at)),
            "objects": deleted.objects,
            "stored_bytes": deleted.stored_bytes,
            "saved_per_month_usd": deleted.storage_per_month,
            "early_deletion_fee_usd": deleted.early_deletion_fee,
            "vanished_fraction": deleted.vanished_fraction,
            "reason": deleted.reason,
        })).collect::<Vec<_>>(),
        "pending": report.pending.iter().map(pending_json).collect::<Vec<_>>(),
        "finished_volumes": report.finished.len(),
        "saved_per_month_usd": report.saved_per_month + 0.0,
        "early_deletion_fees_usd": report.early_deletion_fees + 0.0,
        "bucket": report.bucket.as_ref().map(bucket_json),
        "needs_confirmation": needs_confirmation,
        "notes": report.notes,
        "stopped": report.stopped,
    })
}

/// `dataset@snapshot` → `snapshot`.
fn snapshot_of(full_name: &str) -> &str {
    full_name
        .rsplit_once('@')
        .map_or(full_name, |(_, snapshot)| snapshot)
}

fn pending_json(pending: &PendingDeletion) -> Value {
    let (kind, until) = match &pending.waiting_for {
        WaitingFor::MinimumAge { until } => ("minimum_age", Some(*until)),
        WaitingFor::GracePeriod { until, .. } => ("grace_period", Some(*until)),
        WaitingFor::LaterBackup { .. } => ("later_backup", None),
        WaitingFor::Schedule { until } => ("schedule", Some(*until)),
        WaitingFor::Confirmation { .. } => ("confirmation", None),
        WaitingFor::DeletePermission => ("delete_permission", None),
        WaitingFor::Restore { .. } => ("restore", None),
    };
    let mut json = json!({
        "backup_id": pending.backup.to_string(),
        "snapshot": pending.snapshot,
        "stored_bytes": pending.stored_bytes,
        "cost_per_month_usd": pending.storage_per_month,
        "waiting_for": kind,
        "until": until.map(units::rfc3339),
        "why_kept": pending.waiting_for.to_string(),
        "needs_confirmation": pending.needs_confirmation,
        "vanished_fraction": pending.vanished_fraction,
        "reason": pending.reason,
    });
    match &pending.waiting_for {
        WaitingFor::GracePeriod { full, .. } => json["full"] = json!(full.to_string()),
        WaitingFor::LaterBackup { after } => json["after"] = json!(units::rfc3339(*after)),
        WaitingFor::Confirmation { restore_points, .. } => {
            json["restore_points"] = json!(restore_points
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>());
        }
        WaitingFor::Restore { job } => json["restore_job"] = json!(job.to_string()),
        _ => {}
    }
    json
}

fn bucket_json(bucket: &BucketProtection) -> Value {
    json!({
        "versioning": match bucket.versioning {
            Versioning::Unversioned => "unversioned",
            Versioning::Enabled => "enabled",
            Versioning::Suspended => "suspended",
        },
        "object_lock": match bucket.object_lock {
            ObjectLock::Disabled => "disabled",
            ObjectLock::Enabled { .. } => "enabled",
        },
        "keeps_deleted_data": bucket.keeps_deleted_data(),
    })
}
