//! Streams ⇄ volumes: cutting a send stream into encrypted volume objects uploaded as
//! multipart uploads, and reading them back into a verified stream.
//!
//! Memory is bounded by (parts in flight + 1) × part size plus one chunk of the source,
//! whatever the stream's size: the stream is never held whole, and a part is released as
//! soon as its upload finishes.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use ring::digest::{Context, SHA256};
use tokio::task::JoinHandle;
use zib_crypto::{
    VolumeDecryptor, VolumeEncryptor, VolumeIdentity, VolumeSalt, HEADER_LEN,
    SEGMENT_CIPHERTEXT_LEN,
};
use zib_storage_backend::{
    ByteRange, CompletePrecondition, CompletedPart, ObjectKey, PartInfo, UploadId, WriteOptions,
    MIN_PART_SIZE,
};

use crate::error::{Error, Result};
use crate::ids::{BackupId, DatasetId};
use crate::layout::{ObjectRole, MAX_VOLUME_INDEX};
use crate::metadata::sealed_metadata;
use crate::progress::Progress;
use crate::records::{volume_list_hash, ManifestRecord, VolumeListEntry, VolumeRecord};
use crate::repository::Repository;

/// How a stream is cut: volume size, part size, upload parallelism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeShape {
    /// Plaintext bytes per volume (the last volume holds the rest). Sized for monthly
    /// restore batches: a volume is never split across months.
    pub volume_plaintext_len: u64,
    /// Target bytes per multipart part (rounded up to whole encryption segments).
    pub part_len: u64,
    /// Parts uploading at once.
    pub parts_in_flight: usize,
}

impl Default for VolumeShape {
    /// 1 GiB volumes in 64 MiB parts, 4 in flight: 16 parts per volume, about 16,400
    /// upload requests per TiB, and at most (4 + 1) × 64 MiB of parts in memory.
    fn default() -> Self {
        Self {
            volume_plaintext_len: 1 << 30,
            part_len: 64 << 20,
            parts_in_flight: 4,
        }
    }
}

impl VolumeShape {
    /// Checks the shape against S3's multipart limits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the offending value and the allowed range.
    pub fn validate(&self) -> Result<()> {
        if self.part_len < MIN_PART_SIZE {
            return Err(Error::InvalidInput(format!(
                "part size {} is below S3's minimum of {MIN_PART_SIZE} bytes (5 MiB)",
                self.part_len
            )));
        }
        if self.volume_plaintext_len == 0 {
            return Err(Error::InvalidInput(
                "volume size must be at least 1 byte".into(),
            ));
        }
        if self.parts_in_flight == 0 {
            return Err(Error::InvalidInput(
                "parts in flight must be at least 1".into(),
            ));
        }
        let parts = zib_crypto::ciphertext_len(self.volume_plaintext_len).div_ceil(self.part_len);
        if parts > 10_000 {
            return Err(Error::InvalidInput(format!(
                "a {}-byte volume in {}-byte parts needs {parts} parts; S3 allows 10,000: \
                 raise the part size or lower the volume size",
                self.volume_plaintext_len, self.part_len
            )));
        }
        Ok(())
    }

    /// Ciphertext length of the first part (header plus whole segments) and of every
    /// later part but the last: at least `part_len`, ending on a segment boundary.
    fn aligned_part_lens(&self) -> (usize, usize) {
        let first_segments =
            (self.part_len.saturating_sub(HEADER_LEN)).div_ceil(SEGMENT_CIPHERTEXT_LEN);
        let segments = self.part_len.div_ceil(SEGMENT_CIPHERTEXT_LEN);
        (
            usize::try_from(HEADER_LEN + first_segments * SEGMENT_CIPHERTEXT_LEN)
                .unwrap_or(usize::MAX),
            usize::try_from(segments * SEGMENT_CIPHERTEXT_LEN).unwrap_or(usize::MAX),
        )
    }
}

/// What a stream became: the figures the manifest records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedStream {
    /// Plaintext bytes of the stream.
    pub stream_len: u64,
    /// SHA-256 of the stream.
    pub stream_sha256: [u8; 32],
    /// One entry per volume, in order.
    pub volumes: Vec<VolumeListEntry>,
    /// Multipart parts uploaded over all volumes.
    pub parts: u64,
}

impl UploadedStream {
    /// Sum of the volume objects' lengths.
    pub fn stored_len(&self) -> u64 {
        self.volumes
            .iter()
            .map(|volume| volume.ciphertext_len)
            .sum()
    }
}

/// Encrypts `stream` into volumes of `backup` and uploads them; the manifest is the
/// caller's (it commits).
///
/// On any failure — the stream's own error (a `zfs send` that exited non-zero), a
/// storage error — the volume being uploaded is aborted and the volumes already
/// completed are deleted (best effort), so nothing is left that costs money; nothing is
/// ever committed here.
///
/// # Errors
///
/// The stream's error, or the storage error that stopped the upload.
pub async fn upload_stream<S, E>(
    repository: &Repository,
    dataset: DatasetId,
    backup: BackupId,
    stream: S,
    shape: &VolumeShape,
    progress: &dyn Progress,
    expected_len: Option<u64>,
) -> Result<UploadedStream>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    Error: From<E>,
{
    shape.validate()?;
    let mut completed_keys = Vec::new();
    let result = upload_volumes(
        repository,
        dataset,
        backup,
        stream,
        shape,
        progress,
        expected_len,
        &mut completed_keys,
    )
    .await;
    if result.is_err() {
        for key in completed_keys {
            if let Err(error) = repository.backend().delete(&key).await {
                tracing::warn!(%key, %error, "could not delete a volume of a failed backup; `zib cleanup` will");
            }
        }
    }
    result
}

#[allow(clippy::too_many_arguments)] // private: the public wrapper names each one
async fn upload_volumes<S, E>(
    repository: &Repository,
    dataset: DatasetId,
    backup: BackupId,
    mut stream: S,
    shape: &VolumeShape,
    progress: &dyn Progress,
    expected_len: Option<u64>,
    completed_keys: &mut Vec<ObjectKey>,
) -> Result<UploadedStream>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    Error: From<E>,
{
    let mut stream_hash = Context::new(&SHA256);
    let mut volumes = Vec::new();
    let mut parts = 0u64;
    let mut offset = 0u64;
    let mut next = next_chunk(&mut stream).await?;
    loop {
        let index = u32::try_from(volumes.len())
            .ok()
            .filter(|index| *index <= MAX_VOLUME_INDEX)
            .ok_or_else(|| {
                Error::InvalidInput(
                    "the stream needs more volumes than format v1 can name: raise the volume size"
                        .into(),
                )
            })?;
        let mut volume =
            VolumeUpload::start(repository, dataset, backup, index, offset, shape).await?;
        let filled = async {
            while let Some(mut chunk) = next.take() {
                let room = shape.volume_plaintext_len - volume.plaintext_len;
                if room == 0 {
                    next = Some(chunk);
                    break;
                }
                let rest = (chunk.len() as u64 > room)
                    .then(|| chunk.split_off(usize::try_from(room).unwrap_or(usize::MAX)));
                stream_hash.update(&chunk);
                progress.stream_bytes(chunk.len() as u64, expected_len);
                volume.push(chunk).await?;
                match rest {
                    Some(rest) => next = Some(rest),
                    None => next = next_chunk(&mut stream).await?,
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        if let Err(error) = filled {
            volume.abort().await;
            return Err(error);
        }
        let key = volume.key.clone();
        let (entry, volume_parts) = volume.finish(progress).await?;
        completed_keys.push(key);
        offset += entry.plaintext_len;
        parts += volume_parts;
        volumes.push(entry);
        if next.is_none() {
            break;
        }
    }
    let mut stream_sha256 = [0u8; 32];
    stream_sha256.copy_from_slice(stream_hash.finish().as_ref());
    Ok(UploadedStream {
        stream_len: offset,
        stream_sha256,
        volumes,
        parts,
    })
}

/// The next non-empty chunk, `None` at the end of the stream.
async fn next_chunk<S, E>(stream: &mut S) -> Result<Option<Bytes>>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    Error: From<E>,
{
    while let Some(item) = stream.next().await {
        let chunk = item?;
        if !chunk.is_empty() {
            return Ok(Some(chunk));
        }
    }
    Ok(None)
}

/// One volume's multipart upload in progress.
struct VolumeUpload<'r> {
    repository: &'r Repository,
    key: ObjectKey,
    upload: UploadId,
    index: u32,
    encryptor: Option<VolumeEncryptor>,
    hash: Context,
    plaintext_len: u64,
    ciphertext_len: u64,
    buffer: BytesMut,
    first_part_len: usize,
    part_len: usize,
    parts_in_flight: usize,
    next_part: u32,
    in_flight: VecDeque<JoinHandle<zib_storage_backend::Result<PartInfo>>>,
    done: Vec<PartInfo>,
}

impl<'r> VolumeUpload<'r> {
    async fn start(
        repository: &'r Repository,
        dataset: DatasetId,
        backup: BackupId,
        index: u32,
        stream_offset: u64,
        shape: &VolumeShape,
    ) -> Result<Self> {
        let role = ObjectRole::Volume {
            dataset,
            backup,
            index,
        };
        let key = repository.key(&role)?;
        let record = VolumeRecord {
            dataset_id: dataset,
            backup_id: backup,
            volume_index: index,
            stream_offset,
        };
        let metadata = sealed_metadata(
            &role,
            repository.id(),
            repository.data_key(),
            &record.encode(),
        )?;
        // A fresh salt per upload attempt: the same key and nonce never meet two
        // different plaintexts, even if this volume is re-sent after the stream changed.
        let salt = VolumeSalt::generate()?;
        let encryptor = VolumeEncryptor::new(
            repository.data_key(),
            VolumeIdentity {
                repository_id: *repository.id().as_bytes(),
                backup_id: *backup.as_bytes(),
                volume_index: index,
            },
            &salt,
        )?;
        let options = WriteOptions {
            storage_class: repository.archive_class().clone(),
            metadata,
        };
        let upload = repository
            .backend()
            .create_multipart(&key, &options)
            .await?;
        let (first_part_len, part_len) = shape.aligned_part_lens();
        Ok(Self {
            repository,
            key,
            upload,
            index,
            encryptor: Some(encryptor),
            hash: Context::new(&SHA256),
            plaintext_len: 0,
            ciphertext_len: 0,
            buffer: BytesMut::with_capacity(first_part_len),
            first_part_len,
            part_len,
            parts_in_flight: shape.parts_in_flight,
            next_part: 1,
            in_flight: VecDeque::new(),
            done: Vec::new(),
        })
    }

    fn current_part_target(&self) -> usize {
        if self.next_part == 1 {
            self.first_part_len
        } else {
            self.part_len
        }
    }

    async fn push(&mut self, chunk: Bytes) -> Result<()> {
        self.hash.update(&chunk);
        self.plaintext_len += chunk.len() as u64;
        let encryptor = self
            .encryptor
            .as_mut()
            .ok_or_else(|| Error::InvalidInput("volume already finished".into()))?;
        for piece in encryptor.push_chunk(chunk)? {
            self.append(&piece).await?;
        }
        Ok(())
    }

    /// Copies ciphertext into the part being filled. A full part is sent when more bytes
    /// arrive, so a part that the volume's last bytes fill exactly is left for `finish`.
    ///
    /// Each part is one allocation of exactly its size, filled once: growing one buffer
    /// instead would copy a part's bytes again on every doubling, and a part split off it
    /// would pin the buffer's whole allocation — pages the next part had already
    /// written — while it uploads (measured: `engine/benches/pipeline.rs`).
    async fn append(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let target = self.current_part_target();
            if self.buffer.len() == target {
                let full =
                    std::mem::replace(&mut self.buffer, BytesMut::with_capacity(self.part_len));
                self.send_part(full.freeze()).await?;
                continue;
            }
            let take = (target - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    async fn send_part(&mut self, part: Bytes) -> Result<()> {
        while self.in_flight.len() >= self.parts_in_flight {
            self.wait_oldest().await?;
        }
        self.ciphertext_len += part.len() as u64;
        let number = self.next_part;
        self.next_part += 1;
        let backend = self.repository.backend().clone();
        let key = self.key.clone();
        let upload = self.upload.clone();
        self.in_flight.push_back(tokio::spawn(async move {
            backend.upload_part(&key, &upload, number, part).await
        }));
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.pop_front() {
            let part = handle.await.map_err(|error| {
                Error::InvalidInput(format!("a part upload task failed: {error}"))
            })??;
            self.done.push(part);
        }
        Ok(())
    }

    async fn finish(mut self, progress: &dyn Progress) -> Result<(VolumeListEntry, u64)> {
        let result = async {
            let encryptor = self
                .encryptor
                .take()
                .ok_or_else(|| Error::InvalidInput("volume already finished".into()))?;
            let tail = encryptor.finish()?;
            self.append(&tail).await?;
            let last = std::mem::take(&mut self.buffer).freeze();
            self.send_part(last).await?;
            while !self.in_flight.is_empty() {
                self.wait_oldest().await?;
            }
            for part in &self.done {
                progress.part_uploaded(part.size);
            }
            self.done.sort_by_key(|part| part.number);
            let parts: Vec<CompletedPart> = self.done.iter().map(CompletedPart::from).collect();
            self.repository
                .backend()
                .complete_multipart(
                    &self.key,
                    &self.upload,
                    &parts,
                    CompletePrecondition::IfAbsent,
                )
                .await?;
            Ok::<_, Error>(parts.len() as u64)
        }
        .await;
        match result {
            Ok(parts) => {
                let mut plaintext_sha256 = [0u8; 32];
                plaintext_sha256.copy_from_slice(self.hash.clone().finish().as_ref());
                Ok((
                    VolumeListEntry {
                        index: self.index,
                        plaintext_len: self.plaintext_len,
                        ciphertext_len: self.ciphertext_len,
                        plaintext_sha256,
                    },
                    parts,
                ))
            }
            Err(error) => {
                self.abort().await;
                Err(error)
            }
        }
    }

    async fn abort(mut self) {
        // Let in-flight parts settle first, so none lands after the abort.
        while let Some(handle) = self.in_flight.pop_front() {
            let _ = handle.await;
        }
        if let Err(error) = self
            .repository
            .backend()
            .abort_multipart(&self.key, &self.upload)
            .await
        {
            tracing::warn!(key = %self.key, %error, "could not abort a multipart upload; `zib cleanup` will");
        }
    }
}

/// Reads a committed backup's volumes back, decrypting and verifying them, as one
/// plaintext stream for `zfs receive` / `btrfs receive`.
///
/// Every volume's plaintext is checked against the manifest as it streams: a volume
/// that fails to decrypt, a length or hash that differs, a missing volume, or a volume
/// list or stream hash that differs ends the stream with an error naming the object —
/// the receiving side sees the error as the stream's last item and MUST discard what
/// it received. The volumes must be readable (restored from the archive class).
pub fn download_stream(
    repository: Arc<Repository>,
    manifest: ManifestRecord,
) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    let state = DownloadState {
        repository,
        manifest,
        next_index: 0,
        current: None,
        entries: Vec::new(),
        stream_hash: Context::new(&SHA256),
        stream_len: 0,
        finished: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.finished {
            return None;
        }
        match state.next().await {
            Ok(Some(bytes)) => Some((Ok(bytes), state)),
            Ok(None) => None,
            Err(error) => {
                state.finished = true;
                Some((Err(error), state))
            }
        }
    })
}

async fn open_volume(
    repository: &Repository,
    manifest: &ManifestRecord,
    index: u32,
) -> Result<CurrentVolume> {
    let role = ObjectRole::Volume {
        dataset: manifest.dataset_id,
        backup: manifest.backup_id,
        index,
    };
    let key = repository.key(&role)?;
    let body = repository.backend().get(&key, ByteRange::full()).await?;
    let decryptor = VolumeDecryptor::new(
        repository.data_key(),
        VolumeIdentity {
            repository_id: *repository.id().as_bytes(),
            backup_id: *manifest.backup_id.as_bytes(),
            volume_index: index,
        },
    );
    Ok(CurrentVolume {
        key,
        body,
        decryptor: Some(decryptor),
        hash: Context::new(&SHA256),
        plaintext_len: 0,
        ciphertext_len: 0,
    })
}

struct CurrentVolume {
    key: ObjectKey,
    body: zib_storage_backend::ByteStream,
    decryptor: Option<VolumeDecryptor>,
    hash: Context,
    plaintext_len: u64,
    ciphertext_len: u64,
}

struct DownloadState {
    repository: Arc<Repository>,
    manifest: ManifestRecord,
    next_index: u32,
    current: Option<CurrentVolume>,
    entries: Vec<VolumeListEntry>,
    stream_hash: Context,
    stream_len: u64,
    finished: bool,
}

impl DownloadState {
    async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.current.is_none() {
                if self.next_index == self.manifest.volume_count {
                    self.verify_end()?;
                    self.finished = true;
                    return Ok(None);
                }
                self.current =
                    Some(open_volume(&self.repository, &self.manifest, self.next_index).await?);
                self.next_index += 1;
            }
            let Some(volume) = self.current.as_mut() else {
                continue;
            };
            match volume.body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    volume.ciphertext_len += chunk.len() as u64;
                    let decryptor = volume
                        .decryptor
                        .as_mut()
                        .ok_or_else(|| Error::InvalidInput("volume already finished".into()))?;
                    let mut out = BytesMut::new();
                    for piece in decryptor.push_chunk(chunk)? {
                        out.extend_from_slice(&piece);
                    }
                    if !out.is_empty() {
                        let out = out.freeze();
                        volume.hash.update(&out);
                        volume.plaintext_len += out.len() as u64;
                        self.stream_hash.update(&out);
                        self.stream_len += out.len() as u64;
                        return Ok(Some(out));
                    }
                }
                None => {
                    let mut volume = self
                        .current
                        .take()
                        .ok_or_else(|| Error::InvalidInput("no volume is being read".into()))?;
                    let decryptor = volume
                        .decryptor
                        .take()
                        .ok_or_else(|| Error::InvalidInput("volume already finished".into()))?;
                    let tail = decryptor.finish()?;
                    volume.hash.update(&tail);
                    volume.plaintext_len += tail.len() as u64;
                    self.stream_hash.update(&tail);
                    self.stream_len += tail.len() as u64;
                    let mut plaintext_sha256 = [0u8; 32];
                    plaintext_sha256.copy_from_slice(volume.hash.finish().as_ref());
                    self.entries.push(VolumeListEntry {
                        index: self.next_index - 1,
                        plaintext_len: volume.plaintext_len,
                        ciphertext_len: volume.ciphertext_len,
                        plaintext_sha256,
                    });
                    let expected = self.manifest.volume_plaintext_len;
                    let is_last = self.next_index == self.manifest.volume_count;
                    if (!is_last && volume.plaintext_len != expected)
                        || volume.plaintext_len > expected
                    {
                        return Err(Error::Corrupt {
                            object: volume.key.as_str().to_owned(),
                            reason: format!(
                                "holds {} plaintext bytes; the manifest says volumes hold {expected}",
                                volume.plaintext_len
                            ),
                        });
                    }
                    if !tail.is_empty() {
                        return Ok(Some(tail));
                    }
                }
            }
        }
    }

    fn verify_end(&mut self) -> Result<()> {
        let manifest_key = self
            .repository
            .key(&ObjectRole::Manifest {
                dataset: self.manifest.dataset_id,
                backup: self.manifest.backup_id,
            })?
            .as_str()
            .to_owned();
        let corrupt = |reason: String| Error::Corrupt {
            object: manifest_key.clone(),
            reason,
        };
        if volume_list_hash(&self.entries) != self.manifest.volume_list_sha256 {
            return Err(corrupt(
                "the volumes read back differ from the manifest's volume list (a volume was swapped, replaced or altered)".into(),
            ));
        }
        if self.stream_len != self.manifest.stream_len {
            return Err(corrupt(format!(
                "the stream read back is {} bytes; the manifest says {}",
                self.stream_len, self.manifest.stream_len
            )));
        }
        let mut stream_sha256 = [0u8; 32];
        stream_sha256.copy_from_slice(self.stream_hash.clone().finish().as_ref());
        if stream_sha256 != self.manifest.stream_sha256 {
            return Err(corrupt(
                "the stream read back does not match the manifest's SHA-256".into(),
            ));
        }
        Ok(())
    }
}
