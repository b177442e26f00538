/*
 * Disk operations: vdi.create, vdi.list, vdi.show, vdi.delete, vdi.resize.
 * A disk deleted while snapshots cover it loses its backend volume now (the
 * snapshots keep the data) and keeps its row, detached and hidden, until
 * the last such snapshot is gone (ctl_gc_vdis).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

#define MAX_DEVICE 255

int ctl_op_vdi_create(vms_json **out, ctl_req *r)
{
	int rc;
	const char *vmkey, *name;
	uint64_t size = 0;
	int64_t device = -1;
	vms_cat_vm vm;
	vms_cat_vdi vdi = {0};
	ctl_map m;
	if ((rc = ctl_arg_str(&vmkey, r, "vm", 1)) < 0 || (rc = ctl_arg_str(&name, r, "name", 1)) < 0 ||
	    (rc = ctl_arg_size(&size, r, "size", 1)) < 0 || (rc = vms_json_get_int(&device, r->args, "device", 0)) < 0)
		return rc;
	if ((rc = vms_name_check(name, "disk")) < 0)
		return rc;
	if (size == 0)
		return vms_error_set(VMS_EINVAL, "disk size must be positive");
	if (vms_json_object_get(r->args, "device") && (device < 0 || device > MAX_DEVICE))
		return vms_error_set(VMS_EINVAL, "device position must be 0..%d", MAX_DEVICE);
	if ((rc = ctl_get_vm(&vm, r, vmkey, 0)) < 0 || (rc = ctl_map_vm(&m, r->ctl, &vm)) < 0)
		return rc;
	for (size_t i = 0; i < m.ndisks; i++) {
		if (strcmp(m.disks[i].name, name) == 0) {
			rc = vms_error_set(VMS_EEXISTS, "VM '%s' already has a disk '%s'", vm.name, name);
			goto done;
		}
	}
	if (device < 0) {
		/* first free position */
		for (device = 0; device <= MAX_DEVICE; device++) {
			size_t i = 0;
			while (i < m.ndisks && m.disks[i].device != (uint32_t)device)
				i++;
			if (i == m.ndisks)
				break;
		}
		if (device > MAX_DEVICE) {
			rc = vms_error_set(VMS_ENOSPC, "VM '%s' has no free device position", vm.name);
			goto done;
		}
	} else {
		for (size_t i = 0; i < m.ndisks; i++) {
			if (m.disks[i].device == (uint32_t)device) {
				rc = vms_error_set(VMS_EEXISTS, "device position %lld of VM '%s' is taken by disk '%s'",
				                   (long long)device, vm.name, m.disks[i].name);
				goto done;
			}
		}
	}
	if ((rc = ctl_disk_create(&vdi, r, &m, name, size, (uint32_t)device)) < 0)
		goto done;
	rc = ctl_rec_vdi(out, r->ctl, &vdi);
done:
	vms_cat_vdi_clear(&vdi);
	ctl_map_clear(&m);
	return rc;
}

int ctl_op_vdi_list(vms_json **out, ctl_req *r)
{
	int rc, all = 0;
	const char *vmkey = NULL, *srkey = NULL;
	vms_cat_vm vm;
	vms_cat_sr sr = {0};
	vms_cat_vdi *v = NULL;
	size_t n = 0;
	vms_json *arr = NULL, *o = NULL;
	if ((rc = ctl_arg_str(&vmkey, r, "vm", 0)) < 0 || (rc = ctl_arg_str(&srkey, r, "sr", 0)) < 0 ||
	    (rc = ctl_arg_bool(r, "all", &all)) < 0)
		return rc;
	if (vmkey && srkey)
		return vms_error_set(VMS_EINVAL, "pass vm or sr, not both");
	if (vmkey && (rc = ctl_get_vm(&vm, r, vmkey, all)) < 0)
		return rc;
	if (srkey && (rc = ctl_get_sr(&sr, r, srkey)) < 0)
		return rc;
	if ((rc = vms_cat_vdi_list(&v, &n, r->ctl->cat, vmkey ? vm.uuid : NULL, srkey ? sr.uuid : NULL,
	                           all)) < 0)
		goto done;
	if (!(arr = vms_json_new_array()) || !(o = vms_json_new_object())) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_json *rec;
		if (v[i].state == VMS_STATE_CREATING)
			continue;
		if ((rc = ctl_rec_vdi(&rec, r->ctl, &v[i])) == 0)
			rc = vms_json_array_append(arr, rec);
	}
	if (rc == 0) {
		rc = vms_json_object_set(o, "vdis", arr);
		arr = NULL;
	}
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	vms_cat_sr_clear(&sr);
	vms_cat_vdi_list_free(v, n);
	vms_json_free(arr);
	vms_json_free(o);
	return rc;
}

int ctl_op_vdi_show(vms_json **out, ctl_req *r)
{
	int rc;
	const char *key;
	vms_cat_vdi vdi;
	if ((rc = ctl_arg_str(&key, r, "vdi", 1)) < 0 || (rc = ctl_get_vdi(&vdi, r, key, 0)) < 0)
		return rc;
	rc = ctl_rec_vdi(out, r->ctl, &vdi);
	vms_cat_vdi_clear(&vdi);
	return rc;
}

int ctl_op_vdi_delete(vms_json **out, ctl_req *r)
{
	int rc, force = 0, dry = 0;
	const char *key;
	vms_cat_vdi vdi = {0};
	ctl_del d;
	memset(&d, 0, sizeof(d));
	if ((rc = ctl_arg_str(&key, r, "vdi", 1)) < 0 || (rc = ctl_arg_bool(r, "force", &force)) < 0 ||
	    (rc = ctl_arg_bool(r, "dry_run", &dry)) < 0 || (rc = ctl_get_vdi(&vdi, r, key, 0)) < 0)
		return rc;
	if (vdi.state != VMS_STATE_READY) {
		rc = vms_error_set(VMS_EBUSY, "disk '%s' is %s", vdi.name, vms_obj_state_name(vdi.state));
		goto done;
	}
	if ((rc = ctl_check_busy(r, &vdi, 1, force, "delete the disk")) < 0)
		goto done;
	if ((rc = ctl_del_init(&d, r, dry)) < 0 || (rc = ctl_reclaim_vdi(&d, &vdi)) < 0)
		goto done;
	rc = ctl_del_result(out, &d);
done:
	ctl_del_clear(&d);
	vms_cat_vdi_clear(&vdi);
	return rc;
}

int ctl_op_vdi_resize(vms_json **out, ctl_req *r)
{
	int rc, force = 0;
	const char *key;
	uint64_t size;
	vms_cat_vdi vdi = {0}, got = {0};
	vms_cat_sr sr = {0};
	const vms_backend *be;
	vms_sr_handle *h;
	vms_control *ctl = r->ctl;
	if ((rc = ctl_arg_str(&key, r, "vdi", 1)) < 0 || (rc = ctl_arg_size(&size, r, "size", 1)) < 0 ||
	    (rc = ctl_arg_bool(r, "force", &force)) < 0 || (rc = ctl_get_vdi(&vdi, r, key, 0)) < 0)
		return rc;
	if (size == 0) {
		rc = vms_error_set(VMS_EINVAL, "disk size must be positive");
		goto done;
	}
	if (vdi.state != VMS_STATE_READY || !vdi.ref) {
		rc = vms_error_set(VMS_EBUSY, "disk '%s' is %s", vdi.name, vms_obj_state_name(vdi.state));
		goto done;
	}
	if (size < vdi.size && !force) {
		rc = vms_error_set(VMS_EINVAL, "shrinking disk '%s' from %llu to %llu bytes would lose data; "
		                   "pass force to shrink", vdi.name, (unsigned long long)vdi.size,
		                   (unsigned long long)size);
		goto done;
	}
	if ((rc = vms_cat_sr_get(&sr, ctl->cat, vdi.sr_uuid)) < 0 ||
	    (rc = ctl_sr_backend(&be, &h, ctl, vdi.sr_uuid)) < 0)
		goto done;
	if ((rc = ctl_need_cap(be, VMS_CAP_RESIZE, sr.name)) < 0)
		goto done;
	if (!be->disk_resize) {
		rc = vms_error_set(VMS_ENOTSUP, "SR '%s' (type %s) cannot resize disks", sr.name, be->type);
		goto done;
	}
	if ((rc = ctl_check_busy(r, &vdi, 1, force, "resize the disk")) < 0)
		goto done;
	if (size != vdi.size) {
		if ((rc = be->disk_resize(h, vdi.ref, size)) < 0)
			goto done;
		if ((rc = ctl_begin(ctl)) < 0)
			goto done;
		if ((rc = vms_cat_vdi_set_size(ctl->cat, vdi.uuid, size)) < 0 || (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			goto done;
		}
		ctl_disk_changed(ctl, vdi.uuid);
	}
	if ((rc = vms_cat_vdi_get(&got, ctl->cat, vdi.uuid)) < 0)
		goto done;
	rc = ctl_rec_vdi(out, ctl, &got);
done:
	vms_cat_vdi_clear(&vdi);
	vms_cat_vdi_clear(&got);
	vms_cat_sr_clear(&sr);
	return rc;
}
