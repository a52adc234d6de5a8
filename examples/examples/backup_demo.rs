//! zib's main job driven from library code: back up a ZFS dataset (or a BTRFS subvolume)
//! into a local-directory repository, list the catalog read back from the repository,
//! and receive the newest backup chain into another dataset.
//!
//! ```text
//! ZIB_PASSPHRASE=... backup_demo init    REPO_DIR
//! ZIB_PASSPHRASE=... backup_demo backup  REPO_DIR zfs POOL/DATASET
//! ZIB_PASSPHRASE=... backup_demo backup  REPO_DIR btrfs SUBVOLUME SNAPSHOT_DIR
//! ZIB_PASSPHRASE=... backup_demo catalog REPO_DIR
//! ZIB_PASSPHRASE=... backup_demo restore REPO_DIR zfs POOL/DATASET POOL/TARGET
//! ```
//!
//! The passphrase comes from the environment, never from the command line. `scripts/demo.sh`
//! runs this end to end on a throwaway zfs-fuse pool.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a demo talks to its user

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use zib_engine::snapshot_source::btrfs::BtrfsSource;
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::{
    BackupKind, BackupOptions, BackupOutcome, DatasetName, Host, InitOptions, Location, NoProgress,
    Passphrase, Repository, SnapshotSource, VolumeShape,
};

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn passphrase() -> DemoResult<Passphrase> {
    let text = std::env::var("ZIB_PASSPHRASE")
        .map_err(|_| "set ZIB_PASSPHRASE to the repository's passphrase")?;
    Ok(Passphrase::new(text))
}

async fn location(dir: &str) -> DemoResult<Location> {
    std::fs::create_dir_all(dir)?;
    Ok(Location::from_url(dir, &Default::default()).await?)
}

/// Lock and resume journal, next to the demo repository.
fn host(dir: &str) -> Host {
    Host::new(PathBuf::from(format!(
        "{}.state",
        dir.trim_end_matches('/')
    )))
}

async fn open(dir: &str) -> DemoResult<Arc<Repository>> {
    Ok(Arc::new(
        Repository::open(&location(dir).await?, &passphrase()?, host(dir)).await?,
    ))
}

fn source(args: &[String]) -> DemoResult<(Box<dyn SnapshotSource>, DatasetName)> {
    match args {
        [kind, dataset, ..] if kind == "zfs" => {
            Ok((Box::new(ZfsSource::new()), DatasetName::zfs(dataset)?))
        }
        [kind, subvolume, snapshot_dir, ..] if kind == "btrfs" => Ok((
            Box::new(BtrfsSource::new(snapshot_dir)),
            DatasetName::path(subvolume)?,
        )),
        _ => Err("name the source: `zfs POOL/DATASET` or `btrfs SUBVOLUME SNAPSHOT_DIR`".into()),
    }
}

async fn run(args: &[String]) -> DemoResult<()> {
    match args {
        [command, dir] if command == "init" => {
            let (repository, report) = Repository::init(
                &location(dir).await?,
                &passphrase()?,
                &InitOptions::default(),
                host(dir),
            )
            .await?;
            println!("initialised repository {} in {dir}", repository.id());
            println!(
                "keep an offline copy of the keyring ({} bytes, also archived as {}): \
                 without it and the passphrase nothing can be restored",
                report.keyring.len(),
                report.keyring_archive_key
            );
        }
        [command, dir, rest @ ..] if command == "backup" => {
            let repository = open(dir).await?;
            let (source, dataset) = source(rest)?;
            let options = BackupOptions {
                // Small volumes so the demo shows several of them.
                shape: VolumeShape {
                    volume_plaintext_len: 8 << 20,
                    part_len: 5 << 20,
                    parts_in_flight: 2,
                },
                ..BackupOptions::default()
            };
            match repository
                .backup(source.as_ref(), &dataset, &options, &NoProgress)
                .await?
            {
                BackupOutcome::UpToDate { decision } => println!("up to date: {}", decision.reason),
                BackupOutcome::Committed(committed) => {
                    let manifest = &committed.manifest;
                    println!(
                        "committed {} backup {} of {}@{}: {} stream bytes in {} volume(s), {} bytes stored",
                        match manifest.kind {
                            BackupKind::Full => "full",
                            BackupKind::Incremental { .. } => "incremental",
                        },
                        manifest.backup_id,
                        manifest.dataset_name,
                        manifest.snapshot_name,
                        manifest.stream_len,
                        manifest.volume_count,
                        manifest.stored_len
                    );
                    println!("  why: {}", committed.decision.reason);
                    for snapshot in &committed.pruned.destroyed {
                        println!("  pruned superseded snapshot {snapshot} (zib created it)");
                    }
                    for warning in &committed.pruned.warnings {
                        println!("  warning: {warning}");
                    }
                    for warning in &committed.warnings {
                        println!("  warning: {warning}");
                    }
                }
            }
        }
        [command, dir] if command == "catalog" => {
            let repository = open(dir).await?;
            let catalog = repository.catalog().await?;
            println!("repository {}", repository.id());
            for (dataset, backups) in &catalog.datasets {
                println!("dataset {dataset}");
                for backup in backups {
                    let manifest = &backup.manifest;
                    let kind = match &manifest.kind {
                        BackupKind::Full => "full".to_owned(),
                        BackupKind::Incremental { base_backup, .. } => {
                            format!("incremental on {base_backup}")
                        }
                    };
                    println!(
                        "  {} {}@{} {kind}: {} stream bytes, {} volume(s), {} bytes stored",
                        manifest.backup_id,
                        manifest.dataset_name,
                        manifest.snapshot_name,
                        manifest.stream_len,
                        manifest.volume_count,
                        manifest.stored_len
                    );
                }
            }
            let leftovers = &catalog.leftovers;
            println!(
                "leftovers: {} orphan volume(s), {} incomplete upload(s)",
                leftovers.orphan_volumes.len(),
                leftovers.incomplete_uploads.len()
            );
        }
        [command, dir, rest @ ..] if command == "restore" => {
            let repository = open(dir).await?;
            let (source, dataset) = source(rest)?;
            let target = match rest {
                [_, _, target] => DatasetName::zfs(target)?,
                _ => return Err("restore needs `zfs POOL/DATASET POOL/TARGET`".into()),
            };
            let catalog = repository.catalog().await?;
            let dataset_id = catalog
                .dataset_named(dataset.as_str())
                .ok_or_else(|| format!("no backups of {dataset} in this repository"))?;
            let newest = catalog
                .backups(dataset_id)
                .last()
                .ok_or("the dataset has no backups")?
                .manifest
                .backup_id;
            let received = repository
                .receive_chain(
                    &catalog,
                    dataset_id,
                    newest,
                    source.as_ref(),
                    &target,
                    &NoProgress,
                )
                .await?;
            for snapshot in received {
                println!("received {target}@{}", snapshot.name);
            }
        }
        _ => {
            return Err(
                "usage: backup_demo init|backup|catalog|restore REPO_DIR ... (see the source)"
                    .into(),
            )
        }
    }
    Ok(())
}
