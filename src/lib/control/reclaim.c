/*
 * Delete constraints (the paper's section 3.2.4).
 *
 * A clone VM records its parent snapshot; a snapshot's children are its
 * clones (live or deferred).  Deleting something that children depend on
 * either fails (DEPENDENTS) or, with defer, marks it isDeleted: hidden, kept,
 * and reclaimed when its last child is gone.  Reclaiming a VM cascades
 * upwards: its parent snapshot, if deferred and now childless, is reclaimed,
 * then that snapshot's VM if deferred and now without snapshots, and so on.
 *
 * Dry runs walk exactly the same code with the catalog and the SR
 * untouched: what would be reclaimed goes into a "gone" set that the
 * children and remaining-snapshot counts subtract, so the cascade of a dry
 * run is the cascade of the real run.
 *
 * Crash ordering for every reclaim (docs/design/catalog.md): the row is set
 * 'deleting' and committed, then the backend deletes, then the row is
 * removed.  Reconciliation finishes 'deleting' rows (the backend delete is
 * idempotent: NOTFOUND counts as done).
 *
 * Deferring a snapshot: the catalog marks it isDeleted (committed), then a
 * backend whose storage has the same rule (VMS_CAP_DEFER_DELETE: zfs
 * destroy -d) is told, so that the storage keeps it for its clones and may
 * destroy it itself with the last one; the reclaim's backend delete then
 * finds it gone, which is success.  Catalog first: a crash in between
 * leaves a snapshot the storage still keeps, deleted at reclaim as on any
 * other backend; the other order could let the storage destroy a snapshot
 * the catalog still shows.  A failing storage deferral is reported in the
 * result ("storage_deferred":false, "storage_error") and is not fatal: the
 * reclaim deletes the snapshot anyway.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

int ctl_del_init(ctl_del *d, ctl_req *r, int dry_run)
{
	memset(d, 0, sizeof(*d));
	d->r = r;
	d->dry_run = dry_run;
	d->bytes_known = 1;
	d->deleted = vms_json_new_array();
	d->deferred = vms_json_new_array();
	if (!d->deleted || !d->deferred) {
		ctl_del_clear(d);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	return 0;
}

void ctl_del_clear(ctl_del *d)
{
	vms_json_free(d->deleted);
	vms_json_free(d->deferred);
	for (size_t i = 0; i < d->ngone; i++)
		free(d->gone[i]);
	free(d->gone);
	memset(d, 0, sizeof(*d));
}

int ctl_del_result(vms_json **out, ctl_del *d)
{
	vms_json *o = vms_json_new_object();
	if (!o)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	int rc = vms_json_object_set_bool(o, "dry_run", d->dry_run);
	if (rc == 0)
		rc = vms_json_object_set(o, "deleted", vms_json_copy(d->deleted));
	if (rc == 0)
		rc = vms_json_object_set(o, "deferred", vms_json_copy(d->deferred));
	if (rc == 0)
		rc = vms_json_object_set(o, "bytes_freed", d->bytes_known ? vms_json_new_int((int64_t)d->bytes)
		                                                          : vms_json_new_null());
	if (rc < 0) {
		vms_json_free(o);
		return rc;
	}
	*out = o;
	return 0;
}

static int gone_add(ctl_del *d, const char *uuid)
{
	if (d->ngone == d->capgone) {
		size_t nc = d->capgone ? d->capgone * 2 : 16;
		char **n = realloc(d->gone, nc * sizeof(*n));
		if (!n)
			return vms_error_set(VMS_ENOMEM, "out of memory");
		d->gone = n;
		d->capgone = nc;
	}
	if (!(d->gone[d->ngone] = strdup(uuid)))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	d->ngone++;
	return 0;
}

static int is_gone(const ctl_del *d, const char *uuid)
{
	for (size_t i = 0; i < d->ngone; i++)
		if (strcmp(d->gone[i], uuid) == 0)
			return 1;
	return 0;
}

static int note(vms_json *arr, const char *kind, const char *uuid, const char *name)
{
	return vms_json_array_append(arr, ctl_ref_obj(kind, uuid, name));
}

int ctl_live_children(vms_cat_vm **out, size_t *n, ctl_del *d, const char *snapshot_uuid)
{
	int rc;
	vms_cat_vm *v = NULL;
	size_t len = 0, k = 0;
	if ((rc = vms_cat_vm_children(&v, &len, d->r->ctl->cat, snapshot_uuid)) < 0)
		return rc;
	for (size_t i = 0; i < len; i++)
		if (!is_gone(d, v[i].uuid))
			v[k++] = v[i];
	*out = v;
	*n = k;
	return 0;
}

/* Snapshots of a VM (deferred ones included) not reclaimed in this run. */
static int remaining_snapshots(vms_cat_snapshot **out, size_t *n, ctl_del *d, const char *vm_uuid)
{
	int rc;
	vms_cat_snapshot *v = NULL;
	size_t len = 0, k = 0;
	if ((rc = vms_cat_snapshot_list(&v, &len, d->r->ctl->cat, vm_uuid, 1)) < 0)
		return rc;
	for (size_t i = 0; i < len; i++)
		if (!is_gone(d, v[i].uuid))
			v[k++] = v[i];
	*out = v;
	*n = k;
	return 0;
}

static void add_bytes(ctl_del *d, const vms_backend *be, vms_sr_handle *h, const char *ref)
{
	vms_ref_space sp;
	if (!ref)
		return;
	if (!be->ref_space || be->ref_space(&sp, h, ref) < 0 || sp.unique == UINT64_MAX) {
		d->bytes_known = 0;
		vms_error_clear();
		return;
	}
	d->bytes += sp.unique;
}

/* Backend of the SR holding a VM (deleted VMs included). */
static int vm_backend(const vms_backend **be, vms_sr_handle **h, vms_control *ctl, const char *vm_uuid)
{
	vms_cat_vm vm;
	int rc;
	if ((rc = vms_cat_vm_get(&vm, ctl->cat, vm_uuid, 1)) < 0)
		return rc;
	return ctl_sr_backend(be, h, ctl, vm.sr_uuid);
}

/* Does the backend keep deferred snapshots itself (zfs destroy -d)? */
static int has_storage_defer(const vms_backend *be)
{
	return (be->caps & VMS_CAP_DEFER_DELETE) &&
	       be->size >= offsetof(vms_backend, snapshot_defer_delete) + sizeof(be->snapshot_defer_delete) &&
	       be->snapshot_defer_delete;
}

/*
 * The storage side of a snapshot: delete it (reclaim) or defer its delete.
 * Gone already (NOTFOUND, or a backend that finds it gone) is success.
 * *deferred (may be NULL) says whether the storage now defers it.
 */
static int backend_snapshot_op(vms_control *ctl, const vms_cat_snapshot *s, int defer, int *deferred)
{
	int rc;
	const vms_backend *be;
	vms_sr_handle *h;
	vms_cat_snapdisk *sd = NULL;
	size_t n = 0, k = 0;
	const char **refs = NULL;
	if (deferred)
		*deferred = 0;
	if ((rc = vms_cat_snapshot_disks(&sd, &n, ctl->cat, s->uuid)) < 0)
		return rc;
	if (n == 0)
		goto done;
	if ((rc = vm_backend(&be, &h, ctl, s->vm_uuid)) < 0)
		goto done;
	if (defer && !has_storage_defer(be))
		goto done;
	if (!(refs = calloc(n, sizeof(*refs)))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++)
		if (sd[i].ref)
			refs[k++] = sd[i].ref;
	if (!k)
		goto done;
	rc = defer ? be->snapshot_defer_delete(h, s->vm_uuid, s->uuid, refs, k)
	           : be->snapshot_delete(h, s->vm_uuid, s->uuid, refs, k);
	if (rc == VMS_ENOTFOUND) {
		vms_error_clear();
		rc = 0;
	} else if (rc == 0 && deferred) {
		*deferred = defer;
	}
done:
	free(refs);
	vms_cat_snapdisk_list_free(sd, n);
	return rc;
}

int ctl_backend_snapshot_delete(vms_control *ctl, const vms_cat_snapshot *s)
{
	return backend_snapshot_op(ctl, s, 0, NULL);
}

int ctl_backend_disk_delete(vms_control *ctl, const vms_cat_vdi *vdi)
{
	int rc;
	const vms_backend *be;
	vms_sr_handle *h;
	if (!vdi->ref)
		return 0;
	if ((rc = ctl_sr_backend(&be, &h, ctl, vdi->sr_uuid)) < 0)
		return rc;
	rc = be->disk_delete(h, vdi->ref);
	return rc == VMS_ENOTFOUND ? 0 : rc;
}

int ctl_gc_vdis(vms_control *ctl, const char *vm_uuid)
{
	/* deleted, detached VDIs that no snapshot covers any more: only rows */
	vms_cat_vdi *v = NULL;
	size_t n = 0;
	int rc;
	(void)vm_uuid;
	if ((rc = vms_cat_vdi_list(&v, &n, ctl->cat, NULL, NULL, 1)) < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!v[i].is_deleted || v[i].vm_uuid[0] || v[i].state != VMS_STATE_READY)
			continue;
		int64_t refs = vms_cat_vdi_snapshot_refs(ctl->cat, v[i].uuid);
		if (refs < 0)
			rc = (int)refs;
		else if (refs == 0)
			rc = vms_cat_vdi_delete(ctl->cat, v[i].uuid);
	}
	vms_cat_vdi_list_free(v, n);
	return rc;
}

int ctl_defer_snapshot(ctl_del *d, const vms_cat_snapshot *s)
{
	int rc, storage = 0;
	char full[VMS_FULLNAME_MAX + 1], why[512] = "";
	vms_control *ctl = d->r->ctl;
	vms_json *o;
	ctl_fullname(full, s);
	if (!d->dry_run && !s->is_deleted) {
		if ((rc = ctl_begin(ctl)) < 0)
			return rc;
		if ((rc = vms_cat_snapshot_set_deleted(ctl->cat, s->uuid)) < 0 || (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			return rc;
		}
		ctl_index_drop(ctl, s->vm_uuid);
	}
	/* the storage's own deferral, also for an already deferred snapshot
	 * (it repeats what a crash may have cut short) */
	if (!d->dry_run && backend_snapshot_op(ctl, s, 1, &storage) < 0) {
		snprintf(why, sizeof(why), "%s", vms_error_last());
		vms_error_clear();
	}
	if (!(o = ctl_ref_obj("snapshot", s->uuid, full)))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if ((rc = vms_json_object_set_bool(o, "storage_deferred", storage)) < 0 ||
	    (why[0] && (rc = vms_json_object_set_string(o, "storage_error", why)) < 0)) {
		vms_json_free(o);
		return rc;
	}
	return vms_json_array_append(d->deferred, o);
}

int ctl_reclaim_snapshot(ctl_del *d, const vms_cat_snapshot *s)
{
	int rc;
	char full[VMS_FULLNAME_MAX + 1];
	vms_control *ctl = d->r->ctl;
	const vms_backend *be;
	vms_sr_handle *h;
	vms_cat_snapdisk *sd = NULL;
	size_t nsd = 0;
	vms_cat_vm vm;

	ctl_fullname(full, s);
	if ((rc = vm_backend(&be, &h, ctl, s->vm_uuid)) < 0)
		return rc;
	if ((rc = vms_cat_snapshot_disks(&sd, &nsd, ctl->cat, s->uuid)) < 0)
		return rc;
	for (size_t i = 0; i < nsd; i++)
		add_bytes(d, be, h, sd[i].ref);
	vms_cat_snapdisk_list_free(sd, nsd);
	if (!d->dry_run) {
		if ((rc = ctl_begin(ctl)) < 0)
			return rc;
		if ((rc = vms_cat_snapshot_set_state(ctl->cat, s->uuid, VMS_STATE_DELETING)) < 0 ||
		    (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			return rc;
		}
		ctl_index_drop(ctl, s->vm_uuid);
		if ((rc = ctl_backend_snapshot_delete(ctl, s)) < 0)
			return vms_error_wrap(rc, "deleting snapshot %s (left 'deleting'; finished when "
			                      "vmsnap next opens the catalog)", full);
		if ((rc = ctl_begin(ctl)) < 0)
			return rc;
		if ((rc = vms_cat_snapshot_delete(ctl->cat, s->uuid)) < 0 ||
		    (rc = ctl_gc_vdis(ctl, s->vm_uuid)) < 0 || (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			return rc;
		}
	}
	if ((rc = gone_add(d, s->uuid)) < 0 || (rc = note(d->deleted, "snapshot", s->uuid, full)) < 0)
		return rc;
	/* cascade: a deferred VM whose last snapshot this was goes too */
	if (vms_cat_vm_get(&vm, ctl->cat, s->vm_uuid, 1) < 0 || !vm.is_deleted || is_gone(d, vm.uuid)) {
		vms_error_clear();
		return 0;
	}
	vms_cat_snapshot *rest = NULL;
	size_t nrest = 0;
	if ((rc = remaining_snapshots(&rest, &nrest, d, vm.uuid)) < 0)
		return rc;
	free(rest);
	if (nrest)
		return 0;
	return ctl_reclaim_vm(d, &vm);
}

int ctl_reclaim_vdi(ctl_del *d, const vms_cat_vdi *vdi)
{
	int rc;
	vms_control *ctl = d->r->ctl;
	const vms_backend *be;
	vms_sr_handle *h;
	if ((rc = ctl_sr_backend(&be, &h, ctl, vdi->sr_uuid)) < 0)
		return rc;
	add_bytes(d, be, h, vdi->ref);
	if (!d->dry_run) {
		if ((rc = ctl_begin(ctl)) < 0)
			return rc;
		if ((rc = vms_cat_vdi_set_state(ctl->cat, vdi->uuid, VMS_STATE_DELETING)) < 0 ||
		    (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			return rc;
		}
		if ((rc = ctl_backend_disk_delete(ctl, vdi)) < 0)
			return vms_error_wrap(rc, "deleting disk '%s' (left 'deleting'; finished when "
			                      "vmsnap next opens the catalog)", vdi->name);
		if ((rc = ctl_begin(ctl)) < 0)
			return rc;
		int64_t refs = vms_cat_vdi_snapshot_refs(ctl->cat, vdi->uuid);
		if (refs < 0)
			rc = (int)refs;
		else if (refs > 0) {
			/* snapshots still cover it: keep the row, detached and hidden */
			if ((rc = vms_cat_vdi_set_deleted(ctl->cat, vdi->uuid)) == 0)
				rc = vms_cat_vdi_set_ref(ctl->cat, vdi->uuid, NULL, VMS_STATE_READY);
		} else {
			rc = vms_cat_vdi_delete(ctl->cat, vdi->uuid);
		}
		if (rc < 0 || (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			return rc;
		}
		ctl_disk_changed(ctl, vdi->uuid);
	}
	if ((rc = gone_add(d, vdi->uuid)) < 0)
		return rc;
	return note(d->deleted, "vdi", vdi->uuid, vdi->name);
}

int ctl_reclaim_vm_disks(ctl_del *d, const vms_cat_vm *vm)
{
	vms_cat_vdi *v = NULL;
	size_t n = 0;
	int rc;
	if ((rc = vms_cat_vdi_list(&v, &n, d->r->ctl->cat, vm->uuid, NULL, 0)) < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++)
		if (!is_gone(d, v[i].uuid))
			rc = ctl_reclaim_vdi(d, &v[i]);
	vms_cat_vdi_list_free(v, n);
	return rc;
}

int ctl_defer_vm(ctl_del *d, const vms_cat_vm *vm)
{
	int rc;
	vms_control *ctl = d->r->ctl;
	if (!d->dry_run) {
		if ((rc = ctl_begin(ctl)) < 0)
			return rc;
		if ((!vm->is_deleted && (rc = vms_cat_vm_set_deleted(ctl->cat, vm->uuid)) < 0) ||
		    (rc = vms_cat_vm_set_state(ctl->cat, vm->uuid, VMS_STATE_READY)) < 0 ||
		    (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			return rc;
		}
	}
	return note(d->deferred, "vm", vm->uuid, vm->name);
}

int ctl_reclaim_vm(ctl_del *d, const vms_cat_vm *vm)
{
	int rc;
	vms_control *ctl = d->r->ctl;
	if (!d->dry_run) {
		if ((rc = ctl_begin(ctl)) < 0)
			return rc;
		if ((rc = ctl_gc_vdis(ctl, vm->uuid)) < 0 || (rc = vms_cat_vm_delete(ctl->cat, vm->uuid)) < 0 ||
		    (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			return rc;
		}
		ctl_index_drop(ctl, vm->uuid);
	}
	if ((rc = gone_add(d, vm->uuid)) < 0 || (rc = note(d->deleted, "vm", vm->uuid, vm->name)) < 0)
		return rc;
	return ctl_cascade_from(d, vm->parent_snapshot);
}

int ctl_cascade_from(ctl_del *d, const char *parent_snapshot)
{
	int rc;
	vms_cat_snapshot p;
	vms_cat_vm *kids = NULL;
	size_t nkids = 0;
	if (!parent_snapshot || !parent_snapshot[0] || is_gone(d, parent_snapshot))
		return 0;
	if (vms_cat_snapshot_get(&p, d->r->ctl->cat, parent_snapshot) < 0) {
		vms_error_clear();
		return 0;
	}
	if (!p.is_deleted)
		return 0;
	if ((rc = ctl_live_children(&kids, &nkids, d, p.uuid)) < 0)
		return rc;
	free(kids);
	if (nkids)
		return 0;
	return ctl_reclaim_snapshot(d, &p);
}

int ctl_vm_delete_exec(ctl_del *d, const vms_cat_vm *vm)
{
	int rc;
	vms_cat_snapshot *snaps = NULL, *rest = NULL;
	size_t n = 0, nrest = 0;
	if ((rc = remaining_snapshots(&snaps, &n, d, vm->uuid)) < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_cat_vm *kids = NULL;
		size_t nk = 0;
		if (is_gone(d, snaps[i].uuid))
			continue;
		if ((rc = ctl_live_children(&kids, &nk, d, snaps[i].uuid)) < 0)
			break;
		free(kids);
		rc = nk ? ctl_defer_snapshot(d, &snaps[i]) : ctl_reclaim_snapshot(d, &snaps[i]);
	}
	free(snaps);
	if (rc < 0)
		return rc;
	if ((rc = ctl_reclaim_vm_disks(d, vm)) < 0)
		return rc;
	if ((rc = remaining_snapshots(&rest, &nrest, d, vm->uuid)) < 0)
		return rc;
	free(rest);
	return nrest ? ctl_defer_vm(d, vm) : ctl_reclaim_vm(d, vm);
}
