//! Sealed records: small metadata (a manifest's catalog facts) encrypted into a compact
//! ASCII string that fits S3 user metadata, bound to the object it belongs to. Byte
//! layout: `docs/FORMAT.md`, section "Sealed record".

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};
use crate::secret::{DataKey, KeyId, KEY_ID_LEN};

/// Record format version written by this code.
pub const RECORD_VERSION: u8 = 1;
/// Bytes a sealed record adds to its plaintext before base64: version, key id, nonce, tag.
pub const RECORD_OVERHEAD: usize = 1 + KEY_ID_LEN + NONCE_LEN + TAG_LEN;
/// Longest accepted record type name.
pub const MAX_RECORD_TYPE_LEN: usize = 64;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const PREFIX_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const HKDF_INFO: &[u8] = b"zib v1 record key";
const HKDF_SALT: [u8; 32] = [0; 32];

/// What a record is bound to: its type, the repository and the object key it is stored
/// on. Opening a record under any other context fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordContext<'a> {
    /// Short ASCII name of what the record holds (`[a-z0-9.-]`, 1 to 64 characters),
    /// for example `"manifest"`.
    pub record_type: &'a str,
    /// The repository's random id.
    pub repository_id: [u8; 16],
    /// The S3 object key the record is stored on (at most 65,535 bytes of UTF-8).
    pub object_key: &'a str,
}

impl RecordContext<'_> {
    fn check(&self) -> Result<()> {
        let t = self.record_type;
        if t.is_empty()
            || t.len() > MAX_RECORD_TYPE_LEN
            || !t
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return Err(Error::InvalidArgument(format!(
                "record type {t:?} must be 1 to {MAX_RECORD_TYPE_LEN} characters of [a-z0-9.-]"
            )));
        }
        if self.object_key.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidArgument(
                "object key longer than 65,535 bytes".into(),
            ));
        }
        Ok(())
    }

    /// Associated data: the record's prefix, then the context, length-prefixed.
    fn aad(&self, prefix: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(prefix.len() + 16 + 1 + 64 + 2 + self.object_key.len());
        aad.extend_from_slice(prefix);
        aad.extend_from_slice(&self.repository_id);
        // Both lengths fit: checked in `check`.
        aad.push(self.record_type.len() as u8);
        aad.extend_from_slice(self.record_type.as_bytes());
        aad.extend_from_slice(&(self.object_key.len() as u16).to_le_bytes());
        aad.extend_from_slice(self.object_key.as_bytes());
        aad
    }

    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::CorruptRecord {
            record_type: self.record_type.to_owned(),
            object_key: self.object_key.to_owned(),
            reason: reason.into(),
        }
    }
}

fn record_key(key: &DataKey) -> Result<LessSafeKey> {
    let prk = Salt::new(HKDF_SHA256, &HKDF_SALT).extract(key.secret());
    let info: [&[u8]; 1] = [HKDF_INFO];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| Error::InvalidArgument("HKDF refused the output length".into()))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// Length of the string [`seal_record`] returns for a plaintext of `plaintext_len`
/// bytes, so a caller can check S3's metadata limit before sealing or sending.
pub const fn sealed_record_len(plaintext_len: usize) -> usize {
    let n = RECORD_OVERHEAD + plaintext_len;
    (n * 4).div_ceil(3)
}

/// Seals `plaintext` under the data key's record key, bound to `context`, into unpadded
/// base64url text of exactly [`sealed_record_len`] characters. A fresh random nonce is
/// drawn for every call.
///
/// # Errors
/// [`Error::InvalidArgument`] for a bad record type or object key; [`Error::Random`] if
/// the system random generator fails.
pub fn seal_record(key: &DataKey, context: &RecordContext<'_>, plaintext: &[u8]) -> Result<String> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::Random)?;
    seal_record_with_nonce(key, context, plaintext, nonce)
}

/// Deterministic core of [`seal_record`]; the nonce MUST be fresh and random except when
/// producing test vectors.
///
/// # Errors
/// As [`seal_record`].
#[doc(hidden)]
pub fn seal_record_with_nonce(
    key: &DataKey,
    context: &RecordContext<'_>,
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<String> {
    context.check()?;
    let mut bytes = Vec::with_capacity(RECORD_OVERHEAD + plaintext.len());
    bytes.push(RECORD_VERSION);
    bytes.extend_from_slice(key.id().as_bytes());
    bytes.extend_from_slice(&nonce);
    let aad = context.aad(&bytes);
    bytes.extend_from_slice(plaintext);
    let tag = record_key(key)?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut bytes[PREFIX_LEN..],
        )
        .map_err(|_| Error::InvalidArgument("record sealing failed".into()))?;
    bytes.extend_from_slice(tag.as_ref());
    Ok(URL_SAFE_NO_PAD.encode(&bytes))
}

/// Opens a record sealed by [`seal_record`] for the same `context`.
///
/// # Errors
/// [`Error::CorruptRecord`] if the text is not a well-formed record or fails
/// authentication (altered, or sealed for another type, repository or object);
/// [`Error::KeyMismatch`] if it was sealed under another data key;
/// [`Error::UnsupportedVersion`] for a newer record version;
/// [`Error::InvalidArgument`] for a bad record type or object key.
pub fn open_record(key: &DataKey, context: &RecordContext<'_>, sealed: &str) -> Result<Vec<u8>> {
    context.check()?;
    let mut bytes = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|e| context.corrupt(format!("not unpadded base64url text: {e}")))?;
    if bytes.len() < RECORD_OVERHEAD {
        return Err(context.corrupt(format!(
            "{} bytes is shorter than the {RECORD_OVERHEAD}-byte minimum",
            bytes.len()
        )));
    }
    match bytes[0] {
        RECORD_VERSION => {}
        0 => return Err(context.corrupt("record version 0 does not exist")),
        v => {
            return Err(Error::UnsupportedVersion {
                what: "record",
                version: v.into(),
            })
        }
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&bytes[1..1 + KEY_ID_LEN]);
    let found = KeyId::from_bytes(id);
    if found != key.id() {
        return Err(Error::KeyMismatch {
            object: format!(
                "{} record of object {:?}",
                context.record_type, context.object_key
            ),
            found,
            expected: key.id(),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[1 + KEY_ID_LEN..PREFIX_LEN]);
    let aad = context.aad(&bytes[..PREFIX_LEN]);
    let plain_len = record_key(key)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut bytes[PREFIX_LEN..],
        )
        .map_err(|_| {
            context.corrupt(
                "authentication failed: altered, or sealed for another object, record type or repository",
            )
        })?
        .len();
    bytes.copy_within(PREFIX_LEN..PREFIX_LEN + plain_len, 0);
    bytes.truncate(plain_len);
    Ok(bytes)
}
