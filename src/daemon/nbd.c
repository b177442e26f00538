/*
 * nbd.c - the NBD server (see nbd.h; protocol: NetworkBlockDevice
 * doc/proto.md, fixed newstyle only; TLS through NBD_OPT_STARTTLS, tls.c).
 *
 * Design and invariants
 *  - One detached thread per connection runs the handshake.  After
 *    NBD_OPT_GO or NBD_OPT_EXPORT_NAME it becomes one of the connection's
 *    `workers` request threads (the others are started then), as nbdkit's
 *    "parallel" thread model does: a worker takes rlock, reads one request
 *    header and its payload, drops rlock, carries the request out, and sends
 *    the whole reply under wlock.  No request data is ever shared between
 *    threads, and a reply is one sendmsg() of header and payload.
 *  - Nothing touches the disk before the complete request (and a WRITE's
 *    complete payload) has been read and checked (nbd_wire.c).  A client
 *    vanishing mid-payload therefore writes nothing.
 *  - c->dead (atomic) means: read no more requests.  A protocol violation
 *    or a failed send also shuts the socket down so that a worker blocked
 *    in recv() under rlock wakes up.  NBD_CMD_DISC only sets dead, so the
 *    requests already read still get their replies.
 *  - The connection owns its export reference (vmsd_export_open/release);
 *    every disk access goes through the export gate (enter/leave).
 *  - A connection only ever blocks its own threads: handshakes have a
 *    receive timeout, sends block only the connection's own wlock.
 *  - TLS (--tls on|require): STARTTLS is answered NBD_REP_ACK and the TLS
 *    handshake runs on the handshake thread; from then on every byte of
 *    the connection goes through the session (read_full/writev_full and
 *    conn_read branch on c->tls: plain connections keep their direct
 *    recv/sendmsg path).  `require` is the protocol's FORCEDTLS on TCP:
 *    before TLS only STARTTLS and ABORT are served, every other option
 *    gets NBD_REP_ERR_TLS_REQD and NBD_OPT_EXPORT_NAME closes.
 *
 * Lock order: srv->lock, then c->rlock, then c->wlock (never more than one
 * of the connection locks at a time in practice).  Export locks (export.h)
 * are taken without any of these held except rlock/wlock never.
 */
#include "nbd.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics_http.h"
#include "nbd_wire.h"
#include "tls.h"
#include "vmsnap/error.h"

#define MAX_OPTIONS 4096u            /* options per handshake before we give up */
#define MAX_SKIP_OPTION (16u << 20)  /* larger option payloads end the session */
#define MAX_EXTENTS 1024u            /* descriptors per block status reply */
#define KEEP_BUFFER (4u << 20)       /* larger request buffers are freed after use */
#define META_ID 1u                   /* context id of base:allocation */

struct conn {
	vmsd_nbd *srv;
	int fd;
	int is_unix;                  /* accepted on the Unix socket */
	char peer[96];
	struct conn *next, *prev; /* under srv->lock */
	/* TLS session once STARTTLS succeeded (set in the handshake, before any
	 * worker exists; then used as tls.h allows: receives under rlock,
	 * sends under wlock). */
	vmsd_tls_session *tls;

	/* handshake state (handshake thread only) */
	int tls_refused;              /* a plain-text option was refused: TLS required */
	int fixed;                    /* the client is fixed newstyle (TLS possible) */
	int no_zeroes;
	int structured;
	int meta_selected;
	char meta_export[NBD_MAX_STRING + 1];
	uint8_t *opt;                 /* option payload buffer, NBD_MAX_OPTION */

	/* transmission (read-only once workers run) */
	char export_name[NBD_MAX_STRING + 1];
	vmsd_export *e;
	const struct vmsd_export_info *info;
	int writer;
	int readonly;
	struct nbd_xmit x;
	_Atomic int phase;            /* 0 handshake, 1 transmission */

	pthread_mutex_t rlock;
	pthread_mutex_t wlock;
	/* under rlock: bytes received but not yet consumed (transmission) */
	uint8_t *rbuf;
	size_t rpos, rlen;
	atomic_int dead;
	atomic_int tls_active;        /* c->tls is set (for vmsd_nbd_status) */
	atomic_ullong requests;
	vms_io_stats *io;             /* this export's counters (metrics_http.c) */
};

struct vmsd_nbd {
	vmsd_exports *xs;
	struct vmsd_nbd_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct conn *head;
	unsigned nconns;
	atomic_int stopping;
};

/* Zeroes for WRITE_ZEROES with NO_HOLE and backends without disk_zero. */
static const uint8_t zero_buf[1u << 20];

/* ---- socket helpers -------------------------------------------------- */

static int sock_read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = recv(fd, p, len, MSG_WAITALL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n == 0) {
			return -1;
		} else if (errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

/* The connection's byte stream: the socket, or the TLS session once
 * STARTTLS succeeded.  A branch, so plain connections pay nothing. */
static int read_full(struct conn *c, void *buf, size_t len)
{
	return c->tls ? vmsd_tls_read_full(c->tls, buf, len) : sock_read_full(c->fd, buf, len);
}

/* Read and drop len bytes. */
static int skip_full(struct conn *c, uint64_t len)
{
	uint8_t tmp[16384];
	while (len) {
		size_t n = len < sizeof tmp ? (size_t)len : sizeof tmp;
		if (read_full(c, tmp, n) < 0)
			return -1;
		len -= n;
	}
	return 0;
}

static int sock_writev_full(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
		ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int writev_full(struct conn *c, struct iovec *iov, int iovcnt)
{
	return c->tls ? vmsd_tls_writev_full(c->tls, iov, iovcnt) : sock_writev_full(c->fd, iov, iovcnt);
}

static int write_full(struct conn *c, const void *buf, size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	return writev_full(c, &iov, 1);
}

static void set_rcvtimeo(int fd, unsigned seconds)
{
	struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* ---- handshake ------------------------------------------------------- */

/* One option reply: header and payload (payload may be NULL when plen=0). */
static int opt_reply(struct conn *c, uint32_t opt, uint32_t type, const void *payload, uint32_t plen)
{
	uint8_t h[NBD_OPTION_REPLY_SIZE];
	nbd_put64(h, NBD_REP_MAGIC);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, type);
	nbd_put32(h + 16, plen);
	struct iovec iov[2] = {{h, sizeof h}, {(void *)payload, plen}};
	return writev_full(c, iov, plen ? 2 : 1);
}

static int opt_error(struct conn *c, uint32_t opt, uint32_t type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int opt_error(struct conn *c, uint32_t opt, uint32_t type, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof msg)
		n = sizeof msg - 1;
	vmsd_debug("client %s: option %u refused (%#x): %s", c->peer, opt, type, msg);
	return opt_reply(c, opt, type, msg, (uint32_t)n);
}

static int reply_info(struct conn *c, uint32_t opt, uint16_t type, const void *data, uint32_t len)
{
	uint8_t buf[2 + NBD_MAX_STRING];
	if (len > NBD_MAX_STRING)
		len = NBD_MAX_STRING;
	nbd_put16(buf, type);
	memcpy(buf + 2, data, len);
	return opt_reply(c, opt, NBD_REP_INFO, buf, 2 + len);
}

static void fill_xmit(struct conn *c, int meta_base)
{
	const struct vmsd_export_info *i = c->info;
	c->x.size = i->size;
	c->x.min_block = i->min_block ? i->min_block : 1;
	c->x.max_block = NBD_MAX_REQUEST;
	c->x.tflags = nbd_wire_tflags(i->readonly, i->can_trim, i->can_zero, c->structured);
	c->x.structured = c->structured;
	c->x.meta_base = meta_base && c->structured;
}

static int open_export(struct conn *c, const char *name)
{
	vmsd_export *e = NULL;
	int rc = vmsd_export_open(&e, c->srv->xs, name, 1);
	if (rc < 0)
		return rc;
	c->e = e;
	c->info = vmsd_export_info(e);
	c->writer = !c->info->readonly;
	c->readonly = c->info->readonly;
	snprintf(c->export_name, sizeof c->export_name, "%s", name);
	c->io = vmsd_metrics_get(name);
	return 0;
}

static void close_export(struct conn *c)
{
	if (c->e)
		vmsd_export_release(c->e, 1);
	c->e = NULL;
	c->info = NULL;
}

static uint32_t rep_error_for(int rc)
{
	switch (rc) {
	case VMS_ENOTFOUND: return NBD_REP_ERR_UNKNOWN;
	case VMS_EINVAL: return NBD_REP_ERR_UNKNOWN; /* a malformed name names nothing */
	case VMS_EPERM:
	case VMS_EBUSY: return NBD_REP_ERR_POLICY;
	default: return NBD_REP_ERR_PLATFORM;
	}
}

/* What NBD_OPT_LIST says of export entry o: its description, cut to the
 * longest string the protocol allows; *len 0 when it has none.  INFO/GO
 * send the very same text, so a client sees one description per export. */
static const char *list_description(const vms_json *o, uint32_t *len)
{
	const char *desc = vms_json_string(vms_json_object_get(o, "description"));
	size_t dl = desc ? strlen(desc) : 0;
	*len = (uint32_t)(dl > NBD_MAX_STRING ? NBD_MAX_STRING : dl);
	return desc;
}

/* NBD_INFO_DESCRIPTION for export `name`: the entry NBD_OPT_LIST shows
 * under that name.  A name the list does not show (a snapshot selector
 * such as vm/disk@latest) gets none, rather than a text LIST never gives.
 * Returns 0, or -1 when sending failed. */
static int reply_description(struct conn *c, uint32_t opt, const char *name)
{
	vms_json *arr = NULL;
	int rc = 0;
	if (vmsd_exports_list(&arr, c->srv->xs) < 0) {
		vmsd_debug("client %s: no description for %s: %s", c->peer, name, vms_error_last());
		return 0;
	}
	for (size_t i = 0; i < vms_json_array_len(arr); i++) {
		const vms_json *o = vms_json_array_get(arr, i);
		const char *n = vms_json_string(vms_json_object_get(o, "name"));
		uint32_t dl;
		const char *desc = list_description(o, &dl);
		if (n && strcmp(n, name) == 0) {
			if (dl)
				rc = reply_info(c, opt, NBD_INFO_DESCRIPTION, desc, dl);
			break;
		}
	}
	vms_json_free(arr);
	return rc;
}

/* NBD_OPT_INFO / NBD_OPT_GO.  Returns 1 when transmission starts, 0 to keep
 * haggling, -1 to drop the connection. */
static int handle_info(struct conn *c, uint32_t opt, uint32_t len)
{
	struct nbd_info_req *req = malloc(sizeof *req);
	int ret = -1;
	if (!req)
		return -1;
	if (nbd_wire_parse_info(req, c->opt, len) < 0) {
		ret = opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed %s request",
		                opt == NBD_OPT_GO ? "NBD_OPT_GO" : "NBD_OPT_INFO");
		goto done;
	}
	int rc = open_export(c, req->name);
	if (rc < 0) {
		ret = opt_error(c, opt, rep_error_for(rc), "%s", vms_error_last());
		goto done;
	}
	int meta_base = c->meta_selected && strcmp(c->meta_export, req->name) == 0;
	fill_xmit(c, meta_base);

	uint8_t b[12];
	nbd_put16(b, NBD_INFO_EXPORT);
	nbd_put64(b + 2, c->x.size);
	nbd_put16(b + 10, c->x.tflags);
	if (opt_reply(c, opt, NBD_REP_INFO, b, 12) < 0)
		goto done;
	if (req->want_name && reply_info(c, opt, NBD_INFO_NAME, req->name, (uint32_t)strlen(req->name)) < 0)
		goto done;
	if (req->want_description && reply_description(c, opt, req->name) < 0)
		goto done;
	/* Always sent: the constraints hold whether the client asked or not. */
	uint8_t bs[14];
	nbd_put16(bs, NBD_INFO_BLOCK_SIZE);
	nbd_put32(bs + 2, c->x.min_block);
	nbd_put32(bs + 6, c->x.min_block > 4096 ? c->x.min_block : 4096);
	nbd_put32(bs + 10, c->x.max_block);
	if (opt_reply(c, opt, NBD_REP_INFO, bs, 14) < 0)
		goto done;
	if (opt_reply(c, opt, NBD_REP_ACK, NULL, 0) < 0)
		goto done;
	if (opt == NBD_OPT_GO) {
		ret = 1;
		goto done;
	}
	close_export(c);
	ret = 0;
done:
	if (ret != 1)
		close_export(c);
	free(req);
	return ret < 0 ? -1 : ret;
}

static int handle_list(struct conn *c)
{
	vms_json *arr = NULL;
	int rc = vmsd_exports_list(&arr, c->srv->xs);
	if (rc < 0)
		return opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_PLATFORM, "%s", vms_error_last());
	for (size_t i = 0; i < vms_json_array_len(arr); i++) {
		const vms_json *o = vms_json_array_get(arr, i);
		const char *name = vms_json_string(vms_json_object_get(o, "name"));
		uint32_t dl;
		const char *desc = list_description(o, &dl);
		if (!name)
			continue;
		size_t nl = strlen(name);
		if (nl > NBD_MAX_STRING)
			continue;
		uint8_t *p = malloc(4 + nl + dl);
		if (!p) {
			vms_json_free(arr);
			return -1;
		}
		nbd_put32(p, (uint32_t)nl);
		memcpy(p + 4, name, nl);
		if (dl)
			memcpy(p + 4 + nl, desc, dl);
		rc = opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, p, (uint32_t)(4 + nl + dl));
		free(p);
		if (rc < 0) {
			vms_json_free(arr);
			return -1;
		}
	}
	vms_json_free(arr);
	return opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static int handle_meta(struct conn *c, uint32_t opt, uint32_t len)
{
	int list = opt == NBD_OPT_LIST_META_CONTEXT;
	if (!list)
		c->meta_selected = 0; /* replaced, even when this request fails */
	if (!c->structured)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "negotiate structured replies first");
	struct nbd_meta_req *m = malloc(sizeof *m);
	if (!m)
		return -1;
	int rc;
	if (nbd_wire_parse_meta(m, c->opt, len, list) < 0) {
		rc = opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed meta context request");
		goto done;
	}
	if (m->base_allocation) {
		uint8_t p[4 + 15];
		nbd_put32(p, list ? 0 : META_ID);
		memcpy(p + 4, "base:allocation", 15);
		if ((rc = opt_reply(c, opt, NBD_REP_META_CONTEXT, p, sizeof p)) < 0)
			goto done;
		if (!list) {
			c->meta_selected = 1;
			snprintf(c->meta_export, sizeof c->meta_export, "%s", m->name);
		}
	}
	rc = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
done:
	free(m);
	return rc;
}

/* ---- TLS (protocol: "TLS support") ------------------------------------ */

/* FORCEDTLS holds for this connection: --tls require, a TCP client, no TLS
 * yet.  The Unix socket is never forced: whoever may open it is already
 * authorised by its mode and group (docs/vmsnapd.md, "TLS"). */
static int tls_required(const struct conn *c)
{
	return !c->tls && !c->is_unix && vmsd_tls_mode(c->srv->cfg.tls) == VMSD_TLS_REQUIRE;
}

static int refuse_plain(struct conn *c, uint32_t opt)
{
	if (!c->tls_refused) {
		c->tls_refused = 1;
		vmsd_info("client %s: plain-text option %u refused: TLS is required (--tls require), "
		          "the client must send NBD_OPT_STARTTLS first", c->peer, opt);
	}
	return opt_error(c, opt, NBD_REP_ERR_TLS_REQD,
	                 "TLS is required: connect with TLS (an nbds:// URI, QEMU tls-creds)");
}

/* NBD_OPT_STARTTLS.  Returns 0 to go on haggling (inside TLS now, or after
 * an error reply), -1 to drop the connection. */
static int handle_starttls(struct conn *c, uint32_t len)
{
	vmsd_tls *t = c->srv->cfg.tls;
	vmsd_tls_session *s = NULL;
	if (len)
		return opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
	if (c->tls)
		return opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is already active");
	if (!t || !c->fixed)
		return opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP,
		                 "TLS is not enabled on this server (vmsnapd --tls on|require)");
	if (opt_reply(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0) < 0)
		return -1;
	/* Past the ACK there is no going back: a failed TLS handshake ends
	 * the session (MUST). */
	if (vmsd_tls_session_start(&s, t, c->fd, c->srv->cfg.handshake_timeout) < 0) {
		vmsd_warn("client %s: refused: %s", c->peer, vms_error_last());
		return -1;
	}
	c->tls = s;
	atomic_store(&c->tls_active, 1);
	/* Nothing negotiated in plain text survives STARTTLS (MUST): a
	 * man in the middle could have injected it. */
	c->structured = 0;
	c->meta_selected = 0;
	c->meta_export[0] = '\0';
	vmsd_info("client %s: TLS established (%s)", c->peer, vmsd_tls_session_describe(s));
	return 0;
}

/* Returns 1 when transmission starts, 0 when the client left or must be
 * dropped. */
static int handshake(struct conn *c)
{
	uint8_t hello[18];
	nbd_put64(hello, NBD_MAGIC);
	nbd_put64(hello + 8, NBD_IHAVEOPT);
	nbd_put16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (write_full(c, hello, sizeof hello) < 0)
		return 0;
	uint8_t cf[4];
	if (read_full(c, cf, 4) < 0)
		return 0;
	uint32_t cflags = nbd_get32(cf);
	if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
		vmsd_warn("client %s: unknown client flags %#x, closing", c->peer, cflags);
		return 0;
	}
	c->no_zeroes = (cflags & NBD_FLAG_C_NO_ZEROES) != 0;
	c->fixed = (cflags & NBD_FLAG_C_FIXED_NEWSTYLE) != 0;
	if (!c->fixed && tls_required(c)) {
		/* Such a client cannot do TLS (the protocol's NOTLS rule). */
		vmsd_warn("client %s: refused: not a fixed-newstyle client, so no TLS, which is required", c->peer);
		return 0;
	}

	for (unsigned n = 0; n < MAX_OPTIONS; n++) {
		uint8_t h[NBD_OPTION_HDR_SIZE];
		if (read_full(c, h, sizeof h) < 0)
			return 0;
		if (nbd_get64(h) != NBD_IHAVEOPT) {
			vmsd_warn("client %s: bad option magic, closing", c->peer);
			return 0;
		}
		uint32_t opt = nbd_get32(h + 8), len = nbd_get32(h + 12);
		if (len > NBD_MAX_OPTION) {
			if (len > MAX_SKIP_OPTION || opt == NBD_OPT_EXPORT_NAME) {
				vmsd_warn("client %s: option %u with %u bytes of data, closing", c->peer, opt, len);
				return 0;
			}
			if (skip_full(c, len) < 0)
				return 0;
			if ((tls_required(c) ? refuse_plain(c, opt)
			                     : opt_error(c, opt, NBD_REP_ERR_TOO_BIG, "option data too large")) < 0)
				return 0;
			continue;
		}
		if (len && read_full(c, c->opt, len) < 0)
			return 0;
		if (atomic_load(&c->srv->stopping)) {
			if (opt == NBD_OPT_EXPORT_NAME)
				return 0;
			if (opt != NBD_OPT_ABORT) {
				if (opt_error(c, opt, NBD_REP_ERR_SHUTDOWN, "server shutting down") < 0)
					return 0;
				continue;
			}
		}
		if (tls_required(c) && opt != NBD_OPT_STARTTLS && opt != NBD_OPT_ABORT) {
			if (opt == NBD_OPT_EXPORT_NAME) {
				/* Cannot be answered with an error: terminate (MUST). */
				vmsd_warn("client %s: refused: NBD_OPT_EXPORT_NAME without TLS, which is required "
				          "(--tls require)", c->peer);
				return 0;
			}
			if (refuse_plain(c, opt) < 0)
				return 0;
			continue;
		}
		int rc;
		switch (opt) {
		case NBD_OPT_EXPORT_NAME: {
			char name[NBD_MAX_STRING + 1];
			if (nbd_wire_parse_export_name(name, c->opt, len) < 0 || open_export(c, name) < 0) {
				/* No way to report an error here: terminate (MUST). */
				vmsd_info("client %s: export '%.256s' refused: %s", c->peer,
				          len ? name : "", vms_error_last());
				return 0;
			}
			fill_xmit(c, c->meta_selected && strcmp(c->meta_export, name) == 0);
			uint8_t r[10 + 124] = {0};
			nbd_put64(r, c->x.size);
			nbd_put16(r + 8, c->x.tflags);
			if (write_full(c, r, c->no_zeroes ? 10 : sizeof r) < 0) {
				close_export(c);
				return 0;
			}
			return 1;
		}
		case NBD_OPT_ABORT:
			(void)opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
			return 0;
		case NBD_OPT_LIST:
			rc = len ? opt_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data")
			         : handle_list(c);
			break;
		case NBD_OPT_STARTTLS:
			rc = handle_starttls(c, len);
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			rc = handle_info(c, opt, len);
			if (rc == 1)
				return 1;
			break;
		case NBD_OPT_STRUCTURED_REPLY:
			if (len) {
				rc = opt_error(c, opt, NBD_REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
			} else {
				c->structured = 1;
				rc = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
			}
			break;
		case NBD_OPT_LIST_META_CONTEXT:
		case NBD_OPT_SET_META_CONTEXT:
			rc = handle_meta(c, opt, len);
			break;
		default:
			rc = opt_error(c, opt, NBD_REP_ERR_UNSUP, "option %u is not supported", opt);
			break;
		}
		if (rc < 0)
			return 0;
	}
	vmsd_warn("client %s: more than %u options, closing", c->peer, MAX_OPTIONS);
	return 0;
}

/* ---- transmission ---------------------------------------------------- */

static void conn_kill(struct conn *c)
{
	atomic_store(&c->dead, 1);
	shutdown(c->fd, SHUT_RDWR);
}

static int send_locked(struct conn *c, struct iovec *iov, int n)
{
	pthread_mutex_lock(&c->wlock);
	int rc = writev_full(c, iov, n);
	pthread_mutex_unlock(&c->wlock);
	if (rc < 0)
		conn_kill(c);
	return rc;
}

static int send_simple(struct conn *c, uint64_t handle, uint32_t err, const void *data, size_t len)
{
	uint8_t h[NBD_SIMPLE_REPLY_SIZE];
	nbd_put32(h, NBD_SIMPLE_REPLY_MAGIC);
	nbd_put32(h + 4, err);
	nbd_put64(h + 8, handle);
	struct iovec iov[2] = {{h, sizeof h}, {(void *)data, len}};
	return send_locked(c, iov, len ? 2 : 1);
}

static void chunk_header(uint8_t h[NBD_STRUCT_REPLY_SIZE], uint16_t flags, uint16_t type,
                         uint64_t handle, uint32_t len)
{
	nbd_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
	nbd_put16(h + 4, flags);
	nbd_put16(h + 6, type);
	nbd_put64(h + 8, handle);
	nbd_put32(h + 16, len);
}

static int send_error(struct conn *c, uint64_t handle, uint32_t err, const char *msg)
{
	if (!c->x.structured)
		return send_simple(c, handle, err, NULL, 0);
	size_t ml = msg ? strlen(msg) : 0;
	if (ml > 1024)
		ml = 1024;
	uint8_t h[NBD_STRUCT_REPLY_SIZE + 6];
	chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handle, (uint32_t)(6 + ml));
	nbd_put32(h + NBD_STRUCT_REPLY_SIZE, err);
	nbd_put16(h + NBD_STRUCT_REPLY_SIZE + 4, (uint16_t)ml);
	struct iovec iov[2] = {{h, sizeof h}, {(void *)msg, ml}};
	return send_locked(c, iov, ml ? 2 : 1);
}

static int send_read(struct conn *c, const struct nbd_request *r, const void *data)
{
	if (!c->x.structured)
		return send_simple(c, r->handle, 0, data, r->length);
	uint8_t h[NBD_STRUCT_REPLY_SIZE + 8];
	if (r->length == 0) {
		chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, r->handle, 0);
		struct iovec iov = {h, NBD_STRUCT_REPLY_SIZE};
		return send_locked(c, &iov, 1);
	}
	/* The data was read before this header goes out, so no error can
	 * follow: the one content chunk may carry DONE. */
	chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, r->handle, 8 + r->length);
	nbd_put64(h + NBD_STRUCT_REPLY_SIZE, r->offset);
	struct iovec iov[2] = {{h, sizeof h}, {(void *)data, r->length}};
	return send_locked(c, iov, 2);
}

struct extents {
	uint8_t *buf;       /* id + descriptors */
	unsigned n, max;
	uint64_t next;      /* offset the next extent must start at */
	uint32_t cap;       /* largest descriptor length */
	uint64_t end;
};

static int extent_cb(void *ctx, uint64_t off, uint64_t len, int allocated)
{
	struct extents *x = ctx;
	uint32_t flags = allocated ? 0 : (NBD_STATE_HOLE | NBD_STATE_ZERO);
	if (off != x->next || len == 0)
		return vms_error_set(VMS_EIO, "block status: backend returned a non-contiguous extent");
	if (off + len > x->end)
		len = x->end - off;
	while (len) {
		uint32_t l = len > x->cap ? x->cap : (uint32_t)len;
		uint8_t *last = x->buf + 4 + 8 * (x->n - 1);
		if (x->n && nbd_get32(last + 4) == flags && (uint64_t)nbd_get32(last) + l <= x->cap) {
			nbd_put32(last, nbd_get32(last) + l);
		} else {
			if (x->n == x->max)
				return 1; /* enough: the client asks again from here */
			nbd_put32(x->buf + 4 + 8 * x->n, l);
			nbd_put32(x->buf + 4 + 8 * x->n + 4, flags);
			x->n++;
		}
		len -= l;
		x->next += l;
		if (x->next >= x->end)
			return 1;
	}
	return 0;
}

static void do_block_status(struct conn *c, const struct nbd_request *r)
{
	const vms_backend *be;
	uint8_t stack[4 + 8];
	struct extents x = {
		.max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_EXTENTS,
		.next = r->offset,
		.end = r->offset + r->length,
		/* descriptors are multiples of the minimum block size */
		.cap = (uint32_t)(UINT32_C(0x80000000) - (UINT32_C(0x80000000) % c->x.min_block)),
	};
	x.buf = x.max == 1 ? stack : malloc(4 + 8 * (size_t)x.max);
	if (!x.buf) {
		send_error(c, r->handle, NBD_ENOMEM, "out of memory");
		return;
	}
	int rc = 0;
	vms_disk *d = vmsd_export_enter(c->e, 0);
	if (!d) {
		rc = vms_error_last_code() ? vms_error_last_code() : VMS_EIO;
	} else {
		be = c->info->be;
		if (be->disk_block_status)
			rc = be->disk_block_status(d, r->offset, r->length, extent_cb, &x);
		else
			rc = extent_cb(&x, r->offset, r->length, 1);
		vmsd_export_leave(c->e, 0);
	}
	if (rc >= 0 && x.n == 0)
		rc = vms_error_set(VMS_EIO, "block status: backend returned no extent");
	if (rc < 0) {
		send_error(c, r->handle, nbd_wire_errno(rc), vms_error_last());
	} else {
		uint8_t h[NBD_STRUCT_REPLY_SIZE];
		chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, r->handle, 4 + 8 * x.n);
		nbd_put32(x.buf, META_ID);
		struct iovec iov[2] = {{h, sizeof h}, {x.buf, 4 + 8 * (size_t)x.n}};
		send_locked(c, iov, 2);
	}
	if (x.buf != stack)
		free(x.buf);
}

/* Write zeroes by writing a zero buffer (NO_HOLE, or no disk_zero). */
static int write_zeroes(const vms_backend *be, vms_disk *d, uint64_t off, uint64_t len, int fua)
{
	while (len) {
		size_t n = len < sizeof zero_buf ? (size_t)len : sizeof zero_buf;
		int rc = be->disk_write(d, zero_buf, n, off, 0);
		if (rc < 0)
			return rc;
		off += n;
		len -= n;
	}
	return fua && be->disk_flush ? be->disk_flush(d) : 0;
}

/* Carry out a checked request whose payload (WRITE) is in buf. */
static void serve(struct conn *c, const struct nbd_request *r, uint8_t *buf)
{
	const vms_backend *be;
	int fua = (r->flags & NBD_CMD_FLAG_FUA) != 0;
	int write = r->type != NBD_CMD_READ && r->type != NBD_CMD_CACHE;
	int rc = 0;
	uint64_t t0 = vmsd_metrics_clock();

	if (r->type == NBD_CMD_BLOCK_STATUS) {
		do_block_status(c, r);
		return;
	}
	if (r->type == NBD_CMD_CACHE || (r->type == NBD_CMD_FLUSH && c->readonly)) {
		send_simple(c, r->handle, 0, NULL, 0);
		return;
	}
	if (r->type == NBD_CMD_WRITE_ZEROES && (r->flags & NBD_CMD_FLAG_FAST_ZERO)) {
		/* We cannot tell in advance whether the backend zeroes faster
		 * than it writes: fail fast, as the specification allows. */
		send_error(c, r->handle, NBD_ENOTSUP, "fast zero is not available");
		return;
	}
	vms_disk *d = vmsd_export_enter(c->e, write);
	if (!d) {
		send_error(c, r->handle, NBD_EIO, vms_error_last());
		return;
	}
	be = c->info->be; /* after enter: a reopen may have replaced it */
	switch (r->type) {
	case NBD_CMD_READ:
		rc = r->length ? be->disk_read(d, buf, r->length, r->offset) : 0;
		break;
	case NBD_CMD_WRITE:
		rc = r->length ? be->disk_write(d, buf, r->length, r->offset, fua) : 0;
		break;
	case NBD_CMD_FLUSH:
		rc = be->disk_flush ? be->disk_flush(d) : 0;
		break;
	case NBD_CMD_TRIM:
		rc = r->length ? be->disk_trim(d, r->length, r->offset) : 0;
		if (rc >= 0 && fua && be->disk_flush)
			rc = be->disk_flush(d);
		break;
	case NBD_CMD_WRITE_ZEROES:
		if (r->length == 0)
			rc = 0;
		else if ((r->flags & NBD_CMD_FLAG_NO_HOLE) || !be->disk_zero)
			rc = write_zeroes(be, d, r->offset, r->length, fua);
		else
			rc = be->disk_zero(d, r->length, r->offset, fua);
		break;
	}
	if (write && r->type != NBD_CMD_FLUSH)
		vmsd_export_dirty(c->e);
	vmsd_export_leave(c->e, write);
	vmsd_metrics_done(c->io, r->type, r->length, t0, rc < 0);

	if (rc < 0) {
		uint32_t err = nbd_wire_errno(rc);
		vmsd_warn("client %s: %s: request type %u at %llu+%u failed: %s", c->peer, c->export_name,
		          r->type, (unsigned long long)r->offset, r->length, vms_error_last());
		send_error(c, r->handle, err, vms_error_last());
	} else if (r->type == NBD_CMD_READ) {
		send_read(c, r, buf);
	} else {
		send_simple(c, r->handle, 0, NULL, 0);
	}
}

static int ensure_buf(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 65536;
	while (n < need)
		n *= 2;
	uint8_t *p = realloc(*buf, n);
	if (!p)
		return -1;
	*buf = p;
	*cap = n;
	return 0;
}

#define RBUF_SIZE (64u << 10)

/* Read exactly len bytes of the request stream (rlock held).  Requests
 * arrive pipelined (fio, qemu and libnbd keep many in flight), so one
 * recv() fills the buffer with several of them; large payloads bypass it. */
static int conn_read(struct conn *c, void *dst, size_t len)
{
	uint8_t *p = dst;
	size_t have = c->rlen - c->rpos;
	if (have) {
		size_t n = have < len ? have : len;
		memcpy(p, c->rbuf + c->rpos, n);
		c->rpos += n;
		p += n;
		len -= n;
	}
	if (!len)
		return 0;
	c->rpos = c->rlen = 0;
	if (!c->rbuf || len >= RBUF_SIZE / 2)
		return read_full(c, p, len);
	while (c->rlen < len) {
		ssize_t n = c->tls ? vmsd_tls_recv(c->tls, c->rbuf + c->rlen, RBUF_SIZE - c->rlen)
		                   : recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, 0);
		if (n > 0)
			c->rlen += (size_t)n;
		else if (n == 0 || c->tls || errno != EINTR)
			return -1;
	}
	memcpy(p, c->rbuf, len);
	c->rpos = len;
	return 0;
}

static void *worker(void *arg)
{
	struct conn *c = arg;
	uint8_t *buf = NULL;
	size_t cap = 0;

	for (;;) {
		struct nbd_request r;
		uint8_t h[NBD_REQUEST_SIZE];
		uint32_t err;
		const char *why;

		pthread_mutex_lock(&c->rlock);
		if (atomic_load(&c->dead) || conn_read(c, h, sizeof h) < 0) {
			atomic_store(&c->dead, 1);
			pthread_mutex_unlock(&c->rlock);
			break;
		}
		nbd_wire_decode_request(&r, h);
		enum nbd_verdict v = nbd_wire_check_request(&c->x, &r, &err, &why);
		if (v == NBD_HANGUP) {
			vmsd_warn("client %s: %s (type %u, length %u), closing", c->peer, why, r.type, r.length);
			conn_kill(c);
			pthread_mutex_unlock(&c->rlock);
			break;
		}
		if (v == NBD_DISC) {
			atomic_store(&c->dead, 1);
			pthread_mutex_unlock(&c->rlock);
			break;
		}
		size_t need = (r.type == NBD_CMD_WRITE || (v == NBD_SERVE && r.type == NBD_CMD_READ)) ? r.length : 0;
		if (ensure_buf(&buf, &cap, need) < 0) {
			/* Cannot take the payload: the stream would desync. */
			vmsd_error("client %s: out of memory for a %u-byte request, closing", c->peer, r.length);
			conn_kill(c);
			pthread_mutex_unlock(&c->rlock);
			break;
		}
		if (r.type == NBD_CMD_WRITE && r.length && conn_read(c, buf, r.length) < 0) {
			/* The client vanished mid-payload: nothing is written. */
			vmsd_info("client %s: connection lost in the middle of a write", c->peer);
			atomic_store(&c->dead, 1);
			pthread_mutex_unlock(&c->rlock);
			break;
		}
		pthread_mutex_unlock(&c->rlock);
		atomic_fetch_add(&c->requests, 1);

		if (v == NBD_REFUSE) {
			vmsd_debug("client %s: request type %u at %llu+%u refused: %s", c->peer, r.type,
			           (unsigned long long)r.offset, r.length, why);
			send_error(c, r.handle, err, why);
		} else {
			serve(c, &r, buf);
		}
		if (cap > KEEP_BUFFER) {
			free(buf);
			buf = NULL;
			cap = 0;
		}
	}
	free(buf);
	return NULL;
}

static void transmission(struct conn *c)
{
	unsigned n = c->srv->cfg.workers;
	pthread_t *t = calloc(n, sizeof *t);
	unsigned started = 0;

	atomic_store(&c->phase, 1);
	set_rcvtimeo(c->fd, 0);
	c->rbuf = malloc(RBUF_SIZE); /* NULL: unbuffered reads, still correct */
	vmsd_info("client %s: serving export %s (%s, %llu bytes%s%s%s)", c->peer, c->export_name,
	          c->info->readonly ? "read-only" : "read-write", (unsigned long long)c->x.size,
	          c->x.structured ? ", structured replies" : "", c->x.meta_base ? ", base:allocation" : "",
	          c->tls ? ", TLS" : "");
	if (t) {
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		for (started = 0; started + 1 < n; started++)
			if (pthread_create(&t[started], &attr, worker, c) != 0)
				break;
		pthread_attr_destroy(&attr);
	}
	worker(c);
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	free(t);
	free(c->rbuf);
	c->rbuf = NULL;
}

/* ---- connections ----------------------------------------------------- */

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	vmsd_nbd *srv = c->srv;

	set_rcvtimeo(c->fd, srv->cfg.handshake_timeout);
	c->opt = malloc(NBD_MAX_OPTION);
	if (c->opt && handshake(c))
		transmission(c);
	free(c->opt);
	c->opt = NULL;
	/* Every worker has ended: the session is this thread's alone. */
	vmsd_tls_session_end(c->tls);
	c->tls = NULL;
	close_export(c);
	vmsd_info("client %s: disconnected after %llu requests", c->peer,
	          (unsigned long long)atomic_load(&c->requests));

	pthread_mutex_lock(&srv->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	srv->nconns--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);

	pthread_mutex_destroy(&c->rlock);
	pthread_mutex_destroy(&c->wlock);
	free(c);
	return NULL;
}

int vmsd_nbd_new(vmsd_nbd **out, vmsd_exports *xs, const struct vmsd_nbd_config *cfg)
{
	vmsd_nbd *s = calloc(1, sizeof *s);
	if (!s)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	s->xs = xs;
	s->cfg = *cfg;
	if (s->cfg.workers < 1)
		s->cfg.workers = 1;
	if (s->cfg.workers > 64)
		s->cfg.workers = 64;
	if (!s->cfg.max_clients)
		s->cfg.max_clients = 256;
	if (!s->cfg.handshake_timeout)
		s->cfg.handshake_timeout = 30;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	*out = s;
	return 0;
}

int vmsd_nbd_serve(vmsd_nbd *srv, int fd, const char *peer)
{
	struct conn *c = NULL;
	pthread_attr_t attr;
	pthread_t tid;

	pthread_mutex_lock(&srv->lock);
	if (atomic_load(&srv->stopping) || srv->nconns >= srv->cfg.max_clients) {
		pthread_mutex_unlock(&srv->lock);
		vmsd_warn("client %s refused: %s", peer,
		          atomic_load(&srv->stopping) ? "shutting down" : "too many clients");
		close(fd);
		return vms_error_set(VMS_EBUSY, "too many clients");
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		pthread_mutex_unlock(&srv->lock);
		close(fd);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	c->srv = srv;
	c->fd = fd;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	c->is_unix = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX;
	snprintf(c->peer, sizeof c->peer, "%s", peer);
	pthread_mutex_init(&c->rlock, NULL);
	pthread_mutex_init(&c->wlock, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	c->next = srv->head;
	if (srv->head)
		srv->head->prev = c;
	srv->head = c;
	srv->nconns++;
	int rc = pthread_create(&tid, &attr, conn_main, c);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		srv->head = c->next;
		if (c->next)
			c->next->prev = NULL;
		srv->nconns--;
		pthread_mutex_unlock(&srv->lock);
		pthread_mutex_destroy(&c->rlock);
		pthread_mutex_destroy(&c->wlock);
		free(c);
		close(fd);
		return vms_error_set(VMS_ENOMEM, "cannot start a connection thread: %s", strerror(rc));
	}
	pthread_mutex_unlock(&srv->lock);
	vmsd_debug("client %s connected", peer);
	return 0;
}

static int wait_idle(vmsd_nbd *srv, unsigned timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (srv->nconns > 0)
		if (pthread_cond_timedwait(&srv->cond, &srv->lock, &ts) == ETIMEDOUT)
			return -1;
	return 0;
}

void vmsd_nbd_shutdown(vmsd_nbd *srv, unsigned timeout_ms)
{
	atomic_store(&srv->stopping, 1);
	pthread_mutex_lock(&srv->lock);
	/* Stop reading: clients in the handshake see EOF, workers finish what
	 * they read and answer it. */
	for (struct conn *c = srv->head; c; c = c->next) {
		atomic_store(&c->dead, 1);
		shutdown(c->fd, SHUT_RD);
	}
	if (wait_idle(srv, timeout_ms) < 0) {
		vmsd_warn("%u client(s) still busy after %u ms, cutting them off", srv->nconns, timeout_ms);
		for (struct conn *c = srv->head; c; c = c->next)
			shutdown(c->fd, SHUT_RDWR);
		while (srv->nconns > 0)
			pthread_cond_wait(&srv->cond, &srv->lock);
	}
	pthread_mutex_unlock(&srv->lock);
}

void vmsd_nbd_free(vmsd_nbd *srv)
{
	if (!srv)
		return;
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->cond);
	free(srv);
}

unsigned vmsd_nbd_clients(vmsd_nbd *srv)
{
	pthread_mutex_lock(&srv->lock);
	unsigned n = srv->nconns;
	pthread_mutex_unlock(&srv->lock);
	return n;
}

vms_json *vmsd_nbd_status(vmsd_nbd *srv)
{
	vms_json *arr = vms_json_new_array();
	if (!arr)
		return NULL;
	pthread_mutex_lock(&srv->lock);
	for (struct conn *c = srv->head; c; c = c->next) {
		vms_json *o = vms_json_new_object();
		int phase = atomic_load(&c->phase);
		int rc = o ? 0 : VMS_ENOMEM;
		if (!rc) rc = vms_json_object_set_string(o, "peer", c->peer);
		if (!rc) rc = vms_json_object_set_string(o, "phase", phase ? "transmission" : "handshake");
		if (!rc) rc = vms_json_object_set_bool(o, "tls", atomic_load(&c->tls_active));
		if (!rc && phase) rc = vms_json_object_set_string(o, "export", c->export_name);
		if (!rc && phase) rc = vms_json_object_set_bool(o, "readonly", c->readonly);
		if (!rc) rc = vms_json_object_set_int(o, "requests", (int64_t)atomic_load(&c->requests));
		if (rc < 0 || vms_json_array_append(arr, o) < 0) {
			vms_json_free(o);
			pthread_mutex_unlock(&srv->lock);
			vms_json_free(arr);
			return NULL;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	return arr;
}
