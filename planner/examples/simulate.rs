//! Cost simulator: prices backup strategies over a dataset's history.
//!
//! ```text
//! cargo run -p zib-planner --example simulate -- SCENARIO.toml...
//! cargo run --release -p zib-planner --example simulate -- --benchmark planner/scenarios/*.toml
//! ```
//!
//! For each scenario it prints the total cost over its months (storage, requests, staging,
//! early deletion, plus one restore of the newest restore point at the end) of: always
//! incremental, a full every 6/12/24/36 months, zib's planner with the default policy,
//! and the hindsight optimum. `--benchmark` adds 20 seeded random scenarios and prints
//! the planner's maximum and mean excess over the optimum and any loss to the best naive
//! strategy; `--seeds 21-200` runs other seeds instead (a wider sweep). The scenario format is documented in docs/COSTS.md.

// A command-line program: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use zib_planner::sim::{compare, Comparison, Scenario};
use zib_planner::{Policy, PriceTable};

fn load(path: &str) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let scenario: Scenario = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    scenario.validate().map_err(|e| format!("{path}: {e}"))?;
    Ok(scenario)
}

fn print(c: &Comparison) {
    println!("== {}", c.scenario);
    for o in c.naive.iter().chain([&c.planner, &c.optimum]) {
        let fulls: Vec<String> = o.fulls.iter().map(|m| format!("{m:.2}")).collect();
        println!(
            "  {:<22} ${:>9.2}  (backups ${:.2}, restore ${:.2}; fulls after the first at months [{}])",
            o.strategy,
            o.total(),
            o.backups.total(),
            o.restore.total(),
            fulls.join(", ")
        );
    }
    println!(
        "  planner vs optimum: {:+.3}%   vs best naive ({}): {:+.2} $",
        c.excess_over_optimum() * 100.0,
        c.best_naive().strategy,
        c.versus_best_naive()
    );
}

fn main() -> ExitCode {
    let mut benchmark = false;
    let mut seeds = 1..=20u64;
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--benchmark" => benchmark = true,
            "--seeds" => {
                // A wider sweep than the benchmark's 20: `--seeds 21-200`.
                let range = args.next().unwrap_or_default();
                let (a, b) = range
                    .split_once('-')
                    .unwrap_or((range.as_str(), range.as_str()));
                match (a.parse::<u64>(), b.parse::<u64>()) {
                    (Ok(a), Ok(b)) => seeds = a..=b,
                    _ => {
                        eprintln!("error: --seeds takes FIRST-LAST, e.g. 21-200");
                        return ExitCode::from(2);
                    }
                }
                benchmark = true;
            }
            "--print-random" => {
                // Writes a random benchmark scenario as a scenario file, to study it.
                let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
                match toml::to_string(&Scenario::random(seed)) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("error: {e}"),
                }
                return ExitCode::SUCCESS;
            }
            "-h" | "--help" => {
                println!(
                    "usage: simulate [--benchmark] [--seeds FIRST-LAST] SCENARIO.toml... | simulate --print-random SEED"
                );
                return ExitCode::SUCCESS;
            }
            _ => paths.push(arg),
        }
    }
    if paths.is_empty() && !benchmark {
        eprintln!("usage: simulate [--benchmark] [--seeds FIRST-LAST] SCENARIO.toml... | simulate --print-random SEED");
        return ExitCode::from(2);
    }
    let mut scenarios = Vec::new();
    for p in &paths {
        match load(p) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if benchmark {
        scenarios.extend(seeds.clone().map(Scenario::random));
    }
    let policy = Policy::default();
    let prices = PriceTable::default();
    let mut excess = Vec::new();
    let mut losses = Vec::new();
    let mut table = Vec::new();
    for s in &scenarios {
        match compare(s, &policy, &prices) {
            Ok(c) => {
                print(&c);
                table.push(format!(
                    "| {} | {} ${:.2} | ${:.2} | ${:.2} | {:+.3}% | {:+.2} |",
                    c.scenario,
                    c.best_naive().strategy,
                    c.best_naive().total(),
                    c.planner.total(),
                    c.optimum.total(),
                    c.excess_over_optimum() * 100.0,
                    c.versus_best_naive()
                ));
                excess.push((c.scenario.clone(), c.excess_over_optimum()));
                if c.versus_best_naive() > 0.01 {
                    losses.push((c.scenario.clone(), c.versus_best_naive()));
                }
            }
            Err(e) => {
                eprintln!("error: {}: {e}", s.name);
                return ExitCode::FAILURE;
            }
        }
    }
    if benchmark {
        let max = excess.iter().map(|e| e.1).fold(0.0, f64::max);
        let mean = excess.iter().map(|e| e.1).sum::<f64>() / excess.len().max(1) as f64;
        println!();
        println!("| scenario | best naive | planner | hindsight optimum | planner over optimum | planner − best naive ($) |");
        println!("|---|---|---|---|---|---|");
        for row in &table {
            println!("{row}");
        }
        println!();
        println!(
            "benchmark over {} scenarios (default policy, us-east-1 prices):",
            excess.len()
        );
        println!(
            "  planner excess over the hindsight optimum: max {:.3}%, mean {:.3}%",
            max * 100.0,
            mean * 100.0
        );
        if let Some(worst) = excess.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            println!("  worst: {} ({:.3}%)", worst.0, worst.1 * 100.0);
        }
        println!("  scenarios where the planner costs more than the best naive strategy (by > $0.01): {}", losses.len());
        for (name, d) in &losses {
            println!("    {name}: +${d:.2}");
        }
        let pass = max <= 0.02 && losses.is_empty();
        println!(
            "  goal (<= 2% over optimum, never worse than best naive): {}",
            if pass { "met" } else { "NOT met" }
        );
    }
    ExitCode::SUCCESS
}
