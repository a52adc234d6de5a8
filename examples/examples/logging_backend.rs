//! A custom `StorageBackend`: a wrapper that logs every call, then proves itself with
//! the conformance suite. Start here when writing a new backend.
//!
//! Run: `cargo run -p zib-examples --example logging_backend` (set `RUST_LOG=debug` to see
//! every call). `cargo test -p zib-examples --example logging_backend` runs the same suite
//! as a test.
//!
//! A real backend implements the trait's methods against its store; a wrapper like this
//! one delegates to another backend. Either way, three rules from the trait's contract
//! matter most: map failures to the `Error` meanings (transient ones to
//! `Error::Transient`, so the retry decorator can do its job — never retry inside the
//! backend), keep archived objects unreadable until restored (or document that the
//! backend has no archive semantics and run the suite with `ArchiveModel::NoArchive`),
//! and make every write atomic.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use zib_storage_backend::memory::{MemoryBackend, MemoryConfig};
use zib_storage_backend::{
    AbortIncompleteUploadsRule, BucketProtection, ByteRange, ByteStream, CompletePrecondition,
    CompletedPart, ETag, FakeClock, ListEntry, MultipartUploadInfo, ObjectKey, ObjectMeta,
    PartInfo, PutPrecondition, RestoreTier, Result, StorageBackend, UploadId, WriteOptions,
};
use zib_test_utils::storage_conformance::{run_all, ArchiveModel, SuiteParams};

/// Logs every call to the wrapped backend with its outcome and duration.
#[derive(Debug)]
struct Logging<B> {
    inner: B,
}

/// Logs one finished call. Keys and sizes only: never object bytes or metadata values,
/// which may be secret.
fn logged<T>(operation: &str, key: &str, started: Instant, result: Result<T>) -> Result<T> {
    match &result {
        Ok(_) => tracing::debug!(operation, key, elapsed = ?started.elapsed(), "ok"),
        Err(error) => {
            tracing::debug!(operation, key, elapsed = ?started.elapsed(), %error, retryable = error.is_retryable(), "failed")
        }
    }
    result
}

#[async_trait]
impl<B: StorageBackend> StorageBackend for Logging<B> {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        pre: &PutPrecondition,
    ) -> Result<ETag> {
        let started = Instant::now();
        logged(
            "put",
            key.as_str(),
            started,
            self.inner.put(key, data, options, pre).await,
        )
    }

    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        let started = Instant::now();
        logged(
            "create_multipart",
            key.as_str(),
            started,
            self.inner.create_multipart(key, options).await,
        )
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        let started = Instant::now();
        let result = self.inner.upload_part(key, upload, number, data).await;
        logged("upload_part", key.as_str(), started, result)
    }

    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        let started = Instant::now();
        logged(
            "list_parts",
            key.as_str(),
            started,
            self.inner.list_parts(key, upload).await,
        )
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        pre: CompletePrecondition,
    ) -> Result<ETag> {
        let started = Instant::now();
        let result = self.inner.complete_multipart(key, upload, parts, pre).await;
        logged("complete_multipart", key.as_str(), started, result)
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        let started = Instant::now();
        logged(
            "abort_multipart",
            key.as_str(),
            started,
            self.inner.abort_multipart(key, upload).await,
        )
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let started = Instant::now();
        logged(
            "list_multipart_uploads",
            prefix,
            started,
            self.inner.list_multipart_uploads(prefix).await,
        )
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let started = Instant::now();
        logged("head", key.as_str(), started, self.inner.head(key).await)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        tracing::debug!(operation = "list", prefix, "started");
        // Log failures as they arrive in the stream.
        self.inner
            .list(prefix)
            .inspect(move |item| {
                if let Err(error) = item {
                    tracing::debug!(operation = "list", prefix, %error, "failed");
                }
            })
            .boxed()
    }

    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        let started = Instant::now();
        logged(
            "get",
            key.as_str(),
            started,
            self.inner.get(key, range).await,
        )
    }

    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()> {
        let started = Instant::now();
        logged(
            "request_restore",
            key.as_str(),
            started,
            self.inner.request_restore(key, days, tier).await,
        )
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let started = Instant::now();
        logged(
            "delete",
            key.as_str(),
            started,
            self.inner.delete(key).await,
        )
    }

    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        let started = Instant::now();
        logged(
            "abort_incomplete_uploads_rules",
            "",
            started,
            self.inner.abort_incomplete_uploads_rules().await,
        )
    }

    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        let started = Instant::now();
        logged(
            "put_abort_incomplete_uploads_rule",
            &rule.prefix,
            started,
            self.inner.put_abort_incomplete_uploads_rule(rule).await,
        )
    }

    async fn bucket_protection(&self) -> Result<BucketProtection> {
        let started = Instant::now();
        logged(
            "bucket_protection",
            "",
            started,
            self.inner.bucket_protection().await,
        )
    }
}

/// The backend under test and what it promises: the in-memory store on a fake clock,
/// whose archive behaviour the suite checks by moving the clock through a Bulk thaw.
fn backend_and_params() -> (Logging<MemoryBackend>, SuiteParams) {
    let clock = FakeClock::default();
    let config = MemoryConfig::default();
    let params = SuiteParams::new(
        ArchiveModel::DelayedRestore {
            clock: clock.clone(),
            bulk_thaw: config.bulk_thaw,
        },
        Arc::new(clock.clone()),
    );
    let backend = Logging {
        inner: MemoryBackend::new(config, Arc::new(clock)),
    };
    (backend, params)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (backend, params) = backend_and_params();
    // Panics with the failed expectation if the backend breaks the contract.
    run_all(&backend, &params).await;
    tracing::info!("the logging backend passed the storage conformance suite");
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn logging_backend_passes_the_conformance_suite() {
        let (backend, params) = super::backend_and_params();
        zib_test_utils::storage_conformance::run_all(&backend, &params).await;
    }
}
