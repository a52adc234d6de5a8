//! The volume pipeline, manifest commit and catalog against the in-memory backend, whose
//! archive semantics (refuse reads until restored, 48-hour thaw on a fake clock) are
//! those of Deep Archive.

// Helpers outside #[test] functions panic on failure too: that is the report.
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use zib_crypto::Passphrase;
use zib_snapshot_source::{SnapshotIdentity, SourceKind};
use zib_storage_backend::memory::{MemoryBackend, MemoryConfig};
use zib_storage_backend::{
    ByteRange, PutPrecondition, RestoreTier, StorageBackend, StorageBackendExt, StorageClass,
    WriteOptions,
};

use super::{fast_init, host, location, upload_stream};
use crate::backup::commit_manifest;
use crate::catalog::read_catalog;
use crate::cleanup::{clean_up, CleanupOptions};
use crate::context::Repo;
use crate::download::{backup_stream, Volumes};
use crate::error::Error;
use crate::format::layout::ObjectRole;
use crate::format::records::{volume_list_hash, BackupKind, ManifestRecord, SendFlagBits};
use crate::ids::{BackupId, DatasetId};
use crate::progress::NoProgress;
use crate::repository::Repository;
use crate::upload::{UploadedStream, VolumeShape};
use crate::FakeClock;

const MIB: usize = 1 << 20;
const MARKER: &[u8] = b"PLAINTEXT-MARKER-family-photos-2026";

fn clock() -> Arc<FakeClock> {
    Arc::new(FakeClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ))
}

/// Deterministic, incompressible-looking bytes with a marker every MiB.
fn sample_stream_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    for start in (0..len.saturating_sub(MARKER.len())).step_by(MIB) {
        bytes[start..start + MARKER.len()].copy_from_slice(MARKER);
    }
    bytes
}

fn chunks(bytes: &[u8], size: usize) -> Vec<Result<Bytes, Error>> {
    bytes
        .chunks(size)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect()
}

fn manifest_for(
    dataset: DatasetId,
    backup: BackupId,
    uploaded: &UploadedStream,
    shape: &VolumeShape,
) -> ManifestRecord {
    ManifestRecord {
        source: SourceKind::Zfs,
        kind: BackupKind::Full,
        snapshot_created_by_zib: true,
        send_flags: SendFlagBits(0),
        dataset_id: dataset,
        backup_id: backup,
        dataset_name: "tank/photos".into(),
        snapshot_name: "zib-20270115T000000Z".into(),
        snapshot_identity: SnapshotIdentity::ZfsGuid(42),
        snapshot_created_at: 1_800_000_000,
        committed_at: 1_800_000_100,
        stream_len: uploaded.stream_len,
        stream_sha256: uploaded.stream_sha256,
        stored_len: uploaded.stored_len(),
        volume_count: uploaded.volumes.len() as u32,
        volume_plaintext_len: shape.volume_plaintext_len,
        volume_list_sha256: volume_list_hash(&uploaded.volumes),
        snapshot_bytes: Some(uploaded.stream_len),
        replaced_incremental: None,
    }
}

/// This test process's state directory (no test here resumes).
fn state_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

async fn open(
    backend: Arc<dyn StorageBackend>,
    prefix: &str,
    passphrase: &str,
) -> crate::Result<Arc<Repo>> {
    Repository::open(
        &location(backend, prefix),
        &Passphrase::new(passphrase.into()),
        host(state_dir(), &clock()),
    )
    .await
    .map(|repository| repository.context().clone())
}

async fn new_repository() -> (Arc<MemoryBackend>, Arc<FakeClock>, Arc<Repo>) {
    let clock = clock();
    let backend = Arc::new(MemoryBackend::new(MemoryConfig::default(), clock.clone()));
    let (repository, report) = Repository::init(
        &location(backend.clone(), "family"),
        &Passphrase::new("correct horse battery staple".into()),
        &fast_init(),
        host(state_dir(), &clock),
    )
    .await
    .unwrap();
    assert_eq!(report.keyring.len(), zib_crypto::KEYRING_LEN);
    (backend, clock, repository.context().clone())
}

fn shape() -> VolumeShape {
    VolumeShape {
        volume_plaintext_len: 6 * MIB as u64,
        part_len: 5 * MIB as u64,
        parts_in_flight: 2,
    }
}

#[tokio::test]
async fn init_refuses_an_existing_repository_and_open_checks_the_passphrase() {
    let (backend, clock, repository) = new_repository().await;
    let again = Repository::init(
        &location(backend.clone(), "family/"),
        &Passphrase::new("another".into()),
        &fast_init(),
        host(state_dir(), &clock),
    )
    .await;
    assert!(
        matches!(again, Err(Error::AlreadyInitialised { .. })),
        "{again:?}"
    );

    let opened = open(backend.clone(), "family", "correct horse battery staple")
        .await
        .unwrap();
    assert_eq!(*opened.archive_class(), StorageClass::DeepArchive);
    assert_eq!(opened.id(), repository.id());

    let wrong = open(backend.clone(), "family", "correct horse battery stapler").await;
    assert!(
        matches!(
            wrong,
            Err(Error::Crypto(zib_crypto::Error::WrongPassphrase))
        ),
        "{wrong:?}"
    );
    let missing = open(backend.clone(), "elsewhere", "x").await;
    assert!(
        matches!(missing, Err(Error::NotARepository { .. })),
        "{missing:?}"
    );

    // Only README, keyring and the decoder kit are outside the archive class; the
    // keyring and the kit have archived copies.
    let objects = backend.list_all("family/").await.unwrap();
    let keys: Vec<&str> = objects.iter().map(|entry| entry.key.as_str()).collect();
    assert_eq!(keys.len(), 3 + 2 * crate::kit::FILES.len(), "{keys:?}");
    for entry in &objects {
        let key = entry.key.as_str();
        let expected = if key.starts_with("family/keyring-archive/")
            || key.starts_with("family/kit-archive/")
        {
            StorageClass::DeepArchive
        } else {
            StorageClass::Standard
        };
        assert_eq!(entry.storage_class, expected, "{}", entry.key);
    }
    // The kit is the project's documents, byte for byte, at content-hashed keys.
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    for (name, path) in [
        ("RESTORE.txt", "reference/RESTORE.txt"),
        ("FORMAT.md", "FORMAT.md"),
        ("zib_reference.py", "reference/zib_reference.py"),
    ] {
        let expected = std::fs::read(docs.join(path)).unwrap();
        let hash =
            hex::encode(&ring::digest::digest(&ring::digest::SHA256, &expected).as_ref()[..8]);
        let key = format!("family/kit/v1/{hash}/{name}");
        assert!(keys.contains(&key.as_str()), "{key} not in {keys:?}");
        let bytes = backend
            .get_bytes(
                &zib_storage_backend::ObjectKey::new(key.clone()).unwrap(),
                ByteRange::full(),
            )
            .await
            .unwrap();
        assert_eq!(bytes, expected, "{key}");
        assert!(keys.contains(&format!("family/kit-archive/v1/{hash}/{name}").as_str()));
    }
    let readme = backend
        .get_bytes(
            &repository.key(&ObjectRole::Readme).unwrap(),
            ByteRange::full(),
        )
        .await
        .unwrap();
    let readme = String::from_utf8(readme.to_vec()).unwrap();
    assert!(readme.contains(&repository.id().to_string()));
    assert!(readme.contains("docs/FORMAT.md"));
    for file in &crate::kit::FILES {
        assert!(readme.contains(&file.key().unwrap()), "{readme}");
    }
}

#[tokio::test]
async fn a_stream_round_trips_through_archived_volumes() {
    let (backend, clock, repository) = new_repository().await;
    let dataset = DatasetId::from_bytes([1; 16]);
    let backup = BackupId::from_bytes([2; 16]);
    let plaintext = sample_stream_bytes(13 * MIB + 12_345);
    let shape = shape();
    let uploaded = upload_stream(
        &repository,
        dataset,
        backup,
        stream::iter(chunks(&plaintext, 300_001)),
        &shape,
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(uploaded.stream_len, plaintext.len() as u64);
    assert_eq!(uploaded.volumes.len(), 3, "13 MiB in 6 MiB volumes");
    assert_eq!(uploaded.volumes[0].plaintext_len, 6 * MIB as u64);
    assert_eq!(uploaded.volumes[2].plaintext_len, (MIB + 12_345) as u64);
    assert!(
        uploaded.parts >= 4,
        "6 MiB volumes in 5 MiB parts take two parts each"
    );

    let manifest = manifest_for(dataset, backup, &uploaded, &shape);
    commit_manifest(&repository, &manifest).await.unwrap();

    // The catalog comes from LIST and HEAD alone, while everything is archived.
    let catalog = read_catalog(&repository).await.unwrap();
    let backups = catalog.backups(dataset);
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].manifest, manifest);
    assert_eq!(
        backups[0].volume_sizes,
        uploaded
            .volumes
            .iter()
            .map(|v| v.ciphertext_len)
            .collect::<Vec<_>>()
    );
    assert!(catalog.leftovers.orphan_volumes.is_empty());
    assert!(catalog.leftovers.incomplete_uploads.is_empty());

    // No stored byte reveals the plaintext, and data objects are archived.
    for entry in backend.list_all("family/").await.unwrap() {
        let head = backend.head(&entry.key).await.unwrap();
        for value in head.metadata.values() {
            assert!(!value.contains("tank/photos"), "{}", entry.key);
        }
        if entry.key.as_str().starts_with("family/volumes/")
            || entry.key.as_str().starts_with("family/manifests/")
        {
            assert_eq!(
                entry.storage_class,
                StorageClass::DeepArchive,
                "{}",
                entry.key
            );
        }
    }

    // Archived volumes refuse reads until restored and thawed.
    let early: Result<Vec<Bytes>, Error> =
        backup_stream(repository.clone(), manifest.clone(), Volumes::Bucket)
            .try_collect()
            .await;
    assert!(
        matches!(
            early,
            Err(Error::Storage(
                zib_storage_backend::Error::NotRestored { .. }
            ))
        ),
        "{early:?}"
    );
    for index in 0..manifest.volume_count {
        let key = repository
            .key(&ObjectRole::Volume {
                dataset,
                backup,
                index,
            })
            .unwrap();
        backend
            .request_restore(&key, 7, RestoreTier::Bulk)
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(48 * 3600));
    let restored: Vec<Bytes> = backup_stream(repository.clone(), manifest.clone(), Volumes::Bucket)
        .try_collect()
        .await
        .unwrap();
    let restored: Vec<u8> = restored.concat();
    assert!(restored == plaintext, "restored stream differs");

    // Raw volume bytes never contain the marker.
    for index in 0..manifest.volume_count {
        let key = repository
            .key(&ObjectRole::Volume {
                dataset,
                backup,
                index,
            })
            .unwrap();
        let raw = backend.get_bytes(&key, ByteRange::full()).await.unwrap();
        assert!(!raw.windows(MARKER.len()).any(|window| window == MARKER));
    }
}

#[tokio::test]
async fn swapped_or_replaced_volumes_fail_loudly() {
    let (backend, _clock, repository) = new_repository().await;
    let dataset = DatasetId::from_bytes([1; 16]);
    let backup = BackupId::from_bytes([3; 16]);
    let plaintext = sample_stream_bytes(12 * MIB + 7);
    let shape = shape();
    let uploaded = upload_stream(
        &repository,
        dataset,
        backup,
        stream::iter(chunks(&plaintext, MIB)),
        &shape,
        &NoProgress,
    )
    .await
    .unwrap();
    let manifest = manifest_for(dataset, backup, &uploaded, &shape);

    // Rewrite volumes 0 and 1 swapped, readable (STANDARD) so only crypto can object.
    let key = |index| {
        repository
            .key(&ObjectRole::Volume {
                dataset,
                backup,
                index,
            })
            .unwrap()
    };
    let mut readable = Vec::new();
    for index in 0..manifest.volume_count {
        let meta = backend.head(&key(index)).await.unwrap();
        backend
            .request_restore(&key(index), 1, RestoreTier::Standard)
            .await
            .unwrap();
        readable.push(meta);
    }
    _clock.advance(Duration::from_secs(13 * 3600));
    let v0 = backend.get_bytes(&key(0), ByteRange::full()).await.unwrap();
    let v1 = backend.get_bytes(&key(1), ByteRange::full()).await.unwrap();
    for (index, body) in [(0, v1), (1, v0)] {
        backend.delete(&key(index)).await.unwrap();
        backend
            .put(
                &key(index),
                body,
                &WriteOptions {
                    storage_class: StorageClass::Standard,
                    metadata: readable[index as usize].metadata.clone(),
                },
                &PutPrecondition::None,
            )
            .await
            .unwrap();
    }
    let items: Vec<Result<Bytes, Error>> =
        backup_stream(repository.clone(), manifest.clone(), Volumes::Bucket)
            .collect()
            .await;
    let error = items
        .into_iter()
        .find_map(Result::err)
        .expect("a swapped volume must fail");
    let text = error.to_string();
    assert!(
        text.contains("volume 0"),
        "the error names the volume: {text}"
    );
}

/// A send that fails midway commits nothing; its uploads stay for the next run to
/// resume (a backup run's journal names them), and clean-up removes them if it never does.
#[tokio::test]
async fn a_failing_stream_commits_nothing() {
    let (_backend, _clock, repository) = new_repository().await;
    let dataset = DatasetId::from_bytes([1; 16]);
    let backup = BackupId::from_bytes([4; 16]);
    let plaintext = sample_stream_bytes(9 * MIB);
    let mut items = chunks(&plaintext, MIB);
    items.push(Err(Error::InvalidInput(
        "zfs send exited with status 1".into(),
    )));
    let result = upload_stream(
        &repository,
        dataset,
        backup,
        stream::iter(items),
        &shape(),
        &NoProgress,
    )
    .await;
    assert!(
        matches!(result, Err(Error::InvalidInput(ref m)) if m.contains("status 1")),
        "{result:?}"
    );
    let catalog = read_catalog(&repository).await.unwrap();
    assert!(catalog.datasets.is_empty(), "nothing is committed");
    // 9 MiB in 6 MiB volumes: volume 0 complete, volume 1's upload kept for a resume.
    assert_eq!(
        catalog.leftovers.orphan_volumes.len(),
        1,
        "{:?}",
        catalog.leftovers
    );
    assert_eq!(
        catalog.leftovers.incomplete_uploads.len(),
        1,
        "{:?}",
        catalog.leftovers
    );
}

#[tokio::test]
async fn an_empty_stream_is_one_empty_volume() {
    let (_backend, clock, repository) = new_repository().await;
    let _ = clock;
    let dataset = DatasetId::from_bytes([1; 16]);
    let backup = BackupId::from_bytes([5; 16]);
    let shape = shape();
    let uploaded = upload_stream(
        &repository,
        dataset,
        backup,
        stream::iter(Vec::<Result<Bytes, Error>>::new()),
        &shape,
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(uploaded.volumes.len(), 1);
    assert_eq!(uploaded.stream_len, 0);
    assert_eq!(
        uploaded.volumes[0].ciphertext_len,
        zib_crypto::ciphertext_len(0),
        "header plus an empty last segment"
    );
}

#[tokio::test]
async fn clean_up_removes_only_old_leftovers_and_never_committed_backups() {
    let (backend, clock, repository) = new_repository().await;
    let dataset = DatasetId::from_bytes([1; 16]);
    let shape = shape();

    // A committed backup.
    let committed_id = BackupId::from_bytes([6; 16]);
    let plaintext = sample_stream_bytes(7 * MIB);
    let uploaded = upload_stream(
        &repository,
        dataset,
        committed_id,
        stream::iter(chunks(&plaintext, MIB)),
        &shape,
        &NoProgress,
    )
    .await
    .unwrap();
    commit_manifest(
        &repository,
        &manifest_for(dataset, committed_id, &uploaded, &shape),
    )
    .await
    .unwrap();

    // Leftovers: the volumes of a backup that never committed, and an upload never
    // completed.
    let orphan_id = BackupId::from_bytes([7; 16]);
    upload_stream(
        &repository,
        dataset,
        orphan_id,
        stream::iter(chunks(&plaintext, MIB)),
        &shape,
        &NoProgress,
    )
    .await
    .unwrap();
    let stray = repository
        .key(&ObjectRole::Volume {
            dataset,
            backup: BackupId::from_bytes([8; 16]),
            index: 0,
        })
        .unwrap();
    let upload = backend
        .create_multipart(&stray, &WriteOptions::new(StorageClass::DeepArchive))
        .await
        .unwrap();
    backend
        .upload_part(&stray, &upload, 1, Bytes::from(vec![0u8; 5 * MIB]))
        .await
        .unwrap();
    let catalog = read_catalog(&repository).await.unwrap();
    assert_eq!(catalog.leftovers.orphan_volumes.len(), 2);
    assert_eq!(catalog.leftovers.incomplete_uploads.len(), 1);

    // Young leftovers may be another host's backup in progress: kept.
    let report = clean_up(&repository, &CleanupOptions::default())
        .await
        .unwrap();
    assert_eq!(report.kept_recent, 3);
    assert!(report.deleted_volumes.is_empty() && report.aborted_uploads.is_empty());

    clock.advance(Duration::from_secs(8 * 24 * 3600));
    let report = clean_up(&repository, &CleanupOptions::default())
        .await
        .unwrap();
    assert_eq!(report.deleted_volumes.len(), 2);
    assert_eq!(report.aborted_uploads, vec![stray]);
    let catalog = read_catalog(&repository).await.unwrap();
    assert!(catalog.leftovers.orphan_volumes.is_empty());
    assert!(catalog.leftovers.incomplete_uploads.is_empty());
    // The committed backup is whole.
    let backups = catalog.backups(dataset);
    assert_eq!(backups.len(), 1);
    assert_eq!(
        backups[0].volume_sizes.len() as u32,
        backups[0].manifest.volume_count
    );
}

/// Committing is idempotent: a caller that retries a commit whose answer was lost finds
/// its own manifest there, and the commit stands. Another manifest under the same backup
/// id is still refused.
#[tokio::test]
async fn a_retried_commit_whose_answer_was_lost_stands() {
    use zib_storage_backend::faults::{Fault, FaultInjecting, FaultRule, Trigger};
    use zib_storage_backend::Operation;

    let (backend, _clock, repository) = new_repository().await;
    let random = ring::rand::SystemRandom::new();
    let dataset = DatasetId::generate(&random).unwrap();
    let backup = BackupId::generate(&random).unwrap();
    let uploaded = upload_stream(
        &repository,
        dataset,
        backup,
        futures::stream::iter(chunks(&sample_stream_bytes(1 << 20), 64 << 10)),
        &shape(),
        &NoProgress,
    )
    .await
    .unwrap();
    let manifest = manifest_for(dataset, backup, &uploaded, &shape());

    // The first PUT lands but its answer is lost (no retry layer here: the caller retries).
    let lossy: Arc<dyn StorageBackend> = Arc::new(FaultInjecting::new(
        backend.clone(),
        vec![FaultRule {
            operation: Some(Operation::Put),
            trigger: Trigger::Nth(1),
            fault: Fault::LostAnswer,
        }],
        7,
    ));
    let through_lossy = open(lossy, "family", "correct horse battery staple")
        .await
        .unwrap();
    let lost = commit_manifest(&through_lossy, &manifest).await;
    assert!(lost.is_err(), "the injected lost answer must surface");
    commit_manifest(&through_lossy, &manifest).await.unwrap();
    let catalog = read_catalog(&repository).await.unwrap();
    assert_eq!(catalog.backups(dataset).len(), 1);
    assert_eq!(catalog.backups(dataset)[0].manifest, manifest);

    // A different manifest under the same backup id: refused, the first one kept.
    let other = ManifestRecord {
        committed_at: manifest.committed_at + 1,
        ..manifest.clone()
    };
    let error = commit_manifest(&repository, &other)
        .await
        .expect_err("never overwritten");
    assert!(
        matches!(
            error,
            Error::Storage(zib_storage_backend::Error::Precondition { .. })
        ),
        "{error}"
    );
    let catalog = read_catalog(&repository).await.unwrap();
    assert_eq!(catalog.backups(dataset)[0].manifest, manifest);
}
