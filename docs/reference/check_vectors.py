#!/usr/bin/env python3
"""Runs the reference decoder over every test vector in crypto/tests/vectors/.

Opens every keyring, decrypts every volume and record and compares them with the
expected plaintext and fields, recomputes every volume list hash, reads every
local-directory object file, restores the tiny repository's chain to its known bytes,
and checks that every fail_* vector is rejected with the expected error. Prints one line
per failure, then a summary line; exits non-zero if anything failed.
"""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zib_reference as z  # noqa: E402

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crypto", "tests", "vectors")


def read(name):
    with open(os.path.join(VECTORS, name), "rb") as f:
        return f.read()


def decrypt_file(v, key):
    key_id, data_key = key
    with open(os.path.join(VECTORS, v["file"]), "rb") as f:
        return b"".join(
            z.decrypt_volume(
                f.read, key_id, data_key,
                bytes.fromhex(v["repository_id"]), bytes.fromhex(v["backup_id"]), v["volume_index"],
            )
        )


def open_record(r, key):
    key_id, data_key = key
    return z.open_record(
        key_id, data_key, r["record_type"], bytes.fromhex(r["repository_id"]), r["object_key"], r["sealed"]
    )


def manifest_fields(m):
    """A parsed manifest in the shape of the vectors' "fields"."""
    return {
        "source": {1: "zfs", 2: "btrfs"}[m["source"]],
        "kind": "full" if m["kind"] == 0 else "incremental",
        "created_by_zib": bool(m["flags"] & 1),
        "send_flags": m["send_flags"],
        "dataset_id": m["dataset_id"],
        "backup_id": m["backup_id"],
        "snapshot_created_at": m["snapshot_created_at"],
        "committed_at": m["committed_at"],
        "stream_len": m["stream_len"],
        "stream_sha256": m["stream_sha256"].hex(),
        "stored_len": m["stored_len"],
        "volume_count": m["volume_count"],
        "volume_plaintext_len": m["volume_plaintext_len"],
        "volume_list_sha256": m["volume_list_sha256"].hex(),
        "dataset_name": m["dataset_name"],
        "snapshot_name": m["snapshot_name"],
        "identity": m["identity"],
        "base_backup_id": m["base_backup_id"],
        "base_snapshot_name": m["base_snapshot_name"],
        "base_identity": m["base_identity"],
        "snapshot_bytes": m["snapshot_bytes"],
        "replaced_incremental": None if m["replaced_incremental"] is None else {
            "base_backup_id": m["replaced_incremental"][0],
            "estimated_bytes": m["replaced_incremental"][1],
        },
    }


def parse_layout(kind, plain, what):
    if kind == "manifest":
        return manifest_fields(z.parse_manifest(plain, what))
    return z.parse_volume_record(plain, what)


def restore_stream(repo, key, backup_id, out=None):
    """The stream of one backup of a vector repository, checked; raises if a check fails
    (what was written until then is in `out`)."""
    out = [] if out is None else out
    z.local_stream(os.path.join(VECTORS, repo), key[0], key[1], backup_id, out.append)
    return b"".join(out)


def main():
    with open(os.path.join(VECTORS, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    passed, failed = 0, 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL %s %s" % (name, detail))

    keys = {}
    for k in index["keyrings"]:
        try:
            key_id, data_key = z.open_keyring(read(k["file"]), k["passphrase"].encode("utf-8"))
            keys[k["name"]] = (key_id, data_key)
            check(k["name"], key_id.hex() == k["key_id"] and data_key.hex() == k["data_key"], "key differs")
        except Exception as e:  # report and go on: every vector is checked
            check(k["name"], False, repr(e))

    for v in index["volumes"]:
        try:
            plain = decrypt_file(v, keys[v["keyring"]])
            ok = len(plain) == v["plaintext_len"] and hashlib.sha256(plain).hexdigest() == v["plaintext_sha256"]
            check(v["name"], ok, "plaintext differs")
        except Exception as e:
            check(v["name"], False, repr(e))

    for r in index["records"]:
        try:
            check(r["name"], open_record(r, keys[r["keyring"]]).hex() == r["plaintext"], "plaintext differs")
        except Exception as e:
            check(r["name"], False, repr(e))

    for r in index["records"]:
        if r.get("layout", "none") == "none":
            continue
        try:
            plain = open_record(r, keys[r["keyring"]])
            check(r["name"] + " (layout)", parse_layout(r["layout"], plain, r["object_key"]) == r["fields"],
                  "fields differ")
        except Exception as e:
            check(r["name"] + " (layout)", False, repr(e))

    for v in index["volume_lists"]:
        entries = [(e["index"], e["plaintext_len"], e["volume_len"], bytes.fromhex(e["plaintext_sha256"]))
                   for e in v["entries"]]
        check(v["name"], z.volume_list_hash(entries).hex() == v["sha256"], "hash differs")

    for o in index["local_objects"]:
        try:
            header, body = z.parse_local_object(read(o["file"]), o["file"])
            want = {k: o[k] for k in ("storage_class", "metadata", "etag", "written_unix_secs", "written_nanos")}
            ok = (header == want and len(body) == o["body_len"]
                  and hashlib.sha256(body).hexdigest() == o["body_sha256"]
                  and 12 + o["header_len"] + o["body_len"] == len(read(o["file"])))
            check(o["name"], ok, "header or body differs")
        except Exception as e:
            check(o["name"], False, repr(e))

    for repo in index["repositories"]:
        key = keys[repo["keyring"]]
        try:
            root = os.path.join(VECTORS, repo["dir"])
            repository_id, manifests = z.local_catalog(root, key[0], key[1])
            check(repo["name"] + " (catalog)", repository_id.hex() == repo["repository_id"], "repository id differs")
            for b in repo["restore_order"]:
                stream = restore_stream(repo["dir"], key, b["backup_id"])
                ok = len(stream) == b["stream_len"] and hashlib.sha256(stream).hexdigest() == b["stream_sha256"]
                check("%s backup %s" % (repo["name"], b["backup_id"]), ok, "stream differs")
        except Exception as e:
            check(repo["name"], False, repr(e))

    expected_error = {
        ("keyring", "corrupt"): z.CorruptKeyring,
        ("keyring", "wrong_passphrase"): z.WrongPassphrase,
        ("volume", "corrupt"): z.CorruptVolume,
        ("volume", "newer_version"): z.UnsupportedVersion,
        ("record", "corrupt"): z.CorruptRecord,
        ("record", "newer_version"): z.UnsupportedVersion,
        ("manifest", "corrupt"): z.CorruptRecord,
        ("manifest", "newer_version"): z.UnsupportedVersion,
        ("volume_record", "corrupt"): z.CorruptRecord,
        ("volume_record", "newer_version"): z.UnsupportedVersion,
        ("stream", "corrupt"): z.CorruptObject,
        ("local_object", "corrupt"): z.CorruptObject,
    }
    for f in index["fail"]:
        name = f["name"]
        want = expected_error.get((f["kind"], f["expect"]))
        if not name.startswith("fail_") or want is None:
            check(name, False, "malformed fail vector entry")
            continue
        try:
            if f["kind"] == "keyring":
                z.open_keyring(read(f["file"]), f["passphrase"].encode("utf-8"))
            elif f["kind"] == "volume":
                decrypt_file(f, keys[f["keyring"]])
            elif f["kind"] in ("manifest", "volume_record"):
                plain = open_record(f, keys[f["keyring"]])
                parse_layout(f["kind"], plain, f["object_key"])
            elif f["kind"] == "stream":
                repo = [r for r in index["repositories"] if r["dir"] == f["repository"]][0]
                written = []
                try:
                    restore_stream(f["repository"], keys[repo["keyring"]], f["backup_id"], written)
                finally:
                    # The stream's end is never given out before its checks pass.
                    m = [m for m in z.local_catalog(os.path.join(VECTORS, f["repository"]),
                                                    *keys[repo["keyring"]])[1]
                         if m["backup_id"] == f["backup_id"]][0]
                    if sum(map(len, written)) >= m["stream_len"]:
                        check(name + " (end held back)", False, "the whole stream was written")
            elif f["kind"] == "local_object":
                z.parse_local_object(read(f["file"]), f["file"])
            else:
                open_record(f, keys[f["keyring"]])
            check(name, False, "was accepted")
        except want:
            check(name, True)
        except Exception as e:
            check(name, False, "rejected with the wrong error: %r" % e)

    layout_records = sum(1 for r in index["records"] if r.get("layout", "none") != "none")
    repository_checks = sum(1 + len(r["restore_order"]) for r in index["repositories"])
    total = layout_records + repository_checks + sum(
        len(index[k]) for k in ("keyrings", "volumes", "records", "volume_lists", "local_objects", "fail"))
    if passed + failed != total or total == 0:
        check("index", False, "checked %d of %d vectors" % (passed + failed, total))
    print("check_vectors: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
