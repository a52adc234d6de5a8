//! The backup pipeline: decide what to send, send it into volumes, commit the manifest,
//! protect the next incremental base.
//!
//! Order of effects, so that a run killed at any instant leaves either a committed
//! backup or nothing a restore would mistake for one: volumes first (invisible to the
//! catalog without a manifest), the manifest last with a create-if-absent (its existence
//! is the commit), and only then the base protection on the local dataset.
//!
//! A run ([`run::BackupRun`]) goes through phases, each a method:
//!
//! 1. **gather** — the source's capabilities (which also proves the dataset exists), the
//!    dataset's lock, the catalog, the local snapshots and bookmarks: each fact asked
//!    once;
//! 2. **recover** ([`recover`]) — an interrupted run's journal: continued, finished,
//!    discarded, or refused (another snapshot was asked for); a snapshot a killed run
//!    created but never journalled is removed;
//! 3. **choose the target** — an existing snapshot, or a new one;
//! 4. **plan** — the planner's decision (full or incremental, from which base), with the
//!    source's size estimates;
//! 5. **start** — the journal written before the first upload;
//! 6. **send and commit** ([`commit`]) — the stream uploaded (again from the start if
//!    it changed under a resumed upload), every volume confirmed, the manifest created;
//! 7. **after the commit** ([`prune`]) — the new base protected, the old one released,
//!    the snapshots zib created and no longer needs destroyed; when the policy says
//!    `auto`, the backups in the bucket that no kept restore point needs any more are
//!    deleted once the safety rules allow ([`crate::deletion`]).

mod commit;
mod prune;
mod recover;
mod run;

use zib_planner::{BackupDecision, Policy, PriceTable};
use zib_snapshot_source::{DatasetName, Protection, SendFlags, SnapshotName, SnapshotSource};

pub use self::prune::PruneReport;
use crate::context::Repo;
use crate::deletion::DeletionReport;
use crate::error::Result;
use crate::format::records::ManifestRecord;
use crate::ids::DatasetId;
use crate::progress::Progress;
use crate::upload::recorder::Transferred;
use crate::upload::VolumeShape;

#[cfg(any(test, feature = "internals"))]
pub(crate) use self::commit::commit_manifest;

/// Which snapshot to back up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SnapshotChoice {
    /// Take a new snapshot named `zib-YYYYMMDDTHHMMSSZ` (UTC, from the repository's
    /// clock; `-2`, `-3`, … appended when the dataset already has a snapshot, or a
    /// backup, of that name), marked as created by zib.
    #[default]
    Create,
    /// Back up an existing snapshot.
    Existing(SnapshotName),
}

/// How to back up. [`Default`] takes a new snapshot, sends without extra flags in 1 GiB
/// volumes of 64 MiB parts (4 in flight), plans with the default policy and AWS
/// us-east-1 prices, fails at once when another run holds the dataset's lock, and
/// prunes the snapshots zib created once a newer backup committed, and sends an
/// incremental whenever the planner says so.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Which snapshot.
    pub snapshot: SnapshotChoice,
    /// Extra send flags: a property of the chain (changing them forces a full).
    pub send_flags: SendFlags,
    /// Volume and part sizes, upload parallelism. The planner prices the backup with
    /// these sizes (they replace the policy's).
    pub shape: VolumeShape,
    /// Planner policy (consolidation, horizon, ...).
    pub policy: Policy,
    /// Prices for the cost figures.
    pub prices: PriceTable,
    /// When another run holds the dataset's lock: wait for it (`true`) or fail at once
    /// with [`Error::Locked`](crate::Error::Locked) (`false`).
    pub wait_for_lock: bool,
    /// Destroy the local snapshots zib created once a newer backup has committed (the
    /// newest stays as the next incremental base). Snapshots zib did not create are never
    /// destroyed, whatever this says.
    pub prune_created_snapshots: bool,
    /// Send a full stream even when the planner would send an incremental (it starts a
    /// new chain; the old chain stays until consolidation or pruning removes it). An
    /// interrupted backup is still continued as it was journalled.
    pub full: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            snapshot: SnapshotChoice::Create,
            send_flags: SendFlags::NONE,
            shape: VolumeShape::default(),
            policy: Policy::default(),
            prices: PriceTable::default(),
            wait_for_lock: false,
            prune_created_snapshots: true,
            full: false,
        }
    }
}

/// What a run sent to the bucket and what it found there already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Parts this run uploaded (confirmed by the storage).
    pub parts_sent: u64,
    /// Their bytes (ciphertext).
    pub bytes_sent: u64,
    /// Parts an earlier, interrupted run had stored, checked and not sent again.
    pub parts_skipped: u64,
    /// Their bytes (ciphertext).
    pub bytes_skipped: u64,
}

impl From<Transferred> for Transfer {
    fn from(transferred: Transferred) -> Self {
        Self {
            parts_sent: transferred.parts_sent,
            bytes_sent: transferred.bytes_sent,
            parts_skipped: transferred.parts_skipped,
            bytes_skipped: transferred.bytes_skipped,
        }
    }
}

/// A backup that committed.
#[derive(Debug, Clone)]
pub struct CommittedBackup {
    /// The manifest as written.
    pub manifest: ManifestRecord,
    /// Why the planner chose this kind of backup, and its estimated cost.
    pub decision: BackupDecision,
    /// Whether this run continued a backup an earlier run left unfinished (same backup
    /// id), rather than starting one.
    pub resumed: bool,
    /// What this run uploaded, and what it found already stored.
    pub transfer: Transfer,
    /// How the sent snapshot is protected as the next incremental base, if it could be.
    pub protection: Option<Protection>,
    /// What happened to the older snapshots zib created, and the previous base's
    /// protection.
    pub pruned: PruneReport,
    /// The superseded backups this run deleted from the bucket, and those still waiting
    /// (for their minimum age, the grace period, a confirmation, delete permission);
    /// `None` when the policy's consolidation is `never` (nothing is deleted on its own)
    /// or the run was a consolidation's fresh full (the consolidation reports them).
    pub deletions: Option<DeletionReport>,
    /// Things the user should know (e.g. no base protection on BTRFS).
    pub warnings: Vec<String>,
}

/// What a backup run did.
#[derive(Debug, Clone)]
pub enum BackupOutcome {
    /// The snapshot was already backed up; nothing was sent.
    UpToDate {
        /// The planner's reasoning.
        decision: Box<BackupDecision>,
    },
    /// A new backup committed.
    Committed(Box<CommittedBackup>),
}

/// What a run is for, beyond its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Intent {
    /// Send a full even where the planner would continue the chain (a consolidation
    /// asked for explicitly).
    pub(crate) fresh_full: bool,
    /// After the commit, delete the superseded backups that are due (a plain backup
    /// under an `auto` policy; a consolidation deletes with its own options instead).
    pub(crate) delete_superseded: bool,
}

impl Intent {
    /// A plain backup.
    pub(crate) const BACKUP: Self = Self {
        fresh_full: false,
        delete_superseded: true,
    };
}

/// What a backup of a dataset would do now, found without side effects (see
/// [`Repository::plan_backup`](crate::Repository::plan_backup)).
#[derive(Debug, Clone)]
pub struct BackupPreview {
    /// The dataset's id in the repository; `None` when it has no backup yet.
    pub dataset_id: Option<DatasetId>,
    /// The snapshot that would be backed up: an existing one, or the name a new one
    /// would get (`zib-YYYYMMDDTHHMMSSZ`, from the repository's clock).
    pub snapshot: String,
    /// Whether that snapshot would be created by the backup.
    pub new_snapshot: bool,
    /// The planner's decision — full, incremental (from which base) or up to date — with
    /// its reason and one-time cost. For a snapshot still to be created the source
    /// cannot estimate a size, so `estimated_bytes` is `None` there.
    pub decision: BackupDecision,
    /// An interrupted backup of this dataset is journalled on this host: the next run
    /// continues it first (so it may send another snapshot than the one above).
    pub unfinished_backup: bool,
}

/// What backing up `dataset` would do now; writes nothing (see [`BackupPreview`]).
pub(crate) async fn preview(
    repository: &Repo,
    source: &dyn SnapshotSource,
    dataset: &DatasetName,
    options: &BackupOptions,
) -> Result<BackupPreview> {
    options.shape.validate()?;
    let progress = crate::progress::NoProgress;
    let mut run =
        run::BackupRun::gather_unlocked(repository, source, dataset, options, &progress).await?;
    run.preview().await
}

/// Backs up one snapshot of `dataset` into `repository`, or continues the backup of it
/// that an earlier run left unfinished (see [`Repository::backup`](crate::Repository::backup)).
pub(crate) async fn back_up(
    repository: &Repo,
    source: &dyn SnapshotSource,
    dataset: &DatasetName,
    options: &BackupOptions,
    intent: Intent,
    progress: &dyn Progress,
) -> Result<BackupOutcome> {
    options.shape.validate()?;
    let mut run =
        run::BackupRun::gather(repository, source, dataset, options, intent, progress).await?;
    if let Some(outcome) = run.recover().await? {
        return Ok(outcome);
    }
    let target = run.choose_target().await?;
    let plan = match run.plan(&target).await? {
        run::Planned::UpToDate(decision) => return Ok(BackupOutcome::UpToDate { decision }),
        run::Planned::Send(plan) => plan,
    };
    let file = run.start(&target, &plan).await?;
    run.send_commit_and_protect(file, &target, *plan, false)
        .await
}

/// The value of the `zib:created` mark on snapshots zib creates for `repository`.
pub(crate) fn created_marker(repository: &Repo) -> String {
    repository.id().to_string()
}

/// `zib-YYYYMMDDTHHMMSSZ` for a Unix time; `zib-YYYYMMDDTHHMMSSZ-2`, `-3`, … when
/// `taken` says the plain name is in use (two backups of a dataset within one second: a
/// consolidation followed at once by a backup, a script's loop).
pub(crate) fn zib_snapshot_name(unix_seconds: i64, taken: impl Fn(&str) -> bool) -> String {
    let plain = format!("zib-{}", crate::format::layout::compact_utc(unix_seconds));
    if !taken(&plain) {
        return plain;
    }
    (2u32..)
        .map(|n| format!("{plain}-{n}"))
        .find(|name| !taken(name))
        .unwrap_or(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_follow_the_documented_pattern() {
        let free = |_: &str| false;
        assert_eq!(zib_snapshot_name(0, free), "zib-19700101T000000Z");
        assert_eq!(
            zib_snapshot_name(1_795_913_045, free),
            "zib-20261129T004405Z"
        );
    }

    #[test]
    fn a_name_taken_within_the_same_second_gets_a_counter() {
        let taken = ["zib-20261129T004405Z", "zib-20261129T004405Z-2"];
        assert_eq!(
            zib_snapshot_name(1_795_913_045, |name| taken.contains(&name)),
            "zib-20261129T004405Z-3"
        );
    }
}
