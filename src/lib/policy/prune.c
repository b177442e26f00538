/*
 * Retention: which snapshots a policy keeps and which it removes.
 *
 * The classes follow proxmox-backup exactly (compute_prune_info() and
 * mark_selections() in pbs-datastore/src/prune.rs; PVE's
 * PVE::Storage::prune_mark_backup_group is the same algorithm):
 *
 *   The snapshots are walked newest first.  The classes run in the order
 *   keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly,
 *   keep-yearly.  For each class with a count N:
 *     - "already included" = the periods (of this class) of every snapshot
 *       an earlier class marked keep: a snapshot kept by an earlier class
 *       still counts as its period's representative;
 *     - walk: skip a snapshot that already has a mark (keep or remove) or
 *       whose period is already included; else if its period is new to
 *       this class: stop when the class holds N periods, otherwise mark it
 *       keep and remember the period; if the period is not new (a newer
 *       snapshot of the same period was just kept), mark it remove.
 *   Snapshots left without a mark are removed.  "Periods without a
 *   snapshot do not count" follows from walking snapshots, not calendar.
 *   Protected snapshots (our held ones) are skipped by every class and kept.
 *
 * Periods: hour, day, ISO 8601 week (Monday..Sunday, ISO week-numbering
 * year, as %G/%V), month, year.  Proxmox uses local time; vmsnap uses UTC
 * everywhere.  keep-last's period is the snapshot itself (Proxmox uses the
 * backup time in seconds, which is unique per backup group there; vmsnap
 * can take two snapshots in one second, and keep-last=N must mean N).
 *
 * vmsnap adds (docs/policy.md):
 *   - held snapshots are never removed and not counted (Proxmox's
 *     "protected"); snapshots made by hand are treated the same unless the
 *     policy says prune_manual;
 *   - no class set at all = keep everything (Proxmox's keep-all);
 *   - the newest snapshot is never removed (with any class set it is kept
 *     by the first class anyway; the rule makes it explicit);
 *   - the decision never depends on the current time.
 *
 * Complexity: every period key is monotone in time, so walking newest
 * first, "is this period already included" is a merge against the sorted
 * list of included keys and "is it new to this class" compares with the
 * last key taken: O(n log n) for the sort, O(n) per class.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/policy.h"
#include "policy/policy_private.h"

enum { MARK_NONE = 0, MARK_KEEP, MARK_REMOVE, MARK_EXEMPT };

struct item {
	size_t in;        /* index into the caller's array */
	int64_t time;
	uint64_t id;
	int mark;
	int cls;
	int64_t key;      /* rank of the snapshot within class `cls` */
};

static int cmp_newest_first(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	if (x->time != y->time)
		return x->time > y->time ? -1 : 1;
	if (x->id != y->id)
		return x->id > y->id ? -1 : 1;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The period of a time for a class, as a number that grows with time. */
static int64_t period_key(int cls, int64_t t, int64_t position)
{
	int64_t days = vms__floordiv(t, 86400);
	vms_civil c;

	switch (cls) {
	case VMS_KEEP_LAST:
		/* Every snapshot is its own period; larger = newer. */
		return -position;
	case VMS_KEEP_HOURLY:
		return vms__floordiv(t, 3600);
	case VMS_KEEP_DAILY:
		return days;
	case VMS_KEEP_WEEKLY:
		/* Monday-based weeks: 1970-01-05 (a Monday) starts week 1. */
		return vms__floordiv(days + 3, 7);
	case VMS_KEEP_MONTHLY:
		vms__civil_from_time(&c, t);
		return c.year * 12 + (c.month - 1);
	default:
		vms__civil_from_time(&c, t);
		return c.year;
	}
}

static void period_label(char *out, size_t cap, int cls, int64_t t, int64_t position)
{
	vms_civil c;
	vms__civil_from_time(&c, t);
	switch (cls) {
	case VMS_KEEP_LAST:
		snprintf(out, cap, "#%lld", (long long)position + 1);
		break;
	case VMS_KEEP_HOURLY:
		snprintf(out, cap, "%04lld-%02u-%02uT%02u", (long long)c.year, c.month, c.day, c.hour);
		break;
	case VMS_KEEP_DAILY:
		snprintf(out, cap, "%04lld-%02u-%02u", (long long)c.year, c.month, c.day);
		break;
	case VMS_KEEP_WEEKLY: {
		int64_t iy;
		unsigned w;
		vms__iso_week(&iy, &w, vms__floordiv(t, 86400));
		snprintf(out, cap, "%04lld-W%02u", (long long)iy, w);
		break;
	}
	case VMS_KEEP_MONTHLY:
		snprintf(out, cap, "%04lld-%02u", (long long)c.year, c.month);
		break;
	default:
		snprintf(out, cap, "%04lld", (long long)c.year);
		break;
	}
}

/* One class over the walk (newest first), as mark_selections(). */
static void mark_class(struct item *v, size_t n, int cls, uint32_t count, int64_t *included)
{
	size_t ninc = 0, pos = 0, taken = 0;
	int64_t last_taken = 0;

	if (count == 0)
		return;
	/* Periods of the snapshots earlier classes kept, in walk order (keys
	 * are non-increasing along the walk). */
	for (size_t i = 0; i < n; i++)
		if (v[i].mark == MARK_KEEP)
			included[ninc++] = period_key(cls, v[i].time, (int64_t)i);
	for (size_t i = 0; i < n; i++) {
		if (v[i].mark != MARK_NONE)
			continue;
		int64_t key = period_key(cls, v[i].time, (int64_t)i);
		while (pos < ninc && included[pos] > key)
			pos++;
		if (pos < ninc && included[pos] == key)
			continue;
		if (taken == 0 || key != last_taken) {
			if (taken >= count)
				break;
			taken++;
			last_taken = key;
			v[i].mark = MARK_KEEP;
		} else {
			v[i].mark = MARK_REMOVE;
		}
		v[i].cls = cls;
		v[i].key = (int64_t)taken - 1;   /* rank within the class, for keep-last's label */
	}
}

static void add_reason(vms_prune_decision *d, const char *text)
{
	size_t len = strlen(d->reason);
	snprintf(d->reason + len, sizeof(d->reason) - len, "%s%s", len ? "; " : "", text);
}

int vms_prune_compute(vms_prune_decision **out, const vms_policy *p, const vms_prune_snap *snaps,
                      size_t n)
{
	struct item *v = NULL;
	int64_t *included = NULL;
	uint64_t *ids = NULL;
	vms_prune_decision *d = NULL;
	int rc = 0, any_class = 0;

	*out = NULL;
	if ((rc = vms_policy_validate(p)) < 0)
		return rc;
	if (n == 0)
		return 0;
	v = calloc(n, sizeof(*v));
	included = calloc(n, sizeof(*included));
	ids = calloc(n, sizeof(*ids));
	d = calloc(n, sizeof(*d));
	if (!v || !included || !ids || !d) {
		rc = vms_error_set(VMS_ENOMEM, "prune: out of memory for %zu snapshots", n);
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		if (snaps[i].time < 0 || snaps[i].time > VMS_POLICY_TIME_MAX) {
			rc = vms_error_set(VMS_EINVAL, "prune: snapshot %llu: time %lld is outside 1970..9999",
			                   (unsigned long long)snaps[i].id, (long long)snaps[i].time);
			goto done;
		}
		ids[i] = snaps[i].id;
		v[i] = (struct item){.in = i, .time = snaps[i].time, .id = snaps[i].id, .cls = -1};
		if (snaps[i].held || (snaps[i].manual && !p->prune_manual))
			v[i].mark = MARK_EXEMPT;
	}
	qsort(ids, n, sizeof(*ids), cmp_u64);
	for (size_t i = 1; i < n; i++)
		if (ids[i] == ids[i - 1]) {
			rc = vms_error_set(VMS_EINVAL, "prune: snapshot id %llu given twice",
			                   (unsigned long long)ids[i]);
			goto done;
		}
	qsort(v, n, sizeof(*v), cmp_newest_first);

	for (int c = 0; c < VMS_KEEP_CLASSES; c++) {
		if (p->keep.n[c])
			any_class = 1;
		mark_class(v, n, c, p->keep.n[c], included);
	}

	for (size_t i = 0; i < n; i++) {
		const vms_prune_snap *s = &snaps[v[i].in];
		vms_prune_decision *o = &d[v[i].in];
		char text[96];

		o->id = s->id;
		o->time = s->time;
		o->cls = -1;
		if (s->held) {
			o->keep = 1;
			o->why |= VMS_PRUNE_WHY_HELD;
			if (s->hold_reason && s->hold_reason[0]) {
				snprintf(text, sizeof(text), "held: %.64s", s->hold_reason);
				add_reason(o, text);
			} else {
				add_reason(o, "held");
			}
		}
		if (s->manual && !p->prune_manual) {
			o->keep = 1;
			o->why |= VMS_PRUNE_WHY_MANUAL;
			add_reason(o, "manual");
		}
		if (v[i].mark == MARK_KEEP || v[i].mark == MARK_REMOVE) {
			o->cls = v[i].cls;
			period_label(o->period, sizeof(o->period), v[i].cls, s->time, v[i].key);
		}
		if (v[i].mark == MARK_KEEP) {
			o->keep = 1;
			o->why |= VMS_PRUNE_WHY_CLASS;
			snprintf(text, sizeof(text), "%s %s", vms_keep_class_name(o->cls), o->period);
			add_reason(o, text);
		} else if (v[i].mark != MARK_EXEMPT && !any_class) {
			o->keep = 1;
			o->why |= VMS_PRUNE_WHY_KEEPALL;
			add_reason(o, "keep-all (no retention set)");
		}
		if (i == 0) {
			/* The newest snapshot is never removed. */
			o->keep = 1;
			o->why |= VMS_PRUNE_WHY_NEWEST;
			add_reason(o, "newest");
		}
		if (!o->keep) {
			if (v[i].mark == MARK_REMOVE) {
				o->why |= VMS_PRUNE_WHY_COVERED;
				snprintf(text, sizeof(text), "%s %s has a newer snapshot",
				         vms_keep_class_name(o->cls), o->period);
			} else {
				o->why |= VMS_PRUNE_WHY_BEYOND;
				snprintf(text, sizeof(text), "beyond retention");
			}
			add_reason(o, text);
		}
	}
	*out = d;
	d = NULL;
done:
	free(v);
	free(included);
	free(ids);
	free(d);
	return rc;
}

int vms__reasons_fill(vms_json *arr, const char *reason)
{
	int rc = 0;
	while (*reason && rc == 0) {
		const char *sep = strstr(reason, "; ");
		size_t len = sep ? (size_t)(sep - reason) : strlen(reason);
		rc = vms_json_array_append(arr, vms_json_new_stringn(reason, len));
		reason += len + (sep ? 2 : 0);
	}
	return rc;
}

static int cmp_decision_newest_first(const void *a, const void *b)
{
	const vms_prune_decision *x = *(const vms_prune_decision *const *)a;
	const vms_prune_decision *y = *(const vms_prune_decision *const *)b;
	if (x->time != y->time)
		return x->time > y->time ? -1 : 1;
	return x->id > y->id ? -1 : x->id < y->id;
}

int vms_prune_to_json(vms_json **out, const vms_prune_decision *d, size_t n)
{
	vms_json *o = NULL, *arr = NULL;
	const vms_prune_decision **order = NULL;
	int64_t kept = 0;
	int rc = 0;

	if (n && !(order = calloc(n, sizeof(*order))))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		order[i] = &d[i];
	if (n)
		qsort(order, n, sizeof(*order), cmp_decision_newest_first);
	if (!(o = vms_json_new_object()) || !(arr = vms_json_new_array())) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		const vms_prune_decision *x = order[i];
		vms_json *e = vms_json_new_object(), *reasons = vms_json_new_array();
		char iso[32];

		kept += x->keep;
		if ((rc = vms_policy_time_iso(iso, sizeof(iso), x->time)) < 0) {
			vms_json_free(e);
			vms_json_free(reasons);
			goto done;
		}
		if (reasons && vms__reasons_fill(reasons, x->reason) < 0) {
			vms_json_free(reasons);
			reasons = NULL;
		}
		if ((rc = vms_json_array_append(arr, e)) < 0) {
			vms_json_free(reasons);
			goto done;
		}
		if ((rc = vms_json_object_set_int(e, "id", (int64_t)x->id)) < 0 ||
		    (rc = vms_json_object_set_int(e, "time", x->time)) < 0 ||
		    (rc = vms_json_object_set_string(e, "time_iso", iso)) < 0 ||
		    (rc = vms_json_object_set_string(e, "action", x->keep ? "keep" : "remove")) < 0 ||
		    (rc = vms_json_object_set(e, "reasons", reasons)) < 0)
			goto done;
	}
	if ((rc = vms_json_object_set_int(o, "keep", kept)) < 0 ||
	    (rc = vms_json_object_set_int(o, "remove", (int64_t)n - kept)) < 0)
		goto done;
	rc = vms_json_object_set(o, "snapshots", arr);
	arr = NULL;
	if (rc < 0)
		goto done;
	*out = o;
	o = NULL;
done:
	free(order);
	vms_json_free(arr);
	vms_json_free(o);
	return rc;
}
