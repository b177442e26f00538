#!/usr/bin/env python3
"""Measure an NBD export's open time: connect to a Unix socket (retrying
until the server is up), negotiate fixed-newstyle NBD_OPT_GO, read the first
block and disconnect.  Prints the milliseconds elapsed since --since-ns (a
CLOCK_REALTIME stamp taken when the server was launched) or since the probe
started.  Every field the server sends is bounds-checked; any protocol
violation or error reply is reported on stderr with exit status 1.

Stdlib only, so it runs wherever the harness runs."""

import argparse
import os
import socket
import struct
import sys
import time

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = b"IHAVEOPT"
OPT_REPLY_MAGIC = 0x3E889045565A9
NBD_OPT_GO = 7
NBD_OPT_ABORT = 2
NBD_REP_ACK = 1
NBD_REP_INFO = 3
NBD_REP_FLAG_ERROR = 1 << 31
NBD_INFO_EXPORT = 0
NBD_FLAG_FIXED_NEWSTYLE = 1
NBD_FLAG_NO_ZEROES = 2
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
NBD_CMD_READ = 0
NBD_CMD_DISC = 2
MAX_OPTION_REPLY = 64 * 1024


class ProbeError(Exception):
    pass


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("server closed the connection (wanted %d more bytes)" % (n - len(buf)))
        buf += chunk
    return bytes(buf)


def negotiate(sock, export):
    magic, opt = recv_exact(sock, 8), recv_exact(sock, 8)
    if magic != NBDMAGIC or opt != IHAVEOPT:
        raise ProbeError("not a fixed-newstyle NBD server (magic %r %r)" % (magic, opt))
    (hflags,) = struct.unpack(">H", recv_exact(sock, 2))
    if not hflags & NBD_FLAG_FIXED_NEWSTYLE:
        raise ProbeError("server lacks fixed newstyle negotiation")
    cflags = NBD_FLAG_FIXED_NEWSTYLE | (hflags & NBD_FLAG_NO_ZEROES)
    sock.sendall(struct.pack(">I", cflags))
    name = export.encode()
    payload = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    sock.sendall(IHAVEOPT + struct.pack(">II", NBD_OPT_GO, len(payload)) + payload)
    size = None
    while True:
        rmagic, ropt, rtype, rlen = struct.unpack(">QIII", recv_exact(sock, 20))
        if rmagic != OPT_REPLY_MAGIC or ropt != NBD_OPT_GO:
            raise ProbeError("bad option reply header (magic %#x option %d)" % (rmagic, ropt))
        if rlen > MAX_OPTION_REPLY:
            raise ProbeError("option reply too long (%d bytes)" % rlen)
        data = recv_exact(sock, rlen)
        if rtype & NBD_REP_FLAG_ERROR:
            raise ProbeError("NBD_OPT_GO refused (reply %#x): %s" % (rtype, data.decode(errors="replace")))
        if rtype == NBD_REP_ACK:
            break
        if rtype == NBD_REP_INFO and rlen >= 2:
            (itype,) = struct.unpack(">H", data[:2])
            if itype == NBD_INFO_EXPORT:
                if rlen != 12:
                    raise ProbeError("NBD_INFO_EXPORT of %d bytes" % rlen)
                size, _tflags = struct.unpack(">QH", data[2:])
    if size is None:
        raise ProbeError("server never sent the export size")
    return size


def read_first_block(sock, size, length):
    length = min(length, size)
    if length == 0:
        return
    handle = 0x7072_6F62_6521  # "probe!"
    sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, NBD_CMD_READ, handle, 0, length))
    magic, error, rhandle = struct.unpack(">IIQ", recv_exact(sock, 16))
    if magic != SIMPLE_REPLY_MAGIC or rhandle != handle:
        raise ProbeError("bad read reply (magic %#x handle %#x)" % (magic, rhandle))
    if error:
        raise ProbeError("first read failed with NBD error %d" % error)
    recv_exact(sock, length)
    sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, NBD_CMD_DISC, handle + 1, 0, 0))


def alive(pid):
    """True while PID exists and is not a zombie (a dead child of the shell
    that started the server stays a zombie until waited for)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


def read_pid(path):
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--export", default="")
    ap.add_argument("--since-ns", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server")
    ap.add_argument("--pid", type=int, default=0, help="give up as soon as this server process is gone")
    ap.add_argument("--pid-file", help="file that will hold the server's pid (read once it appears)")
    ap.add_argument("--ready-fifo", help="write a line to this FIFO once started; then print the end "
                    "time (CLOCK_REALTIME ns) instead of the elapsed milliseconds")
    ap.add_argument("--read", type=int, default=2048, help="bytes of the first read")
    ap.add_argument("--print-size", action="store_true")
    args = ap.parse_args()
    if args.ready_fifo:
        with open(args.ready_fifo, "w", encoding="ascii") as f:
            f.write("ready\n")
    start = args.since_ns or time.time_ns()
    deadline = time.monotonic() + args.timeout
    pid = args.pid
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(args.socket)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if pid <= 0 and args.pid_file:
                pid = read_pid(args.pid_file)
            if pid > 0 and not alive(pid):
                print("nbdprobe: server process %d exited before %s accepted a connection" % (pid, args.socket),
                      file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print("nbdprobe: no server on %s after %.0f s" % (args.socket, args.timeout), file=sys.stderr)
                return 1
            time.sleep(0.0005)
    try:
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        size = negotiate(sock, args.export)
        read_first_block(sock, size, args.read)
    except (ProbeError, OSError, struct.error) as e:
        print("nbdprobe: %s: %s" % (args.socket, e), file=sys.stderr)
        return 1
    finally:
        sock.close()
    end = time.time_ns()
    if args.print_size:
        print(size)
    elif args.ready_fifo:
        print(end)
    else:
        print("%.3f" % ((end - start) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
