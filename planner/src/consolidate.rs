//! Consolidation: replace a long chain by a fresh full when that saves money, and
//! pruning: which backups no kept restore point needs, and when each may go.
//!
//! The rule (docs/COSTS.md has the derivation). Let W be the bytes by which the chain
//! (plus the incremental a fresh full would replace) exceeds the fresh full — data deleted
//! or rewritten since the chain's full — T the chain's age in months, w the waste growth
//! per month (projected, or W/T), r the archive rate and C the fresh full's net one-time
//! cost (its upload requests minus the replaced incremental's, plus the storage of the
//! superseded backups until their minimum age, plus any early-deletion fees).
//! A consolidation is recommended when both hold:
//! 1. over the horizon H it is cheaper: C + r·F·max(H, minimum) < r·(chain)·H for the
//!    parts that differ (everything projected after it is common to both sides);
//! 2. now is the right time: with waste growing by w a month, consolidating every T
//!    months costs on average C/T + r·w·(T−1)/2 a month, which is least once
//!    T(T+1) > 2C/(r·w) — the economic-order-quantity renewal point √(2C/(r·w)). In
//!    terms of today's waste W = w·T: r·W·(W + w) ≥ 2·C·w. It looks forward (w is the
//!    recent growth, measured from the local snapshots' sizes over the last 180 days),
//!    so a chain that was clean for years and has just started to churn is not
//!    consolidated on the first few gigabytes of waste; and a burst of deletions with no
//!    further churn (w = 0) is consolidated as soon as condition 1 holds.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cost::{self, human_bytes, Cost};
use crate::{
    BackupId, BackupKind, Catalog, ConsolidationMode, LocalSnapshot, Policy, PriceTable,
    RemoteBackup, Result, UnixTime,
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
    /// Not before this instant: created + the policy's minimum age.
    pub not_before: UnixTime,
    /// Minimum-duration fee if deleted at `not_before` (zero unless the policy's minimum
    /// age is below the archive minimum).
    pub early_deletion_fee: f64,
    /// Delete these objects, in this order.
    pub steps: Vec<DeleteStep>,
    /// Why it may go.
    pub reason: String,
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
    /// Cost over the horizon of keeping the chain.
    pub keep_cost: Cost,
    /// Cost over the horizon of consolidating now.
    pub consolidate_cost: Cost,
    /// What becomes deletable once the fresh full is committed — never before — newest
    /// first (dependents before their bases). Listed whether or not it is recommended.
    pub deletions: Vec<Deletion>,
}

fn months_between(prices: &PriceTable, from: UnixTime, to: UnixTime) -> f64 {
    (to.days_since(from) / f64::from(prices.days_per_month)).max(0.0)
}

fn deletion_for(
    b: &RemoteBackup,
    policy: &Policy,
    prices: &PriceTable,
    now: UnixTime,
    reason: String,
) -> Deletion {
    let not_before = b.created.plus_days(i64::from(policy.min_age_days)).max(now);
    let age = not_before.days_since(b.created);
    let mut steps = vec![DeleteStep::Manifest];
    steps.extend((0..b.volumes.len() as u32).map(DeleteStep::Volume));
    Deletion {
        backup: b.id.clone(),
        not_before,
        early_deletion_fee: cost::early_deletion_fee(prices, b.stored_bytes, b.objects(), age),
        steps,
        reason,
    }
}

/// Backups that the newest `keep_restore_points` restore points do not need, each with
/// the earliest instant it may be deleted (its minimum age) and its delete steps, newest
/// first. The engine deletes those whose `not_before` has passed and asks again later
/// for the rest.
///
/// # Errors
/// [`crate::Error::InvalidPolicy`] or [`crate::Error::InvalidPrices`].
pub fn plan_pruning(
    catalog: &Catalog,
    policy: &Policy,
    prices: &PriceTable,
    now: UnixTime,
) -> Result<Vec<Deletion>> {
    policy.validate()?;
    prices.validate()?;
    let needed = catalog.needed_by_newest(policy.keep_restore_points as usize);
    Ok(catalog
        .backups()
        .iter()
        .rev()
        .filter(|b| !needed.contains(&b.id))
        .map(|b| {
            let reason = format!(
                "not needed by the newest {} restore point(s)",
                policy.keep_restore_points
            );
            deletion_for(b, policy, prices, now, reason)
        })
        .collect())
}

/// Whether a fresh full of `snapshot` should replace the chain now, with both sides'
/// cost over the policy's horizon and what becomes deletable once it is committed.
///
/// `snapshot` is either a new snapshot (the fresh full replaces the incremental that would
/// otherwise carry it) or the snapshot of the newest backup. Its `full_bytes` estimate is
/// required for a recommendation. `local` (all local snapshots, with their full-size
/// estimates where known) lets the planner measure how fast the waste grew recently.
///
/// # Errors
/// [`crate::Error::InvalidPolicy`] or [`crate::Error::InvalidPrices`].
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
    let no = |reason: String, fresh_full_bytes: u64| ConsolidationDecision {
        recommend: false,
        reason,
        fresh_full_bytes,
        keep_cost: Cost::default(),
        consolidate_cost: Cost::default(),
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
    let chain = catalog.chain(&newest.id)?;
    let already_backed_up = catalog.backups().iter().any(|b| b.snapshot == snapshot.id);
    let replaced_incremental = if already_backed_up {
        None
    } else {
        Some(snapshot.incremental.as_ref().map_or(0, |e| e.bytes))
    };
    if chain.len() == 1 && replaced_incremental.is_none() {
        return Ok(no("the newest backup is already a full".into(), full_bytes));
    }

    // What the catalog would look like with the fresh full committed: that decides
    // what the kept restore points still need.
    let fresh_id = BackupId(String::from("(fresh full)"));
    let mut hypothetical = catalog.backups().to_vec();
    hypothetical.push(RemoteBackup {
        id: fresh_id.clone(),
        kind: BackupKind::Full,
        snapshot: snapshot.id.clone(),
        created: now.max(newest.created.plus_secs(1)),
        stored_bytes: full_bytes,
        volumes: vec![full_bytes],
        parts: 0,
    });
    let after = Catalog::new(hypothetical)?;
    let needed = after.needed_by_newest(policy.keep_restore_points as usize);
    let reason = format!(
        "superseded by a fresh full of {}; not needed by the newest {} restore point(s)",
        snapshot.name, policy.keep_restore_points
    );
    let deletions: Vec<Deletion> = catalog
        .backups()
        .iter()
        .rev()
        .filter(|b| !needed.contains(&b.id))
        .map(|b| deletion_for(b, policy, prices, now, reason.clone()))
        .collect();

    let shape = policy.upload_shape();
    let horizon = f64::from(policy.horizon_months);
    let min_months = f64::from(prices.min_storage_days) / f64::from(prices.days_per_month);
    let by_id: HashMap<&BackupId, &RemoteBackup> =
        catalog.backups().iter().map(|b| (&b.id, b)).collect();

    // Side A, keep: the incremental is uploaded and everything stays for the horizon.
    let mut keep = Cost::default();
    if let Some(bytes) = replaced_incremental {
        let up = cost::upload(prices, &shape, bytes);
        keep += up.cost + cost::monthly_storage(prices, bytes, up.volumes + 1).scaled(horizon);
    }
    // Side B, consolidate: the fresh full, held at least its minimum duration, and the
    // superseded backups until their deletion (plus early fees).
    let full_up = cost::upload(prices, &shape, full_bytes);
    let mut consolidate = full_up.cost
        + cost::monthly_storage(prices, full_bytes, full_up.volumes + 1)
            .scaled(horizon.max(min_months));
    let mut tail = Cost::default();
    for d in &deletions {
        let Some(b) = by_id.get(&d.backup) else {
            continue;
        };
        let monthly = cost::monthly_storage(prices, b.stored_bytes, b.objects());
        keep += monthly.scaled(horizon);
        let lingering = months_between(prices, now, d.not_before).min(horizon);
        tail += monthly.scaled(lingering);
        tail.early_deletion += d.early_deletion_fee;
    }
    consolidate += tail;

    // Waste and its growth.
    let chain_bytes: u64 =
        chain.iter().map(|b| b.stored_bytes).sum::<u64>() + replaced_incremental.unwrap_or(0);
    let waste = chain_bytes.saturating_sub(full_bytes);
    if waste == 0 {
        return Ok(ConsolidationDecision {
            reason: format!(
                "a fresh full ({}) would not be smaller than the chain ({})",
                human_bytes(full_bytes),
                human_bytes(chain_bytes)
            ),
            keep_cost: keep,
            consolidate_cost: consolidate,
            ..no(String::new(), full_bytes)
        });
    }
    let age_months = months_between(prices, chain[0].created, now).max(1.0);
    let growth = match policy.growth.waste_bytes_per_month {
        Some(w) => w as f64,
        None => recent_waste_growth(&chain, local, waste, now, prices)
            .unwrap_or(waste as f64 / age_months),
    };
    let rate_per_byte = prices.archive_storage_per_gb_month / crate::GB as f64;
    let mut net_once = full_up.cost.total() + tail.total();
    if let Some(bytes) = replaced_incremental {
        net_once -= cost::upload(prices, &shape, bytes).cost.total();
    }
    let net_once = net_once.max(0.0);
    // Renewal rule: with waste growing by w a month, cycles of T months cost on average
    // C/T + r·w·(T−1)/2 a month, which stops falling once T(T+1) > 2C/(r·w); in terms of
    // the waste W = w·T that is r·W·(W + w) ≥ 2·C·w.
    let holding = rate_per_byte * waste as f64;
    let timely = holding * (waste as f64 + growth) >= 2.0 * net_once * growth;
    let cheaper = consolidate.total() < keep.total();
    let figures = format!(
        "chain {} over {} backup(s), fresh full {}, waste {} growing {}/month; over {} months keep ${:.2} vs consolidate ${:.2}; the waste costs ${holding:.4}/month, a fresh full ${net_once:.2} once",
        human_bytes(chain_bytes),
        chain.len() + usize::from(replaced_incremental.is_some()),
        human_bytes(full_bytes),
        human_bytes(waste),
        human_bytes(growth as u64),
        policy.horizon_months,
        keep.total(),
        consolidate.total(),
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
            format!("cheaper within the horizon, but waiting is cheaper still: {figures}"),
        ),
    };
    Ok(ConsolidationDecision {
        recommend,
        reason,
        fresh_full_bytes: full_bytes,
        keep_cost: keep,
        consolidate_cost: consolidate,
        deletions,
    })
}

/// How fast the chain's waste grew recently: compares today's waste with the waste at the
/// oldest chain member of the last [`GROWTH_WINDOW_DAYS`] whose snapshot still exists
/// locally with a full-size estimate. `None` when there is no such member.
fn recent_waste_growth(
    chain: &[&RemoteBackup],
    local: &[LocalSnapshot],
    waste_now: u64,
    now: UnixTime,
    prices: &PriceTable,
) -> Option<f64> {
    let window_start = now.plus_days(-GROWTH_WINDOW_DAYS);
    let mut cumulative = 0u64;
    for b in chain {
        cumulative += b.stored_bytes;
        if b.created < window_start || b.created >= now {
            continue;
        }
        let Some(full_then) = local
            .iter()
            .find(|s| s.id == b.snapshot)
            .and_then(|s| s.full_bytes)
        else {
            continue;
        };
        let months = months_between(prices, b.created, now);
        if months <= 0.0 {
            continue;
        }
        let waste_then = cumulative.saturating_sub(full_then);
        return Some((waste_now as f64 - waste_then as f64).max(0.0) / months);
    }
    None
}

/// How far back the recent waste growth is measured.
const GROWTH_WINDOW_DAYS: i64 = 180;
