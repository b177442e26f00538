#!/bin/bash
# Every libFuzzer target (tests/fuzz/fuzz_*.c) builds with clang, replays its
# saved regression inputs (tests/fuzz/corpus/regress/), then runs a fixed
# number of executions from its seed corpus with a fixed seed
# (`tests/fuzz/run.sh --runs`: a few seconds per target; the same inputs each
# time, see run.sh) without a crash, a timeout or running out of memory.
#   VMS_FUZZ_RUNS=N     N executions per target instead of run.sh's defaults
#   VMS_FUZZ_SEED=S     another seed (default 1)
#   VMS_FUZZ_SECONDS=S  the by-hand mode instead: S seconds per target, fork mode
# tests/fuzz/run.sh does the work in its own build directory
# (VMS_FUZZ_BUILD, default build-fuzz/ in the source tree).
. "$(dirname "$0")/lib.sh" "$@"
need clang setarch

export VMS_FUZZ_OUT=$T/fuzz
if [ -n "${VMS_FUZZ_SECONDS:-}" ]; then
  mode=("$VMS_FUZZ_SECONDS"); what="$VMS_FUZZ_SECONDS s each"
elif [ -n "${VMS_FUZZ_RUNS:-}" ]; then
  mode=("--runs=$VMS_FUZZ_RUNS"); what="$VMS_FUZZ_RUNS executions each, seed ${VMS_FUZZ_SEED:-1}"
else
  mode=(--runs); what="fixed executions per target, seed ${VMS_FUZZ_SEED:-1}"
fi
t_begin "libFuzzer targets, $what: regressions pass; no crash, timeout or OOM"
if bash "$TOP/tests/fuzz/run.sh" "${mode[@]}" >"$T/run.out" 2>&1; then
  t_ok
  grep -E ' execs ' "$T/run.out" | sed 's/^/    /' >&2
else
  t_fail "$(grep -v '^outputs in' "$T/run.out" | tail -25)"
fi
t_end
