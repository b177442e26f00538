#!/usr/bin/env bash
# The whole test suite: unit, model-based and integration tests, built twice
# (release and ASan+UBSan).  Ends with one line "N passed, N failed".
#   scripts/test.sh            everything
#   VMS_QUICK=1 scripts/test.sh  skip the sanitizer build
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/scripts/deps.sh" || { echo "0 passed, 1 failed"; exit 1; }
passed=0; failed=0
run_suite() { # name builddir ctest-exclude-regex cmake-args...
  local name=$1 dir=$2 exclude=$3; shift 3
  echo "=== $name: build" >&2
  if ! bash "$top/scripts/build.sh" "$dir" "$@" >"$dir.build.log" 2>&1; then
    tail -40 "$dir.build.log" >&2
    echo "=== $name: BUILD FAILED" >&2
    failed=$((failed + 1)); return
  fi
  echo "=== $name: ctest" >&2
  (cd "$dir" && ctest --output-on-failure -j2 --timeout 900 ${exclude:+-E "$exclude"}) | tee "$dir.ctest.log" >&2
  local p f
  p=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$dir.ctest.log" || true)
  f=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(\*\*\*|Failed|Timeout|Not Run)' "$dir.ctest.log" || true)
  passed=$((passed + p)); failed=$((failed + f))
}
mkdir -p "$top/build-test"
run_suite release "$top/build-test/release" ""
if [ "${VMS_QUICK:-0}" != 1 ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # The sanitizer pass skips the tests whose subject is not our C code's
  # memory safety and that cost minutes each: the benchmark harness smoke
  # run, the libFuzzer smoke run (it builds its own sanitized fuzzers) and
  # the guest boot under TCG.  They run in the release pass.
  run_suite asan-ubsan "$top/build-test/asan" 'it_test_bench_quick|it_test_fuzz_smoke|it_test_daemon_vm' -DVMS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
