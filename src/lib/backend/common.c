/*
 * common.c - verbs shared by the file-based backends (zfs, reflink): each
 * keeps a disk as one raw file and differs only in where the file of a ref
 * is (a resolver it passes in), so creating, resizing and finding a disk's
 * file, and checking a snapshot verb's arguments, are written once here.
 */
#include <stdlib.h>

#include "backend/common_private.h"
#include "vmsnap/error.h"

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
