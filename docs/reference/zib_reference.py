#!/usr/bin/env python3
"""Reference decoder for zib format v1, written from docs/FORMAT.md alone.

Needs Python 3.8+ (hashlib.scrypt) and the `cryptography` package (AES-GCM, HKDF).

Usage:
  zib_reference.py keyring KEYRING_FILE
      Opens the keyring and prints its key id.
  zib_reference.py volume KEYRING_FILE VOLUME_FILE REPOSITORY_ID BACKUP_ID VOLUME_INDEX
      Decrypts and verifies one volume, writing its plaintext to standard output
      (for example into `zfs receive`). Exits non-zero, with a message, if any check
      fails; in that case discard everything written.
  zib_reference.py record KEYRING_FILE RECORD_TYPE REPOSITORY_ID OBJECT_KEY SEALED_TEXT
      Opens a sealed metadata record and writes its plaintext to standard output.
  zib_reference.py catalog REPOSITORY_DIR
      Lists the committed backups of a local-directory repository, one per line:
      backup id, dataset id, kind (full, or incremental:BASE_ID), dataset@snapshot.
  zib_reference.py stream REPOSITORY_DIR BACKUP_ID
      Writes one backup's send stream (its volumes decrypted, in order) to standard
      output, for `zfs receive` or `btrfs receive`, and checks the lengths and hashes
      the manifest records. Restore a chain by streaming its full backup first, then
      each incremental in order. Exits non-zero if any check fails; discard the receive.

Ids are given in hex. The passphrase is read from the file named by the environment
variable ZIB_PASSPHRASE_FILE (its whole contents, minus one trailing newline), or else
prompted for.
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
    path = os.path.join(root, "objects", *key.split("/"))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise MissingObject("%s: no such object in %s" % (key, root)) from None
    header, body = parse_local_object(data, key)
    return body, header["metadata"]


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


def local_catalog(root, key_id, data_key):
    """Every committed backup: the manifests, opened and parsed."""
    keyring_bytes, keyring_meta = read_local_object(root, "keyring")
    repository_id = bytes.fromhex(keyring_meta["zib-repository"])
    manifests = []
    base = os.path.join(root, "objects", "manifests")
    for dataset_id in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        for backup_id in sorted(os.listdir(os.path.join(base, dataset_id))):
            key = "manifests/%s/%s" % (dataset_id, backup_id)
            _, meta = read_local_object(root, key)
            if meta.get("zib-format") != "1" or meta.get("zib-kind") != "manifest":
                raise CorruptObject("%s: not a format 1 manifest" % key)
            plain = open_record(key_id, data_key, "manifest", repository_id, key, meta["zib-record"])
            m = parse_manifest(plain, key)
            if (m["dataset_id"], m["backup_id"]) != (dataset_id, backup_id):
                raise CorruptObject("%s: record names another backup" % key)
            manifests.append(m)
    return repository_id, manifests


def local_stream(root, key_id, data_key, backup_id, write):
    """Decrypts one backup's volumes in order into `write`, verifying the manifest."""
    repository_id, manifests = local_catalog(root, key_id, data_key)
    found = [m for m in manifests if m["backup_id"] == backup_id]
    if not found:
        raise CorruptObject("no committed backup %s" % backup_id)
    m = found[0]
    stream_hash = hashlib.sha256()
    list_hash = hashlib.sha256()
    total = 0
    for index in range(m["volume_count"]):
        key = "volumes/%s/%s/%08d" % (m["dataset_id"], backup_id, index)
        data, _ = read_local_object(root, key)
        pos = [0]

        def read(n, data=data, pos=pos):
            out = data[pos[0]:pos[0] + n]
            pos[0] += len(out)
            return out

        volume_hash = hashlib.sha256()
        plain_len = 0
        for chunk in decrypt_volume(read, key_id, data_key, repository_id, bytes.fromhex(backup_id), index):
            volume_hash.update(chunk)
            stream_hash.update(chunk)
            plain_len += len(chunk)
            write(chunk)
        total += plain_len
        list_hash.update(struct.pack("<IQQ", index, plain_len, len(data)) + volume_hash.digest())
    if list_hash.digest() != m["volume_list_sha256"]:
        raise CorruptObject("backup %s: the volumes differ from the manifest's volume list" % backup_id)
    if total != m["stream_len"] or stream_hash.digest() != m["stream_sha256"]:
        raise CorruptObject("backup %s: the stream differs from the manifest" % backup_id)


# ---------------------------------------------------------------- command line

def _passphrase():
    path = os.environ.get("ZIB_PASSPHRASE_FILE")
    if path:
        with open(path, "rb") as f:
            text = f.read()
        return text[:-1] if text.endswith(b"\n") else text
    return getpass.getpass("zib passphrase: ").encode("utf-8")


def main(argv):
    if len(argv) < 3 or argv[1] not in ("keyring", "volume", "record", "catalog", "stream"):
        sys.stderr.write(__doc__)
        return 2
    try:
        if argv[1] in ("catalog", "stream"):
            keyring, _ = read_local_object(argv[2], "keyring")
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
                for chunk in decrypt_volume(f.read, key_id, data_key, repository_id, backup_id, int(argv[6])):
                    sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        elif argv[1] == "catalog" and len(argv) == 3:
            _, manifests = local_catalog(argv[2], key_id, data_key)
            for m in sorted(manifests, key=lambda m: m["committed_at"]):
                kind = "full" if m["kind"] == 0 else "incremental:" + m["base_backup_id"]
                print("%s %s %s %s@%s" % (m["backup_id"], m["dataset_id"], kind, m["dataset_name"], m["snapshot_name"]))
        elif argv[1] == "stream" and len(argv) == 4:
            local_stream(argv[2], key_id, data_key, argv[3], sys.stdout.buffer.write)
            sys.stdout.buffer.flush()
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
