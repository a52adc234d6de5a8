#!/usr/bin/env bash
# zib next to restic and rclone: the same snapshot stream backed up by each tool to the
# same server, then restored, in one run. Reports per tool and target: wall time, CPU
# time (user + system, of the tool and of the `btrfs send`/`btrfs receive` it is fed by
# or feeds), peak RSS, S3 requests by action, and the bytes stored. Results and what
# limits them: docs/BENCHMARKS.md ("zib, restic and rclone").
#
#   scripts/bench.sh [--gib G] [--dir DIR] [--rounds N] [--targets LIST] [--tools LIST] [--no-count]
#
#   --gib G          size of the incompressible source file (default 2)
#   --dir DIR        where the BTRFS image, repositories and servers' data live
#                    (default $TMPDIR or /var/tmp); needs about 5 × G GiB free
#   --rounds N       timed rounds per tool and target; the table gives their median (default 1)
#   --targets LIST   comma-separated: moto, s3s (s3s-fs), local (default all three)
#   --tools LIST     comma-separated: zib, restic, rclone (default all three)
#   --no-count       skip the extra round through the counting proxy (no request counts)
#
# Environment: ZIB_MOTO_VENV (the moto virtualenv, default /opt/zib/moto-venv),
# ZIB_S3S_FS (an s3s-fs binary to use instead of installing one into /opt/zib/s3s-fs),
# ZIB_BENCH_ZIB (a zib binary to measure instead of this tree's release build: two builds
# compared run by run, in turn).
# The results are also written, tab-separated, to DIR/zib-bench-DATE.tsv.
#
# What each tool runs (defaults, as a user would run them; all to STANDARD storage):
#   zib     zib init --storage-class STANDARD; zib backup SUBVOLUME (zib takes the
#           snapshot and runs btrfs send itself); zib restore SUBVOLUME --into DIR --yes
#   restic  btrfs send SNAPSHOT | restic backup --stdin; restic dump latest /stream | btrfs receive DIR
#   rclone  btrfs send SNAPSHOT | rclone rcat REMOTE:stream; rclone cat REMOTE:stream | btrfs receive DIR
# rclone stores the stream as it is (no encryption); zib and restic encrypt it.
#
# Every restore is checked byte for byte against the source file. Timed rounds talk to
# the server directly; request counts come from one more round through
# `s3-request-counter` (test-utils), a proxy that names each request's S3 action, so the
# proxy's own cost never enters the timings. Each round gets a fresh server and
# repository. Needs root (BTRFS on a loop device); installs btrfs-progs, restic, rclone,
# GNU time, moto (in its virtualenv) and s3s-fs 0.14.1 (cargo install) when missing.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

gib=2
dir=${TMPDIR:-/var/tmp}
rounds=1
targets=moto,s3s,local
tools=zib,restic,rclone
count=1
while [ $# -gt 0 ]; do
    case "$1" in
        --gib) gib=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --targets) targets=$2; shift 2 ;;
        --tools) tools=$2; shift 2 ;;
        --no-count) count=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

fail() {
    echo "error: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root: the source is a BTRFS subvolume on a loop device"
[[ "$gib" =~ ^[1-9][0-9]*$ ]] || fail "--gib takes a whole number of GiB, not $gib"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || fail "--rounds takes a positive whole number, not $rounds"
IFS=, read -r -a target_list <<<"$targets"
IFS=, read -r -a tool_list <<<"$tools"
[ "${#target_list[@]}" -gt 0 ] || fail "--targets is empty (moto, s3s, local)"
[ "${#tool_list[@]}" -gt 0 ] || fail "--tools is empty (zib, restic, rclone)"
for target in "${target_list[@]}"; do
    case "$target" in moto | s3s | local) ;; *) fail "unknown target '$target' (moto, s3s, local)" ;; esac
done
for tool in "${tool_list[@]}"; do
    case "$tool" in zib | restic | rclone) ;; *) fail "unknown tool '$tool' (zib, restic, rclone)" ;; esac
done

# ---- what the run needs ----

missing=()
command -v mkfs.btrfs >/dev/null 2>&1 || missing+=(btrfs-progs)
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
[ -x /usr/bin/time ] || missing+=(time)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# shellcheck source=scripts/lib/moto-venv.sh
. scripts/lib/moto-venv.sh
case ",$targets," in *,moto,*) ensure_moto_venv ;; esac

# s3s-fs 0.14.1: later versions need a newer rustc than this workspace's.
S3S_FS=${ZIB_S3S_FS:-/opt/zib/s3s-fs/bin/s3s-fs}
case ",$targets," in
    *,s3s,*)
        [ -z "${ZIB_S3S_FS:-}" ] || [ -x "$ZIB_S3S_FS" ] || fail "ZIB_S3S_FS=$ZIB_S3S_FS is not an executable file"
        if [ ! -x "$S3S_FS" ]; then
            echo "installing s3s-fs 0.14.1 into /opt/zib/s3s-fs (a few minutes, once)"
            cargo install --quiet --locked --root /opt/zib/s3s-fs s3s-fs --version 0.14.1 --features binary
        fi
        ;;
esac

echo "building zib and s3-request-counter (release)"
cargo build --quiet --release --locked -p zib-cli -p zib-test-utils --bin zib --bin s3-request-counter
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ZIB=${ZIB_BENCH_ZIB:-$target_dir/release/zib}
[ -x "$ZIB" ] || fail "ZIB_BENCH_ZIB=$ZIB is not an executable file"
COUNTER=$target_dir/release/s3-request-counter

# ---- the source: G GiB of random bytes in a BTRFS subvolume ----

mkdir -p "$dir"
work=$(mktemp -d "$dir/zib-bench.XXXXXX")
mnt=$work/mnt
server_pid=
counter_pid=
measured_pid=
cleanup() {
    set +e
    # The measured command first: it may be writing into the file system unmounted below.
    [ -z "$measured_pid" ] || { kill "$measured_pid" 2>/dev/null; wait "$measured_pid" 2>/dev/null; }
    [ -z "$counter_pid" ] || kill "$counter_pid" 2>/dev/null
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null
    wait 2>/dev/null
    if mountpoint -q "$mnt"; then
        umount "$mnt" || umount -l "$mnt"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_gib=$(($(df --output=avail -k "$dir" | tail -1) / 1024 / 1024))
[ "$free_gib" -ge $((5 * gib)) ] || fail "$dir has $free_gib GiB free; the benchmark needs about $((5 * gib)) GiB (choose another with --dir)"

# Room for the source, one restored copy and the BTRFS metadata, with room to spare (the
# image is sparse).
truncate -s $((3 * gib + 2))G "$work/btrfs.img"
mkfs.btrfs -q "$work/btrfs.img" >"$work/mkfs.log" 2>&1 || { cat "$work/mkfs.log" >&2; fail "mkfs.btrfs failed"; }
mkdir "$mnt"
mount -o loop "$work/btrfs.img" "$mnt"
btrfs -q subvolume create "$mnt/src"
echo "writing $gib GiB of random bytes into a BTRFS subvolume"
head -c "$((gib * 1024 * 1024 * 1024))" /dev/urandom >"$mnt/src/data"
btrfs -q subvolume snapshot -r "$mnt/src" "$mnt/stream"
sync
source_sha=$(sha256sum "$mnt/src/data" | cut -d' ' -f1)
stream_bytes=$(btrfs send -q "$mnt/stream" | wc -c)

results=$dir/zib-bench-$(date -u +%Y%m%dT%H%M%SZ).tsv
printf 'target\ttool\tphase\tround\twall_s\tcpu_s\tpeak_rss_kib\tstored_bytes\trequests\tnote\n' >"$results"

# measure TARGET TOOL PHASE ROUND -- COMMAND...: runs COMMAND under GNU time and sets
# last_row to the row's first seven columns. CPU is user + system of the command and every child it waited
# for; peak RSS is the largest single process among them.
measure() {
    local target=$1 tool=$2 phase=$3 round=$4
    shift 5
    local timing=$work/timing
    last_note=
    # In the background and waited for, so an interrupted run can stop it (cleanup).
    /usr/bin/time -f '%e %U %S %M' -o "$timing" "$@" >"$work/out.log" 2>&1 &
    measured_pid=$!
    local status=0
    wait "$measured_pid" || status=$?
    measured_pid=
    if [ "$status" -ne 0 ]; then
        # rclone 1.60 checks a finished multipart upload with HEAD ?versionId=null, which
        # moto 5.1 refuses (400): the object is complete (the restore below checks it),
        # only rclone's check failed.
        if [ "$tool/$target/$phase" = rclone/moto/backup ] && grep -q 'Post request rcat error: BadRequest' "$work/out.log"; then
            last_note="rclone exits 1: moto refuses its closing HEAD ?versionId=null"
        else
            cat "$work/out.log" >&2
            fail "$tool $phase to $target failed (its output is above)"
        fi
    fi
    # The last line: GNU time puts "Command exited with non-zero status N" before it.
    read -r wall user sys rss < <(tail -n 1 "$timing")
    last_row=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s' "$target" "$tool" "$phase" "$round" "$wall" \
        "$(python3 -c "print(f'{$user + $sys:.2f}')")" "$rss")
}

# Runs a setup step (outside the measurement) quietly; its output is shown if it fails.
quietly() {
    if ! "$@" >"$work/setup.log" 2>&1; then
        cat "$work/setup.log" >&2
        fail "setup step failed: $*"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_port PORT LOG: waits until the server writing LOG answers on PORT.
wait_for_port() {
    local port=$1 log=$2
    for _ in $(seq 1 150); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && return 0
        sleep 0.2
    done
    cat "$log" >&2
    fail "nothing answers on 127.0.0.1:$port (the server's output is above)"
}

# ---- servers ----

# No rclone config file: its remote comes from the environment (rclone_remote_env).
export RCLONE_CONFIG=$work/rclone.conf
touch "$RCLONE_CONFIG"
export AWS_ACCESS_KEY_ID=zibbench AWS_SECRET_ACCESS_KEY=zibbenchsecret AWS_REGION=us-east-1
server_endpoint=
start_server() {
    local target=$1 round_dir=$2
    local port
    port=$(free_port)
    case "$target" in
        # moto spools large bodies to TMPDIR: keep them on the benchmark's disk.
        moto) TMPDIR=$round_dir "$ZIB_MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$round_dir/server.log" 2>&1 & ;;
        s3s)
            mkdir -p "$round_dir/s3s-root"
            "$S3S_FS" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
                --secret-key "$AWS_SECRET_ACCESS_KEY" "$round_dir/s3s-root" >"$round_dir/server.log" 2>&1 &
            ;;
    esac
    server_pid=$!
    wait_for_port "$port" "$round_dir/server.log"
    server_endpoint=http://127.0.0.1:$port
}

stop_server() {
    [ -z "$server_pid" ] || { kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true; }
    server_pid=
}

# Starts the counting proxy in front of the server; prints its endpoint.
start_counter() {
    local report=$1
    rm -f "$work/counter.endpoint"
    "$COUNTER" --upstream "${server_endpoint#http://}" --endpoint-file "$work/counter.endpoint" \
        --report "$report" 2>>"$work/counter.log" &
    counter_pid=$!
    for _ in $(seq 1 100); do
        [ -s "$work/counter.endpoint" ] && break
        sleep 0.1
    done
    [ -s "$work/counter.endpoint" ] || { cat "$work/counter.log" >&2; fail "s3-request-counter did not start (its output is above)"; }
}

# Stops the proxy, which writes its report (run it in this shell: only the shell that
# started the proxy can wait for it).
stop_counter() {
    local report=$1
    kill -TERM "$counter_pid" 2>/dev/null || { cat "$work/counter.log" >&2; fail "s3-request-counter died (its output is above)"; }
    wait "$counter_pid" || true
    counter_pid=
    [ -s "$report" ] || { cat "$work/counter.log" >&2; fail "s3-request-counter wrote no report (its output is above)"; }
}

# Prints a report as "total (Action n, Action n, ...)".
summarize_counts() {
    awk '$1 == "total" { total = $2; next } { parts = parts (parts ? ", " : "") $1 " " $2 }
         END { print total " (" parts ")" }' "$1"
}

# rclone reads its remote from the environment. These machines export AWS_CA_BUNDLE,
# which rclone refuses for a plain-HTTP endpoint.
rclone_remote_env() {
    local endpoint=$1
    echo RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
        RCLONE_CONFIG_BENCH_ENDPOINT="$endpoint" RCLONE_CONFIG_BENCH_REGION=us-east-1 \
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true RCLONE_CONFIG_BENCH_STORAGE_CLASS=STANDARD
}

rclone_s3() {
    local endpoint=$1
    shift
    # shellcheck disable=SC2046 # the variables are words by design
    env -u AWS_CA_BUNDLE $(rclone_remote_env "$endpoint") rclone "$@"
}

# ---- one round: backup, stored bytes, restore, check ----

# Where every restore goes: a directory of the source's BTRFS file system.
into=$mnt/restored

# measure_tool TARGET TOOL PHASE ROUND ENDPOINT REPO: measures one tool's backup (from
# the snapshot's send stream) or restore (into $into), talking to ENDPOINT.
measure_tool() {
    local target=$1 tool=$2 phase=$3 round=$4 endpoint=$5 repo=$6
    local zib_flags=() rclone_env=() pipeline
    if [ "$tool" = zib ]; then
        [ "$target" = local ] || zib_flags=(--endpoint-url "$endpoint")
        case "$phase" in
            backup) measure "$target" zib backup "$round" -- "$ZIB" backup "$mnt/src" "${zib_flags[@]}" ;;
            restore) measure "$target" zib restore "$round" -- "$ZIB" restore "$mnt/src" --into "$into" --yes "${zib_flags[@]}" ;;
        esac
        return
    fi
    # The peers are fed by, or feed, btrfs in a pipeline: $1 the snapshot or the restore
    # directory, $2 the repository or remote.
    case "$tool/$phase" in
        restic/backup) pipeline='btrfs send -q "$1" | restic -q -r "$2" backup --stdin --stdin-filename stream' ;;
        restic/restore) pipeline='restic -q -r "$2" dump latest /stream | btrfs receive -q "$1"' ;;
        rclone/backup) pipeline='btrfs send -q "$1" | rclone rcat "$2/stream"' ;;
        rclone/restore) pipeline='rclone cat "$2/stream" | btrfs receive -q "$1"' ;;
    esac
    if [ "$target" != local ]; then
        [ "$tool" != restic ] || repo=s3:$endpoint/bench
        # shellcheck disable=SC2207 # the variables are words by design
        [ "$tool" != rclone ] || rclone_env=(env -u AWS_CA_BUNDLE $(rclone_remote_env "$endpoint"))
    fi
    local btrfs_end=$mnt/stream
    [ "$phase" = backup ] || btrfs_end=$into
    measure "$target" "$tool" "$phase" "$round" -- "${rclone_env[@]}" bash -c "set -o pipefail; $pipeline" - "$btrfs_end" "$repo"
}

# round TARGET TOOL ROUND COUNTED: appends a backup row and a restore row to $results.
round() {
    local target=$1 tool=$2 round=$3 counted=$4
    local round_dir=$work/round
    rm -rf "$round_dir"
    mkdir -p "$round_dir"
    local backup_endpoint restore_endpoint repo stored requests_backup=- requests_restore=-
    if [ "$target" != local ]; then
        start_server "$target" "$round_dir"
        # One bucket per tool, made outside the measurement.
        quietly rclone_s3 "$server_endpoint" mkdir bench:bench
    fi

    # Setup outside the measurement: a repository (zib, restic).
    case "$tool/$target" in
        zib/local) repo=$round_dir/repository ;;
        zib/*) repo=s3://bench ;;
        restic/local) repo=$round_dir/repository ;;
        restic/*) repo=s3:$server_endpoint/bench ;;
        rclone/local) repo=$round_dir/repository ;;
        rclone/*) repo=bench:bench ;;
    esac
    export ZIB_CONFIG=$round_dir/config.toml ZIB_STATE_DIR=$round_dir/state
    export ZIB_PASSPHRASE_FILE=$round_dir/passphrase RESTIC_PASSWORD=bench-passphrase-not-a-secret
    export RESTIC_CACHE_DIR=$round_dir/restic-cache
    (umask 077 && echo "$RESTIC_PASSWORD" >"$ZIB_PASSPHRASE_FILE")
    case "$tool" in
        zib)
            if [ "$target" = local ]; then
                quietly "$ZIB" init "$repo" --storage-class STANDARD
            else
                quietly "$ZIB" init "$repo" --storage-class STANDARD --endpoint-url "$server_endpoint"
            fi
            ;;
        restic) quietly restic -q -r "$repo" init ;;
        rclone) [ "$target" != local ] || mkdir -p "$repo" ;;
    esac

    local endpoint=$server_endpoint
    if [ "$counted" = 1 ]; then
        start_counter "$round_dir/backup.counts"
        endpoint=$(cat "$work/counter.endpoint")
    fi
    measure_tool "$target" "$tool" backup "$round" "$endpoint" "$repo"
    local backup_row=$last_row backup_note=${last_note:--}
    if [ "$counted" = 1 ]; then
        stop_counter "$round_dir/backup.counts"
        requests_backup=$(summarize_counts "$round_dir/backup.counts")
    fi

    if [ "$target" = local ]; then
        stored=$(du -sb "$round_dir/repository" | cut -f1)
    elif [ "$target" = s3s ]; then
        # s3s-fs keeps each object as a file (its listing gives no sizes to rclone).
        stored=$(du -sb "$round_dir/s3s-root/bench" | cut -f1)
    else
        stored=$(rclone_s3 "$server_endpoint" size --json bench:bench | python3 -c 'import json, sys; print(json.load(sys.stdin)["bytes"])')
    fi
    printf '%s\t%s\t%s\t%s\n' "$backup_row" "$stored" "$requests_backup" "$backup_note" >>"$results"

    # The restore: into an empty directory of the same BTRFS file system.
    mkdir -p "$into"
    if [ "$counted" = 1 ]; then
        start_counter "$round_dir/restore.counts"
        endpoint=$(cat "$work/counter.endpoint")
    fi
    measure_tool "$target" "$tool" restore "$round" "$endpoint" "$repo"
    local restore_row=$last_row
    if [ "$counted" = 1 ]; then
        stop_counter "$round_dir/restore.counts"
        requests_restore=$(summarize_counts "$round_dir/restore.counts")
    fi
    printf '%s\t-\t%s\t-\n' "$restore_row" "$requests_restore" >>"$results"

    # Byte for byte, or the round does not count.
    local restored
    restored=$(find "$into" -name data -type f | head -1)
    [ -n "$restored" ] || fail "$tool restored nothing from $target (no file named data under $into)"
    [ "$(sha256sum "$restored" | cut -d' ' -f1)" = "$source_sha" ] || fail "$tool's restore from $target differs from the source"

    # Back to the starting state: no received subvolume, no zib snapshot.
    for subvolume in "$into"/* "$mnt"/.zib-snapshots/src/*; do
        [ -e "$subvolume" ] || continue
        btrfs property set -ts "$subvolume" ro false 2>/dev/null || true
        btrfs -q subvolume delete "$subvolume"
    done
    rm -rf "$into"
    # Deleted subvolumes are freed in the background; the next round needs the room.
    btrfs -q subvolume sync "$mnt"
    stop_server
    rm -rf "$round_dir"
}

# ---- the run ----

date -u +"run started %Y-%m-%dT%H:%M:%SZ"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(uname -r)"
echo "zib $("$ZIB" --version | cut -d' ' -f2), $(restic version | cut -d' ' -f1-2), $(rclone version | head -1)"
echo "source: $gib GiB of random bytes; btrfs send stream $stream_bytes bytes"

# The source's own cost: every tool is fed by the same btrfs send.
measure source "btrfs send" send 1 -- bash -c 'btrfs send -q "$1" >/dev/null' - "$mnt/stream"
printf '%s\t-\t-\t-\n' "$last_row" >>"$results"

for target in "${target_list[@]}"; do
    for tool in "${tool_list[@]}"; do
        for r in $(seq 1 "$rounds"); do
            echo "$target: $tool, round $r"
            round "$target" "$tool" "$r" 0
        done
        if [ "$count" = 1 ] && [ "$target" != local ]; then
            echo "$target: $tool, counting requests"
            round "$target" "$tool" count 1
        fi
    done
done

echo
echo "results: wall and CPU time the median of $rounds timed round(s), peak RSS the largest of them,"
echo "stored bytes from round 1 (the server's listing for moto; du of the objects' files for s3s-fs"
echo "and the local directory), requests from the counted round:"
python3 - "$results" "$stream_bytes" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
stream = int(sys.argv[2])
mib = stream / 2**20
names = {"moto": "moto", "s3s": "s3s-fs", "local": "local directory", "source": "source"}
print("| target | tool | phase | wall s | MiB/s | CPU s | CPU s/GiB | peak RSS MiB | stored MiB | requests |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
keys = []
notes = []
for row in rows:
    key = (row["target"], row["tool"], row["phase"])
    if key not in keys:
        keys.append(key)
for key in keys:
    timed = [r for r in rows if (r["target"], r["tool"], r["phase"]) == key and r["round"] != "count"]
    counted = [r for r in rows if (r["target"], r["tool"], r["phase"]) == key and r["round"] == "count"]
    wall = statistics.median(float(r["wall_s"]) for r in timed)
    cpu = statistics.median(float(r["cpu_s"]) for r in timed)
    rss = max(int(r["peak_rss_kib"]) for r in timed) / 1024
    stored = timed[0]["stored_bytes"]
    stored = f"{int(stored) / 2**20:.1f}" if stored not in ("-", "") else ""
    requests = counted[0]["requests"] if counted else ""
    requests = "" if requests == "-" else requests
    note = next((r["note"] for r in timed + counted if r["note"] != "-"), "")
    if note:
        notes.append(note)
        requests += " " + "*" * len(notes)
    print(f"| {names[key[0]]} | {key[1]} | {key[2]} | {wall:.1f} | {mib / wall:.0f} | {cpu:.1f} "
          f"| {cpu / (stream / 2**30):.2f} | {rss:.0f} | {stored} | {requests} |")
for i, note in enumerate(notes, 1):
    print(f"{'*' * i} {note}")
EOF
echo
echo "raw rows (also in $results):"
column -t -s $'\t' "$results"
