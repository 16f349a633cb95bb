#!/usr/bin/env bash
# Throughput and p99 of Berth's cache-server against Debian's memcached (both -t 2 -m 1024),
# in alternating rounds of the same cache-loadgen workload; prints per-round figures, medians
# and the ratios ours/memcached. Not part of the test command. See docs/benchmarks.md.
#
# Usage: bench/cache/run.sh [--rounds N] [--duration SECS] [--connections N] [--threads N]
#                           [--depth N] [--no-build] [--no-memaslap] [--harness-check]
# --harness-check runs a second memcached in place of cache-server, to check the harness.
set -euo pipefail
# shellcheck source=bench/cache/lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=5 DURATION=10 WARMUP=1 CONNS=50 DEPTH=1
# One load-generator thread by default: on 2 cores a second client thread oversubscribes the
# machine and the harness check (memcached vs memcached) gets much noisier (docs/benchmarks.md).
THREADS=1 KEYS=100000 VALUE=100 GET_RATIO=0.9
BUILD=1 MEMASLAP=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --connections) CONNS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --depth) DEPTH=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-memaslap) MEMASLAP=0; shift ;;
        --harness-check) OURS_AS_MEMCACHED=1; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
export OURS_AS_MEMCACHED=${OURS_AS_MEMCACHED:-0}
OUT="${OUT:-$REPO/target/bench-cache/run-$(date -u +%Y%m%dT%H%M%SZ)}"
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
echo "workload: $CONNS connections on $THREADS loadgen threads, depth $DEPTH, $KEYS keys," \
     "$VALUE-byte values, get ratio $GET_RATIO, ${WARMUP}s warm-up + ${DURATION}s per round, $ROUNDS rounds"
echo "note: the load generator runs on the same $(nproc) cores as the server under test"
[[ $OURS_AS_MEMCACHED == 1 ]] && echo "HARNESS CHECK: 'ours' is a second memcached, not cache-server"

start_server memcached 1024; MC_PID=$SERVER_PID; MC_ADDR=$SERVER_ADDR
start_server ours 1024; OURS_PID=$SERVER_PID; OURS_ADDR=$SERVER_ADDR
echo "memcached pid $MC_PID at $MC_ADDR; ours pid $OURS_PID at $OURS_ADDR"
echo

# One loadgen run against KIND for round R; appends "R KIND ops p50 p99 p999 hit errors cpu".
one_round() {
    local r=$1 kind=$2 addr pid json cpu0 cpu1 rc=0
    if [[ $kind == memcached ]]; then addr=$MC_ADDR pid=$MC_PID; else addr=$OURS_ADDR pid=$OURS_PID; fi
    cpu0=$(cpu_secs "$pid")
    json="$OUT/round$r-$kind.json"
    "$LOADGEN" --server "$addr" -c "$CONNS" -t "$THREADS" --depth "$DEPTH" -k "$KEYS" \
        --value-size "$VALUE" --get-ratio "$GET_RATIO" -d "$DURATION" --warmup "$WARMUP" \
        --seed "$r" --json >"$json" || rc=$?
    [[ $rc == 0 || $rc == 3 ]] || die "cache-loadgen failed against $kind (exit $rc)"
    cpu1=$(cpu_secs "$pid")
    printf '%s %s %s %s %s %s %s %s %s\n' "$r" "$kind" \
        "$(json_field ops_per_sec <"$json")" "$(json_field p50_us <"$json")" \
        "$(json_field p99_us <"$json")" "$(json_field p999_us <"$json")" \
        "$(json_field hit_ratio <"$json")" "$(json_field errors <"$json")" \
        "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", b - a}')" >>"$OUT/rounds.txt"
}

: >"$OUT/rounds.txt"
for r in $(seq 1 "$ROUNDS"); do
    # Alternate who goes first so slow drift on the shared machine hits both sides equally.
    if (( r % 2 )); then order="memcached ours"; else order="ours memcached"; fi
    for kind in $order; do
        log "round $r/$ROUNDS: $kind"
        one_round "$r" "$kind"
    done
done

printf '%-5s %-9s %10s %9s %9s %9s %9s %6s %8s\n' round server ops/s p50_us p99_us p999_us \
    hit_ratio errors cpu_s
sort -k1,1n -k2,2 "$OUT/rounds.txt" | while read -r r kind ops p50 p99 p999 hit err cpu; do
    printf '%-5s %-9s %10.0f %9s %9s %9s %9s %6s %8s\n' "$r" "$kind" "$ops" "$p50" "$p99" "$p999" "$hit" "$err" "$cpu"
done

col() { awk -v k="$1" -v c="$2" '$2 == k {print $c}' "$OUT/rounds.txt"; }
MC_OPS=$(col memcached 3 | median); OURS_OPS=$(col ours 3 | median)
MC_P99=$(col memcached 5 | median); OURS_P99=$(col ours 5 | median)
MC_P50=$(col memcached 4 | median); OURS_P50=$(col ours 4 | median)
# Ops per server CPU-second: less sensitive to the noisy shared machine than raw ops/s. The CPU
# time also covers preload and warm-up, so the absolute figure is understated; compare ratios.
eff() { awk -v k="$1" '$2 == k && $9 > 0 {printf "%.0f\n", $3 * '"$DURATION"' / $9}' "$OUT/rounds.txt" | median; }
MC_EFF=$(eff memcached); OURS_EFF=$(eff ours)
# Per-round ratios (paired rounds), then their median: robust to drift between rounds.
PAIRED_OPS=$(awk '{v[$1,$2] = $3} END {for (k in v) {split(k, p, SUBSEP); if (p[2] == "ours") printf "%.3f\n", v[p[1], "ours"] / v[p[1], "memcached"]}}' "$OUT/rounds.txt" | median)
PAIRED_P99=$(awk '{v[$1,$2] = $5} END {for (k in v) {split(k, p, SUBSEP); if (p[2] == "ours") printf "%.3f\n", v[p[1], "ours"] / v[p[1], "memcached"]}}' "$OUT/rounds.txt" | median)
TOTAL_ERR=$(awk '{s += $8} END {print s + 0}' "$OUT/rounds.txt")

verdict() { awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == ">=") ? (r >= t) : (r <= t); print ok ? "met" : "MISSED" }'; }
R_OPS=$(ratio "$OURS_OPS" "$MC_OPS"); R_P99=$(ratio "$OURS_P99" "$MC_P99")
echo
echo "medians over $ROUNDS rounds      memcached       ours   ours/memcached  target"
printf 'throughput (ops/s)         %10.0f %10.0f   %6s          >= 1.0x  %s\n' "$MC_OPS" "$OURS_OPS" "$R_OPS" "$(verdict "$R_OPS" '>=' 1.0)"
printf 'p99 latency (us)           %10.1f %10.1f   %6s          <= 1.0x  %s\n' "$MC_P99" "$OURS_P99" "$R_P99" "$(verdict "$R_P99" '<=' 1.0)"
printf 'p50 latency (us)           %10.1f %10.1f   %6s\n' "$MC_P50" "$OURS_P50" "$(ratio "$OURS_P50" "$MC_P50")"
printf 'ops per server CPU-second  %10.0f %10.0f   %6s\n' "$MC_EFF" "$OURS_EFF" "$(ratio "$OURS_EFF" "$MC_EFF")"
echo "median of per-round ratios: throughput $PAIRED_OPS, p99 $PAIRED_P99"
echo "errors over all rounds: $TOTAL_ERR"
(( TOTAL_ERR == 0 )) || echo "WARNING: errors seen; see $OUT/round*.json error_samples"

if [[ $MEMASLAP == 1 ]]; then
    MEMASLAP_BIN=$(command -v memcaslap || command -v memaslap || true)
    echo
    if [[ -z $MEMASLAP_BIN ]]; then
        echo "memaslap cross-check skipped: no memcaslap/memaslap (apt-get install libmemcached-tools)"
    else
        # memaslap insists on keys of at least 16 bytes; ours are 12 (key:%08d). Values and
        # the get/set mix match. It keeps its own key space (a 10k-key window per concurrency).
        printf 'key\n16 16 1\nvalue\n%s %s 1\ncmd\n0 %s\n1 %s\n' "$VALUE" "$VALUE" \
            "$(awk -v g="$GET_RATIO" 'BEGIN {print 1 - g}')" "$GET_RATIO" >"$OUT/memaslap.cfg"
        echo "cross-check: $(basename "$MEMASLAP_BIN") -T $THREADS -c $CONNS -t ${DURATION}s (16-byte keys), one run each"
        printf '%-9s %14s %16s\n' server memaslap_tps loadgen_median
        for kind in memcached ours; do
            if [[ $kind == memcached ]]; then addr=$MC_ADDR lg=$MC_OPS; else addr=$OURS_ADDR lg=$OURS_OPS; fi
            timeout $(( DURATION + 60 )) "$MEMASLAP_BIN" -s "$addr" -T "$THREADS" -c "$CONNS" \
                -t "${DURATION}s" -F "$OUT/memaslap.cfg" >"$OUT/memaslap-$kind.txt" 2>&1 || true
            tps=$(sed -n 's/.*TPS: \([0-9]*\).*/\1/p' "$OUT/memaslap-$kind.txt" | tail -n1)
            printf '%-9s %14s %16.0f\n' "$kind" "${tps:-failed}" "$lg"
        done
    fi
fi
echo
echo "raw results: $OUT"
