/*
 * Naming rules and time tags (see vmsnap/naming.h).
 *
 * Calendar arithmetic is done here (Howard Hinnant's days_from_civil and its
 * inverse) instead of through mktime/timegm, so that results never depend on
 * the TZ environment or the C library's time range, and every field is
 * range-checked before use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/naming.h"

int vms_name_check(const char *name, const char *what)
{
	if (!what)
		what = "object";
	if (!name || !*name)
		return vms_error_set(VMS_EINVAL, "%s name is empty", what);
	size_t n = 0;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		         c == '_';
		if (!ok)
			return vms_error_set(VMS_EINVAL, "%s name '%.80s' is invalid: only letters, digits "
			                     "and underscore are allowed", what, name);
		if (n >= VMS_NAME_MAX)
			return vms_error_set(VMS_EINVAL, "%s name '%.80s...' is longer than %d characters",
			                     what, name, VMS_NAME_MAX);
	}
	if (strcmp(what, "snapshot") == 0 && strcmp(name, "latest") == 0)
		return vms_error_set(VMS_EINVAL, "snapshot name 'latest' is reserved (it selects the "
		                     "newest snapshot)");
	return 0;
}

int64_t vms_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

struct civil {
	int64_t y;
	unsigned m, d, hh, mm, ss;
};

static void civil_from_time(struct civil *c, int64_t t)
{
	int64_t days = t / 86400, rem = t % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	c->hh = (unsigned)(rem / 3600);
	c->mm = (unsigned)(rem / 60 % 60);
	c->ss = (unsigned)(rem % 60);
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	c->d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	c->m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	c->y = y + (c->m <= 2);
}

static int time_range(int64_t t)
{
	if (t < 0 || t > VMS_TIME_MAX)
		return vms_error_set(VMS_EINVAL, "time %lld is outside 1970..9999", (long long)t);
	return 0;
}

int vms_time_tag(char *out, size_t cap, int64_t t)
{
	int rc;
	struct civil c;
	if ((rc = time_range(t)) < 0)
		return rc;
	if (cap < VMS_TAG_LEN + 1)
		return vms_error_set(VMS_EINVAL, "time tag buffer too small");
	civil_from_time(&c, t);
	snprintf(out, cap, "%04lld%02u%02uT%02u:%02u:%02u", (long long)c.y, c.m, c.d, c.hh, c.mm, c.ss);
	return 0;
}

int vms_time_iso(char *out, size_t cap, int64_t t)
{
	int rc;
	struct civil c;
	if ((rc = time_range(t)) < 0)
		return rc;
	if (cap < VMS_ISO_BUF)
		return vms_error_set(VMS_EINVAL, "time buffer too small");
	civil_from_time(&c, t);
	snprintf(out, cap, "%04lld-%02u-%02uT%02u:%02u:%02uZ", (long long)c.y, c.m, c.d, c.hh, c.mm,
	         c.ss);
	return 0;
}

int vms_snapshot_fullname(char *out, size_t cap, const char *name, int64_t t)
{
	int rc;
	char tag[VMS_TAG_LEN + 1];
	if ((rc = vms_name_check(name, "snapshot")) < 0)
		return rc;
	if ((rc = vms_time_tag(tag, sizeof(tag), t)) < 0)
		return rc;
	if (strlen(name) + 1 + VMS_TAG_LEN + 1 > cap)
		return vms_error_set(VMS_EINVAL, "snapshot name buffer too small");
	snprintf(out, cap, "%s_%s", name, tag);
	return 0;
}

/* Read exactly n digits. */
static int digits(unsigned *out, const char *s, int n)
{
	unsigned v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static int make_time(int64_t *out, unsigned y, unsigned mo, unsigned d, unsigned h, unsigned mi,
                     unsigned s, const char *orig)
{
	static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59)
		goto bad;
	unsigned lim = mdays[mo - 1];
	if (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		lim = 29;
	if (d > lim)
		goto bad;
	*out = vms_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
	return 0;
bad:
	return vms_error_set(VMS_EINVAL, "'%.64s' is not a valid UTC date and time (1970..9999)", orig);
}

/* Tag form "YYYYMMDDTHH:MM:SS", exactly. */
static int parse_tag(int64_t *out, const char *s, const char *orig)
{
	unsigned y, mo, d, h, mi, sec;
	if (strlen(s) != VMS_TAG_LEN || digits(&y, s, 4) || digits(&mo, s + 4, 2) ||
	    digits(&d, s + 6, 2) || s[8] != 'T' || digits(&h, s + 9, 2) || s[11] != ':' ||
	    digits(&mi, s + 12, 2) || s[14] != ':' || digits(&sec, s + 15, 2))
		return vms_error_set(VMS_EINVAL, "'%.64s' is not a time tag (YYYYMMDDTHH:MM:SS)", orig);
	return make_time(out, y, mo, d, h, mi, sec, orig);
}

int vms_snapshot_fullname_parse(char *name_out, int64_t *t_out, const char *full)
{
	int rc;
	if (!full)
		return vms_error_set(VMS_EINVAL, "missing snapshot name");
	size_t n = strnlen(full, VMS_FULLNAME_MAX + 1);
	if (n > VMS_FULLNAME_MAX || n < VMS_TAG_LEN + 2 || full[n - VMS_TAG_LEN - 1] != '_')
		return vms_error_set(VMS_EINVAL, "'%.100s' is not a full snapshot name "
		                     "(<name>_YYYYMMDDTHH:MM:SS)", full);
	char name[VMS_NAME_MAX + 1];
	size_t nl = n - VMS_TAG_LEN - 1;
	memcpy(name, full, nl);
	name[nl] = 0;
	vms_error_clear();
	if ((rc = vms_name_check(name, "snapshot")) < 0)
		return vms_error_wrap(rc, "'%.100s' is not a full snapshot name", full);
	int64_t t;
	if ((rc = parse_tag(&t, full + nl + 1, full)) < 0)
		return rc;
	if (name_out)
		memcpy(name_out, name, nl + 1);
	if (t_out)
		*t_out = t;
	return 0;
}

int vms_time_parse(int64_t *out, const char *s)
{
	unsigned y, mo, d, h = 0, mi = 0, sec = 0;
	if (!s || !*s)
		return vms_error_set(VMS_EINVAL, "empty time");
	size_t n = strnlen(s, 64);
	if (s[0] == '@') {
		char *end;
		if (n < 2 || s[1] < '0' || s[1] > '9')
			goto bad;
		unsigned long long v = strtoull(s + 1, &end, 10);
		if (*end || v > (unsigned long long)VMS_TIME_MAX)
			goto bad;
		*out = (int64_t)v;
		return 0;
	}
	if (n == VMS_TAG_LEN && s[8] == 'T')
		return parse_tag(out, s, s);
	/* YYYY-MM-DD */
	if (n < 10 || digits(&y, s, 4) || s[4] != '-' || digits(&mo, s + 5, 2) || s[7] != '-' ||
	    digits(&d, s + 8, 2))
		goto bad;
	const char *p = s + 10;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (digits(&h, p, 2) || p[2] != ':' || digits(&mi, p + 3, 2))
			goto bad;
		p += 5;
		if (*p == ':') {
			if (digits(&sec, p + 1, 2))
				goto bad;
			p += 3;
		}
	}
	if (*p == 'Z' || *p == 'z')
		p++;
	else if (strcmp(p, "+00:00") == 0 || strcmp(p, "-00:00") == 0 || strcmp(p, "+0000") == 0)
		p += strlen(p);
	else if (*p == '+' || *p == '-')
		return vms_error_set(VMS_EINVAL, "time '%.64s': only UTC is accepted (end with Z or "
		                     "nothing)", s);
	if (*p)
		goto bad;
	return make_time(out, y, mo, d, h, mi, sec, s);
bad:
	return vms_error_set(VMS_EINVAL, "'%.64s' is not a time: use ISO 8601 UTC such as "
	                     "2026-11-23T10:00:00Z, 2026-11-23T10:00, 2026-11-23, the tag form "
	                     "20261123T10:00:00 or @<epoch seconds>", s);
}
