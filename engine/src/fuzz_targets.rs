//! Bodies of the engine's fuzz targets in `fuzz/` (cargo-fuzz, nightly only), as plain
//! functions so that a stable test (`tests/fuzz_corpus.rs`) runs them over the
//! checked-in corpus. Not part of the API: no stability promise.
//!
//! Each takes arbitrary bytes and MUST NOT panic, hang or allocate without bound; where
//! parsing succeeds it checks that what was parsed re-encodes to bytes that parse to
//! the same value (byte for byte where the encoding is canonical).
//!
//! The local state files end in a SHA-256 of their content, which a fuzzer never gets
//! past by mutation. Their targets therefore take a selector byte: bit 0 set means the
//! rest is a body, sealed here in a valid envelope before it is decoded, so the body
//! decoder and what reads the decoded state are reached; clear means the rest is a whole
//! file, so the envelope's own checks are fuzzed too.

// A broken expectation here is what the fuzzer reports: panicking is the point.
#![allow(clippy::expect_used)]

use std::path::Path;

use zib_crypto::{DataKey, KeyId};

use crate::catalog::decode_manifest;
use crate::format::layout::ObjectRole;
use crate::format::metadata::{open_sealed_metadata, Metadata, ObjectKind};
use crate::format::records::{ManifestRecord, VolumeRecord};
use crate::ids::RepositoryId;
use crate::restore::job;
use crate::state::{envelope, journal, ledger};

/// The data key the metadata target opens sealed records with (the seeds in
/// `fuzz/corpus/object_metadata` are sealed under it).
pub fn fuzz_key() -> DataKey {
    let id: [u8; 16] = std::array::from_fn(|i| 0x40 + i as u8);
    let secret: [u8; 32] = std::array::from_fn(|i| 0x60 + i as u8);
    DataKey::from_secret_bytes(KeyId::from_bytes(id), zeroize::Zeroizing::new(secret))
}

/// The repository the metadata target's objects belong to.
pub fn fuzz_repository() -> RepositoryId {
    RepositoryId::from_bytes(std::array::from_fn(|i| 0xa0 + i as u8))
}

/// What the bytes parsed as, for the corpus test's `good_`/`fail_` checks.
pub type Accepted = bool;

/// Object keys, object metadata and the record plaintexts they carry. The first byte
/// selects the parser (its value modulo 4):
///
/// - 0: the rest is an object key relative to the repository root (`ObjectRole::parse`,
///   what every listing goes through); an accepted key is the canonical spelling of its
///   role.
/// - 1: the rest is a manifest record's plaintext ([`ManifestRecord::decode`]); an
///   accepted record re-encodes to bytes that decode to it (and to the same bytes when
///   it was written in the current version).
/// - 2: the rest is a volume record's plaintext; it re-encodes to the same bytes.
/// - 3: the rest is a HEAD answer as text: the object key on the first line, then one
///   metadata pair per line as `name:value`. The pairs are checked and the sealed
///   record opened under [`fuzz_key`] as the catalog does (for a manifest, the
///   catalog's own `decode_manifest`).
pub fn object_metadata(data: &[u8]) -> Accepted {
    let Some((&selector, rest)) = data.split_first() else {
        return false;
    };
    match selector % 4 {
        0 => object_key(rest),
        1 => manifest_record(rest),
        2 => volume_record(rest),
        _ => head_answer(rest),
    }
}

fn object_key(bytes: &[u8]) -> Accepted {
    let Ok(key) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Some(role) = ObjectRole::parse(key) else {
        return false;
    };
    assert_eq!(
        role.key(),
        key,
        "an accepted key is its role's one spelling"
    );
    true
}

fn manifest_record(bytes: &[u8]) -> Accepted {
    let Ok(record) = ManifestRecord::decode(bytes, "fuzz") else {
        return false;
    };
    let encoded = record
        .encode()
        .expect("a decoded manifest record encodes again");
    assert_eq!(
        ManifestRecord::decode(&encoded, "fuzz").expect("a re-encoded manifest decodes"),
        record
    );
    // Version 1 is written when no size field is present, 2 otherwise: a version 2
    // record without size fields is the one input that may re-encode differently.
    if bytes.first() == encoded.first() {
        assert_eq!(encoded, bytes, "a version {} record is canonical", bytes[0]);
    }
    true
}

fn volume_record(bytes: &[u8]) -> Accepted {
    let Ok(record) = VolumeRecord::decode(bytes, "fuzz") else {
        return false;
    };
    assert_eq!(record.encode(), bytes, "a volume record is canonical");
    true
}

fn head_answer(bytes: &[u8]) -> Accepted {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split('\n');
    let key = lines.next().unwrap_or_default();
    let Some(role) = ObjectRole::parse(key) else {
        return false;
    };
    let metadata: Metadata = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let (repository, data_key) = (fuzz_repository(), fuzz_key());
    match ObjectKind::of(&role) {
        ObjectKind::Manifest => decode_manifest(repository, &data_key, key, &role, &metadata)
            .map(|manifest| {
                let ObjectRole::Manifest { dataset, backup } = role else {
                    unreachable!("the kind of a manifest's role");
                };
                assert_eq!((manifest.dataset_id, manifest.backup_id), (dataset, backup));
            })
            .is_ok(),
        ObjectKind::Volume => open_sealed_metadata(&metadata, &role, repository, &data_key)
            .is_ok_and(|plaintext| VolumeRecord::decode(&plaintext, key).is_ok()),
        _ => open_sealed_metadata(&metadata, &role, repository, &data_key).is_ok(),
    }
}

/// Splits off the selector byte and returns the file's bytes: the rest as is, or the
/// rest sealed in a valid envelope of kind `magic` (see the module's docs).
fn state_file(data: &[u8], magic: &[u8; 8], version: u32) -> Option<Vec<u8>> {
    let (&selector, rest) = data.split_first()?;
    Some(if selector & 1 == 1 {
        envelope::seal(magic, version, rest)
    } else {
        rest.to_vec()
    })
}

/// The resume journal's decoder (`state/journal.rs`), then the list entries a resumed
/// backup takes from the decoded journal's completed volumes. A decoded journal
/// re-encodes to the same bytes.
pub fn journal(data: &[u8]) -> Accepted {
    let Some(bytes) = state_file(data, &journal::JOURNAL_MAGIC, journal::JOURNAL_VERSION) else {
        return false;
    };
    let Ok(decoded) = journal::decode_journal(&bytes, Path::new("fuzz.journal")) else {
        return false;
    };
    let encoded = journal::encode_journal(&decoded).expect("a decoded journal encodes again");
    if bytes.get(8..12) == Some(&journal::JOURNAL_VERSION.to_le_bytes()[..]) {
        assert_eq!(encoded, bytes, "a journal file is canonical");
    } else {
        // An older journal is written back as the current version: the same journal.
        assert_eq!(
            journal::decode_journal(&encoded, Path::new("fuzz.journal"))
                .expect("a re-encoded journal decodes"),
            decoded,
            "an older journal reads as the journal it is written back as"
        );
    }
    for volume in &decoded.volumes {
        let _ = volume.completed_entry();
    }
    true
}

/// The restore state files: a restore job (`restore/job.rs`) when bit 1 of the selector
/// byte is clear, the download ledger (`state/ledger.rs`) when it is set (bit 0 as in
/// the module's docs). A decoded job's price table and public view are derived as
/// `zib restore status` derives them. Both re-encode to bytes that decode to the same
/// value, but not always to the same bytes: their maps are read as the map their
/// entries spell, in any order, a repeated key's last value winning (zib writes keys
/// once, in order; another spelling can only come from a damaged file whose checksum
/// was recomputed).
pub fn restore_state(data: &[u8]) -> Accepted {
    let Some(&selector) = data.first() else {
        return false;
    };
    if selector & 2 == 0 {
        let Some(bytes) = state_file(data, &job::MAGIC, job::VERSION) else {
            return false;
        };
        let Ok(decoded) = job::decode(&bytes, Path::new("fuzz.restore")) else {
            return false;
        };
        let encoded = job::encode(&decoded).expect("a decoded job encodes again");
        assert_eq!(
            job::decode(&encoded, Path::new("fuzz.restore")).expect("it decodes again"),
            decoded
        );
        let _ = decoded.prices();
        let _ = crate::restore::view(&decoded);
        let _ = decoded.staging();
        true
    } else {
        let Some(bytes) = state_file(data, &ledger::MAGIC, ledger::VERSION) else {
            return false;
        };
        let Ok(months) = ledger::decode(&bytes, Path::new("fuzz.ledger")) else {
            return false;
        };
        let encoded = ledger::encode(&months).expect("a decoded ledger encodes again");
        assert_eq!(
            ledger::decode(&encoded, Path::new("fuzz.ledger")).expect("it decodes again"),
            months
        );
        true
    }
}

/// A seed input of a target's corpus: `(target, file name, bytes)`.
pub type Seed = (&'static str, String, Vec<u8>);

/// Seed inputs for the engine's targets, made by the real encoders (`good_*`) and
/// spoiled copies of them (`fail_*`). `tests/fuzz_corpus.rs` checks each is accepted or
/// refused as its name says, and writes them into `fuzz/corpus/` when
/// `ZIB_WRITE_FUZZ_SEEDS=1`.
///
/// # Panics
///
/// If an encoder refuses these fixed values (a bug).
#[allow(clippy::too_many_lines)]
pub fn seeds() -> Vec<Seed> {
    use std::collections::BTreeMap;

    use zib_snapshot_source::{SnapshotIdentity, SourceKind};

    use crate::format::metadata::sealed_metadata;
    use crate::format::records::{BackupKind, ReplacedIncremental, SendFlagBits};
    use crate::ids::{BackupId, DatasetId, RestoreJobId};
    use crate::state::journal::{
        Journal, JournalPart, JournalSnapshot, JournalVolume, VolumeState,
    };
    use crate::upload::parts::PartCheck;
    use crate::upload::shape::PartCutting;
    use crate::upload::VolumeShape;

    fn with(selector: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![selector];
        out.extend_from_slice(bytes);
        out
    }
    fn body(file: &[u8]) -> &[u8] {
        // The envelope: 20 bytes of magic, version and length, then the body, then 32
        // bytes of checksum.
        &file[20..file.len() - 32]
    }

    let dataset = DatasetId::from_bytes([0x11; 16]);
    let backup = BackupId::from_bytes([0x21; 16]);
    let base = BackupId::from_bytes([0x22; 16]);
    let full = ManifestRecord {
        source: SourceKind::Zfs,
        kind: BackupKind::Full,
        snapshot_created_by_zib: true,
        send_flags: SendFlagBits(0),
        dataset_id: dataset,
        backup_id: backup,
        dataset_name: "tank/photos".into(),
        snapshot_name: "zib-20261129T000000Z".into(),
        snapshot_identity: SnapshotIdentity::ZfsGuid(0x0123_4567_89ab_cdef),
        snapshot_created_at: 1_795_000_000,
        committed_at: 1_795_000_600,
        stream_len: 5_000,
        stream_sha256: [0x33; 32],
        stored_len: 5_100,
        volume_count: 2,
        volume_plaintext_len: 4_096,
        volume_list_sha256: [0x44; 32],
        snapshot_bytes: None,
        replaced_incremental: None,
    };
    let incremental = ManifestRecord {
        source: SourceKind::Btrfs,
        kind: BackupKind::Incremental {
            base_backup: base,
            base_snapshot_name: "home@2026-11-28".into(),
            base_identity: SnapshotIdentity::BtrfsUuid([0x55; 16]),
        },
        snapshot_created_by_zib: false,
        send_flags: SendFlagBits(1),
        snapshot_identity: SnapshotIdentity::BtrfsUuid([0x66; 16]),
        snapshot_bytes: Some(1 << 40),
        replaced_incremental: Some(ReplacedIncremental {
            base_backup: base,
            estimated_bytes: 12_345,
        }),
        ..full.clone()
    };
    let full_bytes = full.encode().expect("encodes");
    let incremental_bytes = incremental.encode().expect("encodes");
    let volume_record = VolumeRecord {
        dataset_id: dataset,
        backup_id: backup,
        volume_index: 1,
        stream_offset: 4_096,
    }
    .encode();

    let mut out: Vec<Seed> = Vec::new();
    let mut push = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_owned(), bytes));
    };

    // Object keys.
    let manifest_role = ObjectRole::Manifest { dataset, backup };
    let volume_role = ObjectRole::Volume {
        dataset,
        backup,
        index: 1,
    };
    let kit_role = ObjectRole::Kit {
        archived: true,
        format: 1,
        digest: [0xab; 8],
        name: crate::format::layout::KitName::new("FORMAT.md").expect("a valid kit name"),
    };
    for (name, role) in [
        ("readme", ObjectRole::Readme),
        ("keyring", ObjectRole::Keyring),
        (
            "keyring_archive",
            ObjectRole::KeyringArchive {
                written_at: 1_795_000_000,
            },
        ),
        ("manifest", manifest_role),
        ("volume", volume_role),
        ("access_probe", ObjectRole::AccessProbe { nonce: 0xfeed }),
        ("kit", kit_role),
    ] {
        push(
            "object_metadata",
            &format!("good_key_{name}"),
            with(0, role.key().as_bytes()),
        );
    }
    push(
        "object_metadata",
        "fail_key_uppercase_id",
        with(0, manifest_role.key().to_uppercase().as_bytes()),
    );
    push(
        "object_metadata",
        "fail_key_feb_30",
        with(0, b"keyring-archive/20260230T000000Z"),
    );

    // Record plaintexts.
    push(
        "object_metadata",
        "good_manifest_v1_full",
        with(1, &full_bytes),
    );
    push(
        "object_metadata",
        "good_manifest_v2_incremental",
        with(1, &incremental_bytes),
    );
    push(
        "object_metadata",
        "fail_manifest_truncated",
        with(1, &incremental_bytes[..incremental_bytes.len() - 1]),
    );
    push(
        "object_metadata",
        "good_volume_record",
        with(2, &volume_record),
    );
    push(
        "object_metadata",
        "fail_volume_record_version_2",
        with(2, &[&[2][..], &volume_record[1..]].concat()),
    );

    // HEAD answers: key, then the metadata as sealed for that object.
    let head = |role: &ObjectRole, plaintext: &[u8]| -> Vec<u8> {
        let metadata = sealed_metadata(role, fuzz_repository(), &fuzz_key(), plaintext)
            .expect("sealed metadata");
        let mut text = role.key();
        for (name, value) in &metadata {
            text.push('\n');
            text.push_str(name);
            text.push(':');
            text.push_str(value);
        }
        with(3, text.as_bytes())
    };
    push(
        "object_metadata",
        "good_head_manifest",
        head(&manifest_role, &incremental_bytes),
    );
    push(
        "object_metadata",
        "good_head_volume",
        head(&volume_role, &volume_record),
    );
    let mut moved = head(&manifest_role, &full_bytes);
    let other = ObjectRole::Manifest {
        dataset,
        backup: base,
    }
    .key();
    moved.splice(1..1 + other.len(), other.bytes());
    push("object_metadata", "fail_head_manifest_moved", moved);

    // Resume journal: a volume completed, one with parts in flight.
    let journal = Journal {
        repository_id: fuzz_repository(),
        dataset_name: "tank/photos".into(),
        dataset_id: dataset,
        backup_id: backup,
        source: SourceKind::Zfs,
        target: JournalSnapshot {
            name: "zib-20261129T000000Z".into(),
            identity: SnapshotIdentity::ZfsGuid(7),
        },
        snapshot_created_by_zib: true,
        kind: BackupKind::Incremental {
            base_backup: base,
            base_snapshot_name: "zib-20261128T000000Z".into(),
            base_identity: SnapshotIdentity::ZfsGuid(6),
        },
        send_flags: SendFlagBits(0),
        shape: VolumeShape::default(),
        volumes: vec![
            JournalVolume {
                index: 0,
                upload_id: "upload-0".into(),
                salt: [1; zib_crypto::SALT_LEN],
                state: VolumeState::Completed {
                    plaintext_len: 1 << 30,
                    ciphertext_len: (1 << 30) + 262_202,
                    plaintext_sha256: [2; 32],
                    parts: 16,
                },
            },
            JournalVolume {
                index: 1,
                upload_id: "upload-1".into(),
                salt: [3; zib_crypto::SALT_LEN],
                state: VolumeState::Uploading {
                    parts: vec![
                        JournalPart {
                            number: 1,
                            plaintext_start: 0,
                            plaintext_len: 64 << 20,
                            check: [4; 32],
                            last: false,
                            etag: Some("\"etag-1\"".into()),
                        },
                        JournalPart {
                            number: 2,
                            plaintext_start: 64 << 20,
                            plaintext_len: 1_000,
                            check: [5; 32],
                            last: true,
                            etag: None,
                        },
                    ],
                },
            },
        ],
        cutting: PartCutting::FinalSegmentInLastPart,
        part_check: PartCheck::SegmentTags,
    };
    let journal_file = journal::encode_journal(&journal).expect("encodes");
    push("journal", "good_journal_file", with(0, &journal_file));
    // The same journal as versions 1 and 2 wrote it: the body without the fields they
    // lacked (the cutting and the part check, 4 bytes each), read as their values.
    for (version, lacks) in [
        (journal::JOURNAL_VERSION_1, 8),
        (journal::JOURNAL_VERSION_2, 4),
    ] {
        let older = envelope::seal(
            &journal::JOURNAL_MAGIC,
            version,
            &body(&journal_file)[..body(&journal_file).len() - lacks],
        );
        push(
            "journal",
            &format!("good_journal_file_version_{version}"),
            with(0, &older),
        );
    }
    push("journal", "good_journal_body", with(1, body(&journal_file)));
    let mut flipped = journal_file.clone();
    flipped[40] ^= 1;
    push("journal", "fail_journal_checksum", with(0, &flipped));
    push(
        "journal",
        "fail_journal_truncated",
        with(0, &journal_file[..journal_file.len() - 1]),
    );
    let mut bad_bool = body(&journal_file).to_vec();
    // The body ends with the tag of the last part's ETag (`None`, 0), the cutting and the
    // part check (4 bytes each); 2 is no tag at all.
    let tag = bad_bool.len() - 9;
    bad_bool[tag] = 2;
    push(
        "journal",
        "fail_journal_body_bad_option_tag",
        with(1, &bad_bool),
    );
    // Bytes after the value were once ignored (found by the restore_state target).
    push(
        "journal",
        "fail_journal_body_trailing_byte",
        with(1, &[body(&journal_file), &[0]].concat()),
    );

    // Restore job and ledger.
    let job = job::Job {
        id: RestoreJobId::from_bytes([0x77; 16]),
        repository_id: fuzz_repository(),
        dataset_id: dataset,
        dataset_name: "tank/photos".into(),
        restore_point: backup,
        chain: vec![base, backup],
        target: "tank/restored".into(),
        target_is_zfs: true,
        staging_dir: "/var/tmp/zib-staging".into(),
        tier: zib_planner::Tier::Bulk,
        monthly_budget: 100 << 30,
        free_egress_per_month: 100 << 30,
        download_bytes_per_sec: 10 << 20,
        prices_json: serde_json::to_string(&zib_planner::PriceTable::default())
            .expect("prices encode"),
        created_at: 1_795_000_000,
        requested: BTreeMap::from([((base, 0), 1_795_000_100)]),
        staged: BTreeMap::from([(
            (base, 0),
            job::StagedVolume {
                ciphertext_len: 5_100,
                plaintext_len: 5_000,
            },
        )]),
        received: vec![],
        target_created: false,
        finished_at: None,
        drill: false,
    };
    let job_file = job::encode(&job).expect("encodes");
    push("restore_state", "good_job_file", with(0, &job_file));
    push("restore_state", "good_job_body", with(1, body(&job_file)));
    push(
        "restore_state",
        "fail_job_truncated",
        with(0, &job_file[..job_file.len() - 1]),
    );
    let ledger_file = ledger::encode(&ledger::Months(BTreeMap::from([
        ((2026, 11), 80 << 30),
        ((2026, 12), 5 << 30),
    ])))
    .expect("encodes");
    push("restore_state", "good_ledger_file", with(2, &ledger_file));
    push(
        "restore_state",
        "good_ledger_body",
        with(3, body(&ledger_file)),
    );
    push("restore_state", "fail_ledger_as_job", with(0, &ledger_file));
    // A ledger whose month count says 0 followed by its two months: bytes after the
    // value were once ignored, so it read as an empty ledger (found by fuzzing).
    let mut zero_months = body(&ledger_file).to_vec();
    zero_months[0] = 0;
    push(
        "restore_state",
        "fail_ledger_body_count_zero_then_months",
        with(3, &zero_months),
    );
    push(
        "restore_state",
        "fail_job_body_trailing_byte",
        with(1, &[body(&job_file), &[0]].concat()),
    );
    out
}
