#!/bin/bash
# NBD over TLS (issue 6, item 6): vmsnapd --tls off|on|require with X.509
# certificates (certtool: a CA, a server certificate for localhost and
# 127.0.0.1, a client certificate) and with PSK (psktool), driven by real
# clients: nbdinfo, nbdcopy (libnbd nbds:// URIs), qemu-img with
# tls-creds-x509 / tls-creds-psk objects, and nbd_tls.py for the protocol's
# STARTTLS rules (TLS_REQD, EXPORT_NAME closing, STARTTLS twice, state reset)
# and for INFO and LIST giving an export the same description.
#   - start-up fails with a clear message on bad or missing credentials;
#   - require: TLS clients are served, data goes in and out intact; a plain
#     client is refused with a log line while TLS clients keep working; the
#     Unix socket stays usable in plain text (docs/vmsnapd.md, "TLS");
#   - on: plain and TLS clients are both served;
#   - --tls-verify-peer: a client without a certificate, or with one from
#     another CA, is refused; one with a certificate of the CA is served;
#   - PSK: the right key is served, a wrong key or an unknown user refused.
. "$(dirname "$0")/lib.sh" "$@"
need certtool psktool nbdinfo nbdcopy qemu-img python3 cmp

need_built
HOME_DIR=$T/home
LOG=$T/vmsnapd.log  # one per daemon start: vmsnapd-1.log, ...
NSTART=0
PKI=$T/pki          # the server's directory and the client's (client-cert.pem, client-key.pem)
NOCERT=$T/nocert    # a client that trusts the CA but has no certificate
ROGUE=$T/rogue      # a client whose certificate comes from another CA
PROTO=$TOP/tests/integration/nbd_tls.py

# ---- credentials ------------------------------------------------------------------------
mkdir -p "$PKI" "$NOCERT" "$ROGUE"
gen() {  # gen DIR NAME TEMPLATE-LINES...: NAME-key.pem, NAME-cert.pem signed by DIR's CA (or self-signed for ca)
  local dir=$1 name=$2; shift 2
  printf '%s\n' "$@" >"$dir/$name.info"
  certtool --generate-privkey --outfile "$dir/$name-key.pem" >/dev/null 2>&1 || return 1
  if [ "$name" = ca ]; then
    certtool --generate-self-signed --load-privkey "$dir/ca-key.pem" --template "$dir/ca.info" \
      --outfile "$dir/ca-cert.pem" >/dev/null 2>&1
  else
    certtool --generate-certificate --load-ca-certificate "$dir/ca-cert.pem" --load-ca-privkey "$dir/ca-key.pem" \
      --load-privkey "$dir/$name-key.pem" --template "$dir/$name.info" --outfile "$dir/$name-cert.pem" >/dev/null 2>&1
  fi
}
CA_T=('cn = "vmsnap test CA"' ca cert_signing_key 'expiration_days = 30')
t_begin "certtool: a CA, a server certificate (localhost, 127.0.0.1), client certificates"
if gen "$PKI" ca "${CA_T[@]}" &&
   gen "$PKI" server 'organization = "vmsnap test"' 'cn = localhost' 'dns_name = localhost' \
     'ip_address = 127.0.0.1' tls_www_server encryption_key signing_key 'expiration_days = 30' &&
   gen "$PKI" client 'organization = "vmsnap test"' 'cn = client1' tls_www_client encryption_key signing_key \
     'expiration_days = 30' &&
   gen "$ROGUE" ca 'cn = "some other CA"' ca cert_signing_key 'expiration_days = 30' &&
   gen "$ROGUE" client 'cn = client1' tls_www_client encryption_key signing_key 'expiration_days = 30'; then
  cp "$PKI/ca-cert.pem" "$NOCERT/"
  # The rogue client trusts the real server, but its own certificate
  # comes from another CA.
  mv "$ROGUE/ca-cert.pem" "$ROGUE/rogue-ca.pem" && cp "$PKI/ca-cert.pem" "$ROGUE/"
  t_ok
else
  t_fail "certtool failed"; t_end
fi
PSKDIR=$T/psk; BADPSK=$T/badpsk; BOBPSK=$T/bobpsk
mkdir -p "$PSKDIR" "$BADPSK" "$BOBPSK"
check "psktool: keys for alice (and a wrong one, and bob's)" sh -c \
  "psktool -u alice -p '$PSKDIR/keys.psk' && psktool -u alice -p '$BADPSK/keys.psk' && psktool -u bob -p '$BOBPSK/keys.psk'"

# ---- a catalog with a disk and a snapshot ------------------------------------------------
check "native SR, a VM with a 64 MiB disk, a snapshot (vmsnap --home)" sh -c \
  "'$VMSNAP' --home '$HOME_DIR' sr create sr1 --size 512M '$T/sr' && '$VMSNAP' --home '$HOME_DIR' vm create vm --sr sr1 --disk disk:64M && '$VMSNAP' --home '$HOME_DIR' snapshot create vm s1"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DPID=
PORT=
start_daemon() {  # start_daemon TLS-ARGS...: the catalog on its Unix socket and on TCP 127.0.0.1:$PORT
  PORT=$(free_port)
  NSTART=$((NSTART + 1))
  LOG=$T/vmsnapd-$NSTART.log
  "$VMSNAPD" --foreground --home "$HOME_DIR" --listen "127.0.0.1:$PORT" --log-file "$LOG" "$@" \
    2>>"$T/vmsnapd.stderr" &
  DPID=$!
  on_exit "kill $DPID 2>/dev/null"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    kill -0 "$DPID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop_daemon() { kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; DPID=; }
uri() { printf 'nbds://localhost:%s/%s?tls-certificates=%s' "$PORT" "$1" "${2:-$PKI}"; }
qemu_opts() {  # qemu_opts EXPORT: --image-opts for the TLS export at $PORT with object tls0
  printf 'driver=nbd,server.type=inet,server.host=localhost,server.port=%s,export=%s,tls-creds=tls0' "$PORT" "$1"
}
X509_OBJ="tls-creds-x509,id=tls0,dir=$PKI,endpoint=client"
log_has() { grep -q -- "$1" "$LOG"; }
run_proto() {  # run_proto MODE: nbd_tls.py against the daemon at $PORT, its lines as checks
  python3 "$PROTO" "$1" 127.0.0.1 "$PORT" vm/disk "$PKI" >"$T/proto.out" 2>&1
  local rc=$? line
  while IFS= read -r line; do
    case $line in
      "ok   "*) t_begin "${line#ok   }"; t_ok ;;
      "FAIL "*) t_begin "${line#FAIL }"; t_fail ;;
    esac
  done <"$T/proto.out"
  [ "$rc" = 0 ] || grep -q '^FAIL' "$T/proto.out" || { t_begin "nbd_tls.py $1"; t_fail "exit $rc: $(tail -3 "$T/proto.out")"; }
}

# ---- start-up refusals -------------------------------------------------------------------
truncate -s 1M "$T/raw.img"
refused() {  # refused WHAT PATTERN ARGS...: vmsnapd exits 2 at once with PATTERN on stderr
  local what=$1 pat=$2; shift 2
  t_begin "start refused: $what"
  local out rc
  out=$(timeout 10 "$VMSNAPD" --foreground --raw "x=$T/raw.img" --socket "$T/refused.sock" "$@" 2>&1); rc=$?
  if [ "$rc" = 2 ] && grep -q -- "$pat" <<<"$out"; then t_ok; else t_fail "exit $rc: $out"; fi
}
mkdir -p "$T/empty" "$T/badkey"
cp "$PKI/ca-cert.pem" "$PKI/server-cert.pem" "$T/badkey/"
echo "not a key" >"$T/badkey/server-key.pem"
printf 'alice:0123456789abcdef\nmallory:xyzw\n' >"$T/bad.psk"
: >"$T/empty.psk"
refused "--tls require without credentials" "needs credentials" --tls require
refused "--tls on without credentials" "needs credentials" --tls on
refused "an unknown --tls value" "bad --tls value" --tls maybe
refused "--tls-certificates with TLS off" "TLS is off" --tls-certificates "$PKI"
refused "a certificate directory without ca-cert.pem" "ca-cert.pem: No such file" --tls require --tls-certificates "$T/empty"
refused "a certificate directory that does not exist" "No such file" --tls require --tls-certificates "$T/nowhere"
refused "a server key that is not a key" "server-key.pem" --tls require --tls-certificates "$T/badkey"
refused "a PSK file with a bad line (named, with its number)" "line 2: .*hexadecimal" --tls require --tls-psk "$T/bad.psk"
refused "an empty PSK file" "no key" --tls require --tls-psk "$T/empty.psk"
refused "a missing PSK file" "No such file" --tls require --tls-psk "$T/none.psk"
refused "X.509 and PSK at once" "not both" --tls require --tls-certificates "$PKI" --tls-psk "$PSKDIR/keys.psk"
refused "--tls-verify-peer with PSK" "needs --tls-certificates" --tls require --tls-psk "$PSKDIR/keys.psk" --tls-verify-peer
t_begin "a refused start binds nothing"
if [ -e "$T/refused.sock" ]; then t_fail "$T/refused.sock exists"; else t_ok; fi

# ---- --tls require, X.509 -----------------------------------------------------------------
t_begin "vmsnapd --tls require --tls-certificates starts"
if start_daemon --tls require --tls-certificates "$PKI"; then t_ok; else t_fail "$(tail -3 "$LOG")"; t_end; fi

t_begin "nbdinfo over TLS (nbds://localhost) sees the disk, 64 MiB, TLS negotiated"
out=$(nbdinfo "$(uri vm/disk)" 2>&1)
grep -q 'with TLS' <<<"$out" && grep -q 'export-size: 67108864' <<<"$out" && t_ok || t_fail "$out"

t_begin "nbdinfo --list over TLS lists the disk and its snapshot"
out=$(nbdinfo --list --json "$(uri '')" 2>&1 |
  python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["TLS"], " ".join(sorted(e["export-name"].split("@")[0] for e in j["exports"])))' 2>&1)
[ "$out" = "True vm/disk vm/disk" ] && t_ok || t_fail "$out"

t_begin "qemu-img info with tls-creds-x509 (--image-opts)"
out=$(qemu-img info --object "$X509_OBJ" --image-opts "$(qemu_opts vm/disk)" 2>&1)
grep -q 'virtual size: 64 MiB' <<<"$out" && t_ok || t_fail "$out"

head -c $((8 << 20)) /dev/urandom >"$T/data.bin"
check "nbdcopy a file into the disk over TLS" nbdcopy "$T/data.bin" "$(uri vm/disk)"
t_begin "nbdcopy the disk out over TLS: what went in comes out (cmp)"
if nbdcopy "$(uri vm/disk)" "$T/out.bin" 2>"$T/err" && cmp -n $((8 << 20)) "$T/data.bin" "$T/out.bin"; then
  t_ok; else t_fail "$(cat "$T/err")"; fi
t_begin "qemu-img convert over TLS gives the same image as nbdcopy"
if qemu-img convert -O raw --object "$X509_OBJ" --image-opts "$(qemu_opts vm/disk)" "$T/conv.bin" 2>"$T/err" &&
   cmp "$T/conv.bin" "$T/out.bin"; then t_ok; else t_fail "$(cat "$T/err")"; fi
t_begin "qemu-img convert into the disk over TLS, read back with nbdcopy"
head -c $((4 << 20)) /dev/urandom >"$T/data2.bin"
truncate -s 64M "$T/data2.bin"
if qemu-img convert -n -f raw "$T/data2.bin" --target-image-opts --object "$X509_OBJ" "$(qemu_opts vm/disk)" 2>"$T/err" &&
   nbdcopy "$(uri vm/disk)" "$T/out2.bin" 2>>"$T/err" && cmp "$T/data2.bin" "$T/out2.bin"; then
  t_ok; else t_fail "$(cat "$T/err")"; fi

t_begin "a plain nbd:// client is refused, with a log line"
if ! nbdinfo "nbd://localhost:$PORT/vm/disk" >"$T/plain.out" 2>&1; then
  sleep 0.2
  log_has "TLS is required" && t_ok || t_fail "no log line: $(tail -3 "$LOG")"
else
  t_fail "served in plain text: $(cat "$T/plain.out")"
fi
t_begin "a plain qemu-img (no tls-creds) is refused"
if qemu-img info --image-opts "driver=nbd,server.type=inet,server.host=localhost,server.port=$PORT,export=vm/disk" \
     >"$T/plain.out" 2>&1; then t_fail "served: $(cat "$T/plain.out")"; else t_ok; fi
check "the TLS client still works after the refusals" nbdinfo --size "$(uri vm/disk)"
t_begin "the Unix socket is not forced: plain nbd+unix is served (its mode is its access control)"
out=$(nbdinfo --size "nbd+unix:///vm/disk?socket=$HOME_DIR/nbd.sock" 2>&1)
[ "$out" = 67108864 ] && t_ok || t_fail "$out"
t_begin "the Unix socket offers TLS (nbds+unix)"
out=$(nbdinfo "nbds+unix:///vm/disk?socket=$HOME_DIR/nbd.sock&tls-certificates=$PKI" 2>&1)
grep -q 'with TLS' <<<"$out" && t_ok || t_fail "$out"

run_proto require

t_begin "daemon.status shows a TLS connection as such"
mkfifo "$T/hold.in"
python3 "$PROTO" hold 127.0.0.1 "$PORT" vm/disk "$PKI" <"$T/hold.in" >"$T/hold.out" 2>&1 &
HOLD=$!
exec 8>"$T/hold.in"  # the holder runs until this closes
for _ in $(seq 100); do grep -q connected "$T/hold.out" 2>/dev/null && break; sleep 0.1; done
st=$(python3 "$TOP/tests/integration/nbd_ctl.py" "$HOME_DIR/control.sock" '{"op":"daemon.status"}' 2>&1)
got=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print([(c["phase"], c["tls"]) for c in j["result"]["connections"]])' "$st" 2>&1)
exec 8>&-
wait "$HOLD"
[ "$got" = "[('transmission', True)]" ] && t_ok || t_fail "$got; $(cat "$T/hold.out")"
stop_daemon

# ---- --tls on: both kinds of clients ------------------------------------------------------
t_begin "vmsnapd --tls on starts"
if start_daemon --tls on --tls-certificates "$PKI"; then t_ok; else t_fail "$(tail -3 "$LOG")"; t_end; fi
t_begin "--tls on: a plain nbd:// client is served"
out=$(nbdinfo "nbd://localhost:$PORT/vm/disk" 2>&1)
grep -q 'without TLS' <<<"$out" && t_ok || t_fail "$out"
t_begin "--tls on: a TLS client is served"
out=$(nbdinfo "$(uri vm/disk)" 2>&1)
grep -q 'with TLS' <<<"$out" && t_ok || t_fail "$out"
run_proto on
stop_daemon

# ---- --tls off (the default) ----------------------------------------------------------------
t_begin "vmsnapd without --tls starts"
if start_daemon; then t_ok; else t_fail "$(tail -3 "$LOG")"; t_end; fi
run_proto off
check_fails "--tls off: a TLS client is refused (STARTTLS unsupported)" 1 nbdinfo --size "$(uri vm/disk)"
stop_daemon

# ---- --tls-verify-peer --------------------------------------------------------------------
t_begin "vmsnapd --tls require --tls-verify-peer starts"
if start_daemon --tls require --tls-certificates "$PKI" --tls-verify-peer; then t_ok; else t_fail "$(tail -3 "$LOG")"; t_end; fi
check "a reference copy of the disk through the Unix socket" \
  nbdcopy "nbd+unix:///vm/disk?socket=$HOME_DIR/nbd.sock" "$T/ref.bin"
# A TLS copy runs while the refused clients come and go.
nbdcopy "$(uri vm/disk)" "$T/bg.bin" 2>"$T/bg.err" & BG=$!
t_begin "verify-peer: a client with a certificate of the CA is served (its name is logged)"
out=$(nbdinfo --size "$(uri vm/disk)" 2>&1)
[ "$out" = 67108864 ] && log_has "client CN=client1" && t_ok || t_fail "$out"
t_begin "verify-peer: a client without a certificate is refused, with a log line"
if nbdinfo --size "$(uri vm/disk "$NOCERT")" >"$T/nc.out" 2>&1; then t_fail "served: $(cat "$T/nc.out")"
else sleep 0.2; log_has "must present a certificate" && t_ok || t_fail "no log line: $(tail -3 "$LOG")"; fi
# GnuTLS clients (libnbd, QEMU) send no certificate the server's CA did
# not issue, so the refusal is "certificate required"; Python's ssl sends
# it anyway, and the server's verification refuses it.
check_fails "verify-peer: nbdinfo with a certificate from another CA is refused" 1 nbdinfo --size "$(uri vm/disk "$ROGUE")"
t_begin "verify-peer: a client that presents a certificate from another CA is refused, with a log line"
if python3 "$PROTO" refused 127.0.0.1 "$PORT" vm/disk "$ROGUE" >"$T/rg.out" 2>&1; then
  sleep 0.2; log_has "refused: TLS handshake failed: .*issuer is unknown" && t_ok || t_fail "no log line: $(tail -3 "$LOG")"
else
  t_fail "$(cat "$T/rg.out")"
fi
check "verify-peer: qemu-img with the client certificate is served" \
  qemu-img info --object "$X509_OBJ" --image-opts "$(qemu_opts vm/disk)"
t_begin "the TLS copy running meanwhile finished intact"
if wait "$BG" && cmp "$T/bg.bin" "$T/ref.bin"; then t_ok; else t_fail "$(cat "$T/bg.err")"; fi
stop_daemon

# ---- PSK ------------------------------------------------------------------------------------
t_begin "vmsnapd --tls require --tls-psk starts"
if start_daemon --tls require --tls-psk "$PSKDIR/keys.psk"; then t_ok; else t_fail "$(tail -3 "$LOG")"; t_end; fi
psk_uri() { printf 'nbds://%s@localhost:%s/%s?tls-psk-file=%s' "$1" "$PORT" "$2" "$3"; }
t_begin "PSK: nbdinfo as alice with her key is served (user logged)"
out=$(nbdinfo "$(psk_uri alice vm/disk "$PSKDIR/keys.psk")" 2>&1)
grep -q 'with TLS' <<<"$out" && log_has "PSK user alice" && t_ok || t_fail "$out"
t_begin "PSK: nbdcopy out as alice gives the disk's content"
if nbdcopy "$(psk_uri alice vm/disk "$PSKDIR/keys.psk")" "$T/psk.bin" 2>"$T/err" && cmp "$T/psk.bin" "$T/ref.bin"; then
  t_ok; else t_fail "$(cat "$T/err")"; fi
t_begin "PSK: qemu-img info with tls-creds-psk (username=alice)"
out=$(qemu-img info --object "tls-creds-psk,id=tls0,dir=$PSKDIR,username=alice,endpoint=client" \
  --image-opts "$(qemu_opts vm/disk)" 2>&1)
grep -q 'virtual size: 64 MiB' <<<"$out" && t_ok || t_fail "$out"
t_begin "PSK: a wrong key is refused, with a log line"
if nbdinfo --size "$(psk_uri alice vm/disk "$BADPSK/keys.psk")" >"$T/bad.out" 2>&1; then t_fail "served"
else sleep 0.2; log_has "key does not match" && t_ok || t_fail "no log line: $(tail -3 "$LOG")"; fi
t_begin "PSK: an unknown user is refused, with a log line"
if nbdinfo --size "$(psk_uri bob vm/disk "$BOBPSK/keys.psk")" >"$T/bob.out" 2>&1; then t_fail "served"
else sleep 0.2; log_has "PSK user 'bob' is not in the key file" && t_ok || t_fail "no log line: $(tail -3 "$LOG")"; fi
check_fails "PSK: a plain client is refused" 1 nbdinfo --size "nbd://localhost:$PORT/vm/disk"
check "PSK: alice is still served after the refusals" nbdinfo --size "$(psk_uri alice vm/disk "$PSKDIR/keys.psk")"
stop_daemon

t_begin "no sanitizer report from any daemon"
touch "$T/vmsnapd.stderr"
if grep -q -E 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$T"/vmsnapd*.log "$T/vmsnapd.stderr"; then
  t_fail "$(grep -h -m3 -E 'Sanitizer|runtime error' "$T/vmsnapd.stderr")"; else t_ok; fi
t_end
