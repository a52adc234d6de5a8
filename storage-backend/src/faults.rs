//! A decorator that injects failures: the n-th call of an operation, or a seeded
//! fraction of calls, fails with a chosen error before reaching the wrapped backend (or,
//! for `get` and `list`, part-way through its answer). It counts the faults each rule
//! injected, so a test can prove its faults really happened.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::{
    AbortIncompleteUploadsRule, BucketProtection, ByteRange, ByteStream, CompletePrecondition,
    CompletedPart, ETag, Error, ListEntry, MultipartUploadInfo, ObjectKey, ObjectMeta, Operation,
    PartInfo, PutPrecondition, RestoreTier, Result, StorageBackend, UploadId, WriteOptions,
};

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// On the n-th call (1-based) of the rule's operation(s).
    Nth(u64),
    /// On every call from the n-th (1-based) on.
    From(u64),
    /// On each call with this probability, drawn from the decorator's seeded generator.
    Fraction(f64),
}

/// What a firing rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A retryable [`Error::Transient`] (as for 500, 503 SlowDown, a reset or a timeout).
    Transient,
    /// [`Error::PermissionDenied`].
    PermissionDenied,
    /// For `get`: the call succeeds but the body stops after half of its bytes with a
    /// `Transient` error. For `list`: the listing stops after half of its entries (rounded
    /// down) with a `Transient` error, as a connection cut in the middle of a page would.
    /// For other operations: as `Transient`.
    TruncatedBody,
    /// The call reaches the wrapped backend and takes effect, then fails with `Transient`
    /// (a response lost on the way back).
    LostAnswer,
    /// For `get`: the call succeeds but the body stops after half of its bytes and never
    /// ends (a connection that hangs: what a process is killed in the middle of). For
    /// other operations: the call never returns.
    Hang,
    /// [`Error::Unsupported`], as an S3-compatible server that lacks the action
    /// answers (`501 NotImplemented`).
    NotImplemented,
    /// [`Error::InvalidInput`], as a server that refuses the request itself answers
    /// (`400 InvalidRequest`).
    InvalidInput,
}

/// One injection rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRule {
    /// The operation it applies to; `None` for every operation.
    pub operation: Option<Operation>,
    /// When it fires.
    pub trigger: Trigger,
    /// What happens.
    pub fault: Fault,
}

#[derive(Debug)]
struct State {
    calls: BTreeMap<Operation, u64>,
    total: u64,
    /// Faults injected by each rule, in rule order.
    fired: Vec<u64>,
    rng: fastrand::Rng,
}

/// Wraps a backend and fails calls according to its rules. Clones share state.
#[derive(Debug, Clone)]
pub struct FaultInjecting<B> {
    inner: B,
    rules: Arc<Vec<FaultRule>>,
    state: Arc<Mutex<State>>,
}

impl<B> FaultInjecting<B> {
    /// Wraps `inner`; `seed` drives [`Trigger::Fraction`].
    pub fn new(inner: B, rules: Vec<FaultRule>, seed: u64) -> Self {
        let fired = vec![0; rules.len()];
        FaultInjecting {
            inner,
            rules: Arc::new(rules),
            state: Arc::new(Mutex::new(State {
                calls: BTreeMap::new(),
                total: 0,
                fired,
                rng: fastrand::Rng::with_seed(seed),
            })),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// How many faults each rule injected so far, in the order the rules were given.
    pub fn injected(&self) -> Vec<u64> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fired
            .clone()
    }

    /// Counts the call and returns the fault to inject, if any.
    fn check(&self, operation: Operation) -> Option<Fault> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let n_op = {
            let entry = state.calls.entry(operation).or_default();
            *entry += 1;
            *entry
        };
        state.total += 1;
        let n_all = state.total;
        for (index, rule) in self.rules.iter().enumerate() {
            let n = match rule.operation {
                Some(op) if op != operation => continue,
                Some(_) => n_op,
                None => n_all,
            };
            let fires = match rule.trigger {
                Trigger::Nth(k) => n == k,
                Trigger::From(k) => n >= k,
                Trigger::Fraction(p) => state.rng.f64() < p,
            };
            if fires {
                state.fired[index] += 1;
                return Some(rule.fault);
            }
        }
        None
    }

    /// Runs `call` unless a rule fires; `LostAnswer` runs it and then fails.
    async fn wrap<T>(
        &self,
        operation: Operation,
        key: &str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.check(operation) {
            None => call.await,
            Some(Fault::LostAnswer) => {
                let _ = call.await;
                Err(Error::transient(
                    operation,
                    key,
                    "injected fault: the answer was lost",
                ))
            }
            Some(Fault::Hang) => std::future::pending().await,
            Some(fault) => Err(injected(fault, operation, key)),
        }
    }
}

fn injected(fault: Fault, operation: Operation, key: &str) -> Error {
    match fault {
        Fault::PermissionDenied => Error::PermissionDenied {
            operation,
            key: key.to_owned(),
            source: None,
        },
        Fault::Transient | Fault::TruncatedBody | Fault::LostAnswer | Fault::Hang => {
            Error::transient(operation, key, "injected fault")
        }
        Fault::NotImplemented => Error::Unsupported {
            operation,
            message: "injected".to_owned(),
        },
        Fault::InvalidInput => Error::invalid(format!("{operation} {key:?} refused (injected)")),
    }
}

#[async_trait]
impl<B: StorageBackend> StorageBackend for FaultInjecting<B> {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        pre: &PutPrecondition,
    ) -> Result<ETag> {
        self.wrap(
            Operation::Put,
            key.as_str(),
            self.inner.put(key, data, options, pre),
        )
        .await
    }
    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        self.wrap(
            Operation::CreateMultipart,
            key.as_str(),
            self.inner.create_multipart(key, options),
        )
        .await
    }
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        self.wrap(
            Operation::UploadPart,
            key.as_str(),
            self.inner.upload_part(key, upload, number, data),
        )
        .await
    }
    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        self.wrap(
            Operation::ListParts,
            key.as_str(),
            self.inner.list_parts(key, upload),
        )
        .await
    }
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        pre: CompletePrecondition,
    ) -> Result<ETag> {
        self.wrap(
            Operation::CompleteMultipart,
            key.as_str(),
            self.inner.complete_multipart(key, upload, parts, pre),
        )
        .await
    }
    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        self.wrap(
            Operation::AbortMultipart,
            key.as_str(),
            self.inner.abort_multipart(key, upload),
        )
        .await
    }
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.wrap(
            Operation::ListMultipartUploads,
            prefix,
            self.inner.list_multipart_uploads(prefix),
        )
        .await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.wrap(Operation::Head, key.as_str(), self.inner.head(key))
            .await
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        match self.check(Operation::List) {
            None => self.inner.list(prefix),
            Some(Fault::TruncatedBody) => stream::once(async move {
                let cut = Error::transient(Operation::List, prefix, "injected truncated listing");
                let entries: Vec<Result<ListEntry>> =
                    match self.inner.list(prefix).try_collect::<Vec<_>>().await {
                        Ok(mut entries) => {
                            entries.truncate(entries.len() / 2);
                            entries.into_iter().map(Ok).chain([Err(cut)]).collect()
                        }
                        Err(error) => vec![Err(error)],
                    };
                stream::iter(entries)
            })
            .flatten()
            .boxed(),
            Some(fault) => {
                let error = injected(fault, Operation::List, prefix);
                stream::once(async move { Err(error) }).boxed()
            }
        }
    }
    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        match self.check(Operation::Get) {
            None => self.inner.get(key, range).await,
            Some(Fault::TruncatedBody) => {
                let whole = crate::StorageBackendExt::get_bytes(&self.inner, key, range).await?;
                let half = whole.slice(..whole.len() / 2);
                let error =
                    Error::transient(Operation::Get, key.as_str(), "injected truncated body");
                Ok(stream::iter([Ok(half), Err(error)]).boxed())
            }
            Some(Fault::Hang) => {
                let whole = crate::StorageBackendExt::get_bytes(&self.inner, key, range).await?;
                let half = whole.slice(..whole.len() / 2);
                Ok(stream::iter([Ok(half)]).chain(stream::pending()).boxed())
            }
            Some(fault) => Err(injected(fault, Operation::Get, key.as_str())),
        }
    }
    async fn request_restore(&self, key: &ObjectKey, days: u32, tier: RestoreTier) -> Result<()> {
        self.wrap(
            Operation::RequestRestore,
            key.as_str(),
            self.inner.request_restore(key, days, tier),
        )
        .await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.wrap(Operation::Delete, key.as_str(), self.inner.delete(key))
            .await
    }
    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        self.wrap(
            Operation::GetLifecycle,
            "",
            self.inner.abort_incomplete_uploads_rules(),
        )
        .await
    }
    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        self.wrap(
            Operation::PutLifecycle,
            "",
            self.inner.put_abort_incomplete_uploads_rule(rule),
        )
        .await
    }
    async fn bucket_protection(&self) -> Result<BucketProtection> {
        self.wrap(
            Operation::GetBucketProtection,
            "",
            self.inner.bucket_protection(),
        )
        .await
    }
}
