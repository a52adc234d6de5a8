//! The restore job with real components: a zfs-fuse pool and a moto S3 server whose
//! DEEP_ARCHIVE objects refuse reads until a restore is requested (moto thaws at once;
//! the engine's clock is the test's), a BTRFS file system on a loop device with a
//! local-directory repository, and real processes killed with SIGKILL mid-download and
//! mid-receive.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use zib_engine::planner::UnixTime;
use zib_engine::snapshot_source::btrfs::BtrfsSource;
use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::storage::counting::Counting;
use zib_engine::storage::faults::{Fault, FaultInjecting, FaultRule, Trigger};
use zib_engine::storage::local_dir::LocalDirBackend;
use zib_engine::storage::s3::S3Backend;
use zib_engine::storage::{Operation, StorageBackend};
use zib_engine::{
    DatasetName, FakeClock, Host, Location, NewRestore, NoProgress, Passphrase, Repository,
    RestoreJobId, RestoreState, RestoreStatus, SnapshotSource,
};
use zib_test_utils::btrfs::BtrfsFs;
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names, TestRng};
use zib_test_utils::moto::MotoServer;
use zib_test_utils::zfs::{run_checked, ZfsPool};

use common::{backup_options, committed, fast_init, s3_config_at, Inspecting};

const MIB: usize = 1 << 20;
const PASSPHRASE: &str = "a long family passphrase";
/// The child process's job: what to restore and how to fail (see `restore_child_process`).
const CHILD_JOB: &str = "ZIB_TEST_RESTORE_CHILD_JOB";

/// A repository on moto holding three backups (a full of `megabytes` MiB in 1 MiB
/// volumes, then two incrementals) of a zfs-fuse dataset.
struct ZfsOnMoto {
    pool: ZfsPool,
    _moto: MotoServer,
    endpoint: String,
    bucket: String,
    /// Every request and delivered byte, below the engine's layers.
    counting: Counting<Arc<dyn StorageBackend>>,
    clock: FakeClock,
    state: tempfile::TempDir,
    staging: tempfile::TempDir,
    repository: Repository,
    dataset: DatasetName,
    /// Every file of the dataset as the newest backup saw it.
    expected: BTreeMap<String, String>,
}

async fn zfs_on_moto(megabytes: usize) -> Option<ZfsOnMoto> {
    let pool = ZfsPool::create()?;
    let moto = MotoServer::start().await?;
    let bucket = moto.create_bucket().await;
    let endpoint = moto.endpoint();
    let s3: Arc<dyn StorageBackend> = Arc::new(
        S3Backend::connect(&s3_config_at(&endpoint, &bucket))
            .await
            .unwrap(),
    );
    let counting = Counting::new(s3);
    // The engine's clock starts at the real time: moto dates a restored copy's expiry
    // from the real time of the request.
    let clock = FakeClock::new(SystemTime::now());
    let state = tempfile::tempdir().unwrap();
    let (repository, _) = Repository::init(
        &Location::new(Arc::new(counting.clone()), "zib").unwrap(),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(state.path(), &clock),
    )
    .await
    .unwrap();
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);
    let mut rng = TestRng::new(megabytes as u64);
    for file in 0..megabytes {
        std::fs::write(
            mountpoint.join(format!("IMG_{file:04}.jpg")),
            rng.bytes(MIB),
        )
        .unwrap();
    }
    write_tree(&mountpoint.join("albums"), 5, Names::Unicode).unwrap();
    let source = ZfsSource::new();
    for round in 0..3 {
        if round > 0 {
            modify_tree(&mountpoint.join("albums"), 5 + round).unwrap();
            std::fs::write(
                mountpoint.join(format!("new in round {round}.jpg")),
                rng.bytes(MIB),
            )
            .unwrap();
            clock.advance(Duration::from_secs(3600));
        }
        committed(
            repository
                .backup(&source, &dataset, &backup_options(), &NoProgress)
                .await
                .unwrap(),
        );
    }
    let expected = hash_tree(&mountpoint).unwrap();
    Some(ZfsOnMoto {
        pool,
        _moto: moto,
        endpoint,
        bucket,
        counting,
        clock,
        state,
        staging: tempfile::tempdir().unwrap(),
        repository,
        dataset,
        expected,
    })
}

fn host(state: &Path, clock: &FakeClock) -> Host {
    Host::new(state).with_clock(Arc::new(clock.clone()))
}

fn unix_now(clock: &FakeClock) -> u64 {
    use zib_engine::Clock;
    clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl ZfsOnMoto {
    fn target(&self) -> DatasetName {
        self.pool.dataset("restored")
    }

    fn request(&self, budget: u64) -> NewRestore {
        NewRestore {
            monthly_budget: budget,
            ..NewRestore::new(self.dataset.as_str(), self.target(), self.staging.path())
        }
    }

    async fn advance(&self, id: RestoreJobId) -> RestoreStatus {
        self.repository
            .advance_restore(id, &ZfsSource::new(), &NoProgress)
            .await
            .unwrap()
    }

    /// Every volume size of the dataset's chain, in chain order.
    async fn chain_volume_sizes(&self) -> Vec<u64> {
        let catalog = self.repository.catalog().await.unwrap();
        let id = catalog.dataset_named(self.dataset.as_str()).unwrap();
        catalog
            .backups(id)
            .iter()
            .flat_map(|backup| backup.volume_sizes.clone())
            .collect()
    }

    /// The target holds what the source held, file for file, and is writable again.
    fn restored_equal(&self) {
        let target = self.target();
        // zfs-fuse shows what a receive wrote underneath a mount only after a remount.
        self.pool.remount(&target);
        assert_eq!(
            hash_tree(&self.pool.mountpoint(&target)).unwrap(),
            self.expected
        );
        let readonly = run_checked(
            "zfs",
            &["get", "-H", "-o", "value", "readonly", target.as_str()],
        );
        assert_eq!(readonly.trim(), "off", "the finished target is writable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zfs_chain_is_restored_from_deep_archive_objects_on_moto() {
    let Some(setup) = zfs_on_moto(4).await else {
        return;
    };
    let volumes = setup.chain_volume_sizes().await.len() as u64;
    assert!(volumes >= 6, "{volumes} volumes");
    let requests_before = setup.counting.count(Operation::RequestRestore);
    let (job, plan) = setup
        .repository
        .create_restore(&setup.request(100 << 30), &ZfsSource::new())
        .await
        .unwrap();
    assert_eq!(job.chain.len(), 3);
    assert_eq!(plan.batches.len(), 1, "100 GiB a month holds it all");

    // The objects are DEEP_ARCHIVE: the first run can only request their restores.
    let first = setup.advance(job.id).await;
    assert_eq!(first.volumes_downloaded, 0, "{first:?}");
    assert!(
        matches!(first.state, RestoreState::Waiting { .. }),
        "{first:?}"
    );
    assert_eq!(
        setup.counting.count(Operation::RequestRestore) - requests_before,
        volumes,
        "one restore request per volume"
    );

    // moto thaws at once (an hour later, the copies are readable).
    setup.clock.advance(Duration::from_secs(3600));
    let second = setup.advance(job.id).await;
    assert_eq!(second.state, RestoreState::Done, "{second:?}");
    assert_eq!(second.received.len(), 3, "{:?}", second.received);
    assert_eq!(
        setup.counting.count(Operation::RequestRestore) - requests_before,
        volumes,
        "nothing requested twice"
    );
    setup.restored_equal();
    // The received snapshots are the backed-up ones, same ZFS guid.
    let catalog = setup.repository.catalog().await.unwrap();
    let id = catalog.dataset_named(setup.dataset.as_str()).unwrap();
    let expected: Vec<String> = catalog
        .backups(id)
        .iter()
        .map(|backup| backup.manifest.snapshot_identity.to_string())
        .collect();
    let received: Vec<String> = ZfsSource::new()
        .list_snapshots(&setup.target())
        .await
        .unwrap()
        .into_iter()
        .map(|snapshot| snapshot.identity.to_string())
        .collect();
    assert_eq!(received, expected);
    assert!(std::fs::read_dir(setup.staging.path())
        .unwrap()
        .all(|entry| entry
            .unwrap()
            .path()
            .read_dir()
            .is_ok_and(|mut dir| dir.next().is_none())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_budget_spreads_the_moto_restore_over_months() {
    let Some(setup) = zfs_on_moto(4).await else {
        return;
    };
    let sizes = setup.chain_volume_sizes().await;
    let largest = *sizes.iter().max().unwrap();
    // Two of the largest volumes a month: the chain's ≥ 6 volumes need ≥ 3 months.
    let budget = 2 * largest + largest / 2;
    let (job, plan) = setup
        .repository
        .create_restore(&setup.request(budget), &ZfsSource::new())
        .await
        .unwrap();
    assert!(plan.batches.len() >= 3, "{} batches", plan.batches.len());

    // Once a day, as a timer would: per UTC month, bytes delivered and restores asked.
    let mut per_month: BTreeMap<(i32, u8), (u64, u64)> = BTreeMap::new();
    let mut done = false;
    for _ in 0..200 {
        let month = UnixTime(i64::try_from(unix_now(&setup.clock)).unwrap()).month();
        let bytes_before = setup.counting.bytes_read().get();
        let requests_before = setup.counting.count(Operation::RequestRestore);
        let status = setup.advance(job.id).await;
        let entry = per_month.entry((month.year, month.month)).or_default();
        entry.0 += setup.counting.bytes_read().get() - bytes_before;
        entry.1 += setup.counting.count(Operation::RequestRestore) - requests_before;
        if status.state == RestoreState::Done {
            done = true;
            break;
        }
        setup.clock.advance(Duration::from_secs(24 * 3600));
    }
    assert!(done, "not done in 200 days: {per_month:?}");
    setup.restored_equal();
    let downloading: Vec<_> = per_month
        .iter()
        .filter(|(_, (bytes, _))| *bytes > 0)
        .collect();
    assert!(downloading.len() >= 3, "{per_month:?}");
    for (month, (bytes, _)) in &per_month {
        assert!(
            *bytes <= budget,
            "{month:?}: {bytes} bytes > budget {budget}"
        );
    }
    let requested: Vec<u64> = per_month.values().map(|(_, requests)| *requests).collect();
    assert!(
        requested.iter().filter(|requests| **requests > 0).count() >= 3,
        "restores requested batch by batch, not all at once: {per_month:?}"
    );
    println!("budget {budget} bytes a month; per month (bytes delivered, restores requested): {per_month:?}");
}

// ---------------------------------------------------------------------------------------
// Killed runs: the child process is this test binary, started with a job.

/// What the child does before it is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hang {
    /// The `n`-th GET (the keyring's is the first) delivers half its body, then hangs.
    Download(u64),
    /// The `n`-th receive gets half its stream, then hangs (a marker file says so).
    Receive(usize),
}

/// The child side of the kill tests: one run of the restore job in its own process,
/// hanging where the job says. Ignored, so a plain run of the suite does not count it as
/// a passing test; run without its job it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the restore kill tests, started by them"]
async fn restore_child_process() {
    let job = std::env::var(CHILD_JOB).unwrap_or_else(|_| {
        panic!(
            "restore_child_process runs only as the child of a kill test ({CHILD_JOB} is not set)"
        )
    });
    let fields: Vec<&str> = job.lines().collect();
    let [endpoint, bucket, state, now, id, hang, marker] = fields[..] else {
        panic!("malformed job {job:?}");
    };
    let (kind, n) = hang.split_once(' ').unwrap();
    let hang = match kind {
        "download" => Hang::Download(n.parse().unwrap()),
        "receive" => Hang::Receive(n.parse().unwrap()),
        other => panic!("unknown hang {other}"),
    };
    let s3: Arc<dyn StorageBackend> = Arc::new(
        S3Backend::connect(&s3_config_at(endpoint, bucket))
            .await
            .unwrap(),
    );
    let backend: Arc<dyn StorageBackend> = match hang {
        Hang::Download(n) => Arc::new(FaultInjecting::new(
            s3,
            vec![FaultRule {
                operation: Some(Operation::Get),
                trigger: Trigger::Nth(n),
                fault: Fault::Hang,
            }],
            0,
        )),
        Hang::Receive(_) => s3,
    };
    let clock = FakeClock::new(UNIX_EPOCH + Duration::from_secs(now.parse().unwrap()));
    let repository = Repository::open(
        &Location::new(backend, "zib").unwrap(),
        &Passphrase::new(PASSPHRASE.into()),
        host(Path::new(state), &clock),
    )
    .await
    .unwrap();
    let source = Inspecting::new(ZfsSource::new(), |_, _| None);
    if let Hang::Receive(n) = hang {
        source.hang_receive(n, PathBuf::from(marker));
    }
    let status = repository
        .advance_restore(id.parse().unwrap(), &source, &NoProgress)
        .await;
    panic!("this run should have been killed before it ended: {status:?}");
}

/// Starts the child on `setup`'s repository, waits until `hung` says it hangs where it
/// should, and kills it with SIGKILL.
async fn run_child_and_kill(
    setup: &ZfsOnMoto,
    id: RestoreJobId,
    hang: &str,
    hung: impl Fn(&Path) -> bool,
) {
    let marker = setup.state.path().join("child.hangs");
    let stderr = setup.state.path().join("child.stderr");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "restore_child_process",
            "--ignored",
            "--nocapture",
        ])
        .env(
            CHILD_JOB,
            format!(
                "{}\n{}\n{}\n{}\n{id}\n{hang}\n{}",
                setup.endpoint,
                setup.bucket,
                setup.state.path().display(),
                unix_now(&setup.clock),
                marker.display()
            ),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(exit) = exited(&mut child, &stderr) {
            panic!("{exit}");
        }
        assert!(
            Instant::now() < deadline,
            "the child never reached its hang"
        );
        if hung(&marker) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn exited(child: &mut Child, stderr: &Path) -> Option<String> {
    child.try_wait().unwrap().map(|status| {
        format!(
            "the restore process exited ({status}) before it was killed: {}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        )
    })
}

/// Bytes of the partial downloads (`*.part`) under `dir`, once nothing has grown for a
/// second (the hanging body delivered all it will).
fn settled_partial_bytes(dir: &Path, last: &std::sync::Mutex<(u64, Instant)>) -> Option<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "part") {
                total += entry.metadata().ok()?.len();
            }
        }
    }
    let mut last = last.lock().unwrap();
    if total != last.0 {
        *last = (total, Instant::now());
        return None;
    }
    (total > 0 && last.1.elapsed() > Duration::from_secs(1)).then_some(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_mid_download_downloads_at_most_one_volume_again() {
    let Some(setup) = zfs_on_moto(4).await else {
        return;
    };
    let sizes = setup.chain_volume_sizes().await;
    let total: u64 = sizes.iter().sum();
    let largest = *sizes.iter().max().unwrap();
    let (job, _) = setup
        .repository
        .create_restore(&setup.request(100 << 30), &ZfsSource::new())
        .await
        .unwrap();
    setup.advance(job.id).await; // requests the restores
    setup.clock.advance(Duration::from_secs(3600));

    // GET 1 is the keyring; volumes 0 and 1 download whole, volume 2 stops half way.
    let last = std::sync::Mutex::new((0, Instant::now()));
    run_child_and_kill(&setup, job.id, "download 4", |_| {
        settled_partial_bytes(setup.staging.path(), &last).is_some()
    })
    .await;
    // The full's receive runs beside the downloads: the kill cut it too, and zfs-fuse
    // discards what it had received once that `zfs receive` sees its input close.
    wait_for_receives_to_end(&setup.target());
    let delivered_to_child = sizes[0] + sizes[1] + sizes[2] / 2;

    let bytes_before = setup.counting.bytes_read().get();
    let status = setup.advance(job.id).await;
    assert_eq!(status.state, RestoreState::Done, "{status:?}");
    let delivered_after = setup.counting.bytes_read().get() - bytes_before;
    setup.restored_equal();
    let again = (delivered_to_child + delivered_after).saturating_sub(total);
    assert!(
        again <= largest,
        "{again} bytes downloaded twice (one volume is at most {largest})"
    );
    // The half volume was resumed, not downloaded again from its start.
    assert!(
        delivered_after < total - sizes[0] - sizes[1],
        "{delivered_after} bytes after the kill"
    );
    println!("killed mid-download: {again} bytes downloaded twice of {total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_killed_mid_receive_resumes_without_downloading_again() {
    let Some(setup) = zfs_on_moto(4).await else {
        return;
    };
    let (job, _) = setup
        .repository
        .create_restore(&setup.request(100 << 30), &ZfsSource::new())
        .await
        .unwrap();
    setup.advance(job.id).await; // requests the restores
    setup.clock.advance(Duration::from_secs(3600));

    // Everything downloads; the second stream's receive hangs half way and is killed.
    run_child_and_kill(&setup, job.id, "receive 2", |marker| marker.exists()).await;
    wait_for_receives_to_end(&setup.target());

    let bytes_before = setup.counting.bytes_read().get();
    let gets_before = setup.counting.count(Operation::Get);
    let status = setup.advance(job.id).await;
    assert_eq!(status.state, RestoreState::Done, "{status:?}");
    // Nothing is downloaded again: the volumes stayed staged.
    assert_eq!(
        setup.counting.count(Operation::Get),
        gets_before,
        "{status:?}"
    );
    assert_eq!(setup.counting.bytes_read().get(), bytes_before);
    assert_eq!(
        status.received.len(),
        2,
        "the killed stream and the last: {status:?}"
    );
    setup.restored_equal();
}

/// Waits until no `zfs receive` into `target` runs any more (the killed run's receive
/// ends when its input closes, and zfs-fuse then discards what it received).
fn wait_for_receives_to_end(target: &DatasetName) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
                let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
                args.iter().any(|arg| *arg == b"receive")
                    && args.iter().any(|arg| *arg == target.as_str().as_bytes())
            })
        });
        if !running {
            return;
        }
        assert!(Instant::now() < deadline, "the killed receive never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_btrfs_chain_is_restored_from_a_local_directory() {
    let Some(fs) = BtrfsFs::create() else { return };
    let repository_dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(SystemTime::now());
    let state = tempfile::tempdir().unwrap();
    let backend: Arc<dyn StorageBackend> =
        Arc::new(LocalDirBackend::open(repository_dir.path(), Arc::new(clock.clone())).unwrap());
    let (repository, _) = Repository::init(
        &Location::new(backend, "").unwrap(),
        &Passphrase::new("photos of the grandchildren".into()),
        &fast_init(),
        host(state.path(), &clock),
    )
    .await
    .unwrap();
    let subvolume = fs.create_subvolume("Fotos für Oma");
    write_tree(&subvolume, 31, Names::Unicode).unwrap();
    std::fs::write(subvolume.join("video.mp4"), TestRng::new(9).bytes(3 * MIB)).unwrap();
    let snapshot_dir = fs.mount_point().join("zib snapshots");
    std::fs::create_dir(&snapshot_dir).unwrap();
    let source = BtrfsSource::new(&snapshot_dir);
    let dataset = DatasetName::path(&subvolume).unwrap();
    let mut identities = Vec::new();
    for round in 0..3 {
        if round > 0 {
            modify_tree(&subvolume, 31 + round).unwrap();
            clock.advance(Duration::from_secs(3600));
        }
        let backup = committed(
            repository
                .backup(&source, &dataset, &backup_options(), &NoProgress)
                .await
                .unwrap(),
        );
        identities.push(backup.manifest.snapshot_identity.to_string());
    }
    let expected = hash_tree(&subvolume).unwrap();

    let target = DatasetName::path(fs.mount_point().join("restored")).unwrap();
    let staging = tempfile::tempdir().unwrap();
    let (job, _) = repository
        .create_restore(
            &NewRestore::new(dataset.as_str(), target.clone(), staging.path()),
            &source,
        )
        .await
        .unwrap();
    // A local directory has no archive: one run does it all.
    let status = repository
        .advance_restore(job.id, &source, &NoProgress)
        .await
        .unwrap();
    assert_eq!(status.state, RestoreState::Done, "{status:?}");
    let received = source.list_snapshots(&target).await.unwrap();
    let received_identities: Vec<String> = received
        .iter()
        .map(|snapshot| snapshot.identity.to_string())
        .collect();
    assert_eq!(received_identities, identities);
    let newest = received.last().unwrap();
    assert_eq!(
        hash_tree(&target.as_path().join(newest.name.as_str())).unwrap(),
        expected
    );
}
