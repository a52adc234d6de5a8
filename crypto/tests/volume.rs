//! Volume encryption: boundaries, size arithmetic, streaming, and every tampering case.
// Helpers outside #[test] fns unwrap too: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures::{executor::block_on, stream, StreamExt, TryStreamExt};
use proptest::prelude::*;
use zeroize::Zeroizing;
use zib_crypto::{
    ciphertext_len, decrypt_stream, encrypt_stream, plaintext_len, plaintext_per_part,
    segment_offset, DataKey, Error, KeyId, VolumeDecryptor, VolumeEncryptor, VolumeHeader,
    VolumeIdentity, VolumeSalt, HEADER_LEN, SEGMENT_CIPHERTEXT_LEN, SEGMENT_LEN,
};

const S: usize = SEGMENT_LEN as usize;
const SCT: usize = SEGMENT_CIPHERTEXT_LEN as usize;
const H: usize = HEADER_LEN as usize;

fn key(seed: u8) -> DataKey {
    DataKey::from_secret_bytes(
        KeyId::from_bytes([seed; 16]),
        Zeroizing::new([seed ^ 0x5a; 32]),
    )
}

fn identity(index: u32) -> VolumeIdentity {
    VolumeIdentity {
        repository_id: [0xaa; 16],
        backup_id: [0xbb; 16],
        volume_index: index,
    }
}

fn salt(seed: u8) -> VolumeSalt {
    VolumeSalt::from_bytes([seed; 32])
}

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8)
        .collect()
}

fn encrypt(
    key: &DataKey,
    id: VolumeIdentity,
    salt: &VolumeSalt,
    pt: &[u8],
    chunk: usize,
) -> Vec<u8> {
    let mut enc = VolumeEncryptor::new(key, id, salt).unwrap();
    let mut out = Vec::new();
    for piece in pt.chunks(chunk.max(1)) {
        out.extend_from_slice(&enc.push(piece).unwrap());
    }
    out.extend_from_slice(&enc.finish().unwrap());
    out
}

fn decrypt(key: &DataKey, id: VolumeIdentity, ct: &[u8], chunk: usize) -> Result<Vec<u8>, Error> {
    let mut dec = VolumeDecryptor::new(key, id);
    let mut out = Vec::new();
    for piece in ct.chunks(chunk.max(1)) {
        out.extend_from_slice(&dec.push(piece)?);
    }
    out.extend_from_slice(&dec.finish()?);
    Ok(out)
}

fn expect_corrupt(result: Result<Vec<u8>, Error>, what: &str) -> String {
    match result {
        Err(err @ Error::CorruptVolume { .. }) => {
            let msg = err.to_string();
            // Every report names the object: volume index, backup id and repository id.
            assert!(msg.contains(&hex::encode([0xbb; 16])), "{what}: {msg}");
            assert!(msg.contains(&hex::encode([0xaa; 16])), "{what}: {msg}");
            msg
        }
        other => panic!("{what}: expected CorruptVolume, got {other:?}"),
    }
}

/// What failed authentication: segment `index` of a volume whose final segment is
/// `last`, in the words the decryptor reports it.
fn segment_failure(index: usize, last: usize) -> String {
    let start = H + index * SCT;
    if index == last {
        format!("its final segment (segment {index}, ciphertext from byte {start}) failed authentication")
    } else {
        format!(
            "segment {index} (ciphertext bytes {start}..{}) failed authentication",
            start + SCT
        )
    }
}

/// The exact rejection of an altered volume.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rejection {
    /// `CorruptVolume` whose reason contains this text.
    Corrupt(String),
    /// `UnsupportedVersion` of a volume with this version.
    Unsupported(u16),
    /// `KeyMismatch`.
    KeyMismatch,
}

/// The rejection a volume `original` (as `encrypt` writes it) must meet when its bytes
/// are replaced by `altered` (same length), worked out from the format's layout alone:
/// the first changed byte decides. Header: magic (8 bytes), version (2, little-endian),
/// key id (16), salt (32); then segments of `SCT` bytes, the last one short.
fn expected_rejection(original: &[u8], altered: &[u8]) -> Rejection {
    let pos = original
        .iter()
        .zip(altered)
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| panic!("the altered volume is unchanged"));
    let last = (original.len() - H - 1) / SCT;
    match pos {
        0..8 => Rejection::Corrupt("does not start with the volume magic".into()),
        8..10 => match u16::from_le_bytes([altered[8], altered[9]]) {
            0 => Rejection::Corrupt("format version 0, which does not exist".into()),
            version => Rejection::Unsupported(version),
        },
        10..26 => Rejection::KeyMismatch,
        // Another salt derives another key: the first segment fails.
        26..H => Rejection::Corrupt(segment_failure(0, last)),
        _ => Rejection::Corrupt(segment_failure((pos - H) / SCT, last)),
    }
}

#[track_caller]
fn assert_rejected(result: Result<Vec<u8>, Error>, expected: &Rejection, what: &str) {
    match (result, expected) {
        (Err(err @ Error::CorruptVolume { .. }), Rejection::Corrupt(reason)) => {
            let msg = expect_corrupt(Err(err), what);
            assert!(
                msg.contains(reason.as_str()),
                "{what}: {msg} (expected {reason:?})"
            );
        }
        (
            Err(Error::UnsupportedVersion {
                what: "volume",
                version,
            }),
            Rejection::Unsupported(expected),
        ) => {
            assert_eq!(version, *expected, "{what}")
        }
        (Err(Error::KeyMismatch { .. }), Rejection::KeyMismatch) => {}
        (other, expected) => panic!("{what}: expected {expected:?}, got {other:?}"),
    }
}

const BOUNDARY_SIZES: [usize; 9] = [
    0,
    1,
    S - 1,
    S,
    S + 1,
    2 * S - 1,
    2 * S,
    2 * S + 1,
    5 * S + 12345,
];

#[test]
fn roundtrip_at_every_boundary_and_chunking() {
    let k = key(1);
    for len in BOUNDARY_SIZES {
        let pt = data(len);
        let reference = encrypt(&k, identity(0), &salt(1), &pt, usize::MAX);
        assert_eq!(
            reference.len() as u64,
            ciphertext_len(len as u64),
            "len {len}"
        );
        assert_eq!(plaintext_len(reference.len() as u64), Some(len as u64));
        for chunk in [1, 7, 4096, S - 1, S, S + 17, 3 * S + 5] {
            if len > 100_000 && chunk < 100 {
                continue; // byte-at-a-time over megabytes adds time, not coverage
            }
            let ct = encrypt(&k, identity(0), &salt(1), &pt, chunk);
            assert_eq!(
                ct, reference,
                "len {len} chunk {chunk}: chunking changed the bytes"
            );
            for dchunk in [1, 13, SCT - 1, SCT, SCT + 1, usize::MAX] {
                if len > 100_000 && dchunk < 100 {
                    continue;
                }
                let back = decrypt(&k, identity(0), &ct, dchunk).unwrap();
                assert!(
                    back == pt,
                    "len {len} chunk {chunk}/{dchunk}: plaintext differs"
                );
            }
        }
    }
}

#[test]
fn layout_is_header_then_segments_with_a_short_final_one() {
    let k = key(2);
    let ct = encrypt(&k, identity(3), &salt(9), &data(2 * S), usize::MAX);
    // Two full segments and an empty final one: 58 + 2·(S+16) + 16.
    assert_eq!(ct.len(), H + 2 * SCT + 16);
    let header = VolumeHeader::parse(&ct, &identity(3)).unwrap();
    assert_eq!(header.key_id, k.id());
    assert_eq!(header.salt, salt(9));
    assert_eq!(&ct[..8], b"ZIB-VOL\n");
    assert_eq!(&ct[8..10], &[1, 0]);
    assert_eq!(segment_offset(2), (H + 2 * SCT) as u64);
}

#[test]
fn size_arithmetic_inverts_and_rejects_impossible_lengths() {
    for len in (0..4 * S as u64 + 40)
        .step_by(997)
        .chain(BOUNDARY_SIZES.map(|x| x as u64))
    {
        assert_eq!(plaintext_len(ciphertext_len(len)), Some(len));
    }
    assert_eq!(plaintext_len(0), None);
    assert_eq!(plaintext_len(HEADER_LEN + 15), None);
    assert_eq!(plaintext_len(HEADER_LEN + 16), Some(0));
    // A whole number of full segments with no final segment: truncated.
    assert_eq!(plaintext_len(HEADER_LEN + SEGMENT_CIPHERTEXT_LEN), None);
    assert_eq!(
        plaintext_len(HEADER_LEN + SEGMENT_CIPHERTEXT_LEN + 15),
        None
    );
}

#[test]
fn parts_cut_from_pushes_fall_on_segment_boundaries() {
    let target = 5 * 1024 * 1024 + 123;
    let first = plaintext_per_part(target, true).unwrap();
    let rest = plaintext_per_part(target, false).unwrap();
    assert_eq!(first % SEGMENT_LEN, 0);
    assert_eq!(rest % SEGMENT_LEN, 0);
    let pt = data((first + 2 * rest + 1000) as usize);
    let k = key(3);
    let mut enc = VolumeEncryptor::new(&k, identity(0), &salt(3)).unwrap();
    let part1 = enc.push(&pt[..first as usize]).unwrap();
    assert_eq!(
        part1.len() as u64,
        HEADER_LEN + first / SEGMENT_LEN * SEGMENT_CIPHERTEXT_LEN
    );
    assert!(part1.len() as u64 <= target && target - (part1.len() as u64) < SEGMENT_CIPHERTEXT_LEN);
    // Fed in odd-sized pieces, a part's plaintext still yields exactly the part.
    let mut part2 = Vec::new();
    for piece in pt[first as usize..(first + rest) as usize].chunks(100_003) {
        part2.extend_from_slice(&enc.push(piece).unwrap());
    }
    assert_eq!(
        part2.len() as u64,
        rest / SEGMENT_LEN * SEGMENT_CIPHERTEXT_LEN
    );
    assert!(part2.len() as u64 <= target);
    let mut last = enc.push(&pt[(first + rest) as usize..]).unwrap().to_vec();
    last.extend_from_slice(&enc.finish().unwrap());
    let whole = [&part1[..], &part2, &last].concat();
    assert_eq!(whole, encrypt(&k, identity(0), &salt(3), &pt, usize::MAX));
    assert!(matches!(
        plaintext_per_part(SEGMENT_CIPHERTEXT_LEN, true),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        plaintext_per_part(SEGMENT_CIPHERTEXT_LEN, false).unwrap(),
        SEGMENT_LEN
    );
    assert!(plaintext_per_part(0, false).is_err());
}

#[test]
fn same_salt_same_bytes_fresh_salt_different_bytes() {
    let k = key(4);
    let pt = data(S + 5);
    let a = encrypt(&k, identity(0), &salt(1), &pt, 1000);
    assert_eq!(a, encrypt(&k, identity(0), &salt(1), &pt, 3));
    let fresh = VolumeSalt::generate().unwrap();
    assert_ne!(fresh, VolumeSalt::generate().unwrap());
    let b = encrypt(&k, identity(0), &fresh, &pt, 1000);
    // Everything after the key id differs: salt, and every segment's ciphertext.
    assert_ne!(a[H..H + 64], b[H..H + 64]);
    assert_eq!(decrypt(&k, identity(0), &b, 999).unwrap(), pt);
}

fn segments_of(ct: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let header = ct[..H].to_vec();
    let segs = ct[H..].chunks(SCT).map(<[u8]>::to_vec).collect();
    (header, segs)
}

#[test]
fn reordered_duplicated_dropped_and_truncated_segments_are_rejected() {
    let k = key(5);
    let pt = data(3 * S + 100);
    let ct = encrypt(&k, identity(0), &salt(5), &pt, usize::MAX);
    let (header, segs) = segments_of(&ct);
    assert_eq!(segs.len(), 4);
    let join = |order: &[usize]| -> Vec<u8> {
        let mut v = header.clone();
        for &i in order {
            v.extend_from_slice(&segs[i]);
        }
        v
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("swapped 0,1", join(&[1, 0, 2, 3])),
        ("swapped 1,2", join(&[0, 2, 1, 3])),
        ("duplicated 1", join(&[0, 1, 1, 2, 3])),
        ("dropped 1", join(&[0, 2, 3])),
        ("dropped final", join(&[0, 1, 2])),
        ("final moved early", join(&[0, 3])),
        ("only the final", join(&[3])),
        ("header only", join(&[])),
        ("final duplicated", join(&[0, 1, 2, 3, 3])),
    ];
    for (what, bad) in cases {
        let msg = expect_corrupt(decrypt(&k, identity(0), &bad, 4096), what);
        assert!(
            msg.contains("segment") || msg.contains("final"),
            "{what}: {msg}"
        );
    }
    for cut in [
        1,
        H - 1,
        H,
        H + 1,
        H + SCT - 1,
        H + SCT,
        H + SCT + 15,
        H + 3 * SCT,
        ct.len() - 1,
    ] {
        expect_corrupt(
            decrypt(&k, identity(0), &ct[..cut], 5000),
            &format!("cut at {cut}"),
        );
    }
    let mut extra = ct.clone();
    extra.extend_from_slice(b"trailing");
    expect_corrupt(decrypt(&k, identity(0), &extra, 5000), "trailing bytes");
    let mut extra = ct.clone();
    extra.extend_from_slice(&vec![0u8; SCT]);
    expect_corrupt(decrypt(&k, identity(0), &extra, 5000), "trailing segment");
    assert!(matches!(
        decrypt(&k, identity(0), &[], 10),
        Err(Error::CorruptVolume { .. })
    ));
}

#[test]
fn volume_swapped_between_positions_backups_or_repositories_is_rejected() {
    let k = key(6);
    let ct = encrypt(&k, identity(7), &salt(6), &data(100), usize::MAX);
    assert!(decrypt(&k, identity(7), &ct, 50).is_ok());
    // The identity is authenticated with every segment: here the only, final one fails.
    let fails = Rejection::Corrupt(segment_failure(0, 0));
    assert_rejected(decrypt(&k, identity(8), &ct, 50), &fails, "other index");
    let mut other_backup = identity(7);
    other_backup.backup_id[0] ^= 1;
    let msg = match decrypt(&k, other_backup, &ct, 50) {
        Err(err @ Error::CorruptVolume { .. }) => err.to_string(),
        other => panic!("other backup: {other:?}"),
    };
    assert!(msg.contains(&segment_failure(0, 0)), "other backup: {msg}");
    let mut other_repo = identity(7);
    other_repo.repository_id[15] ^= 0x80;
    let msg = match decrypt(&k, other_repo, &ct, 50) {
        Err(err @ Error::CorruptVolume { .. }) => err.to_string(),
        other => panic!("other repository: {other:?}"),
    };
    assert!(
        msg.contains(&segment_failure(0, 0)),
        "other repository: {msg}"
    );
}

#[test]
fn bit_flips_in_header_and_segments_are_rejected() {
    let k = key(7);
    let ct = encrypt(&k, identity(0), &salt(7), &data(S + 10), usize::MAX);
    let mut positions: Vec<usize> = (0..H).collect();
    positions.extend([
        H,
        H + 1,
        H + S / 2,
        H + S - 1,
        H + S,
        H + SCT - 1,
        H + SCT,
        ct.len() - 17,
        ct.len() - 1,
    ]);
    for pos in positions {
        for bit in [0, 7] {
            let mut bad = ct.clone();
            bad[pos] ^= 1 << bit;
            assert_rejected(
                decrypt(&k, identity(0), &bad, 10_000),
                &expected_rejection(&ct, &bad),
                &format!("flip at {pos} bit {bit}"),
            );
        }
    }
    // The layout the expectations rest on: two segments, the second the final one.
    assert_eq!(
        expected_rejection(&ct, &{
            let mut bad = ct.clone();
            bad[H + SCT] ^= 1;
            bad
        }),
        Rejection::Corrupt(format!(
            "its final segment (segment 1, ciphertext from byte {}) failed authentication",
            H + SCT
        ))
    );
}

#[test]
fn wrong_key_is_reported_as_key_mismatch_or_corruption() {
    let ct = encrypt(&key(8), identity(0), &salt(8), &data(10), usize::MAX);
    match decrypt(&key(9), identity(0), &ct, 100) {
        Err(err @ Error::KeyMismatch { .. }) => {
            let msg = err.to_string();
            assert!(
                msg.contains(&KeyId::from_bytes([8; 16]).to_string()),
                "{msg}"
            );
            assert!(msg.contains(&hex::encode([0xbb; 16])), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // Same key id, different secret (a forged or mixed-up key): authentication fails.
    let impostor = DataKey::from_secret_bytes(KeyId::from_bytes([8; 16]), Zeroizing::new([0; 32]));
    expect_corrupt(decrypt(&impostor, identity(0), &ct, 100), "impostor key");
}

#[test]
fn decryptor_refuses_to_continue_after_an_error() {
    let k = key(10);
    let mut ct = encrypt(&k, identity(0), &salt(10), &data(2 * S + 3), usize::MAX);
    ct[H + 5] ^= 1;
    let mut dec = VolumeDecryptor::new(&k, identity(0));
    let first = dec.push(&ct[..H + SCT]).map(|b| b.to_vec());
    assert_rejected(
        first,
        &Rejection::Corrupt(segment_failure(0, 2)),
        "segment 0 altered",
    );
    assert!(matches!(dec.push(&ct[H + SCT..]), Err(Error::Poisoned(_))));
    assert!(matches!(dec.finish(), Err(Error::Poisoned(_))));
}

#[test]
fn newer_volume_version_is_unsupported() {
    let k = key(11);
    let mut ct = encrypt(&k, identity(0), &salt(11), &data(10), usize::MAX);
    ct[8] = 2;
    assert!(matches!(
        decrypt(&k, identity(0), &ct, 100),
        Err(Error::UnsupportedVersion {
            what: "volume",
            version: 2
        })
    ));
    ct[8] = 0;
    expect_corrupt(decrypt(&k, identity(0), &ct, 100), "version 0");
    ct[0] = b'X';
    let msg = expect_corrupt(decrypt(&k, identity(0), &ct, 100), "bad magic");
    assert!(msg.contains("magic"), "{msg}");
}

/// Encrypts through `push_chunk`, with each chunk either uniquely owned (sealed in place)
/// or shared with a clone kept alive (copied).
fn encrypt_chunks(
    k: &DataKey,
    id: VolumeIdentity,
    pt: &[u8],
    chunk: usize,
    shared: bool,
) -> Vec<u8> {
    let mut enc = VolumeEncryptor::new(k, id, &salt(20)).unwrap();
    let mut out = Vec::new();
    let mut keep = Vec::new();
    for piece in pt.chunks(chunk) {
        let bytes = Bytes::from(piece.to_vec());
        if shared {
            keep.push(bytes.clone());
        }
        for c in enc.push_chunk(bytes).unwrap() {
            out.extend_from_slice(&c);
        }
    }
    out.extend_from_slice(&enc.finish().unwrap());
    out
}

fn decrypt_chunks(
    k: &DataKey,
    id: VolumeIdentity,
    ct: &[u8],
    chunk: usize,
    shared: bool,
) -> Result<Vec<u8>, Error> {
    let mut dec = VolumeDecryptor::new(k, id);
    let mut out = Vec::new();
    let mut keep = Vec::new();
    for piece in ct.chunks(chunk) {
        let bytes = Bytes::from(piece.to_vec());
        if shared {
            keep.push(bytes.clone());
        }
        for c in dec.push_chunk(bytes)? {
            out.extend_from_slice(&c);
        }
    }
    out.extend_from_slice(&dec.finish()?);
    Ok(out)
}

#[test]
fn chunk_api_in_place_and_copying_paths_match_push() {
    let k = key(14);
    for len in BOUNDARY_SIZES {
        let pt = data(len);
        let reference = encrypt(&k, identity(0), &salt(20), &pt, usize::MAX);
        for chunk in [1, 100, S - 1, S, S + 1, 2 * S, 3 * S + 7, 10 * S] {
            if len > 100_000 && chunk < 100 {
                continue;
            }
            for shared in [false, true] {
                let ct = encrypt_chunks(&k, identity(0), &pt, chunk, shared);
                assert!(ct == reference, "len {len} chunk {chunk} shared {shared}");
                let back = decrypt_chunks(&k, identity(0), &ct, chunk, shared).unwrap();
                assert!(back == pt, "len {len} chunk {chunk} shared {shared}");
            }
        }
    }
}

#[test]
fn chunk_api_detects_tampering_in_segments_opened_in_place() {
    let k = key(15);
    let pt = data(4 * S + 3);
    let ct = encrypt(&k, identity(0), &salt(20), &pt, usize::MAX);
    for pos in [H + 1, H + SCT + 5, H + 3 * SCT - 1, ct.len() - 2] {
        let mut bad = ct.clone();
        bad[pos] ^= 0x10;
        for chunk in [SCT, 2 * SCT + H, 5 * SCT] {
            for shared in [false, true] {
                assert_rejected(
                    decrypt_chunks(&k, identity(0), &bad, chunk, shared),
                    &expected_rejection(&ct, &bad),
                    &format!("pos {pos} chunk {chunk} shared {shared}"),
                );
            }
        }
    }
    let (header, segs) = segments_of(&ct);
    let swapped = [header, segs[1].clone(), segs[0].clone(), segs[2..].concat()].concat();
    assert_rejected(
        decrypt_chunks(&k, identity(0), &swapped, 3 * SCT, false),
        &Rejection::Corrupt(segment_failure(0, 4)),
        "segments 0 and 1 swapped",
    );
    assert_rejected(
        decrypt_chunks(&k, identity(0), &ct[..H + 4 * SCT], 3 * SCT, false),
        &Rejection::Corrupt(format!(
            "it ends after {} bytes without its final segment (truncated after 4 whole segments)",
            H + 4 * SCT
        )),
        "final segment cut off",
    );
    assert_rejected(
        decrypt_chunks(&k, identity(1), &ct, 3 * SCT, false),
        &Rejection::Corrupt(segment_failure(0, 4)),
        "read as volume 1",
    );
}

#[test]
fn decryption_can_start_at_a_segment_for_ranged_downloads() {
    let k = key(16);
    let pt = data(4 * S + 99);
    let ct = encrypt(&k, identity(3), &salt(16), &pt, usize::MAX);
    for first in 0..=4u64 {
        let from = segment_offset(first) as usize;
        let mut dec = VolumeDecryptor::starting_at(&k, identity(3), &ct[..H], first).unwrap();
        let mut out = dec.push(&ct[from..]).unwrap().to_vec();
        out.extend_from_slice(&dec.finish().unwrap());
        assert!(out == pt[first as usize * S..], "from segment {first}");
    }
    // Starting at the wrong segment number, or with another volume's header, fails: the
    // first segment fed, taken for the one the decryptor starts at, does not authenticate.
    let mut dec = VolumeDecryptor::starting_at(&k, identity(3), &ct[..H], 1).unwrap();
    assert_rejected(
        dec.push(&ct[segment_offset(2) as usize..])
            .map(|b| b.to_vec()),
        &Rejection::Corrupt(segment_failure(1, 4)),
        "segment 2 fed as segment 1",
    );
    let other = encrypt(&k, identity(3), &salt(17), &pt, usize::MAX);
    let mut dec = VolumeDecryptor::starting_at(&k, identity(3), &other[..H], 2).unwrap();
    assert_rejected(
        dec.push(&ct[segment_offset(2) as usize..])
            .map(|b| b.to_vec()),
        &Rejection::Corrupt(segment_failure(2, 4)),
        "segment 2 under another volume's header",
    );
    assert!(matches!(
        VolumeDecryptor::starting_at(&key(17), identity(3), &ct[..H], 0),
        Err(Error::KeyMismatch { .. })
    ));
}

fn chunks_of(buf: &[u8], size: usize) -> Vec<Result<Bytes, std::io::Error>> {
    buf.chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect()
}

#[test]
fn async_streams_roundtrip_with_bounded_chunks() {
    let k = key(12);
    for len in BOUNDARY_SIZES {
        let pt = data(len);
        let enc = VolumeEncryptor::new(&k, identity(1), &salt(12)).unwrap();
        let out: Vec<Bytes> =
            block_on(encrypt_stream(stream::iter(chunks_of(&pt, 50_000)), enc).try_collect())
                .unwrap();
        // No output chunk is larger than one input chunk's worth of segments plus the
        // carried-over partial segment and the header: memory stays bounded.
        assert!(
            out.iter().all(|c| c.len() <= H + 50_000 + SCT + 16),
            "len {len}"
        );
        let ct: Vec<u8> = out.concat();
        assert_eq!(ct, encrypt(&k, identity(1), &salt(12), &pt, usize::MAX));
        let dec = VolumeDecryptor::new(&k, identity(1));
        let back: Vec<Bytes> =
            block_on(decrypt_stream(stream::iter(chunks_of(&ct, 70_001)), dec).try_collect())
                .unwrap();
        assert_eq!(back.concat(), pt, "len {len}");
    }
}

#[test]
fn async_decrypt_reports_truncation_and_input_errors() {
    let k = key(13);
    let ct = encrypt(&k, identity(2), &salt(13), &data(2 * S + 1), usize::MAX);
    let dec = VolumeDecryptor::new(&k, identity(2));
    let truncated = &ct[..H + 2 * SCT];
    let result: Result<Vec<Bytes>, std::io::Error> =
        block_on(decrypt_stream(stream::iter(chunks_of(truncated, 9999)), dec).try_collect());
    let err = result.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("final segment"), "{err}");

    // An input error is passed through and ends the stream.
    let mut items = chunks_of(&ct[..1000], 500);
    items.push(Err(std::io::Error::other("disk gone")));
    items.push(Ok(Bytes::from_static(b"never read")));
    let dec = VolumeDecryptor::new(&k, identity(2));
    let all: Vec<_> = block_on(decrypt_stream(stream::iter(items), dec).collect::<Vec<_>>());
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].as_ref().unwrap_err().to_string(), "disk gone");

    let mut items = chunks_of(&data(10), 5);
    items.push(Err(std::io::Error::other("send failed")));
    let enc = VolumeEncryptor::new(&k, identity(2), &salt(13)).unwrap();
    let all: Vec<_> = block_on(encrypt_stream(stream::iter(items), enc).collect::<Vec<_>>());
    // The header went out, then the error; the partial plaintext is never sealed as a
    // final segment, so what was emitted cannot pass for a complete volume.
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].as_ref().unwrap().len(), H);
    assert_eq!(all[1].as_ref().unwrap_err().to_string(), "send failed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn decrypt_inverts_encrypt(len in 0usize..(3 * S + 500), chunk in 1usize..200_000, dchunk in 1usize..200_000, seed: u8) {
        let k = key(seed);
        let pt = data(len);
        let ct = encrypt(&k, identity(seed.into()), &salt(seed), &pt, chunk);
        prop_assert_eq!(ct.len() as u64, ciphertext_len(len as u64));
        prop_assert!(decrypt(&k, identity(seed.into()), &ct, dchunk).unwrap() == pt);
    }

    #[test]
    fn any_single_byte_change_is_rejected(len in 0usize..(2 * S + 500), pos_frac in 0.0f64..1.0, xor in 1u8..=255) {
        let k = key(3);
        let pt = data(len);
        let mut ct = encrypt(&k, identity(0), &salt(3), &pt, 65_000);
        let original = ct.clone();
        let pos = ((ct.len() as f64) * pos_frac) as usize % ct.len();
        ct[pos] ^= xor;
        assert_rejected(
            decrypt(&k, identity(0), &ct, 30_000),
            &expected_rejection(&original, &ct),
            &format!("change at {pos} of {}", ct.len()),
        );
    }
}

#[test]
fn encryptors_decryptors_and_streams_can_move_between_threads() {
    fn send<T: Send + 'static>() {}
    type Input = stream::Iter<std::vec::IntoIter<Result<Bytes, std::io::Error>>>;
    send::<VolumeEncryptor>();
    send::<VolumeDecryptor>();
    send::<zib_crypto::EncryptStream<Input>>();
    send::<zib_crypto::DecryptStream<Input>>();
    send::<DataKey>();
    send::<Error>();
}
