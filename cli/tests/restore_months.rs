//! A restore spread over months, driven through the `zib` binary with `ZIB_NOW` — which
//! only builds with the `test-clock` feature read (this file is built only with it; see
//! cli/Cargo.toml, and scripts/test.sh turns the feature on). zfs-fuse source and target,
//! a repository in a local directory. Fails (never skips) when ZIB_REAL_COMPONENTS=1 and
//! a component is missing.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Sandbox;
use zib_test_utils::data::{hash_tree, write_tree, Names, TestRng};
use zib_test_utils::zfs::ZfsPool;

const MIB: u64 = 1 << 20;

impl Sandbox {
    /// `zib --json ARGS` at the time `now` (RFC 3339); returns the exit code and the
    /// document.
    fn json_at(&self, now: &str, args: &[&str]) -> (i32, serde_json::Value) {
        let output = self
            .zib()
            .env("ZIB_NOW", now)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let document = serde_json::from_str(&stdout).unwrap_or_else(|error| {
            panic!(
                "zib {args:?} at {now}: not JSON ({error}):\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().unwrap(), document)
    }
}

/// The first day of the `n`-th month after January 2027, a few minutes past midnight.
fn month_start(n: u32) -> String {
    let year = 2027 + n / 12;
    let month = n % 12 + 1;
    format!("{year}-{month:02}-01T00:05:00Z")
}

#[test]
fn a_small_budget_spreads_a_restore_over_months_and_each_month_stays_inside_it() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);
    write_tree(&mountpoint.join("albums"), 31, Names::Unicode).unwrap();
    std::fs::write(
        mountpoint.join("video.mp4"),
        TestRng::new(31).bytes(usize::try_from(9 * MIB).unwrap()),
    )
    .unwrap();
    sandbox.init_local();
    // Small volumes (S3's smallest part), so the chain has several to spread out.
    let mut config = std::fs::read_to_string(sandbox.config()).unwrap();
    config.push_str("\n[policy]\nvolume_size = \"5MiB\"\npart_size = \"5MiB\"\n");
    std::fs::write(sandbox.config(), config).unwrap();

    let full = sandbox.json(&["backup", dataset.as_str()], 0);
    assert_eq!(full["datasets"][0]["kind"], "full", "{full}");
    std::fs::write(
        mountpoint.join("new video.mp4"),
        TestRng::new(32).bytes(usize::try_from(4 * MIB).unwrap()),
    )
    .unwrap();
    let incremental = sandbox.json(&["backup", dataset.as_str()], 0);
    assert_eq!(incremental["datasets"][0]["kind"], "incremental");
    let expected = hash_tree(&mountpoint).unwrap();

    // A job cancelled while it waits for next month: its staged volumes are gone, its
    // target was never made, and no job is left open. (January; the restore below
    // starts in March, so this job's downloads do not share its budget.)
    let budget = 6 * MIB;
    let budget_arg = budget.to_string();
    let cancelled_target = pool.dataset("cancelled");
    let staging = sandbox.path().join("staging");
    let (code, first) = sandbox.json_at(
        "2027-01-10T09:00:00Z",
        &[
            "restore",
            dataset.as_str(),
            "--into",
            cancelled_target.as_str(),
            "--monthly-budget",
            &budget_arg,
            "--staging",
            staging.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(code, 75, "{first}");
    assert_eq!(first["run"]["waiting_for"], "budget", "{first}");
    assert!(first["run"]["volumes_downloaded"].as_u64().unwrap() > 0);
    assert!(
        staged_files(&staging) > 0,
        "the waiting job keeps what it downloaded"
    );
    let (code, cancelled) = sandbox.json_at("2027-01-11T09:00:00Z", &["restore", "--cancel"]);
    assert_eq!(code, 0, "{cancelled}");
    assert_eq!(
        cancelled["cancelled"]["job_id"], first["job"]["job_id"],
        "{cancelled}"
    );
    assert_eq!(
        staged_files(&staging),
        0,
        "cancelling removed the staged volumes"
    );
    assert!(!pool.exists(&cancelled_target));
    let (code, jobs) = sandbox.json_at("2027-01-11T09:01:00Z", &["restore", "--status"]);
    assert_eq!(code, 0, "{jobs}");
    assert_eq!(
        jobs["jobs"],
        serde_json::json!([]),
        "the cancelled job is gone"
    );
    let (code, none) = sandbox.json_at("2027-01-12T09:00:00Z", &["restore"]);
    assert_eq!(code, 0, "nothing left to advance: {none}");

    // The restore: created on 10 March, shown month by month, then one run a day that
    // goes on only when a month begins.
    let target = pool.dataset("restored");
    let (code, created) = sandbox.json_at(
        "2027-03-10T09:00:00Z",
        &[
            "restore",
            dataset.as_str(),
            "--into",
            target.as_str(),
            "--monthly-budget",
            &budget_arg,
            "--yes",
        ],
    );
    assert_eq!(code, 75, "{created}");
    // The schedule, month by month: each batch within the budget, in months one after
    // another from March.
    let batches = created["plan"]["batches"].as_array().unwrap();
    assert!(batches.len() >= 3, "{created}");
    for (n, batch) in batches.iter().enumerate() {
        assert!(batch["bytes"].as_u64().unwrap() <= budget, "{created}");
        assert_eq!(
            batch["month"],
            month_start(2 + u32::try_from(n).unwrap())[..7],
            "{created}"
        );
    }
    let planned_months = batches.len() as u64;
    let mut downloaded_per_month = vec![created["run"]["bytes_downloaded"].as_u64().unwrap()];

    // Later in March: the budget is spent, nothing is downloaded, the run says so.
    let (code, later) = sandbox.json_at("2027-03-25T09:00:00Z", &["restore"]);
    assert_eq!(code, 75, "{later}");
    let status = &later["jobs"][0];
    assert_eq!(status["waiting_for"], "budget", "{later}");
    assert_eq!(status["bytes_downloaded"], 0, "{later}");
    assert_eq!(status["month_downloaded_bytes"], downloaded_per_month[0]);

    // From April on, a run on the first of each month until it is done.
    let mut finished = false;
    for month in 3..12 {
        let (code, advanced) = sandbox.json_at(&month_start(month), &["restore"]);
        let status = &advanced["jobs"][0];
        downloaded_per_month.push(status["bytes_downloaded"].as_u64().unwrap());
        match code {
            0 => {
                assert_eq!(status["state"], "done", "{advanced}");
                finished = true;
                break;
            }
            75 => assert_eq!(status["waiting_for"], "budget", "{advanced}"),
            other => panic!("zib restore exited {other}: {advanced}"),
        }
    }
    assert!(finished, "done within a year: {downloaded_per_month:?}");
    assert_eq!(hash_tree(&pool.mountpoint(&target)).unwrap(), expected);
    for (month, bytes) in downloaded_per_month.iter().enumerate() {
        assert!(
            *bytes <= budget,
            "month {month}: {bytes} bytes downloaded, budget {budget}"
        );
        assert!(
            *bytes > 0,
            "month {month} downloaded nothing: {downloaded_per_month:?}"
        );
    }
    // As scheduled: one month per planned month, no more.
    assert_eq!(
        downloaded_per_month.len() as u64,
        planned_months,
        "{downloaded_per_month:?}"
    );
    let (code, jobs) = sandbox.json_at(&month_start(11), &["restore", "--status"]);
    assert_eq!(code, 0, "{jobs}");
    let job = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["job_id"] == created["job"]["job_id"])
        .unwrap();
    assert!(!job["finished_at"].is_null(), "{jobs}");
}

/// Files left in the staging directory (any depth).
fn staged_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            if path.is_dir() {
                staged_files(&path)
            } else {
                1
            }
        })
        .sum()
}
