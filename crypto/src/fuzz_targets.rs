//! Bodies of the fuzz targets in `fuzz/` (cargo-fuzz, nightly only), as plain functions
//! so that a stable test (`tests/fuzz_corpus.rs`) runs them over the checked-in corpus.
//!
//! Each takes arbitrary bytes and MUST NOT panic, hang or allocate without bound; where
//! parsing succeeds it checks that what was parsed re-encodes to the same bytes.

use bytes::Bytes;
use zeroize::Zeroizing;

use crate::keyring::{Keyring, KEYRING_LEN, OFF_CHECKSUM};
use crate::record::{open_record, RecordContext};
use crate::secret::{DataKey, KeyId, Passphrase};
use crate::volume::{VolumeDecryptor, VolumeHeader, VolumeIdentity, HEADER_LEN};

/// The key the volume and record targets decrypt with. Its id matches the corpus
/// vectors made under `keyring_fast` (`tests/vectors/index.json`), so that corpus
/// entries get past the key-id check into segment authentication.
fn fuzz_key() -> DataKey {
    let id: [u8; 16] = std::array::from_fn(|i| 0x40 + i as u8);
    let secret: [u8; 32] = std::array::from_fn(|i| 0x60 + i as u8);
    DataKey::from_secret_bytes(KeyId::from_bytes(id), Zeroizing::new(secret))
}

fn fuzz_identity(index: u32) -> VolumeIdentity {
    VolumeIdentity {
        repository_id: std::array::from_fn(|i| 0xa0 + i as u8),
        backup_id: std::array::from_fn(|i| 0xb0 + i as u8),
        volume_index: index,
    }
}

/// Keyring parser; returns whether the bytes parse as a keyring. Unlocks only keyrings
/// whose scrypt cost is tiny, so the target stays fast; the cost ceiling itself is
/// exercised by parsing.
///
/// The keyring's checksum stops a mutated input at the first changed byte, so input of
/// a keyring's length is also tried with its checksum made right: that copy reaches
/// the KDF checks and the unwrap. Only the bytes as given decide the answer.
pub fn keyring(data: &[u8]) -> bool {
    if data.len() == KEYRING_LEN {
        let mut fixed = data.to_vec();
        let sum = ring::digest::digest(&ring::digest::SHA256, &fixed[..OFF_CHECKSUM]);
        fixed[OFF_CHECKSUM..].copy_from_slice(sum.as_ref());
        parse_keyring(&fixed);
    }
    parse_keyring(data)
}

fn parse_keyring(data: &[u8]) -> bool {
    let Ok(keyring) = Keyring::from_bytes(data) else {
        return false;
    };
    assert_eq!(
        keyring.to_bytes(),
        data,
        "a parsed keyring re-encodes to its bytes"
    );
    let params = keyring.kdf_params();
    if params.log2_n() <= 6 && params.r() <= 8 && params.p() <= 2 {
        let _ = keyring.unlock(&Passphrase::new("fuzz".to_owned()));
    }
    true
}

/// Volume header parser; returns whether the bytes start with a valid header.
pub fn volume_header(data: &[u8]) -> bool {
    let Ok(header) = VolumeHeader::parse(data, &fuzz_identity(0)) else {
        return false;
    };
    assert_eq!(&header.to_bytes()[..], &data[..HEADER_LEN as usize]);
    true
}

/// Volume decryptor (header and segment parsing and authentication) over arbitrary
/// bytes, fed in pieces whose sizes come from the first byte, through both the
/// borrowing and the owning chunk APIs. The first byte's value modulo 8 is also the
/// volume index. Returns the plaintext length if the volume is accepted.
pub fn volume(data: &[u8]) -> Option<usize> {
    let (&first, rest) = data.split_first()?;
    let step = usize::from(first) * 521 + 1;
    let index = u32::from(first % 8);
    let key = fuzz_key();

    let mut dec = VolumeDecryptor::new(&key, fuzz_identity(index));
    let mut plain = 0usize;
    let mut failed = false;
    for piece in rest.chunks(step) {
        match dec.push(piece) {
            Ok(out) => plain += out.len(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    let by_push = if failed {
        None
    } else {
        dec.finish().ok().map(|out| plain + out.len())
    };

    let mut dec = VolumeDecryptor::new(&key, fuzz_identity(index));
    let mut plain = 0usize;
    let mut failed = false;
    for piece in rest.chunks(step) {
        match dec.push_chunk(Bytes::copy_from_slice(piece)) {
            Ok(out) => plain += out.iter().map(Bytes::len).sum::<usize>(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    let by_chunk = if failed {
        None
    } else {
        dec.finish().ok().map(|out| plain + out.len())
    };
    assert_eq!(by_push, by_chunk, "both APIs agree on what they accept");
    if let Some(n) = by_push {
        assert_eq!(
            crate::volume::plaintext_len(rest.len() as u64),
            Some(n as u64)
        );
    }
    by_push
}

/// Sealed record decoder, bound to the context of the corpus's record vectors; returns
/// the plaintext if the record opens.
pub fn record(data: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(data);
    let context = RecordContext {
        record_type: "manifest",
        repository_id: std::array::from_fn(|i| 0xa0 + i as u8),
        object_key: "zib/backups/b0b1b2b3/manifest",
    };
    open_record(&fuzz_key(), &context, &text).ok()
}
