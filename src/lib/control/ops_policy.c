/*
 * Policy operations (docs/control.md, docs/policy.md): policy.set, .show,
 * .list, .delete, .prune, .run; snapshot.hold, .release; vm.report; and
 * the live I/O figures `stats` adds when a server provides them.
 *
 * The effective policy of a VM is its own, else its SR's default.  The
 * policy library is pure; this file gives it the catalog's snapshots and
 * the control clock, and acts on its decisions through the ordinary ops
 * (snapshot.create, snapshot.delete), so every rule of those ops (holds,
 * clones, disks in use) applies to automatic snapshots and prunes too.
 *
 * Which snapshots are automatic: those whose user name is the policy's
 * `name` ("auto" by default).  The last run of a VM's policy is the time
 * tag of its newest automatic snapshot, so nothing more is stored and the
 * missed-run rules of vms_policy_next_run() apply across daemon restarts.
 * Before the first automatic snapshot, the schedule counts from when the
 * policy was set (or the VM created, if later): the first run is the first
 * slot after that, so setting a policy does not snapshot at once, and a
 * policy set long ago gives one catch-up run, not none.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"
#include "vmsnap/metrics.h"
#include "vmsnap/policy.h"

#define NOMEM() vms_error_set(VMS_ENOMEM, "out of memory")

/* Run one op of this module as a nested request (its extra error members
 * are dropped; its message stays in vms_error_last()). */
int ctl_sub_op(vms_json **out, vms_control *ctl, ctl_op_fn fn, vms_json *args)
{
	ctl_req sub = {.ctl = ctl, .args = args};
	vms_json *res = NULL;
	int rc = fn(&res, &sub);
	vms_json_free(sub.extra);
	if (rc < 0)
		vms_json_free(res);
	else if (out)
		*out = res;
	else
		vms_json_free(res);
	return rc;
}

/* ---- the target of a policy ------------------------------------------------ */

typedef struct target {
	char kind[VMS_POLICY_KIND_MAX + 1];   /* "vm" or "sr" */
	char uuid[VMS_UUID_BUF];
	char name[VMS_NAME_MAX + 1];
	vms_cat_vm vm;                        /* kind "vm" */
} target;

static int get_target(target *t, ctl_req *r)
{
	int rc;
	const char *vmkey = NULL, *srkey = NULL;
	memset(t, 0, sizeof(*t));
	if ((rc = ctl_arg_str(&vmkey, r, "vm", 0)) < 0 || (rc = ctl_arg_str(&srkey, r, "sr", 0)) < 0)
		return rc;
	if (!!vmkey + !!srkey != 1)
		return vms_error_set(VMS_EINVAL, "give one target: 'vm' or 'sr' (an SR's policy is the "
		                     "default of its VMs)");
	if (vmkey) {
		if ((rc = ctl_get_vm(&t->vm, r, vmkey, 0)) < 0)
			return rc;
		snprintf(t->kind, sizeof(t->kind), "vm");
		snprintf(t->uuid, sizeof(t->uuid), "%s", t->vm.uuid);
		snprintf(t->name, sizeof(t->name), "%s", t->vm.name);
		return 0;
	}
	vms_cat_sr sr;
	if ((rc = ctl_get_sr(&sr, r, srkey)) < 0)
		return rc;
	snprintf(t->kind, sizeof(t->kind), "sr");
	snprintf(t->uuid, sizeof(t->uuid), "%s", sr.uuid);
	snprintf(t->name, sizeof(t->name), "%s", sr.name);
	vms_cat_sr_clear(&sr);
	return 0;
}

static int parse_stored(vms_policy *p, const vms_cat_policy *cp)
{
	int rc = vms_policy_parse(p, cp->spec, strlen(cp->spec));
	if (rc < 0)
		return vms_error_set(VMS_ECORRUPT, "the stored policy of %s %s does not parse: %s",
		                     cp->target_kind, cp->target_uuid, vms_error_last());
	return 0;
}

/* The effective policy of a VM: its own, else its SR's.  *source is "vm",
 * "sr", or NULL when neither has one (then *p is the default and 0 is
 * returned). */
static int policy_effective(vms_policy *p, const char **source, int64_t *updated, vms_control *ctl,
                            const vms_cat_vm *vm)
{
	int rc;
	vms_cat_policy cp;
	memset(&cp, 0, sizeof(cp));
	vms_policy_init(p);
	*source = NULL;
	*updated = 0;
	rc = vms_cat_policy_get(&cp, ctl->cat, vm->uuid);
	if (rc == VMS_ENOTFOUND) {
		vms_error_clear();
		rc = vms_cat_policy_get(&cp, ctl->cat, vm->sr_uuid);
		if (rc == VMS_ENOTFOUND) {
			vms_error_clear();
			return 0;
		}
		if (rc == 0)
			*source = "sr";
	} else if (rc == 0) {
		*source = "vm";
	}
	if (rc == 0) {
		rc = parse_stored(p, &cp);
		*updated = cp.updated > vm->created ? cp.updated : vm->created;
	}
	vms_cat_policy_clear(&cp);
	return rc;
}

static int ctl_policy_effective(vms_policy *p, const char **source, vms_control *ctl, const vms_cat_vm *vm)
{
	int64_t updated;
	return policy_effective(p, source, &updated, ctl, vm);
}

/* ---- a VM's snapshots as the policy library sees them ------------------------ */

typedef struct vm_snaps {
	vms_cat_snapshot *s;      /* ready, live */
	size_t n;
	vms_prune_snap *ps;
	int64_t last_auto;        /* newest automatic snapshot, or VMS_POLICY_NO_RUN */
	int64_t last_run;         /* last_auto, else when the policy began */
} vm_snaps;

static void vm_snaps_clear(vm_snaps *v)
{
	free(v->s);
	free(v->ps);
	memset(v, 0, sizeof(*v));
}

static int vm_snaps_load(vm_snaps *v, vms_control *ctl, const vms_cat_vm *vm, const vms_policy *p,
                         int64_t began)
{
	int rc;
	size_t n = 0;
	memset(v, 0, sizeof(*v));
	v->last_run = VMS_POLICY_NO_RUN;
	v->last_auto = VMS_POLICY_NO_RUN;
	if ((rc = vms_cat_snapshot_list(&v->s, &n, ctl->cat, vm->uuid, 0)) < 0)
		return rc;
	if (!(v->ps = calloc(n ? n : 1, sizeof(*v->ps)))) {
		vm_snaps_clear(v);
		return NOMEM();
	}
	for (size_t i = 0; i < n; i++) {
		if (v->s[i].state != VMS_STATE_READY || v->s[i].is_deleted)
			continue;
		v->s[v->n] = v->s[i];
		vms_cat_snapshot *s = &v->s[v->n];
		vms_prune_snap *ps = &v->ps[v->n];
		ps->time = s->time;
		ps->id = s->seq;
		ps->held = s->hold[0] != 0;
		ps->hold_reason = s->hold[0] ? s->hold : NULL;
		ps->manual = strcmp(s->name, p->name) != 0;
		if (!ps->manual && (v->last_auto == VMS_POLICY_NO_RUN || s->time > v->last_auto))
			v->last_auto = s->time;
		v->n++;
	}
	v->last_run = v->last_auto != VMS_POLICY_NO_RUN ? v->last_auto : began;
	return 0;
}

static const vms_cat_snapshot *snap_by_seq(const vm_snaps *v, uint64_t seq)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->s[i].seq == seq)
			return &v->s[i];
	return NULL;
}

/* Add "name" and "uuid" to each entry of a vms_prune_to_json() result. */
static void prune_json_names(vms_json *res, const vm_snaps *v)
{
	vms_json *arr = (vms_json *)vms_json_object_get(res, "snapshots");
	for (size_t i = 0; i < vms_json_array_len(arr); i++) {
		vms_json *e = (vms_json *)vms_json_array_get(arr, i);
		int64_t id = -1;
		vms_json_is_int(vms_json_object_get(e, "id"), &id);
		const vms_cat_snapshot *s = snap_by_seq(v, (uint64_t)id);
		if (!s)
			continue;
		char full[VMS_FULLNAME_MAX + 1];
		ctl_fullname(full, s);
		vms_json_object_set_string(e, "name", full);
		vms_json_object_set_string(e, "uuid", s->uuid);
	}
}

/* Compute (and unless dry, carry out) the prune of one VM.  *out:
 * the dry-run JSON plus "deleted" and "skipped" when not dry. */
static int prune_vm(vms_json **out, vms_control *ctl, const vms_cat_vm *vm, const vms_policy *p, int dry)
{
	int rc;
	vm_snaps v;
	vms_prune_decision *d = NULL;
	vms_json *res = NULL, *deleted = NULL, *skipped = NULL;
	if ((rc = vm_snaps_load(&v, ctl, vm, p, VMS_POLICY_NO_RUN)) < 0)
		return rc;
	if ((rc = vms_prune_compute(&d, p, v.ps, v.n)) < 0 || (rc = vms_prune_to_json(&res, d, v.n)) < 0)
		goto done;
	prune_json_names(res, &v);
	vms_json_object_set_bool(res, "dry_run", dry);
	if (dry)
		goto ok;
	if (!(deleted = vms_json_new_array()) || !(skipped = vms_json_new_array())) {
		rc = NOMEM();
		goto done;
	}
	for (size_t i = 0; i < v.n; i++) {
		if (d[i].keep)
			continue;
		const vms_cat_snapshot *s = snap_by_seq(&v, d[i].id);
		char full[VMS_FULLNAME_MAX + 1];
		vms_json *args = vms_json_new_object();
		if (!s || !args) {
			vms_json_free(args);
			rc = NOMEM();
			goto done;
		}
		ctl_fullname(full, s);
		vms_json_object_set_string(args, "snapshot", s->uuid);
		int drc = ctl_sub_op(NULL, ctl, ctl_op_snapshot_delete, args);
		vms_json_free(args);
		vms_json *e = ctl_ref_obj("snapshot", s->uuid, full);
		if (!e) {
			rc = NOMEM();
			goto done;
		}
		if (drc < 0) {
			/* clones or a hold taken meanwhile: the snapshot stays */
			vms_json_object_set_string(e, "code", vms_error_name(drc));
			vms_json_object_set_string(e, "reason", vms_error_last());
			vms_error_clear();
			rc = vms_json_array_append(skipped, e);
		} else {
			rc = vms_json_array_append(deleted, e);
		}
		if (rc < 0)
			goto done;
	}
	ctl_index_drop(ctl, vm->uuid);
	if ((rc = vms_json_object_set(res, "deleted", deleted)) < 0) {
		deleted = NULL;
		goto done;
	}
	deleted = NULL;
	rc = vms_json_object_set(res, "skipped", skipped);
	skipped = NULL;
	if (rc < 0)
		goto done;
ok:
	*out = res;
	res = NULL;
done:
	vms_json_free(res);
	vms_json_free(deleted);
	vms_json_free(skipped);
	free(d);
	vm_snaps_clear(&v);
	return rc;
}

/* ---- policy.set / show / list / delete ---------------------------------------- */

static const char *const SPEC_FIELDS[] = {"schedule", "keep", "name", "enabled", "prune_manual"};
#define NFIELDS (sizeof(SPEC_FIELDS) / sizeof(SPEC_FIELDS[0]))

static int target_json(vms_json *o, const target *t)
{
	int rc;
	if ((rc = vms_json_object_set_string(o, "target_kind", t->kind)) < 0 ||
	    (rc = vms_json_object_set_string(o, "target", t->name)) < 0)
		return rc;
	return vms_json_object_set_string(o, "target_uuid", t->uuid);
}

static int policy_member(vms_json *o, const vms_policy *p)
{
	vms_json *pj = NULL;
	int rc = vms_policy_to_json(&pj, p);
	if (rc < 0)
		return rc;
	return vms_json_object_set(o, "policy", pj);
}

int ctl_op_policy_set(vms_json **out, ctl_req *r)
{
	int rc;
	target t;
	vms_policy p;
	vms_cat_policy cp;
	vms_json *spec = NULL, *o = NULL;
	char *text = NULL;
	const vms_json *given = vms_json_object_get(r->args, "spec");
	int nfields = 0;
	memset(&cp, 0, sizeof(cp));
	if ((rc = get_target(&t, r)) < 0)
		return rc;
	for (size_t i = 0; i < NFIELDS; i++)
		nfields += vms_json_object_get(r->args, SPEC_FIELDS[i]) != NULL;
	if (given && nfields) {
		return vms_error_set(VMS_EINVAL, "give either 'spec' (the whole policy) or fields (schedule, "
		                     "keep, name, enabled, prune_manual), not both");
	}
	if (!given && !nfields)
		return vms_error_set(VMS_EINVAL, "policy.set needs 'spec' or at least one of schedule, keep, "
		                     "name, enabled, prune_manual");
	if (given) {
		if (vms_json_type_of(given) == VMS_JSON_STRING) {
			const char *s = vms_json_string(given);
			if ((rc = vms_json_parse(&spec, s, strlen(s))) < 0) {
				vms_error_wrap(rc, "argument 'spec'");
				goto done;
			}
		} else if (!(spec = vms_json_copy(given))) {
			rc = NOMEM();
			goto done;
		}
	} else {
		/* fields: change those members of the target's current policy */
		rc = vms_cat_policy_get(&cp, r->ctl->cat, t.uuid);
		if (rc == 0) {
			if ((rc = parse_stored(&p, &cp)) < 0 || (rc = vms_policy_to_json(&spec, &p)) < 0)
				goto done;
		} else if (rc == VMS_ENOTFOUND) {
			vms_error_clear();
			if (!(spec = vms_json_new_object())) {
				rc = NOMEM();
				goto done;
			}
		} else {
			goto done;
		}
		for (size_t i = 0; i < NFIELDS; i++) {
			const vms_json *f = vms_json_object_get(r->args, SPEC_FIELDS[i]);
			vms_json *c;
			if (!f)
				continue;
			if (!(c = vms_json_copy(f)) || (rc = vms_json_object_set(spec, SPEC_FIELDS[i], c)) < 0) {
				rc = rc < 0 ? rc : NOMEM();
				goto done;
			}
		}
	}
	if (vms_json_type_of(spec) != VMS_JSON_OBJECT) {
		rc = vms_error_set(VMS_EINVAL, "argument 'spec' must be a JSON object (docs/policy.md)");
		goto done;
	}
	if ((rc = vms_policy_from_json(&p, spec)) < 0 || (rc = vms_policy_serialize(&text, &p)) < 0)
		goto done;
	if ((rc = ctl_begin(r->ctl)) < 0)
		goto done;
	if ((rc = vms_cat_policy_set(r->ctl->cat, t.uuid, t.kind, text, ctl_now(r->ctl))) < 0 ||
	    (rc = ctl_commit(r->ctl)) < 0) {
		vms_catalog_rollback(r->ctl->cat);
		goto done;
	}
	if (!(o = vms_json_new_object())) {
		rc = NOMEM();
		goto done;
	}
	if ((rc = target_json(o, &t)) < 0 || (rc = policy_member(o, &p)) < 0 ||
	    (rc = ctl_set_time(o, "updated", ctl_now(r->ctl))) < 0)
		goto done;
	*out = o;
	o = NULL;
done:
	vms_cat_policy_clear(&cp);
	vms_json_free(spec);
	vms_json_free(o);
	free(text);
	return rc;
}

static int next_json(vms_json *o, const vms_policy *p, const vm_snaps *v, int64_t now)
{
	int64_t next = VMS_POLICY_NEVER;
	uint64_t missed = 0;
	int rc = vms_policy_next_run(&next, &missed, p, v->last_run, now);
	if (rc < 0)
		return rc;
	if (v->last_auto == VMS_POLICY_NO_RUN)
		vms_json_object_set(o, "last_run_time", vms_json_new_null());
	else
		ctl_set_time(o, "last_run", v->last_auto);
	if (next == VMS_POLICY_NEVER) {
		vms_json_object_set(o, "next_time", vms_json_new_null());
		vms_json_object_set(o, "next_time_iso", vms_json_new_null());
	} else {
		ctl_set_time(o, "next", next);
	}
	vms_json_object_set_bool(o, "due", next <= now);
	return vms_json_object_set_int(o, "missed", (int64_t)missed);
}

int ctl_op_policy_show(vms_json **out, ctl_req *r)
{
	int rc;
	target t;
	vms_policy p;
	const char *source = NULL;
	vms_json *o = NULL;
	vms_cat_policy cp;
	memset(&cp, 0, sizeof(cp));
	if ((rc = get_target(&t, r)) < 0)
		return rc;
	int64_t began = 0;
	if (t.kind[0] == 'v') {
		if ((rc = policy_effective(&p, &source, &began, r->ctl, &t.vm)) < 0)
			return rc;
		if (!source)
			return vms_error_set(VMS_ENOTFOUND, "VM '%s' has no policy (neither its own nor its "
			                     "SR's default)", t.name);
	} else {
		if ((rc = vms_cat_policy_get(&cp, r->ctl->cat, t.uuid)) < 0)
			return vms_error_set(rc, "SR '%s' has no default policy", t.name);
		rc = parse_stored(&p, &cp);
		source = "sr";
		vms_cat_policy_clear(&cp);
		if (rc < 0)
			return rc;
	}
	if (!(o = vms_json_new_object()))
		return NOMEM();
	if ((rc = target_json(o, &t)) < 0 || (rc = vms_json_object_set_string(o, "source", source)) < 0 ||
	    (rc = policy_member(o, &p)) < 0)
		goto done;
	if (t.kind[0] == 'v') {
		vm_snaps v;
		if ((rc = vm_snaps_load(&v, r->ctl, &t.vm, &p, began)) < 0)
			goto done;
		rc = next_json(o, &p, &v, ctl_now(r->ctl));
		vm_snaps_clear(&v);
		if (rc < 0)
			goto done;
	}
	*out = o;
	o = NULL;
done:
	vms_json_free(o);
	return rc;
}

int ctl_op_policy_list(vms_json **out, ctl_req *r)
{
	int rc;
	vms_cat_policy *v = NULL;
	size_t n = 0;
	vms_json *arr = NULL, *o = NULL;
	if ((rc = vms_cat_policy_list(&v, &n, r->ctl->cat)) < 0)
		return rc;
	if (!(arr = vms_json_new_array()) || !(o = vms_json_new_object())) {
		rc = NOMEM();
		goto done;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_policy p;
		char name[VMS_NAME_MAX + 1] = "";
		vms_json *e = vms_json_new_object();
		if (!e) {
			rc = NOMEM();
			break;
		}
		if (strcmp(v[i].target_kind, "vm") == 0) {
			ctl_vm_name(name, r->ctl, v[i].target_uuid);
		} else {
			vms_cat_sr sr;
			if (vms_cat_sr_get(&sr, r->ctl->cat, v[i].target_uuid) == 0) {
				snprintf(name, sizeof(name), "%s", sr.name);
				vms_cat_sr_clear(&sr);
			}
			vms_error_clear();
		}
		vms_json_object_set_string(e, "target_kind", v[i].target_kind);
		vms_json_object_set_string(e, "target", name);
		vms_json_object_set_string(e, "target_uuid", v[i].target_uuid);
		ctl_set_time(e, "updated", v[i].updated);
		if ((rc = parse_stored(&p, &v[i])) == 0 && (rc = policy_member(e, &p)) == 0)
			rc = vms_json_array_append(arr, e);
		else
			vms_json_free(e);
	}
	if (rc < 0)
		goto done;
	rc = vms_json_object_set(o, "policies", arr);
	arr = NULL;
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	vms_cat_policy_list_free(v, n);
	vms_json_free(arr);
	vms_json_free(o);
	return rc;
}

int ctl_op_policy_delete(vms_json **out, ctl_req *r)
{
	int rc;
	target t;
	vms_json *o;
	if ((rc = get_target(&t, r)) < 0)
		return rc;
	if ((rc = ctl_begin(r->ctl)) < 0)
		return rc;
	if ((rc = vms_cat_policy_delete(r->ctl->cat, t.uuid)) < 0 || (rc = ctl_commit(r->ctl)) < 0) {
		vms_catalog_rollback(r->ctl->cat);
		if (rc == VMS_ENOTFOUND)
			return vms_error_set(rc, "%s '%s' has no policy", t.kind[0] == 'v' ? "VM" : "SR",
			                     t.name);
		return rc;
	}
	if (!(o = vms_json_new_object()))
		return NOMEM();
	if ((rc = vms_json_object_set(o, "deleted", ctl_ref_obj(t.kind, t.uuid, t.name))) < 0) {
		vms_json_free(o);
		return rc;
	}
	*out = o;
	return 0;
}

/* ---- policy.prune / policy.run ------------------------------------------------ */

int ctl_op_policy_prune(vms_json **out, ctl_req *r)
{
	int rc, dry = 0;
	const char *vmkey, *source;
	vms_cat_vm vm;
	vms_policy p;
	vms_json *res = NULL;
	if ((rc = ctl_arg_str(&vmkey, r, "vm", 1)) < 0 || (rc = ctl_arg_bool(r, "dry_run", &dry)) < 0 ||
	    (rc = ctl_get_vm(&vm, r, vmkey, 0)) < 0 ||
	    (rc = ctl_policy_effective(&p, &source, r->ctl, &vm)) < 0)
		return rc;
	if (!source)
		return vms_error_set(VMS_ENOTFOUND, "VM '%s' has no policy to prune by", vm.name);
	if ((rc = prune_vm(&res, r->ctl, &vm, &p, dry)) < 0)
		return rc;
	vms_json_object_set_string(res, "vm", vm.name);
	vms_json_object_set_string(res, "vm_uuid", vm.uuid);
	vms_json_object_set_string(res, "source", source);
	if ((rc = policy_member(res, &p)) < 0) {
		vms_json_free(res);
		return rc;
	}
	*out = res;
	return 0;
}

/* One VM's scheduled run: snapshot when due (or forced), then prune. */
static int run_vm(vms_json *e, int64_t *next_out, vms_control *ctl, const vms_cat_vm *vm, int force)
{
	int rc;
	const char *source;
	vms_policy p;
	vm_snaps v;
	int64_t now = ctl_now(ctl), next = VMS_POLICY_NEVER, began = 0;
	uint64_t missed = 0;
	vms_json *snap = NULL, *pr = NULL;
	memset(&v, 0, sizeof(v));
	*next_out = VMS_POLICY_NEVER;
	if ((rc = policy_effective(&p, &source, &began, ctl, vm)) < 0 || !source)
		return rc;
	vms_json_object_set_string(e, "source", source);
	if ((rc = vm_snaps_load(&v, ctl, vm, &p, began)) < 0 ||
	    (rc = vms_policy_next_run(&next, &missed, &p, v.last_run, now)) < 0)
		goto done;
	int due = next <= now || force;
	vms_json_object_set_bool(e, "due", due);
	vms_json_object_set_int(e, "missed", (int64_t)missed);
	if (!due || !p.enabled) {
		rc = next_json(e, &p, &v, now);
		*next_out = next;
		goto done;
	}
	vms_json *args = vms_json_new_object();
	if (!args) {
		rc = NOMEM();
		goto done;
	}
	vms_json_object_set_string(args, "vm", vm->uuid);
	vms_json_object_set_string(args, "name", p.name);
	rc = ctl_sub_op(&snap, ctl, ctl_op_snapshot_create, args);
	vms_json_free(args);
	if (rc < 0)
		goto done;
	vms_json_object_set(e, "snapshot", snap);
	if ((rc = prune_vm(&pr, ctl, vm, &p, 0)) < 0)
		goto done;
	vms_json_object_set(e, "prune", pr);
	/* the next run after this one (last_run = now) */
	if ((rc = vms_policy_next_run(&next, NULL, &p, now, now)) < 0)
		goto done;
	if (next == VMS_POLICY_NEVER) {
		vms_json_object_set(e, "next_time", vms_json_new_null());
	} else {
		ctl_set_time(e, "next", next);
	}
	*next_out = next;
done:
	vm_snaps_clear(&v);
	return rc;
}

int ctl_op_policy_run(vms_json **out, ctl_req *r)
{
	int rc, force = 0;
	const char *vmkey = NULL;
	vms_cat_vm *vms = NULL, one;
	size_t n = 0;
	int64_t next_all = VMS_POLICY_NEVER;
	vms_json *o = NULL, *runs = NULL;
	if ((rc = ctl_arg_str(&vmkey, r, "vm", 0)) < 0 || (rc = ctl_arg_bool(r, "force", &force)) < 0)
		return rc;
	if (vmkey) {
		if ((rc = ctl_get_vm(&one, r, vmkey, 0)) < 0)
			return rc;
	} else if ((rc = vms_cat_vm_list(&vms, &n, r->ctl->cat, NULL, 0)) < 0) {
		return rc;
	}
	if (!(o = vms_json_new_object()) || !(runs = vms_json_new_array())) {
		rc = NOMEM();
		goto done;
	}
	const vms_cat_vm *list = vmkey ? &one : vms;
	size_t count = vmkey ? 1 : n;
	int failures = 0;
	for (size_t i = 0; i < count; i++) {
		const char *source;
		vms_policy p;
		int64_t next = VMS_POLICY_NEVER;
		if (list[i].state != VMS_STATE_READY || list[i].is_deleted)
			continue;
		if ((rc = ctl_policy_effective(&p, &source, r->ctl, &list[i])) < 0) {
			if (vmkey)
				goto done;
			vms_error_clear();
			failures++;
			continue;
		}
		if (!source) {
			if (vmkey) {
				rc = vms_error_set(VMS_ENOTFOUND, "VM '%s' has no policy", list[i].name);
				goto done;
			}
			continue;
		}
		vms_json *e = vms_json_new_object();
		if (!e) {
			rc = NOMEM();
			goto done;
		}
		vms_json_object_set_string(e, "vm", list[i].name);
		vms_json_object_set_string(e, "vm_uuid", list[i].uuid);
		int vrc = run_vm(e, &next, r->ctl, &list[i], force);
		if (vrc < 0) {
			if (vmkey) {
				vms_json_free(e);
				rc = vrc;
				goto done;
			}
			/* one VM's failure does not stop the others */
			vms_json_object_set_string(e, "error", vms_error_last());
			vms_json_object_set_string(e, "code", vms_error_name(vrc));
			vms_error_clear();
			failures++;
		}
		if (next < next_all)
			next_all = next;
		if ((rc = vms_json_array_append(runs, e)) < 0)
			goto done;
	}
	ctl_set_time(o, "now", ctl_now(r->ctl));
	if (next_all == VMS_POLICY_NEVER) {
		vms_json_object_set(o, "next_time", vms_json_new_null());
		vms_json_object_set(o, "next_time_iso", vms_json_new_null());
	} else {
		ctl_set_time(o, "next", next_all);
	}
	vms_json_object_set_int(o, "failures", failures);
	rc = vms_json_object_set(o, "runs", runs);
	runs = NULL;
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	free(vms);
	vms_json_free(o);
	vms_json_free(runs);
	return rc;
}

/* ---- holds --------------------------------------------------------------------- */

static int hold_op(vms_json **out, ctl_req *r, int hold)
{
	int rc;
	const char *sel, *tag = "hold";
	vms_cat_snapshot s;
	char full[VMS_FULLNAME_MAX + 1];
	if ((rc = ctl_arg_str(&sel, r, "snapshot", 1)) < 0)
		return rc;
	if (hold && (rc = ctl_arg_str(&tag, r, "tag", 0)) < 0)
		return rc;
	if (!tag)
		tag = "hold";
	if (hold && (rc = vms_name_check(tag, "hold tag")) < 0)
		return rc;
	if ((rc = ctl_get_snapshot(&s, NULL, NULL, r, sel, NULL, 0)) < 0)
		return rc;
	ctl_fullname(full, &s);
	if (!hold && !s.hold[0])
		return vms_error_set(VMS_EINVAL, "snapshot %s is not held", full);
	if ((rc = ctl_begin(r->ctl)) < 0)
		return rc;
	rc = hold ? vms_cat_snapshot_set_hold(r->ctl->cat, s.uuid, tag)
	          : vms_cat_snapshot_clear_hold(r->ctl->cat, s.uuid);
	if (rc < 0 || (rc = ctl_commit(r->ctl)) < 0) {
		vms_catalog_rollback(r->ctl->cat);
		return rc;
	}
	if ((rc = vms_cat_snapshot_get(&s, r->ctl->cat, s.uuid)) < 0)
		return rc;
	return ctl_rec_snapshot(out, r->ctl, &s);
}

int ctl_op_snapshot_hold(vms_json **out, ctl_req *r)
{
	return hold_op(out, r, 1);
}

int ctl_op_snapshot_release(vms_json **out, ctl_req *r)
{
	return hold_op(out, r, 0);
}

/* ---- vm.report ----------------------------------------------------------------- */

static void space_sum(int64_t *ref, int64_t *uniq, int64_t *wr, vms_control *ctl, const vms_backend *be,
                      vms_sr_handle *h, const char *snapshot_uuid)
{
	vms_cat_snapdisk *sd = NULL;
	size_t n = 0;
	*ref = *uniq = *wr = 0;
	if (vms_cat_snapshot_disks(&sd, &n, ctl->cat, snapshot_uuid) < 0) {
		*ref = *uniq = *wr = -1;
		vms_error_clear();
		return;
	}
	for (size_t i = 0; i < n; i++) {
		vms_ref_space sp = {UINT64_MAX, UINT64_MAX, UINT64_MAX, VMS_SPACE_PER_DISK};
		if (!sd[i].ref || !be || !be->ref_space || be->ref_space(&sp, h, sd[i].ref) < 0) {
			sp.referenced = sp.unique = sp.written = UINT64_MAX;
			vms_error_clear();
		}
		*ref = *ref < 0 || sp.referenced == UINT64_MAX ? -1 : *ref + (int64_t)sp.referenced;
		*uniq = *uniq < 0 || sp.unique == UINT64_MAX ? -1 : *uniq + (int64_t)sp.unique;
		*wr = *wr < 0 || sp.written == UINT64_MAX ? -1 : *wr + (int64_t)sp.written;
	}
	vms_cat_snapdisk_list_free(sd, n);
}

int ctl_op_vm_report(vms_json **out, ctl_req *r)
{
	int rc;
	const char *vmkey, *source;
	vms_cat_vm vm;
	vms_policy p;
	vm_snaps v;
	ctl_map m;
	vms_report_snap *rs = NULL;
	char (*names)[VMS_FULLNAME_MAX + 1] = NULL;
	vms_json *rep = NULL, *disks = NULL;
	memset(&v, 0, sizeof(v));
	memset(&m, 0, sizeof(m));
	if ((rc = ctl_arg_str(&vmkey, r, "vm", 1)) < 0 || (rc = ctl_get_vm(&vm, r, vmkey, 0)) < 0 ||
	    (rc = ctl_policy_effective(&p, &source, r->ctl, &vm)) < 0)
		return rc;
	if ((rc = ctl_map_vm(&m, r->ctl, &vm)) < 0 ||
	    (rc = vm_snaps_load(&v, r->ctl, &vm, &p, VMS_POLICY_NO_RUN)) < 0)
		goto done;
	rs = calloc(v.n ? v.n : 1, sizeof(*rs));
	names = calloc(v.n ? v.n : 1, sizeof(*names));
	if (!rs || !names) {
		rc = NOMEM();
		goto done;
	}
	for (size_t i = 0; i < v.n; i++) {
		ctl_fullname(names[i], &v.s[i]);
		rs[i].uuid = v.s[i].uuid;
		rs[i].name = names[i];
		rs[i].id = v.s[i].seq;
		rs[i].time = v.s[i].time;
		space_sum(&rs[i].referenced, &rs[i].unique, &rs[i].written, r->ctl, m.be, m.h, v.s[i].uuid);
		/* vmsnap's snapshots are never chained, imported disks included:
		 * an import is flattened (its source depth is under "disks") */
		rs[i].chain_depth = 1;
		rs[i].held = v.ps[i].held;
		rs[i].hold_reason = v.ps[i].hold_reason;
		rs[i].manual = v.ps[i].manual;
	}
	vms_report_input in = {.vm = vm.name, .vm_uuid = vm.uuid, .now = ctl_now(r->ctl),
	                       .policy = source ? &p : NULL, .snaps = rs, .n = v.n};
	if ((rc = vms_report_vm(&rep, &in)) < 0)
		goto done;
	vms_json_object_set_string(rep, "policy_source", source);
	if (!(disks = vms_json_new_array())) {
		rc = NOMEM();
		goto done;
	}
	int64_t src_max = 1;
	for (size_t i = 0; i < m.ndisks; i++) {
		vms_json *d = vms_json_new_object(), *imp = NULL;
		if (!d) {
			rc = NOMEM();
			goto done;
		}
		vms_json_object_set_string(d, "name", m.disks[i].name);
		vms_json_object_set_string(d, "uuid", m.disks[i].uuid);
		vms_json_object_set_int(d, "size", (int64_t)m.disks[i].size);
		vms_json_object_set_int(d, "chain_depth", 1);
		if (ctl_import_record_get(&imp, r->ctl, m.disks[i].uuid) == 0 && imp) {
			int64_t depth = 1;
			vms_json_is_int(vms_json_object_get(imp, "source_chain_depth"), &depth);
			if (depth > src_max)
				src_max = depth;
			vms_json_object_set(d, "imported", imp);
		} else {
			vms_error_clear();
			vms_json_object_set(d, "imported", vms_json_new_null());
		}
		if ((rc = vms_json_array_append(disks, d)) < 0)
			goto done;
	}
	vms_json_object_set(rep, "disks", disks);
	disks = NULL;
	vms_json_object_set_int(rep, "source_chain_depth_max", src_max);
	*out = rep;
	rep = NULL;
done:
	vms_json_free(rep);
	vms_json_free(disks);
	free(rs);
	free(names);
	vm_snaps_clear(&v);
	ctl_map_clear(&m);
	return rc;
}

/* ---- stats with live I/O figures -------------------------------------------------- */

void vms_control_set_io_source(vms_control *ctl, vms_control_io_fn fn, void *ctx)
{
	ctl->io_fn = fn;
	ctl->io_ctx = ctx;
}

/* Does export `name` ("vm/disk" or "vm/disk@snap") belong to the VM (by
 * name or uuid), or to any VM when vm is NULL? */
static int export_of(const char *name, const vms_cat_vm *vm)
{
	if (!vm)
		return 1;
	size_t a = strlen(vm->name), b = strlen(vm->uuid);
	return (strncmp(name, vm->name, a) == 0 && name[a] == '/') ||
	       (strncmp(name, vm->uuid, b) == 0 && name[b] == '/');
}

int ctl_op_stats_io(vms_json **out, ctl_req *r)
{
	int rc;
	vms_json *o = NULL, *io = NULL;
	const char *vmkey = NULL, *snapkey = NULL;
	vms_cat_vm vm;
	vms_control_io_entry *ents = NULL;
	size_t n = 0;
	if ((rc = ctl_op_stats(&o, r)) < 0)
		return rc;
	if (!r->ctl->io_fn)
		goto ok;
	ctl_arg_str(&vmkey, r, "vm", 0);
	ctl_arg_str(&snapkey, r, "snapshot", 0);
	if (snapkey)
		goto ok;
	if (vmkey && (rc = ctl_get_vm(&vm, r, vmkey, 0)) < 0)
		goto done;
	if ((rc = r->ctl->io_fn(r->ctl->io_ctx, &ents, &n)) < 0)
		goto done;
	if (!(io = vms_json_new_array())) {
		rc = NOMEM();
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		vms_json *fig = NULL, *e;
		if (!export_of(ents[i].name, vmkey ? &vm : NULL))
			continue;
		if ((rc = vms_io_snapshot_to_json(&fig, &ents[i].io, ents[i].seconds)) < 0)
			goto done;
		if (!(e = vms_json_new_object())) {
			vms_json_free(fig);
			rc = NOMEM();
			goto done;
		}
		vms_json_object_set_string(e, "export", ents[i].name);
		vms_json_object_set(e, "seconds", vms_json_new_double(ents[i].seconds));
		vms_json_object_set(e, "io", fig);
		if ((rc = vms_json_array_append(io, e)) < 0)
			goto done;
	}
	rc = vms_json_object_set(o, "io", io);
	io = NULL;
	if (rc < 0)
		goto done;
ok:
	*out = o;
	o = NULL;
	rc = 0;
done:
	free(ents);
	vms_json_free(io);
	vms_json_free(o);
	return rc;
}
