//! The crate's one error type: what went wrong, in terms a caller can act on.

use crate::Operation;

/// A boxed error kept as the source of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result of a storage operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a storage operation.
///
/// Variants are meanings, not transports: the S3 backend maps SDK errors into them once,
/// inside its module, and no SDK type appears here. Decide retries with
/// [`Error::is_retryable`], never by matching message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("object {key:?} does not exist")]
    NotFound {
        /// Key of the missing object.
        key: String,
    },

    /// The multipart upload does not exist (never created, completed or aborted).
    #[error("multipart upload {upload_id:?} for {key:?} does not exist (completed, aborted or never created)")]
    NoSuchUpload {
        /// Key the upload was for.
        key: String,
        /// The upload's id.
        upload_id: String,
    },

    /// The bucket (or local root) does not exist.
    #[error(
        "bucket or storage root {bucket:?} does not exist; create it or fix the configuration"
    )]
    BucketNotFound {
        /// Name of the bucket or path of the root.
        bucket: String,
    },

    /// The object is in an archive storage class and no restored copy is readable yet.
    #[error(
        "object {key:?} is archived and not restored; request a restore and read it once the restore has completed"
    )]
    NotRestored {
        /// Key of the archived object.
        key: String,
    },

    /// The credentials are missing, wrong, or not allowed to do this.
    #[error(
        "permission denied for {operation} {key:?}: check the credentials and the bucket policy"
    )]
    PermissionDenied {
        /// The operation that was refused.
        operation: Operation,
        /// The key involved, empty for bucket-wide operations.
        key: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// A conditional write lost: the key exists (`IfAbsent`) or its ETag changed (`IfMatch`).
    #[error("precondition failed for {operation} {key:?}: the object was created or changed by another writer")]
    Precondition {
        /// The conditional operation.
        operation: Operation,
        /// Key of the object.
        key: String,
    },

    /// A failure that may go away if the same request is sent again: 500/503, throttling,
    /// timeouts, connection resets, truncated responses.
    #[error("transient failure in {operation} {key:?}: {message}")]
    Transient {
        /// The operation that failed.
        operation: Operation,
        /// The key involved, empty for bucket-wide operations.
        key: String,
        /// What happened, for humans.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The request itself is wrong (bad key, metadata too large, part too small, bad range)
    /// and sending it again will not help.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong and, where possible, what to do.
        message: String,
    },

    /// Stored data is damaged or inconsistent.
    #[error("object {key:?} is corrupt: {reason}")]
    Corrupt {
        /// Key of the object.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The server answered something this client does not understand or did not expect.
    #[error("unexpected answer to {operation} {key:?}: {message}")]
    Protocol {
        /// The operation.
        operation: Operation,
        /// The key involved, empty for bucket-wide operations.
        key: String,
        /// What was unexpected.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// A local file-system operation failed (local directory backend).
    #[error("{operation} failed on {path}: {source}")]
    Io {
        /// The operation.
        operation: Operation,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The operation has no meaning for this backend (for example, bucket lifecycle
    /// rules on a local directory), so there is nothing to do and nothing to fix.
    #[error("{operation} does not apply here: {reason}")]
    NotApplicable {
        /// The operation.
        operation: Operation,
        /// Why it does not apply, for humans.
        reason: String,
    },

    /// The S3-compatible server does not implement this action (`501 NotImplemented`).
    /// Permanent: never retried. Callers carry on without an optional action (restore
    /// requests, listing incomplete uploads, lifecycle rules, the bucket's protection
    /// settings) and say what is lost; for any other action it is an error.
    #[error("the S3 server does not implement {operation}: {message}")]
    Unsupported {
        /// The operation.
        operation: Operation,
        /// The server's own words.
        message: String,
    },

    /// The backend could not be configured (credentials chain, region, endpoint, root).
    #[error("storage configuration error: {message}")]
    Config {
        /// What is wrong and what to do.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// True when sending the same request again may succeed (throttling, server errors,
    /// timeouts, dropped connections, truncated bodies).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transient { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// Shorthand for an [`Error::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput {
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::Transient`] without a source.
    pub fn transient(
        operation: Operation,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Transient {
            operation,
            key: key.into(),
            message: message.into(),
            source: None,
        }
    }
}
