#!/usr/bin/env python3
"""Send requests to vmsnapd's control socket, one JSON object per line, and
print each response line.   usage: nbd_ctl.py SOCKET REQUEST_JSON..."""
import socket
import sys


def main():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(120)
    s.connect(sys.argv[1])
    for req in sys.argv[2:]:
        s.sendall(req.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        sys.stdout.write(buf.decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
