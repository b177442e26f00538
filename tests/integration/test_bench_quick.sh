#!/usr/bin/env bash
# Smoke test of the paper benchmark harness (bench/paper.sh --quick): it runs
# end to end for the peers (raw file through nbdkit and qemu-nbd, qcow2
# backing chain, qcow2 internal snapshots) and for the vmsnap systems that
# can run here (native when vmsnapd and vmsnap are built; zfs with zfs-fuse
# and root; reflink with XFS loop mounts and root), and its results hold
# together: every requested system has rows with non-zero IOPS for both
# passes at every N, every self-check (fio errors, the crc32c verify pass)
# passed, management operations were timed, and the figures were drawn.
# Nothing here asserts a performance figure.
. "$(dirname "$0")/lib.sh" "$@"
need fio qemu-img qemu-nbd qemu-io nbdkit gnuplot python3 mkfifo

# The CI smoke run leaves out vmsnap-zfs (zfs-fuse makes it the slowest by
# minutes; the zfs SR is covered by the conformance suites):
# VMS_BENCH_ALL=1 runs every system.
systems=raw-nbdkit,raw-qemu,qcow2-chain,qcow2-internal
snapsys="qcow2-chain qcow2-internal"
if [ ! -x "$BUILD/vmsnapd" ] || [ ! -x "$BUILD/vmsnap" ]; then
  echo "FAIL: vmsnapd/vmsnap not built in $BUILD" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
systems+=,vmsnap-native; snapsys+=" vmsnap-native"
if [ "${VMS_BENCH_ALL:-0}" = 1 ]; then
  need zfs-fuse zpool
  systems+=,vmsnap-zfs; snapsys+=" vmsnap-zfs"
fi
need mkfs.xfs losetup
systems+=,vmsnap-reflink; snapsys+=" vmsnap-reflink"
echo "systems: $systems" >&2

OUT=$T/results
seed=${VMS_SEED:-$(( (RANDOM << 15 | RANDOM) % 1000000 + 1 ))}
echo "seed $seed (replay with VMS_SEED=$seed)" >&2

t_begin "bench/paper.sh --quick runs and reports no failed check"
if bash "$TOP/bench/paper.sh" --quick --strict --systems "$systems" --build "$BUILD" \
     --seed "$seed" --out "$OUT" --work "$T/work" >"$T/paper.out" 2>&1; then
  t_ok
else
  t_fail "exit $?: $(grep -E 'CHECK FAILED|ERROR' "$T/paper.out" | head -10)$(tail -3 "$T/paper.out")"
fi

RUNS=$OUT/runs.csv
# col NAME: the 1-based position of a column in runs.csv
col() { head -1 "$RUNS" | tr ',' '\n' | grep -nx "$1" | cut -d: -f1; }
check "runs.csv exists with its header" test -s "$RUNS"
ci=$(col iops); cs=$(col system); cn=$(col n); cp=$(col pass)
for s in ${systems//,/ }; do
  case " $snapsys " in *" $s "*) ns="0 2" ;; *) ns=0 ;; esac
  for n in $ns; do
    for pass in db read; do
      t_begin "$s N=$n $pass: a row with non-zero IOPS"
      v=$(awk -F, -v s="$s" -v n="$n" -v p="$pass" -v cs="$cs" -v cn="$cn" -v cp="$cp" -v ci="$ci" \
            '$cs == s && $cn == n && $cp == p { print $ci }' "$RUNS")
      if [ -n "$v" ] && awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }'; then t_ok; else t_fail "iops '$v'"; fi
    done
  done
done

t_begin "every system passed the crc32c verify pass"
bad=
for s in ${systems//,/ }; do
  grep -q "^$s,verify-crc32c,[0-9]*,ok," "$OUT/checks.csv" || bad+=" $s"
done
if [ -z "$bad" ]; then t_ok; else t_fail "no verify ok for:$bad"; fi
check "no self-check failed" bash -c "! grep -q ',FAIL,' '$OUT/checks.csv'"

t_begin "management ops timed for every system with snapshots"
bad=
for s in $snapsys; do
  for op in snapshot rollback delete-newest; do
    grep -q "^$s,$op,n," "$OUT/mgmt.csv" || bad+=" $s/$op"
  done
  grep -q "^$s,snapshot,size," "$OUT/mgmt.csv" || bad+=" $s/size-sweep"
done
if [ -z "$bad" ]; then t_ok; else t_fail "missing:$bad"; fi

for f in iops-db iops-read mbps-db lat-mean-db lat-p99-read open-read rss-read mgmt-n mgmt-size; do
  t_begin "figure $f drawn as PNG and SVG"
  if [ -s "$OUT/img/fig-$f.png" ] && [ "$(head -c 4 "$OUT/img/fig-$f.png" | tail -c 3)" = PNG ] &&
     grep -q '<svg' "$OUT/img/fig-$f.svg" 2>/dev/null; then
    t_ok
  else
    t_fail "$(ls "$OUT/img" 2>&1 | head -5)"
  fi
done
check "the summary reports the self-checks, none failed" grep -Eq '^Self-checks: [1-9][0-9]* passed, 0 failed' "$OUT/summary.md"

t_begin "the expected and the real duration are recorded"
if grep -Eq '^duration_s: [0-9]+ \(expected on an idle machine: [0-9]+\)' "$OUT/meta.txt" &&
   grep -q 'expected duration on an idle 2-core machine: about [0-9]* min' "$T/paper.out"; then
  t_ok
else
  t_fail "$(grep duration "$OUT/meta.txt")"
fi
check "--eta prints the default run's expected duration and exits" \
  bash -c "bash '$TOP/bench/paper.sh' --eta --build '$BUILD' | grep -Eq '^expected duration .*about [0-9]+ min'"

t_begin "the work directory is left clean (no server, mount or pool left)"
left=$( { pgrep -f "$T/work" ; mount | grep -F "$T/work"; zpool status 2>/dev/null | grep -F "$T/work"; losetup -a | grep -F "$T/work"; } 2>/dev/null)
if [ -z "$left" ]; then t_ok; else t_fail "$left"; fi

t_end
