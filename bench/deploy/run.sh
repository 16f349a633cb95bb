#!/usr/bin/env bash
# bench/deploy/run.sh: the whole platform's deploy, rollback and routing costs, in one run.
# Starts berthd, every service following its registry and berth-router (tests/deploy/
# platform.py, real processes on free ports), then:
#   1. deploys examples/guestbook N times (a copy, version bumped each time) and times from
#      `berth deploy`'s start to the first response through the router showing the new version,
#      next to the CLI's own wall time (target < 2 s, median);
#   2. `berth rollback guestbook` N times while the previous release is warm, timed the same
#      way (target < 0.5 s, median);
#   3. wrk against the router (Host: APP.localhost) and against the app's instance directly
#      (its address from `berth status APP --json`), same -t/-c/-d, alternating rounds; an app
#      whose handler sleeps 1 ms (no CPU) plus a SHA-256 of 1 KiB; the ratio of the median
#      requests/s (target >= 0.9x), once per --app-threads value.
#
#   bench/deploy/run.sh [--deploys N] [--rollbacks N] [--rounds N] [--duration S]
#                       [--connections C] [--app-threads 8,16] [--log-rate N] [--json-out F]
#                       (bench/deploy/deploy_bench.py --help lists every option)
#
# Needs: the release binaries (target/release, or $BERTH_BIN_DIR), the repository's .venv
# (pytest: the platform is the deploy tests'), the apps' Python .venv-runtime, MariaDB on
# 127.0.0.1:3306 (root, no password; BERTH_TEST_MARIADB* as for the tests) and wrk (installed
# with apt-get when missing). Not part of the test command; results go in docs/benchmarks.md.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() { echo "error: $*" >&2; exit 1; }
case "${1:-}" in -h|--help) sed -n '2,22p' "$0"; exit 0 ;; esac

BIN_DIR=${BERTH_BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/release}
for b in berth berthd berth-shim berth-router cache-server blob-server log-collector query-proxy; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing: build the release binaries with" \
        "scripts/test (or: cargo build --release --workspace)"
done
PYTHON="$REPO/.venv/bin/python"
[ -x "$PYTHON" ] && "$PYTHON" -c 'import pytest' 2>/dev/null ||
    die "$PYTHON with pytest is missing: scripts/test makes the repository's .venv"
RUNTIME_PY=${BERTH_RUNTIME_PYTHON:-$REPO/.venv-runtime/bin/python}
[ -x "$RUNTIME_PY" ] && "$RUNTIME_PY" -c 'import berth.runtime, granian' 2>/dev/null ||
    die "the apps' Python $RUNTIME_PY is missing: scripts/test makes it, or" \
        "(cd $REPO && source scripts/lib/setup.sh && ensure_runtime_python .venv-runtime)"
DB=${BERTH_TEST_MARIADB:-127.0.0.1:3306}
(exec 3<>"/dev/tcp/${DB%:*}/${DB##*:}") 2>/dev/null ||
    die "nothing listens on $DB: the guestbook needs MariaDB (BERTH_TEST_MARIADB=host:port)"
if ! command -v wrk >/dev/null; then
    echo "# wrk is missing: apt-get install wrk" >&2
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
    fi
    command -v wrk >/dev/null || die "could not install wrk (apt-get install wrk)"
fi

echo "uptime at start: $(uptime)"
echo "# $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'): $BIN_DIR" >&2
export BERTH_RUNTIME_PYTHON="$RUNTIME_PY"
exec "$PYTHON" "$REPO/bench/deploy/deploy_bench.py" --bin-dir "$BIN_DIR" "$@"
