//! Pure decisions for zib: the price table and cost model, full vs incremental,
//! consolidation, and the multi-month restore schedule.
//!
//! No I/O, no async runtime, no clock: `now`, prices and the catalog are inputs, and
//! every decision comes back with its reason and its cost. The engine reads the catalog
//! from the bucket and the snapshots from the file system, calls this crate, and carries
//! out what it returns; this crate never touches a bucket, a pool or a file.
//!
//! What it owns:
//! - [`PriceTable`]: us-east-1 defaults for S3 Glacier Deep Archive (sources and dates in
//!   `docs/COSTS.md`), overridable field by field.
//! - [`limits`]: S3's limits (parts, objects) and the planner's own bounds on untrusted
//!   input; every size from a catalog or a scenario is checked against them, so nothing
//!   the bucket says can make the planner panic, wrap or allocate without bound.
//! - [`cost`]: the cost model — storage of a catalog, upload of a stream, early deletion,
//!   retrieval, restored copies, internet egress and a closed-form restore estimate —
//!   itemised as a [`Cost`].
//! - [`decide_backup`]: full or incremental, from which base, and why.
//! - [`plan_consolidation`] and [`plan_pruning`]: when a fresh full lowers what the user
//!   pays — storage and the expected restore, weighed with what the dataset's history
//!   says about how its data grows and dies ([`Projection`]) — and which backups become
//!   deletable, within the safety rules (minimum age, grace period, confirmation when
//!   much of a restore point's data vanished).
//! - [`plan_restore`]: what is left of a restore point's chain split into UTC-calendar-
//!   month batches capped by the budget, the free egress left and the link, each thawed in
//!   waves whose copies live a few days; with dates, tiers, staging and cost; re-planned
//!   from the restore's progress on every run.
//! - [`sim`]: a cost simulator of whole backup histories and the benchmark's random
//!   families, used by the `simulate` example to compare the planner with naive
//!   strategies and the hindsight optimum.
//!
//! ```
//! use zib_planner::*;
//!
//! let day = |d: u8| CivilDate { year: 2026, month: 3, day: d }.start();
//! let full = RemoteBackup {
//!     id: BackupId("7f3a".into()),
//!     kind: BackupKind::Full,
//!     snapshot: SnapshotId("guid-1".into()),
//!     created: day(1),
//!     stored_bytes: 3 * GB,
//!     volumes: vec![GB; 3],
//!     parts: 48,
//!     snapshot_bytes: Some(3 * GB),
//! };
//! let catalog = Catalog::new(vec![full])?;
//! let local = [
//!     LocalSnapshot { id: SnapshotId("guid-1".into()), name: "tank/photos@a".into(),
//!                     created: day(1), full_bytes: Some(3 * GB), incremental: None },
//!     LocalSnapshot { id: SnapshotId("guid-2".into()), name: "tank/photos@b".into(),
//!                     created: day(8), full_bytes: Some(4 * GB),
//!                     incremental: Some(IncrementalEstimate {
//!                         base: SnapshotId("guid-1".into()), bytes: GB }) },
//! ];
//! let (policy, prices) = (Policy::default(), PriceTable::default());
//! let decision = decide_backup(&catalog, &local, None, &policy, &prices, day(9))?;
//! assert!(matches!(decision.plan, PlannedBackup::Incremental { .. }));
//!
//! let options = RestoreOptions { staging_available_bytes: 10 * GB, ..RestoreOptions::default() };
//! let plan = plan_restore(&catalog, &BackupId("7f3a".into()), &options, &prices, day(9))?;
//! assert_eq!(plan.batches.len(), 1); // 3 GiB fit this month's budget
//! println!("{} — restore costs {}", decision.reason, plan.cost);
//! # Ok::<(), zib_planner::Error>(())
//! ```
//!
//! What it deliberately is not: it does not know object keys, file formats or how bytes
//! are encrypted; it does not retry, sleep or log progress. Money is `f64` US dollars:
//! these are estimates for decisions, not invoices.

mod backup;
mod catalog;
mod consolidate;
pub mod cost;
mod error;
mod history;
pub mod limits;
mod policy;
mod prices;
mod restore;
pub mod sim;
#[cfg(test)]
mod testing;
mod time;

pub use backup::{decide_backup, BackupDecision, PlannedBackup};
pub use catalog::{
    BackupId, BackupKind, Catalog, IncrementalEstimate, LocalSnapshot, RemoteBackup, SnapshotId,
};
pub use consolidate::{
    plan_consolidation, plan_pruning, vanished_fraction, ConsolidationDecision, ConsolidationTerms,
    DeleteStep, Deletion,
};
pub use cost::Cost;
pub use error::{Error, Result};
pub use history::{Projection, HISTORY_WINDOW_DAYS, PURGE_FRACTION};
pub use policy::{ConsolidationMode, GrowthProjection, Policy};
pub use prices::{EgressTier, PriceTable, RetrievalPrice, DAYS_PER_MONTH};
pub use restore::{
    plan_restore, RequestedRestore, RestoreBatch, RestoreOptions, RestorePlan, ThawWave, VolumeId,
    VolumeRef,
};
pub use time::{CivilDate, Month, UnixTime, DAY_SECS};

/// One gigabyte as AWS bills it: 2^30 bytes.
pub const GB: u64 = 1 << 30;

/// One tebibyte (2^40 bytes), the unit of the hand-computed examples.
pub const TIB: u64 = 1 << 40;

/// Restore tier for archived objects (Deep Archive offers no Expedited tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Cheapest; Deep Archive restores typically complete within 48 hours.
    Bulk,
    /// Faster and dearer; typically within 12 hours.
    Standard,
}
