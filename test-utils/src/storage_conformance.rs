//! The conformance suite of `StorageBackend`: one `pub async fn` per behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)] // suite code: a panic is the failure report
//!
//! Every backend runs every function (see [`storage_conformance_tests!`]); where
//! backends legitimately differ (archive semantics), the difference is a field of
//! [`SuiteParams`] and the function asserts the behaviour that parameter promises —
//! nothing is skipped. Each function works under [`SuiteParams::prefix`], so one store
//! can serve many tests at once. Failures panic with what was expected.
//!
//! [`storage_conformance_tests!`]: crate::storage_conformance_tests

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use zib_storage_backend::{
    AbortIncompleteUploadsRule, ArchiveState, BucketProtection, ByteRange, Clock,
    CompletePrecondition, CompletedPart, Error, FakeClock, ObjectKey, ObjectLock, PutPrecondition,
    RestoreTier, StorageBackend, StorageBackendExt, StorageClass, UploadId, UserMetadata,
    Versioning, WriteOptions, MAX_USER_METADATA_BYTES, MIN_PART_SIZE,
};

/// How a backend treats objects in an archive storage class.
#[derive(Debug, Clone)]
pub enum ArchiveModel {
    /// No archive semantics: the class is recorded and reported, objects stay readable,
    /// restore requests are accepted and change nothing.
    NoArchive,
    /// Restores complete as soon as they are requested (moto's default).
    InstantRestore,
    /// Restores take `bulk_thaw` on `clock`, which the suite moves forward.
    DelayedRestore {
        /// The backend's clock.
        clock: FakeClock,
        /// The backend's Bulk thaw delay.
        bulk_thaw: Duration,
    },
}

/// Whether a backend keeps bucket lifecycle rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleModel {
    /// Rules that abort incomplete uploads are read and written, others kept.
    Rules,
    /// No incomplete-upload billing: both lifecycle calls answer `NotApplicable`.
    NotApplicable,
}

/// How a backend dates incomplete multipart uploads
/// ([`MultipartUploadInfo::initiated`](zib_storage_backend::MultipartUploadInfo)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadDates {
    /// By the time the upload was created (AWS S3, and every backend of zib's own).
    Created,
    /// Every upload carries this one date, whatever its creation time: moto 5.1.22
    /// answers ListMultipartUploads with a fixed `Initiated` (see
    /// [`crate::moto::REPORTED_UPLOAD_INITIATION_SECS`]). The suite then checks that
    /// exactly this date arrives, which proves the backend reads the field.
    Fixed(SystemTime),
}

/// What a backend promises when two conditional writes of one key race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaceModel {
    /// Exactly one of the racing `IfAbsent` writes wins; every other gets
    /// `Precondition` (AWS S3 documents this, and every backend of zib's own keeps it).
    Atomic,
    /// The server checks the condition, then writes, without a lock between (moto
    /// 5.1.22: `storage-backend/docs/moto-fidelity.md`): more than one racing write may
    /// win. The suite then checks what still holds — at least one wins, every loser
    /// gets `Precondition`, and the object is one winner's bytes, whole.
    CheckThenWrite,
}

/// What the suite may expect of a backend, and where it works.
#[derive(Debug, Clone)]
pub struct SuiteParams {
    /// Key prefix (ending in `/`) under which every function of the suite works.
    pub prefix: String,
    /// Archive behaviour.
    pub archive: ArchiveModel,
    /// Number of keys for the pagination check (more than one 1,000-key page).
    pub pagination_keys: usize,
    /// Lifecycle rules ([`LifecycleModel::Rules`] unless set otherwise).
    pub lifecycle: LifecycleModel,
    /// The clock the backend dates objects and uploads by (the backend's own fake clock,
    /// or the system clock for a server): every reported time is checked against its
    /// `now()` taken around the write.
    pub clock: Arc<dyn Clock>,
    /// How incomplete uploads are dated ([`UploadDates::Created`] unless set otherwise).
    pub upload_dates: UploadDates,
    /// What the backend reports about keeping deleted objects (versioning, Object Lock);
    /// unversioned and unlocked unless set otherwise.
    pub protection: BucketProtection,
    /// What racing conditional writes do ([`RaceModel::Atomic`] unless set otherwise).
    pub races: RaceModel,
}

impl SuiteParams {
    /// Parameters with a fresh unique prefix, for a backend that dates what it stores by
    /// `clock`.
    pub fn new(archive: ArchiveModel, clock: Arc<dyn Clock>) -> Self {
        SuiteParams {
            prefix: unique_prefix(),
            archive,
            pagination_keys: 1005,
            lifecycle: LifecycleModel::Rules,
            clock,
            upload_dates: UploadDates::Created,
            protection: BucketProtection::default(),
            races: RaceModel::Atomic,
        }
    }

    /// The same parameters with another race model.
    pub fn with_races(mut self, races: RaceModel) -> Self {
        self.races = races;
        self
    }

    /// The same parameters with another lifecycle model.
    pub fn with_lifecycle(mut self, lifecycle: LifecycleModel) -> Self {
        self.lifecycle = lifecycle;
        self
    }

    /// The same parameters with another way of dating uploads.
    pub fn with_upload_dates(mut self, upload_dates: UploadDates) -> Self {
        self.upload_dates = upload_dates;
        self
    }

    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(format!("{}{name}", self.prefix)).expect("suite keys are valid")
    }
}

/// A backend ready for the suite, with whatever keeps it alive (server, directory).
pub struct SuiteTarget {
    /// The backend under test.
    pub backend: Arc<dyn StorageBackend>,
    /// What it promises.
    pub params: SuiteParams,
    /// Dropped after the test: a server process, a temporary directory.
    pub guard: Box<dyn Any + Send>,
}

/// A prefix no other test in this or another process uses.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "conformance-{}-{nanos}-{}/",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `len` deterministic pseudo-random bytes (xorshift), different for each `seed`.
pub fn test_bytes(seed: u64, len: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn standard() -> WriteOptions {
    WriteOptions::new(StorageClass::Standard)
}

/// How far a reported time may lie outside the clock readings taken around the write.
/// S3 reports `Last-Modified` in whole seconds (an HTTP date), so a time may fall up to a
/// second before the reading taken just before the write; a second more allows for a
/// server whose clock stands slightly apart from the test's.
const TIME_MARGIN: Duration = Duration::from_secs(2);

/// Asserts that `time`, reported for something written between the clock readings
/// `before` and `after`, lies between them (within [`TIME_MARGIN`]). A backend that
/// loses or misreads times (reporting 1970, say, or the time of the read) fails here.
#[track_caller]
fn assert_written_between(what: &str, time: SystemTime, before: SystemTime, after: SystemTime) {
    assert!(
        time + TIME_MARGIN >= before && time <= after + TIME_MARGIN,
        "{what}: reported time {time:?} is not between {before:?} and {after:?} \
         (the clock's readings around the write, ±{TIME_MARGIN:?})"
    );
}

#[track_caller]
fn assert_kind(
    result: Result<impl std::fmt::Debug, Error>,
    expected: fn(&Error) -> bool,
    what: &str,
) {
    match result {
        Ok(value) => panic!("{what}: expected an error, got Ok({value:?})"),
        Err(error) => assert!(expected(&error), "{what}: unexpected error kind: {error:?}"),
    }
}

/// Put, head and get round-trip bytes, class, metadata, ETag and the time of the write;
/// an overwrite changes the ETag; an empty object round-trips.
pub async fn put_get_head_round_trip(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("round-trip.bin");
    let data = test_bytes(1, 100_000);
    let options = standard()
        .with_metadata("zib-format", "1")
        .with_metadata("x-y", "a value, with spaces");
    let before = params.clock.now();
    let etag = backend
        .put(&key, data.clone(), &options, &PutPrecondition::None)
        .await
        .unwrap();
    let after = params.clock.now();

    let meta = backend.head(&key).await.unwrap();
    assert_eq!(meta.key, key);
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.storage_class, StorageClass::Standard);
    assert_eq!(meta.metadata, options.metadata);
    assert_eq!(meta.etag, etag);
    assert_eq!(meta.archive_state, ArchiveState::Available);
    assert_written_between("head's last_modified", meta.last_modified, before, after);
    let listed = backend.list_all(&params.prefix).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_written_between(
        "the listing's last_modified",
        listed[0].last_modified,
        before,
        after,
    );
    assert_eq!(
        backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
        data
    );

    let replacement = test_bytes(2, 1000);
    let etag2 = backend
        .put(
            &key,
            replacement.clone(),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    assert_ne!(
        etag, etag2,
        "an overwrite with other bytes must change the ETag"
    );
    let meta = backend.head(&key).await.unwrap();
    assert_eq!(
        (meta.size, meta.etag, meta.metadata),
        (1000, etag2, UserMetadata::new())
    );
    assert_eq!(
        backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
        replacement
    );

    let empty = params.key("empty");
    backend
        .put(&empty, Bytes::new(), &standard(), &PutPrecondition::None)
        .await
        .unwrap();
    assert_eq!(backend.head(&empty).await.unwrap().size, 0);
    assert!(backend
        .get_bytes(&empty, ByteRange::full())
        .await
        .unwrap()
        .is_empty());
}

/// Ranged reads return exactly the requested bytes; an open or overlong end stops at the
/// end of the object; a start past the end is `InvalidInput`.
pub async fn ranged_reads(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("ranges.bin");
    let data = test_bytes(3, 300_000);
    backend
        .put(&key, data.clone(), &standard(), &PutPrecondition::None)
        .await
        .unwrap();
    let cases = [
        (ByteRange::new(0, 1).unwrap(), 0..1),
        (ByteRange::new(1, 2).unwrap(), 1..2),
        (ByteRange::new(1000, 200_000).unwrap(), 1000..200_000),
        (ByteRange::from(299_999), 299_999..300_000),
        (ByteRange::from(5), 5..300_000),
        (ByteRange::new(250_000, 400_000).unwrap(), 250_000..300_000),
        (ByteRange::full(), 0..300_000),
    ];
    for (range, expected) in cases {
        let got = backend.get_bytes(&key, range).await.unwrap();
        assert_eq!(got, data.slice(expected.clone()), "range {range:?}");
    }
    assert_kind(
        backend.get_bytes(&key, ByteRange::from(300_000)).await,
        |e| matches!(e, Error::InvalidInput { .. }),
        "range starting at the end",
    );
}

/// Missing objects are `NotFound` for head, get and restore; delete is idempotent and
/// makes the object missing.
pub async fn missing_objects_and_delete(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("missing");
    let not_found = |e: &Error| matches!(e, Error::NotFound { .. });
    assert_kind(backend.head(&key).await, not_found, "head of a missing key");
    assert_kind(
        backend.get(&key, ByteRange::full()).await.map(|_| ()),
        not_found,
        "get of a missing key",
    );
    assert_kind(
        backend.request_restore(&key, 1, RestoreTier::Bulk).await,
        not_found,
        "restore of a missing key",
    );
    assert!(!backend.exists(&key).await.unwrap());
    backend.delete(&key).await.unwrap();

    backend
        .put(&key, test_bytes(4, 10), &standard(), &PutPrecondition::None)
        .await
        .unwrap();
    assert!(backend.exists(&key).await.unwrap());
    backend.delete(&key).await.unwrap();
    assert_kind(backend.head(&key).await, not_found, "head after delete");
    backend.delete(&key).await.unwrap();
}

/// Listing returns exactly the keys under a prefix (also a partial segment), ascending
/// by UTF-8 bytes, with their sizes, classes and times of writing.
pub async fn list_prefix_and_order(backend: &dyn StorageBackend, params: &SuiteParams) {
    let names = ["b/2", "a", "a-c", "a/b", "ab", "b/1", "z"];
    // "a" and "a/b" may not coexist on a file system; only list what every backend stores.
    let names: Vec<&str> = names.into_iter().filter(|n| *n != "a").collect();
    let before = params.clock.now();
    for (index, name) in names.iter().enumerate() {
        backend
            .put(
                &params.key(name),
                test_bytes(5, index + 1),
                &standard(),
                &PutPrecondition::None,
            )
            .await
            .unwrap();
    }
    let after = params.clock.now();
    let listed = backend.list_all(&params.prefix).await.unwrap();
    let mut expected: Vec<String> = names
        .iter()
        .map(|n| format!("{}{n}", params.prefix))
        .collect();
    expected.sort();
    let keys: Vec<String> = listed.iter().map(|e| e.key.to_string()).collect();
    assert_eq!(keys, expected, "keys in ascending byte order");
    for entry in &listed {
        let name = &entry.key.as_str()[params.prefix.len()..];
        let index = names.iter().position(|n| *n == name).unwrap();
        assert_eq!(entry.size, index as u64 + 1, "size of {name}");
        assert_eq!(entry.storage_class, StorageClass::Standard);
        assert_written_between(
            &format!("last_modified of {name}"),
            entry.last_modified,
            before,
            after,
        );
    }
    let partial = backend
        .list_all(&format!("{}a", params.prefix))
        .await
        .unwrap();
    let partial: Vec<&str> = partial
        .iter()
        .map(|e| &e.key.as_str()[params.prefix.len()..])
        .collect();
    assert_eq!(partial, ["a-c", "a/b", "ab"]);
    let in_dir = backend
        .list_all(&format!("{}b/", params.prefix))
        .await
        .unwrap();
    assert_eq!(in_dir.len(), 2);
    assert!(backend
        .list_all(&format!("{}nothing", params.prefix))
        .await
        .unwrap()
        .is_empty());
}

/// A listing larger than one page (1,000 keys on S3) returns every key once, in order.
pub async fn list_pagination(backend: &dyn StorageBackend, params: &SuiteParams) {
    let count = params.pagination_keys;
    futures::stream::iter(0..count)
        .map(|i| {
            let key = params.key(&format!("page/{i:05}"));
            async move {
                backend
                    .put(
                        &key,
                        Bytes::from_static(b"x"),
                        &standard(),
                        &PutPrecondition::None,
                    )
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let keys: Vec<String> = backend
        .list(&format!("{}page/", params.prefix))
        .map_ok(|entry| entry.key.to_string())
        .try_collect()
        .await
        .unwrap();
    let expected: Vec<String> = (0..count)
        .map(|i| format!("{}page/{i:05}", params.prefix))
        .collect();
    assert_eq!(keys.len(), count, "every key listed once");
    assert_eq!(keys, expected);
}

/// A multipart upload of minimum-size parts assembles the object in part order, with the
/// class and metadata given at creation, dated within the upload (S3 dates it by the
/// upload's start).
pub async fn multipart_round_trip(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("multipart.bin");
    let part_size = MIN_PART_SIZE as usize;
    let parts = vec![
        test_bytes(10, part_size),
        test_bytes(11, part_size),
        test_bytes(12, 777),
    ];
    let options = standard().with_metadata("volume", "3");
    let before = params.clock.now();
    let etag = backend
        .upload_multipart(&key, &options, parts.clone(), CompletePrecondition::None)
        .await
        .unwrap();
    let after = params.clock.now();
    let meta = backend.head(&key).await.unwrap();
    assert_eq!(meta.size, (2 * part_size + 777) as u64);
    assert_eq!(meta.etag, etag);
    assert_eq!(meta.metadata, options.metadata);
    assert_eq!(meta.storage_class, StorageClass::Standard);
    assert_written_between(
        "a multipart object's last_modified",
        meta.last_modified,
        before,
        after,
    );
    let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let got = backend.get_bytes(&key, ByteRange::full()).await.unwrap();
    assert!(
        got == expected,
        "multipart object bytes differ from the parts"
    );
    let across = backend
        .get_bytes(
            &key,
            ByteRange::new(part_size as u64 - 10, part_size as u64 + 10).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(across, expected[part_size - 10..part_size + 10]);
    assert!(backend
        .list_multipart_uploads(&params.prefix)
        .await
        .unwrap()
        .is_empty());
}

/// An upload resumes from nothing but its key and id: the parts listed after "dropping
/// the handle" carry number, size and ETag; re-uploading a part replaces it; the
/// incomplete upload is listed, with its initiation time, until completed.
pub async fn multipart_resume(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("resume.bin");
    let part1 = test_bytes(20, MIN_PART_SIZE as usize);
    let before = params.clock.now();
    let upload = backend
        .create_multipart(&key, &WriteOptions::new(StorageClass::Standard))
        .await
        .unwrap();
    let after = params.clock.now();
    let first = backend
        .upload_part(&key, &upload, 1, test_bytes(21, 1000))
        .await
        .unwrap();
    let replaced = backend
        .upload_part(&key, &upload, 1, part1.clone())
        .await
        .unwrap();
    assert_ne!(first.etag, replaced.etag);
    let upload_id = upload.to_string();
    drop(upload);

    let pending = backend
        .list_multipart_uploads(&params.prefix)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "one incomplete upload: {pending:?}");
    assert_eq!(pending[0].key, key);
    assert_eq!(pending[0].upload_id.as_str(), upload_id);
    // Clean-up decides "young, keep" from this date: a misread one aborts live uploads.
    match params.upload_dates {
        UploadDates::Created => assert_written_between(
            "the upload's initiation",
            pending[0].initiated,
            before,
            after,
        ),
        UploadDates::Fixed(date) => assert_eq!(
            pending[0].initiated, date,
            "the upload's initiation: the server reports a fixed date for every upload"
        ),
    }

    let upload = zib_storage_backend::UploadId::new(upload_id);
    let listed = backend.list_parts(&key, &upload).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].number, listed[0].size), (1, MIN_PART_SIZE));
    assert_eq!(
        listed[0].etag, replaced.etag,
        "listing shows the replacing part"
    );

    let part2 = test_bytes(22, 4321);
    let second = backend
        .upload_part(&key, &upload, 2, part2.clone())
        .await
        .unwrap();
    let listed = backend.list_parts(&key, &upload).await.unwrap();
    assert_eq!(listed.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(listed[1].etag, second.etag);
    let completed: Vec<CompletedPart> = listed.iter().map(CompletedPart::from).collect();
    backend
        .complete_multipart(&key, &upload, &completed, CompletePrecondition::None)
        .await
        .unwrap();
    let got = backend.get_bytes(&key, ByteRange::full()).await.unwrap();
    assert_eq!(got.len(), part1.len() + part2.len());
    assert!(got[..part1.len()] == part1[..] && got[part1.len()..] == part2[..]);
    assert_upload_gone(backend, params, &key, &upload, "a completed upload").await;
}

/// Abort leaves nothing: no object, no listed upload, no parts.
pub async fn multipart_abort(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("aborted.bin");
    let upload = backend.create_multipart(&key, &standard()).await.unwrap();
    backend
        .upload_part(&key, &upload, 1, test_bytes(30, 2000))
        .await
        .unwrap();
    backend.abort_multipart(&key, &upload).await.unwrap();
    assert!(!backend.exists(&key).await.unwrap());
    assert!(backend.list_all(&params.prefix).await.unwrap().is_empty());
    assert_upload_gone(backend, params, &key, &upload, "an aborted upload").await;
}

/// A finished upload (completed or aborted) is listed nowhere and has no parts.
async fn assert_upload_gone(
    backend: &dyn StorageBackend,
    params: &SuiteParams,
    key: &ObjectKey,
    upload: &UploadId,
    what: &str,
) {
    assert!(
        backend
            .list_multipart_uploads(&params.prefix)
            .await
            .unwrap()
            .is_empty(),
        "{what} is still listed"
    );
    assert_kind(
        backend.list_parts(key, upload).await,
        |e| matches!(e, Error::NoSuchUpload { .. }),
        &format!("list parts of {what}"),
    );
}

/// Completion refuses a non-last part under 5 MiB, a wrong ETag and unordered parts,
/// leaving the upload in place; a single small part is fine.
pub async fn multipart_rules(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("rules.bin");
    let upload = backend.create_multipart(&key, &standard()).await.unwrap();
    let p1 = backend
        .upload_part(&key, &upload, 1, test_bytes(40, 1024))
        .await
        .unwrap();
    let p2 = backend
        .upload_part(&key, &upload, 2, test_bytes(41, 1024))
        .await
        .unwrap();
    let invalid = |e: &Error| matches!(e, Error::InvalidInput { .. });
    assert_kind(
        backend
            .complete_multipart(
                &key,
                &upload,
                &[(&p1).into(), (&p2).into()],
                CompletePrecondition::None,
            )
            .await,
        invalid,
        "completion with a 1 KiB non-last part",
    );
    let wrong = CompletedPart {
        number: 1,
        etag: p2.etag.clone(),
    };
    assert_kind(
        backend
            .complete_multipart(&key, &upload, &[wrong], CompletePrecondition::None)
            .await,
        invalid,
        "completion with a wrong ETag",
    );
    assert_kind(
        backend
            .complete_multipart(
                &key,
                &upload,
                &[(&p2).into(), (&p1).into()],
                CompletePrecondition::None,
            )
            .await,
        invalid,
        "completion with parts out of order",
    );
    assert!(
        !backend.exists(&key).await.unwrap(),
        "a refused completion creates nothing"
    );
    assert_eq!(
        backend.list_parts(&key, &upload).await.unwrap().len(),
        2,
        "the upload survives"
    );
    backend
        .complete_multipart(&key, &upload, &[(&p1).into()], CompletePrecondition::None)
        .await
        .unwrap();
    assert_eq!(backend.head(&key).await.unwrap().size, 1024);
}

/// Metadata of exactly the size limit round-trips; one byte more, an uppercase key or a
/// non-ASCII value is refused before anything is stored.
pub async fn metadata_limits(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("metadata");
    let mut metadata = UserMetadata::new();
    let mut total = 0;
    for i in 0.. {
        let name = format!("m{i:02}");
        let room = MAX_USER_METADATA_BYTES - total - name.len();
        let value: String = test_bytes(i, room.min(200))
            .iter()
            .map(|b| char::from(b'A' + b % 26))
            .collect();
        total += name.len() + value.len();
        metadata.insert(name, value);
        if total == MAX_USER_METADATA_BYTES {
            break;
        }
    }
    let options = WriteOptions {
        storage_class: StorageClass::Standard,
        metadata: metadata.clone(),
    };
    backend
        .put(&key, test_bytes(50, 10), &options, &PutPrecondition::None)
        .await
        .unwrap();
    assert_eq!(backend.head(&key).await.unwrap().metadata, metadata);
    let upload_key = params.key("metadata-multipart");
    backend
        .upload_multipart(
            &upload_key,
            &options,
            vec![test_bytes(51, 10)],
            CompletePrecondition::None,
        )
        .await
        .unwrap();
    assert_eq!(backend.head(&upload_key).await.unwrap().metadata, metadata);

    let invalid = |e: &Error| matches!(e, Error::InvalidInput { .. });
    let too_big = options
        .clone()
        .with_metadata("m00", format!("{}x", metadata["m00"]));
    let rejected = params.key("metadata-rejected");
    for bad in [
        too_big,
        standard().with_metadata("Upper", "x"),
        standard().with_metadata("under_score", "x"),
        standard().with_metadata("ok", "ünïcødé"),
        standard().with_metadata("ok", "line\nbreak"),
    ] {
        assert_kind(
            backend
                .put(&rejected, test_bytes(52, 10), &bad, &PutPrecondition::None)
                .await,
            invalid,
            "put with bad metadata",
        );
        assert_kind(
            backend.create_multipart(&rejected, &bad).await,
            invalid,
            "multipart with bad metadata",
        );
    }
    assert!(!backend.exists(&rejected).await.unwrap());
    assert!(backend
        .list_multipart_uploads(&params.prefix)
        .await
        .unwrap()
        .is_empty());
}

/// Archived objects: HEAD works and shows the state; GET is `NotRestored` until a
/// restore has completed; restore requests are idempotent; restored copies expire.
pub async fn archive_and_restore(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("archived.bin");
    let data = test_bytes(60, 5000);
    let options = WriteOptions::new(StorageClass::DeepArchive).with_metadata("kind", "volume");
    backend
        .put(&key, data.clone(), &options, &PutPrecondition::None)
        .await
        .unwrap();
    let upload_key = params.key("archived-multipart.bin");
    backend
        .upload_multipart(
            &upload_key,
            &options,
            vec![test_bytes(61, 100)],
            CompletePrecondition::None,
        )
        .await
        .unwrap();

    let listed = backend.list_all(&params.prefix).await.unwrap();
    assert!(
        listed
            .iter()
            .all(|e| e.storage_class == StorageClass::DeepArchive),
        "{listed:?}"
    );
    for key in [&key, &upload_key] {
        let meta = backend.head(key).await.unwrap();
        assert_eq!(meta.storage_class, StorageClass::DeepArchive);
        assert_eq!(
            meta.metadata, options.metadata,
            "metadata readable on an archived object"
        );
    }

    let not_restored = |e: &Error| matches!(e, Error::NotRestored { .. });
    let state = || async { backend.head(&key).await.unwrap().archive_state };
    match &params.archive {
        ArchiveModel::NoArchive => {
            assert_eq!(state().await, ArchiveState::Available);
            assert_eq!(
                backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
                data
            );
            backend
                .request_restore(&key, 1, RestoreTier::Bulk)
                .await
                .unwrap();
            assert_eq!(state().await, ArchiveState::Available);
        }
        ArchiveModel::InstantRestore => {
            assert_eq!(state().await, ArchiveState::Archived);
            assert_kind(
                backend.get(&key, ByteRange::full()).await.map(|_| ()),
                not_restored,
                "get archived",
            );
            assert_kind(
                backend
                    .get(&upload_key, ByteRange::full())
                    .await
                    .map(|_| ()),
                not_restored,
                "get archived multipart",
            );
            backend
                .request_restore(&key, 2, RestoreTier::Bulk)
                .await
                .unwrap();
            let ArchiveState::Restored { until } = state().await else {
                panic!(
                    "expected Restored after an instant restore, got {:?}",
                    state().await
                )
            };
            assert!(
                until > SystemTime::now(),
                "restored copy expires in the future"
            );
            assert_eq!(
                backend
                    .get_bytes(&key, ByteRange::new(10, 20).unwrap())
                    .await
                    .unwrap(),
                data.slice(10..20)
            );
            backend
                .request_restore(&key, 3, RestoreTier::Standard)
                .await
                .unwrap();
            assert!(matches!(state().await, ArchiveState::Restored { .. }));
        }
        ArchiveModel::DelayedRestore { clock, bulk_thaw } => {
            assert_eq!(state().await, ArchiveState::Archived);
            assert_kind(
                backend.get(&key, ByteRange::full()).await.map(|_| ()),
                not_restored,
                "get archived",
            );
            backend
                .request_restore(&key, 2, RestoreTier::Bulk)
                .await
                .unwrap();
            assert_eq!(state().await, ArchiveState::RestoreInProgress);
            assert_kind(
                backend.get(&key, ByteRange::full()).await.map(|_| ()),
                not_restored,
                "get while thawing",
            );
            clock.advance(*bulk_thaw / 2);
            backend
                .request_restore(&key, 2, RestoreTier::Bulk)
                .await
                .unwrap();
            assert_eq!(
                state().await,
                ArchiveState::RestoreInProgress,
                "a second request changes nothing"
            );
            clock.advance(*bulk_thaw / 2 + Duration::from_secs(1));
            let ArchiveState::Restored { until } = state().await else {
                panic!("expected Restored after the thaw, got {:?}", state().await)
            };
            assert_eq!(
                backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
                data
            );
            backend
                .request_restore(&key, 1, RestoreTier::Bulk)
                .await
                .unwrap();
            assert!(matches!(state().await, ArchiveState::Restored { .. }));
            clock.set(until + Duration::from_secs(1));
            assert_eq!(
                state().await,
                ArchiveState::Archived,
                "restored copies expire"
            );
            assert_kind(
                backend.get(&key, ByteRange::full()).await.map(|_| ()),
                not_restored,
                "get after expiry",
            );
            assert_kind(
                backend
                    .get(&upload_key, ByteRange::full())
                    .await
                    .map(|_| ()),
                not_restored,
                "get archived multipart",
            );
        }
    }

    let standard_key = params.key("standard.bin");
    backend
        .put(
            &standard_key,
            data.clone(),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    backend
        .request_restore(&standard_key, 1, RestoreTier::Bulk)
        .await
        .unwrap();
    assert_eq!(
        backend.head(&standard_key).await.unwrap().archive_state,
        ArchiveState::Available
    );
    assert_kind(
        backend.request_restore(&key, 0, RestoreTier::Bulk).await,
        |e| matches!(e, Error::InvalidInput { .. }),
        "a restore for 0 days",
    );
}

/// `IfAbsent` puts create once and then fail with `Precondition` leaving the object
/// unchanged; `IfMatch` succeeds only with the current ETag; `IfMatch` on a missing key
/// is `NotFound` (as on AWS).
pub async fn conditional_put(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("conditional");
    let precondition = |e: &Error| matches!(e, Error::Precondition { .. });
    let first = backend
        .put(
            &key,
            test_bytes(70, 100),
            &standard(),
            &PutPrecondition::IfAbsent,
        )
        .await
        .unwrap();
    assert_kind(
        backend
            .put(
                &key,
                test_bytes(71, 100),
                &standard(),
                &PutPrecondition::IfAbsent,
            )
            .await,
        precondition,
        "IfAbsent on an existing key",
    );
    assert_eq!(
        backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
        test_bytes(70, 100)
    );

    let second = backend
        .put(
            &key,
            test_bytes(72, 100),
            &standard(),
            &PutPrecondition::IfMatch(first.clone()),
        )
        .await
        .unwrap();
    assert_kind(
        backend
            .put(
                &key,
                test_bytes(73, 100),
                &standard(),
                &PutPrecondition::IfMatch(first),
            )
            .await,
        precondition,
        "IfMatch with a stale ETag",
    );
    assert_eq!(backend.head(&key).await.unwrap().etag, second);
    assert_eq!(
        backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
        test_bytes(72, 100)
    );

    assert_kind(
        backend
            .put(
                &params.key("absent"),
                test_bytes(74, 1),
                &standard(),
                &PutPrecondition::IfMatch(second),
            )
            .await,
        |e| matches!(e, Error::NotFound { .. }),
        "IfMatch on a missing key",
    );
    assert!(!backend.exists(&params.key("absent")).await.unwrap());
}

/// `IfAbsent` completion fails with `Precondition` when the key exists, leaving object and
/// upload in place; it succeeds on a new key.
pub async fn conditional_complete(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("commit");
    backend
        .put(
            &key,
            test_bytes(80, 10),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    let upload = backend.create_multipart(&key, &standard()).await.unwrap();
    let part = backend
        .upload_part(&key, &upload, 1, test_bytes(81, 20))
        .await
        .unwrap();
    assert_kind(
        backend
            .complete_multipart(
                &key,
                &upload,
                &[(&part).into()],
                CompletePrecondition::IfAbsent,
            )
            .await,
        |e| matches!(e, Error::Precondition { .. }),
        "IfAbsent completion on an existing key",
    );
    assert_eq!(
        backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
        test_bytes(80, 10)
    );
    backend.abort_multipart(&key, &upload).await.unwrap();

    let fresh = params.key("commit-new");
    backend
        .upload_multipart(
            &fresh,
            &standard(),
            vec![test_bytes(82, 30)],
            CompletePrecondition::IfAbsent,
        )
        .await
        .unwrap();
    assert_eq!(
        backend.get_bytes(&fresh, ByteRange::full()).await.unwrap(),
        test_bytes(82, 30)
    );
}

/// How many writers race in the race checks: enough that a check-then-write backend is
/// caught, few enough for a server on loopback.
const RACERS: u64 = 8;

/// Checks the outcome of `RACERS` racing `IfAbsent` writes of `key` (write `i` carried
/// `expected(i)`): under [`RaceModel::Atomic`] exactly one won; under any model every
/// loser got `Precondition` and the object is one winner's bytes, whole.
async fn assert_one_winner(
    backend: &dyn StorageBackend,
    params: &SuiteParams,
    key: &ObjectKey,
    results: Vec<Result<zib_storage_backend::ETag, Error>>,
    expected: impl Fn(u64) -> Bytes,
    what: &str,
) -> Vec<u64> {
    let mut winners = Vec::new();
    for (i, result) in (0..).zip(results) {
        match result {
            Ok(_) => winners.push(i),
            Err(Error::Precondition { .. }) => {}
            Err(error) => {
                panic!("{what}: racing write {i} failed with {error:?}, not Precondition")
            }
        }
    }
    match params.races {
        RaceModel::Atomic => assert_eq!(
            winners.len(),
            1,
            "{what}: racing IfAbsent writes {winners:?} all succeeded; exactly one may win"
        ),
        RaceModel::CheckThenWrite => assert!(!winners.is_empty(), "{what}: no racing write won"),
    }
    let stored = backend.get_bytes(key, ByteRange::full()).await.unwrap();
    assert!(
        winners.iter().any(|&i| stored == expected(i)),
        "{what}: the object holds none of the winners' bytes ({} bytes)",
        stored.len()
    );
    winners
}

/// Racing `IfAbsent` puts of one key: exactly one wins, the others get `Precondition`,
/// and the object holds the winner's bytes. (zib's commit is such a race between hosts.)
pub async fn racing_conditional_puts(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("raced");
    let body = |i: u64| test_bytes(300 + i, 64 * 1024);
    let results = futures::future::join_all((0..RACERS).map(|i| {
        let key = key.clone();
        async move {
            backend
                .put(&key, body(i), &standard(), &PutPrecondition::IfAbsent)
                .await
        }
    }))
    .await;
    assert_one_winner(backend, params, &key, results, body, "racing puts").await;
}

/// Racing `IfAbsent` completions of uploads to one key: exactly one wins, the object is
/// its bytes, and each loser's upload is left to abort.
pub async fn racing_conditional_completes(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("raced-upload");
    let body = |i: u64| test_bytes(400 + i, 32 * 1024);
    let mut uploads = Vec::new();
    for i in 0..RACERS {
        let upload = backend.create_multipart(&key, &standard()).await.unwrap();
        let part = backend
            .upload_part(&key, &upload, 1, body(i))
            .await
            .unwrap();
        uploads.push((upload, CompletedPart::from(&part)));
    }
    let results = futures::future::join_all(uploads.iter().map(|(upload, part)| {
        let key = key.clone();
        async move {
            backend
                .complete_multipart(
                    &key,
                    upload,
                    std::slice::from_ref(part),
                    CompletePrecondition::IfAbsent,
                )
                .await
        }
    }))
    .await;
    let winners =
        assert_one_winner(backend, params, &key, results, body, "racing completions").await;
    for (i, (upload, _)) in (0..).zip(&uploads) {
        if !winners.contains(&i) {
            backend.abort_multipart(&key, upload).await.unwrap();
        }
    }
    assert!(backend
        .list_multipart_uploads(&params.prefix)
        .await
        .unwrap()
        .is_empty());
}

/// Parts of one upload sent all at once (the last first) and completed in order make the
/// object of the parts in order.
pub async fn parallel_parts(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("parallel.bin");
    let part_size = MIN_PART_SIZE as usize;
    let parts = [
        test_bytes(500, part_size),
        test_bytes(501, part_size),
        test_bytes(502, part_size),
        test_bytes(503, 1234),
    ];
    let upload = backend.create_multipart(&key, &standard()).await.unwrap();
    let sent = futures::future::join_all((1..=4u32).rev().map(|number| {
        let key = key.clone();
        let upload = upload.clone();
        let data = parts[number as usize - 1].clone();
        async move { backend.upload_part(&key, &upload, number, data).await }
    }))
    .await;
    let mut completed: Vec<CompletedPart> = sent
        .iter()
        .map(|part| CompletedPart::from(part.as_ref().unwrap()))
        .collect();
    completed.sort_by_key(|part| part.number);
    let listed = backend.list_parts(&key, &upload).await.unwrap();
    assert_eq!(
        listed.iter().map(|part| part.number).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "parts sent at once are listed in order"
    );
    backend
        .complete_multipart(&key, &upload, &completed, CompletePrecondition::IfAbsent)
        .await
        .unwrap();
    let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let got = backend.get_bytes(&key, ByteRange::full()).await.unwrap();
    assert!(got == expected, "the object is not its parts in order");
}

/// Readers during an overwrite see the old object or the new one, whole — never a part
/// of the new one, never nothing. (A read may fail retryably; it is then read again.)
pub async fn readers_during_a_write(backend: &dyn StorageBackend, params: &SuiteParams) {
    let key = params.key("read-while-written.bin");
    let len = 2 << 20;
    let versions: Vec<Bytes> = (0..4).map(|i| test_bytes(600 + i, len)).collect();
    backend
        .put(
            &key,
            versions[0].clone(),
            &standard(),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    let writing = std::sync::atomic::AtomicBool::new(true);
    let writer = async {
        for version in &versions[1..] {
            backend
                .put(&key, version.clone(), &standard(), &PutPrecondition::None)
                .await
                .unwrap();
        }
        writing.store(false, Ordering::SeqCst);
    };
    let reader = |n: usize| {
        let key = key.clone();
        let (versions, writing) = (&versions, &writing);
        async move {
            let (mut reads, mut retryable_failures) = (0, 0);
            // At least a few whole reads each, and on until the writer is done.
            while reads < 3 || writing.load(Ordering::SeqCst) {
                match backend.get_bytes(&key, ByteRange::full()).await {
                    Ok(got) => {
                        assert!(
                            versions.contains(&got),
                            "reader {n}: read {} bytes that are no version written whole",
                            got.len()
                        );
                        reads += 1;
                    }
                    // A read that fails retryably hands nothing partial to its caller, and
                    // the retry layer reads again (moto answers a GET racing a PUT of its
                    // key with an HTML 500 now and then).
                    Err(error) if error.is_retryable() => {
                        retryable_failures += 1;
                        assert!(
                            retryable_failures < 100,
                            "reader {n}: reads keep failing: {error}"
                        );
                    }
                    Err(error) => panic!("reader {n}: a read during a write failed: {error:?}"),
                }
                tokio::task::yield_now().await;
            }
        }
    };
    futures::join!(writer, reader(0), reader(1), reader(2));
    assert_eq!(
        backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
        versions[3]
    );
}

/// Keys with spaces, unicode and URL-special characters round-trip through put, head,
/// get, list, multipart and delete.
pub async fn unusual_keys(backend: &dyn StorageBackend, params: &SuiteParams) {
    let names = [
        "with space/file name.bin",
        "ünïcødé/日本語 ☃.bin",
        "plus+percent%20and&amp?q=1#frag",
        "tilde~/quote'\"/star*",
    ];
    for (index, name) in names.iter().enumerate() {
        let key = params.key(name);
        let data = test_bytes(90 + index as u64, 64);
        backend
            .put(&key, data.clone(), &standard(), &PutPrecondition::None)
            .await
            .unwrap();
        assert_eq!(backend.head(&key).await.unwrap().key, key);
        assert_eq!(
            backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
            data
        );
    }
    let multipart = params.key("multi part/ü.bin");
    backend
        .upload_multipart(
            &multipart,
            &standard(),
            vec![test_bytes(99, 10)],
            CompletePrecondition::None,
        )
        .await
        .unwrap();
    let listed: Vec<String> = backend
        .list_all(&params.prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key.as_str()[params.prefix.len()..].to_owned())
        .collect();
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.push("multi part/ü.bin".to_owned());
    expected.sort();
    assert_eq!(listed, expected);
    for name in names {
        backend.delete(&params.key(name)).await.unwrap();
    }
    backend.delete(&multipart).await.unwrap();
    assert!(backend.list_all(&params.prefix).await.unwrap().is_empty());
}

/// Lifecycle rules that abort incomplete uploads: a rule is added, read back exactly,
/// replaced by id without touching other rules; or, for a backend without such billing,
/// both calls answer `NotApplicable`.
pub async fn lifecycle_rules(backend: &dyn StorageBackend, params: &SuiteParams) {
    // Rules are bucket-wide: ids and prefixes carry this test's unique prefix so that
    // tests sharing a bucket do not see each other's rules as their own.
    let tag = params.prefix.trim_end_matches('/').replace('/', "-");
    let rule = |name: &str, prefix: String, days: u32| AbortIncompleteUploadsRule {
        id: format!("{tag}-{name}"),
        prefix,
        days_after_initiation: days,
        enabled: true,
    };
    let users = rule("users", format!("{}other/", params.prefix), 30);
    let ours = rule("ours", params.prefix.clone(), 7);
    match params.lifecycle {
        LifecycleModel::NotApplicable => {
            assert!(
                matches!(
                    backend.abort_incomplete_uploads_rules().await,
                    Err(Error::NotApplicable { .. })
                ),
                "reading lifecycle rules must be NotApplicable"
            );
            assert!(
                matches!(
                    backend.put_abort_incomplete_uploads_rule(&ours).await,
                    Err(Error::NotApplicable { .. })
                ),
                "writing a lifecycle rule must be NotApplicable"
            );
        }
        LifecycleModel::Rules => {
            let mine = |rules: Vec<AbortIncompleteUploadsRule>| -> Vec<AbortIncompleteUploadsRule> {
                rules
                    .into_iter()
                    .filter(|r| r.id.starts_with(&format!("{tag}-")))
                    .collect()
            };
            let before = backend.abort_incomplete_uploads_rules().await.unwrap();
            assert!(mine(before.clone()).is_empty(), "{before:?}");

            backend
                .put_abort_incomplete_uploads_rule(&users)
                .await
                .unwrap();
            backend
                .put_abort_incomplete_uploads_rule(&ours)
                .await
                .unwrap();
            let rules = backend.abort_incomplete_uploads_rules().await.unwrap();
            assert_eq!(mine(rules.clone()), [users.clone(), ours.clone()]);
            for rule in &before {
                assert!(rules.contains(rule), "{rule:?} was lost");
            }
            assert!(ours.covers(&format!("{}x/", params.prefix), 7));
            assert!(!users.covers(&params.prefix, 7));

            // Replaced by id: one rule with the new settings, the other unchanged.
            let changed = AbortIncompleteUploadsRule {
                days_after_initiation: 3,
                enabled: false,
                ..ours.clone()
            };
            backend
                .put_abort_incomplete_uploads_rule(&changed)
                .await
                .unwrap();
            let rules = backend.abort_incomplete_uploads_rules().await.unwrap();
            assert_eq!(mine(rules.clone()), [users.clone(), changed]);
            for rule in &before {
                assert!(rules.contains(rule), "{rule:?} was lost");
            }
        }
    }
}

/// Whether the bucket keeps deleted objects: the backend reports the versioning and
/// Object Lock settings it was set up with, and a delete removes the object from view
/// (listing, HEAD) in every case — a versioned bucket only hides it behind a delete
/// marker, which is what the caller is told by [`BucketProtection::keeps_deleted_data`].
pub async fn bucket_protection(backend: &dyn StorageBackend, params: &SuiteParams) {
    let protection = backend.bucket_protection().await.unwrap();
    assert_eq!(protection, params.protection);
    assert_eq!(
        protection.keeps_deleted_data(),
        params.protection.versioning != Versioning::Unversioned
            || params.protection.object_lock != ObjectLock::Disabled
    );
    let key = params.key("deleted");
    backend
        .put(
            &key,
            test_bytes(9, 100),
            &WriteOptions::new(StorageClass::Standard),
            &PutPrecondition::None,
        )
        .await
        .unwrap();
    backend.delete(&key).await.unwrap();
    assert!(matches!(
        backend.head(&key).await,
        Err(Error::NotFound { .. })
    ));
    assert!(backend.list_all(&params.prefix).await.unwrap().is_empty());
}

/// Calls the macro `$callback` (a path in brackets) with `$args` and the name of every behaviour of the suite: the one
/// list that [`run_all`] and [`storage_conformance_tests!`] both expand, so a behaviour
/// added here runs everywhere.
///
/// [`storage_conformance_tests!`]: crate::storage_conformance_tests
#[doc(hidden)]
#[macro_export]
macro_rules! with_storage_behaviours {
    ([$($callback:tt)*] ($($args:tt)*)) => {
        $($callback)*!($($args)*
            put_get_head_round_trip,
            ranged_reads,
            missing_objects_and_delete,
            list_prefix_and_order,
            list_pagination,
            multipart_round_trip,
            multipart_resume,
            multipart_abort,
            multipart_rules,
            metadata_limits,
            archive_and_restore,
            conditional_put,
            conditional_complete,
            racing_conditional_puts,
            racing_conditional_completes,
            parallel_parts,
            readers_during_a_write,
            unusual_keys,
            lifecycle_rules,
            bucket_protection
        );
    };
}

/// Runs every behaviour of the suite, each under its own prefix.
pub async fn run_all(backend: &dyn StorageBackend, params: &SuiteParams) {
    macro_rules! each {
        ($($name:ident),*) => {$(
            let mut scoped = params.clone();
            scoped.prefix = format!("{}{}/", params.prefix, stringify!($name));
            $name(backend, &scoped).await;
        )*};
    }
    crate::with_storage_behaviours!([each]());
}

/// Defines one `#[tokio::test]` per behaviour of the suite, each calling `$setup()` (an
/// `async fn() -> Option<SuiteTarget>`; `None` means the component is missing and the
/// run did not require it).
#[macro_export]
macro_rules! storage_conformance_tests {
    ($setup:path) => {
        $crate::with_storage_behaviours!([$crate::storage_conformance_tests](@each $setup;));
    };
    (@each $setup:path; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(target) = $setup().await else { return };
            $crate::storage_conformance::$name(&*target.backend, &target.params).await;
            drop(target);
        }
    )*};
}
