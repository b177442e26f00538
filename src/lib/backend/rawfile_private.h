/*
 * rawfile_private.h - raw-file disks shared by the zfs and reflink backends.
 *
 * Both backends keep each disk (and each snapshot of it) as one plain file
 * and serve I/O with pread/pwrite.  The helpers here implement the disk_*
 * verbs of vms_backend on such a file, plus the file-level operations both
 * backends need (crash-safe create, FICLONE copy, sparse-aware copy, name
 * validation).  Semi-private: only src/lib/backend/ includes this.
 */
#ifndef VMS_BACKEND_RAWFILE_PRIVATE_H
#define VMS_BACKEND_RAWFILE_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "vmsnap/backend.h"

/* The disk handle of file-based backends.  `fd` is opened O_RDONLY for
 * snapshots and read-only opens, O_RDWR otherwise. */
struct vms_disk {
	int fd;
	unsigned flags;        /* VMS_DISK_READONLY */
	int punch_ok;          /* fallocate(PUNCH_HOLE) worked or not tried yet */
	int zero_range_ok;     /* fallocate(ZERO_RANGE) worked or not tried yet */
	uint64_t size;         /* size at open; disk_size() re-reads it */
	void *owner_data;      /* backend-specific (zfs: view bookkeeping) */
	void (*owner_release)(void *owner_data);
	char *path;
};

/* A key (catalog UUID or snapshot name) that may reach a path or a command:
 * 1..64 characters of [A-Za-z0-9_-], starting with a letter or digit.
 * Returns 0 or VMS_EINVAL with "invalid <what> '<name>'". */
int vms_raw__check_key(const char *what, const char *name);

/* Refs of the file-based backends: "<vm_key>/<disk_key>" for a disk and
 * "<vm_key>@<snap_key>/<disk_key>" for the disk in a VM snapshot.  Parse and
 * validate one: the keys are copied into the 65-byte buffers (snap is ""
 * for a disk ref).  Returns 0 or VMS_EINVAL naming the bad ref. */
#define VMS_KEY_MAX 65
int vms_raw__parse_ref(const char *ref, char vm[VMS_KEY_MAX], char snap[VMS_KEY_MAX],
                       char disk[VMS_KEY_MAX]);

/* A parsed ref (see vms_raw__parse_ref). */
typedef struct vms_raw_ref {
	char vm[VMS_KEY_MAX], snap[VMS_KEY_MAX], disk[VMS_KEY_MAX];
} vms_raw_ref;

/* Parse `ref`; want_snap 1: must be a snapshot ref, 0: must be a disk ref,
 * -1: either. */
int vms_raw__ref(vms_raw_ref *r, const char *ref, int want_snap);

/* Validate refs[0..n) (want_snap as above); with `vm` non-NULL every ref
 * must belong to that VM. */
int vms_raw__check_refs(const char *vm, const char *const *refs, size_t n, int want_snap);

/* free() refs[0..n) and set them to NULL. */
void vms_raw__free_refs(char **refs, size_t n);

/* Append a printf-formatted string to a JSON array (check reports). */
struct vms_json;
int vms_raw__json_addf(struct vms_json *arr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* malloc'd ref built from keys (snap NULL or "" for a disk ref). */
int vms_raw__make_ref(char **out, const char *vm, const char *snap, const char *disk);

/* Open `path` as a disk.  Returns 0 and a handle owned by the caller
 * (release with vms_raw__close). */
int vms_raw__open(vms_disk **out, const char *path, unsigned flags);
void vms_raw__close(vms_disk *d);
uint64_t vms_raw__size(vms_disk *d);
int vms_raw__read(vms_disk *d, void *buf, size_t len, uint64_t off);
int vms_raw__write(vms_disk *d, const void *buf, size_t len, uint64_t off, unsigned fua);
int vms_raw__flush(vms_disk *d);
int vms_raw__trim(vms_disk *d, uint64_t len, uint64_t off);
int vms_raw__zero(vms_disk *d, uint64_t len, uint64_t off, unsigned fua);
int vms_raw__block_status(vms_disk *d, uint64_t off, uint64_t len, vms_range_cb cb, void *ctx);

/* Create a new sparse file of `size` bytes exclusively (EEXISTS if present),
 * durable: file and directory entry are fsync'd. */
int vms_raw__create_file(const char *path, uint64_t size);

/* Set the file's size to `size`, durably.  Shrinking drops the data past
 * the new end: the control layer refuses it unless forced. */
int vms_raw__resize_file(const char *path, uint64_t size);

/* Make dst a reflink copy of src (FICLONE), crash-safely: clone into
 * "<dst>.tmp", fsync, rename over dst, fsync the directory.  With
 * `exclusive`, fail with EEXISTS if dst exists.  Returns VMS_ENOTSUP with a
 * clear message when the filesystem has no reflinks. */
int vms_raw__reflink_file(const char *dst, const char *src, int exclusive);

/* Copy src to dst (new file, exclusive), keeping holes (SEEK_DATA/HOLE),
 * crash-safely through "<dst>.tmp" + rename.  For filesystems without
 * reflinks across the two places. */
int vms_raw__copy_file(const char *dst, const char *src, int exclusive);

/* Delete the file of disk `ref` durably (unlink + fsync of the directory). */
int vms_raw__delete_file(const char *path, const char *ref);

/* fsync a directory. */
int vms_raw__fsync_dir(const char *dir);

/* fsync the directory that contains `path`. */
int vms_raw__fsync_parent(const char *path);

/* Allocated bytes of a file (st_blocks * 512) into *out. */
int vms_raw__allocated(uint64_t *out, const char *path);

/* Bytes of `path` in extents not shared with any other file (FIEMAP
 * FIEMAP_EXTENT_SHARED); VMS_ENOTSUP when FIEMAP is not available. */
int vms_raw__unshared(uint64_t *out, const char *path);

/* The extents of a file (FIEMAP, synced first), sorted by logical offset;
 * malloc'd array.  VMS_ENOTSUP when FIEMAP is not available. */
typedef struct vms_raw_extent {
	uint64_t logical, physical, length;
	uint32_t flags;              /* FIEMAP_EXTENT_* */
} vms_raw_extent;
int vms_raw__extents(vms_raw_extent **out, size_t *count, const char *path);

/* Bytes of `path`'s extents not at the same physical place as `prev`'s at
 * the same offsets: what was written to path since it was a reflink copy of
 * prev (prev NULL: every allocated byte).  Extents whose place FIEMAP does
 * not tell (unknown, delayed allocation, inline) count as written. */
int vms_raw__written(uint64_t *out, const char *path, const char *prev);

/* malloc'd "a/b" (NULL-safe error on overflow / ENOMEM). */
int vms_raw__join(char **out, const char *a, const char *b);

#endif
