//! The bucket key layout: the one place that turns an object's role into its key.
//!
//! Every key is relative to the repository root (a bucket prefix or a directory). Keys
//! carry only opaque ids ([`DatasetId`], [`BackupId`]) and volume indexes, never dataset
//! or snapshot names. The layout is part of format v1 (`docs/FORMAT.md`, "On-bucket
//! layout"): changing a spelling here breaks every existing repository.
//!
//! ```text
//! README.txt                                    plaintext: what these objects are
//! keyring                                       the keyring (non-archive class)
//! keyring-archive/<yyyymmddThhmmssZ>            archived copies of the keyring
//! manifests/<dataset-id>/<backup-id>            a backup's commit record
//! volumes/<dataset-id>/<backup-id>/<index>      a backup's volumes, index as 8 digits
//! access-probe/<16 hex digits>                  transient: the access check's probe
//! kit/v<format>/<16 hex digits>/<name>          the decoder kit (plaintext, non-archive)
//! kit-archive/v<format>/<16 hex digits>/<name>  its archived copy
//! ```
//!
//! Manifests and volumes live under separate prefixes so the catalog lists manifests
//! only (one LIST page per 1,000 backups) however many volumes the backups have.

use zib_planner::{CivilDate, DAY_SECS};
use zib_storage_backend::ObjectKey;

use crate::error::{Error, Result};

use crate::ids::{BackupId, DatasetId};

/// Highest volume index the key layout can spell (8 decimal digits). At the default
/// volume size this is far beyond any stream a dataset can produce.
pub(crate) const MAX_VOLUME_INDEX: u32 = 99_999_999;

/// What an object in a repository is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ObjectRole {
    /// The plaintext README at the repository root.
    Readme,
    /// The keyring, in a non-archive class so it can be read at once.
    Keyring,
    /// An archived copy of the keyring, named by when it was written
    /// (`yyyymmddThhmmssZ`, UTC), so a re-wrapped keyring adds a copy instead of
    /// editing one.
    KeyringArchive {
        /// Seconds since the Unix epoch, UTC.
        written_at: i64,
    },
    /// A backup's manifest: its existence is the backup's commit.
    Manifest {
        /// The dataset the backup belongs to.
        dataset: DatasetId,
        /// The backup.
        backup: BackupId,
    },
    /// One volume of a backup's stream.
    Volume {
        /// The dataset the backup belongs to.
        dataset: DatasetId,
        /// The backup.
        backup: BackupId,
        /// Position of the volume in the stream, from 0.
        index: u32,
    },
    /// The zero-byte object the access check writes and deletes at once to prove it may
    /// (see [`crate::access`]); one left behind by a crash is removed by clean-up.
    AccessProbe {
        /// Random, so concurrent checks never touch each other's probe.
        nonce: u64,
    },
    /// One file of the repository's decoder kit (FORMAT.md, the reference decoder, the
    /// restore instructions), versioned by content so it is written once and never
    /// replaced. Keys of kit files this zib does not write itself (a newer zib's) parse
    /// too: they are kept, never taken for junk.
    Kit {
        /// `false`: the plaintext copy in a non-archive class, readable at once; `true`:
        /// its copy in the repository's archive class, like the keyring's.
        archived: bool,
        /// The format version the kit describes.
        format: u16,
        /// The first 8 bytes of the file's SHA-256 (16 hex digits in the key).
        digest: [u8; 8],
        /// The file's name.
        name: KitName,
    },
}

/// Longest kit file name the layout spells.
pub(crate) const MAX_KIT_NAME: usize = 32;

/// A kit file's name: 1 to [`MAX_KIT_NAME`] characters of `[A-Za-z0-9._-]`, not starting
/// with a dot. Held inline so a role stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KitName {
    bytes: [u8; MAX_KIT_NAME],
    len: u8,
}

impl KitName {
    /// `name` when it is a valid kit file name.
    pub(crate) fn new(name: &str) -> Option<Self> {
        let valid = !name.is_empty()
            && name.len() <= MAX_KIT_NAME
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return None;
        }
        let mut bytes = [0u8; MAX_KIT_NAME];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(Self {
            bytes,
            len: u8::try_from(name.len()).ok()?,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `new`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for KitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

const README: &str = "README.txt";
const KEYRING: &str = "keyring";
const KEYRING_ARCHIVE_DIR: &str = "keyring-archive/";
const MANIFESTS_DIR: &str = "manifests/";
const VOLUMES_DIR: &str = "volumes/";
const ACCESS_PROBE_DIR: &str = "access-probe/";
const KIT_DIR: &str = "kit/";
const KIT_ARCHIVE_DIR: &str = "kit-archive/";

impl ObjectRole {
    /// The object's key relative to the repository root.
    ///
    /// Keys round-trip through [`ObjectRole::parse`] for volume indexes up to
    /// [`MAX_VOLUME_INDEX`] and keyring times in years 0000–9999; the engine never
    /// creates roles outside those ranges.
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Readme => README.to_owned(),
            Self::Keyring => KEYRING.to_owned(),
            Self::KeyringArchive { written_at } => {
                format!("{KEYRING_ARCHIVE_DIR}{}", compact_utc(*written_at))
            }
            Self::Manifest { dataset, backup } => format!("{MANIFESTS_DIR}{dataset}/{backup}"),
            Self::Volume {
                dataset,
                backup,
                index,
            } => format!("{VOLUMES_DIR}{dataset}/{backup}/{index:08}"),
            Self::AccessProbe { nonce } => format!("{ACCESS_PROBE_DIR}{nonce:016x}"),
            Self::Kit {
                archived,
                format,
                digest,
                name,
            } => format!(
                "{}v{format}/{}/{}",
                if *archived { KIT_ARCHIVE_DIR } else { KIT_DIR },
                hex::encode(digest),
                name.as_str()
            ),
        }
    }

    /// Recognises a key written by [`ObjectRole::key`]; anything else is `None`
    /// (foreign objects in the bucket are left alone, never guessed at).
    pub(crate) fn parse(key: &str) -> Option<Self> {
        if key == README {
            return Some(Self::Readme);
        }
        if key == KEYRING {
            return Some(Self::Keyring);
        }
        if let Some(stamp) = key.strip_prefix(KEYRING_ARCHIVE_DIR) {
            return parse_compact_utc(stamp).map(|written_at| Self::KeyringArchive { written_at });
        }
        if let Some(rest) = key.strip_prefix(MANIFESTS_DIR) {
            let (dataset, backup) = rest.split_once('/')?;
            return Some(Self::Manifest {
                dataset: dataset.parse().ok()?,
                backup: backup.parse().ok()?,
            });
        }
        if let Some(rest) = key.strip_prefix(VOLUMES_DIR) {
            let mut parts = rest.split('/');
            let (dataset, backup, index) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some()
                || index.len() != 8
                || !index.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            return Some(Self::Volume {
                dataset: dataset.parse().ok()?,
                backup: backup.parse().ok()?,
                index: index.parse().ok()?,
            });
        }
        if let Some(hex) = key.strip_prefix(ACCESS_PROBE_DIR) {
            if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            return u64::from_str_radix(hex, 16)
                .ok()
                .map(|nonce| Self::AccessProbe { nonce });
        }
        let kit = |rest: &str, archived: bool| -> Option<Self> {
            let mut parts = rest.split('/');
            let (format, digest, name) = (parts.next()?, parts.next()?, parts.next()?);
            let format = format.strip_prefix('v')?;
            if parts.next().is_some()
                || format.is_empty()
                || format.starts_with('0')
                || !format.bytes().all(|b| b.is_ascii_digit())
                || digest.len() != 16
                || !digest
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return None;
            }
            Some(Self::Kit {
                archived,
                format: format.parse().ok()?,
                digest: hex::decode(digest).ok()?.try_into().ok()?,
                name: KitName::new(name)?,
            })
        };
        if let Some(rest) = key.strip_prefix(KIT_DIR) {
            return kit(rest, false);
        }
        if let Some(rest) = key.strip_prefix(KIT_ARCHIVE_DIR) {
            return kit(rest, true);
        }
        None
    }
}

/// Prefix under which every manifest lives (the catalog lists this).
pub(crate) fn manifests_prefix() -> &'static str {
    MANIFESTS_DIR
}

/// Prefix under which every volume lives (clean-up lists this to find volumes whose
/// backup never committed).
pub(crate) fn volumes_prefix() -> &'static str {
    VOLUMES_DIR
}

/// Prefix under which the keyring's archived copies live (open lists it for the
/// repository's archive class).
pub(crate) fn keyring_archive_prefix() -> &'static str {
    KEYRING_ARCHIVE_DIR
}

/// Prefix under which access probes live (clean-up lists this for probes left behind).
pub(crate) fn access_probes_prefix() -> &'static str {
    ACCESS_PROBE_DIR
}

/// `yyyymmddThhmmssZ` for seconds since the epoch (UTC), years 0000–9999: the spelling
/// of keyring copies' keys and of the snapshots zib creates.
pub(crate) fn compact_utc(unix_seconds: i64) -> String {
    let date = CivilDate::from_days(unix_seconds.div_euclid(DAY_SECS));
    let second_of_day = unix_seconds.rem_euclid(DAY_SECS);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        date.year,
        date.month,
        date.day,
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

fn parse_compact_utc(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let date = CivilDate {
        year: i32::try_from(year).ok()?,
        month: u8::try_from(month).ok()?,
        day: u8::try_from(day).ok()?,
    };
    let days = date.to_days();
    // Reject days past the month's end by round-tripping.
    if CivilDate::from_days(days) != date {
        return None;
    }
    Some(days * DAY_SECS + hour * 3600 + minute * 60 + second)
}

/// The backend key of the object with `role` in the repository under `prefix` (a
/// prefix made by [`normalise_prefix`]): the prefix, then the role's relative key —
/// plain concatenation, as docs/FORMAT.md says.
///
/// # Errors
///
/// [`Error::Internal`] if the backend's key rules refuse it: the prefix was validated
/// and roles spell only ids and digits, so a refusal is a bug.
pub(crate) fn object_key(prefix: &str, role: &ObjectRole) -> Result<ObjectKey> {
    let text = format!("{prefix}{}", role.key());
    // The prefix was validated when the location was made and roles spell only ids and
    // digits: a refusal here is a bug.
    ObjectKey::new(text.clone())
        .map_err(|error| Error::Internal(format!("object key {text:?}: {error}")))
}

/// `prefix` without leading or trailing slashes, plus one trailing slash (empty stays
/// empty).
pub(crate) fn normalise_prefix(prefix: &str) -> Result<String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(Error::InvalidInput(format!(
            "repository prefix {prefix:?} has an empty, '.' or '..' segment"
        )));
    }
    Ok(format!("{trimmed}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> DatasetId {
        DatasetId::from_bytes([0x11; 16])
    }
    fn backup() -> BackupId {
        BackupId::from_bytes([0xab; 16])
    }

    #[test]
    fn keys_are_spelled_as_documented() {
        assert_eq!(ObjectRole::Readme.key(), "README.txt");
        assert_eq!(ObjectRole::Keyring.key(), "keyring");
        assert_eq!(
            ObjectRole::KeyringArchive {
                written_at: 1_764_374_400
            }
            .key(),
            "keyring-archive/20251129T000000Z"
        );
        assert_eq!(
            ObjectRole::Manifest {
                dataset: dataset(),
                backup: backup()
            }
            .key(),
            "manifests/11111111111111111111111111111111/abababababababababababababababab"
        );
        assert_eq!(
            ObjectRole::Volume {
                dataset: dataset(),
                backup: backup(),
                index: 7
            }
            .key(),
            "volumes/11111111111111111111111111111111/abababababababababababababababab/00000007"
        );
        assert_eq!(
            ObjectRole::AccessProbe {
                nonce: 0x0123_4567_89ab_cdef
            }
            .key(),
            "access-probe/0123456789abcdef"
        );
        assert_eq!(
            ObjectRole::Kit {
                archived: false,
                format: 1,
                digest: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
                name: KitName::new("zib_reference.py").unwrap(),
            }
            .key(),
            "kit/v1/0123456789abcdef/zib_reference.py"
        );
        assert_eq!(
            ObjectRole::Kit {
                archived: true,
                format: 1,
                digest: [0; 8],
                name: KitName::new("FORMAT.md").unwrap(),
            }
            .key(),
            "kit-archive/v1/0000000000000000/FORMAT.md"
        );
    }

    #[test]
    fn every_role_parses_back() {
        let roles = [
            ObjectRole::Readme,
            ObjectRole::Keyring,
            ObjectRole::KeyringArchive { written_at: 0 },
            ObjectRole::KeyringArchive {
                written_at: 253_402_300_799,
            }, // 9999-12-31T23:59:59Z
            ObjectRole::Manifest {
                dataset: dataset(),
                backup: backup(),
            },
            ObjectRole::Volume {
                dataset: dataset(),
                backup: backup(),
                index: 0,
            },
            ObjectRole::Volume {
                dataset: dataset(),
                backup: backup(),
                index: MAX_VOLUME_INDEX,
            },
            ObjectRole::AccessProbe { nonce: 0 },
            ObjectRole::AccessProbe { nonce: u64::MAX },
            ObjectRole::Kit {
                archived: false,
                format: 1,
                digest: [0x0f; 8],
                name: KitName::new("FORMAT.md").unwrap(),
            },
            ObjectRole::Kit {
                archived: true,
                format: 65_535,
                digest: [0xa0; 8],
                name: KitName::new("a-newer_zib.s-file.1234567890123").unwrap(),
            },
        ];
        for role in roles {
            assert_eq!(ObjectRole::parse(&role.key()), Some(role), "{}", role.key());
        }
    }

    #[test]
    fn foreign_keys_are_not_recognised() {
        for key in [
            "",
            "readme.txt",
            "keyring/",
            "keyring-archive/20251131T000000Z", // 31 November
            "keyring-archive/20251129T240000Z",
            "manifests/1111/abab",
            "manifests/11111111111111111111111111111111/abababababababababababababababab/x",
            "volumes/11111111111111111111111111111111/abababababababababababababababab/7",
            "volumes/11111111111111111111111111111111/abababababababababababababababab/0000000x",
            "volumes/11111111111111111111111111111111/abababababababababababababababab/00000007/",
            "photos/IMG_0001.jpg",
            "access-probe/0123456789ABCDEF",
            "access-probe/0123456789abcde",
            "access-probe/0123456789abcdef/x",
            "kit/v1/0f0f0f0f0f0f0f0f",
            "kit/v1/0f0f0f0f0f0f0f0f/",
            "kit/v1/0f0f0f0f0f0f0f0F/FORMAT.md",
            "kit/v1/0f0f0f0f0f0f0f/FORMAT.md",
            "kit/v01/0f0f0f0f0f0f0f0f/FORMAT.md",
            "kit/1/0f0f0f0f0f0f0f0f/FORMAT.md",
            "kit/v1/0f0f0f0f0f0f0f0f/.hidden",
            "kit/v1/0f0f0f0f0f0f0f0f/a b",
            "kit/v1/0f0f0f0f0f0f0f0f/FORMAT.md/x",
            "kit-archive/v1/0f0f0f0f0f0f0f0f/abcdefghijklmnopqrstuvwxyz0123456",
        ] {
            assert_eq!(ObjectRole::parse(key), None, "{key}");
        }
    }

    #[test]
    fn volume_keys_sort_in_stream_order() {
        let mut keys: Vec<String> = [10, 2, 1_000, 0]
            .into_iter()
            .map(|index| {
                ObjectRole::Volume {
                    dataset: dataset(),
                    backup: backup(),
                    index,
                }
                .key()
            })
            .collect();
        keys.sort();
        let indexes: Vec<u32> = keys
            .iter()
            .filter_map(|key| match ObjectRole::parse(key) {
                Some(ObjectRole::Volume { index, .. }) => Some(index),
                _ => None,
            })
            .collect();
        assert_eq!(indexes, [0, 2, 10, 1_000]);
    }

    #[test]
    fn compact_times_round_trip() {
        for seconds in [0, 59, 86_399, 951_782_400, 1_795_913_045, 253_402_300_799] {
            assert_eq!(parse_compact_utc(&compact_utc(seconds)), Some(seconds));
        }
        assert_eq!(compact_utc(0), "19700101T000000Z");
        assert_eq!(compact_utc(1_795_913_045), "20261129T004405Z");
        assert_eq!(compact_utc(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn prefixes_are_normalised_once() {
        assert_eq!(normalise_prefix("").unwrap(), "");
        assert_eq!(normalise_prefix("/").unwrap(), "");
        assert_eq!(normalise_prefix("a/b").unwrap(), "a/b/");
        assert_eq!(normalise_prefix("/a/b/").unwrap(), "a/b/");
        assert!(normalise_prefix("a//b").is_err());
        assert!(normalise_prefix("a/./b").is_err());
    }
}
