//! A seeded slice of the benchmark (docs/COSTS.md, section 5), small enough for every test
//! run: the first seeds of each random family and the shipped scenarios, held to bounds
//! loose enough for a slice yet tight enough that a planner which stopped consolidating,
//! stopped learning from purges or stopped weighing the restore would fail them. The
//! goals themselves (percentiles over 100 scenarios per family) are measured by
//! `cargo run --release -p zib-planner --example simulate -- --benchmark`.
use zib_planner::sim::{compare, Comparison, Family, Scenario};
use zib_planner::Policy;

/// Seeds per family in the slice.
const SEEDS: u64 = 6;

/// Runs the slice of one family and checks every scenario.
fn slice(family: Family, max_ratio: f64, max_over_naive: f64) {
    let policy = Policy::default();
    for seed in 1..=SEEDS {
        let s = Scenario::generate(family, seed);
        let c = compare(&s, &policy).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        check(&c, max_ratio, max_over_naive, &s.description);
    }
}

fn check(c: &Comparison, max_ratio: f64, max_over_naive: f64, description: &str) {
    // The optimum is the cheapest schedule of all, by construction.
    for o in c.naive.iter().chain([&c.planner]) {
        assert!(
            c.optimum.total() <= o.total() * (1.0 + 1e-9),
            "{}: {} (${:.2}) beat the hindsight optimum (${:.2})",
            c.scenario,
            o.strategy,
            o.total(),
            c.optimum.total()
        );
    }
    assert!(
        c.ratio_to_optimum() <= max_ratio,
        "{} ({description}): planner ${:.2} is {:.4}× the optimum ${:.2} (bound {max_ratio})",
        c.scenario,
        c.planner.total(),
        c.ratio_to_optimum(),
        c.optimum.total()
    );
    assert!(
        c.excess_over_best_naive() <= max_over_naive,
        "{} ({description}): planner ${:.2} is {:+.3}% over {} (${:.2}; bound {:+.1}%)",
        c.scenario,
        c.planner.total(),
        c.excess_over_best_naive() * 100.0,
        c.best_naive().strategy,
        c.best_naive().total(),
        max_over_naive * 100.0
    );
}

#[test]
fn stationary_slice() {
    slice(Family::Stationary, 1.02, 0.005);
}

#[test]
fn churn_slice() {
    slice(Family::Churn, 1.04, 0.015);
}

#[test]
fn periodic_purges_slice() {
    slice(Family::PeriodicPurges, 1.05, 0.005);
}

#[test]
fn random_purges_slice() {
    slice(Family::RandomPurges, 1.08, 0.005);
}

#[test]
fn no_free_egress_slice() {
    slice(Family::NoFreeEgress, 1.10, 0.02);
}

#[test]
fn prices_slice() {
    slice(Family::Prices, 1.10, 0.005);
}

#[test]
fn shipped_scenarios_stay_at_the_optimum() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let s: Scenario =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let c = compare(&s, &Policy::default()).unwrap_or_else(|e| panic!("{e}"));
        check(&c, 1.005, 0.0, &s.description);
        count += 1;
    }
    assert_eq!(count, 3);
}
