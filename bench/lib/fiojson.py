#!/usr/bin/env python3
"""Read fio --output-format=json results.

  fiojson.py check FILE   exit 1 (with a reason on stderr) unless every job
                          finished with error 0 and moved some data
  fiojson.py row FILE     print "iops,read_iops,write_iops,mbps,lat_mean_us,
                          lat_p99_us,read_lat_mean_us,read_lat_p99_us"

Latencies are fio's total latency (submission + completion, lat_ns); the
p99 needs --lat_percentiles=1.  The mixed figures come from
--unified_rw_reporting=both when present, else are combined from the read
and write sections (IOPS-weighted mean, max of the two p99s)."""

import json
import sys

FIELDS = "iops,read_iops,write_iops,mbps,lat_mean_us,lat_p99_us,read_lat_mean_us,read_lat_p99_us"


def load(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    # fio's nbd engine prints "fio: connected to NBD server" before the JSON
    # when --output is not used; tolerate any such preamble.
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in %s" % path)
    return json.loads(text[start:])


def p99(section):
    pct = section.get("lat_ns", {}).get("percentile") or section.get("clat_ns", {}).get("percentile") or {}
    v = pct.get("99.000000")
    return None if v is None else v / 1000.0


def check(path):
    d = load(path)
    jobs = d.get("jobs") or []
    if not jobs:
        return "no jobs in fio output"
    for j in jobs:
        if j.get("error", 1) != 0:
            return "job %s: error %s" % (j.get("jobname"), j.get("error"))
        moved = sum(j.get(k, {}).get("io_bytes", 0) for k in ("read", "write"))
        if moved <= 0:
            return "job %s moved no data" % j.get("jobname")
    return None


def row(path):
    j = load(path)["jobs"][0]
    r, w = j["read"], j["write"]
    m = j.get("mixed")
    if m:
        iops, bw = m["iops"], m["bw_bytes"]
        mean = m["lat_ns"]["mean"] / 1000.0
        tail = p99(m)
    else:
        iops, bw = r["iops"] + w["iops"], r["bw_bytes"] + w["bw_bytes"]
        mean = (r["lat_ns"]["mean"] * r["iops"] + w["lat_ns"]["mean"] * w["iops"]) / 1000.0 / max(iops, 1e-9)
        tails = [t for t in (p99(r) if r["iops"] else None, p99(w) if w["iops"] else None) if t is not None]
        tail = max(tails) if tails else None
    rp99 = p99(r) if r["iops"] else None
    vals = [iops, r["iops"], w["iops"], bw / 1e6, mean, tail,
            r["lat_ns"]["mean"] / 1000.0 if r["iops"] else None, rp99]
    return ",".join("" if v is None else "%.3f" % v for v in vals)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("check", "row"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[1] == "check":
            why = check(argv[2])
            if why:
                print("fio check failed for %s: %s" % (argv[2], why), file=sys.stderr)
                return 1
            return 0
        print(row(argv[2]))
        return 0
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        print("fiojson: %s: %s" % (argv[2], e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
