#!/usr/bin/env python3
"""Build a run of vmsnap snapshots in one process: for each N in FROM..TO,
rewrite about PCT percent of the disk at random through vmsnapd's NBD export
(EXTENT-sized, EXTENT-aligned writes, up to 16 in flight, then a flush), then
take snapshot "s<N>" with one snapshot.create request on the daemon's control
socket (docs/control.md), timed from the request to its response.

This replaces, per snapshot, one fio process for the rewrite and one vmsnap
CLI process for the snapshot: building 256 snapshots was dominated by their
start-up.  The data written is random (os.urandom-quality, from a PRNG seeded
per snapshot), distinct per extent and incompressible, like fio's buffers, so
a compressing SR (zfs, compression=on) stores it in full.

For every snapshot one line "N,rewrite_ms,snapshot_ms" goes to stdout.
With --budget-s, it stops early (status 0) once that many seconds were spent:
the caller sees from the last line how far it got.
Stops at the first error (message on stderr, exit status 1); an error reply
of the control socket or the NBD server is an error.  Stdlib only."""

import argparse
import json
import os
import random
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdprobe  # noqa: E402  (the NBD negotiation, bounds-checked)

NBD_CMD_WRITE = 1
NBD_CMD_FLUSH = 3
MAX_REPLY = 1 << 20
INFLIGHT = 16


class BuildError(Exception):
    pass


def offsets(size, pct, extent, seed):
    """The rewrite's offsets: int(size * pct / 100 / extent) (at least 1)
    extent-aligned slots, uniformly at random, deterministic from seed."""
    count = max(1, int(size * pct / 100 / extent))
    slots = size // extent
    rng = random.Random(seed)
    return [rng.randrange(slots) * extent for _ in range(count)]


class Nbd:
    def __init__(self, path, export, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.size = nbdprobe.negotiate(self.sock, export)
        self.handle = 1

    def _reply(self, want):
        magic, error, handle = struct.unpack(">IIQ", nbdprobe.recv_exact(self.sock, 16))
        if magic != nbdprobe.SIMPLE_REPLY_MAGIC:
            raise BuildError("bad NBD reply magic %#x" % magic)
        if handle not in want:
            raise BuildError("NBD reply for unknown handle %#x" % handle)
        want.discard(handle)
        if error:
            raise BuildError("NBD request failed with error %d" % error)

    def _send(self, cmd, off, data):
        h = self.handle
        self.handle += 1
        self.sock.sendall(struct.pack(">IHHQQI", nbdprobe.REQUEST_MAGIC, 0, cmd, h, off,
                                      len(data) if cmd == NBD_CMD_WRITE else 0) + data)
        return h

    def write_all(self, extents):
        """extents: list of (offset, bytes); at most INFLIGHT outstanding."""
        pending = set()
        for off, data in extents:
            if off + len(data) > self.size:
                raise BuildError("write beyond the export (%d + %d > %d)" % (off, len(data), self.size))
            while len(pending) >= INFLIGHT:
                self._reply(pending)
            pending.add(self._send(NBD_CMD_WRITE, off, data))
        while pending:
            self._reply(pending)
        self._reply({self._send(NBD_CMD_FLUSH, 0, b"")})

    def close(self):
        try:
            self.sock.sendall(struct.pack(">IHHQQI", nbdprobe.REQUEST_MAGIC, 0, nbdprobe.NBD_CMD_DISC,
                                          self.handle, 0, 0))
        except OSError:
            pass
        self.sock.close()


class Control:
    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def request(self, op, args):
        self.sock.sendall(json.dumps({"op": op, "args": args}, separators=(",", ":")).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BuildError("control socket closed during %s" % op)
            self.buf += chunk
            if len(self.buf) > MAX_REPLY:
                raise BuildError("control reply longer than %d bytes" % MAX_REPLY)
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            resp = json.loads(line)
        except ValueError as e:
            raise BuildError("control reply is not JSON: %s" % e)
        if not isinstance(resp, dict) or "result" not in resp:
            err = resp.get("error") if isinstance(resp, dict) else None
            raise BuildError("%s failed: %s" % (op, json.dumps(err) if err else line[:200]))
        return resp["result"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nbd-socket", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--control-socket", required=True)
    ap.add_argument("--vm", required=True)
    ap.add_argument("--pct", type=float, required=True)
    ap.add_argument("--extent", type=int, required=True)
    ap.add_argument("--seed-base", type=int, required=True, help="snapshot N uses seed SEED_BASE + N")
    ap.add_argument("--from", dest="first", type=int, required=True)
    ap.add_argument("--to", dest="last", type=int, required=True)
    ap.add_argument("--prefix", default="s")
    ap.add_argument("--budget-s", type=float, default=0.0,
                    help="stop after the snapshot in progress once this many seconds were spent (0: no limit)")
    ap.add_argument("--timeout", type=float, default=600.0)
    a = ap.parse_args()
    if a.extent <= 0 or a.extent % 512 or a.first < 1 or a.last < a.first or not 0 < a.pct <= 100:
        print("vsbuild: bad arguments", file=sys.stderr)
        return 2
    start = time.monotonic_ns()
    try:
        nbd = Nbd(a.nbd_socket, a.export, a.timeout)
        ctl = Control(a.control_socket, a.timeout)
        for n in range(a.first, a.last + 1):
            seed = a.seed_base + n
            rng = random.Random(seed ^ 0x5EED)
            base = rng.randbytes(a.extent)
            t0 = time.monotonic_ns()
            # every extent distinct: its own 16-byte header (snapshot, offset)
            nbd.write_all([(off, struct.pack(">QQ", n, off) + base[16:])
                           for off in offsets(nbd.size, a.pct, a.extent, seed)])
            t1 = time.monotonic_ns()
            ctl.request("snapshot.create", {"vm": a.vm, "name": "%s%d" % (a.prefix, n)})
            t2 = time.monotonic_ns()
            print("%d,%.3f,%.3f" % (n, (t1 - t0) / 1e6, (t2 - t1) / 1e6), flush=True)
            if a.budget_s > 0 and (t2 - start) / 1e9 >= a.budget_s:
                break
        nbd.close()
    except (BuildError, nbdprobe.ProbeError, OSError, struct.error) as e:
        print("vsbuild: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
