# shellcheck shell=bash
# Adapters for vmsnap's own storage repositories, served by vmsnapd.
# Contract: see the top of sys_peers.sh.
#
# Everything goes through the user's interface: the `vmsnap` CLI creates
# the SR, the VM and its disk and takes, rolls back and deletes snapshots;
# `vmsnapd` serves the disk as the NBD export "vm1/root".  As for the peers
# (qemu-img), snapshot operations run while the disk is not served, so the
# CLI works on the catalog in process (what `vmsnap` does when no daemon
# answers); the timings therefore include opening the catalog and the SR,
# as qemu-img's include opening the image.
#
#   vmsnap-native   the native engine: a pool file in a directory of the
#                   bench work dir (same filesystem as the peers' images)
#   vmsnap-zfs      a zfs-fuse pool on a sparse file vdev in the work dir;
#                   the harness starts zfs-fuse if it is not running and
#                   stops it again at exit (unless other pools appeared)
#   vmsnap-reflink  a loop-mounted XFS image made with reflink=1
#
# Each SR gets room for the disk and every snapshot's changes: the pool
# file, pool vdev or XFS image is sparse and sized at 8x the disk + 1 GiB.

VS_HOME= VS_DIR= VS_TYPE= VS_POOL= VS_MNT= VS_LOOP=
VS_ZFS_PIDFILE=/var/run/zfs-fuse.pid
VS_ZFS_STARTED=0

vs_cli() { "$BUILD_DIR/vmsnap" --home "$VS_HOME" "$@"; }

vmsnap_bins_check() {
  [ -x "$BUILD_DIR/vmsnapd" ] && [ -x "$BUILD_DIR/vmsnap" ] && return 0
  echo "vmsnapd/vmsnap not built in $BUILD_DIR (cmake --build $BUILD_DIR --target vmsnapd vmsnap)"
  return 1
}

vs_sr_bytes() { echo $(( $1 * 8 + 1024 * 1024 * 1024 )); }

# ------------------------------------------------------------------ zfs-fuse
# zfs-fuse answers "pool is busy" for a moment after its datasets were used.
vs_zpool_destroy() {
  local i
  for i in $(seq 60); do
    zpool list "$1" >/dev/null 2>&1 || return 0
    zpool destroy -f "$1" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  bench_log "could not destroy zfs pool $1"
  return 1
}
vs_zfs_start() {
  zpool list >/dev/null 2>&1 && return 0
  if [ -f "$VS_ZFS_PIDFILE" ] && ! kill -0 "$(cat "$VS_ZFS_PIDFILE")" 2>/dev/null; then
    rm -f "$VS_ZFS_PIDFILE"   # stale: its daemon is gone
  fi
  zfs-fuse -p "$VS_ZFS_PIDFILE" --no-kstat-mount >>"$BENCH_LOG" 2>&1 || return 1
  VS_ZFS_STARTED=1
  bench_on_exit "vs_teardown; vs_zfs_stop"
  local i
  for i in $(seq 50); do zpool list >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
# Stop the zfs-fuse started here, unless someone else created a pool since.
vs_zfs_stop() {
  local pid i
  [ "$VS_ZFS_STARTED" = 1 ] || return 0
  VS_ZFS_STARTED=0
  [ -n "$(zpool list -H -o name 2>/dev/null)" ] && return 0
  pid=$(cat "$VS_ZFS_PIDFILE" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  rm -f "$VS_ZFS_PIDFILE"
}

# --------------------------------------------------------- common adapters
# vs_setup TYPE DIR SIZE: the SR of TYPE, and VM vm1 with disk root of SIZE.
vs_setup() {
  local type=$1 dir=$2 size=$3 srb loc
  VS_TYPE=$type VS_DIR=$dir VS_HOME=$dir/home
  srb=$(vs_sr_bytes "$size")
  mkdir -p "$dir" || return 1
  case $type in
    native)
      vs_cli sr create sr1 "$dir/sr" --type native --size "$srb" >>"$BENCH_LOG" 2>&1 || return 1 ;;
    zfs)
      vs_zfs_start || { bench_log "zfs-fuse did not start"; return 1; }
      VS_POOL=vmsbench$$
      truncate -s "$srb" "$dir/zpool.img" || return 1
      zpool create -m "$dir/zmnt" "$VS_POOL" "$dir/zpool.img" >>"$BENCH_LOG" 2>&1 || { VS_POOL=; return 1; }
      vs_cli sr create sr1 "$VS_POOL/sr" --type zfs >>"$BENCH_LOG" 2>&1 || return 1 ;;
    reflink)
      truncate -s "$srb" "$dir/xfs.img" || return 1
      mkfs.xfs -q -m reflink=1 "$dir/xfs.img" >>"$BENCH_LOG" 2>&1 || return 1
      VS_LOOP=$(losetup -f --show "$dir/xfs.img") || { VS_LOOP=; return 1; }
      VS_MNT=$dir/xfs
      mkdir -p "$VS_MNT" && mount "$VS_LOOP" "$VS_MNT" || { VS_MNT=; return 1; }
      vs_cli sr create sr1 "$VS_MNT/sr" --type reflink >>"$BENCH_LOG" 2>&1 || return 1 ;;
    *) return 1 ;;
  esac
  vs_cli vm create vm1 --sr sr1 --disk "root:$size" >>"$BENCH_LOG" 2>&1
}

vs_serve() {
  bench_server_stop   # the daemon of the build phase, if any
  SYS_EXPORT=vm1/root
  SYS_SOCK=$1
  bench_server_start "$BUILD_DIR/vmsnapd" --home "$VS_HOME" --foreground --socket "$1" \
    --control-socket "$VS_HOME/control.sock" --log-level warn
  SYS_RSS_PID=$SERVER_PID
}
vs_unserve() { bench_server_stop; }
# The daemon of the build phase: started once, kept until the next serve.
vs_daemon_up() {
  if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then return 0; fi
  SYS_SOCK=$SOCK
  vs_serve "$SOCK" && bench_probe_open
}
vs_rewrite() { # seed
  vs_daemon_up || return 1
  bench_rewrite "$(bench_nbd_uri "$SOCK" vm1/root)" "$CUR_SIZE" "$REWRITE_PCT" "$EXTENT_B" "$1" \
    "$WORK/rewrite.json" >/dev/null
}
# Build snapshots FROM..TO in one process (bench/lib/vsbuild.py): each one
# a rewrite through the daemon's NBD export, then snapshot.create through
# its control socket, as a user's script or a management tool would do it,
# without starting a fio and a CLI process per snapshot.  Prints
# "N,rewrite_ms,snapshot_ms" for every snapshot taken; stops once BUDGET_S
# seconds were spent (after the snapshot in progress).
vs_build() { # from to seed_base budget_s
  vs_daemon_up || return 1
  "$BENCH_PY" "$BENCH_DIR/lib/vsbuild.py" --nbd-socket "$SOCK" --export vm1/root \
    --control-socket "$VS_HOME/control.sock" --vm vm1 --pct "$REWRITE_PCT" --extent "$EXTENT_B" \
    --seed-base "$3" --from "$1" --to "$2" --budget-s "$4"
}
vs_snapshot() { vs_cli snapshot create vm1 "$1"; }
vs_rollback() { vs_cli vm rollback vm1 "$1"; }
vs_delete() { vs_cli snapshot delete "vm1@$1"; }
# The live disk file of a zfs SR (in the VM's dataset mount; views of
# snapshots are mounted beside it as <vm>.view.<snap>) or of a reflink SR
# (<sr>/<vm>/disks/; snapshots are in <sr>/<vm>/snapshots/).
vs_disk_file() {
  local f pat
  case $VS_TYPE in
    zfs) pat="$VS_DIR/zmnt/sr/*/*.raw" ;;
    reflink) pat="$VS_MNT/sr/*/disks/*.raw" ;;
    *) return 1 ;;
  esac
  for f in $pat; do
    case $f in *.view.*) continue ;; esac
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}
# Before a measurement: a rollback leaves the disk file with an empty page
# cache.  zfs-fuse drops the cache of a dataset's files on `zfs rollback`,
# and its own ARC (100 MiB in Debian's /etc/zfs/zfsrc) cannot hold the disk:
# every 2 KiB read then costs a 128 KiB record read, checksum and
# decompression in zfs-fuse, ~1k IOPS (docs/bench-paper.md, "Two anomalies
# of that run, explained").  A reflink rollback puts a new file (FICLONE) in
# place, uncached too (its blocks still are, in the loop device's backing
# file).  Every other system is measured with its data in the page cache, so
# the disk file is read once sequentially (4 readers) when less than 95% of
# it is cached.
vs_warm() {
  [ "$VS_TYPE" = zfs ] || [ "$VS_TYPE" = reflink ] || return 0
  local f size res i q pids=()
  f=$(vs_disk_file) || return 1
  size=$(stat -c %s "$f") || return 1
  res=$(fincore -n -b -o RES "$f" 2>/dev/null) || res=0
  [ $((res * 100)) -lt $((size * 95)) ] || return 0
  q=$(( (size + 4 * 1048576 - 1) / (4 * 1048576) ))   # MiB per reader
  for i in 0 1 2 3; do
    dd if="$f" of=/dev/null bs=1M skip=$((i * q)) count="$q" status=none &
    pids+=($!)
  done
  wait "${pids[@]}"   # only these: servers run in the background too
  bench_log "$VS_TYPE: disk file was $((res * 100 / size))% in the page cache; read it in (now $(($(fincore -n -b -o RES "$f" 2>/dev/null || echo 0) * 100 / size))%)"
}
vs_alloc() {
  case $VS_TYPE in
    native) bench_alloc_bytes "$VS_DIR/sr" ;;
    zfs) bench_alloc_bytes "$VS_DIR/zpool.img" ;;
    # du counts shared extents once per file: the filesystem's own count
    reflink) df -B1 --output=used "$VS_MNT" 2>/dev/null | awk 'NR == 2 { print $1 + 0 }' ;;
  esac
}
vs_teardown() {
  [ -n "$VS_DIR" ] || return 0
  bench_server_stop
  if [ -n "$VS_POOL" ]; then vs_zpool_destroy "$VS_POOL"; VS_POOL=; fi
  if [ -n "$VS_MNT" ]; then
    umount "$VS_MNT" 2>/dev/null || { sleep 1; umount -l "$VS_MNT"; }
    VS_MNT=
  fi
  if [ -n "$VS_LOOP" ]; then losetup -d "$VS_LOOP" 2>/dev/null; VS_LOOP=; fi
  rm -rf "$VS_DIR"
  VS_DIR= VS_HOME=
}

vmsnap_native_check() { vmsnap_bins_check; }
vmsnap_zfs_check() {
  vmsnap_bins_check || return 1
  local p
  for p in zfs-fuse zpool zfs; do
    command -v "$p" >/dev/null || { echo "$p not installed (apt-get install zfs-fuse)"; return 1; }
  done
  [ "$(id -u)" = 0 ] || { echo "zfs-fuse needs root"; return 1; }
}
vmsnap_reflink_check() {
  vmsnap_bins_check || return 1
  local p
  for p in mkfs.xfs losetup mount umount; do
    command -v "$p" >/dev/null || { echo "$p not installed (apt-get install xfsprogs util-linux)"; return 1; }
  done
  [ "$(id -u)" = 0 ] || { echo "loop-mounting XFS needs root"; return 1; }
}

for _t in native zfs reflink; do
  eval "vmsnap_${_t}_label() { echo \"vmsnap ${_t} SR (vmsnapd)\"; }
vmsnap_${_t}_max_n() { echo 100000; }
vmsnap_${_t}_setup() { vs_setup ${_t} \"\$@\"; }
vmsnap_${_t}_serve() { vs_serve \"\$@\"; }
vmsnap_${_t}_unserve() { vs_unserve; }
vmsnap_${_t}_rewrite() { vs_rewrite \"\$@\"; }
vmsnap_${_t}_ops_begin() { vs_daemon_up; }
vmsnap_${_t}_snapshot() { vs_snapshot \"\$@\"; }
vmsnap_${_t}_build() { vs_build \"\$@\"; }
vmsnap_${_t}_rollback() { vs_rollback \"\$@\"; }
vmsnap_${_t}_delete() { vs_delete \"\$@\"; }
vmsnap_${_t}_alloc() { vs_alloc; }
vmsnap_${_t}_warm() { vs_warm; }
vmsnap_${_t}_teardown() { vs_teardown; }"
done
unset _t
