/*
 * vmsnap/catalog.h - the catalog: the paper's storage objects and their
 * mappings (section 3.2.1), kept in SQLite.
 *
 * Objects, each keyed by a v4 UUID and carrying a user name:
 *   sr        a storage repository: a type (the backend) and a location
 *   vm        a virtual machine; lives in one SR; may be a clone of a snapshot
 *   vdi       a virtual disk in an SR, with the backend's opaque ref
 *   vbd       links a VDI to a VM at a device position (<VM,VBD,VDI>)
 *   snapshot  a VM-level snapshot: one user name + one time tag, covering
 *             every disk of the VM (snapshot_disk rows, one per VDI, each
 *             with the backend's ref of that disk's snapshot)
 * Relations for the delete constraints (section 3.2.4): a clone VM's
 * `parent` is the snapshot it came from; a snapshot's children are those
 * clones.  `is_deleted` marks an object a user deleted that is kept until
 * its last child is gone.
 *
 * Every object row also has a `state` so that catalog and SR stay consistent
 * across crashes (docs/design/catalog.md): rows are written 'creating'
 * before the backend acts and 'ready' after; 'deleting' before a backend
 * delete and removed after.
 *
 * SQLite runs in WAL mode with foreign keys on and a busy timeout, so the
 * CLI and the daemon can share one catalog.  The schema is versioned
 * (PRAGMA user_version) and migrated forward on open; a catalog newer than
 * this program is refused.
 *
 * Functions return 0 (or a count) or a negative vms_error_code with a
 * message.  Record strings are fixed buffers or malloc'd (ref, location,
 * options): release records with the matching _free/_clear function.
 * A vms_catalog handle is used by one thread at a time.
 */
#ifndef VMSNAP_CATALOG_H
#define VMSNAP_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "vmsnap/naming.h"
#include "vmsnap/uuid.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_CATALOG_SCHEMA_VERSION 3
#define VMS_HOLD_MAX 64          /* characters of a snapshot hold tag */
#define VMS_TYPE_MAX 31

typedef struct vms_catalog vms_catalog;

typedef enum vms_obj_state {
	VMS_STATE_CREATING = 0,   /* backend object may or may not exist */
	VMS_STATE_READY = 1,
	VMS_STATE_DELETING = 2    /* backend delete started */
} vms_obj_state;

const char *vms_obj_state_name(int state);   /* "creating", "ready", "deleting" */

typedef struct vms_cat_sr {
	char uuid[VMS_UUID_BUF];
	char name[VMS_NAME_MAX + 1];
	char type[VMS_TYPE_MAX + 1];
	char *location;
	char *options;          /* may be NULL */
	uint64_t size;          /* requested size (0 = backend default) */
	int state;
	int64_t created;
} vms_cat_sr;

typedef struct vms_cat_vm {
	char uuid[VMS_UUID_BUF];
	char name[VMS_NAME_MAX + 1];
	char sr_uuid[VMS_UUID_BUF];
	char parent_snapshot[VMS_UUID_BUF];  /* "" unless a clone */
	int is_deleted;
	int state;
	int64_t created;
	uint64_t next_seq;      /* next snapshot sequence number */
	char pending_rollback[VMS_UUID_BUF];  /* (schema 3) snapshot a rollback in progress
	                                       * targets; "" when none */
} vms_cat_vm;

typedef struct vms_cat_vdi {
	char uuid[VMS_UUID_BUF];
	char name[VMS_NAME_MAX + 1];
	char sr_uuid[VMS_UUID_BUF];
	char vm_uuid[VMS_UUID_BUF];   /* through the VBD; "" if detached */
	char vbd_uuid[VMS_UUID_BUF];
	uint32_t device;              /* VBD device position */
	uint64_t size;
	char *ref;                    /* backend ref; NULL while creating */
	int is_deleted;               /* deleted, kept for snapshots that cover it */
	int state;
	int64_t created;
} vms_cat_vdi;

typedef struct vms_cat_snapshot {
	char uuid[VMS_UUID_BUF];
	char vm_uuid[VMS_UUID_BUF];
	char name[VMS_NAME_MAX + 1];  /* user name; full name = name + "_" + tag(time) */
	int64_t time;                 /* the time tag, UTC seconds */
	uint64_t seq;                 /* creation order within the VM */
	int is_deleted;
	int state;
	int64_t created;              /* wall clock at creation (== time unless imported) */
	int64_t rowid;
	char hold[VMS_HOLD_MAX + 1];  /* "" = not held; else the hold tag (schema 2) */
} vms_cat_snapshot;

typedef struct vms_cat_snapdisk {
	char snapshot_uuid[VMS_UUID_BUF];
	char vdi_uuid[VMS_UUID_BUF];
	char disk_name[VMS_NAME_MAX + 1];
	uint32_t device;
	uint64_t size;
	char *ref;
} vms_cat_snapdisk;

/* ---- open, transactions ------------------------------------------------ */

/* Open or create the catalog database at `path`. */
int vms_catalog_open(vms_catalog **out, const char *path);
void vms_catalog_close(vms_catalog *cat);

/* Write transactions (BEGIN IMMEDIATE: writers queue on the busy timeout
 * instead of failing half-way).  Nesting is not supported. */
int vms_catalog_begin(vms_catalog *cat);
int vms_catalog_commit(vms_catalog *cat);
void vms_catalog_rollback(vms_catalog *cat);

/* Counter that changes whenever another connection committed (PRAGMA
 * data_version), so callers can drop caches. */
int64_t vms_catalog_data_version(vms_catalog *cat);

/* Run SQLite's integrity check; a short report in *out (malloc'd). */
int vms_catalog_integrity(char **out, vms_catalog *cat);

int vms_catalog_schema_version(vms_catalog *cat);

/* ---- SR ---------------------------------------------------------------- */
int vms_cat_sr_insert(vms_catalog *cat, const vms_cat_sr *sr);
/* By UUID (exact) or by name. VMS_ENOTFOUND with a message. */
int vms_cat_sr_get(vms_cat_sr *out, vms_catalog *cat, const char *uuid_or_name);
int vms_cat_sr_list(vms_cat_sr **out, size_t *n, vms_catalog *cat);
int vms_cat_sr_set_state(vms_catalog *cat, const char *uuid, int state);
int vms_cat_sr_delete(vms_catalog *cat, const char *uuid);
void vms_cat_sr_clear(vms_cat_sr *sr);
void vms_cat_sr_list_free(vms_cat_sr *v, size_t n);

/* ---- VM ---------------------------------------------------------------- */
int vms_cat_vm_insert(vms_catalog *cat, const vms_cat_vm *vm);
/* Live (not is_deleted) VM by UUID or name; with include_deleted also
 * deleted ones by UUID. */
int vms_cat_vm_get(vms_cat_vm *out, vms_catalog *cat, const char *uuid_or_name, int include_deleted);
/* sr_uuid NULL = all SRs. */
int vms_cat_vm_list(vms_cat_vm **out, size_t *n, vms_catalog *cat, const char *sr_uuid,
                    int include_deleted);
/* Clones of a snapshot (VMs whose parent is it), deleted ones included. */
int vms_cat_vm_children(vms_cat_vm **out, size_t *n, vms_catalog *cat, const char *snapshot_uuid);
int vms_cat_vm_set_state(vms_catalog *cat, const char *uuid, int state);
int vms_cat_vm_set_deleted(vms_catalog *cat, const char *uuid);
/* Record (snapshot_uuid) or clear (NULL) the intent of a rollback of the
 * VM's disks, written before the backend acts and cleared after. */
int vms_cat_vm_set_pending_rollback(vms_catalog *cat, const char *uuid, const char *snapshot_uuid);
/* Allocate the next snapshot sequence number of a VM. */
int vms_cat_vm_next_seq(uint64_t *out, vms_catalog *cat, const char *uuid);
/* Remove a VM row (and the policy of that VM, if any). */
int vms_cat_vm_delete(vms_catalog *cat, const char *uuid);
/* Number of VMs cloned from any snapshot of this VM (deleted clones only
 * with include_deleted). */
int vms_cat_vm_clone_count(int64_t *out, vms_catalog *cat, const char *vm_uuid, int include_deleted);

/* ---- VDI and VBD ------------------------------------------------------- */
/* Insert a VDI and, if vm_uuid is set, its VBD (vbd_uuid, device). */
int vms_cat_vdi_insert(vms_catalog *cat, const vms_cat_vdi *vdi);
int vms_cat_vdi_get(vms_cat_vdi *out, vms_catalog *cat, const char *uuid);
/* A VM's disk by name (not deleted). */
int vms_cat_vdi_get_by_name(vms_cat_vdi *out, vms_catalog *cat, const char *vm_uuid, const char *name);
/* The VM's attached disks in device order (vm_uuid set), or an SR's disks
 * (sr_uuid set), or all; deleted ones only with include_deleted. */
int vms_cat_vdi_list(vms_cat_vdi **out, size_t *n, vms_catalog *cat, const char *vm_uuid,
                     const char *sr_uuid, int include_deleted);
int vms_cat_vdi_set_ref(vms_catalog *cat, const char *uuid, const char *ref, int state);
int vms_cat_vdi_set_state(vms_catalog *cat, const char *uuid, int state);
int vms_cat_vdi_set_size(vms_catalog *cat, const char *uuid, uint64_t size);
/* Detach (drop the VBD) and mark deleted: kept while snapshots cover it. */
int vms_cat_vdi_set_deleted(vms_catalog *cat, const char *uuid);
int vms_cat_vdi_delete(vms_catalog *cat, const char *uuid);
/* Number of snapshot_disk rows that refer to the VDI. */
int64_t vms_cat_vdi_snapshot_refs(vms_catalog *cat, const char *uuid);
void vms_cat_vdi_clear(vms_cat_vdi *v);
void vms_cat_vdi_list_free(vms_cat_vdi *v, size_t n);

/* ---- snapshots --------------------------------------------------------- */
/* Insert the snapshot and its disks (refs may be NULL while creating). */
int vms_cat_snapshot_insert(vms_catalog *cat, const vms_cat_snapshot *s, const vms_cat_snapdisk *disks,
                            size_t n);
int vms_cat_snapshot_get(vms_cat_snapshot *out, vms_catalog *cat, const char *uuid);
int vms_cat_snapshot_get_rowid(vms_cat_snapshot *out, vms_catalog *cat, int64_t rowid);
/* A VM's snapshots (unordered: the snapindex sorts); deleted ones only
 * with include_deleted.  Large: 1M rows are fine. */
int vms_cat_snapshot_list(vms_cat_snapshot **out, size_t *n, vms_catalog *cat, const char *vm_uuid,
                          int include_deleted);
int vms_cat_snapshot_count(int64_t *out, vms_catalog *cat, const char *vm_uuid, int include_deleted);
int vms_cat_snapshot_disks(vms_cat_snapdisk **out, size_t *n, vms_catalog *cat, const char *snapshot_uuid);
int vms_cat_snapshot_set_disk_ref(vms_catalog *cat, const char *snapshot_uuid, const char *vdi_uuid,
                                  const char *ref);
int vms_cat_snapshot_set_state(vms_catalog *cat, const char *uuid, int state);
int vms_cat_snapshot_set_deleted(vms_catalog *cat, const char *uuid);
int vms_cat_snapshot_delete(vms_catalog *cat, const char *uuid);
void vms_cat_snapdisk_list_free(vms_cat_snapdisk *v, size_t n);

/* Rows not in state 'ready' (for reconciliation on open).  kind is "sr",
 * "vm", "vdi" or "snapshot"; uuids malloc'd array of strings. */
int vms_cat_unsettled(char ***out_uuids, int **out_states, size_t *n, vms_catalog *cat, const char *kind);
void vms_cat_strv_free(char **v, size_t n);

/* A note that reconciliation rolled back an interrupted create whose
 * backend object may remain (reported by `check`). */
int vms_cat_orphan_note(vms_catalog *cat, const char *sr_uuid, const char *kind, const char *uuid,
                        const char *detail);
/* Orphan notes as JSON-ready strings "kind uuid in SR: detail" (malloc'd). */
int vms_cat_orphan_list(char ***out, size_t *n, vms_catalog *cat);
/* Orphan notes one by one (check --repair settles them against the SR). */
typedef struct vms_cat_orphan {
	int64_t id;
	char sr_uuid[VMS_UUID_BUF];   /* "" when unknown */
	char kind[16];                /* "sr", "vm", "vdi", "snapshot" */
	char uuid[VMS_UUID_BUF];      /* the key the backend object would carry */
} vms_cat_orphan;
int vms_cat_orphan_notes(vms_cat_orphan **out, size_t *n, vms_catalog *cat);
/* Remove a settled note (ENOTFOUND when there is none with that id). */
int vms_cat_orphan_forget(vms_catalog *cat, int64_t id);

/* ---- holds (schema 2) ---------------------------------------------------
 * A held snapshot is kept: the control module refuses to delete it
 * (VMS_EBUSY naming the tag) and a retention policy skips it.  The tag is a
 * user name ([A-Za-z0-9_], 1..VMS_HOLD_MAX). */
int vms_cat_snapshot_set_hold(vms_catalog *cat, const char *uuid, const char *tag);
int vms_cat_snapshot_clear_hold(vms_catalog *cat, const char *uuid);

/* ---- policies (schema 2) ------------------------------------------------
 * One retention/schedule policy per SR or VM, stored as an opaque spec
 * string (the policy module owns its syntax).  target_kind is "sr" or "vm". */
#define VMS_POLICY_KIND_MAX 7
typedef struct vms_cat_policy {
	char target_uuid[VMS_UUID_BUF];
	char target_kind[VMS_POLICY_KIND_MAX + 1];
	char *spec;             /* malloc'd */
	int64_t updated;        /* seconds since the epoch, UTC */
} vms_cat_policy;

/* Insert or replace the policy of a target. */
int vms_cat_policy_set(vms_catalog *cat, const char *target_uuid, const char *target_kind,
                       const char *spec, int64_t updated);
/* VMS_ENOTFOUND when the target has no policy. */
int vms_cat_policy_get(vms_cat_policy *out, vms_catalog *cat, const char *target_uuid);
/* Every policy, ordered by kind then target uuid. */
int vms_cat_policy_list(vms_cat_policy **out, size_t *n, vms_catalog *cat);
/* VMS_ENOTFOUND when the target has no policy. */
int vms_cat_policy_delete(vms_catalog *cat, const char *target_uuid);
void vms_cat_policy_clear(vms_cat_policy *p);
void vms_cat_policy_list_free(vms_cat_policy *v, size_t n);

#ifdef __cplusplus
}
#endif
#endif
