//! A zfs-fuse (or OpenZFS) pool on a sparse file, unique per test, destroyed on drop.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;
use zib_snapshot_source::DatasetName;

use crate::real::{component_missing, find_program, running_as_root};

/// Size of the pool's backing file (sparse: only what is written takes space). zfs-fuse
/// refuses pools under 64 MiB.
const POOL_FILE_SIZE: u64 = 256 * 1024 * 1024;
const INSTALL_HINT: &str =
    "as root: `apt-get install zfs-fuse` and start the daemon with `zfs-fuse` (or run scripts/test.sh)";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A ZFS pool on a sparse file in a temporary directory, mounted under that directory.
///
/// Its name (`zibt-<pid>-<n>`) is unique per process and test, so tests run in parallel.
/// Dropping it destroys the pool and removes the file, also when the test panicked.
#[derive(Debug)]
pub struct ZfsPool {
    name: String,
    dir: TempDir,
}

/// How long one set-up command may run. A zfs-fuse daemon that suspended a pool's I/O
/// (its backing file gone or its disk full) never answers again, and blocks every other
/// pool's commands: without a deadline each later test would hang until the test runner
/// kills it, and a run of them outlasts CI's budget instead of failing with a reason.
pub const COMMAND_DEADLINE_SECONDS: u32 = 120;

/// Runs `program args` under coreutils' `timeout` ([`COMMAND_DEADLINE_SECONDS`]) and
/// returns how it ended; panics, with what to look at, when it outran the deadline.
pub fn run_bounded(program: &str, args: &[&str]) -> Output {
    bounded(program, args).unwrap_or_else(|stuck| panic!("{stuck}"))
}

/// [`run_bounded`] without the panic (for `Drop`): `Err` says the command could not be
/// run, or outran the deadline and what that most likely means.
fn bounded(program: &str, args: &[&str]) -> Result<Output, String> {
    bounded_within(COMMAND_DEADLINE_SECONDS, program, args)
}

fn bounded_within(seconds: u32, program: &str, args: &[&str]) -> Result<Output, String> {
    let deadline = seconds.to_string();
    let output = Command::new("timeout")
        .args(["--kill-after=10", &deadline, program])
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|error| format!("could not run {program} {args:?} (under `timeout`): {error}"))?;
    // 124: `timeout` stopped it; 137: it needed SIGKILL after that.
    if matches!(output.status.code(), Some(124 | 137)) {
        return Err(format!(
            "{program} {args:?} did not finish within {deadline} s. {}",
            stuck_hint(program)
        ));
    }
    Ok(output)
}

/// What a command that never returns most likely means, and what to do about it.
fn stuck_hint(program: &str) -> String {
    let disks = Command::new("timeout")
        .args(["10", "df", "-h", "/tmp", "/"])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    let daemon = if program == "zfs" || program == "zpool" {
        "The zfs-fuse daemon is not answering: a pool whose I/O it suspended blocks every \
         pool's commands until it restarts (`pkill -9 -x zfs-fuse; zfs-fuse`; \
         scripts/test.sh checks and restarts it before a run). "
    } else {
        ""
    };
    format!("{daemon}Free space, since a full disk is one cause:\n{disks}")
}

/// Runs a command under the set-up deadline ([`run_bounded`]), returning its standard
/// output; panics with the command and its standard error on failure (this is test
/// setup: a failure is the test's report).
pub fn run_checked(program: &str, args: &[&str]) -> String {
    let output = run_bounded(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl ZfsPool {
    /// Creates the pool, or returns `None` (after saying why) when ZFS is unavailable and
    /// the run did not require real components. Panics when it is required but missing.
    pub fn create() -> Option<ZfsPool> {
        Self::create_sized(POOL_FILE_SIZE)
    }

    /// [`create`](Self::create) with a backing file of `bytes` (at least 64 MiB, which
    /// leaves about 27 MiB for data on zfs-fuse): a pool that a test can fill.
    pub fn create_sized(bytes: u64) -> Option<ZfsPool> {
        if !running_as_root() {
            return component_missing("root (zfs-fuse pools need it)", "run the tests as root");
        }
        if find_program("zpool").is_none() || find_program("zfs").is_none() {
            return component_missing("the zfs and zpool commands", INSTALL_HINT);
        }
        if !run_bounded("zpool", &["list"]).status.success() {
            return component_missing("a running ZFS (the zfs-fuse daemon)", INSTALL_HINT);
        }
        let name = format!(
            "zibt-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("temporary directory");
        let file = dir.path().join("pool.img");
        let mount = dir.path().join("mnt");
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(bytes))
            .expect("sparse pool file");
        let mount_text = mount.to_str().expect("UTF-8 temporary path").to_owned();
        let file_text = file.to_str().expect("UTF-8 temporary path").to_owned();
        // Owned by a `ZfsPool` before the create runs: if the create outruns its deadline
        // or fails, `Drop` keeps the file unless the pool is sure to be gone.
        let pool = ZfsPool { name, dir };
        run_checked(
            "zpool",
            &["create", "-m", &mount_text, &pool.name, &file_text],
        );
        Some(pool)
    }

    /// Grows the pool by a second sparse file of `bytes` (`zpool add`): a full pool
    /// given room.
    pub fn grow(&self, bytes: u64) {
        let file = self.dir.path().join("pool-added.img");
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(bytes))
            .expect("sparse pool file");
        let file_text = file.to_str().expect("UTF-8 temporary path");
        run_checked("zpool", &["add", &self.name, file_text]);
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `pool/relative` as a dataset name (not created).
    pub fn dataset(&self, relative: &str) -> DatasetName {
        DatasetName::zfs(&format!("{}/{relative}", self.name)).expect("valid dataset name")
    }

    /// Creates `pool/relative` and returns its name.
    pub fn create_dataset(&self, relative: &str) -> DatasetName {
        let dataset = self.dataset(relative);
        run_checked("zfs", &["create", dataset.as_str()]);
        dataset
    }

    /// Where a dataset is mounted.
    pub fn mountpoint(&self, dataset: &DatasetName) -> PathBuf {
        let value = run_checked(
            "zfs",
            &["get", "-H", "-o", "value", "mountpoint", dataset.as_str()],
        );
        PathBuf::from(value.trim_end_matches('\n'))
    }

    /// Renames a dataset (unmounting it first: zfs-fuse cannot rename a mounted one) and
    /// mounts it again under its new name.
    pub fn rename(&self, from: &DatasetName, to: &DatasetName) {
        self.umount(from);
        // zfs-fuse reports "busy" for a moment after a receive or an unmount.
        for _ in 0..20 {
            if run_bounded("zfs", &["rename", from.as_str(), to.as_str()])
                .status
                .success()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        if self.exists(from) {
            run_checked("zfs", &["rename", from.as_str(), to.as_str()]);
        }
        run_checked("zfs", &["mount", to.as_str()]);
    }

    /// Unmounts a dataset, retrying while zfs-fuse still reports it busy.
    pub fn umount(&self, dataset: &DatasetName) {
        for _ in 0..20 {
            if run_bounded("zfs", &["umount", dataset.as_str()])
                .status
                .success()
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        run_checked("zfs", &["umount", dataset.as_str()]);
    }

    /// Unmounts and mounts a dataset again, so the FUSE mount shows what a receive wrote
    /// underneath it rather than what the kernel cached.
    pub fn remount(&self, dataset: &DatasetName) {
        self.umount(dataset);
        run_checked("zfs", &["mount", dataset.as_str()]);
    }

    /// True when the dataset exists.
    pub fn exists(&self, dataset: &DatasetName) -> bool {
        run_bounded("zfs", &["list", "-H", "-o", "name", dataset.as_str()])
            .status
            .success()
    }

    /// Every dataset, snapshot and bookmark in the pool (for "nothing was left" checks).
    pub fn everything(&self) -> Vec<String> {
        let mut names: Vec<String> = run_checked(
            "zfs",
            &["list", "-H", "-o", "name", "-t", "all", "-r", &self.name],
        )
        .lines()
        .map(str::to_owned)
        .collect();
        names.sort();
        names
    }

    /// The temporary directory holding the pool file and the mount points.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ZfsPool {
    #[allow(clippy::print_stderr)] // a leaked pool must be visible in the test output
    fn drop(&mut self) {
        // -f: unmount even if a file is open; a pool must never outlive its test. zfs-fuse
        // sometimes reports "busy" for a moment after a receive, hence the retries.
        let mut last_error = String::new();
        for _ in 0..20 {
            match bounded("zpool", &["destroy", "-f", &self.name]) {
                Ok(output) if output.status.success() => return,
                // Never created (its `zpool create` failed): the file can go.
                Ok(_) if pool_absent(&self.name) => return,
                Ok(output) => last_error = String::from_utf8_lossy(&output.stderr).into_owned(),
                Err(stuck) => {
                    last_error = stuck;
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        // Keep the backing file: deleting it under a pool that is still imported makes
        // zfs-fuse fail the pool's writes and suspend its I/O, and a suspended pool
        // blocks every other pool's commands (`zfs create`, `zfs snapshot`) until the
        // daemon restarts. A leaked file is cheap; a wedged daemon stops every test.
        self.dir.disable_cleanup(true);
        eprintln!(
            "could not destroy test pool {} (its file stays in {}): {last_error}",
            self.name,
            self.dir.path().display()
        );
    }
}

/// True only when the daemon answered and does not list pool `name` (an error from
/// `zpool list NAME` may also mean the daemon did not answer): only then may the pool's
/// backing file be deleted.
pub fn pool_absent(name: &str) -> bool {
    bounded("zpool", &["list", "-H", "-o", "name"]).is_ok_and(|output| {
        output.status.success()
            && !String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|pool| pool == name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_outruns_its_deadline_is_stopped_and_named() {
        let started = std::time::Instant::now();
        let stuck = bounded_within(1, "sleep", &["30"]).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert!(
            stuck.starts_with("sleep [\"30\"] did not finish within 1 s."),
            "{stuck}"
        );
        assert!(stuck.contains("Free space"), "{stuck}");
        assert!(!stuck.contains("zfs-fuse"), "{stuck}");
        let zfs = stuck_hint("zfs");
        assert!(zfs.contains("zfs-fuse daemon is not answering"), "{zfs}");
    }

    #[test]
    fn a_command_within_its_deadline_reports_how_it_ended() {
        let done = bounded_within(10, "sh", &["-c", "echo out; exit 3"]).unwrap();
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.stdout, b"out\n");
    }
}
