/*
 * spacemap.c - reference counts, allocation, deferred frees, and the two
 * page arrays persisted at commit (the space map and the volume table).
 *
 * The space map is one u32 reference count per block for data and metadata
 * alike, held in memory as a flat array.  A block is allocatable when its
 * count is 0 and it is not busy.  A freed block is busy until it can no
 * longer be reached from either commit record on disk, nor by a read that
 * looked it up before it was freed:
 *   - fresh (allocated in the open txg T): until T is closed (list
 *     defer_now); no record reaches it, and readers that looked it up have
 *     finished, because closing takes commit_lock exclusively;
 *   - committed: freed in T, it is reachable from record T-1; it waits
 *     (defer_cur, at the close of T defer_closing, once record T is durable
 *     defer_prev) until record T+1 is durable.  Then the records on disk are
 *     T and T+1, and close(T+1) came after every read that saw it.
 *
 * Page arrays: the space map's counts and the volume table's records are
 * cut into pages of one block each, under a radix tree of NT_VINT nodes of
 * fanout F.  At commit every changed page is relocated (copy-on-write) to a
 * new block; relocation changes counts, which dirties more space-map pages,
 * so relocation iterates to a fixpoint before anything is serialized (as
 * btrfs does with its extent tree).  A page is relocated at most once per
 * commit, so the loop ends.  Allocations made by commit may use the reserve.
 *
 * A space-map page whose counts are all 0 is not stored (format version 2):
 * its pointer is 0, a hole, and it reads as zeros, so the space map costs
 * blocks in proportion to the part of the pool in use, not to the pool's
 * size.  A page made a hole during a commit's relocation and then given a
 * count by a later relocation is marked again and relocated to a block
 * (parray_mark); a page may become a hole only once per commit, so the loop
 * still ends.  The root page of a one-page space map is never a hole.
 */
#include <stdlib.h>

#include "engine/engine_private.h"

int blist_push(blist *l, uint64_t b)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 256;
		uint64_t *v = realloc(l->v, nc * sizeof(*v));
		if (!v)
			return vms_error_set(VMS_ENOMEM, "out of memory");
		l->v = v;
		l->cap = nc;
	}
	l->v[l->n++] = b;
	return 0;
}

void blist_free(blist *l)
{
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static inline int bit_get(const uint64_t *bm, uint64_t b) { return (bm[b >> 6] >> (b & 63)) & 1; }
static inline void bit_set(uint64_t *bm, uint64_t b) { bm[b >> 6] |= 1ull << (b & 63); }
static inline void bit_clr(uint64_t *bm, uint64_t b) { bm[b >> 6] &= ~(1ull << (b & 63)); }

uint64_t smap_per_page(const vms_pool *p) { return (p->bs - NODE_HDR) / 4; }
uint64_t vtab_per_page(const vms_pool *p) { return (p->bs - NODE_HDR) / VREC_SIZE; }

void sm_dirty_page(vms_pool *p, uint64_t blk)
{
	parray_mark(&p->smap, blk / smap_per_page(p));
}

uint64_t sm_avail(const vms_pool *p)
{
	return p->nfree - p->nbusy;
}

/* Blocks the next commit may need for relocating pages (an upper bound in
 * practice: each relocation dirties at most one more page). */
uint64_t sm_commit_need(const vms_pool *p)
{
	return 3 * (p->smap.ndirty + p->vtab.ndirty) + 4 * (p->smap.depth + p->vtab.depth + 2) + 16;
}

int sm_is_fresh(const vms_pool *p, uint64_t blk)
{
	return bit_get(p->fresh, blk);
}

int sm_alloc(vms_pool *p, int use_reserve, uint64_t *out)
{
	uint64_t avail = sm_avail(p);
	uint64_t keep = use_reserve ? 0 : p->reserve + sm_commit_need(p);
	if (avail <= keep)
		return vms_error_set(VMS_ENOSPC, "pool is full: %llu blocks free, %llu kept in reserve",
		                     (unsigned long long)avail, (unsigned long long)keep);
	uint64_t b = p->rotor;
	for (uint64_t i = 0; i < p->total_blocks; i++, b++) {
		if (b >= p->total_blocks)
			b = 2;
		if (p->ref[b] == 0 && !bit_get(p->busy, b))
			goto found;
	}
	return vms_error_set(VMS_ECORRUPT, "space map: free count %llu but no free block",
	                     (unsigned long long)avail);
found:
	if (blist_push(&p->fresh_list, b) < 0)
		return VMS_ENOMEM;
	p->ref[b] = 1;
	p->nfree--;
	bit_set(p->fresh, b);
	sm_dirty_page(p, b);
	p->rotor = b + 1;
	p->dirty = 1;
	/* A stale clean copy may linger from a lookup that raced with the
	 * block's free; it must not shadow the block's new life. */
	cache_drop(p, b);
	*out = b;
	return 0;
}

int sm_alloc_meta(vms_pool *p, int use_reserve, uint64_t *out)
{
	int rc = sm_alloc(p, use_reserve, out);
	if (rc == 0)
		p->meta_blocks++;
	return rc;
}

void sm_ref(vms_pool *p, uint64_t blk)
{
	p->ref[blk]++;
	sm_dirty_page(p, blk);
	p->dirty = 1;
}

int sm_unref(vms_pool *p, uint64_t blk)
{
	if (blk < 2 || blk >= p->total_blocks || p->ref[blk] == 0)
		return 0; /* never underflow; check reports the inconsistency */
	sm_dirty_page(p, blk);
	p->dirty = 1;
	if (--p->ref[blk] > 0)
		return 0;
	p->nfree++;
	if (!bit_get(p->busy, blk)) {
		bit_set(p->busy, blk);
		p->nbusy++;
		/* A failed push only delays reuse until the next open. */
		(void)blist_push(bit_get(p->fresh, blk) ? &p->defer_now : &p->defer_cur, blk);
	}
	cache_drop(p, blk);
	return 1;
}

int sm_unref_meta(vms_pool *p, uint64_t blk)
{
	int freed = sm_unref(p, blk);
	if (freed && p->meta_blocks)
		p->meta_blocks--;
	return freed;
}

static void release_list(vms_pool *p, blist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		uint64_t b = l->v[i];
		if (b < p->total_blocks && bit_get(p->busy, b)) {
			bit_clr(p->busy, b);
			p->nbusy--;
		}
	}
	l->n = 0;
}

/* Closing txg T (commit_lock held exclusively): blocks allocated and freed
 * in T become allocatable, T's blocks are no longer fresh (T+1 shadows them
 * instead of writing in place), T's committed frees wait for record T+1. */
void sm_close_txg(vms_pool *p)
{
	release_list(p, &p->defer_now);
	blist t = p->defer_closing; /* empty: the previous commit finished */
	p->defer_closing = p->defer_cur;
	p->defer_cur = t;
	for (size_t i = 0; i < p->fresh_list.n; i++)
		if (p->fresh_list.v[i] < p->total_blocks)
			bit_clr(p->fresh, p->fresh_list.v[i]);
	p->fresh_list.n = 0;
}

/* Record T is durable (pool->lock held): the blocks freed in T-1 are
 * reachable from neither record T-1 nor T; T's wait for record T+1. */
void sm_txg_durable(vms_pool *p)
{
	release_list(p, &p->defer_prev);
	blist t = p->defer_prev;
	p->defer_prev = p->defer_closing;
	p->defer_closing = t;
}

int sm_setup(vms_pool *p, uint64_t total_blocks)
{
	uint64_t words = (total_blocks + 63) / 64;
	uint64_t oldwords = (p->total_blocks + 63) / 64;
	uint32_t *ref = realloc(p->ref, total_blocks * sizeof(uint32_t));
	if (!ref)
		return vms_error_set(VMS_ENOMEM, "out of memory for the space map of %llu blocks",
		                     (unsigned long long)total_blocks);
	p->ref = ref;
	uint64_t *busy = realloc(p->busy, words * 8);
	if (!busy)
		return vms_error_set(VMS_ENOMEM, "out of memory for the space map");
	p->busy = busy;
	uint64_t *fresh = realloc(p->fresh, words * 8);
	if (!fresh)
		return vms_error_set(VMS_ENOMEM, "out of memory for the space map");
	p->fresh = fresh;
	if (!p->total_blocks)
		oldwords = 0;
	memset(p->ref + p->total_blocks, 0, (total_blocks - p->total_blocks) * sizeof(uint32_t));
	memset(p->busy + oldwords, 0, (words - oldwords) * 8);
	memset(p->fresh + oldwords, 0, (words - oldwords) * 8);
	/* bits past the old end inside the last old word are already 0 */
	p->nfree += total_blocks - p->total_blocks;
	p->total_blocks = total_blocks;
	uint64_t npages = (total_blocks + smap_per_page(p) - 1) / smap_per_page(p);
	return parray_resize(p, &p->smap, npages);
}

void sm_teardown(vms_pool *p)
{
	free(p->ref);
	free(p->busy);
	free(p->fresh);
	p->ref = NULL;
	p->busy = p->fresh = NULL;
	blist_free(&p->fresh_list);
	blist_free(&p->defer_now);
	blist_free(&p->defer_cur);
	blist_free(&p->defer_closing);
	blist_free(&p->defer_prev);
	parray_free(&p->smap);
	parray_free(&p->vtab);
}

/* ---- page arrays --------------------------------------------------------- */

uint32_t parray_depth_for(const vms_pool *p, uint64_t npages)
{
	uint32_t d = 0;
	while (npages > 1) {
		npages = (npages + p->fanout - 1) / p->fanout;
		d++;
	}
	return d;
}

void parray_free(parray *a)
{
	for (unsigned l = 0; l <= MAX_DEPTH; l++) {
		free(a->blk[l]);
		free(a->crc[l]);
		free(a->dirty[l]);
		a->blk[l] = NULL;
		a->crc[l] = NULL;
		a->dirty[l] = NULL;
		a->n[l] = 0;
	}
	a->ndirty = 0;
	a->depth = 0;
}

void parray_mark(parray *a, uint64_t page)
{
	if (page >= a->n[0])
		return;
	/* 0: clean; 2 with a block: relocated this commit, serialized from
	 * memory later; 2 without one: made a hole, which no longer holds */
	if (a->dirty[0][page] == 0 || (a->dirty[0][page] == 2 && a->blk[0][page] == 0)) {
		a->dirty[0][page] = 1;
		a->ndirty++;
	}
}

/* Grow to npages (never shrinks).  New pages and all interior nodes are
 * marked for writing. */
int parray_resize(vms_pool *p, parray *a, uint64_t npages)
{
	uint32_t depth = parray_depth_for(p, npages);
	if (depth > MAX_DEPTH)
		return vms_error_set(VMS_EINVAL, "page array of %llu pages too deep",
		                     (unsigned long long)npages);
	uint64_t cnt = npages;
	for (uint32_t l = 0; l <= depth; l++) {
		uint64_t old = a->n[l];
		if (cnt > old) {
			uint64_t *b = realloc(a->blk[l], cnt * 8);
			if (b)
				a->blk[l] = b;
			uint32_t *c = realloc(a->crc[l], cnt * 4);
			if (c)
				a->crc[l] = c;
			uint8_t *d = realloc(a->dirty[l], cnt);
			if (d)
				a->dirty[l] = d;
			if (!b || !c || !d)
				return vms_error_set(VMS_ENOMEM, "out of memory for a page array");
			memset(a->blk[l] + old, 0, (cnt - old) * 8);
			memset(a->crc[l] + old, 0, (cnt - old) * 4);
			memset(a->dirty[l] + old, 0, cnt - old);
			a->n[l] = cnt;
			if (l == 0)
				for (uint64_t i = old; i < cnt; i++)
					parray_mark(a, i);
		}
		if (l > 0)
			for (uint64_t i = 0; i < a->n[l]; i++)
				if (a->dirty[l][i] == 0)
					a->dirty[l][i] = 1;
		cnt = (cnt + p->fanout - 1) / p->fanout;
	}
	a->depth = depth;
	return 0;
}

static int parray_load_node(vms_pool *p, parray *a, uint8_t **bufs, uint32_t level, uint64_t j,
                            uint64_t blk, uint32_t crc,
                            int (*page_cb)(vms_pool *, uint64_t, const uint8_t *))
{
	uint8_t *buf = bufs[level];
	int rc;
	if (blk == 0 && crc == 0 && parray_hole_ok(a, level) && p->format_version >= 2) {
		/* a hole: a page of free blocks */
		memset(buf, 0, p->bs);
		a->blk[0][j] = 0;
		a->crc[0][j] = 0;
		a->dirty[0][j] = 0;
		if (a->ndirty)
			a->ndirty--;
		return page_cb(p, j, buf + NODE_HDR);
	}
	if (blk < 2 || blk >= p->total_blocks)
		return vms_error_set(VMS_ECORRUPT, "%s pointer to block %llu out of bounds",
		                     a->type == NT_SMAP ? "space map" : "volume table",
		                     (unsigned long long)blk);
	if ((rc = p->io->read(p->io, buf, p->bs, blk << p->bshift)) < 0)
		return rc;
	uint32_t got = vms_crc32c(0, buf, p->bs);
	if (got != crc)
		return vms_error_set(VMS_ECORRUPT, "%s block %llu: checksum %08x, expected %08x",
		                     a->type == NT_SMAP ? "space map" : "volume table",
		                     (unsigned long long)blk, got, crc);
	if ((rc = node_check_header(p, buf, level ? NT_VINT : a->type, (int)level, blk)) < 0)
		return rc;
	a->blk[level][j] = blk;
	a->crc[level][j] = crc;
	a->dirty[level][j] = 0;
	if (level == 0) {
		if (a->ndirty)
			a->ndirty--;
		return page_cb(p, j, buf + NODE_HDR);
	}
	for (uint64_t k = 0; k < p->fanout; k++) {
		uint64_t c = j * p->fanout + k;
		uint64_t cb = get64(buf + NODE_HDR + 16 * k);
		uint32_t cc = get32(buf + NODE_HDR + 16 * k + 8);
		if (c >= a->n[level - 1]) {
			if (cb != 0)
				return vms_error_set(VMS_ECORRUPT, "page array node %llu: entry past the end",
				                     (unsigned long long)blk);
			continue;
		}
		if ((rc = parray_load_node(p, a, bufs, level - 1, c, cb, cc, page_cb)) < 0)
			return rc;
		buf = bufs[level]; /* unchanged; children use lower levels */
	}
	return 0;
}

/* Load a page array whose shape (n[], depth) was set by parray_resize. */
int parray_load(vms_pool *p, parray *a, uint64_t root, uint32_t root_crc,
                int (*page_cb)(vms_pool *, uint64_t page, const uint8_t *payload))
{
	uint8_t *bufs[MAX_DEPTH + 1] = {0};
	int rc = 0;
	for (uint32_t l = 0; l <= a->depth; l++) {
		if (!(bufs[l] = malloc(p->bs))) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
	}
	rc = parray_load_node(p, a, bufs, a->depth, 0, root, root_crc, page_cb);
	for (uint32_t l = 1; rc == 0 && l <= a->depth; l++)
		memset(a->dirty[l], 0, a->n[l]);
done:
	for (uint32_t l = 0; l <= MAX_DEPTH; l++)
		free(bufs[l]);
	return rc;
}

uint64_t smap_page_used(const vms_pool *p, uint64_t page)
{
	uint64_t per = smap_per_page(p), first = page * per;
	uint64_t end = first + per < p->total_blocks ? first + per : p->total_blocks;
	for (uint64_t b = first; b < end; b++)
		if (p->ref[b])
			return b;
	return UINT64_MAX;
}

/* Relocate every node marked 1 (an all-free space-map page becomes a hole
 * instead); mark parents.  *moved = 1 when anything changed counts. */
static int parray_relocate(vms_pool *p, parray *a, int *moved)
{
	for (uint32_t l = 0; l <= a->depth; l++) {
		for (uint64_t j = 0; j < a->n[l]; j++) {
			if (a->dirty[l][j] != 1)
				continue;
			if (parray_hole_ok(a, l) && smap_page_used(p, j) == UINT64_MAX) {
				if (a->blk[0][j]) {
					sm_unref_meta(p, a->blk[0][j]);
					*moved = 1;
				}
				a->blk[0][j] = 0;
				a->dirty[0][j] = 2;
				if (a->dirty[1][j / p->fanout] == 0)
					a->dirty[1][j / p->fanout] = 1;
				continue;
			}
			uint64_t nb = 0;
			int rc = sm_alloc_meta(p, 1, &nb);
			if (rc < 0)
				return rc;
			if (a->blk[l][j])
				sm_unref_meta(p, a->blk[l][j]);
			a->blk[l][j] = nb;
			a->dirty[l][j] = 2;
			*moved = 1;
			if (l < a->depth && a->dirty[l + 1][j / p->fanout] == 0)
				a->dirty[l + 1][j / p->fanout] = 1;
		}
	}
	return 0;
}

static void smap_page_fill(vms_pool *p, uint64_t j, uint8_t *payload)
{
	uint64_t per = smap_per_page(p);
	uint64_t first = j * per;
	for (uint64_t i = 0; i < per; i++) {
		uint64_t b = first + i;
		put32(payload + 4 * i, b < p->total_blocks ? p->ref[b] : 0);
	}
}

static void vtab_page_fill(vms_pool *p, uint64_t j, uint8_t *payload)
{
	uint64_t per = vtab_per_page(p);
	for (uint64_t i = 0; i < per; i++) {
		uint64_t s = j * per + i;
		if (s < p->nslots)
			vrec_encode(&p->recs[s], payload + VREC_SIZE * i);
		else
			memset(payload + VREC_SIZE * i, 0, VREC_SIZE);
	}
}

/* Serialize every relocated node into the commit's write list. */
static int parray_serialize(vms_pool *p, parray *a)
{
	for (uint32_t l = 0; l <= a->depth; l++) {
		for (uint64_t j = 0; j < a->n[l]; j++) {
			if (a->dirty[l][j] != 2)
				continue;
			if (a->blk[l][j] == 0) { /* a hole (relocate checked it is all free) */
				if (!parray_hole_ok(a, l) || smap_page_used(p, j) != UINT64_MAX)
					return vms_error_set(VMS_EIO, "internal: page %llu of level %u has no "
					                     "block at commit", (unsigned long long)j, l);
				a->crc[0][j] = 0;
				a->dirty[0][j] = 0;
				continue;
			}
			uint8_t *buf = cw_add(p, a->blk[l][j]);
			if (!buf)
				return VMS_ENOMEM;
			memset(buf, 0, p->bs);
			node_header(buf, l ? NT_VINT : a->type, (uint8_t)l, p->txg);
			if (l == 0 && a->type == NT_SMAP)
				smap_page_fill(p, j, buf + NODE_HDR);
			else if (l == 0)
				vtab_page_fill(p, j, buf + NODE_HDR);
			else
				for (uint64_t k = 0; k < p->fanout; k++) {
					uint64_t c = j * p->fanout + k;
					if (c >= a->n[l - 1])
						break;
					put64(buf + NODE_HDR + 16 * k, a->blk[l - 1][c]);
					put32(buf + NODE_HDR + 16 * k + 8, a->crc[l - 1][c]);
				}
			a->crc[l][j] = vms_crc32c(0, buf, p->bs);
			a->dirty[l][j] = 0;
		}
	}
	a->ndirty = 0;
	return 0;
}

/* Commit step (closing a txg): relocate both page arrays and serialize
 * their changed nodes into the commit's write list.  pool->lock held. */
int parrays_close(vms_pool *p)
{
	int rc, moved;
	do {
		moved = 0;
		if ((rc = parray_relocate(p, &p->vtab, &moved)) < 0)
			return rc;
		if ((rc = parray_relocate(p, &p->smap, &moved)) < 0)
			return rc;
	} while (moved);
	if ((rc = parray_serialize(p, &p->vtab)) < 0)
		return rc;
	return parray_serialize(p, &p->smap);
}

/* Calls cb for every block of the page array (check). */
int parray_walk_blocks(vms_pool *p, const parray *a, int (*cb)(void *, uint64_t), void *ctx)
{
	(void)p;
	for (uint32_t l = 0; l <= a->depth; l++)
		for (uint64_t j = 0; j < a->n[l]; j++) {
			if (!a->blk[l][j])
				continue; /* a hole */
			int rc = cb(ctx, a->blk[l][j]);
			if (rc)
				return rc;
		}
	return 0;
}

/* ---- volume table ------------------------------------------------------- */

void vrec_encode(const vrec *r, uint8_t *o)
{
	memset(o, 0, VREC_SIZE);
	if (!r->id)
		return;
	put64(o, r->id);
	o[8] = r->kind;
	o[9] = r->flags;
	o[10] = r->depth;
	put64(o + 16, r->size);
	put64(o + 24, r->root);
	put32(o + 32, r->root_crc);
	put64(o + 40, r->origin);
	put64(o + 48, r->create_txg);
	put64(o + 56, (uint64_t)r->create_time);
	put64(o + 64, r->mapped);
	put64(o + 72, r->written);
	put64(o + 80, r->fam);
	put32(o + 88, r->ver);
	put32(o + 92, r->parent_ver);
	put64(o + 96, r->nkeys);
	put32(o + 104, r->log_seq);
}

void vrec_decode(vrec *r, const uint8_t *i)
{
	memset(r, 0, sizeof(*r));
	r->id = get64(i);
	r->kind = i[8];
	r->flags = i[9];
	r->depth = i[10];
	r->size = get64(i + 16);
	r->root = get64(i + 24);
	r->root_crc = get32(i + 32);
	r->origin = get64(i + 40);
	r->create_txg = get64(i + 48);
	r->create_time = (int64_t)get64(i + 56);
	r->mapped = get64(i + 64);
	r->written = get64(i + 72);
	r->fam = get64(i + 80);
	r->ver = get32(i + 88);
	r->parent_ver = get32(i + 92);
	r->nkeys = get64(i + 96);
	r->log_seq = get32(i + 104);
}

/* Drop the array's nodes past npages (freeing their blocks), lowering the
 * depth when it allows; the remaining interior nodes are rewritten. */
static void parray_shrink(vms_pool *p, parray *a, uint64_t npages)
{
	uint32_t depth = parray_depth_for(p, npages);
	uint64_t cnt = npages;
	for (uint32_t l = 0; l <= a->depth; l++) {
		uint64_t keep = l <= depth ? cnt : 0;
		for (uint64_t j = keep; j < a->n[l]; j++) {
			if (a->blk[l][j])
				sm_unref_meta(p, a->blk[l][j]);
			if (l == 0 && a->dirty[0][j] && a->ndirty)
				a->ndirty--;
		}
		a->n[l] = keep;
		for (uint64_t j = 0; l > 0 && j < keep; j++)
			if (a->dirty[l][j] == 0)
				a->dirty[l][j] = 1;
		cnt = (cnt + p->fanout - 1) / p->fanout;
	}
	a->depth = depth;
}

/* Give back trailing volume-table pages whose slots are all free. */
void vtab_trim(vms_pool *p)
{
	uint64_t per = vtab_per_page(p);
	while (p->vtab.n[0] > 1) {
		uint64_t first = (p->vtab.n[0] - 1) * per;
		for (uint64_t s = first; s < first + per; s++)
			if (p->recs[s].id)
				return;
		parray_shrink(p, &p->vtab, p->vtab.n[0] - 1);
		p->nslots = first;
		p->dirty = 1;
	}
}

int vtab_grow(vms_pool *p)
{
	uint64_t per = vtab_per_page(p);
	uint64_t ns = p->nslots + per;
	vrec *r = realloc(p->recs, ns * sizeof(vrec));
	if (!r)
		return vms_error_set(VMS_ENOMEM, "out of memory for the volume table");
	memset(r + p->nslots, 0, per * sizeof(vrec));
	p->recs = r;
	p->nslots = ns;
	p->dirty = 1;
	return parray_resize(p, &p->vtab, ns / per);
}
