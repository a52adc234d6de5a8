//! Catalog builders shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use zib_planner::{
    BackupId, BackupKind, Catalog, CivilDate, IncrementalEstimate, LocalSnapshot, RemoteBackup,
    SnapshotId, UnixTime,
};

pub const GIB: u64 = 1 << 30;

pub fn at(year: i32, month: u8, day: u8) -> UnixTime {
    CivilDate { year, month, day }.start()
}

pub fn backup(id: &str, base: Option<&str>, created: UnixTime, volumes: Vec<u64>) -> RemoteBackup {
    RemoteBackup {
        id: BackupId(id.into()),
        kind: base.map_or(BackupKind::Full, |b| BackupKind::Incremental {
            base: BackupId(b.into()),
        }),
        snapshot: SnapshotId(format!("snap-{id}")),
        created,
        stored_bytes: volumes.iter().sum(),
        parts: volumes.len() as u64,
        snapshot_bytes: None,
        volumes,
    }
}

pub fn catalog(backups: Vec<RemoteBackup>) -> Catalog {
    Catalog::new(backups).unwrap_or_else(|e| panic!("{e}"))
}

pub fn local(
    id: &str,
    created: UnixTime,
    full: Option<u64>,
    inc: Option<(&str, u64)>,
) -> LocalSnapshot {
    LocalSnapshot {
        id: SnapshotId(format!("snap-{id}")),
        name: format!("tank/photos@{id}"),
        created,
        full_bytes: full,
        incremental: inc.map(|(base, bytes)| IncrementalEstimate {
            base: SnapshotId(format!("snap-{base}")),
            bytes,
        }),
    }
}

pub fn id(s: &str) -> BackupId {
    BackupId(s.into())
}

pub fn close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "expected {expected}, got {actual}"
    );
}
