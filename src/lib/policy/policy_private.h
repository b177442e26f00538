/*
 * Private helpers of the policy library: the proleptic Gregorian calendar
 * in UTC (Howard Hinnant's days_from_civil / civil_from_days algorithms),
 * ISO 8601 week numbers, and floor division for period keys.
 */
#ifndef VMS_POLICY_PRIVATE_H
#define VMS_POLICY_PRIVATE_H

#include <stdint.h>

#include "vmsnap/json.h"

typedef struct vms_civil {
	int64_t year;
	unsigned month;   /* 1..12 */
	unsigned day;     /* 1..31 */
	unsigned hour, minute, second;
	unsigned weekday; /* 0 = Monday .. 6 = Sunday */
} vms_civil;

static inline int64_t vms__floordiv(int64_t a, int64_t b)
{
	int64_t q = a / b;
	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

/* Days since 1970-01-01 of a date; and back. */
int64_t vms__days_from_civil(int64_t y, unsigned m, unsigned d);
void vms__civil_from_days(int64_t *y, unsigned *m, unsigned *d, int64_t days);
unsigned vms__days_in_month(int64_t y, unsigned m);
void vms__civil_from_time(vms_civil *out, int64_t t);
/* ISO 8601 week-numbering year and week (1..53) of a day number. */
void vms__iso_week(int64_t *iso_year, unsigned *week, int64_t days);


/* Append the "; "-separated reasons of a prune decision to a JSON array. */
int vms__reasons_fill(vms_json *arr, const char *reason);

#endif
