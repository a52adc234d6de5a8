//! Where a volume's parts begin and end, in plaintext: what the journal records per part
//! before the part is sent.

use std::collections::VecDeque;

use ring::digest::{Context, SHA256};

use zib_crypto::SEGMENT_LEN;

use super::shape::PartCutting;
use super::VolumeShape;
use crate::error::{Error, Result};
use crate::state::journal::JournalPart;

/// The plaintext a part encrypts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlainPart {
    pub(crate) start: u64,
    pub(crate) len: u64,
    pub(crate) sha256: [u8; 32],
    pub(crate) last: bool,
}

impl PlainPart {
    pub(crate) fn matches(&self, journalled: &JournalPart) -> bool {
        self.start == journalled.plaintext_start
            && self.len == journalled.plaintext_len
            && self.sha256 == journalled.plaintext_sha256
            && self.last == journalled.last
    }
}

/// Hashes a volume's plaintext part by part. A part other than the last holds whole
/// segments (the encryptor seals a segment as soon as it is full), so its plaintext is
/// a fixed number of segments: the boundaries are known before the ciphertext is cut.
///
/// Cut with [`PartCutting::FinalSegmentInLastPart`], a full part is closed only once a
/// whole segment follows it (the encryptor has then sealed a segment the next part
/// starts with); until then the bytes after it are hashed twice — into the next part and
/// into the full part extended by them, which becomes the volume's last part if the
/// stream ends first. That is less than one segment per part hashed again.
pub(crate) struct PartPlaintext {
    first_len: u64,
    later_len: u64,
    cutting: PartCutting,
    number: u32,
    start: u64,
    len: u64,
    hash: Context,
    /// A full part waiting for a whole segment after it (FinalSegmentInLastPart only).
    held: Option<HeldPart>,
    ready: VecDeque<PlainPart>,
}

/// A full part, and the same part extended by the bytes that followed it so far.
struct HeldPart {
    start: u64,
    len: u64,
    full: Context,
    extended: Context,
}

impl PartPlaintext {
    pub(crate) fn new(shape: &VolumeShape, cutting: PartCutting) -> Self {
        let (first_len, later_len) = shape.aligned_plaintext_lens();
        Self {
            first_len,
            later_len,
            cutting,
            number: 1,
            start: 0,
            len: 0,
            hash: Context::new(&SHA256),
            held: None,
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

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = usize::try_from(self.target() - self.len).unwrap_or(usize::MAX);
            let room = match &self.held {
                // Only up to the first whole segment after the held part: then it closes.
                Some(_) => room.min(usize::try_from(SEGMENT_LEN - self.len).unwrap_or(0)),
                None => room,
            };
            let (now, rest) = data.split_at(room.min(data.len()));
            self.hash.update(now);
            if let Some(held) = &mut self.held {
                held.extended.update(now);
            }
            self.len += now.len() as u64;
            data = rest;
            if self.held.is_some() && self.len == SEGMENT_LEN {
                self.release_held();
            }
            if self.len == self.target() {
                match self.cutting {
                    PartCutting::FinalSegmentAlone => self.close(false),
                    PartCutting::FinalSegmentInLastPart => self.hold(),
                }
            }
        }
    }

    /// The current part is full: it waits for a whole segment after it.
    fn hold(&mut self) {
        let full = std::mem::replace(&mut self.hash, Context::new(&SHA256));
        self.held = Some(HeldPart {
            start: self.start,
            len: self.len,
            extended: full.clone(),
            full,
        });
        self.start += self.len;
        self.len = 0;
        self.number += 1;
    }

    /// A whole segment followed the held part: it was not the last.
    fn release_held(&mut self) {
        if let Some(held) = self.held.take() {
            self.ready.push_back(PlainPart {
                start: held.start,
                len: held.len,
                sha256: finish(held.full),
                last: false,
            });
        }
    }

    fn close(&mut self, last: bool) {
        let hash = std::mem::replace(&mut self.hash, Context::new(&SHA256));
        self.ready.push_back(PlainPart {
            start: self.start,
            len: self.len,
            sha256: finish(hash),
            last,
        });
        self.start += self.len;
        self.len = 0;
        self.number += 1;
    }

    pub(crate) fn next_full(&mut self) -> Result<PlainPart> {
        self.ready
            .pop_front()
            .ok_or_else(|| Error::Internal("a part was cut before its plaintext".into()))
    }

    /// The volume's last part: the held full part extended by what followed it, or the
    /// part being filled.
    pub(crate) fn finish(&mut self) -> Result<PlainPart> {
        match self.held.take() {
            Some(held) => self.ready.push_back(PlainPart {
                start: held.start,
                len: held.len + self.len,
                sha256: finish(held.extended),
                last: true,
            }),
            None => self.close(true),
        }
        self.next_full()
    }
}

fn finish(hash: Context) -> [u8; 32] {
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(hash.finish().as_ref());
    sha256
}

/// When `VolumeUpload::append` sends a part that is exactly full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartFull {
    /// As soon as it fills (the stream is still running: more bytes will come).
    SendNow,
    /// Only when more bytes follow: the volume's tail keeps its last part back for
    /// `finish`, so the last part is never empty.
    SendWhenMoreFollows,
    /// Never: the bytes join the part being filled, however full (the volume's final
    /// segment, cut with [`PartCutting::FinalSegmentInLastPart`]).
    Absorb,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::{Bytes, BytesMut};
    use zib_crypto::{
        DataKey, VolumeEncryptor, VolumeIdentity, VolumeSalt, HEADER_LEN, SEGMENT_CIPHERTEXT_LEN,
        SEGMENT_LEN, TAG_LEN,
    };

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
            first_plain + segment - 1,
            first_plain + segment,
            first_plain + segment + 1,
            2 * first_plain + segment * 3 + 5,
            3 * first_plain,
            3 * first_plain + segment - 1,
        ] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + i / 65_536) as u8).collect();
            for cutting in [
                PartCutting::FinalSegmentAlone,
                PartCutting::FinalSegmentInLastPart,
            ] {
                let salt = VolumeSalt::generate().unwrap();
                let mut encryptor = VolumeEncryptor::new(&key, identity, &salt).unwrap();
                let mut plain = PartPlaintext::new(&shape, cutting);
                let mut buffer = BytesMut::new();
                let mut parts: Vec<(Bytes, PlainPart)> = Vec::new();
                let target = |parts: &Vec<(Bytes, PlainPart)>| {
                    if parts.is_empty() {
                        first_part
                    } else {
                        later_part
                    }
                };
                // The ciphertext cut as `VolumeUpload::append` cuts it: a full part goes
                // at once (final segment alone) or once bytes follow it (in last part).
                let full = |buffer: &BytesMut, target: usize| match cutting {
                    PartCutting::FinalSegmentAlone => buffer.len() >= target,
                    PartCutting::FinalSegmentInLastPart => buffer.len() > target,
                };
                for chunk in plaintext.chunks(100_003) {
                    plain.update(chunk);
                    for piece in encryptor.push_chunk(Bytes::copy_from_slice(chunk)).unwrap() {
                        buffer.extend_from_slice(&piece);
                    }
                    while full(&buffer, target(&parts)) {
                        let part = buffer.split_to(target(&parts)).freeze();
                        parts.push((part, plain.next_full().unwrap()));
                    }
                }
                buffer.extend_from_slice(&encryptor.finish().unwrap());
                if cutting == PartCutting::FinalSegmentAlone && buffer.len() > target(&parts) {
                    let part = buffer.split_to(target(&parts)).freeze();
                    parts.push((part, plain.next_full().unwrap()));
                }
                parts.push((buffer.split().freeze(), plain.finish().unwrap()));
                assert_eq!(
                    parts.len() as u64,
                    shape.parts(len as u64, cutting),
                    "length {len}, {cutting:?}: the count `VolumeShape::parts` predicts"
                );
                check_ranges(&plaintext, &parts, len);
            }
        }
    }

    /// Each part's journalled range is contiguous with the previous one and is exactly
    /// the plaintext its ciphertext encrypts, hashed.
    fn check_ranges(plaintext: &[u8], parts: &[(Bytes, PlainPart)], len: usize) {
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
            sha256.copy_from_slice(ring::digest::digest(&SHA256, &plaintext[start..end]).as_ref());
            assert_eq!(range.sha256, sha256);
            expected_start += range.len;
        }
        assert_eq!(expected_start, len as u64);
    }
}
