#!/usr/bin/env bash
# bench/blob/run.sh: Berth's blob-server against Debian's nginx (WebDAV PUT) on the same disk,
# side by side in one run: PUT and GET throughput of 4 KiB and 1 MiB objects with concurrent
# clients (wrk), their ratios, each server's CPU time per request, and the physical limits
# measured in the same run (fsync'd write bandwidth and rate of the disk, SHA-256 speed of the
# CPU).
#
#   bench/blob/run.sh [--duration S] [--rounds N] [--connections C] [--no-build]
#
# Our server acknowledges a PUT only after fsync (group commit for small objects); nginx does
# not fsync at all. Rounds alternate which server goes first; the summary reports medians.
# Needs: nginx (with the dav module, as Debian builds it), wrk, openssl, python3.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$REPO/bench/blob"
DURATION=10
ROUNDS=3
CONNECTIONS=16
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

die() { echo "error: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
missing_tools() {
    local tool
    for tool in nginx wrk openssl python3 dd curl; do
        command -v "$tool" >/dev/null || echo "$tool"
    done
}
if [ -n "$(missing_tools)" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # As root on Debian, install the peers the way the README's two commands install theirs.
    log "installing: $(missing_tools | tr '\n' ' ')"
    # shellcheck source=../../scripts/lib/setup.sh
    (source "$REPO/scripts/lib/setup.sh" && ensure_debian_packages nginx wrk openssl curl) >&2
fi
for tool in $(missing_tools); do
    die "$tool is missing (apt-get install nginx wrk openssl curl)"
done

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
if [ "$BUILD" = 1 ]; then
    (cd "$REPO" && cargo build --release -q -p blob-server)
fi
BLOB_BIN="$TARGET_DIR/release/blob-server"
[ -x "$BLOB_BIN" ] || die "$BLOB_BIN not built (run without --no-build)"

# Both servers store under one directory of the same disk.
WORK="$TARGET_DIR/bench-blob"
# ext4 without a journal skips inodes freed in the last minute when it allocates new ones
# (fs/ext4/ialloc.c, recently_deleted), so creating files right after the previous run deleted
# its few hundred thousand costs nginx (a file per PUT) up to 5x. Let them age first.
STAMP="$TARGET_DIR/bench-blob.cleaned"
if [ -e "$STAMP" ]; then
    age=$(( $(date +%s) - $(stat -c %Y "$STAMP") ))
    if [ "$age" -lt 65 ]; then
        log "waiting $((65 - age)) s: the previous run's files were deleted ${age} s ago"
        sleep $((65 - age))
    fi
fi
rm -rf "$WORK"
mkdir -p "$WORK/ours" "$WORK/nginx/root" "$WORK/nginx/tmp"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
    sync
    touch "$STAMP"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    local _
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listening on port $1"
}

# --- physical limits ------------------------------------------------------------------
log "measuring the disk and the CPU"
FSYNC_MBS=$(dd if=/dev/zero of="$WORK/dd.bin" bs=1M count=256 conv=fsync 2>&1 |
    awk '/copied/ { print $(NF-1), $NF }')
FSYNC_4K=$(dd if=/dev/zero of="$WORK/dd4k.bin" bs=4k count=300 oflag=dsync 2>&1 |
    awk '/copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^s,$/) print int(300 / $(i-1)) }')
rm -f "$WORK/dd.bin" "$WORK/dd4k.bin"
SHA_MBS=$(openssl speed -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null |
    awk '/^sha256/ { v = $NF; sub(/k$/, "", v); printf "%.0f", v / 1000 }')

# --- servers --------------------------------------------------------------------------
TOKEN="bench-token-$(date +%s)"
cat >"$WORK/tenants.toml" <<EOF
[[app]]
name = "bench"
token = "$TOKEN"
blob_bytes = "1TiB"
max_connections = 1024
EOF
OURS_PORT=$(free_port)
OURS_ADMIN=$(free_port)
"$BLOB_BIN" --data-dir "$WORK/ours/data" --tenants "$WORK/tenants.toml" \
    --listen "127.0.0.1:$OURS_PORT" --admin-listen "127.0.0.1:$OURS_ADMIN" \
    >"$WORK/ours.log" 2>&1 &
OURS_PID=$!
PIDS+=($!)

NGINX_PORT=$(free_port)
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
user root root;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp;
    client_max_body_size 0;
    client_body_buffer_size 1m;
    sendfile on;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/nginx/root;
        location / {
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw;
        }
    }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!
PIDS+=($!)
wait_port "$OURS_PORT"
wait_port "$NGINX_PORT"
# nginx serves from its worker processes (children of the master started above).
NGINX_WORKERS=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
[ -n "$NGINX_WORKERS" ] || die "no nginx worker processes"
CLK_TCK=$(getconf CLK_TCK)
NGINX_VERSION=$(nginx -v 2>&1 | sed 's/.*nginx\///')

# --- seed the objects the GET runs read -----------------------------------------------
seed() { # seed PORT PREFIX AUTH SIZE COUNT
    python3 - "$@" <<'PY'
import http.client, sys
port, prefix, auth, size, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
c = http.client.HTTPConnection("127.0.0.1", int(port))
headers = {"Authorization": auth} if auth else {}
for i in range(count):
    body = (b"seed-%d-" % i).ljust(32, b".") + b"s" * (size - 32)
    c.request("PUT", f"{prefix}seed-{i}", body=body, headers=headers)
    r = c.getresponse(); r.read()
    if r.status >= 300:
        sys.exit(f"seeding {prefix}seed-{i} on port {port}: HTTP {r.status}")
PY
}
declare -A SEEDS=([4096]=2000 [1048576]=64)
for size in 4096 1048576; do
    seed "$OURS_PORT" "/buckets/b$size/keys/" "Bearer $TOKEN" "$size" "${SEEDS[$size]}"
    mkdir -p "$WORK/nginx/root/b$size"
    seed "$NGINX_PORT" "/b$size/" "" "$size" "${SEEDS[$size]}"
done

# --- runs -----------------------------------------------------------------------------
# CPU time (user + system, clock ticks) the processes PIDS... have used so far.
cpu_ticks() {
    local p t=0
    for p in "$@"; do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}

# run_wrk SERVER MODE SIZE ROUND -> prints "RPS P99_MS CPU_US" (the server's CPU time per
# request, which moves less than throughput when other tenants slow the machine down)
run_wrk() {
    local server=$1 mode=$2 size=$3 round=$4 port prefix auth pids c0 c1
    if [ "$server" = ours ]; then
        port=$OURS_PORT prefix="/buckets/b$size/keys/" auth="Bearer $TOKEN" pids=$OURS_PID
    else
        port=$NGINX_PORT prefix="/b$size/" auth="" pids=$NGINX_WORKERS
    fi
    # Dirty pages left by earlier runs (nginx never fsyncs) are written back first, so no run
    # is throttled by another's writeback.
    sync
    # shellcheck disable=SC2086 # one argument per process id
    c0=$(cpu_ticks $pids)
    BENCH_MODE=$mode BENCH_PREFIX=$prefix BENCH_SIZE=$size BENCH_KEYS=${SEEDS[$size]} \
        BENCH_AUTH=$auth BENCH_RUN="r$round" \
        wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$HERE/wrk.lua" \
        "http://127.0.0.1:$port/" 2>"$WORK/wrk.err" >"$WORK/wrk.out" || {
        cat "$WORK/wrk.err" >&2
        die "wrk failed against $server"
    }
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $pids)
    if grep -q "Non-2xx" "$WORK/wrk.out"; then
        cat "$WORK/wrk.out" "$WORK/wrk.err" >&2
        # wrk counts failed answers but does not show them: show one request of the kind.
        echo "# one such request by curl:" >&2
        if [ "$mode" = get ]; then
            curl -sS -i ${auth:+-H "Authorization: $auth"} "http://127.0.0.1:$port${prefix}seed-0" \
                2>&1 | head -c 2000 >&2 || true
        else
            head -c "$size" /dev/zero | curl -sS -i -X PUT --data-binary @- \
                ${auth:+-H "Authorization: $auth"} "http://127.0.0.1:$port${prefix}diagnose" \
                2>&1 | head -c 2000 >&2 || true
        fi
        die "$server answered errors during $mode $size"
    fi
    awk -v ticks=$((c1 - c0)) -v hz="$CLK_TCK" '
        /requests in/ { n = $1 }
        /Requests\/sec:/ { rps = $2 }
        /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); p = v / 1000 }
                   else if (v ~ /ms$/) { sub(/ms$/, "", v); p = v }
                   else if (v ~ /s$/) { sub(/s$/, "", v); p = v * 1000 } }
        END { printf "%.0f %.2f %.1f\n", rps, p, (n > 0 ? ticks / hz * 1e6 / n : 0) }' "$WORK/wrk.out"
}

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="nginx ours"; else order="ours nginx"; fi
    for size in 4096 1048576; do
        for mode in put get; do
            for server in $order; do
                r=$(run_wrk "$server" "$mode" "$size" "$round")
                RESULTS["$server $mode $size"]+="$r;"
                log "round $round: $server $mode $size: $r (req/s, p99 ms, server CPU µs/req)"
            done
        done
    done
done

median() { tr ';' '\n' | awk -v col="$1" 'NF { print $col }' | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "blob-server vs nginx $NGINX_VERSION (WebDAV PUT, no fsync), wrk -t2 -c$CONNECTIONS, ${DURATION}s runs, $ROUNDS rounds, medians"
echo "disk: fsync'd sequential write $FSYNC_MBS; fsync'd 4 KiB writes ${FSYNC_4K}/s; CPU: SHA-256 ${SHA_MBS} MB/s"
printf '%-10s %12s %12s %8s %14s %14s %10s %10s\n' "op" "ours req/s" "nginx req/s" "ratio" \
    "ours p99 ms" "nginx p99 ms" "ours µs" "nginx µs"
for size in 4096 1048576; do
    for mode in put get; do
        o=$(echo "${RESULTS["ours $mode $size"]}" | median 1)
        n=$(echo "${RESULTS["nginx $mode $size"]}" | median 1)
        op=$(echo "${RESULTS["ours $mode $size"]}" | median 2)
        np=$(echo "${RESULTS["nginx $mode $size"]}" | median 2)
        oc=$(echo "${RESULTS["ours $mode $size"]}" | median 3)
        nc=$(echo "${RESULTS["nginx $mode $size"]}" | median 3)
        label="$mode $([ "$size" = 4096 ] && echo 4KiB || echo 1MiB)"
        ratio=$(awk -v a="$o" -v b="$n" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        printf '%-10s %12s %12s %7sx %14s %14s %10s %10s\n' "$label" "$o" "$n" "$ratio" "$op" "$np" \
            "$oc" "$nc"
    done
done
echo "targets: PUT 4KiB >= 1.0x, GET 4KiB >= 1.0x, GET 1MiB >= 1.0x, PUT 1MiB >= 0.8x"
echo "µs: CPU time (user + system) of the server's own processes per request, median"
