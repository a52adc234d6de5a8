//! The user's choices that shape decisions.

use serde::{Deserialize, Serialize};

use crate::cost::UploadShape;
use crate::{limits, Error, Result, GB};

/// Whether the planner may recommend consolidations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsolidationMode {
    /// Recommend a fresh full when it pays for itself.
    Auto,
    /// Never recommend one (incrementals forever).
    Never,
}

/// What the user expects the dataset to do; unset fields are estimated from the catalog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrowthProjection {
    /// Incremental stream bytes expected per month.
    pub incremental_bytes_per_month: Option<u64>,
    /// Bytes per month by which the chain grows beyond a fresh full (data deleted or
    /// rewritten since the full: what a consolidation would drop).
    pub waste_bytes_per_month: Option<u64>,
}

/// Planner policy. Defaults: consolidation `auto`, 24-month horizon, 180-day minimum age,
/// 30-day grace, deletion of more than 10 % of a restore point's data only when
/// confirmed, 1 restore point kept, 1 GiB volumes, 64 MiB parts, one restore expected
/// every ten years, $1 per month of waiting for a restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// `auto` or `never`.
    pub consolidation: ConsolidationMode,
    /// Months over which a consolidation must pay for itself.
    pub horizon_months: u32,
    /// No backup is deleted before it is this many days old. Below the archive minimum
    /// (180 days) the early-deletion fee is counted.
    pub min_age_days: u32,
    /// How many of the newest restore points stay restorable; everything their chains
    /// need is kept.
    pub keep_restore_points: u32,
    /// Bytes per volume object.
    pub volume_size: u64,
    /// Bytes per multipart part.
    pub part_size: u64,
    /// Sustained upload rate (bytes/s), used to price in-flight parts.
    pub upload_bytes_per_sec: u64,
    /// Expected backups per month (for projecting incrementals).
    pub backups_per_month: u32,
    /// What the user expects the data to do.
    pub growth: GrowthProjection,
    /// A chain superseded by a fresh full is kept until the full has been committed for
    /// this many days *and* a later backup has committed (default 30): if the live data
    /// went bad (ransomware, a mistaken `rm -rf`, a failing sync), the old restore points
    /// outlive the mistake long enough for someone to notice. The engine enforces it;
    /// the planner prices it (the old chain is paid at least this long after every
    /// consolidation) and never lists a deletion earlier.
    pub grace_days: u32,
    /// When more than this fraction of a restore point's data is gone from the newest
    /// snapshot (default 0.10), deleting that restore point is not automatic: it needs an
    /// explicit confirmation, because losing that much data looks exactly like what a
    /// backup exists for. The planner marks such deletions
    /// ([`crate::Deletion::needs_confirmation`]); the engine enforces it.
    pub max_vanished_fraction: f64,
    /// How many restores of this dataset to expect per year (default 0.1: one in ten
    /// years). Consolidation weighs what restoring the chain would cost — retrieval,
    /// restored copies, egress beyond the free allowance, and the months of waiting — by
    /// this likelihood, so a chain full of dead data is not kept just because storing it
    /// is cheap.
    pub restores_per_year: f64,
    /// What one month of waiting for a restore is worth to the user, US dollars (default
    /// $1). Restoring under the free 100 GB a month takes a month per 100 GB, so a chain
    /// twice the size of its data makes the user wait twice as long; this price turns
    /// that wait into money the planner can weigh. It stays well below the $9 that a month
    /// of 100 GB of paid egress costs, so spreading a restore over months stays cheaper
    /// than paying to hurry it.
    pub delay_cost_per_month: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            consolidation: ConsolidationMode::Auto,
            horizon_months: 24,
            min_age_days: 180,
            keep_restore_points: 1,
            volume_size: GB,
            part_size: 64 << 20,
            upload_bytes_per_sec: 2 << 20,
            backups_per_month: 1,
            growth: GrowthProjection::default(),
            grace_days: 30,
            max_vanished_fraction: 0.10,
            restores_per_year: 0.1,
            delay_cost_per_month: 0.1,
        }
    }
}

impl Policy {
    /// How streams are cut for upload under this policy.
    pub fn upload_shape(&self) -> UploadShape {
        UploadShape {
            volume_size: self.volume_size,
            part_size: self.part_size,
            upload_bytes_per_sec: self.upload_bytes_per_sec,
        }
    }

    /// Checks every field against S3's limits and the planner's
    /// ([`crate::limits`]): parts of 5 MiB ..= 5 GiB, volumes of at least 1 byte and at
    /// most S3's largest object in at most 10,000 parts, horizons up to a century, at
    /// least one restore point kept, fractions in 0..=1, finite non-negative prices.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, problem: String| Err(Error::InvalidPolicy { field, problem });
        if !(1..=limits::MAX_KEEP_RESTORE_POINTS).contains(&self.keep_restore_points) {
            return bad(
                "keep_restore_points",
                format!(
                    "is {}; keep 1 to {}",
                    self.keep_restore_points,
                    limits::MAX_KEEP_RESTORE_POINTS
                ),
            );
        }
        if !(1..=limits::MAX_HORIZON_MONTHS).contains(&self.horizon_months) {
            return bad(
                "horizon_months",
                format!(
                    "is {}; use 1 to {} months",
                    self.horizon_months,
                    limits::MAX_HORIZON_MONTHS
                ),
            );
        }
        for (field, days) in [
            ("min_age_days", self.min_age_days),
            ("grace_days", self.grace_days),
        ] {
            if days > limits::MAX_POLICY_DAYS {
                return bad(
                    field,
                    format!("is {days}; at most {} days", limits::MAX_POLICY_DAYS),
                );
            }
        }
        if !(limits::S3_MIN_PART_BYTES..=limits::S3_MAX_PART_BYTES).contains(&self.part_size) {
            return bad(
                "part_size",
                format!(
                    "is {} bytes; S3 parts are 5 MiB ({}) to 5 GiB ({}) bytes",
                    self.part_size,
                    limits::S3_MIN_PART_BYTES,
                    limits::S3_MAX_PART_BYTES
                ),
            );
        }
        // A volume smaller than one part is a single-part upload, which S3 accepts at any
        // size; only the parts of a larger volume have a minimum.
        if !(1..=limits::S3_MAX_OBJECT_BYTES).contains(&self.volume_size) {
            return bad(
                "volume_size",
                format!(
                    "is {} bytes; a volume is at least 1 byte and at most S3's largest object ({} bytes)",
                    self.volume_size,
                    limits::S3_MAX_OBJECT_BYTES
                ),
            );
        }
        if self.volume_size.div_ceil(self.part_size) > limits::S3_MAX_PARTS {
            return bad(
                "volume_size",
                format!(
                    "is {} bytes; a volume must fit in 10,000 parts of {} bytes",
                    self.volume_size, self.part_size
                ),
            );
        }
        if !(1..=1 << 40).contains(&self.upload_bytes_per_sec) {
            return bad(
                "upload_bytes_per_sec",
                format!("is {}; use 1 byte/s to 1 TiB/s", self.upload_bytes_per_sec),
            );
        }
        if !(1..=limits::MAX_BACKUPS_PER_MONTH).contains(&self.backups_per_month) {
            return bad(
                "backups_per_month",
                format!(
                    "is {}; use 1 to {} (hourly)",
                    self.backups_per_month,
                    limits::MAX_BACKUPS_PER_MONTH
                ),
            );
        }
        for (field, bytes) in [
            (
                "growth.incremental_bytes_per_month",
                self.growth.incremental_bytes_per_month,
            ),
            (
                "growth.waste_bytes_per_month",
                self.growth.waste_bytes_per_month,
            ),
        ] {
            if bytes.is_some_and(|b| b > limits::MAX_CATALOG_BYTES) {
                return bad(
                    field,
                    format!("is above {} bytes", limits::MAX_CATALOG_BYTES),
                );
            }
        }
        let ranged = [
            ("max_vanished_fraction", self.max_vanished_fraction, 1.0),
            (
                "restores_per_year",
                self.restores_per_year,
                limits::MAX_RESTORES_PER_YEAR,
            ),
            (
                "delay_cost_per_month",
                self.delay_cost_per_month,
                limits::MAX_DELAY_COST_PER_MONTH,
            ),
        ];
        for (field, value, max) in ranged {
            if !value.is_finite() || !(0.0..=max).contains(&value) {
                return bad(field, format!("is {value}; use 0 to {max}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_the_field() {
        assert!(Policy::default().validate().is_ok());
        let p = Policy {
            keep_restore_points: 0,
            ..Policy::default()
        };
        assert!(p
            .validate()
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("keep_restore_points"));
        let p = Policy {
            volume_size: 1 << 40,
            part_size: 5 << 20,
            ..Policy::default()
        };
        assert!(p
            .validate()
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("10,000"));
    }

    #[test]
    fn s3_limits_are_enforced() {
        let err = |p: Policy| p.validate().map(|_| ()).unwrap_err().to_string();
        let cases: Vec<(Policy, &str)> = vec![
            (
                Policy {
                    part_size: 1,
                    ..Policy::default()
                },
                "part_size",
            ),
            (
                Policy {
                    part_size: (5 << 20) - 1,
                    ..Policy::default()
                },
                "part_size",
            ),
            (
                Policy {
                    part_size: (5 * GB) + 1,
                    ..Policy::default()
                },
                "part_size",
            ),
            (
                Policy {
                    volume_size: 0,
                    ..Policy::default()
                },
                "volume_size",
            ),
            (
                Policy {
                    volume_size: limits::S3_MAX_OBJECT_BYTES + 1,
                    part_size: 5 * GB,
                    ..Policy::default()
                },
                "volume_size",
            ),
            (
                Policy {
                    horizon_months: 1_000_000,
                    ..Policy::default()
                },
                "horizon_months",
            ),
            (
                Policy {
                    min_age_days: u32::MAX,
                    ..Policy::default()
                },
                "min_age_days",
            ),
            (
                Policy {
                    grace_days: 40_000,
                    ..Policy::default()
                },
                "grace_days",
            ),
            (
                Policy {
                    backups_per_month: 0,
                    ..Policy::default()
                },
                "backups_per_month",
            ),
            (
                Policy {
                    upload_bytes_per_sec: 0,
                    ..Policy::default()
                },
                "upload_bytes_per_sec",
            ),
            (
                Policy {
                    max_vanished_fraction: 1.5,
                    ..Policy::default()
                },
                "max_vanished_fraction",
            ),
            (
                Policy {
                    restores_per_year: f64::NAN,
                    ..Policy::default()
                },
                "restores_per_year",
            ),
            (
                Policy {
                    delay_cost_per_month: -1.0,
                    ..Policy::default()
                },
                "delay_cost_per_month",
            ),
        ];
        for (policy, field) in cases {
            let e = err(policy);
            assert!(e.contains(field), "{e} should name {field}");
        }
        // The largest object S3 accepts, in 10,000 parts of 5 GiB, is a valid volume.
        let largest = Policy {
            volume_size: limits::S3_MAX_OBJECT_BYTES,
            part_size: limits::S3_MAX_PART_BYTES,
            ..Policy::default()
        };
        assert!(largest.validate().is_ok());
        assert_eq!(limits::S3_MAX_OBJECT_BYTES, 53_687_091_200_000);
    }

    #[test]
    fn toml_overrides() {
        let p: Policy = toml::from_str(
            "consolidation = \"never\"\nhorizon_months = 36\n[growth]\nwaste_bytes_per_month = 5\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.consolidation, ConsolidationMode::Never);
        assert_eq!(p.horizon_months, 36);
        assert_eq!(p.growth.waste_bytes_per_month, Some(5));
        assert_eq!(p.min_age_days, 180);
        assert_eq!(p.grace_days, 30);
        assert_eq!(p.max_vanished_fraction, 0.10);
        let p: Policy = toml::from_str("grace_days = 7\nmax_vanished_fraction = 0.5\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.grace_days, p.max_vanished_fraction), (7, 0.5));
        assert!(toml::from_str::<Policy>("grace = 7").is_err());
    }
}
