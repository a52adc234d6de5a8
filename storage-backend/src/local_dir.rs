//! A directory on a local or external disk as object storage.
//!
//! Layout under the root: `objects/<key>` (the key's `/`-segments become directories),
//! `uploads/<upload id>/` (an incomplete multipart upload, below) and `tmp/` (files being
//! written).
//!
//! A multipart upload is built in place: `uploads/<id>/object` is the object file to be,
//! with room for its header reserved at the front, and each part is written straight to
//! its offset in it — part `n` at `(n − 1) × S` past the header, `S` being the first
//! part's size (recorded in `stride` when part 1 is first written), for any part of at
//! most `S` bytes. A part that does not fit that rule (a larger last part, a part 1
//! re-sent with another size) is kept in a file of its own. Each stored part is named by
//! a file `<number>.<etag>` — `.at` appended for a part in place, whose file holds its
//! offset and size — written after the part's bytes are durable. Completion writes the
//! header into the reserved room, copies in the parts kept apart (normally none, or the
//! last), and renames the file into `objects/`: a volume's bytes are written once, not
//! once per part and again into the object. Uploads whose parts do not lie where the
//! rule puts them, and those of older versions (parts named `<number>.<md5>`, no object
//! file), are assembled by copying, as before. A part's ETag is a random token, not a
//! hash of its bytes (nothing reads it but this backend; S3's are opaque too).
//!
//! Each object file holds its metadata beside its bytes in the same file: the 8-byte magic
//! `ZIBLOCL1`, a 4-byte little-endian header length, a JSON header (storage class, user
//! metadata, ETag, write time; an object completed from a multipart upload pads it with
//! spaces to the length reserved when the upload began), then the object's bytes
//! unchanged. One file, because two
//! files (bytes + sidecar) cannot be replaced atomically together: a crash between two
//! renames would pair new metadata with old bytes. To read an object by hand, skip
//! `12 + header length` bytes.
//!
//! Writes are atomic: the file is written in `tmp/`, fsynced, then renamed into place
//! (hard-linked for `IfAbsent`, which fails atomically if the key exists), and the
//! directory is fsynced. Parts stay on disk until completion, so an upload resumes across
//! process restarts. Keys that would collide with a directory (`a` when `a/b` exists, or
//! the reverse) are refused with `InvalidInput`.
//!
//! Not provided: archive semantics (every object is `Available`, whatever its recorded
//! class; restore requests succeed and change nothing), and `IfMatch` atomicity across
//! processes (it is atomic between users of one `LocalDirBackend`, which serialises its
//! renames; two processes writing the same key with `IfMatch` may both succeed).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::multipart::{check_completion, multipart_etag};
use crate::pages::paginate;
use crate::{
    validate_metadata, validate_part_number, AbortIncompleteUploadsRule, ArchiveState,
    BucketProtection, ByteRange, ByteStream, Clock, CompletePrecondition, CompletedPart, ETag,
    Error, ListEntry, MultipartUploadInfo, ObjectKey, ObjectMeta, Operation, PartInfo,
    PutPrecondition, RestoreTier, Result, StorageBackend, StorageClass, UploadId, UserMetadata,
    WriteOptions, MIN_PART_SIZE,
};

const MAGIC: &[u8; 8] = b"ZIBLOCL1";
const UPLOAD_INFO: &str = "upload.json";
/// The object file an upload builds in place, and the first part's size fixing where the
/// others go.
const UPLOAD_OBJECT: &str = "object";
const UPLOAD_STRIDE: &str = "stride";
/// Marks a part stored in place in the upload's object file.
const IN_PLACE: &str = ".at";
const PAGE_SIZE: usize = 1000;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    storage_class: String,
    metadata: UserMetadata,
    etag: String,
    written_unix_secs: u64,
    written_nanos: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadInfo {
    key: String,
    storage_class: String,
    metadata: UserMetadata,
    initiated_unix_secs: u64,
    initiated_nanos: u32,
    /// JSON header bytes reserved at the front of the upload's object file; absent in
    /// uploads of versions that assembled every object by copying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header_room: Option<u32>,
}

impl UploadInfo {
    /// The longest header the completed object can have: its ETag and write time at their
    /// longest (`"<32 hex>-10000"`, 20 and 9 digits).
    fn header_room(&self) -> io::Result<u32> {
        let longest = Header {
            storage_class: self.storage_class.clone(),
            metadata: self.metadata.clone(),
            etag: format!("\"{}-10000\"", "f".repeat(32)),
            written_unix_secs: u64::MAX,
            written_nanos: 999_999_999,
        };
        let json = serde_json::to_vec(&longest).map_err(io::Error::other)?;
        u32::try_from(json.len()).map_err(io::Error::other)
    }
}

/// Where a stored part's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartBytes {
    /// A file of its own.
    File(PathBuf),
    /// In the upload's object file, at this offset from its start.
    InPlace(u64),
}

/// A stored part: its bytes, size, ETag and the file naming it.
#[derive(Debug, Clone)]
struct StoredPart {
    bytes: PartBytes,
    size: u64,
    etag: ETag,
    name: PathBuf,
}

/// A fresh part ETag: random, quoted 32 hex digits like S3's.
fn part_etag() -> String {
    format!("{:032x}", fastrand::u128(..))
}

fn to_unix(time: SystemTime) -> (u64, u32) {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs(), since.subsec_nanos())
}

fn from_unix(secs: u64, nanos: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

/// The local directory backend.
#[derive(Debug, Clone)]
pub struct LocalDirBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    clock: Arc<dyn Clock>,
    min_part_size: u64,
    // Serialises the check-then-rename of conditional writes and completions. A std Mutex:
    // it is only taken inside blocking file-system closures.
    renames: Mutex<()>,
}

impl LocalDirBackend {
    /// Opens the store in `root`, which must be an existing directory; creates its
    /// `objects/`, `uploads/` and `tmp/` subdirectories if needed.
    ///
    /// # Errors
    /// [`Error::BucketNotFound`] when `root` is not a directory; [`Error::Io`] when the
    /// subdirectories cannot be created.
    pub fn open(root: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(Error::BucketNotFound {
                bucket: root.display().to_string(),
            });
        }
        for sub in ["objects", "uploads", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|source| io_error(Operation::Put, &dir, source))?;
        }
        Ok(LocalDirBackend {
            inner: Arc::new(Inner {
                root,
                clock,
                min_part_size: MIN_PART_SIZE,
                renames: Mutex::new(()),
            }),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    async fn blocking<T, F>(&self, operation: Operation, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|join| Error::Protocol {
                operation,
                key: String::new(),
                message: "file-system task failed".to_owned(),
                source: Some(Box::new(join)),
            })?
    }
}

fn io_error(operation: Operation, path: &Path, source: io::Error) -> Error {
    Error::Io {
        operation,
        path: path.to_owned(),
        source,
    }
}

fn no_such_upload(key: &ObjectKey, upload: &UploadId) -> Error {
    Error::NoSuchUpload {
        key: key.to_string(),
        upload_id: upload.to_string(),
    }
}

fn collision(key: &ObjectKey) -> Error {
    Error::invalid(format!(
        "key {key:?} collides with a directory of other keys in the local store (a key cannot be both \
         an object and a prefix of other objects' segments); choose another key"
    ))
}

impl Inner {
    fn object_path(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.root.join("objects");
        path.extend(key.segments());
        path
    }

    fn upload_dir(&self, upload: &UploadId) -> Option<PathBuf> {
        // Upload ids come back from callers (journals): only ever our own 32 hex digits, so
        // a forged id cannot name a path outside `uploads/`.
        let id = upload.as_str();
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.root.join("uploads").join(id))
    }

    fn temp_file(&self, operation: Operation) -> Result<(PathBuf, File)> {
        let path = self
            .root
            .join("tmp")
            .join(format!("{:032x}", fastrand::u128(..)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| io_error(operation, &path, source))?;
        Ok((path, file))
    }

    /// Writes header + body into a fresh temp file, fsynced.
    fn write_temp(
        &self,
        operation: Operation,
        header: &Header,
        body: &mut dyn FnMut(&mut File) -> io::Result<()>,
    ) -> Result<PathBuf> {
        let (path, mut file) = self.temp_file(operation)?;
        let result = (|| {
            let json = serde_json::to_vec(header).map_err(io::Error::other)?;
            let len = u32::try_from(json.len()).map_err(io::Error::other)?;
            file.write_all(MAGIC)?;
            file.write_all(&len.to_le_bytes())?;
            file.write_all(&json)?;
            body(&mut file)?;
            file.sync_all()
        })();
        if let Err(source) = result {
            let _ = fs::remove_file(&path);
            return Err(io_error(operation, &path, source));
        }
        Ok(path)
    }

    /// Moves a finished temp file to the object's path, if the key is free (`if_absent`)
    /// or `check` accepts the current object.
    fn commit(
        &self,
        operation: Operation,
        key: &ObjectKey,
        temp: &Path,
        if_absent: bool,
        check: &dyn Fn(Option<&Header>) -> Result<()>,
    ) -> Result<()> {
        let result = self.commit_inner(operation, key, temp, if_absent, check);
        if result.is_err() {
            let _ = fs::remove_file(temp);
        }
        result
    }

    fn commit_inner(
        &self,
        operation: Operation,
        key: &ObjectKey,
        temp: &Path,
        if_absent: bool,
        check: &dyn Fn(Option<&Header>) -> Result<()>,
    ) -> Result<()> {
        let dest = self.object_path(key);
        let parent = dest.parent().unwrap_or(&self.root).to_owned();
        match fs::create_dir_all(&parent) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists
                ) =>
            {
                return Err(collision(key))
            }
            Err(source) => return Err(io_error(operation, &parent, source)),
        }
        if dest.is_dir() {
            return Err(collision(key));
        }
        let _guard = self.renames.lock().unwrap_or_else(PoisonError::into_inner);
        let current = match read_header(&dest) {
            Ok((header, _, _)) => Some(header),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(io_error(operation, &dest, source)),
        };
        check(current.as_ref())?;
        if if_absent {
            // link(2) fails with EEXIST if another process created the key meanwhile.
            match fs::hard_link(temp, &dest) {
                Ok(()) => {
                    let _ = fs::remove_file(temp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::Precondition {
                        operation,
                        key: key.to_string(),
                    })
                }
                Err(source) => return Err(io_error(operation, &dest, source)),
            }
        } else {
            fs::rename(temp, &dest).map_err(|source| io_error(operation, &dest, source))?;
        }
        sync_dir(&parent).map_err(|source| io_error(operation, &parent, source))
    }

    fn read_upload(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        operation: Operation,
    ) -> Result<(PathBuf, UploadInfo)> {
        let dir = self
            .upload_dir(upload)
            .ok_or_else(|| no_such_upload(key, upload))?;
        let info_path = dir.join(UPLOAD_INFO);
        let info = match fs::read(&info_path) {
            Ok(bytes) => {
                serde_json::from_slice::<UploadInfo>(&bytes).map_err(|e| Error::Corrupt {
                    key: info_path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(no_such_upload(key, upload))
            }
            Err(source) => return Err(io_error(operation, &info_path, source)),
        };
        if info.key != key.as_str() {
            return Err(no_such_upload(key, upload));
        }
        Ok((dir, info))
    }

    /// The stored parts by number, the newest file winning if a crash left two.
    fn parts(&self, dir: &Path, operation: Operation) -> Result<BTreeMap<u32, StoredPart>> {
        let mut parts: BTreeMap<u32, (StoredPart, SystemTime)> = BTreeMap::new();
        let entries = fs::read_dir(dir).map_err(|source| io_error(operation, dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| io_error(operation, dir, source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((number, rest)) = name.split_once('.') else {
                continue;
            };
            let Ok(number) = number.parse::<u32>() else {
                continue;
            };
            let path = entry.path();
            let meta = entry
                .metadata()
                .map_err(|source| io_error(operation, &path, source))?;
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let (token, bytes, size) = match rest.strip_suffix(IN_PLACE) {
                Some(token) => {
                    let text = fs::read_to_string(&path)
                        .map_err(|source| io_error(operation, &path, source))?;
                    // Written without an fsync of its own (the directory's makes the
                    // name durable): after a crash it may be empty, and the part is then
                    // not stored — the caller sends it again, as after any lost part.
                    let Some((offset, size)) = text
                        .split_once(' ')
                        .and_then(|(o, s)| Some((o.parse().ok()?, s.parse().ok()?)))
                    else {
                        continue;
                    };
                    (token, PartBytes::InPlace(offset), size)
                }
                None => (rest, PartBytes::File(path.clone()), meta.len()),
            };
            let newer = parts.get(&number).is_none_or(|(_, seen)| modified >= *seen);
            if newer {
                let part = StoredPart {
                    bytes,
                    size,
                    etag: ETag::new(format!("\"{token}\"")),
                    name: path,
                };
                parts.insert(number, (part, modified));
            }
        }
        Ok(parts.into_iter().map(|(n, (part, _))| (n, part)).collect())
    }

    /// Where part `number` of `size` bytes goes in the upload's object file, if in place:
    /// part 1 fixes the stride the first time it is written; a part fits in place when it
    /// is no longer than the stride (a re-sent part 1 of another size does not).
    fn place(
        &self,
        dir: &Path,
        info: &UploadInfo,
        number: u32,
        size: u64,
    ) -> io::Result<Option<u64>> {
        let Some(room) = info.header_room else {
            return Ok(None);
        };
        let base = 12 + u64::from(room);
        let stride_path = dir.join(UPLOAD_STRIDE);
        let stride = match fs::read_to_string(&stride_path) {
            Ok(text) => text.trim().parse::<u64>().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let stride = match (stride, number) {
            (Some(stride), _) => stride,
            (None, 1) if size > 0 => {
                // create_new: of two first writes of part 1 at once, one fixes the stride.
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&stride_path)
                {
                    Ok(mut file) => {
                        file.write_all(size.to_string().as_bytes())?;
                        file.sync_all()?;
                        sync_dir(dir)?;
                        size
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return self.place(dir, info, number, size)
                    }
                    Err(e) => return Err(e),
                }
            }
            (None, _) => return Ok(None),
        };
        if size > stride || (number == 1 && size != stride) {
            return Ok(None);
        }
        Ok(Some(base + u64::from(number - 1) * stride))
    }

    fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        self.open_object(key, Operation::Head)
            .map(|(_, meta, _)| meta)
    }

    /// Opens `key`'s file once and reads its header: the open file, the object's
    /// metadata, and where its data starts. A reader keeps reading this file, so an
    /// overwrite (a rename over it) between reading the header and the data cannot mix
    /// two versions.
    fn open_object(
        &self,
        key: &ObjectKey,
        operation: Operation,
    ) -> Result<(File, ObjectMeta, u64)> {
        let path = self.object_path(key);
        let (file, header, offset, size) = match open_object_file(&path) {
            Ok(found) => found,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::NotADirectory
                        | io::ErrorKind::IsADirectory
                ) =>
            {
                return Err(Error::NotFound {
                    key: key.to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Error::Corrupt {
                    key: key.to_string(),
                    reason: e.to_string(),
                })
            }
            Err(source) => return Err(io_error(operation, &path, source)),
        };
        let meta = ObjectMeta {
            key: key.clone(),
            size,
            storage_class: StorageClass::from_name(&header.storage_class),
            metadata: header.metadata,
            etag: ETag::new(header.etag),
            last_modified: from_unix(header.written_unix_secs, header.written_nanos),
            archive_state: ArchiveState::Available,
        };
        Ok((file, meta, offset))
    }

    fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> Result<(Vec<ListEntry>, Option<String>)> {
        let objects = self.root.join("objects");
        // Walk only the directory the prefix's complete segments name.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let mut start = objects.clone();
        if !dir_part.is_empty() {
            if dir_part
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
            {
                return Ok((Vec::new(), None));
            }
            start.extend(dir_part.split('/'));
        }
        let mut keys = Vec::new();
        walk(&start, &objects, &mut keys)
            .map_err(|source| io_error(Operation::List, &start, source))?;
        keys.retain(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a));
        keys.sort();
        let more = keys.len() > PAGE_SIZE;
        keys.truncate(PAGE_SIZE);
        let mut page = Vec::with_capacity(keys.len());
        for key in keys {
            let Ok(key) = ObjectKey::new(key) else {
                continue;
            };
            match self.head(&key) {
                Ok(meta) => page.push(ListEntry {
                    key,
                    size: meta.size,
                    storage_class: meta.storage_class,
                    last_modified: meta.last_modified,
                }),
                // Deleted between the walk and now.
                Err(Error::NotFound { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        let next = if more {
            page.last().map(|e| e.key.to_string())
        } else {
            None
        };
        Ok((page, next))
    }
}

/// Whether an upload's object file can become the object: every part in place lies where
/// the parts, in order, put it, and the header fits the room reserved for it. Then only
/// the parts kept apart are copied in.
fn in_place_order(parts: &[&StoredPart], base: u64, header: &Header, room: u32) -> bool {
    let fits = serde_json::to_vec(header)
        .is_ok_and(|json| u32::try_from(json.len()).is_ok_and(|len| len <= room));
    let mut offset = base;
    for part in parts {
        if part.bytes != PartBytes::InPlace(offset) && matches!(part.bytes, PartBytes::InPlace(_)) {
            return false;
        }
        offset += part.size;
    }
    fits
}

/// Copies each part, in order, to the end of `file`: from its own file, or from its
/// place in the upload's `object` file.
fn copy_parts(parts: &[&StoredPart], object: &Path, file: &mut File) -> io::Result<()> {
    for part in parts {
        match &part.bytes {
            PartBytes::File(path) => {
                io::copy(&mut File::open(path)?, file)?;
            }
            PartBytes::InPlace(offset) => {
                let mut source = File::open(object)?;
                source.seek(SeekFrom::Start(*offset))?;
                let copied = io::copy(&mut source.take(part.size), file)?;
                if copied != part.size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("a part in place ends after {copied} of {} bytes", part.size),
                    ));
                }
            }
        }
    }
    Ok(())
}

impl Inner {
    /// Turns an upload's object file into the object: copies in the parts kept apart,
    /// writes the header into its reserved room (padded with spaces), cuts the file to
    /// the parts' end and syncs it. Returns a second name of the file, in `tmp/`, for
    /// [`commit`](Self::commit): a refused completion removes that name only, and the
    /// upload stays whole.
    fn finish_in_place(
        &self,
        operation: Operation,
        dir: &Path,
        room: u32,
        header: &Header,
        parts: &[&StoredPart],
    ) -> Result<PathBuf> {
        let object = dir.join(UPLOAD_OBJECT);
        let temp = self
            .root
            .join("tmp")
            .join(format!("{:032x}", fastrand::u128(..)));
        let result = (|| -> io::Result<()> {
            let mut file = OpenOptions::new().read(true).write(true).open(&object)?;
            let base = 12 + u64::from(room);
            let mut offset = base;
            for part in parts {
                if let PartBytes::File(path) = &part.bytes {
                    file.seek(SeekFrom::Start(offset))?;
                    io::copy(&mut File::open(path)?, &mut file)?;
                }
                offset += part.size;
            }
            let mut head = Vec::with_capacity(usize::try_from(base).map_err(io::Error::other)?);
            head.extend_from_slice(MAGIC);
            head.extend_from_slice(&room.to_le_bytes());
            head.extend_from_slice(&serde_json::to_vec(header).map_err(io::Error::other)?);
            head.resize(head.capacity(), b' ');
            std::os::unix::fs::FileExt::write_all_at(&file, &head, 0)?;
            file.set_len(offset)?;
            file.sync_all()?;
            fs::hard_link(&object, &temp)
        })();
        result.map_err(|source| io_error(operation, &object, source))?;
        Ok(temp)
    }
}

/// Appends the keys of every file under `dir` (relative to `objects`).
fn walk(dir: &Path, objects: &Path, keys: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), objects, keys)?;
        } else if kind.is_file() {
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(objects) else {
                continue;
            };
            let segments: Option<Vec<&str>> = relative.iter().map(|s| s.to_str()).collect();
            if let Some(segments) = segments {
                keys.push(segments.join("/"));
            }
        }
    }
    Ok(())
}

/// Reads an object file's header: (header, offset of the bytes, size of the bytes).
/// The header of the object file at `path`, where its data starts and how long it is.
fn read_header(path: &Path) -> io::Result<(Header, u64, u64)> {
    open_object_file(path).map(|(_, header, offset, len)| (header, offset, len))
}

/// Opens the object file at `path` and reads its header: the file (positioned at its
/// data), the header, where the data starts and how long it is.
fn open_object_file(path: &Path) -> io::Result<(File, Header, u64, u64)> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "a directory, not an object",
        ));
    }
    let total = meta.len();
    let mut fixed = [0u8; 12];
    file.read_exact(&mut fixed).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "object file shorter than its header",
        )
    })?;
    if &fixed[..8] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "object file does not start with ZIBLOCL1",
        ));
    }
    let len = u64::from(u32::from_le_bytes([
        fixed[8], fixed[9], fixed[10], fixed[11],
    ]));
    if 12 + len > total {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "object header runs past the end of the file",
        ));
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact(&mut json)?;
    let header: Header =
        serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((file, header, 12 + len, total - 12 - len))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[async_trait]
impl StorageBackend for LocalDirBackend {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        precondition: &PutPrecondition,
    ) -> Result<ETag> {
        validate_metadata(&options.metadata)?;
        let (secs, nanos) = to_unix(self.inner.clock.now());
        let etag = crate::multipart::single_etag(&data);
        let header = Header {
            storage_class: options.storage_class.as_str().to_owned(),
            metadata: options.metadata.clone(),
            etag: etag.as_str().to_owned(),
            written_unix_secs: secs,
            written_nanos: nanos,
        };
        let key = key.clone();
        let precondition = precondition.clone();
        self.blocking(Operation::Put, move |inner| {
            let temp =
                inner.write_temp(Operation::Put, &header, &mut |file| file.write_all(&data))?;
            let check = |current: Option<&Header>| match (&precondition, current) {
                (PutPrecondition::IfMatch(_), None) => Err(Error::NotFound {
                    key: key.to_string(),
                }),
                (PutPrecondition::IfMatch(want), Some(current))
                    if current.etag != want.as_str() =>
                {
                    Err(Error::Precondition {
                        operation: Operation::Put,
                        key: key.to_string(),
                    })
                }
                (PutPrecondition::IfAbsent, Some(_)) => Err(Error::Precondition {
                    operation: Operation::Put,
                    key: key.to_string(),
                }),
                _ => Ok(()),
            };
            let if_absent = precondition == PutPrecondition::IfAbsent;
            inner.commit(Operation::Put, &key, &temp, if_absent, &check)?;
            Ok(etag)
        })
        .await
    }

    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        validate_metadata(&options.metadata)?;
        let (secs, nanos) = to_unix(self.inner.clock.now());
        let info = UploadInfo {
            key: key.to_string(),
            storage_class: options.storage_class.as_str().to_owned(),
            metadata: options.metadata.clone(),
            initiated_unix_secs: secs,
            initiated_nanos: nanos,
            header_room: None,
        };
        self.blocking(Operation::CreateMultipart, move |inner| {
            let op = Operation::CreateMultipart;
            let mut info = info;
            info.header_room = Some(
                info.header_room()
                    .map_err(|source| io_error(op, &inner.root, source))?,
            );
            let id = UploadId::new(format!("{:032x}", fastrand::u128(..)));
            let dir = inner
                .upload_dir(&id)
                .ok_or_else(|| Error::invalid("generated upload id"))?;
            fs::create_dir(&dir).map_err(|source| io_error(op, &dir, source))?;
            File::create(dir.join(UPLOAD_OBJECT)).map_err(|source| io_error(op, &dir, source))?;
            let json =
                serde_json::to_vec(&info).map_err(|e| io_error(op, &dir, io::Error::other(e)))?;
            let (temp, mut file) = inner.temp_file(op)?;
            file.write_all(&json)
                .and_then(|()| file.sync_all())
                .and_then(|()| fs::rename(&temp, dir.join(UPLOAD_INFO)))
                .and_then(|()| sync_dir(&dir))
                .map_err(|source| io_error(op, &dir, source))?;
            Ok(id)
        })
        .await
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        validate_part_number(number)?;
        let key = key.clone();
        let upload = upload.clone();
        self.blocking(Operation::UploadPart, move |inner| {
            let op = Operation::UploadPart;
            let (dir, info) = inner.read_upload(&key, &upload, op)?;
            let token = part_etag();
            let size = data.len() as u64;
            let place = inner
                .place(&dir, &info, number, size)
                .map_err(|source| io_error(op, &dir, source))?;
            let name = match place {
                Some(offset) => {
                    // The bytes first, durably; then the file naming the part.
                    let object = dir.join(UPLOAD_OBJECT);
                    OpenOptions::new()
                        .write(true)
                        .open(&object)
                        .and_then(|file| {
                            std::os::unix::fs::FileExt::write_all_at(&file, &data, offset)?;
                            file.sync_data()
                        })
                        .map_err(|source| io_error(op, &object, source))?;
                    let (temp, mut file) = inner.temp_file(op)?;
                    file.write_all(format!("{offset} {size}").as_bytes())
                        .map_err(|source| io_error(op, &temp, source))?;
                    (temp, dir.join(format!("{number:05}.{token}{IN_PLACE}")))
                }
                None => {
                    let (temp, mut file) = inner.temp_file(op)?;
                    file.write_all(&data)
                        .and_then(|()| file.sync_all())
                        .map_err(|source| io_error(op, &temp, source))?;
                    (temp, dir.join(format!("{number:05}.{token}")))
                }
            };
            let (temp, dest) = name;
            let old = inner.parts(&dir, op)?;
            fs::rename(&temp, &dest).map_err(|source| io_error(op, &dest, source))?;
            if let Some(old) = old.get(&number) {
                if old.name != dest {
                    let _ = fs::remove_file(&old.name);
                }
            }
            sync_dir(&dir).map_err(|source| io_error(op, &dir, source))?;
            Ok(PartInfo {
                number,
                size,
                etag: ETag::new(format!("\"{token}\"")),
            })
        })
        .await
    }

    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        let key = key.clone();
        let upload = upload.clone();
        self.blocking(Operation::ListParts, move |inner| {
            let (dir, _) = inner.read_upload(&key, &upload, Operation::ListParts)?;
            Ok(inner
                .parts(&dir, Operation::ListParts)?
                .into_iter()
                .map(|(number, part)| PartInfo {
                    number,
                    size: part.size,
                    etag: part.etag,
                })
                .collect())
        })
        .await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        precondition: CompletePrecondition,
    ) -> Result<ETag> {
        let key = key.clone();
        let upload = upload.clone();
        let parts = parts.to_vec();
        let now = to_unix(self.inner.clock.now());
        self.blocking(Operation::CompleteMultipart, move |inner| {
            let op = Operation::CompleteMultipart;
            let (dir, info) = inner.read_upload(&key, &upload, op)?;
            let stored = inner.parts(&dir, op)?;
            let sizes = stored
                .iter()
                .map(|(n, part)| (*n, (part.size, part.etag.clone())))
                .collect();
            check_completion(&key, &sizes, &parts, inner.min_part_size)?;
            if precondition == CompletePrecondition::IfAbsent && inner.object_path(&key).is_file() {
                return Err(Error::Precondition {
                    operation: op,
                    key: key.to_string(),
                });
            }
            let etags: Vec<&ETag> = parts.iter().map(|p| &p.etag).collect();
            let etag = multipart_etag(&etags);
            let header = Header {
                storage_class: info.storage_class.clone(),
                metadata: info.metadata.clone(),
                etag: etag.as_str().to_owned(),
                written_unix_secs: now.0,
                written_nanos: now.1,
            };
            // check_completion found every part stored.
            let chosen: Vec<&StoredPart> =
                parts.iter().filter_map(|p| stored.get(&p.number)).collect();
            let temp = match info.header_room {
                Some(room) if in_place_order(&chosen, 12 + u64::from(room), &header, room) => {
                    inner.finish_in_place(op, &dir, room, &header, &chosen)?
                }
                _ => {
                    let object = dir.join(UPLOAD_OBJECT);
                    inner.write_temp(op, &header, &mut |file| copy_parts(&chosen, &object, file))?
                }
            };
            let check = |current: Option<&Header>| match (precondition, current) {
                (CompletePrecondition::IfAbsent, Some(_)) => Err(Error::Precondition {
                    operation: op,
                    key: key.to_string(),
                }),
                _ => Ok(()),
            };
            inner.commit(
                op,
                &key,
                &temp,
                precondition == CompletePrecondition::IfAbsent,
                &check,
            )?;
            // The object is committed; a crash before this line leaves the upload listed
            // as incomplete, and aborting it then loses nothing.
            fs::remove_dir_all(&dir).map_err(|source| io_error(op, &dir, source))?;
            Ok(etag)
        })
        .await
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        let key = key.clone();
        let upload = upload.clone();
        self.blocking(Operation::AbortMultipart, move |inner| {
            let (dir, _) = inner.read_upload(&key, &upload, Operation::AbortMultipart)?;
            fs::remove_dir_all(&dir)
                .map_err(|source| io_error(Operation::AbortMultipart, &dir, source))
        })
        .await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let prefix = prefix.to_owned();
        self.blocking(Operation::ListMultipartUploads, move |inner| {
            let op = Operation::ListMultipartUploads;
            let uploads = inner.root.join("uploads");
            let mut found = Vec::new();
            for entry in fs::read_dir(&uploads).map_err(|source| io_error(op, &uploads, source))? {
                let entry = entry.map_err(|source| io_error(op, &uploads, source))?;
                let Ok(bytes) = fs::read(entry.path().join(UPLOAD_INFO)) else {
                    continue;
                };
                let Ok(info) = serde_json::from_slice::<UploadInfo>(&bytes) else {
                    continue;
                };
                if !info.key.starts_with(&prefix) {
                    continue;
                }
                let Ok(key) = ObjectKey::new(info.key) else {
                    continue;
                };
                found.push(MultipartUploadInfo {
                    key,
                    upload_id: UploadId::new(entry.file_name().to_string_lossy().into_owned()),
                    initiated: from_unix(info.initiated_unix_secs, info.initiated_nanos),
                });
            }
            found.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
            Ok(found)
        })
        .await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let key = key.clone();
        self.blocking(Operation::Head, move |inner| inner.head(&key))
            .await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        paginate(move |cursor: Option<String>| {
            let prefix = prefix.to_owned();
            async move {
                self.blocking(Operation::List, move |inner| {
                    inner.list_page(&prefix, cursor.as_deref())
                })
                .await
            }
        })
    }

    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        let path = self.inner.object_path(key);
        let owned_key = key.clone();
        // The header and the data come from one open file: one version, whole.
        let (file, offset, span) = self
            .blocking(Operation::Get, move |inner| {
                let (file, meta, offset) = inner.open_object(&owned_key, Operation::Get)?;
                let span = range.resolve(&owned_key, meta.size)?;
                Ok((file, offset, span))
            })
            .await?;
        let mut file = tokio::fs::File::from_std(file);
        file.seek(SeekFrom::Start(offset + span.start))
            .await
            .map_err(|source| io_error(Operation::Get, &path, source))?;
        let len = span.end - span.start;
        let reader = file.take(len);
        // `tokio::fs` hands every read to a pool thread and back: 1 MiB reads make that
        // 1,024 hand-overs per GiB read, not 16,384. A small object gets a small buffer.
        let capacity = usize::try_from(len).unwrap_or(usize::MAX).clamp(1, 1 << 20);
        Ok(
            tokio_util::io::ReaderStream::with_capacity(reader, capacity)
                .map_err(move |source| io_error(Operation::Get, &path, source))
                .boxed(),
        )
    }

    async fn request_restore(&self, key: &ObjectKey, days: u32, _tier: RestoreTier) -> Result<()> {
        if days == 0 {
            return Err(Error::invalid(
                "a restore must keep the copy for at least 1 day",
            ));
        }
        // No archive semantics: every object is readable; the request only checks existence.
        self.head(key).await.map(|_| ())
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let key = key.clone();
        self.blocking(Operation::Delete, move |inner| {
            let path = inner.object_path(&key);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::IsADirectory => return Ok(()),
                Err(source) => return Err(io_error(Operation::Delete, &path, source)),
            }
            // Remove directories left empty, so their names can become keys again.
            let objects = inner.root.join("objects");
            let mut dir = path.parent();
            while let Some(current) = dir {
                if current == objects || fs::remove_dir(current).is_err() {
                    break;
                }
                dir = current.parent();
            }
            Ok(())
        })
        .await
    }

    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        Err(no_lifecycle(Operation::GetLifecycle))
    }

    async fn put_abort_incomplete_uploads_rule(
        &self,
        _rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        Err(no_lifecycle(Operation::PutLifecycle))
    }

    // A deleted file is gone and its space free: no versions, no locks.
    async fn bucket_protection(&self) -> Result<BucketProtection> {
        Ok(BucketProtection::default())
    }
}

/// Lifecycle rules exist to stop S3 billing the parts of abandoned uploads; a local
/// directory bills nothing, and `clean_up` removes its abandoned uploads.
fn no_lifecycle(operation: Operation) -> Error {
    Error::NotApplicable {
        operation,
        reason: "no lifecycle rule is needed: local directories have no incomplete-upload \
                 billing"
            .to_owned(),
    }
}
