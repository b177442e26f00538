/*
 * bench_ktree - the key tree of format 3 pools alone (src/lib/engine/ktree.c):
 * cost per operation in process, with pool->lock taken around each call as
 * the engine's operations hold it, and the tree's size per key.
 *
 *   bench_ktree [--keys N] [--block-size B] [DIR]
 *
 * N keys (default 1,000,000) go into one family of a format 3 pool created
 * in DIR (default /var/tmp, removed afterwards): appended in order, then,
 * in a second family, in random order.  Then: gets of present and absent
 * keys (every node cached), walks of the whole tree and of 16 keys from a
 * random key, overwrites right after a commit (every one copies its path),
 * deletes of half the keys in random order, and gets after a reopen with a
 * cache of 64 nodes (loads from the host's page cache).  Not a test: it
 * asserts nothing.  Results: docs/bench-engine.md, "Key tree".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_private.h"
#include "engine/keys.h"
#include "vmsnap/error.h"
#include "vmsnap/pool.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void lk(vms_pool *p)
{
	pthread_rwlock_rdlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
}

static void ulk(vms_pool *p)
{
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
}

static void die(const char *what)
{
	fprintf(stderr, "bench_ktree: %s: %s\n", what, vms_error_last());
	exit(1);
}

static uint64_t fam_new(vms_pool *p)
{
	vrec *r = NULL;
	lk(p);
	if (vol_slot_new(p, &r) < 0)
		die("family record");
	r->kind = VREC_FAMILY;
	r->flags = VREC_HIDDEN;
	r->ver = 0xfffffffeu;
	vol_mark(p, r);
	uint64_t id = r->id;
	ulk(p);
	return id;
}

static void put(vms_pool *p, uint64_t fam, kt_key k, kt_val v)
{
	lk(p);
	int rc = kt_prepare(p, fam, k);
	if (rc >= 0)
		rc = kt_put(p, fam, k, v, 0, NULL);
	ulk(p);
	if (rc < 0)
		die("kt_put");
}

static int nodes_cb(void *ctx, uint64_t blk)
{
	(void)blk;
	(*(uint64_t *)ctx)++;
	return 0;
}

static uint64_t nodes_of(vms_pool *p, uint64_t fam)
{
	uint64_t n = 0;
	lk(p);
	if (kt_check(p, fam, nodes_cb, NULL, &n) < 0)
		die("kt_check");
	ulk(p);
	return n;
}

static int count_cb(void *ctx, kt_key k, kt_val v)
{
	(void)k;
	(void)v;
	(*(uint64_t *)ctx)++;
	return 0;
}

static void row(const char *what, double secs, uint64_t ops)
{
	printf("| %-46s | %10" PRIu64 " | %9.0f | %10.0f |\n", what, ops, secs * 1e9 / (double)ops,
	       (double)ops / secs);
}

/* The key of the i-th of n keys: lblk spread like a disk's blocks, a few
 * versions per block. */
static kt_key key_of(uint64_t i)
{
	return (kt_key){i / 3 * 5, (uint32_t)(i % 3) * 1000 + 7};
}

int main(int argc, char **argv)
{
	uint64_t n = 1000000;
	uint32_t bs = 4096;
	const char *dir = "/var/tmp";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--keys") && i + 1 < argc)
			n = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--block-size") && i + 1 < argc)
			bs = (uint32_t)strtoul(argv[++i], NULL, 0);
		else if (argv[i][0] != '-')
			dir = argv[i];
		else {
			fprintf(stderr, "usage: bench_ktree [--keys N] [--block-size B] [DIR]\n");
			return 2;
		}
	}
	char path[600];
	snprintf(path, sizeof(path), "%s/bench_ktree.%d.pool", dir, (int)getpid());
	vms_pool_options o = {.block_size = bs, .index = VMS_INDEX_KEYS, .cache_bytes = 1ull << 30,
	                      .commit_interval_ms = UINT32_MAX};
	vms_pool *p = NULL;
	uint64_t pool_blocks = n / 20 + 65536;
	if (vms_pool_create_file(&p, path, pool_blocks * bs, &o) < 0)
		die("create pool");
	uint64_t fa = fam_new(p), fb = fam_new(p);
	uint64_t *perm = malloc(n * sizeof(*perm));
	for (uint64_t i = 0; i < n; i++)
		perm[i] = i;
	srandom(1); /* the same order every run */
	for (uint64_t i = n; i > 1; i--) {
		uint64_t j = ((uint64_t)random() << 31 | (uint64_t)random()) % i, t = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	printf("%" PRIu64 " keys, %u-byte blocks\n\n", n, bs);
	printf("| %-46s | %10s | %9s | %10s |\n", "operation", "ops", "ns/op", "ops/s");
	printf("|%s|%s|%s|%s|\n", "------------------------------------------------", "-----------:",
	       "----------:", "-----------:");

	double t = now_s();
	for (uint64_t i = 0; i < n; i++)
		put(p, fa, key_of(i), (kt_val){2 + i % 1000, (uint32_t)i});
	row("put, keys in ascending order", now_s() - t, n);
	t = now_s();
	if (vms_pool_commit(p) < 0)
		die("commit");
	double commit_a = now_s() - t;
	t = now_s();
	for (uint64_t i = 0; i < n; i++)
		put(p, fb, key_of(perm[i]), (kt_val){2 + i % 1000, (uint32_t)i});
	row("put, keys in random order", now_s() - t, n);
	if (vms_pool_commit(p) < 0)
		die("commit");

	uint64_t m = n < 1000000 ? n : 1000000, found = 0;
	t = now_s();
	lk(p);
	for (uint64_t i = 0; i < m; i++) {
		kt_val v;
		found += kt_get(p, fa, key_of(perm[i]), &v) == 1;
	}
	ulk(p);
	row("get, present (cached, one lock hold)", now_s() - t, m);
	t = now_s();
	for (uint64_t i = 0; i < m; i++) {
		kt_val v;
		lk(p);
		found += kt_get(p, fa, key_of(perm[i]), &v) == 1;
		ulk(p);
	}
	row("get, present (cached, lock per get)", now_s() - t, m);
	t = now_s();
	lk(p);
	for (uint64_t i = 0; i < m; i++) {
		kt_key k = key_of(perm[i]);
		kt_val v;
		k.ver += 1;
		found += kt_get(p, fa, k, &v) == 1;
	}
	ulk(p);
	row("get, absent (cached)", now_s() - t, m);
	if (found != 2 * m)
		die("gets found the wrong keys");

	uint64_t seen = 0;
	t = now_s();
	lk(p);
	if (kt_walk(p, fa, (kt_key){0, 0}, (kt_key){UINT64_MAX, UINT32_MAX}, count_cb, &seen) < 0)
		die("kt_walk");
	ulk(p);
	row("walk of the whole tree, per key", now_s() - t, seen);
	uint64_t walks = m / 10;
	seen = 0;
	t = now_s();
	lk(p);
	for (uint64_t i = 0; i < walks; i++) {
		kt_key a = key_of(perm[i]), b = {a.lblk + 25, 0}; /* 5 lblks of 3 versions: 15 keys */
		if (kt_walk(p, fa, a, b, count_cb, &seen) < 0)
			die("kt_walk");
	}
	ulk(p);
	row("walk of ~15 keys from a random key", now_s() - t, walks);

	t = now_s();
	for (uint64_t i = 0; i < m / 10; i++)
		put(p, fa, key_of(perm[i]), (kt_val){3, 1});
	row("overwrite after a commit (random keys)", now_s() - t, m / 10);
	if (vms_pool_commit(p) < 0)
		die("commit");

	uint64_t na = nodes_of(p, fa), nb = nodes_of(p, fb);
	t = now_s();
	for (uint64_t i = 0; i < n / 2; i++) {
		lk(p);
		int rc = kt_prepare(p, fb, key_of(perm[i]));
		if (rc >= 0)
			rc = kt_del(p, fb, key_of(perm[i]), NULL);
		ulk(p);
		if (rc != 1)
			die("kt_del");
	}
	row("delete half the keys (random order)", now_s() - t, n / 2);
	if (vms_pool_commit(p) < 0)
		die("commit");
	uint64_t nb_half = nodes_of(p, fb);

	vms_pool_options small = o;
	small.cache_bytes = 1; /* 64 nodes */
	if (vms_pool_close(p) < 0 || vms_pool_open_file(&p, path, &small) < 0)
		die("reopen");
	uint64_t cold = m / 10;
	t = now_s();
	for (uint64_t i = 0; i < cold; i++) {
		kt_val v;
		lk(p);
		if (kt_get(p, fa, key_of(perm[i]), &v) != 1)
			die("cold get");
		ulk(p);
	}
	row("get, 64-node cache (loads from page cache)", now_s() - t, cold);
	printf("\ncommit of %" PRIu64 " appended keys: %.1f ms\n", n, commit_a * 1e3);
	printf("appended: %" PRIu64 " nodes, %.2f bytes per key, %.3f%% of the data mapped\n", na,
	       (double)na * bs / (double)n, 100.0 * (double)na / (double)n);
	printf("random order: %" PRIu64 " nodes, %.2f bytes per key, %.3f%% of the data mapped\n", nb,
	       (double)nb * bs / (double)n, 100.0 * (double)nb / (double)n);
	printf("random order, half deleted: %" PRIu64 " nodes, %.2f bytes per key left\n", nb_half,
	       (double)nb_half * bs / (double)(n - n / 2));
	vms_pool_close(p);
	unlink(path);
	free(perm);
	return 0;
}
