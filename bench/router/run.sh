#!/usr/bin/env bash
# bench/router/run.sh: berth-router's cost in front of an app. One granian WSGI server runs
# an app whose handler does about 1 ms of work (tests/router/echoapp.py: `--handler cpu`, the
# default, burns 1 ms of CPU on /work; `--handler sleep` sleeps 1 ms and hashes 1 KiB on /wait);
# wrk drives it directly and through the router, in alternating rounds within one run, and the
# summary reports median throughput, p99 latency and the ratio routed/direct (target >= 0.9x),
# and the CPU time each routed request cost the router and the log collector. Its peer, nginx
# as a reverse proxy (keep-alive upstream connections, a buffered access log to a file), runs
# in the same rounds (`--no-nginx` leaves it out), with its own ratio.
#
# The router ships an access log line per request to a real log-collector, as it does in
# production (berthd always gives apps a log stream); `--no-access-log` leaves it out.
#
#   bench/router/run.sh [--duration S] [--rounds N] [--connections C] [--workers W]
#                       [--threads T] [--handler cpu|sleep] [--no-access-log]
#                       [--router-threads N (0: one per CPU)] [--no-nginx] [--no-build]
#
# Run it on an idle machine (load average < 1.5): the router, granian and wrk share the CPUs.
# Needs: wrk, curl, python3 with granian (the repo's .venv: pip install -e python-client).
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=10
ROUNDS=3
CONNECTIONS=16
WORKERS=1
THREADS=8
HANDLER=cpu
ACCESS_LOG=1
ROUTER_THREADS=0
NGINX=1
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --handler) HANDLER=$2; shift 2 ;;
        --no-access-log) ACCESS_LOG=0; shift ;;
        --router-threads) ROUTER_THREADS=$2; shift 2 ;;
        --no-nginx) NGINX=0; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$HANDLER" in
    cpu) APP_PATH=/work ;;
    sleep) APP_PATH=/wait ;;
    *) echo "--handler: cpu or sleep, not $HANDLER" >&2; exit 2 ;;
esac

die() { echo "error: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
for tool in wrk curl sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk curl coreutils)"
done
[ "$NGINX" = 0 ] || command -v nginx >/dev/null || die "nginx is missing (apt-get install nginx, or --no-nginx)"
PYTHON="$REPO/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3
"$PYTHON" -c 'import granian' 2>/dev/null ||
    die "granian is missing for $PYTHON (pip install -e python-client)"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
if [ "$BUILD" = 1 ]; then
    (cd "$REPO" && cargo build --release -q -p berth-router -p log-collector)
fi
ROUTER_BIN="$TARGET_DIR/release/berth-router"
COLLECTOR_BIN="$TARGET_DIR/release/log-collector"
[ -x "$ROUTER_BIN" ] || die "$ROUTER_BIN not built (run without --no-build)"
[ "$ACCESS_LOG" = 0 ] || [ -x "$COLLECTOR_BIN" ] || die "$COLLECTOR_BIN not built (run without --no-build)"

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
        curl -sf -o /dev/null -H "Host: $2" "http://$1$APP_PATH" && return 0
        sleep 0.05
    done
    die "nothing answers on $1 (host $2): $(tail -5 "$WORK"/*.log)"
}

# listen_addr FILE KIND: the address of the `LISTEN KIND ADDR` line a service printed to
# FILE, once it has printed its last one (admin); empty if it did not within 5 s.
listen_addr() {
    local _
    for _ in $(seq 1 100); do
        grep -q '^LISTEN admin' "$1" 2>/dev/null && break
        sleep 0.05
    done
    awk -v k="$2" '$1 == "LISTEN" && $2 == k { print $3 }' "$1"
}

# --- the app --------------------------------------------------------------------------
APP_PORT=$(free_port)
PYTHONPATH="$REPO/tests/router" BACKEND_NAME=bench "$PYTHON" -m granian --interface wsgi \
    --host 127.0.0.1 --port "$APP_PORT" --workers "$WORKERS" --blocking-threads "$THREADS" \
    --no-ws --log-level warning \
    echoapp:application >"$WORK/granian.log" 2>&1 &
APP_PID=$!
PIDS+=($!)

# --- the log collector (the app's access log stream) -----------------------------------
LOGS_JSON=""
if [ "$ACCESS_LOG" = 1 ]; then
    LOG_TOKEN="bench-logs-$RANDOM$RANDOM"
    printf '[[app]]\nname = "bench"\ntoken = "%s"\nlog_rate = 10000000\n' "$LOG_TOKEN" >"$WORK/tenants.toml"
    "$COLLECTOR_BIN" --data-dir "$WORK/logs" --tenants "$WORK/tenants.toml" \
        --listen-json 127.0.0.1:0 --listen-syslog 127.0.0.1:0 --listen-http 127.0.0.1:0 \
        --listen-otlp 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        >"$WORK/collector.out" 2>"$WORK/collector.log" &
    COLLECTOR_PID=$!
    PIDS+=($!)
    JSON_ADDR=$(listen_addr "$WORK/collector.out" json)
    [ -n "$JSON_ADDR" ] || die "the log collector did not start: $(cat "$WORK/collector.log")"
    LOGS_JSON=$(printf ',"logs":{"addr":"%s","token":"%s"}' "$JSON_ADDR" "$LOG_TOKEN")
fi

# --- the router -----------------------------------------------------------------------
TOKEN="bench-control-$RANDOM$RANDOM"
HASH=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
printf 'control_tokens = ["%s"]\nverbosity = 0\nthreads = %s\n[app_defaults]\nmax_concurrent_requests = 10000\n' \
    "$HASH" "$ROUTER_THREADS" >"$WORK/router.toml"
"$ROUTER_BIN" --config "$WORK/router.toml" --data-dir "$WORK/data" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$WORK/router.out" 2>"$WORK/router.log" &
ROUTER_PID=$!
PIDS+=($!)
ROUTER_ADDR=$(listen_addr "$WORK/router.out" http)
ADMIN_ADDR=$(listen_addr "$WORK/router.out" admin)
[ -n "$ROUTER_ADDR" ] && [ -n "$ADMIN_ADDR" ] || die "the router did not start: $(cat "$WORK/router.log")"
wait_http "127.0.0.1:$APP_PORT" "127.0.0.1"
TABLE=$(printf '{"generation":1,"apps":[{"name":"bench","backends":["127.0.0.1:%s"]%s}]}' "$APP_PORT" "$LOGS_JSON")
curl -sf -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data "$TABLE" "http://$ADMIN_ADDR/v1/routes" >/dev/null || die "pushing the route table failed"
wait_http "$ROUTER_ADDR" "bench.localhost"

# --- the peer: nginx as a reverse proxy -------------------------------------------------
NGINX_PID=""
if [ "$NGINX" = 1 ]; then
    NGINX_PORT=$(free_port)
    mkdir -p "$WORK/nginx/logs"
    cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $( [ "$ROUTER_THREADS" = 0 ] && echo auto || echo "$ROUTER_THREADS");
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log $WORK/nginx/access.log combined buffer=64k flush=1s;
    upstream app { server 127.0.0.1:$APP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Request-Id \$request_id;
        }
    }
}
EOF
    nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx.log" &
    NGINX_PID=$!
    PIDS+=($!)
    wait_http "127.0.0.1:$NGINX_PORT" "bench.localhost"
fi
TARGETS="direct routed"
[ "$NGINX" = 0 ] || TARGETS="direct routed nginx"

# --- runs -----------------------------------------------------------------------------
# run_wrk direct|routed -> prints "RPS P99_MS"
run_wrk() {
    local url host
    case "$1" in
        direct) url="http://127.0.0.1:$APP_PORT$APP_PATH" host="127.0.0.1:$APP_PORT" ;;
        routed) url="http://$ROUTER_ADDR$APP_PATH" host="bench.localhost" ;;
        nginx) url="http://127.0.0.1:$NGINX_PORT$APP_PATH" host="bench.localhost" ;;
    esac
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
        /requests in/ { n = $1 }
        END { printf "%.0f %.2f %d\n", rps, p, n }' "$WORK/wrk.out"
}

# cpu_ticks PID -> utime + stime of the process and its children (all threads; granian runs
# its workers as child processes), in clock ticks
cpu_ticks() {
    [ -n "${1:-}" ] || { echo 0; return; }
    local p total=0
    for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="$TARGETS"; else order=$(echo "$TARGETS" | tr ' ' '\n' | tac | tr '\n' ' '); fi
    for target in $order; do
        # The "router" CPU column is the proxy under test: berth-router, or nginx (master and
        # workers) in the nginx rounds.
        proxy_pid=$ROUTER_PID
        [ "$target" = nginx ] && proxy_pid=$NGINX_PID
        a0=$(cpu_ticks "$APP_PID") r0=$(cpu_ticks "$proxy_pid") c0=$(cpu_ticks "${COLLECTOR_PID:-}")
        r=$(run_wrk "$target")
        a1=$(cpu_ticks "$APP_PID") r1=$(cpu_ticks "$proxy_pid") c1=$(cpu_ticks "${COLLECTOR_PID:-}")
        n=$(echo "$r" | awk '{ print $3 }')
        # CPU microseconds per request: app, router, collector
        cpu=$(awk -v n="$n" -v t="$TICK_US" -v a=$((a1 - a0)) -v r=$((r1 - r0)) -v c=$((c1 - c0)) \
            'BEGIN { n = (n > 0 ? n : 1); printf "%.0f %.0f %.0f", a * t / n, r * t / n, c * t / n }')
        RESULTS[$target]+="$r $cpu;"
        log "round $round: $target: $r $cpu (req/s, p99 ms, requests, CPU us/request: app proxy collector)"
    done
done

median() { tr ';' '\n' | awk -v col="$1" 'NF { print $col }' | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

GRANIAN_VERSION=$("$PYTHON" -c 'import granian; print(granian.__version__)')
d=$(echo "${RESULTS[direct]}" | median 1)
echo
echo "berth-router in front of granian $GRANIAN_VERSION (WSGI, $WORKERS worker(s) x $THREADS thread(s))," \
    "handler: $HANDLER ($APP_PATH), access log: $([ "$ACCESS_LOG" = 1 ] && echo "to a log-collector" || echo off)"
echo "wrk -t2 -c$CONNECTIONS, ${DURATION}s runs, $ROUNDS rounds alternating, medians;" \
    "load average at start $LOAD; $(nproc) CPUs; CPU in microseconds per request"
printf '%-14s %8s %8s %7s %9s %11s %9s\n' "" "req/s" "p99 ms" "ratio" "app CPU" "proxy CPU" "logs CPU"
for target in $TARGETS; do
    rps=$(echo "${RESULTS[$target]}" | median 1)
    p99=$(echo "${RESULTS[$target]}" | median 2)
    ratio=$(awk -v a="$rps" -v b="$d" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
    case "$target" in
        direct) name=direct ;;
        routed) name=berth-router ;;
        nginx) name=nginx ;;
    esac
    printf '%-14s %8s %8s %7s %9s %11s %9s\n' "$name" "$rps" "$p99" "$ratio" \
        "$(echo "${RESULTS[$target]}" | median 4)" "$(echo "${RESULTS[$target]}" | median 5)" \
        "$(echo "${RESULTS[$target]}" | median 6)"
done
r=$(echo "${RESULTS[routed]}" | median 1)
echo "ratio berth-router/direct: $(awk -v a="$r" -v b="$d" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')x (target >= 0.9x)"
