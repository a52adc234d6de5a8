//! The crate's one error type: what went wrong, as a meaning the caller can act on.

use std::io;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while listing, snapshotting, sending or receiving.
///
/// Variants are meanings, not command outputs: a caller decides from the variant (is the
/// base missing? is the tool not installed?) and shows the message to a person.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A dataset, subvolume or snapshot name breaks the file system's naming rules.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// Which rule it breaks, including the allowed character set.
        reason: String,
    },

    /// The dataset (ZFS) or subvolume/directory (BTRFS) does not exist.
    #[error("dataset {dataset:?} not found: check the name (`zfs list` / `btrfs subvolume list`)")]
    DatasetNotFound {
        /// The dataset asked for.
        dataset: String,
    },

    /// The snapshot (or bookmark) does not exist on the dataset.
    #[error("snapshot {snapshot:?} not found on {dataset:?}")]
    SnapshotNotFound {
        /// The dataset searched.
        dataset: String,
        /// The snapshot or bookmark asked for.
        snapshot: String,
    },

    /// A snapshot of that name already exists.
    #[error("snapshot {snapshot:?} already exists on {dataset:?}")]
    SnapshotExists {
        /// The dataset.
        dataset: String,
        /// The snapshot name that is taken.
        snapshot: String,
    },

    /// A full stream must be received into a dataset that does not exist yet (ZFS), or a
    /// snapshot of the stream's name already exists in the target directory (BTRFS).
    #[error(
        "receive target {target:?} already exists: a full stream creates it; choose a new name"
    )]
    TargetExists {
        /// The receive target.
        target: String,
    },

    /// An incremental stream's base snapshot is not on the receiving side.
    #[error(
        "the incremental stream needs base snapshot {base} on {target:?}, which has no snapshot \
         with that identity: receive the chain in order, starting from its full stream"
    )]
    BaseMissing {
        /// The receive target.
        target: String,
        /// The identity (guid / UUID) of the missing base.
        base: String,
    },

    /// The base given for an incremental send is not older than the snapshot sent.
    #[error(
        "incremental base {base:?} is not an earlier snapshot of {dataset:?} than {snapshot:?}"
    )]
    BaseNotEarlier {
        /// The dataset.
        dataset: String,
        /// The base given.
        base: String,
        /// The snapshot to send.
        snapshot: String,
    },

    /// The file system tool is not installed (or the configured path is wrong).
    #[error("`{program}` could not be run ({source}): install the `{package}` package or fix the configured path")]
    CommandNotInstalled {
        /// The program path that could not be run.
        program: String,
        /// The Debian package that provides it.
        package: &'static str,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },

    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line, for the reader (never contains secrets: these tools take none).
        command: String,
        /// The exit status, or the signal that killed it.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },

    /// Talking to a child process failed (pipe, wait).
    #[error("i/o with `{command}` failed")]
    Io {
        /// The command line.
        command: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A command printed something this crate cannot interpret.
    #[error("unexpected output from `{command}`: {detail}")]
    UnexpectedOutput {
        /// The command line.
        command: String,
        /// What was wrong with it.
        detail: String,
    },

    /// The byte stream given to `receive` is not a complete send stream of this file system.
    #[error("the stream to receive is not a complete send stream: {detail}")]
    InvalidStream {
        /// What is wrong with it.
        detail: String,
    },

    /// The byte stream given to `receive` failed while being read; nothing was kept.
    #[error("the stream to receive failed while being read; the partial receive was discarded")]
    InputFailed {
        /// The reader's error.
        #[source]
        source: io::Error,
    },

    /// The operation or option is not supported by this source or this version of its tool.
    #[error("not supported: {what}")]
    Unsupported {
        /// What is not supported, and where.
        what: String,
    },

    /// A snapshot's protection (hold/bookmark) could not be confirmed after setting it.
    #[error("protection of {snapshot:?} could not be verified: {detail}")]
    ProtectionNotVerified {
        /// The snapshot.
        snapshot: String,
        /// What the check found.
        detail: String,
    },

    /// A receive finished, but its result does not look complete, so it was removed.
    #[error("receive into {target:?} did not produce a complete snapshot ({detail}); the partial result was removed")]
    ReceiveIncomplete {
        /// The receive target.
        target: String,
        /// What was missing.
        detail: String,
    },
}

impl Error {
    /// True when the error says the file system tool is missing (not a problem with data).
    pub fn is_not_installed(&self) -> bool {
        matches!(self, Error::CommandNotInstalled { .. })
    }
}
