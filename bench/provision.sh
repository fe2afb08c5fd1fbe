#!/usr/bin/env bash
# Provisioning latency: N tenants created one after another through
# POST /api/platform/tenants (each: owner password hashed with argon2id, then
# one transaction creating the tenant row, schema, tables, migration history
# and owner). Each request is timed on one keep-alive connection.
#
# Target: p50 < 100 ms.
#
# Settings (environment): N=1000, plus those of lib.sh (SKIP_BUILD, KEEP_DB, PG*).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${N:-1000}"
TARGET_P50_MS=100
OWNER_EMAIL="owner@bench.test"
OWNER_PASSWORD="bench-platform-owner-pass"

[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 100000 ]] || { echo "N must be 1..100000" >&2; exit 2; }

bench_init provision
build_tessera
fresh_database tessera_bench_provision

"$TESSERA" migrate >/dev/null
"$TESSERA" platform init --email "$OWNER_EMAIL" --password "$OWNER_PASSWORD" >/dev/null
start_server

log "provisioning $N tenants one after another"
PORT="$PORT" N="$N" TARGET_P50_MS="$TARGET_P50_MS" OWNER_EMAIL="$OWNER_EMAIL" OWNER_PASSWORD="$OWNER_PASSWORD" python3 - <<'PY'
import http.client, json, math, os, sys, time

port, n = int(os.environ["PORT"]), int(os.environ["N"])
target = float(os.environ["TARGET_P50_MS"])
host = f"localhost:{port}"
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

def post(path, body, token=None):
    headers = {"Host": host, "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()

status, body = post("/api/auth/login", {"email": os.environ["OWNER_EMAIL"], "password": os.environ["OWNER_PASSWORD"]})
if status != 200:
    sys.exit(f"platform login: HTTP {status}: {body[:300]!r}")
token = json.loads(body)["token"]

latencies = []
started = time.perf_counter()
for i in range(1, n + 1):
    slug = f"prov-{i:06d}"
    body = {"slug": slug, "owner_email": f"owner@{slug}.test", "owner_password": "bench-tenant-owner-pass"}
    t0 = time.perf_counter()
    status, data = post("/api/platform/tenants", body, token)
    latencies.append(time.perf_counter() - t0)
    if status != 201:
        sys.exit(f"tenant {slug}: HTTP {status}: {data[:300]!r}")
    if i % 100 == 0:
        print(f"  {i}/{n} created", file=sys.stderr)
total = time.perf_counter() - started

def pct(p):
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

first, last = latencies[: max(1, n // 10)], latencies[-max(1, n // 10):]
p50 = pct(50)
print()
print(f"provisioning benchmark: {n} tenants, one request at a time (nearest-rank percentiles)")
print(f"  p50 {p50:8.1f} ms")
print(f"  p90 {pct(90):8.1f} ms")
print(f"  p99 {pct(99):8.1f} ms")
print(f"  max {max(latencies) * 1000:8.1f} ms")
print(f"  mean {sum(latencies) / n * 1000:7.1f} ms; first 10% mean {sum(first) / len(first) * 1000:.1f} ms, "
      f"last 10% mean {sum(last) / len(last) * 1000:.1f} ms")
print(f"  total {total:.1f} s ({n / total:.1f} tenants/s)")
print(f"  target: p50 < {target:.0f} ms  ->  {'MET' if p50 < target else 'NOT MET'}")
PY

# Every tenant must exist, active and at the latest schema version.
count="$(db_psql -tA -c "SELECT count(*) FROM platform.tenants WHERE status = 'active' AND slug LIKE 'prov-%'")"
[[ "$count" == "$N" ]] || die "expected $N tenants in platform.tenants, found $count"
log "verified: $count tenants in platform.tenants"
report_load
