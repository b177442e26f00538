#!/bin/bash
# I/O faults below the engine under a running vmsnapd, seen by real NBD
# clients (qemu-io, nbdcopy).  The faults come from the daemon's test-only
# VMSNAPD_FAULT (src/daemon/fault.c), which puts the fault shim of
# include/vmsnap/io_fault.h under the pool files:
#   A. EIO on a data write: the client gets NBD_EIO, the data stays as it
#      was, the other disks of the pool and of another SR go on, the same
#      disk works again once the fault is spent, the pool checks clean;
#   B. ENOSPC: injected on a data write, and for real on a small full pool:
#      the client gets NBD_ENOSPC; deleting a snapshot frees space and the
#      writes go through again; the pool checks clean;
#   C. EIO on the sync of a commit (armed by SIGUSR2 at a chosen moment):
#      the flush fails, the log says the pool is read-only, writes get
#      NBD_EPERM (the engine's EROFS; NBD has no EROFS), reads go on, the
#      other SR is untouched; after a restart the pool is back at its last
#      commit: everything flushed before the fault reads back (SHA-256), and
#      `check` is clean (daemon and `vmsnap --no-daemon --json check`).
. "$(dirname "$0")/lib.sh" "$@"
need qemu-io nbdcopy python3 sha256sum

need_built

daemon_env
DPID=
V() { "$VMSNAP" --home "$HOME_DIR" --no-daemon "$@"; }
# qio URI CMD...: qemu-io with one -c per command; output in $out, status in $rc
qio() {
  local u=$1 a=()
  shift
  for c in "$@"; do a+=(-c "$c"); done
  out=$(qemu-io -f raw "${a[@]}" "$u" 2>&1); rc=$?
}
# nbd_req EXPORT OP...: one NBD connection (the client of nbd_hostile.py),
# one request per OP, prints "<op> <NBD error>" per request (0 = done;
# 1 EPERM, 5 EIO, 28 ENOSPC).  OP: write:OFF:LEN:BYTE[:fua] | flush |
# read:OFF:LEN:BYTE (error 255 when the data differs).
cat >"$T/nbd_req.py" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import nbd_hostile as nbd
nbd.SOCK = sys.argv[2]


def num(t):  # 4096, 0x900000, 64K, 8M
    m = {"K": 1 << 10, "M": 1 << 20}.get(t[-1:], 1)
    return int(t[:-1] if m > 1 else t, 0) * m


c = nbd.Client(export=sys.argv[3])
for h, op in enumerate(sys.argv[4:], 1):
    f = op.split(":")
    if f[0] == "write":
        off, n, b = num(f[1]), num(f[2]), int(f[3], 0)
        c.request(nbd.CMD_WRITE, off, n, nbd.FLAG_FUA if f[4:] == ["fua"] else 0, h, bytes([b]) * n)
        err = c.reply()[1]
    elif f[0] == "flush":
        c.request(nbd.CMD_FLUSH, handle=h)
        err = c.reply()[1]
    else:
        off, n, b = num(f[1]), num(f[2]), int(f[3], 0)
        err, data = c.read(off, n, handle=h)
        err = err or (0 if data == bytes([b]) * n else 255)
    print(f[0], err, flush=True)
c.close()
PY
nbd_req() { python3 "$T/nbd_req.py" "$TOP/tests/integration" "$SOCK" "$@" 2>&1; }
sha() { nbdcopy "$(uri "$1")" - 2>/dev/null | sha256sum | cut -d' ' -f1; }
ctl_check_ok() {
  local o
  o=$(ctl "{\"op\":\"check\",\"args\":{\"sr\":\"$1\",\"data\":true}}")
  [ "$(json_get "$o" 'j["result"]["ok"]' 2>/dev/null)" = True ] || { echo "$o" | head -c 1500; return 1; }
}

# start_daemon [VMSNAPD_FAULT]: start vmsnapd (with that fault rule armed).
start_daemon() {
  : >"$LOG.cur"
  if [ -n "${1:-}" ]; then
    VMSNAPD_FAULT=$1 "$VMSNAPD" --foreground --home "$HOME_DIR" --log-file "$LOG.cur" --log-level debug &
  else
    "$VMSNAPD" --foreground --home "$HOME_DIR" --log-file "$LOG.cur" --log-level debug &
  fi
  DPID=$!
  on_exit "kill $DPID 2>/dev/null"
  wait_for_socket "$SOCK" 10 && wait_for_socket "$CTL" 10
}
stop_daemon() {
  [ -n "$DPID" ] || return 0
  kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null
  local r=$?
  cat "$LOG.cur" >>"$LOG"
  DPID=
  return $r
}
# wait_log PATTERN [SECONDS]: wait until the current log matches.
wait_log() {
  local n=$((${2:-10} * 10))
  while ((n-- > 0)); do grep -qE "$1" "$LOG.cur" && return 0; sleep 0.1; done
  return 1
}

t_begin "SRs and VMs, in process: sr1 (vm1, vm2) and sr2 (vm3), native, 64 MiB each"
if out=$(V sr create sr1 "$T/sr1" --type native --size 64M 2>&1 &&
         V sr create sr2 "$T/sr2" --type native --size 64M 2>&1 &&
         V vm create vm1 --sr sr1 --disk root:16M 2>&1 &&
         V vm create vm2 --sr sr1 --disk root:16M 2>&1 &&
         V vm create vm3 --sr sr2 --disk root:16M 2>&1); then
  t_ok
else
  t_fail "$out"; t_end
fi

# ---- A. EIO on a data write ------------------------------------------------
# minlen=8192: data writes of several 4 KiB blocks only, never a metadata
# block, so the fault cannot land in a commit.
t_begin "A: vmsnapd starts with VMSNAPD_FAULT (EIO on the next 2 data writes of sr1) and says so"
if start_daemon "op=write,err=EIO,minlen=8192,count=2,path=$T/sr1/pool" &&
   grep -q 'TEST-ONLY fault injection from VMSNAPD_FAULT' "$LOG.cur"; then
  t_ok
else
  t_fail "$(tail -3 "$LOG.cur")"; t_end
fi

t_begin "A: a 64 KiB write to vm1/root gets NBD_EIO (error 5 on the wire)"
out=$(nbd_req vm1/root write:0:64K:0xa1 | tr '\n' ' ')
[ "$out" = "write 5 " ] && t_ok || t_fail "$out"

t_begin "A: the same write from qemu-io gets it too (Input/output error)"
qio "$(uri vm1/root)" 'write -P 0xa1 0 64k'
[ "$rc" != 0 ] && grep -q 'Input/output error' <<<"$out" && t_ok || t_fail "rc=$rc $out"

t_begin "A: the log names the pool file, the offset and the injected error"
grep -qE "pool file $T/sr1/pool.vms: write of 65536 bytes at [0-9]+ failed: fault shim: injected EIO" "$LOG.cur" &&
  grep -q 'vm1/root: request type 1 at 0+65536 failed' "$LOG.cur" && t_ok || t_fail "$(tail -5 "$LOG.cur")"

t_begin "A: the failed write changed nothing (vm1/root still reads zeros)"
qio "$(uri vm1/root)" 'read -P 0 0 1M'
[ "$rc" = 0 ] && ! grep -q 'Pattern verification failed' <<<"$out" && t_ok || t_fail "$out"

t_begin "A: another disk of the same pool (vm2/root) writes, flushes and reads back"
qio "$(uri vm2/root)" 'write -P 0xa2 0 1M' 'flush' 'read -P 0xa2 0 1M'
[ "$rc" = 0 ] && ! grep -qi 'failed' <<<"$out" && t_ok || t_fail "$out"

t_begin "A: a disk of the other SR (vm3/root, nbdcopy) writes and reads back"
head -c 4M /dev/urandom >"$T/rand4m"
truncate -s 16M "$T/rand4m"
if nbdcopy --flush "$T/rand4m" "$(uri vm3/root)" 2>"$T/nbdcopy.err" &&
   [ "$(sha vm3/root)" = "$(sha256sum <"$T/rand4m" | cut -d' ' -f1)" ]; then
  t_ok
else
  t_fail "$(cat "$T/nbdcopy.err")"
fi

t_begin "A: the fault spent, vm1/root takes the same write and reads it back"
qio "$(uri vm1/root)" 'write -P 0xa1 0 64k' 'flush' 'read -P 0xa1 0 64k' 'read -P 0 64k 960k'
[ "$rc" = 0 ] && ! grep -qi 'failed' <<<"$out" && t_ok || t_fail "$out"

t_begin "A: sr1 and sr2 check clean (with data checksums)"
ctl_check_ok sr1 && ctl_check_ok sr2 && t_ok || t_fail
stop_daemon

# ---- B. ENOSPC ---------------------------------------------------------------
# count=2: on ENOSPC with freed blocks waiting for a commit, the engine
# commits twice and retries the write once (tree.c io_modify), so one
# injected ENOSPC can be absorbed; two reach the client.
t_begin "B: an injected ENOSPC on a data write reaches the client as NBD_ENOSPC (qemu-io: No space left on device)"
if start_daemon "op=write,err=ENOSPC,minlen=8192,count=2,path=$T/sr1/pool"; then
  qio "$(uri vm2/root)" 'write -P 0xb1 1M 1M'
  [ "$rc" != 0 ] && grep -q 'No space left on device' <<<"$out" && t_ok || t_fail "rc=$rc $out"
else
  t_fail "daemon: $(tail -3 "$LOG.cur")"
fi

t_begin "B: after it (the second fault spent by the retry or by one more ENOSPC), the write goes through and reads back"
out=$(nbd_req vm2/root write:1M:1M:0xb1 | tr '\n' ' ')
[ "$out" = "write 28 " ] && out=$(nbd_req vm2/root write:1M:1M:0xb1 | tr '\n' ' ')
out2=$(nbd_req vm2/root flush read:0:1M:0xa2 read:1M:1M:0xb1 | tr '\n' ' ')
[ "$out" = "write 0 " ] && [ "$out2" = "flush 0 read 0 read 0 " ] &&
  [ "$(grep -c 'pool file .*: write of .* failed: fault shim: injected ENOSPC' "$LOG.cur")" = 2 ] && t_ok || t_fail "$out $out2"
stop_daemon

# A real full pool: sr3 of 12 MiB, vm4 with an 8 MiB disk filled, a
# snapshot of it, then the disk rewritten: the pool cannot hold both.
t_begin "B: small SR sr3 (12 MiB), vm4/root (8 MiB) filled with random data, snapshot s1"
start_daemon || { t_fail "daemon: $(tail -3 "$LOG.cur")"; t_end; }
o1=$(ctl "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr3\",\"type\":\"native\",\"location\":\"$T/sr3\",\"size\":\"12M\"}}")
o2=$(ctl '{"op":"vm.create","args":{"name":"vm4","sr":"sr3","disks":[{"name":"root","size":"8M"}]}}')
head -c 8M /dev/urandom >"$T/rand8m"
if ok_result "$o1" && ok_result "$o2" && nbdcopy --flush "$T/rand8m" "$(uri vm4/root)" 2>"$T/nbdcopy.err" &&
   o3=$(ctl '{"op":"snapshot.create","args":{"vm":"vm4","name":"s1"}}') && ok_result "$o3"; then
  t_ok
else
  t_fail "$o1 $o2 ${o3:-} $(cat "$T/nbdcopy.err")"
fi
S1_SHA=$(sha256sum <"$T/rand8m" | cut -d' ' -f1)

t_begin "B: rewriting vm4/root on the full pool fails with NBD_ENOSPC (qemu-io: No space left on device)"
qio "$(uri vm4/root)" 'write -P 0xb2 0 8M'
[ "$rc" != 0 ] && grep -q 'No space left on device' <<<"$out" && t_ok || t_fail "rc=$rc $out"

t_begin "B: the full pool is consistent: snapshot s1 reads back exactly, sr3 checks clean"
[ "$(sha 'vm4/root@s1')" = "$S1_SHA" ] && ctl_check_ok sr3 && t_ok || t_fail

# Copy-on-write: rewriting a block needs a new one before the old one is
# free (at the next commit), so the rewrite goes 1 MiB at a time.
t_begin "B: deleting snapshot s1 frees space: the rewrite then succeeds (1 MiB + flush at a time) and reads back"
o=$(ctl '{"op":"snapshot.delete","args":{"snapshot":"vm4@s1"}}')
ok=0
if ok_result "$o"; then
  cmds=()
  for i in 0 1 2 3 4 5 6 7; do cmds+=("write -P 0xb2 ${i}M 1M" flush); done
  # the reaper frees the snapshot's blocks in the background
  for _ in $(seq 50); do
    qio "$(uri vm4/root)" "${cmds[@]}"
    [ "$rc" = 0 ] && ! grep -qi 'failed' <<<"$out" && { ok=1; break; }
    sleep 0.2
  done
fi
qio "$(uri vm4/root)" 'read -P 0xb2 0 8M'
[ "$ok" = 1 ] && [ "$rc" = 0 ] && ! grep -q 'verification failed' <<<"$out" && t_ok || t_fail "$o $out"

t_begin "B: sr3 checks clean after the ENOSPC and the delete"
ctl_check_ok sr3 && t_ok || t_fail
stop_daemon

# ---- C. EIO on the sync of a commit ------------------------------------------
t_begin "C: data flushed on vm1/root and vm2/root, checksums recorded"
start_daemon "op=sync,err=EIO,count=1,arm=signal,path=$T/sr1/pool" || { t_fail "daemon: $(tail -3 "$LOG.cur")"; t_end; }
head -c 3M /dev/urandom >"$T/rand3m"
qemu-io -f raw -c 'write -P 0xc1 4M 1M' -c flush "$(uri vm1/root)" >/dev/null 2>&1 &&
  nbdcopy --flush "$T/rand3m" "$(uri vm2/root)" 2>/dev/null
rc=$?
V1_SHA=$(sha vm1/root); V2_SHA=$(sha vm2/root); V3_SHA=$(sha vm3/root)
[ "$rc" = 0 ] && [ -n "$V1_SHA" ] && [ -n "$V2_SHA" ] && t_ok || t_fail "rc=$rc"

t_begin "C: SIGUSR2 arms the sync fault on sr1's pool (logged)"
kill -USR2 "$DPID"
wait_log "fault injection armed \(SIGUSR2 #1\) on 1 pool file" 10 && t_ok || t_fail "$(tail -3 "$LOG.cur")"

t_begin "C: write + flush on vm1/root: the write is done, the flush gets NBD_EIO (the commit's sync failed)"
# A write without FUA, then FLUSH, which commits.  (Should the 5 s
# background commit meet the fault a moment before, the write or the flush
# gets EPERM instead: accepted, the rest of the test is the same.)
out=$(nbd_req vm1/root write:0:65536:0xc2 flush | tr '\n' ' ')
C2=0xc2; [ "${out#write 1}" != "$out" ] && C2=0xa1   # what 0..64K holds in memory now
case "$out" in
  "write 0 flush 5 ") t_ok ;;
  "write 1 flush 1 " | "write 0 flush 1 ")
    t_ok; echo "    (the background commit met the fault first: $out)" >&2 ;;
  *) t_fail "$out" ;;
esac

t_begin "C: the log has one clear line: sync failed, pool READ-ONLY, restart to reopen"
grep -qE "error: pool file $T/sr1/pool.vms: sync failed: fault shim: injected EIO error on sync; the commit in progress failed, so the pool is READ-ONLY" "$LOG.cur" &&
  t_ok || t_fail "$(grep -E 'sync|commit' "$LOG.cur" | tail -3)"

t_begin "C: writes and flushes on the read-only pool get NBD_EPERM (its EROFS; NBD has no EROFS), on both of its disks"
r1=$(nbd_req vm2/root write:8M:4096:0xc3 write:0x900000:4096:0xc3:fua flush | tr '\n' ' ')
qio "$(uri vm1/root)" 'write -P 0xc3 8M 64k'
[ "$r1" = "write 1 write 1 flush 1 " ] && [ "$rc" != 0 ] && grep -q 'Operation not permitted' <<<"$out" &&
  grep -q 'pool is read-only: commit failed' "$LOG.cur" && t_ok || t_fail "$r1 / qemu-io: $rc $out"

t_begin "C: reads go on: vm2/root reads back its flushed data, vm1/root its last writes"
qio "$(uri vm1/root)" "read -P $C2 0 64k" 'read -P 0xc1 4M 1M'
[ "$(sha vm2/root)" = "$V2_SHA" ] && [ "$rc" = 0 ] && ! grep -q 'verification failed' <<<"$out" &&
  t_ok || t_fail "$out"

t_begin "C: the other SR is untouched: vm3/root writes and flushes"
qio "$(uri vm3/root)" 'write -P 0xc4 12M 64k' 'flush' 'read -P 0xc4 12M 64k'
[ "$rc" = 0 ] && ! grep -qi 'failed' <<<"$out" && t_ok || t_fail "$out"
V3_SHA=$(sha vm3/root)

t_begin "C: SIGTERM stops the daemon (the read-only pool is closed without a commit)"
stop_daemon
r=$?
# the exit status may report the failed close; the daemon must still stop
[ "$r" -lt 128 ] && grep -q 'vmsnapd stopped' "$LOG" && t_ok || t_fail "exit $r: $(tail -5 "$LOG")"

t_begin "C: restarted without faults, sr1 is back at its last commit: vm1/root and vm2/root read back exactly what was flushed"
if start_daemon; then
  s1=$(sha vm1/root); s2=$(sha vm2/root); s3=$(sha vm3/root)
  [ "$s1" = "$V1_SHA" ] && [ "$s2" = "$V2_SHA" ] && [ "$s3" = "$V3_SHA" ] && t_ok ||
    t_fail "vm1 $s1 vs $V1_SHA, vm2 $s2 vs $V2_SHA, vm3 $s3 vs $V3_SHA"
else
  t_fail "daemon: $(tail -3 "$LOG.cur")"
fi

t_begin "C: the reopened pool is writable again and every SR checks clean"
qio "$(uri vm1/root)" 'write -P 0xc5 0 64k' 'flush' 'read -P 0xc5 0 64k'
[ "$rc" = 0 ] && ! grep -qi 'failed' <<<"$out" && ctl_check_ok sr1 && ctl_check_ok sr2 && ctl_check_ok sr3 &&
  t_ok || t_fail "$out"
stop_daemon

t_begin "C: an in-process \`vmsnap --json check\` agrees"
out=$(V --json check 2>&1)
[ "$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["ok"])' 2>&1)" = True ] &&
  t_ok || t_fail "$(printf '%s' "$out" | head -c 1500)"

t_begin "a bad VMSNAPD_FAULT stops the start with a clear message"
VMSNAPD_FAULT="op=write,err=EBADF" "$VMSNAPD" --foreground --home "$HOME_DIR" --log-file "$T/bad.log" >/dev/null 2>&1
r=$?
[ "$r" != 0 ] && grep -q 'VMSNAPD_FAULT=op=write,err=EBADF: err is EIO or ENOSPC' "$T/bad.log" && [ ! -S "$SOCK" ] &&
  t_ok || t_fail "exit $r: $(cat "$T/bad.log")"
t_end
