//! `kill -9` of the `zib` binary at seeded points chosen by progress, not by time: the
//! fault proxy of test-utils holds the n-th request of an operation (the part after
//! part k, the completion of volume k, the download of volume k), the test waits until
//! the proxy has that request in hand, then kills the process. A restore is also killed
//! during its `zfs receive` (seen in /proc: its receive child alive while it reads staged
//! volume k), and a consolidation between its commit and its deletions and in the middle
//! of them (the proxy holds the n-th DeleteObject; on the test clock, `ZIB_NOW`, past
//! Deep Archive's 180-day minimum). Every rerun completes; nothing uncommitted is ever
//! listed as a backup; what the rerun sends again stays within what was in flight; the
//! state directory is never edited by hand; and every restore, killed midway, is
//! byte-identical.
//!
//! Sized for CI: `ZIB_PROOF_KILLS` backup kills (default 4, at least 2; the full proof
//! is `ZIB_PROOF_KILLS=20`), one consolidation kill during its upload and two after its
//! commit (`test-clock` builds only), two restore kills during downloads and one during
//! the receive.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::proof::{
    backed_up_video, incomplete_uploads, object_sizes, proxied_s3, request_thaw,
    restore_until_done, volume_downloads, ProxiedS3,
};
use common::Sandbox;
use zib_engine::storage::Operation;
use zib_test_utils::data::{hash_tree, TestRng};
use zib_test_utils::proxy::{FaultProxy, ProxyFault, ProxyRule, ProxyTrigger};
use zib_test_utils::zfs::{run_bounded, ZfsPool};

const MIB: usize = 1 << 20;
/// Longer than any test: a held request is never answered (the process is killed
/// while it waits, and the proxy goes away with the test).
const HOLD: Duration = Duration::from_secs(3600);
/// Parts of 5 MiB, volumes of two parts and a bit (5 + 5 + 1 MiB).
const VOLUME_SIZE: &str = "11MiB";
const PART: u64 = 5 << 20;
/// The policy's default: parts sent at once (planner `Policy::parts_in_flight`).
const PARTS_IN_FLIGHT: u64 = 4;

fn kills() -> u64 {
    std::env::var("ZIB_PROOF_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        // The restore's kill points need a chain of a few volumes.
        .max(2)
}

/// A spawned `zib`, killed (SIGKILL) and reaped when dropped — at the kill point, or when
/// the test fails first, so no process outlives the test's pool.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Holds the `nth` request of `operation` from now on (counted from the proxy's total so
/// far) and runs `zib ARGS` until the proxy has it; then kills the process (SIGKILL).
/// Panics if the process ends before reaching that point.
async fn kill_at(
    sandbox: &Sandbox,
    proxy: &FaultProxy,
    args: &[&str],
    operation: Operation,
    nth: u64,
) {
    let target = proxy.seen(operation) + nth;
    proxy.set_rules(vec![ProxyRule {
        operation: Some(operation),
        trigger: ProxyTrigger::Nth(target),
        fault: ProxyFault::Stall(HOLD),
    }]);
    let mut child = Running(
        sandbox
            .zib_process()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    // Waiting for a condition (the proxy holds the request), not for a time: the
    // deadline only turns a hang into a failure.
    while proxy.seen(operation) < target {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("zib {args:?} ended ({status}) before {operation} #{nth}");
        }
        assert!(
            Instant::now() < deadline,
            "zib {args:?} never reached {operation} #{nth}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(child);
    proxy.set_rules(Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_and_restores_killed_at_seeded_points_resume_and_restore_byte_identical() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    let Some(ProxiedS3 {
        moto,
        bucket,
        proxy,
    }) = proxied_s3(&sandbox, Vec::new(), 0, "30s", VOLUME_SIZE).await
    else {
        return;
    };
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);

    let mut rng = TestRng::new(2026);
    let mut figures = Vec::new();
    // The newest backup's snapshot: the restore below takes the chain of incrementals to
    // it, not the consolidation's full of the same data.
    let mut last_snapshot = String::new();
    for kill in 0..kills() {
        // New data for each backup: 24 MiB for the full (three volumes, seven parts),
        // 6 MiB for each incremental (one volume, two parts): one file replaced, so the
        // restored chain of 20 still fits the 256 MiB pool.
        let size = if kill == 0 { 24 * MIB } else { 6 * MIB };
        std::fs::write(mountpoint.join("video.mp4"), TestRng::new(kill).bytes(size)).unwrap();
        let volumes = if kill == 0 { 3 } else { 1 };
        // The kill point: while part k is held (after k-1 parts), or while the
        // completion of volume k is held (after k-1 volumes).
        let parts = (size as u64).div_ceil(PART) + 1;
        let (operation, nth) = if rng.below(3) == 0 {
            (Operation::CompleteMultipart, 1 + rng.below(volumes))
        } else {
            (Operation::UploadPart, 1 + rng.below(parts - 1))
        };
        let parts_before = proxy.seen(Operation::UploadPart);
        kill_at(
            &sandbox,
            &proxy,
            &["backup", dataset.as_str()],
            operation,
            nth,
        )
        .await;
        let sent_before_kill = proxy.seen(Operation::UploadPart) - parts_before;

        // Nothing uncommitted is listed.
        let list = sandbox.json(&["list"], 0);
        let listed = list["datasets"][0]["backups"].as_u64().unwrap_or(0);
        // Each kill before this one was followed by a committed rerun.
        assert_eq!(listed, kill, "after kill {kill}: {list}");

        // The rerun resumes and commits.
        let parts_at_rerun = proxy.seen(Operation::UploadPart);
        let rerun = sandbox.json(&["backup", dataset.as_str()], 0);
        let report = &rerun["datasets"][0];
        assert_eq!(report["status"], "committed", "{rerun}");
        let resent = proxy.seen(Operation::UploadPart) - parts_at_rerun;
        last_snapshot = report["snapshot"].as_str().unwrap().to_owned();
        let backup_id = report["backup_id"].as_str().unwrap();
        let dataset_id = report["dataset_id"].as_str().unwrap();
        let sizes = object_sizes(
            &moto,
            &bucket,
            &format!("family/volumes/{dataset_id}/{backup_id}/"),
        )
        .await;
        let total: u64 = sizes.values().map(|size| size.div_ceil(PART)).sum();
        // The killed run had at least `sent_before_kill - 1` parts stored (the last
        // one was held); the rerun sends the rest, and again at most the parts whose
        // confirmations were not journalled yet — never more than are in flight.
        assert!(
            resent + sent_before_kill.saturating_sub(1) <= total + PARTS_IN_FLIGHT,
            "kill {kill} at {operation} #{nth}: the rerun sent {resent} of {total} parts \
             though the killed run had sent {sent_before_kill}"
        );
        if operation == Operation::CompleteMultipart {
            // Killed while completing a volume: every part sent was confirmed and
            // journalled before the completion, so none is sent twice.
            assert_eq!(
                resent + sent_before_kill,
                total,
                "kill {kill} at {operation} #{nth}: parts sent again"
            );
        }
        figures.push(format!(
            "kill {kill} at {operation} #{nth}: killed run sent {sent_before_kill} parts, \
             rerun sent {resent} of {total} (resumed: {})",
            report["resumed"]
        ));
    }
    // A consolidation (a forced fresh full of the same data: 6 MiB, two parts) killed
    // while one of its parts is held: the rerun commits the full, and nothing
    // uncommitted is listed.
    let nth = 1 + rng.below(2);
    kill_at(
        &sandbox,
        &proxy,
        &["consolidate", "--force", dataset.as_str()],
        Operation::UploadPart,
        nth,
    )
    .await;
    let list = sandbox.json(&["list"], 0);
    assert_eq!(list["datasets"][0]["backups"], kills(), "{list}");
    let rerun = sandbox.json(&["consolidate", "--force", dataset.as_str()], 0);
    let report = &rerun["datasets"][0];
    assert_eq!(report["status"], "committed", "{rerun}");
    assert_eq!(report["kind"], "full", "{rerun}");
    figures.push(format!(
        "consolidation killed at upload-part #{nth}, rerun committed (resumed: {})",
        report["resumed"]
    ));
    assert_eq!(
        incomplete_uploads(&moto, &bucket).await,
        Vec::<String>::new(),
        "uploads left behind"
    );
    let expected = hash_tree(&mountpoint).unwrap();

    // The restore killed twice while one of its first GETs is held (a run reads the
    // keyring first, then downloads volumes), then run on to its end.
    let target = pool.dataset("restored");
    let restore_args = [
        "restore",
        dataset.as_str(),
        "--into",
        target.as_str(),
        "--snapshot",
        &last_snapshot,
        "--yes",
    ];
    let first = sandbox.zib().args(restore_args).output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(75),
        "the first run requests the thaw"
    );
    for _ in 0..2 {
        let gets = 1 + rng.below(3);
        kill_at(&sandbox, &proxy, &["restore"], Operation::Get, gets).await;
        figures.push(format!("restore killed at GET #{gets}"));
    }
    let done = restore_until_done(&sandbox, &[]);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        hash_tree(&pool.mountpoint(&target)).unwrap(),
        expected,
        "the restore after kills differs from the snapshot"
    );
    eprintln!("{}", figures.join("\n"));
}

/// The processes whose parent is `parent`, with their command lines (arguments joined by
/// spaces), from /proc.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        // A process may end between the listing and the read: skipped.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after its `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|field| field.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let words: Vec<String> = cmdline
            .split(|byte| *byte == 0)
            .filter(|word| !word.is_empty())
            .map(|word| String::from_utf8_lossy(word).into_owned())
            .collect();
        out.push((pid, words.join(" ")));
    }
    out
}

/// The files process `pid` has open (the targets of /proc/PID/fd).
fn open_files(pid: u32) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .collect()
}

/// A restore killed while `zfs receive` takes the full's stream — after the receive was
/// fed volume k, while the run reads staged volume k+1 into it (seen in /proc: the run's
/// `zfs receive` child alive and the run holding that staged file open) — leaves no
/// received snapshot, keeps every staged volume, and the rerun receives from them
/// without downloading anything again: byte-identical, no hand edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_killed_during_its_receive_resumes_from_the_staged_volumes() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    // moto is bound, not `..`-ed: it must outlive the test.
    let Some(ProxiedS3 {
        moto: _moto, proxy, ..
    }) = proxied_s3(&sandbox, Vec::new(), 0, "30s", VOLUME_SIZE).await
    else {
        return;
    };
    // 30 MiB: a full of three volumes (11 + 11 + 8 MiB and a little).
    let (dataset, expected, _) = backed_up_video(&sandbox, &pool, 7, 30, 3);
    let target = pool.dataset("restored");
    request_thaw(
        &sandbox,
        &[dataset.as_str(), "--into", target.as_str(), "--yes"],
    );
    let staging = sandbox.state();
    // The kill point: while staged volume k (1 or 2), or a later one, is read into the
    // receive, once every volume is staged (the receive of volume 1 may start while volume
    // 2 downloads; a kill then would rightly make the rerun download the rest of volume 2).
    let k = 1 + TestRng::new(2027).below(2);
    let mut child = Running(
        sandbox
            .zib_process()
            .args(["restore"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    // Volume k or a later one: the receive may have finished reading volume k by the
    // time the last volume is staged.
    let wanted: Vec<String> = (k..3).map(|index| format!("-{index:08}.volume")).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Polled without sleeping: the receive of the rest takes far longer than a look at
    // /proc, and the checks after the kill prove it was still running.
    let receiver = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("zib restore ended ({status}) before its receive read volume {k}");
        }
        assert!(
            Instant::now() < deadline,
            "zib restore never reached volume {k}'s receive"
        );
        let receive = children(pid)
            .into_iter()
            .find(|(_, command)| command.contains("zfs receive"));
        if let Some((receiver, _)) = receive {
            let reading = open_files(pid).iter().any(|path| {
                path.starts_with(&staging)
                    && wanted
                        .iter()
                        .any(|name| path.to_string_lossy().ends_with(name.as_str()))
            });
            if reading && staged_volumes(&staging) == 3 {
                break receiver;
            }
        }
        tokio::task::yield_now().await;
    };
    drop(child);
    // The receive, its input gone, ends without the snapshot.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&format!("/proc/{receiver}")).exists() {
        assert!(
            Instant::now() < deadline,
            "zfs receive {receiver} outlived zib by a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snapshots = run_bounded(
        "zfs",
        &[
            "list",
            "-H",
            "-t",
            "snapshot",
            "-o",
            "name",
            "-r",
            target.as_str(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&snapshots.stdout).trim().is_empty(),
        "the killed receive left a snapshot: {}",
        String::from_utf8_lossy(&snapshots.stdout)
    );
    let downloads_before = volume_downloads(&proxy).len();
    assert_eq!(
        downloads_before, 3,
        "the killed run downloaded each volume once"
    );
    let done = restore_until_done(&sandbox, &[]);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        volume_downloads(&proxy).len(),
        downloads_before,
        "the rerun downloaded volumes again"
    );
    assert_eq!(
        hash_tree(&pool.mountpoint(&target)).unwrap(),
        expected,
        "the restore after a kill during its receive differs from the snapshot"
    );
    eprintln!(
        "restore killed while the receive read staged volume {k}; the rerun downloaded no volume"
    );
}

/// How many finished staged copies (`*.volume`, not `*.volume.part`) are under `dir`.
fn staged_volumes(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                staged_volumes(&path)
            } else {
                usize::from(
                    path.extension()
                        .is_some_and(|extension| extension == "volume"),
                )
            }
        })
        .sum()
}

/// A consolidation killed between its commit and its deletions, then its rerun killed in
/// the middle of them (the proxy holds the n-th DeleteObject): nothing committed is lost,
/// the catalog never lists a half-deleted backup, the next run finishes the deletions,
/// and the consolidated full restores byte-identical. The old chain is past Deep
/// Archive's 180-day minimum only on the test clock (`ZIB_NOW`), so this test exists
/// only in `test-clock` builds.
#[cfg(feature = "test-clock")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consolidation_killed_between_its_commit_and_its_deletions_finishes_them_on_rerun() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    let Some(ProxiedS3 {
        moto,
        bucket,
        proxy,
    }) = proxied_s3(&sandbox, Vec::new(), 0, "30s", VOLUME_SIZE).await
    else {
        return;
    };
    // Superseded backups may go as soon as the full that replaces them is committed (no
    // grace period); the 180-day minimum age stays the default.
    let mut config = std::fs::read_to_string(sandbox.config()).unwrap();
    config.push_str("grace_days = 0\n");
    std::fs::write(sandbox.config(), config).unwrap();
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);

    // A full (12 MiB: two volumes) in January, an incremental (3 MiB) the day after.
    std::fs::write(mountpoint.join("a.bin"), TestRng::new(1).bytes(12 * MIB)).unwrap();
    sandbox.set_now("2027-01-04T10:00:00Z");
    sandbox.json(&["backup", dataset.as_str()], 0);
    std::fs::write(mountpoint.join("b.bin"), TestRng::new(2).bytes(3 * MIB)).unwrap();
    sandbox.set_now("2027-01-05T10:00:00Z");
    sandbox.json(&["backup", dataset.as_str()], 0);
    let expected = hash_tree(&mountpoint).unwrap();
    let old = object_sizes(&moto, &bucket, "family/").await;

    // In August the chain is past 180 days. The forced full commits, and the old chain
    // stays until a backup has committed after that full (a safety rule of the
    // deletions): nothing is deleted yet.
    sandbox.set_now("2027-08-02T10:00:00Z");
    let forced = sandbox.json(&["consolidate", "--force", dataset.as_str()], 0);
    let deletions = &forced["datasets"][0]["deletions"];
    assert_eq!(deletions["deleted"], serde_json::json!([]), "{forced}");
    let pending = deletions["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 2, "{forced}");
    assert!(
        pending
            .iter()
            .all(|entry| entry["waiting_for"] == "later_backup"),
        "{forced}"
    );
    let after_full = object_sizes(&moto, &bucket, "family/").await;

    // The next day's consolidation commits an incremental, and is killed while its
    // first deletion is held: after its commit, before any deletion. (`--confirm`: the
    // sizes of the old snapshots, pruned locally, are unknown, so how much of their data
    // is gone cannot be told; the deletions wait for a confirmation otherwise.)
    sandbox.set_now("2027-08-03T10:00:00Z");
    kill_at(
        &sandbox,
        &proxy,
        &["consolidate", "--confirm", dataset.as_str()],
        Operation::Delete,
        1,
    )
    .await;
    let after_commit = object_sizes(&moto, &bucket, "family/").await;
    for key in after_full.keys() {
        assert!(after_commit.contains_key(key), "{key} went before the kill");
    }
    let new_manifests = after_commit
        .keys()
        .filter(|key| key.starts_with("family/manifests/") && !after_full.contains_key(*key))
        .count();
    // The kill came after the commit: the incremental's manifest is there.
    assert_eq!(new_manifests, 1, "{after_commit:?}");
    let list = sandbox.json(&["list"], 0);
    assert_eq!(list["datasets"][0]["backups"], 4, "{list}");

    // The rerun, killed in the middle of the deletions (while the n-th delete of the old
    // chain's objects is held).
    let old_objects = old
        .keys()
        .filter(|key| key.starts_with("family/manifests/") || key.starts_with("family/volumes/"))
        .count() as u64;
    let nth = 2 + TestRng::new(2028).below(old_objects - 2);
    // Each run at its own time: snapshot names have a resolution of a second.
    sandbox.set_now("2027-08-03T11:00:00Z");
    kill_at(
        &sandbox,
        &proxy,
        &["consolidate", "--confirm", dataset.as_str()],
        Operation::Delete,
        nth,
    )
    .await;
    let list = sandbox.json(&["list"], 0);
    let listed = list["datasets"][0]["backups"].as_u64().unwrap();
    // The three committed since August, and what is left of the old chain's two.
    assert!(
        (3..=5).contains(&listed),
        "after a kill mid-deletion: {list}"
    );

    // The next run finishes the deletions: only the consolidated full is left.
    sandbox.set_now("2027-08-03T12:00:00Z");
    let rerun = sandbox.json(&["consolidate", "--confirm", dataset.as_str()], 0);
    let left = object_sizes(&moto, &bucket, "family/").await;
    for key in old.keys() {
        let kept = key.starts_with("family/manifests/") || key.starts_with("family/volumes/");
        assert_eq!(
            left.contains_key(key),
            !kept,
            "{key} after the deletions finished: {rerun}"
        );
    }
    for key in after_commit.keys().filter(|key| !old.contains_key(*key)) {
        assert!(
            left.contains_key(key),
            "{key}, committed after the chain, is gone"
        );
    }
    // The catalog lists the consolidated state: one chain from the August full.
    let list = sandbox.json(&["list"], 0);
    assert_eq!(list["datasets"][0]["backups"], 4, "{list}");
    let chains = list["datasets"][0]["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1, "{list}");
    assert_eq!(
        chains[0][0]["backup_id"], forced["datasets"][0]["backup_id"],
        "{list}"
    );

    let target = pool.dataset("restored");
    sandbox.set_now("2027-08-04T10:00:00Z");
    let done = restore_until_done(
        &sandbox,
        &[dataset.as_str(), "--into", target.as_str(), "--yes"],
    );
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        hash_tree(&pool.mountpoint(&target)).unwrap(),
        expected,
        "the consolidated full restores differently from the snapshot"
    );
    eprintln!(
        "consolidation killed at delete #1 (after its commit), its rerun at delete #{nth} of \
         {old_objects}; the next run finished: {}",
        rerun["datasets"][0]["deletions"]
    );
}
