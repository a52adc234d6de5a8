//! The access check and the lifecycle rule against moto, with the fault proxy answering
//! 403 AccessDenied for one operation at a time: each refusal names the IAM permission
//! to add, and nothing is left in the bucket.

// Helpers outside #[test] functions panic on failure too: that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use zib_engine::storage::s3::S3Backend;
use zib_engine::storage::{Operation, StorageBackend, StorageBackendExt};
use zib_engine::{
    AccessStep, Error, FakeClock, InitReport, LifecycleStatus, Passphrase, Repository,
    ABORT_AFTER_DAYS, LIFECYCLE_RULE_ID,
};
use zib_test_utils::moto::MotoServer;
use zib_test_utils::proxy::{FaultProxy, ProxyFault, ProxyRule, ProxyTrigger};

use common::{fast_init, host, location, s3_config};

const PREFIX: &str = "home/";
const PASSPHRASE: &str = "a long family passphrase";

struct Setup {
    /// Through the proxy: what zib uses.
    proxied: Arc<dyn StorageBackend>,
    /// Straight to moto: what the test inspects the bucket with.
    direct: Arc<dyn StorageBackend>,
    proxy: FaultProxy,
    bucket: String,
    moto: MotoServer,
}

async fn setup(denied: &[(Operation, ProxyTrigger)]) -> Option<Setup> {
    let moto = MotoServer::start().await?;
    let bucket = moto.create_bucket().await;
    let upstream: SocketAddr = ([127, 0, 0, 1], moto.port()).into();
    let rules = denied
        .iter()
        .map(|&(operation, trigger)| ProxyRule {
            operation: Some(operation),
            trigger,
            fault: ProxyFault::AccessDenied,
        })
        .collect();
    let proxy = FaultProxy::start(upstream, rules, 7).await.unwrap();
    let mut config = s3_config(&moto, &bucket);
    config.endpoint_url = Some(proxy.endpoint());
    let proxied: Arc<dyn StorageBackend> = Arc::new(S3Backend::connect(&config).await.unwrap());
    let direct: Arc<dyn StorageBackend> = Arc::new(
        S3Backend::connect(&s3_config(&moto, &bucket))
            .await
            .unwrap(),
    );
    Some(Setup {
        proxied,
        direct,
        proxy,
        bucket,
        moto,
    })
}

fn clock() -> FakeClock {
    FakeClock::new(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
}

async fn init(backend: &Arc<dyn StorageBackend>) -> zib_engine::Result<InitReport> {
    Repository::init(
        &location(backend, PREFIX),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(&clock()),
    )
    .await
    .map(|(_, report)| report)
}

async fn open(backend: &Arc<dyn StorageBackend>) -> zib_engine::Result<Repository> {
    Repository::open(
        &location(backend, PREFIX),
        &Passphrase::new(PASSPHRASE.into()),
        host(&clock()),
    )
    .await
}

/// Nothing in the bucket: no object, no incomplete upload.
async fn assert_bucket_empty(setup: &Setup) {
    let objects = setup.direct.list_all("").await.unwrap();
    assert!(objects.is_empty(), "left behind: {objects:?}");
    let uploads = setup.direct.list_multipart_uploads("").await.unwrap();
    assert!(uploads.is_empty(), "uploads left behind: {uploads:?}");
}

/// `init` with `operation` refused fails at `step`, naming `permission`, and leaves the
/// bucket empty.
async fn init_is_refused(operation: Operation, step: AccessStep, permission: &str) {
    let Some(setup) = setup(&[(operation, ProxyTrigger::From(1))]).await else {
        return;
    };
    let error = init(&setup.proxied).await.unwrap_err();
    match &error {
        Error::AccessDenied {
            step: refused,
            permission: named,
            ..
        } => {
            assert_eq!((*refused, *named), (step, permission), "{error}");
        }
        other => panic!("expected AccessDenied for {permission}, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(permission) && message.contains("IAM policy"),
        "{message}"
    );
    assert_eq!(
        setup.proxy.injected(),
        [1],
        "one refusal, and init stopped at it"
    );
    assert_bucket_empty(&setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_list_bucket_names_s3_list_bucket() {
    init_is_refused(Operation::List, AccessStep::ListObjects, "s3:ListBucket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_delete_object_names_s3_delete_object() {
    init_is_refused(
        Operation::Delete,
        AccessStep::DeleteProbeBeforeWriting,
        "s3:DeleteObject",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_put_object_names_s3_put_object() {
    init_is_refused(Operation::Put, AccessStep::WriteProbe, "s3:PutObject").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_get_object_names_s3_get_object_and_removes_its_probe() {
    init_is_refused(Operation::Get, AccessStep::ReadProbe, "s3:GetObject").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_list_multipart_uploads_names_its_permission() {
    init_is_refused(
        Operation::ListMultipartUploads,
        AccessStep::ListUploads,
        "s3:ListBucketMultipartUploads",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_abort_multipart_upload_names_its_permission() {
    init_is_refused(
        Operation::AbortMultipart,
        AccessStep::AbortUpload,
        "s3:AbortMultipartUpload",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_list_multipart_upload_parts_names_its_permission() {
    init_is_refused(
        Operation::ListParts,
        AccessStep::ListParts,
        "s3:ListMultipartUploadParts",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_restore_object_succeeds_with_a_warning() {
    let Some(setup) = setup(&[(Operation::RequestRestore, ProxyTrigger::From(1))]).await else {
        return;
    };
    let report = init(&setup.proxied).await.unwrap();
    assert_eq!(setup.proxy.seen(Operation::RequestRestore), 1);
    let warnings = report.access.warning_messages();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("s3:RestoreObject"), "{}", warnings[0]);
    assert!(!report.access.passed.contains(&AccessStep::RestoreProbe));
    // The probe is gone; the repository's own objects are there.
    let keys: Vec<String> = setup
        .direct
        .list_all("")
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.key.to_string())
        .collect();
    assert!(
        keys.iter().all(|key| !key.contains("access-probe")),
        "{keys:?}"
    );
    assert!(keys.contains(&format!("{PREFIX}keyring")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_runs_every_step_and_sets_the_lifecycle_rule() {
    let Some(setup) = setup(&[]).await else {
        return;
    };
    let report = init(&setup.proxied).await.unwrap();
    assert_eq!(
        report.access.passed,
        [
            AccessStep::ListObjects,
            AccessStep::DeleteProbeBeforeWriting,
            AccessStep::WriteProbe,
            AccessStep::ReadProbe,
            AccessStep::RestoreProbe,
            AccessStep::DeleteProbe,
            AccessStep::ListUploads,
            AccessStep::AbortUpload,
            AccessStep::ListParts,
            AccessStep::ReadLifecycle,
        ]
    );
    assert!(report.access.warnings.is_empty());
    assert_eq!(report.access.lifecycle, report.lifecycle);
    let LifecycleStatus::Set { rule } = &report.lifecycle else {
        panic!("expected the rule to be set: {:?}", report.lifecycle);
    };
    assert_eq!(
        (
            rule.id.as_str(),
            rule.prefix.as_str(),
            rule.days_after_initiation
        ),
        (LIFECYCLE_RULE_ID, PREFIX, ABORT_AFTER_DAYS)
    );
    // As moto stores it.
    let rules = setup.direct.abort_incomplete_uploads_rules().await.unwrap();
    assert_eq!(rules, std::slice::from_ref(rule));
    // Exactly one probe was written, and it is gone.
    // The probe, the decoder kit (3 files, each with an archived copy), README, the
    // keyring copy, the keyring.
    assert_eq!(setup.proxy.seen(Operation::Put), 10);
    let keys = setup.direct.list_all("").await.unwrap();
    assert!(
        keys.iter()
            .all(|e| !e.key.as_str().contains("access-probe")),
        "{keys:?}"
    );

    // Opening reports the rule as present and writes nothing.
    let repository = open(&setup.proxied).await.unwrap();
    let puts = setup.proxy.seen(Operation::Put);
    let access = repository.check_access(false).await.unwrap();
    assert!(matches!(access.lifecycle, LifecycleStatus::Present { .. }));
    assert!(access.warning_messages().is_empty());
    assert_eq!(setup.proxy.seen(Operation::Put), puts);
    assert_eq!(setup.proxy.seen(Operation::PutLifecycle), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_keeps_the_users_own_lifecycle_rules() {
    let Some(setup) = setup(&[]).await else {
        return;
    };
    // The user's configuration: an expiration rule and an abort rule elsewhere.
    let users = "<LifecycleConfiguration>\
        <Rule><ID>expire-logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>\
        <Expiration><Days>30</Days></Expiration></Rule>\
        <Rule><ID>abort-tmp</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status>\
        <AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>\
        </LifecycleConfiguration>";
    let (status, body) = setup
        .moto
        .request("PUT", &format!("/{}?lifecycle", setup.bucket), users)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    let report = init(&setup.proxied).await.unwrap();
    assert!(
        matches!(report.lifecycle, LifecycleStatus::Set { .. }),
        "{:?}",
        report.lifecycle
    );
    let (status, body) = setup
        .moto
        .request("GET", &format!("/{}?lifecycle", setup.bucket), "")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    for expected in [
        "<ID>expire-logs</ID>",
        "<Prefix>logs/</Prefix>",
        "<Days>30</Days>",
        "<ID>abort-tmp</ID>",
        "<Prefix>tmp/</Prefix>",
        "<DaysAfterInitiation>2</DaysAfterInitiation>",
        &format!("<ID>{LIFECYCLE_RULE_ID}</ID>"),
        &format!("<Prefix>{PREFIX}</Prefix>"),
        &format!("<DaysAfterInitiation>{ABORT_AFTER_DAYS}</DaysAfterInitiation>"),
    ] {
        assert!(body.contains(expected), "{expected} missing from {body}");
    }
    assert_eq!(body.matches("<Rule>").count(), 3, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_wide_user_rule_is_enough_and_nothing_is_written() {
    let Some(setup) = setup(&[]).await else {
        return;
    };
    let users = "<LifecycleConfiguration>\
        <Rule><ID>abort-everything</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>\
        <AbortIncompleteMultipartUpload><DaysAfterInitiation>3</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>\
        </LifecycleConfiguration>";
    let (status, body) = setup
        .moto
        .request("PUT", &format!("/{}?lifecycle", setup.bucket), users)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let report = init(&setup.proxied).await.unwrap();
    let LifecycleStatus::Present { rule } = &report.lifecycle else {
        panic!("expected the user's rule: {:?}", report.lifecycle);
    };
    assert_eq!(rule.id, "abort-everything");
    assert_eq!(setup.proxy.seen(Operation::PutLifecycle), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_put_lifecycle_configuration_warns_and_succeeds() {
    let Some(setup) = setup(&[(Operation::PutLifecycle, ProxyTrigger::From(1))]).await else {
        return;
    };
    let report = init(&setup.proxied).await.unwrap();
    let LifecycleStatus::Missing { warning } = &report.lifecycle else {
        panic!("expected a missing rule: {:?}", report.lifecycle);
    };
    assert!(
        warning.contains("s3:PutLifecycleConfiguration") && warning.contains("IAM policy"),
        "{warning}"
    );
    assert_eq!(setup.proxy.seen(Operation::PutLifecycle), 1);
    assert!(setup
        .direct
        .abort_incomplete_uploads_rules()
        .await
        .unwrap()
        .is_empty());
    // The repository itself was created.
    open(&setup.proxied).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_without_get_lifecycle_configuration_warns_and_writes_no_rule() {
    let Some(setup) = setup(&[(Operation::GetLifecycle, ProxyTrigger::From(1))]).await else {
        return;
    };
    let report = init(&setup.proxied).await.unwrap();
    let warning = report.lifecycle.warning().expect("a warning");
    assert!(
        warning.contains("s3:GetLifecycleConfiguration"),
        "{warning}"
    );
    assert!(matches!(report.lifecycle, LifecycleStatus::Unknown { .. }));
    // Without reading the configuration, writing it could clobber the user's rules.
    assert_eq!(setup.proxy.seen(Operation::PutLifecycle), 0);
}

/// A repository made without the proxy's faults, then opened through them.
async fn open_is_refused(denied: Operation, permission: &str) {
    let Some(setup) = setup(&[(denied, ProxyTrigger::From(1))]).await else {
        return;
    };
    init(&setup.direct).await.unwrap();
    let error = open(&setup.proxied).await.unwrap_err();
    match &error {
        Error::AccessDenied {
            permission: named, ..
        } => assert_eq!(*named, permission, "{error}"),
        other => panic!("expected AccessDenied for {permission}, got {other:?}"),
    }
    assert!(error.to_string().contains(permission), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_without_get_object_names_s3_get_object() {
    open_is_refused(Operation::Get, "s3:GetObject").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refused_head_and_list_names_s3_list_bucket() {
    let Some(setup) = setup(&[
        (Operation::Head, ProxyTrigger::From(1)),
        (Operation::List, ProxyTrigger::From(1)),
    ])
    .await
    else {
        return;
    };
    init(&setup.direct).await.unwrap();
    let error = open(&setup.proxied).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::AccessDenied {
                permission: "s3:ListBucket",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_a_read_only_check_write_nothing() {
    // Every write refused: opening and a read-only check must not need any.
    let writes = [
        Operation::Put,
        Operation::Delete,
        Operation::CreateMultipart,
        Operation::PutLifecycle,
    ];
    let denied: Vec<_> = writes
        .iter()
        .map(|&operation| (operation, ProxyTrigger::From(1)))
        .collect();
    let Some(setup) = setup(&denied).await else {
        return;
    };
    let (_, report) = Repository::init(
        &location(&setup.direct, PREFIX),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(&clock()),
    )
    .await
    .unwrap();
    assert!(matches!(report.lifecycle, LifecycleStatus::Set { .. }));
    let repository = open(&setup.proxied).await.unwrap();
    let access = repository.check_access(false).await.unwrap();
    assert!(access.passed.contains(&AccessStep::ReadKeyring));
    assert!(matches!(access.lifecycle, LifecycleStatus::Present { .. }));
    for operation in writes {
        assert_eq!(setup.proxy.seen(operation), 0, "{operation}");
    }
    // The full check with a probe is refused at its first write, naming it.
    let error = repository.check_access(true).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::AccessDenied {
                permission: "s3:DeleteObject",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reports_a_missing_lifecycle_rule_as_a_warning() {
    let Some(setup) = setup(&[(Operation::PutLifecycle, ProxyTrigger::From(1))]).await else {
        return;
    };
    init(&setup.proxied).await.unwrap();
    let repository = open(&setup.proxied).await.unwrap();
    let access = repository.check_access(true).await.unwrap();
    let warnings = access.warning_messages();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("AbortIncompleteMultipartUpload"),
        "{}",
        warnings[0]
    );
    // A check never tries to set the rule.
    assert_eq!(setup.proxy.seen(Operation::PutLifecycle), 1);
    assert_bucket_has_no_probe(&setup).await;
}

async fn assert_bucket_has_no_probe(setup: &Setup) {
    let keys = setup.direct.list_all("").await.unwrap();
    assert!(
        keys.iter()
            .all(|e| !e.key.as_str().contains("access-probe")),
        "{keys:?}"
    );
}
