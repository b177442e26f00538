#!/bin/bash
# ThreadSanitizer run of the threaded code: the engine's unit, model and
# crash tests (background commit and reaper threads) and the daemon's
# integration tests (a thread per NBD request worker, TLS sessions, the
# fault hook, the control socket,
# the export gate), built with -DVMS_TSAN=ON in their own directory.
#
#   tests/tsan.sh [BUILD_DIR]       (default /tmp/vmsnap-tsan-build)
#
# Every process writes its reports to $OUT/tsan.<pid> (TSAN_OPTIONS
# log_path); the script prints each distinct race (first two frames of both
# accesses) and exits 1 when there is any report or a test fails.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-/tmp/vmsnap-tsan-build}
OUT=${VMS_TSAN_OUT:-$(mktemp -d /tmp/vmsnap-tsan-out.XXXXXX)}
mkdir -p "$OUT"

cmake -S "$TOP" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMS_TSAN=ON -DVMS_BENCH=OFF \
  >"$OUT/cmake.log" 2>&1 || { tail -20 "$OUT/cmake.log"; exit 2; }
engine_tests=()
for f in "$TOP"/tests/unit/test_engine_*.c "$TOP"/tests/model/test_engine_*.c "$TOP"/tests/unit/test_util_io_fault.c; do
  [ -f "$f" ] && engine_tests+=("$(basename "$f" .c)")
done
helpers=()
for f in "$TOP"/tests/integration/*.c; do helpers+=("it_$(basename "$f" .c)"); done
cmake --build "$B" -j2 --target vmsnapd vmsnap "${engine_tests[@]}" "${helpers[@]}" >"$OUT/build.log" 2>&1 ||
  { grep -E 'error' "$OUT/build.log" | head -20; exit 2; }

# setarch -R: TSan on recent kernels needs a non-randomized address space
# (vm.mmap_rnd_bits > 28 makes it fail with "unexpected memory mapping").
run() {
  if setarch "$(uname -m)" -R true 2>/dev/null; then setarch "$(uname -m)" -R "$@"; else "$@"; fi
}
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 history_size=4 log_path=$OUT/tsan"
status=0
for t in "${engine_tests[@]}"; do
  if run "$B/$t" >"$OUT/$t.log" 2>&1; then echo "ok   $t"; else echo "FAIL $t (see $OUT/$t.log)"; status=1; fi
done
for s in test_nbd_raw test_daemon_native test_daemon_direct test_tls test_fault_daemon test_crash_daemon; do
  [ -f "$TOP/tests/integration/$s.sh" ] || continue
  # the crash test under TSan: a few kills are enough to exercise recovery
  if VMS_KILLS=${VMS_TSAN_KILLS:-4} run bash "$TOP/tests/integration/$s.sh" "$B" >"$OUT/$s.log" 2>&1; then
    echo "ok   $s"
  else
    echo "FAIL $s (see $OUT/$s.log)"; status=1
  fi
done

reports=$(cat "$OUT"/tsan.* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer' || true)
echo "ThreadSanitizer reports: $reports (in $OUT/tsan.*)"
if [ "$reports" -gt 0 ]; then
  status=1
  # one line per distinct report: kind and the top frames of both stacks
  python3 - "$OUT" <<'PY'
import glob, re, sys
seen = {}
for path in sorted(glob.glob(sys.argv[1] + "/tsan.*")):
    text = open(path, errors="replace").read()
    for rep in text.split("==================")[1:]:
        m = re.search(r"WARNING: ThreadSanitizer: (.*?) \(pid", rep)
        if not m:
            continue
        frames = re.findall(r"#\d+ (\S+) (\S+)", rep)
        # the two accesses: the first frame after the report line and after "Previous"
        prev = re.findall(r"#\d+ (\S+) (\S+)", rep.split("Previous", 1)[1]) if "Previous" in rep else []
        key = (m.group(1), frames[0][0] if frames else "", prev[0][0] if prev else "")
        sig = m.group(1) + ": " + " | ".join("%s %s" % f for f in frames[:2])
        if prev:
            sig += "  vs  " + " | ".join("%s %s" % f for f in prev[:2])
        if key not in seen:
            seen[key] = (sig, path)
for sig, path in seen.values():
    print("  " + sig + "   [" + path + "]")
PY
fi
exit $status
