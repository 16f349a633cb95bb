# scripts/lib/setup.sh: what scripts/run and scripts/test need before they start, sourced by
# both. Idempotent: each function does nothing when its work is already done.
#
#   ensure_debian_packages PKG...  installs the missing ones (as root), plus a C compiler,
#                                  pkg-config and Python with venv; sets PYTHON
#   ensure_python_client VENV      creates VENV if needed and installs python-client into it
#                                  (-e, with its pinned dependencies) when its metadata changed
# shellcheck shell=bash

PYTHON="${PYTHON:-python3.11}"
# Optional cargo features every build of scripts/run and scripts/test enables (the blob
# server's S3 backend, which the tests exercise against moto): one feature set, so the two
# scripts share one build instead of rebuilding each other's.
CARGO_FEATURES=(--features blob-server/s3)

setup_die() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

apt_install() {
    [ "$(id -u)" = 0 ] ||
        setup_die "missing Debian packages: $*; run as root or: sudo apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    # Debian's memcached package starts a daemon on port 11211 when installed; the tests and
    # scripts/run need that port free, so service starts are refused for this install only.
    local guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$guard"
        chmod 755 "$guard"
    fi
    local status=0
    { apt-get update -q && apt-get install -y -q --no-install-recommends "$@"; } || status=$?
    [ -z "$guard" ] || rm -f "$guard"
    return "$status"
}

ensure_debian_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        command -v python3 >/dev/null 2>&1 || missing+=(python3)
        PYTHON=python3
    fi
    if command -v "$PYTHON" >/dev/null 2>&1 && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "    all present: $*, a C compiler, pkg-config, $PYTHON with venv"
    else
        echo "    installing: ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
}

ensure_python_client() {
    local venv="$1" root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    if [ ! -x "$venv/bin/python" ]; then
        "$PYTHON" -m venv "$venv"
    fi
    # Editable install, so source edits need no reinstall; redo it only when the package's
    # metadata or its pinned dev tools changed since the last install.
    local want have=""
    want="$(cat "$root/python-client/pyproject.toml" "$root/python-client/requirements-dev.txt" |
        sha256sum | cut -d' ' -f1)"
    [ -f "$venv/.python-client.sha256" ] && have="$(cat "$venv/.python-client.sha256")"
    if [ "$want" != "$have" ]; then
        "$venv/bin/python" -m pip install --disable-pip-version-check -q \
            -r "$root/python-client/requirements-dev.txt" -e "$root/python-client"
        echo "$want" >"$venv/.python-client.sha256"
    fi
    # App users (not only root) run apps from this environment.
    chmod -R a+rX "$venv" 2>/dev/null || true
}

# The Python that runs deployed apps: a virtual environment made from Debian's
# /usr/bin/python3 (not a Python under /root, which app users cannot execute), holding a
# regular (non-editable) install of the berth package, readable and executable by every user.
# Prints nothing; sets RUNTIME_PYTHON. Reinstalls when python-client's sources changed.
ensure_runtime_python() {
    local venv="$1" root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install python3 python3-venv
    fi
    if [ ! -x "$venv/bin/python" ]; then
        /usr/bin/python3 -m venv "$venv"
    fi
    local want have=""
    want="$(find "$root/python-client/src" "$root/python-client/pyproject.toml" -type f \
        -not -name '*.pyc' -print0 | sort -z | xargs -0 cat | sha256sum | cut -d' ' -f1)"
    [ -f "$venv/.berth.sha256" ] && have="$(cat "$venv/.berth.sha256")"
    if [ "$want" != "$have" ]; then
        "$venv/bin/python" -m pip install --disable-pip-version-check -q --force-reinstall \
            --no-deps "$root/python-client"
        "$venv/bin/python" -m pip install --disable-pip-version-check -q "$root/python-client"
        echo "$want" >"$venv/.berth.sha256"
    fi
    chmod -R a+rX "$venv"
    RUNTIME_PYTHON="$venv/bin/python"
}

# mdBook, which builds the documentation site (docs/book.toml): the pinned version from
# crates.io, built once into $1/bin (default target/tools) without the `serve` and `watch`
# features (a local web server and a file watcher, which a build does not need and which take
# most of the compile time). Sets MDBOOK.
MDBOOK_VERSION=0.5.4
ensure_mdbook() {
    local tools="$1" root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    MDBOOK="$tools/bin/mdbook"
    if [ -x "$MDBOOK" ] && [ "$("$MDBOOK" --version 2>/dev/null)" = "mdbook v$MDBOOK_VERSION" ]; then
        return 0
    fi
    cargo install mdbook --version "$MDBOOK_VERSION" --locked --no-default-features \
        --features search --root "$tools" --target-dir "$tools/build" --quiet ||
        setup_die "cannot build mdbook $MDBOOK_VERSION from crates.io"
}
