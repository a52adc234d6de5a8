//! UTC time as plain numbers: the planner never reads a clock, and AWS bills free egress
//! per UTC calendar month, so the only calendar arithmetic needed is "which month is this
//! instant in, and when does it start". A small, tested civil-date conversion (Howard
//! Hinnant's `days_from_civil`) does that without a date-time dependency.

use serde::{Deserialize, Serialize};

/// Seconds in a day.
pub const DAY_SECS: i64 = 86_400;

/// An instant as seconds since 1970-01-01T00:00:00Z (leap seconds ignored, as Unix does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The instant `days` whole days later (earlier if negative). Saturates at the ends
    /// of `i64` instead of wrapping; the planner only adds durations to instants it has
    /// checked against [`crate::limits::MAX_UNIX_TIME`], which stay far from them.
    pub fn plus_days(self, days: i64) -> Self {
        Self(self.0.saturating_add(days.saturating_mul(DAY_SECS)))
    }

    /// The instant `secs` seconds later (saturating, like [`UnixTime::plus_days`]).
    pub fn plus_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// Checks that the instant lies in 1970..=9999 ([`crate::limits::MIN_UNIX_TIME`] ..=
    /// [`crate::limits::MAX_UNIX_TIME`]), the range every planner input must be in.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`] naming `field`.
    pub fn check(self, field: &str) -> crate::Result<Self> {
        if (crate::limits::MIN_UNIX_TIME..=crate::limits::MAX_UNIX_TIME).contains(&self.0) {
            Ok(self)
        } else {
            Err(crate::Error::InvalidInput {
                field: field.to_owned(),
                problem: format!(
                    "is {} seconds since 1970, outside 1970-01-01..=9999-12-31",
                    self.0
                ),
            })
        }
    }

    /// Days from `earlier` to `self`, fractional.
    pub fn days_since(self, earlier: Self) -> f64 {
        (self.0 as f64 - earlier.0 as f64) / DAY_SECS as f64
    }

    /// The UTC calendar date of this instant.
    pub fn date(self) -> CivilDate {
        CivilDate::from_days(self.0.div_euclid(DAY_SECS))
    }

    /// The UTC calendar month of this instant.
    pub fn month(self) -> Month {
        let d = self.date();
        Month {
            year: d.year,
            month: d.month,
        }
    }
}

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.date();
        let secs = self.0.rem_euclid(DAY_SECS);
        write!(
            f,
            "{d}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

/// A proleptic Gregorian date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CivilDate {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month 1..=12.
    pub month: u8,
    /// Day of month 1..=31.
    pub day: u8,
}

impl CivilDate {
    /// Days since 1970-01-01 of this date.
    pub fn to_days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` days after 1970-01-01.
    pub fn from_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Self { year, month, day }
    }

    /// Midnight UTC at the start of this date.
    pub fn start(self) -> UnixTime {
        UnixTime(self.to_days() * DAY_SECS)
    }
}

impl std::fmt::Display for CivilDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A UTC calendar month: the period AWS's free egress allowance resets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Month {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month 1..=12.
    pub month: u8,
}

impl Month {
    /// Midnight UTC on the first day of the month.
    pub fn start(self) -> UnixTime {
        CivilDate {
            year: self.year,
            month: self.month,
            day: 1,
        }
        .start()
    }

    /// The following month.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Midnight UTC on the first day of the following month (exclusive end).
    pub fn end(self) -> UnixTime {
        self.next().start()
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_round_trip() {
        let cases = [
            (0, (1970, 1, 1)),
            (11_016, (2000, 2, 29)),
            (20_786, (2026, 11, 29)),
            (-1, (1969, 12, 31)),
            (47_541, (2100, 3, 1)),
        ];
        for (days, (y, m, d)) in cases {
            let date = CivilDate::from_days(days);
            assert_eq!((date.year, date.month, date.day), (y, m, d), "day {days}");
            assert_eq!(date.to_days(), days);
        }
    }

    #[test]
    fn every_day_for_two_centuries_round_trips() {
        let mut prev = CivilDate::from_days(-1);
        for days in 0..73_000 {
            let date = CivilDate::from_days(days);
            assert_eq!(date.to_days(), days);
            assert!(date > prev);
            prev = date;
        }
    }

    #[test]
    fn months_and_display() {
        let t = UnixTime(1_796_000_000); // 2026-11-29T...
        assert_eq!(t.month().to_string(), "2026-11");
        assert_eq!(t.month().next().to_string(), "2026-12");
        assert_eq!(t.month().next().next().to_string(), "2027-01");
        assert_eq!(
            Month {
                year: 2024,
                month: 2
            }
            .end()
            .date()
            .to_string(),
            "2024-03-01"
        );
        assert_eq!(UnixTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Month {
                year: 2026,
                month: 12
            }
            .end()
            .days_since(
                Month {
                    year: 2026,
                    month: 12
                }
                .start()
            ),
            31.0
        );
    }
}
