#!/usr/bin/env bash
# The load balancer's cost: the same requests sent straight to a node,
# through `tessera-lb`, and through nginx (Debian's package) configured as
# the same proxy (keep-alive pool to the node, the X-Forwarded-* headers),
# against the same node in the same run.
#
# One node, TENANTS tenants. Two workloads, each in every mode:
#   healthz  GET /healthz on a tenant's host: the node does almost nothing,
#            so the difference between modes is the proxy itself;
#   read     GET /api/variables/bench with the tenant owner's token: a
#            token check and a one-row read through the node.
# wrk rotates over the tenants' hosts (bench/tenancy.lua's scheme). The
# modes alternate ROUNDS times after one unmeasured warm-up round each;
# the best run of each mode is reported with its p99, and the ratios
# against direct.
#
# Settings (environment): TENANTS=20 DURATION=15s CONNECTIONS=32 THREADS=1
# ROUNDS=2, NGINX_WORKERS=1 (nginx's worker processes) and LB_THREADS
# (tessera-lb's runtime threads, TOKIO_WORKER_THREADS; default: one per
# core), plus those of lib.sh (SKIP_BUILD, KEEP_DB, PG*).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TENANTS="${TENANTS:-20}"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
ROUNDS="${ROUNDS:-2}"
NGINX_WORKERS="${NGINX_WORKERS:-1}"
LB_THREADS="${LB_THREADS:-}"
OWNER_EMAIL="owner@bench.test"
OWNER_PASSWORD="bench-platform-owner-pass"
TENANT_PASSWORD="bench-tenant-owner-pass"

[[ "$DURATION" =~ ^[0-9]{1,4}[sm]?$ ]] || { echo "DURATION must be a wrk duration such as 15s" >&2; exit 2; }
[[ "$TENANTS" =~ ^[0-9]+$ && "$TENANTS" -ge 1 && "$TENANTS" -le 500 ]] || { echo "TENANTS must be 1..500" >&2; exit 2; }
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 && "$CONNECTIONS" -le 999 ]] || { echo "CONNECTIONS must be 1..999" >&2; exit 2; }
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 && "$THREADS" -le 16 ]] || { echo "THREADS must be 1..16" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 10 ]] || { echo "ROUNDS must be 1..10" >&2; exit 2; }
[[ "$NGINX_WORKERS" =~ ^[0-9]+$ && "$NGINX_WORKERS" -ge 1 && "$NGINX_WORKERS" -le 64 ]] || { echo "NGINX_WORKERS must be 1..64" >&2; exit 2; }
[[ -z "$LB_THREADS" || ( "$LB_THREADS" =~ ^[0-9]+$ && "$LB_THREADS" -ge 1 && "$LB_THREADS" -le 64 ) ]] || { echo "LB_THREADS must be 1..64" >&2; exit 2; }

bench_init loadbalancer
need wrk
need nginx
build_tessera
build_lb
fresh_database tessera_bench_lb
export TESSERA_LOG__LEVEL=warn TESSERA_AUTH__LOGIN_PER_ACCOUNT_PER_MINUTE=100000 TESSERA_AUTH__LOGIN_PER_ADDRESS_PER_MINUTE=100000
# The proxies' X-Forwarded-For is believed, as in a real deployment.
export TESSERA_AUTH__TRUSTED_PROXIES=127.0.0.1/32

"$TESSERA" migrate >/dev/null
"$TESSERA" platform init --email "$OWNER_EMAIL" --password "$OWNER_PASSWORD" >/dev/null
log "creating $TENANTS tenants"
export TESSERA TENANT_PASSWORD
SLUGS="$(seq -f "lb-%03g" 1 "$TENANTS" | paste -sd, -)"
tr ',' '\n' <<<"$SLUGS" | xargs -P 4 -I{} sh -c \
    '"$TESSERA" tenant create "$1" --owner-email "owner@$1.test" --owner-password "$TENANT_PASSWORD" >/dev/null' _ {}
start_server

# Each owner signs in and writes the variable the read workload reads.
TOKENS="$WORK_DIR/tokens"
PORT="$PORT" SLUGS="$SLUGS" python3 - >"$TOKENS" <<'PY' || die "sign the owners in"
import http.client, json, os
port = int(os.environ["PORT"])
for slug in os.environ["SLUGS"].split(","):
    host = f"{slug}.localhost:{port}"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"email": f"owner@{slug}.test", "password": os.environ["TENANT_PASSWORD"]})
    c.request("POST", "/api/auth/login", body, {"Host": host, "Content-Type": "application/json"})
    r = c.getresponse(); data = json.loads(r.read())
    assert r.status == 200, (slug, r.status, data)
    token = data["token"]
    c.request("PUT", "/api/variables/bench", json.dumps({"value": {"tenant": slug}}),
              {"Host": host, "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    r = c.getresponse(); r.read()
    assert r.status in (200, 201), (slug, r.status)
    print(f"{slug} {token}")
PY

# tessera-lb over the directory (this database), on its own port.
LB_PORT="$(free_port)"
TESSERA_LB_LISTEN="127.0.0.1:$LB_PORT" TESSERA_BASE_DOMAIN=localhost TESSERA_LB_LOG__LEVEL=warn \
    env ${LB_THREADS:+TOKIO_WORKER_THREADS="$LB_THREADS"} "$LB_BIN" >"$WORK_DIR/lb.log" 2>&1 &
LB_PID=$!

# nginx as the same proxy: one upstream with a keep-alive pool, the same headers.
NGINX_PORT="$(free_port)"
mkdir -p "$WORK_DIR/nginx/logs"
cat >"$WORK_DIR/nginx/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
daemon off;
error_log $WORK_DIR/nginx/logs/error.log warn;
pid $WORK_DIR/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK_DIR/nginx/body;
    proxy_temp_path $WORK_DIR/nginx/proxy;
    upstream node { server 127.0.0.1:$PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        client_max_body_size 16m;
        location / {
            proxy_pass http://node;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_buffering off;
        }
    }
}
EOF
nginx -p "$WORK_DIR/nginx" -c "$WORK_DIR/nginx/nginx.conf" >"$WORK_DIR/nginx.log" 2>&1 &
NGINX_PID=$!
stop_proxies() { kill -TERM "$LB_PID" "$NGINX_PID" 2>/dev/null || true; wait "$LB_PID" "$NGINX_PID" 2>/dev/null || true; }
# The exit status reaches lib.sh's cleanup (`&& ... ||`: a failing command
# in an EXIT trap ends it under set -e).
stop_proxies_keeping_status() { local rc=$?; stop_proxies; return $rc; }
trap 'stop_proxies_keeping_status && cleanup || cleanup' EXIT

# Both proxies route to the node (the load balancer once its health check
# found it) before anything is measured.
first="${SLUGS%%,*}"
for port in "$LB_PORT" "$NGINX_PORT"; do
    ok=0
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null -H "Host: $first.localhost" "http://127.0.0.1:$port/healthz" 2>/dev/null; then ok=1; break; fi
        sleep 0.1
    done
    [[ $ok == 1 ]] || { cat "$WORK_DIR/lb.log" "$WORK_DIR/nginx/logs/error.log" >&2 2>/dev/null; die "no route through port $port"; }
done
log "node :$PORT, tessera-lb :$LB_PORT, nginx :$NGINX_PORT"

# wrk script: rotate over the tenants; `read` adds each one's token.
cat >"$WORK_DIR/rotate.lua" <<'EOF'
local entries = {}
local i = 0
function init(args)
  local workload, file, port = args[1], args[2], args[3]
  for line in io.lines(file) do
    local slug, token = line:match("^(%S+) (%S+)$")
    entries[#entries + 1] = { host = slug .. ".localhost:" .. port, token = token }
  end
  path = workload == "read" and "/api/variables/bench" or "/healthz"
  with_token = workload == "read"
end
function request()
  i = i % #entries + 1
  local e = entries[i]
  local headers = { Host = e.host }
  if with_token then headers["Authorization"] = "Bearer " .. e.token end
  return wrk.format("GET", path, headers)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %.3f %.3f\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
EOF

# run MODE WORKLOAD DURATION: prints "req/s errors p50 p99".
run() {
    local mode="$1" workload="$2" duration="$3" port
    case "$mode" in direct) port="$PORT" ;; tessera-lb) port="$LB_PORT" ;; nginx) port="$NGINX_PORT" ;; esac
    local out
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --latency -s "$WORK_DIR/rotate.lua" \
        "http://127.0.0.1:$port" -- "$workload" "$TOKENS" "$port")"
    local rps result
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    result="$(awk '/^RESULT/ {print $3, $4, $5}' <<<"$out")"
    echo "$rps $result"
}

declare -A BEST_RPS BEST_P99 BEST_P50 ERRORS
for workload in healthz read; do
    for mode in direct tessera-lb nginx; do run "$mode" "$workload" 5s >/dev/null; done
    for round in $(seq 1 "$ROUNDS"); do
        for mode in direct tessera-lb nginx; do
            read -r rps errors p50 p99 <<<"$(run "$mode" "$workload" "$DURATION")"
            log "$workload $mode round $round: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors $errors"
            key="$workload/$mode"
            ERRORS[$key]=$(( ${ERRORS[$key]:-0} + errors ))
            if [[ -z "${BEST_RPS[$key]:-}" ]] || awk -v a="$rps" -v b="${BEST_RPS[$key]}" 'BEGIN {exit !(a > b)}'; then
                BEST_RPS[$key]="$rps"; BEST_P99[$key]="$p99"; BEST_P50[$key]="$p50"
            fi
        done
    done
done

echo
echo "load balancer: $TENANTS tenants, wrk -t$THREADS -c$CONNECTIONS -d$DURATION, best of $ROUNDS; nginx workers $NGINX_WORKERS, tessera-lb threads ${LB_THREADS:-one per core}"
printf '  %-8s %-11s %10s %9s %9s %12s %8s\n' workload mode "req/s" "p50 ms" "p99 ms" "vs direct" errors
for workload in healthz read; do
    for mode in direct tessera-lb nginx; do
        key="$workload/$mode"
        ratio="$(awk -v a="${BEST_RPS[$key]}" -v b="${BEST_RPS[$workload/direct]}" 'BEGIN {printf "%.3f", a / b}')"
        added="$(awk -v a="${BEST_P99[$key]}" -v b="${BEST_P99[$workload/direct]}" 'BEGIN {printf "%+.2f", a - b}')"
        printf '  %-8s %-11s %10s %9s %9s %5s p99 %s %8s\n' "$workload" "$mode" "${BEST_RPS[$key]}" "${BEST_P50[$key]}" "${BEST_P99[$key]}" "$ratio" "$added" "${ERRORS[$key]}"
    done
done
for workload in healthz read; do
    ratio="$(awk -v a="${BEST_RPS[$workload/tessera-lb]}" -v b="${BEST_RPS[$workload/nginx]}" 'BEGIN {printf "%.3f", a / b}')"
    echo "  $workload: tessera-lb / nginx throughput $ratio (target >= 1); p99 added over direct $(awk -v a="${BEST_P99[$workload/tessera-lb]}" -v b="${BEST_P99[$workload/direct]}" 'BEGIN {printf "%+.2f", a - b}') ms (target < 1)"
done
report_load
