//! The commit: the manifest that makes a backup exist.

use zib_storage_backend::{PutPrecondition, WriteOptions};

use crate::context::Repo;
use crate::error::Result;
use crate::format::layout::ObjectRole;
use crate::format::metadata::{open_sealed_metadata, sealed_metadata, RECORD_NAME};
use crate::format::records::{volume_list_hash, BackupKind, ManifestRecord, ReplacedIncremental};
use crate::state::journal::Journal;
use crate::upload::UploadedStream;

/// What a manifest records about sizes beyond its own stream, measured by the source
/// before the stream is sent (a source that cannot estimate leaves them unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SizeFacts {
    /// The source's estimate of a full stream of the snapshot. A full backup records
    /// its own stream length instead, which is exact.
    pub(super) full_estimate: Option<u64>,
    /// For a full sent where an incremental could have continued the chain: that
    /// incremental (its base backup and estimated size).
    pub(super) replaced_incremental: Option<ReplacedIncremental>,
}

/// The manifest of the backup `journal` describes, once its stream is `uploaded`.
pub(super) fn manifest_for(
    journal: &Journal,
    uploaded: &UploadedStream,
    snapshot_created_at: i64,
    committed_at: i64,
    sizes: SizeFacts,
) -> ManifestRecord {
    let (snapshot_bytes, replaced_incremental) = match journal.kind {
        BackupKind::Full => (Some(uploaded.stream_len), sizes.replaced_incremental),
        BackupKind::Incremental { .. } => (sizes.full_estimate, None),
    };
    ManifestRecord {
        source: journal.source,
        kind: journal.kind.clone(),
        snapshot_created_by_zib: journal.snapshot_created_by_zib,
        send_flags: journal.send_flags,
        dataset_id: journal.dataset_id,
        backup_id: journal.backup_id,
        dataset_name: journal.dataset_name.clone(),
        snapshot_name: journal.target.name.clone(),
        snapshot_identity: journal.target.identity,
        snapshot_created_at,
        committed_at,
        stream_len: uploaded.stream_len,
        stream_sha256: uploaded.stream_sha256,
        stored_len: uploaded.stored_len(),
        volume_count: u32::try_from(uploaded.volumes.len()).unwrap_or(u32::MAX),
        volume_plaintext_len: journal.shape.volume_plaintext_len,
        volume_list_sha256: volume_list_hash(&uploaded.volumes),
        snapshot_bytes,
        replaced_incremental,
    }
}

/// Writes the manifest: its existence is the backup's commit.
///
/// A retried PUT whose first answer was lost finds its own manifest already there: the
/// existing manifest is read back (HEAD) and, when it is this very record, the commit
/// stands. Any other manifest under the backup id is never overwritten.
///
/// # Errors
///
/// Storage errors; a `Precondition` failure means another manifest already exists under
/// this backup id.
pub(crate) async fn commit_manifest(repository: &Repo, manifest: &ManifestRecord) -> Result<()> {
    let role = ObjectRole::Manifest {
        dataset: manifest.dataset_id,
        backup: manifest.backup_id,
    };
    let record = manifest.encode()?;
    let metadata = sealed_metadata(&role, repository.id(), repository.data_key(), &record)?;
    // The body repeats the sealed record, so the manifest survives tools that drop
    // metadata when copying objects.
    let body = bytes::Bytes::from(metadata[RECORD_NAME].clone().into_bytes());
    let options = WriteOptions {
        storage_class: repository.archive_class().clone(),
        metadata,
    };
    let key = repository.key(&role)?;
    let refused = match repository
        .backend()
        .put(&key, body, &options, &PutPrecondition::IfAbsent)
        .await
    {
        Ok(_) => return Ok(()),
        Err(error @ zib_storage_backend::Error::Precondition { .. }) => error,
        Err(error) => return Err(error.into()),
    };
    let existing = repository.backend().head(&key).await?;
    let found = open_sealed_metadata(
        &existing.metadata,
        &role,
        repository.id(),
        repository.data_key(),
    )?;
    if found == record {
        tracing::info!(%key, "the manifest was already written (a retried request whose answer was lost): committed");
        Ok(())
    } else {
        Err(refused.into())
    }
}
