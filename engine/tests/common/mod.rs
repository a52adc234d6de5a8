//! Set-up shared by the engine's integration tests (public API only).

// Each test file uses a different subset of these helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use zib_engine::crypto::KdfParams;
use zib_engine::storage::s3::{S3Backend, S3Config, StaticCredentials};
use zib_engine::storage::{StorageBackend, StorageClass};
use zib_engine::{
    BackupOptions, BackupOutcome, CommittedBackup, FakeClock, Host, InitOptions, Location,
    Passphrase, Repository, VolumeShape,
};
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

/// Back up into a new snapshot in small volumes, default policy and prices.
pub(crate) fn backup_options() -> BackupOptions {
    BackupOptions {
        shape: small_shape(),
        ..BackupOptions::default()
    }
}

/// A state directory for this test process (tests that resume use their own).
pub(crate) fn test_state_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// This test process's host on `clock`.
pub(crate) fn host(clock: &FakeClock) -> Host {
    Host::new(test_state_dir()).with_clock(Arc::new(clock.clone()))
}

/// A host keeping its state in `state_dir`, on `clock`.
pub(crate) fn host_at(state_dir: &Path, clock: &FakeClock) -> Host {
    Host::new(state_dir).with_clock(Arc::new(clock.clone()))
}

/// `backend` under `prefix`.
pub(crate) fn location(backend: &Arc<dyn StorageBackend>, prefix: &str) -> Location {
    Location::new(backend.clone(), prefix).unwrap()
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
pub(crate) fn committed(outcome: BackupOutcome) -> CommittedBackup {
    match outcome {
        BackupOutcome::Committed(committed) => *committed,
        BackupOutcome::UpToDate { decision } => {
            panic!("expected a backup, got up to date: {}", decision.reason)
        }
    }
}

/// A new repository in a temporary local directory, on a fake clock.
pub(crate) struct LocalRepository {
    /// Keeps the directory alive for the test.
    pub(crate) dir: tempfile::TempDir,
    pub(crate) clock: FakeClock,
    pub(crate) repository: Arc<Repository>,
}

/// Initialises a repository (Deep Archive, cheap scrypt) in a fresh temporary directory.
pub(crate) async fn local_dir_repository(passphrase: &str) -> LocalRepository {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(std::time::SystemTime::now());
    let backend: Arc<dyn StorageBackend> = Arc::new(
        zib_engine::storage::local_dir::LocalDirBackend::open(dir.path(), Arc::new(clock.clone()))
            .unwrap(),
    );
    let (repository, _) = Repository::init(
        &location(&backend, ""),
        &Passphrase::new(passphrase.into()),
        &fast_init(),
        host(&clock),
    )
    .await
    .unwrap();
    LocalRepository {
        dir,
        clock,
        repository: Arc::new(repository),
    }
}
