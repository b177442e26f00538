/*
 * ktree.c - the key tree of a format 3 family (keys.h, docs/design/index-v3.md):
 * a copy-on-write B+tree of keys (lblk, ver) -> values (pblk, crc), sorted
 * by lblk then ver.  On-disk layout: docs/format.md, "Key-tree nodes".
 *
 * Nodes (type NT_KEYS) live in the node cache and are committed by the
 * commit's close like volume-tree nodes (pool.c, close_dirty_nodes: a dirty
 * child is marked BP_DIRTY in its parent's block pointer, found through
 * kt_nchildren/kt_child_bp).  Nodes are never shared, so a node is changed
 * in place when it is dirty (allocated in the open transaction) and copied
 * to a new block otherwise, the old block freed (deferred by the space map
 * like every free).  A dirty node's parent is always dirty too: paths are
 * made writable from the root down.
 *
 * Invariants (kt_check verifies them):
 *   - every node holds at least one entry; an interior node at level l has
 *     children at level l-1; all leaves are at level 0; the root is at
 *     level depth-1;
 *   - keys strictly increase within a node; the key of interior entry i is
 *     a lower bound of every key under child i, and every key under child
 *     i is below the key of entry i+1 (and below the node's own bound).
 *     Entry i's key is the child's lowest key when the entry was made; a
 *     delete does not raise it, an insert below it lowers it (kt_put).
 *   - r->nkeys is the number of keys.
 *
 * Allocation before change: kt_put and kt_del count the blocks a change
 * needs (copies of clean nodes on the path, one per split, one for a new
 * root), allocate them all and reserve as many cache nodes before changing
 * anything, so ENOSPC and ENOMEM leave the tree as it was.  Splits, merges
 * and freeing never allocate.
 *
 * Shape: a full node splits in the middle, except when a key is appended
 * past the last key of the rightmost node of its level: then it splits at
 * the insertion point, so keys added in ascending order fill nodes fully.
 * A node left with under a quarter of its capacity by a delete merges with
 * a cached sibling (kt_prepare loads the siblings of nodes that may need
 * it) when both fit in three quarters of a node; an empty node is freed;
 * the root is replaced by its only child while it has one.
 *
 * Locking: every function runs with pool->lock held.  The walks load a
 * missing node with node_load_keys_unlocked (pool->lock dropped) and then
 * start again from the family's record, found by id (the record array may
 * have moved, nodes may have been evicted).  kt_put, kt_del never load:
 * kt_prepare has, and nothing is evicted while pool->lock stays held.
 */
#include <stdlib.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

#define KT_HDR      (NODE_HDR + 4u)       /* header, u16 count, u16 reserved (0) */
#define KT_LEAF_ENT 18u                   /* lblk 5, ver 4, pblk 5, crc 4 */
#define KT_INT_ENT  25u                   /* block pointer 16, lblk 5, ver 4 */
#define KT_LIMIT    (1ull << 40)          /* lblk and pblk bound */
#define KT_MISS     2                     /* internal: a node is not cached */
#define KT_RES_MAX  (2u * MAX_DEPTH + 1u) /* blocks one put may need */

typedef struct kpath {
	unsigned depth;
	node *n[MAX_DEPTH];                  /* n[depth-1] = root, n[0] = leaf */
	unsigned i[MAX_DEPTH];               /* interior: child taken; leaf: k's lower bound */
} kpath;

typedef struct kmiss {                       /* a node to load */
	uint64_t blk;
	uint32_t crc;
	int level;
} kmiss;

typedef struct kres {                        /* blocks allocated before a change */
	uint64_t blk[KT_RES_MAX];
	unsigned n, used;
} kres;

/* ---- node layout ----------------------------------------------------------- */


static inline unsigned esize(unsigned level) { return level ? KT_INT_ENT : KT_LEAF_ENT; }
static inline unsigned kcount(const uint8_t *d) { return get16(d + NODE_HDR); }
static inline void set_kcount(uint8_t *d, unsigned n) { put16(d + NODE_HDR, (uint16_t)n); }
static inline uint8_t *kent(uint8_t *d, unsigned level, unsigned i) { return d + KT_HDR + esize(level) * i; }
static inline const uint8_t *kent_c(const uint8_t *d, unsigned level, unsigned i)
{
	return d + KT_HDR + esize(level) * i;
}

static inline unsigned kcap(const vms_pool *p, unsigned level) { return (p->bs - KT_HDR) / esize(level); }

static inline kt_key key_at(const uint8_t *d, unsigned level, unsigned i)
{
	const uint8_t *e = kent_c(d, level, i) + (level ? 16 : 0);
	return (kt_key){get40(e), get32(e + 5)};
}

static inline void set_key(uint8_t *d, unsigned level, unsigned i, kt_key k)
{
	uint8_t *e = kent(d, level, i) + (level ? 16 : 0);
	put40(e, k.lblk);
	put32(e + 5, k.ver);
}

static inline kt_val val_at(const uint8_t *d, unsigned i)
{
	const uint8_t *e = kent_c(d, 0, i) + 9;
	return (kt_val){get40(e), get32(e + 5)};
}

static inline void set_val(uint8_t *d, unsigned i, kt_val v)
{
	uint8_t *e = kent(d, 0, i) + 9;
	put40(e, v.pblk);
	put32(e + 5, v.crc);
}

static inline uint64_t bp_blk(const uint8_t *d, unsigned level, unsigned i) { return get64(kent_c(d, level, i)); }
static inline uint32_t bp_crc(const uint8_t *d, unsigned level, unsigned i) { return get32(kent_c(d, level, i) + 8); }
static inline uint32_t bp_flags(const uint8_t *d, unsigned level, unsigned i)
{
	return get32(kent_c(d, level, i) + 12);
}

static inline void set_bp(uint8_t *d, unsigned level, unsigned i, uint64_t blk, uint32_t crc, uint32_t flags)
{
	uint8_t *e = kent(d, level, i);
	put64(e, blk);
	put32(e + 8, crc);
	put32(e + 12, flags);
}

static inline kt_key kt_next(kt_key k)
{
	return k.ver == UINT32_MAX ? (kt_key){k.lblk + 1, 0} : (kt_key){k.lblk, k.ver + 1};
}

/* The first entry of node d (at `level`) that does not come before k:
 * with le, entries whose key is <= k come before it, else those < k.
 * Keys are spread over lblks roughly evenly, so the search starts at the
 * entry interpolated from the node's first and last lblks and looks at a
 * few cache lines around it; a bad guess only costs two more probes. */
static unsigned search(const uint8_t *d, unsigned level, kt_key k, int le)
{
	unsigned n = kcount(d), lo = 0, hi = n;
#define BEFORE(i) (kt_cmp(key_at(d, level, (i)), k) < le)
	if (n > 16) {
		uint64_t a = key_at(d, level, 0).lblk, b = key_at(d, level, n - 1).lblk;
		if (a < k.lblk && k.lblk < b) {
			unsigned g = (unsigned)((double)(k.lblk - a) / (double)(b - a) * (n - 1));
			unsigned l = g > 4 ? g - 4 : 0, h = g + 4 < n - 1 ? g + 4 : n - 1;
			if (!BEFORE(l))
				hi = l;
			else if (BEFORE(h))
				lo = h + 1;
			else {
				lo = l + 1;
				hi = h;
			}
		}
	}
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (BEFORE(mid))
			lo = mid + 1;
		else
			hi = mid;
	}
#undef BEFORE
	return lo;
}

/* First entry of a leaf whose key is >= k. */
static unsigned leaf_lower(const uint8_t *d, kt_key k)
{
	return search(d, 0, k, 0);
}

/* The child of an interior node whose range holds k: the last entry whose
 * key is <= k, or the first one. */
static unsigned child_for(const uint8_t *d, unsigned level, kt_key k)
{
	unsigned lo = search(d, level, k, 1);
	return lo ? lo - 1 : 0;
}

static void ent_insert(uint8_t *d, unsigned level, unsigned at, const uint8_t *e)
{
	unsigned n = kcount(d), es = esize(level);
	memmove(kent(d, level, at + 1), kent(d, level, at), (size_t)(n - at) * es);
	memcpy(kent(d, level, at), e, es);
	set_kcount(d, n + 1);
}

/* Bytes past the last entry stay zero, so a node's image depends on its
 * entries only. */
static void ent_remove(uint8_t *d, unsigned level, unsigned at)
{
	unsigned n = kcount(d), es = esize(level);
	memmove(kent(d, level, at), kent(d, level, at + 1), (size_t)(n - at - 1) * es);
	memset(kent(d, level, n - 1), 0, es);
	set_kcount(d, n - 1);
}

/* Check an NT_KEYS node's payload (its header already checked): count,
 * order, pointer bounds; flags must be 0 unless `mem` (a dirty node in
 * memory, whose dirty children are flagged BP_DIRTY). */
static int verify(const vms_pool *p, const uint8_t *d, uint64_t blk, unsigned level, int mem)
{
	unsigned n = kcount(d);
	if (get16(d + NODE_HDR + 2) != 0 || n == 0 || n > kcap(p, level))
		return vms_error_set(VMS_ECORRUPT, "key-tree node %llu: bad count %u (level %u)",
		                     (unsigned long long)blk, n, level);
	for (unsigned i = 0; i < n; i++) {
		if (i > 0 && kt_cmp(key_at(d, level, i - 1), key_at(d, level, i)) >= 0)
			return vms_error_set(VMS_ECORRUPT, "key-tree node %llu: keys out of order at entry %u",
			                     (unsigned long long)blk, i);
		uint64_t b = level ? bp_blk(d, level, i) : val_at(d, i).pblk;
		uint32_t fl = level ? bp_flags(d, level, i) : 0;
		if ((b < 2 && (level || b == 1)) || b >= p->total_blocks || (fl & ~(mem ? BP_DIRTY : 0u)))
			return vms_error_set(VMS_ECORRUPT, "key-tree node %llu: bad entry %u",
			                     (unsigned long long)blk, i);
	}
	return 0;
}

int kt_node_verify(const vms_pool *p, const uint8_t *data, uint64_t blk, int level)
{
	return verify(p, data, blk, (unsigned)level, 0);
}

unsigned kt_nchildren(const vms_pool *p, const node *n)
{
	(void)p;
	return n->level ? kcount(n->data) : 0;
}

uint8_t *kt_child_bp(const vms_pool *p, node *n, unsigned i)
{
	(void)p;
	return kent(n->data, n->level, i);
}

/* ---- the family record and the walk down ------------------------------------- */

static int fam_rec(vms_pool *p, uint64_t fam, vrec **out)
{
	vrec *r = vol_find(p, fam);
	if (!r || r->kind != VREC_FAMILY)
		return vms_error_set(VMS_ENOTFOUND, "family %llu not found", (unsigned long long)fam);
	if (r->depth > MAX_DEPTH || (r->depth == 0) != (r->root == 0))
		return vms_error_set(VMS_ECORRUPT, "family %llu: bad key-tree root", (unsigned long long)fam);
	*out = r;
	return 0;
}

static int fam_writable(vms_pool *p, uint64_t fam, vrec **out)
{
	if (p->readonly)
		return vms_error_set(VMS_EROFS, "pool is read-only: %s", p->ro_reason);
	return fam_rec(p, fam, out);
}

/* A cached node where the tree says a node of `level` is. */
static int node_ok(const node *n, unsigned level)
{
	if (n->data[4] != NT_KEYS || n->level != level || kcount(n->data) == 0)
		return vms_error_set(VMS_ECORRUPT, "key-tree node %llu: not a level %u node",
		                     (unsigned long long)n->blk, level);
	return 0;
}

/* The path from the root toward k through cached nodes (touched, so they
 * stay).  0 with the whole path, KT_MISS with the first node missing in
 * *miss, or an error. */
static int descend(vms_pool *p, const vrec *r, kt_key k, kpath *pa, kmiss *miss)
{
	uint64_t blk = r->root;
	uint32_t crc = r->root_crc;
	int rc;
	pa->depth = r->depth;
	for (unsigned l = r->depth; l-- > 0;) {
		node *n = cache_get(p, blk);
		if (!n) {
			*miss = (kmiss){blk, crc, (int)l};
			return KT_MISS;
		}
		if ((rc = node_ok(n, l)) < 0)
			return rc;
		pa->n[l] = n;
		if (l == 0) {
			pa->i[0] = leaf_lower(n->data, k);
			break;
		}
		unsigned i = child_for(n->data, l, k);
		pa->i[l] = i;
		blk = bp_blk(n->data, l, i);
		crc = bp_crc(n->data, l, i);
	}
	return 0;
}

/* Drops and retakes pool->lock: the caller starts again from the record. */
static int load(vms_pool *p, const kmiss *m)
{
	return node_load_keys_unlocked(p, m->blk, m->crc, m->level);
}

/* For kt_put/kt_del: the path must be cached (kt_prepare). */
static int path_cached(vms_pool *p, const vrec *r, kt_key k, kpath *pa)
{
	kmiss m;
	int rc = descend(p, r, k, pa, &m);
	if (rc == KT_MISS)
		return vms_error_set(VMS_EIO, "internal: key-tree node %llu of family %llu not cached "
		                     "(kt_prepare first)", (unsigned long long)m.blk,
		                     (unsigned long long)r->id);
	return rc;
}

/* The path toward k, loading what is missing (pool->lock dropped, then the
 * walk starts again from the record).  0 with the path (pa->depth 0: an
 * empty tree) and *rout (may be NULL) the record, or an error. */
static int seek(vms_pool *p, uint64_t fam, kt_key k, kpath *pa, vrec **rout)
{
	for (;;) {
		vrec *r = NULL;
		kmiss m;
		int rc = fam_rec(p, fam, &r);
		if (rc < 0)
			return rc;
		if (rout)
			*rout = r;
		pa->depth = 0;
		if (r->depth == 0)
			return 0;
		if ((rc = descend(p, r, k, pa, &m)) != KT_MISS)
			return rc;
		if ((rc = load(p, &m)) < 0)
			return rc;
	}
}

/* ---- reading ---------------------------------------------------------------- */

int kt_get(vms_pool *p, uint64_t fam, kt_key k, kt_val *v)
{
	kpath pa;
	int rc = seek(p, fam, k, &pa, NULL);
	if (rc < 0 || pa.depth == 0)
		return rc;
	const uint8_t *d = pa.n[0]->data;
	unsigned i = pa.i[0];
	if (i >= kcount(d) || kt_cmp(key_at(d, 0, i), k) != 0)
		return 0;
	if (v)
		*v = val_at(d, i);
	return 1;
}

/* Visit the leaves from the path's position on (see kt_walk); *cur follows
 * the last key visited.  KT_MISS with *m when the next leaf (or a node
 * above it) is not cached. */
static int walk_leaves(vms_pool *p, kpath *pa, kt_key *cur, kt_key to, kt_walk_cb cb, void *ctx,
                       kmiss *m)
{
	unsigned pos = pa->i[0];
	int rc;
	for (;;) {
		const uint8_t *d = pa->n[0]->data;
		for (unsigned n = kcount(d); pos < n; pos++) {
			kt_key k = key_at(d, 0, pos);
			if (kt_cmp(k, to) >= 0)
				return 0;
			*cur = kt_next(k);
			if ((rc = cb(ctx, k, val_at(d, pos))) != 0)
				return rc < 0 ? rc : 1;
		}
		unsigned l = 1;
		while (l < pa->depth && pa->i[l] + 1 >= kcount(pa->n[l]->data))
			l++;
		if (l >= pa->depth)
			return 0;
		pa->i[l]++;
		if (kt_cmp(key_at(pa->n[l]->data, l, pa->i[l]), to) >= 0)
			return 0; /* everything further right is past the range */
		for (; l > 0; l--) {
			const uint8_t *pd = pa->n[l]->data;
			unsigned i = pa->i[l];
			node *c = cache_get(p, bp_blk(pd, l, i));
			if (!c) {
				*m = (kmiss){bp_blk(pd, l, i), bp_crc(pd, l, i), (int)l - 1};
				return KT_MISS;
			}
			if ((rc = node_ok(c, l - 1)) < 0)
				return rc;
			pa->n[l - 1] = c;
			pa->i[l - 1] = 0;
		}
		pos = 0;
	}
}

int kt_walk(vms_pool *p, uint64_t fam, kt_key from, kt_key to, kt_walk_cb cb, void *ctx)
{
	kt_key cur = from;
	for (;;) {
		kpath pa;
		kmiss m;
		int rc;
		if (kt_cmp(cur, to) >= 0)
			return 0;
		if ((rc = seek(p, fam, cur, &pa, NULL)) < 0 || pa.depth == 0)
			return rc;
		if ((rc = walk_leaves(p, &pa, &cur, to, cb, ctx, &m)) != KT_MISS)
			return rc;
		if ((rc = load(p, &m)) < 0)
			return rc;
		/* the lock was dropped: seek again just past the last key visited */
	}
}

/* ---- changing --------------------------------------------------------------- */

static int underfull(const vms_pool *p, unsigned level, unsigned n)
{
	return n < kcap(p, level) / 4;
}

int kt_prepare(vms_pool *p, uint64_t fam, kt_key k)
{
	for (;;) {
		kpath pa;
		kmiss m = {0, 0, 0};
		int rc = seek(p, fam, k, &pa, NULL);
		/* a delete may leave a node underfull and merge it with a sibling:
		 * have the siblings of such nodes cached too */
		for (unsigned l = 0; rc == 0 && l + 1 < pa.depth; l++) {
			if (!underfull(p, l, kcount(pa.n[l]->data) - 1))
				continue;
			const uint8_t *pd = pa.n[l + 1]->data;
			unsigned i = pa.i[l + 1], pn = kcount(pd);
			for (unsigned j = i ? i - 1 : i + 1; rc == 0 && j <= i + 1 && j < pn; j += 2) {
				if (!cache_get(p, bp_blk(pd, l + 1, j))) {
					m = (kmiss){bp_blk(pd, l + 1, j), bp_crc(pd, l + 1, j), (int)l};
					rc = KT_MISS;
				}
			}
		}
		if (rc != KT_MISS)
			return rc;
		if ((rc = load(p, &m)) < 0)
			return rc;
	}
}

/* Allocate `need` blocks and make sure as many cache nodes can be had
 * without malloc, before anything changes.  On failure nothing is kept. */
static int res_take(vms_pool *p, kres *res, unsigned need, int use_reserve)
{
	node *spare[KT_RES_MAX];
	unsigned k;
	int rc = 0;
	res->n = res->used = 0;
	for (k = 0; k < need; k++)
		if (!(spare[k] = node_alloc(p)))
			break;
	for (unsigned j = 0; j < k; j++)
		node_release(p, spare[j]); /* kept on the cache's spare list */
	if (k < need)
		return vms_error_set(VMS_ENOMEM, "out of memory for key-tree nodes");
	for (; res->n < need; res->n++) {
		if ((rc = sm_alloc_meta(p, use_reserve, &res->blk[res->n])) < 0) {
			while (res->n)
				sm_unref_meta(p, res->blk[--res->n]);
			return rc;
		}
	}
	return 0;
}

/* A new empty dirty node on a reserved block (cannot fail: res_take). */
static node *node_new(vms_pool *p, kres *res, unsigned level)
{
	node *n = cache_new_dirty(p, res->blk[res->used++], (uint8_t)level);
	n->data[4] = NT_KEYS; /* cache_new_dirty writes a volume-tree header */
	return n;
}

static void set_root(vms_pool *p, vrec *r, uint64_t blk, uint32_t crc, int pending)
{
	r->root = blk;
	r->root_crc = pending ? 0 : crc;
	r->root_pending = (uint8_t)pending;
	vol_mark(p, r);
}

static unsigned path_clean(const kpath *pa, unsigned lowest)
{
	unsigned n = 0;
	for (unsigned l = lowest; l < pa->depth; l++)
		n += !pa->n[l]->dirty;
	return n;
}

/* Make the path's nodes from the root down to `lowest` writable: a clean
 * node is copied to a reserved block and its old block freed. */
static void path_writable(vms_pool *p, vrec *r, kpath *pa, kres *res, unsigned lowest)
{
	for (unsigned l = pa->depth; l-- > lowest;) {
		node *o = pa->n[l];
		if (o->dirty)
			continue;
		node *c = node_new(p, res, l);
		memcpy(c->data + NODE_HDR, o->data + NODE_HDR, p->bs - NODE_HDR);
		sm_unref_meta(p, o->blk); /* o is gone */
		pa->n[l] = c;
		if (l + 1 == pa->depth)
			set_root(p, r, c->blk, 0, 1);
		else
			set_bp(pa->n[l + 1]->data, l + 1, pa->i[l + 1], c->blk, 0, BP_DIRTY);
	}
}

/* Insert entry e at position `at` of writable node n; when n is full, split
 * it and return the new right half in *right (its entry 0 holds its lowest
 * key); s entries, e included, stay left (1..cap; s = cap: e goes right
 * alone when at == cnt). */
static void node_insert(vms_pool *p, kres *res, node *n, unsigned level, unsigned at, const uint8_t *e,
                        unsigned s, node **right)
{
	unsigned cnt = kcount(n->data), cap = kcap(p, level), es = esize(level);
	*right = NULL;
	if (cnt < cap) {
		ent_insert(n->data, level, at, e);
		return;
	}
	node *m = node_new(p, res, level);
	unsigned from = at < s ? s - 1 : s;          /* first old entry that moves right */
	memcpy(kent(m->data, level, 0), kent(n->data, level, from), (size_t)(cnt - from) * es);
	set_kcount(m->data, cnt - from);
	memset(kent(n->data, level, from), 0, (size_t)(cnt - from) * es);
	set_kcount(n->data, from);
	if (at < s)
		ent_insert(n->data, level, at, e);
	else
		ent_insert(m->data, level, at - s, e);
	*right = m;
}

int kt_put(vms_pool *p, uint64_t fam, kt_key k, kt_val v, int use_reserve, kt_val *old)
{
	vrec *r = NULL;
	kpath pa;
	kres res;
	int rc, rightmost[MAX_DEPTH] = {0};
	if (k.lblk >= KT_LIMIT || v.pblk == 1 || v.pblk >= p->total_blocks)
		return vms_error_set(VMS_EINVAL, "key-tree put: block %llu -> %llu out of bounds",
		                     (unsigned long long)k.lblk, (unsigned long long)v.pblk);
	if ((rc = fam_writable(p, fam, &r)) < 0)
		return rc;
	uint8_t e[KT_INT_ENT] = {0};
	put40(e, k.lblk);
	put32(e + 5, k.ver);
	put40(e + 9, v.pblk);
	put32(e + 14, v.crc);
	if (r->depth == 0) {
		if ((rc = res_take(p, &res, 1, use_reserve)) < 0)
			return rc;
		node *n = node_new(p, &res, 0);
		ent_insert(n->data, 0, 0, e);
		r->depth = 1;
		r->nkeys = 1;
		set_root(p, r, n->blk, 0, 1);
		return 0;
	}
	if ((rc = path_cached(p, r, k, &pa)) < 0)
		return rc;
	unsigned pos = pa.i[0];
	const uint8_t *ld = pa.n[0]->data;
	int found = pos < kcount(ld) && kt_cmp(key_at(ld, 0, pos), k) == 0;
	unsigned need = path_clean(&pa, 0), splits = 0;
	if (!found) {
		while (splits < pa.depth && kcount(pa.n[splits]->data) == kcap(p, splits))
			splits++;
		if (splits == pa.depth && pa.depth == MAX_DEPTH)
			return vms_error_set(VMS_ENOSPC, "key tree of family %llu is full (height %u)",
			                     (unsigned long long)fam, pa.depth);
		need += splits + (splits == pa.depth);
		rightmost[pa.depth - 1] = 1;
		for (unsigned l = pa.depth - 1; l-- > 0;)
			rightmost[l] = rightmost[l + 1] && pa.i[l + 1] + 1 == kcount(pa.n[l + 1]->data);
	}
	if ((rc = res_take(p, &res, need, use_reserve)) < 0)
		return rc;
	/* nothing fails from here on */
	path_writable(p, r, &pa, &res, 0);
	uint8_t *d = pa.n[0]->data;
	if (found) {
		if (old)
			*old = val_at(d, pos);
		set_val(d, pos, v);
		return 1;
	}
	for (unsigned l = 1; l < pa.depth; l++) /* keep entry keys lower bounds */
		if (pa.i[l] == 0 && kt_cmp(k, key_at(pa.n[l]->data, l, 0)) < 0)
			set_key(pa.n[l]->data, l, 0, k);
	unsigned l = 0, at = pos;
	kt_key ins = k;
	for (;;) {
		node *n = pa.n[l], *right;
		unsigned cnt = kcount(n->data), split = (kcap(p, l) + 1) / 2;
		/* A key past the last key of its level, or past the last key of
		 * its region (data keys, then delta regions, then the version logs'
		 * keys: keys.h), splits where it goes, so appending fills nodes
		 * completely. */
		kt_key next = {LOG_BASE, 0}; /* the key after this node's: none = as a log key */
		if (at < cnt)
			next = key_at(n->data, l, at);
		for (unsigned j = l + 1; at == cnt && j < pa.depth; j++)
			if (pa.i[j] + 1 < kcount(pa.n[j]->data)) {
				next = key_at(pa.n[j]->data, j, pa.i[j] + 1);
				break;
			}
		int data_end = key_region(ins.lblk) < key_region(next.lblk);
		if (at == cnt && (rightmost[l] || data_end))
			split = kcap(p, l);
		else if (data_end)
			split = at + 1;
		node_insert(p, &res, n, l, at, e, split, &right);
		if (!right)
			break;
		kt_key rk = key_at(right->data, l, 0);
		ins = rk;
		memset(e, 0, sizeof(e));
		put64(e, right->blk);
		put32(e + 12, BP_DIRTY);
		put40(e + 16, rk.lblk);
		put32(e + 21, rk.ver);
		if (l + 1 == pa.depth) { /* the root split: one level more */
			node *root = node_new(p, &res, l + 1);
			uint8_t le[KT_INT_ENT] = {0};
			kt_key lk = key_at(n->data, l, 0);
			put64(le, n->blk);
			put32(le + 12, BP_DIRTY);
			put40(le + 16, lk.lblk);
			put32(le + 21, lk.ver);
			ent_insert(root->data, l + 1, 0, le);
			ent_insert(root->data, l + 1, 1, e);
			r->depth++;
			set_root(p, r, root->blk, 0, 1);
			break;
		}
		at = pa.i[l + 1] + 1;
		l++;
	}
	r->nkeys++;
	vol_mark(p, r);
	return 0;
}

static void free_node(vms_pool *p, uint64_t blk, uint64_t *freed)
{
	sm_unref_meta(p, blk);
	if (freed)
		(*freed)++;
}

/* Writable node n (child i of writable par, both at the given levels) is
 * underfull: merge a cached sibling into it when both fit in three
 * quarters of a node, freeing the sibling.  1 when merged. */
static int merge_sibling(vms_pool *p, node *n, node *par, unsigned level, unsigned i)
{
	unsigned cnt = kcount(n->data), pn = kcount(par->data), es = esize(level);
	for (unsigned j = i ? i - 1 : i + 1; j <= i + 1 && j < pn; j += 2) {
		node *s = cache_find(p, bp_blk(par->data, level + 1, j));
		if (!s || s->level != level || s->data[4] != NT_KEYS)
			continue;
		unsigned sc = kcount(s->data);
		if (cnt + sc > kcap(p, level) * 3 / 4)
			continue;
		if (j < i) { /* the left sibling's entries go first; n takes its place */
			memmove(kent(n->data, level, sc), kent(n->data, level, 0), (size_t)cnt * es);
			memcpy(kent(n->data, level, 0), kent(s->data, level, 0), (size_t)sc * es);
			set_key(par->data, level + 1, i, key_at(par->data, level + 1, j));
		} else {
			memcpy(kent(n->data, level, cnt), kent(s->data, level, 0), (size_t)sc * es);
		}
		set_kcount(n->data, cnt + sc);
		free_node(p, s->blk, NULL); /* s is gone */
		ent_remove(par->data, level + 1, j);
		return 1;
	}
	return 0;
}

/* After node pa->n[level] (writable, as is the path above it) lost an
 * entry: free it when empty, merge it when underfull (when `merge`), and
 * go on up while the parent lost an entry; then shrink the root. */
static void settle(vms_pool *p, vrec *r, kpath *pa, unsigned level, int merge, uint64_t *freed)
{
	unsigned l = level;
	for (; l + 1 < pa->depth; l++) {
		node *n = pa->n[l], *par = pa->n[l + 1];
		unsigned i = pa->i[l + 1], cnt = kcount(n->data);
		if (cnt == 0) {
			free_node(p, n->blk, freed);
			ent_remove(par->data, l + 1, i);
			continue;
		}
		if (!merge || !underfull(p, l, cnt) || !merge_sibling(p, n, par, l, i))
			return;
		if (freed)
			(*freed)++;
	}
	node *root = pa->n[pa->depth - 1];
	if (kcount(root->data) == 0) {
		free_node(p, root->blk, freed);
		r->depth = 0;
		r->nkeys = 0;
		set_root(p, r, 0, 0, 0);
		return;
	}
	while (r->depth > 1 && root && kcount(root->data) == 1) {
		uint64_t old = root->blk, blk = bp_blk(root->data, r->depth - 1, 0);
		uint32_t crc = bp_crc(root->data, r->depth - 1, 0);
		int pending = (bp_flags(root->data, r->depth - 1, 0) & BP_DIRTY) != 0;
		free_node(p, old, freed);
		r->depth--;
		set_root(p, r, blk, crc, pending);
		root = cache_find(p, blk); /* not cached: shrink no further for now */
	}
}

int kt_del(vms_pool *p, uint64_t fam, kt_key k, kt_val *old)
{
	vrec *r = NULL;
	kpath pa;
	kres res;
	int rc;
	if ((rc = fam_writable(p, fam, &r)) < 0)
		return rc;
	if (r->depth == 0)
		return 0;
	if ((rc = path_cached(p, r, k, &pa)) < 0)
		return rc;
	unsigned pos = pa.i[0];
	const uint8_t *ld = pa.n[0]->data;
	if (pos >= kcount(ld) || kt_cmp(key_at(ld, 0, pos), k) != 0)
		return 0;
	if ((rc = res_take(p, &res, path_clean(&pa, 0), 1)) < 0)
		return rc;
	path_writable(p, r, &pa, &res, 0);
	if (old)
		*old = val_at(pa.n[0]->data, pos);
	ent_remove(pa.n[0]->data, 0, pos);
	if (r->nkeys)
		r->nkeys--;
	vol_mark(p, r);
	settle(p, r, &pa, 0, 1, NULL);
	return 1;
}

int kt_destroy_step(vms_pool *p, uint64_t fam, uint64_t budget)
{
	uint64_t freed = 0;
	for (;;) {
		vrec *r = NULL;
		kpath pa;
		kres res;
		int rc = fam_writable(p, fam, &r);
		if (rc < 0 || r->depth == 0)
			return rc;
		if (freed >= (budget ? budget : 1))
			return 1;
		/* the leftmost leaf; seek may drop pool->lock: look at the record again */
		if ((rc = seek(p, fam, (kt_key){0, 0}, &pa, NULL)) < 0 || pa.depth == 0 ||
		    (rc = fam_writable(p, fam, &r)) < 0)
			return rc;
		/* the leaf is freed as it is; the path above it changes */
		if ((rc = res_take(p, &res, path_clean(&pa, 1), 1)) < 0)
			return rc;
		path_writable(p, r, &pa, &res, 1);
		unsigned n = kcount(pa.n[0]->data);
		r->nkeys = r->nkeys > n ? r->nkeys - n : 0;
		if (pa.depth == 1) {
			free_node(p, pa.n[0]->blk, &freed);
			r->depth = 0;
			set_root(p, r, 0, 0, 0);
			return 0;
		}
		free_node(p, pa.n[0]->blk, &freed);
		ent_remove(pa.n[1]->data, 1, 0);
		vol_mark(p, r);
		settle(p, r, &pa, 1, 0, &freed);
	}
}

/* ---- check -------------------------------------------------------------------- */

typedef struct kcheck {
	vms_pool *p;
	uint64_t fam;
	int (*cb_node)(void *, uint64_t);
	int (*cb_key)(void *, kt_key, kt_val);
	void *ctx;
	uint8_t *buf[MAX_DEPTH];
	uint64_t nkeys;
} kcheck;

/* The image of node blk into buf: from memory when dirty (its parent says
 * so: `pending`) or pinned (the disk may not hold it yet), else from disk;
 * checksum, header and payload verified.  *mem = 1 for a dirty node. */
static int check_read(kcheck *c, uint8_t *buf, uint64_t blk, uint32_t crc, int pending, unsigned level)
{
	vms_pool *p = c->p;
	int rc;
	if (blk < 2 || blk >= p->total_blocks)
		return vms_error_set(VMS_ECORRUPT, "family %llu: key-tree pointer to block %llu out of bounds",
		                     (unsigned long long)c->fam, (unsigned long long)blk);
	node *n = cache_find(p, blk);
	if (pending != (n && n->dirty))
		return vms_error_set(VMS_ECORRUPT, "family %llu: key-tree node %llu is %s but its pointer "
		                     "says %s", (unsigned long long)c->fam, (unsigned long long)blk,
		                     n && n->dirty ? "dirty" : "not dirty", pending ? "dirty" : "written");
	if (n && (n->dirty || n->pinned)) {
		if (n->pinned && n->crc != crc)
			return vms_error_set(VMS_ECORRUPT, "key-tree node %llu: checksum %08x, parent says %08x",
			                     (unsigned long long)blk, n->crc, crc);
		memcpy(buf, n->data, p->bs);
	} else {
		if ((rc = p->io->read(p->io, buf, p->bs, blk << p->bshift)) < 0)
			return vms_error_wrap(rc, "reading key-tree node %llu", (unsigned long long)blk);
		uint32_t got = vms_crc32c(0, buf, p->bs);
		if (got != crc)
			return vms_error_set(VMS_ECORRUPT, "key-tree node %llu: checksum %08x, parent says %08x",
			                     (unsigned long long)blk, got, crc);
	}
	if ((rc = node_check_header(p, buf, NT_KEYS, (int)level, blk)) < 0)
		return rc;
	return verify(p, buf, blk, level, pending);
}

/* Check the subtree at blk, whose keys must lie in [lo, hi) (NULL: no bound). */
static int check_subtree(kcheck *c, uint64_t blk, uint32_t crc, int pending, unsigned level,
                         const kt_key *lo, const kt_key *hi)
{
	uint8_t *d = c->buf[level];
	int rc;
	if ((rc = check_read(c, d, blk, crc, pending, level)) < 0)
		return rc;
	if (c->cb_node && (rc = c->cb_node(c->ctx, blk)) != 0)
		return rc;
	unsigned n = kcount(d);
	kt_key first = key_at(d, level, 0), last = key_at(d, level, n - 1);
	if ((lo && kt_cmp(first, *lo) < 0) || (hi && kt_cmp(last, *hi) >= 0))
		return vms_error_set(VMS_ECORRUPT, "key-tree node %llu (family %llu): keys outside the "
		                     "range its parent gives", (unsigned long long)blk,
		                     (unsigned long long)c->fam);
	for (unsigned i = 0; i < n; i++) {
		if (level == 0) {
			c->nkeys++;
			if (c->cb_key && (rc = c->cb_key(c->ctx, key_at(d, 0, i), val_at(d, i))) != 0)
				return rc;
			continue;
		}
		kt_key clo = key_at(d, level, i), chi = i + 1 < n ? key_at(d, level, i + 1) : (kt_key){0, 0};
		const kt_key *hp = i + 1 < n ? &chi : hi;
		if ((rc = check_subtree(c, bp_blk(d, level, i), bp_crc(d, level, i),
		                        (bp_flags(d, level, i) & BP_DIRTY) != 0, level - 1, &clo, hp)) != 0)
			return rc;
	}
	return 0;
}

int kt_check(vms_pool *p, uint64_t fam, int (*cb_node)(void *, uint64_t),
             int (*cb_key)(void *, kt_key, kt_val), void *ctx)
{
	kcheck c = {.p = p, .fam = fam, .cb_node = cb_node, .cb_key = cb_key, .ctx = ctx};
	vrec *r = NULL;
	int rc = fam_rec(p, fam, &r);
	if (rc < 0 || r->depth == 0)
		goto done;
	for (unsigned l = 0; l < r->depth; l++) {
		if (!(c.buf[l] = malloc(p->bs))) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory for a key-tree check");
			goto done;
		}
	}
	/* pool->lock is held throughout: r stays valid */
	if ((rc = check_subtree(&c, r->root, r->root_crc, r->root_pending, r->depth - 1, NULL, NULL)) != 0)
		goto done;
done:
	if (rc == 0 && r && c.nkeys != r->nkeys)
		rc = vms_error_set(VMS_ECORRUPT, "family %llu: %llu keys in its tree, record says %llu",
		                   (unsigned long long)fam, (unsigned long long)c.nkeys,
		                   (unsigned long long)r->nkeys);
	for (unsigned l = 0; l < MAX_DEPTH; l++)
		free(c.buf[l]);
	return rc;
}
