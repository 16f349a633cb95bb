#!/usr/bin/env bash
# bench/router/run.sh: berth-router's cost in front of an app. One granian WSGI server runs
# an app whose handler burns about 1 ms of CPU (tests/router/echoapp.py, path /work); wrk
# drives it directly and through the router, in alternating rounds within one run, and the
# summary reports median throughput, p99 latency and the ratio routed/direct (target >= 0.9x).
#
#   bench/router/run.sh [--duration S] [--rounds N] [--connections C] [--workers W] [--no-build]
#
# Run it on an idle machine (load average < 1.5): the router, granian and wrk share the CPUs.
# Needs: wrk, curl, python3 with granian (the repo's .venv: pip install -e python-client).
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=10
ROUNDS=3
CONNECTIONS=16
WORKERS=1
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

die() { echo "error: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
for tool in wrk curl sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk curl coreutils)"
done
PYTHON="$REPO/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
"$PYTHON" -c 'import granian' 2>/dev/null ||
    die "granian is missing for $PYTHON (pip install -e python-client)"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
if [ "$BUILD" = 1 ]; then
    (cd "$REPO" && cargo build --release -q -p berth-router)
fi
ROUTER_BIN="$TARGET_DIR/release/berth-router"
[ -x "$ROUTER_BIN" ] || die "$ROUTER_BIN not built (run without --no-build)"

LOAD=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$LOAD" 'BEGIN { exit !(l >= 1.5) }'; then
    log "warning: load average is $LOAD (>= 1.5): results will be noisy"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-router.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() { # wait_http ADDR HOST
    local _
    for _ in $(seq 1 200); do
        curl -sf -o /dev/null -H "Host: $2" "http://$1/work" && return 0
        sleep 0.05
    done
    die "nothing answers on $1 (host $2): $(tail -5 "$WORK"/*.log)"
}

# --- the app --------------------------------------------------------------------------
APP_PORT=$(free_port)
PYTHONPATH="$REPO/tests/router" BACKEND_NAME=bench "$PYTHON" -m granian --interface wsgi \
    --host 127.0.0.1 --port "$APP_PORT" --workers "$WORKERS" --no-ws --log-level warning \
    echoapp:application >"$WORK/granian.log" 2>&1 &
PIDS+=($!)

# --- the router -----------------------------------------------------------------------
TOKEN="bench-control-$RANDOM$RANDOM"
HASH=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
printf 'control_tokens = ["%s"]\nverbosity = 0\n[app_defaults]\nmax_concurrent_requests = 10000\n' \
    "$HASH" >"$WORK/router.toml"
"$ROUTER_BIN" --config "$WORK/router.toml" --data-dir "$WORK/data" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$WORK/router.out" 2>"$WORK/router.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
    grep -q '^LISTEN admin' "$WORK/router.out" 2>/dev/null && break
    sleep 0.05
done
ROUTER_ADDR=$(awk '/^LISTEN http / { print $3 }' "$WORK/router.out")
ADMIN_ADDR=$(awk '/^LISTEN admin / { print $3 }' "$WORK/router.out")
[ -n "$ROUTER_ADDR" ] && [ -n "$ADMIN_ADDR" ] || die "the router did not start: $(cat "$WORK/router.log")"
wait_http "127.0.0.1:$APP_PORT" "127.0.0.1"
TABLE=$(printf '{"generation":1,"apps":[{"name":"bench","backends":["127.0.0.1:%s"]}]}' "$APP_PORT")
curl -sf -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data "$TABLE" "http://$ADMIN_ADDR/v1/routes" >/dev/null || die "pushing the route table failed"
wait_http "$ROUTER_ADDR" "bench.localhost"

# --- runs -----------------------------------------------------------------------------
# run_wrk direct|routed -> prints "RPS P99_MS"
run_wrk() {
    local url host
    if [ "$1" = direct ]; then
        url="http://127.0.0.1:$APP_PORT/work" host="127.0.0.1:$APP_PORT"
    else
        url="http://$ROUTER_ADDR/work" host="bench.localhost"
    fi
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $host" "$url" \
        2>"$WORK/wrk.err" >"$WORK/wrk.out" || { cat "$WORK/wrk.err" >&2; die "wrk failed ($1)"; }
    if grep -qE "Non-2xx|Socket errors" "$WORK/wrk.out"; then
        cat "$WORK/wrk.out" >&2
        die "errors during the $1 run"
    fi
    awk '
        /Requests\/sec:/ { rps = $2 }
        /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); p = v / 1000 }
                   else if (v ~ /ms$/) { sub(/ms$/, "", v); p = v }
                   else if (v ~ /s$/) { sub(/s$/, "", v); p = v * 1000 } }
        END { printf "%.0f %.2f\n", rps, p }' "$WORK/wrk.out"
}

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="direct routed"; else order="routed direct"; fi
    for target in $order; do
        r=$(run_wrk "$target")
        RESULTS[$target]+="$r;"
        log "round $round: $target: $r (req/s, p99 ms)"
    done
done

median() { tr ';' '\n' | awk -v col="$1" 'NF { print $col }' | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

d=$(echo "${RESULTS[direct]}" | median 1)
r=$(echo "${RESULTS[routed]}" | median 1)
dp=$(echo "${RESULTS[direct]}" | median 2)
rp=$(echo "${RESULTS[routed]}" | median 2)
ratio=$(awk -v a="$r" -v b="$d" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
GRANIAN_VERSION=$("$PYTHON" -c 'import granian; print(granian.__version__)')
echo
echo "berth-router in front of granian $GRANIAN_VERSION (WSGI, $WORKERS worker(s), ~1 ms handler)"
echo "wrk -t2 -c$CONNECTIONS, ${DURATION}s runs, $ROUNDS rounds alternating, medians;" \
    "load average at start $LOAD; $(nproc) CPUs"
printf '%-8s %12s %12s\n' "" "req/s" "p99 ms"
printf '%-8s %12s %12s\n' "direct" "$d" "$dp"
printf '%-8s %12s %12s\n' "routed" "$r" "$rp"
echo "ratio routed/direct: ${ratio}x (target >= 0.9x)"
