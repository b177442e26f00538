/*
 * control_private.h - the inside of the control module (the paper's
 * section 3.3), shared by its files:
 *
 *   control.c     open/close, the JSON envelope, op dispatch and argument
 *                 checking, the SR handle cache (adapter), the per-VM
 *                 snapshot index cache (retrieval), hooks and clock
 *   select.c      selectors: names, UUIDs, "vm/disk", "vm@snapshot",
 *                 latest~N, before:T, after:T (through the snapshot index)
 *   map.c         type analysis (SR type from the catalog) and mapping
 *                 (VM -> VBD -> VDI -> SR location) into a ctl_map
 *   records.c     JSON records of SRs, VMs, VDIs, snapshots
 *   reclaim.c     delete constraints: isDeleted, children, upward cascade,
 *                 dry runs with bytes freed
 *   reconcile.c   settling rows left 'creating'/'deleting' by a crash
 *   ops_*.c       the operations of docs/control.md
 *   exports.c     vms_control_disk_open / vms_control_list_exports
 *
 * The control code never tests an SR type: it finds the backend table with
 * vms_backend_find(sr.type) (ctl_sr_backend) and checks capabilities bits.
 * Backends only ever receive catalog UUIDs and the refs they handed out.
 */
#ifndef VMS_CONTROL_PRIVATE_H
#define VMS_CONTROL_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "vmsnap/backend.h"
#include "vmsnap/catalog.h"
#include "vmsnap/control.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"
#include "vmsnap/naming.h"
#include "vmsnap/snapindex.h"
#include "vmsnap/uuid.h"

/* An opened SR: its backend table (chosen by type) and handle. */
typedef struct ctl_sr {
	char uuid[VMS_UUID_BUF];
	const vms_backend *be;
	vms_sr_handle *h;
} ctl_sr;

/* A cached snapshot index of one VM (all = deleted snapshots included). */
typedef struct ctl_index {
	char vm_uuid[VMS_UUID_BUF];
	int all;
	vms_snapindex *idx;
	uint64_t last_use;
} ctl_index;

#define CTL_INDEX_SLOTS 8

struct vms_control {
	vms_catalog *cat;
	char *home;
	vms_control_hooks hooks;
	int have_hooks;
	void *hooks_ctx;
	ctl_sr *srs;
	size_t nsrs;
	ctl_index index[CTL_INDEX_SLOTS];
	uint64_t use_clock;
	int64_t data_version;   /* catalog data_version the caches were built at */
	int64_t (*clock)(void *ctx);
	void *clock_ctx;
	int lock_fd;            /* <home>/control.lock, held shared while open */
	vms_control_io_fn io_fn;  /* live I/O figures from a server (ops_policy.c) */
	void *io_ctx;
};

/* One request being executed. */
typedef struct ctl_req {
	vms_control *ctl;
	const vms_json *args;   /* the args object, or NULL */
	vms_json *extra;        /* extra members of the error object, or NULL */
} ctl_req;

typedef int (*ctl_op_fn)(vms_json **result, ctl_req *r);

/* ---- control.c ---------------------------------------------------------- */
int64_t ctl_now(vms_control *ctl);
/* Drop caches when another connection changed the catalog (each request). */
void ctl_sync(vms_control *ctl);
/* The backend table and open handle of an SR (type analysis + adapter). */
int ctl_sr_backend(const vms_backend **be, vms_sr_handle **h, vms_control *ctl, const char *sr_uuid);
/* The same for looking only (check without repair, a dry run): the cached
 * handle when the SR is open already, else a read-only one that writes
 * nothing to the SR (vms_backend.sr_open_readonly).  *owned = 1 when the
 * caller must close that handle with be->sr_close (it is not cached: a later
 * ctl_sr_backend opens the SR for writing). */
int ctl_sr_backend_readonly(const vms_backend **be, vms_sr_handle **h, int *owned, vms_control *ctl,
                            const char *sr_uuid);
/* Close and forget an SR's handle (before sr.destroy). */
void ctl_sr_forget(vms_control *ctl, const char *sr_uuid);
/* VMS_ENOTSUP naming the capability when the backend lacks it. */
int ctl_need_cap(const vms_backend *be, uint64_t cap, const char *sr_name);
const char *ctl_cap_name(uint64_t cap);
/* The time-sorted index of a VM's ready snapshots (cached; owned by ctl). */
int ctl_index_get(vms_snapindex **out, vms_control *ctl, const char *vm_uuid, int all);
void ctl_index_drop(vms_control *ctl, const char *vm_uuid);
void ctl_index_drop_all(vms_control *ctl);
/* A new ready snapshot: added to the cached indexes of its VM. */
void ctl_index_added(vms_control *ctl, const vms_cat_snapshot *s);

/* Arguments */
int ctl_arg_str(const char **out, ctl_req *r, const char *key, int required);
int ctl_arg_bool(ctl_req *r, const char *key, int *out);
int ctl_arg_size(uint64_t *out, ctl_req *r, const char *key, int required);
/* Transactions with the error path folded in. */
int ctl_begin(vms_control *ctl);
int ctl_commit(vms_control *ctl);

/* Extra error fields: append {"kind","uuid","name"} to r->extra[key]. */
int ctl_extra_add(ctl_req *r, const char *key, const char *kind, const char *uuid, const char *name);

/* Hooks */
int ctl_disk_in_use(vms_control *ctl, const char *vdi_uuid);
void ctl_disk_changed(vms_control *ctl, const char *vdi_uuid);
/* BUSY with "busy":[...] unless force when any of the disks is open for writing. */
int ctl_check_busy(ctl_req *r, const vms_cat_vdi *disks, size_t n, int force, const char *what);

/* ---- select.c ------------------------------------------------------------ */
/* A key that must be a UUID (canonicalised into out) or a valid name. */
int ctl_key_check(char out[VMS_NAME_MAX + VMS_UUID_BUF], const char *key, const char *what);
int ctl_get_sr(vms_cat_sr *out, ctl_req *r, const char *key);
int ctl_get_vm(vms_cat_vm *out, ctl_req *r, const char *key, int all);
/* "vm/disk" or a VDI UUID. */
int ctl_get_vdi(vms_cat_vdi *out, ctl_req *r, const char *key, int all);
/* A snapshot selector; with vm set, selectors without "vm@" apply to it.
 * rank/count (may be NULL): position in the VM's index. */
int ctl_get_snapshot(vms_cat_snapshot *out, int64_t *rank, size_t *count, ctl_req *r,
                     const char *sel, const vms_cat_vm *vm, int all);

/* ---- map.c --------------------------------------------------------------- */
typedef struct ctl_map {
	vms_cat_vm vm;
	vms_cat_sr sr;
	const vms_backend *be;
	vms_sr_handle *h;
	vms_cat_vdi *disks;   /* attached, live, in device order */
	size_t ndisks;
} ctl_map;

int ctl_map_vm(ctl_map *m, vms_control *ctl, const vms_cat_vm *vm);
void ctl_map_clear(ctl_map *m);

/* ---- records.c ----------------------------------------------------------- */
int ctl_set_time(vms_json *o, const char *prefix, int64_t t);
vms_json *ctl_ref_obj(const char *kind, const char *uuid, const char *name);
int ctl_caps_json(vms_json **out, uint64_t caps);
int ctl_rec_sr(vms_json **out, vms_control *ctl, const vms_cat_sr *sr, int with_space);
int ctl_rec_vm(vms_json **out, vms_control *ctl, const vms_cat_vm *vm);
int ctl_rec_vdi(vms_json **out, vms_control *ctl, const vms_cat_vdi *vdi);
int ctl_rec_snapshot(vms_json **out, vms_control *ctl, const vms_cat_snapshot *s);
int ctl_fullname(char out[VMS_FULLNAME_MAX + 1], const vms_cat_snapshot *s);
/* Name of a VM by uuid into out ("" if gone). */
void ctl_vm_name(char out[VMS_NAME_MAX + 1], vms_control *ctl, const char *vm_uuid);

/* ---- reclaim.c ----------------------------------------------------------- */
typedef struct ctl_del {
	ctl_req *r;
	int dry_run;
	vms_json *deleted, *deferred;
	uint64_t bytes;
	int bytes_known;
	char **gone;          /* uuids reclaimed (or that would be, in a dry run) */
	size_t ngone, capgone;
} ctl_del;

int ctl_del_init(ctl_del *d, ctl_req *r, int dry_run);
void ctl_del_clear(ctl_del *d);
/* The Deletion result object (consumes nothing). */
int ctl_del_result(vms_json **out, ctl_del *d);
/* Children (clones) of a snapshot that are not gone. */
int ctl_live_children(vms_cat_vm **out, size_t *n, ctl_del *d, const char *snapshot_uuid);
/* Reclaim a snapshot now (backend + catalog), then cascade upwards. */
int ctl_reclaim_snapshot(ctl_del *d, const vms_cat_snapshot *s);
/* Mark a snapshot is_deleted (kept for its clones). */
int ctl_defer_snapshot(ctl_del *d, const vms_cat_snapshot *s);
/* Delete a VM's attached disks now (their VDI rows stay while snapshots cover them). */
int ctl_reclaim_vm_disks(ctl_del *d, const vms_cat_vm *vm);
int ctl_reclaim_vdi(ctl_del *d, const vms_cat_vdi *vdi);
/* Remove a VM (no snapshots left) or mark it deferred, then cascade. */
int ctl_reclaim_vm(ctl_del *d, const vms_cat_vm *vm);
int ctl_defer_vm(ctl_del *d, const vms_cat_vm *vm);
/* The whole VM delete once its checks passed (op and reconcile): clone-free
 * snapshots and the disks go now, snapshots with clones are deferred, the
 * VM is reclaimed (cascading) or deferred. */
int ctl_vm_delete_exec(ctl_del *d, const vms_cat_vm *vm);
/* Finish the backend part of a deletion (used by reconcile too): NOTFOUND is success. */
int ctl_backend_snapshot_delete(vms_control *ctl, const vms_cat_snapshot *s);
int ctl_backend_disk_delete(vms_control *ctl, const vms_cat_vdi *vdi);
/* Drop VDI rows that are deleted and no snapshot covers any more. */
int ctl_gc_vdis(vms_control *ctl, const char *vm_uuid);
/* Cascade from a VM that was just removed. */
int ctl_cascade_from(ctl_del *d, const char *parent_snapshot);

/* ---- reconcile.c --------------------------------------------------------- */
int ctl_reconcile(vms_control *ctl);

/* ---- repair.c ------------------------------------------------------------ */
/* Compare an SR's backend objects with the catalog both ways into the SR's
 * check object o ("missing", "orphans", with repair "repairs" and
 * "remaining"); *ok = 0 when problems are (still) there. */
int ctl_check_sr_catalog(vms_json *o, int *ok, ctl_req *r, const vms_cat_sr *sr, const vms_backend *be,
                         vms_sr_handle *h, int repair, int dry_run);

/* ---- ops ----------------------------------------------------------------- */
int ctl_op_sr_create(vms_json **out, ctl_req *r);
int ctl_op_sr_list(vms_json **out, ctl_req *r);
int ctl_op_sr_show(vms_json **out, ctl_req *r);
int ctl_op_sr_destroy(vms_json **out, ctl_req *r);
int ctl_op_vm_create(vms_json **out, ctl_req *r);
int ctl_op_vm_list(vms_json **out, ctl_req *r);
int ctl_op_vm_show(vms_json **out, ctl_req *r);
int ctl_op_vm_delete(vms_json **out, ctl_req *r);
int ctl_op_vm_clone(vms_json **out, ctl_req *r);
int ctl_op_vm_rollback(vms_json **out, ctl_req *r);
int ctl_op_vm_tree(vms_json **out, ctl_req *r);
int ctl_op_vdi_create(vms_json **out, ctl_req *r);
int ctl_op_vdi_list(vms_json **out, ctl_req *r);
int ctl_op_vdi_show(vms_json **out, ctl_req *r);
int ctl_op_vdi_delete(vms_json **out, ctl_req *r);
int ctl_op_vdi_resize(vms_json **out, ctl_req *r);
int ctl_op_snapshot_create(vms_json **out, ctl_req *r);
int ctl_op_snapshot_list(vms_json **out, ctl_req *r);
int ctl_op_snapshot_show(vms_json **out, ctl_req *r);
int ctl_op_snapshot_find(vms_json **out, ctl_req *r);
int ctl_op_snapshot_delete(vms_json **out, ctl_req *r);
int ctl_op_snapshot_rollback(vms_json **out, ctl_req *r);
int ctl_op_export_list(vms_json **out, ctl_req *r);
int ctl_op_check(vms_json **out, ctl_req *r);
int ctl_op_stats(vms_json **out, ctl_req *r);

/* Rollback shared by vm.rollback and snapshot.rollback. */
int ctl_rollback(vms_json **out, ctl_req *r, const vms_cat_vm *vm, const vms_cat_snapshot *s,
                 int force, int dry_run);
/* Create a disk row + backend disk for a VM (vm.create, vdi.create, clone uses its own). */
int ctl_disk_create(vms_cat_vdi *out, ctl_req *r, const ctl_map *m, const char *name, uint64_t size,
                    uint32_t device);

/* ---- ops_policy.c, ops_import.c ------------------------------------------- */
/* Run an op as a nested request (extra error members dropped). */
int ctl_sub_op(vms_json **out, vms_control *ctl, ctl_op_fn fn, vms_json *args);
int ctl_op_policy_set(vms_json **out, ctl_req *r);
int ctl_op_policy_show(vms_json **out, ctl_req *r);
int ctl_op_policy_list(vms_json **out, ctl_req *r);
int ctl_op_policy_delete(vms_json **out, ctl_req *r);
int ctl_op_policy_prune(vms_json **out, ctl_req *r);
int ctl_op_policy_run(vms_json **out, ctl_req *r);
int ctl_op_snapshot_hold(vms_json **out, ctl_req *r);
int ctl_op_snapshot_release(vms_json **out, ctl_req *r);
int ctl_op_vm_report(vms_json **out, ctl_req *r);
int ctl_op_stats_io(vms_json **out, ctl_req *r);
int ctl_op_vdi_import(vms_json **out, ctl_req *r);
int ctl_op_vdi_export(vms_json **out, ctl_req *r);
/* The import record of a disk (*out NULL when it was not imported). */
int ctl_import_record_get(vms_json **out, vms_control *ctl, const char *vdi_uuid);

#endif
