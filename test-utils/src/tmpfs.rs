//! A tmpfs mounted for one test: a disk that fills up, shrinks or turns read-only, for
//! the code that must notice (a restore's staging directory, the state directory).

#![allow(clippy::expect_used, clippy::unwrap_used)] // fixture: a failed setup is a failed test

use crate::zfs::run_checked;

/// A tmpfs mounted (as root) on a new directory under `parent`, unmounted when dropped —
/// also when the test fails first, so no mount outlives its test.
#[derive(Debug)]
pub struct Tmpfs {
    /// The mount point.
    pub path: std::path::PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, e.g. `100m`) with extra `options`
    /// (e.g. `ro`), or `None` (after saying why) when not root and real components are
    /// not required.
    pub fn mount(parent: &std::path::Path, name: &str, size: &str, options: &str) -> Option<Self> {
        if !crate::real::running_as_root() {
            return crate::real::component_missing(
                "root (mounting a tmpfs needs it)",
                "run the tests as root",
            );
        }
        let path = parent.join(name);
        std::fs::create_dir_all(&path).unwrap();
        let mut all = format!("size={size},mode=0700");
        if !options.is_empty() {
            all.push(',');
            all.push_str(options);
        }
        run_checked(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &all,
                "zib-test",
                path.to_str().unwrap(),
            ],
        );
        Some(Self { path })
    }

    /// Changes the mount's options (`remount,` is added): a new size, `ro` or `rw`.
    pub fn remount(&self, options: &str) {
        run_checked(
            "mount",
            &[
                "-o",
                &format!("remount,{options}"),
                self.path.to_str().unwrap(),
            ],
        );
    }

    /// Bytes free on the mount.
    pub fn free(&self) -> u64 {
        let output = run_checked(
            "df",
            &["--output=avail", "-B1", self.path.to_str().unwrap()],
        );
        output.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.path.to_str().unwrap_or_default();
        let unmounted = std::process::Command::new("umount")
            .arg(path)
            .output()
            .is_ok_and(|output| output.status.success());
        if !unmounted {
            // Busy (a process of a failed test still in it): detach it now, freed when
            // the last user goes.
            let _ = std::process::Command::new("umount")
                .args(["-l", path])
                .output();
        }
    }
}
