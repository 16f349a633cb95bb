#!/usr/bin/env bash
# Resident memory per item: start each server with -m 1024 (-t 2), load 1,000,000 items of
# 100-byte values (keys key:%08d) with cache-loadgen --load-only, check a sample reads back and
# that stats curr_items is exactly 1,000,000 (nothing evicted), and compare VmRSS before/after.
# Not part of the test command. See docs/benchmarks.md.
#
# Usage: bench/cache/memory.sh [--items N] [--value-size B] [--rounds N] [--no-build]
#                              [--harness-check]
set -euo pipefail
# shellcheck source=bench/cache/lib.sh
source "$(dirname "$0")/lib.sh"

ITEMS=1000000 VALUE=100 ROUNDS=1 BUILD=1 VERIFY=10000
while [[ $# -gt 0 ]]; do
    case $1 in
        --items) ITEMS=$2; shift 2 ;;
        --value-size) VALUE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --harness-check) OURS_AS_MEMCACHED=1; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
export OURS_AS_MEMCACHED=${OURS_AS_MEMCACHED:-0}
OUT="${OUT:-$REPO/target/bench-cache/memory-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
trap cleanup EXIT

cd "$REPO"
if [[ $BUILD == 1 ]]; then
    if [[ $OURS_AS_MEMCACHED == 1 ]]; then
        cargo build --release -p cache-loadgen
    else
        cargo build --release -p cache-server -p cache-loadgen
    fi
fi
[[ -x $LOADGEN ]] || die "$LOADGEN missing (run without --no-build)"
command -v "$MEMCACHED_BIN" >/dev/null || die "memcached not found: apt-get install memcached"

machine_summary
echo "workload: $ITEMS items, 12-byte keys, $VALUE-byte values, -m 1024 -t 2, $ROUNDS round(s)"
[[ $OURS_AS_MEMCACHED == 1 ]] && echo "HARNESS CHECK: 'ours' is a second memcached, not cache-server"
echo

# One fresh server of KIND: load, check, measure; appends "R KIND before_kb after_kb items bytes".
measure() {
    local r=$1 kind=$2 before after stats items evictions json rc=0
    start_server "$kind" 1024
    sleep 0.5  # let start-up allocations settle before the baseline
    before=$(rss_kb "$SERVER_PID")
    json="$OUT/round$r-$kind.json"
    "$LOADGEN" --server "$SERVER_ADDR" --load-only -k "$ITEMS" --value-size "$VALUE" \
        --verify "$VERIFY" --json >"$json" || rc=$?
    [[ $rc == 0 ]] || die "load into $kind failed (exit $rc): $(tr -d '\n' <"$json")"
    sleep 0.5
    after=$(rss_kb "$SERVER_PID")
    stats=$(server_stats "$SERVER_ADDR")
    items=$(stat_value curr_items <<<"$stats")
    evictions=$(stat_value evictions <<<"$stats")
    [[ $items == "$ITEMS" ]] || die "$kind holds curr_items=$items, expected $ITEMS (evictions=$evictions)"
    [[ ${evictions:-0} == 0 ]] || die "$kind evicted $evictions items"
    echo "$r $kind $before $after $items $(stat_value bytes <<<"$stats")" >>"$OUT/memory.txt"
    log "$kind: RSS ${before} KiB -> ${after} KiB, curr_items $items, verified $(json_field verify_ok <"$json")/$VERIFY"
    stop_server "$SERVER_PID"
}

: >"$OUT/memory.txt"
for r in $(seq 1 "$ROUNDS"); do
    if (( r % 2 )); then order="memcached ours"; else order="ours memcached"; fi
    for kind in $order; do measure "$r" "$kind"; done
done

awk 'BEGIN {
        printf "%-5s %-9s %14s %14s %9s %12s %13s %11s\n", "round", "server", "rss_before", "rss_after", "items", "stats_bytes", "delta_B/item", "rss_B/item"
    }
    {
        printf "%-5s %-9s %10d KiB %10d KiB %9d %12s %13.1f %11.1f\n", $1, $2, $3, $4, $5, $6, ($4 - $3) * 1024 / $5, $4 * 1024 / $5
    }' "$OUT/memory.txt"

per_item() { awk -v k="$1" -v c="$2" '$2 == k { print (c == "delta" ? ($4 - $3) : $4) * 1024 / $5 }' "$OUT/memory.txt" | median; }
MC_DELTA=$(per_item memcached delta); OURS_DELTA=$(per_item ours delta)
MC_RSS=$(per_item memcached rss); OURS_RSS=$(per_item ours rss)
R_RSS=$(ratio "$OURS_RSS" "$MC_RSS"); R_DELTA=$(ratio "$OURS_DELTA" "$MC_DELTA")
verdict() { awk -v r="$1" 'BEGIN { print (r <= 0.8) ? "met" : "MISSED" }'; }
echo
echo "bytes per item (median)            memcached       ours   ours/memcached  target"
printf 'RSS after load / items          %10.1f %10.1f   %6s          <= 0.8x  %s\n' "$MC_RSS" "$OURS_RSS" "$R_RSS" "$(verdict "$R_RSS")"
printf '(RSS after - before) / items    %10.1f %10.1f   %6s          <= 0.8x  %s\n' "$MC_DELTA" "$OURS_DELTA" "$R_DELTA" "$(verdict "$R_DELTA")"
echo
echo "raw results: $OUT"
