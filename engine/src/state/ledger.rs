//! The download ledger: every byte downloaded for a restore, a verify drill or a staged
//! volume, counted against its UTC calendar month — one ledger per state directory,
//! shared by every job (AWS's free 100 GB of egress a month is per account, not per
//! restore).
//!
//! File format (version 1): the 8-byte magic `ZIBLEDG\n`, the version as a
//! little-endian `u32`, the body length as a little-endian `u64`, the body (the months in
//! bincode 1.3), then the SHA-256 of everything before it. Every change is a
//! read-modify-write under `egress.lock` (a `flock`), replacing the whole file durably,
//! so two jobs counting at once never lose a count.
//!
//! A restore reserves a volume's whole size before it downloads it and adds what the
//! download cost beyond that (retries) afterwards: a run killed mid-download has already
//! counted the volume, so the budget is never exceeded, at worst over-counted by the
//! volume that was in flight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zib_planner::Month;

use super::envelope;
use super::lock::lock_file;
use super::{off_the_runtime, read_if_exists, write_durably};
use crate::error::{Error, Result};

pub(crate) const MAGIC: [u8; 8] = *b"ZIBLEDG\n";
pub(crate) const VERSION: u32 = 1;

/// Bytes downloaded per UTC calendar month (year, month).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Months(pub(crate) BTreeMap<(i32, u8), u64>);

/// The ledger of one state directory.
#[derive(Debug, Clone)]
pub(crate) struct Ledger {
    file: PathBuf,
    lock: PathBuf,
}

impl Ledger {
    /// The ledger in the state directory `root`.
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            file: root.join("egress.ledger"),
            lock: root.join("egress.lock"),
        }
    }

    /// Bytes counted for `month` so far.
    ///
    /// # Errors
    ///
    /// [`Error::LocalState`] when the ledger cannot be read or is corrupt.
    pub(crate) async fn downloaded_in(&self, month: Month) -> Result<u64> {
        let file = self.file.clone();
        let months =
            off_the_runtime(&self.file, "read the download ledger", move |_| read(&file)).await?;
        Ok(months
            .0
            .get(&(month.year, month.month))
            .copied()
            .unwrap_or(0))
    }

    /// Adds `bytes` to `month`, durably; returns the month's new total.
    ///
    /// # Errors
    ///
    /// [`Error::LocalState`] when the ledger cannot be written.
    pub(crate) async fn add(&self, month: Month, bytes: u64) -> Result<u64> {
        let (file, lock) = (self.file.clone(), self.lock.clone());
        off_the_runtime(&self.file, "count a download in the ledger", move |_| {
            // Held for the read-modify-write: another job's count is never lost.
            let _held = lock_file(&lock, true)?;
            let mut months = read(&file)?;
            let total = months.0.entry((month.year, month.month)).or_default();
            *total = total.saturating_add(bytes);
            let total = *total;
            write_durably(&file, &encode(&months)?, "write the download ledger")?;
            Ok(total)
        })
        .await
    }
}

fn corrupt(file: &Path, reason: &str) -> Error {
    Error::LocalState {
        path: file.to_owned(),
        action: "read the download ledger",
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{reason}; move the file aside to start counting afresh (this month's \
                 downloads are then no longer counted)"
            ),
        ),
    }
}

fn read(file: &Path) -> Result<Months> {
    let Some(bytes) = read_if_exists(file, "read the download ledger")? else {
        return Ok(Months::default());
    };
    decode(&bytes, file)
}

/// Decodes a ledger file's bytes; `file` names it in errors.
pub(crate) fn decode(bytes: &[u8], file: &Path) -> Result<Months> {
    let body = envelope::open(bytes, &MAGIC, VERSION).map_err(|error| {
        corrupt(
            file,
            &format!("not a readable zib download ledger ({error})"),
        )
    })?;
    envelope::decode_body(body).map_err(|_| corrupt(file, "its body does not decode"))
}

pub(crate) fn encode(months: &Months) -> Result<Vec<u8>> {
    let body = bincode::serialize(months)
        .map_err(|error| Error::Internal(format!("could not encode the ledger: {error}")))?;
    Ok(envelope::seal(&MAGIC, VERSION, &body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn month(year: i32, month: u8) -> Month {
        Month { year, month }
    }

    #[tokio::test]
    async fn months_are_counted_apart_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        assert_eq!(ledger.downloaded_in(month(2027, 1)).await.unwrap(), 0);
        assert_eq!(ledger.add(month(2027, 1), 10).await.unwrap(), 10);
        assert_eq!(ledger.add(month(2027, 1), 5).await.unwrap(), 15);
        assert_eq!(ledger.add(month(2027, 2), 7).await.unwrap(), 7);
        let again = Ledger::new(dir.path());
        assert_eq!(again.downloaded_in(month(2027, 1)).await.unwrap(), 15);
        assert_eq!(again.downloaded_in(month(2027, 2)).await.unwrap(), 7);
        assert_eq!(again.downloaded_in(month(2026, 12)).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_counts_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let ledger = Ledger::new(dir.path());
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    ledger.add(month(2027, 3), 1).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let ledger = Ledger::new(dir.path());
        assert_eq!(ledger.downloaded_in(month(2027, 3)).await.unwrap(), 80);
    }

    #[tokio::test]
    async fn a_corrupt_ledger_is_an_error_saying_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        ledger.add(month(2027, 1), 10).await.unwrap();
        let file = dir.path().join("egress.ledger");
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let error = ledger.downloaded_in(month(2027, 1)).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("egress.ledger") && text.contains("move the file aside"),
            "{text}"
        );
    }
}
