/*
 * nbd.h - vmsnapd's NBD server: fixed-newstyle handshake and transmission
 * for connections accepted by the daemon's main loop.
 *
 * Each connection gets its own threads: one runs the handshake, then
 * `workers` threads serve requests in parallel (each reads one request
 * under the connection's read lock, carries it out, and sends the reply
 * under the write lock), so a connection keeps up to `workers` requests in
 * flight and a slow or stuck client only ever blocks its own threads.
 */
#ifndef VMSD_NBD_H
#define VMSD_NBD_H

#include "export.h"
#include "tls.h"
#include "vmsnap/json.h"

typedef struct vmsd_nbd vmsd_nbd;

struct vmsd_nbd_config {
	unsigned workers;           /* request threads per connection (1..64) */
	unsigned max_clients;       /* connections beyond this are closed at once */
	unsigned handshake_timeout; /* seconds a client may take to finish the handshake */
	vmsd_tls *tls;              /* TLS credentials and mode (tls.h), NULL: no TLS; the
	                             * caller keeps it alive until vmsd_nbd_free */
};

int vmsd_nbd_new(vmsd_nbd **out, vmsd_exports *xs, const struct vmsd_nbd_config *cfg);

/* Serve an accepted connection; takes ownership of fd (closed on error). */
int vmsd_nbd_serve(vmsd_nbd *srv, int fd, const char *peer);

/* Stop serving: new options get NBD_REP_ERR_SHUTDOWN, clients stop being
 * read from, requests in flight finish and are answered; waits up to
 * timeout_ms for that, then cuts the remaining connections.  Returns when
 * every connection thread has ended. */
void vmsd_nbd_shutdown(vmsd_nbd *srv, unsigned timeout_ms);

void vmsd_nbd_free(vmsd_nbd *srv);

/* Connections now open. */
unsigned vmsd_nbd_clients(vmsd_nbd *srv);

/* [{"peer","export","readonly","requests"}] for daemon.status (caller frees). */
vms_json *vmsd_nbd_status(vmsd_nbd *srv);

#endif
