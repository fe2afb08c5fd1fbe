#!/usr/bin/env bash
# Hostile input at scale: every property test named `hostile_*` (definition
# parser, expression compiler and evaluator, host classifier, webhook body
# readers), run in release mode with enough cases that TOTAL inputs are
# tried altogether (default 10,000,000). Only property tests may carry that
# prefix: a plain test selected with them would be counted for inputs it
# never takes. The same tests run in
# `cargo test --workspace` with proptest's small default budget.
#
# A failure prints proptest's minimal failing input and exits 1; nothing
# panics or aborts the process on any input that passes.
#
# Settings (environment): TOTAL=10000000.
set -euo pipefail
BENCH_NAME=fuzz
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOTAL="${TOTAL:-10000000}"
[[ "$TOTAL" =~ ^[0-9]+$ ]] || die "TOTAL must be a number of inputs"
need cargo
cd "$REPO_ROOT"

packages=(-p tessera-runtime -p tessera-server)
log "building the property tests (release)"
cargo test --release "${packages[@]}" --lib --no-run --quiet 2>/dev/null || cargo test --release "${packages[@]}" --lib --no-run
mapfile -t tests < <(cargo test --release "${packages[@]}" --lib --quiet -- --list hostile 2>/dev/null | sed -n 's/: test$//p')
(( ${#tests[@]} > 0 )) || die "no property test named hostile_* was found"
per_test=$(( (TOTAL + ${#tests[@]} - 1) / ${#tests[@]} ))
log "${#tests[@]} properties, $per_test inputs each ($(( per_test * ${#tests[@]} )) in all)"

start=$(date +%s)
# One test at a time: each property uses both cores' worth of nothing but
# itself, and a failure names its property.
for name in "${tests[@]}"; do
    t0=$(date +%s)
    PROPTEST_CASES="$per_test" cargo test --release "${packages[@]}" --lib --quiet -- --exact "$name" --test-threads 1 >/dev/null \
        || die "$name failed: rerun with PROPTEST_CASES=$per_test cargo test --release ${packages[*]} --lib -- --exact $name"
    log "$name: $per_test inputs, no panic, in $(( $(date +%s) - t0 )) s"
done
log "all properties held over $(( per_test * ${#tests[@]} )) inputs in $(( $(date +%s) - start )) s"
