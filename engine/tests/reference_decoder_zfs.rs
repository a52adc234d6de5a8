//! Restore by hand: a real backup made from a zfs-fuse dataset into a local-directory
//! repository is decoded by the Python reference decoder (`docs/reference/`, written
//! from FORMAT.md alone, not from this code) and piped into a plain `zfs receive`; the
//! received files are identical.

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zib_engine::snapshot_source::zfs::ZfsSource;
use zib_engine::storage::local_dir::LocalDirBackend;
use zib_engine::storage::StorageBackend;
use zib_engine::{BackupOutcome, FakeClock, NoProgress, Passphrase, Repository};
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names};
use zib_test_utils::real::component_missing;
use zib_test_utils::zfs::ZfsPool;

use common::{backup_options, fast_init, host, location};

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

fn reference_decoder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/zib_reference.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_decoder_restores_a_real_backup_into_zfs_receive() {
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

    let dataset = pool.create_dataset("photos");
    let mountpoint = pool.mountpoint(&dataset);
    write_tree(&mountpoint, 11, Names::Ascii).unwrap();
    let options = backup_options();
    let source = ZfsSource::new();
    let mut chain = Vec::new();
    for round in 0..2 {
        if round > 0 {
            modify_tree(&mountpoint, 12).unwrap();
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

    let passphrase_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(passphrase_file.path(), PASSPHRASE).unwrap();

    // The catalog as the reference decoder reads it.
    let catalog = Command::new(&python)
        .arg(reference_decoder())
        .args(["catalog".as_ref(), repository_dir.path().as_os_str()])
        .env("ZIB_PASSPHRASE_FILE", passphrase_file.path())
        .output()
        .unwrap();
    assert!(
        catalog.status.success(),
        "{}",
        String::from_utf8_lossy(&catalog.stderr)
    );
    let lines: Vec<String> = String::from_utf8(catalog.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("{} ", chain[0])) && lines[0].contains(" full "),
        "{lines:?}"
    );
    assert!(
        lines[1].contains(&format!("incremental:{}", chain[0])),
        "{lines:?}"
    );
    assert!(lines[1].contains(&format!("{dataset}@zib-")), "{lines:?}");

    // Each backup streamed by the decoder straight into `zfs receive`.
    let target = pool.dataset("by hand");
    for backup in &chain {
        let mut decoder = Command::new(&python)
            .arg(reference_decoder())
            .args([
                "stream".as_ref(),
                repository_dir.path().as_os_str(),
                backup.as_ref(),
            ])
            .env("ZIB_PASSPHRASE_FILE", passphrase_file.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let receive = Command::new("zfs")
            .args(["receive", target.as_str()])
            .stdin(decoder.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(
            decoder.wait().unwrap().success(),
            "the decoder failed on backup {backup}"
        );
        assert!(
            receive.status.success(),
            "zfs receive failed on backup {backup}: {}",
            String::from_utf8_lossy(&receive.stderr)
        );
    }
    // zfs-fuse can serve stale file contents from its FUSE cache after a receive.
    pool.remount(&target);
    assert_eq!(hash_tree(&pool.mountpoint(&target)).unwrap(), expected);
}
