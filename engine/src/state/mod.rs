//! The local state directory: what this host remembers between runs, and the durable
//! file operations that keep it consistent across a crash.
//!
//! Nothing here is needed to restore: deleting the state directory loses only the
//! ability to continue an interrupted backup (the next run plans afresh, and clean-up
//! removes what the old run left once it is old). Layout, per repository:
//!
//! ```text
//! <state dir>/<repository id>/<dataset stem>.lock       the dataset's lock (flock)
//! <state dir>/<repository id>/<dataset stem>.journal    the backup in progress
//! <state dir>/<repository id>/<dataset stem>.creating   for a moment: a snapshot being created
//! <state dir>/<repository id>/catalog.cache             the manifests' HEAD answers (catalog::cache)
//! ```
//!
//! The dataset stem is the dataset's name in hex (any name becomes a safe file name), or
//! `h-` and the SHA-256 of a name too long for that. The state directory MUST be local to
//! its host (see docs/ARCHITECTURE.md, "Crash-safe resume").
//!
//! Every write replaces a whole file durably (temporary file, fsync, rename, fsync of the
//! directory), so a reader always sees one complete state; every file operation runs on
//! tokio's blocking pool, so an fsync never stalls the tasks uploading parts.

pub(crate) mod envelope;
pub(crate) mod journal;
pub(crate) mod ledger;
pub(crate) mod lock;

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest::{digest, SHA256};

use crate::error::{Error, Result};
use crate::ids::RepositoryId;

/// Dataset names longer than this (in bytes) are hashed into the file name: hex doubles
/// the length and file names are limited to 255 bytes.
const MAX_HEX_NAME: usize = 100;

/// The state directory a caller named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The state directory itself (the download ledger is kept at its root: it counts
    /// every repository's downloads).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding one repository's journals and locks.
    pub(crate) fn repository(&self, repository: RepositoryId) -> PathBuf {
        self.root.join(repository.to_string())
    }

    /// The files of one dataset's backups into `repository`.
    pub(crate) fn dataset(&self, repository: RepositoryId, dataset_name: &str) -> DatasetFiles {
        let dir = self.repository(repository);
        let stem = dataset_stem(dataset_name);
        DatasetFiles {
            journal: dir.join(format!("{stem}.journal")),
            lock: dir.join(format!("{stem}.lock")),
            pending: dir.join(format!("{stem}.creating")),
        }
    }

    /// Every journal file of `repository` (none if the directory is absent). Blocking.
    ///
    /// # Errors
    ///
    /// [`Error::LocalState`] when the directory exists but cannot be listed.
    pub(crate) fn journals(&self, repository: RepositoryId) -> Result<Vec<PathBuf>> {
        let dir = self.repository(repository);
        let listing_failed = |source| Error::LocalState {
            path: dir.clone(),
            action: "list the resume journals",
            source,
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(listing_failed(source)),
        };
        let mut journals = Vec::new();
        for entry in entries {
            let path = entry.map_err(listing_failed)?.path();
            if path
                .extension()
                .is_some_and(|extension| extension == "journal")
            {
                journals.push(path);
            }
        }
        journals.sort();
        Ok(journals)
    }
}

/// Where one dataset's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DatasetFiles {
    /// The backup in progress ([`journal`]).
    pub(crate) journal: PathBuf,
    /// The flock that keeps two runs apart ([`lock`]).
    pub(crate) lock: PathBuf,
    /// The name of a snapshot being created, until the journal names it: a run killed
    /// in between leaves the record, and the next run removes the snapshot it names
    /// (when zib created it and no backup holds it). UTF-8, the snapshot's short name.
    pub(crate) pending: PathBuf,
}

impl DatasetFiles {
    /// The files that belong to the journal at `journal` (clean-up finds journals by
    /// listing, then needs their lock).
    pub(crate) fn of_journal(journal: &Path) -> Self {
        Self {
            journal: journal.to_owned(),
            lock: journal.with_extension("lock"),
            pending: journal.with_extension("creating"),
        }
    }
}

/// The file-name stem for a dataset: its name in hex, or `h-` and the SHA-256 of a
/// name too long for that.
fn dataset_stem(dataset_name: &str) -> String {
    if dataset_name.len() <= MAX_HEX_NAME {
        hex::encode(dataset_name)
    } else {
        format!(
            "h-{}",
            hex::encode(digest(&SHA256, dataset_name.as_bytes()))
        )
    }
}

/// Runs a blocking file operation on tokio's blocking pool; `path` and `action` name it
/// if the pool itself fails.
pub(crate) async fn off_the_runtime<T: Send + 'static>(
    path: &Path,
    action: &'static str,
    operation: impl FnOnce(&Path) -> Result<T> + Send + 'static,
) -> Result<T> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || operation(&owned))
        .await
        .map_err(|error| Error::LocalState {
            path: path.to_owned(),
            action,
            source: std::io::Error::other(error.to_string()),
        })?
}

/// Records durably that the snapshot `name` is about to be created.
///
/// # Errors
///
/// [`Error::LocalState`] when the state directory cannot be written.
pub(crate) async fn record_pending_snapshot(path: &Path, name: &str) -> Result<()> {
    let bytes = name.as_bytes().to_vec();
    off_the_runtime(path, "record the snapshot being created", move |path| {
        write_durably(path, &bytes, "record the snapshot being created")
    })
    .await
}

/// The snapshot name a pending record holds, if there is one.
///
/// # Errors
///
/// [`Error::LocalState`] when the file exists but cannot be read.
pub(crate) async fn read_pending_snapshot(path: &Path) -> Result<Option<String>> {
    let action = "read the record of the snapshot being created";
    off_the_runtime(path, action, move |path| {
        Ok(read_if_exists(path, action)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    })
    .await
}

/// Deletes a pending record (the journal names the snapshot now, or it was dealt with).
///
/// # Errors
///
/// [`Error::LocalState`] when the file cannot be deleted.
pub(crate) async fn clear_pending_snapshot(path: &Path) -> Result<()> {
    let action = "delete the record of the snapshot being created";
    off_the_runtime(path, action, move |path| remove_durably(path, action)).await
}

/// The file's bytes, `None` when it does not exist. Blocking.
pub(crate) fn read_if_exists(path: &Path, action: &'static str) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::LocalState {
            path: path.to_owned(),
            action,
            source,
        }),
    }
}

/// Replaces `path` with `bytes` durably: when this returns, a crash at any later instant
/// finds these bytes (or a later write's). Blocking.
pub(crate) fn write_durably(path: &Path, bytes: &[u8], action: &'static str) -> Result<()> {
    let failed = |source| Error::LocalState {
        path: path.to_owned(),
        action,
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| Error::LocalState {
        path: dir.to_owned(),
        action: "create the state directory",
        source,
    })?;
    let extension = path.extension().map_or_else(String::new, |extension| {
        extension.to_string_lossy().into_owned()
    });
    let temporary = path.with_extension(format!("{extension}.tmp"));
    let mut file = std::fs::File::create(&temporary).map_err(failed)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(failed)?;
    sync_dir(dir).map_err(failed)
}

/// Deletes `path` durably (a missing file is fine). Blocking.
pub(crate) fn remove_durably(path: &Path, action: &'static str) -> Result<()> {
    let failed = |source| Error::LocalState {
        path: path.to_owned(),
        action,
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(failed(source)),
    }
    sync_dir(path.parent().unwrap_or_else(|| Path::new("."))).map_err(failed)
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Moves a journal aside (`….journal.<why>-<unix seconds>`, `why` being `unreadable` or
/// `abandoned`) so the next run starts afresh while the file stays for inspection (it is
/// no longer a journal: clean-up ages its uploads like any other leftover); returns
/// where it went. Blocking.
pub(crate) fn set_aside(path: &Path, why: &str, unix_seconds: i64) -> Result<PathBuf> {
    let aside = path.with_extension(format!("journal.{why}-{unix_seconds}"));
    std::fs::rename(path, &aside).map_err(|source| Error::LocalState {
        path: path.to_owned(),
        action: "move a resume journal aside",
        source,
    })?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ids::ID_LEN;

    #[test]
    fn dataset_names_become_safe_distinct_file_names() {
        let repository = RepositoryId::from_bytes([1; ID_LEN]);
        let state = StateDir::new("/state");
        let a = state.dataset(repository, "tank/a");
        let b = state.dataset(repository, "tank/b");
        assert_ne!(a.journal, b.journal);
        let name = a.journal.file_name().unwrap().to_str().unwrap();
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'),
            "{name}"
        );
        let long = "x/".repeat(200);
        let long_files = state.dataset(repository, &long);
        assert!(long_files.journal.file_name().unwrap().len() < 100);
        assert_eq!(DatasetFiles::of_journal(&a.journal), a);
        let weird = state.dataset(repository, "../../etc/passwd");
        assert_eq!(weird.journal.parent(), a.journal.parent());
        assert_eq!(
            a.journal.parent().unwrap(),
            Path::new("/state").join(repository.to_string())
        );
    }

    #[test]
    fn state_files_stay_inside_the_state_directory() {
        // `Path::starts_with` compares components without resolving `..`, so the check
        // is on the exact paths: plain file names (the dataset name in hex) directly
        // inside the repository's directory, whatever the name holds.
        let repository = RepositoryId::from_bytes([3; ID_LEN]);
        let directory = Path::new("/var/lib/zib/03030303030303030303030303030303");
        for (name, stem) in [
            ("../x", "2e2e2f78"),
            ("../../etc/passwd", "2e2e2f2e2e2f6574632f706173737764"),
            ("/abs", "2f616273"),
            ("tank/photos", "74616e6b2f70686f746f73"),
        ] {
            let files = StateDir::new("/var/lib/zib").dataset(repository, name);
            for (path, extension) in [
                (&files.journal, "journal"),
                (&files.lock, "lock"),
                (&files.pending, "creating"),
            ] {
                assert_eq!(
                    *path,
                    directory.join(format!("{stem}.{extension}")),
                    "{name:?}"
                );
                assert_eq!(path.parent(), Some(directory), "{name:?}: {path:?}");
                assert!(
                    path.components().all(|c| matches!(
                        c,
                        std::path::Component::RootDir | std::path::Component::Normal(_)
                    )),
                    "{name:?}: {path:?}"
                );
            }
        }
    }

    #[test]
    fn a_durable_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo").join("x.journal");
        assert_eq!(read_if_exists(&path, "read").unwrap(), None);
        write_durably(&path, b"first", "write").unwrap();
        write_durably(&path, b"2", "write").unwrap();
        assert_eq!(read_if_exists(&path, "read").unwrap().unwrap(), b"2");
        assert!(!path.with_extension("journal.tmp").exists());
        remove_durably(&path, "remove").unwrap();
        remove_durably(&path, "remove").unwrap();
        assert_eq!(read_if_exists(&path, "read").unwrap(), None);
    }
}
