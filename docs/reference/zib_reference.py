#!/usr/bin/env python3
"""Reference decoder for zib format v1, written from docs/FORMAT.md alone.

Needs Python 3.8+ (hashlib.scrypt) and the `cryptography` package (AES-GCM, HKDF: not in
Python's standard library). For a repository in S3, also boto3 or the `aws` CLI.

Usage (REPO is a local-directory repository's directory, or s3://BUCKET[/PREFIX]):
  zib_reference.py catalog REPO
      Lists the committed backups, oldest first, one per line: backup id, dataset id,
      kind (full, or incremental:BASE_ID), dataset@snapshot. Reads the keyring and one
      HEAD per manifest: works while everything else is archived.
  zib_reference.py thaw REPO BACKUP_ID
      Requests a Bulk restore (7 days) of every archived volume of BACKUP_ID's chain not
      yet restored. Exits 0 when all are readable, 3 while some are still being restored.
  zib_reference.py restore REPO BACKUP_ID -- COMMAND [ARG...]
      Receives BACKUP_ID's chain, its full backup first, each backup's stream piped into
      a fresh run of COMMAND (for example `zfs receive POOL/RESTORED`, or
      `btrfs receive /mnt/restored`). After each receive but the last, a `zfs receive`
      target is set readonly=on so nothing changes it between receives.
  zib_reference.py stream REPO BACKUP_ID
      Writes one backup's stream to standard output (into `zfs receive` or
      `btrfs receive`).
  zib_reference.py volume KEYRING_FILE VOLUME_FILE REPOSITORY_ID BACKUP_ID VOLUME_INDEX
      Decrypts and verifies one downloaded volume, writing its plaintext to standard
      output.
  zib_reference.py record KEYRING_FILE RECORD_TYPE REPOSITORY_ID OBJECT_KEY SEALED_TEXT
      Opens a sealed metadata record and writes its plaintext to standard output.
  zib_reference.py keyring KEYRING_FILE
      Opens the keyring and prints its key id.

Every stream is checked against its manifest (each volume, the volume list, the
stream's length and SHA-256) before its last bytes are written, so a receive fed a
stream that fails a check never gets its end and discards what it got. Any failed check
exits non-zero with a message naming the object.

Ids are given in hex. The passphrase is read from the file named by the environment
variable ZIB_PASSPHRASE_FILE (its whole contents, minus one trailing newline), or else
prompted for. ZIB_KEYRING_FILE names a keyring file to use instead of the repository's
`keyring` object (an offline copy). AWS_ENDPOINT_URL names another S3 endpoint;
ZIB_REFERENCE_S3=cli uses the aws CLI even when boto3 is there.
"""

import base64
import getpass
import hashlib
import os
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class ZibError(Exception):
    """Base class of every rejection."""


class CorruptKeyring(ZibError):
    pass


class WrongPassphrase(ZibError):
    pass


class UnsupportedVersion(ZibError):
    pass


class CorruptVolume(ZibError):
    pass


class KeyMismatch(ZibError):
    pass


class CorruptRecord(ZibError):
    pass


# ---------------------------------------------------------------- keyring

KEYRING_MAGIC = b"ZIB-KEY\n"
KEYRING_LEN = 160


def open_keyring(data, passphrase):
    """Returns (key_id, data_key) from keyring bytes and passphrase bytes."""
    if len(data) < 10:
        raise CorruptKeyring("too short to be a keyring")
    if data[0:8] != KEYRING_MAGIC:
        raise CorruptKeyring("bad magic")
    (version,) = struct.unpack_from("<H", data, 8)
    if version == 0:
        raise CorruptKeyring("format version 0 does not exist")
    if version > 1:
        raise UnsupportedVersion("keyring format version %d is newer than v1" % version)
    if len(data) != KEYRING_LEN:
        raise CorruptKeyring("a v1 keyring is 160 bytes, this one is %d" % len(data))
    if hashlib.sha256(data[0:128]).digest() != data[128:160]:
        raise CorruptKeyring("checksum mismatch")
    key_id = data[10:26]
    kdf_id = data[26]
    log2_n = data[27]
    r, p = struct.unpack_from("<II", data, 28)
    if kdf_id != 1:
        raise CorruptKeyring("unknown KDF id %d" % kdf_id)
    if not (1 <= log2_n <= 20 and 1 <= r <= 16 and 1 <= p <= 4):
        raise CorruptKeyring("scrypt parameters out of the v1 range")
    n = 1 << log2_n
    if 128 * n * r > 1 << 30:
        raise CorruptKeyring("scrypt memory above 1 GiB")
    salt = data[36:68]
    nonce = data[68:80]
    kek = hashlib.scrypt(
        passphrase, salt=salt, n=n, r=r, p=p, dklen=32,
        maxmem=128 * r * (n + p + 2) + (1 << 20),
    )
    try:
        data_key = AESGCM(kek).decrypt(nonce, data[80:128], data[0:80])
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase (or the keyring was altered)") from None
    return key_id, data_key


# ---------------------------------------------------------------- volume

VOLUME_MAGIC = b"ZIB-VOL\n"
HEADER_LEN = 58
SEGMENT_LEN = 65536
TAG_LEN = 16
SEGMENT_CT_LEN = SEGMENT_LEN + TAG_LEN


def volume_identity(repository_id, backup_id, volume_index):
    assert len(repository_id) == 16 and len(backup_id) == 16
    return repository_id + backup_id + struct.pack("<I", volume_index)


def _read_exact(read, n):
    """Reads up to n bytes, fewer only at end of input."""
    parts = []
    while n > 0:
        chunk = read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def decrypt_volume(read, key_id, data_key, repository_id, backup_id, volume_index):
    """Yields verified plaintext chunks of the volume read through `read(n)`.

    The plaintext is valid only if the generator finishes without raising.
    """
    where = "volume %d of backup %s" % (volume_index, backup_id.hex())
    header = _read_exact(read, HEADER_LEN)
    if len(header) < HEADER_LEN:
        raise CorruptVolume("%s: ends inside its header" % where)
    if header[0:8] != VOLUME_MAGIC:
        raise CorruptVolume("%s: bad magic" % where)
    (version,) = struct.unpack_from("<H", header, 8)
    if version == 0:
        raise CorruptVolume("%s: format version 0 does not exist" % where)
    if version > 1:
        raise UnsupportedVersion("%s: format version %d is newer than v1" % (where, version))
    if header[10:26] != key_id:
        raise KeyMismatch("%s: encrypted under key %s, not %s" % (where, header[10:26].hex(), key_id.hex()))
    salt = header[26:58]
    identity = volume_identity(repository_id, backup_id, volume_index)
    volume_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"zib v1 volume key" + identity
    ).derive(data_key)
    aead = AESGCM(volume_key)
    aad = header + identity
    counter = 0
    while True:
        segment = _read_exact(read, SEGMENT_CT_LEN)
        # A full-length segment is never the last one; anything shorter is.
        last = len(segment) < SEGMENT_CT_LEN
        if last and len(segment) < TAG_LEN:
            raise CorruptVolume("%s: truncated, the final segment is missing" % where)
        nonce = struct.pack("<Q", counter) + b"\x00\x00\x00" + (b"\x01" if last else b"\x00")
        try:
            plain = aead.decrypt(nonce, segment, aad)
        except InvalidTag:
            raise CorruptVolume(
                "%s: segment %d failed authentication (altered, truncated, reordered, or not this volume)"
                % (where, counter)
            ) from None
        yield plain
        if last:
            return
        counter += 1


# ---------------------------------------------------------------- record

RECORD_PREFIX_LEN = 1 + 16 + 12
_B64URL = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _b64url_decode_strict(text):
    raw = text.encode("ascii", "strict") if isinstance(text, str) else text
    if not set(raw) <= _B64URL or len(raw) % 4 == 1:
        raise CorruptRecord("not unpadded base64url text")
    data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=") != raw:
        raise CorruptRecord("non-canonical base64url text")
    return data


def open_record(key_id, data_key, record_type, repository_id, object_key, sealed):
    """Returns the plaintext of a sealed record bound to (type, repository, object key)."""
    try:
        data = _b64url_decode_strict(sealed)
    except UnicodeEncodeError:
        raise CorruptRecord("not ASCII") from None
    if len(data) < RECORD_PREFIX_LEN + 16:
        raise CorruptRecord("too short")
    if data[0] == 0:
        raise CorruptRecord("record version 0 does not exist")
    if data[0] > 1:
        raise UnsupportedVersion("record version %d is newer than v1" % data[0])
    if data[1:17] != key_id:
        raise KeyMismatch("record sealed under key %s" % data[1:17].hex())
    rtype = record_type.encode("ascii")
    okey = object_key.encode("utf-8")
    aad = (
        data[0:RECORD_PREFIX_LEN]
        + repository_id
        + bytes([len(rtype)]) + rtype
        + struct.pack("<H", len(okey)) + okey
    )
    record_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=bytes(32), info=b"zib v1 record key"
    ).derive(data_key)
    try:
        return AESGCM(record_key).decrypt(data[17:29], data[29:], aad)
    except InvalidTag:
        raise CorruptRecord("authentication failed (altered, or not this object's record)") from None


# ---------------------------------------------------------------- on-bucket layout

class CorruptObject(ZibError):
    pass


class MissingObject(ZibError):
    pass


def parse_local_object(data, what):
    """(header, body) of a local-directory object file ("Local-directory repositories"
    in FORMAT.md): the magic, a u32 header length h, h bytes of JSON, then the body."""
    import json
    if len(data) < 12 or data[:8] != b"ZIBLOCL1":
        raise CorruptObject("%s: not a local-directory object file" % what)
    (hlen,) = struct.unpack("<I", data[8:12])
    if 12 + hlen > len(data):
        raise CorruptObject("%s: its header runs past the end of the file" % what)
    try:
        header = json.loads(data[12:12 + hlen].decode("utf-8"))
    except ValueError:
        raise CorruptObject("%s: its header is not JSON" % what) from None
    if not isinstance(header, dict) or not isinstance(header.get("metadata"), dict):
        raise CorruptObject("%s: its header has no metadata" % what)
    return header, data[12 + hlen:]


def read_local_object(root, key):
    """Bytes and metadata of an object of a local-directory repository."""
    header, f = open_local_object(root, key)
    with f:
        return f.read(), header["metadata"]


def open_local_object(root, key):
    """(header, file positioned at the object's first byte) of a local-directory object,
    without reading its bytes (volumes can be gigabytes)."""
    path = os.path.join(root, "objects", *key.split("/"))
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise MissingObject("%s: no such object in %s" % (key, root)) from None
    try:
        fixed = f.read(12)
        if len(fixed) < 12 or fixed[:8] != b"ZIBLOCL1":
            raise CorruptObject("%s: not a local-directory object file" % key)
        (hlen,) = struct.unpack("<I", fixed[8:12])
        header, _ = parse_local_object(fixed + f.read(hlen), key)
        if 12 + hlen > os.fstat(f.fileno()).st_size:
            raise CorruptObject("%s: its header runs past the end of the file" % key)
        return header, f
    except BaseException:
        f.close()
        raise


class _Reader:
    def __init__(self, data, what):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n):
        if self.pos + n > len(self.data):
            raise CorruptRecord("%s ends early" % self.what)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def name(self):
        try:
            return self.take(self.u("H")).decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptRecord("%s: a name is not UTF-8" % self.what) from None

    def identity(self):
        tag = self.u("B")
        if tag == 1:
            return "zfs-guid:%d" % self.u("Q")
        if tag == 2:
            return "btrfs-uuid:" + self.take(16).hex()
        raise CorruptRecord("%s: unknown identity tag %d" % (self.what, tag))


def parse_manifest(plain, what):
    """The manifest record of FORMAT.md, "Manifest record"."""
    r = _Reader(plain, what)
    version = r.u("B")
    if version == 0:
        raise CorruptRecord("%s: manifest record version 0 does not exist" % what)
    if version > 2:
        raise UnsupportedVersion("%s: manifest record version %d is newer than this decoder" % (what, version))
    m = {"version": version, "source": r.u("B"), "kind": r.u("B"), "flags": r.u("B"), "send_flags": r.u("I")}
    if m["source"] not in (1, 2):
        raise CorruptRecord("%s: unknown source %d" % (what, m["source"]))
    if m["kind"] not in (0, 1):
        raise CorruptRecord("%s: unknown kind %d" % (what, m["kind"]))
    if m["flags"] & ~1:
        raise CorruptRecord("%s: unknown flags %#x" % (what, m["flags"]))
    if m["send_flags"] & ~0b1111:
        raise CorruptRecord("%s: unknown send flags %#x" % (what, m["send_flags"]))
    m["dataset_id"] = r.take(16).hex()
    m["backup_id"] = r.take(16).hex()
    m["snapshot_created_at"] = r.u("q")
    m["committed_at"] = r.u("q")
    m["stream_len"] = r.u("Q")
    m["stream_sha256"] = r.take(32)
    m["stored_len"] = r.u("Q")
    m["volume_count"] = r.u("I")
    m["volume_plaintext_len"] = r.u("Q")
    m["volume_list_sha256"] = r.take(32)
    m["dataset_name"] = r.name()
    m["snapshot_name"] = r.name()
    m["identity"] = r.identity()
    m["base_backup_id"] = m["base_snapshot_name"] = m["base_identity"] = None
    if m["kind"] == 1:
        m["base_backup_id"] = r.take(16).hex()
        m["base_snapshot_name"] = r.name()
        m["base_identity"] = r.identity()
    m["snapshot_bytes"] = None
    m["replaced_incremental"] = None
    if version == 2:
        sizes = r.u("B")
        if sizes & ~0b11:
            raise CorruptRecord("%s: unknown size fields %#x" % (what, sizes))
        if sizes & 1:
            m["snapshot_bytes"] = r.u("Q")
        if sizes & 2:
            m["replaced_incremental"] = (r.take(16).hex(), r.u("Q"))
    if r.pos != len(plain):
        raise CorruptRecord("%s: trailing bytes" % what)
    return m


def parse_volume_record(plain, what):
    """The volume record of FORMAT.md, "Volume record" (45 bytes)."""
    if len(plain) >= 1 and plain[0] == 0:
        raise CorruptRecord("%s: volume record version 0 does not exist" % what)
    if len(plain) >= 1 and plain[0] > 1:
        raise UnsupportedVersion("%s: volume record version %d is newer than this decoder" % (what, plain[0]))
    if len(plain) != 45:
        raise CorruptRecord("%s: a volume record is 45 bytes, this one is %d" % (what, len(plain)))
    index, offset = struct.unpack_from("<IQ", plain, 33)
    return {"dataset_id": plain[1:17].hex(), "backup_id": plain[17:33].hex(),
            "volume_index": index, "stream_offset": offset}


def volume_list_hash(entries):
    """SHA-256 over (index, plaintext length, volume object length, plaintext SHA-256)
    of each volume in index order ("Volume list hash")."""
    h = hashlib.sha256()
    for index, plain_len, object_len, plain_sha256 in entries:
        h.update(struct.pack("<IQQ", index, plain_len, object_len) + plain_sha256)
    return h.digest()


# ---------------------------------------------------------------- repositories

ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")


class ToolError(ZibError):
    """The storage could not be read (a missing tool, a refused or failed request)."""


class LocalRepository:
    """A repository in a local directory ("Local-directory repositories")."""

    def __init__(self, root):
        self.root = root
        self.where = root

    def list(self, prefix):
        base = os.path.join(self.root, "objects", *prefix.rstrip("/").split("/"))
        keys = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), os.path.join(self.root, "objects"))
                keys.append(rel.replace(os.sep, "/"))
        return sorted(keys)

    def head(self, key):
        header, f = open_local_object(self.root, key)
        f.close()
        return {"metadata": header["metadata"], "state": "available"}

    def open(self, key):
        """A file-like object with read(n), positioned at the object's bytes."""
        _, f = open_local_object(self.root, key)
        return f

    def get(self, key):
        with self.open(key) as f:
            return f.read()

    def request_restore(self, key, days):
        pass


class S3Repository:
    """A repository in S3 under BUCKET/PREFIX, read with boto3 when it can be imported,
    else with the `aws` command-line tool (`aws s3api ...`). The endpoint is the default
    one unless AWS_ENDPOINT_URL is set."""

    def __init__(self, bucket, prefix):
        self.bucket = bucket
        # The prefix join of FORMAT.md: no leading slash, one trailing slash unless empty.
        prefix = prefix.strip("/")
        self.prefix = prefix + "/" if prefix else ""
        self.where = "s3://%s/%s" % (bucket, self.prefix)
        self.endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
        self.client = None
        if os.environ.get("ZIB_REFERENCE_S3", "") != "cli":
            try:
                import boto3
                self.client = boto3.client("s3", endpoint_url=self.endpoint)
            except ImportError:
                pass

    # --- the aws CLI, when boto3 is not there
    def _aws(self, args, parse=True):
        import json
        import subprocess
        command = ["aws", "s3api"] + args + ["--bucket", self.bucket, "--output", "json"]
        if self.endpoint:
            command += ["--endpoint-url", self.endpoint]
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise ToolError("neither boto3 nor the aws command-line tool is available; install one") from None
        if done.returncode != 0:
            text = done.stderr.decode("utf-8", "replace").strip()
            if "404" in text or "Not Found" in text or "NoSuchKey" in text:
                raise MissingObject(text)
            if "InvalidObjectState" in text:
                raise ToolError("%s is archived and not restored yet: run `thaw` first (%s)" % (args[2], text))
            raise ToolError("aws s3api %s failed: %s" % (args[0], text))
        return json.loads(done.stdout or b"{}") if parse else None

    def _error(self, error, key):
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            return MissingObject("%s: no such object in %s" % (key, self.where))
        if code == "InvalidObjectState":
            return ToolError("%s is archived and not restored yet: run `thaw` first" % key)
        return ToolError("%s: %s" % (key, error))

    def list(self, prefix):
        full = self.prefix + prefix
        keys = []
        if self.client is not None:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                keys += [o["Key"] for o in page.get("Contents", [])]
        else:
            token = None
            while True:
                args = ["list-objects-v2", "--prefix", full]
                if token:
                    args += ["--continuation-token", token]
                page = self._aws(args)
                keys += [o["Key"] for o in page.get("Contents", []) or []]
                token = page.get("NextContinuationToken")
                if not token:
                    break
        return sorted(k[len(self.prefix):] for k in keys)

    def head(self, key):
        if self.client is not None:
            try:
                answer = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
            except Exception as e:  # botocore's ClientError, without importing botocore
                raise self._error(e, key) from None
        else:
            answer = self._aws(["head-object", "--key", self.prefix + key])
        restore = answer.get("Restore") or ""
        if answer.get("StorageClass") not in ARCHIVE_CLASSES:
            state = "available"
        elif 'ongoing-request="false"' in restore:
            state = "restored"
        elif 'ongoing-request="true"' in restore:
            state = "restoring"
        else:
            state = "archived"
        return {"metadata": {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()}, "state": state}

    def open(self, key):
        if self.client is not None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
            except Exception as e:
                raise self._error(e, key) from None
        import shutil
        import tempfile
        # The CLI writes the object to a file (a volume can be gigabytes); it is read from
        # there and removed at once (the open file stays readable until closed).
        tmp = tempfile.mkdtemp(prefix="zib-reference-")
        try:
            path = os.path.join(tmp, "object")
            self._aws(["get-object", "--key", self.prefix + key, path])
            return open(path, "rb")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def get(self, key):
        body = self.open(key)
        try:
            return body.read()
        finally:
            body.close()

    def request_restore(self, key, days):
        request = {"Days": days, "GlacierJobParameters": {"Tier": "Bulk"}}
        if self.client is not None:
            try:
                self.client.restore_object(Bucket=self.bucket, Key=self.prefix + key, RestoreRequest=request)
            except Exception as e:
                raise self._error(e, key) from None
        else:
            import json
            self._aws(["restore-object", "--key", self.prefix + key, "--restore-request", json.dumps(request)],
                      parse=False)


def repository_at(where):
    """A LocalRepository for a directory, an S3Repository for s3://BUCKET[/PREFIX]."""
    if where.startswith("s3://"):
        bucket, _, prefix = where[len("s3://"):].partition("/")
        return S3Repository(bucket, prefix)
    return LocalRepository(where)


def read_keyring(repo):
    """The keyring bytes: the file named by ZIB_KEYRING_FILE (an offline copy), else the
    repository's `keyring` object."""
    path = os.environ.get("ZIB_KEYRING_FILE")
    if path:
        with open(path, "rb") as f:
            return f.read()
    return repo.get("keyring")


def repository_id_of(repo):
    meta = repo.head("keyring")["metadata"]
    try:
        return bytes.fromhex(meta["zib-repository"])
    except (KeyError, ValueError):
        raise CorruptObject("keyring: no valid zib-repository metadata") from None


def catalog(repo, key_id, data_key):
    """(repository id, every committed backup's manifest, parsed), oldest first."""
    repository_id = repository_id_of(repo)
    manifests = []
    for key in repo.list("manifests/"):
        parts = key.split("/")
        if len(parts) != 3:
            continue  # not a manifest key: ignored, never guessed at
        _, dataset_id, backup_id = parts
        meta = repo.head(key)["metadata"]
        if meta.get("zib-format") != "1" or meta.get("zib-kind") != "manifest":
            raise CorruptObject("%s: not a format 1 manifest" % key)
        if "zib-record" not in meta:
            raise CorruptObject("%s: no zib-record metadata" % key)
        plain = open_record(key_id, data_key, "manifest", repository_id, key, meta["zib-record"])
        m = parse_manifest(plain, key)
        if (m["dataset_id"], m["backup_id"]) != (dataset_id, backup_id):
            raise CorruptObject("%s: record names another backup" % key)
        manifests.append(m)
    # Commit time orders a dataset's backups; a base before what was sent from it.
    manifests.sort(key=lambda m: (m["committed_at"], m["kind"]))
    return repository_id, manifests


def chain_of(manifests, backup_id):
    """The backups that restore `backup_id`, its full backup first."""
    by_id = {m["backup_id"]: m for m in manifests}
    chain = []
    current = backup_id
    while True:
        m = by_id.get(current)
        if m is None:
            raise MissingObject("backup %s has no committed manifest (a broken chain)" % current)
        if m in chain:
            raise CorruptObject("backup %s: its chain loops" % current)
        chain.append(m)
        if m["kind"] == 0:
            return chain[::-1]
        current = m["base_backup_id"]


def volume_key(m, index):
    return "volumes/%s/%s/%08d" % (m["dataset_id"], m["backup_id"], index)


def stream_backup(repo, repository_id, key_id, data_key, m, write):
    """Decrypts one backup's volumes in order into `write`, checking every volume, the
    volume list hash and the stream's length and SHA-256 against the manifest. The last
    chunk is written only after all of those checks passed: a receive fed a stream that
    fails them never sees its end (and a receive that never gets its end discards what
    it got)."""
    backup_id = m["backup_id"]
    stream_hash = hashlib.sha256()
    entries = []
    total = 0
    held = None  # the newest chunk, not yet written
    for index in range(m["volume_count"]):
        key = volume_key(m, index)
        body = repo.open(key)
        counted = [0]

        def read(n, body=body, counted=counted):
            out = _read_exact(body.read, n)
            counted[0] += len(out)
            return out

        volume_hash = hashlib.sha256()
        plain_len = 0
        try:
            for chunk in decrypt_volume(read, key_id, data_key, repository_id, bytes.fromhex(backup_id), index):
                if not chunk:
                    continue
                volume_hash.update(chunk)
                stream_hash.update(chunk)
                plain_len += len(chunk)
                if held is not None:
                    write(held)
                held = chunk
        finally:
            body.close()
        last = index == m["volume_count"] - 1
        if plain_len > m["volume_plaintext_len"] or (not last and plain_len != m["volume_plaintext_len"]):
            raise CorruptObject("%s: holds %d bytes; the manifest says volumes hold %d"
                                % (key, plain_len, m["volume_plaintext_len"]))
        total += plain_len
        entries.append((index, plain_len, counted[0], volume_hash.digest()))
    if volume_list_hash(entries) != m["volume_list_sha256"]:
        raise CorruptObject("backup %s: the volumes differ from the manifest's volume list" % backup_id)
    if total != m["stream_len"] or stream_hash.digest() != m["stream_sha256"]:
        raise CorruptObject("backup %s: the stream differs from the manifest" % backup_id)
    if held is not None:
        write(held)


def local_catalog(root, key_id, data_key):
    """Every committed backup of a local-directory repository."""
    return catalog(LocalRepository(root), key_id, data_key)


def local_stream(root, key_id, data_key, backup_id, write):
    """One backup's stream from a local-directory repository (see `stream_backup`)."""
    repo = LocalRepository(root)
    repository_id, manifests = catalog(repo, key_id, data_key)
    found = [m for m in manifests if m["backup_id"] == backup_id]
    if not found:
        raise MissingObject("no committed backup %s" % backup_id)
    stream_backup(repo, repository_id, key_id, data_key, found[0], write)


def thaw(repo, manifests, backup_id, days=7):
    """Requests a Bulk restore of every archived volume of `backup_id`'s chain that is
    not restored or being restored. Returns (ready, waiting) counts."""
    ready = waiting = 0
    for m in chain_of(manifests, backup_id):
        for index in range(m["volume_count"]):
            key = volume_key(m, index)
            state = repo.head(key)["state"]
            if state in ("available", "restored"):
                ready += 1
                continue
            if state == "archived":
                repo.request_restore(key, days)
            waiting += 1
    return ready, waiting


def restore_chain(repo, repository_id, key_id, data_key, manifests, backup_id, command, log):
    """Receives `backup_id`'s chain, full first, each stream piped into a fresh run of
    `command` (an argument vector, never a shell). After each receive but the last, a
    `zfs receive` target is set readonly=on, so nothing changes it between receives."""
    import subprocess
    chain = chain_of(manifests, backup_id)
    is_zfs = len(command) >= 2 and os.path.basename(command[0]) == "zfs" and command[1] in ("receive", "recv")
    for position, m in enumerate(chain):
        kind = "full" if m["kind"] == 0 else "incremental"
        log("receiving backup %s (%s, %s@%s), %d of %d\n"
            % (m["backup_id"], kind, m["dataset_name"], m["snapshot_name"], position + 1, len(chain)))
        receiver = subprocess.Popen(command, stdin=subprocess.PIPE)
        try:
            stream_backup(repo, repository_id, key_id, data_key, m, receiver.stdin.write)
        except BrokenPipeError:
            receiver.wait()
            raise ToolError("%s stopped reading backup %s's stream (status %d)"
                            % (" ".join(command), m["backup_id"], receiver.returncode)) from None
        except BaseException:
            # Its stream ends early: the receive fails and discards what it got.
            receiver.stdin.close()
            receiver.wait()
            raise
        receiver.stdin.close()
        if receiver.wait() != 0:
            raise ToolError("%s exited with status %d on backup %s"
                            % (" ".join(command), receiver.returncode, m["backup_id"]))
        if is_zfs and position < len(chain) - 1:
            # Reading the received files would update access times and make the next
            # incremental fail with "destination has been modified".
            done = subprocess.run(["zfs", "set", "readonly=on", command[-1]], stderr=subprocess.PIPE)
            if done.returncode != 0:
                log("warning: could not set readonly=on on %s (%s); do not touch it until the "
                    "chain is in\n" % (command[-1], done.stderr.decode("utf-8", "replace").strip()))


# ---------------------------------------------------------------- command line

def _passphrase():
    path = os.environ.get("ZIB_PASSPHRASE_FILE")
    if path:
        with open(path, "rb") as f:
            text = f.read()
        return text[:-1] if text.endswith(b"\n") else text
    return getpass.getpass("zib passphrase: ").encode("utf-8")


def _find(manifests, backup_id):
    found = [m for m in manifests if m["backup_id"] == backup_id]
    if not found:
        raise MissingObject("no committed backup %s" % backup_id)
    return found[0]


def main(argv):
    commands = ("keyring", "volume", "record", "catalog", "stream", "thaw", "restore")
    if len(argv) < 3 or argv[1] not in commands:
        sys.stderr.write(__doc__)
        return 2
    try:
        if argv[1] in ("catalog", "stream", "thaw", "restore"):
            repo = repository_at(argv[2])
            keyring = read_keyring(repo)
        else:
            with open(argv[2], "rb") as f:
                keyring = f.read()
        key_id, data_key = open_keyring(keyring, _passphrase())
        if argv[1] == "keyring" and len(argv) == 3:
            print("keyring opens; key id %s" % key_id.hex())
        elif argv[1] == "volume" and len(argv) == 7:
            repository_id = bytes.fromhex(argv[4])
            backup_id = bytes.fromhex(argv[5])
            with open(argv[3], "rb") as f:
                # The last chunk only once the volume's final segment verified.
                held = None
                for chunk in decrypt_volume(f.read, key_id, data_key, repository_id, backup_id, int(argv[6])):
                    if held is not None:
                        sys.stdout.buffer.write(held)
                    held = chunk
                if held is not None:
                    sys.stdout.buffer.write(held)
            sys.stdout.buffer.flush()
        elif argv[1] == "catalog" and len(argv) == 3:
            _, manifests = catalog(repo, key_id, data_key)
            for m in manifests:
                kind = "full" if m["kind"] == 0 else "incremental:" + m["base_backup_id"]
                print("%s %s %s %s@%s" % (m["backup_id"], m["dataset_id"], kind, m["dataset_name"], m["snapshot_name"]))
        elif argv[1] == "stream" and len(argv) == 4:
            repository_id, manifests = catalog(repo, key_id, data_key)
            stream_backup(repo, repository_id, key_id, data_key, _find(manifests, argv[3]), sys.stdout.buffer.write)
            sys.stdout.buffer.flush()
        elif argv[1] == "thaw" and len(argv) == 4:
            _, manifests = catalog(repo, key_id, data_key)
            ready, waiting = thaw(repo, manifests, argv[3])
            print("%d volume(s) ready, %d being restored%s"
                  % (ready, waiting, "; run this again later" if waiting else "; run `restore` now"))
            return 0 if waiting == 0 else 3
        elif argv[1] == "restore" and len(argv) >= 6 and argv[4] == "--":
            repository_id, manifests = catalog(repo, key_id, data_key)
            restore_chain(repo, repository_id, key_id, data_key, manifests, argv[3], argv[5:], sys.stderr.write)
        elif argv[1] == "record" and len(argv) == 7:
            plain = open_record(key_id, data_key, argv[3], bytes.fromhex(argv[4]), argv[5], argv[6])
            sys.stdout.buffer.write(plain)
        else:
            sys.stderr.write(__doc__)
            return 2
    except ZibError as e:
        sys.stderr.write("zib_reference: %s: %s\n" % (type(e).__name__, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
