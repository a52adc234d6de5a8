//! A cost simulator for whole backup histories: a [`Scenario`] says what a dataset does
//! month by month; [`run`] prices a strategy over it — always incremental, a full every N
//! months, zib's planner (driven through [`crate::decide_backup`] with the catalog it
//! would see), or the hindsight optimum (dynamic programming over consolidation points).
//!
//! Objective (the same for every strategy): storage, requests, staging and early
//! deletion over the scenario's months, plus one restore of the newest restore point at
//! the end under the default restore options (100 GB/month, Bulk). Time is counted in
//! 30-day billing months, so the 180-day minimum is exactly 6 months; a backup is taken
//! `backups_per_month` times a month, the first one a full of the initial data. Streams
//! are assumed the size of the data they carry (no compression; encryption overhead is
//! negligible). An incremental carries the bytes added or rewritten since the previous
//! backup; a full carries the live data. Superseded backups are deleted when a fresh full
//! is committed, each no earlier than its minimum age (`Policy::min_age_days`), and one
//! restore point is kept.

use serde::{Deserialize, Serialize};

use crate::cost::{self, Cost};
use crate::{
    decide_backup, plan_restore, BackupId, BackupKind, Catalog, CivilDate, Error,
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
    /// over the months.
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
}

fn default_months() -> u32 {
    120
}

fn default_cadence() -> u32 {
    1
}

fn bad(problem: String) -> Error {
    Error::InvalidPolicy {
        field: "scenario",
        problem,
    }
}

impl Scenario {
    /// Checks the numbers make sense.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] (field `scenario`) saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.months == 0 || self.months > 1200 {
            return Err(bad(format!("months is {}; use 1..=1200", self.months)));
        }
        if !(1..=31).contains(&self.backups_per_month) {
            return Err(bad("backups_per_month must be 1..=31".into()));
        }
        if self.phases.is_empty() {
            return Err(bad("needs at least one [[phases]] entry".into()));
        }
        let numbers = std::iter::once(self.initial_gb)
            .chain(self.phases.iter().flat_map(|p| {
                [
                    p.add_gb_per_month,
                    p.delete_gb_per_month,
                    p.rewrite_gb_per_month,
                    p.rewrite_fraction_per_year,
                ]
            }))
            .chain(
                self.events
                    .iter()
                    .flat_map(|e| [e.add_gb, e.delete_gb, e.delete_fraction, e.rewrite_gb]),
            );
        for n in numbers {
            if !n.is_finite() || n < 0.0 {
                return Err(bad(format!("{n} is not a non-negative number")));
            }
        }
        if self.events.iter().any(|e| e.delete_fraction > 1.0) {
            return Err(bad("delete_fraction is above 1".into()));
        }
        Ok(())
    }

    /// The backups this history produces, oldest first.
    ///
    /// # Errors
    /// As [`Scenario::validate`].
    pub fn timeline(&self) -> Result<Vec<Step>> {
        self.validate()?;
        let c = self.backups_per_month;
        let mut live = self.initial_gb * GB as f64;
        let mut steps = vec![Step {
            month: 0.0,
            live_bytes: live as u64,
            incremental_bytes: live as u64,
        }];
        let mut phase_end = 0u32;
        let mut phases = self.phases.iter();
        let mut phase = &self.phases[0];
        for m in 0..self.months {
            while m >= phase_end {
                match phases.next() {
                    Some(p) => {
                        phase = p;
                        phase_end += p.months.max(1);
                    }
                    None => phase_end = u32::MAX,
                }
            }
            let mut added = 0.0;
            for e in self.events.iter().filter(|e| e.month == m) {
                let deleted = (e.delete_gb * GB as f64 + e.delete_fraction * live).min(live);
                live -= deleted;
                live += e.add_gb * GB as f64;
                let rewrite = (e.rewrite_gb * GB as f64).min(live);
                added += e.add_gb * GB as f64 + rewrite;
            }
            for j in 0..c {
                let f = 1.0 / f64::from(c);
                let add = phase.add_gb_per_month * GB as f64 * f;
                let delete = (phase.delete_gb_per_month * GB as f64 * f).min(live);
                let rewrite = ((phase.rewrite_gb_per_month * GB as f64
                    + phase.rewrite_fraction_per_year / 12.0 * live)
                    * f)
                    .min(live - delete);
                live = live - delete + add;
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

    /// A reproducible random history: a few phases of growth, deletion and rewriting,
    /// and sometimes a burst of deletions or a large import.
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
        }
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
    /// When, in billing months from the start.
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
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlwaysIncremental => f.write_str("always incremental"),
            Self::FullEvery(n) => write!(f, "full every {n} months"),
            Self::Planner(_) => f.write_str("zib planner"),
            Self::HindsightOptimum => f.write_str("hindsight optimum"),
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
    /// The final restore.
    pub restore: Cost,
    /// Months (from the start) at which a full was uploaded after the first.
    pub fulls: Vec<f64>,
}

impl Outcome {
    /// Backups plus restore.
    pub fn total(&self) -> f64 {
        self.backups.total() + self.restore.total()
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
    let secs = month * f64::from(prices.days_per_month) * DAY_SECS as f64;
    epoch().plus_secs(secs.round() as i64)
}

fn volumes_of(bytes: u64, volume_size: u64) -> Vec<u64> {
    let v = volume_size.max(1);
    let mut out = vec![v; (bytes / v) as usize];
    if bytes % v > 0 || out.is_empty() {
        out.push(bytes % v);
    }
    out
}

/// Prices one schedule: `full[i]` says whether step `i` is a full (step 0 always is).
struct Model<'a> {
    steps: &'a [Step],
    policy: &'a Policy,
    prices: &'a PriceTable,
    horizon: f64,
    min_age: f64,
}

impl Model<'_> {
    fn size(&self, i: usize, full: bool) -> u64 {
        if full {
            self.steps[i].live_bytes
        } else {
            self.steps[i].incremental_bytes
        }
    }

    /// Upload plus storage from birth until `death`, plus any early-deletion fee.
    fn backup_cost(&self, i: usize, full: bool, death: f64) -> Cost {
        let bytes = self.size(i, full);
        let up = cost::upload(self.prices, &self.policy.upload_shape(), bytes);
        let objects = up.volumes + 1;
        let born = self.steps[i].month;
        let end = death.min(self.horizon);
        let mut c = up.cost + cost::monthly_storage(self.prices, bytes, objects).scaled(end - born);
        if death < self.horizon {
            let age_days = (death - born) * f64::from(self.prices.days_per_month);
            c.early_deletion += cost::early_deletion_fee(self.prices, bytes, objects, age_days);
        }
        c
    }

    /// Chain `a..b` (full at `a`), superseded by a full at step `b` (or never: `None`).
    fn segment(&self, a: usize, b: Option<usize>) -> Cost {
        let end = b.map_or(self.steps.len(), |b| b);
        (a..end)
            .map(|i| {
                let death = b.map_or(f64::INFINITY, |b| {
                    self.steps[b].month.max(self.steps[i].month + self.min_age)
                });
                self.backup_cost(i, i == a, death)
            })
            .sum()
    }

    /// Restore at the horizon of the chain `a..` (full at `a`).
    fn restore(&self, a: usize) -> Result<Cost> {
        let backups: Vec<RemoteBackup> = (a..self.steps.len())
            .map(|i| {
                let bytes = self.size(i, i == a);
                RemoteBackup {
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
                    volumes: volumes_of(bytes, self.policy.volume_size),
                    parts: 0,
                }
            })
            .collect();
        let catalog = Catalog::new(backups)?;
        let target = BackupId((self.steps.len() - 1).to_string());
        let options = RestoreOptions {
            staging_available_bytes: u64::MAX,
            ..RestoreOptions::default()
        };
        Ok(plan_restore(
            &catalog,
            &target,
            &options,
            self.prices,
            instant(self.prices, self.horizon),
        )?
        .cost)
    }

    fn price_schedule(&self, fulls: &[usize]) -> Result<(Cost, Cost)> {
        let mut total = Cost::default();
        for (k, &a) in fulls.iter().enumerate() {
            total += self.segment(a, fulls.get(k + 1).copied());
        }
        let last = fulls.last().copied().unwrap_or(0);
        Ok((total, self.restore(last)?))
    }
}

/// Prices `strategy` over `scenario`.
///
/// # Errors
/// Invalid scenario, policy or prices; errors from the planner itself.
pub fn run(
    scenario: &Scenario,
    strategy: &Strategy,
    policy: &Policy,
    prices: &PriceTable,
) -> Result<Outcome> {
    policy.validate()?;
    prices.validate()?;
    let steps = scenario.timeline()?;
    let model = Model {
        steps: &steps,
        policy,
        prices,
        horizon: f64::from(scenario.months),
        min_age: f64::from(policy.min_age_days) / f64::from(prices.days_per_month),
    };
    let per_month = f64::from(scenario.backups_per_month);
    let fulls: Vec<usize> = match strategy {
        Strategy::AlwaysIncremental => vec![0],
        Strategy::FullEvery(n) => {
            let every = (f64::from((*n).max(1)) * per_month) as usize;
            (0..steps.len()).step_by(every.max(1)).collect()
        }
        Strategy::Planner(planner_policy) => planner_schedule(&steps, planner_policy, prices)?,
        Strategy::HindsightOptimum => hindsight(&model)?,
    };
    let (backups, restore) = model.price_schedule(&fulls)?;
    Ok(Outcome {
        strategy: strategy.to_string(),
        backups,
        restore,
        fulls: fulls.iter().skip(1).map(|&i| steps[i].month).collect(),
    })
}

/// Dynamic programming over the steps at which a full is taken: the cost of a chain
/// depends only on where it starts and where the next full supersedes it, so the best
/// schedule ending with a full at `b` extends the best one ending at some earlier `a`.
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
    let mut winner = (f64::INFINITY, 0usize);
    for (a, &cost_to_a) in best.iter().enumerate() {
        let c = cost_to_a + model.segment(a, None).total() + model.restore(a)?.total();
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

/// Runs the real planner step by step on the catalog it would see.
fn planner_schedule(steps: &[Step], policy: &Policy, prices: &PriceTable) -> Result<Vec<usize>> {
    let mut fulls = vec![0usize];
    // Committed backups still in the bucket, with the instant each will be deleted.
    let mut alive: Vec<(RemoteBackup, Option<UnixTime>)> = Vec::new();
    let snap = |i: usize| SnapshotId(format!("s{i}"));
    for (i, step) in steps.iter().enumerate() {
        let now = instant(prices, step.month);
        alive.retain(|(_, death)| death.is_none_or(|d| d > now));
        let catalog = Catalog::new(alive.iter().map(|(b, _)| b.clone()).collect())?;
        // The user keeps about seven months of snapshots locally.
        let mut local: Vec<LocalSnapshot> = steps[..i]
            .iter()
            .enumerate()
            .filter(|(_, s)| step.month - s.month <= 7.0)
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
            let deletions = decision
                .consolidation
                .map(|c| c.deletions)
                .unwrap_or_default();
            for d in deletions {
                if let Some(entry) = alive.iter_mut().find(|(b, _)| b.id == d.backup) {
                    entry.1 = Some(d.not_before);
                }
            }
        }
        alive.push((
            RemoteBackup {
                id: BackupId(format!("b{i}")),
                kind,
                snapshot: snap(i),
                created: now,
                stored_bytes: bytes,
                volumes: volumes_of(bytes, policy.volume_size),
                parts: 0,
            },
            None,
        ));
    }
    Ok(fulls)
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

    /// How much more the planner costs than the optimum, as a fraction.
    pub fn excess_over_optimum(&self) -> f64 {
        (self.planner.total() - self.optimum.total()) / self.optimum.total()
    }

    /// Planner minus the best naive strategy, in dollars (≤ 0.01 counts as a tie).
    pub fn versus_best_naive(&self) -> f64 {
        self.planner.total() - self.best_naive().total()
    }
}

/// Runs every benchmark strategy over `scenario`; the planner uses `policy` unchanged.
///
/// # Errors
/// As [`run`].
pub fn compare(scenario: &Scenario, policy: &Policy, prices: &PriceTable) -> Result<Comparison> {
    let mut naive = vec![run(scenario, &Strategy::AlwaysIncremental, policy, prices)?];
    for n in [6, 12, 24, 36] {
        naive.push(run(scenario, &Strategy::FullEvery(n), policy, prices)?);
    }
    Ok(Comparison {
        scenario: scenario.name.clone(),
        naive,
        planner: run(scenario, &Strategy::Planner(policy.clone()), policy, prices)?,
        optimum: run(scenario, &Strategy::HindsightOptimum, policy, prices)?,
    })
}
