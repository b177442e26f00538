#!/usr/bin/env python3
"""Check that a snapshot taken during writes is atomic at an I/O boundary.

  nbd_snapcheck.py write  SOCKET EXPORT START NBLOCKS LOG [DELAY_MS [STOPFILE]]
  nbd_snapcheck.py verify SOCKET SNAP_EXPORT START NBLOCKS LOG T0 T1
  nbd_snapcheck.py hold   SOCKET EXPORT SECONDS      (a writer that stays connected)
  nbd_snapcheck.py expect SOCKET EXPORT OFFSET LENGTH BYTE

`write` writes up to NBLOCKS 4 KiB blocks one after the other (each
acknowledged before the next is sent) at START + i*4096, block i holding a
content derived from i, and logs "i issue_time ack_time" per block; it
stops early once STOPFILE exists.  `verify` reads
those blocks from a snapshot taken between wall-clock times T0 and T1 (the
snapshot request was sent at T0 and answered at T1) and checks:
  - every block acknowledged before T0 is in the snapshot, whole;
  - no block sent after T1 is in it;
  - the blocks present form a prefix of the write sequence (nothing newer
    without everything older): the snapshot is a state the disk really
    passed through;
  - every block is either entirely the new content or entirely the old
    (no torn block).
Exit status 0 when all hold.
"""
import hashlib
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbd_hostile as nbd  # noqa: E402  (the NBD client lives there)

BLOCK = 4096


def content(i):
    seed = hashlib.sha256(b"vmsnap-snapcheck-%d" % i).digest()
    return (struct.pack(">QQ", 0x564D534E41505348, i) + seed * (BLOCK // 32))[:BLOCK]


def client(sock, export):
    nbd.SOCK = sock
    return nbd.Client(export=export)


def do_write(sock, export, start, n, log, delay_ms=0.0, stopfile=None):
    c = client(sock, export)
    with open(log, "w", buffering=1) as f:
        for i in range(n):
            if stopfile and os.path.exists(stopfile):
                break
            t0 = time.time()
            c.request(nbd.CMD_WRITE, start + i * BLOCK, BLOCK, handle=i, payload=content(i))
            h, err, _ = c.reply()
            t1 = time.time()
            if err or h != i:
                sys.exit("write %d failed: error %d" % (i, err))
            f.write("%d %.6f %.6f\n" % (i, t0, t1))
            if delay_ms:
                time.sleep(delay_ms / 1000.0)
    c.close()
    return 0


def do_verify(sock, export, start, n, log, t0, t1):
    times = {}
    with open(log) as f:
        for line in f:
            i, a, b = line.split()
            times[int(i)] = (float(a), float(b))
    n = min(n, len(times))
    c = client(sock, export)
    present = []
    torn = []
    for i in range(n):
        err, data = c.read(start + i * BLOCK, BLOCK, handle=i)
        if err:
            sys.exit("read of block %d failed: error %d" % (i, err))
        want = content(i)
        if data == want:
            present.append(i)
        elif data[:16] == want[:16] or (data != bytes(BLOCK) and data[16:] == want[16:]):
            torn.append(i)
    c.close()
    problems = []
    if torn:
        problems.append("torn blocks: %s" % torn[:10])
    k = len(present)
    if present != list(range(k)):
        problems.append("not a prefix: %d blocks present, first gap at %d" %
                        (k, next(j for j in range(n) if j not in set(present))))
    acked_before = [i for i, (a, b) in times.items() if b < t0]
    missing = [i for i in acked_before if i not in set(present)]
    if missing:
        problems.append("%d writes acknowledged before the snapshot are missing (first %d)" %
                        (len(missing), missing[0]))
    sent_after = [i for i, (a, b) in times.items() if a > t1]
    extra = [i for i in sent_after if i in set(present)]
    if extra:
        problems.append("%d writes sent after the snapshot are in it (first %d)" % (len(extra), extra[0]))
    if not acked_before or not sent_after:
        problems.append("the snapshot was not taken in the middle of the writes; nothing was checked")
    print("snapshot holds blocks 0..%d of %d written (%d acknowledged before it, %d sent after it)" %
          (k - 1, len(times), len(acked_before), len(sent_after)))
    for p in problems:
        print("FAIL: " + p)
    return 1 if problems else 0


def do_hold(sock, export, seconds):
    c = client(sock, export)
    print("connected", flush=True)
    time.sleep(seconds)
    err, _ = c.read(0, 512)
    c.close()
    return 1 if err else 0


def do_expect(sock, export, off, length, byte):
    c = client(sock, export)
    err, data = c.read(off, length)
    c.close()
    if err:
        print("read error %d" % err)
        return 1
    if data != bytes([byte]) * length:
        bad = next(i for i in range(length) if data[i] != byte)
        print("byte at %d is %#x, wanted %#x" % (off + bad, data[bad], byte))
        return 1
    return 0


def main():
    mode = sys.argv[1]
    a = sys.argv[2:]
    if mode == "write":
        return do_write(a[0], a[1], int(a[2]), int(a[3]), a[4], float(a[5]) if len(a) > 5 else 0.0,
                        a[6] if len(a) > 6 else None)
    if mode == "verify":
        return do_verify(a[0], a[1], int(a[2]), int(a[3]), a[4], float(a[5]), float(a[6]))
    if mode == "hold":
        return do_hold(a[0], a[1], float(a[2]))
    if mode == "expect":
        return do_expect(a[0], a[1], int(a[2]), int(a[3]), int(a[4], 0))
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
