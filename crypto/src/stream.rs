//! Async adaptors: encrypt or decrypt a `Stream` of `Bytes` chunks into another, with
//! memory bounded by one input chunk plus one segment (never the whole volume).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::Stream;
use pin_project_lite::pin_project;

use crate::error::Error;
use crate::volume::{VolumeDecryptor, VolumeEncryptor};

pin_project! {
    /// Ciphertext of a volume, from a stream of plaintext chunks. Made by
    /// [`encrypt_stream`].
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct EncryptStream<S> {
        #[pin]
        input: S,
        encryptor: Option<VolumeEncryptor>,
        ready: VecDeque<Bytes>,
    }
}

/// Encrypts a plaintext stream into the volume's ciphertext stream.
///
/// The output ends (after the final segment) when the input ends. An input error is
/// passed through and ends the output: a consumer MUST then discard what it received, as
/// the volume is incomplete. Errors of this crate convert into the stream's error type
/// `E` (`std::io::Error` works out of the box).
///
/// Throughput: input chunks that are uniquely owned `Bytes` (a fresh buffer per read,
/// as `Bytes::from(vec)`) are sealed in place, at raw AES-GCM speed; shared chunks (for
/// example `tokio_util::io::ReaderStream`'s, which share one read buffer) cost one copy,
/// about a third of the throughput on a machine whose AES-GCM outruns memcpy. See
/// [`VolumeEncryptor::push_chunk`] and `benches/throughput.rs`.
pub fn encrypt_stream<S, E>(input: S, encryptor: VolumeEncryptor) -> EncryptStream<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: From<Error>,
{
    EncryptStream {
        input,
        encryptor: Some(encryptor),
        ready: VecDeque::new(),
    }
}

impl<S, E> Stream for EncryptStream<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: From<Error>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(piece) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(piece)));
            }
            let Some(encryptor) = this.encryptor.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(this.input.as_mut().poll_next(cx)) {
                // Less than a segment so far yields no pieces: the loop reads on.
                Some(Ok(chunk)) => match encryptor.push_chunk(chunk) {
                    Ok(pieces) => this.ready.extend(pieces),
                    Err(err) => {
                        *this.encryptor = None;
                        return Poll::Ready(Some(Err(err.into())));
                    }
                },
                Some(Err(err)) => {
                    *this.encryptor = None;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    let Some(encryptor) = this.encryptor.take() else {
                        return Poll::Ready(None);
                    };
                    return Poll::Ready(Some(encryptor.finish().map_err(E::from)));
                }
            }
        }
    }
}

pin_project! {
    /// Verified plaintext of a volume, from a stream of ciphertext chunks. Made by
    /// [`decrypt_stream`].
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct DecryptStream<S> {
        #[pin]
        input: S,
        decryptor: Option<VolumeDecryptor>,
        ready: VecDeque<Bytes>,
    }
}

/// Decrypts and verifies a volume's ciphertext stream.
///
/// Each chunk is yielded once its segments authenticate; the stream ends with `None`
/// only after the final segment verified. A consumer MUST treat the plaintext as invalid
/// unless the stream ended without an error (for example, kill a `zfs receive` that was
/// fed from it). Any error ends the stream.
pub fn decrypt_stream<S, E>(input: S, decryptor: VolumeDecryptor) -> DecryptStream<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: From<Error>,
{
    DecryptStream {
        input,
        decryptor: Some(decryptor),
        ready: VecDeque::new(),
    }
}

impl<S, E> Stream for DecryptStream<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: From<Error>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(piece) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(piece)));
            }
            let Some(decryptor) = this.decryptor.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(this.input.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => match decryptor.push_chunk(chunk) {
                    Ok(pieces) => this.ready.extend(pieces),
                    Err(err) => {
                        *this.decryptor = None;
                        return Poll::Ready(Some(Err(err.into())));
                    }
                },
                Some(Err(err)) => {
                    *this.decryptor = None;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    let Some(decryptor) = this.decryptor.take() else {
                        return Poll::Ready(None);
                    };
                    match decryptor.finish() {
                        Ok(out) if out.is_empty() => return Poll::Ready(None),
                        Ok(out) => return Poll::Ready(Some(Ok(out))),
                        Err(err) => return Poll::Ready(Some(Err(err.into()))),
                    }
                }
            }
        }
    }
}
