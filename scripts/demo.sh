#!/usr/bin/env bash
# zib's main job, end to end, with the `zib` command line on a throwaway dataset
# (Debian 12, as root):
#
#   1. a zfs-fuse pool on a sparse file with a dataset of "photos";
#   2. `zib init`: a repository in a local directory (the embedded default backend), or
#      with `--s3` in a bucket of a local moto S3 server (Deep Archive emulated);
#   3. `zib backup`, more photos, `zib backup` again (an incremental);
#   4. `zib list` and `zib plan`: the catalog read back from the repository alone;
#   5. `zib restore` into a new dataset (with --s3: a thaw first, so it runs twice),
#      every file compared, and `zib verify`.
#
# Everything it creates lives under one temporary directory and one pool, both removed
# at exit; the config and state stay in that directory too. Installs zfs-fuse when it
# is missing.
set -euo pipefail

s3=0
[ "${1:-}" = "--s3" ] && s3=1

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

say "building zib"
cargo build --quiet -p zib-cli
zib_dir="${CARGO_TARGET_DIR:-$repo_root/target}/debug"
export PATH="$zib_dir:$PATH"

work=$(mktemp -d /tmp/zib-demo.XXXXXX)
pool="zibdemo$$"
moto_pid=
cleanup() {
    # zfs-fuse may call a just-received dataset busy for a moment.
    for _ in 1 2 3 4 5; do
        zpool list "$pool" >/dev/null 2>&1 || break
        zpool destroy -f "$pool" >/dev/null 2>&1 || sleep 1
    done
    [ -z "$moto_pid" ] || kill "$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The demo's own config and state (not /etc/zib, /var/lib/zib).
export ZIB_CONFIG="$work/config.toml" ZIB_STATE_DIR="$work/state"

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

# The demo's passphrase is not a secret; a real one lives in a file only root reads,
# or is typed at the prompt — never on the command line.
(umask 077 && echo "demo passphrase, not a secret" >"$work/passphrase")
export ZIB_PASSPHRASE_FILE="$work/passphrase"

if [ "$s3" -eq 1 ]; then
    moto=${ZIB_MOTO_SERVER:-/opt/zib/moto-venv/bin/moto_server}
    python=${ZIB_PYTHON:-/opt/zib/moto-venv/bin/python}
    port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    say "starting a moto S3 server on port $port"
    "$moto" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
    moto_pid=$!
    export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
    for _ in $(seq 1 100); do
        "$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null && break
        sleep 0.2
    done
    "$python" -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$port/family-photos', method='PUT'))"
    say "zib init s3://family-photos/zib (moto)"
    zib init s3://family-photos/zib --endpoint-url "http://127.0.0.1:$port"
else
    say "zib init (local directory repository)"
    zib init "$work/repository"
fi

say "zib backup: the first backup is a full"
zib backup "$pool/photos"

say "adding photos"
mkdir -p "$photos/2025 winter"
head -c 4000000 /dev/urandom >"$photos/2025 winter/snow 01.jpg"
head -c 1000000 /dev/urandom >"$photos/2025 winter/snow 02.jpg"
sleep 1 # snapshot names have one-second resolution

say "zib backup: only the new photos travel"
zib backup "$pool/photos"

say "zib list: the catalog, read from the repository alone"
zib list

say "zib plan: what the next backup would do"
zib plan "$pool/photos"

say "zib restore into $pool/restored"
status=0
zib restore "$pool/photos" --into "$pool/restored" --yes || status=$?
while [ "$status" -eq 75 ]; do
    say "zib restore: waiting for the thaw (exit 75); running again"
    sleep 1
    status=0
    zib restore || status=$?
done
[ "$status" -eq 0 ] || exit "$status"
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

say "zib verify: every backup restorable, checked without a thaw"
zib verify
