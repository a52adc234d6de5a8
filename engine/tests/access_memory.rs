//! The access check and the lifecycle rule on the in-memory and local-directory
//! backends, with refusals injected by the fault decorator: every step's permission,
//! nothing left behind, the lifecycle rule's outcomes, and clean-up of a stale probe.

// Helpers outside #[test] functions panic on failure too: that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use zib_engine::storage::faults::{Fault, FaultInjecting, FaultRule, Trigger};
use zib_engine::storage::local_dir::LocalDirBackend;
use zib_engine::storage::memory::{MemoryBackend, MemoryConfig};
use zib_engine::storage::{
    AbortIncompleteUploadsRule, ObjectKey, Operation, PutPrecondition, StorageBackend,
    StorageBackendExt, StorageClass, WriteOptions,
};
use zib_engine::{
    AccessStep, CleanupOptions, Error, FakeClock, InitReport, LifecycleStatus, Passphrase,
    Repository, ABORT_AFTER_DAYS, LIFECYCLE_RULE_ID,
};

use common::{fast_init, host, location};

const PREFIX: &str = "home/";

fn clock() -> Arc<FakeClock> {
    Arc::new(FakeClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ))
}

fn memory(clock: &Arc<FakeClock>) -> Arc<MemoryBackend> {
    Arc::new(MemoryBackend::new(MemoryConfig::default(), clock.clone()))
}

fn refusing(
    inner: Arc<MemoryBackend>,
    operation: Operation,
) -> Arc<FaultInjecting<Arc<MemoryBackend>>> {
    Arc::new(FaultInjecting::new(
        inner,
        vec![FaultRule {
            operation: Some(operation),
            trigger: Trigger::From(1),
            fault: Fault::PermissionDenied,
        }],
        1,
    ))
}

async fn init(
    backend: Arc<dyn StorageBackend>,
    clock: &FakeClock,
) -> zib_engine::Result<InitReport> {
    init_repository(backend, clock)
        .await
        .map(|(_, report)| report)
}

async fn init_repository(
    backend: Arc<dyn StorageBackend>,
    clock: &FakeClock,
) -> zib_engine::Result<(Repository, InitReport)> {
    Repository::init(
        &location(&backend, PREFIX),
        &Passphrase::new("passphrase".into()),
        &fast_init(),
        host(clock),
    )
    .await
}

#[tokio::test]
async fn each_refused_operation_names_its_permission_and_leaves_nothing() {
    let cases = [
        (Operation::List, AccessStep::ListObjects, "s3:ListBucket"),
        (Operation::Head, AccessStep::ReadKeyring, "s3:GetObject"),
        (
            Operation::Delete,
            AccessStep::DeleteProbeBeforeWriting,
            "s3:DeleteObject",
        ),
        (Operation::Put, AccessStep::WriteProbe, "s3:PutObject"),
        (Operation::Get, AccessStep::ReadProbe, "s3:GetObject"),
        (
            Operation::ListMultipartUploads,
            AccessStep::ListUploads,
            "s3:ListBucketMultipartUploads",
        ),
        (
            Operation::AbortMultipart,
            AccessStep::AbortUpload,
            "s3:AbortMultipartUpload",
        ),
    ];
    for (operation, step, permission) in cases {
        let clock = clock();
        let store = memory(&clock);
        let error = init(refusing(store.clone(), operation), &clock)
            .await
            .unwrap_err();
        match &error {
            Error::AccessDenied {
                step: refused,
                permission: named,
                ..
            } => assert_eq!(
                (*refused, *named),
                (step, permission),
                "{operation}: {error}"
            ),
            other => panic!("{operation}: expected AccessDenied, got {other:?}"),
        }
        assert!(error.to_string().contains(permission), "{error}");
        assert_eq!(store.object_count(), 0, "{operation}: something was left");
        assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
        assert!(store
            .abort_incomplete_uploads_rules()
            .await
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn a_probe_that_cannot_be_deleted_is_named_and_the_only_leftover() {
    // The delete before writing is allowed, the one after is not (a policy that changed
    // in between): the error names the permission and the probe is all that remains,
    // for clean-up to remove later.
    let clock = clock();
    let store = memory(&clock);
    let backend = Arc::new(FaultInjecting::new(
        store.clone(),
        vec![FaultRule {
            operation: Some(Operation::Delete),
            trigger: Trigger::Nth(2),
            fault: Fault::PermissionDenied,
        }],
        1,
    ));
    let error = init(backend, &clock).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::AccessDenied {
                step: AccessStep::DeleteProbe,
                permission: "s3:DeleteObject",
                ..
            }
        ),
        "{error:?}"
    );
    let keys = store.list_all("").await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0]
        .key
        .as_str()
        .starts_with(&format!("{PREFIX}access-probe/")));
}

#[tokio::test]
async fn refused_restore_and_lifecycle_are_warnings() {
    for operation in [
        Operation::RequestRestore,
        Operation::GetLifecycle,
        Operation::PutLifecycle,
    ] {
        let clock = clock();
        let store = memory(&clock);
        let report = init(refusing(store.clone(), operation), &clock)
            .await
            .unwrap();
        let warnings = report.access.warning_messages();
        let permission = match operation {
            Operation::RequestRestore => "s3:RestoreObject",
            Operation::GetLifecycle => "s3:GetLifecycleConfiguration",
            _ => "s3:PutLifecycleConfiguration",
        };
        assert_eq!(warnings.len(), 1, "{operation}: {warnings:?}");
        assert!(warnings[0].contains(permission), "{}", warnings[0]);
        // The repository was created, the probe is gone.
        let keys: Vec<String> = store
            .list_all("")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key.to_string())
            .collect();
        assert!(keys.contains(&format!("{PREFIX}keyring")), "{keys:?}");
        assert!(keys.iter().all(|k| !k.contains("access-probe")), "{keys:?}");
    }
}

/// An S3-compatible server without the archive and housekeeping actions (s3s-fs, for
/// one): 501 for ListMultipartUploads, RestoreObject, the lifecycle and the bucket's
/// protection, and 400 for an abort of an upload it does not know. A repository is made
/// there with a warning per missing action (the lifecycle's included: abandoned uploads
/// are not aborted there), and its catalog reads.
#[tokio::test]
async fn a_server_without_archive_and_housekeeping_actions_gets_warnings_not_a_refusal() {
    let clock = clock();
    let store = memory(&clock);
    let rule = |operation, fault| FaultRule {
        operation: Some(operation),
        trigger: Trigger::From(1),
        fault,
    };
    let backend = Arc::new(FaultInjecting::new(
        store.clone(),
        vec![
            rule(Operation::ListMultipartUploads, Fault::NotImplemented),
            rule(Operation::RequestRestore, Fault::NotImplemented),
            rule(Operation::GetLifecycle, Fault::NotImplemented),
            rule(Operation::PutLifecycle, Fault::NotImplemented),
            rule(Operation::GetBucketProtection, Fault::NotImplemented),
            rule(Operation::AbortMultipart, Fault::InvalidInput),
        ],
        1,
    ));
    let (repository, report) = init_repository(backend.clone(), &clock).await.unwrap();
    let warnings = report.access.warning_messages();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot request a restore") && warnings[0].contains("archive"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("cannot list incomplete multipart uploads"),
        "{}",
        warnings[1]
    );
    assert!(
        warnings[2].contains("no bucket lifecycle rules"),
        "{}",
        warnings[2]
    );
    assert!(
        matches!(report.access.lifecycle, LifecycleStatus::Unknown { .. }),
        "{:?}",
        report.access.lifecycle
    );
    assert!(!report.access.passed.contains(&AccessStep::ReadLifecycle));
    assert!(report.access.passed.contains(&AccessStep::AbortUpload));
    let catalog = repository.catalog().await.unwrap();
    assert!(catalog.leftovers.incomplete_uploads.is_empty());
    // Every missing action was really asked for.
    assert!(
        backend.injected().iter().take(3).all(|&n| n > 0),
        "{:?}",
        backend.injected()
    );
}

#[tokio::test]
async fn the_rule_is_set_once_and_a_wrong_one_of_zibs_is_corrected() {
    let clock = clock();
    let store = memory(&clock);
    let users = AbortIncompleteUploadsRule {
        id: "users-own".into(),
        prefix: "elsewhere/".into(),
        days_after_initiation: 1,
        enabled: true,
    };
    store
        .put_abort_incomplete_uploads_rule(&users)
        .await
        .unwrap();
    // zib's rule from some earlier, edited configuration: disabled.
    let stale = AbortIncompleteUploadsRule {
        id: LIFECYCLE_RULE_ID.into(),
        prefix: PREFIX.into(),
        days_after_initiation: ABORT_AFTER_DAYS,
        enabled: false,
    };
    store
        .put_abort_incomplete_uploads_rule(&stale)
        .await
        .unwrap();
    // Init finds zib's rule disabled and sets it right, keeping the user's.
    let (repository, report) = init_repository(store.clone(), &clock).await.unwrap();
    let LifecycleStatus::Set { rule } = report.lifecycle else {
        panic!("{:?}", report.lifecycle);
    };
    assert!(rule.enabled);
    assert_eq!(
        store.abort_incomplete_uploads_rules().await.unwrap(),
        [users, rule.clone()]
    );
    // Once present, a check says so (and writes nothing).
    assert_eq!(
        repository.check_access(false).await.unwrap().lifecycle,
        LifecycleStatus::Present { rule }
    );
}

#[tokio::test]
async fn a_local_directory_needs_no_lifecycle_rule() {
    let clock = clock();
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn StorageBackend> =
        Arc::new(LocalDirBackend::open(dir.path(), clock.clone()).unwrap());
    let report = init(backend.clone(), &clock).await.unwrap();
    let LifecycleStatus::NotApplicable { reason } = &report.lifecycle else {
        panic!("{:?}", report.lifecycle);
    };
    assert!(reason.contains("local directories"), "{reason}");
    assert!(report.access.warning_messages().is_empty());
    assert!(report.access.passed.contains(&AccessStep::AbortUpload));
    let keys = backend.list_all("").await.unwrap();
    assert!(
        keys.iter()
            .all(|e| !e.key.as_str().contains("access-probe")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_read_only_check_of_a_missing_repository_says_so() {
    let clock = clock();
    let store = memory(&clock);
    let result = Repository::open(
        &location(&(store.clone() as Arc<dyn StorageBackend>), PREFIX),
        &Passphrase::new("passphrase".into()),
        host(&clock),
    )
    .await;
    assert!(
        matches!(result, Err(Error::NotARepository { .. })),
        "{result:?}"
    );
    assert_eq!(store.object_count(), 0);
}

#[tokio::test]
async fn clean_up_removes_a_probe_left_by_an_interrupted_check() {
    let clock = clock();
    let store = memory(&clock);
    let (repository, _) = Repository::init(
        &location(&(store.clone() as Arc<dyn StorageBackend>), PREFIX),
        &Passphrase::new("passphrase".into()),
        &fast_init(),
        host(&clock),
    )
    .await
    .unwrap();
    // A probe as docs/FORMAT.md spells its key: 16 hex digits.
    let probe = ObjectKey::new(format!("{PREFIX}access-probe/000000000000002a")).unwrap();
    store
        .put(
            &probe,
            Bytes::new(),
            &WriteOptions::new(StorageClass::Standard),
            &PutPrecondition::IfAbsent,
        )
        .await
        .unwrap();
    // The catalog does not mistake it for anything.
    let catalog = repository.catalog().await.unwrap();
    assert!(catalog.datasets.is_empty());
    assert!(catalog.leftovers.orphan_volumes.is_empty());

    let options = CleanupOptions::default();
    let young = repository.clean_up(&options).await.unwrap();
    assert!(young.deleted_probes.is_empty());
    assert_eq!(young.kept_recent, 1);
    assert!(store.exists(&probe).await.unwrap());

    clock.advance(options.min_age);
    let old = repository.clean_up(&options).await.unwrap();
    assert_eq!(old.deleted_probes, std::slice::from_ref(&probe));
    assert!(!store.exists(&probe).await.unwrap());
}
