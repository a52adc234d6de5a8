//! Progress reporting as an injected dependency: the engine never prints.

/// Receives progress events from a long-running operation.
///
/// Implementations MUST return quickly (they are called on the data path) and MUST NOT
/// fail the operation; the CLI draws bars from these events, libraries may log them.
/// Every method has a do-nothing default, so an implementation picks what it shows.
pub trait Progress: Send + Sync {
    /// A phase began: "reading the catalog", "creating a snapshot", "sending",
    /// "volume 3", "committing", "receiving tank/photos@zib-…", ...
    fn phase(&self, description: &str) {
        let _ = description;
    }

    /// `bytes` more of the send stream were read from the source; `expected_total` is
    /// the source's estimate of the stream's size, when it has one. Bytes read again
    /// (a resumed run reads the stream from its start) are not reported twice.
    fn stream_bytes(&self, bytes: u64, expected_total: Option<u64>) {
        let _ = (bytes, expected_total);
    }

    /// A part of `bytes` ciphertext bytes was uploaded and confirmed by the storage (one
    /// event per part, as each is confirmed).
    fn part_uploaded(&self, bytes: u64) {
        let _ = bytes;
    }

    /// `bytes` ciphertext bytes an interrupted run had stored were checked against the
    /// stream and not sent again.
    fn part_skipped(&self, bytes: u64) {
        let _ = bytes;
    }
}

/// Discards every event (the default for library callers that don't care).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
