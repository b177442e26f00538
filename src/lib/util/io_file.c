/* The default vms_io: a file or block device through pread/pwrite. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <unistd.h>

#include "vmsnap/error.h"
#include "vmsnap/io.h"

typedef struct {
	vms_io io;
	int fd;
	int is_blockdev;
} file_io;

static int f_read(vms_io *io, void *buf, size_t len, uint64_t off)
{
	file_io *f = (file_io *)io;
	char *p = buf;
	while (len > 0) {
		ssize_t n = pread(f->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vms_error_set_errno(errno, "read of %zu bytes at %llu", len,
			                           (unsigned long long)off);
		}
		if (n == 0) { /* past the end: zeros */
			for (size_t i = 0; i < len; i++)
				p[i] = 0;
			return 0;
		}
		p += n; len -= (size_t)n; off += (uint64_t)n;
	}
	return 0;
}

static int f_write(vms_io *io, const void *buf, size_t len, uint64_t off)
{
	file_io *f = (file_io *)io;
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

int vms_io_file_open(vms_io **out, const char *path, int create, int readonly)
{
	int flags = O_CLOEXEC | (readonly ? O_RDONLY : O_RDWR);
	if (create)
		flags |= O_CREAT | O_EXCL;
	int fd = open(path, flags, 0600);
	if (fd < 0)
		return vms_error_set_errno(errno, "open %s", path);
	file_io *f = calloc(1, sizeof(*f));
	if (!f) {
		close(fd);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode))
		f->is_blockdev = 1;
	f->fd = fd;
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
