/*
 * catalog.c - vmsnapd's link to the control module: the export source of
 * the catalog's disks ("<vm>/<disk>", "<vm>/<disk>@<snapshot>"), the hooks
 * that make management operations respect disks in use, and the execution
 * of control requests under the daemon's control lock.
 *
 * Hooks (docs/control.md), all called by vms_control_exec() with the
 * control lock held:
 *  - quiesce(vm, hold): holds new writes to the VM's writable exports
 *    (its attached disks, by VDI uuid) and drains the in-flight ones around
 *    a snapshot; other VMs' disks keep going.  The hold lasts as long as
 *    the backend's snapshot call.  If the VM's disks cannot be listed, every
 *    writable export is held instead (safe, only broader).
 *  - disk_in_use(vdi): clients holding the disk open for writing.
 *  - disk_changed(vdi): holds and drains all I/O of the disk's exports;
 *    after the request, outside the control lock, they are reopened (or
 *    fail their I/O when the disk is gone).
 * Requests that change disks under their clients (rollback, delete,
 * resize) also run with every writable export's writes held, so that no
 * write is in flight on the old handle while the backend changes the disk.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"
#include "vmsnap/catalog.h"
#include "vmsnap/control.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

struct vmsd_catalog {
	struct vmsd_daemon *d;
	vms_control *ctl;
	/* the exports a quiesce holds, kept until it is released (control_lock) */
	char **held;
	size_t nheld;
	int held_all;
};

int vmsd_catalog_open(vmsd_catalog **out, struct vmsd_daemon *d, const char *home)
{
	vmsd_catalog *cat = calloc(1, sizeof *cat);
	if (!cat)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	int rc = vms_control_open(&cat->ctl, home);
	if (rc < 0) {
		free(cat);
		return rc;
	}
	cat->d = d;
	*out = cat;
	return 0;
}

vms_control *vmsd_catalog_control(vmsd_catalog *cat)
{
	return cat->ctl;
}

void vmsd_catalog_close(vmsd_catalog *cat)
{
	if (!cat)
		return;
	vms_control_close(cat->ctl);
	vms_cat_strv_free(cat->held, cat->nheld);
	free(cat);
}

static int cat_open(void *ctx, vms_disk **out_disk, const vms_backend **out_be, char **out_key,
                    const char *name, unsigned flags)
{
	vmsd_catalog *cat = ctx;
	/* Export names of the catalog always have a '/' (vm/disk); anything
	 * else belongs to another source. */
	if (!strchr(name, '/'))
		return vms_error_set(VMS_ENOTFOUND, "no export named '%.256s'", name);
	pthread_mutex_lock(&cat->d->control_lock);
	int rc = vms_control_disk_open(out_disk, out_be, out_key, cat->ctl, name, flags);
	pthread_mutex_unlock(&cat->d->control_lock);
	return rc;
}

static int cat_list(void *ctx, vms_json *arr)
{
	vmsd_catalog *cat = ctx;
	char *text = NULL;
	vms_json *list = NULL;
	pthread_mutex_lock(&cat->d->control_lock);
	int rc = vms_control_list_exports(&text, cat->ctl);
	pthread_mutex_unlock(&cat->d->control_lock);
	if (rc < 0)
		return rc;
	if ((rc = vms_json_parse(&list, text, strlen(text))) < 0)
		goto done;
	if (vms_json_type_of(list) != VMS_JSON_ARRAY) {
		rc = vms_error_set(VMS_EIO, "export list is not a JSON array");
		goto done;
	}
	for (size_t i = 0; i < vms_json_array_len(list); i++) {
		vms_json *o = vms_json_copy(vms_json_array_get(list, i));
		if (!o || (rc = vms_json_array_append(arr, o)) < 0) {
			vms_json_free(o);
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
	}
	rc = 0;
done:
	vms_json_free(list);
	free(text);
	return rc;
}

vmsd_source vmsd_catalog_source(vmsd_catalog *cat)
{
	/* Disks are 512-byte addressed (pool.h: VMS_SECTOR) whatever the backend. */
	vmsd_source s = {.what = "catalog", .open = cat_open, .list = cat_list, .ctx = cat, .min_block = 512};
	return s;
}

static int hook_quiesce(void *ctx, const char *vm_uuid, int hold)
{
	vmsd_catalog *cat = ctx;
	int rc;
	if (hold) {
		vms_cat_strv_free(cat->held, cat->nheld);
		cat->held = NULL;
		cat->nheld = 0;
		cat->held_all = vms_control_vm_disk_uuids(&cat->held, &cat->nheld, cat->ctl, vm_uuid) < 0;
		if (cat->held_all)
			vmsd_warn("quiesce %s: cannot list its disks (%s); holding every writable export",
			          vm_uuid, vms_error_last());
	}
	rc = cat->held_all ? vmsd_exports_quiesce(cat->d->xs, NULL, 0, hold)
	                   : vmsd_exports_quiesce(cat->d->xs, (const char *const *)cat->held, cat->nheld, hold);
	vmsd_debug("quiesce %s: %s writes of %d open export(s)%s", vm_uuid, hold ? "held" : "released",
	           rc, cat->held_all ? " (every writable export)" : "");
	if (rc > 0)
		rc = 0;
	if (!hold) {
		vms_cat_strv_free(cat->held, cat->nheld);
		cat->held = NULL;
		cat->nheld = 0;
		cat->held_all = 0;
	}
	return rc;
}

static int hook_in_use(void *ctx, const char *vdi_uuid)
{
	vmsd_catalog *cat = ctx;
	return vmsd_exports_writers(cat->d->xs, vdi_uuid);
}

static void hook_changed(void *ctx, const char *vdi_uuid)
{
	vmsd_catalog *cat = ctx;
	vmsd_exports_changed(cat->d->xs, vdi_uuid);
}

static void sr_open_failed(void *ctx, const char *sr_name, const char *message)
{
	(void)ctx;
	vmsd_warn("SR %s: not opened at start (%s); it is tried again at its first use", sr_name, message);
}

void vmsd_catalog_open_srs(vmsd_catalog *cat)
{
	pthread_mutex_lock(&cat->d->control_lock);
	int n = vms_control_sr_open_all(cat->ctl, sr_open_failed, NULL);
	pthread_mutex_unlock(&cat->d->control_lock);
	if (n < 0)
		vmsd_warn("cannot list the SRs to open at start: %s", vms_error_last());
	else
		vmsd_info("%d SR(s) opened", n);
}

void vmsd_catalog_hooks(vmsd_catalog *cat)
{
	vms_control_hooks h = {
		.size = sizeof h,
		.quiesce = hook_quiesce,
		.disk_in_use = hook_in_use,
		.disk_changed = hook_changed,
	};
	vms_control_set_hooks(cat->ctl, &h, cat);
}

/* Ops that may change a disk under its clients (docs/control.md). */
static int changes_disks(const char *request)
{
	static const char *const ops[] = {"vm.rollback", "snapshot.rollback", "vdi.delete",
	                                  "vm.delete", "vdi.resize"};
	vms_json *j = NULL;
	int yes = 0;
	if (vms_json_parse(&j, request, strlen(request)) < 0)
		return 0;
	const char *op = vms_json_string(vms_json_object_get(j, "op"));
	for (size_t i = 0; op && i < sizeof ops / sizeof ops[0]; i++)
		if (strcmp(op, ops[i]) == 0)
			yes = 1;
	vms_json_free(j);
	return yes;
}

int vmsd_catalog_exec(vmsd_catalog *cat, char **out, const char *request)
{
	int hold = changes_disks(request);
	pthread_mutex_lock(&cat->d->control_lock);
	if (hold)
		vmsd_exports_quiesce(cat->d->xs, NULL, 0, 1);
	int rc = vms_control_exec(out, cat->ctl, request);
	if (hold)
		vmsd_exports_quiesce(cat->d->xs, NULL, 0, 0);
	pthread_mutex_unlock(&cat->d->control_lock);
	/* Exports whose disk changed reopen now; their I/O was held. */
	vmsd_exports_reopen(cat->d->xs);
	return rc;
}
