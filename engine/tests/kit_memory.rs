//! The decoder kit on the in-memory backend: a repository made before the kit existed
//! (no `kit/`, the old README) gets it at its next backup — the project's documents byte
//! for byte, plaintext and archived copies, README naming them — verify stops reporting
//! it missing and clean-up leaves it alone; a README that names a newer zib's kit is left
//! alone; the offline copy holds the keyring, the kit and a recovery sheet.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use zib_engine::storage::memory::{MemoryBackend, MemoryConfig};
use zib_engine::storage::{
    ByteRange, ObjectKey, PutPrecondition, StorageBackend, StorageBackendExt, StorageClass,
    WriteOptions,
};
use zib_engine::{
    BackupOptions, DatasetName, FakeClock, Host, Location, NoProgress, Passphrase, ProblemKind,
    Repository, VerifyOptions,
};
use zib_test_utils::memory_source::MemorySource;

use common::{committed, fast_init};

const PREFIX: &str = "family/";

/// The kit's files as the documents in the source tree: (name, bytes, relative key).
fn documents() -> Vec<(&'static str, Vec<u8>, String)> {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    [
        ("RESTORE.txt", "reference/RESTORE.txt"),
        ("FORMAT.md", "FORMAT.md"),
        ("zib_reference.py", "reference/zib_reference.py"),
    ]
    .into_iter()
    .map(|(name, path)| {
        let bytes = std::fs::read(docs.join(path)).unwrap();
        let sha = ring_sha256(&bytes);
        (name, bytes, format!("kit/v1/{}/{name}", &sha[..16]))
    })
    .collect()
}

fn ring_sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

struct Setup {
    memory: Arc<MemoryBackend>,
    clock: FakeClock,
    _state: tempfile::TempDir,
    repository: Repository,
    source: MemorySource,
    dataset: DatasetName,
}

impl Setup {
    /// A committed backup of the dataset, with default options.
    async fn backup(&self) {
        committed(
            self.repository
                .backup(
                    &self.source,
                    &self.dataset,
                    &BackupOptions::default(),
                    &NoProgress,
                )
                .await
                .unwrap(),
        );
    }
}

async fn old_repository() -> Setup {
    let clock = FakeClock::new(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let memory = Arc::new(MemoryBackend::new(
        MemoryConfig::default(),
        Arc::new(clock.clone()),
    ));
    let state = tempfile::tempdir().unwrap();
    let backend: Arc<dyn StorageBackend> = memory.clone();
    let location = Location::new(backend, PREFIX).unwrap();
    let host = Host::new(state.path()).with_clock(Arc::new(clock.clone()));
    let (repository, _) =
        Repository::init(&location, &Passphrase::new("pw".into()), &fast_init(), host)
            .await
            .unwrap();
    // Make it a repository of a zib before the kit: no kit objects, the old README.
    for entry in memory.list_all(PREFIX).await.unwrap() {
        if entry.key.as_str().contains("/kit") {
            memory.delete(&entry.key).await.unwrap();
        }
    }
    let readme = ObjectKey::new(format!("{PREFIX}README.txt")).unwrap();
    let meta = memory.head(&readme).await.unwrap();
    memory
        .put(
            &readme,
            "This is a zib backup repository (format version 1).\n... docs/FORMAT.md of the zib source ...\n"
                .into(),
            &WriteOptions {
                storage_class: StorageClass::Standard,
                metadata: meta.metadata,
            },
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    let source = MemorySource::new().with_clock(Arc::new(clock.clone()));
    let dataset = DatasetName::zfs("tank/photos").unwrap();
    source.create_dataset(&dataset);
    source.write_file(&dataset, "IMG_0001.jpg", b"a photo");
    Setup {
        memory,
        clock,
        _state: state,
        repository,
        source,
        dataset,
    }
}

async fn kit_keys(memory: &MemoryBackend) -> Vec<String> {
    let mut keys: Vec<String> = memory
        .list_all(PREFIX)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.key.as_str().to_owned())
        .filter(|key| key.contains("/kit"))
        .collect();
    keys.sort();
    keys
}

async fn readme(memory: &MemoryBackend) -> String {
    let key = ObjectKey::new(format!("{PREFIX}README.txt")).unwrap();
    String::from_utf8(
        memory
            .get_bytes(&key, ByteRange::full())
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

fn kit_missing(report: &zib_engine::VerifyReport) -> bool {
    report
        .problems
        .iter()
        .any(|problem| problem.kind == ProblemKind::KitMissing)
}

#[tokio::test]
async fn an_old_repository_gets_the_kit_at_its_next_backup() {
    let setup = old_repository().await;
    assert!(kit_keys(&setup.memory).await.is_empty());
    let before = setup
        .repository
        .verify(&VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert!(kit_missing(&before), "{:?}", before.problems);

    setup.backup().await;

    let docs = documents();
    let mut expected: Vec<String> = docs
        .iter()
        .flat_map(|(_, _, key)| {
            [
                format!("{PREFIX}{key}"),
                format!("{PREFIX}{}", key.replacen("kit/", "kit-archive/", 1)),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(kit_keys(&setup.memory).await, expected);
    let text = readme(&setup.memory).await;
    for (name, bytes, key) in &docs {
        assert!(
            text.contains(key.as_str()),
            "README does not name {key}: {text}"
        );
        let object = ObjectKey::new(format!("{PREFIX}{key}")).unwrap();
        let meta = setup.memory.head(&object).await.unwrap();
        assert_eq!(meta.storage_class, StorageClass::Standard, "{name}");
        assert_eq!(meta.metadata["zib-kind"], "kit");
        assert_eq!(
            setup
                .memory
                .get_bytes(&object, ByteRange::full())
                .await
                .unwrap(),
            bytes.as_slice(),
            "{name}"
        );
        let archived = ObjectKey::new(format!(
            "{PREFIX}{}",
            key.replacen("kit/", "kit-archive/", 1)
        ))
        .unwrap();
        assert_eq!(
            setup.memory.head(&archived).await.unwrap().storage_class,
            StorageClass::DeepArchive
        );
    }
    let after = setup
        .repository
        .verify(&VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert!(!kit_missing(&after), "{:?}", after.problems);
    assert!(
        after
            .problems
            .iter()
            .all(|problem| !matches!(problem.kind, ProblemKind::UnknownObject { .. })),
        "kit objects taken for unknown ones: {:?}",
        after.problems
    );

    // Clean-up, however eager, leaves the kit alone.
    setup
        .repository
        .clean_up(&zib_engine::CleanupOptions {
            min_age: Duration::ZERO,
            dry_run: false,
        })
        .await
        .unwrap();
    assert_eq!(kit_keys(&setup.memory).await, expected);

    // The next backup finds the kit in place and writes nothing more.
    let readme_before = setup
        .memory
        .head(&ObjectKey::new(format!("{PREFIX}README.txt")).unwrap())
        .await
        .unwrap();
    setup.clock.advance(Duration::from_secs(3600));
    setup
        .source
        .write_file(&setup.dataset, "IMG_0002.jpg", b"another photo");
    setup.backup().await;
    let readme_after = setup
        .memory
        .head(&ObjectKey::new(format!("{PREFIX}README.txt")).unwrap())
        .await
        .unwrap();
    assert_eq!(readme_before.last_modified, readme_after.last_modified);
    assert_eq!(kit_keys(&setup.memory).await, expected);
}

#[tokio::test]
async fn a_readme_naming_a_newer_zibs_kit_is_left_alone() {
    let setup = old_repository().await;
    let readme_key = ObjectKey::new(format!("{PREFIX}README.txt")).unwrap();
    let meta = setup.memory.head(&readme_key).await.unwrap();
    let newer = "This is a zib backup repository (format version 1).\n\
                 kit/v1/0123456789abcdef/FORMAT.md\n\
                 Decoder kit written by zib 999.0.0.\n";
    setup
        .memory
        .put(
            &readme_key,
            newer.into(),
            &WriteOptions {
                storage_class: StorageClass::Standard,
                metadata: meta.metadata,
            },
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    setup.backup().await;
    assert_eq!(readme(&setup.memory).await, newer);
    assert!(kit_keys(&setup.memory).await.is_empty());
}

#[tokio::test]
async fn the_offline_copy_holds_the_keyring_the_kit_and_a_recovery_sheet() {
    use std::os::unix::fs::PermissionsExt as _;
    use zib_engine::{Error, OfflineCopyOptions};

    let setup = old_repository().await;
    let usb = tempfile::tempdir().unwrap();
    let dir = usb.path().join("zib copy");
    let copy = setup
        .repository
        .export_offline_copy(
            &dir,
            &OfflineCopyOptions {
                url: "s3://family-photos/family/".into(),
                region: Some("eu-central-1".into()),
                extra_instructions: vec!["Call Anna first.".into()],
                ..OfflineCopyOptions::default()
            },
        )
        .await
        .unwrap();
    let id = setup.repository.id().to_string();
    assert_eq!(copy.keyring_file, dir.join(format!("zib-keyring-{id}.bin")));
    assert_eq!(
        std::fs::read(&copy.keyring_file).unwrap(),
        setup.repository.keyring_bytes().await.unwrap()
    );
    assert_eq!(
        std::fs::metadata(&copy.keyring_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    for (name, bytes, _) in documents() {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), bytes, "{name}");
    }
    let sheet = std::fs::read_to_string(&copy.sheet_file).unwrap();
    for said in [
        id.as_str(),
        "Bucket:          family-photos",
        "Prefix:          family/",
        "Region:          eu-central-1",
        "Call Anna first.",
        "python3 zib_reference.py catalog s3://family-photos/family/",
    ] {
        assert!(
            sheet.contains(said),
            "the sheet does not say {said:?}:\n{sheet}"
        );
    }
    // One printed page.
    assert!(sheet.lines().count() <= 60, "{sheet}");
    let mut listed: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    listed.sort();
    let mut files = copy.files.clone();
    files.sort();
    assert_eq!(listed, files);
    assert_eq!(files.len(), 5);

    // A keyring of another repository is refused, and nothing is written.
    let other = old_repository().await;
    let foreign = other.repository.keyring_bytes().await.unwrap();
    let elsewhere = usb.path().join("foreign");
    let refused = setup
        .repository
        .export_offline_copy(
            &elsewhere,
            &OfflineCopyOptions {
                keyring: Some(foreign),
                ..OfflineCopyOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::ForeignKeyring { .. }),
        "{refused:?}"
    );
    assert!(!elsewhere.exists());
}
