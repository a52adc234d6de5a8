//! The base of decorators and test doubles: a backend that forwards every call to the
//! one it wraps, except the calls it overrides.
//!
//! Implementing [`Forwarding`] (one method, [`inner`](Forwarding::inner)) makes a type a
//! [`StorageBackend`]; each of its other methods forwards to `inner()` by default, so a
//! wrapper writes only what it changes — as a layer of opendal forwards to its inner
//! accessor.
//!
//! A decorator whose promise covers *every* call — [`retry`](crate::retry) retries each,
//! [`counting`](crate::counting) counts each, [`faults`](crate::faults) can fail each —
//! implements [`StorageBackend`] itself instead: a method added to the trait is then a
//! compile error there, never a call that silently skips the decorator.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::{
    AbortIncompleteUploadsRule, BucketProtection, ByteRange, ByteStream, CompletePrecondition,
    CompletedPart, ETag, ListEntry, MultipartUploadInfo, ObjectKey, ObjectMeta, PartInfo,
    PutPrecondition, RestoreTier, Result, StorageBackend, UploadId, WriteOptions,
};

/// A [`StorageBackend`] that wraps another: every method forwards to
/// [`inner`](Self::inner) unless the implementation overrides it.
///
/// Both traits name the same methods, so call a wrapper through `dyn StorageBackend` (as
/// zib does), or with only [`StorageBackend`] in scope.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// use zib_storage_backend::memory::{MemoryBackend, MemoryConfig};
/// use zib_storage_backend::{
///     Forwarding, ObjectKey, ObjectMeta, Result, StorageBackend, StorageBackendExt as _,
///     SystemClock,
/// };
///
/// /// Counts HEAD requests; everything else passes through unchanged.
/// #[derive(Debug)]
/// struct CountingHeads<B> {
///     inner: B,
///     heads: AtomicU64,
/// }
///
/// #[async_trait::async_trait]
/// impl<B: StorageBackend> Forwarding for CountingHeads<B> {
///     fn inner(&self) -> &dyn StorageBackend {
///         &self.inner
///     }
///
///     async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
///         self.heads.fetch_add(1, Ordering::Relaxed);
///         self.inner.head(key).await
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let memory = MemoryBackend::new(MemoryConfig::default(), Arc::new(SystemClock));
/// let backend = CountingHeads { inner: memory, heads: AtomicU64::new(0) };
/// let key = ObjectKey::new("a")?;
/// assert!(!backend.exists(&key).await?); // a HEAD, answered by the memory backend
/// assert_eq!(backend.heads.load(Ordering::Relaxed), 1);
/// # Ok::<(), zib_storage_backend::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait Forwarding: Send + Sync + std::fmt::Debug {
    /// The wrapped backend, which receives every call not overridden.
    fn inner(&self) -> &dyn StorageBackend;

    /// See [`StorageBackend::put`].
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        precondition: &PutPrecondition,
    ) -> Result<ETag> {
        self.inner().put(key, data, options, precondition).await
    }
    /// See [`StorageBackend::create_multipart`].
    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        self.inner().create_multipart(key, options).await
    }
    /// See [`StorageBackend::upload_part`].
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        self.inner().upload_part(key, upload, number, data).await
    }
    /// See [`StorageBackend::list_parts`].
    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        self.inner().list_parts(key, upload).await
    }
    /// See [`StorageBackend::complete_multipart`].
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        precondition: CompletePrecondition,
    ) -> Result<ETag> {
        self.inner()
            .complete_multipart(key, upload, parts, precondition)
            .await
    }
    /// See [`StorageBackend::abort_multipart`].
    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        self.inner().abort_multipart(key, upload).await
    }
    /// See [`StorageBackend::list_multipart_uploads`].
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.inner().list_multipart_uploads(prefix).await
    }
    /// See [`StorageBackend::head`].
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.inner().head(key).await
    }
    /// See [`StorageBackend::list`].
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        self.inner().list(prefix)
    }
    /// See [`StorageBackend::get`].
    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        self.inner().get(key, range).await
    }
    /// See [`StorageBackend::request_restore`].
    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()> {
        self.inner().request_restore(key, days, tier).await
    }
    /// See [`StorageBackend::delete`].
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.inner().delete(key).await
    }
    /// See [`StorageBackend::abort_incomplete_uploads_rules`].
    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        self.inner().abort_incomplete_uploads_rules().await
    }
    /// See [`StorageBackend::put_abort_incomplete_uploads_rule`].
    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        self.inner().put_abort_incomplete_uploads_rule(rule).await
    }
    /// See [`StorageBackend::bucket_protection`].
    async fn bucket_protection(&self) -> Result<BucketProtection> {
        self.inner().bucket_protection().await
    }
}

#[async_trait]
impl<T: Forwarding> StorageBackend for T {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        precondition: &PutPrecondition,
    ) -> Result<ETag> {
        Forwarding::put(self, key, data, options, precondition).await
    }
    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        Forwarding::create_multipart(self, key, options).await
    }
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        Forwarding::upload_part(self, key, upload, number, data).await
    }
    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        Forwarding::list_parts(self, key, upload).await
    }
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        precondition: CompletePrecondition,
    ) -> Result<ETag> {
        Forwarding::complete_multipart(self, key, upload, parts, precondition).await
    }
    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        Forwarding::abort_multipart(self, key, upload).await
    }
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        Forwarding::list_multipart_uploads(self, prefix).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        Forwarding::head(self, key).await
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        Forwarding::list(self, prefix)
    }
    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        Forwarding::get(self, key, range).await
    }
    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()> {
        Forwarding::request_restore(self, key, days, tier).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        Forwarding::delete(self, key).await
    }
    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        Forwarding::abort_incomplete_uploads_rules(self).await
    }
    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        Forwarding::put_abort_incomplete_uploads_rule(self, rule).await
    }
    async fn bucket_protection(&self) -> Result<BucketProtection> {
        Forwarding::bucket_protection(self).await
    }
}
