//! What a dataset's own history says about its future: how fast its data grows, how
//! fast it dies (overwritten or deleted a little at a time), and how often and how much
//! of it vanishes at once (purges).
//!
//! The history is read from sizes the planner is given: each committed incremental with
//! both snapshot sizes known (from the manifest's `snapshot_bytes` or a local snapshot's
//! estimate) is one interval; the data that died in it is what was there before plus what
//! the incremental wrote, minus what is there after. An interval whose dead data is at
//! least [`PURGE_FRACTION`] of the data before, and well above the steady rate, is a
//! purge; the rest make the steady rate.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{BackupKind, Catalog, LocalSnapshot, PriceTable, SnapshotId, UnixTime};

/// How far back the history is read.
pub const HISTORY_WINDOW_DAYS: i64 = 365;

/// The smallest loss in one interval, as a fraction of the data before it, that counts as
/// a purge.
pub const PURGE_FRACTION: f64 = 0.10;

/// The projection consolidation works with, learned from the history or, where the
/// history says nothing, from the chain alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Bytes by which the live data grows per month (after purges).
    pub live_growth_bytes_per_month: f64,
    /// Bytes of data dying per month outside purges: the steady rate at which a chain
    /// collects dead weight.
    pub dying_bytes_per_month: f64,
    /// Incremental stream bytes per month.
    pub incremental_bytes_per_month: f64,
    /// Purges seen per month of history.
    pub purges_per_month: f64,
    /// The mean fraction of the data a purge took.
    pub purge_fraction: f64,
    /// Months of history the projection rests on (0: none; rates estimated from the
    /// chain's age).
    pub observed_months: f64,
}

/// One interval between two snapshots whose sizes are known.
#[derive(Debug, Clone, Copy)]
struct Interval {
    start: UnixTime,
    months: f64,
    before: f64,
    after: f64,
    written: f64,
}

impl Interval {
    fn dead(&self) -> f64 {
        (self.before + self.written - self.after).max(0.0)
    }
}

/// Learns the projection from the catalog and the local snapshots' sizes, plus the
/// interval from `base` to the new snapshot when it is known (`(base snapshot,
/// incremental bytes, full bytes)`).
pub(crate) fn learn(
    catalog: &Catalog,
    local: &[LocalSnapshot],
    new: Option<(&SnapshotId, u64, u64)>,
    now: UnixTime,
    prices: &PriceTable,
) -> Option<Projection> {
    let mut sizes: HashMap<&SnapshotId, f64> = HashMap::new();
    let mut created: HashMap<&SnapshotId, UnixTime> = HashMap::new();
    for b in catalog.backups() {
        if let Some(s) = b.snapshot_bytes {
            sizes.insert(&b.snapshot, s as f64);
        }
        created.insert(&b.snapshot, b.created);
    }
    for s in local {
        if let Some(f) = s.full_bytes {
            sizes.entry(&s.id).or_insert(f as f64);
        }
        created.entry(&s.id).or_insert(s.created);
    }
    let window_start = now.plus_days(-HISTORY_WINDOW_DAYS);
    let month_secs = prices.days_per_month * 86_400.0;
    let mut intervals = Vec::new();
    let mut push = |start: UnixTime, end: UnixTime, before: f64, after: f64, written: f64| {
        if start < window_start || end <= start || end > now {
            return;
        }
        intervals.push(Interval {
            start,
            months: (end.0 - start.0) as f64 / month_secs,
            before,
            after,
            written,
        });
    };
    for b in catalog.backups() {
        let BackupKind::Incremental { base } = &b.kind else {
            continue;
        };
        let Some(a) = catalog.get(base) else { continue };
        if let (Some(&before), Some(&after)) = (sizes.get(&a.snapshot), sizes.get(&b.snapshot)) {
            push(a.created, b.created, before, after, b.stored_bytes as f64);
        }
    }
    if let Some((base, written, full)) = new {
        if let (Some(&before), Some(&start)) = (sizes.get(base), created.get(base)) {
            push(start, now, before, full as f64, written as f64);
        }
    }
    if intervals.is_empty() {
        return None;
    }
    intervals.sort_by_key(|i| i.start);
    // The steady rate is judged by the median interval, so that purges do not raise the
    // bar by which purges are recognised.
    let mut rates: Vec<f64> = intervals
        .iter()
        .map(|i| i.dead() / i.months.max(1e-9))
        .collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let (mut steady_dead, mut steady_months) = (0.0, 0.0);
    let (mut purges, mut purge_fractions) = (0usize, 0.0);
    let (mut written, mut months) = (0.0, 0.0);
    for i in &intervals {
        let dead = i.dead();
        let purge =
            i.before > 0.0 && dead >= PURGE_FRACTION * i.before && dead > 3.0 * median * i.months;
        if purge {
            purges += 1;
            purge_fractions += (dead / i.before).min(1.0);
            // The interval's ordinary dying is the steady rate's share of it.
            steady_dead += median * i.months;
        } else {
            steady_dead += dead;
        }
        steady_months += i.months;
        written += i.written;
        months += i.months;
    }
    let first = intervals[0].start;
    let observed = (now.0 - first.0) as f64 / month_secs;
    let oldest_size = intervals[0].before;
    let newest_size = intervals
        .iter()
        .max_by_key(|i| i.start)
        .map_or(oldest_size, |i| i.after);
    Some(Projection {
        live_growth_bytes_per_month: (newest_size - oldest_size) / observed.max(1e-9),
        dying_bytes_per_month: steady_dead / steady_months.max(1e-9),
        incremental_bytes_per_month: written / months.max(1e-9),
        purges_per_month: purges as f64 / observed.max(1.0),
        purge_fraction: if purges > 0 {
            purge_fractions / purges as f64
        } else {
            0.0
        },
        observed_months: observed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::backup;
    use crate::{CivilDate, RemoteBackup, GB};

    fn month(m: i64) -> i64 {
        CivilDate {
            year: 2026,
            month: 1,
            day: 1,
        }
        .to_days()
            + m * 30
    }

    #[test]
    fn steady_dying_and_purges_are_told_apart() {
        // 100 GB growing by 2 GB and losing 1 GB a month, and a purge of half the data in
        // month 5: each incremental writes 3 GB (growth plus what replaced the dead GB).
        let mut backups = Vec::new();
        let mut live = 100.0;
        for m in 0..8i64 {
            let mut b = if m == 0 {
                backup("b0", None, month(0), 100 * GB)
            } else {
                let name = format!("b{m}");
                let base = format!("b{}", m - 1);
                backup(&name, Some(&base), month(m), 3 * GB)
            };
            if m > 0 {
                live += 2.0;
                if m == 5 {
                    live /= 2.0;
                }
            }
            b.snapshot_bytes = Some((live * GB as f64) as u64);
            backups.push(b);
        }
        let catalog = Catalog::new(backups).unwrap_or_else(|e| panic!("{e}"));
        let now = crate::UnixTime(month(8) * crate::DAY_SECS);
        let p = learn(&catalog, &[], None, now, &PriceTable::default())
            .unwrap_or_else(|| panic!("sizes are known"));
        assert!(p.purge_fraction > 0.45 && p.purge_fraction < 0.55, "{p:?}");
        assert!(p.purges_per_month > 0.0);
        // The steady rate is the 1 GB a month, per 30-day interval in months of 365/12
        // days, not the purge spread over the history.
        let gb_per_month = p.dying_bytes_per_month / GB as f64;
        assert!(
            (gb_per_month - 30.4167 / 30.0).abs() < 0.05,
            "{gb_per_month}"
        );
        // Empty snapshots never count as purges.
        let empty = Catalog::new(vec![
            RemoteBackup {
                snapshot_bytes: Some(0),
                ..backup("e0", None, month(0), 0)
            },
            RemoteBackup {
                snapshot_bytes: Some(GB),
                ..backup("e1", Some("e0"), month(1), 3 * GB)
            },
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let p = learn(&empty, &[], None, now, &PriceTable::default())
            .unwrap_or_else(|| panic!("sizes are known"));
        assert_eq!(p.purges_per_month, 0.0);
    }
}
