//! Streams ⇄ volumes: cutting a send stream into encrypted volume objects uploaded as
//! multipart uploads, and reading them back into a verified stream.
//!
//! Memory is bounded by (parts in flight + 1) × part size plus one chunk of the source,
//! whatever the stream's size: the stream is never held whole, and a part is released as
//! soon as its upload finishes.
//!
//! With a journal ([`upload_resumable`], and `back_up`), every part's plaintext range and
//! SHA-256 are journalled before the part is sent, and a resumed upload re-encrypts the
//! stream with the journalled salts, checking each journalled part against its hash
//! before that part is sent under its salt: parts the bucket confirmed are skipped, and
//! any difference discards the volume so it is uploaded again under a fresh salt. The
//! checks hash as the bytes stream by; nothing extra is buffered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use ring::digest::{Context, SHA256};
use tokio::task::JoinHandle;
use zib_crypto::{
    VolumeDecryptor, VolumeEncryptor, VolumeIdentity, VolumeSalt, HEADER_LEN,
    SEGMENT_CIPHERTEXT_LEN, SEGMENT_LEN,
};
use zib_storage_backend::{
    ByteRange, CompletePrecondition, CompletedPart, ETag, ObjectKey, PartInfo, UploadId,
    WriteOptions, MIN_PART_SIZE,
};

use crate::error::{Error, Result};
use crate::ids::{BackupId, DatasetId};
use crate::journal::{JournalFile, JournalPart, JournalVolume, VolumeState};
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

    /// Plaintext bytes of the first part and of every later part but the last: the
    /// whole segments [`aligned_part_lens`](Self::aligned_part_lens) holds.
    fn aligned_plaintext_lens(&self) -> (u64, u64) {
        let first_segments =
            (self.part_len.saturating_sub(HEADER_LEN)).div_ceil(SEGMENT_CIPHERTEXT_LEN);
        let segments = self.part_len.div_ceil(SEGMENT_CIPHERTEXT_LEN);
        (first_segments * SEGMENT_LEN, segments * SEGMENT_LEN)
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
/// ever committed here. (`back_up` uses the journalled variant, which keeps a failed
/// upload for the next run to resume.)
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
    let mut recorder = Recorder::unjournalled();
    let target = Target {
        dataset,
        backup,
        shape: *shape,
    };
    let result = upload_volumes(
        repository,
        &target,
        stream,
        progress,
        expected_len,
        &mut completed_keys,
        &mut recorder,
    )
    .await;
    let result = match result {
        Ok(Attempt::Uploaded(uploaded)) => Ok(uploaded),
        Ok(Attempt::StreamChanged { .. }) => Err(Error::InvalidInput(
            "an upload without a journal cannot see a changed stream".into(),
        )),
        Err(error) => Err(error),
    };
    if result.is_err() {
        for key in completed_keys {
            if let Err(error) = repository.backend().delete(&key).await {
                tracing::warn!(%key, %error, "could not delete a volume of a failed backup; `zib cleanup` will");
            }
        }
    }
    result
}

/// What one pass over the stream achieved.
#[derive(Debug)]
pub enum Attempt {
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

/// Uploads `stream` as the backup `journal` describes, journalled durably at
/// `journal_path` — resuming the uploads the journal lists — and leaves the journal in
/// place (the caller deletes it once the manifest commits). This is
/// [`back_up`](crate::backup::back_up)'s upload step, for callers that bring their own
/// stream.
///
/// The journal on disk is authoritative: its salts are the ones already used in the
/// bucket, so resuming from any other copy could send different plaintext under a used
/// salt. When a journal exists at `journal_path`, `journal` only names the backup (its
/// repository, dataset and backup ids must match the file's) and the file's volumes are
/// resumed; when none exists, `journal` starts a new backup and must list no volumes.
/// The lock that guards `journal_path` (the dataset lock of
/// [`lock_dataset`](crate::lock::lock_dataset)) is taken for the whole call, so two
/// callers never resume one journal at once; the caller must not hold it itself.
///
/// On [`Attempt::StreamChanged`] the journal no longer lists the volumes that differed:
/// call again with the stream from its beginning.
///
/// # Errors
///
/// As [`upload_stream`]; a storage error or the stream's own error keeps the journal and
/// the uploads for the next call. [`Error::VolumeMissing`] when a volume is gone from the
/// bucket (or has another size) once all are uploaded: it and the later volumes are
/// dropped from the journal, and the next call uploads them again under fresh salts.
/// [`Error::Locked`] when another run holds the lock; [`Error::InvalidInput`] when `journal` names another backup than the file at
/// `journal_path`, or lists volumes while no file exists; [`Error::LocalState`] when the
/// journal cannot be written; [`Error::Journal`] when the file is unreadable.
pub async fn upload_resumable<S, E>(
    repository: &Repository,
    journal_path: &std::path::Path,
    journal: crate::journal::Journal,
    stream: S,
    progress: &dyn Progress,
    expected_len: Option<u64>,
) -> Result<Attempt>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    Error: From<E>,
{
    let parts_in_flight = journal.volume_shape().parts_in_flight;
    let lock_path = crate::journal::lock_path_for_journal(journal_path);
    let _lock = {
        let path = lock_path.clone();
        tokio::task::spawn_blocking(move || crate::lock::lock_file(&path, false))
            .await
            .map_err(|error| Error::LocalState {
                path: lock_path.clone(),
                action: "take the dataset lock",
                source: std::io::Error::other(error.to_string()),
            })??
            .ok_or_else(|| Error::Locked {
                dataset: journal.dataset_name.clone(),
                pid: crate::lock::holder_pid(&lock_path),
                lock_file: lock_path.clone(),
            })?
    };
    let journal = match crate::journal::read_journal(journal_path)? {
        Some(on_disk) => {
            let same = on_disk.repository_id == journal.repository_id
                && on_disk.dataset_id == journal.dataset_id
                && on_disk.backup_id == journal.backup_id;
            if !same {
                return Err(Error::InvalidInput(format!(
                    "the journal at {} belongs to backup {} of dataset {}, not to backup {}; \
                     finish that backup first (or move its journal aside and run `zib cleanup`)",
                    journal_path.display(),
                    on_disk.backup(),
                    on_disk.dataset_name,
                    journal.backup()
                )));
            }
            on_disk
        }
        None if !journal.volumes.is_empty() => {
            return Err(Error::InvalidInput(format!(
                "no journal exists at {}, and the one given lists uploaded volumes: a backup \
                 can only be resumed from its journal file; start it with no volumes",
                journal_path.display()
            )));
        }
        None => {
            let file = JournalFile::new(journal_path.to_owned(), journal);
            file.save().await?;
            file.journal().clone()
        }
    };
    let mut recorder = Recorder::journalled(JournalFile::new(journal_path.to_owned(), journal))
        .with_parts_in_flight(parts_in_flight);
    upload_journalled(repository, stream, progress, expected_len, &mut recorder).await
}

/// Where a stream goes.
#[derive(Debug, Clone, Copy)]
struct Target {
    dataset: DatasetId,
    backup: BackupId,
    shape: VolumeShape,
}

/// The journal of one backup, carried through its passes over the stream (a resumed or
/// restarted run reads the stream again from the beginning).
#[derive(Debug)]
pub(crate) struct Recorder {
    journal: Option<JournalFile>,
    /// Stream bytes already reported to progress: re-read bytes are not counted twice.
    stream_reported: u64,
    /// Parts (volume, part; part 0 for a whole verified volume) already reported.
    parts_reported: HashSet<(u32, u32)>,
    /// The stream itself failed (not the storage).
    source_failed: bool,
    /// Parts in flight for this run: the current options', not the journal's (only the
    /// volume and part sizes shape the ciphertext; concurrency may change between runs).
    parts_in_flight: Option<usize>,
}

impl Recorder {
    fn unjournalled() -> Self {
        Self {
            journal: None,
            stream_reported: 0,
            parts_reported: HashSet::new(),
            source_failed: false,
            parts_in_flight: None,
        }
    }

    pub(crate) fn journalled(file: JournalFile) -> Self {
        Self {
            journal: Some(file),
            ..Self::unjournalled()
        }
    }

    /// Uploads this run's parts `parts_in_flight` at a time, whatever the journal says.
    pub(crate) fn with_parts_in_flight(mut self, parts_in_flight: usize) -> Self {
        self.parts_in_flight = Some(parts_in_flight);
        self
    }

    pub(crate) fn journal_file(&self) -> Option<&JournalFile> {
        self.journal.as_ref()
    }

    async fn save(&self) -> Result<()> {
        match &self.journal {
            Some(file) => file.save().await,
            None => Ok(()),
        }
    }

    fn previous(&self, index: u32) -> Option<JournalVolume> {
        self.journal
            .as_ref()?
            .journal()
            .volumes
            .get(usize::try_from(index).ok()?)
            .cloned()
    }

    fn volume_mut(&mut self, index: u32) -> Option<&mut JournalVolume> {
        self.journal
            .as_mut()?
            .journal_mut()
            .volumes
            .get_mut(usize::try_from(index).ok()?)
    }

    fn report_stream(&mut self, end: u64, progress: &dyn Progress, expected: Option<u64>) {
        if end > self.stream_reported {
            progress.stream_bytes(end - self.stream_reported, expected);
            self.stream_reported = end;
        }
    }

    fn report_part(&mut self, volume: u32, part: u32, bytes: u64, progress: &dyn Progress) {
        if self.parts_reported.insert((volume, part)) {
            progress.part_uploaded(bytes);
        }
    }

    /// Discards journalled volumes from `index` on: aborts their uploads, deletes their
    /// objects, and journals that they are gone — before anything new is sent for them,
    /// so an old salt's ciphertext never sits next to a new plaintext's.
    async fn discard_from(
        &mut self,
        repository: &Repository,
        target: &Target,
        index: u32,
    ) -> Result<()> {
        let Some(file) = self.journal.as_mut() else {
            return Ok(());
        };
        let start = usize::try_from(index).unwrap_or(usize::MAX);
        let discarded: Vec<JournalVolume> =
            file.journal().volumes.iter().skip(start).cloned().collect();
        for volume in &discarded {
            discard_volume(repository, target, volume).await?;
        }
        file.journal_mut().volumes.truncate(start);
        file.save().await
    }

    /// Checks, just before the commit, that every volume of `uploaded` is in the bucket
    /// with the size the upload produced. A missing or altered one (removed by another
    /// host's clean-up, or a lifecycle rule) is discarded with the later ones, so the
    /// next run uploads them again under fresh salts, and the backup fails: a manifest
    /// naming a missing volume would only be found out at restore.
    pub(crate) async fn confirm_stored(
        &mut self,
        repository: &Repository,
        uploaded: &UploadedStream,
    ) -> Result<()> {
        let Some(file) = self.journal.as_ref() else {
            return Ok(());
        };
        let journal = file.journal();
        let target = Target {
            dataset: journal.dataset(),
            backup: journal.backup(),
            shape: journal.volume_shape(),
        };
        for volume in &uploaded.volumes {
            let key = volume_key(repository, &target, volume.index)?;
            let found = match repository.backend().head(&key).await {
                Ok(meta) if meta.size == volume.ciphertext_len => continue,
                Ok(meta) => Some(meta.size),
                Err(zib_storage_backend::Error::NotFound { .. }) => None,
                Err(error) => return Err(error.into()),
            };
            if let Err(error) = self.discard_from(repository, &target, volume.index).await {
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

    /// Gives the whole backup up: aborts and deletes everything the journal lists and
    /// deletes the journal.
    pub(crate) async fn abandon(&mut self, repository: &Repository) -> Result<()> {
        let Some(file) = self.journal.as_ref() else {
            return Ok(());
        };
        let journal = file.journal();
        let target = Target {
            dataset: journal.dataset(),
            backup: journal.backup(),
            shape: journal.volume_shape(),
        };
        for volume in journal.volumes.clone() {
            discard_volume(repository, &target, &volume).await?;
        }
        file.remove().await
    }
}

/// Aborts a journalled volume's upload and deletes its object (either may be gone).
async fn discard_volume(
    repository: &Repository,
    target: &Target,
    volume: &JournalVolume,
) -> Result<()> {
    let key = volume_key(repository, target, volume.index)?;
    if matches!(volume.state, VolumeState::Uploading { .. }) {
        match repository
            .backend()
            .abort_multipart(&key, &UploadId::new(volume.upload_id.clone()))
            .await
        {
            Ok(()) | Err(zib_storage_backend::Error::NoSuchUpload { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    // The upload may also have completed just before the previous run died.
    repository.backend().delete(&key).await?;
    Ok(())
}

fn volume_key(repository: &Repository, target: &Target, index: u32) -> Result<ObjectKey> {
    repository.key(&ObjectRole::Volume {
        dataset: target.dataset,
        backup: target.backup,
        index,
    })
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
/// The stream's error, the storage error that stopped the upload, journal write errors.
pub(crate) async fn upload_journalled<S, E>(
    repository: &Repository,
    stream: S,
    progress: &dyn Progress,
    expected_len: Option<u64>,
    recorder: &mut Recorder,
) -> Result<Attempt>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    Error: From<E>,
{
    let journal = recorder
        .journal_file()
        .ok_or_else(|| Error::InvalidInput("a journalled upload needs a journal".into()))?
        .journal();
    let mut target = Target {
        dataset: journal.dataset(),
        backup: journal.backup(),
        shape: journal.volume_shape(),
    };
    if let Some(parts_in_flight) = recorder.parts_in_flight {
        target.shape.parts_in_flight = parts_in_flight;
    }
    target.shape.validate()?;
    recorder.source_failed = false;
    let mut completed_keys = Vec::new();
    let result = upload_volumes(
        repository,
        &target,
        stream,
        progress,
        expected_len,
        &mut completed_keys,
        recorder,
    )
    .await;
    if let Ok(Attempt::Uploaded(uploaded)) = &result {
        recorder.confirm_stored(repository, uploaded).await?;
    }
    // Whatever stopped the upload — the storage, or the send itself (killed, out of
    // memory, dataset busy) — the journal and the uploads are kept: a resumed run checks
    // every journalled part against the new stream before relying on it, so nothing
    // stored is trusted blindly, and terabytes already uploaded are not thrown away.
    // (A backup whose snapshot is gone is discarded by the next run, which cannot send
    // it again.)
    if let Err(error) = &result {
        tracing::warn!(%error, source_failed = recorder.source_failed, "the upload stopped; its journal is kept and the next run resumes it");
    }
    result
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

#[allow(clippy::too_many_arguments)] // private: the public wrappers name each one
async fn upload_volumes<S, E>(
    repository: &Repository,
    target: &Target,
    mut stream: S,
    progress: &dyn Progress,
    expected_len: Option<u64>,
    completed_keys: &mut Vec<ObjectKey>,
    recorder: &mut Recorder,
) -> Result<Attempt>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
    Error: From<E>,
{
    let shape = &target.shape;
    let mut stream_hash = Context::new(&SHA256);
    let mut volumes = Vec::new();
    let mut parts = 0u64;
    let mut offset = 0u64;
    let mut next = next_chunk(&mut stream, recorder).await?;
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
        let mut volume = open_volume_sink(repository, target, index, offset, recorder).await?;
        let filled = async {
            while let Some(mut chunk) = next.take() {
                let room = shape.volume_plaintext_len - volume.plaintext_len();
                if room == 0 {
                    next = Some(chunk);
                    break;
                }
                let rest = (chunk.len() as u64 > room)
                    .then(|| chunk.split_off(usize::try_from(room).unwrap_or(usize::MAX)));
                stream_hash.update(&chunk);
                volume.push(chunk, recorder).await?;
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
        let finished = match filled {
            Ok(()) => volume.finish(recorder, progress).await,
            Err(error) => Err(error),
        };
        let outcome = match finished {
            Ok(outcome) => outcome,
            Err(error) => {
                // Without a journal nothing is kept; with one, the upload is kept for
                // the next run whatever failed.
                let abort = recorder.journal.is_none();
                volume.stop(abort).await;
                return Err(error);
            }
        };
        let Some((entry, volume_parts)) = outcome else {
            tracing::warn!(
                volume = index,
                "the send stream differs from the journalled one; this volume is uploaded \
                 again with a fresh salt"
            );
            volume.stop(false).await;
            recorder.discard_from(repository, target, index).await?;
            return Ok(Attempt::StreamChanged { volume: index });
        };
        completed_keys.push(volume_key(repository, target, index)?);
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
        recorder.discard_from(repository, target, produced).await?;
    }
    let mut stream_sha256 = [0u8; 32];
    stream_sha256.copy_from_slice(stream_hash.finish().as_ref());
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
    repository: &'r Repository,
    target: &Target,
    index: u32,
    stream_offset: u64,
    recorder: &mut Recorder,
) -> Result<VolumeSink<'r>> {
    let key = volume_key(repository, target, index)?;
    let backend = repository.backend();
    if let Some(previous) = recorder.previous(index) {
        match &previous.state {
            VolumeState::Completed {
                ciphertext_len,
                parts,
                ..
            } => match backend.head(&key).await {
                Ok(meta) if meta.size == *ciphertext_len => {
                    return Ok(VolumeSink::Verify(VerifyVolume {
                        expected: previous.completed_entry().ok_or_else(|| {
                            Error::InvalidInput("a completed volume without an entry".into())
                        })?,
                        parts: *parts,
                        hash: Context::new(&SHA256),
                        plaintext_len: 0,
                        changed: false,
                    }));
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
                    return Ok(VolumeSink::Upload(VolumeUpload::new(
                        repository,
                        target,
                        key,
                        upload,
                        index,
                        &salt,
                        Some(resume),
                    )?));
                }
            }
        }
        recorder.discard_from(repository, target, index).await?;
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
    if let Some(file) = recorder.journal.as_mut() {
        let listed = file.journal().volumes.len();
        if listed != usize::try_from(index).unwrap_or(usize::MAX) {
            return Err(Error::Journal {
                path: file.path().to_owned(),
                reason: format!(
                    "it lists {listed} volumes before volume {index}; move the journal aside \
                     and run the backup again (it starts afresh, and `zib cleanup` removes \
                     the old uploads once old)"
                ),
            });
        }
        file.journal_mut().volumes.push(JournalVolume {
            index,
            upload_id: upload.as_str().to_owned(),
            salt: *salt.as_bytes(),
            state: VolumeState::Uploading { parts: Vec::new() },
        });
        recorder.save().await?;
    }
    Ok(VolumeSink::Upload(VolumeUpload::new(
        repository, target, key, upload, index, &salt, None,
    )?))
}

/// Where one volume's plaintext goes.
// One sink lives per volume, on the stack of the upload loop: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum VolumeSink<'r> {
    /// Encrypted and uploaded (fresh, or resuming a journalled upload).
    Upload(VolumeUpload<'r>),
    /// Only hashed: the volume is stored already and must match its journal entry.
    Verify(VerifyVolume),
}

impl VolumeSink<'_> {
    fn plaintext_len(&self) -> u64 {
        match self {
            Self::Upload(upload) => upload.plaintext_len,
            Self::Verify(verify) => verify.plaintext_len,
        }
    }

    fn changed(&self) -> bool {
        match self {
            Self::Upload(upload) => upload.changed,
            Self::Verify(verify) => verify.changed,
        }
    }

    async fn push(&mut self, chunk: Bytes, recorder: &mut Recorder) -> Result<()> {
        match self {
            Self::Upload(upload) => upload.push(chunk, recorder).await,
            Self::Verify(verify) => {
                verify.push(&chunk);
                Ok(())
            }
        }
    }

    /// The volume's entry and part count, or `None` when the stream differed from the
    /// journal.
    async fn finish(
        &mut self,
        recorder: &mut Recorder,
        progress: &dyn Progress,
    ) -> Result<Option<(VolumeListEntry, u64)>> {
        match self {
            Self::Upload(upload) => upload.finish(recorder, progress).await,
            Self::Verify(verify) => {
                let mut plaintext_sha256 = [0u8; 32];
                plaintext_sha256.copy_from_slice(verify.hash.clone().finish().as_ref());
                if verify.changed
                    || verify.plaintext_len != verify.expected.plaintext_len
                    || plaintext_sha256 != verify.expected.plaintext_sha256
                {
                    return Ok(None);
                }
                recorder.report_part(
                    verify.expected.index,
                    0,
                    verify.expected.ciphertext_len,
                    progress,
                );
                Ok(Some((verify.expected, verify.parts)))
            }
        }
    }

    /// Lets in-flight parts settle; with `abort`, also aborts the upload.
    async fn stop(self, abort: bool) {
        if let Self::Upload(upload) = self {
            upload.stop(abort).await;
        }
    }
}

/// A stored volume being checked against its journal entry.
struct VerifyVolume {
    expected: VolumeListEntry,
    parts: u64,
    hash: Context,
    plaintext_len: u64,
    changed: bool,
}

impl VerifyVolume {
    fn push(&mut self, chunk: &[u8]) {
        self.hash.update(chunk);
        self.plaintext_len += chunk.len() as u64;
        if self.plaintext_len > self.expected.plaintext_len {
            self.changed = true;
        }
    }
}

/// The plaintext a part encrypts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlainPart {
    start: u64,
    len: u64,
    sha256: [u8; 32],
    last: bool,
}

impl PlainPart {
    fn matches(&self, journalled: &JournalPart) -> bool {
        self.start == journalled.plaintext_start
            && self.len == journalled.plaintext_len
            && self.sha256 == journalled.plaintext_sha256
            && self.last == journalled.last
    }
}

/// Hashes a volume's plaintext part by part. A part other than the last holds whole
/// segments (the encryptor seals a segment as soon as it is full), so its plaintext is
/// a fixed number of segments: the boundaries are known before the ciphertext is cut.
struct PartPlaintext {
    first_len: u64,
    later_len: u64,
    number: u32,
    start: u64,
    len: u64,
    hash: Context,
    ready: VecDeque<PlainPart>,
}

impl PartPlaintext {
    fn new(shape: &VolumeShape) -> Self {
        let (first_len, later_len) = shape.aligned_plaintext_lens();
        Self {
            first_len,
            later_len,
            number: 1,
            start: 0,
            len: 0,
            hash: Context::new(&SHA256),
            ready: VecDeque::new(),
        }
    }

    fn target(&self) -> u64 {
        if self.number == 1 {
            self.first_len
        } else {
            self.later_len
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = usize::try_from(self.target() - self.len).unwrap_or(usize::MAX);
            let (now, rest) = data.split_at(room.min(data.len()));
            self.hash.update(now);
            self.len += now.len() as u64;
            data = rest;
            if self.len == self.target() {
                self.close(false);
            }
        }
    }

    fn close(&mut self, last: bool) {
        let hash = std::mem::replace(&mut self.hash, Context::new(&SHA256));
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(hash.finish().as_ref());
        self.ready.push_back(PlainPart {
            start: self.start,
            len: self.len,
            sha256,
            last,
        });
        self.start += self.len;
        self.len = 0;
        self.number += 1;
    }

    fn next_full(&mut self) -> Result<PlainPart> {
        self.ready
            .pop_front()
            .ok_or_else(|| Error::InvalidInput("a part was cut before its plaintext".into()))
    }

    fn finish(&mut self) -> Result<PlainPart> {
        self.close(true);
        self.next_full()
    }
}

/// A journalled upload being resumed.
struct Resume {
    /// The parts journalled by the previous run (each verified before anything is sent).
    journalled: Vec<JournalPart>,
    /// Parts the bucket holds (number → ETag); `None` when the upload already completed
    /// into the volume object, so nothing may be sent, only verified.
    listed: Option<HashMap<u32, String>>,
}

/// When [`VolumeUpload::append`] sends a part that is exactly full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartFull {
    /// As soon as it fills (the stream is still running: more bytes will come).
    SendNow,
    /// Only when more bytes follow: the volume's tail keeps its last part back for
    /// `finish`, so the last part is never empty.
    SendWhenMoreFollows,
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
    plain: PartPlaintext,
    resume: Option<Resume>,
    /// The stream differs from the journal: nothing more may be sent.
    changed: bool,
}

impl<'r> VolumeUpload<'r> {
    fn new(
        repository: &'r Repository,
        target: &Target,
        key: ObjectKey,
        upload: UploadId,
        index: u32,
        salt: &VolumeSalt,
        resume: Option<Resume>,
    ) -> Result<Self> {
        let encryptor = VolumeEncryptor::new(
            repository.data_key(),
            VolumeIdentity {
                repository_id: *repository.id().as_bytes(),
                backup_id: *target.backup.as_bytes(),
                volume_index: index,
            },
            salt,
        )?;
        let (first_part_len, part_len) = target.shape.aligned_part_lens();
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
            parts_in_flight: target.shape.parts_in_flight,
            next_part: 1,
            in_flight: VecDeque::new(),
            done: Vec::new(),
            plain: PartPlaintext::new(&target.shape),
            resume,
            changed: false,
        })
    }

    fn current_part_target(&self) -> usize {
        if self.next_part == 1 {
            self.first_part_len
        } else {
            self.part_len
        }
    }

    async fn push(&mut self, chunk: Bytes, recorder: &mut Recorder) -> Result<()> {
        self.hash.update(&chunk);
        self.plain.update(&chunk);
        self.plaintext_len += chunk.len() as u64;
        let encryptor = self
            .encryptor
            .as_mut()
            .ok_or_else(|| Error::InvalidInput("volume already finished".into()))?;
        for piece in encryptor.push_chunk(chunk)? {
            self.append(&piece, PartFull::SendNow, recorder).await?;
        }
        Ok(())
    }

    /// Copies ciphertext into the part being filled and sends each part that fills up —
    /// at once while the stream runs, or, for the volume's tail, only when more bytes
    /// follow (so the last part is never empty). Once the stream is known to have
    /// changed, nothing more is kept.
    ///
    /// Each part is one allocation of exactly its size, filled once: growing one buffer
    /// instead would copy a part's bytes again on every doubling, and a part split off it
    /// would pin the buffer's whole allocation — pages the next part had already
    /// written — while it uploads (measured with `engine/benches/pipeline.rs`: the peak
    /// for an 8 GiB stream fell from 497 to 269 MiB).
    async fn append(
        &mut self,
        mut bytes: &[u8],
        when_full: PartFull,
        recorder: &mut Recorder,
    ) -> Result<()> {
        while !self.changed {
            let target = self.current_part_target();
            if self.buffer.len() == target && (when_full == PartFull::SendNow || !bytes.is_empty())
            {
                let next_capacity = self.part_len;
                let part =
                    std::mem::replace(&mut self.buffer, BytesMut::with_capacity(next_capacity))
                        .freeze();
                let plain = self.plain.next_full()?;
                self.send_part(part, plain, recorder).await?;
                continue;
            }
            if bytes.is_empty() {
                break;
            }
            let take = (target - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Journals the part (its plaintext range and hash, durably) and then sends it — or,
    /// resuming, checks it against the journal first and skips it when the bucket holds
    /// it already.
    async fn send_part(
        &mut self,
        part: Bytes,
        plain: PlainPart,
        recorder: &mut Recorder,
    ) -> Result<()> {
        let number = self.next_part;
        let size = part.len() as u64;
        let mut journalled = false;
        if let Some(resume) = &self.resume {
            let previous = usize::try_from(number - 1)
                .ok()
                .and_then(|position| resume.journalled.get(position));
            match previous {
                Some(previous) if !plain.matches(previous) => {
                    self.changed = true;
                    return Ok(());
                }
                Some(previous) => {
                    journalled = true;
                    let stored = match &resume.listed {
                        Some(listed) => previous
                            .etag
                            .as_ref()
                            .filter(|etag| listed.get(&number) == Some(*etag)),
                        None => previous.etag.as_ref(),
                    };
                    if resume.listed.is_none() || stored.is_some() {
                        let etag = ETag::new(stored.cloned().unwrap_or_default());
                        self.next_part += 1;
                        self.ciphertext_len += size;
                        self.done.push(PartInfo { number, size, etag });
                        return Ok(());
                    }
                }
                // A completed upload cannot take more parts than it had.
                None if resume.listed.is_none() => {
                    self.changed = true;
                    return Ok(());
                }
                None => {}
            }
        }
        while self.in_flight.len() >= self.parts_in_flight {
            self.wait_oldest(recorder).await?;
        }
        if !journalled {
            if let Some(VolumeState::Uploading { parts }) = recorder
                .volume_mut(self.index)
                .map(|volume| &mut volume.state)
            {
                parts.push(JournalPart {
                    number,
                    plaintext_start: plain.start,
                    plaintext_len: plain.len,
                    plaintext_sha256: plain.sha256,
                    last: plain.last,
                    etag: None,
                });
                recorder.save().await?;
            }
        }
        self.ciphertext_len += size;
        self.next_part += 1;
        let backend = self.repository.backend().clone();
        let key = self.key.clone();
        let upload = self.upload.clone();
        self.in_flight.push_back(tokio::spawn(async move {
            backend.upload_part(&key, &upload, number, part).await
        }));
        Ok(())
    }

    async fn wait_oldest(&mut self, recorder: &mut Recorder) -> Result<()> {
        if let Some(handle) = self.in_flight.pop_front() {
            let part = handle.await.map_err(|error| {
                Error::InvalidInput(format!(
                    "a part upload task failed ({error}); the upload and its journal are \
                     kept: run the backup again to resume it"
                ))
            })??;
            if let Some(VolumeState::Uploading { parts }) = recorder
                .volume_mut(self.index)
                .map(|volume| &mut volume.state)
            {
                // Not saved on its own: the next save (before the next part is sent, or
                // when the volume completes) carries it. A run killed in between sends the
                // part again — the same bytes under the same salt, and never more than
                // the parts in flight — which costs less than an fsync per confirmed part
                // on the pipeline's path (each is ~17 ms: `benches/journal_save.rs`).
                if let Some(entry) = parts.iter_mut().find(|entry| entry.number == part.number) {
                    entry.etag = Some(part.etag.as_str().to_owned());
                }
            }
            self.done.push(part);
        }
        Ok(())
    }

    async fn finish(
        &mut self,
        recorder: &mut Recorder,
        progress: &dyn Progress,
    ) -> Result<Option<(VolumeListEntry, u64)>> {
        let encryptor = self
            .encryptor
            .take()
            .ok_or_else(|| Error::InvalidInput("volume already finished".into()))?;
        let tail = encryptor.finish()?;
        self.append(&tail, PartFull::SendWhenMoreFollows, recorder)
            .await?;
        if !self.changed {
            let last = std::mem::take(&mut self.buffer).freeze();
            let plain = self.plain.finish()?;
            self.send_part(last, plain, recorder).await?;
        }
        let produced = (self.next_part - 1) as usize;
        if let Some(resume) = &self.resume {
            // A journalled part beyond the stream's end: the stream got shorter.
            if resume.journalled.len() > produced {
                self.changed = true;
            }
        }
        if self.changed {
            return Ok(None);
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest(recorder).await?;
        }
        self.done.sort_by_key(|part| part.number);
        for part in &self.done {
            recorder.report_part(self.index, part.number, part.size, progress);
        }
        let already_complete = self
            .resume
            .as_ref()
            .is_some_and(|resume| resume.listed.is_none());
        if !already_complete {
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
        }
        let mut plaintext_sha256 = [0u8; 32];
        plaintext_sha256.copy_from_slice(self.hash.clone().finish().as_ref());
        let entry = VolumeListEntry {
            index: self.index,
            plaintext_len: self.plaintext_len,
            ciphertext_len: self.ciphertext_len,
            plaintext_sha256,
        };
        let parts = self.done.len() as u64;
        if let Some(volume) = recorder.volume_mut(self.index) {
            volume.state = VolumeState::Completed {
                plaintext_len: entry.plaintext_len,
                ciphertext_len: entry.ciphertext_len,
                plaintext_sha256,
                parts,
            };
            recorder.save().await?;
        }
        Ok(Some((entry, parts)))
    }

    async fn stop(mut self, abort: bool) {
        // Let in-flight parts settle first, so none lands after an abort.
        while let Some(handle) = self.in_flight.pop_front() {
            let _ = handle.await;
        }
        if !abort {
            return;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use zib_crypto::{DataKey, TAG_LEN};

    /// The plaintext ranges journalled per part are exactly the plaintext each ciphertext
    /// part encrypts: a part other than the last is whole segments of its range, the last
    /// is its range's segments plus the final (short) segment. This is what makes the
    /// per-part hash check cover every byte sent under a journalled salt.
    #[test]
    fn journalled_plaintext_ranges_are_what_each_part_encrypts() {
        let shape = VolumeShape {
            volume_plaintext_len: 64 << 20,
            part_len: 5 << 20,
            parts_in_flight: 2,
        };
        let (first_part, later_part) = shape.aligned_part_lens();
        let key = DataKey::generate().unwrap();
        let identity = VolumeIdentity {
            repository_id: [1; 16],
            backup_id: [2; 16],
            volume_index: 0,
        };
        let segment = SEGMENT_LEN as usize;
        // Lengths around part and segment boundaries, fed in uneven chunks.
        let (first_plain, _) = shape.aligned_plaintext_lens();
        let first_plain = first_plain as usize;
        for len in [
            0,
            1,
            segment,
            first_plain - 1,
            first_plain,
            first_plain + 1,
            2 * first_plain + segment * 3 + 5,
            3 * first_plain,
        ] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + i / 65_536) as u8).collect();
            let salt = VolumeSalt::generate().unwrap();
            let mut encryptor = VolumeEncryptor::new(&key, identity, &salt).unwrap();
            let mut plain = PartPlaintext::new(&shape);
            let mut buffer = BytesMut::new();
            let mut parts: Vec<(Bytes, PlainPart)> = Vec::new();
            let target = |parts: &Vec<(Bytes, PlainPart)>| {
                if parts.is_empty() {
                    first_part
                } else {
                    later_part
                }
            };
            for chunk in plaintext.chunks(100_003) {
                plain.update(chunk);
                for piece in encryptor.push_chunk(Bytes::copy_from_slice(chunk)).unwrap() {
                    buffer.extend_from_slice(&piece);
                }
                while buffer.len() >= target(&parts) {
                    let part = buffer.split_to(target(&parts)).freeze();
                    parts.push((part, plain.next_full().unwrap()));
                }
            }
            buffer.extend_from_slice(&encryptor.finish().unwrap());
            assert!(buffer.len() <= target(&parts), "one last part remains");
            parts.push((buffer.split().freeze(), plain.finish().unwrap()));

            let mut expected_start = 0;
            for (number, (part, range)) in parts.iter().enumerate() {
                let header = if number == 0 { HEADER_LEN } else { 0 };
                let is_last = number == parts.len() - 1;
                assert_eq!(range.last, is_last);
                assert_eq!(range.start, expected_start, "ranges are contiguous");
                let segments = range.len / SEGMENT_LEN;
                let sealed = if is_last {
                    segments * SEGMENT_CIPHERTEXT_LEN + range.len % SEGMENT_LEN + TAG_LEN
                } else {
                    assert_eq!(range.len % SEGMENT_LEN, 0, "whole segments");
                    segments * SEGMENT_CIPHERTEXT_LEN
                };
                assert_eq!(
                    part.len() as u64,
                    header + sealed,
                    "length {len}, part {number}"
                );
                let start = usize::try_from(range.start).unwrap();
                let end = start + usize::try_from(range.len).unwrap();
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(
                    ring::digest::digest(&SHA256, &plaintext[start..end]).as_ref(),
                );
                assert_eq!(range.sha256, sha256);
                expected_start += range.len;
            }
            assert_eq!(expected_start, len as u64);
        }
    }
}
