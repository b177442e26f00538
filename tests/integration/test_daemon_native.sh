#!/bin/bash
# vmsnapd with a catalog: a native SR and a VM made through the control
# socket, its disks served over NBD, snapshots taken live during a fio run
# and checked block by block, snapshot exports, rollback refused while a
# client has the disk open for writing (BUSY) unless forced, and data kept
# across a SIGTERM and a restart.
. "$(dirname "$0")/lib.sh" "$@"
need nbdinfo qemu-io fio python3

VMSNAPD=$BUILD/vmsnapd
[ -x "$VMSNAPD" ] || { echo "FAIL: $VMSNAPD not built"; echo "0 passed, 1 failed"; exit 1; }

daemon_env
CHECK=$TOP/tests/integration/nbd_snapcheck.py


start_daemon() {
  "$VMSNAPD" --foreground --home "$HOME_DIR" --log-file "$LOG" --log-level debug &
  DPID=$!
  on_exit "kill $DPID 2>/dev/null"
  wait_for_socket "$SOCK" 10 && wait_for_socket "$CTL" 10
}

t_begin "daemon starts with an empty catalog"
if start_daemon; then t_ok; else t_fail "$(tail -3 "$LOG")"; t_end; fi

t_begin "native SR and a VM with two disks, through the control socket"
o1=$(ctl "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\",\"location\":\"$T/sr\",\"size\":\"1G\"}}")
o2=$(ctl '{"op":"vm.create","args":{"name":"vm1","sr":"sr1","disks":[{"name":"root","size":"64M"},{"name":"data","size":"32M"}]}}')
ok_result "$o1" && ok_result "$o2" && t_ok || t_fail "$o1 $o2"

t_begin "nbdinfo --list shows both disks"
names=$(nbdinfo --list --json "$(uri '')" 2>&1 | python3 -c 'import json,sys; print(" ".join(sorted(e["export-name"] for e in json.load(sys.stdin)["exports"])))' 2>&1)
[ "$names" = "vm1/data vm1/root" ] && t_ok || t_fail "$names"

check "qemu-io writes patterns on both disks" \
  sh -c "qemu-io -f raw -c 'write -P 0xa1 0 4M' '$(uri vm1/root)' && qemu-io -f raw -c 'write -P 0xd1 0 4M' '$(uri vm1/data)'"

t_begin "snapshot s1 of the idle VM"
out=$(ctl '{"op":"snapshot.create","args":{"vm":"vm1","name":"s1"}}')
ok_result "$out" && t_ok || t_fail "$out"

t_begin "snapshot export is read-only and holds the pattern"
ro=$(nbdinfo --json "$(uri vm1/root@s1)" 2>&1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["exports"][0]["is_read_only"])' 2>&1)
[ "$ro" = True ] && qemu-io -r -f raw -c 'read -P 0xa1 0 4M' "$(uri vm1/root@s1)" >/dev/null 2>&1 && t_ok || t_fail "ro=$ro"

t_begin "writes to the live disk do not reach the snapshot"
qemu-io -f raw -c 'write -P 0xa2 0 1M' "$(uri vm1/root)" >/dev/null 2>&1 &&
  qemu-io -r -f raw -c 'read -P 0xa1 0 4M' "$(uri vm1/root@s1)" >/dev/null 2>&1 &&
  qemu-io -r -f raw -c 'read -P 0xa2 0 1M' -c 'read -P 0xa1 1M 3M' "$(uri vm1/root)" >/dev/null 2>&1 && t_ok || t_fail

# Live snapshot: fio (verify=crc32c) loads the root disk at 8..40 MiB while
# nbd_snapcheck.py writes numbered blocks at 48 MiB one after the other.
t_begin "live snapshot during a fio run is atomic at an I/O boundary"
fio --name=live --ioengine=nbd --verify_state_save=0 --uri="$(uri vm1/root)" --rw=randwrite --bs=4k --offset=8M --size=32M \
  --iodepth=16 --time_based --runtime=8 --verify=crc32c --do_verify=1 --verify_fatal=1 \
  --output="$T/fio-live.txt" >/dev/null 2>&1 &
FIO=$!
# The writer goes on until told to stop, whatever the snapshot costs on a
# loaded machine: 16 MiB of blocks at most.
python3 "$CHECK" write "$SOCK" vm1/root $((48 << 20)) 4096 "$T/writes.log" 2 "$T/stop" &
WR=$!
# Snapshot once the writer is well under way (python starts slowly on a
# loaded machine), so that the check sees writes on both sides of it.
for _ in $(seq 300); do [ "$(cat "$T/writes.log" 2>/dev/null | wc -l)" -ge 400 ] && break; sleep 0.1; done
t0=$(date +%s.%N)
snap=$(ctl '{"op":"snapshot.create","args":{"vm":"vm1","name":"live"}}')
t1=$(date +%s.%N)
n1=$(cat "$T/writes.log" | wc -l)
for _ in $(seq 300); do [ "$(cat "$T/writes.log" | wc -l)" -ge $((n1 + 200)) ] && break; sleep 0.1; done
touch "$T/stop"
wait "$WR"; wr=$?
wait "$FIO"; fr=$?
if ok_result "$snap" && [ "$wr" = 0 ] && [ "$fr" = 0 ]; then
  full=$(json_get "$snap" 'j["result"]["name"]')
  if out=$(python3 "$CHECK" verify "$SOCK" "vm1/root@$full" $((48 << 20)) 4096 "$T/writes.log" "$t0" "$t1" 2>&1); then
    t_ok; echo "    $out" >&2
  else t_fail "$out"; fi
else
  t_fail "snapshot: $snap; writer $wr; fio $fr: $(grep -i -m2 'err\|verify' "$T/fio-live.txt")"
fi

# Requests in flight that overlap (the same 16 blocks, 32 at a time, 2 KiB
# and 4 KiB, reads and writes) have no order, but none may fail: a read
# racing an in-place rewrite must not see a false checksum error (native
# pools keep data checksums by default).
t_begin "overlapping reads and writes in flight never fail"
fio --name=overlap --ioengine=nbd --uri="$(uri vm1/root)" --rw=randrw --rwmixread=50 \
  --bssplit=2k/50:4k/50 --offset=60M --size=64k --iodepth=32 --time_based --runtime=4 \
  --output-format=json --output="$T/fio-overlap.json" >/dev/null 2>&1
fr=$?
if [ "$fr" = 0 ] && out=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
r, w = j["read"]["total_ios"], j["write"]["total_ios"]
print("%d reads, %d writes, error %d" % (r, w, j["error"]))
sys.exit(0 if j["error"] == 0 and r > 1000 and w > 1000 else 1)' "$T/fio-overlap.json"); then
  t_ok; echo "    $out" >&2
else
  t_fail "fio rc $fr: $(tail -c 600 "$T/fio-overlap.json" 2>/dev/null)"
fi

t_begin "the live snapshot also covers the untouched regions"
python3 "$CHECK" expect "$SOCK" "vm1/root@live" $((1 << 20)) $((3 << 20)) 0xa1 >/dev/null 2>&1 &&
  python3 "$CHECK" expect "$SOCK" "vm1/data@live" 0 $((4 << 20)) 0xd1 >/dev/null 2>&1 && t_ok || t_fail

t_begin "daemon.status lists the open exports and clients"
python3 "$CHECK" hold "$SOCK" vm1/root 300 >"$T/hold.out" 2>&1 &
HOLD=$!
on_exit "kill $HOLD 2>/dev/null"
for _ in $(seq 50); do grep -q connected "$T/hold.out" 2>/dev/null && break; sleep 0.1; done
st=$(ctl '{"op":"daemon.status"}')
got=$(json_get "$st" '"%d %s" % (j["result"]["clients"], [e["writers"] for e in j["result"]["exports"] if e["name"] == "vm1/root"])' 2>&1)
[ "$got" = "1 [1]" ] && t_ok || t_fail "$got: $st"

# A snapshot holds the writes of its own VM's disks only: with vm1/root
# and vm2/disk both open for writing, a snapshot of vm2 holds one export.
t_begin "a live snapshot holds only its VM's disks"
o=$(ctl '{"op":"vm.create","args":{"name":"vm2","sr":"sr1","disks":[{"name":"disk","size":"16M"}]}}')
vm2=$(json_get "$o" 'j["result"]["uuid"]' 2>/dev/null)
python3 "$CHECK" hold "$SOCK" vm2/disk 30 >"$T/hold-vm2.out" 2>&1 &
HOLD2=$!
on_exit "kill $HOLD2 2>/dev/null"
for _ in $(seq 50); do grep -q connected "$T/hold-vm2.out" 2>/dev/null && break; sleep 0.1; done
out=$(ctl '{"op":"snapshot.create","args":{"vm":"vm2","name":"q1"}}')
if ok_result "$out" && [ -n "$vm2" ] && grep -q "quiesce $vm2: held writes of 1 open export(s)$" "$LOG"; then
  t_ok
else
  t_fail "$out; vm2=$vm2; log: $(grep quiesce "$LOG" | tail -2)"
fi
kill "$HOLD2" 2>/dev/null; wait "$HOLD2" 2>/dev/null
ctl '{"op":"vm.delete","args":{"vm":"vm2","recursive":true}}' >/dev/null

t_begin "rollback while a client has the disk open for writing: BUSY"
out=$(ctl '{"op":"vm.rollback","args":{"vm":"vm1","snapshot":"s1"}}')
[ "$(json_get "$out" 'j["error"]["code"]' 2>&1)" = BUSY ] && t_ok || t_fail "$out"

t_begin "the refused rollback changed nothing"
qemu-io -r -f raw -c 'read -P 0xa2 0 1M' "$(uri vm1/root)" >/dev/null 2>&1 && t_ok || t_fail

t_begin "forced rollback succeeds; the connected client then reads the snapshot's data"
out=$(ctl '{"op":"vm.rollback","args":{"vm":"vm1","snapshot":"s1","force":true}}')
if ok_result "$out"; then
  python3 "$CHECK" expect "$SOCK" vm1/root 0 $((4 << 20)) 0xa1 >"$T/after.out" 2>&1 && t_ok ||
    t_fail "after rollback: $(cat "$T/after.out")"
else
  t_fail "$out"
fi
kill "$HOLD" 2>/dev/null; wait "$HOLD" 2>/dev/null

t_begin "rollback with no writer connected needs no force"
out=$(ctl '{"op":"vm.rollback","args":{"vm":"vm1","snapshot":"live"}}')
ok_result "$out" && python3 "$CHECK" expect "$SOCK" vm1/data 0 $((4 << 20)) 0xd1 >/dev/null 2>&1 &&
  t_ok || t_fail "$out"

check "write after the rollbacks" qemu-io -f raw -c 'write -P 0xee 60M 1M' "$(uri vm1/root)"

t_begin "SIGTERM: clean exit"
kill -TERM "$DPID"; wait "$DPID"; rc=$?
[ "$rc" = 0 ] && [ ! -e "$SOCK" ] && t_ok || t_fail "exit $rc"

t_begin "after a restart the data and the snapshots are there"
: >"$LOG"
if start_daemon; then
  qemu-io -r -f raw -c 'read -P 0xee 60M 1M' -c 'read -P 0xa1 1M 3M' "$(uri vm1/root)" >/dev/null 2>&1 &&
    qemu-io -r -f raw -c 'read -P 0xa1 0 4M' "$(uri vm1/root@s1)" >/dev/null 2>&1 && t_ok ||
    t_fail "content differs after restart"
else
  t_fail "restart: $(tail -3 "$LOG")"
fi
check "the daemon opened the SR at start, before any client" grep -q "info: 1 SR(s) opened" "$LOG"

t_begin "deleting a disk's VM while a client has it open: BUSY, then forced"
python3 "$CHECK" hold "$SOCK" vm1/data 30 >"$T/hold2.out" 2>&1 &
HOLD=$!
for _ in $(seq 50); do grep -q connected "$T/hold2.out" 2>/dev/null && break; sleep 0.1; done
o1=$(ctl '{"op":"vm.delete","args":{"vm":"vm1","recursive":true}}')
o2=$(ctl '{"op":"vm.delete","args":{"vm":"vm1","recursive":true,"force":true}}')
kill "$HOLD" 2>/dev/null; wait "$HOLD" 2>/dev/null
names=$(nbdinfo --list --json "$(uri '')" 2>&1 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["exports"]))' 2>&1)
[ "$(json_get "$o1" 'j["error"]["code"]' 2>&1)" = BUSY ] && ok_result "$o2" && [ "$names" = 0 ] && t_ok ||
  t_fail "$o1 / $o2 / exports $names"

kill -TERM "$DPID"; wait "$DPID"
t_end
