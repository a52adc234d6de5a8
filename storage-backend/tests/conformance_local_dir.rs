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

/// The files naming an upload's stored parts: `(number, in place)`, sorted.
fn stored_parts(root: &std::path::Path) -> Vec<(u32, bool)> {
    let upload = root
        .join("uploads")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let mut parts: Vec<(u32, bool)> = upload
        .path()
        .read_dir()
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let (number, rest) = name.split_once('.')?;
            Some((number.parse().ok()?, rest.ends_with(".at")))
        })
        .collect();
    parts.sort_unstable();
    parts
}

/// Uploads `sizes` as parts in the order `order` (part numbers), completes them and
/// returns the object's bytes and which parts were stored in place.
async fn upload_in_order(sizes: &[usize], order: &[u32]) -> (Vec<u8>, Vec<u8>, Vec<(u32, bool)>) {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    let k = key("volumes/in-place");
    let upload = backend
        .create_multipart(&k, &standard().with_metadata("zib-kind", "volume"))
        .await
        .unwrap();
    let parts: Vec<Bytes> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| test_bytes(i as u64 + 7, *size))
        .collect();
    let mut infos = std::collections::BTreeMap::new();
    for &number in order {
        let info = backend
            .upload_part(&k, &upload, number, parts[number as usize - 1].clone())
            .await
            .unwrap();
        infos.insert(number, info);
    }
    let placed = stored_parts(dir.path());
    let done: Vec<CompletedPart> = infos.values().map(CompletedPart::from).collect();
    backend
        .complete_multipart(&k, &upload, &done, CompletePrecondition::IfAbsent)
        .await
        .unwrap();
    let meta = backend.head(&k).await.unwrap();
    assert_eq!(
        meta.metadata.get("zib-kind").map(String::as_str),
        Some("volume")
    );
    let got = backend.get_bytes(&k, ByteRange::from(0)).await.unwrap();
    assert_eq!(meta.size, got.len() as u64);
    assert!(dir
        .path()
        .join("uploads")
        .read_dir()
        .unwrap()
        .next()
        .is_none());
    assert!(dir.path().join("tmp").read_dir().unwrap().next().is_none());
    (got.to_vec(), parts.concat(), placed)
}

/// Parts sent in order are written where the object needs them: only a last part
/// longer than the first (a volume's final segment riding on it) is kept apart.
#[tokio::test]
async fn parts_are_written_in_place_and_the_object_is_their_concatenation() {
    let part = MIN_PART_SIZE as usize;
    let (got, want, placed) = upload_in_order(&[part, part, part + 16], &[1, 2, 3]).await;
    assert!(got == want, "the object is its parts in order");
    assert_eq!(placed, [(1, true), (2, true), (3, false)]);
    let (got, want, placed) = upload_in_order(&[part, part, 1000], &[1, 2, 3]).await;
    assert!(got == want);
    assert_eq!(placed, [(1, true), (2, true), (3, true)]);
}

/// Parts that arrive before part 1 fixes the stride are kept apart and copied in at
/// completion; the object is the same.
#[tokio::test]
async fn parts_out_of_order_make_the_same_object() {
    let part = MIN_PART_SIZE as usize;
    let (got, want, placed) = upload_in_order(&[part, part, part, 77], &[3, 2, 1, 4]).await;
    assert!(got == want);
    assert_eq!(placed, [(1, true), (2, false), (3, false), (4, true)]);
}

/// Part 1 sent again with another size cannot move the stride under the parts already
/// in place: it is kept apart, and completion assembles the object by copying.
#[tokio::test]
async fn a_first_part_resent_with_another_size_still_makes_the_right_object() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    let k = key("volumes/resized");
    let upload = backend.create_multipart(&k, &standard()).await.unwrap();
    let part = MIN_PART_SIZE as usize;
    let first = test_bytes(1, part);
    let second = test_bytes(2, part);
    let bigger_first = test_bytes(3, part + 4096);
    backend.upload_part(&k, &upload, 1, first).await.unwrap();
    let p2 = backend
        .upload_part(&k, &upload, 2, second.clone())
        .await
        .unwrap();
    let p1 = backend
        .upload_part(&k, &upload, 1, bigger_first.clone())
        .await
        .unwrap();
    assert_eq!(stored_parts(dir.path()), [(1, false), (2, true)]);
    backend
        .complete_multipart(
            &k,
            &upload,
            &[(&p1).into(), (&p2).into()],
            CompletePrecondition::None,
        )
        .await
        .unwrap();
    let got = backend.get_bytes(&k, ByteRange::from(0)).await.unwrap();
    assert!(got == [bigger_first, second].concat());
}

/// An upload begun by an older version (no object file, no reserved header room, parts
/// in files of their own) still completes.
#[tokio::test]
async fn an_upload_of_the_older_layout_completes_by_copying() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    let k = key("volumes/older");
    let upload = backend.create_multipart(&k, &standard()).await.unwrap();
    let upload_dir = dir.path().join("uploads").join(upload.as_str());
    std::fs::remove_file(upload_dir.join("object")).unwrap();
    let info_path = upload_dir.join("upload.json");
    let mut info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    info.as_object_mut().unwrap().remove("header_room").unwrap();
    std::fs::write(&info_path, serde_json::to_vec(&info).unwrap()).unwrap();
    let part = MIN_PART_SIZE as usize;
    let parts = [test_bytes(4, part), test_bytes(5, 10)];
    let mut done = Vec::new();
    for (number, bytes) in (1..).zip(&parts) {
        let info = backend
            .upload_part(&k, &upload, number, bytes.clone())
            .await
            .unwrap();
        done.push(CompletedPart::from(&info));
    }
    assert_eq!(stored_parts(dir.path()), [(1, false), (2, false)]);
    backend
        .complete_multipart(&k, &upload, &done, CompletePrecondition::None)
        .await
        .unwrap();
    let got = backend.get_bytes(&k, ByteRange::from(0)).await.unwrap();
    assert!(got == parts.concat());
}

/// A part's place is written without an fsync of its own: emptied by a crash, the part
/// is simply not stored, and is sent again.
#[tokio::test]
async fn a_part_whose_place_was_lost_in_a_crash_is_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalDirBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    let k = key("volumes/crashed");
    let upload = backend.create_multipart(&k, &standard()).await.unwrap();
    for number in 1..=2 {
        backend
            .upload_part(
                &k,
                &upload,
                number,
                test_bytes(u64::from(number), MIN_PART_SIZE as usize),
            )
            .await
            .unwrap();
    }
    let upload_dir = dir.path().join("uploads").join(upload.as_str());
    let marker = upload_dir
        .read_dir()
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.to_string_lossy().contains("00002.") && path.to_string_lossy().ends_with(".at")
        })
        .unwrap();
    std::fs::write(&marker, b"").unwrap();
    let listed = backend.list_parts(&k, &upload).await.unwrap();
    assert_eq!(listed.iter().map(|p| p.number).collect::<Vec<_>>(), [1]);
}
