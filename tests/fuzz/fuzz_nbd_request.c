/*
 * fuzz_nbd_request.c - libFuzzer target for vmsnapd's NBD wire parser
 * (src/daemon/nbd_wire.c): option payloads of the handshake and
 * transmission requests checked against a fuzzed export.
 *
 * Beyond "no crash, no sanitizer report", it asserts the parser's
 * contract: a request it lets through (NBD_SERVE) lies inside the export,
 * is aligned to the minimum block size, carries only flags valid for its
 * command, never writes to a read-only export, and a READ/WRITE never
 * exceeds the maximum block size; parsed names never exceed the string
 * limit and hold no NUL.
 *
 * Build: cmake -DVMS_FUZZ=ON -DCMAKE_C_COMPILER=clang; run:
 *   ./fuzz_nbd_request -max_total_time=60
 */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <string.h>

/* The daemon is not a library: compile its parser into this target. */
#include "../../src/daemon/nbd_wire.c"

static void fuzz_requests(const uint8_t *data, size_t size)
{
	if (size < 13)
		return;
	struct nbd_xmit x;
	x.size = nbd_get64(data) >> (data[8] & 63);
	x.min_block = 1u << (data[9] % 17);           /* 1 .. 65536 */
	x.max_block = NBD_MAX_REQUEST;
	x.tflags = nbd_get16(data + 10) | NBD_FLAG_HAS_FLAGS;
	x.structured = data[12] & 1;
	x.meta_base = (data[12] >> 1) & 1;
	data += 13;
	size -= 13;
	for (; size >= NBD_REQUEST_SIZE; data += NBD_REQUEST_SIZE, size -= NBD_REQUEST_SIZE) {
		struct nbd_request r;
		uint32_t err = 0;
		const char *why = NULL;
		nbd_wire_decode_request(&r, data);
		enum nbd_verdict v = nbd_wire_check_request(&x, &r, &err, &why);
		switch (v) {
		case NBD_SERVE:
			assert(r.magic == NBD_REQUEST_MAGIC);
			assert(err == 0);
			if (r.type == NBD_CMD_FLUSH) {
				assert(r.offset == 0 && r.length == 0);
				break;
			}
			assert(r.type <= NBD_CMD_BLOCK_STATUS && r.type != NBD_CMD_DISC);
			assert(r.offset <= x.size && r.length <= x.size - r.offset);
			assert(r.offset % x.min_block == 0 && r.length % x.min_block == 0);
			if (r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE || r.type == NBD_CMD_CACHE)
				assert(r.length <= x.max_block);
			if (r.type == NBD_CMD_WRITE || r.type == NBD_CMD_TRIM || r.type == NBD_CMD_WRITE_ZEROES)
				assert(!(x.tflags & NBD_FLAG_READ_ONLY));
			if (r.type == NBD_CMD_BLOCK_STATUS)
				assert(x.structured && x.meta_base && r.length > 0);
			if (r.flags & NBD_CMD_FLAG_FUA)
				assert(x.tflags & NBD_FLAG_SEND_FUA);
			if (r.flags & NBD_CMD_FLAG_REQ_ONE)
				assert(r.type == NBD_CMD_BLOCK_STATUS);
			if (r.flags & (NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO))
				assert(r.type == NBD_CMD_WRITE_ZEROES);
			if (r.flags & NBD_CMD_FLAG_DF)
				assert(r.type == NBD_CMD_READ && (x.tflags & NBD_FLAG_SEND_DF));
			assert(!(r.flags & ~(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF |
			                     NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FAST_ZERO)));
			break;
		case NBD_REFUSE:
			assert(err != 0 && why != NULL);
			break;
		case NBD_DISC:
			assert(r.type == NBD_CMD_DISC);
			break;
		case NBD_HANGUP:
			assert(r.magic != NBD_REQUEST_MAGIC ||
			       (r.type == NBD_CMD_WRITE && r.length > x.max_block));
			break;
		}
	}
}

static void check_name(const char *name)
{
	size_t n = strnlen(name, NBD_MAX_STRING + 1);
	assert(n <= NBD_MAX_STRING);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nbd_info_req info;
	static struct nbd_meta_req meta;
	static char name[NBD_MAX_STRING + 1];

	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	if (size > NBD_MAX_OPTION && mode % 5 != 4)
		return 0; /* the server never hands the parser more */
	switch (mode % 5) {
	case 0:
		if (nbd_wire_parse_info(&info, data, (uint32_t)size) == 0)
			check_name(info.name);
		break;
	case 1:
	case 2:
		if (nbd_wire_parse_meta(&meta, data, (uint32_t)size, mode % 5 == 1) == 0) {
			check_name(meta.name);
			if (mode % 5 == 1 && meta.nqueries == 0)
				assert(meta.base_allocation);
		}
		break;
	case 3:
		if (nbd_wire_parse_export_name(name, data, (uint32_t)size) == 0) {
			check_name(name);
			assert(strlen(name) == size);
		}
		break;
	case 4:
		fuzz_requests(data, size);
		break;
	}
	return 0;
}
