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
. "$(dirname "$0")/storage.sh"
need zfs zpool zfs-fuse mkfs.xfs mkfs.btrfs mkfs.ext4 losetup mount umount
PROG=$BUILD/it_backend_conformance
[ -x "$PROG" ] || { echo "FAIL: $PROG is not built"; exit 1; }
need_root

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
POOL=vmsit$$
t_begin "zfs-fuse pool on a file vdev"
if zfs_pool "$POOL" 2>"$T/zpool.err"; then
  t_ok
  run_conformance zfs zfs "$POOL/sr"
  check "zfs: the pool has no leftover dataset" test "$(zfs list -H -o name -r "$POOL")" = "$POOL"
  check_fails "zfs: a location that is not pool/dataset is refused" 1 "$PROG" zfs "$POOL"
else
  t_fail "$(cat "$T/zpool.err")"
fi

# ---- reflink on XFS and btrfs -------------------------------------------------
t_begin "XFS image with reflink=1"
if loop_fs xfs-reflink "$T/xfs" 320M; then
  t_ok
  run_conformance reflink-xfs reflink "$T/xfs/sr"
  check "reflink-xfs: the SR directory is gone" test ! -e "$T/xfs/sr"
else
  t_fail "cannot make or mount XFS"
fi
t_begin "btrfs image"
if loop_fs btrfs "$T/btrfs" 256M; then
  t_ok
  run_conformance reflink-btrfs reflink "$T/btrfs/sr"
else
  t_fail "cannot make or mount btrfs"
fi

# ---- reflink refused where there are no reflinks --------------------------------
t_begin "ext4 image"
if loop_fs ext4 "$T/ext4" 64M; then
  t_ok
  check "reflink on ext4 is refused clearly" "$PROG" --expect-refused reflink "$T/ext4/sr"
else
  t_fail "cannot make or mount ext4"
fi
t_begin "tmpfs"
if tmpfs_at "$T/tmpfs"; then
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
