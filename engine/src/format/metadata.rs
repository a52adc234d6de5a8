//! The user metadata every object carries (`docs/FORMAT.md`, "Object metadata").
//!
//! Plaintext pairs say what an object is (format version, kind, repository id); the
//! `zib-record` pair holds a sealed record with everything the catalog needs, readable
//! with a HEAD request even while the object itself is archived.

use std::collections::BTreeMap;

use zib_crypto::{open_record, seal_record, sealed_record_len, DataKey, RecordContext};

use crate::error::{Error, Result};
use crate::format::layout::ObjectRole;
use crate::ids::RepositoryId;

/// Metadata name of the format version.
pub(crate) const FORMAT_NAME: &str = "zib-format";
/// The format version this code writes.
pub(crate) const FORMAT_VALUE: &str = "1";
/// Metadata name of the object kind.
pub(crate) const KIND_NAME: &str = "zib-kind";
/// Metadata name of the repository id.
pub(crate) const REPOSITORY_NAME: &str = "zib-repository";
/// Metadata name of the sealed record.
pub(crate) const RECORD_NAME: &str = "zib-record";

/// S3's limit on user metadata: UTF-8 bytes of names plus values.
pub(crate) const S3_METADATA_LIMIT: usize = 2_000;
/// The header prefix S3 puts before each name; counted so the check is stricter than
/// S3's own.
const S3_METADATA_PREFIX_LEN: usize = "x-amz-meta-".len();

/// User metadata: name → value, names lowercase.
pub(crate) type Metadata = BTreeMap<String, String>;

/// What an object is, as its `zib-kind` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    /// `README.txt`.
    Readme,
    /// The keyring or an archived copy.
    Keyring,
    /// A volume.
    Volume,
    /// A manifest.
    Manifest,
    /// The access check's transient probe.
    AccessProbe,
    /// A file of the decoder kit (or its archived copy).
    Kit,
}

impl ObjectKind {
    /// The `zib-kind` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Readme => "readme",
            Self::Keyring => "keyring",
            Self::Volume => "volume",
            Self::Manifest => "manifest",
            Self::AccessProbe => "access-probe",
            Self::Kit => "kit",
        }
    }

    /// The kind an object with this role has.
    pub(crate) fn of(role: &ObjectRole) -> Self {
        match role {
            ObjectRole::Readme => Self::Readme,
            ObjectRole::Keyring | ObjectRole::KeyringArchive { .. } => Self::Keyring,
            ObjectRole::Volume { .. } => Self::Volume,
            ObjectRole::Manifest { .. } => Self::Manifest,
            ObjectRole::AccessProbe { .. } => Self::AccessProbe,
            ObjectRole::Kit { .. } => Self::Kit,
        }
    }
}

/// Size of `metadata` as zib counts it against [`S3_METADATA_LIMIT`].
pub(crate) fn metadata_size(metadata: &Metadata) -> usize {
    metadata
        .iter()
        .map(|(name, value)| S3_METADATA_PREFIX_LEN + name.len() + value.len())
        .sum()
}

/// The plaintext pairs of an object with `role` in `repository`.
pub(crate) fn plain_metadata(role: &ObjectRole, repository: RepositoryId) -> Metadata {
    Metadata::from([
        (FORMAT_NAME.to_owned(), FORMAT_VALUE.to_owned()),
        (
            KIND_NAME.to_owned(),
            ObjectKind::of(role).as_str().to_owned(),
        ),
        (REPOSITORY_NAME.to_owned(), repository.to_string()),
    ])
}

/// Size the metadata of an object with `role` would have with a sealed record of
/// `plaintext_len` bytes, without sealing anything.
pub(crate) fn sealed_metadata_size(
    role: &ObjectRole,
    repository: RepositoryId,
    plaintext_len: usize,
) -> usize {
    metadata_size(&plain_metadata(role, repository))
        + S3_METADATA_PREFIX_LEN
        + RECORD_NAME.len()
        + sealed_record_len(plaintext_len)
}

/// The full metadata of a volume or manifest: the plaintext pairs plus `plaintext`
/// sealed for this repository and this object's key.
///
/// # Errors
///
/// [`Error::MetadataTooLarge`] when it would exceed S3's limit (checked before sealing);
/// [`Error::Crypto`] if sealing fails.
pub(crate) fn sealed_metadata(
    role: &ObjectRole,
    repository: RepositoryId,
    key: &DataKey,
    plaintext: &[u8],
) -> Result<Metadata> {
    let object_key = role.key();
    let needed = sealed_metadata_size(role, repository, plaintext.len());
    if needed > S3_METADATA_LIMIT {
        return Err(Error::MetadataTooLarge {
            object: object_key,
            needed,
            limit: S3_METADATA_LIMIT,
            hint: "shorten the dataset or snapshot names",
        });
    }
    let kind = ObjectKind::of(role);
    let sealed = seal_record(
        key,
        &RecordContext {
            record_type: kind.as_str(),
            repository_id: *repository.as_bytes(),
            object_key: &object_key,
        },
        plaintext,
    )?;
    let mut metadata = plain_metadata(role, repository);
    metadata.insert(RECORD_NAME.to_owned(), sealed);
    Ok(metadata)
}

/// Checks the plaintext pairs of an object found at `role`'s key and opens its sealed
/// record.
///
/// # Errors
///
/// [`Error::Corrupt`] when a pair is missing or says something else than the key
/// implies (another kind, another repository, an unknown format version);
/// [`Error::Crypto`] when the record does not open (altered, moved from another object,
/// or sealed under another key).
pub(crate) fn open_sealed_metadata(
    metadata: &Metadata,
    role: &ObjectRole,
    repository: RepositoryId,
    key: &DataKey,
) -> Result<Vec<u8>> {
    let object_key = role.key();
    let corrupt = |reason: String| Error::Corrupt {
        object: object_key.clone(),
        reason,
    };
    let field = |name: &str| {
        metadata
            .get(name)
            .ok_or_else(|| corrupt(format!("metadata {name} is missing")))
    };
    let format = field(FORMAT_NAME)?;
    if format != FORMAT_VALUE {
        return Err(corrupt(format!(
            "format version {format:?}; this zib reads version {FORMAT_VALUE} (a newer zib may read it)"
        )));
    }
    let kind = ObjectKind::of(role);
    if field(KIND_NAME)? != kind.as_str() {
        return Err(corrupt(format!(
            "metadata {KIND_NAME} is {:?} but the key is a {}'s",
            metadata.get(KIND_NAME),
            kind.as_str()
        )));
    }
    if field(REPOSITORY_NAME)? != &repository.to_string() {
        return Err(corrupt(format!(
            "it belongs to repository {:?}, not {repository}",
            metadata.get(REPOSITORY_NAME)
        )));
    }
    let sealed = field(RECORD_NAME)?;
    Ok(open_record(
        key,
        &RecordContext {
            record_type: kind.as_str(),
            repository_id: *repository.as_bytes(),
            object_key: &object_key,
        },
        sealed,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::records::{BackupKind, ManifestRecord, SendFlagBits, VolumeRecord};
    use crate::ids::{BackupId, DatasetId};
    use zib_snapshot_source::{SnapshotIdentity, SourceKind};

    fn repository() -> RepositoryId {
        RepositoryId::from_bytes([0x42; 16])
    }

    fn volume_role(index: u32) -> ObjectRole {
        ObjectRole::Volume {
            dataset: DatasetId::from_bytes([1; 16]),
            backup: BackupId::from_bytes([2; 16]),
            index,
        }
    }

    fn volume_plaintext(index: u32) -> Vec<u8> {
        VolumeRecord {
            dataset_id: DatasetId::from_bytes([1; 16]),
            backup_id: BackupId::from_bytes([2; 16]),
            volume_index: index,
            stream_offset: 0,
        }
        .encode()
    }

    #[test]
    fn sealed_metadata_opens_for_its_own_object_only() {
        let key = DataKey::generate().unwrap();
        let role = volume_role(3);
        let metadata = sealed_metadata(&role, repository(), &key, &volume_plaintext(3)).unwrap();
        assert_eq!(metadata[KIND_NAME], "volume");
        assert_eq!(metadata[FORMAT_NAME], "1");
        assert_eq!(
            metadata_size(&metadata),
            sealed_metadata_size(&role, repository(), VolumeRecord::ENCODED_LEN)
        );
        let opened = open_sealed_metadata(&metadata, &role, repository(), &key).unwrap();
        assert_eq!(VolumeRecord::decode(&opened, "v").unwrap().volume_index, 3);

        // The same metadata presented on volume 4 (a swapped object) does not open.
        assert!(matches!(
            open_sealed_metadata(&metadata, &volume_role(4), repository(), &key),
            Err(Error::Crypto(_))
        ));
        // Nor in another repository (the plaintext id check catches it first).
        let other = RepositoryId::from_bytes([0x43; 16]);
        assert!(matches!(
            open_sealed_metadata(&metadata, &role, other, &key),
            Err(Error::Corrupt { .. })
        ));
        // Nor under another data key.
        let other_key = DataKey::generate().unwrap();
        assert!(open_sealed_metadata(&metadata, &role, repository(), &other_key).is_err());
    }

    #[test]
    fn missing_or_unknown_plain_pairs_are_corrupt() {
        let key = DataKey::generate().unwrap();
        let role = volume_role(0);
        let good = sealed_metadata(&role, repository(), &key, &volume_plaintext(0)).unwrap();
        for (name, value) in [
            (FORMAT_NAME, Some("2")),
            (FORMAT_NAME, None),
            (KIND_NAME, Some("manifest")),
            (RECORD_NAME, None),
        ] {
            let mut bad = good.clone();
            match value {
                Some(value) => bad.insert(name.to_owned(), value.to_owned()),
                None => bad.remove(name),
            };
            let error = open_sealed_metadata(&bad, &role, repository(), &key).unwrap_err();
            assert!(matches!(error, Error::Corrupt { .. }), "{name}: {error}");
        }
    }

    #[test]
    fn oversized_records_are_refused_before_sealing() {
        let key = DataKey::generate().unwrap();
        let role = ObjectRole::Manifest {
            dataset: DatasetId::from_bytes([1; 16]),
            backup: BackupId::from_bytes([2; 16]),
        };
        let mut largest = 0;
        while sealed_metadata_size(&role, repository(), largest + 1) <= S3_METADATA_LIMIT {
            largest += 1;
        }
        assert!(largest > 1_000, "only {largest} bytes of record fit");
        let metadata = sealed_metadata(&role, repository(), &key, &vec![7; largest]).unwrap();
        assert!(metadata_size(&metadata) <= S3_METADATA_LIMIT);
        let error = sealed_metadata(&role, repository(), &key, &vec![7; largest + 1]).unwrap_err();
        assert!(
            matches!(error, Error::MetadataTooLarge { needed, .. } if needed > S3_METADATA_LIMIT),
            "{error}"
        );

        // A manifest with names at ZFS's limit (255 bytes for dataset@snapshot) still
        // fits: the limit bites only on unusually long BTRFS paths.
        let record = ManifestRecord {
            source: SourceKind::Zfs,
            kind: BackupKind::Incremental {
                base_backup: BackupId::from_bytes([3; 16]),
                base_snapshot_name: "b".repeat(55),
                base_identity: SnapshotIdentity::ZfsGuid(1),
            },
            snapshot_created_by_zib: true,
            send_flags: SendFlagBits(0),
            dataset_id: DatasetId::from_bytes([1; 16]),
            backup_id: BackupId::from_bytes([2; 16]),
            dataset_name: "d".repeat(199),
            snapshot_name: "s".repeat(55),
            snapshot_identity: SnapshotIdentity::ZfsGuid(2),
            snapshot_created_at: 0,
            committed_at: 0,
            stream_len: 0,
            stream_sha256: [0; 32],
            stored_len: 0,
            volume_count: 1,
            volume_plaintext_len: 1 << 31,
            volume_list_sha256: [0; 32],
            // Every optional field present: the largest record zib writes.
            snapshot_bytes: Some(u64::MAX),
            replaced_incremental: Some(crate::format::records::ReplacedIncremental {
                base_backup: BackupId::from_bytes([4; 16]),
                estimated_bytes: u64::MAX,
            }),
        };
        let plaintext = record.encode().unwrap();
        assert!(sealed_metadata(&role, repository(), &key, &plaintext).is_ok());
    }
}
