/*
 * fuzz_pool_open.c - libFuzzer target for the native engine's on-disk
 * metadata: open, check and read a mutated pool (docs/format.md).
 *
 * A small valid pool (128 blocks of 4 KiB: two volumes with data, a
 * snapshot, a clone, a deleted volume, a resize) is built once in memory.
 * Each input is a list of patches applied to a copy of that image:
 *
 *   byte 0      mode: bit 0 recompute the checksums after patching (so the
 *               mutation gets past the CRCs into the structure checks),
 *               bit 1 check with VMS_CHECK_DATA, bit 2 read every volume,
 *               bit 3 also try a second open after the first closed
 *   then        repeated [u32 offset LE][u8 len][len bytes], XORed into the
 *               image at offset % image size (clipped at the end)
 *
 *               bit 4 open on a read-only io (writes refused and counted)
 *               bit 5 the wide image: the same pool built on 2,048 blocks,
 *               so its space map has an interior root and a hole page
 *               (format version 2); patches still land in the first 128
 *               blocks, where all its metadata lies
 *
 * Then vms_pool_open() read-only (vms_pool_options.read_only) on an
 * in-memory io, vms_pool_check(), and reads of every volume (first, middle
 * and last block); with bit 3, the same again opened read-write.  Asserted:
 *   - no crash, no sanitizer report, no hang (libFuzzer's -timeout);
 *   - every failure is a clean error code with a message;
 *   - the read-only open, its check and its reads attempt no write at all
 *     and leave every byte of the image as it was, whatever the damage;
 *   - a pool whose open fails was not written to at all (not one byte of
 *     the image changed, no write attempted): a damaged pool is refused,
 *     never "fixed" behind the user's back;
 *   - on a read-only io a pool never changes (the engine commits on open,
 *     see vms_pool_open(), so there the open fails with EROFS);
 *   - when the check with VMS_CHECK_DATA finds the pool clean, every read
 *     of every volume succeeds.
 * Write attempts after a successful open (the open's own commit, the check's
 * commit) are expected and counted; the counts are printed at exit.
 *
 * Build: tests/fuzz/run.sh; by hand ./fuzz_pool_open -max_total_time=60 DIR
 */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/crc32c.h"
#include "vmsnap/error.h"
#include "vmsnap/io.h"
#include "vmsnap/pool.h"

#define BS 4096u
#define NBLK 128u
#define IMG (BS * NBLK)

typedef struct memio {
	vms_io io;
	uint8_t *buf;
	uint64_t len;
	int readonly;
	int phase;           /* 0 open, 1 check/read */
	uint64_t writes[2];  /* attempts refused by a read-only io, by phase */
	uint64_t attempts;   /* every write or resize call */
} memio;

static int m_read(vms_io *io, void *buf, size_t len, uint64_t off)
{
	memio *m = (memio *)io;
	memset(buf, 0, len);
	if (off < m->len)
		memcpy(buf, m->buf + off, (size_t)(len < m->len - off ? len : m->len - off));
	return 0;
}

static int m_write(vms_io *io, const void *buf, size_t len, uint64_t off)
{
	memio *m = (memio *)io;
	m->attempts++;
	if (m->readonly) {
		m->writes[m->phase]++;
		return vms_error_set(VMS_EROFS, "fuzz io is read-only");
	}
	if (off + len > m->len) {
		uint8_t *nb = realloc(m->buf, off + len);
		if (!nb)
			return vms_error_set(VMS_ENOMEM, "out of memory");
		memset(nb + m->len, 0, off + len - m->len);
		m->buf = nb;
		m->len = off + len;
	}
	memcpy(m->buf + off, buf, len);
	return 0;
}

static int m_sync(vms_io *io)
{
	(void)io;
	return 0;
}

static int m_size(vms_io *io, uint64_t *out)
{
	*out = ((memio *)io)->len;
	return 0;
}

static int m_resize(vms_io *io, uint64_t size)
{
	memio *m = (memio *)io;
	m->attempts++;
	if (m->readonly) {
		m->writes[m->phase]++;
		return vms_error_set(VMS_EROFS, "fuzz io is read-only");
	}
	uint8_t *nb = realloc(m->buf, size ? size : 1);
	if (!nb)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if (size > m->len)
		memset(nb + m->len, 0, size - m->len);
	m->buf = nb;
	m->len = size;
	return 0;
}

static void m_close(vms_io *io)
{
	(void)io;  /* the harness owns it */
}

static void m_init(memio *m, uint8_t *buf, uint64_t len, int readonly)
{
	memset(m, 0, sizeof(*m));
	m->io = (vms_io){m_read, m_write, m_sync, m_size, m_resize, m_close};
	m->buf = buf;
	m->len = len;
	m->readonly = readonly;
}

#define WIDE_NBLK 2048u         /* > (BS - 16) / 4 blocks: two space-map pages */

static uint8_t *g_images[2];     /* [0] 128 blocks, [1] the wide image */
static uint64_t g_image_lens[2];
static uint64_t g_runs, g_opened, g_clean, g_write_open, g_write_check, g_write_failed_open;

static void report(void)
{
	fprintf(stderr, "fuzz_pool_open: %llu inputs, %llu opened, %llu checked clean; write attempts "
	        "refused: %llu during open, %llu during check/read, %llu on pools whose open failed\n",
	        (unsigned long long)g_runs, (unsigned long long)g_opened, (unsigned long long)g_clean,
	        (unsigned long long)g_write_open, (unsigned long long)g_write_check,
	        (unsigned long long)g_write_failed_open);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define OK(x) do { int _rc = (x); if (_rc < 0) { fprintf(stderr, "setup: %s: %s\n", #x, vms_error_last()); abort(); } } while (0)

static void build_image(int wide)
{
	static memio ms[2];
	memio *mp = &ms[wide];
	uint64_t len = wide ? (uint64_t)BS * WIDE_NBLK : IMG;
	uint8_t *buf = calloc(1, len);
	assert(buf);
	m_init(mp, buf, len, 0);
	vms_pool_options o = {.block_size = BS, .data_checksums = 1, .commit_interval_ms = UINT32_MAX,
	                      .reserve_blocks = 8};
	vms_pool *p = NULL;
	OK(vms_pool_create(&p, &mp->io, len, &o));
	vms_vol_id a, b, s, c, d;
	uint8_t blk[BS];
	OK(vms_vol_create(&a, p, 64 * BS));
	OK(vms_vol_create(&b, p, 16 * BS));
	OK(vms_vol_create(&d, p, 8 * BS));
	for (unsigned i = 0; i < 12; i++) {
		memset(blk, 0x40 + i, sizeof(blk));
		OK(vms_vol_write(p, a, blk, BS, (uint64_t)(i * 5 % 64) * BS, 0));
		if (i < 4) {
			OK(vms_vol_write(p, b, blk, BS, (uint64_t)i * BS, 0));
			OK(vms_vol_write(p, d, blk, BS, (uint64_t)i * BS, 0));
		}
	}
	OK(vms_pool_commit(p));
	OK(vms_vol_snapshot(&s, p, &a, 1));
	memset(blk, 0xEE, sizeof(blk));
	OK(vms_vol_write(p, a, blk, BS, 0, 0));
	OK(vms_vol_clone(&c, p, s));
	OK(vms_vol_write(p, c, blk, BS, 10 * BS, 0));
	OK(vms_vol_resize(p, b, 20 * BS));
	OK(vms_vol_delete(p, d));
	OK(vms_pool_reap_wait(p));
	OK(vms_pool_close(p));
	assert(mp->buf[8] == 2); /* format version 2 (the record's version field) */
	if (wide) /* the second space-map page is a hole: all its blocks are free */
		for (uint64_t k = (BS - 16) / 4; k < WIDE_NBLK; k++)
			assert(get32(mp->buf + k * BS) != 0x4E534D56);
	g_images[wide] = mp->buf;
	g_image_lens[wide] = mp->len;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *e;
	build_image(0);
	build_image(1);
	/* the seed corpus generator: VMS_FUZZ_WRITE_IMAGE=PATH saves the base image */
	if ((e = getenv("VMS_FUZZ_WRITE_IMAGE"))) {
		FILE *f = fopen(e, "wb");
		assert(f && fwrite(g_images[0], 1, g_image_lens[0], f) == g_image_lens[0]);
		fclose(f);
	}
	atexit(report);
	return 0;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute every checksum the format keeps (docs/format.md), children
 * before parents, so that a patched field reaches the structure checks. */
static void fix_checksums(uint8_t *img, uint64_t len)
{
	uint64_t nb = len / BS;
	for (int pass = 0; pass < 10; pass++) {
		for (uint64_t b = 2; b < nb; b++) {
			uint8_t *h = img + b * BS;
			if (get32(h) != 0x4E534D56)
				continue;
			uint8_t type = h[4];
			if (type == 1 || type == 4) {        /* index node, page-array interior */
				for (uint32_t i = 0; i < BS / 16 - 1; i++) {
					uint8_t *bp = h + 16 + 16 * i;
					uint64_t t = get64(bp);
					if (t >= 2 && t < nb && (type == 4 || h[5] > 0 ||
					                         get32(img + t * BS) == 0x4E534D56 || get32(bp + 8)))
						put32(bp + 8, vms_crc32c(0, img + t * BS, BS));
				}
			} else if (type == 3) {              /* volume-table page */
				for (uint32_t i = 0; i < (BS - 16) / 128; i++) {
					uint8_t *r = h + 16 + 128 * i;
					uint64_t root = get64(r + 24);
					if (get64(r) && root >= 2 && root < nb)
						put32(r + 32, vms_crc32c(0, img + root * BS, BS));
				}
			}
		}
	}
	for (uint64_t s = 0; s < 2; s++) {
		uint8_t *r = img + s * BS;
		uint64_t sm = get64(r + 56), vt = get64(r + 72);
		if (sm < nb)
			put32(r + 64, vms_crc32c(0, img + sm * BS, BS));
		if (vt < nb)
			put32(r + 80, vms_crc32c(0, img + vt * BS, BS));
		put32(r + 252, vms_crc32c(0, r, 252));
	}
}

/* Returns 1 when the pool opened. */
static int exercise(memio *m, unsigned mode, int read_only)
{
	vms_pool_options o = {.commit_interval_ms = UINT32_MAX, .cache_bytes = 1 << 20,
	                      .read_only = read_only};
	vms_pool *p = NULL;
	m->phase = 0;
	uint64_t before = m->writes[0];
	int rc = vms_pool_open(&p, &m->io, &o);
	if (rc < 0) {
		assert(p == NULL);
		assert(vms_error_last()[0] != '\0');
		if (!m->readonly && m->writes[0] != before) {
			fprintf(stderr, "a pool whose open failed (%s) was written to\n", vms_error_last());
			abort();
		}
		if (m->writes[0] != before)
			g_write_failed_open++;
		return 0;
	}
	g_opened++;
	m->phase = 1;
	vms_check_report r;
	rc = vms_pool_check(&r, p, (mode & 2) ? VMS_CHECK_DATA : 0);
	assert(rc == 0 || rc == VMS_ECORRUPT || rc == VMS_EROFS || rc == VMS_EIO || rc == VMS_ENOMEM);
	assert(memchr(r.first_error, '\0', sizeof(r.first_error)));
	int clean = rc == 0 && !r.corrupt;
	if (clean)
		g_clean++;
	if (mode & 4) {
		vms_vol_id ids[64];
		int64_t n = vms_vol_list(ids, 64, p);
		assert(n >= 0);
		static uint8_t buf[BS];
		for (int64_t i = 0; i < n && i < 64; i++) {
			vms_vol_info info;
			if (vms_vol_info_get(&info, p, ids[i]) < 0)
				continue;
			uint64_t last = info.size >= BS ? (info.size - BS) & ~(uint64_t)(BS - 1) : 0;
			uint64_t offs[3] = {0, last / 2 & ~(uint64_t)(BS - 1), last};
			for (int k = 0; k < 3; k++) {
				if (offs[k] + BS > info.size)
					continue;
				rc = vms_vol_read(p, ids[i], buf, BS, offs[k]);
				if (rc < 0 && clean && (mode & 2)) {
					fprintf(stderr, "check (with data) found the pool clean, but reading volume "
					        "%llu at %llu fails: %s\n", (unsigned long long)ids[i],
					        (unsigned long long)offs[k], vms_error_last());
					abort();
				}
			}
			uint64_t u;
			(void)vms_vol_unique_bytes(&u, p, ids[i]);
		}
	}
	(void)vms_pool_close(p);
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	g_runs++;
	unsigned mode = data[0];
	uint64_t g_image_len = g_image_lens[(mode >> 5) & 1];
	uint8_t *img = malloc(g_image_len);
	assert(img);
	memcpy(img, g_images[(mode >> 5) & 1], g_image_len);
	size_t i = 1;
	while (i + 5 <= size) {
		uint64_t off = get32(data + i) % IMG; /* the metadata of both images */
		size_t n = data[i + 4];
		i += 5;
		if (n > size - i)
			n = size - i;
		for (size_t k = 0; k < n && off + k < g_image_len; k++)
			img[off + k] ^= data[i + k];
		i += n;
	}
	if (mode & 1)
		fix_checksums(img, g_image_len);
	uint8_t *copy = malloc(g_image_len);
	assert(copy);
	memcpy(copy, img, g_image_len);

	memio m;
	m_init(&m, img, g_image_len, !!(mode & 16));
	int opened = exercise(&m, mode, 1);
	if (m.attempts || m.len != g_image_len || memcmp(m.buf, copy, g_image_len) != 0) {
		fprintf(stderr, "a read-only open, check and reads wrote to the pool (%llu attempts)\n",
		        (unsigned long long)m.attempts);
		abort();
	}
	if (opened && (mode & 8))
		opened = exercise(&m, mode, 0);
	if (!opened || m.readonly) {
		assert(m.len == g_image_len);
		assert(memcmp(m.buf, copy, g_image_len) == 0);  /* refused or read-only: untouched */
	}
	img = m.buf;  /* a resize may have moved it */
	g_write_open += m.writes[0];
	g_write_check += m.writes[1];
	free(copy);
	free(img);
	return 0;
}
