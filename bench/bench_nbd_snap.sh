#!/bin/bash
# bench_nbd_snap.sh - the paper's workload on a native-SR disk with 0 and with
# N live snapshots, measured side by side (issue 4: "within 5% between 0 and
# 1,000 snapshots").  One vmsnapd, two native SRs, each with a disk filled
# with the same random data; disk "a" then gets N live snapshots, each after
# 16 random 4 KiB writes.  Rounds alternate a and c (no snapshots), and before
# every run the page cache's dirty data is written back (sync), the disk's
# pool file is read into the page cache (so that neither disk is measured
# half evicted: this machine's page cache does not keep what other processes
# push out), and the machine rests, so that one disk's writeback does not
# land in the other's measurement.  Besides IOPS, the server's CPU time
# (user + system, from /proc) per 1,000 requests.
#
#   bash bench/bench_nbd_snap.sh [--build DIR] [--snapshots N] [--rounds R]
#                                [--runtime S] [--size 2G] [--rest S] [--direct-io]
# --direct-io starts vmsnapd with --direct-io (pool files O_DIRECT: the
# device's figures instead of the host page cache's).
set -uo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$TOP/build SNAPS=1000 ROUNDS=5 RUNTIME=15 SIZE=2G REST=5 DFLAGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --snapshots) SNAPS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --rest) REST=$2; shift 2 ;;
    --direct-io) DFLAGS=(--direct-io); shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
for p in fio nbdcopy python3; do
  command -v $p >/dev/null || { echo "$p is not installed (bash scripts/deps.sh)" >&2; exit 1; }
done
[ -x "$BUILD/vmsnapd" ] && [ -x "$BUILD/vmsnap" ] || { echo "build vmsnapd and vmsnap in $BUILD first" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-nbd-snap.XXXXXX")
H=$W/home
cleanup() { "$BUILD/vmsnap" --home "$H" daemon stop >/dev/null 2>&1; rm -rf "$W"; }
trap cleanup EXIT
bytes=$(numfmt --from=iec "$SIZE")
"$BUILD/vmsnapd" --home "$H" --log-file "$W/log" --log-level warn "${DFLAGS[@]}" || exit 1
for _ in $(seq 50); do [ -S "$H/control.sock" ] && break; sleep 0.1; done
echo "# filling two ${SIZE} disks with the same random data" >&2
head -c "$bytes" /dev/urandom >"$W/rand.img"
for x in a c; do
  "$BUILD/vmsnap" --home "$H" sr create "sr$x" "$W/sr$x" --type native --size $((bytes * 4)) >/dev/null &&
    "$BUILD/vmsnap" --home "$H" vm create "vm$x" --sr "sr$x" --disk "root:$bytes" >/dev/null &&
    nbdcopy "$W/rand.img" "nbd+unix:///vm$x/root?socket=$H/nbd.sock" || exit 1
done
rm -f "$W/rand.img"
echo "# $SNAPS live snapshots of vma, 16 random 4 KiB writes before each" >&2
t0=$(date +%s)
python3 "$TOP/bench/lib/live_snapshots.py" "$H/control.sock" "$H/nbd.sock" vma root "$SNAPS" "$bytes" || exit 1
echo "# $SNAPS snapshots in $(($(date +%s) - t0)) s; $ROUNDS rounds of $RUNTIME s, sync and ${REST} s rest before each run" >&2
pid=$(pgrep -f "vmsnapd --home $H" | head -1)
[ -n "$pid" ] || { echo "vmsnapd is not running" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
declare -A sum cpu
sum[a]=0 sum[c]=0
printf '| round | 0 snapshots (c) | %s snapshots (a) | a / c | server CPU ms/1000 req (c) | (a) |\n|---|---:|---:|---:|---:|---:|\n' "$SNAPS"
for r in $(seq "$ROUNDS"); do
  declare -A got
  order="c a"; [ $((r % 2)) = 0 ] && order="a c"
  for x in $order; do
    sync; dd if="$W/sr$x/pool.vms" of=/dev/null bs=4M status=none; sleep "$REST"
    t0=$(cpu_ticks)
    got[$x]=$(fio --name=j --ioengine=nbd --uri="nbd+unix:///vm$x/root?socket=$H/nbd.sock" --rw=randrw \
      --rwmixread=67 --bs=2k --iodepth=16 --size="$bytes" --time_based --runtime="$RUNTIME" --randrepeat=0 \
      --output-format=json 2>/dev/null | python3 -c '
import json, sys
t = sys.stdin.read(); j = json.loads(t[t.index("{"):])["jobs"][0]
if j["error"]: sys.exit("fio error %d" % j["error"])
print(int(j["read"]["iops"] + j["write"]["iops"]))') || { echo "fio failed on vm$x" >&2; exit 1; }
    cpu[$x]=$(python3 -c "print(round(($(cpu_ticks) - $t0) / $hz * 1e3 / (${got[$x]} * $RUNTIME / 1000), 2))")
    sum[$x]=$((sum[$x] + got[$x]))
  done
  printf '| %d | %d | %d | %.3f | %s | %s |\n' "$r" "${got[c]}" "${got[a]}" "$(python3 -c "print(${got[a]} / ${got[c]})")" "${cpu[c]}" "${cpu[a]}"
done
printf '| all | %d | %d | %.3f |\n' "${sum[c]}" "${sum[a]}" "$(python3 -c "print(${sum[a]} / ${sum[c]})")"
