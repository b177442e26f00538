/*
 * bench_engine - in-process benchmark of the native pool engine (pool.h).
 *
 *   bench_engine [--quick] [--direct] [--index radix|keys] [--cache-mb N] [--csv FILE]
 *                [--sizes 1,16,64] [--max-snaps N] [DIR]
 *
 * --direct opens the pools with O_DIRECT (vms_pool_options.direct_io): the
 * figures are then the device's, not the host page cache's.  --index keys
 * creates format 3 pools (the versioned-key index, docs/design/index-v3.md);
 * --cache-mb sets the index node cache (default: the engine's, 64 MiB).
 *
 * Pool files are created in DIR (default /var/tmp) and removed afterwards.
 * Sections (results as a table on stdout and rows in the CSV file, default
 * DIR/bench_engine.csv):
 *   a. random 4 KiB / 2 KiB read and mixed (67% read) IOPS with 1 and 2
 *      threads on one volume at N = 0, 1, 4, ..., 1024 snapshots, ~1.5% of
 *      the disk rewritten between two snapshots (reads should stay flat;
 *      the mixed runs go to a fresh clone of the volume, deleted after);
 *      also the index cache, resident memory and metadata/data ratio at N
 *      (index nodes and space map apart, and the index growth per snapshot
 *      over the data growth);
 *   b. latency of snapshot create, clone, rollback and delete vs the disk
 *      size (1 GiB fully written; 1, 16, 64 GiB with one 4 KiB block in
 *      every 64 KiB written, so that every index leaf is populated) and vs
 *      the number of snapshots (1 .. 10,000); metadata after each fill;
 *   c. time for the reaper to reclaim a deleted volume / snapshot;
 *   d. write IOPS (2 KiB and 4 KiB, random) in steady state and right after
 *      a snapshot (sub-block writes into shared blocks);
 *   e. the queries (unique bytes, diff) on a fully written volume before
 *      its first snapshot and after one with 1.5% rewritten: time and the
 *      peak memory they add (VmHWM, reset before each).
 * The pool file lives in the page cache: these figures are the engine's
 * own cost, not the disk's.  Not a test: it asserts nothing.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmsnap/error.h"
#include "vmsnap/pool.h"

static int quick;
static int direct; /* --direct: pools opened O_DIRECT (vms_pool_options.direct_io) */
static uint32_t index_kind; /* --index keys: format 3 pools (VMS_INDEX_KEYS) */
static uint64_t cache_mb;   /* --cache-mb N: the index node cache (0: the engine's default) */
static FILE *csv;
static char dir[512] = "/var/tmp";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_engine: %s failed: %d %s\n", what, rc, vms_error_last());
	exit(1);
}

#define OK(expr)                                   \
	do {                                       \
		int rc_ = (int)(expr);             \
		if (rc_ < 0)                       \
			die(#expr, rc_);           \
	} while (0)

static void row(const char *section, const char *metric, const char *param, double value,
                const char *unit)
{
	fprintf(csv, "%s,%s,%s,%.3f,%s\n", section, metric, param, value, unit);
	fflush(csv);
}

/* A field of /proc/self/status in KiB ("VmRSS", "VmHWM"), -1 if none. */
static long status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t n = strlen(field);
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static long rss_kib(void)
{
	return status_kib("VmRSS");
}

/* Read system calls made by this process so far (/proc/self/io syscr):
 * counts the engine's preads exactly, whatever the machine's load. */
static uint64_t read_syscalls(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	unsigned long long v = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "syscr: %llu", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* Preads per random 4 KiB read of the volume (one thread, n reads). */
static double preads_per_read(vms_pool *pool, vms_vol_id vol, uint64_t size, int n)
{
	unsigned char *buf = aligned_alloc(4096, 4096);
	uint64_t seed = 4242;
	uint64_t before = read_syscalls();
	for (int i = 0; i < n; i++)
		OK(vms_vol_read(pool, vol, buf, 4096, rnd(&seed) % (size / 4096) * 4096));
	uint64_t after = read_syscalls();
	free(buf);
	return (double)(after - before) / n;
}

static vms_pool *new_pool(char *path, size_t cap, uint64_t size)
{
	snprintf(path, cap, "%s/bench-engine-XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp", -1);
	close(fd);
	unlink(path);
	vms_pool *pool;
	vms_pool_options o = {0};
	o.direct_io = direct;
	o.index = index_kind;
	o.cache_bytes = cache_mb << 20;
	OK(vms_pool_create_file(&pool, path, size, &o));
	return pool;
}

static void end_pool(vms_pool *pool, const char *path)
{
	vms_pool_close(pool);
	unlink(path);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n ? v[n / 2] : 0;
}

/* ---- a: IOPS vs snapshots ------------------------------------------------ */

struct worker {
	vms_pool *pool;
	vms_vol_id vol;
	uint64_t size;
	size_t io;
	int read_pct;
	uint64_t seed;
	uint64_t ops;
	double cpu;          /* CPU seconds of this thread (user + system) */
	atomic_int *stop;
};

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned char *buf = aligned_alloc(4096, 4096);
	memset(buf, 0x5A, 4096);
	uint64_t slots = w->size / w->io;
	double c0 = thread_cpu_s();
	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		for (int i = 0; i < 64; i++) {
			uint64_t off = rnd(&w->seed) % slots * w->io;
			int rc = (int)(rnd(&w->seed) % 100) < w->read_pct
			                 ? vms_vol_read(w->pool, w->vol, buf, w->io, off)
			                 : vms_vol_write(w->pool, w->vol, buf, w->io, off, 0);
			if (rc < 0)
				die("I/O in a worker", rc);
			w->ops++;
		}
	}
	w->cpu = thread_cpu_s() - c0;
	free(buf);
	return NULL;
}

/* Operations per second of wall time; *cpu_us gets the CPU time per
 * operation, which other processes on a shared machine do not inflate. */
static double iops_once(vms_pool *pool, vms_vol_id vol, uint64_t size, size_t io, int read_pct,
                        int threads, double secs, double *cpu_us)
{
	atomic_int stop = 0;
	struct worker w[2];
	pthread_t th[2];
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker){pool, vol, size, io, read_pct, 1234 + (uint64_t)i * 777, 0, 0,
		                       &stop};
		pthread_create(&th[i], NULL, worker_main, &w[i]);
	}
	double t0 = now_s();
	usleep((useconds_t)(secs * 1e6));
	atomic_store(&stop, 1);
	uint64_t ops = 0;
	double cpu = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		ops += w[i].ops;
		cpu += w[i].cpu;
	}
	*cpu_us = ops ? cpu * 1e6 / (double)ops : 0;
	return (double)ops / (now_s() - t0);
}

/* The best of three runs of secs/3: the machine is shared, and the best run
 * is the one least disturbed by other processes. */
static double iops(vms_pool *pool, vms_vol_id vol, uint64_t size, size_t io, int read_pct,
                   int threads, double secs, double *cpu_us)
{
	double best = 0, best_cpu = 1e30, c;
	for (int i = 0; i < 3; i++) {
		double v = iops_once(pool, vol, size, io, read_pct, threads, secs / 3, &c);
		if (v > best)
			best = v;
		if (c < best_cpu)
			best_cpu = c;
	}
	*cpu_us = best_cpu;
	return best;
}

/* Rewrite `frac` of the disk with random 4 KiB writes. */
static void rewrite(vms_pool *pool, vms_vol_id vol, uint64_t size, double frac, uint64_t *seed)
{
	static unsigned char buf[4096];
	uint64_t n = (uint64_t)((double)size * frac / 4096);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = rnd(seed) % (size / 4096) * 4096;
		memset(buf, (int)(i & 0xFF), 64);
		OK(vms_vol_write(pool, vol, buf, 4096, off, 0));
	}
}

static void fill(vms_pool *pool, vms_vol_id vol, uint64_t size, uint64_t stride)
{
	size_t chunk = 1 << 20;
	unsigned char *buf = malloc(chunk);
	for (size_t i = 0; i < chunk; i++)
		buf[i] = (unsigned char)(i * 7 + 1);
	if (stride == 0) {
		for (uint64_t off = 0; off < size; off += chunk)
			OK(vms_vol_write(pool, vol, buf, size - off < chunk ? size - off : chunk, off, 0));
	} else {
		for (uint64_t off = 0; off < size; off += stride)
			OK(vms_vol_write(pool, vol, buf, 4096, off, 0));
	}
	free(buf);
	OK(vms_pool_commit(pool));
}

/* Metadata as a share of data: index nodes, space map (sized by the pool). */
static void meta_shares(vms_pool *pool, double *index_pct, double *smap_pct, double *all_pct)
{
	vms_pool_stats st;
	OK(vms_pool_stats_get(&st, pool));
	double d = st.data_blocks ? (double)st.data_blocks : 1;
	*index_pct = 100.0 * (double)st.index_blocks / d;
	*smap_pct = 100.0 * (double)st.smap_blocks / d;
	*all_pct = 100.0 * (double)st.meta_blocks / d;
}

static int extent_nop(void *ctx, uint64_t off, uint64_t len, int allocated)
{
	(void)off;
	(void)len;
	*(int *)ctx += allocated;
	return 0;
}

/* CPU µs of the index alone per random 4 KiB lookup: vms_vol_block_status
 * takes the same locks and walks the same cached path as a read, without
 * the data read (whose cost is the host page cache's: bench_pagecache). */
static double lookup_us(vms_pool *pool, vms_vol_id vol, uint64_t size, int n)
{
	uint64_t seed = 777;
	int mapped = 0;
	double best = 1e30;
	for (int r = 0; r < 3; r++) {
		double c0 = thread_cpu_s();
		for (int i = 0; i < n; i++)
			OK(vms_vol_block_status(pool, vol, rnd(&seed) % (size / 4096) * 4096, 4096,
			                        extent_nop, &mapped));
		double us = (thread_cpu_s() - c0) * 1e6 / n;
		if (us < best)
			best = us;
	}
	if (mapped != 3 * n)
		die("lookup_us: a block of the filled volume is not mapped", -1);
	return best;
}

static void section_a(int max_snaps)
{
	uint64_t disk = quick ? (256ull << 20) : (1ull << 30);
	double secs = quick ? 0.4 : 1.5;
	static const int points[] = {0, 1, 4, 16, 64, 256, 1024};
	char path[600];
	/* room for the disk plus 1.5% per snapshot, and metadata */
	uint64_t pool_size = disk + (uint64_t)((double)disk * 0.02 * (max_snaps + 2)) + (1ull << 30);
	vms_pool *pool = new_pool(path, sizeof(path), pool_size);
	vms_vol_id vol;
	OK(vms_vol_create(&vol, pool, disk));
	fill(pool, vol, disk, 0);
	printf("\n(a) random I/O on one %" PRIu64 " MiB volume vs snapshots (%.1f s per cell, "
	       "1.5%% rewritten between snapshots)\n",
	       disk >> 20, secs);
	printf("%6s %10s %10s %10s %10s %10s %10s %10s %10s %9s %8s %9s\n", "snaps", "rd4k-1t",
	       "rd4k-2t", "rd2k-1t", "rd2k-2t", "mix2k-1t", "mix2k-2t", "mix4k-1t", "mix4k-2t",
	       "rss-MiB", "meta%", "preads/rd");
	uint64_t seed = 99;
	int have = 0;
	uint64_t prev_index = 0, prev_data = 0;
	for (size_t p = 0; p < sizeof(points) / sizeof(points[0]); p++) {
		int n = points[p];
		if (n > max_snaps)
			break;
		while (have < n) {
			rewrite(pool, vol, disk, 0.015, &seed);
			vms_vol_id snap;
			OK(vms_vol_snapshot(&snap, pool, &vol, 1));
			have++;
		}
		OK(vms_pool_commit(pool));
		char param[32];
		snprintf(param, sizeof(param), "%d", n);
		double r4[2], r2[2], m2[2], m4[2], cpu[4][2];
		for (int t = 1; t <= 2; t++) {
			r4[t - 1] = iops(pool, vol, disk, 4096, 100, t, secs, &cpu[0][t - 1]);
			r2[t - 1] = iops(pool, vol, disk, 2048, 100, t, secs, &cpu[1][t - 1]);
		}
		/* the mixed runs write: on a clone (a complete index of its own,
		 * like the volume's), so the volume keeps exactly its history */
		vms_vol_id clone;
		OK(vms_vol_clone(&clone, pool, vol));
		for (int t = 1; t <= 2; t++) {
			m2[t - 1] = iops(pool, clone, disk, 2048, 67, t, secs, &cpu[2][t - 1]);
			m4[t - 1] = iops(pool, clone, disk, 4096, 67, t, secs, &cpu[3][t - 1]);
		}
		OK(vms_vol_delete(pool, clone));
		OK(vms_pool_reap_wait(pool));
		OK(vms_pool_commit(pool));
		vms_pool_stats st;
		OK(vms_pool_stats_get(&st, pool));
		double meta = st.data_blocks ? 100.0 * (double)st.meta_blocks / (double)st.data_blocks : 0;
		long rss = rss_kib();
		double preads = preads_per_read(pool, vol, disk, 20000);
		double lk = lookup_us(pool, vol, disk, 200000);
		printf("%6d %10.0f %10.0f %10.0f %10.0f %10.0f %10.0f %10.0f %10.0f %9.1f %8.2f %9.3f\n",
		       n, r4[0], r4[1], r2[0], r2[1], m2[0], m2[1], m4[0], m4[1], (double)rss / 1024, meta,
		       preads);
		printf("%6s %10.2f %10s %10.2f %10s %10.2f %10s %10.2f %10s   CPU µs/op (1 thread); "
		       "index lookup alone %.3f µs\n",
		       "", cpu[0][0], "", cpu[1][0], "", cpu[2][0], "", cpu[3][0], "", lk);
		fflush(stdout);
		const char *names[] = {"read4k", "read2k", "mixed2k", "mixed4k"};
		double *vals[] = {r4, r2, m2, m4};
		for (int k = 0; k < 4; k++)
			for (int t = 0; t < 2; t++) {
				char metric[40];
				snprintf(metric, sizeof(metric), "%s_iops_%dt", names[k], t + 1);
				row("a", metric, param, vals[k][t], "ops/s");
				snprintf(metric, sizeof(metric), "%s_cpu_us_per_op_%dt", names[k], t + 1);
				row("a", metric, param, cpu[k][t], "us");
			}
		row("a", "rss", param, (double)rss / 1024, "MiB");
		row("a", "preads_per_4k_read", param, preads, "preads");
		row("a", "lookup_cpu_us", param, lk, "us");
		row("a", "meta_over_data", param, meta, "%");
		double ipct, spct, apct;
		meta_shares(pool, &ipct, &spct, &apct);
		/* index blocks added per data block added since the previous point */
		double marginal = st.data_blocks > prev_data && n > 0
		                      ? 100.0 * (double)(st.index_blocks - prev_index) /
		                            (double)(st.data_blocks - prev_data)
		                      : 0;
		printf("%6s meta/data: index %.2f%%, space map %.2f%%, volume table %" PRIu64
		       " blocks; since the previous point: %.1f%% index per new data block\n",
		       "", ipct, spct, st.vtab_blocks, marginal);
		prev_index = st.index_blocks;
		prev_data = st.data_blocks;
		row("a", "meta_index_over_data", param, ipct, "%");
		row("a", "meta_smap_over_data", param, spct, "%");
		row("a", "meta_index_marginal", param, marginal, "%");
		row("a", "cache_nodes", param, (double)st.cache_nodes, "nodes");
	}
	end_pool(pool, path);
}

/* ---- b, c: metadata operation latency, reaper -------------------------- */

struct lat { double snap, clone, rollback, del, reap_shared; };

/* Median latencies (µs) of snapshot/clone/rollback/delete on `vol`. */
static struct lat op_latency(vms_pool *pool, vms_vol_id vol, int reps)
{
	double *t = calloc((size_t)reps, sizeof(double));
	vms_vol_id *snaps = calloc((size_t)reps, sizeof(vms_vol_id));
	vms_vol_id *clones = calloc((size_t)reps, sizeof(vms_vol_id));
	unsigned char buf[4096];
	memset(buf, 0x33, sizeof(buf));
	struct lat l;
	for (int i = 0; i < reps; i++) {
		OK(vms_vol_write(pool, vol, buf, 4096, (uint64_t)i * 4096, 0)); /* make it differ */
		double t0 = now_s();
		OK(vms_vol_snapshot(&snaps[i], pool, &vol, 1));
		t[i] = (now_s() - t0) * 1e6;
	}
	l.snap = median(t, reps);
	for (int i = 0; i < reps; i++) {
		double t0 = now_s();
		OK(vms_vol_clone(&clones[i], pool, snaps[i]));
		t[i] = (now_s() - t0) * 1e6;
	}
	l.clone = median(t, reps);
	for (int i = 0; i < reps; i++) {
		double t0 = now_s();
		OK(vms_vol_rollback(pool, vol, snaps[reps - 1 - i]));
		t[i] = (now_s() - t0) * 1e6;
	}
	l.rollback = median(t, reps);
	for (int i = 0; i < reps; i++) {
		double t0 = now_s();
		OK(vms_vol_delete(pool, clones[i]));
		OK(vms_vol_delete(pool, snaps[i]));
		t[i] = (now_s() - t0) * 1e6 / 2;
	}
	l.del = median(t, reps);
	double t0 = now_s();
	OK(vms_pool_reap_wait(pool));
	l.reap_shared = (now_s() - t0) * 1e3;
	OK(vms_pool_commit(pool));
	free(t);
	free(snaps);
	free(clones);
	return l;
}

static void print_lat(const char *label, const char *param, const struct lat *l)
{
	printf("%-22s %10.1f %10.1f %10.1f %10.1f %14.1f\n", label, l->snap, l->clone, l->rollback,
	       l->del, l->reap_shared);
	row("b", "snapshot_create_us", param, l->snap, "us");
	row("b", "clone_us", param, l->clone, "us");
	row("b", "rollback_us", param, l->rollback, "us");
	row("b", "delete_us", param, l->del, "us");
	row("c", "reap_shared_ms", param, l->reap_shared, "ms");
	fflush(stdout);
}

static void meta_after_fill(vms_pool *pool, const char *label, const char *param, double secs)
{
	double ipct, spct, apct;
	vms_pool_stats st;
	meta_shares(pool, &ipct, &spct, &apct);
	OK(vms_pool_stats_get(&st, pool));
	printf("%-22s written %.2f GiB in %.1f s; meta/data: index %.3f%%, space map %.3f%% "
	       "(pool of %.1f GiB), all %.3f%%\n",
	       label, (double)st.data_blocks * st.block_size / (1 << 30), secs, ipct, spct,
	       (double)st.total_blocks * st.block_size / (1 << 30), apct);
	row("b", "fill_seconds", param, secs, "s");
	row("b", "data_written", param, (double)st.data_blocks * st.block_size / (1 << 30), "GiB");
	row("b", "meta_index_over_data", param, ipct, "%");
	row("b", "meta_smap_over_data", param, spct, "%");
	row("b", "meta_over_data", param, apct, "%");
}

static void section_b(const int *sizes_gib, int nsizes, int max_count)
{
	int reps = quick ? 15 : 51;
	char path[600];
	printf("\n(b) median latency in µs (snapshot of the live volume after a 4 KiB write; "
	       "%d of each)\n", reps);
	printf("%-22s %10s %10s %10s %10s %14s\n", "disk / snapshots", "snapshot", "clone",
	       "rollback", "delete", "reap-all (ms)");
	/* a disk written in full: 1 GiB (256 MiB with --quick) */
	{
		uint64_t disk = quick ? (256ull << 20) : (1ull << 30);
		vms_pool *pool = new_pool(path, sizeof(path), disk + (1ull << 30));
		vms_vol_id vol;
		OK(vms_vol_create(&vol, pool, disk));
		double t0 = now_s();
		fill(pool, vol, disk, 0);
		double tf = now_s() - t0;
		char label[64], param[32];
		snprintf(label, sizeof(label), "%" PRIu64 " MiB, all written", disk >> 20);
		snprintf(param, sizeof(param), "full=%" PRIu64 "MiB", disk >> 20);
		meta_after_fill(pool, label, param, tf);
		struct lat l = op_latency(pool, vol, reps);
		print_lat(label, param, &l);
		end_pool(pool, path);
	}
	for (int s = 0; s < nsizes; s++) {
		uint64_t disk = (uint64_t)sizes_gib[s] << 30;
		vms_pool *pool = new_pool(path, sizeof(path), disk / 8 + (1ull << 30));
		vms_vol_id vol;
		OK(vms_vol_create(&vol, pool, disk));
		double t0 = now_s();
		fill(pool, vol, disk, 64 << 10); /* one 4 KiB block per 64 KiB: every leaf populated */
		double tf = now_s() - t0;
		char label[64], param[32];
		snprintf(label, sizeof(label), "%d GiB, 1 in 16 written", sizes_gib[s]);
		snprintf(param, sizeof(param), "disk=%dGiB", sizes_gib[s]);
		meta_after_fill(pool, label, param, tf);
		struct lat l = op_latency(pool, vol, reps);
		print_lat(label, param, &l);
		end_pool(pool, path);
	}
	/* vs the number of snapshots already there */
	uint64_t disk = 1ull << 30;
	vms_pool *pool = new_pool(path, sizeof(path), 2ull << 30);
	vms_vol_id vol;
	OK(vms_vol_create(&vol, pool, disk));
	fill(pool, vol, disk, 64 << 10);
	unsigned char buf[4096];
	memset(buf, 0x44, sizeof(buf));
	uint64_t seed = 5;
	int have = 0;
	for (int n = 1; n <= max_count; n *= 10) {
		while (have < n) {
			OK(vms_vol_write(pool, vol, buf, 4096, rnd(&seed) % (disk / 4096) * 4096, 0));
			vms_vol_id snap;
			OK(vms_vol_snapshot(&snap, pool, &vol, 1));
			have++;
		}
		OK(vms_pool_commit(pool));
		char label[64], param[32];
		snprintf(label, sizeof(label), "1 GiB, %d snapshots", n);
		snprintf(param, sizeof(param), "snaps=%d", n);
		struct lat l = op_latency(pool, vol, reps);
		print_lat(label, param, &l);
	}
	end_pool(pool, path);
}

static void section_c(void)
{
	char path[600];
	uint64_t sizes[] = {64ull << 20, 256ull << 20, 1ull << 30};
	int n = quick ? 2 : 3;
	printf("\n(c) reaper: time to reclaim a deleted volume whose blocks are all unique\n");
	printf("%-14s %12s %18s %14s %14s\n", "data", "delete (µs)", "delete+reap (ms)",
	       "blocks freed", "blocks/s");
	for (int i = 0; i < n; i++) {
		vms_pool *pool = new_pool(path, sizeof(path), sizes[i] + (256ull << 20));
		vms_vol_id vol;
		OK(vms_vol_create(&vol, pool, sizes[i]));
		fill(pool, vol, sizes[i], 0);
		vms_pool_stats before, after;
		OK(vms_pool_stats_get(&before, pool));
		double t0 = now_s();
		OK(vms_vol_delete(pool, vol));
		double t1 = now_s();
		OK(vms_pool_reap_wait(pool));
		double t2 = now_s();
		OK(vms_pool_commit(pool));
		OK(vms_pool_commit(pool));
		OK(vms_pool_stats_get(&after, pool));
		double blocks = (double)(after.free_blocks - before.free_blocks);
		char param[32];
		snprintf(param, sizeof(param), "data=%" PRIu64 "MiB", sizes[i] >> 20);
		/* the reaper starts at once and may finish inside the delete call */
		printf("%-14s %12.1f %18.1f %14.0f %14.0f\n", param, (t1 - t0) * 1e6, (t2 - t0) * 1e3,
		       blocks, blocks / (t2 - t0));
		row("c", "delete_us", param, (t1 - t0) * 1e6, "us");
		row("c", "delete_and_reap_ms", param, (t2 - t0) * 1e3, "ms");
		row("c", "reap_blocks_per_s", param, blocks / (t2 - t0), "blocks/s");
		fflush(stdout);
		end_pool(pool, path);
	}
}

/* ---- d: writes right after a snapshot ---------------------------------- */

static void section_d(void)
{
	uint64_t disk = quick ? (256ull << 20) : (1ull << 30);
	double secs = quick ? 0.3 : 1.0;
	char path[600];
	printf("\n(d) random write IOPS (1 thread) on a fully written %" PRIu64
	       " MiB volume: steady state vs the first %.1f s after a snapshot\n",
	       disk >> 20, secs);
	printf("%-6s %12s %16s %8s %14s %14s\n", "size", "steady", "after-snapshot", "ratio",
	       "steady µs/op", "after µs/op");
	size_t sizes[] = {2048, 4096};
	for (int i = 0; i < 2; i++) {
		vms_pool *pool = new_pool(path, sizeof(path), disk * 3 + (256ull << 20));
		vms_vol_id vol, snap;
		OK(vms_vol_create(&vol, pool, disk));
		fill(pool, vol, disk, 0);
		double c_steady, c_after;
		double steady = iops(pool, vol, disk, sizes[i], 0, 1, secs * 2, &c_steady);
		OK(vms_pool_commit(pool));
		OK(vms_vol_snapshot(&snap, pool, &vol, 1));
		double after = iops(pool, vol, disk, sizes[i], 0, 1, secs, &c_after);
		char param[32];
		snprintf(param, sizeof(param), "%zuk", sizes[i] / 1024);
		printf("%-6s %12.0f %16.0f %8.2f %14.2f %14.2f\n", param, steady, after, after / steady,
		       c_steady, c_after);
		row("d", "write_iops_steady", param, steady, "ops/s");
		row("d", "write_iops_after_snapshot", param, after, "ops/s");
		row("d", "write_cpu_us_steady", param, c_steady, "us");
		row("d", "write_cpu_us_after_snapshot", param, c_after, "us");
		fflush(stdout);
		end_pool(pool, path);
	}
}

/* ---- e: queries -------------------------------------------------------- */

/* Reset the peak resident size to the current one (Linux >= 4.0). */
static void hwm_reset(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (f) {
		fputs("5", f);
		fclose(f);
	}
}

static int extent_sum(void *ctx, uint64_t off, uint64_t len, int allocated)
{
	(void)off;
	*(uint64_t *)ctx += allocated ? len : 0;
	return 0;
}

/* One query: its time and the peak memory it adds, printed and in the CSV. */
static void query(vms_pool *pool, const char *what, const char *param, vms_vol_id a,
                  vms_vol_id b)
{
	uint64_t out = 0;
	long rss = rss_kib();
	hwm_reset();
	double t0 = now_s();
	if (b)
		OK(vms_vol_diff(pool, a, b, extent_sum, &out));
	else
		OK(vms_vol_unique_bytes(&out, pool, a));
	double t = now_s() - t0;
	long peak = status_kib("VmHWM") - rss;
	printf("%-26s %-12s %12.1f %14.2f %16" PRIu64 "\n", what, param, t * 1e3,
	       (double)peak / 1024, out >> 20);
	char metric[64];
	snprintf(metric, sizeof(metric), "%s_ms", what);
	row("e", metric, param, t * 1e3, "ms");
	snprintf(metric, sizeof(metric), "%s_peak_mib", what);
	row("e", metric, param, (double)peak / 1024, "MiB");
}

static void section_e(void)
{
	uint64_t disk = quick ? (256ull << 20) : (2ull << 30);
	char path[600], param[32];
	printf("\n(e) queries on a fully written %" PRIu64 " MiB volume: time and the peak memory "
	       "they add\n", disk >> 20);
	printf("%-26s %-12s %12s %14s %16s\n", "query", "state", "ms", "peak MiB", "result MiB");
	vms_pool *pool = new_pool(path, sizeof(path), disk * 2 + (256ull << 20));
	vms_vol_id vol, snap;
	OK(vms_vol_create(&vol, pool, disk));
	fill(pool, vol, disk, 0);
	snprintf(param, sizeof(param), "no-snapshot");
	query(pool, "unique_bytes_volume", param, vol, 0);
	OK(vms_vol_snapshot(&snap, pool, &vol, 1));
	unsigned char buf[4096];
	memset(buf, 0x5A, sizeof(buf));
	uint64_t seed = 99, blocks = disk / 4096;
	for (uint64_t i = 0; i < blocks * 15 / 1000; i++)
		OK(vms_vol_write(pool, vol, buf, sizeof(buf), rnd(&seed) % blocks * 4096, 0));
	OK(vms_pool_reap_wait(pool));
	OK(vms_pool_commit(pool));
	snprintf(param, sizeof(param), "1-snapshot");
	query(pool, "unique_bytes_volume", param, vol, 0);
	query(pool, "unique_bytes_snapshot", param, snap, 0);
	query(pool, "diff_snapshot_volume", param, snap, vol);
	fflush(stdout);
	end_pool(pool, path);
}

int main(int argc, char **argv)
{
	const char *csv_path = NULL;
	char sizes_arg[64] = "1,16,64";
	int max_snaps = -1;
	const char *only = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = 1;
		else if (strcmp(argv[i], "--direct") == 0)
			direct = 1;
		else if (strcmp(argv[i], "--index") == 0 && i + 1 < argc)
			index_kind = strcmp(argv[++i], "keys") == 0 ? VMS_INDEX_KEYS : VMS_INDEX_RADIX;
		else if (strcmp(argv[i], "--cache-mb") == 0 && i + 1 < argc)
			cache_mb = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
			csv_path = argv[++i];
		else if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc)
			snprintf(sizes_arg, sizeof(sizes_arg), "%s", argv[++i]);
		else if (strcmp(argv[i], "--max-snaps") == 0 && i + 1 < argc)
			max_snaps = atoi(argv[++i]);
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = argv[++i];
		else if (argv[i][0] != '-')
			snprintf(dir, sizeof(dir), "%s", argv[i]);
		else {
			fprintf(stderr,
			        "usage: bench_engine [--quick] [--direct] [--index radix|keys] [--cache-mb N] [--csv FILE] [--sizes 1,16,64] "
			        "[--max-snaps N] [--only abcde] [DIR]\n");
			return 2;
		}
	}
	if (max_snaps < 0)
		max_snaps = quick ? 64 : 1024;
	if (quick && strcmp(sizes_arg, "1,16,64") == 0)
		snprintf(sizes_arg, sizeof(sizes_arg), "1,4");
	int sizes[8], nsizes = 0;
	for (char *tok = strtok(sizes_arg, ","); tok && nsizes < 8; tok = strtok(NULL, ","))
		sizes[nsizes++] = atoi(tok);
	char def_csv[600];
	snprintf(def_csv, sizeof(def_csv), "%s/bench_engine.csv", dir);
	if (!csv_path)
		csv_path = def_csv;
	csv = fopen(csv_path, "w");
	if (!csv) {
		perror(csv_path);
		return 1;
	}
	fprintf(csv, "section,metric,param,value,unit\n");
	printf("bench_engine: pools in %s, %s mode, %s I/O, index %s, cache %s MiB, CSV in %s\n", dir,
	       quick ? "quick" : "full", direct ? "direct (O_DIRECT)" : "buffered",
	       index_kind == VMS_INDEX_KEYS ? "keys (format 3)" : "radix (format 2)",
	       cache_mb ? "set" : "default 64", csv_path);
	if (cache_mb)
		printf("index node cache: %" PRIu64 " MiB\n", cache_mb);
	if (!only || strchr(only, 'a'))
		section_a(max_snaps);
	if (!only || strchr(only, 'b'))
		section_b(sizes, nsizes, quick ? 1000 : 10000);
	if (!only || strchr(only, 'c'))
		section_c();
	if (!only || strchr(only, 'd'))
		section_d();
	if (!only || strchr(only, 'e'))
		section_e();
	fclose(csv);
	return 0;
}
