//! Send stream → volumes: cutting a stream into encrypted volume objects uploaded as
//! multipart uploads, journalled so that a run killed at any instant resumes without
//! re-sending what the bucket confirmed.
//!
//! Memory is bounded by (parts in flight + 1) × part size plus [`crate::hashing::QUEUE`] + 1
//! chunks of the source (and one segment: a volume's last part also carries its final
//! segment), whatever the stream's size: the stream is never held whole, and a part is released as
//! soon as its upload finishes.
//!
//! Every part's plaintext range and check (the SHA-256 of its segments' tags, for a
//! backup this zib began) are journalled before the part is sent, and a resumed upload re-encrypts the stream with
//! the journalled salts, comparing each journalled part's check before that part is
//! sent under its salt: parts the bucket confirmed are skipped, and any difference
//! discards the volume so it is uploaded again under a fresh salt. The checks read the
//! tags of parts already in memory; nothing extra is buffered.
//!
//! - [`shape`]: how a stream is cut (volume and part sizes);
//! - [`crate::hashing`]: the stream's and each volume's SHA-256, on a thread of their own;
//! - [`parts`]: each part's plaintext range and check;
//! - [`volume`]: one volume's encryption, part uploads and completion;
//! - [`buffers`]: part buffers, reused from one part to the next;
//! - [`recorder`]: the journal as the upload proceeds;
//! - this module: the pass over the stream, volume by volume.

mod buffers;
pub(crate) mod parts;
pub(crate) mod recorder;
pub(crate) mod shape;
mod volume;

use std::collections::HashMap;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use zib_crypto::VolumeSalt;
use zib_storage_backend::{UploadId, WriteOptions};

use parts::PartCheck;
use shape::PartCutting;
pub use shape::VolumeShape;

use self::buffers::PartBuffers;
use self::recorder::{volume_key, Recorder};
use self::volume::{Finished, Resume, VerifyVolume, VolumeSink, VolumeUpload};
use crate::context::Repo;
use crate::error::{Error, Result};
use crate::format::layout::{ObjectRole, MAX_VOLUME_INDEX};
use crate::format::metadata::sealed_metadata;
use crate::format::records::{VolumeListEntry, VolumeRecord};
use crate::hashing::PlaintextHashes;
use crate::ids::{BackupId, DatasetId};
use crate::progress::Progress;
use crate::state::journal::VolumeState;

/// Where a stream goes: the backup's ids and this run's shape (the journal's volume and
/// part sizes and part cutting, this run's parts in flight).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    dataset: DatasetId,
    backup: BackupId,
    shape: VolumeShape,
    /// Where each volume's final segment goes: as the journal says.
    cutting: PartCutting,
    /// What each part's check is a digest of: as the journal says.
    part_check: PartCheck,
}

/// What a stream became: the figures the manifest records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadedStream {
    /// Plaintext bytes of the stream.
    pub(crate) stream_len: u64,
    /// SHA-256 of the stream.
    pub(crate) stream_sha256: [u8; 32],
    /// One entry per volume, in order.
    pub(crate) volumes: Vec<VolumeListEntry>,
    /// Multipart parts uploaded over all volumes.
    pub(crate) parts: u64,
}

impl UploadedStream {
    /// Sum of the volume objects' lengths.
    pub(crate) fn stored_len(&self) -> u64 {
        self.volumes
            .iter()
            .map(|volume| volume.ciphertext_len)
            .sum()
    }
}

/// What one pass over the stream achieved.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Every volume is stored.
    Uploaded(UploadedStream),
    /// The stream differs from what the journal recorded at volume `volume`: that volume
    /// and the later ones were discarded (uploads aborted, objects deleted, journal
    /// updated); the caller restarts the stream, and they are uploaded afresh with new
    /// salts.
    StreamChanged {
        /// The first volume that differed.
        volume: u32,
    },
}

/// Encrypts `stream` into the volumes of the backup `recorder`'s journal describes,
/// resuming what the journal says is already stored.
///
/// On any error — the storage's or the stream's own — the journal and the uploads are
/// kept, and the next run resumes them. Once every volume is uploaded, each is checked
/// in the bucket (HEAD, size) before this returns, as the commit that follows must not
/// name a volume that is gone.
///
/// # Errors
///
/// The stream's error, the storage error that stopped the upload, journal write errors,
/// [`Error::VolumeMissing`] when a volume is gone from the bucket once all are uploaded.
pub(crate) async fn upload_journalled<S, E>(
    repository: &Repo,
    stream: S,
    progress: &dyn Progress,
    expected_len: Option<u64>,
    recorder: &mut Recorder,
) -> Result<Attempt>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    Error: From<E>,
{
    let target = recorder.target();
    target.shape.validate()?;
    recorder.source_failed = false;
    let result = upload_volumes(
        repository,
        &target,
        stream,
        progress,
        expected_len,
        recorder,
    )
    .await;
    if let Ok(Attempt::Uploaded(uploaded)) = &result {
        confirm_stored(repository, recorder, uploaded).await?;
    }
    // Whatever stopped the upload — the storage, or the send itself (killed, out of
    // memory, dataset busy) — the journal and the uploads are kept: a resumed run checks
    // every journalled part against the new stream before relying on it, so nothing
    // stored is trusted blindly, and terabytes already uploaded are not thrown away.
    // (A backup whose snapshot is gone is discarded by the next run, which cannot send
    // it again.)
    if let Err(error) = &result {
        tracing::warn!(%error, source_failed = recorder.source_failed, "the upload stopped; its journal is kept and the next run resumes it");
        // Confirmations are saved with the next part's entry, so the last ones that
        // arrived before the failure are in memory only: saved now, the next run does
        // not send those parts again. (A killed run loses them; see `part_confirmed`.)
        if let Err(save_error) = recorder.save().await {
            tracing::warn!(error = %save_error, "could not save the last part confirmations; the next run sends those parts again");
        }
    }
    result
}

/// Checks, just before the commit, that every volume of `uploaded` is in the bucket with
/// the size the upload produced. A missing or altered one (removed by another host's
/// clean-up, or a lifecycle rule) is discarded with the later ones, so the next run
/// uploads them again under fresh salts, and the backup fails: a manifest naming a
/// missing volume would only be found out at restore.
async fn confirm_stored(
    repository: &Repo,
    recorder: &mut Recorder,
    uploaded: &UploadedStream,
) -> Result<()> {
    let target = recorder.target();
    for volume in &uploaded.volumes {
        let key = volume_key(repository, &target, volume.index)?;
        let found = match repository.backend().head(&key).await {
            Ok(meta) if meta.size == volume.ciphertext_len => continue,
            Ok(meta) => Some(meta.size),
            Err(zib_storage_backend::Error::NotFound { .. }) => None,
            Err(error) => return Err(error.into()),
        };
        if let Err(error) = recorder.discard_from(repository, volume.index).await {
            tracing::warn!(%error, "could not discard the volumes after a missing one; the next run retries");
        }
        return Err(Error::VolumeMissing {
            key: key.to_string(),
            backup: target.backup,
            expected: volume.ciphertext_len,
            found,
        });
    }
    Ok(())
}

/// The next non-empty chunk, `None` at the end of the stream; a stream error marks the
/// source as failed.
async fn next_chunk<S, E>(stream: &mut S, recorder: &mut Recorder) -> Result<Option<Bytes>>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    Error: From<E>,
{
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => return Ok(Some(chunk)),
            Err(error) => {
                recorder.source_failed = true;
                return Err(error.into());
            }
        }
    }
    Ok(None)
}

/// One pass over the stream, volume by volume.
async fn upload_volumes<S, E>(
    repository: &Repo,
    target: &Target,
    mut stream: S,
    progress: &dyn Progress,
    expected_len: Option<u64>,
    recorder: &mut Recorder,
) -> Result<Attempt>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    Error: From<E>,
{
    let shape = &target.shape;
    let hashes = PlaintextHashes::start();
    let buffers = PartBuffers::new(shape.largest_part_len(), shape.parts_in_flight.max(1));
    let mut volumes = Vec::new();
    let mut parts = 0u64;
    let mut offset = 0u64;
    let mut next = next_chunk(&mut stream, recorder).await?;
    loop {
        let index = u32::try_from(volumes.len())
            .ok()
            .filter(|index| *index <= MAX_VOLUME_INDEX)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "the stream needs more than {MAX_VOLUME_INDEX} volumes of {} bytes, more \
                     than format v1 can name: raise the volume size",
                    shape.volume_plaintext_len
                ))
            })?;
        progress.phase(&format!("volume {}", index + 1));
        let mut volume =
            open_volume_sink(repository, target, index, offset, recorder, &buffers).await?;
        let filled = async {
            while let Some(mut chunk) = next.take() {
                let room = shape.volume_plaintext_len - volume.plaintext_len();
                if room == 0 {
                    next = Some(chunk);
                    break;
                }
                let rest = (chunk.len() as u64 > room)
                    .then(|| chunk.split_off(usize::try_from(room).unwrap_or(usize::MAX)));
                hashes.update(&chunk).await?;
                volume.push(chunk, recorder, progress).await?;
                recorder.report_stream(offset + volume.plaintext_len(), progress, expected_len);
                if volume.changed() {
                    return Ok(());
                }
                match rest {
                    Some(rest) => next = Some(rest),
                    None => next = next_chunk(&mut stream, recorder).await?,
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        let filled = match filled {
            Ok(()) => hashes.end_volume().await,
            Err(error) => Err(error),
        };
        let finished = match filled {
            Ok(plaintext_sha256) => volume.finish(plaintext_sha256, recorder, progress).await?,
            Err(error) => {
                // The upload is kept for the next run whatever failed: its parts are
                // journalled and will be checked against the stream then.
                volume.stop(false).await;
                return Err(error);
            }
        };
        let Finished::Stored {
            entry,
            parts: volume_parts,
        } = finished
        else {
            tracing::warn!(
                volume = index,
                "the send stream differs from the journalled one; this volume is uploaded \
                 again with a fresh salt"
            );
            recorder.discard_from(repository, index).await?;
            return Ok(Attempt::StreamChanged { volume: index });
        };
        offset += entry.plaintext_len;
        parts += volume_parts;
        volumes.push(entry);
        if next.is_none() {
            break;
        }
    }
    // The stream ended before volumes an earlier read had journalled: they belong to no
    // stream now.
    let produced = u32::try_from(volumes.len()).unwrap_or(u32::MAX);
    if recorder.previous(produced).is_some() {
        recorder.discard_from(repository, produced).await?;
    }
    let stream_sha256 = hashes.end_stream().await?;
    Ok(Attempt::Uploaded(UploadedStream {
        stream_len: offset,
        stream_sha256,
        volumes,
        parts,
    }))
}

/// Opens volume `index`: resumes the journalled upload, verifies a journalled completed
/// volume, or starts a fresh upload with a fresh salt.
async fn open_volume_sink<'r>(
    repository: &'r Repo,
    target: &Target,
    index: u32,
    stream_offset: u64,
    recorder: &mut Recorder,
    buffers: &PartBuffers,
) -> Result<VolumeSink<'r>> {
    let key = volume_key(repository, target, index)?;
    let backend = repository.backend();
    let upload_sink = |upload: UploadId, salt: &VolumeSalt| {
        VolumeUpload::new(
            repository,
            target,
            key.clone(),
            upload,
            index,
            salt,
            buffers.clone(),
        )
    };
    if let Some(previous) = recorder.previous(index) {
        match &previous.state {
            VolumeState::Completed {
                ciphertext_len,
                parts,
                ..
            } => match backend.head(&key).await {
                Ok(meta) if meta.size == *ciphertext_len => {
                    if let Some(entry) = previous.completed_entry() {
                        return Ok(VolumeSink::Verify(VerifyVolume::new(entry, *parts)));
                    }
                }
                Ok(_) | Err(zib_storage_backend::Error::NotFound { .. }) => {
                    tracing::warn!(%key, "a journalled volume is missing or altered in the bucket; uploading it again");
                }
                Err(error) => return Err(error.into()),
            },
            VolumeState::Uploading { parts } => {
                let upload = UploadId::new(previous.upload_id.clone());
                let listed = match backend.list_parts(&key, &upload).await {
                    Ok(listed) => Some(Some(
                        listed
                            .into_iter()
                            .map(|part| (part.number, part.etag.as_str().to_owned()))
                            .collect::<HashMap<u32, String>>(),
                    )),
                    Err(zib_storage_backend::Error::NoSuchUpload { .. }) => {
                        match backend.head(&key).await {
                            // Completed just before the previous run died: verify only.
                            Ok(_) => Some(None),
                            Err(zib_storage_backend::Error::NotFound { .. }) => {
                                tracing::warn!(%key, "the journalled upload is gone (aborted by a clean-up?); uploading the volume again");
                                None
                            }
                            Err(error) => return Err(error.into()),
                        }
                    }
                    Err(error) => return Err(error.into()),
                };
                if let Some(listed) = listed {
                    let salt = VolumeSalt::from_bytes(previous.salt);
                    let resume = Resume {
                        journalled: parts.clone(),
                        listed,
                    };
                    return Ok(VolumeSink::Upload(
                        upload_sink(upload, &salt)?.resuming(resume),
                    ));
                }
            }
        }
        recorder.discard_from(repository, index).await?;
    }

    let role = ObjectRole::Volume {
        dataset: target.dataset,
        backup: target.backup,
        index,
    };
    let record = VolumeRecord {
        dataset_id: target.dataset,
        backup_id: target.backup,
        volume_index: index,
        stream_offset,
    };
    let metadata = sealed_metadata(
        &role,
        repository.id(),
        repository.data_key(),
        &record.encode(),
    )?;
    // A fresh salt per upload attempt: the same key and nonce never meet two different
    // plaintexts, even if this volume is re-sent after the stream changed.
    let salt = VolumeSalt::generate()?;
    let options = WriteOptions {
        storage_class: repository.archive_class().clone(),
        metadata,
    };
    let upload = backend.create_multipart(&key, &options).await?;
    recorder
        .start_volume(index, &upload, *salt.as_bytes())
        .await?;
    abort_strays(repository, &key, &upload).await;
    Ok(VolumeSink::Upload(upload_sink(upload, &salt)?))
}

/// Aborts every other upload to `key` than `ours`. The key names this backup, which
/// only this run (holding the dataset's lock) uploads, so another upload there is a
/// stray: a `CreateMultipartUpload` whose answer was lost and was retried, or one a run
/// killed before journalling it left behind. Each would be billed at S3 Standard rates
/// until a lifecycle rule or an age-based clean-up removed it. Best effort: a stray
/// left here is removed by the next clean-up, as its backup is then committed.
async fn abort_strays(repository: &Repo, key: &zib_storage_backend::ObjectKey, ours: &UploadId) {
    let uploads = match repository
        .backend()
        .list_multipart_uploads(key.as_str())
        .await
    {
        Ok(uploads) => uploads,
        Err(error) => {
            tracing::debug!(%key, %error, "could not list the uploads of a new volume");
            return;
        }
    };
    for stray in uploads
        .into_iter()
        .filter(|upload| upload.key == *key && upload.upload_id != *ours)
    {
        match repository
            .backend()
            .abort_multipart(key, &stray.upload_id)
            .await
        {
            Ok(()) | Err(zib_storage_backend::Error::NoSuchUpload { .. }) => {
                tracing::info!(%key, upload = %stray.upload_id, "aborted a stray upload of this volume");
            }
            Err(error) => {
                tracing::debug!(%key, %error, "could not abort a stray upload; clean-up will");
            }
        }
    }
}
