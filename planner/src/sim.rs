//! A cost simulator for whole backup histories: a [`Scenario`] says what a dataset does
//! month by month (and, optionally, what AWS charges and how the final restore is run);
//! [`run`] prices a strategy over it — always incremental, a full every N months, zib's
//! planner (driven through [`crate::decide_backup`] with the catalog it would see), or
//! the hindsight optimum (dynamic programming over consolidation points).
//!
//! Objective (the same for every strategy): storage, requests, staging and early deletion
//! over the scenario's months, plus one restore of the newest restore point at the end,
//! planned by [`crate::plan_restore`] exactly as the restore job would run it (the
//! scenario's restore options, default 100 GB a month, Bulk, 5 MiB/s; the free egress of
//! the scenario's prices), plus the months that restore takes at the policy's price of a
//! month of waiting. Months are 365/12 days (the price table's `days_per_month`); a backup
//! is taken `backups_per_month` times a month, the first one a full of the initial data.
//! Streams are assumed the size of the data they carry (no compression; encryption
//! overhead is negligible). An incremental carries the bytes added or rewritten since the
//! previous backup; a full carries the live data. One restore point is kept: when a fresh
//! full is committed, each backup of the chain it supersedes is deleted at the latest of
//! its minimum age (`Policy::min_age_days`), the fresh full's grace period
//! (`Policy::grace_days`) and the next backup after the full (the engine's safety rules);
//! a user asked to confirm a deletion (`Policy::max_vanished_fraction`) is assumed to
//! answer within the grace period.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cost::{self, Cost};
use crate::{
    decide_backup, limits, plan_restore, BackupId, BackupKind, Catalog, CivilDate, Error,
    IncrementalEstimate, LocalSnapshot, PlannedBackup, Policy, PriceTable, RemoteBackup,
    RestoreOptions, Result, SnapshotId, UnixTime, DAY_SECS, GB,
};

/// A stretch of months with steady behaviour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Phase {
    /// How many months it lasts.
    pub months: u32,
    /// New data per month, GB.
    pub add_gb_per_month: f64,
    /// Data deleted per month, GB.
    pub delete_gb_per_month: f64,
    /// Data replaced per month (deleted and written anew), GB.
    pub rewrite_gb_per_month: f64,
    /// Data replaced per year as a fraction of the live data (0.2 = 20 %), spread evenly
    /// over the months; at most 12 (all of it every month).
    pub rewrite_fraction_per_year: f64,
}

/// A one-off change at the start of a month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Event {
    /// Month index (0-based) it happens in.
    pub month: u32,
    /// Data added, GB.
    pub add_gb: f64,
    /// Data deleted, GB.
    pub delete_gb: f64,
    /// Fraction of the live data deleted (0.3 = 30 %).
    pub delete_fraction: f64,
    /// Data replaced, GB.
    pub rewrite_gb: f64,
}

/// A dataset's history. Phases run one after another; the last one lasts to the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name for reports.
    pub name: String,
    /// What it models.
    #[serde(default)]
    pub description: String,
    /// Months simulated (the benchmark uses 120).
    #[serde(default = "default_months")]
    pub months: u32,
    /// Data at the first backup, GB.
    pub initial_gb: f64,
    /// Snapshots backed up per month.
    #[serde(default = "default_cadence")]
    pub backups_per_month: u32,
    /// Steady behaviour, in order.
    pub phases: Vec<Phase>,
    /// One-off changes.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Prices, when they differ from the us-east-1 defaults (a `[prices]` table; missing
    /// fields keep their defaults). Every strategy is priced with them and the planner
    /// decides with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<PriceTable>,
    /// How the final restore is run (a `[restore]` table of `RestoreOptions`; missing
    /// fields keep their defaults). Staging space is not modelled (unlimited), and the
    /// free egress left in the first month is at most the prices' free allowance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreOptions>,
}

fn default_months() -> u32 {
    120
}

fn default_cadence() -> u32 {
    1
}

fn bad(field: impl Into<String>, problem: String) -> Error {
    Error::InvalidScenario {
        field: field.into(),
        problem,
    }
}

/// The most phases or events a scenario may list.
const MAX_SCENARIO_ENTRIES: usize = 10_000;

impl Scenario {
    /// The prices this scenario is run with.
    pub fn price_table(&self) -> PriceTable {
        self.prices.clone().unwrap_or_default()
    }

    /// The options its final restore is planned with.
    pub fn restore_options(&self) -> RestoreOptions {
        let prices = self.price_table();
        let mut o = self.restore.clone().unwrap_or_default();
        o.staging_available_bytes = u64::MAX;
        o.free_egress_remaining_this_month = o
            .free_egress_remaining_this_month
            .min(prices.free_egress_bytes_per_month);
        o
    }

    /// Checks every number against [`crate::limits`] and the format's rules.
    ///
    /// # Errors
    /// [`Error::InvalidScenario`] naming the field (`phases[2].add_gb_per_month`).
    pub fn validate(&self) -> Result<()> {
        if !(1..=limits::MAX_SCENARIO_MONTHS).contains(&self.months) {
            return Err(bad(
                "months",
                format!(
                    "is {}; use 1 to {}",
                    self.months,
                    limits::MAX_SCENARIO_MONTHS
                ),
            ));
        }
        if !(1..=31).contains(&self.backups_per_month) {
            return Err(bad(
                "backups_per_month",
                format!("is {}; use 1 to 31", self.backups_per_month),
            ));
        }
        let steps = self.months as usize * self.backups_per_month as usize;
        if steps > limits::MAX_SCENARIO_STEPS {
            return Err(bad(
                "backups_per_month",
                format!(
                    "makes {steps} backups over {} months; the simulator takes at most {} (its work grows with their square)",
                    self.months,
                    limits::MAX_SCENARIO_STEPS
                ),
            ));
        }
        if self.phases.is_empty() {
            return Err(bad(
                "phases",
                "is empty; give at least one [[phases]] entry".into(),
            ));
        }
        for (field, len) in [("phases", self.phases.len()), ("events", self.events.len())] {
            if len > MAX_SCENARIO_ENTRIES {
                return Err(bad(
                    field,
                    format!("has {len} entries; at most {MAX_SCENARIO_ENTRIES}"),
                ));
            }
        }
        let gb_field = |field: String, v: f64| -> Result<()> {
            if !v.is_finite() || !(0.0..=limits::MAX_SCENARIO_GB).contains(&v) {
                return Err(bad(
                    field,
                    format!("is {v}; use 0 to {} GB", limits::MAX_SCENARIO_GB),
                ));
            }
            Ok(())
        };
        gb_field("initial_gb".into(), self.initial_gb)?;
        for (i, p) in self.phases.iter().enumerate() {
            if p.months > limits::MAX_SCENARIO_MONTHS {
                return Err(bad(
                    format!("phases[{i}].months"),
                    format!("is {}; at most {}", p.months, limits::MAX_SCENARIO_MONTHS),
                ));
            }
            gb_field(format!("phases[{i}].add_gb_per_month"), p.add_gb_per_month)?;
            gb_field(
                format!("phases[{i}].delete_gb_per_month"),
                p.delete_gb_per_month,
            )?;
            gb_field(
                format!("phases[{i}].rewrite_gb_per_month"),
                p.rewrite_gb_per_month,
            )?;
            let f = p.rewrite_fraction_per_year;
            if !f.is_finite() || !(0.0..=12.0).contains(&f) {
                return Err(bad(
                    format!("phases[{i}].rewrite_fraction_per_year"),
                    format!("is {f}; use 0 to 12 (all the data every month)"),
                ));
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            // An event after the last month never happens (a scenario cut short keeps
            // its later events), but a month no scenario can reach is a typo.
            if e.month >= limits::MAX_SCENARIO_MONTHS {
                return Err(bad(
                    format!("events[{i}].month"),
                    format!(
                        "is {}; months are 0 to {}",
                        e.month,
                        limits::MAX_SCENARIO_MONTHS - 1
                    ),
                ));
            }
            gb_field(format!("events[{i}].add_gb"), e.add_gb)?;
            gb_field(format!("events[{i}].delete_gb"), e.delete_gb)?;
            gb_field(format!("events[{i}].rewrite_gb"), e.rewrite_gb)?;
            if !e.delete_fraction.is_finite() || !(0.0..=1.0).contains(&e.delete_fraction) {
                return Err(bad(
                    format!("events[{i}].delete_fraction"),
                    format!("is {}; use 0 to 1", e.delete_fraction),
                ));
            }
        }
        if let Some(p) = &self.prices {
            p.validate().map_err(|e| match e {
                Error::InvalidPrices { field, problem } => bad(format!("prices.{field}"), problem),
                other => other,
            })?;
        }
        if let Some(r) = &self.restore {
            r.validate().map_err(|e| match e {
                Error::InvalidInput { field, problem } => bad(
                    format!("restore.{}", field.trim_start_matches("RestoreOptions::")),
                    problem,
                ),
                other => other,
            })?;
        }
        Ok(())
    }

    /// The backups this history produces, oldest first.
    ///
    /// # Errors
    /// As [`Scenario::validate`], and [`Error::InvalidScenario`] when the live data would
    /// grow beyond [`limits::MAX_SCENARIO_GB`].
    pub fn timeline(&self) -> Result<Vec<Step>> {
        self.validate()?;
        let c = self.backups_per_month;
        let gbf = GB as f64;
        let max_live = limits::MAX_SCENARIO_GB * gbf;
        let mut live = self.initial_gb * gbf;
        let mut steps = vec![Step {
            month: 0.0,
            live_bytes: live as u64,
            incremental_bytes: live as u64,
        }];
        // Phase boundaries in u64 months: a list of long phases cannot overflow.
        let mut phase_end = 0u64;
        let mut phases = self.phases.iter();
        let mut phase = &self.phases[0];
        let mut events: Vec<&Event> = self.events.iter().collect();
        events.sort_by_key(|e| e.month);
        let mut next_event = 0;
        for m in 0..self.months {
            while u64::from(m) >= phase_end {
                match phases.next() {
                    Some(p) => {
                        phase = p;
                        phase_end += u64::from(p.months.max(1));
                    }
                    None => phase_end = u64::MAX,
                }
            }
            let mut added = 0.0;
            while let Some(e) = events.get(next_event).filter(|e| e.month == m) {
                next_event += 1;
                let deleted = (e.delete_gb * gbf + e.delete_fraction * live).min(live);
                live -= deleted;
                live += e.add_gb * gbf;
                let rewrite = (e.rewrite_gb * gbf).min(live);
                added += e.add_gb * gbf + rewrite;
            }
            for j in 0..c {
                let f = 1.0 / f64::from(c);
                let add = phase.add_gb_per_month * gbf * f;
                let delete = (phase.delete_gb_per_month * gbf * f).min(live);
                let rewrite = ((phase.rewrite_gb_per_month * gbf
                    + phase.rewrite_fraction_per_year / 12.0 * live)
                    * f)
                    .min(live - delete);
                live = live - delete + add;
                if live > max_live {
                    return Err(bad(
                        "phases",
                        format!(
                            "make the live data exceed {} GB in month {m}",
                            limits::MAX_SCENARIO_GB
                        ),
                    ));
                }
                let carried = if j == 0 { added } else { 0.0 };
                let t = f64::from(m) + f64::from(j + 1) * f;
                if t >= f64::from(self.months) {
                    break;
                }
                steps.push(Step {
                    month: t,
                    live_bytes: live as u64,
                    incremental_bytes: (add + rewrite + carried) as u64,
                });
            }
        }
        Ok(steps)
    }

    /// A reproducible random history of the original benchmark: a few phases of growth,
    /// deletion and rewriting, and sometimes a burst of deletions or a large import.
    pub fn random(seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let mut phases = Vec::new();
        let mut left = 120u32;
        while left > 0 {
            let months = (12 + rng.below(48) as u32).min(left);
            left -= months;
            phases.push(Phase {
                months,
                add_gb_per_month: rng.unit() * 40.0,
                delete_gb_per_month: if rng.unit() < 0.3 {
                    rng.unit() * 5.0
                } else {
                    0.0
                },
                rewrite_gb_per_month: 0.0,
                rewrite_fraction_per_year: if rng.unit() < 0.6 {
                    rng.unit() * 0.4
                } else {
                    0.0
                },
            });
        }
        let mut events = Vec::new();
        for _ in 0..rng.below(3) {
            let month = 1 + rng.below(118) as u32;
            if rng.unit() < 0.5 {
                events.push(Event {
                    month,
                    delete_fraction: 0.1 + rng.unit() * 0.5,
                    ..Event::default()
                });
            } else {
                events.push(Event {
                    month,
                    add_gb: 50.0 + rng.unit() * 500.0,
                    ..Event::default()
                });
            }
        }
        Self {
            name: format!("random-{seed}"),
            description: "seeded random history".into(),
            months: 120,
            initial_gb: 20.0 + rng.unit() * 2000.0,
            backups_per_month: [1, 1, 1, 2, 4][rng.below(5) as usize],
            phases,
            events,
            prices: None,
            restore: None,
        }
    }

    /// A reproducible random history of one benchmark family (see [`Family`]).
    pub fn generate(family: Family, seed: u64) -> Self {
        // Each family draws from its own stream, so seed 7 of two families differ.
        let mut rng = SplitMix64(seed ^ (family as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let history = match family {
            Family::NoFreeEgress | Family::Prices => [
                Family::Stationary,
                Family::Churn,
                Family::PeriodicPurges,
                Family::RandomPurges,
            ][rng.below(4) as usize],
            f => f,
        };
        let mut s = history_of(history, &mut rng);
        s.name = format!("{}-{seed}", family.name());
        match family {
            Family::NoFreeEgress => {
                s.prices = Some(PriceTable {
                    free_egress_bytes_per_month: 0,
                    ..PriceTable::default()
                });
                s.description = format!("{} (no free egress left)", s.description);
            }
            Family::Prices => {
                let mut factor = || (rng.unit() * (20f64 / 0.5).ln()).exp() * 0.5;
                let (storage, requests, retrieval, egress) =
                    (factor(), factor(), factor(), factor());
                s.prices = Some(scaled_prices(storage, requests, retrieval, egress));
                s.description = format!(
                    "{} (prices ×{storage:.2} storage, ×{requests:.2} requests, ×{retrieval:.2} retrieval, ×{egress:.2} egress)",
                    s.description
                );
            }
            _ => {}
        }
        s
    }
}

/// The us-east-1 prices with storage, request, retrieval and egress prices scaled.
pub fn scaled_prices(storage: f64, requests: f64, retrieval: f64, egress: f64) -> PriceTable {
    let d = PriceTable::default();
    let mut p = d.clone();
    p.archive_storage_per_gb_month *= storage;
    p.standard_storage_per_gb_month *= storage;
    p.archive_put_per_1000 *= requests;
    p.standard_put_per_1000 *= requests;
    p.get_per_1000 *= requests;
    p.bulk.per_1000_requests *= requests;
    p.standard.per_1000_requests *= requests;
    p.bulk.per_gb *= retrieval;
    p.standard.per_gb *= retrieval;
    for t in &mut p.egress_tiers {
        t.per_gb *= egress;
    }
    p
}

/// The benchmark's families of random histories, each with its own goal (docs/COSTS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Steady growth, little or no churn: the photo library zib is built for.
    Stationary,
    /// A steady fraction of the data rewritten, from 5 % a year to half of it a month.
    Churn,
    /// A quarter to three quarters of the data deleted every 5 to 14 months.
    PeriodicPurges,
    /// Purges of the same size at random months, on average every 5 to 14 months.
    RandomPurges,
    /// Any of the four histories above, with no free egress left for the restore.
    NoFreeEgress,
    /// Any of the four histories, with storage, request, retrieval and egress prices each
    /// scaled by a factor between 0.5 and 20.
    Prices,
}

impl Family {
    /// All families, in report order.
    pub const ALL: [Family; 6] = [
        Family::Stationary,
        Family::Churn,
        Family::PeriodicPurges,
        Family::RandomPurges,
        Family::NoFreeEgress,
        Family::Prices,
    ];

    /// Its name in reports and scenario names.
    pub fn name(self) -> &'static str {
        match self {
            Family::Stationary => "stationary",
            Family::Churn => "churn",
            Family::PeriodicPurges => "periodic-purges",
            Family::RandomPurges => "random-purges",
            Family::NoFreeEgress => "no-free-egress",
            Family::Prices => "prices",
        }
    }

    /// The family with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A log-uniform draw between `lo` and `hi`.
fn log_uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.unit() * (hi.ln() - lo.ln())).exp()
}

fn history_of(family: Family, rng: &mut SplitMix64) -> Scenario {
    let initial_gb = log_uniform(rng, 20.0, 4000.0);
    let backups_per_month = [1, 1, 1, 2, 4][rng.below(5) as usize];
    // New data per month: up to 5 % of the initial data, plus a little.
    let add = rng.unit() * (initial_gb * 0.05) + rng.unit() * 5.0;
    let mut phase = Phase {
        months: 120,
        add_gb_per_month: add,
        ..Phase::default()
    };
    let mut events = Vec::new();
    let description;
    match family {
        Family::Churn => {
            phase.rewrite_fraction_per_year = log_uniform(rng, 0.05, 6.0);
            description = format!(
                "{initial_gb:.0} GB, +{add:.1} GB/month, {:.0} % rewritten a year",
                phase.rewrite_fraction_per_year * 100.0
            );
        }
        Family::PeriodicPurges | Family::RandomPurges => {
            if rng.unit() < 0.5 {
                phase.rewrite_fraction_per_year = rng.unit() * 0.3;
            }
            let period = 5.0 + rng.unit() * 9.0;
            let fraction_lo = 0.25;
            let periodic = family == Family::PeriodicPurges;
            let mut month = if periodic {
                (rng.unit() * period) as u32 + 1
            } else {
                0
            };
            loop {
                if periodic {
                    if month >= 120 {
                        break;
                    }
                    events.push(Event {
                        month,
                        delete_fraction: fraction_lo + rng.unit() * 0.5,
                        ..Event::default()
                    });
                    month += period.round() as u32;
                } else {
                    month += 1;
                    if month >= 120 {
                        break;
                    }
                    if rng.unit() < 1.0 / period {
                        events.push(Event {
                            month,
                            delete_fraction: fraction_lo + rng.unit() * 0.5,
                            ..Event::default()
                        });
                    }
                }
            }
            description = format!(
                "{initial_gb:.0} GB, +{add:.1} GB/month, {:.0} % rewritten a year, {} purges of 25-75 % {}every {period:.1} months",
                phase.rewrite_fraction_per_year * 100.0,
                events.len(),
                if periodic { "" } else { "on average " }
            );
        }
        // Stationary (the price and egress families draw one of the four histories).
        _ => {
            if rng.unit() < 0.5 {
                phase.rewrite_fraction_per_year = rng.unit() * 0.05;
            }
            description = format!(
                "{initial_gb:.0} GB, +{add:.1} GB/month, {:.1} % rewritten a year",
                phase.rewrite_fraction_per_year * 100.0
            );
        }
    }
    Scenario {
        name: String::new(),
        description,
        months: 120,
        initial_gb,
        backups_per_month,
        phases: vec![phase],
        events,
        prices: None,
        restore: None,
    }
}

/// SplitMix64: a tiny, well-known generator; enough for reproducible scenarios.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One backup point of a history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// When, in months (of 365/12 days) from the start.
    pub month: f64,
    /// Live data then: the size of a full.
    pub live_bytes: u64,
    /// Bytes an incremental from the previous step carries.
    pub incremental_bytes: u64,
}

/// How backups are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// One full, then incrementals forever.
    AlwaysIncremental,
    /// A full every N months.
    FullEvery(u32),
    /// zib's planner with this policy.
    Planner(Policy),
    /// The cheapest schedule of fulls in hindsight.
    HindsightOptimum,
    /// Fulls at exactly these months (after the first backup's), for studying a schedule.
    FullsAt(Vec<f64>),
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlwaysIncremental => f.write_str("always incremental"),
            Self::FullEvery(n) => write!(f, "full every {n} months"),
            Self::Planner(_) => f.write_str("zib planner"),
            Self::HindsightOptimum => f.write_str("hindsight optimum"),
            Self::FullsAt(_) => f.write_str("given schedule"),
        }
    }
}

/// What a strategy cost over a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The strategy's name.
    pub strategy: String,
    /// Storage, requests, staging and early deletion of the backups.
    pub backups: Cost,
    /// The final restore's money.
    pub restore: Cost,
    /// Months the final restore takes.
    pub restore_months: f64,
    /// Those months at the policy's price of a month of waiting.
    pub delay: f64,
    /// Months (from the start) at which a full was uploaded after the first.
    pub fulls: Vec<f64>,
}

impl Outcome {
    /// Backups plus restore plus waiting.
    pub fn total(&self) -> f64 {
        self.backups.total() + self.restore.total() + self.delay
    }
}

fn epoch() -> UnixTime {
    CivilDate {
        year: 2026,
        month: 1,
        day: 1,
    }
    .start()
}

fn instant(prices: &PriceTable, month: f64) -> UnixTime {
    let secs = month * prices.days_per_month * DAY_SECS as f64;
    epoch().plus_secs(secs.round() as i64)
}

fn volumes_of(bytes: u64, volume_size: u64) -> Result<Vec<u64>> {
    let v = volume_size.max(1);
    let count = usize::try_from(bytes / v).unwrap_or(usize::MAX);
    if count >= limits::MAX_VOLUMES {
        return Err(bad(
            "initial_gb",
            format!(
                "makes a stream of {count} volumes of {volume_size} bytes; at most {}",
                limits::MAX_VOLUMES
            ),
        ));
    }
    let mut out = vec![v; count];
    if bytes % v > 0 || out.is_empty() {
        out.push(bytes % v);
    }
    Ok(out)
}

/// One backup's terms in the cost of a schedule: what it costs whatever happens, per
/// month stored, per month of minimum duration left unserved, and if it dies young.
#[derive(Debug, Clone, Copy, Default)]
struct Terms {
    /// Upload requests and staging.
    upload: Cost,
    /// Storage per month (archive bytes and per-object overhead).
    monthly: f64,
    /// Early-deletion fee per month of minimum duration left when it is deleted.
    fee_per_month: f64,
    /// Storage when it dies at its minimum age (`min_age`), truncated at the horizon.
    young_storage: f64,
    /// Early-deletion fee when it dies at its minimum age before the horizon.
    young_fee: f64,
}

/// Prefix sums of the incremental terms over the steps, so that a chain's cost is a few
/// subtractions whatever its length.
#[derive(Debug, Default)]
struct Prefix {
    requests: Vec<f64>,
    staging: Vec<f64>,
    monthly: Vec<f64>,
    monthly_t: Vec<f64>,
    fee: Vec<f64>,
    fee_t: Vec<f64>,
    young_storage: Vec<f64>,
    young_fee: Vec<f64>,
}

impl Prefix {
    fn new(terms: &[Terms], times: &[f64]) -> Self {
        let mut p = Self::default();
        let cols: [&mut Vec<f64>; 8] = [
            &mut p.requests,
            &mut p.staging,
            &mut p.monthly,
            &mut p.monthly_t,
            &mut p.fee,
            &mut p.fee_t,
            &mut p.young_storage,
            &mut p.young_fee,
        ];
        for c in cols {
            c.push(0.0);
        }
        for (t, &time) in terms.iter().zip(times) {
            let push = |v: &mut Vec<f64>, x: f64| {
                let last = v.last().copied().unwrap_or(0.0);
                v.push(last + x);
            };
            push(&mut p.requests, t.upload.requests);
            push(&mut p.staging, t.upload.staging);
            push(&mut p.monthly, t.monthly);
            push(&mut p.monthly_t, t.monthly * time);
            push(&mut p.fee, t.fee_per_month);
            push(&mut p.fee_t, t.fee_per_month * time);
            push(&mut p.young_storage, t.young_storage);
            push(&mut p.young_fee, t.young_fee);
        }
        p
    }
}

fn range(v: &[f64], lo: usize, hi: usize) -> f64 {
    if hi > lo {
        v[hi] - v[lo]
    } else {
        0.0
    }
}

/// Prices schedules over one history: which steps are fulls (step 0 always is).
struct Model<'a> {
    steps: &'a [Step],
    times: Vec<f64>,
    policy: &'a Policy,
    prices: &'a PriceTable,
    restore_options: RestoreOptions,
    horizon: f64,
    min_age: f64,
    grace: f64,
    min_storage: f64,
    inc: Vec<Terms>,
    full: Vec<Terms>,
    prefix: Prefix,
}

impl<'a> Model<'a> {
    fn new(
        steps: &'a [Step],
        policy: &'a Policy,
        prices: &'a PriceTable,
        restore_options: RestoreOptions,
        months: u32,
    ) -> Result<Self> {
        let m = prices.days_per_month;
        let mut model = Self {
            steps,
            times: steps.iter().map(|s| s.month).collect(),
            policy,
            prices,
            restore_options,
            horizon: f64::from(months),
            min_age: f64::from(policy.min_age_days) / m,
            grace: f64::from(policy.grace_days) / m,
            min_storage: f64::from(prices.min_storage_days) / m,
            inc: Vec::new(),
            full: Vec::new(),
            prefix: Prefix::default(),
        };
        for (i, step) in steps.iter().enumerate() {
            model.inc.push(model.terms(i, step.incremental_bytes)?);
            model.full.push(model.terms(i, step.live_bytes)?);
        }
        model.prefix = Prefix::new(&model.inc, &model.times);
        Ok(model)
    }

    fn terms(&self, i: usize, bytes: u64) -> Result<Terms> {
        let up = cost::upload(self.prices, &self.policy.upload_shape(), bytes)?;
        let objects = up.volumes + 1;
        let monthly = cost::monthly_storage(self.prices, bytes, objects).total();
        let archive_gb =
            cost::gb(bytes) + objects as f64 * cost::gb(self.prices.overhead_archive_bytes);
        let fee_per_month = archive_gb * self.prices.archive_storage_per_gb_month;
        let t = self.times[i];
        let death = t + self.min_age;
        Ok(Terms {
            upload: up.cost,
            monthly,
            fee_per_month,
            young_storage: monthly * (death.min(self.horizon) - t),
            young_fee: if death < self.horizon {
                fee_per_month * (self.min_storage - self.min_age).max(0.0)
            } else {
                0.0
            },
        })
    }

    /// When the chain superseded by a full at step `b` may be deleted (its members no
    /// earlier than their own minimum age): the full's grace period and the next backup.
    fn release(&self, b: usize) -> f64 {
        let next = self.times.get(b + 1).copied().unwrap_or(f64::INFINITY);
        (self.times[b] + self.grace).max(next)
    }

    /// One backup's cost when deletion of its chain is allowed from `release`.
    fn one(&self, t: &Terms, born: f64, release: f64) -> Cost {
        let death = (born + self.min_age).max(release);
        let mut c = t.upload;
        if death >= self.horizon {
            c.storage += t.monthly * (self.horizon - born);
        } else {
            c.storage += t.monthly * (death - born);
            c.early_deletion += t.fee_per_month * (self.min_storage - (death - born)).max(0.0);
        }
        c
    }

    /// Chain `a..b` (full at `a`), superseded by a full at step `b` (or never: `None`).
    /// Constant time: prefix sums over the three groups of members (old enough to go at
    /// the release without a fee, old enough to go with one, and young ones that go at
    /// their minimum age).
    fn segment(&self, a: usize, b: Option<usize>) -> Cost {
        let end = b.unwrap_or(self.steps.len());
        let release = b.map_or(f64::INFINITY, |b| self.release(b));
        let p = &self.prefix;
        let mut c = Cost {
            requests: range(&p.requests, a, end),
            staging: range(&p.staging, a, end),
            ..Cost::default()
        };
        if release >= self.horizon {
            // Everything lives to the horizon.
            c.storage = self.horizon * range(&p.monthly, a, end) - range(&p.monthly_t, a, end);
        } else {
            // Members born before `young_from` die at the release; those born before
            // `fee_from` are old enough that no fee is due.
            let young_from =
                a + self.times[a..end].partition_point(|&t| t + self.min_age < release);
            let fee_from =
                a + self.times[a..young_from].partition_point(|&t| release - t >= self.min_storage);
            c.storage = release * range(&p.monthly, a, young_from)
                - range(&p.monthly_t, a, young_from)
                + range(&p.young_storage, young_from, end);
            c.early_deletion = (self.min_storage - release) * range(&p.fee, fee_from, young_from)
                + range(&p.fee_t, fee_from, young_from)
                + range(&p.young_fee, young_from, end);
        }
        // The first member is a full, not an incremental.
        c += self.one(&self.full[a], self.times[a], release);
        let inc = self.one(&self.inc[a], self.times[a], release);
        c.requests -= inc.requests;
        c.staging -= inc.staging;
        c.storage -= inc.storage;
        c.early_deletion -= inc.early_deletion;
        c
    }

    /// The final restore of the chain `a..` (full at `a`): its money and its months.
    fn restore(&self, a: usize) -> Result<(Cost, f64)> {
        let mut backups = Vec::with_capacity(self.steps.len() - a);
        for i in a..self.steps.len() {
            let bytes = if i == a {
                self.steps[i].live_bytes
            } else {
                self.steps[i].incremental_bytes
            };
            backups.push(RemoteBackup {
                id: BackupId(i.to_string()),
                kind: if i == a {
                    BackupKind::Full
                } else {
                    BackupKind::Incremental {
                        base: BackupId((i - 1).to_string()),
                    }
                },
                snapshot: SnapshotId(i.to_string()),
                created: instant(self.prices, self.steps[i].month),
                stored_bytes: bytes,
                volumes: volumes_of(bytes, self.policy.volume_size)?,
                parts: 0,
                snapshot_bytes: Some(self.steps[i].live_bytes),
            });
        }
        let catalog = Catalog::new(backups)?;
        let target = BackupId((self.steps.len() - 1).to_string());
        let mut options = self.restore_options.clone();
        loop {
            match plan_restore(
                &catalog,
                &target,
                &options,
                self.prices,
                instant(self.prices, self.horizon),
            ) {
                Ok(plan) => return Ok((plan.cost, plan.months)),
                // A chain that would take over a century to restore within the budget
                // (a strategy that never consolidates a churning dataset): its owner
                // would raise the budget and pay egress, so the simulator does too.
                Err(Error::RestoreTooLong { .. }) if options.monthly_budget_bytes < 1 << 50 => {
                    options.monthly_budget_bytes *= 2;
                    options.budget_remaining_this_month = options.monthly_budget_bytes;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn price_schedule(&self, fulls: &[usize]) -> Result<(Cost, Cost, f64)> {
        let mut total = Cost::default();
        for (k, &a) in fulls.iter().enumerate() {
            total += self.segment(a, fulls.get(k + 1).copied());
        }
        let last = fulls.last().copied().unwrap_or(0);
        let (restore, months) = self.restore(last)?;
        Ok((total, restore, months))
    }
}

/// Prices `strategy` over `scenario`, with the scenario's prices and restore options.
///
/// # Errors
/// Invalid scenario or policy; errors from the planner itself.
pub fn run(scenario: &Scenario, strategy: &Strategy, policy: &Policy) -> Result<Outcome> {
    policy.validate()?;
    let steps = scenario.timeline()?;
    let prices = scenario.price_table();
    let model = Model::new(
        &steps,
        policy,
        &prices,
        scenario.restore_options(),
        scenario.months,
    )?;
    run_model(&model, strategy, f64::from(scenario.backups_per_month))
}

fn run_model(model: &Model<'_>, strategy: &Strategy, per_month: f64) -> Result<Outcome> {
    let steps = model.steps;
    let fulls: Vec<usize> = match strategy {
        Strategy::AlwaysIncremental => vec![0],
        Strategy::FullEvery(n) => {
            let every = (f64::from((*n).max(1)) * per_month) as usize;
            (0..steps.len()).step_by(every.max(1)).collect()
        }
        Strategy::Planner(planner_policy) => planner_schedule(model, planner_policy)?,
        Strategy::HindsightOptimum => hindsight(model)?,
        Strategy::FullsAt(months) => std::iter::once(0)
            .chain(
                steps
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|(_, s)| months.iter().any(|m| (m - s.month).abs() < 1e-9))
                    .map(|(i, _)| i),
            )
            .collect(),
    };
    let (backups, restore, restore_months) = model.price_schedule(&fulls)?;
    Ok(Outcome {
        strategy: strategy.to_string(),
        backups,
        restore,
        restore_months,
        delay: restore_months * model.policy.delay_cost_per_month,
        fulls: fulls.iter().skip(1).map(|&i| steps[i].month).collect(),
    })
}

/// Dynamic programming over the steps at which a full is taken: the cost of a chain
/// depends only on where it starts and where the next full supersedes it, so the best
/// schedule ending with a full at `b` extends the best one ending at some earlier `a`.
/// O(n²) with constant-time chains; the final restore is planned for the candidate last
/// fulls in order of their cost without it, stopping once no restore (which costs at
/// least nothing) can make a candidate win.
fn hindsight(model: &Model<'_>) -> Result<Vec<usize>> {
    let n = model.steps.len();
    let mut best = vec![f64::INFINITY; n];
    let mut prev = vec![0usize; n];
    best[0] = 0.0;
    for b in 1..n {
        for a in 0..b {
            let c = best[a] + model.segment(a, Some(b)).total();
            if c < best[b] {
                best[b] = c;
                prev[b] = a;
            }
        }
    }
    // No restore of a chain costs less than retrieving its bytes, keeping each restored
    // copy a day plus the slack, sending the bytes at the first egress tier when no
    // egress is free (each month's batch stays within the budget, far below the first
    // tier's bound), and waiting a month per budget's worth beyond the first two (the
    // first and last months may be partial): candidates
    // are tried cheapest first by that floor, and the search stops once the floor alone
    // loses.
    let o = &model.restore_options;
    let retrieval_per_gb = model.prices.retrieval(o.tier).per_gb;
    let copy_per_gb = model.prices.standard_storage_per_gb_month * f64::from(1 + o.slack_days)
        / model.prices.days_per_month;
    let first_tier = model.prices.egress_tiers.first();
    let egress_per_gb = match first_tier {
        Some(t)
            if model.prices.free_egress_bytes_per_month == 0
                && !o.allow_overrun
                && t.up_to_bytes.is_none_or(|b| b >= o.monthly_budget_bytes) =>
        {
            t.per_gb
        }
        _ => 0.0,
    };
    let delay = model.policy.delay_cost_per_month;
    let floor_of = |chain: u64| -> f64 {
        let months = if o.allow_overrun {
            0.0
        } else {
            (chain as f64 / o.monthly_budget_bytes as f64 - 2.0).max(0.0)
        };
        cost::gb(chain) * (retrieval_per_gb + copy_per_gb + egress_per_gb) + delay * months
    };
    let mut after = vec![0u64; n + 1];
    for i in (0..n).rev() {
        after[i] = after[i + 1].saturating_add(model.steps[i].incremental_bytes);
    }
    let mut candidates: Vec<(f64, f64, usize)> = (0..n)
        .map(|a| {
            let chain = model.steps[a].live_bytes.saturating_add(after[a + 1]);
            let floor = floor_of(chain);
            let without = best[a] + model.segment(a, None).total();
            (without + floor, without, a)
        })
        .collect();
    candidates.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut winner = (f64::INFINITY, 0usize);
    for (bound, without_restore, a) in candidates {
        if bound >= winner.0 {
            break;
        }
        let (restore, months) = model.restore(a)?;
        let c = without_restore + restore.total() + months * model.policy.delay_cost_per_month;
        if c < winner.0 {
            winner = (c, a);
        }
    }
    let mut fulls = vec![winner.1];
    while let Some(&last) = fulls.last() {
        if last == 0 {
            break;
        }
        fulls.push(prev[last]);
    }
    fulls.reverse();
    Ok(fulls)
}

/// How many months of local snapshots the simulated user keeps (with size estimates).
const LOCAL_MONTHS: f64 = 7.0;

/// Runs the real planner step by step on the catalog it would see.
fn planner_schedule(model: &Model<'_>, policy: &Policy) -> Result<Vec<usize>> {
    planner_schedule_recording(model, policy, None)
}

/// Receives the planner's consolidation evaluation at each step.
type Recorder<'a> = dyn FnMut(&Step, &crate::ConsolidationDecision) + 'a;

/// [`planner_schedule`], handing each step's consolidation evaluation to `record`.
fn planner_schedule_recording(
    model: &Model<'_>,
    policy: &Policy,
    mut record: Option<&mut Recorder<'_>>,
) -> Result<Vec<usize>> {
    let steps = model.steps;
    let prices = model.prices;
    let mut fulls = vec![0usize];
    // Committed backups still in the bucket, with the month each will be deleted.
    let mut alive: Vec<(RemoteBackup, f64)> = Vec::new();
    let snap = |i: usize| SnapshotId(format!("s{i}"));
    let mut born: HashMap<BackupId, f64> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let now = instant(prices, step.month);
        alive.retain(|(_, death)| *death > step.month);
        let catalog = Catalog::new(alive.iter().map(|(b, _)| b.clone()).collect())?;
        let mut local: Vec<LocalSnapshot> = steps[..i]
            .iter()
            .enumerate()
            .filter(|(_, s)| step.month - s.month <= LOCAL_MONTHS)
            .map(|(k, s)| LocalSnapshot {
                id: snap(k),
                name: format!("sim@{k}"),
                created: instant(prices, s.month),
                full_bytes: Some(s.live_bytes),
                incremental: None,
            })
            .collect();
        local.push(LocalSnapshot {
            id: snap(i),
            name: format!("sim@{i}"),
            created: now,
            full_bytes: Some(step.live_bytes),
            incremental: (i > 0).then(|| IncrementalEstimate {
                base: snap(i - 1),
                bytes: step.incremental_bytes,
            }),
        });
        let decision = decide_backup(&catalog, &local, None, policy, prices, now)?;
        if let (Some(record), Some(snapshot), true) = (record.as_mut(), local.last(), i > 0) {
            let eval = crate::plan_consolidation(&catalog, &local, snapshot, policy, prices, now)?;
            record(step, &eval);
        }
        let (kind, bytes) = match &decision.plan {
            PlannedBackup::Incremental { base_backup, .. } => (
                BackupKind::Incremental {
                    base: base_backup.clone(),
                },
                step.incremental_bytes,
            ),
            PlannedBackup::Full | PlannedBackup::UpToDate => (BackupKind::Full, step.live_bytes),
        };
        if i > 0 && kind == BackupKind::Full {
            fulls.push(i);
            // The chain it supersedes goes as the simulator's rules say (the same for
            // every strategy): at the latest of its minimum age, the grace period and
            // the next backup.
            let release = model.release(i);
            for (b, death) in &mut alive {
                if death.is_infinite() {
                    let t = born.get(&b.id).copied().unwrap_or(step.month);
                    *death = (t + model.min_age).max(release);
                }
            }
        }
        let id = BackupId(format!("b{i}"));
        born.insert(id.clone(), step.month);
        alive.push((
            RemoteBackup {
                id,
                kind,
                snapshot: snap(i),
                created: now,
                stored_bytes: bytes,
                volumes: volumes_of(bytes, policy.volume_size)?,
                parts: 0,
                snapshot_bytes: Some(step.live_bytes),
            },
            f64::INFINITY,
        ));
    }
    Ok(fulls)
}

/// Runs the real planner step by step on the catalog it would see.
/// The planner's consolidation evaluation at every backup of `scenario` (after the
/// first), with the step it was made at: what the `simulate` example's `--explain` prints,
/// to study why the planner chose what it did.
///
/// # Errors
/// As [`run`].
pub fn evaluations(
    scenario: &Scenario,
    policy: &Policy,
) -> Result<Vec<(Step, crate::ConsolidationDecision)>> {
    policy.validate()?;
    let steps = scenario.timeline()?;
    let prices = scenario.price_table();
    let model = Model::new(
        &steps,
        policy,
        &prices,
        scenario.restore_options(),
        scenario.months,
    )?;
    let mut out = Vec::new();
    planner_schedule_recording(
        &model,
        policy,
        Some(&mut |step: &Step, eval: &crate::ConsolidationDecision| {
            out.push((*step, eval.clone()));
        }),
    )?;
    Ok(out)
}

/// Every strategy of the benchmark over one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The scenario's name.
    pub scenario: String,
    /// Always incremental, then a full every 6, 12, 24 and 36 months.
    pub naive: Vec<Outcome>,
    /// zib's planner.
    pub planner: Outcome,
    /// The hindsight optimum.
    pub optimum: Outcome,
}

impl Comparison {
    /// The cheapest naive strategy.
    pub fn best_naive(&self) -> &Outcome {
        self.naive
            .iter()
            .min_by(|a, b| a.total().total_cmp(&b.total()))
            .unwrap_or(&self.optimum)
    }

    /// The planner's cost as a multiple of the optimum's (1.0 = optimal).
    pub fn ratio_to_optimum(&self) -> f64 {
        self.planner.total() / self.optimum.total()
    }

    /// How much more the planner costs than the optimum, as a fraction.
    pub fn excess_over_optimum(&self) -> f64 {
        self.ratio_to_optimum() - 1.0
    }

    /// Planner minus the best naive strategy, in dollars (≤ 0.01 counts as a tie).
    pub fn versus_best_naive(&self) -> f64 {
        self.planner.total() - self.best_naive().total()
    }

    /// Planner over the best naive strategy, as a fraction (negative: the planner is
    /// cheaper).
    pub fn excess_over_best_naive(&self) -> f64 {
        self.versus_best_naive() / self.best_naive().total()
    }
}

/// Runs every benchmark strategy over `scenario`; the planner uses `policy` unchanged.
///
/// # Errors
/// As [`run`].
pub fn compare(scenario: &Scenario, policy: &Policy) -> Result<Comparison> {
    policy.validate()?;
    let steps = scenario.timeline()?;
    let prices = scenario.price_table();
    let model = Model::new(
        &steps,
        policy,
        &prices,
        scenario.restore_options(),
        scenario.months,
    )?;
    let per_month = f64::from(scenario.backups_per_month);
    let mut naive = vec![run_model(&model, &Strategy::AlwaysIncremental, per_month)?];
    for n in [6, 12, 24, 36] {
        naive.push(run_model(&model, &Strategy::FullEvery(n), per_month)?);
    }
    Ok(Comparison {
        scenario: scenario.name.clone(),
        naive,
        planner: run_model(&model, &Strategy::Planner(policy.clone()), per_month)?,
        optimum: run_model(&model, &Strategy::HindsightOptimum, per_month)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain cost computed member by member, to check the prefix sums against.
    fn segment_by_member(model: &Model<'_>, a: usize, b: Option<usize>) -> Cost {
        let end = b.unwrap_or(model.steps.len());
        let release = b.map_or(f64::INFINITY, |b| model.release(b));
        (a..end)
            .map(|i| {
                let t = if i == a {
                    &model.full[i]
                } else {
                    &model.inc[i]
                };
                model.one(t, model.times[i], release)
            })
            .sum()
    }

    #[test]
    fn the_dynamic_program_finds_the_cheapest_of_all_schedules() {
        // Every subset of steps 1..n as fulls, priced by the same model.
        for (seed, family) in [
            (3, Family::Churn),
            (5, Family::NoFreeEgress),
            (8, Family::RandomPurges),
        ] {
            let mut s = Scenario::generate(family, seed);
            s.months = 9;
            s.backups_per_month = 1;
            let policy = Policy::default();
            let steps = s.timeline().unwrap_or_else(|e| panic!("{e}"));
            let prices = s.price_table();
            let model = Model::new(&steps, &policy, &prices, s.restore_options(), s.months)
                .unwrap_or_else(|e| panic!("{e}"));
            let n = steps.len();
            let total = |fulls: &[usize]| {
                let (b, r, m) = model
                    .price_schedule(fulls)
                    .unwrap_or_else(|e| panic!("{e}"));
                b.total() + r.total() + m * policy.delay_cost_per_month
            };
            let mut cheapest = f64::INFINITY;
            for mask in 0u32..(1 << (n - 1)) {
                let fulls: Vec<usize> = std::iter::once(0)
                    .chain((1..n).filter(|i| mask & (1 << (i - 1)) != 0))
                    .collect();
                cheapest = cheapest.min(total(&fulls));
            }
            let dp = hindsight(&model).unwrap_or_else(|e| panic!("{e}"));
            let found = total(&dp);
            assert!(
                (found - cheapest).abs() <= 1e-9 * cheapest,
                "{}: dynamic program ${found} vs exhaustive ${cheapest}",
                s.name
            );
        }
    }

    #[test]
    fn constant_time_chains_match_member_by_member_sums() {
        for seed in 0..6 {
            let mut s = Scenario::random(seed);
            s.months = 30;
            for (min_age_days, grace_days) in [(180, 30), (30, 0), (0, 90), (400, 10)] {
                let policy = Policy {
                    min_age_days,
                    grace_days,
                    ..Policy::default()
                };
                let steps = s.timeline().unwrap_or_else(|e| panic!("{e}"));
                let prices = PriceTable::default();
                let model = Model::new(&steps, &policy, &prices, s.restore_options(), s.months)
                    .unwrap_or_else(|e| panic!("{e}"));
                let n = steps.len();
                for a in 0..n {
                    for b in (a + 1..n).map(Some).chain([None]) {
                        let fast = model.segment(a, b);
                        let slow = segment_by_member(&model, a, b);
                        for (x, y) in [
                            (fast.requests, slow.requests),
                            (fast.storage, slow.storage),
                            (fast.early_deletion, slow.early_deletion),
                            (fast.staging, slow.staging),
                        ] {
                            assert!(
                                (x - y).abs() <= 1e-9 * (1.0 + y.abs()),
                                "seed {seed} a {a} b {b:?} min age {min_age_days}: {fast} vs {slow}"
                            );
                        }
                    }
                }
            }
        }
    }
}
