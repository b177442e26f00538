/*
 * diskio.c - it_diskio: write, verify and checksum data on a vmsnap disk or
 * snapshot, in process through vms_control_disk_open(), for the CLI tests
 * (the daemon's NBD path is exercised by the daemon's own tests).
 *
 *   it_diskio HOME EXPORT write  SEED [OFFSET [LENGTH]]
 *   it_diskio HOME EXPORT verify SEED [OFFSET [LENGTH]]
 *   it_diskio HOME EXPORT sum    [OFFSET [LENGTH]]
 *   it_diskio HOME EXPORT size
 *
 * EXPORT is "vm/disk" or "vm/disk@<snapshot selector>".  OFFSET defaults
 * to 0, LENGTH to 1 MiB (sizes accept suffixes: 4K, 1M).  The pattern is a
 * function of SEED and of the absolute offset of each 8-byte word, so any
 * sub-range written can be verified alone and different seeds never match.
 * verify exits 1 and names the first differing offset; sum prints the
 * CRC-32C of the range in hex.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/backend.h"
#include "vmsnap/control.h"
#include "vmsnap/crc32c.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

#define CHUNK (1u << 20)

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Fill buf (len bytes, starting at absolute offset off, both 8-aligned). */
static void pattern(unsigned char *buf, size_t len, uint64_t off, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed * 0x100000001b3ull ^ ((off + i) >> 3));
		memcpy(buf + i, &v, 8);
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: it_diskio HOME EXPORT write|verify SEED [OFFSET [LENGTH]]\n"
	                "       it_diskio HOME EXPORT sum [OFFSET [LENGTH]]\n"
	                "       it_diskio HOME EXPORT size\n");
	return 2;
}

static int parse_u64(uint64_t *out, const char *s)
{
	if (vms_parse_size(out, s) < 0) {
		fprintf(stderr, "it_diskio: bad number '%s'\n", s);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	vms_control *ctl = NULL;
	vms_disk *disk = NULL;
	const vms_backend *be = NULL;
	unsigned char *buf = NULL, *want = NULL;
	uint64_t seed = 0, off = 0, len = CHUNK;
	int rc = 1, argi;

	if (argc < 4)
		return usage();
	const char *home = argv[1], *export_name = argv[2], *verb = argv[3];
	int is_write = !strcmp(verb, "write"), is_verify = !strcmp(verb, "verify");
	int is_sum = !strcmp(verb, "sum"), is_size = !strcmp(verb, "size");
	if (!is_write && !is_verify && !is_sum && !is_size)
		return usage();
	argi = 4;
	if (is_write || is_verify) {
		if (argc < 5 || parse_u64(&seed, argv[argi++]) < 0)
			return usage();
	}
	if (argi < argc && parse_u64(&off, argv[argi++]) < 0)
		return 2;
	if (argi < argc && parse_u64(&len, argv[argi++]) < 0)
		return 2;
	if (argi < argc || off % 8 || len % 8) {
		fprintf(stderr, "it_diskio: OFFSET and LENGTH must be multiples of 8\n");
		return 2;
	}

	int e = vms_control_open(&ctl, home);
	if (e < 0) {
		fprintf(stderr, "it_diskio: %s: %s\n", home, vms_error_last());
		goto done;
	}
	e = vms_control_disk_open(&disk, &be, NULL, ctl, export_name, is_write ? 0 : VMS_DISK_READONLY);
	if (e < 0) {
		fprintf(stderr, "it_diskio: %s: %s\n", export_name, vms_error_last());
		goto done;
	}
	uint64_t size = be->disk_size(disk);
	if (is_size) {
		printf("%" PRIu64 "\n", size);
		rc = 0;
		goto done;
	}
	if (off > size || len > size - off) {
		fprintf(stderr, "it_diskio: range %" PRIu64 "+%" PRIu64 " past the end (%" PRIu64 ")\n", off, len,
		        size);
		goto done;
	}
	buf = malloc(CHUNK);
	want = malloc(CHUNK);
	if (!buf || !want)
		goto done;
	uint32_t crc = 0;
	for (uint64_t done_bytes = 0; done_bytes < len;) {
		size_t n = len - done_bytes < CHUNK ? (size_t)(len - done_bytes) : CHUNK;
		uint64_t at = off + done_bytes;
		if (is_write) {
			pattern(buf, n, at, seed);
			if ((e = be->disk_write(disk, buf, n, at, 0)) < 0) {
				fprintf(stderr, "it_diskio: write at %" PRIu64 ": %s\n", at, vms_error_last());
				goto done;
			}
		} else {
			if ((e = be->disk_read(disk, buf, n, at)) < 0) {
				fprintf(stderr, "it_diskio: read at %" PRIu64 ": %s\n", at, vms_error_last());
				goto done;
			}
			if (is_verify) {
				pattern(want, n, at, seed);
				if (memcmp(buf, want, n)) {
					size_t i = 0;
					while (buf[i] == want[i])
						i++;
					fprintf(stderr, "it_diskio: %s differs from pattern %" PRIu64 " at offset %" PRIu64 "\n",
					        export_name, seed, at + i);
					goto done;
				}
			} else {
				crc = vms_crc32c(crc, buf, n);
			}
		}
		done_bytes += n;
	}
	if (is_write && (e = be->disk_flush(disk)) < 0) {
		fprintf(stderr, "it_diskio: flush: %s\n", vms_error_last());
		goto done;
	}
	if (is_sum)
		printf("%08" PRIx32 "\n", crc);
	rc = 0;
done:
	free(buf);
	free(want);
	if (disk)
		be->disk_close(disk);
	if (ctl)
		vms_control_close(ctl);
	return rc;
}
