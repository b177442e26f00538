/*
 * keyvol.c - volumes of format 3 pools: the versioned-key index
 * (docs/design/index-v3.md, keys.h).
 *
 * A family is a volume with every snapshot and clone descended from it:
 * one key tree (ktree.c) of (lblk, version) -> data block, and a version
 * tree (vtree.c).  Version ids are handed out downwards, so a descendant's
 * id is smaller than its ancestors'.  A read of version v at lblk takes
 * the first key at or after (lblk, v) whose version is v or one of its
 * ancestors: the nearest ancestor that wrote the block.  A key whose block
 * is 0 is a tombstone (trimmed: reads zeros).
 *
 * Records: the family (kind VREC_FAMILY, hidden: the key tree's root; its
 * `ver` is the next id to hand out), and one record per version: a volume
 * (its live version, the only kind written), a snapshot (never holds
 * keys), an interior (hidden: a live version frozen by a snapshot or a
 * clone, holding what was written while it was live).  A data block is
 * referenced by exactly one key (count 1).
 *
 * Snapshot of V: V's live version L becomes an interior with two new
 * children, the snapshot S and V's new live version (S gets the larger
 * id, so a read of S never even passes over V's new keys).  Clone of a
 * snapshot: a new live child of it.  Delete and rollback leave the
 * versions' keys to the garbage collector (k_reap_step): a key is kept
 * while some readable version (volume or snapshot) resolves to it.
 *
 * Locks as in tree.c: pool->lock for everything here (dropped by the key
 * tree to load nodes), commit_lock shared by I/O, exclusive by snapshot,
 * clone, rollback, delete.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_private.h"
#include "engine/keys.h"

#define VER_FIRST 0xfffffffeu            /* first id of a family (v+1 never wraps) */

/* ---- families ----------------------------------------------------------- */

kfam *fam_get(vms_pool *p, uint64_t id)
{
	size_t lo = 0, hi = p->nfams;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p->fams[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < p->nfams && p->fams[lo]->id == id ? p->fams[lo] : NULL;
}

static int fam_add(vms_pool *p, uint64_t id, kfam **out)
{
	if (p->nfams == p->fams_cap && array_grow(&p->fams, &p->fams_cap, sizeof(*p->fams)) < 0)
		return VMS_ENOMEM;
	kfam *f = calloc(1, sizeof(*f));
	if (!f)
		return vms_error_set(VMS_ENOMEM, "out of memory for a family");
	f->id = id;
	vt_init(&f->vt);
	size_t at = p->nfams;
	while (at > 0 && p->fams[at - 1]->id > id)
		at--;
	memmove(&p->fams[at + 1], &p->fams[at], (p->nfams - at) * sizeof(*p->fams));
	p->fams[at] = f;
	p->nfams++;
	*out = f;
	return 0;
}

void fam_note(vms_pool *p, kfam *f, uint32_t ver)
{
	if (!f || !ver)
		return;
	/* a failed push only leaves the garbage until the next open */
	if (f->ntodo < f->todo_cap || array_grow(&f->todo, &f->todo_cap, sizeof(*f->todo)) == 0)
		f->todo[f->ntodo++] = ver;
	pool_kick(p);
}

void fam_changed(vms_pool *p, uint64_t fid)
{
	kfam *f = fam_get(p, fid);
	if (f)
		f->ugen++;
}

void fams_free(vms_pool *p)
{
	for (size_t i = 0; i < p->nfams; i++) {
		free(p->fams[i]->todo);
		free(p->fams[i]->uc);
		free(p->fams[i]->suspect);
		vt_free(&p->fams[i]->vt);
		free(p->fams[i]);
	}
	free(p->fams);
	p->fams = NULL;
	p->nfams = p->fams_cap = 0;
}

static int ver_rec_cmp(const void *a, const void *b)
{
	const vrec *x = *(const vrec *const *)a, *y = *(const vrec *const *)b;
	if (x->fam != y->fam)
		return x->fam < y->fam ? -1 : 1;
	return x->ver > y->ver ? -1 : x->ver < y->ver; /* parents (larger ids) first */
}

static int fam_set_rec(kfam *f, uint32_t ver, uint64_t rec)
{
	vt_node *n = (vt_node *)vt_find(&f->vt, ver);
	if (!n)
		return vms_error_set(VMS_EIO, "internal: version %u missing", ver);
	n->rec = rec;
	return 0;
}

/* Build the families and their version trees from the records (open). */
int fams_load(vms_pool *p)
{
	const vrec **v = NULL;
	size_t nv = 0;
	int rc = 0;
	for (size_t i = 0; i < p->nvidx; i++) {
		const vrec *r = &p->recs[p->vidx[i].slot];
		kfam *f;
		if (r->kind == VREC_FAMILY && (rc = fam_add(p, r->id, &f)) < 0)
			return rc;
	}
	if (!(v = malloc((p->nvidx + 1) * sizeof(*v))))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	for (size_t i = 0; i < p->nvidx; i++)
		if (p->recs[p->vidx[i].slot].kind != VREC_FAMILY)
			v[nv++] = &p->recs[p->vidx[i].slot];
	qsort(v, nv, sizeof(*v), ver_rec_cmp);
	for (size_t i = 0; i < nv; i++) {
		const vrec *r = v[i];
		kfam *f = fam_get(p, r->fam);
		const vrec *fr = vol_find(p, r->fam);
		if (!f || !fr || r->ver <= fr->ver) {
			rc = vms_error_set(VMS_ECORRUPT, "volume table: volume %llu: bad family %llu or "
			                   "version %u", (unsigned long long)r->id,
			                   (unsigned long long)r->fam, r->ver);
			goto done;
		}
		if ((rc = vt_add(&f->vt, r->ver, r->parent_ver)) < 0) {
			rc = vms_error_wrap(VMS_ECORRUPT, "volume table: volume %llu", (unsigned long long)r->id);
			goto done;
		}
		if ((rc = fam_set_rec(f, r->ver, r->id)) < 0)
			goto done;
		if (r->flags & VREC_MERGING)
			f->msrc = r->ver; /* resumed: its destination is found below */
	}
	/* after open the collector looks at every version once; a merge in
	 * progress goes on into the relative marked as its destination */
	for (size_t i = 0; rc == 0 && i < p->nfams; i++) {
		kfam *f = p->fams[i];
		for (size_t j = 0; j < vt_count(&f->vt); j++) {
			const vt_node *x = &f->vt.v[j];
			const vrec *r = vol_find(p, x->rec);
			if (f->msrc && r && (r->flags & VREC_MERGE_DST) &&
			    (x->ver == vt_find(&f->vt, f->msrc)->parent || x->parent == f->msrc))
				f->mdst = x->ver;
			fam_note(p, f, x->ver);
		}
		if (f->msrc && !f->mdst)
			rc = vms_error_set(VMS_ECORRUPT, "family %llu: version %u merging into nothing",
			                   (unsigned long long)f->id, f->msrc);
	}
done:
	free(v);
	return rc;
}

/* The next version id of family fr (its record; pool->lock held). */
static int ver_new(vms_pool *p, vrec *fr, uint32_t *out)
{
	if (fr->ver < 2)
		return vms_error_set(VMS_ENOSPC, "family %llu has used all its version ids",
		                     (unsigned long long)fr->id);
	*out = fr->ver--;
	vol_mark(p, fr);
	return 0;
}

/* Register version ver (child of parent) of family f held by record rec. */
static int ver_add(kfam *f, uint32_t ver, uint32_t parent, uint64_t rec)
{
	int rc = vt_add(&f->vt, ver, parent);
	return rc < 0 ? rc : fam_set_rec(f, ver, rec);
}

int k_vol_create(vms_pool *p, uint64_t size, vms_vol_id *out)
{
	vrec *fr = NULL, *r = NULL;
	kfam *f = NULL;
	uint32_t ver = 0;
	int rc;
	if ((rc = vol_slot_new(p, &fr)) < 0)
		return rc;
	fr->kind = VREC_FAMILY;
	fr->flags = VREC_HIDDEN;
	fr->ver = VER_FIRST;
	uint64_t fid = fr->id;
	if ((rc = fam_add(p, fid, &f)) < 0 || (rc = vol_slot_new(p, &r)) < 0)
		goto fail;
	fr = vol_find(p, fid);
	if ((rc = ver_new(p, fr, &ver)) < 0)
		goto fail;
	r->kind = VMS_VOL_VOLUME;
	r->flags = VREC_DELTA;
	r->size = size;
	r->fam = fid;
	r->ver = ver;
	if ((rc = ver_add(f, ver, 0, r->id)) < 0)
		goto fail;
	vol_mark(p, r);
	*out = r->id;
	return 0;
fail:
	if (r)
		vol_remove(p, vol_find(p, r->id));
	if ((fr = vol_find(p, fid)))
		vol_remove(p, fr);
	return rc;
}

/* Record `in` takes over volume r's live version (of family f) as a hidden
 * interior: its keys, its log, its place in the version tree. */
static void interior_of(kfam *f, vrec *in, const vrec *r, uint8_t flags)
{
	in->kind = VREC_INTERIOR;
	in->flags = flags | (r->flags & VREC_DELTA); /* its delta region goes with it */
	in->fam = r->fam;
	in->ver = r->ver;
	in->parent_ver = r->parent_ver;
	in->size = r->size;
	in->nkeys = r->nkeys;
	in->log_seq = r->log_seq;
	in->origin = r->id;
	fam_set_rec(f, r->ver, in->id);
}

/*
 * Freeze volume vol's live version into a new hidden interior record and
 * give vol a new live version, a child of it.  *sib receives a version id
 * handed out just before vol's new one (so larger: a read of a snapshot
 * made there never passes over vol's new keys), for the caller to attach
 * under *frozen.  The freeze alone is a consistent state: a caller that
 * fails later leaves it (the id is skipped).  Exclusive commit_lock.
 */
static int freeze(vms_pool *p, vms_vol_id vol, uint32_t *sib, uint32_t *frozen)
{
	vrec *r = vol_find(p, vol), *in = NULL, *fr;
	uint64_t fid = r->fam;
	kfam *f = fam_get(p, fid);
	uint32_t lver = 0;
	int rc;
	if (!f)
		return vms_error_set(VMS_EIO, "internal: family of volume %llu missing",
		                     (unsigned long long)vol);
	if ((rc = vol_slot_new(p, &in)) < 0)
		return rc;
	r = vol_find(p, vol);
	fr = vol_find(p, fid);
	if ((rc = ver_new(p, fr, sib)) < 0 || (rc = ver_new(p, fr, &lver)) < 0 ||
	    (rc = ver_add(f, lver, r->ver, r->id)) < 0) {
		vol_remove(p, in);
		return rc;
	}
	interior_of(f, in, r, VREC_HIDDEN);
	in->mapped = r->mapped;
	in->written = r->written;
	*frozen = r->ver;
	r->parent_ver = r->ver;
	r->ver = lver;
	r->flags |= VREC_DELTA;
	r->nkeys = 0;
	r->log_seq = 0;
	r->written = 0;
	/* what it wrote since it was made is in the frozen version now, not
	 * in its own delta region, which k_lookup checks before taking its
	 * source's view: that view no longer serves it (kview.c) */
	r->kv_src = 0;
	vol_mark(p, r);
	vol_mark(p, in);
	fam_note(p, f, in->parent_ver); /* its parent may merge with it now */
	fam_note(p, f, in->ver);        /* its delta region is flushed */
	return 0;
}

/* A new version id *ver, to be a child of *parent, that reads what src
 * (a snapshot or a volume) reads now: a live volume is frozen first. */
static int version_reading(vms_pool *p, vms_vol_id src, int keep_written, uint32_t *ver,
                           uint32_t *parent, kfam **f)
{
	vrec *s = vol_find(p, src);
	if (!(*f = fam_get(p, s->fam)))
		return vms_error_set(VMS_EIO, "internal: family of volume %llu missing",
		                     (unsigned long long)src);
	*parent = s->ver;
	if (s->kind != VMS_VOL_VOLUME)
		return ver_new(p, vol_find(p, s->fam), ver);
	uint64_t written = s->written;
	int rc = freeze(p, src, ver, parent);
	if (rc == 0 && !keep_written) /* a snapshot: src's writes since are new */
		return 0;
	if (rc == 0 && (s = vol_find(p, src))) { /* a clone or rollback: as format 2, unchanged */
		s->written = written;
		vol_mark(p, s);
	}
	return rc;
}

/* A new record of kind `kind` reading what volume or snapshot src reads
 * now. */
static int child_of(vms_pool *p, vms_vol_id src, uint8_t kind, vms_vol_id *out)
{
	vrec *s = vol_find(p, src), *c = NULL;
	uint64_t written = s->written;
	kfam *f;
	uint32_t ver = 0, parent = 0;
	int rc = version_reading(p, src, kind != VMS_VOL_SNAPSHOT, &ver, &parent, &f);
	if (rc < 0 || (rc = vol_slot_new(p, &c)) < 0)
		return rc;
	if ((rc = ver_add(f, ver, parent, c->id)) < 0) {
		vol_remove(p, c);
		return rc;
	}
	s = vol_find(p, src);
	c->kind = kind;
	c->flags = VREC_DELTA;
	c->fam = s->fam;
	c->ver = ver;
	c->parent_ver = parent;
	c->size = s->size;
	c->mapped = s->mapped;
	c->written = kind == VMS_VOL_SNAPSHOT ? written : 0;
	c->origin = src;
	c->kv_src = src;        /* it reads what src reads now (kview.c) */
	c->kv_src_gen = p->kv_gen;
	vol_mark(p, c);
	fam_changed(p, c->fam); /* a new reader shares what src had alone */
	fam_note(p, f, ver); /* its (empty) delta region's flag goes once its parent's has */
	*out = c->id;
	return 0;
}

int k_snapshot_one(vms_pool *p, vms_vol_id vol, vms_vol_id *out)
{
	return child_of(p, vol, VMS_VOL_SNAPSHOT, out);
}

int k_clone(vms_pool *p, vms_vol_id src, vms_vol_id *out)
{
	return child_of(p, src, VMS_VOL_VOLUME, out);
}

/* Volume vol's live version goes (to the collector) and vol reads what
 * snap (a snapshot or another volume, of any family) reads now. */
int k_rollback(vms_pool *p, vms_vol_id vol, vms_vol_id snap)
{
	vrec *r, *s, *h = NULL;
	kfam *nf;
	uint32_t ver = 0, parent = 0;
	int rc = version_reading(p, snap, 1, &ver, &parent, &nf);
	if (rc < 0 || (rc = vol_slot_new(p, &h)) < 0)
		return rc;
	if ((rc = ver_add(nf, ver, parent, vol)) < 0) {
		vol_remove(p, h);
		return rc;
	}
	kv_drop(p, vol);
	r = vol_find(p, vol);
	uint64_t ofam = r->fam;
	interior_of(fam_get(p, ofam), h, r, VREC_HIDDEN | VREC_DELETING);
	p->ndeleting++;
	s = vol_find(p, snap);
	r->fam = s->fam;
	r->ver = ver;
	r->flags |= VREC_DELTA;
	r->parent_ver = parent;
	r->size = s->size;
	r->mapped = s->mapped;
	r->written = 0;
	r->nkeys = 0;
	r->log_seq = 0;
	r->kv_src = snap; /* it reads what snap reads now (kview.c) */
	r->kv_src_gen = p->kv_gen;
	vol_mark(p, r);
	fam_changed(p, ofam);
	fam_changed(p, r->fam);
	vol_mark(p, h);
	klog_reader_gone(p, ofam, h->ver);
	return 0;
}

void k_deleted(vms_pool *p, const vrec *r)
{
	kv_drop(p, r->id);
	fam_changed(p, r->fam);
	klog_reader_gone(p, r->fam, r->ver);
}

/* ---- lookups ------------------------------------------------------------ */

typedef struct kfind {
	kfam *f;
	uint32_t v;
	int found;
	kt_val val;
} kfind;

static int find_cb(void *ctx, kt_key k, kt_val v)
{
	kfind *x = ctx;
	if (k.ver != x->v && !vt_is_ancestor(&x->f->vt, k.ver, x->v))
		return 0;
	x->found = 1;
	x->val = v;
	return 1;
}

/* The key version v of family fid reads at lblk, looking at keys of
 * versions >= from (v, or v + 1 to skip v's own): 1 found (*out; pblk 0 =
 * a tombstone), 0 none.  May drop pool->lock. */
static int k_find(vms_pool *p, uint64_t fid, uint32_t v, uint32_t from, uint64_t lblk, kt_val *out)
{
	kfind x = {fam_get(p, fid), v, 0, {0, 0}};
	if (!x.f)
		return vms_error_set(VMS_EIO, "internal: family %llu missing", (unsigned long long)fid);
	int rc = kt_walk(p, fid, (kt_key){lblk, from}, (kt_key){lblk + 1, 0}, find_cb, &x);
	if (rc < 0)
		return rc;
	*out = x.val;
	return x.found;
}

/* The key version v of family fid reads at lblk: in the delta regions of v
 * (when self) and of its ancestors that have one, nearest first, then among
 * the data keys of v (when self) and its ancestors (k_find).  The versions
 * with a region are a suffix of every path (the collector flushes parents
 * first), so the first key met is the nearest.  1 found (*out; pblk 0 a
 * tombstone), 0 none.  May drop pool->lock. */
static int k_resolve(vms_pool *p, uint64_t fid, uint32_t v, int self, uint64_t lblk, kt_val *out)
{
	kfam *f = fam_get(p, fid);
	if (!f)
		return vms_error_set(VMS_EIO, "internal: family %llu missing", (unsigned long long)fid);
	for (uint32_t a = v; a;) {
		const vt_node *x = vt_find(&f->vt, a);
		const vrec *r = x ? vol_find(p, x->rec) : NULL;
		if (!r || !(r->flags & VREC_DELTA))
			break;
		uint32_t parent = x->parent; /* x may move while the lock drops */
		if (a != v || self) {
			int rc = kt_get(p, fid, delta_key(a, lblk), out);
			if (rc != 0)
				return rc;
		}
		a = parent;
	}
	return k_find(p, fid, v, self ? v : v + 1, lblk, out);
}

int k_lookup_tree(vms_pool *p, vms_vol_id id, uint64_t lblk, uint64_t *pblk, uint32_t *crc)
{
	vrec *r = vol_find(p, id);
	kt_val v = {0, 0};
	uint64_t gen = p->kv_gen;
	if (!r)
		return vms_error_set(VMS_ENOTFOUND, "volume %llu not found", (unsigned long long)id);
	int rc = k_resolve(p, r->fam, r->ver, 1, lblk, &v);
	if (rc < 0)
		return rc;
	*pblk = rc ? v.pblk : 0;
	*crc = rc ? v.crc : 0;
	if (p->kv_gen == gen) /* no change while the lock was dropped */
		kv_put(p, id, lblk, *pblk, *crc);
	return 0;
}

/* What record id reads at lblk, if the view cache knows without a search:
 * its own entry, or its source's while unchanged (k_lookup).  For a volume
 * with a delta region and no key of its own at lblk, that is what its
 * ancestors give it (a write's old data). */
static int k_view_cached(vms_pool *p, vms_vol_id id, uint64_t lblk, kt_val *out)
{
	uint64_t b;
	uint32_t c;
	const vrec *r = vol_find(p, id);
	if (!kv_get(p, id, lblk, &b, &c) &&
	    !(r && r->kv_src && kv_get_as_of(p, r->kv_src, r->kv_src_gen, lblk, &b, &c)))
		return 0;
	*out = (kt_val){b, c};
	return 1;
}

/* From the view cache when it has the block.  A new snapshot or clone with
 * no key of its own there reads what its source read when it was made:
 * the source's entry serves while its chunk has not changed since. */
int k_lookup(vms_pool *p, vms_vol_id id, uint64_t lblk, uint64_t *pblk, uint32_t *crc)
{
	if (kv_get(p, id, lblk, pblk, crc))
		return 0;
	vrec *r = vol_find(p, id);
	if (!r || !r->kv_src || !kv_get_as_of(p, r->kv_src, r->kv_src_gen, lblk, pblk, crc))
		return k_lookup_tree(p, id, lblk, pblk, crc);
	if (r->kind == VMS_VOL_VOLUME && (r->flags & VREC_DELTA)) { /* its own writes first */
		uint64_t fam = r->fam, gen = p->kv_gen;
		kt_val v = {0, 0};
		int rc = kt_get(p, fam, delta_key(r->ver, lblk), &v); /* may drop the lock */
		if (rc < 0)
			return rc;
		if (rc == 1 || p->kv_gen != gen) /* its own, or a change meanwhile */
			return k_lookup_tree(p, id, lblk, pblk, crc);
	} else if (r->kind == VMS_VOL_VOLUME || r->nkeys) { /* keys of its own elsewhere */
		return k_lookup_tree(p, id, lblk, pblk, crc);
	}
	kv_put(p, id, lblk, *pblk, *crc);
	return 0;
}

/* ---- writes ----------------------------------------------------------------- */

static int key_put(vms_pool *p, uint64_t fid, kt_key k, kt_val v, int use_reserve)
{
	int rc = kt_prepare(p, fid, k);
	return rc < 0 ? rc : kt_put(p, fid, k, v, use_reserve, NULL);
}

static int key_del(vms_pool *p, uint64_t fid, kt_key k)
{
	int rc = kt_prepare(p, fid, k);
	return rc < 0 ? rc : kt_del(p, fid, k, NULL);
}

/* Unmap block lblk of the live version (a whole-block trim or zeroing). */
static int unmap(vms_pool *p, vms_vol_id id, uint64_t fid, uint32_t L, uint64_t lblk)
{
	kt_val own = {0, 0}, anc = {0, 0};
	int delta = !!(vol_find(p, id)->flags & VREC_DELTA);
	kt_key ok = delta ? delta_key(L, lblk) : (kt_key){lblk, L};
	int rc, has_own = kt_get(p, fid, ok, &own);
	if (has_own < 0)
		return has_own;
	if (has_own && own.pblk == 0)
		return 0; /* already a tombstone */
	int has_anc = k_resolve(p, fid, L, 0, lblk, &anc);
	if (has_anc < 0)
		return has_anc;
	int anc_data = has_anc && anc.pblk;
	if (!has_own && !anc_data)
		return 0; /* a hole already */
	if (!delta && anc_data && !has_own && (rc = klog_append(p, fid, L, lblk)) < 0)
		return rc;
	if (anc_data)
		rc = key_put(p, fid, ok, (kt_val){0, 0}, 1);
	else
		rc = key_del(p, fid, ok);
	if (rc < 0)
		return rc;
	kv_update(p, id, lblk, 0, 0);
	fam_changed(p, fid);
	if (delta && !has_own && anc_data)
		klog_shadowed(p, fid, L, lblk, 1);
	vrec *r = vol_find(p, id);
	if (has_own) {
		sm_unref(p, own.pblk);
		if (r->written)
			r->written--;
		if (!anc_data)
			r->nkeys--;
	} else {
		r->nkeys++;
	}
	if (r->mapped)
		r->mapped--;
	vol_mark(p, r);
	return 0;
}

int k_modify_chunk(vms_pool *p, vms_vol_id id, int op, const uint8_t *src, uint64_t off,
                   uint64_t *pos, uint64_t end, uint64_t hi, wblk *w)
{
	vrec *r = vol_find(p, id);
	uint64_t fid = r->fam, lblk0 = *pos >> p->bshift;
	uint32_t L = r->ver;
	int delta = !!(r->flags & VREC_DELTA); /* its keys go to its delta region */
	size_t nw = 0;
	int rc = 0, changed = 0;
	if (op == OP_WRITE) {
		uint64_t need = 2 * (uint64_t)MAX_DEPTH + (hi - lblk0);
		if (sm_avail(p) < p->reserve + sm_commit_need(p) + need)
			return vms_error_set(VMS_ENOSPC, "pool is full: %llu blocks free, %llu in reserve",
			                     (unsigned long long)sm_avail(p),
			                     (unsigned long long)p->reserve);
	}
	/* plan, under the lock (dropped only by node loads; the claim and
	 * commit_lock keep every block of the chunk as looked up) */
	uint64_t at = *pos;
	while (at < end && (at >> p->bshift) < hi) {
		uint64_t lblk = at >> p->bshift;
		uint32_t bo = (uint32_t)(at & (p->bs - 1));
		uint32_t n = (uint32_t)(p->bs - bo < end - at ? p->bs - bo : end - at);
		if (op != OP_WRITE && n == p->bs) {
			if ((rc = unmap(p, id, fid, L, lblk)) < 0)
				break;
			at += n;
			continue;
		}
		kt_val own = {0, 0}, cur = {0, 0};
		int has_own = kt_get(p, fid, delta ? delta_key(L, lblk) : (kt_key){lblk, L}, &own);
		if (has_own < 0) {
			rc = has_own;
			break;
		}
		if (has_own) {
			cur = own;
		} else if (!(delta && k_view_cached(p, id, lblk, &cur))) {
			int found = k_resolve(p, fid, L, 0, lblk, &cur);
			if (found < 0) {
				rc = found;
				break;
			}
		}
		if (op != OP_WRITE && (op == OP_TRIM || !cur.pblk)) {
			at += n; /* trims are advisory; zeros over a hole are a hole */
			continue;
		}
		wblk *b = &w[nw];
		*b = (wblk){(unsigned)(lblk - lblk0), bo, n,
		            op == OP_WRITE ? src + (at - off) : engine_zero_block,
		            cur.pblk, cur.crc, 0, 0, 0, has_own ? own.pblk : 0, (uint8_t)has_own,
		            (uint8_t)(cur.pblk != 0)};
		if (has_own && own.pblk && sm_is_fresh(p, own.pblk))
			b->dst = own.pblk; /* unshared and never committed: in place */
		else if ((rc = sm_alloc(p, 0, &b->dst)) < 0)
			break; /* write what was planned, then fail */
		nw++;
		at += n;
	}
	*pos = at;
	if (nw == 0)
		return rc;

	int io_rc = write_planned(p, w, nw);

	for (size_t k = 0; k < nw; k++) {
		wblk *b = &w[k];
		int in_place = b->dst == b->own && b->own;
		uint64_t lblk = lblk0 + b->i;
		kt_key key = delta ? delta_key(L, lblk) : (kt_key){lblk, L};
		if (!b->done) {
			if (!in_place)
				sm_unref(p, b->dst);
			continue;
		}
		int prc = b->had_own || delta ? 0 : klog_append(p, fid, L, lblk);
		if (prc == 0)
			prc = key_put(p, fid, key, (kt_val){b->dst, b->crc}, 0);
		if (prc < 0) {
			if (!in_place)
				sm_unref(p, b->dst);
			if (rc == 0)
				rc = prc;
			continue;
		}
		kv_update(p, id, lblk, b->dst, b->crc);
		if (!b->had_own || !b->own) /* a new key, or data over its tombstone */
			changed = 1;
		if (delta && !b->had_own)
			klog_shadowed(p, fid, L, lblk, b->was_mapped);
		if (in_place)
			continue;
		r = vol_find(p, id);
		if (b->own)
			sm_unref(p, b->own);
		else
			r->written++;
		if (!b->had_own)
			r->nkeys++;
		if (!b->was_mapped)
			r->mapped++;
		vol_mark(p, r);
	}
	if (changed)
		fam_changed(p, fid);
	return io_rc < 0 ? io_rc : rc;
}

/* ---- which keys serve whom ---------------------------------------------------
 *
 * A key serves the readable versions (a volume's live version, a
 * snapshot; not being deleted) that resolve to it.  With the version tree
 * numbered (Euler tour: the subtree of x is [pre(x), post(x)]), a key of
 * version x at some lblk serves the readers in x's subtree minus the
 * subtrees of the other keys of that lblk below x.  The queries below
 * (unique bytes) count with it; the collector (klog.c) needs it only in
 * the simple forms of its cases.
 */

#define GC_BATCH 4096u                   /* keys looked at per hold of the locks */

typedef struct gkey {
	kt_key k;
	kt_val v;
} gkey;

typedef struct gbatch {
	gkey *v;
	size_t n, cap;
	uint64_t stop_lblk;                  /* keys of lblk >= this were not taken */
	int full;
} gbatch;

static int gather_cb(void *ctx, kt_key k, kt_val v)
{
	gbatch *b = ctx;
	if (b->full && k.lblk != b->v[b->n - 1].k.lblk) {
		b->stop_lblk = k.lblk;
		return 1;
	}
	if (b->n == b->cap && array_grow(&b->v, &b->cap, sizeof(*b->v)) < 0)
		return VMS_ENOMEM;
	b->v[b->n++] = (gkey){k, v};
	if (b->n >= GC_BATCH)
		b->full = 1;
	return 0;
}


/* Readers numbered in [lo, hi]. */
static size_t count_in(const uint32_t *r, size_t n, uint32_t lo, uint32_t hi)
{
	size_t a = 0, b = n;
	while (a < b) {
		size_t m = (a + b) / 2;
		if (r[m] < lo)
			a = m + 1;
		else
			b = m;
	}
	size_t first = a;
	b = n;
	while (a < b) {
		size_t m = (a + b) / 2;
		if (r[m] <= hi)
			a = m + 1;
		else
			b = m;
	}
	return a - first;
}

/* The family's readers (pre number, record), by pre number (the tree
 * numbered). */
typedef struct rdr {
	uint32_t pre;
	uint64_t rec;
} rdr;

static int rdr_cmp(const void *a, const void *b)
{
	const rdr *x = a, *y = b;
	return x->pre < y->pre ? -1 : x->pre > y->pre;
}

static int readers_sorted(vms_pool *p, kfam *f, rdr **out, size_t *nout)
{
	size_t n = vt_count(&f->vt), m = 0;
	rdr *v = malloc((n + 1) * sizeof(*v));
	int rc = v ? vt_number(&f->vt) : vms_error_set(VMS_ENOMEM, "out of memory for the readers");
	if (rc < 0) {
		free(v);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		const vt_node *x = &f->vt.v[i];
		if (is_reader(vol_find(p, x->rec)))
			v[m++] = (rdr){x->pre, x->rec};
	}
	qsort(v, m, sizeof(*v), rdr_cmp);
	*out = v;
	*nout = m;
	return 0;
}

int k_readers(vms_pool *p, kfam *f, uint32_t **out, size_t *nout)
{
	rdr *v = NULL;
	int rc = readers_sorted(p, f, &v, nout);
	uint32_t *pre = rc == 0 ? malloc((*nout + 1) * sizeof(*pre)) : NULL;
	if (rc == 0 && !pre)
		rc = vms_error_set(VMS_ENOMEM, "out of memory for the readers");
	for (size_t i = 0; rc == 0 && i < *nout; i++)
		pre[i] = v[i].pre;
	free(v);
	*out = pre;
	return rc;
}

typedef struct vrange {
	uint32_t pre, post;
} vrange;

static int vrange_cmp(const void *a, const void *b)
{
	const vrange *x = a, *y = b;
	return x->pre < y->pre ? -1 : x->pre > y->pre;
}

int k_key_serves(kfam *f, uint32_t ver, const kver *keys, size_t n, const uint32_t *rd,
                 size_t nrd)
{
	const vt_node *x = vt_find(&f->vt, ver);
	vrange *c = malloc((n + 1) * sizeof(*c));
	size_t m = 0;
	if (!x || !c) {
		free(c);
		return x ? vms_error_set(VMS_ENOMEM, "out of memory for the collector") : 1;
	}
	for (size_t i = 0; i < n; i++) { /* the keys below ver's: what they serve is theirs */
		const vt_node *y = keys[i].ver != ver ? vt_find(&f->vt, keys[i].ver) : NULL;
		if (y && y->pre > x->pre && y->pre <= x->post)
			c[m++] = (vrange){y->pre, y->post};
	}
	qsort(c, m, sizeof(*c), vrange_cmp);
	uint32_t lo = x->pre;
	int serves = 0;
	for (size_t i = 0; !serves && i < m; i++) {
		if (c[i].pre > lo)
			serves = count_in(rd, nrd, lo, c[i].pre - 1) > 0;
		if (c[i].post + 1 > lo)
			lo = c[i].post + 1;
	}
	if (!serves && lo <= x->post)
		serves = count_in(rd, nrd, lo, x->post) > 0;
	free(c);
	return serves;
}

typedef struct gnode {
	uint32_t pre, post;
	size_t served;                       /* readers in its subtree ... */
	size_t below;                        /* ... of which nearer keys serve */
	size_t key;                          /* index in the batch */
} gnode;

static int gnode_cmp(const void *a, const void *b)
{
	const gnode *x = a, *y = b;
	return x->pre < y->pre ? -1 : x->pre > y->pre;
}

/* ---- queries ----------------------------------------------------------------------
 *
 * Both scan a family's keys, a batch at a time under commit_lock (shared)
 * and pool->lock, looking the volumes up again at every batch. */

typedef struct kscan {
	vms_pool *p;
	vms_vol_id a, b;                     /* the volumes (b may be 0) */
	uint64_t fam;                        /* the family scanned */
	int (*group)(struct kscan *s, kfam *f, const gkey *k, size_t n);
	uint64_t count;
	uint64_t *lblks;                     /* diff: blocks that differ */
	size_t nl, capl;
	void *arg;                           /* the group function's own state */
} kscan;

static const vrec *readable(vms_pool *p, vms_vol_id id)
{
	const vrec *r = vol_find(p, id);
	if (!r || (r->flags & (VREC_HIDDEN | VREC_DELETING))) {
		vms_error_set(VMS_ENOTFOUND, "volume %llu not found", (unsigned long long)id);
		return NULL;
	}
	return r;
}

typedef struct rgather {
	gbatch *b;
	uint32_t w;
	unsigned taken;
	uint64_t last;                       /* the last lblk taken */
} rgather;

static int region_cb(void *ctx, kt_key k, kt_val v)
{
	rgather *g = ctx;
	gbatch *b = g->b;
	if (b->n == b->cap && array_grow(&b->v, &b->cap, sizeof(*b->v)) < 0)
		return VMS_ENOMEM;
	b->v[b->n++] = (gkey){(kt_key){k.ver, g->w}, v};
	g->last = k.ver;
	return ++g->taken == GC_BATCH; /* a batch per region at most */
}

static int gkey_cmp(const void *a, const void *b)
{
	return kt_cmp(((const gkey *)a)->k, ((const gkey *)b)->k);
}

int k_region_versions(vms_pool *p, kfam *f, uint32_t **out, size_t *nout)
{
	size_t n = vt_count(&f->vt), m = 0;
	uint32_t *w = malloc((n + 1) * sizeof(*w));
	if (!w)
		return vms_error_set(VMS_ENOMEM, "out of memory for the versions with a region");
	for (size_t i = 0; i < n; i++) {
		const vrec *r = vol_find(p, f->vt.v[i].rec);
		if (r && (r->flags & VREC_DELTA))
			w[m++] = f->vt.v[i].ver;
	}
	*out = w;
	*nout = m;
	return 0;
}

/* Add to batch b, as data keys, the delta-region keys of lblks [lo, *hi)
 * of f's versions that have a region; sort; keep one of two equal keys (a
 * key being flushed is in both places, with the same value).  A region
 * gives GC_BATCH keys at most: *hi comes down to the first lblk one of
 * them did not reach, and the batch keeps only the keys below it (so that
 * every key of an lblk is in the same batch, and a batch stays bounded when
 * the regions hold most keys, as a volume's before its first snapshot). */
static int add_regions(vms_pool *p, kfam *f, gbatch *b, uint64_t lo, uint64_t *hi)
{
	size_t m = 0;
	uint32_t *w = NULL;
	int rc = k_region_versions(p, f, &w, &m); /* first: a walk may drop the lock */
	if (rc < 0)
		return rc;
	for (size_t j = 0; rc >= 0 && j < m; j++) {
		rgather g = {b, w[j], 0, 0};
		kt_key to = *hi > UINT32_MAX ? (kt_key){DELTA_BASE + w[j] + 1, 0} : delta_key(w[j], *hi);
		rc = kt_walk(p, f->id, delta_key(w[j], lo), to, region_cb, &g);
		if (rc == 1 && g.last + 1 < *hi)
			*hi = g.last + 1; /* it stopped there */
	}
	free(w);
	if (rc < 0 || m == 0 || b->n == 0)
		return rc < 0 ? rc : 0;
	qsort(b->v, b->n, sizeof(*b->v), gkey_cmp);
	size_t k = 0;
	for (size_t i = 0; i < b->n && b->v[i].k.lblk < *hi; i++)
		if (k == 0 || kt_cmp(b->v[k - 1].k, b->v[i].k) != 0)
			b->v[k++] = b->v[i];
	b->n = k;
	return 0;
}

static int scan_family(kscan *s)
{
	vms_pool *p = s->p;
	uint64_t cursor = 0;
	int rc = 0, more = 1;
	while (rc == 0 && more) {
		gbatch b = {0};
		pthread_rwlock_rdlock(&p->commit_lock);
		pthread_mutex_lock(&p->lock);
		kfam *f = fam_get(p, s->fam);
		if (!readable(p, s->a) || (s->b && !readable(p, s->b)))
			rc = VMS_ENOTFOUND;
		else if (!f)
			rc = vms_error_set(VMS_EIO, "internal: family %llu missing", (unsigned long long)s->fam);
		else
			rc = kt_walk(p, s->fam, (kt_key){cursor, 0}, (kt_key){DELTA_BASE, 0}, gather_cb, &b);
		if (rc >= 0) {
			uint64_t hi = rc == 1 ? b.stop_lblk : UINT64_MAX;
			rc = add_regions(p, f, &b, cursor, &hi);
			more = hi != UINT64_MAX;
			cursor = hi;
		}
		if (rc >= 0) {
			for (size_t i = 0, e; rc == 0 && i < b.n; i = e) {
				for (e = i + 1; e < b.n && b.v[e].k.lblk == b.v[i].k.lblk; e++)
					;
				rc = s->group(s, f, b.v + i, e - i);
			}
		}
		pthread_mutex_unlock(&p->lock);
		pthread_rwlock_unlock(&p->commit_lock);
		free(b.v);
	}
	return rc;
}

/* unique bytes: every reader's in one scan.  A key of version x at some
 * lblk serves the readers in x's subtree less those of the keys below it
 * there (served - below; none: garbage); when that is one reader, the
 * key is that reader's alone: it is the one numbered in x's range outside
 * the ranges of the keys nested in it. */
typedef struct uall {
	uint32_t *rd;                        /* the readers' pre numbers, sorted */
	uint64_t *rec;                       /* their records, in the same order */
	uint64_t *cnt;                       /* their unique blocks */
	size_t nrd;
	gnode *g;
	size_t *stack, *parent, cap;
} uall;

/* Index of the first reader numbered in [lo, hi], or nrd. */
static size_t reader_in(const uall *u, uint32_t lo, uint32_t hi)
{
	size_t a = 0, b = u->nrd;
	while (a < b) {
		size_t m = (a + b) / 2;
		if (u->rd[m] < lo)
			a = m + 1;
		else
			b = m;
	}
	return a < u->nrd && u->rd[a] <= hi ? a : u->nrd;
}

static int uall_group(kscan *s, kfam *f, const gkey *k, size_t n)
{
	uall *u = s->arg;
	size_t m = 0, top = 0;
	if (n > u->cap) {
		size_t cap = n * 2;
		gnode *g = realloc(u->g, cap * sizeof(*g));
		if (g)
			u->g = g;
		size_t *st = g ? realloc(u->stack, cap * sizeof(*st)) : NULL;
		if (st)
			u->stack = st;
		size_t *pa = st ? realloc(u->parent, cap * sizeof(*pa)) : NULL;
		if (!pa)
			return vms_error_set(VMS_ENOMEM, "out of memory");
		u->parent = pa;
		u->cap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		const vt_node *x = vt_find(&f->vt, k[i].k.ver);
		if (x)
			u->g[m++] = (gnode){x->pre, x->post, count_in(u->rd, u->nrd, x->pre, x->post), 0, i};
	}
	gnode *g = u->g;
	qsort(g, m, sizeof(*g), gnode_cmp);
	for (size_t i = 0; i < m; i++) {
		while (top && g[u->stack[top - 1]].post < g[i].pre)
			top--;
		u->parent[i] = top ? u->stack[top - 1] : SIZE_MAX;
		if (top)
			g[u->stack[top - 1]].below += g[i].served;
		u->stack[top++] = i;
	}
	for (size_t i = 0; i < m; i++) {
		if (g[i].served != g[i].below + 1 || !k[g[i].key].v.pblk)
			continue;
		size_t who = u->nrd;
		uint32_t lo = g[i].pre;
		for (size_t j = i + 1; who == u->nrd && j < m && g[j].pre <= g[i].post; j++) {
			if (u->parent[j] != i)
				continue; /* nested deeper: inside a child's range */
			if (lo < g[j].pre)
				who = reader_in(u, lo, g[j].pre - 1);
			lo = g[j].post + 1;
		}
		if (who == u->nrd && lo <= g[i].post)
			who = reader_in(u, lo, g[i].post);
		if (who < u->nrd)
			u->cnt[who]++;
	}
	return 0;
}

static int ucount_cmp(const void *a, const void *b)
{
	const ucount *x = a, *y = b;
	return x->rec < y->rec ? -1 : x->rec > y->rec;
}

/* The readers of family f, by pre number, with their records. */
static int uall_readers(vms_pool *p, kfam *f, uall *u)
{
	rdr *v = NULL;
	size_t m = 0;
	int rc = readers_sorted(p, f, &v, &m);
	if (rc < 0)
		return rc;
	u->rd = malloc((m + 1) * sizeof(*u->rd));
	u->rec = malloc((m + 1) * sizeof(*u->rec));
	u->cnt = calloc(m + 1, sizeof(*u->cnt));
	if (!u->rd || !u->rec || !u->cnt) {
		free(v);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < m; i++) {
		u->rd[i] = v[i].pre;
		u->rec[i] = v[i].rec;
	}
	u->nrd = m;
	free(v);
	return 0;
}

/* vol's count in f's kept counts: 1 found. */
static int uc_find(const kfam *f, vms_vol_id vol, uint64_t *blocks)
{
	ucount key = {vol, 0};
	const ucount *c = f->nuc ? bsearch(&key, f->uc, f->nuc, sizeof(*f->uc), ucount_cmp) : NULL;
	if (c)
		*blocks = c->blocks;
	return c != NULL;
}

int k_unique_bytes(vms_pool *p, vms_vol_id vol, uint64_t *out)
{
	uall u = {0};
	kscan s = {p, vol, 0, 0, uall_group, 0, NULL, 0, 0, &u};
	int rc = 0, done = 0;
	uint64_t gen = 0, blocks = 0;
	pthread_mutex_lock(&p->lock);
	const vrec *r = vol_find(p, vol);
	kfam *f = r && !(r->flags & VREC_HIDDEN) ? fam_get(p, r->fam) : NULL;
	if (!f) {
		rc = vms_error_set(VMS_ENOTFOUND, "volume %llu not found", (unsigned long long)vol);
	} else if (r->flags & VREC_DELETING) {
		done = 1; /* being reclaimed: nothing more to free by deleting it */
	} else if (f->uc_valid && f->uc_gen == f->ugen && uc_find(f, vol, &blocks)) {
		done = 1; /* nothing that moves a count happened since the last scan */
	} else {
		/* the numbers of one scan: a snapshot, clone or delete meanwhile
		 * ends in a look at other numbers (the per-batch lookup of the
		 * volume catches a delete of it), and the counts are not kept */
		gen = f->ugen;
		s.fam = r->fam;
		rc = uall_readers(p, f, &u);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc == 0 && !done)
		rc = scan_family(&s);
	if (rc == 0 && !done) {
		pthread_mutex_lock(&p->lock);
		ucount *c = malloc((u.nrd + 1) * sizeof(*c));
		for (size_t i = 0; i < u.nrd; i++) {
			if (u.rec[i] == vol)
				blocks = u.cnt[i];
			if (c)
				c[i] = (ucount){u.rec[i], u.cnt[i]};
		}
		f = fam_get(p, s.fam);
		if (c && f && f->ugen == gen) { /* kept for the next questions */
			qsort(c, u.nrd, sizeof(*c), ucount_cmp);
			free(f->uc);
			f->uc = c;
			f->nuc = u.nrd;
			f->uc_gen = gen;
			f->uc_valid = 1;
			c = NULL;
		}
		free(c);
		pthread_mutex_unlock(&p->lock);
	}
	if (rc == 0)
		*out = blocks << p->bshift;
	free(u.rd);
	free(u.rec);
	free(u.cnt);
	free(u.g);
	free(u.stack);
	free(u.parent);
	return rc;
}

/* diff: blocks whose keys differ between a and b */
static int resolve_in(kfam *f, const gkey *k, size_t n, uint32_t v, uint64_t *pblk)
{
	for (size_t i = 0; i < n; i++)
		if (k[i].k.ver >= v && (k[i].k.ver == v || vt_is_ancestor(&f->vt, k[i].k.ver, v))) {
			*pblk = k[i].v.pblk;
			return 1;
		}
	*pblk = 0;
	return 0;
}

static int diff_group(kscan *s, kfam *f, const gkey *k, size_t n)
{
	vms_pool *p = s->p;
	const vrec *a = vol_find(p, s->a), *b = vol_find(p, s->b);
	uint64_t lblk = k[0].k.lblk, pa = 0, pb = 0;
	uint32_t va = a->ver, vb = b->ver;
	uint64_t fa = a->fam, fb = b->fam;
	resolve_in(f, k, n, f->id == fa ? va : vb, f->id == fa ? &pa : &pb);
	if (fa == fb) {
		resolve_in(f, k, n, vb, &pb);
	} else { /* the other family: a lookup (may drop pool->lock; k is ours) */
		kt_val v = {0, 0};
		int rc = k_resolve(p, f->id == fa ? fb : fa, f->id == fa ? vb : va, 1, lblk, &v);
		if (rc < 0)
			return rc;
		*(f->id == fa ? &pb : &pa) = rc ? v.pblk : 0;
	}
	if (pa == pb)
		return 0;
	if (s->nl == s->capl && array_grow(&s->lblks, &s->capl, sizeof(*s->lblks)) < 0)
		return VMS_ENOMEM;
	s->lblks[s->nl++] = lblk;
	return 0;
}

int k_diff(vms_pool *p, vms_vol_id from, vms_vol_id to, vms_extent_cb cb, void *ctx)
{
	kscan s = {p, from, to, 0, diff_group, 0, NULL, 0, 0, NULL};
	uint64_t fams[2] = {0, 0}, size = 0;
	int rc = 0;
	pthread_mutex_lock(&p->lock);
	const vrec *a = readable(p, from), *b = a ? readable(p, to) : NULL;
	if (!a || !b) {
		rc = VMS_ENOTFOUND;
	} else {
		fams[0] = a->fam;
		fams[1] = b->fam != a->fam ? b->fam : 0;
		size = a->size > b->size ? a->size : b->size;
	}
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; rc == 0 && i < 2 && fams[i]; i++) {
		s.fam = fams[i];
		rc = scan_family(&s);
	}
	if (rc == 0 && s.nl)
		qsort(s.lblks, s.nl, sizeof(*s.lblks), u64_cmp);
	uint64_t limit = (size + p->bs - 1) >> p->bshift;
	for (size_t i = 0, e; rc == 0 && i < s.nl; i = e) {
		for (e = i + 1; e < s.nl && s.lblks[e] <= s.lblks[e - 1] + 1; e++)
			;
		uint64_t lo = s.lblks[i], hi = s.lblks[e - 1] + 1;
		if (lo >= limit)
			break;
		if (hi > limit)
			hi = limit;
		uint64_t o = lo << p->bshift, l = (hi - lo) << p->bshift;
		if (o + l > size)
			l = size - o;
		rc = cb(ctx, o, l, 1);
	}
	free(s.lblks);
	return rc;
}
