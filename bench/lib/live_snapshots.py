#!/usr/bin/env python3
"""Take N live snapshots of a VM through a running vmsnapd, each after 16
random 4 KiB writes to one of its disks, so that the snapshots differ.

  live_snapshots.py CONTROL_SOCK NBD_SOCK VM DISK N DISK_BYTES

Used by bench/bench_nbd.sh and bench/bench_nbd_snap.sh.  The writes use the
NBD client of tests/integration/nbd_hostile.py; the rewrite offsets come
from a fixed seed.  Exits non-zero on the first failed write or snapshot."""
import json
import os
import random
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "integration"))
import nbd_hostile as nbd  # noqa: E402  (its NBD client)


def main():
    ctl_path, nbd_path, vm, disk = sys.argv[1:5]
    n, size = int(sys.argv[5]), int(sys.argv[6])
    nbd.SOCK = nbd_path
    c = nbd.Client(export="%s/%s" % (vm, disk))
    ctl = socket.socket(socket.AF_UNIX)
    ctl.connect(ctl_path)
    f = ctl.makefile("rb")
    rnd = random.Random(1)
    for i in range(n):
        for j in range(16):
            c.request(nbd.CMD_WRITE, rnd.randrange(size // 4096) * 4096, 4096, handle=j,
                      payload=os.urandom(4096))
        for j in range(16):
            if c.reply()[1]:
                sys.exit("write failed")
        req = {"op": "snapshot.create", "args": {"vm": vm, "name": "b%d" % i}}
        ctl.sendall((json.dumps(req) + "\n").encode())
        if "result" not in json.loads(f.readline()):
            sys.exit("snapshot %d failed" % i)
    c.close()


if __name__ == "__main__":
    main()
