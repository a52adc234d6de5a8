//! Progress as a person sees it: a bar with bytes, rate and ETA on a terminal
//! (indicatif), plain log lines when stderr is not a terminal, nothing with `-q`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zib_engine::Progress;

use crate::units;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Bars on the terminal.
    Bars,
    /// A line per phase, and one a minute while bytes flow.
    Lines,
    /// Nothing.
    Quiet,
}

impl Mode {
    pub(crate) fn choose(quiet: bool) -> Self {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// One operation's progress (a backup of one dataset, a run of one restore).
pub(crate) struct Reporter {
    mode: Mode,
    label: String,
    bar: Option<ProgressBar>,
    lines: Mutex<LineState>,
}

struct LineState {
    bytes: u64,
    last_line: Instant,
}

/// Plain lines while bytes flow: one per this interval.
const LINE_INTERVAL: Duration = Duration::from_secs(60);

impl Reporter {
    pub(crate) fn new(mode: Mode, label: impl Into<String>) -> Self {
        let label = label.into();
        let bar = (mode == Mode::Bars).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(spinner_style());
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            mode,
            label,
            bar,
            lines: Mutex::new(LineState {
                bytes: 0,
                last_line: Instant::now(),
            }),
        }
    }

    /// Removes the bar (before the result is printed).
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn bytes(&self, bytes: u64, total: Option<u64>, verb: &str) {
        if let Some(bar) = &self.bar {
            if let Some(total) = total {
                if bar.length() != Some(total) {
                    bar.set_length(total);
                    bar.set_style(bar_style());
                }
            }
            bar.inc(bytes);
            return;
        }
        if self.mode == Mode::Lines {
            let mut state = self
                .lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.bytes += bytes;
            if state.last_line.elapsed() >= LINE_INTERVAL {
                state.last_line = Instant::now();
                tracing::info!("{}: {} {verb}", self.label, units::bytes(state.bytes));
            }
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix}: {msg} {bytes} ({binary_bytes_per_sec})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

impl Progress for Reporter {
    fn phase(&self, description: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.set_message(description.to_owned()),
            (None, Mode::Lines) => tracing::info!("{}: {description}", self.label),
            _ => {}
        }
    }

    fn stream_bytes(&self, bytes: u64, expected_total: Option<u64>) {
        self.bytes(bytes, expected_total, "read");
    }

    fn downloaded(&self, bytes: u64) {
        self.bytes(bytes, None, "downloaded");
    }
}
