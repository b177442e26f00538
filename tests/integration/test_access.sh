#!/bin/bash
# Access control of vmsnapd and the control protocol (issue 6, item 6):
#   - the home is 0700; control.sock and nbd.sock are created 0600 (owner
#     only) whatever the umask, 0660 with the group asked for; the catalog
#     (catalog.db, -wal, -shm), control.lock and native pool files are 0600;
#   - TCP is off unless --listen is given; `--listen PORT` binds loopback
#     only; an explicit address is honoured;
#   - NBD export names that try a path (traversal, absolute, NUL, shell
#     characters, over-long) are refused and nothing outside the catalog is
#     opened;
#   - object names (SR, VM, disk, snapshot) and zfs dataset names are
#     validated: no path and no shell reach, nothing created.
. "$(dirname "$0")/lib.sh" "$@"
need python3 nbdinfo

need_built
daemon_env
err_code() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["error"]["code"] if "error" in j else "OK")' "$1" 2>/dev/null || echo "BAD-RESPONSE"; }
mode_of() { stat -c %a "$1"; }
group_of() { stat -c %G "$1"; }
DPID=
start_daemon() {  # start_daemon [ARGS...]: with the default sockets under $HOME_DIR
  (umask "${UMASK:-022}"; exec "$VMSNAPD" --foreground --home "$HOME_DIR" --log-file "$LOG" "$@") &
  DPID=$!
  on_exit "kill $DPID 2>/dev/null"
  for _ in $(seq 100); do
    python3 "$TOP/tests/integration/nbd_ctl.py" "$CTL" '{"op":"daemon.status"}' >/dev/null 2>&1 && return 0
    kill -0 "$DPID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop_daemon() { kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; DPID=; }
# listening TCP sockets of a process: "ADDR:PORT" per line (from /proc)
tcp_listeners() {
  python3 - "$1" <<'PY'
import os, socket, struct, sys
pid = sys.argv[1]
inodes = set()
for fd in os.listdir("/proc/%s/fd" % pid):
    try:
        l = os.readlink("/proc/%s/fd/%s" % (pid, fd))
    except OSError:
        continue
    if l.startswith("socket:["):
        inodes.add(l[8:-1])
for fam, path in ((socket.AF_INET, "/proc/net/tcp"), (socket.AF_INET6, "/proc/net/tcp6")):
    for line in open(path).read().splitlines()[1:]:
        f = line.split()
        if f[3] != "0A" or f[9] not in inodes:
            continue
        addr, port = f[1].split(":")
        raw = bytes.fromhex(addr)
        if fam == socket.AF_INET:
            a = socket.inet_ntop(fam, struct.pack("<I", struct.unpack(">I", raw)[0]))
        else:
            a = socket.inet_ntop(fam, b"".join(struct.pack("<I", struct.unpack(">I", raw[i:i + 4])[0]) for i in range(0, 16, 4)))
        print("%s:%d" % (a, int(port, 16)))
PY
}

# ---------------------------------------------------------------- sockets
t_begin "under umask 000: home 0700, control.sock and nbd.sock 0600"
if UMASK=000 start_daemon; then
  got="$(mode_of "$HOME_DIR") $(mode_of "$CTL") $(mode_of "$SOCK")"
  [ "$got" = "700 600 600" ] && t_ok || t_fail "modes home/control/nbd: $got"
else
  t_fail "daemon did not start: $(tail -3 "$LOG")"; t_end
fi

t_begin "the SR directory and pool file are not accessible by others"
ctl "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\",\"location\":\"$T/sr1\",\"size\":\"64M\"}}" >"$T/o" 2>&1
ctl '{"op":"vm.create","args":{"name":"vm1","sr":"sr1","disks":[{"name":"root","size":"4M"}]}}' >>"$T/o" 2>&1
ctl '{"op":"snapshot.create","args":{"vm":"vm1","name":"s1"}}' >>"$T/o" 2>&1
bad=$(find "$T/sr1" -perm /o+rw -printf '%m %p\n' 2>/dev/null || true)
[ -f "$T/sr1/pool.vms" ] && [ -z "$bad" ] && t_ok || t_fail "world-accessible: $bad / $(cat "$T/o")"

t_begin "under umask 000: the native pool file is 0600"
got=$(mode_of "$T/sr1/pool.vms" 2>&1)
[ "$got" = 600 ] && t_ok || t_fail "pool.vms: $got"

t_begin "under umask 000: catalog.db, its -wal and -shm and control.lock are 0600 (daemon)"
got=""
for f in catalog.db catalog.db-wal catalog.db-shm control.lock; do
  got="$got $f=$(mode_of "$HOME_DIR/$f" 2>&1)"
done
[ "$got" = " catalog.db=600 catalog.db-wal=600 catalog.db-shm=600 control.lock=600" ] && t_ok || t_fail "$got"

t_begin "under umask 000: the CLI makes a new home 0700 and its catalog files 0600"
(umask 000; "$VMSNAP" --home "$T/home2" --no-daemon vm list >"$T/cli.out" 2>&1)
got="home2=$(mode_of "$T/home2" 2>&1)"
for f in "$T"/home2/*; do got="$got ${f##*/}=$(mode_of "$f")"; done
bad=$(find "$T/home2" -perm /go+rwx -printf '%m %p\n' 2>/dev/null || true)
[ -f "$T/home2/catalog.db" ] && [ "$(mode_of "$T/home2")" = 700 ] && [ -z "$bad" ] && t_ok ||
  t_fail "$got / $bad / $(cat "$T/cli.out")"

t_begin "no TCP listener without --listen"
l=$(tcp_listeners "$DPID")
[ -z "$l" ] && t_ok || t_fail "listening on: $l"
stop_daemon

PORT=$((20000 + RANDOM % 30000))
t_begin "--listen PORT binds 127.0.0.1 only"
if start_daemon --listen "$PORT"; then
  l=$(tcp_listeners "$DPID" | sort | tr '\n' ' ')
  [ "$l" = "127.0.0.1:$PORT " ] && t_ok || t_fail "listening on: $l"
else
  t_fail "daemon with --listen $PORT did not start: $(tail -3 "$LOG")"
fi

t_begin "--listen PORT: NBD served on loopback, refused on another address of the host"
other=$(hostname -I 2>/dev/null | awk '{print $1}')
if nbdinfo --list "nbd://127.0.0.1:$PORT" >/dev/null 2>&1; then
  if [ -z "$other" ] || [ "$other" = 127.0.0.1 ]; then
    t_ok; echo "    (no non-loopback address to try)" >&2
  elif timeout 5 bash -c "exec 3<>/dev/tcp/$other/$PORT" 2>/dev/null; then
    t_fail "connected through $other:$PORT"
  else
    t_ok
  fi
else
  t_fail "nbdinfo on loopback failed"
fi
stop_daemon

t_begin "--group and --control-group: 0660 with that group"
if start_daemon --group daemon --control-group disk; then
  got="$(mode_of "$SOCK") $(group_of "$SOCK") $(mode_of "$CTL") $(group_of "$CTL")"
  [ "$got" = "660 daemon 660 disk" ] && t_ok || t_fail "$got"
else
  t_fail "daemon did not start: $(tail -3 "$LOG")"
fi
stop_daemon

t_begin "an unknown group is refused at start (no socket left behind)"
rm -f "$SOCK" "$CTL"
if "$VMSNAPD" --foreground --home "$HOME_DIR" --group no_such_group_vms >"$T/g.out" 2>&1; then
  t_fail "started with an unknown group"
else
  [ ! -e "$SOCK" ] && [ ! -e "$CTL" ] && t_ok || t_fail "socket left behind"
fi

# ---------------------------------------------------------------- export names
start_daemon || { t_fail "restart: $(tail -3 "$LOG")"; t_end; }
echo secret >"$T/secret"
t_begin "hostile NBD export names are refused and the daemon still serves"
out=$(TOP=$TOP python3 - "$SOCK" "$T" <<'PY' 2>&1
import os, struct, sys
sys.path.insert(0, os.environ.get("TOP", ".") + "/tests/integration")
import nbd_hostile as nbd
nbd.SOCK = sys.argv[1]
t = sys.argv[2]
names = [b"../../../../etc/passwd", b"/etc/passwd", t.encode() + b"/secret", b"vm1/../vm1/root",
         b"vm1/root/..", b"./vm1/root", b"vm1//root", b"vm1/root\x00x", b"vm1/root;id",
         b"vm1/root$(touch " + t.encode() + b"/pwned)", b"`touch " + t.encode() + b"/pwned`",
         b"vm1/root@../../etc/passwd", b"vm1/root@s1/../../x", b"vm1\n/root", b"%s%n%x",
         b"vm1/root@", b"@s1", b"/", b"", b"..", b"sr1", b"x" * 4096, b"vm1/\xff\xfe",
         b"vm1/root@s1@s1", b"vm1/root\\..\\..\\x"]
bad = []
for n in names:
    c = nbd.Client(go=False, export="")
    typ, _ = c.option(nbd.OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
    if typ == nbd.REP_ACK and n != b"":
        bad.append(n[:60])
    c.s.close()
# the empty name selects the first --raw export, and there is none: refused too
c = nbd.Client(export="vm1/root")
err, data = c.read(0, 4096)
c.close()
if err:
    bad.append(b"a good export no longer served")
print("accepted: %r" % bad if bad else "all %d refused" % len(names))
sys.exit(1 if bad else 0)
PY
)
[ $? = 0 ] && [ ! -e "$T/pwned" ] && t_ok || t_fail "$out"

t_begin "the daemon did not open anything outside the catalog for them"
opened=$(grep -c -E 'passwd|secret|pwned' "$LOG" | grep -v '^0$' || true)
fds=$(ls -l /proc/"$DPID"/fd 2>/dev/null | grep -E '/etc/|secret' || true)
[ -z "$fds" ] && t_ok || t_fail "$fds"

# ---------------------------------------------------------------- object names
# One python process sends every request over one control connection (a
# python start costs seconds on a loaded machine); it prints one line per
# group of checks, "ok WHAT" or "FAIL WHAT: details".
python3 - "$CTL" "$T" >"$T/names.out" 2>&1 <<'PY'
import json, socket, sys
ctl, t = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.connect(ctl); s.settimeout(120)
buf = b""
def call(op, **args):
    global buf
    s.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
    while b"\n" not in buf:
        c = s.recv(65536)
        if not c:
            raise SystemExit("FAIL control connection closed")
        buf += c
    line, buf = buf.split(b"\n", 1)
    j = json.loads(line)
    return j["error"]["code"] if "error" in j else "OK"
def report(what, fails):
    print(("ok   " + what) if not fails else ("FAIL %s: %s" % (what, "; ".join(fails[:8]))))

names = ["../x", "a/b", "/etc", ".", "..", "a b", "a;b", "$(touch %s/pwned)" % t, "`id`", "a\nb",
         "", "x" * 65, "\u00e4", "a-b", "a.b", "%s", "-rf", "a@b", "a:b", "nul\u0000x", "a\\b", "a~1"]
fails = []
for n in names:
    for what, op, args in (
            ("sr.create", "sr.create", dict(name=n, type="native", location=t + "/srx", size="64M")),
            ("vm.create", "vm.create", dict(name=n, sr="sr1")),
            ("disk in vm.create", "vm.create", dict(name="okvm", sr="sr1", disks=[{"name": n, "size": 4096}])),
            ("vdi.create", "vdi.create", dict(vm="vm1", name=n, size=4096)),
            ("vm.clone", "vm.clone", dict(snapshot="vm1@s1", name=n)),
            ("snapshot.create", "snapshot.create", dict(vm="vm1", name=n))):
        c = call(op, **args)
        if c != "INVALID":
            fails.append("%s %r -> %s" % (what, n, c))
for what, op, args in (("snapshot named latest", "snapshot.create", dict(vm="vm1", name="latest")),):
    c = call(op, **args)
    if c != "INVALID":
        fails.append("%s -> %s" % (what, c))
report("object names with paths, shell or control characters: INVALID (%d names x 6 ops)" % len(names), fails)

fails = []
for sel in ("vm1@../../etc/passwd", "../vm1@s1", "vm1@/etc/passwd", "vm1@latest~-1",
            "vm1@latest~99999999999999999999", "vm1@before:../../x", "vm1@after:$(id)",
            "/etc/passwd", "vm1@s1;id", "vm1@s1/../s1"):
    c = call("snapshot.show", snapshot=sel)
    if c not in ("NOTFOUND", "INVALID"):
        fails.append("snapshot %r -> %s" % (sel, c))
for sel in ("../vm1/root", "vm1/../vm1/root", "vm1/root/..", "/etc/passwd", "vm1/root;id", "vm1//root"):
    c = call("vdi.show", vdi=sel)
    if c not in ("NOTFOUND", "INVALID"):
        fails.append("vdi %r -> %s" % (sel, c))
report("selectors with paths reach nothing: NOTFOUND or INVALID", fails)

fails = []
for ds in ("-o mountpoint=/", "-r", "pool;touch %s/pwned" % t, "pool/$(touch %s/pwned)" % t,
           "pool/../x", "/pool", "pool//x", "pool/x@snap", "pool/x y", "", "pool/./x", "pool\nx"):
    c = call("sr.create", name="zsr", type="zfs", location=ds)
    if c != "INVALID":
        fails.append("%r -> %s" % (ds, c))
report("zfs dataset names that are options or shell text: INVALID before zfs runs", fails)

vms = []
s.sendall(b'{"op":"vm.list"}\n')
while b"\n" not in buf:
    buf += s.recv(65536)
line, buf = buf.split(b"\n", 1)
vms = [v["name"] for v in json.loads(line)["result"]["vms"]]
srs = call("sr.show", sr="zsr")
report("nothing was created by the refused requests", [] if vms == ["vm1"] and srs == "NOTFOUND" else
       ["VMs %s, zsr %s" % (vms, srs)])
PY
while read -r st what; do
  t_begin "${what%%: *}"
  if [ "$st" = ok ]; then t_ok; else t_fail "${what#*: }"; fi
done < <(grep -E '^(ok|FAIL) ' "$T/names.out")
grep -qE '^(ok|FAIL) ' "$T/names.out" || { t_begin "object name checks ran"; t_fail "$(tail -5 "$T/names.out")"; }
t_begin "no file was created by shell text in names"
[ ! -e "$T/pwned" ] && [ ! -e "$T/srx" ] && t_ok || t_fail "$(ls "$T")"

t_begin "the CLI refuses a bad name with exit 2 before any request"
"$VMSNAP" --home "$HOME_DIR" vm create '../evil' --sr sr1 >/dev/null 2>&1; rc=$?
[ "$rc" = 2 ] && t_ok || t_fail "exit $rc"

t_begin "control lines over 1 MiB are refused and the connection closed"
out=$(python3 - "$CTL" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(20)
try:
    s.sendall(b'{"op":"' + b"a" * (1 << 20) + b'"}\n')
except OSError:
    pass
buf = b""
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        buf += c
except OSError:
    pass
print(buf[:200].decode(errors="replace"))
PY
)
case $out in *INVALID*) t_ok ;; *) t_fail "$out" ;; esac

stop_daemon
t_end
