//! The `zib` binary when local resources run out: a staging disk that fills during a
//! restore's downloads (a tmpfs), a target pool too small for the restored dataset (a
//! small zfs-fuse pool), a state directory on a read-only file system. Each must stop
//! with one clear error naming the place and what to do, keep what was downloaded and
//! verified, and finish — without downloading it again — once the resource is back.
//! Mounts and pools are undone when a test ends, failed or not.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use zib_test_utils::tmpfs::Tmpfs;

use common::proof::{
    backed_up_video, proxied_s3, request_thaw, restore_until_done, volume_downloads, wait_seen,
    ProxiedS3,
};
use common::Sandbox;
use zib_engine::storage::Operation;
use zib_test_utils::data::{hash_tree, TestRng};
use zib_test_utils::proxy::{ProxyFault, ProxyRule, ProxyTrigger};
use zib_test_utils::zfs::ZfsPool;

const MIB: usize = 1 << 20;
/// Volumes of 11 MiB (parts of 5 MiB, S3's smallest).
const VOLUME_SIZE: &str = "11MiB";

/// `zib restore ...`: its exit code, standard output and standard error.
fn restore(sandbox: &Sandbox, args: &[&str]) -> (Option<i32>, String, String) {
    let output = sandbox.zib().arg("restore").args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The line of `zib: error: ...` in a run's standard error (progress lines come first).
fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|line| line.starts_with("zib: error:"))
        .unwrap_or_else(|| panic!("no error line in: {stderr}"))
        .to_owned()
}

/// The staging directory on a 100 MiB tmpfs. Volume 0 downloads; while volume 1's
/// download is held, another program fills the disk, so its download runs out of space
/// mid-write; then, with the filler gone but the disk shrunk, the next run finds no room
/// for the rest of volume 1 before it starts. Both stop with an error naming the staging
/// directory and what to do, keeping volume 0 (verified) and volume 1's partial file;
/// the run after the disk is grown resumes volume 1 and never downloads volume 0 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_staging_disk_stops_the_restore_cleanly_and_it_resumes_after_space_is_freed() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    let Some(ProxiedS3 {
        moto: _moto, proxy, ..
    }) = proxied_s3(&sandbox, Vec::new(), 0, "300s", VOLUME_SIZE).await
    else {
        return;
    };
    // Declared after the sandbox: unmounted before the sandbox's directory is removed.
    let Some(disk) = Tmpfs::mount(sandbox.path(), "staging-disk", "100m", "") else {
        return;
    };
    let (dataset, expected, _) = backed_up_video(&sandbox, &pool, 51, 30, 3);
    let target = pool.dataset("restored");
    let staging = disk.path.to_str().unwrap();
    request_thaw(
        &sandbox,
        &[
            dataset.as_str(),
            "--into",
            target.as_str(),
            "--staging",
            staging,
            "--yes",
        ],
    );

    // Volume 1's download (the run's third GET, after the keyring's and volume 0's) is
    // held while a filler takes all but 2 MiB of the disk.
    let held_at = proxy.seen(Operation::Get) + 3;
    proxy.set_rules(vec![ProxyRule {
        operation: Some(Operation::Get),
        trigger: ProxyTrigger::Nth(held_at),
        fault: ProxyFault::Hold,
    }]);
    let run = {
        let mut command = sandbox.zib_process();
        command.arg("restore");
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    wait_seen(&proxy, Operation::Get, held_at).await;
    assert!(
        volume_downloads(&proxy)
            .last()
            .unwrap()
            .ends_with("/00000001"),
        "{:?}",
        volume_downloads(&proxy)
    );
    let filler = disk.path.join("filler");
    let free = disk.free();
    std::fs::write(&filler, vec![0u8; usize::try_from(free).unwrap() - 2 * MIB]).unwrap();
    proxy.release();
    proxy.set_rules(Vec::new());
    let output = run.await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        disk.free() < MIB as u64,
        "the disk never filled: {} free",
        disk.free()
    );
    let job_dir = std::fs::read_dir(&disk.path)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.is_dir())
        .unwrap();
    let staged = |suffix: &str| {
        std::fs::read_dir(&job_dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with(suffix))
            .collect::<Vec<_>>()
    };
    let first_error = error_line(&stderr);
    assert!(
        first_error.contains(staging) && first_error.contains("staging directory is full"),
        "the error names neither the staging directory nor what to do: {stderr}"
    );
    assert_eq!(staged("00000000.volume").len(), 1, "volume 0 was not kept");
    let partial = staged("00000001.volume.part");
    assert_eq!(partial.len(), 1, "volume 1's partial download was not kept");
    let partial_len = std::fs::metadata(&partial[0]).unwrap().len();
    assert!(partial_len > 0, "volume 1's download never started");

    // The filler goes, but the disk shrinks to 72 MiB: the rest of volume 1 plus the
    // margin zib keeps free no longer fits — not even once volume 0 is deleted (which
    // zib does when that makes the room, after the receive beside the downloads has
    // read it) — so nothing is deleted, and the run says so before downloading.
    std::fs::remove_file(&filler).unwrap();
    disk.remount("size=72m");
    let downloads = volume_downloads(&proxy).len();
    let (code, _, stderr) = restore(&sandbox, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        error_line(&stderr).contains(staging) && stderr.contains("free space there"),
        "the error names neither the staging directory nor what to do: {stderr}"
    );
    assert_eq!(
        volume_downloads(&proxy).len(),
        downloads,
        "downloaded with no room"
    );
    let second_error = error_line(&stderr);

    // Room again: the restore resumes volume 1 from its partial file and finishes.
    disk.remount("size=200m");
    let done = restore_until_done(&sandbox, &[]);
    assert_eq!(done["state"], "done", "{done}");
    let again = volume_downloads(&proxy).split_off(downloads);
    assert!(
        again.iter().all(|path| !path.ends_with("/00000000")),
        "volume 0 was downloaded again: {again:?}"
    );
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(
        hash_tree(&pool.mountpoint(&target)).unwrap(),
        expected,
        "the restore after a full staging disk differs from the snapshot"
    );
    eprintln!(
        "staging disk full mid-download (volume 1 kept {partial_len} bytes):\n{first_error}\n\
         no room before a download:\n{second_error}"
    );
}

/// A target pool with about 27 MiB free for a 40 MiB dataset: the receive runs out of
/// space. The restore fails naming the target and what to do, keeps every staged volume,
/// and once the pool is grown (`zpool add`) the rerun receives without downloading
/// anything again, byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_target_pool_keeps_the_downloads_and_the_restore_finishes_once_it_is_grown() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let Some(small) = ZfsPool::create_sized(64 << 20) else {
        return;
    };
    let sandbox = Sandbox::new();
    let Some(ProxiedS3 {
        moto: _moto, proxy, ..
    }) = proxied_s3(&sandbox, Vec::new(), 0, "300s", VOLUME_SIZE).await
    else {
        return;
    };
    let (dataset, expected, _) = backed_up_video(&sandbox, &pool, 61, 40, 4);

    let target = small.dataset("restored");
    let (code, _, stderr) = restore(
        &sandbox,
        &[dataset.as_str(), "--into", target.as_str(), "--yes"],
    );
    assert_eq!(code, Some(75), "the first run requests the thaw: {stderr}");
    let (code, _, stderr) = restore(&sandbox, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let error = error_line(&stderr);
    assert!(
        error.contains(target.as_str()) && error.contains("space"),
        "the error names neither the target nor the lack of space: {stderr}"
    );
    let hint = stderr
        .lines()
        .find(|line| line.starts_with("zib: hint:"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        hint.contains("grow the pool") && hint.contains("nothing is downloaded again"),
        "no hint saying what to do: {stderr}"
    );
    assert_eq!(
        volume_downloads(&proxy).len(),
        4,
        "{:?}",
        volume_downloads(&proxy)
    );
    assert!(!small.exists(&target), "the failed receive left {target}");
    let staged = std::fs::read_dir(sandbox.state().join("staging"))
        .unwrap()
        .flat_map(|job| std::fs::read_dir(job.unwrap().path()).unwrap())
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".volume")
        })
        .count();
    assert_eq!(staged, 4, "staged volumes were thrown away");

    small.grow(128 << 20);
    let done = restore_until_done(&sandbox, &[]);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        volume_downloads(&proxy).len(),
        4,
        "the rerun downloaded again: {:?}",
        volume_downloads(&proxy)
    );
    assert_eq!(
        hash_tree(&small.mountpoint(&target)).unwrap(),
        expected,
        "the restore into the grown pool differs from the snapshot"
    );
    eprintln!("target pool full:\n{error}\n{hint}");
}

/// The state directory on a file system mounted read-only (a tmpfs remounted `ro`;
/// the tests run as root, which file modes would not stop): `zib backup`, `zib restore`
/// of a job in progress and the start of a new restore each fail at once with exit 1 and
/// one line naming the state directory's path and what to do — changing nothing in the
/// bucket or the state — and once it is writable again the restore finishes
/// byte-identical and backups go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_state_directory_is_named_with_what_to_do_and_nothing_is_lost() {
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    let Some(ProxiedS3 {
        moto,
        bucket,
        proxy: _proxy,
    }) = proxied_s3(&sandbox, Vec::new(), 0, "300s", VOLUME_SIZE).await
    else {
        return;
    };
    // On the sandbox's state directory: `init` wrote nothing there yet that is needed
    // (the keyring is in the bucket; the state is a cache and journals).
    let Some(state) = Tmpfs::mount(sandbox.path(), "state", "128m", "") else {
        return;
    };
    assert_eq!(state.path, sandbox.state());
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);
    std::fs::write(mountpoint.join("a.bin"), TestRng::new(71).bytes(3 * MIB)).unwrap();
    sandbox.json(&["backup", dataset.as_str()], 0);
    let expected = hash_tree(&mountpoint).unwrap();
    let target = pool.dataset("restored");
    let (code, _, stderr) = restore(
        &sandbox,
        &[dataset.as_str(), "--into", target.as_str(), "--yes"],
    );
    assert_eq!(code, Some(75), "the first run requests the thaw: {stderr}");

    let files_before = tree_of(&state.path);
    let objects_before = common::proof::object_sizes(&moto, &bucket, "family/").await;
    state.remount("ro");
    std::fs::write(mountpoint.join("b.bin"), TestRng::new(72).bytes(MIB)).unwrap();
    let path = sandbox.state().display().to_string();
    let runs: [&[&str]; 3] = [
        &["backup", dataset.as_str()],
        &["restore"],
        &[
            "restore",
            dataset.as_str(),
            "--into",
            "other/dataset",
            "--yes",
        ],
    ];
    let mut lines = Vec::new();
    for args in runs {
        let output = sandbox.zib().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "zib {args:?}: {stderr}");
        let error = error_line(&stderr);
        assert!(
            error.contains(&path) && error.contains("read-only") && stderr.contains("--state-dir"),
            "zib {args:?} does not name the read-only state directory and what to do: {stderr}"
        );
        lines.push(format!("zib {}: {error}", args.join(" ")));
    }
    assert_eq!(tree_of(&state.path), files_before, "the state changed");
    assert_eq!(
        common::proof::object_sizes(&moto, &bucket, "family/").await,
        objects_before,
        "the bucket changed"
    );

    state.remount("rw");
    let done = restore_until_done(&sandbox, &[]);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        hash_tree(&pool.mountpoint(&target)).unwrap(),
        expected,
        "the restore after a read-only state directory differs from the snapshot"
    );
    let backup = sandbox.json(&["backup", dataset.as_str()], 0);
    assert_eq!(backup["datasets"][0]["kind"], "incremental", "{backup}");
    eprintln!("{}", lines.join("\n"));
}

/// Every file under `root` with its length, for "nothing changed" checks.
fn tree_of(root: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let len = std::fs::metadata(&path).unwrap().len();
                out.push((path.display().to_string(), len));
            }
        }
    }
    out.sort();
    out
}
