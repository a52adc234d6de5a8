//! Opaque identifiers that appear in object keys.
//!
//! Object keys never carry dataset or snapshot names (the bucket owner could read them);
//! they carry these random ids instead. Each is 16 random bytes, written in keys as 32
//! lowercase hexadecimal digits.

use std::fmt;
use std::str::FromStr;

use ring::rand::SecureRandom;

/// Length in bytes of every opaque id.
pub(crate) const ID_LEN: usize = 16;

/// An id string that is not 32 lowercase hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {text:?} is not an id: expected 32 lowercase hexadecimal digits")]
pub struct InvalidId {
    kind: &'static str,
    text: String,
}

/// The random source failed (the operating system refused to give random bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomUnavailable;

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            /// Wraps raw bytes (read from a record or a test vector).
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }

            /// Draws a fresh id from `random`.
            ///
            /// # Errors
            ///
            /// [`RandomUnavailable`] when the random source fails.
            pub fn generate(random: &dyn SecureRandom) -> Result<Self, RandomUnavailable> {
                let mut bytes = [0u8; ID_LEN];
                random.fill(&mut bytes).map_err(|_| RandomUnavailable)?;
                Ok(Self(bytes))
            }

            /// The raw bytes, as bound into records and associated data.
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        // Raw bytes in binary formats (the resume journal's bincode, where the layout is
        // pinned), 32 hex digits in human-readable ones (JSON output).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.collect_str(self)
                } else {
                    serializer.serialize_newtype_struct(stringify!($name), &self.0)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = String::deserialize(deserializer)?;
                    text.parse().map_err(serde::de::Error::custom)
                } else {
                    #[derive(serde::Deserialize)]
                    struct Raw([u8; ID_LEN]);
                    let Raw(bytes) = Raw::deserialize(deserializer)?;
                    Ok(Self(bytes))
                }
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let invalid = || InvalidId { kind: $kind, text: text.to_owned() };
                // Only the canonical lowercase spelling is accepted, so one id has
                // exactly one key.
                if text.len() != 2 * ID_LEN
                    || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(invalid());
                }
                let mut bytes = [0u8; ID_LEN];
                hex::decode_to_slice(text, &mut bytes).map_err(|_| invalid())?;
                Ok(Self(bytes))
            }
        }
    };
}

opaque_id!(
    /// Identifies a repository (one keyring, any number of datasets).
    RepositoryId,
    "repository id"
);
opaque_id!(
    /// Identifies a backed-up dataset within a repository. Assigned at its first backup;
    /// the dataset's name lives only inside sealed records.
    DatasetId,
    "dataset id"
);
opaque_id!(
    /// Identifies one backup (one send stream: a full or an incremental).
    BackupId,
    "backup id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn display_and_parse_round_trip() {
        let id = BackupId::generate(&SystemRandom::new()).unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<BackupId>().unwrap(), id);
    }

    #[test]
    fn only_canonical_lowercase_hex_parses() {
        let canonical = "00112233445566778899aabbccddeeff";
        assert!(canonical.parse::<DatasetId>().is_ok());
        for bad in [
            "00112233445566778899AABBCCDDEEFF",
            "00112233445566778899aabbccddeef",
            "00112233445566778899aabbccddeeff0",
            "0011223344556677889 aabbccddeeff0",
            "",
            "zz112233445566778899aabbccddeeff",
        ] {
            let error = bad.parse::<DatasetId>().unwrap_err();
            assert!(error.to_string().contains("dataset id"), "{error}");
        }
    }

    #[test]
    fn fresh_ids_differ() {
        let random = SystemRandom::new();
        let a = RepositoryId::generate(&random).unwrap();
        let b = RepositoryId::generate(&random).unwrap();
        assert_ne!(a, b);
    }
}
