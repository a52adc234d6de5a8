//! Set-up shared by the engine's integration tests.

// Each test file uses a different subset of these helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use zib_crypto::KdfParams;
use zib_engine::backup::{BackupOptions, SnapshotChoice};
use zib_engine::records::SourceKind;
use zib_engine::repository::InitOptions;
use zib_engine::volumes::VolumeShape;
use zib_snapshot_source::{DatasetName, SendFlags};
use zib_storage_backend::s3::{S3Backend, S3Config, StaticCredentials};
use zib_storage_backend::{StorageBackend, StorageClass};
use zib_test_utils::moto::MotoServer;

/// Deep Archive, with a cheap scrypt cost so tests are quick (the format allows any cost
/// within the v1 ceiling).
pub(crate) fn fast_init() -> InitOptions {
    InitOptions {
        archive_class: StorageClass::DeepArchive,
        kdf: KdfParams::new(10, 8, 1).unwrap(),
    }
}

/// Small volumes so a few MiB of data span several of them.
pub(crate) fn small_shape() -> VolumeShape {
    VolumeShape {
        volume_plaintext_len: 1 << 20,
        part_len: 5 << 20,
        parts_in_flight: 2,
    }
}

/// Back up `dataset` into a new snapshot, default policy and prices.
pub(crate) fn backup_options(dataset: DatasetName, source_kind: SourceKind) -> BackupOptions {
    BackupOptions {
        dataset,
        snapshot: SnapshotChoice::Create,
        source_kind,
        send_flags: SendFlags::NONE,
        shape: small_shape(),
        policy: zib_planner::Policy::default(),
        prices: zib_planner::PriceTable::default(),
        state_dir: test_state_dir().to_owned(),
        wait_for_lock: false,
        prune_created_snapshots: true,
    }
}

/// A state directory for this test process (tests that resume pass their own).
pub(crate) fn test_state_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// How to reach `bucket` on the moto server.
pub(crate) fn s3_config(moto: &MotoServer, bucket: &str) -> S3Config {
    s3_config_at(&moto.endpoint(), bucket)
}

/// How to reach `bucket` on a moto server at `endpoint` (or a proxy in front of it).
pub(crate) fn s3_config_at(endpoint: &str, bucket: &str) -> S3Config {
    let mut config = S3Config::new(bucket);
    config.region = Some("us-east-1".to_owned());
    config.endpoint_url = Some(endpoint.to_owned());
    config.credentials = Some(StaticCredentials {
        access_key_id: "test".to_owned(),
        secret_access_key: "test".to_owned(),
    });
    config
}

/// A fresh bucket on `moto` and an S3 backend for it.
pub(crate) async fn s3_on_moto(moto: &MotoServer) -> (String, Arc<dyn StorageBackend>) {
    let bucket = moto.create_bucket().await;
    let backend = Arc::new(S3Backend::connect(&s3_config(moto, &bucket)).await.unwrap());
    (bucket, backend)
}

/// The backup an outcome committed; a test expecting one fails when it was up to date.
pub(crate) fn committed(
    outcome: zib_engine::backup::BackupOutcome,
) -> zib_engine::backup::CommittedBackup {
    match outcome {
        zib_engine::backup::BackupOutcome::Committed(committed) => *committed,
        zib_engine::backup::BackupOutcome::UpToDate { decision } => {
            panic!("expected a backup, got up to date: {}", decision.reason)
        }
    }
}

/// A new repository in a temporary local directory, on a fake clock.
pub(crate) struct LocalRepository {
    /// Keeps the directory alive for the test.
    pub(crate) dir: tempfile::TempDir,
    pub(crate) clock: zib_engine::clock::FakeClock,
    pub(crate) repository: Arc<zib_engine::repository::Repository>,
}

/// Initialises a repository (Deep Archive, cheap scrypt) in a fresh temporary directory.
pub(crate) async fn local_dir_repository(passphrase: &str) -> LocalRepository {
    let dir = tempfile::tempdir().unwrap();
    let clock = zib_engine::clock::FakeClock::new(std::time::SystemTime::now());
    let backend = Arc::new(
        zib_storage_backend::local_dir::LocalDirBackend::open(dir.path(), Arc::new(clock.clone()))
            .unwrap(),
    );
    let (repository, _) = zib_engine::repository::Repository::init(
        backend,
        "",
        &zib_crypto::Passphrase::new(passphrase.into()),
        &fast_init(),
        &clock,
    )
    .await
    .unwrap();
    LocalRepository {
        dir,
        clock,
        repository: Arc::new(repository),
    }
}
