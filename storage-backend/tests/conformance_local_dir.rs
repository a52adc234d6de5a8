//! The storage conformance suite against the local directory backend, plus its own
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report
//! rules: keys colliding with directories, resume across a reopen, atomic layout.

use std::sync::Arc;

use bytes::Bytes;
use zib_storage_backend::local_dir::LocalDirBackend;
use zib_storage_backend::{
    ByteRange, CompletePrecondition, CompletedPart, Error, ObjectKey, PutPrecondition,
    StorageBackend, StorageBackendExt, StorageClass, SystemClock, WriteOptions, MIN_PART_SIZE,
};
use zib_test_utils::storage_conformance::{
    test_bytes, ArchiveModel, LifecycleModel, SuiteParams, SuiteTarget,
};

async fn local_dir() -> Option<SuiteTarget> {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    Some(SuiteTarget {
        backend: Arc::new(backend),
        params: SuiteParams::new(ArchiveModel::NoArchive, Arc::new(SystemClock))
            .with_lifecycle(LifecycleModel::NotApplicable),
        guard: Box::new(dir),
    })
}

zib_test_utils::storage_conformance_tests!(local_dir);

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(name).unwrap()
}

fn standard() -> WriteOptions {
    WriteOptions::new(StorageClass::Standard)
}

#[tokio::test]
async fn keys_colliding_with_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    backend
        .put(
            &key("a/b"),
            Bytes::from_static(b"1"),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    let err = backend
        .put(
            &key("a"),
            Bytes::from_static(b"2"),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let err = backend
        .put(
            &key("a/b/c"),
            Bytes::from_static(b"3"),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert!(matches!(
        backend.head(&key("a")).await.unwrap_err(),
        Error::NotFound { .. }
    ));
    // Once "a/b" is gone, its empty directory goes too and "a" becomes a valid key.
    backend.delete(&key("a/b")).await.unwrap();
    backend
        .put(
            &key("a"),
            Bytes::from_static(b"2"),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    assert_eq!(
        backend
            .get_bytes(&key("a"), ByteRange::full())
            .await
            .unwrap(),
        Bytes::from_static(b"2")
    );
    assert!(
        dir.path().join("tmp").read_dir().unwrap().next().is_none(),
        "no temp files left"
    );
}

#[tokio::test]
async fn upload_resumes_after_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("volumes/v1");
    let part1 = test_bytes(1, MIN_PART_SIZE as usize);
    let upload = {
        let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let upload = backend
            .create_multipart(&k, &standard().with_metadata("n", "1"))
            .await
            .unwrap();
        backend
            .upload_part(&k, &upload, 1, part1.clone())
            .await
            .unwrap();
        upload
    };
    let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    let pending = backend.list_multipart_uploads("volumes/").await.unwrap();
    assert_eq!(pending.len(), 1);
    let parts = backend.list_parts(&k, &pending[0].upload_id).await.unwrap();
    assert_eq!((parts.len(), parts[0].size), (1, MIN_PART_SIZE));
    let part2 = backend
        .upload_part(&k, &upload, 2, Bytes::from_static(b"tail"))
        .await
        .unwrap();
    let done: Vec<CompletedPart> = vec![(&parts[0]).into(), (&part2).into()];
    backend
        .complete_multipart(&k, &upload, &done, CompletePrecondition::IfAbsent)
        .await
        .unwrap();
    let got = backend
        .get_bytes(&k, ByteRange::from(MIN_PART_SIZE - 2))
        .await
        .unwrap();
    assert_eq!(
        &got[..],
        &[
            part1[part1.len() - 2],
            part1[part1.len() - 1],
            b't',
            b'a',
            b'i',
            b'l'
        ]
    );
    assert!(
        dir.path()
            .join("uploads")
            .read_dir()
            .unwrap()
            .next()
            .is_none(),
        "upload directory removed"
    );
}

#[tokio::test]
async fn forged_upload_ids_name_no_path() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    for id in ["../objects", "", "0123", "../../etc/passwd"] {
        let err = backend
            .list_parts(&key("x"), &zib_storage_backend::UploadId::new(id))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoSuchUpload { .. }), "{id}: {err:?}");
    }
}

#[tokio::test]
async fn a_missing_root_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalDirBackend::open(dir.path().join("absent"), Arc::new(SystemClock)).unwrap_err();
    assert!(matches!(err, Error::BucketNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn damaged_object_files_are_corrupt_not_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    std::fs::write(dir.path().join("objects/broken"), b"not an object").unwrap();
    let err = backend.head(&key("broken")).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}
