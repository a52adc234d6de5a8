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
    #[error("could not {action} at {}: {source}{}", path.display(), local_state_hint(action, source))]
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
        step: crate::access::report::AccessStep,
        /// The IAM action to allow, such as `s3:PutObject`.
        permission: &'static str,
        /// Where to allow it: "the bucket" or the objects under the repository prefix.
        resource: String,
        /// The storage error (a `PermissionDenied`).
        #[source]
        source: zib_storage_backend::Error,
    },

    /// A volume the backup uploaded is missing from the bucket, or has another size,
    /// when checked just before the commit (a clean-up or a lifecycle rule removed it?).
    /// Nothing was committed; the next run uploads that volume and the later ones again.
    #[error(
        "volume {key} of backup {backup} {}, just before the commit; nothing was committed. \
         Was it removed by `zib cleanup` on another host or by a lifecycle rule? Run the \
         backup again: it uploads that volume and the later ones again",
        match found { Some(size) => format!("has {size} bytes instead of {expected}"), None => "is missing from the bucket".to_owned() }
    )]
    VolumeMissing {
        /// The volume's key.
        key: String,
        /// The backup it belongs to.
        backup: crate::ids::BackupId,
        /// The size the upload produced.
        expected: u64,
        /// The size the bucket reports, `None` when the object is absent.
        found: Option<u64>,
    },

    /// A snapshot was asked for while an unfinished backup of another snapshot of the
    /// dataset could still be finished: it is neither continued nor dropped silently.
    #[error(
        "backup {backup} of {dataset}@{snapshot} is unfinished (journal {}), and snapshot \
         {asked} was asked for. Finish it first by running the backup again without naming \
         a snapshot, or naming {snapshot}; or discard it by moving the journal aside and \
         running `zib cleanup`",
        journal.display()
    )]
    UnfinishedBackup {
        /// The dataset.
        dataset: String,
        /// The unfinished backup.
        backup: crate::ids::BackupId,
        /// The snapshot it is sending.
        snapshot: String,
        /// The snapshot asked for.
        asked: String,
        /// Its journal file.
        journal: std::path::PathBuf,
    },

    /// The planner refused its input (an inconsistent catalog read from the bucket, an
    /// invalid policy or price table).
    #[error(transparent)]
    Planner(#[from] zib_planner::Error),

    /// The operating system's random number generator failed (ids and salts come from
    /// it; nothing is written without them).
    #[error("the operating system's random number generator failed; nothing was written")]
    RandomUnavailable(#[from] crate::ids::RandomUnavailable),

    /// A snapshot the run was working with disappeared (destroyed by another program
    /// between two steps).
    #[error(
        "snapshot {snapshot} of {dataset} disappeared while zib was using it (destroyed by \
         another program?); nothing was committed: run the backup again"
    )]
    SnapshotVanished {
        /// The dataset.
        dataset: String,
        /// The snapshot (or bookmark) that disappeared.
        snapshot: String,
    },

    /// The snapshot asked for does not exist.
    #[error(
        "snapshot {snapshot} of {dataset} does not exist; list them with `zfs list -t \
         snapshot` (or `btrfs subvolume list`), or let zib create one"
    )]
    SnapshotNotFound {
        /// The dataset.
        dataset: String,
        /// The snapshot asked for.
        snapshot: String,
    },

    /// A value the caller supplied is out of range (the message says which and why).
    #[error("{0}")]
    InvalidInput(String),

    /// An invariant of zib's own code failed: a bug, not a problem with the input or the
    /// storage. Nothing was committed that a restore would mistake for a backup.
    #[error("internal error in zib (please report it): {0}")]
    Internal(String),
}

/// What to do about a local state error, from what failed.
fn local_state_hint(action: &str, source: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            "; check that the state directory is writable by this user"
        }
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => "; free space in the state directory",
        _ if action.contains("lock") => {
            "; the state directory must be on a file system that supports flock (a local \
             disk, not a network mount without lock support)"
        }
        _ => "",
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn local_state(action: &'static str, kind: std::io::ErrorKind) -> String {
        Error::LocalState {
            path: "/var/lib/zib/x.lock".into(),
            action,
            source: std::io::Error::from(kind),
        }
        .to_string()
    }

    #[test]
    fn local_state_errors_say_what_to_do_for_what_failed() {
        let denied = local_state(
            "write the resume journal",
            std::io::ErrorKind::PermissionDenied,
        );
        assert!(denied.contains("/var/lib/zib/x.lock"), "{denied}");
        assert!(denied.contains("writable"), "{denied}");
        let unsupported = local_state("take the dataset lock", std::io::ErrorKind::Unsupported);
        assert!(unsupported.contains("flock"), "{unsupported}");
        assert!(!unsupported.contains("writable"), "{unsupported}");
        let other = local_state("read the resume journal", std::io::ErrorKind::InvalidData);
        assert!(
            !other.contains("writable") && !other.contains("flock"),
            "{other}"
        );
    }
}
