//! The one retry layer: exponential backoff with full jitter around transient failures,
//! for any backend.
//!
//! Defaults ([`RetryPolicy::default`]): 8 attempts in all; before retry *n* (1-based) a
//! delay drawn uniformly from `0..=min(30 s, 250 ms × 2^(n-1))` ("full jitter"), so the
//! waits add up to at most 31.75 s. Only errors with [`Error::is_retryable`] are retried.
//! Sleeping and randomness are injected ([`Sleeper`], a seed) so tests are deterministic.
//!
//! Beyond plain re-sending, the layer repairs the two ambiguities a lost response creates:
//! a conditional put or completion whose first attempt succeeded on the server but whose
//! answer was lost fails its retry with `Precondition` (or `NoSuchUpload`); the layer then
//! compares the stored object's ETag with the one the write must have produced and reports
//! success when they match. An abort retried after such a loss reports success too. A
//! `get` body that breaks mid-stream is resumed from the first byte not yet delivered, and
//! a listing that fails mid-way resumes after the last key delivered. Resumed reads assume
//! the object is not replaced meanwhile (zib never rewrites an object's bytes in place).

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::multipart::{multipart_etag, single_etag};
use crate::{
    AbortIncompleteUploadsRule, BucketProtection, ByteRange, ByteStream, CompletePrecondition,
    CompletedPart, ETag, Error, ListEntry, MultipartUploadInfo, ObjectKey, ObjectMeta, Operation,
    PartInfo, PutPrecondition, RestoreTier, Result, StorageBackend, UploadId, WriteOptions,
};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 8). 1 disables retries.
    pub max_attempts: u32,
    /// Cap of the first backoff (default 250 ms); doubles on each retry.
    pub base_delay: Duration,
    /// Largest cap of any backoff (default 30 s).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Waits between attempts (injected so tests need not wait).
#[async_trait]
pub trait Sleeper: Send + Sync + Debug {
    /// Waits `duration`.
    async fn sleep(&self, duration: Duration);
}

/// Sleeps on the tokio timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

#[async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Retries transient failures of the wrapped backend. Clones share the backend and the
/// random generator.
#[derive(Debug)]
pub struct Retrying<B> {
    inner: Arc<B>,
    policy: RetryPolicy,
    sleeper: Arc<dyn Sleeper>,
    rng: Arc<Mutex<fastrand::Rng>>,
}

impl<B> Clone for Retrying<B> {
    fn clone(&self) -> Self {
        Retrying {
            inner: Arc::clone(&self.inner),
            policy: self.policy,
            sleeper: Arc::clone(&self.sleeper),
            rng: Arc::clone(&self.rng),
        }
    }
}

impl<B: StorageBackend + 'static> Retrying<B> {
    /// Wraps `inner` with `policy`, real sleeping and an entropy-seeded generator.
    pub fn new(inner: B, policy: RetryPolicy) -> Self {
        Self::with_sleeper(inner, policy, Arc::new(TokioSleeper), fastrand::u64(..))
    }

    /// Wraps `inner` with an injected sleeper and a fixed seed (deterministic backoffs).
    pub fn with_sleeper(
        inner: B,
        policy: RetryPolicy,
        sleeper: Arc<dyn Sleeper>,
        seed: u64,
    ) -> Self {
        Retrying {
            inner: Arc::new(inner),
            policy,
            sleeper,
            rng: Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The backoff before retry number `retry` (1-based): uniform in `0..=cap`.
    fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(32);
        let cap = self
            .policy
            .base_delay
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.policy.max_delay);
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        let nanos = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .u64(0..=cap_nanos);
        Duration::from_nanos(nanos)
    }

    async fn pause(&self, operation: Operation, retry: u32, error: &Error) {
        let delay = self.backoff(retry);
        tracing::debug!(%operation, retry, ?delay, %error, "retrying a transient storage failure");
        self.sleeper.sleep(delay).await;
    }

    /// Runs `call` until it succeeds, fails for good, or attempts run out. The flag says
    /// whether some attempt failed transiently (its effect on the server is unknown).
    async fn run<T, F, Fut>(&self, operation: Operation, mut call: F) -> (Result<T>, bool)
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(error) if error.is_retryable() && attempt < self.policy.max_attempts => {
                    self.pause(operation, attempt, &error).await;
                    attempt += 1;
                }
                result => return (result, attempt > 1),
            }
        }
    }

    /// After a lost answer: is the object at `key` the one we wrote (ETag `expected`)?
    async fn already_written(&self, key: &ObjectKey, expected: &ETag) -> bool {
        let (head, _) = self.run(Operation::Head, || self.inner.head(key)).await;
        head.is_ok_and(|meta| meta.etag == *expected)
    }
}

struct GetResume<B> {
    this: Retrying<B>,
    key: ObjectKey,
    range: ByteRange,
    consumed: u64,
    failures: u32,
    current: ByteStream,
}

#[async_trait]
impl<B: StorageBackend + 'static> StorageBackend for Retrying<B> {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        pre: &PutPrecondition,
    ) -> Result<ETag> {
        let (result, uncertain) = self
            .run(Operation::Put, || {
                self.inner.put(key, data.clone(), options, pre)
            })
            .await;
        match result {
            Err(Error::Precondition { .. }) if uncertain && *pre != PutPrecondition::None => {
                let expected = single_etag(&data);
                if self.already_written(key, &expected).await {
                    return Ok(expected);
                }
                result
            }
            other => other,
        }
    }

    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        // A lost answer leaves an orphan upload; `list_multipart_uploads` finds it for clean-up.
        self.run(Operation::CreateMultipart, || {
            self.inner.create_multipart(key, options)
        })
        .await
        .0
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        self.run(Operation::UploadPart, || {
            self.inner.upload_part(key, upload, number, data.clone())
        })
        .await
        .0
    }

    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        self.run(Operation::ListParts, || self.inner.list_parts(key, upload))
            .await
            .0
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        pre: CompletePrecondition,
    ) -> Result<ETag> {
        let (result, uncertain) = self
            .run(Operation::CompleteMultipart, || {
                self.inner.complete_multipart(key, upload, parts, pre)
            })
            .await;
        match result {
            Err(Error::Precondition { .. } | Error::NoSuchUpload { .. }) if uncertain => {
                let etags: Vec<&ETag> = parts.iter().map(|p| &p.etag).collect();
                let expected = multipart_etag(&etags);
                if self.already_written(key, &expected).await {
                    return Ok(expected);
                }
                result
            }
            other => other,
        }
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        let (result, uncertain) = self
            .run(Operation::AbortMultipart, || {
                self.inner.abort_multipart(key, upload)
            })
            .await;
        match result {
            Err(Error::NoSuchUpload { .. }) if uncertain => Ok(()),
            other => other,
        }
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.run(Operation::ListMultipartUploads, || {
            self.inner.list_multipart_uploads(prefix)
        })
        .await
        .0
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.run(Operation::Head, || self.inner.head(key)).await.0
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        let state = (self.inner.list(prefix), None::<ObjectKey>, 0u32);
        stream::unfold(Some(state), move |state| async move {
            let (mut current, mut last, mut failures) = state?;
            loop {
                match current.next().await {
                    None => return None,
                    Some(Ok(entry)) => {
                        // Entries up to `last` were delivered before a restart.
                        if last.as_ref().is_some_and(|l| entry.key <= *l) {
                            continue;
                        }
                        last = Some(entry.key.clone());
                        return Some((Ok(entry), Some((current, last, 0))));
                    }
                    Some(Err(error))
                        if error.is_retryable() && failures + 1 < self.policy.max_attempts =>
                    {
                        failures += 1;
                        self.pause(Operation::List, failures, &error).await;
                        current = self.inner.list(prefix);
                    }
                    Some(Err(error)) => return Some((Err(error), None)),
                }
            }
        })
        .boxed()
    }

    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        let current = self
            .run(Operation::Get, || self.inner.get(key, range))
            .await
            .0?;
        let state = GetResume {
            this: self.clone(),
            key: key.clone(),
            range,
            consumed: 0,
            failures: 0,
            current,
        };
        Ok(stream::unfold(Some(state), |state| async move {
            let mut st = state?;
            loop {
                match st.current.next().await {
                    None => return None,
                    Some(Ok(chunk)) => {
                        st.consumed += chunk.len() as u64;
                        st.failures = 0;
                        return Some((Ok(chunk), Some(st)));
                    }
                    Some(Err(error))
                        if error.is_retryable()
                            && st.failures + 1 < st.this.policy.max_attempts =>
                    {
                        st.failures += 1;
                        st.this.pause(Operation::Get, st.failures, &error).await;
                        let rest = st.range.skip(st.consumed);
                        if rest.end().is_some_and(|end| rest.start() >= end) {
                            return None; // everything was delivered before the break
                        }
                        match st.this.inner.get(&st.key, rest).await {
                            Ok(stream) => st.current = stream,
                            // The break came exactly at the end of the object.
                            Err(Error::InvalidInput { .. })
                                if st.consumed > 0 && rest.end().is_none() =>
                            {
                                return None
                            }
                            Err(error) => st.current = stream::iter([Err(error)]).boxed(),
                        }
                    }
                    Some(Err(error)) => return Some((Err(error), None)),
                }
            }
        })
        .boxed())
    }

    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()> {
        self.run(Operation::RequestRestore, || {
            self.inner.request_restore(key, days, tier)
        })
        .await
        .0
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.run(Operation::Delete, || self.inner.delete(key))
            .await
            .0
    }

    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        self.run(Operation::GetLifecycle, || {
            self.inner.abort_incomplete_uploads_rules()
        })
        .await
        .0
    }

    // Idempotent (add or replace by id), so a retry after a lost answer is harmless.
    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        self.run(Operation::PutLifecycle, || {
            self.inner.put_abort_incomplete_uploads_rule(rule)
        })
        .await
        .0
    }

    async fn bucket_protection(&self) -> Result<BucketProtection> {
        self.run(Operation::GetBucketProtection, || {
            self.inner.bucket_protection()
        })
        .await
        .0
    }
}

#[cfg(test)]
#[cfg(feature = "memory")]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Duration>>);

    #[async_trait]
    impl Sleeper for Recorder {
        async fn sleep(&self, duration: Duration) {
            self.0.lock().unwrap().push(duration);
        }
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let backend = crate::memory::MemoryBackend::new(
            Default::default(),
            Arc::new(crate::FakeClock::default()),
        );
        let retrying = Retrying::with_sleeper(
            backend,
            RetryPolicy::default(),
            Arc::new(Recorder::default()),
            7,
        );
        let mut below_half = 0;
        for retry in 1..=10u32 {
            for _ in 0..200 {
                let delay = retrying.backoff(retry);
                let cap =
                    (Duration::from_millis(250) * 2u32.pow(retry - 1)).min(Duration::from_secs(30));
                assert!(delay <= cap, "retry {retry}: {delay:?} > {cap:?}");
                if delay < cap / 2 {
                    below_half += 1;
                }
            }
        }
        // Uniform in 0..=cap: about half the draws fall below cap/2.
        assert!(
            (800..1200).contains(&below_half),
            "{below_half} of 2000 below half the cap"
        );
        let again = Retrying::with_sleeper(
            crate::memory::MemoryBackend::new(
                Default::default(),
                Arc::new(crate::FakeClock::default()),
            ),
            RetryPolicy::default(),
            Arc::new(Recorder::default()),
            7,
        );
        assert_eq!(
            again.backoff(1),
            Retrying::with_sleeper(
                crate::memory::MemoryBackend::new(
                    Default::default(),
                    Arc::new(crate::FakeClock::default())
                ),
                RetryPolicy::default(),
                Arc::new(Recorder::default()),
                7,
            )
            .backoff(1),
            "same seed, same delays"
        );
    }
}
