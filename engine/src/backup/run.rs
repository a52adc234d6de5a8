//! One backup run, phase by phase (see the [module docs](super)).

use zib_planner::{
    decide_backup, plan_consolidation, BackupDecision, ConsolidationMode, IncrementalEstimate,
    LocalSnapshot, PlannedBackup, Policy, UnixTime,
};
use zib_snapshot_source::{
    Capabilities, DatasetName, Protection, SendBase, SendRequest, SnapshotIdentity, SnapshotInfo,
    SnapshotName, SnapshotSource, SourceKind,
};

use super::commit::{commit_manifest, manifest_for, SizeFacts};
use super::prune::{prune_after_commit, Committed, PruneReport};
use super::recover::{open_journal, reap_pending_snapshot, resumable, Found, Resumable};
use super::{
    created_marker, zib_snapshot_name, BackupOptions, BackupOutcome, BackupPreview,
    CommittedBackup, Intent, SnapshotChoice,
};
use crate::catalog::planning::{
    engine_backup_id, planner_backup_id, planner_catalog, planner_snapshots, snapshot_id,
};
use crate::catalog::{read_catalog, Catalog, CatalogBackup};
use crate::clock::unix_seconds;
use crate::context::Repo;
use crate::deletion::{delete_due, DeletionOptions, DeletionReport};
use crate::error::{Error, Result};
use crate::format::records::{BackupKind, ManifestRecord, ReplacedIncremental, SendFlagBits};
use crate::ids::{BackupId, DatasetId};
use crate::progress::Progress;
use crate::state::journal::{Journal, JournalFile, JournalSnapshot};
use crate::state::lock::{lock_dataset, DatasetLock};
use crate::state::{clear_pending_snapshot, record_pending_snapshot, DatasetFiles};
use crate::upload::parts::PartCheck;
use crate::upload::recorder::{Recorder, Transferred};
use crate::upload::shape::PartCutting;
use crate::upload::{upload_journalled, Attempt};

/// How often a changed send stream is read again before the backup gives up.
const MAX_STREAM_RESTARTS: u32 = 3;

/// A backup run and what it found: every fact about the source and the bucket is asked
/// once, in [`gather`](Self::gather), and used by the later phases.
pub(super) struct BackupRun<'a> {
    repository: &'a Repo,
    source: &'a dyn SnapshotSource,
    dataset: &'a DatasetName,
    options: &'a BackupOptions,
    intent: Intent,
    progress: &'a dyn Progress,
    files: DatasetFiles,
    kind: SourceKind,
    capabilities: Capabilities,
    catalog: Catalog,
    snapshots: Vec<SnapshotInfo>,
    /// OpenZFS bookmarks of snapshots destroyed since they were backed up: still good
    /// incremental bases, so a snapshot rotation tool does not force a new full.
    bookmarks: Vec<SnapshotInfo>,
    /// Held until the run ends (dropping it releases the flock); `None` for a preview,
    /// which writes nothing and so needs no lock.
    _lock: Option<DatasetLock>,
}

/// What the planner decided for a new backup.
pub(super) enum Planned {
    UpToDate(Box<BackupDecision>),
    Send(Box<SendPlan>),
}

/// A backup about to be sent.
pub(super) struct SendPlan {
    decision: BackupDecision,
    dataset_id: DatasetId,
    kind: BackupKind,
    request: SendRequest,
    /// The source's estimate of the stream's size, for progress.
    expected_len: Option<u64>,
    /// What the manifest records about sizes.
    sizes: SizeFacts,
    warnings: Vec<String>,
}

impl<'a> BackupRun<'a> {
    /// Phase 1: the source's capabilities (which also proves the dataset exists, before
    /// anything is written to the state directory), the dataset's lock, the catalog, the
    /// local snapshots and bookmarks.
    pub(super) async fn gather(
        repository: &'a Repo,
        source: &'a dyn SnapshotSource,
        dataset: &'a DatasetName,
        options: &'a BackupOptions,
        intent: Intent,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        Self::gather_with(repository, source, dataset, options, intent, progress, true).await
    }

    /// Phase 1 for a [preview](Self::preview): the same facts, without the lock (a
    /// preview writes nothing, and must not fail because a backup is running).
    pub(super) async fn gather_unlocked(
        repository: &'a Repo,
        source: &'a dyn SnapshotSource,
        dataset: &'a DatasetName,
        options: &'a BackupOptions,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        Self::gather_with(
            repository,
            source,
            dataset,
            options,
            Intent::BACKUP,
            progress,
            false,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)] // the two public entries above name them all
    async fn gather_with(
        repository: &'a Repo,
        source: &'a dyn SnapshotSource,
        dataset: &'a DatasetName,
        options: &'a BackupOptions,
        intent: Intent,
        progress: &'a dyn Progress,
        lock: bool,
    ) -> Result<Self> {
        let capabilities = source.capabilities(dataset).await?;
        let files = repository
            .state()
            .dataset(repository.id(), dataset.as_str());
        let lock = if lock {
            Some(lock_dataset(&files.lock, dataset.as_str(), options.wait_for_lock).await?)
        } else {
            None
        };
        progress.phase("reading the catalog");
        let catalog = read_catalog(repository).await?;
        let snapshots = source.list_snapshots(dataset).await?;
        let bookmarks = if capabilities.bookmarks {
            let bookmarks = source.list_bookmarks(dataset).await?;
            bookmarks
                .into_iter()
                .filter(|bookmark| {
                    !snapshots
                        .iter()
                        .any(|snapshot| snapshot.identity == bookmark.identity)
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            repository,
            source,
            dataset,
            options,
            intent,
            progress,
            files,
            kind: source.kind(),
            capabilities,
            catalog,
            snapshots,
            bookmarks,
            _lock: lock,
        })
    }

    /// Phase 2: deals with what an interrupted run left. Returns the outcome when the
    /// interrupted backup was continued to its commit; `None` when a new backup is to be
    /// planned.
    pub(super) async fn recover(&mut self) -> Result<Option<BackupOutcome>> {
        let journal = open_journal(&self.files.journal, self.repository.clock()).await?;
        reap_pending_snapshot(
            self.source,
            self.dataset,
            &self.files.pending,
            &created_marker(self.repository),
            journal.as_ref(),
            &self.catalog,
            &mut self.snapshots,
        )
        .await?;
        let Some(journal) = journal else {
            return Ok(None);
        };
        let file = JournalFile::new(self.files.journal.clone(), journal);
        let found = Found {
            catalog: &self.catalog,
            snapshots: &self.snapshots,
            bookmarks: &self.bookmarks,
            kind: self.kind,
        };
        match resumable(file.journal(), &found, &self.options.snapshot) {
            Resumable::Resume(target) => self.resume(file, &target).await.map(Some),
            Resumable::Committed => {
                tracing::info!(journal = %file.path().display(), "the journalled backup committed before its journal was deleted");
                file.remove().await?;
                // The run stopped between the commit and the protection of the base.
                let target = self
                    .snapshots
                    .iter()
                    .find(|snapshot| snapshot.name.as_str() == file.journal().target.name);
                if let Some(target) = target {
                    if let Err(error) = self.source.protect(self.dataset, &target.name).await {
                        tracing::info!(%error, "protecting the committed backup's snapshot as the next base");
                    }
                }
                Ok(None)
            }
            Resumable::No(reason) => {
                tracing::warn!(
                    journal = %file.path().display(),
                    "the interrupted backup of {} cannot be continued ({reason}); \
                     discarding its uploads and planning afresh",
                    self.dataset
                );
                // A discard that fails (a bucket policy that denies deletes, say) must
                // not stop every later run: the journal goes aside, and the leftovers
                // to the age-based clean-up.
                let mut recorder = Recorder::new(file, self.options.shape.parts_in_flight);
                if let Err(error) = recorder.abandon(self.repository).await {
                    let now = unix_seconds(self.repository.clock());
                    let aside = crate::state::off_the_runtime(
                        &self.files.journal,
                        "move a resume journal aside",
                        move |path| crate::state::set_aside(path, "abandoned", now),
                    )
                    .await?;
                    tracing::warn!(
                        %error,
                        moved_to = %aside.display(),
                        "could not discard the uploads of the interrupted backup; its journal \
                         was moved aside and `zib cleanup` removes its uploads once old"
                    );
                }
                Ok(None)
            }
            Resumable::OtherSnapshot { asked } => {
                let journal = file.journal();
                Err(Error::UnfinishedBackup {
                    dataset: self.dataset.to_string(),
                    backup: journal.backup_id,
                    snapshot: journal.target.name.clone(),
                    asked,
                    journal: file.path().to_owned(),
                })
            }
        }
    }

    /// Continues the journalled backup: same backup id, kind, base, flags and shape.
    async fn resume(&mut self, file: JournalFile, target: &SnapshotInfo) -> Result<BackupOutcome> {
        let journal = file.journal().clone();
        tracing::info!(
            backup = %journal.backup_id,
            completed_volumes = journal.completed_volumes(),
            confirmed_parts = journal.confirmed_parts(),
            "continuing an interrupted backup"
        );
        self.progress.phase("continuing an interrupted backup");
        let request = match &journal.kind {
            BackupKind::Full => SendRequest::full(self.dataset.clone(), target.name.clone()),
            BackupKind::Incremental { base_identity, .. } => {
                let (_, base) =
                    self.find_base(base_identity)?
                        .ok_or_else(|| Error::SnapshotVanished {
                            dataset: self.dataset.to_string(),
                            snapshot: format!(
                                "base of the interrupted backup {}",
                                journal.backup_id
                            ),
                        })?;
                SendRequest::incremental(self.dataset.clone(), base, target.name.clone())
            }
        }
        .with_flags(journal.send_flags.flags());
        let expected_len = self.estimate(&request).await;
        let decision = BackupDecision {
            snapshot: snapshot_id(&journal.target.identity),
            plan: match &journal.kind {
                BackupKind::Full => PlannedBackup::Full,
                BackupKind::Incremental {
                    base_backup,
                    base_identity,
                    ..
                } => PlannedBackup::Incremental {
                    base_backup: planner_backup_id(*base_backup),
                    base_snapshot: snapshot_id(base_identity),
                },
            },
            reason: format!(
                "continuing backup {} of {}@{}, which an earlier run left unfinished",
                journal.backup_id, self.dataset, target.name
            ),
            estimated_bytes: expected_len,
            cost: zib_planner::Cost::default(),
            consolidation: None,
        };
        let sizes = self
            .resumed_sizes(target, &journal.kind, journal.dataset_id)
            .await;
        let plan = SendPlan {
            decision,
            dataset_id: journal.dataset_id,
            kind: journal.kind.clone(),
            request,
            expected_len,
            sizes,
            warnings: Vec::new(),
        };
        self.send_commit_and_protect(file, target, plan, true).await
    }

    /// Phase 3: the snapshot to back up — an existing one, or a new one recorded as
    /// being created before it is (a run killed in between leaves the record, and the
    /// next run removes the snapshot).
    pub(super) async fn choose_target(&mut self) -> Result<SnapshotInfo> {
        match &self.options.snapshot {
            SnapshotChoice::Existing(name) => self
                .snapshots
                .iter()
                .find(|snapshot| &snapshot.name == name)
                .cloned()
                .ok_or_else(|| Error::SnapshotNotFound {
                    dataset: self.dataset.to_string(),
                    snapshot: name.to_string(),
                }),
            SnapshotChoice::Create => {
                self.progress.phase("creating a snapshot");
                let name = self.snapshot_name(
                    &self.free_zib_snapshot_name(unix_seconds(self.repository.clock())),
                )?;
                record_pending_snapshot(&self.files.pending, name.as_str()).await?;
                let created = self
                    .source
                    .create_snapshot(self.dataset, &name, Some(&created_marker(self.repository)))
                    .await?;
                self.snapshots.push(created.clone());
                Ok(created)
            }
        }
    }

    /// Phase 4: the planner's decision for `target`, with the source's size estimates.
    pub(super) async fn plan(&mut self, target: &SnapshotInfo) -> Result<Planned> {
        let dataset_id = match self.find_dataset() {
            Some(id) => id,
            None => DatasetId::generate(&ring::rand::SystemRandom::new())?,
        };
        let backups = self.catalog.backups(dataset_id);
        let planner_catalog = planner_catalog(backups)?;
        let policy = self.policy();
        let target_id = snapshot_id(&target.identity);
        let now = UnixTime(unix_seconds(self.repository.clock()));
        let decide = |local: &[LocalSnapshot]| {
            decide_backup(
                &planner_catalog,
                local,
                Some(&target_id),
                &policy,
                &self.options.prices,
                now,
            )
        };
        // A first plan names the base; the source's size estimates for the full and for
        // the incremental from that base then let the planner choose between them (a full
        // can be cheaper than a large incremental, and starts a shorter chain).
        let mut local = planner_snapshots(self.dataset, &self.snapshots, &self.bookmarks);
        let mut decision = decide(&local)?;
        if matches!(decision.plan, PlannedBackup::UpToDate) {
            return Ok(Planned::UpToDate(Box::new(decision)));
        }
        let (full_bytes, incremental) = self.size_estimates(target, &decision.plan).await?;
        // The incremental a full would replace: what was written since the chain's last
        // snapshot, recorded in a full's manifest so that consolidation can later measure
        // how much of the old restore points' data is gone (docs/FORMAT.md).
        let replaceable = match (&decision.plan, &incremental) {
            (
                PlannedBackup::Incremental {
                    base_backup,
                    base_snapshot,
                },
                Some(estimate),
            ) if estimate.base == *base_snapshot => Some(ReplacedIncremental {
                base_backup: engine_backup_id(base_backup)?,
                estimated_bytes: estimate.bytes,
            }),
            _ => None,
        };
        if let Some(snapshot) = local.iter_mut().find(|snapshot| snapshot.id == target_id) {
            snapshot.full_bytes = full_bytes;
            snapshot.incremental = incremental.clone();
        }
        decision = decide(&local)?;
        if self.intent.fresh_full {
            decision = self.fresh_full(decision, &planner_catalog, &local, &policy, now)?;
        }
        self.force_full(&mut decision);

        let mut warnings = Vec::new();
        let (kind, request, expected_len) = match &decision.plan {
            PlannedBackup::UpToDate => return Ok(Planned::UpToDate(Box::new(decision))),
            PlannedBackup::Full => (
                BackupKind::Full,
                SendRequest::full(self.dataset.clone(), target.name.clone()),
                full_bytes,
            ),
            PlannedBackup::Incremental {
                base_backup,
                base_snapshot,
            } => {
                let base_id = engine_backup_id(base_backup)?;
                let base_manifest = backups
                    .iter()
                    .find(|backup| backup.manifest.backup_id == base_id)
                    .map(|backup| &backup.manifest)
                    .ok_or_else(|| {
                        Error::Internal(format!(
                            "the planner chose base backup {base_id}, which the catalog does not hold"
                        ))
                    })?;
                let (base_local, base) = self
                    .find_base(&base_manifest.snapshot_identity)?
                    .ok_or_else(|| Error::SnapshotVanished {
                        dataset: self.dataset.to_string(),
                        snapshot: base_snapshot.0.clone(),
                    })?;
                if base_manifest.send_flags != SendFlagBits::from(self.options.send_flags) {
                    warnings.push(format!(
                        "the send flags changed since backup {base_id}; sending a full stream (an \
                         incremental with other flags may not be receivable on top of the chain)"
                    ));
                    (
                        BackupKind::Full,
                        SendRequest::full(self.dataset.clone(), target.name.clone()),
                        full_bytes,
                    )
                } else {
                    let expected = incremental
                        .as_ref()
                        .filter(|estimate| estimate.base == *base_snapshot)
                        .map(|estimate| estimate.bytes);
                    (
                        BackupKind::Incremental {
                            base_backup: base_id,
                            base_snapshot_name: base_local.name.to_string(),
                            base_identity: base_manifest.snapshot_identity,
                        },
                        SendRequest::incremental(self.dataset.clone(), base, target.name.clone()),
                        expected,
                    )
                }
            }
        };
        let sizes = SizeFacts {
            full_estimate: full_bytes,
            replaced_incremental: match kind {
                BackupKind::Full => replaceable,
                BackupKind::Incremental { .. } => None,
            },
        };
        Ok(Planned::Send(Box::new(SendPlan {
            decision,
            dataset_id,
            kind,
            request: request.with_flags(self.options.send_flags),
            expected_len,
            sizes,
            warnings,
        })))
    }

    /// The policy the planner is given: the options' policy, priced with the volume shape
    /// that is really uploaded.
    fn policy(&self) -> Policy {
        let mut policy = self.options.policy.clone();
        policy.volume_size = self.options.shape.volume_plaintext_len;
        policy.part_size = self.options.shape.part_len;
        policy
    }

    /// An incremental turned into a full when the options ask for one.
    /// The name of a snapshot zib takes now, unused by the dataset's snapshots and by its
    /// backups: a snapshot pruned here keeps its name in its chain, and a chain naming
    /// one snapshot twice cannot be received (the second receive finds the name taken).
    /// That happens when a clock steps back, or two backups fall in one second after a
    /// prune.
    fn free_zib_snapshot_name(&self, unix_seconds: i64) -> String {
        let backed_up = self
            .find_dataset()
            .map_or(&[][..], |id| self.catalog.backups(id));
        zib_snapshot_name(unix_seconds, |name| {
            self.snapshots
                .iter()
                .any(|snapshot| snapshot.name.as_str() == name)
                || backed_up
                    .iter()
                    .any(|backup| backup.manifest.snapshot_name == name)
        })
    }

    fn force_full(&self, decision: &mut BackupDecision) {
        if self.options.full && matches!(decision.plan, PlannedBackup::Incremental { .. }) {
            decision.plan = PlannedBackup::Full;
            decision.reason = format!(
                "a full backup was asked for (the planner would have sent an incremental: {})",
                decision.reason
            );
            decision.consolidation = None;
        }
    }

    /// What a run would do now — phases 2 to 4 without their effects: an unfinished
    /// backup is reported, not continued; a new snapshot is named, not created (the
    /// planner sees it as the newest local snapshot, of unknown size); nothing is written
    /// to the state directory or the bucket.
    pub(super) async fn preview(&mut self) -> Result<BackupPreview> {
        let unfinished_backup = tokio::fs::try_exists(&self.files.journal)
            .await
            .unwrap_or(false);
        let dataset_id = self.find_dataset();
        let (snapshot, new_snapshot, decision) = match &self.options.snapshot {
            SnapshotChoice::Existing(name) => {
                let target = self
                    .snapshots
                    .iter()
                    .find(|snapshot| &snapshot.name == name)
                    .cloned()
                    .ok_or_else(|| Error::SnapshotNotFound {
                        dataset: self.dataset.to_string(),
                        snapshot: name.to_string(),
                    })?;
                let decision = match self.plan(&target).await? {
                    Planned::UpToDate(decision) => *decision,
                    Planned::Send(plan) => plan.decision,
                };
                (target.name.to_string(), false, decision)
            }
            SnapshotChoice::Create => {
                let now = unix_seconds(self.repository.clock());
                let name = self.snapshot_name(&self.free_zib_snapshot_name(now))?;
                let backups = dataset_id.map_or(&[][..], |id| self.catalog.backups(id));
                let planner_catalog = planner_catalog(backups)?;
                let mut local = planner_snapshots(self.dataset, &self.snapshots, &self.bookmarks);
                let created = local
                    .last()
                    .map_or(now, |newest| now.max(newest.created.0.saturating_add(1)));
                let new_id =
                    zib_planner::SnapshotId(format!("{}@{name} (to be created)", self.dataset));
                local.push(LocalSnapshot {
                    id: new_id.clone(),
                    name: format!("{}@{name}", self.dataset),
                    created: UnixTime(created),
                    full_bytes: None,
                    incremental: None,
                });
                let decision = decide_backup(
                    &planner_catalog,
                    &local,
                    Some(&new_id),
                    &self.policy(),
                    &self.options.prices,
                    UnixTime(now),
                )?;
                let mut decision = decision;
                self.force_full(&mut decision);
                (name.to_string(), true, decision)
            }
        };
        Ok(BackupPreview {
            dataset_id,
            snapshot,
            new_snapshot,
            decision,
            unfinished_backup,
        })
    }

    /// Phase 5: the journal of the new backup, written before any upload starts, so every
    /// upload is findable locally.
    pub(super) async fn start(
        &self,
        target: &SnapshotInfo,
        plan: &SendPlan,
    ) -> Result<JournalFile> {
        let backup_id = BackupId::generate(&ring::rand::SystemRandom::new())?;
        let file = JournalFile::new(
            self.files.journal.clone(),
            Journal {
                repository_id: self.repository.id(),
                dataset_name: self.dataset.to_string(),
                dataset_id: plan.dataset_id,
                backup_id,
                source: self.kind,
                target: JournalSnapshot {
                    name: target.name.to_string(),
                    identity: target.identity,
                },
                snapshot_created_by_zib: matches!(self.options.snapshot, SnapshotChoice::Create),
                kind: plan.kind.clone(),
                send_flags: self.options.send_flags.into(),
                shape: self.options.shape,
                volumes: Vec::new(),
                cutting: PartCutting::FinalSegmentInLastPart,
                part_check: PartCheck::SegmentTags,
            },
        );
        file.save().await?;
        clear_pending_snapshot(&self.files.pending).await?;
        Ok(file)
    }

    /// Phases 6 and 7: sends and commits the journalled backup, then protects its
    /// snapshot as the next base and prunes what it supersedes.
    pub(super) async fn send_commit_and_protect(
        &self,
        file: JournalFile,
        target: &SnapshotInfo,
        plan: SendPlan,
        resumed: bool,
    ) -> Result<BackupOutcome> {
        let (manifest, transferred) = self
            .send_and_commit(file, &plan.request, target, plan.expected_len, plan.sizes)
            .await?;
        let mut warnings = plan.warnings;
        let earlier_backups = self.catalog.backups(plan.dataset_id);
        let (protection, pruned) = self
            .after_commit(target, earlier_backups, &mut warnings)
            .await;
        let deletions = self.delete_superseded(&manifest).await;
        Ok(BackupOutcome::Committed(Box::new(CommittedBackup {
            manifest,
            decision: plan.decision,
            resumed,
            transfer: transferred.into(),
            protection,
            pruned,
            deletions,
            warnings,
        })))
    }

    /// Sends the journalled backup's stream (again from the start if it changed under a
    /// resumed upload), commits its manifest, then deletes the journal.
    async fn send_and_commit(
        &self,
        file: JournalFile,
        request: &SendRequest,
        target: &SnapshotInfo,
        expected_len: Option<u64>,
        sizes: SizeFacts,
    ) -> Result<(ManifestRecord, Transferred)> {
        let mut recorder = Recorder::new(file, self.options.shape.parts_in_flight);
        let mut restarts = 0;
        self.progress.phase("sending");
        let uploaded = loop {
            let stream = self.source.send(request).await?;
            match upload_journalled(
                self.repository,
                stream,
                self.progress,
                expected_len,
                &mut recorder,
            )
            .await?
            {
                Attempt::Uploaded(uploaded) => break uploaded,
                Attempt::StreamChanged { volume } => {
                    restarts += 1;
                    if restarts > MAX_STREAM_RESTARTS {
                        // The journal stays if the discard fails: the next run tries again.
                        if let Err(error) = recorder.abandon(self.repository).await {
                            tracing::warn!(%error, "could not discard the uploads of an unstable stream");
                        }
                        return Err(Error::StreamUnstable {
                            snapshot: format!("{}@{}", request.dataset, request.snapshot),
                            attempts: restarts,
                        });
                    }
                    self.progress.phase(&format!(
                        "the send stream changed at volume {volume}; reading it again"
                    ));
                }
            }
        };
        let transferred = recorder.transferred();
        let file = recorder.into_journal_file();
        // Strictly after the dataset's newest backup, even within the same second as it
        // (a consolidation's full followed at once by a backup): the catalog orders a
        // dataset's backups by this time, and the newest is the one restored by default.
        let newest_committed = self
            .catalog
            .backups(file.journal().dataset_id)
            .iter()
            .map(|backup| backup.manifest.committed_at)
            .max();
        let committed_at = match newest_committed {
            Some(newest) => unix_seconds(self.repository.clock()).max(newest.saturating_add(1)),
            None => unix_seconds(self.repository.clock()),
        };
        let manifest = manifest_for(
            file.journal(),
            &uploaded,
            target.created_at.unix_timestamp(),
            committed_at,
            sizes,
        );
        self.progress.phase("committing");
        commit_manifest(self.repository, &manifest).await?;
        // After the commit: a run killed in between finds the manifest and drops the journal.
        if let Err(error) = file.remove().await {
            tracing::warn!(%error, "the backup committed but its journal could not be deleted; the next run will");
        }
        Ok((manifest, transferred))
    }

    /// Phase 7: protects the sent snapshot as the next incremental base, then prunes
    /// what it supersedes.
    async fn after_commit(
        &self,
        target: &SnapshotInfo,
        earlier_backups: &[CatalogBackup],
        warnings: &mut Vec<String>,
    ) -> (Option<Protection>, PruneReport) {
        let protection_available = self.capabilities.protection_available();
        let protection = if protection_available {
            match self.source.protect(self.dataset, &target.name).await {
                Ok(protection) => Some(protection),
                Err(error) => {
                    warnings.push(format!(
                        "the backup committed, but {}@{} could not be protected as the next \
                         incremental base ({error}); if it is destroyed, the next backup will be a full",
                        self.dataset, target.name
                    ));
                    None
                }
            }
        } else {
            warnings.push(format!(
                "{}@{} cannot be protected (the file system has no holds or bookmarks): keep \
                 that snapshot, or the next backup will be a full",
                self.dataset, target.name
            ));
            None
        };
        let pruned = prune_after_commit(
            self.source,
            Committed {
                dataset: self.dataset,
                target,
                protection: protection.as_ref(),
                protection_available,
                earlier_backups,
                local: &self.snapshots,
                bookmarks: &self.bookmarks,
                marker: &created_marker(self.repository),
            },
            self.options.prune_created_snapshots,
        )
        .await;
        (protection, pruned)
    }

    /// A consolidation's fresh full: the planner's decision turned into a full when it
    /// was an incremental (the caller asked for a full whatever the planner recommends),
    /// with the planner's evaluation of that consolidation attached for the report.
    fn fresh_full(
        &self,
        decision: BackupDecision,
        catalog: &zib_planner::Catalog,
        local: &[LocalSnapshot],
        policy: &zib_planner::Policy,
        now: UnixTime,
    ) -> Result<BackupDecision> {
        if !matches!(decision.plan, PlannedBackup::Incremental { .. }) {
            return Ok(decision);
        }
        let snapshot = local
            .iter()
            .find(|snapshot| snapshot.id == decision.snapshot)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "the planner decided for snapshot {}, which is not among the local snapshots",
                    decision.snapshot
                ))
            })?;
        let evaluation_policy = zib_planner::Policy {
            consolidation: ConsolidationMode::Auto,
            ..policy.clone()
        };
        let evaluation = plan_consolidation(
            catalog,
            local,
            snapshot,
            &evaluation_policy,
            &self.options.prices,
            now,
        )?;
        let cost = snapshot
            .full_bytes
            .map_or(zib_planner::Cost::default(), |bytes| {
                zib_planner::cost::upload(&self.options.prices, &policy.upload_shape(), bytes)
                    .map_or(zib_planner::Cost::default(), |upload| upload.cost)
            });
        Ok(BackupDecision {
            plan: PlannedBackup::Full,
            reason: format!(
                "a fresh full was asked for (consolidation); the planner's view: {}",
                evaluation.reason
            ),
            estimated_bytes: snapshot.full_bytes,
            cost,
            consolidation: Some(evaluation),
            snapshot: decision.snapshot,
        })
    }

    /// After the commit, under the dataset's lock: the backups that no kept restore point
    /// needs any more and whose time has come are deleted from the bucket, when the
    /// policy says `auto` (see [`crate::deletion`]). A failure here never fails the
    /// backup, which has committed: it is reported, and the next run tries again.
    async fn delete_superseded(&self, committed: &ManifestRecord) -> Option<DeletionReport> {
        if !self.intent.delete_superseded
            || self.options.policy.consolidation != ConsolidationMode::Auto
        {
            return None;
        }
        self.progress.phase("deleting superseded backups");
        let options = DeletionOptions {
            policy: self.options.policy.clone(),
            prices: self.options.prices.clone(),
            confirm: false,
            // This run holds the dataset's lock already.
            wait_for_lock: false,
        };
        Some(
            match delete_due(self.repository, committed.dataset_id, &options).await {
                Ok(report) => report,
                Err(error) => DeletionReport::stopped_by(&error),
            },
        )
    }

    /// The sizes a resumed backup's manifest records, measured again (the journal keeps
    /// only what shapes the stream). Sizes are facts for later decisions, never a reason
    /// to fail a backup: what cannot be measured is left unknown.
    async fn resumed_sizes(
        &self,
        target: &SnapshotInfo,
        kind: &BackupKind,
        dataset_id: DatasetId,
    ) -> SizeFacts {
        if !self.capabilities.size_estimates {
            return SizeFacts::default();
        }
        // The base the planner would have continued from, had this not been a full.
        let plan = match kind {
            BackupKind::Incremental { .. } => PlannedBackup::UpToDate,
            BackupKind::Full => {
                let policy = zib_planner::Policy {
                    consolidation: ConsolidationMode::Never,
                    ..self.options.policy.clone()
                };
                let local = planner_snapshots(self.dataset, &self.snapshots, &self.bookmarks);
                planner_catalog(self.catalog.backups(dataset_id))
                    .and_then(|catalog| {
                        Ok(decide_backup(
                            &catalog,
                            &local,
                            Some(&snapshot_id(&target.identity)),
                            &policy,
                            &self.options.prices,
                            UnixTime(unix_seconds(self.repository.clock())),
                        )?)
                    })
                    .map_or(PlannedBackup::UpToDate, |decision| decision.plan)
            }
        };
        let (full_estimate, incremental) = match self.size_estimates(target, &plan).await {
            Ok(estimates) => estimates,
            Err(error) => {
                tracing::debug!(%error, "no size estimates for the resumed backup's manifest");
                return SizeFacts::default();
            }
        };
        let replaced_incremental = match (&plan, incremental) {
            (PlannedBackup::Incremental { base_backup, .. }, Some(estimate)) => {
                engine_backup_id(base_backup)
                    .ok()
                    .map(|base_backup| ReplacedIncremental {
                        base_backup,
                        estimated_bytes: estimate.bytes,
                    })
            }
            _ => None,
        };
        SizeFacts {
            full_estimate,
            replaced_incremental,
        }
    }

    /// The source's size estimates for a full send of `target` and, when the plan is an
    /// incremental, for the incremental from its base — only where the source can
    /// estimate (OpenZFS can, zfs-fuse and BTRFS cannot), each asked once.
    async fn size_estimates(
        &self,
        target: &SnapshotInfo,
        plan: &PlannedBackup,
    ) -> Result<(Option<u64>, Option<IncrementalEstimate>)> {
        if !self.capabilities.size_estimates {
            return Ok((None, None));
        }
        let full = SendRequest::full(self.dataset.clone(), target.name.clone());
        let full_bytes = self
            .estimate(&full.with_flags(self.options.send_flags))
            .await;
        let mut incremental = None;
        if let PlannedBackup::Incremental { base_snapshot, .. } = plan {
            let base = self
                .snapshots
                .iter()
                .chain(&self.bookmarks)
                .find(|point| snapshot_id(&point.identity) == *base_snapshot)
                .map(|point| point.identity);
            if let Some((_, base)) = base
                .map(|identity| self.find_base(&identity))
                .transpose()?
                .flatten()
            {
                let request =
                    SendRequest::incremental(self.dataset.clone(), base, target.name.clone())
                        .with_flags(self.options.send_flags);
                incremental = self
                    .estimate(&request)
                    .await
                    .map(|bytes| IncrementalEstimate {
                        base: base_snapshot.clone(),
                        bytes,
                    });
            }
        }
        Ok((full_bytes, incremental))
    }

    /// The source's estimate of a send's size, `None` when it cannot tell.
    async fn estimate(&self, request: &SendRequest) -> Option<u64> {
        if !self.capabilities.size_estimates {
            return None;
        }
        match self.source.estimate_send_size(request).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(%error, "no send size estimate");
                None
            }
        }
    }

    /// The local snapshot — or, failing that, bookmark — with `identity`, and how to
    /// send from it.
    fn find_base(&self, identity: &SnapshotIdentity) -> Result<Option<(&SnapshotInfo, SendBase)>> {
        if let Some(snapshot) = self
            .snapshots
            .iter()
            .find(|snapshot| snapshot.identity == *identity)
        {
            return Ok(Some((
                snapshot,
                SendBase::Snapshot(self.snapshot_name(snapshot.name.as_str())?),
            )));
        }
        Ok(self
            .bookmarks
            .iter()
            .find(|bookmark| bookmark.identity == *identity)
            .map(|bookmark| (bookmark, SendBase::Bookmark(bookmark.name.clone()))))
    }

    /// The dataset id to continue: one whose backups' snapshots exist locally (a renamed
    /// or restored dataset keeps its chain), else one backed up under the same name.
    fn find_dataset(&self) -> Option<DatasetId> {
        let local: Vec<&SnapshotIdentity> = self
            .snapshots
            .iter()
            .chain(&self.bookmarks)
            .map(|snapshot| &snapshot.identity)
            .collect();
        self.catalog
            .datasets
            .iter()
            .find(|(_, backups)| {
                backups
                    .iter()
                    .any(|backup| local.contains(&&backup.manifest.snapshot_identity))
            })
            .map(|(id, _)| *id)
            .or_else(|| self.catalog.dataset_named(self.dataset.as_str()))
    }

    /// A snapshot name valid for this source's file system.
    fn snapshot_name(&self, name: &str) -> Result<SnapshotName> {
        Ok(match self.kind {
            SourceKind::Zfs => SnapshotName::zfs(name)?,
            SourceKind::Btrfs => SnapshotName::btrfs(name)?,
        })
    }
}
