/*
 * common.c - verbs shared by the file-based backends (zfs, reflink): each
 * keeps a disk as one raw file and differs only in where the file of a ref
 * is (a resolver it passes in), so creating, resizing and finding a disk's
 * file, checking a snapshot verb's arguments, and listing a directory's disk
 * files for enumerate, are written once here.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/common_private.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

int vms_be__check_snapshot(const char *vm_key, const char *snap_key, const char *const *refs, size_t n,
                           int want_snap)
{
	int rc;

	if ((rc = vms_raw__check_key("VM key", vm_key)) < 0 || (rc = vms_raw__check_key("snapshot key", snap_key)) < 0)
		return rc;
	return vms_raw__check_refs(vm_key, refs, n, want_snap);
}

int vms_be__ref_file(char **path, vms_raw_ref *r, vms_sr_handle *sr, const char *ref, int want_snap,
                     vms_be_path_fn fn)
{
	int rc;

	*path = NULL;
	if ((rc = vms_raw__ref(r, ref, want_snap)) < 0)
		return rc;
	return fn(path, sr, r);
}

int vms_be__disk_create(char **out_ref, vms_sr_handle *sr, const char *vm_key, const char *disk_key,
                        uint64_t size, vms_be_path_fn fn)
{
	char *ref = NULL, *path = NULL;
	vms_raw_ref r;
	int rc;

	*out_ref = NULL;
	if ((rc = vms_raw__make_ref(&ref, vm_key, NULL, disk_key)) < 0)
		return rc;
	if ((rc = vms_be__ref_file(&path, &r, sr, ref, 0, fn)) < 0 || (rc = vms_raw__create_file(path, size)) < 0)
		goto done;
	*out_ref = ref;
	ref = NULL;
done:
	free(ref);
	free(path);
	return rc;
}

int vms_be__disk_resize(vms_sr_handle *sr, const char *ref, uint64_t size, vms_be_path_fn fn)
{
	char *path = NULL;
	vms_raw_ref r;
	int rc;

	if ((rc = vms_be__ref_file(&path, &r, sr, ref, 0, fn)) == 0)
		rc = vms_raw__resize_file(path, size);
	free(path);
	return rc;
}

/* ---- enumerate ------------------------------------------------------------------ */

vms_json *vms_be__enum_obj(const char *kind, const char *ref, const char *vm, const char *snap, const char *disk,
                           const char *name)
{
	vms_json *o = vms_json_new_object();
	int rc = o ? 0 : VMS_ENOMEM;

	if (rc == 0)
		rc = vms_json_object_set_string(o, "kind", kind);
	if (rc == 0 && ref)
		rc = vms_json_object_set_string(o, "ref", ref);
	if (rc == 0)
		rc = vms_json_object_set_string(o, "vm", vm);
	if (rc == 0 && snap)
		rc = vms_json_object_set_string(o, "snapshot", snap);
	if (rc == 0 && disk)
		rc = vms_json_object_set_string(o, "disk", disk);
	if (rc == 0)
		rc = vms_json_object_set_string(o, "name", name);
	if (rc < 0) {
		vms_json_free(o);
		return NULL;
	}
	return o;
}

/* One directory entry: an object when it is "<key>.raw", a regular file. */
static int enum_file(vms_json *arr, const char *dir, const char *file, const char *vm, const char *snap,
                     unsigned flags)
{
	char key[VMS_KEY_MAX], *p = NULL, *ref = NULL;
	size_t l = strlen(file);
	struct stat st;
	vms_json *o = NULL;
	int rc;

	if (l <= 4 || l - 4 >= VMS_KEY_MAX || strcmp(file + l - 4, ".raw") != 0)
		return 0;
	memcpy(key, file, l - 4);
	key[l - 4] = '\0';
	if (vms_raw__check_key("disk key", key) < 0) {
		vms_error_clear();
		return 0;
	}
	if ((rc = vms_raw__join(&p, dir, file)) < 0)
		return rc;
	if (lstat(p, &st) < 0 || !S_ISREG(st.st_mode))
		goto done;
	if ((rc = vms_raw__make_ref(&ref, vm, snap, key)) < 0)
		goto done;
	if (!(o = vms_be__enum_obj(snap ? "snapshot_disk" : "disk", ref, vm, snap, key, p)) ||
	    vms_json_object_set_int(o, "size", (int64_t)st.st_size) < 0 ||
	    vms_json_object_set(o, "referenced", (flags & VMS_BE_ENUM_NO_BLOCKS)
	                                                 ? vms_json_new_null()
	                                                 : vms_json_new_int((int64_t)st.st_blocks * 512)) < 0) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	rc = vms_json_array_append(arr, o);
	o = NULL;
done:
	vms_json_free(o);
	free(ref);
	free(p);
	return rc;
}

int vms_be__enum_files(vms_json *arr, const char *dir, const char *vm, const char *snap, unsigned flags)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	if (!d) {
		if ((flags & VMS_BE_ENUM_MISSING_OK) && (errno == ENOENT || errno == ENOTDIR))
			return 0;
		return vms_error_set_errno(errno, "open directory %s", dir);
	}
	while (rc == 0 && (e = readdir(d)))
		rc = enum_file(arr, dir, e->d_name, vm, snap, flags);
	closedir(d);
	return rc;
}

int vms_be__enum_result(char **out_json, vms_json *objs)
{
	vms_json *root = vms_json_new_object();
	int rc;

	*out_json = NULL;
	if (!root) {
		vms_json_free(objs);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	if ((rc = vms_json_object_set(root, "objects", objs)) == 0)
		rc = vms_json_serialize(out_json, root, 0);
	vms_json_free(root);
	return rc;
}
