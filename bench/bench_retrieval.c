/*
 * bench_retrieval - snapshot retrieval by time point versus the number of
 * snapshots in one VM (the paper's section 3.2.3: sort once, then binary
 * search).
 *
 * For each N (1,000 .. 1,000,000 by default) a fresh catalog gets one VM
 * with N ready snapshots, one per minute, names cycling over a few
 * schedules plus a unique name on every 100th; a few share a second.
 * Then:
 *   load     vms_cat_snapshot_list + vms_snapindex_add/sort (what the
 *            control module does on first use of a VM)
 *   latest, latest~k, at_or_before T, at_or_after T, between T..T+1h,
 *   exact full name, unique user name: index queries, random arguments
 *   scan     the same at_or_before answered by a linear scan of the rows
 *            (the O(n) baseline the index replaces)
 *   exec     the whole control path: vms_control_exec of snapshot.find
 *            "vm@before:T" (JSON in and out, catalog row fetch, record)
 *
 * Usage: bench_retrieval [--max N] [--queries Q] [--dir DIR] [--csv]
 * Prints a markdown table (ns per operation; load in ms).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmsnap/catalog.h"
#include "vmsnap/control.h"
#include "vmsnap/error.h"
#include "vmsnap/naming.h"
#include "vmsnap/snapindex.h"

#define BASE_TIME INT64_C(1795428000) /* 2026-11-23T10:00:00Z */

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *sched[] = {"hourly", "daily", "weekly", "monthly"};

/* The i-th snapshot: one per minute, every 50th in the same second as the
 * previous one; name from the schedule or unique on every 100th. */
static int64_t snap_time(size_t i)
{
	return BASE_TIME + (int64_t)(i - i / 50) * 60;
}

static void snap_name(char *out, size_t cap, size_t i)
{
	if (i % 100 == 7)
		snprintf(out, cap, "u%zu", i);
	else
		snprintf(out, cap, "%s", sched[i % 4]);
}

static void die(const char *what)
{
	fprintf(stderr, "bench_retrieval: %s: %s\n", what, vms_error_last());
	exit(1);
}

static int build_catalog(const char *home, size_t n, char vm_uuid[VMS_UUID_BUF])
{
	char path[512];
	vms_catalog *cat;
	snprintf(path, sizeof(path), "%s/catalog.db", home);
	if (vms_catalog_open(&cat, path) < 0)
		die("catalog open");
	vms_cat_sr sr = {0};
	vms_uuid_generate(sr.uuid);
	snprintf(sr.name, sizeof(sr.name), "sr1");
	snprintf(sr.type, sizeof(sr.type), "native");
	sr.location = (char *)"/nonexistent/bench";
	sr.state = VMS_STATE_READY;
	vms_cat_vm vm = {0};
	vms_uuid_generate(vm.uuid);
	snprintf(vm.name, sizeof(vm.name), "vm1");
	snprintf(vm.sr_uuid, sizeof(vm.sr_uuid), "%s", sr.uuid);
	vm.state = VMS_STATE_READY;
	if (vms_catalog_begin(cat) < 0 || vms_cat_sr_insert(cat, &sr) < 0 || vms_cat_vm_insert(cat, &vm) < 0)
		die("catalog setup");
	for (size_t i = 0; i < n; i++) {
		vms_cat_snapshot s = {0};
		vms_uuid_generate(s.uuid);
		snprintf(s.vm_uuid, sizeof(s.vm_uuid), "%s", vm.uuid);
		snap_name(s.name, sizeof(s.name), i);
		s.time = snap_time(i);
		s.created = s.time;
		s.seq = i + 1;
		s.state = VMS_STATE_READY;
		if (vms_cat_snapshot_insert(cat, &s, NULL, 0) < 0)
			die("snapshot insert");
	}
	if (vms_catalog_commit(cat) < 0)
		die("commit");
	vms_catalog_close(cat);
	snprintf(vm_uuid, VMS_UUID_BUF, "%s", vm.uuid);
	return 0;
}

/* Time `q` runs of a query body into `out` (ns per run).  `sink` keeps the
 * compiler from dropping the work. */
#define TIMED(out, q, ...)                              \
	do {                                            \
		double t0__ = now_ns();                 \
		for (size_t k__ = 0; k__ < (q); k__++) { \
			__VA_ARGS__;                    \
		}                                       \
		(out) = (now_ns() - t0__) / (double)(q); \
	} while (0)

int main(int argc, char **argv)
{
	size_t max = 1000000, queries = 200000;
	const char *dir = "/tmp";
	int csv = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
			max = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--queries") == 0 && i + 1 < argc)
			queries = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--csv") == 0)
			csv = 1;
		else {
			fprintf(stderr, "usage: %s [--max N] [--queries Q] [--dir DIR] [--csv]\n", argv[0]);
			return 2;
		}
	}
	if (csv)
		printf("n,build_s,load_ms,latest_ns,latest_k_ns,at_or_before_ns,at_or_after_ns,between_ns,"
		       "exact_ns,name_ns,scan_ns,exec_us\n");
	else
		printf("| snapshots | load (ms) | latest | latest~k | at_or_before | at_or_after | between 1h "
		       "| full name | user name | linear scan | snapshot.find via exec |\n"
		       "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	volatile int64_t sink = 0;
	for (size_t n = 1000; n <= max; n *= 10) {
		char home[512], vm_uuid[VMS_UUID_BUF];
		snprintf(home, sizeof(home), "%s/bench_retrieval_XXXXXX", dir);
		if (!mkdtemp(home))
			die("mkdtemp");
		double tb = now_ns();
		build_catalog(home, n, vm_uuid);
		double build_s = (now_ns() - tb) / 1e9;

		/* load: what the control module does on first use of the VM */
		char path[600];
		vms_catalog *cat;
		snprintf(path, sizeof(path), "%s/catalog.db", home);
		if (vms_catalog_open(&cat, path) < 0)
			die("catalog reopen");
		double tl = now_ns();
		vms_cat_snapshot *rows = NULL;
		size_t nrows = 0;
		vms_snapindex *idx;
		if (vms_cat_snapshot_list(&rows, &nrows, cat, vm_uuid, 0) < 0 || vms_snapindex_new(&idx) < 0)
			die("load");
		for (size_t i = 0; i < nrows; i++)
			if (vms_snapindex_add(idx, rows[i].time, rows[i].seq, (uint64_t)rows[i].rowid, rows[i].name) < 0)
				die("index add");
		if (vms_snapindex_sort(idx) < 0)
			die("index sort");
		double load_ms = (now_ns() - tl) / 1e6;
		int64_t span = snap_time(n - 1) - BASE_TIME + 1;

		double t_latest;
		TIMED(t_latest, queries, sink += vms_snapindex_latest(idx, 0));
		double t_latest_k;
		TIMED(t_latest_k, queries, sink += vms_snapindex_latest(idx, rnd() % n));
		double t_before;
		TIMED(t_before, queries, sink += vms_snapindex_at_or_before(idx, BASE_TIME + (int64_t)(rnd() % (uint64_t)span)));
		double t_after;
		TIMED(t_after, queries, sink += vms_snapindex_at_or_after(idx, BASE_TIME + (int64_t)(rnd() % (uint64_t)span)));
		double t_between;
		TIMED(t_between, queries, {
			size_t f, c;
			int64_t t = BASE_TIME + (int64_t)(rnd() % (uint64_t)span);
			vms_snapindex_between(&f, &c, idx, t, t + 3600);
			sink += (int64_t)(f + c);
		});
		double t_exact;
		TIMED(t_exact, queries, {
			size_t i = rnd() % n;
			char nm[32];
			int64_t r;
			snap_name(nm, sizeof(nm), i);
			sink += (int64_t)vms_snapindex_find_exact(&r, idx, nm, snap_time(i));
		});
		double t_name;
		TIMED(t_name, queries, {
			size_t i = (rnd() % (n / 100)) * 100 + 7;
			char nm[32];
			int64_t r;
			snprintf(nm, sizeof(nm), "u%zu", i);
			sink += (int64_t)vms_snapindex_find_name(&r, 1, idx, nm);
		});
		/* the O(n) baseline: newest row with time <= T by a scan */
		size_t scan_q = queries / (n / 1000 > 0 ? n / 1000 : 1);
		if (scan_q < 20)
			scan_q = 20;
		double t_scan;
		TIMED(t_scan, scan_q, {
			int64_t t = BASE_TIME + (int64_t)(rnd() % (uint64_t)span), best = -1;
			uint64_t bseq = 0;
			for (size_t i = 0; i < nrows; i++)
				if (rows[i].time <= t && (best < 0 || rows[i].time > rows[best].time ||
				                          (rows[i].time == rows[best].time && rows[i].seq > bseq))) {
					best = (int64_t)i;
					bseq = rows[i].seq;
				}
			sink += best;
		});
		free(rows);
		vms_snapindex_free(idx);
		vms_catalog_close(cat);

		/* the whole control path */
		vms_control *ctl;
		if (vms_control_open(&ctl, home) < 0)
			die("control open");
		char *out = NULL, req[256];
		snprintf(req, sizeof(req), "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@latest\"}}");
		if (vms_control_exec(&out, ctl, req) < 0)   /* first use builds the cached index */
			die(out ? out : "exec");
		free(out);
		size_t exec_q = queries / 20 ? queries / 20 : 1;
		double t_exec;
		TIMED(t_exec, exec_q, {
			char iso[VMS_ISO_BUF];
			vms_time_iso(iso, sizeof(iso), BASE_TIME + (int64_t)(rnd() % (uint64_t)span));
			snprintf(req, sizeof(req), "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@before:%s\"}}", iso);
			if (vms_control_exec(&out, ctl, req) < 0)
				die(out ? out : "exec");
			free(out);
		});
		vms_control_close(ctl);
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", home);

		if (csv)
			printf("%zu,%.2f,%.1f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.1f\n", n, build_s, load_ms, t_latest,
			       t_latest_k, t_before, t_after, t_between, t_exact, t_name, t_scan, t_exec / 1000);
		else
			printf("| %zu | %.1f | %.0f ns | %.0f ns | %.0f ns | %.0f ns | %.0f ns | %.0f ns | %.0f ns | %.0f ns "
			       "| %.1f µs |\n", n, load_ms, t_latest, t_latest_k, t_before, t_after, t_between, t_exact,
			       t_name, t_scan, t_exec / 1000);
		fflush(stdout);
	}
	return sink == 42 ? 3 : 0;
}
