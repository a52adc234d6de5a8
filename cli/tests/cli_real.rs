//! The `zib` binary end to end against real components: a zfs-fuse pool with a
//! repository in a local directory and on a moto S3 server, and a BTRFS file system on a
//! loop device with a local directory. Each test fails (never skips) when
//! ZIB_REAL_COMPONENTS=1 and a component is missing.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::Sandbox;
use zib_engine::storage::s3::{S3Backend, S3Config, StaticCredentials};
use zib_engine::storage::{ObjectKey, StorageBackend as _};
use zib_test_utils::btrfs::BtrfsFs;
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names, TestRng};
use zib_test_utils::moto::MotoServer;
use zib_test_utils::zfs::ZfsPool;

const MIB: usize = 1 << 20;

fn fill(dir: &Path, seed: u64) {
    write_tree(&dir.join("albums"), seed, Names::Unicode).unwrap();
    std::fs::write(dir.join("video.mp4"), TestRng::new(seed).bytes(3 * MIB)).unwrap();
}

#[test]
fn zfs_fuse_and_a_local_directory_init_backup_list_plan_restore_verify() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);
    fill(&mountpoint, 1);
    sandbox.init_local();

    // --dry-run: the plan, and no snapshot created.
    let dry = sandbox.json(&["backup", "--dry-run", dataset.as_str()], 0);
    assert_eq!(dry["datasets"][0]["kind"], "full", "{dry}");
    assert_eq!(dry["datasets"][0]["new_snapshot"], true);
    assert!(
        !pool.everything().iter().any(|name| name.contains('@')),
        "{:?}",
        pool.everything()
    );

    let first = sandbox.json(&["backup", dataset.as_str()], 0);
    let first = &first["datasets"][0];
    assert_eq!(first["status"], "committed", "{first}");
    assert_eq!(first["kind"], "full");
    assert!(first["stream_bytes"].as_u64().unwrap() > 3 * MIB as u64);

    // Two backups of one dataset at once: the second finds the lock held (exit 11). The
    // other run here is `flock(1)` holding the dataset's lock file, as a running backup
    // does.
    let lock = find_files(&sandbox.state(), ".lock");
    assert_eq!(lock.len(), 1, "{lock:?}");
    // --no-fork: flock(1) becomes `sleep` itself, so killing it releases the lock.
    let mut holder = std::process::Command::new("flock")
        .args(["--no-fork", "-x"])
        .arg(&lock[0])
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_, stderr) = sandbox.run(&["backup", dataset.as_str()], 11);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(stderr.contains("zib: error:"), "{stderr}");

    modify_tree(&mountpoint.join("albums"), 2).unwrap();
    std::fs::write(mountpoint.join("new.jpg"), TestRng::new(3).bytes(MIB)).unwrap();
    let (stdout, stderr) = sandbox.run(&["backup", dataset.as_str()], 0);
    assert!(stdout.contains("incremental backup of @zib-"), "{stdout}");
    // Not a terminal: plain log lines, no escape codes.
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    let expected = hash_tree(&mountpoint).unwrap();

    let list = sandbox.json(&["list"], 0);
    let chains = list["datasets"][0]["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1, "{list}");
    let chain = chains[0].as_array().unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0]["kind"], "full");
    assert_eq!(chain[1]["kind"], "incremental");
    assert_eq!(chain[1]["base_backup"], chain[0]["backup_id"]);
    for field in [
        "snapshot",
        "stored_bytes",
        "volumes",
        "committed_at",
        "storage_class",
        "cost_per_month_usd",
    ] {
        assert!(!chain[1][field].is_null(), "{field} in {list}");
    }
    let (stdout, _) = sandbox.run(&["list", dataset.as_str()], 0);
    assert!(stdout.contains("→ incremental"), "{stdout}");

    let plan = sandbox.json(&["plan", dataset.as_str()], 0);
    assert_eq!(plan["datasets"][0]["kind"], "incremental", "{plan}");

    let status = sandbox.json(&["status", "--max-age", "1h"], 0);
    assert_eq!(status["datasets"][0]["backups"], 2, "{status}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (_, stderr) = sandbox.run(&["status", "--max-age", "1s"], 1);
    assert!(stderr.contains("older than --max-age"), "{stderr}");

    // Bad input: an unknown dataset, a target that exists.
    let missing = pool.dataset("nothing");
    let (_, stderr) = sandbox.run(&["backup", missing.as_str()], 1);
    assert!(
        stderr.contains("zib: error:") && stderr.contains("nothing"),
        "{stderr}"
    );
    assert!(stderr.contains("zib: hint:"), "{stderr}");
    let (_, stderr) = sandbox.run(
        &[
            "restore",
            dataset.as_str(),
            "--into",
            dataset.as_str(),
            "--yes",
        ],
        1,
    );
    assert!(stderr.contains("exists"), "{stderr}");
    // One failure among several datasets: the others still run, and the exit is 1.
    let mixed = sandbox.json(&["backup", missing.as_str(), dataset.as_str()], 1);
    assert_eq!(mixed["datasets"][0]["status"], "failed", "{mixed}");
    assert!(
        ["committed", "up_to_date"].contains(&mixed["datasets"][1]["status"].as_str().unwrap()),
        "{mixed}"
    );

    // The second backup, named by its snapshot, restored byte for byte.
    let snapshot = chain[1]["snapshot"].as_str().unwrap();
    let target = pool.dataset("restored");
    let restore = sandbox.json(
        &[
            "restore",
            dataset.as_str(),
            "--into",
            target.as_str(),
            "--snapshot",
            snapshot,
            "--yes",
        ],
        0,
    );
    assert_eq!(restore["run"]["state"], "done", "{restore}");
    assert_eq!(restore["plan"]["batches"].as_array().unwrap().len(), 1);
    assert_eq!(hash_tree(&pool.mountpoint(&target)).unwrap(), expected);
    let jobs = sandbox.json(&["restore", "--status"], 0);
    assert!(!jobs["jobs"][0]["finished_at"].is_null(), "{jobs}");
    // Nothing left to advance.
    sandbox.run(&["restore"], 0);

    // zfs-fuse sometimes calls a just-received dataset busy when the drill destroys
    // it; the drill is then left done-but-not-removed, and the next run (as the engine
    // documents) finishes the removal and reports the pass.
    let output = sandbox
        .zib()
        .args(["--json", "verify", "--drill"])
        .output()
        .unwrap();
    let mut verify: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    if output.status.code() == Some(1)
        && verify["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("busy"))
    {
        verify = sandbox.json(&["verify", "--drill"], 0);
    } else {
        assert_eq!(output.status.code(), Some(0), "{verify}");
    }
    assert_eq!(verify["clean"], true, "{verify}");
    assert_eq!(verify["drill"]["state"], "passed", "{verify}");
    assert!(!pool.exists(&pool.dataset("zib-drill")));
    let verify = sandbox.json(&["verify", dataset.as_str()], 0);
    // Two backups above, and the one the mixed run committed.
    assert_eq!(
        verify["restore_points"].as_array().unwrap().len(),
        3,
        "{verify}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zfs_fuse_and_moto_restore_from_deep_archive_across_runs() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let sandbox = Sandbox::new();
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);
    fill(&mountpoint, 11);
    let url = format!("s3://{bucket}/family");
    let init = sandbox.json(&["init", &url, "--endpoint-url", &moto.endpoint()], 0);
    assert_eq!(init["storage_class"], "DEEP_ARCHIVE", "{init}");
    assert_eq!(init["lifecycle_rule"], "set", "{init}");
    // The config now holds the endpoint: no command needs it again.
    let config = std::fs::read_to_string(sandbox.config()).unwrap();
    assert!(config.contains(&moto.endpoint()), "{config}");

    sandbox.json(&["backup", dataset.as_str()], 0);
    modify_tree(&mountpoint.join("albums"), 12).unwrap();
    sandbox.json(&["backup", dataset.as_str()], 0);
    let expected = hash_tree(&mountpoint).unwrap();
    let list = sandbox.json(&["list"], 0);
    assert_eq!(list["datasets"][0]["backups"], 2, "{list}");
    assert_eq!(
        list["datasets"][0]["chains"][0][0]["storage_class"],
        "DEEP_ARCHIVE"
    );

    // Deep Archive: the first run requests the thaw and waits (75); later runs go on.
    let target = pool.dataset("restored");
    let first = sandbox.json(
        &[
            "restore",
            dataset.as_str(),
            "--into",
            target.as_str(),
            "--yes",
        ],
        75,
    );
    assert_eq!(first["run"]["state"], "waiting", "{first}");
    assert!(
        first["run"]["restores_requested"].as_u64().unwrap() > 0,
        "{first}"
    );
    let mut done = false;
    for _ in 0..5 {
        let output = sandbox.zib().args(["--json", "restore"]).output().unwrap();
        let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        match output.status.code() {
            Some(0) => {
                done = true;
                break;
            }
            Some(75) => std::thread::sleep(std::time::Duration::from_secs(1)),
            other => panic!("zib restore exited {other:?}: {document}"),
        }
    }
    assert!(done, "the restore finished within five runs");
    assert_eq!(hash_tree(&pool.mountpoint(&target)).unwrap(), expected);

    // A bucket that does not exist is no repository.
    std::fs::remove_file(sandbox.config()).unwrap();
    let (_, stderr) = sandbox.run(
        &[
            "init",
            "s3://no-such-bucket-here",
            "--endpoint-url",
            &moto.endpoint(),
        ],
        10,
    );
    assert!(stderr.contains("no-such-bucket-here"), "{stderr}");
}

#[test]
fn zfs_fuse_consolidate_forces_a_full_and_keeps_the_superseded_chain_pending() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    let dataset = pool.create_dataset("docs");
    let mountpoint = pool.mountpoint(&dataset);
    std::fs::write(mountpoint.join("a.bin"), TestRng::new(11).bytes(MIB)).unwrap();
    sandbox.init_local();
    let first = sandbox.json(&["backup", dataset.as_str()], 0);
    let first = &first["datasets"][0];
    assert_eq!(first["kind"], "full", "{first}");

    // One full and nothing superseded: --delete-only deletes nothing, keeps nothing back.
    let only = sandbox.json(&["consolidate", "--delete-only", dataset.as_str()], 0);
    let deletions = &only["datasets"][0]["deletions"];
    assert_eq!(only["datasets"][0]["status"], "deletions_only", "{only}");
    assert_eq!(deletions["deleted"], serde_json::json!([]), "{only}");
    assert_eq!(deletions["pending"], serde_json::json!([]), "{only}");
    assert_eq!(deletions["saved_per_month_usd"], 0.0, "{only}");
    let (stdout, _) = sandbox.run(&["consolidate", "--delete-only", dataset.as_str()], 0);
    assert!(stdout.contains("nothing superseded to delete"), "{stdout}");

    std::fs::write(mountpoint.join("b.bin"), TestRng::new(12).bytes(MIB)).unwrap();
    let second = sandbox.json(&["backup", dataset.as_str()], 0);
    let second = &second["datasets"][0];
    assert_eq!(second["kind"], "incremental", "{second}");
    // The default policy's consolidation is `auto`: the backup ran the deletions too
    // (nothing is superseded yet).
    assert_eq!(
        second["deletions"]["pending"],
        serde_json::json!([]),
        "{second}"
    );

    // --dry-run: the forced full planned, no snapshot created.
    let snapshots = pool.everything();
    let dry = sandbox.json(
        &["consolidate", "--force", "--dry-run", dataset.as_str()],
        0,
    );
    assert_eq!(dry["datasets"][0]["status"], "planned", "{dry}");
    assert_eq!(dry["datasets"][0]["kind"], "full", "{dry}");
    assert_eq!(pool.everything(), snapshots);

    let report = sandbox.json(&["consolidate", "--force", dataset.as_str()], 0);
    let fresh = &report["datasets"][0];
    assert_eq!(fresh["status"], "committed", "{report}");
    assert_eq!(fresh["kind"], "full", "{report}");
    assert!(fresh["base_backup"].is_null(), "{report}");
    let deletions = &fresh["deletions"];
    assert_eq!(deletions["deleted"], serde_json::json!([]), "{report}");
    let pending = deletions["pending"].as_array().unwrap();
    let mut ids: Vec<&str> = pending
        .iter()
        .map(|p| p["backup_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut superseded = vec![
        first["backup_id"].as_str().unwrap(),
        second["backup_id"].as_str().unwrap(),
    ];
    superseded.sort_unstable();
    assert_eq!(ids, superseded, "{report}");
    for pending in pending {
        assert_eq!(pending["waiting_for"], "minimum_age", "{report}");
        let until = pending["until"].as_str().unwrap();
        assert_eq!(
            pending["why_kept"].as_str().unwrap(),
            format!(
                "younger than the policy's minimum age until {}",
                compact(until)
            ),
            "{report}"
        );
    }

    // As text: each kept backup with what it waits for.
    let (stdout, _) = sandbox.run(&["consolidate", dataset.as_str()], 0);
    assert_eq!(
        stdout
            .matches("younger than the policy's minimum age until")
            .count(),
        2,
        "{stdout}"
    );

    // Bad input: a dataset that does not exist.
    let (_, stderr) = sandbox.run(&["consolidate", pool.dataset("nothing").as_str()], 1);
    assert!(
        stderr.contains("zib: error:") && stderr.contains("nothing"),
        "{stderr}"
    );
    assert!(stderr.contains("zib: hint:"), "{stderr}");
}

/// RFC 3339 (`2027-06-04T07:10:19Z`) as the engine writes dates in its messages
/// (`20270604T071019Z`).
fn compact(rfc3339: &str) -> String {
    rfc3339.replace(['-', ':'], "")
}

/// Files under `dir` whose names end with `suffix`.
fn find_files(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(find_files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_refuses_a_permission_is_named_at_init() {
    use zib_engine::storage::Operation;
    use zib_test_utils::proxy::{FaultProxy, ProxyFault, ProxyRule, ProxyTrigger};
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let upstream: std::net::SocketAddr = ([127, 0, 0, 1], moto.port()).into();
    let rule = ProxyRule {
        operation: Some(Operation::Delete),
        trigger: ProxyTrigger::From(1),
        fault: ProxyFault::AccessDenied,
    };
    let proxy = FaultProxy::start(upstream, vec![rule], 7).await.unwrap();
    let sandbox = Sandbox::new();
    let (_, stderr) = sandbox.run(
        &[
            "init",
            &format!("s3://{bucket}/zib"),
            "--endpoint-url",
            &proxy.endpoint(),
        ],
        1,
    );
    assert!(stderr.contains("s3:DeleteObject"), "{stderr}");
    assert!(
        !sandbox.config().exists(),
        "no config for a repository that was not made"
    );
}

#[test]
fn btrfs_and_a_local_directory_backup_and_restore() {
    let Some(fs) = BtrfsFs::create() else { return };
    let sandbox = Sandbox::new();
    let subvolume = fs.create_subvolume("Fotos für Oma");
    fill(&subvolume, 21);
    sandbox.init_local();
    let name = subvolume.to_str().unwrap();
    let first = sandbox.json(&["backup", name], 0);
    assert_eq!(first["datasets"][0]["kind"], "full", "{first}");
    modify_tree(&subvolume.join("albums"), 22).unwrap();
    let second = sandbox.json(&["backup", name], 0);
    assert_eq!(second["datasets"][0]["kind"], "incremental", "{second}");
    let expected = hash_tree(&subvolume).unwrap();
    let target = fs.mount_point().join("restored");
    let restore = sandbox.json(
        &["restore", name, "--into", target.to_str().unwrap(), "--yes"],
        0,
    );
    assert_eq!(restore["run"]["state"], "done", "{restore}");
    let snapshot = second["datasets"][0]["snapshot"].as_str().unwrap();
    assert_eq!(hash_tree(&target.join(snapshot)).unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_keyring_is_recovered_from_its_archived_copy_after_a_thaw() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let bucket = moto.create_bucket().await;
    let sandbox = Sandbox::new();
    sandbox.json(
        &[
            "init",
            &format!("s3://{bucket}/family"),
            "--endpoint-url",
            &moto.endpoint(),
        ],
        0,
    );
    // The live keyring object lost.
    let bucket_backend = s3_backend(&moto, &bucket).await;
    let live = ObjectKey::new("family/keyring").unwrap();
    bucket_backend.head(&live).await.unwrap();
    bucket_backend.delete(&live).await.unwrap();
    let (_, stderr) = sandbox.run(&["list"], 1);
    assert!(stderr.contains("key recover"), "{stderr}");

    // The archived copy is in Deep Archive: the first run requests its thaw and exits 75;
    // while it thaws, runs say so without requesting again; then it is put back.
    moto.set_manual_restore_transition(2).await;
    let first = sandbox.json(&["key", "recover"], 75);
    assert_eq!(first["state"], "thawing", "{first}");
    assert_eq!(first["requested_now"], true, "{first}");
    let archived_key = first["key"].as_str().unwrap().to_owned();
    assert!(archived_key.starts_with("family/"), "{first}");
    let saved = sandbox.path().join("recovered-keyring.bin");
    let mut recovered = None;
    for _ in 0..5 {
        let output = sandbox
            .zib()
            .args(["--json", "key", "recover", "--out"])
            .arg(&saved)
            .output()
            .unwrap();
        let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        match output.status.code() {
            Some(0) => {
                recovered = Some(document);
                break;
            }
            Some(75) => {
                assert_eq!(document["state"], "thawing", "{document}");
                assert_eq!(document["requested_now"], false, "{document}");
            }
            other => panic!("zib key recover exited {other:?}: {document}"),
        }
    }
    let recovered = recovered.expect("the keyring was recovered within five runs");
    assert_eq!(recovered["keyring"], "written", "{recovered}");
    assert_eq!(recovered["from"], archived_key.as_str(), "{recovered}");
    assert!(saved.is_file());
    // The repository opens as before, and the saved copy opens it too.
    sandbox.run(&["list"], 0);
    sandbox.run(&["--keyring", saved.to_str().unwrap(), "list"], 0);
}

/// zib's own S3 backend for `bucket` on `moto`, for a test's direct look at the bucket.
async fn s3_backend(moto: &MotoServer, bucket: &str) -> S3Backend {
    let mut config = S3Config::new(bucket);
    config.region = Some("us-east-1".to_owned());
    config.endpoint_url = Some(moto.endpoint());
    config.credentials = Some(StaticCredentials {
        access_key_id: "test".to_owned(),
        secret_access_key: "test".to_owned(),
    });
    S3Backend::connect(&config).await.unwrap()
}
