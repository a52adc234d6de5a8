//! The checked-in test vectors (`tests/vectors/`): every good vector decrypts to its
//! expected plaintext, every `fail_*` vector is rejected with the expected error, and
//! every file is byte for byte what this code produces from the same inputs (so the
//! on-bucket bytes cannot drift unnoticed).
//!
//! To rewrite the files after a deliberate format change (which is a format version
//! bump): `ZIB_REGENERATE_VECTORS=1 cargo test -p zib-crypto --test vectors`. That run
//! rewrites them and then fails on purpose, so a green run is always a check of the
//! checked-in files; review the diff and run again without the variable. It is refused
//! when `CI` is set: CI checks the vectors, it never rewrites them.

// Helpers outside #[test] fns unwrap too: a panic there is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use base64::Engine as _;
use ring::digest::{digest, SHA256};
use serde_json::{json, Value};
use zeroize::Zeroizing;
use zib_crypto::{
    open_keyring, open_record, seal_record_with_nonce, DataKey, Error, KdfParams, KeyId, Keyring,
    Passphrase, RecordContext, VolumeDecryptor, VolumeEncryptor, VolumeIdentity, VolumeSalt,
    HEADER_LEN, SEGMENT_CIPHERTEXT_LEN, SEGMENT_LEN,
};

const H: usize = HEADER_LEN as usize;
const S: usize = SEGMENT_LEN as usize;
const SCT: usize = SEGMENT_CIPHERTEXT_LEN as usize;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn seq(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

fn arr<const N: usize>(v: Vec<u8>) -> [u8; N] {
    v.try_into().unwrap()
}

/// Deterministic plaintext for volume vectors.
fn plaintext(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8)
        .collect()
}

struct KeyringSpec {
    name: &'static str,
    passphrase: &'static str,
    params: KdfParams,
    seed: u8,
}

fn keyring_specs() -> [KeyringSpec; 2] {
    [
        KeyringSpec {
            name: "keyring_default",
            passphrase: "correct horse battery staple",
            params: KdfParams::DEFAULT,
            seed: 0x10,
        },
        KeyringSpec {
            // Low cost keeps the many volume vectors quick to check; non-ASCII on purpose.
            name: "keyring_fast",
            passphrase: "Fotos der Familie, für immer ✓",
            params: KdfParams::new(10, 8, 1).unwrap(),
            seed: 0x40,
        },
    ]
}

fn spec_key(spec: &KeyringSpec) -> DataKey {
    DataKey::from_secret_bytes(
        KeyId::from_bytes(arr(seq(spec.seed, 16))),
        Zeroizing::new(arr(seq(spec.seed + 0x20, 32))),
    )
}

fn spec_keyring(spec: &KeyringSpec) -> Vec<u8> {
    Keyring::wrap_with(
        &spec_key(spec),
        &Passphrase::new(spec.passphrase.into()),
        spec.params,
        &arr(seq(spec.seed + 0x60, 32)),
        &arr(seq(spec.seed + 0x90, 12)),
    )
    .unwrap()
    .to_bytes()
}

fn identity(index: u32) -> VolumeIdentity {
    VolumeIdentity {
        repository_id: arr(seq(0xa0, 16)),
        backup_id: arr(seq(0xb0, 16)),
        volume_index: index,
    }
}

fn encrypt(key: &DataKey, id: VolumeIdentity, salt_seed: u8, pt: &[u8]) -> Vec<u8> {
    let mut enc =
        VolumeEncryptor::new(key, id, &VolumeSalt::from_bytes(arr(seq(salt_seed, 32)))).unwrap();
    let mut ct = enc.push(pt).unwrap().to_vec();
    ct.extend_from_slice(&enc.finish().unwrap());
    ct
}

fn reseal_checksum(bytes: &mut [u8]) {
    let sum = digest(&SHA256, &bytes[..128]);
    bytes[128..].copy_from_slice(sum.as_ref());
}

fn id_json(id: &VolumeIdentity) -> (String, String, u32) {
    (
        hex::encode(id.repository_id),
        hex::encode(id.backup_id),
        id.volume_index,
    )
}

fn volume_entry(name: &str, keyring: &str, id: &VolumeIdentity, extra: Value) -> Value {
    let (repo, backup, index) = id_json(id);
    let mut v = json!({
        "name": name, "file": format!("{name}.bin"), "keyring": keyring,
        "repository_id": repo, "backup_id": backup, "volume_index": index,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// Little-endian writer for the record layouts of docs/FORMAT.md, written here from the
/// document (not with the engine's encoder, which `engine/src/format/vectors.rs` checks
/// against these bytes).
#[derive(Default)]
struct Bin(Vec<u8>);

impl Bin {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    fn name(&mut self, v: &str) -> &mut Self {
        self.0
            .extend_from_slice(&u16::try_from(v.len()).unwrap().to_le_bytes());
        self.bytes(v.as_bytes())
    }
    fn identity(&mut self, v: &Ident) -> &mut Self {
        match v {
            Ident::Zfs(guid) => self.u8(1).u64(*guid),
            Ident::Btrfs(uuid) => self.u8(2).bytes(uuid),
        }
    }
}

#[derive(Clone, Copy)]
enum Ident {
    Zfs(u64),
    Btrfs([u8; 16]),
}

impl Ident {
    fn text(&self) -> String {
        match self {
            Ident::Zfs(guid) => format!("zfs-guid:{guid}"),
            Ident::Btrfs(uuid) => format!("btrfs-uuid:{}", hex::encode(uuid)),
        }
    }
}

/// The parts of a manifest record that do not follow from its volumes.
struct ManifestSpec {
    /// 1 = ZFS, 2 = BTRFS.
    source: u8,
    created_by_zib: bool,
    send_flags: u32,
    dataset_name: &'static str,
    snapshot_name: &'static str,
    identity: Ident,
    snapshot_created_at: i64,
    committed_at: i64,
    /// Base backup id, base snapshot name, base identity.
    base: Option<([u8; 16], &'static str, Ident)>,
    snapshot_bytes: Option<u64>,
    /// The replaced incremental's base backup id and estimated length.
    replaced: Option<([u8; 16], u64)>,
}

/// A record plaintext of the engine's layouts, the object key it is bound to, and the
/// fields a reader must decode from it.
#[derive(Clone)]
struct Layout {
    record_type: &'static str,
    key: String,
    plain: Vec<u8>,
    fields: Value,
}

/// What to spoil in a tiny backup's manifest, for the stream fail vectors.
#[derive(Clone, Copy, PartialEq)]
enum Spoil {
    Nothing,
    /// The volume list hash counts each volume object one byte longer than it is.
    VolumeList,
    /// The stream hash is of other bytes (the volumes and their list are right).
    StreamHash,
}

/// One backup of the tiny repository: its stream, volume objects and records.
struct TinyBackup {
    dataset_id: [u8; 16],
    backup_id: [u8; 16],
    stream: Vec<u8>,
    per_volume: usize,
    volumes: Vec<Vec<u8>>,
    volume_records: Vec<Layout>,
    manifest: Layout,
}

impl TinyBackup {
    /// `(index, plaintext length, object length, plaintext SHA-256)` per volume.
    fn list(&self) -> Vec<(u32, u64, u64, [u8; 32])> {
        self.stream
            .chunks(self.per_volume)
            .chain(self.stream.is_empty().then_some(&[][..]))
            .zip(&self.volumes)
            .enumerate()
            .map(|(i, (plain, object))| {
                (
                    i as u32,
                    plain.len() as u64,
                    object.len() as u64,
                    arr(digest(&SHA256, plain).as_ref().to_vec()),
                )
            })
            .collect()
    }

    fn list_json(&self) -> Value {
        self.list()
            .iter()
            .map(|(index, plain, object, sha)| {
                json!({"index": index, "plaintext_len": plain, "volume_len": object,
                       "plaintext_sha256": hex::encode(sha)})
            })
            .collect()
    }

    fn list_hash(&self) -> [u8; 32] {
        list_hash(&self.list())
    }

    fn manifest_key(&self) -> String {
        format!(
            "manifests/{}/{}",
            hex::encode(self.dataset_id),
            hex::encode(self.backup_id)
        )
    }

    fn volume_key(&self, index: usize) -> String {
        format!(
            "volumes/{}/{}/{index:08}",
            hex::encode(self.dataset_id),
            hex::encode(self.backup_id)
        )
    }
}

/// The volume list hash of docs/FORMAT.md, "Volume list hash".
fn list_hash(list: &[(u32, u64, u64, [u8; 32])]) -> [u8; 32] {
    let mut b = Bin::default();
    for (index, plain, object, sha) in list {
        b.u32(*index).u64(*plain).u64(*object).bytes(sha);
    }
    arr(digest(&SHA256, &b.0).as_ref().to_vec())
}

const TINY_REPOSITORY_ID: u8 = 0xa0;

#[allow(clippy::too_many_arguments)]
fn tiny_backup(
    key: &DataKey,
    dataset_id: [u8; 16],
    backup_id: [u8; 16],
    stream: Vec<u8>,
    per_volume: usize,
    salt_seed: u8,
    spec: &ManifestSpec,
    spoil: Spoil,
) -> TinyBackup {
    let repository_id = arr(seq(TINY_REPOSITORY_ID, 16));
    let mut backup = TinyBackup {
        dataset_id,
        backup_id,
        stream,
        per_volume,
        volumes: Vec::new(),
        volume_records: Vec::new(),
        manifest: Layout {
            record_type: "manifest",
            key: String::new(),
            plain: Vec::new(),
            fields: Value::Null,
        },
    };
    let pieces: Vec<Vec<u8>> = if backup.stream.is_empty() {
        vec![Vec::new()]
    } else {
        backup
            .stream
            .chunks(per_volume)
            .map(<[u8]>::to_vec)
            .collect()
    };
    let mut offset = 0u64;
    for (index, piece) in pieces.iter().enumerate() {
        let id = VolumeIdentity {
            repository_id,
            backup_id,
            volume_index: index as u32,
        };
        backup
            .volumes
            .push(encrypt(key, id, salt_seed + index as u8, piece));
        let mut plain = Bin::default();
        plain
            .u8(1)
            .bytes(&dataset_id)
            .bytes(&backup_id)
            .u32(index as u32)
            .u64(offset);
        backup.volume_records.push(Layout {
            record_type: "volume",
            key: backup.volume_key(index),
            plain: plain.0,
            fields: json!({"dataset_id": hex::encode(dataset_id), "backup_id": hex::encode(backup_id),
                           "volume_index": index, "stream_offset": offset}),
        });
        offset += piece.len() as u64;
    }
    let mut list = backup.list();
    let stored_len: u64 = list.iter().map(|e| e.2).sum();
    if spoil == Spoil::VolumeList {
        for entry in &mut list {
            entry.2 += 1;
        }
    }
    let volume_list_sha256 = list_hash(&list);
    let mut stream_sha256: [u8; 32] = arr(digest(&SHA256, &backup.stream).as_ref().to_vec());
    if spoil == Spoil::StreamHash {
        stream_sha256 = arr(digest(&SHA256, b"other bytes").as_ref().to_vec());
    }
    let version = if spec.snapshot_bytes.is_some() || spec.replaced.is_some() {
        2
    } else {
        1
    };
    let mut b = Bin::default();
    b.u8(version)
        .u8(spec.source)
        .u8(u8::from(spec.base.is_some()))
        .u8(u8::from(spec.created_by_zib))
        .u32(spec.send_flags)
        .bytes(&dataset_id)
        .bytes(&backup_id)
        .i64(spec.snapshot_created_at)
        .i64(spec.committed_at)
        .u64(backup.stream.len() as u64)
        .bytes(&stream_sha256)
        .u64(stored_len)
        .u32(pieces.len() as u32)
        .u64(per_volume as u64)
        .bytes(&volume_list_sha256)
        .name(spec.dataset_name)
        .name(spec.snapshot_name)
        .identity(&spec.identity);
    if let Some((base, name, identity)) = &spec.base {
        b.bytes(base).name(name).identity(identity);
    }
    if version == 2 {
        b.u8(u8::from(spec.snapshot_bytes.is_some()) | u8::from(spec.replaced.is_some()) << 1);
        if let Some(bytes) = spec.snapshot_bytes {
            b.u64(bytes);
        }
        if let Some((base, bytes)) = spec.replaced {
            b.bytes(&base).u64(bytes);
        }
    }
    backup.manifest = Layout {
        record_type: "manifest",
        key: backup.manifest_key(),
        plain: b.0,
        fields: json!({
            "source": if spec.source == 1 { "zfs" } else { "btrfs" },
            "kind": if spec.base.is_some() { "incremental" } else { "full" },
            "created_by_zib": spec.created_by_zib,
            "send_flags": spec.send_flags,
            "dataset_id": hex::encode(dataset_id),
            "backup_id": hex::encode(backup_id),
            "snapshot_created_at": spec.snapshot_created_at,
            "committed_at": spec.committed_at,
            "stream_len": backup.stream.len(),
            "stream_sha256": hex::encode(stream_sha256),
            "stored_len": stored_len,
            "volume_count": pieces.len(),
            "volume_plaintext_len": per_volume,
            "volume_list_sha256": hex::encode(volume_list_sha256),
            "dataset_name": spec.dataset_name,
            "snapshot_name": spec.snapshot_name,
            "identity": spec.identity.text(),
            "base_backup_id": spec.base.map(|b| hex::encode(b.0)),
            "base_snapshot_name": spec.base.map(|b| b.1),
            "base_identity": spec.base.map(|b| b.2.text()),
            "snapshot_bytes": spec.snapshot_bytes,
            "replaced_incremental": spec.replaced.map(|(base, bytes)| json!({
                "base_backup_id": hex::encode(base), "estimated_bytes": bytes})),
        }),
    };
    backup
}

/// The tiny repository: a ZFS full of two volumes and an incremental on it (the chain
/// that restores to known bytes), plus, under a second dataset, two backups whose
/// manifests disagree with their volumes (stream fail vectors).
struct Tiny {
    full: TinyBackup,
    incremental: TinyBackup,
    bad_list: TinyBackup,
    bad_stream_hash: TinyBackup,
}

fn tiny_repository(key: &DataKey) -> Tiny {
    let dataset: [u8; 16] = arr(seq(0x11, 16));
    let other_dataset: [u8; 16] = arr(seq(0x41, 16));
    let full_id: [u8; 16] = arr(seq(0x21, 16));
    let incremental_id: [u8; 16] = arr(seq(0x31, 16));
    let full_spec = ManifestSpec {
        source: 1,
        created_by_zib: true,
        send_flags: 0b0101,
        dataset_name: "tank/photos 2024",
        snapshot_name: "zib-20261129T000000Z",
        identity: Ident::Zfs(0x0102_0304_0506_0708),
        snapshot_created_at: 1_795_910_400,
        committed_at: 1_795_910_460,
        base: None,
        snapshot_bytes: None,
        replaced: None,
    };
    let full = tiny_backup(
        key,
        dataset,
        full_id,
        b"A full send stream of two volumes: 100 bytes in the first, the rest in the second. \
          0123456789abcdefghijklmnopqrstuvwxyz!"
            .to_vec(),
        100,
        0x70,
        &full_spec,
        Spoil::Nothing,
    );
    let incremental_spec = ManifestSpec {
        source: 1,
        created_by_zib: false,
        send_flags: 0b0101,
        dataset_name: "tank/photos 2024",
        snapshot_name: "Sommer \u{2600}",
        identity: Ident::Zfs(0xfedc_ba98_7654_3210),
        snapshot_created_at: 1_795_996_800,
        committed_at: 1_795_996_900,
        base: Some((
            full_id,
            "zib-20261129T000000Z",
            Ident::Zfs(0x0102_0304_0506_0708),
        )),
        snapshot_bytes: Some(180),
        replaced: None,
    };
    let incremental = tiny_backup(
        key,
        dataset,
        incremental_id,
        b"An incremental stream.".to_vec(),
        100,
        0x78,
        &incremental_spec,
        Spoil::Nothing,
    );
    let btrfs = |snapshot_name, base| ManifestSpec {
        source: 2,
        created_by_zib: true,
        send_flags: 0,
        dataset_name: "/mnt/data/Fotos f\u{fc}r Oma",
        snapshot_name,
        identity: Ident::Btrfs(arr(seq(0x90, 16))),
        snapshot_created_at: 1_795_910_400,
        committed_at: 1_795_910_470,
        base,
        snapshot_bytes: Some(64),
        replaced: Some((arr(seq(0x61, 16)), 4_096)),
    };
    let bad_list = tiny_backup(
        key,
        other_dataset,
        arr(seq(0x51, 16)),
        plaintext(64),
        40,
        0x7c,
        &btrfs("snaps/a", None),
        Spoil::VolumeList,
    );
    let bad_stream_hash = tiny_backup(
        key,
        other_dataset,
        arr(seq(0x52, 16)),
        plaintext(64),
        40,
        0x7e,
        &btrfs("snaps/b", None),
        Spoil::StreamHash,
    );
    Tiny {
        full,
        incremental,
        bad_list,
        bad_stream_hash,
    }
}

/// A local-directory object file ("Local-directory repositories" in FORMAT.md): the
/// magic, the JSON header's length, the header, the body. The header's bytes are what
/// storage-backend's `LocalDirBackend` writes (its tests put the same object and compare).
fn local_object(
    storage_class: &str,
    metadata: &std::collections::BTreeMap<String, String>,
    body: &[u8],
    written: (u64, u32),
) -> Vec<u8> {
    use md5::Digest as _;
    let etag = format!("\"{}\"", hex::encode(md5::Md5::digest(body)));
    let header = format!(
        "{{\"storage_class\":{},\"metadata\":{},\"etag\":{},\"written_unix_secs\":{},\"written_nanos\":{}}}",
        serde_json::to_string(storage_class).unwrap(),
        serde_json::to_string(metadata).unwrap(),
        serde_json::to_string(&etag).unwrap(),
        written.0,
        written.1
    );
    let mut out = b"ZIBLOCL1".to_vec();
    out.extend_from_slice(&u32::try_from(header.len()).unwrap().to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

fn object_metadata(kind: &str, record: Option<&str>) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::from([
        ("zib-format".to_owned(), "1".to_owned()),
        ("zib-kind".to_owned(), kind.to_owned()),
        (
            "zib-repository".to_owned(),
            hex::encode(seq(TINY_REPOSITORY_ID, 16)),
        ),
    ]);
    if let Some(record) = record {
        m.insert("zib-record".to_owned(), record.to_owned());
    }
    m
}

const TINY_DIR: &str = "repository_tiny";
/// Write time of every object in the tiny repository.
const TINY_WRITTEN: (u64, u32) = (1_795_996_900, 0);

/// The tiny repository's object files: (path under the vectors directory, bytes).
fn tiny_files(key: &DataKey, keyring: &[u8], tiny: &Tiny) -> Vec<(String, Vec<u8>)> {
    let repository_id = arr(seq(TINY_REPOSITORY_ID, 16));
    let mut files = vec![
        (
            format!("{TINY_DIR}/objects/keyring"),
            local_object(
                "STANDARD",
                &object_metadata("keyring", None),
                keyring,
                TINY_WRITTEN,
            ),
        ),
        (
            format!("{TINY_DIR}/objects/keyring-archive/20261129T000000Z"),
            local_object(
                "DEEP_ARCHIVE",
                &object_metadata("keyring", None),
                keyring,
                TINY_WRITTEN,
            ),
        ),
    ];
    let backups = [
        &tiny.full,
        &tiny.incremental,
        &tiny.bad_list,
        &tiny.bad_stream_hash,
    ];
    for (b, backup) in backups.into_iter().enumerate() {
        for (index, (volume, record)) in backup
            .volumes
            .iter()
            .zip(&backup.volume_records)
            .enumerate()
        {
            let sealed = seal_record_with_nonce(
                key,
                &RecordContext {
                    record_type: "volume",
                    repository_id,
                    object_key: &record.key,
                },
                &record.plain,
                arr(seq(0x20 * b as u8 + index as u8, 12)),
            )
            .unwrap();
            files.push((
                format!("{TINY_DIR}/objects/{}", record.key),
                local_object(
                    "DEEP_ARCHIVE",
                    &object_metadata("volume", Some(&sealed)),
                    volume,
                    TINY_WRITTEN,
                ),
            ));
        }
        let sealed = seal_record_with_nonce(
            key,
            &RecordContext {
                record_type: "manifest",
                repository_id,
                object_key: &backup.manifest.key,
            },
            &backup.manifest.plain,
            arr(seq(0x10 + 0x20 * b as u8, 12)),
        )
        .unwrap();
        files.push((
            format!("{TINY_DIR}/objects/{}", backup.manifest.key),
            local_object(
                "DEEP_ARCHIVE",
                &object_metadata("manifest", Some(&sealed)),
                sealed.as_bytes(),
                TINY_WRITTEN,
            ),
        ));
    }
    files
}

/// Builds every vector: (file name, bytes) pairs and the index.
fn build() -> (Vec<(String, Vec<u8>)>, Value) {
    let mut files = Vec::new();
    let specs = keyring_specs();
    let mut keyrings = Vec::new();
    for spec in &specs {
        let bytes = spec_keyring(spec);
        let key = spec_key(spec);
        keyrings.push(json!({
            "name": spec.name, "file": format!("{}.bin", spec.name), "passphrase": spec.passphrase,
            "kdf": {"log2_n": spec.params.log2_n(), "r": spec.params.r(), "p": spec.params.p()},
            "key_id": key.id().to_string(), "data_key": hex::encode(seq(spec.seed + 0x20, 32)),
        }));
        files.push((format!("{}.bin", spec.name), bytes));
    }
    let fast = spec_key(&specs[1]);
    let default = spec_key(&specs[0]);
    let tiny = tiny_repository(&fast);

    let mut volumes = Vec::new();
    let sizes: [(&str, usize); 7] = [
        ("volume_empty", 0),
        ("volume_1_byte", 1),
        ("volume_segment_minus_1", S - 1),
        ("volume_one_segment", S),
        ("volume_segment_plus_1", S + 1),
        ("volume_two_segments", 2 * S),
        ("volume_three_segments_plus", 3 * S + 1000),
    ];
    let mut by_name = std::collections::HashMap::new();
    for (i, (name, len)) in sizes.into_iter().enumerate() {
        let id = identity(i as u32);
        let pt = plaintext(len);
        let ct = encrypt(&fast, id, 0xc0 + i as u8, &pt);
        volumes.push(volume_entry(
            name,
            "keyring_fast",
            &id,
            json!({
                "plaintext_len": len, "plaintext_sha256": hex::encode(digest(&SHA256, &pt)),
            }),
        ));
        by_name.insert(name, ct.clone());
        files.push((format!("{name}.bin"), ct));
    }
    {
        let id = identity(42);
        let pt = b"Under the default-cost keyring.".to_vec();
        let ct = encrypt(&default, id, 0xd0, &pt);
        volumes.push(volume_entry(
            "volume_default_keyring",
            "keyring_default",
            &id,
            json!({
                "plaintext_len": pt.len(), "plaintext_sha256": hex::encode(digest(&SHA256, &pt)),
            }),
        ));
        files.push(("volume_default_keyring.bin".into(), ct));
    }

    // Sealed records: the two record types of format v1 under their real keys, and an
    // empty plaintext (the crypto layer's boundary case, under a key no zib object uses).
    let repository_id: [u8; 16] = arr(seq(0xa0, 16));
    let full_manifest = tiny.full.manifest.clone();
    let sized_manifest = tiny.incremental.manifest.clone();
    let volume_record = tiny.full.volume_records[1].clone();
    let ctx = RecordContext {
        record_type: "manifest",
        repository_id,
        object_key: &full_manifest.key,
    };
    let sealed =
        seal_record_with_nonce(&fast, &ctx, &full_manifest.plain, arr(seq(0xe0, 12))).unwrap();
    let empty_ctx = RecordContext {
        record_type: "empty",
        repository_id,
        object_key: "test/empty",
    };
    let empty_sealed = seal_record_with_nonce(&fast, &empty_ctx, b"", arr(seq(0xf0, 12))).unwrap();
    let record_entry = |name: &str, ctx: &RecordContext<'_>, sealed: &str, extra: Value| {
        let mut v = json!({
            "name": name, "keyring": "keyring_fast", "record_type": ctx.record_type,
            "repository_id": hex::encode(ctx.repository_id), "object_key": ctx.object_key,
            "sealed": sealed,
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let layout_entry = |name: &str, layout: &Layout, nonce: u8| {
        let ctx = RecordContext {
            record_type: layout.record_type,
            repository_id,
            object_key: &layout.key,
        };
        let sealed =
            seal_record_with_nonce(&fast, &ctx, &layout.plain, arr(seq(nonce, 12))).unwrap();
        record_entry(
            name,
            &ctx,
            &sealed,
            json!({"plaintext": hex::encode(&layout.plain), "layout": layout.record_type,
                   "fields": layout.fields}),
        )
    };
    let records = vec![
        record_entry(
            "record_manifest_full_v1",
            &ctx,
            &sealed,
            json!({"plaintext": hex::encode(&full_manifest.plain), "layout": "manifest",
                   "fields": full_manifest.fields}),
        ),
        layout_entry("record_manifest_incremental_v2", &sized_manifest, 0xe4),
        layout_entry("record_volume", &volume_record, 0xe8),
        record_entry(
            "record_empty",
            &empty_ctx,
            &empty_sealed,
            json!({"plaintext": "", "layout": "none"}),
        ),
    ];

    let volume_lists = vec![
        json!({"name": "volume_list_empty", "entries": [],
               "sha256": hex::encode(digest(&SHA256, b""))}),
        json!({"name": "volume_list_tiny_full", "entries": tiny.full.list_json(),
               "sha256": hex::encode(tiny.full.list_hash())}),
    ];

    files.extend(tiny_files(&fast, &spec_keyring(&specs[1]), &tiny));
    let backup_json = |b: &TinyBackup| {
        json!({"backup_id": hex::encode(b.backup_id), "dataset_id": hex::encode(b.dataset_id),
               "stream_len": b.stream.len(),
               "stream_sha256": hex::encode(digest(&SHA256, &b.stream))})
    };
    let repositories = vec![json!({
        "name": TINY_DIR, "dir": TINY_DIR, "keyring": "keyring_fast",
        "repository_id": hex::encode(seq(TINY_REPOSITORY_ID, 16)),
        "restore_order": [backup_json(&tiny.full), backup_json(&tiny.incremental)],
    })];

    let local_body = b"The bytes of an object, unchanged after the header.\n";
    let local_metadata = object_metadata("readme", None);
    let local_written = (1_795_910_400, 250_000_000);
    let local = local_object("STANDARD", &local_metadata, local_body, local_written);
    let header_len = u32::from_le_bytes(arr(local[8..12].to_vec()));
    let local_objects = vec![json!({
        "name": "local_object", "file": "local_object.bin", "storage_class": "STANDARD",
        "metadata": local_metadata, "header_len": header_len,
        "etag": format!("\"{}\"", hex::encode(<md5::Md5 as md5::Digest>::digest(local_body))),
        "written_unix_secs": local_written.0, "written_nanos": local_written.1,
        "body_len": local_body.len(), "body_sha256": hex::encode(digest(&SHA256, local_body)),
    })];
    files.push(("local_object.bin".into(), local.clone()));

    // Rejections.
    let mut fail = Vec::new();
    let fast_ring = spec_keyring(&specs[1]);
    let fast_pass = specs[1].passphrase;
    let mut keyring_fail = |name: &str, bytes: Vec<u8>, passphrase: &str, expect: &str| {
        fail.push(
            json!({"name": name, "kind": "keyring", "file": format!("{name}.bin"),
            "passphrase": passphrase, "expect": expect}),
        );
        files.push((format!("{name}.bin"), bytes));
    };
    let mut b = fast_ring.clone();
    b[90] ^= 0x04;
    keyring_fail("fail_keyring_bitflip", b, fast_pass, "corrupt");
    keyring_fail(
        "fail_keyring_wrong_passphrase",
        fast_ring.clone(),
        "Fotos der Familie, fur immer ✓",
        "wrong_passphrase",
    );
    let mut b = fast_ring.clone();
    b[100] ^= 0x01;
    reseal_checksum(&mut b);
    keyring_fail(
        "fail_keyring_altered_checksum_recomputed",
        b,
        fast_pass,
        "wrong_passphrase",
    );
    let mut b = fast_ring.clone();
    b[27] = 21;
    reseal_checksum(&mut b);
    keyring_fail("fail_keyring_kdf_cost_too_high", b, fast_pass, "corrupt");
    let mut b = fast_ring.clone();
    b[28..32].copy_from_slice(&16u32.to_le_bytes());
    b[27] = 20;
    reseal_checksum(&mut b);
    keyring_fail("fail_keyring_kdf_memory_over_1gib", b, fast_pass, "corrupt");
    keyring_fail(
        "fail_keyring_truncated",
        fast_ring[..159].to_vec(),
        fast_pass,
        "corrupt",
    );

    let mut volume_fail = |name: &str, bytes: Vec<u8>, id: VolumeIdentity| {
        fail.push(volume_entry(
            name,
            "keyring_fast",
            &id,
            json!({"kind": "volume", "expect": "corrupt"}),
        ));
        files.push((format!("{name}.bin"), bytes));
    };
    let one = &by_name["volume_1_byte"];
    let two = &by_name["volume_two_segments"];
    let plus1 = &by_name["volume_segment_plus_1"];
    let mut b = one.clone();
    b[H] ^= 0x80;
    volume_fail("fail_volume_bitflip_ciphertext", b, identity(1));
    let mut b = one.clone();
    b[one.len() - 1] ^= 0x01;
    volume_fail("fail_volume_bitflip_tag", b, identity(1));
    let mut b = one.clone();
    b[40] ^= 0x01;
    volume_fail("fail_volume_bitflip_salt", b, identity(1));
    let mut b = one.clone();
    b[0] = b'X';
    volume_fail("fail_volume_bad_magic", b, identity(1));
    volume_fail("fail_volume_wrong_index", one.clone(), identity(2));
    let mut other = identity(1);
    other.backup_id[0] ^= 0xff;
    volume_fail("fail_volume_other_backup", one.clone(), other);
    volume_fail(
        "fail_volume_truncated_inside_segment",
        plus1[..H + 100].to_vec(),
        identity(4),
    );
    volume_fail(
        "fail_volume_missing_final_segment",
        plus1[..H + SCT].to_vec(),
        identity(4),
    );
    volume_fail(
        "fail_volume_truncated_to_header",
        two[..H].to_vec(),
        identity(5),
    );
    let mut b = two[..H].to_vec();
    b.extend_from_slice(&two[H + SCT..H + 2 * SCT]);
    b.extend_from_slice(&two[H..H + SCT]);
    b.extend_from_slice(&two[H + 2 * SCT..]);
    volume_fail("fail_volume_segments_swapped", b, identity(5));
    let mut b = plus1[..H + SCT].to_vec();
    b.extend_from_slice(&plus1[H..]);
    volume_fail("fail_volume_segment_duplicated", b, identity(4));
    let mut b = two[..H + SCT].to_vec();
    b.extend_from_slice(&two[H + 2 * SCT..]);
    volume_fail("fail_volume_segment_dropped", b, identity(5));
    let mut b = one.clone();
    b.extend_from_slice(b"trailing");
    volume_fail("fail_volume_trailing_bytes", b, identity(1));

    let mut record_fail = |name: &str, ctx: &RecordContext<'_>, sealed: &str| {
        let mut v = record_entry(
            name,
            ctx,
            sealed,
            json!({"kind": "record", "expect": "corrupt"}),
        );
        v["name"] = json!(name);
        fail.push(v);
    };
    let mut flipped = sealed.clone().into_bytes();
    flipped[50] = if flipped[50] == b'A' { b'B' } else { b'A' };
    record_fail(
        "fail_record_bitflip",
        &ctx,
        &String::from_utf8(flipped).unwrap(),
    );
    record_fail(
        "fail_record_other_object",
        &RecordContext {
            object_key: "zib/backups/ffffffff/manifest",
            ..ctx
        },
        &sealed,
    );
    record_fail(
        "fail_record_other_type",
        &RecordContext {
            record_type: "volume",
            ..ctx
        },
        &sealed,
    );
    record_fail(
        "fail_record_other_repository",
        &RecordContext {
            repository_id: [0; 16],
            ..ctx
        },
        &sealed,
    );
    // Cut to a length no base64 text has (4k + 1 characters).
    let cut = sealed.len() - (sealed.len() + 4 - 1) % 4;
    record_fail("fail_record_truncated", &ctx, &sealed[..cut]);
    record_fail("fail_record_padded", &ctx, &format!("{sealed}="));

    // A sealed record of another version: 0 never existed, 2 is a newer zib's.
    let resealed_version = |version: u8| {
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&sealed)
            .unwrap();
        raw[0] = version;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    };
    record_fail("fail_record_version_0", &ctx, &resealed_version(0));
    let mut v = record_entry(
        "fail_record_version_2",
        &ctx,
        &resealed_version(2),
        json!({"kind": "record", "expect": "newer_version"}),
    );
    v["name"] = json!("fail_record_version_2");
    fail.push(v);

    // Volume headers of another format version.
    for (name, version, expect) in [
        ("fail_volume_version_0", 0u8, "corrupt"),
        ("fail_volume_version_2", 2, "newer_version"),
    ] {
        let mut b = one.clone();
        b[8] = version;
        fail.push(volume_entry(
            name,
            "keyring_fast",
            &identity(1),
            json!({"kind": "volume", "expect": expect}),
        ));
        files.push((format!("{name}.bin"), b));
    }

    // Record plaintexts that open (the seal is good) but break their layout.
    let mut layout_fail = |name: &str, layout: &Layout, plain: Vec<u8>, nonce: u8, expect: &str| {
        let ctx = RecordContext {
            record_type: layout.record_type,
            repository_id,
            object_key: &layout.key,
        };
        let sealed = seal_record_with_nonce(&fast, &ctx, &plain, arr(seq(nonce, 12))).unwrap();
        let mut v = record_entry(
            name,
            &ctx,
            &sealed,
            json!({"kind": if layout.record_type == "volume" { "volume_record" } else { "manifest" },
                   "expect": expect, "plaintext": hex::encode(&plain)}),
        );
        v["name"] = json!(name);
        fail.push(v);
    };
    let m = &full_manifest;
    let patched = |plain: &[u8], at: usize, value: u8| {
        let mut p = plain.to_vec();
        p[at] = value;
        p
    };
    // Offset of the snapshot identity's tag in the full manifest: after the fixed part
    // and the two names.
    let identity_at = 148 + 2 + "tank/photos 2024".len() + 2 + "zib-20261129T000000Z".len();
    let sized = &sized_manifest;
    let cases: Vec<(&str, &Layout, Vec<u8>, &str)> = vec![
        (
            "fail_manifest_version_0",
            m,
            patched(&m.plain, 0, 0),
            "corrupt",
        ),
        (
            "fail_manifest_version_3",
            m,
            patched(&m.plain, 0, 3),
            "newer_version",
        ),
        (
            "fail_manifest_unknown_source",
            m,
            patched(&m.plain, 1, 3),
            "corrupt",
        ),
        (
            "fail_manifest_unknown_kind",
            m,
            patched(&m.plain, 2, 2),
            "corrupt",
        ),
        (
            "fail_manifest_unknown_flag",
            m,
            patched(&m.plain, 3, 0b11),
            "corrupt",
        ),
        (
            "fail_manifest_unknown_send_flag",
            m,
            patched(&m.plain, 4, 0x15),
            "corrupt",
        ),
        (
            "fail_manifest_unknown_identity_tag",
            m,
            patched(&m.plain, identity_at, 3),
            "corrupt",
        ),
        (
            "fail_manifest_name_not_utf8",
            m,
            patched(&m.plain, 150, 0xff),
            "corrupt",
        ),
        (
            "fail_manifest_truncated",
            m,
            m.plain[..m.plain.len() - 1].to_vec(),
            "corrupt",
        ),
        (
            "fail_manifest_trailing_byte",
            m,
            [&m.plain[..], &[0]].concat(),
            "corrupt",
        ),
        // A version 1 record that ends with version 2's size fields.
        (
            "fail_manifest_v1_with_size_fields",
            sized,
            patched(&sized.plain, 0, 1),
            "corrupt",
        ),
        (
            "fail_manifest_unknown_size_field",
            sized,
            {
                let mut p = sized.plain.clone();
                let at = p.len() - 9;
                p[at] |= 0b100;
                p
            },
            "corrupt",
        ),
        (
            "fail_volume_record_version_2",
            &volume_record,
            patched(&volume_record.plain, 0, 2),
            "newer_version",
        ),
        (
            "fail_volume_record_short",
            &volume_record,
            volume_record.plain[..44].to_vec(),
            "corrupt",
        ),
        (
            "fail_volume_record_long",
            &volume_record,
            [&volume_record.plain[..], &[0]].concat(),
            "corrupt",
        ),
    ];
    for (i, (name, layout, plain, expect)) in cases.into_iter().enumerate() {
        layout_fail(name, layout, plain, 0x30 + i as u8, expect);
    }

    // Streams whose manifest disagrees with their volumes (in the tiny repository).
    for (name, backup) in [
        ("fail_stream_volume_list_mismatch", &tiny.bad_list),
        ("fail_stream_hash_mismatch", &tiny.bad_stream_hash),
    ] {
        fail.push(
            json!({"name": name, "kind": "stream", "repository": TINY_DIR,
                         "backup_id": hex::encode(backup.backup_id), "expect": "corrupt"}),
        );
    }

    // Local-directory object files a reader must refuse.
    let mut bad_magic = local.clone();
    bad_magic[7] = b'2';
    let mut past_end = local.clone();
    past_end[8..12].copy_from_slice(&(local.len() as u32).to_le_bytes());
    for (name, bytes) in [
        ("fail_local_object_bad_magic", bad_magic),
        ("fail_local_object_header_past_end", past_end),
        ("fail_local_object_shorter_than_12", local[..11].to_vec()),
    ] {
        fail.push(
            json!({"name": name, "kind": "local_object", "file": format!("{name}.bin"),
                         "expect": "corrupt"}),
        );
        files.push((format!("{name}.bin"), bytes));
    }

    let index = json!({
        "description": "zib format v1 test vectors; see docs/FORMAT.md, section \"Test vectors\". Generated by crypto/tests/vectors.rs.",
        "keyrings": keyrings, "volumes": volumes, "records": records,
        "volume_lists": volume_lists, "repositories": repositories,
        "local_objects": local_objects, "fail": fail,
    });
    (files, index)
}

#[test]
fn files_are_exactly_what_the_code_produces() {
    let (files, index) = build();
    let index_text = serde_json::to_string_pretty(&index).unwrap() + "\n";
    if std::env::var_os("ZIB_REGENERATE_VECTORS").is_some() {
        // `CI=false` or `CI=0` (as some tools set it) is not a CI run.
        let in_ci = std::env::var("CI").is_ok_and(|ci| !matches!(ci.as_str(), "" | "0" | "false"));
        assert!(
            !in_ci,
            "ZIB_REGENERATE_VECTORS is refused when CI is set: CI checks the checked-in \
             vectors, it never rewrites them"
        );
        std::fs::create_dir_all(dir()).unwrap();
        for (name, bytes) in &files {
            let path = dir().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        std::fs::write(dir().join("index.json"), &index_text).unwrap();
        panic!(
            "rewrote {} vector files and index.json in {}: review the change (git diff), then \
             run again without ZIB_REGENERATE_VECTORS (a run that rewrites them never passes)",
            files.len(),
            dir().display()
        );
    }
    for (name, bytes) in &files {
        let on_disk = std::fs::read(dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e} (regenerate with ZIB_REGENERATE_VECTORS=1)"));
        assert!(
            &on_disk == bytes,
            "{name} differs from what the code produces now"
        );
    }
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        on_disk, index,
        "index.json differs from what the code produces now"
    );
    let mut listed = Vec::new();
    let mut dirs = vec![dir()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(dir()).unwrap();
                listed.push(relative.to_str().unwrap().replace('\\', "/"));
            }
        }
    }
    listed.sort();
    let mut expected: Vec<_> = files
        .iter()
        .map(|(n, _)| n.clone())
        .chain(["index.json".to_owned()])
        .collect();
    expected.sort();
    assert_eq!(listed, expected, "stray or missing files in tests/vectors");
}

fn hexarr<const N: usize>(v: &Value) -> [u8; N] {
    arr(hex::decode(v.as_str().unwrap()).unwrap())
}

fn vol_identity(v: &Value) -> VolumeIdentity {
    VolumeIdentity {
        repository_id: hexarr(&v["repository_id"]),
        backup_id: hexarr(&v["backup_id"]),
        volume_index: v["volume_index"].as_u64().unwrap().try_into().unwrap(),
    }
}

fn decrypt_file(key: &DataKey, v: &Value) -> Result<Vec<u8>, Error> {
    let ct = std::fs::read(dir().join(v["file"].as_str().unwrap())).unwrap();
    let mut dec = VolumeDecryptor::new(key, vol_identity(v));
    let mut out = Vec::new();
    for chunk in ct.chunks(10_000) {
        out.extend_from_slice(&dec.push(chunk)?);
    }
    out.extend_from_slice(&dec.finish()?);
    Ok(out)
}

/// What each `fail_*` vector's rejection must say: its reason contains this text. (The
/// error variant follows from the vector's kind and expectation.) Every fail vector must
/// be listed, so a new one comes with its exact expectation.
const FAIL_REASONS: [(&str, &str); 29] = [
    ("fail_keyring_bitflip", "SHA-256 checksum does not match"),
    ("fail_keyring_wrong_passphrase", ""),
    ("fail_keyring_altered_checksum_recomputed", ""),
    (
        "fail_keyring_kdf_cost_too_high",
        "scrypt log2 N must be between 1 and 20",
    ),
    (
        "fail_keyring_kdf_memory_over_1gib",
        "scrypt memory 128*N*r exceeds 1 GiB",
    ),
    (
        "fail_keyring_truncated",
        "exactly 160 bytes, this one is 159",
    ),
    (
        "fail_volume_bitflip_ciphertext",
        "final segment (segment 0, ciphertext from byte 58) failed authentication",
    ),
    (
        "fail_volume_bitflip_tag",
        "final segment (segment 0, ciphertext from byte 58) failed authentication",
    ),
    (
        "fail_volume_bitflip_salt",
        "final segment (segment 0, ciphertext from byte 58) failed authentication",
    ),
    ("fail_volume_bad_magic", "volume magic"),
    (
        "fail_volume_wrong_index",
        "final segment (segment 0, ciphertext from byte 58) failed authentication",
    ),
    (
        "fail_volume_other_backup",
        "final segment (segment 0, ciphertext from byte 58) failed authentication",
    ),
    (
        "fail_volume_truncated_inside_segment",
        "final segment (segment 0, ciphertext from byte 58) failed authentication",
    ),
    (
        "fail_volume_missing_final_segment",
        "without its final segment (truncated after 1 whole segments)",
    ),
    (
        "fail_volume_truncated_to_header",
        "ends after 58 bytes without its final segment (truncated after 0 whole segments)",
    ),
    (
        "fail_volume_segments_swapped",
        "segment 0 (ciphertext bytes 58..65610) failed authentication",
    ),
    (
        "fail_volume_segment_duplicated",
        "segment 1 (ciphertext bytes 65610..131162) failed authentication",
    ),
    (
        "fail_volume_segment_dropped",
        "final segment (segment 1, ciphertext from byte 65610) failed authentication",
    ),
    (
        "fail_volume_trailing_bytes",
        "final segment (segment 0, ciphertext from byte 58) failed authentication",
    ),
    ("fail_record_bitflip", "authentication failed"),
    ("fail_record_other_object", "authentication failed"),
    ("fail_record_other_type", "authentication failed"),
    ("fail_record_other_repository", "authentication failed"),
    ("fail_record_truncated", "not unpadded base64url text"),
    (
        "fail_record_padded",
        "not unpadded base64url text: Invalid padding",
    ),
    ("fail_record_version_0", "record version 0 does not exist"),
    ("fail_record_version_2", ""),
    (
        "fail_volume_version_0",
        "format version 0, which does not exist",
    ),
    ("fail_volume_version_2", ""),
];

/// Fail vectors whose rejection is above this crate: record plaintext layouts (checked
/// by the engine's `format::vectors` tests, their seals must open here), streams whose
/// manifest disagrees with their volumes (engine) and local-directory object files
/// (storage-backend's local_dir tests).
const LAYOUT_FAIL_KINDS: [&str; 4] = ["manifest", "volume_record", "stream", "local_object"];

fn record_context(v: &Value) -> RecordContext<'_> {
    RecordContext {
        record_type: v["record_type"].as_str().unwrap(),
        repository_id: hexarr(&v["repository_id"]),
        object_key: v["object_key"].as_str().unwrap(),
    }
}

#[test]
fn good_vectors_decrypt_and_fail_vectors_are_rejected() {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("index.json")).unwrap()).unwrap();
    let mut keys = std::collections::HashMap::new();
    for k in index["keyrings"].as_array().unwrap() {
        let bytes = std::fs::read(dir().join(k["file"].as_str().unwrap())).unwrap();
        let key = open_keyring(
            &bytes,
            &Passphrase::new(k["passphrase"].as_str().unwrap().into()),
        )
        .unwrap();
        assert_eq!(key.id().to_string(), k["key_id"].as_str().unwrap());
        keys.insert(k["name"].as_str().unwrap().to_owned(), key);
    }
    let mut checked = 0;
    for v in index["volumes"].as_array().unwrap() {
        let pt = decrypt_file(&keys[v["keyring"].as_str().unwrap()], v).unwrap();
        assert_eq!(pt.len() as u64, v["plaintext_len"].as_u64().unwrap());
        assert_eq!(
            hex::encode(digest(&SHA256, &pt)),
            v["plaintext_sha256"].as_str().unwrap()
        );
        checked += 1;
    }
    for r in index["records"].as_array().unwrap() {
        let key = &keys[r["keyring"].as_str().unwrap()];
        let pt = open_record(key, &record_context(r), r["sealed"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(pt), r["plaintext"].as_str().unwrap());
        checked += 1;
    }
    let mut failed = Vec::new();
    for f in index["fail"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        assert!(name.starts_with("fail_"));
        let expect = f["expect"].as_str().unwrap();
        let kind = f["kind"].as_str().unwrap();
        if LAYOUT_FAIL_KINDS.contains(&kind) {
            // The crypto layer accepts what the layout above it refuses.
            if let Some(sealed) = f["sealed"].as_str() {
                let key = &keys[f["keyring"].as_str().unwrap()];
                let pt = open_record(key, &record_context(f), sealed).unwrap();
                assert_eq!(hex::encode(pt), f["plaintext"].as_str().unwrap(), "{name}");
            }
            checked += 1;
            continue;
        }
        failed.push(name);
        let err = match kind {
            "keyring" => {
                let bytes = std::fs::read(dir().join(f["file"].as_str().unwrap())).unwrap();
                open_keyring(
                    &bytes,
                    &Passphrase::new(f["passphrase"].as_str().unwrap().into()),
                )
                .map(drop)
            }
            "volume" => decrypt_file(&keys[f["keyring"].as_str().unwrap()], f).map(drop),
            "record" => open_record(
                &keys[f["keyring"].as_str().unwrap()],
                &record_context(f),
                f["sealed"].as_str().unwrap(),
            )
            .map(drop),
            other => panic!("{name}: unknown kind {other}"),
        }
        .expect_err(name);
        let reason = FAIL_REASONS
            .iter()
            .find(|(listed, _)| *listed == name)
            .map(|(_, reason)| *reason)
            .unwrap_or_else(|| panic!("{name}: no expected rejection in FAIL_REASONS"));
        // The exact error for the object's kind, naming that object, for the exact reason.
        let said = match (expect, kind, &err) {
            ("wrong_passphrase", "keyring", Error::WrongPassphrase) => String::new(),
            ("newer_version", "record", Error::UnsupportedVersion { what, version }) => {
                assert_eq!((*what, *version), ("record", 2), "{name}");
                String::new()
            }
            ("newer_version", "volume", Error::UnsupportedVersion { version, .. }) => {
                assert_eq!(*version, 2, "{name}");
                String::new()
            }
            ("corrupt", "keyring", Error::CorruptKeyring { reason }) => reason.clone(),
            ("corrupt", "volume", Error::CorruptVolume { volume, reason }) => {
                assert_eq!(*volume, vol_identity(f), "{name}: names another volume");
                reason.clone()
            }
            (
                "corrupt",
                "record",
                Error::CorruptRecord {
                    record_type,
                    object_key,
                    reason,
                },
            ) => {
                let context = record_context(f);
                assert_eq!(
                    (record_type.as_str(), object_key.as_str()),
                    (context.record_type, context.object_key),
                    "{name}: names another record"
                );
                reason.clone()
            }
            _ => panic!("{name}: expected {expect} for a {kind}, got {err:?}"),
        };
        assert!(
            said.contains(reason),
            "{name}: rejected for another reason: {said:?} (expected {reason:?})"
        );
        checked += 1;
    }
    failed.sort_unstable();
    let mut listed: Vec<&str> = FAIL_REASONS.iter().map(|(name, _)| *name).collect();
    listed.sort_unstable();
    assert_eq!(failed, listed, "FAIL_REASONS and the fail vectors differ");
    assert!(checked >= 30, "only {checked} vectors checked");
}
