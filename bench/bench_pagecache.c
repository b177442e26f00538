/*
 * bench_pagecache - what the host's page cache charges for the two changes
 * that snapshots make to a pool file, measured without vmsnap at all:
 *
 *   1. spread: the live disk's blocks end up scattered over a larger file
 *      (after 1,024 snapshots of 1.5% random rewrites, a 1 GiB disk's
 *      262,144 blocks lie among ~17 GiB).  Random 4 KiB preads of the same
 *      number of cached blocks, contiguous against scattered.
 *   2. new pages: a first rewrite of a block that a snapshot keeps must go
 *      to new space, so its pwrite lands in a page the page cache does not
 *      hold yet; without snapshots old blocks are freed and their cached
 *      pages rewritten.  4 KiB pwrites over cached pages against pwrites
 *      into pages never written.
 *
 *   bench_pagecache [--blocks N] [--spread N] [--ops N] [--rounds R] [--threads T] [DIR]
 *
 * Files are created in DIR (default /var/tmp) and removed.  CPU time per
 * operation (this process's user + system) is the figure to read; IOPS are
 * printed too; --threads T runs the reads in T threads at once (as a
 * server's workers do).  Not a test: it asserts nothing.  Results: docs/bench-engine.md
 * and docs/bench-nbd.md.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t rs = 1;

static uint64_t rnd_s(uint64_t *st)
{
	uint64_t z = (*st += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t rnd(void)
{
	return rnd_s(&rs);
}

static double clock_s(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int open_tmp(const char *dir, const char *name, char *path, size_t cap)
{
	snprintf(path, cap, "%s/bench-pagecache-%s-XXXXXX", dir, name);
	int fd = mkstemp(path);
	if (fd < 0)
		die(path);
	return fd;
}

static void put(int fd, const void *buf, uint64_t blk)
{
	if (pwrite(fd, buf, 4096, (off_t)(blk * 4096)) != 4096)
		die("pwrite");
}

struct reader {
	int fd;
	const uint64_t *map;
	uint64_t n, ops, seed;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	char buf[4096];
	for (uint64_t i = 0; i < r->ops; i++)
		if (pread(r->fd, buf, 4096, (off_t)(r->map[rnd_s(&r->seed) % r->n] * 4096)) != 4096)
			die("pread");
	return NULL;
}

/* Random 4 KiB preads of the blocks in map[0..n) by `threads` threads,
 * `ops` in all; CPU µs per read (the whole process's). */
static double reads(int fd, const uint64_t *map, uint64_t n, uint64_t ops, int threads,
                    double *iops)
{
	struct reader r[64];
	pthread_t th[64];
	double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t0 = clock_s(CLOCK_MONOTONIC);
	for (int t = 0; t < threads; t++) {
		r[t] = (struct reader){fd, map, n, ops / (uint64_t)threads, rnd()};
		if (pthread_create(&th[t], NULL, reader_main, &r[t]) != 0)
			die("pthread_create");
	}
	for (int t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	double c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t1 = clock_s(CLOCK_MONOTONIC);
	uint64_t done = ops / (uint64_t)threads * (uint64_t)threads;
	*iops = (double)done / (t1 - t0);
	return (c1 - c0) * 1e6 / (double)done;
}

int main(int argc, char **argv)
{
	const char *dir = "/var/tmp";
	uint64_t nblocks = 262144, spread = 4456448, ops = 400000;
	int rounds = 3, threads = 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--blocks") == 0 && i + 1 < argc)
			nblocks = strtoull(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--spread") == 0 && i + 1 < argc)
			spread = strtoull(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
			ops = strtoull(argv[++i], NULL, 0);
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (argv[i][0] != '-')
			dir = argv[i];
		else {
			fprintf(stderr, "usage: bench_pagecache [--blocks N] [--spread N] [--ops N] "
			                "[--rounds R] [--threads T] [DIR]\n");
			return 2;
		}
	}
	if (spread < nblocks || nblocks == 0 || ops == 0 || rounds < 1 || threads < 1 || threads > 64) {
		fprintf(stderr, "bench_pagecache: need 0 < blocks <= spread, ops > 0, rounds > 0, "
		                "1 <= threads <= 64\n");
		return 2;
	}
	char buf[4096], pa[600], pb[600];
	for (int i = 0; i < 4096; i++)
		buf[i] = (char)i;
	uint64_t *dense = malloc(nblocks * 8), *sparse = malloc(nblocks * 8);
	unsigned char *used = calloc(1, spread);
	if (!dense || !sparse || !used)
		die("malloc");
	/* 1. the same number of cached blocks, contiguous and scattered */
	int fa = open_tmp(dir, "dense", pa, sizeof(pa)), fb = open_tmp(dir, "spread", pb, sizeof(pb));
	for (uint64_t i = 0; i < nblocks; i++) {
		dense[i] = i;
		uint64_t b;
		do
			b = rnd() % spread;
		while (used[b]);
		used[b] = 1;
		sparse[i] = b;
		put(fa, buf, dense[i]);
		put(fb, buf, sparse[i]);
	}
	printf("1. random 4 KiB preads of %" PRIu64 " cached blocks (%" PRIu64 " MiB): contiguous "
	       "against scattered over %" PRIu64 " MiB; %" PRIu64 " reads per cell, %d thread(s)\n",
	       nblocks, nblocks >> 8, spread >> 8, ops, threads);
	printf("%6s %14s %14s %14s %14s %8s\n", "round", "dense µs/rd", "spread µs/rd", "dense IOPS",
	       "spread IOPS", "ratio");
	double sd = 0, ss = 0;
	for (int r = 0; r < rounds; r++) {
		double id, is;
		double cd = reads(fa, dense, nblocks, ops, threads, &id);
		double cs = reads(fb, sparse, nblocks, ops, threads, &is);
		sd += cd;
		ss += cs;
		printf("%6d %14.3f %14.3f %14.0f %14.0f %8.3f\n", r + 1, cd, cs, id, is, cd / cs);
	}
	printf("%6s %14.3f %14.3f %14s %14s %8.3f  (CPU per read, dense / spread)\n", "mean",
	       sd / rounds, ss / rounds, "", "", sd / ss);
	close(fb);
	unlink(pb);

	/* 2. pwrites over cached pages against pwrites into new pages */
	printf("\n2. 4 KiB pwrites: over cached pages (random, in the %" PRIu64 " MiB file) against "
	       "into pages never written (appending); %" PRIu64 " writes per cell\n",
	       nblocks >> 8, ops / 4);
	printf("%6s %16s %16s %8s\n", "round", "cached µs/wr", "new µs/wr", "ratio");
	double wc = 0, wn = 0;
	uint64_t next = nblocks;
	for (int r = 0; r < rounds; r++) {
		uint64_t n = ops / 4;
		double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
		for (uint64_t i = 0; i < n; i++)
			put(fa, buf, rnd() % nblocks);
		double c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
		for (uint64_t i = 0; i < n; i++)
			put(fa, buf, next++);
		double c2 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
		double a = (c1 - c0) * 1e6 / (double)n, b = (c2 - c1) * 1e6 / (double)n;
		wc += a;
		wn += b;
		printf("%6d %16.3f %16.3f %8.3f\n", r + 1, a, b, a / b);
	}
	printf("%6s %16.3f %16.3f %8.3f  (CPU per write, cached / new)\n", "mean", wc / rounds,
	       wn / rounds, wc / wn);
	close(fa);
	unlink(pa);
	free(dense);
	free(sparse);
	free(used);
	return 0;
}
