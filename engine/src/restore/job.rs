//! A restore job's state: its inputs, fixed when it is created, and what is done — one
//! file in the state directory, replaced whole and durably after every step, so a run
//! killed at any instant finds the state of the last finished step.
//!
//! ```text
//! <state dir>/<repository id>/restores/<job id>.restore   the job (envelope `ZIBRSTR\n`, v1)
//! <state dir>/<repository id>/restores/<job id>.lock      held by the run advancing it
//! <staging dir>/zib-<job id>/                             its staged volumes
//! ```
//!
//! Nothing here is needed to restore from the bucket: a lost job is created again, and
//! downloads what was not received yet (at the cost of those downloads).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zib_planner::{PriceTable, Tier};

use crate::error::{Error, Result};
use crate::ids::{BackupId, DatasetId, RepositoryId, RestoreJobId};
use crate::state::envelope::{self, Unreadable};
use crate::state::{off_the_runtime, read_if_exists, remove_durably, write_durably, StateDir};

pub(crate) const MAGIC: [u8; 8] = *b"ZIBRSTR\n";
pub(crate) const VERSION: u32 = 1;

/// A volume of the chain: its backup and its index in that backup's stream.
pub(crate) type VolumeKey = (BackupId, u32);

/// What a restore job is and what it has done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) id: RestoreJobId,
    pub(crate) repository_id: RepositoryId,
    pub(crate) dataset_id: DatasetId,
    /// The dataset's name when the restore point was backed up.
    pub(crate) dataset_name: String,
    /// The backup restored, and its chain (full first), fixed at creation.
    pub(crate) restore_point: BackupId,
    pub(crate) chain: Vec<BackupId>,
    /// Where the chain is received: a ZFS dataset name, or a path (BTRFS).
    pub(crate) target: String,
    pub(crate) target_is_zfs: bool,
    /// Where verified volumes wait for their stream's receive.
    pub(crate) staging_dir: PathBuf,
    pub(crate) tier: Tier,
    pub(crate) monthly_budget: u64,
    pub(crate) free_egress_per_month: u64,
    pub(crate) download_bytes_per_sec: u64,
    /// The price table the plans use, as JSON (a later zib may add prices; a table it
    /// cannot read falls back to the defaults).
    pub(crate) prices_json: String,
    pub(crate) created_at: i64,
    /// When each volume's restore was last requested.
    pub(crate) requested: BTreeMap<VolumeKey, i64>,
    /// Volumes downloaded and verified, waiting in staging.
    pub(crate) staged: BTreeMap<VolumeKey, StagedVolume>,
    /// Streams received into the target, in chain order.
    pub(crate) received: Vec<BackupId>,
    /// The chain's full stream created the target (so cancelling removes it).
    pub(crate) target_created: bool,
    pub(crate) finished_at: Option<i64>,
    /// A restore drill (`crate::verify::drill`): its target is thrown away when it ends.
    pub(crate) drill: bool,
}

/// A verified staged volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StagedVolume {
    pub(crate) ciphertext_len: u64,
    pub(crate) plaintext_len: u64,
}

impl Job {
    pub(crate) fn prices(&self) -> PriceTable {
        serde_json::from_str(&self.prices_json).unwrap_or_else(|error| {
            tracing::warn!(%error, "the restore job's price table does not parse; using the defaults");
            PriceTable::default()
        })
    }

    pub(crate) fn is_received(&self, backup: BackupId) -> bool {
        self.received.contains(&backup)
    }

    /// Where this job's volumes are staged.
    pub(crate) fn staging(&self) -> PathBuf {
        self.staging_dir.join(format!("zib-{}", self.id))
    }
}

/// Where a job's files are.
#[derive(Debug, Clone)]
pub(crate) struct JobFiles {
    pub(crate) file: PathBuf,
    pub(crate) lock: PathBuf,
}

impl JobFiles {
    pub(crate) fn of(state: &StateDir, repository: RepositoryId, id: RestoreJobId) -> Self {
        let dir = jobs_dir(state, repository);
        Self {
            file: dir.join(format!("{id}.restore")),
            lock: dir.join(format!("{id}.lock")),
        }
    }
}

fn jobs_dir(state: &StateDir, repository: RepositoryId) -> PathBuf {
    state.repository(repository).join("restores")
}

/// The ids of the jobs in the state directory, oldest file name first.
///
/// # Errors
///
/// [`Error::LocalState`] when the directory cannot be listed.
pub(crate) async fn job_ids(
    state: &StateDir,
    repository: RepositoryId,
) -> Result<Vec<RestoreJobId>> {
    let dir = jobs_dir(state, repository);
    off_the_runtime(&dir, "list the restore jobs", |dir| {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::LocalState {
                    path: dir.to_owned(),
                    action: "list the restore jobs",
                    source,
                })
            }
        };
        let mut ids: Vec<RestoreJobId> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name();
                let name = name.to_str()?;
                name.strip_suffix(".restore")?.parse().ok()
            })
            .collect();
        ids.sort();
        Ok(ids)
    })
    .await
}

/// The job at `file`, `None` when there is none.
///
/// # Errors
///
/// [`Error::LocalState`] when it cannot be read, or does not decode (the message says
/// to cancel the job and create it again).
pub(crate) async fn load(file: &Path) -> Result<Option<Job>> {
    off_the_runtime(file, "read a restore job", |file| {
        read_if_exists(file, "read a restore job")?
            .map(|bytes| decode(&bytes, file))
            .transpose()
    })
    .await
}

/// Decodes a job file's bytes; `file` names it in errors.
///
/// # Errors
///
/// [`Error::LocalState`] saying what is wrong: not a job file, another version,
/// truncated, checksum mismatch, undecodable body.
pub(crate) fn decode(bytes: &[u8], file: &Path) -> Result<Job> {
    let unreadable = |reason: String| Error::LocalState {
        path: file.to_owned(),
        action: "read a restore job",
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{reason}; delete the file and start the restore again (what was \
                 already received stays; staged volumes are downloaded again)"
            ),
        ),
    };
    let body = envelope::open(bytes, &MAGIC, VERSION).map_err(|error| match error {
        Unreadable::Version(version) => unreadable(format!(
            "restore job format version {version}, this zib reads {VERSION}"
        )),
        other => unreadable(format!("not a readable restore job ({other})")),
    })?;
    envelope::decode_body(body)
        .map_err(|error| unreadable(format!("its body does not decode ({error})")))
}

/// A job as the bytes of its file.
///
/// # Errors
///
/// [`Error::Internal`] if bincode refuses it (it encodes every value of these types).
pub(crate) fn encode(job: &Job) -> Result<Vec<u8>> {
    let body = bincode::serialize(job)
        .map_err(|error| Error::Internal(format!("could not encode a restore job: {error}")))?;
    Ok(envelope::seal(&MAGIC, VERSION, &body))
}

/// Replaces the job's file durably.
///
/// # Errors
///
/// [`Error::LocalState`] when the state directory cannot be written.
pub(crate) async fn save(file: &Path, job: &Job) -> Result<()> {
    let bytes = encode(job)?;
    off_the_runtime(file, "write a restore job", move |file| {
        write_durably(file, &bytes, "write a restore job")
    })
    .await
}

/// Deletes the job's file.
///
/// # Errors
///
/// [`Error::LocalState`] when it cannot be deleted.
pub(crate) async fn remove(file: &Path) -> Result<()> {
    off_the_runtime(file, "delete a restore job", |file| {
        remove_durably(file, "delete a restore job")
    })
    .await
}
