/*
 * check.c - vms_pool_check: verify everything reachable on disk and
 * recompute every reference count.
 *
 * After committing (so that the disk holds the in-memory state) and with
 * commit_lock held exclusively, check
 *   - reads both commit records and verifies them;
 *   - reads every page-array node (space map, volume table) from disk,
 *     verifies its checksum and header, and compares the pages with memory;
 *   - walks every volume tree (including deleted volumes still being
 *     reaped), reading nodes from disk, verifying checksums, headers,
 *     levels and bounds; a node reached twice (shared) is descended once;
 *   - with VMS_CHECK_DATA, reads data blocks and verifies their checksums;
 *   - counts references per block and compares with the space map: a count
 *     higher than the references is a leak (repairable), lower is corruption.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

typedef struct ck {
	vms_pool *p;
	vms_check_report *rep;
	unsigned flags;
	uint32_t *expect;
	uint8_t *bufs[MAX_DEPTH + 1];
	uint8_t *data;
	uint64_t meta;
} ck;

static void bad(ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bad(ck *c, const char *fmt, ...)
{
	if (c->rep->corrupt++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->rep->first_error, sizeof(c->rep->first_error), fmt, ap);
		va_end(ap);
	}
}

static int count(ck *c, uint64_t blk, const char *what)
{
	if (blk < 2 || blk >= c->p->total_blocks) {
		bad(c, "%s: pointer to block %llu out of bounds", what, (unsigned long long)blk);
		return -1;
	}
	return (int)(c->expect[blk]++ == 0); /* 1 on the first visit */
}

/* Read a metadata block from disk and verify its checksum and header. */
static int read_meta(ck *c, uint8_t *buf, uint64_t blk, uint32_t crc, uint8_t type, int level,
                     const char *what)
{
	vms_pool *p = c->p;
	node *n = cache_find(p, blk);
	if (n && (n->dirty || n->pinned)) { /* a failed commit: memory ahead of disk */
		memcpy(buf, n->data, p->bs);
		return 0;
	}
	if (p->io->read(p->io, buf, p->bs, blk << p->bshift) < 0) {
		bad(c, "%s block %llu: %s", what, (unsigned long long)blk, vms_error_last());
		return -1;
	}
	uint32_t got = vms_crc32c(0, buf, p->bs);
	if (got != crc) {
		bad(c, "%s block %llu: checksum %08x, expected %08x", what, (unsigned long long)blk, got, crc);
		return -1;
	}
	if (node_check_header(p, buf, type, level, blk) < 0) {
		bad(c, "%s", vms_error_last());
		return -1;
	}
	c->rep->nodes_checked++;
	return 0;
}

/* ---- page arrays ------------------------------------------------------------- */

static void check_parray(ck *c, const parray *a, uint32_t level, uint64_t j)
{
	vms_pool *p = c->p;
	const char *what = a->type == NT_SMAP ? "space map" : "volume table";
	uint64_t blk = a->blk[level][j];
	if (blk == 0 && parray_hole_ok(a, level)) {
		/* a hole: every block of the page must be free */
		uint64_t b = smap_page_used(p, j);
		if (b != UINT64_MAX)
			bad(c, "space map page %llu is a hole but block %llu has count %u",
			    (unsigned long long)j, (unsigned long long)b, p->ref[b]);
		return;
	}
	if (count(c, blk, what) != 1) {
		if (blk >= 2 && blk < p->total_blocks)
			bad(c, "%s block %llu referenced twice", what, (unsigned long long)blk);
		return;
	}
	c->meta++;
	uint8_t *buf = c->bufs[level];
	if (read_meta(c, buf, blk, a->crc[level][j], level ? NT_VINT : a->type, (int)level, what) < 0)
		return;
	if (level == 0) {
		uint8_t rec[VREC_SIZE];
		if (a->type == NT_SMAP) {
			uint64_t per = smap_per_page(p);
			for (uint64_t i = 0; i < per; i++) {
				uint64_t b = j * per + i;
				uint32_t v = get32(buf + NODE_HDR + 4 * i);
				if (v != (b < p->total_blocks ? p->ref[b] : 0)) {
					bad(c, "space map page %llu differs from memory at block %llu",
					    (unsigned long long)j, (unsigned long long)b);
					return;
				}
			}
		} else {
			uint64_t per = vtab_per_page(p);
			for (uint64_t i = 0; i < per; i++) {
				vrec_encode(&p->recs[j * per + i], rec);
				if (memcmp(rec, buf + NODE_HDR + VREC_SIZE * i, VREC_SIZE) != 0) {
					bad(c, "volume table page %llu differs from memory", (unsigned long long)j);
					return;
				}
			}
		}
		return;
	}
	for (uint64_t k = 0; k < p->fanout; k++) {
		uint64_t ch = j * p->fanout + k;
		uint64_t eb = get64(buf + NODE_HDR + 16 * k);
		if (ch >= a->n[level - 1]) {
			if (eb)
				bad(c, "%s node %llu: entry past the end", what, (unsigned long long)blk);
			continue;
		}
		if (eb != a->blk[level - 1][ch] || get32(buf + NODE_HDR + 16 * k + 8) != a->crc[level - 1][ch]) {
			bad(c, "%s node %llu: child %llu differs from memory", what,
			    (unsigned long long)blk, (unsigned long long)k);
			continue;
		}
		check_parray(c, a, level - 1, ch);
	}
}

/* ---- volume trees ------------------------------------------------------------ */

static void check_tree(ck *c, uint64_t blk, uint32_t crc, int level, uint64_t base, uint64_t limit,
                       uint64_t vol)
{
	vms_pool *p = c->p;
	if (count(c, blk, "index") != 1)
		return;
	c->meta++;
	uint8_t *buf = c->bufs[level];
	char what[64];
	snprintf(what, sizeof(what), "volume %llu index", (unsigned long long)vol);
	if (read_meta(c, buf, blk, crc, NT_INDEX, level, what) < 0)
		return;
	for (unsigned i = 0; i < p->fanout; i++) {
		uint64_t e = get64(buf + NODE_HDR + 16 * i);
		uint32_t ecrc = get32(buf + NODE_HDR + 16 * i + 8);
		uint32_t fl = get32(buf + NODE_HDR + 16 * i + 12);
		/* Flags are checked on empty entries too: the read path
		 * (node_read) refuses a node with any flagged entry. */
		if (fl) {
			bad(c, "%s node %llu: entry %u has flags %#x", what, (unsigned long long)blk, i, fl);
			continue;
		}
		if (!e)
			continue;
		uint64_t cb = base + i * p->fpow[level];
		if (cb >= limit) {
			bad(c, "%s node %llu: entry %u beyond the volume's size", what,
			    (unsigned long long)blk, i);
			continue;
		}
		if (level > 0) {
			check_tree(c, e, ecrc, level - 1, cb, limit, vol);
			buf = c->bufs[level];
			continue;
		}
		int first = count(c, e, what);
		if (first != 1)
			continue;
		c->rep->data_checked++;
		if ((c->flags & VMS_CHECK_DATA) && p->data_checksums) {
			if (p->io->read(p->io, c->data, p->bs, e << p->bshift) < 0)
				bad(c, "data block %llu: %s", (unsigned long long)e, vms_error_last());
			else if (vms_crc32c(0, c->data, p->bs) != ecrc)
				bad(c, "data block %llu of volume %llu: checksum mismatch",
				    (unsigned long long)e, (unsigned long long)vol);
		}
	}
}

/* ---- key trees (format 3) ---------------------------------------------------- */

typedef struct kck {
	ck *c;
	kfam *f;
	uint64_t *nkeys;                 /* per version (index in f->vt.v) */
	uint64_t nlogkeys;
	uint64_t *logged, *keyed;        /* (version's index in f->vt.v << 40 | lblk) of log
	                                  * entries, of data keys */
	size_t nlogged, caplogged, nkeyed, capkeyed;
	int oom;
} kck;

static void kck_push(kck *k, uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap && array_grow(v, cap, sizeof(**v)) < 0) {
		k->oom = 1;
		return;
	}
	(*v)[(*n)++] = x;
}

/* A log node: read and verified; its entries remembered. */
static void kck_log(kck *k, kt_key key, kt_val v)
{
	ck *c = k->c;
	uint32_t ver = (uint32_t)(key.lblk - LOG_BASE);
	const vt_node *x = vt_find(&k->f->vt, ver);
	const vrec *r = x ? vol_find(c->p, x->rec) : NULL;
	k->nlogkeys++;
	if (!r || key.ver >= r->log_seq) {
		bad(c, "family %llu: log node %u of version %u, which has no such log",
		    (unsigned long long)k->f->id, key.ver, ver);
		return;
	}
	if (count(c, v.pblk, "log") != 1)
		return;
	c->meta++;
	uint8_t *buf = c->bufs[0];
	uint64_t fam;
	uint32_t nver, seq;
	unsigned n;
	if (read_meta(c, buf, v.pblk, v.crc, NT_LOG, 0, "log") < 0)
		return;
	if (klog_verify(c->p, buf, v.pblk) < 0) {
		bad(c, "%s", vms_error_last());
		return;
	}
	klog_node_info(buf, &fam, &nver, &seq, &n);
	if (fam != k->f->id || nver != ver || seq != key.ver) {
		bad(c, "log node %llu: names family %llu version %u node %u, its key another",
		    (unsigned long long)v.pblk, (unsigned long long)fam, nver, seq);
		return;
	}
	uint64_t xi = (uint64_t)(x - k->f->vt.v) << 40;
	for (unsigned i = 0; i < n; i++)
		kck_push(k, &k->logged, &k->nlogged, &k->caplogged, xi | klog_entry(buf, i));
}

static int kck_node(void *ctx, uint64_t blk)
{
	kck *k = ctx;
	if (count(k->c, blk, "key tree") == 1)
		k->c->meta++;
	return 0;
}

static int kck_key(void *ctx, kt_key key, kt_val v)
{
	kck *k = ctx;
	ck *c = k->c;
	if (key.lblk >= LOG_BASE) {
		kck_log(k, key, v);
		return 0;
	}
	int region = key.lblk >= DELTA_BASE; /* (DELTA_BASE + version, lblk) */
	uint32_t ver = region ? (uint32_t)(key.lblk - DELTA_BASE) : key.ver;
	uint64_t lblk = region ? key.ver : key.lblk;
	const vt_node *x = vt_find(&k->f->vt, ver);
	if (!x) {
		bad(c, "family %llu: key of block %llu names version %u, which does not exist",
		    (unsigned long long)k->f->id, (unsigned long long)lblk, ver);
		return 0;
	}
	if (region) { /* not logged: the region lists them */
		const vrec *r = vol_find(c->p, x->rec);
		if (!r || !(r->flags & VREC_DELTA))
			bad(c, "family %llu: block %llu in the delta region of version %u, which has none",
			    (unsigned long long)k->f->id, (unsigned long long)lblk, ver);
	} else {
		kck_push(k, &k->keyed, &k->nkeyed, &k->capkeyed,
		         (uint64_t)(x - k->f->vt.v) << 40 | lblk);
	}
	k->nkeys[x - k->f->vt.v]++;
	if (!v.pblk)
		return 0; /* a tombstone */
	if (count(c, v.pblk, "data") != 1)
		return 0; /* a second reference: the space map comparison reports it */
	c->rep->data_checked++;
	if ((c->flags & VMS_CHECK_DATA) && c->p->data_checksums) {
		if (c->p->io->read(c->p->io, c->data, c->p->bs, v.pblk << c->p->bshift) < 0)
			bad(c, "data block %llu: %s", (unsigned long long)v.pblk, vms_error_last());
		else if (vms_crc32c(0, c->data, c->p->bs) != v.crc)
			bad(c, "data block %llu of family %llu: checksum mismatch",
			    (unsigned long long)v.pblk, (unsigned long long)k->f->id);
	}
	return 0;
}

static int logged(const kck *k, uint64_t e)
{
	return k->nlogged && bsearch(&e, k->logged, k->nlogged, sizeof(*k->logged), u64_cmp);
}

static void check_family(ck *c, const vrec *fr)
{
	vms_pool *p = c->p;
	kck k = {.c = c, .f = fam_get(p, fr->id)};
	if (!k.f) {
		bad(c, "family %llu: not loaded", (unsigned long long)fr->id);
		return;
	}
	size_t n = vt_count(&k.f->vt);
	if (!(k.nkeys = calloc(n + 1, sizeof(*k.nkeys)))) {
		bad(c, "out of memory for the check");
		return;
	}
	int rc = kt_check(p, fr->id, kck_node, kck_key, &k);
	if (rc < 0) {
		bad(c, "family %llu key tree: %s", (unsigned long long)fr->id, vms_error_last());
	} else {
		uint64_t total = 0;
		for (size_t i = 0; i < n; i++) {
			const vrec *r = vol_find(p, k.f->vt.v[i].rec);
			total += k.nkeys[i];
			if (!r || r->fam != fr->id || r->ver != k.f->vt.v[i].ver)
				bad(c, "family %llu: version %u has no record", (unsigned long long)fr->id,
				    k.f->vt.v[i].ver);
			else if (r->nkeys != k.nkeys[i])
				bad(c, "volume %llu: %llu keys counted, its record says %llu",
				    (unsigned long long)r->id, (unsigned long long)k.nkeys[i],
				    (unsigned long long)r->nkeys);
		}
		if (total + k.nlogkeys != fr->nkeys)
			bad(c, "family %llu: %llu keys, its record says %llu", (unsigned long long)fr->id,
			    (unsigned long long)(total + k.nlogkeys), (unsigned long long)fr->nkeys);
		if (k.oom)
			bad(c, "out of memory for the check of family %llu's logs",
			    (unsigned long long)fr->id);
		/* every key is in its version's log (the collector finds it there) */
		if (k.nlogged)
			qsort(k.logged, k.nlogged, sizeof(*k.logged), u64_cmp);
		for (size_t i = 0; !k.oom && i < k.nkeyed; i++) {
			uint64_t lblk = k.keyed[i] & ((1ull << 40) - 1), xi = k.keyed[i] >> 40;
			if (logged(&k, k.keyed[i]))
				continue;
			/* a merge in progress moves keys before their log node: the
			 * other side's log names them meanwhile */
			uint32_t ver = k.f->vt.v[xi].ver, other = ver == k.f->msrc ? k.f->mdst
			                                        : ver == k.f->mdst ? k.f->msrc : 0;
			const vt_node *o = other ? vt_find(&k.f->vt, other) : NULL;
			if (o && logged(&k, (uint64_t)(o - k.f->vt.v) << 40 | lblk))
				continue;
			bad(c, "family %llu: the key of block %llu of version %u is in no log",
			    (unsigned long long)fr->id, (unsigned long long)lblk, ver);
			break;
		}
	}
	free(k.nkeys);
	free(k.logged);
	free(k.keyed);
}

static void check_records(ck *c)
{
	vms_pool *p = c->p;
	uint8_t buf[SB_SIZE];
	for (uint64_t slot = 0; slot < 2; slot++) {
		if (p->io->read(p->io, buf, SB_SIZE, slot << p->bshift) < 0) {
			bad(c, "commit record %llu: %s", (unsigned long long)slot, vms_error_last());
			continue;
		}
		if (memcmp(buf, SB_MAGIC, 8) != 0 ||
		    get32(buf + SB_SIZE - 4) != vms_crc32c(0, buf, SB_SIZE - 4)) {
			bad(c, "commit record %llu: bad magic or checksum", (unsigned long long)slot);
			continue;
		}
		uint64_t txg = get64(buf + 40);
		if ((txg & 1) != slot || get32(buf + 12) != p->bs || memcmp(buf + 24, p->uuid, 16) != 0)
			bad(c, "commit record %llu: inconsistent fields", (unsigned long long)slot);
		if ((!p->readonly || p->opened_readonly) && txg == p->txg - 1 &&
		    (get64(buf + 56) != p->smap.blk[p->smap.depth][0] ||
		     get64(buf + 72) != p->vtab.blk[p->vtab.depth][0]))
			bad(c, "commit record %llu: roots differ from memory", (unsigned long long)slot);
	}
}

int vms_pool_check(vms_check_report *out, vms_pool *p, unsigned flags)
{
	ck c = {.p = p, .rep = out, .flags = flags};
	int rc = 0;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->commit_mx);
	pthread_rwlock_wrlock(&p->commit_lock);
	pthread_mutex_lock(&p->lock);
	if (!p->readonly && (rc = pool_commit_locked(p)) < 0)
		goto done;
	if (!(c.expect = calloc(p->total_blocks, sizeof(uint32_t))) || !(c.data = malloc(p->bs))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory for the check");
		goto done;
	}
	for (unsigned l = 0; l <= MAX_DEPTH; l++)
		if (!(c.bufs[l] = malloc(p->bs))) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory for the check");
			goto done;
		}
	c.expect[0] = c.expect[1] = 1;
	check_records(&c);
	check_parray(&c, &p->smap, p->smap.depth, 0);
	check_parray(&c, &p->vtab, p->vtab.depth, 0);
	for (uint64_t s = 0; s < p->nslots; s++) {
		const vrec *r = &p->recs[s];
		if (r->id && r->kind == VREC_FAMILY)
			check_family(&c, r);
		if (!r->id || !r->root || p->keys)
			continue;
		check_tree(&c, r->root, r->root_crc, r->depth - 1, 0,
		           (r->size + p->bs - 1) >> p->bshift, r->id);
	}
	for (uint64_t b = 0; b < p->total_blocks; b++) {
		if (p->ref[b] > c.expect[b])
			out->leaked_blocks++;
		else if (p->ref[b] < c.expect[b])
			bad(&c, "block %llu: space map count %u, %u references", (unsigned long long)b,
			    p->ref[b], c.expect[b]);
	}
	if ((flags & VMS_CHECK_REPAIR) && !out->corrupt && !p->readonly &&
	    (out->leaked_blocks || c.meta != p->meta_blocks)) {
		for (uint64_t b = 0; b < p->total_blocks; b++) {
			if (p->ref[b] <= c.expect[b])
				continue;
			p->ref[b] = c.expect[b] + 1;
			sm_unref(p, b); /* to the expected count; a freed block is deferred */
		}
		p->meta_blocks = c.meta;
		p->dirty = 1;
		rc = pool_commit_locked(p);
	}
	if (rc == 0 && out->corrupt)
		rc = vms_error_set(VMS_ECORRUPT, "pool check: %llu errors; first: %s",
		                   (unsigned long long)out->corrupt, out->first_error);
done:
	pthread_mutex_unlock(&p->lock);
	pthread_rwlock_unlock(&p->commit_lock);
	pthread_mutex_unlock(&p->commit_mx);
	free(c.expect);
	free(c.data);
	for (unsigned l = 0; l <= MAX_DEPTH; l++)
		free(c.bufs[l]);
	return rc;
}
