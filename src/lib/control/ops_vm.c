/*
 * VM operations: vm.create, vm.list, vm.show, vm.delete, vm.clone,
 * vm.rollback, vm.tree.
 *
 * Creation order (docs/design/catalog.md): VM and VDI rows 'creating' are
 * committed before the backend creates anything; each VDI gets its ref and
 * 'ready' when its backend disk exists; the VM turns 'ready' last.  A crash
 * in between leaves a 'creating' VM that reconciliation rolls back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

#define MAX_DISKS 256
#define MAX_LISTED 100

/* ---- helpers shared with vdi.create -------------------------------------- */

int ctl_disk_create(vms_cat_vdi *out, ctl_req *r, const ctl_map *m, const char *name, uint64_t size,
                    uint32_t device)
{
	int rc;
	vms_control *ctl = r->ctl;
	vms_cat_vdi vdi;
	char *ref = NULL;
	memset(&vdi, 0, sizeof(vdi));
	if ((rc = vms_uuid_generate(vdi.uuid)) < 0 || (rc = vms_uuid_generate(vdi.vbd_uuid)) < 0)
		return rc;
	snprintf(vdi.name, sizeof(vdi.name), "%s", name);
	snprintf(vdi.sr_uuid, sizeof(vdi.sr_uuid), "%s", m->sr.uuid);
	snprintf(vdi.vm_uuid, sizeof(vdi.vm_uuid), "%s", m->vm.uuid);
	vdi.device = device;
	vdi.size = size;
	vdi.state = VMS_STATE_CREATING;
	vdi.created = ctl_now(ctl);
	if ((rc = ctl_begin(ctl)) < 0)
		return rc;
	if ((rc = vms_cat_vdi_insert(ctl->cat, &vdi)) < 0 || (rc = ctl_commit(ctl)) < 0) {
		vms_catalog_rollback(ctl->cat);
		return rc;
	}
	if ((rc = m->be->disk_create(&ref, m->h, m->vm.uuid, vdi.uuid, size)) < 0) {
		int keep = rc;
		char msg[1024];
		snprintf(msg, sizeof(msg), "creating disk '%s': %s", name, vms_error_last());
		if (ctl_begin(ctl) == 0) {
			if (vms_cat_vdi_delete(ctl->cat, vdi.uuid) == 0)
				ctl_commit(ctl);
			else
				vms_catalog_rollback(ctl->cat);
		}
		return vms_error_set(keep, "%s", msg);
	}
	if ((rc = ctl_begin(ctl)) < 0)
		goto fail;
	if ((rc = vms_cat_vdi_set_ref(ctl->cat, vdi.uuid, ref, VMS_STATE_READY)) < 0 ||
	    (rc = ctl_commit(ctl)) < 0) {
		vms_catalog_rollback(ctl->cat);
		goto fail;
	}
	free(ref);
	if (out)
		return vms_cat_vdi_get(out, ctl->cat, vdi.uuid);
	return 0;
fail:
	/* the row stays 'creating' with no ref: reconciliation drops it; the
	 * backend disk is removed now */
	m->be->disk_delete(m->h, ref);
	free(ref);
	return rc;
}

/* Undo a half-made VM (creation failed): its disks, their rows, the VM row. */
static void vm_undo(vms_control *ctl, const ctl_map *m)
{
	vms_cat_vdi *v = NULL;
	size_t n = 0;
	if (vms_cat_vdi_list(&v, &n, ctl->cat, m->vm.uuid, NULL, 1) == 0) {
		for (size_t i = 0; i < n; i++)
			if (v[i].ref)
				m->be->disk_delete(m->h, v[i].ref);
	}
	if (ctl_begin(ctl) == 0) {
		int rc = 0;
		for (size_t i = 0; i < n && rc == 0; i++)
			rc = vms_cat_vdi_delete(ctl->cat, v[i].uuid);
		if (rc == 0)
			rc = vms_cat_vm_delete(ctl->cat, m->vm.uuid);
		if (rc == 0)
			ctl_commit(ctl);
		else
			vms_catalog_rollback(ctl->cat);
	}
	vms_cat_vdi_list_free(v, n);
}

static int vm_result(vms_json **out, vms_control *ctl, const char *uuid)
{
	vms_cat_vm vm;
	int rc;
	if ((rc = vms_cat_vm_get(&vm, ctl->cat, uuid, 1)) < 0)
		return rc;
	return ctl_rec_vm(out, ctl, &vm);
}

/* A new VM's name must be valid and free among live VMs. */
static int vm_name_free(ctl_req *r, const char *name)
{
	int rc;
	vms_cat_vm other;
	if ((rc = vms_name_check(name, "VM")) < 0)
		return rc;
	if (vms_cat_vm_get(&other, r->ctl->cat, name, 0) == 0)
		return vms_error_set(VMS_EEXISTS, "a VM named '%s' already exists", name);
	vms_error_clear();
	return 0;
}

int ctl_op_vm_create(vms_json **out, ctl_req *r)
{
	int rc;
	const char *name, *srkey;
	vms_control *ctl = r->ctl;
	vms_cat_sr sr = {0};
	ctl_map m;
	const vms_json *disks = vms_json_object_get(r->args, "disks");
	size_t nd = 0;
	memset(&m, 0, sizeof(m));
	if ((rc = ctl_arg_str(&name, r, "name", 1)) < 0 || (rc = ctl_arg_str(&srkey, r, "sr", 1)) < 0)
		return rc;
	if ((rc = vm_name_free(r, name)) < 0)
		return rc;
	if (disks && vms_json_type_of(disks) != VMS_JSON_NULL) {
		if (vms_json_type_of(disks) != VMS_JSON_ARRAY)
			return vms_error_set(VMS_EINVAL, "argument 'disks' must be an array of "
			                     "{\"name\",\"size\"}");
		nd = vms_json_array_len(disks);
		if (nd > MAX_DISKS)
			return vms_error_set(VMS_EINVAL, "at most %d disks per VM", MAX_DISKS);
	}
	/* check every disk spec before anything is created */
	for (size_t i = 0; i < nd; i++) {
		const vms_json *d = vms_json_array_get(disks, i);
		const char *dn;
		uint64_t size;
		if (vms_json_type_of(d) != VMS_JSON_OBJECT)
			return vms_error_set(VMS_EINVAL, "disks[%zu] must be an object {\"name\",\"size\"}", i);
		for (size_t k = 0; k < vms_json_object_len(d); k++) {
			const char *key = vms_json_object_key_at(d, k);
			if (strcmp(key, "name") != 0 && strcmp(key, "size") != 0)
				return vms_error_set(VMS_EINVAL, "disks[%zu]: unknown member '%.64s' (accepted: "
				                     "name, size)", i, key);
		}
		if ((rc = vms_json_get_string(&dn, d, "name", 1)) < 0 ||
		    (rc = vms_json_get_size(&size, d, "size", 1)) < 0)
			return vms_error_wrap(rc, "disks[%zu]", i);
		if ((rc = vms_name_check(dn, "disk")) < 0)
			return rc;
		if (size == 0)
			return vms_error_set(VMS_EINVAL, "disk '%s': size must be positive", dn);
		for (size_t j = 0; j < i; j++) {
			const char *other = NULL;
			vms_json_get_string(&other, vms_json_array_get(disks, j), "name", 1);
			if (other && strcmp(other, dn) == 0)
				return vms_error_set(VMS_EEXISTS, "two disks named '%s'", dn);
		}
	}
	if ((rc = ctl_get_sr(&sr, r, srkey)) < 0)
		return rc;
	if (sr.state != VMS_STATE_READY) {
		rc = vms_error_set(VMS_EBUSY, "SR '%s' is %s", sr.name, vms_obj_state_name(sr.state));
		goto done;
	}
	m.sr = sr;
	if ((rc = ctl_sr_backend(&m.be, &m.h, ctl, sr.uuid)) < 0)
		goto done;
	if ((rc = vms_uuid_generate(m.vm.uuid)) < 0)
		goto done;
	snprintf(m.vm.name, sizeof(m.vm.name), "%s", name);
	snprintf(m.vm.sr_uuid, sizeof(m.vm.sr_uuid), "%s", sr.uuid);
	m.vm.state = VMS_STATE_CREATING;
	m.vm.created = ctl_now(ctl);
	m.vm.next_seq = 1;
	if ((rc = ctl_begin(ctl)) < 0)
		goto done;
	if ((rc = vms_cat_vm_insert(ctl->cat, &m.vm)) < 0 || (rc = ctl_commit(ctl)) < 0) {
		vms_catalog_rollback(ctl->cat);
		goto done;
	}
	for (size_t i = 0; i < nd; i++) {
		const vms_json *d = vms_json_array_get(disks, i);
		const char *dn;
		uint64_t size;
		vms_json_get_string(&dn, d, "name", 1);
		vms_json_get_size(&size, d, "size", 1);
		if ((rc = ctl_disk_create(NULL, r, &m, dn, size, (uint32_t)i)) < 0)
			break;
	}
	if (rc == 0 && (rc = ctl_begin(ctl)) == 0) {
		if ((rc = vms_cat_vm_set_state(ctl->cat, m.vm.uuid, VMS_STATE_READY)) < 0 ||
		    (rc = ctl_commit(ctl)) < 0)
			vms_catalog_rollback(ctl->cat);
	}
	if (rc < 0) {
		int keep = rc;
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vms_error_last());
		vm_undo(ctl, &m);
		rc = vms_error_set(keep, "%s", msg);
		goto done;
	}
	rc = vm_result(out, ctl, m.vm.uuid);
done:
	vms_cat_sr_clear(&sr);
	return rc;
}

int ctl_op_vm_list(vms_json **out, ctl_req *r)
{
	int rc, all = 0;
	const char *srkey = NULL;
	vms_cat_sr sr = {0};
	vms_cat_vm *v = NULL;
	size_t n = 0;
	vms_json *arr = NULL, *o = NULL;
	if ((rc = ctl_arg_str(&srkey, r, "sr", 0)) < 0 || (rc = ctl_arg_bool(r, "all", &all)) < 0)
		return rc;
	if (srkey && (rc = ctl_get_sr(&sr, r, srkey)) < 0)
		return rc;
	if ((rc = vms_cat_vm_list(&v, &n, r->ctl->cat, srkey ? sr.uuid : NULL, all)) < 0)
		goto done;
	if (!(arr = vms_json_new_array()) || !(o = vms_json_new_object())) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_json *rec;
		if (v[i].state == VMS_STATE_CREATING)
			continue;
		if ((rc = ctl_rec_vm(&rec, r->ctl, &v[i])) == 0)
			rc = vms_json_array_append(arr, rec);
	}
	if (rc == 0) {
		rc = vms_json_object_set(o, "vms", arr);
		arr = NULL;
	}
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	vms_cat_sr_clear(&sr);
	free(v);
	vms_json_free(arr);
	vms_json_free(o);
	return rc;
}

/* Append the records of a VM's snapshots in time order to arr. */
static int snapshots_json(vms_json *arr, vms_control *ctl, const char *vm_uuid, int all)
{
	int rc;
	vms_snapindex *idx;
	if ((rc = ctl_index_get(&idx, ctl, vm_uuid, all)) < 0)
		return rc;
	size_t n = vms_snapindex_count(idx);
	uint64_t *ids = malloc((n ? n : 1) * sizeof(*ids));
	if (!ids)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		vms_snapindex_entry e;
		vms_snapindex_at(&e, idx, i);
		ids[i] = e.id;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_cat_snapshot s;
		vms_json *rec;
		if ((rc = vms_cat_snapshot_get_rowid(&s, ctl->cat, (int64_t)ids[i])) < 0)
			break;
		if ((rc = ctl_rec_snapshot(&rec, ctl, &s)) == 0)
			rc = vms_json_array_append(arr, rec);
	}
	free(ids);
	return rc;
}

int ctl_op_vm_show(vms_json **out, ctl_req *r)
{
	int rc, all = 0;
	const char *key;
	vms_cat_vm vm;
	vms_json *rec = NULL, *arr = NULL;
	if ((rc = ctl_arg_str(&key, r, "vm", 1)) < 0 || (rc = ctl_arg_bool(r, "all", &all)) < 0 ||
	    (rc = ctl_get_vm(&vm, r, key, all)) < 0)
		return rc;
	if ((rc = ctl_rec_vm(&rec, r->ctl, &vm)) < 0)
		return rc;
	if (!(arr = vms_json_new_array())) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = snapshots_json(arr, r->ctl, vm.uuid, all)) < 0)
		goto done;
	rc = vms_json_object_set(rec, "snapshots", arr);
	arr = NULL;
	if (rc == 0) {
		*out = rec;
		rec = NULL;
	}
done:
	vms_json_free(arr);
	vms_json_free(rec);
	return rc;
}

int ctl_op_vm_delete(vms_json **out, ctl_req *r)
{
	int rc, recursive = 0, defer = 0, force = 0, dry = 0;
	const char *key;
	vms_cat_vm vm;
	vms_control *ctl = r->ctl;
	vms_cat_snapshot *snaps = NULL;
	vms_cat_vdi *disks = NULL;
	size_t ns = 0, nd = 0, nlive = 0, nclones = 0;
	ctl_del d;
	memset(&d, 0, sizeof(d));
	if ((rc = ctl_arg_str(&key, r, "vm", 1)) < 0 || (rc = ctl_arg_bool(r, "recursive", &recursive)) < 0 ||
	    (rc = ctl_arg_bool(r, "defer", &defer)) < 0 || (rc = ctl_arg_bool(r, "force", &force)) < 0 ||
	    (rc = ctl_arg_bool(r, "dry_run", &dry)) < 0 || (rc = ctl_get_vm(&vm, r, key, 0)) < 0)
		return rc;
	if ((rc = vms_cat_snapshot_list(&snaps, &ns, ctl->cat, vm.uuid, 1)) < 0)
		goto done;
	/* rule 1: live snapshots need recursive; held ones are never deleted */
	for (size_t i = 0; i < ns; i++) {
		if (snaps[i].is_deleted)
			continue;
		if (snaps[i].hold[0]) {
			char full[VMS_FULLNAME_MAX + 1];
			ctl_fullname(full, &snaps[i]);
			rc = vms_error_set(VMS_EBUSY, "snapshot %s of VM '%s' is held ('%s'); release the "
			                   "hold first", full, vm.name, snaps[i].hold);
			goto done;
		}
		if (!recursive && nlive < MAX_LISTED) {
			char full[VMS_FULLNAME_MAX + 1];
			ctl_fullname(full, &snaps[i]);
			if ((rc = ctl_extra_add(r, "dependents", "snapshot", snaps[i].uuid, full)) < 0)
				goto done;
		}
		nlive++;
	}
	if (nlive && !recursive) {
		rc = vms_error_set(VMS_EDEPEND, "VM '%s' has %zu snapshot%s; pass recursive to delete them "
		                   "with it", vm.name, nlive, nlive == 1 ? "" : "s");
		goto done;
	}
	/* rule 2: snapshots with clones need defer */
	for (size_t i = 0; i < ns; i++) {
		vms_cat_vm *kids = NULL;
		size_t nk = 0;
		if ((rc = vms_cat_vm_children(&kids, &nk, ctl->cat, snaps[i].uuid)) < 0)
			goto done;
		for (size_t k = 0; k < nk && !defer && rc == 0; k++)
			if (nclones + k < MAX_LISTED)
				rc = ctl_extra_add(r, "dependents", "vm", kids[k].uuid, kids[k].name);
		nclones += nk;
		free(kids);
		if (rc < 0)
			goto done;
	}
	if (nclones && !defer) {
		rc = vms_error_set(VMS_EDEPEND, "VM '%s' has snapshots that %zu clone%s depend on; pass "
		                   "defer to delete it once they are gone", vm.name, nclones,
		                   nclones == 1 ? "" : "s");
		goto done;
	}
	if ((rc = vms_cat_vdi_list(&disks, &nd, ctl->cat, vm.uuid, NULL, 0)) < 0 ||
	    (rc = ctl_check_busy(r, disks, nd, force, "delete the VM")) < 0)
		goto done;
	if ((rc = ctl_del_init(&d, r, dry)) < 0)
		goto done;
	if (!dry) {
		if ((rc = ctl_begin(ctl)) < 0)
			goto done;
		if ((rc = vms_cat_vm_set_state(ctl->cat, vm.uuid, VMS_STATE_DELETING)) < 0 ||
		    (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			goto done;
		}
	}
	if ((rc = ctl_vm_delete_exec(&d, &vm)) < 0)
		goto done;
	rc = ctl_del_result(out, &d);
done:
	ctl_del_clear(&d);
	free(snaps);
	vms_cat_vdi_list_free(disks, nd);
	return rc;
}

int ctl_op_vm_clone(vms_json **out, ctl_req *r)
{
	int rc;
	const char *sel, *name;
	vms_control *ctl = r->ctl;
	vms_cat_snapshot s;
	vms_cat_vm src;
	vms_cat_snapdisk *sd = NULL;
	size_t nsd = 0;
	ctl_map m;
	char **refs = NULL;
	const char **src_refs = NULL, **keys = NULL;
	vms_cat_vdi *rows = NULL;
	int created = 0;
	memset(&m, 0, sizeof(m));
	if ((rc = ctl_arg_str(&sel, r, "snapshot", 1)) < 0 || (rc = ctl_arg_str(&name, r, "name", 1)) < 0)
		return rc;
	if ((rc = vm_name_free(r, name)) < 0)
		return rc;
	if ((rc = ctl_get_snapshot(&s, NULL, NULL, r, sel, NULL, 0)) < 0)
		return rc;
	if ((rc = vms_cat_vm_get(&src, ctl->cat, s.vm_uuid, 1)) < 0)
		return rc;
	if ((rc = vms_cat_sr_get(&m.sr, ctl->cat, src.sr_uuid)) < 0)
		return rc;
	if ((rc = ctl_sr_backend(&m.be, &m.h, ctl, src.sr_uuid)) < 0)
		goto done;
	if ((rc = ctl_need_cap(m.be, VMS_CAP_CLONE, m.sr.name)) < 0)
		goto done;
	if ((rc = vms_cat_snapshot_disks(&sd, &nsd, ctl->cat, s.uuid)) < 0)
		goto done;
	refs = calloc(nsd + 1, sizeof(*refs));
	src_refs = calloc(nsd + 1, sizeof(*src_refs));
	keys = calloc(nsd + 1, sizeof(*keys));
	rows = calloc(nsd + 1, sizeof(*rows));
	if (!refs || !src_refs || !keys || !rows) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = vms_uuid_generate(m.vm.uuid)) < 0)
		goto done;
	snprintf(m.vm.name, sizeof(m.vm.name), "%s", name);
	snprintf(m.vm.sr_uuid, sizeof(m.vm.sr_uuid), "%s", src.sr_uuid);
	snprintf(m.vm.parent_snapshot, sizeof(m.vm.parent_snapshot), "%s", s.uuid);
	m.vm.state = VMS_STATE_CREATING;
	m.vm.created = ctl_now(ctl);
	m.vm.next_seq = 1;
	for (size_t i = 0; i < nsd; i++) {
		vms_cat_vdi *v = &rows[i];
		if (!sd[i].ref) {
			rc = vms_error_set(VMS_ECORRUPT, "snapshot disk '%s' has no backend ref",
			                   sd[i].disk_name);
			goto done;
		}
		if ((rc = vms_uuid_generate(v->uuid)) < 0 || (rc = vms_uuid_generate(v->vbd_uuid)) < 0)
			goto done;
		snprintf(v->name, sizeof(v->name), "%s", sd[i].disk_name);
		snprintf(v->sr_uuid, sizeof(v->sr_uuid), "%s", src.sr_uuid);
		snprintf(v->vm_uuid, sizeof(v->vm_uuid), "%s", m.vm.uuid);
		v->device = sd[i].device;
		v->size = sd[i].size;
		v->state = VMS_STATE_CREATING;
		v->created = m.vm.created;
		src_refs[i] = sd[i].ref;
		keys[i] = v->uuid;
	}
	/* intent first: rows 'creating' */
	if ((rc = ctl_begin(ctl)) < 0)
		goto done;
	rc = vms_cat_vm_insert(ctl->cat, &m.vm);
	for (size_t i = 0; i < nsd && rc == 0; i++)
		rc = vms_cat_vdi_insert(ctl->cat, &rows[i]);
	if (rc < 0 || (rc = ctl_commit(ctl)) < 0) {
		vms_catalog_rollback(ctl->cat);
		goto done;
	}
	created = 1;
	if (nsd && (rc = m.be->clone(refs, m.h, m.vm.uuid, keys, src_refs, nsd)) < 0)
		goto done;
	if ((rc = ctl_begin(ctl)) < 0)
		goto done;
	for (size_t i = 0; i < nsd && rc == 0; i++)
		rc = vms_cat_vdi_set_ref(ctl->cat, rows[i].uuid, refs[i], VMS_STATE_READY);
	if (rc == 0)
		rc = vms_cat_vm_set_state(ctl->cat, m.vm.uuid, VMS_STATE_READY);
	if (rc < 0 || (rc = ctl_commit(ctl)) < 0) {
		vms_catalog_rollback(ctl->cat);
		for (size_t i = 0; i < nsd; i++)
			if (refs[i])
				m.be->disk_delete(m.h, refs[i]);
		goto done;
	}
	created = 0;
	rc = vm_result(out, ctl, m.vm.uuid);
done:
	if (rc < 0 && created) {
		int keep = rc;
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vms_error_last());
		vm_undo(ctl, &m);
		rc = vms_error_set(keep, "%s", msg);
	}
	for (size_t i = 0; refs && i < nsd; i++)
		free(refs[i]);
	free(refs);
	free(src_refs);
	free(keys);
	free(rows);
	vms_cat_snapdisk_list_free(sd, nsd);
	vms_cat_sr_clear(&m.sr);
	return rc;
}

int ctl_rollback(vms_json **out, ctl_req *r, const vms_cat_vm *vm, const vms_cat_snapshot *s, int force,
                 int dry_run)
{
	int rc;
	vms_control *ctl = r->ctl;
	ctl_map m;
	vms_cat_snapdisk *sd = NULL;
	size_t nsd = 0;
	const char **refs = NULL, **snap_refs = NULL;
	char **new_refs = NULL;
	char full[VMS_FULLNAME_MAX + 1];
	vms_json *o = NULL, *arr = NULL;
	vms_snapindex *idx;
	if ((rc = ctl_map_vm(&m, ctl, vm)) < 0)
		return rc;
	ctl_fullname(full, s);
	if ((rc = vms_cat_snapshot_disks(&sd, &nsd, ctl->cat, s->uuid)) < 0)
		goto done;
	/* the VM's disk set must be the snapshot's */
	for (size_t i = 0; i < m.ndisks; i++) {
		size_t j = 0;
		while (j < nsd && strcmp(sd[j].vdi_uuid, m.disks[i].uuid) != 0)
			j++;
		if (j == nsd) {
			rc = vms_error_set(VMS_EINVAL, "cannot roll VM '%s' back to %s: disk '%s' was added "
			                   "after that snapshot (delete it first)", vm->name, full,
			                   m.disks[i].name);
			goto done;
		}
	}
	for (size_t j = 0; j < nsd; j++) {
		size_t i = 0;
		while (i < m.ndisks && strcmp(sd[j].vdi_uuid, m.disks[i].uuid) != 0)
			i++;
		if (i == m.ndisks) {
			rc = vms_error_set(VMS_EINVAL, "cannot roll VM '%s' back to %s: its disk '%s' has been "
			                   "deleted since", vm->name, full, sd[j].disk_name);
			goto done;
		}
		if (!sd[j].ref) {
			rc = vms_error_set(VMS_ECORRUPT, "snapshot disk '%s' has no backend ref", sd[j].disk_name);
			goto done;
		}
	}
	if (!m.be->rollback) {
		rc = vms_error_set(VMS_ENOTSUP, "SR '%s' (type %s) cannot roll back", m.sr.name, m.be->type);
		goto done;
	}
	if ((rc = ctl_index_get(&idx, ctl, vm->uuid, 0)) < 0)
		goto done;
	{
		vms_snapindex_entry e;
		int64_t last = vms_snapindex_latest(idx, 0);
		int is_latest = last >= 0 && vms_snapindex_at(&e, idx, (size_t)last) == 0 &&
		                e.id == (uint64_t)s->rowid;
		if (!is_latest && (rc = ctl_need_cap(m.be, VMS_CAP_ROLLBACK_ANY, m.sr.name)) < 0)
			goto done;
	}
	if ((rc = ctl_check_busy(r, m.disks, m.ndisks, force, "roll back")) < 0)
		goto done;
	refs = calloc(nsd + 1, sizeof(*refs));
	snap_refs = calloc(nsd + 1, sizeof(*snap_refs));
	new_refs = calloc(nsd + 1, sizeof(*new_refs));
	if (!refs || !snap_refs || !new_refs) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t j = 0; j < nsd; j++) {
		for (size_t i = 0; i < m.ndisks; i++)
			if (strcmp(sd[j].vdi_uuid, m.disks[i].uuid) == 0)
				refs[j] = m.disks[i].ref;
		snap_refs[j] = sd[j].ref;
	}
	if (!dry_run && nsd) {
		/* intent first: a crash (or a failure) part-way through the disks
		 * is finished by reconciliation, which redoes the rollback */
		if ((rc = ctl_begin(ctl)) < 0)
			goto done;
		if ((rc = vms_cat_vm_set_pending_rollback(ctl->cat, vm->uuid, s->uuid)) < 0 ||
		    (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			goto done;
		}
		if ((rc = m.be->rollback(new_refs, m.h, vm->uuid, refs, snap_refs, nsd)) < 0) {
			vms_error_wrap(rc, "rollback of VM '%s' to %s incomplete (run it again; it is also "
			               "finished when vmsnap next opens the catalog)", vm->name, full);
			goto done;
		}
		if ((rc = ctl_begin(ctl)) < 0)
			goto done;
		for (size_t j = 0; j < nsd && rc == 0; j++) {
			if (new_refs[j])
				rc = vms_cat_vdi_set_ref(ctl->cat, sd[j].vdi_uuid, new_refs[j], VMS_STATE_READY);
			if (rc == 0)
				rc = vms_cat_vdi_set_size(ctl->cat, sd[j].vdi_uuid, sd[j].size);
		}
		if (rc == 0)
			rc = vms_cat_vm_set_pending_rollback(ctl->cat, vm->uuid, NULL);
		if (rc < 0 || (rc = ctl_commit(ctl)) < 0) {
			vms_catalog_rollback(ctl->cat);
			goto done;
		}
		for (size_t j = 0; j < nsd; j++)
			ctl_disk_changed(ctl, sd[j].vdi_uuid);
	}
	if (!(o = vms_json_new_object()) || !(arr = vms_json_new_array())) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	vms_json_object_set_bool(o, "dry_run", dry_run);
	vms_json_object_set_string(o, "vm", vm->name);
	vms_json_object_set_string(o, "vm_uuid", vm->uuid);
	vms_json_object_set_string(o, "snapshot", full);
	vms_json_object_set_string(o, "snapshot_uuid", s->uuid);
	for (size_t j = 0; j < nsd; j++) {
		vms_json *d = vms_json_new_object();
		if (d) {
			vms_json_object_set_string(d, "name", sd[j].disk_name);
			vms_json_object_set_string(d, "uuid", sd[j].vdi_uuid);
			vms_json_object_set_int(d, "size", (int64_t)sd[j].size);
		}
		vms_json_array_append(arr, d);
	}
	rc = vms_json_object_set(o, "disks", arr);
	arr = NULL;
	if (rc == 0 && vms_error_last_code() == VMS_ENOMEM)
		rc = VMS_ENOMEM;
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	for (size_t j = 0; new_refs && j < nsd; j++)
		free(new_refs[j]);
	free(new_refs);
	free(refs);
	free(snap_refs);
	vms_json_free(o);
	vms_json_free(arr);
	vms_cat_snapdisk_list_free(sd, nsd);
	ctl_map_clear(&m);
	return rc;
}

int ctl_op_vm_rollback(vms_json **out, ctl_req *r)
{
	int rc, force = 0, dry = 0;
	const char *key, *sel;
	vms_cat_vm vm;
	vms_cat_snapshot s;
	if ((rc = ctl_arg_str(&key, r, "vm", 1)) < 0 || (rc = ctl_arg_str(&sel, r, "snapshot", 1)) < 0 ||
	    (rc = ctl_arg_bool(r, "force", &force)) < 0 || (rc = ctl_arg_bool(r, "dry_run", &dry)) < 0 ||
	    (rc = ctl_get_vm(&vm, r, key, 0)) < 0 || (rc = ctl_get_snapshot(&s, NULL, NULL, r, sel, &vm, 0)) < 0)
		return rc;
	return ctl_rollback(out, r, &vm, &s, force, dry);
}

/* ---- vm.tree ---------------------------------------------------------------- */

#define TREE_DEPTH_MAX 1000

static int tree_vm(vms_json **out, vms_control *ctl, const vms_cat_vm *vm, int all, int depth);

static int tree_snapshot(vms_json **out, vms_control *ctl, const vms_cat_snapshot *s, int all, int depth)
{
	int rc = 0;
	vms_cat_vm *kids = NULL;
	size_t nk = 0;
	char full[VMS_FULLNAME_MAX + 1];
	vms_json *o = vms_json_new_object(), *children = vms_json_new_array();
	*out = NULL;
	if (!o || !children) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = vms_cat_vm_children(&kids, &nk, ctl->cat, s->uuid)) < 0)
		goto done;
	for (size_t i = 0; i < nk && rc == 0; i++) {
		vms_json *c = NULL;
		if ((rc = tree_vm(&c, ctl, &kids[i], all, depth + 1)) == 0 && c)
			rc = vms_json_array_append(children, c);
	}
	if (rc < 0)
		goto done;
	if (s->is_deleted && !all && vms_json_array_len(children) == 0)
		goto done;   /* hidden, and nothing visible hangs below it */
	ctl_fullname(full, s);
	vms_json_object_set_string(o, "kind", "snapshot");
	vms_json_object_set_string(o, "uuid", s->uuid);
	vms_json_object_set_string(o, "name", full);
	vms_json_object_set_int(o, "time", s->time);
	{
		char iso[VMS_ISO_BUF] = "";
		vms_time_iso(iso, sizeof(iso), s->time);
		vms_json_object_set_string(o, "time_iso", iso);
	}
	vms_json_object_set_bool(o, "is_deleted", s->is_deleted);
	rc = vms_json_object_set(o, "children", children);
	children = NULL;
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	free(kids);
	vms_json_free(o);
	vms_json_free(children);
	return rc;
}

static int tree_vm(vms_json **out, vms_control *ctl, const vms_cat_vm *vm, int all, int depth)
{
	int rc;
	vms_snapindex *idx;
	uint64_t *ids = NULL;
	size_t n;
	vms_json *o = vms_json_new_object(), *children = vms_json_new_array();
	*out = NULL;
	if (!o || !children) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if (depth > TREE_DEPTH_MAX) {
		rc = vms_error_set(VMS_ECORRUPT, "clone tree deeper than %d (a cycle in the catalog?)",
		                   TREE_DEPTH_MAX);
		goto done;
	}
	/* copy the ranks out: the recursion may evict this VM's cached index */
	if ((rc = ctl_index_get(&idx, ctl, vm->uuid, 1)) < 0)
		goto done;
	n = vms_snapindex_count(idx);
	if (!(ids = malloc((n ? n : 1) * sizeof(*ids)))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		vms_snapindex_entry e;
		vms_snapindex_at(&e, idx, i);
		ids[i] = e.id;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_cat_snapshot s;
		vms_json *c = NULL;
		if ((rc = vms_cat_snapshot_get_rowid(&s, ctl->cat, (int64_t)ids[i])) < 0)
			break;
		if ((rc = tree_snapshot(&c, ctl, &s, all, depth)) == 0 && c)
			rc = vms_json_array_append(children, c);
	}
	if (rc < 0)
		goto done;
	if (vm->is_deleted && !all && vms_json_array_len(children) == 0)
		goto done;
	vms_json_object_set_string(o, "kind", "vm");
	vms_json_object_set_string(o, "uuid", vm->uuid);
	vms_json_object_set_string(o, "name", vm->name);
	vms_json_object_set_bool(o, "is_deleted", vm->is_deleted);
	rc = vms_json_object_set(o, "children", children);
	children = NULL;
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	free(ids);
	vms_json_free(o);
	vms_json_free(children);
	return rc;
}

int ctl_op_vm_tree(vms_json **out, ctl_req *r)
{
	int rc, all = 0;
	const char *key = NULL;
	vms_cat_vm *v = NULL;
	size_t n = 0;
	vms_json *arr = vms_json_new_array(), *o = vms_json_new_object();
	if (!arr || !o) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = ctl_arg_str(&key, r, "vm", 0)) < 0 || (rc = ctl_arg_bool(r, "all", &all)) < 0)
		goto done;
	if (key) {
		vms_cat_vm vm;
		vms_json *node = NULL;
		if ((rc = ctl_get_vm(&vm, r, key, all)) < 0 || (rc = tree_vm(&node, r->ctl, &vm, all, 0)) < 0)
			goto done;
		if (node && (rc = vms_json_array_append(arr, node)) < 0)
			goto done;
	} else {
		if ((rc = vms_cat_vm_list(&v, &n, r->ctl->cat, NULL, 1)) < 0)
			goto done;
		for (size_t i = 0; i < n && rc == 0; i++) {
			vms_json *node = NULL;
			if (v[i].parent_snapshot[0] || v[i].state == VMS_STATE_CREATING)
				continue;
			if ((rc = tree_vm(&node, r->ctl, &v[i], all, 0)) == 0 && node)
				rc = vms_json_array_append(arr, node);
		}
		if (rc < 0)
			goto done;
	}
	rc = vms_json_object_set(o, "tree", arr);
	arr = NULL;
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	free(v);
	vms_json_free(arr);
	vms_json_free(o);
	return rc;
}
