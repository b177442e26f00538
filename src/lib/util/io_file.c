/* The default vms_io: a file or block device through pread/pwrite, buffered
 * or, with VMS_IO_DIRECT, O_DIRECT with bounce buffers for what is not
 * aligned. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <unistd.h>

#include "vmsnap/error.h"
#include "vmsnap/io.h"

#define BOUNCE_MAX (1u << 20)  /* largest bounce buffer of one call */

typedef struct {
	vms_io io;
	int fd;
	int is_blockdev;
	uint32_t align;        /* direct I/O: alignment of memory, offset, length; 0 = buffered */
} file_io;

static int raw_read(file_io *f, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = pread(f->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vms_error_set_errno(errno, "read of %zu bytes at %llu", len,
			                           (unsigned long long)off);
		}
		/* past the end: zeros (O_DIRECT stops short at the end too) */
		if (n == 0 || (f->align && (size_t)n < len)) {
			memset(p + n, 0, len - (size_t)n);
			return 0;
		}
		p += n; len -= (size_t)n; off += (uint64_t)n;
	}
	return 0;
}

static int raw_write(file_io *f, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(f->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vms_error_set_errno(errno, "write of %zu bytes at %llu", len,
			                           (unsigned long long)off);
		}
		p += n; len -= (size_t)n; off += (uint64_t)n;
	}
	return 0;
}

static int aligned(const file_io *f, const void *buf, size_t len, uint64_t off)
{
	return !f->align || !(((uintptr_t)buf | (uint64_t)len | off) & (f->align - 1));
}

static void *bounce_alloc(file_io *f, size_t n)
{
	void *b = NULL;
	if (posix_memalign(&b, f->align < 4096 ? 4096 : f->align, n) != 0)
		return NULL;
	return b;
}

/* Direct I/O of what is not aligned: [lo, hi) is [off, off + len) widened to
 * the alignment, moved in pieces of at most BOUNCE_MAX through one buffer. */
static int bounce(file_io *f, void *rbuf, const void *wbuf, size_t len, uint64_t off)
{
	uint64_t a = f->align, lo = off & ~(a - 1), hi = (off + len + a - 1) & ~(a - 1);
	size_t cap = hi - lo < BOUNCE_MAX ? (size_t)(hi - lo) : BOUNCE_MAX;
	int rc = 0;
	char *b = bounce_alloc(f, cap);
	if (!b)
		return vms_error_set(VMS_ENOMEM, "out of memory for a %zu-byte I/O buffer", cap);
	for (uint64_t clo = lo; clo < hi; clo += cap) {
		uint64_t chi = hi - clo < cap ? hi : clo + cap;
		size_t n = (size_t)(chi - clo);
		uint64_t us = off > clo ? off : clo, ue = off + len < chi ? off + len : chi;
		if (rbuf) {
			if ((rc = raw_read(f, b, n, clo)) < 0)
				goto done;
			memcpy((char *)rbuf + (us - off), b + (us - clo), (size_t)(ue - us));
			continue;
		}
		/* a write keeps the bytes around it in its first and last sector */
		if (us > clo && (rc = raw_read(f, b, (size_t)a, clo)) < 0)
			goto done;
		if (ue < chi && (rc = raw_read(f, b + n - a, (size_t)a, chi - a)) < 0)
			goto done;
		memcpy(b + (us - clo), (const char *)wbuf + (us - off), (size_t)(ue - us));
		if ((rc = raw_write(f, b, n, clo)) < 0)
			goto done;
	}
done:
	free(b);
	return rc;
}

static int f_read(vms_io *io, void *buf, size_t len, uint64_t off)
{
	file_io *f = (file_io *)io;
	if (aligned(f, buf, len, off))
		return raw_read(f, buf, len, off);
	return bounce(f, buf, NULL, len, off);
}

static int f_write(vms_io *io, const void *buf, size_t len, uint64_t off)
{
	file_io *f = (file_io *)io;
	if (aligned(f, buf, len, off))
		return raw_write(f, buf, len, off);
	return bounce(f, NULL, buf, len, off);
}

static int f_sync(vms_io *io)
{
	file_io *f = (file_io *)io;
	while (fdatasync(f->fd) < 0) {
		if (errno != EINTR)
			return vms_error_set_errno(errno, "fdatasync");
	}
	return 0;
}

static int f_size(vms_io *io, uint64_t *out)
{
	file_io *f = (file_io *)io;
	if (f->is_blockdev) {
		uint64_t sz;
		if (ioctl(f->fd, BLKGETSIZE64, &sz) < 0)
			return vms_error_set_errno(errno, "BLKGETSIZE64");
		*out = sz;
		return 0;
	}
	struct stat st;
	if (fstat(f->fd, &st) < 0)
		return vms_error_set_errno(errno, "fstat");
	*out = (uint64_t)st.st_size;
	return 0;
}

static int f_resize(vms_io *io, uint64_t size)
{
	file_io *f = (file_io *)io;
	if (f->is_blockdev)
		return vms_error_set(VMS_ENOTSUP, "cannot resize a block device");
	while (ftruncate(f->fd, (off_t)size) < 0) {
		if (errno != EINTR)
			return vms_error_set_errno(errno, "ftruncate to %llu", (unsigned long long)size);
	}
	return 0;
}

static void f_close(vms_io *io)
{
	file_io *f = (file_io *)io;
	if (f) {
		close(f->fd);
		free(f);
	}
}

static vms_io_file_hook file_hook;

void vms_io_file_set_hook(vms_io_file_hook hook)
{
	file_hook = hook;
}

/* The direct-I/O alignment of fd: what statx says, else the block device's
 * logical sector size, else 4096; 0 when the file system has no O_DIRECT. */
static uint32_t dio_align(int fd, int is_blockdev)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
		uint32_t a = sx.stx_dio_offset_align > sx.stx_dio_mem_align ? sx.stx_dio_offset_align
		                                                            : sx.stx_dio_mem_align;
		return a;
	}
	int ss = 0;
	if (is_blockdev && ioctl(fd, BLKSSZGET, &ss) == 0 && ss > 0)
		return (uint32_t)ss;
	return 4096;
}

int vms_io_file_open_flags(vms_io **out, const char *path, unsigned flags)
{
	*out = NULL;
	if (flags & ~(VMS_IO_CREATE | VMS_IO_READONLY | VMS_IO_DIRECT))
		return vms_error_set(VMS_EINVAL, "open %s: unknown flags %#x", path, flags);
	int readonly = !!(flags & VMS_IO_READONLY);
	int oflags = O_CLOEXEC | (readonly ? O_RDONLY : O_RDWR);
	if (flags & VMS_IO_CREATE)
		oflags |= O_CREAT | O_EXCL;
	if (flags & VMS_IO_DIRECT)
		oflags |= O_DIRECT;
	int fd = open(path, oflags, 0600);
	if (fd < 0) {
		if (errno == EINVAL && (flags & VMS_IO_DIRECT))
			return vms_error_set(VMS_ENOTSUP, "open %s: the file system has no direct I/O "
			                     "(O_DIRECT)", path);
		return vms_error_set_errno(errno, "open %s", path);
	}
	file_io *f = calloc(1, sizeof(*f));
	if (!f) {
		close(fd);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode))
		f->is_blockdev = 1;
	f->fd = fd;
	if (flags & VMS_IO_DIRECT) {
		uint32_t a = dio_align(fd, f->is_blockdev);
		if (a == 0 || (a & (a - 1)) || a > 65536) {
			close(fd);
			free(f);
			if (flags & VMS_IO_CREATE)
				unlink(path);
			return vms_error_set(VMS_ENOTSUP, "open %s: no usable direct I/O alignment "
			                     "(%u)", path, a);
		}
		f->align = a;
	}
	f->io.read = f_read;
	f->io.write = f_write;
	f->io.sync = f_sync;
	f->io.size = f_size;
	f->io.resize = f_resize;
	f->io.close = f_close;
	*out = &f->io;
	if (file_hook && !readonly) {
		int rc = file_hook(out, path); /* owns the file io from here */
		if (rc < 0) {
			*out = NULL;
			return rc;
		}
	}
	return 0;
}

int vms_io_file_open(vms_io **out, const char *path, int create, int readonly)
{
	return vms_io_file_open_flags(out, path, (create ? VMS_IO_CREATE : 0u) |
	                                         (readonly ? VMS_IO_READONLY : 0u));
}
