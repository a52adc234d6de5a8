//! `zib`: the command-line interface.
//!
//! Thin by design: parse flags, validate them once into library options, make one
//! library call, map the outcome to an exit code.

use clap::Parser;

/// Keep ZFS and BTRFS snapshots in S3 Glacier Deep Archive for decades.
#[derive(Debug, Parser)]
#[command(name = "zib", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
