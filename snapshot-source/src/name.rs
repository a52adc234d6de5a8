//! Validated names: a dataset (ZFS dataset or BTRFS path) and a snapshot within it.
//!
//! Names are checked once, when they are built, so every command line this crate runs
//! gets a name the file system accepts; a bad name is refused with the rule it breaks.

use std::fmt;
use std::path::Path;

use crate::error::{Error, Result};

/// Characters ZFS allows in a dataset, snapshot or bookmark name component.
pub const ZFS_ALLOWED_CHARACTERS: &str =
    "letters A-Z a-z, digits 0-9, underscore '_', period '.', colon ':', hyphen '-' and space ' '";

/// ZFS's limit on a full name (`pool/fs@snap`), in bytes, including the terminator.
const ZFS_MAX_NAME_LEN: usize = 256;
/// The longest file name Linux (and so BTRFS) accepts, in bytes.
const MAX_FILE_NAME_LEN: usize = 255;

fn zfs_char_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | ' ')
}

/// Checks one component of a ZFS name (between `/`, after `@` or `#`).
fn check_zfs_component(full: &str, component: &str, what: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidName {
        name: full.to_owned(),
        reason,
    };
    if component.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    if component == "." || component == ".." {
        return Err(invalid(format!("{what} may not be '.' or '..'")));
    }
    if let Some(bad) = component.chars().find(|c| !zfs_char_allowed(*c)) {
        return Err(invalid(format!(
            "{what} contains {bad:?}; ZFS names allow only {ZFS_ALLOWED_CHARACTERS}"
        )));
    }
    Ok(())
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum DatasetKind {
    Zfs,
    Path,
}

/// A dataset to snapshot, send from or receive into.
///
/// For ZFS it is a dataset name (`pool/fs/child`); for BTRFS an absolute path: a
/// subvolume to snapshot, or a directory that holds received snapshots.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetName {
    kind: DatasetKind,
    name: String,
}

impl DatasetName {
    /// A ZFS dataset name such as `tank/photos` or `tank/family photos`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when a component is empty, is `.`/`..`, contains a
    /// character outside [`ZFS_ALLOWED_CHARACTERS`], the pool name does not start with a
    /// letter, or the name is too long.
    pub fn zfs(name: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if name.len() >= ZFS_MAX_NAME_LEN {
            return Err(invalid("ZFS names must be shorter than 256 bytes"));
        }
        if name.contains('@') || name.contains('#') {
            return Err(invalid(
                "a dataset name may not contain '@' or '#' (those separate snapshot and bookmark names)",
            ));
        }
        for component in name.split('/') {
            check_zfs_component(name, component, "a dataset name component")?;
        }
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(invalid("a ZFS pool name must begin with a letter"));
        }
        Ok(DatasetName {
            kind: DatasetKind::Zfs,
            name: name.to_owned(),
        })
    }

    /// A BTRFS subvolume or directory, as an absolute path (unicode and spaces allowed).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when the path is not absolute, not UTF-8, contains a NUL
    /// byte, or has a component longer than 255 bytes.
    pub fn path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.to_string_lossy().into_owned();
        let invalid = |reason: &str| Error::InvalidName {
            name: shown.clone(),
            reason: reason.to_owned(),
        };
        let Some(text) = path.to_str() else {
            return Err(invalid("the path is not valid UTF-8"));
        };
        if !path.is_absolute() {
            return Err(invalid("the path must be absolute"));
        }
        if text.contains('\0') {
            return Err(invalid("the path contains a NUL byte"));
        }
        if path
            .iter()
            .any(|component| component.len() > MAX_FILE_NAME_LEN)
        {
            return Err(invalid("a path component is longer than 255 bytes"));
        }
        let trimmed = text.trim_end_matches('/');
        let name = if trimmed.is_empty() { "/" } else { trimmed };
        Ok(DatasetName {
            kind: DatasetKind::Path,
            name: name.to_owned(),
        })
    }

    /// The name as the file system tools see it.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// True for a ZFS dataset name, false for a BTRFS path.
    pub fn is_zfs(&self) -> bool {
        self.kind == DatasetKind::Zfs
    }

    /// The pool (first component) of a ZFS dataset name; the whole path for BTRFS.
    pub fn pool(&self) -> &str {
        match self.kind {
            DatasetKind::Zfs => self.name.split('/').next().unwrap_or(&self.name),
            DatasetKind::Path => &self.name,
        }
    }

    /// The path of a BTRFS dataset.
    pub fn as_path(&self) -> &Path {
        Path::new(&self.name)
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name)
    }
}

/// The short name of a snapshot (the part after `@` in ZFS; the snapshot subvolume's file
/// name in BTRFS). Also used for the short name of a ZFS bookmark (after `#`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotName(String);

impl SnapshotName {
    /// A snapshot name valid on both ZFS and BTRFS: ZFS's character set.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when empty, `.`/`..`, or containing a character outside
    /// [`ZFS_ALLOWED_CHARACTERS`].
    pub fn zfs(name: &str) -> Result<Self> {
        check_zfs_component(name, name, "a snapshot name")?;
        if name.len() >= ZFS_MAX_NAME_LEN {
            return Err(Error::InvalidName {
                name: name.to_owned(),
                reason: "ZFS names must be shorter than 256 bytes".to_owned(),
            });
        }
        Ok(SnapshotName(name.to_owned()))
    }

    /// A BTRFS snapshot (file) name: any UTF-8 except `/` and NUL, not `.`/`..`, at
    /// most 255 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when the name breaks one of those rules.
    pub fn btrfs(name: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if name.is_empty() || name == "." || name == ".." {
            return Err(invalid("a snapshot name may not be empty, '.' or '..'"));
        }
        if name.contains('/') || name.contains('\0') {
            return Err(invalid("a snapshot name may not contain '/' or NUL"));
        }
        if name.len() > MAX_FILE_NAME_LEN {
            return Err(invalid("a snapshot name may be at most 255 bytes"));
        }
        Ok(SnapshotName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks that the name is also valid for ZFS (it may have been built for BTRFS).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] as for [`SnapshotName::zfs`].
    pub fn check_zfs(&self) -> Result<()> {
        SnapshotName::zfs(&self.0).map(|_| ())
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zfs_names_with_spaces_are_accepted() {
        let name = DatasetName::zfs("tank/family photos/2024").unwrap();
        assert_eq!(name.as_str(), "tank/family photos/2024");
        assert_eq!(name.pool(), "tank");
        assert!(SnapshotName::zfs("zib 2024-01-01T00:00:00").is_ok());
    }

    #[test]
    fn invalid_zfs_names_say_what_is_allowed() {
        for bad in [
            "tank/ph*tos",
            "tank/fotos-ü",
            "tank//x",
            "tank/",
            "1tank/x",
            "tank/a@b",
            "tank/a#b",
            "tank/..",
        ] {
            let err = DatasetName::zfs(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{bad}: {err}");
        }
        let message = DatasetName::zfs("tank/ph*tos").unwrap_err().to_string();
        assert!(message.contains(ZFS_ALLOWED_CHARACTERS), "{message}");
        assert!(SnapshotName::zfs("snap/x").is_err());
        assert!(SnapshotName::zfs("ü")
            .unwrap_err()
            .to_string()
            .contains(ZFS_ALLOWED_CHARACTERS));
        assert!(DatasetName::zfs(&"a".repeat(256)).is_err());
    }

    #[test]
    fn btrfs_paths_allow_unicode_and_spaces() {
        let name = DatasetName::path("/mnt/fotos ü 日本/").unwrap();
        assert_eq!(name.as_str(), "/mnt/fotos ü 日本");
        assert!(!name.is_zfs());
        assert!(DatasetName::path("relative/path").is_err());
        assert!(SnapshotName::btrfs("zib 2024 ü").is_ok());
        assert!(SnapshotName::btrfs("a/b").is_err());
        assert!(SnapshotName::btrfs("..").is_err());
        assert!(SnapshotName::btrfs("zib ü").unwrap().check_zfs().is_err());
    }
}
