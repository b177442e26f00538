/*
 * Snapshot operations: snapshot.create, .list, .show, .find, .delete,
 * .rollback.
 *
 * snapshot.create covers every disk of the VM with one backend call inside
 * the server's quiesce hook.  Order: the snapshot row and its disk rows are
 * committed 'creating' (no refs), the backend snapshots, then refs and
 * 'ready' are committed in one transaction.  A crash in between leaves a
 * 'creating' row that reconciliation removes (noting a possible orphan).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

#define MAX_LISTED 100

int ctl_op_snapshot_create(vms_json **out, ctl_req *r)
{
	int rc, held = 0;
	const char *vmkey, *name;
	vms_control *ctl = r->ctl;
	vms_cat_vm vm;
	ctl_map m;
	vms_cat_snapshot s;
	vms_cat_snapdisk *sd = NULL;
	const char **refs = NULL;
	char **out_refs = NULL;
	int inserted = 0;
	memset(&m, 0, sizeof(m));
	if ((rc = ctl_arg_str(&vmkey, r, "vm", 1)) < 0 || (rc = ctl_arg_str(&name, r, "name", 1)) < 0)
		return rc;
	if ((rc = vms_name_check(name, "snapshot")) < 0)
		return rc;
	if ((rc = ctl_get_vm(&vm, r, vmkey, 0)) < 0 || (rc = ctl_map_vm(&m, ctl, &vm)) < 0)
		return rc;
	if ((rc = ctl_need_cap(m.be, VMS_CAP_SNAPSHOT, m.sr.name)) < 0)
		goto done;
	memset(&s, 0, sizeof(s));
	if ((rc = vms_uuid_generate(s.uuid)) < 0)
		goto done;
	snprintf(s.vm_uuid, sizeof(s.vm_uuid), "%s", vm.uuid);
	snprintf(s.name, sizeof(s.name), "%s", name);
	s.time = ctl_now(ctl);
	s.created = s.time;
	s.state = VMS_STATE_CREATING;
	{
		char tag[VMS_TAG_LEN + 1];
		if ((rc = vms_time_tag(tag, sizeof(tag), s.time)) < 0) {
			vms_error_wrap(rc, "the system clock");
			goto done;
		}
	}
	sd = calloc(m.ndisks + 1, sizeof(*sd));
	refs = calloc(m.ndisks + 1, sizeof(*refs));
	out_refs = calloc(m.ndisks + 1, sizeof(*out_refs));
	if (!sd || !refs || !out_refs) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < m.ndisks; i++) {
		snprintf(sd[i].snapshot_uuid, sizeof(sd[i].snapshot_uuid), "%s", s.uuid);
		snprintf(sd[i].vdi_uuid, sizeof(sd[i].vdi_uuid), "%s", m.disks[i].uuid);
		snprintf(sd[i].disk_name, sizeof(sd[i].disk_name), "%s", m.disks[i].name);
		sd[i].device = m.disks[i].device;
		sd[i].size = m.disks[i].size;
		refs[i] = m.disks[i].ref;
	}
	if ((rc = ctl_begin(ctl)) < 0)
		goto done;
	if ((rc = vms_cat_vm_next_seq(&s.seq, ctl->cat, vm.uuid)) < 0 ||
	    (rc = vms_cat_snapshot_insert(ctl->cat, &s, sd, m.ndisks)) < 0 || (rc = ctl_commit(ctl)) < 0) {
		vms_catalog_rollback(ctl->cat);
		goto done;
	}
	inserted = 1;
	if (m.ndisks) {
		if (ctl->have_hooks && ctl->hooks.quiesce) {
			if ((rc = ctl->hooks.quiesce(ctl->hooks_ctx, vm.uuid, 1)) < 0) {
				vms_error_wrap(rc, "holding the writes of VM '%s'", vm.name);
				goto done;
			}
			held = 1;
		}
		rc = m.be->snapshot_create(out_refs, m.h, vm.uuid, s.uuid, refs, m.ndisks);
		if (held)
			ctl->hooks.quiesce(ctl->hooks_ctx, vm.uuid, 0);
		if (rc < 0)
			goto done;
	}
	if ((rc = ctl_begin(ctl)) < 0)
		goto undo_backend;
	for (size_t i = 0; i < m.ndisks && rc == 0; i++)
		rc = vms_cat_snapshot_set_disk_ref(ctl->cat, s.uuid, m.disks[i].uuid, out_refs[i]);
	if (rc == 0)
		rc = vms_cat_snapshot_set_state(ctl->cat, s.uuid, VMS_STATE_READY);
	if (rc < 0 || (rc = ctl_commit(ctl)) < 0) {
		vms_catalog_rollback(ctl->cat);
		goto undo_backend;
	}
	inserted = 0;
	{
		vms_cat_snapshot got;
		if ((rc = vms_cat_snapshot_get(&got, ctl->cat, s.uuid)) < 0)
			goto done;
		ctl_index_added(ctl, &got);
		rc = ctl_rec_snapshot(out, ctl, &got);
	}
	goto done;
undo_backend:
	if (m.ndisks) {
		const char **cr = (const char **)out_refs;
		m.be->snapshot_delete(m.h, vm.uuid, s.uuid, cr, m.ndisks);
	}
done:
	if (rc < 0 && inserted) {
		int keep = rc;
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vms_error_last());
		if (ctl_begin(ctl) == 0) {
			if (vms_cat_snapshot_delete(ctl->cat, s.uuid) == 0)
				ctl_commit(ctl);
			else
				vms_catalog_rollback(ctl->cat);
		}
		rc = vms_error_set(keep, "%s", msg);
	}
	for (size_t i = 0; out_refs && i < m.ndisks; i++)
		free(out_refs[i]);
	free(out_refs);
	free(refs);
	free(sd);
	ctl_map_clear(&m);
	return rc;
}

int ctl_op_snapshot_list(vms_json **out, ctl_req *r)
{
	int rc, all = 0;
	const char *vmkey, *name = NULL, *since = NULL, *until = NULL;
	int64_t limit = -1, t1 = INT64_MIN, t2 = INT64_MAX;
	vms_cat_vm vm;
	vms_snapindex *idx;
	uint64_t *ids = NULL;
	size_t nids = 0;
	vms_json *arr = NULL, *o = NULL;
	if ((rc = ctl_arg_str(&vmkey, r, "vm", 1)) < 0 || (rc = ctl_arg_str(&name, r, "name", 0)) < 0 ||
	    (rc = ctl_arg_str(&since, r, "since", 0)) < 0 || (rc = ctl_arg_str(&until, r, "until", 0)) < 0 ||
	    (rc = ctl_arg_bool(r, "all", &all)) < 0 || (rc = vms_json_get_int(&limit, r->args, "limit", 0)) < 0)
		return rc;
	if (vms_json_object_get(r->args, "limit") && limit < 0)
		return vms_error_set(VMS_EINVAL, "argument 'limit' must be a non-negative integer");
	if (name && (rc = vms_name_check(name, "snapshot")) < 0)
		return rc;
	if (since && (rc = vms_time_parse(&t1, since)) < 0)
		return vms_error_wrap(rc, "argument 'since'");
	if (until && (rc = vms_time_parse(&t2, until)) < 0)
		return vms_error_wrap(rc, "argument 'until'");
	if ((rc = ctl_get_vm(&vm, r, vmkey, all)) < 0 || (rc = ctl_index_get(&idx, r->ctl, vm.uuid, all)) < 0)
		return rc;
	/* candidates in time order: a name's ranks, or a time range */
	size_t first = 0, count = 0;
	vms_snapindex_between(&first, &count, idx, t1, t2);
	if (!(ids = malloc((count ? count : 1) * sizeof(*ids)))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if (name) {
		size_t nn = vms_snapindex_find_name(NULL, 0, idx, name);
		int64_t *ranks = malloc((nn ? nn : 1) * sizeof(*ranks));
		if (!ranks) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
		vms_snapindex_find_name(ranks, nn, idx, name);
		for (size_t i = 0; i < nn; i++) {
			vms_snapindex_entry e;
			if ((size_t)ranks[i] >= first && (size_t)ranks[i] < first + count &&
			    vms_snapindex_at(&e, idx, (size_t)ranks[i]) == 0)
				ids[nids++] = e.id;
		}
		free(ranks);
	} else {
		for (size_t i = 0; i < count; i++) {
			vms_snapindex_entry e;
			if (vms_snapindex_at(&e, idx, first + i) == 0)
				ids[nids++] = e.id;
		}
	}
	size_t start = limit >= 0 && (uint64_t)limit < nids ? nids - (size_t)limit : 0;
	if (!(arr = vms_json_new_array()) || !(o = vms_json_new_object())) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = start; i < nids && rc == 0; i++) {
		vms_cat_snapshot s;
		vms_json *rec;
		if ((rc = vms_cat_snapshot_get_rowid(&s, r->ctl->cat, (int64_t)ids[i])) < 0)
			break;
		if ((rc = ctl_rec_snapshot(&rec, r->ctl, &s)) == 0)
			rc = vms_json_array_append(arr, rec);
	}
	if (rc < 0)
		goto done;
	vms_json_object_set_string(o, "vm", vm.name);
	vms_json_object_set_string(o, "vm_uuid", vm.uuid);
	vms_json_object_set_int(o, "count", (int64_t)(nids - start));
	rc = vms_json_object_set(o, "snapshots", arr);
	arr = NULL;
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	free(ids);
	vms_json_free(arr);
	vms_json_free(o);
	return rc;
}

int ctl_op_snapshot_show(vms_json **out, ctl_req *r)
{
	int rc;
	const char *sel;
	vms_cat_snapshot s;
	if ((rc = ctl_arg_str(&sel, r, "snapshot", 1)) < 0 ||
	    (rc = ctl_get_snapshot(&s, NULL, NULL, r, sel, NULL, 0)) < 0)
		return rc;
	return ctl_rec_snapshot(out, r->ctl, &s);
}

int ctl_op_snapshot_find(vms_json **out, ctl_req *r)
{
	int rc;
	const char *sel;
	vms_cat_snapshot s;
	int64_t rank = -1;
	size_t count = 0;
	vms_json *rec;
	if ((rc = ctl_arg_str(&sel, r, "snapshot", 1)) < 0 ||
	    (rc = ctl_get_snapshot(&s, &rank, &count, r, sel, NULL, 0)) < 0)
		return rc;
	if ((rc = ctl_rec_snapshot(&rec, r->ctl, &s)) < 0)
		return rc;
	if ((rc = vms_json_object_set_int(rec, "rank", rank)) < 0 ||
	    (rc = vms_json_object_set_int(rec, "count", (int64_t)count)) < 0) {
		vms_json_free(rec);
		return rc;
	}
	*out = rec;
	return 0;
}

int ctl_op_snapshot_delete(vms_json **out, ctl_req *r)
{
	int rc, defer = 0, force = 0, dry = 0;
	const char *sel;
	vms_cat_snapshot s;
	vms_cat_vm *kids = NULL;
	size_t nk = 0;
	char full[VMS_FULLNAME_MAX + 1];
	ctl_del d;
	memset(&d, 0, sizeof(d));
	if ((rc = ctl_arg_str(&sel, r, "snapshot", 1)) < 0 || (rc = ctl_arg_bool(r, "defer", &defer)) < 0 ||
	    (rc = ctl_arg_bool(r, "force", &force)) < 0 || (rc = ctl_arg_bool(r, "dry_run", &dry)) < 0 ||
	    (rc = ctl_get_snapshot(&s, NULL, NULL, r, sel, NULL, 0)) < 0)
		return rc;
	ctl_fullname(full, &s);
	if (s.hold[0])
		return vms_error_set(VMS_EBUSY, "snapshot %s is held ('%s'); release the hold first", full,
		                     s.hold);
	if ((rc = ctl_del_init(&d, r, dry)) < 0)
		return rc;
	if ((rc = ctl_live_children(&kids, &nk, &d, s.uuid)) < 0)
		goto done;
	if (nk && !defer) {
		for (size_t i = 0; i < nk && i < MAX_LISTED && rc == 0; i++)
			rc = ctl_extra_add(r, "dependents", "vm", kids[i].uuid, kids[i].name);
		if (rc == 0)
			rc = vms_error_set(VMS_EDEPEND, "snapshot %s has %zu clone%s (first: '%s'); pass defer "
			                   "to delete it once they are gone", full, nk, nk == 1 ? "" : "s",
			                   kids[0].name);
		goto done;
	}
	rc = nk ? ctl_defer_snapshot(&d, &s) : ctl_reclaim_snapshot(&d, &s);
	if (rc == 0)
		rc = ctl_del_result(out, &d);
done:
	free(kids);
	ctl_del_clear(&d);
	return rc;
}

int ctl_op_snapshot_rollback(vms_json **out, ctl_req *r)
{
	int rc, force = 0, dry = 0;
	const char *sel;
	vms_cat_snapshot s;
	vms_cat_vm vm;
	if ((rc = ctl_arg_str(&sel, r, "snapshot", 1)) < 0 || (rc = ctl_arg_bool(r, "force", &force)) < 0 ||
	    (rc = ctl_arg_bool(r, "dry_run", &dry)) < 0 ||
	    (rc = ctl_get_snapshot(&s, NULL, NULL, r, sel, NULL, 0)) < 0 ||
	    (rc = ctl_get_vm(&vm, r, s.vm_uuid, 0)) < 0)
		return rc;
	return ctl_rollback(out, r, &vm, &s, force, dry);
}
