//! The keyring from elsewhere, on the in-memory backend (Deep Archive semantics on a
//! fake clock): a repository whose live keyring is deleted or damaged opens from the
//! user's offline copy or from its archived copy (thawed first), restores its backups,
//! and gets its keyring back; a stranger's keyring is refused.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use zib_engine::storage::memory::{MemoryBackend, MemoryConfig};
use zib_engine::storage::{
    ByteRange, ObjectKey, PutPrecondition, StorageBackend, StorageBackendExt, StorageClass,
    WriteOptions,
};
use zib_engine::{
    ArchivedKeyring, BackupOptions, DatasetName, Error, FakeClock, Host, KeyringRepair, Location,
    NewRestore, NoProgress, Passphrase, Repository, RestoreState,
};
use zib_test_utils::data::{hash_tree, TestRng};
use zib_test_utils::memory_source::MemorySource;

use common::{committed, fast_init};

const PASSPHRASE: &str = "the family's passphrase";

struct Setup {
    clock: FakeClock,
    memory: Arc<MemoryBackend>,
    location: Location,
    state: tempfile::TempDir,
    source: MemorySource,
    dataset: DatasetName,
    /// The offline copy `init` handed out.
    offline: Vec<u8>,
}

/// A Deep Archive repository in the memory backend under `family/`, with one backup.
async fn setup() -> Setup {
    let clock = FakeClock::new(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let memory = Arc::new(MemoryBackend::new(
        MemoryConfig::default(),
        Arc::new(clock.clone()),
    ));
    let location = Location::new(memory.clone(), "family").unwrap();
    let state = tempfile::tempdir().unwrap();
    let (repository, report) = Repository::init(
        &location,
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(&state, &clock),
    )
    .await
    .unwrap();
    let source = MemorySource::new().with_clock(Arc::new(clock.clone()));
    let dataset = DatasetName::zfs("tank/photos").unwrap();
    source.create_dataset(&dataset);
    source.write_file(&dataset, "photo.jpg", &TestRng::new(3).bytes(300_000));
    committed(
        repository
            .backup(&source, &dataset, &BackupOptions::default(), &NoProgress)
            .await
            .unwrap(),
    );
    Setup {
        clock,
        memory,
        location,
        state,
        source,
        dataset,
        offline: report.keyring,
    }
}

fn host(state: &tempfile::TempDir, clock: &FakeClock) -> Host {
    Host::new(state.path()).with_clock(Arc::new(clock.clone()))
}

fn passphrase() -> Passphrase {
    Passphrase::new(PASSPHRASE.into())
}

fn live_keyring() -> ObjectKey {
    ObjectKey::new("family/keyring").unwrap()
}

impl Setup {
    fn host(&self) -> Host {
        host(&self.state, &self.clock)
    }

    async fn open(&self) -> zib_engine::Result<Repository> {
        Repository::open(&self.location, &passphrase(), self.host()).await
    }

    async fn open_with(&self, keyring: &[u8]) -> zib_engine::Result<Repository> {
        Repository::open_with_keyring(&self.location, &passphrase(), keyring, self.host()).await
    }

    /// Restores the newest backup into `tank/restored` through the restore job (the
    /// volumes are in Deep Archive: requested, thawed two days, downloaded, received)
    /// and compares every file.
    async fn restore_works(&self, repository: &Repository) {
        let staging = tempfile::tempdir().unwrap();
        let target = DatasetName::zfs("tank/restored").unwrap();
        let (job, _) = repository
            .create_restore(
                &NewRestore::new("tank/photos", target.clone(), staging.path()),
                &self.source,
            )
            .await
            .unwrap();
        repository
            .advance_restore(job.id, &self.source, &NoProgress)
            .await
            .unwrap();
        self.clock.advance(Duration::from_secs(49 * 3600));
        let status = repository
            .advance_restore(job.id, &self.source, &NoProgress)
            .await
            .unwrap();
        assert_eq!(status.state, RestoreState::Done, "{status:?}");
        let files =
            |dataset: &DatasetName| hash_tree(&self.source.mountpoint(dataset).unwrap()).unwrap();
        assert_eq!(files(&target), files(&self.dataset));
    }
}

#[tokio::test]
async fn a_deleted_keyring_opens_from_the_offline_copy_and_is_put_back() {
    let setup = setup().await;
    setup.memory.delete(&live_keyring()).await.unwrap();

    // Not "no repository here": the backups are there, the keyring is what is missing.
    let error = setup.open().await.expect_err("the keyring is gone");
    assert!(matches!(error, Error::KeyringMissing { .. }), "{error}");
    assert!(error.to_string().contains("offline copy"), "{error}");

    let repository = setup.open_with(&setup.offline).await.unwrap();
    setup.restore_works(&repository).await;

    assert_eq!(
        repository.repair_keyring(&setup.offline).await.unwrap(),
        KeyringRepair::Written
    );
    // The passphrase alone opens it again, and a second repair changes nothing.
    let reopened = setup.open().await.unwrap();
    assert_eq!(
        reopened.repair_keyring(&setup.offline).await.unwrap(),
        KeyringRepair::Intact
    );
}

#[tokio::test]
async fn a_damaged_keyring_is_named_and_replaced_from_the_offline_copy() {
    let setup = setup().await;
    let meta = setup.memory.head(&live_keyring()).await.unwrap();
    let mut damaged = setup
        .memory
        .get_bytes(&live_keyring(), ByteRange::full())
        .await
        .unwrap()
        .to_vec();
    damaged[100] ^= 0x01;
    setup
        .memory
        .put(
            &live_keyring(),
            Bytes::from(damaged),
            &WriteOptions {
                storage_class: StorageClass::Standard,
                metadata: meta.metadata.clone(),
            },
            &PutPrecondition::None,
        )
        .await
        .unwrap();

    let error = setup.open().await.expect_err("the keyring is damaged");
    assert!(matches!(error, Error::KeyringDamaged { .. }), "{error}");

    let repository = setup.open_with(&setup.offline).await.unwrap();
    assert_eq!(
        repository.repair_keyring(&setup.offline).await.unwrap(),
        KeyringRepair::Replaced
    );
    let reopened = setup.open().await.unwrap();
    setup.restore_works(&reopened).await;
}

#[tokio::test]
async fn the_archived_copy_is_thawed_then_opens_the_repository() {
    let setup = setup().await;
    setup.memory.delete(&live_keyring()).await.unwrap();

    let first = Repository::fetch_archived_keyring(&setup.location, setup.host())
        .await
        .unwrap();
    let ArchivedKeyring::Thawing { key, requested_now } = first else {
        panic!("an archived copy is not readable before it thaws: {first:?}");
    };
    assert!(requested_now);
    assert!(key.starts_with("family/keyring-archive/"), "{key}");
    // Asked again while it thaws: no second request, still thawing.
    let second = Repository::fetch_archived_keyring(&setup.location, setup.host())
        .await
        .unwrap();
    assert!(
        matches!(
            second,
            ArchivedKeyring::Thawing {
                requested_now: false,
                ..
            }
        ),
        "{second:?}"
    );

    // The Standard tier thaws within 12 hours.
    setup.clock.advance(Duration::from_secs(13 * 3600));
    let ready = Repository::fetch_archived_keyring(&setup.location, setup.host())
        .await
        .unwrap();
    let ArchivedKeyring::Ready { keyring, .. } = ready else {
        panic!("thawed after 13 hours: {ready:?}");
    };
    assert_eq!(
        keyring, setup.offline,
        "the archived copy is the keyring init wrote"
    );
    let repository = setup.open_with(&keyring).await.unwrap();
    setup.restore_works(&repository).await;
}

#[tokio::test]
async fn after_a_passphrase_change_the_newest_archived_copy_is_fetched() {
    let setup = setup().await;
    let repository = setup.open().await.unwrap();
    let new_passphrase = Passphrase::new("a longer, newer family passphrase".into());
    setup.clock.advance(Duration::from_secs(3600));
    let change = repository
        .change_passphrase(
            &passphrase(),
            &new_passphrase,
            zib_engine::crypto::KdfParams::new(10, 8, 1).unwrap(),
        )
        .await
        .unwrap();
    setup.memory.delete(&live_keyring()).await.unwrap();

    assert!(matches!(
        Repository::fetch_archived_keyring(&setup.location, setup.host())
            .await
            .unwrap(),
        ArchivedKeyring::Thawing { .. }
    ));
    setup.clock.advance(Duration::from_secs(13 * 3600));
    let ArchivedKeyring::Ready { key, keyring } =
        Repository::fetch_archived_keyring(&setup.location, setup.host())
            .await
            .unwrap()
    else {
        panic!("thawed after 13 hours");
    };
    assert_eq!(key, change.keyring_archive_key);
    assert_eq!(keyring, change.keyring);
    Repository::open_with_keyring(&setup.location, &new_passphrase, &keyring, setup.host())
        .await
        .unwrap();
    // The old passphrase does not open the new copy.
    let error = setup.open_with(&keyring).await.expect_err("old passphrase");
    assert!(
        matches!(
            error,
            Error::Crypto(zib_engine::crypto::Error::WrongPassphrase)
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_strangers_keyring_is_refused_with_or_without_the_live_keyring() {
    let setup = setup().await;
    // Another repository, same passphrase: its keyring opens with it, but is not ours.
    let other = Location::new(setup.memory.clone(), "neighbours").unwrap();
    let (_, report) = Repository::init(&other, &passphrase(), &fast_init(), setup.host())
        .await
        .unwrap();

    let error = setup.open_with(&report.keyring).await.expect_err("foreign");
    assert!(matches!(error, Error::ForeignKeyring { .. }), "{error}");

    // Without the live keyring, a backup's sealed metadata tells.
    setup.memory.delete(&live_keyring()).await.unwrap();
    let error = setup.open_with(&report.keyring).await.expect_err("foreign");
    assert!(matches!(error, Error::ForeignKeyring { .. }), "{error}");

    // And a repaired repository never takes a stranger's keyring.
    let repository = setup.open_with(&setup.offline).await.unwrap();
    let error = repository
        .repair_keyring(&report.keyring)
        .await
        .expect_err("foreign");
    assert!(matches!(error, Error::ForeignKeyring { .. }), "{error}");
    assert!(
        setup.memory.head(&live_keyring()).await.is_err(),
        "nothing was written"
    );
}

#[tokio::test]
async fn an_empty_location_is_still_not_a_repository() {
    let setup = setup().await;
    let empty = Location::new(setup.memory.clone(), "nobody").unwrap();
    let error = Repository::open(&empty, &passphrase(), setup.host())
        .await
        .expect_err("nothing there");
    assert!(matches!(error, Error::NotARepository { .. }), "{error}");
    let error = Repository::fetch_archived_keyring(&empty, setup.host())
        .await
        .expect_err("nothing there");
    assert!(matches!(error, Error::NoArchivedKeyring { .. }), "{error}");
}
