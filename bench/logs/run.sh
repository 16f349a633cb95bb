#!/usr/bin/env bash
# Berth's log-collector against Debian's rsyslog (imtcp in, omfile out): the same load of
# 200-byte octet-counted RFC 5424 events over several TCP connections into each, events/s
# end to end (ours counted only once fsynced by its group commit; rsyslog does no fsync), the
# ratio, and our live-tail latency p99 while ingesting. Not part of the test command.
#
# Usage: bench/logs/run.sh [--connections N] [--events N] [--rounds N] [--no-build]
# Needs: apt-get install rsyslog
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=1
ARGS=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if [[ $BUILD == 1 ]]; then
    (cd "$REPO" && cargo build --release -p log-collector)
fi
command -v rsyslogd >/dev/null || [[ -x /usr/sbin/rsyslogd ]] || {
    echo "rsyslogd not found: apt-get install rsyslog" >&2; exit 1; }
OUT="$TARGET/bench-logs"
mkdir -p "$OUT"
exec python3 "$REPO/bench/logs/bench.py" --collector "$TARGET/release/log-collector" \
    --work "$OUT" "${ARGS[@]}"
