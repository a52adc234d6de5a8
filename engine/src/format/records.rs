//! The plaintexts of the sealed records that backups carry in their object metadata.
//!
//! Byte layouts are normative (`docs/FORMAT.md`, "On-bucket layout"): fixed-width
//! little-endian integers, length-prefixed strings, explicit tags. They are written by
//! hand, not derived with serde, so that no library upgrade can silently change bytes
//! that must stay readable for decades. A new field is a new record version.
//!
//! Decoding is strict: unknown versions, unknown tags, bad lengths, invalid UTF-8 and
//! trailing bytes are all [`Error::Corrupt`].

use serde::{Deserialize, Serialize};
use zib_snapshot_source::{SendFlags, SnapshotIdentity, SourceKind};

use crate::error::{Error, Result};
use crate::ids::{BackupId, DatasetId, ID_LEN};

/// Version byte of every record plaintext this code writes, but for manifests that carry
/// sizes ([`MANIFEST_WITH_SIZES_VERSION`]).
pub(crate) const RECORD_PLAINTEXT_VERSION: u8 = 1;

/// Version byte of a manifest record that ends with the size fields (the snapshot's data
/// size, the incremental a full replaced). Manifests without them are still written as
/// version 1, so a repository whose source cannot estimate sizes stays readable by every
/// zib that reads version 1.
pub(crate) const MANIFEST_WITH_SIZES_VERSION: u8 = 2;

/// The format v1 tag of a source kind (which tool receives the stream).
fn source_tag(kind: SourceKind) -> u8 {
    match kind {
        SourceKind::Zfs => 1,
        SourceKind::Btrfs => 2,
    }
}

fn source_from_tag(tag: u8) -> Option<SourceKind> {
    match tag {
        1 => Some(SourceKind::Zfs),
        2 => Some(SourceKind::Btrfs),
        _ => None,
    }
}

/// The format v1 tag of a snapshot identity.
fn identity_tag(identity: &SnapshotIdentity) -> u8 {
    match identity {
        SnapshotIdentity::ZfsGuid(_) => 1,
        SnapshotIdentity::BtrfsUuid(_) => 2,
    }
}

/// Whether a backup's stream stands alone or applies on top of an earlier backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupKind {
    /// A full stream: receivable into an empty place.
    Full,
    /// An incremental stream from `base_snapshot` (itself restored by `base_backup`).
    Incremental {
        /// The backup whose snapshot this stream applies on top of.
        base_backup: BackupId,
        /// Name of the base snapshot (informative; the identity is what links).
        base_snapshot_name: String,
        /// Identity of the base snapshot.
        base_identity: SnapshotIdentity,
    },
}

/// Send options that change the stream and must stay the same along a chain.
///
/// Bit values are format v1: bit 0 large blocks (`zfs send -L`), bit 1 compressed
/// (`-c`), bit 2 embedded data (`-e`), bit 3 raw (`-w`). Other bits are reserved and
/// must be zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SendFlagBits(pub u32);

impl SendFlagBits {
    /// Every bit format v1 defines.
    pub const KNOWN: u32 = 0b1111;

    /// The `zfs send` flags these bits stand for.
    pub fn flags(self) -> SendFlags {
        let mut flags = SendFlags::NONE;
        flags.large_blocks = self.0 & 1 != 0;
        flags.compressed = self.0 & 1 << 1 != 0;
        flags.embedded = self.0 & 1 << 2 != 0;
        flags.raw = self.0 & 1 << 3 != 0;
        flags
    }
}

impl From<SendFlags> for SendFlagBits {
    fn from(flags: SendFlags) -> Self {
        Self(
            u32::from(flags.large_blocks)
                | u32::from(flags.compressed) << 1
                | u32::from(flags.embedded) << 2
                | u32::from(flags.raw) << 3,
        )
    }
}

/// What a manifest says about its backup: the catalog is built from these alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The file system the stream came from.
    pub source: SourceKind,
    /// Full or incremental (and from what).
    pub kind: BackupKind,
    /// zib created the sent snapshot itself (so it may prune it later).
    pub snapshot_created_by_zib: bool,
    /// Send options of the stream.
    pub send_flags: SendFlagBits,
    /// The dataset's opaque id (also in the object key).
    pub dataset_id: DatasetId,
    /// The backup's opaque id (also in the object key).
    pub backup_id: BackupId,
    /// The dataset's name when it was backed up (ZFS dataset or BTRFS subvolume path).
    pub dataset_name: String,
    /// The sent snapshot's name (after `@` on ZFS; the snapshot's path on BTRFS).
    pub snapshot_name: String,
    /// The sent snapshot's identity.
    pub snapshot_identity: SnapshotIdentity,
    /// When the snapshot was taken, seconds since the Unix epoch.
    pub snapshot_created_at: i64,
    /// When the backup committed, seconds since the Unix epoch.
    pub committed_at: i64,
    /// Length of the send stream (the plaintext), bytes.
    pub stream_len: u64,
    /// SHA-256 of the whole send stream.
    pub stream_sha256: [u8; 32],
    /// Sum of the volume objects' lengths (the ciphertext stored), bytes.
    pub stored_len: u64,
    /// Number of volumes.
    pub volume_count: u32,
    /// Plaintext bytes per volume (every volume but the last holds exactly this many).
    pub volume_plaintext_len: u64,
    /// SHA-256 over the volume list: for each volume in index order, `u32 index ||
    /// u64 plaintext_len || u64 ciphertext_len || [32] plaintext_sha256` (docs/FORMAT.md).
    pub volume_list_sha256: [u8; 32],
    /// Bytes of data the snapshot holds: the length of a full send stream of it (a full
    /// backup's own stream length; for an incremental, the source's estimate). `None`
    /// when unknown (a source without size estimates, or a manifest older than this
    /// field). Consolidation measures how much of a restore point's data is gone from the
    /// newest snapshot with it.
    pub snapshot_bytes: Option<u64>,
    /// For a full sent where an incremental could have continued a chain (a
    /// consolidation): the incremental it replaced. `None` otherwise, or when unknown.
    pub replaced_incremental: Option<ReplacedIncremental>,
}

/// The incremental a full backup was sent instead of: what was written between the
/// chain's last snapshot and this one, which the catalog cannot otherwise know across a
/// fresh full (the full carries the data that survived, not what was rewritten or
/// deleted on the way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplacedIncremental {
    /// The backup the incremental would have been based on (the old chain's tip).
    pub base_backup: BackupId,
    /// The incremental stream's size, as the source estimated it.
    pub estimated_bytes: u64,
}

/// What a volume object says about itself, fixed when its upload is created (S3 sets
/// metadata at CreateMultipartUpload, before any byte of the volume is known; the
/// volume's lengths and hash are bound by the manifest's volume list hash instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VolumeRecord {
    /// The dataset's opaque id.
    pub dataset_id: DatasetId,
    /// The backup's opaque id.
    pub backup_id: BackupId,
    /// Position of the volume in the stream, from 0.
    pub volume_index: u32,
    /// Offset of the volume's first plaintext byte within the stream.
    pub stream_offset: u64,
}

/// One entry of a backup's volume list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VolumeListEntry {
    /// Position of the volume in the stream, from 0.
    pub index: u32,
    /// Plaintext bytes in the volume.
    pub plaintext_len: u64,
    /// Length of the volume object (header, segments and tags).
    pub ciphertext_len: u64,
    /// SHA-256 of the volume's plaintext.
    pub plaintext_sha256: [u8; 32],
}

/// SHA-256 over the volume list: for each volume in index order,
/// `u32 index || u64 plaintext_len || u64 ciphertext_len || [32] plaintext_sha256`.
pub(crate) fn volume_list_hash(entries: &[VolumeListEntry]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for entry in entries {
        context.update(&entry.index.to_le_bytes());
        context.update(&entry.plaintext_len.to_le_bytes());
        context.update(&entry.ciphertext_len.to_le_bytes());
        context.update(&entry.plaintext_sha256);
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

const KIND_FULL: u8 = 0;
const KIND_INCREMENTAL: u8 = 1;
const FLAG_CREATED_BY_ZIB: u8 = 1;
/// Size fields of a version 2 manifest: which follow.
const SIZE_SNAPSHOT_BYTES: u8 = 1;
const SIZE_REPLACED_INCREMENTAL: u8 = 1 << 1;

impl ManifestRecord {
    /// The record's plaintext bytes (before sealing).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when a name is longer than 65,535 bytes;
    /// [`Error::Internal`] when the send flags use reserved bits (zib never sets them).
    pub fn encode(&self) -> Result<Vec<u8>> {
        if self.send_flags.0 & !SendFlagBits::KNOWN != 0 {
            return Err(Error::Internal(format!(
                "send flags {:#x} use bits format v1 does not define",
                self.send_flags.0
            )));
        }
        let sizes = (u8::from(self.snapshot_bytes.is_some()) * SIZE_SNAPSHOT_BYTES)
            | (u8::from(self.replaced_incremental.is_some()) * SIZE_REPLACED_INCREMENTAL);
        let mut out = Writer::default();
        out.u8(if sizes == 0 {
            RECORD_PLAINTEXT_VERSION
        } else {
            MANIFEST_WITH_SIZES_VERSION
        });
        out.u8(source_tag(self.source));
        out.u8(match self.kind {
            BackupKind::Full => KIND_FULL,
            BackupKind::Incremental { .. } => KIND_INCREMENTAL,
        });
        out.u8(if self.snapshot_created_by_zib {
            FLAG_CREATED_BY_ZIB
        } else {
            0
        });
        out.u32(self.send_flags.0);
        out.bytes(self.dataset_id.as_bytes());
        out.bytes(self.backup_id.as_bytes());
        out.i64(self.snapshot_created_at);
        out.i64(self.committed_at);
        out.u64(self.stream_len);
        out.bytes(&self.stream_sha256);
        out.u64(self.stored_len);
        out.u32(self.volume_count);
        out.u64(self.volume_plaintext_len);
        out.bytes(&self.volume_list_sha256);
        out.string("dataset name", &self.dataset_name)?;
        out.string("snapshot name", &self.snapshot_name)?;
        out.identity(&self.snapshot_identity);
        if let BackupKind::Incremental {
            base_backup,
            base_snapshot_name,
            base_identity,
        } = &self.kind
        {
            out.bytes(base_backup.as_bytes());
            out.string("base snapshot name", base_snapshot_name)?;
            out.identity(base_identity);
        }
        if sizes != 0 {
            out.u8(sizes);
            if let Some(bytes) = self.snapshot_bytes {
                out.u64(bytes);
            }
            if let Some(replaced) = &self.replaced_incremental {
                out.bytes(replaced.base_backup.as_bytes());
                out.u64(replaced.estimated_bytes);
            }
        }
        Ok(out.0)
    }

    /// Decodes a record plaintext; `object` names the object in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for anything but a well-formed version 1 or 2 manifest record.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let mut input = Reader::new(bytes, object, "manifest record");
        let version = input.u8()?;
        if version == 0 {
            return Err(input.corrupt("version 0, which no zib writes".into()));
        }
        if version != RECORD_PLAINTEXT_VERSION && version != MANIFEST_WITH_SIZES_VERSION {
            return Err(input.corrupt(format!(
                "version {version}; this zib reads versions {RECORD_PLAINTEXT_VERSION} and \
                 {MANIFEST_WITH_SIZES_VERSION} (a newer zib may read it)"
            )));
        }
        let source = input.u8()?;
        let source = source_from_tag(source)
            .ok_or_else(|| input.corrupt(format!("unknown source kind {source}")))?;
        let kind_tag = input.u8()?;
        let flags = input.u8()?;
        if flags & !FLAG_CREATED_BY_ZIB != 0 {
            return Err(input.corrupt(format!("unknown flags {flags:#x}")));
        }
        let send_flags = input.u32()?;
        if send_flags & !SendFlagBits::KNOWN != 0 {
            return Err(input.corrupt(format!("unknown send flags {send_flags:#x}")));
        }
        let dataset_id = DatasetId::from_bytes(input.array()?);
        let backup_id = BackupId::from_bytes(input.array()?);
        let snapshot_created_at = input.i64()?;
        let committed_at = input.i64()?;
        let stream_len = input.u64()?;
        let stream_sha256 = input.array()?;
        let stored_len = input.u64()?;
        let volume_count = input.u32()?;
        let volume_plaintext_len = input.u64()?;
        let volume_list_sha256 = input.array()?;
        let dataset_name = input.string()?;
        let snapshot_name = input.string()?;
        let snapshot_identity = input.identity()?;
        let kind = match kind_tag {
            KIND_FULL => BackupKind::Full,
            KIND_INCREMENTAL => BackupKind::Incremental {
                base_backup: BackupId::from_bytes(input.array()?),
                base_snapshot_name: input.string()?,
                base_identity: input.identity()?,
            },
            other => return Err(input.corrupt(format!("unknown backup kind {other}"))),
        };
        let (mut snapshot_bytes, mut replaced_incremental) = (None, None);
        if version == MANIFEST_WITH_SIZES_VERSION {
            let sizes = input.u8()?;
            if sizes & !(SIZE_SNAPSHOT_BYTES | SIZE_REPLACED_INCREMENTAL) != 0 {
                return Err(input.corrupt(format!("unknown size fields {sizes:#x}")));
            }
            if sizes & SIZE_SNAPSHOT_BYTES != 0 {
                snapshot_bytes = Some(input.u64()?);
            }
            if sizes & SIZE_REPLACED_INCREMENTAL != 0 {
                replaced_incremental = Some(ReplacedIncremental {
                    base_backup: BackupId::from_bytes(input.array()?),
                    estimated_bytes: input.u64()?,
                });
            }
        }
        input.end()?;
        Ok(Self {
            source,
            kind,
            snapshot_created_by_zib: flags & FLAG_CREATED_BY_ZIB != 0,
            send_flags: SendFlagBits(send_flags),
            dataset_id,
            backup_id,
            dataset_name,
            snapshot_name,
            snapshot_identity,
            snapshot_created_at,
            committed_at,
            stream_len,
            stream_sha256,
            stored_len,
            volume_count,
            volume_plaintext_len,
            volume_list_sha256,
            snapshot_bytes,
            replaced_incremental,
        })
    }
}

// `decode` and the length are what a reader of volume records needs (verify, and the
// tests that pin the layout).
#[cfg_attr(not(test), allow(dead_code))]
impl VolumeRecord {
    /// Length of an encoded volume record.
    pub(crate) const ENCODED_LEN: usize = 1 + 2 * ID_LEN + 4 + 8;

    /// The record's plaintext bytes (before sealing).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Writer::default();
        out.u8(RECORD_PLAINTEXT_VERSION);
        out.bytes(self.dataset_id.as_bytes());
        out.bytes(self.backup_id.as_bytes());
        out.u32(self.volume_index);
        out.u64(self.stream_offset);
        out.0
    }

    /// Decodes a record plaintext; `object` names the object in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for anything but a well-formed version 1 volume record.
    pub(crate) fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let mut input = Reader::new(bytes, object, "volume record");
        input.version()?;
        let record = Self {
            dataset_id: DatasetId::from_bytes(input.array()?),
            backup_id: BackupId::from_bytes(input.array()?),
            volume_index: input.u32()?,
            stream_offset: input.u64()?,
        };
        input.end()?;
        Ok(record)
    }
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn u16(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn bytes(&mut self, value: &[u8]) {
        self.0.extend_from_slice(value);
    }
    fn string(&mut self, what: &str, value: &str) -> Result<()> {
        let len = u16::try_from(value.len()).map_err(|_| {
            Error::InvalidInput(format!(
                "{what} is {} bytes long; at most 65,535 fit",
                value.len()
            ))
        })?;
        self.u16(len);
        self.bytes(value.as_bytes());
        Ok(())
    }
    fn identity(&mut self, identity: &SnapshotIdentity) {
        self.u8(identity_tag(identity));
        match identity {
            SnapshotIdentity::ZfsGuid(guid) => self.u64(*guid),
            SnapshotIdentity::BtrfsUuid(uuid) => self.bytes(uuid),
        }
    }
}

struct Reader<'a> {
    rest: &'a [u8],
    object: &'a str,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], object: &'a str, what: &'static str) -> Self {
        Self {
            rest: bytes,
            object,
            what,
        }
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            object: self.object.to_owned(),
            reason: format!("{}: {reason}", self.what),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.rest.len() < len {
            return Err(self.corrupt(format!(
                "ends early: {len} more bytes needed, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn version(&mut self) -> Result<()> {
        match self.u8()? {
            RECORD_PLAINTEXT_VERSION => Ok(()),
            0 => Err(self.corrupt("version 0, which no zib writes".into())),
            other => Err(self.corrupt(format!(
                "version {other}; this zib reads version {RECORD_PLAINTEXT_VERSION} (a newer zib may read it)"
            ))),
        }
    }

    fn string(&mut self) -> Result<String> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.corrupt("a name is not UTF-8".into()))
    }

    fn identity(&mut self) -> Result<SnapshotIdentity> {
        match self.u8()? {
            1 => Ok(SnapshotIdentity::ZfsGuid(self.u64()?)),
            2 => Ok(SnapshotIdentity::BtrfsUuid(self.array()?)),
            other => Err(self.corrupt(format!("unknown snapshot identity tag {other}"))),
        }
    }

    fn end(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(format!("{} unexpected trailing bytes", self.rest.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_manifest() -> ManifestRecord {
        ManifestRecord {
            source: SourceKind::Zfs,
            kind: BackupKind::Full,
            snapshot_created_by_zib: true,
            send_flags: SendFlagBits(0b0101),
            dataset_id: DatasetId::from_bytes([1; 16]),
            backup_id: BackupId::from_bytes([2; 16]),
            dataset_name: "tank/photos 2024".into(),
            snapshot_name: "zib-20261129T000000Z".into(),
            snapshot_identity: SnapshotIdentity::ZfsGuid(0x0102_0304_0506_0708),
            snapshot_created_at: 1_795_910_400,
            committed_at: 1_795_910_500,
            stream_len: 5_000_000_000,
            stream_sha256: [3; 32],
            stored_len: 5_001_220_000,
            volume_count: 3,
            volume_plaintext_len: 2 << 30,
            volume_list_sha256: [4; 32],
            snapshot_bytes: None,
            replaced_incremental: None,
        }
    }

    fn incremental_manifest() -> ManifestRecord {
        ManifestRecord {
            source: SourceKind::Btrfs,
            kind: BackupKind::Incremental {
                base_backup: BackupId::from_bytes([9; 16]),
                base_snapshot_name: "snaps/früh".into(),
                base_identity: SnapshotIdentity::BtrfsUuid([7; 16]),
            },
            snapshot_created_by_zib: false,
            send_flags: SendFlagBits(0),
            dataset_name: "/mnt/data/Fotos für Oma".into(),
            snapshot_name: "snaps/spät".into(),
            snapshot_identity: SnapshotIdentity::BtrfsUuid([8; 16]),
            ..full_manifest()
        }
    }

    /// Both size fields set: a version 2 record.
    fn sized(record: ManifestRecord) -> ManifestRecord {
        ManifestRecord {
            snapshot_bytes: Some(0x0102_0304_0506),
            replaced_incremental: Some(ReplacedIncremental {
                base_backup: BackupId::from_bytes([0x5a; 16]),
                estimated_bytes: 77_000,
            }),
            ..record
        }
    }

    #[test]
    fn manifest_round_trips() {
        let one_size = ManifestRecord {
            snapshot_bytes: Some(5),
            ..incremental_manifest()
        };
        let other_size = ManifestRecord {
            replaced_incremental: sized(full_manifest()).replaced_incremental,
            ..full_manifest()
        };
        for record in [
            full_manifest(),
            incremental_manifest(),
            sized(full_manifest()),
            sized(incremental_manifest()),
            one_size,
            other_size,
        ] {
            let bytes = record.encode().unwrap();
            assert_eq!(ManifestRecord::decode(&bytes, "m").unwrap(), record);
        }
    }

    #[test]
    fn sizes_make_a_version_2_record_that_ends_with_them() {
        // Without sizes the record stays version 1, byte for byte as before.
        let plain = incremental_manifest().encode().unwrap();
        assert_eq!(plain[0], 1);
        let with_sizes = sized(incremental_manifest()).encode().unwrap();
        assert_eq!(with_sizes[0], 2);
        // The same fields, then: the size fields present, the snapshot's bytes, the
        // replaced incremental's base backup and size.
        assert_eq!(&with_sizes[1..plain.len()], &plain[1..]);
        let tail = &with_sizes[plain.len()..];
        assert_eq!(tail[0], 0b11);
        assert_eq!(&tail[1..9], &0x0102_0304_0506u64.to_le_bytes());
        assert_eq!(&tail[9..25], &[0x5a; 16]);
        assert_eq!(&tail[25..], &77_000u64.to_le_bytes());
        let only_snapshot = ManifestRecord {
            snapshot_bytes: Some(9),
            ..full_manifest()
        }
        .encode()
        .unwrap();
        let full_plain = full_manifest().encode().unwrap();
        assert_eq!(
            &only_snapshot[full_plain.len()..],
            &[&[1u8][..], &9u64.to_le_bytes()].concat()[..]
        );
    }

    #[test]
    fn version_2_records_are_checked_as_strictly() {
        let bytes = sized(full_manifest()).encode().unwrap();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    ManifestRecord::decode(&bytes[..len], "m"),
                    Err(Error::Corrupt { .. })
                ),
                "{len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ManifestRecord::decode(&longer, "m").is_err());
        // An unknown size field.
        let plain_len = full_manifest().encode().unwrap().len();
        let mut unknown = bytes.clone();
        unknown[plain_len] |= 0b100;
        let error = ManifestRecord::decode(&unknown, "m").unwrap_err();
        assert!(error.to_string().contains("size fields"), "{error}");
        // A version 1 record with a trailer is refused.
        let mut v1_with_trailer = bytes;
        v1_with_trailer[0] = 1;
        assert!(ManifestRecord::decode(&v1_with_trailer, "m").is_err());
    }

    #[test]
    fn manifest_bytes_are_the_documented_layout() {
        let bytes = full_manifest().encode().unwrap();
        // Fixed part: version, source, kind, flags, send flags.
        assert_eq!(&bytes[..8], &[1, 1, 0, 1, 5, 0, 0, 0]);
        assert_eq!(&bytes[8..24], &[1; 16]); // dataset id
        assert_eq!(&bytes[24..40], &[2; 16]); // backup id
        assert_eq!(&bytes[40..48], &1_795_910_400i64.to_le_bytes());
        assert_eq!(&bytes[56..64], &5_000_000_000u64.to_le_bytes());
        assert_eq!(&bytes[96..104], &5_001_220_000u64.to_le_bytes());
        assert_eq!(&bytes[104..108], &3u32.to_le_bytes());
        assert_eq!(&bytes[108..116], &(2u64 << 30).to_le_bytes());
        assert_eq!(&bytes[116..148], &[4; 32]);
        // Variable part: u16 length + UTF-8 name, twice, then the identity.
        assert_eq!(&bytes[148..150], &16u16.to_le_bytes());
        assert_eq!(&bytes[150..166], b"tank/photos 2024");
        let identity_at = 166 + 2 + "zib-20261129T000000Z".len();
        assert_eq!(bytes[identity_at], 1);
        assert_eq!(
            &bytes[identity_at + 1..],
            &0x0102_0304_0506_0708u64.to_le_bytes()
        );
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_corrupt() {
        let bytes = incremental_manifest().encode().unwrap();
        for len in 0..bytes.len() {
            let error = ManifestRecord::decode(&bytes[..len], "manifests/x").unwrap_err();
            assert!(matches!(error, Error::Corrupt { ref object, .. } if object == "manifests/x"));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            ManifestRecord::decode(&longer, "m"),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn unknown_version_tags_and_flags_are_corrupt() {
        let good = full_manifest().encode().unwrap();
        for (offset, value) in [(0, 3), (0, 0), (1, 3), (2, 2), (3, 2), (4, 0x10)] {
            let mut bad = good.clone();
            bad[offset] = value;
            let error = ManifestRecord::decode(&bad, "m").unwrap_err();
            assert!(
                matches!(error, Error::Corrupt { .. }),
                "offset {offset}: {error}"
            );
        }
    }

    #[test]
    fn reserved_send_flags_are_refused_when_writing() {
        let record = ManifestRecord {
            send_flags: SendFlagBits(1 << 7),
            ..full_manifest()
        };
        assert!(matches!(record.encode(), Err(Error::Internal(_))));
    }

    #[test]
    fn volume_record_round_trips_at_its_fixed_length() {
        let record = VolumeRecord {
            dataset_id: DatasetId::from_bytes([5; 16]),
            backup_id: BackupId::from_bytes([6; 16]),
            volume_index: 42,
            stream_offset: 42 * (2 << 30),
        };
        let bytes = record.encode();
        assert_eq!(bytes.len(), VolumeRecord::ENCODED_LEN);
        assert_eq!(VolumeRecord::decode(&bytes, "v").unwrap(), record);
        assert!(VolumeRecord::decode(&bytes[..bytes.len() - 1], "v").is_err());
    }

    #[test]
    fn volume_list_hash_binds_every_field_and_the_order() {
        let a = VolumeListEntry {
            index: 0,
            plaintext_len: 10,
            ciphertext_len: 100,
            plaintext_sha256: [1; 32],
        };
        let b = VolumeListEntry { index: 1, ..a };
        let base = volume_list_hash(&[a, b]);
        assert_ne!(base, volume_list_hash(&[b, a]));
        assert_ne!(base, volume_list_hash(&[a]));
        assert_ne!(
            base,
            volume_list_hash(&[
                a,
                VolumeListEntry {
                    plaintext_len: 11,
                    ..b
                }
            ])
        );
        assert_ne!(
            base,
            volume_list_hash(&[
                a,
                VolumeListEntry {
                    ciphertext_len: 101,
                    ..b
                }
            ])
        );
        assert_ne!(
            base,
            volume_list_hash(&[
                a,
                VolumeListEntry {
                    plaintext_sha256: [2; 32],
                    ..b
                }
            ])
        );
        // Hash of the empty list is SHA-256 of nothing.
        assert_eq!(
            hex::encode(volume_list_hash(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn send_flags_map_to_the_format_bits() {
        let mut flags = SendFlags::NONE;
        assert_eq!(SendFlagBits::from(flags), SendFlagBits(0));
        flags.large_blocks = true;
        flags.raw = true;
        assert_eq!(SendFlagBits::from(flags), SendFlagBits(0b1001));
        assert_eq!(
            SendFlagBits::from(SendFlags::ALL),
            SendFlagBits(SendFlagBits::KNOWN)
        );
        for bits in 0..=SendFlagBits::KNOWN {
            assert_eq!(
                SendFlagBits::from(SendFlagBits(bits).flags()),
                SendFlagBits(bits)
            );
        }
    }
}
