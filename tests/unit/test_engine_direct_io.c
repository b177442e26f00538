/*
 * Unit tests for direct I/O in the file vms_io (src/lib/util/io_file.c,
 * VMS_IO_DIRECT) and for pools opened with vms_pool_options.direct_io.
 *
 * A randomized test compares reads and writes of random offsets, lengths
 * and buffer alignments against an in-memory copy of the file; it prints
 * its seed and takes VMS_SEED=n.  Files go to $VMS_DIRECT_DIR, else
 * /var/tmp (tmpfs may lack O_DIRECT); where the file system has no direct
 * I/O the tests are skipped, except under CI=true where that is a failure.
 */
#undef NDEBUG
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmsnap/error.h"
#include "vmsnap/io.h"
#include "vmsnap/pool.h"
#include "test.h"

static char path_buf[512];

static const char *test_dir(void)
{
	const char *d = getenv("VMS_DIRECT_DIR");
	return d && *d ? d : "/var/tmp";
}

static const char *fresh_path(void)
{
	snprintf(path_buf, sizeof(path_buf), "%s/vms-iodirect-XXXXXX", test_dir());
	int fd = mkstemp(path_buf);
	if (fd < 0)
		return NULL;
	close(fd);
	unlink(path_buf);
	return path_buf;
}

/* 1 when direct I/O works in the test directory; prints why when not. */
static int have_direct(void)
{
	static int known = -1;
	if (known >= 0)
		return known;
	const char *p = fresh_path();
	vms_io *io = NULL;
	int rc = p ? vms_io_file_open_flags(&io, p, VMS_IO_CREATE | VMS_IO_DIRECT) : VMS_EIO;
	if (io)
		io->close(io);
	if (p)
		unlink(p);
	known = rc == 0;
	if (!known) {
		const char *ci = getenv("CI");
		fprintf(stderr, "  no direct I/O in %s: %s%s\n", test_dir(), vms_error_last(),
		        ci && strcmp(ci, "true") == 0 ? " (a failure under CI=true)" : "; skipped");
		if (ci && strcmp(ci, "true") == 0)
			test_failures_in_case++;
	}
	return known;
}

/* 1 when the process holds path open with O_DIRECT (from /proc/self/fdinfo). */
static int open_direct(const char *path)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = 0;
	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL && !found) {
		char lnk[600], target[600], info[600];
		snprintf(lnk, sizeof(lnk), "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(lnk, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (strcmp(target, path) != 0)
			continue;
		snprintf(info, sizeof(info), "/proc/self/fdinfo/%s", e->d_name);
		FILE *f = fopen(info, "r");
		if (!f)
			continue;
		char line[200];
		while (fgets(line, sizeof(line), f))
			if (strncmp(line, "flags:", 6) == 0 && (strtoul(line + 6, NULL, 8) & O_DIRECT))
				found = 1;
		fclose(f);
	}
	closedir(d);
	return found;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

TEST(unknown_flags_are_refused)
{
	vms_io *io = (vms_io *)1;
	CHECK(vms_io_file_open_flags(&io, "/nonexistent", 0x100u) == VMS_EINVAL);
	CHECK(io == NULL);
	CHECK(strstr(vms_error_last(), "unknown flags") != NULL);
}

TEST(direct_io_is_really_o_direct)
{
	if (!have_direct())
		return;
	const char *p = fresh_path();
	REQUIRE(p);
	vms_io *io;
	REQUIRE(vms_io_file_open_flags(&io, p, VMS_IO_CREATE | VMS_IO_DIRECT) == 0);
	CHECK(open_direct(p));
	io->close(io);
	REQUIRE(vms_io_file_open_flags(&io, p, 0) == 0);
	CHECK(!open_direct(p)); /* and the buffered open is not */
	io->close(io);
	unlink(p);
}

/* Random reads and writes at any offset, length and buffer address, against
 * a model; then the file read back through a buffered open. */
TEST(unaligned_requests_match_a_model)
{
	if (!have_direct())
		return;
	const char *env = getenv("VMS_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	fprintf(stderr, "  seed %llu (VMS_SEED=%llu to repeat)\n", (unsigned long long)seed,
	        (unsigned long long)seed);
	enum { SIZE = 3 << 20, ROUNDS = 600 };
	unsigned char *model = calloc(1, SIZE), *buf = malloc(SIZE + 64), *got = malloc(SIZE + 64);
	REQUIRE(model && buf && got);
	const char *p = fresh_path();
	REQUIRE(p);
	char path[512];
	snprintf(path, sizeof(path), "%s", p);
	vms_io *io;
	REQUIRE(vms_io_file_open_flags(&io, path, VMS_IO_CREATE | VMS_IO_DIRECT) == 0);
	REQUIRE(io->resize(io, SIZE) == 0);
	uint64_t s = seed;
	int bad = 0;
	for (int r = 0; r < ROUNDS && !bad; r++) {
		/* mostly small requests; some span more than a bounce buffer (1 MiB) */
		uint64_t len = rnd(&s) % 8 == 0 ? rnd(&s) % (SIZE / 2) + 1 : rnd(&s) % 9000 + 1;
		if (rnd(&s) % 3 == 0)
			len = (len + 511) & ~511ull; /* sector-sized lengths, too */
		uint64_t off = rnd(&s) % (SIZE - len + 1);
		if (rnd(&s) % 3 == 0)
			off &= ~511ull;
		size_t shift = (size_t)(rnd(&s) % 64); /* buffer address alignment */
		if (rnd(&s) % 2) {
			for (uint64_t i = 0; i < len; i++)
				buf[shift + i] = (unsigned char)rnd(&s);
			if (io->write(io, buf + shift, len, off) < 0) {
				fprintf(stderr, "  write %llu+%llu: %s\n", (unsigned long long)off,
				        (unsigned long long)len, vms_error_last());
				bad = 1;
			}
			memcpy(model + off, buf + shift, len);
		} else {
			if (io->read(io, got + shift, len, off) < 0) {
				fprintf(stderr, "  read %llu+%llu: %s\n", (unsigned long long)off,
				        (unsigned long long)len, vms_error_last());
				bad = 1;
			} else if (memcmp(got + shift, model + off, len) != 0) {
				fprintf(stderr, "  round %d: read %llu+%llu (buffer +%zu) differs\n", r,
				        (unsigned long long)off, (unsigned long long)len, shift);
				bad = 1;
			}
		}
	}
	CHECK(!bad);
	/* past the end: zeros, aligned or not */
	memset(got, 0xAA, 8192);
	CHECK(io->read(io, got + 1, 5000, SIZE - 1000) == 0);
	CHECK(memcmp(got + 1, model + SIZE - 1000, 1000) == 0);
	int zeros = 1;
	for (int i = 1001; i <= 5000; i++)
		zeros &= got[i] == 0;
	CHECK(zeros);
	CHECK(io->sync(io) == 0);
	io->close(io);
	REQUIRE(vms_io_file_open_flags(&io, path, VMS_IO_READONLY) == 0);
	CHECK(io->read(io, got, SIZE, 0) == 0);
	CHECK(memcmp(got, model, SIZE) == 0);
	io->close(io);
	unlink(path);
	free(model);
	free(buf);
	free(got);
}

/* A pool on direct I/O: sub-block writes from unaligned buffers, a
 * snapshot, a reopen buffered and direct; every byte as written. */
TEST(pool_with_direct_io)
{
	if (!have_direct())
		return;
	const char *p = fresh_path();
	REQUIRE(p);
	char path[512];
	snprintf(path, sizeof(path), "%s", p);
	enum { DISK = 8 << 20 };
	unsigned char *model = calloc(1, DISK), *buf = malloc(70000), *got = malloc(DISK + 1);
	REQUIRE(model && buf && got);
	vms_pool_options o = {0};
	o.direct_io = 1;
	vms_pool *pool;
	REQUIRE(vms_pool_create_file(&pool, path, 64 << 20, &o) == 0);
	CHECK(open_direct(path));
	vms_vol_id vol, snap;
	REQUIRE(vms_vol_create(&vol, pool, DISK) == 0);
	uint64_t s = 7;
	for (int i = 0; i < 300; i++) {
		uint64_t len = (rnd(&s) % 128 + 1) * 512, off = rnd(&s) % (DISK / 512 - len / 512 + 1) * 512;
		size_t shift = (size_t)(rnd(&s) % 16) + 1; /* never aligned */
		memset(buf + shift, (int)(i + 1), len);
		CHECK_OK(vms_vol_write(pool, vol, buf + shift, len, off, 0));
		memcpy(model + off, buf + shift, len);
		if (i == 150)
			CHECK_OK(vms_vol_snapshot(&snap, pool, &vol, 1));
	}
	CHECK_OK(vms_vol_read(pool, vol, got + 1, DISK, 0));
	CHECK(memcmp(got + 1, model, DISK) == 0);
	CHECK_OK(vms_pool_close(pool));
	for (int direct = 0; direct <= 1; direct++) {
		o.direct_io = direct;
		REQUIRE(vms_pool_open_file(&pool, path, &o) == 0);
		CHECK(open_direct(path) == direct);
		memset(got, 0, DISK + 1);
		CHECK_OK(vms_vol_read(pool, vol, got + 1, DISK, 0));
		CHECK(memcmp(got + 1, model, DISK) == 0);
		vms_check_report rep;
		memset(&rep, 0, sizeof(rep));
		CHECK_OK(vms_pool_check(&rep, pool, 0));
		CHECK(rep.corrupt == 0 && rep.leaked_blocks == 0);
		CHECK_OK(vms_pool_close(pool));
	}
	unlink(path);
	free(model);
	free(buf);
	free(got);
}

TEST_MAIN()
