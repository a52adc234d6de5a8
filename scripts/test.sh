#!/usr/bin/env bash
# The whole test run, exactly as CI runs it (.ci/run calls this and nothing else).
#
# On a fresh Debian 12 machine, as root: installs what the tests need when it is missing
# (zfs-fuse, btrfs-progs, a virtualenv with moto[server]==5.1.22), then runs rustfmt,
# clippy, the doc tests and the format reference decoder over the checked-in test
# vectors, and last — after starting the zfs-fuse daemon and proving it works
# (scripts/lib/zfs-fuse.sh) — every test with real components required.
#
# Environment:
#   ZIB_MOTO_VENV=DIR        where the moto virtualenv lives (default /opt/zib/moto-venv)
#   ZIB_TEST_OPENZFS_VM=1    also run the ZFS conformance suite against real OpenZFS 2.3
#                            in a VM (slow: builds a VM image on first use)
#   ZIB_SKIP_LINT=1          skip rustfmt and clippy (quick local iterations only)
#   ZIB_REGENERATE_VECTORS   makes crypto's golden-file test rewrite the format test vectors
#                            (and fail, so the rewrite is reviewed; see crypto/tests/vectors.rs)
#   CI                       set (to anything but 0 or false) by CI and by .ci/run: the two
#                            switches above change what the run checks, and are refused
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

# shellcheck source=scripts/lib/moto-venv.sh
. scripts/lib/moto-venv.sh
# shellcheck source=scripts/lib/zfs-fuse.sh
. scripts/lib/zfs-fuse.sh

step_started=0
step() {
    local now
    now=$(date +%s)
    if [ "$step_started" -ne 0 ]; then
        echo "==> (previous step took $((now - step_started)) s)"
    fi
    step_started=$now
    echo "==> $*"
}

fail() {
    echo "error: $*" >&2
    exit 1
}

run_started=$(date +%s)

# A CI run checks everything: switches meant for local iterations are refused, not obeyed.
case "${CI:-}" in
    "" | 0 | false) ;;
    *)
        [ "${ZIB_SKIP_LINT:-0}" != 1 ] ||
            fail "ZIB_SKIP_LINT=1 is refused when CI is set: a CI run checks rustfmt and clippy"
        [ -z "${ZIB_REGENERATE_VECTORS+set}" ] ||
            fail "ZIB_REGENERATE_VECTORS is refused when CI is set: a CI run checks the checked-in test vectors, it never rewrites them"
        ;;
esac

step "checking system packages"
missing_packages=()
command -v zfs-fuse >/dev/null 2>&1 || missing_packages+=(zfs-fuse)
command -v mkfs.btrfs >/dev/null 2>&1 || missing_packages+=(btrfs-progs)
command -v losetup >/dev/null 2>&1 || missing_packages+=(mount)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing_packages+=(python3-venv)
if [ "${#missing_packages[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || fail "missing packages ${missing_packages[*]}; run as root or install them: apt-get install ${missing_packages[*]}"
    echo "installing ${missing_packages[*]}"
    apt-get update
    # zfs-fuse's maintainer scripts try to start its init service, which fails where no
    # init system runs (containers, CI); policy-rc.d tells them not to.
    policy_rc=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy_rc" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
        chmod +x "$policy_rc"
        created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_packages[@]}"
    [ "$created_policy" -eq 0 ] || rm -f "$policy_rc"
fi

step "checking the moto S3 server ($MOTO_VERSION in $ZIB_MOTO_VENV)"
ensure_moto_venv
# The reference decoder needs only the standard library and `cryptography`, which moto
# already depends on.
"$ZIB_PYTHON" -c 'import cryptography' || fail "the moto virtualenv lacks the cryptography package"

[ -e /dev/fuse ] || fail "/dev/fuse is missing: zfs-fuse needs FUSE (modprobe fuse)"

# Loop devices back the BTRFS fixtures.
[ -e /dev/loop-control ] || modprobe loop 2>/dev/null || true

export ZIB_REAL_COMPONENTS=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

if [ "${ZIB_SKIP_LINT:-0}" != 1 ]; then
    step "cargo fmt --check"
    cargo fmt --all -- --check
    step "cargo clippy"
    # --all-features: the engine's journal benchmark needs its `internals` feature.
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
    step "storage backends one by one (an embedder builds only the backend it uses)"
    for backend in s3 local-dir memory; do
        cargo clippy -p zib-storage-backend --no-default-features --features "$backend" --locked -- -D warnings
    done
    # The local directory alone must not pull in the AWS SDK.
    if cargo tree -e normal -p zib-storage-backend --no-default-features --features local-dir --locked | grep -q aws-sdk-s3; then
        fail "zib-storage-backend with only local-dir depends on aws-sdk-s3"
    fi
fi

step "doc tests"
cargo test --workspace --doc --locked

if [ -f docs/reference/check_vectors.py ]; then
    step "reference decoder over the format test vectors"
    "$ZIB_PYTHON" docs/reference/check_vectors.py
fi

# The whole suite last, so its summary is the run's closing line. The `zib` binary the
# tests run is built with `test-clock`, so cli/tests/restore_months.rs can drive a restore
# across months with ZIB_NOW (a user's build never reads that variable).
test_features=(--features zib-cli/test-clock)
# Right before the tests (the build before them takes minutes), so the suite starts on a
# daemon that was just seen to work.
step "starting the zfs-fuse daemon and proving it answers"
ensure_zfs_fuse || fail "the zfs-fuse daemon does not create, write, snapshot and send a test pool even after a clean restart (see the probe's messages above; \`zpool status\` and \`df -h /tmp\` say more)"
step "cargo nextest (the whole test suite, real components required)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "${test_features[@]}"
else
    echo "cargo-nextest is not installed; falling back to cargo test"
    cargo test --workspace --locked --no-fail-fast "${test_features[@]}"
fi

if [ "${ZIB_TEST_OPENZFS_VM:-0}" = 1 ]; then
    step "OpenZFS 2.3 tier (VM)"
    scripts/openzfs-vm-tier.sh
fi

step "done"
echo "whole run took $(($(date +%s) - run_started)) s"
