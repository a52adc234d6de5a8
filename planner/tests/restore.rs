//! Restore schedules against hand-computed figures.
mod common;

use common::*;
use zib_planner::{plan_restore, Error, PriceTable, RestoreOptions, Tier, GB, TIB};

fn one_tib_full() -> zib_planner::Catalog {
    catalog(vec![backup("full", None, at(2025, 1, 1), vec![GIB; 1024])])
}

fn options(staging: u64) -> RestoreOptions {
    RestoreOptions {
        staging_available_bytes: staging,
        ..RestoreOptions::default()
    }
}

#[test]
fn one_tib_under_the_default_budget_takes_eleven_months_and_no_egress() {
    let plan = plan_restore(
        &one_tib_full(),
        &id("full"),
        &options(TIB),
        &PriceTable::default(),
        at(2026, 1, 1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // 100 one-GiB volumes per month: 10 full months and 24 volumes in the 11th.
    assert_eq!(plan.batches.len(), 11);
    assert!(plan.batches[..10]
        .iter()
        .all(|b| b.bytes == 100 * GB && b.volumes.len() == 100));
    assert_eq!(plan.batches[10].bytes, 24 * GB);
    assert_eq!(plan.batches[10].month.to_string(), "2026-11");
    assert_eq!(plan.batches[3].request_at, at(2026, 4, 1));
    assert_eq!(plan.batches[3].download_from, at(2026, 4, 3));
    // 100 GiB at 5 MiB/s = 20,480 s: one day, plus one day of slack.
    assert_eq!(plan.batches[0].restore_days, 2);
    assert_eq!(plan.total_bytes, TIB);
    // Retrieval 1024 × $0.0025 = $2.56; egress $0 (each month within the free 100 GB);
    // restored copies 1024 GB × $0.023 × 2 days / (365/12 days) = $1.548625; requests
    // 1024 × ($0.025 + $0.0004)/1000 = $0.0260096.
    close(plan.cost.retrieval, 2.56, 1e-9);
    close(plan.cost.egress, 0.0, 0.0);
    close(plan.cost.storage, 1.548_624_7, 1e-6);
    close(plan.cost.requests, 0.026_009_6, 1e-9);
    // The full stream spans eleven months, so all of it is staged before it is received.
    assert_eq!(plan.peak_staging_bytes, TIB);
    assert_eq!(plan.batches[10].received_bytes, TIB);
    assert_eq!(plan.batches[0].received_bytes, 0);
    // Last batch: ready 2026-11-03, 24 GiB at 5 MiB/s = 4,915.2 s, rounded up.
    assert_eq!(plan.finish.to_string(), "2026-11-03T01:21:56Z");
}

#[test]
fn one_tib_in_one_month_pays_eighty_three_dollars_of_egress() {
    let opts = RestoreOptions {
        monthly_budget_bytes: TIB,
        budget_remaining_this_month: TIB,
        ..options(GIB)
    };
    let plan = plan_restore(
        &one_tib_full(),
        &id("full"),
        &opts,
        &PriceTable::default(),
        at(2026, 1, 1),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.batches.len(), 1);
    // (1024 − 100) GB × $0.09 = $83.16; retrieval $2.56.
    close(plan.cost.egress, 83.16, 1e-9);
    close(plan.cost.retrieval, 2.56, 1e-9);
    assert_eq!(plan.batches[0].paid_egress_bytes, 924 * GB);
    // Streamed through: only one volume staged at a time.
    assert_eq!(plan.peak_staging_bytes, GIB);
}

#[test]
fn too_little_staging_is_refused_saying_why() {
    let err = plan_restore(
        &one_tib_full(),
        &id("full"),
        &options(TIB - 1),
        &PriceTable::default(),
        at(2026, 1, 1),
    )
    .map(|_| ())
    .unwrap_err();
    match &err {
        Error::StagingTooSmall {
            needed,
            available,
            reason,
        } => {
            assert_eq!((*needed, *available), (TIB, TIB - 1));
            assert!(reason.contains("several runs"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn budget_below_a_volume_names_both_sizes_unless_overrun_is_allowed() {
    let c = catalog(vec![backup(
        "f",
        None,
        at(2025, 1, 1),
        vec![150 * GIB, 10 * GIB],
    )]);
    let err = plan_restore(
        &c,
        &id("f"),
        &options(TIB),
        &PriceTable::default(),
        at(2026, 1, 1),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&(100 * GIB).to_string()) && err.contains(&(150 * GIB).to_string()),
        "{err}"
    );
    assert!(
        err.contains("100.0 GiB") && err.contains("150.0 GiB"),
        "{err}"
    );

    let opts = RestoreOptions {
        allow_overrun: true,
        ..options(TIB)
    };
    let plan = plan_restore(&c, &id("f"), &opts, &PriceTable::default(), at(2026, 1, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    // The 150 GB volume goes alone into January; 50 GB beyond the free 100 GB cost
    // 50 × $0.09 = $4.50. The 10 GB volume follows in February, free.
    assert_eq!(plan.batches.len(), 2);
    assert_eq!(plan.batches[0].bytes, 150 * GIB);
    assert_eq!(plan.batches[0].paid_egress_bytes, 50 * GIB);
    close(plan.cost.egress, 4.5, 1e-9);
}

#[test]
fn a_partly_used_month_takes_what_is_left() {
    let c = catalog(vec![backup("f", None, at(2025, 1, 1), vec![10 * GIB; 10])]);
    let opts = RestoreOptions {
        budget_remaining_this_month: 30 * GIB,
        free_egress_remaining_this_month: 30 * GIB,
        ..options(TIB)
    };
    let now = at(2026, 3, 10);
    let plan = plan_restore(&c, &id("f"), &opts, &PriceTable::default(), now)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.batches.len(), 2);
    assert_eq!(plan.batches[0].bytes, 30 * GIB);
    assert_eq!(plan.batches[0].request_at, now);
    assert_eq!(plan.batches[1].month.to_string(), "2026-04");
    assert_eq!(plan.batches[1].bytes, 70 * GIB);
    close(plan.cost.egress, 0.0, 0.0);
    // 100 GB Bulk retrieval = $0.25.
    close(plan.cost.retrieval, 0.25, 1e-12);
}

#[test]
fn a_chain_that_fits_is_restored_at_once_in_order() {
    let c = catalog(vec![
        backup("f", None, at(2025, 1, 1), vec![2 * GIB, 2 * GIB]),
        backup("i1", Some("f"), at(2025, 2, 1), vec![GIB]),
        backup("i2", Some("i1"), at(2025, 3, 1), vec![GIB]),
        backup("other", None, at(2025, 4, 1), vec![GIB]),
    ]);
    let plan = plan_restore(
        &c,
        &id("i2"),
        &options(2 * GIB),
        &PriceTable::default(),
        at(2026, 5, 20),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.chain, vec![id("f"), id("i1"), id("i2")]);
    assert_eq!(plan.batches.len(), 1);
    let order: Vec<_> = plan.batches[0]
        .volumes
        .iter()
        .map(|v| (v.backup.0.as_str(), v.index))
        .collect();
    assert_eq!(order, [("f", 0), ("f", 1), ("i1", 0), ("i2", 0)]);
    assert_eq!(plan.peak_staging_bytes, 2 * GIB);
}

#[test]
fn too_late_in_the_month_starts_next_month() {
    let c = catalog(vec![backup("f", None, at(2025, 1, 1), vec![GIB])]);
    // Bulk needs 48 hours: requested on the 31st at 06:00 it is ready in February.
    let now = at(2026, 1, 31).plus_secs(6 * 3600);
    let plan = plan_restore(&c, &id("f"), &options(GIB), &PriceTable::default(), now)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.batches[0].month.to_string(), "2026-02");
    assert_eq!(plan.batches[0].request_at, at(2026, 2, 1));
    // Standard tier (12 h) still makes it in January.
    let opts = RestoreOptions {
        tier: Tier::Standard,
        ..options(GIB)
    };
    let plan = plan_restore(&c, &id("f"), &opts, &PriceTable::default(), now)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.batches[0].month.to_string(), "2026-01");
    close(plan.cost.retrieval, 0.02, 1e-12);
}

#[test]
fn unknown_and_broken_targets_are_errors() {
    let c = catalog(vec![backup("i", Some("gone"), at(2025, 1, 1), vec![GIB])]);
    let o = options(TIB);
    let p = PriceTable::default();
    assert!(matches!(
        plan_restore(&c, &id("nope"), &o, &p, at(2026, 1, 1)),
        Err(Error::UnknownBackup { .. })
    ));
    assert!(matches!(
        plan_restore(&c, &id("i"), &o, &p, at(2026, 1, 1)),
        Err(Error::BrokenChain { .. })
    ));
}
