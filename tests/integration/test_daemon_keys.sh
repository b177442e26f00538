#!/bin/bash
# A native SR with the versioned-key index (format 3, `sr create -O
# index=keys`) driven through the CLI and vmsnapd, its disks over NBD: `sr
# show` and check report format 3 / keys; patterns, write-zeroes and trims
# written with qemu-io between snapshots, every snapshot compared over NBD
# with a model file of what the disk held when it was taken; a clone written
# and snapshotted; rollback to a non-latest snapshot; snapshot deletes free
# what they said they would once the reaper is done; snapshots during a fio
# randrw run (verify=crc32c); a restart; check (with data) clean after each
# stage; after everything is deleted the space is back.
. "$(dirname "$0")/lib.sh" "$@"
need qemu-io nbdinfo nbdcopy fio jq
need_built

daemon_env
M=$((1 << 20))
DISK=$((64 * M))
V() { "$VMSNAP" --home "$HOME_DIR" "$@"; }

start_daemon() {
  "$VMSNAPD" --foreground --home "$HOME_DIR" --log-file "$LOG" --log-level info &
  DPID=$!
  on_exit "kill $DPID 2>/dev/null"
  wait_for_socket "$SOCK" 10 && wait_for_socket "$CTL" 10
}

# put DISK MODEL OFF LEN WHAT: qemu-io writes WHAT over [OFF, OFF+LEN) of
# export DISK and the model file gets the same.  WHAT is a byte (0x11), or
# zero (NBD WRITE_ZEROES) or trim (NBD TRIM): both read back as zeros.
put() {
  local disk=$1 model=$2 off=$3 len=$4 what=$5 cmd
  case $what in
    zero) cmd="write -z $off $len" ;;
    trim) cmd="discard $off $len" ;;
    *) cmd="write -P $what $off $len" ;;
  esac
  qemu-io -f raw -c "$cmd" "$(uri "$disk")" >/dev/null 2>&1 || return 1
  case $what in
    zero | trim) head -c "$len" /dev/zero ;;
    *) head -c "$len" /dev/zero | tr '\0' "\\$(printf %03o "$what")" ;;
  esac | dd of="$model" bs=64K seek="$off" oflag=seek_bytes conv=notrunc status=none
}

# puts DESCRIPTION DISK MODEL [OFF LEN WHAT]...: several puts, one step.
puts() {
  local what=$1 disk=$2 model=$3 rc=0; shift 3
  t_begin "$what"
  while (($# >= 3)); do
    put "$disk" "$model" "$1" "$2" "$3" || { rc=1; break; }
    shift 3
  done
  if [ $rc = 0 ]; then t_ok; else t_fail "qemu-io on $disk at $1 failed"; fi
}

# same DESCRIPTION EXPORT MODEL: the export reads back exactly as the model.
same() {
  t_begin "$1"
  local out
  if out=$(nbdcopy "$(uri "$2")" - 2>"$T/nbdcopy.err" | cmp - "$3" 2>&1) && [ ! -s "$T/nbdcopy.err" ]; then
    t_ok
  else
    t_fail "$out $(head -3 "$T/nbdcopy.err")"
  fi
}

# snap VM NAME MODEL: a snapshot through the CLI; its full name on stdout,
# the model copied to MODEL.NAME.
snap() {
  local full
  full=$(V snapshot create "$1" "$2" --json | jq -r .result.name) && [ -n "$full" ] && [ "$full" != null ] &&
    cp --sparse=always "$3" "$3.$2" && printf '%s' "$full"
}

used() { V sr show sr1 -H -p -o used | cut -f2; }

# check_clean DESCRIPTION: vmsnap check --data passes through the daemon.
check_clean() {
  t_begin "$1"
  local out
  out=$(V check --data --json 2>&1)
  if [ "$(jq -r .result.ok <<<"$out" 2>/dev/null)" = true ]; then t_ok; else t_fail "$(head -c 1500 <<<"$out")"; fi
}

# quiet [FLOOR]: wait (at most 20 s) until no volume is queued for reclaim,
# used space is at most FLOOR (default: any) and holds still between two
# looks (the reaper and the garbage-key collector run in the background);
# prints the used bytes and the number of volumes queued.
quiet() {
  local u prev=-1 q n=0
  while ((n++ < 100)); do
    u=$(used); q=$(V check --json | jq '[.result.srs[].report.deleting] | add')
    [ "$q" = 0 ] && ((u <= ${1:-u})) && [ "$u" = "$prev" ] && break
    prev=$u; sleep 0.2
  done
  printf '%s %s' "$u" "$q"
}

# delete_frees DESCRIPTION SELECTOR: the dry run names the bytes it would
# free (> 0); after the delete, once the pool is quiet, used space is down
# by that much: 64 KiB less at worst, more only by the index nodes of the
# keys that went.
delete_frees() {
  t_begin "$1"
  local est before after q
  est=$(V snapshot delete "$2" -n --json | jq -r .result.bytes_freed)
  read -r before q < <(quiet)
  if ! V snapshot delete "$2" >"$T/del.out" 2>&1; then t_fail "$(cat "$T/del.out")"; return; fi
  read -r after q < <(quiet $((before - est + 65536)))
  local freed=$((before - after))
  if ((est > 0 && freed >= est - 65536 && freed <= est + est / 16 + 262144)) && [ "$q" = 0 ]; then
    t_ok; echo "    $2: estimated $est, freed $freed bytes" >&2
  else
    t_fail "estimated $est, used $before -> $after, $q volume(s) queued for reclaim"
  fi
}

SECONDS=0
t_begin "daemon starts"
if start_daemon; then t_ok; else t_fail "$(tail -3 "$LOG")"; t_end; fi

# ---- the option and what reports it ----------------------------------------
t_begin "sr create -O index=btree: usage error naming radix and keys"
out=$(V sr create bad "$T/bad" --size 64M -O index=btree 2>&1); rc=$?
[ $rc = 2 ] && grep -q 'index=btree: radix .* or keys' <<<"$out" && t_ok || t_fail "exit $rc: $out"
check "sr create -O index=keys" V sr create sr1 "$T/sr" --size 256M -O index=keys
BASE=$(used)
t_begin "sr show: format 3, index keys (human and --json)"
h=$(V sr show sr1 -H -o format,index)
j=$(V sr show sr1 --json | jq -c '.result.properties | [.format_version, .index]')
[ "$h" = "$(printf 'format\t3\nindex\tkeys')" ] && [ "$j" = '[3,"keys"]' ] && t_ok || t_fail "$h / $j"
t_begin "check report of the SR: format_version 3, index keys"
j=$(V check --sr sr1 --json | jq -c '.result.srs[0].report | [.format_version, .index]')
[ "$j" = '[3,"keys"]' ] && t_ok || t_fail "$j"

check "vm1 with a 64 MiB disk" V vm create vm1 --sr sr1 --disk root:64M
L=$T/vm1
truncate -s "$DISK" "$L"

# ---- history: patterns, zeroes and trims between snapshots -----------------------
puts "vm1: patterns at 0, 16M, 32M and the last 64 KiB" vm1/root "$L" \
  0 $((8 * M)) 0x11  $((16 * M)) $((4 * M)) 0x12  $((32 * M)) $((16 * M)) 0x14  $((DISK - 65536)) 65536 0x13
S1=$(snap vm1 s1 "$L")
puts "vm1: overwrites, a new region, one block, a trim and zeroes over s1's blocks" vm1/root "$L" \
  0 $((2 * M)) 0x21  $((8 * M)) $((4 * M)) 0x22  $((17 * M)) 4096 0x23  $((19 * M)) $((M)) trim \
  $((5 * M)) $((M / 2)) zero
S2=$(snap vm1 s2 "$L")
puts "vm1: a write across three earlier ones, the last block, a trim over s2's blocks" vm1/root "$L" \
  $((M)) $((8 * M)) 0x31  $((DISK - 4096)) 4096 0x32  $((9 * M)) 512K trim
S3=$(snap vm1 s3 "$L")
puts "vm1: writes after the last snapshot" vm1/root "$L" $((4 * M)) $((M)) 0x41  $((40 * M)) 2048 0x42
t_begin "three snapshots taken through the CLI"
[ -n "$S1" ] && [ -n "$S2" ] && [ -n "$S3" ] && t_ok || t_fail "'$S1' '$S2' '$S3'"

same "vm1@s1 holds what the disk held at s1" "vm1/root@$S1" "$L.s1"
same "vm1@s2 holds what the disk held at s2" "vm1/root@$S2" "$L.s2"
same "vm1@s3 holds what the disk held at s3" "vm1/root@$S3" "$L.s3"
same "vm1 live holds every write" vm1/root "$L"
t_begin "a snapshot export is read-only"
ro=$(nbdinfo --json "$(uri "vm1/root@$S1")" 2>&1 | jq -r '.exports[0].is_read_only' 2>&1)
[ "$ro" = true ] && ! qemu-io -f raw -c 'write -P 0xff 0 4k' "$(uri "vm1/root@$S1")" >/dev/null 2>&1 &&
  t_ok || t_fail "is_read_only $ro"

# ---- a clone, written and snapshotted ----------------------------------------
C=$T/vm2
check "vm clone vm1@s2 vm2" V vm clone "vm1@$S2" vm2
cp --sparse=always "$L.s2" "$C"
same "the clone reads as s2" vm2/root "$C"
puts "vm2: writes over s2's blocks, a trim, a new region" vm2/root "$C" \
  0 $((M)) 0x51  $((16 * M)) $((M)) trim  $((48 * M)) $((2 * M)) 0x52
C1=$(snap vm2 c1 "$C")
puts "vm2: writes after its snapshot" vm2/root "$C" 4096 4096 0x53  $((49 * M)) $((M)) 0x54
same "vm2@c1 holds the clone at c1" "vm2/root@$C1" "$C.c1"
same "vm2 live holds every write" vm2/root "$C"
same "vm1@s2 unchanged by the clone" "vm1/root@$S2" "$L.s2"
same "vm1 live unchanged by the clone" vm1/root "$L"
check_clean "check --data clean after the clone"

# ---- rollback to a non-latest snapshot -------------------------------------------
t_begin "vm rollback vm1 to s1, keeping s2 and s3"
out=$(V vm rollback vm1 "$S1" 2>&1)
n=$(V snapshot list vm1 -H -o name | wc -l)
if grep -q "^rolled back VM vm1 to snapshot $S1" <<<"$out" && [ "$n" = 3 ]; then t_ok; else t_fail "$out; $n snapshots"; fi
cp --sparse=always "$L.s1" "$L"
same "vm1 live reads as s1" vm1/root "$L"
same "vm1@s3 kept" "vm1/root@$S3" "$L.s3"
puts "vm1: writes after the rollback" vm1/root "$L" $((3 * M)) $((2 * M)) 0x61  $((20 * M)) 4096 0x62 \
  $((32 * M)) $((16 * M)) 0x63
same "vm1 live after the rollback and the writes" vm1/root "$L"
same "vm1@s1 unchanged by them" "vm1/root@$S1" "$L.s1"
same "vm2 unchanged by them" vm2/root "$C"
check_clean "check --data clean after the rollback"

# ---- deletes give space back ------------------------------------------------------
delete_frees "delete vm1@s3 (its blocks only it sees since the rollback)" "vm1@$S3"
t_begin "delete vm1@s2: refused while vm2 depends on it (exit 4)"
out=$(V snapshot delete "vm1@$S2" 2>&1); rc=$?
[ $rc = 4 ] && grep -q vm2 <<<"$out" && t_ok || t_fail "exit $rc: $out"
same "vm1@s1 after the delete" "vm1/root@$S1" "$L.s1"
same "vm1@s2 after the delete" "vm1/root@$S2" "$L.s2"
same "vm2@c1 after the delete" "vm2/root@$C1" "$C.c1"
same "vm1 live after the delete" vm1/root "$L"

# ---- fio randrw over shared blocks, with snapshots during the run ---------------------
P=$(snap vm1 pre "$L")
t_begin "fio randrw on vm1 (32-48M, verify=crc32c) with two snapshots during the run"
fio --name=keys --ioengine=nbd --uri="$(uri vm1/root)" --rw=randrw --rwmixread=50 \
  --bssplit=2k/20:4k/50:64k/30 --offset=32M --size=16M --iodepth=16 --time_based --runtime=3 \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
  --output-format=json --output="$T/fio.json" >/dev/null 2>&1 &
FIO=$!
sleep 1
F1=$(V snapshot create vm1 during1 --json | jq -r .result.name)
sleep 1
F2=$(V snapshot create vm1 during2 --json | jq -r .result.name)
wait "$FIO"; fr=$?
if [ "$fr" = 0 ] && out=$(jq -r '.jobs[0] | "\(.read.total_ios) reads, \(.write.total_ios) writes, error \(.error)"' "$T/fio.json") &&
   [ "$(jq '.jobs[0].error' "$T/fio.json")" = 0 ] && [ "$F1" != null ] && [ "$F2" != null ]; then
  t_ok; echo "    $out" >&2
else
  t_fail "fio rc $fr, snapshots '$F1' '$F2': $(tail -c 600 "$T/fio.json" 2>/dev/null)"
fi
same "vm1@pre untouched by fio" "vm1/root@$P" "$L.pre"
t_begin "vm1 live outside fio's region unchanged"
nbdcopy "$(uri vm1/root)" - >"$T/live.img" 2>/dev/null
if cmp -n $((32 * M)) "$T/live.img" "$L" >/dev/null && cmp -i $((48 * M)) "$T/live.img" "$L" >/dev/null; then
  t_ok
else
  t_fail "$(cmp "$T/live.img" "$L" 2>&1)"
fi
check_clean "check --data clean after fio"
delete_frees "delete the snapshot taken first during fio" "vm1@$F1"
delete_frees "delete vm1@pre" "vm1@$P"

# ---- restart --------------------------------------------------------------------
t_begin "SIGTERM, restart: format 3 / keys, s1 and the clone as they were"
kill -TERM "$DPID"; wait "$DPID"; rc=$?
if [ $rc = 0 ] && start_daemon; then
  h=$(V sr show sr1 -H -o format,index)
  nbdcopy "$(uri "vm1/root@$S1")" - 2>/dev/null | cmp -s - "$L.s1" && a=ok || a=differs
  nbdcopy "$(uri vm2/root)" - 2>/dev/null | cmp -s - "$C" && b=ok || b=differs
  [ "$h" = "$(printf 'format\t3\nindex\tkeys')" ] && [ "$a" = ok ] && [ "$b" = ok ] && t_ok || t_fail "$h; s1 $a, vm2 $b"
else
  t_fail "exit $rc: $(tail -3 "$LOG")"
fi

# ---- everything deleted: the space is back ---------------------------------------------
check "vm delete vm2 -r (the clone and its snapshot)" V vm delete vm2 -r
delete_frees "delete vm1@s2 once its clone is gone" "vm1@$S2"
check "vm delete vm1 -r" V vm delete vm1 -r
t_begin "every volume reclaimed: used space back to within 256 KiB of the new SR's"
read -r u q < <(quiet $((BASE + 262144)))
[ "$q" = 0 ] && ((u <= BASE + 262144)) && t_ok || t_fail "used $u (new SR: $BASE), $q queued"
check_clean "check --data clean at the end"
t_begin "sr show still says format 3, keys"
h=$(V sr show sr1 -H -o format,index)
[ "$h" = "$(printf 'format\t3\nindex\tkeys')" ] && t_ok || t_fail "$h"

t_begin "SIGTERM: clean exit"
kill -TERM "$DPID"; wait "$DPID"; rc=$?
[ $rc = 0 ] && t_ok || t_fail "exit $rc: $(tail -3 "$LOG")"
echo "    ${SECONDS} s" >&2
t_end
