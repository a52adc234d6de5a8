//! What the repository holds, from the bucket alone: `list`, `status`, `cost`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use zib_engine::planner::cost::monthly_storage;
use zib_engine::planner::{PriceTable, UnixTime};
use zib_engine::{BackupKind, Catalog, CatalogBackup, DatasetId};

use super::Outcome;
use crate::app::App;
use crate::args::StatusArgs;
use crate::exit::Exit;
use crate::units;

/// Objects a backup keeps in the archive class: its volumes and its manifest.
fn objects(backup: &CatalogBackup) -> u64 {
    u64::from(backup.manifest.volume_count) + 1
}

/// What storing one backup costs a month.
fn monthly(prices: &PriceTable, backup: &CatalogBackup) -> f64 {
    monthly_storage(prices, backup.manifest.stored_len, objects(backup)).total()
}

/// The datasets of the catalog to show: all, or the one named (as it was backed up).
fn select(catalog: &Catalog, name: Option<&str>) -> Result<Vec<DatasetId>, zib_engine::Error> {
    match name {
        None => Ok(catalog.datasets.keys().copied().collect()),
        Some(name) => catalog
            .dataset_named(name)
            .map(|id| vec![id])
            .ok_or_else(|| zib_engine::Error::UnknownDataset {
                dataset: name.to_owned(),
            }),
    }
}

/// The name a dataset was last backed up under.
fn name_of(backups: &[CatalogBackup]) -> String {
    backups
        .last()
        .map(|backup| backup.manifest.dataset_name.clone())
        .unwrap_or_default()
}

/// A dataset's backups grouped into chains: each full with the incrementals that build
/// on it, in commit order.
fn chains(backups: &[CatalogBackup]) -> Vec<Vec<&CatalogBackup>> {
    let mut root_of = BTreeMap::new();
    let mut chains: Vec<Vec<&CatalogBackup>> = Vec::new();
    let mut chain_index = BTreeMap::new();
    for backup in backups {
        let id = backup.manifest.backup_id;
        let root = match &backup.manifest.kind {
            BackupKind::Full => id,
            BackupKind::Incremental { base_backup, .. } => {
                root_of.get(base_backup).copied().unwrap_or(*base_backup)
            }
        };
        root_of.insert(id, root);
        let index = *chain_index.entry(root).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[index].push(backup);
    }
    chains
}

pub(super) async fn list(app: &App, dataset: Option<&str>) -> anyhow::Result<Outcome> {
    let (repository, config) = app.open().await?;
    let catalog = repository
        .catalog()
        .await
        .context("could not read the catalog")?;
    let prices = app.prices();
    let class = repository.archive_class().to_string();
    let mut datasets = Vec::new();
    if catalog.datasets.is_empty() {
        app.say(format!(
            "{} holds no backup yet; run `zib backup DATASET`.",
            config.url
        ));
    }
    for id in select(&catalog, dataset)? {
        let backups = catalog.backups(id);
        let stored: u64 = backups.iter().map(|b| b.manifest.stored_len).sum();
        let cost: f64 = backups.iter().map(|b| monthly(&prices, b)).sum();
        let name = name_of(backups);
        app.say(format!(
            "{name}  ({} backup(s), {} stored, {}/month)",
            backups.len(),
            units::bytes(stored),
            units::money(cost)
        ));
        let mut chain_json = Vec::new();
        for (number, chain) in chains(backups).iter().enumerate() {
            app.say(format!("  chain {}:", number + 1));
            app.say(format!(
                "    {:<14} {:<28} {:>11} {:>5}  {:<20} {:<12} {:>9}",
                "kind", "snapshot", "size", "vols", "committed", "class", "per month"
            ));
            let mut rows = Vec::new();
            for (position, backup) in chain.iter().enumerate() {
                let manifest = &backup.manifest;
                let kind = match manifest.kind {
                    BackupKind::Full => "full",
                    BackupKind::Incremental { .. } => "incremental",
                };
                let arrow = if position == 0 { "" } else { "→ " };
                app.say(format!(
                    "    {:<14} {:<28} {:>11} {:>5}  {:<20} {:<12} {:>9}",
                    format!("{arrow}{kind}"),
                    manifest.snapshot_name,
                    units::bytes(manifest.stored_len),
                    manifest.volume_count,
                    units::date_time(units::from_unix(manifest.committed_at)),
                    class,
                    units::money(monthly(&prices, backup))
                ));
                rows.push(json!({
                    "backup_id": manifest.backup_id.to_string(),
                    "kind": kind,
                    "base_backup": match &manifest.kind {
                        BackupKind::Incremental { base_backup, .. } => Some(base_backup.to_string()),
                        BackupKind::Full => None,
                    },
                    "snapshot": manifest.snapshot_name,
                    "stream_bytes": manifest.stream_len,
                    "stored_bytes": manifest.stored_len,
                    "volumes": manifest.volume_count,
                    "committed_at": units::rfc3339(units::from_unix(manifest.committed_at)),
                    "storage_class": class,
                    "cost_per_month_usd": monthly(&prices, backup),
                }));
            }
            chain_json.push(Value::Array(rows));
        }
        datasets.push(json!({
            "dataset": name,
            "dataset_id": id.to_string(),
            "backups": backups.len(),
            "stored_bytes": stored,
            "cost_per_month_usd": cost,
            "chains": chain_json,
        }));
    }
    Ok(Outcome::done(json!({
        "repository_id": repository.id().to_string(),
        "datasets": datasets,
    })))
}

pub(super) async fn status(app: &App, args: &StatusArgs) -> anyhow::Result<Outcome> {
    let (repository, config) = app.open().await?;
    let catalog = repository
        .catalog()
        .await
        .context("could not read the catalog")?;
    let now = app.clock.now();
    let now_unix = units::unix(now);
    // Watched: the configured datasets (each must have a fresh backup), else all in the
    // catalog.
    let mut watched: Vec<(String, Option<DatasetId>)> = app
        .configured_datasets()
        .iter()
        .map(|entry| (entry.name.clone(), catalog.dataset_named(&entry.name)))
        .collect();
    for id in catalog.datasets.keys() {
        if !watched.iter().any(|(_, known)| *known == Some(*id)) {
            watched.push((name_of(catalog.backups(*id)), Some(*id)));
        }
    }
    app.say(format!("Repository {} at {}", repository.id(), config.url));
    let mut stale = Vec::new();
    let mut datasets = Vec::new();
    for (name, id) in &watched {
        let backups = id.map_or(&[][..], |id| catalog.backups(id));
        let newest = backups.last();
        let age = newest.map(|backup| {
            Duration::from_secs(u64::try_from(now_unix - backup.manifest.committed_at).unwrap_or(0))
        });
        let too_old = match (args.max_age, age) {
            (Some(max), Some(age)) => age > max.0,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if too_old {
            stale.push(name.clone());
        }
        match (newest, age) {
            (Some(backup), Some(age)) => app.say(format!(
                "  {name}: newest backup @{} {} ago ({}), {} backup(s){}",
                backup.manifest.snapshot_name,
                units::age(age),
                units::date_time(units::from_unix(backup.manifest.committed_at)),
                backups.len(),
                if too_old {
                    "  ← older than --max-age"
                } else {
                    ""
                }
            )),
            _ => app.say(format!("  {name}: never backed up")),
        }
        datasets.push(json!({
            "dataset": name,
            "backups": backups.len(),
            "newest_snapshot": newest.map(|b| b.manifest.snapshot_name.clone()),
            "newest_backup_at": newest.map(|b| units::rfc3339(units::from_unix(b.manifest.committed_at))),
            "age_seconds": age.map(|age| age.as_secs()),
            "stale": too_old,
        }));
    }
    let jobs = repository
        .restore_jobs()
        .await
        .context("could not read the restore jobs")?;
    let open: Vec<_> = jobs
        .iter()
        .filter(|job| job.finished_at.is_none())
        .collect();
    if open.is_empty() {
        app.say("  no restore in progress");
    }
    for job in &open {
        app.say(format!(
            "  restore {} of {} into {}: {} of {} stream(s) received; `zib restore` advances it",
            job.id,
            job.dataset,
            job.target,
            job.received,
            job.chain.len()
        ));
    }
    let leftovers = &catalog.leftovers;
    if !leftovers.orphan_volumes.is_empty() || !leftovers.incomplete_uploads.is_empty() {
        app.say(format!(
            "  leftovers of unfinished backups: {} volume(s), {} incomplete upload(s) (`zib cleanup` removes old ones)",
            leftovers.orphan_volumes.len(),
            leftovers.incomplete_uploads.len()
        ));
    }
    let json = json!({
        "repository_id": repository.id().to_string(),
        "datasets": datasets,
        "restores": open.iter().map(|job| json!({
            "job_id": job.id.to_string(),
            "dataset": job.dataset,
            "target": job.target.as_str(),
            "received": job.received,
            "chain_length": job.chain.len(),
        })).collect::<Vec<_>>(),
        "leftovers": {
            "orphan_volumes": leftovers.orphan_volumes.len(),
            "incomplete_uploads": leftovers.incomplete_uploads.len(),
        },
        "stale": stale,
    });
    if !stale.is_empty() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "zib: error: the newest backup of {} is older than --max-age (or missing)",
                stale.join(", ")
            );
            eprintln!("zib: hint: check the backup job (cron, systemd timer) and its log");
        }
        return Ok(Outcome {
            exit: Exit::Error,
            json,
        });
    }
    Ok(Outcome::done(json))
}

pub(super) async fn cost(app: &App) -> anyhow::Result<Outcome> {
    let (repository, _) = app.open().await?;
    let catalog = repository
        .catalog()
        .await
        .context("could not read the catalog")?;
    let prices = app.prices();
    let all: Vec<&CatalogBackup> = catalog.datasets.values().flatten().collect();
    let stored: u64 = all.iter().map(|b| b.manifest.stored_len).sum();
    let objects: u64 = all.iter().map(|b| objects(b)).sum();
    let this_month = monthly_storage(&prices, stored, objects).total();
    // Growth: what the incrementals added per month since the first backup (at least a
    // month's span, so a first week's burst is not taken for a trend).
    let now = units::unix(app.clock.now());
    let first = all
        .iter()
        .map(|b| b.manifest.committed_at)
        .min()
        .unwrap_or(now);
    let months = ((now - first) as f64 / (30.44 * 86_400.0)).max(1.0);
    let added: u64 = all
        .iter()
        .filter(|b| matches!(b.manifest.kind, BackupKind::Incremental { .. }))
        .map(|b| b.manifest.stored_len)
        .sum();
    let growth = (added as f64 / months) as u64;
    let backups_per_month = all.len().saturating_sub(catalog.datasets.len()) as f64 / months;
    let average_objects = if all.is_empty() {
        0.0
    } else {
        objects as f64 / all.len() as f64
    };
    app.say(format!(
        "Stored: {} in {} archived object(s), {} backup(s).",
        units::bytes(stored),
        objects,
        all.len()
    ));
    app.say(format!(
        "This month: {} for storage (at {}/GB-month; prices: docs/COSTS.md).",
        units::money(this_month),
        units::money(prices.archive_storage_per_gb_month)
    ));
    app.say(format!(
        "Growth: {} a month from incrementals; the next 12 months, if it goes on:",
        units::bytes(growth)
    ));
    let mut month = UnixTime(now).month();
    let mut projection = Vec::new();
    let mut total = 0.0;
    let mut rows = Vec::new();
    for step in 1..=12u64 {
        month = month.next();
        let bytes = stored.saturating_add(growth.saturating_mul(step));
        let extra_objects = (backups_per_month * step as f64 * average_objects) as u64;
        let usd = monthly_storage(&prices, bytes, objects + extra_objects).total();
        total += usd;
        rows.push((month.to_string(), bytes, usd));
        projection.push(json!({ "month": month.to_string(), "stored_bytes": bytes, "usd": usd }));
    }
    let widest = rows.iter().map(|row| row.2).fold(0.0, f64::max);
    for (month, bytes, usd) in &rows {
        let bar = if widest > 0.0 {
            (usd / widest * 30.0).round() as usize
        } else {
            0
        };
        app.say(format!(
            "  {month}  {:>11}  {:>9}  {}",
            units::bytes(*bytes),
            units::money(*usd),
            "█".repeat(bar)
        ));
    }
    app.say(format!("  12 months: {}", units::money(total)));
    app.say("Restores cost extra (retrieval, and downloads beyond AWS's free 100 GB a month); `zib restore` shows a restore's cost before it starts.");
    Ok(Outcome::done(json!({
        "stored_bytes": stored,
        "objects": objects,
        "backups": all.len(),
        "this_month_usd": this_month,
        "growth_bytes_per_month": growth,
        "projection": projection,
        "next_12_months_usd": total,
    })))
}
