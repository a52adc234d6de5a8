//! Receiving a backup chain from objects that are readable now.
//!
//! This is the restore path for repositories whose objects need no thaw (a local
//! directory, or objects already restored from the archive class), and what the tests use
//! to prove stored bytes. The scheduled multi-month restore from Deep Archive — request
//! restores within the download budget, wait for thaw, stage, resume — builds on it.

use std::sync::Arc;

use futures::StreamExt;
use zib_snapshot_source::{DatasetName, SnapshotInfo, SnapshotSource};

use crate::catalog::Catalog;
use crate::context::Repo;
use crate::download::backup_stream;
use crate::error::Result;
use crate::ids::{BackupId, DatasetId};
use crate::progress::Progress;

/// Receives the chain that restores `backup` (its full first, then each incremental)
/// into `target`, verifying every volume, and returns the snapshots received.
///
/// Each stream is verified as it is received: a volume that fails to decrypt, or a
/// stream whose length or hash differs from its manifest, ends the stream with an error,
/// and the snapshot source then discards what it received.
///
/// # Errors
///
/// [`crate::Error::BrokenChain`]; storage errors (`NotRestored` when an object still
/// needs a thaw); crypto errors; the source's receive errors.
pub(crate) async fn receive_readable_chain(
    repository: Arc<Repo>,
    catalog: &Catalog,
    dataset: DatasetId,
    backup: BackupId,
    source: &dyn SnapshotSource,
    target: &DatasetName,
    progress: &dyn Progress,
) -> Result<Vec<SnapshotInfo>> {
    let chain = catalog.chain(dataset, backup)?;
    let mut received = Vec::with_capacity(chain.len());
    for entry in chain {
        progress.phase(&format!(
            "receiving {}@{}",
            entry.manifest.dataset_name, entry.manifest.snapshot_name
        ));
        let stream = backup_stream(repository.clone(), entry.manifest.clone())
            .map(|item| item.map_err(std::io::Error::other))
            .boxed();
        received.push(source.receive(target, stream).await?);
    }
    Ok(received)
}
