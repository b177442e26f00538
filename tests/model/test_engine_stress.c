/*
 * Randomized multi-threaded stress test of the native pool engine
 * (include/vmsnap/pool.h) with an exact oracle.
 *
 * NVOL live volumes; NWRITER writer threads, each owning a contiguous slice
 * of every live volume: it alone writes those sectors and keeps an exact
 * copy of them.  A writer loops on random operations in its slices: writes
 * (within a block up to 1 MiB, across blocks and leaves; some all zero, some
 * FUA), write-zeroes, trims, flushes and reads that must match its copy byte
 * for byte; a quarter of the ranges fall in a small hot zone at the start of
 * the slice.  It also reads anyone's slices while they are written: no error,
 * and only zeros or sectors stamped for their place.  Every written sector
 * starts with a stamp (volume id, sector number, writer, op number; the rest
 * is seeded random), so a misplaced sector is named in the failure.
 *
 * The main thread meanwhile snapshots several volumes at once (live ones and
 * a clone), clones live volumes, snapshots and clones, writes into its
 * clones, rolls them back, deletes old snapshots and clones, commits and
 * runs vms_pool_check.
 *
 * The oracle of snapshots and clones of live volumes: a writer numbers its
 * data-changing ops; it sets started = k before calling the engine, and
 * after op k it stores the hash of each of its slices (a sum of hash(sector
 * number, content) over the slice, updated op by op) in ring[k % RING] and
 * sets done = k.  Snapshots are atomic at an I/O boundary, so a new snapshot
 * must show each writer's slices as they were after one op k, the same k for
 * every volume of the snapshot, with done (read before the call) <= k <=
 * started (read after it returns).  The window's hashes are copied as soon as
 * the call returns, then the new volumes are read in full and such a k looked
 * for.  From then on the content of a kept snapshot or clone is known (only
 * the main thread writes clones), as a hash per sector checked at every
 * later read: a snapshot never changes, whatever is written meanwhile.
 *
 * At the end: stop, reap, vms_pool_check clean, every volume reads back
 * exactly, again after close and reopen; then everything is deleted and all
 * blocks must be free again.  Five configurations: four of format 2 (data
 * checksums on and off, 4 and 16 KiB blocks, a node cache of 64-256 KiB:
 * evictions and reloads, background commits every 5-20 ms) and one of
 * format 3 (the versioned-key index, 64 KiB cache); unlimited reaping.
 * After a snapshot that matches no op, the sectors that differ from a
 * writer's model are listed with what the live volume reads there.
 *
 * Knobs: VMS_SEED=n; VMS_STRESS_SECONDS=n in all (default 16, 8 under
 * sanitizers) or VMS_STRESS_OPS=n data-changing writer ops in all;
 * VMS_CONFIG=n runs one configuration; VMS_TRACE=1 prints every operation.
 * A seed replays each thread's choices, not how the threads interleave: a
 * failure may take a few runs (or seeds) to come back.
 */
#undef NDEBUG
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "test_engine_model.h"

#define NVOL 3
#define NWRITER 4
#define MAX_KEPT 10
#define MAX_IO (1u << 20)
#define RING (1u << 14)
#define POOL_SIZE (512ull << 20)
#define CTL 0xFFu                          /* the main thread's writer number in stamps */
#define OP_MASK ((UINT64_C(1) << 40) - 1)  /* op number in a stamp's third word */
#define SH_BYTES(size) ((size) / 512 * sizeof(uint64_t))
#define REPORTED (-1000)                   /* a writer's rc: failed, already reported */

/* Not all whole blocks; the largest spans two leaves even at 16 KiB blocks
 * (a leaf maps B/16 - 1 blocks). */
static const uint64_t vol_size[NVOL] = {(2u << 20) + 1536, 6u << 20, (17u << 20) + 512};

/* trace() and fail() keep global state: threads call them under report_mx */
static pthread_mutex_t report_mx = PTHREAD_MUTEX_INITIALIZER;
#define LOCKED(call) do { pthread_mutex_lock(&report_mx); call; pthread_mutex_unlock(&report_mx); } while (0)
#define STRACE(...) LOCKED(trace(__VA_ARGS__))
#define SFAIL(s, ...) do { LOCKED(fail(__VA_ARGS__)); atomic_store(&(s)->stop, 1); } while (0)

typedef struct stress stress;

typedef struct writer {
	stress *s;
	unsigned idx;
	rng r;
	uint64_t lo[NVOL], len[NVOL];   /* its slice of each live volume, in bytes */
	unsigned char *model[NVOL];     /* the slices' content */
	uint64_t *when[NVOL];           /* per sector: the op that last changed it */
	uint64_t hash[NVOL];            /* slice_hash of model[] */
	_Atomic uint64_t started, done; /* data-changing ops begun, finished */
	_Atomic uint64_t (*ring)[NVOL]; /* ring[k % RING]: hash[] after op k */
	uint64_t nops, nreads;
	pthread_t th;
} writer;

typedef struct kept { /* a snapshot or clone whose content is known */
	vms_vol_id id;
	int clone;
	uint64_t size;
	uint64_t *sh;                   /* sector_hash of every sector */
} kept;

struct stress {
	vms_pool *pool;
	uint32_t bs;
	vms_vol_id vol[NVOL];
	writer w[NWRITER];
	kept k[MAX_KEPT];
	size_t nk;
	rng r;
	uint64_t op_limit;              /* per writer; 0: until stopped */
	atomic_int stop, running;
	uint64_t nsnap, nclone, ndelete, ncheck, nio, widest;
};

typedef struct window { uint64_t before[NWRITER], after[NWRITER], (*h[NWRITER])[NVOL]; } window;

static uint64_t sector_hash(const unsigned char *p, uint64_t sector)
{
	uint64_t h = (sector + 1) * 0x9E3779B97F4A7C15ull;
	for (int i = 0; i < 512; i += 8) {
		uint64_t x;
		memcpy(&x, p + i, 8);
		h = (h ^ x) * 0xFF51AFD7ED558CCDull;
		h ^= h >> 31;
	}
	return h;
}

/* Sum of sector_hash over `len` bytes at p, which sit at volume byte `off`. */
static uint64_t slice_hash(const unsigned char *p, uint64_t off, uint64_t len)
{
	uint64_t h = 0;
	for (uint64_t i = 0; i < len; i += 512)
		h += sector_hash(p + i, (off + i) / 512);
	return h;
}

static void stamp(unsigned char *buf, uint64_t len, vms_vol_id vol, uint64_t off, unsigned who,
                  uint64_t op, rng *r)
{
	rng_fill(r, buf, len);
	for (uint64_t i = 0; i < len; i += 512) {
		uint64_t f[3] = {vol, (off + i) / 512, (uint64_t)who << 40 | op};
		memcpy(buf + i, f, sizeof(f));
	}
}

static const char *describe(char *out, size_t cap, const unsigned char *sector)
{
	uint64_t f[3];
	memcpy(f, sector, sizeof(f));
	if (is_zero(sector, 512))
		snprintf(out, cap, "zeros");
	else
		snprintf(out, cap, "[stamp: vol %" PRIu64 " sector %" PRIu64 " writer %u op %" PRIu64 "]",
		         f[0], f[1], (unsigned)(f[2] >> 40), f[2] & OP_MASK);
	return out;
}

/* A sector read while others may write it: zeros or stamped for this volume
 * and sector.  Without checksums a read racing an in-place rewrite may mix
 * old and new bytes, so each stamp byte may also be a zero. */
static int plausible(const unsigned char *p, vms_vol_id id, uint64_t sector)
{
	uint64_t want[2] = {id, sector};
	const unsigned char *b = (const unsigned char *)want;
	for (int i = 0; i < 16; i++)
		if (p[i] && p[i] != b[i])
			return 0;
	return 1;
}

/* A random 512-aligned range in [lo, lo+span): within a block, a few blocks,
 * whole blocks, or up to 1 MiB (across leaves at 4 KiB blocks). */
static void pick_range(rng *r, uint32_t bs, uint64_t lo, uint64_t span, uint64_t *off, uint64_t *len)
{
	uint64_t sectors = span / 512, per = bs / 512, n;
	switch (rng_below(r, 4)) {
	case 0: n = 1 + rng_below(r, per - 1); break;
	case 1: n = 1 + rng_below(r, 4 * per); break;
	case 2: n = per * (1 + rng_below(r, 8)); break;
	default: n = 1 + rng_below(r, MAX_IO / 512); break;
	}
	n = n < sectors ? n : sectors;
	uint64_t s = lo / 512 + rng_below(r, sectors - n + 1);
	if (rng_below(r, 2) && s / per * per >= lo / 512)
		s = s / per * per;
	*off = s * 512;
	*len = n * 512;
}

/* got (volume bytes [off, +len)) must equal want: else fail naming both sectors. */
static int same(stress *s, const unsigned char *got, const unsigned char *want, uint64_t len,
                uint64_t off, vms_vol_id id, const char *what)
{
	size_t d = first_diff(got, want, len) / 512 * 512;
	if (d >= len)
		return 1;
	char a[128], b[128];
	SFAIL(s, "%s: vol %" PRIu64 " sector %" PRIu64 " reads %s, expected %s", what, id,
	      (off + d) / 512, describe(a, sizeof(a), got + d), describe(b, sizeof(b), want + d));
	return 0;
}

/* got (volume bytes [off, +len)) must match the sector hashes sh. */
static int same_hashes(stress *s, const unsigned char *got, const uint64_t *sh, uint64_t len,
                       uint64_t off, vms_vol_id id, const char *what)
{
	for (uint64_t i = 0; i < len; i += 512) {
		if (sector_hash(got + i, (off + i) / 512) != sh[(off + i) / 512]) {
			char a[128];
			SFAIL(s, "%s: vol %" PRIu64 " sector %" PRIu64 " is not what it was: reads %s", what,
			      id, (off + i) / 512, describe(a, sizeof(a), got + i));
			return 0;
		}
	}
	return 1;
}

/* Bytes [off, +len) of volume id (malloc'ed), or NULL after a failure. */
static unsigned char *read_range(stress *s, vms_vol_id id, uint64_t off, uint64_t len, const char *what)
{
	unsigned char *buf = malloc(len);
	int rc = vms_vol_read(s->pool, id, buf, len, off);
	if (rc < 0) {
		SFAIL(s, "%s: read of vol %" PRIu64 " [%" PRIu64 ", +%" PRIu64 ") failed: %d %s", what, id,
		      off, len, rc, vms_error_last());
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- writers ------------------------------------------------------------- */

/* New content (NULL: zeros) of volume bytes [off, +len) in w's slice of v. */
static void model_put(writer *w, unsigned v, uint64_t off, const unsigned char *src, uint64_t len)
{
	unsigned char *m = w->model[v] + (off - w->lo[v]);
	uint64_t n = atomic_load(&w->started);
	for (uint64_t i = 0; i < len; i += 512)
		if (src ? memcmp(m + i, src + i, 512) != 0 : !is_zero(m + i, 512))
			w->when[v][(off - w->lo[v] + i) / 512] = n;
	w->hash[v] -= slice_hash(m, off, len);
	if (src)
		memcpy(m, src, len);
	else
		memset(m, 0, len);
	w->hash[v] += slice_hash(m, off, len);
}

static void *writer_main(void *arg)
{
	writer *w = arg;
	stress *s = w->s;
	unsigned char *buf = malloc(MAX_IO), *rd = malloc(MAX_IO);
	uint64_t n = 0, off, len, hot = 16 * s->bs; /* hot zone at the start of a slice */
	while (!atomic_load(&s->stop) && (!s->op_limit || n < s->op_limit)) {
		unsigned v = (unsigned)rng_below(&w->r, NVOL), c = (unsigned)rng_below(&w->r, 100);
		vms_vol_id id = s->vol[v];
		writer *o = c < 10 ? &s->w[rng_below(&w->r, NWRITER)] : w; /* racing reads: anyone's */
		pick_range(&w->r, s->bs, o->lo[v], rng_below(&w->r, 4) ? o->len[v] : hot, &off, &len);
		unsigned char *m = o == w ? w->model[v] + (off - w->lo[v]) : NULL;
		unsigned flags = rng_below(&w->r, 16) == 0 ? VMS_IO_FUA : 0;
		const char *what = c < 10 ? "racing read" : c < 30 ? "read" : c < 31 ? "flush" :
		                   c < 80 ? "write" : c < 90 ? "write_zeroes" : "trim";
		int rc;
		if (c < 31) {
			rc = c < 30 ? vms_vol_read(s->pool, id, rd, len, off) : vms_vol_flush(s->pool, id);
			STRACE("w%u %s vol %" PRIu64 " [%" PRIu64 ", +%" PRIu64 ") -> %d", w->idx, what, id,
			       off, len, rc);
			if (rc < 0)
				SFAIL(s, "writer %u: %s failed: %d %s", w->idx, what, rc, vms_error_last());
			for (uint64_t i = 0; rc == 0 && c < 10 && i < len; i += 512) {
				char a[128];
				if (!plausible(rd + i, id, (off + i) / 512)) {
					SFAIL(s, "racing read: vol %" PRIu64 " sector %" PRIu64 " holds %s", id,
					      (off + i) / 512, describe(a, sizeof(a), rd + i));
					rc = REPORTED;
				}
			}
			if (rc < 0 || (c >= 10 && c < 30 && !same(s, rd, m, len, off, id, "writer's read")))
				break;
			w->nreads += c < 30;
			continue;
		}
		atomic_store(&w->started, ++n);
		if (c < 80) {
			if (rng_below(&w->r, 8))
				stamp(buf, len, id, off, w->idx, n, &w->r);
			else
				memset(buf, 0, len);
			if ((rc = vms_vol_write(s->pool, id, buf, len, off, flags)) == 0)
				model_put(w, v, off, buf, len);
		} else if (c < 90) {
			if ((rc = vms_vol_write_zeroes(s->pool, id, len, off, flags)) == 0)
				model_put(w, v, off, NULL, len);
		} else {
			/* trims may keep partial blocks: a sector reads as before or as
			 * zeros, and the model adopts what is read */
			flags = 0;
			if ((rc = vms_vol_trim(s->pool, id, len, off)) == 0)
				rc = vms_vol_read(s->pool, id, rd, len, off);
			for (uint64_t i = 0; rc == 0 && i < len; i += 512)
				if (!is_zero(rd + i, 512) && !same(s, rd + i, m + i, 512, off + i, id, "after a trim"))
					rc = REPORTED;
			if (rc == 0)
				model_put(w, v, off, rd, len);
		}
		STRACE("w%u op %" PRIu64 ": %s%s vol %" PRIu64 " [%" PRIu64 ", +%" PRIu64 ") -> %d",
		       w->idx, n, what, flags ? " fua" : "", id, off, len, rc);
		if (rc < 0) {
			if (rc != REPORTED)
				SFAIL(s, "writer %u: %s failed: %d %s", w->idx, what, rc, vms_error_last());
			break;
		}
		for (unsigned i = 0; i < NVOL; i++)
			atomic_store_explicit(&w->ring[n % RING][i], w->hash[i], memory_order_relaxed);
		atomic_store_explicit(&w->done, n, memory_order_release);
		w->nops++;
	}
	atomic_fetch_sub(&s->running, 1);
	free(buf);
	free(rd);
	return NULL;
}

/* ---- the snapshot oracle ------------------------------------------------- */

/* After the call: copy each writer's hashes after ops before..after. */
static int window_close(stress *s, window *win)
{
	for (unsigned j = 0; j < NWRITER; j++)
		win->after[j] = atomic_load(&s->w[j].started);
	for (unsigned j = 0; j < NWRITER; j++) {
		writer *w = &s->w[j];
		uint64_t a = win->before[j], b = win->after[j];
		while (atomic_load_explicit(&w->done, memory_order_acquire) < b) /* its op in flight */
			if (atomic_load(&s->stop))
				return 0;
			else
				sched_yield();
		s->widest = b - a > s->widest ? b - a : s->widest;
		win->h[j] = malloc((b - a + 1) * sizeof(*win->h[j]));
		for (uint64_t k = a; k <= b; k++)
			for (unsigned v = 0; v < NVOL; v++)
				win->h[j][k - a][v] = atomic_load_explicit(&w->ring[k % RING][v], memory_order_relaxed);
		if (atomic_load(&w->done) >= a + RING) {
			SFAIL(s, "writer %u ran %d ops ahead of the main thread: test too slow", j, RING);
			return 0;
		}
	}
	return 1;
}

/* After a mismatch, once the writers have stopped: the sectors of w's slices
 * whose copy differs from w's model although no op of w after the window
 * changed them, with what the live volume reads there now. */
static void stale_sectors(stress *s, writer *w, size_t n, const unsigned *vi,
                          unsigned char *const *img, uint64_t b)
{
	while (atomic_load(&s->running) > 0)
		sched_yield();
	for (size_t i = 0; i < n; i++) {
		uint64_t lo = w->lo[vi[i]], shown = 0;
		for (uint64_t off = lo; off < lo + w->len[vi[i]] && shown < 8; off += 512) {
			const unsigned char *m = w->model[vi[i]] + (off - lo), *g = img[i] + off;
			uint64_t when = w->when[vi[i]][(off - lo) / 512];
			if (!memcmp(m, g, 512) || when > b)
				continue;
			char x[128], y[128], z[128] = "(read failed)";
			unsigned char live[512];
			if (vms_vol_read(s->pool, s->vol[vi[i]], live, 512, off) == 0)
				describe(z, sizeof(z), live);
			LOCKED(fprintf(stderr, "  vol %" PRIu64 " sector %" PRIu64 " (block %" PRIu64 "): the copy "
			       "holds %s; the writer's model %s, last changed by its op %" PRIu64 "; the volume "
			       "reads %s\n", s->vol[vi[i]], off / 512, off / s->bs, describe(x, sizeof(x), g),
			       describe(y, sizeof(y), m), when, z));
			shown++;
		}
	}
}

/* img[i], the new copy of live volume vi[i] (i < n), all made by one call:
 * each writer's slices must be as they were after one op of its window. */
static int window_match(stress *s, const window *win, size_t n, const unsigned *vi,
                        unsigned char *const *img, vms_vol_id first, const char *what)
{
	for (unsigned j = 0; j < NWRITER; j++) {
		writer *w = &s->w[j];
		uint64_t got[NVOL], a = win->before[j], b = win->after[j], k;
		for (size_t i = 0; i < n; i++)
			got[i] = slice_hash(img[i] + w->lo[vi[i]], w->lo[vi[i]], w->len[vi[i]]);
		for (k = a; k <= b; k++) {
			size_t i = 0;
			while (i < n && win->h[j][k - a][vi[i]] == got[i])
				i++;
			if (i == n)
				break;
		}
		if (k <= b)
			continue;
		char diag[1024] = "", d[128]; /* each volume alone, and a sector that cannot be there */
		for (size_t i = 0; i < n; i++) {
			uint64_t alone = a, lo = w->lo[vi[i]];
			while (alone <= b && win->h[j][alone - a][vi[i]] != got[i])
				alone++;
			if (alone <= b)
				snprintf(diag + strlen(diag), sizeof(diag) - strlen(diag), "; vol %" PRIu64
				         " alone is as after op %" PRIu64, s->vol[vi[i]], alone);
			else
				snprintf(diag + strlen(diag), sizeof(diag) - strlen(diag), "; vol %" PRIu64
				         " alone is as after none", s->vol[vi[i]]);
			for (uint64_t off = lo; off < lo + w->len[vi[i]]; off += 512) {
				uint64_t f[3];
				memcpy(f, img[i] + off, sizeof(f));
				if (is_zero(img[i] + off, 512) || (f[0] == s->vol[vi[i]] && f[1] == off / 512 &&
				                                   f[2] >> 40 == j && (f[2] & OP_MASK) <= b))
					continue;
				snprintf(diag + strlen(diag), sizeof(diag) - strlen(diag), " (sector %" PRIu64
				         " holds %s)", off / 512, describe(d, sizeof(d), img[i] + off));
				break;
			}
		}
		SFAIL(s, "%s %" PRIu64 "...: writer %u's slices are not as after any of its ops %" PRIu64
		      "..%" PRIu64 "%s", what, first, j, a, b, diag);
		stale_sectors(s, w, n, vi, img, b);
		return 0;
	}
	return 1;
}

/* ---- the main thread's operations ---------------------------------------- */

static void kept_drop(stress *s, size_t i)
{
	kept k = s->k[i];
	int rc = vms_vol_delete(s->pool, k.id);
	STRACE("ctl delete %s %" PRIu64 " -> %d", k.clone ? "clone" : "snapshot", k.id, rc);
	if (rc < 0)
		SFAIL(s, "delete of %" PRIu64 " failed: %d %s", k.id, rc, vms_error_last());
	free(k.sh);
	s->k[i] = s->k[--s->nk];
	s->ndelete++;
}

/* Keep a new, checked snapshot or clone: its content is img or, if NULL, has hashes sh. */
static void keep(stress *s, vms_vol_id id, int clone, uint64_t size, const unsigned char *img,
                 const uint64_t *sh)
{
	if (s->nk == MAX_KEPT)
		kept_drop(s, rng_below(&s->r, s->nk));
	kept *k = &s->k[s->nk++];
	*k = (kept){id, clone, size, malloc(SH_BYTES(size))};
	for (uint64_t i = 0; i < size / 512; i++)
		k->sh[i] = img ? sector_hash(img + i * 512, i) : sh[i];
}

/* A snapshot of some live volumes and perhaps a kept clone, in one call; or
 * a clone of a live or kept volume. */
static void ctl_copy(stress *s, int clone)
{
	vms_vol_id src[NVOL + 1], out[NVOL + 1] = {0};
	unsigned vi[NVOL];
	size_t nl = 0;
	kept *c = s->nk ? &s->k[rng_below(&s->r, s->nk)] : NULL;
	if (c && ((!clone && !c->clone) || rng_below(&s->r, 2)))
		c = NULL;
	for (unsigned v = 0; v < NVOL && !clone; v++)
		if (rng_below(&s->r, 2))
			src[nl] = s->vol[v], vi[nl++] = v;
	if (nl == 0 && !c)
		vi[0] = (unsigned)rng_below(&s->r, NVOL), src[nl++] = s->vol[vi[0]];
	size_t n = nl + (c != NULL);
	if (c)
		src[nl] = c->id;
	window win = {0};
	for (unsigned j = 0; j < NWRITER; j++)
		win.before[j] = atomic_load(&s->w[j].done);
	int rc = clone ? vms_vol_clone(out, s->pool, src[0]) : vms_vol_snapshot(out, s->pool, src, n);
	int ok = window_close(s, &win);
	STRACE("ctl %s of %zu vols (%" PRIu64 "%s) -> %d, first new %" PRIu64, clone ? "clone" : "snapshot",
	       n, src[0], c ? " and a kept one" : "", rc, out[0]);
	if (rc < 0)
		SFAIL(s, "%s failed: %d %s", clone ? "clone" : "snapshot", rc, vms_error_last());
	unsigned char *img[NVOL + 1] = {0};
	for (size_t i = 0; ok && rc == 0 && i < n; i++)
		ok = (img[i] = read_range(s, out[i], 0, i < nl ? vol_size[vi[i]] : c->size, "new copy")) != NULL;
	if (ok && rc == 0 && window_match(s, &win, nl, vi, img, out[0], clone ? "clone" : "snapshot") &&
	    (!c || same_hashes(s, img[nl], c->sh, c->size, 0, out[nl], "copy of a kept volume"))) {
		uint64_t csize = c ? c->size : 0; /* keep() may drop c */
		uint64_t *csh = c ? memcpy(malloc(SH_BYTES(csize)), c->sh, SH_BYTES(csize)) : NULL;
		for (size_t i = 0; i < nl; i++)
			keep(s, out[i], clone, vol_size[vi[i]], img[i], NULL);
		if (c)
			keep(s, out[nl], clone, csize, NULL, csh);
		free(csh);
		*(clone ? &s->nclone : &s->nsnap) += 1;
	}
	for (size_t i = 0; i < n; i++)
		free(img[i]);
	for (unsigned j = 0; j < NWRITER; j++)
		free(win.h[j]);
}

/* Write, write zeroes or trim in a clone, or re-read a kept volume: it must
 * read as its hashes say. */
static void ctl_io(stress *s, kept *k, int write)
{
	static const unsigned char zero[512];
	uint64_t off = 0, len = k->size;
	if (rng_below(&s->r, 8))
		pick_range(&s->r, s->bs, 0, k->size, &off, &len);
	unsigned char *buf = malloc(len), *rd;
	unsigned c = (unsigned)rng_below(&s->r, 3);
	int rc = 0;
	if (write && c == 0) {
		stamp(buf, len, k->id, off, CTL, ++s->nio, &s->r);
		rc = vms_vol_write(s->pool, k->id, buf, len, off, 0);
	} else if (write) {
		rc = c == 1 ? vms_vol_write_zeroes(s->pool, k->id, len, off, 0) : vms_vol_trim(s->pool, k->id, len, off);
		s->nio++;
	}
	STRACE("ctl %s vol %" PRIu64 " [%" PRIu64 ", +%" PRIu64 ") -> %d",
	       write ? (c == 0 ? "write" : c == 1 ? "write_zeroes" : "trim") : "re-read", k->id, off, len, rc);
	if (rc < 0)
		SFAIL(s, "I/O on clone %" PRIu64 " failed: %d %s", k->id, rc, vms_error_last());
	else if ((rd = read_range(s, k->id, off, len, "main thread's read")) != NULL) {
		for (uint64_t i = 0; write && i < len; i += 512) { /* trims: as before or zeros */
			uint64_t sec = (off + i) / 512;
			if (c == 0)
				k->sh[sec] = sector_hash(buf + i, sec);
			else if (c == 1 || is_zero(rd + i, 512))
				k->sh[sec] = sector_hash(zero, sec);
		}
		same_hashes(s, rd, k->sh, len, off, k->id, write ? "clone after a write" : "re-read");
		free(rd);
	}
	free(buf);
}

static void ctl_step(stress *s)
{
	unsigned c = (unsigned)rng_below(&s->r, 100);
	kept *k = s->nk ? &s->k[rng_below(&s->r, s->nk)] : NULL;
	kept *t = s->nk ? &s->k[rng_below(&s->r, s->nk)] : NULL;
	int rc = 0, ok = 1;
	if (c < 35 || !k) {
		ctl_copy(s, c >= 25);
	} else if (c < 50) {
		ctl_io(s, k, k->clone);
	} else if (c < 55 && k->clone && k != t) {
		rc = vms_vol_rollback(s->pool, k->id, t->id);
		STRACE("ctl rollback %" PRIu64 " to %" PRIu64 " -> %d", k->id, t->id, rc);
		if (rc == 0) {
			k->size = t->size;
			k->sh = memcpy(realloc(k->sh, SH_BYTES(t->size)), t->sh, SH_BYTES(t->size));
			ctl_io(s, k, 0);
		}
	} else if (c < 62) {
		kept_drop(s, (size_t)(k - s->k));
	} else if (c < 72) {
		rc = vms_pool_commit(s->pool);
		STRACE("ctl commit -> %d", rc);
	} else if (c < 74) {
		LOCKED(ok = check_pool_clean(s->pool, "vms_pool_check while writers run"));
		s->ncheck++;
	} else {
		ctl_io(s, k, 0);
	}
	if (rc < 0)
		SFAIL(s, "rollback or commit failed: %d %s", rc, vms_error_last());
	if (!ok)
		atomic_store(&s->stop, 1);
}

/* ---- a run ------------------------------------------------------------------- */

/* Every live volume and kept snapshot and clone reads back exactly. */
static int verify_all(stress *s, const char *what)
{
	for (unsigned v = 0; v < NVOL; v++) {
		unsigned char *img = read_range(s, s->vol[v], 0, vol_size[v], what);
		for (unsigned j = 0; img && j < NWRITER; j++)
			if (!same(s, img + s->w[j].lo[v], s->w[j].model[v], s->w[j].len[v], s->w[j].lo[v],
			          s->vol[v], what))
				break;
		free(img);
	}
	for (size_t i = 0; i < s->nk; i++) {
		unsigned char *img = read_range(s, s->k[i].id, 0, s->k[i].size, what);
		if (img)
			same_hashes(s, img, s->k[i].sh, s->k[i].size, 0, s->k[i].id, what);
		free(img);
	}
	return !model_failed;
}

/* After the threads stopped: check, reopen, check, empty the pool. */
static int finish(stress *s, const char *path, const vms_pool_options *opts,
                  const vms_pool_stats *initial)
{
	int rc = 0;
	if (model_failed || (rc = vms_pool_reap_wait(s->pool)) < 0 ||
	    !check_pool_clean(s->pool, "after the run") || !verify_all(s, "after the run"))
		goto failed;
	rc = vms_pool_close(s->pool);
	s->pool = NULL;
	if (rc < 0 || (rc = vms_pool_open_file(&s->pool, path, opts)) < 0) {
		s->pool = NULL;
		goto failed;
	}
	if (!verify_all(s, "after reopen") || !check_pool_clean(s->pool, "after reopen"))
		goto failed;
	for (unsigned v = 0; v < NVOL; v++)
		if ((rc = vms_vol_delete(s->pool, s->vol[v])) < 0)
			goto failed;
	while (s->nk && !model_failed)
		kept_drop(s, 0);
	if (model_failed || (rc = vms_pool_reap_wait(s->pool)) < 0 || (rc = vms_pool_commit(s->pool)) < 0 ||
	    (rc = vms_pool_commit(s->pool)) < 0 || (rc = vms_pool_commit(s->pool)) < 0)
		goto failed;
	return check_space_returned(s->pool, initial, "after deleting everything") &&
	       check_pool_clean(s->pool, "empty pool");
failed:
	if (!model_failed)
		fail("at the end of the run: %d %s", rc, vms_error_last());
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void stress_run(uint64_t seed, const vms_pool_options *opts, double seconds, uint64_t ops)
{
	static stress s;
	memset(&s, 0, sizeof(s));
	s.r = (rng){seed};
	s.bs = opts->block_size;
	s.op_limit = ops / NWRITER;
	trace_seed = seed;
	trace_count = 0;
	model_failed = 0;
	char dir[128], path[160];
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/vms-stress-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	REQUIRE(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/pool", dir);
	vms_pool_stats initial;
	if (vms_pool_create_file(&s.pool, path, POOL_SIZE, opts) < 0) {
		fail("create pool: %s", vms_error_last());
		rmdir(dir);
		return;
	}
	vms_pool_set_reap_rate(s.pool, 0);
	vms_pool_commit(s.pool);
	vms_pool_commit(s.pool);
	vms_pool_stats_get(&initial, s.pool);
	static const unsigned char zero[512];
	for (unsigned v = 0; v < NVOL; v++)
		CHECK_OK(vms_vol_create(&s.vol[v], s.pool, vol_size[v]));
	for (unsigned j = 0; j < NWRITER; j++) {
		writer *w = &s.w[j];
		*w = (writer){.s = &s, .idx = j, .r = {seed * 1000003 + j + 1}};
		w->ring = calloc(RING, sizeof(*w->ring));
		for (unsigned v = 0; v < NVOL; v++) {
			w->lo[v] = vol_size[v] / 512 * j / NWRITER * 512;
			w->len[v] = vol_size[v] / 512 * (j + 1) / NWRITER * 512 - w->lo[v];
			w->model[v] = calloc(1, w->len[v]);
			w->when[v] = calloc(w->len[v] / 512 + 1, sizeof(uint64_t));
			for (uint64_t off = w->lo[v]; off < w->lo[v] + w->len[v]; off += 512)
				w->hash[v] += sector_hash(zero, off / 512);
			w->ring[0][v] = w->hash[v];
		}
	}
	double t0 = now();
	atomic_store(&s.running, NWRITER);
	for (unsigned j = 0; j < NWRITER; j++)
		pthread_create(&s.w[j].th, NULL, writer_main, &s.w[j]);
	while (!atomic_load(&s.stop) && (s.op_limit ? atomic_load(&s.running) > 0 : now() - t0 < seconds)) {
		ctl_step(&s);
		usleep((useconds_t)rng_below(&s.r, 2000));
	}
	atomic_store(&s.stop, 1);
	uint64_t nops = 0, nreads = 0;
	for (unsigned j = 0; j < NWRITER; j++) {
		pthread_join(s.w[j].th, NULL);
		nops += s.w[j].nops;
		nreads += s.w[j].nreads;
	}
	printf("    %" PRIu64 " writer ops and %" PRIu64 " reads in %.1f s; %" PRIu64 " snapshots, %" PRIu64
	       " clones (windows up to %" PRIu64 " ops), %" PRIu64 " deletes, %" PRIu64 " checks, %" PRIu64
	       " clone writes\n", nops, nreads, now() - t0, s.nsnap, s.nclone, s.widest, s.ndelete,
	       s.ncheck, s.nio);
	fflush(stdout);
	finish(&s, path, opts, &initial);
	if (s.pool)
		vms_pool_close(s.pool);
	for (size_t i = 0; i < s.nk; i++)
		free(s.k[i].sh);
	for (unsigned j = 0; j < NWRITER; j++) {
		for (unsigned v = 0; v < NVOL; v++) {
			free(s.w[j].model[v]);
			free(s.w[j].when[v]);
		}
		free(s.w[j].ring);
	}
	unlink(path);
	rmdir(dir);
}

static const vms_pool_options configs[] = {
	{.block_size = 4096, .data_checksums = 1, .cache_bytes = 64 << 10, .commit_interval_ms = 5},
	{.block_size = 4096, .cache_bytes = 256 << 10, .commit_interval_ms = 20},
	{.block_size = 16384, .data_checksums = 1, .cache_bytes = 128 << 10, .commit_interval_ms = 10},
	{.block_size = 16384, .cache_bytes = 256 << 10, .commit_interval_ms = 15},
	/* format 3: the versioned-key index */
	{.block_size = 4096, .data_checksums = 1, .cache_bytes = 64 << 10, .commit_interval_ms = 5,
	 .index = VMS_INDEX_KEYS},
};

TEST(concurrent_io_snapshots_and_clones_match_the_oracle)
{
	uint64_t seed = test_seed("engine stress");
	size_t nconf = sizeof(configs) / sizeof(configs[0]);
	double seconds = (double)env_u64("VMS_STRESS_SECONDS", VMS_TEST_SCALE(16)) / nconf;
	uint64_t ops = env_u64("VMS_STRESS_OPS", 0) / nconf;
	for (size_t c = 0; c < nconf && !test_failures_in_case; c++) {
		if (getenv("VMS_CONFIG") && (size_t)atoi(getenv("VMS_CONFIG")) != c)
			continue;
		uint64_t run_seed = seed * 31 + c;
		printf("  config %zu: block %u checksums %d cache %" PRIu64 " commit %u ms index %s, run "
		       "seed %" PRIu64 "\n",
		       c, configs[c].block_size, configs[c].data_checksums, configs[c].cache_bytes,
		       configs[c].commit_interval_ms, configs[c].index ? "keys" : "radix", run_seed);
		fflush(stdout);
		stress_run(run_seed, &configs[c], seconds, ops);
	}
	if (test_failures_in_case)
		printf("  replay: VMS_SEED=%" PRIu64 " (VMS_CONFIG=n runs one configuration; the threads' "
		       "interleaving is not replayed)\n", seed);
}

TEST_MAIN()
