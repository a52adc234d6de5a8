//! Backup, consolidation and pruning decisions: table-driven cases with their reasons.
mod common;

use common::*;
use zib_planner::{
    decide_backup, plan_consolidation, plan_pruning, ConsolidationMode, DeleteStep, Error,
    PlannedBackup, Policy, PriceTable, RemoteBackup, SnapshotId, UnixTime,
};

fn month(i: u32) -> UnixTime {
    let y = 2024 + (i / 12) as i32;
    at(y, (i % 12) as u8 + 1, 1)
}

/// A full of `full` bytes at month 0, then one incremental of `inc` bytes per month up to
/// month `n`.
fn monthly_chain(full: u64, inc: u64, n: u32) -> Vec<RemoteBackup> {
    let mut v = vec![backup("b0", None, month(0), vec![full])];
    for i in 1..=n {
        let base = format!("b{}", i - 1);
        v.push(backup(&format!("b{i}"), Some(&base), month(i), vec![inc]));
    }
    v
}

#[test]
fn backup_decisions() {
    let p = PriceTable::default();
    let policy = Policy::default();
    let now = at(2026, 6, 1);
    let chain = catalog(monthly_chain(10 * GIB, GIB, 2));
    struct Case {
        name: &'static str,
        catalog: zib_planner::Catalog,
        local: Vec<zib_planner::LocalSnapshot>,
        expect: PlannedBackup,
        reason: &'static str,
    }
    let cases = vec![
        Case {
            name: "first backup",
            catalog: catalog(vec![]),
            local: vec![local("n", now, Some(GIB), None)],
            expect: PlannedBackup::Full,
            reason: "first backup",
        },
        Case {
            name: "incremental from the newest committed snapshot",
            catalog: chain.clone(),
            local: vec![
                local("b1", month(1), None, None),
                local("b2", month(2), None, None),
                local("n", now, Some(13 * GIB), Some(("b2", GIB))),
            ],
            expect: PlannedBackup::Incremental {
                base_backup: id("b2"),
                base_snapshot: SnapshotId("snap-b2".into()),
            },
            reason: "incremental from tank/photos@b2",
        },
        Case {
            name: "newest base destroyed locally: an older committed one still serves",
            catalog: chain.clone(),
            local: vec![
                local("b1", month(1), None, None),
                local("n", now, None, None),
            ],
            expect: PlannedBackup::Incremental {
                base_backup: id("b1"),
                base_snapshot: SnapshotId("snap-b1".into()),
            },
            reason: "still exists locally",
        },
        Case {
            name: "no base left locally",
            catalog: chain.clone(),
            local: vec![local("n", now, Some(GIB), None)],
            expect: PlannedBackup::Full,
            reason: "no committed backup's snapshot exists locally",
        },
        Case {
            name: "already committed",
            catalog: chain.clone(),
            local: vec![local("b2", month(2), None, None)],
            expect: PlannedBackup::UpToDate,
            reason: "already backed up",
        },
        Case {
            name: "incremental no smaller than a full",
            catalog: chain.clone(),
            local: vec![
                local("b2", month(2), None, None),
                local("n", now, Some(5 * GIB), Some(("b2", 6 * GIB))),
            ],
            expect: PlannedBackup::Full,
            reason: "no smaller than a full",
        },
    ];
    for case in cases {
        let d = decide_backup(&case.catalog, &case.local, None, &policy, &p, now)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(d.plan, case.expect, "{}: {}", case.name, d.reason);
        assert!(
            d.reason.contains(case.reason),
            "{}: {}",
            case.name,
            d.reason
        );
    }
}

#[test]
fn backup_input_errors() {
    let p = PriceTable::default();
    let c = catalog(vec![]);
    let now = at(2026, 1, 1);
    assert!(matches!(
        decide_backup(&c, &[], None, &Policy::default(), &p, now),
        Err(Error::NoSnapshots)
    ));
    let l = vec![local("a", now, None, None)];
    let missing = SnapshotId("snap-zz".into());
    assert!(matches!(
        decide_backup(&c, &l, Some(&missing), &Policy::default(), &p, now),
        Err(Error::UnknownSnapshot { .. })
    ));
    let bad = Policy {
        horizon_months: 0,
        ..Policy::default()
    };
    assert!(matches!(
        decide_backup(&c, &l, None, &bad, &p, now),
        Err(Error::InvalidPolicy { .. })
    ));
}

#[test]
fn upload_cost_is_attached_to_the_decision() {
    let now = at(2026, 1, 1);
    let d = decide_backup(
        &catalog(vec![]),
        &[local("n", now, Some(1 << 40), None)],
        None,
        &Policy::default(),
        &PriceTable::default(),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // 1 TiB: 18,433 PUT-class requests × $0.05/1000 = $0.92165.
    close(d.cost.requests, 0.92165, 1e-9);
    assert_eq!(d.estimated_bytes, Some(1 << 40));
}

/// 1 TiB full in January 2024 and 24 monthly incrementals of 20 GiB that only rewrite data:
/// the dataset stays 1 TiB while the chain grows to 1.47 TiB.
fn rewritten_library() -> (zib_planner::Catalog, zib_planner::LocalSnapshot, UnixTime) {
    let c = catalog(monthly_chain(1024 * GIB, 20 * GIB, 24));
    let now = at(2026, 1, 15);
    let snap = local("n", now, Some(1024 * GIB), Some(("b24", 20 * GIB)));
    (c, snap, now)
}

#[test]
fn consolidation_of_a_rewritten_library_is_recommended_and_lists_every_old_backup() {
    let (c, snap, now) = rewritten_library();
    let d = plan_consolidation(
        &c,
        &[],
        &snap,
        &Policy::default(),
        &PriceTable::default(),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.recommend, "{}", d.reason);
    assert!(d.reason.contains("pays for itself"), "{}", d.reason);
    assert!(d.consolidate_cost.total() < d.keep_cost.total());
    // Keep side over 24 months: 1504 GiB × 24 × $0.00099 = $35.735 plus the new
    // incremental; consolidating keeps 1 TiB instead.
    assert!(d.keep_cost.total() > 35.7, "{}", d.keep_cost);
    assert_eq!(d.deletions.len(), 25);
    // Newest first (dependents before bases), manifest before volumes.
    assert_eq!(d.deletions[0].backup, id("b24"));
    assert_eq!(d.deletions[24].backup, id("b0"));
    assert_eq!(
        d.deletions[0].steps,
        vec![DeleteStep::Manifest, DeleteStep::Volume(0)]
    );
    // Nothing is deleted before its minimum age: b24 (2026-01-01) waits until 180 days
    // after it was committed; b0 is old enough but waits for the fresh full's 30-day
    // grace period, and for a backup after the full to succeed.
    assert_eq!(d.deletions[0].not_before, at(2026, 1, 1).plus_days(180));
    assert_eq!(d.deletions[24].not_before, now.plus_days(30));
    assert!(d
        .deletions
        .iter()
        .all(|x| x.requires_backup_after == Some(now)));
    assert!(d.deletions.iter().all(|x| x.early_deletion_fee == 0.0));
    // The sizes of the old snapshots are unknown here, so nothing says how much of their
    // data vanished: no confirmation is asked for.
    assert!(d.deletions.iter().all(|x| x.vanished_fraction.is_none()));
    assert!(!d.needs_confirmation);

    let local_snaps = vec![local("b24", month(24), None, None), snap.clone()];
    let b = decide_backup(
        &c,
        &local_snaps,
        None,
        &Policy::default(),
        &PriceTable::default(),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.plan, PlannedBackup::Full, "{}", b.reason);
    assert!(b.reason.starts_with("consolidation"), "{}", b.reason);
    assert!(b.consolidation.is_some());
}

#[test]
fn consolidation_cases_that_are_refused() {
    let p = PriceTable::default();
    let (c, snap, now) = rewritten_library();
    struct Case {
        name: &'static str,
        catalog: zib_planner::Catalog,
        snap: zib_planner::LocalSnapshot,
        policy: Policy,
        reason: &'static str,
    }
    let cases = vec![
        Case {
            name: "policy never",
            catalog: c.clone(),
            snap: snap.clone(),
            policy: Policy {
                consolidation: ConsolidationMode::Never,
                ..Policy::default()
            },
            reason: "policy never",
        },
        Case {
            name: "append-only: the fresh full is as big as the chain",
            catalog: c.clone(),
            snap: local(
                "n",
                now,
                Some(1024 * GIB + 25 * 20 * GIB),
                Some(("b24", 20 * GIB)),
            ),
            policy: Policy::default(),
            reason: "would not be smaller",
        },
        Case {
            name: "no size estimate",
            catalog: c.clone(),
            snap: local("n", now, None, Some(("b24", 20 * GIB))),
            policy: Policy::default(),
            reason: "no size estimate",
        },
        Case {
            name: "young chain, little waste: the old full would linger until its minimum age",
            catalog: catalog(vec![
                backup("f", None, at(2025, 11, 1), vec![1024 * GIB]),
                backup("i", Some("f"), at(2025, 12, 1), vec![5 * GIB]),
            ]),
            snap: local("n", at(2026, 1, 1), Some(1024 * GIB), Some(("i", 5 * GIB))),
            policy: Policy::default(),
            reason: "would not pay for itself",
        },
    ];
    for case in cases {
        let d = plan_consolidation(&case.catalog, &[], &case.snap, &case.policy, &p, now)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert!(!d.recommend, "{}: {}", case.name, d.reason);
        assert!(
            d.reason.contains(case.reason),
            "{}: {}",
            case.name,
            d.reason
        );
    }
    // With two restore points kept, the old chain must stay until the fresh full has a
    // successor: nothing is deletable at commit, and the consolidation still pays.
    let d = plan_consolidation(
        &c,
        &[],
        &snap,
        &Policy {
            keep_restore_points: 2,
            ..Policy::default()
        },
        &p,
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.deletions.is_empty());
    assert!(d.recommend, "{}", d.reason);
    // The grace period is priced: 61 days instead of none holds the old chain about one
    // month longer than the next monthly backup would (2.005 months against 1), which is
    // that month of the 1.47 TiB chain less what its youngest members would have been
    // paid anyway: between $1 and $1.49.
    let no_grace = Policy {
        grace_days: 0,
        ..Policy::default()
    };
    let short =
        plan_consolidation(&c, &[], &snap, &no_grace, &p, now).unwrap_or_else(|e| panic!("{e}"));
    let long = plan_consolidation(
        &c,
        &[],
        &snap,
        &Policy {
            grace_days: 61,
            ..no_grace
        },
        &p,
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let extra = long.consolidate_cost.total() - short.consolidate_cost.total();
    assert!(extra > 1.0 && extra < 1.49, "{extra}");
}

#[test]
fn waiting_is_preferred_while_the_waste_is_small() {
    // A 100 GiB full 4 months ago, 4 incrementals of 1 GiB of rewrites: 5 GiB of waste.
    // Keeping it a month costs ~$0.005; the cycle's average extra cost is higher.
    let c = catalog(monthly_chain(100 * GIB, GIB, 4));
    let now = month(5);
    let snap = local("n", now, Some(100 * GIB), Some(("b4", GIB)));
    let decide = |horizon_months| {
        plan_consolidation(
            &c,
            &[],
            &snap,
            &Policy {
                horizon_months,
                ..Policy::default()
            },
            &PriceTable::default(),
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    // Over the default 24 months what a fresh full costs once is not even recovered.
    let d = decide(24);
    assert!(!d.recommend, "{}", d.reason);
    assert!(
        d.reason
            .starts_with("a fresh full would not pay for itself within the horizon"),
        "{}",
        d.reason
    );
    // Over ten years it would pay, yet waiting is cheaper still: the waste costs less a
    // month than the steady-state cost of consolidating.
    let d = decide(120);
    assert!(!d.recommend, "{}", d.reason);
    assert!(
        d.consolidate_cost.total() < d.keep_cost.total(),
        "{}",
        d.reason
    );
    assert!(
        d.reason
            .starts_with("cheaper within the horizon, but waiting is cheaper still"),
        "{}",
        d.reason
    );
}

#[test]
fn pruning_keeps_what_restore_points_need_and_respects_minimum_age() {
    let p = PriceTable::default();
    let now = at(2026, 1, 1);
    let c = catalog(vec![
        backup("f", None, at(2025, 1, 1), vec![100 * GIB]),
        backup("i1", Some("f"), at(2025, 6, 1), vec![GIB]),
        backup("i2", Some("i1"), at(2025, 11, 22), vec![10 * GIB]),
        backup("n", None, at(2025, 12, 1), vec![100 * GIB]),
    ]);
    let d = plan_pruning(&c, &Policy::default(), &p, now).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<_> = d.iter().map(|x| x.backup.0.as_str()).collect();
    assert_eq!(ids, ["i2", "i1", "f"]);
    assert_eq!(d[0].not_before, at(2025, 11, 22).plus_days(180));
    assert_eq!(d[2].not_before, now);
    assert!(d.iter().all(|x| x.early_deletion_fee == 0.0));

    let two = Policy {
        keep_restore_points: 2,
        ..Policy::default()
    };
    assert!(plan_pruning(&c, &two, &p, now)
        .unwrap_or_else(|e| panic!("{e}"))
        .is_empty());

    // A lower minimum age deletes i2 now (40 days old) and counts the fee for the
    // remaining 140 days: 10 GiB × $0.00099 × 140 × 12/365 = $0.045567 (+ 64 KB of
    // overhead).
    let lax = Policy {
        min_age_days: 30,
        ..Policy::default()
    };
    let d = plan_pruning(&c, &lax, &p, now).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d[0].not_before, now);
    close(d[0].early_deletion_fee, 0.045_567, 1e-6);
}

#[test]
fn after_a_burst_of_deletions_consolidate_at_once_unless_a_young_full_would_linger() {
    let p = PriceTable::default();
    let policy = Policy::default();
    let now = at(2026, 6, 1);
    // Half of a 2 TiB library deleted last month; no churn before or since (the local
    // snapshots' sizes show the waste appeared in one step).
    let burst = |full_day: UnixTime| {
        let c = catalog(vec![
            backup("f", None, full_day, vec![2048 * GIB]),
            backup("i", Some("f"), at(2026, 5, 1), vec![GIB]),
        ]);
        let locals = vec![
            local("f", full_day, Some(2048 * GIB), None),
            local("i", at(2026, 5, 1), Some(1025 * GIB), Some(("f", GIB))),
        ];
        let snap = local("n", now, Some(1026 * GIB), Some(("i", GIB)));
        plan_consolidation(&c, &locals, &snap, &policy, &p, now).unwrap_or_else(|e| panic!("{e}"))
    };
    // The full is a year old: deleting it costs nothing more, so consolidate now.
    let d = burst(at(2025, 6, 1));
    assert!(d.recommend, "{}", d.reason);
    // The full is two months old: deleting it now still pays its remaining four months
    // (2 TiB × 4 × $0.00099 ≈ $8.11), so both fulls would be paid for four months;
    // waiting until the old one has served its minimum is cheaper.
    let d = burst(at(2026, 4, 1));
    assert!(!d.recommend, "{}", d.reason);
    assert!(d.reason.contains("waiting is cheaper"), "{}", d.reason);
}
