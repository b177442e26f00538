/*
 * keys.h - the versioned-key index of format version 3 pools
 * (docs/design/index-v3.md): a copy-on-write B+tree of (lblk, version)
 * keys per family (ktree.c) and the family's version tree (vtree.c).
 *
 * Internal to src/lib/engine/; include after engine_private.h.
 */
#ifndef VMS_ENGINE_KEYS_H
#define VMS_ENGINE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "engine_private.h"

/* ---- key tree (ktree.c) ---------------------------------------------------
 *
 * One B+tree per family, nodes of type NT_KEYS in the node cache, never
 * shared between families: every node has reference count 1, so making a
 * node writable is "in place when dirty (allocated in the open
 * transaction), else copy to a new block and free the old one" (deferred
 * like every free).  The tree's root is held by the family's record, a
 * vrec of kind VREC_FAMILY: r->root, r->root_crc, r->depth (tree height:
 * 0 = empty tree, 1 = the root is a leaf, ...), r->root_pending, exactly
 * like a volume tree's root, so the commit's close finishes it the same
 * way (close_dirty_nodes).  r->nkeys counts the keys.
 *
 * Keys sort by lblk, then version ascending.  Every function runs with
 * pool->lock held.  Functions that may load nodes from disk drop and retake
 * pool->lock to do it (node_load_unlocked), so vrec pointers must not be
 * kept across them: they take the family's id and find its record
 * themselves.
 */

typedef struct kt_key {
	uint64_t lblk;                   /* < 2^40 */
	uint32_t ver;
} kt_key;

typedef struct kt_val {
	uint64_t pblk;                   /* < 2^40: a pool block (>= 2), or 0 (a
	                                  * tombstone, keyvol.c) */
	uint32_t crc;
} kt_val;

static inline int kt_cmp(kt_key a, kt_key b)
{
	if (a.lblk != b.lblk)
		return a.lblk < b.lblk ? -1 : 1;
	if (a.ver != b.ver)
		return a.ver < b.ver ? -1 : 1;
	return 0;
}

/* Visit the keys k with from <= k < to in order: cb(ctx, k, v) returns 0 to
 * go on, 1 to stop (kt_walk then returns 1), or a negative error (returned).
 * cb runs with pool->lock held and must not change the tree.  Loads nodes
 * as needed; after a load it re-seeks just past the last key visited, so no
 * key is visited twice, though keys inserted meanwhile may or may not be.
 * Returns 0 when the range is exhausted. */
typedef int (*kt_walk_cb)(void *ctx, kt_key k, kt_val v);
int kt_walk(vms_pool *p, uint64_t fam, kt_key from, kt_key to, kt_walk_cb cb, void *ctx);

/* Exact lookup: 1 found (*v set), 0 absent, < 0 error.  May load nodes. */
int kt_get(vms_pool *p, uint64_t fam, kt_key k, kt_val *v);

/* Load every node kt_put or kt_del on key k may need (the path from the
 * root, and what a split or merge there touches) into the cache.  May drop
 * and retake pool->lock; on return (0) they are all cached, and stay cached
 * while pool->lock is held (a cache only evicts when a node is loaded or a
 * commit ends). */
int kt_prepare(vms_pool *p, uint64_t fam, kt_key k);

/* Insert k -> v, or overwrite k's value.  kt_prepare(k) first, without
 * dropping pool->lock since.  Allocates (copies of nodes, splits) from the
 * space map, from the reserve when use_reserve.  *old (may be NULL)
 * receives the previous value; returns 1 when k existed, 0 when inserted,
 * < 0 on error (the tree is then unchanged: ENOSPC leaves it as it was). */
int kt_put(vms_pool *p, uint64_t fam, kt_key k, kt_val v, int use_reserve, kt_val *old);

/* Remove k.  kt_prepare(k) first.  1 removed (*old set, may be NULL),
 * 0 absent, < 0 error.  May allocate (shadowing) from the reserve. */
int kt_del(vms_pool *p, uint64_t fam, kt_key k, kt_val *old);

/* Free every node of the family's tree (the family is being destroyed;
 * its keys must already be gone, or the caller released their data
 * blocks).  Bounded work per call: frees leaves from the left until
 * `budget` nodes (at least 1) are freed, plus the interior nodes they
 * empty (at most the height more); returns 1 when nodes remain, 0 when the
 * tree is empty (root 0).  r->nkeys drops by the keys of the leaves freed,
 * so the tree stays valid (kt_check) between steps.  May load nodes (each
 * leaf, for its count); shadows the path above the leftmost leaf from the
 * reserve. */
int kt_destroy_step(vms_pool *p, uint64_t fam, uint64_t budget);

/* For check.c: walk every node of the tree verifying checksums, header,
 * order of keys (strictly increasing across the whole tree), separator keys
 * against children, bounds of pblk, that r->nkeys is the number of keys;
 * cb_node(ctx, blk) for every node block, cb_key(ctx, k, v) for every key
 * (a callback's nonzero return stops the walk and is returned).  Nodes
 * are read from disk (not through the cache), except dirty ones and those
 * of the commit in flight, taken from memory; pool->lock stays held.
 * Returns 0 or the first error (VMS_ECORRUPT with a message). */
int kt_check(vms_pool *p, uint64_t fam, int (*cb_node)(void *, uint64_t),
             int (*cb_key)(void *, kt_key, kt_val), void *ctx);

/* Used by the commit's close (pool.c, close_dirty_nodes): a dirty NT_KEYS
 * interior node's children that are dirty are marked BP_DIRTY in their
 * block pointer, like a volume tree's; these give the pointer slots of an
 * NT_KEYS node so the close can fill in the children's checksums. */
unsigned kt_nchildren(const vms_pool *p, const node *n);
uint8_t *kt_child_bp(const vms_pool *p, node *n, unsigned i);   /* 16-byte block pointer */

/* Used by cache.c to verify an NT_KEYS node read from disk, after its
 * checksum and header: entry count, keys in order, pointers in bounds,
 * flags 0.  0 or VMS_ECORRUPT with a message. */
int kt_node_verify(const vms_pool *p, const uint8_t *data, uint64_t blk, int level);

/* cache.c: load an NT_KEYS node into the cache, as node_load_unlocked does
 * for a volume-tree node (drops pool->lock for the read and takes it
 * again; the caller starts its walk again). */
int node_load_keys_unlocked(vms_pool *p, uint64_t blk, uint32_t crc, int level);

/* ---- version tree (vtree.c) -----------------------------------------------
 *
 * The versions of one family in memory.  Ids are handed out downwards, so a
 * descendant always has a smaller id than its ancestors.  Built at open
 * from the volume records, changed by snapshot, clone, rollback, delete and
 * merge; persisted only through the records (each version is a vrec).
 */

typedef struct vt_node {
	uint32_t ver, parent;            /* parent 0 = the root version */
	uint32_t nchildren;
	uint32_t pre, post;              /* Euler tour numbers (valid when !t->stale) */
	uint64_t rec;                    /* engine use: id of the record holding this version
	                                  * (vt_add sets 0; the vtree never reads it) */
} vt_node;

typedef struct vtree {
	vt_node *v;                      /* sorted by ver, descending: the newest
	                                  * (smallest id) last, parents before children */
	size_t n, cap;
	int stale;                       /* pre/post need a rebuild */
} vtree;

void vt_init(vtree *t);
void vt_free(vtree *t);
/* Add version ver (must not exist) as a child of parent (0 = a root; else
 * parent must exist and be > ver). */
int vt_add(vtree *t, uint32_t ver, uint32_t parent);
/* Remove a version that has no children. */
int vt_remove(vtree *t, uint32_t ver);
/* Give every child of `from` the parent `to` (a merge). */
int vt_reparent_children(vtree *t, uint32_t from, uint32_t to);
const vt_node *vt_find(const vtree *t, uint32_t ver);
/* Make every node's pre/post valid (they are rebuilt lazily). */
int vt_number(vtree *t);
/* 1 when a == v or a is an ancestor of v, 0 otherwise (also when either
 * does not exist).  O(log n) after an O(n) rebuild following a change. */
int vt_is_ancestor(vtree *t, uint32_t a, uint32_t v);
/* The number of versions. */
size_t vt_count(const vtree *t);
/* The number of children of ver (< 0: VMS_ENOTFOUND); writes the ids of
 * the first min(cap, count) of them to out, largest id first.  O(n) at
 * worst, less when the children were created soon after ver. */
int vt_children(const vtree *t, uint32_t ver, uint32_t *out, size_t cap);
/* Verify the invariants (ids decreasing, parents exist and are larger,
 * nchildren right): 0 or VMS_ECORRUPT with a message.  For tests and check. */
int vt_check(const vtree *t);

/* ---- families and their volumes (keyvol.c) -------------------------------- */

/* A record something reads through: a live volume or a snapshot, not being
 * deleted. */
static inline int is_reader(const vrec *r)
{
	return r && (r->kind == VMS_VOL_VOLUME || r->kind == VMS_VOL_SNAPSHOT) &&
	       !(r->flags & VREC_DELETING);
}

/* qsort/bsearch order of u64s. */
static inline int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* A reader's unique blocks, as one scan of its family counted them. */
typedef struct ucount {
	uint64_t rec, blocks;
} ucount;

typedef struct kfam {
	uint64_t id;                     /* the family record's id */
	vtree vt;
	uint32_t *todo;                  /* versions the collector should look at (a stack) */
	size_t ntodo, todo_cap;
	uint32_t msrc, mdst;             /* the merge in progress: msrc's keys into mdst */
	uint32_t shadow_ver, shadow_child; /* the shadow pass (klog.c) in progress or done ... */
	uint64_t shadow_next;            /* ... its next lblk in the child's region */
	int shadow_done;
	int log_busy;                    /* a log operation runs (it may drop pool->lock) */
	unsigned log_waiters;            /* threads waiting for it (on pool->claim_cv) */
	/* k_unique_bytes counts every reader's unique blocks in one scan and
	 * keeps them while ugen stays where it was: ugen counts the changes
	 * that can move a count (a version's new key, a key dropped or turned
	 * into a tombstone or back, a reader made or deleted; fam_changed),
	 * not an overwrite of a block the volume already has a key of its own
	 * for, nor the collector's steps (they move keys and free garbage) */
	uint64_t ugen, uc_gen;
	int uc_valid;
	uint32_t gpass_ver, gpass_seq;   /* the pass over a version's keys no reader reads
	                                  * (klog.c, garbage_step) and its next log node */
	uint64_t *suspect;               /* lblks whose keys may be no one's (klog.c) */
	size_t nsuspect, suspect_cap;
	ucount *uc;                      /* sorted by rec */
	size_t nuc;
} kfam;

/* Families live until the pool closes (a reader may hold one across a
 * node load). */
kfam *fam_get(vms_pool *p, uint64_t id);
/* Ask the collector to look at version ver of family f (and wake it). */
void fam_note(vms_pool *p, kfam *f, uint32_t ver);
/* Family fid changed in a way that can move a reader's unique bytes. */
void fam_changed(vms_pool *p, uint64_t fid);
/* The pre numbers of family f's readers, sorted (malloc'd; the tree is
 * numbered by it). */
int k_readers(vms_pool *p, kfam *f, uint32_t **out, size_t *nout);
/* The versions of family f that have a delta region (VREC_DELTA),
 * malloc'd. */
int k_region_versions(vms_pool *p, kfam *f, uint32_t **out, size_t *nout);
/* A key of some lblk: its version and value. */
typedef struct kver {
	uint32_t ver;
	kt_val val;
} kver;
/* Whether version ver's key at some lblk serves a reader, given all the
 * keys keys[n] at that lblk and the readers rd[nrd] (of k_readers, the
 * tree's numbers unchanged since): 1 yes, 0 no (garbage; a version not
 * found: 1), or an error. */
int k_key_serves(kfam *f, uint32_t ver, const kver *keys, size_t n, const uint32_t *rd,
                 size_t nrd);
int fams_load(vms_pool *p);
void fams_free(vms_pool *p);

/* The volume operations of format 3 pools, called by tree.c with its
 * locks taken and the arguments checked (the records exist, kinds fit). */
int k_vol_create(vms_pool *p, uint64_t size, vms_vol_id *out);
int k_snapshot_one(vms_pool *p, vms_vol_id vol, vms_vol_id *out);
int k_clone(vms_pool *p, vms_vol_id src, vms_vol_id *out);
int k_rollback(vms_pool *p, vms_vol_id vol, vms_vol_id snap);
void k_deleted(vms_pool *p, const vrec *r);
/* The block version `id` reads at lblk (*pblk 0: a hole), from the view
 * cache when it has it.  k_lookup_tree searches the key tree (and refreshes
 * the cache): for a block whose data failed its checksum. */
int k_lookup(vms_pool *p, vms_vol_id id, uint64_t lblk, uint64_t *pblk, uint32_t *crc);
int k_lookup_tree(vms_pool *p, vms_vol_id id, uint64_t lblk, uint64_t *pblk, uint32_t *crc);

/* ---- the view cache (kview.c): what a record reads, per block ----------
 * kv_get: 1 with the cached address, 0 when not cached.  kv_put stores a
 * lookup's result (the caller checked p->kv_gen did not move during the
 * lookup).  kv_update: a volume's own key at lblk changed (now pblk, crc);
 * kv_drop: record rec's view changed as a whole (rollback) or ended. */
int kv_get(vms_pool *p, uint64_t rec, uint64_t lblk, uint64_t *pblk, uint32_t *crc);
void kv_put(vms_pool *p, uint64_t rec, uint64_t lblk, uint64_t pblk, uint32_t crc);
void kv_update(vms_pool *p, uint64_t rec, uint64_t lblk, uint64_t pblk, uint32_t crc);
void kv_drop(vms_pool *p, uint64_t rec);
/* kv_get of what record rec read when p->kv_gen was gen: 0 when its chunk
 * changed since (or is not cached). */
int kv_get_as_of(vms_pool *p, uint64_t rec, uint64_t gen, uint64_t lblk, uint64_t *pblk,
                 uint32_t *crc);
void kv_free(vms_pool *p);
/* The cache's own structure: every used slot on its hash chain and on its
 * record's list, each list's links both ways, the count.  0 or VMS_EIO
 * with a message (tests). */
int kv_verify(vms_pool *p);
/* modify_leaf's counterpart: apply op to the claimed blocks [*pos>>bshift, hi). */
int k_modify_chunk(vms_pool *p, vms_vol_id id, int op, const uint8_t *src, uint64_t off,
                   uint64_t *pos, uint64_t end, uint64_t hi, wblk *w);
int k_unique_bytes(vms_pool *p, vms_vol_id vol, uint64_t *out);
int k_diff(vms_pool *p, vms_vol_id from, vms_vol_id to, vms_extent_cb cb, void *ctx);
/* ---- version logs and the collector (klog.c) ----------------------------- */

/* Keys at lblk >= LOG_BASE are not data: (LOG_BASE + version, seq) ->
 * the version's log node number seq. */
#define LOG_BASE (1ull << 39)

/* A version with VREC_DELTA keeps the keys it writes in its delta region,
 * (DELTA_BASE + version, lblk) -> (pblk, crc), contiguous and apart from
 * the family's other keys (docs/design/index-v3.md, "The live version's
 * keys apart"), until the collector flushes them to (lblk, version).  Data
 * keys have lblk < DELTA_BASE (and < 2^32: 16 TiB at 4 KiB blocks). */
#define DELTA_BASE (1ull << 38)
static inline kt_key delta_key(uint32_t ver, uint64_t lblk)
{
	return (kt_key){DELTA_BASE + ver, (uint32_t)lblk};
}
/* 0 a data key, 1 a delta-region key, 2 a log key */
static inline int key_region(uint64_t lblk)
{
	return lblk >= LOG_BASE ? 2 : lblk >= DELTA_BASE;
}

/* Live version ver has just put its own key at lblk, where it read an
 * ancestor's data before (anc_data): when its parent is no reader and ver
 * its only child, the parent's key there is garbage (dropped, its block
 * freed); when that parent has other children but none a reader without
 * keys, the key ver read may be no one's now: lblk goes to the family's
 * queue for the collector (klog.c, "keys no reader reads").  Best effort:
 * the collector finds what is left when the parent merges or is noted. */
void klog_shadowed(vms_pool *p, uint64_t fid, uint32_t ver, uint64_t lblk, int anc_data);
/* Version ver of family fid is read no more (its volume or snapshot was
 * deleted, or rolled back): the collector looks at it and at the versions
 * above it whose keys it may have been the only one to read. */
void klog_reader_gone(vms_pool *p, uint64_t fid, uint32_t ver);

/* Append lblk to version ver's log (before inserting its key). */
int klog_append(vms_pool *p, uint64_t fid, uint32_t ver, uint64_t lblk);
/* At a commit's close, before the key trees are finished. */
int klog_close(vms_pool *p);
int klog_verify(const vms_pool *p, const uint8_t *data, uint64_t blk);
void klog_node_info(const uint8_t *data, uint64_t *fam, uint32_t *ver, uint32_t *seq, unsigned *n);
uint64_t klog_entry(const uint8_t *data, unsigned i);
int node_load_log_unlocked(vms_pool *p, uint64_t blk, uint32_t crc);
/* The collector: one bounded step (reaper.c's reaper_step for format 3);
 * KREAP_EXCLUSIVE: again with commit_lock exclusive. */
int k_reap_step(vms_pool *p, uint64_t *freed);
/* Families where the collector has versions left to look at. */
uint64_t k_reap_pending(vms_pool *p);

#endif
