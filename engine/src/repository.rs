//! A repository: one keyring, a README, and the backups of any number of datasets,
//! under one root of a storage backend.
//!
//! [`Repository::init`] creates the keyring (and its archived copy) and the README with
//! create-if-absent puts, so two hosts initialising the same place cannot overwrite each
//! other; [`Repository::open`] reads the keyring and unlocks it before any other work,
//! so a wrong passphrase is the first error a user sees.
//!
//! `init` runs the whole [access check](crate::access) before writing anything, so a
//! missing permission is reported, with the permission's name, before the location holds
//! half a repository; then it sets the bucket's lifecycle rule for abandoned uploads when
//! allowed. `open` writes nothing: a refusal while reading the keyring names the missing
//! permission, and [`Repository::check_access`] reports the rest (a missing lifecycle rule
//! is a warning there).

use std::sync::Arc;

use bytes::Bytes;
use zib_crypto::{DataKey, KdfParams, Keyring, Passphrase};
use zib_storage_backend::{
    ByteRange, Error as StorageError, ObjectKey, PutPrecondition, StorageBackend,
    StorageBackendExt, StorageClass, WriteOptions,
};

use crate::access::{
    check_access, check_listing, ensure_lifecycle_rule, keyring_read_error, AccessCheckOptions,
    AccessReport, LifecycleStatus,
};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::RepositoryId;
use crate::layout::ObjectRole;
use crate::metadata::{plain_metadata, REPOSITORY_NAME};

/// How a new repository is set up.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where volumes, manifests and the keyring's archived copy go
    /// (`DEEP_ARCHIVE` by default).
    pub archive_class: StorageClass,
    /// scrypt cost of the keyring (format v1's fixed default unless a test needs speed).
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            archive_class: StorageClass::DeepArchive,
            kdf: KdfParams::default(),
        }
    }
}

/// An open repository: the backend, the repository id and the unlocked data key.
pub struct Repository {
    backend: Arc<dyn StorageBackend>,
    prefix: String,
    id: RepositoryId,
    data_key: DataKey,
    archive_class: StorageClass,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("prefix", &self.prefix)
            .field("id", &self.id)
            .field("archive_class", &self.archive_class)
            .finish_non_exhaustive()
    }
}

/// What [`Repository::init`] did, for the caller to tell the user.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The new repository's id.
    pub repository_id: RepositoryId,
    /// The keyring bytes: the user MUST be told to keep an offline copy (without the
    /// keyring and the passphrase, nothing in the repository can be read).
    pub keyring: Vec<u8>,
    /// Key of the archived copy of the keyring.
    pub keyring_archive_key: String,
    /// What the access check found before anything was written (warnings for missing
    /// permissions that backups do not need at once), with the lifecycle rule as it is
    /// after init.
    pub access: AccessReport,
    /// The bucket rule that aborts abandoned uploads: set, already present, not
    /// applicable, or missing with a warning naming the permission to add.
    pub lifecycle: LifecycleStatus,
}

impl Repository {
    /// Creates a repository under `prefix` (empty for the backend's root; otherwise it
    /// ends with `/`).
    ///
    /// # Errors
    ///
    /// [`Error::AccessDenied`] when a permission zib needs is missing (nothing is
    /// written; the error names the permission); [`Error::AlreadyInitialised`] when a
    /// keyring exists there (nothing is written); storage errors as they come.
    pub async fn init(
        backend: Arc<dyn StorageBackend>,
        prefix: &str,
        passphrase: &Passphrase,
        options: &InitOptions,
        clock: &dyn Clock,
    ) -> Result<(Self, InitReport)> {
        let prefix = normalise_prefix(prefix)?;
        let keyring_key = object_key(&prefix, &ObjectRole::Keyring)?;
        // Listing first: without s3:ListBucket, S3 answers a HEAD of a missing key with
        // 403, which would otherwise be blamed on the wrong permission.
        check_listing(backend.as_ref(), &prefix).await?;
        if backend
            .exists(&keyring_key)
            .await
            .map_err(|error| keyring_read_error(&prefix, error))?
        {
            return Err(Error::AlreadyInitialised {
                location: keyring_key.as_str().to_owned(),
            });
        }
        let mut access = check_access(
            backend.as_ref(),
            &prefix,
            &AccessCheckOptions {
                write_probe: true,
                read_keyring: false,
            },
        )
        .await?;
        let id = RepositoryId::generate(&ring::rand::SystemRandom::new())
            .map_err(|_| Error::InvalidInput("the system random generator failed".into()))?;
        let (keyring, data_key) = Keyring::create(passphrase, options.kdf)?;
        let keyring_bytes = keyring.to_bytes();

        // The README first: harmless if we stop here, and it tells whoever finds the
        // bucket what it is.
        let readme_role = ObjectRole::Readme;
        put_small(
            backend.as_ref(),
            &prefix,
            &readme_role,
            id,
            Bytes::from(readme_text(id)),
            StorageClass::Standard,
        )
        .await?;
        // The archived copy before the live keyring: the live keyring's existence is what
        // makes the location a repository, so it is written last.
        let archive_role = ObjectRole::KeyringArchive {
            written_at: crate::clock::unix_seconds(clock),
        };
        put_small(
            backend.as_ref(),
            &prefix,
            &archive_role,
            id,
            Bytes::from(keyring_bytes.clone()),
            options.archive_class.clone(),
        )
        .await?;
        match put_small(
            backend.as_ref(),
            &prefix,
            &ObjectRole::Keyring,
            id,
            Bytes::from(keyring_bytes.clone()),
            StorageClass::Standard,
        )
        .await
        {
            Err(Error::Storage(StorageError::Precondition { .. })) => {
                return Err(Error::AlreadyInitialised {
                    location: keyring_key.as_str().to_owned(),
                })
            }
            other => other?,
        }
        let lifecycle = ensure_lifecycle_rule(backend.as_ref(), &prefix).await;
        if let Some(warning) = lifecycle.warning() {
            tracing::warn!(%warning, "bucket lifecycle rule");
        }
        // The check saw the rule before init set it; report it as it is now.
        access.lifecycle = lifecycle.clone();
        let report = InitReport {
            repository_id: id,
            keyring: keyring_bytes,
            keyring_archive_key: format!("{prefix}{}", archive_role.key()),
            access,
            lifecycle,
        };
        Ok((
            Self {
                backend,
                prefix,
                id,
                data_key,
                archive_class: options.archive_class.clone(),
            },
            report,
        ))
    }

    /// Opens the repository under `prefix` with `passphrase`.
    ///
    /// # Errors
    ///
    /// [`Error::NotARepository`] when there is no keyring; [`Error::AccessDenied`] when
    /// the keyring may not be listed or read (naming the permission); [`Error::Crypto`]
    /// with `WrongPassphrase` or a corrupt keyring; storage errors as they come.
    pub async fn open(
        backend: Arc<dyn StorageBackend>,
        prefix: &str,
        passphrase: &Passphrase,
        archive_class: StorageClass,
    ) -> Result<Self> {
        let prefix = normalise_prefix(prefix)?;
        let keyring_key = object_key(&prefix, &ObjectRole::Keyring)?;
        let meta = match backend.head(&keyring_key).await {
            Err(StorageError::NotFound { .. }) => {
                return Err(Error::NotARepository {
                    location: keyring_key.as_str().to_owned(),
                })
            }
            // S3 refuses a HEAD without s3:GetObject, and also a HEAD of a missing key
            // without s3:ListBucket: a listing tells which permission is missing.
            Err(error @ StorageError::PermissionDenied { .. }) => {
                check_listing(backend.as_ref(), &prefix).await?;
                return Err(keyring_read_error(&prefix, error));
            }
            other => other?,
        };
        let id: RepositoryId = meta
            .metadata
            .get(REPOSITORY_NAME)
            .ok_or_else(|| Error::Corrupt {
                object: keyring_key.as_str().to_owned(),
                reason: format!("metadata {REPOSITORY_NAME} is missing"),
            })?
            .parse()
            .map_err(|error| Error::Corrupt {
                object: keyring_key.as_str().to_owned(),
                reason: format!("{error}"),
            })?;
        let bytes = backend
            .get_bytes(&keyring_key, ByteRange::full())
            .await
            .map_err(|error| keyring_read_error(&prefix, error))?;
        let data_key = zib_crypto::open_keyring(&bytes, passphrase)?;
        Ok(Self {
            backend,
            prefix,
            id,
            data_key,
            archive_class,
        })
    }

    /// Checks, step by step, what the credentials may do in this repository (see
    /// [`check_access`]), and whether the bucket's lifecycle rule for abandoned uploads
    /// is in place (reported, never written). With `write_probe` a zero-byte probe
    /// object is written and deleted again; without, the check only reads.
    ///
    /// # Errors
    ///
    /// [`Error::AccessDenied`] naming the first missing permission that backups need;
    /// storage errors as they come.
    pub async fn check_access(&self, write_probe: bool) -> Result<AccessReport> {
        check_access(
            self.backend.as_ref(),
            &self.prefix,
            &AccessCheckOptions {
                write_probe,
                read_keyring: true,
            },
        )
        .await
    }

    /// The repository's id.
    pub fn id(&self) -> RepositoryId {
        self.id
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn StorageBackend> {
        &self.backend
    }

    /// The unlocked data key.
    pub fn data_key(&self) -> &DataKey {
        &self.data_key
    }

    /// The class volumes and manifests are written in.
    pub fn archive_class(&self) -> &StorageClass {
        &self.archive_class
    }

    /// The backend key of the object with `role` in this repository.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] if the backend refuses the key (cannot happen for keys
    /// under a valid prefix).
    pub fn key(&self, role: &ObjectRole) -> Result<ObjectKey> {
        object_key(&self.prefix, role)
    }

    /// The backend prefix under which every object of the repository lives.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// The README stored at the repository root: what a stranger (or the user, decades from
/// now) needs to know to make sense of the bucket.
pub fn readme_text(id: RepositoryId) -> String {
    format!(
        "This is a zib backup repository (format version 1).\n\
         \n\
         Repository id: {id}\n\
         \n\
         zib keeps ZFS and BTRFS snapshots as encrypted send streams. Objects:\n\
         \n\
         \x20 README.txt                        this file (plaintext)\n\
         \x20 keyring                           the data key, wrapped with the passphrase (scrypt + AES-256-GCM)\n\
         \x20 keyring-archive/<time>            archived copies of the keyring\n\
         \x20 manifests/<dataset>/<backup>      one per committed backup (its existence is the commit)\n\
         \x20 volumes/<dataset>/<backup>/<n>    the backup's send stream, encrypted, in volumes n = 0, 1, ...\n\
         \n\
         Dataset and backup ids are random; names live only inside encrypted metadata.\n\
         Everything but this file and the keyring is in an archive storage class and must be\n\
         restored (S3 RestoreObject) before it can be downloaded.\n\
         \n\
         To read anything you need the passphrase and the keyring (keep an offline copy).\n\
         The format is specified byte by byte in docs/FORMAT.md of the zib source, which\n\
         also explains how to restore by hand with the aws CLI, a short script and\n\
         `zfs receive` (or `btrfs receive`).\n"
    )
}

async fn put_small(
    backend: &dyn StorageBackend,
    prefix: &str,
    role: &ObjectRole,
    id: RepositoryId,
    body: Bytes,
    class: StorageClass,
) -> Result<()> {
    let key = object_key(prefix, role)?;
    let options = WriteOptions {
        storage_class: class,
        metadata: plain_metadata(role, id),
    };
    backend
        .put(&key, body, &options, &PutPrecondition::IfAbsent)
        .await?;
    Ok(())
}

pub(crate) fn object_key(prefix: &str, role: &ObjectRole) -> Result<ObjectKey> {
    let text = format!("{prefix}{}", role.key());
    ObjectKey::new(text.clone())
        .map_err(|error| Error::InvalidInput(format!("object key {text:?}: {error}")))
}

pub(crate) fn normalise_prefix(prefix: &str) -> Result<String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(Error::InvalidInput(format!(
            "repository prefix {prefix:?} has an empty, '.' or '..' segment"
        )));
    }
    Ok(format!("{trimmed}/"))
}
