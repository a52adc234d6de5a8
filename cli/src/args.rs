//! The command line: every command, flag and environment variable, as clap derives them.
//!
//! What a flag means for the engine is decided once, in `settings.rs`; this module only
//! says what can be typed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::units::{MaxAge, Size};

/// The exit codes, as `zib --help` shows them (README.md has the same table).
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   done
  1   error (when one of several datasets fails, the others still run, and the exit is 1;
      `zib status --max-age` also exits 1 when a backup is older than that)
  2   usage: unknown flag, malformed value (size, URL, duration), bad config file
  10  no repository: none configured (no config file), or none at its URL (run `zib init`)
  11  another zib run holds the lock of this dataset or restore
  12  wrong passphrase
  75  restore in progress: nothing more to do now, run `zib restore` again later
      (a thaw or next month's download budget); systemd: SuccessExitStatus=75

Environment:
  ZIB_CONFIG            the config file (default ~/.config/zib/config.toml,
                        /etc/zib/config.toml as root)
  ZIB_STATE_DIR         local state: resume journals, locks, restore jobs (default
                        ~/.local/state/zib, /var/lib/zib as root)
  ZIB_PASSPHRASE_FILE   a file holding the passphrase (should be readable by its owner only)
  ZIB_PASSPHRASE        the passphrase itself (for scripts; a file is safer)
  AWS_PROFILE, AWS_REGION, AWS_ACCESS_KEY_ID, ...   the standard AWS credential chain
  RUST_LOG              log filter (e.g. zib_engine=debug), like -v";

/// Keep ZFS and BTRFS snapshots in S3 Glacier Deep Archive for decades.
///
/// Incremental, encrypted, at the lowest cost AWS allows, and restorable years later —
/// even when the restore is spread over months to stay inside AWS's free 100 GB of
/// downloads a month. Start with `zib init URL`; the README has a 5-minute quick start.
#[derive(Debug, Parser)]
#[command(name = "zib", version, about, long_about, after_long_help = EXIT_CODES_HELP, after_help = "Exit codes and environment: zib --help")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The config file (repository URL, datasets and their policy)
    #[arg(long, global = true, env = "ZIB_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Local state: resume journals, locks, restore jobs
    #[arg(long, global = true, env = "ZIB_STATE_DIR", value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// Read the passphrase from this file (never give it as an argument)
    #[arg(long, global = true, env = "ZIB_PASSPHRASE_FILE", value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,

    /// Open the repository with this copy of its keyring (when the `keyring` object in
    /// the bucket is lost or damaged)
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) keyring: Option<PathBuf>,

    /// One JSON document on stdout instead of text (field names: docs/CLI.md)
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// More log lines (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Only errors and warnings; no progress
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    #[command(flatten)]
    pub(crate) s3: S3Flags,
}

/// How to reach an S3 repository; each also settable in the config's `[repository]`.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct S3Flags {
    /// Endpoint of an S3-compatible server (default: AWS)
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) endpoint_url: Option<String>,

    /// AWS region (default: from AWS_REGION or the profile)
    #[arg(long, global = true, value_name = "REGION")]
    pub(crate) region: Option<String>,

    /// Named profile of ~/.aws/config (default: AWS_PROFILE, else `default`)
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) profile: Option<String>,

    /// Path-style bucket addressing (default: on with --endpoint-url, off for AWS)
    #[arg(long, global = true, value_name = "BOOL")]
    pub(crate) path_style: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a repository at URL and write the config file
    ///
    /// URL: s3://BUCKET[/PREFIX], file:///PATH, or a directory path. Checks every IAM
    /// permission first (naming any that is missing), then writes the keyring, its
    /// archived copy, a README object and the bucket's lifecycle rule for abandoned
    /// uploads. Asks for the passphrase twice.
    Init(InitArgs),
    /// The keyring: export an offline copy, or recover the archived copy
    #[command(subcommand)]
    Key(KeyCommand),
    /// Back up datasets (default: those in the config)
    Backup(BackupArgs),
    /// The catalog, read from the bucket: per dataset its chains, sizes, dates, cost
    List(DatasetArg),
    /// What the next backup would send and cost (nothing is sent)
    Plan(DatasetArg),
    /// Restore a dataset from the archive, over as many months as the budget needs
    ///
    /// `zib restore DATASET --into TARGET` creates a restore job, shows its schedule
    /// month by month and asks before it starts. Then run `zib restore` (no arguments)
    /// daily until it says done: each run advances every open job, and exits 75 while
    /// one waits (for a thaw, or next month's budget).
    Restore(RestoreArgs),
    /// Per dataset the newest backup and its age; open restores; leftovers
    Status(StatusArgs),
    /// Check, without a thaw, that every backup is restorable; `--drill` restores one
    Verify(VerifyArgs),
    /// Replace a long chain by a fresh full when that is cheaper, then delete what it
    /// superseded once the safety rules allow
    Consolidate(ConsolidateArgs),
    /// This month's storage bill and a 12-month projection, from the catalog
    Cost,
    /// Change the passphrase (re-wraps the keyring; no backup is re-uploaded)
    Passwd(PasswdArgs),
    /// Remove leftovers of backups that never committed
    Cleanup(CleanupArgs),
    /// Print a shell completion script
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout
    Man,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// s3://BUCKET[/PREFIX], file:///PATH or a directory
    pub(crate) url: String,

    /// Storage class of volumes and manifests (fixed for the repository's life)
    #[arg(long, value_name = "CLASS")]
    pub(crate) storage_class: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Write the keyring (and a recovery kit: README, the format spec and a reference
    /// decoder) into DIR, for an offline copy: a USB stick, a printout, a safe
    Export {
        /// Where to write (created if missing)
        dir: PathBuf,
    },
    /// Fetch the keyring's archived copy from the bucket (a restore: run it again once
    /// it has thawed, up to 12 hours later), put it back as the live keyring and save a
    /// copy into FILE
    Recover {
        /// Where to save the recovered keyring
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// ZFS datasets (pool/name) or BTRFS subvolumes (/path); default: the config's
    pub(crate) datasets: Vec<String>,

    /// Each dataset and every dataset below it, each its own chain (ZFS)
    #[arg(short, long)]
    pub(crate) recursive: bool,

    /// Back up this existing snapshot instead of taking a new one
    #[arg(long, value_name = "NAME")]
    pub(crate) snapshot: Option<String>,

    /// Send a full stream even when an incremental would do
    #[arg(long)]
    pub(crate) full: bool,

    /// Show the plan and its cost; send nothing, create no snapshot
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DatasetArg {
    /// A dataset as it was backed up (default: all)
    pub(crate) dataset: Option<String>,
}

/// Retrieval tier of a restore.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum TierArg {
    /// Cheapest; Deep Archive thaws within 48 hours
    Bulk,
    /// Dearer; within 12 hours
    Standard,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The dataset to restore, as it was backed up (see `zib list`)
    #[arg(requires = "into", conflicts_with_all = ["status", "cancel"])]
    pub(crate) dataset: Option<String>,

    /// Where to restore: a ZFS dataset that does not exist yet, or a BTRFS directory
    #[arg(long, value_name = "TARGET")]
    pub(crate) into: Option<String>,

    /// The restore point: a snapshot name (default: the newest backup)
    #[arg(long, value_name = "NAME", requires = "dataset")]
    pub(crate) snapshot: Option<String>,

    /// Bytes to download per month, all restores together (default 100GB, AWS's free
    /// allowance)
    #[arg(long, value_name = "SIZE", requires = "dataset")]
    pub(crate) monthly_budget: Option<Size>,

    /// Retrieval tier (default bulk)
    #[arg(long, value_enum, requires = "dataset")]
    pub(crate) tier: Option<TierArg>,

    /// Where downloaded volumes wait for their receive (default: STATE_DIR/staging)
    #[arg(long, value_name = "DIR", requires = "dataset")]
    pub(crate) staging: Option<PathBuf>,

    /// Start without asking
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    /// Show the restore jobs and where each stands; advance nothing
    #[arg(long, conflicts_with = "cancel")]
    pub(crate) status: bool,

    /// Cancel a restore job (its id from --status; optional when only one is open):
    /// removes its staged volumes and what it received
    #[arg(long, value_name = "JOB", num_args = 0..=1, default_missing_value = "")]
    pub(crate) cancel: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Exit 1 when a configured dataset's newest backup is older than this (e.g. 26h,
    /// 8d, 2w), or has none
    #[arg(long, value_name = "DURATION")]
    pub(crate) max_age: Option<MaxAge>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Show only this dataset's restore points and problems (default: all)
    pub(crate) dataset: Option<String>,

    /// Also restore the smallest intact chain for real into a throwaway target, within
    /// this month's free egress (on Deep Archive it waits for a thaw: run it again daily
    /// until it passes or fails; exit 75 meanwhile)
    #[arg(long)]
    pub(crate) drill: bool,

    /// Where the drill receives (must not exist; removed when the drill ends). Default:
    /// POOL/zib-drill for a ZFS dataset
    #[arg(long, value_name = "TARGET", requires = "drill")]
    pub(crate) drill_target: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ConsolidateArgs {
    /// The dataset (default: the config's)
    pub(crate) dataset: Option<String>,

    /// Send a fresh full even when the planner would send an incremental
    #[arg(long, conflicts_with = "delete_only")]
    pub(crate) force: bool,

    /// Also delete restore points that lost more than the policy's share of their data
    /// (check the live data first: ransomware and mistaken deletions look the same)
    #[arg(long)]
    pub(crate) confirm: bool,

    /// Back up nothing: only delete the superseded backups that are due (a run with
    /// credentials that may delete, for backup hosts whose credentials may not)
    #[arg(long)]
    pub(crate) delete_only: bool,

    /// Show the backup the consolidation would send and why; change nothing (which
    /// backups would be deleted is not previewed)
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PasswdArgs {
    /// Read the new passphrase from this file (else env ZIB_NEW_PASSPHRASE_FILE, or
    /// ZIB_NEW_PASSPHRASE, else a prompt asks twice)
    #[arg(long, env = "ZIB_NEW_PASSPHRASE_FILE", value_name = "FILE")]
    pub(crate) new_passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    /// Show what would be removed; remove nothing
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,
}
