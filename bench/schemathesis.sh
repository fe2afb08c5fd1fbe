#!/usr/bin/env bash
# The REST API against its own OpenAPI document, at length: the test of
# `cargo test --workspace` (tests/integration/openapi.rs) with a budget of
# SECONDS per host (tenant and platform) instead of 45, and more examples.
# It fails on any 5xx and on any answer (status, content type, body) the
# document does not describe, printing schemathesis's report with the
# request that reproduces each finding.
#
# Settings (environment): SECONDS_PER_HOST=1800, SCHEMATHESIS (else on PATH,
# else installed into a virtual environment under the cache directory).
set -euo pipefail
BENCH_NAME=schemathesis
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_PER_HOST="${SECONDS_PER_HOST:-1800}"
[[ "$SECONDS_PER_HOST" =~ ^[0-9]+$ ]] || die "SECONDS_PER_HOST must be a number of seconds"
need cargo
cd "$REPO_ROOT"

if [ -z "${SCHEMATHESIS:-}" ] && ! command -v schemathesis >/dev/null; then
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/tessera/schemathesis-bench"
  if ! [ -x "$venv/bin/schemathesis" ]; then
    log "installing schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis
  fi
  export SCHEMATHESIS="$venv/bin/schemathesis"
fi
log "schemathesis over the whole API, $SECONDS_PER_HOST s per host"
TESSERA_SCHEMATHESIS_SECONDS="$SECONDS_PER_HOST" TESSERA_SCHEMATHESIS_EXAMPLES=1000 \
  cargo test --workspace --test integration -- --nocapture openapi::schemathesis
