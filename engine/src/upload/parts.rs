//! Where a volume's parts begin and end, in plaintext, and the check the journal records
//! per part before the part is sent.

use std::collections::VecDeque;

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use zib_crypto::{HEADER_LEN, SEGMENT_CIPHERTEXT_LEN, SEGMENT_LEN, TAG_LEN};

use super::shape::PartCutting;
use super::VolumeShape;
use crate::error::{Error, Result};
use crate::hashing::finish;
use crate::state::journal::JournalPart;

/// What a journalled part's 32-byte check is the SHA-256 of. A resumed upload
/// re-encrypts the re-read stream under the journalled salt and sends a part again only
/// when its check equals the journalled one, so the check must change whenever the
/// part's plaintext does. Like [`PartCutting`], it is the journal's, not the format's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PartCheck {
    /// The part's plaintext: a third SHA-256 pass over every byte, beside the volume's
    /// and the stream's. What journals of versions 1 and 2 hold; kept so that their
    /// uploads resume.
    PlaintextSha256,
    /// The authentication tags of the part's segments, in order (16 bytes per 65,536
    /// of plaintext). Under one key and nonce, two segments of equal length and
    /// different plaintext have different ciphertexts, and their GCM tags differ except
    /// with probability below 2^-115: the tags' difference is a nonzero polynomial in
    /// the secret GHASH key of degree at most 4,103 (the blocks of a full segment, its
    /// associated data and its lengths), and the stream cannot depend on that key. So
    /// equal checks mean equal plaintexts, and the tags are at hand once the part is
    /// encrypted: no pass over the plaintext. docs/FORMAT.md, "Salts, determinism, and
    /// resumed uploads", has the whole argument.
    SegmentTags,
}

/// The plaintext a part encrypts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlainPart {
    pub(crate) start: u64,
    pub(crate) len: u64,
    /// The plaintext's SHA-256, computed only under [`PartCheck::PlaintextSha256`]: then
    /// it is the part's check.
    pub(crate) plaintext_sha256: Option<[u8; 32]>,
    pub(crate) last: bool,
}

impl PlainPart {
    /// The check of this part, whose ciphertext is `ciphertext` (`first`: the volume's
    /// first part, which starts with the header): its plaintext's hash where
    /// [`PartPlaintext`] was made to compute one, else its segment tags' hash.
    pub(crate) fn check(&self, ciphertext: &[u8], first: bool) -> [u8; 32] {
        self.plaintext_sha256
            .unwrap_or_else(|| segment_tags_sha256(ciphertext, first))
    }

    pub(crate) fn matches(&self, check: &[u8; 32], journalled: &JournalPart) -> bool {
        self.start == journalled.plaintext_start
            && self.len == journalled.plaintext_len
            && *check == journalled.check
            && self.last == journalled.last
    }
}

/// SHA-256 of the tags of the segments in a part's ciphertext, in order. A part holds
/// whole sealed segments (after the volume header, in the first part), and the last
/// part ends with the volume's final, shorter segment: each segment's tag is its last
/// 16 bytes.
fn segment_tags_sha256(ciphertext: &[u8], first: bool) -> [u8; 32] {
    let header = if first { HEADER_LEN as usize } else { 0 };
    let segments = ciphertext.get(header..).unwrap_or_default();
    let mut hash = Context::new(&SHA256);
    for segment in segments.chunks(SEGMENT_CIPHERTEXT_LEN as usize) {
        hash.update(&segment[segment.len().saturating_sub(TAG_LEN as usize)..]);
    }
    finish(hash)
}

/// Tracks a volume's plaintext part by part: where each part's plaintext begins and
/// ends, and under [`PartCheck::PlaintextSha256`] its hash. A part other than the last
/// holds whole segments (the encryptor seals a segment as soon as it is full), so its
/// plaintext is a fixed number of segments: the boundaries are known before the
/// ciphertext is cut.
///
/// Cut with [`PartCutting::FinalSegmentInLastPart`], a full part is closed only once a
/// whole segment follows it (the encryptor has then sealed a segment the next part
/// starts with); until then the bytes after it count twice — into the next part and
/// into the full part extended by them, which becomes the volume's last part if the
/// stream ends first. Hashed, that is less than one segment per part hashed again.
pub(crate) struct PartPlaintext {
    first_len: u64,
    later_len: u64,
    cutting: PartCutting,
    number: u32,
    start: u64,
    len: u64,
    /// The current part's plaintext hash (`None`: the check does not need one).
    hash: Option<Context>,
    /// A full part waiting for a whole segment after it (FinalSegmentInLastPart only).
    held: Option<HeldPart>,
    ready: VecDeque<PlainPart>,
}

/// A full part, and the same part extended by the bytes that followed it so far.
struct HeldPart {
    start: u64,
    len: u64,
    full: Option<Context>,
    extended: Option<Context>,
}

impl PartPlaintext {
    pub(crate) fn new(shape: &VolumeShape, cutting: PartCutting, check: PartCheck) -> Self {
        let (first_len, later_len) = shape.aligned_plaintext_lens();
        let hashed = check == PartCheck::PlaintextSha256;
        Self {
            first_len,
            later_len,
            cutting,
            number: 1,
            start: 0,
            len: 0,
            hash: hashed.then(|| Context::new(&SHA256)),
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

    /// A fresh hash for the next part, if parts are hashed.
    fn fresh_hash(&self) -> Option<Context> {
        self.hash.as_ref().map(|_| Context::new(&SHA256))
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
            if let Some(hash) = &mut self.hash {
                hash.update(now);
            }
            if let Some(extended) = self.held.as_mut().and_then(|held| held.extended.as_mut()) {
                extended.update(now);
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
        let fresh = self.fresh_hash();
        let full = std::mem::replace(&mut self.hash, fresh);
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
                plaintext_sha256: held.full.map(finish),
                last: false,
            });
        }
    }

    fn close(&mut self, last: bool) {
        let fresh = self.fresh_hash();
        let hash = std::mem::replace(&mut self.hash, fresh);
        self.ready.push_back(PlainPart {
            start: self.start,
            len: self.len,
            plaintext_sha256: hash.map(finish),
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
                plaintext_sha256: held.extended.map(finish),
                last: true,
            }),
            None => self.close(true),
        }
        self.next_full()
    }
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
    /// per-part check cover every byte sent under a journalled salt; each part's check
    /// is the hash of its plaintext, or of exactly its segments' tags.
    #[test]
    fn journalled_plaintext_ranges_are_what_each_part_encrypts() {
        let shape = small_shape();
        let key = DataKey::generate().unwrap();
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
            for (cutting, check) in [
                (PartCutting::FinalSegmentAlone, PartCheck::PlaintextSha256),
                (
                    PartCutting::FinalSegmentInLastPart,
                    PartCheck::PlaintextSha256,
                ),
                (PartCutting::FinalSegmentInLastPart, PartCheck::SegmentTags),
                // No zib writes this journal, but one that said so would work.
                (PartCutting::FinalSegmentAlone, PartCheck::SegmentTags),
            ] {
                let salt = VolumeSalt::generate().unwrap();
                let parts = encrypt_in_parts(&plaintext, 100_003, &key, &salt, cutting, check);
                assert_eq!(
                    parts.len() as u64,
                    shape.parts(len as u64, cutting),
                    "length {len}, {cutting:?}: the count `VolumeShape::parts` predicts"
                );
                check_ranges(&plaintext, &parts, len, check);
            }
        }
    }

    fn small_shape() -> VolumeShape {
        VolumeShape {
            volume_plaintext_len: 64 << 20,
            part_len: 5 << 20,
            parts_in_flight: 2,
        }
    }

    /// Encrypts `plaintext` (fed in `chunk`-byte pieces) as one volume of
    /// [`small_shape`] under `salt`, and cuts the ciphertext as `VolumeUpload::append`
    /// cuts it: a full part goes at once (final segment alone) or once bytes follow it
    /// (in last part). Each part comes with the plaintext range `PartPlaintext` gave it.
    fn encrypt_in_parts(
        plaintext: &[u8],
        chunk: usize,
        key: &DataKey,
        salt: &VolumeSalt,
        cutting: PartCutting,
        check: PartCheck,
    ) -> Vec<(Bytes, PlainPart)> {
        let shape = small_shape();
        let (first_part, later_part) = shape.aligned_part_lens();
        let identity = VolumeIdentity {
            repository_id: [1; 16],
            backup_id: [2; 16],
            volume_index: 0,
        };
        let mut encryptor = VolumeEncryptor::new(key, identity, salt).unwrap();
        let mut plain = PartPlaintext::new(&shape, cutting, check);
        let mut buffer = BytesMut::new();
        let mut parts: Vec<(Bytes, PlainPart)> = Vec::new();
        let target = |parts: &Vec<(Bytes, PlainPart)>| {
            if parts.is_empty() {
                first_part
            } else {
                later_part
            }
        };
        let full = |buffer: &BytesMut, target: usize| match cutting {
            PartCutting::FinalSegmentAlone => buffer.len() >= target,
            PartCutting::FinalSegmentInLastPart => buffer.len() > target,
        };
        for chunk in plaintext.chunks(chunk) {
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
        parts
    }

    /// Each part's journalled range is contiguous with the previous one and is exactly
    /// the plaintext its ciphertext encrypts; its check covers exactly that.
    fn check_ranges(plaintext: &[u8], parts: &[(Bytes, PlainPart)], len: usize, check: PartCheck) {
        let volume: Vec<u8> = parts.iter().flat_map(|(part, _)| part.to_vec()).collect();
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
            let computed = range.check(part, number == 0);
            match check {
                PartCheck::PlaintextSha256 => assert_eq!(computed, sha256),
                PartCheck::SegmentTags => {
                    assert_eq!(range.plaintext_sha256, None, "no plaintext pass");
                    assert_eq!(
                        computed,
                        tags_of(&volume, range),
                        "length {len}, part {number}"
                    );
                }
            }
            expected_start += range.len;
        }
        assert_eq!(expected_start, len as u64);
    }

    /// The SHA-256 of the tags of the segments a part's range covers, read from the
    /// whole volume at the offsets FORMAT.md gives (segment `i` at `58 + i · 65552`).
    fn tags_of(volume: &[u8], range: &PlainPart) -> [u8; 32] {
        let first = range.start / SEGMENT_LEN;
        // The last part also holds the final segment, even an empty one.
        let segments = range.len / SEGMENT_LEN + u64::from(range.last);
        let mut hash = Context::new(&SHA256);
        for segment in first..first + segments {
            let start = HEADER_LEN + segment * SEGMENT_CIPHERTEXT_LEN;
            let end = (start + SEGMENT_CIPHERTEXT_LEN).min(volume.len() as u64);
            let end = usize::try_from(end).unwrap();
            hash.update(&volume[end - TAG_LEN as usize..end]);
        }
        finish(hash)
    }

    /// Each part's check, for `plaintext` encrypted as one volume under `salt`.
    fn checks(plaintext: &[u8], key: &DataKey, salt: &VolumeSalt) -> Vec<[u8; 32]> {
        let parts = encrypt_in_parts(
            plaintext,
            65_521,
            key,
            salt,
            PartCutting::FinalSegmentInLastPart,
            PartCheck::SegmentTags,
        );
        parts
            .iter()
            .enumerate()
            .map(|(number, (part, range))| range.check(part, number == 0))
            .collect()
    }

    /// What a resumed upload relies on: under the journalled salt the same plaintext
    /// gives the same checks, and one changed byte anywhere changes its part's check
    /// (and only that one), so the part is never sent under that salt.
    #[test]
    fn under_one_salt_a_parts_check_changes_exactly_when_its_plaintext_does() {
        let key = DataKey::generate().unwrap();
        let salt = VolumeSalt::generate().unwrap();
        let plaintext: Vec<u8> = (0..12_u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let before = checks(&plaintext, &key, &salt);
        assert_eq!(before.len(), 3);
        assert_eq!(checks(&plaintext, &key, &salt), before, "deterministic");
        let (first_plain, _) = small_shape().aligned_plaintext_lens();
        for (position, part) in [
            (0, 0),
            (first_plain - 1, 0),
            (first_plain, 1),
            (7 << 20, 1),
            (plaintext.len() as u64 - 1, 2),
        ] {
            let mut changed = plaintext.clone();
            changed[usize::try_from(position).unwrap()] ^= 0x01;
            let after = checks(&changed, &key, &salt);
            for (index, (old, new)) in before.iter().zip(&after).enumerate() {
                assert_eq!(
                    old == new,
                    index != part,
                    "byte {position} changed: part {index}'s check"
                );
            }
        }
        // Another salt (a fresh attempt) gives other checks for the same plaintext.
        let other = VolumeSalt::generate().unwrap();
        assert_ne!(checks(&plaintext, &key, &other)[0], before[0]);
    }
}
