/*
 * rawfile.c - disk I/O and file operations on raw files, shared by the zfs
 * and reflink backends.
 *
 * Design and invariants:
 *  - A disk is a plain file whose length is the disk size.  I/O beyond the
 *    size is refused (VMS_EINVAL), never silently extends the disk.
 *  - Every short read/write and EINTR is retried; a read that meets EOF
 *    inside the disk (the file shrank under us) returns zeros.
 *  - Trim punches a hole (fallocate PUNCH_HOLE|KEEP_SIZE).  Where that is
 *    unsupported (zfs-fuse has no fallocate) it writes zeros instead, which
 *    ZFS with compression turns into holes; correctness never depends on
 *    the hole: a trimmed range always reads back as zeros.
 *  - Zero tries ZERO_RANGE, then PUNCH_HOLE, then writes zeros.
 *  - Block status comes from SEEK_DATA/SEEK_HOLE; a filesystem without
 *    them (lseek EINVAL) reports everything as allocated, which is always
 *    a correct answer.
 *  - Files are created and replaced crash-safely: write "<name>.tmp",
 *    fsync it, rename over the final name, fsync the directory.  A crash
 *    leaves at most a stale ".tmp" that the next create removes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdarg.h>

#include "vmsnap/error.h"
#include "vmsnap/json.h"
#include "backend/rawfile_private.h"

#define ZERO_CHUNK (1u << 20)

int vms_raw__check_key(const char *what, const char *name)
{
	size_t n;

	if (!name || !*name)
		return vms_error_set(VMS_EINVAL, "invalid %s: empty", what);
	n = strlen(name);
	if (n > 64)
		return vms_error_set(VMS_EINVAL, "invalid %s '%.64s...': longer than 64 characters", what, name);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!(alnum || (i > 0 && (c == '-' || c == '_'))))
			return vms_error_set(VMS_EINVAL,
			        "invalid %s '%s': only letters, digits, '-' and '_' are allowed, "
			        "starting with a letter or digit", what, name);
	}
	return 0;
}

static int copy_key(char dst[VMS_KEY_MAX], const char *p, size_t n, const char *what, const char *ref)
{
	if (n == 0 || n >= VMS_KEY_MAX)
		return vms_error_set(VMS_EINVAL, "invalid ref '%s': bad %s", ref, what);
	memcpy(dst, p, n);
	dst[n] = '\0';
	if (vms_raw__check_key(what, dst) < 0)
		return vms_error_wrap(VMS_EINVAL, "invalid ref '%s'", ref);
	return 0;
}

int vms_raw__parse_ref(const char *ref, char vm[VMS_KEY_MAX], char snap[VMS_KEY_MAX],
                       char disk[VMS_KEY_MAX])
{
	const char *slash, *at;
	int rc;

	vm[0] = snap[0] = disk[0] = '\0';
	if (!ref)
		return vms_error_set(VMS_EINVAL, "invalid ref: NULL");
	slash = strchr(ref, '/');
	if (!slash || strchr(slash + 1, '/'))
		return vms_error_set(VMS_EINVAL, "invalid ref '%s': expected VM/DISK or VM@SNAPSHOT/DISK", ref);
	at = memchr(ref, '@', (size_t)(slash - ref));
	if ((rc = copy_key(vm, ref, (size_t)((at ? at : slash) - ref), "VM key", ref)) < 0)
		return rc;
	if (at && (rc = copy_key(snap, at + 1, (size_t)(slash - at - 1), "snapshot key", ref)) < 0)
		return rc;
	return copy_key(disk, slash + 1, strlen(slash + 1), "disk key", ref);
}

int vms_raw__ref(vms_raw_ref *r, const char *ref, int want_snap)
{
	int rc = vms_raw__parse_ref(ref, r->vm, r->snap, r->disk);

	if (rc < 0)
		return rc;
	if (want_snap == 1 && !r->snap[0])
		return vms_error_set(VMS_EINVAL, "ref '%s' is a disk, a snapshot was expected", ref);
	if (want_snap == 0 && r->snap[0])
		return vms_error_set(VMS_EINVAL, "ref '%s' is a snapshot, a disk was expected", ref);
	return 0;
}

int vms_raw__check_refs(const char *vm, const char *const *refs, size_t n, int want_snap)
{
	vms_raw_ref r;
	int rc;

	if (n && !refs)
		return vms_error_set(VMS_EINVAL, "refs: NULL array");
	for (size_t i = 0; i < n; i++) {
		if ((rc = vms_raw__ref(&r, refs[i], want_snap)) < 0)
			return rc;
		if (vm && strcmp(r.vm, vm) != 0)
			return vms_error_set(VMS_EINVAL, "ref '%s' does not belong to VM %s", refs[i], vm);
	}
	return 0;
}

void vms_raw__free_refs(char **refs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(refs[i]);
		refs[i] = NULL;
	}
}

int vms_raw__json_addf(struct vms_json *arr, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	vms_json *v;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (!(v = vms_json_new_string(buf)) || vms_json_array_append(arr, v) < 0) {
		vms_json_free(v);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	return 0;
}

int vms_raw__make_ref(char **out, const char *vm, const char *snap, const char *disk)
{
	size_t n;
	int rc;

	*out = NULL;
	if ((rc = vms_raw__check_key("VM key", vm)) < 0 || (rc = vms_raw__check_key("disk key", disk)) < 0)
		return rc;
	if (snap && *snap && (rc = vms_raw__check_key("snapshot key", snap)) < 0)
		return rc;
	n = strlen(vm) + strlen(disk) + (snap ? strlen(snap) : 0) + 3;
	if (!(*out = malloc(n)))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if (snap && *snap)
		snprintf(*out, n, "%s@%s/%s", vm, snap, disk);
	else
		snprintf(*out, n, "%s/%s", vm, disk);
	return 0;
}

int vms_raw__join(char **out, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p;

	*out = NULL;
	if (la + lb + 2 > PATH_MAX)
		return vms_error_set(VMS_EINVAL, "path too long: %s/%s", a, b);
	p = malloc(la + lb + 2);
	if (!p)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	*out = p;
	return 0;
}

int vms_raw__fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return vms_error_set_errno(errno, "open directory %s", dir);
	if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
		rc = vms_error_set_errno(errno, "fsync directory %s", dir);
	close(fd);
	return rc;
}

int vms_raw__delete_file(const char *path, const char *ref)
{
	if (unlink(path) < 0)
		return vms_error_set_errno(errno, "delete disk %s (%s)", ref, path);
	return vms_raw__fsync_parent(path);
}

int vms_raw__fsync_parent(const char *path)
{
	char *dir = strdup(path), *slash;
	int rc;

	if (!dir)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	slash = strrchr(dir, '/');
	if (!slash)
		rc = vms_raw__fsync_dir(".");
	else if (slash == dir)
		rc = vms_raw__fsync_dir("/");
	else {
		*slash = '\0';
		rc = vms_raw__fsync_dir(dir);
	}
	free(dir);
	return rc;
}

/* ---- disk I/O ---------------------------------------------------------- */

int vms_raw__open(vms_disk **out, const char *path, unsigned flags)
{
	vms_disk *d = NULL;
	struct stat st;
	int rc = 0;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	d->fd = -1;
	if (!(d->path = strdup(path))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	d->flags = flags;
	d->punch_ok = d->zero_range_ok = 1;
	d->fd = open(path, ((flags & VMS_DISK_READONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (d->fd < 0) {
		rc = vms_error_set_errno(errno, "open disk file %s", path);
		goto done;
	}
	if (fstat(d->fd, &st) < 0) {
		rc = vms_error_set_errno(errno, "stat disk file %s", path);
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = vms_error_set(VMS_ECORRUPT, "disk file %s is not a regular file", path);
		goto done;
	}
	d->size = (uint64_t)st.st_size;
	*out = d;
	d = NULL;
done:
	if (d) {
		if (d->fd >= 0)
			close(d->fd);
		free(d->path);
		free(d);
	}
	return rc;
}

void vms_raw__close(vms_disk *d)
{
	if (!d)
		return;
	if (d->fd >= 0)
		close(d->fd);
	if (d->owner_release)
		d->owner_release(d->owner_data);
	free(d->path);
	free(d);
}

uint64_t vms_raw__size(vms_disk *d)
{
	struct stat st;

	/* a resize through disk_resize changes the file under an open handle */
	if (fstat(d->fd, &st) == 0)
		d->size = (uint64_t)st.st_size;
	return d->size;
}

static int check_range(vms_disk *d, uint64_t len, uint64_t off, const char *op)
{
	uint64_t size = d->size;

	if (off > size || len > size - off) {
		size = vms_raw__size(d);
		if (off > size || len > size - off)
			return vms_error_set(VMS_EINVAL, "%s of %llu bytes at offset %llu is beyond the end of "
			                     "the disk (%llu bytes)", op, (unsigned long long)len,
			                     (unsigned long long)off, (unsigned long long)size);
	}
	return 0;
}

static int check_writable(vms_disk *d, const char *op)
{
	if (d->flags & VMS_DISK_READONLY)
		return vms_error_set(VMS_EROFS, "%s: disk %s is open read-only", op, d->path);
	return 0;
}

int vms_raw__read(vms_disk *d, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	int rc;

	if ((rc = check_range(d, len, off, "read")) < 0)
		return rc;
	while (len > 0) {
		ssize_t n = pread(d->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vms_error_set_errno(errno, "read %s at %llu", d->path, (unsigned long long)off);
		}
		if (n == 0) {            /* EOF inside the disk: the rest is zeros */
			memset(p, 0, len);
			break;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_all(vms_disk *d, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(d->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vms_error_set_errno(errno, "write %s at %llu", d->path, (unsigned long long)off);
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int vms_raw__flush(vms_disk *d)
{
	while (fdatasync(d->fd) < 0) {
		if (errno != EINTR)
			return vms_error_set_errno(errno, "flush %s", d->path);
	}
	return 0;
}

int vms_raw__write(vms_disk *d, const void *buf, size_t len, uint64_t off, unsigned fua)
{
	int rc;

	if ((rc = check_writable(d, "write")) < 0 || (rc = check_range(d, len, off, "write")) < 0)
		return rc;
	if ((rc = write_all(d, buf, len, off)) < 0)
		return rc;
	return fua ? vms_raw__flush(d) : 0;
}

static int write_zeros(vms_disk *d, uint64_t len, uint64_t off)
{
	static const char zeros[65536];
	int rc;

	while (len > 0) {
		size_t n = len > sizeof(zeros) ? sizeof(zeros) : (size_t)len;
		if ((rc = write_all(d, zeros, n, off)) < 0)
			return rc;
		off += n;
		len -= n;
	}
	return 0;
}

static int unsupported_errno(int e)
{
	return e == EOPNOTSUPP || e == ENOSYS || e == EINVAL || e == ENOTTY;
}

int vms_raw__trim(vms_disk *d, uint64_t len, uint64_t off)
{
	int rc;

	if ((rc = check_writable(d, "trim")) < 0 || (rc = check_range(d, len, off, "trim")) < 0)
		return rc;
	if (len == 0)
		return 0;
	if (d->punch_ok) {
		if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
			return 0;
		if (!unsupported_errno(errno))
			return vms_error_set_errno(errno, "trim %s at %llu", d->path, (unsigned long long)off);
		d->punch_ok = 0;
	}
	return write_zeros(d, len, off);
}

int vms_raw__zero(vms_disk *d, uint64_t len, uint64_t off, unsigned fua)
{
	int rc;

	if ((rc = check_writable(d, "write zeroes")) < 0 || (rc = check_range(d, len, off, "write zeroes")) < 0)
		return rc;
	if (len == 0)
		return 0;
	if (d->zero_range_ok) {
		if (fallocate(d->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
			goto written;
		if (!unsupported_errno(errno))
			return vms_error_set_errno(errno, "write zeroes %s at %llu", d->path, (unsigned long long)off);
		d->zero_range_ok = 0;
	}
	if (d->punch_ok) {
		if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
			goto written;
		if (!unsupported_errno(errno))
			return vms_error_set_errno(errno, "write zeroes %s at %llu", d->path, (unsigned long long)off);
		d->punch_ok = 0;
	}
	if ((rc = write_zeros(d, len, off)) < 0)
		return rc;
written:
	return fua ? vms_raw__flush(d) : 0;
}

int vms_raw__block_status(vms_disk *d, uint64_t off, uint64_t len, vms_range_cb cb, void *ctx)
{
	uint64_t end, pos;
	int rc;

	if ((rc = check_range(d, len, off, "block status")) < 0)
		return rc;
	end = off + len;
	pos = off;
	while (pos < end) {
		off_t data = lseek(d->fd, (off_t)pos, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				data = (off_t)end;      /* only a hole up to EOF */
			else if (unsupported_errno(errno))
				return cb(ctx, pos, end - pos, 1);
			else
				return vms_error_set_errno(errno, "SEEK_DATA on %s", d->path);
		}
		if ((uint64_t)data > pos) {
			uint64_t stop = (uint64_t)data < end ? (uint64_t)data : end;
			if ((rc = cb(ctx, pos, stop - pos, 0)) != 0)
				return rc < 0 ? rc : 0;
			pos = stop;
			if (pos >= end)
				break;
		}
		off_t hole = lseek(d->fd, (off_t)pos, SEEK_HOLE);
		if (hole < 0) {
			if (errno != ENXIO && !unsupported_errno(errno))
				return vms_error_set_errno(errno, "SEEK_HOLE on %s", d->path);
			hole = (off_t)end;
		}
		uint64_t stop = (uint64_t)hole < end ? (uint64_t)hole : end;
		if (stop <= pos)       /* defensive: never loop without progress */
			stop = end;
		if ((rc = cb(ctx, pos, stop - pos, 1)) != 0)
			return rc < 0 ? rc : 0;
		pos = stop;
	}
	return 0;
}

/* ---- file operations --------------------------------------------------- */

static int tmp_name(char **out, const char *path)
{
	size_t n = strlen(path);
	char *p = malloc(n + 5);

	*out = NULL;
	if (!p)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	memcpy(p, path, n);
	memcpy(p + n, ".tmp", 5);
	*out = p;
	return 0;
}

/* rename tmp to dst; with `exclusive` never replace an existing dst. */
static int rename_into_place(const char *tmp, const char *dst, int exclusive)
{
	if (exclusive) {
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST)
			return vms_error_set(VMS_EEXISTS, "%s already exists", dst);
		if (!unsupported_errno(errno))
			return vms_error_set_errno(errno, "rename %s to %s", tmp, dst);
		/* no RENAME_NOREPLACE (FUSE): callers hold the SR lock, so check then rename */
		if (access(dst, F_OK) == 0)
			return vms_error_set(VMS_EEXISTS, "%s already exists", dst);
	}
	if (rename(tmp, dst) < 0)
		return vms_error_set_errno(errno, "rename %s to %s", tmp, dst);
	return 0;
}

static int fsync_fd(int fd, const char *path)
{
	while (fsync(fd) < 0) {
		if (errno != EINTR)
			return vms_error_set_errno(errno, "fsync %s", path);
	}
	return 0;
}

int vms_raw__create_file(const char *path, uint64_t size)
{
	int fd, rc = 0;

	if (size > (uint64_t)INT64_MAX)
		return vms_error_set(VMS_EINVAL, "disk size %llu too large", (unsigned long long)size);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return vms_error_set(VMS_EEXISTS, "disk file %s already exists", path);
		return vms_error_set_errno(errno, "create disk file %s", path);
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		rc = vms_error_set_errno(errno, "set size of %s to %llu", path, (unsigned long long)size);
		goto done;
	}
	if ((rc = fsync_fd(fd, path)) < 0)
		goto done;
	rc = vms_raw__fsync_parent(path);
done:
	close(fd);
	if (rc < 0)
		unlink(path);
	return rc;
}

int vms_raw__resize_file(const char *path, uint64_t size)
{
	struct stat st;
	int fd, rc = 0;

	if (size > (uint64_t)INT64_MAX)
		return vms_error_set(VMS_EINVAL, "disk size %llu too large", (unsigned long long)size);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return vms_error_set_errno(errno, "open disk file %s", path);
	if (fstat(fd, &st) < 0) {
		rc = vms_error_set_errno(errno, "stat %s", path);
		goto done;
	}
	if (size != (uint64_t)st.st_size) {
		if (ftruncate(fd, (off_t)size) < 0) {
			rc = vms_error_set_errno(errno, "resize %s to %llu", path, (unsigned long long)size);
			goto done;
		}
		rc = fsync_fd(fd, path);
	}
done:
	close(fd);
	return rc;
}

int vms_raw__reflink_file(const char *dst, const char *src, int exclusive)
{
	char *tmp = NULL;
	int sfd = -1, dfd = -1, rc = 0;

	if (exclusive && access(dst, F_OK) == 0)
		return vms_error_set(VMS_EEXISTS, "%s already exists", dst);
	if ((rc = tmp_name(&tmp, dst)) < 0)
		return rc;
	sfd = open(src, O_RDONLY | O_CLOEXEC);
	if (sfd < 0) {
		rc = vms_error_set_errno(errno, "open %s", src);
		goto done;
	}
	unlink(tmp);    /* a stale temp file from a crash */
	dfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (dfd < 0) {
		rc = vms_error_set_errno(errno, "create %s", tmp);
		goto done;
	}
	if (ioctl(dfd, FICLONE, sfd) < 0) {
		int e = errno;
		if (unsupported_errno(e) || e == EXDEV)
			rc = vms_error_set(VMS_ENOTSUP, "cannot reflink %s to %s: %s (the filesystem must support "
			                   "reflinks: XFS with reflink=1, btrfs or OCFS2, and both files must be on it)",
			                   src, dst, strerror(e));
		else
			rc = vms_error_set_errno(e, "reflink %s to %s", src, dst);
		goto done;
	}
	if ((rc = fsync_fd(dfd, tmp)) < 0)
		goto done;
	close(dfd);
	dfd = -1;
	if ((rc = rename_into_place(tmp, dst, exclusive)) < 0)
		goto done;
	rc = vms_raw__fsync_parent(dst);
done:
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	if (rc < 0 && tmp)
		unlink(tmp);
	free(tmp);
	return rc;
}

static int all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

int vms_raw__copy_file(const char *dst, const char *src, int exclusive)
{
	char *tmp = NULL, *buf = NULL;
	int sfd = -1, dfd = -1, rc = 0;
	struct stat st;
	uint64_t pos = 0, size;

	if (exclusive && access(dst, F_OK) == 0)
		return vms_error_set(VMS_EEXISTS, "%s already exists", dst);
	if ((rc = tmp_name(&tmp, dst)) < 0)
		return rc;
	if (!(buf = malloc(ZERO_CHUNK))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	sfd = open(src, O_RDONLY | O_CLOEXEC);
	if (sfd < 0 || fstat(sfd, &st) < 0) {
		rc = vms_error_set_errno(errno, "open %s", src);
		goto done;
	}
	size = (uint64_t)st.st_size;
	unlink(tmp);
	dfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (dfd < 0) {
		rc = vms_error_set_errno(errno, "create %s", tmp);
		goto done;
	}
	if (ftruncate(dfd, (off_t)size) < 0) {
		rc = vms_error_set_errno(errno, "set size of %s", tmp);
		goto done;
	}
	while (pos < size) {
		off_t data = lseek(sfd, (off_t)pos, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break;
			data = (off_t)pos;      /* no SEEK_DATA: copy everything */
		}
		pos = (uint64_t)data;
		off_t hole = lseek(sfd, (off_t)pos, SEEK_HOLE);
		uint64_t stop = hole < 0 || (uint64_t)hole <= pos ? size : (uint64_t)hole;
		while (pos < stop) {
			size_t want = stop - pos > ZERO_CHUNK ? ZERO_CHUNK : (size_t)(stop - pos);
			ssize_t n = pread(sfd, buf, want, (off_t)pos);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				rc = vms_error_set_errno(errno, "read %s", src);
				goto done;
			}
			if (n == 0) {
				stop = size = pos;
				break;
			}
			if (!all_zero(buf, (size_t)n)) {
				for (ssize_t w = 0; w < n;) {
					ssize_t m = pwrite(dfd, buf + w, (size_t)(n - w), (off_t)pos + w);
					if (m < 0) {
						if (errno == EINTR)
							continue;
						rc = vms_error_set_errno(errno, "write %s", tmp);
						goto done;
					}
					w += m;
				}
			}
			pos += (uint64_t)n;
		}
	}
	if ((rc = fsync_fd(dfd, tmp)) < 0)
		goto done;
	close(dfd);
	dfd = -1;
	if ((rc = rename_into_place(tmp, dst, exclusive)) < 0)
		goto done;
	rc = vms_raw__fsync_parent(dst);
done:
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	if (rc < 0 && tmp)
		unlink(tmp);
	free(tmp);
	free(buf);
	return rc;
}

int vms_raw__allocated(uint64_t *out, const char *path)
{
	struct stat st;

	*out = 0;
	if (stat(path, &st) < 0)
		return vms_error_set_errno(errno, "stat %s", path);
	*out = (uint64_t)st.st_blocks * 512u;
	return 0;
}

int vms_raw__extents(vms_raw_extent **out, size_t *count, const char *path)
{
	enum { NEXT = 256 };
	struct fiemap *fm = NULL;
	vms_raw_extent *v = NULL;
	size_t n = 0, cap = 0;
	uint64_t start = 0;
	int fd, rc = 0, last = 0;

	*out = NULL;
	*count = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vms_error_set_errno(errno, "open %s", path);
	fm = calloc(1, sizeof(*fm) + NEXT * sizeof(struct fiemap_extent));
	if (!fm) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	while (!last) {
		memset(fm, 0, sizeof(*fm));
		fm->fm_start = start;
		fm->fm_length = FIEMAP_MAX_OFFSET - start;
		fm->fm_flags = FIEMAP_FLAG_SYNC;
		fm->fm_extent_count = NEXT;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0) {
			if (unsupported_errno(errno))
				rc = vms_error_set(VMS_ENOTSUP, "FIEMAP not supported on %s", path);
			else
				rc = vms_error_set_errno(errno, "FIEMAP %s", path);
			goto done;
		}
		if (fm->fm_mapped_extents == 0)
			break;
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
			struct fiemap_extent *e = &fm->fm_extents[i];
			if (n == cap) {
				vms_raw_extent *nv = realloc(v, (cap = cap ? cap * 2 : 64) * sizeof(*v));
				if (!nv) {
					rc = vms_error_set(VMS_ENOMEM, "out of memory");
					goto done;
				}
				v = nv;
			}
			v[n++] = (vms_raw_extent){e->fe_logical, e->fe_physical, e->fe_length, e->fe_flags};
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				last = 1;
			if (e->fe_logical + e->fe_length <= start && n > 1) {
				rc = vms_error_set(VMS_EIO, "FIEMAP %s: extents do not advance", path);
				goto done;
			}
			start = e->fe_logical + e->fe_length;
		}
	}
	*out = v;
	*count = n;
	v = NULL;
done:
	free(v);
	free(fm);
	close(fd);
	return rc;
}

int vms_raw__unshared(uint64_t *out, const char *path)
{
	vms_raw_extent *e = NULL;
	size_t n = 0;
	int rc;

	*out = 0;
	if ((rc = vms_raw__extents(&e, &n, path)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (!(e[i].flags & FIEMAP_EXTENT_SHARED))
			*out += e[i].length;
	free(e);
	return 0;
}

/* Extents whose physical place cannot be compared. */
static int opaque(const vms_raw_extent *e)
{
	return (e->flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_DATA_INLINE |
	                    FIEMAP_EXTENT_NOT_ALIGNED)) != 0;
}

int vms_raw__written(uint64_t *out, const char *path, const char *prev)
{
	vms_raw_extent *a = NULL, *b = NULL;
	size_t na = 0, nb = 0, j = 0;
	uint64_t total = 0;
	int rc;

	*out = 0;
	if ((rc = vms_raw__extents(&a, &na, path)) < 0)
		return rc;
	if (prev && (rc = vms_raw__extents(&b, &nb, prev)) < 0) {
		free(a);
		return rc;
	}
	/* both lists are sorted by logical offset and do not overlap */
	for (size_t i = 0; i < na; i++) {
		uint64_t lo = a[i].logical, hi = a[i].logical + a[i].length, same = 0;
		while (j < nb && b[j].logical + b[j].length <= lo)
			j++;
		for (size_t k = j; k < nb && b[k].logical < hi; k++) {
			uint64_t olo = lo > b[k].logical ? lo : b[k].logical;
			uint64_t ohi = hi < b[k].logical + b[k].length ? hi : b[k].logical + b[k].length;
			if (olo >= ohi || opaque(&a[i]) || opaque(&b[k]))
				continue;
			if (a[i].physical + (olo - a[i].logical) == b[k].physical + (olo - b[k].logical))
				same += ohi - olo;
		}
		total += a[i].length - same;
	}
	*out = total;
	free(a);
	free(b);
	return 0;
}
