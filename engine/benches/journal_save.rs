//! How long one durable journal update takes (encode, write a temporary file, fsync,
//! rename, fsync the directory), for a journal as large as a 1 TiB backup's gets near
//! its end with the default shape: 1,023 completed volumes and 16 parts of the volume
//! in flight. A backup does two such updates per part (before sending it, and when it
//! is confirmed).
//!
//! `cargo bench -p zib-engine --bench journal_save [-- STATE_DIR]` (default: a
//! temporary directory, which is usually on tmpfs: pass a directory on the disk the
//! state directory will live on).

// A benchmark reports by printing.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use zib_engine::ids::ID_LEN;
use zib_engine::journal::{
    encode_journal, Journal, JournalFile, JournalIdentity, JournalKind, JournalPart, JournalShape,
    JournalSnapshot, JournalSource, JournalVolume, VolumeState,
};

fn main() {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let dir = match std::env::args().nth(1).filter(|arg| arg != "--bench") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => temporary.path().to_owned(),
    };
    let mut volumes: Vec<JournalVolume> = (0..1023)
        .map(|index| JournalVolume {
            index,
            upload_id: "2~fXq8mZbXy0c3yYtq6sJbCq7rQ1Hqz5xY9wA1Lz3nV5mPQkR".into(),
            salt: [7; 32],
            state: VolumeState::Completed {
                plaintext_len: 1 << 30,
                ciphertext_len: (1 << 30) + 262_202,
                plaintext_sha256: [9; 32],
                parts: 16,
            },
        })
        .collect();
    volumes.push(JournalVolume {
        index: 1023,
        upload_id: "2~fXq8mZbXy0c3yYtq6sJbCq7rQ1Hqz5xY9wA1Lz3nV5mPQkR".into(),
        salt: [7; 32],
        state: VolumeState::Uploading {
            parts: (1..=16)
                .map(|number| JournalPart {
                    number,
                    plaintext_start: u64::from(number - 1) << 26,
                    plaintext_len: 1 << 26,
                    plaintext_sha256: [3; 32],
                    last: false,
                    etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
                })
                .collect(),
        },
    });
    let journal = Journal {
        repository_id: [1; ID_LEN],
        dataset_name: "tank/family photos".into(),
        dataset_id: [2; ID_LEN],
        backup_id: [3; ID_LEN],
        source: JournalSource::Zfs,
        target: JournalSnapshot {
            name: "zib-20270115T000000Z".into(),
            identity: JournalIdentity::ZfsGuid(42),
        },
        snapshot_created_by_zib: true,
        kind: JournalKind::Full,
        send_flags: 0,
        shape: JournalShape {
            volume_plaintext_len: 1 << 30,
            part_len: 64 << 20,
            parts_in_flight: 4,
        },
        volumes,
    };
    let bytes = encode_journal(&journal).unwrap().len();
    let file = JournalFile::new(dir.join("bench.journal"), journal);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rounds = 200u32;
    runtime.block_on(async {
        file.save().await.unwrap();
        let start = Instant::now();
        for _ in 0..rounds {
            file.save().await.unwrap();
        }
        let each = start.elapsed() / rounds;
        println!(
            "journal of {bytes} bytes in {}: {:.2} ms per durable update; \
             2 updates per 64 MiB part = {:.1} s per TiB",
            dir.display(),
            each.as_secs_f64() * 1e3,
            each.as_secs_f64() * 2.0 * 16_384.0
        );
        file.remove().await.unwrap();
    });
}
