/*
 * vdi.import and vdi.export: the path on and off chained formats.
 *
 * Import: `qemu-img info --backing-chain --output=json` gives the format,
 * virtual size and the depth of the source's backing chain; `qemu-img
 * convert` (run with vms_run, no shell) flattens the whole chain into a
 * sparse raw file in the home directory; its data extents (SEEK_DATA) are
 * written into a new disk of the VM through the backend disk API, zero
 * blocks skipped (a new disk reads as zeros).  Any SR type works, since
 * only disk_create/disk_open/disk_write are used.  A failed import deletes
 * the new disk again.  The source's chain is recorded next to the catalog
 * in <home>/imports/<vdi uuid>.json (version 1, crc32c), so `vm.report`
 * can show where a disk came from and how deep its chain was.
 *
 * Export: the disk or snapshot is read through the backend into a sparse
 * raw file (zero blocks left as holes), renamed into place for raw, or
 * converted with `qemu-img convert -O qcow2` for qcow2.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/control_private.h"
#include "vmsnap/crc32c.h"
#include "vmsnap/run.h"

#define NOMEM() vms_error_set(VMS_ENOMEM, "out of memory")
#define CHUNK (1u << 20)
#define QEMU_TIMEOUT_MS (6u * 3600u * 1000u)
#define RECORD_MAX (1u << 20)

static const char *const FORMATS_IN[] = {"raw", "qcow2", "vmdk", "vhdx", "vpc", "vdi", NULL};

static int in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return 1;
	return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static int run_qemu_img(vms_run_result *res, const char *const *argv, const char *what)
{
	int rc = vms_run(res, argv, QEMU_TIMEOUT_MS);
	if (rc < 0)
		return vms_error_wrap(rc, "running qemu-img (%s)", what);
	if (res->exit_status != 0) {
		char line[512];
		vms_run_first_line(res, line, sizeof(line));
		return vms_error_set(VMS_EINVAL, "qemu-img %s failed (exit %d): %s", what, res->exit_status,
		                     line);
	}
	return 0;
}

/* ---- import records -------------------------------------------------------------- */

static int record_path(char *out, size_t cap, vms_control *ctl, const char *vdi_uuid)
{
	if ((size_t)snprintf(out, cap, "%s/imports/%s.json", ctl->home, vdi_uuid) >= cap)
		return vms_error_set(VMS_EINVAL, "home path too long");
	return 0;
}

static int record_crc(uint32_t *crc, const vms_json *rec)
{
	char *text = NULL;
	int rc = vms_json_serialize(&text, rec, 0);
	if (rc < 0)
		return rc;
	*crc = vms_crc32c(0, text, strlen(text));
	free(text);
	return 0;
}

static int record_write(vms_control *ctl, const char *vdi_uuid, vms_json *rec)
{
	char path[4096], tmp[4200], dir[4096];
	char *text = NULL;
	uint32_t crc;
	int rc, fd = -1;
	snprintf(dir, sizeof(dir), "%s/imports", ctl->home);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return vms_error_set_errno(errno, "cannot create %s", dir);
	if ((rc = record_path(path, sizeof(path), ctl, vdi_uuid)) < 0)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((rc = record_crc(&crc, rec)) < 0 || (rc = vms_json_object_set_int(rec, "crc32c", crc)) < 0 ||
	    (rc = vms_json_serialize(&text, rec, 0)) < 0)
		goto done;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		rc = vms_error_set_errno(errno, "cannot write %s", tmp);
		goto done;
	}
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
		rc = vms_error_set_errno(errno, "cannot write %s", tmp);
		goto done;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = vms_error_set_errno(errno, "cannot rename %s", tmp);
		goto done;
	}
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	free(text);
	return rc;
}

/* The import record of a disk: *out NULL (and 0) when it was not imported. */
int ctl_import_record_get(vms_json **out, vms_control *ctl, const char *vdi_uuid)
{
	char path[4096];
	char *buf = NULL;
	vms_json *rec = NULL;
	int rc, fd;
	*out = NULL;
	if ((rc = record_path(path, sizeof(path), ctl, vdi_uuid)) < 0)
		return rc;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? 0 : vms_error_set_errno(errno, "cannot read %s", path);
	if (!(buf = malloc(RECORD_MAX + 1))) {
		close(fd);
		return NOMEM();
	}
	ssize_t n = read(fd, buf, RECORD_MAX + 1);
	close(fd);
	if (n < 0 || n > (ssize_t)RECORD_MAX) {
		rc = vms_error_set(VMS_ECORRUPT, "import record %s: unreadable or too large", path);
		goto done;
	}
	if ((rc = vms_json_parse(&rec, buf, (size_t)n)) < 0 || vms_json_type_of(rec) != VMS_JSON_OBJECT) {
		rc = vms_error_set(VMS_ECORRUPT, "import record %s is not a JSON object", path);
		goto done;
	}
	int64_t version = 0, stored = -1;
	uint32_t crc;
	vms_json_is_int(vms_json_object_get(rec, "version"), &version);
	vms_json_is_int(vms_json_object_get(rec, "crc32c"), &stored);
	if (version != 1) {
		rc = vms_error_set(VMS_ECORRUPT, "import record %s: unknown version %lld", path,
		                   (long long)version);
		goto done;
	}
	vms_json_object_remove(rec, "crc32c");
	if ((rc = record_crc(&crc, rec)) < 0)
		goto done;
	if (stored != (int64_t)crc) {
		rc = vms_error_set(VMS_ECORRUPT, "import record %s: checksum mismatch", path);
		goto done;
	}
	*out = rec;
	rec = NULL;
	rc = 0;
done:
	vms_json_free(rec);
	free(buf);
	return rc;
}

/* ---- vdi.import ------------------------------------------------------------------- */

/* Copy the data extents of raw file fd into an open disk. */
static int copy_in(uint64_t *copied, int fd, uint64_t size, const vms_backend *be, vms_disk *d)
{
	uint8_t *buf = malloc(CHUNK);
	int rc = 0;
	off_t pos = 0;
	*copied = 0;
	if (!buf)
		return NOMEM();
	while ((uint64_t)pos < size) {
		off_t data = lseek(fd, pos, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break;   /* only a hole remains */
			rc = vms_error_set_errno(errno, "seeking in the converted image");
			goto done;
		}
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		for (off_t off = data; off < hole;) {
			size_t len = (size_t)(hole - off < (off_t)CHUNK ? hole - off : (off_t)CHUNK);
			ssize_t got = pread(fd, buf, len, off);
			if (got <= 0) {
				rc = vms_error_set_errno(got < 0 ? errno : EIO, "reading the converted image");
				goto done;
			}
			if (!all_zero(buf, (size_t)got)) {
				if ((rc = be->disk_write(d, buf, (size_t)got, (uint64_t)off, 0)) < 0)
					goto done;
				*copied += (uint64_t)got;
			}
			off += got;
		}
		pos = hole;
	}
	rc = be->disk_flush ? be->disk_flush(d) : 0;
done:
	free(buf);
	return rc;
}

int ctl_op_vdi_import(vms_json **out, ctl_req *r)
{
	int rc, fd = -1, created = 0;
	const char *vmkey, *name, *source, *format = NULL;
	int64_t device = -1;
	vms_run_result res;
	vms_json *info = NULL, *args = NULL, *vrec = NULL, *rec = NULL, *chain = NULL;
	char tmp[4200] = "";
	char vdi_uuid[VMS_UUID_BUF] = "";
	char fmt[32];
	vms_cat_vdi vdi;
	vms_disk *disk = NULL;
	const vms_backend *be = NULL;
	uint64_t copied = 0;
	memset(&res, 0, sizeof(res));
	memset(&vdi, 0, sizeof(vdi));
	if ((rc = ctl_arg_str(&vmkey, r, "vm", 1)) < 0 || (rc = ctl_arg_str(&name, r, "name", 1)) < 0 ||
	    (rc = ctl_arg_str(&source, r, "source", 1)) < 0 || (rc = ctl_arg_str(&format, r, "format", 0)) < 0 ||
	    (rc = vms_json_get_int(&device, r->args, "device", 0)) < 0)
		return rc;
	if (format && !in_list(format, FORMATS_IN))
		return vms_error_set(VMS_EINVAL, "import format '%.32s' (accepted: raw, qcow2, vmdk, vhdx, "
		                     "vpc, vdi)", format);
	if (source[0] != '/')
		return vms_error_set(VMS_EINVAL, "import source '%.256s' must be an absolute path", source);
	if (access(source, R_OK) < 0)
		return vms_error_set_errno(errno, "import source %.256s", source);
	if ((rc = vms_name_check(name, "disk")) < 0)
		return rc;
	/* the chain */
	{
		const char *argv[] = {"qemu-img", "info", "--backing-chain", "--output=json", "-U",
		                      format ? "-f" : source, format ? format : NULL, format ? source : NULL,
		                      NULL};
		if ((rc = run_qemu_img(&res, argv, "info")) < 0)
			goto done;
	}
	if ((rc = vms_json_parse(&info, res.out, res.out_len)) < 0 ||
	    vms_json_type_of(info) != VMS_JSON_ARRAY || vms_json_array_len(info) == 0) {
		rc = vms_error_set(VMS_EINVAL, "qemu-img info gave no image chain for %.256s", source);
		goto done;
	}
	const vms_json *top = vms_json_array_get(info, 0);
	int64_t vsize = 0;
	const char *detected = vms_json_string(vms_json_object_get(top, "format"));
	if (!vms_json_is_int(vms_json_object_get(top, "virtual-size"), &vsize) || vsize <= 0 || !detected) {
		rc = vms_error_set(VMS_EINVAL, "qemu-img info: no format or virtual size for %.256s", source);
		goto done;
	}
	snprintf(fmt, sizeof(fmt), "%s", detected);
	if (!in_list(fmt, FORMATS_IN)) {
		rc = vms_error_set(VMS_EINVAL, "%.256s is a '%s' image (accepted: raw, qcow2, vmdk, vhdx, vpc, "
		                   "vdi)", source, fmt);
		goto done;
	}
	uint64_t size = ((uint64_t)vsize + 511) & ~(uint64_t)511;
	/* flatten the chain into a sparse raw file next to the catalog */
	snprintf(tmp, sizeof(tmp), "%s/.import-XXXXXX", r->ctl->home);
	if ((fd = mkstemp(tmp)) < 0) {
		rc = vms_error_set_errno(errno, "cannot create a temporary file in %s", r->ctl->home);
		tmp[0] = 0;
		goto done;
	}
	vms_run_result_free(&res);
	memset(&res, 0, sizeof(res));
	{
		const char *argv[] = {"qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", source, tmp, NULL};
		if ((rc = run_qemu_img(&res, argv, "convert")) < 0)
			goto done;
	}
	/* the new disk */
	if (!(args = vms_json_new_object())) {
		rc = NOMEM();
		goto done;
	}
	vms_json_object_set_string(args, "vm", vmkey);
	vms_json_object_set_string(args, "name", name);
	vms_json_object_set_int(args, "size", (int64_t)size);
	if (device >= 0)
		vms_json_object_set_int(args, "device", device);
	if ((rc = ctl_sub_op(&vrec, r->ctl, ctl_op_vdi_create, args)) < 0)
		goto done;
	created = 1;
	snprintf(vdi_uuid, sizeof(vdi_uuid), "%s", vms_json_string(vms_json_object_get(vrec, "uuid")));
	vms_sr_handle *h;
	if ((rc = vms_cat_vdi_get(&vdi, r->ctl->cat, vdi_uuid)) < 0 ||
	    (rc = ctl_sr_backend(&be, &h, r->ctl, vdi.sr_uuid)) < 0 ||
	    (rc = be->disk_open(&disk, h, vdi.ref, 0)) < 0)
		goto done;
	if ((rc = copy_in(&copied, fd, (uint64_t)vsize, be, disk)) < 0)
		goto done;
	be->disk_close(disk);
	disk = NULL;
	/* the record */
	if (!(rec = vms_json_new_object()) || !(chain = vms_json_new_array())) {
		rc = NOMEM();
		goto done;
	}
	for (size_t i = 0; i < vms_json_array_len(info); i++) {
		const vms_json *im = vms_json_array_get(info, i);
		vms_json *e = vms_json_new_object();
		if (!e) {
			rc = NOMEM();
			goto done;
		}
		vms_json_object_set_string(e, "filename", vms_json_string(vms_json_object_get(im, "filename")));
		vms_json_object_set_string(e, "format", vms_json_string(vms_json_object_get(im, "format")));
		vms_json_array_append(chain, e);
	}
	vms_json_object_set_int(rec, "version", 1);
	vms_json_object_set_string(rec, "vdi_uuid", vdi_uuid);
	vms_json_object_set_string(rec, "source", source);
	vms_json_object_set_string(rec, "format", fmt);
	vms_json_object_set_int(rec, "virtual_size", vsize);
	vms_json_object_set_int(rec, "source_chain_depth", (int64_t)vms_json_array_len(info));
	ctl_set_time(rec, "imported", ctl_now(r->ctl));
	vms_json_object_set(rec, "chain", chain);
	chain = NULL;
	if ((rc = record_write(r->ctl, vdi_uuid, rec)) < 0)
		goto done;
	vms_json_object_remove(rec, "crc32c");
	vms_json_object_set_int(rec, "bytes_copied", (int64_t)copied);
	vms_json_object_set(vrec, "import", rec);
	rec = NULL;
	*out = vrec;
	vrec = NULL;
	created = 0;
	rc = 0;
done:
	if (disk)
		be->disk_close(disk);
	if (rc < 0 && created) {
		/* leave nothing behind: the new disk goes again */
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vms_error_last());
		vms_json *dargs = vms_json_new_object();
		if (dargs) {
			vms_json_object_set_string(dargs, "vdi", vdi_uuid);
			vms_json_object_set_bool(dargs, "force", 1);
			ctl_sub_op(NULL, r->ctl, ctl_op_vdi_delete, dargs);
			vms_json_free(dargs);
		}
		vms_error_set(rc, "%s", msg);
	}
	if (fd >= 0)
		close(fd);
	if (tmp[0])
		unlink(tmp);
	vms_cat_vdi_clear(&vdi);
	vms_run_result_free(&res);
	vms_json_free(info);
	vms_json_free(args);
	vms_json_free(vrec);
	vms_json_free(rec);
	vms_json_free(chain);
	return rc;
}

/* ---- vdi.export ------------------------------------------------------------------- */

static int copy_out(uint64_t *copied, int fd, uint64_t size, const vms_backend *be, vms_disk *d)
{
	uint8_t *buf = malloc(CHUNK);
	int rc = 0;
	*copied = 0;
	if (!buf)
		return NOMEM();
	if (ftruncate(fd, (off_t)size) < 0) {
		rc = vms_error_set_errno(errno, "sizing the export file");
		goto done;
	}
	for (uint64_t off = 0; off < size;) {
		size_t len = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		if ((rc = be->disk_read(d, buf, len, off)) < 0)
			goto done;
		if (!all_zero(buf, len)) {
			if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
				rc = vms_error_set_errno(errno, "writing the export file");
				goto done;
			}
			*copied += len;
		}
		off += len;
	}
	if (fsync(fd) < 0)
		rc = vms_error_set_errno(errno, "writing the export file");
done:
	free(buf);
	return rc;
}

int ctl_op_vdi_export(vms_json **out, ctl_req *r)
{
	int rc, fd = -1, overwrite = 0;
	const char *key, *snap = NULL, *path, *format = "raw";
	vms_cat_vdi vdi;
	vms_disk *disk = NULL;
	const vms_backend *be = NULL;
	char ename[512], tmp[4200] = "";
	uint64_t copied = 0, size;
	vms_run_result res;
	vms_json *o = NULL;
	struct stat st;
	memset(&res, 0, sizeof(res));
	memset(&vdi, 0, sizeof(vdi));
	if ((rc = ctl_arg_str(&key, r, "vdi", 1)) < 0 || (rc = ctl_arg_str(&snap, r, "snapshot", 0)) < 0 ||
	    (rc = ctl_arg_str(&path, r, "path", 1)) < 0 || (rc = ctl_arg_str(&format, r, "format", 0)) < 0 ||
	    (rc = ctl_arg_bool(r, "overwrite", &overwrite)) < 0)
		return rc;
	if (!format)
		format = "raw";
	if (strcmp(format, "raw") != 0 && strcmp(format, "qcow2") != 0)
		return vms_error_set(VMS_EINVAL, "export format '%.32s' (accepted: raw, qcow2)", format);
	if (path[0] != '/')
		return vms_error_set(VMS_EINVAL, "export path '%.256s' must be absolute", path);
	if (!overwrite && lstat(path, &st) == 0)
		return vms_error_set(VMS_EEXISTS, "%.256s exists (pass overwrite to replace it)", path);
	if ((rc = ctl_get_vdi(&vdi, r, key, 0)) < 0)
		return rc;
	if (!vdi.vm_uuid[0]) {
		rc = vms_error_set(VMS_EINVAL, "disk %s is not attached to a VM", vdi.uuid);
		goto done;
	}
	if (snap && strchr(snap, '@'))
		snap = strchr(snap, '@') + 1;   /* "vm@sel": the VM is the disk's */
	snprintf(ename, sizeof(ename), "%s/%s%s%.200s", vdi.vm_uuid, vdi.name, snap ? "@" : "",
	         snap ? snap : "");
	if ((rc = vms_control_disk_open(&disk, &be, NULL, r->ctl, ename, VMS_DISK_READONLY)) < 0)
		goto done;
	size = be->disk_size(disk);
	snprintf(tmp, sizeof(tmp), "%s.vmsnap-XXXXXX", path);
	if ((fd = mkstemp(tmp)) < 0) {
		rc = vms_error_set_errno(errno, "cannot create a file next to %.256s", path);
		tmp[0] = 0;
		goto done;
	}
	if ((rc = copy_out(&copied, fd, size, be, disk)) < 0)
		goto done;
	close(fd);
	fd = -1;
	if (strcmp(format, "qcow2") == 0) {
		const char *argv[] = {"qemu-img", "convert", "-f", "raw", "-O", "qcow2", tmp, path, NULL};
		if ((rc = run_qemu_img(&res, argv, "convert")) < 0)
			goto done;
	} else if (rename(tmp, path) < 0) {
		rc = vms_error_set_errno(errno, "cannot rename into %.256s", path);
		goto done;
	} else {
		tmp[0] = 0;
	}
	if (!(o = vms_json_new_object())) {
		rc = NOMEM();
		goto done;
	}
	char shown[512];
	char vmname[VMS_NAME_MAX + 1];
	ctl_vm_name(vmname, r->ctl, vdi.vm_uuid);
	snprintf(shown, sizeof(shown), "%s/%s%s%.200s", vmname, vdi.name, snap ? "@" : "", snap ? snap : "");
	vms_json_object_set_string(o, "source", shown);
	vms_json_object_set_string(o, "vdi_uuid", vdi.uuid);
	vms_json_object_set_string(o, "path", path);
	vms_json_object_set_string(o, "format", format);
	vms_json_object_set_int(o, "size", (int64_t)size);
	vms_json_object_set_int(o, "bytes_copied", (int64_t)copied);
	*out = o;
	o = NULL;
	rc = 0;
done:
	if (disk)
		be->disk_close(disk);
	if (fd >= 0)
		close(fd);
	if (tmp[0])
		unlink(tmp);
	vms_run_result_free(&res);
	vms_cat_vdi_clear(&vdi);
	vms_json_free(o);
	return rc;
}
