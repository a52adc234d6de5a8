//! The resume journal: local state that lets a backup killed at any instant continue
//! where it stopped, without re-sending what the bucket already holds.
//!
//! One journal per (repository, dataset), in the state directory ([`super`]). It is
//! local state, not part of the on-bucket format: deleting the state directory loses
//! nothing but resumability (the next run plans afresh; clean-up removes what the old
//! run left once it is old).
//!
//! It records the backup in progress — backup and dataset ids, the target snapshot
//! (name and identity), the kind and base, the send flags and the volume shape — and, per
//! volume, its multipart upload id and encryption salt; per part of the volume being
//! uploaded, its number, the plaintext range it covers, its check ([`PartCheck`]: the
//! SHA-256 of its segments' authentication tags for a backup this zib began, of its
//! plaintext for one begun under journal version 1 or 2) and, once S3 confirmed it, its
//! ETag. A completed volume keeps its upload id and salt and its
//! list entry (lengths and plaintext hash) but drops its parts, so the journal stays a
//! few hundred bytes per volume plus one line per part of the volume in flight, whatever
//! the stream's size.
//!
//! Why the check is written before the part is sent: a resumed run re-encrypts with the
//! journalled salt, in memory, which reproduces the ciphertext only for identical
//! plaintext. Each journalled part's check is compared before that part is sent again
//! under the salt (and a mismatch discards the volume before anything more is sent), so
//! no two different plaintexts encrypted under one salt ever leave the host — provided
//! the journal on disk is the one resumed, which the dataset lock ensures: only a run
//! holding it reads and writes the journal, and nothing outside this crate can build one.
//!
//! File format (version 3): the 8-byte magic `ZIBJRNL\n`, the version as a little-endian
//! `u32`, the body length as a little-endian `u64`, the body ([`Journal`] in bincode 1.3,
//! whose encoding is pinned in the workspace), then the SHA-256 of everything before it.
//! A file with another magic or version, a wrong length or checksum, or a body that does
//! not decode is reported as [`Error::Journal`]; it is never half-used. The body's
//! layout is the derived encoding of the types below, field by field: changing a field's
//! type or order is a new journal version (a test pins the bytes). Versions 1 and 2 are
//! still read, and their uploads resume as they began. Version 2 is the same body
//! without the last field, `part_check`: its parts' checks are plaintext hashes
//! ([`PartCheck::PlaintextSha256`]). Version 1 also lacks the field before it,
//! `cutting`: its uploads cut each volume's final segment into a part of its own
//! ([`PartCutting::FinalSegmentAlone`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zib_crypto::SALT_LEN;
use zib_snapshot_source::{SnapshotIdentity, SourceKind};

use super::envelope::{self, Unreadable};
use super::{off_the_runtime, read_if_exists, remove_durably, write_durably};
use crate::error::{Error, Result};
use crate::format::records::{BackupKind, SendFlagBits, VolumeListEntry};
use crate::ids::{BackupId, DatasetId, RepositoryId};
use crate::upload::parts::PartCheck;
use crate::upload::shape::{PartCutting, VolumeShape};

/// The first bytes of every journal file.
pub(crate) const JOURNAL_MAGIC: [u8; 8] = *b"ZIBJRNL\n";

/// The journal format this zib writes.
pub(crate) const JOURNAL_VERSION: u32 = 3;

/// An older format this zib still reads: version 3's body without its last field
/// (`part_check`), whose parts are checked by their plaintext's SHA-256.
pub(crate) const JOURNAL_VERSION_2: u32 = 2;

/// The oldest format this zib still reads: version 2's body without its last field
/// (`cutting`), whose uploads cut each volume's final segment into a part of its own.
pub(crate) const JOURNAL_VERSION_1: u32 = 1;

/// The backup in progress for one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// The repository the backup goes to.
    pub(crate) repository_id: RepositoryId,
    /// The dataset's name as given to the backup.
    pub(crate) dataset_name: String,
    /// The dataset id the backup is filed under (may be new: not yet in the bucket).
    pub(crate) dataset_id: DatasetId,
    /// The backup id: a resumed run commits under the same one.
    pub(crate) backup_id: BackupId,
    /// Which file system sends the stream.
    pub(crate) source: SourceKind,
    /// The snapshot being sent.
    pub(crate) target: JournalSnapshot,
    /// Whether zib created the target snapshot (recorded in the manifest).
    pub(crate) snapshot_created_by_zib: bool,
    /// Full, or incremental from which base.
    pub(crate) kind: BackupKind,
    /// Send flags, as the manifest records them.
    pub(crate) send_flags: SendFlagBits,
    /// How the stream is cut (a resumed run MUST cut it the same way; its parts in
    /// flight are the current run's, not these).
    pub(crate) shape: VolumeShape,
    /// Volumes started so far, in index order (index i at position i).
    pub(crate) volumes: Vec<JournalVolume>,
    /// Where each volume's final segment goes (version 1 journals: alone in its own
    /// part). After the fields of version 1, so that its body is a prefix of this one.
    pub(crate) cutting: PartCutting,
    /// What each part's check is a digest of (versions 1 and 2: its plaintext). The last
    /// field, so that a version-2 body is this body without it.
    pub(crate) part_check: PartCheck,
}

/// A snapshot by name and identity (the name alone may have been reused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalSnapshot {
    /// Snapshot name without the dataset.
    pub(crate) name: String,
    /// Its identity.
    pub(crate) identity: SnapshotIdentity,
}

/// One volume's upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalVolume {
    /// Volume index.
    pub(crate) index: u32,
    /// The multipart upload id.
    pub(crate) upload_id: String,
    /// The salt its key was derived from.
    pub(crate) salt: [u8; SALT_LEN],
    /// Uploading or completed.
    pub(crate) state: VolumeState,
}

/// Where a volume's upload stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum VolumeState {
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
pub(crate) struct JournalPart {
    /// Part number, from 1.
    pub(crate) number: u32,
    /// Offset of its plaintext within the volume's plaintext.
    pub(crate) plaintext_start: u64,
    /// Plaintext bytes it encrypts.
    pub(crate) plaintext_len: u64,
    /// Its check, as the journal's `part_check` says: written before the part is sent,
    /// compared before it is sent again.
    pub(crate) check: [u8; 32],
    /// Whether it is the volume's last part (its last segment is sealed as final).
    pub(crate) last: bool,
    /// The ETag S3 returned, once the part is stored.
    pub(crate) etag: Option<String>,
}

impl Journal {
    /// Parts S3 confirmed so far, over all volumes (a completed volume counts all its
    /// parts).
    pub(crate) fn confirmed_parts(&self) -> u64 {
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
    pub(crate) fn completed_volumes(&self) -> usize {
        self.volumes
            .iter()
            .filter(|volume| matches!(volume.state, VolumeState::Completed { .. }))
            .count()
    }
}

impl JournalVolume {
    /// The list entry of a completed volume.
    pub(crate) fn completed_entry(&self) -> Option<VolumeListEntry> {
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

/// Encodes a journal as a version-3 file.
pub(crate) fn encode_journal(journal: &Journal) -> Result<Vec<u8>> {
    // bincode refuses only types it cannot encode (maps with non-string keys and the
    // like), which these are not: a failure here is a bug.
    let body = bincode::serialize(journal).map_err(|error| {
        Error::Internal(format!(
            "could not encode the resume journal of {}: {error}",
            journal.dataset_name
        ))
    })?;
    Ok(envelope::seal(&JOURNAL_MAGIC, JOURNAL_VERSION, &body))
}

/// Decodes a journal file's bytes; `path` names it in errors.
///
/// # Errors
///
/// [`Error::Journal`] saying what is wrong: not a journal, another version, truncated,
/// checksum mismatch, undecodable body.
pub(crate) fn decode_journal(bytes: &[u8], path: &Path) -> Result<Journal> {
    let bad = |reason: String| Error::Journal {
        path: path.to_owned(),
        reason,
    };
    let unreadable = |error: Unreadable| match error {
        Unreadable::NotThisKind => bad("not a zib journal (wrong magic or too short)".into()),
        Unreadable::Version(version) => bad(format!(
            "journal format version {version}; this zib reads versions {JOURNAL_VERSION_1} \
             to {JOURNAL_VERSION} (written by a newer zib?)"
        )),
        other => bad(other.to_string()),
    };
    // Each version appended fields to the one before: an older body is completed with
    // the values its uploads used.
    let (version, appended) = match envelope::open(bytes, &JOURNAL_MAGIC, JOURNAL_VERSION) {
        Ok(_) => (JOURNAL_VERSION, Vec::new()),
        Err(Unreadable::Version(JOURNAL_VERSION_2)) => {
            (JOURNAL_VERSION_2, encoded(&PartCheck::PlaintextSha256)?)
        }
        Err(Unreadable::Version(JOURNAL_VERSION_1)) => (
            JOURNAL_VERSION_1,
            [
                encoded(&PartCutting::FinalSegmentAlone)?,
                encoded(&PartCheck::PlaintextSha256)?,
            ]
            .concat(),
        ),
        Err(error) => return Err(unreadable(error)),
    };
    let mut body = envelope::open(bytes, &JOURNAL_MAGIC, version)
        .map_err(unreadable)?
        .to_vec();
    body.extend_from_slice(&appended);
    envelope::decode_body(&body).map_err(|error| bad(format!("the body does not decode: {error}")))
}

/// A field's encoding, to complete an older version's body.
fn encoded<T: Serialize + std::fmt::Debug>(value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value)
        .map_err(|error| Error::Internal(format!("could not encode {value:?}: {error}")))
}

/// Reads the journal at `path`; `Ok(None)` when there is none. Blocking.
///
/// # Errors
///
/// [`Error::Journal`] for a file that is not a readable journal (versions 1 to 3);
/// [`Error::LocalState`] when it cannot be read.
pub(crate) fn read_journal_blocking(path: &Path) -> Result<Option<Journal>> {
    read_if_exists(path, "read the resume journal")?
        .map(|bytes| decode_journal(&bytes, path))
        .transpose()
}

/// Reads the journal at `path` off the runtime; `Ok(None)` when there is none.
///
/// # Errors
///
/// As [`read_journal_blocking`].
pub(crate) async fn read_journal(path: &Path) -> Result<Option<Journal>> {
    off_the_runtime(path, "read the resume journal", read_journal_blocking).await
}

/// A journal and the file it is kept in.
#[derive(Debug)]
pub(crate) struct JournalFile {
    path: PathBuf,
    journal: Journal,
}

impl JournalFile {
    /// A journal to be kept at `path` (nothing is written until [`save`](Self::save)).
    pub(crate) fn new(path: PathBuf, journal: Journal) -> Self {
        Self { path, journal }
    }

    /// The journal's current state.
    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Where the journal is kept.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// Replaces the file with the current state, durably: when this returns, a crash
    /// at any later instant finds this state (or a later one).
    ///
    /// The whole file is rewritten rather than appended to: it is small (completed
    /// volumes are one entry each; only the volume in flight lists its parts), a rename
    /// is atomic, and a reader therefore always sees one complete, checksummed state —
    /// no torn tail to repair.
    ///
    /// # Errors
    ///
    /// [`Error::LocalState`] when the state directory cannot be written.
    pub(crate) async fn save(&self) -> Result<()> {
        let bytes = encode_journal(&self.journal)?;
        let action = "write the resume journal";
        off_the_runtime(&self.path, action, move |path| {
            write_durably(path, &bytes, action)
        })
        .await
    }

    /// Deletes the journal (after the manifest committed, or when it is abandoned).
    ///
    /// # Errors
    ///
    /// [`Error::LocalState`] when the file cannot be deleted.
    pub(crate) async fn remove(&self) -> Result<()> {
        let action = "delete the resume journal";
        off_the_runtime(&self.path, action, move |path| remove_durably(path, action)).await
    }
}

/// Saves a journal as large as a 1 TiB backup's gets near its end with the default
/// shape (1,023 completed volumes and 16 parts of the volume in flight) `rounds` times
/// in `dir`; returns its size in bytes and the time all the saves took. For the
/// `journal_save` benchmark.
///
/// # Errors
///
/// [`Error::LocalState`] when `dir` cannot be written.
#[cfg(feature = "internals")]
pub async fn journal_save_benchmark(
    dir: &Path,
    rounds: u32,
) -> Result<(usize, std::time::Duration)> {
    let upload_id = "2~fXq8mZbXy0c3yYtq6sJbCq7rQ1Hqz5xY9wA1Lz3nV5mPQkR";
    let mut volumes: Vec<JournalVolume> = (0..1023)
        .map(|index| JournalVolume {
            index,
            upload_id: upload_id.into(),
            salt: [7; SALT_LEN],
            state: VolumeState::Completed {
                plaintext_len: 1 << 30,
                ciphertext_len: (1 << 30) + 262_202,
                plaintext_sha256: [9; 32],
                parts: 16,
            },
        })
        .collect();
    volumes.push(JournalVolume {
        index: 1023,
        upload_id: upload_id.into(),
        salt: [7; SALT_LEN],
        state: VolumeState::Uploading {
            parts: (1..=16)
                .map(|number| JournalPart {
                    number,
                    plaintext_start: u64::from(number - 1) << 26,
                    plaintext_len: 1 << 26,
                    check: [3; 32],
                    last: false,
                    etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
                })
                .collect(),
        },
    });
    let journal = Journal {
        repository_id: RepositoryId::from_bytes([1; 16]),
        dataset_name: "tank/family photos".into(),
        dataset_id: DatasetId::from_bytes([2; 16]),
        backup_id: BackupId::from_bytes([3; 16]),
        source: SourceKind::Zfs,
        target: JournalSnapshot {
            name: "zib-20270115T000000Z".into(),
            identity: SnapshotIdentity::ZfsGuid(42),
        },
        snapshot_created_by_zib: true,
        kind: BackupKind::Full,
        send_flags: SendFlagBits(0),
        shape: VolumeShape::default(),
        volumes,
        cutting: PartCutting::FinalSegmentInLastPart,
        part_check: PartCheck::SegmentTags,
    };
    let bytes = encode_journal(&journal)?.len();
    let file = JournalFile::new(dir.join("bench.journal"), journal);
    file.save().await?;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        file.save().await?;
    }
    let elapsed = start.elapsed();
    file.remove().await?;
    Ok((bytes, elapsed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ids::ID_LEN;

    fn sample() -> Journal {
        Journal {
            repository_id: RepositoryId::from_bytes([1; ID_LEN]),
            dataset_name: "tank/family photos".into(),
            dataset_id: DatasetId::from_bytes([2; ID_LEN]),
            backup_id: BackupId::from_bytes([3; ID_LEN]),
            source: SourceKind::Zfs,
            target: JournalSnapshot {
                name: "zib-20270115T000000Z".into(),
                identity: SnapshotIdentity::ZfsGuid(42),
            },
            snapshot_created_by_zib: true,
            kind: BackupKind::Incremental {
                base_backup: BackupId::from_bytes([4; ID_LEN]),
                base_snapshot_name: "zib-20261215T000000Z".into(),
                base_identity: SnapshotIdentity::ZfsGuid(41),
            },
            send_flags: SendFlagBits(0b1001),
            shape: VolumeShape {
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
                                check: [8; 32],
                                last: false,
                                etag: Some("\"etag-1\"".into()),
                            },
                            JournalPart {
                                number: 2,
                                plaintext_start: 1 << 26,
                                plaintext_len: 1 << 26,
                                check: [9; 32],
                                last: false,
                                etag: None,
                            },
                        ],
                    },
                },
            ],
            cutting: PartCutting::FinalSegmentInLastPart,
            part_check: PartCheck::SegmentTags,
        }
    }

    /// The sample journal's file, as the version-1 code wrote it before the journal's
    /// types were shared with the manifest (`BackupKind`, `SnapshotIdentity`, the ids,
    /// `VolumeShape`): their derived encodings are the same bytes, so a journal left by
    /// an older zib still resumes.
    const SAMPLE_FILE_HEX: &[&str] = &[
        "5a49424a524e4c0a010000000302000000000000010101010101010101010101010101011200000000000000",
        "74616e6b2f66616d696c792070686f746f730202020202020202020202020202020203030303030303030303",
        "0303030303030000000014000000000000007a69622d3230323730313135543030303030305a000000002a00",
        "00000000000001010000000404040404040404040404040404040414000000000000007a69622d3230323631",
        "323135543030303030305a000000002900000000000000090000000000004000000000000000040000000004",
        "00000000000000020000000000000000000000080000000000000075706c6f61642d30050505050505050505",
        "05050505050505050505050505050505050505050505050100000000000040000000003a4000400000000006",
        "0606060606060606060606060606060606060606060606060606060606060610000000000000000100000008",
        "0000000000000075706c6f61642d310707070707070707070707070707070707070707070707070707070707",
        "0707070000000002000000000000000100000000000000000000000000000400000000080808080808080808",
        "08080808080808080808080808080808080808080808080001080000000000000022657461672d3122020000",
        "0000000004000000000000000400000000090909090909090909090909090909090909090909090909090909",
        "09090909090000085e9e535cdff4e0bdb5de93ae1eab477c4ef913fb6c05e89ad7a692427cdc31",
    ];

    /// Each later version is version 1's body followed by the fields it added, in
    /// bincode: `u32` variant indexes, the cutting (1 for `FinalSegmentInLastPart`) in
    /// version 2, then the part check (1 for `SegmentTags`) in version 3.
    fn later_version_of(version_1: &[u8], version: u32) -> Vec<u8> {
        let mut body = version_1[20..version_1.len() - 32].to_vec();
        for _ in 1..version {
            body.extend_from_slice(&1u32.to_le_bytes());
        }
        envelope::seal(&JOURNAL_MAGIC, version, &body)
    }

    #[test]
    fn the_file_format_is_pinned() {
        let old = hex::decode(SAMPLE_FILE_HEX.concat()).unwrap();
        assert_eq!(
            encode_journal(&sample()).unwrap(),
            later_version_of(&old, 3)
        );
    }

    #[test]
    fn a_version_1_journal_resumes_with_the_final_segment_in_its_own_part_and_plaintext_checks() {
        let old = hex::decode(SAMPLE_FILE_HEX.concat()).unwrap();
        assert_eq!(
            decode_journal(&old, Path::new("j")).unwrap(),
            Journal {
                cutting: PartCutting::FinalSegmentAlone,
                part_check: PartCheck::PlaintextSha256,
                ..sample()
            }
        );
    }

    #[test]
    fn a_version_2_journal_resumes_with_plaintext_checks() {
        let old = hex::decode(SAMPLE_FILE_HEX.concat()).unwrap();
        assert_eq!(
            decode_journal(&later_version_of(&old, 2), Path::new("j")).unwrap(),
            Journal {
                part_check: PartCheck::PlaintextSha256,
                ..sample()
            }
        );
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

    #[tokio::test]
    async fn a_journal_survives_a_durable_write_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo").join("x.journal");
        assert_eq!(read_journal(&path).await.unwrap(), None);
        let file = JournalFile::new(path.clone(), sample());
        file.save().await.unwrap();
        assert_eq!(read_journal(&path).await.unwrap(), Some(sample()));
        file.remove().await.unwrap();
        assert_eq!(read_journal(&path).await.unwrap(), None);
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
        bytes[8..12].copy_from_slice(&4u32.to_le_bytes());
        // A valid checksum, so only the version can be the reason.
        let len = bytes.len() - 32;
        let checksum = ring::digest::digest(&ring::digest::SHA256, &bytes[..len]);
        bytes[len..].copy_from_slice(checksum.as_ref());
        let error = decode_journal(&bytes, Path::new("j")).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("version 4"), "{text}");
        assert!(text.contains("versions 1 to 3"), "{text}");
    }
}
