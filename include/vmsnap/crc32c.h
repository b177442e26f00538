/* vmsnap/crc32c.h - CRC-32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2. */
#ifndef VMSNAP_CRC32C_H
#define VMSNAP_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32C over buf; start with crc = 0. */
uint32_t vms_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
