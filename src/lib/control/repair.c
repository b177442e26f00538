/*
 * repair.c - an SR against the catalog, both ways, and the repairs that
 * lose nothing (docs/reliability.md, "check and repair").
 *
 * The backend lists its own objects (vms_backend.enumerate): disks,
 * disks of snapshots, and snapshots as a whole where its snapshots cover a
 * VM at once (zfs).  They are compared with every VDI and snapshot row of
 * the SR:
 *
 *   missing  a ready VDI (live) or a ready snapshot (not deferred) whose
 *            backend object is gone;
 *   orphan   a backend object no catalog row names, grouped per snapshot
 *            (the unit a backend deletes), else one per object.
 *
 * Repair (never when another process shares the home; see ops_misc.c):
 *
 *   orphan, named by an orphan note (reconciliation's record of vmsnap's own
 *            interrupted create: never acknowledged, never exported), or
 *            holding no data at all (referenced 0)         -> removed
 *   any other orphan                                        -> adopted: its
 *            disks are cloned (O(1) where the backend can) into the disks of
 *            a new VM "lost_found_YYYYMMDD[_N]", made like vm.clone makes a
 *            VM (rows 'creating', backend, rows 'ready'), and only then is
 *            the orphan removed.  A snapshot with no unique bytes is still
 *            an image nothing else holds, so it is adopted too.
 *   orphan inside a snapshot the catalog knows (a stray file in a snapshot
 *            directory) -> left alone and reported: removing it would go
 *            through the snapshot's own delete.
 *   missing snapshot -> the disks of it that still exist are adopted, then
 *            the snapshot is reclaimed (or deferred while clones hang below
 *            it) through reclaim.c: children, isDeleted and the cascade stay
 *            as a delete leaves them.
 *   missing VM disk -> never dropped: reported on every check until the
 *            user deletes the disk (vdi delete) or restores it.
 *
 * After repairs the SR is compared again; that second comparison decides
 * `ok`, and orphan notes whose object no longer exists are settled
 * (forgotten).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

/* ---- a sorted set of strings (refs, "vm\tsnapshot" keys) ---------------------- */

typedef struct strset {
	char **v;
	size_t n, cap;
	int sorted;
} strset;

static int ss_add(strset *s, const char *a, const char *b)
{
	char *x;
	if (!a)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char **nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return vms_error_set(VMS_ENOMEM, "out of memory");
		s->v = nv;
		s->cap = cap;
	}
	if (b ? asprintf(&x, "%s\t%s", a, b) < 0 : !(x = strdup(a)))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	s->v[s->n++] = x;
	s->sorted = 0;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ss_has(strset *s, const char *a, const char *b)
{
	char buf[2 * VMS_NAME_MAX + 256];
	const char *key = a, *k;
	if (!a)
		return 0;
	if (b) {
		snprintf(buf, sizeof(buf), "%s\t%s", a, b);
		key = buf;
	}
	if (!s->sorted) {
		if (s->n)
			qsort(s->v, s->n, sizeof(*s->v), cmp_str);
		s->sorted = 1;
	}
	k = key;
	return s->n && bsearch(&k, s->v, s->n, sizeof(*s->v), cmp_str) != NULL;
}

static void ss_free(strset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- orphan groups --------------------------------------------------------------- */

enum { ACT_NONE, ACT_REMOVE, ACT_ADOPT };

typedef struct group {
	char kind[16];          /* "disk", "snapshot" (keyed), "volume" (no key) */
	char vm[VMS_NAME_MAX + 1], snap[VMS_NAME_MAX + 1];
	char *name;             /* backend name of the first object */
	int whole, noted, empty, stray, leftover, action;
	size_t n, cap;
	char **refs, **dnames;  /* disk refs and a name for each */
	uint64_t *sizes;
	int64_t referenced;     /* sum, -1 = unknown */
} group;

typedef struct missing_snap {
	vms_cat_snapshot s;
	char vm_name[VMS_NAME_MAX + 1];
	size_t npresent;
	char **present, **pnames;   /* refs that still exist, their disk names */
	uint64_t *psizes;
} missing_snap;

typedef struct rp {
	ctl_req *r;
	vms_control *ctl;
	const vms_cat_sr *sr;
	const vms_backend *be;
	vms_sr_handle *h;
	vms_json *root, *deep;                 /* enumerate results */
	strset disks, snapdisks, snaps;        /* the backend's */
	strset cdisks, csnapdisks, csnaps, cvms;   /* the catalog's (every row) */
	strset cbusy;                          /* keys of rows not 'ready' (in flight or unsettled) */
	vms_cat_orphan *notes;
	size_t nnotes;
	group *g;
	size_t ng;
	missing_snap *ms;
	size_t nms;
	vms_json *missing, *orphans;           /* report */
	size_t problems;
} rp;

static void group_free(group *g)
{
	for (size_t i = 0; i < g->n; i++) {
		free(g->refs[i]);
		free(g->dnames[i]);
	}
	free(g->refs);
	free(g->dnames);
	free(g->sizes);
	free(g->name);
}

static void rp_clear(rp *p)
{
	vms_json_free(p->root);
	vms_json_free(p->deep);
	ss_free(&p->disks);
	ss_free(&p->snapdisks);
	ss_free(&p->snaps);
	ss_free(&p->cdisks);
	ss_free(&p->csnapdisks);
	ss_free(&p->csnaps);
	ss_free(&p->cvms);
	ss_free(&p->cbusy);
	free(p->notes);
	for (size_t i = 0; i < p->ng; i++)
		group_free(&p->g[i]);
	free(p->g);
	for (size_t i = 0; i < p->nms; i++) {
		vms_cat_strv_free(p->ms[i].present, p->ms[i].npresent);
		vms_cat_strv_free(p->ms[i].pnames, p->ms[i].npresent);
		free(p->ms[i].psizes);
	}
	free(p->ms);
	vms_json_free(p->missing);
	vms_json_free(p->orphans);
}

static const char *jstr(const vms_json *o, const char *key)
{
	return vms_json_string(vms_json_object_get(o, key));
}

static int64_t jint(const vms_json *o, const char *key, int64_t dflt)
{
	int64_t v;
	return vms_json_is_int(vms_json_object_get(o, key), &v) ? v : dflt;
}

/* A disk name for an adopted disk: its key (or "volume_<ref>") made a legal name. */
static char *disk_name_of(const char *disk_key, const char *ref)
{
	char buf[VMS_NAME_MAX + 1];
	if (disk_key && *disk_key)
		snprintf(buf, sizeof(buf), "%s", disk_key);
	else
		snprintf(buf, sizeof(buf), "volume_%s", ref ? ref : "");
	for (char *c = buf; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
			*c = '_';
	return strdup(buf);
}

static int group_add(group *g, const char *ref, const char *disk_key, uint64_t size, int64_t referenced)
{
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 4;
		char **r = realloc(g->refs, cap * sizeof(*r));
		if (r)
			g->refs = r;
		char **d = realloc(g->dnames, cap * sizeof(*d));
		if (d)
			g->dnames = d;
		uint64_t *s = realloc(g->sizes, cap * sizeof(*s));
		if (s)
			g->sizes = s;
		if (!r || !d || !s)
			return vms_error_set(VMS_ENOMEM, "out of memory");
		g->cap = cap;
	}
	g->refs[g->n] = strdup(ref);
	g->dnames[g->n] = disk_name_of(disk_key, ref);
	g->sizes[g->n] = size;
	if (!g->refs[g->n] || !g->dnames[g->n]) {
		free(g->refs[g->n]);
		free(g->dnames[g->n]);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	g->n++;
	if (referenced < 0 || g->referenced < 0)
		g->referenced = -1;
	else
		g->referenced += referenced;
	return 0;
}

static group *group_new(rp *p, const char *kind, const char *vm, const char *snap, const char *name)
{
	group *ng = realloc(p->g, (p->ng + 1) * sizeof(*ng));
	if (!ng) {
		vms_error_set(VMS_ENOMEM, "out of memory");
		return NULL;
	}
	p->g = ng;
	group *g = &p->g[p->ng];
	memset(g, 0, sizeof(*g));
	snprintf(g->kind, sizeof(g->kind), "%s", kind);
	snprintf(g->vm, sizeof(g->vm), "%s", vm ? vm : "");
	snprintf(g->snap, sizeof(g->snap), "%s", snap ? snap : "");
	if (!(g->name = strdup(name ? name : ""))) {
		vms_error_set(VMS_ENOMEM, "out of memory");
		return NULL;
	}
	p->ng++;
	return g;
}

/* ---- the two sides ----------------------------------------------------------------- */

static int enumerate(vms_json **out, rp *p, unsigned flags)
{
	char *text = NULL;
	int rc = p->be->enumerate(p->h, flags, &text);
	if (rc == 0 && (rc = vms_json_parse(out, text, strlen(text))) < 0)
		rc = vms_error_wrap(rc, "SR %s: the backend's object list", p->sr->name);
	if (rc == 0 && vms_json_type_of(vms_json_object_get(*out, "objects")) != VMS_JSON_ARRAY) {
		vms_json_free(*out);
		*out = NULL;
		rc = vms_error_set(VMS_EIO, "SR %s: the backend's object list has no objects", p->sr->name);
	}
	free(text);
	return rc;
}

static int load_backend(rp *p)
{
	int rc;
	const vms_json *objs;
	if ((rc = enumerate(&p->root, p, 0)) < 0)
		return rc;
	objs = vms_json_object_get(p->root, "objects");
	for (size_t i = 0; i < vms_json_array_len(objs) && rc == 0; i++) {
		const vms_json *o = vms_json_array_get(objs, i);
		const char *kind = jstr(o, "kind");
		if (!kind)
			continue;
		if (strcmp(kind, "disk") == 0)
			rc = ss_add(&p->disks, jstr(o, "ref"), NULL);
		else if (strcmp(kind, "snapshot_disk") == 0)
			rc = ss_add(&p->snapdisks, jstr(o, "ref"), NULL);
		else if (strcmp(kind, "snapshot") == 0 && jstr(o, "vm") && jstr(o, "snapshot"))
			rc = ss_add(&p->snaps, jstr(o, "vm"), jstr(o, "snapshot"));
	}
	return rc;
}

static int add_missing(rp *p, const char *kind, const char *uuid, const char *name, const char *what)
{
	char msg[512];
	vms_json *x = ctl_ref_obj(kind, uuid, name);
	snprintf(msg, sizeof(msg), "%s %s has no backing in SR %s (%s)", kind, name, p->sr->name, what);
	p->problems++;
	if (!x || vms_json_object_set_string(x, "message", msg) < 0) {
		vms_json_free(x);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	return vms_json_array_append(p->missing, x);
}

/* Bytes the backend object `ref` maps (-1 unknown). */
static int64_t referenced_of(rp *p, const char *ref)
{
	const vms_json *objs = vms_json_object_get(p->root, "objects");
	for (size_t i = 0; i < vms_json_array_len(objs); i++) {
		const vms_json *o = vms_json_array_get(objs, i);
		if (jstr(o, "ref") && strcmp(jstr(o, "ref"), ref) == 0)
			return jint(o, "referenced", -1);
	}
	return -1;
}

/* A ready snapshot: which of its disks the backend still has. */
static int check_snapshot(rp *p, const vms_cat_vm *vm, const vms_cat_snapshot *s)
{
	int rc;
	vms_cat_snapdisk *sd = NULL;
	size_t n = 0, nmiss = 0;
	if ((rc = vms_cat_snapshot_disks(&sd, &n, p->ctl->cat, s->uuid)) < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = ss_add(&p->csnapdisks, sd[i].ref, NULL);
	int whole = ss_has(&p->snaps, vm->uuid, s->uuid);
	if (rc == 0 && s->state == VMS_STATE_READY && !s->is_deleted && !whole)
		for (size_t i = 0; i < n; i++)
			if (sd[i].ref && !ss_has(&p->snapdisks, sd[i].ref, NULL))
				nmiss++;
	if (rc == 0 && nmiss) {
		char full[VMS_FULLNAME_MAX + 1], name[VMS_NAME_MAX + VMS_FULLNAME_MAX + 2], what[64];
		missing_snap *nm = realloc(p->ms, (p->nms + 1) * sizeof(*nm));
		if (!nm) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
		p->ms = nm;
		missing_snap *m = &p->ms[p->nms++];
		memset(m, 0, sizeof(*m));
		m->s = *s;
		snprintf(m->vm_name, sizeof(m->vm_name), "%s", vm->name);
		m->present = calloc(n, sizeof(char *));
		m->pnames = calloc(n, sizeof(char *));
		m->psizes = calloc(n, sizeof(uint64_t));
		if (!m->present || !m->pnames || !m->psizes) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
		for (size_t i = 0; i < n; i++) {
			if (!sd[i].ref || !ss_has(&p->snapdisks, sd[i].ref, NULL) || referenced_of(p, sd[i].ref) == 0)
				continue;   /* gone, or holds nothing to keep */
			m->present[m->npresent] = strdup(sd[i].ref);
			m->pnames[m->npresent] = strdup(sd[i].disk_name);
			m->psizes[m->npresent] = sd[i].size;
			if (!m->present[m->npresent] || !m->pnames[m->npresent]) {
				m->npresent++;
				rc = vms_error_set(VMS_ENOMEM, "out of memory");
				goto done;
			}
			m->npresent++;
		}
		ctl_fullname(full, s);
		snprintf(name, sizeof(name), "%s@%s", vm->name, full);
		snprintf(what, sizeof(what), "%zu of %zu disk(s) gone", nmiss, n);
		rc = add_missing(p, "snapshot", s->uuid, name, what);
	}
done:
	vms_cat_snapdisk_list_free(sd, n);
	return rc;
}

static int load_catalog(rp *p)
{
	int rc;
	vms_cat_vdi *v = NULL;
	vms_cat_vm *vms = NULL;
	size_t nv = 0, nvm = 0;
	if ((rc = vms_cat_vdi_list(&v, &nv, p->ctl->cat, NULL, p->sr->uuid, 1)) < 0)
		return rc;
	for (size_t i = 0; i < nv && rc == 0; i++) {
		rc = ss_add(&p->cdisks, v[i].ref, NULL);
		if (rc == 0 && v[i].state != VMS_STATE_READY)
			rc = ss_add(&p->cbusy, v[i].uuid, NULL);
		if (rc == 0 && v[i].ref && v[i].state == VMS_STATE_READY && !v[i].is_deleted &&
		    !ss_has(&p->disks, v[i].ref, NULL)) {
			char vmn[VMS_NAME_MAX + 1] = "", name[2 * VMS_NAME_MAX + 2];
			if (v[i].vm_uuid[0])
				ctl_vm_name(vmn, p->ctl, v[i].vm_uuid);
			snprintf(name, sizeof(name), "%s/%s", vmn[0] ? vmn : "-", v[i].name);
			rc = add_missing(p, "vdi", v[i].uuid, name,
			                 "its data is lost: delete the disk with 'vmsnap vdi delete', or restore "
			                 "the backend object; repair never drops a VM's disk");
		}
	}
	vms_cat_vdi_list_free(v, nv);
	if (rc < 0 || (rc = vms_cat_vm_list(&vms, &nvm, p->ctl->cat, p->sr->uuid, 1)) < 0)
		return rc;
	for (size_t i = 0; i < nvm && rc == 0; i++) {
		vms_cat_snapshot *s = NULL;
		size_t ns = 0;
		if ((rc = ss_add(&p->cvms, vms[i].uuid, NULL)) < 0 ||
		    (rc = vms_cat_snapshot_list(&s, &ns, p->ctl->cat, vms[i].uuid, 1)) < 0)
			break;
		for (size_t j = 0; j < ns && rc == 0; j++)
			if ((rc = ss_add(&p->csnaps, vms[i].uuid, s[j].uuid)) == 0 &&
			    (s[j].state == VMS_STATE_READY || (rc = ss_add(&p->cbusy, s[j].uuid, NULL)) == 0))
				rc = check_snapshot(p, &vms[i], &s[j]);
		free(s);
	}
	free(vms);
	return rc;
}

static int noted(rp *p, const char *kind, const char *uuid)
{
	for (size_t i = 0; uuid && *uuid && i < p->nnotes; i++)
		if ((!p->notes[i].sr_uuid[0] || strcmp(p->notes[i].sr_uuid, p->sr->uuid) == 0) &&
		    strcmp(p->notes[i].kind, kind) == 0 && strcmp(p->notes[i].uuid, uuid) == 0)
			return 1;
	return 0;
}

/* Orphans grouped: a snapshot's disks together (the unit a backend deletes). */
static int find_orphans(rp *p)
{
	int rc = 0;
	const vms_json *objs = vms_json_object_get(p->root, "objects");
	for (size_t i = 0; i < vms_json_array_len(objs) && rc == 0; i++) {
		const vms_json *o = vms_json_array_get(objs, i);
		const char *kind = jstr(o, "kind"), *ref = jstr(o, "ref"), *vm = jstr(o, "vm");
		const char *snap = jstr(o, "snapshot"), *disk = jstr(o, "disk"), *name = jstr(o, "name");
		int64_t refd = jint(o, "referenced", -1), size = jint(o, "size", 0);
		group *g = NULL;
		if (!kind || ss_has(&p->cbusy, snap ? snap : disk, NULL))
			continue;   /* a row in flight or unsettled owns it: listed under "unsettled" */
		if (strcmp(kind, "disk") == 0 && ref && !ss_has(&p->cdisks, ref, NULL)) {
			/* the disks of a VM the catalog does not know go together
			 * (an interrupted vm create or clone; adopted as one VM) */
			int first = 1;
			if (vm && !ss_has(&p->cvms, vm, NULL))
				for (size_t k = 0; k < p->ng && !g; k++)
					if (!strcmp(p->g[k].kind, "disk") && !strcmp(p->g[k].vm, vm))
						g = &p->g[k];
			if (g)
				first = 0;
			else if (!(g = group_new(p, vm ? "disk" : "volume", vm, NULL, name)))
				return VMS_ENOMEM;
			g->noted = noted(p, "vdi", disk) && (first || g->noted);
			rc = group_add(g, ref, disk, (uint64_t)size, refd);
		} else if (strcmp(kind, "snapshot_disk") == 0 && ref && !ss_has(&p->csnapdisks, ref, NULL)) {
			if (vm && snap) {
				for (size_t k = 0; k < p->ng && !g; k++)
					if (!strcmp(p->g[k].kind, "snapshot") && !strcmp(p->g[k].vm, vm) &&
					    !strcmp(p->g[k].snap, snap))
						g = &p->g[k];
				if (!g && !(g = group_new(p, "snapshot", vm, snap, name)))
					return VMS_ENOMEM;
				g->stray = ss_has(&p->csnaps, vm, snap);
				g->noted = noted(p, "snapshot", snap);
			} else if (!(g = group_new(p, "volume", NULL, NULL, name))) {
				return VMS_ENOMEM;
			}
			rc = group_add(g, ref, disk, (uint64_t)size, refd);
		} else if (strcmp(kind, "snapshot") == 0 && vm && snap && !ss_has(&p->csnaps, vm, snap) &&
		           !vms_json_bool(vms_json_object_get(o, "deferred"))) {
			if (!(g = group_new(p, "snapshot", vm, snap, name)))
				return VMS_ENOMEM;
			g->whole = 1;
			g->noted = noted(p, "snapshot", snap);
			g->referenced = refd;
		}
	}
	/* A note no keyed object answers is taken to stand for the objects
	 * without keys (a native volume whose key record a crash cut off):
	 * they are leftovers, not problems, but still adopted when they hold
	 * data (a guess never deletes data). */
	int open_note = 0;
	for (size_t i = 0; i < p->nnotes && !open_note; i++) {
		const vms_cat_orphan *nt = &p->notes[i];
		int found = 0;
		if (strcmp(nt->sr_uuid, p->sr->uuid) || (strcmp(nt->kind, "vdi") && strcmp(nt->kind, "snapshot")))
			continue;
		for (size_t k = 0; k < vms_json_array_len(objs) && !found; k++) {
			const vms_json *o = vms_json_array_get(objs, k);
			const char *key = jstr(o, strcmp(nt->kind, "vdi") == 0 ? "disk" : "snapshot");
			found = key && strcmp(key, nt->uuid) == 0;
		}
		open_note = !found;
	}
	for (size_t k = 0; k < p->ng; k++) {
		group *g = &p->g[k];
		int unkeyed = !g->vm[0];
		g->empty = g->referenced == 0;
		g->action = g->stray ? ACT_NONE : g->noted || g->empty ? ACT_REMOVE : ACT_ADOPT;
		g->leftover = g->noted || (unkeyed && (g->empty || open_note));
		if (!g->leftover)
			p->problems++;
	}
	return rc;
}

static const char *group_what(const group *g, char *buf, size_t cap)
{
	if (g->whole || (!strcmp(g->kind, "snapshot") && g->vm[0]))
		snprintf(buf, cap, "snapshot %s@%s (%s)", g->vm, g->snap, g->name);
	else if (!strcmp(g->kind, "volume"))
		snprintf(buf, cap, "%s (no key)", g->name[0] || !g->n ? g->name : g->refs[0]);
	else if (g->n > 1)
		snprintf(buf, cap, "%zu disks of VM key %s (%s, ...)", g->n, g->vm, g->name);
	else
		snprintf(buf, cap, "disk %s", g->name[0] || !g->n ? g->name : g->refs[0]);
	return buf;
}

static int report_orphans(rp *p)
{
	int rc = 0;
	for (size_t k = 0; k < p->ng && rc == 0; k++) {
		group *g = &p->g[k];
		char what[600], msg[800];
		vms_json *x = vms_json_new_object(), *refs = vms_json_new_array();
		if (!x || !refs) {
			vms_json_free(x);
			vms_json_free(refs);
			return vms_error_set(VMS_ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < g->n; i++)
			vms_json_array_append(refs, vms_json_new_string(g->refs[i]));
		group_what(g, what, sizeof(what));
		snprintf(msg, sizeof(msg), "%s: no catalog entry names it%s; %s", what,
		         g->leftover ? " (left by an interrupted operation: harmless, only space)" : "",
		         g->stray ? "it lies inside a snapshot the catalog knows: not repaired (remove it by hand)"
		         : g->noted ? "an orphan note names it (vmsnap's own interrupted operation): repair removes it"
		         : g->empty ? "it holds no data: repair removes it"
		                    : "it holds data: repair adopts it into a lost_found VM");
		rc = vms_json_object_set_string(x, "kind", g->kind);
		if (rc == 0)
			rc = vms_json_object_set_string(x, "name", g->name);
		if (rc == 0 && g->vm[0])
			rc = vms_json_object_set_string(x, "vm_key", g->vm);
		if (rc == 0 && g->snap[0])
			rc = vms_json_object_set_string(x, "snapshot_key", g->snap);
		if (rc == 0)
			rc = vms_json_object_set(x, "refs", refs);
		else
			vms_json_free(refs);
		if (rc == 0)
			rc = vms_json_object_set(x, "referenced",
			                         g->referenced >= 0 ? vms_json_new_int(g->referenced) : vms_json_new_null());
		if (rc == 0)
			rc = vms_json_object_set_bool(x, "noted", g->noted);
		if (rc == 0)
			rc = vms_json_object_set_bool(x, "problem", !g->leftover);
		if (rc == 0)
			rc = vms_json_object_set_string(x, "action", g->action == ACT_REMOVE ? "remove"
			                                : g->action == ACT_ADOPT ? "adopt" : "none");
		if (rc == 0)
			rc = vms_json_object_set_string(x, "message", msg);
		if (rc == 0)
			rc = vms_json_array_append(p->orphans, x);
		else
			vms_json_free(x);
	}
	return rc;
}

/* One comparison: fills p (backend and catalog sides, missing, orphans). */
static int analyse(rp *p)
{
	int rc;
	if (!(p->missing = vms_json_new_array()) || !(p->orphans = vms_json_new_array()))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if ((rc = vms_cat_orphan_notes(&p->notes, &p->nnotes, p->ctl->cat)) < 0 || (rc = load_backend(p)) < 0 ||
	    (rc = load_catalog(p)) < 0 || (rc = find_orphans(p)) < 0)
		return rc;
	return report_orphans(p);
}

/* ---- repairs ---------------------------------------------------------------------- */

static int repair_log(vms_json *repairs, const char *action, const char *uuid, const char *vm, int dry_run,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int repair_log(vms_json *repairs, const char *action, const char *uuid, const char *vm, int dry_run,
                      const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int rc;
	vms_json *x = vms_json_new_object();
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!x)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	rc = vms_json_object_set_string(x, "action", action);
	if (rc == 0 && uuid)
		rc = vms_json_object_set_string(x, "uuid", uuid);
	if (rc == 0 && vm)
		rc = vms_json_object_set_string(x, "vm", vm);
	if (rc == 0)
		rc = vms_json_object_set_bool(x, "dry_run", dry_run);
	if (rc == 0)
		rc = vms_json_object_set_string(x, "message", msg);
	if (rc < 0) {
		vms_json_free(x);
		return rc;
	}
	return vms_json_array_append(repairs, x);
}

/* "lost_found_YYYYMMDD", then _2, _3, ... : the first name no live VM has. */
static int lost_found_name(char out[VMS_NAME_MAX + 1], vms_control *ctl)
{
	char tag[VMS_TAG_LEN + 1];
	vms_cat_vm vm;
	int rc;
	if ((rc = vms_time_tag(tag, sizeof(tag), ctl_now(ctl))) < 0)
		return rc;
	for (int i = 1; i < 10000; i++) {
		if (i == 1)
			snprintf(out, VMS_NAME_MAX + 1, "lost_found_%.8s", tag);
		else
			snprintf(out, VMS_NAME_MAX + 1, "lost_found_%.8s_%d", tag, i);
		rc = vms_cat_vm_get(&vm, ctl->cat, out, 0);
		if (rc == VMS_ENOTFOUND) {
			vms_error_clear();
			return 0;
		}
		if (rc < 0)
			return rc;
	}
	return vms_error_set(VMS_EEXISTS, "no free lost_found VM name left for today");
}

static void undo_rows(vms_control *ctl, const vms_cat_vm *vm, const vms_cat_vdi *rows, size_t n)
{
	if (ctl_begin(ctl) < 0) {
		vms_error_clear();
		return;
	}
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = vms_cat_vdi_delete(ctl->cat, rows[i].uuid);
	if (rc == 0)
		rc = vms_cat_vm_delete(ctl->cat, vm->uuid);
	if (rc < 0 || ctl_commit(ctl) < 0)
		vms_catalog_rollback(ctl->cat);
	vms_error_clear();
}

/*
 * New VM `vmname` in this SR whose disks are clones of refs[0..n): rows
 * 'creating', the backend clone, refs + 'ready' (as vm.clone); a crash in
 * between is settled by reconciliation like an interrupted clone.
 */
static int adopt(rp *p, char vmname[VMS_NAME_MAX + 1], const char *const *refs, char *const *dnames,
                 const uint64_t *sizes, size_t n)
{
	vms_control *ctl = p->ctl;
	vms_cat_vm vm;
	vms_cat_vdi *rows = calloc(n + 1, sizeof(*rows));
	char **out = calloc(n + 1, sizeof(*out));
	const char **keys = calloc(n + 1, sizeof(*keys));
	int rc, rows_in = 0;
	memset(&vm, 0, sizeof(vm));
	if (!rows || !out || !keys) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = ctl_need_cap(p->be, VMS_CAP_CLONE, p->sr->name)) < 0 || (rc = lost_found_name(vm.name, ctl)) < 0 ||
	    (rc = vms_uuid_generate(vm.uuid)) < 0)
		goto done;
	snprintf(vm.sr_uuid, sizeof(vm.sr_uuid), "%s", p->sr->uuid);
	vm.state = VMS_STATE_CREATING;
	vm.created = ctl_now(ctl);
	vm.next_seq = 1;
	for (size_t i = 0; i < n; i++) {
		vms_cat_vdi *v = &rows[i];
		if ((rc = vms_uuid_generate(v->uuid)) < 0 || (rc = vms_uuid_generate(v->vbd_uuid)) < 0)
			goto done;
		snprintf(v->name, sizeof(v->name), "%s", dnames[i]);
		for (size_t j = 0; j < i; j++)
			if (strcmp(rows[j].name, v->name) == 0)
				snprintf(v->name, sizeof(v->name), "%.56s_%zu", dnames[i], i);
		snprintf(v->sr_uuid, sizeof(v->sr_uuid), "%s", p->sr->uuid);
		snprintf(v->vm_uuid, sizeof(v->vm_uuid), "%s", vm.uuid);
		v->device = (uint32_t)i;
		v->size = sizes[i];
		v->state = VMS_STATE_CREATING;
		v->created = vm.created;
		keys[i] = v->uuid;
	}
	if ((rc = ctl_begin(ctl)) < 0)
		goto done;
	rc = vms_cat_vm_insert(ctl->cat, &vm);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = vms_cat_vdi_insert(ctl->cat, &rows[i]);
	if (rc < 0 || (rc = ctl_commit(ctl)) < 0) {
		vms_catalog_rollback(ctl->cat);
		goto done;
	}
	rows_in = 1;
	if ((rc = p->be->clone(out, p->h, vm.uuid, keys, refs, n)) < 0)
		goto done;
	if ((rc = ctl_begin(ctl)) < 0)
		goto cloned;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = vms_cat_vdi_set_ref(ctl->cat, rows[i].uuid, out[i], VMS_STATE_READY);
	if (rc == 0)
		rc = vms_cat_vm_set_state(ctl->cat, vm.uuid, VMS_STATE_READY);
	if (rc < 0 || (rc = ctl_commit(ctl)) < 0) {
		vms_catalog_rollback(ctl->cat);
		goto cloned;
	}
	rows_in = 0;
	snprintf(vmname, VMS_NAME_MAX + 1, "%s", vm.name);
	goto done;
cloned:
	for (size_t i = 0; i < n; i++)
		if (out[i] && p->be->disk_delete(p->h, out[i]) < 0)
			vms_error_clear();
done:
	if (rc < 0 && rows_in) {
		int keep = rc;
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vms_error_last());
		undo_rows(ctl, &vm, rows, n);
		rc = vms_error_set(keep, "%s", msg);
	}
	for (size_t i = 0; out && i < n; i++)
		free(out[i]);
	free(out);
	free(keys);
	free(rows);
	return rc;
}

/* Remove an orphan group from the backend (a snapshot through its own delete). */
static int remove_group(rp *p, const group *g)
{
	int rc = 0;
	if (!strcmp(g->kind, "snapshot") && g->vm[0] && g->snap[0]) {
		rc = p->be->snapshot_delete(p->h, g->vm, g->snap, (const char *const *)g->refs, g->n);
	} else {
		for (size_t i = 0; i < g->n && rc == 0; i++)
			rc = p->be->disk_delete(p->h, g->refs[i]);
	}
	return rc == VMS_ENOTFOUND ? 0 : rc;
}

/* The disks of a whole snapshot (zfs), through the deep listing. */
static int whole_disks(rp *p, group *g)
{
	int rc = 0;
	const vms_json *objs;
	if (!p->deep && (rc = enumerate(&p->deep, p, VMS_ENUM_DEEP)) < 0)
		return rc;
	objs = vms_json_object_get(p->deep, "objects");
	for (size_t i = 0; i < vms_json_array_len(objs); i++) {
		const vms_json *o = vms_json_array_get(objs, i), *d = vms_json_object_get(o, "disks");
		if (!jstr(o, "kind") || strcmp(jstr(o, "kind"), "snapshot") || !jstr(o, "vm") || !jstr(o, "snapshot") ||
		    strcmp(jstr(o, "vm"), g->vm) || strcmp(jstr(o, "snapshot"), g->snap))
			continue;
		int64_t keep = g->referenced;
		for (size_t k = 0; k < vms_json_array_len(d) && rc == 0; k++) {
			const vms_json *x = vms_json_array_get(d, k);
			if (jstr(x, "ref"))
				rc = group_add(g, jstr(x, "ref"), jstr(x, "disk"), (uint64_t)jint(x, "size", 0), -1);
		}
		g->referenced = keep;
		return rc;
	}
	return vms_error_set(VMS_ENOTFOUND, "snapshot %s@%s is gone", g->vm, g->snap);
}

static int repair_orphans(rp *p, vms_json *repairs, int dry_run)
{
	int rc = 0;
	for (size_t k = 0; k < p->ng && rc == 0; k++) {
		group *g = &p->g[k];
		char what[600], vmname[VMS_NAME_MAX + 1] = "";
		int arc;
		group_what(g, what, sizeof(what));
		if (g->action == ACT_NONE)
			continue;
		if (g->action == ACT_ADOPT && g->whole && (arc = whole_disks(p, g)) < 0) {
			rc = repair_log(repairs, "failed", NULL, NULL, dry_run, "could not adopt orphan %s: %s", what,
			                vms_error_last());
			vms_error_clear();
			continue;
		}
		if (g->action == ACT_ADOPT && g->n == 0)
			g->action = ACT_REMOVE;   /* a snapshot of no disk: nothing to keep */
		if (dry_run) {
			rc = repair_log(repairs, g->action == ACT_ADOPT ? "adopt" : "remove", NULL, NULL, 1,
			                g->action == ACT_ADOPT ? "would adopt orphan %s into a new lost_found VM"
			                                       : "would remove orphan %s", what);
			continue;
		}
		if (g->action == ACT_ADOPT &&
		    (arc = adopt(p, vmname, (const char *const *)g->refs, g->dnames, g->sizes, g->n)) < 0) {
			rc = repair_log(repairs, "failed", NULL, NULL, 0, "could not adopt orphan %s (left as is): %s", what,
			                vms_error_last());
			vms_error_clear();
			continue;
		}
		if ((arc = remove_group(p, g)) < 0) {
			rc = repair_log(repairs, "failed", NULL, vmname[0] ? vmname : NULL, 0,
			                "could not remove orphan %s%s%s: %s", what, vmname[0] ? " after adopting it as " : "",
			                vmname, vms_error_last());
			vms_error_clear();
			continue;
		}
		if (g->action == ACT_ADOPT)
			rc = repair_log(repairs, "adopted", NULL, vmname, 0, "adopted orphan %s as VM %s (%zu disk(s))", what,
			                vmname, g->n);
		else
			rc = repair_log(repairs, "removed", NULL, NULL, 0, "removed orphan %s (%s)", what,
			                g->noted ? "vmsnap's own interrupted operation" : "it held no data");
	}
	return rc;
}

static int forget_gone_refs(rp *p, const vms_cat_snapshot *s)
{
	int rc;
	vms_cat_snapdisk *sd = NULL;
	size_t n = 0;
	if ((rc = vms_cat_snapshot_disks(&sd, &n, p->ctl->cat, s->uuid)) < 0)
		return rc;
	if ((rc = ctl_begin(p->ctl)) == 0) {
		for (size_t i = 0; i < n && rc == 0; i++)
			if (sd[i].ref && !ss_has(&p->snapdisks, sd[i].ref, NULL))
				rc = vms_cat_snapshot_set_disk_ref(p->ctl->cat, s->uuid, sd[i].vdi_uuid, NULL);
		if (rc < 0 || (rc = ctl_commit(p->ctl)) < 0)
			vms_catalog_rollback(p->ctl->cat);
	}
	vms_cat_snapdisk_list_free(sd, n);
	return rc;
}

static int repair_missing(rp *p, vms_json *repairs, int dry_run)
{
	int rc = 0;
	ctl_del d;
	if ((rc = ctl_del_init(&d, p->r, 0)) < 0)
		return rc;
	for (size_t i = 0; i < p->nms && rc == 0; i++) {
		missing_snap *m = &p->ms[i];
		char full[VMS_FULLNAME_MAX + 1], what[VMS_NAME_MAX + VMS_FULLNAME_MAX + 64], vmname[VMS_NAME_MAX + 1] = "";
		vms_cat_vm *kids = NULL;
		size_t nkids = 0;
		vms_cat_snapshot now;
		ctl_fullname(full, &m->s);
		snprintf(what, sizeof(what), "snapshot %s@%s", m->vm_name, full);
		/* it may have gone with an earlier cascade */
		if (vms_cat_snapshot_get(&now, p->ctl->cat, m->s.uuid) < 0) {
			vms_error_clear();
			continue;
		}
		if ((rc = vms_cat_vm_children(&kids, &nkids, p->ctl->cat, m->s.uuid)) < 0)
			break;
		free(kids);
		if (dry_run) {
			if (m->npresent)
				rc = repair_log(repairs, "adopt", m->s.uuid, NULL, 1,
				                "would adopt the %zu remaining disk(s) of %s into a new lost_found VM",
				                m->npresent, what);
			if (rc == 0)
				rc = repair_log(repairs, nkids ? "defer" : "reclaim", m->s.uuid, NULL, 1,
				                nkids ? "would mark %s deleted (kept for its clones)"
				                      : "would remove %s from the catalog", what);
			continue;
		}
		if (m->npresent && adopt(p, vmname, (const char *const *)m->present, m->pnames, m->psizes,
		                         m->npresent) < 0) {
			rc = repair_log(repairs, "failed", m->s.uuid, NULL, 0,
			                "could not adopt the remaining disks of %s (snapshot kept): %s", what,
			                vms_error_last());
			vms_error_clear();
			continue;
		}
		if (vmname[0] && (rc = repair_log(repairs, "adopted", m->s.uuid, vmname, 0,
		                                  "adopted the %zu remaining disk(s) of %s as VM %s", m->npresent,
		                                  what, vmname)) < 0)
			break;
		/* the refs whose backing is gone are cleared first, so that the
		 * backend delete sees only what exists */
		int drc = forget_gone_refs(p, &m->s);
		if (drc == 0)
			drc = nkids ? ctl_defer_snapshot(&d, &now) : ctl_reclaim_snapshot(&d, &now);
		if (drc < 0) {
			rc = repair_log(repairs, "failed", m->s.uuid, NULL, 0, "could not remove %s from the catalog: %s",
			                what, vms_error_last());
			vms_error_clear();
		} else {
			rc = repair_log(repairs, nkids ? "deferred" : "reclaimed", m->s.uuid, NULL, 0,
			                nkids ? "marked %s deleted: its backing is gone, its clones keep it listed "
			                        "until the last one goes"
			                      : "removed %s from the catalog: its backing was gone", what);
		}
	}
	ctl_del_clear(&d);
	return rc;
}

/* Notes whose object no longer exists in this SR are settled. */
static int settle_notes(rp *p, vms_json *repairs)
{
	int rc = 0;
	const vms_json *objs = vms_json_object_get(p->root, "objects");
	for (size_t i = 0; i < p->nnotes && rc == 0; i++) {
		vms_cat_orphan *nt = &p->notes[i];
		int found = 0;
		if (strcmp(nt->sr_uuid, p->sr->uuid) != 0 || (strcmp(nt->kind, "vdi") && strcmp(nt->kind, "snapshot")))
			continue;
		for (size_t k = 0; k < vms_json_array_len(objs) && !found; k++) {
			const vms_json *o = vms_json_array_get(objs, k);
			const char *key = jstr(o, strcmp(nt->kind, "vdi") == 0 ? "disk" : "snapshot");
			found = key && strcmp(key, nt->uuid) == 0;
		}
		if (found)
			continue;
		if ((rc = ctl_begin(p->ctl)) < 0)
			break;
		if ((rc = vms_cat_orphan_forget(p->ctl->cat, nt->id)) < 0 || (rc = ctl_commit(p->ctl)) < 0) {
			vms_catalog_rollback(p->ctl->cat);
			break;
		}
		rc = repair_log(repairs, "settled", nt->uuid, NULL, 0,
		                "settled the orphan note of %s %s: nothing of it is left in SR %s", nt->kind, nt->uuid,
		                p->sr->name);
	}
	return rc;
}

/* ---- entry ------------------------------------------------------------------------ */

int ctl_check_sr_catalog(vms_json *o, int *ok, ctl_req *r, const vms_cat_sr *sr, const vms_backend *be,
                         vms_sr_handle *h, int repair, int dry_run)
{
	int rc;
	rp p, again;
	vms_json *repairs = NULL;
	memset(&p, 0, sizeof(p));
	memset(&again, 0, sizeof(again));
	p.r = again.r = r;
	p.ctl = again.ctl = r->ctl;
	p.sr = again.sr = sr;
	p.be = again.be = be;
	p.h = again.h = h;
	if (!be->enumerate) {
		/* nothing to compare with: said, not a problem */
		return vms_json_object_set_bool(o, "compared", 0);
	}
	if ((rc = analyse(&p)) < 0)
		goto done;
	if (repair) {
		if (!(repairs = vms_json_new_array())) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
		if ((rc = repair_orphans(&p, repairs, dry_run)) < 0 || (rc = repair_missing(&p, repairs, dry_run)) < 0)
			goto done;
	}
	size_t left = p.problems;
	if (repair && !dry_run) {
		/* what is left, compared afresh; notes of objects now gone are settled */
		if ((rc = analyse(&again)) < 0 || (rc = settle_notes(&again, repairs)) < 0)
			goto done;
		left = again.problems;
		rc = vms_json_object_set(o, "remaining", vms_json_new_int((int64_t)left));
	}
	if (rc == 0)
		rc = vms_json_object_set_bool(o, "compared", 1);
	if (rc == 0)
		rc = vms_json_object_set(o, "missing", p.missing);
	p.missing = NULL;
	if (rc == 0)
		rc = vms_json_object_set(o, "orphans", p.orphans);
	p.orphans = NULL;
	if (rc == 0 && repairs) {
		rc = vms_json_object_set(o, "repairs", repairs);
		repairs = NULL;
	}
	if (rc == 0 && left)
		*ok = 0;
done:
	vms_json_free(repairs);
	rp_clear(&p);
	rp_clear(&again);
	return rc;
}
