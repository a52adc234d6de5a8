//! Staging: a volume downloaded into a local file — resumed from where an interrupted
//! download stopped — and verified (every segment decrypted and authenticated) before
//! it counts as staged. The verification runs as the bytes arrive (a resumed download
//! first reads back what its partial file holds), so a staged copy costs one pass over
//! its bytes, and a download found altered stops within a few MiB of the first bad
//! segment instead of paying for the rest. (Writing and verifying run on a thread of
//! their own, beside the download, handed the bytes in batches of about 1 MiB — at once
//! whenever the download waits for the storage, so they are written while it waits —
//! and the download is at most [`WRITE_QUEUE`] + 2 batches ahead.) Staged volumes are
//! kept as the ciphertext the bucket holds: they are decrypted and checked again,
//! against the manifest's hashes, as their stream is received, so a staged file damaged
//! on disk is never received as valid (it is then removed, and the next run downloads
//! it again). A partial file is locked while it is written: a writer left running by a
//! dropped download is done with it before a new download measures it.
//!
//! ```text
//! <staging>/<backup id>-<index>.volume.part   being downloaded (resumed by length)
//! <staging>/<backup id>-<index>.volume        downloaded and verified
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use zib_crypto::{VolumeDecryptor, VolumeIdentity};
use zib_storage_backend::{ByteRange, ObjectKey};

use super::job::StagedVolume;
use super::run::Meter;
use crate::context::Repo;
use crate::download::staged_volume;
use crate::error::{Error, Result};
use crate::file_chunks::read_in_chunks;
use crate::ids::BackupId;
use crate::progress::Progress;
use crate::state::off_the_runtime;

/// Room kept free on the staging file system beyond what a download needs (metadata,
/// other programs).
const STAGING_MARGIN: u64 = 64 << 20;

/// Bytes free for this user on the file system holding `dir` (created if missing).
///
/// # Errors
///
/// [`Error::LocalState`] when the directory cannot be created or measured.
pub(crate) async fn free_bytes(dir: &Path) -> Result<u64> {
    off_the_runtime(
        dir,
        "measure the free space of the staging directory",
        |dir| {
            let failed = |source: std::io::Error| Error::LocalState {
                path: dir.to_owned(),
                action: "measure the free space of the staging directory",
                source,
            };
            std::fs::create_dir_all(dir).map_err(failed)?;
            let stats = rustix::fs::statvfs(dir).map_err(|errno| failed(errno.into()))?;
            Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
        },
    )
    .await
}

/// Whether `needed` bytes (plus the margin) fit in `free`.
pub(crate) fn fits(free: u64, needed: u64) -> bool {
    free >= needed.saturating_add(STAGING_MARGIN)
}

/// Stops with a clear error when `dir` has not `needed` bytes (plus a margin) free.
///
/// # Errors
///
/// [`Error::StagingFull`].
pub(crate) async fn ensure_room(dir: &Path, needed: u64) -> Result<()> {
    let free = free_bytes(dir).await?;
    if !fits(free, needed) {
        return Err(Error::StagingFull {
            dir: dir.to_owned(),
            needed: needed.saturating_add(STAGING_MARGIN),
            free,
        });
    }
    Ok(())
}

/// The partial download of a staged volume.
fn partial(path: &Path) -> PathBuf {
    path.with_extension("volume.part")
}

/// Bytes of volume `index` of `backup` already downloaded into `dir` (a finished copy
/// counts whole).
pub(crate) fn already_downloaded(dir: &Path, backup: BackupId, index: u32) -> u64 {
    let path = staged_volume(dir, backup, index);
    std::fs::metadata(&path)
        .or_else(|_| std::fs::metadata(partial(&path)))
        .map(|metadata| metadata.len())
        .unwrap_or(0)
}

/// Downloads object `key` (`size` bytes) into `dir` as volume `index` of `backup`,
/// resuming a partial download, then verifies it: on success the staged file exists
/// and every segment authenticated under this repository's key and the volume's identity.
///
/// `meter` writes what the download costs to the ledger as it goes.
///
/// # Errors
///
/// Storage errors (the partial file stays, and the next run resumes it);
/// [`Error::Corrupt`] naming the object when the downloaded volume does not verify (the
/// staged copy is deleted); [`Error::LocalState`] for the staging directory.
pub(crate) async fn download_volume(
    repository: &Repo,
    key: &ObjectKey,
    size: u64,
    dir: &Path,
    volume: (BackupId, u32),
    meter: &mut Meter<'_>,
    progress: &dyn Progress,
) -> Result<StagedVolume> {
    let resumed = already_downloaded(dir, volume.0, volume.1) > 0;
    match download_once(repository, key, size, dir, volume, meter, progress).await {
        // A copy resumed from an earlier run's partial file may carry that run's damage
        // (a crash mid-write): the object is blamed only if a whole fresh download fails
        // too.
        Err(Error::Corrupt { .. }) if resumed => {
            download_once(repository, key, size, dir, volume, meter, progress).await
        }
        other => other,
    }
}

async fn download_once(
    repository: &Repo,
    key: &ObjectKey,
    size: u64,
    dir: &Path,
    (backup, index): (BackupId, u32),
    meter: &mut Meter<'_>,
    progress: &dyn Progress,
) -> Result<StagedVolume> {
    let path = staged_volume(dir, backup, index);
    let part = partial(&path);
    let mut check = Verifier::new(repository, backup, index);
    // Never kept when it does not verify: the next run downloads it again.
    let refuse = |file: &Path, reason: String| {
        let _ = std::fs::remove_file(file);
        Error::Corrupt {
            object: key.to_string(),
            reason,
        }
    };
    let local = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| Error::LocalState {
            path,
            action,
            source,
        }
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(local("create the staging directory", dir))?;
    if tokio::fs::metadata(&path).await.is_ok() {
        // Renamed by a run killed before the job recorded it.
        if let Err(reason) = check.read_file(&path).await {
            return Err(refuse(&path, reason));
        }
    } else {
        // Locked before it is measured: a writer that a dropped download left behind
        // holds the lock until its last byte is written, so `have` is what the file keeps.
        let (file, mut have) = off_the_runtime(&part, "write a staged volume", |part| {
            open_locked(part).map_err(|source| Error::LocalState {
                path: part.to_owned(),
                action: "write a staged volume",
                source,
            })
        })
        .await?;
        if have > size {
            // Not this volume's bytes: start over.
            file.set_len(0).map_err(local(
                "remove a stale partial download of a staged volume",
                &part,
            ))?;
            have = 0;
        }
        if have > 0 {
            if let Err(reason) = check.read_file(&part).await {
                return Err(refuse(&part, reason));
            }
        }
        let mut writer = StagingWriter::start(file, check);
        let downloaded: Result<()> = async {
            if have < size {
                let mut body = repository.backend().get(key, ByteRange::from(have)).await?;
                loop {
                    let next = match body.next().now_or_never() {
                        Some(next) => next,
                        None => {
                            // The storage is slower than the writer: what came so far is
                            // handed over now, and written while the download waits.
                            if !writer.flush().await {
                                break;
                            }
                            body.next().await
                        }
                    };
                    let Some(chunk) = next else {
                        break;
                    };
                    let chunk = chunk?;
                    let len = chunk.len() as u64;
                    if !writer.push(chunk).await {
                        // The writer stopped; its failure comes with `finish` below.
                        break;
                    }
                    have += len;
                    progress.downloaded(len);
                    meter.checkpoint().await?;
                }
            }
            Ok(())
        }
        .await;
        // Waited for even after a failed download: nothing writes to the partial file
        // once this returns, so a retry measures what it holds.
        let written = writer.finish().await;
        let check = match (written, downloaded) {
            (Ok(verified), Ok(())) => verified,
            (Ok(_), Err(error)) => return Err(error),
            (Err(failure), downloaded) => {
                if let Err(also) = downloaded {
                    tracing::warn!(error = %also, "the download failed too");
                }
                // Bytes that do not verify outweigh a download that also failed: the
                // partial file holding them goes.
                return Err(match failure {
                    WriteFailure::Refused(reason) => refuse(&part, reason),
                    WriteFailure::Write(source) => local("write a staged volume", &part)(source),
                });
            }
        };
        if have != size {
            return Err(refuse(
                &part,
                format!("it downloaded as {have} bytes; the bucket listed {size}"),
            ));
        }
        let staged = match check.finish() {
            Ok(staged) => staged,
            Err(reason) => return Err(refuse(&part, reason)),
        };
        tokio::fs::rename(&part, &path)
            .await
            .map_err(local("finish a staged volume", &path))?;
        return Ok(staged);
    }
    check.finish().map_err(|reason| refuse(&path, reason))
}

/// Bytes of a download gathered before they are handed to the writing thread.
const WRITE_BATCH: usize = 1 << 20;
/// Batches waiting for the writing thread.
const WRITE_QUEUE: usize = 2;

/// Writes a download into its partial file and verifies it, on a thread of its own: one
/// hand-over per [`WRITE_BATCH`] bytes when the storage delivers faster than the disk
/// (instead of `tokio::fs`'s two per chunk and its copy of each), every chunk at once
/// when the download waits for the storage; and each chunk, once written, is verified
/// where it lies unless the storage still shares it.
///
/// Dropped before [`finish`](Self::finish) (the download's future dropped), it tells
/// the thread to stop before its next chunk; the thread keeps the partial file locked
/// until it has, so the next download of the volume measures the file only after.
struct StagingWriter {
    batches: Option<tokio::sync::mpsc::Sender<Vec<Bytes>>>,
    batch: Vec<Bytes>,
    batch_len: usize,
    thread: Option<tokio::task::JoinHandle<(Verifier, std::result::Result<(), WriteFailure>)>>,
    abandoned: Arc<AtomicBool>,
}

/// Why the writing thread stopped.
enum WriteFailure {
    /// The bytes do not verify: why.
    Refused(String),
    /// The partial file could not be written or made durable.
    Write(std::io::Error),
}

impl StagingWriter {
    /// Appends to `file`, verifying with `check` (which has seen what `file` holds).
    fn start(file: std::fs::File, check: Verifier) -> Self {
        let (batches, mut queued) = tokio::sync::mpsc::channel::<Vec<Bytes>>(WRITE_QUEUE);
        let abandoned = Arc::new(AtomicBool::new(false));
        let stop = abandoned.clone();
        let thread = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut check = check;
            let mut written = || {
                while let Some(batch) = queued.blocking_recv() {
                    for chunk in batch {
                        if stop.load(Ordering::Relaxed) {
                            return Err(WriteFailure::Write(std::io::Error::other(
                                "the download was abandoned",
                            )));
                        }
                        file.write_all(&chunk).map_err(WriteFailure::Write)?;
                        check.push(chunk).map_err(WriteFailure::Refused)?;
                    }
                }
                file.sync_all().map_err(WriteFailure::Write)
            };
            let result = written();
            (check, result)
        });
        Self {
            batches: Some(batches),
            batch: Vec::new(),
            batch_len: 0,
            thread: Some(thread),
            abandoned,
        }
    }

    /// Queues `chunk`, handing the batch over once it holds [`WRITE_BATCH`] bytes. False
    /// once the thread has stopped: [`finish`](Self::finish) says why.
    async fn push(&mut self, chunk: Bytes) -> bool {
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len < WRITE_BATCH {
            return true;
        }
        self.send().await
    }

    /// Hands over the batch gathered so far, however small. False once the thread has
    /// stopped.
    async fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return self
                .batches
                .as_ref()
                .is_some_and(|batches| !batches.is_closed());
        }
        self.send().await
    }

    async fn send(&mut self) -> bool {
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        match &self.batches {
            Some(batches) => batches.send(batch).await.is_ok(),
            None => false,
        }
    }

    /// Writes what is queued, makes the file durable, and returns the verifier, once
    /// the thread is done with the file.
    async fn finish(mut self) -> std::result::Result<Verifier, WriteFailure> {
        self.flush().await;
        // The thread ends once it has written every batch sent.
        drop(self.batches.take());
        let Some(thread) = self.thread.take() else {
            return Err(WriteFailure::Write(std::io::Error::other(
                "the staged copy's writer was already finished",
            )));
        };
        match thread.await {
            Ok((check, result)) => result.map(|()| check),
            Err(error) => Err(WriteFailure::Write(std::io::Error::other(format!(
                "the thread writing the staged copy stopped: {error}"
            )))),
        }
    }
}

impl Drop for StagingWriter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

/// Opens `part` for appending under an exclusive `flock` — waiting for any writer still
/// holding it — and returns it with its length.
fn open_locked(part: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)?;
    file.lock()?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// A volume's ciphertext decrypted as it passes, to prove that every segment
/// authenticates under this repository's key and the volume's identity and that the
/// final one is there. The plaintext is dropped: it is decrypted again as the stream is
/// received, and checked then against the manifest's hashes.
struct Verifier {
    decryptor: VolumeDecryptor,
    ciphertext_len: u64,
    plaintext_len: u64,
}

impl Verifier {
    fn new(repository: &Repo, backup: BackupId, index: u32) -> Self {
        Self {
            decryptor: VolumeDecryptor::new(
                repository.data_key(),
                VolumeIdentity {
                    repository_id: *repository.id().as_bytes(),
                    backup_id: *backup.as_bytes(),
                    volume_index: index,
                },
            ),
            ciphertext_len: 0,
            plaintext_len: 0,
        }
    }

    /// Decrypts the next ciphertext bytes; the error says why they do not verify.
    fn push(&mut self, chunk: Bytes) -> std::result::Result<(), String> {
        self.ciphertext_len += chunk.len() as u64;
        for piece in self
            .decryptor
            .push_chunk(chunk)
            .map_err(|error| error.to_string())?
        {
            self.plaintext_len += piece.len() as u64;
        }
        Ok(())
    }

    /// Decrypts what the file `path` holds (a staged copy, or a partial download).
    async fn read_file(&mut self, path: &Path) -> std::result::Result<(), String> {
        let file = tokio::fs::File::open(path).await.map_err(|error| {
            format!("the staged copy {} cannot be read: {error}", path.display())
        })?;
        let mut chunks = read_in_chunks(file.into_std().await);
        while let Some(chunk) = chunks.next().await {
            self.push(chunk.map_err(|error| format!("reading {}: {error}", path.display()))?)?;
        }
        Ok(())
    }

    /// The lengths, once the final segment authenticated.
    fn finish(self) -> std::result::Result<StagedVolume, String> {
        let last = self.decryptor.finish().map_err(|error| error.to_string())?;
        Ok(StagedVolume {
            ciphertext_len: self.ciphertext_len,
            plaintext_len: self.plaintext_len + last.len() as u64,
        })
    }
}

/// Deletes the staged copies of `backup`'s volumes (its stream was received).
pub(crate) async fn remove_stream(dir: &Path, backup: BackupId, volumes: u32) {
    for index in 0..volumes {
        let path = staged_volume(dir, backup, index);
        let _ = tokio::fs::remove_file(&path).await;
        let _ = tokio::fs::remove_file(partial(&path)).await;
    }
}
