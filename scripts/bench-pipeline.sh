#!/usr/bin/env bash
# Throughput, CPU time and peak memory of zib's whole backup pipeline (source → encrypt →
# local-directory repository), each next to a plain copy onto the same file system.
# Builds the benchmark in release and runs it; see engine/benches/pipeline.rs for what
# is measured and docs/BENCHMARKS.md for results.
#
#   scripts/bench-pipeline.sh [OPTIONS]
#
# Options are passed to the benchmark: --dir DIR (default: $TMPDIR or /tmp) --rounds N
# --stream-gib G --zfs-mib M --rss-gib G,G --only a|b|rss|restore (restore: not in the default set).
#
# The zfs send measurement (b) needs zfs-fuse and root: when zfs-fuse is installed and we
# are root, its daemon is started if it is not running; otherwise (b) is skipped with a
# message. Needs up to ~10 GiB free in the chosen directory (checked per section);
# everything created there, and the benchmark's pool, is removed afterwards.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

if command -v zfs-fuse >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    if ! pgrep -x zfs-fuse >/dev/null 2>&1; then
        echo "starting the zfs-fuse daemon"
        zfs-fuse
    fi
    for _ in $(seq 1 50); do
        zpool list >/dev/null 2>&1 && break
        sleep 0.2
    done
elif ! command -v zfs-fuse >/dev/null 2>&1; then
    echo "zfs-fuse is not installed: the zfs send measurement (b) will be skipped (apt-get install zfs-fuse)"
fi

echo "building the benchmark (release)"
cargo bench --quiet -p zib-engine --bench pipeline --no-run
date -u +"run started %Y-%m-%dT%H:%M:%SZ"
cargo bench --quiet -p zib-engine --bench pipeline -- "$@"
