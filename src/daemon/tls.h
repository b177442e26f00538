/*
 * tls.h - TLS for vmsnapd's NBD server (GnuTLS), negotiated in the
 * handshake with NBD_OPT_STARTTLS as the protocol's "TLS support" section
 * describes, with the credentials qemu-nbd and nbdkit use:
 *
 *  - X.509: a directory holding ca-cert.pem, server-cert.pem and
 *    server-key.pem, and optionally ca-crl.pem (the layout of qemu's
 *    tls-creds-x509 and of nbdkit --tls-certificates); with verify_peer a
 *    client must present a certificate signed by that CA;
 *  - PSK: a psktool key file, one "username:hexkey" per line (nbdkit
 *    --tls-psk, qemu tls-creds-psk), read once at start.
 *
 * A vmsd_tls holds the credentials, loaded before the daemon serves
 * anything and shared read-only by every connection.  A vmsd_tls_session
 * is one connection's TLS session.  After the handshake one thread may
 * receive while another sends (GnuTLS allows exactly that: the NBD server
 * reads under its read lock and sends under its write lock); nothing else
 * may run concurrently on a session.  Renegotiation is never accepted.
 */
#ifndef VMSD_TLS_H
#define VMSD_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

enum vmsd_tls_mode {
	VMSD_TLS_OFF = 0,     /* NOTLS: STARTTLS is answered NBD_REP_ERR_UNSUP */
	VMSD_TLS_ON = 1,      /* STARTTLS offered, plain clients served too */
	VMSD_TLS_REQUIRE = 2  /* FORCEDTLS on TCP: nothing but STARTTLS/ABORT before TLS */
};

struct vmsd_tls_config {
	int mode;                 /* enum vmsd_tls_mode */
	const char *certificates; /* X.509 directory, or NULL */
	const char *psk_file;     /* psktool key file, or NULL */
	int verify_peer;          /* X.509: require a client certificate signed by the CA */
};

typedef struct vmsd_tls vmsd_tls;
typedef struct vmsd_tls_session vmsd_tls_session;

/* "off", "on", "require" -> enum vmsd_tls_mode; -1 when unknown. */
int vmsd_tls_mode_parse(const char *s);

/* Check the options and load the credentials.  Returns 0 with *out set
 * (NULL when TLS is off and no TLS option was given), or a negative
 * vms_error_code with a message naming the option or file at fault: TLS
 * on without credentials, credentials with TLS off, both kinds at once,
 * --tls-verify-peer without X.509, a missing or unreadable file, a bad
 * certificate, key or key file.  Free with vmsd_tls_free(). */
int vmsd_tls_new(vmsd_tls **out, const struct vmsd_tls_config *cfg);
void vmsd_tls_free(vmsd_tls *t);

/* The configured mode (VMSD_TLS_OFF for t == NULL). */
int vmsd_tls_mode(const vmsd_tls *t);

/* One line for the start-up log: "X.509 certificates from DIR, client
 * certificates required" or "PSK, 2 key(s) from FILE". */
const char *vmsd_tls_describe(const vmsd_tls *t);

/* Server side of the TLS handshake on fd (the NBD_REP_ACK to STARTTLS has
 * been sent).  The peer gets timeout_s seconds.  Returns 0 and the session
 * (caller ends it with vmsd_tls_session_end), or a negative code with the
 * reason in the message (bad credentials, wrong key, no client
 * certificate, timeout, EOF).  fd stays the caller's. */
int vmsd_tls_session_start(vmsd_tls_session **out, vmsd_tls *t, int fd, unsigned timeout_s);

/* What was negotiated, for the log: "TLS1.3, AES-256-GCM, PSK user
 * alice" or "..., client CN=...". */
const char *vmsd_tls_session_describe(const vmsd_tls_session *s);

/* Read exactly len bytes.  Returns 0, or -1 at EOF, on a receive timeout
 * or a TLS error (the connection is then unusable). */
int vmsd_tls_read_full(vmsd_tls_session *s, void *buf, size_t len);

/* Read what one record holds, at most len bytes.  Returns the count (> 0),
 * 0 at EOF, -1 on error or timeout. */
ssize_t vmsd_tls_recv(vmsd_tls_session *s, void *buf, size_t len);

/* Send every byte of iov.  Small pieces (headers) are gathered with the
 * start of what follows into one record; large payloads go straight from
 * their buffer.  Returns 0 or -1. */
int vmsd_tls_writev_full(vmsd_tls_session *s, const struct iovec *iov, int iovcnt);

/* Send close_notify (the protocol's "close down the TLS session") and free
 * the session.  No other thread may be using it.  fd is not closed. */
void vmsd_tls_session_end(vmsd_tls_session *s);

#endif
