#!/usr/bin/env bash
# Throughput and p99 of sysbench oltp_point_select and oltp_read_only (8 threads, sysbench's
# default server-side prepared statements) directly against MariaDB and through query-proxy,
# in alternating rounds, plus the proxy's CPU time per query (from /proc/<pid>/stat).
#
#   bench/query/run.sh [--rounds N] [--time SECONDS] [--threads N] [--table-size N] [--proxy-threads N]
#                      [--backend-socket PATH] [--bin PATH]
#
# --proxy-threads is the proxy's `threads` setting (default 0: the proxy's own default).
# --backend-socket PATH: the proxy reaches MariaDB over its Unix socket (sysbench's direct runs
#   stay on TCP, as apps reach the proxy over TCP).
# --bin PATH runs that query-proxy binary instead of building the working tree (to compare two).
#
# Needs: sysbench (apt-get install sysbench), MariaDB on $BENCH_MARIADB (default
# 127.0.0.1:3306) with root logging in over TCP without a password (or set
# BERTH_QUERY_ADMIN_PASSWORD), and builds query-proxy itself. Stops exactly what it started.
set -euo pipefail

ROUNDS=3
TIME=10
THREADS=8
TABLE_SIZE=100000
TABLES=4
PROXY_THREADS=0
BACKEND_SOCKET=
BIN=
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --time) TIME=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --table-size) TABLE_SIZE=$2; shift 2 ;;
        --proxy-threads) PROXY_THREADS=$2; shift 2 ;;
        --backend-socket) BACKEND_SOCKET=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        -h|--help) sed -n 2,16p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MARIADB=${BENCH_MARIADB:-127.0.0.1:3306}
DB_HOST=${MARIADB%:*}
DB_PORT=${MARIADB#*:}
command -v sysbench >/dev/null || { echo "sysbench is missing: apt-get install sysbench" >&2; exit 2; }

if [ -z "$BIN" ]; then
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    (cd "$ROOT" && cargo build --release -p query-proxy >&2)
    BIN=$TARGET/release/query-proxy
fi

WORK=$(mktemp -d)
APP=bench$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export BERTH_QUERY_BACKEND_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
export BERTH_QUERY_ADMIN_PASSWORD=${BERTH_QUERY_ADMIN_PASSWORD:-}
NATIVE=$(printf '%s' "$TOKEN" | openssl sha1 -binary | openssl sha1 -hex | awk '{print toupper($NF)}')
SHA=$(printf '%s' "$TOKEN" | sha256sum | awk '{print $1}')
cat > "$WORK/tenants.toml" <<TOML
[[app]]
name = "$APP"
tokens = [{ sha256 = "$SHA", mysql_native = "*$NATIVE" }]
max_connections = 64
statement_timeout = "60s"
TOML
cat > "$WORK/proxy.toml" <<TOML
backend = "${BACKEND_SOCKET:-$MARIADB}"
threads = ${PROXY_THREADS}
TOML
DB=app_$APP
PROXY_PID=

cleanup() {
    if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi
    "$BIN" --config "$WORK/proxy.toml" deprovision "$APP" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" --config "$WORK/proxy.toml" provision "$APP" >&2
"$BIN" --config "$WORK/proxy.toml" --tenants "$WORK/tenants.toml" --listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --data-dir "$WORK/data" > "$WORK/proxy.out" 2> "$WORK/proxy.err" &
PROXY_PID=$!
for _ in $(seq 100); do grep -q '^LISTEN mysql' "$WORK/proxy.out" 2>/dev/null && break; sleep 0.1; done
PROXY_ADDR=$(awk '/^LISTEN mysql/ {print $3}' "$WORK/proxy.out")
[ -n "$PROXY_ADDR" ] || { echo "query-proxy did not start:" >&2; cat "$WORK/proxy.err" >&2; exit 1; }
PROXY_PORT=${PROXY_ADDR##*:}

COMMON=(--db-driver=mysql --mysql-db="$DB" --tables=$TABLES --table-size=$TABLE_SIZE --threads=$THREADS --percentile=99)
DIRECT=(--mysql-host="$DB_HOST" --mysql-port="$DB_PORT" --mysql-user=root --mysql-password="$BERTH_QUERY_ADMIN_PASSWORD")
PROXIED=(--mysql-host=127.0.0.1 --mysql-port="$PROXY_PORT" --mysql-user="$APP" --mysql-password="$TOKEN")

echo "preparing $TABLES tables of $TABLE_SIZE rows in $DB (through the proxy)..." >&2
sysbench oltp_read_only "${COMMON[@]}" "${PROXIED[@]}" prepare > "$WORK/prepare.log"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$PROXY_PID/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# run WORKLOAD TARGET -> "qps p99_ms queries"
run() {
    local workload=$1 target=$2 out
    local -n conn=$target
    out=$(sysbench "$workload" "${COMMON[@]}" "${conn[@]}" --time="$TIME" --report-interval=0 run)
    awk '/queries:/ && /per sec/ {gsub(/\(/, "", $3); q=$3; total=$2}
         /99th percentile:/ {p=$3}
         END {printf "%s %s %s\n", q, p, total}' <<<"$out"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

printf '\n%-18s %12s %12s %7s %10s %10s %11s %16s\n' workload "direct qps" "proxy qps" ratio "direct p99" "proxy p99" "added p99" "proxy CPU/query"
for workload in oltp_point_select oltp_read_only; do
    : > "$WORK/direct"; : > "$WORK/proxy"; : > "$WORK/cpu"
    run "$workload" DIRECT > /dev/null  # warm-up: buffer pool, connections
    for r in $(seq "$ROUNDS"); do
        run "$workload" DIRECT >> "$WORK/direct"
        before=$(cpu_ticks)
        line=$(run "$workload" PROXIED)
        after=$(cpu_ticks)
        echo "$line" >> "$WORK/proxy"
        total=$(awk '{print $3}' <<<"$line")
        awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$total" 'BEGIN {printf "%.2f\n", t / hz / n * 1e6}' >> "$WORK/cpu"
    done
    dq=$(awk '{print $1}' "$WORK/direct" | median); pq=$(awk '{print $1}' "$WORK/proxy" | median)
    dp=$(awk '{print $2}' "$WORK/direct" | median); pp=$(awk '{print $2}' "$WORK/proxy" | median)
    cpu=$(median < "$WORK/cpu")
    printf '%-18s %12.0f %12.0f %6.2fx %8.2fms %8.2fms %9.2fms %13.1f µs\n' "$workload" "$dq" "$pq" \
        "$(awk -v a="$pq" -v b="$dq" 'BEGIN {print a / b}')" "$dp" "$pp" \
        "$(awk -v a="$pp" -v b="$dp" 'BEGIN {print a - b}')" "$cpu"
    echo "  rounds (qps p99 queries): direct [$(tr '\n' ';' < "$WORK/direct")] proxy [$(tr '\n' ';' < "$WORK/proxy")]" >&2
done
echo
echo "sysbench: --threads=$THREADS --time=$TIME --tables=$TABLES --table-size=$TABLE_SIZE, $ROUNDS alternating rounds, medians; proxy threads=$PROXY_THREADS (0: its default); proxy to MariaDB over ${BACKEND_SOCKET:-TCP $MARIADB}; proxy CPU = utime+stime of the proxy process / queries"
