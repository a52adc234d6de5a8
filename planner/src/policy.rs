//! The user's choices that shape decisions.

use serde::{Deserialize, Serialize};

use crate::cost::UploadShape;
use crate::{Error, Result, GB};

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
/// 1 restore point kept, 1 GiB volumes, 64 MiB parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    /// Checks ranges: S3 parts are 5 MiB..=5 GiB (except a volume's last), at most 10,000
    /// per object; at least one restore point is kept.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, problem: String| Err(Error::InvalidPolicy { field, problem });
        if self.keep_restore_points == 0 {
            return bad("keep_restore_points", "is 0; keep at least 1".into());
        }
        if self.horizon_months == 0 {
            return bad("horizon_months", "is 0; use at least 1".into());
        }
        if self.part_size == 0 || self.part_size > 5 * GB {
            return bad(
                "part_size",
                format!("is {}; S3 parts are at most 5 GiB", self.part_size),
            );
        }
        if self.volume_size == 0 || self.volume_size.div_ceil(self.part_size) > 10_000 {
            return bad(
                "volume_size",
                format!(
                    "is {} bytes; a volume must be non-empty and fit in 10,000 parts of {} bytes",
                    self.volume_size, self.part_size
                ),
            );
        }
        if self.upload_bytes_per_sec == 0 || self.backups_per_month == 0 {
            return bad(
                "upload_bytes_per_sec/backups_per_month",
                "must be positive".into(),
            );
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
            part_size: 1 << 20,
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
    fn toml_overrides() {
        let p: Policy = toml::from_str(
            "consolidation = \"never\"\nhorizon_months = 36\n[growth]\nwaste_bytes_per_month = 5\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.consolidation, ConsolidationMode::Never);
        assert_eq!(p.horizon_months, 36);
        assert_eq!(p.growth.waste_bytes_per_month, Some(5));
        assert_eq!(p.min_age_days, 180);
    }
}
