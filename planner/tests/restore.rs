//! Restore schedules against hand-computed figures.
mod common;

use common::*;
use zib_planner::{
    plan_restore, Error, PriceTable, RequestedRestore, RestoreOptions, Tier, VolumeId, GB, TIB,
};

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

fn one_tib_in(volume: u64) -> zib_planner::Catalog {
    catalog(vec![backup(
        "full",
        None,
        at(2025, 1, 1),
        vec![volume; (TIB / volume) as usize],
    )])
}

#[test]
fn the_free_egress_left_caps_this_months_batch() {
    // Other use of the account left 10 GB of this month's free egress. Downloading the
    // usual 100 GB now would pay (100 − 10) × $0.09 = $8.10; waiting a few days for the
    // next month costs nothing.
    let opts = RestoreOptions {
        free_egress_remaining_this_month: 10 * GIB,
        ..options(TIB)
    };
    let now = at(2026, 1, 20);
    let plan = plan_restore(
        &one_tib_full(),
        &id("full"),
        &opts,
        &PriceTable::default(),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.batches[0].month.to_string(), "2026-01");
    assert_eq!(plan.batches[0].bytes, 10 * GIB);
    assert_eq!(plan.batches[1].bytes, 100 * GIB);
    close(plan.cost.egress, 0.0, 0.0);
    assert!(plan.batches.iter().all(|b| b.paid_egress_bytes == 0));

    // A budget deliberately above the free allowance still pays for its excess, and only
    // for that: 1 TiB a month means 924 GB paid on purpose; with 10 GB free left, January
    // takes 934 GB (not the whole TiB) and pays for 924 of them.
    let generous = RestoreOptions {
        monthly_budget_bytes: TIB,
        budget_remaining_this_month: TIB,
        ..opts
    };
    let plan = plan_restore(
        &one_tib_full(),
        &id("full"),
        &generous,
        &PriceTable::default(),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.batches[0].bytes, 934 * GIB);
    assert_eq!(plan.batches[0].paid_egress_bytes, 924 * GIB);
}

#[test]
fn a_slow_link_is_thawed_in_waves_and_never_runs_into_the_next_month() {
    // 40 KiB/s: 100 GB takes 30.3 days, so a month's batch is what the link downloads
    // between the first copies being ready (48 h after the 1st) and the month's end.
    let rate = 40 << 10;
    let opts = RestoreOptions {
        download_bytes_per_sec: rate,
        ..options(TIB)
    };
    let now = at(2026, 1, 1);
    let plan = plan_restore(
        &one_tib_full(),
        &id("full"),
        &opts,
        &PriceTable::default(),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // January: 29 days × 86,400 s × 40,960 B/s = 102,627,328,000 B = 95.6 GiB → 95
    // volumes. February: 26 days → 85.8 GiB → 85 volumes.
    assert_eq!(plan.batches[0].volumes.len(), 95);
    assert_eq!(plan.batches[1].volumes.len(), 85);
    for b in &plan.batches {
        let last = b.waves.last().unwrap_or_else(|| panic!("no waves"));
        assert!(last.download_end <= b.month.end(), "{} overruns", b.month);
        // Waves of one day of downloading (3 volumes of 1 GiB, 0.91 days): the first
        // lives 1 day + 1 of slack; each later one also covers its 48-hour thaw lead:
        // ⌈2.91⌉ + 1 = 4 days. Never the 32 days a single thaw would need.
        if b.bytes >= 80 * GIB {
            assert!(
                b.waves.len() >= 28,
                "{} has {} waves",
                b.month,
                b.waves.len()
            );
        }
        assert_eq!(b.waves[0].restore_days, 2);
        assert!(b.waves[1..].iter().all(|w| w.restore_days == 4));
        for pair in b.waves.windows(2) {
            // Each wave is requested a thaw time before the previous one's downloads end.
            assert_eq!(
                pair[1].request_at,
                pair[0].download_end.plus_secs(-48 * 3600)
            );
        }
    }
    close(plan.cost.egress, 0.0, 0.0);
    // January's copies: 3 GiB × 2 days + 92 GiB × 4 days = 374 GiB-days × $0.023 /
    // (365/12 days) = $0.2828, against $0.2375 of retrieval for its 95 GiB.
    let jan = &plan.batches[0];
    close(jan.cost.storage, 0.282_8, 1e-4);
    close(jan.cost.retrieval, 0.2375, 1e-9);
}

#[test]
fn impossible_plans_are_refused_instead_of_overrunning() {
    let c = catalog(vec![backup("f", None, at(2025, 1, 1), vec![4 * GIB])]);
    let p = PriceTable::default();
    let now = at(2026, 1, 1);
    // 1 KiB/s downloads 2.7 GB in a 31-day month: a 4 GiB volume cannot fit.
    let slow = RestoreOptions {
        download_bytes_per_sec: 1024,
        ..options(TIB)
    };
    match plan_restore(&c, &id("f"), &slow, &p, now) {
        Err(Error::LinkTooSlow {
            volume,
            bytes_per_sec,
            ..
        }) => assert_eq!((volume, bytes_per_sec), (4 * GIB, 1024)),
        other => panic!("expected LinkTooSlow, got {other:?}"),
    }
    // A zero rate is an error naming the field, not a 124,277-day plan.
    let zero = RestoreOptions {
        download_bytes_per_sec: 0,
        ..options(TIB)
    };
    let err = plan_restore(&c, &id("f"), &zero, &p, now)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("download_bytes_per_sec"), "{err}");
    // 1 TiB at 256 MiB a month takes 4,096 months: over the century the planner plans.
    let tiny = RestoreOptions {
        monthly_budget_bytes: 256 << 20,
        budget_remaining_this_month: 256 << 20,
        ..options(TIB)
    };
    let err = plan_restore(&one_tib_in(256 << 20), &id("full"), &tiny, &p, now)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::RestoreTooLong { .. }), "{err}");
}

#[test]
fn a_rerun_plans_only_what_is_left() {
    let c = catalog(vec![
        backup(
            "f",
            None,
            at(2025, 1, 1),
            vec![40 * GIB, 40 * GIB, 40 * GIB],
        ),
        backup("i1", Some("f"), at(2025, 2, 1), vec![30 * GIB, 30 * GIB]),
        backup("i2", Some("i1"), at(2025, 3, 1), vec![GIB]),
    ]);
    let p = PriceTable::default();
    let now = at(2026, 4, 2);
    let whole =
        plan_restore(&c, &id("i2"), &options(TIB), &p, now).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(whole.total_bytes, 181 * GIB);
    // The full was received; the first volume of i1 is downloaded and staged.
    let vol = |b: &str, index| VolumeId {
        backup: id(b),
        index,
    };
    let rest = RestoreOptions {
        received: vec![id("f")],
        downloaded: vec![vol("i1", 0)],
        staging_available_bytes: 40 * GIB,
        ..options(0)
    };
    let plan = plan_restore(&c, &id("i2"), &rest, &p, now).unwrap_or_else(|e| panic!("{e}"));
    let left: Vec<(&str, u32)> = plan
        .batches
        .iter()
        .flat_map(|b| b.volumes.iter().map(|v| (v.backup.0.as_str(), v.index)))
        .collect();
    assert_eq!(left, [("i1", 1), ("i2", 0)]);
    assert_eq!(plan.total_bytes, 31 * GIB);
    assert_eq!(plan.chain, vec![id("f"), id("i1"), id("i2")]);
    // i1 spans runs, so it is staged whole: the 30 GiB already staged plus 30 more; the
    // 40 GiB available on top of what is staged is enough.
    assert_eq!(plan.already_staged_bytes, 30 * GIB);
    assert_eq!(plan.peak_staging_bytes, 60 * GIB);
    // Nothing left: an empty plan that finishes now.
    let done = RestoreOptions {
        received: vec![id("f"), id("i1"), id("i2")],
        ..options(0)
    };
    let plan = plan_restore(&c, &id("i2"), &done, &p, now).unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.batches.is_empty());
    assert_eq!((plan.total_bytes, plan.finish, plan.months), (0, now, 0.0));
    // Progress that contradicts the chain is refused, naming the field.
    let bad = [
        RestoreOptions {
            received: vec![id("i1")],
            ..options(TIB)
        },
        RestoreOptions {
            received: vec![id("nope")],
            ..options(TIB)
        },
        RestoreOptions {
            downloaded: vec![vol("i1", 7)],
            ..options(TIB)
        },
    ];
    for o in bad {
        match plan_restore(&c, &id("i2"), &o, &p, now) {
            Err(Error::InvalidInput { field, .. }) => {
                assert!(field.starts_with("RestoreOptions::"), "{field}")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
}

#[test]
fn restores_already_requested_are_not_requested_again_while_their_copies_live() {
    let c = catalog(vec![backup("f", None, at(2025, 1, 1), vec![GIB; 4])]);
    let p = PriceTable::default();
    let now = at(2026, 5, 3);
    let requested = |index, expires_at| RequestedRestore {
        volume: VolumeId {
            backup: id("f"),
            index,
        },
        requested_at: now.plus_days(-1),
        expires_at,
    };
    let opts = RestoreOptions {
        requested: vec![
            requested(0, None),
            requested(1, Some(now.plus_days(5))),
            // Its copy expires before the download: it must be requested again.
            requested(2, Some(now.plus_secs(3600))),
        ],
        ..options(TIB)
    };
    let plan = plan_restore(&c, &id("f"), &opts, &p, now).unwrap_or_else(|e| panic!("{e}"));
    let wave = &plan.batches[0].waves[0];
    let again: Vec<u32> = wave.already_requested.iter().map(|v| v.index).collect();
    assert_eq!(again, [0, 1]);
    // Retrieval only for the two volumes still to request: 2 GiB × $0.0025.
    close(plan.cost.retrieval, 0.005, 1e-12);
}

#[test]
fn copies_already_restored_are_downloaded_now_and_thaws_in_flight_when_they_end() {
    let c = catalog(vec![backup("f", None, at(2025, 1, 1), vec![GIB; 2])]);
    let p = PriceTable::default();
    let now = at(2026, 5, 3);
    let requested = |index, expires_at| RequestedRestore {
        volume: VolumeId {
            backup: id("f"),
            index,
        },
        requested_at: now.plus_days(-1),
        expires_at,
    };

    // Both copies readable for another day: downloaded now, nothing requested again.
    let restored = RestoreOptions {
        requested: vec![
            requested(0, Some(now.plus_days(1))),
            requested(1, Some(now.plus_days(1))),
        ],
        ..options(TIB)
    };
    let plan = plan_restore(&c, &id("f"), &restored, &p, now).unwrap_or_else(|e| panic!("{e}"));
    let wave = &plan.batches[0].waves[0];
    assert_eq!(wave.download_from, now);
    assert_eq!(wave.already_requested.len(), 2);
    close(plan.cost.retrieval, 0.0, 1e-12);

    // One still thawing since yesterday: the wave is ready when that thaw ends (Bulk:
    // 48 hours after its request), not a whole thaw from now.
    let thawing = RestoreOptions {
        requested: vec![requested(0, Some(now.plus_days(5))), requested(1, None)],
        ..options(TIB)
    };
    let plan = plan_restore(&c, &id("f"), &thawing, &p, now).unwrap_or_else(|e| panic!("{e}"));
    let wave = &plan.batches[0].waves[0];
    assert_eq!(wave.download_from, now.plus_days(1));
    assert_eq!(wave.already_requested.len(), 2);
}
