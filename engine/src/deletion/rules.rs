//! The engine's own safety rules for deleting a backup, checked from the catalog alone —
//! a second layer under the planner's `plan_pruning`, which must agree before anything
//! goes. A planner that lists a deletion too early (a bug, a policy it misread) is
//! caught here; nothing is deleted on the word of one layer.
//!
//! The rules, for a backup the planner lists:
//!
//! 1. it is on no chain of the newest `keep_restore_points` restore points, and no
//!    unfinished restore job on this host needs it;
//! 2. it is at least the policy's minimum age old;
//! 3. the full that superseded it (the oldest full of a kept chain committed after it;
//!    for a backup no full superseded, the newest restore point) has been committed for
//!    the grace period, and a backup committed after that full exists;
//! 4. the planner's own dates (`not_before`, `requires_backup_after`) have passed;
//! 5. no restore point it takes with it — itself, and what is restorable only through
//!    it — lost more than `max_vanished_fraction` of its data by the newest restore
//!    point, as the engine measures it from the manifests' sizes or as the planner says;
//!    a fraction that cannot be measured counts as too much. Only a confirmation lifts
//!    this rule, never the others.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zib_planner::{vanished_fraction, Deletion, Policy, DAY_SECS};

use super::WaitingFor;
use crate::catalog::CatalogBackup;
use crate::format::records::BackupKind;
use crate::ids::{BackupId, RestoreJobId};

/// What the catalog says about one dataset's backups, as the rules need it.
pub(super) struct Facts<'a> {
    /// Oldest first (as the catalog lists them).
    backups: &'a [CatalogBackup],
    index: BTreeMap<BackupId, usize>,
    /// Backups deleted by this run so far: no longer there for the rules.
    deleted: BTreeSet<BackupId>,
    keep_restore_points: usize,
    min_age_days: u32,
    grace_days: u32,
    max_vanished_fraction: f64,
    /// Unfinished restore jobs of this host, with the backups their chains need.
    restores: Vec<(RestoreJobId, Vec<BackupId>)>,
    now: i64,
}

/// What the rules say about one backup the planner listed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// It may go now.
    Delete {
        /// The largest fraction of data lost from the restore points it takes with it,
        /// when known.
        vanished_fraction: Option<f64>,
    },
    /// Not yet.
    Wait {
        /// The first rule that holds it back.
        waiting_for: WaitingFor,
        /// Whether deleting it will need a confirmation once its time comes.
        needs_confirmation: bool,
        /// The vanished fraction behind that, when known.
        vanished_fraction: Option<f64>,
    },
    /// Never: a kept restore point needs it, whatever the planner says.
    Kept,
}

impl<'a> Facts<'a> {
    pub(super) fn new(
        backups: &'a [CatalogBackup],
        policy: &Policy,
        restores: Vec<(RestoreJobId, Vec<BackupId>)>,
        now: i64,
    ) -> Self {
        Self {
            backups,
            index: backups
                .iter()
                .enumerate()
                .map(|(i, backup)| (backup.manifest.backup_id, i))
                .collect(),
            deleted: BTreeSet::new(),
            keep_restore_points: policy.keep_restore_points as usize,
            min_age_days: policy.min_age_days,
            grace_days: policy.grace_days,
            max_vanished_fraction: policy.max_vanished_fraction,
            restores,
            now,
        }
    }

    /// Records that `backup` is gone (its manifest was deleted).
    pub(super) fn mark_deleted(&mut self, backup: BackupId) {
        self.deleted.insert(backup);
    }

    /// The backup with this id, unless it is gone.
    fn find(&self, id: BackupId) -> Option<usize> {
        if self.deleted.contains(&id) {
            return None;
        }
        self.index.get(&id).copied()
    }

    fn committed(&self, i: usize) -> i64 {
        self.backups[i].manifest.committed_at
    }

    /// The chain of backup `i`, full first, as indexes; `None` when a link is missing
    /// (or the links loop, which a tampered catalog could make them do).
    fn chain(&self, i: usize) -> Option<Vec<usize>> {
        self.chain_through(i, |id| self.find(id))
    }

    /// The chain of backup `i` as the catalog listed it, this run's deletions included:
    /// what was written between two snapshots is a fact that outlives the backups that
    /// carried it.
    fn listed_chain(&self, i: usize) -> Option<Vec<usize>> {
        self.chain_through(i, |id| self.index.get(&id).copied())
    }

    fn chain_through(
        &self,
        i: usize,
        find: impl Fn(BackupId) -> Option<usize>,
    ) -> Option<Vec<usize>> {
        let mut chain = vec![i];
        let mut current = i;
        while let BackupKind::Incremental { base_backup, .. } = &self.backups[current].manifest.kind
        {
            current = find(*base_backup)?;
            if chain.len() > self.backups.len() || self.committed(current) > self.committed(i) {
                return None;
            }
            chain.push(current);
        }
        chain.reverse();
        Some(chain)
    }

    fn restorable(&self, i: usize) -> bool {
        !self.deleted.contains(&self.backups[i].manifest.backup_id) && self.chain(i).is_some()
    }

    /// Whether a backup still there was committed after `time`.
    fn committed_after(&self, time: i64) -> bool {
        self.backups.iter().any(|backup| {
            !self.deleted.contains(&backup.manifest.backup_id)
                && backup.manifest.committed_at > time
        })
    }

    /// Restore points, newest first.
    fn restore_points(&self) -> Vec<usize> {
        let mut points: Vec<usize> = (0..self.backups.len())
            .filter(|&i| self.restorable(i))
            .collect();
        points.sort_by_key(|&i| {
            std::cmp::Reverse((self.committed(i), self.backups[i].manifest.backup_id))
        });
        points
    }

    /// Everything the newest `keep_restore_points` restore points need.
    fn kept(&self) -> BTreeSet<usize> {
        self.restore_points()
            .into_iter()
            .take(self.keep_restore_points)
            .filter_map(|i| self.chain(i))
            .flatten()
            .collect()
    }

    /// The bytes of data backup `i`'s snapshot holds: recorded in its manifest, or a
    /// full's own stream length.
    fn snapshot_bytes(&self, i: usize) -> Option<u64> {
        let manifest = &self.backups[i].manifest;
        manifest.snapshot_bytes.or(match manifest.kind {
            BackupKind::Full => Some(manifest.stream_len),
            BackupKind::Incremental { .. } => None,
        })
    }

    /// Bytes written between backup `point`'s snapshot and backup `newest`'s: the
    /// incremental streams on the way, across fresh fulls by the incremental each one
    /// replaced. `None` when a link of that path is unknown.
    fn written_between(&self, point: usize, newest: usize) -> Option<u64> {
        let stream = |indexes: &[usize]| {
            indexes.iter().fold(0u64, |sum, &i| {
                sum.saturating_add(self.backups[i].manifest.stream_len)
            })
        };
        let mut written = 0u64;
        let mut current = newest;
        for _ in 0..=self.backups.len() {
            let chain = self.listed_chain(current)?;
            if let Some(at) = chain.iter().position(|&i| i == point) {
                return Some(written.saturating_add(stream(&chain[at + 1..])));
            }
            written = written.saturating_add(stream(&chain[1..]));
            let full = chain[0];
            let replaced = self.backups[full].manifest.replaced_incremental?;
            written = written.saturating_add(replaced.estimated_bytes);
            let tip = *self.index.get(&replaced.base_backup)?;
            if self.committed(tip) > self.committed(full) {
                return None;
            }
            current = tip;
        }
        None
    }

    /// The fraction of restore point `point`'s data gone from the newest restore point,
    /// measured from the manifests; `None` when a size on the way is unknown.
    fn vanished(&self, point: usize) -> Option<f64> {
        let newest = *self.restore_points().first()?;
        if newest == point {
            return Some(0.0);
        }
        let point_bytes = self.snapshot_bytes(point)?;
        let newest_bytes = self.snapshot_bytes(newest)?;
        let written = self.written_between(point, newest)?;
        Some(vanished_fraction(point_bytes, written, newest_bytes))
    }

    /// The restore points deleting backup `i` takes with it: itself, and every restore
    /// point whose chain runs through it.
    fn lost_with(&self, i: usize) -> Vec<usize> {
        self.restore_points()
            .into_iter()
            .filter(|&point| self.chain(point).is_some_and(|chain| chain.contains(&i)))
            .collect()
    }

    /// The full a deleted backup gives way to: the oldest full of a kept chain committed
    /// after it, else the newest restore point.
    fn superseding(&self, i: usize, kept: &BTreeSet<usize>) -> Option<usize> {
        kept.iter()
            .copied()
            .filter(|&k| {
                matches!(self.backups[k].manifest.kind, BackupKind::Full)
                    && self.committed(k) > self.committed(i)
            })
            .min_by_key(|&k| self.committed(k))
            .or_else(|| self.restore_points().first().copied())
    }

    /// Whether `backup`, listed by the planner as `deletion`, may go now; `confirmed`
    /// lifts the vanished-data rule (and only that one).
    pub(super) fn verdict(
        &self,
        deletion: &Deletion,
        backup: BackupId,
        confirmed: bool,
    ) -> Verdict {
        let Some(i) = self.find(backup) else {
            // Not in the catalog: nothing of it is a restore point, and its leftovers
            // are the interrupted-deletion clean-up's.
            return Verdict::Delete {
                vanished_fraction: None,
            };
        };
        let kept = self.kept();
        if kept.contains(&i) {
            return Verdict::Kept;
        }
        let lost = self.lost_with(i);
        let mut unknown = false;
        let mut worst: Option<f64> = deletion.vanished_fraction;
        for &point in &lost {
            match self.vanished(point) {
                Some(fraction) => worst = Some(worst.map_or(fraction, |w| w.max(fraction))),
                None => unknown = true,
            }
        }
        let needs_confirmation = deletion.needs_confirmation
            || unknown
            || worst.is_some_and(|fraction| fraction > self.max_vanished_fraction);
        let wait = |waiting_for| Verdict::Wait {
            waiting_for,
            needs_confirmation,
            vanished_fraction: worst,
        };
        if let Some((job, _)) = self
            .restores
            .iter()
            .find(|(_, chain)| chain.contains(&backup))
        {
            return wait(WaitingFor::Restore { job: *job });
        }
        let old_enough = self
            .committed(i)
            .saturating_add(i64::from(self.min_age_days) * DAY_SECS);
        if self.now < old_enough {
            return wait(WaitingFor::MinimumAge {
                until: at(old_enough),
            });
        }
        // A backup that is no restore point (an orphan whose base is gone) takes no data
        // with it: only its age matters.
        if !lost.is_empty() {
            if let Some(full) = self.superseding(i, &kept) {
                let full_id = self.backups[full].manifest.backup_id;
                let grace_end = self
                    .committed(full)
                    .saturating_add(i64::from(self.grace_days) * DAY_SECS);
                if self.now < grace_end {
                    return wait(WaitingFor::GracePeriod {
                        full: full_id,
                        until: at(grace_end),
                    });
                }
                if !self.committed_after(self.committed(full)) {
                    return wait(WaitingFor::LaterBackup {
                        after: at(self.committed(full)),
                    });
                }
            }
        }
        // The planner's dates, which it derived from the same rules: if it is stricter,
        // it wins.
        if deletion.not_before.0 > self.now {
            return wait(WaitingFor::Schedule {
                until: at(deletion.not_before.0),
            });
        }
        if let Some(after) = deletion.requires_backup_after {
            if !self.committed_after(after.0) {
                return wait(WaitingFor::LaterBackup { after: at(after.0) });
            }
        }
        if needs_confirmation && !confirmed {
            return wait(WaitingFor::Confirmation {
                vanished_fraction: worst,
                restore_points: lost
                    .iter()
                    .map(|&point| self.backups[point].manifest.backup_id)
                    .collect(),
            });
        }
        Verdict::Delete {
            vanished_fraction: worst,
        }
    }
}

/// A Unix time as a `SystemTime`.
pub(super) fn at(unix_seconds: i64) -> SystemTime {
    match u64::try_from(unix_seconds) {
        Ok(after) => UNIX_EPOCH + Duration::from_secs(after),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix_seconds.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use zib_planner::UnixTime;
    use zib_snapshot_source::{SnapshotIdentity, SourceKind};

    use super::*;
    use crate::format::records::{ManifestRecord, ReplacedIncremental, SendFlagBits};
    use crate::ids::DatasetId;

    const DAY: i64 = DAY_SECS;

    fn id(n: u8) -> BackupId {
        BackupId::from_bytes([n; 16])
    }

    /// A backup `n` committed on `day`: a full when `base` is `None`.
    fn backup(
        n: u8,
        day: i64,
        base: Option<u8>,
        stream: u64,
        snapshot: Option<u64>,
    ) -> CatalogBackup {
        CatalogBackup {
            manifest: ManifestRecord {
                source: SourceKind::Zfs,
                kind: match base {
                    None => BackupKind::Full,
                    Some(base) => BackupKind::Incremental {
                        base_backup: id(base),
                        base_snapshot_name: format!("s{base}"),
                        base_identity: SnapshotIdentity::ZfsGuid(u64::from(base)),
                    },
                },
                snapshot_created_by_zib: true,
                send_flags: SendFlagBits(0),
                dataset_id: DatasetId::from_bytes([1; 16]),
                backup_id: id(n),
                dataset_name: "tank/photos".into(),
                snapshot_name: format!("s{n}"),
                snapshot_identity: SnapshotIdentity::ZfsGuid(u64::from(n)),
                snapshot_created_at: day * DAY,
                committed_at: day * DAY,
                stream_len: stream,
                stream_sha256: [0; 32],
                stored_len: stream,
                volume_count: 1,
                volume_plaintext_len: stream.max(1),
                volume_list_sha256: [0; 32],
                snapshot_bytes: snapshot,
                replaced_incremental: None,
            },
            volume_sizes: vec![stream],
        }
    }

    fn replacing(mut full: CatalogBackup, tip: u8, bytes: u64) -> CatalogBackup {
        full.manifest.replaced_incremental = Some(ReplacedIncremental {
            base_backup: id(tip),
            estimated_bytes: bytes,
        });
        full
    }

    /// What the planner would list, with nothing to object to: due now, no wait.
    fn listed(n: u8) -> Deletion {
        Deletion {
            backup: zib_planner::BackupId(id(n).to_string()),
            not_before: UnixTime(0),
            requires_backup_after: None,
            early_deletion_fee: 0.0,
            vanished_fraction: None,
            needs_confirmation: false,
            steps: Vec::new(),
            reason: "test".into(),
        }
    }

    /// Old chain 1 ← 2 ← 3 (100 MB of data, 10 MB written per incremental, 10 MB of it
    /// replacing old data), a fresh full 4 on day 400 replacing the incremental from 3,
    /// and a later incremental 5.
    fn consolidated() -> Vec<CatalogBackup> {
        vec![
            backup(1, 0, None, 100, Some(100)),
            backup(2, 100, Some(1), 10, Some(100)),
            backup(3, 200, Some(2), 10, Some(100)),
            replacing(backup(4, 400, None, 100, Some(100)), 3, 10),
            backup(5, 410, Some(4), 1, Some(100)),
        ]
    }

    fn facts(backups: &[CatalogBackup], day: i64) -> Facts<'_> {
        Facts::new(backups, &Policy::default(), Vec::new(), day * DAY)
    }

    fn delete(verdict: &Verdict) -> bool {
        matches!(verdict, Verdict::Delete { .. })
    }

    #[test]
    fn a_superseded_chain_goes_once_every_rule_is_met() {
        let backups = consolidated();
        // At most 31 % of a restore point's data is gone here (see below).
        let policy = Policy {
            max_vanished_fraction: 0.35,
            ..Policy::default()
        };
        let mut facts = Facts::new(&backups, &policy, Vec::new(), 440 * DAY);
        for n in [3, 2, 1] {
            let verdict = facts.verdict(&listed(n), id(n), false);
            assert!(delete(&verdict), "{n}: {verdict:?}");
            facts.mark_deleted(id(n));
        }
        // The kept chain never, whatever the planner says.
        assert_eq!(facts.verdict(&listed(4), id(4), true), Verdict::Kept);
        assert_eq!(facts.verdict(&listed(5), id(5), true), Verdict::Kept);
    }

    #[test]
    fn the_engine_holds_what_a_careless_planner_would_delete() {
        let backups = consolidated();
        // Day 420: the full is 20 days old (grace 30).
        let verdict = facts(&backups, 420).verdict(&listed(3), id(3), true);
        assert!(
            matches!(verdict, Verdict::Wait { waiting_for: WaitingFor::GracePeriod { full, .. }, .. } if full == id(4)),
            "{verdict:?}"
        );
        // No backup after the full yet.
        let without_later = &backups[..4];
        let verdict = facts(without_later, 440).verdict(&listed(3), id(3), true);
        assert!(
            matches!(
                verdict,
                Verdict::Wait {
                    waiting_for: WaitingFor::LaterBackup { .. },
                    ..
                }
            ),
            "{verdict:?}"
        );
        // Younger than the minimum age: backup 3 is 179 days old on day 379... shift the
        // consolidation earlier to see it.
        let mut young = consolidated();
        young[3].manifest.committed_at = 250 * DAY;
        young[4].manifest.committed_at = 260 * DAY;
        let verdict = facts(&young, 379).verdict(&listed(3), id(3), true);
        assert!(
            matches!(verdict, Verdict::Wait { waiting_for: WaitingFor::MinimumAge { until }, .. } if until == at(380 * DAY)),
            "{verdict:?}"
        );
        // A restore job on this host needs it.
        let restoring = Facts::new(
            &backups,
            &Policy::default(),
            vec![(RestoreJobId::from_bytes([7; 16]), vec![id(1), id(2)])],
            440 * DAY,
        );
        let verdict = restoring.verdict(&listed(1), id(1), true);
        assert!(
            matches!(
                verdict,
                Verdict::Wait {
                    waiting_for: WaitingFor::Restore { .. },
                    ..
                }
            ),
            "{verdict:?}"
        );
    }

    #[test]
    fn the_planners_own_dates_are_honoured_too() {
        let backups = consolidated();
        let facts = facts(&backups, 440);
        let later = Deletion {
            not_before: UnixTime(500 * DAY),
            ..listed(3)
        };
        assert!(matches!(
            facts.verdict(&later, id(3), true),
            Verdict::Wait {
                waiting_for: WaitingFor::Schedule { .. },
                ..
            }
        ));
        let after = Deletion {
            requires_backup_after: Some(UnixTime(420 * DAY)),
            ..listed(3)
        };
        assert!(matches!(
            facts.verdict(&after, id(3), true),
            Verdict::Wait {
                waiting_for: WaitingFor::LaterBackup { .. },
                ..
            }
        ));
        let flagged = Deletion {
            needs_confirmation: true,
            ..listed(3)
        };
        assert!(matches!(
            facts.verdict(&flagged, id(3), false),
            Verdict::Wait {
                waiting_for: WaitingFor::Confirmation { .. },
                ..
            }
        ));
        assert!(delete(&facts.verdict(&flagged, id(3), true)));
    }

    #[test]
    fn vanished_data_is_measured_across_the_fresh_full() {
        let backups = consolidated();
        let facts = facts(&backups, 440);
        // Newest (5): 100 bytes. Point 3: 100 bytes, written since: 10 (replaced) + 1.
        assert_eq!(facts.vanished(2), Some(11.0 / 100.0));
        // Point 2: also backup 3's 10 bytes; point 1: 21 + 10.
        assert_eq!(facts.vanished(1), Some(21.0 / 100.0));
        assert_eq!(facts.vanished(0), Some(31.0 / 100.0));
        assert_eq!(facts.vanished(4), Some(0.0));
        // Above 10 %: each needs a confirmation.
        let verdict = facts.verdict(&listed(3), id(3), false);
        assert!(
            matches!(&verdict, Verdict::Wait { waiting_for: WaitingFor::Confirmation { vanished_fraction: Some(v), restore_points }, .. }
                if (*v - 0.11).abs() < 1e-9 && restore_points == &[id(3)]),
            "{verdict:?}"
        );
    }

    #[test]
    fn deleting_a_base_counts_every_restore_point_it_takes_along() {
        let backups = consolidated();
        let policy = Policy {
            max_vanished_fraction: 0.25,
            ..Policy::default()
        };
        let mut facts = Facts::new(&backups, &policy, Vec::new(), 440 * DAY);
        // The full alone lost 31 %, but with its incrementals still there deleting it
        // takes 2 (21 %) and 3 (11 %) too: the worst counts.
        let verdict = facts.verdict(&listed(1), id(1), false);
        assert!(
            matches!(&verdict, Verdict::Wait { waiting_for: WaitingFor::Confirmation { restore_points, .. }, .. }
                if restore_points.len() == 3),
            "{verdict:?}"
        );
        // Backup 2 (21 % with 3's 11 %) is under 25 %: it goes, and 3 with it first.
        assert!(delete(&facts.verdict(&listed(3), id(3), false)));
        facts.mark_deleted(id(3));
        assert!(delete(&facts.verdict(&listed(2), id(2), false)));
    }

    #[test]
    fn unknown_sizes_count_as_too_much() {
        let mut backups = consolidated();
        // An incremental from a source without size estimates.
        backups[2].manifest.snapshot_bytes = None;
        let facts1 = facts(&backups, 440);
        let verdict = facts1.verdict(&listed(3), id(3), false);
        assert!(
            matches!(
                &verdict,
                Verdict::Wait {
                    waiting_for: WaitingFor::Confirmation {
                        vanished_fraction: None,
                        ..
                    },
                    needs_confirmation: true,
                    ..
                }
            ),
            "{verdict:?}"
        );
        assert!(delete(&facts1.verdict(&listed(3), id(3), true)));
        // A fresh full that does not say which incremental it replaced (a source without
        // estimates): what was written across it is unknown.
        let mut unlinked = consolidated();
        unlinked[3].manifest.replaced_incremental = None;
        let facts2 = facts(&unlinked, 440);
        assert_eq!(facts2.vanished(2), None);
        assert!(matches!(
            facts2.verdict(&listed(3), id(3), false),
            Verdict::Wait {
                waiting_for: WaitingFor::Confirmation {
                    vanished_fraction: None,
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn an_orphan_goes_at_its_minimum_age_and_a_loop_is_no_chain() {
        // 2's base is gone: an orphan, no restore point; only its age matters.
        let backups = vec![
            backup(2, 100, Some(1), 10, None),
            backup(4, 400, None, 100, Some(100)),
        ];
        let facts1 = facts(&backups, 281);
        assert!(delete(&facts1.verdict(&listed(2), id(2), false)));
        let facts2 = facts(&backups, 279);
        assert!(matches!(
            facts2.verdict(&listed(2), id(2), false),
            Verdict::Wait {
                waiting_for: WaitingFor::MinimumAge { .. },
                ..
            }
        ));
        // Two incrementals naming each other: neither is a restore point.
        let looped = vec![
            backup(6, 10, Some(7), 10, None),
            backup(7, 10, Some(6), 10, None),
            backup(4, 400, None, 100, Some(100)),
        ];
        let facts3 = facts(&looped, 440);
        assert!(facts3.chain(0).is_none() && facts3.chain(1).is_none());
        assert_eq!(facts3.restore_points(), vec![2]);
    }
}
