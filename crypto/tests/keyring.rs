//! Keyring: create, open, re-wrap, and every way a keyring can be bad.
// Helpers outside #[test] fns unwrap too: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

use ring::digest::{digest, SHA256};
use zib_crypto::{
    change_passphrase, open_keyring, DataKey, Error, KdfParams, Keyring, Passphrase,
    VolumeDecryptor, VolumeEncryptor, VolumeIdentity, VolumeSalt, KEYRING_LEN,
};

fn fast() -> KdfParams {
    KdfParams::new(4, 8, 1).unwrap()
}

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.to_owned())
}

/// Recomputes the trailing checksum after a deliberate edit.
fn reseal_checksum(bytes: &mut [u8]) {
    let sum = digest(&SHA256, &bytes[..128]);
    bytes[128..].copy_from_slice(sum.as_ref());
}

fn roundtrip_volume(sealing: &DataKey, opening: &DataKey) -> Vec<u8> {
    let identity = VolumeIdentity {
        repository_id: [1; 16],
        backup_id: [2; 16],
        volume_index: 0,
    };
    let mut enc =
        VolumeEncryptor::new(sealing, identity, &VolumeSalt::generate().unwrap()).unwrap();
    let mut ct = enc.push(b"family photos").unwrap().to_vec();
    ct.extend_from_slice(&enc.finish().unwrap());
    let mut dec = VolumeDecryptor::new(opening, identity);
    let mut pt = dec.push(&ct).unwrap().to_vec();
    pt.extend_from_slice(&dec.finish().unwrap());
    pt
}

#[test]
fn create_then_open_yields_the_same_key() {
    let (keyring, key) = Keyring::create(&pass("correct horse"), fast()).unwrap();
    let bytes = keyring.to_bytes();
    assert_eq!(bytes.len(), KEYRING_LEN);
    assert_eq!(&bytes[..8], b"ZIB-KEY\n");
    let opened = open_keyring(&bytes, &pass("correct horse")).unwrap();
    assert_eq!(opened.id(), key.id());
    assert_eq!(roundtrip_volume(&key, &opened), b"family photos");
}

#[test]
fn two_keyrings_have_different_keys_ids_and_salts() {
    let (a, ka) = Keyring::create(&pass("p"), fast()).unwrap();
    let (b, kb) = Keyring::create(&pass("p"), fast()).unwrap();
    assert_ne!(ka.id(), kb.id());
    assert_ne!(a.to_bytes()[36..68], b.to_bytes()[36..68]);
}

#[test]
fn wrong_passphrase_is_its_own_error() {
    let (keyring, _) = Keyring::create(&pass("right"), fast()).unwrap();
    let err = open_keyring(&keyring.to_bytes(), &pass("wrong")).unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase), "{err:?}");
    let err = open_keyring(&keyring.to_bytes(), &pass("")).unwrap_err();
    assert!(matches!(err, Error::WrongPassphrase), "{err:?}");
}

#[test]
fn every_single_bit_flip_is_corrupt_not_wrong_passphrase() {
    let (keyring, _) = Keyring::create(&pass("right"), fast()).unwrap();
    let good = keyring.to_bytes();
    for bit in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        match open_keyring(&bad, &pass("right")) {
            Err(Error::CorruptKeyring { .. }) => {}
            // The version field: a flip there can read as a newer version, or version 0.
            Err(Error::UnsupportedVersion { .. }) if (8..10).contains(&(bit / 8)) => {}
            other => panic!("bit {bit}: expected CorruptKeyring, got {other:?}"),
        }
    }
}

#[test]
fn altered_wrapped_key_with_recomputed_checksum_is_wrong_passphrase() {
    let (keyring, _) = Keyring::create(&pass("right"), fast()).unwrap();
    // Each authenticated field: key id, salt, nonce, wrapped key, tag.
    for offset in [10, 25, 36, 67, 70, 80, 111, 112, 127] {
        let mut bad = keyring.to_bytes();
        bad[offset] ^= 0x40;
        reseal_checksum(&mut bad);
        let err = open_keyring(&bad, &pass("right")).unwrap_err();
        assert!(
            matches!(err, Error::WrongPassphrase),
            "offset {offset}: {err:?}"
        );
    }
}

#[test]
fn truncated_extended_and_foreign_bytes_are_corrupt() {
    let (keyring, _) = Keyring::create(&pass("p"), fast()).unwrap();
    let good = keyring.to_bytes();
    for len in [0, 1, 9, 10, 127, 159] {
        let err = Keyring::from_bytes(&good[..len]).unwrap_err();
        assert!(
            matches!(err, Error::CorruptKeyring { .. }),
            "len {len}: {err:?}"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        Keyring::from_bytes(&longer),
        Err(Error::CorruptKeyring { .. })
    ));
    let err = Keyring::from_bytes(&[b'x'; 160]).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
}

#[test]
fn newer_version_is_unsupported_not_corrupt() {
    let (keyring, _) = Keyring::create(&pass("p"), fast()).unwrap();
    let mut bytes = keyring.to_bytes();
    bytes[8] = 2;
    reseal_checksum(&mut bytes);
    let err = Keyring::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                what: "keyring",
                version: 2
            }
        ),
        "{err:?}"
    );
    bytes[8] = 0;
    reseal_checksum(&mut bytes);
    assert!(matches!(
        Keyring::from_bytes(&bytes),
        Err(Error::CorruptKeyring { .. })
    ));
}

#[test]
fn kdf_costs_above_the_v1_ceiling_are_refused_before_any_work() {
    let (keyring, _) = Keyring::create(&pass("p"), fast()).unwrap();
    // (log2 N, r, p): each above a bound, or within each bound but 128·N·r > 1 GiB.
    let hostile: [(u8, u32, u32); 8] = [
        (21, 1, 1),
        (63, 8, 1),
        (10, 17, 1),
        (10, 8, 5),
        (20, 16, 1),
        (0, 8, 1),
        (10, 0, 1),
        (10, 8, 0),
    ];
    for (log2_n, r, p) in hostile {
        let mut bytes = keyring.to_bytes();
        bytes[27] = log2_n;
        bytes[28..32].copy_from_slice(&r.to_le_bytes());
        bytes[32..36].copy_from_slice(&p.to_le_bytes());
        reseal_checksum(&mut bytes);
        let err = Keyring::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(err, Error::CorruptKeyring { .. }),
            "({log2_n},{r},{p}): {err:?}"
        );
        assert!(KdfParams::new(log2_n, r, p).is_err());
    }
    // The largest memory allowed: 128 · 2^20 · 8 = 1 GiB.
    assert!(KdfParams::new(20, 8, 4).is_ok());
    let mut bytes = keyring.to_bytes();
    bytes[26] = 2;
    reseal_checksum(&mut bytes);
    assert!(matches!(
        Keyring::from_bytes(&bytes),
        Err(Error::CorruptKeyring { .. })
    ));
}

#[test]
fn changing_the_passphrase_keeps_the_key_and_drops_the_old_passphrase() {
    let (keyring, key) = Keyring::create(&pass("old"), fast()).unwrap();
    let rewrapped =
        change_passphrase(&keyring.to_bytes(), &pass("old"), &pass("new"), fast()).unwrap();
    assert_ne!(rewrapped, keyring.to_bytes());
    assert!(matches!(
        open_keyring(&rewrapped, &pass("old")),
        Err(Error::WrongPassphrase)
    ));
    let opened = open_keyring(&rewrapped, &pass("new")).unwrap();
    assert_eq!(opened.id(), key.id());
    assert_eq!(roundtrip_volume(&key, &opened), b"family photos");
    // The old keyring copy still opens with the old passphrase: re-wrapping revokes nothing.
    assert!(open_keyring(&keyring.to_bytes(), &pass("old")).is_ok());
    assert!(matches!(
        change_passphrase(&keyring.to_bytes(), &pass("nope"), &pass("new"), fast()),
        Err(Error::WrongPassphrase)
    ));
}

#[test]
fn records_kdf_parameters_and_default_cost_opens() {
    assert_eq!(KdfParams::default(), KdfParams::new(17, 8, 1).unwrap());
    let (keyring, key) = Keyring::create(&pass("default cost"), KdfParams::DEFAULT).unwrap();
    let parsed = Keyring::from_bytes(&keyring.to_bytes()).unwrap();
    assert_eq!(parsed.kdf_params(), KdfParams::DEFAULT);
    assert_eq!(parsed.key_id(), key.id());
    assert_eq!(parsed.unlock(&pass("default cost")).unwrap().id(), key.id());
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let passphrase = pass("hunter2-secret");
    let (keyring, key) = Keyring::create(&passphrase, fast()).unwrap();
    assert!(!format!("{passphrase:?}").contains("hunter2"));
    let shown = format!("{key:?}");
    assert!(
        shown.contains("redacted") && shown.contains(&key.id().to_string()),
        "{shown}"
    );
    let shown = format!("{keyring:?}");
    assert!(
        !shown.contains(&hex::encode(&keyring.to_bytes()[80..112])),
        "{shown}"
    );
}
