//! The storage conformance suite against the in-memory backend (fake clock, 48-hour thaw).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::sync::Arc;

use zib_storage_backend::memory::{MemoryBackend, MemoryConfig};
use zib_storage_backend::FakeClock;
use zib_test_utils::storage_conformance::{ArchiveModel, SuiteParams, SuiteTarget};

async fn memory() -> Option<SuiteTarget> {
    let clock = FakeClock::default();
    let config = MemoryConfig::default();
    let params = SuiteParams::new(ArchiveModel::DelayedRestore {
        clock: clock.clone(),
        bulk_thaw: config.bulk_thaw,
    });
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
    let backend = MemoryBackend::new(config, Arc::new(FakeClock::default()));
    let mut params = SuiteParams::new(ArchiveModel::NoArchive);
    params.pagination_keys = 50;
    zib_test_utils::storage_conformance::list_pagination(&backend, &params).await;
}

/// Every behaviour in sequence on one shared store, as a backend author would run it.
#[tokio::test]
async fn run_all_on_one_store() {
    let clock = FakeClock::default();
    let config = MemoryConfig::default();
    let params = SuiteParams::new(ArchiveModel::DelayedRestore {
        clock: clock.clone(),
        bulk_thaw: config.bulk_thaw,
    });
    let backend = MemoryBackend::new(config, Arc::new(clock));
    zib_test_utils::storage_conformance::run_all(&backend, &params).await;
}
