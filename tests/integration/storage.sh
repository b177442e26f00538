# shellcheck shell=bash
# Storage set-up shared by the conformance scripts (sourced after lib.sh):
# a zfs-fuse pool on a file vdev and loop-mounted filesystem images in the
# scratch dir $T, each registered with on_exit so that it is torn down even
# when the script fails.
#
#   zfs_pool NAME [SIZE]   start zfs-fuse if needed, create pool NAME (a file
#                          vdev of SIZE, default 128M, mounted under
#                          $T/zmnt-NAME)
#   loop_fs KIND DIR SIZE  make a KIND (xfs-reflink, btrfs, ext4) image and
#                          mount it on DIR
#   tmpfs_at DIR           mount a small tmpfs on DIR
#   each_sr_type FN TAG    run `FN NAME TYPE LOCATION [sr create options...]`
#                          once per SR type: native (a directory), zfs (pool
#                          TAG<pid>), reflink on XFS and on btrfs (loop images)

ZPID=/var/run/zfs-fuse.pid

# zfs-fuse answers "pool is busy" for a moment after its datasets were used.
destroy_pool() {
  local i
  for i in $(seq 40); do
    zpool list "$1" >/dev/null 2>&1 || return 0
    zpool destroy -f "$1" && return 0
    sleep 0.5
  done
  echo "could not destroy zfs pool $1" >&2
  return 1
}

# stop_zfs PID: stop the daemon started here, unless someone else created a
# pool meanwhile; wait for it to exit and drop its pidfile (zfs-fuse leaves
# it behind and then refuses to start again).
stop_zfs() {
  [ -n "$(zpool list -H -o name 2>/dev/null)" ] && return 0
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
  rm -f "$ZPID"
}

zfs_pool() {
  local name=$1 size=${2:-128M}
  if ! zpool list >/dev/null 2>&1; then
    if [ -f "$ZPID" ] && ! kill -0 "$(cat "$ZPID")" 2>/dev/null; then
      rm -f "$ZPID"     # stale: its daemon is gone
    fi
    zfs-fuse -p "$ZPID" --no-kstat-mount || return 1
    on_exit "stop_zfs $(cat "$ZPID")"
    for _ in $(seq 50); do zpool list >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  truncate -s "$size" "$T/zpool-$name.img"
  zpool create -m "$T/zmnt-$name" "$name" "$T/zpool-$name.img" || return 1
  on_exit "destroy_pool $name"
}

# loop_mount IMAGE DIR: attach, mount, register the cleanups.
loop_mount() {
  local img=$1 dir=$2 dev
  dev=$(losetup -f --show "$img") || return 1
  on_exit "losetup -d $dev"
  mkdir -p "$dir"
  mount "$dev" "$dir" || return 1
  on_exit "umount $dir"
}

loop_fs() {
  local kind=$1 dir=$2 size=$3 img="$T/$(basename "$2").img"
  truncate -s "$size" "$img"
  case $kind in
    xfs-reflink) mkfs.xfs -q -m reflink=1 "$img" ;;
    btrfs) mkfs.btrfs -q "$img" >/dev/null 2>&1 ;;
    ext4) mkfs.ext4 -q -F "$img" ;;
    *) echo "loop_fs: unknown kind $kind" >&2; return 1 ;;
  esac || return 1
  loop_mount "$img" "$dir"
}

tmpfs_at() {
  mkdir -p "$1"
  mount -t tmpfs -o size=16m tmpfs "$1" || return 1
  on_exit "umount $1"
}

each_sr_type() {
  local fn=$1 pool=$2$$
  "$fn" native native "$T/native" --size 256M

  t_begin "zfs-fuse pool on a file vdev"
  if zfs_pool "$pool" 2>"$T/zpool.err"; then
    t_ok
    "$fn" zfs zfs "$pool/sr"
  else
    t_fail "$(cat "$T/zpool.err")"
  fi

  t_begin "XFS image with reflink=1"
  if loop_fs xfs-reflink "$T/xfs" 320M; then
    t_ok
    "$fn" reflink-xfs reflink "$T/xfs/sr"
  else
    t_fail "cannot make or mount XFS"
  fi

  t_begin "btrfs image"
  if loop_fs btrfs "$T/btrfs" 256M; then
    t_ok
    "$fn" reflink-btrfs reflink "$T/btrfs/sr"
  else
    t_fail "cannot make or mount btrfs"
  fi
}

# need_root: loop mounts and zfs-fuse need root (a failure under CI=true).
need_root() {
  [ "$(id -u)" = 0 ] && return 0
  if [ "${CI:-}" = true ]; then echo "FAIL: loop mounts and zfs-fuse need root"; exit 1; fi
  echo "SKIP: loop mounts and zfs-fuse need root"
  exit 0
}
