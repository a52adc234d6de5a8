//! `zib`: the command-line interface.
//!
//! Thin by design (docs/ARCHITECTURE.md, "The command line"): each command parses its
//! flags, validates them once into the engine's options (`app.rs` merges the config
//! file and the flags), makes one engine call per dataset or job, prints the result as
//! text or one JSON document, and maps the outcome to an exit code (`exit.rs`).
//!
//! What is not here yet: `zib verify [--drill]` and `zib consolidate` wait for the
//! engine's verify and consolidation (they slot in as two more subcommands of `Command`
//! and modules of `commands/`).

mod app;
mod args;
mod clock;
mod commands;
mod config;
mod exit;
mod passphrase;
mod progress;
mod units;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Global};
use crate::exit::Exit;

#[allow(clippy::print_stdout, clippy::print_stderr)] // the CLI is where messages are printed
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                Exit::Usage
            } else {
                Exit::Done
            }
            .into();
        }
    };
    init_logging(&cli.global);
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("zib: error: could not start the async runtime: {error}");
            return Exit::Error.into();
        }
    };
    let outcome = runtime.block_on(commands::run(cli));
    // Progress bars and pending log lines first, then the result.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(outcome) => {
            if json {
                print_json(&outcome.json);
            }
            outcome.exit.into()
        }
        Err(error) => {
            let exit = exit::exit_for(&error);
            let (message, hint) = exit::describe(&error);
            eprintln!("zib: error: {message}");
            if let Some(hint) = &hint {
                eprintln!("zib: hint: {hint}");
            }
            if json {
                print_json(&serde_json::json!({
                    "error": { "message": message, "hint": hint, "exit_code": exit as u8 }
                }));
            }
            exit.into()
        }
    }
}

#[allow(clippy::print_stderr)]
fn print_json(document: &serde_json::Value) {
    let mut stdout = std::io::stdout().lock();
    let written = serde_json::to_writer_pretty(&mut stdout, document)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(stdout));
    if let Err(error) = written {
        eprintln!("zib: error: could not write the JSON result: {error}");
    }
}

/// Log lines on stderr: warnings and errors by default, with the CLI's own progress
/// lines (`info`) unless `-q`; `-v`, `-vv`, `-vvv` show more of every crate; `RUST_LOG`
/// overrides all of it.
fn init_logging(global: &Global) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "warn",
        (false, 0) => "warn,zib=info",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(global.verbose > 1)
        .without_time()
        .try_init();
}
