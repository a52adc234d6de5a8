//! A local file read as a stream of large chunks by one blocking thread.
//!
//! `tokio::fs::File` runs every read on the blocking pool — one hand-over to a pool
//! thread and one wake-up back per call — and copies each read out of a buffer of its
//! own. For the files a restore reads whole (staged volumes, a gigabyte each), waking
//! threads and switching between them was a sixth of the restore's CPU, most of it
//! around `tokio::fs` calls (docs/BENCHMARKS.md, "The restore path"). Here one thread
//! reads the file from start to end straight into each chunk it hands over (one read
//! per chunk, as a rule), and keeps at most [`READ_AHEAD`] + 1 chunks ahead of the
//! consumer (those queued, and the one it waits to queue).

use std::io::Read;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes per chunk: large enough that a hand-over per chunk costs nothing that matters,
/// and a whole number of 64 KiB segments.
const CHUNK_LEN: usize = 1 << 20;
/// Chunks queued for the consumer.
const READ_AHEAD: usize = 2;

/// `file` from its current position to its end, in chunks of [`CHUNK_LEN`] (the last may
/// be shorter). Each chunk is the only reference to its bytes, so a decryptor may open
/// it in place. Dropping the stream stops the reading thread after at most one more
/// chunk; a reading thread that died (a panic) ends the stream with an error, never
/// with a clean end. Must be called within a tokio runtime.
pub(crate) fn read_in_chunks(
    mut file: std::fs::File,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let (chunks, receiver) = mpsc::channel(READ_AHEAD);
    let thread = tokio::task::spawn_blocking(move || loop {
        let Some(item) = read_chunk(&mut file).transpose() else {
            return;
        };
        let failed = item.is_err();
        if chunks.blocking_send(item).is_err() || failed {
            return;
        }
    });
    futures::stream::unfold(
        (receiver, Some(thread)),
        |(mut receiver, thread): (mpsc::Receiver<_>, Option<JoinHandle<()>>)| async move {
            if let Some(item) = receiver.recv().await {
                return Some((item, (receiver, thread)));
            }
            // The thread is gone: a clean end only if it ended by itself.
            let error = match thread?.await {
                Ok(()) => return None,
                Err(error) => {
                    std::io::Error::other(format!("the file's reading thread died: {error}"))
                }
            };
            Some((Err(error), (receiver, None)))
        },
    )
    .boxed()
}

/// The next chunk of `file`: up to [`CHUNK_LEN`] bytes, `None` at its end.
fn read_chunk(file: &mut std::fs::File) -> std::io::Result<Option<Bytes>> {
    // Zeroed first (a memset costs far less than the read): `read_to_end` would read
    // into spare capacity without it, but in pieces from 8 KiB up.
    let mut chunk = vec![0; CHUNK_LEN];
    let mut filled = 0;
    while filled < CHUNK_LEN {
        match file.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    if filled == 0 {
        return Ok(None);
    }
    chunk.truncate(filled);
    Ok(Some(Bytes::from(chunk)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use std::io::{Seek, SeekFrom, Write};

    #[tokio::test]
    async fn a_file_is_read_whole_in_order_from_its_position() {
        let len = 3 * CHUNK_LEN + 12_345;
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        file.seek(SeekFrom::Start(7)).unwrap();
        let chunks: Vec<Bytes> = read_in_chunks(file).try_collect().await.unwrap();
        assert_eq!(
            chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [CHUNK_LEN, CHUNK_LEN, CHUNK_LEN, 12_345 - 7]
        );
        assert_eq!(chunks.concat(), bytes[7..]);
        // Each chunk's bytes are its own: a decryptor can open them where they lie.
        assert!(chunks.into_iter().all(|chunk| chunk.try_into_mut().is_ok()));
    }

    #[tokio::test]
    async fn an_empty_file_is_an_empty_stream() {
        let file = tempfile::tempfile().unwrap();
        assert!(read_in_chunks(file).next().await.is_none());
    }

    #[tokio::test]
    async fn a_read_error_ends_the_stream_with_it() {
        // A directory opens for reading but every read of it fails (EISDIR).
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::open(dir.path()).unwrap();
        let mut stream = read_in_chunks(file);
        assert!(stream.next().await.unwrap().is_err());
        assert!(stream.next().await.is_none());
    }
}
