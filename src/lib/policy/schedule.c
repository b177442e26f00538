/*
 * When the next automatic snapshot is due.
 *
 * A schedule is a fixed, numbered sequence of UTC instants ("slots"):
 *   interval  slot k = k * interval            (aligned to the epoch, so
 *                                               "every 15m" fires at :00,
 *                                               :15, :30, :45)
 *   daily     slot k = day k at HH:MM
 *   weekly    slot k = the given weekday of ISO week k at HH:MM
 *   monthly   slot k = day D of month k (or that month's last day) at HH:MM
 * Slots are strictly increasing in k, so "the newest slot at or before t"
 * has an index, and the number of slots between two times is a difference
 * of indexes: missed runs are counted, never iterated, however long the
 * daemon was down.
 *
 * The decision rules (one catch-up run, no burst, a late run folded into
 * the next slot, a clock that goes back) are spelled out in policy.h above
 * vms_policy_next_run().
 */
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/policy.h"
#include "policy/policy_private.h"

#define WEEK (7 * 86400)

static int64_t monthly_slot(const vms_schedule *s, int64_t month_index)
{
	int64_t y = vms__floordiv(month_index, 12);
	unsigned m = (unsigned)(month_index - y * 12) + 1;
	unsigned dim = vms__days_in_month(y, m);
	unsigned d = s->mday < dim ? s->mday : dim;
	return vms__days_from_civil(y, m, d) * 86400 + (int64_t)s->minute_of_day * 60;
}

/* Offset of the weekly slot from the Monday-based week start: 1970-01-01
 * was a Thursday, so week k starts on day 7k - 3. */
static int64_t weekly_base(const vms_schedule *s)
{
	return ((int64_t)s->weekday - 3) * 86400 + (int64_t)s->minute_of_day * 60;
}

/* The slot with index k. */
static int64_t slot_of(const vms_schedule *s, int64_t k)
{
	switch (s->kind) {
	case VMS_SCHEDULE_INTERVAL:
		return k * s->interval;
	case VMS_SCHEDULE_DAILY:
		return k * 86400 + (int64_t)s->minute_of_day * 60;
	case VMS_SCHEDULE_WEEKLY:
		return k * WEEK + weekly_base(s);
	case VMS_SCHEDULE_MONTHLY:
		return monthly_slot(s, k);
	default:
		return 0;
	}
}

/* The index of the newest slot at or before t. */
static int64_t index_at_or_before(const vms_schedule *s, int64_t t)
{
	switch (s->kind) {
	case VMS_SCHEDULE_INTERVAL:
		return vms__floordiv(t, s->interval);
	case VMS_SCHEDULE_DAILY:
		return vms__floordiv(t - (int64_t)s->minute_of_day * 60, 86400);
	case VMS_SCHEDULE_WEEKLY:
		return vms__floordiv(t - weekly_base(s), WEEK);
	case VMS_SCHEDULE_MONTHLY: {
		vms_civil c;
		vms__civil_from_time(&c, t);
		int64_t k = c.year * 12 + (c.month - 1);
		return monthly_slot(s, k) <= t ? k : k - 1;
	}
	default:
		return 0;
	}
}

static int check_time(int64_t t, const char *what)
{
	if (t < 0 || t > VMS_POLICY_TIME_MAX)
		return vms_error_set(VMS_EINVAL, "policy: %s time %lld is outside 1970..9999", what,
		                     (long long)t);
	return 0;
}

static int check_schedule(const vms_schedule *s)
{
	vms_policy p;
	vms_policy_init(&p);
	p.schedule = *s;
	return vms_policy_validate(&p);
}

/* Arguments of the two slot queries: 0, or an error. */
static int check_query(const vms_schedule *s, int64_t t)
{
	int rc;
	if ((rc = check_time(t, "reference")) < 0 || (rc = check_schedule(s)) < 0)
		return rc;
	if (s->kind == VMS_SCHEDULE_NONE)
		return vms_error_set(VMS_ENOTFOUND, "policy: no schedule");
	return 0;
}

int vms_schedule_next_after(int64_t *out, const vms_schedule *s, int64_t t)
{
	int rc;
	if ((rc = check_query(s, t)) < 0)
		return rc;
	*out = slot_of(s, index_at_or_before(s, t) + 1);
	return 0;
}

int vms_schedule_prev_at_or_before(int64_t *out, const vms_schedule *s, int64_t t)
{
	int rc;
	if ((rc = check_query(s, t)) < 0)
		return rc;
	int64_t slot = slot_of(s, index_at_or_before(s, t));
	if (slot < 0)
		return vms_error_set(VMS_ENOTFOUND, "policy: no slot before 1970");
	*out = slot;
	return 0;
}

int vms_policy_next_run(int64_t *next, uint64_t *missed, const vms_policy *p, int64_t last_run,
                        int64_t now)
{
	const vms_schedule *s = &p->schedule;
	uint64_t skipped = 0;
	int64_t due;
	int rc;

	if ((rc = vms_policy_validate(p)) < 0 || (rc = check_time(now, "current")) < 0)
		return rc;
	if (last_run != VMS_POLICY_NO_RUN && (rc = check_time(last_run, "last run")) < 0)
		return rc;
	if (!p->enabled || s->kind == VMS_SCHEDULE_NONE) {
		due = VMS_POLICY_NEVER;
	} else if (last_run == VMS_POLICY_NO_RUN) {
		/* First slot at or after now: a new policy waits for its schedule. */
		due = slot_of(s, index_at_or_before(s, now - 1) + 1);
	} else if (last_run > now) {
		/* The clock went backwards: schedule from the present, as if the
		 * last run had just happened; nothing is due at once. */
		due = slot_of(s, index_at_or_before(s, now) + 1);
	} else {
		int64_t first = index_at_or_before(s, last_run) + 1;
		int64_t newest = index_at_or_before(s, now);
		if (first > newest) {
			due = slot_of(s, first);
		} else {
			/* One run stands for the newest slot; the older ones since the
			 * last run are collapsed into it.  If that slot's period is
			 * already in its last quarter, the run is left to the next slot
			 * instead, so two runs are never closer than a quarter period. */
			int64_t current = slot_of(s, newest), upcoming = slot_of(s, newest + 1);
			if ((upcoming - now) * 4 < upcoming - current) {
				due = upcoming;
				skipped = (uint64_t)(newest - first + 1);
			} else {
				due = current;
				skipped = (uint64_t)(newest - first);
			}
		}
	}
	*next = due;
	if (missed)
		*missed = skipped;
	return 0;
}
