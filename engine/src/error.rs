//! The engine's errors, as meanings.

/// What went wrong in an engine operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An object's bytes or metadata do not decode as format v1 says they must.
    #[error("object {object} is corrupt: {reason}")]
    Corrupt {
        /// The object key (or a description of the record) that failed to decode.
        object: String,
        /// What was wrong.
        reason: String,
    },

    /// A record would not fit in S3's 2,000 bytes of user metadata.
    #[error(
        "the metadata for {object} would take {needed} bytes, over S3's limit of {limit}; \
         {hint}"
    )]
    MetadataTooLarge {
        /// The object the metadata belongs to.
        object: String,
        /// Bytes of keys plus values the metadata would need.
        needed: usize,
        /// The limit.
        limit: usize,
        /// What to do about it.
        hint: &'static str,
    },

    /// Encryption or decryption failed (wrong passphrase, corrupt or swapped object, ...).
    #[error(transparent)]
    Crypto(#[from] zib_crypto::Error),

    /// A value the caller supplied is out of range (the message says which and why).
    #[error("{0}")]
    InvalidInput(String),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
