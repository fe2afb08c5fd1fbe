#!/usr/bin/env bash
# Latency and throughput of a managed API route that runs a two-step
# integration (transform → log) synchronously: the caller's answer is the
# integration's output, committed. Issue 14's targets, on one node:
#   1. throughput: at least 1,000 calls/s (wrk, CONNECTIONS connections,
#      as fast as the node answers);
#   2. latency: p99 under 50 ms at 500 calls/s (hey: HEY_WORKERS workers
#      each capped at 500/HEY_WORKERS calls/s);
#   3. the asynchronous throughput kept: the same integration through an
#      asynchronous webhook, executions finished per second (counted in
#      the database over the window), in the same run.
# Also printed, as the baseline of the same run: one caller alone (p50).
#
# Settings (environment): DURATION=20s CONNECTIONS=64 THREADS=2
# HEY_WORKERS=50; SKIP_BUILD=1 to use the existing release binary.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-20s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
HEY_WORKERS="${HEY_WORKERS:-50}"
for v in CONNECTIONS THREADS HEY_WORKERS; do
    [[ "${!v}" =~ ^[0-9]{1,5}$ ]] || { echo "$v must be a whole number" >&2; exit 2; }
done
[[ "$DURATION" =~ ^[0-9]{1,4}s$ ]] || { echo "DURATION must be seconds, like 20s" >&2; exit 2; }

bench_init api_latency
need wrk
need hey
build_tessera
fresh_database tessera_bench_api_latency
# One tenant brings the node's whole load: its intake rate, backlog and
# concurrency limits are lifted, so what is measured is the engine's path.
export TESSERA_RUNTIME__INTAKE_PER_SECOND=0 TESSERA_LIMITS__QUEUED_EXECUTIONS=10000000 TESSERA_RUNTIME__MAX_CONCURRENT_EXECUTIONS=1024
create_bench_tenant
start_node
PORT_="$NODE_PORT"

owner_sign_in "$PORT_"
owner_apply <<'YAML'
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: quote
spec:
  triggers:
    - webhook:
        auth: none
  steps:
    - name: price
      transform:
        expression: '{order: .trigger.body.order, total: (.trigger.body.total_cents / 100)}'
    - name: note
      log:
        message: 'quoted ${{ .steps.price.output.order }}'
---
apiVersion: tessera.dev/v1
kind: Api
metadata:
  name: quotes
spec:
  basePath: quotes
  version: v1
  routes:
    - method: POST
      path: /price
      integration: quote
YAML
owner_api PUT /api/plans/unmetered '{"rate_per_second": 1000000, "burst": 1000000}' >/dev/null
ID="$(owner_api POST /api/consumers '{"name": "bench", "plan": "unmetered"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
KEY="$(owner_api POST "/api/consumers/$ID/keys" | python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])')"
URL="http://127.0.0.1:$PORT_/apis/quotes/v1/price"
BODY='{"order": 7, "total_cents": 1250}'

run_wrk() { # label path connections [header]: prints WRK_JSON
    local out="$WORK_DIR/wrk-$1.txt"
    wrk -t"$THREADS" -c"$3" -d"$DURATION" --timeout 10s ${4:+-H "$4"} -s "$BENCH_DIR/hooks.lua" "http://127.0.0.1:$PORT_" \
        -- "$HOST" "$2" 0 >"$out" 2>&1 || { cat "$out" >&2; die "wrk ($1) failed"; }
    sed -n 's/^WRK_JSON //p' "$out"
}
run_hey() { # label workers rate-per-worker seconds: prints hey's CSV of every call
    hey -z "$4s" -c "$2" -q "$3" -m POST -T application/json -H "X-API-Key: $KEY" -host "$HOST" -d "$BODY" -o csv "$URL" \
        >"$WORK_DIR/hey-$1.csv" 2>"$WORK_DIR/hey-$1.err" || { cat "$WORK_DIR/hey-$1.err" >&2; die "hey ($1) failed"; }
}
finished() { db_psql -tAc "SELECT count(*) FROM t_bench.executions WHERE state = 'succeeded'"; }

log "warm-up"
run_hey warmup 8 20 5
log "one caller alone"
run_hey alone 1 20 10
log "latency at 500 calls/s: $HEY_WORKERS workers at $((500 / HEY_WORKERS))/s each, 30 s"
run_hey paced "$HEY_WORKERS" "$((500 / HEY_WORKERS))" 30
log "throughput: wrk, $CONNECTIONS connections, $DURATION"
run_wrk api /apis/quotes/v1/price "$CONNECTIONS" "X-API-Key: $KEY" >"$WORK_DIR/api.json"
log "asynchronous webhook of the same integration, $DURATION"
before="$(finished)"; started=$(date +%s.%N)
run_wrk async /hooks/quote "$CONNECTIONS" >"$WORK_DIR/async.json"
sleep 2
after="$(finished)"; ended=$(date +%s.%N)

python3 - "$WORK_DIR" "$before" "$after" "$started" "$ended" <<'PY'
import csv, json, sys
work, before, after, started, ended = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
def hey(label):
    rows = list(csv.DictReader(open(f"{work}/hey-{label}.csv")))
    ok = [float(r["response-time"]) * 1000 for r in rows if r["status-code"] == "200"]
    ok.sort()
    q = lambda p: ok[min(len(ok) - 1, int(p * len(ok)))] if ok else float("nan")
    span = max(float(r["offset"]) for r in rows) if rows else 1
    return len(rows), len(rows) - len(ok), len(rows) / span, q(0.5), q(0.99)
print("managed API route running transform -> log synchronously, one node")
n, bad, rate, p50, p99 = hey("alone")
print(f"  one caller alone:      {rate:6.0f} calls/s  p50 {p50:5.1f} ms  p99 {p99:6.1f} ms  ({n} calls, {bad} not 200)")
n, bad, rate, p50, p99 = hey("paced")
print(f"  paced at 500 calls/s:  {rate:6.0f} calls/s  p50 {p50:5.1f} ms  p99 {p99:6.1f} ms  ({n} calls, {bad} not 200)  target: p99 < 50 ms")
api = json.load(open(f"{work}/api.json"))
print(f'  as fast as answered:   {api["rps"]:6.0f} calls/s  p50 {api["p50_ms"]:5.1f} ms  p99 {api["p99_ms"]:6.1f} ms  (non-2xx {api["errors_status"]})  target: >= 1,000 calls/s')
hook = json.load(open(f"{work}/async.json"))
accepted = hook["rps"] * (1 - hook["errors_status"] / max(hook["requests"], 1))
print(f'  asynchronous webhook:  {accepted:6.0f} accepted/s (non-2xx {hook["errors_status"]}), {(after - before) / (ended - started):6.0f} executions finished/s over the window')
PY
report_load
