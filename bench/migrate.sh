#!/usr/bin/env bash
# Upgrade time: N tenant schemas created at the previous schema version
# (one version behind the latest tenant migration, with the hidden
# `tessera tenant create --schema-version`), then `tessera migrate` applies
# the one new migration to every schema, in
# parallel. A second `tessera migrate` is timed too: the no-op case.
#
# Target: the upgrade run finishes in < 30 s.
#
# Settings (environment): N=1000, CREATE_PARALLELISM=4 (concurrent
# `tenant create` processes during setup), MIGRATE_PARALLELISM (passed as
# `tessera migrate --parallelism`; default: the configured
# provisioning.migrate_parallelism), plus those of lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${N:-1000}"
CREATE_PARALLELISM="${CREATE_PARALLELISM:-4}"
MIGRATE_PARALLELISM="${MIGRATE_PARALLELISM:-}"
TARGET_SECS=30

[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 100000 ]] || { echo "N must be 1..100000" >&2; exit 2; }
[[ "$CREATE_PARALLELISM" =~ ^[0-9]+$ && "$CREATE_PARALLELISM" -ge 1 && "$CREATE_PARALLELISM" -le 64 ]] \
    || { echo "CREATE_PARALLELISM must be 1..64" >&2; exit 2; }
[[ -z "$MIGRATE_PARALLELISM" || "$MIGRATE_PARALLELISM" =~ ^[0-9]+$ ]] || { echo "MIGRATE_PARALLELISM must be a number" >&2; exit 2; }

bench_init migrate
build_tessera
# The benchmark is "one new migration": schemas start one version behind the
# latest tenant migration in the repository.
LATEST="$(ls "$REPO_ROOT/migrations/tenant" | sed -nE 's/^V([0-9]+)__.*/\1/p' | sort -n | tail -n 1)"
FROM=$((LATEST - 1))
fresh_database tessera_bench_migrate
export TESSERA_LOG__LEVEL=warn

"$TESSERA" migrate >/dev/null

now() { python3 -c 'import time; print(f"{time.monotonic():.6f}")'; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

# Setup: the same path as a real tenant creation, only stopped one version early. One
# process per tenant, CREATE_PARALLELISM at a time.
log "creating $N tenants at schema version $FROM ($CREATE_PARALLELISM at a time)"
t0="$(now)"
export TESSERA
seq -f 'mig-%06g' 1 "$N" | xargs -P "$CREATE_PARALLELISM" -I{} sh -c \
    '"$TESSERA" tenant create "$1" --owner-email "owner@$1.test" --owner-password bench-tenant-owner-pass --schema-version "$2" >/dev/null' \
    _ {} "$FROM" || die "creating tenants failed"
t1="$(now)"
log "created $N tenants in $(elapsed "$t0" "$t1") s"

at_from="$(db_psql -tA -c "SELECT count(*) FROM platform.tenants WHERE schema_version = $FROM")"
[[ "$at_from" == "$N" ]] || die "expected $N tenants at version $FROM, found $at_from"

migrate_args=()
[[ -n "$MIGRATE_PARALLELISM" ]] && migrate_args+=(--parallelism "$MIGRATE_PARALLELISM")

log "tessera migrate${migrate_args[*]:+ ${migrate_args[*]}} (upgrade V$FROM -> V$LATEST of $N schemas)"
t0="$(now)"
"$TESSERA" migrate "${migrate_args[@]}" >"$WORK_DIR/migrate1.out" 2>"$WORK_DIR/migrate1.err" \
    || { cat "$WORK_DIR/migrate1.out" "$WORK_DIR/migrate1.err" >&2; die "tessera migrate failed"; }
t1="$(now)"
upgrade_secs="$(elapsed "$t0" "$t1")"
cat "$WORK_DIR/migrate1.out" >&2

log "tessera migrate${migrate_args[*]:+ ${migrate_args[*]}} again (nothing to do)"
t0="$(now)"
"$TESSERA" migrate "${migrate_args[@]}" >"$WORK_DIR/migrate2.out" 2>"$WORK_DIR/migrate2.err" \
    || { cat "$WORK_DIR/migrate2.out" "$WORK_DIR/migrate2.err" >&2; die "second tessera migrate failed"; }
t1="$(now)"
noop_secs="$(elapsed "$t0" "$t1")"
cat "$WORK_DIR/migrate2.out" >&2

# Every schema must now be at the latest version, recorded in its own history.
at_latest="$(db_psql -tA -c "SELECT count(*) FROM platform.tenants WHERE schema_version = $LATEST")"
[[ "$at_latest" == "$N" ]] || die "expected $N tenants at version $LATEST, found $at_latest"
history_rows="$(db_psql -tA -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'refinery_schema_history' AND n.nspname LIKE 't\_mig\_%'")"
log "verified: $at_latest tenants at version $LATEST, $history_rows history tables"

verdict="NOT MET"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$upgrade_secs" "$TARGET_SECS" && verdict="MET"
echo
echo "migrate benchmark: $N tenant schemas, V$FROM -> V$LATEST"
echo "  tessera migrate (upgrade): ${upgrade_secs} s"
echo "  tessera migrate (no-op):   ${noop_secs} s"
echo "  target: upgrade < ${TARGET_SECS} s  ->  $verdict"
report_load
