//! The price table. Defaults are AWS us-east-1 list prices for S3 Glacier Deep Archive as
//! published on <https://aws.amazon.com/s3/pricing/> and confirmed on 2026-11-29; each
//! field's source is in `docs/COSTS.md`. Every field can be overridden (a config file
//! section deserialises into this struct; missing fields keep their defaults).

use serde::{Deserialize, Serialize};

use crate::{limits, Error, Result, Tier, GB};

/// The mean calendar month, 365/12 days: the default [`PriceTable::days_per_month`].
pub const DAYS_PER_MONTH: f64 = 365.0 / 12.0;

use limits::MAX_PRICE;

/// Retrieval (restore) prices of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalPrice {
    /// USD per GB restored.
    pub per_gb: f64,
    /// USD per 1,000 restore requests (one per object).
    pub per_1000_requests: f64,
    /// Hours until a restore typically completes (48 for Bulk, 12 for Standard).
    pub typical_hours: u32,
}

/// One internet-egress tier: the price applies to paid bytes in a month up to `up_to_bytes`
/// (cumulative, after the free allowance); `None` means "and beyond".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EgressTier {
    /// Cumulative paid bytes per month this tier covers, or `None` for the last tier.
    pub up_to_bytes: Option<u64>,
    /// USD per GB in this tier.
    pub per_gb: f64,
}

/// Every price the cost model uses. 1 GB = 2^30 bytes, as AWS bills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceTable {
    /// Deep Archive storage, USD per GB-month.
    pub archive_storage_per_gb_month: f64,
    /// S3 Standard storage (first 50 TB), USD per GB-month: restored copies, the 8 KB
    /// per-object index, and parts of unfinished multipart uploads are billed at it.
    pub standard_storage_per_gb_month: f64,
    /// PUT, COPY, POST, LIST requests into Deep Archive, USD per 1,000:
    /// CreateMultipartUpload, UploadPart and CompleteMultipartUpload are each billed here.
    pub archive_put_per_1000: f64,
    /// PUT-class requests at S3 Standard rates, per 1,000: LIST requests (ListObjectsV2
    /// for the catalog, ListParts when resuming an upload) and the small Standard-class
    /// objects (keyring, README).
    pub standard_put_per_1000: f64,
    /// GET, HEAD and all other requests, USD per 1,000. DELETE and AbortMultipartUpload
    /// are free.
    pub get_per_1000: f64,
    /// Bulk restore prices.
    pub bulk: RetrievalPrice,
    /// Standard restore prices.
    pub standard: RetrievalPrice,
    /// Minimum storage duration in days; deleting earlier is billed the remaining days.
    pub min_storage_days: u32,
    /// Days in the month used to turn day-based charges and durations into months: the
    /// mean calendar month, 365/12 = 30.4167 days. AWS pro-rates storage by the hour
    /// within each calendar month, so over a year this mean is exact, where a 30-day month
    /// overstated every day-based charge by 1.39 %.
    pub days_per_month: f64,
    /// Per archived object: bytes of index billed at the S3 Standard rate (8 KB).
    pub overhead_standard_bytes: u64,
    /// Per archived object: bytes of metadata billed at the Deep Archive rate (32 KB).
    pub overhead_archive_bytes: u64,
    /// Free internet egress per UTC calendar month, account-wide (100 GB).
    pub free_egress_bytes_per_month: u64,
    /// Paid egress tiers after the free allowance, in increasing order.
    pub egress_tiers: Vec<EgressTier>,
}

impl Default for PriceTable {
    fn default() -> Self {
        const TB: u64 = 1024 * GB;
        Self {
            archive_storage_per_gb_month: 0.00099,
            standard_storage_per_gb_month: 0.023,
            archive_put_per_1000: 0.05,
            standard_put_per_1000: 0.005,
            get_per_1000: 0.0004,
            bulk: RetrievalPrice {
                per_gb: 0.0025,
                per_1000_requests: 0.025,
                typical_hours: 48,
            },
            standard: RetrievalPrice {
                per_gb: 0.02,
                per_1000_requests: 0.10,
                typical_hours: 12,
            },
            min_storage_days: 180,
            days_per_month: DAYS_PER_MONTH,
            overhead_standard_bytes: 8 * 1024,
            overhead_archive_bytes: 32 * 1024,
            free_egress_bytes_per_month: 100 * GB,
            egress_tiers: vec![
                EgressTier {
                    up_to_bytes: Some(10 * TB),
                    per_gb: 0.09,
                },
                EgressTier {
                    up_to_bytes: Some(50 * TB),
                    per_gb: 0.085,
                },
                EgressTier {
                    up_to_bytes: Some(150 * TB),
                    per_gb: 0.07,
                },
                EgressTier {
                    up_to_bytes: None,
                    per_gb: 0.05,
                },
            ],
        }
    }
}

impl PriceTable {
    /// Prices of a restore tier.
    pub fn retrieval(&self, tier: Tier) -> RetrievalPrice {
        match tier {
            Tier::Bulk => self.bulk,
            Tier::Standard => self.standard,
        }
    }

    /// Checks that every price is finite and non-negative and the tiers are ordered.
    ///
    /// # Errors
    /// [`Error::InvalidPrices`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let prices = [
            (
                "archive_storage_per_gb_month",
                self.archive_storage_per_gb_month,
            ),
            (
                "standard_storage_per_gb_month",
                self.standard_storage_per_gb_month,
            ),
            ("archive_put_per_1000", self.archive_put_per_1000),
            ("standard_put_per_1000", self.standard_put_per_1000),
            ("get_per_1000", self.get_per_1000),
            ("bulk.per_gb", self.bulk.per_gb),
            ("bulk.per_1000_requests", self.bulk.per_1000_requests),
            ("standard.per_gb", self.standard.per_gb),
            (
                "standard.per_1000_requests",
                self.standard.per_1000_requests,
            ),
        ];
        for (field, value) in prices {
            if !value.is_finite() || !(0.0..=MAX_PRICE).contains(&value) {
                return Err(Error::InvalidPrices {
                    field,
                    problem: format!("is {value}; prices must be finite, >= 0 and <= {MAX_PRICE}"),
                });
            }
        }
        if !(28.0..=31.0).contains(&self.days_per_month) {
            return Err(Error::InvalidPrices {
                field: "days_per_month",
                problem: format!(
                    "is {}; a month has 28 to 31 days (the default is 365/12)",
                    self.days_per_month
                ),
            });
        }
        if self.min_storage_days > limits::MAX_POLICY_DAYS {
            return Err(Error::InvalidPrices {
                field: "min_storage_days",
                problem: format!(
                    "is {}; at most {} days",
                    self.min_storage_days,
                    limits::MAX_POLICY_DAYS
                ),
            });
        }
        for (field, hours) in [
            ("bulk.typical_hours", self.bulk.typical_hours),
            ("standard.typical_hours", self.standard.typical_hours),
        ] {
            // A restore must complete well inside a month for monthly batches to mean
            // anything; Deep Archive's slowest tier takes 48 hours.
            if hours > 24 * 14 {
                return Err(Error::InvalidPrices {
                    field,
                    problem: format!("is {hours}; restores taking over 14 days are not modelled"),
                });
            }
        }
        for (field, bytes) in [
            ("overhead_standard_bytes", self.overhead_standard_bytes),
            ("overhead_archive_bytes", self.overhead_archive_bytes),
        ] {
            if bytes > GB {
                return Err(Error::InvalidPrices {
                    field,
                    problem: format!("is {bytes}; at most 1 GB per object"),
                });
            }
        }
        if self.free_egress_bytes_per_month > limits::MAX_CATALOG_BYTES {
            return Err(Error::InvalidPrices {
                field: "free_egress_bytes_per_month",
                problem: format!(
                    "is {}; at most {} bytes",
                    self.free_egress_bytes_per_month,
                    limits::MAX_CATALOG_BYTES
                ),
            });
        }
        if self.egress_tiers.is_empty() {
            return Err(Error::InvalidPrices {
                field: "egress_tiers",
                problem: "is empty; give at least one tier with up_to_bytes unset".into(),
            });
        }
        if self.egress_tiers.len() > 64 {
            return Err(Error::InvalidPrices {
                field: "egress_tiers",
                problem: format!("has {} tiers; at most 64", self.egress_tiers.len()),
            });
        }
        let mut prev = 0u64;
        for (i, tier) in self.egress_tiers.iter().enumerate() {
            if !tier.per_gb.is_finite() || !(0.0..=MAX_PRICE).contains(&tier.per_gb) {
                return Err(Error::InvalidPrices {
                    field: "egress_tiers",
                    problem: format!("tier {i} price is {}", tier.per_gb),
                });
            }
            let last = i + 1 == self.egress_tiers.len();
            match tier.up_to_bytes {
                Some(limit) if limit > prev && !last => prev = limit,
                None if last => {}
                _ => {
                    return Err(Error::InvalidPrices {
                        field: "egress_tiers",
                        problem: format!(
                            "tier {i} bound is out of order; bounds must increase and only the last tier may be open"
                        ),
                    })
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(PriceTable::default().validate().is_ok());
    }

    #[test]
    fn bad_tables_are_refused_with_the_field() {
        let mut p = PriceTable::default();
        p.bulk.per_gb = -1.0;
        let err = p.validate().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("bulk.per_gb"), "{err}");

        let mut p = PriceTable::default();
        p.egress_tiers.swap(0, 1);
        assert!(p.validate().is_err());

        let p = PriceTable {
            archive_storage_per_gb_month: f64::NAN,
            ..PriceTable::default()
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn partial_overrides_keep_other_defaults() {
        let p: PriceTable = toml::from_str("archive_storage_per_gb_month = 0.002")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.archive_storage_per_gb_month, 0.002);
        assert_eq!(p.bulk, PriceTable::default().bulk);
        assert!(toml::from_str::<PriceTable>("archive_storage = 1.0").is_err());
    }
}
