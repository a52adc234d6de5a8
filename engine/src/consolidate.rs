//! Consolidation carried out: a fresh full of the dataset through the normal backup
//! pipeline, committed, and only then the deletion of what no kept restore point needs
//! any more ([`crate::deletion`]) — within the safety rules, which a confirmation may
//! lift only for vanished data.
//!
//! A plain [`Repository::backup`](crate::Repository::backup) under a policy whose
//! consolidation is `auto` does the same on its own: the planner may choose a fresh full
//! when it pays, and every committed backup deletes what has become due. An explicit
//! consolidation differs in three ways: it asks the planner even when the policy says
//! `never` (the call is the request), it can insist on a full (`force`), and it can
//! confirm deletions of restore points that lost much of their data (`confirm`).
//!
//! The two halves are separate runs as far as a crash is concerned: the full is a
//! backup like any other (resumed by the next run if stopped), and deletions are
//! re-derived from the bucket each time, so a stop between or during them leaves every
//! kept restore point restorable and the next run finishes the job.

use zib_planner::ConsolidationMode;
use zib_snapshot_source::{DatasetName, SnapshotSource};

use crate::backup::{back_up, BackupOptions, BackupOutcome, Intent};
use crate::context::Repo;
use crate::deletion::{delete_superseded, DeletionOptions, DeletionReport};
use crate::error::Result;
use crate::progress::Progress;

/// How to consolidate.
///
/// [`Default`]: a new snapshot backed up as the planner decides under the default
/// policy (a full only when it pays), then the deletions that are due, without
/// confirmation.
#[derive(Debug, Clone, Default)]
pub struct ConsolidateOptions {
    /// How the fresh full is backed up: snapshot, volume shape, policy (which also rules
    /// the deletions: kept restore points, minimum age, grace period, vanished data),
    /// prices, waiting for the lock.
    pub backup: BackupOptions,
    /// Send a full even when the planner would send an incremental (it says in the
    /// report what it thinks of that).
    pub force: bool,
    /// Also delete restore points that lost more than the policy's
    /// `max_vanished_fraction` of their data (see [`DeletionOptions::confirm`]).
    pub confirm: bool,
}

/// What a consolidation did.
#[derive(Debug, Clone)]
pub struct ConsolidationReport {
    /// The backup: a fresh full when the planner recommended one (or it was forced), else
    /// an incremental; `UpToDate` when the snapshot asked for was backed up already. The
    /// planner's evaluation is in its decision's `consolidation`.
    pub backup: BackupOutcome,
    /// The superseded backups deleted and those still pending, with what that saves.
    pub deletions: DeletionReport,
}

/// Backs up `dataset` (a fresh full when it pays or is forced), then deletes the
/// superseded backups that are due.
pub(crate) async fn consolidate(
    repository: &Repo,
    source: &dyn SnapshotSource,
    dataset: &DatasetName,
    options: &ConsolidateOptions,
    progress: &dyn Progress,
) -> Result<ConsolidationReport> {
    let mut backup_options = options.backup.clone();
    backup_options.policy.consolidation = ConsolidationMode::Auto;
    let backup = back_up(
        repository,
        source,
        dataset,
        &backup_options,
        Intent {
            fresh_full: options.force,
            delete_superseded: false,
        },
        progress,
    )
    .await?;
    progress.phase("deleting superseded backups");
    // The dataset's name as the catalog knows it: the one its backups were made under.
    let name = match &backup {
        BackupOutcome::Committed(committed) => committed.manifest.dataset_name.clone(),
        BackupOutcome::UpToDate { .. } => dataset.to_string(),
    };
    let deletions = delete_superseded(
        repository,
        &name,
        &DeletionOptions {
            policy: backup_options.policy.clone(),
            prices: backup_options.prices.clone(),
            confirm: options.confirm,
            wait_for_lock: backup_options.wait_for_lock,
        },
    )
    .await?;
    Ok(ConsolidationReport { backup, deletions })
}
