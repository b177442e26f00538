#!/bin/bash
# The vmsnap command line on a native SR, in process (no daemon): every
# verb, every delete constraint (snapshot with clones, clone of a clone,
# deleting the middle of a tree, cascade when the last clone goes), rollback
# to a non-latest snapshot keeping the newer ones, data checked through
# it_diskio, bad input, the output shapes (-H, -p, -o, -s/-S, --json) and
# the exit codes of docs/cli.md.
. "$(dirname "$0")/lib.sh" "$@"
need jq vmsnap it_diskio

H=$T/home
V() { vmsnap --home "$H" "$@"; }
D() { it_diskio "$H" "$@"; }

# eq DESCRIPTION EXPECTED ACTUAL
eq() {
  t_begin "$1"
  if [ "$2" = "$3" ]; then t_ok; else t_fail "got '$3', wanted '$2'"; fi
}
# out_is DESCRIPTION EXPECTED CMD...: CMD succeeds and prints exactly EXPECTED.
out_is() {
  local what=$1 want=$2 out rc; shift 2
  t_begin "$what"
  out=$("$@" 2>&1); rc=$?
  if [ $rc -ne 0 ]; then t_fail "exit $rc: $out"
  elif [ "$out" = "$want" ]; then t_ok
  else t_fail "got: $(printf '%q' "$out"), wanted: $(printf '%q' "$want")"; fi
}
# refused DESCRIPTION EXIT REGEX CMD...: CMD exits EXIT, prints one line
# "vmsnap: ..." on stderr matching REGEX (grep -E) and nothing on stdout.
refused() {
  local what=$1 want=$2 re=$3 rc; shift 3
  t_begin "$what"
  "$@" >"$T/out" 2>"$T/err"; rc=$?
  if [ "$rc" != "$want" ]; then t_fail "exit $rc, wanted $want: $(cat "$T/err")"
  elif [ "$(wc -l <"$T/err")" != 1 ] || ! grep -q '^vmsnap: ' "$T/err"; then t_fail "stderr not one 'vmsnap:' line: $(cat "$T/err")"
  elif ! grep -Eq -- "$re" "$T/err"; then t_fail "stderr '$(cat "$T/err")' does not match /$re/"
  elif [ -s "$T/out" ]; then t_fail "stdout not empty: $(cat "$T/out")"
  else t_ok; fi
}
# has DESCRIPTION REGEX CMD...: CMD succeeds and its stdout matches REGEX.
has() {
  local what=$1 re=$2 out rc; shift 2
  t_begin "$what"
  out=$("$@" 2>&1); rc=$?
  if [ $rc -ne 0 ]; then t_fail "exit $rc: $out"
  elif grep -Eq -- "$re" <<<"$out"; then t_ok
  else t_fail "output does not match /$re/: $out"; fi
}
# jqv FILTER CMD...: the value of FILTER on CMD's JSON output (raw).
jqv() { local f=$1; shift; "$@" --json 2>/dev/null | jq -r "$f"; }
M=$((1024 * 1024))

# ---- help, version, usage ------------------------------------------------
has "version" '^vmsnap [0-9]+\.[0-9]+' vmsnap version
eq "version --json" 1 "$(vmsnap version --json | jq .output_version)"
has "help lists the exit codes" '4  refused because other objects depend' vmsnap help
has "help of one command" '--disk NAME:SIZE' vmsnap help vm create
has "--help after a command" '--defer' vmsnap snapshot delete --help
has "disk is an alias of vdi" 'vdi resize' vmsnap help disk
check_fails "no arguments: usage, exit 2" 2 vmsnap
check_fails "a noun without verb: exit 2" 2 vmsnap vm
refused "unknown command" 2 "unknown command 'frob'" vmsnap frob
refused "unknown verb" 2 "unknown verb 'vm frob'.*create" vmsnap vm frob
refused "unknown option" 2 "unknown option '--frob'" V sr list --frob
refused "unknown short option" 2 "unknown option '-z'" V vm list -z
refused "missing argument" 2 "missing argument" V vm create
refused "too many arguments" 2 "unexpected argument 'b'" V vm show a b
refused "option without its value" 2 "needs a value" V sr create x /tmp/x --size
refused "--home without its value" 2 "needs a value" vmsnap --home
refused "flag given a value" 2 "takes no value" V vm list --all=yes
has "help of a noun" 'daemon status' vmsnap help daemon

# ---- SR -----------------------------------------------------------------------
refused "sr create: size -1" 2 "bad size '-1'" V sr create sr1 --type native --size -1 "$T/sr1"
refused "sr create: size 1Q" 2 "bad size '1Q'" V sr create sr1 --type native --size 1Q "$T/sr1"
refused "sr create: name ../x" 2 "" V sr create ../x --type native --size 64M "$T/srx"
refused "sr create: unknown type" 2 "" V sr create srx --type frob --size 64M "$T/srx"
has "sr create" '^created SR sr1 \(' V sr create sr1 --type native --size 256M "$T/sr1"
refused "sr create: name taken" 1 "sr1" V sr create sr1 --type native --size 64M "$T/sr1b"
out_is "sr list -H -o name,type" "$(printf 'sr1\tnative')" V sr list -H -o name,type
out_is "VMSNAP_HOME when there is no --home" "sr1" env VMSNAP_HOME="$H" vmsnap sr list -H -o name
has "sr list: header" '^NAME +TYPE +SIZE +USED +FREE' V sr list
eq "sr show --json: type" native "$(jqv .result.type V sr show sr1)"
SR_UUID=$(jqv .result.uuid V sr show sr1)
out_is "sr show by UUID -H -o name" "$(printf 'name\tsr1')" V sr show "$SR_UUID" -H -o name
has "sr list -p: exact bytes" '^[0-9]{6,}$' V sr list -H -p -o size
refused "sr list -o with an unknown column" 2 "unknown column 'frob'" V sr list -o name,frob
refused "sr show: unknown SR" 3 "" V sr show nosuch

# ---- VM and disks ------------------------------------------------------------
refused "vm create: bad name" 2 "" V vm create bad-name --sr sr1
refused "vm create: name ../x" 2 "" V vm create ../x --sr sr1
refused "vm create: disk without size" 2 "NAME:SIZE" V vm create vm1 --sr sr1 --disk root
refused "vm create: disk size 1Q" 2 "bad size '1Q'" V vm create vm1 --sr sr1 --disk root:1Q
refused "vm create: without --sr" 2 "needs --sr" V vm create vm1
refused "vm create: unknown SR" 3 "" V vm create vm1 --sr nosuch
has "vm create with two disks" '^created VM vm1 \(' V vm create vm1 --sr sr1 --disk root:64M --disk data:32M
refused "vm create: name taken" 1 "" V vm create vm1 --sr sr1
out_is "vm list -H -o name,disks,size -p" "$(printf 'vm1\t2\t%s' $((96 * M)))" V vm list -H -p -o name,disks,size
out_is "vdi list vm1 -H -p -o name,device,size" \
  "$(printf 'vm1/root\t0\t%s\nvm1/data\t1\t%s' $((64 * M)) $((32 * M)))" V vdi list vm1 -H -p -o name,device,size
has "vdi create" '^created disk vm1/scratch' V vdi create vm1/scratch 16M
refused "vdi create: bad name" 2 "" V vdi create vm1/../x 16M
refused "vdi create: no VM/DISK" 2 "VM/DISK" V vdi create scratch2 16M
refused "vdi create: size -1" 2 "bad size" V vdi create vm1/x -1
has "disk resize (alias)" '^resized disk vm1/scratch to 24M$' V disk resize vm1/scratch 24M
out_is "vdi show -p -o size" "$(printf 'size\t%s' $((24 * M)))" V vdi show vm1/scratch -H -p -o size
refused "vdi resize: shrink refused, names --force" 2 "use --force" V vdi resize vm1/scratch 8M
out_is "refused shrink kept the size" "$(printf 'size\t%s' $((24 * M)))" V vdi show vm1/scratch -H -p -o size
has "vdi resize --force shrinks" '^resized disk vm1/scratch to 20M$' V vdi resize vm1/scratch 20M --force
has "vdi delete -n" '^would delete' V vdi delete vm1/scratch -n
eq "vdi delete -n kept the disk" 3 "$(V vdi list vm1 -H -o name | wc -l)"
has "vdi delete" '^deleted' V vdi delete vm1/scratch
refused "vdi show: deleted disk" 3 "" V vdi show vm1/scratch
eq "vm show --json: 2 disks" 2 "$(jqv '.result.disks | length' V vm show vm1)"
has "vm show: disks table" '^root +0 +64M' V vm show vm1

# ---- data, snapshots, selectors ------------------------------------------------
check "write pattern 1 to vm1/root" D vm1/root write 1 0 1M
check "write pattern 2 to vm1/data (at 8M)" D vm1/data write 2 8M 1M
S1=$(jqv .result.name V snapshot create vm1 s1)
T1=$(jqv .result.time V snapshot show "vm1@$S1")
eq "snapshot create: full name with the UTC time tag" "s1_$(date -u -d "@$T1" +%Y%m%dT%H:%M:%S)" "$S1"
sleep 1
check "write pattern 3 to vm1/root" D vm1/root write 3 0 1M
S2=$(jqv .result.name V snapshot create vm1 s2)
T2=$(jqv .result.time V snapshot show "vm1@$S2")
sleep 1
check "write pattern 4 to vm1/root" D vm1/root write 4 0 1M
has "snapshot create (snap alias)" '^created snapshot vm1@s3_[0-9]{8}T[0-9:]{8} \(.*2 disk' V snap create vm1 s3
S3=$(V snapshot list vm1 -H -o snapshot | tail -1)
check "write pattern 5 to vm1/root" D vm1/root write 5 0 1M
refused "snapshot create: reserved name latest" 2 "" V snapshot create vm1 latest
refused "snapshot create: bad name" 2 "" V snapshot create vm1 a:b
refused "snapshot create: VM@x" 2 "VM NAME" V snapshot create vm1@s1 x
refused "snapshot create: unknown VM" 3 "" V snapshot create vm9 x

out_is "snapshot list: oldest first" "$(printf '%s\n%s\n%s' "$S1" "$S2" "$S3")" V snapshot list vm1 -H -o snapshot
out_is "snapshot list -S time" "$(printf '%s\n%s\n%s' "$S3" "$S2" "$S1")" V snapshot list vm1 -H -o snapshot -S time
out_is "snapshot list -s user_name -S time" "$(printf 'vm1@%s\n' "$S1" "$S2" "$S3" | head -c -1)" \
  V snapshot list vm1 -H -o name -s user_name -S time
out_is "snapshot list --limit 2" "$(printf '%s\n%s' "$S2" "$S3")" V snapshot list vm1 -H -o snapshot --limit 2
out_is "snapshot list --since T2 (epoch)" "$(printf '%s\n%s' "$S2" "$S3")" V snapshot list vm1 -H -o snapshot --since "@$T2"
ISO2=$(date -u -d "@$T2" +%Y-%m-%dT%H:%M:%S)
out_is "snapshot list --until T2 (ISO 8601)" "$(printf '%s\n%s' "$S1" "$S2")" V snapshot list vm1 -H -o snapshot --until "$ISO2"
out_is "snapshot list --since T2 --until T2" "$S2" V snapshot list vm1 -H -o snapshot --since "${ISO2}Z" --until "${ISO2}Z"
out_is "snapshot list --name s2" "$S2" V snapshot list vm1 -H -o snapshot --name s2
out_is "snapshot list without VM: every VM" "$(printf 'vm1@%s\n' "$S1" "$S2" "$S3" | head -c -1)" V snapshot list -H -o name
eq "snapshot list --json: count" 3 "$(jqv .result.count V snapshot list vm1)"
refused "snapshot list --since: bad time" 2 "" V snapshot list vm1 --since yesterday
refused "snapshot list --since: other time zone" 2 "" V snapshot list vm1 --since 2026-11-23T10:00:00+02:00
refused "snapshot list --limit -1" 2 "" V snapshot list vm1 --limit -1
eq "find latest" "$S3" "$(jqv .result.name V snapshot find vm1@latest)"
eq "find latest~0" "$S3" "$(jqv .result.name V snapshot find vm1@latest~0)"
eq "find latest~2" "$S1" "$(jqv .result.name V snapshot find vm1@latest~2)"
eq "find latest~2: rank 0 of 3" "0 3" "$(jqv '"\(.result.rank) \(.result.count)"' V snapshot find vm1@latest~2)"
refused "find latest~3: not found" 3 "" V snapshot find vm1@latest~3
eq "find before:T2" "$S2" "$(jqv .result.name V snapshot find "vm1@before:@$T2")"
eq "find before:T2-1s (tag form)" "$S1" "$(jqv .result.name V snapshot find "vm1@before:$(date -u -d "@$((T2 - 1))" +%Y%m%dT%H:%M:%S)")"
eq "find after:T1+1s (ISO)" "$S2" "$(jqv .result.name V snapshot find "vm1@after:$(date -u -d "@$((T1 + 1))" +%Y-%m-%dT%H:%M:%SZ)")"
refused "find before: a time before every snapshot" 3 "" V snapshot find "vm1@before:2000-01-01"
eq "find by user name" "$S2" "$(jqv .result.name V snapshot find vm1@s2)"
S2_UUID=$(jqv .result.uuid V snapshot show "vm1@$S2")
eq "show by UUID" "$S2" "$(jqv .result.name V snapshot show "$S2_UUID")"
eq "show vm1@UUID" "$S2" "$(jqv .result.name V snapshot show "vm1@$S2_UUID")"
has "snapshot show: disks with their exports" "vm1/root@$S1" V snapshot show "vm1@$S1"
refused "selector: unknown snapshot" 3 "" V snapshot show vm1@nosuch
refused "selector: bad syntax" 2 "" V snapshot show "vm1@latest~x"
refused "selector: ../x" 2 "" V snapshot show "vm1@../x"
refused "selector: unknown VM" 3 "" V snapshot show "vm9@latest"

check "vm1/root@s1 holds pattern 1" D "vm1/root@$S1" verify 1 0 1M
check "vm1/root@s2 holds pattern 3" D "vm1/root@$S2" verify 3 0 1M
check "vm1/root@latest holds pattern 4" D vm1/root@latest verify 4 0 1M
check "vm1/data@latest~1 holds pattern 2 at 8M" D vm1/data@latest~1 verify 2 8M 1M
check "vm1/root live holds pattern 5" D vm1/root verify 5 0 1M
check_fails "verify notices other data" 1 D vm1/root verify 4 0 1M
check_fails "snapshots are read-only" 1 D "vm1/root@$S1" write 9 0 4K

# ambiguous user name: a second "s1" one second later
sleep 1
S1B=$(jqv .result.name V snapshot create vm1 s1)
refused "ambiguous selector lists the candidates" 2 "ambiguous.*$S1.*$S1B|ambiguous.*$S1B.*$S1" V snapshot show vm1@s1
refused "ambiguous selector in vm clone" 2 "ambiguous" V vm clone vm1@s1 vmx
has "snapshot delete by full name" "^deleted snapshot $S1B" V snapshot delete "vm1@$S1B"
eq "the other s1 is left" "$S1" "$(jqv .result.name V snapshot find vm1@s1)"

# ---- rollback to a non-latest snapshot, keeping the newer ones -------------------
has "vm rollback -n" "^would roll back VM vm1 to snapshot $S1" V vm rollback vm1 "$S1" -n
check "rollback -n changed nothing" D vm1/root verify 5 0 1M
has "vm rollback VM SNAPSHOT" "^rolled back VM vm1 to snapshot $S1" V vm rollback vm1 "$S1"
check "rolled-back root holds pattern 1" D vm1/root verify 1 0 1M
check "rolled-back data holds pattern 2" D vm1/data verify 2 8M 1M
eq "newer snapshots are kept" 3 "$(V snapshot list vm1 -H -o name | wc -l)"
check "newest snapshot still holds pattern 4" D "vm1/root@$S3" verify 4 0 1M
has "snapshot rollback to latest~1" "to snapshot $S2" V snapshot rollback vm1@latest~1
check "root now holds pattern 3" D vm1/root verify 3 0 1M
has "vm rollback VM@SNAPSHOT" "to snapshot $S3" V vm rollback "vm1@$S3"
check "root now holds pattern 4" D vm1/root verify 4 0 1M
refused "rollback: unknown snapshot" 3 "" V vm rollback vm1 nosuch
refused "rollback: no snapshot named" 2 "which snapshot" V vm rollback vm1

# ---- clones and delete constraints -----------------------------------------------
has "vm clone" "^created VM vm2 .* from vm1@$S2" V vm clone "vm1@s2" vm2
refused "vm clone: not a snapshot" 2 "not a snapshot" V vm clone vm1 vmx
refused "vm clone: name taken" 1 "" V vm clone "vm1@$S2" vm2
check "clone vm2 sees pattern 3" D vm2/root verify 3 0 1M
check "write pattern 6 to vm2/root" D vm2/root write 6 0 1M
check "vm1@s2 unchanged by the clone's writes" D "vm1/root@$S2" verify 3 0 1M
out_is "vm2's parent" "$(printf 'parent\tvm1@%s' "$S2")" V vm show vm2 -H -o parent
refused "snapshot with a clone: refused, names the clone and --defer" 4 "vm2.*--defer" V snapshot delete vm1@s2
check "a second clone of s2" V vm clone "vm1@$S2" vm2b
refused "two clones: both named, then --defer" 4 "^vmsnap: snapshot $S2 has 2 clones: vm2, vm2b; use --defer to mark it deleted" \
  V snapshot delete vm1@s2
has "vm delete of a clone without snapshots" '^deleted vm vm2b' V vm delete vm2b
eq "refusal --json: DEPENDENTS with the clone" "DEPENDENTS vm2" \
  "$(V snapshot delete vm1@s2 --json 2>/dev/null | jq -r '"\(.error.code) \(.error.dependents[0].name)"')"
has "snapshot delete --defer -n" "^would mark deleted .*$S2" V snapshot delete vm1@s2 --defer -n
eq "dry run kept it" "$S2" "$(jqv .result.name V snapshot find vm1@s2)"

# clone of a clone
CS=$(jqv .result.name V snapshot create vm2 c1)
has "clone of a clone" "^created VM vm3 .* from vm2@$CS" V vm clone "vm2@$CS" vm3
check "vm3 sees pattern 6" D vm3/root verify 6 0 1M
has "vm tree vm1" "vm3" V vm tree vm1
has "vm list --tree" '@c1_' V vm list --tree

# deleting the middle of the tree (vm2: has a snapshot with a clone)
refused "vm delete: has snapshots, names --recursive" 4 "$CS.*--recursive" V vm delete vm2
refused "vm delete -r: a clone depends, names vm3 and --defer" 4 "vm3.*--defer" V vm delete vm2 -r
has "vm delete -r --defer -n" "^would mark deleted .* vm2 " V vm delete vm2 -r --defer -n
has "vm delete -r --defer" "^marked deleted .* vm2 " V vm delete vm2 -r --defer
out_is "vm list hides the deleted VM" "$(printf 'vm1\nvm3')" V vm list -H -o name -s name
out_is "vm list --all shows it" "$(printf 'vm1\tno\nvm2\tyes\nvm3\tno')" V vm list --all -H -o name,deleted -s name
has "vm tree --all marks it" 'vm2 \[deleted\]' V vm tree vm1 --all
refused "vm show of a deleted VM" 3 "" V vm show vm2
check "vm3 still reads pattern 6" D vm3/root verify 6 0 1M
has "snapshot delete vm1@s2 --defer" "^marked deleted .*$S2" V snapshot delete vm1@s2 --defer
refused "deferred snapshot hidden from selectors" 3 "" V snapshot show "vm1@$S2"
out_is "snapshot list --all shows it deleted" "$(printf '%s\tno\n%s\tyes\n%s\tno' "$S1" "$S2" "$S3")" \
  V snapshot list vm1 --all -H -o snapshot,deleted
# the last clone goes: vm3 -> c1 -> vm2 -> s2 are reclaimed, cascading upwards
has "deleting the last clone cascades" "^deleted .*$S2" V vm delete vm3
out_is "vm2 is gone for good" "$(printf 'vm1')" V vm list --all -H -o name
out_is "s2 is gone for good" "$(printf '%s\n%s' "$S1" "$S3")" V snapshot list vm1 --all -H -o snapshot
check "vm1's snapshots unharmed" D "vm1/root@$S1" verify 1 0 1M

# ---- exports, stats, check, JSON envelope -----------------------------------------
has "export list: live disk" '^vm1/root	' V export list -H -o name,readonly
has "export list: snapshot disk read-only" "^vm1/root@$S1	(true|yes)" V export list -H -p -o name,readonly
eq "stats --json: SR" sr1 "$(jqv '.result.srs[0].name' V stats)"
has "stats --vm" "$S1" V stats --vm vm1
has "stats --snapshot" 'referenced' V stats --snapshot vm1@latest
refused "stats: two targets" 2 "one of" V stats --vm vm1 --sr sr1
has "check" '^check: ok' V check
eq "check --json" true "$(jqv .result.ok V check)"
# With no daemon, check opens the SR itself: without --repair, and with
# --repair -n, it opens the pool read-only and writes nothing (no commit at
# open, the key log untouched), nor does it change the catalog.
sums() { (cd "$H" && sha256sum catalog.db) && (cd "$T/sr1" && sha256sum pool.vms keys.log); }
sums >"$T/sums.before"
for c in "check" "check --data" "check --repair -n"; do
  # shellcheck disable=SC2086
  V $c >"$T/out" 2>&1; rc=$?
  t_begin "vmsnap $c (no daemon) passes and writes nothing to the pool, its key log or the catalog"
  if [ $rc != 0 ]; then t_fail "exit $rc: $(tail -3 "$T/out")"
  elif sums | cmp -s - "$T/sums.before"; then t_ok
  else t_fail "changed: $(sums | diff "$T/sums.before" - | grep '^>' | tr '\n' ' ')"; fi
done
t_begin "--json: every answer is an envelope with output_version 1"
bad=0
for c in "sr list" "vm list" "vdi list" "snapshot list vm1" "export list" "vm tree" "stats"; do
  # shellcheck disable=SC2086
  [ "$(V $c --json | jq .output_version)" = 1 ] || bad=1
done
if [ $bad = 0 ]; then t_ok; else t_fail "a --json output lacks output_version 1"; fi
eq "--json error envelope" "NOTFOUND" "$(V vm show nosuch --json 2>/dev/null | jq -r .error.code)"
eq "--json usage error envelope" "INVALID" "$(V vm create x --sr sr1 --disk a:1Q --json 2>/dev/null | jq -r .error.code)"
t_begin "-H: no header, tab-separated"
out=$(V vm list -H)
if [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [ "$(printf '%s' "$out" | tr -cd '\t' | wc -c)" = 7 ]; then t_ok; else t_fail "$out"; fi
has "-p: epoch times" '^[0-9]{9,}$' V vm list -H -p -o created
has "human: ISO 8601 UTC times" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' V vm list -H -o created

# ---- the daemon socket: stale socket falls back, a live one is used ------------------
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$H/control.sock"
  out_is "stale control.sock: falls back to in process" "vm1" V vm list -H -o name
  rm -f "$H/control.sock"
  # A one-shot stand-in for vmsnapd: records the request line, answers one line.
  python3 - "$H/control.sock" "$T/request" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept(); f = c.makefile('rb')
open(sys.argv[2], 'wb').write(f.readline())
c.sendall(b'{"output_version":1,"result":{"vms":[{"name":"fromdaemon","disks":[]}]}}\n')
c.close()
EOF
  fake=$!
  on_exit "kill $fake"
  wait_for_socket "$H/control.sock" 10
  out_is "a listening control.sock gets the request" "fromdaemon" V vm list -H -o name --all
  eq "one JSON request per line" '{"op":"vm.list","args":{"all":true}}' "$(cat "$T/request")"
  wait "$fake" 2>/dev/null
  out_is "--no-daemon ignores the socket" "vm1" V vm list -H -o name --no-daemon
  rm -f "$H/control.sock"
  # Daemon answers are outside input too: garbage, silence, an error envelope.
  for answer in 'not json' '' '{"output_version":1,"result":[1]}' \
    '{"output_version":1,"error":{"code":"BUSY","message":"disk is open","busy":[{"kind":"vdi","uuid":"u","name":"root"}]}}'; do
    python3 - "$H/control.sock" "$answer" <<'EOF2' &
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
c, _ = s.accept(); c.makefile('rb').readline()
if sys.argv[2]: c.sendall(sys.argv[2].encode() + b'\n')
c.close()
EOF2
    fake=$!
    wait_for_socket "$H/control.sock" 10
    case $answer in
      'not json') refused "daemon answers garbage" 1 "malformed response" V vm list ;;
      '') refused "daemon closes without answering" 1 "closed the control connection" V vm list ;;
      *result*) refused "daemon answers a result that is not an object" 1 "without a result object" V vm list ;;
      *) refused "daemon's BUSY: exit 5, names the disk and --force" 5 "disk is open: root; retry when it is closed, or use --force" V vm rollback vm1 x ;;
    esac
    wait "$fake" 2>/dev/null
    rm -f "$H/control.sock"
  done
fi

# ---- through vmsnapd: the control socket, and BUSY for a disk open for writing ---------
if command -v vmsnapd >/dev/null 2>&1 && command -v qemu-io >/dev/null 2>&1; then
  vmsnapd --home "$H" --foreground --log-level warn 2>"$T/vmsnapd.log" &
  dpid=$!
  on_exit "kill $dpid"
  if wait_for_socket "$H/control.sock" 10 && wait_for_socket "$H/nbd.sock" 10; then
    has "daemon status" "^pid +$dpid$" V daemon status
    out_is "vm list through the daemon" "vm1" V vm list -H -o name
    S4=$(jqv .result.name V snapshot create vm1 viad)
    has "export list through the daemon" "^vm1/root@$S4$" V export list -H -o name
    # A client holds vm1/root open for writing while its stdin (a fifo) is open.
    mkfifo "$T/qin"
    qemu-io -f raw "nbd+unix:///vm1/root?socket=$H/nbd.sock" <"$T/qin" >/dev/null 2>&1 &
    qpid=$!
    on_exit "kill $qpid"
    exec 9>"$T/qin"
    for _ in $(seq 100); do
      [ "$(V daemon status -H -o clients 2>/dev/null)" = "$(printf 'clients\t1')" ] && break
      sleep 0.1
    done
    refused "rollback of a disk open for writing: BUSY, names --force" 5 "root.*--force" V vm rollback vm1 "$S4"
    refused "snapshot rollback: BUSY too" 5 "--force" V snapshot rollback "vm1@$S4" -n
    has "rollback --force goes ahead" "^rolled back VM vm1 to snapshot $S4" V vm rollback vm1 "$S4" --force
    exec 9>&-
    wait "$qpid" 2>/dev/null
    has "snapshot delete through the daemon" "^deleted snapshot $S4" V snapshot delete "vm1@$S4"
    has "daemon stop" "stopping" V daemon stop
    for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
    refused "daemon status without a daemon" 1 "no vmsnapd answers" V daemon status
    out_is "in process again after the daemon stopped" "vm1" V vm list -H -o name
  else
    t_begin "vmsnapd starts"; t_fail "$(cat "$T/vmsnapd.log")"
  fi
fi

# ---- a VM without disks, snapshots within one second, a relative SR directory -----------
has "vm create without disks" '^created VM quick' V vm create quick --sr sr1
for q in q1 q2 q3; do V snapshot create quick "$q" >/dev/null; done
out_is "-S time: newest first, also within one second" "$(printf 'q3\nq2\nq1')" V snapshot list quick -H -o user_name -S time
out_is "-s time: oldest first" "$(printf 'q1\nq2\nq3')" V snapshot list quick -H -o user_name -s time
has "vm delete -r of a VM without disks" '^deleted vm quick' V vm delete quick -r
has "sr create with a relative directory" '^created SR sr2' bash -c "cd '$T' && vmsnap --home '$H' sr create sr2 --size 64M rel_sr"
out_is "the relative directory was made absolute" "$(printf 'location\t%s/rel_sr' "$(cd "$T" && pwd -P)")" V sr show sr2 -H -o location
has "sr destroy of an empty SR" '^destroyed SR sr2' V sr destroy sr2

# ---- random command lines: never a crash, always a documented exit code -------------------
# Tokens mix valid nouns, verbs, names and selectors with junk; a separate
# home keeps the destructive ones away from the objects above.
SEED=${VMS_SEED:-$RANDOM}
echo "random command lines: VMS_SEED=$SEED" >&2
RANDOM=$SEED
H2=$T/home2
vmsnap --home "$H2" sr create rs --size 64M "$T/rs" >/dev/null
vmsnap --home "$H2" vm create rv --sr rs --disk d:1M >/dev/null
vmsnap --home "$H2" snapshot create rv a >/dev/null
tokens=(sr vm vdi disk snapshot snap export check stats version help daemon create list show find delete
  destroy clone rollback tree resize status rs rv rv2 rv/d rv@a rv@latest rv@latest~1 rv@latest~99
  rv@before:2026-01-01 rv@after:@0 "rv@" "@" "../x" "" "a b" "é" -1 1Q 4K 2G 1.5T 99999999999T
  -H -p -o -s -S -n -r -f -a -t -O --json --all --defer --force --recursive --dry-run --tree --sr
  --disk d2:1M --size --since --until --limit --name --home --no-daemon -- --help -h name,uuid frob
  "$(printf 'x%.0s' {1..300})")
bad=""
for ((k = 0; k < 80; k++)); do
  n=$((RANDOM % 6 + 1)); args=()
  for ((j = 0; j < n; j++)); do args+=("${tokens[RANDOM % ${#tokens[@]}]}"); done
  [ "${args[0]}" = daemon ] && continue   # would wait for no daemon: exit 1, fine but slow to type
  vmsnap --home "$H2" "${args[@]}" >"$T/rout" 2>"$T/rerr" </dev/null; rc=$?
  if [ $rc -gt 5 ] || grep -Eq 'AddressSanitizer|runtime error|LeakSanitizer' "$T/rerr" ||
     { [ $rc -ne 0 ] && ! grep -Eq '^(vmsnap|usage:)' "$T/rerr"; }; then
    bad="exit $rc for: vmsnap ${args[*]}: $(head -3 "$T/rerr")"; break
  fi
done
t_begin "80 random command lines (VMS_SEED=$SEED)"
if [ -z "$bad" ]; then t_ok; else t_fail "$bad"; fi

# ---- tear down -------------------------------------------------------------------------
refused "sr destroy: holds a VM" 4 "vm1" V sr destroy sr1
refused "vm delete: has snapshots" 4 "--recursive" V vm delete vm1
has "vm delete -r -n frees something" '^would free [0-9]' V vm delete vm1 -r -n -p
has "vm delete -r" '^deleted vm vm1' V vm delete vm1 -r
refused "vm gone" 3 "" V vm show vm1
has "sr destroy -n" '^would destroy SR sr1' V sr destroy sr1 -n
has "sr destroy" '^destroyed SR sr1' V sr destroy sr1
out_is "no SR left" "" V sr list -H
check "check after everything" V check

t_end
