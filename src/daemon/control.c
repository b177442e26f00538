/*
 * control.c - vmsnapd's control socket: one JSON request per line in, one
 * JSON response per line out (QMP-like), see docs/control.md and
 * docs/vmsnapd.md.
 *
 * Requests go to vms_control_exec() under the daemon's control lock
 * (catalog.c), except the daemon's own ops:
 *   {"op":"daemon.status"} -> {"output_version":1,"result":{"pid",...}}
 *   {"op":"daemon.stop"}   -> {"output_version":1,"result":{"stopping":true}}
 * A request line longer than 1 MiB gets an INVALID error and the
 * connection is closed (the rest of the line cannot be told from the next
 * request).  One thread per control connection; vmsd_control_shutdown()
 * cuts them all and waits.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

#define MAX_REQUEST (1u << 20)

struct client {
	struct vmsd_daemon *d;
	int fd;
	struct client *next;
};

static pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t clients_cond = PTHREAD_COND_INITIALIZER;
static struct client *clients;
static unsigned nclients;
static int clients_closed;

static int send_line(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += n;
		len -= (size_t)n;
	}
	return send(fd, "\n", 1, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* {"output_version":1,"error":{"code":..,"message":..}} (malloc'd). */
static char *error_response(int code, const char *msg)
{
	vms_json *o = vms_json_new_object(), *e = vms_json_new_object();
	char *out = NULL;
	int rc = (o && e) ? 0 : VMS_ENOMEM;
	if (!rc) rc = vms_json_object_set_string(e, "code", vms_error_name(code));
	if (!rc) rc = vms_json_object_set_string(e, "message", msg);
	if (!rc) rc = vms_json_object_set_int(o, "output_version", 1);
	if (!rc) {
		rc = vms_json_object_set(o, "error", e);
		if (!rc)
			e = NULL;
	}
	if (!rc)
		rc = vms_json_serialize(&out, o, 0);
	vms_json_free(e);
	vms_json_free(o);
	return rc < 0 ? NULL : out;
}

static char *result_response(vms_json *result)
{
	vms_json *o = vms_json_new_object();
	char *out = NULL;
	int rc = (o && result) ? 0 : VMS_ENOMEM;
	if (!rc) rc = vms_json_object_set_int(o, "output_version", 1);
	if (!rc) {
		rc = vms_json_object_set(o, "result", result);
		result = NULL;
	}
	if (!rc)
		rc = vms_json_serialize(&out, o, 0);
	vms_json_free(result);
	vms_json_free(o);
	return rc < 0 ? NULL : out;
}

static vms_json *daemon_status(struct vmsd_daemon *d)
{
	vms_json *r = vms_json_new_object();
	vms_json *sockets = vms_json_new_object();
	int rc = (r && sockets) ? 0 : VMS_ENOMEM;
	if (!rc) rc = vms_json_object_set_int(r, "pid", (int64_t)getpid());
	if (!rc) rc = vms_json_object_set_int(r, "uptime", (int64_t)(time(NULL) - d->started));
	if (!rc) rc = vms_json_object_set_string(r, "home", d->home);
	if (!rc) rc = vms_json_object_set_string(sockets, "nbd", d->nbd_socket);
	if (!rc) rc = vms_json_object_set_string(sockets, "control", d->control_socket);
	if (!rc) rc = vms_json_object_set_string(sockets, "tcp", d->tcp);
	if (!rc) {
		rc = vms_json_object_set(r, "sockets", sockets);
		if (!rc)
			sockets = NULL;
	}
	if (!rc) rc = vms_json_object_set_int(r, "clients", (int64_t)vmsd_nbd_clients(d->nbd));
	if (!rc) {
		vms_json *conns = vmsd_nbd_status(d->nbd);
		rc = conns ? vms_json_object_set(r, "connections", conns) : VMS_ENOMEM;
	}
	if (!rc) {
		vms_json *exports = vmsd_exports_status(d->xs);
		rc = exports ? vms_json_object_set(r, "exports", exports) : VMS_ENOMEM;
	}
	vms_json_free(sockets);
	if (rc < 0) {
		vms_json_free(r);
		return NULL;
	}
	return r;
}

/* One request line -> one response (malloc'd, NULL only without memory). */
static char *handle(struct vmsd_daemon *d, const char *line)
{
	vms_json *req = NULL;
	const char *op = NULL;
	char *out = NULL;

	if (vms_json_parse(&req, line, strlen(line)) == 0)
		op = vms_json_string(vms_json_object_get(req, "op"));
	if (op && strcmp(op, "daemon.status") == 0) {
		out = result_response(daemon_status(d));
	} else if (op && strcmp(op, "daemon.stop") == 0) {
		vms_json *r = vms_json_new_object();
		if (r && vms_json_object_set_bool(r, "stopping", 1) < 0) {
			vms_json_free(r);
			r = NULL;
		}
		out = result_response(r);
		vmsd_info("daemon.stop requested on the control socket");
		vmsd_daemon_request_stop(d);
	} else if (!d->cat) {
		out = error_response(VMS_ENOTSUP, "vmsnapd runs without a catalog (start it with --home)");
	} else {
		(void)vmsd_catalog_exec(d->cat, &out, line);
		if (!out)
			out = error_response(vms_error_last_code() ? vms_error_last_code() : VMS_ENOMEM,
			                     vms_error_last());
	}
	vms_json_free(req);
	return out;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	char *buf = malloc(MAX_REQUEST + 1);
	size_t have = 0;

	while (buf) {
		char *nl = memchr(buf, '\n', have);
		if (!nl) {
			if (have >= MAX_REQUEST) {
				char *e = error_response(VMS_EINVAL, "request longer than 1 MiB");
				if (e)
					(void)send_line(c->fd, e);
				free(e);
				break;
			}
			ssize_t n = recv(c->fd, buf + have, MAX_REQUEST - have, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			have += (size_t)n;
			continue;
		}
		*nl = '\0';
		size_t used = (size_t)(nl - buf) + 1;
		if (nl > buf && nl[-1] == '\r')
			nl[-1] = '\0';
		int blank = strspn(buf, " \t\r") == strlen(buf);
		char *resp = blank ? NULL : handle(c->d, buf);
		memmove(buf, buf + used, have - used);
		have -= used;
		if (!blank && (!resp || send_line(c->fd, resp) < 0)) {
			free(resp);
			break;
		}
		free(resp);
	}
	free(buf);

	pthread_mutex_lock(&clients_lock);
	for (struct client **p = &clients; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	close(c->fd);
	nclients--;
	pthread_cond_broadcast(&clients_cond);
	pthread_mutex_unlock(&clients_lock);
	free(c);
	return NULL;
}

int vmsd_control_client(struct vmsd_daemon *d, int fd)
{
	struct client *c = calloc(1, sizeof *c);
	pthread_attr_t attr;
	pthread_t tid;

	pthread_mutex_lock(&clients_lock);
	if (!c || clients_closed) {
		pthread_mutex_unlock(&clients_lock);
		free(c);
		close(fd);
		return vms_error_set(VMS_EBUSY, "control socket closed");
	}
	c->d = d;
	c->fd = fd;
	c->next = clients;
	clients = c;
	nclients++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&tid, &attr, client_main, c);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		clients = c->next;
		nclients--;
		pthread_mutex_unlock(&clients_lock);
		close(fd);
		free(c);
		return vms_error_set(VMS_ENOMEM, "cannot start a control thread: %s", strerror(rc));
	}
	pthread_mutex_unlock(&clients_lock);
	return 0;
}

void vmsd_control_shutdown(void)
{
	pthread_mutex_lock(&clients_lock);
	clients_closed = 1;
	/* A request being executed finishes and is answered; idle clients
	 * see EOF. */
	for (struct client *c = clients; c; c = c->next)
		shutdown(c->fd, SHUT_RD);
	while (nclients > 0)
		pthread_cond_wait(&clients_cond, &clients_lock);
	pthread_mutex_unlock(&clients_lock);
}
