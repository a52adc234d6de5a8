#!/usr/bin/env python3
"""Runs the reference decoder over every test vector in crypto/tests/vectors/.

Opens every keyring, decrypts every volume and record and compares them with the
expected plaintext, and checks that every fail_* vector is rejected (keyrings with the
expected error). Prints one line per failure, then a summary line; exits non-zero if
anything failed.
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

    expected_error = {
        ("keyring", "corrupt"): z.CorruptKeyring,
        ("keyring", "wrong_passphrase"): z.WrongPassphrase,
        ("volume", "corrupt"): z.CorruptVolume,
        ("record", "corrupt"): z.CorruptRecord,
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
            else:
                open_record(f, keys[f["keyring"]])
            check(name, False, "was accepted")
        except want:
            check(name, True)
        except Exception as e:
            check(name, False, "rejected with the wrong error: %r" % e)

    total = sum(len(index[k]) for k in ("keyrings", "volumes", "records", "fail"))
    if passed + failed != total or total == 0:
        check("index", False, "checked %d of %d vectors" % (passed + failed, total))
    print("check_vectors: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
