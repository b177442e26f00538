/*
 * nbd_wire.c - decoding and checking of NBD option payloads and requests
 * (see nbd_wire.h and the protocol's doc/proto.md).
 *
 * Rules applied to requests, in order (the specification's "Error values"
 * and "Block size constraints" sections):
 *  - bad magic: the stream cannot be trusted any more -> hard disconnect;
 *  - a WRITE longer than the maximum block size: its payload cannot be
 *    buffered, and the client broke a MUST -> hard disconnect;
 *  - unknown command or command flag, a flag not valid for the command ->
 *    EINVAL;
 *  - writes (WRITE, WRITE_ZEROES, TRIM) on a read-only export -> EPERM;
 *  - READ, WRITE, CACHE longer than the maximum block size -> EINVAL
 *    (WRITE_ZEROES and TRIM carry no payload and are served at any
 *    length, as nbdcopy relies on);
 *  - offset or length not a multiple of the minimum block size -> EINVAL;
 *  - a range past the end: ENOSPC for WRITE and WRITE_ZEROES, EINVAL for
 *    the others;
 *  - BLOCK_STATUS without a selected context -> EINVAL.
 */
#include "nbd_wire.h"

#include <string.h>

#include "vmsnap/error.h"

static int copy_string(char *dst, const uint8_t *src, uint32_t len)
{
	if (len > NBD_MAX_STRING)
		return -1;
	if (len && memchr(src, '\0', len))
		return -1;
	if (len)
		memcpy(dst, src, len);
	dst[len] = '\0';
	return 0;
}

int nbd_wire_parse_export_name(char *name, const uint8_t *data, uint32_t len)
{
	return copy_string(name, data, len);
}

int nbd_wire_parse_info(struct nbd_info_req *out, const uint8_t *data, uint32_t len)
{
	memset(out, 0, sizeof *out);
	if (len < 6)
		return -1;
	uint32_t nlen = nbd_get32(data);
	if (nlen > len - 6)
		return -1;
	if (copy_string(out->name, data + 4, nlen) < 0)
		return -1;
	const uint8_t *p = data + 4 + nlen;
	uint32_t nreq = nbd_get16(p);
	p += 2;
	if ((uint64_t)nreq * 2 != (uint64_t)(len - 6 - nlen))
		return -1;
	for (uint32_t i = 0; i < nreq; i++, p += 2) {
		switch (nbd_get16(p)) {
		case NBD_INFO_NAME: out->want_name = 1; break;
		case NBD_INFO_DESCRIPTION: out->want_description = 1; break;
		case NBD_INFO_BLOCK_SIZE: out->want_block_size = 1; break;
		default: break; /* unknown requests are ignored (MUST) */
		}
	}
	return 0;
}

int nbd_wire_parse_meta(struct nbd_meta_req *out, const uint8_t *data, uint32_t len, int list)
{
	memset(out, 0, sizeof *out);
	if (len < 8)
		return -1;
	uint32_t nlen = nbd_get32(data);
	if (nlen > len - 8)
		return -1;
	if (copy_string(out->name, data + 4, nlen) < 0)
		return -1;
	uint32_t pos = 4 + nlen;
	out->nqueries = nbd_get32(data + pos);
	pos += 4;
	for (uint32_t i = 0; i < out->nqueries; i++) {
		if (len - pos < 4)
			return -1;
		uint32_t qlen = nbd_get32(data + pos);
		pos += 4;
		if (qlen > len - pos || qlen > NBD_MAX_STRING)
			return -1;
		const char *q = (const char *)data + pos;
		pos += qlen;
		if (qlen && memchr(q, '\0', qlen))
			return -1;
		/* A query is "namespace:leaf"; one without a colon is invalid. */
		if (!memchr(q, ':', qlen))
			return -1;
		if (qlen == 15 && memcmp(q, "base:allocation", 15) == 0)
			out->base_allocation = 1;
		else if (list && qlen == 5 && memcmp(q, "base:", 5) == 0)
			out->base_allocation = 1; /* wildcard, LIST only */
		/* other namespaces and unknown base: leaves are ignored (MUST) */
	}
	if (pos != len)
		return -1;
	if (list && out->nqueries == 0)
		out->base_allocation = 1;
	return 0;
}

void nbd_wire_decode_request(struct nbd_request *out, const uint8_t buf[NBD_REQUEST_SIZE])
{
	out->magic = nbd_get32(buf);
	out->flags = nbd_get16(buf + 4);
	out->type = nbd_get16(buf + 6);
	out->handle = nbd_get64(buf + 8);
	out->offset = nbd_get64(buf + 16);
	out->length = nbd_get32(buf + 24);
}

uint16_t nbd_wire_tflags(int readonly, int can_trim, int can_zero, int structured)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_CACHE |
	             NBD_FLAG_CAN_MULTI_CONN;
	if (structured)
		f |= NBD_FLAG_SEND_DF;
	if (readonly)
		return f | NBD_FLAG_READ_ONLY;
	f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
	if (can_trim)
		f |= NBD_FLAG_SEND_TRIM;
	(void)can_zero; /* WRITE_ZEROES falls back to writing zeroes */
	return f;
}

uint32_t nbd_wire_errno(int vms_code)
{
	switch (vms_code) {
	case VMS_EPERM:
	case VMS_EROFS:
		return NBD_EPERM;
	case VMS_ENOSPC:
		return NBD_ENOSPC;
	case VMS_EINVAL:
		return NBD_EINVAL;
	case VMS_ENOMEM:
		return NBD_ENOMEM;
	case VMS_ENOTSUP:
		return NBD_ENOTSUP;
	default:
		return NBD_EIO;
	}
}

static int aligned(const struct nbd_xmit *x, uint64_t v)
{
	return (v & (x->min_block - 1)) == 0;
}

enum nbd_verdict nbd_wire_check_request(const struct nbd_xmit *x, const struct nbd_request *r,
                                        uint32_t *err, const char **why)
{
	uint16_t valid = 0;
	int ranged = 1, writes = 0, capped = 0;

	*err = 0;
	*why = NULL;
	if (r->magic != NBD_REQUEST_MAGIC) {
		*why = "bad request magic";
		return NBD_HANGUP;
	}
	if (r->type == NBD_CMD_WRITE && r->length > x->max_block) {
		*why = "write payload larger than the maximum block size";
		return NBD_HANGUP;
	}
	if (x->tflags & NBD_FLAG_SEND_FUA)
		valid |= NBD_CMD_FLAG_FUA;
	switch (r->type) {
	case NBD_CMD_DISC:
		return NBD_DISC;
	case NBD_CMD_READ:
		if (x->tflags & NBD_FLAG_SEND_DF)
			valid |= NBD_CMD_FLAG_DF;
		capped = 1;
		break;
	case NBD_CMD_WRITE:
		writes = capped = 1;
		break;
	case NBD_CMD_FLUSH:
		ranged = 0;
		break;
	case NBD_CMD_TRIM:
		if (!(x->tflags & NBD_FLAG_SEND_TRIM) && !(x->tflags & NBD_FLAG_READ_ONLY)) {
			*err = NBD_EINVAL;
			*why = "trim is not supported by this export";
			return NBD_REFUSE;
		}
		writes = 1;
		break;
	case NBD_CMD_CACHE:
		capped = 1;
		break;
	case NBD_CMD_WRITE_ZEROES:
		valid |= NBD_CMD_FLAG_NO_HOLE;
		if (x->tflags & NBD_FLAG_SEND_FAST_ZERO)
			valid |= NBD_CMD_FLAG_FAST_ZERO;
		/* Not capped: the specification limits WRITE_ZEROES to the
		 * maximum block size, but libnbd's nbdcopy sends larger ones
		 * and nothing of that length crosses the wire. */
		writes = 1;
		break;
	case NBD_CMD_BLOCK_STATUS:
		valid |= NBD_CMD_FLAG_REQ_ONE;
		if (!x->structured || !x->meta_base) {
			*err = NBD_EINVAL;
			*why = "block status without a negotiated metadata context";
			return NBD_REFUSE;
		}
		break;
	default:
		*err = NBD_EINVAL;
		*why = "unknown command";
		return NBD_REFUSE;
	}
	if (r->flags & ~valid) {
		*err = NBD_EINVAL;
		*why = "command flag not valid for this command";
		return NBD_REFUSE;
	}
	if (writes && (x->tflags & NBD_FLAG_READ_ONLY)) {
		*err = NBD_EPERM;
		*why = "the export is read-only";
		return NBD_REFUSE;
	}
	if (!ranged) {
		if (r->offset || r->length) {
			*err = NBD_EINVAL;
			*why = "flush with a nonzero offset or length";
			return NBD_REFUSE;
		}
		return NBD_SERVE;
	}
	if (capped && r->length > x->max_block) {
		*err = NBD_EINVAL;
		*why = "length larger than the maximum block size";
		return NBD_REFUSE;
	}
	if (!aligned(x, r->offset) || !aligned(x, r->length)) {
		*err = NBD_EINVAL;
		*why = "offset or length not a multiple of the minimum block size";
		return NBD_REFUSE;
	}
	if (r->offset > x->size || r->length > x->size - r->offset) {
		*err = (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC
		                                                                     : NBD_EINVAL;
		*why = "range past the end of the export";
		return NBD_REFUSE;
	}
	if (r->type == NBD_CMD_BLOCK_STATUS && r->length == 0) {
		*err = NBD_EINVAL;
		*why = "block status of an empty range";
		return NBD_REFUSE;
	}
	return NBD_SERVE;
}
