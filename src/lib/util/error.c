/*
 * Per-thread error messages, in the manner of libgit2's git_error_set.
 * The buffer is thread-local and fixed-size: setting an error never fails.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vmsnap/error.h"

#define MSG_MAX 1024

static _Thread_local char last_msg[MSG_MAX];
static _Thread_local int last_code;

static int set_v(int code, const char *fmt, va_list ap)
{
	vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	last_code = code;
	return code;
}

int vms_error_set(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_v(code, fmt, ap);
	va_end(ap);
	return code;
}

static int code_of_errno(int e)
{
	switch (e) {
	case ENOSPC: case EDQUOT: case EFBIG: return VMS_ENOSPC;
	case ENOENT: return VMS_ENOTFOUND;
	case EEXIST: return VMS_EEXISTS;
	case EBUSY: case EAGAIN: return VMS_EBUSY;
	case EINVAL: case ENAMETOOLONG: return VMS_EINVAL;
	case ENOMEM: return VMS_ENOMEM;
	case EROFS: return VMS_EROFS;
	case EPERM: case EACCES: return VMS_EPERM;
	case ENOTSUP: return VMS_ENOTSUP;
	default: return VMS_EIO;
	}
}

int vms_error_set_errno(int errnum, const char *fmt, ...)
{
	char head[MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	snprintf(last_msg, sizeof(last_msg), "%s: %s", head, strerror(errnum));
	last_code = code_of_errno(errnum);
	return last_code;
}

int vms_error_wrap(int code, const char *fmt, ...)
{
	char head[MSG_MAX], old[MSG_MAX];
	va_list ap;
	memcpy(old, last_msg, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	if (old[0])
		snprintf(last_msg, sizeof(last_msg), "%s: %s", head, old);
	else
		snprintf(last_msg, sizeof(last_msg), "%s", head);
	last_code = code;
	return code;
}

const char *vms_error_last(void) { return last_msg; }
int vms_error_last_code(void) { return last_code; }
void vms_error_clear(void) { last_msg[0] = 0; last_code = 0; }

const char *vms_error_name(int code)
{
	switch (code) {
	case VMS_OK: return "OK";
	case VMS_ENOTFOUND: return "NOTFOUND";
	case VMS_EEXISTS: return "EXISTS";
	case VMS_EBUSY: return "BUSY";
	case VMS_ENOSPC: return "NOSPC";
	case VMS_ECORRUPT: return "CORRUPT";
	case VMS_EINVAL: return "INVALID";
	case VMS_EIO: return "IO";
	case VMS_ENOMEM: return "NOMEM";
	case VMS_EROFS: return "READONLY";
	case VMS_ENOTSUP: return "NOTSUP";
	case VMS_EDEPEND: return "DEPENDENTS";
	case VMS_EPERM: return "PERM";
	default: return "UNKNOWN";
	}
}

int vms_error_to_errno(int code)
{
	switch (code) {
	case VMS_OK: return 0;
	case VMS_ENOTFOUND: return ENOENT;
	case VMS_EEXISTS: return EEXIST;
	case VMS_EBUSY: return EBUSY;
	case VMS_ENOSPC: return ENOSPC;
	case VMS_EINVAL: return EINVAL;
	case VMS_ENOMEM: return ENOMEM;
	case VMS_EROFS: return EROFS;
	case VMS_ENOTSUP: return ENOTSUP;
	case VMS_EPERM: case VMS_EDEPEND: return EPERM;
	default: return EIO;
	}
}
