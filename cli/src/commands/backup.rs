//! `zib backup` and `zib plan`: one engine call per dataset; a dataset that fails does
//! not stop the others (the exit is then 1).

use std::time::Instant;

use anyhow::Context as _;
use serde_json::{json, Value};
use zib_engine::planner::{BackupDecision, PlannedBackup};
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::{
    BackupKind, BackupOptions, BackupOutcome, CommittedBackup, DatasetName, Repository,
    SnapshotChoice, SnapshotName, SnapshotSource, VolumeShape,
};

use super::{record, Outcome};
use crate::app::App;
use crate::args::BackupArgs;
use crate::exit::{CliError, Exit};
use crate::progress::Reporter;
use crate::units;

/// The datasets a command works on: those named, else the config's (each with its own
/// `recursive`).
pub(super) fn wanted(
    app: &App,
    named: &[String],
    recursive: bool,
) -> Result<Vec<(String, bool)>, CliError> {
    if !named.is_empty() {
        return Ok(named.iter().map(|name| (name.clone(), recursive)).collect());
    }
    let configured: Vec<(String, bool)> = app
        .configured_datasets()
        .iter()
        .map(|entry| (entry.name.clone(), entry.recursive || recursive))
        .collect();
    if configured.is_empty() {
        return Err(CliError::usage(format!(
            "no dataset named, and the config file {} lists none",
            app.config_path.path.display()
        ))
        .hint("name one (zib backup tank/photos), or add a [[dataset]] with its name to the config file"));
    }
    Ok(configured)
}

/// A named dataset and, with `recursive`, every ZFS dataset below it.
pub(super) async fn expand(name: &str, recursive: bool) -> anyhow::Result<Vec<String>> {
    if !recursive || name.starts_with('/') || name.starts_with('.') {
        return Ok(vec![name.to_owned()]);
    }
    let dataset = DatasetName::zfs(name).map_err(|error| CliError::usage(error.to_string()))?;
    let below = ZfsSource::new()
        .descendants(&dataset)
        .await
        .map_err(zib_engine::Error::from)
        .with_context(|| format!("could not list the datasets below {name}"))?;
    Ok(below
        .iter()
        .map(|dataset| dataset.as_str().to_owned())
        .collect())
}

/// The engine's options for `dataset` from its policy and the flags.
pub(super) fn options(
    app: &App,
    dataset: &str,
    args: Option<&BackupArgs>,
    kind_zfs: bool,
) -> anyhow::Result<BackupOptions> {
    let policy_config = app.policy_of(dataset);
    let policy = policy_config.policy();
    let defaults = VolumeShape::default();
    let shape = VolumeShape {
        volume_plaintext_len: policy.volume_size,
        part_len: policy.part_size,
        parts_in_flight: policy_config
            .parts_in_flight
            .unwrap_or(defaults.parts_in_flight),
    };
    let snapshot = match args.and_then(|args| args.snapshot.as_deref()) {
        None => SnapshotChoice::Create,
        Some(name) => SnapshotChoice::Existing(
            if kind_zfs {
                SnapshotName::zfs(name)
            } else {
                SnapshotName::btrfs(name)
            }
            .map_err(|error| CliError::usage(error.to_string()))?,
        ),
    };
    Ok(BackupOptions {
        snapshot,
        shape,
        policy,
        prices: app.prices(),
        full: args.is_some_and(|args| args.full),
        ..BackupOptions::default()
    })
}

pub(super) async fn backup(app: &App, args: &BackupArgs) -> anyhow::Result<Outcome> {
    let wanted = wanted(app, &args.datasets, args.recursive)?;
    let (repository, _) = app.open().await?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (name, recursive) in wanted {
        let datasets = match expand(&name, recursive).await {
            Ok(datasets) => datasets,
            Err(error) => {
                record(&name, Err(error), &mut results, &mut failures);
                continue;
            }
        };
        for dataset in datasets {
            let result = if args.dry_run {
                plan_one(app, &repository, &dataset, Some(args)).await
            } else {
                back_up_one(app, &repository, &dataset, args).await
            };
            record(&dataset, result, &mut results, &mut failures);
        }
    }
    finish(results, failures)
}

/// One failure of one dataset keeps its own exit code (a lock held is 11); several, or
/// one among successes, exit 1.
pub(super) fn finish(
    results: Vec<Value>,
    mut failures: Vec<anyhow::Error>,
) -> anyhow::Result<Outcome> {
    let json = json!({ "datasets": results });
    match failures.len() {
        0 => Ok(Outcome::done(json)),
        1 if results.len() == 1 => {
            let error = failures.remove(0);
            Ok(Outcome {
                exit: crate::exit::exit_for(&error),
                json,
            })
        }
        _ => Ok(Outcome {
            exit: Exit::Error,
            json,
        }),
    }
}

async fn back_up_one(
    app: &App,
    repository: &Repository,
    name: &str,
    args: &BackupArgs,
) -> anyhow::Result<Value> {
    let (source, dataset) = app.source_for(name)?;
    if let zib_engine::SourceKind::Btrfs = source.kind() {
        ensure_snapshot_dir(app, &dataset)?;
    }
    let options = options(app, name, Some(args), dataset.is_zfs())?;
    let reporter = Reporter::new(app.mode, dataset.as_str());
    let started = Instant::now();
    let outcome = repository
        .backup(source.as_ref(), &dataset, &options, &reporter)
        .await;
    reporter.finish();
    let outcome = outcome.with_context(|| format!("could not back up {dataset}"))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(match outcome {
        BackupOutcome::UpToDate { decision } => {
            app.say(format!("{dataset}: up to date ({})", decision.reason));
            json!({ "dataset": dataset.as_str(), "status": "up_to_date", "reason": decision.reason })
        }
        BackupOutcome::Committed(backup) => committed(app, &dataset, &backup, seconds),
    })
}

/// Prints a committed backup's lines and returns its JSON (docs/CLI.md): what was sent,
/// and what the run deleted when the policy's consolidation is `auto`.
pub(super) fn committed(
    app: &App,
    dataset: &DatasetName,
    backup: &CommittedBackup,
    seconds: f64,
) -> Value {
    let manifest = &backup.manifest;
    let (kind, base) = kind_of(&manifest.kind);
    app.say(format!(
        "{dataset}: {kind} backup of @{} committed{}: {} stream in {} volume(s), {} sent{}, {:.1} s",
        manifest.snapshot_name,
        if backup.resumed { " (continued an interrupted run)" } else { "" },
        units::bytes(manifest.stream_len),
        manifest.volume_count,
        units::bytes(backup.transfer.bytes_sent),
        if backup.transfer.bytes_skipped > 0 {
            format!(" ({} already there)", units::bytes(backup.transfer.bytes_skipped))
        } else {
            String::new()
        },
        seconds
    ));
    app.say(format!("  why: {}", backup.decision.reason));
    for warning in backup.warnings.iter().chain(&backup.pruned.warnings) {
        tracing::warn!("{dataset}: {warning}");
    }
    let deletions = backup.deletions.as_ref().map_or(Value::Null, |report| {
        super::consolidate::deletions(app, dataset.as_str(), report)
    });
    json!({
        "dataset": dataset.as_str(),
        "status": "committed",
        "backup_id": manifest.backup_id.to_string(),
        "dataset_id": manifest.dataset_id.to_string(),
        "snapshot": manifest.snapshot_name,
        "kind": kind,
        "base_backup": base,
        "stream_bytes": manifest.stream_len,
        "stored_bytes": manifest.stored_len,
        "volumes": manifest.volume_count,
        "bytes_sent": backup.transfer.bytes_sent,
        "bytes_skipped": backup.transfer.bytes_skipped,
        "resumed": backup.resumed,
        "reason": backup.decision.reason,
        "pruned_snapshots": backup.pruned.destroyed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "warnings": backup.warnings.iter().chain(&backup.pruned.warnings).collect::<Vec<_>>(),
        "seconds": seconds,
        "deletions": deletions,
    })
}

/// BTRFS snapshots need their directory (on the subvolume's file system).
pub(super) fn ensure_snapshot_dir(app: &App, dataset: &DatasetName) -> anyhow::Result<()> {
    let dir = app.snapshot_dir_of(dataset.as_str());
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("could not create the snapshot directory {}", dir.display()))
}

fn kind_of(kind: &BackupKind) -> (&'static str, Option<String>) {
    match kind {
        BackupKind::Full => ("full", None),
        BackupKind::Incremental { base_backup, .. } => {
            ("incremental", Some(base_backup.to_string()))
        }
    }
}

pub(super) async fn plan(app: &App, dataset: Option<&str>) -> anyhow::Result<Outcome> {
    let named: Vec<String> = dataset.map(str::to_owned).into_iter().collect();
    let wanted = wanted(app, &named, false)?;
    let (repository, _) = app.open().await?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (name, recursive) in wanted {
        for dataset in expand(&name, recursive).await? {
            let result = plan_one(app, &repository, &dataset, None).await;
            record(&dataset, result, &mut results, &mut failures);
        }
    }
    finish(results, failures)
}

async fn plan_one(
    app: &App,
    repository: &Repository,
    name: &str,
    args: Option<&BackupArgs>,
) -> anyhow::Result<Value> {
    let (source, dataset) = app.source_for(name)?;
    let options = options(app, name, args, dataset.is_zfs())?;
    plan_with(app, repository, source.as_ref(), &dataset, &options).await
}

/// Prints the plan of one backup with these options and returns its JSON.
pub(super) async fn plan_with(
    app: &App,
    repository: &Repository,
    source: &dyn SnapshotSource,
    dataset: &DatasetName,
    options: &BackupOptions,
) -> anyhow::Result<Value> {
    let preview = repository
        .plan_backup(source, dataset, options)
        .await
        .with_context(|| format!("could not plan the backup of {dataset}"))?;
    let decision = &preview.decision;
    let kind = plan_kind(decision);
    let snapshot = if preview.new_snapshot {
        format!("a new snapshot @{}", preview.snapshot)
    } else {
        format!("@{}", preview.snapshot)
    };
    let size = decision
        .estimated_bytes
        .map(|bytes| format!(", about {}", units::bytes(bytes)))
        .unwrap_or_default();
    app.say(format!(
        "{dataset}: next backup: {kind} of {snapshot}{size}; one-time cost {}",
        units::money(decision.cost.total())
    ));
    app.say(format!("  why: {}", decision.reason));
    if preview.unfinished_backup {
        app.say(
            "  an interrupted backup is journalled on this host: the next run continues it first",
        );
    }
    if let Some(consolidation) = &decision.consolidation {
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
    if let Some(bytes) = decision.estimated_bytes {
        let monthly = zib_engine::planner::cost::monthly_storage(
            &options.prices,
            bytes,
            bytes.div_ceil(options.shape.volume_plaintext_len.max(1)) + 1,
        );
        app.say(format!(
            "  then storing it costs {} a month",
            units::money(monthly.total())
        ));
    }
    Ok(json!({
        "dataset": dataset.as_str(),
        "status": "planned",
        "kind": kind,
        "snapshot": preview.snapshot,
        "new_snapshot": preview.new_snapshot,
        "base_backup": match &decision.plan {
            PlannedBackup::Incremental { base_backup, .. } => Some(base_backup.0.clone()),
            _ => None,
        },
        "estimated_bytes": decision.estimated_bytes,
        "cost_usd": decision.cost.total(),
        "reason": decision.reason,
        "unfinished_backup": preview.unfinished_backup,
        "consolidation": decision.consolidation.as_ref().map(|c| json!({
            "recommended": c.recommend,
            "reason": c.reason,
        })),
    }))
}

fn plan_kind(decision: &BackupDecision) -> &'static str {
    match decision.plan {
        PlannedBackup::UpToDate => "up_to_date",
        PlannedBackup::Full => "full",
        PlannedBackup::Incremental { .. } => "incremental",
    }
}
