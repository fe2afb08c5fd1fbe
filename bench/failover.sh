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
# Settings (environment): NODES=3 TENANTS=30 KILLS=12 HEARTBEAT_MS=1000
# NODE_TIMEOUT_MS=6000 POLL_MS=20, plus those of lib.sh (SKIP_BUILD,
# KEEP_DB, PG*).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES="${NODES:-3}"
TENANTS="${TENANTS:-30}"
KILLS="${KILLS:-12}"
HEARTBEAT_MS="${HEARTBEAT_MS:-1000}"
NODE_TIMEOUT_MS="${NODE_TIMEOUT_MS:-6000}"
POLL_MS="${POLL_MS:-20}"
OWNER_EMAIL="owner@bench.test"
OWNER_PASSWORD="bench-platform-owner-pass"

for v in NODES TENANTS KILLS HEARTBEAT_MS NODE_TIMEOUT_MS POLL_MS; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 ]] || { echo "$v must be a positive whole number" >&2; exit 2; }
done
[[ "$NODES" -ge 2 && "$NODES" -le 10 ]] || { echo "NODES must be 2..10" >&2; exit 2; }
[[ "$KILLS" -le 1000 && "$TENANTS" -le 1000 ]] || { echo "KILLS and TENANTS must be at most 1000" >&2; exit 2; }

bench_init failover
build_tessera
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

NODES="$NODES" KILLS="$KILLS" HB="$HEARTBEAT_MS" TO="$NODE_TIMEOUT_MS" RESULTS="$RESULTS" python3 - <<'PY'
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
PY
report_load
