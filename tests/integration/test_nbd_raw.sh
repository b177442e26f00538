#!/bin/bash
# vmsnapd's NBD server with raw-file exports, driven by real clients:
# nbdinfo, qemu-img, qemu-io, nbdcopy, fio (verify=crc32c), several clients
# at once, hostile traffic (nbd_hostile.py), the control socket's daemon ops,
# and a clean shutdown on SIGTERM and on daemon.stop.
. "$(dirname "$0")/lib.sh" "$@"
need nbdinfo qemu-img qemu-io nbdcopy fio python3 cmp sha256sum

VMSNAPD=$BUILD/vmsnapd
[ -x "$VMSNAPD" ] || { echo "FAIL: $VMSNAPD not built"; echo "0 passed, 1 failed"; exit 1; }

daemon_env "$T"   # raw exports only: the sockets in $T, no catalog

start_daemon() {
  "$VMSNAPD" --foreground --log-file "$LOG" --log-level debug \
    --socket "$SOCK" --control-socket "$CTL" \
    --raw disk="$T/disk.img" --raw victim="$T/victim.img" --raw-readonly snap="$T/snap.img" "$@" &
  DPID=$!
  on_exit "kill $DPID 2>/dev/null"
  wait_for_socket "$SOCK" 10 && wait_for_socket "$CTL" 10
}

# Disk images: 64 MiB with data in the first 8 MiB and a hole after it.
truncate -s 64M "$T/disk.img"
head -c 8M /dev/urandom | dd of="$T/disk.img" conv=notrunc status=none
head -c 32M /dev/urandom >"$T/victim.img"
head -c 16M /dev/urandom >"$T/snap.img"
sha_victim=$(sha256sum <"$T/victim.img")
sha_snap=$(sha256sum <"$T/snap.img")

t_begin "daemon starts and creates its sockets"
if start_daemon; then t_ok; else t_fail "no socket; log: $(tail -3 "$LOG")"; t_end; fi

t_begin "sockets are mode 0600 without --group"
m1=$(stat -c %a "$SOCK"); m2=$(stat -c %a "$CTL")
[ "$m1" = 600 ] && [ "$m2" = 600 ] && t_ok || t_fail "modes $m1 $m2"

t_begin "a second daemon on the same socket is refused"
if "$VMSNAPD" --foreground --socket "$SOCK" --raw x="$T/disk.img" --log-level error 2>/dev/null; then
  t_fail "second daemon started"
else t_ok; fi

t_begin "nbdinfo --list shows every export"
out=$(nbdinfo --list --json "$(uri '')" 2>&1)
names=$(json_get "$out" '" ".join(sorted(e["export-name"] for e in j["exports"]))' 2>&1)
[ "$names" = "disk snap victim" ] && t_ok || t_fail "$names"

t_begin "nbdinfo: size, flags and block size of a writable export"
out=$(nbdinfo --json "$(uri disk)" 2>&1)
got=$(json_get "$out" '"%d %s %s %s %s %s %d %d %d" % (e["export-size"], e["is_read_only"], e["can_multi_conn"], e["can_flush"], e["can_fua"], e["can_trim"], e["block_size_minimum"], e["block_size_preferred"], e["block_size_maximum"]) if (e := j["exports"][0]) else ""' 2>&1)
[ "$got" = "67108864 False True True True True 1 4096 33554432" ] && t_ok || t_fail "$got"

t_begin "nbdinfo: a read-only export says so"
out=$(nbdinfo --json "$(uri snap)" 2>&1)
got=$(json_get "$out" 'j["exports"][0]["is_read_only"]' 2>&1)
[ "$got" = True ] && t_ok || t_fail "$got"

t_begin "nbdinfo --map: base:allocation shows data then a hole"
map=$(nbdinfo --map "$(uri disk)" 2>&1)
first=$(echo "$map" | awk 'NR==1 { print $1, $2, $4 }')
last=$(echo "$map" | awk 'END { print $1 + $2, $4 }')
[ "$first" = "0 8388608 data" ] && [ "$last" = "67108864 hole,zero" ] && t_ok || t_fail "$map"

check "qemu-io writes and reads back a pattern" \
  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' -c 'write -P 0x5c 63M 1M' -c 'read -P 0x5c 63M 1M' "$(uri disk)"

check "qemu-io write zeroes, discard, flush, FUA write" \
  qemu-io -f raw -c 'write -z 2M 1M' -c 'read -P 0 2M 1M' -c 'discard 10M 1M' -c 'flush' -c 'write -f -P 0x11 12M 64k' -c 'read -P 0x11 12M 64k' "$(uri disk)"

t_begin "qemu-img info reports the virtual size"
out=$(qemu-img info --output=json "$(uri disk)" 2>&1)
[ "$(json_get "$out" 'j["virtual-size"]' 2>&1)" = 67108864 ] && t_ok || t_fail "$out"

head -c 64M /dev/urandom >"$T/src.img"
check "qemu-img convert into the export" qemu-img convert -n -f raw -O raw "$T/src.img" "$(uri disk)"
check "qemu-img compare export and source" qemu-img compare -f raw -F raw "$T/src.img" "$(uri disk)"

check "nbdcopy export -> file" nbdcopy "$(uri disk)" "$T/out.img"
check "nbdcopy copy equals the source" cmp "$T/out.img" "$T/src.img"

truncate -s 64M "$T/sparse.img"
head -c 3M /dev/urandom | dd of="$T/sparse.img" bs=1M seek=20 conv=notrunc status=none
check "nbdcopy file -> export (sparse source)" nbdcopy "$T/sparse.img" "$(uri disk)"
check "nbdcopy result compares equal" qemu-img compare -f raw -F raw "$T/sparse.img" "$(uri disk)"

check "fio randwrite with verify=crc32c through the server" \
  fio --name=verify --ioengine=nbd --verify_state_save=0 --uri="$(uri disk)" --rw=randwrite --bs=4k --size=16M \
      --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --output="$T/fio.txt"

check "fio mixed 2k randrw with verify, 3 seconds" \
  fio --name=mixed --ioengine=nbd --verify_state_save=0 --uri="$(uri disk)" --rw=randrw --rwmixread=67 --bs=2k \
      --offset=32M --size=16M --iodepth=16 --time_based --runtime=3 --verify=crc32c \
      --verify_fatal=1 --output="$T/fio2.txt"

t_begin "four clients at once, each on its own region"
pids=()
for i in 0 1 2 3; do
  pat=$((0x30 + i))
  qemu-io -f raw -c "write -P $pat $((i * 4))M 4M" -c "read -P $pat $((i * 4))M 4M" "$(uri disk)" \
    >"$T/multi$i.out" 2>&1 &
  pids+=($!)
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
for i in 0 1 2 3; do
  qemu-io -f raw -c "read -P $((0x30 + i)) $((i * 4))M 4M" "$(uri disk)" >/dev/null 2>&1 || bad=$((bad + 1))
done
[ "$bad" = 0 ] && t_ok || t_fail "$bad failures: $(cat "$T"/multi*.out | grep -i -m3 'fail\|error')"

t_begin "multi-conn: nbdcopy with 4 connections"
nbdcopy --connections=4 "$T/src.img" "$(uri disk)" >/dev/null 2>&1 &&
  qemu-img compare -q -f raw -F raw "$T/src.img" "$(uri disk)" && t_ok || t_fail "copy or compare failed"

t_begin "hostile NBD traffic (nbd_hostile.py)"
if out=$(timeout 300 python3 "$TOP/tests/integration/nbd_hostile.py" "$SOCK" victim snap 2>&1); then
  t_ok
else
  t_fail "$(echo "$out" | grep FAIL | head -5)"
fi
echo "$out" | sed 's/^/    /' >&2

t_begin "hostile traffic changed nothing on disk"
[ "$(sha256sum <"$T/victim.img")" = "$sha_victim" ] && [ "$(sha256sum <"$T/snap.img")" = "$sha_snap" ] &&
  t_ok || t_fail "a backing file changed"

t_begin "control socket: daemon.status"
out=$(ctl '{"op":"daemon.status"}')
got=$(json_get "$out" '"%s %s" % (j["result"]["pid"] == '"$DPID"', isinstance(j["result"]["exports"], list))' 2>&1)
[ "$got" = "True True" ] && t_ok || t_fail "$out"

t_begin "control socket: catalog ops need --home"
out=$(ctl '{"op":"vm.list"}')
[ "$(json_get "$out" 'j["error"]["code"]' 2>&1)" = NOTSUP ] && t_ok || t_fail "$out"

t_begin "control socket: a malformed line gets an error response"
out=$(ctl 'this is not json')
[ -n "$(json_get "$out" 'j["error"]["code"]' 2>&1)" ] && t_ok || t_fail "$out"

t_begin "SIGTERM while a client writes: clean exit, sockets removed"
qemu-io -f raw -c 'write -P 0x77 0 8M' -c 'write -P 0x78 8M 8M' "$(uri disk)" >/dev/null 2>&1 &
QP=$!
sleep 0.2
kill -TERM "$DPID"
wait "$DPID"; rc=$?
wait "$QP" 2>/dev/null
[ "$rc" = 0 ] && [ ! -e "$SOCK" ] && [ ! -e "$CTL" ] && t_ok || t_fail "exit $rc, sockets: $(ls "$T"/*.sock 2>&1)"

t_begin "restart, then daemon.stop stops it cleanly"
if start_daemon --group root; then
  m=$(stat -c '%a %G' "$SOCK")
  out=$(ctl '{"op":"daemon.stop"}')
  wait "$DPID"; rc=$?
  [ "$m" = "660 root" ] && [ "$rc" = 0 ] && [ ! -e "$SOCK" ] &&
    [ "$(json_get "$out" 'j["result"]["stopping"]' 2>&1)" = True ] && t_ok || t_fail "mode $m exit $rc: $out"
else
  t_fail "restart failed: $(tail -3 "$LOG")"
fi

t_begin "TCP only when asked, loopback by default"
port=$((20000 + RANDOM % 20000))
"$VMSNAPD" --foreground --log-file "$LOG" --listen "$port" --raw disk="$T/disk.img" &
TP=$!
on_exit "kill $TP 2>/dev/null"
ok=0
for _ in $(seq 50); do
  if nbdinfo --size "nbd://127.0.0.1:$port/disk" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
addr=$(ss -ltnH "sport = :$port" 2>/dev/null | awk '{ print $4 }' | head -1)
kill "$TP"; wait "$TP"
[ "$ok" = 1 ] && case "$addr" in 127.0.0.1:*|"") true ;; *) false ;; esac && t_ok || t_fail "ok=$ok addr=$addr"

grep -q "ERROR\|error:" "$LOG" && echo "note: errors in the daemon log:" >&2 && grep "error:" "$LOG" | head -5 >&2
t_end
