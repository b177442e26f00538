/*
 * query.c - walks that report on trees: unique bytes and diff.
 *
 * These copy every node they visit into a private per-level buffer, so
 * that loading a node (and the cache eviction it may cause) never
 * invalidates a parent still being iterated.  Their cost is bounded by
 * what they report: unique_bytes stops at shared nodes, diff skips
 * subtrees that both trees share.
 *
 * They never hold the locks for long: one "hold" (commit_lock shared and
 * pool->lock) visits at most QBUDGET new nodes, then the walk records a
 * cursor - the first logical block it has not finished - drops both locks
 * and starts again from the roots, skipping every subtree that ends before
 * the cursor (and not counting again the ancestors it passes through).  A
 * node missing from the cache is read with pool->lock dropped (as reads
 * do).  The volumes are looked up
 * again at each hold: a deleted one ends the walk with VMS_ENOTFOUND.
 * Snapshots do not change, so a diff of two snapshots is exact; a region
 * of a live volume is reported as it was when the walk passed it.
 * Callbacks run after the locks are released.
 */
#include <stdlib.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

#define QBUDGET 64      /* new nodes visited per hold of the locks */

/* A walk's position across holds (see the file comment). */
typedef struct qwalk {
	uint64_t cursor;    /* logical blocks before it are done ... */
	int clevel;         /* ... and so are the nodes starting at it above this level */
	unsigned budget;    /* new nodes this hold may still visit */
	int stop;           /* hold over: resume at cursor */
} qwalk;

/* End the hold; the next one starts with the node at (base, level). */
static void qresume(qwalk *w, uint64_t base, int level)
{
	w->cursor = base;
	w->clevel = level;
	w->stop = 1;
}

/* Copy node blk into buf from the cache, loading it with pool->lock
 * dropped on a miss (commit_lock stays shared, so no block the walk's
 * private copies point at can be reused meanwhile).  Returns 1 when the
 * node was loaded but is gone again: the hold ends (w->stop). */
static int qnode(vms_pool *p, qwalk *w, uint64_t base, uint64_t blk, uint32_t crc, int level,
                 uint8_t *buf)
{
	node *n = cache_get(p, blk);
	if (!n) {
		int rc = node_load_unlocked(p, blk, crc, level);
		if (rc < 0)
			return rc;
		if (!(n = cache_get(p, blk))) {
			w->stop = 1; /* the caller sets the cursor when the node was new */
			return 1;
		}
	}
	if (n->level != level)
		return vms_error_set(VMS_ECORRUPT, "index node %llu: level %u, expected %d",
		                     (unsigned long long)blk, n->level, level);
	memcpy(buf, n->data, p->bs);
	return 0;
}

/* Entering the node at `level` whose subtree starts at base: 1 when it is
 * new in this walk (to count), 0 for an ancestor passed again after a
 * resume, -1 when the hold's budget is spent (w->stop; the walk resumes
 * with this node). */
static int qenter(qwalk *w, uint64_t base, int level)
{
	if (base < w->cursor || (base == w->cursor && level > w->clevel))
		return 0;
	if (w->budget == 0) {
		qresume(w, base, level);
		return -1;
	}
	w->budget--;
	return 1;
}

static inline uint64_t qent_blk(const uint8_t *b, unsigned i) { return get64(b + NODE_HDR + 16u * i); }
static inline uint32_t qent_crc(const uint8_t *b, unsigned i) { return get32(b + NODE_HDR + 16u * i + 8); }

/* ---- unique bytes ------------------------------------------------------------ */

static int uniq_walk(vms_pool *p, uint8_t **bufs, qwalk *w, uint64_t blk, uint32_t crc,
                     int level, uint64_t base, uint64_t *count)
{
	if (base + p->fpow[level + 1] <= w->cursor)
		return 0; /* done in an earlier hold */
	if (p->ref[blk] != 1)
		return 0; /* shared: deleting this volume frees nothing below */
	int fresh = qenter(w, base, level);
	if (fresh < 0)
		return 0;
	int rc = qnode(p, w, base, blk, crc, level, bufs[level]);
	if (rc == 1 && fresh)
		qresume(w, base, level);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	*count += (uint64_t)fresh;
	for (unsigned i = 0; i < p->fanout && !w->stop; i++) {
		uint64_t c = qent_blk(bufs[level], i), cbase = base + i * p->fpow[level];
		if (!c)
			continue;
		if (c >= p->total_blocks)
			return vms_error_set(VMS_ECORRUPT, "index node %llu: pointer out of bounds",
			                     (unsigned long long)blk);
		if (level == 0) {
			if (cbase >= w->cursor && p->ref[c] == 1)
				(*count)++;
		} else if ((rc = uniq_walk(p, bufs, w, c, qent_crc(bufs[level], i), level - 1, cbase,
		                           count)) < 0) {
			return rc;
		}
	}
	return 0;
}

static void free_bufs(uint8_t **bufs, int n)
{
	for (int i = 0; i < n; i++)
		free(bufs[i]);
}

static int alloc_bufs(vms_pool *p, uint8_t **bufs, int n)
{
	memset(bufs, 0, sizeof(uint8_t *) * (size_t)n);
	for (int i = 0; i < n; i++)
		if (!(bufs[i] = malloc(p->bs))) {
			free_bufs(bufs, n);
			return vms_error_set(VMS_ENOMEM, "out of memory");
		}
	return 0;
}

int vms_vol_unique_bytes(uint64_t *out, vms_pool *p, vms_vol_id vol)
{
	uint8_t *bufs[MAX_DEPTH];
	uint64_t count = 0;
	qwalk w = {.clevel = MAX_DEPTH}; /* nothing entered yet */
	int rc;
	if (p->keys)
		return k_unique_bytes(p, vol, out);
	if ((rc = alloc_bufs(p, bufs, MAX_DEPTH)) < 0)
		return rc;
	do {
		w.budget = QBUDGET;
		w.stop = 0;
		pthread_rwlock_rdlock(&p->commit_lock);
		pthread_mutex_lock(&p->lock);
		vrec *r = vol_find(p, vol);
		if (!r || (r->flags & VREC_HIDDEN))
			rc = vms_error_set(VMS_ENOTFOUND, "volume %llu not found", (unsigned long long)vol);
		else if (r->root)
			rc = uniq_walk(p, bufs, &w, r->root, r->root_crc, r->depth - 1, 0, &count);
		pthread_mutex_unlock(&p->lock);
		pthread_rwlock_unlock(&p->commit_lock);
	} while (rc == 0 && w.stop);
	free_bufs(bufs, MAX_DEPTH);
	if (rc == 0)
		*out = count << p->bshift;
	return rc;
}

/* ---- diff ------------------------------------------------------------------------- */

typedef struct dptr {
	uint64_t blk;
	uint32_t crc;
	int top;            /* level of the node blk points at; -1 = data */
} dptr;

typedef struct diffst {
	vms_pool *p;
	qwalk w;
	uint8_t *bufs[MAX_DEPTH][2];
	uint64_t limit;     /* blocks */
	uint64_t (*ranges)[2];
	size_t n, cap;
} diffst;

static int diff_emit(diffst *d, uint64_t lblk, uint64_t nblk)
{
	if (d->n && d->ranges[d->n - 1][0] + d->ranges[d->n - 1][1] == lblk) {
		d->ranges[d->n - 1][1] += nblk;
		return 0;
	}
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 64;
		void *v = realloc(d->ranges, nc * sizeof(*d->ranges));
		if (!v)
			return vms_error_set(VMS_ENOMEM, "out of memory");
		d->ranges = v;
		d->cap = nc;
	}
	d->ranges[d->n][0] = lblk;
	d->ranges[d->n][1] = nblk;
	d->n++;
	return 0;
}

/* The children of pointer x viewed at `level` (x may sit lower: a tree of
 * smaller depth is the entry 0 of virtual nodes above its root). */
static int diff_children(diffst *d, dptr x, int level, int side, uint64_t base, int fresh,
                         dptr *kids, unsigned *nk)
{
	vms_pool *p = d->p;
	*nk = 0;
	if (!x.blk)
		return 0;
	if (x.top < level) {
		kids[0] = x;
		*nk = 1;
		return 0;
	}
	uint8_t *buf = d->bufs[level][side];
	int rc = qnode(p, &d->w, base, x.blk, x.crc, level, buf);
	if (rc == 1 && fresh)
		qresume(&d->w, base, level);
	if (rc != 0)
		return rc < 0 ? rc : 0; /* the hold ends, *nk = 0 */
	for (unsigned i = 0; i < p->fanout; i++) {
		kids[i].blk = qent_blk(buf, i);
		kids[i].crc = qent_crc(buf, i);
		kids[i].top = level - 1;
		if (kids[i].blk >= p->total_blocks)
			return vms_error_set(VMS_ECORRUPT, "index node %llu: pointer out of bounds",
			                     (unsigned long long)x.blk);
	}
	*nk = p->fanout;
	return 0;
}

static int diff_rec(diffst *d, int level, dptr a, dptr b, uint64_t base)
{
	vms_pool *p = d->p;
	if (base >= d->limit || base + p->fpow[level + 1] <= d->w.cursor)
		return 0;
	if (a.blk == b.blk && (a.top == b.top || a.blk == 0))
		return 0;
	if (level < 0)
		return diff_emit(d, base, 1);
	int fresh = qenter(&d->w, base, level);
	if (fresh < 0)
		return 0;
	dptr *ka = malloc(2 * p->fanout * sizeof(dptr));
	if (!ka)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	dptr *kb = ka + p->fanout;
	unsigned na, nb;
	int rc = diff_children(d, a, level, 0, base, fresh, ka, &na);
	if (rc == 0 && !d->w.stop)
		rc = diff_children(d, b, level, 1, base, fresh, kb, &nb);
	for (unsigned i = 0; rc == 0 && !d->w.stop && i < p->fanout && (i < na || i < nb); i++) {
		dptr ca = i < na ? ka[i] : (dptr){0, 0, level - 1};
		dptr cb = i < nb ? kb[i] : (dptr){0, 0, level - 1};
		rc = diff_rec(d, level - 1, ca, cb, base + i * p->fpow[level]);
	}
	free(ka);
	return rc;
}

int vms_vol_diff(vms_pool *p, vms_vol_id from, vms_vol_id to, vms_extent_cb cb, void *ctx)
{
	diffst d = {.p = p, .w = {.clevel = MAX_DEPTH}};
	int rc = 0;
	if (p->keys)
		return k_diff(p, from, to, cb, ctx);
	for (int l = 0; l < (int)MAX_DEPTH; l++)
		for (int s = 0; s < 2; s++)
			if (!(d.bufs[l][s] = malloc(p->bs)))
				rc = vms_error_set(VMS_ENOMEM, "out of memory");
	if (rc < 0)
		goto out;
	uint64_t size = 0;
	do {
		d.w.budget = QBUDGET;
		d.w.stop = 0;
		pthread_rwlock_rdlock(&p->commit_lock);
		pthread_mutex_lock(&p->lock);
		vrec *a = vol_find(p, from), *b = vol_find(p, to);
		if (!a || !b || ((a->flags | b->flags) & (VREC_HIDDEN | VREC_DELETING))) {
			rc = vms_error_set(VMS_ENOTFOUND, "volume %llu not found",
			                   (unsigned long long)(a && !(a->flags & (VREC_HIDDEN | VREC_DELETING)) ? to : from));
		} else {
			if (!size) /* the sizes as the walk began */
				size = a->size > b->size ? a->size : b->size;
			int depth = a->depth > b->depth ? a->depth : b->depth;
			d.limit = (size + p->bs - 1) >> p->bshift;
			rc = diff_rec(&d, depth - 1, (dptr){a->root, a->root_crc, a->depth - 1},
			              (dptr){b->root, b->root_crc, b->depth - 1}, 0);
		}
		pthread_mutex_unlock(&p->lock);
		pthread_rwlock_unlock(&p->commit_lock);
	} while (rc == 0 && d.w.stop);
	if (rc == 0 && d.n) { /* clip the last range to the byte size */
		uint64_t *last = d.ranges[d.n - 1];
		if (last[0] + last[1] > d.limit)
			last[1] = d.limit - last[0];
	}
	d.limit = size;
	for (size_t i = 0; rc == 0 && i < d.n; i++) {
		uint64_t o = d.ranges[i][0] << p->bshift, l = d.ranges[i][1] << p->bshift;
		if (o + l > d.limit)
			l = d.limit - o;
		rc = cb(ctx, o, l, 1);
	}
out:
	for (int l = 0; l < (int)MAX_DEPTH; l++)
		for (int s = 0; s < 2; s++)
			free(d.bufs[l][s]);
	free(d.ranges);
	return rc;
}
