//! What a verify found: the problems, each with the object it concerns, the restore
//! points it breaks and what to do about it; the restore points that are intact; and
//! what the verify itself cost.

use std::fmt;
use std::time::SystemTime;

use zib_storage_backend::{ObjectKey, StorageClass, UploadId};

use crate::ids::{BackupId, DatasetId};

/// What [`Repository::verify`](crate::Repository::verify) found.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// When the verify ran (the host's clock).
    pub checked_at: SystemTime,
    /// Objects listed under the repository root.
    pub objects: u64,
    /// Committed backups whose manifest opened.
    pub backups: usize,
    /// Volumes of those backups checked against their manifests.
    pub volumes: u64,
    /// Bytes those volumes hold in the bucket.
    pub stored_bytes: u64,
    /// Every restore point that no problem breaks, oldest first: its manifest opens, its
    /// chain reaches a full backup, and every volume of the chain is listed with the size
    /// its manifest implies.
    pub restore_points: Vec<RestorePoint>,
    /// What is wrong, most severe first (empty: the repository verified clean).
    pub problems: Vec<Problem>,
    /// What a verify cannot know without a thaw (said, so a clean report is not read as
    /// more than it is).
    pub unchecked: Vec<String>,
    /// The requests the verify made, and what they cost.
    pub cost: VerifyCost,
}

impl VerifyReport {
    /// No problem of any severity: every object is accounted for and every backup is
    /// restorable as far as listing and metadata can tell.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The most severe problem's severity, `None` when clean.
    pub fn worst(&self) -> Option<Severity> {
        self.problems.iter().map(|problem| problem.severity).max()
    }

    /// Problems of exactly `severity`.
    pub fn problems_of(&self, severity: Severity) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(move |problem| problem.severity == severity)
    }
}

/// A committed backup that can be restored: the snapshot it brings back and what its
/// chain costs to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePoint {
    /// The dataset's id.
    pub dataset: DatasetId,
    /// The dataset's name when it was backed up.
    pub dataset_name: String,
    /// The backup.
    pub backup: BackupId,
    /// The snapshot it restores (after `@` on ZFS; the snapshot's path on BTRFS).
    pub snapshot_name: String,
    /// When the backup committed.
    pub committed_at: SystemTime,
    /// Backups in its chain (1 for a full).
    pub chain_len: usize,
    /// Bytes of every volume of its chain: what restoring it downloads.
    pub chain_bytes: u64,
}

impl fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{} (backup {})",
            self.dataset_name, self.snapshot_name, self.backup
        )
    }
}

/// How bad a problem is. Ordered: `Leftover < Warning < Damage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// An object no backup needs: it is billed, and (for zib's own leftovers)
    /// `zib cleanup` removes it. Restores are not affected.
    Leftover,
    /// Restores work today, but a safeguard is missing or something costs more than it
    /// should (an archived keyring copy missing, an object in another storage class).
    Warning,
    /// A restore point cannot be restored (or nothing can be opened): act now, while
    /// the source data may still exist.
    Damage,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Leftover => "leftover",
            Self::Warning => "warning",
            Self::Damage => "damage",
        })
    }
}

/// One thing a verify found wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong (its `Display` says it in a sentence).
    pub kind: ProblemKind,
    /// The object it concerns (the backend key), when there is one.
    pub key: Option<ObjectKey>,
    /// The restore points it makes impossible to restore, oldest first (empty when it
    /// breaks none).
    pub breaks: Vec<RestorePoint>,
    /// What to do about it.
    pub action: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity, self.kind)?;
        if let Some(key) = &self.key {
            write!(f, " [{key}]")?;
        }
        if !self.breaks.is_empty() {
            let names: Vec<String> = self.breaks.iter().map(ToString::to_string).collect();
            write!(f, "; breaks {}", names.join(", "))?;
        }
        write!(f, ". {}", self.action)
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// There is no `keyring` object.
    KeyringMissing,
    /// The `keyring` object cannot be used: why.
    KeyringDamaged {
        /// What is wrong with it.
        reason: String,
    },
    /// No archived copy of the keyring exists (`keyring-archive/`).
    KeyringArchiveMissing,
    /// An archived keyring copy is not what it should be.
    KeyringArchiveDamaged {
        /// What is wrong with it.
        reason: String,
    },
    /// There is no `README.txt`, or it cannot be read without a thaw.
    ReadmeMissing {
        /// What is wrong.
        reason: String,
    },
    /// The repository carries no decoder kit (`kit/`: FORMAT.md, the reference decoder
    /// and the restore instructions) readable without a thaw; the next backup adds it.
    KitMissing,
    /// An object is in another storage class than its role calls for.
    StorageClass {
        /// The class it should be in.
        expected: StorageClass,
        /// The class it is in.
        found: StorageClass,
    },
    /// A manifest's metadata does not open or decode: the backup it commits is lost
    /// (altered, written by a newer zib, or not zib's).
    ManifestUnreadable {
        /// The dataset, from the manifest's key.
        dataset: DatasetId,
        /// The backup, from the manifest's key.
        backup: BackupId,
        /// Why it does not open.
        reason: String,
    },
    /// A manifest opens but contradicts itself or its own body.
    ManifestInconsistent {
        /// The backup.
        backup: BackupId,
        /// What does not add up.
        reason: String,
    },
    /// A volume a committed backup needs is not in the bucket.
    VolumeMissing {
        /// The backup.
        backup: BackupId,
        /// The volume's index.
        index: u32,
        /// The size its manifest implies.
        expected_size: u64,
    },
    /// A volume has another size than its manifest implies (truncated, or replaced).
    VolumeSize {
        /// The backup.
        backup: BackupId,
        /// The volume's index.
        index: u32,
        /// The size its manifest implies.
        expected: u64,
        /// The size listed.
        found: u64,
    },
    /// An incremental's base backup has no manifest: its chain does not reach a full.
    BrokenChain {
        /// The incremental.
        backup: BackupId,
        /// Its base, missing from the repository.
        missing_base: BackupId,
    },
    /// An incremental's base backup is there but is not the snapshot the incremental
    /// was sent from (another identity or file system kind), or the chain loops.
    ChainMismatch {
        /// The incremental.
        backup: BackupId,
        /// Its base.
        base: BackupId,
        /// What differs.
        reason: String,
    },
    /// A volume of a backup that has no manifest: a backup that never committed, or one
    /// being uploaded right now.
    OrphanVolume {
        /// The dataset, from the key.
        dataset: DatasetId,
        /// The backup, from the key.
        backup: BackupId,
        /// The volume's index.
        index: u32,
        /// When it was written.
        written: SystemTime,
    },
    /// A volume beyond the last one its committed backup's manifest lists.
    ExtraVolume {
        /// The backup.
        backup: BackupId,
        /// The volume's index.
        index: u32,
    },
    /// A probe object an interrupted access check left behind.
    LeftoverProbe {
        /// When it was written.
        written: SystemTime,
    },
    /// A multipart upload that was never completed or aborted (its parts are billed at
    /// S3 Standard rates).
    IncompleteUpload {
        /// Its upload id.
        upload_id: UploadId,
        /// When it started.
        initiated: SystemTime,
        /// Its key is a committed backup's volume (a stray: nothing will complete it).
        of_committed_backup: bool,
    },
    /// An object zib did not write (or a newer zib wrote): zib never reads or deletes it.
    UnknownObject {
        /// Its size.
        size: u64,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyringMissing => f.write_str("the keyring is missing"),
            Self::KeyringDamaged { reason } => write!(f, "the keyring cannot be used: {reason}"),
            Self::KeyringArchiveMissing => f.write_str("there is no archived copy of the keyring"),
            Self::KeyringArchiveDamaged { reason } => {
                write!(f, "an archived keyring copy is not right: {reason}")
            }
            Self::ReadmeMissing { reason } => write!(f, "the README {reason}"),
            Self::KitMissing => f.write_str(
                "the repository carries no decoder kit (kit/: FORMAT.md, the reference \
                 decoder, the restore instructions) readable without a thaw",
            ),
            Self::StorageClass { expected, found } => write!(
                f,
                "the object is in storage class {}, not {}",
                found.as_str(),
                expected.as_str()
            ),
            Self::ManifestUnreadable { backup, reason, .. } => {
                write!(f, "the manifest of backup {backup} does not open: {reason}")
            }
            Self::ManifestInconsistent { backup, reason } => {
                write!(f, "the manifest of backup {backup} does not add up: {reason}")
            }
            Self::VolumeMissing {
                backup,
                index,
                expected_size,
            } => write!(
                f,
                "volume {index} of backup {backup} ({expected_size} bytes) is missing"
            ),
            Self::VolumeSize {
                backup,
                index,
                expected,
                found,
            } => write!(
                f,
                "volume {index} of backup {backup} is {found} bytes; its manifest implies {expected}"
            ),
            Self::BrokenChain {
                backup,
                missing_base,
            } => write!(
                f,
                "backup {backup} is an incremental on backup {missing_base}, which has no manifest"
            ),
            Self::ChainMismatch {
                backup,
                base,
                reason,
            } => write!(
                f,
                "backup {backup} does not follow its base backup {base}: {reason}"
            ),
            Self::OrphanVolume { backup, index, .. } => write!(
                f,
                "volume {index} of backup {backup}, which has no manifest (never committed)"
            ),
            Self::ExtraVolume { backup, index } => write!(
                f,
                "volume {index} of backup {backup} is beyond the volumes its manifest lists"
            ),
            Self::LeftoverProbe { .. } => {
                f.write_str("a probe object left behind by an interrupted access check")
            }
            Self::IncompleteUpload {
                upload_id,
                of_committed_backup,
                ..
            } => {
                write!(f, "multipart upload {upload_id} was never completed")?;
                if *of_committed_backup {
                    f.write_str(" (a stray: its volume is already committed)")?;
                }
                Ok(())
            }
            Self::UnknownObject { size } => {
                write!(f, "an object of {size} bytes that zib did not write")
            }
        }
    }
}

/// The requests a verify made and what they cost (prices from
/// [`VerifyOptions::prices`](crate::VerifyOptions::prices)).
///
/// Counted at the verify's own request layer, above the retry layer: a retried request
/// counts once here (AWS bills each attempt; retries are rare).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyCost {
    /// LIST requests (object listing pages of up to 1,000 keys, and listing of
    /// incomplete uploads), billed at the PUT-class rate.
    pub list_requests: u64,
    /// HEAD requests: one per manifest, one per archived keyring copy, one for the
    /// keyring.
    pub head_requests: u64,
    /// GET requests: only the keyring (a few hundred bytes in S3 Standard). Never an
    /// archived object.
    pub get_requests: u64,
    /// Bytes those GETs downloaded.
    pub bytes_downloaded: u64,
    /// What the requests cost, USD (egress of a few hundred bytes is not priced).
    pub usd: f64,
}
