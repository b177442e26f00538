/*
 * SR operations: sr.create, sr.list, sr.show, sr.destroy.
 *
 * sr.create writes the row 'creating' before the backend creates the SR and
 * 'ready' after; sr.destroy writes 'deleting' before the backend destroys
 * it and removes the row after (docs/design/catalog.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

#define LOCATION_MAX 4000

int ctl_op_sr_create(vms_json **out, ctl_req *r)
{
	int rc;
	const char *name, *type, *location, *options = NULL;
	uint64_t size = 0;
	vms_control *ctl = r->ctl;
	vms_cat_sr sr;
	if ((rc = ctl_arg_str(&name, r, "name", 1)) < 0 || (rc = ctl_arg_str(&type, r, "type", 1)) < 0 ||
	    (rc = ctl_arg_str(&location, r, "location", 1)) < 0 ||
	    (rc = ctl_arg_str(&options, r, "options", 0)) < 0 || (rc = ctl_arg_size(&size, r, "size", 0)) < 0)
		return rc;
	if ((rc = vms_name_check(name, "SR")) < 0)
		return rc;
	const vms_backend *be = vms_backend_find(type);
	if (!be) {
		char known[256] = "";
		size_t len = 0;
		for (const vms_backend *const *b = vms_backend_all(); *b; b++)
			len += (size_t)snprintf(known + len, len < sizeof(known) ? sizeof(known) - len : 0,
			                        "%s%s", len ? ", " : "", (*b)->type);
		return vms_error_set(VMS_EINVAL, "unknown SR type '%.32s' (known: %s)", type, known);
	}
	if (!*location || strlen(location) > LOCATION_MAX)
		return vms_error_set(VMS_EINVAL, "SR location must be 1..%d characters", LOCATION_MAX);
	if (options && strlen(options) > 1024)
		return vms_error_set(VMS_EINVAL, "SR options are longer than 1024 characters");

	memset(&sr, 0, sizeof(sr));
	if ((rc = vms_uuid_generate(sr.uuid)) < 0)
		return rc;
	snprintf(sr.name, sizeof(sr.name), "%s", name);
	snprintf(sr.type, sizeof(sr.type), "%s", be->type);
	sr.location = (char *)location;
	sr.options = options && *options ? (char *)options : NULL;
	sr.size = size;
	sr.state = VMS_STATE_CREATING;
	sr.created = ctl_now(ctl);
	if ((rc = ctl_begin(ctl)) < 0)
		return rc;
	if ((rc = vms_cat_sr_insert(ctl->cat, &sr)) < 0 || (rc = ctl_commit(ctl)) < 0)
		return rc;
	if ((rc = be->sr_create(location, size, sr.options)) < 0) {
		int keep = rc;
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vms_error_last());
		if (ctl_begin(ctl) == 0 && vms_cat_sr_delete(ctl->cat, sr.uuid) == 0)
			ctl_commit(ctl);
		return vms_error_set(keep, "%s", msg);
	}
	if ((rc = ctl_begin(ctl)) < 0)
		return rc;
	if ((rc = vms_cat_sr_set_state(ctl->cat, sr.uuid, VMS_STATE_READY)) < 0 || (rc = ctl_commit(ctl)) < 0)
		return rc;
	vms_cat_sr got;
	if ((rc = vms_cat_sr_get(&got, ctl->cat, sr.uuid)) < 0)
		return rc;
	rc = ctl_rec_sr(out, ctl, &got, 1);
	vms_cat_sr_clear(&got);
	return rc;
}

int ctl_op_sr_list(vms_json **out, ctl_req *r)
{
	int rc;
	vms_cat_sr *v = NULL;
	size_t n = 0;
	vms_json *arr = vms_json_new_array(), *o = vms_json_new_object();
	if (!arr || !o) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = vms_cat_sr_list(&v, &n, r->ctl->cat)) < 0)
		goto done;
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_json *rec;
		if ((rc = ctl_rec_sr(&rec, r->ctl, &v[i], 1)) == 0)
			rc = vms_json_array_append(arr, rec);
	}
	if (rc == 0) {
		rc = vms_json_object_set(o, "srs", arr);   /* takes arr, also on failure */
		arr = NULL;
	}
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	vms_cat_sr_list_free(v, n);
	vms_json_free(arr);
	vms_json_free(o);
	return rc;
}

int ctl_op_sr_show(vms_json **out, ctl_req *r)
{
	int rc;
	const char *key;
	vms_cat_sr sr;
	if ((rc = ctl_arg_str(&key, r, "sr", 1)) < 0 || (rc = ctl_get_sr(&sr, r, key)) < 0)
		return rc;
	rc = ctl_rec_sr(out, r->ctl, &sr, 1);
	vms_cat_sr_clear(&sr);
	return rc;
}

int ctl_op_sr_destroy(vms_json **out, ctl_req *r)
{
	int rc, dry = 0;
	const char *key;
	vms_cat_sr sr = {0};
	vms_cat_vm *vms = NULL;
	vms_cat_vdi *vdis = NULL;
	size_t nvm = 0, nvdi = 0;
	vms_control *ctl = r->ctl;
	const vms_backend *be;
	if ((rc = ctl_arg_str(&key, r, "sr", 1)) < 0 || (rc = ctl_arg_bool(r, "dry_run", &dry)) < 0 ||
	    (rc = ctl_get_sr(&sr, r, key)) < 0)
		return rc;
	if ((rc = vms_cat_vm_list(&vms, &nvm, ctl->cat, sr.uuid, 1)) < 0 ||
	    (rc = vms_cat_vdi_list(&vdis, &nvdi, ctl->cat, NULL, sr.uuid, 1)) < 0)
		goto done;
	if (nvm || nvdi) {
		for (size_t i = 0; i < nvm && i < 100 && rc == 0; i++)
			rc = ctl_extra_add(r, "dependents", "vm", vms[i].uuid, vms[i].name);
		for (size_t i = 0; !nvm && i < nvdi && i < 100 && rc == 0; i++)
			rc = ctl_extra_add(r, "dependents", "vdi", vdis[i].uuid, vdis[i].name);
		if (rc == 0)
			rc = vms_error_set(VMS_EDEPEND, "SR '%s' still holds %zu VM%s and %zu disk%s (deleted "
			                   "ones kept for clones included); delete them first", sr.name, nvm,
			                   nvm == 1 ? "" : "s", nvdi, nvdi == 1 ? "" : "s");
		goto done;
	}
	if (!(be = vms_backend_find(sr.type))) {
		rc = vms_error_set(VMS_ENOTSUP, "SR '%s' has type '%s', which this vmsnap has no backend "
		                   "for", sr.name, sr.type);
		goto done;
	}
	if (!dry) {
		ctl_sr_forget(ctl, sr.uuid);
		if ((rc = ctl_begin(ctl)) < 0)
			goto done;
		if ((rc = vms_cat_sr_set_state(ctl->cat, sr.uuid, VMS_STATE_DELETING)) < 0 ||
		    (rc = ctl_commit(ctl)) < 0)
			goto done;
		if ((rc = be->sr_destroy(sr.location)) < 0 && rc != VMS_ENOTFOUND) {
			int keep = rc;
			char msg[1024];
			snprintf(msg, sizeof(msg), "%s", vms_error_last());
			/* nothing was destroyed: the SR stays usable */
			if (ctl_begin(ctl) == 0 && vms_cat_sr_set_state(ctl->cat, sr.uuid, VMS_STATE_READY) == 0)
				ctl_commit(ctl);
			rc = vms_error_set(keep, "%s", msg);
			goto done;
		}
		if ((rc = ctl_begin(ctl)) < 0)
			goto done;
		if ((rc = vms_cat_sr_delete(ctl->cat, sr.uuid)) < 0 || (rc = ctl_commit(ctl)) < 0)
			goto done;
	}
	vms_json *o = vms_json_new_object(), *d = vms_json_new_object();
	if (!o || !d) {
		vms_json_free(o);
		vms_json_free(d);
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	vms_json_object_set_string(d, "uuid", sr.uuid);
	vms_json_object_set_string(d, "name", sr.name);
	vms_json_object_set_bool(o, "dry_run", dry);
	if ((rc = vms_json_object_set(o, "destroyed", d)) < 0) {
		vms_json_free(o);
		goto done;
	}
	*out = o;
done:
	vms_cat_sr_clear(&sr);
	free(vms);
	vms_cat_vdi_list_free(vdis, nvdi);
	return rc;
}
