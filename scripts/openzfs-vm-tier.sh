#!/bin/bash
# openzfs-vm-tier.sh -- opt-in test tier: runs the ZFS snapshot-source conformance suite
# and the engine's bookmark-base test against real OpenZFS 2.3 inside the zfsvm VM (the
# host kernel has no ZFS module; the default tier runs the same tests on zfs-fuse).
#
#   scripts/openzfs-vm-tier.sh            build the test binary, boot the VM, run, stop it
#   KEEP=1 scripts/openzfs-vm-tier.sh     leave the VM running afterwards
#
# Needs root (the VM image is built into /var/cache/zfsvm, 5-8 minutes the first time).
# ZFSVM_DIR points at the zfsvm scripts (default: ../shared/tools/zfsvm next to the repo,
# else /work/shared/tools/zfsvm). The suite is told to expect OpenZFS's capabilities
# (ZIB_ZFS_DIALECT=openzfs): size estimates, bookmarks, send flags -L -c -e -w.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
if [ -z "${ZFSVM_DIR:-}" ]; then
  for candidate in "$REPO/../shared/tools/zfsvm" /work/shared/tools/zfsvm; do
    if [ -x "$candidate/run.sh" ]; then ZFSVM_DIR=$(cd "$candidate" && pwd); break; fi
  done
fi
[ -n "${ZFSVM_DIR:-}" ] && [ -x "$ZFSVM_DIR/run.sh" ] || {
  echo "openzfs-vm-tier: zfsvm scripts not found; set ZFSVM_DIR" >&2; exit 1; }
export ZFSVM_SHARE=${ZFSVM_SHARE:-/tmp/zfsvm-share}

log() { printf '[openzfs-vm-tier %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

log "building the test binaries: ZFS conformance, and the engine's bookmark-base test"
cd "$REPO"
# Prints the executable of the integration test target named $1 from cargo's JSON.
executable_of() {
  python3 -c 'import json, sys
for line in sys.stdin:
    try: message = json.loads(line)
    except ValueError: continue
    if message.get("reason") == "compiler-artifact" and message.get("target", {}).get("name") == sys.argv[1] and message.get("executable"):
        print(message["executable"])' "$1"
}
binary=$(cargo test -p zib-test-utils --test snapshot_zfs --no-run --message-format=json 2>/dev/null \
  | executable_of snapshot_zfs)
[ -n "$binary" ] && [ -x "$binary" ] || { log "could not build the conformance test binary"; exit 1; }
engine_binary=$(cargo test -p zib-engine --test bookmark_base_zfs --no-run --message-format=json 2>/dev/null \
  | executable_of bookmark_base_zfs)
[ -n "$engine_binary" ] && [ -x "$engine_binary" ] || { log "could not build the engine test binary"; exit 1; }

log "building (or reusing) the VM image"
"$ZFSVM_DIR/build.sh"
mkdir -p "$ZFSVM_SHARE"
cp "$binary" "$ZFSVM_SHARE/zib-snapshot-zfs-conformance"
cp "$engine_binary" "$ZFSVM_SHARE/zib-engine-bookmark-base"

stop_vm() { if [ "${KEEP:-0}" != 1 ]; then "$ZFSVM_DIR/stop.sh" >/dev/null 2>&1 || true; fi; }
trap stop_vm EXIT
"$ZFSVM_DIR/start.sh"
"$ZFSVM_DIR/run.sh" zfs version || true

log "running the suite in the guest (OpenZFS; slow under emulation)"
# TMPDIR on the guest's ext4 root: pool files and mount points of the fixture go there.
T0=$(date +%s)
set +e
"$ZFSVM_DIR/run.sh" env ZIB_REAL_COMPONENTS=1 ZIB_ZFS_DIALECT=openzfs TMPDIR=/var/tmp RUST_BACKTRACE=1 \
  /host/zib-snapshot-zfs-conformance --test-threads=2
rc=$?
# --include-ignored: the bookmark test is ignored in the default tier (zfs-fuse has no
# bookmarks, and it fails loudly without them); here it must run.
"$ZFSVM_DIR/run.sh" env ZIB_REAL_COMPONENTS=1 ZIB_ZFS_DIALECT=openzfs TMPDIR=/var/tmp RUST_BACKTRACE=1 \
  /host/zib-engine-bookmark-base --include-ignored
engine_rc=$?
set -e
log "suites finished (conformance $rc, engine $engine_rc) in $(( $(date +%s) - T0 ))s"
[ "$rc" = 0 ] && [ "$engine_rc" = 0 ]
