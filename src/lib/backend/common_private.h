/*
 * common_private.h - verbs shared by the file-based backends (zfs, reflink)
 * around a backend-specific resolver from a parsed ref to its file.
 * Semi-private: only src/lib/backend/ includes this.
 */
#ifndef VMS_BACKEND_COMMON_PRIVATE_H
#define VMS_BACKEND_COMMON_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "backend/rawfile_private.h"

/* The file (malloc'd path) of a parsed disk or snapshot ref in an SR; a
 * resolver used for disk_create also makes the directory the file goes in. */
typedef int (*vms_be_path_fn)(char **out, vms_sr_handle *sr, const vms_raw_ref *r);

/* Check the arguments of a VM snapshot verb: both keys, and snap_refs[0..n)
 * snapshot refs of that VM (want_snap 1) or its disk refs (want_snap 0). */
int vms_be__check_snapshot(const char *vm_key, const char *snap_key, const char *const *refs, size_t n,
                           int want_snap);

/* Parse `ref` into *r (want_snap as vms_raw__ref) and resolve its file. */
int vms_be__ref_file(char **path, vms_raw_ref *r, vms_sr_handle *sr, const char *ref, int want_snap,
                     vms_be_path_fn fn);

/* disk_create: a new sparse file of `size` bytes for disk_key of vm_key at
 * the place `fn` gives (and prepares); *out_ref its ref. */
int vms_be__disk_create(char **out_ref, vms_sr_handle *sr, const char *vm_key, const char *disk_key,
                        uint64_t size, vms_be_path_fn fn);

/* disk_resize: the disk's file to `size` bytes, durably. */
int vms_be__disk_resize(vms_sr_handle *sr, const char *ref, uint64_t size, vms_be_path_fn fn);

/* ---- enumerate (vms_backend.enumerate's objects) */

struct vms_json;

/* An object with the members every kind has ("ref", "snapshot" and "disk"
 * left out when NULL); NULL when memory runs out. */
struct vms_json *vms_be__enum_obj(const char *kind, const char *ref, const char *vm, const char *snap,
                                  const char *disk, const char *name);

#define VMS_BE_ENUM_MISSING_OK 1u   /* a directory that is gone (or a file) holds no disk */
#define VMS_BE_ENUM_NO_BLOCKS  2u   /* the filesystem's st_blocks mean nothing: referenced null */

/* The disk files "<key>.raw" (regular files) of `dir` appended to arr as
 * "disk" objects of vm (snap NULL) or "snapshot_disk" objects of vm@snap,
 * with ref, name (the path), size and referenced (bytes of its blocks).
 * Other entries are not objects (check reports them). */
int vms_be__enum_files(struct vms_json *arr, const char *dir, const char *vm, const char *snap, unsigned flags);

/* enumerate's answer {"objects":objs} as malloc'd JSON text in *out_json;
 * takes objs (freed also on failure). */
int vms_be__enum_result(char **out_json, struct vms_json *objs);

#endif
