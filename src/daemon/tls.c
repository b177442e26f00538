/*
 * tls.c - TLS sessions for the NBD server, with GnuTLS (see tls.h).
 *
 * Design and invariants
 *  - Credentials are loaded once, before the daemon serves anything, so a
 *    missing or bad file stops the start with a message naming it instead
 *    of failing each client later.  After that the vmsd_tls is read-only
 *    and shared by every connection (GnuTLS credentials and priority
 *    caches may be used from many threads).
 *  - PSK keys are parsed here (one "username:hexkey" per line, as psktool
 *    writes them) and held in memory; GnuTLS asks for a user's key through
 *    a callback.  Key bytes are wiped when freed.
 *  - Versions: TLS 1.3 and 1.2 only (the protocol's "TLS versions": 1.2 is
 *    a MUST, older ones SHOULD NOT be on by default).  PSK key exchange
 *    always has (EC)DHE, so a leaked key does not open old sessions.
 *  - No session tickets (nothing is resumed) and no renegotiation: a
 *    client asking for one loses its connection.
 *  - After the handshake, receives (read lock) and sends (write lock) run
 *    on two threads at once: GnuTLS's documented send/receive split.  A
 *    TLS 1.3 key update asked by the peer is carried out by the next send.
 *  - Blocking sockets: GNUTLS_E_AGAIN can only come from SO_RCVTIMEO (the
 *    handshake timeout), so it ends the connection instead of spinning.
 */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "vmsnap/error.h"

#define PRIORITY_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define PRIORITY_PSK PRIORITY_X509 ":+ECDHE-PSK:+DHE-PSK"
#define PSK_FILE_MAX (1u << 20)   /* a key file larger than this is not one */
#define PSK_USER_MAX 255u
#define PSK_KEY_MAX 512u          /* bytes; psktool writes 32 by default */
#define RECORD_MAX 16384u         /* TLS plaintext record size */

struct psk_key {
	char *user;
	uint8_t *key;
	size_t len;
};

struct vmsd_tls {
	int mode;
	int verify_peer;
	gnutls_certificate_credentials_t x509;  /* X.509, or NULL */
	gnutls_psk_server_credentials_t psk;    /* PSK, or NULL */
	gnutls_priority_t priority;
	struct psk_key *keys;
	size_t nkeys;
	char desc[PATH_MAX + 96];
};

struct vmsd_tls_session {
	gnutls_session_t session;
	char desc[512];
};

int vmsd_tls_mode_parse(const char *s)
{
	if (strcmp(s, "off") == 0)
		return VMSD_TLS_OFF;
	if (strcmp(s, "on") == 0)
		return VMSD_TLS_ON;
	if (strcmp(s, "require") == 0)
		return VMSD_TLS_REQUIRE;
	return -1;
}

int vmsd_tls_mode(const vmsd_tls *t)
{
	return t ? t->mode : VMSD_TLS_OFF;
}

const char *vmsd_tls_describe(const vmsd_tls *t)
{
	return t ? t->desc : "off";
}

/* ---- PSK key file ------------------------------------------------------ */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static void free_keys(struct psk_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(keys[i].user);
		if (keys[i].key)
			explicit_bzero(keys[i].key, keys[i].len);
		free(keys[i].key);
	}
	free(keys);
}

/* Parse one line "user:hexkey" (len bytes, no newline) into *k. */
static int parse_psk_line(struct psk_key *k, const char *path, unsigned lineno, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	if (!colon)
		return vms_error_set(VMS_EINVAL, "--tls-psk %s: line %u: expected username:hexkey", path, lineno);
	size_t ulen = (size_t)(colon - line), hlen = len - ulen - 1;
	if (ulen == 0 || ulen > PSK_USER_MAX)
		return vms_error_set(VMS_EINVAL, "--tls-psk %s: line %u: the username must have 1 to %u bytes",
		                     path, lineno, PSK_USER_MAX);
	for (size_t i = 0; i < ulen; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			return vms_error_set(VMS_EINVAL, "--tls-psk %s: line %u: control character in the username",
			                     path, lineno);
	if (hlen == 0 || hlen % 2 || hlen / 2 > PSK_KEY_MAX)
		return vms_error_set(VMS_EINVAL,
		                     "--tls-psk %s: line %u: the key must be an even number of hex digits, "
		                     "1 to %u bytes", path, lineno, PSK_KEY_MAX);
	k->user = strndup(line, ulen);
	k->key = malloc(hlen / 2);
	k->len = hlen / 2;
	if (!k->user || !k->key)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	for (size_t i = 0; i < k->len; i++) {
		int hi = hexval((unsigned char)colon[1 + 2 * i]), lo = hexval((unsigned char)colon[2 + 2 * i]);
		if (hi < 0 || lo < 0)
			return vms_error_set(VMS_EINVAL, "--tls-psk %s: line %u: the key is not hexadecimal", path,
			                     lineno);
		k->key[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int load_psk_file(vmsd_tls *t, const char *path)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	int rc = 0;
	if (!f)
		return vms_error_set_errno(errno, "--tls-psk %s", path);
	text = malloc(PSK_FILE_MAX + 1);
	if (!text) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	size_t n = fread(text, 1, PSK_FILE_MAX + 1, f);
	if (ferror(f)) {
		rc = vms_error_set_errno(errno, "--tls-psk %s: read", path);
		goto done;
	}
	if (n > PSK_FILE_MAX) {
		rc = vms_error_set(VMS_EINVAL, "--tls-psk %s: larger than %u bytes: not a key file", path, PSK_FILE_MAX);
		goto done;
	}
	unsigned lineno = 0;
	for (size_t pos = 0; pos < n;) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', n - pos);
		size_t len = nl ? (size_t)(nl - line) : n - pos;
		pos += len + (nl ? 1 : 0);
		lineno++;
		if (len && line[len - 1] == '\r')
			len--;
		if (len == 0 || line[0] == '#')
			continue;
		if (memchr(line, '\0', len)) {
			rc = vms_error_set(VMS_EINVAL, "--tls-psk %s: line %u: NUL byte: not a key file", path, lineno);
			goto done;
		}
		struct psk_key *grown = realloc(t->keys, (t->nkeys + 1) * sizeof *grown);
		if (!grown) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
		t->keys = grown;
		struct psk_key *k = &t->keys[t->nkeys++];
		memset(k, 0, sizeof *k);
		if ((rc = parse_psk_line(k, path, lineno, line, len)) < 0)
			goto done;
		for (size_t i = 0; i + 1 < t->nkeys; i++) {
			if (strcmp(t->keys[i].user, k->user) == 0) {
				rc = vms_error_set(VMS_EINVAL, "--tls-psk %s: line %u: user '%s' appears twice", path,
				                   lineno, k->user);
				goto done;
			}
		}
	}
	if (t->nkeys == 0)
		rc = vms_error_set(VMS_EINVAL, "--tls-psk %s: no key in the file (create one with: psktool -u USER -p %s)",
		                   path, path);
done:
	if (text) {
		explicit_bzero(text, PSK_FILE_MAX + 1);
		free(text);
	}
	fclose(f);
	return rc;
}

/* A client-chosen name made fit for a log line: printable ASCII only,
 * at most 64 bytes shown. */
static void printable(char *out, size_t size, const unsigned char *in, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len && i < 64 && n + 1 < size; i++)
		out[n++] = in[i] >= 0x20 && in[i] < 0x7f ? (char)in[i] : '?';
	out[n] = '\0';
}

/* GnuTLS asks for the key of `username` (server side of a PSK handshake). */
static int psk_lookup(gnutls_session_t session, const gnutls_datum_t *username, gnutls_datum_t *key)
{
	const vmsd_tls *t = gnutls_session_get_ptr(session);
	for (size_t i = 0; t && i < t->nkeys; i++) {
		const struct psk_key *k = &t->keys[i];
		if (strlen(k->user) != username->size || memcmp(k->user, username->data, username->size) != 0)
			continue;
		key->data = gnutls_malloc(k->len);
		if (!key->data)
			return -1;
		memcpy(key->data, k->key, k->len);
		key->size = (unsigned)k->len;
		return 0;
	}
	char name[72];
	printable(name, sizeof name, username->data, username->size);
	vmsd_info("TLS: PSK user '%s' is not in the key file", name);
	return -1;
}

/* ---- X.509 ------------------------------------------------------------- */

/* DIR/NAME into *out when readable.  A missing optional file gives 0 and
 * *out NULL. */
static int cert_file(char **out, const char *dir, const char *name, int required)
{
	*out = NULL;
	char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if (access(p, R_OK) < 0) {
		int e = errno;
		if (!required && e == ENOENT) {
			free(p);
			return 0;
		}
		int rc = vms_error_set(VMS_EINVAL, "--tls-certificates %s: %s: %s%s", dir, p, strerror(e),
		                       required ? " (the directory needs ca-cert.pem, server-cert.pem and server-key.pem)" : "");
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

static int load_x509(vmsd_tls *t, const char *dir)
{
	char *ca = NULL, *cert = NULL, *key = NULL, *crl = NULL;
	struct stat st;
	int rc, g;

	if (stat(dir, &st) < 0)
		return vms_error_set_errno(errno, "--tls-certificates %s", dir);
	if (!S_ISDIR(st.st_mode))
		return vms_error_set(VMS_EINVAL, "--tls-certificates %s: not a directory", dir);
	if ((rc = cert_file(&ca, dir, "ca-cert.pem", 1)) < 0 || (rc = cert_file(&cert, dir, "server-cert.pem", 1)) < 0 ||
	    (rc = cert_file(&key, dir, "server-key.pem", 1)) < 0 || (rc = cert_file(&crl, dir, "ca-crl.pem", 0)) < 0)
		goto done;
	if ((g = gnutls_certificate_allocate_credentials(&t->x509)) < 0) {
		rc = vms_error_set(VMS_ENOMEM, "TLS credentials: %s", gnutls_strerror(g));
		goto done;
	}
	g = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
	if (g <= 0) {
		rc = vms_error_set(VMS_EINVAL, "--tls-certificates: %s: %s", ca,
		                   g < 0 ? gnutls_strerror(g) : "no certificate in the file");
		goto done;
	}
	if (crl && (g = gnutls_certificate_set_x509_crl_file(t->x509, crl, GNUTLS_X509_FMT_PEM)) < 0) {
		rc = vms_error_set(VMS_EINVAL, "--tls-certificates: %s: %s", crl, gnutls_strerror(g));
		goto done;
	}
	if ((g = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM)) < 0) {
		rc = vms_error_set(VMS_EINVAL, "--tls-certificates: %s with %s: %s", cert, key, gnutls_strerror(g));
		goto done;
	}
	gnutls_certificate_set_known_dh_params(t->x509, GNUTLS_SEC_PARAM_MEDIUM);
	snprintf(t->desc, sizeof t->desc, "X.509 certificates from %s%s%s", dir, crl ? " (with a CRL)" : "",
	         t->verify_peer ? ", client certificates required" : "");
	rc = 0;
done:
	free(ca);
	free(cert);
	free(key);
	free(crl);
	return rc;
}

/* ---- credentials --------------------------------------------------------- */

int vmsd_tls_new(vmsd_tls **out, const struct vmsd_tls_config *cfg)
{
	vmsd_tls *t = NULL;
	int rc, g;
	const char *err_pos = NULL;

	*out = NULL;
	if (cfg->mode == VMSD_TLS_OFF) {
		if (cfg->certificates || cfg->psk_file || cfg->verify_peer)
			return vms_error_set(VMS_EINVAL, "%s is given but TLS is off: add --tls on or --tls require",
			                     cfg->certificates ? "--tls-certificates"
			                     : cfg->psk_file ? "--tls-psk" : "--tls-verify-peer");
		return 0;
	}
	if (!cfg->certificates && !cfg->psk_file)
		return vms_error_set(VMS_EINVAL, "--tls %s needs credentials: --tls-certificates DIR or --tls-psk FILE",
		                     cfg->mode == VMSD_TLS_ON ? "on" : "require");
	if (cfg->certificates && cfg->psk_file)
		return vms_error_set(VMS_EINVAL, "give either --tls-certificates or --tls-psk, not both");
	if (cfg->verify_peer && !cfg->certificates)
		return vms_error_set(VMS_EINVAL, "--tls-verify-peer checks X.509 client certificates: it needs "
		                                 "--tls-certificates (a PSK client is authenticated by its key)");
	if (!(t = calloc(1, sizeof *t)))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	t->mode = cfg->mode;
	t->verify_peer = cfg->verify_peer;
	if (cfg->certificates) {
		if ((rc = load_x509(t, cfg->certificates)) < 0)
			goto fail;
		g = gnutls_priority_init(&t->priority, PRIORITY_X509, &err_pos);
	} else {
		if ((rc = load_psk_file(t, cfg->psk_file)) < 0)
			goto fail;
		if ((g = gnutls_psk_allocate_server_credentials(&t->psk)) < 0) {
			rc = vms_error_set(VMS_ENOMEM, "TLS PSK credentials: %s", gnutls_strerror(g));
			goto fail;
		}
		gnutls_psk_set_server_credentials_function2(t->psk, psk_lookup);
		gnutls_psk_set_server_known_dh_params(t->psk, GNUTLS_SEC_PARAM_MEDIUM);
		snprintf(t->desc, sizeof t->desc, "PSK, %zu key(s) from %s", t->nkeys, cfg->psk_file);
		g = gnutls_priority_init(&t->priority, PRIORITY_PSK, &err_pos);
	}
	if (g < 0) {
		rc = vms_error_set(VMS_EINVAL, "TLS priority string at '%s': %s", err_pos ? err_pos : "?",
		                   gnutls_strerror(g));
		goto fail;
	}
	*out = t;
	return 0;
fail:
	vmsd_tls_free(t);
	return rc;
}

void vmsd_tls_free(vmsd_tls *t)
{
	if (!t)
		return;
	if (t->priority)
		gnutls_priority_deinit(t->priority);
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk)
		gnutls_psk_free_server_credentials(t->psk);
	free_keys(t->keys, t->nkeys);
	free(t);
}

/* ---- sessions ------------------------------------------------------------ */

static void describe_session(vmsd_tls_session *s, const vmsd_tls *t)
{
	gnutls_session_t g = s->session;
	const char *ver = gnutls_protocol_get_name(gnutls_protocol_get_version(g));
	const char *cipher = gnutls_cipher_get_name(gnutls_cipher_get(g));
	int n = snprintf(s->desc, sizeof s->desc, "%s, %s", ver ? ver : "TLS", cipher ? cipher : "?");
	if (n < 0 || (size_t)n >= sizeof s->desc)
		return;
	if (t->psk) {
		gnutls_datum_t user = {NULL, 0};
		char name[72];
		if (gnutls_psk_server_get_username2(g, &user) == 0 && user.data) {
			printable(name, sizeof name, user.data, user.size);
			snprintf(s->desc + n, sizeof s->desc - (size_t)n, ", PSK user %s", name);
		}
		return;
	}
	unsigned nc = 0;
	const gnutls_datum_t *peers = gnutls_certificate_get_peers(g, &nc);
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t dn = {NULL, 0};
	if (!peers || nc == 0) {
		snprintf(s->desc + n, sizeof s->desc - (size_t)n, ", no client certificate");
		return;
	}
	if (gnutls_x509_crt_init(&crt) == 0 && gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) == 0 &&
	    gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0)
		snprintf(s->desc + n, sizeof s->desc - (size_t)n, ", client %.*s%s",
		         (int)(dn.size > 300 ? 300 : dn.size), (const char *)dn.data,
		         t->verify_peer ? " (verified)" : " (not verified)");
	gnutls_free(dn.data);
	if (crt)
		gnutls_x509_crt_deinit(crt);
}

int vmsd_tls_session_start(vmsd_tls_session **out, vmsd_tls *t, int fd, unsigned timeout_s)
{
	vmsd_tls_session *s = calloc(1, sizeof *s);
	int g, rc;

	*out = NULL;
	if (!s)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if ((g = gnutls_init(&s->session, GNUTLS_SERVER | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS)) < 0) {
		free(s);
		return vms_error_set(VMS_ENOMEM, "TLS session: %s", gnutls_strerror(g));
	}
	gnutls_session_set_ptr(s->session, t);
	if ((g = gnutls_priority_set(s->session, t->priority)) < 0 ||
	    (g = gnutls_credentials_set(s->session, t->x509 ? GNUTLS_CRD_CERTIFICATE : GNUTLS_CRD_PSK,
	                                t->x509 ? (void *)t->x509 : (void *)t->psk)) < 0) {
		rc = vms_error_set(VMS_EIO, "TLS session set-up: %s", gnutls_strerror(g));
		goto fail;
	}
	if (t->x509 && t->verify_peer) {
		/* REQUIRE, not REQUEST: a client without a certificate fails the
		 * handshake instead of passing unverified. */
		gnutls_certificate_server_set_request(s->session, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(s->session, NULL, 0);
	}
	gnutls_transport_set_int(s->session, fd);
	gnutls_handshake_set_timeout(s->session, timeout_s ? timeout_s * 1000u : GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
	do {
		g = gnutls_handshake(s->session);
	} while (g < 0 && (g == GNUTLS_E_INTERRUPTED || g == GNUTLS_E_WARNING_ALERT_RECEIVED));
	if (g < 0) {
		char why[256] = "";
		if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
			gnutls_datum_t st = {NULL, 0};
			unsigned status = gnutls_session_get_verify_cert_status(s->session);
			if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &st, 0) == 0)
				snprintf(why, sizeof why, ": %s", (const char *)st.data);
			gnutls_free(st.data);
		} else if (g == GNUTLS_E_FATAL_ALERT_RECEIVED) {
			snprintf(why, sizeof why, " (client sent: %s)",
			         gnutls_alert_get_name(gnutls_alert_get(s->session)));
		} else if (g == GNUTLS_E_AGAIN) {
			snprintf(why, sizeof why, " (no answer within %u s)", timeout_s);
		} else if (t->psk && (g == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER || g == GNUTLS_E_DECRYPTION_FAILED)) {
			/* TLS 1.3 checks the PSK binder: a wrong key fails here. */
			snprintf(why, sizeof why, " (the client's PSK key does not match the key file's)");
		} else if (g == GNUTLS_E_NO_CERTIFICATE_FOUND || g == GNUTLS_E_CERTIFICATE_REQUIRED) {
			snprintf(why, sizeof why, " (--tls-verify-peer: the client must present a certificate)");
		}
		rc = vms_error_set(VMS_EPERM, "TLS handshake failed: %s%s", gnutls_strerror(g), why);
		goto fail;
	}
	describe_session(s, t);
	*out = s;
	return 0;
fail:
	gnutls_deinit(s->session);
	free(s);
	return rc;
}

const char *vmsd_tls_session_describe(const vmsd_tls_session *s)
{
	return s->desc;
}

ssize_t vmsd_tls_recv(vmsd_tls_session *s, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = gnutls_record_recv(s->session, buf, len);
		if (n >= 0)
			return n;
		switch (n) {
		case GNUTLS_E_INTERRUPTED:
			continue;
		case GNUTLS_E_PREMATURE_TERMINATION:
			return 0; /* closed without close_notify: an EOF like any other */
		case GNUTLS_E_AGAIN:
			vmsd_debug("TLS receive: timed out");
			return -1;
		case GNUTLS_E_REHANDSHAKE:
			vmsd_info("TLS: the client asked for a renegotiation, which is not supported: closing");
			return -1;
		default:
			vmsd_debug("TLS receive: %s", gnutls_strerror((int)n));
			return -1;
		}
	}
}

int vmsd_tls_read_full(vmsd_tls_session *s, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = vmsd_tls_recv(s, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_all(vmsd_tls_session *s, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = gnutls_record_send(s->session, p, len);
		if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
			continue; /* called again with the same arguments, as GnuTLS wants */
		if (n < 0) {
			vmsd_debug("TLS send: %s", gnutls_strerror((int)n));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int vmsd_tls_writev_full(vmsd_tls_session *s, const struct iovec *iov, int iovcnt)
{
	/* A reply is a small header and perhaps a payload: the header and the
	 * start of the payload share one record instead of the header costing
	 * a record (and a TCP segment) of its own.  Copies at most one record. */
	uint8_t stage[RECORD_MAX];
	size_t fill = 0;
	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		while (len) {
			if (fill == 0 && len >= sizeof stage) {
				if (send_all(s, p, len) < 0)
					return -1;
				break;
			}
			size_t m = len < sizeof stage - fill ? len : sizeof stage - fill;
			memcpy(stage + fill, p, m);
			fill += m;
			p += m;
			len -= m;
			if (fill == sizeof stage) {
				if (send_all(s, stage, fill) < 0)
					return -1;
				fill = 0;
			}
		}
	}
	return fill ? send_all(s, stage, fill) : 0;
}

void vmsd_tls_session_end(vmsd_tls_session *s)
{
	if (!s)
		return;
	/* Write side only, and bounded: waiting for the client's close_notify,
	 * or on a client that reads nothing, could hang the connection's end. */
	int fd = gnutls_transport_get_int(s->session);
	struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
	if (fd >= 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	(void)gnutls_bye(s->session, GNUTLS_SHUT_WR);
	gnutls_deinit(s->session);
	free(s);
}
