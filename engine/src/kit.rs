//! The decoder kit: the repository carries the means to read itself.
//!
//! Beside `README.txt`, every repository holds small plaintext objects in the Standard
//! class — the restore instructions (`RESTORE.txt`), this format version's
//! `FORMAT.md` and the reference decoder `zib_reference.py` — so that whoever holds only
//! the bucket, the passphrase and the keyring can restore without zib. Each file is
//! also kept in the archive class (`kit-archive/`), as the keyring is.
//!
//! The files are the project's own `docs/` files, embedded when zib is built, so the
//! kit cannot drift from the documents. Keys are versioned by content
//! (`kit/v1/<first 16 hex digits of the file's SHA-256>/<name>`): a kit object is written
//! once, if absent, and never replaced; a zib with other documents writes new keys beside
//! the old ones. `README.txt` names the newest kit — the one of the newest zib that wrote
//! it — and says which zib wrote it, so an older zib run later never points it back.
//!
//! Written at init, and by the first backup of a repository made before the kit
//! existed (one HEAD and one GET of `README.txt` per backup find it up to date).

use bytes::Bytes;
use zib_storage_backend::{ByteRange, Error as StorageError, PutPrecondition, StorageBackendExt};

use crate::context::Repo;
use crate::error::{Error, Result};
use crate::format::layout::{KitName, ObjectRole};
use crate::ids::RepositoryId;
use crate::repository::{put_small, readme_text};
use zib_storage_backend::{StorageBackend, StorageClass};

/// The format version the kit describes (the `v1` in its keys).
pub(crate) const KIT_FORMAT: u16 = 1;

/// One file of the kit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KitFile {
    /// Its name in the kit.
    pub(crate) name: &'static str,
    /// What it is, for `README.txt`.
    pub(crate) what: &'static str,
    /// Its bytes (UTF-8 text).
    pub(crate) contents: &'static str,
}

/// The kit's files, in the order `README.txt` lists them.
pub(crate) const FILES: [KitFile; 3] = [
    KitFile {
        name: "RESTORE.txt",
        what: "how to restore with only these files, the aws CLI, Python 3 and zfs receive",
        contents: include_str!("../../docs/reference/RESTORE.txt"),
    },
    KitFile {
        name: "FORMAT.md",
        what: "the format, byte by byte (format version 1)",
        contents: include_str!("../../docs/FORMAT.md"),
    },
    KitFile {
        name: "zib_reference.py",
        what: "a decoder written from FORMAT.md alone (Python 3 + `cryptography`)",
        contents: include_str!("../../docs/reference/zib_reference.py"),
    },
];

/// The line of `README.txt` that says which zib wrote the kit it names.
const WRITTEN_BY: &str = "Decoder kit written by zib ";

impl KitFile {
    /// The role of this file's plaintext copy (`archived: false`) or archived copy.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] if the file's name is not a valid kit name (a unit test
    /// proves the names valid).
    pub(crate) fn role(&self, archived: bool) -> Result<ObjectRole> {
        let sha = ring::digest::digest(&ring::digest::SHA256, self.contents.as_bytes());
        let mut digest = [0u8; 8];
        digest.copy_from_slice(&sha.as_ref()[..8]);
        let name = KitName::new(self.name)
            .ok_or_else(|| Error::Internal(format!("kit file name {:?} is invalid", self.name)))?;
        Ok(ObjectRole::Kit {
            archived,
            format: KIT_FORMAT,
            digest,
            name,
        })
    }

    /// The relative key of the plaintext copy.
    pub(crate) fn key(&self) -> Result<String> {
        Ok(self.role(false)?.key())
    }
}

/// The lines of `README.txt` that name the kit (relative keys).
///
/// # Errors
///
/// As [`KitFile::role`].
pub(crate) fn readme_lines() -> Result<String> {
    let mut out =
        String::from("Decoder kit (plaintext, readable at once; start with RESTORE.txt):\n\n");
    for file in &FILES {
        out.push_str(&format!("  {:<46} {}\n", file.key()?, file.what));
    }
    out.push_str(&format!(
        "\nThe same files are kept under kit-archive/ in the archive class.\n\
         {WRITTEN_BY}{}.\n",
        env!("CARGO_PKG_VERSION")
    ));
    Ok(out)
}

/// Writes every kit file, plaintext and archived copy, each only if absent (an existing
/// one has the same bytes: its key is its content's hash).
pub(crate) async fn write_files(
    backend: &dyn StorageBackend,
    prefix: &str,
    id: RepositoryId,
    archive_class: &StorageClass,
) -> Result<()> {
    for file in &FILES {
        for (archived, class) in [
            (false, StorageClass::Standard),
            (true, archive_class.clone()),
        ] {
            match put_small(
                backend,
                prefix,
                &file.role(archived)?,
                id,
                Bytes::from_static(file.contents.as_bytes()),
                class,
                &PutPrecondition::IfAbsent,
            )
            .await
            {
                Err(Error::Storage(StorageError::Precondition { .. })) | Ok(()) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}

/// What [`ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KitStatus {
    /// `README.txt` already names this zib's kit.
    UpToDate,
    /// `README.txt` names the kit of a newer zib: left alone.
    Newer,
    /// This zib's kit was written and `README.txt` now names it.
    Written,
}

/// Makes sure the repository carries this zib's kit (or a newer one): for a repository
/// made before the kit existed, or by an older zib, writes the kit and points
/// `README.txt` at it.
///
/// # Errors
///
/// Storage errors as they come. A `README.txt` changed by another writer meanwhile
/// (`If-Match` refused) is not an error: that writer's README stands.
pub(crate) async fn ensure(repo: &Repo) -> Result<KitStatus> {
    let backend = repo.backend().as_ref();
    let readme_key = repo.key(&ObjectRole::Readme)?;
    let current = match backend.head(&readme_key).await {
        Ok(meta) => {
            let bytes = backend.get_bytes(&readme_key, ByteRange::full()).await?;
            Some((meta.etag, String::from_utf8_lossy(&bytes).into_owned()))
        }
        Err(StorageError::NotFound { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    if let Some((_, text)) = &current {
        let mut names_ours = true;
        for file in &FILES {
            names_ours &= text.contains(&file.key()?);
        }
        if names_ours {
            return Ok(KitStatus::UpToDate);
        }
        if written_by(text).is_some_and(|theirs| theirs > version(env!("CARGO_PKG_VERSION"))) {
            return Ok(KitStatus::Newer);
        }
    }
    write_files(backend, repo.prefix(), repo.id(), repo.archive_class()).await?;
    let precondition = match current {
        Some((etag, _)) => PutPrecondition::IfMatch(etag),
        None => PutPrecondition::IfAbsent,
    };
    match put_small(
        backend,
        repo.prefix(),
        &ObjectRole::Readme,
        repo.id(),
        Bytes::from(readme_text(repo.id())?),
        StorageClass::Standard,
        &precondition,
    )
    .await
    {
        Err(Error::Storage(StorageError::Precondition { .. })) => {
            tracing::info!("README.txt was rewritten by another zib meanwhile; it stands");
        }
        other => other?,
    }
    Ok(KitStatus::Written)
}

/// The zib version a README's kit line names.
fn written_by(readme: &str) -> Option<(u64, u64, u64)> {
    readme
        .lines()
        .find_map(|line| line.strip_prefix(WRITTEN_BY))
        .map(|rest| version(rest.trim_end_matches('.')))
}

/// `major.minor.patch` of a version string (pre-release and build suffixes ignored;
/// missing parts are 0).
fn version(text: &str) -> (u64, u64, u64) {
    let core = text.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core
        .split('.')
        .map(|part| part.trim().parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kit_files_have_valid_names_and_distinct_keys() {
        let mut keys: Vec<String> = FILES
            .iter()
            .flat_map(|file| {
                [
                    file.role(false).unwrap().key(),
                    file.role(true).unwrap().key(),
                ]
            })
            .collect();
        for key in &keys {
            assert!(
                matches!(ObjectRole::parse(key), Some(ObjectRole::Kit { .. })),
                "{key}"
            );
        }
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 2 * FILES.len());
    }

    #[test]
    fn kit_files_are_the_documents() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (file, path) in FILES.iter().zip([
            "docs/reference/RESTORE.txt",
            "docs/FORMAT.md",
            "docs/reference/zib_reference.py",
        ]) {
            assert_eq!(
                file.contents,
                std::fs::read_to_string(root.join(path)).unwrap(),
                "{path}"
            );
            let sha = ring::digest::digest(&ring::digest::SHA256, file.contents.as_bytes());
            assert_eq!(
                file.key().unwrap(),
                format!("kit/v1/{}/{}", hex::encode(&sha.as_ref()[..8]), file.name)
            );
        }
    }

    #[test]
    fn readme_names_the_writer_and_versions_compare() {
        let text = readme_lines().unwrap();
        assert_eq!(written_by(&text), Some(version(env!("CARGO_PKG_VERSION"))));
        assert!(version("0.10.0") > version("0.9.12"));
        assert!(version("1.0.0-rc.1") == version("1.0.0"));
        assert_eq!(written_by("no kit here"), None);
    }
}
