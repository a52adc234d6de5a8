//! ZFS through `zfs` and `zpool`: OpenZFS 2.x and the older zfs-fuse dialect.
//!
//! Only command forms both dialects accept are relied on (`zfs get -H -p -o
//! name,property,value`, `zfs list -H -o name`, `zfs send [-i base]`, `zfs receive`);
//! everything newer (`send -nP`, `-L -c -e -w`, bookmarks) is probed first. A probe tells
//! an unknown option from a failed operation by exit status: both dialects exit with 2
//! for a usage error and 1 for an operation that failed.
//!
//! Receives never pass `-F`: an incremental onto a dataset changed since its last received
//! snapshot fails (reading files with `atime=on` counts as a change) rather than silently
//! rolling the change back. Restore targets are best kept `readonly=on` or `atime=off`
//! until the chain is complete.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::process::{read_prefix, ReceiveStream, SendStream, Tool};
use crate::stream_header::{parse_zfs_begin, ZfsBegin, ZFS_BEGIN_LEN};
use crate::{
    Capabilities, DatasetName, Protection, ReceiveOptions, SendBase, SendFlags, SendRequest,
    SnapshotIdentity, SnapshotInfo, SnapshotName, SnapshotSource, SourceKind, ZIB_CREATED_PROPERTY,
};

/// The exit status both `zfs` dialects use for a usage error (such as an unknown option).
const USAGE_ERROR: i32 = 2;
/// The hold tag used when a snapshot is protected by `zfs hold`.
pub const DEFAULT_HOLD_TAG: &str = "zib";
/// Snapshot name used by probes; probes pass `-n` so even an existing one is not sent.
const PROBE_SNAPSHOT: &str = "zib-capability-probe";
const SNAPSHOT_PROPERTIES: &str = "guid,createtxg,creation,zib:created";
/// Bookmarks carry no user properties.
const BOOKMARK_PROPERTIES: &str = "guid,createtxg,creation";
const PACKAGE: &str = "zfsutils-linux (OpenZFS) or zfs-fuse";

/// A ZFS snapshot source driving the `zfs` and `zpool` commands.
#[derive(Debug, Clone)]
pub struct ZfsSource {
    zfs: Tool,
    zpool: Tool,
    hold_tag: String,
}

impl Default for ZfsSource {
    fn default() -> Self {
        ZfsSource::new()
    }
}

impl ZfsSource {
    /// A source using `zfs` and `zpool` from `PATH`.
    pub fn new() -> Self {
        ZfsSource::with_binaries("zfs", "zpool")
    }

    /// A source using the given `zfs` and `zpool` programs.
    pub fn with_binaries(zfs: impl Into<PathBuf>, zpool: impl Into<PathBuf>) -> Self {
        ZfsSource {
            zfs: Tool::new(zfs, PACKAGE),
            zpool: Tool::new(zpool, PACKAGE),
            hold_tag: DEFAULT_HOLD_TAG.to_owned(),
        }
    }

    /// Uses `tag` for holds instead of [`DEFAULT_HOLD_TAG`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] when `tag` is empty or outside ZFS's character set.
    pub fn with_hold_tag(mut self, tag: &str) -> Result<Self> {
        SnapshotName::zfs(tag)?;
        self.hold_tag = tag.to_owned();
        Ok(self)
    }

    /// `dataset` and every file system and volume below it, parents before children (for
    /// a recursive backup, where each is its own chain).
    ///
    /// # Errors
    ///
    /// [`Error::DatasetNotFound`] when `dataset` does not exist; the tool's errors.
    pub async fn descendants(&self, dataset: &DatasetName) -> Result<Vec<DatasetName>> {
        self.ensure_dataset(dataset).await?;
        let listing = self
            .zfs
            .run(&[
                "list",
                "-H",
                "-r",
                "-o",
                "name",
                "-t",
                "filesystem,volume",
                dataset.as_str(),
            ])
            .await?;
        listing
            .lines()
            .filter(|line| !line.is_empty())
            .map(DatasetName::zfs)
            .collect()
    }

    fn check_dataset(dataset: &DatasetName) -> Result<()> {
        if dataset.is_zfs() {
            Ok(())
        } else {
            Err(Error::InvalidName {
                name: dataset.to_string(),
                reason: "a ZFS source needs a ZFS dataset name (DatasetName::zfs), not a path"
                    .to_owned(),
            })
        }
    }

    /// Fails with [`Error::DatasetNotFound`] unless the dataset exists.
    ///
    /// When the direct query fails, the pool and its datasets are listed to tell "does not
    /// exist" from other failures without reading the tool's message.
    async fn ensure_dataset(&self, dataset: &DatasetName) -> Result<()> {
        Self::check_dataset(dataset)?;
        let direct = self
            .zfs
            .output(&[
                "list",
                "-H",
                "-o",
                "name",
                "-t",
                "filesystem,volume",
                dataset.as_str(),
            ])
            .await?;
        if direct.status.success() {
            return Ok(());
        }
        if !self.dataset_exists_in_pool_listing(dataset).await? {
            return Err(Error::DatasetNotFound {
                dataset: dataset.to_string(),
            });
        }
        Err(direct.failure())
    }

    async fn dataset_exists_in_pool_listing(&self, dataset: &DatasetName) -> Result<bool> {
        let pools = self.zpool.run(&["list", "-H", "-o", "name"]).await?;
        if !pools.lines().any(|pool| pool == dataset.pool()) {
            return Ok(false);
        }
        let all = self
            .zfs
            .run(&[
                "list",
                "-H",
                "-o",
                "name",
                "-r",
                "-t",
                "filesystem,volume",
                dataset.pool(),
            ])
            .await?;
        Ok(all.lines().any(|name| name == dataset.as_str()))
    }

    async fn dataset_exists(&self, dataset: &DatasetName) -> Result<bool> {
        match self.ensure_dataset(dataset).await {
            Ok(()) => Ok(true),
            Err(Error::DatasetNotFound { .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }

    async fn version(&self) -> Result<String> {
        let output = self.zfs.output(&["version"]).await?;
        Ok(match output.status.success() {
            true => output
                .stdout
                .lines()
                .next()
                .unwrap_or("zfs")
                .trim()
                .to_owned(),
            false => {
                "zfs without `zfs version` (zfs-fuse or another pre-OpenZFS-0.8 dialect)".to_owned()
            }
        })
    }

    /// True when `feature@bookmarks` is enabled or active on the dataset's pool.
    async fn bookmarks_enabled(&self, dataset: &DatasetName) -> Result<bool> {
        let output = self
            .zpool
            .output(&[
                "get",
                "-H",
                "-p",
                "-o",
                "value",
                "feature@bookmarks",
                dataset.pool(),
            ])
            .await?;
        if !output.status.success() {
            // zfs-fuse knows neither `-H` for `zpool get` nor feature flags: no bookmarks.
            tracing::debug!(stderr = %output.stderr.trim(), "no feature@bookmarks on this pool/tool");
            return Ok(false);
        }
        Ok(matches!(output.stdout.trim(), "enabled" | "active"))
    }

    /// Whether `zfs send -n -P <extra>` is understood (exit status other than usage error).
    async fn send_accepts(&self, dataset: &DatasetName, extra: &[&str]) -> Result<bool> {
        let probe = format!("{dataset}@{PROBE_SNAPSHOT}");
        let mut args = vec!["send", "-n", "-P"];
        args.extend_from_slice(extra);
        args.push(&probe);
        let output = self.zfs.output(&args).await?;
        Ok(output.status.code() != Some(USAGE_ERROR))
    }

    async fn supported_send_flags(&self, dataset: &DatasetName) -> Result<SendFlags> {
        if !self.send_accepts(dataset, &[]).await? {
            return Ok(SendFlags::NONE);
        }
        Ok(SendFlags {
            large_blocks: self.send_accepts(dataset, &["-L"]).await?,
            compressed: self.send_accepts(dataset, &["-c"]).await?,
            embedded: self.send_accepts(dataset, &["-e"]).await?,
            raw: self.send_accepts(dataset, &["-w"]).await?,
        })
    }

    /// Reads the snapshot properties of `names` (full `pool/fs@snap` names).
    /// Runs a `zfs get -H -p -o name,property,value` and parses the snapshots of
    /// `dataset` in its output (other lines, such as child datasets, are ignored), oldest
    /// first.
    ///
    /// `separator` is `@` for snapshots, `#` for bookmarks.
    async fn snapshot_infos(
        &self,
        args: &[&str],
        dataset: &DatasetName,
        separator: char,
    ) -> Result<Vec<SnapshotInfo>> {
        let output = self.zfs.run(args).await?;
        let command = self.zfs.describe(args);
        let prefix = format!("{dataset}{separator}");
        let mut by_name: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for line in output.lines().filter(|line| line.starts_with(&prefix)) {
            // Names may hold spaces but never tabs, so three tab-separated fields remain.
            let mut fields = line[prefix.len()..].splitn(3, '\t');
            let (Some(name), Some(property), Some(value)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(Error::UnexpectedOutput {
                    command,
                    detail: format!("line {line:?} is not name<TAB>property<TAB>value"),
                });
            };
            by_name
                .entry(name.to_owned())
                .or_default()
                .insert(property.to_owned(), value.to_owned());
        }
        let mut infos = by_name
            .iter()
            .map(|(name, properties)| parse_snapshot(&command, name, properties))
            .collect::<Result<Vec<_>>>()?;
        infos.sort_by_key(|info| info.created_txg);
        Ok(infos)
    }

    async fn snapshot_info(
        &self,
        dataset: &DatasetName,
        snapshot: &SnapshotName,
    ) -> Result<SnapshotInfo> {
        let list = self.list_snapshots(dataset).await?;
        list.into_iter()
            .find(|info| &info.name == snapshot)
            .ok_or_else(|| Error::SnapshotNotFound {
                dataset: dataset.to_string(),
                snapshot: snapshot.to_string(),
            })
    }

    async fn bookmark_guid(
        &self,
        dataset: &DatasetName,
        bookmark: &SnapshotName,
    ) -> Result<Option<u64>> {
        let full = format!("{dataset}#{bookmark}");
        let output = self
            .zfs
            .output(&["get", "-H", "-p", "-o", "value", "guid", &full])
            .await?;
        if !output.status.success() {
            return Ok(None);
        }
        let command = output.command.clone();
        parse_u64(&command, "guid", output.stdout.trim()).map(Some)
    }

    async fn userrefs(&self, full_name: &str) -> Result<u64> {
        let args = ["get", "-H", "-p", "-o", "value", "userrefs", full_name];
        let value = self.zfs.run(&args).await?;
        parse_u64(&self.zfs.describe(&args), "userrefs", value.trim())
    }

    /// Checks the request and returns the `zfs send` arguments after `send`.
    async fn send_args(&self, request: &SendRequest) -> Result<Vec<String>> {
        request.snapshot.check_zfs()?;
        let dataset = &request.dataset;
        if !request.flags.is_empty() {
            Self::check_dataset(dataset)?;
            let missing = request
                .flags
                .unsupported_by(&self.supported_send_flags(dataset).await?);
            if !missing.is_empty() {
                return Err(Error::Unsupported {
                    what: format!(
                        "`zfs send` flag(s) {missing} with {} on {dataset}",
                        self.version().await?
                    ),
                });
            }
        }
        let target = self.snapshot_info(dataset, &request.snapshot).await?;
        let mut args = request.flags.args();
        match &request.base {
            None => {}
            Some(SendBase::Snapshot(base)) => {
                base.check_zfs()?;
                let base_info = self.snapshot_info(dataset, base).await?;
                if base_info.created_txg >= target.created_txg {
                    return Err(Error::BaseNotEarlier {
                        dataset: dataset.to_string(),
                        base: base.to_string(),
                        snapshot: request.snapshot.to_string(),
                    });
                }
                args.extend(["-i".to_owned(), format!("{dataset}@{base}")]);
            }
            Some(SendBase::Bookmark(bookmark)) => {
                bookmark.check_zfs()?;
                if !self.bookmarks_enabled(dataset).await? {
                    return Err(Error::Unsupported {
                        what: format!("bookmarks on the pool of {dataset}"),
                    });
                }
                if self.bookmark_guid(dataset, bookmark).await?.is_none() {
                    return Err(Error::SnapshotNotFound {
                        dataset: dataset.to_string(),
                        snapshot: format!("#{bookmark}"),
                    });
                }
                args.extend(["-i".to_owned(), format!("{dataset}#{bookmark}")]);
            }
        }
        args.push(format!("{dataset}@{}", request.snapshot));
        Ok(args)
    }

    /// Removes what a failed receive may have left: for a full stream the dataset (which
    /// did not exist before), for an incremental the stream's snapshot if it appeared.
    async fn discard_failed_receive(&self, target: &DatasetName, begin: &ZfsBegin) {
        if begin.from_guid.is_none() {
            return self.discard_failed_full_receive(target).await;
        }
        let wanted = SnapshotIdentity::ZfsGuid(begin.to_guid);
        match self.list_snapshots(target).await {
            Ok(snapshots) => {
                for snapshot in snapshots.iter().filter(|info| info.identity == wanted) {
                    tracing::warn!(%target, snapshot = %snapshot.name, "removing the snapshot of a failed receive");
                    if let Err(error) = self
                        .zfs
                        .run(&["destroy", &format!("{target}@{}", snapshot.name)])
                        .await
                    {
                        tracing::error!(%target, %error, "could not remove the snapshot of a failed receive");
                    }
                }
            }
            Err(error) => {
                tracing::error!(%target, %error, "could not check for a snapshot left by a failed receive")
            }
        }
    }

    async fn discard_failed_full_receive(&self, target: &DatasetName) {
        match self.dataset_exists(target).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(%target, "removing the dataset left by a failed receive");
                if let Err(error) = self.zfs.run(&["destroy", "-r", target.as_str()]).await {
                    tracing::error!(%target, %error, "could not remove the dataset left by a failed receive");
                }
            }
            Err(error) => {
                tracing::error!(%target, %error, "could not check for a dataset left by a failed receive")
            }
        }
    }
}

/// How often `discard_target` asks to destroy a dataset that is busy (0.5 s, 1 s, 1.5 s,
/// 2 s apart) before the error stands.
const DESTROY_ATTEMPTS: u32 = 5;

fn parse_u64(command: &str, property: &str, value: &str) -> Result<u64> {
    value.parse().map_err(|_| Error::UnexpectedOutput {
        command: command.to_owned(),
        detail: format!("{property} is {value:?}, not an integer"),
    })
}

fn parse_snapshot(
    command: &str,
    short: &str,
    properties: &BTreeMap<String, String>,
) -> Result<SnapshotInfo> {
    let get = |property: &str| {
        properties
            .get(property)
            .ok_or_else(|| Error::UnexpectedOutput {
                command: command.to_owned(),
                detail: format!("no {property} for snapshot {short:?}"),
            })
    };
    let guid = parse_u64(command, "guid", get("guid")?)?;
    let created_txg = parse_u64(command, "createtxg", get("createtxg")?)?;
    let creation = parse_u64(command, "creation", get("creation")?)?;
    let created_at = i64::try_from(creation)
        .ok()
        .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
        .ok_or_else(|| Error::UnexpectedOutput {
            command: command.to_owned(),
            detail: format!("creation {creation} out of range"),
        })?;
    let zib_created = properties
        .get(ZIB_CREATED_PROPERTY)
        .filter(|value| value.as_str() != "-")
        .cloned();
    // Names listed by zfs are valid by construction; refuse rather than guess otherwise.
    let name = SnapshotName::zfs(short)?;
    Ok(SnapshotInfo {
        name,
        identity: SnapshotIdentity::ZfsGuid(guid),
        created_txg,
        created_at,
        zib_created,
    })
}

#[async_trait]
impl SnapshotSource for ZfsSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Zfs
    }

    async fn capabilities(&self, dataset: &DatasetName) -> Result<Capabilities> {
        self.ensure_dataset(dataset).await?;
        let send_flags = self.supported_send_flags(dataset).await?;
        Ok(Capabilities {
            tool: self.version().await?,
            size_estimates: self.send_accepts(dataset, &[]).await?,
            bookmarks: self.bookmarks_enabled(dataset).await?,
            // Holds exist since pool version 18 (2009); every pool either tool opens has them.
            holds: true,
            user_properties: true,
            send_flags,
        })
    }

    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        self.ensure_dataset(dataset).await?;
        // `-r -d 1` covers the dataset's own snapshots (and its direct children, which are
        // filtered out below); both dialects accept it, unlike `zfs get -t snapshot`.
        let args = [
            "get",
            "-H",
            "-p",
            "-r",
            "-d",
            "1",
            "-o",
            "name,property,value",
            SNAPSHOT_PROPERTIES,
            dataset.as_str(),
        ];
        self.snapshot_infos(&args, dataset, '@').await
    }

    async fn list_bookmarks(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        self.ensure_dataset(dataset).await?;
        if !self.bookmarks_enabled(dataset).await? {
            return Ok(Vec::new());
        }
        let args = [
            "get",
            "-H",
            "-p",
            "-r",
            "-d",
            "1",
            "-t",
            "bookmark",
            "-o",
            "name,property,value",
            BOOKMARK_PROPERTIES,
            dataset.as_str(),
        ];
        self.snapshot_infos(&args, dataset, '#').await
    }

    async fn create_snapshot(
        &self,
        dataset: &DatasetName,
        snapshot: &SnapshotName,
        marker: Option<&str>,
    ) -> Result<SnapshotInfo> {
        snapshot.check_zfs()?;
        let full = format!("{dataset}@{snapshot}");
        let property = marker.map(|value| format!("{ZIB_CREATED_PROPERTY}={value}"));
        let mut args = vec!["snapshot"];
        if let Some(property) = &property {
            args.extend(["-o", property.as_str()]);
        }
        args.push(&full);
        let output = self.zfs.output(&args).await?;
        if !output.status.success() {
            self.ensure_dataset(dataset).await?;
            if self
                .list_snapshots(dataset)
                .await?
                .iter()
                .any(|info| &info.name == snapshot)
            {
                return Err(Error::SnapshotExists {
                    dataset: dataset.to_string(),
                    snapshot: snapshot.to_string(),
                });
            }
            return Err(output.failure());
        }
        let info = self
            .snapshot_infos(
                &[
                    "get",
                    "-H",
                    "-p",
                    "-o",
                    "name,property,value",
                    SNAPSHOT_PROPERTIES,
                    &full,
                ],
                dataset,
                '@',
            )
            .await?;
        info.into_iter()
            .next()
            .ok_or_else(|| Error::SnapshotNotFound {
                dataset: dataset.to_string(),
                snapshot: snapshot.to_string(),
            })
    }

    async fn destroy_snapshot(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<()> {
        snapshot.check_zfs()?;
        self.snapshot_info(dataset, snapshot).await?;
        // Never -r/-R: only this one snapshot, and a held snapshot stays (zfs refuses).
        self.zfs
            .run(&["destroy", &format!("{dataset}@{snapshot}")])
            .await
            .map(drop)
    }

    async fn estimate_send_size(&self, request: &SendRequest) -> Result<Option<u64>> {
        let send_args = self.send_args(request).await?;
        let mut args = vec!["send", "-n", "-P"];
        args.extend(send_args.iter().map(String::as_str));
        let output = self.zfs.output(&args).await?;
        if output.status.code() == Some(USAGE_ERROR) {
            return Ok(None);
        }
        let command = output.command.clone();
        let stdout = output.into_stdout()?;
        // `-P` prints tab-separated lines; the total is on the line starting with "size".
        let size = stdout
            .lines()
            .filter_map(|line| line.strip_prefix("size\t"))
            .next_back()
            .ok_or_else(|| Error::UnexpectedOutput {
                command: command.clone(),
                detail: "no `size` line".to_owned(),
            })?;
        parse_u64(&command, "size", size.trim()).map(Some)
    }

    async fn send(&self, request: &SendRequest) -> Result<SendStream> {
        let send_args = self.send_args(request).await?;
        let mut args = vec!["send"];
        args.extend(send_args.iter().map(String::as_str));
        self.zfs.stream(&args)
    }

    async fn receive(
        &self,
        target: &DatasetName,
        mut stream: ReceiveStream,
        options: &ReceiveOptions,
    ) -> Result<SnapshotInfo> {
        Self::check_dataset(target)?;
        let prefix = read_prefix(&mut stream, ZFS_BEGIN_LEN).await?;
        let begin = parse_zfs_begin(&prefix)?;
        let exists = self.dataset_exists(target).await?;
        match begin.from_guid {
            None if exists => {
                return Err(Error::TargetExists {
                    target: target.to_string(),
                })
            }
            None => {
                if let Some((parent, _)) = target.as_str().rsplit_once('/') {
                    let parent = DatasetName::zfs(parent)?;
                    self.ensure_dataset(&parent).await?;
                } else {
                    return Err(Error::TargetExists {
                        target: target.to_string(),
                    });
                }
            }
            Some(from) => {
                let has_base = exists
                    && self
                        .list_snapshots(target)
                        .await?
                        .iter()
                        .any(|info| info.identity == SnapshotIdentity::ZfsGuid(from));
                if !has_base {
                    return Err(Error::BaseMissing {
                        target: target.to_string(),
                        base: format!("with guid {from}"),
                    });
                }
            }
        }
        // OpenZFS receives unmounted (`-u`): nothing browses or changes the target while
        // the chain comes in. zfs-fuse knows no `-u` (it mounts what it receives).
        let openzfs = self.zfs.output(&["version"]).await?.status.success();
        let mut args = vec!["receive"];
        if openzfs {
            args.push("-u");
        }
        args.push(target.as_str());
        let result = self
            .zfs
            .feed(&args, prefix.freeze(), stream, &mut |_| {})
            .await;
        let finished = match result {
            Ok(finished) if finished.status.success() => finished,
            Ok(finished) => {
                self.discard_failed_receive(target, &begin).await;
                return Err(finished.failure());
            }
            Err(error) => {
                self.discard_failed_receive(target, &begin).await;
                return Err(error);
            }
        };
        tracing::debug!(stdout = %finished.stdout.trim(), "zfs receive finished");
        let wanted = SnapshotIdentity::ZfsGuid(begin.to_guid);
        let received = self
            .list_snapshots(target)
            .await?
            .into_iter()
            .find(|info| info.identity == wanted);
        match received {
            Some(info) => {
                // Both dialects: zfs-fuse's `receive` takes neither `-u` nor `-o`, so the
                // property is set just after. A read-only file system updates no access
                // times, so nothing changes it before the next incremental.
                if options.more_follow {
                    self.zfs
                        .run(&["set", "readonly=on", target.as_str()])
                        .await?;
                } else {
                    // Writable again at the end of a chain (a no-op when no receive of
                    // this chain set it: `readonly` then is not set locally).
                    self.zfs
                        .run(&["inherit", "readonly", target.as_str()])
                        .await?;
                    if openzfs {
                        // The chain is in: mount it where its properties say. A failure
                        // (mountpoint=none or legacy, a busy directory) loses nothing.
                        if let Err(error) = self.zfs.run(&["mount", target.as_str()]).await {
                            tracing::warn!(%target, %error, "the restored dataset was received but not mounted; mount it with `zfs mount`");
                        }
                    }
                }
                Ok(info)
            }
            None => {
                self.discard_failed_receive(target, &begin).await;
                Err(Error::ReceiveIncomplete {
                    target: target.to_string(),
                    detail: format!(
                        "no snapshot with guid {} after `zfs receive` succeeded",
                        begin.to_guid
                    ),
                })
            }
        }
    }

    async fn discard_target(&self, target: &DatasetName) -> Result<()> {
        self.ensure_dataset(target).await?;
        // Only this dataset and its snapshots; never `-R` (clones elsewhere stay). A
        // dataset received a moment ago may still be "busy" (zfs-fuse unmounts it
        // lazily): asked again a few times before the error stands.
        let mut attempt = 1;
        loop {
            match self.zfs.run(&["destroy", "-r", target.as_str()]).await {
                Ok(_) => return Ok(()),
                Err(Error::CommandFailed { ref stderr, .. })
                    if stderr.contains("dataset is busy") && attempt < DESTROY_ATTEMPTS =>
                {
                    tracing::debug!(%target, attempt, "the dataset is busy; destroying it again shortly");
                    tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt)))
                        .await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn protect(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<Protection> {
        let info = self.snapshot_info(dataset, snapshot).await?;
        let SnapshotIdentity::ZfsGuid(guid) = info.identity else {
            return Err(Error::UnexpectedOutput {
                command: "zfs get guid".to_owned(),
                detail: "not a ZFS identity".to_owned(),
            });
        };
        let full = format!("{dataset}@{snapshot}");
        if self.bookmarks_enabled(dataset).await? {
            let existing = self.bookmark_guid(dataset, snapshot).await?;
            if existing.is_none() {
                self.zfs
                    .run(&["bookmark", &full, &format!("{dataset}#{snapshot}")])
                    .await?;
            }
            return match self.bookmark_guid(dataset, snapshot).await? {
                Some(found) if found == guid => Ok(Protection::Bookmark {
                    dataset: dataset.clone(),
                    bookmark: snapshot.clone(),
                    guid,
                }),
                found => Err(Error::ProtectionNotVerified {
                    snapshot: full,
                    detail: format!("bookmark #{snapshot} has guid {found:?}, the snapshot {guid}"),
                }),
            };
        }
        // `zfs holds` cannot list on zfs-fuse, so the hold is verified through `userrefs`.
        let before = self.userrefs(&full).await?;
        self.zfs.run(&["hold", &self.hold_tag, &full]).await?;
        let after = self.userrefs(&full).await?;
        if after != before + 1 {
            return Err(Error::ProtectionNotVerified {
                snapshot: full,
                detail: format!("userrefs went from {before} to {after} after `zfs hold`"),
            });
        }
        Ok(Protection::Hold {
            dataset: dataset.clone(),
            snapshot: snapshot.clone(),
            tag: self.hold_tag.clone(),
        })
    }

    async fn release(&self, protection: &Protection) -> Result<()> {
        match protection {
            Protection::Bookmark {
                dataset, bookmark, ..
            } => {
                let full = format!("{dataset}#{bookmark}");
                self.zfs.run(&["destroy", &full]).await?;
                if self.bookmark_guid(dataset, bookmark).await?.is_some() {
                    return Err(Error::ProtectionNotVerified {
                        snapshot: full,
                        detail: "bookmark still exists".to_owned(),
                    });
                }
            }
            Protection::Hold {
                dataset,
                snapshot,
                tag,
            } => {
                let full = format!("{dataset}@{snapshot}");
                let before = self.userrefs(&full).await?;
                self.zfs.run(&["release", tag, &full]).await?;
                let after = self.userrefs(&full).await?;
                if after + 1 != before {
                    return Err(Error::ProtectionNotVerified {
                        snapshot: full,
                        detail: format!(
                            "userrefs went from {before} to {after} after `zfs release`"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}
