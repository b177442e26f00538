/*
 * metrics_http.c - the per-export I/O counters of vmsnapd and the opt-in
 * Prometheus endpoint (docs/policy.md "Metrics", docs/vmsnapd.md).
 *
 * The registry is a list of entries keyed by export name, created when a
 * client selects an export (under a mutex, once per connection); the NBD
 * workers then update their entry lock-free (vms_io_stats_record).  The
 * endpoint is deliberately small: one thread, one connection at a time,
 * a 5-second receive timeout, GET /metrics only, Connection: close.  It
 * listens on loopback unless an address is given.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "metrics_http.h"
#include "nbd_proto.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

#define MAX_HTTP_LISTEN 4
#define REQ_MAX 8192

struct entry {
	char name[256];
	vms_io_stats st;
	uint64_t since_ns;
	struct entry *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *reg_head;

uint64_t vmsd_metrics_clock(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

vms_io_stats *vmsd_metrics_get(const char *name)
{
	struct entry *e;
	pthread_mutex_lock(&reg_lock);
	for (e = reg_head; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			break;
	if (!e && (e = calloc(1, sizeof(*e)))) {
		snprintf(e->name, sizeof(e->name), "%s", name);
		vms_io_stats_init(&e->st);
		e->since_ns = vmsd_metrics_clock();
		e->next = reg_head;
		reg_head = e;
	}
	pthread_mutex_unlock(&reg_lock);
	return e ? &e->st : NULL;
}

void vmsd_metrics_done(vms_io_stats *io, unsigned nbd_type, uint64_t length, uint64_t t0, int failed)
{
	vms_io_op op;
	if (!io)
		return;
	switch (nbd_type) {
	case NBD_CMD_READ: op = VMS_IO_READ; break;
	case NBD_CMD_WRITE:
	case NBD_CMD_WRITE_ZEROES: op = VMS_IO_WRITE; break;
	case NBD_CMD_FLUSH: op = VMS_IO_FLUSH; length = 0; break;
	case NBD_CMD_TRIM: op = VMS_IO_TRIM; break;
	default: return;
	}
	uint64_t now = vmsd_metrics_clock();
	vms_io_stats_record(io, op, length, now > t0 ? now - t0 : 0, failed);
}

int vmsd_metrics_list(void *ctx, vms_control_io_entry **out, size_t *n)
{
	(void)ctx;
	size_t cnt = 0, i = 0;
	uint64_t now = vmsd_metrics_clock();
	pthread_mutex_lock(&reg_lock);
	for (struct entry *e = reg_head; e; e = e->next)
		cnt++;
	vms_control_io_entry *v = calloc(cnt ? cnt : 1, sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&reg_lock);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	for (struct entry *e = reg_head; e; e = e->next, i++) {
		snprintf(v[i].name, sizeof(v[i].name), "%s", e->name);
		vms_io_stats_read(&v[i].io, &e->st);
		v[i].seconds = (double)(now - e->since_ns) / 1e9;
	}
	pthread_mutex_unlock(&reg_lock);
	/* oldest first, the order exports were first used */
	for (size_t a = 0, b = cnt ? cnt - 1 : 0; a < b; a++, b--) {
		vms_control_io_entry t = v[a];
		v[a] = v[b];
		v[b] = t;
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* ---- the exposition ----------------------------------------------------------- */

static int sr_gauges(vms_prom *p, struct vmsd_daemon *d)
{
	static const struct {
		const char *name, *key, *help;
	} fam[] = {
		{"vmsnap_sr_total_bytes", "total", "Size of the storage repository in bytes."},
		{"vmsnap_sr_free_bytes", "free", "Free bytes in the storage repository."},
		{"vmsnap_sr_used_bytes", "used", "Used bytes in the storage repository."},
		{"vmsnap_sr_snapshots", "snapshot_count", "Live snapshots of the VMs in the repository."},
		{"vmsnap_sr_vms", "vm_count", "Live VMs in the repository."},
	};
	char *text = NULL;
	vms_json *j = NULL;
	int rc;
	if (!d->cat)
		return 0;
	if (vmsd_catalog_exec(d->cat, &text, "{\"op\":\"stats\"}") < 0) {
		free(text);
		return 0;   /* the disk figures are still worth serving */
	}
	if ((rc = vms_json_parse(&j, text, strlen(text))) < 0)
		goto done;
	const vms_json *srs = vms_json_object_get(vms_json_object_get(j, "result"), "srs");
	for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]) && rc == 0; f++) {
		if ((rc = vms_prom_family(p, fam[f].name, "gauge", fam[f].help)) < 0)
			break;
		for (size_t i = 0; i < vms_json_array_len(srs) && rc == 0; i++) {
			const vms_json *s = vms_json_array_get(srs, i);
			int64_t v;
			vms_prom_label l = {"sr", vms_json_string(vms_json_object_get(s, "name"))};
			if (!l.value || !vms_json_is_int(vms_json_object_get(s, fam[f].key), &v) || v < 0)
				continue;
			rc = vms_prom_sample_u64(p, &l, 1, (uint64_t)v);
		}
	}
done:
	vms_json_free(j);
	free(text);
	return rc;
}

/* The whole exposition text (malloc'd). */
static int build_text(char **out, size_t *len, struct vmsd_daemon *d)
{
	vms_prom *p = NULL;
	vms_control_io_entry *ents = NULL;
	vms_prom_disk *disks = NULL;
	vms_prom_label *labels = NULL;
	char (*vm)[256] = NULL;
	size_t n = 0;
	int rc;
	if ((rc = vms_prom_new(&p)) < 0 || (rc = vmsd_metrics_list(NULL, &ents, &n)) < 0)
		goto done;
	disks = calloc(n ? n : 1, sizeof(*disks));
	labels = calloc(n ? 2 * n : 1, sizeof(*labels));
	vm = calloc(n ? n : 1, sizeof(*vm));
	if (!disks || !labels || !vm) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		/* "vm/disk[@snapshot]": vm and disk labels; other names (raw
		 * exports) have an empty vm */
		const char *slash = strchr(ents[i].name, '/');
		size_t vl = slash ? (size_t)(slash - ents[i].name) : 0;
		snprintf(vm[i], sizeof(vm[i]), "%.*s", (int)vl, ents[i].name);
		labels[2 * i] = (vms_prom_label){"vm", vm[i]};
		labels[2 * i + 1] = (vms_prom_label){"disk", slash ? slash + 1 : ents[i].name};
		disks[i] = (vms_prom_disk){.labels = &labels[2 * i], .nlabels = 2, .io = &ents[i].io};
	}
	if ((rc = vms_prom_io_disks(p, disks, n)) < 0 || (rc = sr_gauges(p, d)) < 0)
		goto done;
	const char *t = vms_prom_text(p, len);
	if (!(*out = malloc(*len + 1))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	memcpy(*out, t, *len);
	(*out)[*len] = 0;
done:
	vms_prom_free(p);
	free(ents);
	free(disks);
	free(labels);
	free(vm);
	return rc;
}

/* ---- the HTTP endpoint ------------------------------------------------------------ */

static struct {
	struct vmsd_daemon *d;
	int fds[MAX_HTTP_LISTEN];
	int nfds;
	int stop[2];
	pthread_t thread;
	int running;
} http = {.stop = {-1, -1}};

static void send_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t k = send(fd, s, len, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return;
		s += k;
		len -= (size_t)k;
	}
}

static void respond(int fd, const char *status, const char *ctype, const char *body, size_t blen)
{
	char head[256];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n", status, ctype, blen);
	send_all(fd, head, (size_t)n);
	send_all(fd, body, blen);
}

static void serve_one(int fd)
{
	char req[REQ_MAX + 1];
	size_t got = 0;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < REQ_MAX) {
		ssize_t k = recv(fd, req + got, REQ_MAX - got, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
		req[got] = 0;
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = 0;
	char method[8] = "", path[64] = "";
	if (sscanf(req, "%7s %63s", method, path) != 2) {
		static const char msg[] = "bad request\n";
		respond(fd, "400 Bad Request", "text/plain", msg, sizeof(msg) - 1);
		return;
	}
	int get = strcmp(method, "GET") == 0, head = strcmp(method, "HEAD") == 0;
	if (!get && !head) {
		static const char msg[] = "only GET /metrics\n";
		respond(fd, "405 Method Not Allowed", "text/plain", msg, sizeof(msg) - 1);
		return;
	}
	if (strcmp(path, "/metrics") != 0) {
		static const char msg[] = "not found: try /metrics\n";
		respond(fd, "404 Not Found", "text/plain", msg, sizeof(msg) - 1);
		return;
	}
	char *text = NULL;
	size_t len = 0;
	if (build_text(&text, &len, http.d) < 0) {
		const char *m = vms_error_last();
		respond(fd, "500 Internal Server Error", "text/plain", m, strlen(m));
		return;
	}
	respond(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text, head ? 0 : len);
	free(text);
}

static void *http_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd pfd[MAX_HTTP_LISTEN + 1];
		int n = 0;
		for (int i = 0; i < http.nfds; i++)
			pfd[n++] = (struct pollfd){.fd = http.fds[i], .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = http.stop[0], .events = POLLIN};
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[n - 1].revents)
			break;
		for (int i = 0; i < http.nfds; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			int fd = accept4(http.fds[i], NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			serve_one(fd);
			close(fd);
		}
	}
	return NULL;
}

int vmsd_metrics_http_start(struct vmsd_daemon *d, const char *spec)
{
	char host[256] = "127.0.0.1";
	const char *port = spec;
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res = NULL;
	if (colon) {
		size_t hl = (size_t)(colon - spec);
		if (hl >= sizeof(host))
			return vms_error_set(VMS_EINVAL, "--metrics: address too long");
		memcpy(host, spec, hl);
		host[hl] = 0;
		if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
			memmove(host, host + 1, hl - 2);
			host[hl - 2] = 0;
		}
		port = colon + 1;
	}
	char *end;
	unsigned long pn = strtoul(port, &end, 10);
	if (!*port || *end || pn > 65535)
		return vms_error_set(VMS_EINVAL, "--metrics %s: expected [ADDR:]PORT", spec);
	int e = getaddrinfo(host, port, &hints, &res);
	if (e)
		return vms_error_set(VMS_EINVAL, "--metrics %s: %s", spec, gai_strerror(e));
	http.nfds = 0;
	for (struct addrinfo *ai = res; ai && http.nfds < MAX_HTTP_LISTEN; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		int one = 1;
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0) {
			int err = errno;
			close(fd);
			freeaddrinfo(res);
			for (int i = 0; i < http.nfds; i++)
				close(http.fds[i]);
			http.nfds = 0;
			return vms_error_set_errno(err, "--metrics %s", spec);
		}
		http.fds[http.nfds++] = fd;
	}
	freeaddrinfo(res);
	if (!http.nfds)
		return vms_error_set(VMS_EINVAL, "--metrics %s: no address to listen on", spec);
	http.d = d;
	if (pipe2(http.stop, O_CLOEXEC) < 0 || pthread_create(&http.thread, NULL, http_main, NULL) != 0) {
		for (int i = 0; i < http.nfds; i++)
			close(http.fds[i]);
		http.nfds = 0;
		return vms_error_set(VMS_EIO, "--metrics: cannot start the endpoint");
	}
	http.running = 1;
	vmsd_info("metrics: Prometheus text on http://%s:%s/metrics", host, port);
	return 0;
}

void vmsd_metrics_http_stop(void)
{
	if (http.running) {
		if (write(http.stop[1], "x", 1) < 0)
			vmsd_warn("metrics: cannot wake the endpoint: %s", strerror(errno));
		pthread_join(http.thread, NULL);
		http.running = 0;
		close(http.stop[0]);
		close(http.stop[1]);
		for (int i = 0; i < http.nfds; i++)
			close(http.fds[i]);
		http.nfds = 0;
	}
	/* the registry stays: NBD workers that outlived the shutdown timeout
	 * may still count into it until the process exits */
}
