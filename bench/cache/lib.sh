# Shared helpers for bench/cache/*.sh: start and stop the two servers, read their memory and
# stats, and pull numbers out of cache-loadgen's flat JSON. Sourced, not run.
# shellcheck shell=bash
# Variables set here (LOADGEN, SERVER_PID, SERVER_ADDR) are read by the scripts that source it.
# shellcheck disable=SC2034

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOADGEN="$REPO/target/release/cache-loadgen"
OURS_BIN="${OURS_BIN:-$REPO/target/release/cache-server}"
MEMCACHED_BIN="${MEMCACHED_BIN:-memcached}"
STARTED_PIDS=()

die() { echo "error: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

# Stops only the servers this script started, by pid.
cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}

# A TCP port nothing listens on (random, checked with ss).
free_port() {
    local p _
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        if [[ -z $(ss -ltnH "sport = :$p" 2>/dev/null) ]]; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

# Waits until host:port accepts TCP connections.
wait_port() {
    local host=$1 port=$2 _
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "nothing listening on $host:$port after 10 s"
}

# memcached refuses to run as root without -u; drop to its Debian user when there is one.
memcached_user_args() {
    if [[ $EUID -eq 0 ]]; then
        if id memcache >/dev/null 2>&1; then echo "-u memcache"; else echo "-u nobody"; fi
    fi
}

# start_memcached MEGABYTES -> sets SERVER_PID and SERVER_ADDR.
start_memcached() {
    local mb=$1 port
    port=$(free_port)
    # shellcheck disable=SC2046
    "$MEMCACHED_BIN" $(memcached_user_args) -t 2 -m "$mb" -p "$port" -U 0 -l 127.0.0.1 &
    SERVER_PID=$!
    STARTED_PIDS+=("$SERVER_PID")
    SERVER_ADDR="127.0.0.1:$port"
    wait_port 127.0.0.1 "$port"
}

# start_ours MEGABYTES -> sets SERVER_PID and SERVER_ADDR from the "LISTEN memcache ADDR" line.
start_ours() {
    local mb=$1 out _ line
    [[ -x $OURS_BIN ]] || die "$OURS_BIN not built"
    out=$(mktemp)
    "$OURS_BIN" -t 2 -m "$mb" -p 0 -U 0 --admin-listen 127.0.0.1:0 >"$out" &
    SERVER_PID=$!
    STARTED_PIDS+=("$SERVER_PID")
    SERVER_ADDR=
    for _ in $(seq 1 100); do
        line=$(grep -m1 '^LISTEN memcache ' "$out" || true)
        if [[ -n $line ]]; then
            SERVER_ADDR=${line#LISTEN memcache }
            break
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || die "cache-server exited; its output: $(cat "$out")"
        sleep 0.1
    done
    rm -f "$out"
    [[ -n $SERVER_ADDR ]] || die "cache-server printed no 'LISTEN memcache' line in 10 s"
    wait_port "${SERVER_ADDR%:*}" "${SERVER_ADDR##*:}"
}

# start_server KIND MEGABYTES, KIND = memcached | ours. OURS_AS_MEMCACHED=1 makes "ours" a
# second memcached, to check the harness itself before cache-server exists.
start_server() {
    case $1 in
        memcached) start_memcached "$2" ;;
        ours) if [[ ${OURS_AS_MEMCACHED:-0} == 1 ]]; then start_memcached "$2"; else start_ours "$2"; fi ;;
        *) die "unknown server kind $1" ;;
    esac
}

# stop_server PID
stop_server() {
    local pid=$1 keep=() p
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${STARTED_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    STARTED_PIDS=("${keep[@]}")
}

# Resident set size of PID in KiB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# user+system CPU seconds PID has used so far.
cpu_secs() {
    local ticks
    ticks=$(getconf CLK_TCK)
    # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    sed 's/^.*) //' "/proc/$1/stat" | awk -v t="$ticks" '{printf "%.2f", ($12 + $13) / t}'
}

# `stats` of host:port as "name value" lines.
server_stats() {
    local host=${1%:*} port=${1##*:} line
    exec 3<>"/dev/tcp/$host/$port"
    printf 'stats\r\n' >&3
    while IFS= read -r -t 5 line <&3; do
        line=${line%$'\r'}
        [[ $line == END ]] && break
        [[ $line == STAT\ * ]] && echo "${line#STAT }"
    done
    exec 3>&-
}

# stat_value NAME < stats output
stat_value() { awk -v n="$1" '$1 == n {print $2}'; }

# json_field NAME < loadgen JSON (flat object, numbers only for the fields read here).
json_field() { sed -n "s/^ *\"$1\": *\([-0-9.eE+]*\).*/\1/p" | head -n1; }

# median of the numbers on stdin.
median() {
    sort -g | awk '{a[NR] = $1} END { if (NR == 0) print "nan"; else if (NR % 2) printf "%.3f\n", a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ratio A B, printed with 3 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.3f\n", a / b }'; }

machine_summary() {
    echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r)"
    echo "memcached: $("$MEMCACHED_BIN" -V 2>/dev/null || echo missing)"
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
}
