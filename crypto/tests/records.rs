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

#[test]
fn every_character_change_and_truncation_is_rejected() {
    let k = key(4);
    let sealed = seal_record(&k, &CTX, b"0123456789").unwrap();
    for pos in 0..sealed.len() {
        for replacement in ['A', 'z', '-', '=', '+', '/', '.'] {
            let mut bad: Vec<char> = sealed.chars().collect();
            if bad[pos] == replacement {
                continue;
            }
            bad[pos] = replacement;
            let bad: String = bad.into_iter().collect();
            match open_record(&k, &CTX, &bad) {
                Err(
                    Error::CorruptRecord { .. }
                    | Error::KeyMismatch { .. }
                    | Error::UnsupportedVersion { .. },
                ) => {}
                other => panic!("change at {pos} to {replacement}: {other:?}"),
            }
        }
    }
    for cut in 0..sealed.len() {
        assert!(open_record(&k, &CTX, &sealed[..cut]).is_err(), "cut {cut}");
    }
    assert!(open_record(&k, &CTX, &format!("{sealed}A")).is_err());
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
