//! How a send stream is cut into volumes and multipart parts.

use serde::{Deserialize, Serialize};
use zib_crypto::{HEADER_LEN, SEGMENT_CIPHERTEXT_LEN, SEGMENT_LEN, TAG_LEN};
use zib_storage_backend::MIN_PART_SIZE;

use crate::error::{Error, Result};

/// Where a volume's final segment travels. Only the number of requests differs: the
/// volume object's bytes are the same either way, so this is not part of the on-bucket
/// format, only of the resume journal (a resumed upload must cut its parts exactly as
/// the run that journalled them did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PartCutting {
    /// A part is sent as soon as it is full, so a volume whose plaintext fills its parts
    /// exactly ends with a part holding the final segment alone (16 bytes for a default
    /// 1 GiB volume: 17 requests where 16 carry the data). What journals of version 1
    /// describe; kept so that their uploads resume.
    FinalSegmentAlone,
    /// A full part is sent only once another sealed segment follows it; the volume's
    /// final segment (at most one segment and its tag) joins the last part instead.
    FinalSegmentInLastPart,
}

/// How a stream is cut: volume size, part size, upload parallelism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeShape {
    /// Plaintext bytes per volume (the last volume holds the rest). Sized for monthly
    /// restore batches: a volume is never split across months.
    pub volume_plaintext_len: u64,
    /// Target bytes per multipart part (rounded up to whole encryption segments).
    pub part_len: u64,
    /// Parts uploading at once.
    pub parts_in_flight: usize,
}

impl Default for VolumeShape {
    /// 1 GiB volumes in 64 MiB parts, 4 in flight: 16 parts per volume, about 16,400
    /// upload requests per TiB, and at most (4 + 1) × 64 MiB of parts in memory (plus one
    /// segment: a volume's last part also holds its final segment).
    fn default() -> Self {
        Self {
            volume_plaintext_len: 1 << 30,
            part_len: 64 << 20,
            parts_in_flight: 4,
        }
    }
}

impl VolumeShape {
    /// Checks the shape against S3's multipart limits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the offending value and the allowed range.
    pub fn validate(&self) -> Result<()> {
        if self.part_len < MIN_PART_SIZE {
            return Err(Error::InvalidInput(format!(
                "part size {} is below S3's minimum of {MIN_PART_SIZE} bytes (5 MiB)",
                self.part_len
            )));
        }
        if self.volume_plaintext_len == 0 {
            return Err(Error::InvalidInput(
                "volume size must be at least 1 byte".into(),
            ));
        }
        if self.parts_in_flight == 0 {
            return Err(Error::InvalidInput(
                "parts in flight must be at least 1".into(),
            ));
        }
        let parts = zib_crypto::ciphertext_len(self.volume_plaintext_len).div_ceil(self.part_len);
        if parts > 10_000 {
            return Err(Error::InvalidInput(format!(
                "a {}-byte volume in {}-byte parts needs {parts} parts; S3 allows 10,000: \
                 raise the part size or lower the volume size",
                self.volume_plaintext_len, self.part_len
            )));
        }
        Ok(())
    }

    /// Ciphertext length of the first part (header plus whole segments) and of every
    /// later part but the last: at least `part_len`, ending on a segment boundary.
    pub(crate) fn aligned_part_lens(&self) -> (usize, usize) {
        let first_segments =
            (self.part_len.saturating_sub(HEADER_LEN)).div_ceil(SEGMENT_CIPHERTEXT_LEN);
        let segments = self.part_len.div_ceil(SEGMENT_CIPHERTEXT_LEN);
        (
            usize::try_from(HEADER_LEN + first_segments * SEGMENT_CIPHERTEXT_LEN)
                .unwrap_or(usize::MAX),
            usize::try_from(segments * SEGMENT_CIPHERTEXT_LEN).unwrap_or(usize::MAX),
        )
    }

    /// Plaintext bytes of the first part and of every later part but the last: the
    /// whole segments [`aligned_part_lens`](Self::aligned_part_lens) holds.
    pub(crate) fn aligned_plaintext_lens(&self) -> (u64, u64) {
        let first_segments =
            (self.part_len.saturating_sub(HEADER_LEN)).div_ceil(SEGMENT_CIPHERTEXT_LEN);
        let segments = self.part_len.div_ceil(SEGMENT_CIPHERTEXT_LEN);
        (first_segments * SEGMENT_LEN, segments * SEGMENT_LEN)
    }

    /// Multipart parts of a volume of `plaintext_len` bytes cut as `cutting` says: the
    /// count the planner's [`zib_planner::cost::parts_per_volume`] must agree with (the
    /// tests hold both to what the pipeline actually sends).
    #[cfg(test)]
    pub(crate) fn parts(&self, plaintext_len: u64, cutting: PartCutting) -> u64 {
        let (first, later) = self.aligned_plaintext_lens();
        // Plaintext in sealed (non-final) segments; the final segment holds the rest.
        let sealed = plaintext_len / SEGMENT_LEN * SEGMENT_LEN;
        let data_parts = if sealed <= first {
            1
        } else {
            1 + (sealed - first).div_ceil(later)
        };
        match cutting {
            PartCutting::FinalSegmentInLastPart => data_parts,
            PartCutting::FinalSegmentAlone => {
                // The final segment starts a part of its own when the sealed segments
                // fill the last data part exactly.
                let filled = if data_parts == 1 {
                    sealed == first
                } else {
                    (sealed - first).is_multiple_of(later)
                };
                data_parts + u64::from(filled)
            }
        }
    }

    /// The largest part a volume can be cut into: the aligned part plus the volume's
    /// final segment (less than one segment of plaintext, and its tag).
    pub(crate) fn largest_part_len(&self) -> usize {
        let (first, later) = self.aligned_part_lens();
        first.max(later) + usize::try_from(SEGMENT_LEN - 1 + TAG_LEN).unwrap_or(usize::MAX)
    }
}
