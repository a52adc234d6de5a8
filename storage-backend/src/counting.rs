//! A decorator that counts requests by operation, and the bytes downloaded (cost
//! estimates, the restore's download ledger, tests).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use crate::{
    AbortIncompleteUploadsRule, BucketProtection, ByteRange, ByteStream, CompletePrecondition,
    CompletedPart, ETag, ListEntry, MultipartUploadInfo, ObjectKey, ObjectMeta, Operation,
    PartInfo, PutPrecondition, RestoreTier, Result, StorageBackend, UploadId, WriteOptions,
};

/// Counts every call to the wrapped backend, by [`Operation`], failed calls included,
/// and the bytes of every `get` body as they arrive (a body cut short counts what came).
/// `List` counts calls of `list`, not pages. Clones share the counts.
#[derive(Debug, Clone)]
pub struct Counting<B> {
    inner: B,
    counts: Arc<Mutex<BTreeMap<Operation, u64>>>,
    bytes_read: ByteCounter,
}

/// A running total of bytes, shared by the clones of a [`Counting`] and its readers.
#[derive(Debug, Clone, Default)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    /// The total so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::SeqCst);
    }
}

impl<B> Counting<B> {
    /// Wraps `inner` with all counts at zero.
    pub fn new(inner: B) -> Self {
        Counting {
            inner,
            counts: Arc::default(),
            bytes_read: ByteCounter::default(),
        }
    }

    /// Bytes of `get` bodies received so far: below a retry layer, failed and repeated
    /// attempts count too, as they do on the bill.
    pub fn bytes_read(&self) -> ByteCounter {
        self.bytes_read.clone()
    }

    /// Calls of `operation` so far.
    pub fn count(&self, operation: Operation) -> u64 {
        self.counts().get(&operation).copied().unwrap_or(0)
    }

    /// All non-zero counts.
    pub fn counts(&self) -> BTreeMap<Operation, u64> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn hit(&self, operation: Operation) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(operation)
            .or_default() += 1;
    }
}

#[async_trait]
impl<B: StorageBackend> StorageBackend for Counting<B> {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        pre: &PutPrecondition,
    ) -> Result<ETag> {
        self.hit(Operation::Put);
        self.inner.put(key, data, options, pre).await
    }
    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        self.hit(Operation::CreateMultipart);
        self.inner.create_multipart(key, options).await
    }
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        self.hit(Operation::UploadPart);
        self.inner.upload_part(key, upload, number, data).await
    }
    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        self.hit(Operation::ListParts);
        self.inner.list_parts(key, upload).await
    }
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        pre: CompletePrecondition,
    ) -> Result<ETag> {
        self.hit(Operation::CompleteMultipart);
        self.inner.complete_multipart(key, upload, parts, pre).await
    }
    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        self.hit(Operation::AbortMultipart);
        self.inner.abort_multipart(key, upload).await
    }
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.hit(Operation::ListMultipartUploads);
        self.inner.list_multipart_uploads(prefix).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.hit(Operation::Head);
        self.inner.head(key).await
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        self.hit(Operation::List);
        self.inner.list(prefix)
    }
    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        self.hit(Operation::Get);
        let counter = self.bytes_read.clone();
        let body = self.inner.get(key, range).await?;
        Ok(body
            .inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    counter.add(chunk.len() as u64);
                }
            })
            .boxed())
    }
    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()> {
        self.hit(Operation::RequestRestore);
        self.inner.request_restore(key, days, tier).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.hit(Operation::Delete);
        self.inner.delete(key).await
    }
    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        self.hit(Operation::GetLifecycle);
        self.inner.abort_incomplete_uploads_rules().await
    }
    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        self.hit(Operation::PutLifecycle);
        self.inner.put_abort_incomplete_uploads_rule(rule).await
    }
    async fn bucket_protection(&self) -> Result<BucketProtection> {
        self.hit(Operation::GetBucketProtection);
        self.inner.bucket_protection().await
    }
}
