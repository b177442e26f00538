/*
 * vmsnap/uuid.h - RFC 9562 version 4 (random) UUIDs in their canonical
 * lowercase text form "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".
 *
 * Every catalog object (SR, VM, VDI, VBD, snapshot) is keyed by one.  Backends
 * may use these strings in paths because vms_uuid_valid() admits only the
 * canonical form: 36 characters of [0-9a-f-], never '/' or "..".
 */
#ifndef VMSNAP_UUID_H
#define VMSNAP_UUID_H

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_UUID_LEN 36      /* characters, without the NUL */
#define VMS_UUID_BUF 37      /* buffer size including the NUL */

/* Generate a v4 UUID from getrandom(2) into out (VMS_UUID_BUF bytes).
 * Returns 0 or VMS_EIO when the kernel's random source fails. */
int vms_uuid_generate(char out[VMS_UUID_BUF]);

/* 1 when s is a canonical UUID (lowercase hex, dashes at 8-13-18-23, any
 * version); 0 otherwise. */
int vms_uuid_valid(const char *s);

/* Parse a UUID in any case (upper or lower) and with optional surrounding
 * braces or a "urn:uuid:" prefix into the canonical lowercase form.
 * Returns 0 or VMS_EINVAL with a message. */
int vms_uuid_parse(char out[VMS_UUID_BUF], const char *s);

#ifdef __cplusplus
}
#endif
#endif
