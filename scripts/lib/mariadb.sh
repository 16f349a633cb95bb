# scripts/lib/mariadb.sh: a MariaDB server for Berth, sourced by scripts/run and scripts/test.
#
# ensure_mariadb SCRATCH_DIR uses the machine's server on 127.0.0.1:3306 when root logs in
# there over TCP without a password; otherwise it starts a private mariadbd with its data in
# SCRATCH_DIR/mariadb (created with mariadb-install-db on first use) on 127.0.0.1:3407. It
# sets MARIADB_HOST and MARIADB_PORT, and MARIADB_PRIVATE_PID when it started one (stop it
# with stop_private_mariadb). Needs the mariadb-server and mariadb-client packages.
# shellcheck shell=bash

MARIADB_PRIVATE_PORT="${MARIADB_PRIVATE_PORT:-3407}"
MARIADB_PRIVATE_PID=""

mariadb_answers() { # HOST PORT
    mariadb --no-defaults -h "$1" -P "$2" -u root --connect-timeout=2 -e 'SELECT 1' \
        >/dev/null 2>&1
}

ensure_mariadb() {
    local scratch="$1"
    if mariadb_answers 127.0.0.1 3306; then
        MARIADB_HOST=127.0.0.1 MARIADB_PORT=3306
        echo "    using the MariaDB server on 127.0.0.1:3306"
        return 0
    fi
    local dir="$scratch/mariadb" port="$MARIADB_PRIVATE_PORT"
    MARIADB_HOST=127.0.0.1 MARIADB_PORT="$port"
    if mariadb_answers 127.0.0.1 "$port"; then
        echo "    using the private MariaDB already running on 127.0.0.1:$port"
        return 0
    fi
    command -v mariadbd >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
    mkdir -p "$dir"
    if [ ! -d "$dir/data/mysql" ]; then
        echo "    creating a private MariaDB data directory in $dir/data"
        rm -rf "$dir/data"
        mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
            --auth-root-authentication-method=normal --skip-test-db \
            >"$dir/install.log" 2>&1 || {
            cat "$dir/install.log" >&2
            return 1
        }
    fi
    echo "    starting a private mariadbd on 127.0.0.1:$port (log: $dir/error.log)"
    mariadbd --no-defaults --datadir="$dir/data" --user="$(id -un)" \
        --bind-address=127.0.0.1 --port="$port" --socket="$dir/mariadbd.sock" \
        --pid-file="$dir/mariadbd.pid" --log-error="$dir/error.log" \
        --max-allowed-packet=64M >/dev/null 2>&1 &
    MARIADB_PRIVATE_PID=$!
    local deadline=$((SECONDS + 60))
    until mariadb_answers 127.0.0.1 "$port"; do
        if ! kill -0 "$MARIADB_PRIVATE_PID" 2>/dev/null; then
            echo "mariadbd exited during startup; its log:" >&2
            tail -n 30 "$dir/error.log" >&2 || true
            MARIADB_PRIVATE_PID=""
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "mariadbd did not answer on 127.0.0.1:$port within 60s" >&2
            return 1
        fi
        sleep 0.2
    done
}

stop_private_mariadb() {
    [ -n "$MARIADB_PRIVATE_PID" ] || return 0
    kill -TERM "$MARIADB_PRIVATE_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$MARIADB_PRIVATE_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    kill -KILL "$MARIADB_PRIVATE_PID" 2>/dev/null || true
    MARIADB_PRIVATE_PID=""
}
