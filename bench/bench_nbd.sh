#!/bin/bash
# bench_nbd.sh - vmsnapd's NBD server against nbdkit and qemu-nbd on the
# paper's workload: fio's nbd engine, bs=2k, randrw with 67% reads, 100%
# random, iodepth 16, a 2 GiB disk, 20 s per run.
#
#   bash bench/bench_nbd.sh [--build DIR] [--runtime S] [--rounds N]
#                           [--workers N] [--native] [--snapshots N] [--out FILE]
#                           [--systems "nbdkit qemunbd vmsnapd"]
#
# Servers (all on a Unix socket, same host, same file, interleaved rounds so
# that background load hits them alike):
#   nbdkit     nbdkit file plugin on a raw file (its default thread model)
#   qemu-nbd   qemu-nbd --format=raw --cache=writeback --aio=threads
#   vmsnapd    vmsnapd --raw (the raw-file path of the zfs/reflink backends)
#   native     (with --native) a disk of a native SR served by vmsnapd, made
#              through the control socket of a vmsnapd started with --home
#   native_N   (with --snapshots N) the same disk after N live snapshots, each
#              preceded by 16 random 4 KiB writes so that the snapshots differ
#              (the issue asks for IOPS within 5% of those without snapshots)
# The raw file is filled with random data and read once so that every
# server starts from a warm page cache.  Besides IOPS the script reports the
# server's CPU time per 1,000 requests (user+sys from /proc), which is less
# sensitive to other load on the machine than IOPS.
set -uo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$TOP/build
RUNTIME=20
ROUNDS=3
WORKERS=16
NATIVE=0
SNAPS=0
ONLY=
OUT=
SIZE=2G
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --native) NATIVE=1; shift ;;
    --snapshots) SNAPS=$2; NATIVE=1; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --systems) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
VMSNAPD=$BUILD/vmsnapd
[ -x "$VMSNAPD" ] || { echo "build vmsnapd first ($VMSNAPD missing)" >&2; exit 1; }
for p in fio nbdkit qemu-nbd python3; do
  command -v $p >/dev/null || { echo "$p is not installed (bash scripts/deps.sh)" >&2; exit 1; }
done

W=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-nbd.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

echo "# preparing a $SIZE raw file with random data in $W" >&2
fallocate -l "$SIZE" "$W/raw.img" 2>/dev/null || truncate -s "$SIZE" "$W/raw.img"
bytes=$(stat -c %s "$W/raw.img")
head -c "$bytes" /dev/urandom | dd of="$W/raw.img" bs=1M conv=notrunc status=none

start() { # name socket cmd...
  local name=$1 sock=$2; shift 2
  rm -f "$sock"
  "$@" >>"$W/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local n=0
  while [ ! -S "$sock" ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
  [ -S "$sock" ] || { echo "$name did not start: $(tail -3 "$W/$name.log")" >&2; exit 1; }
  eval "PID_$name=$pid"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start nbdkit "$W/nbdkit.sock" nbdkit -f -U "$W/nbdkit.sock" file "$W/raw.img"
start qemunbd "$W/qemunbd.sock" qemu-nbd --persistent --format=raw --cache=writeback --aio=threads \
  --socket="$W/qemunbd.sock" "$W/raw.img"
start vmsnapd "$W/vmsnapd.sock" "$VMSNAPD" --foreground --log-level warn --workers "$WORKERS" \
  --socket "$W/vmsnapd.sock" --raw disk="$W/raw.img"
URI_nbdkit="nbd+unix:///?socket=$W/nbdkit.sock"
URI_qemunbd="nbd+unix:///?socket=$W/qemunbd.sock"
URI_vmsnapd="nbd+unix:///disk?socket=$W/vmsnapd.sock"
SYSTEMS="nbdkit qemunbd vmsnapd"

if [ "$NATIVE" = 1 ]; then
  mkdir -p "$W/home"
  start native "$W/home/nbd.sock" "$VMSNAPD" --foreground --log-level warn --workers "$WORKERS" \
    --home "$W/home"
  ctl() {
    python3 - "$W/home/control.sock" "$1" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    c = s.recv(65536)
    if not c: break
    buf += c
r = json.loads(buf)
if "error" in r: sys.exit("control error: %s" % r["error"])
EOF
  }
  ctl "{\"op\":\"sr.create\",\"args\":{\"name\":\"bench\",\"type\":\"native\",\"location\":\"$W/sr\",\"size\":\"$((bytes * 2))\"}}" || exit 1
  ctl "{\"op\":\"vm.create\",\"args\":{\"name\":\"vm1\",\"sr\":\"bench\",\"disks\":[{\"name\":\"root\",\"size\":$bytes}]}}" || exit 1
  URI_native="nbd+unix:///vm1/root?socket=$W/home/nbd.sock"
  echo "# filling the native disk with the same random data" >&2
  fio --name=fill --ioengine=nbd --uri="$URI_native" --rw=write --bs=1M --iodepth=8 --size="$bytes" \
    --output=/dev/null || exit 1
  SYSTEMS="$SYSTEMS native"
fi

take_snapshots() {
  echo "# taking $SNAPS snapshots of vm1, 16 random 4 KiB writes before each" >&2
  t0=$(date +%s)
  python3 "$TOP/bench/lib/live_snapshots.py" "$W/home/control.sock" "$W/home/nbd.sock" vm1 root \
    "$SNAPS" "$bytes" || exit 1
  echo "# $SNAPS snapshots in $(($(date +%s) - t0)) s" >&2
}

echo "# warming the page cache" >&2
cat "$W/raw.img" >/dev/null

run() { # system round
  local s=$1 uri pid t0 t1 out="$W/fio-$1-$2.json"
  eval "uri=\$URI_$s pid=\$PID_$s"
  t0=$(cpu_ticks "$pid")
  fio --name=job --ioengine=nbd --uri="$uri" --rw=randrw --rwmixread=67 --bs=2k --iodepth=16 \
    --size="$bytes" --time_based --runtime="$RUNTIME" --randrepeat=0 --output-format=json \
    --output="$out" >/dev/null 2>>"$W/fio.err" || { echo "fio failed on $s" >&2; return 1; }
  t1=$(cpu_ticks "$pid")
  python3 - "$out" "$((t1 - t0))" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
if j["error"]:
    sys.exit("fio error %d" % j["error"])
ios = j["read"]["total_ios"] + j["write"]["total_ios"]
iops = j["read"]["iops"] + j["write"]["iops"]
cpu_ms = int(sys.argv[2]) * 1000.0 / int(sys.argv[3])
print("%d %.1f" % (iops, cpu_ms * 1000.0 / max(ios, 1)))
EOF
}

declare -A IOPS CPU
rounds() { # systems...
  echo "# $ROUNDS rounds of $RUNTIME s each, systems: $*; $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  local r s res
  for r in $(seq "$ROUNDS"); do
    for s in "$@"; do
      res=$(run "$s" "$r") || exit 1
      IOPS[$s]="${IOPS[$s]:-} ${res% *}"
      CPU[$s]="${CPU[$s]:-} ${res#* }"
      echo "round $r $s: ${res% *} IOPS, ${res#* } ms CPU per 1000 requests" >&2
    done
  done
}
[ -z "$ONLY" ] || SYSTEMS=$ONLY
rounds $SYSTEMS
if [ "$SNAPS" -gt 0 ]; then
  take_snapshots || exit 1
  # The same disk again, now with SNAPS snapshots, next to nbdkit again as a
  # reference for any change in the machine's load since the first phase.
  eval "URI_native_$SNAPS=\$URI_native PID_native_$SNAPS=\$PID_native"
  URI_nbdkit_again=$URI_nbdkit PID_nbdkit_again=$PID_nbdkit
  cat "$W/raw.img" >/dev/null
  rounds nbdkit_again "native_$SNAPS"
  SYSTEMS="$SYSTEMS nbdkit_again native_$SNAPS"
fi

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
{
  echo "| server | median IOPS | runs (IOPS) | server CPU ms / 1000 requests (median) |"
  echo "|---|---:|---|---:|"
  for s in $SYSTEMS; do
    echo "| $s | $(echo "${IOPS[$s]}" | median) | ${IOPS[$s]# } | $(echo "${CPU[$s]}" | median) |"
  done
} | tee ${OUT:+"$OUT"}
