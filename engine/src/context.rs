//! What every pipeline works with once a repository is open: where its objects are,
//! its id and unlocked data key, the class new objects go to, and this host's clock and
//! state directory. The public [`Repository`](crate::Repository) is a handle on one of
//! these; the pipelines take it directly, so nothing below the handle depends on it.

use std::sync::Arc;

use zib_crypto::DataKey;
use zib_storage_backend::{ObjectKey, StorageBackend, StorageClass};

use crate::clock::Clock;
use crate::error::Result;
use crate::format::layout::{object_key, ObjectRole};
use crate::ids::RepositoryId;
use crate::state::StateDir;

/// An open repository, as the pipelines see it.
pub(crate) struct Repo {
    pub(crate) backend: Arc<dyn StorageBackend>,
    /// Empty, or ending with `/` ([`normalise_prefix`](crate::format::layout::normalise_prefix)).
    pub(crate) prefix: String,
    pub(crate) id: RepositoryId,
    pub(crate) data_key: DataKey,
    pub(crate) archive_class: StorageClass,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) state: StateDir,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the data key.
        f.debug_struct("Repo")
            .field("prefix", &self.prefix)
            .field("id", &self.id)
            .field("archive_class", &self.archive_class)
            .finish_non_exhaustive()
    }
}

impl Repo {
    /// The repository's id.
    pub(crate) fn id(&self) -> RepositoryId {
        self.id
    }

    pub(crate) fn backend(&self) -> &Arc<dyn StorageBackend> {
        &self.backend
    }

    pub(crate) fn data_key(&self) -> &DataKey {
        &self.data_key
    }

    /// The class volumes and manifests are written in.
    pub(crate) fn archive_class(&self) -> &StorageClass {
        &self.archive_class
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub(crate) fn state(&self) -> &StateDir {
        &self.state
    }

    /// The backend key of the object with `role` in this repository.
    pub(crate) fn key(&self, role: &ObjectRole) -> Result<ObjectKey> {
        object_key(&self.prefix, role)
    }

    /// The backend prefix under which every object of the repository lives.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}
