/*
 * metrics_http.h - vmsnapd's live I/O figures: one vms_io_stats per export
 * name, updated by the NBD server at each reply, read by the control
 * socket's `stats` and by the opt-in Prometheus endpoint (--metrics).
 *
 * Entries are created on first use and live as long as the daemon, so the
 * counters only grow (Prometheus counters), also across reconnections.
 */
#ifndef VMSD_METRICS_HTTP_H
#define VMSD_METRICS_HTTP_H

#include <stdint.h>

#include "vmsnap/control.h"
#include "vmsnap/metrics.h"

struct vmsd_daemon;

/* The counters of export `name` (created on first use; NULL when out of
 * memory, which vmsd_metrics_done accepts). */
vms_io_stats *vmsd_metrics_get(const char *name);
/* A monotonic timestamp in nanoseconds, taken when a request starts. */
uint64_t vmsd_metrics_clock(void);
/* Count one NBD request of `nbd_type` that started at t0. */
void vmsd_metrics_done(vms_io_stats *io, unsigned nbd_type, uint64_t length, uint64_t t0, int failed);
/* vms_control_io_fn: every export's figures. */
int vmsd_metrics_list(void *ctx, vms_control_io_entry **out, size_t *n);

/* The Prometheus endpoint: plain HTTP, GET /metrics, on [ADDR:]PORT
 * (loopback unless ADDR is given), served by one thread. */
int vmsd_metrics_http_start(struct vmsd_daemon *d, const char *spec);
void vmsd_metrics_http_stop(void);

/* The policy scheduler (scheduler.c).  clock_scale: seconds of schedule
 * per real second (1 = real time); clock_start: the schedule time at start
 * (-1 = now).  Installs the clock and the I/O source on the control. */
int vmsd_scheduler_start(struct vmsd_daemon *d, double clock_scale, int64_t clock_start, int run);
void vmsd_scheduler_stop(void);

#endif
