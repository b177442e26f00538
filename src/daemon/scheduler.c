/*
 * scheduler.c - vmsnapd's policy scheduler (docs/policy.md "Wiring").
 *
 * One thread runs {"op":"policy.run"} through vmsd_catalog_exec(), so
 * under the daemon's control lock and with the same hooks (quiesce) as a
 * snapshot asked for on the control socket.  The control module does the
 * work: for every VM with an effective policy it applies the missed-run
 * rules (one catch-up, never a burst; late runs left to the next slot),
 * takes the snapshot and prunes.  The thread then sleeps until the
 * earliest next run, at most a few seconds (so that new policies are seen
 * soon), and longer after a failure.
 *
 * The clock: with --clock-scale S the schedule runs S times faster than
 * real time (3600 = an hour of schedule per second), starting at
 * --clock-start (epoch seconds) or now.  The same clock gives snapshots
 * their time tags (vms_control_set_clock), so tests can drive days of
 * schedule in seconds against a real daemon.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "log.h"
#include "metrics_http.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

static struct {
	struct vmsd_daemon *d;
	double scale;
	int64_t start;         /* schedule time at mono0 */
	struct timespec mono0;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;   /* CLOCK_MONOTONIC */
	int stop;
	int running;
} sch = {.lock = PTHREAD_MUTEX_INITIALIZER};

static double mono_seconds_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int64_t sched_clock(void *ctx)
{
	(void)ctx;
	return sch.start + (int64_t)floor(mono_seconds_since(&sch.mono0) * sch.scale);
}

/* Log what one pass did; returns the earliest next run (INT64_MAX: none)
 * and sets *failures. */
static int64_t log_pass(const char *resp, int *failures)
{
	vms_json *j = NULL;
	int64_t next = INT64_MAX, f = 0;
	*failures = 0;
	if (vms_json_parse(&j, resp, strlen(resp)) < 0)
		return next;
	const vms_json *res = vms_json_object_get(j, "result");
	if (!res) {
		vmsd_warn("scheduler: policy.run failed: %s",
		          vms_json_string(vms_json_object_get(vms_json_object_get(j, "error"), "message")));
		*failures = 1;
		goto done;
	}
	vms_json_is_int(vms_json_object_get(res, "next_time"), &next);
	vms_json_is_int(vms_json_object_get(res, "failures"), &f);
	*failures = (int)f;
	const vms_json *runs = vms_json_object_get(res, "runs");
	for (size_t i = 0; i < vms_json_array_len(runs); i++) {
		const vms_json *r = vms_json_array_get(runs, i);
		const char *vm = vms_json_string(vms_json_object_get(r, "vm"));
		const char *err = vms_json_string(vms_json_object_get(r, "error"));
		const vms_json *snap = vms_json_object_get(r, "snapshot");
		int64_t missed = 0;
		vms_json_is_int(vms_json_object_get(r, "missed"), &missed);
		if (err) {
			vmsd_warn("scheduler: VM %s: %s", vm ? vm : "?", err);
			continue;
		}
		if (!snap)
			continue;
		const vms_json *prune = vms_json_object_get(r, "prune");
		int64_t kept = 0;
		vms_json_is_int(vms_json_object_get(prune, "keep"), &kept);
		vmsd_info("scheduler: VM %s: snapshot %s%s%lld%s; pruned %zu, kept %lld, skipped %zu",
		          vm ? vm : "?", vms_json_string(vms_json_object_get(snap, "name")),
		          missed ? " (catch-up for " : "", (long long)(missed ? missed + 1 : 0),
		          missed ? " missed slots)" : "",
		          vms_json_array_len(vms_json_object_get(prune, "deleted")),
		          (long long)kept,
		          vms_json_array_len(vms_json_object_get(prune, "skipped")));
	}
done:
	vms_json_free(j);
	return next;
}

static void *sched_main(void *arg)
{
	(void)arg;
	/* longest sleep in real seconds: new policies are seen this soon */
	double cap = sch.scale > 1 ? 0.5 : 5.0;
	pthread_mutex_lock(&sch.lock);
	while (!sch.stop) {
		pthread_mutex_unlock(&sch.lock);
		char *resp = NULL;
		int failures = 0;
		int64_t next = INT64_MAX;
		vmsd_catalog_exec(sch.d->cat, &resp, "{\"op\":\"policy.run\"}");
		if (resp)
			next = log_pass(resp, &failures);
		free(resp);
		double wait = cap;
		if (next != INT64_MAX) {
			double dt = ((double)next - (double)sched_clock(NULL)) / sch.scale;
			if (dt < wait)
				wait = dt;
		}
		if (failures)
			wait = cap * 4;   /* do not spin on a VM that keeps failing */
		if (wait < 0.01)
			wait = 0.01;
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		double whole = floor(wait);
		until.tv_sec += (time_t)whole;
		until.tv_nsec += (long)((wait - whole) * 1e9);
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&sch.lock);
		while (!sch.stop) {
			int rc = pthread_cond_timedwait(&sch.cond, &sch.lock, &until);
			if (rc == ETIMEDOUT)
				break;
		}
	}
	pthread_mutex_unlock(&sch.lock);
	return NULL;
}

int vmsd_scheduler_start(struct vmsd_daemon *d, double clock_scale, int64_t clock_start, int run)
{
	vms_control *ctl = vmsd_catalog_control(d->cat);
	sch.d = d;
	sch.scale = clock_scale > 0 ? clock_scale : 1;
	clock_gettime(CLOCK_MONOTONIC, &sch.mono0);
	sch.start = clock_start >= 0 ? clock_start : (int64_t)time(NULL);
	if (sch.scale != 1 || clock_start >= 0) {
		vms_control_set_clock(ctl, sched_clock, NULL);
		vmsd_info("scheduler: clock starts at %lld and runs %g times real time",
		          (long long)sch.start, sch.scale);
	}
	vms_control_set_io_source(ctl, vmsd_metrics_list, NULL);
	if (!run)
		return 0;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sch.cond, &ca);
	pthread_condattr_destroy(&ca);
	sch.stop = 0;
	if (pthread_create(&sch.thread, NULL, sched_main, NULL) != 0)
		return vms_error_set(VMS_EIO, "cannot start the scheduler thread");
	sch.running = 1;
	return 0;
}

void vmsd_scheduler_stop(void)
{
	if (!sch.running)
		return;
	pthread_mutex_lock(&sch.lock);
	sch.stop = 1;
	pthread_cond_broadcast(&sch.cond);
	pthread_mutex_unlock(&sch.lock);
	pthread_join(sch.thread, NULL);
	sch.running = 0;
}
