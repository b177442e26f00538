#!/bin/bash
# bench_meta_peers.sh - the metadata that sparse random deltas between
# snapshots cost, on our native pool and on the copy-on-write peers of this
# machine (docs/bench-engine.md, "Peers on the same workload").  The same
# workload for every system: a 1 GiB disk written in full with random data
# and snapshotted (the base), then N intervals, each rewriting 1.5% of its
# 4 KiB blocks (3,932 distinct blocks at uniform random 4 KiB-aligned
# offsets, the same for every system: awk's rand() from a fixed seed) and
# ending with a snapshot.  Every block written stays referenced, so the data
# stored is exactly 1 GiB + N x 3,932 x 4 KiB; what a system uses beyond
# that is its metadata.  Per system, after the base, after M and after N
# intervals: data, the bytes used on its backing storage as the system
# accounts them, metadata = used - data (% of data), and the metadata each
# interval added since the previous row (KiB, and % of an interval's data).
#
#   bash bench/bench_meta_peers.sh [--build DIR] [--snapshots N] [--also M]
#                                  [--systems vmsnap,qcow2,zfs,btrfs] [--seed S]
#                                  [--image 16G]
# --also M: the intermediate row (0: none); --image: the size of the vmsnap
# pool, the zfs vdev and the btrfs image (sparse files; 16G holds N = 64).
#
#   vmsnap  native SR served by vmsnapd, written over NBD; used = the pool's
#           allocated blocks (`vmsnap sr show`: total - free)
#   qcow2   one image with internal snapshots (qemu-img snapshot -c),
#           cluster_size=4096, lazy_refcounts=off; used = the image end offset
#   zfs     zfs-fuse, one file vdev, a dataset with recordsize=4K and
#           compression=off holding a 1 GiB file; used = the pool's allocated
#           bytes (zdb -bb, "SPA allocated": the ditto copies of metadata too)
#   btrfs   a loop-mounted image (mkfs defaults: 16 KiB nodes, DUP
#           metadata), a subvolume holding a 1 GiB file, read-only snapshots;
#           used = data + metadata + system as stored (`btrfs filesystem df`,
#           x2 for DUP)
# dm-thin is not measured: this kernel has no device-mapper.  All writes are
# qemu-io's (-t writeback), of one random 4 KiB block: none of these systems
# compresses or deduplicates data as configured.  Needs root (loop mounts,
# zfs-fuse), qemu-utils, zfs-fuse, btrfs-progs, nbdcopy, python3 and vmsnapd
# and vmsnap built in DIR (default build/).  About 16 min at N = 64, 11 of
# them qcow2's.
set -uo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$BENCH_DIR/.." && pwd)
BUILD=$TOP/build SNAPS=64 ALSO=16 SYSTEMS=vmsnap,qcow2,zfs,btrfs SEED=42 IMG=16G
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --snapshots) SNAPS=$2; shift 2 ;;
    --also) ALSO=$2; shift 2 ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --image) IMG=$2; shift 2 ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"
# zfs_pool, destroy_pool, loop_fs: the integration tests' storage set-up,
# with their on_exit cleanups registered as bench_on_exit ones
on_exit() { bench_on_exit "$1"; }
# shellcheck source=../tests/integration/storage.sh
. "$TOP/tests/integration/storage.sh"

[ "$(id -u)" = 0 ] || bench_die "needs root (loop mounts, zfs-fuse)"
for p in qemu-img qemu-io nbdcopy python3; do
  command -v $p >/dev/null || bench_die "$p is not installed (bash scripts/deps.sh)"
done
SIZE=$((1 << 30)) K=3932

W=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-meta-peers.XXXXXX") || bench_die "mktemp failed"
# shellcheck disable=SC2034  # storage.sh's scratch dir
T=$W
bench_on_exit "rm -rf '$W'"
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_log "random data and the $SNAPS intervals' writes (seed $SEED)"
head -c $SIZE /dev/urandom >"$W/rand.img" && head -c 4096 /dev/urandom >"$W/rand4k" || exit 1
mkdir "$W/cmds"
for i in $(seq "$SNAPS"); do
  # 1.6% drawn with replacement: its first K distinct offsets are K distinct
  # blocks drawn uniformly (1.5% of the disk)
  bench_rewrite_offsets $SIZE 1.6 4096 $((SEED * 100000 + i)) >"$W/cmds/off"
  awk -v k=$K -v src="$W/rand4k" '!seen[$0]++ && n < k { n++; print "write -q -s " src " " $0 " 4k" }
    END { exit n < k }' "$W/cmds/off" >"$W/cmds/$i" || bench_die "fewer than $K distinct offsets"
done

# ---- the systems: <s>_setup (disk written in full, base snapshot),
# ---- <s>_target (qemu-io's -f FORMAT FILENAME), <s>_snapshot NAME, <s>_used

vmsnap_setup() {
  H=$W/home
  if [ ! -x "$BUILD/vmsnapd" ] || [ ! -x "$BUILD/vmsnap" ]; then bench_log "build vmsnapd and vmsnap in $BUILD"; return 1; fi
  "$BUILD/vmsnapd" --home "$H" --log-file "$W/vmsnapd.log" --log-level warn || return 1
  bench_wait_socket "$H/control.sock" 50
  VPID=$(pgrep -f "vmsnapd --home $H" | head -1)
  [ -n "$VPID" ] || { bench_log "vmsnapd did not start (see $W/vmsnapd.log)"; return 1; }
  bench_on_exit "'$BUILD/vmsnap' --home '$H' daemon stop; bench_wait_gone $VPID 300"
  "$BUILD/vmsnap" --home "$H" sr create sra "$W/sra" --type native --size "$(numfmt --from=iec "$IMG")" >/dev/null &&
    "$BUILD/vmsnap" --home "$H" vm create vma --sr sra --disk "root:$SIZE" >/dev/null &&
    nbdcopy "$W/rand.img" "nbd+unix:///vma/root?socket=$H/nbd.sock" && vmsnap_snapshot base
}
vmsnap_target() { echo raw "nbd+unix:///vma/root?socket=$H/nbd.sock"; }
vmsnap_snapshot() { "$BUILD/vmsnap" --home "$H" snapshot create vma "$1" >/dev/null; }
vmsnap_used() {
  "$BUILD/vmsnap" --home "$H" --json sr show sra |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["result"]["space"]["used"])'
}
vmsnap_notes() { echo "vmsnap: native SR, 4 KiB blocks, build $BUILD at $(git -C "$TOP" rev-parse --short HEAD)"; }

qcow2_setup() {
  qemu-img convert -f raw -O qcow2 -o cluster_size=4096,lazy_refcounts=off "$W/rand.img" "$W/disk.qcow2" &&
    qcow2_snapshot base
}
qcow2_target() { echo qcow2 "$W/disk.qcow2"; }
qcow2_snapshot() { qemu-img snapshot -c "$1" "$W/disk.qcow2"; }
qcow2_used() { qemu-img check --output=json "$W/disk.qcow2" | python3 -c 'import json, sys; print(json.load(sys.stdin)["image-end-offset"])'; }
qcow2_notes() {
  echo "qcow2: $(qemu-img --version | head -1); check: $(qemu-img check "$W/disk.qcow2" 2>&1 | head -1);" \
    "file $(stat -c %s "$W/disk.qcow2") bytes, allocated $(du -B1 "$W/disk.qcow2" | cut -f1)"
}

ZP=mpeers$$
zfs_setup() {
  command -v zfs-fuse >/dev/null || { bench_log "zfs-fuse is not installed"; return 1; }
  zfs_pool "$ZP" "$IMG" || return 1
  zfs create -o recordsize=4K -o compression=off -o atime=off "$ZP/d" &&
    dd if="$W/rand.img" of="$W/zmnt-$ZP/d/disk" bs=1M conv=fsync status=none && zfs_snapshot base
}
zfs_target() { echo raw "$W/zmnt-$ZP/d/disk"; }
zfs_snapshot() { zfs snapshot "$ZP/d@$1"; }
# A snapshot waits for its transaction group to be synced; before a count,
# two property sets sync two more, so that the frees deferred by the previous
# ones are done.  zdb counts what the synced pool allocates.
zfs_used() {
  zfs set bench:settle=1 "$ZP/d" && zfs set bench:settle=2 "$ZP/d" &&
    zdb -bbb "$ZP" >"$W/zdb.txt" 2>&1 && awk '/SPA allocated:/ { print $3 }' "$W/zdb.txt"
}
zfs_notes() {
  echo "zfs: zfs-fuse $(dpkg-query -W -f '${Version}' zfs-fuse 2>/dev/null), pool version" \
    "$(zpool get version "$ZP" | awk 'NR == 2 { print $3 }'), ashift $(zdb -C "$ZP" 2>/dev/null | awk '/ashift/ { print $2; exit }')," \
    "$(zdb -dd "$ZP/d" 2>/dev/null | awk '/ZFS plain file$/ { print "the file: levels " $2 ", indirect block " $3 ", record " $4; exit }')"
  echo "zfs: zdb -bbb at the end (blocks, LSIZE, PSIZE, ASIZE):"
  grep -E ' (L[0-9] )?ZFS plain file$|SPA allocated' "$W/zdb.txt" | sed 's/^/    /'
}

BT=$W/btrfs
btrfs_setup() {
  command -v mkfs.btrfs >/dev/null || { bench_log "btrfs-progs are not installed"; return 1; }
  loop_fs btrfs "$BT" "$IMG" && btrfs subvolume create "$BT/vol" >/dev/null &&
    dd if="$W/rand.img" of="$BT/vol/disk" bs=1M conv=fsync status=none && btrfs_snapshot base
}
btrfs_target() { echo raw "$BT/vol/disk"; }
btrfs_snapshot() { btrfs subvolume snapshot -r "$BT/vol" "$BT/$1" >/dev/null; }
# the space each block group type uses, x2 for DUP (the raw bytes on the device)
btrfs_used() {
  btrfs filesystem sync "$BT" && sync && btrfs filesystem df -b "$BT" >"$W/btrfs-df.txt" &&
    awk -F'[ ,:=]+' '/^(Data|Metadata|System),/ { c = $2 ~ /DUP|RAID1/ ? 2 : 1; u += c * $NF } END { printf "%.0f\n", u }' "$W/btrfs-df.txt"
}
btrfs_notes() {
  echo "btrfs: $(btrfs --version), nodesize $(cat /sys/fs/btrfs/*/nodesize 2>/dev/null | head -1); df at the end:"
  sed 's/^/    /' "$W/btrfs-df.txt"
  echo "btrfs: tree sizes at the end (one copy; inspect-internal tree-stats):"
  timeout 300 btrfs inspect-internal tree-stats -b "$(findmnt -n -o SOURCE "$BT")" 2>&1 |
    awk -v meta="$(awk -F'[ ,:=]+' '/^Metadata,/ { print $NF }' "$W/btrfs-df.txt")" '
      /^Calculating size of/ { t = $4 } /Total size:/ { print "    " t " tree: " $3 " bytes"; s += $3 }
      END { printf "    the rest (the trees of the volume and its snapshots; chunk, dev, free-space, uuid): %.0f bytes\n", meta - s }'
}

# ---- the run

ROWS=()
run() { # system
  local s=$1 t0 i prev_meta prev_n used data meta fmt target out
  t0=$(date +%s)
  bench_log "$s: disk written in full, base snapshot"
  "${s}_setup" || { bench_log "$s: set-up failed"; return 1; }
  read -r fmt target < <("${s}_target")
  for i in $(seq 0 "$SNAPS"); do
    if [ "$i" -gt 0 ]; then
      out=$(qemu-io -t writeback -f "$fmt" "$target" <"$W/cmds/$i" 2>&1) ||
        { bench_log "$s: qemu-io failed: $out"; return 1; }
      out=${out//qemu-io> /}
      [ -z "${out//[$'\n']/}" ] || { bench_log "$s: qemu-io: $out"; return 1; }
      "${s}_snapshot" "s$i" || { bench_log "$s: snapshot $i failed"; return 1; }
    fi
    [ "$i" = 0 ] || [ "$i" = "$ALSO" ] || [ "$i" = "$SNAPS" ] || continue
    used=$("${s}_used")
    [[ $used =~ ^[0-9]+$ ]] || { bench_log "$s: cannot read its space ($used)"; return 1; }
    data=$((SIZE + i * K * 4096)) meta=$((used - data))
    ROWS+=("$(awk -v s="$s" -v n="$i" -v d="$data" -v u="$used" -v m="$meta" -v pm="${prev_meta:-0}" \
      -v pn="${prev_n:-0}" -v k=$K -v t=$(($(date +%s) - t0)) 'BEGIN {
      if (n > pn) { per = (m - pm) / (n - pn); ki = sprintf("%.0f", per / 1024); pc = sprintf("%.1f%%", 100 * per / (k * 4096)) }
      else { ki = "-"; pc = "-" }
      printf "| %s | %d | %.1f | %.1f | %.1f | %.2f%% | %s | %s | %d |", s, n, d / 1048576, u / 1048576,
        m / 1048576, 100 * m / d, ki, pc, t }')")
    bench_log "$s: ${ROWS[-1]}"
    prev_meta=$meta prev_n=$i
  done
  NOTES+=("$("${s}_notes")")
}

NOTES=()
FAILED=
for s in ${SYSTEMS//,/ }; do
  declare -F "${s}_setup" >/dev/null || bench_die "unknown system $s (vmsnap, qcow2, zfs, btrfs)"
  run "$s" || FAILED="$FAILED $s"
done
echo
echo "Workload: 1 GiB written in full, base snapshot, then $SNAPS x (rewrite $K distinct random 4 KiB blocks, snapshot); seed $SEED; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| system | N | data MiB | used MiB | metadata MiB | metadata % of data | metadata KiB per interval (since the previous row) | % of an interval's data | s since set-up |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
printf '%s\n' "${NOTES[@]}"
echo "dm-thin: not measured (no device-mapper in this kernel: $(uname -r))"
[ -z "$FAILED" ] || bench_die "failed:$FAILED"
