//! Streaming authenticated encryption of a volume: a header, then fixed-size segments
//! sealed with AES-256-GCM under a per-upload-attempt volume key. Byte layout:
//! `docs/FORMAT.md`, section "Volume".

use std::fmt;

use bytes::{Bytes, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::{DataKey, KeyId, DATA_KEY_LEN, KEY_ID_LEN};

/// First 8 bytes of every volume.
pub const VOLUME_MAGIC: [u8; 8] = *b"ZIB-VOL\n";
/// Volume format version written by this code.
pub const VOLUME_VERSION: u16 = 1;
/// Length of the volume header in bytes.
pub const HEADER_LEN: u64 = 58;
/// Plaintext bytes in every segment but the last.
///
/// 64 KiB: large enough that the per-segment cost (nonce, tag, a call into ring) is
/// lost in the noise next to AES-GCM on the bytes themselves, small enough that a segment
/// being sealed or opened stays in the CPU's L2 cache between the copy that brings it in
/// and the cipher pass, and that a decryptor releases verified plaintext in small steps.
/// The benchmark in `benches/throughput.rs` measures the result against raw ring.
pub const SEGMENT_LEN: u64 = 64 * 1024;
/// AES-GCM tag length.
pub const TAG_LEN: u64 = 16;
/// Ciphertext bytes in every segment but the last.
pub const SEGMENT_CIPHERTEXT_LEN: u64 = SEGMENT_LEN + TAG_LEN;
/// Length of the per-volume HKDF salt.
pub const SALT_LEN: usize = 32;

const SEG: usize = SEGMENT_LEN as usize;
const SEG_CT: usize = SEGMENT_CIPHERTEXT_LEN as usize;
const HDR: usize = HEADER_LEN as usize;
const TAG: usize = TAG_LEN as usize;
const HKDF_INFO_LABEL: &[u8] = b"zib v1 volume key";
const AAD_LEN: usize = HDR + 16 + 16 + 4;

/// Which volume this is: the object's identity, bound into its key derivation and into
/// every segment's associated data, and named in every error about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VolumeIdentity {
    /// The repository's random id.
    pub repository_id: [u8; 16],
    /// The backup's random id.
    pub backup_id: [u8; 16],
    /// Position of the volume within its backup's stream, from 0.
    pub volume_index: u32,
}

impl fmt::Display for VolumeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of backup {} (repository {})",
            self.volume_index,
            hex::encode(self.backup_id),
            hex::encode(self.repository_id)
        )
    }
}

impl VolumeIdentity {
    fn encode_into(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.repository_id);
        out[16..32].copy_from_slice(&self.backup_id);
        out[32..36].copy_from_slice(&self.volume_index.to_le_bytes());
    }
}

/// The random salt of one volume upload attempt. Not secret; recorded in the volume
/// header and in the engine's journal so a resumed upload re-creates the same bytes.
///
/// A fresh salt MUST be drawn ([`VolumeSalt::generate`]) for every upload attempt whose
/// plaintext may differ from an earlier attempt's: the same salt with different plaintext
/// would reuse AES-GCM key/nonce pairs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VolumeSalt([u8; SALT_LEN]);

impl VolumeSalt {
    /// Draws a fresh salt from the system random number generator.
    ///
    /// # Errors
    /// [`Error::Random`] if the generator fails.
    pub fn generate() -> Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| Error::Random)?;
        Ok(Self(salt))
    }

    /// A salt read back from a journal or a header.
    pub const fn from_bytes(bytes: [u8; SALT_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw salt bytes.
    pub const fn as_bytes(&self) -> &[u8; SALT_LEN] {
        &self.0
    }
}

impl fmt::Debug for VolumeSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VolumeSalt({})", hex::encode(self.0))
    }
}

/// The plaintext header at the start of every volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeHeader {
    /// Id of the data key the volume is encrypted under.
    pub key_id: KeyId,
    /// The upload attempt's salt.
    pub salt: VolumeSalt,
}

impl VolumeHeader {
    /// The header's exact bytes.
    pub fn to_bytes(&self) -> [u8; HDR] {
        let mut out = [0u8; HDR];
        out[..8].copy_from_slice(&VOLUME_MAGIC);
        out[8..10].copy_from_slice(&VOLUME_VERSION.to_le_bytes());
        out[10..26].copy_from_slice(self.key_id.as_bytes());
        out[26..58].copy_from_slice(&self.salt.0);
        out
    }

    /// Parses the header from the first [`HEADER_LEN`] bytes of `bytes` (the rest is
    /// ignored), naming `volume` in any error.
    ///
    /// # Errors
    /// [`Error::CorruptVolume`] if `bytes` is too short or the magic is wrong;
    /// [`Error::UnsupportedVersion`] for a newer format version.
    pub fn parse(bytes: &[u8], volume: &VolumeIdentity) -> Result<Self> {
        let corrupt = |reason: &str| Error::CorruptVolume {
            volume: *volume,
            reason: reason.to_owned(),
        };
        if bytes.len() < HDR {
            return Err(corrupt(&format!(
                "it ends after {} bytes, inside its {HDR}-byte header",
                bytes.len()
            )));
        }
        if bytes[..8] != VOLUME_MAGIC {
            return Err(corrupt(
                "it does not start with the volume magic \"ZIB-VOL\\n\" (not a zib volume)",
            ));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version == 0 {
            return Err(corrupt(
                "its header says format version 0, which does not exist",
            ));
        }
        if version > VOLUME_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "volume",
                version,
            });
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&bytes[10..26]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[26..58]);
        Ok(Self {
            key_id: KeyId::from_bytes(key_id),
            salt: VolumeSalt(salt),
        })
    }
}

/// Ciphertext length of a volume holding `plaintext_len` bytes: header, then one tag per
/// full segment plus the always-present final (short, possibly empty) segment.
pub const fn ciphertext_len(plaintext_len: u64) -> u64 {
    HEADER_LEN + plaintext_len + TAG_LEN * (plaintext_len / SEGMENT_LEN + 1)
}

/// Plaintext length of a volume of `ciphertext_len` bytes, or `None` if no volume has
/// that length (a sure sign of truncation or padding).
pub const fn plaintext_len(ciphertext_len: u64) -> Option<u64> {
    if ciphertext_len < HEADER_LEN + TAG_LEN {
        return None;
    }
    let body = ciphertext_len - HEADER_LEN;
    let full = body / SEGMENT_CIPHERTEXT_LEN;
    let last = body % SEGMENT_CIPHERTEXT_LEN;
    if last < TAG_LEN {
        return None;
    }
    Some(full * SEGMENT_LEN + (last - TAG_LEN))
}

/// Offset in the volume's ciphertext where segment `index` starts.
pub const fn segment_offset(index: u64) -> u64 {
    HEADER_LEN + index * SEGMENT_CIPHERTEXT_LEN
}

/// How many plaintext bytes fill a multipart part of at most `target_part_len`
/// ciphertext bytes with whole segments, so part boundaries fall on segment boundaries.
/// The first part also carries the header. Pushing exactly this many bytes into a
/// [`VolumeEncryptor`] yields exactly the part's ciphertext: the header (first part
/// only) plus `n / SEGMENT_LEN` whole segments, `n` being the returned count. The last
/// part of a volume is whatever [`VolumeEncryptor::finish`] adds to the rest.
///
/// # Errors
/// [`Error::InvalidArgument`] if the target cannot hold even one segment.
pub fn plaintext_per_part(target_part_len: u64, first_part: bool) -> Result<u64> {
    let room = if first_part {
        target_part_len.saturating_sub(HEADER_LEN)
    } else {
        target_part_len
    };
    let segments = room / SEGMENT_CIPHERTEXT_LEN;
    if segments == 0 {
        return Err(Error::InvalidArgument(format!(
            "a part of {target_part_len} bytes cannot hold one {SEGMENT_CIPHERTEXT_LEN}-byte segment{}",
            if first_part { " after the header" } else { "" }
        )));
    }
    Ok(segments * SEGMENT_LEN)
}

/// The volume key and the associated data shared by all segments of one volume.
struct SegmentCipher {
    key: LessSafeKey,
    aad: [u8; AAD_LEN],
}

impl SegmentCipher {
    fn new(
        secret: &[u8; DATA_KEY_LEN],
        volume: &VolumeIdentity,
        header: &[u8; HDR],
        salt: &VolumeSalt,
    ) -> Result<Self> {
        let mut identity = [0u8; 36];
        volume.encode_into(&mut identity);
        let prk = Salt::new(HKDF_SHA256, salt.as_bytes()).extract(secret);
        let info: [&[u8]; 2] = [HKDF_INFO_LABEL, &identity];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| Error::InvalidArgument("HKDF refused the output length".into()))?;
        let key = LessSafeKey::new(UnboundKey::from(okm));
        let mut aad = [0u8; AAD_LEN];
        aad[..HDR].copy_from_slice(header);
        aad[HDR..].copy_from_slice(&identity);
        Ok(Self { key, aad })
    }

    fn nonce(counter: u64, last: bool) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&counter.to_le_bytes());
        nonce[11] = u8::from(last);
        Nonce::assume_unique_for_key(nonce)
    }

    /// Seals `segment` in place and returns its tag.
    fn seal(&self, segment: &mut [u8], counter: u64, last: bool) -> Result<Tag> {
        self.key
            .seal_in_place_separate_tag(
                Self::nonce(counter, last),
                Aad::from(&self.aad[..]),
                segment,
            )
            .map_err(|_| Error::InvalidArgument("segment sealing failed".into()))
    }

    /// Seals `buf[start..]` in place and appends the tag.
    fn seal_tail(&self, buf: &mut BytesMut, start: usize, counter: u64, last: bool) -> Result<()> {
        let tag = self.seal(&mut buf[start..], counter, last)?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `buf[start..]` in place and drops the tag; `false` if authentication fails.
    fn open_tail(&self, buf: &mut BytesMut, start: usize, counter: u64, last: bool) -> bool {
        let ok = self
            .key
            .open_in_place(
                Self::nonce(counter, last),
                Aad::from(&self.aad[..]),
                &mut buf[start..],
            )
            .is_ok();
        if ok {
            buf.truncate(buf.len() - TAG);
        }
        ok
    }
}

/// Encrypts one volume, driven chunk by chunk.
///
/// [`push`](Self::push) returns whatever ciphertext is complete (the header first, then
/// whole segments); [`finish`](Self::finish) MUST be called to produce the final segment
/// — without it the volume is unreadable, by design (truncation is detectable). Memory
/// held between calls is at most one segment.
///
/// Given the same data key, identity and salt, the same plaintext always encrypts to the
/// same bytes, however it is split into chunks.
pub struct VolumeEncryptor {
    cipher: SegmentCipher,
    counter: u64,
    /// Ciphertext not yet handed out, followed by `pending` bytes of plaintext that do
    /// not yet fill a segment. Keeping both in one buffer means each plaintext byte is
    /// copied exactly once and sealed where it lies.
    out: BytesMut,
    pending: usize,
    plaintext_len: u64,
}

impl fmt::Debug for VolumeEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VolumeEncryptor")
            .field("segments_sealed", &self.counter)
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

impl VolumeEncryptor {
    /// Starts a volume under `key` for `volume`, with this upload attempt's `salt`.
    ///
    /// # Errors
    /// Only if ring refuses the key derivation, which it does not for valid inputs.
    pub fn new(key: &DataKey, volume: VolumeIdentity, salt: &VolumeSalt) -> Result<Self> {
        let header = VolumeHeader {
            key_id: key.id(),
            salt: *salt,
        }
        .to_bytes();
        let cipher = SegmentCipher::new(key.secret(), &volume, &header, salt)?;
        let mut out = BytesMut::with_capacity(HDR + SEG_CT);
        out.extend_from_slice(&header);
        Ok(Self {
            cipher,
            counter: 0,
            out,
            pending: 0,
            plaintext_len: 0,
        })
    }

    /// Plaintext bytes pushed so far.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Encrypts `plaintext` and returns the ciphertext completed by it (possibly empty;
    /// the header comes out with the first non-empty return).
    ///
    /// # Errors
    /// Only if ring refuses to seal, which it does not for segment-sized inputs.
    pub fn push(&mut self, mut plaintext: &[u8]) -> Result<Bytes> {
        self.plaintext_len += plaintext.len() as u64;
        let whole = (self.pending + plaintext.len()) / SEG;
        self.out.reserve(plaintext.len() + TAG * whole);
        loop {
            let room = SEG - self.pending;
            if plaintext.len() < room {
                self.out.extend_from_slice(plaintext);
                self.pending += plaintext.len();
                break;
            }
            let (head, rest) = plaintext.split_at(room);
            self.out.extend_from_slice(head);
            plaintext = rest;
            let start = self.out.len() - SEG;
            self.cipher
                .seal_tail(&mut self.out, start, self.counter, false)?;
            self.counter += 1;
            self.pending = 0;
        }
        let ready = self.out.len() - self.pending;
        if ready == 0 {
            return Ok(Bytes::new());
        }
        Ok(self.out.split_to(ready).freeze())
    }

    /// Like [`push`](Self::push), but takes the chunk by value and returns the ciphertext
    /// as a sequence of pieces, in order. When `chunk` is uniquely owned (for example
    /// made with `Bytes::from(Vec<u8>)` and not cloned), the whole segments inside it are
    /// sealed where they lie and handed back as slices of it, each followed by its
    /// 16-byte tag: no copy. Otherwise this copies, like `push`. Only the bytes that
    /// complete or start a partial segment are ever copied.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn push_chunk(&mut self, chunk: Bytes) -> Result<Vec<Bytes>> {
        let mut pieces = Vec::new();
        let head = ((SEG - self.pending) % SEG).min(chunk.len());
        if head > 0 {
            let out = self.push(&chunk[..head])?;
            if !out.is_empty() {
                pieces.push(out);
            }
        }
        let full = (chunk.len() - head) / SEG;
        if full == 0 {
            let out = self.push(&chunk[head..])?;
            if !out.is_empty() {
                pieces.push(out);
            }
            return Ok(pieces);
        }
        // No partial segment is pending now; `out` holds at most the unsent header.
        if !self.out.is_empty() {
            pieces.push(self.out.split().freeze());
        }
        match chunk.try_into_mut() {
            Ok(mut owned) => {
                let _ = owned.split_to(head);
                for _ in 0..full {
                    let mut segment = owned.split_to(SEG);
                    let tag = self.cipher.seal(&mut segment, self.counter, false)?;
                    self.counter += 1;
                    self.plaintext_len += SEGMENT_LEN;
                    pieces.push(segment.freeze());
                    pieces.push(Bytes::copy_from_slice(tag.as_ref()));
                }
                // Less than a segment remains: it becomes the pending partial segment.
                let out = self.push(&owned)?;
                debug_assert!(out.is_empty());
            }
            Err(shared) => pieces.push(self.push(&shared[head..])?),
        }
        Ok(pieces)
    }

    /// Seals the final segment (the pending 0..64 KiB − 1 bytes, flagged last) and
    /// returns the remaining ciphertext, including the header if nothing was returned yet.
    ///
    /// # Errors
    /// Only if ring refuses to seal, which it does not for segment-sized inputs.
    pub fn finish(mut self) -> Result<Bytes> {
        let start = self.out.len() - self.pending;
        self.out.reserve(TAG);
        self.cipher
            .seal_tail(&mut self.out, start, self.counter, true)?;
        Ok(self.out.freeze())
    }
}

enum DecryptState {
    /// Waiting for the rest of the header; the data key is kept (zeroized on drop) until
    /// the header's salt arrives.
    Header {
        secret: Zeroizing<[u8; DATA_KEY_LEN]>,
        key_id: KeyId,
    },
    Body {
        // Boxed: ring's key schedule makes this variant far larger than the others.
        cipher: Box<SegmentCipher>,
        counter: u64,
    },
    Failed,
}

/// Decrypts and verifies one volume, driven chunk by chunk.
///
/// [`push`](Self::push) returns plaintext as soon as each segment has been
/// authenticated. Segment-level authentication does not prove the volume is complete:
/// only a successful [`finish`](Self::finish) does. A consumer MUST treat everything it
/// received as invalid if `finish` (or any `push`) fails, and MUST NOT treat the volume
/// as restored before `finish` succeeds. After an error, every further call fails.
pub struct VolumeDecryptor {
    volume: VolumeIdentity,
    state: DecryptState,
    /// An incomplete header, or plaintext ready plus an incomplete segment.
    buf: BytesMut,
    /// Bytes of an incomplete segment at the end of `buf`.
    pending: usize,
    /// Ciphertext bytes received so far, to say where a failure is.
    received: u64,
}

impl fmt::Debug for VolumeDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VolumeDecryptor")
            .field("volume", &self.volume)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl VolumeDecryptor {
    /// Starts decrypting `volume` with `key`. The volume's header tells which key it
    /// needs; a different key id is reported as [`Error::KeyMismatch`].
    pub fn new(key: &DataKey, volume: VolumeIdentity) -> Self {
        let mut secret = Zeroizing::new([0u8; DATA_KEY_LEN]);
        secret.copy_from_slice(key.secret());
        Self {
            volume,
            state: DecryptState::Header {
                secret,
                key_id: key.id(),
            },
            buf: BytesMut::with_capacity(SEG_CT),
            pending: 0,
            received: 0,
        }
    }

    /// Starts decrypting `volume` part-way, at segment `first_segment` (whose ciphertext
    /// starts at [`segment_offset`]`(first_segment)` and whose plaintext starts at
    /// `first_segment * SEGMENT_LEN`), for a ranged or resumed download. `header` is
    /// the volume's first [`HEADER_LEN`] bytes. Feed it ciphertext from that offset on;
    /// [`finish`](Self::finish) still proves the volume's end is intact, but the skipped
    /// segments are, of course, not verified by this decryptor.
    ///
    /// # Errors
    /// As [`VolumeHeader::parse`]; [`Error::KeyMismatch`] when the volume is under
    /// another data key.
    pub fn starting_at(
        key: &DataKey,
        volume: VolumeIdentity,
        header: &[u8],
        first_segment: u64,
    ) -> Result<Self> {
        let parsed = VolumeHeader::parse(header, &volume)?;
        if parsed.key_id != key.id() {
            return Err(Error::KeyMismatch {
                object: format!("volume {volume}"),
                found: parsed.key_id,
                expected: key.id(),
            });
        }
        let mut header_bytes = [0u8; HDR];
        header_bytes.copy_from_slice(&header[..HDR]);
        let cipher = SegmentCipher::new(key.secret(), &volume, &header_bytes, &parsed.salt)?;
        Ok(Self {
            volume,
            state: DecryptState::Body {
                cipher: Box::new(cipher),
                counter: first_segment,
            },
            buf: BytesMut::with_capacity(SEG_CT),
            pending: 0,
            received: segment_offset(first_segment),
        })
    }

    /// The volume this decryptor was started for.
    pub fn volume(&self) -> &VolumeIdentity {
        &self.volume
    }

    fn corrupt(&mut self, reason: String) -> Error {
        self.state = DecryptState::Failed;
        Error::CorruptVolume {
            volume: self.volume,
            reason,
        }
    }

    fn segment_failure(&mut self, counter: u64, last: bool) -> Error {
        let start = segment_offset(counter);
        let reason = if last {
            format!(
                "its final segment (segment {counter}, ciphertext from byte {start}) failed authentication: the volume was altered, truncated, or is not the volume it claims to be"
            )
        } else {
            format!(
                "segment {counter} (ciphertext bytes {start}..{}) failed authentication: the volume was altered, truncated, its segments reordered, or it belongs to another backup or position",
                start + SEGMENT_CIPHERTEXT_LEN
            )
        };
        self.corrupt(reason)
    }

    /// Takes header bytes from `data`; returns the unconsumed rest once the header is
    /// complete, or `None` while it is not.
    fn take_header<'a>(&mut self, data: &'a [u8]) -> Result<Option<&'a [u8]>> {
        let take = (HDR - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() < HDR {
            return Ok(None);
        }
        let header = match VolumeHeader::parse(&self.buf, &self.volume) {
            Ok(header) => header,
            Err(err) => {
                self.state = DecryptState::Failed;
                return Err(err);
            }
        };
        let DecryptState::Header { secret, key_id } = &self.state else {
            return Err(Error::Poisoned("volume decryptor"));
        };
        if header.key_id != *key_id {
            let expected = *key_id;
            self.state = DecryptState::Failed;
            return Err(Error::KeyMismatch {
                object: format!("volume {}", self.volume),
                found: header.key_id,
                expected,
            });
        }
        let mut header_bytes = [0u8; HDR];
        header_bytes.copy_from_slice(&self.buf);
        let cipher = SegmentCipher::new(secret, &self.volume, &header_bytes, &header.salt)?;
        self.state = DecryptState::Body {
            cipher: Box::new(cipher),
            counter: 0,
        };
        self.buf.clear();
        Ok(Some(&data[take..]))
    }

    /// Feeds ciphertext; returns the plaintext of every segment it completed and that
    /// authenticated (possibly empty).
    ///
    /// # Errors
    /// [`Error::CorruptVolume`] (naming the segment) when the header is malformed or a
    /// segment fails authentication; [`Error::KeyMismatch`] when the volume is under
    /// another data key; [`Error::UnsupportedVersion`] for a newer format;
    /// [`Error::Poisoned`] after an earlier error.
    pub fn push(&mut self, data: &[u8]) -> Result<Bytes> {
        self.received += data.len() as u64;
        let mut data = data;
        match self.state {
            DecryptState::Failed => return Err(Error::Poisoned("volume decryptor")),
            DecryptState::Header { .. } => match self.take_header(data)? {
                Some(rest) => data = rest,
                None => return Ok(Bytes::new()),
            },
            DecryptState::Body { .. } => {}
        }
        let DecryptState::Body { cipher, counter } = &mut self.state else {
            return Err(Error::Poisoned("volume decryptor"));
        };
        // `buf` holds verified plaintext not yet handed out followed by `pending` bytes of
        // an incomplete segment, so each ciphertext byte is copied once and opened where
        // it lies. A segment of exactly SEG_CT bytes is never the last one (the final
        // segment is always shorter), so it is opened as soon as it is complete.
        let whole = (self.pending + data.len()) / SEG_CT;
        self.buf.reserve(data.len().saturating_sub(TAG * whole));
        loop {
            let room = SEG_CT - self.pending;
            if data.len() < room {
                self.buf.extend_from_slice(data);
                self.pending += data.len();
                break;
            }
            let (head, rest) = data.split_at(room);
            self.buf.extend_from_slice(head);
            data = rest;
            let start = self.buf.len() - SEG_CT;
            if !cipher.open_tail(&mut self.buf, start, *counter, false) {
                let failed = *counter;
                return Err(self.segment_failure(failed, false));
            }
            *counter += 1;
            self.pending = 0;
        }
        let ready = self.buf.len() - self.pending;
        if ready == 0 {
            return Ok(Bytes::new());
        }
        Ok(self.buf.split_to(ready).freeze())
    }

    /// Like [`push`](Self::push), but takes the chunk by value and returns the plaintext
    /// as a sequence of pieces, in order. When `chunk` is uniquely owned, whole segments
    /// inside it are opened where they lie and handed back as slices of it: no copy.
    /// Otherwise this copies, like `push`.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn push_chunk(&mut self, chunk: Bytes) -> Result<Vec<Bytes>> {
        let mut pieces = Vec::new();
        let head = match self.state {
            DecryptState::Header { .. } => HDR - self.buf.len(),
            _ => (SEG_CT - self.pending) % SEG_CT,
        }
        .min(chunk.len());
        if head > 0 {
            let out = self.push(&chunk[..head])?;
            if !out.is_empty() {
                pieces.push(out);
            }
        }
        let full = (chunk.len() - head) / SEG_CT;
        if full == 0 || self.pending != 0 {
            let out = self.push(&chunk[head..])?;
            if !out.is_empty() {
                pieces.push(out);
            }
            return Ok(pieces);
        }
        let mut owned = match chunk.try_into_mut() {
            Ok(owned) => owned,
            Err(shared) => {
                pieces.push(self.push(&shared[head..])?);
                return Ok(pieces);
            }
        };
        let _ = owned.split_to(head);
        for _ in 0..full {
            let DecryptState::Body { cipher, counter } = &mut self.state else {
                return Err(Error::Poisoned("volume decryptor"));
            };
            let mut segment = owned.split_to(SEG_CT);
            self.received += SEGMENT_CIPHERTEXT_LEN;
            if !cipher.open_tail(&mut segment, 0, *counter, false) {
                let failed = *counter;
                return Err(self.segment_failure(failed, false));
            }
            *counter += 1;
            pieces.push(segment.freeze());
        }
        let out = self.push(&owned)?;
        debug_assert!(out.is_empty());
        Ok(pieces)
    }

    /// Opens the final segment and returns its plaintext. Success means the whole volume
    /// was received intact.
    ///
    /// # Errors
    /// [`Error::CorruptVolume`] if the volume ends inside its header, without its final
    /// segment, or the final segment fails authentication; [`Error::Poisoned`] after an
    /// earlier error.
    pub fn finish(mut self) -> Result<Bytes> {
        let received = self.received;
        match std::mem::replace(&mut self.state, DecryptState::Failed) {
            DecryptState::Failed => Err(Error::Poisoned("volume decryptor")),
            DecryptState::Header { .. } => Err(self.corrupt(if received == 0 {
                "it is empty (no header, no segments)".to_owned()
            } else {
                format!("it ends after {received} bytes, inside its {HDR}-byte header")
            })),
            DecryptState::Body { cipher, counter } => {
                if self.pending < TAG {
                    return Err(self.corrupt(format!(
                        "it ends after {received} bytes without its final segment (truncated after {counter} whole segments)"
                    )));
                }
                let mut out = std::mem::take(&mut self.buf);
                if !cipher.open_tail(&mut out, 0, counter, true) {
                    return Err(self.segment_failure(counter, true));
                }
                Ok(out.freeze())
            }
        }
    }
}
