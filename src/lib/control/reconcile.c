/*
 * Reconciliation of catalog and SRs after a crash (docs/design/catalog.md).
 *
 * Every operation writes its intent to the catalog before the backend acts
 * ('creating' / 'deleting' rows) and settles the rows after.  A crash leaves
 * unsettled rows; here they are settled, in dependency order:
 *
 *   SR 'creating'        the SR opens -> ready; else row removed + orphan note
 *   SR 'deleting'        destroy again (NOTFOUND = done), remove the row
 *   snapshot 'creating'  row removed (refs were never committed) + orphan note
 *   snapshot 'deleting'  backend delete again, remove the row, cascade
 *   VDI 'creating'       (of a ready VM) row removed + orphan note
 *   VDI 'deleting'       backend delete again, then row removed or detached
 *   VM 'creating'        roll back: disks with refs deleted, rows removed
 *   VM 'deleting'        the VM delete is finished (deferring what clones need)
 *   VM pending_rollback  the rollback is done again (idempotent), then cleared
 *
 * Rollback of creates and completion of deletes are both safe because a
 * backend object is only ever referenced by the catalog after it exists
 * (refs are committed with 'ready') and deletes are idempotent.  An object
 * that a backend made but whose ref never reached the catalog cannot be
 * found by key in every backend: it is recorded as an orphan note, which
 * `check` reports.
 *
 * Reconciliation runs only when this process is the only control of the
 * catalog (the caller holds the exclusive lock), so another process's
 * in-flight rows are never mistaken for a crash's.  A backend that fails
 * here (an SR whose pool is unavailable) leaves its rows unsettled for the
 * next open and for `check`; only catalog errors fail the open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

static int settle_srs(vms_control *ctl, char **u, int *st, size_t n)
{
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_cat_sr sr;
		const vms_backend *be;
		vms_sr_handle *h;
		if (vms_cat_sr_get(&sr, ctl->cat, u[i]) < 0)
			continue;
		if (st[i] == VMS_STATE_CREATING) {
			int ok = ctl_sr_backend(&be, &h, ctl, sr.uuid) == 0;
			if ((rc = ctl_begin(ctl)) == 0) {
				rc = ok ? vms_cat_sr_set_state(ctl->cat, sr.uuid, VMS_STATE_READY)
				        : vms_cat_sr_delete(ctl->cat, sr.uuid);
				if (rc == 0 && !ok)
					rc = vms_cat_orphan_note(ctl->cat, NULL, "sr", sr.uuid,
					                         "SR creation was interrupted; its location may "
					                         "hold a partial SR to remove by hand");
				if (rc < 0 || (rc = ctl_commit(ctl)) < 0)
					vms_catalog_rollback(ctl->cat);
			}
		} else if (st[i] == VMS_STATE_DELETING && (be = vms_backend_find(sr.type))) {
			ctl_sr_forget(ctl, sr.uuid);
			int drc = be->sr_destroy(sr.location);
			if (drc == 0 || drc == VMS_ENOTFOUND) {
				if ((rc = ctl_begin(ctl)) == 0) {
					if ((rc = vms_cat_sr_delete(ctl->cat, sr.uuid)) < 0 || (rc = ctl_commit(ctl)) < 0)
						vms_catalog_rollback(ctl->cat);
				}
			}
		}
		vms_cat_sr_clear(&sr);
		if (rc != VMS_ENOMEM && rc != VMS_EIO && rc != VMS_ECORRUPT)
			rc = 0;
	}
	vms_error_clear();
	return rc;
}

static int settle_snapshots(ctl_del *d, char **u, int *st, size_t n)
{
	vms_control *ctl = d->r->ctl;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_cat_snapshot s;
		vms_cat_vm vm;
		if (vms_cat_snapshot_get(&s, ctl->cat, u[i]) < 0 || vms_cat_vm_get(&vm, ctl->cat, s.vm_uuid, 1) < 0)
			continue;
		if (st[i] == VMS_STATE_CREATING) {
			vms_cat_snapdisk *sd = NULL;
			size_t nsd = 0;
			if ((rc = vms_cat_snapshot_disks(&sd, &nsd, ctl->cat, s.uuid)) < 0)
				break;
			vms_cat_snapdisk_list_free(sd, nsd);
			if ((rc = ctl_begin(ctl)) < 0)
				break;
			rc = vms_cat_snapshot_delete(ctl->cat, s.uuid);
			if (rc == 0 && nsd)
				rc = vms_cat_orphan_note(ctl->cat, vm.sr_uuid, "snapshot", s.uuid,
				                         "snapshot creation was interrupted; the backend may "
				                         "hold disk snapshots no catalog row refers to");
			if (rc < 0 || (rc = ctl_commit(ctl)) < 0)
				vms_catalog_rollback(ctl->cat);
		} else if (st[i] == VMS_STATE_DELETING) {
			if (ctl_reclaim_snapshot(d, &s) < 0)
				vms_error_clear();   /* backend unavailable: stays 'deleting' */
		}
		ctl_index_drop(ctl, s.vm_uuid);
	}
	return rc;
}

static int settle_vdis(ctl_del *d, char **u, int *st, size_t n)
{
	vms_control *ctl = d->r->ctl;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_cat_vdi vdi;
		vms_cat_vm vm;
		if (vms_cat_vdi_get(&vdi, ctl->cat, u[i]) < 0)
			continue;
		if (st[i] == VMS_STATE_CREATING) {
			/* disks of a VM being created are settled with their VM */
			if (vdi.vm_uuid[0] && vms_cat_vm_get(&vm, ctl->cat, vdi.vm_uuid, 1) == 0 &&
			    vm.state == VMS_STATE_CREATING) {
				vms_cat_vdi_clear(&vdi);
				continue;
			}
			if (vdi.ref && ctl_backend_disk_delete(ctl, &vdi) < 0) {
				vms_error_clear();
				vms_cat_vdi_clear(&vdi);
				continue;
			}
			if ((rc = ctl_begin(ctl)) == 0) {
				rc = vms_cat_vdi_delete(ctl->cat, vdi.uuid);
				if (rc == 0 && !vdi.ref)
					rc = vms_cat_orphan_note(ctl->cat, vdi.sr_uuid, "vdi", vdi.uuid,
					                         "disk creation was interrupted; the backend may "
					                         "hold a disk no catalog row refers to");
				if (rc < 0 || (rc = ctl_commit(ctl)) < 0)
					vms_catalog_rollback(ctl->cat);
			}
		} else if (st[i] == VMS_STATE_DELETING) {
			if (ctl_reclaim_vdi(d, &vdi) < 0)
				vms_error_clear();
		}
		vms_cat_vdi_clear(&vdi);
	}
	return rc;
}

static int undo_vm(vms_control *ctl, const vms_cat_vm *vm)
{
	int rc;
	vms_cat_vdi *v = NULL;
	size_t n = 0;
	if ((rc = vms_cat_vdi_list(&v, &n, ctl->cat, vm->uuid, NULL, 1)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (v[i].ref && ctl_backend_disk_delete(ctl, &v[i]) < 0) {
			/* cannot reach the SR now: try again on the next open */
			vms_error_clear();
			vms_cat_vdi_list_free(v, n);
			return 0;
		}
	}
	if ((rc = ctl_begin(ctl)) < 0)
		goto done;
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = vms_cat_vdi_delete(ctl->cat, v[i].uuid);
		if (rc == 0 && !v[i].ref)
			rc = vms_cat_orphan_note(ctl->cat, vm->sr_uuid, "vdi", v[i].uuid,
			                         "VM creation or clone was interrupted; the backend may hold "
			                         "a disk no catalog row refers to");
	}
	if (rc == 0)
		rc = vms_cat_vm_delete(ctl->cat, vm->uuid);
	if (rc < 0 || (rc = ctl_commit(ctl)) < 0)
		vms_catalog_rollback(ctl->cat);
done:
	vms_cat_vdi_list_free(v, n);
	return rc;
}

static int settle_vms(ctl_del *d, char **u, int *st, size_t n)
{
	vms_control *ctl = d->r->ctl;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_cat_vm vm;
		if (vms_cat_vm_get(&vm, ctl->cat, u[i], 1) < 0)
			continue;
		if (st[i] == VMS_STATE_CREATING)
			rc = undo_vm(ctl, &vm);
		else if (st[i] == VMS_STATE_DELETING && ctl_vm_delete_exec(d, &vm) < 0)
			vms_error_clear();
	}
	return rc;
}

/* Rollbacks whose intent was recorded but not cleared: redo them (the
 * backend rollback is idempotent), which also brings the catalog's disk
 * sizes and refs in line. */
static int settle_rollbacks(ctl_req *r)
{
	vms_control *ctl = r->ctl;
	vms_cat_vm *v = NULL;
	size_t n = 0;
	int rc;
	if ((rc = vms_cat_vm_list(&v, &n, ctl->cat, NULL, 1)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		vms_cat_snapshot s;
		vms_json *out = NULL;
		if (!v[i].pending_rollback[0])
			continue;
		if (vms_cat_snapshot_get(&s, ctl->cat, v[i].pending_rollback) == 0 &&
		    ctl_rollback(&out, r, &v[i], &s, 1, 0) == 0) {
			vms_json_free(out);
			continue;
		}
		/* the target cannot be reached now: try again on the next open */
		vms_error_clear();
	}
	free(v);
	return 0;
}

int ctl_reconcile(vms_control *ctl)
{
	static const char *const kinds[] = {"sr", "snapshot", "vdi", "vm"};
	int rc = 0;
	ctl_req r = {.ctl = ctl};
	ctl_del d;
	if ((rc = ctl_del_init(&d, &r, 0)) < 0)
		return rc;
	for (size_t k = 0; k < 4 && rc == 0; k++) {
		char **u = NULL;
		int *st = NULL;
		size_t n = 0;
		if ((rc = vms_cat_unsettled(&u, &st, &n, ctl->cat, kinds[k])) < 0)
			break;
		switch (k) {
		case 0: rc = settle_srs(ctl, u, st, n); break;
		case 1: rc = settle_snapshots(&d, u, st, n); break;
		case 2: rc = settle_vdis(&d, u, st, n); break;
		default: rc = settle_vms(&d, u, st, n); break;
		}
		vms_cat_strv_free(u, n);
		free(st);
	}
	if (rc == 0)
		rc = settle_rollbacks(&r);
	ctl_del_clear(&d);
	vms_json_free(r.extra);
	vms_catalog_rollback(ctl->cat);
	return rc;
}
