//! Object storage with cold storage in the contract.
//!
//! [`StorageBackend`] is the small trait zib stores its objects through: multipart
//! uploads that can be resumed, small conditional puts, `head` with the archive state,
//! paginated listing, ranged reads that refuse archived objects, restore requests,
//! deletes, the bucket lifecycle rules that abort incomplete multipart uploads (read,
//! and added or replaced by id without touching the bucket's other rules), and whether
//! the bucket keeps deleted objects (versioning, Object Lock).
//! Implementations: [`s3`] (aws-sdk-s3, Glacier Deep Archive by default), [`local_dir`]
//! (a directory on a local or external disk; lifecycle rules do not apply) and
//! [`memory`] (tests and simulations, with archive semantics on a fake clock; lifecycle
//! rules stored, not enforced). Decorators wrap any of them:
//! [`retry`] (the one retry layer), [`counting`] (requests by operation) and [`faults`]
//! (injected failures); [`Forwarding`] is the base of a new one, which overrides only
//! the calls it changes. Conveniences live in [`StorageBackendExt`].
//!
//! This crate moves opaque bytes: it knows nothing of zib's formats, keys layout or
//! encryption, and it draws no UI (it logs with `tracing`).

pub mod clock;
pub mod counting;
mod error;
mod ext;
pub mod faults;
mod forward;
mod key;
pub mod local_dir;
pub mod memory;
mod multipart;
mod pages;
pub mod retry;
pub mod s3;
mod types;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use clock::{Clock, FakeClock, SystemClock};
pub use error::{BoxError, Error, Result};
pub use ext::StorageBackendExt;
pub use forward::Forwarding;
pub use key::{ObjectKey, MAX_KEY_BYTES};
pub use types::{
    validate_metadata, validate_part_number, AbortIncompleteUploadsRule, ArchiveState,
    BucketProtection, ByteRange, ByteStream, CompletePrecondition, CompletedPart, DefaultRetention,
    ETag, ListEntry, MultipartUploadInfo, ObjectLock, ObjectMeta, Operation, PartInfo,
    PutPrecondition, RestoreTier, RetentionMode, StorageClass, UploadId, UserMetadata, Versioning,
    WriteOptions, MAX_PART_NUMBER, MAX_USER_METADATA_BYTES, MIN_PART_SIZE,
};

/// An object store with cold-storage semantics.
///
/// The contract every implementation MUST keep (the conformance suite in
/// `zib-test-utils` checks it):
///
/// - Writes are atomic: a reader sees the old object or the new one, never a mix, and an
///   interrupted write leaves the old object (or nothing) in place.
/// - Keys are [`ObjectKey`]s; metadata passes [`validate_metadata`], which every
///   implementation checks before storing anything.
/// - An object in an archive class ([`StorageClass::is_archive`]) is
///   [`ArchiveState::Archived`] until a restore is requested; `get` fails with
///   [`Error::NotRestored`] unless the state is `Available` or `Restored`. An
///   implementation without archive semantics reports every object `Available` and says
///   so in its docs.
/// - Errors are the meanings of [`Error`]; transient failures are
///   [`Error::Transient`] so that [`retry`] can retry them. Implementations SHOULD NOT
///   retry internally (one retry layer only).
/// - Implementations MUST be usable as `Arc<dyn StorageBackend>` from many tasks at once.
#[async_trait]
pub trait StorageBackend: Send + Sync + std::fmt::Debug {
    /// Writes a small object in one request, if `precondition` holds.
    ///
    /// # Errors
    /// [`Error::Precondition`] when the key exists (`IfAbsent`) or has another ETag
    /// (`IfMatch`); [`Error::NotFound`] for `IfMatch` on a missing key (as on AWS);
    /// [`Error::InvalidInput`] for bad metadata.
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        precondition: &PutPrecondition,
    ) -> Result<ETag>;

    /// Starts a multipart upload; class and metadata are those of the final object.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad metadata.
    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId>;

    /// Stores part `number` (1..=10,000) of an upload, replacing an earlier part with
    /// the same number. Every part but the last MUST be at least [`MIN_PART_SIZE`] bytes;
    /// that is checked at completion, as S3 does.
    ///
    /// # Errors
    /// [`Error::NoSuchUpload`] when the upload is gone.
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo>;

    /// The parts stored so far, ascending by number (to resume an upload after a crash).
    ///
    /// # Errors
    /// [`Error::NoSuchUpload`] when the upload is gone.
    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>>;

    /// Assembles `parts` (ascending numbers) into the object, if `precondition` holds.
    /// On success the upload is gone; on a failed precondition the object is unchanged.
    ///
    /// # Errors
    /// [`Error::Precondition`] when `IfAbsent` and the key exists;
    /// [`Error::InvalidInput`] for a missing, mismatched, unordered or too small part;
    /// [`Error::NoSuchUpload`] when the upload is gone.
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        precondition: CompletePrecondition,
    ) -> Result<ETag>;

    /// Discards an upload and its parts.
    ///
    /// # Errors
    /// [`Error::NoSuchUpload`] when the upload is gone (aborting twice is an error, as on S3).
    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()>;

    /// Incomplete uploads whose key starts with `prefix` (for clean-up of abandoned ones).
    ///
    /// # Errors
    /// Transport and permission errors.
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>>;

    /// Size, class, metadata, ETag and archive state of an object. Never a read of its
    /// bytes: works on archived objects.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no such object.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta>;

    /// Objects whose key starts with `prefix`, ascending by the UTF-8 bytes of the key,
    /// fetched page by page as the stream is polled.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>>;

    /// Reads `range` of an object as a stream of chunks.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::NotRestored`] when the object is archived and not
    /// restored; [`Error::InvalidInput`] when the range starts beyond the end. Errors
    /// while streaming arrive as stream items (a cut connection is `Transient`).
    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream>;

    /// Asks for a readable copy of an archived object for `days` days, with `tier`.
    ///
    /// Idempotent: a restore already in progress, an already restored object, or an
    /// object that is not archived at all is not an error.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidInput`] when `days` is 0.
    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()>;

    /// Deletes an object. Deleting a missing object succeeds (as on S3).
    ///
    /// # Errors
    /// Transport and permission errors.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Every rule of the bucket's lifecycle configuration that aborts incomplete
    /// multipart uploads, zib's and anyone else's, in the configuration's order. A bucket
    /// without a lifecycle configuration has none (not an error). Rules that only apply
    /// to tagged objects are left out: they never match an upload.
    ///
    /// # Errors
    /// [`Error::NotApplicable`] for a backend without incomplete-upload billing (a local
    /// directory); [`Error::PermissionDenied`] without `s3:GetLifecycleConfiguration`;
    /// transport errors.
    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>>;

    /// Adds `rule` to the bucket's lifecycle configuration, or replaces the rule with
    /// the same id. Every other rule MUST be kept unchanged: implementations read the
    /// whole configuration, change only that rule and write it back. (S3 has no
    /// conditional write for lifecycle configurations: a concurrent edit by someone else
    /// between the read and the write is lost. zib only writes at `init`.)
    ///
    /// # Errors
    /// [`Error::NotApplicable`] for a backend without incomplete-upload billing;
    /// [`Error::PermissionDenied`] without `s3:GetLifecycleConfiguration` or
    /// `s3:PutLifecycleConfiguration`; [`Error::InvalidInput`] when the server refuses
    /// the configuration; transport errors.
    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()>;

    /// Whether the bucket keeps what is deleted: its versioning status and Object Lock
    /// configuration. A delete in a versioned bucket only hides the object behind a
    /// delete marker (its bytes stay billed as a noncurrent version), and a version under
    /// Object Lock cannot be removed before its retention date; zib reports this when it
    /// deletes backups, so nobody expects a saving that does not come. Backends without
    /// versions (a local directory, memory unless told otherwise) answer the default:
    /// unversioned, no lock.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] without `s3:GetBucketVersioning` or
    /// `s3:GetBucketObjectLockConfiguration`; transport errors.
    async fn bucket_protection(&self) -> Result<BucketProtection>;
}

/// A shared backend is a backend, so decorators can wrap `Arc<dyn StorageBackend>`.
#[async_trait]
impl<T: StorageBackend + ?Sized> StorageBackend for std::sync::Arc<T> {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        precondition: &PutPrecondition,
    ) -> Result<ETag> {
        (**self).put(key, data, options, precondition).await
    }
    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        (**self).create_multipart(key, options).await
    }
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        (**self).upload_part(key, upload, number, data).await
    }
    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        (**self).list_parts(key, upload).await
    }
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        precondition: CompletePrecondition,
    ) -> Result<ETag> {
        (**self)
            .complete_multipart(key, upload, parts, precondition)
            .await
    }
    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        (**self).abort_multipart(key, upload).await
    }
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        (**self).list_multipart_uploads(prefix).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        (**self).head(key).await
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        (**self).list(prefix)
    }
    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        (**self).get(key, range).await
    }
    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()> {
        (**self).request_restore(key, days, tier).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        (**self).delete(key).await
    }
    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        (**self).abort_incomplete_uploads_rules().await
    }
    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        (**self).put_abort_incomplete_uploads_rule(rule).await
    }
    async fn bucket_protection(&self) -> Result<BucketProtection> {
        (**self).bucket_protection().await
    }
}
