/*
 * JSON records of the catalog objects (docs/control.md, "Records").
 * Builders return VMS_ENOMEM when any part could not be allocated; the
 * vms_json setters take ownership of what they are given, so a chain of
 * sets needs only one check at the end.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

#define OOM() vms_error_set(VMS_ENOMEM, "out of memory")

int ctl_set_time(vms_json *o, const char *prefix, int64_t t)
{
	char key[64], iso[VMS_ISO_BUF];
	int rc;
	snprintf(key, sizeof(key), "%s_time", prefix);
	if ((rc = vms_json_object_set_int(o, key, t)) < 0)
		return rc;
	snprintf(key, sizeof(key), "%s_time_iso", prefix);
	if (vms_time_iso(iso, sizeof(iso), t) < 0)
		return vms_json_object_set(o, key, vms_json_new_null());
	return vms_json_object_set_string(o, key, iso);
}

vms_json *ctl_ref_obj(const char *kind, const char *uuid, const char *name)
{
	vms_json *o = vms_json_new_object();
	if (!o)
		return NULL;
	if (vms_json_object_set_string(o, "kind", kind) < 0 || vms_json_object_set_string(o, "uuid", uuid) < 0 ||
	    vms_json_object_set_string(o, "name", name) < 0) {
		vms_json_free(o);
		return NULL;
	}
	return o;
}

int ctl_fullname(char out[VMS_FULLNAME_MAX + 1], const vms_cat_snapshot *s)
{
	if (vms_snapshot_fullname(out, VMS_FULLNAME_MAX + 1, s->name, s->time) < 0) {
		/* a name the catalog holds but naming refuses: show it raw */
		snprintf(out, VMS_FULLNAME_MAX + 1, "%s_%lld", s->name, (long long)s->time);
	}
	return 0;
}

void ctl_vm_name(char out[VMS_NAME_MAX + 1], vms_control *ctl, const char *vm_uuid)
{
	vms_cat_vm vm;
	out[0] = 0;
	if (vm_uuid && *vm_uuid && vms_cat_vm_get(&vm, ctl->cat, vm_uuid, 1) == 0)
		snprintf(out, VMS_NAME_MAX + 1, "%s", vm.name);
}

static vms_json *null_or_int(uint64_t v)
{
	return v == UINT64_MAX ? vms_json_new_null() : vms_json_new_int((int64_t)v);
}

int ctl_rec_sr(vms_json **out, vms_control *ctl, const vms_cat_sr *sr, int with_space)
{
	vms_json *o = vms_json_new_object(), *caps = NULL;
	int rc = o ? 0 : OOM();
	vms_cat_vm *vms = NULL;
	size_t nvm = 0;
	const vms_backend *be = vms_backend_find(sr->type);
	if (rc < 0)
		return rc;
	vms_error_clear();
	if ((rc = vms_cat_vm_list(&vms, &nvm, ctl->cat, sr->uuid, 0)) < 0)
		goto done;
	vms_json_object_set_string(o, "uuid", sr->uuid);
	vms_json_object_set_string(o, "name", sr->name);
	vms_json_object_set_string(o, "type", sr->type);
	vms_json_object_set_string(o, "location", sr->location);
	vms_json_object_set_int(o, "size", (int64_t)sr->size);
	vms_json_object_set_string(o, "options", sr->options);
	vms_json_object_set_string(o, "state", vms_obj_state_name(sr->state));
	ctl_set_time(o, "created", sr->created);
	if (be && ctl_caps_json(&caps, be->caps) == 0)
		vms_json_object_set(o, "caps", caps);
	else
		vms_json_object_set(o, "caps", vms_json_new_array());
	vms_json_object_set_int(o, "vm_count", (int64_t)nvm);
	if (with_space) {
		const vms_backend *b;
		vms_sr_handle *h;
		vms_sr_space sp;
		vms_json *so = NULL, *props = NULL;
		char *text = NULL;
		int opened = sr->state == VMS_STATE_READY && ctl_sr_backend(&b, &h, ctl, sr->uuid) == 0;
		if (opened && b->sr_space && b->sr_space(&sp, h) == 0 && (so = vms_json_new_object())) {
			vms_json_object_set(so, "total", null_or_int(sp.total_bytes));
			vms_json_object_set(so, "free", null_or_int(sp.free_bytes));
			vms_json_object_set(so, "used", null_or_int(sp.used_bytes));
			vms_json_object_set(o, "space", so);
		} else {
			/* an SR that cannot be opened still lists; its space is unknown */
			vms_json_object_set(o, "space", vms_json_new_null());
		}
		if (opened && b->size >= offsetof(vms_backend, sr_properties) + sizeof(b->sr_properties) &&
		    b->sr_properties && b->sr_properties(&text, h) == 0 &&
		    vms_json_parse(&props, text, strlen(text)) == 0)
			vms_json_object_set(o, "properties", props);
		else
			vms_json_object_set(o, "properties", vms_json_new_null());
		free(text);
		vms_error_clear();
	}
	if (vms_error_last_code() == VMS_ENOMEM)
		rc = VMS_ENOMEM;
done:
	free(vms);
	if (rc < 0) {
		vms_json_free(o);
		return rc;
	}
	*out = o;
	return 0;
}

int ctl_rec_vm(vms_json **out, vms_control *ctl, const vms_cat_vm *vm)
{
	int rc;
	vms_cat_sr sr = {0};
	vms_cat_vdi *disks = NULL;
	size_t nd = 0;
	int64_t nsnap = 0, nclones = 0;
	vms_json *o = vms_json_new_object(), *arr = vms_json_new_array();
	if (!o || !arr) {
		rc = OOM();
		goto done;
	}
	vms_error_clear();
	if ((rc = vms_cat_sr_get(&sr, ctl->cat, vm->sr_uuid)) < 0 ||
	    (rc = vms_cat_vdi_list(&disks, &nd, ctl->cat, vm->uuid, NULL, 0)) < 0 ||
	    (rc = vms_cat_snapshot_count(&nsnap, ctl->cat, vm->uuid, 0)) < 0 ||
	    (rc = vms_cat_vm_clone_count(&nclones, ctl->cat, vm->uuid, 0)) < 0)
		goto done;
	vms_json_object_set_string(o, "uuid", vm->uuid);
	vms_json_object_set_string(o, "name", vm->name);
	vms_json_object_set_string(o, "sr", sr.name);
	vms_json_object_set_string(o, "sr_uuid", vm->sr_uuid);
	vms_json_object_set_bool(o, "is_deleted", vm->is_deleted);
	vms_json_object_set_string(o, "state", vms_obj_state_name(vm->state));
	ctl_set_time(o, "created", vm->created);
	if (vm->parent_snapshot[0]) {
		vms_cat_snapshot ps;
		vms_json *p = vms_json_new_object();
		if (p && vms_cat_snapshot_get(&ps, ctl->cat, vm->parent_snapshot) == 0) {
			char full[VMS_FULLNAME_MAX + 1], pvm[VMS_NAME_MAX + 1];
			ctl_fullname(full, &ps);
			ctl_vm_name(pvm, ctl, ps.vm_uuid);
			vms_json_object_set_string(p, "snapshot_uuid", ps.uuid);
			vms_json_object_set_string(p, "snapshot", full);
			vms_json_object_set_string(p, "vm_uuid", ps.vm_uuid);
			vms_json_object_set_string(p, "vm", pvm);
		}
		vms_json_object_set(o, "parent", p);
	} else {
		vms_json_object_set(o, "parent", vms_json_new_null());
	}
	for (size_t i = 0; i < nd; i++) {
		vms_json *d = vms_json_new_object();
		if (d) {
			vms_json_object_set_string(d, "uuid", disks[i].uuid);
			vms_json_object_set_string(d, "name", disks[i].name);
			vms_json_object_set_int(d, "device", disks[i].device);
			vms_json_object_set_int(d, "size", (int64_t)disks[i].size);
		}
		vms_json_array_append(arr, d);
	}
	vms_json_object_set(o, "disks", arr);
	arr = NULL;
	vms_json_object_set_int(o, "snapshot_count", nsnap);
	vms_json_object_set_int(o, "clone_count", nclones);
	if (vms_error_last_code() == VMS_ENOMEM)
		rc = VMS_ENOMEM;
done:
	vms_cat_sr_clear(&sr);
	vms_cat_vdi_list_free(disks, nd);
	vms_json_free(arr);
	if (rc < 0) {
		vms_json_free(o);
		return rc;
	}
	*out = o;
	return 0;
}

int ctl_rec_vdi(vms_json **out, vms_control *ctl, const vms_cat_vdi *vdi)
{
	vms_cat_sr sr = {0};
	char vmname[VMS_NAME_MAX + 1];
	vms_json *o = vms_json_new_object();
	if (!o)
		return OOM();
	vms_error_clear();
	ctl_vm_name(vmname, ctl, vdi->vm_uuid);
	if (vms_cat_sr_get(&sr, ctl->cat, vdi->sr_uuid) < 0)
		sr.name[0] = 0;
	vms_json_object_set_string(o, "uuid", vdi->uuid);
	vms_json_object_set_string(o, "name", vdi->name);
	vms_json_object_set_string(o, "vm", vmname[0] ? vmname : NULL);
	vms_json_object_set_string(o, "vm_uuid", vdi->vm_uuid[0] ? vdi->vm_uuid : NULL);
	if (vdi->vm_uuid[0])
		vms_json_object_set_int(o, "device", vdi->device);
	else
		vms_json_object_set(o, "device", vms_json_new_null());
	vms_json_object_set_string(o, "sr", sr.name);
	vms_json_object_set_string(o, "sr_uuid", vdi->sr_uuid);
	vms_json_object_set_int(o, "size", (int64_t)vdi->size);
	vms_json_object_set_string(o, "ref", vdi->ref);
	vms_json_object_set_bool(o, "is_deleted", vdi->is_deleted);
	vms_json_object_set_string(o, "state", vms_obj_state_name(vdi->state));
	ctl_set_time(o, "created", vdi->created);
	if (vmname[0] && !vdi->is_deleted) {
		char exp[2 * VMS_NAME_MAX + 2];
		snprintf(exp, sizeof(exp), "%s/%s", vmname, vdi->name);
		vms_json_object_set_string(o, "export", exp);
	} else {
		vms_json_object_set(o, "export", vms_json_new_null());
	}
	vms_cat_sr_clear(&sr);
	if (vms_error_last_code() == VMS_ENOMEM) {
		vms_json_free(o);
		return VMS_ENOMEM;
	}
	*out = o;
	return 0;
}

int ctl_rec_snapshot(vms_json **out, vms_control *ctl, const vms_cat_snapshot *s)
{
	int rc;
	char full[VMS_FULLNAME_MAX + 1], vmname[VMS_NAME_MAX + 1];
	vms_cat_snapdisk *sd = NULL;
	vms_cat_vm *kids = NULL;
	size_t nsd = 0, nkids = 0;
	vms_json *o = vms_json_new_object(), *disks = vms_json_new_array(), *clones = vms_json_new_array();
	if (!o || !disks || !clones) {
		rc = OOM();
		goto done;
	}
	vms_error_clear();
	if ((rc = vms_cat_snapshot_disks(&sd, &nsd, ctl->cat, s->uuid)) < 0 ||
	    (rc = vms_cat_vm_children(&kids, &nkids, ctl->cat, s->uuid)) < 0)
		goto done;
	ctl_fullname(full, s);
	ctl_vm_name(vmname, ctl, s->vm_uuid);
	vms_json_object_set_string(o, "uuid", s->uuid);
	vms_json_object_set_string(o, "name", full);
	vms_json_object_set_string(o, "user_name", s->name);
	vms_json_object_set_string(o, "vm", vmname);
	vms_json_object_set_string(o, "vm_uuid", s->vm_uuid);
	{
		char iso[VMS_ISO_BUF] = "";
		vms_json_object_set_int(o, "time", s->time);
		vms_time_iso(iso, sizeof(iso), s->time);
		vms_json_object_set_string(o, "time_iso", iso);
	}
	vms_json_object_set_int(o, "seq", (int64_t)s->seq);
	vms_json_object_set_bool(o, "is_deleted", s->is_deleted);
	vms_json_object_set_string(o, "state", vms_obj_state_name(s->state));
	vms_json_object_set_string(o, "hold", s->hold[0] ? s->hold : NULL);
	for (size_t i = 0; i < nsd; i++) {
		vms_json *d = vms_json_new_object();
		char exp[2 * VMS_NAME_MAX + VMS_FULLNAME_MAX + 4];
		snprintf(exp, sizeof(exp), "%s/%s@%s", vmname, sd[i].disk_name, full);
		if (d) {
			vms_json_object_set_string(d, "vdi_uuid", sd[i].vdi_uuid);
			vms_json_object_set_string(d, "name", sd[i].disk_name);
			vms_json_object_set_int(d, "device", sd[i].device);
			vms_json_object_set_int(d, "size", (int64_t)sd[i].size);
			vms_json_object_set_string(d, "ref", sd[i].ref);
			vms_json_object_set_string(d, "export", exp);
		}
		vms_json_array_append(disks, d);
	}
	for (size_t i = 0; i < nkids; i++) {
		vms_json *c = vms_json_new_object();
		if (c) {
			vms_json_object_set_string(c, "uuid", kids[i].uuid);
			vms_json_object_set_string(c, "name", kids[i].name);
			vms_json_object_set_bool(c, "is_deleted", kids[i].is_deleted);
		}
		vms_json_array_append(clones, c);
	}
	vms_json_object_set(o, "disks", disks);
	vms_json_object_set(o, "clones", clones);
	disks = clones = NULL;
	if (vms_error_last_code() == VMS_ENOMEM)
		rc = VMS_ENOMEM;
done:
	vms_cat_snapdisk_list_free(sd, nsd);
	free(kids);
	vms_json_free(disks);
	vms_json_free(clones);
	if (rc < 0) {
		vms_json_free(o);
		return rc;
	}
	*out = o;
	return 0;
}
