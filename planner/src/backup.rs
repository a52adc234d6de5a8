//! Full or incremental: which stream the next backup sends, and why.

use serde::{Deserialize, Serialize};

use crate::cost::{self, human_bytes, Cost};
use crate::{
    plan_consolidation, BackupId, Catalog, ConsolidationDecision, ConsolidationMode, Error,
    LocalSnapshot, Policy, PriceTable, Result, SnapshotId, UnixTime,
};

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlannedBackup {
    /// The snapshot is already committed; nothing to send.
    UpToDate,
    /// A full stream of the snapshot.
    Full,
    /// An incremental stream from `base_snapshot`, chained on `base_backup`.
    Incremental {
        /// The committed backup the new one builds on.
        base_backup: BackupId,
        /// That backup's snapshot, which exists locally.
        base_snapshot: SnapshotId,
    },
}

/// The backup decision with its reason and one-time cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupDecision {
    /// The snapshot to back up.
    pub snapshot: SnapshotId,
    /// What to send.
    pub plan: PlannedBackup,
    /// Why, in words.
    pub reason: String,
    /// Estimated stream bytes, when the source gave an estimate.
    pub estimated_bytes: Option<u64>,
    /// One-time upload cost (requests, staging) of the estimated stream.
    pub cost: Cost,
    /// When the full is a consolidation: the evaluation, including what becomes
    /// deletable once the full is committed.
    pub consolidation: Option<ConsolidationDecision>,
}

/// Decides how to back up `target` (default: the newest local snapshot).
///
/// Incremental whenever a committed backup's snapshot still exists locally (the newest
/// such is the base), unless a consolidation is recommended or the incremental would be
/// no smaller than a full. A full otherwise: first backup, or no base left locally.
///
/// # Errors
/// [`Error::NoSnapshots`], [`Error::UnknownSnapshot`], invalid policy or prices.
pub fn decide_backup(
    catalog: &Catalog,
    local: &[LocalSnapshot],
    target: Option<&SnapshotId>,
    policy: &Policy,
    prices: &PriceTable,
    now: UnixTime,
) -> Result<BackupDecision> {
    policy.validate()?;
    prices.validate()?;
    let snap = match target {
        Some(id) => local
            .iter()
            .find(|s| &s.id == id)
            .ok_or_else(|| Error::UnknownSnapshot {
                snapshot: id.clone(),
            })?,
        None => local
            .iter()
            .max_by_key(|s| (s.created, &s.id))
            .ok_or(Error::NoSnapshots)?,
    };
    let shape = policy.upload_shape();
    let upload_cost = |bytes: Option<u64>| {
        bytes.map_or(Cost::default(), |b| {
            // An estimate beyond any catalog cannot be uploaded anyway; price it as
            // nothing rather than fail the decision on a source's odd estimate.
            cost::upload(prices, &shape, b).map_or(Cost::default(), |u| u.cost)
        })
    };
    let decision = |plan, reason: String, bytes: Option<u64>| BackupDecision {
        snapshot: snap.id.clone(),
        plan,
        reason,
        estimated_bytes: bytes,
        cost: upload_cost(bytes),
        consolidation: None,
    };

    if catalog.backups().iter().any(|b| b.snapshot == snap.id) {
        return Ok(decision(
            PlannedBackup::UpToDate,
            format!("{} is already backed up", snap.name),
            None,
        ));
    }
    // The base: the newest restorable backup whose snapshot still exists locally and is
    // older than the target.
    let base = catalog.restore_points().into_iter().rev().find_map(|b| {
        local
            .iter()
            .find(|s| s.id == b.snapshot && s.created < snap.created)
            .map(|s| (b, s))
    });
    let Some((base_backup, base_snap)) = base else {
        let reason = if catalog.is_empty() {
            format!("first backup of this dataset: full stream of {}", snap.name)
        } else {
            format!(
                "no committed backup's snapshot exists locally any more (a base must be kept as a bookmark or hold); full stream of {}",
                snap.name
            )
        };
        return Ok(decision(PlannedBackup::Full, reason, snap.full_bytes));
    };
    let incremental = PlannedBackup::Incremental {
        base_backup: base_backup.id.clone(),
        base_snapshot: base_snap.id.clone(),
    };
    let incremental_bytes = snap
        .incremental
        .as_ref()
        .filter(|e| e.base == base_snap.id)
        .map(|e| e.bytes);

    if let (Some(inc), Some(full)) = (incremental_bytes, snap.full_bytes) {
        if inc >= full {
            let mut d = decision(
                PlannedBackup::Full,
                format!(
                    "the incremental from {} ({}) would be no smaller than a full ({}): a full is cheaper and starts a shorter chain",
                    base_snap.name,
                    human_bytes(inc),
                    human_bytes(full)
                ),
                Some(full),
            );
            d.consolidation = Some(plan_consolidation(
                catalog, local, snap, policy, prices, now,
            )?);
            return Ok(d);
        }
    }
    if policy.consolidation == ConsolidationMode::Auto {
        let eval = plan_consolidation(catalog, local, snap, policy, prices, now)?;
        if eval.recommend {
            let mut d = decision(
                PlannedBackup::Full,
                format!("consolidation: {}", eval.reason),
                snap.full_bytes,
            );
            d.consolidation = Some(eval);
            return Ok(d);
        }
    }
    Ok(decision(
        incremental,
        format!(
            "incremental from {} (committed backup {}), which still exists locally",
            base_snap.name, base_backup.id
        ),
        incremental_bytes,
    ))
}
