//! The journal of one backup as its upload proceeds: what is written to it before and
//! after each step, what this run sent and skipped, and how journalled uploads are
//! discarded when the stream changed or the backup is given up.

use zib_storage_backend::{ObjectKey, UploadId};

use super::Target;
use crate::context::Repo;
use crate::error::{Error, Result};
use crate::format::layout::ObjectRole;
use crate::progress::Progress;
use crate::state::journal::{JournalFile, JournalPart, JournalVolume, VolumeState};

/// What this run transferred, for the backup's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Transferred {
    /// Parts uploaded by this run and confirmed by the storage.
    pub(crate) parts_sent: u64,
    /// Their bytes.
    pub(crate) bytes_sent: u64,
    /// Parts an earlier run stored that this run checked and did not send again.
    pub(crate) parts_skipped: u64,
    /// Their bytes.
    pub(crate) bytes_skipped: u64,
}

/// The journal of one backup, carried through its passes over the stream (a resumed or
/// restarted run reads the stream again from the beginning).
#[derive(Debug)]
pub(crate) struct Recorder {
    file: JournalFile,
    /// Stream bytes already reported to progress: re-read bytes are not counted twice.
    stream_reported: u64,
    /// The stream itself failed (not the storage).
    pub(super) source_failed: bool,
    /// Parts in flight for this run: the current options', not the journal's (only the
    /// volume and part sizes shape the ciphertext; concurrency may change between runs).
    pub(super) parts_in_flight: usize,
    /// What this run sent and skipped.
    pub(super) transferred: Transferred,
}

impl Recorder {
    /// Records the backup `file` describes; this run uploads `parts_in_flight` parts at
    /// a time, whatever the journal says.
    pub(crate) fn new(file: JournalFile, parts_in_flight: usize) -> Self {
        Self {
            file,
            stream_reported: 0,
            source_failed: false,
            parts_in_flight,
            transferred: Transferred::default(),
        }
    }

    pub(crate) fn transferred(&self) -> Transferred {
        self.transferred
    }

    pub(crate) fn into_journal_file(self) -> JournalFile {
        self.file
    }

    pub(super) fn target(&self) -> Target {
        let journal = self.file.journal();
        let mut shape = journal.shape;
        shape.parts_in_flight = self.parts_in_flight;
        Target {
            dataset: journal.dataset_id,
            backup: journal.backup_id,
            shape,
            cutting: journal.cutting,
            part_check: journal.part_check,
        }
    }

    pub(super) async fn save(&self) -> Result<()> {
        self.file.save().await
    }

    /// The journal's entry for volume `index`, if an earlier pass or run started it.
    pub(super) fn previous(&self, index: u32) -> Option<JournalVolume> {
        self.file
            .journal()
            .volumes
            .get(usize::try_from(index).ok()?)
            .cloned()
    }

    fn volume_mut(&mut self, index: u32) -> Option<&mut JournalVolume> {
        self.file
            .journal_mut()
            .volumes
            .get_mut(usize::try_from(index).ok()?)
    }

    /// Journals a fresh upload of volume `index` (durably: the upload must be findable
    /// locally before any of its parts is sent).
    ///
    /// # Errors
    ///
    /// [`Error::Journal`] when the journal does not list exactly the volumes before
    /// `index`; [`Error::LocalState`] when it cannot be written.
    pub(super) async fn start_volume(
        &mut self,
        index: u32,
        upload: &UploadId,
        salt: [u8; zib_crypto::SALT_LEN],
    ) -> Result<()> {
        let listed = self.file.journal().volumes.len();
        if listed != usize::try_from(index).unwrap_or(usize::MAX) {
            return Err(Error::Journal {
                path: self.file.path().to_owned(),
                reason: format!(
                    "it lists {listed} volumes before volume {index}; move the journal aside \
                     and run the backup again (it starts afresh, and `zib cleanup` removes \
                     the old uploads once old)"
                ),
            });
        }
        self.file.journal_mut().volumes.push(JournalVolume {
            index,
            upload_id: upload.as_str().to_owned(),
            salt,
            state: VolumeState::Uploading { parts: Vec::new() },
        });
        self.save().await
    }

    /// Journals a part durably, before it is sent.
    pub(super) async fn part_about_to_be_sent(
        &mut self,
        index: u32,
        part: JournalPart,
    ) -> Result<()> {
        if let Some(VolumeState::Uploading { parts }) =
            self.volume_mut(index).map(|volume| &mut volume.state)
        {
            parts.push(part);
        }
        self.save().await
    }

    /// Notes a part the storage confirmed (not saved on its own: see below).
    pub(super) fn part_confirmed(
        &mut self,
        index: u32,
        number: u32,
        etag: &str,
        bytes: u64,
        progress: &dyn Progress,
    ) {
        // Not saved on its own: the next save (before the next part is sent, or when the
        // volume completes) carries it. A run killed in between sends the part again —
        // the same bytes under the same salt, and never more than the parts in flight —
        // which costs less than an fsync per confirmed part on the pipeline's path.
        if let Some(VolumeState::Uploading { parts }) =
            self.volume_mut(index).map(|volume| &mut volume.state)
        {
            if let Some(entry) = parts.iter_mut().find(|entry| entry.number == number) {
                entry.etag = Some(etag.to_owned());
            }
        }
        self.transferred.parts_sent += 1;
        self.transferred.bytes_sent += bytes;
        progress.part_uploaded(bytes);
    }

    /// Counts parts an earlier run stored that this run does not send again.
    pub(super) fn skipped(&mut self, parts: u64, bytes: u64, progress: &dyn Progress) {
        self.transferred.parts_skipped += parts;
        self.transferred.bytes_skipped += bytes;
        progress.part_skipped(bytes);
    }

    /// Journals volume `index` as completed.
    pub(super) async fn volume_completed(&mut self, index: u32, state: VolumeState) -> Result<()> {
        if let Some(volume) = self.volume_mut(index) {
            volume.state = state;
        }
        self.save().await
    }

    pub(super) fn report_stream(
        &mut self,
        end: u64,
        progress: &dyn Progress,
        expected: Option<u64>,
    ) {
        if end > self.stream_reported {
            progress.stream_bytes(end - self.stream_reported, expected);
            self.stream_reported = end;
        }
    }

    /// Discards journalled volumes from `index` on: aborts their uploads, deletes their
    /// objects, and journals that they are gone — before anything new is sent for them,
    /// so an old salt's ciphertext never sits next to a new plaintext's.
    pub(super) async fn discard_from(&mut self, repository: &Repo, index: u32) -> Result<()> {
        let target = self.target();
        let start = usize::try_from(index).unwrap_or(usize::MAX);
        let discarded: Vec<JournalVolume> = self
            .file
            .journal()
            .volumes
            .iter()
            .skip(start)
            .cloned()
            .collect();
        for volume in &discarded {
            discard_volume(repository, &target, volume).await?;
        }
        self.file.journal_mut().volumes.truncate(start);
        self.save().await
    }

    /// Gives the whole backup up: aborts and deletes everything the journal lists and
    /// deletes the journal.
    ///
    /// # Errors
    ///
    /// Storage errors (the journal then stays, so a later run can try again).
    pub(crate) async fn abandon(&mut self, repository: &Repo) -> Result<()> {
        let target = self.target();
        for volume in self.file.journal().volumes.clone() {
            discard_volume(repository, &target, &volume).await?;
        }
        self.file.remove().await
    }
}

/// Aborts a journalled volume's upload and deletes its object (either may be gone).
async fn discard_volume(repository: &Repo, target: &Target, volume: &JournalVolume) -> Result<()> {
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

/// The key of volume `index` of the backup `target` names.
pub(super) fn volume_key(repository: &Repo, target: &Target, index: u32) -> Result<ObjectKey> {
    repository.key(&ObjectRole::Volume {
        dataset: target.dataset,
        backup: target.backup,
        index,
    })
}
