/*
 * vmsnap/control.h - the control module (the paper's section 3.3): every
 * management request goes through here, whether it comes from the CLI in
 * process or from vmsnapd's control socket.
 *
 *   request -> type analysis (SR type from the catalog mappings)
 *           -> mapping (VM -> VBD -> VDI -> SR location)
 *           -> adapter (the backend table of that SR type) -> backend
 *
 * Requests and responses are JSON text, one object each:
 *   request:  {"op":"snapshot.create","args":{"vm":"vm1","name":"nightly"}}
 *   response: {"output_version":1,"result":{...}}
 *          or {"output_version":1,"error":{"code":"NOTFOUND","message":"..."}}
 * The op names and their arguments are listed in docs/control.md.
 */
#ifndef VMSNAP_CONTROL_H
#define VMSNAP_CONTROL_H

#include <stdint.h>

#include "vmsnap/backend.h"
#include "vmsnap/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vms_control vms_control;

/* Hooks a server installs so that management operations respect disks in use. */
typedef struct vms_control_hooks {
	size_t size;  /* sizeof(vms_control_hooks) */
	/* Hold (hold=1) or release (hold=0) new writes to every open disk of the
	 * VM and drain the in-flight ones, around a multi-disk snapshot. */
	int (*quiesce)(void *ctx, const char *vm_uuid, int hold);
	/* > 0 when a client has the disk (VDI uuid) open for writing. */
	int (*disk_in_use)(void *ctx, const char *vdi_uuid);
	/* Called after a disk's backing changed under it (rollback): the server
	 * reopens or drops the export. */
	void (*disk_changed)(void *ctx, const char *vdi_uuid);
} vms_control_hooks;

/* Open the catalog in `home` (created if missing, with mode 0700).  SRs are
 * opened lazily on first use and kept open until vms_control_close(). */
int vms_control_open(vms_control **out, const char *home);
void vms_control_close(vms_control *ctl);

void vms_control_set_hooks(vms_control *ctl, const vms_control_hooks *hooks, void *ctx);

/* Replace the clock that gives snapshots their time tags (seconds since the
 * epoch, UTC); NULL restores the wall clock.  For tests, replays and
 * imports: the control module itself never assumes the clock is monotonic. */
void vms_control_set_clock(vms_control *ctl, int64_t (*clock)(void *ctx), void *ctx);

/* Execute one JSON request.  Always produces a response (*out, malloc'd,
 * caller frees) unless memory runs out; returns 0 if the op succeeded, else
 * the negative code that is also in the response's error object. */
int vms_control_exec(char **out, vms_control *ctl, const char *request);

/* Resolve an export name "<vm>/<disk>" or "<vm>/<disk>@<snapshot>" (names or
 * UUIDs) and open it for I/O.  *out_disk is released with be->disk_close().
 * *out_vdi_uuid (may be NULL) receives the VDI uuid (malloc'd). */
int vms_control_disk_open(vms_disk **out_disk, const vms_backend **out_be, char **out_vdi_uuid,
                          vms_control *ctl, const char *export_name, unsigned flags);

/* The uuids of a VM's attached disks (the export keys of its read-write
 * exports), malloc'd; free with vms_cat_strv_free().  Used by a server to
 * quiesce only the disks of the VM being snapshotted. */
int vms_control_vm_disk_uuids(char ***out, size_t *n, vms_control *ctl, const char *vm_uuid);

/* Open every ready SR of the catalog now rather than at its first use (a
 * server calls this at start, so that the first client does not wait for a
 * pool to load).  An SR that cannot be opened is reported through on_error
 * (may be NULL) and skipped: it is tried again when it is used.  Returns the
 * number of SRs opened, or a negative code if the catalog cannot be read. */
int vms_control_sr_open_all(vms_control *ctl,
                            void (*on_error)(void *ctx, const char *sr_name, const char *message),
                            void *ctx);

/* Every export name currently available, as a JSON array of objects
 * {"name":..,"description":..,"size":..,"readonly":bool} (malloc'd). */
int vms_control_list_exports(char **out_json, vms_control *ctl);

/* Live I/O figures of a server's exports, for `stats` (docs/control.md).
 * The callback fills a malloc'd array (the caller frees it with free()). */
typedef struct vms_control_io_entry {
	char name[256];          /* export name: "vm/disk" or "vm/disk@snapshot" */
	vms_io_snapshot io;      /* counters since `seconds` ago */
	double seconds;          /* time the counters cover (0: unknown) */
} vms_control_io_entry;
typedef int (*vms_control_io_fn)(void *ctx, vms_control_io_entry **out, size_t *n);
/* Install (or with NULL remove) the source of live I/O figures. */
void vms_control_set_io_source(vms_control *ctl, vms_control_io_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
