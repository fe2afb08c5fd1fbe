#!/usr/bin/env bash
# Many idle tenants on one node: memory per idle tenant worker and node
# start-up time.
#
# N tenants are created with `tessera tenant create` (the real provisioning
# path, CREATE_PARALLELISM processes at a time). The first one gets an idle
# integration with a schedule trigger (cron, once a year) through
# POST /api/apply; the others get the same stored rows copied by SQL (what
# an apply stores: the integration and its immutable version), because N
# logins and applies would cost N argon2 verifications for nothing measured.
#
# Then: a node is started on the database with no tenants active (all
# suspended) → its RSS; the node is stopped, the tenants are resumed, and a
# node is started again → time from process start until GET
# /api/platform/node lists N running workers, and its RSS once settled.
# Per-worker memory = (RSS with N workers - RSS with none) / N: everything
# the node holds per tenant (worker task, channel, supervisor entry,
# directory cache entry, statement caches), an upper bound.
#
# Target: < 50 KiB per idle tenant worker.
#
# Settings (environment): N=10000 CREATE_PARALLELISM=4 SETTLE=10 (seconds
# between "all listed" and reading RSS), plus those of lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${N:-10000}"
CREATE_PARALLELISM="${CREATE_PARALLELISM:-4}"
SETTLE="${SETTLE:-10}"
TARGET_KIB=50
OWNER_EMAIL="owner@bench.test"
OWNER_PASSWORD="bench-platform-owner-pass"

[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 100000 ]] || { echo "N must be 1..100000" >&2; exit 2; }
[[ "$CREATE_PARALLELISM" =~ ^[0-9]+$ && "$CREATE_PARALLELISM" -ge 1 && "$CREATE_PARALLELISM" -le 64 ]] || { echo "CREATE_PARALLELISM must be 1..64" >&2; exit 2; }
[[ "$SETTLE" =~ ^[0-9]+$ && "$SETTLE" -le 600 ]] || { echo "SETTLE must be 0..600" >&2; exit 2; }

bench_init idle_tenants
build_tessera
fresh_database tessera_bench_idle
export TESSERA_LOG__LEVEL=warn

"$TESSERA" migrate >/dev/null
"$TESSERA" platform init --email "$OWNER_EMAIL" --password "$OWNER_PASSWORD" >/dev/null

log "creating $N tenants, $CREATE_PARALLELISM at a time"
started=$(date +%s.%N)
export TESSERA
seq -f "idle-%05g" 1 "$N" | xargs -P "$CREATE_PARALLELISM" -I{} sh -c \
    '"$TESSERA" tenant create "$1" --owner-email "owner@$1.test" --owner-password bench-tenant-owner-pass >/dev/null' _ {}
log "created $N tenants in $(python3 -c "import time; print(f'{time.time() - $started:.1f}')") s"

# RSS (KiB) of the server process.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }

# Login as the platform owner; prints the token.
platform_token() {
    curl -fsS -H "Host: localhost:$PORT" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$OWNER_EMAIL\",\"password\":\"$OWNER_PASSWORD\"}" \
        "http://127.0.0.1:$PORT/api/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

workers() {
    curl -fsS -H "Host: localhost:$PORT" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/platform/node" \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["workers"]))'
}

# The idle integration, applied through the API in the first tenant.
start_server
FIRST=idle-00001
TENANT_TOKEN="$(curl -fsS -H "Host: $FIRST.localhost:$PORT" -H 'Content-Type: application/json' \
    -d "{\"email\":\"owner@$FIRST.test\",\"password\":\"bench-tenant-owner-pass\"}" \
    "http://127.0.0.1:$PORT/api/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
curl -fsS -o /dev/null -H "Host: $FIRST.localhost:$PORT" -H "Authorization: Bearer $TENANT_TOKEN" \
    -H 'Content-Type: application/yaml' --data-binary @- "http://127.0.0.1:$PORT/api/apply" <<'EOF' || die "apply"
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
stop_server
log "copying the stored integration to the other $((N - 1)) tenants"
db_psql >/dev/null <<'SQL'
-- Committed every 200 schemas: one transaction over 10,000 schemas would
-- need more locks than max_locks_per_transaction allows.
DO $$
DECLARE s text; n int := 0;
BEGIN
    FOR s IN SELECT schema_name FROM platform.tenants WHERE slug <> 'idle-00001' LOOP
        EXECUTE format('INSERT INTO %I.integrations SELECT * FROM t_idle_00001.integrations', s);
        EXECUTE format('INSERT INTO %I.integration_versions SELECT * FROM t_idle_00001.integration_versions', s);
        n := n + 1;
        IF n % 200 = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;
-- An apply marks its tenant as having work (its worker must run the schedule).
INSERT INTO platform.tenant_work (tenant_id) SELECT id FROM platform.tenants ON CONFLICT DO NOTHING;
SQL
with_integration="$(db_psql -tA -c "SELECT count(*) FROM platform.tenants")"
log "$with_integration tenants, each with the scheduled integration"

# Baseline: the same database, every tenant suspended (no worker).
db_psql -c "UPDATE platform.tenants SET status = 'suspended'" >/dev/null
start_server
TOKEN="$(platform_token)"
[[ "$(workers)" == 0 ]] || die "workers running with every tenant suspended"
sleep "$SETTLE"
rss_none="$(rss_kib)"
stop_server
db_psql -c "UPDATE platform.tenants SET status = 'active'" >/dev/null

# N workers: start-up time until all are listed, then RSS once settled.
t0=$(date +%s.%N)
start_server
t_ready=$(date +%s.%N)
TOKEN="$(platform_token)"
for i in $(seq 1 1200); do
    count="$(workers)"
    [[ "$count" == "$N" ]] && break
    sleep 0.1
done
t_all=$(date +%s.%N)
[[ "$count" == "$N" ]] || die "only $count of $N workers running after 120 s"
sleep "$SETTLE"
[[ "$(workers)" == "$N" ]] || die "workers died while idle"
rss_n="$(rss_kib)"
threads="$(awk '/^Threads:/ {print $2}' "/proc/$SERVER_PID/status")"
stop_server

N="$N" RSS_NONE="$rss_none" RSS_N="$rss_n" T0="$t0" T_READY="$t_ready" T_ALL="$t_all" TARGET="$TARGET_KIB" THREADS_="$threads" python3 - <<'PY'
import os
e = os.environ
n, none, full = int(e["N"]), int(e["RSS_NONE"]), int(e["RSS_N"])
per = (full - none) / n
print()
print(f"idle tenants benchmark ({n} active tenants, each with an idle scheduled integration)")
print(f"  node start-up: healthy after {float(e['T_READY']) - float(e['T0']):.2f} s, "
      f"all {n} workers listed after {float(e['T_ALL']) - float(e['T0']):.2f} s")
print(f"  RSS with no tenants active: {none / 1024:.1f} MiB; with {n} workers: {full / 1024:.1f} MiB ({e['THREADS_']} threads)")
print(f"  per idle tenant: {per:.1f} KiB  (target < {e['TARGET']} KiB: {'met' if per < float(e['TARGET']) else 'NOT MET'})")
PY
report_load
