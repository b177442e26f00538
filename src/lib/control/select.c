/*
 * Selectors (docs/control.md, "Selectors"): every object by name or UUID,
 * disks as "vm/disk", snapshots as "vm@S" where S is a full name, a user
 * name (refused as ambiguous when several carry it), latest, latest~N,
 * before:T, after:T or a UUID.
 *
 * Every key is validated before it reaches the catalog: it is either a
 * canonical UUID (dashes, hex) or a user name ([A-Za-z0-9_]); anything else,
 * e.g. "../x", is INVALID.  Snapshot retrieval goes through the VM's
 * time-sorted index (binary search), never a scan of the catalog.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_private.h"

#define MAX_CANDIDATES 100

static int looks_like_uuid(const char *s)
{
	return strchr(s, '-') != NULL || strlen(s) == VMS_UUID_LEN;
}

int ctl_key_check(char out[VMS_NAME_MAX + VMS_UUID_BUF], const char *key, const char *what)
{
	int rc;
	if (!key || !*key)
		return vms_error_set(VMS_EINVAL, "%s: empty name", what);
	if (looks_like_uuid(key) && strchr(key, '/') == NULL) {
		if ((rc = vms_uuid_parse(out, key)) == 0)
			return 0;
		/* fall through to the name check for the clearer message */
	}
	if ((rc = vms_name_check(key, what)) < 0)
		return vms_error_set(rc, "'%.80s' is neither a %s name (letters, digits, underscore; at "
		                     "most %d) nor a UUID", key, what, VMS_NAME_MAX);
	snprintf(out, VMS_NAME_MAX + VMS_UUID_BUF, "%s", key);
	return 0;
}

int ctl_get_sr(vms_cat_sr *out, ctl_req *r, const char *key)
{
	char k[VMS_NAME_MAX + VMS_UUID_BUF];
	int rc;
	if ((rc = ctl_key_check(k, key, "SR")) < 0)
		return rc;
	return vms_cat_sr_get(out, r->ctl->cat, k);
}

int ctl_get_vm(vms_cat_vm *out, ctl_req *r, const char *key, int all)
{
	char k[VMS_NAME_MAX + VMS_UUID_BUF];
	int rc;
	if ((rc = ctl_key_check(k, key, "VM")) < 0)
		return rc;
	if ((rc = vms_cat_vm_get(out, r->ctl->cat, k, all)) < 0)
		return rc;
	if (out->state == VMS_STATE_CREATING)
		return vms_error_set(VMS_ENOTFOUND, "VM '%s' is still being created", key);
	return 0;
}

int ctl_get_vdi(vms_cat_vdi *out, ctl_req *r, const char *key, int all)
{
	char k[VMS_NAME_MAX + VMS_UUID_BUF];
	int rc;
	if (!key || !*key)
		return vms_error_set(VMS_EINVAL, "empty disk selector");
	const char *slash = strchr(key, '/');
	if (slash) {
		char vmkey[VMS_NAME_MAX + VMS_UUID_BUF];
		size_t n = (size_t)(slash - key);
		vms_cat_vm vm;
		if (n >= sizeof(vmkey))
			return vms_error_set(VMS_EINVAL, "disk selector '%.80s': VM part too long", key);
		memcpy(vmkey, key, n);
		vmkey[n] = 0;
		if ((rc = ctl_key_check(k, slash + 1, "disk")) < 0)
			return rc;
		if (strchr(slash + 1, '-'))
			return vms_error_set(VMS_EINVAL, "disk selector '%.80s': use vm/disk or the disk's "
			                     "UUID alone", key);
		if ((rc = ctl_get_vm(&vm, r, vmkey, 0)) < 0)
			return rc;
		if ((rc = vms_cat_vdi_get_by_name(out, r->ctl->cat, vm.uuid, k)) < 0)
			return vms_error_set(rc, "VM '%s' has no disk '%s'", vm.name, k);
		return 0;
	}
	if ((rc = ctl_key_check(k, key, "disk")) < 0)
		return rc;
	if (!looks_like_uuid(k))
		return vms_error_set(VMS_EINVAL, "disk selector '%.80s': use vm/disk or the disk's UUID",
		                     key);
	if ((rc = vms_cat_vdi_get(out, r->ctl->cat, k)) < 0)
		return rc;
	if ((out->is_deleted && !all) || out->state == VMS_STATE_CREATING) {
		vms_cat_vdi_clear(out);
		return vms_error_set(VMS_ENOTFOUND, "no disk '%s'", k);
	}
	return 0;
}

/* Rank of snapshot s in idx (by its time, then seq). */
static int64_t rank_of(const vms_snapindex *idx, const vms_cat_snapshot *s)
{
	int64_t first;
	if (!vms_snapindex_find_exact(&first, idx, s->name, s->time))
		return VMS_ENOTFOUND;
	vms_snapindex_entry e;
	for (size_t p = (size_t)first; vms_snapindex_at(&e, idx, p) == 0 && e.time == s->time; p++)
		if (e.seq == s->seq)
			return (int64_t)p;
	return VMS_ENOTFOUND;
}

static int parse_uint(uint64_t *out, const char *s)
{
	uint64_t v = 0;
	if (!*s || strlen(s) > 19)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/* Resolve S within one VM to a rank of its index. */
static int64_t resolve_in_vm(ctl_req *r, const vms_snapindex *idx, const vms_cat_vm *vm, const char *S)
{
	int rc;
	int64_t t, rank;
	if (!*S)
		return vms_error_set(VMS_EINVAL, "empty snapshot selector after '%s@'", vm->name);
	if (strcmp(S, "latest") == 0 || strncmp(S, "latest~", 7) == 0) {
		uint64_t back = 0;
		if (S[6] == '~' && parse_uint(&back, S + 7) < 0)
			return vms_error_set(VMS_EINVAL, "'%.80s': expected latest~N with N a number", S);
		rank = vms_snapindex_latest(idx, back);
		if (rank < 0)
			return vms_error_set(VMS_ENOTFOUND, "VM '%s' has %zu snapshot%s: no %s", vm->name,
			                     vms_snapindex_count(idx), vms_snapindex_count(idx) == 1 ? "" : "s", S);
		return rank;
	}
	if (strncmp(S, "before:", 7) == 0 || strncmp(S, "after:", 6) == 0) {
		int before = S[0] == 'b';
		if ((rc = vms_time_parse(&t, S + (before ? 7 : 6))) < 0)
			return rc;
		rank = before ? vms_snapindex_at_or_before(idx, t) : vms_snapindex_at_or_after(idx, t);
		if (rank < 0)
			return vms_error_set(VMS_ENOTFOUND, "VM '%s' has no snapshot taken %s %s", vm->name,
			                     before ? "at or before" : "at or after", S + (before ? 7 : 6));
		return rank;
	}
	if (strchr(S, ':')) {
		char name[VMS_NAME_MAX + 1];
		if ((rc = vms_snapshot_fullname_parse(name, &t, S)) < 0)
			return vms_error_set(VMS_EINVAL, "'%.100s' is not a snapshot selector: use a full name "
			                     "(name_YYYYMMDDTHH:MM:SS), a name, latest, latest~N, before:T, "
			                     "after:T or a UUID", S);
		if (!vms_snapindex_find_exact(&rank, idx, name, t))
			return vms_error_set(VMS_ENOTFOUND, "VM '%s' has no snapshot %s", vm->name, S);
		return rank;
	}
	if (looks_like_uuid(S)) {
		char u[VMS_UUID_BUF];
		vms_cat_snapshot s;
		if ((rc = vms_uuid_parse(u, S)) < 0)
			return rc;
		if ((rc = vms_cat_snapshot_get(&s, r->ctl->cat, u)) < 0)
			return rc;
		if (strcmp(s.vm_uuid, vm->uuid) != 0)
			return vms_error_set(VMS_EINVAL, "snapshot %s belongs to another VM than '%s'", u,
			                     vm->name);
		rank = rank_of(idx, &s);
		if (rank < 0)
			return vms_error_set(VMS_ENOTFOUND, "no snapshot %s", u);
		return rank;
	}
	if ((rc = vms_name_check(S, "snapshot")) < 0)
		return rc;
	int64_t ranks[MAX_CANDIDATES];
	size_t n = vms_snapindex_find_name(ranks, MAX_CANDIDATES, idx, S);
	if (n == 0)
		return vms_error_set(VMS_ENOTFOUND, "VM '%s' has no snapshot named '%s'", vm->name, S);
	if (n == 1)
		return ranks[0];
	for (size_t i = 0; i < n && i < MAX_CANDIDATES; i++) {
		vms_snapindex_entry e;
		vms_cat_snapshot s;
		char full[VMS_FULLNAME_MAX + 1];
		if (vms_snapindex_at(&e, idx, (size_t)ranks[i]) < 0 ||
		    vms_cat_snapshot_get_rowid(&s, r->ctl->cat, (int64_t)e.id) < 0)
			continue;
		ctl_fullname(full, &s);
		if ((rc = ctl_extra_add(r, "candidates", "snapshot", s.uuid, full)) < 0)
			return rc;
	}
	return vms_error_set(VMS_EINVAL, "snapshot name '%s' is ambiguous in VM '%s': %zu snapshots "
	                     "carry it; use the full name (%s_YYYYMMDDTHH:MM:SS), latest, before:T or "
	                     "the UUID", S, vm->name, n, S);
}

int ctl_get_snapshot(vms_cat_snapshot *out, int64_t *rank_out, size_t *count_out, ctl_req *r,
                     const char *sel, const vms_cat_vm *vm, int all)
{
	int rc;
	int64_t rank;
	vms_cat_vm owner;
	vms_snapindex *idx;
	const char *S;
	if (!sel || !*sel)
		return vms_error_set(VMS_EINVAL, "empty snapshot selector");
	if (strlen(sel) > 256)
		return vms_error_set(VMS_EINVAL, "snapshot selector too long");
	const char *at = strchr(sel, '@');
	if (at) {
		char vmkey[VMS_NAME_MAX + VMS_UUID_BUF];
		size_t n = (size_t)(at - sel);
		if (n == 0 || n >= sizeof(vmkey))
			return vms_error_set(VMS_EINVAL, "snapshot selector '%.80s': expected vm@snapshot", sel);
		memcpy(vmkey, sel, n);
		vmkey[n] = 0;
		if ((rc = ctl_get_vm(&owner, r, vmkey, all)) < 0)
			return rc;
		if (vm && strcmp(vm->uuid, owner.uuid) != 0)
			return vms_error_set(VMS_EINVAL, "snapshot '%.80s' is not a snapshot of VM '%s'", sel,
			                     vm->name);
		S = at + 1;
	} else if (vm) {
		owner = *vm;
		S = sel;
	} else {
		/* a bare selector must be a snapshot UUID */
		char u[VMS_UUID_BUF];
		if (!looks_like_uuid(sel) || vms_uuid_parse(u, sel) < 0)
			return vms_error_set(VMS_EINVAL, "snapshot selector '%.80s': use vm@snapshot (full "
			                     "name, name, latest, latest~N, before:T, after:T) or the "
			                     "snapshot's UUID", sel);
		if ((rc = vms_cat_snapshot_get(out, r->ctl->cat, u)) < 0)
			return rc;
		if (out->state != VMS_STATE_READY || (out->is_deleted && !all))
			return vms_error_set(VMS_ENOTFOUND, "no snapshot %s", u);
		if ((rc = vms_cat_vm_get(&owner, r->ctl->cat, out->vm_uuid, 1)) < 0)
			return rc;
		if (owner.is_deleted && !all)
			return vms_error_set(VMS_ENOTFOUND, "no snapshot %s", u);
		if (rank_out || count_out) {
			if ((rc = ctl_index_get(&idx, r->ctl, owner.uuid, all)) < 0)
				return rc;
			if (rank_out && (*rank_out = rank_of(idx, out)) < 0)
				return vms_error_set(VMS_ENOTFOUND, "no snapshot %s", u);
			if (count_out)
				*count_out = vms_snapindex_count(idx);
		}
		return 0;
	}
	if ((rc = ctl_index_get(&idx, r->ctl, owner.uuid, all)) < 0)
		return rc;
	if ((rank = resolve_in_vm(r, idx, &owner, S)) < 0)
		return (int)rank;
	vms_snapindex_entry e;
	if ((rc = vms_snapindex_at(&e, idx, (size_t)rank)) < 0)
		return vms_error_set(rc, "snapshot index out of range");
	if ((rc = vms_cat_snapshot_get_rowid(out, r->ctl->cat, (int64_t)e.id)) < 0)
		return rc;
	if (rank_out)
		*rank_out = rank;
	if (count_out)
		*count_out = vms_snapindex_count(idx);
	return 0;
}
