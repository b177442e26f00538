/*
 * vmsnap/json.h - a small JSON value tree: strict parse, build, serialize.
 *
 * Used by the control module (requests and results), the CLI (--json) and
 * vmsnapd's control socket, i.e. for input that comes from outside.  The
 * parser therefore follows RFC 8259 strictly and bounds everything:
 *   - input must be valid UTF-8; a single top-level value; no trailing data
 *     other than whitespace; no comments, no trailing commas, no NaN;
 *   - nesting depth, input size and member counts are limited
 *     (vms_json_limits); exceeding them is VMS_EINVAL, never a crash;
 *   - duplicate keys in one object are refused;
 *   - errors say where: "JSON line 1 column 17: expected ':' after key".
 *
 * Numbers: an integer literal that fits int64 is kept exactly (sizes in
 * bytes, epoch seconds); anything else is a double.
 *
 * Ownership: every vms_json * returned by a vms_json_new_* or parse belongs
 * to the caller and is released with vms_json_free(), which frees the whole
 * subtree.  vms_json_object_set()/vms_json_array_append() take ownership of
 * the value they are given, also when they fail.  Pointers returned by the
 * getters (const vms_json *, const char *) are borrowed: valid as long as
 * the tree is.
 *
 * Functions returning int return 0 or a negative vms_error_code with a
 * message (vms_error_last()).
 */
#ifndef VMSNAP_JSON_H
#define VMSNAP_JSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vms_json vms_json;

typedef enum vms_json_type {
	VMS_JSON_NULL = 0,
	VMS_JSON_BOOL,
	VMS_JSON_NUMBER,
	VMS_JSON_STRING,
	VMS_JSON_ARRAY,
	VMS_JSON_OBJECT
} vms_json_type;

typedef struct vms_json_limits {
	size_t max_bytes;    /* input length; 0 = 16 MiB */
	unsigned max_depth;  /* nesting of arrays/objects; 0 = 64 */
	size_t max_members;  /* entries in one array or object; 0 = 1,000,000 */
} vms_json_limits;

/* ---- parse ------------------------------------------------------------ */

/* Parse `len` bytes of `text` (need not be NUL-terminated) with default
 * limits.  *out is owned by the caller. */
int vms_json_parse(vms_json **out, const char *text, size_t len);
/* Same with explicit limits (NULL = defaults). */
int vms_json_parse_ex(vms_json **out, const char *text, size_t len, const vms_json_limits *limits);

/* ---- serialize -------------------------------------------------------- */

#define VMS_JSON_PRETTY 1u   /* indent by two spaces, one member per line */

/* Serialize to a NUL-terminated malloc'd string (caller frees).  Compact
 * by default: no spaces, no newline, so a value fits on one line (the
 * control socket's framing).  Strings are emitted as valid UTF-8: invalid
 * byte sequences in built strings become U+FFFD; control characters are
 * escaped.  Non-finite doubles become null. */
int vms_json_serialize(char **out, const vms_json *v, unsigned flags);

/* ---- build ------------------------------------------------------------ */
/* Return NULL only when memory runs out (vms_error_last() says so). */

vms_json *vms_json_new_null(void);
vms_json *vms_json_new_bool(int b);
vms_json *vms_json_new_int(int64_t i);
vms_json *vms_json_new_double(double d);
vms_json *vms_json_new_string(const char *s);            /* copied; NULL -> null value */
vms_json *vms_json_new_stringn(const char *s, size_t n); /* may hold NUL bytes */
vms_json *vms_json_new_array(void);
vms_json *vms_json_new_object(void);

/* Deep copy; NULL on out of memory. */
vms_json *vms_json_copy(const vms_json *v);

void vms_json_free(vms_json *v);

/* Set obj[key] = val, replacing an existing member (keeps its position).
 * Takes ownership of val, also on failure; val == NULL (a failed new_*) is
 * reported as VMS_ENOMEM, so calls can be chained without checks:
 *   rc = vms_json_object_set(o, "size", vms_json_new_int(n)); */
int vms_json_object_set(vms_json *obj, const char *key, vms_json *val);
int vms_json_object_set_string(vms_json *obj, const char *key, const char *s); /* s NULL -> null */
int vms_json_object_set_int(vms_json *obj, const char *key, int64_t i);
int vms_json_object_set_bool(vms_json *obj, const char *key, int b);
/* Remove obj[key] if present; returns 1 if removed, 0 if absent. */
int vms_json_object_remove(vms_json *obj, const char *key);

/* Append to an array; takes ownership of val (also on failure). */
int vms_json_array_append(vms_json *arr, vms_json *val);

/* ---- inspect ---------------------------------------------------------- */

vms_json_type vms_json_type_of(const vms_json *v);   /* NULL -> VMS_JSON_NULL */
const char *vms_json_type_name(vms_json_type t);     /* "string", "object", ... */

/* Member `key` of an object, or NULL (also when obj is not an object). */
const vms_json *vms_json_object_get(const vms_json *obj, const char *key);
size_t vms_json_object_len(const vms_json *obj);
const char *vms_json_object_key_at(const vms_json *obj, size_t i);
const vms_json *vms_json_object_value_at(const vms_json *obj, size_t i);

size_t vms_json_array_len(const vms_json *arr);
const vms_json *vms_json_array_get(const vms_json *arr, size_t i);

/* Scalar access.  Return NULL/0 when the type does not match. */
const char *vms_json_string(const vms_json *v);  /* NUL-terminated */
size_t vms_json_string_len(const vms_json *v);   /* bytes, may include NULs */
int vms_json_bool(const vms_json *v);
double vms_json_double(const vms_json *v);
/* 1 when v is a number holding an exact int64 (integer literal, or a double
 * with an integral value in range), storing it in *out. */
int vms_json_is_int(const vms_json *v, int64_t *out);

/* ---- typed member access for request arguments ------------------------
 * Each looks up obj[key].  Absent (or null) member: returns 0 and leaves
 * *out untouched when !required, VMS_EINVAL "missing argument 'key'" when
 * required.  Wrong type: VMS_EINVAL "argument 'key' must be a string". */
int vms_json_get_string(const char **out, const vms_json *obj, const char *key, int required);
int vms_json_get_int(int64_t *out, const vms_json *obj, const char *key, int required);
/* A non-negative integer; also accepts a string with a size suffix
 * ("4K", "2G", "1.5T", binary units) as the CLI does. */
int vms_json_get_size(uint64_t *out, const vms_json *obj, const char *key, int required);
int vms_json_get_bool(int *out, const vms_json *obj, const char *key, int required);

/* Parse a size string: "512", "4K", "4k", "2G", "1.5T", "3MiB", "1GB"
 * (K/M/G/T/P = powers of 1024).  VMS_EINVAL on junk or overflow. */
int vms_parse_size(uint64_t *out, const char *s);

#ifdef __cplusplus
}
#endif
#endif
