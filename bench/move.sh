#!/usr/bin/env bash
# Moving a tenant between clusters while it takes webhooks: how long its
# writes pause (target: under 2 s) and how long the whole move takes, for a
# tenant with EXECUTIONS finished executions (default 100,000).
#
# Two clusters, each with a database and a node of its own: `local` (the
# directory's database) and `b` (registered with `tessera cluster create b
# --database-url ...`), and `tessera-lb` in front of both. Tenant `acme` is
# created on `local`; its integration `orders` is a webhook (auth none) →
# transform → log. One real webhook runs, and its execution is the model of
# EXECUTIONS - 1 more written by SQL into `t_acme` (state succeeded, the
# applied version, two step checkpoints each, spread over the last 7 days),
# so the copy moves a realistic history.
#
# Load: SENDERS clients (Python, keep-alive) post asynchronous webhooks to
# the load balancer at RATE per second in all, each with a run id of its
# own. A webhook answered 503 (the pause: `tenant_moving`) is sent again
# after RETRY_MS until accepted (202); every attempt is recorded with its
# status and times.
#
# Then ROUNDS moves (`tessera tenant move acme --to ...`, run as the
# operator would, against the directory database), alternately to b and
# back to local, each after SETTLE seconds of load. Printed for each: the
# rows copied, the catch-up rounds, the pause and the total as the move
# reports them, and what the senders saw from its start to 3 s after its
# end (at most SETTLE): answers by status, the longest stretch without an
# accepted webhook, the latency of accepted ones. At the end the load
# stops, the tenant's home drains, and every accepted run is checked to
# exist there exactly once and to have succeeded; warnings and errors in
# the nodes' logs are counted.
#
# Settings (environment): EXECUTIONS=100000 ROUNDS=2 RATE=100 SENDERS=8
# SETTLE=5 RETRY_MS=50 MOVE_TIMEOUT=600 (seconds, per move), plus those of
# lib.sh (SKIP_BUILD, TESSERA_BIN, KEEP_DB, PG*). The nodes' settings
# (TESSERA_*) apply too, e.g. TESSERA_PROVISIONING__MOVE_MAX_PAUSE_MS.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EXECUTIONS="${EXECUTIONS:-100000}"
ROUNDS="${ROUNDS:-2}"
RATE="${RATE:-100}"
SENDERS="${SENDERS:-8}"
SETTLE="${SETTLE:-5}"
RETRY_MS="${RETRY_MS:-50}"
MOVE_TIMEOUT="${MOVE_TIMEOUT:-600}"
TARGET_PAUSE_MS=2000
SLUG=acme
OWNER_PASSWORD="bench-tenant-owner-pass"

[[ "$EXECUTIONS" =~ ^[0-9]+$ && "$EXECUTIONS" -ge 1 && "$EXECUTIONS" -le 10000000 ]] || { echo "EXECUTIONS must be 1..10000000" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 20 ]] || { echo "ROUNDS must be 1..20" >&2; exit 2; }
[[ "$RATE" =~ ^[0-9]+$ && "$RATE" -ge 1 && "$RATE" -le 5000 ]] || { echo "RATE must be 1..5000 webhooks/s" >&2; exit 2; }
[[ "$SENDERS" =~ ^[0-9]+$ && "$SENDERS" -ge 1 && "$SENDERS" -le 256 ]] || { echo "SENDERS must be 1..256" >&2; exit 2; }
[[ "$SETTLE" =~ ^[0-9]+$ && "$SETTLE" -ge 1 && "$SETTLE" -le 600 ]] || { echo "SETTLE must be 1..600 seconds" >&2; exit 2; }
[[ "$RETRY_MS" =~ ^[0-9]+$ && "$RETRY_MS" -ge 1 && "$RETRY_MS" -le 10000 ]] || { echo "RETRY_MS must be 1..10000" >&2; exit 2; }
[[ "$MOVE_TIMEOUT" =~ ^[0-9]+$ && "$MOVE_TIMEOUT" -ge 10 && "$MOVE_TIMEOUT" -le 7200 ]] || { echo "MOVE_TIMEOUT must be 10..7200 seconds" >&2; exit 2; }

bench_init move
need pg_dump
need timeout
build_tessera
build_lb

# The directory, which is also cluster local's database; then b's own.
fresh_database tessera_bench_move
DIRECTORY_URL="$TESSERA_DATABASE_URL"
B_DB=tessera_bench_move_b
B_URL="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${B_DB}"
LB_PID=""
LOAD_PID=""
# Stop what lib.sh's cleanup does not know (the senders, the load balancer,
# b's database), handing the exit status on to it (`&& ... ||`: a failing
# function in an EXIT trap would end the script there under set -e).
move_cleanup() {
    local rc=$?
    [[ -n "$WORK_DIR" ]] && touch "$WORK_DIR/stop" 2>/dev/null || true
    local pid
    for pid in "$LOAD_PID" "$LB_PID"; do
        [[ -n "$pid" ]] || continue
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    stop_nodes
    if [[ "${KEEP_DB:-0}" != 1 ]]; then
        psql_admin -c "DROP DATABASE IF EXISTS $B_DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    return $rc
}
trap 'move_cleanup && cleanup || cleanup' EXIT
psql_admin -c "DROP DATABASE IF EXISTS $B_DB WITH (FORCE)" >/dev/null
psql_admin -c "CREATE DATABASE $B_DB" >/dev/null
log "fresh database $B_DB"

# Every process of the platform (nodes and the mover) shares these.
export TESSERA_LOG__LEVEL=warn
export TESSERA_JWT_SECRET="$BENCH_JWT_SECRET" TESSERA_SECRETS__KEY="$BENCH_SECRETS_KEY"
export TESSERA_PROVISIONING__EXPORT_DIR="$WORK_DIR/exports"

"$TESSERA" migrate >/dev/null
"$TESSERA" cluster create b --database-url "$B_URL" >&2
"$TESSERA" tenant create "$SLUG" --owner-email "owner@$SLUG.test" --owner-password "$OWNER_PASSWORD" --cluster local >&2

# One node per cluster (node-1.log: local, node-2.log: b).
start_node
LOCAL_PORT=$NODE_PORT
TESSERA_CLUSTER__ID=b TESSERA_DATABASE_URL="$B_URL" start_node
B_PORT=$NODE_PORT

LB_PORT="$(free_port)"
TESSERA_LB_LISTEN="127.0.0.1:$LB_PORT" TESSERA_BASE_DOMAIN=localhost TESSERA_LB_LOG__LEVEL=warn \
    "$LB_BIN" >"$WORK_DIR/lb.log" 2>&1 &
LB_PID=$!
ok=0
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null -H "Host: $SLUG.localhost" "http://127.0.0.1:$LB_PORT/healthz" 2>/dev/null; then ok=1; break; fi
    kill -0 "$LB_PID" 2>/dev/null || break
    sleep 0.1
done
[[ $ok == 1 ]] || { cat "$WORK_DIR/lb.log" >&2; die "no route to $SLUG through tessera-lb"; }
log "node of local :$LOCAL_PORT, node of b :$B_PORT, tessera-lb :$LB_PORT"

# The integration, applied through the load balancer, and one real webhook.
cat >"$WORK_DIR/integration.yaml" <<'EOF'
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
    - name: report
      log:
        message: "order ${{ .steps.normalise.order }} received"
EOF
PORT="$LB_PORT" SLUG="$SLUG" PASSWORD="$OWNER_PASSWORD" FILE="$WORK_DIR/integration.yaml" python3 - <<'PY' || die "apply the integration"
import http.client, json, os, sys
port, slug = int(os.environ["PORT"]), os.environ["SLUG"]
headers = {"Host": f"{slug}.localhost"}
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
conn.request("POST", "/api/auth/login", body=json.dumps({"email": f"owner@{slug}.test", "password": os.environ["PASSWORD"]}),
             headers={**headers, "Content-Type": "application/json"})
resp = conn.getresponse(); body = resp.read()
if resp.status != 200:
    sys.exit(f"login: HTTP {resp.status}: {body[:300]!r}")
token = json.loads(body)["token"]
conn.request("POST", "/api/apply", body=open(os.environ["FILE"], "rb").read(),
             headers={**headers, "Content-Type": "application/yaml", "Authorization": "Bearer " + token})
resp = conn.getresponse(); body = resp.read()
if resp.status != 200:
    sys.exit(f"apply: HTTP {resp.status}: {body[:500]!r}")
conn.request("POST", "/hooks/orders", body=json.dumps({"run": "model", "order": 0, "total_cents": 1234}),
             headers={**headers, "Content-Type": "application/json"})
resp = conn.getresponse(); body = resp.read()
if resp.status != 202:
    sys.exit(f"webhook: HTTP {resp.status}: {body[:500]!r}")
PY
SCHEMA="t_$SLUG"
ok=0
for _ in $(seq 1 100); do
    [[ "$(db_psql -tA -c "SELECT count(*) FROM $SCHEMA.executions WHERE state = 'succeeded'")" == 1 ]] && { ok=1; break; }
    sleep 0.1
done
[[ $ok == 1 ]] || die "the model webhook's execution did not succeed within 10 s"

# EXECUTIONS - 1 more like it: ids are UUIDv7 of their creation time,
# bodies and step outputs numbered, two succeeded steps each.
log "writing $((EXECUTIONS - 1)) more executions (two steps each) into $SCHEMA"
seeded_at=$(date +%s.%N)
timeout 900 psql -X -q -v ON_ERROR_STOP=1 -d "$DB_NAME" -v n="$EXECUTIONS" -v schema="$SCHEMA" >/dev/null <<'SQL' || die "seeding the executions"
BEGIN;
CREATE TEMP TABLE model ON COMMIT DROP AS
    SELECT * FROM :"schema".executions WHERE trigger->'body'->>'run' = 'model';
CREATE TEMP TABLE gen ON COMMIT DROP AS
SELECT g, ts, id, trig, jsonb_build_object('order', g, 'total', trim_scale((body->>'total_cents')::numeric / 100)) AS norm
FROM (
    SELECT g, ts,
           (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7' || substr(h, 1, 3)
             || substr('89ab', g % 4 + 1, 1) || substr(h, 4, 15))::uuid AS id,
           jsonb_set(jsonb_set(m.trigger, '{body}', body), '{headers,content-length}', to_jsonb(length(body::text)::text)) AS trig,
           body
    FROM model m, generate_series(1, :n - 1) g,
         LATERAL (SELECT m.created_at - interval '7 days' + g * (interval '7 days' / :n) AS ts,
                         md5('bench-move-' || g) AS h,
                         jsonb_build_object('order', g, 'total_cents', (g * 7919) % 100000) AS body) x
) s;
INSERT INTO :"schema".executions (id, integration, version, state, trigger, output, error, created_at, started_at,
                                  finished_at, cancel_requested, idempotency_key, retries, parent_id, parent_step,
                                  parent_attempt, claimed_by, crashes)
SELECT gen.id, m.integration, m.version, 'succeeded', gen.trig, to_jsonb('order ' || g || ' received'), NULL,
       ts, ts + interval '4 ms', ts + interval '17 ms', false, NULL, 0, NULL, NULL, NULL, m.claimed_by, 0
FROM gen, model m;
INSERT INTO :"schema".execution_steps (execution_id, path, state, attempt, input, output, error, started_at, finished_at)
SELECT gen.id, 'normalise', 'succeeded', 1,
       jsonb_build_object('steps', '{}'::jsonb, 'trigger', gen.trig,
                          'execution', jsonb_build_object('id', gen.id, 'version', m.version, 'integration', m.integration)),
       gen.norm, NULL::jsonb, ts + interval '9 ms', ts + interval '10 ms'
FROM gen, model m
UNION ALL
SELECT gen.id, 'report', 'succeeded', 1,
       jsonb_build_object('steps', jsonb_build_object('normalise', gen.norm), 'trigger', gen.trig,
                          'execution', jsonb_build_object('id', gen.id, 'version', m.version, 'integration', m.integration)),
       to_jsonb('order ' || g || ' received'), NULL::jsonb, ts + interval '13 ms', ts + interval '14 ms'
FROM gen, model m;
COMMIT;
ANALYZE :"schema".executions;
ANALYZE :"schema".execution_steps;
SQL
read -r n_exec n_steps schema_size <<<"$(db_psql -tA -F ' ' -c "SELECT (SELECT count(*) FROM $SCHEMA.executions), (SELECT count(*) FROM $SCHEMA.execution_steps), pg_size_pretty(sum(pg_total_relation_size(c.oid))::bigint) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$SCHEMA' AND c.relkind = 'r'")"
[[ "$n_exec" == "$EXECUTIONS" && "$n_steps" == $((EXECUTIONS * 2)) ]] || die "seeded $n_exec executions and $n_steps steps, expected $EXECUTIONS and $((EXECUTIONS * 2))"
log "$SCHEMA: $n_exec executions, $n_steps steps, $schema_size on disk ($(awk -v a="$seeded_at" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s to write)"

# The senders: a webhook every SENDERS/RATE s per sender, each with a run id
# of its own; a 503 is sent again after RETRY_MS until accepted. Every
# attempt is one line of load.txt: sent answered status run error-code.
cat >"$WORK_DIR/load.py" <<'PY'
import http.client, json, os, random, signal, sys, threading, time
e = os.environ
port, host = int(e["LB_PORT"]), f"{e['SLUG']}.localhost"
rate, senders, retry = float(e["RATE"]), int(e["SENDERS"]), int(e["RETRY_MS"]) / 1000
stop_file, out, deadline = e["STOP_FILE"], e["OUT"], time.time() + float(e["MAX_SECONDS"])
stopping = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopping.set())
records = [[] for _ in range(senders)]

def stopped():
    if not stopping.is_set() and (os.path.exists(stop_file) or time.time() > deadline):
        stopping.set()
    return stopping.is_set()

def sender(i):
    interval = senders / rate
    next_at = time.monotonic() + random.random() * interval
    conn, n, mine = None, 0, records[i]
    while not stopped():
        n += 1
        run = f"{i}-{n}"
        body = json.dumps({"run": run, "order": n, "total_cents": n * 7})
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at = max(next_at + interval, time.monotonic() - interval)
        while not stopped():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            sent = time.time()
            try:
                conn.request("POST", "/hooks/orders", body=body, headers={"Host": host, "Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                status, code = resp.status, "-"
                if status != 202:
                    try:
                        code = json.loads(data)["error"]["code"]
                    except Exception:
                        code = "?"
            except Exception as exc:
                status, code = 0, type(exc).__name__
                conn.close()
                conn = None
            mine.append(f"{sent:.6f} {time.time():.6f} {status} {run} {code}")
            if status == 202:
                break
            time.sleep(retry)

threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(out, "w") as f:
    f.write("\n".join(sorted(line for r in records for line in r)) + "\n")
PY
LB_PORT="$LB_PORT" SLUG="$SLUG" RATE="$RATE" SENDERS="$SENDERS" RETRY_MS="$RETRY_MS" STOP_FILE="$WORK_DIR/stop" \
    OUT="$WORK_DIR/load.txt" MAX_SECONDS=$((ROUNDS * (MOVE_TIMEOUT + SETTLE) + 120)) python3 "$WORK_DIR/load.py" &
LOAD_PID=$!
log "webhooks at $RATE/s from $SENDERS senders through tessera-lb"

# The database of a cluster.
cluster_url() { if [[ "$1" == b ]]; then echo "$B_URL"; else echo "$DIRECTORY_URL"; fi; }
q() { psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

: >"$WORK_DIR/moves.txt"
from=local
for round in $(seq 1 "$ROUNDS"); do
    to=b; [[ "$from" == b ]] && to=local
    sleep "$SETTLE"
    kill -0 "$LOAD_PID" 2>/dev/null || die "the senders stopped"
    held="$(q "$(cluster_url "$from")" -c "SELECT count(*) FROM $SCHEMA.executions")"
    log "move $round: $SLUG ($held executions) from $from to $to"
    began=$(date +%s.%N)
    set +e
    timeout "$MOVE_TIMEOUT" "$TESSERA" tenant move "$SLUG" --to "$to" 2>&1 \
        | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done >"$WORK_DIR/move-$round.log"
    rc=${PIPESTATUS[0]}
    set -e
    ended=$(date +%s.%N)
    sed 's/^[0-9.]* /    /' "$WORK_DIR/move-$round.log" >&2
    [[ $rc == 124 ]] && die "move $round did not finish within $MOVE_TIMEOUT s"
    [[ $rc == 0 ]] || die "move $round failed (exit status $rc)"
    # The directory routes to the target, which has the schema; the source has none.
    placed="$(q "$DIRECTORY_URL" -c "SELECT cluster_id || ' ' || (paused_until IS NULL) FROM platform.tenants WHERE slug = '$SLUG'")"
    [[ "$placed" == "$to true" ]] || die "after move $round the directory says: $placed"
    [[ "$(q "$(cluster_url "$to")" -c "SELECT count(*) FROM pg_namespace WHERE nspname = '$SCHEMA'")" == 1 ]] || die "no $SCHEMA in $to's database"
    [[ "$(q "$(cluster_url "$from")" -c "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_${SLUG}%'")" == 0 ]] || die "$SCHEMA still in $from's database"
    echo "$round $from $to $began $ended $held $WORK_DIR/move-$round.log" >>"$WORK_DIR/moves.txt"
    from=$to
done
sleep "$SETTLE"
touch "$WORK_DIR/stop"
wait "$LOAD_PID" || die "the senders failed"
LOAD_PID=""

# The tenant's home runs what was accepted; then every accepted run is there once.
HOME_URL="$(cluster_url "$from")"
for _ in $(seq 1 600); do
    left="$(q "$HOME_URL" -c "SELECT count(*) FROM $SCHEMA.executions WHERE state IN ('queued', 'running')")"
    [[ "$left" == 0 ]] && break
    sleep 0.2
done
[[ "$left" == 0 ]] || die "$left executions still unfinished 120 s after the load stopped"
awk '$3 == 202 {print $4}' "$WORK_DIR/load.txt" | sort >"$WORK_DIR/accepted.txt"
q "$HOME_URL" -c "SELECT trigger->'body'->>'run' FROM $SCHEMA.executions WHERE trigger->'body' ? 'run' AND trigger->'body'->>'run' <> 'model'" \
    | sort >"$WORK_DIR/stored.txt"
read -r not_succeeded total_home <<<"$(q "$HOME_URL" -F ' ' -c "SELECT count(*) FILTER (WHERE state <> 'succeeded'), count(*) FROM $SCHEMA.executions")"
accepted=$(wc -l <"$WORK_DIR/accepted.txt")
missing=$(comm -23 "$WORK_DIR/accepted.txt" "$WORK_DIR/stored.txt" | wc -l)
doubled=$(uniq -d "$WORK_DIR/stored.txt" | wc -l)
unasked=$(comm -13 "$WORK_DIR/accepted.txt" <(sort -u "$WORK_DIR/stored.txt") | wc -l)
uncertain=$(awk '$3 == 0' "$WORK_DIR/load.txt" | wc -l)
moves_done="$(q "$DIRECTORY_URL" -c "SELECT count(*) FROM platform.tenant_moves WHERE slug = '$SLUG' AND state = 'done'")"

# Warnings and errors the nodes and the load balancer logged.
log_problems() {
    local file="$1"
    sed 's/\x1b\[[0-9;]*m//g' "$file" | grep -E '(^|[[:space:]])(WARN|ERROR)[[:space:]]' || true
}
: >"$WORK_DIR/problems.txt"
for f in node-1.log node-2.log lb.log; do
    n=$(log_problems "$WORK_DIR/$f" | wc -l)
    echo "$f $n" >>"$WORK_DIR/problems.txt"
    if [[ $n -gt 0 ]]; then
        log "$f: $n warning/error lines; the most frequent:"
        log_problems "$WORK_DIR/$f" | sed -E 's/^[^ ]+ +//; s/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/<id>/g' \
            | cut -c1-240 | sort | uniq -c | sort -rn | head -n 5 >&2
    fi
done

WORK_DIR="$WORK_DIR" EXECUTIONS="$EXECUTIONS" RATE="$RATE" SENDERS="$SENDERS" RETRY_MS="$RETRY_MS" TARGET="$TARGET_PAUSE_MS" \
  ACCEPTED="$accepted" MISSING="$missing" DOUBLED="$doubled" UNASKED="$unasked" UNCERTAIN="$uncertain" \
  NOT_SUCCEEDED="$not_succeeded" TOTAL_HOME="$total_home" HOME_CLUSTER="$from" MOVES_DONE="$moves_done" \
  SCHEMA_SIZE="$schema_size" SETTLE="$SETTLE" python3 - <<'PY'
import collections, os, re
e = os.environ
work = e["WORK_DIR"]
attempts = []
for line in open(f"{work}/load.txt"):
    p = line.split()
    if len(p) == 5:
        attempts.append((float(p[0]), float(p[1]), int(p[2]), p[3], p[4]))

def pct(values, q):
    values = sorted(values)
    return values[max(0, -(-len(values) * q // 100) - 1)] if values else float("nan")

def window(t0, t1):
    inside = [a for a in attempts if a[1] >= t0 and a[0] <= t1]
    statuses = collections.Counter(f"{a[2]} {a[4]}" if a[2] != 202 else "202" for a in inside)
    answers = sorted(a[1] for a in attempts if a[2] == 202)
    # The longest stretch without an accepted webhook that overlaps the window.
    gap, at = 0.0, None
    for x, y in zip(answers, answers[1:]):
        if y >= t0 and x <= t1 and y - x > gap:
            gap, at = y - x, x
    latencies = [(a[1] - a[0]) * 1000 for a in inside if a[2] == 202]
    refused = [a for a in inside if a[2] == 503]
    span = (max(a[1] for a in refused) - min(a[0] for a in refused)) * 1000 if refused else 0.0
    return statuses, gap * 1000, at, latencies, span, len(refused)

print()
print(f"tenant move benchmark: {int(e['EXECUTIONS']):,} executions (two steps each, schema {e['SCHEMA_SIZE']}), "
      f"webhooks at {e['RATE']}/s from {e['SENDERS']} senders through tessera-lb (503 retried after {e['RETRY_MS']} ms)")
pauses, misses = [], 0
after = min(3.0, float(e["SETTLE"]))
for line in open(f"{work}/moves.txt"):
    rnd, src, dst, began, ended, held, path = line.split()
    began, ended = float(began), float(ended)
    text = open(path).read()
    m = re.search(r"moved from \S+ to \S+: (\d+) rows, (\d+) catch-up round\(s\), paused (\d+) ms, ([\d.]+)s in all", text)
    if not m:
        raise SystemExit(f"move {rnd}: no report line in its output:\n{text}")
    rows, rounds, paused, total = int(m[1]), int(m[2]), int(m[3]), float(m[4])
    pauses.append(paused)
    changes = ", ".join(re.findall(r"catch-up round \d+: (\d+) changed rows", text))
    stamps = {}
    for l in text.splitlines():
        t, _, msg = l.partition(" ")
        for key, pat in (("copied", "copied "), ("paused", "writes paused"), ("switched", "switched;"), ("exported", "exported to")):
            if msg.startswith(pat) or pat in msg[:40]:
                stamps.setdefault(key, float(t) - began)
    # What the senders saw: from the start of the move to AFTER s past its end
    # (a client may still be sent to the source then).
    statuses, gap, gap_at, lat, span, refused = window(began, ended + after)
    other = sorted((a for a in attempts if a[2] != 202 and began <= a[1] <= ended + after), key=lambda a: a[1])
    runs = []
    for a in other:
        label = f"{a[2]} {a[4]}"
        if runs and runs[-1][0] == label:
            runs[-1][2], runs[-1][3] = a[1], runs[-1][3] + 1
        else:
            runs.append([label, a[1], a[1], 1])
    base = [(a[1] - a[0]) * 1000 for a in attempts if a[2] == 202 and began - 5 <= a[0] < began]
    print(f"  move {rnd}: {src} -> {dst}, {int(held):,} executions: {rows:,} rows copied, {rounds} catch-up round(s) ({changes} changed rows), "
          f"paused {paused} ms, {total:.2f} s in all ({ended - began:.2f} s for the command)")
    print(f"      phases (s after the start): copy done {stamps.get('copied', float('nan')):.2f}, writes paused {stamps.get('paused', float('nan')):.2f}, "
          f"switched {stamps.get('switched', float('nan')):.2f}, source exported and dropped {stamps.get('exported', float('nan')):.2f}")
    print(f"      webhooks from its start to {after:g} s after its end: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    if runs:
        print("      not accepted (answered at s after the start): "
              + "; ".join(f"{r[0]} x{r[3]} {r[1] - began:.2f}-{r[2] - began:.2f}" for r in runs[:12]) + ("; ..." if len(runs) > 12 else ""))
    print(f"      503 from first to last {span:.0f} ms ({refused} answers); longest stretch without an accepted webhook {gap:.0f} ms"
          + (f" (from {gap_at - began:.2f} s after the start)" if gap_at else ""))
    print(f"      accepted webhook latency then p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, max {max(lat) if lat else float('nan'):.1f} ms"
          f" (5 s before it: p50 {pct(base, 50):.1f} ms, p99 {pct(base, 99):.1f} ms)")
    if paused >= int(e["TARGET"]):
        misses += 1
every = collections.Counter(f"{a[2]} {a[4]}" if a[2] != 202 else "202" for a in attempts)
first, last = min(a[0] for a in attempts), max(a[1] for a in attempts)
print(f"  load: {len(attempts):,} attempts over {last - first:.1f} s, {int(e['ACCEPTED']) / (last - first):.1f} accepted/s; "
      + ", ".join(f"{k}: {v}" for k, v in sorted(every.items())))
print(f"  check ({e['HOME_CLUSTER']}, after {e['MOVES_DONE']} moves recorded done): {int(e['ACCEPTED']):,} accepted runs, {e['MISSING']} missing, "
      f"{e['DOUBLED']} stored twice, {e['UNASKED']} stored but never accepted ({e['UNCERTAIN']} attempts without an answer); "
      f"{int(e['TOTAL_HOME']):,} executions, {e['NOT_SUCCEEDED']} not succeeded")
problems = [l.split() for l in open(f"{work}/problems.txt")]
print("  warnings/errors logged: " + ", ".join(f"{name} {n}" for name, n in problems))
print(f"  target pause < {int(e['TARGET'])} ms: {'met' if misses == 0 else 'NOT MET'} (max {max(pauses)} ms over {len(pauses)} moves)")
PY
[[ "$missing" == 0 && "$not_succeeded" == 0 ]] || die "accepted webhooks lost ($missing) or executions not succeeded ($not_succeeded)"
[[ "$doubled" == 0 || "$uncertain" -gt 0 ]] || die "$doubled runs stored twice"
report_load
