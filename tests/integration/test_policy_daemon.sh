#!/bin/bash
# Policies and monitoring end to end with vmsnapd: an hourly policy run by
# the daemon's scheduler on an accelerated clock (an hour of schedule per
# real second) takes and prunes snapshots, a held snapshot survives every
# prune, a restart after three days away takes exactly one catch-up
# snapshot; the Prometheus endpoint and `stats` count exactly a known
# qemu-io workload; a qcow2 backing chain of depth 3 built with qemu-img is
# imported (content checked with qemu-img compare, depth in vm.report) and
# exported to qcow2 and raw (qemu-img compare again).
. "$(dirname "$0")/lib.sh" "$@"
need qemu-img qemu-io curl python3

VMSNAPD=$BUILD/vmsnapd
[ -x "$VMSNAPD" ] || { echo "FAIL: $VMSNAPD not built"; echo "0 passed, 1 failed"; exit 1; }

daemon_env
T0=1795428000   # 2026-11-23T10:00:00Z
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

start_daemon() {
  "$VMSNAPD" --foreground --home "$HOME_DIR" --log-file "$LOG" "$@" &
  DPID=$!
  on_exit "kill $DPID 2>/dev/null"
  wait_for_socket "$SOCK" 10 && wait_for_socket "$CTL" 10
}
stop_daemon() { kill "$DPID" && wait "$DPID"; }
# auto snapshots of vm1 as "time hold" lines
snaps() {
  ctl '{"op":"snapshot.list","args":{"vm":"vm1"}}' |
    python3 -c 'import json,sys; [print(s["time"], s["user_name"], s["hold"]) for s in json.load(sys.stdin)["result"]["snapshots"]]'
}

t_begin "daemon starts with an accelerated policy clock and a metrics endpoint"
if start_daemon --clock-scale 3600 --clock-start $T0 --metrics 127.0.0.1:$PORT; then t_ok; else t_fail "$(tail -3 "$LOG")"; t_end; fi

t_begin "SR, VM and an hourly policy keeping the last 3"
o1=$(ctl "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\",\"location\":\"$T/sr\",\"size\":\"256M\"}}")
o2=$(ctl '{"op":"vm.create","args":{"name":"vm1","sr":"sr1","disks":[{"name":"d0","size":"16M"}]}}')
o3=$(vmsnap --home "$HOME_DIR" policy set vm1 --schedule hourly --keep-last 3 2>&1)
ok_result "$o1" && ok_result "$o2" && [[ $o3 == *hourly* ]] && t_ok || t_fail "$o1 $o2 $o3"

t_begin "the scheduler takes the first snapshot within a few schedule hours"
first=""
for _ in $(seq 100); do first=$(snaps | head -1); [ -n "$first" ] && break; sleep 0.1; done
[ -n "$first" ] && t_ok || t_fail "no snapshot; $(tail -3 "$LOG")"

t_begin "hold the first automatic snapshot (keep-last 3 prunes it only at the 4th)"
out=$(vmsnap --home "$HOME_DIR" snapshot hold vm1@latest --tag keepme 2>&1)
[[ $out == *"held: keepme"* ]] && t_ok || t_fail "$out"

sleep 6   # six hours of schedule

t_begin "hourly snapshots taken in distinct hours and pruned to the last 3 plus the held one"
list=$(snaps)
auto_free=$(printf '%s\n' "$list" | awk '$2=="auto" && $3=="None"' | wc -l)
held=$(printf '%s\n' "$list" | awk '$3=="keepme"' | wc -l)
hours=$(printf '%s\n' "$list" | awk '{print int($1/3600)}' | sort -u | wc -l)
taken=$(grep -c 'scheduler: VM vm1: snapshot' "$LOG")
if [ "$auto_free" = 3 ] && [ "$held" = 1 ] && [ "$hours" = 4 ] && [ "$taken" -ge 5 ]; then t_ok
else t_fail "auto=$auto_free held=$held hours=$hours taken=$taken: $list"; fi

t_begin "a dry run explains the decisions (held, keep-last)"
out=$(vmsnap --home "$HOME_DIR" policy prune vm1 --dry-run 2>&1)
[[ $out == *"held: keepme"* ]] && [[ $out == *"keep-last #1"* ]] && t_ok || t_fail "$out"

# ---- metrics against a known workload --------------------------------------
t_begin "qemu-io workload: 12 writes of 64 KiB, 5 reads of 128 KiB, through NBD"
cmds=()
for i in $(seq 0 11); do cmds+=(-c "write -P $((i + 1)) $((i * 64))k 64k"); done
for i in $(seq 0 4); do cmds+=(-c "read $((i * 128))k 128k"); done
qemu-io -f raw "${cmds[@]}" "$(uri vm1/d0)" >/dev/null 2>&1 && t_ok || t_fail

t_begin "Prometheus text counts exactly that workload"
m=$(curl -fsS "http://127.0.0.1:$PORT/metrics")
g() { printf '%s\n' "$m" | awk -v k="$1" '$1==k {print $2}'; }
w=$(g 'vmsnap_disk_requests_total{vm="vm1",disk="d0",op="write"}')
wb=$(g 'vmsnap_disk_bytes_total{vm="vm1",disk="d0",op="write"}')
r=$(g 'vmsnap_disk_requests_total{vm="vm1",disk="d0",op="read"}')
rb=$(g 'vmsnap_disk_bytes_total{vm="vm1",disk="d0",op="read"}')
hc=$(g 'vmsnap_disk_request_duration_seconds_count{vm="vm1",disk="d0",op="write"}')
inf=$(g 'vmsnap_disk_request_duration_seconds_bucket{vm="vm1",disk="d0",op="write",le="+Inf"}')
if [ "$w" = 12 ] && [ "$wb" = $((12 * 65536)) ] && [ "$r" = 5 ] && [ "$rb" = $((5 * 131072)) ] &&
   [ "$hc" = 12 ] && [ "$inf" = 12 ] && printf '%s\n' "$m" | grep -q '^# TYPE vmsnap_disk_request_duration_seconds histogram' &&
   printf '%s\n' "$m" | grep -q '^vmsnap_sr_total_bytes{sr="sr1"} 268435456'; then t_ok
else t_fail "w=$w wb=$wb r=$r rb=$rb hc=$hc inf=$inf"; fi

t_begin "the endpoint answers only GET /metrics"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/other")
[ "$code" = 404 ] && t_ok || t_fail "got $code"

t_begin "stats of the VM carries the same live figures"
out=$(ctl '{"op":"stats","args":{"vm":"vm1"}}')
v=$(json_get "$out" '[(e["io"]["write"]["ops"], e["io"]["read"]["bytes"]) for e in j["result"]["io"] if e["export"]=="vm1/d0"][0]')
[ "$v" = "(12, 655360)" ] && t_ok || t_fail "$v: $out"

t_begin "vmsnap stats prints the live I/O table"
out=$(vmsnap --home "$HOME_DIR" stats 2>&1)
[[ $out == *"live I/O"* ]] && [[ $out == *vm1/d0* ]] && t_ok || t_fail "$out"

# ---- missed runs across a restart ----------------------------------------
t_begin "three days later at real speed: one catch-up snapshot, not a burst"
stop_daemon
before=$(snaps 2>/dev/null | wc -l)
start_daemon --clock-scale 1 --clock-start $((T0 + 3 * 86400 + 300)) || t_fail "restart: $(tail -3 "$LOG")"
sleep 2
list=$(snaps)
new=$(printf '%s\n' "$list" | awk -v t=$((T0 + 3 * 86400)) '$1 >= t' | wc -l)
count=$(printf '%s\n' "$list" | wc -l)
held=$(printf '%s\n' "$list" | awk '$3=="keepme"' | wc -l)
if [ "$new" = 1 ] && [ "$count" = 4 ] && [ "$held" = 1 ] && grep -q 'catch-up for' "$LOG"; then t_ok
else t_fail "new=$new count=$count (was $before) held=$held: $list"; fi

# ---- import of a qcow2 backing chain of depth 3, export ------------------
t_begin "a qcow2 backing chain of depth 3 built with qemu-img"
I=$T/img
mkdir -p "$I"
if qemu-img create -q -f qcow2 "$I/base.qcow2" 8M &&
   qemu-io -f qcow2 -c 'write -P 0xa1 0 2M' "$I/base.qcow2" >/dev/null &&
   qemu-img create -q -f qcow2 -b "$I/base.qcow2" -F qcow2 "$I/mid.qcow2" &&
   qemu-io -f qcow2 -c 'write -P 0xb2 1M 2M' "$I/mid.qcow2" >/dev/null &&
   qemu-img create -q -f qcow2 -b "$I/mid.qcow2" -F qcow2 "$I/top.qcow2" &&
   qemu-io -f qcow2 -c 'write -P 0xc3 2560k 1M' -c 'write -z 0 64k' "$I/top.qcow2" >/dev/null &&
   [ "$(qemu-img info --backing-chain --output=json "$I/top.qcow2" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 3 ]
then t_ok; else t_fail; fi

t_begin "vdi import through the daemon records the source chain depth 3"
out=$(vmsnap --home "$HOME_DIR" --json vdi import vm1 imp "$I/top.qcow2" 2>&1)
depth=$(json_get "$out" 'j["result"]["import"]["source_chain_depth"]' 2>/dev/null)
[ "$depth" = 3 ] && t_ok || t_fail "$out"

check "the imported disk holds the chain's content (qemu-img compare over NBD)" \
  qemu-img compare -f qcow2 -F raw "$I/top.qcow2" "$(uri vm1/imp)"

t_begin "vm report shows depth 3 at the source and 1 now"
out=$(ctl '{"op":"vm.report","args":{"vm":"vm1"}}')
v=$(json_get "$out" '[(d["imported"]["source_chain_depth"], d["chain_depth"]) for d in j["result"]["disks"] if d["name"]=="imp"][0], j["result"]["source_chain_depth_max"], j["result"]["chain_depth"]["max"]')
[ "$v" = "((3, 1), 3, 1)" ] && t_ok || t_fail "$v $out"

t_begin "export of the disk to qcow2 equals the chain"
out=$(ctl "{\"op\":\"vdi.export\",\"args\":{\"vdi\":\"vm1/imp\",\"path\":\"$I/out.qcow2\",\"format\":\"qcow2\"}}")
ok_result "$out" && [ "$(qemu-img info --output=json "$I/out.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" = qcow2 ] &&
  qemu-img compare "$I/top.qcow2" "$I/out.qcow2" >/dev/null && t_ok || t_fail "$out"

t_begin "export of a snapshot to raw keeps the snapshot's content"
s=$(ctl '{"op":"snapshot.create","args":{"vm":"vm1","name":"exp"}}')
qemu-io -f raw -c 'write -P 0xee 0 1M' "$(uri vm1/imp)" >/dev/null 2>&1
out=$(vmsnap --home "$HOME_DIR" vdi export vm1/imp@exp "$I/snap.raw" 2>&1)
if ok_result "$s" && qemu-img compare -f qcow2 -F raw "$I/top.qcow2" "$I/snap.raw" >/dev/null &&
   ! qemu-img compare -f raw -F raw "$I/snap.raw" "$(uri vm1/imp)" >/dev/null 2>&1; then t_ok
else t_fail "$out"; fi

t_begin "a failed import leaves no disk behind"
printf 'not an image' >"$I/junk.vmdk"
out=$(ctl "{\"op\":\"vdi.import\",\"args\":{\"vm\":\"vm1\",\"name\":\"junk\",\"source\":\"$I/junk.vmdk\",\"format\":\"vmdk\"}}")
disks=$(ctl '{"op":"vdi.list","args":{"vm":"vm1"}}' | python3 -c 'import json,sys; print(" ".join(sorted(d["name"] for d in json.load(sys.stdin)["result"]["vdis"])))')
! ok_result "$out" && [ "$disks" = "d0 imp" ] && t_ok || t_fail "$disks $out"

t_begin "daemon stops cleanly"
stop_daemon && t_ok || t_fail "$(tail -3 "$LOG")"
t_end
