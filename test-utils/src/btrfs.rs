//! A BTRFS file system on a loop device, unique per test, unmounted and detached on drop.

// Test support: a panic with a message is how a set-up step reports failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::real::{component_missing, find_program, running_as_root};
use crate::zfs::run_checked;

/// Size of the file system's backing file (sparse). mkfs.btrfs needs about 110 MiB.
const IMAGE_SIZE: u64 = 256 * 1024 * 1024;
const INSTALL_HINT: &str = "as root: `apt-get install btrfs-progs` (or run scripts/test.sh); loop devices must be available";

/// A fresh BTRFS file system on a sparse file attached to a loop device, mounted in a
/// temporary directory. Dropping it unmounts, detaches and deletes everything, also when
/// the test panicked.
#[derive(Debug)]
pub struct BtrfsFs {
    dir: TempDir,
    mount: PathBuf,
    loop_device: String,
}

impl BtrfsFs {
    /// Creates and mounts the file system, or returns `None` (after saying why) when
    /// BTRFS is unavailable and the run did not require real components. Panics when it
    /// is required but missing.
    pub fn create() -> Option<BtrfsFs> {
        if !running_as_root() {
            return component_missing(
                "root (loop devices and mounts need it)",
                "run the tests as root",
            );
        }
        for program in ["btrfs", "mkfs.btrfs", "losetup", "mount", "umount"] {
            if find_program(program).is_none() {
                return component_missing(&format!("the {program} command"), INSTALL_HINT);
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("zibt-btrfs-")
            .tempdir()
            .expect("temporary directory");
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(IMAGE_SIZE))
            .expect("sparse image file");
        let image_text = image.to_str().expect("UTF-8 temporary path");
        run_checked("mkfs.btrfs", &["-q", image_text]);
        // `--find --show` picks a free device and attaches in one step, so parallel tests
        // do not race for the same device.
        let loop_device = run_checked("losetup", &["--find", "--show", image_text])
            .trim()
            .to_owned();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        let fs = BtrfsFs {
            dir,
            mount,
            loop_device,
        };
        run_checked(
            "mount",
            &[
                &fs.loop_device,
                fs.mount.to_str().expect("UTF-8 temporary path"),
            ],
        );
        Some(fs)
    }

    /// Where the file system is mounted.
    pub fn mount_point(&self) -> &Path {
        &self.mount
    }

    /// Creates a subvolume at `relative` (under the mount point) and returns its path.
    pub fn create_subvolume(&self, relative: &str) -> PathBuf {
        let path = self.mount.join(relative);
        run_checked(
            "btrfs",
            &["subvolume", "create", path.to_str().expect("UTF-8 path")],
        );
        path
    }

    /// The temporary directory holding the image and the mount point.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for BtrfsFs {
    #[allow(clippy::print_stderr)] // a leaked mount or loop device must be visible
    fn drop(&mut self) {
        let mount = self.mount.to_string_lossy().into_owned();
        let mut unmounted = false;
        for _ in 0..20 {
            if Command::new("umount")
                .arg(&mount)
                .output()
                .is_ok_and(|output| output.status.success())
            {
                unmounted = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        if !unmounted {
            eprintln!("could not unmount {mount}; detaching lazily");
            let _ = Command::new("umount").args(["-l", &mount]).output();
        }
        match Command::new("losetup")
            .args(["-d", &self.loop_device])
            .output()
        {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "could not detach {}: {}",
                self.loop_device,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => eprintln!("could not run losetup -d {}: {error}", self.loop_device),
        }
    }
}
