/*
 * The daemon-side entry points: opening an export ("vm/disk" or
 * "vm/disk@<snapshot selector>") for I/O, and listing every export, plus
 * the export.list op that returns the same list.  Snapshots always open
 * read-only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

#define EXPORT_NAME_MAX 512

int vms_control_disk_open(vms_disk **out_disk, const vms_backend **out_be, char **out_vdi_uuid,
                          vms_control *ctl, const char *export_name, unsigned flags)
{
	int rc;
	ctl_req r = {.ctl = ctl};
	char left[EXPORT_NAME_MAX + 1];
	vms_cat_vdi vdi = {0};
	vms_cat_snapdisk *sd = NULL;
	size_t nsd = 0;
	const vms_backend *be;
	vms_sr_handle *h;
	const char *ref = NULL, *vdi_uuid = NULL;

	vms_error_clear();
	if (!export_name || !*export_name || strlen(export_name) > EXPORT_NAME_MAX)
		return vms_error_set(VMS_EINVAL, "export name must be 1..%d characters", EXPORT_NAME_MAX);
	ctl_sync(ctl);
	const char *at = strchr(export_name, '@');
	size_t ln = at ? (size_t)(at - export_name) : strlen(export_name);
	memcpy(left, export_name, ln);
	left[ln] = 0;
	const char *slash = strchr(left, '/');
	if (!slash) {
		rc = vms_error_set(VMS_EINVAL, "export '%.100s': expected vm/disk or vm/disk@snapshot",
		                   export_name);
		goto done;
	}
	if (!at) {
		if ((rc = ctl_get_vdi(&vdi, &r, left, 0)) < 0)
			goto done;
		if (vdi.state != VMS_STATE_READY || !vdi.ref) {
			rc = vms_error_set(VMS_EBUSY, "disk '%s' is %s", vdi.name, vms_obj_state_name(vdi.state));
			goto done;
		}
		ref = vdi.ref;
		vdi_uuid = vdi.uuid;
		if ((rc = ctl_sr_backend(&be, &h, ctl, vdi.sr_uuid)) < 0)
			goto done;
	} else {
		char vmkey[VMS_NAME_MAX + VMS_UUID_BUF], dk[VMS_NAME_MAX + VMS_UUID_BUF];
		size_t vn = (size_t)(slash - left);
		vms_cat_vm vm;
		vms_cat_snapshot s;
		if (vn == 0 || vn >= sizeof(vmkey)) {
			rc = vms_error_set(VMS_EINVAL, "export '%.100s': bad VM part", export_name);
			goto done;
		}
		memcpy(vmkey, left, vn);
		vmkey[vn] = 0;
		if ((rc = ctl_key_check(dk, slash + 1, "disk")) < 0 || (rc = ctl_get_vm(&vm, &r, vmkey, 0)) < 0 ||
		    (rc = ctl_get_snapshot(&s, NULL, NULL, &r, at + 1, &vm, 0)) < 0 ||
		    (rc = vms_cat_snapshot_disks(&sd, &nsd, ctl->cat, s.uuid)) < 0)
			goto done;
		for (size_t i = 0; i < nsd && !ref; i++) {
			if (strcmp(sd[i].disk_name, dk) == 0 || strcmp(sd[i].vdi_uuid, dk) == 0) {
				ref = sd[i].ref;
				vdi_uuid = sd[i].vdi_uuid;
			}
		}
		if (!ref) {
			rc = vms_error_set(VMS_ENOTFOUND, "snapshot of VM '%s' has no disk '%s'", vm.name, dk);
			goto done;
		}
		flags |= VMS_DISK_READONLY;
		if ((rc = ctl_sr_backend(&be, &h, ctl, vm.sr_uuid)) < 0)
			goto done;
	}
	if ((rc = be->disk_open(out_disk, h, ref, flags)) < 0)
		goto done;
	if (out_vdi_uuid && !(*out_vdi_uuid = strdup(vdi_uuid))) {
		be->disk_close(*out_disk);
		*out_disk = NULL;
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	*out_be = be;
done:
	vms_json_free(r.extra);
	vms_cat_vdi_clear(&vdi);
	vms_cat_snapdisk_list_free(sd, nsd);
	return rc;
}

static int add_export(vms_json *arr, const char *name, const char *desc, uint64_t size, int ro)
{
	vms_json *o = vms_json_new_object();
	if (!o)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	vms_json_object_set_string(o, "name", name);
	vms_json_object_set_string(o, "description", desc);
	vms_json_object_set_int(o, "size", (int64_t)size);
	vms_json_object_set_bool(o, "readonly", ro);
	return vms_json_array_append(arr, o);
}

static int exports_json(vms_json **out, vms_control *ctl)
{
	int rc;
	vms_cat_vm *vms = NULL;
	size_t nvm = 0;
	vms_json *arr = vms_json_new_array();
	if (!arr)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	vms_error_clear();
	if ((rc = vms_cat_vm_list(&vms, &nvm, ctl->cat, NULL, 0)) < 0)
		goto done;
	for (size_t v = 0; v < nvm && rc == 0; v++) {
		vms_cat_vdi *disks = NULL;
		size_t nd = 0;
		vms_snapindex *idx;
		char name[EXPORT_NAME_MAX + 1], desc[EXPORT_NAME_MAX + 64];
		if (vms_cat_vm_get(&vms[v], ctl->cat, vms[v].uuid, 0) < 0 || vms[v].state != VMS_STATE_READY)
			continue;
		if ((rc = vms_cat_vdi_list(&disks, &nd, ctl->cat, vms[v].uuid, NULL, 0)) < 0)
			break;
		for (size_t i = 0; i < nd && rc == 0; i++) {
			if (disks[i].state != VMS_STATE_READY)
				continue;
			snprintf(name, sizeof(name), "%s/%s", vms[v].name, disks[i].name);
			snprintf(desc, sizeof(desc), "disk %s of VM %s", disks[i].name, vms[v].name);
			rc = add_export(arr, name, desc, disks[i].size, 0);
		}
		vms_cat_vdi_list_free(disks, nd);
		if (rc < 0 || (rc = ctl_index_get(&idx, ctl, vms[v].uuid, 0)) < 0)
			break;
		size_t n = vms_snapindex_count(idx);
		uint64_t *ids = malloc((n ? n : 1) * sizeof(*ids));
		if (!ids) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			break;
		}
		for (size_t i = 0; i < n; i++) {
			vms_snapindex_entry e;
			vms_snapindex_at(&e, idx, i);
			ids[i] = e.id;
		}
		for (size_t i = 0; i < n && rc == 0; i++) {
			vms_cat_snapshot s;
			vms_cat_snapdisk *sd = NULL;
			size_t nsd = 0;
			char full[VMS_FULLNAME_MAX + 1];
			if ((rc = vms_cat_snapshot_get_rowid(&s, ctl->cat, (int64_t)ids[i])) < 0 ||
			    (rc = vms_cat_snapshot_disks(&sd, &nsd, ctl->cat, s.uuid)) < 0)
				break;
			ctl_fullname(full, &s);
			for (size_t k = 0; k < nsd && rc == 0; k++) {
				snprintf(name, sizeof(name), "%s/%s@%s", vms[v].name, sd[k].disk_name, full);
				snprintf(desc, sizeof(desc), "disk %s of VM %s at snapshot %s", sd[k].disk_name,
				         vms[v].name, full);
				rc = add_export(arr, name, desc, sd[k].size, 1);
			}
			vms_cat_snapdisk_list_free(sd, nsd);
		}
		free(ids);
	}
	if (rc == 0 && vms_error_last_code() == VMS_ENOMEM)
		rc = VMS_ENOMEM;
done:
	free(vms);
	if (rc < 0) {
		vms_json_free(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

int vms_control_list_exports(char **out_json, vms_control *ctl)
{
	int rc;
	vms_json *arr;
	ctl_sync(ctl);
	if ((rc = exports_json(&arr, ctl)) < 0)
		return rc;
	rc = vms_json_serialize(out_json, arr, 0);
	vms_json_free(arr);
	return rc;
}

int ctl_op_export_list(vms_json **out, ctl_req *r)
{
	int rc;
	vms_json *arr, *o = vms_json_new_object();
	if (!o)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if ((rc = exports_json(&arr, r->ctl)) < 0 || (rc = vms_json_object_set(o, "exports", arr)) < 0) {
		vms_json_free(o);
		return rc;
	}
	*out = o;
	return 0;
}

int vms_control_vm_disk_uuids(char ***out, size_t *n, vms_control *ctl, const char *vm_uuid)
{
	vms_cat_vdi *v = NULL;
	size_t nv = 0, i = 0;
	char **keys = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	if (!vm_uuid)
		return vms_error_set(VMS_EINVAL, "no VM given");
	if ((rc = vms_cat_vdi_list(&v, &nv, ctl->cat, vm_uuid, NULL, 0)) < 0)
		return rc;
	if (nv && !(keys = calloc(nv, sizeof *keys))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (i = 0; i < nv; i++) {
		if (!(keys[i] = strdup(v[i].uuid))) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
	}
	*out = keys;
	*n = nv;
	keys = NULL;
	rc = 0;
done:
	if (keys)
		vms_cat_strv_free(keys, i);
	vms_cat_vdi_list_free(v, nv);
	return rc;
}

int vms_control_sr_open_all(vms_control *ctl,
                            void (*on_error)(void *ctx, const char *sr_name, const char *message),
                            void *ctx)
{
	vms_cat_sr *srs = NULL;
	size_t n = 0;
	int rc, opened = 0;

	if ((rc = vms_cat_sr_list(&srs, &n, ctl->cat)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		const vms_backend *be;
		vms_sr_handle *h;
		if (srs[i].state != VMS_STATE_READY)
			continue;
		if (ctl_sr_backend(&be, &h, ctl, srs[i].uuid) < 0) {
			if (on_error)
				on_error(ctx, srs[i].name, vms_error_last());
			continue;
		}
		opened++;
	}
	vms_cat_sr_list_free(srs, n);
	vms_error_clear();
	return opened;
}
