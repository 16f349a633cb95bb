#!/usr/bin/env bash
# The berth package's costs, each against its peer in one run:
#   1. cache round trips per second: get+set pairs through berth.cache vs plain pymemcache,
#      against the same cache-server, alternating rounds; the ratio of medians (target >= 0.95x);
#   2. one log call on the request path (logger.info with the system handler, shipping to a
#      real log collector), median per call over batches (target < 5 us), next to a
#      logging.NullHandler baseline (the cost of the logging module itself);
#   3. the WSGI server: a hello app under granian (berth.runtime's server) and gunicorn (sync
#      workers, the common default), same processes, wrk against each; requests/s and the ratio.
# Not part of the test command. Results go in docs/benchmarks.md.
#
# Usage: bench/client/run.sh [--rounds N] [--no-build] [--skip-wsgi]
# Needs: the repository's .venv (scripts/test or scripts/run make it); wrk for part 3
# (apt-get install wrk); gunicorn is installed into a scratch venv by this script.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=1
WSGI=1
ARGS=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --no-build) BUILD=0; shift ;;
        --skip-wsgi) WSGI=0; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if [[ $BUILD == 1 ]]; then
    (cd "$REPO" && cargo build --release -p cache-server -p log-collector)
fi
PY="$REPO/.venv/bin/python"
[[ -x $PY ]] || { echo "no $PY: run scripts/test (or scripts/run) once to make it" >&2; exit 1; }
OUT="$TARGET/bench-client"
mkdir -p "$OUT"
"$PY" "$REPO/bench/client/bench.py" --bin-dir "$TARGET/release" --work "$OUT" "${ARGS[@]}"

if [[ $WSGI == 1 ]]; then
    command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
    GVENV="$OUT/gunicorn-venv"
    if [[ ! -x $GVENV/bin/gunicorn ]]; then
        "$PY" -m venv "$GVENV"
        "$GVENV/bin/pip" install -q gunicorn==23.0.0
    fi
    APPDIR="$REPO/bench/client"
    run_wrk() { # NAME URL
        sleep 1
        wrk -t2 -c32 -d10s "$2" | awk -v n="$1" '/Requests\/sec/ {print n, $2}'
    }
    results=()
    for round in 1 2 3; do
        (cd "$APPDIR" && BERTH_APP=bench exec "$PY" -m granian --interface wsgi --workers 2 \
            --blocking-threads 1 --port 18081 --no-ws hello:application >/dev/null 2>&1) &
        gpid=$!
        results+=("$(run_wrk granian http://127.0.0.1:18081/)")
        kill $gpid; wait $gpid 2>/dev/null || true
        (cd "$APPDIR" && exec "$GVENV/bin/gunicorn" -w 2 -b 127.0.0.1:18082 hello:application \
            >/dev/null 2>&1) &
        upid=$!
        results+=("$(run_wrk gunicorn http://127.0.0.1:18082/)")
        kill $upid; wait $upid 2>/dev/null || true
    done
    printf '%s\n' "${results[@]}" | "$PY" -c '
import statistics, sys
by = {}
for line in sys.stdin:
    name, rps = line.split()
    by.setdefault(name, []).append(float(rps))
g, u = statistics.median(by["granian"]), statistics.median(by["gunicorn"])
print(f"wsgi hello, 2 workers, wrk -t2 -c32 -d10s, medians of 3: granian {g:,.0f} req/s, "
      f"gunicorn (sync) {u:,.0f} req/s, ratio {g / u:.2f}x")
'
fi
