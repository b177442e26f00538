/*
 * The reference model shared by the engine's model-based and crash tests:
 * every volume is a plain byte array in memory, and the pool under test
 * must read back exactly what the model holds.  Header-only (static
 * functions) so each test binary stays one file plus this.
 *
 * Conventions: a failure prints what was expected and what was seen, the
 * seed and the recent operations (the trace), and bumps the harness's
 * failure counter; the caller stops the run after the first one.
 */
#ifndef VMS_TEST_ENGINE_MODEL_H
#define VMS_TEST_ENGINE_MODEL_H
#undef NDEBUG
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmsnap/error.h"
#include "vmsnap/pool.h"
#include "test.h"

/* ---- randomness and knobs --------------------------------------------- */

typedef struct rng { uint64_t s; } rng;

static inline uint64_t rng_next(rng *r)
{
	uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static inline uint64_t rng_below(rng *r, uint64_t n)
{
	return n ? rng_next(r) % n : 0;
}

static inline void rng_fill(rng *r, unsigned char *p, size_t len)
{
	while (len >= 8) {
		uint64_t v = rng_next(r);
		memcpy(p, &v, 8);
		p += 8;
		len -= 8;
	}
	uint64_t v = rng_next(r);
	memcpy(p, &v, len);
}

/* Sanitized builds run the suite a second time, about 10x slower: their
 * default runs are shorter (the knobs still set any length). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VMS_TEST_SCALE(n) ((n) / 2)
#else
#define VMS_TEST_SCALE(n) (n)
#endif

static inline uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	return s && *s ? strtoull(s, NULL, 0) : dflt;
}

/* The seed: VMS_SEED to replay, else from the clock; always printed. */
static inline uint64_t test_seed(const char *what)
{
	uint64_t seed = env_u64("VMS_SEED", 0);
	if (!seed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec;
		seed = seed % 1000000000ull + 1;
	}
	printf("%s: seed %" PRIu64 " (replay with VMS_SEED=%" PRIu64 ")\n", what, seed, seed);
	fflush(stdout);
	return seed;
}

/* ---- trace of recent operations, printed on failure ------------------- */

#define TRACE_LEN 48
static char trace_buf[TRACE_LEN][160];
static uint64_t trace_count;
static uint64_t trace_seed;

static inline void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void trace(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(trace_buf[trace_count % TRACE_LEN], sizeof(trace_buf[0]), fmt, ap);
	va_end(ap);
	trace_count++;
	if (getenv("VMS_TRACE"))
		fprintf(stderr, "  op %" PRIu64 ": %s\n", trace_count - 1,
		        trace_buf[(trace_count - 1) % TRACE_LEN]);
}

static int model_failed;

static inline void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void fail(const char *fmt, ...)
{
	if (model_failed++)
		return; /* report the first failure only: the rest follows from it */
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "  MODEL MISMATCH (seed %" PRIu64 ", after op %" PRIu64 "): ", trace_seed,
	        trace_count ? trace_count - 1 : 0);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  last engine error: %s\n  recent operations:\n", vms_error_last());
	uint64_t first = trace_count > TRACE_LEN ? trace_count - TRACE_LEN : 0;
	for (uint64_t i = first; i < trace_count; i++)
		fprintf(stderr, "    %" PRIu64 ": %s\n", i, trace_buf[i % TRACE_LEN]);
	test_failures_in_case++;
}

/* ---- the model ---------------------------------------------------------- */

typedef struct model_vol {
	vms_vol_id id;
	vms_vol_kind kind;
	uint64_t size;
	vms_vol_id origin;
	int origin_known;        /* cleared by rollback: the contract leaves it open */
	unsigned char *data;     /* size bytes */
} model_vol;

typedef struct model {
	model_vol *v;
	size_t n, cap;
} model;

static inline model_vol *model_find(model *m, vms_vol_id id)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].id == id)
			return &m->v[i];
	return NULL;
}

static inline model_vol *model_add(model *m, vms_vol_id id, vms_vol_kind kind, uint64_t size,
                            vms_vol_id origin, const unsigned char *content)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->v = realloc(m->v, m->cap * sizeof(*m->v));
	}
	model_vol *v = &m->v[m->n++];
	*v = (model_vol){id, kind, size, origin, 1,
	                 content ? malloc(size ? size : 1) : calloc(1, size ? size : 1)};
	if (content)
		memcpy(v->data, content, size);
	return v;
}

static inline void model_remove(model *m, vms_vol_id id)
{
	model_vol *v = model_find(m, id);
	if (!v)
		return;
	free(v->data);
	*v = m->v[--m->n];
}

static inline void model_resize(model_vol *v, uint64_t size)
{
	v->data = realloc(v->data, size ? size : 1);
	if (size > v->size)
		memset(v->data + v->size, 0, size - v->size);
	v->size = size;
}

static inline void model_free(model *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].data);
	free(m->v);
	*m = (model){0};
}

static inline void model_copy(model *dst, const model *src)
{
	model_free(dst);
	for (size_t i = 0; i < src->n; i++) {
		const model_vol *s = &src->v[i];
		model_vol *d = model_add(dst, s->id, s->kind, s->size, s->origin, s->data);
		d->origin_known = s->origin_known;
	}
}

static inline uint64_t model_bytes(const model *m)
{
	uint64_t t = 0;
	for (size_t i = 0; i < m->n; i++)
		t += m->v[i].size;
	return t;
}

/* A random volume of the model (only writable ones if asked), or NULL. */
static inline model_vol *model_pick(model *m, rng *r, int writable)
{
	size_t n = 0;
	for (size_t i = 0; i < m->n; i++)
		n += !writable || m->v[i].kind == VMS_VOL_VOLUME;
	if (n == 0)
		return NULL;
	size_t k = rng_below(r, n);
	for (size_t i = 0; i < m->n; i++)
		if ((!writable || m->v[i].kind == VMS_VOL_VOLUME) && k-- == 0)
			return &m->v[i];
	return NULL;
}

/* A fresh path for a pool file under $TMPDIR, else /dev/shm (power cuts are
 * the shim's business, and fdatasync on a disk would make the test wait for
 * seconds), else /tmp; the file does not exist. */
static inline int model_pool_path(char *out, size_t cap, const char *tag)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(out, cap, "%s/vms-%s-XXXXXX", dir, tag);
	int fd = mkstemp(out);
	if (fd < 0)
		return -1;
	close(fd);
	unlink(out);
	return 0;
}

/* ---- checks against the pool -------------------------------------------- */

static inline int is_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

static inline size_t first_diff(const unsigned char *a, const unsigned char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return i;
	return len;
}

/* Read [off, off+len) of v and compare with the model. */
static inline int check_range(vms_pool *pool, const model_vol *v, uint64_t off, size_t len,
                       const char *what)
{
	unsigned char *buf = malloc(len ? len : 1);
	int ok = 1;
	int rc = vms_vol_read(pool, v->id, buf, len, off);
	if (rc < 0) {
		fail("%s: read of vol %" PRIu64 " [%" PRIu64 ", +%zu) failed: %d %s", what, v->id, off,
		     len, rc, vms_error_last());
		ok = 0;
	} else {
		size_t d = first_diff(buf, v->data + off, len);
		if (d < len) {
			fail("%s: vol %" PRIu64 " (%s, size %" PRIu64 ") differs at byte %" PRIu64
			     " (block of 4K %" PRIu64 "): read 0x%02x, model 0x%02x (range [%" PRIu64
			     ", +%zu))",
			     what, v->id, v->kind == VMS_VOL_SNAPSHOT ? "snapshot" : "volume", v->size,
			     off + d, (off + d) / 4096, buf[d], v->data[off + d], off, len);
			ok = 0;
		}
	}
	free(buf);
	return ok;
}

/* Everything the contract defines exactly: kind, size, origin, content. */
static inline int check_volume(vms_pool *pool, const model_vol *v, const char *what)
{
	vms_vol_info info;
	int rc = vms_vol_info_get(&info, pool, v->id);
	if (rc < 0) {
		fail("%s: info of vol %" PRIu64 " failed: %d %s", what, v->id, rc, vms_error_last());
		return 0;
	}
	if (info.id != v->id || info.kind != v->kind || info.size != v->size ||
	    (v->origin_known && info.origin != v->origin) || info.deleting) {
		fail("%s: info of vol %" PRIu64 ": id %" PRIu64 " kind %d size %" PRIu64
		     " origin %" PRIu64 " deleting %d; model kind %d size %" PRIu64 " origin %" PRIu64,
		     what, v->id, info.id, (int)info.kind, info.size, info.origin, info.deleting,
		     (int)v->kind, v->size, v->origin);
		return 0;
	}
	for (uint64_t off = 0; off < v->size; off += 1 << 20) {
		size_t len = v->size - off < (1 << 20) ? (size_t)(v->size - off) : 1 << 20;
		if (!check_range(pool, v, off, len, what))
			return 0;
	}
	return 1;
}

/* The pool holds exactly the model's volumes (the listing may also show
 * volumes being reclaimed, flagged deleting), each with its content. */
static inline int check_all(vms_pool *pool, const model *m, const char *what)
{
	vms_vol_id ids[512];
	int64_t n = vms_vol_list(ids, 512, pool);
	if (n < 0 || n > 512) {
		fail("%s: vms_vol_list returned %" PRId64 ": %s", what, n, vms_error_last());
		return 0;
	}
	for (size_t i = 0; i < m->n; i++) {
		int listed = 0;
		for (int64_t j = 0; j < n; j++)
			listed |= ids[j] == m->v[i].id;
		if (!listed) {
			fail("%s: vol %" PRIu64 " missing from vms_vol_list (%" PRId64 " listed)", what,
			     m->v[i].id, n);
			return 0;
		}
	}
	for (int64_t j = 0; j < n; j++) {
		if (model_find((model *)m, ids[j]))
			continue;
		vms_vol_info info;
		int rc = vms_vol_info_get(&info, pool, ids[j]);
		if (rc == 0 && !info.deleting) {
			fail("%s: vol %" PRIu64 " listed but deleted in the model", what, ids[j]);
			return 0;
		}
	}
	for (size_t i = 0; i < m->n; i++)
		if (!check_volume(pool, &m->v[i], what))
			return 0;
	return 1;
}

static inline int check_pool_clean(vms_pool *pool, const char *what)
{
	vms_check_report rep;
	memset(&rep, 0, sizeof(rep));
	int rc = vms_pool_check(&rep, pool, VMS_CHECK_DATA);
	if (rc != 0 || rep.corrupt || rep.leaked_blocks) {
		fail("%s: vms_pool_check rc %d corrupt %" PRIu64 " leaked %" PRIu64
		     " nodes %" PRIu64 " data %" PRIu64 ": %s",
		     what, rc, rep.corrupt, rep.leaked_blocks, rep.nodes_checked, rep.data_checked,
		     rep.first_error);
		return 0;
	}
	return 1;
}

/*
 * After every volume was deleted and reaped (and two commits let deferred
 * frees go): no data block is left and every block is free again - the
 * volume table gives its empty pages back too.  The space map may keep a
 * few more pages than at the start: its all-free pages are holes (format
 * version 2), and the pages that now hold the counts of the page arrays'
 * own relocated blocks need not be the first ones; every other metadata
 * block must be back to the start.  VMS_TEST_META_SLACK allows a few more,
 * should the format ever keep a grown table.
 */
#ifndef VMS_TEST_META_SLACK
#define VMS_TEST_META_SLACK 0
#endif
static inline int check_space_returned(vms_pool *pool, const vms_pool_stats *initial,
                                       const char *what)
{
	vms_pool_stats st;
	int rc = vms_pool_stats_get(&st, pool);
	int64_t meta_growth = (int64_t)(st.meta_blocks - initial->meta_blocks);
	int64_t smap_growth = (int64_t)(st.smap_blocks - initial->smap_blocks);
	if (rc < 0 || st.data_blocks || st.volumes || st.snapshots || st.deleting ||
	    st.index_blocks || meta_growth < smap_growth ||
	    meta_growth > (smap_growth > 0 ? smap_growth : 0) + VMS_TEST_META_SLACK ||
	    st.free_blocks + (uint64_t)meta_growth != initial->free_blocks) {
		fail("%s: free blocks %" PRIu64 " (initially %" PRIu64 "), data blocks %" PRIu64
		     ", metadata blocks %" PRIu64 " (initially %" PRIu64 "; space map %" PRIu64
		     ", initially %" PRIu64 "; index %" PRIu64 "), volumes %" PRIu64
		     " snapshots %" PRIu64 " deleting %" PRIu64,
		     what, st.free_blocks, initial->free_blocks, st.data_blocks, st.meta_blocks,
		     initial->meta_blocks, st.smap_blocks, initial->smap_blocks, st.index_blocks,
		     st.volumes, st.snapshots, st.deleting);
		return 0;
	}
	return 1;
}

#endif
