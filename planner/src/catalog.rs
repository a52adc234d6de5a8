//! What the planner is told about the world: the committed backups in the bucket (one
//! dataset's catalog) and the snapshots that exist locally.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{limits, Error, Result, UnixTime};

/// A backup's opaque id as it appears in object keys (the engine chooses the encoding).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackupId(pub String);

/// A snapshot's identity that survives renames: ZFS guid, BTRFS (received) UUID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SnapshotId(pub String);

impl std::fmt::Display for BackupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Full stream, or incremental on top of another committed backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupKind {
    /// A full stream: a restore chain starts here.
    Full,
    /// An incremental stream from the snapshot of `base`.
    Incremental {
        /// The backup this one applies on top of.
        base: BackupId,
    },
}

/// One committed backup (its manifest exists) as read from the bucket's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBackup {
    /// Opaque id.
    pub id: BackupId,
    /// Full or incremental (with base).
    pub kind: BackupKind,
    /// The snapshot this backup captures.
    pub snapshot: SnapshotId,
    /// When it was committed (its objects' age for minimum-duration purposes).
    pub created: UnixTime,
    /// Ciphertext bytes of all its volumes.
    pub stored_bytes: u64,
    /// Ciphertext size of each volume, in stream order.
    pub volumes: Vec<u64>,
    /// Multipart parts over all its volumes (informational).
    pub parts: u64,
    /// Bytes of data the snapshot holds (the size a full stream of it has), when the
    /// manifest records it. It lets the planner learn how fast the dataset's data grows
    /// and dies from the catalog alone, and measure how much of a restore point's data
    /// is gone from the newest snapshot; `None` when unknown.
    #[serde(default)]
    pub snapshot_bytes: Option<u64>,
}

impl RemoteBackup {
    /// Archived objects it occupies: its volumes plus its manifest.
    pub fn objects(&self) -> u64 {
        self.volumes.len() as u64 + 1
    }
}

/// The committed backups of one dataset, validated: unique ids, every incremental's base
/// older than it (or deleted: an orphan), no cycles, volume sizes summing to the stored
/// bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    backups: Vec<RemoteBackup>,
    index: HashMap<BackupId, usize>,
    restorable: Vec<bool>,
}

impl Catalog {
    /// Validates and wraps the backups (any order; kept sorted oldest first).
    ///
    /// The backups come from bucket metadata, so nothing is trusted: sizes are summed with
    /// checked arithmetic and bounded by [`limits::S3_MAX_OBJECT_BYTES`] per volume and
    /// [`limits::MAX_CATALOG_BYTES`] in all; counts by [`limits::MAX_BACKUPS`] and
    /// [`limits::MAX_VOLUMES`]; dates by [`limits::MAX_UNIX_TIME`].
    ///
    /// # Errors
    /// [`Error::InconsistentCatalog`] naming the first backup at fault and the field.
    pub fn new(mut backups: Vec<RemoteBackup>) -> Result<Self> {
        if backups.len() > limits::MAX_BACKUPS {
            let backup = backups.first().map(|b| b.id.clone()).unwrap_or_default();
            return Err(Error::InconsistentCatalog {
                backup,
                problem: format!(
                    "the catalog lists {} backups, more than the {} the planner accepts",
                    backups.len(),
                    limits::MAX_BACKUPS
                ),
            });
        }
        // Oldest first; backups of the same second (a consolidation followed at once by a
        // backup) by their depth in the chain, so a base still precedes what was sent from
        // it whatever the ids; then by id.
        let depths = chain_depths(&backups);
        backups.sort_by(|a, b| {
            (a.created, depths[&a.id], &a.id).cmp(&(b.created, depths[&b.id], &b.id))
        });
        let mut position: HashMap<&BackupId, usize> = HashMap::with_capacity(backups.len());
        for (i, b) in backups.iter().enumerate() {
            if position.insert(&b.id, i).is_some() {
                return Err(Error::InconsistentCatalog {
                    backup: b.id.clone(),
                    problem: "appears twice".into(),
                });
            }
        }
        let mut total_bytes = 0u64;
        let mut total_volumes = 0usize;
        for (i, b) in backups.iter().enumerate() {
            let fail = |problem: String| Error::InconsistentCatalog {
                backup: b.id.clone(),
                problem,
            };
            if b.created.0 < limits::MIN_UNIX_TIME || b.created.0 > limits::MAX_UNIX_TIME {
                return Err(fail(format!(
                    "created is {} seconds since 1970, outside 1970-01-01..=9999-12-31",
                    b.created.0
                )));
            }
            if b.volumes.is_empty() {
                return Err(fail("has no volumes".into()));
            }
            total_volumes = total_volumes.saturating_add(b.volumes.len());
            if total_volumes > limits::MAX_VOLUMES {
                return Err(fail(format!(
                    "the catalog's volumes number more than the {} the planner accepts",
                    limits::MAX_VOLUMES
                )));
            }
            let mut sum = 0u64;
            for (v, &bytes) in b.volumes.iter().enumerate() {
                if bytes > limits::S3_MAX_OBJECT_BYTES {
                    return Err(fail(format!(
                        "volumes[{v}] is {bytes} bytes, larger than S3's largest object ({} bytes)",
                        limits::S3_MAX_OBJECT_BYTES
                    )));
                }
                sum = sum
                    .checked_add(bytes)
                    .filter(|&s| s <= limits::MAX_CATALOG_BYTES)
                    .ok_or_else(|| {
                        fail(format!(
                            "volumes sum to more than {} bytes, the most a catalog may hold",
                            limits::MAX_CATALOG_BYTES
                        ))
                    })?;
            }
            if sum != b.stored_bytes {
                return Err(fail(format!(
                    "volumes sum to {sum} bytes but stored_bytes is {}",
                    b.stored_bytes
                )));
            }
            if let Some(live) = b.snapshot_bytes {
                if live > limits::MAX_CATALOG_BYTES {
                    return Err(fail(format!(
                        "snapshot_bytes is {live}, more than {} bytes",
                        limits::MAX_CATALOG_BYTES
                    )));
                }
            }
            total_bytes = total_bytes
                .checked_add(sum)
                .filter(|&t| t <= limits::MAX_CATALOG_BYTES)
                .ok_or_else(|| {
                    fail(format!(
                        "the catalog holds more than {} bytes in all",
                        limits::MAX_CATALOG_BYTES
                    ))
                })?;
            if let BackupKind::Incremental { base } = &b.kind {
                // Sorted by time (ties by id), so a base earlier in the order is older;
                // this also rules out cycles and self-references. A base that is absent
                // altogether is allowed: pruning deletes a superseded full before its
                // younger, equally superseded incrementals reach their minimum age, and
                // those are orphans (listed, never restorable) until they are deleted too.
                if position.get(base).is_some_and(|&j| j >= i) {
                    return Err(fail(format!("its base {base} is not older than it")));
                }
            }
        }
        let index: HashMap<BackupId, usize> = backups
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.clone(), i))
            .collect();
        // Bases come before their dependents, so one pass settles restorability.
        let mut restorable = Vec::with_capacity(backups.len());
        for b in &backups {
            let ok = match &b.kind {
                BackupKind::Full => true,
                BackupKind::Incremental { base } => index.get(base).is_some_and(|&i| restorable[i]),
            };
            restorable.push(ok);
        }
        Ok(Self {
            backups,
            index,
            restorable,
        })
    }

    /// All backups, oldest first.
    pub fn backups(&self) -> &[RemoteBackup] {
        &self.backups
    }

    /// True when nothing is committed yet.
    pub fn is_empty(&self) -> bool {
        self.backups.is_empty()
    }

    /// The backup with this id.
    pub fn get(&self, id: &BackupId) -> Option<&RemoteBackup> {
        self.index.get(id).map(|&i| &self.backups[i])
    }

    /// The newest committed backup.
    pub fn newest(&self) -> Option<&RemoteBackup> {
        self.backups.last()
    }

    /// The restore chain of `id`: its full first, then each incremental in order, ending
    /// with `id` itself.
    ///
    /// # Errors
    /// [`Error::UnknownBackup`] if `id` is not in the catalog; [`Error::BrokenChain`] if
    /// a base on the way was deleted (an orphan awaiting its own deletion).
    pub fn chain(&self, id: &BackupId) -> Result<Vec<&RemoteBackup>> {
        let mut chain = Vec::new();
        let mut current = self
            .get(id)
            .ok_or_else(|| Error::UnknownBackup { backup: id.clone() })?;
        loop {
            chain.push(current);
            match &current.kind {
                BackupKind::Full => break,
                BackupKind::Incremental { base } => {
                    current = self.get(base).ok_or_else(|| Error::BrokenChain {
                        backup: id.clone(),
                        missing: base.clone(),
                    })?;
                }
            }
        }
        chain.reverse();
        Ok(chain)
    }

    /// Ids of every backup that the newest `keep` restore points need (their chains).
    pub fn needed_by_newest(&self, keep: usize) -> HashSet<BackupId> {
        let mut needed = HashSet::new();
        for b in self.restore_points().into_iter().rev().take(keep) {
            if let Ok(chain) = self.chain(&b.id) {
                needed.extend(chain.into_iter().map(|link| link.id.clone()));
            }
        }
        needed
    }

    /// True when `id`'s chain reaches a full (it can be restored).
    pub fn is_restorable(&self, id: &BackupId) -> bool {
        self.index.get(id).is_some_and(|&i| self.restorable[i])
    }

    /// Backups whose chain reaches a full, oldest first. Orphans (a base deleted by
    /// pruning) are not restore points.
    pub fn restore_points(&self) -> Vec<&RemoteBackup> {
        self.backups
            .iter()
            .zip(&self.restorable)
            .filter_map(|(b, &ok)| ok.then_some(b))
            .collect()
    }

    /// The newest backup that can be restored.
    pub fn newest_restorable(&self) -> Option<&RemoteBackup> {
        self.restore_points().last().copied()
    }
}

/// An estimate of an incremental stream's size from a base snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalEstimate {
    /// The base snapshot the estimate is relative to.
    pub base: SnapshotId,
    /// Estimated stream bytes.
    pub bytes: u64,
}

/// A snapshot that exists locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSnapshot {
    /// Identity (guid / UUID).
    pub id: SnapshotId,
    /// Human name for messages (e.g. `tank/photos@2026-11`).
    pub name: String,
    /// When it was taken.
    pub created: UnixTime,
    /// Estimated size of a full stream of it, when the source can say.
    pub full_bytes: Option<u64>,
    /// Estimated size of an incremental stream to it, when the source can say.
    pub incremental: Option<IncrementalEstimate>,
}

/// Each backup's number of base links down to a full (or to a base the catalog lacks).
/// A cycle has no such number: its members get the catalog's length, and `Catalog::new`
/// refuses them when it finds a base that does not precede its dependent.
fn chain_depths(backups: &[RemoteBackup]) -> HashMap<BackupId, usize> {
    let base_of: HashMap<&BackupId, Option<&BackupId>> = backups
        .iter()
        .map(|b| {
            let base = match &b.kind {
                BackupKind::Incremental { base } => Some(base),
                BackupKind::Full => None,
            };
            (&b.id, base)
        })
        .collect();
    let mut depths: HashMap<BackupId, usize> = HashMap::with_capacity(backups.len());
    for b in backups {
        // Walk down to a backup whose depth is known or that has no base in the catalog,
        // then number the walk back up. Each backup is walked once.
        let mut path: Vec<&BackupId> = Vec::new();
        let mut current = &b.id;
        let below = loop {
            if let Some(&depth) = depths.get(current) {
                break Some(depth);
            }
            if path.len() > backups.len() {
                break None;
            }
            path.push(current);
            match base_of.get(current).copied().flatten() {
                Some(base) if base_of.contains_key(base) => current = base,
                _ => break Some(usize::MAX),
            }
        };
        match below {
            // `usize::MAX` stands for "below the bottom": the walk's last backup is 0.
            Some(depth) => {
                for (up, id) in path.iter().rev().enumerate() {
                    let depth = if depth == usize::MAX {
                        up
                    } else {
                        depth + 1 + up
                    };
                    depths.entry((*id).clone()).or_insert(depth);
                }
            }
            None => {
                for id in path {
                    depths.entry(id.clone()).or_insert(backups.len());
                }
            }
        }
    }
    depths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::backup;

    #[test]
    fn backups_of_one_second_keep_their_chain_order() {
        // Ids that sort against the chain: the base must still come first.
        let c = Catalog::new(vec![
            backup("a", Some("b"), 5, 10),
            backup("b", Some("c"), 5, 10),
            backup("c", None, 5, 100),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<_> = c.backups().iter().map(|b| b.id.0.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        let chain: Vec<_> = c
            .chain(&BackupId("a".into()))
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|b| b.id.0.clone())
            .collect();
        assert_eq!(chain, ["c", "b", "a"]);
        // A cycle within one second is still refused.
        let err = Catalog::new(vec![
            backup("x", Some("y"), 5, 10),
            backup("y", Some("x"), 5, 10),
        ])
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(err.contains("not older"), "{err}");
    }

    #[test]
    fn chains_resolve_full_first() {
        let c = Catalog::new(vec![
            backup("c", Some("b"), 3, 10),
            backup("a", None, 1, 100),
            backup("b", Some("a"), 2, 10),
            backup("d", None, 4, 110),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<_> = c
            .chain(&BackupId("c".into()))
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|b| b.id.0.clone())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(c.newest().map(|b| b.id.0.as_str()), Some("d"));
        assert_eq!(c.needed_by_newest(2).len(), 4);
        assert_eq!(c.needed_by_newest(1).len(), 1);
        assert!(c.chain(&BackupId("zz".into())).is_err());
    }

    #[test]
    fn inconsistent_catalogs_are_refused() {
        let cases: Vec<(Vec<RemoteBackup>, &str)> = vec![
            (
                vec![backup("a", None, 1, 1), backup("a", None, 2, 1)],
                "twice",
            ),
            (
                vec![backup("b", Some("a"), 1, 1), backup("a", None, 2, 1)],
                "not older",
            ),
            (vec![backup("a", Some("a"), 1, 1)], "not older"),
            (
                vec![RemoteBackup {
                    stored_bytes: 5,
                    ..backup("a", None, 1, 4)
                }],
                "sum",
            ),
            (
                vec![RemoteBackup {
                    volumes: vec![],
                    stored_bytes: 0,
                    ..backup("a", None, 1, 0)
                }],
                "no volumes",
            ),
        ];
        for (backups, expected) in cases {
            let err = Catalog::new(backups).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }

    #[test]
    fn orphans_are_listed_but_never_restore_points() {
        // The full "a" was pruned; "b" and "c" wait for their minimum age.
        let c = Catalog::new(vec![
            backup("b", Some("a"), 2, 10),
            backup("c", Some("b"), 3, 10),
            backup("n", None, 4, 100),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.backups().len(), 3);
        assert!(!c.is_restorable(&BackupId("c".into())));
        let err = c
            .chain(&BackupId("c".into()))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a"), "{err}");
        assert_eq!(c.restore_points().len(), 1);
        assert_eq!(c.needed_by_newest(5).len(), 1);
    }
}
