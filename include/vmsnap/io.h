/*
 * vmsnap/io.h - the I/O layer under the pool engine.
 *
 * The engine never calls pread/pwrite/fsync directly: it goes through a
 * vms_io, a table of functions in the manner of SQLite's VFS.  The default
 * implementation is a file or block device; tests substitute a shim that
 * injects EIO/ENOSPC, tears writes, and forgets every write not yet made
 * durable by sync (a power cut), as SQLite's testvfs does.
 *
 * All functions return 0 or a negative vms_error_code (message set).
 * Implementations loop on short reads/writes and EINTR themselves.
 */
#ifndef VMSNAP_IO_H
#define VMSNAP_IO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vms_io vms_io;

struct vms_io {
	/* Read exactly len bytes at off; bytes past the end read as zeros. */
	int (*read)(vms_io *io, void *buf, size_t len, uint64_t off);
	/* Write exactly len bytes at off, growing the file if needed. */
	int (*write)(vms_io *io, const void *buf, size_t len, uint64_t off);
	/* Make every completed write durable (fdatasync). */
	int (*sync)(vms_io *io);
	/* Current size in bytes. */
	int (*size)(vms_io *io, uint64_t *out);
	/* Grow or shrink to exactly size bytes. */
	int (*resize)(vms_io *io, uint64_t size);
	/* Release; the io is invalid afterwards. */
	void (*close)(vms_io *io);
};

/* Open (or with create, create exclusively) a file or block device.
 * On success *out is owned by the caller and released with io->close(). */
int vms_io_file_open(vms_io **out, const char *path, int create, int readonly);

/* Flags of vms_io_file_open_flags(). */
#define VMS_IO_CREATE   1u  /* create exclusively */
#define VMS_IO_READONLY 2u  /* O_RDONLY */
#define VMS_IO_DIRECT   4u  /* O_DIRECT: bypass the page cache (qemu's cache=none);
                             * reads and writes whose buffer, offset or length are
                             * not aligned to the file's direct-I/O alignment
                             * (statx STATX_DIOALIGN, else 4096) go through an
                             * aligned bounce buffer, a write read-modify-writing
                             * the partial sectors at its ends.  A filesystem
                             * without O_DIRECT (tmpfs) gives VMS_ENOTSUP. */

/* vms_io_file_open() with flags; unknown flags are VMS_EINVAL. */
int vms_io_file_open_flags(vms_io **out, const char *path, unsigned flags);

/* Process-wide hook on vms_io_file_open() (vmsnapd's I/O error log and its
 * test-only fault injection, src/daemon/fault.c): when set, every file opened
 * read-write is passed to hook(&io, path), which may replace io by a wrapper
 * that owns the original.  The hook owns io from the call: on failure it has
 * released it (the open then fails with the hook's error).  Set once, before
 * any thread opens a file; NULL (the default) opens files as they are. */
typedef int (*vms_io_file_hook)(vms_io **io, const char *path);
void vms_io_file_set_hook(vms_io_file_hook hook);

#ifdef __cplusplus
}
#endif
#endif
