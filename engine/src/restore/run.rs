//! One run of a restore job (see the [module docs](super)).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use zib_planner::{
    plan_restore, Month, RequestedRestore, RestoreOptions, RestorePlan, UnixTime, VolumeId,
};
use zib_snapshot_source::{DatasetName, ReceiveOptions, SnapshotSource};
use zib_storage_backend::{ArchiveState, ObjectKey, RestoreTier};

use super::job::{self, Job, JobFiles, VolumeKey};
use super::staging;
use super::{system_time, target_of, view, RestoreState, RestoreStatus, WaitReason};
use crate::catalog::planning::{planner_backup_id, planner_catalog};
use crate::catalog::{read_catalog, Catalog, CatalogBackup};
use crate::clock::unix_seconds;
use crate::context::Repo;
use crate::download::{backup_stream, StagedVolumes, Volumes};
use crate::error::{Error, Result};
use crate::format::layout::ObjectRole;
use crate::format::records::ManifestRecord;
use crate::ids::{BackupId, RestoreJobId};
use crate::progress::Progress;
use crate::state::ledger::Ledger;
use crate::state::lock::lock_dataset;

/// Bytes downloaded between two writes of the ledger during one volume's download: a run
/// killed mid-volume leaves at most this much uncounted.
const LEDGER_STEP: u64 = 64 << 20;

/// How long a copy that is not archived stays readable, for the planner: a century.
const NEVER_EXPIRES: i64 = 100 * 365 * 24 * 3600;

/// What one run found and did.
struct Run<'a> {
    repository: &'a Arc<Repo>,
    source: &'a dyn SnapshotSource,
    progress: &'a dyn Progress,
    files: JobFiles,
    job: Job,
    catalog: Catalog,
    ledger: Ledger,
    now: i64,
    requested: usize,
    downloaded_volumes: usize,
    downloaded_bytes: u64,
    received: Vec<String>,
}

/// Advances the job `id` as far as it can go now.
pub(crate) async fn advance(
    repository: &Arc<Repo>,
    id: RestoreJobId,
    source: &dyn SnapshotSource,
    progress: &dyn Progress,
) -> Result<RestoreStatus> {
    let files = JobFiles::of(repository.state(), repository.id(), id);
    // Held for the whole run: two runs never download or receive for one job at once.
    let _lock = lock_dataset(&files.lock, &format!("restore job {id}"), false).await?;
    let job = job::load(&files.file)
        .await?
        .ok_or(Error::NoSuchRestore { id })?;
    let ledger = Ledger::new(repository.state().root());
    let now = unix_seconds(repository.clock());
    if job.finished_at.is_some() {
        let month_downloaded = ledger.downloaded_in(UnixTime(now).month()).await?;
        return Ok(RestoreStatus {
            job: view(&job)?,
            restores_requested: 0,
            volumes_downloaded: 0,
            bytes_downloaded: 0,
            received: Vec::new(),
            month_downloaded,
            state: RestoreState::Done,
            plan: None,
        });
    }
    progress.phase("reading the catalog");
    let catalog = read_catalog(repository).await?;
    let mut run = Run {
        repository,
        source,
        progress,
        files,
        job,
        catalog,
        ledger,
        now,
        requested: 0,
        downloaded_volumes: 0,
        downloaded_bytes: 0,
        received: Vec::new(),
    };
    run.check_chain()?;
    run.record_already_received().await?;
    run.receive_staged().await?;
    if run.finished() {
        return run.finish().await;
    }
    let states = run.volume_states().await?;
    let plan = run.plan(&states).await?;
    run.request_due(&plan, &states).await?;
    let budget_hit = run.download_and_receive(&states).await?;
    if run.finished() {
        return run.finish().await;
    }
    run.waiting(&states, budget_hit).await
}

/// The plan for a job that has done nothing yet (what `create` shows).
pub(crate) async fn plan_from_scratch(
    repository: &Repo,
    job: &Job,
    catalog: &Catalog,
) -> Result<RestorePlan> {
    let ledger = Ledger::new(repository.state().root());
    let now = unix_seconds(repository.clock());
    let used = ledger.downloaded_in(UnixTime(now).month()).await?;
    let staging_free = staging::free_bytes(&job.staging_dir).await?;
    let backups = catalog.backups(job.dataset_id);
    plan(job, backups, &BTreeMap::new(), used, staging_free, now)
}

/// The planner's schedule of what is left.
fn plan(
    job: &Job,
    backups: &[CatalogBackup],
    states: &BTreeMap<VolumeKey, ArchiveState>,
    used_this_month: u64,
    staging_free: u64,
    now: i64,
) -> Result<RestorePlan> {
    let to_volume = |(backup, index): &VolumeKey| VolumeId {
        backup: planner_backup_id(*backup),
        index: *index,
    };
    let requested = states
        .iter()
        .filter_map(|(key, state)| {
            let requested_at = job.requested.get(key).copied().unwrap_or(now);
            let expires_at = match state {
                ArchiveState::RestoreInProgress => None,
                ArchiveState::Restored { until } => Some(unix_of(*until)),
                // Not archived: readable for as long as it is needed.
                ArchiveState::Available => Some(now.saturating_add(NEVER_EXPIRES)),
                ArchiveState::Archived => return None,
            };
            Some(RequestedRestore {
                volume: to_volume(key),
                requested_at: UnixTime(requested_at),
                expires_at: expires_at.map(UnixTime),
            })
        })
        .collect();
    let options = RestoreOptions {
        tier: job.tier,
        monthly_budget_bytes: job.monthly_budget,
        budget_remaining_this_month: job.monthly_budget.saturating_sub(used_this_month),
        free_egress_remaining_this_month: job.free_egress_per_month.saturating_sub(used_this_month),
        allow_overrun: false,
        staging_available_bytes: staging_free,
        download_bytes_per_sec: job.download_bytes_per_sec.max(1),
        downloaded: job
            .staged
            .keys()
            .filter(|(backup, _)| !job.is_received(*backup))
            .map(to_volume)
            .collect(),
        received: job
            .received
            .iter()
            .map(|backup| planner_backup_id(*backup))
            .collect(),
        requested,
        ..RestoreOptions::default()
    };
    Ok(plan_restore(
        &planner_catalog(backups)?,
        &planner_backup_id(job.restore_point),
        &options,
        &job.prices(),
        UnixTime(now),
    )?)
}

fn unix_of(time: std::time::SystemTime) -> i64 {
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

impl Run<'_> {
    fn month(&self) -> Month {
        UnixTime(self.now).month()
    }

    fn finished(&self) -> bool {
        self.job.received.len() == self.job.chain.len()
    }

    fn entry(&self, backup: BackupId) -> Result<&CatalogBackup> {
        self.catalog
            .backups(self.job.dataset_id)
            .iter()
            .find(|entry| entry.manifest.backup_id == backup)
            .ok_or(Error::BrokenChain {
                backup: self.job.restore_point,
                missing: backup,
            })
    }

    /// Every backup of the chain is still committed, each with all its volumes listed.
    fn check_chain(&self) -> Result<()> {
        for backup in &self.job.chain {
            let entry = self.entry(*backup)?;
            let listed = u32::try_from(entry.volume_sizes.len()).unwrap_or(u32::MAX);
            if listed < entry.manifest.volume_count && !self.job.is_received(*backup) {
                let key = self.volume_key(*backup, listed)?;
                return Err(self.volume_gone(key, *backup));
            }
        }
        Ok(())
    }

    fn volume_key(&self, backup: BackupId, index: u32) -> Result<ObjectKey> {
        self.repository.key(&ObjectRole::Volume {
            dataset: self.job.dataset_id,
            backup,
            index,
        })
    }

    /// A volume missing from the bucket, with the restore points it breaks.
    fn volume_gone(&self, key: ObjectKey, backup: BackupId) -> Error {
        let breaks = self
            .catalog
            .backups(self.job.dataset_id)
            .iter()
            .filter(|entry| {
                self.catalog
                    .chain(self.job.dataset_id, entry.manifest.backup_id)
                    .is_ok_and(|chain| chain.iter().any(|link| link.manifest.backup_id == backup))
            })
            .map(|entry| entry.manifest.backup_id)
            .collect();
        Error::VolumeGone {
            key: key.to_string(),
            backup,
            breaks,
        }
    }

    /// The volumes still to download (not staged, of streams not received), in chain
    /// order, with their sizes.
    fn remaining(&self) -> Result<Vec<(VolumeKey, u64)>> {
        let mut out = Vec::new();
        for backup in &self.job.chain {
            if self.job.is_received(*backup) {
                continue;
            }
            let entry = self.entry(*backup)?;
            for (index, size) in entry.volume_sizes.iter().enumerate() {
                let key = (*backup, u32::try_from(index).unwrap_or(u32::MAX));
                if !self.job.staged.contains_key(&key) {
                    out.push((key, *size));
                }
            }
        }
        Ok(out)
    }

    /// Where each remaining volume stands in the bucket (one HEAD each).
    async fn volume_states(&self) -> Result<BTreeMap<VolumeKey, ArchiveState>> {
        let mut states = BTreeMap::new();
        for ((backup, index), _) in self.remaining()? {
            let key = self.volume_key(backup, index)?;
            let state = match self.repository.backend().head(&key).await {
                Ok(meta) => meta.archive_state,
                Err(zib_storage_backend::Error::NotFound { .. }) => {
                    return Err(self.volume_gone(key, backup))
                }
                Err(error) => return Err(error.into()),
            };
            states.insert((backup, index), state);
        }
        Ok(states)
    }

    async fn plan(&self, states: &BTreeMap<VolumeKey, ArchiveState>) -> Result<RestorePlan> {
        let used = self.ledger.downloaded_in(self.month()).await?;
        let staging_free = staging::free_bytes(&self.job.staging_dir).await?;
        plan(
            &self.job,
            self.catalog.backups(self.job.dataset_id),
            states,
            used,
            staging_free,
            self.now,
        )
    }

    /// Requests the restores of the thaw waves due now.
    async fn request_due(
        &mut self,
        plan: &RestorePlan,
        states: &BTreeMap<VolumeKey, ArchiveState>,
    ) -> Result<()> {
        let tier = match self.job.tier {
            zib_planner::Tier::Bulk => RestoreTier::Bulk,
            zib_planner::Tier::Standard => RestoreTier::Standard,
        };
        for wave in plan.batches.iter().flat_map(|batch| &batch.waves) {
            if wave.request_at.0 > self.now {
                continue;
            }
            for volume in &wave.volumes {
                let id = volume.id();
                if wave.already_requested.contains(&id) {
                    continue;
                }
                let backup = crate::catalog::planning::engine_backup_id(&volume.backup)?;
                let key_of = (backup, volume.index);
                // Thawing already: a second request changes nothing (S3 answers 409).
                if matches!(states.get(&key_of), Some(ArchiveState::RestoreInProgress)) {
                    continue;
                }
                let key = self.volume_key(backup, volume.index)?;
                self.repository
                    .backend()
                    .request_restore(&key, wave.restore_days.max(1), tier)
                    .await?;
                self.job.requested.insert(key_of, self.now);
                self.requested += 1;
            }
        }
        if self.requested > 0 {
            self.progress
                .phase(&format!("requested {} restore(s)", self.requested));
            job::save(&self.files.file, &self.job).await?;
        }
        Ok(())
    }

    /// Streams staged whole by earlier runs, received.
    async fn receive_staged(&mut self) -> Result<()> {
        self.download_and_receive(&BTreeMap::new())
            .await
            .map(|_| ())
    }

    /// Downloads the volumes whose copies are readable, in chain order, within this
    /// month's budget, and beside the downloads receives each stream in chain order as
    /// soon as its volumes are staged: the receive of a stream starts once its first
    /// volume is staged, if every one of its volumes is staged already or downloaded in
    /// this run. Returns whether the budget stopped the downloads.
    async fn download_and_receive(
        &mut self,
        states: &BTreeMap<VolumeKey, ArchiveState>,
    ) -> Result<bool> {
        let (downloads, budget_hit) = self.downloads_now(states).await?;
        let (arrived, watching) =
            watch::channel(self.job.staged.keys().copied().collect::<BTreeSet<_>>());
        // The receiver holds the only copies: once it ends, `reads` says so.
        let (staged, reads) = StagedVolumes::new(self.job.staging(), watching);
        let receiver = Receiver {
            repository: self.repository,
            source: self.source,
            progress: self.progress,
            target: target_of(&self.job)?,
            staged,
        };
        let streams = self.receivable(&downloads)?;
        let receiving = streams
            .iter()
            .map(|stream| stream.manifest.backup_id)
            .collect();
        let (done, mut received) = mpsc::unbounded_channel();
        let (downloaded, receive) = tokio::join!(
            async {
                let beside = Beside {
                    arrived,
                    reads,
                    receiving,
                    received: &mut received,
                };
                let downloaded = self.download(downloads, beside).await;
                // The downloads are over (the receiver knows: `arrived` is dropped); each
                // stream it receives from now on is recorded at once.
                let recorded = self.record_until_closed(&mut received).await;
                downloaded.and_then(|budget_hit| recorded.map(|()| budget_hit))
            },
            receiver.receive(streams, done),
        );
        if let Err(error) = receive {
            if matches!(error, Error::StagedVolumeDamaged { .. }) {
                self.drop_damaged(&error).await?;
            }
            if let Err(also) = downloaded {
                // One error is returned; the other is said, and comes back next run.
                tracing::warn!(error = %also, "a download failed too");
            }
            return Err(error);
        }
        Ok(downloaded? || budget_hit)
    }

    /// The volumes to download now: readable, in chain order, up to the first that this
    /// month's budget cannot hold (a volume is never split across months: all of it
    /// fits, or it waits). Returns them, and whether the budget stopped the list.
    async fn downloads_now(
        &self,
        states: &BTreeMap<VolumeKey, ArchiveState>,
    ) -> Result<(Vec<(VolumeKey, u64)>, bool)> {
        let staging = self.job.staging();
        let mut used = self.ledger.downloaded_in(self.month()).await?;
        let mut out = Vec::new();
        for (key, size) in self.remaining()? {
            if !states.get(&key).is_some_and(ArchiveState::is_readable) {
                continue;
            }
            let to_download =
                size.saturating_sub(staging::already_downloaded(&staging, key.0, key.1));
            if used.saturating_add(to_download) > self.job.monthly_budget {
                return Ok((out, true));
            }
            used = used.saturating_add(to_download);
            out.push((key, size));
        }
        Ok((out, false))
    }

    /// The streams this run can receive, in chain order: those not received yet whose
    /// every volume is staged or among `downloads`, up to the first that is not.
    fn receivable(&self, downloads: &[(VolumeKey, u64)]) -> Result<Vec<StreamToReceive>> {
        let last = self.job.chain.len().saturating_sub(1);
        let mut out = Vec::new();
        for (position, backup) in self.job.chain.iter().enumerate() {
            if self.job.is_received(*backup) {
                continue;
            }
            let manifest = self.entry(*backup)?.manifest.clone();
            let all_there = (0..manifest.volume_count).all(|index| {
                let key = (*backup, index);
                self.job.staged.contains_key(&key)
                    || downloads.iter().any(|(download, _)| *download == key)
            });
            if !all_there {
                break;
            }
            out.push(StreamToReceive {
                manifest,
                more_follow: position < last,
            });
        }
        Ok(out)
    }

    /// Downloads `downloads` in order, telling the receiver of each staged copy, and
    /// records the streams it reports received between two downloads. Returns whether the
    /// budget stopped it (the storage may have counted more than planned: retries).
    async fn download(
        &mut self,
        downloads: Vec<(VolumeKey, u64)>,
        mut beside: Beside<'_>,
    ) -> Result<bool> {
        let staging = self.job.staging();
        for ((backup, index), size) in downloads {
            // Frees the staging space of the streams received meanwhile.
            self.record_received(beside.received).await?;
            let month = self.month();
            let used = self.ledger.downloaded_in(month).await?;
            let have = staging::already_downloaded(&staging, backup, index);
            let to_download = size.saturating_sub(have);
            if used.saturating_add(to_download) > self.job.monthly_budget {
                return Ok(true);
            }
            self.make_room(to_download, &mut beside).await?;
            let key = self.volume_key(backup, index)?;
            self.progress
                .phase(&format!("downloading volume {index} of backup {backup}"));
            let mut meter = Meter::start(self.repository, &self.ledger, month);
            let outcome = staging::download_volume(
                self.repository,
                &key,
                size,
                &staging,
                (backup, index),
                &mut meter,
                self.progress,
            )
            .await;
            // Every byte the storage sent counts, the failed download's too.
            meter.settle().await?;
            let staged = outcome?;
            self.job.staged.insert((backup, index), staged);
            job::save(&self.files.file, &self.job).await?;
            beside.arrived.send_modify(|set| {
                set.insert((backup, index));
            });
            self.downloaded_volumes += 1;
            self.downloaded_bytes += to_download;
        }
        Ok(false)
    }

    /// Room in the staging directory for `needed` more bytes. When it is short, the
    /// staged copies the receive beside the downloads has read to their end are deleted
    /// — once it has read every staged copy of its stream that it can read before the
    /// next download, and only if that makes the room — as the planner's schedule
    /// assumes for a stream received as it downloads (one volume staged at a time). A
    /// receive that fails after that makes the next run download those volumes again.
    ///
    /// # Errors
    ///
    /// [`Error::StagingFull`] when that does not make room either.
    async fn make_room(&mut self, needed: u64, beside: &mut Beside<'_>) -> Result<()> {
        let staging = self.job.staging();
        loop {
            let free = staging::free_bytes(&staging).await?;
            if staging::fits(free, needed) {
                return Ok(());
            }
            // The stream being received: its staged copies up to its first volume that is
            // neither staged nor read can be read without a download.
            let read_already = beside.reads.borrow().clone();
            let current = self
                .job
                .chain
                .iter()
                .find(|backup| {
                    beside.receiving.contains(*backup) && !self.job.is_received(**backup)
                })
                .copied();
            let readable: Vec<VolumeKey> = current
                .map(|backup| {
                    (0u32..)
                        .map(|index| (backup, index))
                        .take_while(|key| {
                            self.job.staged.contains_key(key) || read_already.contains(key)
                        })
                        .filter(|key| self.job.staged.contains_key(key))
                        .collect()
                })
                .unwrap_or_default();
            // An error: the receiver ended — then what it read belongs to a receive that
            // is over, received (and recorded below) or failed (and kept for the next
            // run's receive), and nothing is deleted.
            let receiving = beside
                .reads
                .wait_for(|read| readable.iter().all(|key| read.contains(key)))
                .await
                .is_ok();
            let received_before = self.job.received.len();
            self.record_received(beside.received).await?;
            let recorded = self.job.received.len() > received_before;
            let read: Vec<VolumeKey> = if receiving {
                beside
                    .reads
                    .borrow()
                    .iter()
                    .filter(|key| self.job.staged.contains_key(key))
                    .copied()
                    .collect()
            } else {
                Vec::new()
            };
            // Deleted only when that makes the room: a paid-for download is never given
            // up for nothing.
            let freed: u64 = read
                .iter()
                .filter_map(|key| self.job.staged.get(key))
                .map(|staged| staged.ciphertext_len)
                .sum();
            if !read.is_empty() && staging::fits(free.saturating_add(freed), needed) {
                for key in read {
                    self.forget_staged(key, "remove a staged volume already received")
                        .await?;
                }
                // ZFS and BTRFS free deleted blocks at their next commit (seconds later):
                // the arithmetic is trusted rather than measured again.
                return Ok(());
            }
            if !recorded {
                break;
            }
        }
        staging::ensure_room(&staging, needed).await
    }

    /// Records the streams of the chain already in the target, in chain order: a run
    /// killed after a receive but before the job said so finds them there, and neither
    /// downloads nor receives them again.
    async fn record_already_received(&mut self) -> Result<()> {
        let target = target_of(&self.job)?;
        let present = match self.source.list_snapshots(&target).await {
            Ok(snapshots) => snapshots,
            Err(zib_snapshot_source::Error::DatasetNotFound { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        for backup in self.job.chain.clone() {
            if self.job.is_received(backup) {
                continue;
            }
            let identity = &self.entry(backup)?.manifest.snapshot_identity;
            if !present
                .iter()
                .any(|snapshot| snapshot.identity == *identity)
            {
                break;
            }
            self.record_one(backup).await?;
        }
        Ok(())
    }

    /// Removes the staged copy of `key` from the job, then from the disk (in that order:
    /// a file the job does not list is verified again before it is used).
    async fn forget_staged(&mut self, key: VolumeKey, action: &'static str) -> Result<()> {
        self.job.staged.remove(&key);
        job::save(&self.files.file, &self.job).await?;
        let path = crate::download::staged_volume(&self.job.staging(), key.0, key.1);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::LocalState {
                path,
                action,
                source,
            }),
        }
    }

    /// Writes into the job the streams the receiver reported received, and removes their
    /// staged copies.
    async fn record_received(&mut self, received: &mut Received) -> Result<()> {
        while let Ok((backup, recorded)) = received.try_recv() {
            self.record_one(backup).await?;
            // The receiver may be gone (its error ends the run too).
            let _ = recorded.send(());
        }
        Ok(())
    }

    /// [`Self::record_received`] for every stream the receiver reports until it ends.
    async fn record_until_closed(&mut self, received: &mut Received) -> Result<()> {
        while let Some((backup, recorded)) = received.recv().await {
            self.record_one(backup).await?;
            let _ = recorded.send(());
        }
        Ok(())
    }

    /// Writes into the job that `backup`'s stream is in the target, and removes its
    /// staged copies.
    async fn record_one(&mut self, backup: BackupId) -> Result<()> {
        let manifest = self.entry(backup)?.manifest.clone();
        if self.job.chain.first() == Some(&backup) {
            self.job.target_created = true;
        }
        self.job.received.push(backup);
        for index in 0..manifest.volume_count {
            self.job.staged.remove(&(backup, index));
        }
        job::save(&self.files.file, &self.job).await?;
        staging::remove_stream(&self.job.staging(), backup, manifest.volume_count).await;
        self.received.push(format!(
            "{}@{}",
            manifest.dataset_name, manifest.snapshot_name
        ));
        Ok(())
    }

    /// Forgets and removes the staged copy that `error` (a
    /// [`Error::StagedVolumeDamaged`]) names, so the next run downloads it again.
    async fn drop_damaged(&mut self, error: &Error) -> Result<()> {
        let Error::StagedVolumeDamaged { path, .. } = error else {
            return Ok(());
        };
        let staging = self.job.staging();
        let damaged = self.job.staged.keys().copied().find(|(backup, index)| {
            crate::download::staged_volume(&staging, *backup, *index) == *path
        });
        match damaged {
            Some(key) => {
                self.forget_staged(key, "remove a damaged staged volume")
                    .await
            }
            None => Ok(()),
        }
    }

    async fn status(
        &self,
        state: RestoreState,
        plan: Option<RestorePlan>,
    ) -> Result<RestoreStatus> {
        Ok(RestoreStatus {
            job: view(&self.job)?,
            restores_requested: self.requested,
            volumes_downloaded: self.downloaded_volumes,
            bytes_downloaded: self.downloaded_bytes,
            received: self.received.clone(),
            month_downloaded: self.ledger.downloaded_in(self.month()).await?,
            state,
            plan,
        })
    }

    async fn finish(mut self) -> Result<RestoreStatus> {
        self.job.finished_at = Some(self.now);
        job::save(&self.files.file, &self.job).await?;
        let staging = self.job.staging();
        let _ = tokio::fs::remove_dir_all(&staging).await;
        self.progress.phase("restore complete");
        self.status(RestoreState::Done, None).await
    }

    /// What the job waits for, with the schedule of what is left.
    async fn waiting(
        self,
        before: &BTreeMap<VolumeKey, ArchiveState>,
        budget_hit: bool,
    ) -> Result<RestoreStatus> {
        // The bucket as it is after this run's requests.
        let states = self
            .volume_states()
            .await
            .unwrap_or_else(|_| before.clone());
        let plan = self.plan(&states).await?;
        let thawing: Vec<i64> = states
            .iter()
            .filter(|(_, state)| matches!(state, ArchiveState::RestoreInProgress))
            .map(|(key, _)| self.job.requested.get(key).copied().unwrap_or(self.now))
            .collect();
        let typical = i64::from(self.job.prices().retrieval(self.job.tier).typical_hours) * 3600;
        let used = self.ledger.downloaded_in(self.month()).await?;
        let state = if budget_hit {
            RestoreState::Waiting {
                reason: WaitReason::Budget {
                    downloaded: used,
                    budget: self.job.monthly_budget,
                },
                until: Some(system_time(self.month().next().start().0)),
            }
        } else if let Some(oldest) = thawing.iter().min() {
            RestoreState::Waiting {
                reason: WaitReason::Thaw {
                    volumes: thawing.len(),
                    since: system_time(*oldest),
                },
                until: thawing
                    .iter()
                    .max()
                    .map(|latest| system_time(latest + typical)),
            }
        } else {
            let next = plan.batches.iter().find_map(|batch| {
                batch
                    .waves
                    .iter()
                    .map(|wave| wave.request_at.0)
                    .find(|at| *at > self.now)
                    .map(|at| (batch.month, at))
            });
            // A wave in a later month waits because this month's budget holds no more
            // (the planner fills each month up to it): say so, with the figures.
            let reason = match next {
                Some((month, _)) if month > self.month() => WaitReason::Budget {
                    downloaded: used,
                    budget: self.job.monthly_budget,
                },
                _ => WaitReason::NextWave,
            };
            RestoreState::Waiting {
                reason,
                until: next.map(|(_, at)| system_time(at)),
            }
        };
        self.status(state, Some(plan)).await
    }
}

/// Each stream the receiver received, with the answer it waits for: the job records it.
type Received = mpsc::UnboundedReceiver<(BackupId, oneshot::Sender<()>)>;

/// What the downloads share with the receive beside them.
struct Beside<'r> {
    /// Told of each volume staged.
    arrived: watch::Sender<BTreeSet<VolumeKey>>,
    /// The staged copies the receiver read to their end; closed once it ended.
    reads: watch::Receiver<BTreeSet<VolumeKey>>,
    /// The streams it receives.
    receiving: BTreeSet<BackupId>,
    /// The streams it received.
    received: &'r mut Received,
}

/// A stream the receiver is to receive.
struct StreamToReceive {
    manifest: ManifestRecord,
    /// A later stream of the chain follows it.
    more_follow: bool,
}

/// What receives the streams beside the downloads: nothing of the job it may change —
/// it reports each stream received, and the run writes that into the job.
struct Receiver<'a> {
    repository: &'a Arc<Repo>,
    source: &'a dyn SnapshotSource,
    progress: &'a dyn Progress,
    target: DatasetName,
    staged: StagedVolumes,
}

impl Receiver<'_> {
    /// Receives `streams` in order, reporting each on `done`. Stops quietly where a
    /// stream's volume was not downloaded after all (the budget, a failed download: the
    /// run reports that), and with the error of a receive that failed otherwise — a
    /// failure keeps the staged volumes, and the next run receives them again without
    /// paying for their download again (all but a damaged one).
    async fn receive(
        self,
        streams: Vec<StreamToReceive>,
        done: mpsc::UnboundedSender<(BackupId, oneshot::Sender<()>)>,
    ) -> Result<()> {
        for stream in streams {
            match self.receive_one(&stream).await {
                Ok(()) => {
                    // None of its volumes is needed any more, read or not.
                    self.staged
                        .mark_read(stream.manifest.backup_id, stream.manifest.volume_count);
                    // The next receive starts once the job says this stream is in (between
                    // two downloads, or at once when they are over): a run killed at any
                    // instant leaves at most the stream in receive unrecorded.
                    let (answer, recorded) = oneshot::channel();
                    // The run holds the other end until this ends: the send cannot fail.
                    let _ = done.send((stream.manifest.backup_id, answer));
                    if recorded.await.is_err() {
                        // The run stopped on an error of its own, which it reports.
                        return Ok(());
                    }
                }
                Err(_) if self.staged.gave_up() => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn receive_one(&self, stream: &StreamToReceive) -> Result<()> {
        let manifest = &stream.manifest;
        // No receive is started before there is something to give it. (A stream already
        // in the target was recorded at the run's start: it is not among these.)
        self.staged.wait_for(manifest.backup_id, 0).await?;
        self.progress.phase(&format!(
            "receiving {}@{}",
            manifest.dataset_name, manifest.snapshot_name
        ));
        // A staged copy found damaged as the stream is read: kept aside, because the
        // receive's own error only says that its input ended.
        let damaged: Arc<std::sync::Mutex<Option<Error>>> = Arc::default();
        let bytes = {
            let damaged = damaged.clone();
            backup_stream(
                self.repository.clone(),
                manifest.clone(),
                Volumes::Staged(self.staged.clone()),
            )
            .map(move |item| {
                item.map_err(|error| match error {
                    Error::StagedVolumeDamaged { .. } => {
                        let io = std::io::Error::other(error.to_string());
                        // A std Mutex: nothing is awaited while it is held.
                        if let Ok(mut slot) = damaged.lock() {
                            slot.get_or_insert(error);
                        }
                        io
                    }
                    other => std::io::Error::other(other),
                })
            })
            .boxed()
        };
        let received = self
            .source
            .receive(
                &self.target,
                bytes,
                &ReceiveOptions::more_follow(stream.more_follow),
            )
            .await;
        if let Some(error) = damaged.lock().ok().and_then(|mut slot| slot.take()) {
            return Err(error);
        }
        let received = received?;
        if received.identity != manifest.snapshot_identity {
            return Err(Error::ReceivedIdentity {
                target: self.target.to_string(),
                expected: manifest.snapshot_identity.to_string(),
                found: received.identity.to_string(),
            });
        }
        Ok(())
    }
}

/// The storage's byte count around one download — what it cost, retries included —
/// written to the ledger every [`LEDGER_STEP`] bytes and at the end.
pub(crate) struct Meter<'a> {
    counter: zib_storage_backend::counting::ByteCounter,
    ledger: &'a Ledger,
    month: Month,
    start: u64,
    /// Bytes of this download already written to the ledger.
    counted: u64,
}

impl<'a> Meter<'a> {
    fn start(repository: &Repo, ledger: &'a Ledger, month: Month) -> Self {
        let counter = repository.downloaded.clone();
        Self {
            start: counter.get(),
            counter,
            ledger,
            month,
            counted: 0,
        }
    }

    fn uncounted(&self) -> u64 {
        self.counter
            .get()
            .saturating_sub(self.start)
            .saturating_sub(self.counted)
    }

    /// Writes the ledger when enough is uncounted (a run killed now loses less than a
    /// step's count).
    pub(crate) async fn checkpoint(&mut self) -> Result<()> {
        if self.uncounted() >= LEDGER_STEP {
            self.settle().await?;
        }
        Ok(())
    }

    /// Writes everything not counted yet.
    pub(crate) async fn settle(&mut self) -> Result<()> {
        let rest = self.uncounted();
        if rest > 0 {
            self.ledger.add(self.month, rest).await?;
            self.counted += rest;
        }
        Ok(())
    }
}
