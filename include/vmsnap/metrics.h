/*
 * vmsnap/metrics.h - live I/O figures per disk and their exposition.
 *
 * vms_io_stats is a set of counters one NBD export updates from all its
 * worker threads: lock-free, relaxed C11 atomics, a handful of fetch_adds
 * per request and no allocation.  Readers take a vms_io_snapshot (plain
 * numbers) whenever they like; two snapshots and the time between them
 * give rates (IOPS, bytes/s).  Counters only grow (until the export goes
 * away), as Prometheus counters must.
 *
 * Latencies go into a histogram of log2 buckets in microseconds: bucket i
 * (0 <= i < VMS_LAT_BUCKETS-1) counts requests that took at most 2^i us and
 * more than 2^(i-1) us (bucket 0: at most 1 us); the last bucket counts
 * everything slower than 2^(VMS_LAT_BUCKETS-2) us (~18 minutes).  Mean and
 * quantiles are estimated from it as Prometheus's histogram_quantile()
 * does (linear within a bucket).
 *
 * vms_prom builds Prometheus text exposition format 0.0.4: "# HELP" and
 * "# TYPE" once per family, all samples of a family together, label values
 * escaped, histograms as _bucket{le=...} (cumulative), _sum and _count, in
 * seconds.  Metric names used by vmsnap are listed in docs/policy.md.
 *
 * No global state, no threads, no clock: the caller measures latency and
 * passes it in.  Functions returning int return 0 or a negative
 * vms_error_code with a message.
 */
#ifndef VMSNAP_METRICS_H
#define VMSNAP_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "vmsnap/json.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vms_io_op {
	VMS_IO_READ = 0,
	VMS_IO_WRITE,
	VMS_IO_FLUSH,
	VMS_IO_TRIM,
	VMS_IO_OPS
} vms_io_op;

#define VMS_LAT_BUCKETS 32

/* "read", "write", "flush", "trim". */
const char *vms_io_op_name(int op);

/* ---- counters (shared, updated concurrently) ---------------------------- */

typedef struct vms_latency_hist {
	_Atomic uint64_t bucket[VMS_LAT_BUCKETS];
	_Atomic uint64_t sum_ns;
} vms_latency_hist;

typedef struct vms_io_stats {
	_Atomic uint64_t ops[VMS_IO_OPS];     /* requests completed, failed ones included */
	_Atomic uint64_t bytes[VMS_IO_OPS];   /* bytes of the requests that succeeded */
	_Atomic uint64_t errors[VMS_IO_OPS];  /* requests that failed */
	vms_latency_hist latency[VMS_IO_OPS];
} vms_io_stats;

/* Zero every counter (before the stats are shared; a static or calloc'd
 * vms_io_stats is already zero). */
void vms_io_stats_init(vms_io_stats *s);

/* Count one completed request: safe from any number of threads at once.
 * op out of range is ignored. */
void vms_io_stats_record(vms_io_stats *s, vms_io_op op, uint64_t bytes, uint64_t latency_ns,
                         int failed);

/* The bucket a latency falls in (0..VMS_LAT_BUCKETS-1). */
unsigned vms_latency_bucket(uint64_t latency_ns);
/* Upper bound of bucket i in microseconds: 2^i; UINT64_MAX for the last. */
uint64_t vms_latency_bucket_le_us(unsigned i);

/* ---- snapshots (plain numbers, owned by the reader) ---------------------- */

typedef struct vms_latency_snapshot {
	uint64_t bucket[VMS_LAT_BUCKETS];   /* per bucket, not cumulative */
	uint64_t count;                     /* sum of the buckets */
	uint64_t sum_ns;
} vms_latency_snapshot;

typedef struct vms_io_snapshot {
	uint64_t ops[VMS_IO_OPS];
	uint64_t bytes[VMS_IO_OPS];
	uint64_t errors[VMS_IO_OPS];
	vms_latency_snapshot latency[VMS_IO_OPS];
} vms_io_snapshot;

/* Read every counter (each one atomically; the set is not a transaction,
 * which is what a scrape of live counters means anyway). */
void vms_io_stats_read(vms_io_snapshot *out, const vms_io_stats *s);

/* acc += x (to sum disks into a VM or SR figure). */
void vms_io_snapshot_add(vms_io_snapshot *acc, const vms_io_snapshot *x);
/* out = newer - older, counter by counter (0 where a counter went back,
 * i.e. the export was recreated). */
void vms_io_snapshot_delta(vms_io_snapshot *out, const vms_io_snapshot *newer,
                           const vms_io_snapshot *older);

/* Mean latency in microseconds; NaN when empty. */
double vms_latency_mean_us(const vms_latency_snapshot *h);
/* Estimated q-quantile (0 <= q <= 1) in microseconds; NaN when empty.  A
 * quantile that falls in the last, open bucket is reported as that
 * bucket's lower bound. */
double vms_latency_quantile_us(const vms_latency_snapshot *h, double q);

/* JSON for `vmsnap stats`:
 *   {"read":{"ops","bytes","errors","latency_us":{"mean","p50","p99","max_bucket_le"},
 *            "ops_per_second","bytes_per_second"}, "write":{...}, "flush":{...}, "trim":{...}}
 * The per-second figures are present when seconds > 0 (pass a delta
 * snapshot and the time it covers); unknown figures are null. */
int vms_io_snapshot_to_json(vms_json **out, const vms_io_snapshot *s, double seconds);

/* ---- Prometheus text exposition ----------------------------------------- */

typedef struct vms_prom vms_prom;

typedef struct vms_prom_label {
	const char *name;    /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
	const char *value;   /* any UTF-8; escaped on output */
} vms_prom_label;

int vms_prom_new(vms_prom **out);
void vms_prom_free(vms_prom *p);

/* Begin a metric family: writes "# HELP name help" and "# TYPE name type".
 * type: "counter", "gauge", "histogram" or "untyped".  A family name may
 * appear only once per exposition (VMS_EINVAL). */
int vms_prom_family(vms_prom *p, const char *name, const char *type, const char *help);

/* One sample of the current (counter, gauge, untyped) family. */
int vms_prom_sample_u64(vms_prom *p, const vms_prom_label *labels, size_t nlabels, uint64_t value);
int vms_prom_sample_double(vms_prom *p, const vms_prom_label *labels, size_t nlabels, double value);

/* One histogram of the current "histogram" family: _bucket lines with a
 * cumulative count per le (seconds), then _sum (seconds) and _count. */
int vms_prom_histogram(vms_prom *p, const vms_prom_label *labels, size_t nlabels,
                       const vms_latency_snapshot *h);

/* The text so far (borrowed; valid until the next call on p). */
const char *vms_prom_text(const vms_prom *p, size_t *len);

/* One disk for vms_prom_io_disks(). */
typedef struct vms_prom_disk {
	const vms_prom_label *labels;  /* e.g. {"vm","vm1"},{"disk","d0"} */
	size_t nlabels;
	const vms_io_snapshot *io;
} vms_prom_disk;

/* The standard disk families over n disks, each with an "op" label:
 *   vmsnap_disk_requests_total        counter
 *   vmsnap_disk_bytes_total           counter   (read, write, trim)
 *   vmsnap_disk_errors_total          counter
 *   vmsnap_disk_request_duration_seconds histogram */
int vms_prom_io_disks(vms_prom *p, const vms_prom_disk *disks, size_t n);

#ifdef __cplusplus
}
#endif
#endif
