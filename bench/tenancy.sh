#!/usr/bin/env bash
# What tenancy costs on the hot path: throughput and p99 of a one-row read
# through the tenant API (host resolution, directory lookup, account
# standing, the tenant's schema-qualified statement) versus the same read on
# the bench-only baseline route (same token check and query, none of the
# tenancy), in the same run.
#
# Target: tenant throughput at least 85% of baseline (cost <= 15%).
#
# Settings (environment): TENANTS=100 DURATION=20s CONNECTIONS=32 THREADS=1
# ROUNDS=2 WARMUP=5s, plus those of lib.sh (SKIP_BUILD, KEEP_DB, PG*).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TENANTS="${TENANTS:-100}"
DURATION="${DURATION:-20s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
ROUNDS="${ROUNDS:-2}"
WARMUP="${WARMUP:-5s}"
TARGET_COST_PCT=15
OWNER_EMAIL="owner@bench.test"
OWNER_PASSWORD="bench-platform-owner-pass"

[[ "$TENANTS" =~ ^[0-9]+$ && "$TENANTS" -ge 1 && "$TENANTS" -le 10000 ]] || { echo "TENANTS must be 1..10000" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 10 ]] || { echo "ROUNDS must be 1..10" >&2; exit 2; }
for v in DURATION WARMUP; do
    [[ "${!v}" =~ ^[0-9]{1,4}[sm]?$ ]] || { echo "$v must be a wrk duration such as 20s or 2m" >&2; exit 2; }
done
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 && "$CONNECTIONS" -le 1000 ]] || { echo "CONNECTIONS must be 1..1000" >&2; exit 2; }
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 && "$THREADS" -le "$CONNECTIONS" ]] || { echo "THREADS must be 1..CONNECTIONS" >&2; exit 2; }

bench_init tenancy
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi
need wrk
# The baseline routes exist only in a binary built with this feature.
BENCH_FEATURES=bench-routes build_tessera
fresh_database tessera_bench_tenancy

"$TESSERA" migrate >/dev/null
"$TESSERA" platform init --email "$OWNER_EMAIL" --password "$OWNER_PASSWORD" >/dev/null

# Logins are argon2-verified and throttled; the setup logs in 101 accounts
# from one address, so lift the limits for this server only.
TESSERA_BENCH_ROUTES=true \
TESSERA_AUTH__LOGIN_PER_ADDRESS_PER_MINUTE=100000 \
TESSERA_AUTH__LOGIN_PER_ACCOUNT_PER_MINUTE=1000 \
    start_server

TENANTS_FILE="$WORK_DIR/tenants.txt"
log "creating $TENANTS tenants, a variable in each, and a token per owner"
PORT="$PORT" TENANTS="$TENANTS" OUT="$TENANTS_FILE" OWNER_EMAIL="$OWNER_EMAIL" OWNER_PASSWORD="$OWNER_PASSWORD" python3 - <<'PY'
import http.client, json, os, sys

port, n, out = int(os.environ["PORT"]), int(os.environ["TENANTS"]), os.environ["OUT"]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

def call(method, path, host, body=None, token=None, expect=(200,)):
    headers = {"Host": host}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status not in expect:
        sys.exit(f"{method} {path} on {host}: HTTP {resp.status}: {data[:300]!r}")
    return json.loads(data) if data else None

platform = f"localhost:{port}"
owner = call("POST", "/api/auth/login", platform,
             {"email": os.environ["OWNER_EMAIL"], "password": os.environ["OWNER_PASSWORD"]})["token"]
lines = []
for i in range(1, n + 1):
    slug = f"bench-{i:04d}"
    created = call("POST", "/api/platform/tenants", platform,
                   {"slug": slug, "owner_email": f"owner@{slug}.test", "owner_password": "bench-tenant-owner-pass"},
                   token=owner, expect=(201,))
    assert created["tenant"]["slug"] == slug, created
    schema = "t_" + slug.replace("-", "_")  # the schema naming rule (tenancy/slug.rs)
    host = f"{slug}.localhost:{port}"
    token = call("POST", "/api/auth/login", host,
                 {"email": f"owner@{slug}.test", "password": "bench-tenant-owner-pass"})["token"]
    call("PUT", "/api/variables/bench", host, {"value": {"tenant": slug, "n": i}}, token=token)
    lines.append(f"{slug} {schema} {token}\n")
with open(out, "w") as f:
    f.writelines(lines)
PY

# Sanity: both routes answer 200 with this tenant's own value, for every tenant.
log "checking both routes answer 200 with each tenant's value"
PORT="$PORT" FILE="$TENANTS_FILE" python3 - <<'PY'
import http.client, json, os, sys
port = int(os.environ["PORT"])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for n, line in enumerate(open(os.environ["FILE"]), start=1):
    slug, schema, token = line.split()
    expected = {"tenant": slug, "n": int(slug.split("-")[1])}
    for path, host in (("/api/variables/bench", f"{slug}.localhost:{port}"),
                       (f"/bench/baseline/{schema}/variables/bench", f"localhost:{port}")):
        conn.request("GET", path, headers={"Host": host, "Authorization": "Bearer " + token})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            sys.exit(f"sanity: GET {path} on {host}: HTTP {resp.status}: {body[:300]!r}")
        value = json.loads(body).get("value")
        if value != expected:
            sys.exit(f"sanity: GET {path} on {host} returned {value!r}, expected {expected!r}")
print(f"sanity: {n} tenants, both routes 200 with the expected value", file=sys.stderr)
PY
first="$(head -n1 "$TENANTS_FILE")"
read -r slug schema token <<<"$first"
curl -fsS -H "Host: $slug.localhost:$PORT" -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$PORT/api/variables/bench" >/dev/null || die "curl: tenant route"
curl -fsS -H "Host: localhost:$PORT" -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$PORT/bench/baseline/$schema/variables/bench" >/dev/null || die "curl: baseline route"

RESULTS="$WORK_DIR/results.jsonl"
: >"$RESULTS"

# CPU time (clock ticks) used so far by the server and by the PostgreSQL
# backends serving this database (0 when PostgreSQL is not on this host):
# CPU per request explains where the time goes even when other work on the
# machine moves the throughput figures.
cpu_ticks() {
    local pids
    pids="$(db_psql -tA -c "SELECT coalesce(string_agg(pid::text, ' '), '') FROM pg_stat_activity \
        WHERE datname = current_database() AND pid <> pg_backend_pid()")"
    python3 - "$SERVER_PID" $pids <<'PY'
import sys
def ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0
print(ticks(sys.argv[1]), sum(ticks(p) for p in sys.argv[2:]))
PY
}

# run_wrk MODE DURATION LABEL: one wrk run; appends its figures to RESULTS
# (unless LABEL is "warmup") and fails on any error or non-2xx response.
run_wrk() {
    local mode="$1" duration="$2" label="$3" out before after
    out="$WORK_DIR/wrk-$mode-$label.txt"
    before="$(cpu_ticks)"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 10s --latency \
        -s "$BENCH_DIR/tenancy.lua" "http://127.0.0.1:$PORT" -- "$mode" "$TENANTS_FILE" "$PORT" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk ($mode) exited with an error"; }
    after="$(cpu_ticks)"
    local json
    json="$(sed -n 's/^WRK_JSON //p' "$out")"
    [[ -n "$json" ]] || { cat "$out" >&2; die "wrk ($mode) printed no summary"; }
    if grep -q "Non-2xx or 3xx responses" "$out"; then
        grep "Non-2xx or 3xx responses" "$out" >&2
        die "wrk ($mode, $label): non-2xx responses"
    fi
    MODE="$mode" LABEL="$label" JSON="$json" BEFORE="$before" AFTER="$after" python3 - >>"$RESULTS" <<'PY'
import json, os, sys
r = json.loads(os.environ["JSON"])
errors = {k: v for k, v in r.items() if k.startswith("errors_") and v}
if errors:
    sys.exit(f"wrk ({os.environ['MODE']}, {os.environ['LABEL']}): errors {errors}")
r.update(mode=os.environ["MODE"], label=os.environ["LABEL"])
(s0, p0), (s1, p1) = (map(int, os.environ[k].split()) for k in ("BEFORE", "AFTER"))
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
r["server_cpu_us"] = (s1 - s0) * tick_us / r["requests"]
r["pg_cpu_us"] = (p1 - p0) * tick_us / r["requests"] if p1 > p0 else None
pg = f"{r['pg_cpu_us']:.0f}" if r["pg_cpu_us"] is not None else "n/a"
print(f"  {r['mode']:<8} {r['label']:<8} {r['rps']:>10.1f} req/s  p50 {r['p50_ms']:.2f} ms  "
      f"p99 {r['p99_ms']:.2f} ms  ({r['requests']} requests; CPU per request: server "
      f"{r['server_cpu_us']:.0f} us, PostgreSQL {pg} us)", file=sys.stderr)
if r["label"] != "warmup":
    print(json.dumps(r))
PY
}

log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; $TENANTS tenants rotated per request"
run_wrk baseline "$WARMUP" warmup
run_wrk tenant "$WARMUP" warmup
for round in $(seq 1 "$ROUNDS"); do
    run_wrk baseline "$DURATION" "run$round"
    run_wrk tenant "$DURATION" "run$round"
done

stop_server

TARGET_COST_PCT="$TARGET_COST_PCT" RESULTS="$RESULTS" python3 - <<'PY'
import json, os, sys
runs = [json.loads(l) for l in open(os.environ["RESULTS"])]
best = {m: max((r for r in runs if r["mode"] == m), key=lambda r: r["rps"]) for m in ("baseline", "tenant")}
b, t = best["baseline"], best["tenant"]
ratio = t["rps"] / b["rps"]
cost = (1 - ratio) * 100
target = float(os.environ["TARGET_COST_PCT"])
print()
print("tenancy benchmark (best of each mode)")
print(f"  baseline (no tenancy): {b['rps']:10.1f} req/s   p50 {b['p50_ms']:7.2f} ms   p99 {b['p99_ms']:7.2f} ms")
print(f"  tenant API           : {t['rps']:10.1f} req/s   p50 {t['p50_ms']:7.2f} ms   p99 {t['p99_ms']:7.2f} ms")
print(f"  throughput ratio tenant/baseline: {ratio:.3f}  (cost {cost:.1f}%)")
print(f"  p99 ratio tenant/baseline:        {t['p99_ms'] / b['p99_ms']:.3f}")
def cpu(mode):
    # Median over the measured runs of that mode: steadier than the best run.
    vals = sorted(r["server_cpu_us"] for r in runs if r["mode"] == mode)
    pgs = sorted(r["pg_cpu_us"] for r in runs if r["mode"] == mode and r["pg_cpu_us"] is not None)
    med = lambda v: v[len(v) // 2] if v else None
    return med(vals), med(pgs)
for mode in ("baseline", "tenant"):
    server, pg = cpu(mode)
    pg_text = f"{pg:.0f} us" if pg is not None else "n/a"
    print(f"  CPU per request, {mode:<8}: server {server:.0f} us, PostgreSQL {pg_text}")
met = cost <= target
print(f"  target: cost <= {target:.0f}%  ->  {'MET' if met else 'NOT MET'}")
PY
report_load
