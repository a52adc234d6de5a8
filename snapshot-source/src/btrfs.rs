//! BTRFS through `btrfs`: a subvolume, its read-only snapshots in a snapshot directory,
//! `btrfs send [-p parent]` and `btrfs receive`.
//!
//! Layout: snapshots of a subvolume `D` are created in `<snapshot directory>/<name of D>/`
//! (created when needed), and a snapshot there belongs to `D` only when its parent UUID is
//! `D`'s UUID. A receive target is a directory: each received snapshot appears
//! in it under the sender's snapshot name, and listing the directory lists them.
//!
//! BTRFS has no holds or bookmarks, no user properties on snapshots and no send size
//! estimate; the capabilities say so.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::process::{read_prefix, ReceiveStream, SendStream, Tool};
use crate::stream_header::{btrfs_begin_needs, parse_btrfs_begin, BtrfsEndTracker};
use crate::{
    Capabilities, DatasetName, Protection, ReceiveOptions, SendBase, SendFlags, SendRequest,
    SnapshotIdentity, SnapshotInfo, SnapshotName, SnapshotSource, SourceKind,
};

const PACKAGE: &str = "btrfs-progs";
/// The inode number of every subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
const SUBVOLUME_ROOT_INODE: u64 = 256;

/// A BTRFS snapshot source driving the `btrfs` command.
#[derive(Debug, Clone)]
pub struct BtrfsSource {
    btrfs: Tool,
    snapshot_dir: PathBuf,
}

/// What `btrfs subvolume show` says about a subvolume.
#[derive(Debug, Clone)]
struct Subvolume {
    uuid: String,
    parent_uuid: Option<String>,
    received_uuid: Option<String>,
    created_at: OffsetDateTime,
    generation_at_creation: u64,
    id: u64,
    read_only: bool,
}

impl BtrfsSource {
    /// A source using `btrfs` from `PATH` that creates the snapshots of a subvolume `D`
    /// in `snapshot_dir/<name of D>/`; `snapshot_dir` must exist on the same BTRFS file
    /// system as the subvolumes.
    pub fn new(snapshot_dir: impl Into<PathBuf>) -> Self {
        BtrfsSource::with_binary("btrfs", snapshot_dir)
    }

    /// As [`BtrfsSource::new`], with the given `btrfs` program.
    pub fn with_binary(btrfs: impl Into<PathBuf>, snapshot_dir: impl Into<PathBuf>) -> Self {
        BtrfsSource {
            btrfs: Tool::new(btrfs, PACKAGE),
            snapshot_dir: snapshot_dir.into(),
        }
    }

    fn check_dataset(dataset: &DatasetName) -> Result<()> {
        if dataset.is_zfs() {
            return Err(Error::InvalidName {
                name: dataset.to_string(),
                reason: "a BTRFS source needs an absolute path (DatasetName::path), not a ZFS name"
                    .to_owned(),
            });
        }
        Ok(())
    }

    fn path_str(path: &Path) -> Result<&str> {
        path.to_str().ok_or_else(|| Error::InvalidName {
            name: path.to_string_lossy().into_owned(),
            reason: "the path is not valid UTF-8".to_owned(),
        })
    }

    /// Whether `path` is a subvolume (true), a plain directory (false), or missing.
    fn classify(dataset: &DatasetName) -> Result<bool> {
        Self::check_dataset(dataset)?;
        match std::fs::metadata(dataset.as_path()) {
            Ok(metadata) if metadata.is_dir() => Ok(metadata.ino() == SUBVOLUME_ROOT_INODE),
            Ok(_) => Err(Error::DatasetNotFound {
                dataset: dataset.to_string(),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::DatasetNotFound {
                    dataset: dataset.to_string(),
                })
            }
            Err(source) => Err(Error::Io {
                command: format!("stat {dataset}"),
                source,
            }),
        }
    }

    async fn show(&self, path: &Path) -> Result<Subvolume> {
        let path_text = Self::path_str(path)?;
        let args = ["subvolume", "show", path_text];
        let stdout = self.btrfs.run(&args).await?;
        parse_show(&self.btrfs.describe(&args), &stdout)
    }

    /// The read-only subvolumes directly inside `dir`, with their names.
    async fn read_only_subvolumes_in(&self, dir: &Path) -> Result<Vec<(String, Subvolume)>> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            command: format!("list {}", dir.display()),
            source,
        })?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                command: format!("list {}", dir.display()),
                source,
            })?;
            let path = entry.path();
            let Ok(metadata) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !metadata.is_dir() || metadata.ino() != SUBVOLUME_ROOT_INODE {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "skipping a subvolume whose name is not UTF-8");
                continue;
            };
            let subvolume = self.show(&path).await?;
            if subvolume.read_only {
                found.push((name, subvolume));
            }
        }
        Ok(found)
    }

    /// The directory for the snapshots of subvolume `dataset`.
    fn snapshot_dir_of(&self, dataset: &DatasetName) -> Result<PathBuf> {
        let name = dataset
            .as_path()
            .file_name()
            .ok_or_else(|| Error::InvalidName {
                name: dataset.to_string(),
                reason: "the subvolume path has no final component".to_owned(),
            })?;
        Ok(self.snapshot_dir.join(name))
    }

    /// Where the snapshots of `dataset` live, and which belong to it.
    async fn snapshots(&self, dataset: &DatasetName) -> Result<Vec<(PathBuf, SnapshotInfo)>> {
        let is_subvolume = Self::classify(dataset)?;
        let (dir, parent) = if is_subvolume {
            // Asked first even when there is no snapshot directory yet: it confirms the
            // path is a BTRFS subvolume (and that the tool works).
            let uuid = self.show(dataset.as_path()).await?.uuid;
            let dir = self.snapshot_dir_of(dataset)?;
            if !dir.is_dir() {
                return Ok(Vec::new());
            }
            (dir, Some(uuid))
        } else {
            (dataset.as_path().to_path_buf(), None)
        };
        let mut snapshots: Vec<(u64, PathBuf, SnapshotInfo)> = Vec::new();
        for (name, subvolume) in self.read_only_subvolumes_in(&dir).await? {
            if parent.is_some() && subvolume.parent_uuid != parent {
                continue;
            }
            let info = SnapshotInfo {
                name: SnapshotName::btrfs(&name)?,
                // What `btrfs send` writes for the snapshot: its received UUID when it
                // was itself received, else its own.
                identity: SnapshotIdentity::btrfs_uuid(
                    subvolume
                        .received_uuid
                        .as_deref()
                        .unwrap_or(&subvolume.uuid),
                    "btrfs subvolume show",
                )?,
                created_txg: subvolume.generation_at_creation,
                created_at: subvolume.created_at,
                zib_created: None,
            };
            snapshots.push((subvolume.id, dir.join(&name), info));
        }
        snapshots.sort_by_key(|(id, _, info)| (info.created_txg, *id));
        Ok(snapshots
            .into_iter()
            .map(|(_, path, info)| (path, info))
            .collect())
    }

    async fn snapshot_path(
        &self,
        dataset: &DatasetName,
        snapshot: &SnapshotName,
    ) -> Result<(PathBuf, SnapshotInfo)> {
        self.snapshots(dataset)
            .await?
            .into_iter()
            .find(|(_, info)| &info.name == snapshot)
            .ok_or_else(|| Error::SnapshotNotFound {
                dataset: dataset.to_string(),
                snapshot: snapshot.to_string(),
            })
    }

    /// Deletes a subvolume left by a failed receive.
    async fn discard(&self, path: &Path) {
        if std::fs::symlink_metadata(path).is_err() {
            return;
        }
        tracing::warn!(path = %path.display(), "deleting the partial subvolume of a failed receive");
        let Ok(path_text) = Self::path_str(path) else {
            return;
        };
        if let Err(error) = self.btrfs.run(&["subvolume", "delete", path_text]).await {
            tracing::error!(path = %path.display(), %error, "could not delete the partial subvolume of a failed receive");
        }
    }

    /// Makes sure a receive target directory exists (creating it, not its parents).
    fn prepare_target(target: &DatasetName) -> Result<()> {
        match Self::classify(target) {
            Ok(false) => Ok(()),
            Ok(true) => Err(Error::InvalidName {
                name: target.to_string(),
                reason: "a BTRFS receive target is a directory that holds received snapshots, not a subvolume".to_owned(),
            }),
            Err(Error::DatasetNotFound { .. }) => {
                let parent = target.as_path().parent().ok_or_else(|| Error::DatasetNotFound { dataset: target.to_string() })?;
                if !parent.is_dir() {
                    return Err(Error::DatasetNotFound { dataset: parent.to_string_lossy().into_owned() });
                }
                std::fs::create_dir(target.as_path()).map_err(|source| Error::Io { command: format!("mkdir {target}"), source })
            }
            Err(other) => Err(other),
        }
    }
}

fn parse_show(command: &str, stdout: &str) -> Result<Subvolume> {
    let unexpected = |detail: String| Error::UnexpectedOutput {
        command: command.to_owned(),
        detail,
    };
    let mut fields = std::collections::HashMap::new();
    // The first line is the path; the rest are "Key:<tabs>value".
    for line in stdout.lines().skip(1) {
        if let Some((key, value)) = line.split_once(':') {
            fields.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    let get = |key: &str| {
        fields
            .get(key)
            .ok_or_else(|| unexpected(format!("no {key:?} field")))
    };
    let optional_uuid = |key: &str| -> Result<Option<String>> {
        let value = get(key)?;
        Ok((value != "-").then(|| value.clone()))
    };
    let number = |key: &str| -> Result<u64> {
        let value = get(key)?;
        value
            .parse()
            .map_err(|_| unexpected(format!("{key} is {value:?}, not a number")))
    };
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    let created_text = get("Creation time")?;
    let created_at = OffsetDateTime::parse(created_text, &format)
        .map_err(|error| unexpected(format!("creation time {created_text:?}: {error}")))?;
    Ok(Subvolume {
        uuid: get("UUID")?.clone(),
        parent_uuid: optional_uuid("Parent UUID")?,
        received_uuid: optional_uuid("Received UUID")?,
        created_at,
        generation_at_creation: number("Gen at creation")?,
        id: number("Subvolume ID")?,
        read_only: get("Flags")?
            .split_whitespace()
            .any(|flag| flag == "readonly"),
    })
}

#[async_trait]
impl SnapshotSource for BtrfsSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Btrfs
    }

    async fn capabilities(&self, dataset: &DatasetName) -> Result<Capabilities> {
        Self::classify(dataset)?;
        let version = self.btrfs.run(&["--version"]).await?;
        Ok(Capabilities {
            tool: version.trim().to_owned(),
            size_estimates: false,
            bookmarks: false,
            holds: false,
            user_properties: false,
            send_flags: SendFlags::NONE,
        })
    }

    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        Ok(self
            .snapshots(dataset)
            .await?
            .into_iter()
            .map(|(_, info)| info)
            .collect())
    }

    async fn create_snapshot(
        &self,
        dataset: &DatasetName,
        snapshot: &SnapshotName,
        _marker: Option<&str>,
    ) -> Result<SnapshotInfo> {
        if !Self::classify(dataset)? {
            return Err(Error::InvalidName {
                name: dataset.to_string(),
                reason: "snapshots are taken of a subvolume; this is a plain directory".to_owned(),
            });
        }
        let dir = self.snapshot_dir_of(dataset)?;
        if !dir.is_dir() {
            std::fs::create_dir(&dir).map_err(|source| Error::Io {
                command: format!("mkdir {}", dir.display()),
                source,
            })?;
        }
        let path = dir.join(snapshot.as_str());
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(Error::SnapshotExists {
                dataset: dataset.to_string(),
                snapshot: snapshot.to_string(),
            });
        }
        self.btrfs
            .run(&[
                "subvolume",
                "snapshot",
                "-r",
                dataset.as_str(),
                Self::path_str(&path)?,
            ])
            .await?;
        self.snapshot_path(dataset, snapshot)
            .await
            .map(|(_, info)| info)
    }

    async fn destroy_snapshot(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<()> {
        let (path, _) = self.snapshot_path(dataset, snapshot).await?;
        self.btrfs
            .run(&["subvolume", "delete", Self::path_str(&path)?])
            .await
            .map(drop)
    }

    async fn estimate_send_size(&self, request: &SendRequest) -> Result<Option<u64>> {
        self.send_args(request).await?;
        Ok(None)
    }

    async fn send(&self, request: &SendRequest) -> Result<SendStream> {
        let args = self.send_args(request).await?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.btrfs.stream(&args)
    }

    async fn receive(
        &self,
        target: &DatasetName,
        mut stream: ReceiveStream,
        // A received BTRFS snapshot is read-only whatever follows.
        _options: &ReceiveOptions,
    ) -> Result<SnapshotInfo> {
        Self::check_dataset(target)?;
        let mut prefix = read_prefix(&mut stream, btrfs_begin_needs(&[])).await?;
        let needed = btrfs_begin_needs(&prefix);
        if prefix.len() < needed {
            let rest = read_prefix(&mut stream, needed - prefix.len()).await?;
            prefix.extend_from_slice(&rest);
        }
        let begin = parse_btrfs_begin(&prefix)?;
        let name = SnapshotName::btrfs(&begin.path)?;
        Self::prepare_target(target)?;
        let received_path = target.as_path().join(name.as_str());
        if std::fs::symlink_metadata(&received_path).is_ok() {
            // A receive killed before its end leaves a writable subvolume without a
            // received UUID under the stream's own name: the file system's equivalent of
            // the partial receive ZFS discards by itself. Anything else is kept.
            let leftover = self
                .show(&received_path)
                .await
                .is_ok_and(|subvolume| !subvolume.read_only && subvolume.received_uuid.is_none());
            if !leftover {
                return Err(Error::TargetExists {
                    target: Self::path_str(&received_path)?.to_owned(),
                });
            }
            self.discard(&received_path).await;
            if std::fs::symlink_metadata(&received_path).is_ok() {
                return Err(Error::TargetExists {
                    target: Self::path_str(&received_path)?.to_owned(),
                });
            }
        }
        if let Some(base) = &begin.clone_uuid {
            let wanted = SnapshotIdentity::btrfs_uuid(base, "the stream's clone UUID")?;
            let present = self
                .snapshots(target)
                .await?
                .iter()
                .any(|(_, info)| info.identity == wanted);
            if !present {
                return Err(Error::BaseMissing {
                    target: target.to_string(),
                    base: format!("with UUID {base}"),
                });
            }
        }

        let mut tracker = BtrfsEndTracker::default();
        let result = self
            .btrfs
            .feed(
                &["receive", target.as_str()],
                prefix.freeze(),
                stream,
                &mut |bytes| tracker.observe(bytes),
            )
            .await;
        let failure = match result {
            Ok(finished) if finished.status.success() => {
                if tracker.ended_cleanly() {
                    None
                } else {
                    Some(Error::InvalidStream {
                        detail: "it ends before the sender's `end` command (truncated)".to_owned(),
                    })
                }
            }
            Ok(finished) => Some(finished.failure()),
            Err(error) => Some(error),
        };
        if let Some(error) = failure {
            self.discard(&received_path).await;
            return Err(error);
        }
        // Accept only what a finished receive leaves: read-only, received UUID set to the
        // stream's identity.
        let check = match self.show(&received_path).await {
            Ok(subvolume)
                if subvolume.read_only
                    && subvolume.received_uuid.as_deref() == Some(begin.uuid.as_str()) =>
            {
                Ok(())
            }
            Ok(subvolume) => Err(format!(
                "read-only: {}, received UUID {:?}, expected {}",
                subvolume.read_only, subvolume.received_uuid, begin.uuid
            )),
            Err(error) => Err(error.to_string()),
        };
        if let Err(detail) = check {
            self.discard(&received_path).await;
            return Err(Error::ReceiveIncomplete {
                target: target.to_string(),
                detail,
            });
        }
        self.snapshots(target)
            .await?
            .into_iter()
            .map(|(_, info)| info)
            .find(|info| info.name == name)
            .ok_or_else(|| Error::ReceiveIncomplete {
                target: target.to_string(),
                detail: format!("{name} not listed after receive"),
            })
    }

    async fn discard_target(&self, target: &DatasetName) -> Result<()> {
        if Self::classify(target)? {
            return Err(Error::InvalidName {
                name: target.to_string(),
                reason: "a BTRFS receive target is a directory of received snapshots".into(),
            });
        }
        let dir = target.as_path();
        if !dir.is_dir() {
            return Err(Error::DatasetNotFound {
                dataset: target.to_string(),
            });
        }
        for (path, _) in self.snapshots(target).await? {
            self.btrfs
                .run(&["subvolume", "delete", Self::path_str(&path)?])
                .await?;
        }
        // The directory goes only when nothing else is in it.
        if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none()) {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    async fn protect(
        &self,
        _dataset: &DatasetName,
        _snapshot: &SnapshotName,
    ) -> Result<Protection> {
        Err(Error::Unsupported {
            what: "protecting a BTRFS snapshot (BTRFS has no holds or bookmarks; a missing base means a new full)"
                .to_owned(),
        })
    }

    async fn release(&self, _protection: &Protection) -> Result<()> {
        Err(Error::Unsupported {
            what: "releasing a protection on BTRFS (there are none)".to_owned(),
        })
    }
}

impl BtrfsSource {
    async fn send_args(&self, request: &SendRequest) -> Result<Vec<String>> {
        if !request.flags.is_empty() {
            return Err(Error::Unsupported {
                what: format!("send flag(s) {} with `btrfs send`", request.flags.code()),
            });
        }
        let (path, target) = self
            .snapshot_path(&request.dataset, &request.snapshot)
            .await?;
        let mut args = vec!["send".to_owned()];
        match &request.base {
            None => {}
            Some(SendBase::Snapshot(base)) => {
                let (base_path, base_info) = self.snapshot_path(&request.dataset, base).await?;
                if base_info.created_txg >= target.created_txg {
                    return Err(Error::BaseNotEarlier {
                        dataset: request.dataset.to_string(),
                        base: base.to_string(),
                        snapshot: request.snapshot.to_string(),
                    });
                }
                args.extend(["-p".to_owned(), Self::path_str(&base_path)?.to_owned()]);
            }
            Some(SendBase::Bookmark(_)) => {
                return Err(Error::Unsupported {
                    what: "bookmarks on BTRFS".to_owned(),
                });
            }
        }
        args.push(Self::path_str(&path)?.to_owned());
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subvolume_show_output_is_parsed() {
        let stdout = "recv ü/s1\n\tName: \t\t\ts1\n\tUUID: \t\t\t9b80db58-e4f2-bd44-9625-5c9de8b736f5\n\
            \tParent UUID: \t\t-\n\tReceived UUID: \t\tb6c40663-eb73-1146-a7d7-7159ad156478\n\
            \tCreation time: \t\t2026-11-29 00:23:06 +0000\n\tSubvolume ID: \t\t259\n\tGeneration: \t\t9\n\
            \tGen at creation: \t9\n\tParent ID: \t\t5\n\tTop level ID: \t\t5\n\tFlags: \t\t\treadonly\n\
            \tSnapshot(s):\n";
        let parsed = parse_show("btrfs subvolume show", stdout).unwrap();
        assert_eq!(parsed.uuid, "9b80db58-e4f2-bd44-9625-5c9de8b736f5");
        assert_eq!(parsed.parent_uuid, None);
        assert_eq!(
            parsed.received_uuid.as_deref(),
            Some("b6c40663-eb73-1146-a7d7-7159ad156478")
        );
        assert_eq!(parsed.generation_at_creation, 9);
        assert_eq!(parsed.id, 259);
        assert!(parsed.read_only);
        assert_eq!(parsed.created_at.unix_timestamp(), 1_795_911_786);
        assert!(parse_show("x", "path\n\tName: x\n").is_err());
    }
}
