#!/usr/bin/env bash
# The backend conformance suite (it_backend_conformance) against every SR
# type on real filesystems set up here, in the scratch dir $T:
#   zfs           - a zfs-fuse pool on a 128 MiB file vdev (the daemon is
#                   started here when it is not running, and stopped again)
#   reflink-xfs   - a loop-mounted XFS image made with reflink=1
#   reflink-btrfs - a loop-mounted btrfs image
#   native        - once the native backend and the engine exist
# and checks that a reflink SR on ext4 and on tmpfs is refused clearly.
# Everything (mounts, loop devices, the pool, the daemon) is cleaned up by
# lib.sh's on_exit even when a step fails.
. "$(dirname "$0")/lib.sh" "$@"
need zfs zpool zfs-fuse mkfs.xfs mkfs.btrfs mkfs.ext4 losetup mount umount
PROG=$BUILD/it_backend_conformance
[ -x "$PROG" ] || { echo "FAIL: $PROG is not built"; exit 1; }
if [ "$(id -u)" != 0 ]; then
  if [ "${CI:-}" = true ]; then echo "FAIL: loop mounts and zfs-fuse need root"; exit 1; fi
  echo "SKIP: loop mounts and zfs-fuse need root"; exit 0
fi

# loop_mount IMAGE DIR [mount options]: attach, mount, register the cleanups.
loop_mount() {
  local img=$1 dir=$2 dev
  dev=$(losetup -f --show "$img") || return 1
  on_exit "losetup -d $dev"
  mkdir -p "$dir"
  mount "$dev" "$dir" || return 1
  on_exit "umount $dir"
}

run_conformance() {   # NAME TYPE LOCATION
  local name=$1 out rc
  t_begin "conformance: $name"
  out=$("$PROG" "$2" "$3" 2>&1); rc=$?
  if [ $rc = 0 ]; then
    t_ok
    printf '%s\n' "$out" | tail -1 >&2
  else
    t_fail "$(printf '%s\n' "$out" | grep -E '^FAIL|passed' | head -20)"
  fi
}

# ---- zfs --------------------------------------------------------------------
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
ZPID=/var/run/zfs-fuse.pid
started_zfs=0
# stop_zfs PID: stop the daemon started here, unless someone else created a
# pool meanwhile; wait for it to exit and drop its pidfile (zfs-fuse leaves it
# behind and then refuses to start again).
stop_zfs() {
  [ -n "$(zpool list -H -o name 2>/dev/null)" ] && return 0
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
  rm -f "$ZPID"
}
if ! zpool list >/dev/null 2>&1; then
  if [ -f "$ZPID" ] && ! kill -0 "$(cat "$ZPID")" 2>/dev/null; then
    rm -f "$ZPID"     # stale: its daemon is gone
  fi
  if zfs-fuse -p "$ZPID" --no-kstat-mount; then
    started_zfs=1
    on_exit "stop_zfs $(cat "$ZPID")"
    for _ in $(seq 50); do zpool list >/dev/null 2>&1 && break; sleep 0.2; done
  fi
fi
POOL=vmsit$$
truncate -s 128M "$T/zpool.img"
t_begin "zfs-fuse pool on a file vdev"
if out=$(zpool create -m "$T/zmnt" "$POOL" "$T/zpool.img" 2>&1); then
  on_exit "destroy_pool $POOL"
  t_ok
  run_conformance zfs zfs "$POOL/sr"
  check "zfs: the pool has no leftover dataset" test "$(zfs list -H -o name -r "$POOL")" = "$POOL"
  check_fails "zfs: a location that is not pool/dataset is refused" 1 "$PROG" zfs "$POOL"
else
  t_fail "$out (zfs-fuse started here: $started_zfs)"
fi

# ---- reflink on XFS and btrfs -------------------------------------------------
truncate -s 320M "$T/xfs.img"
t_begin "XFS image with reflink=1"
if mkfs.xfs -q -m reflink=1 "$T/xfs.img" && loop_mount "$T/xfs.img" "$T/xfs"; then
  t_ok
  run_conformance reflink-xfs reflink "$T/xfs/sr"
  check "reflink-xfs: the SR directory is gone" test ! -e "$T/xfs/sr"
else
  t_fail "cannot make or mount XFS"
fi

truncate -s 256M "$T/btrfs.img"
t_begin "btrfs image"
if mkfs.btrfs -q "$T/btrfs.img" >/dev/null 2>&1 && loop_mount "$T/btrfs.img" "$T/btrfs"; then
  t_ok
  run_conformance reflink-btrfs reflink "$T/btrfs/sr"
else
  t_fail "cannot make or mount btrfs"
fi

# ---- reflink refused where there are no reflinks --------------------------------
truncate -s 64M "$T/ext4.img"
t_begin "ext4 image"
if mkfs.ext4 -q -F "$T/ext4.img" && loop_mount "$T/ext4.img" "$T/ext4"; then
  t_ok
  check "reflink on ext4 is refused clearly" "$PROG" --expect-refused reflink "$T/ext4/sr"
else
  t_fail "cannot make or mount ext4"
fi
mkdir -p "$T/tmpfs"
t_begin "tmpfs"
if mount -t tmpfs -o size=16m tmpfs "$T/tmpfs"; then
  on_exit "umount $T/tmpfs"
  t_ok
  check "reflink on tmpfs is refused clearly" "$PROG" --expect-refused reflink "$T/tmpfs/sr"
else
  t_fail "cannot mount tmpfs"
fi
t_begin "the refusal names the filesystem and what is needed"
msg=$("$PROG" --expect-refused reflink "$T/ext4/sr2" 2>&1)
if grep -q "ext2/3/4 filesystem without reflink" <<<"$msg" && grep -q "reflink=1" <<<"$msg"; then t_ok; else t_fail "$msg"; fi

# ---- native, once it exists -------------------------------------------------------
if [ -f "$TOP/src/lib/backend/native.c" ] && [ -f "$TOP/src/lib/backend/registry.c" ]; then
  run_conformance native native "$T/native"
else
  echo "note: native backend not built yet (src/lib/backend/native.c, registry.c): skipped" >&2
fi

t_end
