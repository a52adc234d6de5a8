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

    /// A restore's staged copy of a volume — verified when it was downloaded — no longer
    /// decrypts: it was damaged on the local disk (or altered there) since. The stored
    /// object is not blamed; the staged copy is removed, so the next run downloads it
    /// again.
    #[error(
        "the staged copy {} of object {object} is damaged on the local disk ({reason}); \
         nothing was received from it and it was removed: run the restore again to \
         download that volume again (and check the staging disk if this repeats)",
        path.display()
    )]
    StagedVolumeDamaged {
        /// The volume's object key.
        object: String,
        /// The staged file.
        path: std::path::PathBuf,
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

    /// `open` found backups but no keyring: the live keyring object was deleted.
    #[error(
        "the repository's keyring ({location}) is missing, but its backups are there; open it \
         with your offline copy of the keyring, or fetch its archived copy \
         (keyring-archive/), then put the keyring back"
    )]
    KeyringMissing {
        /// Where the keyring should be.
        location: String,
    },

    /// `open` found the live keyring damaged.
    #[error(
        "the repository's keyring ({location}) is damaged ({reason}); open it with your \
         offline copy of the keyring, or fetch its archived copy (keyring-archive/), then \
         put the keyring back"
    )]
    KeyringDamaged {
        /// Where the keyring is.
        location: String,
        /// What check failed.
        reason: String,
    },

    /// A keyring copy belongs to another repository.
    #[error("that keyring belongs to another repository ({location}: {reason}); use the copy this repository's init or passphrase change handed out")]
    ForeignKeyring {
        /// The object the copy was checked against.
        location: String,
        /// What did not match.
        reason: String,
    },

    /// The repository has no archived keyring copy.
    #[error("there is no archived keyring copy under {location}; only an offline copy of the keyring can open this repository now")]
    NoArchivedKeyring {
        /// Where the copies were looked for.
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

    /// A file of the offline copy could not be written.
    #[error("could not write {} of the offline copy: {source}; check that the directory is writable and has space", path.display())]
    OfflineCopy {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
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

    /// No dataset of that name (or id) has a backup in the repository.
    #[error(
        "the repository holds no backup of {dataset}; list what it holds with `zib list` \
         (a dataset is named as it was backed up)"
    )]
    UnknownDataset {
        /// The name asked for.
        dataset: String,
    },

    /// A restore's target exists already: a restore never receives into existing data.
    #[error(
        "{target} exists already; restore into a dataset (or directory) that does not exist yet"
    )]
    TargetExists {
        /// The target.
        target: String,
    },

    /// No restore job with that id on this host.
    #[error("there is no restore job {id} in this state directory; list them with `zib restore --status`")]
    NoSuchRestore {
        /// The id asked for.
        id: crate::ids::RestoreJobId,
    },

    /// A volume a restore needs is missing from the bucket.
    #[error(
        "volume {key} of backup {backup} is missing from the bucket; it cannot be restored, \
         nor can the restore points that need it: {}. Restore an older restore point that \
         does not need it, or check who deleted it",
        breaks.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    VolumeGone {
        /// The missing object.
        key: String,
        /// Its backup.
        backup: crate::ids::BackupId,
        /// Every restore point whose chain needs that backup.
        breaks: Vec<crate::ids::BackupId>,
    },

    /// A received snapshot is not the one the manifest names.
    #[error(
        "the snapshot received into {target} is {found}, but the backup's manifest names \
         {expected}; the target does not hold what was backed up: cancel the restore"
    )]
    ReceivedIdentity {
        /// The target.
        target: String,
        /// The manifest's identity.
        expected: String,
        /// The received snapshot's.
        found: String,
    },

    /// The staging directory has not room enough for the next download.
    #[error(
        "the staging directory {} has {} free; the next download needs {}: free space \
         there and run the restore again (what was downloaded is kept)",
        dir.display(),
        zib_planner::cost::human_bytes(*free),
        zib_planner::cost::human_bytes(*needed)
    )]
    StagingFull {
        /// The staging directory.
        dir: std::path::PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
    },

    /// A value the caller supplied is out of range (the message says which and why).
    #[error("{0}")]
    InvalidInput(String),

    /// An invariant of zib's own code failed: a bug, not a problem with the input or the
    /// storage. Nothing was committed that a restore would mistake for a backup.
    #[error("internal error in zib (please report it): {0}")]
    Internal(String),
}

/// What to do about a local state error, from what failed and where: the state
/// directory, or a restore's staging directory (its actions name staged volumes or the
/// staging directory).
fn local_state_hint(action: &str, source: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    let staging = action.contains("stag");
    match (source.kind(), staging) {
        (ErrorKind::ReadOnlyFilesystem, false) => {
            "; the state directory's file system is mounted read-only: remount it \
             read-write (restores in progress and interrupted backups resume from what is \
             kept there), or point --state-dir (ZIB_STATE_DIR, the config's state_dir) at a \
             writable directory"
        }
        (ErrorKind::ReadOnlyFilesystem, true) => {
            "; the staging directory's file system is mounted read-only: remount it \
             read-write and run the restore again"
        }
        (ErrorKind::PermissionDenied, false) => {
            "; check that the state directory is writable by this user"
        }
        (ErrorKind::PermissionDenied, true) => {
            "; check that the staging directory is writable by this user"
        }
        (ErrorKind::StorageFull | ErrorKind::QuotaExceeded, false) => {
            "; free space in the state directory"
        }
        (ErrorKind::StorageFull | ErrorKind::QuotaExceeded, true) => {
            "; the staging directory is full: free space there and run the restore again \
             (what was downloaded is kept, and the interrupted download resumes)"
        }
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
    fn a_full_staging_directory_gives_sizes_for_people() {
        let message = Error::StagingFull {
            dir: "/srv/staging".into(),
            needed: 3 << 30,
            free: 1536 << 20,
        }
        .to_string();
        assert!(
            message.contains("/srv/staging has 1.5 GiB free"),
            "{message}"
        );
        assert!(message.contains("needs 3.0 GiB"), "{message}");
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
        let read_only = local_state(
            "take the dataset lock",
            std::io::ErrorKind::ReadOnlyFilesystem,
        );
        assert!(
            read_only.contains("read-only") && read_only.contains("--state-dir"),
            "{read_only}"
        );
        let full_staging = local_state("write a staged volume", std::io::ErrorKind::StorageFull);
        assert!(
            full_staging.contains("staging directory is full"),
            "{full_staging}"
        );
        let full_state = local_state("write the resume journal", std::io::ErrorKind::StorageFull);
        assert!(full_state.contains("state directory"), "{full_state}");
        let other = local_state("read the resume journal", std::io::ErrorKind::InvalidData);
        assert!(
            !other.contains("writable") && !other.contains("flock"),
            "{other}"
        );
    }
}
