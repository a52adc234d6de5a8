//! One backup at a time per (repository, dataset) on this host: an advisory `flock` on
//! a lock file next to the dataset's journal.
//!
//! The lock is held for a whole `back_up` (and by `clean_up` while it aborts the
//! uploads of a dead run's journal), so two runs never write one journal or resume one
//! upload at once. The kernel releases a `flock` when its holder dies, even by `kill -9`:
//! a lock that can be taken means the run that wrote the journal is gone. The lock file
//! holds the holder's pid, for the error message only.
//!
//! Another host is not covered by this lock (it has its own state directory); there the
//! create-if-absent commit of the manifest keeps two runs from overwriting each other.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::off_the_runtime;
use crate::error::{Error, Result};

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct DatasetLock {
    // Closing the file releases the flock: keeping it open is what holds the lock.
    _file: File,
}

/// Takes the lock at `path`, which guards the backups of `dataset_name`; with `wait`,
/// waits for a running backup to finish instead of failing.
///
/// # Errors
///
/// [`Error::Locked`] (without `wait`) when another run holds it, naming the dataset, the
/// lock file and the holder's pid; [`Error::LocalState`] when the state directory or the
/// lock file cannot be created.
pub(crate) async fn lock_dataset(
    path: &Path,
    dataset_name: &str,
    wait: bool,
) -> Result<DatasetLock> {
    let dataset = dataset_name.to_owned();
    off_the_runtime(path, "take the dataset lock", move |path| {
        if wait {
            lock_file(path, true)?.ok_or_else(|| Error::LocalState {
                path: path.to_owned(),
                action: "wait for the dataset lock",
                source: std::io::Error::other("the lock was not granted"),
            })
        } else {
            lock_file(path, false)?.ok_or_else(|| Error::Locked {
                dataset,
                pid: holder_pid(path),
                lock_file: path.to_owned(),
            })
        }
    })
    .await
}

/// Takes the lock at `path` (creating it and its directory); `None` when another holds
/// it and `wait` is false. Blocking: call from a blocking context.
pub(crate) fn lock_file(path: &Path, wait: bool) -> Result<Option<DatasetLock>> {
    let state = |action: &'static str| {
        move |source| Error::LocalState {
            path: path.to_owned(),
            action,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(state("create the state directory"))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(state("open the dataset lock file"))?;
    if wait {
        file.lock().map_err(state("take the dataset lock"))?;
    } else {
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(source)) => {
                return Err(Error::LocalState {
                    path: path.to_owned(),
                    action: "take the dataset lock",
                    source,
                })
            }
        }
    }
    // Only the holder writes: the pid is for the message another run shows.
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(state("write the dataset lock file"))?;
    Ok(Some(DatasetLock { _file: file }))
}

/// The pid recorded by the lock's holder, if it can be read.
pub(crate) fn holder_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ids::{RepositoryId, ID_LEN};
    use crate::state::StateDir;

    fn lock_path(state: &Path, repository: RepositoryId, dataset: &str) -> std::path::PathBuf {
        StateDir::new(state).dataset(repository, dataset).lock
    }

    #[tokio::test]
    async fn a_second_lock_on_a_dataset_fails_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let repository = RepositoryId::from_bytes([9; ID_LEN]);
        let held = lock_dataset(
            &lock_path(dir.path(), repository, "tank/photos"),
            "tank/photos",
            false,
        )
        .await
        .unwrap();
        let error = lock_dataset(
            &lock_path(dir.path(), repository, "tank/photos"),
            "tank/photos",
            false,
        )
        .await
        .unwrap_err();
        match &error {
            Error::Locked {
                dataset,
                lock_file,
                pid,
            } => {
                assert_eq!(dataset, "tank/photos");
                assert_eq!(lock_file, &lock_path(dir.path(), repository, "tank/photos"));
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("expected a lock error, got {other}"),
        }
        assert!(error.to_string().contains("tank/photos"), "{error}");
        // Another dataset, or the same name in another repository: not blocked.
        lock_dataset(
            &lock_path(dir.path(), repository, "tank/music"),
            "tank/music",
            false,
        )
        .await
        .unwrap();
        lock_dataset(
            &lock_path(
                dir.path(),
                RepositoryId::from_bytes([8; ID_LEN]),
                "tank/photos",
            ),
            "tank/photos",
            false,
        )
        .await
        .unwrap();
        drop(held);
        lock_dataset(
            &lock_path(dir.path(), repository, "tank/photos"),
            "tank/photos",
            false,
        )
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_lock_is_granted_when_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let repository = RepositoryId::from_bytes([9; ID_LEN]);
        let held = lock_dataset(
            &lock_path(dir.path(), repository, "tank/photos"),
            "tank/photos",
            false,
        )
        .await
        .unwrap();
        let state = dir.path().to_owned();
        let waiter = tokio::spawn(async move {
            lock_dataset(
                &lock_path(&state, repository, "tank/photos"),
                "tank/photos",
                true,
            )
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            !waiter.is_finished(),
            "the waiter must wait while the lock is held"
        );
        drop(held);
        waiter.await.unwrap().unwrap();
    }
}
