#!/bin/bash
# Build the libFuzzer targets (clang, -DVMS_FUZZ=ON: ASan+UBSan+coverage) in
# their own build directory and run each one.  Two modes:
#
#   tests/fuzz/run.sh --runs[=N] [TARGET...]     deterministic (CI)
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      by time (by hand, longer)
#
#   --runs           a fixed number of executions per target (N, or the
#                    target's default below: a few seconds each on the
#                    development machine), one process, fixed seed
#                    (VMS_FUZZ_SEED, default 1), from the seed corpus only:
#                    the same binary makes the same inputs every time, so a
#                    failure replays exactly (the command is printed)
#   SECONDS          per target (default $VMS_FUZZ_SECONDS, else 20), in
#                    libFuzzer's fork mode, which goes on after a crash and
#                    counts crashes, timeouts and out-of-memory cases
#   TARGET           fuzz_json, fuzz_pool_open, ... (default: every tests/fuzz/fuzz_*.c)
#   VMS_FUZZ_BUILD   build directory (default build-fuzz/ in the source tree)
#   VMS_FUZZ_OUT     where crash/timeout inputs and the grown corpora go
#                    (default a fresh /tmp/vmsnap-fuzz-out.XXXXXX, kept)
#
# Each target first replays tests/fuzz/corpus/regress/<target>/* (inputs
# that once failed: a confirmed bug stays a failing test until fixed), then
# fuzzes from the seed corpus tests/fuzz/corpus/<target>/.  Prints one line
# per target:
#   <target> <executions> execs <s> s crash/timeout/oom <c>/<t>/<o> regress <failed>/<total>
# Exit status 0 only when nothing failed anywhere.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=  # empty: by time
case "${1:-}" in
  --runs) RUNS=default; shift ;;
  --runs=*) RUNS=${1#--runs=}; shift
    [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --runs=N needs a positive number" >&2; exit 2; } ;;
esac
if [ -z "$RUNS" ]; then
  SECS=${1:-${VMS_FUZZ_SECONDS:-20}}
  shift || true
fi
SEED=${VMS_FUZZ_SEED:-1}
# Executions per target in --runs mode: a few seconds each on the
# development machine (2 cores).  The parsers run thousands of inputs a
# second; the control and pool targets open a catalog or a pool (with
# its threads) per input.
default_runs() {
  case "$1" in
    fuzz_json) echo 20000 ;;
    fuzz_nbd_request) echo 40000 ;;
    fuzz_control_json) echo 80 ;;
    fuzz_pool_open) echo 100 ;;
    *) echo 1000 ;;
  esac
}
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

NOASLR=
if [ -n "$RUNS" ]; then
  if setarch "$(uname -m)" -R true 2>/dev/null; then
    NOASLR="setarch $(uname -m) -R"
  else
    echo "run.sh: note: cannot turn ASLR off (setarch -R): --runs is then not exactly repeatable" >&2
  fi
fi
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
  if [ -n "$RUNS" ]; then
    n=$RUNS
    [ "$n" = default ] && n=$(default_runs "$t")
    # one process, fixed seed, an empty scratch corpus first (new inputs
    # go there) and the seed corpus: the same inputs every time
    rm -rf "$work/corpus"; mkdir -p "$work/corpus"
    # (-reload=0: no timed re-reading of the corpus; no ASLR: libFuzzer's
    # comparison tables are indexed by code address, so the addresses must
    # not move from one run to the next)
    cmd=($NOASLR "$bin" -seed="$SEED" -runs="$n" -reload=0 -timeout=20 -rss_limit_mb=2560
         -artifact_prefix="$work/artifacts/" "$work/corpus" "$TOP/tests/fuzz/corpus/$t")
    "${cmd[@]}" >"$work/fuzz.log" 2>&1
    rc=$?
    t1=$(date +%s)
    execs=$(sed -nE 's/^Done ([0-9]+) runs in .*/\1/p' "$work/fuzz.log" | tail -1)
    c=0 to=0 o=0
    if [ -z "$execs" ]; then
      execs=$(grep -E '^#[0-9]+' "$work/fuzz.log" | tail -1 | sed -E 's/^#([0-9]+).*/\1/')
      execs=${execs:-0}
      if grep -q 'ERROR: libFuzzer: timeout' "$work/fuzz.log"; then to=1
      elif grep -q 'ERROR: libFuzzer: out-of-memory' "$work/fuzz.log"; then o=1
      else c=1; fi
    fi
    cto="$c/$to/$o"
    [ "$rc" = 0 ] || echo "    replay: (cd $TOP && ${cmd[*]})" >&2
  else
    "$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -timeout=20 -rss_limit_mb=2560 \
      -max_total_time="$SECS" -artifact_prefix="$work/artifacts/" \
      "$work/corpus" "$TOP/tests/fuzz/corpus/$t" >"$work/fuzz.log" 2>&1
    rc=$?
    t1=$(date +%s)
    last=$(grep -E '^#[0-9]+: cov' "$work/fuzz.log" | tail -1)
    execs=$(printf '%s' "$last" | sed -E 's/^#([0-9]+):.*/\1/')
    cto=$(printf '%s' "$last" | sed -E 's#.*oom/timeout/crash: ([0-9]+)/([0-9]+)/([0-9]+).*#\3/\2/\1#')
    [ -n "$execs" ] || { execs=0; cto="?/?/?"; }
  fi
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
