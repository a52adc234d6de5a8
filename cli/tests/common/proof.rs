//! Helpers of the proof suites (faults, crashes): S3 state read from moto directly, a
//! restore driven to its end, datasets removed between cycles.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use zib_test_utils::moto::MotoServer;
use zib_test_utils::proxy::{FaultProxy, ProxyRule};
use zib_test_utils::zfs::{run_bounded, run_checked};

use super::Sandbox;

/// The config of an S3 repository reached through `endpoint` (a fault proxy), with a
/// short request timeout, `volume_size` volumes, 5 MiB parts (S3's smallest) and no
/// consolidation.
pub fn write_s3_config(
    sandbox: &Sandbox,
    url: &str,
    endpoint: &str,
    request_timeout: &str,
    volume_size: &str,
) {
    let text = format!(
        "[repository]\nurl = \"{url}\"\nendpoint_url = \"{endpoint}\"\n\
         request_timeout = \"{request_timeout}\"\n\n\
         [policy]\nvolume_size = \"{volume_size}\"\npart_size = \"5MiB\"\n\
         consolidation = \"never\"\n"
    );
    std::fs::write(sandbox.config(), text).unwrap();
}

/// An S3 repository on moto that a sandbox's commands reach through a fault proxy.
pub struct ProxiedS3 {
    pub moto: MotoServer,
    pub bucket: String,
    pub proxy: FaultProxy,
}

/// Makes a repository at `s3://BUCKET/family` on a new moto server for `sandbox`:
/// `init` talks to moto directly (the proofs are about backups and restores), then the
/// config points at a fault proxy with `rules` (seeded by `seed`), `request_timeout` and
/// `volume_size` volumes ([`write_s3_config`]). `None` when moto is missing and the run
/// does not require real components.
pub async fn proxied_s3(
    sandbox: &Sandbox,
    rules: Vec<ProxyRule>,
    seed: u64,
    request_timeout: &str,
    volume_size: &str,
) -> Option<ProxiedS3> {
    let moto = MotoServer::start().await?;
    let bucket = moto.create_bucket().await;
    let url = format!("s3://{bucket}/family");
    sandbox.json(&["init", &url, "--endpoint-url", &moto.endpoint()], 0);
    let upstream: std::net::SocketAddr = ([127, 0, 0, 1], moto.port()).into();
    let proxy = FaultProxy::start(upstream, rules, seed).await.unwrap();
    write_s3_config(
        sandbox,
        &url,
        &proxy.endpoint(),
        request_timeout,
        volume_size,
    );
    Some(ProxiedS3 {
        moto,
        bucket,
        proxy,
    })
}

/// Incomplete multipart uploads in `bucket`, asked of moto directly (not through the
/// proxy, not through zib).
pub async fn incomplete_uploads(moto: &MotoServer, bucket: &str) -> Vec<String> {
    let (status, body) = moto
        .request("GET", &format!("/{bucket}?uploads"), "")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
        .collect()
}

/// Sizes of the objects under `prefix` in `bucket`, from moto directly.
pub async fn object_sizes(moto: &MotoServer, bucket: &str, prefix: &str) -> BTreeMap<String, u64> {
    let (status, body) = moto
        .request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"), "")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body.split("<Contents>")
        .skip(1)
        .map(|entry| {
            let field = |name: &str| {
                entry
                    .split_once(&format!("<{name}>"))
                    .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
                    .map(|(value, _)| value.to_owned())
                    .unwrap()
            };
            (field("Key"), field("Size").parse().unwrap())
        })
        .collect()
}

/// `zfs destroy -r` of a dataset and its snapshots: zib's holds released first (they
/// protect the incremental base), tried again while zfs-fuse still calls a just-received
/// dataset busy (it does for a moment after a receive; see the drill in cli_real.rs).
pub fn destroy(dataset: &zib_engine::DatasetName) {
    let snapshots = run_checked(
        "zfs",
        &[
            "list",
            "-H",
            "-t",
            "snapshot",
            "-o",
            "name",
            "-r",
            dataset.as_str(),
        ],
    );
    for snapshot in snapshots.lines().filter(|line| !line.is_empty()) {
        // Fails for a snapshot without the hold, which is fine.
        let _ = run_bounded(
            "zfs",
            &[
                "release",
                zib_engine::snapshot_source::zfs::DEFAULT_HOLD_TAG,
                snapshot,
            ],
        );
    }
    for _ in 0..50 {
        let output = run_bounded("zfs", &["destroy", "-r", dataset.as_str()]);
        if output.status.success() {
            return;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("busy"), "zfs destroy {dataset}: {stderr}");
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("zfs-fuse still calls {dataset} busy after 10 s");
}

/// Runs `zib --json restore ...` and then `zib --json restore` until the job is done;
/// the first run requests the thaw (exit 75). Returns the last run's report.
pub fn restore_until_done(sandbox: &Sandbox, first: &[&str]) -> serde_json::Value {
    let mut args: Vec<&str> = vec!["--json", "restore"];
    args.extend_from_slice(first);
    for run in 0..8 {
        let output = sandbox.zib().args(&args).output().unwrap();
        let document: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
                panic!(
                    "zib restore: not JSON ({error}): {}\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        // A run that names a dataset answers with its plan and run, a run without
        // arguments with the runs of the jobs it advanced.
        let this_run = if document["run"].is_null() {
            document["jobs"][0].clone()
        } else {
            document["run"].clone()
        };
        match output.status.code() {
            Some(0) => return this_run,
            Some(75) => {
                assert_eq!(this_run["state"], "waiting", "run {run}: {document}");
                args = vec!["--json", "restore"];
            }
            other => panic!(
                "zib restore exited {other:?} on run {run}: {document}\n{}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }
    panic!("the restore did not finish within eight runs");
}

/// The volume downloads (GETs of `volumes/` keys) a proxy has seen, in order: their
/// URI paths.
pub fn volume_downloads(proxy: &FaultProxy) -> Vec<String> {
    proxy
        .paths(zib_engine::storage::Operation::Get)
        .into_iter()
        .filter(|path| path.contains("/volumes/"))
        .collect()
}

/// Waits until the proxy has seen `count` requests of `operation` in all, or panics
/// after two minutes (a hang turned into a failure, not a timed condition).
pub async fn wait_seen(proxy: &FaultProxy, operation: zib_engine::storage::Operation, count: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while proxy.seen(operation) < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy never saw {operation} #{count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The dataset `photos` of `pool` holding one file, `video.mp4`, of `mib` MiB of seeded
/// bytes, backed up by `zib backup` in `volumes` volumes: the dataset, the hash of its
/// tree (what a restore must reproduce) and the backup's JSON.
pub fn backed_up_video(
    sandbox: &Sandbox,
    pool: &zib_test_utils::zfs::ZfsPool,
    seed: u64,
    mib: usize,
    volumes: u64,
) -> (
    zib_engine::DatasetName,
    BTreeMap<String, String>,
    serde_json::Value,
) {
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);
    std::fs::write(
        mountpoint.join("video.mp4"),
        zib_test_utils::data::TestRng::new(seed).bytes(mib << 20),
    )
    .unwrap();
    let backup = sandbox.json(&["backup", dataset.as_str()], 0);
    assert_eq!(backup["datasets"][0]["volumes"], volumes, "{backup}");
    let expected = zib_test_utils::data::hash_tree(&mountpoint).unwrap();
    (dataset, expected, backup)
}

/// Runs `zib restore ARGS…` on a Deep Archive repository for the first time: it requests
/// the thaw and exits 75.
pub fn request_thaw(sandbox: &Sandbox, args: &[&str]) {
    let output = sandbox.zib().arg("restore").args(args).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(75),
        "the first run requests the thaw: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
