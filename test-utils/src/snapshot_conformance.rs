//! The conformance suite every [`SnapshotSource`] implementation must pass on its real
//! file system.
//!
//! Each check is a `pub async fn` taking a [`SourceFixture`]: the file-system-specific
//! set-up (where a new dataset lives, where received files can be read, how a target is
//! renamed). What differs between implementations is stated in [`ConformanceParams`] and
//! checked both ways — a capability a source claims it lacks must really be refused —
//! so nothing is skipped silently.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use zib_snapshot_source::{
    DatasetName, Error, Protection, ReceiveOptions, ReceiveStream, SendBase, SendFlags,
    SendRequest, SendStream, SnapshotInfo, SnapshotName, SnapshotSource, ZFS_ALLOWED_CHARACTERS,
};

use crate::data::{hash_tree, modify_tree, write_tree, Names};

/// What an implementation under test can and cannot do.
#[derive(Debug, Clone)]
pub struct ConformanceParams {
    /// File names the file system stores (both ZFS and BTRFS store any bytes).
    pub file_names: Names,
    /// A label for new datasets: contains a space (ZFS) or unicode and a space (BTRFS).
    pub dataset_label: &'static str,
    /// Builds a snapshot name from an ASCII word (BTRFS may add unicode).
    pub snapshot_name: fn(&str) -> SnapshotName,
    /// `estimate_send_size` returns sizes.
    pub size_estimates: bool,
    /// Bookmarks are available (protection by bookmark, incremental from a bookmark).
    pub bookmarks: bool,
    /// Holds are available (protection by hold) when bookmarks are not.
    pub holds: bool,
    /// The `zib:created` marker is stored with snapshots.
    pub user_properties: bool,
    /// Send flags the source must accept (the others must be refused).
    pub send_flags: SendFlags,
    /// Datasets are ZFS names (check that invalid ones are refused with the allowed set).
    pub zfs_names: bool,
}

/// The file-system-specific set-up the suite needs.
pub trait SourceFixture: Send + Sync {
    /// The implementation under test.
    fn source(&self) -> &dyn SnapshotSource;
    /// What it can do.
    fn params(&self) -> &ConformanceParams;
    /// Creates a new, empty dataset whose name contains `label`; returns it and the
    /// directory where its files are written.
    fn new_dataset(&self, label: &str) -> (DatasetName, PathBuf);
    /// A receive target (whose name contains `label`) that does not exist yet.
    fn new_target(&self, label: &str) -> DatasetName;
    /// Where the files of `snapshot`, just received into `target`, can be read.
    fn received_contents(&self, target: &DatasetName, snapshot: &SnapshotInfo) -> PathBuf;
    /// Renames a receive target; returns the new name (containing `label`).
    fn rename_target(&self, target: &DatasetName, label: &str) -> DatasetName;
    /// What exists at or under `target` (datasets, snapshots, subvolumes, files), for
    /// "a failed receive left nothing" checks.
    fn contents_of_target(&self, target: &DatasetName) -> Vec<String>;
    /// A dataset name that does not exist.
    fn nonexistent_dataset(&self) -> DatasetName;
    /// The same kind of source, configured with a tool path that does not exist.
    fn source_with_missing_tool(&self) -> Box<dyn SnapshotSource>;
    /// Kills the sending side of `stream` midway, as `kill -9` of `zfs send` would
    /// ([`kill_send_process`] for sources that run a command).
    fn kill_send(&self, stream: &SendStream);
}

/// Kills the process behind a running send with SIGKILL.
///
/// # Panics
///
/// When the stream has no process or `kill` fails.
pub fn kill_send_process(stream: &SendStream) {
    let pid = stream.process_id().expect("a running send has a pid");
    let kill = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
}

/// Reads a send stream to its end, returning its bytes or the error it ended with.
///
/// # Errors
///
/// The stream's error.
pub async fn collect(mut stream: SendStream) -> zib_snapshot_source::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// `bytes` as a receive input, in 64 KiB chunks.
pub fn byte_stream(bytes: Vec<u8>) -> ReceiveStream {
    let bytes = Bytes::from(bytes);
    let chunks: Vec<io::Result<Bytes>> = (0..bytes.len())
        .step_by(64 * 1024)
        .map(|at| Ok(bytes.slice(at..(at + 64 * 1024).min(bytes.len()))))
        .collect();
    futures::stream::iter(chunks).boxed()
}

/// Asserts two tree hashes are equal, showing only the entries that differ.
pub fn assert_same_tree(
    actual: &std::collections::BTreeMap<String, String>,
    expected: &std::collections::BTreeMap<String, String>,
    what: &str,
) {
    let differences: Vec<String> = actual
        .iter()
        .filter(|(name, value)| expected.get(*name) != Some(value))
        .map(|(name, value)| format!("{name}: got {value}, expected {:?}", expected.get(name)))
        .chain(
            expected
                .keys()
                .filter(|name| !actual.contains_key(*name))
                .map(|name| format!("{name}: missing")),
        )
        .collect();
    assert!(
        differences.is_empty(),
        "{what}: trees differ:\n{}",
        differences.join("\n")
    );
}

/// A dataset with two snapshots ("one", "two") of a changing tree.
struct Prepared {
    dataset: DatasetName,
    dir: PathBuf,
    one: SnapshotInfo,
    two: SnapshotInfo,
    hash_one: std::collections::BTreeMap<String, String>,
    hash_two: std::collections::BTreeMap<String, String>,
}

async fn prepare(fx: &dyn SourceFixture, label: &str, seed: u64) -> Prepared {
    let params = fx.params();
    let source = fx.source();
    let (dataset, dir) = fx.new_dataset(label);
    write_tree(&dir, seed, params.file_names).expect("write tree");
    let hash_one = hash_tree(&dir).expect("hash");
    let one = source
        .create_snapshot(&dataset, &(params.snapshot_name)("one"), Some("marker-one"))
        .await
        .expect("snapshot one");
    modify_tree(&dir, seed).expect("modify tree");
    let hash_two = hash_tree(&dir).expect("hash");
    let two = source
        .create_snapshot(&dataset, &(params.snapshot_name)("two"), None)
        .await
        .expect("snapshot two");
    Prepared {
        dataset,
        dir,
        one,
        two,
        hash_one,
        hash_two,
    }
}

async fn send_bytes(fx: &dyn SourceFixture, request: SendRequest) -> Vec<u8> {
    let stream = fx.source().send(&request).await.expect("start send");
    collect(stream).await.expect("send completes")
}

fn full(p: &Prepared, snapshot: &SnapshotInfo) -> SendRequest {
    SendRequest::full(p.dataset.clone(), snapshot.name.clone())
}

fn incremental(p: &Prepared, base: &SnapshotInfo, snapshot: &SnapshotInfo) -> SendRequest {
    SendRequest::incremental(
        p.dataset.clone(),
        SendBase::Snapshot(base.name.clone()),
        snapshot.name.clone(),
    )
}

/// Full then incremental send/receive restore byte-identical trees; listings are in
/// creation order with identities that survive the trip; capabilities are as declared.
pub async fn full_and_incremental_round_trip(fx: &dyn SourceFixture) {
    let params = fx.params();
    let source = fx.source();
    let p = prepare(fx, params.dataset_label, 1).await;

    let listed = source.list_snapshots(&p.dataset).await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        vec![p.one.name.clone(), p.two.name.clone()]
    );
    assert!(
        listed[0].created_txg < listed[1].created_txg,
        "creation order: {listed:?}"
    );
    assert_eq!(listed[0], p.one);
    assert_eq!(listed[1], p.two);
    let expected_marker = params.user_properties.then(|| "marker-one".to_owned());
    assert_eq!(listed[0].zib_created, expected_marker, "zib:created marker");
    assert_eq!(listed[1].zib_created, None);
    assert_ne!(p.one.identity, p.two.identity);

    let capabilities = source.capabilities(&p.dataset).await.expect("capabilities");
    assert_eq!(
        capabilities.size_estimates, params.size_estimates,
        "{capabilities:?}"
    );
    assert_eq!(capabilities.bookmarks, params.bookmarks, "{capabilities:?}");
    assert_eq!(capabilities.holds, params.holds, "{capabilities:?}");
    assert_eq!(
        capabilities.user_properties, params.user_properties,
        "{capabilities:?}"
    );
    assert_eq!(
        capabilities.send_flags, params.send_flags,
        "{capabilities:?}"
    );

    let target = fx.new_target("restored copy");
    let received_one = source
        .receive(
            &target,
            byte_stream(send_bytes(fx, full(&p, &p.one)).await),
            &ReceiveOptions::default(),
        )
        .await
        .expect("receive full");
    assert!(
        received_one.identity == p.one.identity,
        "{received_one:?} vs {:?}",
        p.one
    );
    assert_eq!(received_one.name, p.one.name);
    assert_same_tree(
        &hash_tree(&fx.received_contents(&target, &received_one)).expect("hash"),
        &p.hash_one,
        "received received_one",
    );

    let stream = send_bytes(fx, incremental(&p, &p.one, &p.two)).await;
    let received_two = source
        .receive(&target, byte_stream(stream), &ReceiveOptions::default())
        .await
        .expect("receive incremental");
    assert_eq!(received_two.identity, p.two.identity);
    assert_same_tree(
        &hash_tree(&fx.received_contents(&target, &received_two)).expect("hash"),
        &p.hash_two,
        "received received_two",
    );

    let on_target = source.list_snapshots(&target).await.expect("list target");
    assert_eq!(on_target.len(), 2, "{on_target:?}");
    assert!(on_target[0].identity == p.one.identity);
    assert!(on_target[1].identity == p.two.identity);
    assert!(on_target[0].created_txg < on_target[1].created_txg);
    // The source's files are untouched by all this.
    assert_eq!(hash_tree(&p.dir).expect("hash"), p.hash_two);
}

/// An incremental whose base is not on the receiving side fails with
/// [`Error::BaseMissing`] and leaves nothing behind.
pub async fn incremental_without_base_fails_clearly(fx: &dyn SourceFixture) {
    let source = fx.source();
    let p = prepare(fx, "base check", 2).await;
    let stream = send_bytes(fx, incremental(&p, &p.one, &p.two)).await;

    let empty_target = fx.new_target("never received");
    let error = source
        .receive(
            &empty_target,
            byte_stream(stream.clone()),
            &ReceiveOptions::default(),
        )
        .await
        .expect_err("no base: must fail");
    assert!(matches!(error, Error::BaseMissing { .. }), "{error}");
    assert!(
        error.to_string().contains("full stream"),
        "the message says what to do: {error}"
    );
    assert!(
        fx.contents_of_target(&empty_target).is_empty(),
        "{:?}",
        fx.contents_of_target(&empty_target)
    );

    // A target holding an unrelated chain: still no base.
    let other = prepare(fx, "unrelated", 3).await;
    let target = fx.new_target("unrelated copy");
    source
        .receive(
            &target,
            byte_stream(send_bytes(fx, full(&other, &other.one)).await),
            &ReceiveOptions::default(),
        )
        .await
        .expect("receive unrelated full");
    let before = fx.contents_of_target(&target);
    let error = source
        .receive(&target, byte_stream(stream), &ReceiveOptions::default())
        .await
        .expect_err("wrong base: must fail");
    assert!(matches!(error, Error::BaseMissing { .. }), "{error}");
    assert_eq!(fx.contents_of_target(&target), before);
}

/// A send whose process is killed midway ends with an error item, never a clean end.
pub async fn killed_send_is_reported_as_failed(fx: &dyn SourceFixture) {
    let p = prepare(fx, "killed send", 4).await;
    let mut stream = fx
        .source()
        .send(&full(&p, &p.two))
        .await
        .expect("start send");
    let first = stream
        .next()
        .await
        .expect("a first chunk")
        .expect("first chunk is data");
    assert!(!first.is_empty());
    fx.kill_send(&stream);
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    let last = items.pop().expect("the stream must end with an error item");
    let error = last.expect_err("a killed send must not end cleanly");
    assert!(matches!(error, Error::CommandFailed { .. }), "{error}");
    assert!(
        items.iter().all(Result::is_ok),
        "only the last item is the error"
    );
}

/// A truncated stream (cut midway, or just before its end record) and a stream that
/// fails while being read leave no received dataset/snapshot; the whole stream works.
pub async fn truncated_or_failing_stream_leaves_nothing(fx: &dyn SourceFixture) {
    let source = fx.source();
    let p = prepare(fx, "truncation", 5).await;
    let stream = send_bytes(fx, full(&p, &p.one)).await;
    // Just before the end: on BTRFS the last 10 bytes are the `end` command, so this cut
    // is at a command boundary, which `btrfs receive` alone would accept.
    for (label, cut) in [
        ("cut midway", stream.len() / 2),
        ("cut at end", stream.len() - 10),
    ] {
        let target = fx.new_target(label);
        let error = source
            .receive(
                &target,
                byte_stream(stream[..cut].to_vec()),
                &ReceiveOptions::default(),
            )
            .await
            .expect_err("truncated: must fail");
        tracing::info!(%error, cut, "truncated receive failed as it must");
        assert!(
            fx.contents_of_target(&target).is_empty(),
            "{label}: {:?}",
            fx.contents_of_target(&target)
        );
    }

    let target = fx.new_target("failing input");
    let half = Bytes::from(stream[..stream.len() / 2].to_vec());
    let failing: ReceiveStream = futures::stream::iter(vec![
        Ok(half),
        Err(io::Error::other("simulated download failure")),
    ])
    .boxed();
    let error = source
        .receive(&target, failing, &ReceiveOptions::default())
        .await
        .expect_err("failing input: must fail");
    assert!(matches!(error, Error::InputFailed { .. }), "{error}");
    assert!(
        fx.contents_of_target(&target).is_empty(),
        "{:?}",
        fx.contents_of_target(&target)
    );

    let error = source
        .receive(
            &fx.new_target("not a stream"),
            byte_stream(vec![7u8; 100_000]),
            &ReceiveOptions::default(),
        )
        .await
        .expect_err("garbage");
    assert!(matches!(error, Error::InvalidStream { .. }), "{error}");

    // A truncated incremental leaves the target at its previous snapshot.
    let received = source
        .receive(&target, byte_stream(stream), &ReceiveOptions::default())
        .await
        .expect("the whole stream is receivable");
    assert_eq!(received.identity, p.one.identity);
    let incremental_stream = send_bytes(fx, incremental(&p, &p.one, &p.two)).await;
    let cut = incremental_stream.len() - 10;
    source
        .receive(
            &target,
            byte_stream(incremental_stream[..cut].to_vec()),
            &ReceiveOptions::default(),
        )
        .await
        .expect_err("truncated incremental");
    let left = source.list_snapshots(&target).await.expect("list");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].identity == p.one.identity);
}

/// Names: the dataset label (space; unicode on BTRFS) works end to end (checked by the
/// round trip); invalid ZFS names are refused with the allowed set.
pub async fn names_are_validated(fx: &dyn SourceFixture) {
    let params = fx.params();
    assert!(
        params.dataset_label.contains(' '),
        "the suite must exercise a name with a space"
    );
    let (dataset, dir) = fx.new_dataset(params.dataset_label);
    assert!(dataset.as_str().contains(params.dataset_label));
    write_tree(&dir, 6, params.file_names).expect("tree");
    if params.zfs_names {
        let error = DatasetName::zfs(&format!("{}/bad*name", dataset.pool()))
            .expect_err("'*' is not allowed");
        assert!(
            error.to_string().contains(ZFS_ALLOWED_CHARACTERS),
            "{error}"
        );
        let unicode = SnapshotName::btrfs("schnappschuss ü").expect("a valid BTRFS name");
        let error = fx
            .source()
            .create_snapshot(&dataset, &unicode, None)
            .await
            .expect_err("ZFS refuses unicode");
        assert!(matches!(error, Error::InvalidName { .. }), "{error}");
        assert!(
            error.to_string().contains(ZFS_ALLOWED_CHARACTERS),
            "{error}"
        );
        let path = DatasetName::path("/mnt/some path").expect("valid path");
        let error = fx
            .source()
            .list_snapshots(&path)
            .await
            .expect_err("a ZFS source refuses a path");
        assert!(matches!(error, Error::InvalidName { .. }), "{error}");
    } else {
        assert!(
            !params.dataset_label.is_ascii(),
            "the suite must exercise a unicode path"
        );
        let error = fx
            .source()
            .list_snapshots(&DatasetName::zfs("tank/fs").expect("name"))
            .await
            .expect_err("path needed");
        assert!(matches!(error, Error::InvalidName { .. }), "{error}");
    }
    let name = (params.snapshot_name)("named");
    let info = fx
        .source()
        .create_snapshot(&dataset, &name, None)
        .await
        .expect("snapshot with the suite's name form");
    assert_eq!(info.name, name);
}

/// A nonexistent dataset or snapshot, and a missing tool, give clear errors.
pub async fn missing_things_give_clear_errors(fx: &dyn SourceFixture) {
    let source = fx.source();
    let missing = fx.nonexistent_dataset();
    let error = source
        .list_snapshots(&missing)
        .await
        .expect_err("no such dataset");
    assert!(matches!(error, Error::DatasetNotFound { .. }), "{error}");
    assert!(error.to_string().contains(missing.as_str()), "{error}");
    let error = source
        .create_snapshot(&missing, &(fx.params().snapshot_name)("x"), None)
        .await
        .expect_err("no such dataset");
    assert!(matches!(error, Error::DatasetNotFound { .. }), "{error}");

    let (dataset, _dir) = fx.new_dataset("missing things");
    let absent = (fx.params().snapshot_name)("absent");
    let error = source
        .send(&SendRequest::full(dataset.clone(), absent.clone()))
        .await
        .expect_err("no such snapshot");
    assert!(matches!(error, Error::SnapshotNotFound { .. }), "{error}");
    let error = source
        .destroy_snapshot(&dataset, &absent)
        .await
        .expect_err("no such snapshot");
    assert!(matches!(error, Error::SnapshotNotFound { .. }), "{error}");

    let broken = fx.source_with_missing_tool();
    let error = broken
        .list_snapshots(&dataset)
        .await
        .expect_err("tool missing");
    assert!(error.is_not_installed(), "{error}");
    assert!(error.to_string().contains("install"), "{error}");
    let error = broken
        .capabilities(&dataset)
        .await
        .expect_err("tool missing");
    assert!(error.is_not_installed(), "{error}");
}

/// Snapshot identity survives send/receive and a rename of the receiving dataset, so the
/// chain continues there.
pub async fn chain_continues_after_rename(fx: &dyn SourceFixture) {
    let source = fx.source();
    let p = prepare(fx, "renamed chain", 7).await;
    let target = fx.new_target("before rename");
    source
        .receive(
            &target,
            byte_stream(send_bytes(fx, full(&p, &p.one)).await),
            &ReceiveOptions::default(),
        )
        .await
        .expect("full");
    source
        .receive(
            &target,
            byte_stream(send_bytes(fx, incremental(&p, &p.one, &p.two)).await),
            &ReceiveOptions::default(),
        )
        .await
        .expect("incr");
    let renamed = fx.rename_target(&target, "after rename");
    let listed = source.list_snapshots(&renamed).await.expect("list renamed");
    assert_eq!(listed.len(), 2);
    assert!(listed[0].identity == p.one.identity);
    assert!(listed[1].identity == p.two.identity);

    modify_tree(&p.dir, 70).expect("modify");
    let hash_three = hash_tree(&p.dir).expect("hash");
    let three = source
        .create_snapshot(&p.dataset, &(fx.params().snapshot_name)("three"), None)
        .await
        .expect("three");
    let stream = send_bytes(fx, incremental(&p, &p.two, &three)).await;
    let received = source
        .receive(&renamed, byte_stream(stream), &ReceiveOptions::default())
        .await
        .expect("incremental onto the renamed copy");
    assert_eq!(received.identity, three.identity);
    assert_same_tree(
        &hash_tree(&fx.received_contents(&renamed, &received)).expect("hash"),
        &hash_three,
        "received received",
    );
}

/// The next incremental base can be protected as declared (bookmark, else hold, else
/// refused), the protection is real, and it can be released.
pub async fn base_protection(fx: &dyn SourceFixture) {
    let params = fx.params();
    let source = fx.source();
    let p = prepare(fx, "protected base", 8).await;
    if params.bookmarks {
        let target = fx.new_target("bookmark copy");
        source
            .receive(
                &target,
                byte_stream(send_bytes(fx, full(&p, &p.one)).await),
                &ReceiveOptions::default(),
            )
            .await
            .expect("full");
        let protection = source
            .protect(&p.dataset, &p.one.name)
            .await
            .expect("protect");
        assert!(
            matches!(protection, Protection::Bookmark { .. }),
            "{protection:?}"
        );
        source
            .destroy_snapshot(&p.dataset, &p.one.name)
            .await
            .expect("a bookmarked snapshot can go");
        // The bookmark is listed with the identity and creation of its snapshot.
        let bookmarks = source.list_bookmarks(&p.dataset).await.expect("bookmarks");
        assert_eq!(bookmarks.len(), 1, "{bookmarks:?}");
        assert_eq!(bookmarks[0].name, p.one.name);
        assert!(bookmarks[0].identity == p.one.identity);
        assert_eq!(bookmarks[0].created_txg, p.one.created_txg);
        let request = SendRequest::incremental(
            p.dataset.clone(),
            SendBase::Bookmark(p.one.name.clone()),
            p.two.name.clone(),
        );
        let received = source
            .receive(
                &target,
                byte_stream(send_bytes(fx, request).await),
                &ReceiveOptions::default(),
            )
            .await
            .expect("from bookmark");
        assert_eq!(received.identity, p.two.identity);
        assert_same_tree(
            &hash_tree(&fx.received_contents(&target, &received)).expect("hash"),
            &p.hash_two,
            "received received",
        );
        source.release(&protection).await.expect("release");
    } else if params.holds {
        let protection = source
            .protect(&p.dataset, &p.one.name)
            .await
            .expect("protect");
        assert!(
            matches!(protection, Protection::Hold { .. }),
            "{protection:?}"
        );
        assert!(source
            .list_bookmarks(&p.dataset)
            .await
            .expect("no bookmarks, but an answer")
            .is_empty());
        let error = source
            .destroy_snapshot(&p.dataset, &p.one.name)
            .await
            .expect_err("a held snapshot stays");
        assert!(matches!(error, Error::CommandFailed { .. }), "{error}");
        assert!(source
            .list_snapshots(&p.dataset)
            .await
            .expect("list")
            .iter()
            .any(|s| s.name == p.one.name));
        source.release(&protection).await.expect("release");
        source
            .destroy_snapshot(&p.dataset, &p.one.name)
            .await
            .expect("released: can go");
        let request = SendRequest::incremental(
            p.dataset.clone(),
            SendBase::Bookmark(p.one.name.clone()),
            p.two.name.clone(),
        );
        let error = source.send(&request).await.expect_err("no bookmarks here");
        assert!(
            matches!(
                error,
                Error::Unsupported { .. } | Error::SnapshotNotFound { .. }
            ),
            "{error}"
        );
    } else {
        let error = source
            .protect(&p.dataset, &p.one.name)
            .await
            .expect_err("no protection available");
        assert!(matches!(error, Error::Unsupported { .. }), "{error}");
        let capabilities = source.capabilities(&p.dataset).await.expect("capabilities");
        assert!(!capabilities.protection_available());
    }
    let _ = p.hash_one;
}

/// Size estimates are close to the real stream size where supported, `None` elsewhere;
/// send flags are accepted or refused as declared.
pub async fn estimates_and_send_flags(fx: &dyn SourceFixture) {
    let params = fx.params();
    let source = fx.source();
    let p = prepare(fx, "estimates", 9).await;
    for request in [full(&p, &p.one), incremental(&p, &p.one, &p.two)] {
        let estimate = source.estimate_send_size(&request).await.expect("estimate");
        let actual = send_bytes(fx, request.clone()).await.len() as u64;
        if params.size_estimates {
            let estimate = estimate.expect("a size estimate");
            assert!(
                estimate >= actual / 2 && estimate <= actual * 2 + (1 << 20),
                "estimate {estimate} vs actual {actual}"
            );
        } else {
            assert_eq!(estimate, None);
        }
    }

    let wanted = SendFlags {
        raw: false,
        ..SendFlags::ALL
    };
    let missing = wanted.unsupported_by(&params.send_flags);
    let request = full(&p, &p.one).with_flags(wanted);
    if missing.is_empty() {
        let target = fx.new_target("with flags");
        let received = source
            .receive(
                &target,
                byte_stream(send_bytes(fx, request).await),
                &ReceiveOptions::default(),
            )
            .await
            .expect("flags");
        assert_same_tree(
            &hash_tree(&fx.received_contents(&target, &received)).expect("hash"),
            &p.hash_one,
            "received received",
        );
    } else {
        let error = source
            .send(&request)
            .await
            .expect_err("unsupported flags are refused");
        assert!(matches!(error, Error::Unsupported { .. }), "{error}");
        assert!(error.to_string().contains(&missing), "{error}");
    }
    assert_eq!(SendFlags::from_code(&wanted.code()).expect("code"), wanted);
}

/// Creating and destroying snapshots: duplicates are refused, destroyed ones are gone.
pub async fn create_and_destroy(fx: &dyn SourceFixture) {
    let source = fx.source();
    let (dataset, dir) = fx.new_dataset("create destroy");
    std::fs::write(dir.join("file"), b"content").expect("write");
    let name = (fx.params().snapshot_name)("only");
    source
        .create_snapshot(&dataset, &name, Some("m"))
        .await
        .expect("create");
    let error = source
        .create_snapshot(&dataset, &name, None)
        .await
        .expect_err("duplicate");
    assert!(matches!(error, Error::SnapshotExists { .. }), "{error}");
    source
        .destroy_snapshot(&dataset, &name)
        .await
        .expect("destroy");
    assert!(source
        .list_snapshots(&dataset)
        .await
        .expect("list")
        .is_empty());
    let error = source
        .destroy_snapshot(&dataset, &name)
        .await
        .expect_err("already gone");
    assert!(matches!(error, Error::SnapshotNotFound { .. }), "{error}");
}

/// Calls the macro `$callback` (a path in brackets) with `$args` and the name of every
/// check of the suite: the one list that [`run_all`] and [`snapshot_conformance_tests!`]
/// both expand, so a check added here runs for every source.
///
/// [`snapshot_conformance_tests!`]: crate::snapshot_conformance_tests
#[doc(hidden)]
#[macro_export]
macro_rules! with_snapshot_checks {
    ([$($callback:tt)*] ($($args:tt)*)) => {
        $($callback)*!($($args)*
            full_and_incremental_round_trip,
            incremental_without_base_fails_clearly,
            killed_send_is_reported_as_failed,
            truncated_or_failing_stream_leaves_nothing,
            names_are_validated,
            missing_things_give_clear_errors,
            chain_continues_after_rename,
            base_protection,
            estimates_and_send_flags,
            create_and_destroy
        );
    };
}

/// Runs every check of the suite in turn on one fixture, as a source's author would
/// from their own test.
pub async fn run_all(fx: &dyn SourceFixture) {
    macro_rules! each {
        ($($name:ident),*) => {$(
            $name(fx).await;
        )*};
    }
    crate::with_snapshot_checks!([each]());
}

/// One `#[tokio::test]` per check of the suite, each on a fresh fixture from `$fixture`
/// (an expression of type `Option<impl SourceFixture>`: `None` when the real component
/// is missing and the run did not ask for real components — the fixture fails the test
/// itself when it did). The list of checks is [`with_snapshot_checks!`]'s, so a source's
/// test file cannot miss one.
///
/// ```ignore
/// zib_test_utils::snapshot_conformance_tests!(MyFixture::new());
/// ```
///
/// [`with_snapshot_checks!`]: crate::with_snapshot_checks
#[macro_export]
macro_rules! snapshot_conformance_tests {
    ($fixture:expr) => {
        $crate::with_snapshot_checks!([$crate::snapshot_conformance_tests](@each $fixture;));
    };
    (@each $fixture:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(fixture) = $fixture else { return };
            $crate::snapshot_conformance::$name(&fixture).await;
        }
    )*};
}
