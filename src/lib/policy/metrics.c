/*
 * Per-disk I/O counters and latency histograms.
 *
 * Writers are the NBD server's worker threads; each request costs four
 * relaxed fetch_adds on the disk's own counters (ops, bytes or errors, one
 * latency bucket, the latency sum).  Relaxed order is enough: every counter
 * is independent, and a reader only needs each value to be some value it
 * had, never a torn one.  The histogram's count is not stored but summed
 * from the buckets at read time, so _count always equals the +Inf bucket.
 */
#include <math.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/metrics.h"

static const char *const op_names[VMS_IO_OPS] = {"read", "write", "flush", "trim"};

const char *vms_io_op_name(int op)
{
	return op >= 0 && op < VMS_IO_OPS ? op_names[op] : "?";
}

void vms_io_stats_init(vms_io_stats *s)
{
	for (int op = 0; op < VMS_IO_OPS; op++) {
		atomic_init(&s->ops[op], 0);
		atomic_init(&s->bytes[op], 0);
		atomic_init(&s->errors[op], 0);
		for (int i = 0; i < VMS_LAT_BUCKETS; i++)
			atomic_init(&s->latency[op].bucket[i], 0);
		atomic_init(&s->latency[op].sum_ns, 0);
	}
}

unsigned vms_latency_bucket(uint64_t latency_ns)
{
	/* Bucket i holds latencies of at most 2^i us: with q = ceil(ns/1000),
	 * ns <= 1000 * 2^i  <=>  q <= 2^i, so i = ceil(log2(q)). */
	uint64_t q = latency_ns / 1000 + (latency_ns % 1000 != 0);
	if (q <= 1)
		return 0;
	unsigned i = 64u - (unsigned)__builtin_clzll(q - 1);
	return i < VMS_LAT_BUCKETS - 1 ? i : VMS_LAT_BUCKETS - 1;
}

uint64_t vms_latency_bucket_le_us(unsigned i)
{
	return i < VMS_LAT_BUCKETS - 1 ? UINT64_C(1) << i : UINT64_MAX;
}

void vms_io_stats_record(vms_io_stats *s, vms_io_op op, uint64_t bytes, uint64_t latency_ns,
                         int failed)
{
	if ((unsigned)op >= VMS_IO_OPS)
		return;
	atomic_fetch_add_explicit(&s->ops[op], 1, memory_order_relaxed);
	if (failed)
		atomic_fetch_add_explicit(&s->errors[op], 1, memory_order_relaxed);
	else if (bytes)
		atomic_fetch_add_explicit(&s->bytes[op], bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->latency[op].bucket[vms_latency_bucket(latency_ns)], 1,
	                          memory_order_relaxed);
	atomic_fetch_add_explicit(&s->latency[op].sum_ns, latency_ns, memory_order_relaxed);
}

void vms_io_stats_read(vms_io_snapshot *out, const vms_io_stats *s)
{
	/* The C11 atomic loads take a pointer to non-const. */
	vms_io_stats *m = (vms_io_stats *)s;

	memset(out, 0, sizeof(*out));
	for (int op = 0; op < VMS_IO_OPS; op++) {
		out->ops[op] = atomic_load_explicit(&m->ops[op], memory_order_relaxed);
		out->bytes[op] = atomic_load_explicit(&m->bytes[op], memory_order_relaxed);
		out->errors[op] = atomic_load_explicit(&m->errors[op], memory_order_relaxed);
		for (int i = 0; i < VMS_LAT_BUCKETS; i++) {
			uint64_t c = atomic_load_explicit(&m->latency[op].bucket[i], memory_order_relaxed);
			out->latency[op].bucket[i] = c;
			out->latency[op].count += c;
		}
		out->latency[op].sum_ns = atomic_load_explicit(&m->latency[op].sum_ns, memory_order_relaxed);
	}
}

void vms_io_snapshot_add(vms_io_snapshot *acc, const vms_io_snapshot *x)
{
	for (int op = 0; op < VMS_IO_OPS; op++) {
		acc->ops[op] += x->ops[op];
		acc->bytes[op] += x->bytes[op];
		acc->errors[op] += x->errors[op];
		for (int i = 0; i < VMS_LAT_BUCKETS; i++)
			acc->latency[op].bucket[i] += x->latency[op].bucket[i];
		acc->latency[op].count += x->latency[op].count;
		acc->latency[op].sum_ns += x->latency[op].sum_ns;
	}
}

static uint64_t minus(uint64_t a, uint64_t b)
{
	return a >= b ? a - b : 0;
}

void vms_io_snapshot_delta(vms_io_snapshot *out, const vms_io_snapshot *newer,
                           const vms_io_snapshot *older)
{
	memset(out, 0, sizeof(*out));
	for (int op = 0; op < VMS_IO_OPS; op++) {
		out->ops[op] = minus(newer->ops[op], older->ops[op]);
		out->bytes[op] = minus(newer->bytes[op], older->bytes[op]);
		out->errors[op] = minus(newer->errors[op], older->errors[op]);
		for (int i = 0; i < VMS_LAT_BUCKETS; i++) {
			uint64_t c = minus(newer->latency[op].bucket[i], older->latency[op].bucket[i]);
			out->latency[op].bucket[i] = c;
			out->latency[op].count += c;
		}
		out->latency[op].sum_ns = minus(newer->latency[op].sum_ns, older->latency[op].sum_ns);
	}
}

double vms_latency_mean_us(const vms_latency_snapshot *h)
{
	if (!h->count)
		return NAN;
	return (double)h->sum_ns / 1000.0 / (double)h->count;
}

double vms_latency_quantile_us(const vms_latency_snapshot *h, double q)
{
	uint64_t total = 0;
	for (int i = 0; i < VMS_LAT_BUCKETS; i++)
		total += h->bucket[i];
	if (!total || !(q >= 0.0 && q <= 1.0))
		return NAN;
	double rank = q * (double)total, below = 0;
	for (unsigned i = 0; i < VMS_LAT_BUCKETS; i++) {
		double c = (double)h->bucket[i];
		if (c == 0 || below + c < rank) {
			below += c;
			continue;
		}
		double lower = i == 0 ? 0.0 : (double)(UINT64_C(1) << (i - 1));
		if (i == VMS_LAT_BUCKETS - 1)
			return lower;
		double upper = (double)(UINT64_C(1) << i);
		return lower + (upper - lower) * ((rank - below) / c);
	}
	return NAN;   /* not reached: rank <= total */
}

/* ---- JSON ------------------------------------------------------------------ */

static vms_json *num_or_null(double d)
{
	return isfinite(d) ? vms_json_new_double(d) : vms_json_new_null();
}

int vms_io_snapshot_to_json(vms_json **out, const vms_io_snapshot *s, double seconds)
{
	vms_json *o = vms_json_new_object();
	int rc = o ? 0 : vms_error_set(VMS_ENOMEM, "out of memory");

	for (int op = 0; op < VMS_IO_OPS && rc == 0; op++) {
		const vms_latency_snapshot *h = &s->latency[op];
		vms_json *e = vms_json_new_object(), *lat = vms_json_new_object();
		int top = -1;
		for (int i = 0; i < VMS_LAT_BUCKETS; i++)
			if (h->bucket[i])
				top = i;
		if ((rc = vms_json_object_set(o, op_names[op], e)) < 0) {
			vms_json_free(lat);
			break;
		}
		if ((rc = vms_json_object_set(e, "ops", vms_json_new_int((int64_t)s->ops[op]))) < 0 ||
		    (rc = vms_json_object_set(e, "bytes", vms_json_new_int((int64_t)s->bytes[op]))) < 0 ||
		    (rc = vms_json_object_set(e, "errors", vms_json_new_int((int64_t)s->errors[op]))) < 0) {
			vms_json_free(lat);
			break;
		}
		if ((rc = vms_json_object_set(e, "latency_us", lat)) < 0 ||
		    (rc = vms_json_object_set(lat, "mean", num_or_null(vms_latency_mean_us(h)))) < 0 ||
		    (rc = vms_json_object_set(lat, "p50", num_or_null(vms_latency_quantile_us(h, 0.5)))) < 0 ||
		    (rc = vms_json_object_set(lat, "p99", num_or_null(vms_latency_quantile_us(h, 0.99)))) < 0)
			break;
		if (top < 0 || top == VMS_LAT_BUCKETS - 1)
			rc = vms_json_object_set(lat, "max_bucket_le", vms_json_new_null());
		else
			rc = vms_json_object_set_int(lat, "max_bucket_le",
			                             (int64_t)vms_latency_bucket_le_us((unsigned)top));
		if (rc < 0)
			break;
		if (seconds > 0) {
			if ((rc = vms_json_object_set(e, "ops_per_second",
			                              vms_json_new_double((double)s->ops[op] / seconds))) < 0 ||
			    (rc = vms_json_object_set(e, "bytes_per_second",
			                              vms_json_new_double((double)s->bytes[op] / seconds))) < 0)
				break;
		}
	}
	if (rc < 0) {
		vms_json_free(o);
		return rc;
	}
	*out = o;
	return 0;
}
