//! The retry, counting and fault-injection decorators, over the in-memory backend.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use zib_storage_backend::counting::Counting;
use zib_storage_backend::faults::{Fault, FaultInjecting, FaultRule, Trigger};
use zib_storage_backend::memory::MemoryBackend;
use zib_storage_backend::retry::{RetryPolicy, Retrying, Sleeper};
use zib_storage_backend::{
    ByteRange, CompletePrecondition, Error, FakeClock, ObjectKey, Operation, PutPrecondition,
    StorageBackend, StorageBackendExt, StorageClass, WriteOptions,
};

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Duration>>);

#[async_trait]
impl Sleeper for Recorder {
    async fn sleep(&self, duration: Duration) {
        self.0.lock().unwrap().push(duration);
    }
}

type Stack = Retrying<FaultInjecting<Counting<MemoryBackend>>>;

fn stack(rules: Vec<FaultRule>) -> (Stack, Arc<Recorder>) {
    let memory = MemoryBackend::new(Default::default(), Arc::new(FakeClock::default()));
    let recorder = Arc::new(Recorder::default());
    let retrying = Retrying::with_sleeper(
        FaultInjecting::new(Counting::new(memory), rules, 42),
        RetryPolicy::default(),
        recorder.clone(),
        42,
    );
    (retrying, recorder)
}

fn rule(operation: Operation, trigger: Trigger, fault: Fault) -> FaultRule {
    FaultRule {
        operation: Some(operation),
        trigger,
        fault,
    }
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(name).unwrap()
}

fn standard() -> WriteOptions {
    WriteOptions::new(StorageClass::Standard)
}

fn reached(stack: &Stack, operation: Operation) -> u64 {
    stack.inner().inner().count(operation)
}

/// Faults each rule of the stack injected, in rule order: a test whose faults never fired
/// would prove nothing.
fn injected(stack: &Stack) -> Vec<u64> {
    stack.inner().injected()
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff() {
    let (stack, sleeps) = stack(vec![
        rule(Operation::Put, Trigger::Nth(1), Fault::Transient),
        rule(Operation::Put, Trigger::Nth(2), Fault::Transient),
    ]);
    stack
        .put(
            &key("k"),
            Bytes::from_static(b"v"),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    assert_eq!(
        reached(&stack, Operation::Put),
        1,
        "two injected failures, then one real put"
    );
    assert_eq!(injected(&stack), [1, 1]);
    let sleeps = sleeps.0.lock().unwrap().clone();
    assert_eq!(sleeps.len(), 2);
    assert!(
        sleeps[0] <= Duration::from_millis(250) && sleeps[1] <= Duration::from_millis(500),
        "{sleeps:?}"
    );
}

#[tokio::test]
async fn permanent_failures_fail_fast() {
    let (stack, sleeps) = stack(vec![rule(
        Operation::Head,
        Trigger::From(1),
        Fault::PermissionDenied,
    )]);
    let err = stack.head(&key("k")).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(
        sleeps.0.lock().unwrap().is_empty(),
        "no retry of a permanent failure"
    );
    let err = stack.head(&key("k")).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert_eq!(injected(&stack), [2], "one refusal per call, none retried");
    assert_eq!(reached(&stack, Operation::Head), 0);
}

#[tokio::test]
async fn attempts_run_out() {
    let (stack, sleeps) = stack(vec![rule(
        Operation::Delete,
        Trigger::From(1),
        Fault::Transient,
    )]);
    let err = stack.delete(&key("k")).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(sleeps.0.lock().unwrap().len(), 7, "8 attempts, 7 waits");
    assert_eq!(reached(&stack, Operation::Delete), 0);
    assert_eq!(injected(&stack), [8]);
}

#[tokio::test]
async fn a_truncated_body_resumes_where_it_broke() {
    let (stack, _) = stack(vec![rule(
        Operation::Get,
        Trigger::Nth(1),
        Fault::TruncatedBody,
    )]);
    let data = Bytes::from(
        (0..200_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    stack
        .put(
            &key("big"),
            data.clone(),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    assert_eq!(
        stack
            .get_bytes(&key("big"), ByteRange::full())
            .await
            .unwrap(),
        data
    );
    // The body was cut once, and the rest came from a second, resumed read.
    assert_eq!(injected(&stack), [1]);
    assert_eq!(reached(&stack, Operation::Get), 2);
    let (stack2, _) = self::stack(vec![rule(
        Operation::Get,
        Trigger::Nth(1),
        Fault::TruncatedBody,
    )]);
    stack2
        .put(
            &key("big"),
            data.clone(),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    let ranged = stack2
        .get_bytes(&key("big"), ByteRange::new(1000, 150_000).unwrap())
        .await
        .unwrap();
    assert_eq!(ranged, data.slice(1000..150_000));
    assert_eq!(injected(&stack2), [1]);
    assert_eq!(reached(&stack2, Operation::Get), 2);
}

#[tokio::test]
async fn a_lost_answer_to_a_conditional_write_is_recognised_as_success() {
    let (stack, _) = stack(vec![
        rule(Operation::Put, Trigger::Nth(1), Fault::LostAnswer),
        rule(
            Operation::CompleteMultipart,
            Trigger::Nth(1),
            Fault::LostAnswer,
        ),
        rule(
            Operation::AbortMultipart,
            Trigger::Nth(1),
            Fault::LostAnswer,
        ),
    ]);
    let etag = stack
        .put(
            &key("k"),
            Bytes::from_static(b"v"),
            &standard(),
            &PutPrecondition::IfAbsent,
        )
        .await
        .unwrap();
    assert_eq!(stack.head(&key("k")).await.unwrap().etag, etag);
    // Another writer's object is still a precondition failure.
    let err = stack
        .put(
            &key("k"),
            Bytes::from_static(b"w"),
            &standard(),
            &PutPrecondition::IfAbsent,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Precondition { .. }), "{err:?}");

    let etag = stack
        .upload_multipart(
            &key("m"),
            &standard(),
            vec![Bytes::from_static(b"part")],
            CompletePrecondition::IfAbsent,
        )
        .await
        .unwrap();
    assert_eq!(stack.head(&key("m")).await.unwrap().etag, etag);

    let upload = stack
        .create_multipart(&key("a"), &standard())
        .await
        .unwrap();
    stack.abort_multipart(&key("a"), &upload).await.unwrap();
    assert!(stack.list_multipart_uploads("").await.unwrap().is_empty());
    // Each answer was lost once after the write took effect; the retries found it done.
    assert_eq!(injected(&stack), [1, 1, 1]);
    assert_eq!(reached(&stack, Operation::CompleteMultipart), 2);
    assert_eq!(reached(&stack, Operation::AbortMultipart), 2);
}

/// A listing cut in the middle of a page (7-key pages; the cut comes after 15 of 30 keys,
/// inside the third page) is listed again by the retry layer, which delivers the keys
/// after the last one it already delivered: every key once, in order, from two listings.
#[tokio::test]
async fn a_listing_cut_mid_page_resumes_after_the_last_delivered_key() {
    let memory = MemoryBackend::new(
        zib_storage_backend::memory::MemoryConfig {
            page_size: 7,
            ..Default::default()
        },
        Arc::new(FakeClock::default()),
    );
    let stack: Stack = Retrying::with_sleeper(
        FaultInjecting::new(
            Counting::new(memory),
            vec![rule(Operation::List, Trigger::Nth(1), Fault::TruncatedBody)],
            42,
        ),
        RetryPolicy::default(),
        Arc::new(Recorder::default()),
        42,
    );
    let expected: Vec<String> = (0..30).map(|i| format!("p/{i:02}")).collect();
    for name in &expected {
        stack
            .put(
                &key(name),
                Bytes::new(),
                &standard(),
                &PutPrecondition::None,
            )
            .await
            .unwrap();
    }
    let keys: Vec<String> = stack
        .list_all("p/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(keys, expected, "every key once, in order");
    assert_eq!(injected(&stack), [1], "the listing was cut once");
    assert_eq!(
        reached(&stack, Operation::List),
        2,
        "the cut listing and the one that resumed it"
    );
}

/// A listing that fails before its first key is simply listed again.
#[tokio::test]
async fn a_listing_failing_at_once_is_listed_again() {
    let (stack, _) = stack(vec![rule(
        Operation::List,
        Trigger::Nth(1),
        Fault::Transient,
    )]);
    for i in 0..30 {
        stack
            .put(
                &key(&format!("p/{i:02}")),
                Bytes::new(),
                &standard(),
                &PutPrecondition::None,
            )
            .await
            .unwrap();
    }
    let keys: Vec<String> = stack
        .list_all("p/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(
        keys,
        (0..30).map(|i| format!("p/{i:02}")).collect::<Vec<_>>()
    );
    assert_eq!(injected(&stack), [1]);
    assert_eq!(
        reached(&stack, Operation::List),
        1,
        "refused before the backend"
    );
}

#[tokio::test]
async fn counting_counts_by_operation() {
    let counting = Counting::new(MemoryBackend::new(
        Default::default(),
        Arc::new(FakeClock::default()),
    ));
    counting
        .put(&key("a"), Bytes::new(), &standard(), &PutPrecondition::None)
        .await
        .unwrap();
    counting.head(&key("a")).await.unwrap();
    counting.head(&key("b")).await.unwrap_err();
    counting.list_all("").await.unwrap();
    assert_eq!(counting.count(Operation::Put), 1);
    assert_eq!(counting.count(Operation::Head), 2);
    assert_eq!(counting.count(Operation::List), 1);
    assert_eq!(counting.count(Operation::Get), 0);
}

#[tokio::test]
async fn seeded_fractions_are_reproducible() {
    let pattern = |seed| async move {
        let memory = MemoryBackend::new(Default::default(), Arc::new(FakeClock::default()));
        let faulty = FaultInjecting::new(
            memory,
            vec![FaultRule {
                operation: None,
                trigger: Trigger::Fraction(0.3),
                fault: Fault::Transient,
            }],
            seed,
        );
        let mut outcomes = Vec::new();
        for _ in 0..100 {
            outcomes.push(
                faulty
                    .head(&key("x"))
                    .await
                    .is_err_and(|e| e.is_retryable()),
            );
        }
        (outcomes, faulty.injected())
    };
    let (a, fired) = pattern(9).await;
    assert_eq!((a.clone(), fired.clone()), pattern(9).await);
    assert_ne!(a, pattern(10).await.0);
    let failures = a.iter().filter(|f| **f).count();
    assert!((15..45).contains(&failures), "{failures} of 100 at p=0.3");
    assert_eq!(
        fired,
        [failures as u64],
        "the counter counts every injected fault"
    );
}

#[tokio::test]
async fn lifecycle_calls_pass_through_every_decorator() {
    let (stack, sleeps) = stack(vec![
        rule(Operation::PutLifecycle, Trigger::Nth(1), Fault::LostAnswer),
        rule(
            Operation::GetLifecycle,
            Trigger::Nth(1),
            Fault::PermissionDenied,
        ),
    ]);
    let ours = zib_storage_backend::AbortIncompleteUploadsRule {
        id: "zib-abort-incomplete-uploads".to_owned(),
        prefix: "home/".to_owned(),
        days_after_initiation: 7,
        enabled: true,
    };
    // A lost answer is retried; adding or replacing by id makes the retry harmless.
    stack
        .put_abort_incomplete_uploads_rule(&ours)
        .await
        .unwrap();
    assert_eq!(reached(&stack, Operation::PutLifecycle), 2);
    assert_eq!(sleeps.0.lock().unwrap().len(), 1);
    // A refusal is not retried.
    let err = stack.abort_incomplete_uploads_rules().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                operation: Operation::GetLifecycle,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(reached(&stack, Operation::GetLifecycle), 0);
    assert_eq!(
        stack.abort_incomplete_uploads_rules().await.unwrap(),
        [ours]
    );
    assert_eq!(injected(&stack), [1, 1]);
}
