#!/usr/bin/env bash
# zib's main job, end to end, on a throwaway dataset (Debian 12, as root):
#
#   1. a zfs-fuse pool on a sparse file with a dataset of "photos";
#   2. a zib repository in a local directory (the embedded default backend);
#   3. a full backup, more photos, an incremental backup;
#   4. the catalog, read back from the repository alone;
#   5. the newest chain received into a new dataset, and every file compared.
#
# Everything it creates lives under one temporary directory and one pool, both removed
# at exit. Installs zfs-fuse when it is missing.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if ! command -v zfs-fuse >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || { echo "error: zfs-fuse is missing; run as root or: apt-get install zfs-fuse" >&2; exit 1; }
    say "installing zfs-fuse"
    apt-get update
    policy_rc=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy_rc" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc"; chmod +x "$policy_rc"; created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends zfs-fuse
    [ "$created_policy" -eq 0 ] || rm -f "$policy_rc"
fi
pgrep -x zfs-fuse >/dev/null 2>&1 || zfs-fuse
for _ in $(seq 1 50); do zpool list >/dev/null 2>&1 && break; sleep 0.2; done

say "building the demo program"
cargo build --quiet -p zib-examples --example backup_demo
demo="$repo_root/target/debug/examples/backup_demo"

work=$(mktemp -d /tmp/zib-demo.XXXXXX)
pool="zibdemo$$"
cleanup() {
    zpool destroy -f "$pool" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

say "creating pool $pool on a sparse file, dataset $pool/photos"
truncate -s 512M "$work/pool.img"
zpool create -m "$work/mnt" "$pool" "$work/pool.img"
zfs create "$pool/photos"
photos=$(zfs get -H -o value mountpoint "$pool/photos")
mkdir -p "$photos/2024 summer" "$photos/Großeltern"
head -c 3000000 /dev/urandom >"$photos/2024 summer/beach 01.jpg"
head -c 2000000 /dev/urandom >"$photos/2024 summer/beach 02.jpg"
head -c 1500000 /dev/urandom >"$photos/Großeltern/Oma & Opa.jpg"
ls -lR "$photos"

# The demo's passphrase is not a secret; a real one is typed at a prompt or read from
# a file, never passed on the command line.
export ZIB_PASSPHRASE="demo passphrase, not a secret"
repo="$work/repository"

say "zib init (local directory repository)"
"$demo" init "$repo"

say "zib backup: the first backup is a full"
"$demo" backup "$repo" zfs "$pool/photos"

say "adding photos"
mkdir -p "$photos/2025 winter"
head -c 4000000 /dev/urandom >"$photos/2025 winter/snow 01.jpg"
head -c 1000000 /dev/urandom >"$photos/2025 winter/snow 02.jpg"
sleep 1 # snapshot names have one-second resolution

say "zib backup: only the new photos travel"
"$demo" backup "$repo" zfs "$pool/photos"

say "the catalog, read from the repository alone"
"$demo" catalog "$repo"

say "objects in the repository (ids only, no names)"
(cd "$repo" && find . -type f -not -name '*.meta*' | sort | head -30)

say "receiving the newest chain into $pool/restored"
"$demo" restore "$repo" zfs "$pool/photos" "$pool/restored"
restored=$(zfs get -H -o value mountpoint "$pool/restored")

say "comparing every file"
(cd "$photos" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/original.sha256"
(cd "$restored" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$work/restored.sha256"
if diff -u "$work/original.sha256" "$work/restored.sha256"; then
    echo "all $(wc -l <"$work/original.sha256") files restored byte for byte"
else
    echo "error: the restored tree differs" >&2
    exit 1
fi
