//! Property tests: invariants that must hold for any catalog, size or date.
//!
//! Restorability and "what the newest restore points need" are computed here again from
//! the backups' base links alone, never with the catalog's own answers, so a property
//! cannot pass by the planner agreeing with itself (an empty plan, a chain that always
//! fails).
mod common;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use common::*;
use proptest::prelude::*;
use zib_planner::cost::{self, UploadShape};
use zib_planner::sim::{self, Scenario, Strategy as SimStrategy};
use zib_planner::{
    plan_consolidation, plan_pruning, plan_restore, BackupId, BackupKind, Catalog, Policy,
    PriceTable, RemoteBackup, RestoreOptions, Tier, UnixTime, DAY_SECS, GB,
};

/// Backups in time order, each a full or an incremental on a random earlier one, with
/// some removed afterwards (as pruning would) to leave orphans.
fn arb_catalog() -> impl Strategy<Value = Catalog> {
    prop::collection::vec(
        (
            any::<bool>(),
            any::<prop::sample::Index>(),
            prop::collection::vec(1u64..(3 * GB), 1..4),
            any::<bool>(),
        ),
        1..25,
    )
    .prop_map(|specs| {
        let mut backups = Vec::new();
        let mut removed = HashSet::new();
        for (i, (full, base, volumes, remove)) in specs.into_iter().enumerate() {
            let base_name = if i == 0 || full {
                None
            } else {
                Some(format!("b{}", base.index(i)))
            };
            let created = at(2020, 1, 1).plus_days(i as i64 * 20);
            backups.push(backup(
                &format!("b{i}"),
                base_name.as_deref(),
                created,
                volumes,
            ));
            if remove && i % 3 == 0 {
                removed.insert(format!("b{i}"));
            }
        }
        backups.retain(|b| !removed.contains(&b.id.0));
        catalog(backups)
    })
}

fn base_of(b: &RemoteBackup) -> Option<&zib_planner::BackupId> {
    match &b.kind {
        BackupKind::Full => None,
        BackupKind::Incremental { base } => Some(base),
    }
}

/// The ids from a full to `id`, following base links through `backups`; `None` when a
/// link leads to a backup that is not there (`id` cannot be restored).
fn chain_by_links(backups: &[RemoteBackup], id: &BackupId) -> Option<Vec<BackupId>> {
    let by_id: HashMap<&BackupId, &RemoteBackup> = backups.iter().map(|b| (&b.id, b)).collect();
    let mut chain = vec![id.clone()];
    let mut current = *by_id.get(id)?;
    while let Some(base) = base_of(current) {
        current = by_id.get(base)?;
        chain.push(current.id.clone());
        assert!(chain.len() <= backups.len(), "a cycle through {id}");
    }
    chain.reverse();
    Some(chain)
}

/// Every backup the newest `keep` restorable backups need, by [`chain_by_links`].
fn needed_by_links(backups: &[RemoteBackup], keep: usize) -> HashSet<BackupId> {
    let mut points: Vec<&RemoteBackup> = backups
        .iter()
        .filter(|b| chain_by_links(backups, &b.id).is_some())
        .collect();
    points.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    points
        .iter()
        .rev()
        .take(keep)
        .flat_map(|b| chain_by_links(backups, &b.id).unwrap_or_default())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn restore_chains_start_at_a_full_and_are_contiguous(c in arb_catalog()) {
        for b in c.backups() {
            let expected = chain_by_links(c.backups(), &b.id);
            prop_assert_eq!(c.is_restorable(&b.id), expected.is_some(), "{}", b.id);
            match (c.chain(&b.id), expected) {
                (Ok(chain), Some(expected)) => {
                    let ids: Vec<BackupId> = chain.iter().map(|x| x.id.clone()).collect();
                    prop_assert_eq!(ids, expected);
                    prop_assert_eq!(&chain[0].kind, &BackupKind::Full);
                    for pair in chain.windows(2) {
                        prop_assert_eq!(base_of(pair[1]), Some(&pair[0].id));
                        prop_assert!(pair[0].created < pair[1].created);
                    }
                }
                (Err(zib_planner::Error::BrokenChain { backup, missing }), None) => {
                    prop_assert_eq!(&backup, &b.id);
                    prop_assert!(c.get(&missing).is_none(), "{} is there", missing);
                }
                (chain, expected) => prop_assert!(
                    false,
                    "{}: chain {:?}, by its links {:?}",
                    b.id,
                    chain.map(|x| x.len()),
                    expected
                ),
            }
        }
    }

    #[test]
    fn costs_are_monotone_in_size(a in 0u64..(1 << 44), b in 0u64..(1 << 44), objects in 0u64..10_000, age in 0.0f64..400.0, free in 0u64..(200 * GB)) {
        let (small, large) = (a.min(b), a.max(b));
        let p = PriceTable::default();
        let shape = UploadShape { volume_size: GB, part_size: 64 << 20, upload_bytes_per_sec: 1 << 21 };
        prop_assert!(cost::monthly_storage(&p, small, objects).total() <= cost::monthly_storage(&p, large, objects).total());
        let up = |bytes| cost::upload(&p, &shape, bytes).map(|u| u.cost.total()).map_err(|e| TestCaseError::fail(e.to_string()));
        prop_assert!(up(small)? <= up(large)?);
        prop_assert!(cost::early_deletion_fee(&p, small, objects, age) <= cost::early_deletion_fee(&p, large, objects, age));
        prop_assert!(cost::egress(&p, small, free, 0) <= cost::egress(&p, large, free, 0));
        for tier in [Tier::Bulk, Tier::Standard] {
            prop_assert!(cost::retrieval(&p, tier, small, objects).total() <= cost::retrieval(&p, tier, large, objects).total());
        }
        prop_assert!(cost::restored_copy(&p, small, 3).total() <= cost::restored_copy(&p, large, 3).total());
    }

    #[test]
    fn restore_batches_stay_within_budget_and_keep_volumes_whole_and_in_order(
        volumes in prop::collection::vec(prop::collection::vec(1u64..(40 * GB), 1..6), 1..6),
        budget_gb in 40u64..=100,
        remaining_gb in 0u64..300,
        day in 0i64..365,
        grow in 0u64..GB,
    ) {
        let mut backups = Vec::new();
        for (i, v) in volumes.iter().enumerate() {
            let base = (i > 0).then(|| format!("b{}", i - 1));
            backups.push(backup(&format!("b{i}"), base.as_deref(), at(2024, 1, 1).plus_days(i as i64), v.clone()));
        }
        let c = catalog(backups);
        let target = c.backups().last().map(|b| b.id.clone()).ok_or_else(|| TestCaseError::fail("empty"))?;
        let opts = RestoreOptions {
            monthly_budget_bytes: budget_gb * GB,
            budget_remaining_this_month: remaining_gb * GB,
            staging_available_bytes: u64::MAX,
            ..RestoreOptions::default()
        };
        let p = PriceTable::default();
        let now = at(2026, 1, 1).plus_days(day);
        let plan = plan_restore(&c, &target, &opts, &p, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let flat: Vec<(String, u32, u64)> = plan.batches.iter().flat_map(|b| b.volumes.iter().map(|v| (v.backup.0.clone(), v.index, v.bytes))).collect();
        let expected: Vec<(String, u32, u64)> = c.backups().iter().flat_map(|b| b.volumes.iter().enumerate().map(|(i, &v)| (b.id.0.clone(), i as u32, v))).collect();
        prop_assert_eq!(flat, expected);
        for (i, b) in plan.batches.iter().enumerate() {
            let limit = if i == 0 && b.month == now.month() { opts.budget_remaining_this_month.min(opts.monthly_budget_bytes) } else { opts.monthly_budget_bytes };
            prop_assert!(b.bytes <= limit, "batch {} has {} bytes over {}", i, b.bytes, limit);
            prop_assert!(b.download_from < b.month.end());
            prop_assert!(b.request_at >= now);
            if i > 0 { prop_assert!(plan.batches[i - 1].month < b.month); }
        }
        // Costs are monotone: one volume grown never makes the restore cheaper. (With a
        // budget above the free allowance they need not be: repacking can move paid bytes
        // into months with free allowance left.)
        let mut bigger: Vec<RemoteBackup> = c.backups().to_vec();
        let last = bigger.len() - 1;
        bigger[last].volumes[0] = (bigger[last].volumes[0] + grow).min(opts.monthly_budget_bytes.max(bigger[last].volumes[0]));
        bigger[last].stored_bytes = bigger[last].volumes.iter().sum();
        let c2 = catalog(bigger);
        let plan2 = plan_restore(&c2, &target, &opts, &p, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(plan2.cost.total() + 1e-12 >= plan.cost.total());
    }

    #[test]
    fn moving_now_within_a_month_does_not_change_the_plan(
        sizes in prop::collection::vec(1u64..(30 * GB), 1..30),
        month in 0i64..24,
        a in 0i64..(25 * DAY_SECS),
        b in 0i64..(25 * DAY_SECS),
    ) {
        let c = catalog(vec![backup("f", None, at(2020, 1, 1), sizes)]);
        let start = UnixTime(at(2026, 1, 1).0 + month * 31 * DAY_SECS).month().start();
        let opts = RestoreOptions { staging_available_bytes: u64::MAX, ..RestoreOptions::default() };
        let p = PriceTable::default();
        let plan_a = plan_restore(&c, &zib_planner::BackupId("f".into()), &opts, &p, start.plus_secs(a))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let plan_b = plan_restore(&c, &zib_planner::BackupId("f".into()), &opts, &p, start.plus_secs(b))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(plan_a.batches.len(), plan_b.batches.len());
        prop_assert!((plan_a.cost.total() - plan_b.cost.total()).abs() < 1e-12);
        for (x, y) in plan_a.batches.iter().zip(&plan_b.batches) {
            prop_assert_eq!(x.month, y.month);
            prop_assert_eq!(&x.volumes, &y.volumes);
            prop_assert_eq!(x.restore_days, y.restore_days);
            prop_assert_eq!(x.cost, y.cost);
        }
        for (x, y) in plan_a.batches.iter().zip(&plan_b.batches).skip(1) {
            prop_assert_eq!(x.request_at, y.request_at);
        }
    }
}

/// Pruning deletes exactly the backups the newest `keep` restore points do not need —
/// none they need, and none left behind — and a consolidation exactly those its fresh
/// full releases. Run by hand so the run can count its cases: most must have something
/// to delete, or the property would hold for an empty plan.
#[test]
fn pruning_and_consolidation_delete_exactly_what_kept_points_do_not_need() {
    let pruned_cases = Cell::new(0u32);
    let consolidated_cases = Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    let strategy = (arb_catalog(), 1u32..4, 0u32..400, 0i64..1000);
    let result = runner.run(&strategy, |(c, keep, min_age, now_day)| {
        let policy = Policy {
            keep_restore_points: keep,
            min_age_days: min_age,
            ..Policy::default()
        };
        let p = PriceTable::default();
        let now = at(2020, 1, 1).plus_days(now_day);
        let all: HashSet<BackupId> = c.backups().iter().map(|b| b.id.clone()).collect();
        let needed = needed_by_links(c.backups(), keep as usize);
        let deletions =
            plan_pruning(&c, &policy, &p, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let deleted: HashSet<BackupId> = deletions.iter().map(|d| d.backup.clone()).collect();
        prop_assert_eq!(deleted.len(), deletions.len(), "a backup deleted twice");
        prop_assert_eq!(&deleted, &(&all - &needed));
        if !deleted.is_empty() {
            pruned_cases.set(pruned_cases.get() + 1);
        }
        let mut position = HashMap::new();
        for (i, d) in deletions.iter().enumerate() {
            let b = c
                .get(&d.backup)
                .ok_or_else(|| TestCaseError::fail("unknown"))?;
            prop_assert!(d.not_before >= now);
            prop_assert!(d.not_before >= b.created.plus_days(i64::from(min_age)));
            prop_assert_eq!(d.steps.len(), b.volumes.len() + 1);
            prop_assert_eq!(d.steps[0], zib_planner::DeleteStep::Manifest);
            position.insert(d.backup.clone(), i);
        }
        // Dependents are deleted before their bases.
        for b in c.backups() {
            if let (Some(base), Some(&mine)) = (base_of(b), position.get(&b.id)) {
                if let Some(&theirs) = position.get(base) {
                    prop_assert!(mine < theirs);
                }
            }
        }
        // A fresh full becomes the newest restore point: the chains of the newest keep−1
        // old ones stay, and what the newest keep needed besides is released.
        let newest = c.backups().last().map(|b| b.created).unwrap_or(now);
        let snap = local("fresh", newest.plus_days(1), Some(GB), None);
        let d = plan_consolidation(&c, &[], &snap, &policy, &p, newest.plus_days(1))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let released = &needed - &needed_by_links(c.backups(), keep as usize - 1);
        let listed: Vec<BackupId> = d.deletions.iter().map(|x| x.backup.clone()).collect();
        let listed_set: HashSet<BackupId> = listed.iter().cloned().collect();
        prop_assert!(
            listed_set.is_subset(&released),
            "{:?} not in {:?}",
            listed,
            released
        );
        if d.recommend {
            // What it recommends, it lists in full, newest first.
            prop_assert_eq!(&listed_set, &released, "{}", d.reason);
            let mut newest_first: Vec<&RemoteBackup> = c
                .backups()
                .iter()
                .filter(|b| released.contains(&b.id))
                .collect();
            newest_first.reverse();
            let newest_first: Vec<BackupId> = newest_first.iter().map(|b| b.id.clone()).collect();
            prop_assert_eq!(listed, newest_first);
            if !released.is_empty() {
                consolidated_cases.set(consolidated_cases.get() + 1);
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    // Measured: about 88 % of the catalogs have something to prune and 15 % a
    // recommended consolidation that releases something; the bounds sit far below.
    assert!(
        pruned_cases.get() >= 64,
        "only {} of 256 catalogs had something to prune",
        pruned_cases.get()
    );
    assert!(
        consolidated_cases.get() >= 8,
        "only {} of 256 catalogs had a recommended consolidation releasing something",
        consolidated_cases.get()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn the_hindsight_optimum_is_never_beaten(seed in any::<u64>(), months in 12u32..40) {
        let mut s = Scenario::random(seed);
        s.months = months;
        s.backups_per_month = 1;
        let policy = Policy::default();
        let best = sim::run(&s, &SimStrategy::HindsightOptimum, &policy).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for strategy in [SimStrategy::AlwaysIncremental, SimStrategy::FullEvery(6), SimStrategy::FullEvery(12), SimStrategy::Planner(policy.clone())] {
            let o = sim::run(&s, &strategy, &policy).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(best.total() <= o.total() + 1e-9, "{} beat the optimum: {} < {}", o.strategy, o.total(), best.total());
        }
    }
}

/// A chain of `volumes[i]` volume sizes per backup, full first, a day apart.
fn chain_catalog(volumes: &[Vec<u64>]) -> Catalog {
    let mut backups = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let base = (i > 0).then(|| format!("b{}", i - 1));
        backups.push(backup(
            &format!("b{i}"),
            base.as_deref(),
            at(2024, 1, 1).plus_days(i as i64),
            v.clone(),
        ));
    }
    catalog(backups)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The restore schedule rules, whatever the link, budget and month: each batch within
    /// the budget, the free egress left (plus what the budget deliberately pays for) and
    /// what the link downloads before the month ends; thaw waves whose copies outlive
    /// their downloads by at most a few days; nothing downloaded after its month.
    #[test]
    fn restore_schedules_respect_every_cap(
        volumes in prop::collection::vec(prop::collection::vec(1u64..(8 * GB), 1..8), 1..5),
        budget_gb in 20u64..=300,
        remaining_gb in 0u64..300,
        free_left_gb in 0u64..=100,
        rate_kib in prop::sample::select(vec![40u64, 200, 1024, 5120, 51_200]),
        wave_days in 1u32..4,
        slack_days in 0u32..3,
        day in 0i64..730,
        hour in 0i64..24,
    ) {
        let c = chain_catalog(&volumes);
        let target = c.backups().last().map(|b| b.id.clone()).ok_or_else(|| TestCaseError::fail("empty"))?;
        let rate = rate_kib << 10;
        let opts = RestoreOptions {
            monthly_budget_bytes: budget_gb * GB,
            budget_remaining_this_month: remaining_gb * GB,
            free_egress_remaining_this_month: free_left_gb * GB,
            download_bytes_per_sec: rate,
            wave_days,
            slack_days,
            staging_available_bytes: u64::MAX,
            ..RestoreOptions::default()
        };
        let p = PriceTable::default();
        let now = at(2026, 1, 1).plus_days(day).plus_secs(hour * 3600);
        let plan = match plan_restore(&c, &target, &opts, &p, now) {
            Ok(plan) => plan,
            // Refusing is allowed only for these reasons.
            Err(zib_planner::Error::LinkTooSlow { volume, .. }) => {
                prop_assert!(volumes.iter().flatten().any(|&v| v == volume));
                return Ok(());
            }
            Err(zib_planner::Error::RestoreTooLong { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let thaw_secs = 48 * 3600;
        let paid_allowance = (budget_gb * GB).saturating_sub(p.free_egress_bytes_per_month);
        let mut downloaded = 0;
        for (i, b) in plan.batches.iter().enumerate() {
            let money = if b.month == now.month() {
                (remaining_gb * GB).min(budget_gb * GB).min(free_left_gb * GB + paid_allowance)
            } else {
                budget_gb * GB
            };
            prop_assert!(b.bytes <= money, "batch {} of {} bytes over {}", i, b.bytes, money);
            let start = if b.month == now.month() { now } else { b.month.start() };
            let window = (b.month.end().0 - start.0 - thaw_secs).max(0) as u64;
            prop_assert!(b.bytes <= window * rate, "batch {} of {} bytes over the link's {}", i, b.bytes, window * rate);
            prop_assert!(b.request_at >= now);
            let wave_bytes: u64 = b.waves.iter().map(|w| w.bytes).sum();
            prop_assert_eq!(wave_bytes, b.bytes);
            for (j, w) in b.waves.iter().enumerate() {
                prop_assert!(w.download_end <= b.month.end(), "wave {} of {} ends {} after its month", j, b.month, w.download_end);
                // Copies outlive the downloads even if the restore completed at once...
                let lives_from = if j == 0 { w.download_from } else { w.request_at };
                prop_assert!(lives_from.plus_days(i64::from(w.restore_days)) >= w.download_end);
                // ...and by a few days at most, however slow the link: the thaw lead, a
                // wave's days (or its one volume's, if that is longer), rounding, slack.
                let largest = w.volumes.iter().map(|v| v.bytes).max().unwrap_or(0);
                let volume_days = (largest / rate).div_ceil(DAY_SECS as u64) as u32;
                prop_assert!(w.restore_days <= 2 + wave_days.max(volume_days) + 1 + slack_days, "Days {} for wave {}", w.restore_days, j);
            }
            downloaded += b.bytes;
        }
        prop_assert_eq!(downloaded, volumes.iter().flatten().sum::<u64>());
        prop_assert!(plan.finish >= now);
    }

    /// A rerun after some streams were received and some volumes downloaded plans exactly
    /// the volumes left, in chain order, and counts the staged ones.
    #[test]
    fn a_rerun_after_progress_plans_exactly_the_rest(
        volumes in prop::collection::vec(prop::collection::vec(1u64..(20 * GB), 1..6), 1..6),
        received in any::<prop::sample::Index>(),
        downloaded in prop::collection::vec(any::<bool>(), 6),
    ) {
        let c = chain_catalog(&volumes);
        let target = c.backups().last().map(|b| b.id.clone()).ok_or_else(|| TestCaseError::fail("empty"))?;
        let k = received.index(volumes.len() + 1);
        let received: Vec<_> = c.backups()[..k].iter().map(|b| b.id.clone()).collect();
        // Some volumes of the first stream not received are already downloaded.
        let mut done = Vec::new();
        if let Some(next) = c.backups().get(k) {
            for (i, _) in next.volumes.iter().enumerate().filter(|(i, _)| downloaded[*i]) {
                done.push(zib_planner::VolumeId { backup: next.id.clone(), index: i as u32 });
            }
        }
        let opts = RestoreOptions {
            received: received.clone(),
            downloaded: done.clone(),
            staging_available_bytes: u64::MAX,
            ..RestoreOptions::default()
        };
        let plan = plan_restore(&c, &target, &opts, &PriceTable::default(), at(2026, 3, 4))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let planned: Vec<(String, u32)> = plan.batches.iter().flat_map(|b| b.volumes.iter().map(|v| (v.backup.0.clone(), v.index))).collect();
        let expected: Vec<(String, u32)> = c.backups()[k..]
            .iter()
            .flat_map(|b| (0..b.volumes.len() as u32).map(move |i| (b.id.0.clone(), i)))
            .filter(|(b, i)| !done.iter().any(|d| &d.backup.0 == b && d.index == *i))
            .collect();
        prop_assert_eq!(planned, expected);
        let staged: u64 = done.iter().map(|d| c.get(&d.backup).map_or(0, |b| b.volumes[d.index as usize])).sum();
        prop_assert_eq!(plan.already_staged_bytes, staged);
        prop_assert!(plan.peak_staging_bytes >= staged);
    }

    /// Catalog sizes come from bucket metadata: any numbers at all give a catalog or an
    /// error naming the backup, never a panic, a wrap or a huge allocation.
    #[test]
    fn untrusted_catalog_sizes_are_refused_not_trusted(
        sizes in prop::collection::vec(
            (prop::collection::vec(prop_oneof![any::<u64>(), 0u64..(1 << 40), Just(u64::MAX)], 1..4), any::<bool>(), any::<i64>()),
            1..6,
        ),
    ) {
        let backups: Vec<RemoteBackup> = sizes
            .iter()
            .enumerate()
            .map(|(i, (volumes, honest, created))| RemoteBackup {
                id: zib_planner::BackupId(format!("b{i}")),
                kind: BackupKind::Full,
                snapshot: zib_planner::SnapshotId(format!("s{i}")),
                created: UnixTime(*created),
                // A lying manifest may claim any total; an honest one wraps like the
                // sums an unchecked reader would compute.
                stored_bytes: if *honest {
                    volumes.iter().fold(0u64, |a, v| a.wrapping_add(*v))
                } else {
                    volumes[0]
                },
                volumes: volumes.clone(),
                parts: 0,
                snapshot_bytes: None,
            })
            .collect();
        if let Ok(c) = Catalog::new(backups) {
            let total: u128 = c.backups().iter().map(|b| u128::from(b.stored_bytes)).sum();
            prop_assert!(total <= u128::from(zib_planner::limits::MAX_CATALOG_BYTES));
            for b in c.backups() {
                prop_assert!(b.volumes.iter().all(|&v| v <= zib_planner::limits::S3_MAX_OBJECT_BYTES));
                // Whatever is accepted can be planned without overflow.
                let _ = plan_restore(&c, &b.id, &RestoreOptions { staging_available_bytes: u64::MAX, allow_overrun: true, ..RestoreOptions::default() }, &PriceTable::default(), at(2026, 1, 1));
            }
        }
    }

    /// Scenario files are untrusted too: any numbers give a timeline or an error naming
    /// the field.
    #[test]
    fn untrusted_scenarios_are_refused_not_trusted(
        months in prop_oneof![0u32..50, Just(u32::MAX), 1190u32..1300],
        cadence in prop_oneof![0u32..40, Just(u32::MAX)],
        initial in prop_oneof![-1.0f64..1e3, Just(f64::NAN), Just(1e18), Just(f64::INFINITY)],
        add in prop_oneof![0.0f64..1e3, Just(1e300), Just(-5.0)],
        phase_months in prop_oneof![0u32..50, Just(u32::MAX)],
        fraction in prop_oneof![0.0f64..2.0, Just(f64::NAN)],
    ) {
        let s = Scenario {
            name: "fuzzed".into(),
            description: String::new(),
            months,
            initial_gb: initial,
            backups_per_month: cadence,
            phases: vec![
                sim::Phase { months: phase_months, add_gb_per_month: add, ..sim::Phase::default() },
                sim::Phase { months: phase_months, rewrite_fraction_per_year: fraction, ..sim::Phase::default() },
            ],
            events: vec![sim::Event { month: 3, delete_fraction: fraction, ..sim::Event::default() }],
            prices: None,
            restore: None,
        };
        match s.timeline() {
            Ok(steps) => {
                prop_assert!(steps.len() <= zib_planner::limits::MAX_SCENARIO_STEPS + 1);
                prop_assert!(steps.iter().all(|st| st.live_bytes as f64 <= zib_planner::limits::MAX_SCENARIO_GB * GB as f64));
            }
            Err(zib_planner::Error::InvalidScenario { field, .. }) => prop_assert!(!field.is_empty()),
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
        }
    }

    /// A consolidation lists no deletion before the backup's minimum age or the fresh
    /// full's grace period, always waits for a later backup, and asks for confirmation
    /// exactly when more than the policy's fraction of a restore point's data is gone.
    #[test]
    fn consolidation_deletions_keep_the_safety_rules(
        live in prop::collection::vec(1u64..2000, 2..20),
        rewrite in prop::collection::vec(0u64..300, 20),
        min_age in 0u32..400,
        grace in 0u32..90,
        max_vanished in 0.0f64..1.0,
        keep in 1u32..3,
    ) {
        // A monthly chain whose manifests record their snapshots' sizes (GiB).
        let mut backups = Vec::new();
        for (i, &l) in live.iter().enumerate() {
            let created = at(2024, 1, 1).plus_days(30 * i as i64);
            let mut b = if i == 0 {
                backup("b0", None, created, vec![l * GB])
            } else {
                let written = l.saturating_sub(live[i - 1]) + rewrite[i].min(l);
                backup(&format!("b{i}"), Some(&format!("b{}", i - 1)), created, vec![written.max(1) * GB])
            };
            b.snapshot_bytes = Some(l * GB);
            backups.push(b);
        }
        let c = catalog(backups);
        let now = at(2024, 1, 1).plus_days(30 * live.len() as i64);
        let last = live.len() - 1;
        let snap = local("fresh", now, Some(live[last] * GB), Some((&format!("b{last}"), GB)));
        let policy = Policy {
            min_age_days: min_age,
            grace_days: grace,
            max_vanished_fraction: max_vanished,
            keep_restore_points: keep,
            ..Policy::default()
        };
        let d = plan_consolidation(&c, &[], &snap, &policy, &PriceTable::default(), now)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for x in &d.deletions {
            let b = c.get(&x.backup).ok_or_else(|| TestCaseError::fail("unknown"))?;
            prop_assert!(x.not_before >= b.created.plus_days(i64::from(min_age)));
            prop_assert!(x.not_before >= now.plus_days(i64::from(grace)));
            prop_assert_eq!(x.requires_backup_after, Some(now));
            let v = x.vanished_fraction.ok_or_else(|| TestCaseError::fail("sizes are known"))?;
            prop_assert!((0.0..=1.0).contains(&v));
            prop_assert_eq!(x.needs_confirmation, v > max_vanished);
        }
        prop_assert_eq!(d.needs_confirmation, d.deletions.iter().any(|x| x.needs_confirmation));
        // The reason shows the terms side by side.
        if d.terms.waste_bytes > 0 {
            prop_assert!(d.reason.contains("stored") && d.reason.contains("expected restore"), "{}", d.reason);
        }
    }
}
