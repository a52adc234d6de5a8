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

    let record_plain = br#"{"backup":"b0b1","parent":null,"bytes":123456789}"#.to_vec();
    let ctx = RecordContext {
        record_type: "manifest",
        repository_id: arr(seq(0xa0, 16)),
        object_key: "zib/backups/b0b1b2b3/manifest",
    };
    let sealed = seal_record_with_nonce(&fast, &ctx, &record_plain, arr(seq(0xe0, 12))).unwrap();
    let empty_sealed = seal_record_with_nonce(&fast, &ctx, b"", arr(seq(0xf0, 12))).unwrap();
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
    let records = vec![
        record_entry(
            "record_manifest",
            &ctx,
            &sealed,
            json!({"plaintext": hex::encode(&record_plain)}),
        ),
        record_entry(
            "record_empty",
            &ctx,
            &empty_sealed,
            json!({"plaintext": ""}),
        ),
    ];

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
    record_fail("fail_record_truncated", &ctx, &sealed[..sealed.len() - 3]);
    record_fail("fail_record_padded", &ctx, &format!("{sealed}="));

    let index = json!({
        "description": "zib format v1 test vectors; see docs/FORMAT.md, section \"Test vectors\". Generated by crypto/tests/vectors.rs.",
        "keyrings": keyrings, "volumes": volumes, "records": records, "fail": fail,
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
            std::fs::write(dir().join(name), bytes).unwrap();
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
    let mut listed: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
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
const FAIL_REASONS: [(&str, &str); 25] = [
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
];

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
        failed.push(name);
        let expect = f["expect"].as_str().unwrap();
        let kind = f["kind"].as_str().unwrap();
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
