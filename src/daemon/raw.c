/*
 * raw.c - the raw-file export source (`vmsnapd --raw NAME=PATH`), for
 * debugging and benchmarks: a plain file served as export NAME through the
 * raw-file disk helpers the zfs and reflink backends use
 * (src/lib/backend/rawfile_private.h), so the NBD path measured here is the
 * one those backends run.
 *
 * The empty export name ("default export" of the protocol) selects the
 * first raw export.
 */
#include "raw.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/rawfile_private.h"
#include "vmsnap/error.h"

struct raw_export {
	char *name;
	char *path; /* absolute */
	int readonly;
};

struct vmsd_raw {
	struct raw_export *v;
	size_t n;
	int readonly;
};

static const vms_backend raw_backend = {
	.size = sizeof(vms_backend),
	.type = "raw",
	.caps = VMS_CAP_TRIM | VMS_CAP_BLOCK_STATUS,
	.disk_close = vms_raw__close,
	.disk_size = vms_raw__size,
	.disk_read = vms_raw__read,
	.disk_write = vms_raw__write,
	.disk_flush = vms_raw__flush,
	.disk_trim = vms_raw__trim,
	.disk_zero = vms_raw__zero,
	.disk_block_status = vms_raw__block_status,
};

int vmsd_raw_new(vmsd_raw **out, int readonly)
{
	vmsd_raw *r = calloc(1, sizeof *r);
	if (!r)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	r->readonly = readonly;
	*out = r;
	return 0;
}

int vmsd_raw_add(vmsd_raw *r, const char *spec, int readonly)
{
	const char *eq = strchr(spec, '=');
	if (!eq || eq == spec || !eq[1])
		return vms_error_set(VMS_EINVAL, "--raw wants NAME=PATH, not '%s'", spec);
	size_t nl = (size_t)(eq - spec);
	if (nl > 255 || memchr(spec, '@', nl))
		return vms_error_set(VMS_EINVAL, "raw export name '%.*s': at most 255 characters, no '@'",
		                     (int)(nl > 255 ? 255 : nl), spec);
	for (size_t i = 0; i < r->n; i++)
		if (strlen(r->v[i].name) == nl && memcmp(r->v[i].name, spec, nl) == 0)
			return vms_error_set(VMS_EEXISTS, "raw export '%.*s' given twice", (int)nl, spec);
	char abs[PATH_MAX];
	if (!realpath(eq + 1, abs))
		return vms_error_set_errno(errno, "raw export file %s", eq + 1);
	struct stat st;
	if (stat(abs, &st) < 0 || !S_ISREG(st.st_mode))
		return vms_error_set(VMS_EINVAL, "raw export file %s is not a regular file", abs);
	struct raw_export *v = realloc(r->v, (r->n + 1) * sizeof *v);
	if (!v)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	r->v = v;
	v[r->n].name = strndup(spec, nl);
	v[r->n].path = strdup(abs);
	v[r->n].readonly = readonly;
	if (!v[r->n].name || !v[r->n].path) {
		free(v[r->n].name);
		free(v[r->n].path);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	r->n++;
	return 0;
}

void vmsd_raw_free(vmsd_raw *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].name);
		free(r->v[i].path);
	}
	free(r->v);
	free(r);
}

size_t vmsd_raw_count(const vmsd_raw *r)
{
	return r->n;
}

static const struct raw_export *find(const vmsd_raw *r, const char *name)
{
	if (!*name && r->n)
		return &r->v[0];
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->v[i].name, name) == 0)
			return &r->v[i];
	return NULL;
}

static int raw_is_readonly(void *ctx, const char *name)
{
	vmsd_raw *r = ctx;
	const struct raw_export *x = find(r, name);
	return r->readonly || (x && x->readonly);
}

static int raw_open(void *ctx, vms_disk **out_disk, const vms_backend **out_be, char **out_key,
                    const char *name, unsigned flags)
{
	vmsd_raw *r = ctx;
	const struct raw_export *x = find(r, name);
	if (!x)
		return vms_error_set(VMS_ENOTFOUND, "no export named '%.256s'", name);
	if (r->readonly || x->readonly)
		flags |= VMS_DISK_READONLY;
	char *key = NULL;
	if (asprintf(&key, "raw:%s", x->path) < 0)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	int rc = vms_raw__open(out_disk, x->path, flags);
	if (rc < 0) {
		free(key);
		return rc;
	}
	*out_be = &raw_backend;
	*out_key = key;
	return 0;
}

static int raw_list(void *ctx, vms_json *arr)
{
	vmsd_raw *r = ctx;
	for (size_t i = 0; i < r->n; i++) {
		struct stat st;
		char desc[PATH_MAX + 16];
		snprintf(desc, sizeof desc, "raw file %s", r->v[i].path);
		vms_json *o = vms_json_new_object();
		int rc = o ? 0 : VMS_ENOMEM;
		if (!rc) rc = vms_json_object_set_string(o, "name", r->v[i].name);
		if (!rc) rc = vms_json_object_set_string(o, "description", desc);
		if (!rc) rc = vms_json_object_set_int(o, "size", stat(r->v[i].path, &st) == 0 ? (int64_t)st.st_size : 0);
		if (!rc) rc = vms_json_object_set_bool(o, "readonly", r->readonly || r->v[i].readonly);
		if (!rc) rc = vms_json_array_append(arr, o);
		if (rc < 0) {
			vms_json_free(o);
			return vms_error_set(VMS_ENOMEM, "out of memory");
		}
	}
	return 0;
}

vmsd_source vmsd_raw_source(vmsd_raw *r)
{
	vmsd_source s = {.what = "raw", .open = raw_open, .list = raw_list,
	                 .is_readonly = raw_is_readonly, .ctx = r, .min_block = 1};
	return s;
}
