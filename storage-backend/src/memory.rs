//! An in-memory backend for tests and simulations, with archive semantics on a clock.
//!
//! Objects in an archive class start [`ArchiveState::Archived`] and refuse reads. A
//! restore request makes them `RestoreInProgress` for the tier's thaw delay, measured on
//! the injected [`Clock`] (a [`FakeClock`](crate::FakeClock) makes a 48-hour thaw a unit
//! test), then `Restored` for the requested number of days, then `Archived` again.
//! Multipart uploads follow S3's rules (minimum part size checked at completion, ETags
//! checked, ascending order). Listing is paginated like S3 (1,000 keys per page by
//! default). Lifecycle rules and the bucket's versioning and Object Lock settings are
//! stored and reported, not enforced. Failures and request counting come from the decorators in
//! [`faults`](crate::faults) and [`counting`](crate::counting), as for every backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::multipart::{check_completion, multipart_etag, single_etag};
use crate::pages::paginate;
use crate::{
    validate_metadata, validate_part_number, AbortIncompleteUploadsRule, ArchiveState,
    BucketProtection, ByteRange, ByteStream, Clock, CompletePrecondition, CompletedPart, ETag,
    Error, ListEntry, MultipartUploadInfo, ObjectKey, ObjectMeta, Operation, PartInfo,
    PutPrecondition, RestoreTier, Result, StorageBackend, StorageClass, UploadId, WriteOptions,
    MIN_PART_SIZE,
};

/// How the in-memory backend behaves.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Thaw delay of a Bulk restore (default 48 hours, Deep Archive's documented bound).
    pub bulk_thaw: Duration,
    /// Thaw delay of a Standard restore (default 12 hours).
    pub standard_thaw: Duration,
    /// Keys per listing page (default 1,000, as S3).
    pub page_size: usize,
    /// Minimum size of every part but the last (default 5 MiB, as S3).
    pub min_part_size: u64,
    /// Size of the chunks `get` streams (default 64 KiB).
    pub chunk_size: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            bulk_thaw: Duration::from_secs(48 * 3600),
            standard_thaw: Duration::from_secs(12 * 3600),
            page_size: 1000,
            min_part_size: MIN_PART_SIZE,
            chunk_size: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
struct StoredObject {
    data: Bytes,
    storage_class: StorageClass,
    metadata: crate::UserMetadata,
    etag: ETag,
    last_modified: SystemTime,
    restore: Option<Restore>,
}

#[derive(Debug, Clone, Copy)]
struct Restore {
    ready_at: SystemTime,
    until: SystemTime,
}

#[derive(Debug)]
struct Upload {
    key: ObjectKey,
    options: WriteOptions,
    initiated: SystemTime,
    parts: BTreeMap<u32, (Bytes, ETag)>,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<ObjectKey, StoredObject>,
    uploads: HashMap<String, Upload>,
    next_upload: u64,
    lifecycle_rules: Vec<AbortIncompleteUploadsRule>,
    protection: BucketProtection,
}

/// The in-memory backend. Clones share the same store.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    config: MemoryConfig,
    clock: Arc<dyn Clock>,
    // A std Mutex, not a tokio one: nothing is awaited while it is held.
    state: Arc<Mutex<State>>,
}

impl MemoryBackend {
    /// An empty store using `clock` for thaws, expiry and timestamps.
    pub fn new(config: MemoryConfig, clock: Arc<dyn Clock>) -> Self {
        MemoryBackend {
            config,
            clock,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of stored objects (for tests).
    pub fn object_count(&self) -> usize {
        self.state().objects.len()
    }

    /// Makes [`bucket_protection`](StorageBackend::bucket_protection) answer `protection`
    /// from now on, as a versioned or Object Lock bucket would. Only the answer changes:
    /// deletes still remove objects outright (no versions are kept).
    pub fn set_bucket_protection(&self, protection: BucketProtection) {
        self.state().protection = protection;
    }

    fn archive_state(&self, object: &StoredObject, now: SystemTime) -> ArchiveState {
        if !object.storage_class.is_archive() {
            return ArchiveState::Available;
        }
        match object.restore {
            None => ArchiveState::Archived,
            Some(restore) if now < restore.ready_at => ArchiveState::RestoreInProgress,
            Some(restore) if now < restore.until => ArchiveState::Restored {
                until: restore.until,
            },
            Some(_) => ArchiveState::Archived,
        }
    }

    fn thaw(&self, tier: RestoreTier) -> Duration {
        match tier {
            RestoreTier::Bulk => self.config.bulk_thaw,
            RestoreTier::Standard => self.config.standard_thaw,
        }
    }

    fn upload<'s>(
        state: &'s mut State,
        key: &ObjectKey,
        upload: &UploadId,
    ) -> Result<&'s mut Upload> {
        match state.uploads.get_mut(upload.as_str()) {
            Some(found) if found.key == *key => Ok(found),
            _ => Err(Error::NoSuchUpload {
                key: key.to_string(),
                upload_id: upload.to_string(),
            }),
        }
    }
}

fn days(days: u32) -> Duration {
    Duration::from_secs(u64::from(days) * 86_400)
}

#[async_trait]
impl StorageBackend for MemoryBackend {
    async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        options: &WriteOptions,
        precondition: &PutPrecondition,
    ) -> Result<ETag> {
        validate_metadata(&options.metadata)?;
        let now = self.clock.now();
        let mut state = self.state();
        let existing = state.objects.get(key);
        let holds = match precondition {
            PutPrecondition::None => true,
            PutPrecondition::IfAbsent => existing.is_none(),
            PutPrecondition::IfMatch(etag) => match existing {
                // As on AWS: `If-Match` on a missing key is 404, not 412.
                None => {
                    return Err(Error::NotFound {
                        key: key.to_string(),
                    })
                }
                Some(object) => object.etag == *etag,
            },
        };
        if !holds {
            return Err(Error::Precondition {
                operation: Operation::Put,
                key: key.to_string(),
            });
        }
        let etag = single_etag(&data);
        state.objects.insert(
            key.clone(),
            StoredObject {
                data,
                storage_class: options.storage_class.clone(),
                metadata: options.metadata.clone(),
                etag: etag.clone(),
                last_modified: now,
                restore: None,
            },
        );
        Ok(etag)
    }

    async fn create_multipart(&self, key: &ObjectKey, options: &WriteOptions) -> Result<UploadId> {
        validate_metadata(&options.metadata)?;
        let initiated = self.clock.now();
        let mut state = self.state();
        state.next_upload += 1;
        let id = format!("memory-upload-{}", state.next_upload);
        state.uploads.insert(
            id.clone(),
            Upload {
                key: key.clone(),
                options: options.clone(),
                initiated,
                parts: BTreeMap::new(),
            },
        );
        Ok(UploadId::new(id))
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> Result<PartInfo> {
        validate_part_number(number)?;
        let mut state = self.state();
        let found = Self::upload(&mut state, key, upload)?;
        let etag = single_etag(&data);
        let size = data.len() as u64;
        found.parts.insert(number, (data, etag.clone()));
        Ok(PartInfo { number, size, etag })
    }

    async fn list_parts(&self, key: &ObjectKey, upload: &UploadId) -> Result<Vec<PartInfo>> {
        let mut state = self.state();
        let found = Self::upload(&mut state, key, upload)?;
        Ok(found
            .parts
            .iter()
            .map(|(number, (data, etag))| PartInfo {
                number: *number,
                size: data.len() as u64,
                etag: etag.clone(),
            })
            .collect())
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        parts: &[CompletedPart],
        precondition: CompletePrecondition,
    ) -> Result<ETag> {
        let now = self.clock.now();
        let mut state = self.state();
        let found = Self::upload(&mut state, key, upload)?;
        let stored: BTreeMap<u32, (u64, ETag)> = found
            .parts
            .iter()
            .map(|(number, (data, etag))| (*number, (data.len() as u64, etag.clone())))
            .collect();
        check_completion(key, &stored, parts, self.config.min_part_size)?;
        if precondition == CompletePrecondition::IfAbsent && state.objects.contains_key(key) {
            return Err(Error::Precondition {
                operation: Operation::CompleteMultipart,
                key: key.to_string(),
            });
        }
        let Some(upload) = state.uploads.remove(upload.as_str()) else {
            return Err(Error::NoSuchUpload {
                key: key.to_string(),
                upload_id: upload.to_string(),
            });
        };
        let mut data = Vec::new();
        let mut etags = Vec::with_capacity(parts.len());
        for part in parts {
            if let Some((bytes, etag)) = upload.parts.get(&part.number) {
                data.extend_from_slice(bytes);
                etags.push(etag);
            }
        }
        let etag = multipart_etag(&etags);
        state.objects.insert(
            key.clone(),
            StoredObject {
                data: Bytes::from(data),
                storage_class: upload.options.storage_class.clone(),
                metadata: upload.options.metadata.clone(),
                etag: etag.clone(),
                last_modified: now,
                restore: None,
            },
        );
        Ok(etag)
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload: &UploadId) -> Result<()> {
        let mut state = self.state();
        Self::upload(&mut state, key, upload)?;
        state.uploads.remove(upload.as_str());
        Ok(())
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let state = self.state();
        let mut uploads: Vec<MultipartUploadInfo> = state
            .uploads
            .iter()
            .filter(|(_, upload)| upload.key.as_str().starts_with(prefix))
            .map(|(id, upload)| MultipartUploadInfo {
                key: upload.key.clone(),
                upload_id: UploadId::new(id.clone()),
                initiated: upload.initiated,
            })
            .collect();
        uploads.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        Ok(uploads)
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let now = self.clock.now();
        let state = self.state();
        let object = state.objects.get(key).ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        Ok(ObjectMeta {
            key: key.clone(),
            size: object.data.len() as u64,
            storage_class: object.storage_class.clone(),
            metadata: object.metadata.clone(),
            etag: object.etag.clone(),
            last_modified: object.last_modified,
            archive_state: self.archive_state(object, now),
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ListEntry>> {
        paginate(move |cursor: Option<String>| async move {
            let state = self.state();
            let start = cursor.unwrap_or_default();
            let mut page: Vec<ListEntry> = state
                .objects
                .iter()
                .filter(|(key, _)| {
                    key.as_str() > start.as_str() && key.as_str().starts_with(prefix)
                })
                .take(self.config.page_size + 1)
                .map(|(key, object)| ListEntry {
                    key: key.clone(),
                    size: object.data.len() as u64,
                    storage_class: object.storage_class.clone(),
                    last_modified: object.last_modified,
                })
                .collect();
            let next = if page.len() > self.config.page_size {
                page.truncate(self.config.page_size);
                page.last().map(|entry| entry.key.to_string())
            } else {
                None
            };
            Ok((page, next))
        })
    }

    async fn get(&self, key: &ObjectKey, range: ByteRange) -> Result<ByteStream> {
        let now = self.clock.now();
        let data = {
            let state = self.state();
            let object = state.objects.get(key).ok_or_else(|| Error::NotFound {
                key: key.to_string(),
            })?;
            if !self.archive_state(object, now).is_readable() {
                return Err(Error::NotRestored {
                    key: key.to_string(),
                });
            }
            let span = range.resolve(key, object.data.len() as u64)?;
            // In range: `resolve` clamps to the object's length, which fits in usize.
            object.data.slice(span.start as usize..span.end as usize)
        };
        let chunk = self.config.chunk_size.max(1);
        let chunks: Vec<Result<Bytes>> = (0..data.len())
            .step_by(chunk)
            .map(|offset| Ok(data.slice(offset..(offset + chunk).min(data.len()))))
            .collect();
        Ok(stream::iter(chunks).boxed())
    }

    async fn request_restore(
        &self,
        key: &ObjectKey,
        days_to_keep: u32,
        tier: RestoreTier,
    ) -> Result<()> {
        if days_to_keep == 0 {
            return Err(Error::invalid(
                "a restore must keep the copy for at least 1 day",
            ));
        }
        let now = self.clock.now();
        let thaw = self.thaw(tier);
        let mut state = self.state();
        let object = state.objects.get_mut(key).ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        if !object.storage_class.is_archive() {
            return Ok(());
        }
        object.restore = match object.restore {
            // In progress: S3 answers 409 RestoreAlreadyInProgress; the contract makes it a no-op.
            Some(restore) if now < restore.ready_at => Some(restore),
            // Already restored: S3 extends the expiry from now.
            Some(restore) if now < restore.until => Some(Restore {
                ready_at: restore.ready_at,
                until: restore.until.max(now + days(days_to_keep)),
            }),
            _ => Some(Restore {
                ready_at: now + thaw,
                until: now + thaw + days(days_to_keep),
            }),
        };
        Ok(())
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.state().objects.remove(key);
        Ok(())
    }

    // The rules are stored, not enforced: nothing here ages uploads out. Enough to test
    // what a caller reads and writes.
    async fn abort_incomplete_uploads_rules(&self) -> Result<Vec<AbortIncompleteUploadsRule>> {
        Ok(self.state().lifecycle_rules.clone())
    }

    async fn put_abort_incomplete_uploads_rule(
        &self,
        rule: &AbortIncompleteUploadsRule,
    ) -> Result<()> {
        let mut state = self.state();
        match state.lifecycle_rules.iter_mut().find(|r| r.id == rule.id) {
            Some(existing) => *existing = rule.clone(),
            None => state.lifecycle_rules.push(rule.clone()),
        }
        Ok(())
    }

    async fn bucket_protection(&self) -> Result<BucketProtection> {
        Ok(self.state().protection)
    }
}
