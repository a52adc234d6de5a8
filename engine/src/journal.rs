//! The resume journal: local state that lets a backup killed at any instant continue
//! where it stopped, without re-sending what the bucket already holds.
//!
//! One journal per (repository, dataset), in the state directory the caller names
//! (`<state dir>/<repository id>/<dataset name in hex>.journal`). It is local state, not part of the
//! on-bucket format: deleting the state directory loses nothing but resumability (the
//! next run plans afresh; `clean_up` removes what the old run left once it is old).
//!
//! It records the backup in progress — backup and dataset ids, the target snapshot
//! (name and identity), the kind and base, the send flags and the volume shape — and, per
//! volume, its multipart upload id and encryption salt; per part of the volume being
//! uploaded, its number, the plaintext range it covers, the plaintext's SHA-256 and,
//! once S3 confirmed it, its ETag. A completed volume keeps its upload id and salt and its
//! list entry (lengths and plaintext hash) but drops its parts, so the journal stays a
//! few hundred bytes per volume plus one line per part of the volume in flight, whatever
//! the stream's size.
//!
//! Why the plaintext hash is written before the part is sent: a resumed run re-encrypts
//! with the journalled salt, which reproduces the ciphertext only for identical
//! plaintext. Each journalled part's hash is checked before that part is sent again
//! under the salt (and a mismatch discards the volume before anything more is sent), so
//! one salt never encrypts two different plaintexts in the bucket — provided the journal
//! on disk is the one resumed, which the dataset lock and
//! [`upload_resumable`](crate::volumes::upload_resumable) ensure.
//!
//! File format (version 1): the 8-byte magic `ZIBJRNL\n`, the version as a little-endian
//! `u32`, the body length as a little-endian `u64`, the body ([`Journal`] in bincode 1.3,
//! whose encoding is pinned in the workspace), then the SHA-256 of everything before it.
//! A file with another magic or version, a wrong length or checksum, or a body that does
//! not decode is reported as [`Error::Journal`]; it is never half-used.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use zib_crypto::SALT_LEN;

use crate::error::{Error, Result};
use crate::ids::{BackupId, DatasetId, RepositoryId, ID_LEN};
use crate::records::{BackupKind, SendFlagBits, SnapshotIdentity, SourceKind, VolumeListEntry};
use crate::volumes::VolumeShape;

/// The first bytes of every journal file.
pub const JOURNAL_MAGIC: [u8; 8] = *b"ZIBJRNL\n";

/// The journal format this zib writes and reads.
pub const JOURNAL_VERSION: u32 = 1;

const PREFIX_LEN: usize = 8 + 4 + 8;
const CHECKSUM_LEN: usize = 32;

/// Dataset names longer than this (in bytes) are hashed into the file name: hex doubles
/// the length and file names are limited to 255 bytes.
const MAX_HEX_NAME: usize = 100;

/// The backup in progress for one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The repository the backup goes to.
    pub repository_id: [u8; ID_LEN],
    /// The dataset's name as given to `back_up`.
    pub dataset_name: String,
    /// The dataset id the backup is filed under (may be new: not yet in the bucket).
    pub dataset_id: [u8; ID_LEN],
    /// The backup id: a resumed run commits under the same one.
    pub backup_id: [u8; ID_LEN],
    /// Which file system sends the stream.
    pub source: JournalSource,
    /// The snapshot being sent.
    pub target: JournalSnapshot,
    /// Whether zib created the target snapshot (recorded in the manifest).
    pub snapshot_created_by_zib: bool,
    /// Full, or incremental from which base.
    pub kind: JournalKind,
    /// Send flags, as the manifest's bits.
    pub send_flags: u32,
    /// How the stream is cut (a resumed run MUST cut it the same way).
    pub shape: JournalShape,
    /// Volumes started so far, in index order (index i at position i).
    pub volumes: Vec<JournalVolume>,
}

/// Which file system's stream this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalSource {
    /// `zfs send`.
    Zfs,
    /// `btrfs send`.
    Btrfs,
}

/// A snapshot by name and identity (the name alone may have been reused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalSnapshot {
    /// Snapshot name without the dataset.
    pub name: String,
    /// Its identity.
    pub identity: JournalIdentity,
}

/// A snapshot identity, as the manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalIdentity {
    /// ZFS guid.
    ZfsGuid(u64),
    /// BTRFS UUID (received UUID when set).
    BtrfsUuid([u8; 16]),
}

/// Full or incremental.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalKind {
    /// The whole snapshot.
    Full,
    /// The difference from a committed base backup.
    Incremental {
        /// The base backup's id.
        base_backup: [u8; ID_LEN],
        /// The base snapshot's local name.
        base_snapshot_name: String,
        /// The base snapshot's identity.
        base_identity: JournalIdentity,
    },
}

/// The volume shape of the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalShape {
    /// Plaintext bytes per volume.
    pub volume_plaintext_len: u64,
    /// Target part length.
    pub part_len: u64,
    /// Parts in flight.
    pub parts_in_flight: u64,
}

/// One volume's upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalVolume {
    /// Volume index.
    pub index: u32,
    /// The multipart upload id.
    pub upload_id: String,
    /// The salt its key was derived from.
    pub salt: [u8; SALT_LEN],
    /// Uploading or completed.
    pub state: VolumeState,
}

/// Where a volume's upload stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeState {
    /// Parts are being sent; each is journalled before it is sent.
    Uploading {
        /// Parts journalled so far, ascending by number.
        parts: Vec<JournalPart>,
    },
    /// The upload completed: the volume object exists.
    Completed {
        /// Plaintext bytes.
        plaintext_len: u64,
        /// Object bytes.
        ciphertext_len: u64,
        /// SHA-256 of the plaintext.
        plaintext_sha256: [u8; 32],
        /// Parts it was uploaded in.
        parts: u64,
    },
}

/// One part of a volume being uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPart {
    /// Part number, from 1.
    pub number: u32,
    /// Offset of its plaintext within the volume's plaintext.
    pub plaintext_start: u64,
    /// Plaintext bytes it encrypts.
    pub plaintext_len: u64,
    /// SHA-256 of that plaintext.
    pub plaintext_sha256: [u8; 32],
    /// Whether it is the volume's last part (its last segment is sealed as final).
    pub last: bool,
    /// The ETag S3 returned, once the part is stored.
    pub etag: Option<String>,
}

impl Journal {
    /// The dataset id.
    pub fn dataset(&self) -> DatasetId {
        DatasetId::from_bytes(self.dataset_id)
    }

    /// The backup id.
    pub fn backup(&self) -> BackupId {
        BackupId::from_bytes(self.backup_id)
    }

    /// The volume shape.
    pub fn volume_shape(&self) -> VolumeShape {
        VolumeShape {
            volume_plaintext_len: self.shape.volume_plaintext_len,
            part_len: self.shape.part_len,
            parts_in_flight: usize::try_from(self.shape.parts_in_flight).unwrap_or(usize::MAX),
        }
    }

    /// The backup kind, as the manifest records it.
    pub fn backup_kind(&self) -> BackupKind {
        match &self.kind {
            JournalKind::Full => BackupKind::Full,
            JournalKind::Incremental {
                base_backup,
                base_snapshot_name,
                base_identity,
            } => BackupKind::Incremental {
                base_backup: BackupId::from_bytes(*base_backup),
                base_snapshot_name: base_snapshot_name.clone(),
                base_identity: (*base_identity).into(),
            },
        }
    }

    /// The send flags, as the manifest records them.
    pub fn send_flag_bits(&self) -> SendFlagBits {
        SendFlagBits(self.send_flags)
    }

    /// The source kind.
    pub fn source_kind(&self) -> SourceKind {
        match self.source {
            JournalSource::Zfs => SourceKind::Zfs,
            JournalSource::Btrfs => SourceKind::Btrfs,
        }
    }

    /// Parts S3 confirmed so far, over all volumes (a completed volume counts all its
    /// parts).
    pub fn confirmed_parts(&self) -> u64 {
        self.volumes
            .iter()
            .map(|volume| match &volume.state {
                VolumeState::Uploading { parts } => {
                    parts.iter().filter(|part| part.etag.is_some()).count() as u64
                }
                VolumeState::Completed { parts, .. } => *parts,
            })
            .sum()
    }

    /// Completed volumes so far.
    pub fn completed_volumes(&self) -> usize {
        self.volumes
            .iter()
            .filter(|volume| matches!(volume.state, VolumeState::Completed { .. }))
            .count()
    }
}

impl JournalVolume {
    /// The list entry of a completed volume.
    pub fn completed_entry(&self) -> Option<VolumeListEntry> {
        match &self.state {
            VolumeState::Completed {
                plaintext_len,
                ciphertext_len,
                plaintext_sha256,
                ..
            } => Some(VolumeListEntry {
                index: self.index,
                plaintext_len: *plaintext_len,
                ciphertext_len: *ciphertext_len,
                plaintext_sha256: *plaintext_sha256,
            }),
            VolumeState::Uploading { .. } => None,
        }
    }
}

impl From<SnapshotIdentity> for JournalIdentity {
    fn from(identity: SnapshotIdentity) -> Self {
        match identity {
            SnapshotIdentity::ZfsGuid(guid) => Self::ZfsGuid(guid),
            SnapshotIdentity::BtrfsUuid(uuid) => Self::BtrfsUuid(uuid),
        }
    }
}

impl From<JournalIdentity> for SnapshotIdentity {
    fn from(identity: JournalIdentity) -> Self {
        match identity {
            JournalIdentity::ZfsGuid(guid) => Self::ZfsGuid(guid),
            JournalIdentity::BtrfsUuid(uuid) => Self::BtrfsUuid(uuid),
        }
    }
}

impl From<SourceKind> for JournalSource {
    fn from(kind: SourceKind) -> Self {
        match kind {
            SourceKind::Zfs => Self::Zfs,
            SourceKind::Btrfs => Self::Btrfs,
        }
    }
}

impl From<&BackupKind> for JournalKind {
    fn from(kind: &BackupKind) -> Self {
        match kind {
            BackupKind::Full => Self::Full,
            BackupKind::Incremental {
                base_backup,
                base_snapshot_name,
                base_identity,
            } => Self::Incremental {
                base_backup: *base_backup.as_bytes(),
                base_snapshot_name: base_snapshot_name.clone(),
                base_identity: (*base_identity).into(),
            },
        }
    }
}

impl From<&VolumeShape> for JournalShape {
    fn from(shape: &VolumeShape) -> Self {
        Self {
            volume_plaintext_len: shape.volume_plaintext_len,
            part_len: shape.part_len,
            parts_in_flight: shape.parts_in_flight as u64,
        }
    }
}

/// Encodes a journal as a version-1 file.
///
/// # Errors
///
/// [`Error::InvalidInput`] if bincode refuses the value (it does not for these types).
pub fn encode_journal(journal: &Journal) -> Result<Vec<u8>> {
    let body = bincode::serialize(journal).map_err(|error| {
        Error::InvalidInput(format!(
            "could not encode the resume journal of {}: {error}",
            journal.dataset_name
        ))
    })?;
    let mut bytes = Vec::with_capacity(PREFIX_LEN + body.len() + CHECKSUM_LEN);
    bytes.extend_from_slice(&JOURNAL_MAGIC);
    bytes.extend_from_slice(&JOURNAL_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&body);
    let checksum = digest(&SHA256, &bytes);
    bytes.extend_from_slice(checksum.as_ref());
    Ok(bytes)
}

/// Decodes a journal file's bytes; `path` names it in errors.
///
/// # Errors
///
/// [`Error::Journal`] saying what is wrong: not a journal, another version, truncated,
/// checksum mismatch, undecodable body.
pub fn decode_journal(bytes: &[u8], path: &Path) -> Result<Journal> {
    let bad = |reason: String| Error::Journal {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() < PREFIX_LEN + CHECKSUM_LEN || bytes[..8] != JOURNAL_MAGIC {
        return Err(bad("not a zib journal (wrong magic or too short)".into()));
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(version);
    if version != JOURNAL_VERSION {
        return Err(bad(format!(
            "journal format version {version}; this zib reads version {JOURNAL_VERSION} \
             (written by another zib version?)"
        )));
    }
    let mut body_len = [0u8; 8];
    body_len.copy_from_slice(&bytes[12..20]);
    let body_len = u64::from_le_bytes(body_len);
    let expected_len = usize::try_from(body_len)
        .ok()
        .and_then(|len| len.checked_add(PREFIX_LEN + CHECKSUM_LEN));
    if expected_len != Some(bytes.len()) {
        return Err(bad(format!(
            "the file is {} bytes, its header says {}: truncated or corrupt",
            bytes.len(),
            body_len.saturating_add((PREFIX_LEN + CHECKSUM_LEN) as u64)
        )));
    }
    let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if digest(&SHA256, content).as_ref() != checksum {
        return Err(bad("checksum mismatch: the file is corrupt".into()));
    }
    bincode::deserialize(&content[PREFIX_LEN..])
        .map_err(|error| bad(format!("the body does not decode: {error}")))
}

/// Reads the journal at `path`; `Ok(None)` when there is none.
///
/// # Errors
///
/// [`Error::Journal`] for a file that is not a readable version-1 journal;
/// [`Error::LocalState`] when it cannot be read.
pub fn read_journal(path: &Path) -> Result<Option<Journal>> {
    match std::fs::read(path) {
        Ok(bytes) => decode_journal(&bytes, path).map(Some),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::LocalState {
            path: path.to_owned(),
            action: "read the resume journal",
            source,
        }),
    }
}

/// The directory holding one repository's journals and locks.
pub fn repository_state_dir(state_dir: &Path, repository: RepositoryId) -> PathBuf {
    state_dir.join(repository.to_string())
}

/// The file-name stem for a dataset: its name in hex (any name becomes a safe file
/// name), or `h-` and the SHA-256 of a name too long for that.
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

/// Where the journal of `dataset_name`'s backups into `repository` lives.
pub fn journal_path(state_dir: &Path, repository: RepositoryId, dataset_name: &str) -> PathBuf {
    repository_state_dir(state_dir, repository)
        .join(format!("{}.journal", dataset_stem(dataset_name)))
}

/// Where the lock of `dataset_name`'s backups into `repository` lives.
pub fn lock_path(state_dir: &Path, repository: RepositoryId, dataset_name: &str) -> PathBuf {
    repository_state_dir(state_dir, repository).join(format!("{}.lock", dataset_stem(dataset_name)))
}

/// Where a run records the name of the snapshot it is about to create, until the
/// journal names it: a run killed in between leaves the record, and the next run
/// removes the snapshot it names (zib created it and no backup holds it). The file holds
/// the snapshot's short name in UTF-8.
pub fn pending_snapshot_path(
    state_dir: &Path,
    repository: RepositoryId,
    dataset_name: &str,
) -> PathBuf {
    repository_state_dir(state_dir, repository)
        .join(format!("{}.creating", dataset_stem(dataset_name)))
}

/// Records durably that the snapshot `name` is about to be created.
///
/// # Errors
///
/// [`Error::LocalState`] when the state directory cannot be written.
pub(crate) async fn record_pending_snapshot(path: &Path, name: &str) -> Result<()> {
    let bytes = name.as_bytes().to_vec();
    off_the_runtime(path, "record the snapshot being created", move |path| {
        write_durably(path, &bytes)
    })
    .await
}

/// The snapshot name a pending record holds, if there is one.
///
/// # Errors
///
/// [`Error::LocalState`] when the file exists but cannot be read.
pub(crate) fn read_pending_snapshot(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::LocalState {
            path: path.to_owned(),
            action: "read the record of the snapshot being created",
            source,
        }),
    }
}

/// Deletes a pending record (the journal names the snapshot now, or it was dealt with).
///
/// # Errors
///
/// [`Error::LocalState`] when the file cannot be deleted.
pub(crate) async fn clear_pending_snapshot(path: &Path) -> Result<()> {
    off_the_runtime(
        path,
        "delete the record of the snapshot being created",
        remove_durably,
    )
    .await
}

/// Runs a blocking file operation on `path` (writes, fsyncs) on tokio's blocking pool,
/// so the fsyncs never stall the tasks uploading parts; `action` names it if the pool
/// itself fails.
async fn off_the_runtime(
    path: &Path,
    action: &'static str,
    operation: impl FnOnce(&Path) -> Result<()> + Send + 'static,
) -> Result<()> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || operation(&owned))
        .await
        .map_err(|error| Error::LocalState {
            path: path.to_owned(),
            action,
            source: std::io::Error::other(error.to_string()),
        })?
}

/// The lock file that guards the journal at `journal`.
pub(crate) fn lock_path_for_journal(journal: &Path) -> PathBuf {
    journal.with_extension("lock")
}

/// Every journal file of `repository` in `state_dir` (none if the directory is absent).
///
/// # Errors
///
/// [`Error::LocalState`] when the directory exists but cannot be listed.
pub fn list_journals(state_dir: &Path, repository: RepositoryId) -> Result<Vec<PathBuf>> {
    let dir = repository_state_dir(state_dir, repository);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::LocalState {
                path: dir,
                action: "list the resume journals",
                source,
            })
        }
    };
    let mut journals = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::LocalState {
            path: dir.clone(),
            action: "list the resume journals",
            source,
        })?;
        let path = entry.path();
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

/// A journal and the file it is kept in.
#[derive(Debug)]
pub struct JournalFile {
    path: PathBuf,
    journal: Journal,
}

impl JournalFile {
    /// A journal to be kept at `path` (nothing is written until [`save`](Self::save)).
    pub fn new(path: PathBuf, journal: Journal) -> Self {
        Self { path, journal }
    }

    /// The journal's current state.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Where the journal is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// Replaces the file with the current state, durably: when this returns, a crash
    /// at any later instant finds this state (or a later one).
    ///
    /// The whole file is rewritten (temporary file, fsync, rename, fsync of the
    /// directory) rather than appended to: it is small (completed volumes are one entry
    /// each; only the volume in flight lists its parts), a rename is atomic, and a reader
    /// therefore always sees one complete, checksummed state — no torn tail to repair.
    ///
    /// # Errors
    ///
    /// [`Error::LocalState`] when the state directory cannot be written.
    pub async fn save(&self) -> Result<()> {
        let bytes = encode_journal(&self.journal)?;
        off_the_runtime(&self.path, "write the resume journal", move |path| {
            write_durably(path, &bytes)
        })
        .await
    }

    /// Deletes the journal (after the manifest committed, or when it is abandoned).
    ///
    /// # Errors
    ///
    /// [`Error::LocalState`] when the file cannot be deleted.
    pub async fn remove(&self) -> Result<()> {
        off_the_runtime(&self.path, "delete the resume journal", remove_durably).await
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let state = |action: &'static str| {
        move |source| Error::LocalState {
            path: path.to_owned(),
            action,
            source,
        }
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(state("create the state directory"))?;
    let extension = path.extension().map_or_else(String::new, |extension| {
        extension.to_string_lossy().into_owned()
    });
    let temporary = path.with_extension(format!("{extension}.tmp"));
    let mut file = std::fs::File::create(&temporary).map_err(state("write the resume journal"))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(state("write the resume journal"))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(state("write the resume journal"))?;
    sync_dir(dir).map_err(state("write the resume journal"))
}

fn remove_durably(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::LocalState {
                path: path.to_owned(),
                action: "delete the resume journal",
                source,
            })
        }
    }
    sync_dir(path.parent().unwrap_or_else(|| Path::new("."))).map_err(|source| Error::LocalState {
        path: path.to_owned(),
        action: "delete the resume journal",
        source,
    })
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Moves a journal aside (`….journal.<why>-<unix seconds>`, `why` being `unreadable` or
/// `abandoned`) so the next run starts afresh while the file stays for inspection (it is
/// no longer a journal: clean-up ages its uploads like any other leftover); returns
/// where it went.
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

    fn sample() -> Journal {
        Journal {
            repository_id: [1; ID_LEN],
            dataset_name: "tank/family photos".into(),
            dataset_id: [2; ID_LEN],
            backup_id: [3; ID_LEN],
            source: JournalSource::Zfs,
            target: JournalSnapshot {
                name: "zib-20270115T000000Z".into(),
                identity: JournalIdentity::ZfsGuid(42),
            },
            snapshot_created_by_zib: true,
            kind: JournalKind::Incremental {
                base_backup: [4; ID_LEN],
                base_snapshot_name: "zib-20261215T000000Z".into(),
                base_identity: JournalIdentity::ZfsGuid(41),
            },
            send_flags: 0b1001,
            shape: JournalShape {
                volume_plaintext_len: 1 << 30,
                part_len: 64 << 20,
                parts_in_flight: 4,
            },
            volumes: vec![
                JournalVolume {
                    index: 0,
                    upload_id: "upload-0".into(),
                    salt: [5; SALT_LEN],
                    state: VolumeState::Completed {
                        plaintext_len: 1 << 30,
                        ciphertext_len: (1 << 30) + 16_442,
                        plaintext_sha256: [6; 32],
                        parts: 16,
                    },
                },
                JournalVolume {
                    index: 1,
                    upload_id: "upload-1".into(),
                    salt: [7; SALT_LEN],
                    state: VolumeState::Uploading {
                        parts: vec![
                            JournalPart {
                                number: 1,
                                plaintext_start: 0,
                                plaintext_len: 1 << 26,
                                plaintext_sha256: [8; 32],
                                last: false,
                                etag: Some("\"etag-1\"".into()),
                            },
                            JournalPart {
                                number: 2,
                                plaintext_start: 1 << 26,
                                plaintext_len: 1 << 26,
                                plaintext_sha256: [9; 32],
                                last: false,
                                etag: None,
                            },
                        ],
                    },
                },
            ],
        }
    }

    #[test]
    fn a_journal_round_trips_through_its_file_format() {
        let journal = sample();
        let bytes = encode_journal(&journal).unwrap();
        assert_eq!(&bytes[..8], b"ZIBJRNL\n");
        assert_eq!(decode_journal(&bytes, Path::new("j")).unwrap(), journal);
        assert_eq!(journal.confirmed_parts(), 17);
        assert_eq!(journal.completed_volumes(), 1);
    }

    #[test]
    fn a_journal_survives_a_durable_write_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo").join("x.journal");
        assert_eq!(read_journal(&path).unwrap(), None);
        write_durably(&path, &encode_journal(&sample()).unwrap()).unwrap();
        assert_eq!(read_journal(&path).unwrap(), Some(sample()));
        assert!(!path.with_extension("journal.tmp").exists());
        remove_durably(&path).unwrap();
        assert_eq!(read_journal(&path).unwrap(), None);
    }

    #[test]
    fn any_flipped_or_missing_byte_is_reported_as_a_corrupt_journal() {
        let bytes = encode_journal(&sample()).unwrap();
        for position in [0, 9, 15, 30, bytes.len() / 2, bytes.len() - 1] {
            let mut corrupt = bytes.clone();
            corrupt[position] ^= 0x40;
            let error = decode_journal(&corrupt, Path::new("/state/x.journal")).unwrap_err();
            assert!(
                matches!(error, Error::Journal { .. }),
                "byte {position}: {error}"
            );
            assert!(error.to_string().contains("/state/x.journal"), "{error}");
        }
        for len in [0, 7, 19, 40, bytes.len() - 1] {
            let error = decode_journal(&bytes[..len], Path::new("j")).unwrap_err();
            assert!(matches!(error, Error::Journal { .. }), "{len}: {error}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_journal(&longer, Path::new("j")).is_err());
    }

    #[test]
    fn another_version_is_refused_with_its_number() {
        let mut bytes = encode_journal(&sample()).unwrap();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        // A valid checksum, so only the version can be the reason.
        let len = bytes.len() - CHECKSUM_LEN;
        let checksum = digest(&SHA256, &bytes[..len]);
        bytes[len..].copy_from_slice(checksum.as_ref());
        let error = decode_journal(&bytes, Path::new("j")).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("version 2"), "{text}");
        assert!(text.contains("version 1"), "{text}");
    }

    #[test]
    fn dataset_names_become_safe_distinct_file_names() {
        let repository = RepositoryId::from_bytes([1; ID_LEN]);
        let state = Path::new("/state");
        let a = journal_path(state, repository, "tank/a");
        let b = journal_path(state, repository, "tank/b");
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'),
            "{name}"
        );
        let long = "x/".repeat(200);
        let long_path = journal_path(state, repository, &long);
        assert!(long_path.file_name().unwrap().len() < 100);
        assert_eq!(
            lock_path_for_journal(&a),
            lock_path(state, repository, "tank/a")
        );
        let weird = journal_path(state, repository, "../../etc/passwd");
        assert_eq!(weird.parent(), a.parent());
    }
}
