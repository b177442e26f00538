/*
 * tree.c - volume trees: lookup, shadowing, and the I/O path.
 *
 * A volume's block index is a radix tree of fanout F = B/16 - 1 over its
 * logical blocks; leaves (level 0) point at data blocks, the root sits at
 * level depth-1.  Holes are null pointers at any level.
 *
 * Shadowing (Rodeh): a node is changed in place only when it is fresh
 * (allocated in the open txg, so no commit record can reach it) and its
 * reference count is 1.  Otherwise it is copied to a new block; if it was
 * shared, every child gains a reference and the old node loses one; if it
 * was unshared, the old block is freed (deferred) and the children keep
 * their counts.  Data blocks follow the same rule at block granularity:
 * a write into a fresh unshared block goes in place, anything else is
 * redirected to a new block (read-merge-write for a partial block).
 *
 * Reads: under pool->lock the walk uses cached nodes only; on a miss the
 * lock is dropped for the node's read and the walk restarts.  Extents are
 * gathered under the lock and read after it is released (commit_lock held
 * shared keeps the blocks from being reused meanwhile).
 */
#include <stdlib.h>
#include <time.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

#define EXT_MAX 64

/* ---- volume table -------------------------------------------------------- */

static int vindex_cmp(const void *a, const void *b)
{
	const vindex *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

int vindex_rebuild(vms_pool *p)
{
	size_t n = 0;
	for (uint64_t s = 0; s < p->nslots; s++)
		if (p->recs[s].id)
			n++;
	size_t cap = n + 64;
	vindex *v = malloc(cap * sizeof(*v));
	if (!v)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	n = 0;
	p->ndeleting = 0;
	for (uint64_t s = 0; s < p->nslots; s++)
		if (p->recs[s].id) {
			v[n].id = p->recs[s].id;
			v[n].slot = (uint32_t)s;
			n++;
			if (p->recs[s].flags & VREC_DELETING)
				p->ndeleting++;
		}
	qsort(v, n, sizeof(*v), vindex_cmp);
	free(p->vidx);
	p->vidx = v;
	p->nvidx = n;
	p->vidx_cap = cap;
	p->free_slots_ready = 0;
	return 0;
}

static size_t vindex_pos(const vms_pool *p, uint64_t id)
{
	size_t lo = 0, hi = p->nvidx;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p->vidx[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

vrec *vol_find(vms_pool *p, vms_vol_id id)
{
	size_t i = vindex_pos(p, id);
	if (i < p->nvidx && p->vidx[i].id == id)
		return &p->recs[p->vidx[i].slot];
	return NULL;
}

void vol_mark(vms_pool *p, const vrec *r)
{
	parray_mark(&p->vtab, (uint64_t)(r - p->recs) / vtab_per_page(p));
	p->dirty = 1;
}

/* ---- free slots: a min-heap, so creation takes the lowest free slot in
 * O(log n) (the table stays compact and vtab_trim can give pages back).
 * Entries may be stale (a slot past a trimmed end, or taken since): pop
 * skips them; the heap is rebuilt when stale entries outnumber the slots. */

/* Grow the array *pv of *cap elements of `elem` bytes. */
int array_grow(void *pv, size_t *cap, size_t elem)
{
	void **v = pv;
	size_t nc = *cap * 2 + 64;
	void *n = realloc(*v, nc * elem);
	if (!n)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	*v = n;
	*cap = nc;
	return 0;
}

static int slot_push(vms_pool *p, uint64_t s)
{
	if (p->nfree_slots == p->free_slots_cap &&
	    array_grow(&p->free_slots, &p->free_slots_cap, sizeof(*p->free_slots)) < 0)
		return VMS_ENOMEM;
	size_t i = p->nfree_slots++;
	while (i > 0 && p->free_slots[(i - 1) / 2] > s) {
		p->free_slots[i] = p->free_slots[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	p->free_slots[i] = s;
	return 0;
}

static uint64_t slot_pop(vms_pool *p)
{
	uint64_t top = p->free_slots[0], last = p->free_slots[--p->nfree_slots];
	size_t i = 0, n = p->nfree_slots;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && p->free_slots[c + 1] < p->free_slots[c])
			c++;
		if (p->free_slots[c] >= last)
			break;
		p->free_slots[i] = p->free_slots[c];
		i = c;
	}
	if (n)
		p->free_slots[i] = last;
	return top;
}

static int slots_rebuild(vms_pool *p)
{
	p->nfree_slots = 0;
	for (uint64_t s = 0; s < p->nslots; s++)
		if (!p->recs[s].id && slot_push(p, s) < 0)
			return VMS_ENOMEM;
	p->free_slots_ready = 1;
	return 0;
}

/* A new record with a fresh id; may move p->recs (re-find older pointers). */
int vol_slot_new(vms_pool *p, vrec **out)
{
	int rc;
	if ((!p->free_slots_ready || p->nfree_slots > 2 * p->nslots + 64) &&
	    (rc = slots_rebuild(p)) < 0)
		return rc;
	uint64_t s = UINT64_MAX;
	while (p->nfree_slots) {
		uint64_t c = slot_pop(p);
		if (c < p->nslots && !p->recs[c].id) {
			s = c;
			break;
		}
	}
	if (s == UINT64_MAX) {
		uint64_t old = p->nslots;
		if ((rc = vtab_grow(p)) < 0)
			return rc;
		s = old;
		for (uint64_t c = old + 1; c < p->nslots; c++)
			if ((rc = slot_push(p, c)) < 0)
				return rc;
	}
	if (p->nvidx == p->vidx_cap && (rc = array_grow(&p->vidx, &p->vidx_cap, sizeof(*p->vidx))) < 0)
		return rc;
	vrec *r = &p->recs[s];
	memset(r, 0, sizeof(*r));
	r->id = p->next_id++;
	r->create_txg = p->txg;
	r->create_time = (int64_t)time(NULL);
	p->vidx[p->nvidx].id = r->id; /* ids only grow: appending keeps the order */
	p->vidx[p->nvidx].slot = (uint32_t)s;
	p->nvidx++;
	vol_mark(p, r);
	*out = r;
	return 0;
}

void vol_remove(vms_pool *p, vrec *r)
{
	size_t i = vindex_pos(p, r->id);
	if (i < p->nvidx && p->vidx[i].id == r->id) {
		memmove(&p->vidx[i], &p->vidx[i + 1], (p->nvidx - i - 1) * sizeof(vindex));
		p->nvidx--;
	}
	if (r->flags & VREC_DELETING)
		p->ndeleting--;
	vol_mark(p, r);
	memset(r, 0, sizeof(*r));
	/* a failed push only costs a rebuild of the heap later */
	if (slot_push(p, (uint64_t)(r - p->recs)) < 0)
		p->free_slots_ready = 0;
	vtab_trim(p);
}

uint32_t depth_for_size(const vms_pool *p, uint64_t size)
{
	uint64_t nb = (size + p->bs - 1) >> p->bshift;
	uint32_t d = 1;
	while (d < MAX_DEPTH && p->fpow[d] < nb)
		d++;
	return d;
}

/* A user-visible volume (not hidden, not being deleted). */
static int vol_get(vms_pool *p, vms_vol_id id, int for_write, vrec **out)
{
	vrec *r = vol_find(p, id);
	if (!r || (r->flags & (VREC_HIDDEN | VREC_DELETING)))
		return vms_error_set(VMS_ENOTFOUND, "volume %llu not found", (unsigned long long)id);
	if (for_write && r->kind != VMS_VOL_VOLUME)
		return vms_error_set(VMS_EROFS, "volume %llu is a snapshot (read-only)",
		                     (unsigned long long)id);
	if (for_write && p->readonly)
		return vms_error_set(VMS_EROFS, "pool is read-only: %s", p->ro_reason);
	*out = r;
	return 0;
}

/* ---- tree walks ----------------------------------------------------------- */

/*
 * Find the leaf holding lblk, loading missing nodes (dropping pool->lock,
 * then restarting).  *leaf = NULL means a hole; *span is then the number of
 * blocks from lblk to the end of the hole's subtree.  *rout is refreshed.
 */
static int lookup_leaf(vms_pool *p, vms_vol_id id, int for_write, uint64_t lblk, vrec **rout,
                       node **leaf, uint64_t *span)
{
	for (;;) {
		vrec *r = NULL;
		int rc = vol_get(p, id, for_write, &r);
		if (rc < 0)
			return rc;
		*rout = r;
		uint64_t cur = r->root;
		uint32_t crc = r->root_crc;
		int lev = r->depth - 1;
		for (;;) {
			if (cur == 0) {
				uint64_t cover = p->fpow[lev + 1];
				*leaf = NULL;
				*span = cover - lblk % cover;
				return 0;
			}
			node *n = cache_get(p, cur);
			if (!n) {
				if ((rc = node_load_unlocked(p, cur, crc, lev)) < 0)
					return rc;
				break; /* restart: the lock was dropped */
			}
			if (lev == 0) {
				*leaf = n;
				return 0;
			}
			unsigned i = tree_index(p, lblk, lev);
			cur = ent_blk(n, i);
			crc = ent_crc(n, i);
			lev--;
		}
	}
}

/* Make node n writable (see the file comment).  *out is n or its copy. */
static int make_writable(vms_pool *p, node *n, int use_reserve, node **out)
{
	if (n->dirty && p->ref[n->blk] == 1) {
		*out = n;
		return 0;
	}
	uint64_t nb = 0;
	int rc = sm_alloc_meta(p, use_reserve, &nb);
	if (rc < 0)
		return rc;
	node *m = cache_new_dirty(p, nb, n->level);
	if (!m) {
		sm_unref_meta(p, nb);
		return vms_error_set(VMS_ENOMEM, "out of memory for an index node");
	}
	memcpy(m->data + NODE_HDR, n->data + NODE_HDR, p->bs - NODE_HDR);
	if (p->ref[n->blk] > 1) {
		for (unsigned i = 0; i < p->fanout; i++) {
			uint64_t c = ent_blk(m, i);
			if (c)
				sm_ref(p, c);
		}
	}
	sm_unref_meta(p, n->blk); /* n may be gone now */
	*out = m;
	return 0;
}

/*
 * Return the writable node at `level` on the path to lblk, shadowing and
 * creating nodes from the root down.  The existing part of the path must be
 * cached (lookup_leaf first, without dropping the lock since).
 */
int tree_path_writable(vms_pool *p, vrec *r, uint64_t lblk, int level, node **out, int use_reserve)
{
	int top = r->depth - 1, rc;
	node *n;
	uint64_t nb = 0;
	if (!r->root) {
		if ((rc = sm_alloc_meta(p, use_reserve, &nb)) < 0)
			return rc;
		if (!(n = cache_new_dirty(p, nb, (uint8_t)top))) {
			sm_unref_meta(p, nb);
			return vms_error_set(VMS_ENOMEM, "out of memory for an index node");
		}
		r->root = nb;
		r->root_crc = 0;
		r->root_pending = 1;
		vol_mark(p, r);
	} else {
		node *o = cache_get(p, r->root);
		if (!o)
			return vms_error_set(VMS_EIO, "internal: root of volume %llu not cached",
			                     (unsigned long long)r->id);
		if ((rc = make_writable(p, o, use_reserve, &n)) < 0)
			return rc;
		if (n != o) {
			r->root = n->blk;
			r->root_crc = 0;
			r->root_pending = 1;
			vol_mark(p, r);
		}
	}
	for (int lev = top; lev > level; lev--) {
		unsigned i = tree_index(p, lblk, lev);
		uint64_t b = ent_blk(n, i);
		node *c;
		if (!b) {
			if ((rc = sm_alloc_meta(p, use_reserve, &nb)) < 0)
				return rc;
			if (!(c = cache_new_dirty(p, nb, (uint8_t)(lev - 1)))) {
				sm_unref_meta(p, nb);
				return vms_error_set(VMS_ENOMEM, "out of memory for an index node");
			}
			ent_set(n, i, nb, 0, BP_DIRTY);
		} else {
			node *o = cache_get(p, b);
			if (!o)
				return vms_error_set(VMS_EIO, "internal: index node %llu not cached",
				                     (unsigned long long)b);
			if ((rc = make_writable(p, o, use_reserve, &c)) < 0)
				return rc;
			if (c != o)
				ent_set(n, i, c->blk, 0, BP_DIRTY);
		}
		n = c;
	}
	*out = n;
	return 0;
}

int tree_unhook(vms_pool *p, vrec *r, uint64_t lblk, int level)
{
	if (level == r->depth - 1) {
		r->root = 0;
		r->root_crc = 0;
		r->root_pending = 0;
		vol_mark(p, r);
		return 0;
	}
	node *par;
	int rc = tree_path_writable(p, r, lblk, level + 1, &par, 1);
	if (rc < 0)
		return rc;
	ent_set(par, tree_index(p, lblk, level + 1), 0, 0, 0);
	return 0;
}

/* ---- claims: data I/O of writes without pool->lock ---------------------------
 *
 * A write plans one leaf's worth of blocks under pool->lock (which block is
 * written in place, which goes to a newly allocated block), does their data
 * I/O with the lock released, and takes the lock again to switch the leaf's
 * entries.  The blocks are claimed for that time (volume, logical block
 * range), so no other write, trim or zeroing of them can change their
 * entries in between, and the plan still holds when it is applied.  The
 * rest cannot change either: claims are held with commit_lock shared, and
 * what would (snapshot, clone, rollback, resize, delete, a commit's close,
 * check) takes commit_lock exclusively; the leaf, made writable (dirty) by
 * the plan, is never evicted.  Reads do not claim: they see the old or the
 * new data of a block being written, and one that fails its checksum waits
 * for the block's claim to end before it looks again (reread_locked).
 */
static int claim_overlaps(const vms_pool *p, vms_vol_id id, uint64_t lo, uint64_t hi)
{
	for (size_t k = 0; k < p->nclaims; k++)
		if (p->claims[k].id == id && p->claims[k].lo < hi && lo < p->claims[k].hi)
			return 1;
	return 0;
}

/* Wait until no claim overlaps [lo, hi) of volume id (pool->lock held;
 * dropped while waiting). */
static void claim_wait(vms_pool *p, vms_vol_id id, uint64_t lo, uint64_t hi)
{
	while (claim_overlaps(p, id, lo, hi))
		pthread_cond_wait(&p->claim_cv, &p->lock);
}

/* Claim [lo, hi) of volume id, once no other claim overlaps it. */
static int claim_take(vms_pool *p, vms_vol_id id, uint64_t lo, uint64_t hi)
{
	claim_wait(p, id, lo, hi);
	if (p->nclaims == p->claims_cap) {
		size_t cap = p->claims_cap ? 2 * p->claims_cap : 16;
		claim *c = realloc(p->claims, cap * sizeof(*c));
		if (!c)
			return vms_error_set(VMS_ENOMEM, "out of memory for a write's claim");
		p->claims = c;
		p->claims_cap = cap;
	}
	p->claims[p->nclaims++] = (claim){id, lo, hi};
	return 0;
}

static void claim_drop(vms_pool *p, vms_vol_id id, uint64_t lo)
{
	for (size_t k = 0; k < p->nclaims; k++) {
		if (p->claims[k].id == id && p->claims[k].lo == lo) {
			p->claims[k] = p->claims[--p->nclaims];
			break;
		}
	}
	pthread_cond_broadcast(&p->claim_cv);
}

/* ---- reads ----------------------------------------------------------------- */

typedef struct ext {
	uint64_t voff;      /* byte offset in the volume */
	uint64_t len;       /* bytes */
	uint64_t pbyte;     /* byte offset in the pool; 0 = hole */
	uint32_t crc;       /* data checksum of the block (one-block extents) */
} ext;

static int check_range(vms_pool *p, const vrec *r, uint64_t len, uint64_t off)
{
	(void)p;
	if ((off | len) % VMS_SECTOR)
		return vms_error_set(VMS_EINVAL, "offset %llu / length %llu not multiples of 512",
		                     (unsigned long long)off, (unsigned long long)len);
	if (off > r->size || len > r->size - off)
		return vms_error_set(VMS_EINVAL, "range %llu+%llu beyond volume size %llu",
		                     (unsigned long long)off, (unsigned long long)len,
		                     (unsigned long long)r->size);
	return 0;
}

/* Take commit_lock (shared) and pool->lock and validate the request; on
 * failure pool->lock is released again, commit_lock is kept. */
static int io_begin(vms_pool *p, vms_vol_id id, int for_write, uint64_t len, uint64_t off)
{
	vrec *r = NULL;
	int rc;
	pthread_rwlock_rdlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
	if ((rc = vol_get(p, id, for_write, &r)) < 0 || (rc = check_range(p, r, len, off)) < 0)
		pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Append [pos, pos+n) mapped at pool byte pb (0: a hole) to the extents,
 * merging with the last one where it continues it. */
static void ext_add(vms_pool *p, ext *ex, int *ne, uint64_t pos, uint64_t n, uint64_t pb,
                    uint32_t crc)
{
	ext *last = *ne ? &ex[*ne - 1] : NULL;
	if (last && last->voff + last->len == pos &&
	    ((pb == 0 && last->pbyte == 0) ||
	     (pb && !p->data_checksums && last->pbyte && last->pbyte + last->len == pb)))
		last->len += n;
	else
		ex[(*ne)++] = (ext){pos, n, pb, crc};
}

/* gather() of a format 3 pool: one key lookup per block. */
static int gather_keys(vms_pool *p, vms_vol_id id, uint64_t pos, uint64_t end, ext *ex, int *nex,
                       uint64_t *upto)
{
	int ne = 0;
	while (pos < end && ne < EXT_MAX) {
		uint64_t b;
		uint32_t crc;
		int rc = k_lookup(p, id, pos >> p->bshift, &b, &crc);
		if (rc < 0)
			return rc;
		uint64_t bo = pos & (p->bs - 1);
		uint64_t n = p->bs - bo < end - pos ? p->bs - bo : end - pos;
		ext_add(p, ex, &ne, pos, n, b ? (b << p->bshift) + bo : 0, crc);
		pos += n;
	}
	*nex = ne;
	*upto = pos;
	return 0;
}

/* Gather extents of [pos, end) under the lock; *upto = where they stop. */
static int gather(vms_pool *p, vms_vol_id id, uint64_t pos, uint64_t end, ext *ex, int *nex,
                  uint64_t *upto)
{
	int ne = 0;
	if (p->keys)
		return gather_keys(p, id, pos, end, ex, nex, upto);
	while (pos < end && ne < EXT_MAX) {
		vrec *r = NULL;
		node *leaf;
		uint64_t span, lblk = pos >> p->bshift;
		int rc = lookup_leaf(p, id, 0, lblk, &r, &leaf, &span);
		if (rc < 0)
			return rc;
		if (!leaf) {
			uint64_t stop = (lblk + span) << p->bshift;
			if (stop > end || stop < pos)
				stop = end;
			if (ne && ex[ne - 1].pbyte == 0 && ex[ne - 1].voff + ex[ne - 1].len == pos)
				ex[ne - 1].len += stop - pos;
			else
				ex[ne++] = (ext){pos, stop - pos, 0, 0};
			pos = stop;
			continue;
		}
		for (unsigned i = tree_index(p, lblk, 0); i < p->fanout && pos < end && ne < EXT_MAX; i++) {
			uint64_t bo = pos & (p->bs - 1);
			uint64_t n = p->bs - bo;
			if (n > end - pos)
				n = end - pos;
			uint64_t b = ent_blk(leaf, i);
			ext_add(p, ex, &ne, pos, n, b ? (b << p->bshift) + bo : 0, b ? ent_crc(leaf, i) : 0);
			pos += n;
		}
	}
	*nex = ne;
	*upto = pos;
	return 0;
}

/* Read one checksummed block into whole (B bytes) and verify it against crc. */
static int read_verified(vms_pool *p, uint8_t *whole, uint64_t blk, uint32_t crc)
{
	int rc = p->io->read(p->io, whole, p->bs, blk << p->bshift);
	if (rc < 0)
		return rc;
	uint32_t got = vms_crc32c(0, whole, p->bs);
	if (got != crc)
		return vms_error_set(VMS_ECORRUPT, "data block %llu: checksum %08x, index says %08x",
		                     (unsigned long long)blk, got, crc);
	return 0;
}

/*
 * The block at volume byte voff did not match the checksum looked up for
 * it.  A write may have rewritten it in place (or redirected it) between
 * that lookup and the pread: wait for the block's claim to end (see
 * "claims" below), look it up again and read it with pool->lock held (no
 * write can claim it meanwhile), so that only a block that fails against a
 * stable index is corruption.
 */
static int reread_locked(vms_pool *p, vms_vol_id id, uint8_t *whole, uint64_t voff)
{
	vrec *r = NULL;
	node *leaf;
	uint64_t span, lblk = voff >> p->bshift;
	pthread_mutex_lock(&p->lock);
	claim_wait(p, id, lblk, lblk + 1);
	if (p->keys) {
		uint64_t b;
		uint32_t crc;
		int rc = k_lookup_tree(p, id, lblk, &b, &crc);
		if (rc == 0 && b)
			rc = read_verified(p, whole, b, crc);
		else if (rc == 0)
			memset(whole, 0, p->bs);
		pthread_mutex_unlock(&p->lock);
		return rc;
	}
	int rc = lookup_leaf(p, id, 0, lblk, &r, &leaf, &span);
	if (rc == 0) {
		unsigned i = tree_index(p, lblk, 0);
		uint64_t b = leaf ? ent_blk(leaf, i) : 0;
		if (b)
			rc = read_verified(p, whole, b, ent_crc(leaf, i));
		else
			memset(whole, 0, p->bs); /* trimmed meanwhile */
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static int read_extents(vms_pool *p, vms_vol_id id, uint8_t *buf, uint64_t base, const ext *ex,
                        int ne)
{
	uint8_t tmp[VMS_MAX_BLOCK_SIZE];
	for (int k = 0; k < ne; k++) {
		uint8_t *dst = buf + (ex[k].voff - base);
		int rc;
		if (ex[k].pbyte == 0) {
			memset(dst, 0, ex[k].len);
			continue;
		}
		if (!p->data_checksums) {
			if ((rc = p->io->read(p->io, dst, ex[k].len, ex[k].pbyte)) < 0)
				return rc;
			continue;
		}
		uint64_t bo = ex[k].pbyte & (p->bs - 1);
		uint64_t blk = ex[k].pbyte >> p->bshift;
		uint8_t *whole = (ex[k].len == p->bs) ? dst : tmp;
		rc = read_verified(p, whole, blk, ex[k].crc);
		if (rc == VMS_ECORRUPT)
			rc = reread_locked(p, id, whole, ex[k].voff);
		if (rc < 0)
			return rc;
		if (whole == tmp)
			memcpy(dst, tmp + bo, ex[k].len);
	}
	return 0;
}

int vms_vol_read(vms_pool *p, vms_vol_id id, void *buf, size_t len, uint64_t off)
{
	ext ex[EXT_MAX];
	int rc, ne;
	uint64_t pos = off, end = off + len;
	if ((rc = io_begin(p, id, 0, len, off)) < 0)
		goto done;
	while (pos < end) {
		uint64_t upto;
		rc = gather(p, id, pos, end, ex, &ne, &upto);
		pthread_mutex_unlock(&p->lock);
		if (rc < 0)
			goto done;
		if ((rc = read_extents(p, id, buf, off, ex, ne)) < 0)
			goto done;
		pos = upto;
		if (pos < end)
			pthread_mutex_lock(&p->lock);
	}
done:
	pthread_rwlock_unlock(&p->commit_lock);
	return rc;
}

/* ---- writes, trims, zeroes ------------------------------------------------- */


/* Point entry i at its new block nb and settle the counts. */
static void redirect(vms_pool *p, vrec *r, node *leaf, unsigned i, uint64_t old, uint64_t nb,
                     uint32_t crc)
{
	ent_set(leaf, i, nb, crc, 0);
	if (old) {
		if (p->ref[old] > 1)
			r->written++;
		sm_unref(p, old);
	} else {
		r->mapped++;
		r->written++;
	}
	vol_mark(p, r);
}

static void unmap_block(vms_pool *p, vrec *r, node *leaf, unsigned i)
{
	uint64_t old = ent_blk(leaf, i);
	if (!old)
		return;
	ent_set(leaf, i, 0, 0, 0);
	if (r->mapped)
		r->mapped--;
	if (p->ref[old] == 1 && r->written)
		r->written--;
	sm_unref(p, old);
	vol_mark(p, r);
}

const uint8_t engine_zero_block[VMS_MAX_BLOCK_SIZE];

/* Data I/O of one planned block that is not a whole-block write (no lock). */
static int write_partial(vms_pool *p, wblk *b)
{
	uint8_t tmp[VMS_MAX_BLOCK_SIZE];
	int rc;
	if (b->dst == b->old && !p->data_checksums) /* in place: just the bytes */
		return p->io->write(p->io, b->src, b->n, (b->dst << p->bshift) + b->bo);
	if (b->old) { /* read-merge-write of this one block */
		rc = p->data_checksums ? read_verified(p, tmp, b->old, b->old_crc)
		                       : p->io->read(p->io, tmp, p->bs, b->old << p->bshift);
		if (rc < 0)
			return rc;
	} else {
		memset(tmp, 0, p->bs);
	}
	memcpy(tmp + b->bo, b->src, b->n);
	if (p->data_checksums)
		b->crc = vms_crc32c(0, tmp, p->bs);
	return p->io->write(p->io, tmp, p->bs, b->dst << p->bshift);
}

/* Data I/O of the planned blocks, without the lock: whole blocks whose
 * targets and sources are both contiguous go in one pwrite.  Stops at the
 * first failure; the blocks done so far are marked. */
static int write_blocks(vms_pool *p, wblk *w, size_t nw)
{
	for (size_t k = 0; k < nw;) {
		int rc;
		if (w[k].n < p->bs) {
			if ((rc = write_partial(p, &w[k])) < 0)
				return rc;
			w[k++].done = 1;
			continue;
		}
		size_t e = k + 1;
		while (e < nw && w[e].n == p->bs && w[e].dst == w[e - 1].dst + 1 &&
		       w[e].src == w[e - 1].src + p->bs)
			e++;
		if ((rc = p->io->write(p->io, w[k].src, (e - k) << p->bshift, w[k].dst << p->bshift)) < 0)
			return rc;
		for (; k < e; k++) {
			if (p->data_checksums)
				w[k].crc = vms_crc32c(0, w[k].src, p->bs);
			w[k].done = 1;
		}
	}
	return 0;
}

/* The planned blocks' data I/O: pool->lock held, dropped meanwhile. */
int write_planned(vms_pool *p, wblk *w, size_t nw)
{
	pthread_mutex_unlock(&p->lock);
	int rc = write_blocks(p, w, nw);
	pthread_mutex_lock(&p->lock);
	return rc;
}

/*
 * Apply op to the claimed blocks [lblk, hi) of one leaf, starting at byte
 * *pos (< end), with pool->lock held (dropped for node loads and for the
 * data I/O).  Trims skip partial blocks; zeroes write zeros into them; both
 * unmap whole blocks.  *pos advances past what was done.
 */
static int modify_leaf(vms_pool *p, vms_vol_id id, int op, const uint8_t *src, uint64_t off,
                       uint64_t *pos, uint64_t end, uint64_t hi, wblk *w)
{
	vrec *r = NULL;
	node *leaf;
	uint64_t span, lblk = *pos >> p->bshift;
	size_t nw = 0;
	int rc;
	if (p->keys)
		return k_modify_chunk(p, id, op, src, off, pos, end, hi, w);
	if ((rc = lookup_leaf(p, id, 1, lblk, &r, &leaf, &span)) < 0)
		return rc;
	if (!leaf && op != OP_WRITE) { /* a hole already reads as zeros */
		uint64_t stop = (lblk + span) << p->bshift;
		*pos = (stop > end || stop < *pos) ? end : stop;
		return 0;
	}
	if (op == OP_WRITE) {
		/* room for the path and this leaf's blocks, leaving the reserve */
		uint64_t need = r->depth + (hi - lblk);
		if (sm_avail(p) < p->reserve + sm_commit_need(p) + need)
			return vms_error_set(VMS_ENOSPC, "pool is full: %llu blocks free, %llu in reserve",
			                     (unsigned long long)sm_avail(p),
			                     (unsigned long long)p->reserve);
	}
	/* unmapping frees space, so it may dip into the reserve */
	if ((rc = tree_path_writable(p, r, lblk, 0, &leaf, op != OP_WRITE)) < 0)
		return rc;

	/* plan, under the lock */
	uint64_t at = *pos;
	for (unsigned i = tree_index(p, lblk, 0); at < end && (at >> p->bshift) < hi; i++) {
		uint32_t bo = (uint32_t)(at & (p->bs - 1));
		uint32_t n = (uint32_t)(p->bs - bo < end - at ? p->bs - bo : end - at);
		uint64_t old = ent_blk(leaf, i);
		const uint8_t *from = engine_zero_block;
		if (op == OP_WRITE) {
			from = src + (at - off);
		} else {
			if (n == p->bs) {
				unmap_block(p, r, leaf, i);
				at += n;
				continue;
			}
			if (op == OP_TRIM || !old) { /* trims are advisory; a hole is zeros */
				at += n;
				continue;
			}
		}
		wblk *b = &w[nw];
		*b = (wblk){i, bo, n, from, old, old ? ent_crc(leaf, i) : 0, old, 0, 0, 0, 0, 0};
		if (!(old && p->ref[old] == 1 && sm_is_fresh(p, old)) &&
		    (rc = sm_alloc(p, 0, &b->dst)) < 0)
			break; /* write what was planned, then fail */
		nw++;
		at += n;
	}
	*pos = at;
	if (nw == 0)
		return rc;

	int io_rc = write_planned(p, w, nw);

	/* apply: the claim kept the entries as planned; the record may have
	 * moved (the volume table grows), the leaf has not (dirty) */
	r = vol_find(p, id);
	for (size_t k = 0; k < nw; k++) {
		wblk *b = &w[k];
		if (!b->done) {
			if (b->dst != b->old)
				sm_unref(p, b->dst);
		} else if (b->dst == b->old) {
			ent_set(leaf, b->i, b->old, b->crc, 0);
		} else {
			redirect(p, r, leaf, b->i, b->old, b->dst, b->crc);
		}
	}
	return io_rc < 0 ? io_rc : rc;
}

/* Apply op to [off, off+len), a leaf at a time (pool->lock held). */
static int modify_range(vms_pool *p, vms_vol_id id, int op, const uint8_t *src, uint64_t len,
                        uint64_t off)
{
	wblk small[16], *w = small;
	uint64_t pos = off, end = off + len;
	uint64_t last = ((end - 1) >> p->bshift) + 1; /* one past the last block */
	uint64_t blocks = last - (off >> p->bshift);
	int rc = 0;
	if (blocks > 16) {
		size_t nmax = blocks < p->fanout ? blocks : p->fanout;
		if (!(w = malloc(nmax * sizeof(*w))))
			return vms_error_set(VMS_ENOMEM, "out of memory for a write of %llu bytes",
			                     (unsigned long long)len);
	}
	while (pos < end && rc == 0) {
		uint64_t lblk = pos >> p->bshift;
		uint64_t hi = lblk - tree_index(p, lblk, 0) + p->fanout; /* end of the leaf */
		if (hi > last)
			hi = last;
		if ((rc = claim_take(p, id, lblk, hi)) < 0)
			break;
		rc = modify_leaf(p, id, op, src, off, &pos, end, hi, w);
		claim_drop(p, id, lblk);
	}
	if (w != small)
		free(w);
	return rc;
}

/* Commit when dirty metadata outgrows its bound (called without locks).
 * Past the bound a write starts a commit only when none is in flight (it
 * does not wait for one); past twice the bound it waits (a throttle, so
 * dirty metadata stays bounded however fast the writes come). */
static int maybe_commit(vms_pool *p)
{
	pthread_mutex_lock(&p->lock);
	uint64_t soft = p->cache.max_nodes / 2 + 16;
	int need = p->cache.ndirty > soft || p->smap.ndirty + p->vtab.ndirty > 4096 ||
	           p->fresh_list.n > (1u << 20) ||
	           p->reserve + sm_commit_need(p) > sm_avail(p) / 2;
	int hard = p->cache.ndirty > 2 * soft || p->smap.ndirty + p->vtab.ndirty > 8192 ||
	           p->fresh_list.n > (2u << 20) || p->reserve + sm_commit_need(p) > sm_avail(p) / 2;
	uint64_t target = p->txg;
	pthread_mutex_unlock(&p->lock);
	if (hard)
		(void)pool_commit_to(p, target); /* a failure turns the pool read-only */
	else if (need && pthread_mutex_trylock(&p->commit_mx) == 0) {
		pthread_mutex_unlock(&p->commit_mx); /* none in flight: start one */
		(void)pool_commit_to(p, target);
	}
	return 0;
}

static int io_modify(vms_pool *p, vms_vol_id id, int op, const void *buf, uint64_t len,
                     uint64_t off, unsigned flags)
{
	int rc, busy = 0;
	for (int attempt = 0;; attempt++) {
		if ((rc = io_begin(p, id, 1, len, off)) == 0) {
			rc = modify_range(p, id, op, buf, len, off);
			busy = p->nbusy > 0;
			pthread_mutex_unlock(&p->lock);
		}
		pthread_rwlock_unlock(&p->commit_lock);
		if (rc != VMS_ENOSPC || !busy || attempt > 0)
			break;
		/* freed blocks wait for commits before reuse: commit twice, retry */
		if (vms_pool_commit(p) < 0 || vms_pool_commit(p) < 0)
			break;
	}
	if (rc < 0)
		return rc;
	if (flags & VMS_IO_FUA)
		return vms_pool_commit(p);
	return maybe_commit(p);
}

int vms_vol_write(vms_pool *p, vms_vol_id id, const void *buf, size_t len, uint64_t off,
                  unsigned flags)
{
	return io_modify(p, id, OP_WRITE, buf, len, off, flags);
}

int vms_vol_trim(vms_pool *p, vms_vol_id id, uint64_t len, uint64_t off)
{
	return io_modify(p, id, OP_TRIM, NULL, len, off, 0);
}

int vms_vol_write_zeroes(vms_pool *p, vms_vol_id id, uint64_t len, uint64_t off, unsigned flags)
{
	return io_modify(p, id, OP_ZERO, NULL, len, off, flags);
}

int vms_vol_flush(vms_pool *p, vms_vol_id id)
{
	vrec *r = NULL;
	pthread_mutex_lock(&p->lock);
	int rc = vol_get(p, id, 0, &r);
	pthread_mutex_unlock(&p->lock);
	if (rc < 0)
		return rc;
	/* The writes this flush covers went to the open txg, or, when nothing
	 * changed since the last close, to the one before (perhaps being
	 * written now): flushes arriving together share one commit. */
	pthread_mutex_lock(&p->lock);
	uint64_t target = p->dirty ? p->txg : p->txg - 1;
	pthread_mutex_unlock(&p->lock);
	return pool_commit_to(p, target);
}

/* ---- block status ----------------------------------------------------------- */

typedef struct run {
	uint64_t off, len;
	int alloc;
} run;

int vms_vol_block_status(vms_pool *p, vms_vol_id id, uint64_t off, uint64_t len,
                         vms_extent_cb cb, void *ctx)
{
	run runs[256], cur = {off, 0, -1};
	vrec *r = NULL;
	int rc, nr = 0;
	uint64_t pos = off, end = off + len;
	if ((rc = io_begin(p, id, 0, len, off)) < 0)
		goto done;
	while (pos < end) {
		node *leaf;
		uint64_t span, lblk = pos >> p->bshift, stop = (lblk + 1) << p->bshift;
		int alloc = 0;
		if (p->keys) {
			uint64_t b;
			uint32_t crc;
			if ((rc = k_lookup(p, id, lblk, &b, &crc)) < 0)
				break;
			alloc = b != 0;
		} else {
			if ((rc = lookup_leaf(p, id, 0, lblk, &r, &leaf, &span)) < 0)
				break;
			if (!leaf)
				stop = (lblk + span) << p->bshift;
			else
				alloc = ent_blk(leaf, tree_index(p, lblk, 0)) != 0;
		}
		if (stop > end || stop < pos)
			stop = end;
		if (cur.alloc == alloc) {
			cur.len += stop - pos;
		} else {
			if (cur.len)
				runs[nr++] = cur;
			cur = (run){pos, stop - pos, alloc};
		}
		pos = stop;
		if (nr == 256) { /* call back without the lock */
			pthread_mutex_unlock(&p->lock);
			for (int k = 0; k < nr; k++)
				if ((rc = cb(ctx, runs[k].off, runs[k].len, runs[k].alloc)) != 0)
					goto done;
			nr = 0;
			pthread_mutex_lock(&p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (rc < 0)
		goto done;
	if (cur.len)
		runs[nr++] = cur;
	for (int k = 0; k < nr; k++)
		if ((rc = cb(ctx, runs[k].off, runs[k].len, runs[k].alloc)) != 0)
			goto done;
done:
	pthread_rwlock_unlock(&p->commit_lock);
	return rc;
}

/* ---- volume operations --------------------------------------------------------- */

int vms_vol_create(vms_vol_id *out, vms_pool *p, uint64_t size)
{
	vrec *r = NULL;
	int rc;
	if (size == 0 || size % VMS_SECTOR || size > VMS_MAX_VOLUME_SIZE)
		return vms_error_set(VMS_EINVAL, "volume size %llu: must be a multiple of 512 in (0, 16 TiB]",
		                     (unsigned long long)size);
	pthread_rwlock_rdlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
	if (p->readonly) {
		rc = vms_error_set(VMS_EROFS, "pool is read-only: %s", p->ro_reason);
		goto done;
	}
	if (p->keys) {
		rc = k_vol_create(p, size, out);
		goto done;
	}
	if ((rc = vol_slot_new(p, &r)) < 0)
		goto done;
	r->kind = VMS_VOL_VOLUME;
	r->size = size;
	r->depth = (uint8_t)depth_for_size(p, size);
	*out = r->id;
done:
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	return rc;
}

/* Point a new or existing record at src's tree (one more reference). */
static void share_tree(vms_pool *p, vrec *dst, const vrec *src)
{
	dst->root = src->root;
	dst->root_crc = src->root_crc;
	dst->depth = src->depth;
	dst->size = src->size;
	dst->mapped = src->mapped;
	dst->root_pending = 0;
	if (src->root) {
		sm_ref(p, src->root);
		node *n = cache_find(p, src->root);
		if (n && n->dirty)
			dst->root_pending = 1;
	}
	vol_mark(p, dst);
}

int vms_vol_snapshot(vms_vol_id *out, vms_pool *p, const vms_vol_id *vols, size_t n)
{
	int rc = 0;
	vrec *r = NULL, *s = NULL;
	if (n == 0)
		return vms_error_set(VMS_EINVAL, "no volume to snapshot");
	pthread_rwlock_wrlock(&p->commit_lock); /* no I/O in flight: atomic at an I/O boundary */
	pthread_mutex_lock(&p->lock);
	if (p->readonly) {
		rc = vms_error_set(VMS_EROFS, "pool is read-only: %s", p->ro_reason);
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		if ((rc = vol_get(p, vols[i], 0, &r)) < 0)
			goto done;
		for (size_t j = 0; j < i; j++)
			if (vols[j] == vols[i]) {
				rc = vms_error_set(VMS_EINVAL, "volume %llu listed twice",
				                   (unsigned long long)vols[i]);
				goto done;
			}
	}
	for (size_t i = 0; i < n && p->keys; i++)
		if ((rc = k_snapshot_one(p, vols[i], &out[i])) < 0)
			goto done; /* earlier snapshots stay: each is complete */
	for (size_t i = 0; i < n && !p->keys; i++) {
		if ((rc = vol_slot_new(p, &s)) < 0)
			goto done; /* earlier snapshots stay: each is complete */
		r = vol_find(p, vols[i]);
		share_tree(p, s, r);
		s->kind = VMS_VOL_SNAPSHOT;
		s->origin = r->id;
		s->written = r->written;
		r->written = 0;
		vol_mark(p, r);
		out[i] = s->id;
	}
done:
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	return rc;
}

int vms_vol_clone(vms_vol_id *out, vms_pool *p, vms_vol_id src)
{
	int rc;
	vrec *r = NULL, *s = NULL;
	pthread_rwlock_wrlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
	if (p->readonly) {
		rc = vms_error_set(VMS_EROFS, "pool is read-only: %s", p->ro_reason);
		goto done;
	}
	if ((rc = vol_get(p, src, 0, &r)) < 0)
		goto done;
	if (p->keys) {
		rc = k_clone(p, src, out);
		goto done;
	}
	if ((rc = vol_slot_new(p, &s)) < 0)
		goto done;
	r = vol_find(p, src);
	share_tree(p, s, r);
	s->kind = VMS_VOL_VOLUME;
	s->origin = src;
	s->written = 0;
	*out = s->id;
done:
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	return rc;
}

int vms_vol_rollback(vms_pool *p, vms_vol_id vol, vms_vol_id snap)
{
	int rc;
	vrec *r = NULL, *s = NULL, *h = NULL;
	pthread_rwlock_wrlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
	if ((rc = vol_get(p, vol, 1, &r)) < 0 || (rc = vol_get(p, snap, 0, &s)) < 0)
		goto done;
	if (vol == snap) {
		rc = vms_error_set(VMS_EINVAL, "cannot roll volume %llu back to itself",
		                   (unsigned long long)vol);
		goto done;
	}
	if (p->keys) {
		rc = k_rollback(p, vol, snap);
		goto done;
	}
	if ((rc = vol_slot_new(p, &h)) < 0)
		goto done;
	r = vol_find(p, vol);
	s = vol_find(p, snap);
	/* the old tree goes to a hidden record for the reaper */
	h->kind = VMS_VOL_VOLUME;
	h->flags = VREC_HIDDEN | VREC_DELETING;
	h->root = r->root;
	h->root_crc = r->root_crc;
	h->root_pending = r->root_pending;
	h->depth = r->depth;
	h->size = r->size;
	p->ndeleting++;
	share_tree(p, r, s);
	r->written = 0;
	vol_mark(p, h);
done:
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	if (rc == 0)
		pool_kick(p);
	return rc;
}

int vms_vol_delete(vms_pool *p, vms_vol_id vol)
{
	int rc;
	vrec *r = NULL;
	pthread_rwlock_wrlock(&p->commit_lock); /* no write in flight (claims) */
	pthread_mutex_lock(&p->lock);
	if ((rc = vol_get(p, vol, 0, &r)) == 0 && p->readonly)
		rc = vms_error_set(VMS_EROFS, "pool is read-only: %s", p->ro_reason);
	if (rc == 0) {
		r->flags |= VREC_DELETING;
		p->ndeleting++;
		vol_mark(p, r);
		if (p->keys)
			k_deleted(p, r);
	}
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	if (rc == 0)
		pool_kick(p);
	return rc;
}

/*
 * One step of dropping what a shrunk volume's tree holds at or past block
 * `limit` (format 2): a subtree shared with another tree loses this tree's
 * reference, an unshared node is emptied first (a leaf's blocks unmapped)
 * and then freed; every entry of the tree past the volume's end must be 0
 * (check).  1 when a step was done, 0 when nothing is left, or an error.
 * pool->lock held (dropped to load a node); commit_lock exclusive.
 */
static int prune_step(vms_pool *p, vms_vol_id vol, uint64_t limit)
{
	vrec *r = vol_find(p, vol);
	if (!r->root)
		return 0;
	uint64_t cur = r->root, base = 0;
	uint32_t crc = r->root_crc;
	int lev = r->depth - 1, rc;
	for (;;) {
		node *n = cache_get(p, cur);
		if (!n) {
			if ((rc = node_load_unlocked(p, cur, crc, lev)) < 0)
				return rc;
			return 1; /* the lock was dropped: start again */
		}
		unsigned first = base >= limit ? 0 : (unsigned)((limit - 1 - base) / p->fpow[lev]) + 1;
		unsigned i = first;
		while (i < p->fanout && !ent_blk(n, i))
			i++;
		if (i < p->fanout) { /* an entry at or past the limit */
			uint64_t c = ent_blk(n, i), cb = base + i * p->fpow[lev];
			node *w;
			if (lev == 0) {
				if ((rc = tree_path_writable(p, r, cb, 0, &w, 1)) < 0)
					return rc;
				unmap_block(p, r, w, i);
				return 1;
			}
			if (p->ref[c] > 1) { /* shared: drop this tree's reference */
				if ((rc = tree_unhook(p, r, cb, lev - 1)) < 0)
					return rc;
				sm_unref_meta(p, c);
				return 1;
			}
			crc = ent_crc(n, i); /* unshared: empty it first */
			cur = c;
			base = cb;
			lev--;
			continue;
		}
		if (base >= limit) { /* an empty node past the limit */
			if ((rc = tree_unhook(p, r, base, lev)) < 0)
				return rc;
			sm_unref_meta(p, cur);
			return 1;
		}
		/* nothing past the limit here: follow the path to the last block kept */
		unsigned last = first - 1;
		if (lev == 0 || !ent_blk(n, last))
			return 0;
		crc = ent_crc(n, last);
		cur = ent_blk(n, last);
		base += last * p->fpow[lev];
		lev--;
	}
}

int vms_vol_resize(vms_pool *p, vms_vol_id vol, uint64_t size)
{
	int rc;
	vrec *r = NULL;
	if (size == 0 || size % VMS_SECTOR || size > VMS_MAX_VOLUME_SIZE)
		return vms_error_set(VMS_EINVAL, "volume size %llu: must be a multiple of 512 in (0, 16 TiB]",
		                     (unsigned long long)size);
	pthread_rwlock_wrlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
	if ((rc = vol_get(p, vol, 1, &r)) < 0)
		goto done;
	if (size < r->size) {
		uint64_t cut = (size + p->bs - 1) & ~(uint64_t)(p->bs - 1);
		/* zero the new last block's tail (up to the old size when that
		 * ends in the same block: a later grow must read zeros there) */
		uint64_t zend = cut < r->size ? cut : r->size;
		if (zend > size && (rc = modify_range(p, vol, OP_ZERO, NULL, zend - size, size)) < 0)
			goto done;
		/* unmap every block past the new end, the old partial last one too */
		uint64_t old_end = (r->size + p->bs - 1) & ~(uint64_t)(p->bs - 1);
		if (cut < old_end && (rc = modify_range(p, vol, OP_TRIM, NULL, old_end - cut, cut)) < 0)
			goto done;
		/* and the index nodes there, which the trims left empty */
		while (!p->keys && (rc = prune_step(p, vol, cut >> p->bshift)) > 0)
			;
		if (rc < 0)
			goto done;
		r = vol_find(p, vol);
		r->size = size;
		vol_mark(p, r);
		goto done;
	}
	uint32_t want = p->keys ? 0 : depth_for_size(p, size);
	while (r->depth < want) {
		if (r->root) {
			uint64_t nb = 0;
			node *n;
			if ((rc = sm_alloc_meta(p, 0, &nb)) < 0)
				goto done;
			if (!(n = cache_new_dirty(p, nb, r->depth))) {
				sm_unref_meta(p, nb);
				rc = vms_error_set(VMS_ENOMEM, "out of memory");
				goto done;
			}
			ent_set(n, 0, r->root, r->root_crc, r->root_pending ? BP_DIRTY : 0);
			r->root = nb;
			r->root_crc = 0;
			r->root_pending = 1;
		}
		r->depth++;
	}
	r->size = size;
	vol_mark(p, r);
done:
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	return rc;
}

int vms_vol_info_get(vms_vol_info *out, vms_pool *p, vms_vol_id vol)
{
	int rc = 0;
	pthread_mutex_lock(&p->lock);
	vrec *r = vol_find(p, vol);
	if (!r || (r->flags & VREC_HIDDEN)) {
		rc = vms_error_set(VMS_ENOTFOUND, "volume %llu not found", (unsigned long long)vol);
	} else {
		memset(out, 0, sizeof(*out));
		out->id = r->id;
		out->kind = (vms_vol_kind)r->kind;
		out->size = r->size;
		out->origin = r->origin;
		out->create_txg = r->create_txg;
		out->create_time = r->create_time;
		out->referenced = r->mapped << p->bshift;
		out->written = r->written << p->bshift;
		out->deleting = !!(r->flags & VREC_DELETING);
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int64_t vms_vol_list(vms_vol_id *out, size_t cap, vms_pool *p)
{
	int64_t n = 0;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->nvidx; i++) {
		const vrec *r = &p->recs[p->vidx[i].slot];
		if (r->flags & (VREC_HIDDEN | VREC_DELETING))
			continue;
		if ((size_t)n < cap)
			out[n] = r->id;
		n++;
	}
	pthread_mutex_unlock(&p->lock);
	return n;
}
