//! The storage conformance suite against the in-memory backend (fake clock, 48-hour thaw).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::sync::Arc;

use bytes::Bytes;
use zib_storage_backend::memory::{MemoryBackend, MemoryConfig};
use zib_storage_backend::{
    ETag, Error, FakeClock, Forwarding, ObjectKey, Operation, PutPrecondition, Result,
    StorageBackend, StorageBackendExt as _, WriteOptions,
};
use zib_test_utils::storage_conformance::{ArchiveModel, SuiteParams, SuiteTarget};

async fn memory() -> Option<SuiteTarget> {
    let clock = FakeClock::default();
    let config = MemoryConfig::default();
    let params = SuiteParams::new(
        ArchiveModel::DelayedRestore {
            clock: clock.clone(),
            bulk_thaw: config.bulk_thaw,
        },
        Arc::new(clock.clone()),
    );
    Some(SuiteTarget {
        backend: Arc::new(MemoryBackend::new(config, Arc::new(clock))),
        params,
        guard: Box::new(()),
    })
}

zib_test_utils::storage_conformance_tests!(memory);

/// Small pages make the pagination path run many times, not once.
#[tokio::test]
async fn pagination_with_small_pages() {
    let config = MemoryConfig {
        page_size: 7,
        ..MemoryConfig::default()
    };
    let clock = FakeClock::default();
    let backend = MemoryBackend::new(config, Arc::new(clock.clone()));
    let mut params = SuiteParams::new(ArchiveModel::NoArchive, Arc::new(clock));
    params.pagination_keys = 50;
    zib_test_utils::storage_conformance::list_pagination(&backend, &params).await;
}

/// Every behaviour in sequence on one shared store, as a backend author would run it.
#[tokio::test]
async fn run_all_on_one_store() {
    let clock = FakeClock::default();
    let config = MemoryConfig::default();
    let params = SuiteParams::new(
        ArchiveModel::DelayedRestore {
            clock: clock.clone(),
            bulk_thaw: config.bulk_thaw,
        },
        Arc::new(clock.clone()),
    );
    let backend = MemoryBackend::new(config, Arc::new(clock));
    zib_test_utils::storage_conformance::run_all(&backend, &params).await;
}

/// The whole suite through the retry layer over a backend where a seeded 20 % of all
/// calls fail transiently (and some `get` bodies and listings break mid-way): the retry
/// layer must hide every one of them, including lost answers to conditional writes. Every
/// rule is shown to have fired, so the suite cannot pass by faults silently not happening.
#[tokio::test]
async fn run_all_through_retry_over_random_faults() {
    use zib_storage_backend::faults::{Fault, FaultInjecting, FaultRule, Trigger};
    use zib_storage_backend::retry::{RetryPolicy, Retrying, Sleeper};

    #[derive(Debug)]
    struct NoWait;
    #[async_trait::async_trait]
    impl Sleeper for NoWait {
        async fn sleep(&self, _: std::time::Duration) {}
    }

    let clock = FakeClock::default();
    let config = MemoryConfig::default();
    let params = SuiteParams::new(
        ArchiveModel::DelayedRestore {
            clock: clock.clone(),
            bulk_thaw: config.bulk_thaw,
        },
        Arc::new(clock.clone()),
    );
    use zib_storage_backend::Operation;
    // Lost answers only where the retry layer can tell what happened (a lost
    // create-multipart answer leaves an orphan upload by nature; clean-up finds it).
    let lost = [
        Operation::Put,
        Operation::UploadPart,
        Operation::CompleteMultipart,
        Operation::AbortMultipart,
        Operation::Delete,
    ];
    // The first answer of each such operation is lost for sure (some are called only a
    // few times in the suite, where a fraction could miss them all); after that, a seeded
    // fraction of the frequent ones.
    let mut rules: Vec<FaultRule> = lost
        .into_iter()
        .map(|operation| FaultRule {
            operation: Some(operation),
            trigger: Trigger::Nth(1),
            fault: Fault::LostAnswer,
        })
        .collect();
    rules.extend(
        [Operation::Put, Operation::UploadPart].map(|operation| FaultRule {
            operation: Some(operation),
            trigger: Trigger::Fraction(0.05),
            fault: Fault::LostAnswer,
        }),
    );
    rules.extend([
        FaultRule {
            operation: None,
            trigger: Trigger::Fraction(0.2),
            fault: Fault::Transient,
        },
        FaultRule {
            operation: Some(zib_storage_backend::Operation::Get),
            trigger: Trigger::Fraction(0.2),
            fault: Fault::TruncatedBody,
        },
        FaultRule {
            operation: Some(zib_storage_backend::Operation::List),
            trigger: Trigger::Fraction(0.2),
            fault: Fault::TruncatedBody,
        },
    ]);
    let faulty = FaultInjecting::new(
        MemoryBackend::new(config, Arc::new(clock.clone())),
        rules.clone(),
        1234,
    );
    let policy = RetryPolicy {
        max_attempts: 12,
        ..RetryPolicy::default()
    };
    let backend = Retrying::with_sleeper(faulty, policy, Arc::new(NoWait), 1234);
    zib_test_utils::storage_conformance::run_all(&backend, &params).await;
    let injected = backend.inner().injected();
    for (rule, count) in rules.iter().zip(&injected) {
        assert!(
            *count > 0,
            "this rule never fired: {rule:?} (all: {injected:?})"
        );
    }
}

/// A backend whose `IfAbsent` is a check, then a write — as a naive backend over a store
/// without conditional writes would do it. Everything else is the memory backend's.
#[derive(Debug)]
struct CheckThenWrite {
    inner: MemoryBackend,
}

#[async_trait::async_trait]
impl Forwarding for CheckThenWrite {
    fn inner(&self) -> &dyn StorageBackend {
        &self.inner
    }

    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        precondition: &PutPrecondition,
    ) -> Result<ETag> {
        if *precondition != PutPrecondition::IfAbsent {
            return self.inner.put(key, data, options, precondition).await;
        }
        if self.inner.exists(key).await? {
            return Err(Error::Precondition {
                operation: Operation::Put,
                key: key.to_string(),
            });
        }
        // Between the check and the write, another caller runs.
        tokio::task::yield_now().await;
        self.inner
            .put(key, data, options, &PutPrecondition::None)
            .await
    }
}

/// The race check catches a backend whose `IfAbsent` is not atomic (the same backend
/// passes every check that does not race).
#[tokio::test]
#[should_panic(expected = "exactly one may win")]
async fn a_backend_whose_if_absent_is_not_atomic_fails_the_race_check() {
    let clock = FakeClock::default();
    let backend = CheckThenWrite {
        inner: MemoryBackend::new(MemoryConfig::default(), Arc::new(clock.clone())),
    };
    let params = SuiteParams::new(ArchiveModel::NoArchive, Arc::new(clock));
    zib_test_utils::storage_conformance::conditional_put(&backend, &params).await;
    zib_test_utils::storage_conformance::racing_conditional_puts(&backend, &params).await;
}
