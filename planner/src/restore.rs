//! The restore schedule: what is left of a restore point's chain split into UTC-calendar-
//! month batches, each batch into thaw waves with their restore requests (tier, `Days`),
//! download windows and cost; the whole plan's cost, finish date and peak staging.
//!
//! The restore job re-plans from its stored inputs on every run (daily from cron, say),
//! after some volumes were downloaded and some streams received, so every rule below
//! applies whenever a plan is made, and the inputs say what is already done.
//!
//! Rules.
//! - Volumes are downloaded in chain order and never split across months. Streams
//!   already received are skipped; volumes already downloaded (staged) are not
//!   downloaded again.
//! - A month's batch is capped by three things: the monthly budget (the current month:
//!   what is left of it); the free egress left that month, plus whatever the budget
//!   deliberately goes beyond the free allowance (so the default budget, equal to the
//!   free 100 GB, never pays egress because other use of the account spent some of it);
//!   and what the link downloads between the first restored copies being ready and the
//!   month's end. A volume that no month's window can hold on the given link is refused
//!   ([`Error::LinkTooSlow`]) rather than planned to spill into the next month's budget,
//!   and a plan needing more than [`limits::MAX_RESTORE_MONTHS`] months is refused.
//! - A batch that takes longer to download than the thaw time plus `wave_days` is thawed
//!   in waves of about `wave_days` days of downloading (a faster one in one wave, since
//!   splitting it would not shorten the copies' lives). The first wave
//!   of a month is requested at the month's start (the current month: now); each later
//!   wave is requested one thaw time before the previous wave's downloads are expected to
//!   end, so the link never waits. Restored copies are billed at the S3 Standard rate for
//!   every day they live, so `Days` covers only the wave's own downloads plus
//!   `slack_days`, and for a pipelined wave also the thaw time (a restore may complete
//!   early and then wait for the wave before it): a few days, however slow the link.
//! - A restore already requested whose copy lives long enough is not requested again (its
//!   retrieval is already paid); one whose copy would expire first is requested again.
//! - A stream whose volumes all arrive in one wave may be received as it downloads (one
//!   volume staged at a time for verification); any other stream is staged whole and
//!   received when its last volume is verified. Streams are received in chain order.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cost::{self, human_bytes, Cost};
use crate::{
    limits, BackupId, Catalog, Error, Month, PriceTable, Result, Tier, UnixTime, DAY_SECS, GB,
};

/// How a restore may proceed, and what is already done.
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
    /// other use of the account reduces it; the caller computes it from its download
    /// ledger and the user's declared allowance).
    pub free_egress_remaining_this_month: u64,
    /// Allow a volume larger than the monthly budget, alone in its month, with the excess
    /// billed as paid egress.
    pub allow_overrun: bool,
    /// Local bytes free for staging downloads now, not counting volumes already staged
    /// (`downloaded`). The caller measures it; the default, 0, refuses every plan that
    /// downloads anything, since even a streamed volume is staged for verification.
    pub staging_available_bytes: u64,
    /// Expected download rate in bytes per second (default 5 MiB/s). It caps each
    /// month's batch at what the link downloads before the month ends and sizes the
    /// thaw waves; 0 is refused.
    pub download_bytes_per_sec: u64,
    /// Extra days restored copies are kept beyond the expected download time.
    pub slack_days: u32,
    /// Days of downloading each thaw wave holds (default 1, at most 30). Shorter waves
    /// keep restored copies alive for less time; a wave holds at least one volume.
    pub wave_days: u32,
    /// Volumes already downloaded and verified, still staged on local disk: they count
    /// toward staging but are not downloaded again.
    pub downloaded: Vec<VolumeId>,
    /// Backups whose streams were already received into the target: skipped entirely.
    /// They must be the first links of the chain.
    pub received: Vec<BackupId>,
    /// Restores already requested whose copies have not expired.
    pub requested: Vec<RequestedRestore>,
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
            wave_days: 1,
            downloaded: Vec::new(),
            received: Vec::new(),
            requested: Vec::new(),
        }
    }
}

/// A volume by position: the backup it belongs to and its index within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VolumeId {
    /// The backup it belongs to.
    pub backup: BackupId,
    /// Its index within the backup.
    pub index: u32,
}

/// A restore request already made for a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedRestore {
    /// The volume.
    pub volume: VolumeId,
    /// When the restore was requested.
    pub requested_at: UnixTime,
    /// When its restored copy expires, once the restore has completed (`None` while it
    /// is in progress).
    pub expires_at: Option<UnixTime>,
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

impl VolumeRef {
    /// Its identity without the size.
    pub fn id(&self) -> VolumeId {
        VolumeId {
            backup: self.backup.clone(),
            index: self.index,
        }
    }
}

/// Volumes thawed together: requested at one time, with one `Days`, downloaded one after
/// another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThawWave {
    /// When to request the restores (at or before now: request them now).
    pub request_at: UnixTime,
    /// `Days` to request: how long the restored copies live after the restore completes.
    pub restore_days: u32,
    /// When the copies are expected to be ready (request + the tier's typical time, or
    /// the end of the previous wave's downloads when that is later).
    pub download_from: UnixTime,
    /// When this wave's downloads are expected to end at the given link rate.
    pub download_end: UnixTime,
    /// Volumes in download (chain) order.
    pub volumes: Vec<VolumeRef>,
    /// Volumes of this wave whose restore was already requested and whose copies live
    /// long enough: not requested again.
    pub already_requested: Vec<VolumeId>,
    /// Total bytes of the volumes.
    pub bytes: u64,
}

/// One month's work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreBatch {
    /// The UTC calendar month the batch is downloaded in.
    pub month: Month,
    /// When to request the first wave's restores.
    pub request_at: UnixTime,
    /// Tier to request.
    pub tier: Tier,
    /// The largest `Days` of the batch's waves.
    pub restore_days: u32,
    /// When the first wave's copies are expected to be ready.
    pub download_from: UnixTime,
    /// When the last restored copies of the batch expire (download before this).
    pub download_until: UnixTime,
    /// The thaw waves, in order.
    pub waves: Vec<ThawWave>,
    /// Volumes in chain order.
    pub volumes: Vec<VolumeRef>,
    /// Their total bytes.
    pub bytes: u64,
    /// Bytes beyond the month's free egress (billed).
    pub paid_egress_bytes: u64,
    /// Bytes of streams whose last volume arrives this month (received this month).
    pub received_bytes: u64,
    /// This batch's cost.
    pub cost: Cost,
}

/// A whole restore (what is left of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The restore point.
    pub target: BackupId,
    /// Its chain, full first (including streams already received).
    pub chain: Vec<BackupId>,
    /// Bytes still to download.
    pub total_bytes: u64,
    /// Month by month.
    pub batches: Vec<RestoreBatch>,
    /// Everything still to pay, summed (retrieval already paid for copies that are
    /// requested is not counted again).
    pub cost: Cost,
    /// When the last download is expected to finish (now when nothing is left).
    pub finish: UnixTime,
    /// The most local staging the plan needs at once, including what is already staged.
    pub peak_staging_bytes: u64,
    /// Bytes already staged (the `downloaded` volumes of streams not yet received).
    pub already_staged_bytes: u64,
    /// Staging space that was available on top of what is already staged.
    pub staging_available_bytes: u64,
    /// UTC calendar months from now until the last download ends, fractional: the wait
    /// a user sees. The policy's price of a month of waiting applies to it.
    pub months: f64,
}

/// The largest `slack_days` and `wave_days` accepted.
const MAX_OPTION_DAYS: u32 = 30;

impl RestoreOptions {
    /// Checks the options that no plan can work with: a zero or absurd link rate, a zero
    /// budget, wave and slack days above 30, lists longer than
    /// [`limits::MAX_VOLUMES`], instants outside 1970..=9999.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        validate(self)
    }
}

fn validate(options: &RestoreOptions) -> Result<()> {
    let bad = |field: &str, problem: String| {
        Err(Error::InvalidInput {
            field: format!("RestoreOptions::{field}"),
            problem,
        })
    };
    if !(1..=1 << 40).contains(&options.download_bytes_per_sec) {
        return bad(
            "download_bytes_per_sec",
            format!(
                "is {}; give the link's real rate, 1 byte/s to 1 TiB/s",
                options.download_bytes_per_sec
            ),
        );
    }
    if options.monthly_budget_bytes == 0 {
        return bad(
            "monthly_budget_bytes",
            "is 0; nothing could ever be downloaded".into(),
        );
    }
    for (field, days) in [
        ("slack_days", options.slack_days),
        ("wave_days", options.wave_days),
    ] {
        if days > MAX_OPTION_DAYS {
            return bad(field, format!("is {days}; at most {MAX_OPTION_DAYS}"));
        }
    }
    if options.wave_days == 0 {
        return bad("wave_days", "is 0; use at least 1".into());
    }
    for (field, len) in [
        ("downloaded", options.downloaded.len()),
        ("received", options.received.len()),
        ("requested", options.requested.len()),
    ] {
        if len > limits::MAX_VOLUMES {
            return bad(
                field,
                format!("lists {len} entries, more than {}", limits::MAX_VOLUMES),
            );
        }
    }
    for r in &options.requested {
        r.requested_at
            .check("RestoreOptions::requested.requested_at")?;
        if let Some(e) = r.expires_at {
            e.check("RestoreOptions::requested.expires_at")?;
        }
    }
    Ok(())
}

/// `bytes` at `rate` bytes/s, in whole seconds rounded up.
fn download_secs(bytes: u64, rate: u64) -> i64 {
    i64::try_from(bytes.div_ceil(rate)).unwrap_or(i64::MAX)
}

/// What the link downloads in `secs` seconds (0 for a negative span).
fn link_bytes(secs: i64, rate: u64) -> u64 {
    let secs = u128::from(u64::try_from(secs).unwrap_or(0));
    u64::try_from(secs * u128::from(rate)).unwrap_or(u64::MAX)
}

/// Whole days (rounded up) in a span of seconds, at least 0.
fn days_ceil(secs: i64) -> u32 {
    let days = (secs.max(0) + DAY_SECS - 1) / DAY_SECS;
    u32::try_from(days).unwrap_or(u32::MAX)
}

/// Plans what is left of the restore of `target` (its whole chain) from `now`.
///
/// `options.received` streams are skipped, `options.downloaded` volumes count as staged,
/// `options.requested` restores are reused while their copies live. The plan is pure:
/// calling it again with the same inputs gives the same plan, and moving `now` within a
/// month changes only the current month's request times.
///
/// # Errors
/// [`Error::UnknownBackup`] / [`Error::BrokenChain`] for the target;
/// [`Error::InvalidInput`] for out-of-range options or progress that contradicts the
/// chain (a received stream whose base was not received, a volume that does not exist);
/// [`Error::BudgetBelowVolume`] when a volume exceeds the monthly budget and overrun is
/// not allowed; [`Error::LinkTooSlow`] when the link cannot download a volume within a
/// month; [`Error::RestoreTooLong`] beyond [`limits::MAX_RESTORE_MONTHS`] months;
/// [`Error::StagingTooSmall`] when the plan needs more staging than is available; invalid
/// prices.
pub fn plan_restore(
    catalog: &Catalog,
    target: &BackupId,
    options: &RestoreOptions,
    prices: &PriceTable,
    now: UnixTime,
) -> Result<RestorePlan> {
    prices.validate()?;
    now.check("now")?;
    validate(options)?;
    let chain = catalog.chain(target)?;

    // Streams already received must be the chain's first links.
    let received: HashSet<&BackupId> = options.received.iter().collect();
    let on_chain: HashSet<&BackupId> = chain.iter().map(|b| &b.id).collect();
    if let Some(stray) = received.iter().find(|id| !on_chain.contains(**id)) {
        return Err(Error::InvalidInput {
            field: "RestoreOptions::received".into(),
            problem: format!("names backup {stray}, which is not on the chain of {target}"),
        });
    }
    let done = chain
        .iter()
        .take_while(|b| received.contains(&b.id))
        .count();
    if done != received.len() {
        let gap = chain
            .iter()
            .find(|b| !received.contains(&b.id))
            .map(|b| b.id.clone())
            .unwrap_or_default();
        return Err(Error::InvalidInput {
            field: "RestoreOptions::received".into(),
            problem: format!(
                "says later streams were received but not {gap}, which they are based on; streams are received in chain order"
            ),
        });
    }
    let remaining = &chain[done..];

    // Volumes already staged, and those still to download.
    let mut staged_volumes: HashSet<VolumeId> = HashSet::new();
    for v in &options.downloaded {
        let Some(b) = catalog.get(&v.backup) else {
            return Err(Error::InvalidInput {
                field: "RestoreOptions::downloaded".into(),
                problem: format!("names backup {}, which is not in the catalog", v.backup),
            });
        };
        if v.index as usize >= b.volumes.len() {
            return Err(Error::InvalidInput {
                field: "RestoreOptions::downloaded".into(),
                problem: format!(
                    "names volume {} of backup {}, which has {} volumes",
                    v.index,
                    v.backup,
                    b.volumes.len()
                ),
            });
        }
        staged_volumes.insert(v.clone());
    }
    let mut already_staged = 0u64;
    let mut to_download: Vec<VolumeRef> = Vec::new();
    // Streams with a volume already staged span runs, so they are staged whole.
    let mut partly_staged: HashSet<&BackupId> = HashSet::new();
    for b in remaining {
        for (i, &bytes) in b.volumes.iter().enumerate() {
            let v = VolumeRef {
                backup: b.id.clone(),
                index: u32::try_from(i).unwrap_or(u32::MAX),
                bytes,
            };
            if staged_volumes.contains(&v.id()) {
                // Bounded by the catalog's total, so the sum cannot overflow.
                already_staged += bytes;
                partly_staged.insert(&b.id);
            } else {
                to_download.push(v);
            }
        }
    }

    let budget = options.monthly_budget_bytes;
    if let Some(big) = to_download
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
    let rate = options.download_bytes_per_sec;
    let thaw_hours = prices.retrieval(options.tier).typical_hours;
    let thaw_secs = i64::from(thaw_hours) * 3600;
    // The longest window any month offers: a 31-day month less the thaw.
    let widest = link_bytes(31 * DAY_SECS - thaw_secs, rate);
    if let Some(big) = to_download.iter().find(|v| v.bytes > widest) {
        return Err(Error::LinkTooSlow {
            bytes_per_sec: rate,
            window_days: (31 * DAY_SECS - thaw_secs) as f64 / DAY_SECS as f64,
            thaw_hours,
            window_bytes: widest,
            volume: big.bytes,
            backup: big.backup.clone(),
            volume_index: big.index,
        });
    }
    let live_requests: HashMap<&VolumeId, &RequestedRestore> =
        options.requested.iter().map(|r| (&r.volume, r)).collect();

    // Pack volumes into months, and each month's batch into waves.
    let free_per_month = prices.free_egress_bytes_per_month;
    // What the user chose to pay for beyond the free allowance each month.
    let paid_allowance = budget.saturating_sub(free_per_month);
    let wave_target = link_bytes(i64::from(options.wave_days) * DAY_SECS, rate).max(1);
    let mut batches = Vec::new();
    let mut month = now.month();
    let mut months_planned = 0u32;
    let mut pending = to_download.into_iter().peekable();
    while pending.peek().is_some() {
        months_planned += 1;
        if months_planned > limits::MAX_RESTORE_MONTHS {
            return Err(Error::RestoreTooLong {
                limit: limits::MAX_RESTORE_MONTHS,
                reason: format!(
                    "{} still to download after {} months at a budget of {} a month and {rate} bytes/s",
                    human_bytes(pending.map(|v| v.bytes).sum()),
                    limits::MAX_RESTORE_MONTHS,
                    human_bytes(budget)
                ),
            });
        }
        let current = month == now.month();
        let start = if current { now } else { month.start() };
        let ready = start.plus_secs(thaw_secs);
        let link_cap = link_bytes(month.end().0 - ready.0, rate);
        let money_cap = if current {
            options.budget_remaining_this_month.min(budget).min(
                options
                    .free_egress_remaining_this_month
                    .saturating_add(paid_allowance),
            )
        } else {
            budget
        };
        let cap = money_cap.min(link_cap);
        // A volume larger than the budget may go alone into a month whose whole budget
        // is still available, if the user allowed the overrun; the link must still
        // download it within the month.
        let whole_budget = money_cap >= budget;
        let mut volumes = Vec::new();
        let mut used = 0u64;
        while let Some(v) = pending.peek() {
            let fits = used + v.bytes <= cap;
            let overrun = options.allow_overrun
                && volumes.is_empty()
                && whole_budget
                && v.bytes > budget
                && v.bytes <= link_cap;
            if !(fits || overrun) {
                break;
            }
            used += v.bytes;
            if let Some(v) = pending.next() {
                volumes.push(v);
            }
            if overrun {
                break;
            }
        }
        if !volumes.is_empty() {
            let waves = plan_waves(
                volumes.clone(),
                start,
                thaw_secs,
                rate,
                wave_target,
                options.slack_days,
                &live_requests,
            );
            batches.push((month, volumes, waves, current));
        }
        month = month.next();
    }

    // Staging and receiving, in download order.
    let volume_count: HashMap<&BackupId, usize> =
        remaining.iter().map(|b| (&b.id, b.volumes.len())).collect();
    let stream_bytes: HashMap<&BackupId, u64> =
        remaining.iter().map(|b| (&b.id, b.stored_bytes)).collect();
    // A stream is streamed through (never staged whole) when all its volumes are
    // downloaded in one wave and none was staged before.
    let mut waves_of: HashMap<BackupId, HashSet<(usize, usize)>> = HashMap::new();
    for (bi, (_, _, waves, _)) in batches.iter().enumerate() {
        for (wi, w) in waves.iter().enumerate() {
            for v in &w.volumes {
                waves_of
                    .entry(v.backup.clone())
                    .or_default()
                    .insert((bi, wi));
            }
        }
    }
    let streamed_ids: HashSet<BackupId> = waves_of
        .into_iter()
        .filter(|(id, w)| w.len() == 1 && !partly_staged.contains(id))
        .map(|(id, _)| id)
        .collect();
    let streamed = |id: &BackupId| streamed_ids.contains(id);
    let mut staged = already_staged;
    let mut peak = already_staged;
    let mut peak_reason = if already_staged > 0 {
        format!(
            "{} of volumes are already staged",
            human_bytes(already_staged)
        )
    } else {
        String::new()
    };

    let mut out = Vec::new();
    let mut total = Cost::default();
    let mut finish = now;
    for (month, volumes, waves, current) in batches {
        let bytes: u64 = volumes.iter().map(|v| v.bytes).sum();
        let mut received_bytes = 0u64;
        for v in &volumes {
            let whole = !streamed(&v.backup);
            let sb = stream_bytes.get(&v.backup).copied().unwrap_or(0);
            if whole {
                staged += v.bytes;
                if staged > peak {
                    peak = staged;
                    peak_reason = format!(
                        "backup {} ({}) is downloaded over several runs and must be staged whole before it is received",
                        v.backup,
                        human_bytes(sb)
                    );
                }
            } else if staged + v.bytes > peak {
                peak = staged + v.bytes;
                peak_reason = format!(
                    "each volume is staged and verified before it is received; volume {} of backup {} is {}",
                    v.index,
                    v.backup,
                    human_bytes(v.bytes)
                );
            }
            let last =
                volume_count.get(&v.backup).map(|n| *n as u64) == Some(u64::from(v.index) + 1);
            if last {
                received_bytes += sb;
                if whole {
                    staged = staged.saturating_sub(sb);
                }
            }
        }
        let free = if current {
            options.free_egress_remaining_this_month
        } else {
            free_per_month
        };
        let mut cost = Cost {
            egress: cost::egress(prices, bytes, free, 0),
            ..Cost::default()
        } + cost::downloads(prices, volumes.len() as u64);
        for w in &waves {
            let new_requests = (w.volumes.len() - w.already_requested.len()) as u64;
            let requested_bytes: u64 = w
                .volumes
                .iter()
                .filter(|v| !w.already_requested.contains(&v.id()))
                .map(|v| v.bytes)
                .sum();
            cost += cost::retrieval(prices, options.tier, requested_bytes, new_requests)
                + cost::restored_copy(prices, w.bytes, w.restore_days);
        }
        total += cost;
        let first = waves.first();
        let last = waves.last();
        finish = last.map_or(finish, |w| w.download_end);
        out.push(RestoreBatch {
            month,
            request_at: first.map_or(now, |w| w.request_at),
            tier: options.tier,
            restore_days: waves.iter().map(|w| w.restore_days).max().unwrap_or(0),
            download_from: first.map_or(now, |w| w.download_from),
            download_until: waves
                .iter()
                .map(|w| w.download_from.plus_days(i64::from(w.restore_days)))
                .max()
                .unwrap_or(now),
            waves,
            volumes,
            bytes,
            paid_egress_bytes: bytes.saturating_sub(free),
            received_bytes,
            cost,
        });
    }
    let additional = peak - already_staged;
    if additional > options.staging_available_bytes {
        return Err(Error::StagingTooSmall {
            needed: additional,
            available: options.staging_available_bytes,
            reason: format!(
                "{peak_reason}; free more local space or raise the monthly budget so streams fit in one wave"
            ),
        });
    }
    Ok(RestorePlan {
        target: target.clone(),
        chain: chain.iter().map(|b| b.id.clone()).collect(),
        total_bytes: out.iter().map(|b| b.bytes).sum(),
        months: months_from(now, finish),
        batches: out,
        cost: total,
        finish,
        peak_staging_bytes: peak,
        already_staged_bytes: already_staged,
        staging_available_bytes: options.staging_available_bytes,
    })
}

/// Calendar months from `from` to `to`, fractional (each month counted by its own length).
fn months_from(from: UnixTime, to: UnixTime) -> f64 {
    if to <= from {
        return 0.0;
    }
    let mut months = 0.0;
    let mut month = from.month();
    let mut t = from;
    while month.end() <= to {
        months += (month.end().0 - t.0) as f64 / (month.end().0 - month.start().0) as f64;
        t = month.end();
        month = month.next();
    }
    months + (to.0 - t.0) as f64 / (month.end().0 - month.start().0) as f64
}

/// When the first wave's copies are expected readable: a thaw after `start`, unless every
/// volume's restore was requested already — then when the latest of those thaws ends (a
/// restored copy is readable now).
fn first_wave_ready(
    volumes: &[VolumeRef],
    start: UnixTime,
    thaw_secs: i64,
    live_requests: &HashMap<&VolumeId, &RequestedRestore>,
) -> UnixTime {
    let mut ready = start;
    for volume in volumes {
        match live_requests.get(&volume.id()) {
            Some(RequestedRestore {
                expires_at: Some(_),
                ..
            }) => {}
            Some(RequestedRestore {
                requested_at,
                expires_at: None,
                ..
            }) => ready = ready.max(requested_at.plus_secs(thaw_secs)),
            None => return start.plus_secs(thaw_secs),
        }
    }
    ready
}

/// Splits one month's batch into thaw waves of about `target` bytes, pipelined so each
/// wave's copies are expected to be ready when the previous wave's downloads end.
fn plan_waves(
    volumes: Vec<VolumeRef>,
    start: UnixTime,
    thaw_secs: i64,
    rate: u64,
    target: u64,
    slack_days: u32,
    live_requests: &HashMap<&VolumeId, &RequestedRestore>,
) -> Vec<ThawWave> {
    // Waves pay only when the batch takes longer to download than a pipelined wave's
    // copies live (its thaw lead plus its own downloads): a fast link thaws the whole
    // batch at once.
    let batch: u64 = volumes.iter().map(|v| v.bytes).sum();
    let target = if download_secs(batch, rate) <= thaw_secs + download_secs(target, rate) {
        u64::MAX
    } else {
        target
    };
    let mut groups: Vec<Vec<VolumeRef>> = Vec::new();
    let mut bytes = 0u64;
    for v in volumes {
        match groups.last_mut() {
            Some(g) if bytes + v.bytes <= target => {
                bytes += v.bytes;
                g.push(v);
            }
            _ => {
                bytes = v.bytes;
                groups.push(vec![v]);
            }
        }
    }
    let mut waves = Vec::with_capacity(groups.len());
    let mut ready = start.plus_secs(thaw_secs);
    for (i, volumes) in groups.into_iter().enumerate() {
        if i == 0 {
            ready = first_wave_ready(&volumes, start, thaw_secs, live_requests);
        }
        let bytes: u64 = volumes.iter().map(|v| v.bytes).sum();
        let end = ready.plus_secs(download_secs(bytes, rate));
        // The first wave's downloads start when its copies are ready; a later wave is
        // requested a thaw time before its turn, and a restore that completes early
        // waits for the wave before it, so its copies must outlive that wait too.
        let request_at = if i == 0 {
            start
        } else {
            ready.plus_secs(-thaw_secs).max(start)
        };
        let needed = if i == 0 {
            end.0 - ready.0
        } else {
            end.0 - request_at.0
        };
        let restore_days = days_ceil(needed).max(1).saturating_add(slack_days);
        let already_requested = volumes
            .iter()
            .map(VolumeRef::id)
            .filter(|id| {
                live_requests
                    .get(id)
                    .is_some_and(|r| r.expires_at.is_none_or(|e| e >= end))
            })
            .collect();
        waves.push(ThawWave {
            request_at,
            restore_days,
            download_from: ready,
            download_end: end,
            volumes,
            already_requested,
            bytes,
        });
        ready = end;
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_counted_by_their_own_length() {
        let jan = crate::CivilDate {
            year: 2026,
            month: 1,
            day: 1,
        }
        .start();
        assert_eq!(months_from(jan, jan), 0.0);
        assert!((months_from(jan, jan.plus_days(31)) - 1.0).abs() < 1e-12);
        // Jan 16 12:00 to Feb 1: half of January.
        assert!(
            (months_from(
                jan.plus_secs(15 * DAY_SECS + DAY_SECS / 2),
                jan.plus_days(31)
            ) - 0.5)
                .abs()
                < 1e-12
        );
        // Jan 1 to Feb 15: one month and half of February (28 days).
        assert!((months_from(jan, jan.plus_days(31 + 14)) - 1.5).abs() < 1e-12);
    }
}
