/*
 * export.h - the exports vmsnapd serves: opened disks shared by every
 * connection that uses them, with an I/O gate for snapshots and rollbacks.
 *
 * An export is a vms_disk opened through a source (the catalog, or a raw
 * file given on the command line for debugging and benchmarks).  Every
 * connection that selects the same writable disk shares one export and one
 * vms_disk handle (found by the disk's VDI uuid, whatever name the client
 * used), so a flush on one connection covers the writes of all of them:
 * that is what makes NBD_FLAG_CAN_MULTI_CONN safe.
 *
 * The gate: every I/O enters the export (vmsd_export_enter) and leaves it.
 * A quiesce holds new writes and waits for in-flight ones to drain; a
 * change of the disk under the export (rollback) holds all I/O, drains it,
 * and keeps it held until the export has been reopened.
 *
 * Lock order: the daemon's control lock (control.c), then
 * vmsd_exports.lock, then vmsd_export.lock.  A source's open() may take
 * the control lock, so it is never called with either export lock held.
 */
#ifndef VMSD_EXPORT_H
#define VMSD_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "vmsnap/backend.h"
#include "vmsnap/json.h"

/* Where exports come from. */
typedef struct vmsd_source {
	const char *what; /* for log lines: "catalog", "raw" */
	/* Open export `name`.  Returns 0, VMS_ENOTFOUND when this source does
	 * not know the name (the next source is asked), or another error.
	 * *out_key identifies the underlying disk (malloc'd): exports with the
	 * same key and writable share one handle. */
	int (*open)(void *ctx, vms_disk **out_disk, const vms_backend **out_be, char **out_key,
	            const char *name, unsigned flags);
	/* Append {"name","description","size","readonly"} objects to `arr`. */
	int (*list)(void *ctx, vms_json *arr);
	/* Optional: nonzero when export `name` of this source is read-only
	 * whatever its name says (names with '@' always are). */
	int (*is_readonly)(void *ctx, const char *name);
	void *ctx;
	/* Minimum block size of its disks (power of two; 1 = byte-addressed),
	 * advertised to clients and enforced on every request. */
	unsigned min_block;
} vmsd_source;

typedef struct vmsd_exports vmsd_exports;
typedef struct vmsd_export vmsd_export;

/* Public view of an export, read-only after open. */
struct vmsd_export_info {
	const char *name;
	const vms_backend *be;
	uint64_t size;
	int readonly;
	int can_trim;
	int can_zero;
	int can_block_status;
	unsigned min_block;
};

int vmsd_exports_new(vmsd_exports **out, const vmsd_source *sources, size_t nsources,
                     int force_readonly);
/* Close every export (flushing writable ones).  Connections must be gone. */
void vmsd_exports_free(vmsd_exports *xs);

/* Open (or share) export `name`.  A name with '@' (a snapshot) is always
 * read-only.  `writer` counts the caller as a client holding the disk open
 * for writing (when the export is writable).  *out is released with
 * vmsd_export_release(e, writer). */
int vmsd_export_open(vmsd_export **out, vmsd_exports *xs, const char *name, int writer);
void vmsd_export_release(vmsd_export *e, int writer);
const struct vmsd_export_info *vmsd_export_info(const vmsd_export *e);

/* Enter the gate for one I/O (write != 0: it modifies the disk or is a
 * flush).  Returns the disk to use, or NULL when the export is gone (the
 * message says why).  Every successful enter is paired with a leave. */
vms_disk *vmsd_export_enter(vmsd_export *e, int write);
void vmsd_export_leave(vmsd_export *e, int write);
/* Note that a write happened, so the last release flushes. */
void vmsd_export_dirty(vmsd_export *e);

/* Every export of every source, as a JSON array (caller frees). */
int vmsd_exports_list(vms_json **out, vmsd_exports *xs);

/* ---- control hooks (see vms_control_hooks) ---- */
/* hold=1: hold new writes to the exports of `keys` (NULL: every writable
 * export) and wait until in-flight writes have drained; hold=0 undoes.
 * Returns the number of open writable exports it held (or released). */
int vmsd_exports_quiesce(vmsd_exports *xs, const char *const *keys, size_t nkeys, int hold);
/* Number of clients holding disk `key` open for writing. */
int vmsd_exports_writers(vmsd_exports *xs, const char *key);
/* The disk `key` changed under its exports: hold and drain all their I/O;
 * vmsd_exports_reopen() later reopens them and lets I/O resume. */
void vmsd_exports_changed(vmsd_exports *xs, const char *key);
/* Reopen the exports marked by vmsd_exports_changed.  Call without the
 * control lock. */
void vmsd_exports_reopen(vmsd_exports *xs);
/* Status for the control socket: array of open exports. */
vms_json *vmsd_exports_status(vmsd_exports *xs);
/* Flush every writable export (shutdown). */
int vmsd_exports_flush_all(vmsd_exports *xs);

#endif
