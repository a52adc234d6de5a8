//! Consolidation: replace a long chain by a fresh full when that saves money, and
//! pruning: which backups no kept restore point needs, and when each may go.
//!
//! The rule (docs/COSTS.md has the derivation). Let F be the fresh full's size, W the
//! bytes by which the chain (plus the incremental the full would replace) exceeds F —
//! data deleted or rewritten since the chain's full — w how fast W grew lately (bytes per
//! month), r the archive rate, and C(now) the one-time cost of consolidating now: the
//! full's upload requests minus the replaced incremental's, plus what the superseded
//! backups are still paid for until their minimum duration (storage or early fee).
//! A consolidation is recommended when both hold:
//! 1. **It pays within the horizon** H: C + r·F·max(H, minimum) is less than keeping the
//!    superseded backups for H months (what comes after is the same on both sides).
//! 2. **Waiting does not pay.** In steady state, consolidating every T months costs on
//!    average g(T) = C₀/T + r·w·(T−1)/2 a month, with C₀ the cost of a typical
//!    consolidation (upload plus the youngest incrementals' minimum duration); its least
//!    value g* is the economic-order-quantity renewal cost (T* ≈ √(2C₀/(r·w))). Waiting d
//!    months instead of consolidating now holds the waste, Σₖ r·(W + k·w), saves g*·d of
//!    the steady cost, and changes what superseded backups are still paid for (young ones
//!    age; new incrementals add their own). Consolidate now only if no d up to the minimum
//!    duration makes waiting cheaper. With steady churn this fires when r·W ≥ g*; after a
//!    burst of deletions (w ≈ 0) it fires at once, unless a recent full would then be
//!    paid for months while superseded, in which case it waits until that costs less than
//!    the waste.
//!
//! w is measured, not assumed: the change in waste since the oldest chain member of the
//! last 180 days whose snapshot still exists locally with a size estimate (else W over the
//! chain's age), unless the policy's growth projection says otherwise.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cost::{self, human_bytes, Cost};
use crate::{
    BackupId, BackupKind, Catalog, ConsolidationMode, LocalSnapshot, Policy, PriceTable,
    RemoteBackup, Result, UnixTime, DAY_SECS,
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
    /// What the fresh full makes deletable once it is committed — never before — newest
    /// first (dependents before their bases). Listed whether or not it is recommended.
    /// Backups that were already unneeded are [`plan_pruning`]'s business and not listed.
    pub deletions: Vec<Deletion>,
}

fn months_between(prices: &PriceTable, from: UnixTime, to: UnixTime) -> f64 {
    (to.days_since(from) / prices.days_per_month).max(0.0)
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
        snapshot_bytes: Some(full_bytes),
    });
    let after = Catalog::new(hypothetical)?;
    let needed = after.needed_by_newest(policy.keep_restore_points as usize);
    // Backups no kept restore point needs even now are pruned either way (see
    // `plan_pruning`); only what the fresh full releases differs between the two sides.
    let needed_now = catalog.needed_by_newest(policy.keep_restore_points as usize);
    let released_by_full = |b: &&RemoteBackup, still: &std::collections::HashSet<BackupId>| {
        needed_now.contains(&b.id) && !still.contains(&b.id)
    };
    let reason = format!(
        "superseded by a fresh full of {}; not needed by the newest {} restore point(s)",
        snapshot.name, policy.keep_restore_points
    );
    let deletions: Vec<Deletion> = catalog
        .backups()
        .iter()
        .rev()
        .filter(|b| released_by_full(b, &needed))
        .map(|b| deletion_for(b, policy, prices, now, reason.clone()))
        .collect();

    // With more than one restore point kept, the superseded chain stays until the fresh
    // full has enough successors; project them at the policy's cadence to see when each
    // superseded backup can really go (this drives the costs, not the list above).
    let cadence = f64::from(policy.backups_per_month);
    let interval_secs = (prices.days_per_month * DAY_SECS as f64 / cadence) as i64;
    let structural_months = f64::from(policy.keep_restore_points - 1) / cadence;
    let inc_per_month = policy.growth.incremental_bytes_per_month.map_or_else(
        || recent_incremental_bytes(&chain, now, prices, replaced_incremental, cadence),
        |b| b as f64,
    );
    let mut projected = after.backups().to_vec();
    let mut previous = fresh_id.clone();
    let fresh_created = now.max(newest.created.plus_secs(1));
    for j in 1..policy.keep_restore_points {
        let id = BackupId(format!("(projected incremental {j})"));
        let bytes = (inc_per_month / cadence) as u64;
        projected.push(RemoteBackup {
            id: id.clone(),
            kind: BackupKind::Incremental { base: previous },
            snapshot: crate::SnapshotId(id.0.clone()),
            created: fresh_created.plus_secs(i64::from(j) * interval_secs),
            stored_bytes: bytes,
            volumes: vec![bytes],
            parts: 0,
            snapshot_bytes: None,
        });
        previous = id;
    }
    let still_needed =
        Catalog::new(projected)?.needed_by_newest(policy.keep_restore_points as usize);
    let released =
        now.plus_secs((structural_months * prices.days_per_month * DAY_SECS as f64) as i64);
    let eventual: Vec<Deletion> = catalog
        .backups()
        .iter()
        .filter(|b| released_by_full(b, &still_needed))
        .map(|b| deletion_for(b, policy, prices, released, String::new()))
        .collect();

    let shape = policy.upload_shape();
    let horizon = f64::from(policy.horizon_months);
    let min_months = f64::from(prices.min_storage_days) / prices.days_per_month;
    let by_id: HashMap<&BackupId, &RemoteBackup> =
        catalog.backups().iter().map(|b| (&b.id, b)).collect();

    // Side A, keep: the incremental is uploaded and everything stays for the horizon.
    let mut keep = Cost::default();
    if let Some(bytes) = replaced_incremental {
        let up = cost::upload(prices, &shape, bytes)?;
        keep += up.cost + cost::monthly_storage(prices, bytes, up.volumes + 1).scaled(horizon);
    }
    // Side B, consolidate: the fresh full, held at least its minimum duration, and the
    // superseded backups until their deletion (plus early fees).
    let full_up = cost::upload(prices, &shape, full_bytes)?;
    let mut consolidate = full_up.cost
        + cost::monthly_storage(prices, full_bytes, full_up.volumes + 1)
            .scaled(horizon.max(min_months));
    let mut tail = Cost::default();
    // Per superseded backup: its monthly cost and the months it is still paid for
    // (lingering until its minimum age, or the equivalent early-deletion fee).
    let mut paid_months: Vec<(f64, f64)> = Vec::new();
    let mut chain_paid_per_month = 0.0;
    for d in &eventual {
        let Some(b) = by_id.get(&d.backup) else {
            continue;
        };
        let monthly = cost::monthly_storage(prices, b.stored_bytes, b.objects());
        keep += monthly.scaled(horizon);
        let lingering = months_between(prices, now, d.not_before).min(horizon);
        tail += monthly.scaled(lingering);
        tail.early_deletion += d.early_deletion_fee;
        let per_month = monthly.total();
        if per_month > 0.0 {
            paid_months.push((per_month, lingering + d.early_deletion_fee / per_month));
        }
        chain_paid_per_month += per_month;
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
    let replaced_upload = match replaced_incremental {
        Some(b) => cost::upload(prices, &shape, b)?.cost.total(),
        None => 0.0,
    };
    let net_once = (full_up.cost.total() - replaced_upload + tail.total()).max(0.0);

    // The steady-state cost of a consolidation: the upload, and the youngest incrementals
    // of the superseded chain paid until their minimum duration (with c backups a month
    // and a minimum of m months, those of ages 1/c … m − 1/c: inc·m·(m·c − 1)/(2c)).
    let min_paid_months =
        f64::from(policy.min_age_days.max(prices.min_storage_days)) / prices.days_per_month;
    let typical_once = (full_up.cost.total() - replaced_upload).max(0.0)
        + rate_per_byte
            * inc_per_month
            * min_paid_months
            * (min_paid_months * cadence - 1.0).max(0.0)
            / (2.0 * cadence)
        // Kept restore points hold the superseded chain for a few more backups every time.
        + chain_paid_per_month * structural_months;
    let steady = renewal_cost_per_month(typical_once, rate_per_byte * growth, cadence);

    // Consolidating now costs `net_once`; waiting d months holds the waste meanwhile, saves
    // the steady cost of those months, and lets superseded backups age (what they are
    // still paid for shrinks) while the new incrementals' own tail grows.
    let holding = rate_per_byte * waste as f64;
    let tail_after = |d: f64| -> f64 {
        // Whenever it happens, superseded backups are held at least `structural_months`
        // (kept restore points); only what lies beyond that shrinks by waiting.
        let existing: f64 = paid_months
            .iter()
            .map(|(per_month, months)| per_month * (months - d).max(structural_months))
            .sum();
        let per_backup = rate_per_byte * inc_per_month / cadence;
        let new_ones = (1..=(d * cadence).round() as u32)
            .map(|j| {
                (min_paid_months - (d - f64::from(j) / cadence)).max(structural_months) * per_backup
            })
            .sum::<f64>();
        existing + new_ones
    };
    let tail_now = tail.total();
    let wait_limit = min_paid_months.ceil().max(1.0) as u32;
    let better_wait = (1..=wait_limit).map(f64::from).find(|&d| {
        let held: f64 = (0..d as u32)
            .map(|k| holding + rate_per_byte * growth * f64::from(k))
            .sum();
        held - steady * d + tail_after(d) - tail_now < 0.0
    });
    let timely = better_wait.is_none();
    let wait_months = better_wait.unwrap_or(0.0);
    let cheaper = consolidate.total() < keep.total();
    let figures = format!(
        "chain {} over {} backup(s), fresh full {}, waste {} growing {}/month; over {} months keep ${:.2} vs consolidate ${:.2}; the waste costs ${holding:.4}/month, a fresh full ${net_once:.2} once (${steady:.4}/month in steady state)",
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
            format!(
                "cheaper within the horizon, but waiting is cheaper still (waiting {wait_months} month(s) beats consolidating now): {figures}"
            ),
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

/// How fast the chain's waste grew recently: the change in waste since the oldest chain
/// member of the last [`GROWTH_WINDOW_DAYS`] whose snapshot still exists locally with a
/// full-size estimate, per month. `None` without such a member.
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

/// The least average cost per month of consolidating every T months when a consolidation
/// costs `once` and the waste costs `growth_cost` more each month (EOQ renewal, searched
/// over whole backup intervals of 1/`cadence` months, up to 50 years).
fn renewal_cost_per_month(once: f64, growth_cost: f64, cadence: f64) -> f64 {
    let mut best = f64::INFINITY;
    for k in 1..=(600.0 * cadence) as u32 {
        let k = f64::from(k);
        let held = growth_cost * k * (k - 1.0) / (2.0 * cadence * cadence);
        best = best.min((once + held) / (k / cadence));
    }
    best
}

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
