//! The values that cross the [`StorageBackend`](crate::StorageBackend) trait.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::{Error, ObjectKey, Result};

/// User metadata: lowercase keys to printable-ASCII values (see [`validate_metadata`]).
pub type UserMetadata = BTreeMap<String, String>;

/// Most bytes of user metadata (sum of UTF-8 lengths of keys and values) a backend
/// accepts. AWS documents "2 KB" without saying 2,000 or 2,048; 2,000 is safe under both
/// readings, so every backend refuses more, whatever the server would have taken.
pub const MAX_USER_METADATA_BYTES: usize = 2000;

/// Smallest size of a multipart part other than the last one, as on S3 (5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Largest part number S3 accepts.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// A byte stream returned by [`get`](crate::StorageBackend::get).
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// The storage operations, for errors, counting and fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Small single-request put.
    Put,
    /// Start of a multipart upload.
    CreateMultipart,
    /// Upload of one part.
    UploadPart,
    /// Listing of an upload's parts.
    ListParts,
    /// Completion of a multipart upload.
    CompleteMultipart,
    /// Abort of a multipart upload.
    AbortMultipart,
    /// Listing of incomplete multipart uploads.
    ListMultipartUploads,
    /// Object metadata.
    Head,
    /// One page of a listing.
    List,
    /// Read of (part of) an object.
    Get,
    /// Restore request for an archived object.
    RequestRestore,
    /// Deletion.
    Delete,
    /// Read of the bucket's lifecycle configuration.
    GetLifecycle,
    /// Write of the bucket's lifecycle configuration.
    PutLifecycle,
    /// Read of the bucket's versioning and Object Lock configuration (on S3, two
    /// requests: `GetBucketVersioning` and `GetObjectLockConfiguration`).
    GetBucketProtection,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 15] = [
        Operation::Put,
        Operation::CreateMultipart,
        Operation::UploadPart,
        Operation::ListParts,
        Operation::CompleteMultipart,
        Operation::AbortMultipart,
        Operation::ListMultipartUploads,
        Operation::Head,
        Operation::List,
        Operation::Get,
        Operation::RequestRestore,
        Operation::Delete,
        Operation::GetLifecycle,
        Operation::PutLifecycle,
        Operation::GetBucketProtection,
    ];
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Operation::Put => "put",
            Operation::CreateMultipart => "create-multipart-upload",
            Operation::UploadPart => "upload-part",
            Operation::ListParts => "list-parts",
            Operation::CompleteMultipart => "complete-multipart-upload",
            Operation::AbortMultipart => "abort-multipart-upload",
            Operation::ListMultipartUploads => "list-multipart-uploads",
            Operation::Head => "head",
            Operation::List => "list",
            Operation::Get => "get",
            Operation::RequestRestore => "restore",
            Operation::Delete => "delete",
            Operation::GetLifecycle => "get-bucket-lifecycle-configuration",
            Operation::PutLifecycle => "put-bucket-lifecycle-configuration",
            Operation::GetBucketProtection => "get-bucket-versioning-and-object-lock",
        };
        f.write_str(name)
    }
}

/// An S3 storage class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageClass {
    /// `STANDARD`.
    Standard,
    /// `STANDARD_IA`.
    StandardIa,
    /// `ONEZONE_IA`.
    OneZoneIa,
    /// `INTELLIGENT_TIERING`.
    IntelligentTiering,
    /// `GLACIER_IR` (instant retrieval: readable without restore).
    GlacierInstantRetrieval,
    /// `GLACIER` (flexible retrieval: archived, needs a restore).
    Glacier,
    /// `DEEP_ARCHIVE` (archived, needs a restore; zib's default for data).
    DeepArchive,
    /// Any other class name, kept verbatim.
    Other(String),
}

impl StorageClass {
    /// The S3 name of the class.
    pub fn as_str(&self) -> &str {
        match self {
            StorageClass::Standard => "STANDARD",
            StorageClass::StandardIa => "STANDARD_IA",
            StorageClass::OneZoneIa => "ONEZONE_IA",
            StorageClass::IntelligentTiering => "INTELLIGENT_TIERING",
            StorageClass::GlacierInstantRetrieval => "GLACIER_IR",
            StorageClass::Glacier => "GLACIER",
            StorageClass::DeepArchive => "DEEP_ARCHIVE",
            StorageClass::Other(name) => name,
        }
    }

    /// Parses an S3 class name; unknown names become [`StorageClass::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "STANDARD" => StorageClass::Standard,
            "STANDARD_IA" => StorageClass::StandardIa,
            "ONEZONE_IA" => StorageClass::OneZoneIa,
            "INTELLIGENT_TIERING" => StorageClass::IntelligentTiering,
            "GLACIER_IR" => StorageClass::GlacierInstantRetrieval,
            "GLACIER" => StorageClass::Glacier,
            "DEEP_ARCHIVE" => StorageClass::DeepArchive,
            other => StorageClass::Other(other.to_owned()),
        }
    }

    /// True for classes whose objects must be restored before they can be read.
    pub fn is_archive(&self) -> bool {
        matches!(self, StorageClass::Glacier | StorageClass::DeepArchive)
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an object's bytes can be read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveState {
    /// Not archived: readable.
    Available,
    /// Archived and not restored: reads fail with [`Error::NotRestored`].
    Archived,
    /// A restore was requested and has not finished: reads still fail.
    RestoreInProgress,
    /// A restored copy is readable until `until`, then the object is `Archived` again.
    Restored {
        /// When the restored copy expires.
        until: SystemTime,
    },
}

impl ArchiveState {
    /// True when a `get` can return the bytes now.
    pub fn is_readable(&self) -> bool {
        matches!(
            self,
            ArchiveState::Available | ArchiveState::Restored { .. }
        )
    }
}

/// An entity tag as the backend reports it (opaque; for S3 including its quotes).
///
/// Every write of different content yields a different tag; equal tags on the same key
/// mean the object was not replaced by different bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    /// Wraps a tag received from a backend.
    pub fn new(tag: impl Into<String>) -> Self {
        ETag(tag.into())
    }

    /// The tag as the backend sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Condition of a small put.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PutPrecondition {
    /// Write unconditionally.
    #[default]
    None,
    /// Write only if no object exists at the key (S3 `If-None-Match: *`).
    IfAbsent,
    /// Write only if the current object has this ETag (S3 `If-Match`).
    IfMatch(ETag),
}

/// Condition of a multipart completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompletePrecondition {
    /// Complete unconditionally (replacing any object at the key).
    #[default]
    None,
    /// Complete only if no object exists at the key.
    IfAbsent,
}

/// How an object is written: class and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Storage class of the new object.
    pub storage_class: StorageClass,
    /// User metadata, validated by [`validate_metadata`].
    pub metadata: UserMetadata,
}

impl WriteOptions {
    /// Options with `class` and no metadata.
    pub fn new(storage_class: StorageClass) -> Self {
        WriteOptions {
            storage_class,
            metadata: UserMetadata::new(),
        }
    }

    /// Adds one metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// What `head` reports about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// Storage class.
    pub storage_class: StorageClass,
    /// User metadata as stored.
    pub metadata: UserMetadata,
    /// Entity tag.
    pub etag: ETag,
    /// When the object was written.
    pub last_modified: SystemTime,
    /// Whether its bytes can be read now.
    pub archive_state: ArchiveState,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The object's key.
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// Storage class.
    pub storage_class: StorageClass,
    /// When the object was written.
    pub last_modified: SystemTime,
}

/// An upload id returned by [`create_multipart`](crate::StorageBackend::create_multipart).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// Wraps an id received from a backend or read back from a journal.
    pub fn new(id: impl Into<String>) -> Self {
        UploadId(id.into())
    }

    /// The id as the backend issued it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A part already stored in an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Part number, 1 to 10,000.
    pub number: u32,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag, needed to complete the upload.
    pub etag: ETag,
}

/// A part to assemble at completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// Part number.
    pub number: u32,
    /// Entity tag returned when the part was uploaded (or listed).
    pub etag: ETag,
}

impl From<&PartInfo> for CompletedPart {
    fn from(part: &PartInfo) -> Self {
        CompletedPart {
            number: part.number,
            etag: part.etag.clone(),
        }
    }
}

/// An incomplete multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUploadInfo {
    /// Key the upload is for.
    pub key: ObjectKey,
    /// Its id.
    pub upload_id: UploadId,
    /// When it was created.
    pub initiated: SystemTime,
}

/// Retrieval tier of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreTier {
    /// Cheapest and slowest (Deep Archive: within 48 hours). zib's default.
    #[default]
    Bulk,
    /// Faster and dearer (Deep Archive: within 12 hours).
    Standard,
}

impl RestoreTier {
    /// The S3 name of the tier.
    pub fn as_str(&self) -> &'static str {
        match self {
            RestoreTier::Bulk => "Bulk",
            RestoreTier::Standard => "Standard",
        }
    }
}

/// A byte range of an object: `start` up to `end` exclusive, or to the end of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteRange {
    start: u64,
    end: Option<u64>,
}

impl ByteRange {
    /// The whole object.
    pub fn full() -> Self {
        ByteRange {
            start: 0,
            end: None,
        }
    }

    /// From `start` to the end of the object.
    pub fn from(start: u64) -> Self {
        ByteRange { start, end: None }
    }

    /// Bytes `start..end`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the range is empty (`end <= start`): S3 cannot express
    /// an empty range.
    pub fn new(start: u64, end: u64) -> Result<Self> {
        if end <= start {
            return Err(Error::invalid(format!(
                "byte range {start}..{end} is empty"
            )));
        }
        Ok(ByteRange {
            start,
            end: Some(end),
        })
    }

    /// First byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last byte, or `None` for "to the end".
    pub fn end(&self) -> Option<u64> {
        self.end
    }

    /// True for the whole object.
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end.is_none()
    }

    /// The part of an object of `size` bytes this range covers, as `start..end`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the range starts at or beyond the end of a non-empty
    /// object (S3 answers 416 there).
    pub fn resolve(&self, key: &ObjectKey, size: u64) -> Result<std::ops::Range<u64>> {
        if self.is_full() {
            return Ok(0..size);
        }
        if self.start >= size {
            return Err(Error::invalid(format!(
                "byte range starting at {} is beyond the end of {key:?} ({size} bytes)",
                self.start
            )));
        }
        Ok(self.start..self.end.map_or(size, |end| end.min(size)))
    }

    /// The range with its first `consumed` bytes removed (to resume a read).
    pub fn skip(&self, consumed: u64) -> Self {
        ByteRange {
            start: self.start + consumed,
            end: self.end,
        }
    }

    /// The HTTP `Range` header value, or `None` for the whole object.
    pub fn to_http_header(&self) -> Option<String> {
        if self.is_full() {
            return None;
        }
        Some(match self.end {
            Some(end) => format!("bytes={}-{}", self.start, end - 1),
            None => format!("bytes={}-", self.start),
        })
    }
}

/// Checks user metadata against what every backend (and S3) stores faithfully.
///
/// Keys: non-empty, lowercase ASCII letters, digits and `-` (S3 returns header names
/// lowercased; `_` is refused because header names with underscores are dropped on the
/// way by common HTTP servers and proxies — measured with moto, which loses them). Values: printable ASCII without leading or trailing spaces (HTTP trims
/// them; AWS rewrites non-ASCII as RFC 2047). Total of key and value bytes at most
/// [`MAX_USER_METADATA_BYTES`].
///
/// # Errors
/// [`Error::InvalidInput`] naming the offending entry or the total size.
pub fn validate_metadata(metadata: &UserMetadata) -> Result<()> {
    let mut total = 0usize;
    for (key, value) in metadata {
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::invalid(format!(
                "metadata key {key:?} must be non-empty lowercase ASCII letters, digits or '-'"
            )));
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b))
            || value.starts_with(' ')
            || value.ends_with(' ')
        {
            return Err(Error::invalid(format!(
                "metadata value of {key:?} must be printable ASCII without leading or trailing spaces"
            )));
        }
        total += key.len() + value.len();
    }
    if total > MAX_USER_METADATA_BYTES {
        return Err(Error::invalid(format!(
            "user metadata is {total} bytes (keys plus values); the limit is {MAX_USER_METADATA_BYTES}"
        )));
    }
    Ok(())
}

/// Checks a part number is within S3's 1..=10,000.
///
/// # Errors
/// [`Error::InvalidInput`] when it is not.
pub fn validate_part_number(number: u32) -> Result<()> {
    if number == 0 || number > MAX_PART_NUMBER {
        return Err(Error::invalid(format!(
            "part number {number} is outside 1..=10000"
        )));
    }
    Ok(())
}

/// A bucket lifecycle rule that aborts incomplete multipart uploads some days after they
/// were started.
///
/// Parts of an upload that was never completed or aborted are billed at S3 Standard rates
/// for as long as they wait; such a rule is the bucket's own safety net for uploads whose
/// owner died. Only the parts of a lifecycle configuration that matter for this action are
/// represented: a backend keeps every other rule, and every other action of a rule, as it
/// found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortIncompleteUploadsRule {
    /// The rule's id, unique within the bucket's lifecycle configuration.
    pub id: String,
    /// The key prefix the rule applies to (empty: the whole bucket).
    pub prefix: String,
    /// Days after an upload was started before the bucket aborts it.
    pub days_after_initiation: u32,
    /// Whether the rule is in force (`Status` `Enabled`).
    pub enabled: bool,
}

impl AbortIncompleteUploadsRule {
    /// True when this rule aborts every upload under `prefix` after at most `max_days`
    /// days: it is enabled and its own prefix is a prefix of `prefix`.
    pub fn covers(&self, prefix: &str, max_days: u32) -> bool {
        self.enabled && prefix.starts_with(&self.prefix) && self.days_after_initiation <= max_days
    }
}

/// Whether a bucket keeps old versions of objects (S3 bucket versioning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Versioning {
    /// Never enabled: a delete removes the object and its bytes stop being billed.
    #[default]
    Unversioned,
    /// Enabled: a delete without a version id only adds a delete marker; the object's
    /// bytes stay stored (and billed) as a noncurrent version.
    Enabled,
    /// Enabled once, now suspended: versions written while it was enabled stay behind a
    /// delete marker just the same.
    Suspended,
}

/// How S3 Object Lock retains a locked object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionMode {
    /// Users with `s3:BypassGovernanceRetention` may still remove locked versions.
    Governance,
    /// Nobody, not even the account's root user, can remove a locked version before its
    /// retention date.
    Compliance,
}

/// A bucket's default Object Lock retention, applied to every new object version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRetention {
    /// How strictly versions are retained.
    pub mode: RetentionMode,
    /// For how many days after each version is written (S3's `Years` are converted at
    /// 365 days).
    pub days: u32,
}

/// Whether a bucket is under S3 Object Lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObjectLock {
    /// No Object Lock.
    #[default]
    Disabled,
    /// Object Lock is enabled (which implies versioning): object versions may be locked,
    /// by the default retention or one set per object.
    Enabled {
        /// The bucket's default retention; `None` when versions are locked only where a
        /// retention or legal hold was set on them.
        default_retention: Option<DefaultRetention>,
    },
}

/// What a bucket does with the bytes of a deleted object: whether deleting saves
/// anything. Read with [`bucket_protection`](crate::StorageBackend::bucket_protection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketProtection {
    /// The bucket's versioning status.
    pub versioning: Versioning,
    /// The bucket's Object Lock configuration.
    pub object_lock: ObjectLock,
}

impl BucketProtection {
    /// True when a delete leaves the object's bytes stored (as a noncurrent version, or
    /// locked until its retention date), so deleting saves nothing at once.
    pub fn keeps_deleted_data(&self) -> bool {
        self.versioning != Versioning::Unversioned || self.object_lock != ObjectLock::Disabled
    }
}
