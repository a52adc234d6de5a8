//! Snapshots a dataset twice, sends a full and an incremental stream and receives both
//! into another dataset, printing each step: the snapshot-source crate on its own.
//!
//! ```text
//! snapshot_roundtrip zfs   <source dataset> <new target dataset>
//! snapshot_roundtrip btrfs <source subvolume> <snapshot directory> <new target directory>
//! ```
//!
//! Streams go straight from `send` to `receive` (nothing is buffered in memory). Snapshots
//! are named `zib-demo-<unix time>-1` and `-2`; on ZFS they carry `zib:created`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example program talks to its user

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use zib_snapshot_source::btrfs::BtrfsSource;
use zib_snapshot_source::zfs::ZfsSource;
use zib_snapshot_source::{
    DatasetName, ReceiveStream, SendBase, SendRequest, SnapshotInfo, SnapshotName, SnapshotSource,
};

const USAGE: &str = "usage:\n  snapshot_roundtrip zfs <source dataset> <new target dataset>\n  \
                     snapshot_roundtrip btrfs <source subvolume> <snapshot directory> <new target directory>";

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() {
    if let Err(error) = run(std::env::args().skip(1).collect()).await {
        eprintln!("error: {error}");
        let mut source = error.source();
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
        std::process::exit(1);
    }
}

async fn run(args: Vec<String>) -> Result<(), Failure> {
    let (source, dataset, target): (Box<dyn SnapshotSource>, DatasetName, DatasetName) = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["zfs", dataset, target] => (
            Box::new(ZfsSource::new()),
            DatasetName::zfs(dataset)?,
            DatasetName::zfs(target)?,
        ),
        ["btrfs", subvolume, snapshot_dir, target] => (
            Box::new(BtrfsSource::new(snapshot_dir)),
            DatasetName::path(subvolume)?,
            DatasetName::path(target)?,
        ),
        _ => return Err(USAGE.into()),
    };
    let source = source.as_ref();

    let capabilities = source.capabilities(&dataset).await?;
    println!("source {dataset}: {}", capabilities.tool);
    println!(
        "  size estimates: {}, bookmarks: {}, holds: {}, extra send flags: {:?}",
        capabilities.size_estimates,
        capabilities.bookmarks,
        capabilities.holds,
        capabilities.send_flags.code()
    );
    let existing = source.list_snapshots(&dataset).await?;
    println!("  {} existing snapshot(s)", existing.len());
    for snapshot in &existing {
        print_snapshot("    ", snapshot);
    }

    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let marker = format!("{stamp}");
    let first = source
        .create_snapshot(
            &dataset,
            &SnapshotName::zfs(&format!("zib-demo-{stamp}-1"))?,
            Some(&marker),
        )
        .await?;
    print_snapshot("created ", &first);
    let second = source
        .create_snapshot(
            &dataset,
            &SnapshotName::zfs(&format!("zib-demo-{stamp}-2"))?,
            Some(&marker),
        )
        .await?;
    print_snapshot("created ", &second);

    let full = SendRequest::full(dataset.clone(), first.name.clone());
    let received = transfer(source, &full, &target).await?;
    check_identity(&first, &received)?;
    let incremental = SendRequest::incremental(
        dataset.clone(),
        SendBase::Snapshot(first.name.clone()),
        second.name.clone(),
    );
    let received = transfer(source, &incremental, &target).await?;
    check_identity(&second, &received)?;

    if capabilities.protection_available() {
        let protection = source.protect(&dataset, &second.name).await?;
        println!(
            "protected {} as the next incremental base: {protection:?}",
            second.name
        );
    } else {
        println!("no hold or bookmark on this source: a missing base would mean a new full backup");
    }

    println!("target {target} now holds:");
    for snapshot in source.list_snapshots(&target).await? {
        print_snapshot("  ", &snapshot);
    }
    println!("round trip complete: identities match on both sides");
    Ok(())
}

/// Sends `request` straight into a receive on `target`, counting the bytes.
async fn transfer(
    source: &dyn SnapshotSource,
    request: &SendRequest,
    target: &DatasetName,
) -> Result<SnapshotInfo, Failure> {
    let kind = match &request.base {
        None => "full".to_owned(),
        Some(SendBase::Snapshot(base) | SendBase::Bookmark(base)) => {
            format!("incremental from {base}")
        }
    };
    let estimate = source.estimate_send_size(request).await?;
    let estimate = estimate.map_or_else(|| "unknown".to_owned(), |bytes| format!("{bytes} bytes"));
    println!(
        "sending {} ({kind}), estimated size: {estimate}",
        request.snapshot
    );
    let counted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&counted);
    let stream: ReceiveStream = source
        .send(request)
        .await?
        .inspect_ok(move |chunk| {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        })
        .map_err(io::Error::other)
        .boxed();
    let received = source.receive(target, stream).await?;
    println!(
        "  received into {target}: {} bytes",
        counted.load(Ordering::Relaxed)
    );
    print_snapshot("  ", &received);
    Ok(received)
}

fn check_identity(sent: &SnapshotInfo, received: &SnapshotInfo) -> Result<(), Failure> {
    if sent.identity != received.identity {
        return Err(format!(
            "identity mismatch: sent {}, received {}",
            sent.identity, received.identity
        )
        .into());
    }
    Ok(())
}

fn print_snapshot(indent: &str, snapshot: &SnapshotInfo) {
    println!(
        "{indent}{} identity={} txg={} created={}{}",
        snapshot.name,
        snapshot.identity,
        snapshot.created_txg,
        snapshot.created_at,
        snapshot
            .zib_created
            .as_ref()
            .map(|value| format!(" zib:created={value}"))
            .unwrap_or_default()
    );
}
