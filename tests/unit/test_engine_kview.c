/*
 * Tests of the view cache of format 3 pools (src/lib/engine/kview.c):
 * what a record reads per block, as the last lookup found it.
 *
 * The cache is driven directly (under pool->lock, as the engine calls it)
 * for records of volumes made on a real pool with a small cache, so that
 * chunks are evicted all the time, and compared with a reference model:
 * each (record, block) has a truth that changes only as the engine changes
 * it, by a write (kv_update) or by a rollback or delete of the whole view
 * (kv_drop); a fill (kv_put) stores the truth, as a lookup does.  Then:
 *   - every hit of kv_get is the truth now (a miss is always allowed);
 *   - every hit of kv_get_as_of(gen) is the truth as of gen;
 *   - after kv_drop, the record hits nothing until filled again;
 *   - kv_verify: every used slot is on its hash chain and on its
 *     record's list (what lets kv_drop visit that record's chunks only).
 * VMS_SEED replays; VMS_KVIEW_OPS sets the length.
 */
#include <unistd.h>

#include "engine/engine_private.h"
#include "engine/keys.h"
#include "../model/test_engine_model.h"

#define NREC 6
#define NBLK (64 * 40)                   /* 40 chunks per record */
#define NSNAP 4

typedef struct truth {
	uint64_t pblk;
	uint32_t crc;
} truth;

typedef struct kvm {
	rng r;
	vms_pool *pool;
	vms_vol_id id[NREC];
	truth now[NREC][NBLK];
	struct {
		uint64_t gen;
		int used;
		truth t[NREC][NBLK];
	} snap[NSNAP];
} kvm;

static truth random_truth(rng *r)
{
	truth t = {rng_below(r, 4) ? 1 + rng_below(r, (UINT64_C(1) << 40) - 1) : 0,
	           (uint32_t)rng_below(r, UINT64_C(1) << 32)};
	return t;
}

static int same(uint64_t pblk, uint32_t crc, truth t)
{
	return pblk == t.pblk && crc == t.crc;
}

static int verify(vms_pool *p)
{
	int rc = kv_verify(p);
	if (rc < 0)
		fprintf(stderr, "  %s\n", vms_error_last());
	return rc == 0;
}

/* One random operation under pool->lock: 1 ok, 0 a mismatch (printed). */
static int kv_op(kvm *m, uint64_t i)
{
	vms_pool *p = m->pool;
	unsigned w = (unsigned)rng_below(&m->r, 100);
	unsigned x = (unsigned)rng_below(&m->r, NREC);
	/* blocks cluster in a few chunks of a record, as reads do */
	uint64_t lblk = rng_below(&m->r, 4) ? rng_below(&m->r, 256) : rng_below(&m->r, NBLK);
	uint64_t pblk;
	uint32_t crc;
	if (w < 35) { /* a lookup's fill */
		kv_put(p, m->id[x], lblk, m->now[x][lblk].pblk, m->now[x][lblk].crc);
	} else if (w < 50) { /* a write or unmap of the record's block */
		m->now[x][lblk] = random_truth(&m->r);
		kv_update(p, m->id[x], lblk, m->now[x][lblk].pblk, m->now[x][lblk].crc);
	} else if (w < 52 && rng_below(&m->r, 4) == 0) { /* a rollback: the whole view changes */
		kv_drop(p, m->id[x]);
		for (uint64_t b = 0; b < NBLK; b++)
			m->now[x][b] = random_truth(&m->r);
		for (uint64_t b = 0; b < NBLK; b++)
			if (kv_get(p, m->id[x], b, &pblk, &crc)) {
				fprintf(stderr, "  op %" PRIu64 ": record %u block %" PRIu64
				        " still cached after kv_drop\n", i, x, b);
				return 0;
			}
	} else if (w < 80) {
		if (kv_get(p, m->id[x], lblk, &pblk, &crc) && !same(pblk, crc, m->now[x][lblk])) {
			fprintf(stderr, "  op %" PRIu64 ": record %u block %" PRIu64 ": cached %" PRIu64
			        "/%08x, truth %" PRIu64 "/%08x\n", i, x, lblk, pblk, crc,
			        m->now[x][lblk].pblk, m->now[x][lblk].crc);
			return 0;
		}
	} else if (w < 83) { /* a snapshot or clone of every record: what they read now */
		unsigned k = (unsigned)rng_below(&m->r, NSNAP);
		m->snap[k].gen = p->kv_gen;
		m->snap[k].used = 1;
		memcpy(m->snap[k].t, m->now, sizeof(m->now));
	} else {
		unsigned k = (unsigned)rng_below(&m->r, NSNAP);
		if (m->snap[k].used && kv_get_as_of(p, m->id[x], m->snap[k].gen, lblk, &pblk, &crc) &&
		    !same(pblk, crc, m->snap[k].t[x][lblk])) {
			fprintf(stderr, "  op %" PRIu64 ": record %u block %" PRIu64 " as of gen %" PRIu64
			        ": cached %" PRIu64 "/%08x, truth then %" PRIu64 "/%08x\n", i, x, lblk,
			        m->snap[k].gen, pblk, crc, m->snap[k].t[x][lblk].pblk,
			        m->snap[k].t[x][lblk].crc);
			return 0;
		}
	}
	return i % 512 || verify(p);
}

TEST(random_operations_match_the_truth)
{
	uint64_t seed = test_seed("kview");
	uint64_t ops = env_u64("VMS_KVIEW_OPS", VMS_TEST_SCALE(400000));
	char path[128];
	kvm *m = calloc(1, sizeof(*m));
	REQUIRE(m);
	m->r = (rng){seed};
	/* 128 KiB of cache: a view cache of a few dozen chunks for 240 in use */
	vms_pool_options o = {.cache_bytes = 128 << 10, .commit_interval_ms = UINT32_MAX,
	                      .index = VMS_INDEX_KEYS};
	REQUIRE(model_pool_path(path, sizeof(path), "kview") == 0);
	REQUIRE(vms_pool_create_file(&m->pool, path, 64ull << 20, &o) == 0);
	for (unsigned x = 0; x < NREC; x++) {
		CHECK_OK(vms_vol_create(&m->id[x], m->pool, (uint64_t)NBLK * 4096));
		for (uint64_t b = 0; b < NBLK; b++)
			m->now[x][b] = random_truth(&m->r);
	}
	uint64_t hits = 0, gets = 0;
	pthread_mutex_lock(&m->pool->lock);
	for (uint64_t i = 0; i < ops && !test_failures_in_case; i++) {
		if (!kv_op(m, i)) {
			CHECK(!"the view cache differs from the truth");
			printf("  replay with VMS_SEED=%" PRIu64 "\n", seed);
		}
		if (i % 64 == 0) { /* how often the cache answers at all (printed) */
			uint64_t pblk;
			uint32_t crc;
			unsigned x = (unsigned)rng_below(&m->r, NREC);
			gets++;
			hits += (uint64_t)kv_get(m->pool, m->id[x], rng_below(&m->r, 256), &pblk, &crc);
		}
	}
	CHECK(verify(m->pool));
	pthread_mutex_unlock(&m->pool->lock);
	printf("  %" PRIu64 " operations, %" PRIu64 " of %" PRIu64 " sampled gets hit\n", ops, hits,
	       gets);
	CHECK(hits > 0 && hits < gets); /* both paths were taken */
	CHECK_OK(vms_pool_close(m->pool));
	unlink(path);
	free(m);
}

/* kv_drop of one record leaves every other record's chunks, and a record
 * deleted through the engine leaves none behind. */
TEST(a_drop_takes_only_its_record)
{
	char path[128];
	vms_pool *p = NULL;
	vms_pool_options o = {.cache_bytes = 4 << 20, .commit_interval_ms = UINT32_MAX,
	                      .index = VMS_INDEX_KEYS};
	REQUIRE(model_pool_path(path, sizeof(path), "kview2") == 0);
	REQUIRE(vms_pool_create_file(&p, path, 64ull << 20, &o) == 0);
	vms_vol_id a, b, s;
	CHECK_OK(vms_vol_create(&a, p, 4 << 20));
	CHECK_OK(vms_vol_create(&b, p, 4 << 20));
	pthread_mutex_lock(&p->lock);
	for (uint64_t l = 0; l < 1024; l += 7) {
		kv_put(p, a, l, l + 1, (uint32_t)l);
		kv_put(p, b, l, l + 2, (uint32_t)l);
	}
	CHECK(verify(p));
	kv_drop(p, a);
	CHECK(verify(p));
	uint64_t pblk;
	uint32_t crc;
	int a_hits = 0, b_hits = 0;
	for (uint64_t l = 0; l < 1024; l += 7) {
		a_hits += kv_get(p, a, l, &pblk, &crc);
		b_hits += kv_get(p, b, l, &pblk, &crc) && pblk == l + 2 && crc == (uint32_t)l;
	}
	CHECK(a_hits == 0);
	CHECK(b_hits == (1024 + 6) / 7);
	pthread_mutex_unlock(&p->lock);
	/* through the engine: reads fill, a snapshot reads too, deletes drop */
	unsigned char buf[4096] = {1};
	CHECK_OK(vms_vol_write(p, b, buf, sizeof(buf), 0, 0));
	CHECK_OK(vms_vol_snapshot(&s, p, &b, 1));
	static unsigned char big[1 << 20];
	CHECK_OK(vms_vol_read(p, s, big, sizeof(big), 0));
	CHECK_OK(vms_vol_read(p, b, big, sizeof(big), 0));
	CHECK_OK(vms_vol_delete(p, s));
	CHECK_OK(vms_vol_rollback(p, a, b));
	CHECK_OK(vms_vol_delete(p, b));
	pthread_mutex_lock(&p->lock);
	CHECK(verify(p));
	pthread_mutex_unlock(&p->lock);
	CHECK_OK(vms_pool_close(p));
	unlink(path);
}

TEST_MAIN()
