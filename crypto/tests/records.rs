//! Sealed records: round trip, size, binding to their context, and tampering.

// Helpers outside #[test] fns unwrap too: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use zeroize::Zeroizing;
use zib_crypto::{
    open_record, seal_record, sealed_record_len, DataKey, Error, KeyId, RecordContext,
};

fn key(seed: u8) -> DataKey {
    DataKey::from_secret_bytes(KeyId::from_bytes([seed; 16]), Zeroizing::new([seed; 32]))
}

const CTX: RecordContext<'static> = RecordContext {
    record_type: "manifest",
    repository_id: [7; 16],
    object_key: "zib/b/0123/manifest",
};

#[test]
fn roundtrip_at_many_sizes_with_exact_predicted_length() {
    let k = key(1);
    for len in [0, 1, 2, 3, 4, 100, 1000, 1400] {
        let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let sealed = seal_record(&k, &CTX, &pt).unwrap();
        assert_eq!(sealed.len(), sealed_record_len(len), "len {len}");
        assert!(sealed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(open_record(&k, &CTX, &sealed).unwrap(), pt);
    }
    // Fresh nonce each time: the same plaintext seals differently.
    assert_ne!(
        seal_record(&k, &CTX, b"x").unwrap(),
        seal_record(&k, &CTX, b"x").unwrap()
    );
    // What fits S3's 2,000-byte metadata limit with a short key name.
    assert!(sealed_record_len(1400) < 2000 - 20);
}

#[test]
fn record_is_bound_to_type_repository_and_object() {
    let k = key(2);
    let sealed = seal_record(&k, &CTX, b"chain facts").unwrap();
    let others = [
        RecordContext {
            record_type: "volume",
            ..CTX
        },
        RecordContext {
            repository_id: [8; 16],
            ..CTX
        },
        RecordContext {
            object_key: "zib/b/0124/manifest",
            ..CTX
        },
        RecordContext {
            object_key: "",
            ..CTX
        },
    ];
    for other in others {
        let err = open_record(&k, &other, &sealed).unwrap_err();
        assert!(
            matches!(err, Error::CorruptRecord { .. }),
            "{other:?}: {err:?}"
        );
    }
    let impostor = DataKey::from_secret_bytes(KeyId::from_bytes([2; 16]), Zeroizing::new([0; 32]));
    assert!(matches!(
        open_record(&impostor, &CTX, &sealed),
        Err(Error::CorruptRecord { .. })
    ));
    assert!(matches!(
        open_record(&key(3), &CTX, &sealed),
        Err(Error::KeyMismatch { .. })
    ));
}

/// The rejection an altered sealed record must meet, worked out from the format alone:
/// text that is not unpadded base64url is refused as such; otherwise the first changed
/// byte decides (version, 1 byte; key id, 16; then nonce, ciphertext and tag, which fail
/// authentication), and too few bytes are refused by their count.
fn expected_rejection(original: &[u8], altered: &str) -> String {
    use base64::Engine as _;
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(altered) else {
        return "corrupt: not unpadded base64url text".into();
    };
    if bytes.len() < zib_crypto::RECORD_OVERHEAD {
        return format!(
            "corrupt: {} bytes is shorter than the {}-byte minimum",
            bytes.len(),
            zib_crypto::RECORD_OVERHEAD
        );
    }
    let first = original.iter().zip(&bytes).position(|(a, b)| a != b);
    match first {
        Some(0) if bytes[0] == 0 => "corrupt: record version 0 does not exist".into(),
        Some(0) => format!("unsupported version {}", bytes[0]),
        Some(1..=16) => "key mismatch".into(),
        _ => "corrupt: authentication failed".into(),
    }
}

/// The rejection `open_record` gave, in the terms of [`expected_rejection`].
fn rejection(result: Result<Vec<u8>, Error>) -> String {
    match result {
        Err(Error::CorruptRecord {
            record_type,
            object_key,
            reason,
        }) => {
            assert_eq!(
                (record_type.as_str(), object_key.as_str()),
                (CTX.record_type, CTX.object_key)
            );
            format!("corrupt: {reason}")
        }
        Err(Error::UnsupportedVersion {
            what: "record",
            version,
        }) => format!("unsupported version {version}"),
        Err(Error::KeyMismatch { .. }) => "key mismatch".into(),
        other => panic!("not a rejection: {other:?}"),
    }
}

#[test]
fn every_character_change_and_truncation_is_rejected() {
    use base64::Engine as _;
    let k = key(4);
    let sealed = seal_record(&k, &CTX, b"0123456789").unwrap();
    let original = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&sealed)
        .unwrap();
    let check = |bad: &str, what: &str| {
        let got = rejection(open_record(&k, &CTX, bad));
        let expected = expected_rejection(&original, bad);
        assert!(
            got.starts_with(&expected),
            "{what}: {got} (expected {expected})"
        );
    };
    for pos in 0..sealed.len() {
        for replacement in ['A', 'z', '-', '=', '+', '/', '.'] {
            let mut bad: Vec<char> = sealed.chars().collect();
            if bad[pos] == replacement {
                continue;
            }
            bad[pos] = replacement;
            let bad: String = bad.into_iter().collect();
            check(&bad, &format!("change at {pos} to {replacement}"));
        }
    }
    for cut in 0..sealed.len() {
        check(&sealed[..cut], &format!("cut {cut}"));
    }
    check(&format!("{sealed}A"), "one character more");
}

#[test]
fn bad_contexts_are_refused_before_sealing() {
    let k = key(5);
    for record_type in ["", "Manifest", "a b", "x".repeat(65).as_str(), "ü"] {
        let ctx = RecordContext { record_type, ..CTX };
        assert!(
            matches!(seal_record(&k, &ctx, b""), Err(Error::InvalidArgument(_))),
            "{record_type:?}"
        );
    }
    let long = "k".repeat(70_000);
    let ctx = RecordContext {
        object_key: &long,
        ..CTX
    };
    assert!(matches!(
        seal_record(&k, &ctx, b""),
        Err(Error::InvalidArgument(_))
    ));
}
