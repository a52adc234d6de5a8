//! Volumes → send stream: a committed backup's volumes read back in order, decrypted and
//! verified, as the plaintext stream a `zfs receive` / `btrfs receive` consumes.
//!
//! Each volume is decrypted with zib-crypto's [`decrypt_stream`] (every segment
//! authenticated, the final segment required). On top of that, what the manifest binds
//! is checked: each volume's plaintext length; then, over the whole stream, the volume
//! list hash (which catches a volume from another upload attempt of the same index) and
//! the stream's length and SHA-256. The stream's last chunk is held back until those
//! checks pass, so a receive that is fed a stream failing them never sees its end — and
//! a receive that never gets its end discards what it got.
//!
//! The two SHA-256 passes run on a thread of their own ([`PlaintextHashes`]), beside the
//! decryption and the receive.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use zib_crypto::{decrypt_stream, VolumeDecryptor, VolumeIdentity};
use zib_storage_backend::{ByteRange, ObjectKey};

use crate::context::Repo;
use crate::error::{Error, Result};
use crate::file_chunks::read_in_chunks;
use crate::format::layout::ObjectRole;
use crate::format::records::{volume_list_hash, ManifestRecord, VolumeListEntry};
use crate::hashing::PlaintextHashes;
use crate::ids::BackupId;

/// Plaintext bytes handed to the hashing thread at once: one wake-up of each side per
/// 16 segments instead of per segment.
const HASH_BATCH: usize = 1 << 20;

/// Reads a committed backup's volumes back, decrypting and verifying them, as one
/// plaintext stream.
///
/// A volume that fails to decrypt, a length or hash that differs, a missing volume, or
/// a volume list or stream hash that differs ends the stream with an error naming the
/// object, and the last chunk of a stream that fails the final checks is never yielded.
/// The volumes must be readable (restored from the archive class).
pub(crate) fn backup_stream(
    repository: Arc<Repo>,
    manifest: ManifestRecord,
    volumes: Volumes,
) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    let state = Reader {
        repository,
        manifest,
        volumes,
        next_index: 0,
        current: None,
        entries: Vec::new(),
        hashes: None,
        stream_len: 0,
        unhashed: Vec::new(),
        unhashed_len: 0,
        held_back: VecDeque::new(),
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

/// The volume being read: its verified plaintext chunks, and what it measured so far.
struct CurrentVolume {
    key: ObjectKey,
    plaintext: BoxStream<'static, Result<Bytes>>,
    /// Ciphertext bytes read so far.
    ciphertext: Arc<AtomicU64>,
    plaintext_len: u64,
}

/// Where the volumes are read from.
#[derive(Debug, Clone)]
pub(crate) enum Volumes {
    /// The bucket (readable now: a local directory, or restored copies).
    Bucket,
    /// Verified copies staged by a restore.
    Staged(StagedVolumes),
}

/// A restore's staging directory, whose verified copies (named by [`staged_volume`]) may
/// still be arriving: a volume is read once it has, so a stream can be received while
/// its later volumes download; and each copy read to its end is reported, so that the
/// restore may delete it when the staging space runs short.
#[derive(Debug, Clone)]
pub(crate) struct StagedVolumes {
    dir: PathBuf,
    arrived: watch::Receiver<BTreeSet<(BackupId, u32)>>,
    read: Arc<watch::Sender<BTreeSet<(BackupId, u32)>>>,
    gave_up: Arc<AtomicBool>,
}

impl StagedVolumes {
    /// The copies in `dir`: those `arrived` holds, and those added to it until its sender
    /// is dropped. The receiver returned says which were read to their end; it is told
    /// "closed" once every clone of these is dropped (nothing more will be read).
    pub(crate) fn new(
        dir: PathBuf,
        arrived: watch::Receiver<BTreeSet<(BackupId, u32)>>,
    ) -> (Self, watch::Receiver<BTreeSet<(BackupId, u32)>>) {
        let (read, reads) = watch::channel(BTreeSet::new());
        let staged = Self {
            dir,
            arrived,
            read: Arc::new(read),
            gave_up: Arc::default(),
        };
        (staged, reads)
    }

    /// Whether a read waited for a volume that never arrived (its sender was dropped
    /// first): the stream then ended with an error for that reason, not for its bytes.
    pub(crate) fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::Relaxed)
    }

    /// Reports volumes `0..count` of `backup` read to their end (or not needed).
    pub(crate) fn mark_read(&self, backup: BackupId, count: u32) {
        self.read.send_modify(|read| {
            read.extend((0..count).map(|index| (backup, index)));
        });
    }

    /// Waits until volume `index` of `backup` has arrived, and returns its path.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when it never will (then [`Self::gave_up`] says so).
    pub(crate) async fn wait_for(&self, backup: BackupId, index: u32) -> Result<PathBuf> {
        let mut arrived = self.arrived.clone();
        if arrived
            .wait_for(|staged| staged.contains(&(backup, index)))
            .await
            .is_err()
        {
            self.gave_up.store(true, Ordering::Relaxed);
            return Err(Error::Internal(format!(
                "volume {index} of backup {backup} was not staged by this run"
            )));
        }
        Ok(staged_volume(&self.dir, backup, index))
    }
}

/// The staged copy of volume `index` of `backup` in `dir`.
pub(crate) fn staged_volume(dir: &Path, backup: BackupId, index: u32) -> PathBuf {
    dir.join(format!("{backup}-{index:08}.volume"))
}

struct Reader {
    repository: Arc<Repo>,
    manifest: ManifestRecord,
    volumes: Volumes,
    next_index: u32,
    current: Option<CurrentVolume>,
    entries: Vec<VolumeListEntry>,
    /// The stream's and the current volume's hashes, started with the first volume (the
    /// thread is tokio's: the stream is built before it is polled on the runtime).
    hashes: Option<PlaintextHashes>,
    stream_len: u64,
    /// Plaintext read but not yet given to the hashing thread: it goes in batches of
    /// [`HASH_BATCH`] bytes.
    unhashed: Vec<Bytes>,
    unhashed_len: usize,
    /// Plaintext not yet yielded: the newest chunk waits until the next one arrives (or
    /// the whole stream verified), so the stream's end is never given out unverified.
    held_back: VecDeque<Bytes>,
    finished: bool,
}

impl Reader {
    async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.held_back.len() > 1 {
                return Ok(self.held_back.pop_front());
            }
            if self.current.is_none() {
                if self.next_index == self.manifest.volume_count {
                    self.verify_end().await?;
                    self.finished = true;
                    return Ok(self.held_back.pop_front());
                }
                self.current = Some(
                    open_volume(
                        &self.repository,
                        &self.manifest,
                        &self.volumes,
                        self.next_index,
                    )
                    .await?,
                );
                self.next_index += 1;
            }
            let Some(volume) = self.current.as_mut() else {
                continue;
            };
            match volume.plaintext.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    if !chunk.is_empty() {
                        volume.plaintext_len += chunk.len() as u64;
                        self.stream_len += chunk.len() as u64;
                        self.unhashed_len += chunk.len();
                        self.unhashed.push(chunk.clone());
                        if self.unhashed_len >= HASH_BATCH {
                            self.hash_unhashed().await?;
                        }
                        self.held_back.push_back(chunk);
                    }
                }
                None => {
                    let Some(volume) = self.current.take() else {
                        continue;
                    };
                    self.close_volume(volume).await?;
                }
            }
        }
    }

    fn hashes(&mut self) -> &PlaintextHashes {
        self.hashes.get_or_insert_with(PlaintextHashes::start)
    }

    async fn hash_unhashed(&mut self) -> Result<()> {
        if self.unhashed.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.unhashed);
        self.unhashed_len = 0;
        self.hashes().update_all(batch).await
    }

    async fn close_volume(&mut self, volume: CurrentVolume) -> Result<()> {
        self.hash_unhashed().await?;
        let plaintext_sha256 = self.hashes().end_volume().await?;
        if let Volumes::Staged(staged) = &self.volumes {
            staged.mark_read(self.manifest.backup_id, self.next_index);
        }
        self.entries.push(VolumeListEntry {
            index: self.next_index - 1,
            plaintext_len: volume.plaintext_len,
            ciphertext_len: volume.ciphertext.load(Ordering::Relaxed),
            plaintext_sha256,
        });
        let expected = self.manifest.volume_plaintext_len;
        let is_last = self.next_index == self.manifest.volume_count;
        if (!is_last && volume.plaintext_len != expected) || volume.plaintext_len > expected {
            return Err(Error::Corrupt {
                object: volume.key.as_str().to_owned(),
                reason: format!(
                    "holds {} plaintext bytes; the manifest says volumes hold {expected}",
                    volume.plaintext_len
                ),
            });
        }
        Ok(())
    }

    async fn verify_end(&mut self) -> Result<()> {
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
                "the volumes read back differ from the manifest's volume list (a volume was \
                 swapped, replaced or altered)"
                    .into(),
            ));
        }
        if self.stream_len != self.manifest.stream_len {
            return Err(corrupt(format!(
                "the stream read back is {} bytes; the manifest says {}",
                self.stream_len, self.manifest.stream_len
            )));
        }
        if self.hashes().end_stream().await? != self.manifest.stream_sha256 {
            return Err(corrupt(
                "the stream read back does not match the manifest's SHA-256".into(),
            ));
        }
        Ok(())
    }
}

async fn open_volume(
    repository: &Repo,
    manifest: &ManifestRecord,
    volumes: &Volumes,
    index: u32,
) -> Result<CurrentVolume> {
    let role = ObjectRole::Volume {
        dataset: manifest.dataset_id,
        backup: manifest.backup_id,
        index,
    };
    let key = repository.key(&role)?;
    let body: BoxStream<'static, Result<Bytes>> = match volumes {
        Volumes::Bucket => repository
            .backend()
            .get(&key, ByteRange::full())
            .await?
            .map(|chunk| chunk.map_err(Error::from))
            .boxed(),
        Volumes::Staged(staged) => {
            let path = staged.wait_for(manifest.backup_id, index).await?;
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|source| Error::LocalState {
                    path: path.clone(),
                    action: "read a staged volume",
                    source,
                })?;
            read_in_chunks(file.into_std().await)
                .map(move |chunk| {
                    chunk.map_err(|source| Error::LocalState {
                        path: path.clone(),
                        action: "read a staged volume",
                        source,
                    })
                })
                .boxed()
        }
    };
    let decryptor = VolumeDecryptor::new(
        repository.data_key(),
        VolumeIdentity {
            repository_id: *repository.id().as_bytes(),
            backup_id: *manifest.backup_id.as_bytes(),
            volume_index: index,
        },
    );
    // Ciphertext bytes are counted as they arrive, for the volume list entry.
    let ciphertext = Arc::new(AtomicU64::new(0));
    let counted = {
        let ciphertext = ciphertext.clone();
        body.inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                ciphertext.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        })
    };
    // A volume that does not decrypt is altered, truncated, swapped or not zib's:
    // the error names the object — and, for a staged copy (verified when downloaded),
    // the local file, which is then what was damaged.
    let object = key.as_str().to_owned();
    let staged = match volumes {
        Volumes::Bucket => None,
        Volumes::Staged(staged) => Some(staged_volume(&staged.dir, manifest.backup_id, index)),
    };
    let plaintext = decrypt_stream(counted, decryptor)
        .map(move |item| {
            item.map_err(|error| match (error, &staged) {
                (Error::Crypto(reason), Some(path)) => Error::StagedVolumeDamaged {
                    object: object.clone(),
                    path: path.clone(),
                    reason: reason.to_string(),
                },
                (Error::Crypto(reason), None) => Error::Corrupt {
                    object: object.clone(),
                    reason: reason.to_string(),
                },
                (other, _) => other,
            })
        })
        .boxed();
    Ok(CurrentVolume {
        key,
        plaintext,
        ciphertext,
        plaintext_len: 0,
    })
}
