/*
 * The per-VM analysis report (the paper's "snapshot monitoring and
 * analysis"): counts and ages, space by snapshot, growth rates fitted over
 * time, chain depth, and what the VM's policy would prune now.
 *
 * Input figures come from the catalog and the backend; a figure the backend
 * cannot tell is -1 and shows as null.  Sums are null as soon as one term
 * is unknown: a partial sum would read as a total.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/policy.h"
#include "policy/policy_private.h"

int vms_linear_slope(double *slope, const double *x, const double *y, size_t n)
{
	double mx = 0, my = 0, sxx = 0, sxy = 0;
	if (n < 2)
		return vms_error_set(VMS_EINVAL, "slope: need two points");
	/* Centre on the first point first: epoch seconds squared lose digits. */
	for (size_t i = 0; i < n; i++) {
		mx += x[i] - x[0];
		my += y[i];
	}
	mx = mx / (double)n + x[0];
	my /= (double)n;
	for (size_t i = 0; i < n; i++) {
		sxx += (x[i] - mx) * (x[i] - mx);
		sxy += (x[i] - mx) * (y[i] - my);
	}
	if (sxx == 0)
		return vms_error_set(VMS_EINVAL, "slope: all points at the same x");
	*slope = sxy / sxx;
	return 0;
}

static int cmp_oldest_first(const void *a, const void *b)
{
	const vms_report_snap *x = *(const vms_report_snap *const *)a;
	const vms_report_snap *y = *(const vms_report_snap *const *)b;
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static vms_json *int_or_null(int64_t v)
{
	return v < 0 ? vms_json_new_null() : vms_json_new_int(v);
}

static vms_json *str_or_null(const char *s)
{
	return s ? vms_json_new_string(s) : vms_json_new_null();
}

static vms_json *time_pair(const char *key_prefix, int64_t t, vms_json *obj, int *rc)
{
	char key[32], iso[32];
	if (*rc < 0)
		return obj;
	snprintf(key, sizeof(key), "%stime", key_prefix);
	if ((*rc = vms_json_object_set_int(obj, key, t)) < 0)
		return obj;
	snprintf(key, sizeof(key), "%stime_iso", key_prefix);
	if ((*rc = vms_policy_time_iso(iso, sizeof(iso), t)) < 0)
		return obj;
	*rc = vms_json_object_set_string(obj, key, iso);
	return obj;
}

/* {"uuid","name","time","time_iso","age_seconds"} of one snapshot. */
static vms_json *brief(const vms_report_snap *s, int64_t now, int *rc)
{
	vms_json *o = vms_json_new_object();
	if (!o) {
		*rc = vms_error_set(VMS_ENOMEM, "out of memory");
		return NULL;
	}
	if ((*rc = vms_json_object_set(o, "uuid", str_or_null(s->uuid))) < 0 ||
	    (*rc = vms_json_object_set(o, "name", str_or_null(s->name))) < 0)
		return o;
	time_pair("", s->time, o, rc);
	if (*rc == 0)
		*rc = vms_json_object_set_int(o, "age_seconds", now - s->time);
	return o;
}

/* Sum of a figure over all snapshots, -1 if any is unknown. */
static int64_t sum_known(const vms_report_snap *const *v, size_t n, size_t field)
{
	int64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		int64_t x = *(const int64_t *)((const char *)v[i] + field);
		if (x < 0)
			return -1;
		total += x;
	}
	return total;
}

/* Growth per day of a figure (cumulative when `cumulate`), fitted over the
 * snapshots where it is known; null if it cannot be fitted. */
static vms_json *growth(const vms_report_snap *const *v, size_t n, size_t field, int cumulate,
                        size_t *samples)
{
	double *x = calloc(n ? n : 1, sizeof(double)), *y = calloc(n ? n : 1, sizeof(double));
	double acc = 0, slope;
	size_t m = 0;
	vms_json *out = NULL;

	if (!x || !y)
		goto done;
	for (size_t i = 0; i < n; i++) {
		int64_t f = *(const int64_t *)((const char *)v[i] + field);
		if (f < 0)
			continue;
		acc = cumulate ? acc + (double)f : (double)f;
		x[m] = (double)v[i]->time / 86400.0;
		y[m] = acc;
		m++;
	}
	*samples = m;
	if (vms_linear_slope(&slope, x, y, m) == 0)
		out = vms_json_new_double(slope);
	else
		vms_error_clear();
done:
	free(x);
	free(y);
	return out ? out : vms_json_new_null();
}

int vms_report_vm(vms_json **out, const vms_report_input *in)
{
	const vms_report_snap **v = NULL;
	vms_prune_snap *ps = NULL;
	vms_prune_decision *dec = NULL;
	int64_t *ages = NULL;
	vms_json *o = NULL, *arr = NULL, *x = NULL;
	size_t n = in->n, held = 0, manual = 0, chained = 0;
	uint32_t max_depth = 0;
	int rc = 0;

	if (in->now < 0 || in->now > VMS_POLICY_TIME_MAX)
		return vms_error_set(VMS_EINVAL, "report: current time %lld is outside 1970..9999",
		                     (long long)in->now);
	if (n && (!(v = calloc(n, sizeof(*v))) || !(ps = calloc(n, sizeof(*ps))) ||
	          !(ages = calloc(n, sizeof(*ages))))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		const vms_report_snap *s = &in->snaps[i];
		v[i] = s;
		ps[i] = (vms_prune_snap){.time = s->time, .id = s->id, .held = s->held,
		                         .hold_reason = s->hold_reason, .manual = s->manual};
		ages[i] = in->now - s->time;
		held += s->held != 0;
		manual += s->manual != 0;
		uint32_t depth = s->chain_depth ? s->chain_depth : 1;
		chained += depth > 1;
		if (depth > max_depth)
			max_depth = depth;
	}
	/* The prune decision also validates times and ids. */
	if (in->policy && (rc = vms_prune_compute(&dec, in->policy, ps, n)) < 0)
		goto done;
	if (!in->policy)
		for (size_t i = 0; i < n; i++)
			if (v[i]->time < 0 || v[i]->time > VMS_POLICY_TIME_MAX) {
				rc = vms_error_set(VMS_EINVAL, "report: snapshot time %lld is outside 1970..9999",
				                   (long long)v[i]->time);
				goto done;
			}
	if (n) {
		qsort(v, n, sizeof(*v), cmp_oldest_first);
		qsort(ages, n, sizeof(*ages), cmp_i64);
	}

	if (!(o = vms_json_new_object())) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = vms_json_object_set(o, "vm", str_or_null(in->vm))) < 0 ||
	    (rc = vms_json_object_set(o, "vm_uuid", str_or_null(in->vm_uuid))) < 0)
		goto done;
	time_pair("now_", in->now, o, &rc);
	if (rc < 0 || (rc = vms_json_object_set_int(o, "snapshot_count", (int64_t)n)) < 0 ||
	    (rc = vms_json_object_set_int(o, "held_count", (int64_t)held)) < 0 ||
	    (rc = vms_json_object_set_int(o, "manual_count", (int64_t)manual)) < 0)
		goto done;
	x = n ? brief(v[0], in->now, &rc) : vms_json_new_null();
	if ((rc = rc < 0 ? (vms_json_free(x), rc) : vms_json_object_set(o, "oldest", x)) < 0)
		goto done;
	x = n ? brief(v[n - 1], in->now, &rc) : vms_json_new_null();
	if ((rc = rc < 0 ? (vms_json_free(x), rc) : vms_json_object_set(o, "newest", x)) < 0)
		goto done;
	if (n) {
		x = vms_json_new_object();
		if ((rc = vms_json_object_set(o, "age_seconds", x)) < 0 ||
		    (rc = vms_json_object_set_int(x, "min", ages[0])) < 0 ||
		    (rc = vms_json_object_set_int(x, "max", ages[n - 1])) < 0 ||
		    (rc = vms_json_object_set_int(x, "median", n % 2 ? ages[n / 2] :
		                                  ages[n / 2 - 1] + (ages[n / 2] - ages[n / 2 - 1]) / 2)) < 0)
			goto done;
	} else if ((rc = vms_json_object_set(o, "age_seconds", vms_json_new_null())) < 0) {
		goto done;
	}

	x = vms_json_new_object();
	if ((rc = vms_json_object_set(o, "space", x)) < 0 ||
	    (rc = vms_json_object_set(x, "referenced",
	                              int_or_null(sum_known(v, n, offsetof(vms_report_snap, referenced))))) < 0 ||
	    (rc = vms_json_object_set(x, "unique",
	                              int_or_null(sum_known(v, n, offsetof(vms_report_snap, unique))))) < 0 ||
	    (rc = vms_json_object_set(x, "written",
	                              int_or_null(sum_known(v, n, offsetof(vms_report_snap, written))))) < 0)
		goto done;

	size_t samples_ref = 0, samples_written = 0;
	x = vms_json_new_object();
	if ((rc = vms_json_object_set(o, "growth", x)) < 0 ||
	    (rc = vms_json_object_set(x, "referenced_bytes_per_day",
	                              growth(v, n, offsetof(vms_report_snap, referenced), 0,
	                                     &samples_ref))) < 0 ||
	    (rc = vms_json_object_set(x, "written_bytes_per_day",
	                              growth(v, n, offsetof(vms_report_snap, written), 1,
	                                     &samples_written))) < 0 ||
	    (rc = vms_json_object_set_int(x, "samples", (int64_t)samples_ref)) < 0)
		goto done;

	x = vms_json_new_object();
	if ((rc = vms_json_object_set(o, "chain_depth", x)) < 0 ||
	    (rc = vms_json_object_set_int(x, "max", n ? max_depth : 0)) < 0 ||
	    (rc = vms_json_object_set_int(x, "chained_snapshots", (int64_t)chained)) < 0)
		goto done;

	if (in->policy) {
		int64_t kept = 0, freed = 0;
		if ((rc = vms_policy_to_json(&x, in->policy)) < 0 ||
		    (rc = vms_json_object_set(o, "policy", x)) < 0)
			goto done;
		for (size_t i = 0; i < n; i++) {
			kept += dec[i].keep;
			if (!dec[i].keep)
				freed = (freed < 0 || in->snaps[i].unique < 0) ? -1 : freed + in->snaps[i].unique;
		}
		x = vms_json_new_object();
		if ((rc = vms_json_object_set(o, "prune", x)) < 0 ||
		    (rc = vms_json_object_set_int(x, "keep", kept)) < 0 ||
		    (rc = vms_json_object_set_int(x, "remove", (int64_t)n - kept)) < 0 ||
		    (rc = vms_json_object_set(x, "unique_bytes_freed", int_or_null(freed))) < 0)
			goto done;
	} else if ((rc = vms_json_object_set(o, "policy", vms_json_new_null())) < 0 ||
	           (rc = vms_json_object_set(o, "prune", vms_json_new_null())) < 0) {
		goto done;
	}

	if (!(arr = vms_json_new_array())) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		const vms_report_snap *s = v[i];
		const vms_prune_decision *d = dec ? &dec[s - in->snaps] : NULL;
		vms_json *e = brief(s, in->now, &rc);
		if (rc < 0) {
			vms_json_free(e);
			goto done;
		}
		if ((rc = vms_json_array_append(arr, e)) < 0)   /* owns e, also on failure */
			goto done;
		vms_json *reasons = d ? vms_json_new_array() : vms_json_new_null();
		if ((rc = vms_json_object_set_int(e, "id", (int64_t)s->id)) < 0 ||
		    (rc = vms_json_object_set(e, "referenced", int_or_null(s->referenced))) < 0 ||
		    (rc = vms_json_object_set(e, "unique", int_or_null(s->unique))) < 0 ||
		    (rc = vms_json_object_set(e, "written", int_or_null(s->written))) < 0 ||
		    (rc = vms_json_object_set_int(e, "chain_depth", s->chain_depth ? s->chain_depth : 1)) < 0 ||
		    (rc = vms_json_object_set_bool(e, "held", s->held != 0)) < 0 ||
		    (rc = vms_json_object_set_bool(e, "manual", s->manual != 0)) < 0 ||
		    (rc = vms_json_object_set(e, "prune", d ? vms_json_new_string(d->keep ? "keep" : "remove")
		                                            : vms_json_new_null())) < 0 ||
		    (rc = d && reasons ? vms__reasons_fill(reasons, d->reason) : 0) < 0) {
			vms_json_free(reasons);
			goto done;
		}
		if ((rc = vms_json_object_set(e, "reasons", reasons)) < 0)
			goto done;
	}
	rc = vms_json_object_set(o, "snapshots", arr);
	arr = NULL;
	if (rc < 0)
		goto done;
	*out = o;
	o = NULL;
done:
	vms_json_free(arr);
	vms_json_free(o);
	free(v);
	free(ps);
	free(dec);
	free(ages);
	return rc;
}
