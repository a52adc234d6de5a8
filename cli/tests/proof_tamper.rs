//! The `zib` binary against stored bytes that were altered: a zfs-fuse dataset backed up
//! (a full and an incremental, in 1 MiB volumes) to a repository in a local directory,
//! then, on a copy of that repository for each case, one byte flipped at a seeded
//! position inside an object's payload (not only the local-directory wrapper around
//! it), or whole objects deleted, truncated, duplicated, swapped or replayed (an older
//! object under a newer key). Every case must fail loudly, naming the object, and never
//! let `zfs receive` finish a dataset from altered bytes; a passphrase off by one
//! character must fail as a wrong passphrase (exit 12), not as corruption. Bytes are
//! also flipped on the restoring side: in a staged volume, after its download was
//! verified and before its receive (an S3 repository on moto, the proxy holding the
//! next download meanwhile).

// Test support: a panic with a message is how a check or a set-up step reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::Sandbox;
use zib_engine::DatasetName;
use zib_test_utils::data::{hash_tree, modify_tree, write_tree, Names, TestRng};
use zib_test_utils::zfs::ZfsPool;

const MIB: usize = 1 << 20;
/// The local-directory object file: `ZIBLOCL1`, a `u32` (little-endian) JSON header
/// length, the JSON header, then the object's bytes (docs/FORMAT.md, "Local-directory
/// repositories").
const WRAPPER_MAGIC: &[u8] = b"ZIBLOCL1";
/// Volume layout (docs/FORMAT.md, "Volume"): a 58-byte header, then sealed segments of
/// 65,536 plaintext bytes plus a 16-byte tag.
const VOLUME_HEADER: usize = 58;
const SEGMENT: usize = 65_536 + 16;

/// A repository with two committed backups of one dataset, and what was backed up.
struct Fixture {
    pool: ZfsPool,
    /// Holds the repository directory (and the first backups' state).
    sandbox: Sandbox,
    dataset: DatasetName,
    repository: PathBuf,
    dataset_id: String,
    /// Backup ids, oldest first (a full, then an incremental on it).
    backups: Vec<String>,
    /// The newest snapshot's files.
    expected: std::collections::BTreeMap<String, String>,
}

fn config_text(repository: &Path) -> String {
    format!(
        "[repository]\nurl = \"{}\"\n\n[policy]\nvolume_size = \"1MiB\"\nconsolidation = \"never\"\n",
        repository.display()
    )
}

impl Fixture {
    fn new() -> Option<Self> {
        let pool = ZfsPool::create()?;
        let sandbox = Sandbox::new();
        let dataset = pool.create_dataset("photos");
        let mountpoint = pool.mountpoint(&dataset);
        write_tree(&mountpoint.join("albums"), 31, Names::Ascii).unwrap();
        std::fs::write(
            mountpoint.join("video.mp4"),
            TestRng::new(31).bytes(3 * MIB),
        )
        .unwrap();
        let repository = sandbox.init_local();
        std::fs::write(sandbox.config(), config_text(&repository)).unwrap();
        let full = sandbox.json(&["backup", dataset.as_str()], 0);
        modify_tree(&mountpoint.join("albums"), 32).unwrap();
        std::fs::write(mountpoint.join("new.mp4"), TestRng::new(33).bytes(2 * MIB)).unwrap();
        let incremental = sandbox.json(&["backup", dataset.as_str()], 0);
        assert_eq!(incremental["datasets"][0]["kind"], "incremental");
        let expected = hash_tree(&mountpoint).unwrap();
        let id = |report: &serde_json::Value, field: &str| {
            report["datasets"][0][field].as_str().unwrap().to_owned()
        };
        assert!(
            full["datasets"][0]["volumes"].as_u64().unwrap() >= 3,
            "{full}"
        );
        Some(Self {
            dataset_id: id(&full, "dataset_id"),
            backups: vec![id(&full, "backup_id"), id(&incremental, "backup_id")],
            pool,
            sandbox,
            dataset,
            repository,
            expected,
        })
    }

    /// A sandbox of its own (state, config) on a copy of the repository, to alter.
    fn copy(&self) -> Copy {
        let sandbox = Sandbox::new();
        let repository = sandbox.path().join("repository");
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&self.repository)
            .arg(&repository)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(sandbox.config(), config_text(&repository)).unwrap();
        Copy {
            sandbox,
            repository,
        }
    }

    fn volume_key(&self, backup: usize, index: u32) -> String {
        format!(
            "volumes/{}/{}/{index:08}",
            self.dataset_id, self.backups[backup]
        )
    }

    fn manifest_key(&self, backup: usize) -> String {
        format!("manifests/{}/{}", self.dataset_id, self.backups[backup])
    }

    /// `zib restore` of the newest backup from `copy` into a new dataset: the exit code
    /// and stderr; on success, checks the restored bytes.
    fn restore(&self, copy: &Copy, case: &str) -> (Option<i32>, String) {
        let target = self.pool.dataset(&format!("r-{case}"));
        let output = copy
            .sandbox
            .zib()
            .args([
                "restore",
                self.dataset.as_str(),
                "--into",
                target.as_str(),
                "--yes",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            assert_eq!(
                hash_tree(&self.pool.mountpoint(&target)).unwrap(),
                self.expected,
                "{case}: a restore that succeeded differs from the snapshot"
            );
        }
        (output.status.code(), stderr)
    }
}

/// A repository copy with its own sandbox.
struct Copy {
    /// Holds the repository directory (and the first backups' state).
    sandbox: Sandbox,
    repository: PathBuf,
}

impl Copy {
    fn object(&self, key: &str) -> PathBuf {
        self.repository.join("objects").join(key)
    }

    /// The object's bytes inside its local-directory wrapper: (offset, length).
    fn payload(&self, key: &str) -> (usize, usize) {
        let bytes = std::fs::read(self.object(key)).unwrap();
        assert_eq!(&bytes[..8], WRAPPER_MAGIC, "{key}");
        let header = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let start = 12 + header;
        (start, bytes.len() - start)
    }

    /// Replaces the object's file.
    fn write(&self, key: &str, bytes: &[u8]) {
        std::fs::write(self.object(key), bytes).unwrap();
    }

    fn read(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.object(key)).unwrap()
    }

    /// Changes character `position` of the object's sealed `zib-record` metadata (in
    /// the wrapper's JSON header) to another base64url character, and writes the
    /// wrapper back.
    fn alter_record(&self, key: &str, position: usize) {
        let bytes = self.read(key);
        let (start, _) = self.payload(key);
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[12..start]).unwrap();
        let record = header["metadata"]["zib-record"]
            .as_str()
            .unwrap()
            .to_owned();
        // Not the last character: its low bits may be padding that a decoder ignores.
        let position = position % (record.len() - 1);
        let mut chars: Vec<char> = record.chars().collect();
        chars[position] = if chars[position] == 'A' { 'B' } else { 'A' };
        header["metadata"]["zib-record"] = chars.into_iter().collect::<String>().into();
        let json = serde_json::to_vec(&header).unwrap();
        let mut out = WRAPPER_MAGIC.to_vec();
        out.extend_from_slice(&u32::try_from(json.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&bytes[start..]);
        self.write(key, &out);
    }

    /// Flips the bits of `mask` in byte `position` of the object's payload.
    fn flip(&self, key: &str, position: usize, mask: u8) {
        let (start, len) = self.payload(key);
        assert!(position < len, "{key}: {position} past {len}");
        let path = self.object(key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[start + position] ^= mask;
        std::fs::write(&path, bytes).unwrap();
    }
}

/// How a case must fail: not at all silently, with exit 1 (an error, not "wrong
/// passphrase"), naming `object`; and the restore target must not hold the newest
/// snapshot (nothing altered was received as if valid).
fn assert_detected(fixture: &Fixture, copy: &Copy, case: &str, object: &str) {
    assert_detected_one_of(fixture, copy, case, &[object]);
}

/// [`assert_detected`] where any of `objects` may be the one named (two altered objects
/// read at once: whichever fails first is reported).
fn assert_detected_one_of(fixture: &Fixture, copy: &Copy, case: &str, objects: &[&str]) {
    let (code, stderr) = fixture.restore(copy, case);
    assert_eq!(code, Some(1), "{case}: {stderr}");
    assert!(
        objects.iter().any(|object| stderr.contains(object)),
        "{case}: the error names none of {objects:?}:\n{stderr}"
    );
    assert!(
        stderr.contains("corrupt")
            || stderr.contains("damaged")
            || stderr.contains("missing")
            || stderr.contains("altered"),
        "{case}: {stderr}"
    );
    let target = fixture.pool.dataset(&format!("r-{case}"));
    let newest = format!("{}@", target.as_str());
    let received: Vec<String> = fixture
        .pool
        .everything()
        .into_iter()
        .filter(|name| name.starts_with(&newest))
        .collect();
    assert!(
        received.len() < 2,
        "{case}: the newest backup was received from altered bytes: {received:?}"
    );
}

/// Single-byte flips at seeded positions in every kind of stored object.
#[test]
fn a_flipped_byte_in_any_stored_object_is_detected_and_named() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let mut rng = TestRng::new(17);
    let mut mask = || (rng.below(255) + 1) as u8;
    let mut positions = TestRng::new(71);
    let mut tried = 0;
    // The newest backup's last volume holds the stream's final segment.
    let last_volume = {
        let copy = fixture.copy();
        (0..)
            .take_while(|index| copy.object(&fixture.volume_key(1, *index)).exists())
            .last()
            .unwrap()
    };
    for round in 0..3u32 {
        // The keyring (160 bytes): every command that opens the repository refuses it.
        let copy = fixture.copy();
        let position = positions.below(160) as usize;
        copy.flip("keyring", position, mask());
        assert_detected(&fixture, &copy, &format!("keyring-{round}"), "keyring");
        let verify = copy.sandbox.zib().args(["verify"]).output().unwrap();
        assert_eq!(verify.status.code(), Some(1), "verify of a flipped keyring");
        tried += 1;

        // A manifest's sealed metadata (what the catalog reads): the older backup's, so
        // the chain of the newer one breaks too.
        let copy = fixture.copy();
        let manifest = fixture.manifest_key(round as usize % 2);
        copy.alter_record(&manifest, positions.below(1 << 16) as usize);
        assert_detected(&fixture, &copy, &format!("manifest-{round}"), &manifest);
        tried += 1;

        // A volume header (magic, version, key id, salt).
        let copy = fixture.copy();
        let volume = fixture.volume_key(0, round);
        copy.flip(
            &volume,
            positions.below(VOLUME_HEADER as u64) as usize,
            mask(),
        );
        assert_detected(&fixture, &copy, &format!("header-{round}"), &volume);
        tried += 1;

        // A middle segment of a middle volume.
        let copy = fixture.copy();
        let volume = fixture.volume_key(0, 1 + round % 2);
        let (_, len) = copy.payload(&volume);
        let segments = (len - VOLUME_HEADER) / SEGMENT;
        let segment = 1 + positions.below(segments as u64 - 2) as usize;
        let position = VOLUME_HEADER + segment * SEGMENT + positions.below(SEGMENT as u64) as usize;
        copy.flip(&volume, position, mask());
        assert_detected(&fixture, &copy, &format!("middle-{round}"), &volume);
        tried += 1;

        // The final segment of the stream (tag included).
        let copy = fixture.copy();
        let volume = fixture.volume_key(1, last_volume);
        let (_, len) = copy.payload(&volume);
        let final_start = VOLUME_HEADER + (len - VOLUME_HEADER) / SEGMENT * SEGMENT;
        let position = final_start + positions.below((len - final_start) as u64) as usize;
        copy.flip(&volume, position, mask());
        assert_detected(&fixture, &copy, &format!("final-{round}"), &volume);
        tried += 1;
    }
    eprintln!("{tried} flips tried, {tried} detected and named");
}

/// Whole objects deleted, truncated, duplicated, swapped and replayed.
#[test]
fn missing_cut_duplicated_swapped_and_replayed_objects_are_detected() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let full = |index| fixture.volume_key(0, index);
    let mut cases = 0;

    // A volume deleted.
    let copy = fixture.copy();
    std::fs::remove_file(copy.object(&full(1))).unwrap();
    assert_detected(&fixture, &copy, "deleted", &full(1));
    cases += 1;

    // A volume cut short, at a segment boundary (so no partial segment gives it away)
    // and in the middle of a segment.
    for (case, keep) in [
        ("truncated-boundary", VOLUME_HEADER + 3 * SEGMENT),
        ("truncated", 1000),
    ] {
        let copy = fixture.copy();
        let bytes = copy.read(&full(2));
        let (start, _) = copy.payload(&full(2));
        copy.write(&full(2), &bytes[..start + keep]);
        assert_detected(&fixture, &copy, case, &full(2));
        cases += 1;
    }

    // A volume stored twice: volume 1 replaced by a copy of volume 0.
    let copy = fixture.copy();
    let zero = copy.read(&full(0));
    copy.write(&full(1), &zero);
    assert_detected(&fixture, &copy, "duplicated", &full(1));
    cases += 1;

    // Two volumes swapped.
    let copy = fixture.copy();
    let (zero, one) = (copy.read(&full(0)), copy.read(&full(1)));
    copy.write(&full(0), &one);
    copy.write(&full(1), &zero);
    assert_detected(&fixture, &copy, "swapped", &full(0));
    cases += 1;

    // Replayed: the older backup's volume 0 under the newer backup's key.
    let copy = fixture.copy();
    let newer = fixture.volume_key(1, 0);
    copy.write(&newer, &copy.read(&full(0)));
    assert_detected(&fixture, &copy, "replayed-volume", &newer);
    cases += 1;

    // Manifests: the older one under the newer one's key (replayed), the two swapped,
    // the older one deleted (the newer backup's base is gone).
    let (older, newer) = (fixture.manifest_key(0), fixture.manifest_key(1));
    let copy = fixture.copy();
    copy.write(&newer, &copy.read(&older));
    assert_detected(&fixture, &copy, "replayed-manifest", &newer);
    cases += 1;
    let copy = fixture.copy();
    let (a, b) = (copy.read(&older), copy.read(&newer));
    copy.write(&older, &b);
    copy.write(&newer, &a);
    // The catalog reads manifests concurrently: either may be the first refused.
    assert_detected_one_of(&fixture, &copy, "swapped-manifests", &[&older, &newer]);
    cases += 1;
    let copy = fixture.copy();
    std::fs::remove_file(copy.object(&older)).unwrap();
    let (code, stderr) = fixture.restore(&copy, "deleted-base-manifest");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&fixture.backups[0]),
        "names the missing base: {stderr}"
    );
    cases += 1;

    // The newest manifest deleted is a backup that never committed, as far as the
    // bucket can tell: the restore takes the older one (correctly), and verify reports
    // the newer one's volumes as leftovers without a manifest.
    let copy = fixture.copy();
    std::fs::remove_file(copy.object(&newer)).unwrap();
    let verify = copy.sandbox.json(&["verify"], 0);
    let problems = verify["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["key"]
            .as_str()
            .is_some_and(|k| k.contains(&fixture.backups[1]))),
        "{verify}"
    );
    cases += 1;

    // The manifest's body is a copy of its metadata that restores never read (the
    // catalog comes from LIST and HEAD); a flip there changes no restored byte.
    let copy = fixture.copy();
    let (_, len) = copy.payload(&newer);
    copy.flip(&newer, len / 2, 0x40);
    let (code, stderr) = fixture.restore(&copy, "manifest-body");
    assert_eq!(code, Some(0), "{stderr}");
    eprintln!("{cases} structural cases detected");
}

/// The archived keyring copy is read only when the live keyring is lost: with both
/// damaged, recovery fails naming the copy.
#[test]
fn a_flipped_archived_keyring_copy_is_refused_at_recovery() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let copy = fixture.copy();
    let archive = std::fs::read_dir(copy.object("keyring-archive"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .next()
        .unwrap();
    let archived = format!("keyring-archive/{archive}");
    std::fs::remove_file(copy.object("keyring")).unwrap();
    copy.flip(&archived, 100, 0x08);
    let mut output = None;
    for _ in 0..4 {
        let run = copy
            .sandbox
            .zib()
            .args(["key", "recover"])
            .output()
            .unwrap();
        if run.status.code() != Some(75) {
            output = Some(run);
            break;
        }
    }
    let output = output.expect("key recover stopped waiting for the thaw");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&archived), "{stderr}");

    // The same copy intact recovers the keyring, and the repository opens again.
    let copy = fixture.copy();
    std::fs::remove_file(copy.object("keyring")).unwrap();
    let mut state = String::new();
    for _ in 0..4 {
        let report = copy
            .sandbox
            .zib()
            .args(["--json", "key", "recover"])
            .output()
            .unwrap();
        let document: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
        state = document["state"].as_str().unwrap_or_default().to_owned();
        if report.status.code() == Some(0) {
            break;
        }
        assert_eq!(report.status.code(), Some(75), "{document}");
    }
    assert_eq!(state, "ready");
    copy.sandbox.json(&["list"], 0);
}

/// A passphrase off by one character is a wrong passphrase (exit 12), never taken for
/// corruption.
#[test]
fn a_passphrase_off_by_one_character_is_a_wrong_passphrase() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let mut variants = Vec::new();
    let passphrase = common::PASSPHRASE;
    let chars: Vec<char> = passphrase.chars().collect();
    // One character changed, one dropped, one added.
    let mut changed = chars.clone();
    changed[3] = if changed[3] == 'x' { 'y' } else { 'x' };
    variants.push(changed.into_iter().collect::<String>());
    variants.push(passphrase[..passphrase.len() - 1].to_owned());
    variants.push(format!("{passphrase}!"));
    for variant in &variants {
        let file = fixture.sandbox.path().join("off-by-one");
        fixture.sandbox.write_passphrase(&file, variant);
        let output = fixture
            .sandbox
            .zib()
            .env("ZIB_PASSPHRASE_FILE", &file)
            .args(["list"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(12), "{variant:?}: {stderr}");
        assert!(stderr.contains("passphrase"), "{stderr}");
        assert!(
            !stderr.contains("corrupt") && !stderr.contains("damaged"),
            "{stderr}"
        );
    }
    eprintln!(
        "{} passphrases off by one character: all exit 12",
        variants.len()
    );
}

/// One byte of a staged volume flipped on the local disk during a restore — after it was
/// downloaded and verified, before its stream is received (the proxy holds the download
/// of the stream's last volume meanwhile) — is detected as the receive reads it: the run
/// fails naming the object and the staged file, nothing is received, the damaged copy is
/// dropped, and the rerun downloads that volume alone again and restores byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_staged_volume_flipped_on_local_disk_is_detected_and_downloaded_again() {
    use common::proof::{
        backed_up_video, proxied_s3, request_thaw, restore_until_done, volume_downloads, wait_seen,
        ProxiedS3,
    };
    use zib_engine::storage::Operation;
    use zib_test_utils::proxy::{ProxyFault, ProxyRule, ProxyTrigger};

    let Some(pool) = ZfsPool::create() else {
        return;
    };
    let sandbox = Sandbox::new();
    // 11 MiB volumes, and a request timeout longer than the hold below.
    let Some(ProxiedS3 {
        moto: _moto, proxy, ..
    }) = proxied_s3(&sandbox, Vec::new(), 0, "300s", "11MiB").await
    else {
        return;
    };
    let (dataset, expected, backup) = backed_up_video(&sandbox, &pool, 41, 30, 3);
    let backup_id = backup["datasets"][0]["backup_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = pool.dataset("restored");
    request_thaw(
        &sandbox,
        &[dataset.as_str(), "--into", target.as_str(), "--yes"],
    );

    // The run reads the keyring, then volumes 0, 1 and 2: the fourth GET is held.
    proxy.set_rules(vec![ProxyRule {
        operation: Some(Operation::Get),
        trigger: ProxyTrigger::Nth(proxy.seen(Operation::Get) + 4),
        fault: ProxyFault::Hold,
    }]);
    let held_at = proxy.seen(Operation::Get) + 4;
    let run = {
        let mut command = sandbox.zib_process();
        command.args(["--json", "restore"]);
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    wait_seen(&proxy, Operation::Get, held_at).await;
    let downloads = volume_downloads(&proxy);
    assert!(
        downloads.last().unwrap().ends_with("/00000002"),
        "held: {downloads:?}"
    );
    let staging = std::fs::read_dir(sandbox.state().join("staging"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut rng = TestRng::new(42);
    let index = rng.below(2);
    let staged = staging.join(format!("{backup_id}-{index:08}.volume"));
    let mut bytes = std::fs::read(&staged).unwrap();
    // Inside a sealed segment, past the volume header.
    let position = VOLUME_HEADER + usize::try_from(rng.below(3 * SEGMENT as u64)).unwrap();
    bytes[position] ^= 1 << rng.below(8);
    std::fs::write(&staged, bytes).unwrap();
    proxy.release();
    let output = run.await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let volume_key = format!("{backup_id}/{index:08}");
    assert!(
        stderr.contains(&volume_key) && stderr.contains(&staged.display().to_string()),
        "the error names neither the object {volume_key} nor the staged file: {stderr}"
    );
    assert!(
        !pool.exists(&target),
        "a receive from a damaged staged volume left {target}"
    );
    assert!(!staged.exists(), "the damaged staged copy was kept");

    let before = volume_downloads(&proxy).len();
    let done = restore_until_done(&sandbox, &[]);
    assert_eq!(done["state"], "done", "{done}");
    let again = volume_downloads(&proxy).split_off(before);
    assert_eq!(again.len(), 1, "downloaded again: {again:?}");
    assert!(
        again[0].ends_with(&volume_key),
        "downloaded again: {again:?}"
    );
    assert_eq!(
        hash_tree(&pool.mountpoint(&target)).unwrap(),
        expected,
        "the restore after a damaged staged volume differs from the snapshot"
    );
    eprintln!(
        "staged volume {index} flipped at byte {position}: detected, named, downloaded again\n{}",
        stderr
            .lines()
            .find(|line| line.contains("zib: error"))
            .unwrap_or_default()
    );
}
