# shellcheck shell=bash
# A zfs-fuse daemon that answers, for the test run (sourced by scripts/test.sh).
#
# zfs-fuse can be up (`zpool list` answers) and still wedged: a pool whose I/O it
# suspended — its backing file deleted while imported, or its disk full — blocks every
# other pool's `zfs create`, `zfs snapshot` and mounts until the daemon restarts. A run
# that started on such a daemon would spend minutes on each ZFS test before failing it.
# So the run first proves the daemon does what the tests do (create a pool on a sparse
# file, a dataset, write a file, snapshot, send, destroy), each step under a deadline,
# and restarts it once from a clean state when it does not.

# Seconds one probe step may take.
ZFS_PROBE_DEADLINE=${ZFS_PROBE_DEADLINE:-60}

zfs_fuse_start() {
    # Detached, with no terminal or pipe of ours: a daemon holding the run's output
    # pipe open would keep whoever reads it waiting after the run ended.
    setsid zfs-fuse </dev/null >/dev/null 2>&1
    local listed
    for _ in $(seq 1 50); do
        listed=0
        timeout -k 5 10 zpool list >/dev/null 2>&1 || listed=$?
        case "$listed" in
            0) return 0 ;;
            124 | 137) return 1 ;; # up but not answering: waiting longer will not help
        esac
        sleep 0.2
    done
    return 1
}

# Stops the daemon and forgets the pools it had imported. Only test pools are ever
# created on the machines this runs on; their backing files lived in temporary
# directories, so re-importing them at the next start is what would wedge it again. The
# cache is moved aside, not deleted.
zfs_fuse_restart_clean() {
    pkill -9 -x zfs-fuse 2>/dev/null || true
    for _ in $(seq 1 50); do
        pgrep -x zfs-fuse >/dev/null 2>&1 || break
        sleep 0.2
    done
    # The killed daemon's mounts (type fuse.zfs) stay behind as dead mount points.
    awk '$3 == "fuse.zfs" { print $2 }' /proc/mounts | sort -r | while read -r mount_point; do
        umount -l "$mount_point" 2>/dev/null || true
    done
    local cache
    for cache in /var/lib/zfs/zpool.cache /etc/zfs/zpool.cache; do
        [ ! -e "$cache" ] || mv -f "$cache" "$cache.zib-test-stale"
    done
    zfs_fuse_start
}

# One probe step under the deadline; says which step failed and how.
zfs_fuse_probe_step() {
    local what=$1
    shift
    local status=0
    timeout -k 10 "$ZFS_PROBE_DEADLINE" "$@" >/dev/null 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        echo "zfs-fuse probe: $what failed (exit $status; 124 means it outran the ${ZFS_PROBE_DEADLINE} s deadline)" >&2
    fi
    return "$status"
}

# Does what a test does, each step under the deadline. Returns non-zero, after saying
# which step failed, when the daemon cannot.
zfs_fuse_probe() {
    local dir pool status=0
    dir=$(mktemp -d /tmp/zibt-probe-XXXXXX) || {
        echo "zfs-fuse probe: cannot make a directory in /tmp (is it full?)" >&2
        return 1
    }
    pool="zibt-probe-$$"
    truncate -s 128M "$dir/pool.img" || return 1
    zfs_fuse_probe_step "zpool create" zpool create -m "$dir/mnt" "$pool" "$dir/pool.img" &&
        zfs_fuse_probe_step "zfs create" zfs create "$pool/data" &&
        zfs_fuse_probe_step "writing a file" dd if=/dev/urandom of="$dir/mnt/data/probe" bs=64K count=16 conv=fsync status=none &&
        zfs_fuse_probe_step "zfs snapshot" zfs snapshot "$pool/data@probe" &&
        zfs_fuse_probe_step "zfs send" zfs send "$pool/data@probe" ||
        status=1
    # zfs-fuse may call a pool busy for a moment after a send.
    local destroyed=0
    local pools listed
    for _ in $(seq 1 20); do
        listed=0
        pools=$(timeout -k 10 "$ZFS_PROBE_DEADLINE" zpool list -H -o name 2>/dev/null) || listed=$?
        case "$listed" in
            0)
                # Gone only when the daemon answered without it.
                if ! grep -qx "$pool" <<<"$pools"; then
                    destroyed=1
                    break
                fi
                ;;
            124 | 137) break ;; # the daemon is not answering: waiting longer will not help
        esac
        timeout -k 10 "$ZFS_PROBE_DEADLINE" zpool destroy -f "$pool" >/dev/null 2>&1 || true
        sleep 0.5
    done
    if [ "$destroyed" -eq 1 ]; then
        rm -rf "$dir"
    else
        # Deleting the file under an imported pool is what wedges the daemon.
        echo "zfs-fuse probe: could not destroy $pool; its file stays in $dir" >&2
        status=1
    fi
    return "$status"
}

# Starts zfs-fuse if it is not running and makes sure it answers; restarts it once from
# a clean state when it does not.
ensure_zfs_fuse() {
    local answering=1
    if ! pgrep -x zfs-fuse >/dev/null 2>&1; then
        zfs_fuse_start || answering=0
    fi
    # Pools left by an interrupted earlier run (test fixtures are named zibt-*, the
    # README's quick start zibtry, the demo's zibdemo*): their backing files are gone
    # with their temporary directories. A daemon that does not answer goes straight to
    # the clean restart, which forgets them all.
    local pools stale destroyed
    if [ "$answering" -eq 1 ]; then
        pools=$(timeout -k 10 "$ZFS_PROBE_DEADLINE" zpool list -H -o name 2>/dev/null) || answering=0
    fi
    if [ "$answering" -eq 1 ]; then
        for stale in $(grep -E '^(zibt-|zibtry$|zibdemo)' <<<"$pools" || true); do
            echo "destroying stale test pool $stale"
            destroyed=0
            timeout -k 10 "$ZFS_PROBE_DEADLINE" zpool destroy -f "$stale" || destroyed=$?
            case "$destroyed" in 124 | 137)
                answering=0
                break
                ;;
            esac
        done
    fi
    if [ "$answering" -eq 1 ] && zfs_fuse_probe; then
        return 0
    fi
    echo "zfs-fuse does not do what the tests need; restarting it with no pools imported" \
        "(its pool cache is moved to zpool.cache.zib-test-stale; \`zpool import\` brings back a pool of your own)" >&2
    zfs_fuse_restart_clean || return 1
    zfs_fuse_probe
}
