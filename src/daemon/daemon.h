/*
 * daemon.h - state shared by vmsnapd's parts: the exports, the NBD server,
 * the catalog (when started with --home) and the control lock.
 *
 * Lock order: control_lock (serialises every catalog call: control
 * requests and disk opens), then the export locks (export.h).
 */
#ifndef VMSD_DAEMON_H
#define VMSD_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "export.h"
#include "nbd.h"

typedef struct vmsd_catalog vmsd_catalog;

struct vmsd_daemon {
	const char *home;            /* NULL without a catalog */
	const char *nbd_socket;      /* path of the NBD Unix socket (NULL: none) */
	const char *control_socket;  /* path of the control socket (NULL: none) */
	const char *tcp;             /* "ADDR:PORT" when listening on TCP */
	vmsd_exports *xs;
	vmsd_nbd *nbd;
	vmsd_catalog *cat;
	pthread_mutex_t control_lock;
	int wake[2];                 /* written to stop the main loop */
	atomic_int stopping;
	time_t started;
};

/* Ask the main loop to shut down (any thread, async-signal-safe). */
void vmsd_daemon_request_stop(struct vmsd_daemon *d);

/* ---- control socket (control.c) ---- */
/* Serve one accepted control connection (takes ownership of fd). */
int vmsd_control_client(struct vmsd_daemon *d, int fd);
/* Stop every control connection and wait until they have ended. */
void vmsd_control_shutdown(void);

/* ---- catalog (catalog.c) ---- */
int vmsd_catalog_open(vmsd_catalog **out, struct vmsd_daemon *d, const char *home);
/* The export source of the catalog's disks and snapshots. */
vmsd_source vmsd_catalog_source(vmsd_catalog *cat);
/* Install the vms_control hooks (quiesce, disk_in_use, disk_changed);
 * call once d->xs exists. */
void vmsd_catalog_hooks(vmsd_catalog *cat);
/* Open every ready SR now (failures are logged; such an SR opens at first use). */
void vmsd_catalog_open_srs(vmsd_catalog *cat);
/* Execute one control request (takes the control lock).  *out is the
 * response line (malloc'd). */
int vmsd_catalog_exec(vmsd_catalog *cat, char **out, const char *request);
void vmsd_catalog_close(vmsd_catalog *cat);
/* The control handle (scheduler.c sets its clock and I/O source before
 * any request runs; afterwards use it only under the control lock). */
struct vms_control *vmsd_catalog_control(vmsd_catalog *cat);

#endif
