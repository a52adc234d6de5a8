//! The simulator's accounting against hand-computed figures, and the shipped scenarios.
mod common;

use common::close;
use zib_planner::sim::{compare, run, Event, Phase, Scenario, Strategy};
use zib_planner::{Policy, GB};

fn steady(months: u32, initial_gb: f64, phase: Phase) -> Scenario {
    Scenario {
        name: "t".into(),
        description: String::new(),
        months,
        initial_gb,
        backups_per_month: 1,
        phases: vec![Phase { months, ..phase }],
        events: vec![],
        prices: None,
        restore: None,
    }
}

#[test]
fn timeline_of_a_growing_and_churning_dataset() {
    let s = Scenario {
        events: vec![Event {
            month: 2,
            delete_fraction: 0.5,
            ..Event::default()
        }],
        ..steady(
            4,
            100.0,
            Phase {
                add_gb_per_month: 10.0,
                rewrite_gb_per_month: 5.0,
                ..Phase::default()
            },
        )
    };
    let t = s.timeline().unwrap_or_else(|e| panic!("{e}"));
    let live: Vec<u64> = t.iter().map(|s| s.live_bytes / GB).collect();
    let inc: Vec<u64> = t.iter().skip(1).map(|s| s.incremental_bytes / GB).collect();
    let months: Vec<f64> = t.iter().map(|s| s.month).collect();
    // Month 0: full of 100 GB. Each month +10 new, 5 rewritten; month 2 starts by
    // deleting half (120 → 60). Backups at months 0, 1, 2, 3.
    assert_eq!(months, [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(live, [100, 110, 120, 70]);
    assert_eq!(inc, [15, 15, 15]);
}

#[test]
fn two_months_of_one_hundred_gigabytes_cost_what_hand_arithmetic_says() {
    let s = steady(2, 100.0, Phase::default());
    let o =
        run(&s, &Strategy::AlwaysIncremental, &Policy::default()).unwrap_or_else(|e| panic!("{e}"));
    // Full: 100 volumes of 1 GiB in 16 parts each → 100 × 18 + 1 = 1801 PUTs; the empty
    // incremental a month later: 1 volume, 1 part → 4 PUTs. 1805 × $0.05/1000 = $0.09025.
    close(o.backups.requests, 0.09025, 1e-12);
    // Storage: 100 GB × $0.00099 × 2 months = $0.198, plus 101 objects × (32 KB at
    // $0.00099 + 8 KB at $0.023) × 2 months = $0.0000415, plus the empty incremental's
    // 2 objects for 1 month = $0.0000004. Total $0.1980420.
    close(o.backups.storage, 0.198_042, 1e-6);
    close(o.backups.early_deletion, 0.0, 0.0);
    // Restore at month 2: all 100 GiB fit the month's free 100 GB. Retrieval $0.25;
    // copies 100 × $0.023 × 2 days / (365/12 days) = $0.151233; 101 restore requests × $0.025/1000 plus
    // 101 GETs × $0.0004/1000 = $0.0025654.
    close(o.restore.retrieval, 0.25, 1e-12);
    close(o.restore.storage, 0.151_232_9, 1e-6);
    close(o.restore.requests, 0.002_565_4, 1e-9);
    close(o.restore.egress, 0.0, 0.0);
}

#[test]
fn full_every_n_months_supersedes_and_defers_deletion_to_the_grace_and_minimum_age() {
    // 12 months of 100 GB that never changes; a full every 6 months. The first full
    // (month 0) is past its minimum age (180 days = 5.92 months) at month 6, but it stays
    // through the fresh full's 30-day grace period and until the next backup after that
    // full (month 7); the empty incrementals of months 1–5 live until their minimum age
    // or month 7, whichever is later.
    let s = steady(12, 100.0, Phase::default());
    let o = run(&s, &Strategy::FullEvery(6), &Policy::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.fulls, [6.0]);
    // Data storage: the first full 7 months, the second 6 months: 13 × 100 GB × $0.00099
    // = $1.287 (+ overhead).
    assert!(
        o.backups.storage > 1.287 && o.backups.storage < 1.29,
        "{}",
        o.backups
    );
    close(o.backups.early_deletion, 0.0, 0.0);
}

#[test]
fn a_lower_minimum_age_pays_early_deletion() {
    let s = steady(8, 100.0, Phase::default());
    let policy = Policy {
        min_age_days: 30,
        ..Policy::default()
    };
    let o = run(&s, &Strategy::FullEvery(2), &policy).unwrap_or_else(|e| panic!("{e}"));
    // Fulls at 0, 2, 4, 6; each of the first three is deleted a month after the next full
    // is committed (its 30-day grace ends within the month, and the next backup comes a
    // month later): at 3 months old, 180 days = 5.9178 months minus 3 = 2.9178 months
    // early, 100 GB × $0.00099 × 2.9178 = $0.28886 each (+ overhead) → about $0.8666.
    assert!(
        o.backups.early_deletion > 0.8665 && o.backups.early_deletion < 0.867,
        "{}",
        o.backups
    );
}

#[test]
fn shipped_scenarios_parse_validate_and_compare() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut s: Scenario =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // A short run keeps this fast; the full 120 months are the benchmark's job.
        s.months = 24;
        s.backups_per_month = 1;
        let c = compare(&s, &Policy::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.optimum.total() <= c.best_naive().total() + 1e-9);
        count += 1;
    }
    assert_eq!(count, 3);
}

#[test]
fn bad_scenarios_are_refused() {
    let mut s = steady(12, 100.0, Phase::default());
    s.initial_gb = -1.0;
    assert!(s.validate().is_err());
    let mut s = steady(12, 100.0, Phase::default());
    s.phases.clear();
    assert!(s
        .validate()
        .map(|_| ())
        .unwrap_err()
        .to_string()
        .contains("phases"));
    assert!(
        toml::from_str::<Scenario>("name = \"x\"\ninitial_gb = 1.0\nphases = []\nbogus = 1\n")
            .is_err()
    );
}

#[test]
fn random_scenarios_are_reproducible() {
    assert_eq!(Scenario::random(7), Scenario::random(7));
    assert_ne!(Scenario::random(7), Scenario::random(8));
    for seed in 0..50 {
        Scenario::random(seed)
            .validate()
            .unwrap_or_else(|e| panic!("{seed}: {e}"));
    }
}
