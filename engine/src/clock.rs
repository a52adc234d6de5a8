//! Time as an injected dependency.
//!
//! The engine never reads the system clock itself: snapshot names, commit times and
//! restore schedules come from a [`Clock`], so tests can run a 48-hour thaw or a
//! six-month restore in milliseconds. Only the CLI constructs [`SystemClock`]. The trait
//! is the storage backend's, so one fake clock drives both the engine and an in-memory
//! backend's thaw delays.

pub use zib_storage_backend::clock::{Clock, FakeClock, SystemClock};

/// The clock's time in whole seconds since the Unix epoch (negative before 1970).
pub(crate) fn unix_seconds(clock: &dyn Clock) -> i64 {
    match clock.now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn unix_seconds_follow_the_clock() {
        let clock = FakeClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
        assert_eq!(unix_seconds(&clock), 1_000);
        clock.advance(Duration::from_secs(48 * 3600));
        assert_eq!(unix_seconds(&clock), 1_000 + 48 * 3600);
        clock.set(UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(unix_seconds(&clock), -5);
    }
}
