//! Restore by hand: real backups made from a zfs-fuse dataset (a full and two
//! incrementals) are restored by the Python reference decoder alone (`docs/reference/`,
//! written from FORMAT.md, not from this code) into a plain `zfs receive`, and the
//! received files are identical — from a local-directory repository and from an S3
//! bucket (moto, read with boto3). The decoder run is the copy the repository carries in
//! its decoder kit (`kit/v1/…/zib_reference.py`), which must be the project's document
//! byte for byte; the repository's `RESTORE.txt` and `FORMAT.md` must be too.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::storage::local_dir::LocalDirBackend;
use zib_engine::storage::{ByteRange, ObjectKey, StorageBackend, StorageBackendExt};
use zib_engine::{BackupOutcome, FakeClock, NoProgress, Passphrase, Repository};
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names};
use zib_test_utils::moto::MotoServer;
use zib_test_utils::real::component_missing;
use zib_test_utils::zfs::ZfsPool;

use common::{backup_options, fast_init, host, location, s3_on_moto};

const PASSPHRASE: &str = "grandmother's recipe book";

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("ZIB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/zib/moto-venv/bin/python"));
    let works = Command::new(&candidate)
        .args(["-c", "import cryptography.hazmat.primitives.ciphers.aead"])
        .output()
        .is_ok_and(|output| output.status.success());
    if works {
        Some(candidate)
    } else {
        component_missing(
            "Python 3 with the `cryptography` package",
            "run scripts/test.sh (it creates /opt/zib/moto-venv) or set ZIB_PYTHON",
        )
    }
}

/// The kit's files as the source tree has them: (name, bytes).
fn documents() -> Vec<(&'static str, Vec<u8>)> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    [
        ("RESTORE.txt", "reference/RESTORE.txt"),
        ("FORMAT.md", "FORMAT.md"),
        ("zib_reference.py", "reference/zib_reference.py"),
    ]
    .into_iter()
    .map(|(name, path)| (name, std::fs::read(docs.join(path)).unwrap()))
    .collect()
}

/// Checks that the repository under `prefix` lists the decoder kit with the documents'
/// bytes, and writes its copy of the reference decoder into `dir`.
async fn decoder_from_the_kit(
    backend: &Arc<dyn StorageBackend>,
    prefix: &str,
    dir: &Path,
) -> PathBuf {
    let listed: Vec<String> = backend
        .list_all(&format!("{prefix}kit/"))
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.key.as_str().to_owned())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let mut decoder = None;
    for (name, bytes) in documents() {
        let hash = hex::encode(&ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()[..8]);
        let key = format!("{prefix}kit/v1/{hash}/{name}");
        assert!(listed.contains(&key), "{key} not in {listed:?}");
        let stored = backend
            .get_bytes(&ObjectKey::new(key.clone()).unwrap(), ByteRange::full())
            .await
            .unwrap();
        assert_eq!(stored, bytes, "{key} is not the document");
        if name == "zib_reference.py" {
            let path = dir.join(name);
            std::fs::write(&path, &stored).unwrap();
            decoder = Some(path);
        }
    }
    decoder.unwrap()
}

/// A dataset with files, backed up three times (a full, then two incrementals) into
/// `repository`; returns the backup ids in chain order and the files' hashes.
async fn back_up_three_times(
    pool: &ZfsPool,
    repository: &Repository,
    clock: &FakeClock,
) -> (
    zib_engine::DatasetName,
    Vec<String>,
    std::collections::BTreeMap<String, String>,
) {
    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);
    write_tree(&mountpoint, 11, Names::Ascii).unwrap();
    let options = backup_options();
    let source = ZfsSource::new();
    let mut chain = Vec::new();
    for round in 0..3 {
        if round > 0 {
            modify_tree(&mountpoint, 11 + round).unwrap();
            clock.advance(Duration::from_secs(3600));
        }
        match repository
            .backup(&source, &dataset, &options, &NoProgress)
            .await
            .unwrap()
        {
            BackupOutcome::Committed(committed) => {
                chain.push(committed.manifest.backup_id.to_string())
            }
            BackupOutcome::UpToDate { .. } => panic!("round {round} found nothing to back up"),
        }
    }
    let expected = hash_tree(&mountpoint).unwrap();
    (dataset, chain, expected)
}

struct Decoder {
    python: PathBuf,
    script: PathBuf,
    passphrase_file: tempfile::NamedTempFile,
    env: Vec<(&'static str, String)>,
}

impl Decoder {
    fn new(python: PathBuf, script: PathBuf, env: Vec<(&'static str, String)>) -> Self {
        let passphrase_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(passphrase_file.path(), PASSPHRASE).unwrap();
        Self {
            python,
            script,
            passphrase_file,
            env,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .env("ZIB_PASSPHRASE_FILE", self.passphrase_file.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "zib_reference.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

/// The decoder's catalog lists the chain in order, and its `restore` receives the whole
/// chain into a new dataset whose files are `expected`.
fn restore_with_the_decoder(
    decoder: &Decoder,
    repository: &str,
    pool: &ZfsPool,
    dataset: &zib_engine::DatasetName,
    chain: &[String],
    expected: &std::collections::BTreeMap<String, String>,
) {
    let catalog = decoder.ok(&["catalog", repository]);
    let lines: Vec<&str> = catalog.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{} ", chain[0])) && lines[0].contains(" full "),
        "{lines:?}"
    );
    for i in 1..3 {
        assert!(lines[i].starts_with(&format!("{} ", chain[i])), "{lines:?}");
        assert!(
            lines[i].contains(&format!("incremental:{}", chain[i - 1])),
            "{lines:?}"
        );
        assert!(lines[i].contains(&format!("{dataset}@zib-")), "{lines:?}");
    }

    let target = pool.dataset("by hand");
    decoder.ok(&[
        "restore",
        repository,
        &chain[2],
        "--",
        "zfs",
        "receive",
        target.as_str(),
    ]);
    // zfs-fuse can serve stale file contents from its FUSE cache after a receive.
    pool.remount(&target);
    assert_eq!(&hash_tree(&pool.mountpoint(&target)).unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_decoder_restores_a_real_chain_from_a_local_directory() {
    let Some(python) = python() else { return };
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let repository_dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(SystemTime::now());
    let backend: Arc<dyn StorageBackend> =
        Arc::new(LocalDirBackend::open(repository_dir.path(), Arc::new(clock.clone())).unwrap());
    let (repository, _) = Repository::init(
        &location(&backend, ""),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(&clock),
    )
    .await
    .unwrap();
    let (dataset, chain, expected) = back_up_three_times(&pool, &repository, &clock).await;

    let work = tempfile::tempdir().unwrap();
    let script = decoder_from_the_kit(&backend, "", work.path()).await;
    let decoder = Decoder::new(python, script, Vec::new());
    let repository_path = repository_dir.path().to_str().unwrap();

    // One stream alone, as `stream` writes it: the full backup's exact bytes.
    let stream = decoder.run(&["stream", repository_path, &chain[0]]);
    assert!(
        stream.status.success(),
        "{}",
        String::from_utf8_lossy(&stream.stderr)
    );
    let catalog = repository.catalog().await.unwrap();
    let full = catalog
        .datasets
        .values()
        .flatten()
        .find(|b| b.manifest.backup_id.to_string() == chain[0])
        .unwrap();
    assert_eq!(stream.stdout.len() as u64, full.manifest.stream_len);
    assert_eq!(
        ring::digest::digest(&ring::digest::SHA256, &stream.stdout).as_ref(),
        full.manifest.stream_sha256
    );

    restore_with_the_decoder(
        &decoder,
        repository_path,
        &pool,
        &dataset,
        &chain,
        &expected,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_decoder_restores_a_real_chain_from_s3() {
    let Some(python) = python() else { return };
    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let Some(moto) = MotoServer::start().await else {
        return;
    };
    let (bucket, backend) = s3_on_moto(&moto).await;
    let clock = FakeClock::new(SystemTime::now());
    let (repository, _) = Repository::init(
        &location(&backend, "family/zib"),
        &Passphrase::new(PASSPHRASE.into()),
        &fast_init(),
        host(&clock),
    )
    .await
    .unwrap();
    let (dataset, chain, expected) = back_up_three_times(&pool, &repository, &clock).await;

    let work = tempfile::tempdir().unwrap();
    let script = decoder_from_the_kit(&backend, "family/zib/", work.path()).await;
    let decoder = Decoder::new(
        python,
        script,
        vec![
            ("AWS_ENDPOINT_URL", moto.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ],
    );
    // The prefix as a user might type it: the join of FORMAT.md makes it `family/zib/`.
    let url = format!("s3://{bucket}/family/zib");

    // The volumes are in Deep Archive: streaming before a thaw is refused, naming the
    // object, and `thaw` requests the restores (moto completes them at once).
    let refused = decoder.run(&["stream", &url, &chain[0]]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("is archived and not restored yet"),
        "{message}"
    );
    let first = decoder.run(&["thaw", &url, &chain[2]]);
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(said.contains("0 volume(s) ready"), "{said}");
    assert_eq!(first.status.code(), Some(3), "{said}");
    let again = decoder.ok(&["thaw", &url, &chain[2]]);
    assert!(again.contains(", 0 being restored"), "{again}");

    restore_with_the_decoder(&decoder, &url, &pool, &dataset, &chain, &expected);
}
