/*
 * CRC-32C (Castagnoli).  Uses the SSE4.2 crc32 instruction when the CPU has
 * it (checked once), else a slice-by-8 table.  Standard pre/post inversion:
 * vms_crc32c(0, "123456789", 9) == 0xE3069283.
 */
#include <stdint.h>
#include <string.h>

#include "vmsnap/crc32c.h"

static uint32_t table[8][256];
static int have_hw = -1;

static void init_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

static uint32_t sw_crc(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		v ^= crc;
		crc = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^ table[5][(v >> 16) & 0xff] ^
		      table[4][(v >> 24) & 0xff] ^ table[3][(v >> 32) & 0xff] ^
		      table[2][(v >> 40) & 0xff] ^ table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t hw_crc(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = crc;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = __builtin_ia32_crc32qi(c32, *p++);
	return c32;
}
#endif

static void init_once(void)
{
	init_table();
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
	have_hw = 0;
#endif
}

#include <pthread.h>
static pthread_once_t once = PTHREAD_ONCE_INIT;

uint32_t vms_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&once, init_once);
	crc = ~crc;
#if defined(__x86_64__)
	if (have_hw)
		return ~hw_crc(crc, buf, len);
#endif
	return ~sw_crc(crc, buf, len);
}
