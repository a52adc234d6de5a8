//! A custom `SnapshotSource`: snapshots that are `zfs send` streams kept as files, backed
//! up, listed and received back through zib's public API. Start here when zib should back
//! up something that is neither ZFS nor BTRFS.
//!
//! Some people keep `zfs send` output as files (`tank-photos@2026-01.zfs`, ...) on a disk
//! that is not ZFS. This source treats a directory of such files as one "dataset": each
//! `NAME.stream` file is a full stream of snapshot `NAME`. It sends a file's bytes, and
//! receives a stream by writing a file. Identity is the stream's content (a snapshot's
//! identity must survive a round trip: here the received file has the same bytes, so the
//! same identity).
//!
//! ```text
//! cargo run -p zib-examples --example stream_files_source -- STREAM_DIR REPOSITORY_DIR
//! ```
//!
//! backs up every `*.stream` file of STREAM_DIR (the newest one on each run; run it once
//! per file) into a local-directory repository, then lists the catalog. `cargo test -p
//! zib-examples --example stream_files_source` runs a whole round trip in temporary
//! directories.
//!
//! What a source must get right (the trait's documentation says it in MUST terms, and the
//! snapshot conformance suite in `zib-test-utils` checks it): a send stream whose last
//! item is an error when the send failed; a receive that leaves nothing that looks
//! complete when its stream fails; identities that survive send and receive.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use zib_engine::snapshot_source::{
    Capabilities, Error, Protection, ReceiveStream, Result, SendFlags, SendRequest, SendStream,
    SnapshotIdentity, SnapshotInfo, SnapshotName, SourceKind,
};
use zib_engine::{
    BackupOptions, BackupOutcome, DatasetName, Host, InitOptions, Location, NoProgress, Passphrase,
    Repository, SnapshotChoice, SnapshotSource,
};

/// A directory of `NAME.stream` files, each a full send stream of snapshot `NAME`.
struct StreamFiles {
    dir: PathBuf,
}

impl StreamFiles {
    fn path_of(&self, snapshot: &SnapshotName) -> PathBuf {
        self.dir.join(format!("{snapshot}.stream"))
    }

    fn info(path: &Path, order: u64) -> Result<SnapshotInfo> {
        let io = |source| Error::Io {
            command: format!("read {}", path.display()),
            source,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let mut guid = [0u8; 8];
        guid.copy_from_slice(&digest.as_ref()[..8]);
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(io)?;
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default();
        Ok(SnapshotInfo::new(
            SnapshotName::zfs(name)?,
            SnapshotIdentity::ZfsGuid(u64::from_le_bytes(guid)),
            order,
            time::OffsetDateTime::from(modified),
            None,
        ))
    }
}

#[async_trait]
impl SnapshotSource for StreamFiles {
    // Its files are ZFS streams: `zfs receive` is what restores them by hand.
    fn kind(&self) -> SourceKind {
        SourceKind::Zfs
    }

    async fn capabilities(&self, _dataset: &DatasetName) -> Result<Capabilities> {
        // No estimates, no bookmarks, no holds (a file stays until someone deletes it),
        // no user properties, no extra send flags.
        Ok(Capabilities::new(
            "stream files".into(),
            false,
            false,
            false,
            false,
            SendFlags::NONE,
        ))
    }

    async fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)
            .map_err(|_| Error::DatasetNotFound {
                dataset: dataset.to_string(),
            })?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "stream"))
            .filter_map(|path| Some((std::fs::metadata(&path).ok()?.modified().ok()?, path)))
            .collect();
        files.sort();
        files
            .iter()
            .enumerate()
            .map(|(order, (_, path))| Self::info(path, order as u64 + 1))
            .collect()
    }

    async fn create_snapshot(
        &self,
        _dataset: &DatasetName,
        _snapshot: &SnapshotName,
        _marker: Option<&str>,
    ) -> Result<SnapshotInfo> {
        Err(Error::Unsupported {
            what: "creating snapshots: the stream files are made elsewhere".into(),
        })
    }

    async fn destroy_snapshot(&self, dataset: &DatasetName, snapshot: &SnapshotName) -> Result<()> {
        // zib only destroys snapshots it created, and this source creates none.
        Err(Error::SnapshotNotFound {
            dataset: dataset.to_string(),
            snapshot: snapshot.to_string(),
        })
    }

    async fn estimate_send_size(&self, _request: &SendRequest) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn send(&self, request: &SendRequest) -> Result<SendStream> {
        if request.base.is_some() {
            return Err(Error::Unsupported {
                what: "incremental streams (each file is a full stream)".into(),
            });
        }
        let path = self.path_of(&request.snapshot);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| Error::SnapshotNotFound {
                dataset: request.dataset.to_string(),
                snapshot: request.snapshot.to_string(),
            })?;
        let command = format!("read {}", path.display());
        // A read error ends the stream with an error item: a failed send is never a
        // short, clean one.
        let stream = tokio_util::io::ReaderStream::new(file).map(move |chunk| {
            chunk.map_err(|source| Error::Io {
                command: command.clone(),
                source,
            })
        });
        Ok(SendStream::from_stream(stream))
    }

    async fn receive(
        &self,
        target: &DatasetName,
        mut stream: ReceiveStream,
    ) -> Result<SnapshotInfo> {
        // The target is a directory; the whole stream is written to a temporary file
        // that becomes `received.stream` only once the stream ended cleanly.
        let dir = PathBuf::from(target.as_str());
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            command: format!("create {}", dir.display()),
            source,
        })?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk.map_err(|source| Error::InputFailed { source })?;
            bytes.extend_from_slice(&chunk);
        }
        let temporary = dir.join("received.stream.partial");
        let path = dir.join("received.stream");
        std::fs::write(&temporary, &bytes)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|source| Error::Io {
                command: format!("write {}", path.display()),
                source,
            })?;
        Self::info(&path, 1)
    }

    async fn protect(
        &self,
        _dataset: &DatasetName,
        _snapshot: &SnapshotName,
    ) -> Result<Protection> {
        Err(Error::Unsupported {
            what: "protecting snapshots (keep the newest file)".into(),
        })
    }

    async fn release(&self, _protection: &Protection) -> Result<()> {
        Ok(())
    }
}

/// Backs up the newest stream file of `streams` into the repository at `repository_dir`
/// (initialised on first use) and prints the catalog.
async fn run(streams: &Path, repository_dir: &Path, state_dir: &Path) -> zib_engine::Result<()> {
    let passphrase = Passphrase::new(
        std::env::var("ZIB_PASSPHRASE").unwrap_or_else(|_| "example passphrase".into()),
    );
    std::fs::create_dir_all(repository_dir).map_err(|source| zib_engine::Error::LocalState {
        path: repository_dir.to_owned(),
        action: "create the repository directory",
        source,
    })?;
    let location =
        Location::from_url(&repository_dir.display().to_string(), &Default::default()).await?;
    let repository = match Repository::open(&location, &passphrase, Host::new(state_dir)).await {
        Ok(repository) => repository,
        Err(zib_engine::Error::NotARepository { .. }) => {
            let (repository, report) = Repository::init(
                &location,
                &passphrase,
                &InitOptions::default(),
                Host::new(state_dir),
            )
            .await?;
            println!(
                "initialised repository {}; keep an offline copy of its keyring ({} bytes)",
                repository.id(),
                report.keyring.len()
            );
            repository
        }
        Err(error) => return Err(error),
    };
    let source = StreamFiles {
        dir: streams.to_owned(),
    };
    let dataset = DatasetName::zfs("streams/files")?;
    let newest = source
        .list_snapshots(&dataset)
        .await?
        .pop()
        .map(|snapshot| snapshot.name);
    let Some(newest) = newest else {
        println!("no *.stream file in {}", streams.display());
        return Ok(());
    };
    let options = BackupOptions {
        snapshot: SnapshotChoice::Existing(newest),
        ..BackupOptions::default()
    };
    match repository
        .backup(&source, &dataset, &options, &NoProgress)
        .await?
    {
        BackupOutcome::Committed(backup) => println!(
            "backed up {} ({} bytes in {} volume(s))",
            backup.manifest.snapshot_name, backup.manifest.stream_len, backup.manifest.volume_count
        ),
        BackupOutcome::UpToDate { decision } => println!("up to date: {}", decision.reason),
    }
    for (dataset, backups) in &repository.catalog().await?.datasets {
        for backup in backups {
            println!(
                "{dataset} {} {}",
                backup.manifest.backup_id, backup.manifest.snapshot_name
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [streams, repository] = &args[..] else {
        eprintln!("usage: stream_files_source STREAM_DIR REPOSITORY_DIR");
        return std::process::ExitCode::from(2);
    };
    let state = PathBuf::from(format!("{repository}.state"));
    match run(Path::new(streams), Path::new(repository), &state).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn stream_files_round_trip_through_a_repository() {
        let dir = tempfile::tempdir().unwrap();
        let streams = dir.path().join("streams");
        std::fs::create_dir(&streams).unwrap();
        let content = zib_test_utils::data::TestRng::new(3).bytes(3 << 20);
        std::fs::write(streams.join("photos-2026-01.stream"), &content).unwrap();
        let repository_dir = dir.path().join("repository");
        let state = dir.path().join("state");
        run(&streams, &repository_dir, &state).await.unwrap();

        // Read back through the public API: the catalog, then a receive.
        let location = Location::from_url(repository_dir.to_str().unwrap(), &Default::default())
            .await
            .unwrap();
        let repository = Repository::open(
            &location,
            &Passphrase::new("example passphrase".into()),
            Host::new(&state),
        )
        .await
        .unwrap();
        let catalog = repository.catalog().await.unwrap();
        let dataset_id = catalog.dataset_named("streams/files").unwrap();
        let backup = catalog.backups(dataset_id)[0].manifest.backup_id;
        let source = StreamFiles {
            dir: streams.clone(),
        };
        let target = dir.path().join("restored");
        repository
            .receive_chain(
                &catalog,
                dataset_id,
                backup,
                &source,
                &DatasetName::path(&target).unwrap(),
                &NoProgress,
            )
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(target.join("received.stream")).unwrap(),
            content
        );
    }
}
