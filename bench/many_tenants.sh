#!/usr/bin/env bash
# Many tenants on one node: the same webhook load spread over 1, 50, 1000,
# 5000 and 10,000 tenants (SPREADS), on one node and one database that
# holds TENANTS (10,000) active tenants all the time; then a node start
# where only WITH_WORK (100) of them have scheduled work.
#
# Tenants (database tessera_bench_many): many-00001 … many-<TENANTS>,
# created through the real provisioning path: CREATE_METHOD=cli (default)
# runs `tessera tenant create` (one process per tenant), CREATE_METHOD=api
# posts to POST /api/platform/tenants of a running node (one curl per
# tenant); CREATE_PARALLELISM at a time either way. Measured here: cli 200
# tenants in 7.9 s, api 10.1 s; over 2,000, cli stays near 70 ms a tenant
# while api grows from 49 to 145 ms (each API create runs a full cluster
# round over every tenant, one at a time), so cli is the default; 10,000
# took 843 s. The first tenant gets two integrations through POST
# /api/apply, the others the same stored rows copied by SQL (the
# integration and its immutable version: what an apply stores; N applies
# would only add N argon2 logins):
#   orders       webhook (auth none) → transform → log
#   orders-sync  the same, its webhook `synchronous: true` (answered with
#                the execution's output)
# REUSE_DB=1 keeps a database left by an earlier run (KEEP_DB=1) when it
# holds TENANTS active tenants with both integrations: it is migrated, its
# old executions are deleted and the scheduled integrations of the last
# "start with work" removed, so every run starts from the same state.
#
# For each spread K, in the order given:
#   1. The node is restarted (SIGTERM, waited for; started again): seconds
#      from process start until /readyz answers 200, and until it holds a
#      lease on every active tenant (platform.tenant_leases). Its RSS and
#      the Pss of its PostgreSQL backends right after. Then one webhook of
#      each kind is checked (async 202, sync 200 with the result), tried
#      again while the node answers 503 (still starting its workers, its
#      pool taken): seconds from process start until both answered.
#   2. async: wrk (bench/hooks.lua) posts to POST /hooks/orders, the Host
#      header rotating over the first K tenants (<slug>.localhost), at
#      CONNECTIONS connections: a WARMUP run, a drain, VACUUM ANALYZE, then
#      DURATION measured. Executions/s come FROM THE DATABASE: executions
#      finished in the window, summed over the K schemas (procedures in the
#      database's public schema loop over them), and p50/p99 of
#      `finished_at - created_at`; the backlog left at the window's end.
#   3. sync: the same with POST /hooks/orders-sync; rate (2xx only) and
#      p50/p99 from wrk; non-2xx answers and socket errors are reported.
#   During each window the node's RSS (/proc/<pid>/status VmRSS) and the
#   sum of Pss (/proc/<pid>/smaps_rollup) of its PostgreSQL backends
#   (pg_stat_activity, application_name 'tessera') are sampled once per
#   second; the maximum is reported.
# Then the ratio of each figure to the 50-tenant row (the first row when 50
# is not among SPREADS).
#
# Start with work: the node is stopped, the first WITH_WORK tenants get an
# enabled integration with a yearly schedule trigger (applied in the first
# one, its rows copied to the others), and the node started again: seconds
# until ready, until every lease is held, until GET /api/platform/node
# lists the WITH_WORK tenants' workers; 5 s after that, the Pss of the
# backends and how many tenant schemas PostgreSQL saw touched (the sum of
# seq_scan + idx_scan over a schema's tables in pg_stat_user_tables
# changed since before the start). A backend reports its counters when it
# goes idle, at most once a second and up to 10 s later, so the count is
# taken again 15 s after.
#
# Memory guard: a node's PostgreSQL backends grow with every tenant
# schema they touch. A watchdog checks MemAvailable (/proc/meminfo) every
# 0.5 s; below MIN_AVAILABLE_MIB it kills the node (SIGKILL: its backends
# exit with its connections) before the kernel's OOM killer picks a victim
# on a shared machine. The spread is then reported as stopped with what was
# sampled until then, the larger spreads as not run, and the run goes on to
# the start with work.
#
# VACUUM ANALYZE: the machine's PostgreSQL runs without autovacuum. Before
# each window (and once before the first) every table changed since its
# last vacuum or analyze is vacuumed and analysed (what autovacuum would
# pick; pg_stat_all_tables), not all ~510,000 relations of 10,000 schemas.
#
# Node settings: one tenant carries the whole load in the K=1 row, so the
# per-tenant caps on intake are lifted for every row:
# TESSERA_RUNTIME__INTAKE_PER_SECOND=0 (no rate limit),
# TESSERA_LIMITS__QUEUED_EXECUTIONS=10000000,
# TESSERA_LIMITS__STORED_EXECUTIONS=1000000000, and
# TESSERA_RUNTIME__MAX_CONCURRENT_EXECUTIONS=CONCURRENCY (64) executions per
# tenant at once; TESSERA_LOG__LEVEL=warn; TESSERA_AUTH__TOKEN_TTL_SECS=86400
# (the platform token is kept across restarts).
#
# Settings (environment): TENANTS=10000 SPREADS="1 50 1000 5000 10000"
# DURATION=45s WARMUP=5s CONNECTIONS=32 THREADS=1 RATE=0 (a cap on webhooks/s;
# 0: none) CONCURRENCY=64 WITH_WORK=100 REUSE_DB=0 CREATE_METHOD=cli
# CREATE_PARALLELISM=4 START_TIMEOUT=600 DRAIN_TIMEOUT=600 (seconds)
# MIN_AVAILABLE_MIB=3072 RETIRE_SECS=60 (runtime.retire_idle_worker_secs of
# the node, its default: shorter, a tenant whose webhooks come less often
# than that starts and retires a worker for each one, which is what rows
# over 5,000 tenants measured at 5 s; before each stop the script waits
# until every idle worker retired, so each start begins with no tenant
# marked as having work),
# plus those of lib.sh (KEEP_DB, TESSERA_BIN,
# SKIP_BUILD, PG*). PostgreSQL must run on this machine for the Pss
# figures (n/a otherwise).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TENANTS="${TENANTS:-10000}"
SPREADS="${SPREADS:-1 50 1000 5000 10000}"
DURATION="${DURATION:-45s}"
WARMUP="${WARMUP:-5s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
RATE="${RATE:-0}"
CONCURRENCY="${CONCURRENCY:-64}"
WITH_WORK="${WITH_WORK:-100}"
REUSE_DB="${REUSE_DB:-0}"
CREATE_METHOD="${CREATE_METHOD:-cli}"
MIN_AVAILABLE_MIB="${MIN_AVAILABLE_MIB:-3072}"
RETIRE_SECS="${RETIRE_SECS:-60}"
CREATE_PARALLELISM="${CREATE_PARALLELISM:-4}"
START_TIMEOUT="${START_TIMEOUT:-600}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-600}"
DB=tessera_bench_many
OWNER_EMAIL="owner@bench.test"
OWNER_PASSWORD="bench-platform-owner-pass"
TENANT_PASSWORD="bench-tenant-owner-pass"

for v in DURATION WARMUP; do
    [[ "${!v}" =~ ^[0-9]{1,4}[sm]?$ ]] || { echo "$v must be a wrk duration such as 45s or 2m" >&2; exit 2; }
done
[[ "$TENANTS" =~ ^[0-9]+$ && "$TENANTS" -ge 1 && "$TENANTS" -le 99999 ]] || { echo "TENANTS must be 1..99999" >&2; exit 2; }
[[ -n "${SPREADS// /}" ]] || { echo "SPREADS must name at least one spread" >&2; exit 2; }
for k in $SPREADS; do
    [[ "$k" =~ ^[0-9]+$ && "$k" -ge 1 && "$k" -le "$TENANTS" ]] || { echo "each of SPREADS must be 1..TENANTS ($TENANTS)" >&2; exit 2; }
done
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 && "$CONNECTIONS" -le 1000 ]] || { echo "CONNECTIONS must be 1..1000" >&2; exit 2; }
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 && "$THREADS" -le "$CONNECTIONS" ]] || { echo "THREADS must be 1..CONNECTIONS" >&2; exit 2; }
[[ "$RATE" =~ ^[0-9]+$ ]] || { echo "RATE must be a whole number of requests/s" >&2; exit 2; }
[[ "$CONCURRENCY" =~ ^[0-9]+$ && "$CONCURRENCY" -ge 1 && "$CONCURRENCY" -le 10000 ]] || { echo "CONCURRENCY must be 1..10000" >&2; exit 2; }
[[ "$WITH_WORK" =~ ^[0-9]+$ && "$WITH_WORK" -ge 1 && "$WITH_WORK" -le "$TENANTS" ]] || { echo "WITH_WORK must be 1..TENANTS ($TENANTS)" >&2; exit 2; }
[[ "$REUSE_DB" == 0 || "$REUSE_DB" == 1 ]] || { echo "REUSE_DB must be 0 or 1" >&2; exit 2; }
[[ "$CREATE_METHOD" == cli || "$CREATE_METHOD" == api ]] || { echo "CREATE_METHOD must be cli or api" >&2; exit 2; }
[[ "$CREATE_PARALLELISM" =~ ^[0-9]+$ && "$CREATE_PARALLELISM" -ge 1 && "$CREATE_PARALLELISM" -le 64 ]] || { echo "CREATE_PARALLELISM must be 1..64" >&2; exit 2; }
for v in START_TIMEOUT DRAIN_TIMEOUT; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 10 && "${!v}" -le 7200 ]] || { echo "$v must be 10..7200 (seconds)" >&2; exit 2; }
done
[[ "$RETIRE_SECS" =~ ^[0-9]+$ && "$RETIRE_SECS" -ge 1 && "$RETIRE_SECS" -le 3600 ]] || { echo "RETIRE_SECS must be 1..3600" >&2; exit 2; }
[[ "$MIN_AVAILABLE_MIB" =~ ^[0-9]+$ && "$MIN_AVAILABLE_MIB" -le 1048576 ]] || { echo "MIN_AVAILABLE_MIB must be 0..1048576 (0: no guard)" >&2; exit 2; }
PAUSE_MS=0
[[ "$RATE" -gt 0 ]] && PAUSE_MS=$((CONNECTIONS * 1000 / RATE))

bench_init many_tenants
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi
need wrk
need psql
build_tessera

# The memory sampler runs in the background during each window, the
# memory guard all the time.
SAMPLER_PID=""
GUARD_PID=""
many_cleanup() {
    local rc=$? pid
    for pid in "$SAMPLER_PID" "$GUARD_PID"; do
        [[ -n "$pid" ]] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    done
    set +e
    (exit $rc)
    cleanup
}
trap many_cleanup EXIT

GUARD_FILE="$WORK_DIR/guard.txt"
guard_tripped() { [[ -s "$GUARD_FILE" ]]; }
die() {
    guard_tripped && log "memory guard: $(cat "$GUARD_FILE")"
    log "FAILED: $*"
    exit 1
}
cat >"$WORK_DIR/guard.py" <<'PY'
# guard.py WORK_DIR MIN_MIB: kill the node whose pid is in WORK_DIR/node.pid
# when MemAvailable falls below MIN_MIB; say why in WORK_DIR/guard.txt.
import os, signal, sys, time

work, min_kib = sys.argv[1], int(sys.argv[2]) * 1024

def kib(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

while True:
    available = kib("/proc/meminfo", "MemAvailable:")
    if available < min_kib:
        try:
            pid = int(open(os.path.join(work, "node.pid")).read())
        except (OSError, ValueError):
            pid = 0
        if pid and os.path.exists(f"/proc/{pid}"):
            rss = kib(f"/proc/{pid}/status", "VmRSS:")
            with open(os.path.join(work, "guard.txt"), "w") as f:
                f.write(f"MemAvailable {available // 1024} MiB, below {min_kib // 1024} MiB, "
                        f"node RSS {rss // 1024} MiB: the node was killed\n")
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
PY
if [[ "$MIN_AVAILABLE_MIB" -gt 0 ]]; then
    python3 "$WORK_DIR/guard.py" "$WORK_DIR" "$MIN_AVAILABLE_MIB" &
    GUARD_PID=$!
fi

export TESSERA_LOG__LEVEL=warn TESSERA_EGRESS__ALLOW_LOOPBACK=false \
    TESSERA_RUNTIME__INTAKE_PER_SECOND=0 TESSERA_LIMITS__QUEUED_EXECUTIONS=10000000 \
    TESSERA_LIMITS__STORED_EXECUTIONS=1000000000 TESSERA_RUNTIME__MAX_CONCURRENT_EXECUTIONS="$CONCURRENCY" \
    TESSERA_AUTH__TOKEN_TTL_SECS=86400 TESSERA_RUNTIME__RETIRE_IDLE_WORKER_SECS="$RETIRE_SECS"
export TESSERA_DATABASE_URL="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${DB}"
# psql only (the node and the CLI do not read it): no NOTICEs from the helpers.
export PGOPTIONS="-c client_min_messages=warning"

# Microseconds since the epoch, and seconds between two such stamps.
now_us() { local t="$EPOCHREALTIME"; echo "${t//[.,]/}"; }
secs_since() { local d=$(($(now_us) - $1)); printf '%d.%03d' $((d / 1000000)) $(((d % 1000000) / 1000)); }

# ---------------------------------------------------------------------------
# The node

NODE_STARTS=0
# SIGTERM, and wait for the node to leave (it hands its leases back).
stop_node() {
    [[ -n "$SERVER_PID" ]] || return 0
    local started pid="$SERVER_PID" i
    # Every start begins from the same state: the tenants of the last row
    # stay marked as having work until their idle workers retire
    # (RETIRE_SECS), and a node started before that would start them all.
    for i in $(seq 1 $((RETIRE_SECS * 10 + 300))); do
        [[ "$(running_workers)" == 0 ]] && break
        sleep 0.1
    done
    started=$(now_us)
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 1200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "WARNING: the node did not stop within 120 s of SIGTERM: killed"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    SERVER_PID=""
    rm -f "$WORK_DIR/node.pid"
    log "node stopped in $(secs_since "$started") s"
}

active_tenants() { db_psql -tA -c "SELECT count(*) FROM platform.tenants WHERE status = 'active'"; }

# Leases held now by the node listening on $PORT.
# Workers the node runs now (tenants with work); empty when it does not answer.
running_workers() {
    [[ -n "${PLATFORM_TOKEN:-}" ]] || { echo 0; return; }
    curl -fsS --max-time 10 -H "Host: localhost:$PORT" -H "Authorization: Bearer $PLATFORM_TOKEN" "http://127.0.0.1:$PORT/api/platform/node" 2>/dev/null \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["workers"]))' 2>/dev/null || echo 0
}

held_leases() {
    db_psql -tA -c "SELECT count(*) FROM platform.tenant_leases l JOIN platform.nodes n ON n.id = l.node_id \
        WHERE n.address = '127.0.0.1:$PORT' AND n.state = 'active' AND l.expires_at > now()"
}

# Restart the node: sets PORT, SERVER_PID, START_T0 (µs), T_READY (s until
# /readyz answers 200) and T_LEASES (s until every active tenant is
# leased). With argument `work`, also T_WORK: s until GET
# /api/platform/node lists the first WITH_WORK tenants' workers (LISTED:
# how many it lists then). Polled every 0.1 s.
restart_node() {
    stop_node
    local active log_file want_work="${1:-}"
    active="$(active_tenants)"
    PORT="$(free_port)"
    NODE_STARTS=$((NODE_STARTS + 1))
    log_file="$WORK_DIR/node-$NODE_STARTS.log"
    T_READY=""
    T_LEASES=""
    T_WORK=""
    [[ -n "$want_work" ]] || T_WORK=-
    START_T0=$(now_us)
    launch_serve "$PORT" "$log_file"
    SERVER_PID=$LAUNCHED_PID
    echo "$SERVER_PID" >"$WORK_DIR/node.pid"
    while [[ -z "$T_READY" || -z "$T_LEASES" || -z "$T_WORK" ]]; do
        if [[ -z "$T_READY" && "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/readyz" || true)" == 200 ]]; then
            T_READY="$(secs_since "$START_T0")"
        fi
        if [[ -z "$T_LEASES" && "$(held_leases)" == "$active" ]]; then
            T_LEASES="$(secs_since "$START_T0")"
        fi
        if [[ -z "$T_WORK" && -n "$T_READY" ]]; then
            LISTED="$(work_listed)"
            [[ -n "$LISTED" ]] && T_WORK="$(secs_since "$START_T0")"
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$log_file" >&2; die "the node exited during start-up"; }
        (( $(now_us) - START_T0 < START_TIMEOUT * 1000000 )) \
            || die "the node did not start within ${START_TIMEOUT} s (ready: ${T_READY:-no}, leases: $(held_leases) of $active, work listed: ${T_WORK:-no})"
        sleep 0.1
    done
    local work_note=""
    [[ -n "$want_work" ]] && work_note=", workers of the first $WITH_WORK tenants listed after $T_WORK s ($LISTED workers in all)"
    log "node pid $SERVER_PID on port $PORT: ready after $T_READY s, all $active leases held after $T_LEASES s$work_note"
}

# How many workers GET /api/platform/node lists, if it lists one for each
# of the first WITH_WORK tenants; nothing otherwise.
work_listed() {
    curl -fsS --max-time 10 -H "Host: localhost:$PORT" -H "Authorization: Bearer $PLATFORM_TOKEN" "http://127.0.0.1:$PORT/api/platform/node" 2>/dev/null \
        | WITH_WORK="$WITH_WORK" python3 -c '
import json, os, sys
try:
    workers = json.load(sys.stdin)["workers"]
except Exception:
    sys.exit(0)
slugs = {w["tenant"] for w in workers}
if all(f"many-{i:05d}" in slugs for i in range(1, int(os.environ["WITH_WORK"]) + 1)):
    print(len(workers))' || true
}

# Login (POST /api/auth/login) on host $1 as $2/$3; prints the token.
# A node still starting its workers may answer 503 (its pool taken): tried
# again until START_TIMEOUT, every 2 s (each try counts against the login
# rate limit: after a 429, 6 s).
login() {
    local code started out="$WORK_DIR/login.out"
    started=$(now_us)
    while :; do
        code="$(curl -sS -o "$out" -w '%{http_code}' --max-time 60 -H "Host: $1:$PORT" -H 'Content-Type: application/json' \
            -d "{\"email\":\"$2\",\"password\":\"$3\"}" "http://127.0.0.1:$PORT/api/auth/login" || true)"
        [[ "$code" == 503 || "$code" == 429 ]] || break
        (( $(now_us) - started < START_TIMEOUT * 1000000 )) || break
        if [[ "$code" == 429 ]]; then sleep 6; else sleep 2; fi
    done
    [[ "$code" == 200 ]] || { cat "$out" >&2; echo " (login on $1: HTTP $code)" >&2; return 1; }
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <"$out"
}

# POST /api/apply in tenant $1, the YAML on stdin.
apply_in() {
    local token code started
    cat >"$WORK_DIR/apply.yaml"
    token="$(login "$1.localhost" "owner@$1.test" "$TENANT_PASSWORD")" || die "login as the owner of $1"
    started=$(now_us)
    while :; do
        code="$(curl -sS -o "$WORK_DIR/apply.out" -w '%{http_code}' --max-time 60 -H "Host: $1.localhost:$PORT" -H "Authorization: Bearer $token" \
            -H 'Content-Type: application/yaml' --data-binary @"$WORK_DIR/apply.yaml" "http://127.0.0.1:$PORT/api/apply" || true)"
        [[ "$code" == 503 ]] && (( $(now_us) - started < START_TIMEOUT * 1000000 )) || break
        sleep 2
    done
    [[ "$code" == 200 ]] || { cat "$WORK_DIR/apply.out" >&2; die "apply in $1: HTTP $code"; }
}

slug_of() { printf 'many-%05d' "$1"; }

# ---------------------------------------------------------------------------
# SQL helpers in the database's public schema. Each loops over tenant
# schemas with EXECUTE and commits every 500: one transaction over 10,000
# schemas would need more locks than max_locks_per_transaction allows.

install_helpers() {
    db_psql >/dev/null <<'SQL'
CREATE TABLE IF NOT EXISTS public.bench_window (
    schema_name text, integration text, state text, latency_ms double precision);

-- The executions of the first k tenants finished in [t0, t1) into bench_window.
CREATE OR REPLACE PROCEDURE public.bench_collect(k int, t0 timestamptz, t1 timestamptz)
LANGUAGE plpgsql AS $$
DECLARE s text; n int := 0;
BEGIN
    TRUNCATE public.bench_window;
    FOR s IN SELECT schema_name FROM platform.tenants WHERE slug LIKE 'many-%' ORDER BY slug LIMIT k LOOP
        EXECUTE format('INSERT INTO public.bench_window
                        SELECT %L, integration, state, 1000 * extract(epoch FROM finished_at - created_at)
                        FROM %I.executions WHERE finished_at >= $1 AND finished_at < $2', s, s) USING t0, t1;
        n := n + 1;
        IF n % 500 = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;

-- Executions queued or running in the first k tenants.
CREATE OR REPLACE PROCEDURE public.bench_pending(k int, INOUT pending bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE s text; n int := 0; c bigint;
BEGIN
    pending := 0;
    FOR s IN SELECT schema_name FROM platform.tenants WHERE slug LIKE 'many-%' ORDER BY slug LIMIT k LOOP
        EXECUTE format('SELECT count(*) FROM %I.executions WHERE state IN (''queued'', ''running'')', s) INTO c;
        pending := pending + c;
        n := n + 1;
        IF n % 500 = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;

-- Before a run on a kept database: delete every execution and the
-- scheduled integration of the last start with work; count the tenants
-- holding both webhook integrations, enabled.
CREATE OR REPLACE PROCEDURE public.bench_prepare(INOUT complete bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE s text; n int := 0; has bool; c int;
BEGIN
    complete := 0;
    FOR s IN SELECT schema_name FROM platform.tenants WHERE slug LIKE 'many-%' ORDER BY slug LOOP
        EXECUTE format('DELETE FROM %I.integrations WHERE name = ''yearly-report''', s);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.executions)', s) INTO has;
        IF has THEN
            EXECUTE format('TRUNCATE %I.executions CASCADE', s);
        END IF;
        EXECUTE format('SELECT count(*) FROM %I.integrations WHERE name IN (''orders'', ''orders-sync'') AND enabled', s) INTO c;
        IF c = 2 THEN complete := complete + 1; END IF;
        n := n + 1;
        IF n % 500 = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;

-- How many tenants hold integration `name`, enabled.
CREATE OR REPLACE PROCEDURE public.bench_count_integration(name text, INOUT holding bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE s text; n int := 0; has bool;
BEGIN
    holding := 0;
    FOR s IN SELECT schema_name FROM platform.tenants WHERE slug LIKE 'many-%' ORDER BY slug LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.integrations WHERE name = $1 AND enabled)', s) INTO has USING name;
        IF has THEN holding := holding + 1; END IF;
        n := n + 1;
        IF n % 500 = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;

-- Copy integration `name` (its row and versions) from schema src to the
-- tenants numbered first..last.
CREATE OR REPLACE PROCEDURE public.bench_copy_integration(src text, name text, first int, last int)
LANGUAGE plpgsql AS $$
DECLARE s text; n int := 0;
BEGIN
    FOR s IN SELECT schema_name FROM platform.tenants WHERE slug LIKE 'many-%' AND schema_name <> src
             ORDER BY slug OFFSET first - 1 LIMIT last - first + 1 LOOP
        EXECUTE format('INSERT INTO %I.integrations SELECT * FROM %I.integrations WHERE name = $1', s, src) USING name;
        EXECUTE format('INSERT INTO %I.integration_versions SELECT * FROM %I.integration_versions WHERE integration = $1', s, src) USING name;
        n := n + 1;
        IF n % 200 = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;
SQL
}

pending() { db_psql -tA -c "CALL public.bench_pending($1)"; }

# Wait (bounded) until the first $1 tenants have nothing queued or running.
drain() {
    local started left
    started=$(now_us)
    while :; do
        guard_tripped && return 0
        left="$(pending "$1")"
        [[ "$left" == 0 ]] && break
        (( $(now_us) - started < DRAIN_TIMEOUT * 1000000 )) || die "$left executions still unfinished ${DRAIN_TIMEOUT} s after the load stopped"
        sleep 0.5
    done
    log "drained in $(secs_since "$started") s"
}

# VACUUM ANALYZE every table changed since its last vacuum or analyze,
# 500 tables to a command: each VACUUM command ends with a scan of all of
# pg_class (500,000 rows here) to update datfrozenxid, ~50 ms a command.
vacuum_changed() {
    local started count
    started=$(now_us)
    db_psql -tA >"$WORK_DIR/vacuum.sql" <<'SQL'
SELECT 'VACUUM ANALYZE ' || string_agg(format('%I.%I', schemaname, relname), ', ') || ';'
FROM (SELECT schemaname, relname, (row_number() OVER () - 1) / 500 AS batch FROM pg_stat_all_tables
      WHERE schemaname NOT LIKE 'pg\_toast%' AND (n_mod_since_analyze > 0 OR n_dead_tup > 0 OR n_ins_since_vacuum > 0)) t
GROUP BY batch
SQL
    count=$(($(tr -cd ',' <"$WORK_DIR/vacuum.sql" | wc -c) + $(tr -cd ';' <"$WORK_DIR/vacuum.sql" | wc -c)))
    db_psql -f "$WORK_DIR/vacuum.sql" >/dev/null
    log "VACUUM ANALYZE of $count changed tables in $(secs_since "$started") s"
}

# ---------------------------------------------------------------------------
# Memory: the node's RSS and its PostgreSQL backends' Pss (KiB).

cat >"$WORK_DIR/sampler.py" <<'PY'
# sampler.py PID DB OUT [once]: every second (or once) append
# "<node VmRSS KiB> <sum of backends' Pss KiB or -1> <backends>" to OUT.
import subprocess, sys, time

pid, db, out = sys.argv[1], sys.argv[2], sys.argv[3]
once = len(sys.argv) > 4

def field(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1])
    except OSError:
        return None
    return None

def sample():
    rss = field(f"/proc/{pid}/status", "VmRSS:") or 0
    q = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tessera'"
    r = subprocess.run(["psql", "-X", "-qtA", "-d", db, "-c", q], capture_output=True, text=True)
    pids = [p for p in r.stdout.split() if p.isdigit()]
    pss = [field(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids]
    known = [v for v in pss if v is not None]
    total = sum(known) if known or not pids else -1
    with open(out, "a") as f:
        f.write(f"{rss} {total} {len(pids)}\n")

while True:
    started = time.monotonic()
    sample()
    if once:
        break
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
PY

sampler_start() { : >"$1"; python3 "$WORK_DIR/sampler.py" "$SERVER_PID" "$DB" "$1" & SAMPLER_PID=$!; }
sampler_stop() { kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""; }
# "max_rss max_pss backends" of a sample file.
sample_max() { awk 'BEGIN {r = 0; p = -1; b = 0} {if ($1 > r) r = $1; if ($2 > p) p = $2; if ($3 > b) b = $3} END {print r, p, b}' "$1"; }
sample_once() { : >"$1"; python3 "$WORK_DIR/sampler.py" "$SERVER_PID" "$DB" "$1" once; cat "$1"; }

# ---------------------------------------------------------------------------
# The database: reused, or created.

INTEGRATIONS_YAML='apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: orders
spec:
  triggers:
    - webhook:
        auth: none
  steps:
    - name: normalise
      transform:
        expression: "{order: .trigger.body.order, total: (.trigger.body.total_cents / 100)}"
    - name: report
      log:
        message: "order ${{ .steps.normalise.order }} total ${{ .steps.normalise.total }}"
---
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: orders-sync
spec:
  triggers:
    - webhook:
        auth: none
        synchronous: true
  steps:
    - name: normalise
      transform:
        expression: "{order: .trigger.body.order, total: (.trigger.body.total_cents / 100)}"
    - name: report
      log:
        message: "order ${{ .steps.normalise.order }} total ${{ .steps.normalise.total }}"'

create_tenants() {
    local started
    started=$(now_us)
    export TESSERA TENANT_PASSWORD
    if [[ "$CREATE_METHOD" == cli ]]; then
        log "creating $TENANTS tenants with \`tessera tenant create\`, $CREATE_PARALLELISM at a time"
        local first last
        for ((first = 1; first <= TENANTS; first += 1000)); do
            last=$((first + 999 < TENANTS ? first + 999 : TENANTS))
            seq -f "many-%05g" "$first" "$last" | xargs -P "$CREATE_PARALLELISM" -I{} sh -c \
                '"$TESSERA" tenant create "$1" --owner-email "owner@$1.test" --owner-password "$TENANT_PASSWORD" >/dev/null || { echo "creating $1 failed" >&2; exit 255; }' _ {} \
                || die "tenant creation"
            log "  $last tenants after $(secs_since "$started") s"
        done
    else
        restart_node
        PLATFORM_TOKEN="$(login localhost "$OWNER_EMAIL" "$OWNER_PASSWORD")" || die "platform owner login"
        log "creating $TENANTS tenants with POST /api/platform/tenants, $CREATE_PARALLELISM at a time"
        export PORT PLATFORM_TOKEN
        seq -f "many-%05g" 1 "$TENANTS" | xargs -P "$CREATE_PARALLELISM" -I{} sh -c \
            'curl -fsS -o /dev/null --max-time 120 -H "Host: localhost:$PORT" -H "Authorization: Bearer $PLATFORM_TOKEN" -H "Content-Type: application/json" \
                -d "{\"slug\":\"$1\",\"owner_email\":\"owner@$1.test\",\"owner_password\":\"$TENANT_PASSWORD\"}" \
                "http://127.0.0.1:$PORT/api/platform/tenants" || { echo "creating $1 failed" >&2; exit 255; }' _ {} \
            || die "tenant creation"
    fi
    CREATE_SECONDS="$(secs_since "$started")"
    log "created $TENANTS tenants in $CREATE_SECONDS s ($CREATE_METHOD, $CREATE_PARALLELISM at a time)"
}

SETUP=""
if [[ "$REUSE_DB" == 1 && "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" == 1 ]]; then
    DB_NAME="$DB"
    log "database $DB exists: checking whether it can be reused"
    count="$(db_psql -tA -c "SELECT count(*) FILTER (WHERE slug LIKE 'many-%' AND status = 'active') || ' ' || count(*) FROM platform.tenants" 2>&1 || true)"
    reusable=0
    if [[ "$count" != "$TENANTS $TENANTS" ]]; then
        log "its tenants (active many-*, all): ${count:0:300}"
    elif ! "$TESSERA" migrate >"$WORK_DIR/migrate.out" 2>&1; then
        # E.g. migrated by a newer binary: refinery refuses a history with unknown versions.
        log "\`tessera migrate\` failed on it: $(tail -n 1 "$WORK_DIR/migrate.out")"
    else
        reusable=1
    fi
    if [[ "$reusable" == 1 ]]; then
        install_helpers
        started=$(now_us)
        complete="$(db_psql -tA -c "CALL public.bench_prepare()")"
        # With the executions gone, no tenant has work left to mark.
        db_psql -c "DO \$\$ BEGIN IF to_regclass('platform.tenant_work') IS NOT NULL THEN DELETE FROM platform.tenant_work; END IF; END \$\$" >/dev/null
        log "old executions and scheduled integrations removed in $(secs_since "$started") s; $complete tenants hold both integrations"
        [[ "$complete" == "$TENANTS" ]] && SETUP="reused database $DB ($TENANTS tenants with both integrations)"
    fi
    [[ -n "$SETUP" ]] || log "database $DB cannot be reused (it must hold $TENANTS active tenants with both integrations): creating it afresh"
fi
if [[ -z "$SETUP" ]]; then
    fresh_database "$DB"
    "$TESSERA" migrate >/dev/null
    "$TESSERA" platform init --email "$OWNER_EMAIL" --password "$OWNER_PASSWORD" >/dev/null
    create_tenants
    [[ "$(active_tenants)" == "$TENANTS" ]] || die "$(active_tenants) active tenants after creating $TENANTS"
    install_helpers
    [[ -n "$SERVER_PID" ]] || restart_node
    apply_in "$(slug_of 1)" <<<"$INTEGRATIONS_YAML"
    stop_node
    if [[ "$TENANTS" -gt 1 ]]; then
        started=$(now_us)
        for name in orders orders-sync; do
            db_psql -c "CALL public.bench_copy_integration('t_many_00001', '$name', 1, $((TENANTS - 1)))" >/dev/null
        done
        log "integrations copied to the other $((TENANTS - 1)) tenants in $(secs_since "$started") s"
    fi
    complete="$(db_psql -tA -c "CALL public.bench_prepare()")"
    [[ "$complete" == "$TENANTS" ]] || die "only $complete of $TENANTS tenants hold both integrations"
    SETUP="created $TENANTS tenants in $CREATE_SECONDS s ($CREATE_METHOD, $CREATE_PARALLELISM at a time)"
fi
log "$SETUP"
log "PostgreSQL $(db_psql -tA -c 'SHOW server_version'), max_connections=$(db_psql -tA -c 'SHOW max_connections'), shared_buffers=$(db_psql -tA -c 'SHOW shared_buffers'), autovacuum=$(db_psql -tA -c 'SHOW autovacuum'); $(db_psql -tA -c "SELECT count(*) FROM pg_class") relations"

# ---------------------------------------------------------------------------
# The spreads

# wrk against the first $2 tenants' $3 for $4; label $1. Prints WRK_JSON.
run_wrk() {
    local label="$1" k="$2" path="$3" duration="$4" out="$WORK_DIR/wrk-$1.txt"
    seq -f "many-%05g.localhost:$PORT" 1 "$k" >"$WORK_DIR/hosts.txt"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 10s -s "$BENCH_DIR/hooks.lua" "http://127.0.0.1:$PORT" \
        -- "@$WORK_DIR/hosts.txt" "$path" "$PAUSE_MS" >"$out" 2>&1 \
        || { guard_tripped && return 0; cat "$out" >&2; die "wrk ($label) exited with an error"; }
    sed -n 's/^WRK_JSON //p' "$out"
}

# One curl per kind against tenant $1: async 202, sync 200 with the
# result. Right after a start the node may still be busy starting its
# workers, its pool taken (503 database_unavailable): tried again every
# 0.5 s until START_TIMEOUT. Sets T_SERVING: seconds from the node's start
# until both answered as expected.
verify() {
    local host="$1.localhost:$PORT" code kind path expect refused=0
    for kind in async sync; do
        path=/hooks/orders expect=202
        [[ "$kind" == sync ]] && { path=/hooks/orders-sync; expect=200; }
        while :; do
            code="$(curl -sS -o "$WORK_DIR/verify.out" -w '%{http_code}' --max-time 60 -H "Host: $host" -H 'Content-Type: application/json' \
                -d '{"order": 7, "total_cents": 49}' "http://127.0.0.1:$PORT$path" || true)"
            [[ "$code" == 503 ]] || break
            refused=$((refused + 1))
            (( $(now_us) - START_T0 < START_TIMEOUT * 1000000 )) || { cat "$WORK_DIR/verify.out" >&2; die "POST $path in $1: still 503 ${START_TIMEOUT} s after the start"; }
            sleep 0.5
        done
        [[ "$code" == "$expect" ]] || { cat "$WORK_DIR/verify.out" >&2; die "POST $path in $1: HTTP $code, expected $expect"; }
        [[ "$kind" == async ]] || grep -q "order 7 total 0.49" "$WORK_DIR/verify.out" \
            || { cat "$WORK_DIR/verify.out" >&2; die "POST $path in $1: HTTP 200 without \"order 7 total 0.49\""; }
    done
    T_SERVING="$(secs_since "$START_T0")"
    log "webhooks of $1 answered as expected $T_SERVING s after the start ($refused answers 503 before)"
}

# The memory guard stopped the window of kind $2 over $1 tenants: a JSON
# object with what was sampled until then.
stopped_row() {
    local mem="0 -1 0"
    [[ -s "$WORK_DIR/mem-$1-$2.txt" ]] && mem="$(sample_max "$WORK_DIR/mem-$1-$2.txt")"
    KIND="$2" MEM="$mem" WHY="$(cat "$GUARD_FILE")" python3 -c '
import json, os
rss, pss, backends = map(int, os.environ["MEM"].split())
print(json.dumps({"kind": os.environ["KIND"], "stopped": os.environ["WHY"].strip(),
                  "rss_max_kib": rss, "pss_max_kib": pss, "backends_max": backends}))' >>"$RESULTS.part"
    tail -n1 "$RESULTS.part" >&2
    WINDOW_STOPPED=1
}

# One measured window of kind $2 (async|sync) over the first $1 tenants;
# appends one JSON object to $RESULTS.part. Sets WINDOW_STOPPED=1 when the
# memory guard killed the node.
WINDOW_STOPPED=0
window() {
    local k="$1" kind="$2" path=/hooks/orders integration=orders t0 t1 wrk_json backlog mem
    [[ "$kind" == sync ]] && { path=/hooks/orders-sync; integration=orders-sync; }
    log "K=$k $kind: warm-up $WARMUP, then wrk -t$THREADS -c$CONNECTIONS -d$DURATION on POST $path over $k tenant(s)"
    : >"$WORK_DIR/mem-$k-$kind.txt"
    run_wrk "$k-$kind-warmup" "$k" "$path" "$WARMUP" >/dev/null
    drain "$k"
    guard_tripped && { stopped_row "$k" "$kind"; return 0; }
    vacuum_changed
    sampler_start "$WORK_DIR/mem-$k-$kind.txt"
    t0="$(db_psql -tA -c 'SELECT now()')"
    wrk_json="$(run_wrk "$k-$kind" "$k" "$path" "$DURATION")"
    t1="$(db_psql -tA -c 'SELECT now()')"
    sampler_stop
    guard_tripped && { stopped_row "$k" "$kind"; return 0; }
    mem="$(sample_max "$WORK_DIR/mem-$k-$kind.txt")"
    backlog="$(pending "$k")"
    drain "$k"
    guard_tripped && { stopped_row "$k" "$kind"; return 0; }
    db_psql -c "CALL public.bench_collect($k, '$t0', '$t1')" >/dev/null
    db_psql -tA -F ' ' >"$WORK_DIR/db-$k-$kind.txt" <<SQL
SELECT count(*), count(*) FILTER (WHERE state <> 'succeeded'), count(DISTINCT schema_name),
       extract(epoch FROM ('$t1'::timestamptz - '$t0'::timestamptz)),
       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), 0),
       coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms), 0)
FROM public.bench_window WHERE integration = '$integration'
SQL
    KIND="$kind" MEM="$mem" BACKLOG="$backlog" WRK="$wrk_json" DBF="$(cat "$WORK_DIR/db-$k-$kind.txt")" python3 - <<'PY' >>"$RESULTS.part"
import json, os
e = os.environ
done, failed, schemas, seconds, p50, p99 = e["DBF"].split()
rss, pss, backends = map(int, e["MEM"].split())
w = json.loads(e["WRK"])
errors = w["errors_status"] + w["errors_connect"] + w["errors_read"] + w["errors_write"] + w["errors_timeout"]
r = {"kind": e["KIND"], "db_done": int(done), "db_failed": int(failed), "db_tenants": int(schemas),
     "seconds": float(seconds), "db_p50_ms": float(p50), "db_p99_ms": float(p99), "backlog": int(e["BACKLOG"]),
     "wrk": w, "wrk_ok_rps": (w["requests"] - w["errors_status"]) / w["seconds"], "wrk_errors": errors,
     "rss_max_kib": rss, "pss_max_kib": pss, "backends_max": backends}
r["db_rate"] = r["db_done"] / r["seconds"]
print(json.dumps(r))
PY
    tail -n1 "$RESULTS.part" >&2
}

RESULTS="$WORK_DIR/results.jsonl"
: >"$RESULTS"
PLATFORM_TOKEN=""
STOPPED_AT=""
vacuum_changed
for k in $SPREADS; do
    if [[ -n "$STOPPED_AT" ]]; then
        echo "{\"k\": $k, \"not_run\": \"the memory guard stopped the spread over $STOPPED_AT\"}" >>"$RESULTS"
        continue
    fi
    log "=== spread over $k tenant(s) of $TENANTS ==="
    restart_node
    start_mem="$(sample_once "$WORK_DIR/mem-$k-start.txt")"
    verify "$(slug_of "$k")"
    [[ -n "$PLATFORM_TOKEN" ]] || PLATFORM_TOKEN="$(login localhost "$OWNER_EMAIL" "$OWNER_PASSWORD")" || die "platform owner login"
    : >"$RESULTS.part"
    WINDOW_STOPPED=0
    window "$k" async
    [[ "$WINDOW_STOPPED" == 0 ]] && window "$k" sync
    K="$k" T_READY="$T_READY" T_LEASES="$T_LEASES" T_SERVING="$T_SERVING" START_MEM="$start_mem" PART="$RESULTS.part" python3 - <<'PY' >>"$RESULTS"
import json, os
e = os.environ
kinds = {r["kind"]: r for r in map(json.loads, open(e["PART"]))}
rss, pss, backends = map(int, e["START_MEM"].split())
print(json.dumps({"k": int(e["K"]), "t_ready": float(e["T_READY"]), "t_leases": float(e["T_LEASES"]),
                  "t_serving": float(e["T_SERVING"]),
                  "rss_start_kib": rss, "pss_start_kib": pss, "backends_start": backends,
                  "async": kinds.get("async"), "sync": kinds.get("sync")}))
PY
    if [[ "$WINDOW_STOPPED" == 1 ]]; then
        # The node was killed: its leases run out by themselves, the
        # backlog it left is deleted so the next start finds no work.
        STOPPED_AT="$k"
        log "memory guard: $(cat "$GUARD_FILE")"
        mv "$GUARD_FILE" "$WORK_DIR/guard-$k.txt"
        stop_node
        for _ in $(seq 1 120); do
            [[ "$(db_psql -tA -c "SELECT count(*) FROM platform.tenant_leases WHERE expires_at > now()")" == 0 ]] && break
            sleep 0.5
        done
        db_psql -tA -c "CALL public.bench_prepare()" >/dev/null
    fi
done

# ---------------------------------------------------------------------------
# Start with work in WITH_WORK of TENANTS

log "=== start with work in $WITH_WORK of $TENANTS tenants ==="
[[ -n "$SERVER_PID" ]] || restart_node
[[ -n "$PLATFORM_TOKEN" ]] || PLATFORM_TOKEN="$(login localhost "$OWNER_EMAIL" "$OWNER_PASSWORD")" || die "platform owner login"
apply_in "$(slug_of 1)" <<'EOF'
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: yearly-report
spec:
  triggers:
    - schedule:
        cron: "0 0 1 1 *"
  steps:
    - name: report
      log:
        message: "happy new year"
EOF
stop_node
[[ "$WITH_WORK" -gt 1 ]] && db_psql -c "CALL public.bench_copy_integration('t_many_00001', 'yearly-report', 1, $((WITH_WORK - 1)))" >/dev/null
# An apply marks its tenant as having work (platform.tenant_work, where it exists): so do the copies.
db_psql -c "DO \$\$ BEGIN IF to_regclass('platform.tenant_work') IS NOT NULL THEN
    INSERT INTO platform.tenant_work (tenant_id) SELECT id FROM platform.tenants WHERE slug LIKE 'many-%' AND slug <= 'many-$(printf %05d "$WITH_WORK")'
    ON CONFLICT DO NOTHING; END IF; END \$\$" >/dev/null
with_schedule="$(db_psql -tA -c "CALL public.bench_count_integration('yearly-report')")"
[[ "$with_schedule" == "$WITH_WORK" ]] || die "$with_schedule tenants hold the scheduled integration, expected $WITH_WORK"
# Backends report their counters as they exit, after their client has gone.
sleep 2
SCANS_SQL="SELECT schemaname, sum(seq_scan + coalesce(idx_scan, 0)) FROM pg_stat_user_tables WHERE schemaname LIKE 't\_%' GROUP BY 1 ORDER BY 1"
db_psql -tA -F ' ' -c "$SCANS_SQL" >"$WORK_DIR/scans-before.txt"

# The start, the workers polled from the moment it is ready (the platform
# token outlives a restart).
restart_node work
t_work="$T_WORK"
listed="$LISTED"
sleep 5
work_mem="$(sample_once "$WORK_DIR/mem-work.txt")"
db_psql -tA -F ' ' -c "$SCANS_SQL" >"$WORK_DIR/scans-5s.txt"
workers_5s="$(curl -fsS -H "Host: localhost:$PORT" -H "Authorization: Bearer $PLATFORM_TOKEN" "http://127.0.0.1:$PORT/api/platform/node" \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["workers"]))')"
sleep 10
db_psql -tA -F ' ' -c "$SCANS_SQL" >"$WORK_DIR/scans-15s.txt"
stop_node

# ---------------------------------------------------------------------------
# Report

SETUP="$SETUP" TENANTS="$TENANTS" DURATION="$DURATION" WARMUP="$WARMUP" CONNECTIONS="$CONNECTIONS" RATE="$RATE" \
CONCURRENCY="$CONCURRENCY" RESULTS="$RESULTS" WITH_WORK="$WITH_WORK" MIN_AVAILABLE_MIB="$MIN_AVAILABLE_MIB" \
T_READY="$T_READY" T_LEASES="$T_LEASES" T_WORK="$t_work" LISTED="$listed" WORKERS_5S="$workers_5s" WORK_MEM="$work_mem" \
SCANS_DIR="$WORK_DIR" python3 - <<'PY'
import json, os
e = os.environ
rows = [json.loads(l) for l in open(e["RESULTS"])]

def mib(kib):
    return "n/a" if kib is None or kib < 0 else f"{kib / 1024:.1f}"

def num(v, fmt):
    return "-" if v is None else format(v, fmt)

print()
print(f"many tenants benchmark: one node, one database holding {e['TENANTS']} active tenants; "
      f"webhook → transform → log; wrk -c{e['CONNECTIONS']}, {e['DURATION']} per window after a {e['WARMUP']} warm-up, "
      f"rate cap {e['RATE']}/s (0: none), {e['CONCURRENCY']} executions per tenant at once, no intake limit")
print(f"  tenants: {e['SETUP']}")
print("  async: executions finished in the window, from the database; latency = finished_at - created_at")
print("  sync: 2xx answers/s and latency from wrk; errors = non-2xx answers + socket errors")
print("  memory: node RSS and the sum of Pss of its PostgreSQL backends (count in brackets), "
      "right after start and the maximum of 1 s samples during the two windows")
print("  start: seconds from process start until /readyz answers 200, until every tenant is leased, "
      "until a webhook of each kind is answered as expected (503s before it are retried)")
print()
head = (f"  {'tenants':>7} | {'async/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'backlog':>7} {'err':>5} | "
        f"{'sync/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'err':>5} | {'RSS MiB':>8} {'max':>7} | "
        f"{'PG Pss MiB':>14} {'max':>13} | {'ready s':>7} {'leases s':>8} {'serving s':>9}")
print(head)
print("  " + "-" * (len(head) - 2))
notes = []
for r in rows:
    if "not_run" in r:
        print(f"  {r['k']:>7} | not run: {r['not_run']}")
        continue
    a, s = r.get("async") or {}, r.get("sync") or {}
    done = {k: v for k, v in (("async", a), ("sync", s)) if v and "stopped" not in v}
    for kind, w in (("async", a), ("sync", s)):
        if w and "stopped" in w:
            notes.append(f"K={r['k']} {kind}: STOPPED by the memory guard (MemAvailable < {e['MIN_AVAILABLE_MIB']} MiB): {w['stopped']}")
    windows = [w for w in (a, s) if w]
    rss_max = max((w["rss_max_kib"] for w in windows), default=-1)
    pss_max = max((w["pss_max_kib"] for w in windows), default=-1)
    b_max = max((w["backends_max"] for w in windows), default=0)
    da, ds = done.get("async"), done.get("sync")
    r["fig"] = {"async/s": da and da["db_rate"], "async p50": da and da["db_p50_ms"], "async p99": da and da["db_p99_ms"],
                "sync/s": ds and ds["wrk_ok_rps"], "sync p50": ds and ds["wrk"]["p50_ms"], "sync p99": ds and ds["wrk"]["p99_ms"],
                "RSS start": r["rss_start_kib"], "RSS max": rss_max,
                "Pss start": r["pss_start_kib"], "Pss max": pss_max,
                "ready": r["t_ready"], "leases": r["t_leases"], "serving": r["t_serving"]}
    print(f"  {r['k']:>7} | {num(da and da['db_rate'], '8.1f'):>8} {num(da and da['db_p50_ms'], '8.1f'):>8} "
          f"{num(da and da['db_p99_ms'], '8.1f'):>8} {num(da and da['backlog'], 'd'):>7} {num(da and da['wrk_errors'], 'd'):>5} | "
          f"{num(ds and ds['wrk_ok_rps'], '8.1f'):>8} {num(ds and ds['wrk']['p50_ms'], '8.1f'):>8} "
          f"{num(ds and ds['wrk']['p99_ms'], '8.1f'):>8} {num(ds and ds['wrk_errors'], 'd'):>5} | "
          f"{mib(r['rss_start_kib']):>8} {mib(rss_max):>7} | "
          f"{mib(r['pss_start_kib']):>8} ({r['backends_start']:>3}) {mib(pss_max):>7} ({b_max:>3}) | "
          f"{r['t_ready']:7.2f} {r['t_leases']:8.2f} {r['t_serving']:9.2f}")
    if da:
        if da["db_failed"]:
            notes.append(f"K={r['k']} async: {da['db_failed']} executions in the window did not succeed")
        if da["wrk_errors"]:
            notes.append(f"K={r['k']} async: wrk errors {da['wrk']}")
        notes.append(f"K={r['k']} async: webhooks accepted {da['wrk']['rps']:.1f}/s (p99 {da['wrk']['p99_ms']:.1f} ms); "
                     f"executions finished in {da['db_tenants']} tenants")
    if ds:
        if ds["db_failed"]:
            notes.append(f"K={r['k']} sync: {ds['db_failed']} executions in the window did not succeed")
        if ds["wrk_errors"]:
            notes.append(f"K={r['k']} sync: wrk errors {ds['wrk']}")
        notes.append(f"K={r['k']} sync: executions finished in the window (database) {ds['db_rate']:.1f}/s, "
                     f"p50/p99 {ds['db_p50_ms']:.1f}/{ds['db_p99_ms']:.1f} ms")
for n in notes:
    print(f"    {n}")

measured = [r for r in rows if "fig" in r]
if measured:
    base = next((r for r in measured if r["k"] == 50), measured[0])
    print()
    print(f"  ratio to the {base['k']}-tenant row:")
    names = list(base["fig"])
    print("  " + f"{'tenants':>7} | " + " ".join(f"{n:>10}" for n in names))
    for r in measured:
        cells = []
        for n in names:
            b, v = base["fig"][n], r["fig"][n]
            ok = b is not None and v is not None and b > 0 and v >= 0
            cells.append(f"{v / b:10.2f}" if ok else f"{'n/a':>10}")
        print("  " + f"{r['k']:>7} | " + " ".join(cells))

def scans(name):
    out = {}
    for line in open(os.path.join(e["SCANS_DIR"], name)):
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = int(parts[1])
    return out
before, at5, at15 = scans("scans-before.txt"), scans("scans-5s.txt"), scans("scans-15s.txt")
touched = lambda after: sum(1 for s, v in after.items() if v != before.get(s, 0))
rss, pss, backends = map(int, e["WORK_MEM"].split())
print()
print(f"start with work in {e['WITH_WORK']} of {e['TENANTS']} (those {e['WITH_WORK']} with a yearly scheduled integration, "
      f"all {e['TENANTS']} with the two webhook integrations):")
print(f"  ready after {float(e['T_READY']):.2f} s; all {e['TENANTS']} leases held after {float(e['T_LEASES']):.2f} s; "
      f"the {e['WITH_WORK']} tenants' workers listed after {float(e['T_WORK']):.2f} s ({e['LISTED']} workers listed then, "
      f"{e['WORKERS_5S']} 5 s later)")
print(f"  5 s after that: node RSS {mib(rss)} MiB; PostgreSQL backends {backends}, Pss {mib(pss)} MiB")
print(f"  tenant schemas touched since before the start (seq + idx scans changed): {touched(at5)} of {len(before)} "
      f"seen 5 s after, {touched(at15)} seen 15 s after (backends report their counters up to 10 s late)")
PY
report_load
