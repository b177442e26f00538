/*
 * vmsnap/backend.h - the snapshot strategy interface (the paper's
 * "Snapshot API" and "Snapshot Adapter").
 *
 * An SR (storage repository) has a type; each type is implemented by a
 * backend: a table of functions filled with designated initializers, that
 * starts with its size and only grows at the end (as nbdkit's plugin struct
 * and libgit2's odb backend).  The control layer picks the table from the
 * SR's type and never tests the type itself.
 *
 * The catalog stores, for every disk and disk snapshot, an opaque `ref`
 * string that the backend handed out (a volume id for the native engine, a
 * dataset/file path for zfs, a file path for reflink) and passes it back.
 * Refs returned through `out` are malloc'd; the caller frees them.
 *
 * All functions return 0 or a negative vms_error_code with a message.
 */
#ifndef VMSNAP_BACKEND_H
#define VMSNAP_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vms_sr_handle vms_sr_handle;   /* an opened SR, backend-private */
typedef struct vms_disk vms_disk;             /* an opened disk or snapshot, for I/O */

/* Capabilities a backend reports; the CLI says when a verb is unavailable. */
#define VMS_CAP_SNAPSHOT        (1ull << 0)
#define VMS_CAP_CLONE           (1ull << 1)
#define VMS_CAP_ROLLBACK_ANY    (1ull << 2)  /* rollback to a non-latest snapshot keeping newer ones */
#define VMS_CAP_ATOMIC_MULTI    (1ull << 3)  /* multi-disk snapshot atomic without holding writes */
#define VMS_CAP_TRIM            (1ull << 4)
#define VMS_CAP_BLOCK_STATUS    (1ull << 5)
#define VMS_CAP_DIFF            (1ull << 6)  /* changed blocks between snapshots */
#define VMS_CAP_UNIQUE_BYTES    (1ull << 7)
#define VMS_CAP_CHECK           (1ull << 8)
#define VMS_CAP_RESIZE          (1ull << 9)
/* The storage itself keeps a deleted snapshot that clones depend on and
 * destroys it with its last clone (zfs destroy -d): snapshot_defer_delete
 * mirrors the catalog's isDeleted there.  Without it, deferral is the
 * catalog's alone and the snapshot is deleted when it is reclaimed. */
#define VMS_CAP_DEFER_DELETE    (1ull << 10)
/* Not a verb: the SR location is a name in the storage's own namespace
 * (zfs: pool/dataset), not a filesystem path, so a client must not make a
 * relative one absolute. */
#define VMS_CAP_NAMED_LOCATION  (1ull << 11)

#define VMS_DISK_READONLY 1u

#define VMS_ENUM_DEEP 1u   /* enumerate: list the disks of "whole" snapshots too */

/* Space figures of an SR. */
typedef struct vms_sr_space {
	uint64_t total_bytes;
	uint64_t free_bytes;
	uint64_t used_bytes;
} vms_sr_space;

/* Per-disk or per-snapshot space. UINT64_MAX = unknown. */
typedef struct vms_ref_space {
	uint64_t referenced;   /* bytes mapped */
	uint64_t unique;       /* bytes deleting it would free */
	uint64_t written;      /* bytes written since the previous snapshot */
	/* What the figures are of.  The caller zeroes it (VMS_SPACE_PER_DISK);
	 * a backend that accounts space per VM snapshot sets VMS_SPACE_PER_VM:
	 * the figures are the whole VM snapshot's (or live VM's), charged to
	 * one of its disks and 0 on the others, so sums over a snapshot's
	 * disks are exact but no single disk's figure is that disk's own. */
	uint32_t granularity;
} vms_ref_space;

#define VMS_SPACE_PER_DISK 0u
#define VMS_SPACE_PER_VM   1u

typedef int (*vms_range_cb)(void *ctx, uint64_t off, uint64_t len, int allocated);

typedef struct vms_backend {
	size_t size;          /* sizeof(vms_backend) the backend was built with */
	const char *type;     /* "native", "zfs", "reflink" */
	uint64_t caps;

	/* ---- SR lifecycle.  `location` is a directory (native: holds the pool
	 * file; reflink: the SR directory; zfs: "pool/dataset" name, with the
	 * mountpoint found through zfs).  `options` is "key=value,..." or NULL. */
	int (*sr_create)(const char *location, uint64_t size, const char *options);
	int (*sr_open)(vms_sr_handle **out, const char *location);
	int (*sr_close)(vms_sr_handle *sr);
	int (*sr_destroy)(const char *location);         /* SR must be empty */
	int (*sr_space)(vms_sr_space *out, vms_sr_handle *sr);

	/* ---- disks.  vm_key and disk_key are the catalog UUIDs (validated
	 * strings, never user names), so a backend may use them in paths. */
	int (*disk_create)(char **out_ref, vms_sr_handle *sr, const char *vm_key,
	                   const char *disk_key, uint64_t size);
	int (*disk_delete)(vms_sr_handle *sr, const char *ref);
	int (*disk_resize)(vms_sr_handle *sr, const char *ref, uint64_t size);

	/* Snapshot the n disks of one VM atomically; out_refs[i] for refs[i]. */
	int (*snapshot_create)(char **out_refs, vms_sr_handle *sr, const char *vm_key,
	                       const char *snap_key, const char *const *refs, size_t n);
	int (*snapshot_delete)(vms_sr_handle *sr, const char *vm_key, const char *snap_key,
	                       const char *const *snap_refs, size_t n);
	/* Make disks refs[i] equal to snapshots snap_refs[i]; keeps newer snapshots.
	 * A backend may change a disk's ref (new_refs[i] non-NULL). */
	int (*rollback)(char **new_refs, vms_sr_handle *sr, const char *vm_key,
	                const char *const *refs, const char *const *snap_refs, size_t n);
	/* New writable disks from snapshots (or disks) src_refs[i] for VM dst_vm_key. */
	int (*clone)(char **out_refs, vms_sr_handle *sr, const char *dst_vm_key,
	             const char *const *dst_disk_keys, const char *const *src_refs, size_t n);

	int (*ref_space)(vms_ref_space *out, vms_sr_handle *sr, const char *ref);

	/* ---- I/O on a disk or snapshot (snapshots always read-only). */
	int (*disk_open)(vms_disk **out, vms_sr_handle *sr, const char *ref, unsigned flags);
	void (*disk_close)(vms_disk *d);
	uint64_t (*disk_size)(vms_disk *d);
	int (*disk_read)(vms_disk *d, void *buf, size_t len, uint64_t off);
	int (*disk_write)(vms_disk *d, const void *buf, size_t len, uint64_t off, unsigned fua);
	int (*disk_flush)(vms_disk *d);
	int (*disk_trim)(vms_disk *d, uint64_t len, uint64_t off);
	int (*disk_zero)(vms_disk *d, uint64_t len, uint64_t off, unsigned fua);
	int (*disk_block_status)(vms_disk *d, uint64_t off, uint64_t len, vms_range_cb cb, void *ctx);

	/* Hold and release writes on an SR's open disks (used by backends without
	 * VMS_CAP_ATOMIC_MULTI to make a multi-disk snapshot atomic). */
	/* ---- health */
	int (*check)(vms_sr_handle *sr, unsigned flags, char **out_report_json);

	/* ---- deferred delete (VMS_CAP_DEFER_DELETE).  Called when the catalog
	 * marks a snapshot with clones isDeleted: the storage keeps it while a
	 * clone depends on it and may destroy it itself with its last clone, so
	 * a later snapshot_delete must accept that it is gone.  NULL, or a no-op
	 * returning 0, for a backend without the notion (no capability). */
	int (*snapshot_defer_delete)(vms_sr_handle *sr, const char *vm_key, const char *snap_key,
	                             const char *const *snap_refs, size_t n);

	/* ---- enumeration (check and repair compare it with the catalog both ways).
	 * The backend's own objects in the SR as malloc'd JSON text
	 * {"objects":[{...}, ...]}, each object:
	 *   "kind"     "disk" (a writable disk or clone), "snapshot_disk" (one disk
	 *              of a VM snapshot) or "snapshot" (a VM snapshot as a whole,
	 *              for backends whose snapshots cover a VM's disks at once)
	 *   "ref"      disk/snapshot_disk: the ref the catalog would hold
	 *   "vm", "snapshot", "disk"   the keys the backend knows it by (absent
	 *              when it has none, e.g. a native volume no key owns)
	 *   "name"     the backend's own name (volume id, dataset, path)
	 *   "size"     virtual size in bytes (disk/snapshot_disk)
	 *   "referenced"  bytes of data it maps (null = unknown): 0 = holds nothing
	 *   "whole"    snapshot: true when its disks are not listed as snapshot_disk
	 *              objects; with VMS_ENUM_DEEP they are listed inside it as
	 *              "disks":[{"ref","disk","size","referenced"}] (may cost more)
	 *   "deferred" snapshot: destroy requested, the storage finishes it itself
	 * Views and temporaries are not objects (check reports and repairs them). */
	int (*enumerate)(vms_sr_handle *sr, unsigned flags, char **out_json);
	/* ---- an SR opened to look only (check without repair, a dry run).  The
	 * open writes nothing to the storage (native: the pool opened read-only,
	 * so no commit at open; the key log neither cut nor compacted), and a
	 * verb that would change the SR fails with VMS_EROFS.  Closed with
	 * sr_close.  NULL where sr_open itself writes nothing (zfs, reflink):
	 * the caller then uses sr_open. */
	int (*sr_open_readonly)(vms_sr_handle **out, const char *location);
	/* ---- what the storage behind an open SR is made of, beyond its type
	 * (sr show): malloc'd JSON text of one object with snake_case members;
	 * native: {"block_size","format_version","index","checksums"}.  NULL
	 * when a backend has nothing to add. */
	int (*sr_properties)(char **out_json, vms_sr_handle *sr);
	/* grows here */
} vms_backend;

/* The registry of backends.  Returns NULL (with a message) for an unknown type. */
const vms_backend *vms_backend_find(const char *type);

/* Every registered backend, NULL-terminated. */
const vms_backend *const *vms_backend_all(void);

extern const vms_backend vms_backend_native;

/* Native SRs opened or created from now on use direct I/O on their pool file
 * (vms_pool_options.direct_io; vmsnapd --direct-io).  Process-wide: set
 * once, before any thread opens an SR. */
void vms_backend_native_set_direct_io(int on);
extern const vms_backend vms_backend_zfs;
extern const vms_backend vms_backend_reflink;

#ifdef __cplusplus
}
#endif
#endif
