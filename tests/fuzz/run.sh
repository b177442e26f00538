#!/bin/bash
# Build the libFuzzer targets (clang, -DVMS_FUZZ=ON: ASan+UBSan+coverage) in
# their own build directory and run each one for a while.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
#   SECONDS          per target (default $VMS_FUZZ_SECONDS, else 20)
#   TARGET           fuzz_json, fuzz_pool_open, ... (default: every tests/fuzz/fuzz_*.c)
#   VMS_FUZZ_BUILD   build directory (default build-fuzz/ in the source tree)
#   VMS_FUZZ_OUT     where crash/timeout inputs and the grown corpora go
#                    (default a fresh /tmp/vmsnap-fuzz-out.XXXXXX, kept)
#
# Each target first replays tests/fuzz/corpus/regress/<target>/* (inputs
# that once failed: a confirmed bug stays a failing test until fixed), then
# fuzzes from the seed corpus tests/fuzz/corpus/<target>/ in libFuzzer's
# fork mode, which goes on after a crash and counts crashes, timeouts and
# out-of-memory cases.  Prints one line per target:
#   <target> <executions> execs <s> s crash/timeout/oom <c>/<t>/<o> regress <failed>/<total>
# Exit status 0 only when nothing failed anywhere.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${1:-${VMS_FUZZ_SECONDS:-20}}
shift || true
B=${VMS_FUZZ_BUILD:-$TOP/build-fuzz}
OUT=${VMS_FUZZ_OUT:-$(mktemp -d /tmp/vmsnap-fuzz-out.XXXXXX)}
mkdir -p "$OUT"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in "$TOP"/tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

command -v clang >/dev/null || { echo "run.sh: clang is needed" >&2; exit 2; }
# clang 14 knows neither GCC's -Wformat-truncation nor accepts the engine's
# struct-with-flexible-member-inside-a-struct silently: keep -Werror for the rest.
cmake -S "$TOP" -B "$B" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVMS_FUZZ=ON -DVMS_BENCH=OFF \
  "-DCMAKE_C_FLAGS=-Wno-unknown-warning-option -Wno-gnu-variable-sized-type-not-at-end" \
  >"$OUT/cmake.log" 2>&1 || { tail -20 "$OUT/cmake.log" >&2; exit 2; }
cmake --build "$B" -j2 --target "${targets[@]}" >"$OUT/build.log" 2>&1 ||
  { grep -E 'error' "$OUT/build.log" | head -20 >&2; exit 2; }

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  bin=$B/$t
  work=$OUT/$t
  mkdir -p "$work/corpus" "$work/artifacts"
  # regressions
  rtot=0 rfail=0
  for r in "$TOP"/tests/fuzz/corpus/regress/"$t"/*; do
    [ -f "$r" ] || continue
    rtot=$((rtot + 1))
    if ! "$bin" -runs=1 "$r" >"$work/regress-$(basename "$r").log" 2>&1; then
      rfail=$((rfail + 1))
      echo "$t: regression input $(basename "$r") fails:" >&2
      grep -m3 -E 'Assertion|ERROR|runtime error|abort' "$work/regress-$(basename "$r").log" | sed 's/^/    /' >&2
    fi
  done
  # fuzzing
  t0=$(date +%s)
  "$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -timeout=20 -rss_limit_mb=2560 \
    -max_total_time="$SECS" -artifact_prefix="$work/artifacts/" \
    "$work/corpus" "$TOP/tests/fuzz/corpus/$t" >"$work/fuzz.log" 2>&1
  rc=$?
  t1=$(date +%s)
  last=$(grep -E '^#[0-9]+: cov' "$work/fuzz.log" | tail -1)
  execs=$(printf '%s' "$last" | sed -E 's/^#([0-9]+):.*/\1/')
  cto=$(printf '%s' "$last" | sed -E 's#.*oom/timeout/crash: ([0-9]+)/([0-9]+)/([0-9]+).*#\3/\2/\1#')
  [ -n "$execs" ] || { execs=0; cto="?/?/?"; }
  echo "$t ${execs} execs $((t1 - t0)) s crash/timeout/oom $cto regress $rfail/$rtot"
  if [ "$rc" != 0 ] || [ "$cto" != "0/0/0" ] || [ "$rfail" != 0 ]; then
    status=1
    for a in "$work"/artifacts/*; do
      [ -f "$a" ] && echo "    failing input: $a" >&2
    done
    grep -m5 -E 'Assertion|ERROR: AddressSanitizer|runtime error|SUMMARY' "$work/fuzz.log" | sed 's/^/    /' >&2
  fi
done
echo "outputs in $OUT" >&2
exit $status
