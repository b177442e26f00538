#!/bin/bash
# Every libFuzzer target (tests/fuzz/fuzz_*.c) builds with clang and runs a
# short while (VMS_FUZZ_SECONDS, default 20 s each) without a crash, a
# timeout or running out of memory, and every saved regression input
# (tests/fuzz/corpus/regress/) passes.  tests/fuzz/run.sh does the work in
# its own build directory (VMS_FUZZ_BUILD, default /tmp/vmsnap-fuzz-build).
. "$(dirname "$0")/lib.sh" "$@"
need clang

export VMS_FUZZ_OUT=$T/fuzz
t_begin "libFuzzer targets, ${VMS_FUZZ_SECONDS:-20} s each: no crash, timeout or OOM; regressions pass"
if bash "$TOP/tests/fuzz/run.sh" "${VMS_FUZZ_SECONDS:-20}" >"$T/run.out" 2>&1; then
  t_ok
  grep -E ' execs ' "$T/run.out" | sed 's/^/    /' >&2
else
  t_fail "$(grep -v '^outputs in' "$T/run.out" | tail -25)"
fi
t_end
