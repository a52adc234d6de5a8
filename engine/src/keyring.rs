//! The keyring from elsewhere: a repository whose live `keyring` object is lost or
//! damaged opens from the user's offline copy or from an archived copy
//! (`keyring-archive/<time>`), and the live object can be put back.
//!
//! The repository's id is in every object's metadata, so it is read from the first
//! object that still has it (the live keyring, an archived copy, a manifest). A copy is
//! accepted only if it belongs to this repository: its key id must equal the live
//! keyring's when that still parses, and it must open a manifest's sealed metadata when
//! there is one — a stranger's keyring is refused before anything is read with it.
//!
//! An archived copy is in the archive class: fetching it is a restore like a volume's
//! (request, thaw, read), made with the `Standard` tier because the object is 160 bytes
//! (Deep Archive: 12 hours instead of 48, for a fraction of a cent).

use futures::TryStreamExt;
use zib_crypto::{Keyring, Passphrase};
use zib_planner::UnixTime;
use zib_storage_backend::{
    ArchiveState, ByteRange, Error as StorageError, ObjectMeta, PutPrecondition, RestoreTier,
    StorageBackend, StorageBackendExt, StorageClass,
};

use crate::context::Repo;
use crate::error::{Error, Result};
use crate::format::layout::{keyring_archive_prefix, manifests_prefix, object_key, ObjectRole};
use crate::format::metadata::{open_sealed_metadata, REPOSITORY_NAME};
use crate::ids::RepositoryId;
use crate::state::ledger::Ledger;

/// Days an archived keyring copy stays readable once thawed (the user needs it once).
const THAWED_DAYS: u32 = 7;

/// Where an archived keyring copy stands: what
/// [`Repository::fetch_archived_keyring`](crate::Repository::fetch_archived_keyring)
/// found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchivedKeyring {
    /// The copy is readable: open the repository with it
    /// ([`Repository::open_with_keyring`](crate::Repository::open_with_keyring)).
    Ready {
        /// The copy's object key.
        key: String,
        /// The keyring bytes (160; wrapped with the passphrase in use when it was written).
        keyring: Vec<u8>,
    },
    /// The copy is thawing in the archive; ask again later (Deep Archive, Standard tier:
    /// within 12 hours of the request).
    Thawing {
        /// The copy's object key.
        key: String,
        /// Whether this call made the restore request (otherwise an earlier one did).
        requested_now: bool,
    },
}

/// What [`Repository::repair_keyring`](crate::Repository::repair_keyring) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringRepair {
    /// The live keyring was intact (same key id, parses): nothing was written.
    Intact,
    /// The live keyring was missing and has been written.
    Written,
    /// The live keyring was damaged or foreign and has been replaced.
    Replaced,
}

/// The repository id, from the first object under `prefix` that carries it.
pub(crate) async fn repository_id_of(
    backend: &dyn StorageBackend,
    prefix: &str,
) -> Result<RepositoryId> {
    let mut candidates = vec![object_key(prefix, &ObjectRole::Keyring)?];
    for listing in [keyring_archive_prefix(), manifests_prefix()] {
        let listing = format!("{prefix}{listing}");
        let first = backend.list(&listing).try_next().await?;
        if let Some(entry) = first {
            candidates.push(entry.key);
        }
    }
    let mut first_looked_at = None;
    for key in candidates {
        let meta = match backend.head(&key).await {
            Ok(meta) => meta,
            Err(StorageError::NotFound { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        first_looked_at.get_or_insert_with(|| key.to_string());
        if let Some(id) = meta.metadata.get(REPOSITORY_NAME) {
            return id.parse().map_err(|error| Error::Corrupt {
                object: key.to_string(),
                reason: format!("metadata {REPOSITORY_NAME}: {error}"),
            });
        }
    }
    Err(Error::NotARepository {
        location: first_looked_at.unwrap_or_else(|| format!("{prefix}keyring")),
    })
}

/// Checks that `keyring` (already opened into `repository`'s data key) belongs to the
/// repository: same key id as the live keyring if that parses, and able to open a
/// manifest's sealed metadata if there is one.
pub(crate) async fn check_belongs(repository: &Repo, keyring: &Keyring) -> Result<()> {
    let backend = repository.backend();
    let live_key = repository.key(&ObjectRole::Keyring)?;
    if let Ok(bytes) = backend.get_bytes(&live_key, ByteRange::full()).await {
        if let Ok(live) = Keyring::from_bytes(&bytes) {
            if live.key_id() != keyring.key_id() {
                return Err(Error::ForeignKeyring {
                    location: live_key.to_string(),
                    reason: format!(
                        "its key id is {}, the repository's keyring has {}",
                        keyring.key_id(),
                        live.key_id()
                    ),
                });
            }
        }
    }
    let listing = format!("{}{}", repository.prefix(), manifests_prefix());
    let Some(entry) = backend.list(&listing).try_next().await? else {
        return Ok(());
    };
    let relative = entry
        .key
        .as_str()
        .strip_prefix(repository.prefix())
        .unwrap_or_default();
    let Some(role @ ObjectRole::Manifest { .. }) = ObjectRole::parse(relative) else {
        return Ok(());
    };
    let head = backend.head(&entry.key).await?;
    open_sealed_metadata(
        &head.metadata,
        &role,
        repository.id(),
        repository.data_key(),
    )
    .map(drop)
    .map_err(|_| Error::ForeignKeyring {
        location: entry.key.to_string(),
        reason: "it does not open this repository's backup metadata".into(),
    })
}

/// Finds the newest archived keyring copy and reads it, requesting its restore first if
/// it is archived.
pub(crate) async fn fetch_archived(
    backend: &dyn StorageBackend,
    prefix: &str,
    ledger: &Ledger,
    now: i64,
) -> Result<ArchivedKeyring> {
    let listing = format!("{prefix}{}", keyring_archive_prefix());
    let copies = backend.list_all(&listing).await?;
    // Keys end in a UTC time stamp (yyyymmddThhmmssZ): the greatest key is the newest
    // copy, wrapped with the passphrase in use now.
    let newest = copies
        .into_iter()
        .filter(|entry| {
            entry
                .key
                .as_str()
                .strip_prefix(prefix)
                .and_then(ObjectRole::parse)
                .is_some_and(|role| matches!(role, ObjectRole::KeyringArchive { .. }))
        })
        .max_by(|a, b| a.key.as_str().cmp(b.key.as_str()))
        .ok_or_else(|| Error::NoArchivedKeyring {
            location: listing.clone(),
        })?;
    let meta: ObjectMeta = backend.head(&newest.key).await?;
    match meta.archive_state {
        ArchiveState::Available | ArchiveState::Restored { .. } => {
            let bytes = backend.get_bytes(&newest.key, ByteRange::full()).await?;
            let downloaded = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            ledger.add(UnixTime(now).month(), downloaded).await?;
            Ok(ArchivedKeyring::Ready {
                key: newest.key.to_string(),
                keyring: bytes.to_vec(),
            })
        }
        ArchiveState::RestoreInProgress => Ok(ArchivedKeyring::Thawing {
            key: newest.key.to_string(),
            requested_now: false,
        }),
        ArchiveState::Archived => {
            backend
                .request_restore(&newest.key, THAWED_DAYS, RestoreTier::Standard)
                .await?;
            Ok(ArchivedKeyring::Thawing {
                key: newest.key.to_string(),
                requested_now: true,
            })
        }
    }
}

/// Unlocks `bytes` with `passphrase`, keeping the parsed keyring for the checks.
pub(crate) fn unlock(
    bytes: &[u8],
    passphrase: &Passphrase,
) -> Result<(Keyring, zib_crypto::DataKey)> {
    let keyring = Keyring::from_bytes(bytes)?;
    let data_key = keyring.unlock(passphrase)?;
    Ok((keyring, data_key))
}

/// Puts `keyring` back as the live keyring if the live one is missing or is not this
/// repository's intact keyring.
pub(crate) async fn repair(repository: &Repo, keyring: &Keyring) -> Result<KeyringRepair> {
    if keyring.key_id() != repository.data_key().id() {
        return Err(Error::ForeignKeyring {
            location: "the keyring given to repair".into(),
            reason: "it wraps another data key than the one this repository was opened with".into(),
        });
    }
    let backend = repository.backend();
    let live_key = repository.key(&ObjectRole::Keyring)?;
    let (precondition, outcome) = match backend.head(&live_key).await {
        Err(StorageError::NotFound { .. }) => (PutPrecondition::IfAbsent, KeyringRepair::Written),
        Err(error) => return Err(error.into()),
        Ok(meta) => {
            let bytes = backend.get_bytes(&live_key, ByteRange::full()).await?;
            let intact = Keyring::from_bytes(&bytes)
                .is_ok_and(|live| live.key_id() == keyring.key_id())
                && meta.metadata.get(REPOSITORY_NAME) == Some(&repository.id().to_string());
            if intact {
                return Ok(KeyringRepair::Intact);
            }
            // Replaced only if it is still the damaged object read here.
            (PutPrecondition::IfMatch(meta.etag), KeyringRepair::Replaced)
        }
    };
    crate::repository::put_small(
        backend.as_ref(),
        repository.prefix(),
        &ObjectRole::Keyring,
        repository.id(),
        bytes::Bytes::from(keyring.to_bytes()),
        StorageClass::Standard,
        &precondition,
    )
    .await?;
    Ok(outcome)
}

/// The live keyring's bytes, checked to parse and to hold `repository`'s data key.
pub(crate) async fn live_copy(repository: &Repo) -> Result<Vec<u8>> {
    let live_key = repository.key(&ObjectRole::Keyring)?;
    let bytes = repository
        .backend()
        .get_bytes(&live_key, ByteRange::full())
        .await?;
    let live = Keyring::from_bytes(&bytes).map_err(|error| Error::KeyringDamaged {
        location: live_key.to_string(),
        reason: error.to_string(),
    })?;
    if live.key_id() != repository.data_key().id() {
        return Err(Error::ForeignKeyring {
            location: live_key.to_string(),
            reason: "it wraps another data key than the one this repository was opened with".into(),
        });
    }
    Ok(bytes.to_vec())
}
