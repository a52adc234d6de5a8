//! The `zib` binary under network faults: a zfs-fuse dataset backed up to moto and
//! restored from it through the fault-injecting proxy of test-utils, which resets
//! connections, answers 500 and 503 SlowDown, stalls past the client's request timeout,
//! cuts response bodies short and drops answers after the server applied the request —
//! by seeded randomness, and at seeded positions so every kind of fault is certain to
//! hit every kind of request.
//!
//! Sized for CI: `ZIB_PROOF_CYCLES` backup → restore cycles (default 3, at least 3; the
//! full proof is `ZIB_PROOF_CYCLES=20`), each a full and two incrementals of a
//! multi-volume dataset with 5 MiB parts (S3's smallest, which moto enforces) and 7 MiB
//! volumes, restored byte for byte.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::proof::{
    destroy, incomplete_uploads, object_sizes, proxied_s3, restore_until_done, ProxiedS3,
};
use common::Sandbox;
use zib_engine::storage::Operation;
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names, TestRng};
use zib_test_utils::proxy::{ProxyFault, ProxyRule, ProxyTrigger};
use zib_test_utils::zfs::ZfsPool;

const MIB: usize = 1 << 20;
/// The client's request timeout in these tests (the config's `request_timeout`): a
/// stall fault holds the request longer than this.
const REQUEST_TIMEOUT: &str = "1s";
const STALL: Duration = Duration::from_secs(2);
/// Two parts a volume (5 MiB + 2 MiB), so a backup of 16 MiB has three volumes.
const VOLUME_SIZE: &str = "7MiB";
/// Share of requests faulted at random, on top of the scheduled faults.
const FAULT_FRACTION: f64 = 0.10;

/// The operations the proof covers, and the faults each must have met. A truncated body
/// needs a body: S3 answers UploadPart, PutObject, HEAD and RestoreObject with headers only,
/// so cutting "half" of nothing is no fault, and those are not counted for it.
fn required_faults() -> Vec<(Operation, Vec<ProxyFault>)> {
    let stall = ProxyFault::Stall(STALL);
    let headers_only = vec![
        ProxyFault::Reset,
        ProxyFault::InternalError,
        ProxyFault::SlowDown,
        stall,
        ProxyFault::DropResponse,
    ];
    let mut with_body = headers_only.clone();
    with_body.push(ProxyFault::TruncateBody);
    vec![
        (Operation::Put, headers_only.clone()),
        (Operation::CreateMultipart, with_body.clone()),
        (Operation::UploadPart, headers_only.clone()),
        (Operation::CompleteMultipart, with_body.clone()),
        (Operation::List, with_body.clone()),
        (Operation::Head, headers_only.clone()),
        (Operation::RequestRestore, headers_only),
        (Operation::Get, with_body),
    ]
}

/// The rules of a faulty run: for each covered operation, each fault kind once at a
/// seeded odd position among its first requests (never two in a row, so no call meets
/// more than every other attempt faulted by the schedule), then `FAULT_FRACTION` of all
/// requests faulted at random, the kinds in equal shares.
fn faulty_rules(seed: u64) -> Vec<ProxyRule> {
    let mut rng = TestRng::new(seed);
    let mut rules = Vec::new();
    for (operation, faults) in required_faults() {
        let mut positions: Vec<u64> = (0..faults.len() as u64).map(|i| 2 * i + 1).collect();
        // Fisher–Yates with the seeded generator.
        for i in (1..positions.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            positions.swap(i, j);
        }
        for (fault, position) in faults.into_iter().zip(positions) {
            rules.push(ProxyRule {
                operation: Some(operation),
                trigger: ProxyTrigger::Nth(position),
                fault,
            });
        }
    }
    let random = [
        ProxyFault::Reset,
        ProxyFault::InternalError,
        ProxyFault::SlowDown,
        ProxyFault::Stall(STALL),
        ProxyFault::TruncateBody,
        ProxyFault::DropResponse,
    ];
    // Rule k fires with p_k of what is left after rules 0..k, so each kind gets an
    // equal share and the total is FAULT_FRACTION.
    let n = random.len() as f64;
    for (k, fault) in random.into_iter().enumerate() {
        let share = FAULT_FRACTION / n;
        let left = 1.0 - share * k as f64;
        rules.push(ProxyRule {
            operation: None,
            trigger: ProxyTrigger::Fraction(share / left),
            fault,
        });
    }
    rules
}

fn cycles() -> u64 {
    std::env::var("ZIB_PROOF_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(3)
}

/// Writes a dataset's first contents: a tree of small files and 12 MiB of video.
fn fill(dir: &Path, seed: u64) {
    write_tree(&dir.join("albums"), seed, Names::Ascii).unwrap();
    std::fs::write(dir.join("video.mp4"), TestRng::new(seed).bytes(12 * MIB)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeded_faults_on_every_request_kind_never_change_a_restored_byte() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    let seed = 17;
    let Some(ProxiedS3 {
        moto,
        bucket,
        proxy,
    }) = proxied_s3(
        &sandbox,
        faulty_rules(seed),
        seed,
        REQUEST_TIMEOUT,
        VOLUME_SIZE,
    )
    .await
    else {
        return;
    };

    let cycles = cycles();
    let started = Instant::now();
    for cycle in 0..cycles {
        let data_seed = seed * 1000 + cycle;
        let dataset = pool.create_dataset(&format!("photos{cycle}"));
        let mountpoint = pool.mountpoint(&dataset);
        fill(&mountpoint, data_seed);
        let full = sandbox.json(&["backup", dataset.as_str()], 0);
        assert_eq!(full["datasets"][0]["kind"], "full", "{full}");
        assert!(
            full["datasets"][0]["volumes"].as_u64().unwrap() >= 3,
            "{full}"
        );
        for step in 1..=2 {
            modify_tree(&mountpoint.join("albums"), data_seed + step).unwrap();
            std::fs::write(
                mountpoint.join(format!("new{step}.mp4")),
                TestRng::new(data_seed + 10 * step).bytes(8 * MIB),
            )
            .unwrap();
            let incremental = sandbox.json(&["backup", dataset.as_str()], 0);
            assert_eq!(
                incremental["datasets"][0]["kind"], "incremental",
                "{incremental}"
            );
        }
        // The newest snapshot's files: nothing writes to the dataset after its backup.
        let expected = hash_tree(&mountpoint).unwrap();

        let target = pool.dataset(&format!("restored{cycle}"));
        let done = restore_until_done(
            &sandbox,
            &[dataset.as_str(), "--into", target.as_str(), "--yes"],
        );
        assert_eq!(done["state"], "done", "{done}");
        assert_eq!(
            hash_tree(&pool.mountpoint(&target)).unwrap(),
            expected,
            "cycle {cycle}: the restore differs from the snapshot"
        );
        assert_eq!(
            incomplete_uploads(&moto, &bucket).await,
            Vec::<String>::new(),
            "cycle {cycle}: multipart uploads left behind"
        );
        // Room in the pool for the next cycle.
        destroy(&target);
        destroy(&dataset);
    }
    let elapsed = started.elapsed();

    // The proxy's own counts: every kind of fault hit every kind of request.
    let faults = proxy.faults_by_kind();
    let seen = proxy.seen_all();
    let mut report = format!(
        "{cycles} cycles in {:.1} s; requests and faults per operation:\n",
        elapsed.as_secs_f64()
    );
    for (operation, count) in &seen {
        let kinds: Vec<String> = faults
            .iter()
            .filter(|((op, _), _)| op == operation)
            .map(|((_, kind), n)| format!("{kind} {n}"))
            .collect();
        report.push_str(&format!(
            "  {operation}: {count} requests; faults: {}\n",
            kinds.join(", ")
        ));
    }
    eprintln!("{report}");
    let mut missing = BTreeSet::new();
    for (operation, required) in required_faults() {
        for fault in required {
            if faults.get(&(operation, fault.kind())).copied().unwrap_or(0) == 0 {
                missing.insert(format!("{operation}/{}", fault.kind()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "faults that never fired: {missing:?}\n{report}"
    );
    let total: u64 = seen.values().sum();
    let faulted: u64 = faults.values().sum();
    assert!(
        faulted * 100 >= total * 8,
        "at least about a tenth of the requests faulted: {faulted} of {total}\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_every_request_fails_backup_gives_up_and_the_next_run_sends_only_the_rest() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    // Everything fails from the third part on: two parts are confirmed first.
    let everything_fails = vec![ProxyRule {
        operation: None,
        trigger: ProxyTrigger::AfterSeen {
            operation: Operation::UploadPart,
            count: 3,
        },
        fault: ProxyFault::SlowDown,
    }];
    // One volume of five parts.
    let sandbox = Sandbox::new();
    let Some(ProxiedS3 {
        moto,
        bucket,
        proxy,
    }) = proxied_s3(&sandbox, everything_fails, 3, REQUEST_TIMEOUT, "64MiB").await
    else {
        return;
    };
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);
    std::fs::write(
        mountpoint.join("video.mp4"),
        TestRng::new(5).bytes(22 * MIB),
    )
    .unwrap();

    let started = Instant::now();
    let failed = sandbox.json(&["backup", dataset.as_str()], 1);
    let gave_up_after = started.elapsed();
    let entry = &failed["datasets"][0];
    assert_eq!(entry["status"], "failed", "{failed}");
    let message = entry["error"]["message"].as_str().unwrap();
    assert!(message.contains("SlowDown"), "{failed}");
    let log = proxy.log();
    let confirmed = log
        .iter()
        .filter(|(op, rule)| *op == Operation::UploadPart && rule.is_none())
        .count() as u64;
    let faulted = proxy.faults_injected();
    // Bounded: each call is tried 8 times (the retry policy), a few calls at once.
    let part_attempts = proxy.faults_by_kind()[&(Operation::UploadPart, "503")];
    assert!(
        part_attempts <= 8 * 8,
        "{part_attempts} failed part attempts: more than 8 attempts of 8 parts"
    );
    assert_eq!(confirmed, 2, "{log:?}");
    eprintln!(
        "100% faults: gave up after {:.1} s, {faulted} faulted requests ({part_attempts} \
         part uploads), {confirmed} parts confirmed before; error: {message}",
        gave_up_after.as_secs_f64()
    );

    // The faults gone: nothing uncommitted is listed, and the next run resumes and sends
    // only the parts not confirmed.
    proxy.set_rules(Vec::new());
    let list = sandbox.json(&["list"], 0);
    assert_eq!(list["datasets"], serde_json::json!([]), "{list}");
    let parts_before = proxy.seen(Operation::UploadPart);
    let done = sandbox.json(&["backup", dataset.as_str()], 0);
    assert_eq!(done["datasets"][0]["status"], "committed", "{done}");
    assert_eq!(done["datasets"][0]["resumed"], true, "{done}");
    assert!(
        done["datasets"][0]["bytes_skipped"].as_u64().unwrap() >= 2 * 5 * MIB as u64,
        "{done}"
    );
    let sent_again = proxy.seen(Operation::UploadPart) - parts_before;
    let sizes = object_sizes(&moto, &bucket, "family/volumes/").await;
    let part = 5 * MIB as u64;
    let total_parts: u64 = sizes.values().map(|size| size.div_ceil(part)).sum();
    assert_eq!(sizes.len(), 1, "{sizes:?}");
    assert_eq!(
        sent_again,
        total_parts - confirmed,
        "the resumed run re-sent confirmed parts ({total_parts} in all, {confirmed} confirmed)"
    );
    assert_eq!(
        incomplete_uploads(&moto, &bucket).await,
        Vec::<String>::new()
    );
    eprintln!("resumed: {sent_again} of {total_parts} parts sent by the second run");
}
