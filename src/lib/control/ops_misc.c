/*
 * Health and space: check and stats.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#include "control/control_private.h"

#define CHECK_DATA 1u     /* the values of VMS_CHECK_DATA / VMS_CHECK_REPAIR in pool.h */
#define CHECK_REPAIR 2u

static int check_sr(vms_json *srs, int *all_ok, ctl_req *r, const vms_cat_sr *sr, unsigned flags, int repair,
                    int dry_run)
{
	int rc, ok = 1, owned = 0;
	const vms_backend *be;
	vms_sr_handle *h;
	char *report = NULL;
	vms_json *o = vms_json_new_object(), *rep = NULL;
	if (!o)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	vms_json_object_set_string(o, "sr", sr->name);
	vms_json_object_set_string(o, "type", sr->type);
	/* Only a repair changes the SR: a check or a dry run looks at it through
	 * a read-only open (writes nothing) unless the SR is open already. */
	if ((rc = repair && !dry_run ? ctl_sr_backend(&be, &h, r->ctl, sr->uuid)
	                             : ctl_sr_backend_readonly(&be, &h, &owned, r->ctl, sr->uuid)) < 0) {
		ok = 0;
		rep = vms_json_new_string(vms_error_last());
		be = NULL;
	} else if (!(be->caps & VMS_CAP_CHECK) || !be->check) {
		rep = vms_json_new_null();
	} else {
		rc = be->check(h, flags, &report);
		if (rc < 0)
			ok = 0;
		if (!report || vms_json_parse(&rep, report, strlen(report)) < 0)
			rep = vms_json_new_string(report ? report : vms_error_last());
	}
	free(report);
	vms_error_clear();
	vms_json_object_set(o, "report", rep);
	/* the backend's objects against the catalog, both ways */
	if (be && (rc = ctl_check_sr_catalog(o, &ok, r, sr, be, h, repair, dry_run)) < 0) {
		if (rc == VMS_ENOMEM || rc == VMS_ECORRUPT)
			goto done;
		ok = 0;
		vms_json_object_set_string(o, "compare_error", vms_error_last());
		vms_error_clear();
	}
	if (!ok)
		*all_ok = 0;
	vms_json_object_set_bool(o, "ok", ok);
	rc = vms_json_array_append(srs, o);
	o = NULL;
done:
	if (owned)
		be->sr_close(h);
	vms_json_free(o);
	return rc;
}

/* Repair changes SRs and the catalog: only when no other process shares
 * the home (this one holds control.lock shared, as every control does). */
static int check_alone(vms_control *ctl)
{
	int rc = 0;
	if (ctl->lock_fd < 0)
		return 0;
	if (flock(ctl->lock_fd, LOCK_EX | LOCK_NB) < 0)
		rc = vms_error_set(VMS_EBUSY, "check --repair needs the vmsnap home %s to itself, but another "
		                   "process (vmsnapd or another vmsnap) uses it; run the repair through vmsnapd "
		                   "(without --no-daemon) or stop the other process", ctl->home);
	return rc;
}

static void check_share(vms_control *ctl)
{
	if (ctl->lock_fd >= 0)
		while (flock(ctl->lock_fd, LOCK_SH) < 0 && errno == EINTR)
			;
}

int ctl_op_check(vms_json **out, ctl_req *r)
{
	int rc, data = 0, repair = 0, dry_run = 0, ok = 1, alone = 0;
	const char *key = NULL;
	vms_control *ctl = r->ctl;
	vms_cat_sr *srs = NULL;
	size_t nsr = 0;
	char *integrity = NULL;
	char **orphans = NULL;
	size_t norph = 0;
	vms_json *o = vms_json_new_object(), *cat = vms_json_new_object(), *arr = vms_json_new_array(),
	         *orph = vms_json_new_array(), *unset = vms_json_new_array();
	if (!o || !cat || !arr || !orph || !unset) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = ctl_arg_str(&key, r, "sr", 0)) < 0 || (rc = ctl_arg_bool(r, "data", &data)) < 0 ||
	    (rc = ctl_arg_bool(r, "repair", &repair)) < 0 || (rc = ctl_arg_bool(r, "dry_run", &dry_run)) < 0)
		goto done;
	if (dry_run && !repair) {
		rc = vms_error_set(VMS_EINVAL, "dry_run goes with repair (check alone changes nothing)");
		goto done;
	}
	if (repair && !dry_run) {
		if ((rc = check_alone(ctl)) < 0) {
			check_share(ctl);
			goto done;
		}
		alone = 1;
	}
	unsigned flags = (data ? CHECK_DATA : 0) | (repair && !dry_run ? CHECK_REPAIR : 0);
	/* catalog */
	rc = vms_catalog_integrity(&integrity, ctl->cat);
	if (rc < 0 && rc != VMS_ECORRUPT)
		goto done;
	vms_json_object_set_bool(cat, "ok", rc == 0);
	vms_json_object_set_string(cat, "report", integrity ? integrity : vms_error_last());
	if (rc < 0)
		ok = 0;
	rc = 0;
	/* SRs */
	if (key) {
		if (!(srs = calloc(1, sizeof(*srs)))) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
		if ((rc = ctl_get_sr(&srs[0], r, key)) < 0)
			goto done;
		nsr = 1;
	} else if ((rc = vms_cat_sr_list(&srs, &nsr, ctl->cat)) < 0) {
		goto done;
	}
	for (size_t i = 0; i < nsr && rc == 0; i++)
		if (srs[i].state == VMS_STATE_READY)
			rc = check_sr(arr, &ok, r, &srs[i], flags, repair, dry_run);
	if (rc < 0)
		goto done;
	/* orphans noted by reconciliation, rows still unsettled */
	if ((rc = vms_cat_orphan_list(&orphans, &norph, ctl->cat)) < 0)
		goto done;
	for (size_t i = 0; i < norph && rc == 0; i++)
		rc = vms_json_array_append(orph, vms_json_new_string(orphans[i]));
	static const char *const kinds[] = {"sr", "vm", "vdi", "snapshot"};
	for (size_t k = 0; k < 4 && rc == 0; k++) {
		char **u = NULL;
		int *st = NULL;
		size_t n = 0;
		if ((rc = vms_cat_unsettled(&u, &st, &n, ctl->cat, kinds[k])) < 0)
			break;
		for (size_t i = 0; i < n && rc == 0; i++) {
			vms_json *x = vms_json_new_object();
			if (x) {
				vms_json_object_set_string(x, "kind", kinds[k]);
				vms_json_object_set_string(x, "uuid", u[i]);
				vms_json_object_set_string(x, "state", vms_obj_state_name(st[i]));
			}
			rc = vms_json_array_append(unset, x);
		}
		vms_cat_strv_free(u, n);
		free(st);
	}
	if (rc < 0)
		goto done;
	{
		/* rollbacks whose intent is still recorded */
		vms_cat_vm *vms = NULL;
		size_t nvm = 0;
		if ((rc = vms_cat_vm_list(&vms, &nvm, ctl->cat, NULL, 1)) < 0)
			goto done;
		for (size_t i = 0; i < nvm && rc == 0; i++) {
			if (!vms[i].pending_rollback[0])
				continue;
			vms_json *x = vms_json_new_object();
			if (x) {
				vms_json_object_set_string(x, "kind", "vm");
				vms_json_object_set_string(x, "uuid", vms[i].uuid);
				vms_json_object_set_string(x, "state", "rollback pending");
			}
			rc = vms_json_array_append(unset, x);
		}
		free(vms);
		if (rc < 0)
			goto done;
	}
	vms_json_object_set_bool(o, "ok", ok);
	vms_json_object_set_bool(o, "repair", repair);
	vms_json_object_set_bool(o, "dry_run", dry_run);
	vms_json_object_set(o, "catalog", cat);
	vms_json_object_set(o, "srs", arr);
	vms_json_object_set(o, "orphans", orph);
	rc = vms_json_object_set(o, "unsettled", unset);
	cat = arr = orph = unset = NULL;
	if (rc == 0) {
		*out = o;
		o = NULL;
	}
done:
	if (alone)
		check_share(ctl);
	free(integrity);
	vms_cat_strv_free(orphans, norph);
	vms_cat_sr_list_free(srs, nsr);
	vms_json_free(o);
	vms_json_free(cat);
	vms_json_free(arr);
	vms_json_free(orph);
	vms_json_free(unset);
	return rc;
}

/* ---- stats ------------------------------------------------------------------ */

typedef struct sums {
	uint64_t referenced, unique, written;
	int known_r, known_u, known_w;
	int per_vm;          /* some figure was the VM snapshot's, not a disk's */
} sums;

static vms_json *num_or_null(uint64_t v, int known)
{
	return known && v != UINT64_MAX ? vms_json_new_int((int64_t)v) : vms_json_new_null();
}

static void space_fill(vms_json *o, sums *acc, const vms_backend *be, vms_sr_handle *h, const char *ref)
{
	vms_ref_space sp = {UINT64_MAX, UINT64_MAX, UINT64_MAX, VMS_SPACE_PER_DISK};
	if (!ref || !be->ref_space || be->ref_space(&sp, h, ref) < 0) {
		sp.referenced = sp.unique = sp.written = UINT64_MAX;
		vms_error_clear();
	}
	/* A backend that accounts space per VM snapshot (zfs) charges the
	 * snapshot's figures to one disk: they go into the sums, and the disk
	 * shows null with "granularity":"vm" rather than figures not its own. */
	int per_vm = sp.granularity == VMS_SPACE_PER_VM;
	vms_json_object_set(o, "referenced", num_or_null(sp.referenced, !per_vm));
	vms_json_object_set(o, "unique", num_or_null(sp.unique, !per_vm));
	vms_json_object_set(o, "written", num_or_null(sp.written, !per_vm));
	vms_json_object_set_string(o, "granularity", per_vm ? "vm" : "disk");
	if (acc) {
		acc->per_vm |= per_vm;
		if (sp.referenced == UINT64_MAX) acc->known_r = 0; else acc->referenced += sp.referenced;
		if (sp.unique == UINT64_MAX) acc->known_u = 0; else acc->unique += sp.unique;
		if (sp.written == UINT64_MAX) acc->known_w = 0; else acc->written += sp.written;
	}
}

/* Per-snapshot figures: disks listed into `disks` (may be NULL), sums into o. */
static int snapshot_space(vms_json *o, vms_json *disks, vms_control *ctl, const vms_backend *be,
                          vms_sr_handle *h, const vms_cat_snapshot *s)
{
	int rc;
	vms_cat_snapdisk *sd = NULL;
	size_t n = 0;
	sums acc = {0, 0, 0, 1, 1, 1, 0};
	if ((rc = vms_cat_snapshot_disks(&sd, &n, ctl->cat, s->uuid)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		vms_json *d = vms_json_new_object();
		if (!d)
			continue;
		vms_json_object_set_string(d, "name", sd[i].disk_name);
		space_fill(d, &acc, be, h, sd[i].ref);
		if (disks)
			vms_json_array_append(disks, d);
		else
			vms_json_free(d);
	}
	vms_cat_snapdisk_list_free(sd, n);
	vms_json_object_set(o, "referenced", num_or_null(acc.referenced, acc.known_r));
	vms_json_object_set(o, "unique", num_or_null(acc.unique, acc.known_u));
	vms_json_object_set(o, "written", num_or_null(acc.written, acc.known_w));
	vms_json_object_set_string(o, "granularity", acc.per_vm ? "vm" : "disk");
	return 0;
}

static int stats_srs(vms_json *o, vms_control *ctl, const vms_cat_sr *only)
{
	int rc;
	vms_cat_sr *srs = NULL;
	size_t nsr = 0;
	vms_json *arr = vms_json_new_array();
	if (!arr)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if (only) {
		srs = (vms_cat_sr *)only;
		nsr = 1;
	} else if ((rc = vms_cat_sr_list(&srs, &nsr, ctl->cat)) < 0) {
		vms_json_free(arr);
		return rc;
	}
	rc = 0;
	for (size_t i = 0; i < nsr && rc == 0; i++) {
		const vms_backend *be;
		vms_sr_handle *h;
		vms_sr_space sp = {UINT64_MAX, UINT64_MAX, UINT64_MAX};
		vms_cat_vm *vms = NULL;
		vms_cat_vdi *vdis = NULL;
		size_t nvm = 0, nvdi = 0;
		int64_t nsnap = 0;
		vms_json *x = vms_json_new_object();
		if (!x) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			break;
		}
		if (srs[i].state != VMS_STATE_READY || ctl_sr_backend(&be, &h, ctl, srs[i].uuid) < 0 ||
		    !be->sr_space || be->sr_space(&sp, h) < 0)
			sp.total_bytes = sp.free_bytes = sp.used_bytes = UINT64_MAX;
		vms_error_clear();
		if ((rc = vms_cat_vm_list(&vms, &nvm, ctl->cat, srs[i].uuid, 0)) == 0 &&
		    (rc = vms_cat_vdi_list(&vdis, &nvdi, ctl->cat, NULL, srs[i].uuid, 0)) == 0) {
			for (size_t v = 0; v < nvm && rc == 0; v++) {
				int64_t c = 0;
				rc = vms_cat_snapshot_count(&c, ctl->cat, vms[v].uuid, 0);
				nsnap += c;
			}
		}
		free(vms);
		vms_cat_vdi_list_free(vdis, nvdi);
		vms_json_object_set_string(x, "uuid", srs[i].uuid);
		vms_json_object_set_string(x, "name", srs[i].name);
		vms_json_object_set_string(x, "type", srs[i].type);
		vms_json_object_set(x, "total", num_or_null(sp.total_bytes, 1));
		vms_json_object_set(x, "free", num_or_null(sp.free_bytes, 1));
		vms_json_object_set(x, "used", num_or_null(sp.used_bytes, 1));
		vms_json_object_set_int(x, "vm_count", (int64_t)nvm);
		vms_json_object_set_int(x, "vdi_count", (int64_t)nvdi);
		vms_json_object_set_int(x, "snapshot_count", nsnap);
		if (vms_json_array_append(arr, x) < 0 && rc == 0)
			rc = VMS_ENOMEM;
	}
	if (!only)
		vms_cat_sr_list_free(srs, nsr);
	if (rc < 0) {
		vms_json_free(arr);
		return rc;
	}
	return vms_json_object_set(o, "srs", arr);
}

static int stats_vm(vms_json *o, ctl_req *r, const vms_cat_vm *vm)
{
	int rc;
	ctl_map m;
	vms_snapindex *idx;
	vms_json *disks = vms_json_new_array(), *snaps = vms_json_new_array(), *live = vms_json_new_object();
	uint64_t *ids = NULL;
	sums acc = {0, 0, 0, 1, 1, 1, 0};
	if (!disks || !snaps || !live) {
		vms_json_free(live);
		vms_json_free(disks);
		vms_json_free(snaps);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	if ((rc = ctl_map_vm(&m, r->ctl, vm)) < 0) {
		vms_json_free(disks);
		vms_json_free(snaps);
		vms_json_free(live);
		return rc;
	}
	for (size_t i = 0; i < m.ndisks; i++) {
		vms_json *d = vms_json_new_object();
		if (!d)
			continue;
		vms_json_object_set_string(d, "name", m.disks[i].name);
		vms_json_object_set_string(d, "uuid", m.disks[i].uuid);
		space_fill(d, &acc, m.be, m.h, m.disks[i].ref);
		vms_json_array_append(disks, d);
	}
	/* the live disks together (per VM where the SR cannot tell disks apart) */
	vms_json_object_set(live, "referenced", num_or_null(acc.referenced, acc.known_r));
	vms_json_object_set(live, "unique", num_or_null(acc.unique, acc.known_u));
	vms_json_object_set(live, "written", num_or_null(acc.written, acc.known_w));
	vms_json_object_set_string(live, "granularity", acc.per_vm ? "vm" : "disk");
	if ((rc = ctl_index_get(&idx, r->ctl, vm->uuid, 0)) < 0)
		goto done;
	size_t n = vms_snapindex_count(idx);
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
		char full[VMS_FULLNAME_MAX + 1];
		vms_json *x = vms_json_new_object();
		if (!x || (rc = vms_cat_snapshot_get_rowid(&s, r->ctl->cat, (int64_t)ids[i])) < 0) {
			vms_json_free(x);
			rc = rc < 0 ? rc : vms_error_set(VMS_ENOMEM, "out of memory");
			break;
		}
		ctl_fullname(full, &s);
		vms_json_object_set_string(x, "name", full);
		vms_json_object_set_string(x, "uuid", s.uuid);
		vms_json_object_set_int(x, "time", s.time);
		if ((rc = snapshot_space(x, NULL, r->ctl, m.be, m.h, &s)) == 0)
			rc = vms_json_array_append(snaps, x);
		else
			vms_json_free(x);
	}
	if (rc < 0)
		goto done;
	vms_json_object_set_string(o, "vm", vm->name);
	vms_json_object_set_string(o, "vm_uuid", vm->uuid);
	vms_json_object_set(o, "disks", disks);
	vms_json_object_set(o, "live", live);
	rc = vms_json_object_set(o, "snapshots", snaps);
	disks = snaps = live = NULL;
done:
	free(ids);
	vms_json_free(disks);
	vms_json_free(snaps);
	vms_json_free(live);
	ctl_map_clear(&m);
	return rc;
}

int ctl_op_stats(vms_json **out, ctl_req *r)
{
	int rc;
	const char *srkey = NULL, *vmkey = NULL, *snapkey = NULL;
	vms_json *o = vms_json_new_object();
	if (!o)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if ((rc = ctl_arg_str(&srkey, r, "sr", 0)) < 0 || (rc = ctl_arg_str(&vmkey, r, "vm", 0)) < 0 ||
	    (rc = ctl_arg_str(&snapkey, r, "snapshot", 0)) < 0)
		goto done;
	if (!!srkey + !!vmkey + !!snapkey > 1) {
		rc = vms_error_set(VMS_EINVAL, "stats takes one of sr, vm or snapshot");
		goto done;
	}
	if (vmkey) {
		vms_cat_vm vm;
		if ((rc = ctl_get_vm(&vm, r, vmkey, 0)) == 0)
			rc = stats_vm(o, r, &vm);
	} else if (snapkey) {
		vms_cat_snapshot s;
		vms_cat_vm vm;
		const vms_backend *be;
		vms_sr_handle *h;
		char full[VMS_FULLNAME_MAX + 1];
		vms_json *disks = vms_json_new_array();
		if (!disks) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
		if ((rc = ctl_get_snapshot(&s, NULL, NULL, r, snapkey, NULL, 0)) < 0 ||
		    (rc = vms_cat_vm_get(&vm, r->ctl->cat, s.vm_uuid, 1)) < 0 ||
		    (rc = ctl_sr_backend(&be, &h, r->ctl, vm.sr_uuid)) < 0 ||
		    (rc = snapshot_space(o, disks, r->ctl, be, h, &s)) < 0) {
			vms_json_free(disks);
			goto done;
		}
		ctl_fullname(full, &s);
		vms_json_object_set_string(o, "snapshot", full);
		vms_json_object_set_string(o, "uuid", s.uuid);
		rc = vms_json_object_set(o, "disks", disks);
	} else if (srkey) {
		vms_cat_sr sr;
		if ((rc = ctl_get_sr(&sr, r, srkey)) == 0) {
			rc = stats_srs(o, r->ctl, &sr);
			vms_cat_sr_clear(&sr);
		}
	} else {
		rc = stats_srs(o, r->ctl, NULL);
	}
	if (rc == 0 && vms_error_last_code() == VMS_ENOMEM)
		rc = VMS_ENOMEM;
done:
	if (rc < 0) {
		vms_json_free(o);
		return rc;
	}
	*out = o;
	return 0;
}
