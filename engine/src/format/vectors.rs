//! The checked-in format vectors (`crypto/tests/vectors/`, written by hand from
//! docs/FORMAT.md in `crypto/tests/vectors.rs`) read with the engine's own format code:
//! every manifest and volume record plaintext decodes to its listed fields and encodes
//! back to the same bytes, every layout fail vector is refused, every volume list hash
//! matches, the tiny repository restores to its known streams through the engine, its
//! spoiled backups are refused, and the local-directory object files are exactly what
//! `LocalDirBackend` writes and refuses. `docs/reference/check_vectors.py` checks the
//! same vectors with the reference decoder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use ring::digest::{digest, SHA256};
use serde_json::{json, Value};
use zib_crypto::{open_keyring, open_record, DataKey, Passphrase, RecordContext};
use zib_snapshot_source::{SnapshotIdentity, SourceKind};
use zib_storage_backend::local_dir::LocalDirBackend;
use zib_storage_backend::{
    ByteRange, FakeClock, ObjectKey, PutPrecondition, StorageBackend, StorageBackendExt,
    StorageClass, WriteOptions,
};

use super::records::{volume_list_hash, BackupKind, ManifestRecord, VolumeListEntry, VolumeRecord};
use crate::download::{backup_stream, Volumes};
use crate::error::Error;
use crate::{Host, Location, Repository};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crypto/tests/vectors")
}

fn index() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("index.json")).unwrap()).unwrap()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap()
}

fn passphrase(index: &Value, keyring: &str) -> String {
    let entry = index["keyrings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == keyring)
        .unwrap();
    text(&entry["passphrase"]).to_owned()
}

fn keys(index: &Value) -> HashMap<String, DataKey> {
    index["keyrings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let bytes = std::fs::read(dir().join(text(&k["file"]))).unwrap();
            let key =
                open_keyring(&bytes, &Passphrase::new(text(&k["passphrase"]).into())).unwrap();
            (text(&k["name"]).to_owned(), key)
        })
        .collect()
}

fn open(keys: &HashMap<String, DataKey>, v: &Value) -> Vec<u8> {
    let context = RecordContext {
        record_type: text(&v["record_type"]),
        repository_id: hex::decode(text(&v["repository_id"]))
            .unwrap()
            .try_into()
            .unwrap(),
        object_key: text(&v["object_key"]),
    };
    open_record(&keys[text(&v["keyring"])], &context, text(&v["sealed"])).unwrap()
}

fn identity_text(identity: &SnapshotIdentity) -> String {
    match identity {
        SnapshotIdentity::ZfsGuid(guid) => format!("zfs-guid:{guid}"),
        SnapshotIdentity::BtrfsUuid(uuid) => format!("btrfs-uuid:{}", hex::encode(uuid)),
    }
}

/// A decoded manifest in the shape of the vectors' `fields`.
fn manifest_fields(m: &ManifestRecord) -> Value {
    let (base_backup_id, base_snapshot_name, base_identity) = match &m.kind {
        BackupKind::Full => (None, None, None),
        BackupKind::Incremental {
            base_backup,
            base_snapshot_name,
            base_identity,
        } => (
            Some(base_backup.to_string()),
            Some(base_snapshot_name.clone()),
            Some(identity_text(base_identity)),
        ),
    };
    json!({
        "source": match m.source { SourceKind::Zfs => "zfs", SourceKind::Btrfs => "btrfs" },
        "kind": if base_backup_id.is_some() { "incremental" } else { "full" },
        "created_by_zib": m.snapshot_created_by_zib,
        "send_flags": m.send_flags.0,
        "dataset_id": m.dataset_id.to_string(),
        "backup_id": m.backup_id.to_string(),
        "snapshot_created_at": m.snapshot_created_at,
        "committed_at": m.committed_at,
        "stream_len": m.stream_len,
        "stream_sha256": hex::encode(m.stream_sha256),
        "stored_len": m.stored_len,
        "volume_count": m.volume_count,
        "volume_plaintext_len": m.volume_plaintext_len,
        "volume_list_sha256": hex::encode(m.volume_list_sha256),
        "dataset_name": m.dataset_name,
        "snapshot_name": m.snapshot_name,
        "identity": identity_text(&m.snapshot_identity),
        "base_backup_id": base_backup_id,
        "base_snapshot_name": base_snapshot_name,
        "base_identity": base_identity,
        "snapshot_bytes": m.snapshot_bytes,
        "replaced_incremental": m.replaced_incremental.map(|r| json!({
            "base_backup_id": r.base_backup.to_string(), "estimated_bytes": r.estimated_bytes})),
    })
}

#[test]
fn record_layouts_decode_to_their_fields_and_encode_to_the_same_bytes() {
    let index = index();
    let keys = keys(&index);
    let mut checked = 0;
    for r in index["records"].as_array().unwrap() {
        let name = text(&r["name"]);
        let plain = open(&keys, r);
        let object = text(&r["object_key"]);
        match text(&r["layout"]) {
            "manifest" => {
                let record = ManifestRecord::decode(&plain, object).unwrap();
                assert_eq!(manifest_fields(&record), r["fields"], "{name}");
                assert_eq!(record.encode().unwrap(), plain, "{name}");
            }
            "volume" => {
                let record = VolumeRecord::decode(&plain, object).unwrap();
                let fields = json!({
                    "dataset_id": record.dataset_id.to_string(),
                    "backup_id": record.backup_id.to_string(),
                    "volume_index": record.volume_index,
                    "stream_offset": record.stream_offset,
                });
                assert_eq!(fields, r["fields"], "{name}");
                assert_eq!(record.encode(), plain, "{name}");
            }
            "none" => continue,
            other => panic!("{name}: unknown layout {other}"),
        }
        checked += 1;
    }
    assert_eq!(
        checked, 3,
        "a manifest v1, a manifest v2 and a volume record"
    );
}

#[test]
fn layout_fail_vectors_are_refused_for_their_reason() {
    let index = index();
    let keys = keys(&index);
    let mut checked = 0;
    for f in index["fail"].as_array().unwrap() {
        let name = text(&f["name"]);
        let object = f["object_key"].as_str().unwrap_or_default();
        let error = match text(&f["kind"]) {
            "manifest" => ManifestRecord::decode(&open(&keys, f), object).map(drop),
            "volume_record" => VolumeRecord::decode(&open(&keys, f), object).map(drop),
            _ => continue,
        }
        .expect_err(name);
        let Error::Corrupt {
            object: named,
            reason,
        } = &error
        else {
            panic!("{name}: {error:?}");
        };
        assert_eq!(named, object, "{name}");
        // A version this code does not read may be a newer zib's: the error says so.
        assert_eq!(
            reason.contains("a newer zib may read it"),
            f["expect"] == "newer_version",
            "{name}: {reason}"
        );
        checked += 1;
    }
    assert_eq!(checked, 15);
}

#[test]
fn volume_list_hashes_match() {
    let index = index();
    for v in index["volume_lists"].as_array().unwrap() {
        let entries: Vec<VolumeListEntry> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| VolumeListEntry {
                index: e["index"].as_u64().unwrap().try_into().unwrap(),
                plaintext_len: e["plaintext_len"].as_u64().unwrap(),
                ciphertext_len: e["volume_len"].as_u64().unwrap(),
                plaintext_sha256: hex::decode(text(&e["plaintext_sha256"]))
                    .unwrap()
                    .try_into()
                    .unwrap(),
            })
            .collect();
        assert_eq!(
            hex::encode(volume_list_hash(&entries)),
            text(&v["sha256"]),
            "{}",
            v["name"]
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test]
async fn the_tiny_repository_restores_to_its_known_streams_through_the_engine() {
    let index = index();
    let repository = &index["repositories"][0];
    let work = tempfile::tempdir().unwrap();
    // A copy: opening a directory as a repository creates its work directories.
    let root = work.path().join("repository");
    copy_tree(&dir().join(text(&repository["dir"])), &root);
    let location = Location::from_url(root.to_str().unwrap(), &Default::default())
        .await
        .unwrap();
    let passphrase = Passphrase::new(passphrase(&index, text(&repository["keyring"])));
    let opened = Repository::open(&location, &passphrase, Host::new(work.path().join("state")))
        .await
        .unwrap();
    assert_eq!(opened.id().to_string(), text(&repository["repository_id"]));
    let catalog = opened.catalog().await.unwrap();
    let manifest_of = |backup_id: &str| {
        catalog
            .datasets
            .values()
            .flatten()
            .find(|b| b.manifest.backup_id.to_string() == backup_id)
            .unwrap_or_else(|| panic!("backup {backup_id} not in the catalog"))
            .manifest
            .clone()
    };
    let read = |manifest: ManifestRecord| {
        let stream = backup_stream(opened.context().clone(), manifest, Volumes::Bucket);
        async move {
            let chunks: Vec<crate::error::Result<Bytes>> = stream.collect().await;
            chunks
                .into_iter()
                .collect::<crate::error::Result<Vec<Bytes>>>()
                .map(|c| c.concat())
        }
    };
    for backup in repository["restore_order"].as_array().unwrap() {
        let stream = read(manifest_of(text(&backup["backup_id"]))).await.unwrap();
        assert_eq!(stream.len() as u64, backup["stream_len"].as_u64().unwrap());
        assert_eq!(
            hex::encode(digest(&SHA256, &stream)),
            text(&backup["stream_sha256"])
        );
    }
    let mut refused = 0;
    for f in index["fail"].as_array().unwrap() {
        if f["kind"] != "stream" {
            continue;
        }
        let error = read(manifest_of(text(&f["backup_id"])))
            .await
            .expect_err(text(&f["name"]));
        assert!(
            matches!(&error, Error::Corrupt { object, .. } if object.starts_with("manifests/")),
            "{}: {error:?}",
            f["name"]
        );
        refused += 1;
    }
    assert_eq!(refused, 2);
}

#[tokio::test]
async fn local_object_files_are_what_the_local_dir_backend_writes_and_refuses() {
    let index = index();
    let work = tempfile::tempdir().unwrap();
    for o in index["local_objects"].as_array().unwrap() {
        let expected = std::fs::read(dir().join(text(&o["file"]))).unwrap();
        let written = SystemTime::UNIX_EPOCH
            + Duration::new(
                o["written_unix_secs"].as_u64().unwrap(),
                o["written_nanos"].as_u64().unwrap().try_into().unwrap(),
            );
        let root = work.path().join(text(&o["name"]));
        std::fs::create_dir(&root).unwrap();
        let backend = LocalDirBackend::open(&root, Arc::new(FakeClock::new(written))).unwrap();
        let header_end = 12 + o["header_len"].as_u64().unwrap() as usize;
        let body = Bytes::copy_from_slice(&expected[header_end..]);
        let mut options = WriteOptions::new(StorageClass::from_name(text(&o["storage_class"])));
        for (name, value) in o["metadata"].as_object().unwrap() {
            options = options.with_metadata(name, text(value));
        }
        let key = ObjectKey::new("README.txt").unwrap();
        backend
            .put(&key, body.clone(), &options, &PutPrecondition::None)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(root.join("objects/README.txt")).unwrap(),
            expected,
            "{}: the backend writes other bytes",
            o["name"]
        );
        // And reads the object length without the wrapper.
        let meta = backend.head(&key).await.unwrap();
        assert_eq!(meta.size, o["body_len"].as_u64().unwrap());
        assert_eq!(
            backend.get_bytes(&key, ByteRange::full()).await.unwrap(),
            body
        );
    }
    let root = work.path().join("fail");
    std::fs::create_dir(&root).unwrap();
    let backend =
        LocalDirBackend::open(&root, Arc::new(FakeClock::new(SystemTime::UNIX_EPOCH))).unwrap();
    let mut refused = 0;
    for f in index["fail"].as_array().unwrap() {
        if f["kind"] != "local_object" {
            continue;
        }
        let name = text(&f["name"]);
        std::fs::copy(
            dir().join(text(&f["file"])),
            root.join("objects").join(name),
        )
        .unwrap();
        let error = backend
            .head(&ObjectKey::new(name).unwrap())
            .await
            .expect_err(name);
        assert!(
            matches!(error, zib_storage_backend::Error::Corrupt { .. }),
            "{name}: {error:?}"
        );
        refused += 1;
    }
    assert_eq!(refused, 3);
}
