#!/usr/bin/env bash
# Scaling: executions/s of one node, then of three nodes of one cluster, on
# the same workload in the same run (same database, same tenants, same
# offered load), and the ratio.
#
# Workload: TENANTS tenants, each with `orders` (webhook, auth none:
# transform → transform → log, the shape of throughput.sh's sustained
# figures). wrk (bench/hooks.lua) posts to every tenant in rotation; the
# CONNECTIONS are split evenly over the nodes of the phase (one wrk each),
# so in the three-node phase two webhooks in three land on a node that
# does not run their tenant and travel to the owner (docs/clustering.md).
# RATE caps the total webhooks per second (0: no cap). AFFINITY=1 sends
# each tenant's webhooks only to the node that holds its lease (as a load
# balancer that knows the owners would), so nothing travels between nodes:
# the difference to AFFINITY=0 is what forwarding costs.
#
# VIA_LB=1 adds a phase that sends the three nodes' load through
# `tessera-lb` (one wrk with all CONNECTIONS, every tenant by its host):
# the load balancer sends each tenant's webhooks to its lease owner, so it
# is compared with the same three nodes sent to at random (AFFINITY=0) in
# the same run.
#
# Phases, one after the other:
#   one       one node runs every tenant
#   three     two more nodes join; the tenants spread (TENANTS/3 each)
#   three-lb  (VIA_LB=1) the same three nodes, every webhook through tessera-lb
# Each phase: wait until the tenants are placed, a WARMUP run, drain, the
# measured DURATION, drain. Figures come from the database: executions
# whose `finished_at` falls in the window, per second; p50/p99 of
# `finished_at - created_at`; the backlog at the window's end; and the CPU
# time the nodes and the PostgreSQL backends of the database used in the
# window, per execution (from /proc), which shows where the cores went.
#
# Settings (environment): TENANTS=30 DURATION=30s WARMUP=5s CONNECTIONS=48
# RATE=0 AFFINITY=0 VIA_LB=0 CONCURRENCY=64 (runtime.max_concurrent_executions), plus
# those of lib.sh (SKIP_BUILD, KEEP_DB, PG*).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TENANTS="${TENANTS:-30}"
DURATION="${DURATION:-30s}"
WARMUP="${WARMUP:-5s}"
CONNECTIONS="${CONNECTIONS:-48}"
RATE="${RATE:-0}"
CONCURRENCY="${CONCURRENCY:-64}"
AFFINITY="${AFFINITY:-0}"
VIA_LB="${VIA_LB:-0}"
OWNER_EMAIL="owner@bench.test"
OWNER_PASSWORD="bench-platform-owner-pass"
TENANT_PASSWORD="bench-tenant-owner-pass"

for v in DURATION WARMUP; do
    [[ "${!v}" =~ ^[0-9]{1,4}[sm]?$ ]] || { echo "$v must be a wrk duration such as 30s" >&2; exit 2; }
done
[[ "$TENANTS" =~ ^[0-9]+$ && "$TENANTS" -ge 3 && "$TENANTS" -le 1000 ]] || { echo "TENANTS must be 3..1000" >&2; exit 2; }
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 3 && "$CONNECTIONS" -le 999 ]] || { echo "CONNECTIONS must be 3..999" >&2; exit 2; }
[[ "$RATE" =~ ^[0-9]+$ ]] || { echo "RATE must be a whole number of requests/s" >&2; exit 2; }
[[ "$AFFINITY" == 0 || "$AFFINITY" == 1 ]] || { echo "AFFINITY must be 0 or 1" >&2; exit 2; }
[[ "$VIA_LB" == 0 || "$VIA_LB" == 1 ]] || { echo "VIA_LB must be 0 or 1" >&2; exit 2; }
[[ "$CONCURRENCY" =~ ^[0-9]+$ && "$CONCURRENCY" -ge 1 && "$CONCURRENCY" -le 10000 ]] || { echo "CONCURRENCY must be 1..10000" >&2; exit 2; }

bench_init scaling
need wrk
build_tessera
if [[ "$VIA_LB" == 1 ]]; then
    build_lb
fi
fresh_database tessera_bench_scaling
# The nodes' throughput is measured, not a tenant's share: no intake limit.
export TESSERA_LOG__LEVEL=warn TESSERA_RUNTIME__MAX_CONCURRENT_EXECUTIONS="$CONCURRENCY" TESSERA_RUNTIME__INTAKE_PER_SECOND=0 TESSERA_LIMITS__QUEUED_EXECUTIONS=10000000

"$TESSERA" migrate >/dev/null
"$TESSERA" platform init --email "$OWNER_EMAIL" --password "$OWNER_PASSWORD" >/dev/null
log "creating $TENANTS tenants"
export TESSERA TENANT_PASSWORD
SLUGS="$(seq -f "scale-%03g" 1 "$TENANTS" | paste -sd, -)"
tr ',' '\n' <<<"$SLUGS" | xargs -P 4 -I{} sh -c \
    '"$TESSERA" tenant create "$1" --owner-email "owner@$1.test" --owner-password "$TENANT_PASSWORD" >/dev/null' _ {}
# Every tenant's executions, for the figures.
db_psql -c "CREATE VIEW public.bench_executions AS $(tr ',' '\n' <<<"$SLUGS" \
    | sed 's/-/_/g; s/.*/SELECT state, created_at, finished_at FROM t_&.executions/' | paste -sd'|' - | sed 's/|/ UNION ALL /g')" >/dev/null

PORTS=()
PIDS=()
start_node
PORTS+=("$NODE_PORT")
PIDS+=("$NODE_PID")

# Apply `orders` in every tenant (each owner signs in once).
python3 "$BENCH_DIR/apply_everywhere.py" "${PORTS[0]}" "$SLUGS" "$TENANT_PASSWORD" <<'YAML' || die "apply the integration"
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
    - name: enrich
      transform:
        expression: "{id: .execution.id, total: .steps.normalise.total, band: (if .steps.normalise.total > 100 then \"big\" else \"small\" end)}"
    - name: report
      log:
        message: "order ${{ .steps.normalise.order }} stored"
YAML

export TENANTS OWNER_EMAIL OWNER_PASSWORD
cluster() { python3 "$BENCH_DIR/cluster.py" "$@"; }

# CPU clock ticks used so far by the given pids, and by the PostgreSQL
# backends of this database (0 when PostgreSQL runs elsewhere).
cpu_ticks() {
    local backends
    backends="$(db_psql -tA -c "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity \
        WHERE datname = current_database() AND pid <> pg_backend_pid()")"
    python3 - "$backends" "$@" <<'PY'
import sys
def ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0
backends = [p for p in sys.argv[1].split(",") if p]
print(sum(ticks(p) for p in sys.argv[2:]), sum(ticks(p) for p in backends))
PY
}

# Wait (bounded) until every tenant's executions are finished.
drain() {
    local i left
    for i in $(seq 1 600); do
        left="$(db_psql -tA -c "SELECT count(*) FROM public.bench_executions WHERE state IN ('queued', 'running')")"
        [[ "$left" == 0 ]] && return 0
        sleep 0.2
    done
    die "$left executions still unfinished 120 s after the load stopped"
}

# The tenants node $1 (a port) is sent: all of them, or with AFFINITY=1
# those whose lease it holds now.
tenants_for() {
    if [[ "$AFFINITY" == 0 ]]; then
        echo "$SLUGS"
    else
        db_psql -tA -c "SELECT string_agg(t.slug, ',') FROM platform.tenant_leases l \
            JOIN platform.tenants t ON t.id = l.tenant_id JOIN platform.nodes n ON n.id = l.node_id \
            WHERE l.expires_at > now() AND n.address LIKE '%:$1'"
    fi
}

# wrk on every node of the phase at once for $2 (or, with LB_PORT set,
# on the load balancer); label $1.
load() {
    local label="$1" duration="$2" per_node=$((CONNECTIONS / ${#PORTS[@]})) pause=0 i pids=() tenants hosts
    [[ "$RATE" -gt 0 ]] && pause=$((CONNECTIONS * 1000 / RATE))
    if [[ -n "${LB_PORT:-}" ]]; then
        hosts="$(tr ',' '\n' <<<"$SLUGS" | sed 's/$/.localhost/' | paste -sd, -)"
        wrk -t2 -c"$CONNECTIONS" -d"$duration" --timeout 10s -s "$BENCH_DIR/hooks.lua" "http://127.0.0.1:$LB_PORT" \
            -- "$hosts" /hooks/orders "$pause" >"$WORK_DIR/wrk-$label.0.txt" 2>&1 &
        pids+=($!)
    fi
    for i in "${!PORTS[@]}"; do
        [[ -n "${LB_PORT:-}" ]] && break
        tenants="$(tenants_for "${PORTS[i]}")"
        [[ -n "$tenants" ]] || die "node ${PORTS[i]} holds no tenant"
        hosts="$(tr ',' '\n' <<<"$tenants" | sed "s/\$/.localhost:${PORTS[i]}/" | paste -sd, -)"
        wrk -t1 -c"$per_node" -d"$duration" --timeout 10s -s "$BENCH_DIR/hooks.lua" "http://127.0.0.1:${PORTS[i]}" \
            -- "$hosts" /hooks/orders "$pause" >"$WORK_DIR/wrk-$label.$i.txt" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || { cat "$WORK_DIR/wrk-$label.$i.txt" >&2; die "wrk ($label, node $i)"; }
        grep -q "Non-2xx or 3xx responses" "$WORK_DIR/wrk-$label.$i.txt" && { cat "$WORK_DIR/wrk-$label.$i.txt" >&2; die "wrk ($label): non-2xx responses"; }
    done
    # Webhooks accepted per second, over all nodes.
    sed -n 's/^WRK_JSON //p' "$WORK_DIR"/wrk-"$label".*.txt | python3 -c 'import json,sys; print(sum(json.loads(l)["rps"] for l in sys.stdin))'
}

RESULTS="$WORK_DIR/results.jsonl"
: >"$RESULTS"
measure() { # phase name
    cluster settle "${PORTS[@]}" || die "the tenants did not settle on ${#PORTS[@]} node(s)"
    log "$1: ${#PORTS[@]} node(s), warm-up $WARMUP, then wrk -c$CONNECTIONS in all for $DURATION (rate cap ${RATE}/s; 0: none)"
    load "$1-warmup" "$WARMUP" >/dev/null
    drain
    local t0 t1 backlog accepted before after
    before="$(cpu_ticks "${PIDS[@]}")"
    t0="$(db_psql -tA -c 'SELECT now()')"
    accepted="$(load "$1" "$DURATION")"
    t1="$(db_psql -tA -c 'SELECT now()')"
    after="$(cpu_ticks "${PIDS[@]}")"
    backlog="$(db_psql -tA -c "SELECT count(*) FROM public.bench_executions WHERE state IN ('queued', 'running')")"
    drain
    db_psql -tA -F ' ' >"$WORK_DIR/db-$1.txt" <<SQL
SELECT count(*), count(*) FILTER (WHERE state <> 'succeeded'),
       extract(epoch FROM ('$t1'::timestamptz - '$t0'::timestamptz)),
       coalesce(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - created_at)), 0),
       coalesce(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY finished_at - created_at)), 0)
FROM public.bench_executions WHERE finished_at >= '$t0' AND finished_at < '$t1'
SQL
    read -r done failed seconds p50 p99 <"$WORK_DIR/db-$1.txt"
    [[ "$failed" == 0 ]] || die "$1: $failed executions in the window did not succeed"
    PHASE="$1" NODES="${#PORTS[@]}" DONE="$done" SECS="$seconds" P50="$p50" P99="$p99" BACKLOG="$backlog" \
    ACCEPTED="$accepted" BEFORE="$before" AFTER="$after" TICK="$(getconf CLK_TCK)" python3 - >>"$RESULTS" <<'PY'
import json, os
e = os.environ
(n0, p0), (n1, p1) = map(int, e["BEFORE"].split()), map(int, e["AFTER"].split())
done, tick = int(e["DONE"]), int(e["TICK"])
r = {"phase": e["PHASE"], "nodes": int(e["NODES"]), "executions": done, "seconds": float(e["SECS"]),
     "p50_ms": float(e["P50"]), "p99_ms": float(e["P99"]), "backlog": int(e["BACKLOG"]), "accepted_rps": float(e["ACCEPTED"]),
     "node_cpu_ms": (n1 - n0) * 1000 / tick / max(done, 1), "pg_cpu_ms": (p1 - p0) * 1000 / tick / max(done, 1),
     "cores_busy": ((n1 - n0) + (p1 - p0)) / tick / float(e["SECS"])}
r["rate"] = r["executions"] / r["seconds"]
print(json.dumps(r))
PY
    tail -n1 "$RESULTS" >&2
}

measure one
for _ in 1 2; do
    start_node
    PORTS+=("$NODE_PORT")
    PIDS+=("$NODE_PID")
done
measure three
if [[ "$VIA_LB" == 1 ]]; then
    LB_PORT="$(free_port)"
    TESSERA_LB_LISTEN="127.0.0.1:$LB_PORT" TESSERA_BASE_DOMAIN=localhost TESSERA_LB_LOG__LEVEL=warn \
        "$LB_BIN" >"$WORK_DIR/lb.log" 2>&1 &
    LB_PID=$!
    # The load balancer stops first; the exit status reaches lib.sh's cleanup
    # (`&& ... ||`: a failing command in an EXIT trap ends it under set -e).
    stop_lb() { local rc=$?; kill -TERM "$LB_PID" 2>/dev/null || true; wait "$LB_PID" 2>/dev/null || true; return $rc; }
    trap 'stop_lb && cleanup || cleanup' EXIT
    ok=0
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$LB_PORT/healthz" && { ok=1; break; }
        sleep 0.1
    done
    [[ $ok == 1 ]] || { cat "$WORK_DIR/lb.log" >&2; die "the load balancer did not start"; }
    measure three-lb
fi

TENANTS="$TENANTS" CONNECTIONS="$CONNECTIONS" RATE="$RATE" AFFINITY="$AFFINITY" RESULTS="$RESULTS" python3 - <<'PY'
import json, os
runs = {r["phase"]: r for r in map(json.loads, open(os.environ["RESULTS"]))}
print()
print(f"scaling benchmark ({os.environ['TENANTS']} tenants, webhook → transform → transform → log, "
      f"{os.environ['CONNECTIONS']} connections split over the nodes, rate cap {os.environ['RATE']}/s (0: none), "
      f"{'each tenant sent to its owner' if os.environ['AFFINITY'] == '1' else 'every tenant sent to every node'})")
for r in runs.values():
    print(f"  {r['nodes']} node(s): {r['rate']:7.1f} executions/s ({r['executions']} in {r['seconds']:.1f} s)   "
          f"p50 {r['p50_ms']:7.1f} ms   p99 {r['p99_ms']:7.1f} ms   webhooks accepted {r['accepted_rps']:7.1f}/s   "
          f"backlog at end {r['backlog']}   CPU per execution: nodes {r['node_cpu_ms']:.2f} ms, PostgreSQL {r['pg_cpu_ms']:.2f} ms "
          f"({r['cores_busy']:.2f} cores busy)")
print(f"  scaling ratio three/one: {runs['three']['rate'] / runs['one']['rate']:.2f}")
if "three-lb" in runs:
    print(f"  through tessera-lb: three/one {runs['three-lb']['rate'] / runs['one']['rate']:.2f}, "
          f"against the same nodes sent to at random {runs['three-lb']['rate'] / runs['three']['rate']:.2f}")
PY
report_load
