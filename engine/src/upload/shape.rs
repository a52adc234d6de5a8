//! How a send stream is cut into volumes and multipart parts.

use serde::{Deserialize, Serialize};
use zib_crypto::{HEADER_LEN, SEGMENT_CIPHERTEXT_LEN, SEGMENT_LEN};
use zib_storage_backend::MIN_PART_SIZE;

use crate::error::{Error, Result};

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
    /// upload requests per TiB, and at most (4 + 1) × 64 MiB of parts in memory.
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
}
