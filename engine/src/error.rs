//! The engine's errors, as meanings.

/// What went wrong in an engine operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An object's bytes or metadata do not decode as format v1 says they must.
    #[error("object {object} is corrupt: {reason}")]
    Corrupt {
        /// The object key (or a description of the record) that failed to decode.
        object: String,
        /// What was wrong.
        reason: String,
    },

    /// A record would not fit in S3's 2,000 bytes of user metadata.
    #[error(
        "the metadata for {object} would take {needed} bytes, over S3's limit of {limit}; \
         {hint}"
    )]
    MetadataTooLarge {
        /// The object the metadata belongs to.
        object: String,
        /// Bytes of keys plus values the metadata would need.
        needed: usize,
        /// The limit.
        limit: usize,
        /// What to do about it.
        hint: &'static str,
    },

    /// Encryption or decryption failed (wrong passphrase, corrupt or swapped object, ...).
    #[error(transparent)]
    Crypto(#[from] zib_crypto::Error),

    /// The storage backend failed (permission, network, missing object, ...).
    #[error(transparent)]
    Storage(#[from] zib_storage_backend::Error),

    /// The snapshot source failed (dataset not found, `zfs send` failed, ...).
    #[error(transparent)]
    Source(#[from] zib_snapshot_source::Error),

    /// `init` found a repository already there.
    #[error(
        "a zib repository already exists at {location}; open it instead of initialising it again"
    )]
    AlreadyInitialised {
        /// Where the existing keyring is.
        location: String,
    },

    /// `open` found no keyring.
    #[error("there is no zib repository at {location} (no keyring found); check the bucket and prefix, or run `zib init`")]
    NotARepository {
        /// Where the keyring was looked for.
        location: String,
    },

    /// A backup's chain references a backup that is not in the catalog.
    #[error("backup {backup} cannot be restored: its chain needs backup {missing}, which is not in the repository")]
    BrokenChain {
        /// The backup whose chain was followed.
        backup: crate::ids::BackupId,
        /// The missing link.
        missing: crate::ids::BackupId,
    },

    /// Another run is backing up this dataset into this repository (it holds the lock).
    #[error(
        "another zib backup of {dataset} into this repository is running{} (lock file {}); \
         wait for it to finish, or ask to wait for the lock",
        pid.map(|pid| format!(" as process {pid}")).unwrap_or_default(),
        lock_file.display()
    )]
    Locked {
        /// The dataset name.
        dataset: String,
        /// The lock file.
        lock_file: std::path::PathBuf,
        /// The holder's process id, when it could be read.
        pid: Option<u32>,
    },

    /// A resume journal is not one this zib can read (corrupt, truncated, another
    /// version).
    #[error("the resume journal {} cannot be used: {reason}", path.display())]
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A local state file (journal, lock) could not be read or written.
    #[error("could not {action} at {}: {source}; check that the state directory is writable", path.display())]
    LocalState {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The send stream of a snapshot differed each time it was read, so the backup could
    /// not be resumed consistently.
    #[error(
        "the send stream of {snapshot} differed from the previous read {attempts} times in a \
         row; nothing was committed. Check the source (a zfs-send that is not \
         deterministic?) and run the backup again"
    )]
    StreamUnstable {
        /// The snapshot (`dataset@name`).
        snapshot: String,
        /// How many times the stream was restarted.
        attempts: u32,
    },

    /// The storage refused a request zib needs: the credentials lack an IAM permission.
    #[error(
        "zib may not {step} (refused with 403 Access Denied): add the permission \
         {permission} on {resource} to the IAM policy of the user or role zib runs as \
         (docs/PERMISSIONS.md lists every permission zib needs)"
    )]
    AccessDenied {
        /// The step of the access check (or of init/open) that was refused.
        step: crate::access::AccessStep,
        /// The IAM action to allow, such as `s3:PutObject`.
        permission: &'static str,
        /// Where to allow it: "the bucket" or the objects under the repository prefix.
        resource: String,
        /// The storage error (a `PermissionDenied`).
        #[source]
        source: zib_storage_backend::Error,
    },

    /// A value the caller supplied is out of range (the message says which and why).
    #[error("{0}")]
    InvalidInput(String),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
