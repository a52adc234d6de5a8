//! Snapshot sources: where zib's backups come from and where restores go back to.
//!
//! A [`SnapshotSource`] lists a dataset's snapshots with their stable identities, creates
//! and destroys snapshots, produces send streams (full or incremental) and receives them,
//! and protects the snapshot that the next incremental will be based on. Two real
//! implementations drive the file systems' own command-line tools with argument vectors
//! (never a shell):
//!
//! - [`zfs::ZfsSource`]: `zfs`/`zpool`, both OpenZFS 2.x and the older zfs-fuse dialect.
//!   What the installed tool can do (size estimates, bookmarks, `-L -c -e -w`) is probed,
//!   never assumed.
//! - [`btrfs::BtrfsSource`]: `btrfs`, a subvolume with read-only snapshots in a snapshot
//!   directory.
//!
//! Streams are plain bytes: a send is a [`SendStream`] whose end reports the sending
//! command's exit status, and a receive takes any [`ReceiveStream`]. A receive either
//! produces a complete snapshot whose identity matches the stream's, or leaves nothing
//! that looks like one.
//!
//! This crate deliberately knows nothing about encryption, buckets, catalogs or costs:
//! the engine decides what to send and where the bytes go.

mod error;
mod forward;
// Body of the send-stream header fuzz target in `fuzz/`, run over its corpus by
// `tests/fuzz_corpus.rs`.
#[doc(hidden)]
pub mod fuzz_targets;
mod name;
mod process;
mod stream_header;

pub mod btrfs;
pub mod zfs;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use error::{Error, Result};
pub use forward::ForwardingSource;
pub use name::{DatasetName, SnapshotName, ZFS_ALLOWED_CHARACTERS};
pub use process::{ReceiveStream, SendStream};

/// The identity a snapshot shares with every received copy of it: what backup chains
/// link by, so a chain can be recognised on a renamed or restored dataset.
///
/// Its one textual form ([`Display`](fmt::Display), parsed back by
/// [`FromStr`](std::str::FromStr)) is `zfs-guid:<decimal guid>` or
/// `btrfs-uuid:<8-4-4-4-12 lowercase hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SnapshotIdentity {
    /// A ZFS snapshot's (or bookmark's) `guid` property: kept by `zfs send`/`receive`,
    /// unlike the dataset's own guid.
    ZfsGuid(u64),
    /// The UUID `btrfs send` writes into its stream for a snapshot: a received
    /// snapshot's received UUID, otherwise its own UUID.
    BtrfsUuid([u8; 16]),
}

impl SnapshotIdentity {
    /// Parses a BTRFS UUID as `btrfs subvolume show` prints it (hyphens optional).
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutput`] naming `what` when it is not 32 hexadecimal digits.
    pub fn btrfs_uuid(text: &str, what: &str) -> Result<Self> {
        let digits: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
        let mut bytes = [0u8; 16];
        let valid = digits.len() == 32
            && digits.chunks(2).zip(bytes.iter_mut()).all(|(pair, byte)| {
                let high = (pair[0] as char).to_digit(16);
                let low = (pair[1] as char).to_digit(16);
                match (high, low) {
                    (Some(high), Some(low)) => {
                        *byte = (high * 16 + low) as u8;
                        true
                    }
                    _ => false,
                }
            });
        if !valid {
            return Err(Error::UnexpectedOutput {
                command: what.to_owned(),
                detail: format!("{text:?} is not a UUID (32 hexadecimal digits)"),
            });
        }
        Ok(Self::BtrfsUuid(bytes))
    }
}

impl fmt::Display for SnapshotIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZfsGuid(guid) => write!(f, "zfs-guid:{guid}"),
            Self::BtrfsUuid(uuid) => {
                f.write_str("btrfs-uuid:")?;
                for (index, byte) in uuid.iter().enumerate() {
                    if matches!(index, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for SnapshotIdentity {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        if let Some(guid) = text.strip_prefix("zfs-guid:") {
            if !guid.is_empty() && guid.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(guid) = guid.parse() {
                    return Ok(Self::ZfsGuid(guid));
                }
            }
        } else if let Some(uuid) = text.strip_prefix("btrfs-uuid:") {
            let parsed = Self::btrfs_uuid(uuid, "a snapshot identity")?;
            // Only the canonical spelling, so one identity has one text.
            if parsed.to_string() == text {
                return Ok(parsed);
            }
        }
        Err(Error::InvalidName {
            name: text.to_owned(),
            reason: "a snapshot identity is `zfs-guid:<decimal>` or \
                     `btrfs-uuid:<8-4-4-4-12 lowercase hex>`"
                .to_owned(),
        })
    }
}

/// Which file system a source drives: it says which tool sends and receives its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceKind {
    /// ZFS: `zfs send` / `zfs receive`.
    Zfs,
    /// BTRFS: `btrfs send` / `btrfs receive`.
    Btrfs,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Zfs => "zfs",
            Self::Btrfs => "btrfs",
        })
    }
}

/// One snapshot of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Its short name.
    pub name: SnapshotName,
    /// Its identity across send/receive.
    pub identity: SnapshotIdentity,
    /// When it was created in transaction-group terms: ZFS `createtxg`, BTRFS generation
    /// at creation. Orders snapshots of one dataset.
    pub created_txg: u64,
    /// Its creation time.
    pub created_at: OffsetDateTime,
    /// The value of the `zib:created` user property (ZFS only; `None` when unset or on
    /// BTRFS, where the caller keeps its own record).
    pub zib_created: Option<String>,
}

impl SnapshotInfo {
    /// Describes a snapshot (for sources outside this crate; the fields are documented
    /// above).
    pub fn new(
        name: SnapshotName,
        identity: SnapshotIdentity,
        created_txg: u64,
        created_at: OffsetDateTime,
        zib_created: Option<String>,
    ) -> Self {
        Self {
            name,
            identity,
            created_txg,
            created_at,
            zib_created,
        }
    }
}

/// The ZFS user property that marks snapshots zib created (value chosen by the caller).
pub const ZIB_CREATED_PROPERTY: &str = "zib:created";

/// Where an incremental send starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendBase {
    /// An earlier snapshot of the same dataset.
    Snapshot(SnapshotName),
    /// A ZFS bookmark of an earlier snapshot (the short name after `#`): possible after
    /// the snapshot itself was destroyed. OpenZFS only.
    Bookmark(SnapshotName),
}

/// Extra `zfs send` flags that shrink or preserve the stream. All off by default.
///
/// They are a property of a backup chain: an incremental sent with different flags than
/// the chain's full may not be receivable on top of it, so the engine stores
/// [`SendFlags::code`] with every backup and starts a new full when it changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SendFlags {
    /// `-L`: blocks larger than 128 KiB stay large.
    pub large_blocks: bool,
    /// `-c`: blocks compressed on disk stay compressed.
    pub compressed: bool,
    /// `-e`: embedded-data blocks stay embedded.
    pub embedded: bool,
    /// `-w`: raw send of a natively encrypted dataset (restore needs the dataset's key).
    pub raw: bool,
}

impl SendFlags {
    /// No extra flags.
    pub const NONE: SendFlags = SendFlags {
        large_blocks: false,
        compressed: false,
        embedded: false,
        raw: false,
    };

    /// All four flags.
    pub const ALL: SendFlags = SendFlags {
        large_blocks: true,
        compressed: true,
        embedded: true,
        raw: true,
    };

    fn table(&self) -> [(bool, char); 4] {
        [
            (self.large_blocks, 'L'),
            (self.compressed, 'c'),
            (self.embedded, 'e'),
            (self.raw, 'w'),
        ]
    }

    /// A stable text form: the flag letters in the order `Lcew` (`""` for none).
    pub fn code(&self) -> String {
        self.table()
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, letter)| *letter)
            .collect()
    }

    /// Parses [`SendFlags::code`] back.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for an unknown letter.
    pub fn from_code(code: &str) -> Result<SendFlags> {
        let mut flags = SendFlags::NONE;
        for letter in code.chars() {
            match letter {
                'L' => flags.large_blocks = true,
                'c' => flags.compressed = true,
                'e' => flags.embedded = true,
                'w' => flags.raw = true,
                other => {
                    return Err(Error::Unsupported {
                        what: format!("send flag {other:?} (known: L, c, e, w)"),
                    });
                }
            }
        }
        Ok(flags)
    }

    /// True when no flag is set.
    pub fn is_empty(&self) -> bool {
        *self == SendFlags::NONE
    }

    /// The flags set here that `supported` lacks, as letters.
    pub fn unsupported_by(&self, supported: &SendFlags) -> String {
        self.table()
            .iter()
            .zip(supported.table())
            .filter(|((wanted, _), (available, _))| *wanted && !*available)
            .map(|((_, letter), _)| *letter)
            .collect()
    }

    pub(crate) fn args(&self) -> Vec<String> {
        self.code()
            .chars()
            .map(|letter| format!("-{letter}"))
            .collect()
    }
}

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendRequest {
    /// The dataset.
    pub dataset: DatasetName,
    /// The snapshot to send.
    pub snapshot: SnapshotName,
    /// `None` for a full stream; else the incremental base.
    pub base: Option<SendBase>,
    /// Extra send flags.
    pub flags: SendFlags,
}

impl SendRequest {
    /// A full send of `snapshot`.
    pub fn full(dataset: DatasetName, snapshot: SnapshotName) -> Self {
        SendRequest {
            dataset,
            snapshot,
            base: None,
            flags: SendFlags::NONE,
        }
    }

    /// An incremental send of `snapshot` from `base`.
    pub fn incremental(dataset: DatasetName, base: SendBase, snapshot: SnapshotName) -> Self {
        SendRequest {
            dataset,
            snapshot,
            base: Some(base),
            flags: SendFlags::NONE,
        }
    }

    /// The same request with `flags`.
    pub fn with_flags(mut self, flags: SendFlags) -> Self {
        self.flags = flags;
        self
    }
}

/// How a receive leaves its target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiveOptions {
    /// More streams of the same chain follow (a restore spread over months): leave the
    /// target read-only, so nothing that reads it in between — a file browser updating
    /// access times — changes it and makes the next incremental fail with "destination
    /// modified". The receive of the chain's last stream (this `false`) makes it
    /// writable again.
    pub more_follow: bool,
}

impl ReceiveOptions {
    /// A receive after which more streams of the chain follow (or not).
    pub fn more_follow(more_follow: bool) -> Self {
        Self { more_follow }
    }
}

/// How the next incremental base is kept from being destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protection {
    /// A ZFS bookmark `dataset#bookmark` with the snapshot's guid.
    Bookmark {
        /// The dataset.
        dataset: DatasetName,
        /// The bookmark's short name.
        bookmark: SnapshotName,
        /// Its guid (equal to the snapshot's).
        guid: u64,
    },
    /// A `zfs hold` with `tag` on `dataset@snapshot`.
    Hold {
        /// The dataset.
        dataset: DatasetName,
        /// The held snapshot.
        snapshot: SnapshotName,
        /// The hold's tag.
        tag: String,
    },
}

/// What a source (and its installed tool) can do for a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The tool and its version, as reported (for logs and bug reports).
    pub tool: String,
    /// [`SnapshotSource::estimate_send_size`] can return sizes.
    pub size_estimates: bool,
    /// Bookmarks can be created on the dataset's pool, and sent from.
    pub bookmarks: bool,
    /// Snapshots can be held ([`Protection::Hold`]).
    pub holds: bool,
    /// Snapshots carry the [`ZIB_CREATED_PROPERTY`] user property.
    pub user_properties: bool,
    /// The extra send flags the tool accepts.
    pub send_flags: SendFlags,
}

impl Capabilities {
    /// Describes what a source can do (for sources outside this crate; the fields are
    /// documented above).
    pub fn new(
        tool: String,
        size_estimates: bool,
        bookmarks: bool,
        holds: bool,
        user_properties: bool,
        send_flags: SendFlags,
    ) -> Self {
        Self {
            tool,
            size_estimates,
            bookmarks,
            holds,
            user_properties,
            send_flags,
        }
    }

    /// How the next incremental base can be protected, if at all: a bookmark where the
    /// pool supports one, else a hold, else nothing (BTRFS: a missing base means the next
    /// backup is a full).
    pub fn protection_available(&self) -> bool {
        self.bookmarks || self.holds
    }
}

/// A file system whose snapshots zib backs up and restores.
///
/// Implementations run the file system's own tools; every method fails with a meaning
/// from [`Error`] (not found, base missing, not installed, command failed, ...).
#[async_trait]
pub trait SnapshotSource: Send + Sync {
    /// Which file system this source drives (recorded with every backup: it says which
    /// tool receives the stream).
    fn kind(&self) -> SourceKind;

    /// What this source can do for `dataset`, probed from the installed tool.
    ///
    /// # Errors
    ///
    /// [`Error::DatasetNotFound`], [`Error::CommandNotInstalled`], [`Error::CommandFailed`].
    async fn capabilities(&self, dataset: &DatasetName) -> Result<Capabilities>;

    /// The dataset's snapshots, oldest first (by `created_txg`).
    ///
    /// MUST include only snapshots of `dataset` itself (not of children) and MUST return
    /// the identity that send/receive preserves.
    ///
    /// # Errors
    ///
    /// [`Error::DatasetNotFound`] when the dataset does not exist.
    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>>;

    /// The dataset's bookmarks (OpenZFS), oldest first, each described like a snapshot:
    /// its short name after `#`, the guid of the snapshot it was made from, and that
    /// snapshot's creation txg and time; `zib_created` is always `None`. A bookmark can be
    /// the base of an incremental send ([`SendBase::Bookmark`]) after its snapshot is
    /// gone. Sources without bookmarks (zfs-fuse, BTRFS) return an empty list.
    ///
    /// # Errors
    ///
    /// [`Error::DatasetNotFound`] when the dataset does not exist.
    async fn list_bookmarks(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        let _ = dataset;
        Ok(Vec::new())
    }

    /// Creates a (read-only) snapshot. On ZFS, `marker` is stored as the
    /// [`ZIB_CREATED_PROPERTY`] user property in the same atomic step; sources without
    /// user properties ignore it (see [`Capabilities::user_properties`]).
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotExists`], [`Error::DatasetNotFound`], [`Error::InvalidName`].
    async fn create_snapshot(
        &self,
        dataset: &DatasetName,
        snapshot: &SnapshotName,
        marker: Option<&str>,
    ) -> Result<SnapshotInfo>;

    /// Destroys one snapshot (never recursively). Callers SHOULD destroy only snapshots
    /// zib created.
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotNotFound`]; [`Error::CommandFailed`] when it is held or busy.
    async fn destroy_snapshot(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<()>;

    /// The size in bytes the send would produce, or `None` when the tool cannot tell.
    ///
    /// # Errors
    ///
    /// As for [`SnapshotSource::send`].
    async fn estimate_send_size(&self, request: &SendRequest) -> Result<Option<u64>>;

    /// Starts a send. The stream's last item MUST be an error when the sending command
    /// fails, even after it produced bytes; a stream that ends cleanly is complete.
    ///
    /// # Errors
    ///
    /// [`Error::SnapshotNotFound`] (snapshot or base), [`Error::BaseNotEarlier`],
    /// [`Error::Unsupported`] (a flag or a bookmark base the tool lacks).
    async fn send(&self, request: &SendRequest) -> Result<SendStream>;

    /// Receives a send stream into `target` and returns the received snapshot.
    ///
    /// A full stream creates `target` (ZFS: a new dataset; BTRFS: a snapshot inside the
    /// directory `target`). An incremental stream needs its base on `target`. On any
    /// failure — the stream's own error, a truncated stream, the tool failing — nothing
    /// that looks like a complete snapshot is left behind. Success MUST mean the snapshot
    /// exists with the stream's identity. With [`ReceiveOptions::more_follow`] the
    /// target is left read-only for the next incremental; without, writable.
    ///
    /// # Errors
    ///
    /// [`Error::BaseMissing`], [`Error::TargetExists`], [`Error::InvalidStream`],
    /// [`Error::InputFailed`], [`Error::ReceiveIncomplete`], [`Error::CommandFailed`].
    async fn receive(
        &self,
        target: &DatasetName,
        stream: ReceiveStream,
        options: &ReceiveOptions,
    ) -> Result<SnapshotInfo>;

    /// Removes a receive target and everything received into it (ZFS: the dataset and its
    /// snapshots; BTRFS: the received snapshots in the target directory, and the
    /// directory when nothing else is left in it). For abandoning a restore: callers MUST
    /// name only a target their own receives created.
    ///
    /// # Errors
    ///
    /// [`Error::DatasetNotFound`] when it does not exist; [`Error::CommandFailed`].
    async fn discard_target(&self, target: &DatasetName) -> Result<()>;

    /// Protects `snapshot` as the next incremental base (bookmark where supported, else a
    /// hold), verifying that the protection took effect.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when the source has neither (BTRFS),
    /// [`Error::ProtectionNotVerified`], [`Error::SnapshotNotFound`].
    async fn protect(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<Protection>;

    /// Removes a protection made by [`SnapshotSource::protect`].
    ///
    /// # Errors
    ///
    /// [`Error::CommandFailed`], [`Error::ProtectionNotVerified`].
    async fn release(&self, protection: &Protection) -> Result<()>;
}
