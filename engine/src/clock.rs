//! Time as an injected dependency.
//!
//! The engine never reads the system clock itself: snapshot names, commit times and
//! restore schedules come from a [`Clock`], so tests can run a 48-hour thaw or a
//! six-month restore in milliseconds. Only the CLI constructs [`SystemClock`].

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time, in whole seconds since the Unix epoch (UTC).
pub trait Clock: Send + Sync {
    /// The current time in seconds since 1970-01-01T00:00:00Z.
    fn now_unix_seconds(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_seconds(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since_epoch) => i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
            // A clock set before 1970 is wrong; report it as negative seconds rather
            // than inventing a time.
            Err(before_epoch) => {
                -i64::try_from(before_epoch.duration().as_secs()).unwrap_or(i64::MAX)
            }
        }
    }
}

/// A clock that moves only when told to (tests and simulations).
#[derive(Debug, Default)]
pub struct ManualClock {
    // Atomic rather than a Mutex: a single integer, read far more often than moved.
    now: AtomicI64,
}

impl ManualClock {
    /// A clock showing `unix_seconds`.
    pub fn new(unix_seconds: i64) -> Self {
        Self {
            now: AtomicI64::new(unix_seconds),
        }
    }

    /// Moves the clock forward (or back, with a negative value) by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Sets the clock to `unix_seconds`.
    pub fn set(&self, unix_seconds: i64) {
        self.now.store(unix_seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_seconds(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_unix_seconds(), 1_000);
        clock.advance(48 * 3600);
        assert_eq!(clock.now_unix_seconds(), 1_000 + 48 * 3600);
        clock.set(5);
        assert_eq!(clock.now_unix_seconds(), 5);
    }

    #[test]
    fn system_clock_is_after_the_format_was_written() {
        // 2025-01-01T00:00:00Z: a system clock before this is misconfigured.
        assert!(SystemClock.now_unix_seconds() > 1_735_689_600);
    }
}
