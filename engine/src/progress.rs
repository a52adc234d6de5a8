//! Progress reporting as an injected dependency: the engine never prints.

/// Receives progress events from a long-running operation.
///
/// Implementations MUST return quickly (they are called on the data path) and MUST NOT
/// fail the operation; the CLI draws bars from these events, libraries may log them.
pub trait Progress: Send + Sync {
    /// `bytes` more of the stream were read from the source; `expected_total` is the
    /// source's estimate of the stream size, when it has one.
    fn stream_bytes(&self, bytes: u64, expected_total: Option<u64>) {
        let _ = (bytes, expected_total);
    }

    /// A part of `bytes` ciphertext bytes finished uploading.
    fn part_uploaded(&self, bytes: u64) {
        let _ = bytes;
    }

    /// A human-readable phase change ("uploading volume 3", "committing").
    fn phase(&self, description: &str) {
        let _ = description;
    }
}

/// Discards every event (the default for library callers that don't care).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
