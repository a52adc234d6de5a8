//! The stream's and each volume's SHA-256 — the two hashes the format records — computed
//! on a thread of their own, beside the task that encrypts (a backup) or decrypts (a
//! restore, a verify): on a machine with a core to spare they no longer add to the time
//! each byte spends on that task (docs/BENCHMARKS.md measured them as the largest cost of
//! the pipeline itself, and a third of the restore's).
//!
//! The hashing thread reads the same chunks the task does (a chunk is shared, not
//! copied); the queue between them holds at most [`QUEUE`] messages — a chunk, or a
//! batch of chunks the sender gathered (the restore sends 1 MiB batches of 64 KiB
//! segments, so that the thread and the task wake each other once per batch, not per
//! segment) — which bounds both the memory they keep alive and how far the thread may
//! fall behind: 8 chunks of the backup's stream, 8 MiB of the restore's plaintext (plus
//! whatever read buffers those share). (The resume journal's
//! per-part check needs no hash of the plaintext: it is taken from the part's segment
//! tags, `crate::upload::parts`.)

use bytes::Bytes;
use ring::digest::{Context, SHA256};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Messages waiting for the hashing thread.
pub(crate) const QUEUE: usize = 8;

enum Message {
    Chunk(Bytes),
    Chunks(Vec<Bytes>),
    EndVolume(oneshot::Sender<[u8; 32]>),
    EndStream(oneshot::Sender<[u8; 32]>),
}

/// The hashes of one pass over a stream. Dropping it ends the thread.
pub(crate) struct PlaintextHashes {
    sender: mpsc::Sender<Message>,
}

impl PlaintextHashes {
    /// Starts the hashing thread (one of tokio's blocking threads).
    pub(crate) fn start() -> Self {
        let (sender, mut receiver) = mpsc::channel(QUEUE);
        tokio::task::spawn_blocking(move || {
            let mut stream = Context::new(&SHA256);
            let mut volume = Context::new(&SHA256);
            while let Some(message) = receiver.blocking_recv() {
                match message {
                    Message::Chunk(chunk) => {
                        stream.update(&chunk);
                        volume.update(&chunk);
                    }
                    Message::Chunks(chunks) => {
                        for chunk in chunks {
                            stream.update(&chunk);
                            volume.update(&chunk);
                        }
                    }
                    Message::EndVolume(reply) => {
                        let done = std::mem::replace(&mut volume, Context::new(&SHA256));
                        // The receiver gone means the pass stopped: nothing to tell.
                        let _ = reply.send(finish(done));
                    }
                    Message::EndStream(reply) => {
                        let done = std::mem::replace(&mut stream, Context::new(&SHA256));
                        let _ = reply.send(finish(done));
                    }
                }
            }
        });
        Self { sender }
    }

    /// Hashes `chunk` into the stream and the current volume (waits while the queue is
    /// full).
    pub(crate) async fn update(&self, chunk: &Bytes) -> Result<()> {
        self.send(Message::Chunk(chunk.clone())).await
    }

    /// Hashes `chunks`, in order, as [`update`](Self::update) would one by one.
    pub(crate) async fn update_all(&self, chunks: Vec<Bytes>) -> Result<()> {
        self.send(Message::Chunks(chunks)).await
    }

    /// The current volume's hash; the next chunk starts the next volume.
    pub(crate) async fn end_volume(&self) -> Result<[u8; 32]> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::EndVolume(reply)).await?;
        answer.await.map_err(|_| stopped())
    }

    /// The whole stream's hash.
    pub(crate) async fn end_stream(&self) -> Result<[u8; 32]> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::EndStream(reply)).await?;
        answer.await.map_err(|_| stopped())
    }

    async fn send(&self, message: Message) -> Result<()> {
        self.sender.send(message).await.map_err(|_| stopped())
    }
}

/// A finished SHA-256 as the 32 bytes the format and the journal record.
pub(crate) fn finish(hash: Context) -> [u8; 32] {
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(hash.finish().as_ref());
    sha256
}

/// The hashing thread ended early: only a panic in it can do that.
fn stopped() -> Error {
    Error::Internal("the thread hashing the send stream stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_hashes_are_those_of_the_stream_and_of_each_volume() {
        let sha = |bytes: &[u8]| {
            let mut out = [0u8; 32];
            out.copy_from_slice(ring::digest::digest(&SHA256, bytes).as_ref());
            out
        };
        let volumes: Vec<Vec<Bytes>> = vec![
            (0..20)
                .map(|i| Bytes::from(vec![i as u8; 1000 + i]))
                .collect(),
            Vec::new(),
            vec![Bytes::from_static(b"last")],
        ];
        // Sent chunk by chunk, then in batches: the hashes do not depend on how.
        for batched in [false, true] {
            let hashes = PlaintextHashes::start();
            let mut whole = Vec::new();
            for chunks in &volumes {
                if batched {
                    let (first, second) = chunks.split_at(chunks.len() / 2);
                    hashes.update_all(first.to_vec()).await.unwrap();
                    hashes.update_all(second.to_vec()).await.unwrap();
                } else {
                    for chunk in chunks {
                        hashes.update(chunk).await.unwrap();
                    }
                }
                let volume = chunks.concat();
                assert_eq!(hashes.end_volume().await.unwrap(), sha(&volume));
                whole.extend_from_slice(&volume);
            }
            assert_eq!(hashes.end_stream().await.unwrap(), sha(&whole));
        }
    }
}
