/*
 * pool.c - pool create/open/commit/close, the commit records, statistics
 * and the periodic commit thread.
 *
 * Commit of the open transaction T, one commit at a time (commit_mx):
 *   1. close T (commit_lock exclusive, pool->lock; no I/O, cost O(dirty
 *      metadata)): serialize dirty index nodes bottom-up into buffers,
 *      filling each parent's entry with the child's crc32c and the volume
 *      records' root checksums, and pin them in the cache; relocate the
 *      changed volume-table and space-map pages (to a fixpoint, see
 *      spacemap.c) and serialize them; encode the commit record; release
 *      the blocks allocated and freed in T; open T+1;
 *   2. without the exclusive lock (I/O of T+1 goes on): write the buffers,
 *      sync, write the record into slot (T & 1), sync;
 *   3. under pool->lock: record T is durable: release the blocks freed in
 *      T-1, unpin T's nodes.
 * Data blocks were written before the close by the I/O path, so step 2's
 * first sync orders them before the record.  Any failure turns the pool
 * read-only (VMS_EROFS for changes, reads go on) until it is reopened,
 * which recovers the last good commit.  A flush waits for the commit that
 * covers the transaction its writes went to (group commit).
 *
 * Open reads both commit records, keeps the valid one with the highest
 * txg, checks every page of the space map and volume table, and then
 * commits once at once (same content, txg+1) so that the two records on
 * disk are the state it opened and its successor: blocks reachable only
 * from an older record are never reused while that record survives.
 * A read-only open (opts->read_only) skips that commit and starts no
 * background thread: it never writes to the pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

typedef struct sb {
	uint32_t version, block_size, flags;
	uint8_t uuid[16];
	uint64_t txg, total_blocks;
	uint64_t smap_root, vtab_root, vtab_npages;
	uint32_t smap_crc, smap_depth, vtab_crc, vtab_depth;
	uint64_t next_id, reserve, meta_blocks;
	int64_t time;
} sb;

static void sb_encode(const sb *s, uint8_t *o)
{
	memset(o, 0, SB_SIZE);
	memcpy(o, SB_MAGIC, 8);
	put32(o + 8, s->version);
	put32(o + 12, s->block_size);
	put32(o + 16, s->flags);
	put32(o + 20, SB_SIZE);
	memcpy(o + 24, s->uuid, 16);
	put64(o + 40, s->txg);
	put64(o + 48, s->total_blocks);
	put64(o + 56, s->smap_root);
	put32(o + 64, s->smap_crc);
	put32(o + 68, s->smap_depth);
	put64(o + 72, s->vtab_root);
	put32(o + 80, s->vtab_crc);
	put32(o + 84, s->vtab_depth);
	put64(o + 88, s->vtab_npages);
	put64(o + 96, s->next_id);
	put64(o + 104, s->reserve);
	put64(o + 112, (uint64_t)s->time);
	put64(o + 120, s->meta_blocks);
	put32(o + SB_SIZE - 4, vms_crc32c(0, o, SB_SIZE - 4));
}

/* 0 = valid, else why not (1 magic, 2 checksum, 3 version, 4 geometry). */
static int sb_decode(sb *s, const uint8_t *i)
{
	if (memcmp(i, SB_MAGIC, 8) != 0)
		return 1;
	if (get32(i + SB_SIZE - 4) != vms_crc32c(0, i, SB_SIZE - 4) || get32(i + 20) != SB_SIZE)
		return 2;
	s->version = get32(i + 8);
	if (s->version < SB_VERSION_MIN || s->version > SB_VERSION_KEYS)
		return 3;
	s->block_size = get32(i + 12);
	s->flags = get32(i + 16);
	memcpy(s->uuid, i + 24, 16);
	s->txg = get64(i + 40);
	s->total_blocks = get64(i + 48);
	s->smap_root = get64(i + 56);
	s->smap_crc = get32(i + 64);
	s->smap_depth = get32(i + 68);
	s->vtab_root = get64(i + 72);
	s->vtab_crc = get32(i + 80);
	s->vtab_depth = get32(i + 84);
	s->vtab_npages = get64(i + 88);
	s->next_id = get64(i + 96);
	s->reserve = get64(i + 104);
	s->time = (int64_t)get64(i + 112);
	s->meta_blocks = get64(i + 120);
	uint32_t bs = s->block_size;
	if (bs < VMS_MIN_BLOCK_SIZE || bs > VMS_MAX_BLOCK_SIZE || (bs & (bs - 1)) ||
	    s->total_blocks < 8 || s->total_blocks > (1ull << 40) || (s->flags & ~(SB_FLAG_DATA_CSUM | SB_FLAG_KEYS)) ||
	    (!(s->flags & SB_FLAG_KEYS) != (s->version < SB_VERSION_KEYS)) ||
	    s->smap_root < 2 || s->smap_root >= s->total_blocks || s->vtab_root < 2 ||
	    s->vtab_root >= s->total_blocks || s->vtab_npages == 0 ||
	    s->vtab_npages > s->total_blocks || s->smap_depth > MAX_DEPTH ||
	    s->vtab_depth > MAX_DEPTH || s->next_id == 0 || s->meta_blocks > s->total_blocks)
		return 4;
	return 0;
}

static int set_geometry(vms_pool *p, uint32_t bs)
{
	p->bs = bs;
	p->bshift = (uint32_t)__builtin_ctz(bs);
	p->fanout = bs / 16 - 1;
	p->fpow[0] = 1;
	for (unsigned l = 1; l <= MAX_DEPTH; l++) {
		uint64_t prev = p->fpow[l - 1];
		p->fpow[l] = prev > UINT64_MAX / p->fanout ? UINT64_MAX : prev * p->fanout;
	}
	return 0;
}

void pool_set_readonly(vms_pool *p, int rc, const char *what)
{
	(void)rc;
	if (!p->readonly) {
		p->readonly = 1;
		snprintf(p->ro_reason, sizeof(p->ro_reason), "%s: %s", what, vms_error_last());
	}
}

void pool_kick(vms_pool *p)
{
	pthread_mutex_lock(&p->bg_lock);
	pthread_cond_broadcast(&p->bg_cond);
	pthread_mutex_unlock(&p->bg_lock);
}

/* A B-byte buffer in the closed transaction's write list, to be written at
 * block blk; NULL (error set) when out of memory.  commit_mx held. */
uint8_t *cw_add(vms_pool *p, uint64_t blk)
{
	if (p->cw_n == p->cw_cap) {
		size_t nc = p->cw_cap ? p->cw_cap * 2 : 64;
		uint8_t **nb = realloc(p->cw_buf, nc * sizeof(*nb));
		if (nb)
			p->cw_buf = nb;
		uint64_t *nk = realloc(p->cw_blk, nc * sizeof(*nk));
		if (nk)
			p->cw_blk = nk;
		if (!nb || !nk) {
			vms_error_set(VMS_ENOMEM, "out of memory for a commit");
			return NULL;
		}
		p->cw_cap = nc;
	}
	if (p->cw_n == p->cw_alloc) {
		if (!(p->cw_buf[p->cw_n] = malloc(p->bs))) {
			vms_error_set(VMS_ENOMEM, "out of memory for a commit");
			return NULL;
		}
		p->cw_alloc++;
	}
	p->cw_blk[p->cw_n] = blk;
	return p->cw_buf[p->cw_n++];
}

/* Give back the buffers of a large commit, keep a few for the next one. */
static void cw_reset(vms_pool *p)
{
	while (p->cw_alloc > 256)
		free(p->cw_buf[--p->cw_alloc]);
	p->cw_n = 0;
}

static void cw_free(vms_pool *p)
{
	while (p->cw_alloc)
		free(p->cw_buf[--p->cw_alloc]);
	free(p->cw_buf);
	free(p->cw_blk);
	p->cw_buf = NULL;
	p->cw_blk = NULL;
	p->cw_n = p->cw_cap = 0;
}

/* Serialize every dirty index node, children before parents, into the
 * write list, and pin it until the write is durable. */
static int close_dirty_nodes(vms_pool *p)
{
	for (unsigned l = 0; l < MAX_DEPTH; l++) {
		node *s = &p->cache.dirty[l];
		while (s->next != s) {
			node *n = s->next;
			/* a key-tree node has a variable number of wider entries,
			 * each starting with a block pointer (keys.h) */
			int keys = n->data[4] == NT_KEYS;
			unsigned nc = l == 0 ? 0 : keys ? kt_nchildren(p, n) : p->fanout;
			for (unsigned i = 0; i < nc; i++) {
				uint8_t *bp = keys ? kt_child_bp(p, n, i) : n->data + NODE_HDR + 16u * i;
				if (!(get32(bp + 12) & BP_DIRTY))
					continue;
				node *c = cache_find(p, get64(bp));
				if (!c || c->dirty)
					return vms_error_set(VMS_EIO, "internal: dirty child %llu of node %llu lost",
					                     (unsigned long long)get64(bp),
					                     (unsigned long long)n->blk);
				put64(bp, c->blk);
				put32(bp + 8, c->crc);
				put32(bp + 12, 0);
			}
			put64(n->data + 8, p->txg);
			n->crc = vms_crc32c(0, n->data, p->bs);
			uint8_t *buf = cw_add(p, n->blk);
			if (!buf)
				return VMS_ENOMEM;
			memcpy(buf, n->data, p->bs);
			cache_pin(p, n);
		}
	}
	for (uint64_t s = 0; s < p->nslots; s++) {
		vrec *r = &p->recs[s];
		if (!r->id || !r->root_pending)
			continue;
		node *c = cache_find(p, r->root);
		if (!c || c->dirty)
			return vms_error_set(VMS_EIO, "internal: root %llu of volume %llu lost",
			                     (unsigned long long)r->root, (unsigned long long)r->id);
		r->root_crc = c->crc;
		r->root_pending = 0;
		vol_mark(p, r);
	}
	return 0;
}

static void record_encode(vms_pool *p, uint8_t *buf)
{
	sb s = {
		.version = p->keys ? SB_VERSION_KEYS : SB_VERSION, .block_size = p->bs,
		.flags = (p->data_checksums ? SB_FLAG_DATA_CSUM : 0) | (p->keys ? SB_FLAG_KEYS : 0),
		.txg = p->txg, .total_blocks = p->total_blocks,
		.smap_root = p->smap.blk[p->smap.depth][0], .smap_crc = p->smap.crc[p->smap.depth][0],
		.smap_depth = p->smap.depth,
		.vtab_root = p->vtab.blk[p->vtab.depth][0], .vtab_crc = p->vtab.crc[p->vtab.depth][0],
		.vtab_depth = p->vtab.depth, .vtab_npages = p->vtab.n[0],
		.next_id = p->next_id, .reserve = p->reserve, .meta_blocks = p->meta_blocks,
		.time = (int64_t)time(NULL),
	};
	memcpy(s.uuid, p->uuid, 16);
	sb_encode(&s, buf);
}

/*
 * Close the open transaction T (commit_lock exclusive, pool->lock held):
 * serialize its dirty index nodes and page-array pages into the write list
 * and its commit record into cw_rec, end the deferral of blocks allocated
 * and freed in T, and open T+1.  No I/O.  Returns 1 when there was nothing
 * to commit, 0 when T is closed and must be written (commit_write), or an
 * error (the pool is then read-only).
 */
static int commit_close(vms_pool *p)
{
	int rc;
	if (p->readonly)
		return vms_error_set(VMS_EROFS, "pool is read-only: %s", p->ro_reason);
	/* with nothing changed, a commit still ends the deferral of freed blocks */
	if (!p->dirty && !p->defer_now.n && !p->defer_cur.n && !p->defer_prev.n)
		return 1;
	p->cw_n = 0;
	if ((p->keys && (rc = klog_close(p)) < 0) || (rc = close_dirty_nodes(p)) < 0 ||
	    (rc = parrays_close(p)) < 0) {
		pool_set_readonly(p, rc, "commit failed");
		return vms_error_wrap(rc, "commit of txg %llu", (unsigned long long)p->txg);
	}
	record_encode(p, p->cw_rec);
	p->cw_txg = p->txg;
	sm_close_txg(p);
	p->txg++;
	p->dirty = 0;
	return 0;
}

/* Write the closed transaction (commit_mx held; no other lock needed: the
 * write list and record are the commit's own, and their blocks cannot be
 * reused before commit_finish).  Data blocks were written before the close,
 * so the first sync orders them and the metadata before the record. */
static int commit_write(vms_pool *p)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < p->cw_n; i++)
		rc = p->io->write(p->io, p->cw_buf[i], p->bs, p->cw_blk[i] << p->bshift);
	if (rc == 0)
		rc = p->io->sync(p->io);
	if (rc == 0)
		rc = p->io->write(p->io, p->cw_rec, SB_SIZE, (p->cw_txg & 1) << p->bshift);
	if (rc == 0)
		rc = p->io->sync(p->io);
	return rc;
}

/* pool->lock held. */
static int commit_finish(vms_pool *p, int rc)
{
	cw_reset(p);
	if (rc < 0) {
		/* pinned nodes stay pinned: the disk does not hold them */
		pool_set_readonly(p, rc, "commit failed");
		return vms_error_wrap(rc, "commit of txg %llu", (unsigned long long)p->cw_txg);
	}
	p->durable_txg = p->cw_txg;
	sm_txg_durable(p);
	cache_unpin_all(p);
	cache_evict(p);
	return 0;
}

/* A whole commit by a caller that holds commit_mx, commit_lock exclusively
 * and pool->lock (or runs alone: create, open). */
int pool_commit_locked(vms_pool *p)
{
	int rc = commit_close(p);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	return commit_finish(p, commit_write(p));
}

/*
 * Make txg `target` (and everything before it) durable.  Commits are one at
 * a time (commit_mx); a caller whose target an earlier commit covered
 * returns at once, so concurrent flushes share one commit.  The exclusive
 * section is commit_close only; the writes and syncs run while I/O goes on
 * in the next transaction.  Called without locks.
 */
int pool_commit_to(vms_pool *p, uint64_t target)
{
	int rc;
	pthread_mutex_lock(&p->commit_mx);
	pthread_mutex_lock(&p->lock);
	int covered = p->durable_txg >= target;
	pthread_mutex_unlock(&p->lock);
	if (covered) {
		pthread_mutex_unlock(&p->commit_mx);
		return 0;
	}
	pthread_rwlock_wrlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
	rc = commit_close(p);
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	if (rc == 0) {
		rc = commit_write(p);
		pthread_mutex_lock(&p->lock);
		rc = commit_finish(p, rc);
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&p->commit_mx);
	return rc < 0 ? rc : 0;
}

int vms_pool_commit(vms_pool *p)
{
	pthread_mutex_lock(&p->lock);
	uint64_t target = p->txg; /* everything up to now, open txg included */
	pthread_mutex_unlock(&p->lock);
	return pool_commit_to(p, target);
}

/* ---- background commit ------------------------------------------------------ */

static void *commit_main(void *arg)
{
	vms_pool *p = arg;
	pthread_mutex_lock(&p->bg_lock);
	while (!p->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)p->commit_interval_ms * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		int w = 0;
		while (!p->stopping && w != ETIMEDOUT)
			w = pthread_cond_timedwait(&p->bg_cond, &p->bg_lock, &ts);
		if (p->stopping)
			break;
		pthread_mutex_unlock(&p->bg_lock);
		(void)vms_pool_commit(p); /* a failure turns the pool read-only */
		pthread_mutex_lock(&p->bg_lock);
	}
	pthread_mutex_unlock(&p->bg_lock);
	return NULL;
}

static int start_threads(vms_pool *p)
{
	if (pthread_create(&p->reap_thread, NULL, reaper_main, p) != 0)
		return vms_error_set(VMS_ENOMEM, "cannot start the reaper thread");
	p->threads_started = 1;
	if (p->commit_interval_ms != UINT32_MAX) {
		if (pthread_create(&p->commit_thread, NULL, commit_main, p) != 0)
			return vms_error_set(VMS_ENOMEM, "cannot start the commit thread");
		p->threads_started = 2;
	}
	return 0;
}

static void stop_threads(vms_pool *p)
{
	pthread_mutex_lock(&p->bg_lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->bg_cond);
	pthread_mutex_unlock(&p->bg_lock);
	if (p->threads_started >= 1)
		pthread_join(p->reap_thread, NULL);
	if (p->threads_started >= 2)
		pthread_join(p->commit_thread, NULL);
	p->threads_started = 0;
}

/* ---- create / open / close ----------------------------------------------------- */

static vms_pool *pool_new(vms_io *io, const vms_pool_options *opts)
{
	vms_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->io = io;
	p->lock_fd = -1;
	pthread_mutex_init(&p->commit_mx, NULL);
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* commit must not starve behind a stream of readers */
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&p->commit_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->bg_lock, NULL);
	pthread_cond_init(&p->bg_cond, NULL);
	pthread_cond_init(&p->reap_cond, NULL);
	pthread_cond_init(&p->claim_cv, NULL);
	p->commit_interval_ms = opts && opts->commit_interval_ms ? opts->commit_interval_ms : 5000;
	p->smap.type = NT_SMAP;
	p->vtab.type = NT_VTAB;
	return p;
}

static void pool_free(vms_pool *p)
{
	if (!p)
		return;
	stop_threads(p);
	cache_destroy(p);
	sm_teardown(p);
	free(p->recs);
	free(p->vidx);
	free(p->free_slots);
	free(p->claims);
	fams_free(p);
	kv_free(p);
	cw_free(p);
	if (p->io)
		p->io->close(p->io);
	if (p->lock_fd >= 0)
		close(p->lock_fd);
	pthread_rwlock_destroy(&p->commit_lock);
	pthread_mutex_destroy(&p->commit_mx);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->bg_lock);
	pthread_cond_destroy(&p->bg_cond);
	pthread_cond_destroy(&p->reap_cond);
	pthread_cond_destroy(&p->claim_cv);
	free(p);
}

static uint64_t default_reserve(uint64_t total, const vms_pool_options *opts)
{
	uint64_t r = opts && opts->reserve_blocks ? opts->reserve_blocks : total / 500;
	if (!(opts && opts->reserve_blocks) && r < 64)
		r = 64;
	if (r > total / 4)
		r = total / 4;
	return r;
}

int vms_pool_create(vms_pool **out, vms_io *io, uint64_t size, const vms_pool_options *opts)
{
	int rc;
	uint32_t bs = opts && opts->block_size ? opts->block_size : 4096;
	vms_pool *p = NULL;
	*out = NULL;
	if (bs < VMS_MIN_BLOCK_SIZE || bs > VMS_MAX_BLOCK_SIZE || (bs & (bs - 1))) {
		io->close(io);
		return vms_error_set(VMS_EINVAL, "block size %u: must be a power of two in 4096..65536", bs);
	}
	uint64_t total = size / bs;
	if (total < 64 || total > (1ull << 40)) {
		io->close(io);
		return vms_error_set(VMS_EINVAL, "pool size %llu: must hold 64 to 2^40 blocks of %u bytes",
		                     (unsigned long long)size, bs);
	}
	if (!(p = pool_new(io, opts))) {
		io->close(io);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	if ((rc = set_geometry(p, bs)) < 0)
		goto done;
	p->data_checksums = opts && opts->data_checksums;
	if (opts && opts->index > VMS_INDEX_KEYS) {
		rc = vms_error_set(VMS_EINVAL, "index kind %u: must be VMS_INDEX_RADIX or VMS_INDEX_KEYS",
		                   opts->index);
		goto done;
	}
	p->keys = opts && opts->index == VMS_INDEX_KEYS;
	uint64_t cur;
	if ((rc = io->size(io, &cur)) < 0)
		goto done;
	if (cur != total * bs && (rc = io->resize(io, total * bs)) < 0) {
		if (cur < total * bs)
			goto done;
		rc = 0; /* a larger block device: use the first `size` bytes */
	}
	p->format_version = p->keys ? SB_VERSION_KEYS : SB_VERSION;
	if (getrandom(p->uuid, sizeof(p->uuid), 0) != (ssize_t)sizeof(p->uuid)) {
		rc = vms_error_set_errno(errno, "getrandom");
		goto done;
	}
	p->reserve = default_reserve(total, opts);
	p->txg = 1;
	p->next_id = 1;
	if ((rc = cache_init(p, opts ? opts->cache_bytes : 0)) < 0 || (rc = sm_setup(p, total)) < 0)
		goto done;
	p->ref[0] = p->ref[1] = 1;
	p->nfree -= 2;
	if ((rc = vtab_grow(p)) < 0)
		goto done;
	/* two commits: both records valid from the start */
	p->dirty = 1;
	if ((rc = pool_commit_locked(p)) < 0)
		goto done;
	p->dirty = 1;
	if ((rc = pool_commit_locked(p)) < 0 || (rc = start_threads(p)) < 0)
		goto done;
	*out = p;
done:
	if (rc < 0)
		pool_free(p);
	return rc;
}

static int smap_page_load(vms_pool *p, uint64_t j, const uint8_t *payload)
{
	uint64_t per = smap_per_page(p);
	for (uint64_t i = 0; i < per; i++) {
		uint64_t b = j * per + i;
		uint32_t v = get32(payload + 4 * i);
		if (b >= p->total_blocks) {
			if (v)
				return vms_error_set(VMS_ECORRUPT, "space map: count past the pool's end");
			continue;
		}
		p->ref[b] = v;
	}
	return 0;
}

/* A record's fields in bounds for the pool's format (2: radix trees; 3:
 * families, versions and their key trees, keys.h). */
static int vrec_valid(const vms_pool *p, const vrec *r)
{
	if ((r->root && (r->root < 2 || r->root >= p->total_blocks)) || r->id >= p->next_id ||
	    (r->flags & ~(VREC_DELETING | VREC_HIDDEN | VREC_MERGING | VREC_MERGE_DST | VREC_DELTA)) ||
	    r->depth > MAX_DEPTH ||
	    ((r->flags & (VREC_MERGING | VREC_MERGE_DST | VREC_DELTA)) && !p->keys))
		return 0;
	if (r->kind == VREC_FAMILY)
		return p->keys && r->fam == 0 && r->size == 0 && (r->root == 0) == (r->depth == 0) &&
		       (r->flags & VREC_HIDDEN) && r->parent_ver == 0;
	if (r->kind != VMS_VOL_VOLUME && r->kind != VMS_VOL_SNAPSHOT &&
	    !(p->keys && r->kind == VREC_INTERIOR))
		return 0;
	if (r->size == 0 || r->size > VMS_MAX_VOLUME_SIZE || r->size % VMS_SECTOR)
		return 0;
	if (p->keys)
		return r->fam != 0 && r->fam < p->next_id && r->ver != 0 && r->root == 0 && r->depth == 0 &&
		       (r->parent_ver == 0 || r->parent_ver > r->ver) &&
		       (r->kind != VREC_INTERIOR || (r->flags & VREC_HIDDEN));
	return r->depth >= 1 && r->depth >= depth_for_size(p, r->size) && r->fam == 0 &&
	       r->ver == 0 && r->parent_ver == 0 && r->nkeys == 0 && r->log_seq == 0;
}

static int vtab_page_load(vms_pool *p, uint64_t j, const uint8_t *payload)
{
	uint64_t per = vtab_per_page(p);
	for (uint64_t i = 0; i < per; i++) {
		vrec *r = &p->recs[j * per + i];
		vrec_decode(r, payload + VREC_SIZE * i);
		if (!r->id)
			continue;
		if (!vrec_valid(p, r))
			return vms_error_set(VMS_ECORRUPT, "volume table: bad record for volume %llu",
			                     (unsigned long long)r->id);
	}
	return 0;
}

static int read_records(vms_pool *p, sb *best)
{
	uint8_t buf[2][SB_SIZE];
	sb s[2];
	int why[2], rc;
	if ((rc = p->io->read(p->io, buf[0], SB_SIZE, 0)) < 0)
		return rc;
	why[0] = sb_decode(&s[0], buf[0]);
	why[1] = 1;
	static const uint32_t sizes[] = {4096, 8192, 16384, 32768, 65536};
	for (unsigned k = 0; k < 5; k++) {
		uint32_t bs = why[0] == 0 ? s[0].block_size : sizes[k];
		if ((rc = p->io->read(p->io, buf[1], SB_SIZE, bs)) < 0)
			return rc;
		why[1] = sb_decode(&s[1], buf[1]);
		if (why[1] == 0 && s[1].block_size != bs)
			why[1] = 4;
		if (why[1] != 1 || why[0] == 0)
			break;
	}
	int pick = -1;
	for (int k = 0; k < 2; k++)
		if (why[k] == 0 && (s[k].txg & 1) == (uint64_t)k && (pick < 0 || s[k].txg > s[pick].txg))
			pick = k;
	if (pick < 0) {
		if (why[0] == 1 && why[1] == 1)
			return vms_error_set(VMS_ECORRUPT, "not a vmsnap pool (no commit record magic)");
		if (why[0] == 3 || why[1] == 3)
			return vms_error_set(VMS_ENOTSUP, "unsupported pool format version %u (this build reads "
			                     "%u to %u)", why[0] == 3 ? s[0].version : s[1].version,
			                     SB_VERSION_MIN, SB_VERSION);
		return vms_error_set(VMS_ECORRUPT, "both commit records are damaged");
	}
	*best = s[pick];
	return 0;
}

static int pool_load(vms_pool *p, const vms_pool_options *opts)
{
	sb s = {0};  /* read_records fills it on success; the zero init quiets -O2 */
	int rc;
	uint64_t cur;
	if ((rc = read_records(p, &s)) < 0)
		return rc;
	if ((rc = set_geometry(p, s.block_size)) < 0)
		return rc;
	if ((rc = p->io->size(p->io, &cur)) < 0)
		return rc;
	if (cur < s.total_blocks * s.block_size)
		return vms_error_set(VMS_ECORRUPT, "pool truncated: %llu bytes, expected %llu",
		                     (unsigned long long)cur,
		                     (unsigned long long)(s.total_blocks * s.block_size));
	memcpy(p->uuid, s.uuid, 16);
	p->format_version = s.version;
	p->data_checksums = !!(s.flags & SB_FLAG_DATA_CSUM);
	p->keys = !!(s.flags & SB_FLAG_KEYS);
	p->txg = s.txg + 1;
	p->durable_txg = s.txg;
	p->next_id = s.next_id;
	p->reserve = s.reserve;
	if (opts && opts->reserve_blocks)
		p->reserve = default_reserve(s.total_blocks, opts);
	if ((rc = cache_init(p, opts ? opts->cache_bytes : 0)) < 0 ||
	    (rc = sm_setup(p, s.total_blocks)) < 0)
		return rc;
	if (p->smap.depth != s.smap_depth || parray_depth_for(p, s.vtab_npages) != s.vtab_depth)
		return vms_error_set(VMS_ECORRUPT, "commit record: page array depth mismatch");
	uint64_t per = vtab_per_page(p);
	if (!(p->recs = calloc(s.vtab_npages * per, sizeof(vrec))))
		return vms_error_set(VMS_ENOMEM, "out of memory for the volume table");
	p->nslots = s.vtab_npages * per;
	if ((rc = parray_resize(p, &p->vtab, s.vtab_npages)) < 0 ||
	    (rc = parray_load(p, &p->smap, s.smap_root, s.smap_crc, smap_page_load)) < 0 ||
	    (rc = parray_load(p, &p->vtab, s.vtab_root, s.vtab_crc, vtab_page_load)) < 0)
		return rc;
	if (p->ref[0] != 1 || p->ref[1] != 1)
		return vms_error_set(VMS_ECORRUPT, "space map: commit record blocks not held");
	p->nfree = 0;
	for (uint64_t b = 0; b < p->total_blocks; b++)
		if (!p->ref[b])
			p->nfree++;
	p->meta_blocks = s.meta_blocks;
	if ((rc = vindex_rebuild(p)) < 0)
		return rc;
	for (size_t i = 1; i < p->nvidx; i++)
		if (p->vidx[i].id == p->vidx[i - 1].id)
			return vms_error_set(VMS_ECORRUPT, "volume table: volume %llu twice",
			                     (unsigned long long)p->vidx[i].id);
	if (p->keys && (rc = fams_load(p)) < 0)
		return rc;
	return 0;
}

int vms_pool_open(vms_pool **out, vms_io *io, const vms_pool_options *opts)
{
	int rc;
	*out = NULL;
	vms_pool *p = pool_new(io, opts);
	if (!p) {
		io->close(io);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	if ((rc = pool_load(p, opts)) < 0)
		goto done;
	if (opts && opts->read_only) {
		p->readonly = p->opened_readonly = 1;
		snprintf(p->ro_reason, sizeof(p->ro_reason), "opened read-only");
		*out = p;
		return 0;
	}
	p->dirty = 1; /* see the file comment: records = opened state + successor */
	if ((rc = pool_commit_locked(p)) < 0 || (rc = start_threads(p)) < 0)
		goto done;
	*out = p; /* the reaper starts with a look at the deleted volumes */
done:
	if (rc < 0)
		pool_free(p);
	return rc;
}

/* Exclusive lock for a writer; shared for read-only opens (several may look
 * at a pool at once, none while a writer has it). */
static int lock_file(const char *path, int shared, int *fd_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vms_error_set_errno(errno, "open %s", path);
	if (flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return vms_error_set(VMS_EBUSY, "pool %s is in use by another process", path);
		return vms_error_set_errno(e, "flock %s", path);
	}
	*fd_out = fd;
	return 0;
}

int vms_pool_create_file(vms_pool **out, const char *path, uint64_t size, const vms_pool_options *opts)
{
	vms_io *io;
	int fd = -1, rc;
	*out = NULL;
	unsigned fl = VMS_IO_CREATE | (opts && opts->direct_io ? VMS_IO_DIRECT : 0u);
	if ((rc = vms_io_file_open_flags(&io, path, fl)) < 0)
		return rc;
	if ((rc = lock_file(path, 0, &fd)) < 0) {
		io->close(io);
		return rc;
	}
	if ((rc = vms_pool_create(out, io, size, opts)) < 0) {
		unlink(path); /* we created it: leave nothing behind */
		close(fd);
		return rc;
	}
	(*out)->lock_fd = fd;
	return 0;
}

int vms_pool_open_file(vms_pool **out, const char *path, const vms_pool_options *opts)
{
	vms_io *io;
	int fd = -1, rc;
	*out = NULL;
	int ro = opts && opts->read_only;
	if ((rc = lock_file(path, ro, &fd)) < 0)
		return rc;
	unsigned fl = (ro ? VMS_IO_READONLY : 0u) | (opts && opts->direct_io ? VMS_IO_DIRECT : 0u);
	if ((rc = vms_io_file_open_flags(&io, path, fl)) < 0) {
		close(fd);
		return rc;
	}
	if ((rc = vms_pool_open(out, io, opts)) < 0) {
		close(fd);
		return vms_error_wrap(rc, "pool %s", path);
	}
	(*out)->lock_fd = fd;
	return 0;
}

int vms_pool_close(vms_pool *p)
{
	if (!p)
		return 0;
	stop_threads(p);
	int rc = 0;
	pthread_mutex_lock(&p->commit_mx);
	pthread_rwlock_wrlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
	if (p->dirty || !p->readonly)
		rc = pool_commit_locked(p);
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	pthread_mutex_unlock(&p->commit_mx);
	pool_free(p);
	return rc;
}

int vms_pool_grow(vms_pool *p, uint64_t size)
{
	int rc = 0;
	pthread_mutex_lock(&p->commit_mx);
	pthread_rwlock_wrlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
	uint64_t total = size / p->bs, cur;
	if (p->readonly) {
		rc = vms_error_set(VMS_EROFS, "pool is read-only: %s", p->ro_reason);
		goto done;
	}
	if (total < p->total_blocks || total > (1ull << 40)) {
		rc = vms_error_set(VMS_EINVAL, "cannot grow the pool from %llu to %llu bytes",
		                   (unsigned long long)(p->total_blocks * p->bs), (unsigned long long)size);
		goto done;
	}
	if (total == p->total_blocks)
		goto done;
	if ((rc = p->io->size(p->io, &cur)) < 0)
		goto done;
	if (cur < total * p->bs && (rc = p->io->resize(p->io, total * p->bs)) < 0)
		goto done;
	if ((rc = sm_setup(p, total)) < 0) {
		pool_set_readonly(p, rc, "grow failed");
		goto done;
	}
	p->dirty = 1;
	rc = pool_commit_locked(p);
done:
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	pthread_mutex_unlock(&p->commit_mx);
	return rc;
}

int vms_pool_stats_get(vms_pool_stats *out, vms_pool *p)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->lock);
	out->block_size = p->bs;
	out->total_blocks = p->total_blocks;
	out->free_blocks = p->nfree;
	out->meta_blocks = p->meta_blocks;
	out->data_blocks = p->total_blocks - p->nfree - p->meta_blocks - 2;
	out->reserve_blocks = p->reserve;
	for (size_t i = 0; i < p->nvidx; i++) {
		const vrec *r = &p->recs[p->vidx[i].slot];
		if (r->flags & VREC_DELETING)
			out->deleting++;
		else if (r->kind == VMS_VOL_SNAPSHOT)
			out->snapshots++;
		else if (r->kind == VMS_VOL_VOLUME)
			out->volumes++; /* not a family's or a version's hidden record */
	}
	out->txg = p->durable_txg;
	out->cache_nodes = p->cache.nodes;
	out->cache_hits = p->cache.hits;
	out->cache_misses = p->cache.misses;
	out->readonly = p->readonly;
	out->data_checksums = p->data_checksums;
	out->format_version = p->format_version;
	out->index = p->keys ? VMS_INDEX_KEYS : VMS_INDEX_RADIX;
	for (uint32_t l = 0; l <= p->smap.depth; l++)
		for (uint64_t j = 0; j < p->smap.n[l]; j++)
			out->smap_blocks += p->smap.blk[l][j] != 0; /* holes: all-free pages */
	for (uint32_t l = 0; l <= p->vtab.depth; l++)
		out->vtab_blocks += p->vtab.n[l];
	uint64_t pages = out->smap_blocks + out->vtab_blocks;
	out->index_blocks = p->meta_blocks > pages ? p->meta_blocks - pages : 0;
	pthread_mutex_unlock(&p->lock);
	return 0;
}
