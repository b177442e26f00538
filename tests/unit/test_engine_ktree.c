/*
 * Tests of the key tree (src/lib/engine/ktree.c, keys.h): the copy-on-write
 * B+tree of (lblk, version) -> (pblk, crc) keys of a format 3 family.
 *
 * The tree is driven directly (pool->lock and commit_lock shared taken
 * around each call, as the engine's operations hold them) on family
 * records made by the test, and compared with a sorted array:
 *   - unit tests: empty tree, put/get/overwrite/delete, walks of ranges,
 *     splits and height, leaf fill and metadata per key, deletes down to an
 *     empty tree with every block back, kt_destroy_step, 64 KiB blocks;
 *   - random_ops_match_a_sorted_array: random puts, overwrites, deletes,
 *     gets and walks with commits and reopens, on a cache of 64 nodes (so
 *     nodes are loaded and evicted all the time); VMS_SEED replays,
 *     VMS_KTREE_OPS sets the length;
 *   - power_cuts_recover_the_last_commit: the same operations on the fault
 *     shim (tests/model/test_engine_crash.c's I/O layer), cut at a random
 *     write or sync: reopened, the tree equals the model as of the last
 *     commit (or of the commit in flight), kt_check is clean and no block
 *     leaked; VMS_KTREE_CUTS sets the number of cuts;
 *   - a full pool: kt_put fails with VMS_ENOSPC and changes nothing;
 *   - a damaged node on disk: VMS_ECORRUPT with a message.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_private.h"
#include "engine/keys.h"
#include "vmsnap/io_fault.h"
#include "../model/test_engine_model.h"

/* ---- pools, families, locking ---------------------------------------------- */

static char tmpdir[256];

static const char *path_of(const char *name)
{
	static char buf[4][512];
	static int k;
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/vms-ktree-XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

static vms_pool_options kopts(uint32_t bs, uint64_t cache_bytes)
{
	vms_pool_options o = {0};
	o.block_size = bs;
	o.cache_bytes = cache_bytes;
	o.index = VMS_INDEX_KEYS;
	o.commit_interval_ms = UINT32_MAX; /* commits only when the test asks */
	return o;
}


static vms_pool *reopen(vms_pool *p, const char *name, const vms_pool_options *o)
{
	if (p && vms_pool_close(p) < 0)
		fprintf(stderr, "  close %s: %s\n", name, vms_error_last());
	p = NULL;
	if (vms_pool_open_file(&p, path_of(name), o) < 0)
		fprintf(stderr, "  open %s: %s\n", name, vms_error_last());
	return p;
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

/* A family record with an empty key tree (as keyvol.c makes them, without
 * versions). */
static uint64_t fam_new(vms_pool *p)
{
	vrec *r = NULL;
	uint64_t id = 0;
	lk(p);
	if (vol_slot_new(p, &r) == 0) {
		r->kind = VREC_FAMILY;
		r->flags = VREC_HIDDEN;
		r->ver = 0xfffffffeu;
		vol_mark(p, r);
		id = r->id;
	}
	ulk(p);
	return id;
}

/* A new format 3 pool file and, when fam is not NULL, a family in it. */
static vms_pool *new_pool(const char *name, uint64_t size, const vms_pool_options *o, uint64_t *fam)
{
	vms_pool *p = NULL;
	unlink(path_of(name));
	if (vms_pool_create_file(&p, path_of(name), size, o) < 0)
		fprintf(stderr, "  create %s: %s\n", name, vms_error_last());
	if (p && fam && !(*fam = fam_new(p))) {
		vms_pool_close(p);
		p = NULL;
	}
	return p;
}

static vrec fam_copy(vms_pool *p, uint64_t fam)
{
	vrec c = {0};
	lk(p);
	vrec *r = vol_find(p, fam);
	if (r)
		c = *r;
	ulk(p);
	return c;
}

static int put(vms_pool *p, uint64_t fam, kt_key k, kt_val v, kt_val *old)
{
	lk(p);
	int rc = kt_prepare(p, fam, k);
	if (rc >= 0)
		rc = kt_put(p, fam, k, v, 0, old);
	ulk(p);
	return rc;
}

static int del(vms_pool *p, uint64_t fam, kt_key k, kt_val *old)
{
	lk(p);
	int rc = kt_prepare(p, fam, k);
	if (rc >= 0)
		rc = kt_del(p, fam, k, old);
	ulk(p);
	return rc;
}

static int get(vms_pool *p, uint64_t fam, kt_key k, kt_val *v)
{
	lk(p);
	int rc = kt_get(p, fam, k, v);
	ulk(p);
	return rc;
}

static int count_node(void *ctx, uint64_t blk)
{
	(void)blk;
	(*(uint64_t *)ctx)++;
	return 0;
}

/* kt_check; *nodes (may be NULL) receives the node count.  Prints the error. */
static int check(vms_pool *p, uint64_t fam, uint64_t *nodes)
{
	uint64_t n = 0;
	lk(p);
	int rc = kt_check(p, fam, count_node, NULL, &n);
	ulk(p);
	if (rc < 0)
		fprintf(stderr, "  kt_check: %s\n", vms_error_last());
	if (nodes)
		*nodes = n;
	return rc;
}

static kt_key K(uint64_t lblk, uint32_t ver) { return (kt_key){lblk, ver}; }
static kt_val V(uint64_t pblk, uint32_t crc) { return (kt_val){pblk, crc}; }

/* A value derived from the key and a generation (pblk in [2, 2+range)). */
static kt_val val_for(kt_key k, uint32_t gen, uint64_t range)
{
	uint64_t h = (k.lblk * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)k.ver << 20) ^ gen;
	h ^= h >> 29;
	return V(2 + h % range, (uint32_t)(h >> 7) ^ gen);
}

/* ---- the reference: a sorted array ----------------------------------------------- */

typedef struct kv {
	kt_key k;
	kt_val v;
} kv;

typedef struct kmodel {
	kv *e;
	size_t n, cap;
} kmodel;

static size_t km_lower(const kmodel *m, kt_key k)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (kt_cmp(m->e[mid].k, k) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* 1 when k existed (overwritten), 0 when inserted. */
static int km_put(kmodel *m, kt_key k, kt_val v)
{
	size_t i = km_lower(m, k);
	if (i < m->n && kt_cmp(m->e[i].k, k) == 0) {
		m->e[i].v = v;
		return 1;
	}
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 1024;
		m->e = realloc(m->e, m->cap * sizeof(*m->e));
	}
	memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof(*m->e));
	m->e[i] = (kv){k, v};
	m->n++;
	return 0;
}

static int km_del(kmodel *m, kt_key k)
{
	size_t i = km_lower(m, k);
	if (i >= m->n || kt_cmp(m->e[i].k, k) != 0)
		return 0;
	memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(*m->e));
	m->n--;
	return 1;
}

static void km_copy(kmodel *dst, const kmodel *src)
{
	if (dst->cap < src->n) {
		dst->cap = src->n + 1024;
		dst->e = realloc(dst->e, dst->cap * sizeof(*dst->e));
	}
	if (src->n)
		memcpy(dst->e, src->e, src->n * sizeof(*src->e));
	dst->n = src->n;
}

static int kv_cmp(const void *a, const void *b)
{
	return kt_cmp(((const kv *)a)->k, ((const kv *)b)->k);
}

/* Sort entries appended in any order (distinct keys): cheaper than km_put
 * one at a time for large models. */
static void km_sort(kmodel *m)
{
	qsort(m->e, m->n, sizeof(*m->e), kv_cmp);
}

static void km_append(kmodel *m, kt_key k, kt_val v)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 1024;
		m->e = realloc(m->e, m->cap * sizeof(*m->e));
	}
	m->e[m->n++] = (kv){k, v};
}

static void km_free(kmodel *m)
{
	free(m->e);
	memset(m, 0, sizeof(*m));
}

/* ---- walks ------------------------------------------------------------------ */

typedef struct collect {
	kmodel got;
	size_t stop_after;   /* 0: never stop */
	int fail_with;       /* nonzero: return it at stop_after instead of 1 */
} collect;

static int collect_cb(void *ctx, kt_key k, kt_val v)
{
	collect *c = ctx;
	if (c->got.n == c->got.cap) {
		c->got.cap = c->got.cap ? 2 * c->got.cap : 1024;
		c->got.e = realloc(c->got.e, c->got.cap * sizeof(*c->got.e));
	}
	c->got.e[c->got.n++] = (kv){k, v};
	if (c->stop_after && c->got.n == c->stop_after)
		return c->fail_with ? c->fail_with : 1;
	return 0;
}

static int walk(vms_pool *p, uint64_t fam, kt_key from, kt_key to, collect *c)
{
	lk(p);
	int rc = kt_walk(p, fam, from, to, collect_cb, c);
	ulk(p);
	return rc;
}

/* 1 when the walk of [from, to) returns exactly the model's keys there. */
static int walk_matches(vms_pool *p, uint64_t fam, const kmodel *m, kt_key from, kt_key to,
                        char *why, size_t cap)
{
	collect c = {0};
	int rc = walk(p, fam, from, to, &c), ok = 1;
	size_t lo = km_lower(m, from), hi = kt_cmp(from, to) < 0 ? km_lower(m, to) : lo;
	if (rc != 0) {
		snprintf(why, cap, "kt_walk returned %d: %s", rc, vms_error_last());
		ok = 0;
	} else if (c.got.n != hi - lo) {
		snprintf(why, cap, "walk of [(%" PRIu64 ",%u), (%" PRIu64 ",%u)) gave %zu keys, model %zu",
		         from.lblk, from.ver, to.lblk, to.ver, c.got.n, hi - lo);
		ok = 0;
	} else {
		for (size_t i = 0; i < c.got.n; i++) {
			const kv *a = &c.got.e[i], *b = &m->e[lo + i];
			if (kt_cmp(a->k, b->k) != 0 || a->v.pblk != b->v.pblk || a->v.crc != b->v.crc) {
				snprintf(why, cap, "walk key %zu: (%" PRIu64 ",%u)->%" PRIu64 "/%08x, model "
				         "(%" PRIu64 ",%u)->%" PRIu64 "/%08x", i, a->k.lblk, a->k.ver, a->v.pblk,
				         a->v.crc, b->k.lblk, b->k.ver, b->v.pblk, b->v.crc);
				ok = 0;
				break;
			}
		}
	}
	km_free(&c.got);
	return ok;
}

static const kt_key KMIN = {0, 0}, KMAX = {UINT64_MAX, UINT32_MAX};

/* The whole tree equals the model, the check is clean, and the record's
 * key count is right. */
static int tree_equals(vms_pool *p, uint64_t fam, const kmodel *m, char *why, size_t cap)
{
	if (!walk_matches(p, fam, m, KMIN, KMAX, why, cap))
		return 0;
	vrec r = fam_copy(p, fam);
	if (r.nkeys != m->n) {
		snprintf(why, cap, "record says %" PRIu64 " keys, model has %zu", r.nkeys, m->n);
		return 0;
	}
	if (check(p, fam, NULL) < 0) {
		snprintf(why, cap, "kt_check: %s", vms_error_last());
		return 0;
	}
	return 1;
}

#define CHECK_TREE(p, fam, m)                                                   \
	do {                                                                    \
		char why__[256];                                                \
		if (!tree_equals(p, fam, m, why__, sizeof(why__))) {            \
			fprintf(stderr, "  %s:%d: tree differs: %s\n", __FILE__, __LINE__, why__); \
			test_failures_in_case++;                                \
		}                                                               \
	} while (0)

/* Leaf capacity, as docs/format.md gives it. */
static uint64_t leaf_cap(uint32_t bs) { return (bs - 20) / 18; }

/* ---- unit tests ------------------------------------------------------------------ */

TEST(empty_tree)
{
	vms_pool_options o = kopts(4096, 0);
	uint64_t fam = 0;
	vms_pool *p = new_pool("empty", 16ull << 20, &o, &fam);
	REQUIRE(p);
	REQUIRE(fam);
	kt_val v = {0, 0};
	collect c = {0};
	CHECK(get(p, fam, K(1, 1), &v) == 0);
	CHECK(walk(p, fam, KMIN, KMAX, &c) == 0 && c.got.n == 0);
	CHECK(del(p, fam, K(1, 1), NULL) == 0);
	uint64_t nodes = 1;
	CHECK(check(p, fam, &nodes) == 0 && nodes == 0);
	lk(p);
	CHECK(kt_destroy_step(p, fam, 10) == 0);
	CHECK(kt_get(p, fam + 100, K(1, 1), &v) == VMS_ENOTFOUND);
	CHECK(kt_put(p, fam + 100, K(1, 1), V(5, 0), 0, NULL) == VMS_ENOTFOUND);
	ulk(p);
	vrec r = fam_copy(p, fam);
	CHECK(r.root == 0 && r.depth == 0 && r.nkeys == 0);
	p = reopen(p, "empty", &o);
	REQUIRE(p);
	CHECK(get(p, fam, K(1, 1), &v) == 0);
	CHECK(check(p, fam, NULL) == 0);
	vms_pool_close(p);
}

TEST(put_get_overwrite_delete)
{
	vms_pool_options o = kopts(4096, 0);
	uint64_t fam = 0;
	vms_pool *p = new_pool("basic", 16ull << 20, &o, &fam);
	REQUIRE(p);
	kt_val v = {0, 0}, old = {0, 0};
	CHECK(put(p, fam, K(5, 1), V(100, 7), NULL) == 0);
	CHECK(get(p, fam, K(5, 1), &v) == 1 && v.pblk == 100 && v.crc == 7);
	CHECK(get(p, fam, K(5, 2), &v) == 0);
	CHECK(get(p, fam, K(4, 1), &v) == 0);
	vrec r = fam_copy(p, fam);
	CHECK(r.depth == 1 && r.nkeys == 1 && r.root && r.root_pending);
	CHECK(put(p, fam, K(5, 1), V(200, 9), &old) == 1 && old.pblk == 100 && old.crc == 7);
	CHECK(get(p, fam, K(5, 1), &v) == 1 && v.pblk == 200 && v.crc == 9);
	CHECK(put(p, fam, K(5, 0), V(0, 0), NULL) == 0); /* a tombstone */
	CHECK(get(p, fam, K(5, 0), &v) == 1 && v.pblk == 0);
	CHECK(put(p, fam, K((1ull << 40) - 1, UINT32_MAX), V(3, 1), NULL) == 0);
	CHECK(fam_copy(p, fam).nkeys == 3);
	/* out of bounds: refused, nothing changes */
	CHECK(put(p, fam, K(1ull << 40, 0), V(3, 0), NULL) == VMS_EINVAL);
	CHECK(put(p, fam, K(1, 0), V(1, 0), NULL) == VMS_EINVAL);
	CHECK(put(p, fam, K(1, 0), V(4096, 0), NULL) == VMS_EINVAL);
	CHECK(check(p, fam, NULL) == 0);
	CHECK_OK(vms_pool_commit(p));
	r = fam_copy(p, fam);
	CHECK(!r.root_pending && r.root_crc != 0);
	/* a committed leaf is copied, the old block freed */
	uint64_t root0 = r.root;
	CHECK(put(p, fam, K(6, 1), V(300, 1), NULL) == 0);
	CHECK(fam_copy(p, fam).root != root0);
	CHECK(del(p, fam, K(5, 1), &old) == 1 && old.pblk == 200);
	CHECK(del(p, fam, K(5, 1), &old) == 0);
	CHECK(get(p, fam, K(5, 1), &v) == 0);
	CHECK(get(p, fam, K(6, 1), &v) == 1 && v.pblk == 300);
	p = reopen(p, "basic", &o);
	REQUIRE(p);
	CHECK(get(p, fam, K(6, 1), &v) == 1 && v.pblk == 300);
	CHECK(get(p, fam, K(5, 0), &v) == 1 && v.pblk == 0);
	CHECK(get(p, fam, K(5, 1), &v) == 0);
	CHECK(del(p, fam, K(5, 0), NULL) == 1);
	CHECK(del(p, fam, K(6, 1), NULL) == 1);
	CHECK(del(p, fam, K((1ull << 40) - 1, UINT32_MAX), NULL) == 1);
	r = fam_copy(p, fam);
	CHECK(r.root == 0 && r.depth == 0 && r.nkeys == 0 && !r.root_pending);
	CHECK(check(p, fam, NULL) == 0);
	/* kt_put without kt_prepare on a cold cache: refused, not loaded */
	CHECK(put(p, fam, K(7, 7), V(7, 7), NULL) == 0);
	p = reopen(p, "basic", &o);
	REQUIRE(p);
	lk(p);
	CHECK(kt_put(p, fam, K(8, 8), V(8, 8), 0, NULL) == VMS_EIO);
	CHECK(kt_prepare(p, fam, K(8, 8)) == 0 && kt_put(p, fam, K(8, 8), V(8, 8), 0, NULL) == 0);
	ulk(p);
	CHECK(check(p, fam, NULL) == 0);
	vms_pool_close(p);
}

TEST(walks_of_ranges)
{
	vms_pool_options o = kopts(4096, 0);
	uint64_t fam = 0;
	vms_pool *p = new_pool("walk", 32ull << 20, &o, &fam);
	REQUIRE(p);
	kmodel m = {0};
	for (uint64_t b = 0; b < 3000; b++)
		for (uint32_t ver = 1; ver <= 9; ver += 4) {
			kt_val v = val_for(K(b, ver), 0, 4000);
			CHECK(put(p, fam, K(b, ver), v, NULL) == 0);
			km_put(&m, K(b, ver), v);
		}
	char why[256];
	collect c = {0};
	CHECK(walk(p, fam, K(10, 5), K(12, 5), &c) == 0 && c.got.n == 6);
	static const kt_key want[6] = {{10, 5}, {10, 9}, {11, 1}, {11, 5}, {11, 9}, {12, 1}};
	for (size_t i = 0; i < c.got.n && i < 6; i++)
		CHECK(kt_cmp(c.got.e[i].k, want[i]) == 0);
	km_free(&c.got);
	/* a callback stops the walk (1) or fails it (its error) */
	c = (collect){.stop_after = 3};
	CHECK(walk(p, fam, KMIN, KMAX, &c) == 1 && c.got.n == 3);
	km_free(&c.got);
	c = (collect){.stop_after = 700, .fail_with = VMS_EIO};
	CHECK(walk(p, fam, K(5, 0), KMAX, &c) == VMS_EIO && c.got.n == 700);
	km_free(&c.got);
	/* empty and reversed ranges */
	c = (collect){0};
	CHECK(walk(p, fam, K(20, 1), K(20, 1), &c) == 0 && c.got.n == 0);
	CHECK(walk(p, fam, K(30, 1), K(20, 1), &c) == 0 && c.got.n == 0);
	CHECK(walk(p, fam, K(5000, 0), KMAX, &c) == 0 && c.got.n == 0);
	CHECK(walk(p, fam, K(10, 2), K(10, 5), &c) == 0 && c.got.n == 0);
	km_free(&c.got);
	/* ranges at every leaf boundary region, cached and after a reopen with
	 * a small cache (walks load leaves as they go) */
	for (int pass = 0; pass < 2; pass++) {
		for (uint64_t b = 0; b < 3000; b += 97) {
			CHECK(walk_matches(p, fam, &m, K(b, 3), K(b + 250, 1), why, sizeof(why)));
			CHECK(walk_matches(p, fam, &m, K(b, 0), K(b, UINT32_MAX), why, sizeof(why)));
		}
		CHECK_TREE(p, fam, &m);
		vms_pool_options small = kopts(4096, 1);
		p = reopen(p, "walk", &small);
		REQUIRE(p);
	}
	km_free(&m);
	vms_pool_close(p);
}

/* Insert n keys (in order or shuffled) and check shape, fill and metadata. */
static void grow(uint32_t bs, uint64_t n, int shuffled, const char *name)
{
	vms_pool_options o = kopts(bs, 0);
	uint64_t fam = 0;
	vms_pool *p = new_pool(name, 256ull << 20, &o, &fam);
	REQUIRE(p);
	kmodel m = {0};
	uint64_t *order = malloc(n * sizeof(*order));
	rng r = {n + bs};
	for (uint64_t i = 0; i < n; i++)
		order[i] = i;
	for (uint64_t i = n; shuffled && i > 1; i--) {
		uint64_t j = rng_below(&r, i), t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
	unsigned depth_seen = 0;
	for (uint64_t i = 0; i < n && !test_failures_in_case; i++) {
		kt_key k = K(order[i] / 2 * 7, (uint32_t)(order[i] % 2) + 1);
		kt_val v = val_for(k, 1, 1000);
		if (put(p, fam, k, v, NULL) != 0) {
			CHECK(!"put failed");
			break;
		}
		km_append(&m, k, v);
		unsigned d = fam_copy(p, fam).depth;
		CHECK(d >= depth_seen); /* puts never lower the height */
		depth_seen = d;
		if (i % (n / 4) == 0)
			CHECK_OK(vms_pool_commit(p));
	}
	km_sort(&m);
	uint64_t nodes = 0;
	CHECK(check(p, fam, &nodes) == 0);
	uint64_t cap = leaf_cap(bs), leaves_min = (n + cap - 1) / cap;
	printf("  %u-byte blocks, %" PRIu64 " keys %s: height %u, %" PRIu64 " nodes (%" PRIu64
	       " leaves at least), %.3f%% of the data's size\n",
	       bs, n, shuffled ? "in random order" : "in order", fam_copy(p, fam).depth, nodes,
	       leaves_min, 100.0 * (double)nodes / (double)n);
	CHECK(fam_copy(p, fam).depth >= 2);
	if (!shuffled) /* appends fill leaves and interior nodes fully */
		CHECK(nodes <= leaves_min + leaves_min / 100 + 3);
	else /* at least half full */
		CHECK(nodes <= 2 * leaves_min + leaves_min / 50 + 3);
	CHECK(nodes * 100 < n); /* metadata under 1% of the data it maps */
	CHECK_TREE(p, fam, &m);
	vms_pool_options small = kopts(bs, 1);
	p = reopen(p, name, &small);
	REQUIRE(p);
	for (uint64_t i = 0; i < 2000; i++) {
		const kv *e = &m.e[rng_below(&r, m.n)];
		kt_val v = {0, 0};
		CHECK(get(p, fam, e->k, &v) == 1 && v.pblk == e->v.pblk && v.crc == e->v.crc);
		CHECK(get(p, fam, K(e->k.lblk + 1, 1), &v) == 0);
	}
	CHECK_TREE(p, fam, &m);
	free(order);
	km_free(&m);
	vms_pool_close(p);
}

TEST(sequential_puts_fill_nodes_and_grow_the_height)
{
	grow(4096, 100000, 0, "seq");
}

TEST(random_puts_split_in_the_middle)
{
	grow(4096, 100000, 1, "rand");
}

TEST(block_size_64k)
{
	grow(65536, 60000, 1, "rand64k");
	grow(65536, 20000, 0, "seq64k");
}

static int space_returned(vms_pool *p, const vms_pool_stats *initial, const char *what)
{
	vms_pool_stats st;
	vms_pool_stats_get(&st, p);
	int ok = st.free_blocks == initial->free_blocks && st.meta_blocks == initial->meta_blocks &&
	         st.index_blocks == 0 && st.data_blocks == 0;
	if (!ok)
		fprintf(stderr, "  %s: free %" PRIu64 " (initially %" PRIu64 "), meta %" PRIu64
		        " (initially %" PRIu64 "), index %" PRIu64 ", data %" PRIu64 "\n",
		        what, st.free_blocks, initial->free_blocks, st.meta_blocks, initial->meta_blocks,
		        st.index_blocks, st.data_blocks);
	return ok;
}

static void delete_all(uint32_t bs, uint64_t n)
{
	vms_pool_options o = kopts(bs, 256 << 10);
	uint64_t fam = 0;
	vms_pool *p = new_pool("delall", 128ull << 20, &o, &fam);
	REQUIRE(p);
	for (int i = 0; i < 3; i++)
		CHECK_OK(vms_pool_commit(p));
	vms_pool_stats initial;
	vms_pool_stats_get(&initial, p);
	kmodel m = {0}, rest = {0};
	rng r = {bs ^ n};
	for (uint64_t i = 0; i < n; i++) { /* distinct keys in random order */
		kt_key k = K(i * 5 + rng_below(&r, 5), (uint32_t)rng_below(&r, 3));
		km_append(&m, k, val_for(k, 2, 1500));
	}
	for (size_t i = m.n; i > 1; i--) {
		size_t j = (size_t)rng_below(&r, i);
		kv t = m.e[i - 1];
		m.e[i - 1] = m.e[j];
		m.e[j] = t;
	}
	for (size_t i = 0; i < m.n && !test_failures_in_case; i++)
		if (put(p, fam, m.e[i].k, m.e[i].v, NULL) != 0)
			CHECK(!"put failed");
	CHECK_OK(vms_pool_commit(p));
	uint64_t nodes_full = 0, nodes = 0;
	CHECK(check(p, fam, &nodes_full) == 0);
	/* delete in another random order; merges keep nodes from going
	 * nearly empty */
	for (size_t i = m.n; i > 1; i--) {
		size_t j = (size_t)rng_below(&r, i);
		kv t = m.e[i - 1];
		m.e[i - 1] = m.e[j];
		m.e[j] = t;
	}
	for (size_t i = 0; i < m.n && !test_failures_in_case; i++) {
		kt_val old = {0, 0};
		if (del(p, fam, m.e[i].k, &old) != 1 || old.pblk != m.e[i].v.pblk) {
			CHECK(!"delete failed");
			break;
		}
		size_t left = m.n - i - 1;
		if (left == m.n / 10) {
			km_copy(&rest, &(kmodel){m.e + i + 1, left, left});
			km_sort(&rest);
			CHECK(check(p, fam, &nodes) == 0);
			printf("  %u-byte blocks: %zu keys in %" PRIu64 " nodes; after deleting 90%%: "
			       "%zu keys in %" PRIu64 " nodes\n", bs, m.n, nodes_full, left, nodes);
			/* merged leaves hold at least about an eighth of a node on average */
			CHECK(nodes * (leaf_cap(bs) / 8) <= left + leaf_cap(bs));
			CHECK_TREE(p, fam, &rest);
		}
		if (left % (m.n / 3) == 0)
			CHECK_OK(vms_pool_commit(p));
	}
	vrec rec = fam_copy(p, fam);
	CHECK(rec.root == 0 && rec.depth == 0 && rec.nkeys == 0);
	for (int i = 0; i < 3; i++)
		CHECK_OK(vms_pool_commit(p));
	CHECK(space_returned(p, &initial, "after deleting every key"));
	km_free(&m);
	km_free(&rest);
	vms_pool_close(p);
}

TEST(deletes_down_to_empty_return_every_block)
{
	delete_all(4096, 40000);
	delete_all(65536, 30000);
}

TEST(destroy_step_frees_every_node)
{
	vms_pool_options o = kopts(4096, 0);
	uint64_t fam = 0;
	vms_pool *p = new_pool("destroy", 64ull << 20, &o, &fam);
	REQUIRE(p);
	for (int i = 0; i < 3; i++)
		CHECK_OK(vms_pool_commit(p));
	vms_pool_stats initial;
	vms_pool_stats_get(&initial, p);
	rng r = {99};
	for (uint64_t i = 0; i < 60000; i++) {
		kt_key k = K(rng_below(&r, 1ull << 30), 1);
		if (put(p, fam, k, val_for(k, 0, 9000), NULL) < 0) {
			CHECK(!"put failed");
			break;
		}
	}
	uint64_t nodes = 0;
	CHECK(check(p, fam, &nodes) == 0);
	vms_pool_options small = kopts(4096, 1);
	p = reopen(p, "destroy", &small); /* leaves are loaded as the destroy goes */
	REQUIRE(p);
	uint64_t steps = 0, keys_before = fam_copy(p, fam).nkeys;
	int rc;
	do {
		lk(p);
		rc = kt_destroy_step(p, fam, 7);
		ulk(p);
		steps++;
		uint64_t k = fam_copy(p, fam).nkeys;
		CHECK(k <= keys_before);
		keys_before = k;
		if (steps % 10 == 0) {
			CHECK(check(p, fam, NULL) == 0); /* a valid tree between steps */
			if (steps % 40 == 0)
				CHECK_OK(vms_pool_commit(p));
		}
	} while (rc == 1 && !test_failures_in_case);
	CHECK(rc == 0);
	CHECK(steps >= nodes / 10 && steps <= nodes / 7 + 2);
	vrec rec = fam_copy(p, fam);
	CHECK(rec.root == 0 && rec.depth == 0 && rec.nkeys == 0);
	for (int i = 0; i < 3; i++)
		CHECK_OK(vms_pool_commit(p));
	CHECK(space_returned(p, &initial, "after kt_destroy_step"));
	vms_pool_close(p);
}

/* ---- a randomized model test ---------------------------------------------------- */

/* A key in a space small enough for overwrites and dense leaves. */
static kt_key rand_key(rng *r, uint64_t lblks)
{
	return K(rng_below(r, lblks), (uint32_t)rng_below(r, 6) * 0x2aaaaaaau);
}

TEST(random_ops_match_a_sorted_array)
{
	uint64_t seed = test_seed("key tree model");
	uint64_t ops = env_u64("VMS_KTREE_OPS", VMS_TEST_SCALE(200000));
	rng r = {seed};
	trace_seed = seed;
	vms_pool_options o = kopts(4096, 1); /* 64 nodes: loads and evictions */
	vms_pool *p = new_pool("model", 64ull << 20, &o, NULL);
	REQUIRE(p);
	uint64_t fam[2] = {fam_new(p), fam_new(p)};
	kmodel m[2] = {{0}, {0}};
	uint64_t commits = 0, reopens = 0, walks = 0, gets = 0, puts = 0, dels = 0;
	char why[256];
	for (uint64_t i = 0; i < ops && !model_failed; i++) {
		/* phases: grow, then shrink to near empty, so merges, frees and
		 * height changes happen both ways */
		int growing = (i / 25000) % 2 == 0;
		int f = rng_below(&r, 4) == 0;
		kmodel *mm = &m[f];
		unsigned w = (unsigned)rng_below(&r, 1000);
		kt_key k;
		int rc;
		if (w < (growing ? 550u : 250u)) { /* put: new or overwrite */
			k = rand_key(&r, 20000);
			kt_val v = val_for(k, (uint32_t)i, 10000), old = {0, 0};
			size_t at = km_lower(mm, k);
			int had = at < mm->n && kt_cmp(mm->e[at].k, k) == 0;
			kt_val want = had ? mm->e[at].v : V(0, 0);
			rc = put(p, fam[f], k, v, &old);
			trace("put %d (%" PRIu64 ",%u) -> %d", f, k.lblk, k.ver, rc);
			if (rc != had || (had && (old.pblk != want.pblk || old.crc != want.crc)))
				fail("put (%" PRIu64 ",%u) returned %d, model had it: %d", k.lblk, k.ver, rc, had);
			km_put(mm, k, v);
			puts++;
		} else if (w < 800) { /* delete: mostly an existing key */
			if (mm->n && rng_below(&r, 8))
				k = mm->e[rng_below(&r, mm->n)].k;
			else
				k = rand_key(&r, 20000);
			size_t at = km_lower(mm, k);
			int had = at < mm->n && kt_cmp(mm->e[at].k, k) == 0;
			kt_val want = had ? mm->e[at].v : V(0, 0), old = {0, 0};
			rc = del(p, fam[f], k, &old);
			trace("del %d (%" PRIu64 ",%u) -> %d", f, k.lblk, k.ver, rc);
			if (rc != had || (had && (old.pblk != want.pblk || old.crc != want.crc)))
				fail("del (%" PRIu64 ",%u) returned %d, model had it: %d", k.lblk, k.ver, rc, had);
			km_del(mm, k);
			dels++;
		} else if (w < 950) { /* get */
			k = rng_below(&r, 2) && mm->n ? mm->e[rng_below(&r, mm->n)].k : rand_key(&r, 20000);
			size_t at = km_lower(mm, k);
			int had = at < mm->n && kt_cmp(mm->e[at].k, k) == 0;
			kt_val v = {0, 0};
			rc = get(p, fam[f], k, &v);
			trace("get %d (%" PRIu64 ",%u) -> %d", f, k.lblk, k.ver, rc);
			if (rc != had || (had && (v.pblk != mm->e[at].v.pblk || v.crc != mm->e[at].v.crc)))
				fail("get (%" PRIu64 ",%u) returned %d, model had it: %d", k.lblk, k.ver, rc, had);
			gets++;
		} else if (w < 990) { /* walk a random range */
			kt_key a = rand_key(&r, 20000), b = rand_key(&r, 20000);
			if (rng_below(&r, 2) && kt_cmp(b, a) < 0) {
				kt_key t = a;
				a = b;
				b = t;
			}
			if (rng_below(&r, 4) == 0)
				b = K(a.lblk + rng_below(&r, 3), (uint32_t)rng_below(&r, 1u << 31));
			trace("walk %d [(%" PRIu64 ",%u), (%" PRIu64 ",%u))", f, a.lblk, a.ver, b.lblk, b.ver);
			if (!walk_matches(p, fam[f], mm, a, b, why, sizeof(why)))
				fail("%s", why);
			walks++;
		} else if (w < 997) {
			trace("commit");
			if ((rc = vms_pool_commit(p)) < 0)
				fail("commit: %d", rc);
			commits++;
		} else {
			trace("reopen");
			p = reopen(p, "model", &o);
			if (!p) {
				fail("reopen failed");
				break;
			}
			reopens++;
		}
		if (i % 20000 == 0 || i + 1 == ops)
			for (int j = 0; j < 2 && !model_failed; j++)
				if (!tree_equals(p, fam[j], &m[j], why, sizeof(why)))
					fail("family %d: %s", j, why);
	}
	printf("  %" PRIu64 " ops: %" PRIu64 " puts, %" PRIu64 " deletes, %" PRIu64 " gets, %" PRIu64
	       " walks, %" PRIu64 " commits, %" PRIu64 " reopens; %zu + %zu keys at the end, "
	       "height %u\n", ops, puts, dels, gets, walks, commits, reopens, m[0].n, m[1].n,
	       p ? fam_copy(p, fam[0]).depth : 0);
	vms_pool_stats st;
	if (p && vms_pool_stats_get(&st, p) == 0)
		printf("  cache: %" PRIu64 " hits, %" PRIu64 " misses\n", st.cache_hits, st.cache_misses);
	km_free(&m[0]);
	km_free(&m[1]);
	if (p)
		vms_pool_close(p);
}

/* ---- power cuts -------------------------------------------------------------------- */

typedef struct kcrash {
	rng r;
	vms_io_fault *f;
	vms_pool *p;
	vms_pool_options o;
	uint64_t fam;
	kmodel m, committed, after;
	int have_after;            /* the cut hit a commit of `after` */
} kcrash;

static int dead(vms_io_fault *f)
{
	vms_io_fault_stats st;
	vms_io_fault_stats_get(&st, f);
	return st.dead;
}

/* One random change or commit: 1 done, 0 the device died, -1 a failure. */
static int crash_op(kcrash *c)
{
	unsigned w = (unsigned)rng_below(&c->r, 100);
	int rc;
	c->have_after = 0;
	if (w < 10) {
		rc = vms_pool_commit(c->p);
		trace("commit -> %d", rc);
		if (rc == 0) {
			km_copy(&c->committed, &c->m);
			return 1;
		}
		km_copy(&c->after, &c->m);
		c->have_after = 1;
	} else if (w < 65 || c->m.n < 100) {
		kt_key k = rand_key(&c->r, 3000);
		kt_val v = val_for(k, (uint32_t)c->r.s, 2000);
		rc = put(c->p, c->fam, k, v, NULL);
		trace("put (%" PRIu64 ",%u) -> %d", k.lblk, k.ver, rc);
		if (rc >= 0)
			km_put(&c->m, k, v);
	} else {
		kt_key k = c->m.e[rng_below(&c->r, c->m.n)].k;
		rc = del(c->p, c->fam, k, NULL);
		trace("del (%" PRIu64 ",%u) -> %d", k.lblk, k.ver, rc);
		if (rc == 1)
			km_del(&c->m, k);
		else if (rc == 0)
			rc = -1000;
	}
	if (rc >= 0)
		return 1;
	if (dead(c->f))
		return 0;
	fail("operation failed with a live device: %d %s", rc, vms_error_last());
	return -1;
}

/* After the cut: reopen on what the file kept and compare. */
static int crash_recover(kcrash *c, const char *how)
{
	vms_pool_close(c->p); /* its last commit fails on the dead device */
	c->p = NULL;
	vms_io_fault_revive(c->f);
	if (vms_pool_open(&c->p, vms_io_fault_io(c->f), &c->o) < 0) {
		c->p = NULL;
		fail("reopen after the cut (%s): %s", how, vms_error_last());
		return 0;
	}
	char why_old[256] = "", why_new[256] = "";
	const kmodel *got = NULL;
	if (tree_equals(c->p, c->fam, &c->committed, why_old, sizeof(why_old)))
		got = &c->committed;
	else if (c->have_after && tree_equals(c->p, c->fam, &c->after, why_new, sizeof(why_new)))
		got = &c->after;
	if (!got) {
		fail("after a power cut (%s): the tree matches neither the last commit (%s) nor the "
		     "one in flight (%s)", how, why_old, c->have_after ? why_new : "none was");
		return 0;
	}
	km_copy(&c->m, got);
	if (got != &c->committed)
		km_copy(&c->committed, got);
	/* no block leaked: the tree's nodes are all the index blocks, no data */
	uint64_t nodes = 0;
	vms_pool_stats st;
	if (check(c->p, c->fam, &nodes) < 0 || vms_pool_stats_get(&st, c->p) < 0 ||
	    st.index_blocks != nodes || st.data_blocks != 0) {
		fail("after a power cut (%s): %" PRIu64 " tree nodes, %" PRIu64 " index blocks, %" PRIu64
		     " data blocks", how, nodes, st.index_blocks, st.data_blocks);
		return 0;
	}
	return 1;
}

TEST(power_cuts_recover_the_last_commit)
{
	uint64_t seed = test_seed("key tree power cuts");
	uint64_t cuts = env_u64("VMS_KTREE_CUTS", VMS_TEST_SCALE(600));
	kcrash c = {.r = {seed}, .o = kopts(4096, 64 << 10)};
	vms_io *file = NULL;
	trace_seed = seed;
	unlink(path_of("crash"));
	REQUIRE(vms_io_file_open(&file, path_of("crash"), 1, 0) == 0);
	REQUIRE(vms_io_fault_new(&c.f, file, 1, seed ^ 0x5eed) == 0);
	REQUIRE(vms_pool_create(&c.p, vms_io_fault_io(c.f), 8ull << 20, &c.o) == 0);
	REQUIRE((c.fam = fam_new(c.p)) != 0);
	REQUIRE(vms_pool_commit(c.p) == 0);
	static const unsigned kinds[] = {VMS_FAULT_WRITE, VMS_FAULT_SYNC};
	uint64_t done = 0, in_commit = 0, recovered_after = 0;
	for (; done < cuts && !model_failed; done++) {
		vms_fault_rule rule = {.action = VMS_FAULT_CUT,
		                       .cut = (vms_fault_cut)rng_below(&c.r, VMS_CUT_MODES)};
		rule.ops = kinds[rng_below(&c.r, 2)];
		rule.nth = rule.ops == VMS_FAULT_SYNC ? 1 + rng_below(&c.r, 6) : 1 + rng_below(&c.r, 120);
		vms_io_fault_add(c.f, &rule);
		int nops = 10 + (int)rng_below(&c.r, 60), rc = 1;
		for (int i = 0; rc == 1 && i < nops; i++)
			rc = crash_op(&c);
		if (rc < 0)
			break;
		char how[80];
		if (rc == 1) { /* the rule did not fire: cut between operations */
			vms_fault_cut mode = (vms_fault_cut)rng_below(&c.r, VMS_CUT_MODES);
			vms_io_fault_cut(c.f, mode);
			c.have_after = 0;
			snprintf(how, sizeof(how), "%s between operations", vms_fault_cut_name(mode));
		} else {
			in_commit++;
			snprintf(how, sizeof(how), "%s at %s %" PRIu64, vms_fault_cut_name(rule.cut),
			         rule.ops == VMS_FAULT_SYNC ? "sync" : "write", rule.nth);
		}
		trace("power cut: %s", how);
		if (!crash_recover(&c, how))
			break;
		recovered_after += c.have_after && c.m.n == c.after.n &&
		                   (c.m.n == 0 || memcmp(c.m.e, c.after.e, c.m.n * sizeof(kv)) == 0);
	}
	printf("  %" PRIu64 " power cuts (%" PRIu64 " inside a commit, %" PRIu64 " of them kept that "
	       "commit); %zu keys at the end\n", done, in_commit, recovered_after, c.m.n);
	CHECK(done == cuts);
	if (c.p)
		vms_pool_close(c.p);
	vms_io_fault_free(c.f);
	km_free(&c.m);
	km_free(&c.committed);
	km_free(&c.after);
}

/* ---- a full pool ----------------------------------------------------------------------- */

TEST(full_pool_refuses_puts_and_changes_nothing)
{
	vms_pool_options o = kopts(4096, 0);
	uint64_t fam = 0;
	vms_pool *p = new_pool("full", 2ull << 20, &o, &fam); /* 512 blocks, 64 in reserve */
	REQUIRE(p);
	kmodel m = {0};
	rng r = {4242};
	char why[256];
	/* take most of the space with blocks of no one's */
	lk(p);
	uint64_t b;
	while (sm_avail(p) > p->reserve + sm_commit_need(p) + 60 && sm_alloc(p, 0, &b) == 0)
		;
	ulk(p);
	CHECK_OK(vms_pool_commit(p));
	uint64_t fails = 0, after_fail_ok = 0;
	int full = 0;
	for (int i = 0; i < 40000 && fails < 300 && !test_failures_in_case; i++) {
		kt_key k = K(rng_below(&r, 1ull << 32), 1);
		kt_val v = val_for(k, 3, 400);
		int rc = put(p, fam, k, v, NULL);
		if (rc == VMS_ENOSPC) {
			fails++;
			full = 1;
			if (fails % 50 == 1) /* nothing changed */
				CHECK_TREE(p, fam, &m);
			if (fails % 100 == 0)
				CHECK_OK(vms_pool_commit(p));
			continue;
		}
		if (rc != 0) {
			fprintf(stderr, "  put: %d %s\n", rc, vms_error_last());
			CHECK(!"put failed other than ENOSPC");
			break;
		}
		after_fail_ok += full; /* a dirty leaf with room takes keys with no allocation */
		km_put(&m, k, v);
	}
	printf("  full pool: %zu keys stored, %" PRIu64 " puts refused, %" PRIu64
	       " accepted after the first refusal\n", m.n, fails, after_fail_ok);
	CHECK(full && fails == 300);
	CHECK_TREE(p, fam, &m);
	CHECK_OK(vms_pool_commit(p));
	p = reopen(p, "full", &o);
	REQUIRE(p);
	CHECK(tree_equals(p, fam, &m, why, sizeof(why)));
	/* deletes shadow from the reserve and merge leaves; then puts fit again */
	for (size_t n = m.n - m.n / 10; n > 0 && !test_failures_in_case; n--) {
		kt_key k = m.e[rng_below(&r, m.n)].k;
		int rc = del(p, fam, k, NULL);
		CHECK(rc == 1);
		km_del(&m, k);
	}
	for (int i = 0; i < 3; i++)
		CHECK_OK(vms_pool_commit(p));
	for (int i = 0; i < 100; i++) {
		kt_key k = K(rng_below(&r, 1ull << 32), 2);
		kt_val v = val_for(k, 4, 400);
		int rc = put(p, fam, k, v, NULL);
		if (rc != 0) {
			fprintf(stderr, "  put after deletes: %d %s\n", rc, vms_error_last());
			CHECK(!"put after deletes failed");
			break;
		}
		km_put(&m, k, v);
	}
	CHECK_TREE(p, fam, &m);
	km_free(&m);
	vms_pool_close(p);
}

/* ---- damage ------------------------------------------------------------------------- */

typedef struct blocks {
	uint64_t v[4096];
	size_t n;
} blocks;

static int note_node(void *ctx, uint64_t blk)
{
	blocks *b = ctx;
	if (b->n < 4096)
		b->v[b->n++] = blk;
	return 0;
}

static int flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t c = 0;
	int ok = fd >= 0 && pread(fd, &c, 1, (off_t)off) == 1;
	c ^= 0x5a;
	ok = ok && pwrite(fd, &c, 1, (off_t)off) == 1;
	if (fd >= 0)
		close(fd);
	return ok;
}

static int read_block(const char *path, uint64_t blk, uint8_t *buf)
{
	int fd = open(path, O_RDONLY);
	int ok = fd >= 0 && pread(fd, buf, 4096, (off_t)(blk * 4096)) == 4096;
	if (fd >= 0)
		close(fd);
	return ok;
}

TEST(damaged_nodes_are_reported)
{
	vms_pool_options o = kopts(4096, 0);
	uint64_t fam = 0;
	vms_pool *p = new_pool("damage", 32ull << 20, &o, &fam);
	REQUIRE(p);
	for (uint64_t i = 0; i < 5000; i++)
		CHECK(put(p, fam, K(i, 1), val_for(K(i, 1), 0, 1000), NULL) == 0);
	CHECK_OK(vms_pool_commit(p));
	static blocks nb;
	nb.n = 0;
	lk(p);
	CHECK(kt_check(p, fam, note_node, NULL, &nb) == 0);
	ulk(p);
	uint64_t root = fam_copy(p, fam).root;
	vms_pool_close(p);
	/* a leaf in the middle: its first key */
	uint8_t buf[4096];
	uint64_t leaf = 0;
	for (size_t i = nb.n / 2; i < nb.n && !leaf; i++)
		if (read_block(path_of("damage"), nb.v[i], buf) && buf[5] == 0)
			leaf = nb.v[i];
	REQUIRE(leaf);
	kt_key first = K(get32(buf + 20) | (uint64_t)buf[24] << 32, get32(buf + 25));
	REQUIRE(flip_byte(path_of("damage"), leaf * 4096 + 200));
	p = reopen(NULL, "damage", &o);
	REQUIRE(p);
	kt_val v = {0, 0};
	CHECK(get(p, fam, first, &v) == VMS_ECORRUPT);
	CHECK(strstr(vms_error_last(), "checksum") != NULL);
	CHECK(get(p, fam, K(0, 1), &v) == 1 || first.lblk == 0); /* other leaves still read */
	collect c = {0};
	CHECK(walk(p, fam, KMIN, KMAX, &c) == VMS_ECORRUPT && c.got.n == first.lblk);
	km_free(&c.got);
	CHECK(check(p, fam, NULL) == VMS_ECORRUPT);
	CHECK(put(p, fam, first, V(5, 5), NULL) == VMS_ECORRUPT);
	/* the root: nothing reads */
	vms_pool_close(p);
	REQUIRE(flip_byte(path_of("damage"), root * 4096 + 30));
	p = reopen(NULL, "damage", &o);
	REQUIRE(p);
	CHECK(get(p, fam, K(4000, 1), &v) == VMS_ECORRUPT);
	CHECK(strstr(vms_error_last(), "checksum") != NULL);
	vms_pool_close(p);
}

/* The verifier of nodes read from disk, on hand-made images. */
TEST(node_verifier_refuses_bad_nodes)
{
	vms_pool_options o = kopts(4096, 0);
	vms_pool *p = new_pool("verify", 16ull << 20, &o, NULL);
	REQUIRE(p);
	uint8_t d[4096];
	memset(d, 0, sizeof(d));
	node_header(d, NT_KEYS, 0, 1);
	/* two leaf entries: (1,1)->10, (2,1)->11 */
	put16(d + 16, 2);
	uint8_t *e = d + 20;
	put32(e, 1), put32(e + 5, 1), put32(e + 9, 10);
	put32(e + 18, 2), put32(e + 23, 1), put32(e + 27, 11);
	CHECK(kt_node_verify(p, d, 9, 0) == 0);
	put32(e + 18, 1); /* same key twice */
	CHECK(kt_node_verify(p, d, 9, 0) == VMS_ECORRUPT);
	put32(e + 18, 0); /* out of order */
	CHECK(kt_node_verify(p, d, 9, 0) == VMS_ECORRUPT);
	put32(e + 18, 2);
	put32(e + 27, 1); /* pblk 1 */
	CHECK(kt_node_verify(p, d, 9, 0) == VMS_ECORRUPT);
	put32(e + 27, 0); /* a tombstone is fine */
	CHECK(kt_node_verify(p, d, 9, 0) == 0);
	e[31] = 1; /* pblk past the pool */
	CHECK(kt_node_verify(p, d, 9, 0) == VMS_ECORRUPT);
	e[31] = 0;
	put16(d + 16, 0); /* empty */
	CHECK(kt_node_verify(p, d, 9, 0) == VMS_ECORRUPT);
	put16(d + 16, 227); /* past the capacity */
	CHECK(kt_node_verify(p, d, 9, 0) == VMS_ECORRUPT);
	put16(d + 16, 2);
	put16(d + 18, 1); /* reserved */
	CHECK(kt_node_verify(p, d, 9, 0) == VMS_ECORRUPT);
	/* interior: child 0 past the pool, flags on disk */
	memset(d, 0, sizeof(d));
	node_header(d, NT_KEYS, 1, 1);
	put16(d + 16, 1);
	put64(d + 20, 50);
	CHECK(kt_node_verify(p, d, 9, 1) == 0);
	put32(d + 32, BP_DIRTY);
	CHECK(kt_node_verify(p, d, 9, 1) == VMS_ECORRUPT);
	put32(d + 32, 0);
	put64(d + 20, 1ull << 30);
	CHECK(kt_node_verify(p, d, 9, 1) == VMS_ECORRUPT);
	vms_pool_close(p);
}

TEST_MAIN()
