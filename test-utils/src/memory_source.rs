//! [`MemorySource`]: a [`SnapshotSource`] with ZFS's behaviour and no ZFS, so the backup,
//! resume and prune logic run in plain `cargo test`, without root.
//!
//! A dataset is a directory (its "mount point", in a temporary directory the source
//! owns): a test writes files there, as on a mounted ZFS dataset. A snapshot captures the
//! directory's tree — directories, files, symlinks, with their modes — into memory, with
//! a guid (its identity), a creation txg and time, and the `zib:created` marker. A send
//! stream is the snapshot's tree (full) or its difference from the base (incremental) in
//! a small self-checking format of this module's own; a receive writes it into the
//! target's directory and records the snapshot with the stream's guid, so identities
//! survive the trip as they do on ZFS.
//!
//! It keeps [`SnapshotSource`]'s whole contract — and passes its conformance suite — in
//! the ZFS dialect: holds always, bookmarks when asked ([`MemorySource::with_bookmarks`]),
//! size estimates (exact), no extra send flags, ZFS name rules, a receive that leaves
//! nothing on failure and refuses an incremental onto a target modified since its newest
//! snapshot. Scripted failures ([`Script`]) make it misbehave the way real sends and
//! receives do: a send that dies midway, a snapshot that vanishes, a stream that differs
//! from the last one, a receive that fails.

// Test support: a poisoned lock or a failed temporary directory is a broken test machine.
#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use time::OffsetDateTime;
use zib_snapshot_source::{
    Capabilities, DatasetName, Error, Protection, ReceiveStream, Result, SendBase, SendFlags,
    SendRequest, SendStream, SnapshotIdentity, SnapshotInfo, SnapshotName, SnapshotSource,
    SourceKind,
};
use zib_storage_backend::{Clock, SystemClock};

/// The hold tag [`MemorySource::protect`](SnapshotSource::protect) uses, as ZFS's
/// default.
pub const HOLD_TAG: &str = "zib";

const MAGIC: &[u8; 8] = b"ZIBMEMS1";
const DIR: u8 = 1;
const FILE: u8 = 2;
const SYMLINK: u8 = 3;
const DELETE: u8 = 4;
const END: u8 = 0;
/// Chunk size of send streams, as a pipe would deliver them.
const DEFAULT_CHUNK: usize = 64 * 1024;

/// A failure to inject into the next matching operation (each script fires once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// The next send produces `after_bytes` bytes, then fails like a `zfs send` killed
    /// midway (its last item is [`Error::CommandFailed`]).
    SendFails {
        /// Bytes produced before the failure.
        after_bytes: u64,
    },
    /// The next send's stream differs from what the snapshot holds at byte `at` (one bit
    /// flipped), like a send that is not deterministic.
    SendDiffers {
        /// Offset of the changed byte.
        at: u64,
    },
    /// The snapshot the next send asks for is destroyed just before the send starts.
    SnapshotVanishesOnSend,
    /// The next receive fails after reading its whole stream (a full pool, say), and
    /// leaves nothing behind.
    ReceiveFails,
}

/// An in-memory, ZFS-like snapshot source (see the [module docs](self)). Clones share
/// the same datasets.
#[derive(Clone)]
pub struct MemorySource {
    state: Arc<Mutex<State>>,
    bookmarks: bool,
    tool_missing: bool,
    chunk: usize,
    clock: Arc<dyn Clock>,
    /// Raised by [`MemorySource::kill_sends`]; a send stream started before dies.
    kills: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource")
            .field("bookmarks", &self.bookmarks)
            .finish_non_exhaustive()
    }
}

struct State {
    root: tempfile::TempDir,
    datasets: BTreeMap<String, Dataset>,
    next_guid: u64,
    next_txg: u64,
    next_dir: u64,
    scripts: VecDeque<Script>,
    sends: u64,
    /// Calls per method of [`SnapshotSource`].
    calls: BTreeMap<&'static str, u64>,
}

struct Dataset {
    dir: PathBuf,
    snapshots: Vec<Snapshot>,
    bookmarks: Vec<Snapshot>,
    holds: BTreeSet<(String, String)>,
}

#[derive(Clone)]
struct Snapshot {
    name: SnapshotName,
    guid: u64,
    txg: u64,
    created_at: OffsetDateTime,
    marker: Option<String>,
    tree: Tree,
}

impl Snapshot {
    fn info(&self) -> SnapshotInfo {
        SnapshotInfo::new(
            self.name.clone(),
            SnapshotIdentity::ZfsGuid(self.guid),
            self.txg,
            self.created_at,
            self.marker.clone(),
        )
    }
}

/// A directory tree: relative path (bytes) → entry.
type Tree = BTreeMap<Vec<u8>, Entry>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Bytes },
    Symlink { target: Vec<u8> },
}

impl Default for MemorySource {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySource {
    /// A source with no datasets, holds for protection, no bookmarks, on the system
    /// clock.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                root: tempfile::tempdir().expect("a temporary directory for MemorySource"),
                datasets: BTreeMap::new(),
                next_guid: 0x5eed_0000_0000_0001,
                next_txg: 1,
                next_dir: 0,
                scripts: VecDeque::new(),
                sends: 0,
                calls: BTreeMap::new(),
            })),
            bookmarks: false,
            tool_missing: false,
            chunk: DEFAULT_CHUNK,
            clock: Arc::new(SystemClock),
            kills: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same source with bookmarks (OpenZFS's): protection is a bookmark, which stays
    /// a valid incremental base after its snapshot is destroyed.
    #[must_use]
    pub fn with_bookmarks(mut self) -> Self {
        self.bookmarks = true;
        self
    }

    /// The same source, with snapshot creation times from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same source, with send streams delivered in chunks of `bytes`.
    #[must_use]
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk = bytes.max(1);
        self
    }

    /// The same datasets, but every operation fails as if the file system's tool were
    /// not installed (for the conformance suite's missing-tool check).
    #[must_use]
    pub fn without_tool(&self) -> Self {
        let mut broken = self.clone();
        broken.tool_missing = true;
        broken
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates an empty dataset (its parents need not exist) and returns its directory.
    ///
    /// # Panics
    ///
    /// When the dataset exists or its directory cannot be created.
    pub fn create_dataset(&self, dataset: &DatasetName) -> PathBuf {
        let mut state = self.state();
        assert!(
            !state.datasets.contains_key(dataset.as_str()),
            "dataset {dataset} exists"
        );
        let dir = state.new_dir();
        std::fs::create_dir_all(&dir).expect("create the dataset's directory");
        state.datasets.insert(
            dataset.as_str().to_owned(),
            Dataset {
                dir: dir.clone(),
                snapshots: Vec::new(),
                bookmarks: Vec::new(),
                holds: BTreeSet::new(),
            },
        );
        dir
    }

    /// The directory holding `dataset`'s live files, if it exists.
    pub fn mountpoint(&self, dataset: &DatasetName) -> Option<PathBuf> {
        self.state()
            .datasets
            .get(dataset.as_str())
            .map(|dataset| dataset.dir.clone())
    }

    /// Writes a file (creating its directories) into `dataset`'s live files.
    ///
    /// # Panics
    ///
    /// When the dataset does not exist or the file cannot be written.
    pub fn write_file(&self, dataset: &DatasetName, path: &str, data: &[u8]) {
        let dir = self.mountpoint(dataset).expect("the dataset exists");
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create directories");
        }
        std::fs::write(path, data).expect("write the file");
    }

    /// Deletes a file from `dataset`'s live files.
    ///
    /// # Panics
    ///
    /// When the dataset or the file does not exist.
    pub fn remove_file(&self, dataset: &DatasetName, path: &str) {
        let dir = self.mountpoint(dataset).expect("the dataset exists");
        std::fs::remove_file(dir.join(path)).expect("remove the file");
    }

    /// A file of `dataset`'s live files, `None` when it (or the dataset) does not exist.
    pub fn read_file(&self, dataset: &DatasetName, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.mountpoint(dataset)?.join(path)).ok()
    }

    /// Renames a dataset (its snapshots keep their identities, as on ZFS).
    ///
    /// # Panics
    ///
    /// When `from` does not exist or `to` does.
    pub fn rename_dataset(&self, from: &DatasetName, to: &DatasetName) {
        let mut state = self.state();
        assert!(!state.datasets.contains_key(to.as_str()), "{to} exists");
        let dataset = state
            .datasets
            .remove(from.as_str())
            .expect("the dataset to rename exists");
        state.datasets.insert(to.as_str().to_owned(), dataset);
    }

    /// Every dataset name, and every `dataset@snapshot` and `dataset#bookmark`, that
    /// starts with `prefix`.
    pub fn everything_under(&self, prefix: &str) -> Vec<String> {
        let state = self.state();
        let mut out = Vec::new();
        for (name, dataset) in &state.datasets {
            if !(name == prefix || name.starts_with(&format!("{prefix}/"))) {
                continue;
            }
            out.push(name.clone());
            out.extend(
                dataset
                    .snapshots
                    .iter()
                    .map(|snapshot| format!("{name}@{}", snapshot.name)),
            );
            out.extend(
                dataset
                    .bookmarks
                    .iter()
                    .map(|bookmark| format!("{name}#{}", bookmark.name)),
            );
        }
        out
    }

    /// Queues a failure for the next matching operation.
    pub fn script(&self, script: Script) {
        self.state().scripts.push_back(script);
    }

    /// Send streams started so far (estimates are not counted).
    pub fn sends_started(&self) -> u64 {
        self.state().sends
    }

    /// How often the [`SnapshotSource`] method `method` (`"capabilities"`,
    /// `"list_snapshots"`, `"estimate_send_size"`, ...) was called.
    pub fn calls(&self, method: &str) -> u64 {
        self.state().calls.get(method).copied().unwrap_or(0)
    }

    fn count(&self, method: &'static str) {
        *self.state().calls.entry(method).or_default() += 1;
    }

    /// Makes every send stream started so far fail at its next chunk, as a `kill -9` of
    /// `zfs send` would.
    pub fn kill_sends(&self) {
        self.kills.fetch_add(1, Ordering::SeqCst);
    }

    fn now(&self) -> OffsetDateTime {
        let since_epoch = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        OffsetDateTime::from_unix_timestamp(i64::try_from(since_epoch.as_secs()).unwrap_or(0))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn check_tool(&self) -> Result<()> {
        if self.tool_missing {
            return Err(Error::CommandNotInstalled {
                program: "/nonexistent/memory-source".to_owned(),
                package: "zib-test-utils",
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        Ok(())
    }

    fn check_dataset_name(dataset: &DatasetName) -> Result<()> {
        if dataset.is_zfs() {
            Ok(())
        } else {
            Err(Error::InvalidName {
                name: dataset.to_string(),
                reason: "a ZFS-like source needs a ZFS dataset name (DatasetName::zfs), not a path"
                    .to_owned(),
            })
        }
    }

    fn take_script(&self, matches: impl Fn(&Script) -> bool) -> Option<Script> {
        let mut state = self.state();
        let position = state.scripts.iter().position(matches)?;
        state.scripts.remove(position)
    }

    /// The encoded stream `request` asks for, checked as `zfs send` checks it.
    fn stream_bytes(&self, request: &SendRequest) -> Result<Vec<u8>> {
        self.check_tool()?;
        Self::check_dataset_name(&request.dataset)?;
        request.snapshot.check_zfs()?;
        let missing_flags = request.flags.unsupported_by(&SendFlags::NONE);
        if !missing_flags.is_empty() {
            return Err(Error::Unsupported {
                what: format!("send flags {missing_flags} (the memory source sends none)"),
            });
        }
        let state = self.state();
        let dataset = state.dataset(&request.dataset)?;
        let snapshot = dataset.snapshot(&request.dataset, &request.snapshot)?;
        let base = match &request.base {
            None => None,
            Some(SendBase::Snapshot(name)) => {
                let base = dataset.snapshot(&request.dataset, name)?;
                if base.txg >= snapshot.txg {
                    return Err(Error::BaseNotEarlier {
                        dataset: request.dataset.to_string(),
                        base: name.to_string(),
                        snapshot: request.snapshot.to_string(),
                    });
                }
                Some(base)
            }
            Some(SendBase::Bookmark(name)) => {
                if !self.bookmarks {
                    return Err(Error::Unsupported {
                        what: "incremental sends from a bookmark (this source has none)".into(),
                    });
                }
                let base = dataset
                    .bookmarks
                    .iter()
                    .find(|bookmark| &bookmark.name == name)
                    .ok_or_else(|| Error::SnapshotNotFound {
                        dataset: request.dataset.to_string(),
                        snapshot: format!("#{name}"),
                    })?;
                Some(base)
            }
        };
        Ok(encode_stream(snapshot, base))
    }
}

impl State {
    fn new_dir(&mut self) -> PathBuf {
        self.next_dir += 1;
        self.root.path().join(format!("dataset-{}", self.next_dir))
    }

    fn dataset(&self, name: &DatasetName) -> Result<&Dataset> {
        self.datasets
            .get(name.as_str())
            .ok_or_else(|| Error::DatasetNotFound {
                dataset: name.to_string(),
            })
    }

    fn dataset_mut(&mut self, name: &DatasetName) -> Result<&mut Dataset> {
        self.datasets
            .get_mut(name.as_str())
            .ok_or_else(|| Error::DatasetNotFound {
                dataset: name.to_string(),
            })
    }
}

impl Dataset {
    fn snapshot(&self, dataset: &DatasetName, name: &SnapshotName) -> Result<&Snapshot> {
        self.snapshots
            .iter()
            .find(|snapshot| &snapshot.name == name)
            .ok_or_else(|| Error::SnapshotNotFound {
                dataset: dataset.to_string(),
                snapshot: name.to_string(),
            })
    }
}

#[async_trait]
impl SnapshotSource for MemorySource {
    fn kind(&self) -> SourceKind {
        SourceKind::Zfs
    }

    async fn capabilities(&self, dataset: &DatasetName) -> Result<Capabilities> {
        self.count("capabilities");
        self.check_tool()?;
        Self::check_dataset_name(dataset)?;
        self.state().dataset(dataset)?;
        Ok(Capabilities::new(
            "zib-test-utils memory source".to_owned(),
            true,
            self.bookmarks,
            true,
            true,
            SendFlags::NONE,
        ))
    }

    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        self.count("list_snapshots");
        self.check_tool()?;
        Self::check_dataset_name(dataset)?;
        let state = self.state();
        Ok(state
            .dataset(dataset)?
            .snapshots
            .iter()
            .map(Snapshot::info)
            .collect())
    }

    async fn list_bookmarks(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        self.count("list_bookmarks");
        self.check_tool()?;
        Self::check_dataset_name(dataset)?;
        let state = self.state();
        Ok(state
            .dataset(dataset)?
            .bookmarks
            .iter()
            .map(|bookmark| {
                let mut info = bookmark.info();
                info.zib_created = None;
                info
            })
            .collect())
    }

    async fn create_snapshot(
        &self,
        dataset: &DatasetName,
        snapshot: &SnapshotName,
        marker: Option<&str>,
    ) -> Result<SnapshotInfo> {
        self.count("create_snapshot");
        self.check_tool()?;
        Self::check_dataset_name(dataset)?;
        snapshot.check_zfs()?;
        let created_at = self.now();
        let mut state = self.state();
        let dir = state.dataset(dataset)?.dir.clone();
        if state
            .dataset(dataset)?
            .snapshots
            .iter()
            .any(|existing| &existing.name == snapshot)
        {
            return Err(Error::SnapshotExists {
                dataset: dataset.to_string(),
                snapshot: snapshot.to_string(),
            });
        }
        let tree = read_tree(&dir).map_err(|source| Error::Io {
            command: format!("capture {}", dir.display()),
            source,
        })?;
        let guid = state.next_guid;
        state.next_guid += 0x9e37_79b9;
        let txg = state.next_txg;
        state.next_txg += 1;
        let created = Snapshot {
            name: snapshot.clone(),
            guid,
            txg,
            created_at,
            marker: marker.map(str::to_owned),
            tree,
        };
        let info = created.info();
        state.dataset_mut(dataset)?.snapshots.push(created);
        Ok(info)
    }

    async fn destroy_snapshot(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<()> {
        self.count("destroy_snapshot");
        self.check_tool()?;
        Self::check_dataset_name(dataset)?;
        snapshot.check_zfs()?;
        let mut state = self.state();
        let entry = state.dataset_mut(dataset)?;
        let position = entry
            .snapshots
            .iter()
            .position(|existing| &existing.name == snapshot)
            .ok_or_else(|| Error::SnapshotNotFound {
                dataset: dataset.to_string(),
                snapshot: snapshot.to_string(),
            })?;
        if entry
            .holds
            .iter()
            .any(|(held, _)| held == snapshot.as_str())
        {
            return Err(Error::CommandFailed {
                command: format!("destroy {dataset}@{snapshot}"),
                status: "exit status: 1".to_owned(),
                stderr: format!("cannot destroy snapshot {dataset}@{snapshot}: dataset is busy"),
            });
        }
        entry.snapshots.remove(position);
        Ok(())
    }

    async fn estimate_send_size(&self, request: &SendRequest) -> Result<Option<u64>> {
        self.count("estimate_send_size");
        Ok(Some(self.stream_bytes(request)?.len() as u64))
    }

    async fn send(&self, request: &SendRequest) -> Result<SendStream> {
        self.count("send");
        if self
            .take_script(|script| *script == Script::SnapshotVanishesOnSend)
            .is_some()
        {
            let mut state = self.state();
            if let Ok(dataset) = state.dataset_mut(&request.dataset) {
                dataset
                    .snapshots
                    .retain(|snapshot| snapshot.name != request.snapshot);
            }
        }
        let mut bytes = self.stream_bytes(request)?;
        if let Some(Script::SendDiffers { at }) =
            self.take_script(|script| matches!(script, Script::SendDiffers { .. }))
        {
            if let Some(byte) = usize::try_from(at).ok().and_then(|at| bytes.get_mut(at)) {
                *byte ^= 0x01;
            }
        }
        let fail_after = match self.take_script(|script| matches!(script, Script::SendFails { .. }))
        {
            Some(Script::SendFails { after_bytes }) => Some(after_bytes),
            _ => None,
        };
        self.state().sends += 1;
        let command = format!("memory send {}@{}", request.dataset, request.snapshot);
        let kills = self.kills.clone();
        let started_at_kill = kills.load(Ordering::SeqCst);
        let bytes = Bytes::from(bytes);
        let chunk = self.chunk;
        let stream = futures::stream::unfold((0usize, false), move |(offset, done)| {
            let bytes = bytes.clone();
            let kills = kills.clone();
            let command = command.clone();
            async move {
                if done {
                    return None;
                }
                let failed = |status: &str| Error::CommandFailed {
                    command: command.clone(),
                    status: status.to_owned(),
                    stderr: String::new(),
                };
                if kills.load(Ordering::SeqCst) != started_at_kill {
                    return Some((Err(failed("signal: 9 (SIGKILL)")), (offset, true)));
                }
                let limit = fail_after.map_or(bytes.len(), |after| {
                    usize::try_from(after)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len())
                });
                if offset >= limit {
                    if fail_after.is_some() {
                        return Some((Err(failed("exit status: 1")), (offset, true)));
                    }
                    return None;
                }
                let end = (offset + chunk).min(limit);
                // Let other tasks run between chunks, as a pipe read would.
                tokio::task::yield_now().await;
                Some((Ok(bytes.slice(offset..end)), (end, false)))
            }
        });
        Ok(SendStream::from_stream(stream))
    }

    async fn receive(
        &self,
        target: &DatasetName,
        mut stream: ReceiveStream,
    ) -> Result<SnapshotInfo> {
        self.count("receive");
        self.check_tool()?;
        Self::check_dataset_name(target)?;
        let mut received = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => received.extend_from_slice(&chunk),
                Err(source) => return Err(Error::InputFailed { source }),
            }
        }
        let decoded = decode_stream(received.freeze())?;
        let created_at = self.now();
        let fails = self
            .take_script(|script| *script == Script::ReceiveFails)
            .is_some();
        let mut state = self.state();
        let existing = state.datasets.get(target.as_str());
        let (dir, base_tree) = match (decoded.from_guid, existing) {
            (None, Some(_)) => {
                return Err(Error::TargetExists {
                    target: target.to_string(),
                })
            }
            (None, None) => (None, Tree::new()),
            (Some(from), existing) => {
                let base = existing.and_then(|dataset| {
                    dataset
                        .snapshots
                        .iter()
                        .find(|snapshot| snapshot.guid == from)
                });
                let (Some(dataset), Some(base)) = (existing, base) else {
                    return Err(Error::BaseMissing {
                        target: target.to_string(),
                        base: format!("with guid {from}"),
                    });
                };
                let newest = dataset.snapshots.last().map(|snapshot| snapshot.guid);
                let live = read_tree(&dataset.dir).map_err(|source| Error::Io {
                    command: format!("read {}", dataset.dir.display()),
                    source,
                })?;
                if newest != Some(from) || live != base.tree {
                    return Err(Error::CommandFailed {
                        command: format!("receive {target}"),
                        status: "exit status: 1".to_owned(),
                        stderr: format!(
                            "cannot receive incremental stream: destination {target} has been \
                             modified since most recent snapshot"
                        ),
                    });
                }
                (Some(dataset.dir.clone()), base.tree.clone())
            }
        };
        if fails {
            return Err(Error::CommandFailed {
                command: format!("receive {target}"),
                status: "exit status: 1".to_owned(),
                stderr: "cannot receive: out of space (scripted)".to_owned(),
            });
        }
        let mut tree = base_tree.clone();
        for path in &decoded.deleted {
            tree.retain(|existing, _| {
                existing != path && !existing.starts_with(&child_prefix(path))
            });
        }
        for (path, entry) in decoded.entries {
            tree.insert(path, entry);
        }
        let dir = match dir {
            Some(dir) => dir,
            None => state.new_dir(),
        };
        if let Err(source) = write_tree(&dir, &tree) {
            // Leave nothing: a full receive's dataset goes, an incremental's files go
            // back to its base.
            if decoded.from_guid.is_none() {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                let _ = write_tree(&dir, &base_tree);
            }
            return Err(Error::Io {
                command: format!("receive {target}"),
                source,
            });
        }
        let txg = state.next_txg;
        state.next_txg += 1;
        let snapshot = Snapshot {
            name: decoded.name,
            guid: decoded.guid,
            txg,
            created_at,
            marker: None,
            tree,
        };
        let info = snapshot.info();
        state
            .datasets
            .entry(target.as_str().to_owned())
            .or_insert_with(|| Dataset {
                dir,
                snapshots: Vec::new(),
                bookmarks: Vec::new(),
                holds: BTreeSet::new(),
            })
            .snapshots
            .push(snapshot);
        Ok(info)
    }

    async fn protect(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<Protection> {
        self.count("protect");
        self.check_tool()?;
        Self::check_dataset_name(dataset)?;
        let mut state = self.state();
        let entry = state.dataset_mut(dataset)?;
        let protected = entry.snapshot(dataset, snapshot)?.clone();
        if self.bookmarks {
            entry
                .bookmarks
                .retain(|bookmark| bookmark.name != *snapshot);
            entry.bookmarks.push(protected.clone());
            entry.bookmarks.sort_by_key(|bookmark| bookmark.txg);
            return Ok(Protection::Bookmark {
                dataset: dataset.clone(),
                bookmark: snapshot.clone(),
                guid: protected.guid,
            });
        }
        if !entry
            .holds
            .insert((snapshot.as_str().to_owned(), HOLD_TAG.to_owned()))
        {
            return Err(Error::CommandFailed {
                command: format!("hold {HOLD_TAG} {dataset}@{snapshot}"),
                status: "exit status: 1".to_owned(),
                stderr: "tag already exists on this dataset".to_owned(),
            });
        }
        Ok(Protection::Hold {
            dataset: dataset.clone(),
            snapshot: snapshot.clone(),
            tag: HOLD_TAG.to_owned(),
        })
    }

    async fn release(&self, protection: &Protection) -> Result<()> {
        self.count("release");
        self.check_tool()?;
        let mut state = self.state();
        match protection {
            Protection::Hold {
                dataset,
                snapshot,
                tag,
            } => {
                let entry = state.dataset_mut(dataset)?;
                if !entry
                    .holds
                    .remove(&(snapshot.as_str().to_owned(), tag.clone()))
                {
                    return Err(Error::CommandFailed {
                        command: format!("release {tag} {dataset}@{snapshot}"),
                        status: "exit status: 1".to_owned(),
                        stderr: "no such tag on this dataset".to_owned(),
                    });
                }
                Ok(())
            }
            Protection::Bookmark {
                dataset, bookmark, ..
            } => {
                let entry = state.dataset_mut(dataset)?;
                let before = entry.bookmarks.len();
                entry
                    .bookmarks
                    .retain(|existing| existing.name != *bookmark);
                if entry.bookmarks.len() == before {
                    return Err(Error::SnapshotNotFound {
                        dataset: dataset.to_string(),
                        snapshot: format!("#{bookmark}"),
                    });
                }
                Ok(())
            }
            other => Err(Error::Unsupported {
                what: format!("protection {other:?}"),
            }),
        }
    }
}

/// `path` followed by `/`: the prefix of every path below it.
fn child_prefix(path: &[u8]) -> Vec<u8> {
    let mut prefix = path.to_vec();
    prefix.push(b'/');
    prefix
}

/// Reads the tree under `dir` (which must exist).
fn read_tree(dir: &Path) -> io::Result<Tree> {
    let mut tree = Tree::new();
    read_dir_into(dir, dir, &mut tree)?;
    Ok(tree)
}

fn read_dir_into(root: &Path, dir: &Path, tree: &mut Tree) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let relative = path
            .strip_prefix(root)
            .map_err(io::Error::other)?
            .as_os_str()
            .as_bytes()
            .to_vec();
        let metadata = std::fs::symlink_metadata(&path)?;
        let mode = metadata.permissions().mode() & 0o7777;
        if metadata.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?.into_os_string().into_vec();
            tree.insert(relative, Entry::Symlink { target });
        } else if metadata.is_dir() {
            tree.insert(relative, Entry::Dir { mode });
            read_dir_into(root, &path, tree)?;
        } else {
            let data = Bytes::from(std::fs::read(&path)?);
            tree.insert(relative, Entry::File { mode, data });
        }
    }
    Ok(())
}

/// Makes the directory `dir` hold exactly `tree` (created when missing).
fn write_tree(dir: &Path, tree: &Tree) -> io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let path_of = |relative: &[u8]| dir.join(std::ffi::OsStr::from_bytes(relative));
    // Parents sort before their children; directory modes are set last so a read-only
    // directory does not stop its files from being written.
    for (relative, entry) in tree {
        let path = path_of(relative);
        match entry {
            Entry::Dir { .. } => std::fs::create_dir_all(&path)?,
            Entry::File { mode, data } => {
                std::fs::write(&path, data)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
            }
            Entry::Symlink { target } => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path)?;
            }
        }
    }
    for (relative, entry) in tree.iter().rev() {
        if let Entry::Dir { mode } = entry {
            std::fs::set_permissions(path_of(relative), std::fs::Permissions::from_mode(*mode))?;
        }
    }
    Ok(())
}

/// The stream of `snapshot`: its whole tree, or what changed since `base`.
fn encode_stream(snapshot: &Snapshot, base: Option<&Snapshot>) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_slice(MAGIC);
    out.put_u64_le(snapshot.guid);
    out.put_u64_le(base.map_or(0, |base| base.guid));
    put_bytes(&mut out, snapshot.name.as_str().as_bytes());
    let mut records = 0u64;
    let empty = Tree::new();
    let base_tree = base.map_or(&empty, |base| &base.tree);
    for path in base_tree.keys() {
        if !snapshot.tree.contains_key(path) {
            out.put_u8(DELETE);
            put_bytes(&mut out, path);
            records += 1;
        }
    }
    for (path, entry) in &snapshot.tree {
        if base_tree.get(path) == Some(entry) {
            continue;
        }
        match entry {
            Entry::Dir { mode } => {
                out.put_u8(DIR);
                put_bytes(&mut out, path);
                out.put_u32_le(*mode);
            }
            Entry::File { mode, data } => {
                out.put_u8(FILE);
                put_bytes(&mut out, path);
                out.put_u32_le(*mode);
                out.put_u64_le(data.len() as u64);
                out.put_slice(data);
            }
            Entry::Symlink { target } => {
                out.put_u8(SYMLINK);
                put_bytes(&mut out, path);
                put_bytes(&mut out, target);
            }
        }
        records += 1;
    }
    out.put_u8(END);
    out.put_u64_le(records);
    let checksum = ring::digest::digest(&ring::digest::SHA256, &out);
    out.put_slice(checksum.as_ref());
    out.to_vec()
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32_le(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.put_slice(bytes);
}

struct Decoded {
    guid: u64,
    from_guid: Option<u64>,
    name: SnapshotName,
    deleted: Vec<Vec<u8>>,
    entries: Vec<(Vec<u8>, Entry)>,
}

fn decode_stream(bytes: Bytes) -> Result<Decoded> {
    let invalid = |detail: &str| Error::InvalidStream {
        detail: detail.to_owned(),
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(invalid(
            "it does not start with a memory-source stream header",
        ));
    }
    if bytes.len() < MAGIC.len() + 16 + 32 {
        return Err(invalid("it ends before its header does (truncated)"));
    }
    let (content, checksum) = bytes.split_at(bytes.len() - 32);
    let mut input = &bytes[MAGIC.len()..];
    let truncated = || invalid("it ends before its end record (truncated)");
    let take = |input: &mut &[u8], len: usize| -> Result<Vec<u8>> {
        if input.remaining() < len {
            return Err(truncated());
        }
        let out = input[..len].to_vec();
        input.advance(len);
        Ok(out)
    };
    let u32_of = |input: &mut &[u8]| -> Result<u32> {
        if input.remaining() < 4 {
            return Err(truncated());
        }
        Ok(input.get_u32_le())
    };
    let u64_of = |input: &mut &[u8]| -> Result<u64> {
        if input.remaining() < 8 {
            return Err(truncated());
        }
        Ok(input.get_u64_le())
    };
    let guid = u64_of(&mut input)?;
    let from = u64_of(&mut input)?;
    let name_len = u32_of(&mut input)? as usize;
    let name = String::from_utf8(take(&mut input, name_len)?)
        .map_err(|_| invalid("the snapshot name is not UTF-8"))?;
    let name = SnapshotName::zfs(&name).map_err(|_| invalid("the snapshot name is invalid"))?;
    let mut deleted = Vec::new();
    let mut entries = Vec::new();
    let mut records = 0u64;
    loop {
        if input.is_empty() {
            return Err(truncated());
        }
        let tag = input.get_u8();
        let path_of = |input: &mut &[u8]| -> Result<Vec<u8>> {
            let len = u32_of(input)? as usize;
            take(input, len)
        };
        match tag {
            END => break,
            DELETE => deleted.push(path_of(&mut input)?),
            DIR => {
                let path = path_of(&mut input)?;
                let mode = u32_of(&mut input)?;
                entries.push((path, Entry::Dir { mode }));
            }
            FILE => {
                let path = path_of(&mut input)?;
                let mode = u32_of(&mut input)?;
                let len = usize::try_from(u64_of(&mut input)?).map_err(|_| truncated())?;
                let data = Bytes::from(take(&mut input, len)?);
                entries.push((path, Entry::File { mode, data }));
            }
            SYMLINK => {
                let path = path_of(&mut input)?;
                let target = path_of(&mut input)?;
                entries.push((path, Entry::Symlink { target }));
            }
            _ => return Err(invalid("unknown record")),
        }
        records += 1;
    }
    if u64_of(&mut input)? != records || input.len() != 32 {
        return Err(invalid("its end record does not match its records"));
    }
    if ring::digest::digest(&ring::digest::SHA256, content).as_ref() != checksum {
        return Err(invalid(
            "its checksum does not match (altered or truncated)",
        ));
    }
    Ok(Decoded {
        guid,
        from_guid: (from != 0).then_some(from),
        name,
        deleted,
        entries,
    })
}
