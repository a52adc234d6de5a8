//! Faults injected by the HTTP proxy between the S3 backend and moto: each maps to the
//! right error, retryable ones are retried to success, the others fail fast.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zib_storage_backend::retry::{RetryPolicy, Retrying};
use zib_storage_backend::s3::{S3Backend, S3Config, S3Timeouts, StaticCredentials};
use zib_storage_backend::{
    ByteRange, CompletePrecondition, Error, ObjectKey, Operation, PutPrecondition, StorageBackend,
    StorageBackendExt, StorageClass, WriteOptions, MIN_PART_SIZE,
};
use zib_test_utils::moto::MotoServer;
use zib_test_utils::proxy::{FaultProxy, ProxyFault, ProxyRule, ProxyTrigger};
use zib_test_utils::storage_conformance::test_bytes;

/// How long the client waits for a first response byte; stalls last longer.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(1500);

struct Setup {
    proxy: FaultProxy,
    s3: Arc<S3Backend>,
    _moto: MotoServer,
}

async fn setup(rules: Vec<ProxyRule>) -> Option<Setup> {
    let moto = MotoServer::start().await?;
    let (proxy, s3) = proxied(&moto, rules, 77).await;
    Some(Setup {
        proxy,
        s3,
        _moto: moto,
    })
}

/// A fresh bucket on `moto`, reached through a new proxy with `rules` and `seed`.
async fn proxied(
    moto: &MotoServer,
    rules: Vec<ProxyRule>,
    seed: u64,
) -> (FaultProxy, Arc<S3Backend>) {
    let bucket = moto.create_bucket().await;
    let upstream: SocketAddr = ([127, 0, 0, 1], moto.port()).into();
    let proxy = FaultProxy::start(upstream, rules, seed).await.unwrap();
    let mut config = S3Config::new(bucket);
    config.region = Some("us-east-1".to_owned());
    config.endpoint_url = Some(proxy.endpoint());
    config.credentials = Some(StaticCredentials {
        access_key_id: "test".to_owned(),
        secret_access_key: "test".to_owned(),
    });
    config.timeouts = S3Timeouts {
        connect: Duration::from_secs(2),
        first_byte: CLIENT_TIMEOUT,
    };
    let s3 = Arc::new(S3Backend::connect(&config).await.unwrap());
    (proxy, s3)
}

fn on(operation: Operation, trigger: ProxyTrigger, fault: ProxyFault) -> ProxyRule {
    ProxyRule {
        operation: Some(operation),
        trigger,
        fault,
    }
}

fn retrying(s3: &Arc<S3Backend>) -> Retrying<Arc<S3Backend>> {
    let policy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    };
    Retrying::new(Arc::clone(s3), policy)
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(name).unwrap()
}

fn standard() -> WriteOptions {
    WriteOptions::new(StorageClass::Standard)
}

const RETRYABLE: [ProxyFault; 5] = [
    ProxyFault::Reset,
    ProxyFault::InternalError,
    ProxyFault::SlowDown,
    ProxyFault::Stall(Duration::from_secs(6)),
    ProxyFault::TruncateBody,
];

/// Each retryable fault on a put, seen without the retry layer: a `Transient` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_faults_map_to_transient() {
    let rules: Vec<ProxyRule> = RETRYABLE
        .iter()
        .enumerate()
        .map(|(i, fault)| on(Operation::Put, ProxyTrigger::Nth(i as u64 + 1), *fault))
        .collect();
    let Some(setup) = setup(rules).await else {
        return;
    };
    for fault in RETRYABLE {
        let result = setup
            .s3
            .put(
                &key("k"),
                Bytes::from_static(b"data"),
                &standard(),
                &PutPrecondition::None,
            )
            .await;
        if fault == ProxyFault::TruncateBody {
            // PutObject's answer has an empty body: cutting it changes nothing.
            assert!(result.is_ok(), "{fault:?}: {result:?}");
            continue;
        }
        let err = result.unwrap_err();
        assert!(
            matches!(err, Error::Transient { .. }) && err.is_retryable(),
            "{fault:?}: {err:?}"
        );
    }
    assert_eq!(setup.proxy.seen(Operation::Put), 5);
    assert_eq!(
        setup.proxy.injected(),
        [1; 5],
        "each fault was injected once"
    );
}

/// 403 AccessDenied is `PermissionDenied`, not retried: one request reaches the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_fails_fast() {
    let Some(setup) = setup(vec![on(
        Operation::Head,
        ProxyTrigger::From(1),
        ProxyFault::AccessDenied,
    )])
    .await
    else {
        return;
    };
    let err = retrying(&setup.s3).head(&key("k")).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(
        setup.proxy.seen(Operation::Head),
        1,
        "no retry of a permission error"
    );
    assert_eq!(setup.proxy.injected(), [1]);
}

/// Every retryable fault, once on each operation of a backup and a restore, is hidden by
/// the retry layer; the proxy proves each was retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_faults_are_retried_to_success() {
    let mut rules = Vec::new();
    for (operation, fault) in [
        (Operation::CreateMultipart, ProxyFault::SlowDown),
        (Operation::UploadPart, ProxyFault::Reset),
        (Operation::ListParts, ProxyFault::TruncateBody),
        (Operation::CompleteMultipart, ProxyFault::InternalError),
        (Operation::Head, ProxyFault::Stall(Duration::from_secs(6))),
        (Operation::Get, ProxyFault::TruncateBody),
        (Operation::List, ProxyFault::Reset),
        (Operation::Put, ProxyFault::InternalError),
        (Operation::Delete, ProxyFault::SlowDown),
    ] {
        rules.push(on(operation, ProxyTrigger::Nth(1), fault));
    }
    let Some(setup) = setup(rules).await else {
        return;
    };
    let backend = retrying(&setup.s3);
    let k = key("volume");
    let part1 = test_bytes(1, MIN_PART_SIZE as usize);
    let upload = backend.create_multipart(&k, &standard()).await.unwrap();
    backend
        .upload_part(&k, &upload, 1, part1.clone())
        .await
        .unwrap();
    backend
        .upload_part(&k, &upload, 2, Bytes::from_static(b"tail"))
        .await
        .unwrap();
    let parts = backend.list_parts(&k, &upload).await.unwrap();
    assert_eq!(parts.len(), 2);
    let completed: Vec<_> = parts.iter().map(Into::into).collect();
    backend
        .complete_multipart(&k, &upload, &completed, CompletePrecondition::IfAbsent)
        .await
        .unwrap();
    assert_eq!(backend.head(&k).await.unwrap().size, MIN_PART_SIZE + 4);
    let got = backend.get_bytes(&k, ByteRange::full()).await.unwrap();
    assert_eq!(got.len() as u64, MIN_PART_SIZE + 4);
    assert!(got[..part1.len()] == part1[..] && &got[part1.len()..] == b"tail");
    backend
        .put(
            &key("small"),
            Bytes::from_static(b"x"),
            &standard(),
            &PutPrecondition::IfAbsent,
        )
        .await
        .unwrap();
    assert_eq!(backend.list_all("").await.unwrap().len(), 2);
    backend.delete(&key("small")).await.unwrap();

    for operation in [
        Operation::CreateMultipart,
        Operation::ListParts,
        Operation::CompleteMultipart,
        Operation::Head,
        Operation::List,
        Operation::Put,
        Operation::Delete,
    ] {
        assert!(
            setup.proxy.seen(operation) >= 2,
            "{operation} was not retried"
        );
    }
    assert_eq!(
        setup.proxy.seen(Operation::UploadPart),
        3,
        "part 1 twice, part 2 once"
    );
    assert!(
        setup.proxy.seen(Operation::Get) >= 2,
        "the cut body was resumed by a second GET"
    );
    assert_eq!(
        setup.proxy.injected(),
        [1; 9],
        "each rule injected its fault once"
    );
}

/// A truncated GET body without the retry layer is a `Transient` error in the stream,
/// never a short success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_is_an_error_not_a_short_read() {
    let Some(setup) = setup(vec![on(
        Operation::Get,
        ProxyTrigger::Nth(1),
        ProxyFault::TruncateBody,
    )])
    .await
    else {
        return;
    };
    let data = test_bytes(2, 100_000);
    setup
        .s3
        .put(&key("k"), data.clone(), &standard(), &PutPrecondition::None)
        .await
        .unwrap();
    let err = setup
        .s3
        .get_bytes(&key("k"), ByteRange::full())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transient { .. }), "{err:?}");
    assert_eq!(setup.proxy.injected(), [1], "the body was cut once");
    assert_eq!(
        setup
            .s3
            .get_bytes(&key("k"), ByteRange::full())
            .await
            .unwrap(),
        data
    );
    assert_eq!(setup.proxy.seen(Operation::Get), 2);
}

/// A seeded 30 % of all requests answered 503 SlowDown: the retry layer still completes
/// a run of puts and reads; the same seed faults exactly the same requests again, and
/// another seed other ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fraction_of_slowdowns() {
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let run = |seed: u64| {
        let moto = &moto;
        async move {
            let rule = ProxyRule {
                operation: None,
                trigger: ProxyTrigger::Fraction(0.3),
                fault: ProxyFault::SlowDown,
            };
            let (proxy, s3) = proxied(moto, vec![rule], seed).await;
            let policy = RetryPolicy {
                base_delay: Duration::from_millis(5),
                ..RetryPolicy::default()
            };
            let backend = Retrying::new(s3, policy);
            for i in 0..20 {
                let k = key(&format!("f/{i}"));
                backend
                    .put(&k, test_bytes(i, 100), &standard(), &PutPrecondition::None)
                    .await
                    .unwrap();
                assert_eq!(
                    backend.get_bytes(&k, ByteRange::full()).await.unwrap(),
                    test_bytes(i, 100)
                );
            }
            (proxy.log(), proxy.injected())
        }
    };
    let (log, injected) = run(77).await;
    let faulted = log.iter().filter(|(_, rule)| rule.is_some()).count() as u64;
    assert!(faulted > 0, "no request was faulted: {log:?}");
    assert_eq!(injected, [faulted], "the rule counts what it injected");
    // 20 puts and 20 gets reached moto; every faulted request was sent once more.
    assert_eq!(log.len() as u64, 40 + faulted, "{log:?}");
    assert_eq!(
        run(77).await,
        (log.clone(), injected),
        "the same seed faults the same requests"
    );
    assert_ne!(run(78).await.0, log, "another seed faults other requests");
}

/// A policy that retries at once (the repairs, not the waits, are under test).
fn retrying_now(s3: &Arc<S3Backend>) -> Retrying<Arc<S3Backend>> {
    let policy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
    Retrying::new(Arc::clone(s3), policy)
}

/// A multipart upload of one small part to `key`, ready to complete.
async fn one_part_upload(
    backend: &dyn StorageBackend,
    key: &ObjectKey,
) -> (
    zib_storage_backend::UploadId,
    Vec<zib_storage_backend::CompletedPart>,
) {
    let upload = backend.create_multipart(key, &standard()).await.unwrap();
    let part = backend
        .upload_part(key, &upload, 1, test_bytes(3, 1000))
        .await
        .unwrap();
    let parts = vec![zib_storage_backend::CompletedPart {
        number: 1,
        etag: part.etag,
    }];
    (upload, parts)
}

/// A conditional put whose answer is lost after the server stored it: the retry meets
/// 412, and the retry layer's repair finds its own object (HEAD, same ETag) and reports
/// success — the path every manifest commit takes after a lost answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_a_conditional_put_is_repaired() {
    let Some(setup) = setup(vec![on(
        Operation::Put,
        ProxyTrigger::Nth(1),
        ProxyFault::DropResponse,
    )])
    .await
    else {
        return;
    };
    let backend = retrying_now(&setup.s3);
    let data = test_bytes(1, 300);
    let etag = backend
        .put(
            &key("manifest"),
            data.clone(),
            &standard(),
            &PutPrecondition::IfAbsent,
        )
        .await
        .unwrap();
    assert_eq!(
        setup.proxy.seen(Operation::Put),
        2,
        "sent, lost, sent again"
    );
    assert_eq!(setup.proxy.seen(Operation::Head), 1, "the repair's HEAD");
    assert_eq!(
        setup.proxy.faults_by_kind()[&(Operation::Put, "drop-response")],
        1
    );
    assert_eq!(backend.head(&key("manifest")).await.unwrap().etag, etag);
    assert_eq!(
        backend
            .get_bytes(&key("manifest"), ByteRange::full())
            .await
            .unwrap(),
        data
    );
}

/// The repair is no blanket success: when the object another writer put is there (and
/// our first attempt never reached the server), the conditional put still fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_put_after_a_reset_still_loses_to_another_writers_object() {
    let Some(setup) = setup(vec![on(
        Operation::Put,
        ProxyTrigger::Nth(2),
        ProxyFault::Reset,
    )])
    .await
    else {
        return;
    };
    let backend = retrying_now(&setup.s3);
    backend
        .put(
            &key("manifest"),
            test_bytes(2, 300),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    let err = backend
        .put(
            &key("manifest"),
            test_bytes(1, 300),
            &standard(),
            &PutPrecondition::IfAbsent,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Precondition { .. }), "{err:?}");
    assert_eq!(setup.proxy.seen(Operation::Put), 3);
    assert_eq!(setup.proxy.seen(Operation::Head), 1, "the repair looked");
}

/// moto 5.1.22 answers a repeated CompleteMultipartUpload with 200 and the object's
/// ETag, so a lost completion answer is "repaired" by plain re-sending on moto — the
/// retry layer's HEAD is never needed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_completion_answer_on_moto_is_answered_200_on_the_retry() {
    let Some(setup) = setup(vec![on(
        Operation::CompleteMultipart,
        ProxyTrigger::Nth(1),
        ProxyFault::DropResponse,
    )])
    .await
    else {
        return;
    };
    let backend = retrying_now(&setup.s3);
    let (upload, parts) = one_part_upload(&backend, &key("volume")).await;
    let etag = backend
        .complete_multipart(&key("volume"), &upload, &parts, CompletePrecondition::None)
        .await
        .unwrap();
    assert_eq!(setup.proxy.seen(Operation::CompleteMultipart), 2);
    assert_eq!(setup.proxy.seen(Operation::Head), 0, "no repair was needed");
    assert_eq!(backend.head(&key("volume")).await.unwrap().etag, etag);
}

/// As AWS answers it: the retry of a completion that succeeded meets 404 `NoSuchUpload`
/// (or, under `If-None-Match`, 412) — played here by the proxy — and the retry layer
/// finds the completed object by its multipart ETag and reports success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_completion_answer_is_repaired_when_the_retry_meets_no_such_upload() {
    for (precondition, answer) in [
        (
            CompletePrecondition::None,
            ProxyFault::S3Error(404, "NoSuchUpload"),
        ),
        (
            CompletePrecondition::IfAbsent,
            ProxyFault::S3Error(412, "PreconditionFailed"),
        ),
    ] {
        let Some(setup) = setup(vec![
            on(
                Operation::CompleteMultipart,
                ProxyTrigger::Nth(1),
                ProxyFault::DropResponse,
            ),
            on(Operation::CompleteMultipart, ProxyTrigger::Nth(2), answer),
        ])
        .await
        else {
            return;
        };
        let backend = retrying_now(&setup.s3);
        let (upload, parts) = one_part_upload(&backend, &key("volume")).await;
        let etag = backend
            .complete_multipart(&key("volume"), &upload, &parts, precondition)
            .await
            .unwrap();
        assert_eq!(setup.proxy.seen(Operation::CompleteMultipart), 2);
        assert_eq!(setup.proxy.seen(Operation::Head), 1, "the repair's HEAD");
        assert_eq!(setup.proxy.injected(), [1, 1], "{answer:?}");
        assert_eq!(backend.head(&key("volume")).await.unwrap().etag, etag);
        assert!(
            backend.list_multipart_uploads("").await.unwrap().is_empty(),
            "{answer:?}"
        );
    }
}

/// A lost answer to CreateMultipartUpload: the retry starts a second upload and the
/// first is an orphan nobody was told of. The retry layer cannot know it; it stays
/// listed for the engine to abort (a new volume aborts other uploads to its key, and
/// clean-up the rest), which the CLI fault suite (cli/tests/proof_faults.rs) checks
/// end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_create_multipart_leaves_a_listed_orphan() {
    let Some(setup) = setup(vec![on(
        Operation::CreateMultipart,
        ProxyTrigger::Nth(1),
        ProxyFault::DropResponse,
    )])
    .await
    else {
        return;
    };
    let backend = retrying_now(&setup.s3);
    let ours = backend
        .create_multipart(&key("volume"), &standard())
        .await
        .unwrap();
    let listed = backend.list_multipart_uploads("volume").await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let orphan: Vec<_> = listed.iter().filter(|u| u.upload_id != ours).collect();
    assert_eq!(orphan.len(), 1, "{listed:?}");
    // Aborting the orphan, as the engine does, leaves only ours.
    backend
        .abort_multipart(&key("volume"), &orphan[0].upload_id)
        .await
        .unwrap();
    let listed = backend.list_multipart_uploads("volume").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].upload_id, ours);
}

/// A lost answer to an abort: the retry meets `NoSuchUpload`, which after an uncertain
/// first attempt means done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_an_abort_is_success() {
    let Some(setup) = setup(vec![on(
        Operation::AbortMultipart,
        ProxyTrigger::Nth(1),
        ProxyFault::DropResponse,
    )])
    .await
    else {
        return;
    };
    let backend = retrying_now(&setup.s3);
    let upload = backend
        .create_multipart(&key("volume"), &standard())
        .await
        .unwrap();
    backend
        .abort_multipart(&key("volume"), &upload)
        .await
        .unwrap();
    assert_eq!(setup.proxy.seen(Operation::AbortMultipart), 2);
    assert!(backend.list_multipart_uploads("").await.unwrap().is_empty());
}
