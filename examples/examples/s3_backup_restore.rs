//! A backup to S3 and a restore from it, through zib's public API alone: a ZFS dataset
//! backed up into a STANDARD-class repository (readable at once, so the restore needs no
//! thaw), the catalog listed from the bucket, and the newest chain received into a new
//! dataset.
//!
//! ```text
//! ZIB_PASSPHRASE=... cargo run -p zib-examples --example s3_backup_restore -- \
//!     s3://BUCKET/PREFIX POOL/DATASET POOL/RESTORED [--endpoint-url URL]
//! ```
//!
//! Credentials, region and profile come from the standard AWS chain (`aws configure`,
//! `AWS_PROFILE`, `AWS_REGION`, ...). Run as root (it drives `zfs`). `cargo test -p
//! zib-examples --example s3_backup_restore` runs it against a moto S3 server and a
//! zfs-fuse pool.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example talks to its user

use std::path::Path;

use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::storage::StorageClass;
use zib_engine::{
    BackupOutcome, ConnectOptions, DatasetName, Host, InitOptions, Location, NoProgress,
    Passphrase, Repository,
};

/// Backs up `dataset`, then receives the newest backup into `restored`.
async fn run(
    url: &str,
    endpoint_url: Option<String>,
    dataset: &DatasetName,
    restored: &DatasetName,
    state_dir: &Path,
    passphrase: &Passphrase,
) -> zib_engine::Result<()> {
    // One call: the bucket, its prefix, and zib's retry layer around every request.
    let location = Location::from_url(
        url,
        &ConnectOptions {
            endpoint_url,
            ..ConnectOptions::default()
        },
    )
    .await?;
    let host = Host::new(state_dir);
    let repository = match Repository::open(&location, passphrase, host.clone()).await {
        Ok(repository) => repository,
        Err(zib_engine::Error::NotARepository { .. }) => {
            // STANDARD keeps this example's restore instant; real archives use the
            // default, DEEP_ARCHIVE, and a scheduled restore.
            let options = InitOptions {
                archive_class: StorageClass::Standard,
                ..InitOptions::default()
            };
            let (repository, report) =
                Repository::init(&location, passphrase, &options, host).await?;
            println!(
                "initialised {location}: keep an offline copy of the keyring ({} bytes)",
                report.keyring.len()
            );
            for warning in report.access.warning_messages() {
                println!("warning: {warning}");
            }
            repository
        }
        Err(error) => return Err(error),
    };

    let source = ZfsSource::new();
    match repository
        .backup(&source, dataset, &Default::default(), &NoProgress)
        .await?
    {
        BackupOutcome::Committed(backup) => println!(
            "committed backup {} of {dataset}@{}: {} bytes sent{}",
            backup.manifest.backup_id,
            backup.manifest.snapshot_name,
            backup.transfer.bytes_sent,
            if backup.resumed { " (resumed)" } else { "" }
        ),
        BackupOutcome::UpToDate { decision } => println!("up to date: {}", decision.reason),
    }

    let catalog = repository.catalog().await?;
    let Some(dataset_id) = catalog.dataset_named(dataset.as_str()) else {
        println!("no backup of {dataset} in {location}");
        return Ok(());
    };
    let backups = catalog.backups(dataset_id);
    for backup in backups {
        println!(
            "  {} {}@{} {} bytes",
            backup.manifest.backup_id,
            backup.manifest.dataset_name,
            backup.manifest.snapshot_name,
            backup.manifest.stored_len
        );
    }
    if let Some(newest) = backups.last() {
        let received = repository
            .receive_chain(
                &catalog,
                dataset_id,
                newest.manifest.backup_id,
                &source,
                restored,
                &NoProgress,
            )
            .await?;
        println!("received {} snapshot(s) into {restored}", received.len());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let endpoint_url = args
        .iter()
        .position(|arg| arg == "--endpoint-url")
        .map(|at| {
            let url = args.get(at + 1).cloned().unwrap_or_default();
            args.drain(at..(at + 2).min(args.len()));
            url
        });
    let [url, dataset, restored] = &args[..] else {
        eprintln!(
            "usage: s3_backup_restore s3://BUCKET/PREFIX POOL/DATASET POOL/RESTORED [--endpoint-url URL]"
        );
        return std::process::ExitCode::from(2);
    };
    let Ok(passphrase) = std::env::var("ZIB_PASSPHRASE") else {
        eprintln!("set ZIB_PASSPHRASE to the repository's passphrase");
        return std::process::ExitCode::from(2);
    };
    let names = DatasetName::zfs(dataset).and_then(|d| Ok((d, DatasetName::zfs(restored)?)));
    let (dataset, restored) = match names {
        Ok(names) => names,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let state_dir = std::env::temp_dir().join("zib-example-state");
    match run(
        url,
        endpoint_url,
        &dataset,
        &restored,
        &state_dir,
        &Passphrase::new(passphrase),
    )
    .await
    {
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
    use zib_test_utils::data::{hash_tree, write_tree, Names};
    use zib_test_utils::moto::MotoServer;
    use zib_test_utils::zfs::ZfsPool;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_zfs_dataset_backs_up_to_s3_and_restores_file_for_file() {
        let Some(pool) = ZfsPool::create() else {
            return;
        };
        let Some(moto) = MotoServer::start().await else {
            return;
        };
        let bucket = moto.create_bucket().await;
        // The standard AWS chain, as a user's shell would set it (this test is alone in
        // its process).
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
        let dataset = pool.create_dataset("family photos");
        write_tree(&pool.mountpoint(&dataset), 5, Names::Ascii).unwrap();
        let restored = pool.dataset("restored");
        let state = tempfile::tempdir().unwrap();
        run(
            &format!("s3://{bucket}/family/zib"),
            Some(moto.endpoint()),
            &dataset,
            &restored,
            state.path(),
            &Passphrase::new("example passphrase".into()),
        )
        .await
        .unwrap();
        pool.remount(&restored);
        assert_eq!(
            hash_tree(&pool.mountpoint(&restored)).unwrap(),
            hash_tree(&pool.mountpoint(&dataset)).unwrap()
        );
    }
}
