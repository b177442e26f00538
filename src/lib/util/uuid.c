/*
 * Version 4 UUIDs from the kernel's random source (see vmsnap/uuid.h).
 * getrandom() without flags blocks only until the pool is initialised at
 * boot and never returns short for requests of 16 bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "vmsnap/error.h"
#include "vmsnap/uuid.h"

static const char hexdigits[] = "0123456789abcdef";

static void format(char out[VMS_UUID_BUF], const uint8_t b[16])
{
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hexdigits[b[i] >> 4];
		out[o++] = hexdigits[b[i] & 15];
	}
	out[o] = 0;
}

int vms_uuid_generate(char out[VMS_UUID_BUF])
{
	uint8_t b[16];
	size_t got = 0;
	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vms_error_set_errno(errno, "getrandom");
		}
		got += (size_t)n;
	}
	b[6] = (uint8_t)((b[6] & 0x0F) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3F) | 0x80); /* variant 10 */
	format(out, b);
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode 36 characters of UUID text; lower_only refuses uppercase. */
static int decode(uint8_t b[16], const char *s, int lower_only)
{
	int n = 0;
	for (int i = 0; i < VMS_UUID_LEN; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return -1;
			continue;
		}
		if (lower_only && c >= 'A' && c <= 'F')
			return -1;
		int v = hexval(c);
		if (v < 0)
			return -1;
		if (n % 2 == 0)
			b[n / 2] = (uint8_t)(v << 4);
		else
			b[n / 2] |= (uint8_t)v;
		n++;
	}
	return 0;
}

int vms_uuid_valid(const char *s)
{
	uint8_t b[16];
	if (!s || strnlen(s, VMS_UUID_LEN + 1) != VMS_UUID_LEN)
		return 0;
	return decode(b, s, 1) == 0;
}

int vms_uuid_parse(char out[VMS_UUID_BUF], const char *s)
{
	uint8_t b[16];
	if (!s)
		return vms_error_set(VMS_EINVAL, "missing UUID");
	const char *p = s;
	size_t n = strnlen(s, 64);
	if (n >= 9 && strncasecmp(p, "urn:uuid:", 9) == 0) {
		p += 9;
		n -= 9;
	}
	if (n == VMS_UUID_LEN + 2 && p[0] == '{' && p[n - 1] == '}') {
		p++;
		n -= 2;
	}
	if (n != VMS_UUID_LEN || decode(b, p, 0) < 0)
		return vms_error_set(VMS_EINVAL, "'%.64s' is not a UUID "
		                     "(expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", s);
	format(out, b);
	return 0;
}
