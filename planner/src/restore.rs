//! The restore schedule: a restore point's chain split into UTC-calendar-month batches
//! that stay within the monthly download budget, each with its restore request (tier,
//! days), download window and cost; the whole plan's cost, finish date and peak staging.
//!
//! Rules. Volumes are downloaded in chain order and never split across months. A month's
//! batch may hold up to the monthly budget (the current month: what is left of it, and
//! only what can still be downloaded before the month ends once the restore completes).
//! Restores for a month are requested at its start (the current month: now) and the
//! restored copies live just long enough to download the batch plus a slack. A stream
//! whose volumes all arrive in one batch is received as it downloads (one volume staged
//! at a time for verification); a stream spread over several months is staged whole
//! before it is received.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cost::{self, Cost};
use crate::{BackupId, Catalog, Error, Month, PriceTable, Result, Tier, UnixTime, DAY_SECS, GB};

/// How a restore may proceed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreOptions {
    /// Restore tier (Bulk by default).
    pub tier: Tier,
    /// Bytes that may be downloaded per UTC calendar month (default 100 GB = 100·2^30).
    pub monthly_budget_bytes: u64,
    /// What is left of the budget in the current month (the caller keeps track of what
    /// it downloaded this month; the default assumes nothing was).
    pub budget_remaining_this_month: u64,
    /// What is left of the account's free egress this month (it is account-wide, so
    /// other use of the account reduces it).
    pub free_egress_remaining_this_month: u64,
    /// Allow a volume larger than the monthly budget, alone in its month, with the excess
    /// billed as paid egress.
    pub allow_overrun: bool,
    /// Local bytes free for staging downloads. The caller measures it; the default, 0,
    /// refuses every plan, since even a streamed volume is staged for verification.
    pub staging_available_bytes: u64,
    /// Expected download rate, to size the restored copies' days.
    pub download_bytes_per_sec: u64,
    /// Extra days restored copies are kept beyond the expected download time.
    pub slack_days: u32,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            tier: Tier::Bulk,
            monthly_budget_bytes: 100 * GB,
            budget_remaining_this_month: 100 * GB,
            free_egress_remaining_this_month: 100 * GB,
            allow_overrun: false,
            staging_available_bytes: 0,
            download_bytes_per_sec: 5 << 20,
            slack_days: 1,
        }
    }
}

/// One volume to restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRef {
    /// The backup it belongs to.
    pub backup: BackupId,
    /// Its index within the backup.
    pub index: u32,
    /// Its size in bytes.
    pub bytes: u64,
}

/// One month's work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreBatch {
    /// The UTC calendar month the batch is downloaded in.
    pub month: Month,
    /// When to request the restores.
    pub request_at: UnixTime,
    /// Tier to request.
    pub tier: Tier,
    /// `Days` to request: how long restored copies live.
    pub restore_days: u32,
    /// When the copies are expected to be ready (request + the tier's typical time).
    pub download_from: UnixTime,
    /// When the restored copies expire (download before this).
    pub download_until: UnixTime,
    /// Volumes in chain order.
    pub volumes: Vec<VolumeRef>,
    /// Their total bytes.
    pub bytes: u64,
    /// Bytes beyond the month's free egress (billed).
    pub paid_egress_bytes: u64,
    /// Bytes of fully downloaded streams received into the file system this month.
    pub received_bytes: u64,
    /// This batch's cost.
    pub cost: Cost,
}

/// A whole restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The restore point.
    pub target: BackupId,
    /// Its chain, full first.
    pub chain: Vec<BackupId>,
    /// Bytes to download.
    pub total_bytes: u64,
    /// Month by month.
    pub batches: Vec<RestoreBatch>,
    /// Everything, summed.
    pub cost: Cost,
    /// When the last download is expected to finish.
    pub finish: UnixTime,
    /// The most local staging the plan needs at once.
    pub peak_staging_bytes: u64,
    /// Staging space that was available.
    pub staging_available_bytes: u64,
}

/// Plans the restore of `target` (its whole chain) starting `now`.
///
/// # Errors
/// [`Error::UnknownBackup`] / [`Error::BrokenChain`] for the target;
/// [`Error::BudgetBelowVolume`] when a volume exceeds the monthly budget and overrun is
/// not allowed; [`Error::StagingTooSmall`] when the plan needs more staging than is
/// available; invalid prices.
pub fn plan_restore(
    catalog: &Catalog,
    target: &BackupId,
    options: &RestoreOptions,
    prices: &PriceTable,
    now: UnixTime,
) -> Result<RestorePlan> {
    prices.validate()?;
    let chain = catalog.chain(target)?;
    let volumes: Vec<VolumeRef> = chain
        .iter()
        .flat_map(|b| {
            b.volumes.iter().enumerate().map(|(i, &bytes)| VolumeRef {
                backup: b.id.clone(),
                index: i as u32,
                bytes,
            })
        })
        .collect();
    let budget = options.monthly_budget_bytes;
    if let Some(big) = volumes
        .iter()
        .filter(|v| v.bytes > budget)
        .max_by_key(|v| v.bytes)
    {
        if !options.allow_overrun {
            return Err(Error::BudgetBelowVolume {
                budget,
                volume: big.bytes,
                backup: big.backup.clone(),
                volume_index: big.index,
            });
        }
    }
    let rate = options.download_bytes_per_sec.max(1);
    let thaw_secs = i64::from(prices.retrieval(options.tier).typical_hours) * 3600;

    // Pack volumes into months.
    let mut batches: Vec<(Month, UnixTime, Vec<VolumeRef>)> = Vec::new();
    let mut month = now.month();
    let mut first = true;
    let mut pending = volumes.into_iter().peekable();
    while pending.peek().is_some() {
        let request_at = if first { now } else { month.start() };
        let ready = request_at.plus_secs(thaw_secs);
        // Only the current month can be cut short by the calendar: later batches start
        // on the 1st with the whole month ahead of them.
        let cap = if first {
            let secs_left = (month.end().0 - ready.0).max(0) as u64;
            options
                .budget_remaining_this_month
                .min(budget)
                .min(secs_left.saturating_mul(rate))
        } else {
            budget
        };
        // A volume larger than the budget may go alone into a month whose whole budget
        // is still available, if the user allowed the overrun.
        let full_month = cap >= budget;
        let mut batch = Vec::new();
        let mut used = 0u64;
        while let Some(v) = pending.peek() {
            let fits = used + v.bytes <= cap;
            let overrun = batch.is_empty() && full_month && v.bytes > budget;
            if !(fits || overrun) {
                break;
            }
            used += v.bytes;
            if let Some(v) = pending.next() {
                batch.push(v);
            }
            if overrun {
                break;
            }
        }
        if !batch.is_empty() {
            batches.push((month, request_at, batch));
        }
        first = false;
        month = month.next();
    }

    // Staging: which streams span more than one batch.
    let mut batches_of: HashMap<BackupId, (usize, usize)> = HashMap::new();
    for (i, (_, _, vols)) in batches.iter().enumerate() {
        for v in vols {
            let e = batches_of.entry(v.backup.clone()).or_insert((i, i));
            e.1 = i;
        }
    }
    let stream_bytes: HashMap<&BackupId, u64> =
        chain.iter().map(|b| (&b.id, b.stored_bytes)).collect();
    let volume_count: HashMap<&BackupId, usize> =
        chain.iter().map(|b| (&b.id, b.volumes.len())).collect();
    let mut staged = 0u64;
    let mut peak = 0u64;
    let mut peak_reason = String::new();

    let mut out = Vec::new();
    let mut total = Cost::default();
    let mut finish = now;
    for (i, (month, request_at, vols)) in batches.into_iter().enumerate() {
        let bytes: u64 = vols.iter().map(|v| v.bytes).sum();
        let mut received = 0u64;
        for v in &vols {
            let (a, b) = batches_of.get(&v.backup).copied().unwrap_or((i, i));
            let spans = a != b;
            if spans {
                staged += v.bytes;
                if staged > peak {
                    peak = staged;
                    peak_reason = format!(
                        "backup {} ({} bytes) is downloaded over several months and must be staged whole before it is received",
                        v.backup,
                        stream_bytes.get(&v.backup).copied().unwrap_or(0)
                    );
                }
            } else if staged + v.bytes > peak {
                peak = staged + v.bytes;
                peak_reason = format!(
                    "each volume is staged and verified before it is received; volume {} of backup {} is {} bytes",
                    v.index, v.backup, v.bytes
                );
            }
            let last = volume_count.get(&v.backup).map(|n| *n as u32 - 1) == Some(v.index);
            if last {
                let sb = stream_bytes.get(&v.backup).copied().unwrap_or(0);
                received += sb;
                if spans {
                    staged = staged.saturating_sub(sb);
                }
            }
        }
        let download_secs = bytes / rate;
        let restore_days =
            (download_secs.div_ceil(DAY_SECS as u64) as u32).max(1) + options.slack_days;
        let download_from = request_at.plus_secs(thaw_secs);
        let free = if i == 0 && month == now.month() {
            options.free_egress_remaining_this_month
        } else {
            prices.free_egress_bytes_per_month
        };
        let n = vols.len() as u64;
        let cost = cost::retrieval(prices, options.tier, bytes, n)
            + cost::restored_copy(prices, bytes, restore_days)
            + cost::downloads(prices, n)
            + Cost {
                egress: cost::egress(prices, bytes, free, 0),
                ..Cost::default()
            };
        total += cost;
        finish = download_from.plus_secs(download_secs as i64);
        out.push(RestoreBatch {
            month,
            request_at,
            tier: options.tier,
            restore_days,
            download_from,
            download_until: download_from.plus_days(i64::from(restore_days)),
            volumes: vols,
            bytes,
            paid_egress_bytes: bytes.saturating_sub(free),
            received_bytes: received,
            cost,
        });
    }
    if peak > options.staging_available_bytes {
        return Err(Error::StagingTooSmall {
            needed: peak,
            available: options.staging_available_bytes,
            reason: format!(
                "{peak_reason}; free more local space or raise the monthly budget so streams fit in one month"
            ),
        });
    }
    Ok(RestorePlan {
        target: target.clone(),
        chain: chain.iter().map(|b| b.id.clone()).collect(),
        total_bytes: out.iter().map(|b| b.bytes).sum(),
        batches: out,
        cost: total,
        finish,
        peak_staging_bytes: peak,
        staging_available_bytes: options.staging_available_bytes,
    })
}
