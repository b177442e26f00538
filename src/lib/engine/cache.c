/*
 * cache.c - the bounded cache of index nodes.
 *
 * Nodes are keyed by block number: a node shared by many snapshots is
 * cached once.  Clean nodes sit on an LRU list and may be evicted; dirty
 * nodes (allocated in the open transaction, not yet written) sit on one
 * list per tree level and are never evicted: commit serializes them
 * bottom-up (a parent needs its children's checksums) and pins them until
 * their write is durable, then moves them to the LRU.
 *
 * The bound (opts.cache_bytes) applies to clean nodes; dirty nodes are
 * bounded by the commit that a write triggers when too many accumulate.
 * Eviction happens only when a node is loaded, never while an operation
 * holds node pointers across shadowing; callers that dropped pool->lock to
 * load a node restart their walk from the volume root.
 *
 * All functions run with pool->lock held, except where said.
 */
#include <stdlib.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

static inline uint64_t hash_blk(uint64_t blk)
{
	blk ^= blk >> 33;
	blk *= 0xff51afd7ed558ccdull;
	blk ^= blk >> 33;
	return blk;
}

static void list_init(node *s)
{
	s->next = s->prev = s;
}

static void list_del(node *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

static void list_add_front(node *s, node *n)
{
	n->next = s->next;
	n->prev = s;
	s->next->prev = n;
	s->next = n;
}

int cache_init(vms_pool *p, uint64_t cache_bytes)
{
	node_cache *c = &p->cache;
	if (cache_bytes == 0)
		cache_bytes = 64ull << 20;
	p->kv_bytes = cache_bytes / 4; /* format 3's view cache (kview.c) */
	c->max_nodes = cache_bytes / (sizeof(node) + p->bs);
	if (c->max_nodes < 64)
		c->max_nodes = 64;
	uint64_t hsize = 1024;
	while (hsize < c->max_nodes * 2 && hsize < (1ull << 26))
		hsize <<= 1;
	c->hash = calloc(hsize, sizeof(node *));
	if (!c->hash)
		return vms_error_set(VMS_ENOMEM, "out of memory for the node cache");
	c->hmask = hsize - 1;
	list_init(&c->lru);
	list_init(&c->pinned);
	for (unsigned i = 0; i < MAX_DEPTH; i++)
		list_init(&c->dirty[i]);
	return 0;
}

void cache_destroy(vms_pool *p)
{
	node_cache *c = &p->cache;
	if (c->hash) {
		for (uint64_t i = 0; i <= c->hmask; i++) {
			node *n = c->hash[i];
			while (n) {
				node *nx = n->hnext;
				free(n);
				n = nx;
			}
		}
		free(c->hash);
		c->hash = NULL;
	}
	while (c->spare) {
		node *n = c->spare;
		c->spare = n->hnext;
		free(n);
	}
}

node *node_alloc(vms_pool *p)
{
	node_cache *c = &p->cache;
	node *n = c->spare;
	if (n) {
		c->spare = n->hnext;
	} else {
		n = malloc(sizeof(node) + p->bs);
		if (!n)
			return NULL;
	}
	memset(n, 0, sizeof(node));
	n->next = n->prev = n;
	return n;
}

void node_release(vms_pool *p, node *n)
{
	node_cache *c = &p->cache;
	n->hnext = c->spare;
	c->spare = n;
}

node *cache_find(vms_pool *p, uint64_t blk)
{
	node_cache *c = &p->cache;
	node *n = c->hash[hash_blk(blk) & c->hmask];
	while (n && n->blk != blk)
		n = n->hnext;
	return n;
}

node *cache_get(vms_pool *p, uint64_t blk)
{
	node *n = cache_find(p, blk);
	if (n) {
		/* CLOCK rather than strict LRU: a hit only marks the node (a
		 * store to the header cache_find just read), where moving it to
		 * the front touched two more random nodes, its list neighbours:
		 * in a large cache those misses were most of a lookup's cost */
		p->cache.hits++;
		n->referenced = 1;
	}
	return n;
}

static void hash_insert(vms_pool *p, node *n)
{
	node_cache *c = &p->cache;
	node **b = &c->hash[hash_blk(n->blk) & c->hmask];
	n->hnext = *b;
	*b = n;
	c->nodes++;
}

static void hash_remove(vms_pool *p, node *n)
{
	node_cache *c = &p->cache;
	node **b = &c->hash[hash_blk(n->blk) & c->hmask];
	while (*b && *b != n)
		b = &(*b)->hnext;
	if (*b)
		*b = n->hnext;
	c->nodes--;
}

void cache_drop(vms_pool *p, uint64_t blk)
{
	node *n = cache_find(p, blk);
	if (!n)
		return;
	hash_remove(p, n);
	list_del(n);
	if (n->dirty)
		p->cache.ndirty--;
	node_release(p, n);
}

void node_header(uint8_t *data, uint8_t type, uint8_t level, uint64_t txg)
{
	put32(data, NODE_MAGIC);
	data[4] = type;
	data[5] = level;
	put16(data + 6, 0);
	put64(data + 8, txg);
}

node *cache_new_dirty(vms_pool *p, uint64_t blk, uint8_t level)
{
	node *n = node_alloc(p);
	if (!n)
		return NULL;
	memset(n->data, 0, p->bs);
	node_header(n->data, NT_INDEX, level, p->txg);
	n->blk = blk;
	n->level = level;
	n->dirty = 1;
	hash_insert(p, n);
	list_add_front(&p->cache.dirty[level], n);
	p->cache.ndirty++;
	return n;
}

void cache_make_clean(vms_pool *p, node *n)
{
	list_del(n);
	n->dirty = 0;
	p->cache.ndirty--;
	list_add_front(&p->cache.lru, n);
}

/* A dirty node whose content was handed to the commit in flight: clean (so
 * the next transaction shadows it) but not evictable until its write is
 * durable (cache_unpin_all), since the disk does not hold it yet. */
void cache_pin(vms_pool *p, node *n)
{
	list_del(n);
	n->dirty = 0;
	n->pinned = 1;
	p->cache.ndirty--;
	list_add_front(&p->cache.pinned, n);
}

void cache_unpin_all(vms_pool *p)
{
	node *s = &p->cache.pinned;
	while (s->next != s) {
		node *n = s->prev;
		list_del(n);
		n->pinned = 0;
		list_add_front(&p->cache.lru, n);
	}
}

void cache_evict(vms_pool *p)
{
	node_cache *c = &p->cache;
	while (c->nodes - c->ndirty > c->max_nodes && c->lru.prev != &c->lru) {
		node *n = c->lru.prev;
		if (n->referenced) { /* a second chance: to the front, unmarked */
			n->referenced = 0;
			list_del(n);
			list_add_front(&c->lru, n);
			continue;
		}
		hash_remove(p, n);
		list_del(n);
		node_release(p, n);
	}
}

int cache_insert_clean(vms_pool *p, node *n)
{
	if (cache_find(p, n->blk)) { /* loaded by another thread meanwhile */
		node_release(p, n);
		return 0;
	}
	cache_evict(p);
	hash_insert(p, n);
	list_add_front(&p->cache.lru, n);
	return 0;
}

int node_check_header(const vms_pool *p, const uint8_t *data, uint8_t type, int level, uint64_t blk)
{
	if (get32(data) != NODE_MAGIC)
		return vms_error_set(VMS_ECORRUPT, "metadata block %llu: bad magic %#x",
		                     (unsigned long long)blk, get32(data));
	if (data[4] != type)
		return vms_error_set(VMS_ECORRUPT, "metadata block %llu: type %u, expected %u",
		                     (unsigned long long)blk, data[4], type);
	if (level >= 0 && data[5] != level)
		return vms_error_set(VMS_ECORRUPT, "metadata block %llu: level %u, expected %d",
		                     (unsigned long long)blk, data[5], level);
	if (get16(data + 6) != 0 || get64(data + 8) > p->txg)
		return vms_error_set(VMS_ECORRUPT, "metadata block %llu: bad header",
		                     (unsigned long long)blk);
	return 0;
}

/* Read and verify one node of a tree of the given type (NT_INDEX: a volume
 * tree; NT_KEYS: a key tree, kt_node_verify); n->data receives it.  Any
 * pool->lock state. */
static int node_read_as(vms_pool *p, node *n, uint64_t blk, uint32_t crc, int level, uint8_t type)
{
	if (blk < 2 || blk >= p->total_blocks)
		return vms_error_set(VMS_ECORRUPT, "index pointer to block %llu out of bounds",
		                     (unsigned long long)blk);
	int rc = p->io->read(p->io, n->data, p->bs, blk << p->bshift);
	if (rc < 0)
		return vms_error_wrap(rc, "reading index node %llu", (unsigned long long)blk);
	uint32_t got = vms_crc32c(0, n->data, p->bs);
	if (got != crc)
		return vms_error_set(VMS_ECORRUPT,
		                     "index node at block %llu: checksum %08x, parent says %08x",
		                     (unsigned long long)blk, got, crc);
	if ((rc = node_check_header(p, n->data, type, level, blk)) < 0)
		return rc;
	if (type == NT_KEYS && (rc = kt_node_verify(p, n->data, blk, level)) < 0)
		return rc;
	if (type == NT_LOG && (rc = klog_verify(p, n->data, blk)) < 0)
		return rc;
	for (unsigned i = 0; type == NT_INDEX && i < p->fanout; i++) {
		uint64_t c = ent_blk(n, i);
		if ((c != 0 && (c < 2 || c >= p->total_blocks)) || ent_flags(n, i) != 0)
			return vms_error_set(VMS_ECORRUPT, "index node %llu: bad entry %u",
			                     (unsigned long long)blk, i);
	}
	n->blk = blk;
	n->crc = crc;
	n->level = (uint8_t)level;
	n->dirty = 0;
	return 0;
}

/* Read and verify one volume-tree node; n->data receives it.  Any
 * pool->lock state. */
int node_read(vms_pool *p, node *n, uint64_t blk, uint32_t crc, int level)
{
	return node_read_as(p, n, blk, crc, level, NT_INDEX);
}

static int load_unlocked(vms_pool *p, uint64_t blk, uint32_t crc, int level, uint8_t type)
{
	node *n = node_alloc(p);
	if (!n)
		return vms_error_set(VMS_ENOMEM, "out of memory for an index node");
	p->cache.misses++;
	pthread_mutex_unlock(&p->lock);
	int rc = node_read_as(p, n, blk, crc, level, type);
	pthread_mutex_lock(&p->lock);
	if (rc < 0) {
		node_release(p, n);
		return rc;
	}
	return cache_insert_clean(p, n);
}

/* Called with pool->lock held; drops it for the read and takes it again.
 * The caller must restart its walk: node pointers may be stale. */
int node_load_unlocked(vms_pool *p, uint64_t blk, uint32_t crc, int level)
{
	return load_unlocked(p, blk, crc, level, NT_INDEX);
}

int node_load_keys_unlocked(vms_pool *p, uint64_t blk, uint32_t crc, int level)
{
	return load_unlocked(p, blk, crc, level, NT_KEYS);
}

int node_load_log_unlocked(vms_pool *p, uint64_t blk, uint32_t crc)
{
	return load_unlocked(p, blk, crc, 0, NT_LOG);
}
