#!/bin/bash
# vmsnapd --direct-io: a native SR's pool file is opened O_DIRECT (checked in
# /proc/PID/fdinfo), real clients read and write through it with requests
# that are not aligned to the pool's 4 KiB blocks (fio 2 KiB random
# read/write with verify=crc32c, qemu-io at odd sectors), a live snapshot
# keeps its content, and the data is the same after a restart without
# --direct-io (the page cache and the device agree).
. "$(dirname "$0")/lib.sh" "$@"
need nbdinfo nbdcopy qemu-io qemu-img fio python3
need_built

daemon_env

start_daemon() { # extra flags
  "$VMSNAPD" --foreground --home "$HOME_DIR" --log-file "$LOG" --log-level info "$@" &
  DPID=$!
  on_exit "kill $DPID 2>/dev/null"
  wait_for_socket "$SOCK" 10 && wait_for_socket "$CTL" 10
}
stop_daemon() { kill -TERM "$DPID" && wait "$DPID"; }

# o_direct PID FILE: PID holds FILE open with O_DIRECT (fdinfo flags, octal)
o_direct() {
  local fd
  for fd in /proc/"$1"/fd/*; do
    [ "$(readlink "$fd")" = "$2" ] || continue
    python3 -c 'import os,sys; f=int(open(sys.argv[1]).read().split("flags:")[1].split()[0], 8); sys.exit(0 if f & os.O_DIRECT else 1)' \
      "/proc/$1/fdinfo/${fd##*/}" && return 0
  done
  return 1
}

t_begin "vmsnapd --direct-io starts and says so"
if start_daemon --direct-io && grep -q "direct I/O on native SRs" "$LOG"; then t_ok; else t_fail "$(tail -3 "$LOG")"; t_end; fi

t_begin "a native SR and a VM through the control socket"
o1=$(ctl "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\",\"location\":\"$T/sr\",\"size\":\"1G\"}}")
o2=$(ctl '{"op":"vm.create","args":{"name":"vm1","sr":"sr1","disks":[{"name":"root","size":"256M"}]}}')
ok_result "$o1" && ok_result "$o2" && t_ok || t_fail "$o1 $o2"

t_begin "the served disk's pool file is open O_DIRECT"
nbdinfo --size "$(uri vm1/root)" >/dev/null 2>&1
o_direct "$DPID" "$T/sr/pool.vms" && t_ok || t_fail "$(ls -l /proc/$DPID/fd 2>&1 | grep pool)"

check "qemu-io: writes and reads at sectors that are not 4 KiB aligned" \
  qemu-io -f raw -c 'write -P 0x5a 512 3584' -c 'write -P 0x6b 5120 1024' -c 'write -P 0x7c 1048064 8704' \
    -c 'read -P 0x5a 512 3584' -c 'read -P 0x6b 5120 1024' -c 'read -P 0x7c 1048064 8704' \
    -c 'read -P 0 0 512' -c 'read -P 0 4096 1024' "$(uri vm1/root)"

check "fio: 2 KiB random read/write, iodepth 16, verify=crc32c" \
  fio --name=d --ioengine=nbd --uri="$(uri vm1/root)" --rw=randrw --rwmixread=50 --bs=2k --iodepth=16 \
    --offset=8M --size=64M --io_size=32M --verify=crc32c --verify_fatal=1 --verify_state_save=0 --randrepeat=0

t_begin "a live snapshot keeps its content while the disk changes"
nbdcopy "$(uri vm1/root)" "$T/before.img" &&
  out=$(ctl '{"op":"snapshot.create","args":{"vm":"vm1","name":"s1"}}') && ok_result "$out" &&
  qemu-io -f raw -c 'write -P 0x11 0 16M' -c 'write -P 0x22 100M 3584' "$(uri vm1/root)" >/dev/null &&
  qemu-img compare -q -f raw -F raw "$T/before.img" "$(uri vm1/root@s1)" &&
  ! qemu-img compare -q -f raw -F raw "$T/before.img" "$(uri vm1/root)" && t_ok || t_fail "${out:-}"

t_begin "restart without --direct-io: the same bytes through the page cache"
nbdcopy "$(uri vm1/root)" "$T/live.img" && stop_daemon && start_daemon &&
  ! o_direct "$DPID" "$T/sr/pool.vms" &&
  qemu-img compare -q -f raw -F raw "$T/live.img" "$(uri vm1/root)" &&
  qemu-img compare -q -f raw -F raw "$T/before.img" "$(uri vm1/root@s1)" && t_ok || t_fail "$(tail -3 "$LOG")"

t_begin "vmsnap check: the pool is clean"
stop_daemon
out=$("$VMSNAP" --home "$HOME_DIR" check 2>&1) && t_ok || t_fail "$out"

t_end
