//! The clock the engine reads: the system's — or, in builds with the `test-clock`
//! feature only, one that starts at `ZIB_NOW` (RFC 3339) and runs at the real rate, so
//! tests drive a restore across months. A user's build ignores `ZIB_NOW`: a stray
//! variable must never move the clock that guards the archive's 180-day minimum.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use zib_engine::storage::{Clock, SystemClock};

use crate::exit::CliError;

/// The environment variable a `test-clock` build reads.
pub(crate) const NOW_ENV: &str = "ZIB_NOW";

/// The clock for this run.
pub(crate) fn choose() -> Result<Arc<dyn Clock>, CliError> {
    choose_with(cfg!(feature = "test-clock"), std::env::var(NOW_ENV).ok())
}

fn choose_with(test_clock: bool, now: Option<String>) -> Result<Arc<dyn Clock>, CliError> {
    match now {
        Some(text) if test_clock => {
            let start =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .map_err(|error| {
                        CliError::usage(format!("{NOW_ENV}={text:?} is not RFC 3339: {error}"))
                    })?;
            Ok(Arc::new(StartedAt {
                start: SystemTime::from(start),
                since: Instant::now(),
            }))
        }
        _ => Ok(Arc::new(SystemClock)),
    }
}

/// A clock that read `start` at `since` and runs at the real rate.
#[derive(Debug)]
struct StartedAt {
    start: SystemTime,
    since: Instant,
}

impl Clock for StartedAt {
    fn now(&self) -> SystemTime {
        self.start + self.since.elapsed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const LATER: &str = "2031-05-01T00:00:00Z";

    #[test]
    fn a_user_build_ignores_zib_now() {
        let clock = choose_with(false, Some(LATER.into())).unwrap();
        let drift = clock
            .now()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        assert!(drift < Duration::from_secs(60), "the system clock");
    }

    #[test]
    fn a_test_build_starts_at_zib_now_and_runs_on() {
        let clock = choose_with(true, Some(LATER.into())).unwrap();
        let at = clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!((1_935_360_000..1_935_360_060).contains(&at), "{at}");
        assert!(choose_with(true, Some("next tuesday".into())).is_err());
        // Without the variable, the system clock.
        let system = choose_with(true, None).unwrap();
        assert!(system.now() <= SystemTime::now());
    }
}
