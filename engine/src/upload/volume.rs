//! One volume's plaintext on its way to the bucket: encrypted and cut into parts that
//! are journalled, then uploaded a few at a time — or, for a volume an earlier run
//! stored, only hashed and compared with its journal entry.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;
use zib_crypto::{VolumeEncryptor, VolumeIdentity, VolumeSalt};
use zib_storage_backend::{
    CompletePrecondition, CompletedPart, ETag, ObjectKey, PartInfo, UploadId,
};

use super::buffers::PartBuffers;
use super::parts::{PartFull, PartPlaintext, PlainPart};
use super::recorder::Recorder;
use super::shape::PartCutting;
use super::Target;
use crate::context::Repo;
use crate::error::{Error, Result};
use crate::format::records::VolumeListEntry;
use crate::progress::Progress;
use crate::state::journal::{JournalPart, VolumeState};

/// Where one volume's plaintext goes.
// One sink lives per volume, on the stack of the upload loop: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum VolumeSink<'r> {
    /// Encrypted and uploaded (fresh, or resuming a journalled upload).
    Upload(VolumeUpload<'r>),
    /// Only hashed: the volume is stored already and must match its journal entry.
    Verify(VerifyVolume),
}

/// What a finished volume sink produced: its list entry and part count, or `Changed`
/// when the stream differed from the journal (nothing more was sent).
pub(super) enum Finished {
    Stored { entry: VolumeListEntry, parts: u64 },
    Changed,
}

impl VolumeSink<'_> {
    pub(super) fn plaintext_len(&self) -> u64 {
        match self {
            Self::Upload(upload) => upload.plaintext_len,
            Self::Verify(verify) => verify.plaintext_len,
        }
    }

    pub(super) fn changed(&self) -> bool {
        match self {
            Self::Upload(upload) => upload.changed,
            Self::Verify(verify) => verify.changed,
        }
    }

    pub(super) async fn push(
        &mut self,
        chunk: Bytes,
        recorder: &mut Recorder,
        progress: &dyn Progress,
    ) -> Result<()> {
        match self {
            Self::Upload(upload) => upload.push(chunk, recorder, progress).await,
            Self::Verify(verify) => {
                verify.push(chunk.len() as u64);
                Ok(())
            }
        }
    }

    /// Finishes the volume, whose plaintext hashed to `plaintext_sha256`: its last part
    /// sent and the upload completed, or the stored volume's hash compared (consumes the
    /// sink: nothing can be pushed after).
    pub(super) async fn finish(
        self,
        plaintext_sha256: [u8; 32],
        recorder: &mut Recorder,
        progress: &dyn Progress,
    ) -> Result<Finished> {
        match self {
            Self::Upload(upload) => upload.finish(plaintext_sha256, recorder, progress).await,
            Self::Verify(verify) => {
                if verify.changed
                    || verify.plaintext_len != verify.expected.plaintext_len
                    || plaintext_sha256 != verify.expected.plaintext_sha256
                {
                    return Ok(Finished::Changed);
                }
                recorder.skipped(verify.parts, verify.expected.ciphertext_len, progress);
                Ok(Finished::Stored {
                    entry: verify.expected,
                    parts: verify.parts,
                })
            }
        }
    }

    /// Lets in-flight parts settle; with `abort`, also aborts the upload.
    pub(super) async fn stop(self, abort: bool) {
        if let Self::Upload(upload) = self {
            upload.stop(abort).await;
        }
    }
}

/// A stored volume being checked against its journal entry (its hash is computed beside
/// the upload, see [`crate::hashing`]).
pub(super) struct VerifyVolume {
    expected: VolumeListEntry,
    parts: u64,
    plaintext_len: u64,
    changed: bool,
}

impl VerifyVolume {
    pub(super) fn new(expected: VolumeListEntry, parts: u64) -> Self {
        Self {
            expected,
            parts,
            plaintext_len: 0,
            changed: false,
        }
    }

    fn push(&mut self, len: u64) {
        self.plaintext_len += len;
        if self.plaintext_len > self.expected.plaintext_len {
            self.changed = true;
        }
    }
}

/// A journalled upload being resumed.
pub(super) struct Resume {
    /// The parts journalled by the previous run (each verified before anything is sent).
    pub(super) journalled: Vec<JournalPart>,
    /// Parts the bucket holds (number → ETag); `None` when the upload already completed
    /// into the volume object, so nothing may be sent, only verified.
    pub(super) listed: Option<HashMap<u32, String>>,
}

/// A part upload's outcome, as its task reports it, with the part's bytes (to be handed
/// back to the buffers).
type PartOutcome = (u32, zib_storage_backend::Result<PartInfo>, Bytes);

/// One volume's multipart upload in progress.
pub(super) struct VolumeUpload<'r> {
    repository: &'r Repo,
    key: ObjectKey,
    upload: UploadId,
    index: u32,
    encryptor: Option<VolumeEncryptor>,
    plaintext_len: u64,
    ciphertext_len: u64,
    /// The part being filled; empty, with no allocation, until its first byte comes.
    buffer: BytesMut,
    /// Where part buffers come from and go back to.
    buffers: PartBuffers,
    first_part_len: usize,
    part_len: usize,
    cutting: PartCutting,
    parts_in_flight: usize,
    next_part: u32,
    /// Part uploads in flight. A `JoinSet`, not detached tasks: dropping the upload (the
    /// backup future dropped by a Ctrl-C `select!` or a timeout) aborts them, so no part
    /// keeps uploading after the caller gave up and the dataset lock was released.
    in_flight: JoinSet<PartOutcome>,
    done: Vec<PartInfo>,
    plain: PartPlaintext,
    resume: Option<Resume>,
    /// The stream differs from the journal: nothing more may be sent.
    changed: bool,
}

impl<'r> VolumeUpload<'r> {
    /// A fresh upload of volume `index` under `salt` (see [`resuming`](Self::resuming)
    /// for one an earlier run journalled).
    pub(super) fn new(
        repository: &'r Repo,
        target: &Target,
        key: ObjectKey,
        upload: UploadId,
        index: u32,
        salt: &VolumeSalt,
        buffers: PartBuffers,
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
            plaintext_len: 0,
            ciphertext_len: 0,
            buffer: BytesMut::new(),
            buffers,
            first_part_len,
            part_len,
            cutting: target.cutting,
            parts_in_flight: target.shape.parts_in_flight.max(1),
            next_part: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            plain: PartPlaintext::new(&target.shape, target.cutting, target.part_check),
            resume: None,
            changed: false,
        })
    }

    /// The upload continues one an earlier run journalled (`salt` was the journalled one).
    pub(super) fn resuming(mut self, resume: Resume) -> Self {
        self.resume = Some(resume);
        self
    }

    /// The part being filled, with its buffer drawn if this is its first byte.
    fn filling(&mut self) -> &mut BytesMut {
        if self.buffer.capacity() == 0 {
            self.buffer = self.buffers.take();
        }
        &mut self.buffer
    }

    fn current_part_target(&self) -> usize {
        if self.next_part == 1 {
            self.first_part_len
        } else {
            self.part_len
        }
    }

    async fn push(
        &mut self,
        chunk: Bytes,
        recorder: &mut Recorder,
        progress: &dyn Progress,
    ) -> Result<()> {
        self.plain.update(&chunk);
        self.plaintext_len += chunk.len() as u64;
        let Some(encryptor) = self.encryptor.as_mut() else {
            return Err(Error::Internal(format!(
                "volume {} was pushed to after it was finished",
                self.index
            )));
        };
        // Every piece is a sealed segment or the header: never the volume's final
        // segment, which only `finish` seals.
        let when_full = match self.cutting {
            PartCutting::FinalSegmentAlone => PartFull::SendNow,
            PartCutting::FinalSegmentInLastPart => PartFull::SendWhenMoreFollows,
        };
        for piece in encryptor.push_chunk(chunk)? {
            self.append(&piece, when_full, recorder, progress).await?;
        }
        Ok(())
    }

    /// Copies ciphertext into the part being filled and sends each part that fills up —
    /// at once, or only when more bytes follow (so the last part is never empty), or
    /// never (the final segment joins the last part): see [`PartFull`]. Once the stream
    /// is known to have changed, nothing more is kept.
    ///
    /// Each part is one allocation of at least its size, filled once: growing one buffer
    /// instead would copy a part's bytes again on every doubling, and a part split off it
    /// would pin the buffer's whole allocation — pages the next part had already
    /// written — while it uploads (measured with `engine/benches/pipeline.rs`: the peak
    /// for an 8 GiB stream fell from 497 to 269 MiB then; buffers kept for reuse now hold
    /// it at the bound, 329 MiB). The allocation is drawn from [`PartBuffers`] when the
    /// part's first byte comes, so a part waiting for an upload slot and the next one
    /// are never both in memory.
    async fn append(
        &mut self,
        mut bytes: &[u8],
        when_full: PartFull,
        recorder: &mut Recorder,
        progress: &dyn Progress,
    ) -> Result<()> {
        while !self.changed {
            if when_full == PartFull::Absorb {
                self.filling().extend_from_slice(bytes);
                break;
            }
            let target = self.current_part_target();
            if self.buffer.len() == target && (when_full == PartFull::SendNow || !bytes.is_empty())
            {
                let part = std::mem::take(&mut self.buffer).freeze();
                let plain = self.plain.next_full()?;
                self.send_part(part, plain, recorder, progress).await?;
                continue;
            }
            if bytes.is_empty() {
                break;
            }
            let take = (target - self.buffer.len()).min(bytes.len());
            self.filling().extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Journals the part (its plaintext range and check, durably) and then sends it — or,
    /// resuming, compares it with the journal first and skips it when the bucket holds
    /// it already. Resuming, `part` was encrypted under the journalled salt: it leaves
    /// this function, to be sent, only if its check is the journalled one.
    async fn send_part(
        &mut self,
        part: Bytes,
        plain: PlainPart,
        recorder: &mut Recorder,
        progress: &dyn Progress,
    ) -> Result<()> {
        let number = self.next_part;
        let size = part.len() as u64;
        let mut journalled = false;
        let check = plain.check(&part, number == 1);
        if let Some(resume) = &self.resume {
            let previous = usize::try_from(number - 1)
                .ok()
                .and_then(|position| resume.journalled.get(position));
            match previous {
                Some(previous) if !plain.matches(&check, previous) => {
                    self.changed = true;
                    self.buffers.give_back(part);
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
                        recorder.skipped(1, size, progress);
                        self.buffers.give_back(part);
                        return Ok(());
                    }
                }
                // A completed upload cannot take more parts than it had.
                None if resume.listed.is_none() => {
                    self.changed = true;
                    self.buffers.give_back(part);
                    return Ok(());
                }
                None => {}
            }
        }
        while self.in_flight.len() >= self.parts_in_flight {
            self.wait_for_one(recorder, progress).await?;
        }
        if !journalled {
            recorder
                .part_about_to_be_sent(
                    self.index,
                    JournalPart {
                        number,
                        plaintext_start: plain.start,
                        plaintext_len: plain.len,
                        check,
                        last: plain.last,
                        etag: None,
                    },
                )
                .await?;
        }
        self.ciphertext_len += size;
        self.next_part += 1;
        let backend = self.repository.backend().clone();
        let key = self.key.clone();
        let upload = self.upload.clone();
        let sent = part.clone();
        self.in_flight.spawn(async move {
            let outcome = backend.upload_part(&key, &upload, number, part).await;
            (number, outcome, sent)
        });
        Ok(())
    }

    /// Waits for one part upload to finish and records it.
    async fn wait_for_one(
        &mut self,
        recorder: &mut Recorder,
        progress: &dyn Progress,
    ) -> Result<()> {
        let Some(joined) = self.in_flight.join_next().await else {
            return Ok(());
        };
        let (number, outcome, sent) = match joined {
            Ok(outcome) => outcome,
            // A panic in the storage backend is a bug, not a storage error: it propagates.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => {
                return Err(Error::Internal(format!(
                    "the upload task of part {} of {} was cancelled: {error}",
                    self.next_part, self.key
                )))
            }
        };
        self.buffers.give_back(sent);
        let part = outcome?;
        recorder.part_confirmed(self.index, number, part.etag.as_str(), part.size, progress);
        self.done.push(part);
        Ok(())
    }

    async fn finish(
        mut self,
        plaintext_sha256: [u8; 32],
        recorder: &mut Recorder,
        progress: &dyn Progress,
    ) -> Result<Finished> {
        let Some(encryptor) = self.encryptor.take() else {
            return Err(Error::Internal(format!(
                "volume {} was finished twice",
                self.index
            )));
        };
        let tail = encryptor.finish()?;
        let when_full = match self.cutting {
            PartCutting::FinalSegmentAlone => PartFull::SendWhenMoreFollows,
            PartCutting::FinalSegmentInLastPart => PartFull::Absorb,
        };
        self.append(&tail, when_full, recorder, progress).await?;
        if !self.changed {
            let last = std::mem::take(&mut self.buffer).freeze();
            let plain = self.plain.finish()?;
            self.send_part(last, plain, recorder, progress).await?;
        }
        let produced = (self.next_part - 1) as usize;
        if let Some(resume) = &self.resume {
            // A journalled part beyond the stream's end: the stream got shorter.
            if resume.journalled.len() > produced {
                self.changed = true;
            }
        }
        if self.changed {
            self.stop(false).await;
            return Ok(Finished::Changed);
        }
        while !self.in_flight.is_empty() {
            self.wait_for_one(recorder, progress).await?;
        }
        self.done.sort_by_key(|part| part.number);
        let already_complete = self
            .resume
            .as_ref()
            .is_some_and(|resume| resume.listed.is_none());
        if !already_complete {
            // Every part is confirmed now, but the last confirmations are in memory only
            // (they are saved with the next part's entry): saved before the completion,
            // a run killed while completing does not send those parts again.
            recorder.save().await?;
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
        let entry = VolumeListEntry {
            index: self.index,
            plaintext_len: self.plaintext_len,
            ciphertext_len: self.ciphertext_len,
            plaintext_sha256,
        };
        let parts = self.done.len() as u64;
        recorder
            .volume_completed(
                self.index,
                VolumeState::Completed {
                    plaintext_len: entry.plaintext_len,
                    ciphertext_len: entry.ciphertext_len,
                    plaintext_sha256,
                    parts,
                },
            )
            .await?;
        Ok(Finished::Stored { entry, parts })
    }

    async fn stop(mut self, abort: bool) {
        // Let in-flight parts settle first, so none lands after an abort.
        while self.in_flight.join_next().await.is_some() {}
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
