# shellcheck shell=bash
# Adapters for the peer systems a user would pick instead of vmsnap.
#
# Adapter contract (one set of functions per system; "-" in the system name
# becomes "_" in the function prefix):
#   <s>_label                 one-line description for plots and tables
#   <s>_check                 0 if the prerequisites exist, else print why, 1
#   <s>_max_n                 largest snapshot count worth building (raw: 0)
#   <s>_setup DIR SIZE        create an empty (zero) disk of SIZE bytes in DIR
#   <s>_serve SOCK            start serving the live disk on Unix socket SOCK
#                             with bench_server_start; set SYS_EXPORT (export
#                             name, may be empty) and SYS_RSS_PID (the process
#                             whose peak RSS is the server's memory)
#   <s>_unserve               stop serving (the disk stays)
#   <s>_snapshot NAME         take snapshot NAME of the live disk
#   <s>_rollback NAME         make the live disk equal to snapshot NAME again
#   <s>_delete NAME           delete snapshot NAME; the live disk is unchanged
#   <s>_alloc                 host bytes the disk and its snapshots occupy
#   <s>_teardown              remove everything setup created
# Optional:
#   <s>_rewrite SEED          rewrite REWRITE_PCT% of the disk in EXTENT_B
#                             writes (random, from SEED) its own faster way;
#                             without it the harness serves the disk and
#                             writes with fio
#   <s>_ops_begin             untimed preparation before a snapshot op
#   <s>_warm                  untimed, before each measurement: bring the
#                             disk's data back into the page cache where a
#                             snapshot op dropped it (vmsnap zfs, reflink:
#                             rollback)
#   <s>_build FROM TO SEED_BASE BUDGET_S
#                             build snapshots FROM..TO (each after a rewrite)
#                             in one process; print "N,rewrite_ms,snapshot_ms"
#                             per snapshot; stop after BUDGET_S s (0: never)
# Snapshot operations are called while the disk is not being served; each
# adapter takes snapshots the way its users do offline (qemu-img), which is
# also the fastest way each peer offers.

# ---------------------------------------------------------------- qcow2 chain
# The chained model (XenServer VHD, qcow2 external snapshots): a snapshot
# freezes the live layer, and a new empty layer on top of it becomes the live
# disk.  Reading a block that no upper layer holds walks down the chain.
# Deleting a snapshot merges it into its child (qemu-img rebase in safe mode,
# the offline equivalent of block-stream), which is what keeps the chain valid.

QC_DIR=
declare -A QC_PARENT  # layer file -> its backing layer file ("" for the base)

qcow2_chain_label() { echo "qcow2 backing chain (qemu-nbd)"; }
qcow2_chain_check() {
  command -v qemu-img >/dev/null && command -v qemu-nbd >/dev/null && return 0
  echo "qemu-img/qemu-nbd not installed (apt-get install qemu-utils)"; return 1
}
qcow2_chain_max_n() { echo 100000; }
qcow2_chain_setup() {
  QC_DIR=$1; QC_PARENT=()
  mkdir -p "$QC_DIR"
  qemu-img create -q -f qcow2 -o cluster_size=65536 "$QC_DIR/active.qcow2" "$2"
  QC_PARENT[active.qcow2]=
}
qcow2_chain_serve() {
  SYS_EXPORT=
  bench_server_start qemu-nbd --persistent --format=qcow2 --cache=writeback --aio=threads \
    --socket="$1" "$QC_DIR/active.qcow2"
  SYS_RSS_PID=$SERVER_PID
}
qcow2_chain_unserve() { bench_server_stop; }
qcow2_chain_snapshot() {
  local snap="snap-$1.qcow2"
  [ ! -e "$QC_DIR/$snap" ] || { bench_log "qcow2-chain: snapshot $1 exists"; return 1; }
  mv "$QC_DIR/active.qcow2" "$QC_DIR/$snap" || return 1
  QC_PARENT[$snap]=${QC_PARENT[active.qcow2]}
  # The backing file name is stored relative to the overlay's directory.
  qemu-img create -q -f qcow2 -o cluster_size=65536 -b "$snap" -F qcow2 "$QC_DIR/active.qcow2" || return 1
  QC_PARENT[active.qcow2]=$snap
}
qcow2_chain_rollback() {
  local snap="snap-$1.qcow2"
  [ -e "$QC_DIR/$snap" ] || { bench_log "qcow2-chain: no snapshot $1"; return 1; }
  rm -f "$QC_DIR/active.qcow2"
  qemu-img create -q -f qcow2 -o cluster_size=65536 -b "$snap" -F qcow2 "$QC_DIR/active.qcow2" || return 1
  QC_PARENT[active.qcow2]=$snap
}
qcow2_chain_delete() {
  local snap="snap-$1.qcow2" child parent
  [ -e "$QC_DIR/$snap" ] || { bench_log "qcow2-chain: no snapshot $1"; return 1; }
  parent=${QC_PARENT[$snap]}
  for child in "${!QC_PARENT[@]}"; do
    [ "${QC_PARENT[$child]}" = "$snap" ] || continue
    # Safe-mode rebase copies into the child every cluster whose content
    # differs between the old and the new backing chain.
    if [ -n "$parent" ]; then
      (cd "$QC_DIR" && qemu-img rebase -q -f qcow2 -b "$parent" -F qcow2 "$child") || return 1
    else
      (cd "$QC_DIR" && qemu-img rebase -q -f qcow2 -b "" "$child") || return 1
    fi
    QC_PARENT[$child]=$parent
  done
  rm -f "$QC_DIR/$snap"
  unset "QC_PARENT[$snap]"
}
qcow2_chain_alloc() { bench_alloc_bytes "$QC_DIR"; }
qcow2_chain_teardown() { [ -z "$QC_DIR" ] || rm -rf "$QC_DIR"; QC_PARENT=(); }

# The rewrite between snapshots, offline with qemu-io (no server start per
# snapshot, which would dominate the time to build 256 layers): the same
# number of 64 KiB-aligned extents at random offsets, one pattern byte per
# snapshot so that every layer holds distinct data.
qcow2_rewrite_offline() { # image seed
  local args=() off pat
  pat=$(( $2 % 255 + 1 ))
  while read -r off; do
    args+=(-c "write -q -P $pat $off $EXTENT_B")
  done < <(bench_rewrite_offsets "$CUR_SIZE" "$REWRITE_PCT" "$EXTENT_B" "$2")
  # writeback, as qemu-nbd serves it (qemu-io defaults to writethrough: a
  # flush after every write, ten times slower to build the snapshots)
  qemu-io -t writeback -f qcow2 "${args[@]}" "$1"
}
qcow2_chain_rewrite() { qcow2_rewrite_offline "$QC_DIR/active.qcow2" "$1"; }

# ------------------------------------------------------ qcow2 internal snaps
# Non-chained within one file: each snapshot keeps its own L1 table and
# raises refcounts; the live disk reads through one L1/L2 lookup whatever the
# snapshot count, but the first write to a shared cluster copies 64 KiB.

QI_DIR=
qcow2_internal_label() { echo "qcow2 internal snapshots (qemu-nbd)"; }
qcow2_internal_check() { qcow2_chain_check; }
qcow2_internal_max_n() { echo 100000; }
qcow2_internal_setup() {
  QI_DIR=$1; mkdir -p "$QI_DIR"
  qemu-img create -q -f qcow2 -o cluster_size=65536 "$QI_DIR/disk.qcow2" "$2"
}
qcow2_internal_serve() {
  SYS_EXPORT=
  bench_server_start qemu-nbd --persistent --format=qcow2 --cache=writeback --aio=threads \
    --socket="$1" "$QI_DIR/disk.qcow2"
  SYS_RSS_PID=$SERVER_PID
}
qcow2_internal_unserve() { bench_server_stop; }
qcow2_internal_rewrite() { qcow2_rewrite_offline "$QI_DIR/disk.qcow2" "$1"; }
qcow2_internal_snapshot() { qemu-img snapshot -q -c "$1" "$QI_DIR/disk.qcow2"; }
qcow2_internal_rollback() { qemu-img snapshot -q -a "$1" "$QI_DIR/disk.qcow2"; }
qcow2_internal_delete() { qemu-img snapshot -q -d "$1" "$QI_DIR/disk.qcow2"; }
qcow2_internal_alloc() { bench_alloc_bytes "$QI_DIR"; }
qcow2_internal_teardown() { [ -z "$QI_DIR" ] || rm -rf "$QI_DIR"; }

# ------------------------------------------------------------------ raw file
# The ceiling: the same disk with no snapshot machinery at all.

RAW_DIR=
raw_nbdkit_label() { echo "raw file, no snapshots (nbdkit file)"; }
raw_nbdkit_check() {
  command -v nbdkit >/dev/null && return 0
  echo "nbdkit not installed (apt-get install nbdkit)"; return 1
}
raw_nbdkit_max_n() { echo 0; }
raw_nbdkit_setup() { RAW_DIR=$1; mkdir -p "$RAW_DIR"; truncate -s "$2" "$RAW_DIR/disk.raw"; }
raw_nbdkit_serve() {
  SYS_EXPORT=
  bench_server_start nbdkit --foreground --unix "$1" file file="$RAW_DIR/disk.raw"
  SYS_RSS_PID=$SERVER_PID
}
raw_nbdkit_unserve() { bench_server_stop; }
raw_nbdkit_snapshot() { bench_log "raw-nbdkit has no snapshots"; return 1; }
raw_nbdkit_rollback() { raw_nbdkit_snapshot; }
raw_nbdkit_delete() { raw_nbdkit_snapshot; }
raw_nbdkit_alloc() { bench_alloc_bytes "$RAW_DIR"; }
raw_nbdkit_teardown() { [ -z "$RAW_DIR" ] || rm -rf "$RAW_DIR"; }

# The same raw file through qemu-nbd: separates qemu-nbd's own per-request
# cost from the cost of qcow2 and its snapshots.
raw_qemu_label() { echo "raw file, no snapshots (qemu-nbd)"; }
raw_qemu_check() { qcow2_chain_check; }
raw_qemu_max_n() { echo 0; }
raw_qemu_setup() { raw_nbdkit_setup "$@"; }
raw_qemu_serve() {
  SYS_EXPORT=
  bench_server_start qemu-nbd --persistent --format=raw --cache=writeback --aio=threads \
    --socket="$1" "$RAW_DIR/disk.raw"
  SYS_RSS_PID=$SERVER_PID
}
raw_qemu_unserve() { bench_server_stop; }
raw_qemu_snapshot() { bench_log "raw-qemu has no snapshots"; return 1; }
raw_qemu_rollback() { raw_qemu_snapshot; }
raw_qemu_delete() { raw_qemu_snapshot; }
raw_qemu_alloc() { raw_nbdkit_alloc; }
raw_qemu_teardown() { raw_nbdkit_teardown; }
