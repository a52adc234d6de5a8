//! Named limits: what S3 allows, and how large an input the planner accepts.
//!
//! Catalogs come from bucket metadata and scenarios from files, so every size, count and
//! date the planner reads is untrusted. Each is checked against one of these limits before
//! any arithmetic, which is then exact: no sum of accepted values can overflow a `u64`,
//! and no accepted input makes the planner allocate or loop without bound. An input over a
//! limit is an error naming the field, never a panic, a wrap or an abort.

use crate::GB;

/// S3's smallest multipart part (5 MiB); only the last part of an upload may be smaller.
pub const S3_MIN_PART_BYTES: u64 = 5 << 20;

/// S3's largest multipart part (5 GiB).
pub const S3_MAX_PART_BYTES: u64 = 5 * GB;

/// S3's largest number of parts in one multipart upload.
pub const S3_MAX_PARTS: u64 = 10_000;

/// S3's largest object: 10,000 parts of 5 GiB = 50,000 GiB (48.8 TiB, the "50 TB" of the
/// announcement). AWS raised it from 5 TiB in December 2025; the S3 User Guide's
/// "Amazon S3 multipart upload limits" page (qfacts) gives "Maximum object size 48.8 TiB",
/// and its objects overview explains the figure as 10,000 × 5 GiB.
pub const S3_MAX_OBJECT_BYTES: u64 = S3_MAX_PARTS * S3_MAX_PART_BYTES;

/// The most bytes one catalog may hold in all (2^60, one exbibyte): far above any
/// dataset zib is meant for, and low enough that sums of accepted sizes fit a `u64`
/// with room to spare.
pub const MAX_CATALOG_BYTES: u64 = 1 << 60;

/// The most backups one catalog may hold (hourly backups for a century are 876,600).
pub const MAX_BACKUPS: usize = 1_000_000;

/// The most volumes one catalog may hold in all (a full of 1 PiB in 1 GiB volumes is
/// about a million).
pub const MAX_VOLUMES: usize = 10_000_000;

/// The latest instant accepted anywhere: 9999-12-31T23:59:59Z. With it, adding any
/// accepted duration to an accepted instant stays far inside an `i64`.
pub const MAX_UNIX_TIME: i64 = 253_402_300_799;

/// The earliest instant accepted anywhere: 1970-01-01T00:00:00Z.
pub const MIN_UNIX_TIME: i64 = 0;

/// The longest planning horizon (`Policy::horizon_months`): a century.
pub const MAX_HORIZON_MONTHS: u32 = 1_200;

/// The largest `Policy::min_age_days` and `Policy::grace_days`: a century of days.
pub const MAX_POLICY_DAYS: u32 = 36_500;

/// The most restore points a policy may keep.
pub const MAX_KEEP_RESTORE_POINTS: u32 = 100_000;

/// The most backups per month a policy may plan for (hourly).
pub const MAX_BACKUPS_PER_MONTH: u32 = 744;

/// The most restores per year a policy may expect (one a month).
pub const MAX_RESTORES_PER_YEAR: f64 = 12.0;

/// The largest price of a month of waiting for a restore, US dollars.
pub const MAX_DELAY_COST_PER_MONTH: f64 = 1_000_000.0;

/// The longest restore the planner schedules: a plan needing more UTC months than this
/// (a budget or link far too small for the chain) is refused.
pub const MAX_RESTORE_MONTHS: u32 = 1_200;

/// The most months a scenario may simulate (a century).
pub const MAX_SCENARIO_MONTHS: u32 = 1_200;

/// The most backups a scenario may produce (months × backups per month): 50 years of
/// daily backups. The simulator's work grows with the square of this number.
pub const MAX_SCENARIO_STEPS: usize = 18_300;

/// The largest amount of data, in GB, any one scenario number may carry, and the most
/// live data a scenario may reach (1 PiB).
pub const MAX_SCENARIO_GB: f64 = 1_048_576.0;

/// The largest factor a scenario may scale a price by.
pub const MAX_PRICE_FACTOR: f64 = 1_000.0;

/// The largest price accepted for any item of the price table, US dollars per unit: far
/// above any real price, and low enough that every cost stays finite.
pub const MAX_PRICE: f64 = 1_000_000.0;
