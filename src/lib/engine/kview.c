/*
 * kview.c - the view cache of format 3 pools: what a volume or snapshot
 * reads at a block, as the last lookup in the family's key tree found it.
 *
 * A read of a format 3 pool searches the family's key tree, which holds
 * the keys of every version of the family: at 1,024 snapshots of a 1 GiB
 * disk rewritten 1.5% between two of them, 4.3 million keys in 110 MiB of
 * leaves, so a lookup misses the CPU caches several times however many of
 * the tree's nodes are cached.  What one volume reads, though, is one
 * address per block, whatever the history: this cache keeps those, in
 * chunks of 64 consecutive blocks of one record (volume or snapshot), each
 * entry valid or not, so a read whose block was looked up before costs one
 * hash probe and no search, at any number of snapshots.
 *
 * It is exact, not a hint: an entry is what the key tree resolves for the
 * record at that block, because every change of what a record reads goes
 * through here under pool->lock:
 *   - a write or unmap of a volume's block changes its own live version's
 *     key (kv_update sets the entry if its chunk is cached);
 *   - a rollback changes a volume's whole view (kv_drop), a delete ends it;
 *   - nothing else does: a live version never has children, so no other
 *     record reads through its keys; a snapshot or clone freezes the
 *     volume's version (its view stays, under the same record id); the
 *     collector's merges move keys without changing their values and free
 *     only keys no reader resolves to; a merge's takeover gives a snapshot
 *     record a new version id with the same view.
 * A new snapshot or clone reads what its source volume read at that moment
 * (k_snapshot_one, k_clone: rec->kv_src, kv_src_gen), so the source's
 * entries serve it for every chunk the source has not changed since: each
 * chunk keeps the kv_gen of its last change (or of its making, which may
 * follow a change not seen), and a source's rollback or delete drops its
 * chunks.  A live clone or snapshot has no keys of its own at first; a
 * clone's writes are its own delta-region keys, checked before (k_lookup).
 *
 * A lookup that filled an entry may have dropped pool->lock to load nodes,
 * and a write meanwhile may have changed the block after the lookup saw
 * it: every change bumps p->kv_gen (kept in the pool, so that it counts
 * before the cache is first made), and a lookup only stores its result
 * when kv_gen did not move (kv_put's caller compares).
 *
 * Bounded: a quarter of the node cache's budget (cache_bytes), chunks
 * evicted by CLOCK.  A record's chunks are on a list from its record
 * (vrec.kv_head), so a rollback or delete drops them at a cost in
 * proportion to them, not to the cache.  Memory only, never written: a
 * pool opens with it empty.
 * Runs under pool->lock.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

#define KV_SHIFT 6u
#define KV_N     (1u << KV_SHIFT)
#define KV_END   UINT32_MAX

typedef struct kv_chunk {
	uint64_t c;                      /* chunk index: blocks [c * KV_N, +KV_N) */
	uint64_t valid;                  /* bit i: entry i holds what the record reads */
	uint64_t wgen;                   /* kv_gen at its last change or its making */
	uint32_t next;                   /* hash chain (slot index, KV_END) */
	uint32_t rnext, rprev;           /* the record's chunks (vrec.kv_head; KV_END) */
	uint8_t ref;                     /* CLOCK: used since the hand last passed */
	uint8_t pblk[KV_N][5];           /* u40 pool block, 0 = reads as zeros */
	uint32_t crc[KV_N];
} kv_chunk;

struct kview {
	uint64_t *rec;                   /* per slot: its record id, 0 = free (apart: the
	                                  * hand's and the hash chains' scans stay small) */
	kv_chunk *slot;
	uint32_t nslots, used, hand;
	uint32_t *bucket;
	uint32_t bmask;
};

void kv_free(vms_pool *p)
{
	if (p->kv) {
		free(p->kv->rec);
		free(p->kv->slot);
		free(p->kv->bucket);
		free(p->kv);
		p->kv = NULL;
	}
}

static uint32_t hash(const struct kview *v, uint64_t rec, uint64_t c)
{
	uint64_t h = (rec * 0x9E3779B97F4A7C15ull) ^ (c * 0xC2B2AE3D27D4EB4Full);
	return (uint32_t)(h >> 32) & v->bmask;
}

static kv_chunk *find(const struct kview *v, uint64_t rec, uint64_t c)
{
	if (!v)
		return NULL;
	for (uint32_t s = v->bucket[hash(v, rec, c)]; s != KV_END; s = v->slot[s].next)
		if (v->rec[s] == rec && v->slot[s].c == c)
			return &v->slot[s];
	return NULL;
}

/* The cache, made on first use; NULL when there is no memory for it (the
 * reads then search the tree, as without it). */
static struct kview *get(vms_pool *p)
{
	if (p->kv || !p->kv_bytes)
		return p->kv;
	struct kview *v = calloc(1, sizeof(*v));
	uint32_t n = (uint32_t)(p->kv_bytes / sizeof(kv_chunk) < (1u << 26) ?
	                        p->kv_bytes / sizeof(kv_chunk) : (1u << 26));
	if (n < 16)
		n = 16;
	uint32_t nb = 16;
	while (nb < n)
		nb <<= 1;
	if (v && (v->rec = calloc(n, sizeof(uint64_t))) && (v->slot = malloc(n * sizeof(kv_chunk))) &&
	    (v->bucket = malloc(nb * sizeof(uint32_t)))) {
		memset(v->bucket, 0xFF, nb * sizeof(uint32_t));
		v->nslots = n;
		v->bmask = nb - 1;
		p->kv = v;
		return v;
	}
	if (v) {
		free(v->rec);
		free(v->slot);
	}
	free(v);
	p->kv_bytes = 0; /* do not try again */
	return NULL;
}

int kv_get(vms_pool *p, uint64_t rec, uint64_t lblk, uint64_t *pblk, uint32_t *crc)
{
	kv_chunk *k = find(p->kv, rec, lblk >> KV_SHIFT);
	unsigned i = (unsigned)(lblk & (KV_N - 1));
	if (!k || !(k->valid >> i & 1))
		return 0;
	k->ref = 1;
	*pblk = get40(k->pblk[i]);
	*crc = k->crc[i];
	return 1;
}

/* Slot s leaves its hash chain and is free. */
static void unhash(struct kview *v, uint32_t s)
{
	uint32_t *at = &v->bucket[hash(v, v->rec[s], v->slot[s].c)];
	while (*at != s)
		at = &v->slot[*at].next;
	*at = v->slot[s].next;
	v->rec[s] = 0;
	v->used--;
}

/* Slot s leaves its record's list and is free (an eviction). */
static void unlink_slot(vms_pool *p, struct kview *v, uint32_t s)
{
	kv_chunk *k = &v->slot[s];
	if (k->rprev != KV_END) {
		v->slot[k->rprev].rnext = k->rnext;
	} else {
		vrec *r = vol_find(p, v->rec[s]);
		if (r && r->kv_head == s + 1)
			r->kv_head = k->rnext == KV_END ? 0 : k->rnext + 1;
	}
	if (k->rnext != KV_END)
		v->slot[k->rnext].rprev = k->rprev;
	unhash(v, s);
}

/* A slot for a new chunk: a free one, else CLOCK's victim. */
static uint32_t take_slot(vms_pool *p, struct kview *v)
{
	if (v->used < v->nslots) {
		while (v->rec[v->hand]) /* a free slot exists: the hand finds it */
			v->hand = (v->hand + 1) % v->nslots;
	} else {
		while (v->slot[v->hand].ref) {
			v->slot[v->hand].ref = 0;
			v->hand = (v->hand + 1) % v->nslots;
		}
		unlink_slot(p, v, v->hand);
	}
	uint32_t s = v->hand;
	v->hand = (v->hand + 1) % v->nslots;
	return s;
}

void kv_put(vms_pool *p, uint64_t rec, uint64_t lblk, uint64_t pblk, uint32_t crc)
{
	struct kview *v = get(p);
	if (!v)
		return;
	uint64_t c = lblk >> KV_SHIFT;
	unsigned i = (unsigned)(lblk & (KV_N - 1));
	kv_chunk *k = find(v, rec, c);
	if (!k) {
		uint32_t s = take_slot(p, v);
		vrec *r = vol_find(p, rec); /* after the eviction, which may change its list */
		if (!r)
			return;
		k = &v->slot[s];
		k->rprev = KV_END;
		k->rnext = r->kv_head ? r->kv_head - 1 : KV_END;
		if (k->rnext != KV_END)
			v->slot[k->rnext].rprev = s;
		r->kv_head = s + 1;
		v->rec[s] = rec;
		k->c = c;
		k->valid = 0;
		k->wgen = p->kv_gen;
		k->ref = 1;
		uint32_t *b = &v->bucket[hash(v, rec, c)];
		k->next = *b;
		*b = s;
		v->used++;
	}
	put40(k->pblk[i], pblk);
	k->crc[i] = crc;
	k->valid |= UINT64_C(1) << i;
}

void kv_update(vms_pool *p, uint64_t rec, uint64_t lblk, uint64_t pblk, uint32_t crc)
{
	p->kv_gen++;
	kv_chunk *k = find(p->kv, rec, lblk >> KV_SHIFT);
	if (k) {
		unsigned i = (unsigned)(lblk & (KV_N - 1));
		put40(k->pblk[i], pblk);
		k->crc[i] = crc;
		k->valid |= UINT64_C(1) << i;
		k->wgen = p->kv_gen;
	}
}

void kv_drop(vms_pool *p, uint64_t rec)
{
	struct kview *v = p->kv;
	vrec *r = vol_find(p, rec);
	p->kv_gen++;
	if (!v || !r)
		return;
	for (uint32_t s = r->kv_head ? r->kv_head - 1 : KV_END; s != KV_END;) {
		uint32_t next = v->slot[s].rnext;
		unhash(v, s);
		s = next;
	}
	r->kv_head = 0;
}

int kv_get_as_of(vms_pool *p, uint64_t rec, uint64_t gen, uint64_t lblk, uint64_t *pblk,
                 uint32_t *crc)
{
	kv_chunk *k = find(p->kv, rec, lblk >> KV_SHIFT);
	unsigned i = (unsigned)(lblk & (KV_N - 1));
	if (!k || k->wgen > gen || !(k->valid >> i & 1))
		return 0;
	*pblk = get40(k->pblk[i]);
	*crc = k->crc[i];
	return 1;
}

int kv_verify(vms_pool *p)
{
	struct kview *v = p->kv;
	if (!v)
		return 0;
	uint32_t hashed = 0, listed = 0, used = 0;
	for (uint32_t s = 0; s < v->nslots; s++)
		used += v->rec[s] != 0;
	for (uint32_t b = 0; b <= v->bmask; b++)
		for (uint32_t s = v->bucket[b]; s != KV_END; s = v->slot[s].next) {
			if (s >= v->nslots || !v->rec[s] || hash(v, v->rec[s], v->slot[s].c) != b ||
			    ++hashed > used)
				return vms_error_set(VMS_EIO, "view cache: hash chain %u: bad slot %u", b, s);
		}
	for (size_t i = 0; i < p->nvidx; i++) {
		const vrec *r = &p->recs[p->vidx[i].slot];
		uint32_t prev = KV_END;
		for (uint32_t s = r->kv_head ? r->kv_head - 1 : KV_END; s != KV_END;
		     prev = s, s = v->slot[s].rnext) {
			if (s >= v->nslots || v->rec[s] != r->id || v->slot[s].rprev != prev ||
			    ++listed > used)
				return vms_error_set(VMS_EIO, "view cache: list of record %llu: bad slot %u",
				                     (unsigned long long)r->id, s);
		}
	}
	if (used != v->used || hashed != used || listed != used)
		return vms_error_set(VMS_EIO, "view cache: %u slots used, count %u, %u hashed, %u "
		                     "listed", used, v->used, hashed, listed);
	return 0;
}
