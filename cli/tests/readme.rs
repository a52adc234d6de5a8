//! The README's quick start, run verbatim: every ```sh block between the
//! `<!-- quick-start: begin -->` and `<!-- quick-start: end -->` markers, in order, in
//! one `bash -euo pipefail`, with the built `zib` first on PATH. Only HOME, the config
//! file and the state directory are the test's own (so the machine's /etc/zib and
//! /var/lib/zib are never touched); every command is the README's text.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use zib_test_utils::real::{component_missing, find_program, running_as_root};
use zib_test_utils::zfs::{pool_absent, run_bounded};

const README: &str = include_str!("../../README.md");
/// The quick start's pool and its file (fixed names: the README's).
const POOL: &str = "zibtry";
const POOL_FILE: &str = "/var/tmp/zib-try.img";

/// The quick start's shell blocks, in order.
fn quick_start() -> Vec<String> {
    let begin = README
        .find("<!-- quick-start: begin -->")
        .expect("the README marks its quick start");
    let end = README
        .find("<!-- quick-start: end -->")
        .expect("the README marks its quick start's end");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in README[begin..end].lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed block in the quick start");
    blocks
}

/// Destroys the quick start's pool if it exists, then removes its file. The file stays
/// while the pool cannot be destroyed: deleting it under an imported pool makes zfs-fuse
/// suspend the pool, and a suspended pool blocks every other test's ZFS commands.
fn destroy_pool() {
    for _ in 0..20 {
        if pool_absent(POOL) {
            let _ = std::fs::remove_file(POOL_FILE);
            return;
        }
        let _ = run_bounded("zpool", &["destroy", "-f", POOL]);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("zfs-fuse will not destroy the quick start's pool {POOL}; its file {POOL_FILE} is kept");
}

#[test]
fn the_quick_start_has_the_commands_it_promises() {
    let script = quick_start().join("\n");
    for command in [
        "zib init",
        "zib backup",
        "zib list",
        "zib plan",
        "zib restore",
        "zib verify",
        "zib key export",
    ] {
        assert!(script.contains(command), "{command} in the quick start");
    }
    assert!(
        !script.contains("ZIB_PASSPHRASE="),
        "no passphrase in a command line"
    );
}

#[test]
fn the_readme_quick_start_runs_verbatim() {
    if !running_as_root() {
        let _: Option<()> = component_missing(
            "root (the quick start makes a ZFS pool)",
            "run the tests as root",
        );
        return;
    }
    if find_program("zpool").is_none() || find_program("zfs").is_none() {
        let _: Option<()> = component_missing(
            "the zfs and zpool commands",
            "apt-get install zfs-fuse and start `zfs-fuse`",
        );
        return;
    }
    let sandbox = tempfile::tempdir().unwrap();
    let home = sandbox.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let zib = assert_cmd::cargo::cargo_bin("zib");
    let path = format!(
        "{}:{}",
        zib.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    destroy_pool();
    let mut script = String::from("set -euo pipefail\n");
    // zfs-fuse (not OpenZFS) may call a pool busy for a moment after a receive into it
    // under load; the quick start's last step destroys the pool. Its `zpool destroy` is
    // tried again for up to 10 s; every command of the quick start still runs verbatim.
    script.push_str(
        "zpool() { if [ \"$1\" = destroy ]; then for _ in 1 2 3 4 5 6 7 8 9 10; do \
         command zpool \"$@\" && return 0; sleep 1; done; fi; command zpool \"$@\"; }\n",
    );
    for block in quick_start() {
        script.push_str(&block);
    }
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("ZIB_CONFIG", sandbox.path().join("config.toml"))
        .env("ZIB_STATE_DIR", sandbox.path().join("state"))
        .output()
        .unwrap();
    destroy_pool();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the quick start failed ({}):\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(stdout.contains("restored byte for byte"), "{stdout}");
    assert!(stdout.contains("incremental backup of"), "{stdout}");
    assert!(home.join("zib-keyring-copy/FORMAT.md").is_file());
}
