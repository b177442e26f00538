/*
 * zfs.c - the `zfs` SR type: snapshots by ZFS itself (the paper's ZFS
 * snapshot module), driven through the zfs/zpool commands.
 *
 * Object model:
 *   SR        = a dataset "pool/path" (location), user property vmsnap:sr=1,
 *               compression on (so zero-filled blocks become holes: trim).
 *   VM        = the child dataset <sr>/<vm_key>.
 *   disk      = a sparse raw file <mountpoint of the VM dataset>/<disk_key>.raw
 *               (zfs-fuse has no zvols); ref "<vm_key>/<disk_key>".
 *   snapshot  = ONE `zfs snapshot <sr>/<vm_key>@<snap_key>`: atomic across
 *               all disks of the VM (VMS_CAP_ATOMIC_MULTI); the ref of disk D
 *               in it is "<vm_key>@<snap_key>/<D>".
 *   clone     = `zfs clone <sr>/<vm>@<snap> <sr>/<dst_vm>`: the clone VM's
 *               disks live in the clone dataset, renamed to their new keys.
 *   delete    = `zfs destroy`, or `zfs destroy -d` (deferred) when clones
 *               depend on the snapshot: ZFS then keeps it (defer_destroy=on)
 *               until its last clone is destroyed and destroys it itself,
 *               which is the paper's isDeleted + children rule.
 *
 * Reading a snapshot: zfs-fuse does not provide the .zfs/snapshot/
 * directory (not even with snapdir=visible), so a snapshot is read through a
 * "view": a clone <sr>/<vm_key>.view.<snap_key> made on the first open
 * ('.' never occurs in a key, so a view never collides with a VM).  Views
 * are reference counted under one mutex; after the last close a view stays
 * idle for the next open (at most VIEWS_IDLE of them); snapshot_delete
 * destroys an idle view and refuses (BUSY) while one is open; sr_close
 * destroys the SR's idle views.
 *
 * Rollback keeping newer snapshots: `zfs rollback` only goes back to the
 * latest snapshot (-r would destroy the newer ones).  When the target is
 * the latest snapshot and the VM holds exactly the disks being rolled back,
 * `zfs rollback` is used (instant, keeps block sharing).  Otherwise every
 * disk file is copied out of a view of the snapshot, sparsely (zero blocks
 * are skipped), into "<disk>.raw.tmp", fsync'd and renamed over the disk:
 * newer snapshots are untouched.  See docs/backends.md.
 *
 * zfs-fuse specifics met here: `zfs list` has no -p (numbers come from
 * `zfs get -H -p`), there is no `written` property (reported unknown), a
 * fresh dataset often reports "dataset is busy" on destroy until it is
 * unmounted first, st_blocks is always 1 and SEEK_DATA sees no holes (no
 * VMS_CAP_BLOCK_STATUS), fallocate(PUNCH_HOLE) is unsupported (trim
 * writes zeros, which compression turns into holes).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmsnap/backend.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"
#include "vmsnap/pool.h"
#include "vmsnap/run.h"
#include "backend/common_private.h"
#include "backend/rawfile_private.h"

#define ZFS_TIMEOUT_MS 120000u
#define ZFS_NAME_MAX 256
#define SR_PROP "vmsnap:sr"
#define VIEW_SEP ".view."
#define CHARGED_PROP "vmsnap:charged"   /* the disk a VM snapshot's space is reported on */

typedef struct zfs_sr {
	char name[ZFS_NAME_MAX];    /* dataset of the SR */
	char *mnt;                  /* its mountpoint */
} zfs_sr;

#define ZSR(h) ((zfs_sr *)(void *)(h))

/* ---- running zfs/zpool ------------------------------------------------- */

static int map_zfs_error(const char *line)
{
	if (strstr(line, "does not exist") || strstr(line, "no such pool") || strstr(line, "not found"))
		return VMS_ENOTFOUND;
	if (strstr(line, "already exists"))
		return VMS_EEXISTS;
	if (strstr(line, "busy"))
		return VMS_EBUSY;
	if (strstr(line, "dependent clones") || strstr(line, "has children"))
		return VMS_EDEPEND;
	if (strstr(line, "out of space"))
		return VMS_ENOSPC;
	if (strstr(line, "permission denied"))
		return VMS_EPERM;
	if (strstr(line, "invalid") || strstr(line, "bad property"))
		return VMS_EINVAL;
	return VMS_EIO;
}

/*
 * Run argv (zfs or zpool); on a non-zero exit return a vms error naming the
 * command and its first stderr line.  With `out` non-NULL the result is
 * handed to the caller (who frees it) when the command succeeded.
 */
static int zrun(vms_run_result *out, const char *const *argv)
{
	vms_run_result r;
	char line[512], cmd[256];
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	snprintf(cmd, sizeof(cmd), "%s %s%s%s", argv[0], argv[1] ? argv[1] : "",
	         argv[1] && argv[2] ? " " : "", argv[1] && argv[2] ? argv[2] : "");
	rc = vms_run(&r, argv, ZFS_TIMEOUT_MS);
	if (rc < 0) {
		vms_run_result_free(&r);
		if (rc == VMS_ENOTFOUND)
			return vms_error_set(VMS_ENOTSUP, "%s: the %s command is not installed (zfs-fuse or "
			                     "OpenZFS is needed for zfs SRs)", cmd, argv[0]);
		return vms_error_wrap(rc, "%s", cmd);
	}
	if (r.exit_status != 0) {
		const char *last = argv[0];
		for (int i = 1; argv[i]; i++)
			last = argv[i];
		vms_run_first_line(&r, line, sizeof(line));
		rc = vms_error_set(map_zfs_error(line), "%s ... %s failed (exit %d): %s", cmd, last,
		                   r.exit_status, line[0] ? line : "(no message)");
		vms_run_result_free(&r);
		return rc;
	}
	if (out)
		*out = r;
	else
		vms_run_result_free(&r);
	return 0;
}

/* One property value of a dataset (zfs get -H -p -o value). */
static int zget(char *val, size_t n, const char *ds, const char *prop)
{
	const char *argv[] = {"zfs", "get", "-H", "-p", "-o", "value", prop, ds, NULL};
	vms_run_result r;
	int rc;

	if ((rc = zrun(&r, argv)) < 0)
		return rc;
	snprintf(val, n, "%.*s", (int)strcspn(r.out, "\n"), r.out);
	vms_run_result_free(&r);
	return 0;
}

static int zget_u64(uint64_t *out, const char *ds, const char *prop)
{
	char v[64], *end;
	int rc;

	*out = UINT64_MAX;
	if ((rc = zget(v, sizeof(v), ds, prop)) < 0)
		return rc;
	if (strcmp(v, "-") == 0)
		return 0;                      /* not applicable: unknown */
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || end == v || *end)
		return vms_error_set(VMS_EIO, "zfs get %s %s: unexpected value '%s'", prop, ds, v);
	*out = x;
	return 0;
}

static int zexists(const char *ds)
{
	const char *argv[] = {"zfs", "list", "-H", "-o", "name", ds, NULL};
	int rc = zrun(NULL, argv);

	if (rc == VMS_ENOTFOUND) {
		vms_error_clear();
		return 0;
	}
	return rc < 0 ? rc : 1;
}

/* Names printed by a `zfs list -H -o name ...`, one per line, into a
 * malloc'd NULL-terminated array. */
static int zlist(char ***out, size_t *count, const char *const *argv)
{
	vms_run_result r;
	char **v = NULL, *p, *save = NULL;
	size_t n = 0, cap = 0;
	int rc;

	*out = NULL;
	*count = 0;
	if ((rc = zrun(&r, argv)) < 0)
		return rc;
	for (p = strtok_r(r.out, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
		if (!*p)
			continue;
		if (n + 2 > cap) {
			char **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
			if (!nv)
				goto oom;
			v = nv;
		}
		if (!(v[n] = strdup(p)))
			goto oom;
		v[++n] = NULL;
	}
	if (!v && !(v = calloc(1, sizeof(*v))))
		goto oom;
	vms_run_result_free(&r);
	*out = v;
	*count = n;
	return 0;
oom:
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	vms_run_result_free(&r);
	return vms_error_set(VMS_ENOMEM, "out of memory");
}

static void free_list(char **v)
{
	if (!v)
		return;
	for (size_t i = 0; v[i]; i++)
		free(v[i]);
	free(v);
}

/* Snapshots of one dataset, oldest first (zfs orders a dataset's snapshots
 * by creation txg). */
static int zsnapshots(char ***out, size_t *n, const char *ds)
{
	const char *argv[] = {"zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-d", "1", ds, NULL};
	return zlist(out, n, argv);
}

/*
 * Destroy a dataset or snapshot.  zfs-fuse often answers "dataset is busy"
 * for a filesystem that is still mounted, so filesystems are unmounted
 * first, and a busy answer is retried a few times.
 */
static int zdestroy(const char *ds, int deferred)
{
	int rc = 0;

	for (int attempt = 0; attempt < 20; attempt++) {
		if (!strchr(ds, '@')) {
			const char *um[] = {"zfs", "umount", ds, NULL};
			if (zrun(NULL, um) < 0)
				vms_error_clear();     /* not mounted: fine */
		}
		const char *d1[] = {"zfs", "destroy", ds, NULL};
		const char *d2[] = {"zfs", "destroy", "-d", ds, NULL};
		rc = zrun(NULL, deferred ? d2 : d1);
		if (rc != VMS_EBUSY)
			break;
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (rc < 0 && !strchr(ds, '@')) {
		const char *mnt[] = {"zfs", "mount", ds, NULL};
		int keep = vms_error_last_code();
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vms_error_last());
		if (zrun(NULL, mnt) < 0)
			vms_error_clear();
		return vms_error_set(keep, "%s", msg);
	}
	return rc;
}

static int ds_name(char out[ZFS_NAME_MAX], const zfs_sr *sr, const char *vm, const char *snap)
{
	int n;

	if (snap && *snap)
		n = snprintf(out, ZFS_NAME_MAX, "%s/%s@%s", sr->name, vm, snap);
	else
		n = snprintf(out, ZFS_NAME_MAX, "%s/%s", sr->name, vm);
	if (n < 0 || n >= ZFS_NAME_MAX)
		return vms_error_set(VMS_EINVAL, "dataset name for VM %s in %s is too long", vm, sr->name);
	return 0;
}

static int view_name(char out[ZFS_NAME_MAX], const zfs_sr *sr, const char *vm, const char *snap)
{
	int n = snprintf(out, ZFS_NAME_MAX, "%s/%s" VIEW_SEP "%s", sr->name, vm, snap);
	if (n < 0 || n >= ZFS_NAME_MAX)
		return vms_error_set(VMS_EINVAL, "view dataset name for %s@%s is too long", vm, snap);
	return 0;
}

/* malloc'd mountpoint of a mounted filesystem dataset. */
static int zmountpoint(char **out, const char *ds)
{
	char v[4096];
	int rc;

	*out = NULL;
	if ((rc = zget(v, sizeof(v), ds, "mounted")) < 0)
		return rc;
	if (strcmp(v, "yes") != 0) {
		const char *argv[] = {"zfs", "mount", ds, NULL};
		if ((rc = zrun(NULL, argv)) < 0)
			return vms_error_wrap(rc, "dataset %s is not mounted", ds);
	}
	if ((rc = zget(v, sizeof(v), ds, "mountpoint")) < 0)
		return rc;
	if (v[0] != '/')
		return vms_error_set(VMS_EINVAL, "dataset %s has no usable mountpoint ('%s')", ds, v);
	if (!(*out = strdup(v)))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	return 0;
}

/* Is a filesystem other than the parent's mounted on dir? */
static int is_mount(const char *parent, const char *dir)
{
	struct stat a, b;
	return stat(parent, &a) == 0 && stat(dir, &b) == 0 && S_ISDIR(b.st_mode) && a.st_dev != b.st_dev;
}

/*
 * Mountpoint of a child dataset <sr>/<child>: the inherited place
 * <sr mountpoint>/<child> when a different filesystem is mounted there
 * (fast, no command), else asked from zfs.
 */
static int child_mnt(char **out, const zfs_sr *sr, const char *child)
{
	char ds[ZFS_NAME_MAX];
	char *p = NULL;
	int rc;

	*out = NULL;
	if ((rc = vms_raw__join(&p, sr->mnt, child)) < 0)
		return rc;
	if (is_mount(sr->mnt, p)) {
		*out = p;
		return 0;
	}
	free(p);
	if (snprintf(ds, sizeof(ds), "%s/%s", sr->name, child) >= (int)sizeof(ds))
		return vms_error_set(VMS_EINVAL, "dataset name too long");
	return zmountpoint(out, ds);
}

/* "<dir>/<disk>.raw" */
static int disk_file(char **out, const char *dir, const char *disk)
{
	char name[VMS_KEY_MAX + 8];
	snprintf(name, sizeof(name), "%s.raw", disk);
	return vms_raw__join(out, dir, name);
}

/* ---- views: read-only clones for reading snapshots ---------------------- */

typedef struct zview {
	struct zview *next;
	char ds[ZFS_NAME_MAX];
	char *mnt;
	unsigned refs;
} zview;

static pthread_mutex_t g_views_lock = PTHREAD_MUTEX_INITIALIZER;
static zview *g_views;

static void view_destroy_locked(zview *v);

static int view_acquire(zview **out, const zfs_sr *sr, const char *vm, const char *snap)
{
	char name[ZFS_NAME_MAX], snapds[ZFS_NAME_MAX];
	zview *v;
	int rc = 0;

	*out = NULL;
	if ((rc = view_name(name, sr, vm, snap)) < 0 || (rc = ds_name(snapds, sr, vm, snap)) < 0)
		return rc;
	pthread_mutex_lock(&g_views_lock);
	for (v = g_views; v; v = v->next)
		if (strcmp(v->ds, name) == 0)
			break;
	if (v && v->refs == 0 && !is_mount(sr->mnt, v->mnt)) {
		view_destroy_locked(v);      /* destroyed by another process (check --repair) */
		v = NULL;
	}
	if (v) {
		v->refs++;
		*out = v;
		goto done;
	}
	if (!(v = calloc(1, sizeof(*v)))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	snprintf(v->ds, sizeof(v->ds), "%s", name);
	{
		const char *argv[] = {"zfs", "clone", snapds, name, NULL};
		rc = zrun(NULL, argv);
		if (rc == VMS_EEXISTS) {          /* left by a crash or another process */
			vms_error_clear();
			rc = 0;
		} else if (rc == VMS_ENOTFOUND) {
			rc = vms_error_wrap(rc, "snapshot %s", snapds);
		}
	}
	if (rc == 0 && (rc = child_mnt(&v->mnt, sr, name + strlen(sr->name) + 1)) < 0)
		(void)0;
	if (rc < 0) {
		free(v->mnt);
		free(v);
		goto done;
	}
	v->refs = 1;
	v->next = g_views;
	g_views = v;
	*out = v;
done:
	pthread_mutex_unlock(&g_views_lock);
	return rc;
}

/* Unlink v from the table and destroy its dataset (lock held).  Best
 * effort: a view another process still reads stays, and the next
 * snapshot_delete or check removes it. */
static void view_destroy_locked(zview *v)
{
	for (zview **pp = &g_views; *pp; pp = &(*pp)->next)
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	if (zdestroy(v->ds, 0) < 0)
		vms_error_clear();
	free(v->mnt);
	free(v);
}

/*
 * The last close keeps the view idle (refs 0) for the next open: NBD
 * clients and verifications reopen the same snapshot often, and a view
 * costs a clone and a destroy.  At most VIEWS_IDLE idle views are kept
 * (the oldest go first); snapshot_delete and sr_close destroy them.
 */
#define VIEWS_IDLE 8

static void view_release(void *p)
{
	zview *v = p, *oldest = NULL;
	unsigned idle = 0;

	if (!v)
		return;
	pthread_mutex_lock(&g_views_lock);
	if (--v->refs == 0) {
		for (zview *w = g_views; w; w = w->next)
			if (w->refs == 0) {
				idle++;
				oldest = w;      /* new views go to the head: the last idle is the oldest */
			}
		if (idle > VIEWS_IDLE && oldest)
			view_destroy_locked(oldest);
	}
	pthread_mutex_unlock(&g_views_lock);
}

/*
 * Remove the view of a snapshot before deleting it: BUSY when it is open
 * here, unless `open_ok` (a deferred destroy: ZFS counts the open view as
 * one more clone and destroys the snapshot after it).
 */
static int view_drop(const zfs_sr *sr, const char *vm, const char *snap, int open_ok)
{
	char name[ZFS_NAME_MAX];
	int rc;

	if ((rc = view_name(name, sr, vm, snap)) < 0)
		return rc;
	pthread_mutex_lock(&g_views_lock);
	for (zview *v = g_views; v; v = v->next)
		if (strcmp(v->ds, name) == 0) {
			if (v->refs) {
				pthread_mutex_unlock(&g_views_lock);
				return open_ok ? 0 : vms_error_set(VMS_EBUSY, "snapshot %s@%s is open for reading", vm, snap);
			}
			view_destroy_locked(v);
			break;
		}
	pthread_mutex_unlock(&g_views_lock);
	if ((rc = zexists(name)) <= 0)
		return rc;
	if ((rc = zdestroy(name, 0)) < 0 && open_ok) {
		vms_error_clear();       /* another process reads it: ZFS waits for it */
		rc = 0;
	}
	return rc;
}

/* Destroy the idle views of an SR (sr_close). */
static void views_close(const zfs_sr *sr)
{
	size_t n = strlen(sr->name);
	zview *v, *next;

	pthread_mutex_lock(&g_views_lock);
	for (v = g_views; v; v = next) {
		next = v->next;
		if (v->refs == 0 && strncmp(v->ds, sr->name, n) == 0 && v->ds[n] == '/')
			view_destroy_locked(v);
	}
	pthread_mutex_unlock(&g_views_lock);
}

/* ---- SR ------------------------------------------------------------------ */

static int check_location(const char *loc)
{
	size_t n = loc ? strlen(loc) : 0;

	if (n == 0 || n >= ZFS_NAME_MAX - 2 * VMS_KEY_MAX - 8)
		return vms_error_set(VMS_EINVAL, "invalid zfs SR location '%s': expected pool/dataset",
		                     loc ? loc : "");
	if (!strchr(loc, '/') || loc[0] == '/' || loc[n - 1] == '/' || strstr(loc, "//"))
		return vms_error_set(VMS_EINVAL, "invalid zfs SR location '%s': expected a dataset name "
		                     "pool/dataset (not a path, not the pool's root dataset)", loc);
	for (size_t i = 0; i < n; i++) {
		char c = loc[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.' || c == ':' || c == '/'))
			return vms_error_set(VMS_EINVAL, "invalid zfs SR location '%s': character '%c' is not "
			                     "allowed in a dataset name", loc, c);
		/* Every component starts with a letter or digit: no "." or ".."
		 * (path-like), no leading '-' (read as an option by zfs). */
		if ((i == 0 || loc[i - 1] == '/') &&
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return vms_error_set(VMS_EINVAL, "invalid zfs SR location '%s': each component of a "
			                     "dataset name starts with a letter or digit", loc);
	}
	return 0;
}

static int valid_option(const char *kv)
{
	const char *eq = strchr(kv, '=');

	if (!eq || eq == kv || !eq[1])
		return 0;
	for (const char *p = kv; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.' || c == ':' || c == '=' || c == '/'))
			return 0;
	}
	return 1;
}

static int zfs_sr_create(const char *location, uint64_t size, const char *options)
{
	const char *argv[48];
	char quota[64], *opts = NULL, *save = NULL;
	size_t a = 0;
	int rc, have_compression = 0;

	if ((rc = check_location(location)) < 0)
		return rc;
	argv[a++] = "zfs";
	argv[a++] = "create";
	argv[a++] = "-o";
	argv[a++] = SR_PROP "=1";
	if (size) {
		snprintf(quota, sizeof(quota), "quota=%llu", (unsigned long long)size);
		argv[a++] = "-o";
		argv[a++] = quota;
	}
	if (options && *options) {
		if (!(opts = strdup(options)))
			return vms_error_set(VMS_ENOMEM, "out of memory");
		for (char *kv = strtok_r(opts, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
			if (!valid_option(kv)) {
				rc = vms_error_set(VMS_EINVAL, "invalid zfs SR option '%s': expected "
				                   "property=value", kv);
				goto done;
			}
			if (a + 6 >= sizeof(argv) / sizeof(argv[0])) {
				rc = vms_error_set(VMS_EINVAL, "too many zfs SR options");
				goto done;
			}
			if (strncmp(kv, "compression=", 12) == 0)
				have_compression = 1;
			argv[a++] = "-o";
			argv[a++] = kv;
		}
	}
	if (!have_compression) {
		argv[a++] = "-o";
		argv[a++] = "compression=on";
	}
	argv[a++] = location;
	argv[a] = NULL;
	rc = zrun(NULL, argv);
	if (rc < 0)
		rc = vms_error_wrap(rc, "create zfs SR %s", location);
done:
	free(opts);
	return rc;
}

static int zfs_sr_open(vms_sr_handle **out, const char *location)
{
	zfs_sr *sr = NULL;
	char v[64];
	int rc;

	*out = NULL;
	if ((rc = check_location(location)) < 0)
		return rc;
	if ((rc = zget(v, sizeof(v), location, SR_PROP)) < 0)
		return vms_error_wrap(rc, "open zfs SR %s", location);
	if (strcmp(v, "1") != 0)
		return vms_error_set(VMS_EINVAL, "dataset %s is not a vmsnap SR (property %s is '%s'); "
		                     "create it with sr create", location, SR_PROP, v);
	if (!(sr = calloc(1, sizeof(*sr))))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	snprintf(sr->name, sizeof(sr->name), "%s", location);
	if ((rc = zmountpoint(&sr->mnt, location)) < 0) {
		free(sr);
		return vms_error_wrap(rc, "open zfs SR %s", location);
	}
	*out = (vms_sr_handle *)(void *)sr;
	return 0;
}

static int zfs_sr_close(vms_sr_handle *h)
{
	zfs_sr *sr = ZSR(h);

	if (sr) {
		views_close(sr);
		free(sr->mnt);
		free(sr);
	}
	return 0;
}

static int zfs_sr_destroy(const char *location)
{
	const char *argv[] = {"zfs", "list", "-H", "-o", "name", "-r", "-t", "all", location, NULL};
	char **names = NULL, *mnt = NULL;
	size_t n = 0;
	DIR *d = NULL;
	int rc;

	if ((rc = check_location(location)) < 0)
		return rc;
	if ((rc = zlist(&names, &n, argv)) < 0) {
		/* old zfs has no "-t all" */
		const char *argv2[] = {"zfs", "list", "-H", "-o", "name", "-r", "-t",
		                       "filesystem,snapshot,volume", location, NULL};
		vms_error_clear();
		if ((rc = zlist(&names, &n, argv2)) < 0)
			return vms_error_wrap(rc, "destroy zfs SR %s", location);
	}
	if (n > 1) {
		rc = vms_error_set(VMS_EDEPEND, "zfs SR %s is not empty: it holds %zu datasets or "
		                   "snapshots (first: %s)", location, n - 1, names[1]);
		goto done;
	}
	if ((rc = zmountpoint(&mnt, location)) < 0)
		goto done;
	if ((d = opendir(mnt))) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				rc = vms_error_set(VMS_EDEPEND, "zfs SR %s is not empty: %s/%s exists",
				                   location, mnt, e->d_name);
				goto done;
			}
		closedir(d);      /* an open directory keeps the dataset busy */
		d = NULL;
	}
	rc = zdestroy(location, 0);
done:
	if (d)
		closedir(d);
	free(mnt);
	free_list(names);
	return rc;
}

static int zfs_sr_space(vms_sr_space *out, vms_sr_handle *h)
{
	zfs_sr *sr = ZSR(h);
	uint64_t used, avail;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = zget_u64(&used, sr->name, "used")) < 0 || (rc = zget_u64(&avail, sr->name, "available")) < 0)
		return rc;
	out->used_bytes = used;
	out->free_bytes = avail;
	out->total_bytes = used + avail;
	return 0;
}

/* ---- refs and VM datasets ---------------------------------------------- */

/* Create the VM dataset if missing. */
static int ensure_vm(const zfs_sr *sr, const char *vm)
{
	char ds[ZFS_NAME_MAX];
	int rc;

	if ((rc = ds_name(ds, sr, vm, NULL)) < 0)
		return rc;
	if ((rc = zexists(ds)) != 0)
		return rc < 0 ? rc : 0;
	const char *argv[] = {"zfs", "create", ds, NULL};
	rc = zrun(NULL, argv);
	if (rc == VMS_EEXISTS) {
		vms_error_clear();
		rc = 0;
	}
	return rc;
}

/* Number of entries (files) in a directory, -1 on error (message set). */
static long dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	long n = 0;

	if (!d) {
		vms_error_set_errno(errno, "open directory %s", dir);
		return -1;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Is any dataset of the pool a clone of `snapds`? (views excluded) */
static int has_clones(const zfs_sr *sr, const char *snapds)
{
	const char *argv[] = {"zfs", "list", "-H", "-o", "name,origin", "-r", "-t", "filesystem",
	                      sr->name, NULL};
	char **lines = NULL;
	size_t n = 0;
	int rc, found = 0;

	if ((rc = zlist(&lines, &n, argv)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		char *tab = strchr(lines[i], '\t');
		if (tab && strcmp(tab + 1, snapds) == 0 && !strstr(lines[i], VIEW_SEP))
			found = 1;
	}
	free_list(lines);
	return found;
}

/*
 * Destroy the VM dataset when nothing is left in it: no file, no snapshot.
 * (A clone's origin snapshot, if deferred-destroyed, then goes with it.)
 */
static int gc_vm(const zfs_sr *sr, const char *vm)
{
	char ds[ZFS_NAME_MAX], **snaps = NULL;
	char *mnt = NULL;
	size_t n = 0;
	long files;
	int rc;

	if ((rc = ds_name(ds, sr, vm, NULL)) < 0)
		return rc;
	if ((rc = zexists(ds)) <= 0)
		return rc;
	if ((rc = zsnapshots(&snaps, &n, ds)) < 0)
		return rc;
	free_list(snaps);
	if (n > 0)
		return 0;
	if ((rc = child_mnt(&mnt, sr, vm)) < 0)
		return rc;
	files = dir_entries(mnt);
	free(mnt);
	if (files < 0)
		return VMS_EIO;
	if (files > 0)
		return 0;
	return zdestroy(ds, 0);
}

static int live_path(char **out, const zfs_sr *sr, const vms_raw_ref *r)
{
	char *mnt = NULL;
	int rc;

	*out = NULL;
	if ((rc = child_mnt(&mnt, sr, r->vm)) < 0)
		return rc;
	rc = disk_file(out, mnt, r->disk);
	free(mnt);
	return rc;
}

/* ---- disks ---------------------------------------------------------------- */

/* Resolvers of the shared verbs (common.c): a live disk's file, and that of
 * a new disk (its VM dataset made first). */
static int zfs_disk_path(char **out, vms_sr_handle *h, const vms_raw_ref *r)
{
	return live_path(out, ZSR(h), r);
}

static int zfs_new_disk_path(char **out, vms_sr_handle *h, const vms_raw_ref *r)
{
	int rc = ensure_vm(ZSR(h), r->vm);
	return rc < 0 ? rc : live_path(out, ZSR(h), r);
}

static int zfs_disk_create(char **out_ref, vms_sr_handle *h, const char *vm_key, const char *disk_key,
                           uint64_t size)
{
	return vms_be__disk_create(out_ref, h, vm_key, disk_key, size, zfs_new_disk_path);
}

static int zfs_disk_delete(vms_sr_handle *h, const char *ref)
{
	char *path = NULL;
	vms_raw_ref r;
	int rc;

	if ((rc = vms_be__ref_file(&path, &r, h, ref, 0, zfs_disk_path)) == 0 &&
	    (rc = vms_raw__delete_file(path, ref)) == 0)
		rc = gc_vm(ZSR(h), r.vm);
	free(path);
	return rc;
}

static int zfs_disk_resize(vms_sr_handle *h, const char *ref, uint64_t size)
{
	return vms_be__disk_resize(h, ref, size, zfs_disk_path);
}

/* ---- snapshots ------------------------------------------------------------ */

/* Validate refs[0..n) as disk (want_snap 0) or snapshot refs of VM `vm`. */
static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return vms_error_set_errno(errno, "open %s", path);
	if (fsync(fd) < 0)
		rc = vms_error_set_errno(errno, "fsync %s", path);
	close(fd);
	return rc;
}

static int zfs_snapshot_create(char **out_refs, vms_sr_handle *h, const char *vm_key, const char *snap_key,
                               const char *const *refs, size_t n)
{
	zfs_sr *sr = ZSR(h);
	char snapds[ZFS_NAME_MAX];
	int rc;

	for (size_t i = 0; i < n; i++)
		out_refs[i] = NULL;
	if ((rc = vms_be__check_snapshot(vm_key, snap_key, refs, n, 0)) < 0 ||
	    (rc = ds_name(snapds, sr, vm_key, snap_key)) < 0 || (rc = ensure_vm(sr, vm_key)) < 0)
		return rc;
	/* Everything written through other handles reaches ZFS before the
	 * snapshot (the caller has held writes). */
	for (size_t i = 0; i < n; i++) {
		vms_raw_ref r;
		char *path = NULL;
		vms_raw__ref(&r, refs[i], 0);
		if ((rc = live_path(&path, sr, &r)) == 0)
			rc = fsync_path(path);
		free(path);
		if (rc < 0)
			return rc;
	}
	char charged[VMS_KEY_MAX + sizeof(CHARGED_PROP) + 1] = CHARGED_PROP "=-";
	const char *first = NULL;
	for (size_t i = 0; i < n; i++) {
		vms_raw_ref r;
		vms_raw__ref(&r, refs[i], 0);
		if ((rc = vms_raw__make_ref(&out_refs[i], vm_key, snap_key, r.disk)) < 0)
			goto done;
		const char *k = strchr(out_refs[i], '/') + 1;
		if (!first || strcmp(k, first) < 0)
			first = k;
	}
	if (first)
		snprintf(charged, sizeof(charged), CHARGED_PROP "=%s", first);
	{
		const char *argv[] = {"zfs", "snapshot", "-o", charged, snapds, NULL};
		rc = zrun(NULL, argv);
	}
done:
	if (rc < 0)
		vms_raw__free_refs(out_refs, n);
	return rc;
}

/*
 * Delete a VM snapshot (defer 0), or mirror the catalog's isDeleted (defer
 * 1, snapshot_defer_delete).
 *
 * Delete: idle views go first (BUSY while one is open); already gone is done
 * (ZFS destroyed a deferred snapshot with its last clone) and the VM
 * dataset is destroyed once empty; a snapshot that still has ZFS clones is
 * destroyed deferred (`zfs destroy -d`).
 *
 * Defer: the catalog marked it isDeleted because clones depend on it:
 * `zfs destroy -d` (defer_destroy=on), so that ZFS destroys it itself when
 * its last clone dataset goes.  Only when ZFS has a clone of it: a clone
 * made by copying (several source snapshots, or into an existing VM) does
 * not depend on it in ZFS, and `destroy -d` would then destroy it at once
 * under a catalog row that still names it; it is kept until the catalog
 * reclaims it.  Gone already: done.  Idle views go first; an open one is
 * one more clone for ZFS, which destroys the snapshot after it.
 */
static int snap_remove(vms_sr_handle *h, const char *vm_key, const char *snap_key, const char *const *snap_refs,
                       size_t n, int defer)
{
	zfs_sr *sr = ZSR(h);
	char snapds[ZFS_NAME_MAX];
	int rc, clones;

	if ((rc = vms_be__check_snapshot(vm_key, snap_key, snap_refs, n, 1)) < 0 ||
	    (rc = ds_name(snapds, sr, vm_key, snap_key)) < 0 || (rc = view_drop(sr, vm_key, snap_key, defer)) < 0 ||
	    (rc = zexists(snapds)) < 0)
		return rc;
	if (rc == 0)
		return defer ? 0 : gc_vm(sr, vm_key);
	if ((clones = has_clones(sr, snapds)) < 0 || (defer && !clones))
		return clones;
	if ((rc = zdestroy(snapds, clones)) == VMS_ENOTFOUND && defer) {
		vms_error_clear();       /* its last clone went meanwhile */
		rc = 0;
	}
	return rc < 0 || clones ? rc : gc_vm(sr, vm_key);
}

static int zfs_snapshot_delete(vms_sr_handle *h, const char *vm_key, const char *snap_key,
                               const char *const *snap_refs, size_t n)
{
	return snap_remove(h, vm_key, snap_key, snap_refs, n, 0);
}

static int zfs_snapshot_defer_delete(vms_sr_handle *h, const char *vm_key, const char *snap_key,
                                     const char *const *snap_refs, size_t n)
{
	return snap_remove(h, vm_key, snap_key, snap_refs, n, 1);
}

/* Copy the file of snapshot disk `snap` (via a view) over `dst`. */
static int copy_from_snapshot(const zfs_sr *sr, const vms_raw_ref *snap, const char *dst, int exclusive)
{
	zview *v = NULL;
	char *src = NULL;
	int rc;

	if ((rc = view_acquire(&v, sr, snap->vm, snap->snap)) < 0)
		return rc;
	if ((rc = disk_file(&src, v->mnt, snap->disk)) == 0)
		rc = vms_raw__copy_file(dst, src, exclusive);
	free(src);
	view_release(v);
	return rc;
}

/* Is snapds the latest snapshot of its VM, and does the VM hold exactly the
 * disks in refs (so that `zfs rollback` changes nothing else)? */
static int can_zfs_rollback(const zfs_sr *sr, const char *vm, const char *snap,
                            const char *const *refs, const char *const *snap_refs, size_t n)
{
	char vmds[ZFS_NAME_MAX], snapds[ZFS_NAME_MAX], **snaps = NULL, *mnt = NULL;
	size_t ns = 0;
	long files;
	int rc, ok;

	for (size_t i = 0; i < n; i++) {
		vms_raw_ref a, b;
		vms_raw__ref(&a, refs[i], 0);
		vms_raw__ref(&b, snap_refs[i], 1);
		if (strcmp(a.disk, b.disk) != 0)
			return 0;
		for (size_t j = 0; j < i; j++)
			if (strcmp(refs[i], refs[j]) == 0)
				return 0;
	}
	if ((rc = ds_name(vmds, sr, vm, NULL)) < 0 || (rc = ds_name(snapds, sr, vm, snap)) < 0)
		return rc;
	if ((rc = zsnapshots(&snaps, &ns, vmds)) < 0)
		return rc;
	ok = ns > 0 && strcmp(snaps[ns - 1], snapds) == 0;
	free_list(snaps);
	if (!ok)
		return 0;
	if ((rc = child_mnt(&mnt, sr, vm)) < 0)
		return rc;
	files = dir_entries(mnt);
	for (size_t i = 0; ok && i < n; i++) {
		vms_raw_ref a;
		char *p = NULL;
		struct stat st;
		vms_raw__ref(&a, refs[i], 0);
		if (disk_file(&p, mnt, a.disk) < 0 || stat(p, &st) < 0)
			ok = 0;
		free(p);
	}
	free(mnt);
	if (files < 0)
		return VMS_EIO;
	return ok && files == (long)n;
}

static int zfs_rollback(char **new_refs, vms_sr_handle *h, const char *vm_key, const char *const *refs,
                        const char *const *snap_refs, size_t n)
{
	zfs_sr *sr = ZSR(h);
	vms_raw_ref s0;
	int rc;

	for (size_t i = 0; i < n; i++)
		new_refs[i] = NULL;
	if (n == 0)
		return 0;
	if ((rc = vms_raw__check_key("VM key", vm_key)) < 0 || (rc = vms_raw__check_refs(vm_key, refs, n, 0)) < 0 ||
	    (rc = vms_raw__check_refs(vm_key, snap_refs, n, 1)) < 0)
		return rc;
	vms_raw__ref(&s0, snap_refs[0], 1);
	for (size_t i = 1; i < n; i++) {
		vms_raw_ref s;
		vms_raw__ref(&s, snap_refs[i], 1);
		if (strcmp(s.snap, s0.snap) != 0)
			return vms_error_set(VMS_EINVAL, "rollback: snapshot refs '%s' and '%s' are of different "
			                     "snapshots", snap_refs[0], snap_refs[i]);
	}
	if ((rc = can_zfs_rollback(sr, vm_key, s0.snap, refs, snap_refs, n)) < 0)
		return rc;
	if (rc == 1) {
		char snapds[ZFS_NAME_MAX];
		ds_name(snapds, sr, vm_key, s0.snap);
		const char *argv[] = {"zfs", "rollback", snapds, NULL};
		if (zrun(NULL, argv) == 0)
			return 0;
		vms_error_clear();     /* e.g. busy: copy the files instead */
	}
	for (size_t i = 0; i < n; i++) {
		vms_raw_ref d, s;
		char *dst = NULL;
		vms_raw__ref(&d, refs[i], 0);
		vms_raw__ref(&s, snap_refs[i], 1);
		if ((rc = live_path(&dst, sr, &d)) == 0)
			rc = copy_from_snapshot(sr, &s, dst, 0);
		free(dst);
		if (rc < 0)
			return vms_error_wrap(rc, "rollback of %s to %s", refs[i], snap_refs[i]);
	}
	return 0;
}

/*
 * Clone through `zfs clone` when every source is a disk of one snapshot and
 * the destination VM has no dataset yet; else copy files sparsely.
 */
static int zfs_clone(char **out_refs, vms_sr_handle *h, const char *dst_vm_key,
                     const char *const *dst_disk_keys, const char *const *src_refs, size_t n)
{
	zfs_sr *sr = ZSR(h);
	char dstds[ZFS_NAME_MAX], *mnt = NULL;
	vms_raw_ref s0;
	int rc, fast = n > 0;

	for (size_t i = 0; i < n; i++)
		out_refs[i] = NULL;
	if ((rc = vms_raw__check_key("VM key", dst_vm_key)) < 0 || (rc = ds_name(dstds, sr, dst_vm_key, NULL)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		vms_raw_ref s;
		if ((rc = vms_raw__ref(&s, src_refs[i], -1)) < 0 ||
		    (rc = vms_raw__make_ref(&out_refs[i], dst_vm_key, NULL, dst_disk_keys[i])) < 0)
			goto done;
		for (size_t j = 0; j < i; j++)
			if (strcmp(dst_disk_keys[i], dst_disk_keys[j]) == 0) {
				rc = vms_error_set(VMS_EINVAL, "clone: disk key %s given twice", dst_disk_keys[i]);
				goto done;
			}
		if (i == 0)
			s0 = s;
		if (!s.snap[0] || strcmp(s.vm, s0.vm) || strcmp(s.snap, s0.snap))
			fast = 0;
		if (strcmp(s.vm, dst_vm_key) == 0)
			fast = 0;
	}
	if ((rc = zexists(dstds)) < 0)
		goto done;
	if (rc == 1)
		fast = 0;
	if (fast) {
		char snapds[ZFS_NAME_MAX];
		if ((rc = ds_name(snapds, sr, s0.vm, s0.snap)) < 0)
			goto done;
		const char *argv[] = {"zfs", "clone", snapds, dstds, NULL};
		if ((rc = zrun(NULL, argv)) < 0 || (rc = child_mnt(&mnt, sr, dst_vm_key)) < 0)
			goto done;
		/* phase 1: each source file to "<dst>.clone" (copies for a source used twice) */
		for (size_t i = 0; i < n && rc == 0; i++) {
			vms_raw_ref s;
			char *from = NULL, *to = NULL, name[VMS_KEY_MAX + 8];
			size_t first = i;
			vms_raw__ref(&s, src_refs[i], 1);
			for (size_t j = 0; j < i; j++)
				if (strcmp(src_refs[j], src_refs[i]) == 0) {
					first = j;
					break;
				}
			snprintf(name, sizeof(name), "%s.clone", dst_disk_keys[i]);
			if ((rc = vms_raw__join(&to, mnt, name)) == 0) {
				if (first == i) {
					if ((rc = disk_file(&from, mnt, s.disk)) == 0 && rename(from, to) < 0)
						rc = vms_error_set_errno(errno, "clone: rename %s", from);
				} else {
					snprintf(name, sizeof(name), "%s.clone", dst_disk_keys[first]);
					if ((rc = vms_raw__join(&from, mnt, name)) == 0)
						rc = vms_raw__copy_file(to, from, 1);
				}
			}
			free(from);
			free(to);
		}
		/* phase 2: drop what the clone does not keep; phase 3: final names */
		if (rc == 0) {
			DIR *d = opendir(mnt);
			struct dirent *e;
			if (!d)
				rc = vms_error_set_errno(errno, "open %s", mnt);
			while (d && rc == 0 && (e = readdir(d))) {
				size_t l = strlen(e->d_name);
				char *p = NULL;
				if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
				    (l > 6 && strcmp(e->d_name + l - 6, ".clone") == 0))
					continue;
				if ((rc = vms_raw__join(&p, mnt, e->d_name)) == 0 && unlink(p) < 0)
					rc = vms_error_set_errno(errno, "clone: remove %s", p);
				free(p);
			}
			if (d)
				closedir(d);
		}
		for (size_t i = 0; i < n && rc == 0; i++) {
			char *from = NULL, *to = NULL, name[VMS_KEY_MAX + 8];
			snprintf(name, sizeof(name), "%s.clone", dst_disk_keys[i]);
			if ((rc = vms_raw__join(&from, mnt, name)) == 0 && (rc = disk_file(&to, mnt, dst_disk_keys[i])) == 0 &&
			    rename(from, to) < 0)
				rc = vms_error_set_errno(errno, "clone: rename %s", from);
			free(from);
			free(to);
		}
		if (rc == 0)
			rc = vms_raw__fsync_dir(mnt);
		if (rc < 0) {
			int keep = rc;
			char msg[1024];
			snprintf(msg, sizeof(msg), "%s", vms_error_last());
			if (zdestroy(dstds, 0) < 0)
				vms_error_clear();
			rc = vms_error_set(keep, "%s", msg);
		}
		goto done;
	}
	/* copy path: sources are live disks, several snapshots, or the VM exists */
	if ((rc = ensure_vm(sr, dst_vm_key)) < 0 || (rc = child_mnt(&mnt, sr, dst_vm_key)) < 0)
		goto done;
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_raw_ref s;
		char *dst = NULL, *src = NULL;
		vms_raw__ref(&s, src_refs[i], -1);
		if ((rc = disk_file(&dst, mnt, dst_disk_keys[i])) == 0) {
			if (s.snap[0])
				rc = copy_from_snapshot(sr, &s, dst, 1);
			else if ((rc = live_path(&src, sr, &s)) == 0)
				rc = vms_raw__copy_file(dst, src, 1);
		}
		free(dst);
		free(src);
	}
	if (rc < 0) {
		for (size_t i = 0; i < n; i++) {
			char *dst = NULL;
			if (disk_file(&dst, mnt, dst_disk_keys[i]) == 0)
				unlink(dst);
			free(dst);
		}
	}
done:
	free(mnt);
	if (rc < 0)
		vms_raw__free_refs(out_refs, n);
	return rc;
}

/* ---- space ---------------------------------------------------------------- */

static int g_no_written;   /* zfs has no "written" property (zfs-fuse) */

static uint64_t zwritten(const char *ds)
{
	uint64_t w = UINT64_MAX;

	if (__atomic_load_n(&g_no_written, __ATOMIC_RELAXED))
		return UINT64_MAX;
	if (zget_u64(&w, ds, "written") < 0) {
		if (vms_error_last_code() == VMS_EINVAL)
			__atomic_store_n(&g_no_written, 1, __ATOMIC_RELAXED);
		vms_error_clear();
		return UINT64_MAX;
	}
	return w;
}

/*
 * ZFS accounts space per dataset, i.e. per VM and per VM snapshot, not per
 * disk file: `used` (unique) and `written` exist only per dataset, and a
 * file's st_blocks is its own allocation but zfs-fuse updates it only when
 * the transaction group commits (1 until then), and a snapshot's file
 * would need a view (a clone) to be stat'ed.  So the figures of a VM
 * snapshot (referenced, unique = the snapshot's `used`, written) are
 * reported on one of its disks, the one with the smallest key (recorded in
 * the snapshot's vmsnap:charged property when it was taken), and 0 on the
 * others, all with granularity VMS_SPACE_PER_VM: the per-snapshot sums the
 * control module makes are exact, and it can tell that no single disk's
 * figure is that disk's own.  Likewise a live disk: the VM dataset's
 * figures (unique = usedbydataset) go to the disk with the smallest key.
 */
static int charge(vms_ref_space *out, const char *ds, int snapshot)
{
	int rc;

	if ((rc = zget_u64(&out->referenced, ds, "referenced")) < 0 ||
	    (rc = zget_u64(&out->unique, ds, snapshot ? "used" : "usedbydataset")) < 0)
		return rc;
	out->written = zwritten(ds);
	return 0;
}

/* Smallest "<key>.raw" in a directory into key ("" when none). */
static int first_disk(char key[VMS_KEY_MAX], const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	key[0] = '\0';
	if (!d)
		return vms_error_set_errno(errno, "open directory %s", dir);
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		char k[VMS_KEY_MAX];
		if (l <= 4 || l - 4 >= VMS_KEY_MAX || strcmp(e->d_name + l - 4, ".raw") != 0)
			continue;
		memcpy(k, e->d_name, l - 4);
		k[l - 4] = '\0';
		if (!key[0] || strcmp(k, key) < 0)
			memcpy(key, k, l - 3);
	}
	closedir(d);
	return 0;
}

static int zfs_ref_space(vms_ref_space *out, vms_sr_handle *h, const char *ref)
{
	zfs_sr *sr = ZSR(h);
	char ds[ZFS_NAME_MAX], key[VMS_KEY_MAX], *mnt = NULL;
	vms_raw_ref r;
	int rc;

	out->referenced = out->unique = out->written = UINT64_MAX;
	out->granularity = VMS_SPACE_PER_VM;
	if ((rc = vms_raw__ref(&r, ref, -1)) < 0 || (rc = ds_name(ds, sr, r.vm, r.snap)) < 0)
		return rc;
	if (r.snap[0]) {
		if ((rc = zget(key, sizeof(key), ds, CHARGED_PROP)) < 0)
			return rc;
		if (strcmp(key, "-") == 0)       /* not taken by vmsnap: unknown */
			return 0;
	} else {
		if ((rc = child_mnt(&mnt, sr, r.vm)) < 0)
			return rc;
		rc = first_disk(key, mnt);
		free(mnt);
		if (rc < 0)
			return rc;
	}
	if (strcmp(key, r.disk) != 0) {      /* charged to another disk */
		out->referenced = out->unique = 0;
		out->written = zwritten(ds) == UINT64_MAX ? UINT64_MAX : 0;
		return 0;
	}
	return charge(out, ds, r.snap[0] != 0);
}

/* ---- I/O ------------------------------------------------------------------- */

static int zfs_disk_open(vms_disk **out, vms_sr_handle *h, const char *ref, unsigned flags)
{
	zfs_sr *sr = ZSR(h);
	zview *v = NULL;
	char *path = NULL;
	vms_raw_ref r;
	int rc;

	*out = NULL;
	if ((rc = vms_raw__ref(&r, ref, -1)) < 0)
		return rc;
	if (!r.snap[0]) {
		if ((rc = live_path(&path, sr, &r)) == 0)
			rc = vms_raw__open(out, path, flags);
		free(path);
		return rc;
	}
	if ((rc = view_acquire(&v, sr, r.vm, r.snap)) < 0)
		return rc;
	if ((rc = disk_file(&path, v->mnt, r.disk)) == 0 &&
	    (rc = vms_raw__open(out, path, flags | VMS_DISK_READONLY)) == 0) {
		(*out)->owner_data = v;
		(*out)->owner_release = view_release;
		v = NULL;
	}
	free(path);
	if (v)
		view_release(v);
	return rc;
}

/* ---- check ------------------------------------------------------------------ */

/* Check one VM dataset's files: every entry must be <key>.raw, regular. */
static int check_vm_files(vms_json *disks, vms_json *problems, const zfs_sr *sr, const char *vm,
                          unsigned flags)
{
	char *mnt = NULL;
	DIR *d;
	struct dirent *e;
	int rc;

	if ((rc = child_mnt(&mnt, sr, vm)) < 0) {
		rc = vms_raw__json_addf(problems, "VM dataset %s/%s: %s", sr->name, vm, vms_error_last());
		vms_error_clear();
		return rc;
	}
	if (!(d = opendir(mnt))) {
		rc = vms_raw__json_addf(problems, "cannot read %s: %s", mnt, strerror(errno));
		free(mnt);
		return rc;
	}
	while (rc == 0 && (e = readdir(d))) {
		char key[VMS_KEY_MAX], *p = NULL, *ref = NULL;
		size_t l = strlen(e->d_name);
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((rc = vms_raw__join(&p, mnt, e->d_name)) < 0)
			break;
		if (l > 4 && l - 4 < VMS_KEY_MAX && strcmp(e->d_name + l - 4, ".raw") == 0) {
			memcpy(key, e->d_name, l - 4);
			key[l - 4] = '\0';
			if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && vms_raw__make_ref(&ref, vm, NULL, key) == 0)
				rc = vms_raw__json_addf(disks, "%s", ref);
			else {
				vms_error_clear();
				rc = vms_raw__json_addf(problems, "%s is not a valid disk file", p);
			}
		} else if (l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0 && (flags & VMS_CHECK_REPAIR)) {
			if (unlink(p) < 0)
				rc = vms_raw__json_addf(problems, "cannot remove stale %s: %s", p, strerror(errno));
		} else {
			rc = vms_raw__json_addf(problems, "unexpected file %s%s", p,
			             l > 4 && !strcmp(e->d_name + l - 4, ".tmp") ? " (stale temporary file: repair removes it)" : "");
		}
		free(ref);
		free(p);
	}
	closedir(d);
	free(mnt);
	return rc;
}

static int zfs_check(vms_sr_handle *h, unsigned flags, char **out_report_json)
{
	zfs_sr *sr = ZSR(h);
	vms_json *rep = NULL, *problems = NULL, *disks = NULL, *snaps = NULL, *deferred = NULL, *views = NULL;
	char pool[ZFS_NAME_MAX], health[64] = "", status[512] = "", **lines = NULL;
	size_t n = 0, np;
	int rc = 0, pool_ok = 0;

	*out_report_json = NULL;
	snprintf(pool, sizeof(pool), "%.*s", (int)strcspn(sr->name, "/"), sr->name);
	rep = vms_json_new_object();
	problems = vms_json_new_array();
	disks = vms_json_new_array();
	snaps = vms_json_new_array();
	deferred = vms_json_new_array();
	views = vms_json_new_array();
	if (!rep || !problems || !disks || !snaps || !deferred || !views) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	{
		const char *argv[] = {"zpool", "status", "-x", pool, NULL};
		vms_run_result r;
		if (vms_run(&r, argv, ZFS_TIMEOUT_MS) == 0) {
			vms_run_first_line(&r, status, sizeof(status));
			pool_ok = r.exit_status == 0 && strstr(r.out, "is healthy") != NULL;
		} else {
			snprintf(status, sizeof(status), "%s", vms_error_last());
			vms_error_clear();
		}
		vms_run_result_free(&r);
	}
	{
		const char *argv[] = {"zpool", "list", "-H", "-o", "health", pool, NULL};
		vms_run_result r;
		if (zrun(&r, argv) == 0)
			snprintf(health, sizeof(health), "%.*s", (int)strcspn(r.out, "\n"), r.out);
		else {
			snprintf(health, sizeof(health), "UNKNOWN");
			vms_error_clear();
		}
		vms_run_result_free(&r);
	}
	if ((!pool_ok || strcmp(health, "ONLINE") != 0) &&
	    (rc = vms_raw__json_addf(problems, "pool %s is %s: %s", pool, health, status)) < 0)
		goto done;
	{
		const char *argv[] = {"zfs", "list", "-H", "-o", "name", "-r", "-d", "1", "-t", "filesystem",
		                      sr->name, NULL};
		if ((rc = zlist(&lines, &n, argv)) < 0)
			goto done;
	}
	np = strlen(sr->name);
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *child = lines[i] + np + 1;
		char **sl = NULL;
		size_t ns = 0;

		if (strcmp(lines[i], sr->name) == 0)
			continue;
		if (strncmp(lines[i], sr->name, np) != 0 || lines[i][np] != '/') {
			rc = vms_raw__json_addf(problems, "unexpected dataset %s", lines[i]);
			continue;
		}
		if (strstr(child, VIEW_SEP)) {
			int open_here = 0;
			pthread_mutex_lock(&g_views_lock);
			for (zview *v = g_views; v; v = v->next)
				if (strcmp(v->ds, lines[i]) == 0)
					open_here = 1;
			pthread_mutex_unlock(&g_views_lock);
			if (open_here)
				continue;
			/* Another process's view, or one left by a crash: harmless
			 * (snapshot_delete drops it first); listed, and destroyed
			 * by repair when nobody reads it. */
			if ((flags & VMS_CHECK_REPAIR) && zdestroy(lines[i], 0) == 0)
				continue;
			vms_error_clear();
			rc = vms_raw__json_addf(views, "%s", lines[i]);
			continue;
		}
		if (vms_raw__check_key("VM key", child) < 0) {
			vms_error_clear();
			rc = vms_raw__json_addf(problems, "dataset %s is not a VM of this SR", lines[i]);
			continue;
		}
		if ((rc = check_vm_files(disks, problems, sr, child, flags)) < 0)
			break;
		if ((rc = zsnapshots(&sl, &ns, lines[i])) < 0)
			break;
		for (size_t j = 0; j < ns && rc == 0; j++) {
			char v[16];
			const char *at = strchr(sl[j], '@');
			if (!at || vms_raw__check_key("snapshot key", at + 1) < 0) {
				vms_error_clear();
				rc = vms_raw__json_addf(problems, "snapshot %s is not a vmsnap snapshot", sl[j]);
				continue;
			}
			rc = vms_raw__json_addf(snaps, "%s", sl[j] + np + 1);
			if (rc == 0 && zget(v, sizeof(v), sl[j], "defer_destroy") == 0 && strcmp(v, "on") == 0)
				rc = vms_raw__json_addf(deferred, "%s", sl[j] + np + 1);
			vms_error_clear();
		}
		free_list(sl);
	}
	if (rc < 0)
		goto done;
	if (vms_json_object_set_string(rep, "type", "zfs") < 0 ||
	    vms_json_object_set_string(rep, "dataset", sr->name) < 0 ||
	    vms_json_object_set_string(rep, "mountpoint", sr->mnt) < 0 ||
	    vms_json_object_set_string(rep, "pool", pool) < 0 ||
	    vms_json_object_set_string(rep, "health", health) < 0 ||
	    vms_json_object_set_string(rep, "status", status) < 0 ||
	    vms_json_object_set_bool(rep, "ok", vms_json_array_len(problems) == 0) < 0) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	{
		int bad = vms_json_array_len(problems) != 0;
		size_t nprob = vms_json_array_len(problems);
		if (vms_json_object_set(rep, "disks", disks) < 0)
			goto oom;
		disks = NULL;
		if (vms_json_object_set(rep, "snapshots", snaps) < 0)
			goto oom;
		snaps = NULL;
		if (vms_json_object_set(rep, "deferred", deferred) < 0)
			goto oom;
		deferred = NULL;
		if (vms_json_object_set(rep, "views", views) < 0)
			goto oom;
		views = NULL;
		if (vms_json_object_set(rep, "problems", problems) < 0)
			goto oom;
		problems = NULL;
		if ((rc = vms_json_serialize(out_report_json, rep, 0)) < 0)
			goto done;
		if (bad)
			rc = vms_error_set(VMS_ECORRUPT, "zfs SR %s: %zu problem(s) found", sr->name, nprob);
	}
	goto done;
oom:
	rc = vms_error_set(VMS_ENOMEM, "out of memory");
done:
	free_list(lines);
	vms_json_free(rep);
	vms_json_free(problems);
	vms_json_free(disks);
	vms_json_free(snaps);
	vms_json_free(deferred);
	vms_json_free(views);
	return rc;
}

/* ---- enumerate ---------------------------------------------------------------- */

/*
 * VM datasets' disk files as "disk" objects and every VM snapshot as one
 * "snapshot" object (whole: a ZFS snapshot covers all the VM's files).
 * Names and numbers come from one `zfs get -H -p -r` (zfs-fuse's `zfs list`
 * has no -p).  With VMS_ENUM_DEEP the files of each snapshot are listed
 * through a view (a `zfs clone` per snapshot not viewed yet).  zfs-fuse
 * reports st_blocks = 1 for every file, so the bytes a disk file maps are
 * unknown (VMS_BE_ENUM_NO_BLOCKS).
 */
static int zfs_enumerate(vms_sr_handle *h, unsigned flags, char **out_json)
{
	zfs_sr *sr = ZSR(h);
	const char *argv[] = {"zfs", "get", "-H", "-p", "-r", "-o", "name,property,value",
	                      "referenced,defer_destroy", sr->name, NULL};
	vms_json *arr = vms_json_new_array();
	char **lines = NULL;
	size_t n = 0, np = strlen(sr->name);
	int rc;

	*out_json = NULL;
	if (!arr) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = zlist(&lines, &n, argv)) < 0)
		goto done;
	/* lines come per dataset: referenced, then defer_destroy */
	for (size_t i = 0; i < n && rc == 0; i++) {
		char *f1 = strchr(lines[i], '\t'), *f2 = f1 ? strchr(f1 + 1, '\t') : NULL;
		char vm[VMS_KEY_MAX], *at, *mnt = NULL;
		const char *child;
		size_t vl;

		if (!f2 || strncmp(f1 + 1, "referenced\t", 11) != 0)
			continue;
		*f1 = '\0';
		if (strncmp(lines[i], sr->name, np) != 0 || lines[i][np] != '/')
			continue;
		child = lines[i] + np + 1;
		at = strchr(child, '@');
		vl = at ? (size_t)(at - child) : strlen(child);
		if (vl >= VMS_KEY_MAX || strchr(child, '/'))
			continue;
		memcpy(vm, child, vl);
		vm[vl] = '\0';
		if (vms_raw__check_key("VM key", vm) < 0 || (at && vms_raw__check_key("snapshot key", at + 1) < 0)) {
			vms_error_clear();          /* views and foreign names: check reports them */
			continue;
		}
		if (!at) {
			if ((rc = child_mnt(&mnt, sr, vm)) == 0)
				rc = vms_be__enum_files(arr, mnt, vm, NULL, VMS_BE_ENUM_NO_BLOCKS);
			free(mnt);
			continue;
		}
		/* a VM snapshot */
		uint64_t refd = strtoull(f2 + 1, NULL, 10);
		size_t nl = strlen(lines[i]);
		int deferred = i + 1 < n && strncmp(lines[i + 1], lines[i], nl) == 0 &&
		               strcmp(lines[i + 1] + nl, "\tdefer_destroy\ton") == 0;
		vms_json *o = vms_be__enum_obj("snapshot", NULL, vm, at + 1, NULL, lines[i]);
		if (!o || vms_json_object_set_int(o, "referenced", (int64_t)refd) < 0 ||
		    vms_json_object_set_bool(o, "whole", 1) < 0 || vms_json_object_set_bool(o, "deferred", deferred) < 0) {
			vms_json_free(o);
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			break;
		}
		if ((flags & VMS_ENUM_DEEP) && !deferred) {
			zview *v = NULL;
			vms_json *disks = vms_json_new_array();
			if (!disks)
				rc = vms_error_set(VMS_ENOMEM, "out of memory");
			else if ((rc = view_acquire(&v, sr, vm, at + 1)) == 0) {
				rc = vms_be__enum_files(disks, v->mnt, vm, at + 1, VMS_BE_ENUM_NO_BLOCKS);
				view_release(v);
			}
			if (rc == 0)
				rc = vms_json_object_set(o, "disks", disks);
			else
				vms_json_free(disks);
		}
		if (rc == 0)
			rc = vms_json_array_append(arr, o);
		else
			vms_json_free(o);
	}
	if (rc == 0) {
		rc = vms_be__enum_result(out_json, arr);
		arr = NULL;
	}
done:
	free_list(lines);
	vms_json_free(arr);
	return rc;
}

const vms_backend vms_backend_zfs = {
	.size = sizeof(vms_backend),
	.type = "zfs",
	.caps = VMS_CAP_SNAPSHOT | VMS_CAP_CLONE | VMS_CAP_ROLLBACK_ANY | VMS_CAP_ATOMIC_MULTI |
	        VMS_CAP_TRIM | VMS_CAP_UNIQUE_BYTES | VMS_CAP_CHECK | VMS_CAP_RESIZE | VMS_CAP_DEFER_DELETE |
	        VMS_CAP_NAMED_LOCATION,
	.sr_create = zfs_sr_create,
	.sr_open = zfs_sr_open,
	.sr_close = zfs_sr_close,
	.sr_destroy = zfs_sr_destroy,
	.sr_space = zfs_sr_space,
	.disk_create = zfs_disk_create,
	.disk_delete = zfs_disk_delete,
	.disk_resize = zfs_disk_resize,
	.snapshot_create = zfs_snapshot_create,
	.snapshot_delete = zfs_snapshot_delete,
	.rollback = zfs_rollback,
	.clone = zfs_clone,
	.ref_space = zfs_ref_space,
	.disk_open = zfs_disk_open,
	.disk_close = vms_raw__close,
	.disk_size = vms_raw__size,
	.disk_read = vms_raw__read,
	.disk_write = vms_raw__write,
	.disk_flush = vms_raw__flush,
	.disk_trim = vms_raw__trim,
	.disk_zero = vms_raw__zero,
	.disk_block_status = vms_raw__block_status,
	.check = zfs_check,
	.enumerate = zfs_enumerate,
	.snapshot_defer_delete = zfs_snapshot_defer_delete,
};
