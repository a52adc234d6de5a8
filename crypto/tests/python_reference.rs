//! The Python reference decoder (`docs/reference/zib_reference.py`, written from
//! FORMAT.md alone) agrees with this crate on freshly made keyrings, volumes and
//! records with random keys, salts and identities — not only on the fixed vectors — and
//! rejects a tampered volume.
//!
//! Needs Python 3 with the `cryptography` package: `$ZIB_PYTHON`, else the project's
//! venv at `/opt/zib/moto-venv/bin/python`.

// Helpers outside #[test] fns unwrap too: a panic there is the failure report. A
// skipped run says why on stderr.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ring::rand::{SecureRandom, SystemRandom};
use zib_crypto::{
    seal_record, KdfParams, Keyring, Passphrase, RecordContext, VolumeEncryptor, VolumeIdentity,
    VolumeSalt, SEGMENT_LEN,
};

const S: usize = SEGMENT_LEN as usize;
const PASSPHRASE: &str = "ein Passwort mit Umlauten: äöü, und Leerzeichen";

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("ZIB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/zib/moto-venv/bin/python"));
    let works = Command::new(&candidate)
        .args(["-c", "import cryptography.hazmat.primitives.ciphers.aead"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        Some(candidate)
    } else {
        // The same rule as zib-test-utils' `real::component_missing`, without pulling
        // that crate (and the S3 SDK behind it) into this crate's tests.
        let hint = "Python 3 with the `cryptography` package is not available: create the \
                    venv as scripts/test.sh does and set ZIB_PYTHON to its python";
        assert!(
            std::env::var("ZIB_REAL_COMPONENTS").as_deref() != Ok("1"),
            "required by this run (ZIB_REAL_COMPONENTS=1): {hint}"
        );
        eprintln!("skipping: {hint}; set ZIB_REAL_COMPONENTS=1 to make this a failure");
        None
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).unwrap();
    out
}

fn reference(python: &Path, passphrase_file: &Path, args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/zib_reference.py");
    Command::new(python)
        .arg(script)
        .args(args)
        .env("ZIB_PASSPHRASE_FILE", passphrase_file)
        .output()
        .unwrap()
}

#[test]
fn reference_decoder_agrees_on_fresh_random_objects() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pass_file = dir.path().join("passphrase");
    std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
    let (keyring, key) = Keyring::create(
        &Passphrase::new(PASSPHRASE.into()),
        KdfParams::new(12, 8, 1).unwrap(),
    )
    .unwrap();
    let keyring_path = dir.path().join("keyring");
    std::fs::write(&keyring_path, keyring.to_bytes()).unwrap();
    let keyring_arg = keyring_path.to_str().unwrap();

    let out = reference(&python, &pass_file, &["keyring", keyring_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&key.id().to_string()));

    let random_len = usize::from(u16::from_le_bytes(random())) * 3;
    for len in [0, 1, S - 1, S, S + 1, 3 * S + 777, random_len] {
        let identity = VolumeIdentity {
            repository_id: random(),
            backup_id: random(),
            volume_index: u32::from_le_bytes(random()),
        };
        let mut plaintext = vec![0u8; len];
        SystemRandom::new().fill(&mut plaintext).unwrap();
        let mut enc =
            VolumeEncryptor::new(&key, identity, &VolumeSalt::generate().unwrap()).unwrap();
        let mut ct = enc.push(&plaintext).unwrap().to_vec();
        ct.extend_from_slice(&enc.finish().unwrap());
        let path = dir.path().join(format!("volume-{len}"));
        std::fs::write(&path, &ct).unwrap();
        let (repo, backup, index) = (
            hex::encode(identity.repository_id),
            hex::encode(identity.backup_id),
            identity.volume_index.to_string(),
        );
        let args = [
            "volume",
            keyring_arg,
            path.to_str().unwrap(),
            &repo,
            &backup,
            &index,
        ];
        let out = reference(&python, &pass_file, &args);
        assert!(
            out.status.success(),
            "len {len}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout == plaintext,
            "len {len}: reference decoder output differs"
        );

        if len > 0 {
            let mut bad = ct.clone();
            let pos = ct.len() / 2;
            bad[pos] ^= 0x20;
            std::fs::write(&path, &bad).unwrap();
            let out = reference(&python, &pass_file, &args);
            assert_eq!(
                out.status.code(),
                Some(1),
                "len {len}: tampered volume accepted"
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("Corrupt"),
                "len {len}"
            );
        }
    }

    let object_key = format!("zib/backups/{}/manifest", hex::encode(random::<8>()));
    let context = RecordContext {
        record_type: "manifest",
        repository_id: random(),
        object_key: &object_key,
    };
    let plaintext = br#"{"parent":"abc","bytes":42}"#;
    let sealed = seal_record(&key, &context, plaintext).unwrap();
    let repo = hex::encode(context.repository_id);
    let out = reference(
        &python,
        &pass_file,
        &[
            "record",
            keyring_arg,
            "manifest",
            &repo,
            &object_key,
            &sealed,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plaintext);
    let out = reference(
        &python,
        &pass_file,
        &["record", keyring_arg, "volume", &repo, &object_key, &sealed],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "record opened under another type"
    );

    std::fs::write(&pass_file, "not the passphrase\n").unwrap();
    let out = reference(&python, &pass_file, &["keyring", keyring_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WrongPassphrase"));
}
