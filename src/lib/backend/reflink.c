/*
 * reflink.c - the `reflink` SR type: snapshots as reflink copies (FICLONE)
 * of raw disk files, on a filesystem that shares extents between files:
 * OCFS2 (the paper's cluster case), XFS with reflink=1, btrfs.
 *
 * Layout under the SR directory:
 *   .vmsnap-sr                               marker: type, version, crc32c
 *   <vm_key>/disks/<disk_key>.raw            a disk          ref "<vm>/<disk>"
 *   <vm_key>/snapshots/<snap_key>/<disk>.raw a disk in a VM snapshot
 *                                            ref "<vm>@<snap>/<disk>"
 *   <vm_key>/snapshots/<snap_key>/.snapshot  its order: seq, version, crc32c
 *
 * Invariants and crash safety:
 *  - A snapshot directory exists under its final name only when complete:
 *    it is built as "<snap>.tmp" (FICLONE of every disk, each file and the
 *    directory fsync'd), then renamed.  '.' never occurs in a key, so a
 *    leftover ".tmp" never looks like a snapshot; check reports it and
 *    repair removes it.
 *  - Deleting renames the snapshot to "<snap>.del" first, then removes it.
 *  - Rollback and clone write "<file>.tmp" by FICLONE and rename it over
 *    the target (vms_raw__reflink_file), then fsync the directory.
 *  - Every mutating verb holds the SR lock: a process mutex plus flock()
 *    on the marker file.  On OCFS2 flock() is cluster-wide (DLM), so
 *    metadata changes are serialized across hosts too (docs/backends.md).
 *  - Multi-disk snapshots are not atomic by themselves (no
 *    VMS_CAP_ATOMIC_MULTI): the control module holds the VM's writes
 *    around snapshot_create (its quiesce hook).
 *  - Clones and snapshots share extents at the filesystem level only:
 *    nothing depends on a snapshot file, so deleting a snapshot with clones
 *    is immediate here (the catalog still applies the paper's rules).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "vmsnap/backend.h"
#include "vmsnap/crc32c.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"
#include "vmsnap/pool.h"
#include "backend/common_private.h"
#include "backend/rawfile_private.h"

#define MARKER ".vmsnap-sr"
#define MARKER_VERSION 1
#define PROBE_SRC ".vmsnap-probe"
#define PROBE_DST ".vmsnap-probe-clone"

typedef struct rl_sr {
	char *dir;
	int lock_fd;                /* the marker, for flock */
	pthread_mutex_t lock;
} rl_sr;

#define RSR(h) ((rl_sr *)(void *)(h))

/* ---- paths ---------------------------------------------------------------- */

static int pathf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pathf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	*out = NULL;
	va_start(ap, fmt);
	n = vasprintf(out, fmt, ap);
	va_end(ap);
	if (n < 0) {
		*out = NULL;
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	if (n >= PATH_MAX) {
		free(*out);
		*out = NULL;
		return vms_error_set(VMS_EINVAL, "path too long");
	}
	return 0;
}

/* File of a disk or snapshot ref. */
static int ref_path(char **out, const rl_sr *sr, const vms_raw_ref *r)
{
	if (r->snap[0])
		return pathf(out, "%s/%s/snapshots/%s/%s.raw", sr->dir, r->vm, r->snap, r->disk);
	return pathf(out, "%s/%s/disks/%s.raw", sr->dir, r->vm, r->disk);
}

static int mkdir_one(const char *path)
{
	if (mkdir(path, 0700) == 0)
		return vms_raw__fsync_parent(path);
	if (errno == EEXIST)
		return 0;
	return vms_error_set_errno(errno, "create directory %s", path);
}

/* <sr>/<vm>/<sub> with its parents. */
static int ensure_vm_dir(const rl_sr *sr, const char *vm, const char *sub)
{
	char *p = NULL;
	int rc;

	if ((rc = pathf(&p, "%s/%s", sr->dir, vm)) < 0)
		return rc;
	rc = mkdir_one(p);
	free(p);
	if (rc < 0 || (rc = pathf(&p, "%s/%s/%s", sr->dir, vm, sub)) < 0)
		return rc;
	rc = mkdir_one(p);
	free(p);
	return rc;
}

/* Remove the VM directory when nothing is left in it (best effort). */
static void gc_vm_dir(const rl_sr *sr, const char *vm)
{
	char *p = NULL;

	if (pathf(&p, "%s/%s/disks", sr->dir, vm) == 0)
		rmdir(p);
	free(p);
	if (pathf(&p, "%s/%s/snapshots", sr->dir, vm) == 0)
		rmdir(p);
	free(p);
	if (pathf(&p, "%s/%s", sr->dir, vm) == 0 && rmdir(p) == 0)
		vms_raw__fsync_dir(sr->dir);
	free(p);
	vms_error_clear();
}

/* Remove a directory of plain files (a snapshot). */
static int remove_dir_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 : vms_error_set_errno(errno, "open directory %s", dir);
	while ((e = readdir(d))) {
		char *p = NULL;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((rc = pathf(&p, "%s/%s", dir, e->d_name)) < 0)
			break;
		if (unlink(p) < 0 && errno != ENOENT)
			rc = vms_error_set_errno(errno, "remove %s", p);
		free(p);
		if (rc < 0)
			break;
	}
	closedir(d);
	if (rc == 0 && rmdir(dir) < 0 && errno != ENOENT)
		rc = vms_error_set_errno(errno, "remove directory %s", dir);
	return rc;
}

/* ---- the SR lock ---------------------------------------------------------- */

static int sr_lock(rl_sr *sr)
{
	pthread_mutex_lock(&sr->lock);
	while (flock(sr->lock_fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int rc = vms_error_set_errno(errno, "lock SR %s", sr->dir);
			pthread_mutex_unlock(&sr->lock);
			return rc;
		}
	}
	return 0;
}

static void sr_unlock(rl_sr *sr)
{
	flock(sr->lock_fd, LOCK_UN);
	pthread_mutex_unlock(&sr->lock);
}

/* ---- SR ------------------------------------------------------------------- */

static const char *fs_name(const char *dir)
{
	struct statfs st;

	if (statfs(dir, &st) < 0)
		return "unknown";
	switch ((unsigned long)st.f_type) {
	case 0xEF53: return "ext2/3/4";
	case 0x01021994: return "tmpfs";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	case 0x7461636F: return "ocfs2";
	case 0x65735546: return "fuse";
	case 0x6969: return "nfs";
	case 0x2FC12FC1: return "zfs";
	case 0x794C7630: return "overlayfs";
	default: return "unknown";
	}
}

static void marker_text(char *buf, size_t n)
{
	char body[64];
	int l = snprintf(body, sizeof(body), "vmsnap-sr type=reflink version=%d", MARKER_VERSION);
	snprintf(buf, n, "%s crc32c=%08x\n", body, vms_crc32c(0, body, (size_t)l));
}

static int write_marker(const char *dir)
{
	char text[128], *tmp = NULL, *dst = NULL;
	int fd = -1, rc;
	size_t len;

	marker_text(text, sizeof(text));
	len = strlen(text);
	if ((rc = pathf(&dst, "%s/" MARKER, dir)) < 0 || (rc = pathf(&tmp, "%s/" MARKER ".tmp", dir)) < 0)
		goto done;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
		rc = vms_error_set_errno(errno, "write %s", tmp);
		goto done;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, dst) < 0) {
		rc = vms_error_set_errno(errno, "rename %s", tmp);
		goto done;
	}
	rc = vms_raw__fsync_dir(dir);
done:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && tmp)
		unlink(tmp);
	free(tmp);
	free(dst);
	return rc;
}

/* Open and validate the marker; returns its fd. */
static int open_marker(int *out_fd, const char *dir)
{
	char want[128], got[129], *p = NULL;
	ssize_t n;
	int fd, rc;

	*out_fd = -1;
	if ((rc = pathf(&p, "%s/" MARKER, dir)) < 0)
		return rc;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT
		     ? vms_error_set(VMS_ENOTFOUND, "%s is not a reflink SR (no %s marker)", dir, MARKER)
		     : vms_error_set_errno(errno, "open %s", p);
		free(p);
		return rc;
	}
	marker_text(want, sizeof(want));
	n = read(fd, got, sizeof(got) - 1);
	if (n < 0) {
		rc = vms_error_set_errno(errno, "read %s", p);
	} else {
		got[n] = '\0';
		if (strcmp(got, want) != 0)
			rc = vms_error_set(VMS_ECORRUPT, "SR marker %s is invalid or of another version "
			                   "(expected '%.*s')", p, (int)strcspn(want, "\n"), want);
	}
	free(p);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	*out_fd = fd;
	return 0;
}

/* FICLONE a small test file inside the directory. */
static int probe_reflink(const char *dir)
{
	char *src = NULL, *dst = NULL, buf[65536];
	int fd = -1, rc;

	memset(buf, 0x5a, sizeof(buf));
	if ((rc = pathf(&src, "%s/" PROBE_SRC, dir)) < 0 || (rc = pathf(&dst, "%s/" PROBE_DST, dir)) < 0)
		goto done;
	fd = open(src, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || fsync(fd) < 0) {
		rc = vms_error_set_errno(errno, "write probe file %s", src);
		goto done;
	}
	close(fd);
	fd = -1;
	if ((rc = vms_raw__reflink_file(dst, src, 1)) < 0) {
		char why[512];
		snprintf(why, sizeof(why), "%s", vms_error_last());
		if (rc == VMS_ENOTSUP)
			rc = vms_error_set(VMS_ENOTSUP, "cannot create a reflink SR in %s: it is on a %s filesystem "
			                   "without reflink (FICLONE) support; a reflink SR needs XFS made with "
			                   "reflink=1, btrfs or OCFS2", dir, fs_name(dir));
		else
			rc = vms_error_set(rc, "cannot create a reflink SR in %s: reflink probe failed: %s", dir, why);
	}
done:
	if (fd >= 0)
		close(fd);
	if (src)
		unlink(src);
	if (dst)
		unlink(dst);
	free(src);
	free(dst);
	return rc;
}

static int rl_sr_create(const char *location, uint64_t size, const char *options)
{
	struct stat st;
	int created = 0, rc;
	DIR *d;

	if (!location || location[0] != '/')
		return vms_error_set(VMS_EINVAL, "invalid reflink SR location '%s': an absolute directory "
		                     "path is required", location ? location : "");
	if (options && *options)
		return vms_error_set(VMS_EINVAL, "the reflink SR type takes no options (got '%s')", options);
	(void)size;   /* the filesystem's size is the SR's */
	if (stat(location, &st) == 0) {
		struct dirent *e;
		if (!S_ISDIR(st.st_mode))
			return vms_error_set(VMS_EINVAL, "%s exists and is not a directory", location);
		if (!(d = opendir(location)))
			return vms_error_set_errno(errno, "open %s", location);
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				rc = vms_error_set(VMS_EEXISTS, "cannot create reflink SR in %s: the directory "
				                   "is not empty (%s)", location, e->d_name);
				closedir(d);
				return rc;
			}
		closedir(d);
	} else if (errno == ENOENT) {
		if (mkdir(location, 0700) < 0)
			return vms_error_set_errno(errno, "create SR directory %s", location);
		created = 1;
	} else {
		return vms_error_set_errno(errno, "stat %s", location);
	}
	if ((rc = probe_reflink(location)) == 0 && (rc = write_marker(location)) == 0 && created)
		rc = vms_raw__fsync_parent(location);
	if (rc < 0 && created)
		rmdir(location);
	return rc;
}

static int rl_sr_open(vms_sr_handle **out, const char *location)
{
	rl_sr *sr;
	int fd, rc;

	*out = NULL;
	if (!location || location[0] != '/')
		return vms_error_set(VMS_EINVAL, "invalid reflink SR location '%s'", location ? location : "");
	if ((rc = open_marker(&fd, location)) < 0)
		return rc;
	if (!(sr = calloc(1, sizeof(*sr))) || !(sr->dir = strdup(location))) {
		free(sr);
		close(fd);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	sr->lock_fd = fd;
	pthread_mutex_init(&sr->lock, NULL);
	*out = (vms_sr_handle *)(void *)sr;
	return 0;
}

static int rl_sr_close(vms_sr_handle *h)
{
	rl_sr *sr = RSR(h);

	if (!sr)
		return 0;
	close(sr->lock_fd);
	pthread_mutex_destroy(&sr->lock);
	free(sr->dir);
	free(sr);
	return 0;
}

static int rl_sr_destroy(const char *location)
{
	struct dirent *e;
	char *p = NULL;
	DIR *d;
	int fd, rc;

	if (!location || location[0] != '/')
		return vms_error_set(VMS_EINVAL, "invalid reflink SR location '%s'", location ? location : "");
	if ((rc = open_marker(&fd, location)) < 0)
		return rc;
	close(fd);
	if (!(d = opendir(location)))
		return vms_error_set_errno(errno, "open %s", location);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, MARKER)) {
			rc = vms_error_set(VMS_EDEPEND, "reflink SR %s is not empty: %s exists", location, e->d_name);
			break;
		}
	closedir(d);
	if (rc < 0)
		return rc;
	if ((rc = pathf(&p, "%s/" MARKER, location)) < 0)
		return rc;
	if (unlink(p) < 0)
		rc = vms_error_set_errno(errno, "remove %s", p);
	else if (rmdir(location) < 0)
		rc = vms_error_set_errno(errno, "remove %s", location);
	else
		rc = vms_raw__fsync_parent(location);
	free(p);
	return rc;
}

static int rl_sr_space(vms_sr_space *out, vms_sr_handle *h)
{
	struct statvfs st;

	memset(out, 0, sizeof(*out));
	if (statvfs(RSR(h)->dir, &st) < 0)
		return vms_error_set_errno(errno, "statvfs %s", RSR(h)->dir);
	out->total_bytes = (uint64_t)st.f_blocks * st.f_frsize;
	out->free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
	out->used_bytes = (uint64_t)(st.f_blocks - st.f_bfree) * st.f_frsize;
	return 0;
}

/* ---- disks ------------------------------------------------------------------ */

/* Resolvers of the shared verbs (common.c): the file of a ref, and that of a
 * new disk (its VM's disks/ directory made first). */
static int rl_path(char **out, vms_sr_handle *h, const vms_raw_ref *r)
{
	return ref_path(out, RSR(h), r);
}

static int rl_new_disk_path(char **out, vms_sr_handle *h, const vms_raw_ref *r)
{
	int rc = ensure_vm_dir(RSR(h), r->vm, "disks");
	return rc < 0 ? rc : ref_path(out, RSR(h), r);
}

static int rl_disk_create(char **out_ref, vms_sr_handle *h, const char *vm_key, const char *disk_key,
                          uint64_t size)
{
	rl_sr *sr = RSR(h);
	int rc;

	*out_ref = NULL;
	if ((rc = sr_lock(sr)) < 0)
		return rc;
	rc = vms_be__disk_create(out_ref, h, vm_key, disk_key, size, rl_new_disk_path);
	sr_unlock(sr);
	return rc;
}

static int rl_disk_delete(vms_sr_handle *h, const char *ref)
{
	rl_sr *sr = RSR(h);
	char *path = NULL;
	vms_raw_ref r;
	int rc;

	if ((rc = vms_be__ref_file(&path, &r, h, ref, 0, rl_path)) < 0)
		return rc;
	if ((rc = sr_lock(sr)) == 0) {
		if ((rc = vms_raw__delete_file(path, ref)) == 0)
			gc_vm_dir(sr, r.vm);
		sr_unlock(sr);
	}
	free(path);
	return rc;
}

static int rl_disk_resize(vms_sr_handle *h, const char *ref, uint64_t size)
{
	return vms_be__disk_resize(h, ref, size, rl_path);
}

/* ---- snapshot metadata: the order of a VM's snapshots ----------------------
 *
 * Every snapshot directory holds SNAPMETA, one line
 * "vmsnap-snapshot version=1 seq=N crc32c=XXXXXXXX": N orders the VM's
 * snapshots (nanoseconds of the realtime clock, forced above every existing
 * one, so a clock step cannot reorder them).  `written` of a disk or disk
 * snapshot compares its extents with those of the previous snapshot. */

#define SNAPMETA ".snapshot"

static void snapmeta_text(char *buf, size_t n, uint64_t seq)
{
	char body[96];
	int l = snprintf(body, sizeof(body), "vmsnap-snapshot version=1 seq=%llu", (unsigned long long)seq);
	snprintf(buf, n, "%s crc32c=%08x\n", body, vms_crc32c(0, body, (size_t)l));
}

/* seq of the snapshot directory `dir`; VMS_ECORRUPT when the file is bad. */
static int snapmeta_read(uint64_t *seq, const char *dir)
{
	char *p = NULL, got[160], want[160];
	unsigned long long v;
	ssize_t n;
	int fd, rc;

	*seq = 0;
	if ((rc = pathf(&p, "%s/" SNAPMETA, dir)) < 0)
		return rc;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = vms_error_set_errno(errno, "open %s", p);
		free(p);
		return rc;
	}
	n = read(fd, got, sizeof(got) - 1);
	close(fd);
	got[n < 0 ? 0 : n] = '\0';
	if (sscanf(got, "vmsnap-snapshot version=1 seq=%llu ", &v) == 1) {
		snapmeta_text(want, sizeof(want), v);
		if (strcmp(got, want) == 0) {
			*seq = v;
			free(p);
			return 0;
		}
	}
	rc = vms_error_set(VMS_ECORRUPT, "snapshot metadata %s is invalid", p);
	free(p);
	return rc;
}

static int snapmeta_write(const char *dir, uint64_t seq)
{
	char text[160], *p = NULL;
	size_t len;
	int fd, rc = 0;

	snapmeta_text(text, sizeof(text), seq);
	len = strlen(text);
	if ((rc = pathf(&p, "%s/" SNAPMETA, dir)) < 0)
		return rc;
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0)
		rc = vms_error_set_errno(errno, "write %s", p);
	if (fd >= 0)
		close(fd);
	free(p);
	return rc;
}

/*
 * Scan the VM's snapshots: *max_seq = the highest seq; with `disk`, *prev =
 * the path of disk's file in the newest snapshot with seq < before that has
 * it (NULL when none).  Snapshots with bad metadata are skipped (check
 * reports them).
 */
static int snap_scan(uint64_t *max_seq, char **prev, const rl_sr *sr, const char *vm, const char *disk,
                     uint64_t before)
{
	char *dir = NULL;
	uint64_t best = 0;
	DIR *d;
	struct dirent *e;
	int rc = 0;

	*max_seq = 0;
	if (prev)
		*prev = NULL;
	if ((rc = pathf(&dir, "%s/%s/snapshots", sr->dir, vm)) < 0)
		return rc;
	if (!(d = opendir(dir))) {
		rc = errno == ENOENT ? 0 : vms_error_set_errno(errno, "open %s", dir);
		free(dir);
		return rc;
	}
	while (rc == 0 && (e = readdir(d))) {
		char *sd = NULL, *f = NULL;
		uint64_t seq;
		struct stat st;
		if (vms_raw__check_key("snapshot key", e->d_name) < 0) {
			vms_error_clear();      /* ".", "..", ".tmp", ".del" */
			continue;
		}
		if ((rc = pathf(&sd, "%s/%s", dir, e->d_name)) < 0)
			break;
		if (snapmeta_read(&seq, sd) < 0) {
			vms_error_clear();
			free(sd);
			continue;
		}
		if (seq > *max_seq)
			*max_seq = seq;
		if (prev && disk && seq < before && (!*prev || seq > best) &&
		    (rc = pathf(&f, "%s/%s.raw", sd, disk)) == 0 && stat(f, &st) == 0) {
			free(*prev);
			*prev = f;
			f = NULL;
			best = seq;
		}
		free(f);
		free(sd);
	}
	closedir(d);
	free(dir);
	if (rc < 0 && prev) {
		free(*prev);
		*prev = NULL;
	}
	return rc;
}

/* ---- snapshots -------------------------------------------------------------- */

static int rl_snapshot_create(char **out_refs, vms_sr_handle *h, const char *vm_key, const char *snap_key,
                              const char *const *refs, size_t n)
{
	rl_sr *sr = RSR(h);
	char *dir = NULL, *tmp = NULL, *parent = NULL;
	int rc, locked = 0;
	struct stat st;

	for (size_t i = 0; i < n; i++)
		out_refs[i] = NULL;
	if ((rc = vms_be__check_snapshot(vm_key, snap_key, refs, n, 0)) < 0)
		return rc;
	if ((rc = pathf(&parent, "%s/%s/snapshots", sr->dir, vm_key)) < 0 ||
	    (rc = pathf(&dir, "%s/%s", parent, snap_key)) < 0 || (rc = pathf(&tmp, "%s/%s.tmp", parent, snap_key)) < 0)
		goto done;
	if ((rc = sr_lock(sr)) < 0)
		goto done;
	locked = 1;
	if (stat(dir, &st) == 0) {
		rc = vms_error_set(VMS_EEXISTS, "snapshot %s@%s already exists", vm_key, snap_key);
		goto done;
	}
	if ((rc = ensure_vm_dir(sr, vm_key, "snapshots")) < 0 || (rc = remove_dir_files(tmp)) < 0)
		goto done;
	if (mkdir(tmp, 0700) < 0) {
		rc = vms_error_set_errno(errno, "create %s", tmp);
		goto done;
	}
	{
		struct timespec ts;
		uint64_t seq, max_seq;
		clock_gettime(CLOCK_REALTIME, &ts);
		seq = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		if ((rc = snap_scan(&max_seq, NULL, sr, vm_key, NULL, 0)) < 0)
			goto done;
		if (seq <= max_seq)
			seq = max_seq + 1;
		if ((rc = snapmeta_write(tmp, seq)) < 0)
			goto done;
	}
	for (size_t i = 0; i < n; i++) {
		vms_raw_ref r;
		char *src = NULL, *dst = NULL;
		vms_raw__ref(&r, refs[i], 0);
		if ((rc = vms_raw__make_ref(&out_refs[i], vm_key, snap_key, r.disk)) == 0 &&
		    (rc = ref_path(&src, sr, &r)) == 0 && (rc = pathf(&dst, "%s/%s.raw", tmp, r.disk)) == 0)
			rc = vms_raw__reflink_file(dst, src, 1);
		free(src);
		free(dst);
		if (rc < 0)
			goto done;
	}
	if ((rc = vms_raw__fsync_dir(tmp)) < 0)
		goto done;
	if (rename(tmp, dir) < 0) {
		rc = vms_error_set_errno(errno, "rename %s to %s", tmp, dir);
		goto done;
	}
	rc = vms_raw__fsync_dir(parent);
done:
	if (rc < 0) {
		int keep = rc;
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vms_error_last());
		if (tmp && locked)
			remove_dir_files(tmp);
		vms_raw__free_refs(out_refs, n);
		rc = vms_error_set(keep, "%s", msg);
	}
	if (locked)
		sr_unlock(sr);
	free(dir);
	free(tmp);
	free(parent);
	return rc;
}

static int rl_snapshot_delete(vms_sr_handle *h, const char *vm_key, const char *snap_key,
                              const char *const *snap_refs, size_t n)
{
	rl_sr *sr = RSR(h);
	char *dir = NULL, *del = NULL;
	int rc;

	if ((rc = vms_be__check_snapshot(vm_key, snap_key, snap_refs, n, 1)) < 0)
		return rc;
	if ((rc = pathf(&dir, "%s/%s/snapshots/%s", sr->dir, vm_key, snap_key)) < 0 ||
	    (rc = pathf(&del, "%s.del", dir)) < 0)
		goto done;
	if ((rc = sr_lock(sr)) < 0)
		goto done;
	if (rename(dir, del) < 0) {
		if (errno != ENOENT)
			rc = vms_error_set_errno(errno, "delete snapshot %s@%s", vm_key, snap_key);
	} else if ((rc = vms_raw__fsync_parent(del)) == 0) {
		rc = remove_dir_files(del);
	}
	/* a ".del" left by a crash is finished here too */
	if (rc == 0 && (rc = remove_dir_files(del)) == 0)
		gc_vm_dir(sr, vm_key);
	sr_unlock(sr);
done:
	free(dir);
	free(del);
	return rc;
}

/* Nothing in the filesystem depends on a snapshot (clones share extents,
 * not files), so there is no storage-side deferral: the catalog keeps the
 * isDeleted snapshot and deletes it when it reclaims it (no
 * VMS_CAP_DEFER_DELETE).  The arguments are still checked. */
static int rl_snapshot_defer_delete(vms_sr_handle *h, const char *vm_key, const char *snap_key,
                                    const char *const *snap_refs, size_t n)
{
	(void)h;
	return vms_be__check_snapshot(vm_key, snap_key, snap_refs, n, 1);
}

static int rl_rollback(char **new_refs, vms_sr_handle *h, const char *vm_key, const char *const *refs,
                       const char *const *snap_refs, size_t n)
{
	rl_sr *sr = RSR(h);
	int rc;

	for (size_t i = 0; i < n; i++)
		new_refs[i] = NULL;
	if ((rc = vms_raw__check_key("VM key", vm_key)) < 0 || (rc = vms_raw__check_refs(vm_key, refs, n, 0)) < 0 ||
	    (rc = vms_raw__check_refs(vm_key, snap_refs, n, 1)) < 0)
		return rc;
	if ((rc = sr_lock(sr)) < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_raw_ref d, s;
		char *dst = NULL, *src = NULL;
		vms_raw__ref(&d, refs[i], 0);
		vms_raw__ref(&s, snap_refs[i], 1);
		if ((rc = ref_path(&dst, sr, &d)) == 0 && (rc = ref_path(&src, sr, &s)) == 0)
			rc = vms_raw__reflink_file(dst, src, 0);
		if (rc < 0)
			rc = vms_error_wrap(rc, "rollback of %s to %s", refs[i], snap_refs[i]);
		free(dst);
		free(src);
	}
	sr_unlock(sr);
	return rc;
}

static int rl_clone(char **out_refs, vms_sr_handle *h, const char *dst_vm_key, const char *const *dst_disk_keys,
                    const char *const *src_refs, size_t n)
{
	rl_sr *sr = RSR(h);
	size_t done_n = 0;
	int rc;

	for (size_t i = 0; i < n; i++)
		out_refs[i] = NULL;
	if ((rc = vms_raw__check_key("VM key", dst_vm_key)) < 0 || (rc = vms_raw__check_refs(NULL, src_refs, n, -1)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if ((rc = vms_raw__make_ref(&out_refs[i], dst_vm_key, NULL, dst_disk_keys[i])) < 0)
			goto out;
	if ((rc = sr_lock(sr)) < 0)
		goto out;
	if ((rc = ensure_vm_dir(sr, dst_vm_key, "disks")) == 0) {
		for (; done_n < n && rc == 0; done_n++) {
			vms_raw_ref s, d;
			char *src = NULL, *dst = NULL;
			vms_raw__ref(&s, src_refs[done_n], -1);
			vms_raw__ref(&d, out_refs[done_n], 0);
			if ((rc = ref_path(&src, sr, &s)) == 0 && (rc = ref_path(&dst, sr, &d)) == 0)
				rc = vms_raw__reflink_file(dst, src, 1);
			free(src);
			free(dst);
		}
		if (rc < 0) {
			int keep = rc;
			char msg[1024];
			snprintf(msg, sizeof(msg), "%s", vms_error_last());
			for (size_t i = 0; i + 1 < done_n; i++) {
				vms_raw_ref d;
				char *dst = NULL;
				vms_raw__ref(&d, out_refs[i], 0);
				if (ref_path(&dst, sr, &d) == 0)
					unlink(dst);
				free(dst);
			}
			gc_vm_dir(sr, dst_vm_key);
			rc = vms_error_set(keep, "%s", msg);
		}
	}
	sr_unlock(sr);
out:
	if (rc < 0)
		vms_raw__free_refs(out_refs, n);
	return rc;
}

/* referenced = allocated bytes, unique = bytes in extents shared with no
 * other file (FIEMAP), written = bytes whose extents are not where the
 * previous snapshot of the disk (by seq) has them. */
static int rl_ref_space(vms_ref_space *out, vms_sr_handle *h, const char *ref)
{
	char *path = NULL;
	vms_raw_ref r;
	int rc;

	out->referenced = out->unique = out->written = UINT64_MAX;
	out->granularity = VMS_SPACE_PER_DISK;     /* each disk is its own file */
	if ((rc = vms_be__ref_file(&path, &r, h, ref, -1, rl_path)) < 0)
		return rc;
	if ((rc = vms_raw__allocated(&out->referenced, path)) == 0) {
		rc = vms_raw__unshared(&out->unique, path);
		if (rc == VMS_ENOTSUP) {
			out->unique = UINT64_MAX;
			vms_error_clear();
			rc = 0;
		}
	}
	if (rc == 0) {
		/* written: extents not where the previous snapshot has them */
		uint64_t before = UINT64_MAX, max_seq;
		char *sd = NULL, *prev = NULL;
		if (r.snap[0] && (rc = pathf(&sd, "%s/%s/snapshots/%s", RSR(h)->dir, r.vm, r.snap)) == 0)
			rc = snapmeta_read(&before, sd);
		if (rc == 0 && (rc = snap_scan(&max_seq, &prev, RSR(h), r.vm, r.disk, before)) == 0)
			rc = vms_raw__written(&out->written, path, prev);
		if (rc == VMS_ENOTSUP || rc == VMS_ECORRUPT) {
			out->written = UINT64_MAX;
			vms_error_clear();
			rc = 0;
		}
		free(sd);
		free(prev);
	}
	free(path);
	return rc;
}

static int rl_disk_open(vms_disk **out, vms_sr_handle *h, const char *ref, unsigned flags)
{
	char *path = NULL;
	vms_raw_ref r;
	int rc;

	*out = NULL;
	if ((rc = vms_be__ref_file(&path, &r, h, ref, -1, rl_path)) < 0)
		return rc;
	rc = vms_raw__open(out, path, r.snap[0] ? flags | VMS_DISK_READONLY : flags);
	free(path);
	return rc;
}

/* ---- the layout, walked by check and enumerate ----------------------------------- */

/*
 * A walk visits every entry of the SR directory and of each VM's snapshots
 * directory, under the SR lock: a VM key is gone into, and each disk
 * directory (<vm>/disks, <vm>/snapshots/<snap> for a snapshot key) handed to
 * `disks`; any other entry goes to `other` (NULL: passed over), and so does
 * a snapshots directory that cannot be read (not ENOENT).
 */
typedef struct walker {
	/* a disk directory: of the VM (snap NULL) or of one of its snapshots */
	int (*disks)(void *ctx, const char *dir, const char *vm, const char *snap);
	/* an entry that is not a key, in the SR directory (in_snapshots 0) or
	 * in a VM's snapshots directory (1); err: errno when the latter cannot
	 * be read (path is that directory), else 0 */
	int (*other)(void *ctx, const char *path, const char *name, int in_snapshots, int err);
	void *ctx;
} walker;

static int walk_vm(const walker *w, const rl_sr *sr, const char *vm)
{
	char *p = NULL;
	DIR *d;
	struct dirent *e;
	int rc;

	if ((rc = pathf(&p, "%s/%s/disks", sr->dir, vm)) < 0)
		return rc;
	rc = w->disks(w->ctx, p, vm, NULL);
	free(p);
	if (rc < 0 || (rc = pathf(&p, "%s/%s/snapshots", sr->dir, vm)) < 0)
		return rc;
	if (!(d = opendir(p))) {
		rc = errno == ENOENT || !w->other ? 0 : w->other(w->ctx, p, "snapshots", 0, errno);
		free(p);
		return rc;
	}
	while (rc == 0 && (e = readdir(d))) {
		char *q = NULL;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((rc = pathf(&q, "%s/%s", p, e->d_name)) < 0)
			break;
		if (vms_raw__check_key("snapshot key", e->d_name) == 0) {
			rc = w->disks(w->ctx, q, vm, e->d_name);
		} else {
			vms_error_clear();
			rc = w->other ? w->other(w->ctx, q, e->d_name, 1, 0) : 0;
		}
		free(q);
	}
	closedir(d);
	free(p);
	return rc;
}

static int walk(const walker *w, rl_sr *sr)
{
	DIR *d;
	struct dirent *e;
	int rc;

	if ((rc = sr_lock(sr)) < 0)
		return rc;
	if (!(d = opendir(sr->dir))) {
		rc = vms_error_set_errno(errno, "open %s", sr->dir);
		goto done;
	}
	while (rc == 0 && (e = readdir(d))) {
		char *p = NULL;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (vms_raw__check_key("VM key", e->d_name) == 0) {
			rc = walk_vm(w, sr, e->d_name);
			continue;
		}
		vms_error_clear();
		if (w->other && (rc = pathf(&p, "%s/%s", sr->dir, e->d_name)) == 0)
			rc = w->other(w->ctx, p, e->d_name, 0, 0);
		free(p);
	}
	closedir(d);
done:
	sr_unlock(sr);
	return rc;
}

/* ---- check ---------------------------------------------------------------------- */

typedef struct ckctx {
	vms_json *disks, *snaps, *problems;
	unsigned flags;
} ckctx;

static int has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a > b && strcmp(s + a - b, suf) == 0;
}

/* A stale temporary left by a crash: repair removes it, else a problem. */
static int stale(ckctx *c, const char *path, int is_dir)
{
	if (c->flags & VMS_CHECK_REPAIR) {
		int rc = is_dir ? remove_dir_files(path) : (unlink(path) < 0 ? -1 : 0);
		if (rc == 0)
			return 0;
		vms_error_clear();
	}
	return vms_raw__json_addf(c->problems, "stale temporary %s%s (left by an interrupted operation; repair removes it)",
	            path, is_dir ? "/" : "");
}

/* Files "<key>.raw" of one disk directory; adds refs "<vm>[@snap]/<key>". */
static int check_files(void *ctx, const char *dir, const char *vm, const char *snap)
{
	ckctx *c = ctx;
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 : vms_raw__json_addf(c->problems, "cannot read %s: %s", dir, strerror(errno));
	while (rc == 0 && (e = readdir(d))) {
		char *p = NULL, key[VMS_KEY_MAX];
		size_t l = strlen(e->d_name);
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((rc = pathf(&p, "%s/%s", dir, e->d_name)) < 0)
			break;
		if (has_suffix(e->d_name, ".tmp")) {
			rc = stale(c, p, 0);
		} else if (snap && strcmp(e->d_name, SNAPMETA) == 0) {
			uint64_t seq;
			if (snapmeta_read(&seq, dir) < 0) {
				rc = vms_raw__json_addf(c->problems, "%s", vms_error_last());
				vms_error_clear();
			}
		} else if (has_suffix(e->d_name, ".raw") && l - 4 < VMS_KEY_MAX) {
			memcpy(key, e->d_name, l - 4);
			key[l - 4] = '\0';
			if (vms_raw__check_key("disk key", key) < 0 || lstat(p, &st) < 0 || !S_ISREG(st.st_mode)) {
				vms_error_clear();
				rc = vms_raw__json_addf(c->problems, "%s is not a valid disk file", p);
			} else if (snap) {
				rc = vms_raw__json_addf(c->snaps, "%s@%s/%s", vm, snap, key);
			} else {
				rc = vms_raw__json_addf(c->disks, "%s/%s", vm, key);
			}
		} else {
			rc = vms_raw__json_addf(c->problems, "unexpected entry %s", p);
		}
		free(p);
	}
	closedir(d);
	if (rc == 0 && snap) {
		char *m = NULL;
		struct stat st;
		if ((rc = pathf(&m, "%s/" SNAPMETA, dir)) == 0 && stat(m, &st) < 0)
			rc = vms_raw__json_addf(c->problems, "snapshot %s has no %s file", dir, SNAPMETA);
		free(m);
	}
	return rc;
}

/* Entries that are not keys: the marker, stale temporaries (a marker being
 * written, the reflink probe; a snapshot being made or deleted), or a
 * problem. */
static int check_other(void *ctx, const char *path, const char *name, int in_snapshots, int err)
{
	ckctx *c = ctx;

	if (err)
		return vms_raw__json_addf(c->problems, "cannot read %s: %s", path, strerror(err));
	if (in_snapshots ? has_suffix(name, ".tmp") || has_suffix(name, ".del")
	                 : !strcmp(name, MARKER ".tmp") || !strcmp(name, PROBE_SRC) || !strcmp(name, PROBE_DST))
		return stale(c, path, in_snapshots);
	if (!in_snapshots && !strcmp(name, MARKER))
		return 0;
	return vms_raw__json_addf(c->problems, "unexpected entry %s", path);
}

static int rl_check(vms_sr_handle *h, unsigned flags, char **out_report_json)
{
	rl_sr *sr = RSR(h);
	ckctx c = {vms_json_new_array(), vms_json_new_array(), vms_json_new_array(), flags};
	const walker w = {check_files, check_other, &c};
	vms_json *rep = vms_json_new_object();
	int rc = 0, fd = -1;
	size_t nprob;

	*out_report_json = NULL;
	if (!c.disks || !c.snaps || !c.problems || !rep) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if (open_marker(&fd, sr->dir) < 0) {
		if ((rc = vms_raw__json_addf(c.problems, "%s", vms_error_last())) < 0)
			goto done;
		vms_error_clear();
	}
	if ((rc = walk(&w, sr)) < 0)
		goto done;
	nprob = vms_json_array_len(c.problems);
	if (vms_json_object_set_string(rep, "type", "reflink") < 0 ||
	    vms_json_object_set_string(rep, "directory", sr->dir) < 0 ||
	    vms_json_object_set_string(rep, "filesystem", fs_name(sr->dir)) < 0 ||
	    vms_json_object_set_bool(rep, "ok", nprob == 0) < 0 ||
	    vms_json_object_set(rep, "disks", c.disks) < 0) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	c.disks = NULL;
	if (vms_json_object_set(rep, "snapshots", c.snaps) < 0) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	c.snaps = NULL;
	if (vms_json_object_set(rep, "problems", c.problems) < 0) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	c.problems = NULL;
	if ((rc = vms_json_serialize(out_report_json, rep, 0)) < 0)
		goto done;
	if (nprob)
		rc = vms_error_set(VMS_ECORRUPT, "reflink SR %s: %zu problem(s) found", sr->dir, nprob);
done:
	if (fd >= 0)
		close(fd);
	vms_json_free(c.disks);
	vms_json_free(c.snaps);
	vms_json_free(c.problems);
	vms_json_free(rep);
	return rc;
}

/* ---- enumerate -------------------------------------------------------------------- */

static int enum_disks(void *ctx, const char *dir, const char *vm, const char *snap)
{
	return vms_be__enum_files(ctx, dir, vm, snap, VMS_BE_ENUM_MISSING_OK);
}

/* Disks <vm>/disks/<key>.raw and snapshot disks <vm>/snapshots/<snap>/<key>.raw
 * (temporaries, ".del" and invalid names are left to check). */
static int rl_enumerate(vms_sr_handle *h, unsigned flags, char **out_json)
{
	vms_json *arr = vms_json_new_array();
	const walker w = {enum_disks, NULL, arr};
	int rc;

	(void)flags;
	*out_json = NULL;
	if (!arr)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if ((rc = walk(&w, RSR(h))) < 0) {
		vms_json_free(arr);
		return rc;
	}
	return vms_be__enum_result(out_json, arr);
}

const vms_backend vms_backend_reflink = {
	.size = sizeof(vms_backend),
	.type = "reflink",
	.caps = VMS_CAP_SNAPSHOT | VMS_CAP_CLONE | VMS_CAP_ROLLBACK_ANY | VMS_CAP_TRIM | VMS_CAP_BLOCK_STATUS |
	        VMS_CAP_UNIQUE_BYTES | VMS_CAP_CHECK | VMS_CAP_RESIZE,
	.sr_create = rl_sr_create,
	.sr_open = rl_sr_open,
	.sr_close = rl_sr_close,
	.sr_destroy = rl_sr_destroy,
	.sr_space = rl_sr_space,
	.disk_create = rl_disk_create,
	.disk_delete = rl_disk_delete,
	.disk_resize = rl_disk_resize,
	.snapshot_create = rl_snapshot_create,
	.snapshot_delete = rl_snapshot_delete,
	.rollback = rl_rollback,
	.clone = rl_clone,
	.ref_space = rl_ref_space,
	.disk_open = rl_disk_open,
	.disk_close = vms_raw__close,
	.disk_size = vms_raw__size,
	.disk_read = vms_raw__read,
	.disk_write = vms_raw__write,
	.disk_flush = vms_raw__flush,
	.disk_trim = vms_raw__trim,
	.disk_zero = vms_raw__zero,
	.disk_block_status = vms_raw__block_status,
	.check = rl_check,
	.snapshot_defer_delete = rl_snapshot_defer_delete,
	.enumerate = rl_enumerate,
};
