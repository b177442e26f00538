/*
 * vmsnap/error.h - error codes and the per-thread error message.
 *
 * Every library function returns 0 (or a non-negative count) on success and
 * one of the negative codes below on failure.  The failing function records a
 * human-readable message for the calling thread with vms_error_set(); callers
 * read it with vms_error_last().  Codes are translated only at the edges
 * (NBD errno, control-socket JSON, CLI exit status).
 */
#ifndef VMSNAP_ERROR_H
#define VMSNAP_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vms_error_code {
	VMS_OK        = 0,
	VMS_ENOTFOUND = -1,  /* object does not exist */
	VMS_EEXISTS   = -2,  /* object already exists */
	VMS_EBUSY     = -3,  /* in use (open for writing, has dependents, locked) */
	VMS_ENOSPC    = -4,  /* out of space */
	VMS_ECORRUPT  = -5,  /* on-disk structure failed validation */
	VMS_EINVAL    = -6,  /* invalid argument or request */
	VMS_EIO       = -7,  /* I/O error from below */
	VMS_ENOMEM    = -8,  /* allocation failed */
	VMS_EROFS     = -9,  /* pool or object is read-only (also after a failed commit) */
	VMS_ENOTSUP   = -10, /* operation not supported by this backend or type */
	VMS_EDEPEND   = -11, /* refused because other objects depend on it */
	VMS_EPERM     = -12  /* not permitted */
} vms_error_code;

/*
 * Record an error message for this thread and return `code`, so that a
 * caller can write `return vms_error_set(VMS_EINVAL, "bad size %d", n);`.
 */
int vms_error_set(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Like vms_error_set, appending ": strerror(errnum)"; maps errnum to a code
 * (ENOSPC -> VMS_ENOSPC, ENOENT -> VMS_ENOTFOUND, ... default VMS_EIO). */
int vms_error_set_errno(int errnum, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Prefix the current message with more context: "context: old message". */
int vms_error_wrap(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread; never NULL ("" when none).
 * Owned by the library, valid until the next vms_ call on this thread. */
const char *vms_error_last(void);

/* The code that went with the last message (0 when none). */
int vms_error_last_code(void);

/* Forget the last error. */
void vms_error_clear(void);

/* Short stable name of a code, e.g. "NOTFOUND"; used in JSON errors. */
const char *vms_error_name(int code);

/* Map a code to an errno value (for NBD replies): ENOSPC, EIO, EINVAL, ... */
int vms_error_to_errno(int code);

#ifdef __cplusplus
}
#endif
#endif
