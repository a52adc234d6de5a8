use crate::{BackupId, SnapshotId};

/// Everything the planner can refuse, by meaning. Messages say what failed and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A price is negative, not finite, or the egress tiers are out of order.
    #[error("invalid price table: {field} {problem}; fix it in the price overrides")]
    InvalidPrices {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A policy value is out of range.
    #[error("invalid policy: {field} {problem}")]
    InvalidPolicy {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A scenario (the simulator's input) is out of range or contradicts itself.
    #[error("invalid scenario: {field} {problem}")]
    InvalidScenario {
        /// The offending field, e.g. `phases[2].add_gb_per_month`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An input other than the catalog, policy, prices or scenario is out of range: a
    /// restore option, the restore's progress, an instant.
    #[error("invalid input: {field} {problem}")]
    InvalidInput {
        /// The offending field, e.g. `RestoreOptions::download_bytes_per_sec`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The catalog contradicts itself (duplicate ids, a base that is missing or newer,
    /// a cycle, sizes that do not add up).
    #[error(
        "inconsistent catalog: backup {backup}: {problem}; re-read the catalog from the bucket"
    )]
    InconsistentCatalog {
        /// The backup at fault.
        backup: BackupId,
        /// What is wrong with it.
        problem: String,
    },
    /// The named backup is not in the catalog.
    #[error("no committed backup {backup} in the catalog")]
    UnknownBackup {
        /// The id asked for.
        backup: BackupId,
    },
    /// A base on the backup's chain was deleted, so it cannot be restored.
    #[error("backup {backup} cannot be restored: its chain needs {missing}, which was deleted; choose a newer restore point")]
    BrokenChain {
        /// The backup asked for.
        backup: BackupId,
        /// The missing link.
        missing: BackupId,
    },
    /// The named local snapshot is not among the local snapshots given.
    #[error("no local snapshot {snapshot}")]
    UnknownSnapshot {
        /// The id asked for.
        snapshot: SnapshotId,
    },
    /// There is nothing to back up.
    #[error("no local snapshots to back up: take a snapshot first")]
    NoSnapshots,
    /// A volume is larger than the monthly download budget and overrun was not allowed.
    #[error(
        "monthly download budget of {} ({budget} bytes) is smaller than volume {volume_index} of backup {backup} ({}, {volume} bytes): raise the budget to at least {volume} bytes or allow an overrun (billed as paid egress)",
        crate::cost::human_bytes(*.budget),
        crate::cost::human_bytes(*.volume)
    )]
    BudgetBelowVolume {
        /// The monthly budget in bytes.
        budget: u64,
        /// The size of the largest volume in bytes.
        volume: u64,
        /// The backup holding that volume.
        backup: BackupId,
        /// The volume's index within its backup.
        volume_index: u32,
    },
    /// The link cannot download a volume within one month's window, so any plan would
    /// run into the next month's budget (and bill egress the plan did not count).
    #[error(
        "at {bytes_per_sec} bytes/s a month's download window of {window_days:.1} days (after the {thaw_hours}-hour thaw) holds {} but volume {volume_index} of backup {backup} is {} ({volume} bytes): restore over a faster link, or choose the Standard tier (shorter thaw)",
        crate::cost::human_bytes(*.window_bytes),
        crate::cost::human_bytes(*.volume)
    )]
    LinkTooSlow {
        /// The download rate the plan was given, bytes per second.
        bytes_per_sec: u64,
        /// Days of a month left for downloading after the thaw (the shortest month's).
        window_days: f64,
        /// Hours a restore takes with the chosen tier.
        thaw_hours: u32,
        /// Bytes the link downloads in that window.
        window_bytes: u64,
        /// The volume that does not fit, in bytes.
        volume: u64,
        /// The backup holding that volume.
        backup: BackupId,
        /// The volume's index within its backup.
        volume_index: u32,
    },
    /// The restore would take longer than the planner schedules.
    #[error("the restore would take more than {limit} months ({reason}); raise the monthly budget or restore over a faster link")]
    RestoreTooLong {
        /// [`crate::limits::MAX_RESTORE_MONTHS`].
        limit: u32,
        /// Why, in figures.
        reason: String,
    },
    /// The restore would need more local staging space than is available.
    #[error(
        "restore needs {} ({needed} bytes) of local staging but only {} ({available} bytes) are available: {reason}",
        crate::cost::human_bytes(*.needed),
        crate::cost::human_bytes(*.available)
    )]
    StagingTooSmall {
        /// Peak staging the plan needs.
        needed: u64,
        /// Staging space the caller said is free.
        available: u64,
        /// Why that much is needed and what to do.
        reason: String,
    },
}

/// Result with the planner's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
