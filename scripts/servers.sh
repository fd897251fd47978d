#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis servers on 127.0.0.1, for the tests that need real servers.
#
#   scripts/servers.sh start DIR && . DIR/env   # DIR: e.g. "$(mktemp -d)"; or, interactively,
#   eval "$(scripts/servers.sh start DIR)"      # (eval ignores a failed start: check its output)
#   python -m pytest tests/test_postgres_store.py
#   scripts/servers.sh restart-postgres DIR  # `pg_ctl restart -m immediate` (a server crash)
#   scripts/servers.sh stop DIR              # stops both by pid, removes DIR
#
# Installs nothing: it runs Debian's `postgresql` and `redis-server` packages (apt-get install
# -y --no-install-recommends postgresql redis-server). `start` prints the `export` lines of
# POCKETFLOW_STREAM_POSTGRES_URL, POCKETFLOW_STREAM_REDIS_URL and POCKETFLOW_STREAM_SERVERS_DIR
# (also kept in DIR/env). Both servers listen on 127.0.0.1 only, on free ports, with their data
# in DIR; PostgreSQL trusts connections from loopback (its only listener) and runs as the
# `postgres` user (initdb refuses root).
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|restart-postgres DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
command="$1"
dir="$2"

pg_bin() {
    # Debian keeps the server binaries in /usr/lib/postgresql/<version>/bin: take the newest.
    local found
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -z "$found" ] || [ ! -x "$found/initdb" ]; then
        echo "servers.sh: no PostgreSQL server found in /usr/lib/postgresql/*/bin;" \
            "install it: apt-get install -y --no-install-recommends postgresql" >&2
        exit 1
    fi
    echo "$found"
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"  # not root: run as ourselves (the data directory is ours)
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_gone() {  # wait_gone PID: up to ~10 s for the process to exit, then SIGKILL it
    local pid="$1" tries=0
    while kill -0 "$pid" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ]; then
            kill -KILL "$pid" 2>/dev/null || true
            return
        fi
        sleep 0.1
    done
}

start() {
    command -v redis-server >/dev/null || {
        echo "servers.sh: redis-server not found; install it:" \
            "apt-get install -y --no-install-recommends redis-server" >&2
        exit 1
    }
    local bin pg_port redis_port
    bin="$(pg_bin)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    chmod 755 "$dir"
    mkdir -p "$dir/pgdata" "$dir/pgsock"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir/pgdata" "$dir/pgsock"
    fi
    chmod 700 "$dir/pgdata"
    if ! as_postgres test -w "$dir/pgdata"; then
        echo "servers.sh: the postgres user cannot reach $dir/pgdata: every folder above DIR" \
            "must be searchable by it (use a fresh \`mktemp -d\` as DIR, not a folder inside one)" >&2
        exit 1
    fi

    as_postgres "$bin/initdb" -D "$dir/pgdata" -U postgres --auth=trust -E UTF8 --locale=C \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    pg_port="$(free_port)"
    as_postgres "$bin/pg_ctl" -D "$dir/pgdata" -l "$dir/pgdata/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$dir/pgsock" \
        start >"$dir/pg_ctl.log" 2>&1 || {
        cat "$dir/pg_ctl.log" "$dir/pgdata/server.log" >&2
        exit 1
    }

    redis_port="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" --logfile "$dir/redis.log"
    local tries=0
    until [ -s "$dir/redis.pid" ] && python3 - "$redis_port" <<'EOF'
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
EOF
    do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ]; then
            echo "servers.sh: redis-server did not answer on 127.0.0.1:$redis_port" >&2
            cat "$dir/redis.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done

    {
        echo "export POCKETFLOW_STREAM_POSTGRES_URL=postgresql://postgres@127.0.0.1:$pg_port/postgres"
        echo "export POCKETFLOW_STREAM_REDIS_URL=redis://127.0.0.1:$redis_port/0"
        echo "export POCKETFLOW_STREAM_SERVERS_DIR=$dir"
    } >"$dir/env"
    cat "$dir/env"
}

restart_postgres() {
    local bin
    bin="$(pg_bin)"
    as_postgres "$bin/pg_ctl" -D "$dir/pgdata" -l "$dir/pgdata/server.log" -w -t 60 \
        -m immediate restart >>"$dir/pg_ctl.log" 2>&1 || {
        cat "$dir/pg_ctl.log" >&2
        exit 1
    }
}

stop() {
    [ -d "$dir" ] || return 0
    local pid
    if [ -s "$dir/pgdata/postmaster.pid" ]; then
        pid="$(head -n 1 "$dir/pgdata/postmaster.pid")"
        kill -INT "$pid" 2>/dev/null || true  # SIGINT: PostgreSQL's fast shutdown
        wait_gone "$pid"
    fi
    if [ -s "$dir/redis.pid" ]; then
        pid="$(cat "$dir/redis.pid")"
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid"
    fi
    rm -rf "$dir"
}

case "$command" in
    start) start ;;
    stop) stop ;;
    restart-postgres) restart_postgres ;;
    *) usage ;;
esac
