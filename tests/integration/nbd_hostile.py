#!/usr/bin/env python3
"""Hostile and malformed NBD traffic against a running vmsnapd.

usage: nbd_hostile.py SOCKET EXPORT RO_EXPORT

EXPORT must be a writable export whose content this script never changes
(every write it sends is invalid or cut short); the caller checks the
backing file afterwards.  RO_EXPORT is a read-only export.  Each check
prints "ok   ..." or "FAIL ..."; the exit status is the number of failures
(capped at 100).  Every check ends by proving that a fresh, well-behaved
client is still served.
"""
import os
import socket
import struct
import sys
import threading
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED, OPT_LIST_META, OPT_SET_META = 8, 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META = 1, 2, 3, 4
ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN, ERR_TOO_BIG = (0x80000000 | 1, 0x80000000 | 3,
                                                     0x80000000 | 6, 0x80000000 | 9)
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_ZEROES, CMD_BS = range(8)
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_REQ_ONE, FLAG_FAST_ZERO = 1, 2, 4, 8, 16
EPERM, EIO, EINVAL, ENOSPC, ENOTSUP = 1, 5, 22, 28, 95

SOCK = EXPORT = RO_EXPORT = None
failures = 0


class Closed(Exception):
    pass


def recvn(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise Closed("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def closed_by_server(s, timeout=5.0):
    """True when the server closes the connection (EOF or reset)."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class Client:
    def __init__(self, structured=True, meta=False, export=None, go=True):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(20)
        self.s.connect(SOCK)
        magic, opt, hflags = struct.unpack(">QQH", recvn(self.s, 18))
        assert magic == NBDMAGIC and opt == IHAVEOPT, "bad server greeting"
        self.s.sendall(struct.pack(">I", 3))  # fixed newstyle + no zeroes
        self.structured = False
        self.size = None
        if structured:
            typ, _ = self.option(OPT_STRUCTURED, b"")
            assert typ == REP_ACK
            self.structured = True
        name = (EXPORT if export is None else export).encode()
        if meta:
            q = b"base:allocation"
            typ, _ = self.option(OPT_SET_META, struct.pack(">I", len(name)) + name +
                                 struct.pack(">II", 1, len(q)) + q)
            assert typ == REP_ACK, "meta context refused"
        if go:
            typ, infos = self.option(OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
            assert typ == REP_ACK, "GO refused: %#x" % typ
            for data in infos:
                if struct.unpack(">H", data[:2])[0] == 0:
                    self.size, self.tflags = struct.unpack(">QH", data[2:12])

    def send_option(self, opt, data, length=None):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data) if length is None else length) + data)

    def option(self, opt, data):
        """Send an option, collect the replies up to the final one.
        Returns (final type, [payloads of the intermediate replies])."""
        self.send_option(opt, data)
        items = []
        while True:
            magic, ropt, typ, ln = struct.unpack(">QIII", recvn(self.s, 20))
            assert magic == REP_MAGIC and ropt == opt, "bad option reply"
            payload = recvn(self.s, ln)
            if typ in (REP_SERVER, REP_INFO, REP_META):
                items.append(payload)
                continue
            return typ, items

    def request(self, typ, offset=0, length=0, flags=0, handle=1, payload=b"", magic=REQ_MAGIC):
        self.s.sendall(struct.pack(">IHHQQI", magic, flags, typ, handle, offset, length) + payload)

    def reply(self, read_len=0):
        """Read one complete reply.  Returns (handle, error, data or chunks)."""
        magic = struct.unpack(">I", recvn(self.s, 4))[0]
        if magic == SIMPLE_MAGIC:
            err, handle = struct.unpack(">IQ", recvn(self.s, 12))
            data = recvn(self.s, read_len) if (err == 0 and read_len) else b""
            return handle, err, data
        assert magic == STRUCT_MAGIC, "bad reply magic %#x" % magic
        err, data, chunks = 0, b"", []
        while True:
            flags, typ, handle, ln = struct.unpack(">HHQI", recvn(self.s, 16))
            payload = recvn(self.s, ln)
            if typ & 0x8000:
                err = struct.unpack(">I", payload[:4])[0]
            elif typ == 1:
                data += payload[8:]
            elif typ == 5:
                chunks.append(payload)
            if flags & 1:
                return handle, err, data if not chunks else chunks
            magic = struct.unpack(">I", recvn(self.s, 4))[0]
            assert magic == STRUCT_MAGIC

    def read(self, offset, length, handle=7):
        self.request(CMD_READ, offset, length, handle=handle)
        h, err, data = self.reply(length)
        assert h == handle
        return err, data

    def close(self):
        try:
            self.request(CMD_DISC)
        except OSError:
            pass
        self.s.close()


def served():
    """A fresh, well-behaved client reads the first sector."""
    c = Client()
    err, data = c.read(0, 512)
    c.close()
    return err == 0 and len(data) == 512


def check(name):
    def deco(fn):
        global failures
        try:
            why = fn()
            if why is None and not served():
                why = "a well-behaved client was not served afterwards"
        except Exception as e:  # noqa: BLE001 - any exception fails the check
            why = "%s: %s" % (type(e).__name__, e)
        if why:
            failures += 1
            print("FAIL %s: %s" % (name, why), flush=True)
        else:
            print("ok   %s" % name, flush=True)
        return fn
    return deco


def main():
    global SOCK, EXPORT, RO_EXPORT
    SOCK, EXPORT, RO_EXPORT = sys.argv[1], sys.argv[2], sys.argv[3]
    size = Client().size

    # ---- handshake ------------------------------------------------------
    @check("unknown client flags close the connection")
    def _():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(SOCK)
        recvn(s, 18)
        s.sendall(struct.pack(">I", 0x80))
        return None if closed_by_server(s) else "still open"

    @check("bad option magic closes the connection")
    def _():
        c = Client(structured=False, go=False)
        c.s.sendall(struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
        return None if closed_by_server(c.s) else "still open"

    @check("unknown option -> NBD_REP_ERR_UNSUP, session goes on")
    def _():
        c = Client(go=False)
        typ, _ = c.option(0x7777, b"junk")
        if typ != ERR_UNSUP:
            return "got %#x" % typ
        name = EXPORT.encode()
        typ, _ = c.option(OPT_GO, struct.pack(">I", len(name)) + name + b"\0\0")
        if typ != REP_ACK:
            return "GO after it failed: %#x" % typ
        err, _ = c.read(0, 512)
        c.close()
        return None if err == 0 else "read failed"

    @check("oversized option (100 KiB) -> NBD_REP_ERR_TOO_BIG, session goes on")
    def _():
        c = Client(go=False)
        typ, _ = c.option(OPT_INFO, b"x" * (100 << 10))
        if typ != ERR_TOO_BIG:
            return "got %#x" % typ
        typ, _ = c.option(OPT_LIST, b"")
        c.s.close()
        return None if typ == REP_ACK else "LIST after it: %#x" % typ

    @check("absurd option length (1 GiB) closes the connection")
    def _():
        c = Client(go=False)
        c.send_option(OPT_INFO, b"", length=1 << 30)
        return None if closed_by_server(c.s) else "still open"

    @check("GO for an unknown export -> NBD_REP_ERR_UNKNOWN")
    def _():
        c = Client(go=False)
        name = b"no-such-export"
        typ, _ = c.option(OPT_GO, struct.pack(">I", len(name)) + name + b"\0\0")
        c.s.close()
        return None if typ == ERR_UNKNOWN else "got %#x" % typ

    @check("malformed INFO (name length past the data) -> NBD_REP_ERR_INVALID")
    def _():
        c = Client(go=False)
        typ, _ = c.option(OPT_INFO, struct.pack(">I", 1000) + b"abc\0\0")
        c.s.close()
        return None if typ == ERR_INVALID else "got %#x" % typ

    @check("INFO with an odd info-request count -> NBD_REP_ERR_INVALID")
    def _():
        c = Client(go=False)
        name = EXPORT.encode()
        typ, _ = c.option(OPT_INFO, struct.pack(">I", len(name)) + name + struct.pack(">HH", 5, 3))
        c.s.close()
        return None if typ == ERR_INVALID else "got %#x" % typ

    @check("SET_META_CONTEXT before structured replies -> NBD_REP_ERR_INVALID")
    def _():
        c = Client(structured=False, go=False)
        name = EXPORT.encode()
        q = b"base:allocation"
        typ, _ = c.option(OPT_SET_META, struct.pack(">I", len(name)) + name + struct.pack(">II", 1, len(q)) + q)
        c.s.close()
        return None if typ == ERR_INVALID else "got %#x" % typ

    @check("meta query with a length past the data -> NBD_REP_ERR_INVALID")
    def _():
        c = Client(go=False)
        name = EXPORT.encode()
        typ, _ = c.option(OPT_LIST_META, struct.pack(">I", len(name)) + name + struct.pack(">II", 1, 9999) + b"base:")
        c.s.close()
        return None if typ == ERR_INVALID else "got %#x" % typ

    @check("EXPORT_NAME of an unknown export closes the connection")
    def _():
        c = Client(go=False)
        c.send_option(OPT_EXPORT_NAME, b"nope")
        return None if closed_by_server(c.s) else "still open"

    @check("NBD_OPT_ABORT is acknowledged")
    def _():
        c = Client(go=False)
        typ, _ = c.option(OPT_ABORT, b"")
        c.s.close()
        return None if typ == REP_ACK else "got %#x" % typ

    @check("client silent in the handshake does not block others")
    def _():
        idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(8)]
        for s in idle:
            s.connect(SOCK)
        t0 = time.time()
        ok = served()
        dt = time.time() - t0
        for s in idle:
            s.close()
        return None if ok and dt < 5 else "served=%s after %.1fs" % (ok, dt)

    # ---- transmission -------------------------------------------------------
    for structured in (True, False):
        tag = "structured" if structured else "simple"

        @check("%s: read past the end -> EINVAL" % tag)
        def _():
            c = Client(structured=structured)
            err, _ = c.read(size - 512, 1024)
            err2, data = c.read(0, 512)
            c.close()
            return None if err == EINVAL and err2 == 0 else "errors %d, %d" % (err, err2)

        @check("%s: offset overflow (2^64 - 512) -> EINVAL" % tag)
        def _():
            c = Client(structured=structured)
            err, _ = c.read((1 << 64) - 512, 1024)
            c.close()
            return None if err == EINVAL else "error %d" % err

        @check("%s: write past the end -> ENOSPC, payload consumed" % tag)
        def _():
            c = Client(structured=structured)
            c.request(CMD_WRITE, size - 512, 4096, handle=3, payload=b"\xee" * 4096)
            h, err, _ = c.reply()
            err2, _ = c.read(0, 512)
            c.close()
            return None if (h, err, err2) == (3, ENOSPC, 0) else "reply %s %d then %d" % (h, err, err2)

        @check("%s: read longer than 32 MiB -> EINVAL" % tag)
        def _():
            c = Client(structured=structured)
            err, _ = c.read(0, (32 << 20) + 512)
            c.close()
            return None if err == EINVAL else "error %d" % err

        @check("%s: write longer than 32 MiB closes the connection" % tag)
        def _():
            c = Client(structured=structured)
            c.request(CMD_WRITE, 0, (64 << 20), handle=4)
            c.s.sendall(b"\xee" * 65536)
            return None if closed_by_server(c.s) else "still open"

        @check("%s: unknown command -> EINVAL" % tag)
        def _():
            c = Client(structured=structured)
            c.request(99, 0, 512, handle=5)
            h, err, _ = c.reply()
            c.close()
            return None if (h, err) == (5, EINVAL) else "reply %s %d" % (h, err)

        @check("%s: flag not valid for the command -> EINVAL" % tag)
        def _():
            c = Client(structured=structured)
            c.request(CMD_READ, 0, 512, flags=FLAG_REQ_ONE, handle=6)
            h, err, _ = c.reply(512)
            c.request(CMD_READ, 0, 512, flags=0x100, handle=7)
            h2, err2, _ = c.reply(512)
            c.close()
            return None if (err, err2) == (EINVAL, EINVAL) else "errors %d %d" % (err, err2)

        @check("%s: flush with an offset -> EINVAL" % tag)
        def _():
            c = Client(structured=structured)
            c.request(CMD_FLUSH, 512, 0, handle=8)
            h, err, _ = c.reply()
            c.close()
            return None if err == EINVAL else "error %d" % err

        @check("%s: block status without a meta context -> EINVAL" % tag)
        def _():
            c = Client(structured=structured)
            c.request(CMD_BS, 0, 4096, handle=9)
            h, err, _ = c.reply()
            c.close()
            return None if err == EINVAL else "error %d" % err

        @check("%s: bad request magic closes the connection" % tag)
        def _():
            c = Client(structured=structured)
            c.request(CMD_READ, 0, 512, magic=0xDEADBEEF)
            return None if closed_by_server(c.s) else "still open"

        @check("%s: 64 pipelined reads all answered with their handles" % tag)
        def _():
            c = Client(structured=structured)
            buf = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 1000 + i, (i * 4096) % size, 4096)
                           for i in range(64))
            c.s.sendall(buf)
            seen = set()
            for _ in range(64):
                h, err, data = c.reply(4096)
                if err or len(data) != 4096:
                    return "handle %d: error %d, %d bytes" % (h, err, len(data))
                seen.add(h)
            c.close()
            return None if seen == set(range(1000, 1064)) else "handles %s" % sorted(seen)[:5]

        @check("%s: NBD_CMD_DISC after a read: the read is answered, then close" % tag)
        def _():
            c = Client(structured=structured)
            c.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 77, 0, 8192) +
                        struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, 78, 0, 0))
            h, err, data = c.reply(8192)
            if (h, err, len(data)) != (77, 0, 8192):
                return "reply %s %d %d" % (h, err, len(data))
            return None if closed_by_server(c.s) else "still open after DISC"

    @check("block status with REQ_ONE returns exactly one extent")
    def _():
        c = Client(meta=True)
        c.request(CMD_BS, 0, size, flags=FLAG_REQ_ONE, handle=11)
        h, err, chunks = c.reply()
        c.close()
        if err:
            return "error %d" % err
        payload = chunks[0]
        n = (len(payload) - 4) // 8
        ln = struct.unpack(">I", payload[4:8])[0]
        return None if n == 1 and 0 < ln <= size else "%d extents, first %d" % (n, ln)

    @check("block status past the end -> EINVAL")
    def _():
        c = Client(meta=True)
        c.request(CMD_BS, size, 512, handle=12)
        h, err, _ = c.reply()
        c.close()
        return None if err == EINVAL else "error %d" % err

    @check("fast zero -> ENOTSUP without touching the data")
    def _():
        c = Client()
        c.request(CMD_ZEROES, 0, 4096, flags=FLAG_FAST_ZERO, handle=13)
        h, err, _ = c.reply()
        c.close()
        return None if err == ENOTSUP else "error %d" % err

    @check("read-only export: write, trim, write zeroes -> EPERM")
    def _():
        c = Client(export=RO_EXPORT)
        if not (c.tflags & 2):
            return "READ_ONLY flag not set"
        errs = []
        for typ, payload in ((CMD_WRITE, b"\xee" * 512), (CMD_TRIM, b""), (CMD_ZEROES, b"")):
            c.request(typ, 0, 512, handle=20 + typ, payload=payload)
            errs.append(c.reply()[1])
        c.close()
        return None if errs == [EPERM] * 3 else "errors %s" % errs

    @check("truncated request header, then the client goes away")
    def _():
        c = Client()
        c.s.sendall(struct.pack(">IHHQ", REQ_MAGIC, 0, CMD_WRITE, 1)[:14])
        c.s.close()
        time.sleep(0.2)
        return None

    @check("client vanishing mid-write writes nothing")
    def _():
        c = Client()
        before = c.read(1 << 20, 65536)[1]
        c.request(CMD_WRITE, 1 << 20, 65536, handle=30, payload=b"\xee" * 1000)
        c.s.close()
        time.sleep(0.3)
        c2 = Client()
        after = c2.read(1 << 20, 65536)[1]
        c2.close()
        return None if before == after else "data changed"

    @check("slow client (one byte at a time) does not block others")
    def _():
        slow = Client()
        req = struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 40, 0, 512)
        stop = threading.Event()
        times = []

        def others():
            while not stop.is_set():
                t0 = time.time()
                if not served():
                    times.append(99)
                    return
                times.append(time.time() - t0)

        t = threading.Thread(target=others)
        t.start()
        for b in req:
            slow.s.sendall(bytes([b]))
            time.sleep(0.05)
        h, err, data = slow.reply(512)
        stop.set()
        t.join()
        slow.close()
        if (h, err, len(data)) != (40, 0, 512):
            return "slow client's reply %s %d %d" % (h, err, len(data))
        return None if times and max(times) < 2 else "others took up to %.2fs" % max(times or [99])

    @check("client that never reads its replies does not block others")
    def _():
        c = Client()
        # 64 reads of 1 MiB, never read back: the server's sends block.
        c.s.sendall(b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 50 + i, 0, 1 << 20)
                             for i in range(64)))
        time.sleep(0.5)
        t0 = time.time()
        ok = served()
        dt = time.time() - t0
        c.s.close()
        return None if ok and dt < 5 else "served=%s after %.1fs" % (ok, dt)

    print("%d failure(s)" % failures)
    return min(failures, 100)


if __name__ == "__main__":
    sys.exit(main())
