//! Part buffers, reused: a part's buffer comes back once its upload no longer holds it,
//! and the next part fills it.
//!
//! A part is 64 MiB by default, and a fresh allocation that large is mapped afresh by the
//! allocator: the kernel faults in and zeroes each of its 16,384 pages as the part is
//! first written. That was about a tenth of the backup pipeline's CPU
//! (docs/BENCHMARKS.md). A buffer handed back keeps its pages.
//!
//! Memory stays within the upload's bound, (parts in flight + 1) × part size: a buffer
//! is drawn only for the part about to be filled, when the part before it has been
//! handed to an upload slot, and a new one is allocated only when none is spare — so
//! there are never more buffers than parts in flight plus the one being filled.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};

/// The spare part buffers of one stream's upload, shared by its volumes.
#[derive(Debug, Clone)]
pub(crate) struct PartBuffers {
    spare: Arc<Mutex<Vec<BytesMut>>>,
    /// At most this many are kept: the most that can be alive at once (parts in flight
    /// plus the one being filled), so a path that hands back more cannot grow the pool.
    most_kept: usize,
    /// Capacity of every buffer: the largest part (`VolumeShape::largest_part_len`: the
    /// aligned part plus room for the volume's final segment), so the last part never
    /// grows — a regrown 64 MiB buffer is a copy and, for a moment, twice the memory.
    capacity: usize,
}

impl PartBuffers {
    /// Buffers of `capacity` bytes for an upload with `parts_in_flight` slots.
    pub(crate) fn new(capacity: usize, parts_in_flight: usize) -> Self {
        Self {
            spare: Arc::default(),
            most_kept: parts_in_flight + 1,
            capacity,
        }
    }

    /// An empty buffer of the full part capacity: a spare one, or a new one.
    pub(crate) fn take(&self) -> BytesMut {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(self.capacity))
    }

    /// Takes back a sent part's bytes, if nothing else holds them any more (a backend
    /// may keep a clone, for a retry or a cache: then they are simply dropped).
    pub(crate) fn give_back(&self, part: Bytes) {
        let Ok(mut buffer) = part.try_into_mut() else {
            return;
        };
        if buffer.capacity() < self.capacity {
            return;
        }
        buffer.clear();
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < self.most_kept {
            spare.push(buffer);
        }
    }

    #[cfg(test)]
    fn spare(&self) -> usize {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_nothing_else_holds_comes_back_with_its_allocation() {
        let buffers = PartBuffers::new(1 << 20, 4);
        let mut buffer = buffers.take();
        buffer.extend_from_slice(&[7; 1000]);
        let address = buffer.as_ptr();
        let part = buffer.freeze();
        let held = part.clone();
        buffers.give_back(part);
        assert_eq!(buffers.spare(), 0, "a clone still holds it: not reused");
        buffers.give_back(held);
        assert_eq!(buffers.spare(), 1);
        let again = buffers.take();
        assert_eq!(again.as_ptr(), address, "the same allocation");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        assert_eq!(buffers.spare(), 0);
    }

    #[test]
    fn a_smaller_allocation_is_not_kept() {
        let buffers = PartBuffers::new(1 << 20, 4);
        buffers.give_back(Bytes::from(vec![1; 4096]));
        assert_eq!(buffers.spare(), 0);
    }

    #[test]
    fn no_more_are_kept_than_can_be_alive_at_once() {
        let buffers = PartBuffers::new(1 << 10, 2);
        for _ in 0..5 {
            buffers.give_back(Bytes::from(vec![0; 1 << 10]));
        }
        assert_eq!(buffers.spare(), 3);
    }
}
