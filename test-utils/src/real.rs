//! Whether this test run requires real components, and what to do when one is missing.

use std::path::PathBuf;

/// Environment variable that `scripts/test.sh` sets to `1`: every test that needs a real
/// component (zfs-fuse, BTRFS, moto) must then run, and fails if the component is missing.
pub const REAL_COMPONENTS_ENV: &str = "ZIB_REAL_COMPONENTS";

/// True when the run asked for real components (`ZIB_REAL_COMPONENTS=1`).
pub fn real_components_required() -> bool {
    std::env::var(REAL_COMPONENTS_ENV).is_ok_and(|value| value == "1")
}

/// Finds `program` on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Reports that a real component is unavailable.
///
/// Returns `None` so the caller can skip the test when real components were not
/// requested (a developer's plain `cargo test` on a machine without them). When they were
/// requested, panics with `what` and `install_hint`: the test fails, it never skips.
#[allow(clippy::print_stderr)] // the only channel a skipped test has to say why
pub fn component_missing<T>(what: &str, install_hint: &str) -> Option<T> {
    if real_components_required() {
        panic!(
            "{what} is required by this test run ({REAL_COMPONENTS_ENV}=1) but is not available: \
             {install_hint}"
        );
    }
    eprintln!(
        "skipping: {what} is not available ({install_hint}); set {REAL_COMPONENTS_ENV}=1 to make this a failure"
    );
    None
}

/// True when the process runs as root (loop devices, mounts and zfs-fuse need it).
pub fn running_as_root() -> bool {
    // SAFETY-free: reading /proc avoids an unsafe libc::geteuid call in a
    // `unsafe_code = "forbid"` workspace.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
