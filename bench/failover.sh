#!/usr/bin/env bash
# Failover time: a node of a three-node cluster is killed with kill -9 and
# the clock runs until every tenant it held has its worker running on
# another node. Repeated KILLS times (a new node takes the killed one's
# place between kills, and the cluster settles again); p50 and p99 printed.
#
# Figures come from the cluster itself, polled every POLL_MS on the
# survivors: GET /api/platform/cluster (the leases in the database, and
# whether the killed node is still counted live) and GET /api/platform/node
# (the workers each survivor runs). For each kill:
#   dead     the status shows the killed node not alive
#   leased   every one of its tenants is leased to a live node
#   running  every one of its tenants' workers runs on a survivor (the
#            failover time)
#
# The nodes run with the shipped cluster defaults unless told otherwise:
# heartbeat 1,000 ms, node timeout 6,000 ms. Expect the failover time
# between timeout - heartbeat and timeout + heartbeat (docs/clustering.md).
#
# VIA_LB=1 also keeps a webhook load on every tenant through `tessera-lb`
# (bench/webhook_load.py, LOAD_THREADS senders, an `orders` integration in
# each tenant) for the whole run, and reports for each kill the requests
# that failed (an answer other than 202, or none) from the kill until its
# tenants ran elsewhere plus 2 s, and the recovery time: from the kill to
# the last failure.
#
# Settings (environment): NODES=3 TENANTS=30 KILLS=12 HEARTBEAT_MS=1000
# NODE_TIMEOUT_MS=6000 POLL_MS=20 VIA_LB=0 LOAD_THREADS=16, plus those of
# lib.sh (SKIP_BUILD, KEEP_DB, PG*).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES="${NODES:-3}"
TENANTS="${TENANTS:-30}"
KILLS="${KILLS:-12}"
HEARTBEAT_MS="${HEARTBEAT_MS:-1000}"
NODE_TIMEOUT_MS="${NODE_TIMEOUT_MS:-6000}"
POLL_MS="${POLL_MS:-20}"
VIA_LB="${VIA_LB:-0}"
LOAD_THREADS="${LOAD_THREADS:-16}"
OWNER_EMAIL="owner@bench.test"
OWNER_PASSWORD="bench-platform-owner-pass"

[[ "$VIA_LB" == 0 || "$VIA_LB" == 1 ]] || { echo "VIA_LB must be 0 or 1" >&2; exit 2; }
for v in NODES TENANTS KILLS HEARTBEAT_MS NODE_TIMEOUT_MS POLL_MS LOAD_THREADS; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || { echo "$v must be a positive whole number" >&2; exit 2; }
done
[[ "$NODES" -ge 2 && "$NODES" -le 10 ]] || { echo "NODES must be 2..10" >&2; exit 2; }
[[ "$KILLS" -le 1000 && "$TENANTS" -le 1000 ]] || { echo "KILLS and TENANTS must be at most 1000" >&2; exit 2; }

bench_init failover
build_tessera
if [[ "$VIA_LB" == 1 ]]; then
    build_lb
fi
fresh_database tessera_bench_failover
export TESSERA_LOG__LEVEL=warn
export TESSERA_CLUSTER__HEARTBEAT_INTERVAL_MS="$HEARTBEAT_MS" TESSERA_CLUSTER__NODE_TIMEOUT_MS="$NODE_TIMEOUT_MS"

"$TESSERA" migrate >/dev/null
"$TESSERA" platform init --email "$OWNER_EMAIL" --password "$OWNER_PASSWORD" >/dev/null
log "creating $TENANTS tenants"
export TESSERA
seq -f "failover-%03g" 1 "$TENANTS" | xargs -P 4 -I{} sh -c \
    '"$TESSERA" tenant create "$1" --owner-email "owner@$1.test" --owner-password bench-tenant-owner-pass >/dev/null' _ {}

PIDS=()
PORTS=()
for i in $(seq 0 $((NODES - 1))); do
    start_node
    PIDS[i]=$NODE_PID
    PORTS[i]=$NODE_PORT
done

export TENANTS POLL_MS OWNER_EMAIL OWNER_PASSWORD
cluster() { python3 "$BENCH_DIR/cluster.py" "$@"; }

LOAD_OUT="$WORK_DIR/load.txt"
STOP_FILE="$WORK_DIR/stop-load"
if [[ "$VIA_LB" == 1 ]]; then
    SLUGS="$(seq -f "failover-%03g" 1 "$TENANTS" | paste -sd, -)"
    python3 "$BENCH_DIR/apply_everywhere.py" "${PORTS[0]}" "$SLUGS" bench-tenant-owner-pass <<'YAML' || die "apply the integration"
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
YAML
    LB_PORT="$(free_port)"
    TESSERA_LB_LISTEN="127.0.0.1:$LB_PORT" TESSERA_BASE_DOMAIN=localhost TESSERA_LB_LOG__LEVEL=warn \
        "$LB_BIN" >"$WORK_DIR/lb.log" 2>&1 &
    LB_PID=$!
    # The load and the load balancer stop first; the exit status reaches
    # lib.sh's cleanup (`&& ... ||`: a failing command in an EXIT trap ends
    # it under set -e).
    stop_lb() { local rc=$?; touch "$STOP_FILE" || true; kill -TERM "$LB_PID" 2>/dev/null || true; return $rc; }
    trap 'stop_lb && cleanup || cleanup' EXIT
    sleep 1
    # Bounded: the load stops by itself after an hour at most.
    python3 "$BENCH_DIR/webhook_load.py" "$LB_PORT" "$SLUGS" "$LOAD_THREADS" "$LOAD_OUT" "$STOP_FILE" 3600 &
    LOAD_PID=$!
    log "webhook load through tessera-lb on port $LB_PORT ($LOAD_THREADS senders)"
    sleep 2
fi

RESULTS="$WORK_DIR/results.jsonl"
: >"$RESULTS"
for k in $(seq 1 "$KILLS"); do
    cluster settle "${PORTS[@]}" || die "settle before kill $k"
    v=$(((k - 1) % NODES))
    survivors=()
    for i in "${!PORTS[@]}"; do [[ $i == "$v" ]] || survivors+=("${PORTS[i]}"); done
    cluster kill "${PIDS[v]}" "${PORTS[v]}" "${survivors[@]}" >>"$RESULTS" || die "kill $k"
    { wait "${PIDS[v]}"; } 2>/dev/null || true
    log "kill $k/$KILLS (node $v): $(tail -n 1 "$RESULTS")"
    start_node
    PIDS[v]=$NODE_PID
    PORTS[v]=$NODE_PORT
done

if [[ "$VIA_LB" == 1 ]]; then
    sleep 2
    touch "$STOP_FILE"
    wait "$LOAD_PID" || die "the webhook load failed"
fi

NODES="$NODES" KILLS="$KILLS" HB="$HEARTBEAT_MS" TO="$NODE_TIMEOUT_MS" RESULTS="$RESULTS" LOAD_OUT="$LOAD_OUT" VIA_LB="$VIA_LB" python3 - <<'PY'
import json, math, os
runs = [json.loads(l) for l in open(os.environ["RESULTS"])]
def pct(values, p):
    values = sorted(values)
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]  # nearest rank
print()
print(f"failover benchmark ({os.environ['NODES']} nodes, {len(runs)} kills with kill -9, heartbeat {os.environ['HB']} ms, "
      f"node timeout {os.environ['TO']} ms; {sum(r['tenants'] for r in runs) / len(runs):.1f} tenants moved per kill)")
for key, label in (("dead_ms", "killed node shown dead"), ("leased_ms", "its tenants leased elsewhere"),
                   ("running_ms", "its tenants' workers running elsewhere (failover time)")):
    v = [r[key] for r in runs]
    print(f"  {label:<56}: p50 {pct(v, 50):7.0f} ms   p99 {pct(v, 99):7.0f} ms   min {min(v):6.0f}   max {max(v):6.0f}")
if os.environ["VIA_LB"] == "1":
    answers = [(float(t), s) for t, s in (l.split() for l in open(os.environ["LOAD_OUT"]))]
    failed_all = sum(1 for _, s in answers if s != "202")
    print(f"  webhook load through tessera-lb: {len(answers)} requests, {failed_all} not accepted "
          f"({100 * failed_all / max(len(answers), 1):.3f}%)")
    for n, r in enumerate(runs, 1):
        start, end = r["killed_at"], r["killed_at"] + r["running_ms"] / 1000 + 2
        window = [(t, s) for t, s in answers if start <= t < end]
        failures = [(t, s) for t, s in window if s != "202"]
        kinds = sorted({s for _, s in failures})
        recovery = (max(t for t, _ in failures) - start) * 1000 if failures else 0
        print(f"  kill {n:2}: {len(window):6} requests in the window, {len(failures):4} failed {kinds or ''}, "
              f"recovery {recovery:6.0f} ms")
PY
report_load
