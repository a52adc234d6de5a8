//! What the bucket already said about each manifest, kept in the state directory, so
//! that reading the catalog of a repository with thousands of backups costs its LIST
//! pages and not one HEAD per manifest (10,000 backups are 20 years of daily backups).
//!
//! The cache is never a source of truth, only a copy of HEAD answers:
//! - an entry is used only when the manifest's listing (size and last-modified time)
//!   is what it was when the entry was made — a manifest rewritten since is fetched
//!   again, and one no longer listed is dropped;
//! - an entry holds the manifest's metadata exactly as the bucket returned it, still
//!   sealed: every read opens and authenticates it with the data key, as a HEAD's
//!   answer would be, so an altered cache cannot add or change a backup. An entry that
//!   does not open is fetched again;
//! - a missing, unreadable or unwritable cache costs only speed: the catalog is read
//!   with HEADs and the cache rebuilt (a warning says why it could not be kept).
//!
//! File: `<state dir>/<repository id>/catalog.cache`, in the state files' envelope
//! (magic `ZIBCATC\n`, version 1), body in bincode: the entries by relative key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use zib_storage_backend::ListEntry;

use crate::context::Repo;
use crate::error::{Error, Result};
use crate::format::metadata::Metadata;
use crate::state::envelope::{self, Unreadable};
use crate::state::{off_the_runtime, read_if_exists, write_durably};

const CACHE_MAGIC: [u8; 8] = *b"ZIBCATC\n";
const CACHE_VERSION: u32 = 1;
const CACHE_FILE: &str = "catalog.cache";

/// One manifest's HEAD answer and the listing it was made under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    size: u64,
    modified_secs: u64,
    modified_nanos: u32,
    metadata: Metadata,
}

/// A listed object's size and time, as the cache compares them.
fn listed_as(entry: &ListEntry) -> Option<(u64, u64, u32)> {
    let since = entry.last_modified.duration_since(UNIX_EPOCH).ok()?;
    Some((entry.size, since.as_secs(), since.subsec_nanos()))
}

/// The manifests' cached HEAD answers of one repository.
#[derive(Debug)]
pub(crate) struct ManifestCache {
    path: PathBuf,
    /// The file's entries this read has not used (yet).
    entries: BTreeMap<String, Entry>,
    /// Entries used or added by this read: what the saved cache keeps.
    seen: BTreeMap<String, Entry>,
    /// Whether this read added a HEAD's answer.
    fetched: bool,
}

impl ManifestCache {
    /// The cache of `repository` on this host; empty when there is none or it cannot be
    /// read (a warning says why: the catalog is then read from the bucket alone).
    pub(crate) async fn load(repository: &Repo) -> Self {
        let path = repository
            .state()
            .repository(repository.id())
            .join(CACHE_FILE);
        let entries = match off_the_runtime(&path, "read the catalog cache", read_entries).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, "the catalog cache is not used; the catalog is read from the bucket");
                BTreeMap::new()
            }
        };
        Self {
            path,
            entries,
            seen: BTreeMap::new(),
            fetched: false,
        }
    }

    /// Takes the metadata cached for the manifest `key` (relative to the repository's
    /// prefix) when its listing still matches; hand it back with
    /// [`keep_cached`](Self::keep_cached) once it opened.
    pub(crate) fn take(&mut self, key: &str, listed: &ListEntry) -> Option<Metadata> {
        let (size, secs, nanos) = listed_as(listed)?;
        let entry = self.entries.get(key)?;
        if (entry.size, entry.modified_secs, entry.modified_nanos) != (size, secs, nanos) {
            return None;
        }
        self.entries.remove(key).map(|entry| entry.metadata)
    }

    /// Keeps a cached entry that opened: the file needs no rewrite for it.
    pub(crate) fn keep_cached(&mut self, key: String, listed: &ListEntry, metadata: Metadata) {
        self.insert(key, listed, metadata);
    }

    /// Keeps a HEAD's answer for the manifest `key`, listed as `listed`.
    pub(crate) fn keep_fetched(&mut self, key: String, listed: &ListEntry, metadata: Metadata) {
        self.fetched = true;
        self.insert(key, listed, metadata);
    }

    fn insert(&mut self, key: String, listed: &ListEntry, metadata: Metadata) {
        if let Some((size, modified_secs, modified_nanos)) = listed_as(listed) {
            let entry = Entry {
                size,
                modified_secs,
                modified_nanos,
                metadata,
            };
            self.seen.insert(key, entry);
        }
    }

    /// Saves what this read saw (manifests no longer listed are dropped), unless it is
    /// what the file holds already. A failure is a warning: the cache is only speed.
    pub(crate) async fn save(self) {
        // Unchanged when every entry of the file was used and nothing was fetched.
        if !self.fetched && self.entries.is_empty() {
            return;
        }
        let bytes = match bincode::serialize(&self.seen) {
            Ok(body) => envelope::seal(&CACHE_MAGIC, CACHE_VERSION, &body),
            Err(error) => {
                tracing::warn!(%error, "could not encode the catalog cache");
                return;
            }
        };
        let saved = off_the_runtime(&self.path, "write the catalog cache", move |path| {
            write_durably(path, &bytes, "write the catalog cache")
        })
        .await;
        if let Err(error) = saved {
            tracing::warn!(%error, "could not keep the catalog cache: the next run reads every manifest from the bucket again");
        }
    }
}

/// The entries in the cache file at `path` (none when it does not exist). Blocking.
fn read_entries(path: &Path) -> Result<BTreeMap<String, Entry>> {
    let Some(bytes) = read_if_exists(path, "read the catalog cache")? else {
        return Ok(BTreeMap::new());
    };
    let bad = |reason: String| Error::LocalState {
        path: path.to_owned(),
        action: "read the catalog cache",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
    };
    let body = envelope::open(&bytes, &CACHE_MAGIC, CACHE_VERSION)
        .map_err(|error: Unreadable| bad(format!("not a catalog cache this zib reads: {error}")))?;
    bincode::deserialize(body).map_err(|error| bad(format!("the body does not decode: {error}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const FILE_NAME: &str = CACHE_FILE;

    pub(crate) fn read(path: &Path) -> BTreeMap<String, Entry> {
        read_entries(path).unwrap()
    }

    pub(crate) fn write(path: &Path, entries: &BTreeMap<String, Entry>) {
        let body = bincode::serialize(entries).unwrap();
        std::fs::write(path, envelope::seal(&CACHE_MAGIC, CACHE_VERSION, &body)).unwrap();
    }

    /// Swaps two entries' metadata, each keeping its own listing.
    pub(crate) fn swap_metadata(entries: &mut BTreeMap<String, Entry>, a: &str, b: &str) {
        let from_a = entries[a].metadata.clone();
        let from_b = std::mem::replace(&mut entries.get_mut(b).unwrap().metadata, from_a);
        entries.get_mut(a).unwrap().metadata = from_b;
    }

    fn listed(size: u64, secs: u64) -> ListEntry {
        ListEntry {
            key: zib_storage_backend::ObjectKey::new("p/manifests/x").unwrap(),
            size,
            storage_class: zib_storage_backend::StorageClass::Standard,
            last_modified: UNIX_EPOCH + std::time::Duration::from_secs(secs),
        }
    }

    #[test]
    fn an_entry_is_used_only_while_its_listing_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let metadata: Metadata = [("zib-kind".to_owned(), "manifest".to_owned())].into();
        let mut cache = ManifestCache {
            path: dir.path().join(CACHE_FILE),
            entries: BTreeMap::new(),
            seen: BTreeMap::new(),
            fetched: false,
        };
        cache.keep_fetched("manifests/x".into(), &listed(10, 100), metadata.clone());
        let mut cache = ManifestCache {
            entries: std::mem::take(&mut cache.seen),
            ..cache
        };
        assert_eq!(cache.take("manifests/x", &listed(11, 100)), None, "resized");
        assert_eq!(
            cache.take("manifests/x", &listed(10, 101)),
            None,
            "rewritten"
        );
        assert_eq!(
            cache.take("manifests/y", &listed(10, 100)),
            None,
            "another key"
        );
        assert_eq!(cache.take("manifests/x", &listed(10, 100)), Some(metadata));
    }

    #[test]
    fn a_damaged_file_is_refused_whole_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CACHE_FILE);
        let entries: BTreeMap<String, Entry> = [(
            "manifests/x".to_owned(),
            Entry {
                size: 1,
                modified_secs: 2,
                modified_nanos: 3,
                metadata: Metadata::new(),
            },
        )]
        .into();
        let mut bytes = envelope::seal(
            &CACHE_MAGIC,
            CACHE_VERSION,
            &bincode::serialize(&entries).unwrap(),
        );
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_entries(&path).unwrap(), entries);
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let error = read_entries(&path).unwrap_err().to_string();
        assert!(error.contains(CACHE_FILE), "{error}");
        assert!(read_entries(&dir.path().join("none")).unwrap().is_empty());
    }
}
