# Shared helpers for the bench/ scripts. Sourced, not run.
#
# Environment (all optional):
#   PGHOST, PGPORT, PGUSER   PostgreSQL server for the benchmark databases
#                            (default 127.0.0.1, 5432, postgres; trust auth)
#   SKIP_BUILD=1             use the existing release binary instead of
#                            running `cargo build --release -p tessera-cli`
#   TESSERA_BIN              path of a tessera binary to use (implies SKIP_BUILD)
#   BENCH_FEATURES           cargo features of the build (tenancy.sh: bench-routes)
#   KEEP_DB=1                leave the benchmark database behind for inspection

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"

export PGHOST="${PGHOST:-127.0.0.1}"
export PGPORT="${PGPORT:-5432}"
export PGUSER="${PGUSER:-postgres}"

# A token key for the benchmark server only (32+ bytes), never a real one.
BENCH_JWT_SECRET="tessera-bench-only-secret-0123456789abcdef"
# Base64 of 32 bytes: seals connection secrets (none are created here).
BENCH_SECRETS_KEY="dGVzc2VyYS1iZW5jaC1vbmx5LXNlYWxpbmcta2V5ISE="

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${BENCH_NAME:-bench}" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed"
}

# Build (or locate) the release binary; sets TESSERA.
build_tessera() {
    if [[ -n "${TESSERA_BIN:-}" ]]; then
        TESSERA="$TESSERA_BIN"
    else
        local target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
        if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
            need cargo
            log "building the release binary (cargo build --release -p tessera-cli)"
            (cd "$REPO_ROOT" && cargo build --release -p tessera-cli --quiet ${BENCH_FEATURES:+--features "$BENCH_FEATURES"})
        fi
        TESSERA="$target_dir/release/tessera"
    fi
    [[ -x "$TESSERA" ]] || die "no tessera binary at $TESSERA"
}

# tessera-lb beside the tessera binary (built the same way): sets LB_BIN.
build_lb() {
    LB_BIN="$(dirname "$TESSERA")/tessera-lb"
    if [[ "${SKIP_BUILD:-0}" != 1 && -z "${TESSERA_BIN:-}" ]]; then
        log "building the load balancer (cargo build --release -p tessera-lb)"
        (cd "$REPO_ROOT" && cargo build --release -p tessera-lb --quiet)
    fi
    [[ -x "$LB_BIN" ]] || die "no tessera-lb binary at $LB_BIN"
}

psql_admin() {
    PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"
}

# Create a fresh database named $1 (dropped first if it exists); sets DB_NAME
# and TESSERA_DATABASE_URL.
fresh_database() {
    DB_NAME="$1"
    need psql
    psql_admin -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
    psql_admin -c "CREATE DATABASE $DB_NAME" >/dev/null
    export TESSERA_DATABASE_URL="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${DB_NAME}"
    log "fresh database $DB_NAME"
}

db_psql() {
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB_NAME" "$@"
}

# A free TCP port on the loopback interface.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

SERVER_PID=""
WORK_DIR=""
TARGET_PGDATA=""

# The PostgreSQL binaries (initdb, pg_ctl) of the installed server.
pg_bin_dir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")"; do
        [[ -x "$dir/initdb" ]] && { echo "$dir"; return; }
    done
    die "no PostgreSQL server binaries (initdb) found"
}

# A private PostgreSQL server on a free port for what the tenants' `sql`
# steps write to: the egress gate never lets a tenant reach the platform's
# own database server. Sets TARGET_URL (database `target`); stopped by cleanup.
start_target_postgres() {
    local bin port run=()
    bin="$(pg_bin_dir)"
    port="$(free_port)"
    TARGET_PGDATA="$WORK_DIR/target-pg"
    mkdir -p "$TARGET_PGDATA"
    if [[ $(id -u) == 0 ]]; then
        chmod 755 "$WORK_DIR"
        chown postgres:postgres "$TARGET_PGDATA"
        run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bin/initdb" -D "$TARGET_PGDATA" --auth=trust --username=postgres --no-instructions >/dev/null
    "${run[@]}" "$bin/pg_ctl" -D "$TARGET_PGDATA" -l "$TARGET_PGDATA/server.log" -w \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200" start >/dev/null
    PGOPTIONS="-c client_min_messages=warning" psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE target" >/dev/null
    TARGET_URL="postgres://postgres@127.0.0.1:$port/target"
    log "target PostgreSQL on port $port"
}

target_psql() {
    psql -X -q -v ON_ERROR_STOP=1 "$TARGET_URL" "$@"
}

stop_target_postgres() {
    [[ -n "$TARGET_PGDATA" && -f "$TARGET_PGDATA/postmaster.pid" ]] || return 0
    local run=()
    [[ $(id -u) == 0 ]] && run=(runuser -u postgres --)
    "${run[@]}" "$(pg_bin_dir)/pg_ctl" -D "$TARGET_PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
}

# Wait (bounded) until the node with pid $1 answers /healthz on port $2;
# on failure show its log $3.
wait_healthy() {
    local pid="$1" port="$2" log_file="$3" i
    for i in $(seq 1 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
            log "server pid $pid listening on 127.0.0.1:$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$log_file" >&2; die "server exited during start-up"; }
        sleep 0.1
    done
    cat "$log_file" >&2
    die "server did not become healthy within 10 s"
}

# Run `tessera serve` on loopback port $1, logging to $2 (extra TESSERA_*
# settings in the caller's environment apply); prints nothing, sets LAUNCHED_PID.
launch_serve() {
    TESSERA_LISTEN="127.0.0.1:$1" \
    TESSERA_BASE_DOMAIN=localhost \
    TESSERA_JWT_SECRET="$BENCH_JWT_SECRET" \
    TESSERA_SECRETS__KEY="$BENCH_SECRETS_KEY" \
    TESSERA_LOG__LEVEL="${TESSERA_LOG__LEVEL:-warn}" \
    TESSERA_PROVISIONING__EXPORT_DIR="$WORK_DIR/exports" \
    TESSERA_EGRESS__ALLOW_LOOPBACK="${TESSERA_EGRESS__ALLOW_LOOPBACK:-true}" \
        "$TESSERA" serve >"$2" 2>&1 &
    LAUNCHED_PID=$!
}

# Start `tessera serve` on a free loopback port (extra TESSERA_* settings in the
# caller's environment apply); sets PORT and SERVER_PID and waits until ready.
start_server() {
    PORT="$(free_port)"
    launch_serve "$PORT" "$WORK_DIR/server.log"
    SERVER_PID=$LAUNCHED_PID
    wait_healthy "$SERVER_PID" "$PORT" "$WORK_DIR/server.log"
}

# Several nodes of one cluster, each with its own free port and log
# ($WORK_DIR/node-<n>.log). start_node sets NODE_PID and NODE_PORT and
# records the pid, so cleanup stops every node started.
NODE_PIDS=()
start_node() {
    NODE_PORT="$(free_port)"
    local log_file="$WORK_DIR/node-$((${#NODE_PIDS[@]} + 1)).log"
    launch_serve "$NODE_PORT" "$log_file"
    NODE_PID=$LAUNCHED_PID
    NODE_PIDS+=("$NODE_PID")
    wait_healthy "$NODE_PID" "$NODE_PORT" "$log_file"
}

# SIGTERM every node still running, then SIGKILL what is left after 5 s.
stop_nodes() {
    local pid i
    for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 1 50); do
        local alive=0
        for pid in "${NODE_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for pid in "${NODE_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    NODE_PIDS=()
}

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

cleanup() {
    local rc=$?
    stop_server
    stop_nodes
    stop_target_postgres
    if [[ -n "${DB_NAME:-}" && "${KEEP_DB:-0}" != 1 ]]; then
        psql_admin -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [[ -n "$WORK_DIR" && -d "$WORK_DIR" ]]; then
        if [[ $rc -ne 0 ]]; then
            local server_log
            for server_log in "$WORK_DIR"/server.log "$WORK_DIR"/node-*.log; do
                [[ -s "$server_log" ]] || continue
                log "last lines of $(basename "$server_log"):"
                tail -n 20 "$server_log" >&2 || true
            done
        fi
        rm -rf "$WORK_DIR"
    fi
    exit $rc
}

# Common start: a private work directory and the cleanup trap.
bench_init() {
    BENCH_NAME="$1"
    need python3
    need curl
    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench-$BENCH_NAME.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    log "machine: $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Other work on the machine skews every figure: say how busy it was.
report_load() {
    echo "  machine: $(nproc) cores; load average (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# The one tenant of a single-tenant bench, `bench`: created with its owner
# (before the node starts), then signed in on node port $1 by
# owner_sign_in (sets HOST and TOKEN). owner_api <method> <path> [json]
# prints the owner's answer; owner_apply sends the YAML on stdin to
# /api/apply.
BENCH_OWNER_EMAIL=owner@bench.test
BENCH_OWNER_PASSWORD=bench-owner-password
create_bench_tenant() {
    "$TESSERA" tenant create bench --owner-email "$BENCH_OWNER_EMAIL" --owner-password "$BENCH_OWNER_PASSWORD" >/dev/null
}
owner_sign_in() {
    OWNER_PORT="$1"
    HOST="bench.localhost:$OWNER_PORT"
    TOKEN="$(curl -sS --fail-with-body -H "Host: $HOST" -H 'Content-Type: application/json' \
        -d "{\"email\": \"$BENCH_OWNER_EMAIL\", \"password\": \"$BENCH_OWNER_PASSWORD\"}" "http://127.0.0.1:$OWNER_PORT/api/auth/login" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
}
owner_api() {
    curl -sS --fail-with-body -X "$1" -H "Host: $HOST" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "http://127.0.0.1:$OWNER_PORT$2"
}
owner_apply() {
    curl -sS --fail-with-body -H "Host: $HOST" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/yaml' \
        --data-binary @- "http://127.0.0.1:$OWNER_PORT/api/apply" >/dev/null
}
