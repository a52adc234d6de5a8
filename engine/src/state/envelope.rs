//! The envelope every local state file is kept in: an 8-byte magic naming the kind of
//! file, a format version as a little-endian `u32`, the body's length as a
//! little-endian `u64`, the body, then the SHA-256 of everything before it. A file that
//! is cut short, altered or of another kind or version is refused as a whole — never
//! half-used.

use ring::digest::{digest, SHA256};

const PREFIX_LEN: usize = 8 + 4 + 8;
const CHECKSUM_LEN: usize = 32;

/// What is wrong with a file that does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Too short, or another magic: not this kind of file.
    NotThisKind,
    /// Another format version (written by another zib version).
    Version(u32),
    /// The length field and the file's size disagree.
    Truncated { found: usize, expected: u64 },
    /// The checksum does not match.
    Checksum,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotThisKind => f.write_str("wrong magic or too short"),
            Self::Version(version) => write!(f, "format version {version}"),
            Self::Truncated { found, expected } => write!(
                f,
                "the file is {found} bytes, its header says {expected}: truncated or corrupt"
            ),
            Self::Checksum => f.write_str("checksum mismatch: the file is corrupt"),
        }
    }
}

/// `body` in an envelope of kind `magic`, version `version`.
pub(crate) fn seal(magic: &[u8; 8], version: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(PREFIX_LEN + body.len() + CHECKSUM_LEN);
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(body);
    let checksum = digest(&SHA256, &bytes);
    bytes.extend_from_slice(checksum.as_ref());
    bytes
}

/// The body of an envelope of kind `magic` and version `version`.
pub(crate) fn open<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u32,
) -> Result<&'a [u8], Unreadable> {
    if bytes.len() < PREFIX_LEN + CHECKSUM_LEN || bytes[..8] != *magic {
        return Err(Unreadable::NotThisKind);
    }
    let mut found_version = [0u8; 4];
    found_version.copy_from_slice(&bytes[8..12]);
    let found_version = u32::from_le_bytes(found_version);
    if found_version != version {
        return Err(Unreadable::Version(found_version));
    }
    let mut body_len = [0u8; 8];
    body_len.copy_from_slice(&bytes[12..20]);
    let body_len = u64::from_le_bytes(body_len);
    let expected = usize::try_from(body_len)
        .ok()
        .and_then(|len| len.checked_add(PREFIX_LEN + CHECKSUM_LEN));
    if expected != Some(bytes.len()) {
        return Err(Unreadable::Truncated {
            found: bytes.len(),
            expected: body_len.saturating_add((PREFIX_LEN + CHECKSUM_LEN) as u64),
        });
    }
    let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if digest(&SHA256, content).as_ref() != checksum {
        return Err(Unreadable::Checksum);
    }
    Ok(&content[PREFIX_LEN..])
}

/// Decodes a body written by `bincode::serialize` (bincode 1.3's default layout:
/// little-endian, fixed-width integers), refusing bytes after the value, which
/// `bincode::deserialize` would ignore: a body is one value, and a state file that says
/// more than its value is damaged, not a longer spelling of it.
///
/// # Errors
///
/// bincode's error when the body does not decode or has bytes left over.
pub(crate) fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> bincode::Result<T> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .deserialize(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_sealed_body_opens_and_any_damage_is_refused() {
        let sealed = seal(b"ZIBTEST\n", 3, b"hello");
        assert_eq!(open(&sealed, b"ZIBTEST\n", 3).unwrap(), b"hello");
        assert_eq!(open(&sealed, b"ZIBOTHR\n", 3), Err(Unreadable::NotThisKind));
        assert_eq!(open(&sealed, b"ZIBTEST\n", 4), Err(Unreadable::Version(3)));
        for position in 0..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[position] ^= 0x10;
            assert!(open(&damaged, b"ZIBTEST\n", 3).is_err(), "byte {position}");
        }
        for len in 0..sealed.len() {
            assert!(
                open(&sealed[..len], b"ZIBTEST\n", 3).is_err(),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn a_body_is_read_as_bincode_writes_it_and_nothing_may_follow() {
        let value = (7u32, "name".to_owned(), Some(9u64));
        let body = bincode::serialize(&value).unwrap();
        assert_eq!(
            decode_body::<(u32, String, Option<u64>)>(&body).unwrap(),
            value
        );
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_body::<(u32, String, Option<u64>)>(&longer).is_err());
        assert!(decode_body::<(u32, String, Option<u64>)>(&body[..body.len() - 1]).is_err());
    }
}
