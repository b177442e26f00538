#!/usr/bin/env python3
"""Turn a bench/paper.sh results directory into figures and tables.

  report.py --out RESULTS [--plot-dir DIR] [--gp PLOTDIR] [--formats png,svg]

Reads RESULTS/runs.csv (one row per fio pass) and RESULTS/mgmt.csv (one row
per timed management operation), writes gnuplot data files under
RESULTS/plot-data/, draws the figures with the gnuplot scripts in PLOTDIR
(bench/plot) into DIR (default RESULTS/img), and writes RESULTS/summary.md:
markdown tables of the same numbers, for the docs page.

Figures (each as PNG and SVG), in the style of the paper's Figures 9-11 (one
line per system, x = number of snapshots):
  fig-<metric>-<pass>   metric: iops, mbps, lat-mean, lat-p99, open, rss;
                        pass: db (the paper's Table 1 load) or read
  fig-mgmt-n            snapshot create / delete / rollback time vs N
  fig-mgmt-size         the same vs disk size (when the size sweep ran)
Systems measured at N=0 only (the raw-file ceilings) are drawn as dashed
horizontal lines across the whole axis."""

import argparse
import csv
import os
import subprocess
import sys

# Fixed colour and order per system, so every figure reads the same way.
SYSTEMS = [
    ("vmsnap-native", "#d62728", "vmsnap native"),
    ("vmsnap-zfs", "#ff7f0e", "vmsnap zfs"),
    ("vmsnap-reflink", "#8c564b", "vmsnap reflink (XFS)"),
    ("qcow2-chain", "#1f77b4", "qcow2 backing chain"),
    ("qcow2-internal", "#2ca02c", "qcow2 internal snapshots"),
    ("raw-nbdkit", "#7f7f7f", "raw file, nbdkit (ceiling)"),
    ("raw-qemu", "#9467bd", "raw file, qemu-nbd"),
]
ORDER = {s: i for i, (s, _, _) in enumerate(SYSTEMS)}
COLOR = {s: c for s, c, _ in SYSTEMS}
LABEL = {s: l for s, _, l in SYSTEMS}

# metric id -> (CSV column, y label, scale applied to the CSV value)
METRICS = [
    ("iops", "iops", "IOPS", 1.0),
    ("mbps", "mbps", "Throughput (MB/s)", 1.0),
    ("lat-mean", "lat_mean_us", "Mean response time (ms)", 1e-3),
    ("lat-p99", "lat_p99_us", "99th percentile response time (ms)", 1e-3),
    ("open", "open_ms", "Export open time (ms)", 1.0),
    ("rss", "server_rss_kb", "Server peak RSS (MiB)", 1.0 / 1024),
]
PASSES = [("db", "database load (2 KiB, 67% read, random)"), ("read", "read only (2 KiB, random)")]
MGMT_OPS = [("snapshot", "create"), ("delete-newest", "delete newest"), ("rollback", "rollback")]
SIZE_OPS = [("snapshot", "create"), ("rollback", "rollback"), ("delete-middle", "delete middle"),
            ("delete-oldest", "delete oldest")]


def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def sort_systems(names):
    return sorted(names, key=lambda s: (ORDER.get(s, 99), s))


def gp_list(items):
    """A gnuplot word list: every item double-quoted (word() honours quotes)."""
    return " ".join('"%s"' % i.replace('"', "'") for i in items)


def run_gnuplot(script, variables, log):
    cmd = ["gnuplot"]
    for k, v in variables.items():
        if isinstance(v, str):
            cmd += ["-e", "%s='%s'" % (k, v.replace("'", "''"))]
        else:
            cmd += ["-e", "%s=%s" % (k, v)]
    cmd.append(script)
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.stdout or r.stderr:
        log.write(r.stdout + r.stderr)
    if r.returncode != 0:
        raise RuntimeError("gnuplot %s failed (%d): %s" % (os.path.basename(script), r.returncode, r.stderr.strip()))


def vs_n_figures(runs, data_dir, img_dir, gp_dir, formats, log):
    made = []
    ns = sorted({int(r["n"]) for r in runs})
    if not ns:
        return made
    pos = {n: i for i, n in enumerate(ns)}
    xtics = ", ".join('"%d" %d' % (n, i) for n, i in pos.items())
    xmax = max(len(ns) - 1, 1)
    for pass_id, pass_title in PASSES:
        rows = [r for r in runs if r["pass"] == pass_id]
        systems = sort_systems({r["system"] for r in rows})
        for metric, col, ylabel, scale in METRICS:
            files, titles, colors, dashed = [], [], [], []
            for s in systems:
                pts = sorted((int(r["n"]), num(r[col])) for r in rows if r["system"] == s)
                pts = [(n, v * scale) for n, v in pts if v is not None]
                if not pts:
                    continue
                path = os.path.join(data_dir, "%s-%s-%s.dat" % (metric, pass_id, s))
                with open(path, "w", encoding="utf-8") as f:
                    f.write("# x n %s\n" % col)
                    if len(pts) == 1 and pts[0][0] == 0 and len(ns) > 1:
                        # measured without snapshots only: a ceiling line
                        f.write("0 0 %.6g\n%d 0 %.6g\n" % (pts[0][1], xmax, pts[0][1]))
                        dashed.append("1")
                    else:
                        for n, v in pts:
                            f.write("%d %d %.6g\n" % (pos[n], n, v))
                        dashed.append("0")
                files.append(path)
                titles.append(LABEL.get(s, s))
                colors.append(COLOR.get(s, "#000000"))
            if not files:
                continue
            for fmt in formats:
                out = os.path.join(img_dir, "fig-%s-%s.%s" % (metric, pass_id, fmt))
                run_gnuplot(os.path.join(gp_dir, "vs_n.gp"), {
                    "files": gp_list(files), "titles": gp_list(titles), "colors": gp_list(colors),
                    "dashed": " ".join(dashed), "xtics_spec": xtics, "xmax": xmax,
                    "ylabel": ylabel, "title": "%s vs number of snapshots: %s" % (ylabel.split(" (")[0], pass_title),
                    "fmt": fmt, "out": out}, log)
                made.append(out)
    return made


def mgmt_n_figure(mgmt, main_size, data_dir, img_dir, gp_dir, formats, log):
    rows = [r for r in mgmt if r.get("series", "n") == "n" and num(r["disk_bytes"]) == main_size]
    if not rows:
        return []
    files, titles, colors, panels = [], [], [], []
    for op, op_title in MGMT_OPS:
        for s in sort_systems({r["system"] for r in rows if r["op"] == op}):
            pts = {}
            for r in rows:
                if r["op"] == op and r["system"] == s and num(r["ms"]) is not None:
                    pts.setdefault(int(r["n"]), []).append(num(r["ms"]))
            path = os.path.join(data_dir, "mgmt-n-%s-%s.dat" % (op, s))
            with open(path, "w", encoding="utf-8") as f:
                f.write("# n ms (mean of the operations at this N)\n")
                for n in sorted(pts):
                    f.write("%d %.6g\n" % (n, max(sum(pts[n]) / len(pts[n]), 1e-3)))
            files.append(path)
            titles.append(LABEL.get(s, s))
            colors.append(COLOR.get(s, "#000000"))
            panels.append(str(1 + [o for o, _ in MGMT_OPS].index(op)))
    made = []
    for fmt in formats:
        out = os.path.join(img_dir, "fig-mgmt-n.%s" % fmt)
        run_gnuplot(os.path.join(gp_dir, "mgmt.gp"), {
            "files": gp_list(files), "titles": gp_list(titles), "colors": gp_list(colors),
            "panels": " ".join(panels), "panel_titles": gp_list(["snapshot %s" % t for _, t in MGMT_OPS]),
            "xlabel": "Number of snapshots", "logx": 1, "fmt": fmt, "out": out,
            "title": "Management operations vs number of snapshots (%s disk)" % human(main_size)}, log)
        made.append(out)
    return made


def mgmt_size_figure(mgmt, data_dir, img_dir, gp_dir, formats, log):
    rows = [r for r in mgmt if r.get("series") == "size"]
    if not rows:
        return []
    files, titles, colors, panels = [], [], [], []
    for k, (op, _) in enumerate(SIZE_OPS):
        for s in sort_systems({r["system"] for r in rows if r["op"] == op}):
            pts = {}
            for r in rows:
                if r["op"] == op and r["system"] == s and num(r["ms"]) is not None:
                    pts.setdefault(int(num(r["disk_bytes"])), []).append(num(r["ms"]))
            path = os.path.join(data_dir, "mgmt-size-%s-%s.dat" % (op, s))
            with open(path, "w", encoding="utf-8") as f:
                f.write("# disk_GiB ms (mean of the operations at this size)\n")
                for b in sorted(pts):
                    f.write("%.6g %.6g\n" % (b / 2**30, max(sum(pts[b]) / len(pts[b]), 1e-3)))
            files.append(path)
            titles.append(LABEL.get(s, s))
            colors.append(COLOR.get(s, "#000000"))
            panels.append(str(k + 1))
    made = []
    for fmt in formats:
        out = os.path.join(img_dir, "fig-mgmt-size.%s" % fmt)
        run_gnuplot(os.path.join(gp_dir, "mgmt.gp"), {
            "files": gp_list(files), "titles": gp_list(titles), "colors": gp_list(colors),
            "panels": " ".join(panels), "panel_titles": gp_list(["snapshot %s" % t for _, t in SIZE_OPS]),
            "xlabel": "Disk size (GiB)", "logx": 1, "fmt": fmt, "out": out,
            "title": "Management operations vs disk size (3 snapshots)"}, log)
        made.append(out)
    return made


def human(b):
    b = int(b)
    for unit, m in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= m and b % m == 0:
            return "%d %s" % (b // m, unit)
    return "%d B" % b


def fmt_k(v):
    if v is None:
        return "-"
    return "%.1fk" % (v / 1000) if v >= 1000 else "%.0f" % v


def summary(runs, mgmt, checks):
    out = []
    ns = sorted({int(r["n"]) for r in runs})
    for pass_id, pass_title in PASSES:
        rows = [r for r in runs if r["pass"] == pass_id]
        if not rows:
            continue
        out.append("IOPS, %s:\n" % pass_title)
        out.append("| System | " + " | ".join("N=%d" % n for n in ns) + " |")
        out.append("|---" * (len(ns) + 1) + "|")
        for s in sort_systems({r["system"] for r in rows}):
            by_n = {int(r["n"]): num(r["iops"]) for r in rows if r["system"] == s}
            out.append("| %s | " % LABEL.get(s, s) + " | ".join(fmt_k(by_n.get(n)) for n in ns) + " |")
        out.append("")
    rows = [r for r in runs if r["pass"] == "read"]
    if rows:
        out.append("Mean / p99 read latency (ms), export open time (ms) and server peak RSS (MiB) "
                   "at the smallest and largest N measured:\n")
        out.append("| System | N | read mean | read p99 | open | RSS |")
        out.append("|---|---|---|---|---|---|")
        for s in sort_systems({r["system"] for r in rows}):
            mine = sorted((int(r["n"]), r) for r in rows if r["system"] == s)
            for n, r in ([mine[0], mine[-1]] if len(mine) > 1 else mine):
                out.append("| %s | %d | %.2f | %.2f | %.0f | %.1f |" % (
                    LABEL.get(s, s), n, num(r["lat_mean_us"]) / 1e3, (num(r["lat_p99_us"]) or 0) / 1e3,
                    num(r["open_ms"]) or 0, (num(r["server_rss_kb"]) or 0) / 1024))
        out.append("")
    if mgmt:
        out.append("Management operations (ms; median over the N measured, and the value at the largest N):\n")
        out.append("| System | op | median | at largest N |")
        out.append("|---|---|---|---|")
        sizes = {num(r["disk_bytes"]) for r in mgmt if r.get("series", "n") == "n"}
        for s in sort_systems({r["system"] for r in mgmt}):
            for op, _ in MGMT_OPS + [("delete-middle", ""), ("delete-oldest", "")]:
                v = sorted((int(r["n"]), num(r["ms"])) for r in mgmt
                           if r["system"] == s and r["op"] == op and r.get("series", "n") == "n"
                           and num(r["disk_bytes"]) in sizes)
                if not v:
                    continue
                ms = sorted(x for _, x in v)
                out.append("| %s | %s | %.1f | %.1f (N=%d) |" % (LABEL.get(s, s), op, ms[len(ms) // 2], v[-1][1], v[-1][0]))
        out.append("")
    if checks:
        bad = [c for c in checks if c["result"] == "FAIL"]
        ok = [c for c in checks if c["result"] == "ok"]
        out.append("Self-checks: %d passed, %d failed%s." % (len(ok), len(bad), "".join(
            "; FAILED %s %s at N=%s (%s)" % (c["system"], c["check"], c["n"], c["detail"]) for c in bad)))
        skipped = [c for c in checks if c["result"] in ("skipped", "stopped")]
        for c in skipped:
            out.append("Note: %s %s (%s)." % (c["system"], c["result"], c["detail"]))
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="results directory of bench/paper.sh")
    ap.add_argument("--plot-dir", help="where the figures go (default OUT/img)")
    ap.add_argument("--gp", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plot"))
    ap.add_argument("--formats", default="png,svg")
    ap.add_argument("--disk-bytes", type=int, help="disk size of the N sweep (default: the most common in runs.csv)")
    args = ap.parse_args()
    runs = read_csv(os.path.join(args.out, "runs.csv"))
    mgmt = read_csv(os.path.join(args.out, "mgmt.csv"))
    checks = read_csv(os.path.join(args.out, "checks.csv"))
    if not runs:
        print("report: no runs in %s/runs.csv" % args.out, file=sys.stderr)
        return 1
    img_dir = args.plot_dir or os.path.join(args.out, "img")
    data_dir = os.path.join(args.out, "plot-data")
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(data_dir, exist_ok=True)
    formats = [f for f in args.formats.split(",") if f]
    main_size = args.disk_bytes
    if main_size is None:
        sizes = [num(r["disk_bytes"]) for r in mgmt if r.get("series", "n") == "n"]
        main_size = max(set(sizes), key=sizes.count) if sizes else None
    made = []
    try:
        made += vs_n_figures(runs, data_dir, img_dir, args.gp, formats, sys.stderr)
        if main_size is not None:
            made += mgmt_n_figure(mgmt, main_size, data_dir, img_dir, args.gp, formats, sys.stderr)
        made += mgmt_size_figure(mgmt, data_dir, img_dir, args.gp, formats, sys.stderr)
    except (RuntimeError, OSError) as e:
        print("report: %s" % e, file=sys.stderr)
        return 1
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(summary(runs, mgmt, checks))
    for m in made:
        if not os.path.exists(m) or os.path.getsize(m) == 0:
            print("report: %s was not written" % m, file=sys.stderr)
            return 1
    print("report: %d figures in %s, summary in %s" % (len(made), img_dir, os.path.join(args.out, "summary.md")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
