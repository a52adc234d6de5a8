//! Consolidation: replace a long chain by a fresh full when that lowers what the user
//! pays, and pruning: which backups no kept restore point needs, and when each may go.
//!
//! What the user pays for a chain is its storage *and* its restore: every dead byte in it
//! (data deleted or overwritten since its full) is stored every month, and would also be
//! thawed, downloaded and waited for if the dataset had to be restored. docs/COSTS.md has
//! the derivation; in short, with
//! - W the waste now (chain plus the incremental a full would replace, minus the fresh
//!   full F),
//! - c the monthly cost of a wasted byte: the archive rate plus the expected restore
//!   cost of a byte (retrieval, restored copies, egress beyond the free allowance, and
//!   the months of waiting at the policy's price), times the restores expected per month,
//! - w how fast the dataset's data dies outside purges and μ, f how often and how much of
//!   it purges take, learned from the dataset's own history (crate `history`),
//! - C the one-time cost of consolidating now: the full's upload (less the replaced
//!   incremental's), what the superseded backups are still paid until they may go (their
//!   minimum age, the grace period, the next backup, kept restore points), and the
//!   expected cost of a purge catching the fresh full before its minimum duration,
//!
//! a consolidation is recommended when
//! 1. **it pays within the horizon**: C plus the full's storage (at least its minimum
//!    duration) plus the expected restore of the fresh chain is less than keeping the
//!    superseded backups, with the expected restore of the long chain, for the horizon;
//! 2. **waiting does not pay**: in steady state, consolidating every T months costs
//!    g(T) = C₀/T + c·w·(T−1)/2 a month (C₀ a typical consolidation); its least value g*
//!    is the renewal cost. Waiting d months instead of consolidating now holds the waste
//!    (c·(W + k·w) each month k, plus what a purge in the meantime would add), saves g*·d,
//!    and changes what superseded backups are still paid for. Consolidate now only if no
//!    d up to the minimum duration makes waiting cheaper.
//!
//! The safety rules are constraints, never traded for money: nothing is listed for
//! deletion before its minimum age, before the fresh full has been committed
//! `grace_days` and a later backup has committed, and a deletion that would drop more
//! than `max_vanished_fraction` of a restore point's data is marked as needing
//! confirmation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cost::{self, human_bytes, Cost};
use crate::history::{self, Projection};
use crate::{
    BackupId, BackupKind, Catalog, ConsolidationMode, LocalSnapshot, Policy, PriceTable,
    RemoteBackup, RestoreOptions, Result, SnapshotId, UnixTime, DAY_SECS,
};

/// One step of deleting a backup, in order: the manifest first (the backup stops being
/// committed, so an interrupted prune never leaves a manifest pointing at missing
/// volumes), then its volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteStep {
    /// The backup's manifest object.
    Manifest,
    /// Volume object with this index.
    Volume(u32),
}

/// A backup no kept restore point needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deletion {
    /// The backup to delete.
    pub backup: BackupId,
    /// Not before this instant: the latest of now, its creation plus the policy's
    /// minimum age, and the superseding full's commit plus the grace period.
    pub not_before: UnixTime,
    /// Only once a backup committed after this instant exists (the superseding full's
    /// commit): a full is trusted only when a later backup succeeded. `None`: no wait.
    pub requires_backup_after: Option<UnixTime>,
    /// Minimum-duration fee if deleted at `not_before` (zero unless the policy's minimum
    /// age is below the archive minimum).
    pub early_deletion_fee: f64,
    /// The fraction of this restore point's data that is gone from the newest snapshot,
    /// when the sizes are known (see [`vanished_fraction`]).
    pub vanished_fraction: Option<f64>,
    /// More than the policy's `max_vanished_fraction` of its data is gone: delete only
    /// after the user confirms.
    pub needs_confirmation: bool,
    /// Delete these objects, in this order.
    pub steps: Vec<DeleteStep>,
    /// Why it may go.
    pub reason: String,
}

/// The terms a consolidation decision weighs, side by side (US dollars, bytes, months).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsolidationTerms {
    /// Bytes of the chain plus the incremental the fresh full would replace.
    pub chain_bytes: u64,
    /// Bytes of the fresh full.
    pub fresh_full_bytes: u64,
    /// Dead weight: chain minus fresh full.
    pub waste_bytes: u64,
    /// What the dataset's history says (or the chain's age, without sizes).
    pub projection: Projection,
    /// Storing the waste, per month.
    pub waste_storage_per_month: f64,
    /// Restoring the chain as it is: money, and months at the policy's price.
    pub restore_keep: f64,
    /// Months that restore takes.
    pub restore_keep_months: f64,
    /// Restoring the fresh full instead: money and months at the policy's price.
    pub restore_consolidated: f64,
    /// Months that restore takes.
    pub restore_consolidated_months: f64,
    /// The waste's expected restore cost per month: the restore difference times the
    /// restores expected per month.
    pub waste_restore_per_month: f64,
    /// The one-time cost of consolidating now.
    pub once: f64,
    /// The steady-state cost per month of consolidating at the best interval.
    pub steady_per_month: f64,
    /// Months of waiting that would beat consolidating now, if any.
    pub wait_months: Option<f64>,
}

/// The answer to "should a fresh full replace the chain now?".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsolidationDecision {
    /// Upload a fresh full now.
    pub recommend: bool,
    /// Why (or why not), in words and figures.
    pub reason: String,
    /// Estimated bytes of the fresh full.
    pub fresh_full_bytes: u64,
    /// Cost over the horizon of keeping the chain (storage, and the expected restore as
    /// retrieval, egress and storage of restored copies).
    pub keep_cost: Cost,
    /// Cost over the horizon of consolidating now.
    pub consolidate_cost: Cost,
    /// The terms weighed, side by side.
    pub terms: ConsolidationTerms,
    /// Some deletion needs the user's confirmation (more than the policy's
    /// `max_vanished_fraction` of a restore point's data is gone).
    pub needs_confirmation: bool,
    /// What the fresh full makes deletable once it is committed — never before — newest
    /// first (dependents before their bases). Listed whether or not it is recommended.
    /// Backups that were already unneeded are [`plan_pruning`]'s business and not listed.
    pub deletions: Vec<Deletion>,
}

/// The fraction of a restore point's data gone from a newer snapshot: with `point` bytes
/// of data then, `written` bytes of incremental streams since, and `newest` bytes now,
/// `(point + written − newest) / point`, within 0..=1. Incremental streams carry what was
/// added or rewritten, so what was there, plus what was written, minus what is there, is
/// what disappeared — deleted or overwritten, as a mistaken `rm -rf`, a failing sync or
/// ransomware would leave it.
pub fn vanished_fraction(point: u64, written: u64, newest: u64) -> f64 {
    if point == 0 {
        return 0.0;
    }
    let gone = (point as f64 + written as f64 - newest as f64).max(0.0);
    (gone / point as f64).min(1.0)
}

fn months_between(prices: &PriceTable, from: UnixTime, to: UnixTime) -> f64 {
    (to.days_since(from) / prices.days_per_month).max(0.0)
}

fn delete_steps(b: &RemoteBackup) -> Vec<DeleteStep> {
    let mut steps = vec![DeleteStep::Manifest];
    steps.extend(
        (0..b.volumes.len()).map(|i| DeleteStep::Volume(u32::try_from(i).unwrap_or(u32::MAX))),
    );
    steps
}

/// The size of a snapshot's data, from its manifest or a local estimate.
fn snapshot_size(b: &RemoteBackup, local: &HashMap<&SnapshotId, u64>) -> Option<u64> {
    b.snapshot_bytes.or_else(|| local.get(&b.snapshot).copied())
}

/// Backups that the newest `keep_restore_points` restore points do not need, each with
/// the earliest instant it may be deleted and its delete steps, newest first. The engine
/// deletes those whose `not_before` has passed and whose `requires_backup_after` is
/// `None`, asking the user first where `needs_confirmation` says so, and asks again
/// later for the rest.
///
/// A backup superseded by a newer full waits for that full's grace period and for a
/// backup committed after it. The vanished fraction is measured against the newest
/// restore point from the manifests' `snapshot_bytes`: exactly when the backup is on the
/// newest point's chain, and as a lower bound across a consolidation (the data rewritten
/// between the old chain and the fresh full is not in the catalog; the consolidation
/// decision, which sees it, flags its own deletions).
///
/// # Errors
/// [`crate::Error::InvalidPolicy`], [`crate::Error::InvalidPrices`] or an out-of-range
/// `now`.
pub fn plan_pruning(
    catalog: &Catalog,
    policy: &Policy,
    prices: &PriceTable,
    now: UnixTime,
) -> Result<Vec<Deletion>> {
    policy.validate()?;
    prices.validate()?;
    now.check("now")?;
    let needed = catalog.needed_by_newest(policy.keep_restore_points as usize);
    let newest = catalog.newest_restorable();
    let newest_chain = newest
        .and_then(|n| catalog.chain(&n.id).ok())
        .unwrap_or_default();
    // Fulls of kept chains, oldest first: the one that supersedes an unneeded backup is
    // the oldest newer than it.
    let mut kept_fulls: Vec<&RemoteBackup> = catalog
        .backups()
        .iter()
        .filter(|b| needed.contains(&b.id) && b.kind == BackupKind::Full)
        .collect();
    kept_fulls.sort_by_key(|b| b.created);
    let mut out = Vec::new();
    for b in catalog.backups().iter().rev() {
        if needed.contains(&b.id) {
            continue;
        }
        let superseding = kept_fulls.iter().find(|f| f.created > b.created);
        let grace_end =
            superseding.map_or(now, |f| f.created.plus_days(i64::from(policy.grace_days)));
        let not_before = b
            .created
            .plus_days(i64::from(policy.min_age_days))
            .max(grace_end)
            .max(now);
        let requires_backup_after = superseding.and_then(|f| {
            let later = catalog.backups().iter().any(|x| x.created > f.created);
            (!later).then_some(f.created)
        });
        // The newest point's data against this one's.
        let vanished = match (newest, b.snapshot_bytes) {
            (Some(n), Some(point)) if catalog.is_restorable(&b.id) => n
                .snapshot_bytes
                .map(|newest_bytes| gone_fraction(point, newest_bytes, &b.id, &newest_chain)),
            _ => None,
        };
        let age = not_before.days_since(b.created);
        out.push(Deletion {
            backup: b.id.clone(),
            not_before,
            requires_backup_after,
            early_deletion_fee: cost::early_deletion_fee(prices, b.stored_bytes, b.objects(), age),
            vanished_fraction: vanished,
            needs_confirmation: vanished.is_some_and(|v| v > policy.max_vanished_fraction),
            steps: delete_steps(b),
            reason: match superseding {
                Some(f) => format!(
                    "superseded by full {}; not needed by the newest {} restore point(s)",
                    f.id, policy.keep_restore_points
                ),
                None => format!(
                    "not needed by the newest {} restore point(s)",
                    policy.keep_restore_points
                ),
            },
        });
    }
    Ok(out)
}

/// The fraction of restore point `id`'s data (`point` bytes) gone from the newest
/// restore point (`newest` bytes, `chain` its chain).
fn gone_fraction(point: u64, newest: u64, id: &BackupId, chain: &[&RemoteBackup]) -> f64 {
    match chain.iter().position(|b| &b.id == id) {
        Some(i) => {
            let written: u64 = chain[i + 1..].iter().map(|x| x.stored_bytes).sum();
            vanished_fraction(point, written, newest)
        }
        // Across a consolidation: what the point had beyond the newest chain's full, plus
        // what died on the newest chain since its full (a lower bound: data rewritten
        // between the two is not in the catalog).
        None => {
            let full_bytes = chain
                .first()
                .and_then(|f| f.snapshot_bytes)
                .unwrap_or(newest);
            let since_full: u64 = chain.iter().skip(1).map(|x| x.stored_bytes).sum();
            let lost = point
                .saturating_sub(full_bytes)
                .saturating_add((full_bytes.saturating_add(since_full)).saturating_sub(newest));
            vanished_fraction(point, lost, point)
        }
    }
}

/// The restore options consolidation assumes a future restore runs with: the defaults
/// (Bulk, 100 GB a month, 5 MiB/s).
fn assumed_restore() -> RestoreOptions {
    RestoreOptions::default()
}

/// Whether a fresh full of `snapshot` should replace the chain now, with both sides'
/// cost over the policy's horizon, the terms weighed, and what becomes deletable once it
/// is committed.
///
/// `snapshot` is either a new snapshot (the fresh full replaces the incremental that would
/// otherwise carry it) or the snapshot of the newest backup. Its `full_bytes` estimate is
/// required for a recommendation. `local` (all local snapshots, with their full-size
/// estimates where known) and the catalog's `snapshot_bytes` let the planner learn how
/// the dataset's data grows and dies.
///
/// # Errors
/// [`crate::Error::InvalidPolicy`], [`crate::Error::InvalidPrices`], an out-of-range
/// `now` or snapshot size.
pub fn plan_consolidation(
    catalog: &Catalog,
    local: &[LocalSnapshot],
    snapshot: &LocalSnapshot,
    policy: &Policy,
    prices: &PriceTable,
    now: UnixTime,
) -> Result<ConsolidationDecision> {
    policy.validate()?;
    prices.validate()?;
    now.check("now")?;
    let no = |reason: String, fresh_full_bytes: u64| ConsolidationDecision {
        recommend: false,
        reason,
        fresh_full_bytes,
        keep_cost: Cost::default(),
        consolidate_cost: Cost::default(),
        terms: ConsolidationTerms::default(),
        needs_confirmation: false,
        deletions: Vec::new(),
    };
    let Some(newest) = catalog.newest_restorable() else {
        return Ok(no(
            "no restorable backup yet: the first backup is a full anyway".into(),
            0,
        ));
    };
    let Some(full_bytes) = snapshot.full_bytes else {
        return Ok(no(
            format!("no size estimate for a full stream of {}", snapshot.name),
            0,
        ));
    };
    let limit = crate::limits::MAX_CATALOG_BYTES;
    let bad_size = |field: &str, v: u64| crate::Error::InvalidInput {
        field: format!("LocalSnapshot::{field}"),
        problem: format!("of {} is {v} bytes, more than {limit}", snapshot.name),
    };
    if full_bytes > limit {
        return Err(bad_size("full_bytes", full_bytes));
    }
    let chain = catalog.chain(&newest.id)?;
    let already_backed_up = catalog.backups().iter().any(|b| b.snapshot == snapshot.id);
    let replaced_incremental = if already_backed_up {
        None
    } else {
        let bytes = snapshot.incremental.as_ref().map_or(0, |e| e.bytes);
        if bytes > limit {
            return Err(bad_size("incremental.bytes", bytes));
        }
        Some(bytes)
    };
    if chain.len() == 1 && replaced_incremental.is_none() {
        return Ok(no("the newest backup is already a full".into(), full_bytes));
    }
    let local_sizes: HashMap<&SnapshotId, u64> = local
        .iter()
        .filter_map(|s| s.full_bytes.map(|f| (&s.id, f)))
        .collect();

    // What the fresh full releases: at its commit, the backups only the oldest kept
    // restore point needs; once it has keep − 1 successors, everything the kept points
    // need now.
    let keep = policy.keep_restore_points as usize;
    let needed_now = catalog.needed_by_newest(keep);
    let needed_after_commit = catalog.needed_by_newest(keep - 1);
    let cadence = f64::from(policy.backups_per_month);
    let grace_months = f64::from(policy.grace_days) / prices.days_per_month;
    // The superseded chain stays until the grace period ends, the next backup has
    // committed, and the fresh full has keep − 1 successors.
    let hold_months = grace_months
        .max(1.0 / cadence)
        .max(f64::from(policy.keep_restore_points - 1) / cadence);
    let hold_until = now.plus_secs((hold_months * prices.days_per_month * DAY_SECS as f64) as i64);

    // The vanished fraction of each chain member, against the fresh full.
    let mut written_after: HashMap<&BackupId, u64> = HashMap::new();
    let mut written = replaced_incremental.unwrap_or(0);
    for b in chain.iter().rev() {
        written_after.insert(&b.id, written);
        written = written.saturating_add(b.stored_bytes);
    }
    let vanished_of = |b: &RemoteBackup| -> Option<f64> {
        let point = snapshot_size(b, &local_sizes)?;
        let written = *written_after.get(&b.id)?;
        Some(vanished_fraction(point, written, full_bytes))
    };
    let reason = format!(
        "superseded by a fresh full of {}; not needed by the newest {} restore point(s)",
        snapshot.name, policy.keep_restore_points
    );
    let deletions: Vec<Deletion> = catalog
        .backups()
        .iter()
        .rev()
        .filter(|b| needed_now.contains(&b.id) && !needed_after_commit.contains(&b.id))
        .map(|b| {
            let not_before = b
                .created
                .plus_days(i64::from(policy.min_age_days))
                .max(now.plus_days(i64::from(policy.grace_days)));
            let vanished = vanished_of(b);
            Deletion {
                backup: b.id.clone(),
                not_before,
                requires_backup_after: Some(now),
                early_deletion_fee: cost::early_deletion_fee(
                    prices,
                    b.stored_bytes,
                    b.objects(),
                    not_before.days_since(b.created),
                ),
                vanished_fraction: vanished,
                needs_confirmation: vanished.is_some_and(|v| v > policy.max_vanished_fraction),
                steps: delete_steps(b),
                reason: reason.clone(),
            }
        })
        .collect();
    let needs_confirmation = deletions.iter().any(|d| d.needs_confirmation);

    // The superseded backups' costs: monthly storage, and how long each is still paid for
    // after a consolidation now (until the later of its minimum age and the hold).
    let eventual: Vec<&RemoteBackup> = catalog
        .backups()
        .iter()
        .filter(|b| needed_now.contains(&b.id))
        .collect();
    let horizon = f64::from(policy.horizon_months);
    let min_paid_months =
        f64::from(policy.min_age_days.max(prices.min_storage_days)) / prices.days_per_month;
    let mut keep_cost = Cost::default();
    let mut tail = Cost::default();
    // Per superseded backup: its monthly cost and the months it is still paid for after
    // a consolidation now (lingering until it may go, or the equivalent fee).
    let mut paid_months: Vec<(f64, f64)> = Vec::new();
    for b in &eventual {
        let monthly = cost::monthly_storage(prices, b.stored_bytes, b.objects());
        keep_cost += monthly.scaled(horizon);
        let goes = b
            .created
            .plus_days(i64::from(policy.min_age_days))
            .max(hold_until);
        let lingering = months_between(prices, now, goes).min(horizon);
        let fee = cost::early_deletion_fee(
            prices,
            b.stored_bytes,
            b.objects(),
            goes.days_since(b.created),
        );
        tail += monthly.scaled(lingering);
        tail.early_deletion += fee;
        let per_month = monthly.total();
        if per_month > 0.0 {
            paid_months.push((per_month, lingering + fee / per_month));
        }
    }

    // Waste.
    let chain_bytes: u64 = chain
        .iter()
        .map(|b| b.stored_bytes)
        .sum::<u64>()
        .saturating_add(replaced_incremental.unwrap_or(0));
    let waste = chain_bytes.saturating_sub(full_bytes);

    // Uploads.
    let shape = policy.upload_shape();
    let full_up = cost::upload(prices, &shape, full_bytes)?;
    let replaced_up = match replaced_incremental {
        Some(b) => Some(cost::upload(prices, &shape, b)?),
        None => None,
    };
    if let Some(up) = &replaced_up {
        let bytes = replaced_incremental.unwrap_or(0);
        keep_cost += up.cost + cost::monthly_storage(prices, bytes, up.volumes + 1).scaled(horizon);
    }
    let mut consolidate_cost = full_up.cost
        + cost::monthly_storage(prices, full_bytes, full_up.volumes + 1)
            .scaled(horizon.max(min_paid_months))
        + tail;

    // The expected restore: the chain as it is against the fresh full alone, weighted by
    // the restores expected over the horizon (and per month, for the timing rule).
    let restore_options = assumed_restore();
    let chain_volumes: u64 = chain.iter().map(|b| b.volumes.len() as u64).sum::<u64>()
        + replaced_up.as_ref().map_or(0, |u| u.volumes);
    let restore_keep = cost::restore_estimate(prices, &restore_options, chain_bytes, chain_volumes);
    let restore_cons =
        cost::restore_estimate(prices, &restore_options, full_bytes, full_up.volumes);
    let delay = policy.delay_cost_per_month;
    let per_month_restores = policy.restores_per_year / 12.0;
    let keep_restore = restore_keep.cost.total() + delay * restore_keep.months;
    let cons_restore = restore_cons.cost.total() + delay * restore_cons.months;
    let restore_gap = (keep_restore - cons_restore).max(0.0);
    keep_cost += restore_keep.cost.scaled(per_month_restores * horizon);
    consolidate_cost += restore_cons.cost.scaled(per_month_restores * horizon);
    // Waiting is priced as money only in the terms below (it is no line on a bill).
    let keep_total = keep_cost.total() + per_month_restores * horizon * delay * restore_keep.months;
    let consolidate_total =
        consolidate_cost.total() + per_month_restores * horizon * delay * restore_cons.months;

    let rate_per_byte = prices.archive_storage_per_gb_month / crate::GB as f64;
    // A wasted byte's monthly cost: stored, and restored with the probability of a
    // restore this month.
    let restore_per_byte = if waste > 0 {
        restore_gap / waste as f64
    } else {
        0.0
    };
    let waste_rate = rate_per_byte + per_month_restores * restore_per_byte;

    let mut terms = ConsolidationTerms {
        chain_bytes,
        fresh_full_bytes: full_bytes,
        waste_bytes: waste,
        projection: Projection::default(),
        waste_storage_per_month: rate_per_byte * waste as f64,
        restore_keep: keep_restore,
        restore_keep_months: restore_keep.months,
        restore_consolidated: cons_restore,
        restore_consolidated_months: restore_cons.months,
        waste_restore_per_month: per_month_restores * restore_gap,
        once: 0.0,
        steady_per_month: 0.0,
        wait_months: None,
    };
    if waste == 0 {
        return Ok(ConsolidationDecision {
            reason: format!(
                "a fresh full ({}) would not be smaller than the chain ({})",
                human_bytes(full_bytes),
                human_bytes(chain_bytes)
            ),
            keep_cost,
            consolidate_cost,
            terms,
            ..no(String::new(), full_bytes)
        });
    }

    // The projection: learned from the history, else from the chain's age.
    let base = snapshot.incremental.as_ref().map(|e| &e.base);
    let new_interval = match (base, replaced_incremental) {
        (Some(b), Some(i)) => Some((b, i, full_bytes)),
        _ => None,
    };
    let age_months = months_between(prices, chain[0].created, now).max(1.0);
    let mut projection =
        history::learn(catalog, local, new_interval, now, prices).unwrap_or(Projection {
            dying_bytes_per_month: waste as f64 / age_months,
            incremental_bytes_per_month: 0.0,
            ..Projection::default()
        });
    if projection.incremental_bytes_per_month == 0.0 {
        projection.incremental_bytes_per_month =
            recent_incremental_bytes(&chain, now, prices, replaced_incremental, cadence);
    }
    if let Some(w) = policy.growth.waste_bytes_per_month {
        projection.dying_bytes_per_month = w as f64;
    }
    if let Some(i) = policy.growth.incremental_bytes_per_month {
        projection.incremental_bytes_per_month = i as f64;
    }
    terms.projection = projection;
    let growth = projection.dying_bytes_per_month;
    let inc_per_month = projection.incremental_bytes_per_month;

    // A purge catching the fresh full before its minimum duration leaves that data stuck
    // in it until then: expected cost ∫₀ᴬ μe^(−μτ)·c·f·F·(A − τ) dτ.
    let mu = projection.purges_per_month;
    let purge_bytes = projection.purge_fraction * full_bytes as f64;
    let stuck = if mu > 0.0 {
        let a = min_paid_months;
        waste_rate * purge_bytes * (a - (1.0 - (-mu * a).exp()) / mu)
    } else {
        0.0
    };

    let replaced_upload = replaced_up.as_ref().map_or(0.0, |u| u.cost.total());
    let net_once = (full_up.cost.total() - replaced_upload + tail.total()).max(0.0) + stuck;
    let steady = steady_cost_per_month(&Cycle {
        cadence,
        min_paid_months,
        hold_months,
        upload: (full_up.cost.total() - replaced_upload).max(0.0) + stuck,
        full_per_month: rate_per_byte * full_bytes as f64,
        incremental_per_month: rate_per_byte * inc_per_month / cadence,
        waste_growth_cost: waste_rate * growth,
    });

    // Consolidating now costs `net_once`; waiting d months holds the waste meanwhile (and
    // what a purge would add to it), saves the steady cost of those months, and lets
    // superseded backups age while new incrementals add their own tail.
    let holding = waste_rate * waste as f64;
    let tail_after = |d: f64| -> f64 {
        let existing: f64 = paid_months
            .iter()
            .map(|(per_month, months)| per_month * (months - d).max(hold_months))
            .sum();
        // The incrementals sent while waiting — this snapshot's now, and one per backup
        // interval after it, but not the one at d, which the full replaces — are
        // superseded young.
        let per_backup = rate_per_byte * inc_per_month / cadence;
        let new_ones = (0..(d * cadence).round() as u32)
            .map(|j| (min_paid_months - (d - f64::from(j) / cadence)).max(hold_months) * per_backup)
            .sum::<f64>();
        existing + new_ones
    };
    let tail_now = tail.total();
    // Waiting is tried in whole backup intervals up to the minimum duration.
    let wait_limit = (min_paid_months * cadence).ceil().max(1.0) as u32;
    let better_wait = (1..=wait_limit).map(|j| f64::from(j) / cadence).find(|&d| {
        let held = holding * d + waste_rate * growth * d * d / 2.0;
        let purge_held = waste_rate * purge_bytes * mu * d * d / 2.0;
        held + purge_held - steady * d + tail_after(d) - tail_now < 0.0
    });
    terms.once = net_once;
    terms.steady_per_month = steady;
    terms.wait_months = better_wait;
    let timely = better_wait.is_none();
    let cheaper = consolidate_total < keep_total;
    let confirm = if needs_confirmation {
        format!(
            "; deleting the old chain needs confirmation: more than {:.0} % of a restore point's data is gone from {}",
            policy.max_vanished_fraction * 100.0,
            snapshot.name
        )
    } else {
        String::new()
    };
    let figures = format!(
        "chain {} over {} backup(s), fresh full {}, waste {}; data dying {}/month{}; \
         the waste costs ${:.4}/month stored + ${:.4}/month of expected restore \
         (a restore now: ${:.2} over {:.1} months as it is, ${:.2} over {:.1} months consolidated, \
         counting ${delay:.2} per month of waiting, {} restores a year); \
         a fresh full costs ${net_once:.2} once, ${steady:.4}/month in steady state; \
         over {} months keep ${keep_total:.2} vs consolidate ${consolidate_total:.2}{confirm}",
        human_bytes(chain_bytes),
        chain.len() + usize::from(replaced_incremental.is_some()),
        human_bytes(full_bytes),
        human_bytes(waste),
        human_bytes(growth as u64),
        if mu > 0.0 {
            format!(
                ", purges of {:.0} % every {:.1} months",
                projection.purge_fraction * 100.0,
                1.0 / mu
            )
        } else {
            String::new()
        },
        terms.waste_storage_per_month,
        terms.waste_restore_per_month,
        keep_restore,
        restore_keep.months,
        cons_restore,
        restore_cons.months,
        policy.restores_per_year,
        policy.horizon_months,
    );
    let (recommend, reason) = match (policy.consolidation, cheaper, timely) {
        (ConsolidationMode::Never, ..) => (
            false,
            format!("consolidation is off (policy never); {figures}"),
        ),
        (ConsolidationMode::Auto, true, true) => {
            (true, format!("a fresh full pays for itself: {figures}"))
        }
        (ConsolidationMode::Auto, false, _) => (
            false,
            format!("a fresh full would not pay for itself within the horizon: {figures}"),
        ),
        (ConsolidationMode::Auto, true, false) => (
            false,
            format!(
                "cheaper within the horizon, but waiting is cheaper still (waiting {} month(s) beats consolidating now): {figures}",
                better_wait.unwrap_or(0.0)
            ),
        ),
    };
    Ok(ConsolidationDecision {
        recommend,
        reason,
        fresh_full_bytes: full_bytes,
        keep_cost,
        consolidate_cost,
        terms,
        needs_confirmation,
        deletions,
    })
}

/// A typical consolidation cycle, for the steady-state cost.
struct Cycle {
    /// Backups per month.
    cadence: f64,
    /// Months a superseded backup is paid for at least (its minimum duration).
    min_paid_months: f64,
    /// Months the superseded chain is held after a consolidation at least (grace
    /// period, next backup, kept restore points).
    hold_months: f64,
    /// The upload of a full, less the incremental it replaces, plus the purge risk.
    upload: f64,
    /// The full's storage per month.
    full_per_month: f64,
    /// One incremental's storage per month.
    incremental_per_month: f64,
    /// How much more the waste costs each month.
    waste_growth_cost: f64,
}

/// The least average cost per month of consolidating every T months, searched over
/// whole backup intervals up to 50 years: per cycle, the upload, the superseded chain's
/// storage after the consolidation (its full and each incremental until the later of
/// its minimum duration and the hold), and the waste held during the cycle, divided by T.
fn steady_cost_per_month(c: &Cycle) -> f64 {
    let mut best = f64::INFINITY;
    // Σ over the incrementals of one cycle of the months each is paid after it ends.
    let mut incremental_months = 0.0;
    for k in 1..=(600.0 * c.cadence) as u32 {
        let k = f64::from(k);
        let months = k / c.cadence;
        if k > 1.0 {
            // The incremental k − 1 backups old at the cycle's end.
            let age = (k - 1.0) / c.cadence;
            incremental_months += (c.min_paid_months - age).max(c.hold_months);
        }
        let full_tail = c.full_per_month * (c.min_paid_months - months).max(c.hold_months);
        let held = c.waste_growth_cost * k * (k - 1.0) / (2.0 * c.cadence * c.cadence);
        let per_month =
            (c.upload + full_tail + c.incremental_per_month * incremental_months + held) / months;
        if per_month < best {
            best = per_month;
        } else if held / months > best {
            // The waste alone now costs more than the best cycle: longer ones only cost
            // more.
            break;
        }
    }
    best
}

/// How far back incremental sizes are averaged when the history has no sizes.
const GROWTH_WINDOW_DAYS: i64 = 180;

/// Incremental bytes per month lately: the chain's incrementals of the last
/// [`GROWTH_WINDOW_DAYS`] (and the one being replaced), or the replaced one at the
/// policy's cadence.
fn recent_incremental_bytes(
    chain: &[&RemoteBackup],
    now: UnixTime,
    prices: &PriceTable,
    replaced: Option<u64>,
    cadence: f64,
) -> f64 {
    let window_start = now.plus_days(-GROWTH_WINDOW_DAYS);
    let recent: Vec<&&RemoteBackup> = chain
        .iter()
        .skip(1)
        .filter(|b| b.created >= window_start)
        .collect();
    match recent.first() {
        Some(oldest) => {
            let months = months_between(prices, oldest.created, now);
            let bytes: u64 =
                recent.iter().map(|b| b.stored_bytes).sum::<u64>() + replaced.unwrap_or(0);
            bytes as f64 / (months + 1.0 / cadence)
        }
        None => replaced.unwrap_or(0) as f64 * cadence,
    }
}
