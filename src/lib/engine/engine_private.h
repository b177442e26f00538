/*
 * engine_private.h - internals of the native pool engine, shared by the
 * files of src/lib/engine/.  Design: docs/design/engine.md; on-disk format:
 * docs/format.md.
 *
 * Lock order (never take them the other way round):
 *   0. pool->commit_mx (mutex): one commit at a time, for the whole commit
 *      (closing the transaction, writing it, the record); flushes queue on
 *      it and share a commit (group commit).
 *   1. pool->commit_lock (rwlock): shared by every I/O and volume operation
 *      for its whole duration, exclusive only while a commit *closes* a
 *      transaction (serializes its metadata into buffers: O(dirty metadata),
 *      no I/O), by snapshot, clone, rollback, resize and delete (so none
 *      runs while a write's data I/O is in flight) and by check.  The
 *      closed transaction's I/O runs after
 *      it is released, concurrently with the next transaction's I/O.
 *      A freed block becomes allocatable only at or after the next close,
 *      which waits for every holder of the shared lock, so a read may pread
 *      a block it looked up after dropping pool->lock.
 *   2. pool->lock (mutex): guards every in-memory structure: node cache,
 *      space map, volume table, counters, claims.  A write plans a leaf's
 *      blocks under it, claims them, and does their data I/O without it
 *      (tree.c, "claims"); pool->claim_cv is waited on with it.
 *   3. pool->bg_lock (mutex): only the background threads' wake-ups.
 *
 * Invariants:
 *   - A tree node or data block is modified in place only when its reference
 *     count is 1 and it was allocated in the open transaction ("fresh").
 *   - Every dirty (fresh, unwritten) index node is in the cache, never
 *     evicted, and reachable from some volume record.  A node of a closed
 *     transaction whose write is in flight is pinned (never evicted) until
 *     the commit record is durable, so no reader reads it from disk early.
 *   - A block freed in txg T becomes allocatable only after T+1's commit
 *     record is durable (when it was fresh: at the close of T), so the two
 *     commit records on disk never point at reused blocks.
 */
#ifndef VMS_ENGINE_PRIVATE_H
#define VMS_ENGINE_PRIVATE_H

#include <endian.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "vmsnap/crc32c.h"
#include "vmsnap/error.h"
#include "vmsnap/pool.h"

/* ---- on-disk constants (docs/format.md) -------------------------------- */

#define SB_MAGIC        "VMSNAPPL"     /* 8 bytes at offset 0 of a commit record */
#define SB_VERSION      2u             /* written; 2: all-free space-map pages are holes */
#define SB_VERSION_KEYS 3u             /* written by pools with the versioned-key index */
#define SB_VERSION_MIN  1u             /* oldest read (1: no holes; same layout otherwise) */
#define SB_SIZE         256u           /* bytes covered by the record's crc */
#define SB_FLAG_DATA_CSUM 1u
#define SB_FLAG_KEYS    2u             /* versioned-key index (format version 3, keys.h) */

#define NODE_MAGIC      0x4e534d56u    /* "VMSN" little-endian */
#define NODE_HDR        16u
#define NT_INDEX        1u             /* volume tree node (leaf: level 0) */
#define NT_SMAP         2u             /* space-map page: u32 refcounts */
#define NT_VTAB         3u             /* volume-table page: 128-byte records */
#define NT_VINT         4u             /* interior node of a page array */
#define NT_KEYS         5u             /* key-tree node of a format 3 pool (keys.h) */
#define NT_LOG          6u             /* version-log node of a format 3 pool (klog.c) */

#define VREC_SIZE       128u
#define VREC_DELETING   1u
#define VREC_HIDDEN     2u             /* internal: old tree of a rollback */
#define VREC_MERGING    4u             /* format 3: this version's keys are moving into its
                                        * parent's or only child's (klog.c) ... */
#define VREC_MERGE_DST  8u             /* ... this one's */
#define VREC_DELTA      32u            /* format 3: its keys may be in its delta region (keys.h) */
/* Record kinds of format 3 pools besides VMS_VOL_VOLUME / VMS_VOL_SNAPSHOT,
 * never listed (keys.h, docs/design/index-v3.md): */
#define VREC_FAMILY     16u            /* a family: its key tree (root, depth) */
#define VREC_INTERIOR   17u            /* a frozen former live version */

#define BP_DIRTY        1u             /* in memory only: child is a dirty node */

#define MAX_DEPTH       8u

/* ---- little-endian field access --------------------------------------- */

static inline uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static inline uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static inline void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static inline void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void put16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline uint64_t get40(const uint8_t *b) { return get32(b) | (uint64_t)b[4] << 32; }
static inline void put40(uint8_t *b, uint64_t v) { put32(b, (uint32_t)v); b[4] = (uint8_t)(v >> 32); }

/* ---- growable list of block numbers ------------------------------------ */

typedef struct blist {
	uint64_t *v;
	size_t n, cap;
} blist;

int blist_push(blist *l, uint64_t b);
void blist_free(blist *l);

/* ---- node cache (cache.c) ---------------------------------------------- */

typedef struct node {
	uint64_t blk;
	struct node *hnext;              /* hash chain */
	struct node *prev, *next;        /* LRU list (clean) or dirty list */
	uint32_t crc;                    /* crc32c of data when clean */
	uint8_t level;
	uint8_t dirty;
	uint8_t pinned;                  /* written by the commit in flight */
	uint8_t referenced;              /* clean: hit since the eviction clock last passed */
	uint8_t data[];                  /* block_size bytes, on-disk layout */
} node;

typedef struct node_cache {
	node **hash;
	uint64_t hmask;
	node lru;                        /* sentinel: next = most recent */
	node dirty[MAX_DEPTH];           /* sentinels, one dirty list per level */
	node pinned;                     /* sentinel: nodes of the commit in flight */
	uint64_t nodes, ndirty, max_nodes;
	uint64_t hits, misses;
	node *spare;                     /* freed nodes kept for reuse */
} node_cache;

/* ---- page arrays: space map and volume table (spacemap.c) ---------------- */

/* A paged array fully held in memory, persisted as pages (level 0) under a
 * radix tree of NT_VINT nodes; relocated copy-on-write at every commit. */
typedef struct parray {
	uint8_t type;                    /* NT_SMAP or NT_VTAB */
	uint32_t depth;                  /* interior levels above the pages */
	uint64_t n[MAX_DEPTH + 1];       /* nodes per level; n[0] = pages */
	uint64_t *blk[MAX_DEPTH + 1];    /* per level: block of each node */
	uint32_t *crc[MAX_DEPTH + 1];
	uint8_t *dirty[MAX_DEPTH + 1];   /* 1 = content changed, 2 = relocated this commit */
	uint64_t ndirty;                 /* dirty pages (level 0) */
} parray;

/* ---- volume records ------------------------------------------------------ */

typedef struct vrec {
	uint64_t id;                     /* 0 = free slot */
	uint8_t kind, flags, depth;
	uint8_t root_pending;            /* root is a dirty node: crc at commit */
	uint64_t size;
	uint64_t root;
	uint32_t root_crc;
	uint64_t origin, create_txg;
	int64_t create_time;
	uint64_t mapped, written;        /* in blocks */
	/* format 3 (keys.h); all 0 in format 2 records */
	uint64_t fam;                    /* the family record's id (0 in a family record) */
	uint32_t ver, parent_ver;        /* the version it reads; its parent.  In a family
	                                  * record, ver = the next version id to hand out
	                                  * (ids decrease) */
	uint64_t nkeys;                  /* keys held: by the version, or in the family */
	uint32_t log_seq;                /* log nodes handed out to the version (klog.c) */
	/* in memory only: format 3's view cache (kview.c).  This record, a new
	 * snapshot or clone, read what record kv_src read when p->kv_gen was
	 * kv_src_gen; 0: no such source */
	uint64_t kv_src, kv_src_gen;
	uint32_t kv_head;                /* its first view-cache chunk's slot + 1; 0: none */
} vrec;

typedef struct vindex {                  /* id -> slot, sorted by id */
	uint64_t id;
	uint32_t slot;
} vindex;

typedef struct claim {                   /* blocks of a volume being written without pool->lock */
	vms_vol_id id;
	uint64_t lo, hi;                 /* logical blocks [lo, hi) */
} claim;

/* ---- the pool ------------------------------------------------------------ */

struct vms_pool {
	vms_io *io;
	int lock_fd;                     /* flock'd file, -1 when none */

	pthread_mutex_t commit_mx;
	pthread_rwlock_t commit_lock;
	pthread_mutex_t lock;

	/* geometry */
	uint32_t bs, bshift;
	uint32_t fanout;                 /* F = B/16 - 1 */
	uint64_t fpow[MAX_DEPTH + 1];    /* F^l */
	uint64_t total_blocks;
	int data_checksums;
	uint8_t uuid[16];
	uint32_t format_version;         /* of the record opened (holes need 2); SB_VERSION once written */
	int keys;                        /* versioned-key index (format 3): keys.h, keyvol.c */
	struct kfam **fams;              /* format 3: the families, sorted by id */
	int gc_exclusive;                /* the collector's step holds commit_lock exclusively */
	struct kview *kv;                /* format 3: the view cache (kview.c), made on first use */
	uint64_t kv_bytes;               /* its bound (0: none) */
	uint64_t kv_gen;                 /* bumped by every change of what a record reads */
	size_t nfams, fams_cap;

	/* commit state */
	uint64_t txg;                    /* open transaction */
	uint64_t durable_txg;            /* last commit whose record is durable */
	int readonly;
	int opened_readonly;             /* vms_pool_open_readonly: never writes */
	int dirty;                       /* anything changed since the last commit */
	char ro_reason[200];

	/* space map */
	uint32_t *ref;
	uint64_t *busy, *fresh;          /* bitmaps */
	uint64_t nfree, nbusy, rotor;
	uint64_t reserve;
	blist fresh_list, defer_now, defer_cur, defer_closing, defer_prev;
	uint64_t meta_blocks;            /* allocated metadata blocks (persisted) */
	parray smap;

	/* volume table */
	vrec *recs;
	uint64_t nslots;                 /* = vtab pages * records per page */
	vindex *vidx;
	size_t nvidx, vidx_cap;
	uint64_t next_id;
	uint64_t *free_slots;            /* min-heap of free slots (may hold stale ones) */
	size_t nfree_slots, free_slots_cap;
	int free_slots_ready;            /* 0: rebuild the heap from the table */
	parray vtab;
	uint64_t ndeleting;

	node_cache cache;
	claim *claims;                   /* writes' data I/O in flight (tree.c), under lock */
	size_t nclaims, claims_cap;
	pthread_cond_t claim_cv;         /* a claim ended (with pool->lock) */

	/* the closed transaction's writes (commit_mx held): block, B bytes each */
	uint8_t **cw_buf;
	uint64_t *cw_blk;
	size_t cw_n, cw_cap, cw_alloc;
	uint8_t cw_rec[SB_SIZE];         /* its commit record */
	uint64_t cw_txg;

	/* background threads */
	pthread_mutex_t bg_lock;
	pthread_cond_t bg_cond;          /* wakes the threads */
	pthread_cond_t reap_cond;        /* reap progress, for reap_wait */
	pthread_t commit_thread, reap_thread;
	int threads_started, stopping;
	uint64_t reap_gen;               /* reaper steps done, for reap_wait */
	int reap_stuck;                  /* the reaper hit ENOSPC: needs a commit */
	int reap_rc;                     /* the reaper's last error (not ENOSPC), 0 = none */
	char reap_msg[200];
	uint32_t commit_interval_ms;
	uint64_t reap_rate;              /* blocks per second, 0 = unlimited */
};

/* Where a page-array pointer may be 0, a hole (format version 2): a page of
 * a space map that has interior levels (its counts then all 0). */
static inline int parray_hole_ok(const parray *a, uint32_t level)
{
	return level == 0 && a->type == NT_SMAP && a->depth > 0;
}

/* spacemap.c */
/* The first block of space-map page `page` with a count; UINT64_MAX when
 * every block of it is free (the page may be a hole). */
uint64_t smap_page_used(const vms_pool *p, uint64_t page);
uint64_t sm_avail(const vms_pool *p);
uint64_t sm_commit_need(const vms_pool *p);
int sm_alloc(vms_pool *p, int use_reserve, uint64_t *out);
int sm_alloc_meta(vms_pool *p, int use_reserve, uint64_t *out);
void sm_ref(vms_pool *p, uint64_t blk);
/* Drop one reference; returns 1 when the block became free. */
int sm_unref(vms_pool *p, uint64_t blk);
int sm_unref_meta(vms_pool *p, uint64_t blk);
int sm_is_fresh(const vms_pool *p, uint64_t blk);
void sm_close_txg(vms_pool *p);
void sm_txg_durable(vms_pool *p);
void sm_dirty_page(vms_pool *p, uint64_t blk);
int sm_setup(vms_pool *p, uint64_t total_blocks);
void sm_teardown(vms_pool *p);
uint32_t parray_depth_for(const vms_pool *p, uint64_t npages);
int parray_resize(vms_pool *p, parray *a, uint64_t npages);
void parray_free(parray *a);
void parray_mark(parray *a, uint64_t page);
int parray_load(vms_pool *p, parray *a, uint64_t root, uint32_t root_crc,
                int (*page_cb)(vms_pool *, uint64_t page, const uint8_t *payload));
int parrays_close(vms_pool *p);
uint64_t smap_per_page(const vms_pool *p);
uint64_t vtab_per_page(const vms_pool *p);
int vtab_grow(vms_pool *p);
void vtab_trim(vms_pool *p);
void vrec_encode(const vrec *r, uint8_t *out);
void vrec_decode(vrec *r, const uint8_t *in);
int parray_walk_blocks(vms_pool *p, const parray *a, int (*cb)(void *, uint64_t), void *ctx);

/* cache.c */
int cache_init(vms_pool *p, uint64_t cache_bytes);
void cache_destroy(vms_pool *p);
node *cache_find(vms_pool *p, uint64_t blk);
node *cache_get(vms_pool *p, uint64_t blk);  /* find + touch */
void cache_drop(vms_pool *p, uint64_t blk);
node *cache_new_dirty(vms_pool *p, uint64_t blk, uint8_t level);
int cache_insert_clean(vms_pool *p, node *n);
node *node_alloc(vms_pool *p);
void node_release(vms_pool *p, node *n);
void cache_make_clean(vms_pool *p, node *n);
void cache_pin(vms_pool *p, node *n);
void cache_unpin_all(vms_pool *p);
void cache_evict(vms_pool *p);
int node_read(vms_pool *p, node *n, uint64_t blk, uint32_t crc, int level);
int node_load_unlocked(vms_pool *p, uint64_t blk, uint32_t crc, int level);

static inline uint64_t ent_blk(const node *n, unsigned i) { return get64(n->data + NODE_HDR + 16u * i); }
static inline uint32_t ent_crc(const node *n, unsigned i) { return get32(n->data + NODE_HDR + 16u * i + 8); }
static inline uint32_t ent_flags(const node *n, unsigned i) { return get32(n->data + NODE_HDR + 16u * i + 12); }
static inline void ent_set(node *n, unsigned i, uint64_t blk, uint32_t crc, uint32_t flags)
{
	uint8_t *e = n->data + NODE_HDR + 16u * i;
	put64(e, blk);
	put32(e + 8, crc);
	put32(e + 12, flags);
}
void node_header(uint8_t *data, uint8_t type, uint8_t level, uint64_t txg);
int node_check_header(const vms_pool *p, const uint8_t *data, uint8_t type, int level, uint64_t blk);

/* tree.c */
enum { OP_WRITE, OP_ZERO, OP_TRIM };

/* One block's write, planned under the lock, done without it. */
typedef struct wblk {
	unsigned i;                      /* leaf entry (format 3: block from the chunk's start) */
	uint32_t bo, n;                  /* bytes [bo, bo+n) of the block */
	const uint8_t *src;
	uint64_t old;                    /* the entry's block (0: none); format 3: the block
	                                  * read (own or an ancestor's), a merge's source */
	uint32_t old_crc;
	uint64_t dst;                    /* where the data goes: old (in place) or a new block */
	uint32_t crc;                    /* of the block as written (data checksums) */
	int done;                        /* its data I/O succeeded */
	uint64_t own;                    /* format 3: the live version's own block (0: none) */
	uint8_t had_own, was_mapped;     /* format 3: it had a key (maybe a tombstone); the
	                                  * block read as data before */
} wblk;

extern const uint8_t engine_zero_block[VMS_MAX_BLOCK_SIZE];
/* The planned blocks' data I/O (pool->lock held, dropped meanwhile); stops
 * at the first failure, marking the blocks done. */
int write_planned(vms_pool *p, wblk *w, size_t nw);
/* Grow the array *pv of *cap elements of `elem` bytes (VMS_ENOMEM). */
int array_grow(void *pv, size_t *cap, size_t elem);
vrec *vol_find(vms_pool *p, vms_vol_id id);
int vol_slot_new(vms_pool *p, vrec **out);
void vol_mark(vms_pool *p, const vrec *r);
void vol_remove(vms_pool *p, vrec *r);
uint32_t depth_for_size(const vms_pool *p, uint64_t size);
int vindex_rebuild(vms_pool *p);
int tree_path_writable(vms_pool *p, vrec *r, uint64_t lblk, int level, node **out, int use_reserve);
/* Unhook the child at (level, lblk) from its parent (or the root); the
 * child is freed or dereferenced by the caller.  The path down to level+1
 * is cached. */
int tree_unhook(vms_pool *p, vrec *r, uint64_t lblk, int level);
int tree_ensure_path(vms_pool *p, vms_vol_id id, uint64_t lblk, int level, vrec **rout);
static inline unsigned tree_index(const vms_pool *p, uint64_t lblk, int level)
{
	return (unsigned)((lblk / p->fpow[level]) % p->fanout);
}

/* pool.c */
int pool_commit_locked(vms_pool *p);
int pool_commit_to(vms_pool *p, uint64_t target);
uint8_t *cw_add(vms_pool *p, uint64_t blk);
void pool_kick(vms_pool *p);
void pool_set_readonly(vms_pool *p, int rc, const char *what);

/* reaper.c */
void *reaper_main(void *arg);
int reaper_step(vms_pool *p, uint64_t *freed);
#define KREAP_EXCLUSIVE 2            /* reaper_step: do this step again with commit_lock
                                      * held exclusively (pool->gc_exclusive) */

#endif
