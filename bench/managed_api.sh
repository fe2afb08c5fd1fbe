#!/usr/bin/env bash
# A managed API against the webhook it wraps, and the cluster-wide rate
# limit's accuracy (docs/api-management.md).
#
# 1. Cost: one node, one tenant, one integration with one transform step,
#    reached two ways in the same run, alternating ROUNDS times:
#      webhook   POST /hooks/echo (a synchronous webhook: the answer is the output)
#      api       POST /apis/bench/v1/echo with a consumer's key (its plan far
#                above the load), a request and a response transform
#    wrk -t$THREADS -c$CONNECTIONS -d$DURATION each; printed: req/s and p99 of
#    each kind (the best round of each), and the managed API's cost
#    (1 - api/webhook req/s). Target: at most 10%.
# 2. Accuracy: a consumer on a plan of RATE/s (burst RATE) called at twice
#    that for ACCURACY_SECONDS over two nodes of one cluster (half of the
#    connections each); printed: calls let through against the plan's
#    allowance (burst + rate x seconds). Target: within 5%.
#
# Settings (environment): THREADS=2 CONNECTIONS=16 DURATION=15s ROUNDS=2
# RATE=50 ACCURACY_SECONDS=60; SKIP_BUILD=1 to use the existing release binary.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-16}"
DURATION="${DURATION:-15s}"
ROUNDS="${ROUNDS:-2}"
RATE="${RATE:-50}"
ACCURACY_SECONDS="${ACCURACY_SECONDS:-60}"
for v in THREADS CONNECTIONS ROUNDS RATE ACCURACY_SECONDS; do
    [[ "${!v}" =~ ^[0-9]{1,5}$ ]] || { echo "$v must be a whole number" >&2; exit 2; }
done

bench_init managed_api
need wrk
build_tessera
fresh_database tessera_bench_managed_api
export TESSERA_CLUSTER__HEARTBEAT_INTERVAL_MS=500 TESSERA_CLUSTER__NODE_TIMEOUT_MS=3000
# One tenant brings the node's whole load: its intake rate, backlog and
# concurrency limits are lifted (at their defaults, 200 starts/s and 8 at
# once, both ways ran into the limits and measured them, not the gateway).
export TESSERA_RUNTIME__INTAKE_PER_SECOND=0 TESSERA_LIMITS__QUEUED_EXECUTIONS=10000000 TESSERA_RUNTIME__MAX_CONCURRENT_EXECUTIONS=1024

create_bench_tenant
start_node
FIRST="$NODE_PORT"

owner_sign_in "$FIRST"
owner_apply <<'YAML'
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: echo
spec:
  triggers:
    - webhook:
        auth: none
        synchronous: true
  steps:
    - name: shape
      transform:
        expression: '{order: .trigger.body.order, total: (.trigger.body.total_cents / 100)}'
---
apiVersion: tessera.dev/v1
kind: Api
metadata:
  name: bench
spec:
  basePath: bench
  version: v1
  routes:
    - method: POST
      path: /echo
      integration: echo
      request: '{order: .body.order, total_cents: .body.total_cents}'
      response: '{result: .}'
YAML
key_for() { # consumer plan rate burst: a consumer on a new plan; prints its key
    owner_api PUT "/api/plans/$2" "{\"rate_per_second\": $3, \"burst\": $4}" >/dev/null
    local id
    id="$(owner_api POST /api/consumers "{\"name\": \"$1\", \"plan\": \"$2\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
    owner_api POST "/api/consumers/$id/keys" | python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])'
}
FREE_KEY="$(key_for unmetered unmetered 1000000 1000000)"
METERED_KEY="$(key_for metered metered "$RATE" "$RATE")"

# wrk against the first node: label, path, extra header, connections, duration, pause. Prints WRK_JSON.
run_wrk() {
    local out="$WORK_DIR/wrk-$1.txt"
    wrk -t"$THREADS" -c"$4" -d"$5" --timeout 10s -H "$3" -s "$BENCH_DIR/hooks.lua" "http://127.0.0.1:${7:-$FIRST}" \
        -- "bench.localhost:${7:-$FIRST}" "$2" "$6" >"$out" 2>&1 || { cat "$out" >&2; die "wrk ($1) failed"; }
    sed -n 's/^WRK_JSON //p' "$out"
}

log "cost: $ROUNDS rounds of webhook then managed API, $DURATION each, $CONNECTIONS connections"
run_wrk warmup /hooks/echo "X-Bench: warm-up" "$CONNECTIONS" 5s 0 >/dev/null
for round in $(seq 1 "$ROUNDS"); do
    run_wrk "webhook-$round" /hooks/echo "X-Bench: webhook" "$CONNECTIONS" "$DURATION" 0 >>"$WORK_DIR/webhook.jsonl"
    run_wrk "api-$round" /apis/bench/v1/echo "X-API-Key: $FREE_KEY" "$CONNECTIONS" "$DURATION" 0 >>"$WORK_DIR/api.jsonl"
done

log "accuracy: $((RATE * 2)) calls/s for $ACCURACY_SECONDS s over two nodes on a plan of $RATE/s"
start_node
SECOND="$NODE_PORT"
# Each node gets half the load, RATE calls/s: 16 connections each, each
# pausing before every call for 16/RATE s less the ~40 ms a call takes.
PAUSE=$(( 16 * 1000 / RATE - 40 ))
(( PAUSE > 0 )) || die "RATE is too high for 16 paced connections per node"
run_wrk "metered-1" /apis/bench/v1/echo "X-API-Key: $METERED_KEY" 16 "${ACCURACY_SECONDS}s" "$PAUSE" >"$WORK_DIR/metered-1.json" &
first_wrk=$!
run_wrk "metered-2" /apis/bench/v1/echo "X-API-Key: $METERED_KEY" 16 "${ACCURACY_SECONDS}s" "$PAUSE" "$SECOND" >"$WORK_DIR/metered-2.json"
wait "$first_wrk"

python3 - "$WORK_DIR" "$RATE" "$ACCURACY_SECONDS" <<'PY'
import json, sys
work, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def best(kind):
    runs = [json.loads(l) for l in open(f"{work}/{kind}.jsonl") if l.strip()]
    return max(runs, key=lambda r: r["rps"]), runs
hook, hook_runs = best("webhook")
api, api_runs = best("api")
print("managed API against its synchronous webhook (one-step integration, same node, same run)")
for name, r, runs in (("webhook", hook, hook_runs), ("api", api, api_runs)):
    rounds = ", ".join(f'{x["rps"]:.0f}' for x in runs)
    print(f'  {name:8} {r["rps"]:8.0f} req/s  p50 {r["p50_ms"]:.1f} ms  p99 {r["p99_ms"]:.1f} ms  (rounds: {rounds}; non-2xx {r["errors_status"]})')
print(f'  cost of the managed API: {100 * (1 - api["rps"] / hook["rps"]):.1f}% of throughput, p99 {api["p99_ms"] - hook["p99_ms"]:+.1f} ms (target: at most 10%)')
sent = admitted = 0
for n in (1, 2):
    r = json.loads(open(f"{work}/metered-{n}.json").read())
    sent += r["requests"]
    admitted += r["requests"] - r["errors_status"]
allowance = rate + rate * seconds
print(f"cluster-wide rate limit over {seconds:.0f} s at {sent / seconds:.0f} calls/s (2x a plan of {rate:.0f}/s, burst {rate:.0f}), two nodes")
print(f"  let through {admitted} of {sent}; the plan allows {allowance:.0f}: {100 * admitted / allowance:.1f}% (target: within 5%)")
PY
report_load
