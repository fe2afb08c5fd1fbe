#!/usr/bin/env bash
# Engine throughput: executions per second of a webhook-triggered
# three-step integration on one node, with full durability (the accepted
# trigger and every step's checkpoint committed, synchronous_commit on,
# before the webhook is answered / the next step starts).
#
# wrk drives POST /hooks/<name> for DURATION at CONNECTIONS connections.
# The figures come FROM THE DATABASE, not from wrk: executions whose
# `finished_at` falls in the measured window, per second, and p50/p99 of
# `finished_at - created_at` (trigger committed → final state committed).
# The node's backlog at the end of the window is printed too: a node that
# accepts faster than it runs shows it there, not in the rate.
#
# Each mode in MODES runs against the same database, one after another,
# so the ratio batched/unbatched comes from one run of the script:
#   batched    runtime.batch_commits = true  (the batching committer)
#   unbatched  runtime.batch_commits = false (one commit per checkpoint)
#
# SHAPE picks the integration:
#   transform  transform → transform → log        (needs no sql step)
#   sql        transform → sql insert → log       (a postgres connection to
#              a private target PostgreSQL server, rows into bench_orders:
#              the egress gate keeps tenants off the platform's own server)
#
# Target: ≥ 1,000 executions/s sustained for 60 s (SHAPE=sql, batched).
#
# RATE caps the webhooks sent per second: each connection pauses
# CONNECTIONS*1000/RATE ms after each answer, so what is sent is below RATE
# by the answers' latency (RATE=1400 sends about 1,150/s here). 0 sends as
# fast as the node accepts, which lets the intake take the CPU the engine
# needs (the backlog then grows). A sustained rate is one where the backlog
# at the end stays near what is in flight (a few hundred).
#
# CONCURRENCY is the tenant's runtime.max_concurrent_executions. All the
# load comes from one tenant, and the committer batches the writes of the
# executions in flight: with 64 at once, the batches stay small and the
# node waits on commits with CPU to spare.
#
# Settings (environment): DURATION=60s WARMUP=5s CONNECTIONS=64 THREADS=1
# RATE=1400 SHAPE=sql MODES="batched unbatched" CONCURRENCY=1024, plus those
# of lib.sh (SKIP_BUILD, KEEP_DB, PG*).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-60s}"
WARMUP="${WARMUP:-5s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-1}"
SHAPE="${SHAPE:-sql}"
MODES="${MODES:-batched unbatched}"
CONCURRENCY="${CONCURRENCY:-1024}"
RATE="${RATE:-1400}"
TARGET_RATE=1000
SLUG=bench
OWNER_PASSWORD="bench-tenant-owner-pass"

for v in DURATION WARMUP; do
    [[ "${!v}" =~ ^[0-9]{1,4}[sm]?$ ]] || { echo "$v must be a wrk duration such as 60s or 2m" >&2; exit 2; }
done
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 && "$CONNECTIONS" -le 1000 ]] || { echo "CONNECTIONS must be 1..1000" >&2; exit 2; }
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 && "$THREADS" -le "$CONNECTIONS" ]] || { echo "THREADS must be 1..CONNECTIONS" >&2; exit 2; }
[[ "$CONCURRENCY" =~ ^[0-9]+$ && "$CONCURRENCY" -ge 1 && "$CONCURRENCY" -le 10000 ]] || { echo "CONCURRENCY must be 1..10000" >&2; exit 2; }
[[ "$RATE" =~ ^[0-9]+$ ]] || { echo "RATE must be a whole number of requests/s" >&2; exit 2; }
PAUSE_MS=0
[[ "$RATE" -gt 0 ]] && PAUSE_MS=$((CONNECTIONS * 1000 / RATE))
[[ "$SHAPE" == transform || "$SHAPE" == sql ]] || { echo "SHAPE must be transform or sql" >&2; exit 2; }
for m in $MODES; do
    [[ "$m" == batched || "$m" == unbatched ]] || { echo "MODES holds batched and/or unbatched" >&2; exit 2; }
done

bench_init throughput
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi
need wrk
build_tessera
fresh_database tessera_bench_throughput
export TESSERA_LOG__LEVEL=warn

"$TESSERA" migrate >/dev/null
"$TESSERA" tenant create "$SLUG" --owner-email "owner@$SLUG.test" --owner-password "$OWNER_PASSWORD" >/dev/null
SCHEMA="t_$SLUG"
# The sql shape's target table lives on a server of its own, as an external
# database would (the platform's own server is out of a tenant's reach).
if [[ "$SHAPE" == sql ]]; then
    start_target_postgres
    target_psql -c "CREATE TABLE public.bench_orders (execution_id uuid PRIMARY KEY, total numeric NOT NULL)" >/dev/null
fi
log "machine: $(nproc) cores; PostgreSQL $(db_psql -tA -c 'SHOW server_version'), synchronous_commit=$(db_psql -tA -c 'SHOW synchronous_commit'), fsync=$(db_psql -tA -c 'SHOW fsync')"

integration_yaml() {
    local middle
    if [[ "$SHAPE" == sql ]]; then
        cat <<EOF
apiVersion: tessera.dev/v1
kind: Connection
metadata:
  name: bench-db
spec:
  postgres:
    url: $TARGET_URL
---
EOF
        middle='    - name: store
      sql:
        connection: bench-db
        statement: INSERT INTO public.bench_orders (execution_id, total) VALUES ($1::uuid, $2)
        params: [.execution.id, .steps.normalise.total]'
    else
        middle='    - name: enrich
      transform:
        expression: "{id: .execution.id, total: .steps.normalise.total, band: (if .steps.normalise.total > 100 then \"big\" else \"small\" end)}"'
    fi
    cat <<EOF
apiVersion: tessera.dev/v1
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
$middle
    - name: report
      log:
        message: "order \${{ .steps.normalise.order }} stored"
EOF
}

apply_integration() {
    integration_yaml >"$WORK_DIR/integration.yaml"
    PORT="$PORT" SLUG="$SLUG" PASSWORD="$OWNER_PASSWORD" FILE="$WORK_DIR/integration.yaml" python3 - <<'PY'
import http.client, json, os, sys
port, slug = int(os.environ["PORT"]), os.environ["SLUG"]
host = f"{slug}.localhost:{port}"
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
conn.request("POST", "/api/auth/login", body=json.dumps({"email": f"owner@{slug}.test", "password": os.environ["PASSWORD"]}),
             headers={"Host": host, "Content-Type": "application/json"})
resp = conn.getresponse(); body = resp.read()
if resp.status != 200:
    sys.exit(f"login: HTTP {resp.status}: {body[:300]!r}")
token = json.loads(body)["token"]
conn.request("POST", "/api/apply", body=open(os.environ["FILE"], "rb").read(),
             headers={"Host": host, "Content-Type": "application/yaml", "Authorization": "Bearer " + token})
resp = conn.getresponse(); body = resp.read()
if resp.status != 200:
    sys.exit(f"apply: HTTP {resp.status}: {body[:500]!r}")
PY
}

# Wait (bounded) until the node has run everything it accepted.
drain() {
    local i left
    for i in $(seq 1 600); do
        left="$(db_psql -tA -c "SELECT count(*) FROM $SCHEMA.executions WHERE state IN ('queued', 'running')")"
        [[ "$left" == 0 ]] && return 0
        sleep 0.2
    done
    die "$left executions still unfinished 120 s after the load stopped"
}

run_wrk() {
    local label="$1" duration="$2" out="$WORK_DIR/wrk-$1.txt"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 10s --latency \
        -s "$BENCH_DIR/hooks.lua" "http://127.0.0.1:$PORT" -- "$SLUG.localhost:$PORT" /hooks/orders "$PAUSE_MS" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk ($label) exited with an error"; }
    grep -q "Non-2xx or 3xx responses" "$out" && { cat "$out" >&2; die "wrk ($label): non-2xx responses"; }
    sed -n 's/^WRK_JSON //p' "$out"
}

RESULTS="$WORK_DIR/results.jsonl"
: >"$RESULTS"
applied=0
for mode in $MODES; do
    batch=true; [[ "$mode" == unbatched ]] && batch=false
    # One tenant brings the node's whole load: its intake and backlog limits are lifted.
    TESSERA_RUNTIME__BATCH_COMMITS="$batch" TESSERA_RUNTIME__MAX_CONCURRENT_EXECUTIONS="$CONCURRENCY" \
      TESSERA_RUNTIME__INTAKE_PER_SECOND=0 TESSERA_LIMITS__QUEUED_EXECUTIONS=10000000 start_server
    if [[ $applied == 0 ]]; then apply_integration; applied=1; fi
    log "$mode: warm-up $WARMUP, then wrk -t$THREADS -c$CONNECTIONS -d$DURATION on POST /hooks/orders ($SHAPE shape, rate cap ${RATE:-0}/s)"
    run_wrk "$mode-warmup" "$WARMUP" >/dev/null
    drain
    t0="$(db_psql -tA -c 'SELECT now()')"
    wrk_json="$(run_wrk "$mode" "$DURATION")"
    t1="$(db_psql -tA -c 'SELECT now()')"
    backlog="$(db_psql -tA -c "SELECT count(*) FROM $SCHEMA.executions WHERE state IN ('queued', 'running')")"
    drain
    stop_server
    db_psql -tA -F ' ' >"$WORK_DIR/db-$mode.txt" <<SQL
SELECT count(*),
       count(*) FILTER (WHERE state <> 'succeeded'),
       extract(epoch FROM ('$t1'::timestamptz - '$t0'::timestamptz)),
       coalesce(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - created_at)), 0),
       coalesce(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY finished_at - created_at)), 0),
       (SELECT count(*) FROM $SCHEMA.execution_steps s JOIN $SCHEMA.executions e ON e.id = s.execution_id
         WHERE e.finished_at >= '$t0' AND e.finished_at < '$t1')
FROM $SCHEMA.executions WHERE finished_at >= '$t0' AND finished_at < '$t1'
SQL
    read -r done failed seconds p50 p99 steps <"$WORK_DIR/db-$mode.txt"
    [[ "$failed" == 0 ]] || die "$mode: $failed executions in the window did not succeed"
    [[ "$steps" == $((done * 3)) ]] || die "$mode: $steps step checkpoints for $done executions (expected 3 each)"
    MODE="$mode" DONE="$done" SECONDS_="$seconds" P50="$p50" P99="$p99" BACKLOG="$backlog" WRK="$wrk_json" python3 - >>"$RESULTS" <<'PY'
import json, os
e = os.environ
w = json.loads(e["WRK"])
r = {"mode": e["MODE"], "executions": int(e["DONE"]), "seconds": float(e["SECONDS_"]),
     "p50_ms": float(e["P50"]), "p99_ms": float(e["P99"]), "backlog": int(e["BACKLOG"]),
     "accepted_rps": w["rps"], "hook_p99_ms": w["p99_ms"]}
r["rate"] = r["executions"] / r["seconds"]
print(json.dumps(r))
PY
    tail -n1 "$RESULTS" >&2
done

SHAPE="$SHAPE" RATE="$RATE" TARGET="$TARGET_RATE" RESULTS="$RESULTS" CONNECTIONS="$CONNECTIONS" CONCURRENCY="$CONCURRENCY" python3 - <<'PY'
import json, os
runs = {r["mode"]: r for r in map(json.loads, open(os.environ["RESULTS"]))}
print()
print(f"throughput benchmark ({os.environ['SHAPE']} shape: transform → "
      f"{'sql insert' if os.environ['SHAPE'] == 'sql' else 'transform'} → log; "
      f"{os.environ['CONNECTIONS']} connections, rate cap {os.environ['RATE'] or 0}/s (0: none), "
      f"{os.environ['CONCURRENCY']} executions per tenant at once)")
for mode, r in runs.items():
    print(f"  {mode:<9}: {r['rate']:8.1f} executions/s over {r['seconds']:.1f} s ({r['executions']} finished)   "
          f"trigger→completion p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   "
          f"webhooks accepted {r['accepted_rps']:.1f}/s (p99 {r['hook_p99_ms']:.2f} ms)   backlog at end {r['backlog']}")
if "batched" in runs and "unbatched" in runs:
    print(f"  ratio batched/unbatched: {runs['batched']['rate'] / runs['unbatched']['rate']:.2f}")
best = max(r["rate"] for r in runs.values())
target = float(os.environ["TARGET"])
print(f"  target ≥ {target:.0f}/s: {'met' if best >= target else 'NOT MET'} (best {best:.1f}/s)")
PY
report_load
