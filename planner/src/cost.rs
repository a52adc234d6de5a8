//! The cost model: pure functions from sizes, counts and durations to an itemised [`Cost`].
//!
//! Formulas (prices from [`PriceTable`], `GB = 2^30` bytes, `M` = `days_per_month`):
//! - storage per month = bytes/GB × archive rate + objects × (32 KB/GB × archive rate +
//!   8 KB/GB × Standard rate)
//! - upload of S bytes in volumes of V and parts of P: volumes = ⌈S/V⌉ (at least 1),
//!   PUT-class requests = Σ(parts(v) + 2) + 1 (create, parts, complete per volume, plus
//!   the manifest), where parts(v) ≈ ⌈v/P⌉ counts as the engine cuts
//!   ([`parts_per_volume`]); staging = parts in flight at the Standard rate, on average half a volume
//!   for the volume's upload time
//! - early deletion of an object aged `a` days = (bytes + 32 KB)/GB × archive rate ×
//!   max(0, 180 − a)/M
//! - retrieval = bytes/GB × tier rate (+ objects/1000 × tier request rate, under
//!   requests); restored copy = bytes/GB × Standard rate × days/M
//! - egress in a month = tiered price of max(0, downloaded − free allowance remaining)

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

use crate::{limits, Catalog, PriceTable, Tier, GB};

/// Money, itemised, in US dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Request charges (PUT-class, GET-class, restore requests).
    pub requests: f64,
    /// Storage: archived bytes, per-object overhead, restored copies.
    pub storage: f64,
    /// Per-GB retrieval (restore) charges.
    pub retrieval: f64,
    /// Internet egress beyond the free allowance.
    pub egress: f64,
    /// Minimum-duration charges for objects deleted early.
    pub early_deletion: f64,
    /// Parts of unfinished multipart uploads, billed at the S3 Standard rate.
    pub staging: f64,
}

impl Cost {
    /// The sum of all items.
    pub fn total(&self) -> f64 {
        self.requests
            + self.storage
            + self.retrieval
            + self.egress
            + self.early_deletion
            + self.staging
    }

    /// Every item multiplied by `k`.
    pub fn scaled(self, k: f64) -> Self {
        Self {
            requests: self.requests * k,
            storage: self.storage * k,
            retrieval: self.retrieval * k,
            egress: self.egress * k,
            early_deletion: self.early_deletion * k,
            staging: self.staging * k,
        }
    }
}

impl Add for Cost {
    type Output = Self;
    fn add(mut self, rhs: Self) -> Self {
        self += rhs;
        self
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, rhs: Self) {
        self.requests += rhs.requests;
        self.storage += rhs.storage;
        self.retrieval += rhs.retrieval;
        self.egress += rhs.egress;
        self.early_deletion += rhs.early_deletion;
        self.staging += rhs.staging;
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "${:.2} (requests ${:.2}, storage ${:.2}, retrieval ${:.2}, egress ${:.2}, early deletion ${:.2}, staging ${:.4})",
            self.total(),
            self.requests,
            self.storage,
            self.retrieval,
            self.egress,
            self.early_deletion,
            self.staging
        )
    }
}

/// Bytes for people: binary units, one decimal ("1.5 GiB").
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Bytes as billing gigabytes (2^30).
pub fn gb(bytes: u64) -> f64 {
    bytes as f64 / GB as f64
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// One month of Deep Archive storage for `bytes` held in `objects` archived objects,
/// including the per-object overhead (8 KB at the Standard rate, 32 KB at the archive rate).
pub fn monthly_storage(prices: &PriceTable, bytes: u64, objects: u64) -> Cost {
    let archive = gb(bytes) + objects as f64 * gb(prices.overhead_archive_bytes);
    let standard = objects as f64 * gb(prices.overhead_standard_bytes);
    Cost {
        storage: archive * prices.archive_storage_per_gb_month
            + standard * prices.standard_storage_per_gb_month,
        ..Cost::default()
    }
}

/// One month of storage of every backup in a catalog (volumes plus one manifest object
/// each, all archived).
pub fn catalog_monthly_storage(prices: &PriceTable, catalog: &Catalog) -> Cost {
    catalog
        .backups()
        .iter()
        .map(|b| monthly_storage(prices, b.stored_bytes, b.objects()))
        .sum()
}

/// Reading the catalog from the bucket: LIST pages of up to 1,000 keys (PUT-class at the
/// S3 Standard rate) over `objects` keys, and one HEAD (GET-class) per manifest.
pub fn catalog_read(prices: &PriceTable, objects: u64, manifests: u64) -> Cost {
    let pages = objects.div_ceil(1000).max(1);
    Cost {
        requests: pages as f64 / 1000.0 * prices.standard_put_per_1000
            + manifests as f64 / 1000.0 * prices.get_per_1000,
        ..Cost::default()
    }
}

/// How a stream is cut into objects and how fast it goes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadShape {
    /// Bytes per volume object (the last volume may be smaller).
    pub volume_size: u64,
    /// Bytes per multipart part (the last part of a volume may be smaller, or larger by
    /// less than one 64 KiB segment: see [`parts_per_volume`]).
    pub part_size: u64,
    /// Sustained upload rate, used only to price parts held as staging while in flight.
    pub upload_bytes_per_sec: u64,
}

/// Plaintext bytes of one encryption segment, and its ciphertext (plus a 16-byte tag);
/// a volume object starts with a 58-byte header (docs/FORMAT.md, volume objects).
const SEGMENT: u64 = 64 * 1024;
const SEGMENT_CIPHERTEXT: u64 = SEGMENT + 16;
const VOLUME_HEADER: u64 = 58;

/// Multipart parts of one volume holding `volume_bytes` of the send stream, in parts of
/// `part_size`: exactly as zib cuts it. A part holds whole segments, at least
/// `part_size` bytes of them (the first also the header); the volume's final segment,
/// which holds the last `volume_bytes mod 64 KiB` bytes (possibly none), joins the last
/// part. So a 1 GiB volume in 64 MiB parts is 16 parts, and an empty volume is one.
///
/// `part_size` must be at least 1 ([`UploadShape::validate`] asks for 5 MiB).
pub fn parts_per_volume(volume_bytes: u64, part_size: u64) -> u64 {
    let segments_per_part = |bytes: u64| bytes.div_ceil(SEGMENT_CIPHERTEXT).max(1);
    let first = segments_per_part(part_size.saturating_sub(VOLUME_HEADER)) * SEGMENT;
    let later = segments_per_part(part_size) * SEGMENT;
    // Plaintext in sealed segments: the final segment's bytes travel with the last one.
    let sealed = volume_bytes / SEGMENT * SEGMENT;
    if sealed <= first {
        1
    } else {
        1 + (sealed - first).div_ceil(later)
    }
}

/// What uploading one stream costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UploadEstimate {
    /// Volume objects.
    pub volumes: u64,
    /// Multipart parts over all volumes.
    pub parts: u64,
    /// PUT-class requests: per volume one create, its parts, one complete; plus one
    /// manifest PUT.
    pub put_requests: u64,
    /// Requests and staging.
    pub cost: Cost,
}

impl UploadShape {
    /// Checks the shape against S3's limits: parts of 5 MiB ..= 5 GiB, volumes of at most
    /// 10,000 parts and at most S3's largest object.
    ///
    /// # Errors
    /// [`crate::Error::InvalidPolicy`] naming the field.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |field, problem: String| Err(crate::Error::InvalidPolicy { field, problem });
        if !(limits::S3_MIN_PART_BYTES..=limits::S3_MAX_PART_BYTES).contains(&self.part_size) {
            return bad(
                "part_size",
                format!("is {}; S3 parts are 5 MiB to 5 GiB", self.part_size),
            );
        }
        if self.volume_size == 0
            || self.volume_size > limits::S3_MAX_OBJECT_BYTES
            || self.volume_size.div_ceil(self.part_size) > limits::S3_MAX_PARTS
        {
            return bad(
                "volume_size",
                format!(
                    "is {}; a volume is one S3 object of at most 10,000 parts of {} bytes and at most {} bytes",
                    self.volume_size,
                    self.part_size,
                    limits::S3_MAX_OBJECT_BYTES
                ),
            );
        }
        if self.upload_bytes_per_sec == 0 {
            return bad("upload_bytes_per_sec", "is 0".into());
        }
        Ok(())
    }
}

/// The one-time cost of uploading a send stream of `stream_bytes` as volumes in
/// multipart parts, plus its manifest. An empty stream still makes one volume.
///
/// # Errors
/// [`crate::Error::InvalidPolicy`] when the shape breaks S3's limits (see
/// [`UploadShape::validate`]); [`crate::Error::InvalidInput`] for a stream above
/// [`limits::MAX_CATALOG_BYTES`].
pub fn upload(
    prices: &PriceTable,
    shape: &UploadShape,
    stream_bytes: u64,
) -> crate::Result<UploadEstimate> {
    shape.validate()?;
    if stream_bytes > limits::MAX_CATALOG_BYTES {
        return Err(crate::Error::InvalidInput {
            field: "stream_bytes".into(),
            problem: format!(
                "is {stream_bytes}; at most {} bytes",
                limits::MAX_CATALOG_BYTES
            ),
        });
    }
    // With the shape valid and the stream bounded, none of the products below can
    // overflow: parts ≤ stream/5 MiB + volumes ≤ 2^60/2^22 · 2.
    let volume_size = shape.volume_size;
    let volumes = ceil_div(stream_bytes, volume_size).max(1);
    let full_volumes = stream_bytes / volume_size;
    let last = stream_bytes - full_volumes * volume_size;
    let mut parts = full_volumes * parts_per_volume(volume_size, shape.part_size);
    if last > 0 || full_volumes == 0 {
        parts += parts_per_volume(last, shape.part_size);
    }
    let put_requests = parts + 2 * volumes + 1;
    // Average bytes in flight is half a volume for as long as the volume takes to send.
    let month_secs = prices.days_per_month * 86_400.0;
    let rate = shape.upload_bytes_per_sec as f64;
    let gb_months = |v: u64| gb(v) / 2.0 * (v as f64 / rate) / month_secs;
    let staging_gb_months = full_volumes as f64 * gb_months(volume_size) + gb_months(last);
    Ok(UploadEstimate {
        volumes,
        parts,
        put_requests,
        cost: Cost {
            requests: put_requests as f64 / 1000.0 * prices.archive_put_per_1000,
            staging: staging_gb_months * prices.standard_storage_per_gb_month,
            ..Cost::default()
        },
    })
}

/// The minimum-duration charge for deleting `objects` archived objects holding `bytes`
/// when they are `age_days` old: the remaining days up to the minimum, pro-rated.
pub fn early_deletion_fee(prices: &PriceTable, bytes: u64, objects: u64, age_days: f64) -> f64 {
    let remaining = (f64::from(prices.min_storage_days) - age_days).max(0.0);
    let archive = gb(bytes) + objects as f64 * gb(prices.overhead_archive_bytes);
    archive * prices.archive_storage_per_gb_month * remaining / prices.days_per_month
}

/// Restoring `objects` archived objects holding `bytes` with `tier`: per-GB retrieval and
/// per-request fees.
pub fn retrieval(prices: &PriceTable, tier: Tier, bytes: u64, objects: u64) -> Cost {
    let p = prices.retrieval(tier);
    Cost {
        retrieval: gb(bytes) * p.per_gb,
        requests: objects as f64 / 1000.0 * p.per_1000_requests,
        ..Cost::default()
    }
}

/// The temporary restored copy of `bytes`, billed at the Standard rate for `days`.
pub fn restored_copy(prices: &PriceTable, bytes: u64, days: u32) -> Cost {
    Cost {
        storage: gb(bytes) * prices.standard_storage_per_gb_month * f64::from(days)
            / prices.days_per_month,
        ..Cost::default()
    }
}

/// GET requests to download `requests` objects or ranges.
pub fn downloads(prices: &PriceTable, requests: u64) -> Cost {
    Cost {
        requests: requests as f64 / 1000.0 * prices.get_per_1000,
        ..Cost::default()
    }
}

/// Internet egress of `bytes` in one UTC calendar month, when `free_remaining` bytes of
/// the account's free allowance are left and `already_paid` bytes were already billed
/// this month (they push later bytes into higher tiers).
pub fn egress(prices: &PriceTable, bytes: u64, free_remaining: u64, already_paid: u64) -> f64 {
    let paid = bytes.saturating_sub(free_remaining);
    let mut cost = 0.0;
    let mut start = already_paid;
    let end = already_paid.saturating_add(paid);
    for tier in &prices.egress_tiers {
        let upper = tier.up_to_bytes.unwrap_or(u64::MAX);
        if start >= end {
            break;
        }
        if start < upper {
            let chunk = end.min(upper) - start;
            cost += gb(chunk) * tier.per_gb;
            start += chunk;
        }
    }
    cost
}

/// What restoring a chain would cost, estimated in closed form (see [`restore_estimate`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreEstimate {
    /// Retrieval, requests, restored copies and egress.
    pub cost: Cost,
    /// Months the downloads take.
    pub months: f64,
}

/// The cost of restoring `bytes` held in `volumes` volumes under `options`, in closed
/// form: what [`crate::plan_restore`] would charge for a chain of that size started at
/// the beginning of a month, with fractional months. Each month downloads the budget or
/// what the link downloads after the thaw, whichever is smaller; bytes beyond the free
/// allowance pay the first egress tier; restored copies live as long as the thaw-wave
/// rules make them. Consolidation weighs chains with it, because planning every
/// hypothetical chain volume by volume would cost more than the decision is worth.
pub fn restore_estimate(
    prices: &PriceTable,
    options: &crate::RestoreOptions,
    bytes: u64,
    volumes: u64,
) -> RestoreEstimate {
    if bytes == 0 {
        return RestoreEstimate::default();
    }
    let day = 86_400.0;
    let rate = options.download_bytes_per_sec.max(1) as f64;
    let thaw_days = f64::from(prices.retrieval(options.tier).typical_hours) / 24.0;
    let link = rate * (prices.days_per_month - thaw_days).max(1.0) * day;
    let per_month = (options.monthly_budget_bytes as f64).min(link).max(1.0);
    let total = bytes as f64;
    let months = total / per_month;
    // Paid bytes: what each month's batch downloads beyond the free allowance.
    let batch = per_month.min(total);
    let paid_fraction =
        ((batch - prices.free_egress_bytes_per_month as f64) / batch).clamp(0.0, 1.0);
    let first_tier = prices.egress_tiers.first().map_or(0.0, |t| t.per_gb);
    // Copies: one wave when the batch downloads within the thaw plus a wave's days, else
    // waves of `wave_days` whose copies also cover the thaw lead (as `plan_restore`).
    let batch_days = batch / rate / day;
    let wave_days = f64::from(options.wave_days.max(1));
    let slack = f64::from(options.slack_days);
    let copy_days = if batch_days <= thaw_days + wave_days {
        batch_days.ceil().max(1.0) + slack
    } else {
        (thaw_days + wave_days).ceil() + slack
    };
    let mut cost = retrieval(prices, options.tier, bytes, volumes) + downloads(prices, volumes);
    cost.egress = gb(bytes) * paid_fraction * first_tier;
    cost.storage =
        gb(bytes) * prices.standard_storage_per_gb_month * copy_days / prices.days_per_month;
    RestoreEstimate { cost, months }
}

#[cfg(test)]
mod tests {
    //! Every expected figure below was computed by hand from the us-east-1 list prices
    //! (see docs/COSTS.md), not by calling the function under test.
    use super::*;
    use crate::TIB;

    const MIB: u64 = 1 << 20;

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "expected {expected}, got {actual}"
        );
    }

    fn p() -> PriceTable {
        PriceTable::default()
    }

    #[test]
    fn one_tib_stored_for_a_month() {
        // 1024 GB × $0.00099 = $1.01376.
        close(monthly_storage(&p(), TIB, 0).total(), 1.01376, 1e-9);
        // 1024 volumes of 1 GiB: overhead 1024 × 32 KB = 0.03125 GB × 0.00099 =
        // $0.0000309375, plus 1024 × 8 KB = 0.0078125 GB × 0.023 = $0.0001796875.
        // Total $1.013970625.
        close(
            monthly_storage(&p(), TIB, 1024).total(),
            1.013_970_625,
            1e-12,
        );
    }

    #[test]
    fn small_objects_overhead_dominates() {
        // 1,048,576 objects of 1 MiB (1 TiB): archive 1024 + 32 = 1056 GB × 0.00099 =
        // $1.04544; standard 8 GB × 0.023 = $0.184. Total $1.22944.
        close(monthly_storage(&p(), TIB, 1 << 20).total(), 1.22944, 1e-9);
    }

    #[test]
    fn one_tib_restored_in_one_month_with_bulk() {
        // Retrieval 1024 GB × $0.0025 = $2.56. Requests 1024 × $0.025/1000 = $0.0256.
        let c = retrieval(&p(), Tier::Bulk, TIB, 1024);
        close(c.retrieval, 2.56, 1e-9);
        close(c.requests, 0.0256, 1e-9);
        // Egress (1024 − 100) GB × $0.09 = $83.16.
        close(egress(&p(), TIB, 100 * GB, 0), 83.16, 1e-9);
        // Standard tier: 1024 × $0.02 = $20.48; requests 1024 × $0.10/1000 = $0.1024.
        let c = retrieval(&p(), Tier::Standard, TIB, 1024);
        close(c.retrieval, 20.48, 1e-9);
        close(c.requests, 0.1024, 1e-9);
    }

    #[test]
    fn egress_tiers_and_free_allowance() {
        close(egress(&p(), 100 * GB, 100 * GB, 0), 0.0, 0.0);
        close(egress(&p(), 100 * GB, 40 * GB, 0), 60.0 * 0.09, 1e-9);
        // 20 TB paid: 10 TB (10240 GB) × 0.09 + 10240 GB × 0.085 = 921.6 + 870.4 = 1792.
        close(egress(&p(), 20 * TIB, 0, 0), 1792.0, 1e-6);
        // Bytes already paid this month push into the next tier: 10 GB at $0.085.
        close(egress(&p(), 10 * GB, 0, 10 * TIB), 0.85, 1e-9);
        // Beyond 150 TB the open tier: 1 GB at $0.05.
        close(egress(&p(), GB, 0, 150 * TIB), 0.05, 1e-12);
    }

    #[test]
    fn upload_requests_of_one_tib() {
        let shape = UploadShape {
            volume_size: GB,
            part_size: 64 * MIB,
            upload_bytes_per_sec: 2 * MIB,
        };
        let u = upload(&p(), &shape, TIB).unwrap_or_else(|e| panic!("{e}"));
        // 1024 volumes × (16 parts + create + complete) + 1 manifest = 18,433 PUTs
        // × $0.05/1000 = $0.92165.
        assert_eq!((u.volumes, u.parts, u.put_requests), (1024, 16_384, 18_433));
        close(u.cost.requests, 0.92165, 1e-9);
        // Staging: per volume 0.5 GB for 512 s = 0.5 × 512 / 2,628,000 GB-months (a month
        // of 365/12 days); × 1024 volumes × $0.023 = $0.00229426.
        close(u.cost.staging, 0.002_294_26, 1e-8);
    }

    #[test]
    fn a_volume_that_fills_its_parts_exactly_has_no_extra_part() {
        // 16 parts of 1024 segments; the empty final segment joins the 16th.
        assert_eq!(parts_per_volume(GB, 64 * MIB), 16);
        // Up to a segment beyond them is the final segment: still 16.
        assert_eq!(parts_per_volume(GB + 65_535, 64 * MIB), 16);
        // A whole segment more is sealed on its own: a 17th part.
        assert_eq!(parts_per_volume(GB + 65_536, 64 * MIB), 17);
        assert_eq!(parts_per_volume(0, 5 * MIB), 1);
        assert_eq!(parts_per_volume(5 * MIB, 5 * MIB), 1);
        assert_eq!(parts_per_volume(5 * MIB + 65_536, 5 * MIB), 2);
    }

    #[test]
    fn upload_of_uneven_and_empty_streams() {
        let shape = UploadShape {
            volume_size: 100 * MIB,
            part_size: 30 * MIB,
            upload_bytes_per_sec: 1,
        };
        let up = |bytes| upload(&p(), &shape, bytes).unwrap_or_else(|e| panic!("{e}"));
        // 250 MiB: volumes 100, 100, 50 → parts 4 + 4 + 2 = 10; PUTs 10 + 6 + 1 = 17.
        let u = up(250 * MIB);
        assert_eq!((u.volumes, u.parts, u.put_requests), (3, 10, 17));
        // Empty stream: one volume, one part, create, complete, manifest.
        let u = up(0);
        assert_eq!((u.volumes, u.parts, u.put_requests), (1, 1, 4));
        // Exactly two volumes: no empty third one.
        let u = up(200 * MIB);
        assert_eq!((u.volumes, u.parts), (2, 8));
    }

    #[test]
    fn uploads_that_break_s3_limits_are_refused() {
        let shape = |volume_size, part_size| UploadShape {
            volume_size,
            part_size,
            upload_bytes_per_sec: 1,
        };
        let err =
            |s: UploadShape, bytes| upload(&p(), &s, bytes).map(|_| ()).unwrap_err().to_string();
        // A volume of more than 10,000 parts.
        assert!(err(shape(10_001 * 5 * MIB, 5 * MIB), GB).contains("10,000"));
        // Parts below S3's 5 MiB minimum or above its 5 GiB maximum.
        assert!(err(shape(GB, 1), GB).contains("part_size"));
        assert!(err(shape(8 * GB, 6 * GB), GB).contains("part_size"));
        // A volume above S3's largest object.
        assert!(err(shape(limits::S3_MAX_OBJECT_BYTES + 1, 5 * GB), GB).contains("volume_size"));
        // A stream beyond any catalog.
        assert!(err(shape(GB, 64 * MIB), u64::MAX).contains("stream_bytes"));
    }

    #[test]
    fn early_deletion_is_pro_rated() {
        // 1 TiB deleted after 60 days: 120 remaining days = 120 × 12/365 = 3.94521 months
        // × $1.01376 = $3.99949.
        close(early_deletion_fee(&p(), TIB, 0, 60.0), 3.999_491_5, 1e-7);
        close(early_deletion_fee(&p(), TIB, 0, 180.0), 0.0, 0.0);
        close(early_deletion_fee(&p(), TIB, 0, 400.0), 0.0, 0.0);
        // One object of 0 bytes deleted at once: 32 KB × 180 days (5.918 months) × 0.00099.
        close(early_deletion_fee(&p(), 0, 1, 0.0), 1.787_912e-7, 1e-13);
    }

    #[test]
    fn restored_copy_and_gets() {
        // 100 GB for 3 days at $0.023/GB-month: 100 × 0.023 × 3 × 12/365 = $0.226849.
        close(restored_copy(&p(), 100 * GB, 3).total(), 0.226_849_3, 1e-7);
        // 1000 GETs at $0.0004 per 1000.
        close(downloads(&p(), 1000).total(), 0.0004, 1e-15);
    }

    #[test]
    fn catalog_storage_and_reading() {
        let c = Catalog::new(vec![
            crate::testing::backup("f", None, 1, TIB),
            crate::testing::backup("i", Some("f"), 2, 0),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        // 1 TiB in one volume + manifest, and an empty incremental (volume + manifest):
        // $1.01376 + 4 objects × (32 KB × 0.00099 + 8 KB × 0.023)/GB = $1.01376 + 4 ×
        // $0.00000020570 = $1.0137608228.
        close(
            catalog_monthly_storage(&p(), &c).total(),
            1.013_760_822_8,
            1e-10,
        );
        // 2,500 keys: 3 LIST pages × $0.005/1000, 100 HEADs × $0.0004/1000.
        close(catalog_read(&p(), 2500, 100).total(), 0.000_055, 1e-12);
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(TIB + TIB / 2), "1.5 TiB");
        assert_eq!(human_bytes(100 * GB), "100.0 GiB");
    }

    #[test]
    fn cost_arithmetic() {
        let a = Cost {
            requests: 1.0,
            storage: 2.0,
            ..Cost::default()
        };
        let b = Cost {
            egress: 3.0,
            ..Cost::default()
        };
        assert_eq!((a + b).total(), 6.0);
        assert_eq!([a, b].into_iter().sum::<Cost>().total(), 6.0);
        assert_eq!(a.scaled(2.0).storage, 4.0);
        assert!(a.to_string().starts_with("$3.00"));
    }
}
