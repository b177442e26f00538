/*
 * srtool.c - it_srtool: act on an SR through its backend alone, behind the
 * catalog's back, for tests/integration/test_repair.sh (damage to repair).
 *
 *   it_srtool TYPE LOCATION enum
 *       print the backend's object list (vms_backend.enumerate)
 *   it_srtool TYPE LOCATION disk VM_KEY DISK_KEY SIZE SEED
 *       make a disk no catalog row names and fill its first MiB with the
 *       it_diskio pattern of SEED; prints its ref
 *   it_srtool TYPE LOCATION delete REF
 *       delete a disk (native: any volume, snapshots included) by ref
 *
 * The pattern is it_diskio's (tests/integration/diskio.c), so
 * `it_diskio HOME VM/DISK verify SEED` checks the data once adopted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/backend.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

#define MIB (1u << 20)

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void pattern(unsigned char *buf, size_t len, uint64_t off, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed * 0x100000001b3ull ^ ((off + i) >> 3));
		memcpy(buf + i, &v, 8);
	}
}

static int fail(const char *what)
{
	fprintf(stderr, "it_srtool: %s: %s\n", what, vms_error_last());
	return 1;
}

int main(int argc, char **argv)
{
	const vms_backend *be;
	vms_sr_handle *h = NULL;
	int rc = 1;

	if (argc < 4) {
		fprintf(stderr, "usage: it_srtool TYPE LOCATION enum | disk VM DISK SIZE SEED | delete REF\n");
		return 2;
	}
	if (!(be = vms_backend_find(argv[1])))
		return fail("backend");
	if (be->sr_open(&h, argv[2]) < 0)
		return fail("open SR");
	if (!strcmp(argv[3], "enum")) {
		char *text = NULL;
		if (!be->enumerate || be->enumerate(h, 0, &text) < 0) {
			rc = fail("enumerate");
		} else {
			printf("%s\n", text);
			rc = 0;
		}
		free(text);
	} else if (!strcmp(argv[3], "disk") && argc == 8) {
		char *ref = NULL;
		uint64_t size, seed = strtoull(argv[7], NULL, 10);
		unsigned char *buf = malloc(MIB);
		vms_disk *d = NULL;
		if (!buf || vms_parse_size(&size, argv[6]) < 0 || size < MIB) {
			fprintf(stderr, "it_srtool: bad size %s\n", argv[6]);
		} else if (be->disk_create(&ref, h, argv[4], argv[5], size) < 0) {
			rc = fail("disk_create");
		} else if (be->disk_open(&d, h, ref, 0) < 0) {
			rc = fail("disk_open");
		} else {
			pattern(buf, MIB, 0, seed);
			if (be->disk_write(d, buf, MIB, 0, 1) < 0 || be->disk_flush(d) < 0)
				rc = fail("write");
			else {
				printf("%s\n", ref);
				rc = 0;
			}
		}
		if (d)
			be->disk_close(d);
		free(ref);
		free(buf);
	} else if (!strcmp(argv[3], "delete") && argc == 5) {
		if (be->disk_delete(h, argv[4]) < 0)
			rc = fail("delete");
		else
			rc = 0;
	} else {
		fprintf(stderr, "it_srtool: bad command\n");
		rc = 2;
	}
	if (be->sr_close(h) < 0 && rc == 0)
		rc = fail("close SR");
	return rc;
}
