/*
 * UTC calendar arithmetic for schedules and retention periods.
 *
 * No libc time zone code is used (gmtime/timegm depend on the TZ database
 * and on time_t ranges): the civil-date conversions are the branch-free
 * algorithms of H. Hinnant ("chrono-Compatible Low-Level Date Algorithms"),
 * valid far beyond the years 1970..9999 vmsnap accepts.
 */
#include <stdio.h>

#include "vmsnap/error.h"
#include "vmsnap/policy.h"
#include "policy/policy_private.h"

int64_t vms__days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = vms__floordiv(y, 400);
	int64_t yoe = y - era * 400;                                  /* [0, 399] */
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;          /* [0, 146096] */
	return era * 146097 + doe - 719468;
}

void vms__civil_from_days(int64_t *y, unsigned *m, unsigned *d, int64_t z)
{
	z += 719468;
	int64_t era = vms__floordiv(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

unsigned vms__days_in_month(int64_t y, unsigned m)
{
	static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dim[m - 1];
}

void vms__civil_from_time(vms_civil *out, int64_t t)
{
	int64_t days = vms__floordiv(t, 86400);
	int64_t sec = t - days * 86400;
	vms__civil_from_days(&out->year, &out->month, &out->day, days);
	out->hour = (unsigned)(sec / 3600);
	out->minute = (unsigned)(sec / 60 % 60);
	out->second = (unsigned)(sec % 60);
	/* 1970-01-01 was a Thursday (3 in Monday-based numbering). */
	out->weekday = (unsigned)(vms__floordiv(days + 3, 7) * -7 + days + 3);
}

void vms__iso_week(int64_t *iso_year, unsigned *week, int64_t days)
{
	/* The ISO week belongs to the year that holds its Thursday. */
	int64_t wd = days + 3 - vms__floordiv(days + 3, 7) * 7;  /* 0 = Monday */
	int64_t thursday = days - wd + 3;
	int64_t y;
	unsigned m, d;
	vms__civil_from_days(&y, &m, &d, thursday);
	int64_t jan1 = vms__days_from_civil(y, 1, 1);
	*iso_year = y;
	*week = (unsigned)((thursday - jan1) / 7 + 1);
}

int vms_policy_time_iso(char *out, size_t cap, int64_t t)
{
	if (t < 0 || t > VMS_POLICY_TIME_MAX)
		return vms_error_set(VMS_EINVAL, "time %lld is outside 1970..9999", (long long)t);
	if (cap < 21)
		return vms_error_set(VMS_EINVAL, "time buffer too small");
	vms_civil c;
	vms__civil_from_time(&c, t);
	snprintf(out, cap, "%04lld-%02u-%02uT%02u:%02u:%02uZ", (long long)c.year, c.month, c.day, c.hour,
	         c.minute, c.second);
	return 0;
}
