#!/usr/bin/env python3
"""Kill -9 vmsnapd at random moments under load, restart it, and check that
nothing acknowledged was lost.

usage: crashcheck.py --vmsnapd BIN --vmsnap CLI --home DIR --kills N --seed S [--disk-mib M]

The home must already hold a native SR and a VM `vm1` with one disk `root`
(test_crash_daemon.sh makes them).  Each round:

  workload  a writer thread writes 4 KiB blocks at random places of
            vm1/root over NBD (one request in flight, some with FUA) and
            sends FLUSH now and then; an ops thread takes snapshots (and
            reads each one back through its export to record its SHA-256),
            clones snapshots, deletes clones and snapshots (defer), all
            through the control socket;
  kill      after a random delay (sometimes again right after a restart,
            while the daemon is still recovering), SIGKILL;
  restart   and verify:
    - every block holds a whole, well-formed version: the one made durable
      by the last acknowledged FLUSH (or FUA write) or a later one that was
      issued afterwards; never an older one, never a torn or foreign block;
    - every snapshot whose creation was acknowledged is listed and reads
      back exactly the checksum recorded at snapshot time; every clone
      reads back its snapshot's checksum; acknowledged deletes stay deleted;
      objects whose operation was cut short are either absent or whole;
    - `check` through the control socket and `vmsnap --json check` are clean
      (the JSON parsed);
  and at the end the reaper has drained every deleted volume.

Each block written holds a header (magic, block number, generation) and a
filler derived from both, so a read identifies exactly which write it saw.
Prints the seed; VMS_SEED (or --seed) replays the same choices (the timing
of the kills against the daemon's threads cannot be replayed exactly).
Exit status 0 when every round passed.
"""
import argparse
import hashlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbd_hostile as nbd  # noqa: E402  (the NBD client lives there)

BLOCK = 4096
MAGIC = 0x564D53435241534B  # "VMSCRASK"
FLAG_FUA = 1


def block_content(blk, gen):
    if gen == 0:
        return bytes(BLOCK)
    fill = hashlib.blake2b(struct.pack(">QQ", blk, gen)).digest() * (BLOCK // 64)
    return struct.pack(">QQQ", MAGIC, blk, gen) + fill[24:]


def parse_block(blk, data):
    """The generation a block holds, or raise ValueError (torn/foreign)."""
    if data == bytes(BLOCK):
        return 0
    magic, b, gen = struct.unpack(">QQQ", data[:24])
    if magic != MAGIC or b != blk or data != block_content(blk, gen):
        raise ValueError("block %d: torn or foreign content (magic %#x blk %d gen %d)" %
                         (blk, magic, b, gen))
    return gen


class Failure(Exception):
    pass


# ---------------------------------------------------------------- clients

def nbd_client(sock, export):
    nbd.SOCK = sock
    return nbd.Client(export=export)


def read_export(sock, export, size):
    """The whole export as bytes (1 MiB reads)."""
    c = nbd_client(sock, export)
    try:
        out = bytearray()
        step = 1 << 20
        for off in range(0, size, step):
            n = min(step, size - off)
            err, data = c.read(off, n, handle=off // step + 1)
            if err:
                raise Failure("read %s at %d: NBD error %d" % (export, off, err))
            out += data
        return bytes(out)
    finally:
        c.close()


class Control:
    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def call(self, op, **args):
        req = {"op": op}
        if args:
            req["args"] = args
        self.s.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise nbd.Closed("control connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        j = json.loads(line)
        if j.get("output_version") != 1 or ("result" in j) == ("error" in j):
            raise Failure("malformed control response: %r" % line[:300])
        return j

    def close(self):
        self.s.close()


# ---------------------------------------------------------------- model

class Model:
    """What the test knows: per block the durable generation and the
    generations issued after it; snapshots and clones with their checksums."""

    def __init__(self, nblocks):
        self.nblocks = nblocks
        self.durable = [0] * nblocks
        self.pending = [[] for _ in range(nblocks)]
        self.gen = 0
        # uuid -> {"name", "sha" (or None), "state": "acked"|"maybe"|"deleted"|"maybe-deleted"}
        self.snaps = {}
        # uuid -> {"name", "snap" (uuid), "sha" (or None), "state"}
        self.clones = {}
        self.lock = threading.Lock()
        self.counter = 0

    def next_name(self, prefix):
        with self.lock:
            self.counter += 1
            return "%s%d" % (prefix, self.counter)


# ---------------------------------------------------------------- workload

class Round:
    def __init__(self, args, model, rng, rnd):
        self.a = args
        self.m = model
        self.rng = rng
        self.rnd = rnd
        self.killed = threading.Event()
        self.errors = []
        self.stats = {"writes": 0, "flushes": 0, "fua": 0, "snapshots": 0, "clones": 0,
                      "deletes": 0, "ops_cut": 0}

    def fail(self, msg):
        if not self.killed.is_set():
            self.errors.append(msg)

    def writer(self, seed):
        rng = random.Random(seed)
        m = self.m
        try:
            c = nbd_client(self.a.sock, "vm1/root")
        except Exception as e:  # noqa: BLE001  (killed before we connected)
            self.fail("writer connect: %r" % e)
            return
        since_flush = {}
        handle = 0
        try:
            while not self.killed.is_set():
                handle += 1
                if since_flush and rng.random() < 0.06:
                    c.request(nbd.CMD_FLUSH, handle=handle)
                    h, err, _ = c.reply()
                    if h != handle or err:
                        self.fail("FLUSH answered handle %d error %d" % (h, err))
                        return
                    with m.lock:
                        for blk, gen in since_flush.items():
                            m.durable[blk] = gen
                            m.pending[blk] = [g for g in m.pending[blk] if g > gen]
                    since_flush.clear()
                    self.stats["flushes"] += 1
                    continue
                blk = rng.randrange(m.nblocks)
                fua = rng.random() < 0.05
                with m.lock:
                    m.gen += 1
                    gen = m.gen
                    m.pending[blk].append(gen)
                c.request(nbd.CMD_WRITE, blk * BLOCK, BLOCK, flags=FLAG_FUA if fua else 0,
                          handle=handle, payload=block_content(blk, gen))
                h, err, _ = c.reply()
                if h != handle or err:
                    self.fail("WRITE block %d answered handle %d error %d" % (blk, h, err))
                    return
                self.stats["writes"] += 1
                if fua:
                    self.stats["fua"] += 1
                    with m.lock:
                        m.durable[blk] = gen
                        m.pending[blk] = [g for g in m.pending[blk] if g > gen]
                    since_flush.pop(blk, None)
                else:
                    since_flush[blk] = gen
        except (nbd.Closed, OSError, AssertionError, struct.error) as e:
            self.fail("writer: %r" % e)
        finally:
            try:
                c.s.close()
            except OSError:
                pass

    def ops(self, seed):
        rng = random.Random(seed)
        m = self.m
        try:
            ctl = Control(self.a.ctl)
        except OSError as e:
            self.fail("control connect: %r" % e)
            return
        size = m.nblocks * BLOCK
        try:
            while not self.killed.is_set():
                time.sleep(rng.uniform(0.02, 0.25))
                with m.lock:
                    live_snaps = [u for u, s in m.snaps.items() if s["state"] == "acked"]
                    live_clones = [u for u, c in m.clones.items() if c["state"] == "acked"]
                r = rng.random()
                # at most 6 live snapshots: the disk diverges from each one
                # with every round, so more would fill the SR (ENOSPC)
                if len(live_snaps) >= 6:
                    r = 0.9
                if r < 0.40 or not live_snaps:
                    name = m.next_name("s")
                    j = ctl.call("snapshot.create", vm="vm1", name=name)
                    if "error" in j:
                        self.fail("snapshot.create: %s" % j["error"])
                        continue
                    uuid = j["result"]["uuid"]
                    with m.lock:
                        m.snaps[uuid] = {"name": j["result"]["name"], "sha": None, "state": "acked"}
                    self.stats["snapshots"] += 1
                    data = read_export(self.a.sock, "vm1/root@%s" % uuid, size)
                    with m.lock:
                        m.snaps[uuid]["sha"] = hashlib.sha256(data).hexdigest()
                elif r < 0.60 and len(live_clones) < 4:
                    su = rng.choice(live_snaps)
                    name = m.next_name("c")
                    with m.lock:
                        m.clones["?" + name] = {"name": name, "snap": su,
                                                "sha": m.snaps[su]["sha"], "state": "maybe"}
                    j = ctl.call("vm.clone", snapshot=su, name=name)
                    if "error" in j:
                        self.fail("vm.clone: %s" % j["error"])
                        continue
                    with m.lock:
                        rec = m.clones.pop("?" + name)
                        rec["state"] = "acked"
                        m.clones[j["result"]["uuid"]] = rec
                    self.stats["clones"] += 1
                elif r < 0.80 and live_clones:
                    cu = rng.choice(live_clones)
                    with m.lock:
                        m.clones[cu]["state"] = "maybe-deleted"
                    j = ctl.call("vm.delete", vm=cu, recursive=True, force=True)
                    if "error" in j:
                        self.fail("vm.delete %s: %s" % (cu, j["error"]))
                        continue
                    with m.lock:
                        m.clones[cu]["state"] = "deleted"
                    self.stats["deletes"] += 1
                elif len(live_snaps) > 1:
                    su = rng.choice(live_snaps)
                    with m.lock:
                        m.snaps[su]["state"] = "maybe-deleted"
                    j = ctl.call("snapshot.delete", snapshot=su, defer=True)
                    if "error" in j:
                        self.fail("snapshot.delete %s: %s" % (su, j["error"]))
                        continue
                    with m.lock:
                        m.snaps[su]["state"] = "deleted"
                    self.stats["deletes"] += 1
        except (nbd.Closed, OSError, AssertionError, struct.error, ValueError) as e:
            self.fail("ops: %r" % e)
            self.stats["ops_cut"] += 1
        except Failure as e:
            self.fail(str(e))
        finally:
            ctl.close()


# ---------------------------------------------------------------- daemon

class Daemon:
    def __init__(self, args):
        self.a = args
        self.p = None

    def start(self):
        log = open(self.a.log, "ab")
        self.p = subprocess.Popen([self.a.vmsnapd, "--foreground", "--home", self.a.home,
                                   "--log-file", self.a.log], stdout=log, stderr=log)
        log.close()
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise Failure("vmsnapd exited with %d at start (see %s)" % (self.p.returncode,
                                                                            self.a.log))
            try:
                c = Control(self.a.ctl, timeout=5)
                c.call("daemon.status")
                c.close()
                return
            except (OSError, nbd.Closed, ValueError):
                time.sleep(0.05)
        raise Failure("vmsnapd did not answer on its control socket within 30 s")

    def kill(self):
        if self.p and self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
        if self.p:
            self.p.wait()

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                return self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
                return -1
        return self.p.returncode if self.p else 0


# ---------------------------------------------------------------- verify

def verify(args, m, report):
    size = m.nblocks * BLOCK
    problems = []
    # 1. the live disk
    data = read_export(args.sock, "vm1/root", size)
    seen_new = 0
    for blk in range(m.nblocks):
        try:
            g = parse_block(blk, data[blk * BLOCK:(blk + 1) * BLOCK])
        except ValueError as e:
            problems.append("live disk: %s" % e)
            continue
        if g != m.durable[blk] and g not in m.pending[blk]:
            problems.append("live disk block %d holds generation %d; durable %d, issued after: %s"
                            % (blk, g, m.durable[blk], m.pending[blk][-5:]))
        if g != m.durable[blk]:
            seen_new += 1
        m.durable[blk] = g
        m.pending[blk] = []
    report["unflushed_kept"] = report.get("unflushed_kept", 0) + seen_new
    # what was read becomes the new durable baseline once flushed
    c = nbd_client(args.sock, "vm1/root")
    c.request(nbd.CMD_FLUSH, handle=99)
    h, err, _ = c.reply()
    c.close()
    if err:
        problems.append("FLUSH after restart: error %d" % err)

    ctl = Control(args.ctl)
    try:
        # 2. snapshots
        j = ctl.call("snapshot.list", vm="vm1")
        if "error" in j:
            raise Failure("snapshot.list: %s" % j["error"])
        listed = {s["uuid"]: s for s in j["result"]["snapshots"]}
        for u, s in list(m.snaps.items()):
            st = s["state"]
            if st == "deleted":
                if u in listed:
                    problems.append("snapshot %s deleted (acknowledged) but listed" % s["name"])
                continue
            if u not in listed:
                if st == "acked":
                    problems.append("snapshot %s acknowledged but gone" % s["name"])
                else:
                    s["state"] = "deleted"
                continue
            s["state"] = "acked"
            sd = read_export(args.sock, "vm1/root@%s" % u, size)
            for blk in range(m.nblocks):
                try:
                    parse_block(blk, sd[blk * BLOCK:(blk + 1) * BLOCK])
                except ValueError as e:
                    problems.append("snapshot %s: %s" % (s["name"], e))
                    break
            sha = hashlib.sha256(sd).hexdigest()
            if s["sha"] is None:
                s["sha"] = sha  # creation acked but not read back before the kill
            elif s["sha"] != sha:
                problems.append("snapshot %s reads back a different content than at snapshot time"
                                % s["name"])
            report["snapshot_reads"] = report.get("snapshot_reads", 0) + 1
        for u in listed:
            if u not in m.snaps:
                # created by a request cut short: whole or absent; adopt it
                m.snaps[u] = {"name": listed[u]["name"], "sha": None, "state": "acked"}
                sd = read_export(args.sock, "vm1/root@%s" % u, size)
                m.snaps[u]["sha"] = hashlib.sha256(sd).hexdigest()
                report["snapshots_adopted"] = report.get("snapshots_adopted", 0) + 1
        # 3. clones
        j = ctl.call("vm.list")
        if "error" in j:
            raise Failure("vm.list: %s" % j["error"])
        vms = {v["uuid"]: v for v in j["result"]["vms"] if v["name"] != "vm1"}
        byname = {v["name"]: u for u, v in vms.items()}
        for key, c in list(m.clones.items()):
            u = key
            if key.startswith("?"):  # clone request cut short
                m.clones.pop(key)
                if c["name"] in byname:
                    u = byname[c["name"]]
                    c["state"] = "acked"
                    m.clones[u] = c
                    report["clones_adopted"] = report.get("clones_adopted", 0) + 1
                else:
                    continue
            st = c["state"]
            if st == "deleted":
                if u in vms:
                    problems.append("clone %s deleted (acknowledged) but listed" % c["name"])
                continue
            if u not in vms:
                if st == "acked":
                    problems.append("clone %s acknowledged but gone" % c["name"])
                else:
                    c["state"] = "deleted"
                continue
            c["state"] = "acked"
            cd = read_export(args.sock, "%s/root" % c["name"], size)
            sha = hashlib.sha256(cd).hexdigest()
            want = c["sha"] or m.snaps.get(c["snap"], {}).get("sha")
            if want is None:
                c["sha"] = sha
            elif want != sha:
                problems.append("clone %s differs from its snapshot" % c["name"])
            report["clone_reads"] = report.get("clone_reads", 0) + 1
        for u, v in vms.items():
            if u not in m.clones:
                problems.append("unexpected VM %s listed" % v["name"])
        # 4. check, through the daemon and through the CLI
        j = ctl.call("check")
        if "error" in j or not j["result"].get("ok"):
            problems.append("check not clean: %s" % json.dumps(j)[:2000])
        else:
            for sr in j["result"]["srs"]:
                d = sr.get("report", {}).get("deleting", 0)
                if d:
                    report["deleting_seen"] = report.get("deleting_seen", 0) + 1
    finally:
        ctl.close()
    p = subprocess.run([args.vmsnap, "--home", args.home, "--json", "check"],
                       capture_output=True, text=True, timeout=120)
    try:
        j = json.loads(p.stdout)
        if p.returncode != 0 or not j["result"]["ok"]:
            problems.append("vmsnap check exit %d: %s" % (p.returncode, p.stdout[:2000]))
    except (ValueError, KeyError, TypeError):
        problems.append("vmsnap --json check: unparsable output (exit %d): %r %r"
                        % (p.returncode, p.stdout[:500], p.stderr[:500]))
    return problems


def wait_reaper(args, timeout=60):
    """Poll check until no SR has volumes queued for reclaim."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        ctl = Control(args.ctl)
        j = ctl.call("check")
        ctl.close()
        if "error" in j:
            return "check: %s" % j["error"]
        last = [sr.get("report", {}).get("deleting", 0) for sr in j["result"]["srs"]]
        if not any(last):
            return None
        time.sleep(0.5)
    return "volumes still queued for reclaim after %d s: %s" % (timeout, last)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vmsnapd", required=True)
    ap.add_argument("--vmsnap", required=True)
    ap.add_argument("--home", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--disk-mib", type=int, default=16)
    ap.add_argument("--max-run", type=float, default=2.5, help="longest workload before a kill (s)")
    a = ap.parse_args()
    a.sock = os.path.join(a.home, "nbd.sock")
    a.ctl = os.path.join(a.home, "control.sock")
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    print("crashcheck: seed %d (replay with VMS_SEED=%d), %d kills" % (seed, seed, a.kills),
          flush=True)
    rng = random.Random(seed)
    m = Model(a.disk_mib * (1 << 20) // BLOCK)
    d = Daemon(a)
    totals = {"writes": 0, "flushes": 0, "fua": 0, "snapshots": 0, "clones": 0, "deletes": 0,
              "ops_cut": 0, "recovery_kills": 0}
    report = {}
    failed = 0
    t_start = time.time()
    try:
        d.start()
        for k in range(1, a.kills + 1):
            r = Round(a, m, rng, k)
            tw = threading.Thread(target=r.writer, args=(rng.randrange(1 << 32),))
            to = threading.Thread(target=r.ops, args=(rng.randrange(1 << 32),))
            tw.start()
            to.start()
            time.sleep(rng.uniform(0.1, a.max_run))
            r.killed.set()
            d.kill()
            tw.join(60)
            to.join(120)
            if tw.is_alive() or to.is_alive():
                print("round %d: FAIL a client is stuck after the kill" % k, flush=True)
                return 1
            for key in r.stats:
                totals[key] += r.stats[key]
            problems = list(r.errors)
            # sometimes kill again while the daemon is recovering
            if rng.random() < 0.2:
                d.start()
                time.sleep(rng.uniform(0, 0.05))
                d.kill()
                totals["recovery_kills"] += 1
            d.start()
            problems += verify(a, m, report)
            if problems:
                failed += 1
                print("round %d: FAIL\n  %s" % (k, "\n  ".join(problems[:20])), flush=True)
            else:
                print("round %d: ok (%d writes, %d flushes, %d snapshots, %d clones, %d deletes)"
                      % (k, r.stats["writes"], r.stats["flushes"], r.stats["snapshots"],
                         r.stats["clones"], r.stats["deletes"]), flush=True)
        err = wait_reaper(a)
        if err:
            failed += 1
            print("reaper: FAIL %s" % err, flush=True)
        rc = d.stop()
        if rc != 0:
            failed += 1
            print("final SIGTERM: vmsnapd exited %d" % rc, flush=True)
    except Failure as e:
        print("FAIL %s" % e, flush=True)
        d.kill()
        return 1
    finally:
        d.kill()
    live = sum(1 for s in m.snaps.values() if s["state"] == "acked")
    print("crashcheck: seed %d: %d kills (+%d during recovery), %d rounds failed, %.0f s; "
          "%d writes, %d flushes, %d FUA, %d snapshots, %d clones, %d deletes; "
          "%d snapshot and %d clone read-backs, %d snapshots live at the end; "
          "%d blocks held unflushed writes after a kill, %d cut-short creates adopted, "
          "check saw a reclaim in progress %d times"
          % (seed, a.kills, totals["recovery_kills"], failed, time.time() - t_start,
             totals["writes"], totals["flushes"], totals["fua"], totals["snapshots"],
             totals["clones"], totals["deletes"], report.get("snapshot_reads", 0),
             report.get("clone_reads", 0), live, report.get("unflushed_kept", 0),
             report.get("snapshots_adopted", 0) + report.get("clones_adopted", 0),
             report.get("deleting_seen", 0)), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
