/*
 * main.c - vmsnapd: serves the disks of a vmsnap catalog (and raw files)
 * over NBD and takes management requests on a control socket.
 * Usage and permissions: docs/vmsnapd.md.
 *
 * The main thread owns the listening sockets and a signalfd and does
 * nothing but accept; connections run on their own threads (nbd.c,
 * control.c).  SIGTERM/SIGINT (or daemon.stop) shut down in order: stop
 * accepting and remove the sockets, let NBD clients' in-flight requests
 * finish, wait for control requests, flush and close every export, close
 * the catalog (which commits the pools).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "fault.h"
#include "log.h"
#include "metrics_http.h"
#include "raw.h"
#include "vmsnap/error.h"

#define MAX_LISTEN 8

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: vmsnapd [--home DIR] [options]\n"
	        "Serve the disks of a vmsnap catalog over NBD and take control requests.\n"
	        "\n"
	        "  --home DIR             catalog directory (default $VMSNAP_HOME, else none)\n"
	        "  --socket PATH          NBD Unix socket (default DIR/nbd.sock)\n"
	        "  --control-socket PATH  control socket (default DIR/control.sock)\n"
	        "  --listen [ADDR:]PORT   also serve NBD on TCP (loopback unless ADDR is given)\n"
	        "  --tls off|on|require   NBD over TLS: off (default), offered, required on TCP\n"
	        "  --tls-certificates DIR X.509: DIR/ca-cert.pem, server-cert.pem, server-key.pem[, ca-crl.pem]\n"
	        "  --tls-verify-peer      X.509: clients need a certificate signed by the CA\n"
	        "  --tls-psk FILE         PSK: username:hexkey lines (psktool -u USER -p FILE)\n"
	        "  --group NAME           group of the NBD socket, then mode 0660 (else 0600)\n"
	        "  --control-group NAME   group of the control socket, then mode 0660 (else 0600)\n"
	        "  --raw NAME=PATH        serve the raw file PATH as export NAME (repeatable)\n"
	        "  --raw-readonly NAME=PATH  the same, read-only\n"
	        "  --readonly             serve every export read-only\n"
	        "  --direct-io            native SRs: pool files opened O_DIRECT (no host page cache)\n"
	        "  --workers N            request threads per NBD connection (default 16)\n"
	        "  --max-clients N        NBD connections at most (default 256)\n"
	        "  --foreground           do not detach; log to stderr\n"
	        "  --log-level LEVEL      error, warn, info (default), debug\n"
	        "  --log-file PATH        log to PATH instead of stderr/syslog\n"
	        "  --pidfile PATH         write (and lock) a pid file\n"
	        "  --metrics [ADDR:]PORT  serve Prometheus text on http://ADDR:PORT/metrics (loopback by default)\n"
	        "  --no-scheduler         do not run snapshot policies\n"
	        "  --clock-scale S        run the policy clock S times real time (tests; default 1)\n"
	        "  --clock-start EPOCH    the policy clock's time at start (tests; default now)\n"
	        "  --help, --version\n"
	        "\n"
	        "Exports: <vm>/<disk> (read-write), <vm>/<disk>@<snapshot> (read-only), raw NAMEs.\n");
}

static struct vmsd_daemon daemon_state;

void vmsd_daemon_request_stop(struct vmsd_daemon *d)
{
	atomic_store(&d->stopping, 1);
	char c = 's';
	ssize_t n = write(d->wake[1], &c, 1);
	(void)n; /* a full pipe already wakes the loop */
}

static int is_live_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	int live = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return live;
}

/* Bind a Unix socket with `mode`, owned by gid (or -1). */
static int listen_unix(const char *path, mode_t mode, gid_t gid)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	if (strlen(path) >= sizeof sa.sun_path)
		return vms_error_set(VMS_EINVAL, "socket path %s is too long", path);
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return vms_error_set(VMS_EEXISTS, "%s exists and is not a socket", path);
		if (is_live_socket(path))
			return vms_error_set(VMS_EBUSY, "%s: another vmsnapd is listening there", path);
		unlink(path); /* stale, from a daemon that died */
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vms_error_set_errno(errno, "socket");
	/* Create it with no access for others at all, then widen to `mode`:
	 * no window where it is more open than asked. */
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (rc < 0) {
		rc = vms_error_set_errno(errno, "bind %s", path);
		close(fd);
		return rc;
	}
	if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) || chmod(path, mode) < 0 ||
	    listen(fd, 128) < 0) {
		rc = vms_error_set_errno(errno, "set up socket %s", path);
		close(fd);
		unlink(path);
		return rc;
	}
	return fd;
}

/* "PORT", "ADDR:PORT", "[V6ADDR]:PORT".  Fills fds, returns the count. */
static int listen_tcp(int *fds, int max, const char *spec)
{
	char host[256] = "127.0.0.1";
	const char *port = spec;
	const char *colon = strrchr(spec, ':');
	if (colon) {
		size_t n = (size_t)(colon - spec);
		const char *h = spec;
		if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
			h++;
			n -= 2;
		}
		if (n == 0 || n >= sizeof host)
			return vms_error_set(VMS_EINVAL, "--listen: bad address in '%s'", spec);
		memcpy(host, h, n);
		host[n] = '\0';
		port = colon + 1;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int e = getaddrinfo(host, port, &hints, &res);
	if (e != 0)
		return vms_error_set(VMS_EINVAL, "--listen %s: %s", spec, gai_strerror(e));
	int n = 0, rc = 0;
	for (struct addrinfo *a = res; a && n < max; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (a->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 128) < 0) {
			rc = vms_error_set_errno(errno, "listen on %s", spec);
			close(fd);
			continue;
		}
		fds[n++] = fd;
	}
	freeaddrinfo(res);
	if (n == 0)
		return rc < 0 ? rc : vms_error_set(VMS_EINVAL, "--listen %s: no address to listen on", spec);
	return n;
}

static int write_pidfile(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return vms_error_set_errno(errno, "pid file %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return vms_error_set(VMS_EBUSY, "pid file %s is locked: vmsnapd already runs", path);
	}
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		int rc = vms_error_set_errno(errno, "write pid file %s", path);
		close(fd);
		return rc;
	}
	return fd; /* kept open: the lock lasts as long as the daemon */
}

static int lookup_group(gid_t *out, const char *name)
{
	struct group *g = getgrnam(name);
	if (!g) {
		fprintf(stderr, "vmsnapd: unknown group '%s'\n", name);
		return -1;
	}
	*out = g->gr_gid;
	return 0;
}

static char *path_in(const char *dir, const char *name)
{
	char *p = NULL;
	return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

static void peer_name(char *out, size_t n, const struct sockaddr_storage *ss, int unix_sock)
{
	if (unix_sock) {
		snprintf(out, n, "unix");
		return;
	}
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	if (getnameinfo((const struct sockaddr *)ss, sizeof *ss, host, sizeof host, serv, sizeof serv,
	                NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(out, n, "%s:%s", host, serv);
	else
		snprintf(out, n, "tcp");
}

int main(int argc, char **argv)
{
	struct vmsd_daemon *d = &daemon_state;
	const char *home = getenv("VMSNAP_HOME"), *nbd_path = NULL, *ctl_path = NULL, *tcp = NULL;
	const char *group = NULL, *ctl_group = NULL, *pidfile = NULL, *logfile = NULL;
	int foreground = 0, readonly = 0, direct_io = 0, level = VMSD_LOG_INFO, pid_fd = -1, ret = 1;
	struct vmsd_nbd_config cfg = {.workers = 16, .max_clients = 256, .handshake_timeout = 30};
	struct vmsd_tls_config tls_cfg = {.mode = VMSD_TLS_OFF};
	vmsd_raw *raw = NULL;
	char *nbd_default = NULL, *ctl_default = NULL, *home_abs = NULL;
	unsigned long conn_counter = 0;
	const char *metrics = NULL;   /* policies and monitoring (scheduler.c, metrics_http.c) */
	int run_scheduler = 1;
	double clock_scale = 1;
	long long clock_start = -1;
	static const struct option opts[] = {
		{"home", required_argument, 0, 'H'},       {"socket", required_argument, 0, 's'},
		{"control-socket", required_argument, 0, 'c'}, {"listen", required_argument, 0, 'l'},
		{"group", required_argument, 0, 'g'},      {"control-group", required_argument, 0, 'G'},      {"raw", required_argument, 0, 'r'},
		{"raw-readonly", required_argument, 0, 'o'}, {"readonly", no_argument, 0, 'R'},         {"workers", required_argument, 0, 'w'},
		{"max-clients", required_argument, 0, 'm'}, {"foreground", no_argument, 0, 'f'},
		{"log-level", required_argument, 0, 'L'},  {"log-file", required_argument, 0, 'F'},
		{"pidfile", required_argument, 0, 'p'},    {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},          {"metrics", required_argument, 0, 'M'},
		{"no-scheduler", no_argument, 0, 'N'},     {"clock-scale", required_argument, 0, 'S'},
		{"clock-start", required_argument, 0, 'T'}, {"tls", required_argument, 0, 't'},
		{"tls-certificates", required_argument, 0, 'C'}, {"tls-verify-peer", no_argument, 0, 'v'},
		{"tls-psk", required_argument, 0, 'P'},    {"direct-io", no_argument, 0, 'D'},
		{0, 0, 0, 0},
	};

	if (vmsd_raw_new(&raw, 0) < 0) {
		fprintf(stderr, "vmsnapd: out of memory\n");
		return 1;
	}
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end;
		unsigned long v;
		switch (o) {
		case 'H': home = optarg; break;
		case 's': nbd_path = optarg; break;
		case 'c': ctl_path = optarg; break;
		case 'l': tcp = optarg; break;
		case 'g': group = optarg; break;
		case 'G': ctl_group = optarg; break;
		case 'r':
		case 'o':
			if (vmsd_raw_add(raw, optarg, o == 'o') < 0) {
				fprintf(stderr, "vmsnapd: %s\n", vms_error_last());
				return 2;
			}
			break;
		case 'R': readonly = 1; break;
		case 'D': vms_backend_native_set_direct_io(1); direct_io = 1; break;
		case 'w':
		case 'm':
			v = strtoul(optarg, &end, 10);
			if (*end || v < 1 || v > (o == 'w' ? 64ul : 65536ul)) {
				fprintf(stderr, "vmsnapd: bad --%s value '%s'\n", o == 'w' ? "workers" : "max-clients", optarg);
				return 2;
			}
			if (o == 'w')
				cfg.workers = (unsigned)v;
			else
				cfg.max_clients = (unsigned)v;
			break;
		case 'f': foreground = 1; break;
		case 'L':
			if ((level = vmsd_log_level_parse(optarg)) < 0) {
				fprintf(stderr, "vmsnapd: unknown log level '%s'\n", optarg);
				return 2;
			}
			break;
		case 'F': logfile = optarg; break;
		case 'p': pidfile = optarg; break;
		case 'M': metrics = optarg; break;
		case 'N': run_scheduler = 0; break;
		case 'S':
		case 'T': {
			char *e2;
			double dv = o == 'S' ? strtod(optarg, &e2) : (double)strtoll(optarg, &e2, 10);
			if (*e2 || !*optarg || dv < (o == 'S' ? 1e-3 : 0) || dv > (o == 'S' ? 1e7 : 253402300799.0)) {
				fprintf(stderr, "vmsnapd: bad --%s value '%s'\n", o == 'S' ? "clock-scale" : "clock-start", optarg);
				return 2;
			}
			if (o == 'S')
				clock_scale = dv;
			else
				clock_start = (long long)dv;
			break;
		}
		case 't':
			if ((tls_cfg.mode = vmsd_tls_mode_parse(optarg)) < 0) {
				fprintf(stderr, "vmsnapd: bad --tls value '%s' (off, on or require)\n", optarg);
				vmsd_raw_free(raw);
				return 2;
			}
			break;
		case 'C': tls_cfg.certificates = optarg; break;
		case 'v': tls_cfg.verify_peer = 1; break;
		case 'P': tls_cfg.psk_file = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("vmsnapd 0.1.0\n"); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vmsnapd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (home && !*home)
		home = NULL;
	if (home) {
		nbd_default = path_in(home, "nbd.sock");
		ctl_default = path_in(home, "control.sock");
		if (!nbd_path)
			nbd_path = nbd_default;
		if (!ctl_path)
			ctl_path = ctl_default;
	}
	if (!home && !vmsd_raw_count(raw)) {
		fprintf(stderr, "vmsnapd: nothing to serve: give --home DIR (or set VMSNAP_HOME) or --raw NAME=PATH\n");
		return 2;
	}
	if (!nbd_path && !tcp) {
		fprintf(stderr, "vmsnapd: without --home, give --socket PATH or --listen [ADDR:]PORT\n");
		return 2;
	}
	gid_t gid = (gid_t)-1, ctl_gid = (gid_t)-1;
	if ((group && lookup_group(&gid, group) < 0) || (ctl_group && lookup_group(&ctl_gid, ctl_group) < 0))
		return 2;
	/* TLS credentials load now, so that a bad file stops the start on
	 * stderr, before detaching. */
	if (vmsd_tls_new(&cfg.tls, &tls_cfg) < 0) {
		fprintf(stderr, "vmsnapd: %s\n", vms_error_last());
		vmsd_raw_free(raw);
		free(nbd_default);
		free(ctl_default);
		return 2;
	}
	if (cfg.tls && vmsd_tls_mode(cfg.tls) == VMSD_TLS_REQUIRE && !tcp)
		fprintf(stderr, "vmsnapd: note: --tls require applies to TCP (--listen); the Unix socket offers TLS "
		                "without requiring it\n");

	/* Log set-up and detaching. */
	int log_fd = 2, use_syslog = 0;
	if (logfile) {
		log_fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (log_fd < 0) {
			fprintf(stderr, "vmsnapd: log file %s: %s\n", logfile, strerror(errno));
			return 1;
		}
	} else if (!foreground) {
		use_syslog = 1;
	}
	if (!foreground) {
		if (daemon(0, 0) < 0) {
			fprintf(stderr, "vmsnapd: cannot detach: %s\n", strerror(errno));
			return 1;
		}
	}
	vmsd_log_setup(level, log_fd, use_syslog);
	if (vmsd_fault_setup() < 0) /* pool I/O error log; test-only VMSNAPD_FAULT */
		return 1;

	/* Signals: blocked in every thread, read through a signalfd here. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);

	d->home = home;
	d->nbd_socket = nbd_path;
	d->control_socket = ctl_path;
	d->tcp = tcp;
	d->started = time(NULL);
	pthread_mutex_init(&d->control_lock, NULL);
	if (sfd < 0 || pipe2(d->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		vmsd_error("cannot set up signal handling: %s", strerror(errno));
		return 1;
	}
	if (pidfile && (pid_fd = write_pidfile(pidfile)) < 0) {
		vmsd_error("%s", vms_error_last());
		return 1;
	}

	int lfd[MAX_LISTEN + 2];
	int nlisten = 0, unix_fd = -1, ctl_fd = -1;
	vmsd_source sources[2];
	size_t nsources = 0;

	if (home) {
		if (vmsd_catalog_open(&d->cat, d, home) < 0) {
			vmsd_error("cannot open the catalog in %s: %s", home, vms_error_last());
			goto done;
		}
		sources[nsources++] = vmsd_catalog_source(d->cat);
		/* The catalog created the directory if needed: now it resolves. */
		if ((home_abs = realpath(home, NULL)))
			d->home = home_abs;
	}
	if (vmsd_raw_count(raw))
		sources[nsources++] = vmsd_raw_source(raw);
	if (vmsd_exports_new(&d->xs, sources, nsources, readonly) < 0 ||
	    vmsd_nbd_new(&d->nbd, d->xs, &cfg) < 0) {
		vmsd_error("%s", vms_error_last());
		goto done;
	}
	if (d->cat) {
		vmsd_catalog_hooks(d->cat);
		vmsd_catalog_open_srs(d->cat);
	}
	if (d->cat && vmsd_scheduler_start(d, clock_scale, clock_start, run_scheduler) < 0) {
		vmsd_error("%s", vms_error_last());
		goto done;
	}
	if (metrics && vmsd_metrics_http_start(d, metrics) < 0) {
		vmsd_error("%s", vms_error_last());
		goto done;
	}

	if (nbd_path) {
		if ((unix_fd = listen_unix(nbd_path, group ? 0660 : 0600, gid)) < 0) {
			vmsd_error("NBD socket: %s", vms_error_last());
			goto done;
		}
		lfd[nlisten++] = unix_fd;
	}
	if (tcp) {
		int n = listen_tcp(lfd + nlisten, MAX_LISTEN - 1, tcp);
		if (n < 0) {
			vmsd_error("%s", vms_error_last());
			goto done;
		}
		nlisten += n;
	}
	if (ctl_path) {
		if ((ctl_fd = listen_unix(ctl_path, ctl_group ? 0660 : 0600, ctl_gid)) < 0) {
			vmsd_error("control socket: %s", vms_error_last());
			goto done;
		}
	}
	vmsd_info("vmsnapd started: home %s, NBD socket %s%s%s, control socket %s, %zu raw export(s), "
	          "%u workers per connection%s%s",
	          home ? home : "(none)", nbd_path ? nbd_path : "(none)", tcp ? ", TCP " : "", tcp ? tcp : "",
	          ctl_path ? ctl_path : "(none)", vmsd_raw_count(raw), cfg.workers,
	          readonly ? ", read-only" : "", direct_io ? ", direct I/O on native SRs" : "");
	if (cfg.tls)
		vmsd_info("TLS %s: %s", vmsd_tls_mode(cfg.tls) == VMSD_TLS_REQUIRE ? "required on TCP, offered on the Unix socket"
		                                                                   : "offered",
		          vmsd_tls_describe(cfg.tls));

	/* The accept loop. */
	struct pollfd pfd[MAX_LISTEN + 4];
	while (!atomic_load(&d->stopping)) {
		int n = 0;
		for (int i = 0; i < nlisten; i++)
			pfd[n++] = (struct pollfd){.fd = lfd[i], .events = POLLIN};
		int ctl_i = -1;
		if (ctl_fd >= 0) {
			ctl_i = n;
			pfd[n++] = (struct pollfd){.fd = ctl_fd, .events = POLLIN};
		}
		int sig_i = n;
		pfd[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = d->wake[0], .events = POLLIN};
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			vmsd_error("poll: %s", strerror(errno));
			break;
		}
		if (pfd[sig_i].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
				if (si.ssi_signo == SIGHUP) {
					vmsd_info("SIGHUP ignored (nothing to reload)");
				} else {
					vmsd_info("signal %u: shutting down", si.ssi_signo);
					atomic_store(&d->stopping, 1);
				}
			}
		}
		for (int i = 0; i < nlisten; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			struct sockaddr_storage ss;
			socklen_t sl = sizeof ss;
			int fd = accept4(lfd[i], (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			char peer[96], name[128];
			int is_unix = lfd[i] == unix_fd;
			if (!is_unix) {
				int one = 1;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			}
			peer_name(peer, sizeof peer, &ss, is_unix);
			snprintf(name, sizeof name, "%s#%lu", peer, ++conn_counter);
			(void)vmsd_nbd_serve(d->nbd, fd, name);
		}
		if (ctl_i >= 0 && (pfd[ctl_i].revents & POLLIN)) {
			int fd = accept4(ctl_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				(void)vmsd_control_client(d, fd);
		}
	}
	ret = 0;
	vmsd_info("stopping: no new connections");

done:
	/* Stop accepting and remove the sockets first, so that clients see
	 * at once that the daemon is going. */
	for (int i = 0; i < nlisten; i++)
		close(lfd[i]);
	if (unix_fd >= 0)
		unlink(nbd_path);
	if (ctl_fd >= 0) {
		close(ctl_fd);
		unlink(ctl_path);
	}
	if (d->nbd)
		vmsd_nbd_shutdown(d->nbd, 10000);
	vmsd_control_shutdown();
	vmsd_scheduler_stop();
	vmsd_metrics_http_stop();
	if (d->xs) {
		pthread_mutex_lock(&d->control_lock);
		if (vmsd_exports_flush_all(d->xs) < 0)
			ret = 1;
		vmsd_exports_free(d->xs);
		pthread_mutex_unlock(&d->control_lock);
	}
	vmsd_nbd_free(d->nbd);
	vmsd_tls_free(cfg.tls);
	vmsd_catalog_close(d->cat);
	vmsd_raw_free(raw);
	if (pid_fd >= 0) {
		unlink(pidfile);
		close(pid_fd);
	}
	free(nbd_default);
	free(ctl_default);
	free(home_abs);
	vmsd_info("vmsnapd stopped%s", ret ? " with errors" : "");
	return ret;
}
