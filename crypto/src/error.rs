//! The crate's one error type: what went wrong, in terms a caller can act on.

use crate::secret::KeyId;
use crate::volume::VolumeIdentity;

/// Everything that can go wrong in `zib-crypto`.
///
/// Messages never contain secret bytes (passphrases, keys, plaintext).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The keyring bytes are damaged or not a zib keyring: bad magic, bad length, bad
    /// checksum, or a field outside what format v1 allows (including scrypt costs above
    /// the v1 ceiling, refused so a hostile keyring cannot exhaust memory or time).
    #[error("the keyring is corrupt ({reason}); use another copy of the keyring (for example the exported offline copy or the archived copy in the bucket)")]
    CorruptKeyring {
        /// What check failed.
        reason: String,
    },

    /// The keyring is intact (its checksum matches) but the passphrase does not unwrap
    /// its data key. Either the passphrase is wrong or someone altered the keyring and
    /// recomputed its checksum; the two cannot be told apart.
    #[error("wrong passphrase: it does not unlock this keyring")]
    WrongPassphrase,

    /// The object was written by a newer format version than this code reads.
    #[error("the {what} uses format version {version}, which this version of zib cannot read; upgrade zib")]
    UnsupportedVersion {
        /// Which kind of object ("keyring", "volume", "record").
        what: &'static str,
        /// The version found.
        version: u16,
    },

    /// A volume failed to decrypt or verify. Nothing decrypted from it after the last
    /// successfully returned chunk may be trusted, and the volume as a whole is not valid.
    #[error("volume {volume} is corrupt: {reason}")]
    CorruptVolume {
        /// Which volume (repository, backup and position).
        volume: VolumeIdentity,
        /// What check failed and where.
        reason: String,
    },

    /// The object was encrypted under a different data key than the one supplied.
    #[error("{object} was encrypted with key {found}, but the open keyring holds key {expected}; open the keyring that holds key {found}")]
    KeyMismatch {
        /// Which object (volume identity or record description).
        object: String,
        /// Key id recorded in the object.
        found: KeyId,
        /// Key id of the supplied data key.
        expected: KeyId,
    },

    /// A sealed metadata record failed to decode or authenticate: it is damaged, was
    /// altered, or belongs to another object, record type or repository.
    #[error("sealed {record_type} record of object {object_key:?} is corrupt or does not belong to this object: {reason}")]
    CorruptRecord {
        /// The record type the caller expected.
        record_type: String,
        /// The object key the caller expected the record to belong to.
        object_key: String,
        /// What check failed.
        reason: String,
    },

    /// The caller passed an argument this crate refuses (for example scrypt costs out of
    /// range, or a multipart part size too small to hold one segment).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,

    /// An operation was used after its encryptor or decryptor had already failed.
    #[error("{0} was used after an earlier error; start over with a new one")]
    Poisoned(&'static str),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for std::io::Error {
    /// Lets the streaming adaptors run over `io::Error` streams (for example a
    /// `tokio_util::io::ReaderStream`): corruption is `InvalidData`, the source kept.
    fn from(error: Error) -> Self {
        let kind = match error {
            Error::InvalidArgument(_) => std::io::ErrorKind::InvalidInput,
            Error::Random | Error::Poisoned(_) => std::io::ErrorKind::Other,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, error)
    }
}
