/*
 * klog.c - version logs and the collector of format 3 pools
 * (docs/design/index-v3.md, "Version logs" and "Delete").
 *
 * Every version keeps a log of the logical blocks it inserted keys for,
 * so that deleting or merging it visits its own keys only: cost
 * proportional to what it wrote, never to the disk or the family.  A log
 * is a sequence of NT_LOG nodes (u40 lblks, in write order; an entry is a
 * hint: its key may be gone since) found in the family's key tree under
 * the reserved keys (LOG_BASE + version, seq) -> (node, crc), so logs are
 * copy-on-write, checksummed and committed with the keys they describe.
 * A log node is appended to in place while it is dirty; its key gets the
 * node's checksum at the commit's close (klog_close), before the key
 * tree's nodes are finished.
 *
 * The collector (k_reap_step) looks for one piece of work in a family's
 * version tree, does a bounded part of it and returns:
 *   - a version nothing reads through (not a live volume or snapshot)
 *     with no children: every key of it is garbage; its log gives them;
 *     then its log nodes and the version go;
 *   - such a version P with one child C that is not a live volume: P and
 *     C merge: C's keys move up into P (a key at the same lblk on both
 *     sides: P's is garbage and freed).  The direction is kept in the
 *     records (VREC_MERGING on the source, VREC_MERGE_DST on the
 *     destination) so a crash resumes it; every step of it is idempotent;
 *   - such a version with no keys and one live child: spliced out;
 *   - a deleted record that must stay (it has children): it becomes a
 *     hidden interior.
 * The logs themselves are the cursor: a log node is dropped (or moved)
 * once its entries are done, so a step after a crash starts where the
 * last commit left off.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

#define LOG_HDR  40u                     /* node header + count, seq, ver, 0, fam */
#define LOG_ENT  5u                      /* u40 lblk */


static unsigned log_cap(const vms_pool *p) { return (p->bs - LOG_HDR) / LOG_ENT; }
static unsigned lcount(const uint8_t *d) { return get32(d + 16); }
static kt_key log_key(uint32_t ver, uint32_t seq) { return (kt_key){LOG_BASE + ver, seq}; }

int klog_verify(const vms_pool *p, const uint8_t *d, uint64_t blk)
{
	if (lcount(d) > log_cap(p) || get32(d + 24) == 0 || get32(d + 28) != 0 || get64(d + 32) == 0)
		return vms_error_set(VMS_ECORRUPT, "log node %llu: bad header", (unsigned long long)blk);
	for (size_t i = LOG_HDR + (size_t)LOG_ENT * lcount(d); i < p->bs; i++)
		if (d[i])
			return vms_error_set(VMS_ECORRUPT, "log node %llu: bytes past its entries",
			                     (unsigned long long)blk);
	return 0;
}

void klog_node_info(const uint8_t *d, uint64_t *fam, uint32_t *ver, uint32_t *seq, unsigned *n)
{
	*fam = get64(d + 32);
	*ver = get32(d + 24);
	*seq = get32(d + 20);
	*n = lcount(d);
}

uint64_t klog_entry(const uint8_t *d, unsigned i)
{
	return get40(d + LOG_HDR + (size_t)LOG_ENT * i);
}

/* The record holding version ver of family f. */
static vrec *ver_rec(vms_pool *p, kfam *f, uint32_t ver)
{
	const vt_node *x = vt_find(&f->vt, ver);
	return x ? vol_find(p, x->rec) : NULL;
}

static int no_rec(kfam *f, uint32_t ver)
{
	return vms_error_set(VMS_EIO, "internal: family %llu: version %u has no record",
	                     (unsigned long long)f->id, ver);
}

/* Log operations of one family are serialized (they drop pool->lock). */
static void log_lock(vms_pool *p, kfam *f)
{
	while (f->log_busy) {
		f->log_waiters++;
		pthread_cond_wait(&p->claim_cv, &p->lock);
		f->log_waiters--;
	}
	f->log_busy = 1;
}

static void log_unlock(vms_pool *p, kfam *f)
{
	f->log_busy = 0;
	if (f->log_waiters)
		pthread_cond_broadcast(&p->claim_cv);
}

/* The cached log node (ver, seq): 1 (*out), 0 no such node.  May drop
 * pool->lock to load it. */
static int log_get(vms_pool *p, uint64_t fid, uint32_t ver, uint32_t seq, node **out)
{
	for (;;) {
		kt_val v = {0, 0};
		int rc = kt_get(p, fid, log_key(ver, seq), &v);
		if (rc <= 0)
			return rc;
		node *n = cache_get(p, v.pblk);
		if (n) {
			*out = n;
			return 1;
		}
		if ((rc = node_load_log_unlocked(p, v.pblk, v.crc)) < 0)
			return rc;
	}
}

/* A new dirty log node for (ver, seq) of family fid, a copy of `from` when
 * not NULL, its key pointing at it.  The old node (from) is freed. */
static int log_node_new(vms_pool *p, uint64_t fid, uint32_t ver, uint32_t seq, const node *from,
                        int use_reserve, node **out)
{
	uint64_t nb = 0, old = from ? from->blk : 0;
	int rc = sm_alloc_meta(p, use_reserve, &nb);
	if (rc < 0)
		return rc;
	node *n = cache_new_dirty(p, nb, 0);
	if (!n) {
		sm_unref_meta(p, nb);
		return vms_error_set(VMS_ENOMEM, "out of memory for a log node");
	}
	if (from)
		memcpy(n->data + NODE_HDR, from->data + NODE_HDR, p->bs - NODE_HDR);
	n->data[4] = NT_LOG; /* cache_new_dirty writes a volume-tree header */
	put32(n->data + 20, seq);
	put32(n->data + 24, ver);
	put64(n->data + 32, fid);
	kt_key k = log_key(ver, seq);
	if ((rc = kt_prepare(p, fid, k)) < 0 ||
	    (rc = kt_put(p, fid, k, (kt_val){nb, 0}, use_reserve, NULL)) < 0) {
		sm_unref_meta(p, nb);
		return rc;
	}
	if (old)
		sm_unref_meta(p, old);
	*out = cache_find(p, nb); /* dirty: never evicted */
	return 0;
}

static int append_locked(vms_pool *p, kfam *f, uint32_t ver, uint64_t lblk)
{
	vrec *r = ver_rec(p, f, ver);
	node *t = NULL;
	int rc;
	if (!r)
		return no_rec(f, ver);
	uint32_t seq = r->log_seq;
	if (seq) {
		if ((rc = log_get(p, f->id, ver, seq - 1, &t)) < 0)
			return rc;
		if (rc == 0)
			return vms_error_set(VMS_ECORRUPT, "family %llu: log node %u of version %u missing",
			                     (unsigned long long)f->id, seq - 1, ver);
	}
	if (!t || lcount(t->data) == log_cap(p)) { /* a new node */
		if ((rc = log_node_new(p, f->id, ver, seq, NULL, 0, &t)) < 0)
			return rc;
		if (!(r = ver_rec(p, f, ver)))
			return no_rec(f, ver);
		r->log_seq = seq + 1;
		vol_mark(p, r);
	} else if (!t->dirty && (rc = log_node_new(p, f->id, ver, seq - 1, t, 0, &t)) < 0) {
		return rc; /* committed: copied first */
	}
	unsigned n = lcount(t->data);
	put40(t->data + LOG_HDR + (size_t)LOG_ENT * n, lblk);
	put32(t->data + 16, n + 1);
	return 0;
}

int klog_append(vms_pool *p, uint64_t fid, uint32_t ver, uint64_t lblk)
{
	kfam *f = fam_get(p, fid);
	if (!f)
		return vms_error_set(VMS_EIO, "internal: family %llu missing", (unsigned long long)fid);
	log_lock(p, f);
	int rc = append_locked(p, f, ver, lblk);
	log_unlock(p, f);
	return rc;
}

/* Commit close (commit_lock exclusive, pool->lock): give every dirty log
 * node's key the node's checksum as the close will write it. */
int klog_close(vms_pool *p)
{
	node *s = &p->cache.dirty[0];
	for (node *n = s->next; n != s; n = n->next) {
		if (n->data[4] != NT_LOG)
			continue;
		uint64_t fid;
		uint32_t ver, seq;
		unsigned cnt;
		klog_node_info(n->data, &fid, &ver, &seq, &cnt);
		put64(n->data + 8, p->txg);
		uint32_t crc = vms_crc32c(0, n->data, p->bs);
		kt_key k = log_key(ver, seq);
		int rc = kt_prepare(p, fid, k);
		if (rc == 0)
			rc = kt_put(p, fid, k, (kt_val){n->blk, crc}, 1, NULL);
		if (rc < 0)
			return vms_error_wrap(rc, "closing the log of version %u", ver);
	}
	return 0;
}

/* The first log node left of version ver: 1 (*seq, *n), 0 none. */
typedef struct first {
	int found;
	uint32_t seq;
} first;

static int first_cb(void *ctx, kt_key k, kt_val v)
{
	(void)v;
	first *x = ctx;
	x->found = 1;
	x->seq = k.ver;
	return 1;
}

static int log_first(vms_pool *p, uint64_t fid, uint32_t ver, uint32_t *seq, node **n)
{
	for (;;) {
		first x = {0, 0};
		int rc = kt_walk(p, fid, log_key(ver, 0), log_key(ver + 1, 0), first_cb, &x);
		if (rc < 0)
			return rc;
		if (!x.found)
			return 0;
		if ((rc = log_get(p, fid, ver, x.seq, n)) != 0) {
			*seq = x.seq;
			return rc;
		}
	}
}

/* Drop log node (ver, seq), already looked at. */
static int log_drop(vms_pool *p, uint64_t fid, uint32_t ver, uint32_t seq, uint64_t blk)
{
	kt_key k = log_key(ver, seq);
	int rc = kt_prepare(p, fid, k);
	if (rc == 0)
		rc = kt_del(p, fid, k, NULL);
	if (rc >= 0)
		sm_unref_meta(p, blk);
	return rc < 0 ? rc : 0;
}

/* ---- the collector -------------------------------------------------------- */

static int is_live(const vrec *r)
{
	return r && r->kind == VMS_VOL_VOLUME && !(r->flags & VREC_DELETING);
}

static void count_keys(vms_pool *p, kfam *f, uint32_t ver, int64_t d)
{
	vrec *r = ver_rec(p, f, ver);
	if (r && (d > 0 || r->nkeys)) {
		r->nkeys = (uint64_t)((int64_t)r->nkeys + d);
		vol_mark(p, r);
	}
}

/* Remove key k, one of version ver's (a data key or in its delta region),
 * and free its block. */
static int drop_key_of(vms_pool *p, kfam *f, kt_key k, uint32_t ver, uint64_t *freed)
{
	kt_val old = {0, 0};
	int rc = kt_prepare(p, f->id, k);
	if (rc == 0)
		rc = kt_del(p, f->id, k, &old);
	if (rc <= 0)
		return rc;
	if (old.pblk)
		*freed += (uint64_t)sm_unref(p, old.pblk);
	count_keys(p, f, ver, -1);
	return 0;
}

/* Remove data key (lblk, ver) and free its block. */
static int drop_key(vms_pool *p, kfam *f, kt_key k, uint64_t *freed)
{
	return drop_key_of(p, f, k, k.ver, freed);
}

/* Move key (lblk, from) to (lblk, to); a key already at `to` is freed
 * (keep_to: the one at `to` stays and `from`'s is freed instead).  Readers
 * see the one or the other, never neither: the new key goes in first. */
static int move_key(vms_pool *p, kfam *f, uint64_t lblk, uint32_t from, uint32_t to, int keep_to,
                    uint64_t *freed)
{
	kt_val v = {0, 0}, old = {0, 0};
	kt_key kf = {lblk, from}, kt = {lblk, to};
	int rc = kt_get(p, f->id, kf, &v);
	if (rc <= 0)
		return rc;
	if (keep_to && (rc = kt_get(p, f->id, kt, &old)) != 0) {
		if (rc < 0)
			return rc;
		if (old.pblk != v.pblk || !v.pblk) /* not a half-done earlier move */
			return drop_key(p, f, kf, freed);
		goto drop_from;
	}
	if ((rc = kt_prepare(p, f->id, kt)) < 0 || (rc = kt_put(p, f->id, kt, v, 1, &old)) < 0)
		return rc;
	/* an earlier try that failed after its put left both keys on the
	 * same block: nothing to free then */
	if (rc == 1 && old.pblk && old.pblk != v.pblk)
		*freed += (uint64_t)sm_unref(p, old.pblk);
	if (rc == 0)
		count_keys(p, f, to, 1);
drop_from:
	if ((rc = kt_prepare(p, f->id, kf)) < 0 || (rc = kt_del(p, f->id, kf, NULL)) < 0)
		return rc;
	count_keys(p, f, from, -1);
	return 0;
}

/* Move log node `seq` of version `from` to the end of `to`'s log. */
static int log_move(vms_pool *p, kfam *f, uint32_t from, uint32_t seq, node *n, uint32_t to)
{
	vrec *r = ver_rec(p, f, to);
	node *m;
	if (!r)
		return no_rec(f, to);
	uint32_t nseq = r->log_seq;
	int rc = log_node_new(p, f->id, to, nseq, n, 1, &m); /* frees n's block */
	if (rc < 0)
		return rc;
	if (!(r = ver_rec(p, f, to)))
		return no_rec(f, to);
	r->log_seq = nseq + 1;
	vol_mark(p, r);
	kt_key k = log_key(from, seq);
	if ((rc = kt_prepare(p, f->id, k)) == 0)
		rc = kt_del(p, f->id, k, NULL);
	return rc < 0 ? rc : 0;
}

static int version_drop(vms_pool *p, kfam *f, uint32_t ver)
{
	vrec *r = ver_rec(p, f, ver);
	const vt_node *x = vt_find(&f->vt, ver);
	uint32_t parent = x ? x->parent : 0;
	int rc = vt_remove(&f->vt, ver);
	if (rc < 0)
		return rc;
	if (r)
		vol_remove(p, r);
	fam_note(p, f, parent); /* it may have work now */
	vrec *fr = vol_find(p, f->id);
	if (fr && vt_count(&f->vt) == 0 && !fr->root) /* the family is empty */
		vol_remove(p, fr);
	return 0;
}

/* The children of version x now name their new parent in their records. */
static void children_follow(vms_pool *p, kfam *f, uint32_t parent)
{
	uint32_t kids[64];
	int n = vt_children(&f->vt, parent, kids, 64);
	for (int i = 0; i < n && i < 64; i++) {
		vrec *c = ver_rec(p, f, kids[i]);
		if (c && c->parent_ver != parent) {
			c->parent_ver = parent;
			vol_mark(p, c);
		}
	}
	if (n > 64) /* rare: a version with many clones; walk all records */
		for (size_t i = 0; i < vt_count(&f->vt); i++) {
			vrec *c = vol_find(p, f->vt.v[i].rec);
			if (c && c->parent_ver != f->vt.v[i].parent) {
				c->parent_ver = f->vt.v[i].parent;
				vol_mark(p, c);
			}
		}
}

/* Room for a step that allocates before it frees: the commit's own needs,
 * half the reserve (kept for deletes and commits) and a few copies. */
static int room(vms_pool *p, uint64_t keep, const char *what)
{
	if (sm_avail(p) >= sm_commit_need(p) + keep + 4 * MAX_DEPTH)
		return 0;
	return vms_error_set(VMS_ENOSPC, "pool is full: %s waits for free blocks", what);
}

/* Log node n's entries, copied (the node may go while pool->lock drops):
 * *l malloc'd, of *cnt. */
static int log_copy(const node *n, uint64_t **l, unsigned *cnt)
{
	*cnt = lcount(n->data);
	if (!(*l = malloc((*cnt + 1) * sizeof(**l))))
		return vms_error_set(VMS_ENOMEM, "out of memory for the collector");
	for (unsigned i = 0; i < *cnt; i++)
		(*l)[i] = klog_entry(n->data, i);
	return 0;
}

/* The entries of version ver's first log node left, copied: 1 (*l,
 * malloc'd, of *cnt; the node's *seq and *blk), 0 when its log is empty,
 * or an error. */
static int log_first_entries(vms_pool *p, uint64_t fid, uint32_t ver, uint32_t *seq,
                             uint64_t *blk, uint64_t **l, unsigned *cnt)
{
	node *n = NULL;
	int rc = log_first(p, fid, ver, seq, &n);
	if (rc <= 0)
		return rc;
	*blk = n->blk;
	return (rc = log_copy(n, l, cnt)) < 0 ? rc : 1;
}

/* A version whose log is empty but whose record still counts keys. */
static int unlogged(kfam *f, uint32_t ver, uint64_t nkeys)
{
	return vms_error_set(VMS_ECORRUPT, "family %llu: version %u holds %llu keys its log "
	                     "does not name", (unsigned long long)f->id, ver,
	                     (unsigned long long)nkeys);
}

/* ---- delta regions (keys.h) ------------------------------------------------ */

#define REGION_BATCH 256u

typedef struct rkeys {
	uint64_t lblk[REGION_BATCH];
	kt_val v[REGION_BATCH];
	unsigned n;
} rkeys;

static int rkeys_cb(void *ctx, kt_key k, kt_val v)
{
	rkeys *b = ctx;
	b->lblk[b->n] = k.ver;
	b->v[b->n++] = v;
	return b->n == REGION_BATCH;
}

/* The first keys of version ver's delta region, copied (up to a batch). */
static int region_first(vms_pool *p, kfam *f, uint32_t ver, rkeys *b)
{
	b->n = 0;
	int rc = kt_walk(p, f->id, delta_key(ver, 0), (kt_key){DELTA_BASE + ver + 1, 0}, rkeys_cb, b);
	return rc < 0 ? rc : 0;
}

/* Version ver has no delta region any more: the flag goes, and its
 * children (whose flush waited for it), its parent and itself get looked at. */
static void region_done(vms_pool *p, kfam *f, uint32_t ver)
{
	vrec *r = ver_rec(p, f, ver);
	const vt_node *x = vt_find(&f->vt, ver);
	if (r) {
		r->flags &= (uint8_t)~VREC_DELTA;
		vol_mark(p, r);
	}
	uint32_t kids[64];
	int n = x ? vt_children(&f->vt, ver, kids, 64) : 0;
	for (int i = 0; i < n && i < 64; i++)
		fam_note(p, f, kids[i]);
	if (n > 64) /* rare: look at every version */
		for (size_t i = 0; i < vt_count(&f->vt); i++)
			fam_note(p, f, f->vt.v[i].ver);
	if (x && x->parent)
		fam_note(p, f, x->parent);
	fam_note(p, f, ver);
}

/*
 * Flush a batch of version ver's delta region into its data keys: each
 * (DELTA + ver, lblk) becomes (lblk, ver), logged; readers look in the
 * region first, then at the data keys, and see the one or the other (same
 * value).  The step holds commit_lock shared, so no commit sees both; a
 * step that fails between the two finds the data key done and only drops
 * the region's.  Then the flag goes (region_done).
 */
static int flush_step(vms_pool *p, kfam *f, uint32_t ver, uint64_t *freed)
{
	rkeys b;
	int rc = room(p, p->reserve / 2, "flushing a version's keys");
	if (rc < 0 || (rc = region_first(p, f, ver, &b)) < 0)
		return rc;
	if (b.n == 0) {
		region_done(p, f, ver);
		return 1;
	}
	for (unsigned i = 0; i < b.n; i++) {
		kt_key dk = {b.lblk[i], ver}, rk = delta_key(ver, b.lblk[i]);
		kt_val old = {0, 0};
		if ((rc = append_locked(p, f, ver, b.lblk[i])) < 0 ||
		    (rc = kt_prepare(p, f->id, dk)) < 0 ||
		    (rc = kt_put(p, f->id, dk, b.v[i], 1, &old)) < 0)
			return rc;
		if (rc == 1) { /* it was there: from an earlier try, or an older data key */
			if (old.pblk && old.pblk != b.v[i].pblk)
				*freed += (uint64_t)sm_unref(p, old.pblk);
			count_keys(p, f, ver, -1);
		}
		if ((rc = kt_prepare(p, f->id, rk)) < 0 || (rc = kt_del(p, f->id, rk, NULL)) < 0)
			return rc;
	}
	return 1;
}

/* A deleted version's delta region: nothing reads it; a batch of its keys
 * dropped and their blocks freed, then the flag goes. */
static int region_drop(vms_pool *p, kfam *f, uint32_t ver, uint64_t *freed)
{
	rkeys b;
	int rc = region_first(p, f, ver, &b);
	if (rc < 0)
		return rc;
	if (b.n == 0) {
		region_done(p, f, ver);
		return 1;
	}
	for (unsigned i = 0; i < b.n; i++)
		if ((rc = drop_key_of(p, f, delta_key(ver, b.lblk[i]), ver, freed)) < 0)
			return rc;
	return 1;
}

/* ---- keys a live only child shadows -------------------------------------------
 *
 * A version P that no one reads (its snapshot was deleted) whose only child
 * is a live volume L: a key of P at a block where L has a key of its own
 * is read by no one (L's key comes first for L and for all that a later
 * snapshot freezes from it).  Merges wait while the child is live, so
 * without this the blocks L overwrote after P's last snapshot would stay
 * allocated until L's next snapshot.  The collector drops them once per
 * (P, L) over L's delta region; a write of L that puts a new key of its
 * own drops P's at once (klog_shadowed). */

/* P's keys L shadows are garbage: P is no reader, has no delta region, is
 * not merging and has keys; its only child *child is a live volume with a
 * delta region. */
static int shadows(vms_pool *p, kfam *f, const vt_node *x, uint32_t *child)
{
	vrec *r = vol_find(p, x->rec);
	if (!r || is_reader(r) || (r->flags & (VREC_DELTA | VREC_MERGING | VREC_MERGE_DST)) ||
	    !r->nkeys || x->nchildren != 1)
		return 0;
	uint32_t c = 0;
	vt_children(&f->vt, x->ver, &c, 1);
	vrec *cr = ver_rec(p, f, c);
	if (!is_live(cr) || !(cr->flags & VREC_DELTA))
		return 0;
	*child = c;
	return 1;
}

/* Drop P's key at lblk (if any) and free its block.  log_lock held.  A
 * tombstone stays: an unmap of L that looked at P's key before this and
 * deletes L's own key after (its key_del may drop pool->lock between)
 * must find the zeros it saw, not the older data above P. */
static int shadow_drop(vms_pool *p, kfam *f, uint32_t parent, uint64_t lblk, uint64_t *freed)
{
	kt_key k = {lblk, parent};
	kt_val v = {0, 0};
	int rc = kt_get(p, f->id, k, &v); /* most blocks: none (no copy of the path) */
	if (rc <= 0 || !v.pblk)
		return rc < 0 ? rc : 0;
	return (rc = drop_key(p, f, k, freed)) < 0 ? rc : 1; /* 1: dropped */
}

/* One batch of the pass over child c's region for version v. */
static int shadow_step(vms_pool *p, kfam *f, uint32_t v, uint32_t c, uint64_t *freed)
{
	rkeys b;
	int rc = room(p, 0, "dropping keys a volume overwrote");
	if (rc < 0)
		return rc;
	if (f->shadow_ver != v || f->shadow_child != c) {
		f->shadow_ver = v;
		f->shadow_child = c;
		f->shadow_next = 0;
		f->shadow_done = 0;
	}
	b.n = 0;
	if ((rc = kt_walk(p, f->id, delta_key(c, f->shadow_next), (kt_key){DELTA_BASE + c + 1, 0},
	                  rkeys_cb, &b)) < 0)
		return rc;
	if (b.n == 0) {
		f->shadow_done = 1; /* new keys of c drop theirs as they come */
		return 1;
	}
	for (unsigned i = 0; i < b.n; i++)
		if ((rc = shadow_drop(p, f, v, b.lblk[i], freed)) < 0)
			return rc;
	f->shadow_next = b.lblk[b.n - 1] + 1;
	return 1;
}

static int keyless_reader_child(vms_pool *p, kfam *f, uint32_t ver);

/* Whether every reader of version c's line has a key of its own at lblk
 * below or at c: 1 yes, 0 no (one reads through c's parent), -1 not known
 * (deeper than depth, many children, an error).  May drop pool->lock. */
static int line_shadows(vms_pool *p, kfam *f, uint32_t c, uint64_t lblk, int depth)
{
	kt_val v;
	const vrec *r = ver_rec(p, f, c);
	int delta = r && (r->flags & VREC_DELTA), rc = kt_get(p, f->id, (kt_key){lblk, c}, &v);
	if (rc == 0 && delta)
		rc = kt_get(p, f->id, delta_key(c, lblk), &v);
	if (rc != 0)
		return rc > 0 ? 1 : -1;
	const vt_node *y = vt_find(&f->vt, c);
	if (!y || !(r = vol_find(p, y->rec)))
		return -1;
	if (is_reader(r))
		return 0;
	if (!y->nchildren)
		return 1; /* no one reads it */
	uint32_t kids[64];
	int n = vt_children(&f->vt, c, kids, 64), known = 1;
	if (depth == 0 || n > 64)
		return -1;
	for (int i = 0; i < n; i++) {
		int s = line_shadows(p, f, kids[i], lblk, depth - 1);
		if (s == 0)
			return 0;
		if (s < 0)
			known = 0;
	}
	return known ? 1 : -1;
}

#define SUSPECT_MAX 65536u               /* queued lblks per family; more: a whole pass */

void klog_shadowed(vms_pool *p, uint64_t fid, uint32_t ver, uint64_t lblk, int anc_data)
{
	kfam *f = fam_get(p, fid);
	const vt_node *x = f ? vt_find(&f->vt, ver) : NULL;
	const vt_node *px = x && x->parent ? vt_find(&f->vt, x->parent) : NULL;
	uint32_t c = 0, parent = px ? px->ver : 0;
	uint64_t freed = 0;
	if (!px || !anc_data || is_reader(vol_find(p, px->rec)) || keyless_reader_child(p, f, parent))
		return; /* the usual case: a snapshot still reads what ver read */
	if (shadows(p, f, px, &c) && c == ver) { /* its parent's key, if there, is no one's */
		int rc = 0;
		log_lock(p, f); /* not within a collector step (which moves keys) */
		x = vt_find(&f->vt, ver);
		px = x && x->parent == parent ? vt_find(&f->vt, parent) : NULL;
		if (px && shadows(p, f, px, &c) && c == ver)
			rc = shadow_drop(p, f, parent, lblk, &freed); /* on failure the garbage waits */
		log_unlock(p, f);
		if (rc == 1)
			return;
	}
	/* the key ver read may be no one's now only if every other line
	 * under the parent has a key of its own there: mostly one does not
	 * (a clone of a running volume: the volume still reads it) */
	uint32_t kids[64];
	int n = vt_children(&f->vt, parent, kids, 64);
	for (int i = 0; i < n && i < 64; i++)
		if (kids[i] != ver && line_shadows(p, f, kids[i], lblk, 3) == 0)
			return;
	/* the collector looks at the lblk's keys (suspect_step) */
	if (f->nsuspect == SUSPECT_MAX) { /* it is behind: a pass over the parent instead */
		f->nsuspect = 0;
		fam_note(p, f, parent);
	} else if (f->nsuspect < f->suspect_cap ||
	           array_grow(&f->suspect, &f->suspect_cap, sizeof(*f->suspect)) == 0) {
		f->suspect[f->nsuspect++] = lblk;
		if (f->nsuspect == 1)
			pool_kick(p);
	}
}

/* ---- keys no reader reads under a version with several children -----------------
 *
 * A version P no one reads with two children or more (a snapshot deleted
 * while it had clones, a volume's frozen version whose snapshot went):
 * a key of P that every child's line overwrote is read by no one, but
 * neither a merge (one child) nor the shadow drops (one live child) take
 * it.  When P is noted (a reader below it went, a child's line changed),
 * a pass over P's log looks at each of its keys with data against all
 * the keys of that lblk and the readers, and drops those that serve none.
 * Not when P has a child that is a reader without keys (a snapshot): that
 * one reads every key of P, so nothing of P is garbage (the usual chain
 * of snapshots costs a look at the children only).  A decision holds
 * only while the family's ugen stays (no new key, reader or tombstone
 * meanwhile: fam_changed); tombstones stay (shadow_drop says why). */

typedef struct vkeys {
	kver *k;
	size_t n, cap;
} vkeys;

static int vkeys_add(vkeys *k, uint32_t ver, kt_val v)
{
	if (k->n == k->cap && array_grow(&k->k, &k->cap, sizeof(*k->k)) < 0)
		return VMS_ENOMEM;
	k->k[k->n++] = (kver){ver, v};
	return 0;
}

static int vkeys_cb(void *ctx, kt_key k, kt_val v)
{
	return vkeys_add(ctx, k.ver, v);
}

/* Every key of lblk: the data keys and the delta regions' (versions w[m]).
 * May drop pool->lock. */
static int keys_at(vms_pool *p, kfam *f, uint64_t lblk, const uint32_t *w, size_t m, vkeys *out)
{
	out->n = 0;
	int rc = kt_walk(p, f->id, (kt_key){lblk, 0}, (kt_key){lblk + 1, 0}, vkeys_cb, out);
	for (size_t j = 0; rc >= 0 && j < m; j++) {
		kt_val v = {0, 0};
		if ((rc = kt_get(p, f->id, delta_key(w[j], lblk), &v)) == 1)
			rc = vkeys_add(out, w[j], v);
	}
	return rc < 0 ? rc : 0;
}

/* P has a child that is a reader without keys of its own. */
static int keyless_reader_child(vms_pool *p, kfam *f, uint32_t ver)
{
	uint32_t kids[64];
	int n = vt_children(&f->vt, ver, kids, 64);
	for (int i = 0; i < n && i < 64; i++) {
		const vrec *c = ver_rec(p, f, kids[i]);
		if (is_reader(c) && !c->nkeys && !(c->flags & VREC_DELTA))
			return 1;
	}
	return 0;
}

/* Drop the keys of ver (0: of any version no one reads) at lblks l[cnt]
 * that serve no reader. */
static int drop_unread(vms_pool *p, kfam *f, uint32_t ver, const uint64_t *l, unsigned cnt,
                       uint64_t *freed)
{
	size_t m = 0, nrd = 0;
	uint32_t *w = NULL, *rd = NULL;
	vkeys k = {0};
	uint64_t gen = f->ugen;
	int rc = k_region_versions(p, f, &w, &m);
	if (rc == 0)
		rc = k_readers(p, f, &rd, &nrd);
	for (unsigned i = 0; rc >= 0 && i < cnt && f->ugen == gen; i++) {
		if ((rc = keys_at(p, f, l[i], w, m, &k)) < 0 || f->ugen != gen)
			break; /* a change while the lock was dropped: the next pass */
		uint32_t drop = 0;
		for (size_t j = 0; j < k.n && !drop; j++) {
			uint32_t kv = k.k[j].ver;
			if ((ver && kv != ver) || !k.k[j].val.pblk)
				continue; /* not asked, or a tombstone (kept) */
			const vrec *a = ver ? NULL : ver_rec(p, f, kv);
			if (!ver && (!a || is_reader(a) || (a->flags & VREC_DELTA)))
				continue; /* read by its own, unknown, or keys in a region */
			if ((rc = k_key_serves(f, kv, k.k, k.n, rd, nrd)) < 0)
				break;
			if (rc == 0)
				drop = kv;
		}
		if (rc < 0)
			break;
		if (!drop)
			continue; /* read, or gone since it was logged */
		kt_key key = {l[i], drop};
		kt_val old = {0, 0};
		if ((rc = kt_prepare(p, f->id, key)) < 0 || f->ugen != gen)
			break;
		if ((rc = kt_del(p, f->id, key, &old)) < 0)
			break;
		if (rc == 1 && old.pblk)
			*freed += (uint64_t)sm_unref(p, old.pblk);
		if (rc == 1)
			count_keys(p, f, drop, -1);
		rc = 0;
	}
	free(w);
	free(rd);
	free(k.k);
	return rc < 0 ? rc : 0;
}

void klog_reader_gone(vms_pool *p, uint64_t fid, uint32_t ver)
{
	kfam *f = fam_get(p, fid);
	const vt_node *x = f ? vt_find(&f->vt, ver) : NULL;
	fam_note(p, f, ver);
	/* the keys only it read may be anywhere above, up to a version some
	 * reader reads all of (itself a reader, or with a key-less reader
	 * child: a snapshot; in a chain of snapshots the next one up) */
	for (uint32_t a = x ? x->parent : 0; a;) {
		const vt_node *y = vt_find(&f->vt, a);
		if (!y || is_reader(vol_find(p, y->rec)))
			break;
		fam_note(p, f, a);
		if (keyless_reader_child(p, f, a))
			break;
		a = y->parent;
	}
}

/* One log node of the pass over version v: 1 done (more may follow), 0
 * the pass is over. */
static int garbage_step(vms_pool *p, kfam *f, uint32_t v, uint64_t *freed)
{
	int rc = room(p, 0, "dropping keys no one reads");
	if (rc < 0)
		return rc;
	if (f->gpass_ver != v) {
		f->gpass_ver = v;
		f->gpass_seq = 0;
	}
	for (;;) {
		vrec *r = ver_rec(p, f, v);
		node *n = NULL;
		uint32_t seq = f->gpass_seq;
		if (!r)
			return no_rec(f, v);
		if (seq >= r->log_seq) {
			const vt_node *x = vt_find(&f->vt, v);
			f->gpass_ver = 0;
			if (x && x->parent) /* keys above may be no one's now too */
				fam_note(p, f, x->parent);
			return 0;
		}
		if ((rc = log_get(p, f->id, v, seq, &n)) < 0)
			return rc;
		if (f->gpass_ver != v || f->gpass_seq != seq)
			continue; /* (not while log_lock is held; kept simple) */
		f->gpass_seq = seq + 1;
		if (rc == 0)
			continue; /* that node went (merged away or dropped) */
		unsigned cnt = 0;
		uint64_t *l = NULL;
		if ((rc = log_copy(n, &l, &cnt)) < 0)
			return rc;
		rc = drop_unread(p, f, v, l, cnt, freed);
		free(l);
		return rc < 0 ? rc : 1;
	}
}

/* A version no one reads through and without children: its keys, one
 * log node per call, then its log and itself. */
static int reap_leaf(vms_pool *p, kfam *f, uint32_t ver, uint64_t *freed)
{
	uint32_t seq = 0;
	uint64_t blk = 0, *l = NULL;
	unsigned cnt = 0;
	int rc = room(p, 0, "reclaiming a version");
	if (rc < 0)
		return rc;
	vrec *rv = ver_rec(p, f, ver);
	if (rv && (rv->flags & VREC_DELTA))
		return region_drop(p, f, ver, freed);
	if ((rc = log_first_entries(p, f->id, ver, &seq, &blk, &l, &cnt)) < 0)
		return rc;
	if (rc == 1) {
		for (unsigned i = 0; rc >= 0 && i < cnt; i++)
			rc = drop_key(p, f, (kt_key){l[i], ver}, freed);
		free(l);
		if (rc < 0 || (rc = log_drop(p, f->id, ver, seq, blk)) < 0)
			return rc;
		(*freed)++;
		return 1;
	}
	vrec *r = ver_rec(p, f, ver);
	if (r && r->nkeys)
		return unlogged(f, ver, r->nkeys);
	return (rc = version_drop(p, f, ver)) < 0 ? rc : 1;
}

/*
 * Merge version `src` into `dst` (parent and only child, either way):
 * one of src's log nodes per call, each lblk's key moved to dst (a key
 * already at dst: the parent's of the two is garbage).  Then src goes:
 * when src is the child, its children move to dst and its record (if a
 * snapshot) takes over dst's version; when src is the parent, dst takes
 * its place.
 */
static int merge_step(vms_pool *p, kfam *f, uint32_t src, uint32_t dst, uint64_t *freed)
{
	uint32_t seq = 0;
	uint64_t blk = 0, *l = NULL;
	unsigned cnt = 0;
	node *n = NULL;
	int src_is_child = src < dst;
	int rc = room(p, p->reserve / 2, "merging versions");
	if (rc < 0 || (rc = log_first_entries(p, f->id, src, &seq, &blk, &l, &cnt)) < 0)
		return rc;
	if (rc == 1) {
		for (unsigned i = 0; rc >= 0 && i < cnt; i++)
			rc = move_key(p, f, l[i], src, dst, !src_is_child, freed);
		free(l);
		if (rc < 0 || (rc = log_get(p, f->id, src, seq, &n)) <= 0)
			return rc < 0 ? rc : vms_error_set(VMS_EIO, "internal: log node moved away");
		if ((rc = log_move(p, f, src, seq, n, dst)) < 0)
			return rc;
		return 1;
	}
	vrec *rs = ver_rec(p, f, src), *rd = ver_rec(p, f, dst);
	if (!rs || !rd)
		return no_rec(f, rs ? dst : src);
	if (src_is_child && is_reader(rs) && !p->gc_exclusive)
		return KREAP_EXCLUSIVE; /* a reader's version changes: no read in flight */
	rd->flags &= (uint8_t)~VREC_MERGE_DST;
	vol_mark(p, rd);
	if (rs->nkeys)
		return unlogged(f, src, rs->nkeys);
	if (src_is_child) {
		/* dst (the parent) takes src's children; a snapshot record of src
		 * takes over dst's version, whose interior record goes */
		if ((rc = vt_reparent_children(&f->vt, src, dst)) < 0)
			return rc;
		children_follow(p, f, dst);
		uint64_t rsid = rs->id, rdid = rd->id;
		if ((rc = vt_remove(&f->vt, src)) < 0)
			return rc;
		rs = vol_find(p, rsid);
		rd = vol_find(p, rdid);
		if (is_reader(rs)) {
			rs->ver = dst;
			rs->parent_ver = rd->parent_ver;
			rs->nkeys = rd->nkeys;
			rs->log_seq = rd->log_seq;
			rs->flags &= (uint8_t)~(VREC_MERGING | VREC_MERGE_DST);
			vol_mark(p, rs);
			((vt_node *)vt_find(&f->vt, dst))->rec = rsid;
			vol_remove(p, rd);
		} else {
			vol_remove(p, rs);
		}
	} else {
		/* dst (the child) takes src's place under src's parent */
		const vt_node *x = vt_find(&f->vt, src);
		uint32_t gp = x ? x->parent : 0;
		if (!gp)
			return vms_error_set(VMS_EIO, "internal: merge of root version %u into its child",
			                     src);
		if ((rc = vt_reparent_children(&f->vt, src, gp)) < 0)
			return rc;
		rd->parent_ver = gp;
		vol_mark(p, rd);
		if ((rc = version_drop(p, f, src)) < 0)
			return rc;
	}
	f->msrc = f->mdst = 0;
	fam_note(p, f, dst);
	const vt_node *dx = vt_find(&f->vt, dst);
	if (dx)
		fam_note(p, f, dx->parent);
	return 1;
}

static int merge_start(vms_pool *p, kfam *f, uint32_t src, uint32_t dst, uint64_t *freed)
{
	vrec *rs = ver_rec(p, f, src), *rd = ver_rec(p, f, dst);
	if (!rs || !rd)
		return no_rec(f, rs ? dst : src);
	rs->flags |= VREC_MERGING;
	rd->flags |= VREC_MERGE_DST;
	vol_mark(p, rs);
	vol_mark(p, rd);
	f->msrc = src;
	f->mdst = dst;
	return merge_step(p, f, src, dst, freed);
}

/* Splice out version x (no keys, no reader, one child, a parent). */
static int splice(vms_pool *p, kfam *f, const vt_node *xp)
{
	vt_node x = *xp;
	int rc = vt_reparent_children(&f->vt, x.ver, x.parent);
	if (rc < 0)
		return rc;
	children_follow(p, f, x.parent);
	for (;;) { /* its log names only stale entries: dropped */
		uint32_t seq = 0;
		node *n = NULL;
		if ((rc = log_first(p, f->id, x.ver, &seq, &n)) <= 0 ||
		    (rc = log_drop(p, f->id, x.ver, seq, n->blk)) < 0)
			break;
	}
	if (rc < 0 || (rc = version_drop(p, f, x.ver)) < 0)
		return rc;
	return 1;
}

/* Look at version v for work and do a step of it: 1 done (v may have
 * more), 0 nothing to do for v. */
static int examine(vms_pool *p, kfam *f, uint32_t v, uint64_t *freed)
{
	int rc;
	const vt_node *x = vt_find(&f->vt, v);
	if (!x)
		return 0;
	vrec *r = vol_find(p, x->rec);
	if (r && (r->flags & VREC_DELTA) && !is_live(r)) {
		/* its delta region first: dropped when nothing reads it, else
		 * flushed once its parent has none (parents first) */
		if (x->nchildren == 0 && !is_reader(r))
			return reap_leaf(p, f, v, freed);
		vrec *pr = x->parent ? ver_rec(p, f, x->parent) : NULL;
		if (pr && (pr->flags & VREC_DELTA))
			return 0; /* the parent's flush notes v */
		return flush_step(p, f, v, freed);
	}
	if (is_reader(r))
		return 0;
	if (x->nchildren == 0)
		return reap_leaf(p, f, v, freed);
	if (x->nchildren == 1) {
		uint32_t c = 0;
		vt_children(&f->vt, v, &c, 1);
		vrec *cr = ver_rec(p, f, c);
		if (cr && (cr->flags & VREC_DELTA) && !is_live(cr))
			return 0; /* the child's flush first (it notes v when done) */
		if (!is_live(cr)) {
			/* the child's keys move up.  Not the other way even when the
			 * parent holds fewer: putting (lblk, child) and then deleting
			 * (lblk, parent) can slip past a reader that re-seeks after a
			 * node load between its pass over the child's position and
			 * the parent's; up, the parent's key is overwritten first and
			 * the reader meets one or the other.  (A merge persisted in
			 * the other direction by an older build still finishes.) */
			return merge_start(p, f, c, v, freed);
		}
		if (r && r->nkeys == 0 && x->parent)
			return splice(p, f, x);
		uint32_t sc = 0;
		if (shadows(p, f, x, &sc) &&
		    !(f->shadow_done && f->shadow_ver == v && f->shadow_child == sc))
			return shadow_step(p, f, v, sc, freed);
	}
	if (x->nchildren >= 2 && r && !(r->flags & (VREC_DELTA | VREC_MERGING | VREC_MERGE_DST)) &&
	    !keyless_reader_child(p, f, v)) {
		if (!r->nkeys) { /* what went below may have been the only reader of keys above */
			fam_note(p, f, x->parent);
		} else {
			if ((rc = garbage_step(p, f, v, freed)) != 0)
				return rc;
			if (!(x = vt_find(&f->vt, v))) /* the lock may have dropped */
				return 0;
			r = vol_find(p, x->rec);
		}
	}
	if (r && (r->flags & VREC_DELETING)) { /* must stay: a hidden interior now */
		r->kind = VREC_INTERIOR;
		r->flags = VREC_HIDDEN;
		p->ndeleting--;
		vol_mark(p, r);
		fam_note(p, f, x->parent); /* what only it read above is no one's now */
		return 1;
	}
	return 0;
}

/* A batch of the queued lblks (klog_shadowed): the keys there that no
 * reader reads go. */
static int suspect_step(vms_pool *p, kfam *f, uint64_t *freed)
{
	uint64_t l[256];
	unsigned n = 0;
	int rc = room(p, 0, "dropping keys no one reads");
	if (rc < 0)
		return rc;
	while (f->nsuspect && n < 256)
		l[n++] = f->suspect[--f->nsuspect];
	if (f->nsuspect == 0 && f->suspect_cap > 1024) { /* give a large queue back */
		free(f->suspect);
		f->suspect = NULL;
		f->suspect_cap = 0;
	}
	return (rc = drop_unread(p, f, 0, l, n, freed)) < 0 ? rc : 1;
}

/* One step of work in family f: 1 done, 0 none left. */
static int family_step(vms_pool *p, kfam *f, uint64_t *freed)
{
	if (f->msrc) /* a merge in progress first */
		return merge_step(p, f, f->msrc, f->mdst, freed);
	if (f->nsuspect)
		return suspect_step(p, f, freed);
	while (f->ntodo) {
		size_t at = f->ntodo - 1;
		int rc = examine(p, f, f->todo[at], freed);
		if (rc != 0)
			return rc;
		/* done with it: out of the stack, under what examine noted */
		memmove(&f->todo[at], &f->todo[at + 1], (f->ntodo - at - 1) * sizeof(*f->todo));
		f->ntodo--;
	}
	return 0;
}

int k_reap_step(vms_pool *p, uint64_t *freed)
{
	*freed = 0;
	for (size_t i = 0; i < p->nfams; i++) {
		kfam *f = p->fams[i];
		if (!f->ntodo && !f->msrc && !f->nsuspect)
			continue;
		log_lock(p, f);
		int rc = family_step(p, f, freed);
		log_unlock(p, f);
		if (rc != 0)
			return rc;
	}
	return 0;
}

uint64_t k_reap_pending(vms_pool *p)
{
	uint64_t n = 0;
	for (size_t i = 0; i < p->nfams; i++)
		n += p->fams[i]->ntodo || p->fams[i]->msrc || p->fams[i]->nsuspect;
	return n;
}
