#!/usr/bin/env bash
# Noisy neighbour: the quiet tenant's trigger-to-completion p99 alone, and
# again while a noisy tenant floods the node with failing, timing-out and
# CPU-heavy executions; same node, same script, ratio printed.
#
# quiet: `ping` (transform → log), driven by wrk at QUIET_CONNECTIONS,
#        capped at QUIET_RATE webhooks/s (a steady tenant, not a flood).
# noisy: webhooks rotating over `fails` (a fail step), `slow` (a 1 h delay
#        under a 1 s execution timeout), `heavy` (a jq expression building a
#        200,000-element array) and `burst` (transform → log: the flood),
#        driven by wrk at NOISY_CONNECTIONS with no cap: far more than the
#        node runs.
# hostile: a third run, the quiet tenant next to a tenant whose every
#        expression runs to a limit of the sandbox: `spin` (last(range(1e12)),
#        stopped by the evaluation's deadline), `recurse` (def f: f + 1; f,
#        stopped at its stack limit), `hoard` (a 200,000-string array of
#        1 KB each, stopped by the memory budget) and `fan` (a value whose
#        parts are shared 2^40 times over, stopped by the result size),
#        driven by wrk at HOSTILE_CONNECTIONS with no cap. The node must not
#        abort: its process is checked after the run.
# (Panics cannot be provoked from a definition.)
#
# Figures come from the database: p50/p99 of `finished_at - created_at` of
# the quiet tenant's executions finished in each window. The noisy
# tenant's backlog is left behind (it is the flood), not drained. Each
# window starts with `VACUUM ANALYZE`, as autovacuum would do on a
# deployed database: on one that runs without it (CI's), statistics and
# cached plans grow stale as the tables grow and the later windows would
# be slower for that alone (docs/performance.md, 6c).
#
# Settings (environment): DURATION=30s QUIET_CONNECTIONS=4 QUIET_RATE=50
# NOISY_CONNECTIONS=32 HOSTILE_CONNECTIONS=8, plus those of lib.sh
# (SKIP_BUILD, KEEP_DB, PG*).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-30s}"
QUIET_CONNECTIONS="${QUIET_CONNECTIONS:-4}"
NOISY_CONNECTIONS="${NOISY_CONNECTIONS:-32}"
QUIET_RATE="${QUIET_RATE:-50}"
HOSTILE_CONNECTIONS="${HOSTILE_CONNECTIONS:-8}"
PASSWORD="bench-tenant-owner-pass"

[[ "$DURATION" =~ ^[0-9]{1,4}[sm]?$ ]] || { echo "DURATION must be a wrk duration such as 30s" >&2; exit 2; }
for v in QUIET_CONNECTIONS NOISY_CONNECTIONS QUIET_RATE HOSTILE_CONNECTIONS; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -ge 1 && "${!v}" -le 1000 ]] || { echo "$v must be 1..1000" >&2; exit 2; }
done

bench_init noisy_neighbour
need wrk
build_tessera
fresh_database tessera_bench_noisy
export TESSERA_LOG__LEVEL=warn
"$TESSERA" migrate >/dev/null
for slug in quiet noisy hostile; do
    "$TESSERA" tenant create "$slug" --owner-email "owner@$slug.test" --owner-password "$PASSWORD" >/dev/null
done
start_server

apply() { # slug, YAML on stdin
    local token
    token="$(curl -fsS -H "Host: $1.localhost:$PORT" -H 'Content-Type: application/json' \
        -d "{\"email\":\"owner@$1.test\",\"password\":\"$PASSWORD\"}" "http://127.0.0.1:$PORT/api/auth/login" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
    curl -fsS -o /dev/null -H "Host: $1.localhost:$PORT" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/yaml' --data-binary @- "http://127.0.0.1:$PORT/api/apply" || die "apply in $1"
}

hooked() { # name, spec lines before triggers, steps
    printf 'apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: %s\nspec:\n%s  triggers:\n    - webhook:\n        auth: none\n  steps:\n%s\n---\n' "$1" "$2" "$3"
}
PING='    - name: shape
      transform:
        expression: "{n: .trigger.body.order}"
    - name: report
      log:
        message: "ping ${{ .steps.shape.n }}"'
hooked ping "" "$PING" | apply quiet
{
    hooked burst "" "$PING"
    hooked fails "" '    - name: boom
      fail:
        message: "noisy failure"'
    hooked slow "  timeout: 1s
" '    - name: nap
      delay:
        duration: 1h'
    hooked heavy "" '    - name: churn
      transform:
        expression: "[range(0; 200000)] | length"'
} | apply noisy
{
    hooked spin "" '    - name: spin
      transform:
        expression: "last(range(1e12))"'
    hooked recurse "" '    - name: recurse
      transform:
        expression: "def f: f + 1; f"'
    hooked hoard "" '    - name: hoard
      transform:
        expression: "[range(200000)] | map(tostring * 200) | length"'
    hooked fan "" '    - name: fan
      transform:
        expression: "reduce range(40) as $i ([0]; [., .])"'
} | apply hostile

QUIET_PAUSE_MS=$((QUIET_CONNECTIONS * 1000 / QUIET_RATE))
wrk_run() { # label connections host paths pause_ms
    wrk -t1 -c"$2" -d"$DURATION" --timeout 10s -s "$BENCH_DIR/hooks.lua" "http://127.0.0.1:$PORT" -- "$3" "$4" "$5" \
        >"$WORK_DIR/wrk-$1.txt" 2>&1 || { cat "$WORK_DIR/wrk-$1.txt" >&2; die "wrk ($1)"; }
}

quiet_figures() { # t0 t1 → "count failed p50 p99"
    db_psql -tA -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE state <> 'succeeded'),
        round(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - created_at))::numeric, 2),
        round(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY finished_at - created_at))::numeric, 2)
        FROM t_quiet.executions WHERE finished_at >= '$1' AND finished_at < '$2'"
}

log "quiet alone: wrk -c$QUIET_CONNECTIONS -d$DURATION"
db_psql -q -c 'VACUUM ANALYZE'
t0="$(db_psql -tA -c 'SELECT now()')"
wrk_run alone "$QUIET_CONNECTIONS" "quiet.localhost:$PORT" /hooks/ping "$QUIET_PAUSE_MS"
t1="$(db_psql -tA -c 'SELECT now()')"
read -r alone_n alone_failed alone_p50 alone_p99 <<<"$(quiet_figures "$t0" "$t1")"

# The quiet tenant beside another one flooding `paths` on `connections`:
# "count failed p50 p99" of the quiet tenant in that window.
beside() { # label slug connections paths
    log "quiet with the $2 tenant: wrk -c$QUIET_CONNECTIONS (quiet) and -c$3 ($2) for $DURATION"
    local t0 t1 flood_pid
    db_psql -q -c 'VACUUM ANALYZE'
    t0="$(db_psql -tA -c 'SELECT now()')"
    wrk_run "$1" "$3" "$2.localhost:$PORT" "$4" 0 &
    flood_pid=$!
    wrk_run "quiet-$1" "$QUIET_CONNECTIONS" "quiet.localhost:$PORT" /hooks/ping "$QUIET_PAUSE_MS"
    wait "$flood_pid"
    t1="$(db_psql -tA -c 'SELECT now()')"
    quiet_figures "$t0" "$t1"
}

states() { # slug → "integration:state(code) count ..."
    db_psql -tA -F ' ' -c "SELECT integration || ':' || state || coalesce('(' || (error->>'code') || ')', ''), count(*) FROM t_$1.executions GROUP BY 1 ORDER BY 1" | tr '\n' ' '
}

read -r shared_n shared_failed shared_p50 shared_p99 <<<"$(beside noisy noisy "$NOISY_CONNECTIONS" /hooks/fails,/hooks/slow,/hooks/heavy,/hooks/burst)"
read -r hostile_n hostile_failed hostile_p50 hostile_p99 <<<"$(beside hostile hostile "$HOSTILE_CONNECTIONS" /hooks/spin,/hooks/recurse,/hooks/hoard,/hooks/fan)"
kill -0 "$SERVER_PID" 2>/dev/null && curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" || die "the node did not survive the hostile tenant"
hostile_states="$(states hostile)"
noisy_states="$(states noisy)"
stop_server

[[ "$alone_failed" == 0 && "$shared_failed" == 0 && "$hostile_failed" == 0 ]] \
    || die "quiet executions failed: $alone_failed alone, $shared_failed shared, $hostile_failed beside the hostile tenant"
echo
echo "noisy neighbour benchmark (quiet: transform → log, $QUIET_CONNECTIONS connections capped at $QUIET_RATE/s; noisy: $NOISY_CONNECTIONS connections, no cap)"
echo "  quiet alone     : $alone_n executions, trigger→completion p50 $alone_p50 ms, p99 $alone_p99 ms"
echo "  quiet with noisy: $shared_n executions, trigger→completion p50 $shared_p50 ms, p99 $shared_p99 ms"
python3 -c "print(f'  p99 ratio with/without the noisy tenant: {$shared_p99 / $alone_p99:.2f}')"
echo "  noisy tenant (state counts, backlog included): $noisy_states"
echo "  quiet beside the hostile tenant ($HOSTILE_CONNECTIONS connections, no cap): $hostile_n executions, p50 $hostile_p50 ms, p99 $hostile_p99 ms"
python3 -c "r = $hostile_p99 / $alone_p99; print(f'  p99 ratio beside/without the hostile tenant: {r:.2f} (target ≤ 1.5: {\"met\" if r <= 1.5 else \"missed\"})')"
echo "  hostile tenant (state counts, backlog included): $hostile_states"
echo "  the node never aborted: the same process answered /healthz after the hostile run"
report_load
