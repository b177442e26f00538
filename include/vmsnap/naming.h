/*
 * vmsnap/naming.h - the paper's naming rules (section 3.2.3).
 *
 * User names (SR, VM, disk and snapshot names) use letters, digits and
 * underscore only, 1..VMS_NAME_MAX characters; lowercase is recommended.
 * They can therefore never hold '/', '.', '@', '-', ':' or spaces, cannot
 * be confused with a UUID (which has dashes) or a selector, and never become
 * paths: backends only ever see catalog UUIDs.
 *
 * A snapshot's full name is its user name plus a UTC time tag:
 *   <name>_YYYYMMDDTHH:MM:SS      e.g. snapshot_1_20140219T02:52:44
 * The tag is always the last 18 characters ("_" + 17), so user names may
 * themselves contain underscores and digits.
 *
 * Times are seconds since the epoch, UTC, in [0, 253402300799] (years
 * 1970..9999).  All functions return 0 or VMS_EINVAL with a message.
 */
#ifndef VMSNAP_NAMING_H
#define VMSNAP_NAMING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_NAME_MAX 64                        /* characters of a user name */
#define VMS_TAG_LEN 17                         /* "YYYYMMDDTHH:MM:SS" */
#define VMS_FULLNAME_MAX (VMS_NAME_MAX + 1 + VMS_TAG_LEN)
#define VMS_ISO_BUF 21                         /* "YYYY-MM-DDTHH:MM:SSZ" + NUL */
#define VMS_TIME_MAX INT64_C(253402300799)     /* 9999-12-31T23:59:59Z */

/* Check a user name; `what` ("vm", "snapshot", ...) goes in the message.
 * Snapshot names may not be "latest" (a selector keyword). */
int vms_name_check(const char *name, const char *what);

/* Format t as the time tag "YYYYMMDDTHH:MM:SS" (out: VMS_TAG_LEN+1 bytes). */
int vms_time_tag(char *out, size_t cap, int64_t t);

/* Format t as ISO 8601 UTC "YYYY-MM-DDTHH:MM:SSZ" (out: VMS_ISO_BUF bytes). */
int vms_time_iso(char *out, size_t cap, int64_t t);

/* "<name>_<tag>" into out (VMS_FULLNAME_MAX+1 bytes). */
int vms_snapshot_fullname(char *out, size_t cap, const char *name, int64_t t);

/* Split a full snapshot name into its user name and time.  name_out has
 * VMS_NAME_MAX+1 bytes.  Refuses strings that are not exactly a valid user
 * name followed by "_" and a valid tag. */
int vms_snapshot_fullname_parse(char *name_out, int64_t *t_out, const char *full);

/* Parse a UTC time given by a user:
 *   2026-11-23T10:00:00[Z|+00:00]   2026-11-23T10:00   2026-11-23 10:00:00
 *   2026-11-23 (midnight)           20261123T10:00:00 (the tag form)
 *   @1795498979 (epoch seconds)
 * Missing seconds/minutes are zero.  Offsets other than UTC are refused:
 * every time in vmsnap is UTC. */
int vms_time_parse(int64_t *out, const char *s);

/* Calendar helpers (proleptic Gregorian, UTC). */
int64_t vms_days_from_civil(int64_t y, unsigned m, unsigned d);

#ifdef __cplusplus
}
#endif
#endif
