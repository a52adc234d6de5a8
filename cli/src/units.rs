//! Sizes, durations, money and dates, as people type and read them.
//!
//! Sizes follow AWS billing, as the rest of zib does: 1 GB = 1 GiB = 2^30 bytes (a
//! "100GB" monthly budget is AWS's free 100 GB of egress exactly).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A byte count typed as `100GB`, `1.5 TiB`, `512MiB`, `4096` (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub(crate) u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || {
            format!(
                "{text:?} is not a size; write a number with an optional unit: 4096, 512MiB, \
                 100GB, 1.5TB (units are powers of 1024, as AWS bills: 1 GB = 2^30 bytes)"
            )
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" | "bytes" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return Err(malformed()),
        };
        if number.is_empty() || number.matches('.').count() > 1 {
            return Err(malformed());
        }
        let value: f64 = number.parse().map_err(|_| malformed())?;
        let bytes = value * (1u64 << shift) as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
            return Err(malformed());
        }
        Ok(Size(bytes.round() as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bytes(self.0))
    }
}

/// A duration typed as `26h`, `8d`, `2w`, `90m`, `3600s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaxAge(pub(crate) Duration);

impl FromStr for MaxAge {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed =
            || format!("{text:?} is not a duration; write a number and a unit: 90m, 26h, 8d, 2w");
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(malformed)?;
        let (number, unit) = trimmed.split_at(split);
        let count: u64 = number.parse().map_err(|_| malformed())?;
        let seconds = match unit.trim() {
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(malformed()),
        };
        Ok(MaxAge(Duration::from_secs(
            count.checked_mul(seconds).ok_or_else(malformed)?,
        )))
    }
}

/// Bytes for people: `0 bytes`, `812 bytes`, `1.5 GiB`.
pub(crate) fn bytes(count: u64) -> String {
    zib_engine::planner::cost::human_bytes(count)
}

/// US dollars for people: cents when it is a cent or more, else enough digits to see it.
pub(crate) fn money(dollars: f64) -> String {
    if dollars == 0.0 {
        "$0.00".to_owned()
    } else if dollars.abs() >= 0.01 {
        format!("${dollars:.2}")
    } else if dollars.abs() >= 0.0001 {
        format!("${dollars:.4}")
    } else {
        "<$0.0001".to_owned()
    }
}

/// An instant as UTC date and time, to the minute: `2026-03-01 14:05 UTC`.
pub(crate) fn date_time(time: SystemTime) -> String {
    let seconds = unix(time);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map(|moment| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                moment.year(),
                u8::from(moment.month()),
                moment.day(),
                moment.hour(),
                moment.minute()
            )
        })
        .unwrap_or_else(|_| format!("{seconds} s after 1970"))
}

/// An instant as RFC 3339 (for JSON).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix(time))
        .ok()
        .and_then(|moment| {
            moment
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn unix(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The instant of a Unix time.
pub(crate) fn from_unix(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

/// A duration for people, in its largest sensible unit: `40 s`, `12 min`, `5 h`, `3 days`.
pub(crate) fn age(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7_199 => format!("{} min", seconds / 60),
        7_200..=172_799 => format!("{} h", seconds / 3600),
        _ => format!("{} days", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_as_aws_bills() {
        assert_eq!("4096".parse::<Size>().unwrap().0, 4096);
        assert_eq!("100GB".parse::<Size>().unwrap().0, 100 << 30);
        assert_eq!("100 GiB".parse::<Size>().unwrap().0, 100 << 30);
        assert_eq!("1.5TB".parse::<Size>().unwrap().0, 3 << 39);
        assert_eq!("512mib".parse::<Size>().unwrap().0, 512 << 20);
        assert_eq!("2k".parse::<Size>().unwrap().0, 2048);
        for bad in ["", "GB", "ten GB", "1.2.3GB", "5 parsecs", "-1GB", "1e400"] {
            let error = bad.parse::<Size>().unwrap_err();
            assert!(error.contains("not a size"), "{bad}: {error}");
        }
    }

    #[test]
    fn durations_parse_in_common_units() {
        assert_eq!("26h".parse::<MaxAge>().unwrap().0.as_secs(), 26 * 3600);
        assert_eq!("8d".parse::<MaxAge>().unwrap().0.as_secs(), 8 * 86_400);
        assert_eq!("2w".parse::<MaxAge>().unwrap().0.as_secs(), 14 * 86_400);
        assert_eq!("90m".parse::<MaxAge>().unwrap().0.as_secs(), 90 * 60);
        for bad in ["", "h", "26", "3 fortnights", "99999999999999999999d"] {
            assert!(bad.parse::<MaxAge>().is_err(), "{bad}");
        }
    }

    #[test]
    fn money_keeps_small_amounts_visible() {
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(1.234), "$1.23");
        assert_eq!(money(0.0042), "$0.0042");
        assert_eq!(money(0.000_001), "<$0.0001");
    }

    #[test]
    fn dates_and_ages_read_at_a_glance() {
        assert_eq!(date_time(from_unix(1_772_373_900)), "2026-03-01 14:05 UTC");
        assert_eq!(rfc3339(from_unix(0)), "1970-01-01T00:00:00Z");
        assert_eq!(age(Duration::from_secs(40)), "40 s");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 5)), "3 days");
    }
}
