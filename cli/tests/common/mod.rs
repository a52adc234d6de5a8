//! What the CLI tests share: a sandbox (config, state directory, passphrase file and
//! HOME in one temporary directory) and the built `zib` binary run inside it.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub mod proof;

pub const PASSPHRASE: &str = "a long family passphrase";

/// One user's world: nothing of the machine's (no /etc/zib, no ~/.config) is read.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// The clock every command of this sandbox runs at (`ZIB_NOW`, RFC 3339), when set:
    /// read only by `test-clock` builds (cli/Cargo.toml).
    pub now: std::cell::RefCell<Option<String>>,
}

impl Sandbox {
    pub fn new() -> Self {
        let sandbox = Self {
            dir: tempfile::tempdir().unwrap(),
            now: std::cell::RefCell::new(None),
        };
        std::fs::create_dir_all(sandbox.home()).unwrap();
        sandbox.write_passphrase(&sandbox.passphrase_file(), PASSPHRASE);
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn passphrase_file(&self) -> PathBuf {
        self.path().join("passphrase")
    }

    pub fn write_passphrase(&self, file: &Path, passphrase: &str) {
        std::fs::write(file, format!("{passphrase}\n")).unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// `zib` with this sandbox's config, state and passphrase file.
    pub fn zib(&self) -> Command {
        let mut command = Command::cargo_bin("zib").unwrap();
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("ZIB_CONFIG", self.config())
            .env("ZIB_STATE_DIR", self.state())
            .env("ZIB_PASSPHRASE_FILE", self.passphrase_file())
            // moto accepts any credentials; AWS itself is never reached by the tests.
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .timeout(std::time::Duration::from_secs(300));
        if let Some(now) = self.now.borrow().as_deref() {
            command.env("ZIB_NOW", now);
        }
        command
    }

    /// `zib` as a plain process command, with the environment of [`zib`](Self::zib):
    /// for a test that spawns it and must stop it midway (kill -9).
    pub fn zib_process(&self) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("zib"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("ZIB_CONFIG", self.config())
            .env("ZIB_STATE_DIR", self.state())
            .env("ZIB_PASSPHRASE_FILE", self.passphrase_file())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if let Some(now) = self.now.borrow().as_deref() {
            command.env("ZIB_NOW", now);
        }
        command
    }

    /// Runs every later command at `now` (RFC 3339; see [`Sandbox::now`]).
    pub fn set_now(&self, now: &str) {
        *self.now.borrow_mut() = Some(now.to_owned());
    }

    /// `zib ARGS`, asserting the exit code; returns (stdout, stderr).
    pub fn run(&self, args: &[&str], code: i32) -> (String, String) {
        let output = self.zib().args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(code),
            "zib {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        (stdout, stderr)
    }

    /// `zib --json ARGS`, asserting the exit code; returns the document.
    pub fn json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (stdout, stderr) = self.run(&all, code);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|error| panic!("zib {args:?}: not JSON ({error}):\n{stdout}\n{stderr}"))
    }

    /// `zib init` of a repository in a local directory of the sandbox; returns its path.
    pub fn init_local(&self) -> PathBuf {
        let repository = self.path().join("repository");
        let (stdout, _) = self.run(&["init", repository.to_str().unwrap()], 0);
        assert!(stdout.contains("Created repository"), "{stdout}");
        repository
    }
}
