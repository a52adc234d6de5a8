//! `zib`: the command-line interface.
//!
//! Thin by design: parse flags, validate them once into library options, make one
//! library call, map the outcome to an exit code.
//!
//! Status: the commands (init, backup, catalog, restore, ...) are not implemented yet;
//! `scripts/demo.sh` shows the library doing the job through `examples/backup_demo.rs`.

use std::process::ExitCode;

use clap::Parser;

/// Keep ZFS and BTRFS snapshots in S3 Glacier Deep Archive for decades.
///
/// No commands are available in this version yet.
#[derive(Debug, Parser)]
#[command(name = "zib", version, about)]
struct Cli {}

#[allow(clippy::print_stderr)] // the CLI is where messages for people are printed
fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!(
        "zib: this version has no commands yet; the library works end to end \
         (see scripts/demo.sh and examples/examples/backup_demo.rs)"
    );
    ExitCode::from(2)
}
