#!/usr/bin/env python3
"""NBD_OPT_STARTTLS at the protocol level against a running vmsnapd.

usage: nbd_tls.py MODE HOST PORT EXPORT CERTDIR

MODE is the daemon's --tls mode (off, on, require); CERTDIR holds
ca-cert.pem, client-cert.pem and client-key.pem.  The checks follow the
"TLS support" section and NBD_OPT_STARTTLS of the protocol (doc/proto.md):

  require (FORCEDTLS): before TLS every option but STARTTLS and ABORT gets
    NBD_REP_ERR_TLS_REQD, NBD_OPT_EXPORT_NAME closes the connection;
  on, require: STARTTLS with data gets NBD_REP_ERR_INVALID, STARTTLS gets
    NBD_REP_ACK and the handshake goes on inside TLS; STARTTLS once TLS is
    up gets NBD_REP_ERR_INVALID; no TLS_REQD once TLS is up; the
    transmission phase runs over TLS (a READ and a WRITE round trip);
  on: plain-text options are served, and nothing negotiated before
    STARTTLS survives it (structured replies asked for in plain text are
    not used afterwards);
  off (NOTLS): STARTTLS gets NBD_REP_ERR_UNSUP, never TLS_REQD;
  refused: the client's certificate (CERTDIR) must not be accepted: the
    TLS handshake fails or the server ends the session before answering
    an option (Python's ssl sends the certificate whatever CAs the server
    names, where GnuTLS clients would send none);
  hold: upgrade, GO, print "connected" and keep the connection open until
    stdin closes (for daemon.status).
And, in every mode, the description NBD_OPT_INFO gives an export is the
one NBD_OPT_LIST gives it.

Each check prints "ok   ..." or "FAIL ..."; the exit status is the number
of failures.
"""
import os
import socket
import ssl
import struct
import sys

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED = 8
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
ERR_UNSUP, ERR_INVALID, ERR_TLS_REQD = 0x80000001, 0x80000003, 0x80000005
INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION = 0, 1, 2
CMD_READ, CMD_WRITE, CMD_DISC = 0, 1, 2

failures = 0


def check(what, cond, detail=""):
    global failures
    if cond:
        print("ok   " + what, flush=True)
    else:
        failures += 1
        print("FAIL " + what + (": " + detail if detail else ""), flush=True)


class Closed(Exception):
    pass


def recvn(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise Closed("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def connect(host, port):
    s = socket.create_connection((host, port), timeout=10)
    magic, opt, flags = struct.unpack(">QQH", recvn(s, 18))
    assert magic == NBDMAGIC and opt == IHAVEOPT, "not an NBD server"
    s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
    return s


def send_opt(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def reply(s):
    magic, opt, typ, ln = struct.unpack(">QIII", recvn(s, 20))
    assert magic == REP_MAGIC, "bad option reply magic"
    return opt, typ, recvn(s, ln) if ln else b""


def final(s, opt, data=b""):
    """Send an option, return (type, payload) of its last reply."""
    send_opt(s, opt, data)
    while True:
        o, typ, payload = reply(s)
        if typ != REP_INFO and typ != REP_SERVER:
            return typ, payload


def closed_by_server(s):
    s.settimeout(5)
    try:
        while True:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return True
    except socket.timeout:
        return False


def start_tls(s, certdir):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(os.path.join(certdir, "ca-cert.pem"))
    cert = os.path.join(certdir, "client-cert.pem")
    if os.path.exists(cert):
        ctx.load_cert_chain(cert, os.path.join(certdir, "client-key.pem"))
    return ctx.wrap_socket(s, server_hostname="localhost")


def info_payload(name, requests):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(requests)) + b"".join(
        struct.pack(">H", r) for r in requests)


def list_exports(s):
    """NBD_OPT_LIST -> {name: description}, or the error type."""
    send_opt(s, OPT_LIST)
    out = {}
    while True:
        _, typ, payload = reply(s)
        if typ == REP_ACK:
            return out
        if typ != REP_SERVER:
            return typ
        nl = struct.unpack(">I", payload[:4])[0]
        out[payload[4:4 + nl].decode()] = payload[4 + nl:].decode()


def info_description(s, name):
    """NBD_OPT_INFO asking for the description -> text or None."""
    send_opt(s, OPT_INFO, info_payload(name, [INFO_DESCRIPTION]))
    desc = None
    while True:
        _, typ, payload = reply(s)
        if typ == REP_INFO and struct.unpack(">H", payload[:2])[0] == INFO_DESCRIPTION:
            desc = payload[2:].decode()
        elif typ != REP_INFO:
            return desc if typ == REP_ACK else "error %#x" % typ


def check_descriptions(s, where):
    exports = list_exports(s)
    if not isinstance(exports, dict) or not exports:
        check("%s: NBD_OPT_LIST lists exports" % where, False, repr(exports))
        return
    bad = []
    for name, desc in sorted(exports.items()):
        got = info_description(s, name)
        if got != desc:
            bad.append("%s: LIST %r, INFO %r" % (name, desc, got))
    check("%s: NBD_OPT_INFO gives each of the %d exports the description NBD_OPT_LIST gives it"
          % (where, len(exports)), not bad, "; ".join(bad[:3]))


def go(s, name):
    send_opt(s, OPT_GO, info_payload(name, []))
    size = None
    while True:
        _, typ, payload = reply(s)
        if typ == REP_INFO and struct.unpack(">H", payload[:2])[0] == INFO_EXPORT:
            size = struct.unpack(">Q", payload[2:10])[0]
        elif typ != REP_INFO:
            return typ, size


def request(s, cmd, handle, offset, length, data=b""):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, cmd, handle, offset, length) + data)


def main():
    mode, host, port, export, certdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

    if mode == "hold":
        s = connect(host, port)
        final(s, OPT_STARTTLS)
        t = start_tls(s, certdir)
        typ, _ = go(t, export)
        print("connected" if typ == REP_ACK else "GO failed: %#x" % typ, flush=True)
        sys.stdin.read()
        request(t, CMD_DISC, 1, 0, 0)
        t.close()
        return

    if mode == "refused":
        s = connect(host, port)
        typ, _ = final(s, OPT_STARTTLS)
        if typ != REP_ACK:
            check("STARTTLS gets NBD_REP_ACK", False, "%#x" % typ)
            return
        try:
            t = start_tls(s, certdir)
            t.settimeout(10)
            exports = list_exports(t)
            check("a client certificate from another CA is refused", False, "served: %r" % exports)
        except (ssl.SSLError, OSError, Closed) as e:
            check("a client certificate from another CA is refused (%s)" % type(e).__name__, True)
        return

    if mode == "require":
        s = connect(host, port)
        for opt, name in ((OPT_LIST, "LIST"), (OPT_INFO, "INFO"), (OPT_GO, "GO"),
                          (OPT_STRUCTURED, "STRUCTURED_REPLY"), (99, "an unknown option")):
            data = info_payload(export, []) if opt in (OPT_INFO, OPT_GO) else b""
            typ, _ = final(s, opt, data)
            check("require, before TLS: %s gets NBD_REP_ERR_TLS_REQD" % name, typ == ERR_TLS_REQD, "%#x" % typ)
        typ, _ = final(s, OPT_STARTTLS, b"x")
        check("STARTTLS with data gets NBD_REP_ERR_INVALID", typ == ERR_INVALID, "%#x" % typ)
        typ, _ = final(s, OPT_ABORT)
        check("require, before TLS: ABORT is answered NBD_REP_ACK", typ == REP_ACK, "%#x" % typ)
        s.close()

        s = connect(host, port)
        send_opt(s, OPT_EXPORT_NAME, export.encode())
        check("require, before TLS: NBD_OPT_EXPORT_NAME closes the connection", closed_by_server(s))
        s.close()

    if mode == "off":
        s = connect(host, port)
        typ, _ = final(s, OPT_STARTTLS)
        check("off: STARTTLS gets NBD_REP_ERR_UNSUP", typ == ERR_UNSUP, "%#x" % typ)
        typ, _ = final(s, OPT_LIST)
        check("off: options are served in plain text (LIST)", typ == REP_ACK, "%#x" % typ)
        check_descriptions(s, "off")
        s.close()
        return

    # on / require: the upgrade.
    s = connect(host, port)
    if mode == "on":
        typ, _ = final(s, OPT_LIST)
        check("on: LIST is served in plain text", typ == REP_ACK, "%#x" % typ)
        typ, _ = final(s, OPT_STRUCTURED)
        check("on: STRUCTURED_REPLY accepted in plain text", typ == REP_ACK, "%#x" % typ)
    typ, _ = final(s, OPT_STARTTLS)
    check("%s: STARTTLS gets NBD_REP_ACK" % mode, typ == REP_ACK, "%#x" % typ)
    try:
        t = start_tls(s, certdir)
        check("%s: TLS handshake after the ACK (%s)" % (mode, t.version()), True)
    except (ssl.SSLError, OSError) as e:
        check("%s: TLS handshake after the ACK" % mode, False, str(e))
        return
    typ, _ = final(t, OPT_STARTTLS)
    check("%s: STARTTLS inside TLS gets NBD_REP_ERR_INVALID" % mode, typ == ERR_INVALID, "%#x" % typ)
    exports = list_exports(t)
    check("%s: LIST inside TLS is served (no TLS_REQD once TLS is up)" % mode,
          isinstance(exports, dict) and export in exports, repr(exports)[:200])
    check_descriptions(t, mode + ", inside TLS")
    typ, size = go(t, export)
    check("%s: GO inside TLS enters transmission" % mode, typ == REP_ACK and size, "%#x" % typ)
    if typ != REP_ACK:
        return
    # Transmission over TLS: a write, a read of it back.  In mode on the
    # structured replies asked for in plain text must be forgotten, so
    # the READ reply is a simple one.
    pattern = bytes((i * 7 + 3) & 0xFF for i in range(4096))
    off = size - 8192
    request(t, CMD_WRITE, 1, off, len(pattern), pattern)
    magic, err, handle = struct.unpack(">IIQ", recvn(t, 16))
    check("%s: WRITE over TLS answered" % mode, magic == SIMPLE_MAGIC and err == 0 and handle == 1,
          "magic %#x err %d" % (magic, err))
    request(t, CMD_READ, 2, off, len(pattern))
    magic, err, handle = struct.unpack(">IIQ", recvn(t, 16))
    data = recvn(t, len(pattern)) if magic == SIMPLE_MAGIC and err == 0 else b""
    check("%s: READ over TLS returns what was written" % mode, data == pattern, "magic %#x err %d" % (magic, err))
    if mode == "on":
        check("on: structured replies asked for before STARTTLS are not used after it (MUST)",
              magic == SIMPLE_MAGIC, "reply magic %#x" % magic)
    request(t, CMD_DISC, 3, 0, 0)
    check("%s: NBD_CMD_DISC closes the TLS session and the connection" % mode, closed_by_server(t))
    t.close()


if __name__ == "__main__":
    try:
        main()
    except (Closed, OSError, AssertionError, struct.error) as e:
        check("protocol exchange", False, "%s: %s" % (type(e).__name__, e))
    sys.exit(min(failures, 100))
