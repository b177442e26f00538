/*
 * nbd_wire.h - decoding and checking of what an NBD client sends: option
 * payloads of the handshake and transmission requests.  Pure functions over
 * buffers, no I/O and no allocation, so that the fuzzer
 * (tests/fuzz/fuzz_nbd_request.c) drives exactly the code the server runs.
 *
 * Every length read off the wire is checked against the buffer it claims to
 * describe before anything is copied.
 */
#ifndef VMSD_NBD_WIRE_H
#define VMSD_NBD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "nbd_proto.h"

/* Largest READ/WRITE/WRITE_ZEROES/CACHE length served, also the advertised
 * maximum block size. */
#define NBD_MAX_REQUEST (32u << 20)
/* Largest option payload the server buffers (longer ones are skipped or,
 * when absurd, end the session). */
#define NBD_MAX_OPTION (64u << 10)

/* Big-endian helpers. */
static inline uint16_t nbd_get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t nbd_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t nbd_get64(const uint8_t *p) { return (uint64_t)nbd_get32(p) << 32 | nbd_get32(p + 4); }
static inline void nbd_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void nbd_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void nbd_put64(uint8_t *p, uint64_t v) { nbd_put32(p, (uint32_t)(v >> 32)); nbd_put32(p + 4, (uint32_t)v); }

/* ---- handshake ------------------------------------------------------- */

/* NBD_OPT_INFO / NBD_OPT_GO payload. */
struct nbd_info_req {
	char name[NBD_MAX_STRING + 1]; /* NUL-terminated export name */
	int want_name;                 /* NBD_INFO_NAME requested */
	int want_description;          /* NBD_INFO_DESCRIPTION requested */
	int want_block_size;           /* NBD_INFO_BLOCK_SIZE requested */
};

/* Decode an INFO/GO payload.  Returns 0, or -1 when it is malformed
 * (lengths disagree, NUL in the name, name too long): NBD_REP_ERR_INVALID. */
int nbd_wire_parse_info(struct nbd_info_req *out, const uint8_t *data, uint32_t len);

/* Copy an NBD_OPT_EXPORT_NAME payload into name (NBD_MAX_STRING + 1 bytes).
 * Returns 0 or -1 (too long, NUL inside). */
int nbd_wire_parse_export_name(char *name, const uint8_t *data, uint32_t len);

/* NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT payload. */
struct nbd_meta_req {
	char name[NBD_MAX_STRING + 1]; /* export the contexts are for */
	uint32_t nqueries;
	int base_allocation;           /* the queries select (or list) base:allocation */
};

/* Decode a meta-context payload; `list` selects LIST semantics (no query or
 * "base:" list everything we have).  Returns 0 or -1 when malformed. */
int nbd_wire_parse_meta(struct nbd_meta_req *out, const uint8_t *data, uint32_t len, int list);

/* ---- transmission ---------------------------------------------------- */

struct nbd_request {
	uint32_t magic;
	uint16_t flags;
	uint16_t type;
	uint64_t handle;
	uint64_t offset;
	uint32_t length;
};

void nbd_wire_decode_request(struct nbd_request *out, const uint8_t buf[NBD_REQUEST_SIZE]);

/* What was negotiated for one connection, as the checks need it. */
struct nbd_xmit {
	uint64_t size;        /* export size */
	uint32_t min_block;   /* power of two, 1..65536 */
	uint32_t max_block;   /* NBD_MAX_REQUEST */
	uint16_t tflags;      /* transmission flags sent to the client */
	int structured;       /* structured replies negotiated */
	int meta_base;        /* base:allocation selected for this export */
};

enum nbd_verdict {
	NBD_SERVE,   /* valid: carry it out */
	NBD_REFUSE,  /* reply with error *err (a WRITE's payload is read and dropped) */
	NBD_DISC,    /* NBD_CMD_DISC: finish in-flight requests, close */
	NBD_HANGUP   /* protocol violation that desynchronises the stream: close now */
};

/* Check one request against the export and the negotiated features. */
enum nbd_verdict nbd_wire_check_request(const struct nbd_xmit *x, const struct nbd_request *r,
                                        uint32_t *err, const char **why);

/* Transmission flags for an export. */
uint16_t nbd_wire_tflags(int readonly, int can_trim, int can_zero, int structured);

/* Map a vms_error_code to an NBD error value (never 0). */
uint32_t nbd_wire_errno(int vms_code);

#endif
