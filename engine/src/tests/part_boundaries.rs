//! Where the pipeline cuts a volume into multipart parts: every part but the last is
//! exactly the shape's aligned part length (header plus whole segments for the first,
//! whole segments after), whatever the source's chunk sizes and whether the chunks are
//! uniquely owned or slices of one shared buffer; the last part also holds the volume's
//! final segment, so no request carries it alone; and the planner counts the parts the
//! same way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream;
use zib_crypto::{Passphrase, HEADER_LEN, SEGMENT_CIPHERTEXT_LEN};
use zib_storage_backend::memory::{MemoryBackend, MemoryConfig};
use zib_storage_backend::{
    Forwarding, ObjectKey, PartInfo, Result as StorageResult, StorageBackend, UploadId,
};

use super::{fast_init, host, location, upload_stream};
use crate::error::Error;
use crate::ids::{BackupId, DatasetId};
use crate::progress::NoProgress;
use crate::repository::Repository;
use crate::upload::shape::PartCutting;
use crate::upload::VolumeShape;
use crate::FakeClock;

const MIB: usize = 1 << 20;

/// The in-memory backend, recording the number and size of every part uploaded per key.
#[derive(Debug)]
struct RecordingParts {
    inner: MemoryBackend,
    parts: Mutex<BTreeMap<String, BTreeMap<u32, u64>>>,
}

#[async_trait]
impl Forwarding for RecordingParts {
    fn inner(&self) -> &dyn StorageBackend {
        &self.inner
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload: &UploadId,
        number: u32,
        data: Bytes,
    ) -> StorageResult<PartInfo> {
        let size = data.len() as u64;
        let info = self.inner.upload_part(key, upload, number, data).await?;
        self.parts
            .lock()
            .unwrap()
            .entry(key.as_str().to_owned())
            .or_default()
            .insert(number, size);
        Ok(info)
    }
}

/// Uploads `len` bytes in `chunk`-byte pieces (slices of one buffer when `shared`) in
/// 12 MiB volumes of 5 MiB parts, checks every volume's part sizes, and returns each
/// volume's part count.
async fn check_parts(len: usize, chunk: usize, shared: bool) -> Vec<usize> {
    check_parts_of(len, chunk, shared, 12 * MIB as u64).await
}

async fn check_parts_of(len: usize, chunk: usize, shared: bool, volume_len: u64) -> Vec<usize> {
    let clock = Arc::new(FakeClock::new(
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let backend = Arc::new(RecordingParts {
        inner: MemoryBackend::new(MemoryConfig::default(), clock.clone()),
        parts: Mutex::default(),
    });
    let state = tempfile::tempdir().unwrap();
    let (repository, _) = Repository::init(
        &location(backend.clone(), ""),
        &Passphrase::new("part boundaries".into()),
        &fast_init(),
        host(state.path(), &clock),
    )
    .await
    .unwrap();
    let repository = repository.context().clone();
    let shape = VolumeShape {
        volume_plaintext_len: volume_len,
        part_len: 5 * MIB as u64,
        parts_in_flight: 2,
    };
    let all = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let chunks: Vec<Result<Bytes, Error>> = (0..len)
        .step_by(chunk)
        .map(|start| {
            let piece = all.slice(start..(start + chunk).min(len));
            Ok(if shared {
                piece
            } else {
                Bytes::copy_from_slice(&piece)
            })
        })
        .collect();
    let random = ring::rand::SystemRandom::new();
    let uploaded = upload_stream(
        &repository,
        DatasetId::generate(&random).unwrap(),
        BackupId::generate(&random).unwrap(),
        stream::iter(chunks),
        &shape,
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(uploaded.stream_len, len as u64);

    let segments = |bytes: u64| bytes.div_ceil(SEGMENT_CIPHERTEXT_LEN) * SEGMENT_CIPHERTEXT_LEN;
    let first = HEADER_LEN + segments(shape.part_len - HEADER_LEN);
    let later = segments(shape.part_len);
    let recorded = backend.parts.lock().unwrap().clone();
    let mut counts = Vec::new();
    assert_eq!(
        recorded.len(),
        uploaded.volumes.len(),
        "one upload per volume"
    );
    // Volume keys sort in stream order (layout's documented property).
    for (volume, (key, parts)) in uploaded.volumes.iter().zip(&recorded) {
        let numbers: Vec<u32> = parts.keys().copied().collect();
        let expected_numbers: Vec<u32> = (1..=parts.len() as u32).collect();
        assert_eq!(numbers, expected_numbers, "{key}: part numbers");
        let sizes: Vec<u64> = parts.values().copied().collect();
        let (last, full) = sizes.split_last().unwrap();
        for (index, size) in full.iter().enumerate() {
            let want = if index == 0 { first } else { later };
            assert_eq!(*size, want, "{key}: part {} size", index + 1);
        }
        // The final segment (under one segment of plaintext, and its tag) may ride on a
        // full last part.
        let limit = if full.is_empty() { first } else { later } + SEGMENT_CIPHERTEXT_LEN - 1;
        assert!(*last > 0 && *last <= limit, "{key}: last part {last} bytes");
        assert_eq!(
            sizes.len() as u64,
            shape.parts(volume.plaintext_len, PartCutting::FinalSegmentInLastPart),
            "{key}: the engine's own count"
        );
        assert_eq!(
            sizes.len() as u64,
            zib_planner::cost::parts_per_volume(volume.plaintext_len, shape.part_len),
            "{key}: the planner's count"
        );
        counts.push(sizes.len());
        assert_eq!(
            sizes.iter().sum::<u64>(),
            volume.ciphertext_len,
            "{key}: parts add up to the volume"
        );
        assert_eq!(
            volume.ciphertext_len,
            zib_crypto::ciphertext_len(volume.plaintext_len)
        );
    }
    counts
}

#[tokio::test]
async fn parts_are_cut_at_aligned_lengths_from_owned_chunks() {
    // Two full volumes (3 parts each) and a short third; chunks straddle part ends.
    assert_eq!(
        check_parts(24 * MIB + 777_777, 333_333, false).await,
        [3, 3, 1]
    );
}

#[tokio::test]
async fn parts_are_cut_at_aligned_lengths_from_shared_chunks() {
    assert_eq!(
        check_parts(24 * MIB + 777_777, 1_048_573, true).await,
        [3, 3, 1]
    );
}

#[tokio::test]
async fn a_stream_shorter_than_a_part_is_one_part() {
    assert_eq!(check_parts(1_000_003, 65_536, false).await, [1]);
}

/// A 10 MiB volume fills two 5 MiB parts exactly (80 segments each): its final segment,
/// empty or short, rides on the second part instead of being a third request — as a
/// default 1 GiB volume is 16 parts of 64 MiB, not 17.
#[tokio::test]
async fn a_volume_that_fills_its_parts_exactly_sends_no_part_for_its_final_segment() {
    let volume = 10 * MIB;
    // Two exactly full volumes, then one byte.
    assert_eq!(
        check_parts_of(2 * volume + 1, 262_144, false, volume as u64).await,
        [2, 2, 1]
    );
    // One segment short of a third part's worth: the final segment is the rest.
    assert_eq!(
        check_parts_of(volume + 65_535, 100_003, true, 12 * MIB as u64).await,
        [2]
    );
    // A whole sealed segment more starts a third part.
    assert_eq!(
        check_parts_of(volume + 65_536, 100_003, false, 12 * MIB as u64).await,
        [3]
    );
}
