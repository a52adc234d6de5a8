//! Builders shared by the unit tests.

use crate::{BackupId, BackupKind, RemoteBackup, SnapshotId, UnixTime};

/// A one-volume backup `id` on `base` (full if `None`) committed on `day`.
pub(crate) fn backup(id: &str, base: Option<&str>, day: i64, bytes: u64) -> RemoteBackup {
    RemoteBackup {
        id: BackupId(id.into()),
        kind: base.map_or(BackupKind::Full, |b| BackupKind::Incremental {
            base: BackupId(b.into()),
        }),
        snapshot: SnapshotId(format!("snap-{id}")),
        created: UnixTime(day * crate::DAY_SECS),
        stored_bytes: bytes,
        volumes: vec![bytes],
        parts: 1,
        snapshot_bytes: None,
    }
}
