# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/bench.sh: the moto S3 server, pinned, in its own
# virtualenv.
#
# moto 5.2.x answers ListParts and CompleteMultipartUpload with XML that aws-sdk-s3 cannot
# parse, so the version is pinned and lives in its own virtualenv (a system-wide moto may
# be a broken one).
MOTO_VERSION=5.1.22
ZIB_MOTO_VENV=${ZIB_MOTO_VENV:-/opt/zib/moto-venv}

# Installs moto[server]==$MOTO_VERSION into $ZIB_MOTO_VENV unless it is there, then exports
# ZIB_MOTO_SERVER (the server) and ZIB_PYTHON (the virtualenv's python).
ensure_moto_venv() {
    local installed
    installed=$("$ZIB_MOTO_VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null || true)
    if [ "$installed" != "$MOTO_VERSION" ]; then
        rm -rf "$ZIB_MOTO_VENV"
        python3 -m venv "$ZIB_MOTO_VENV"
        "$ZIB_MOTO_VENV/bin/pip" install --quiet "moto[server]==$MOTO_VERSION"
    fi
    export ZIB_MOTO_SERVER="$ZIB_MOTO_VENV/bin/moto_server"
    export ZIB_PYTHON="$ZIB_MOTO_VENV/bin/python"
}
