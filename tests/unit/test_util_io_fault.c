/* Unit tests for the fault-injecting I/O shim (src/lib/util/io_fault.c). */
#undef NDEBUG
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmsnap/error.h"
#include "vmsnap/io.h"
#include "vmsnap/io_fault.h"
#include "test.h"

#define FILE_SIZE (64 * 1024)

static char path_buf[64];

/* A fresh file of FILE_SIZE bytes of 0xEE, wrapped by a controller. */
static vms_io_fault *fresh(int track, uint64_t seed)
{
	snprintf(path_buf, sizeof(path_buf), "/tmp/vms-iofault-XXXXXX");
	int fd = mkstemp(path_buf);
	if (fd < 0)
		return NULL;
	close(fd);
	unlink(path_buf);
	vms_io *io;
	if (vms_io_file_open(&io, path_buf, 1, 0) < 0)
		return NULL;
	unsigned char *fill = malloc(FILE_SIZE);
	memset(fill, 0xEE, FILE_SIZE);
	int rc = io->write(io, fill, FILE_SIZE, 0);
	free(fill);
	if (rc < 0 || io->sync(io) < 0)
		return NULL;
	vms_io_fault *f;
	if (vms_io_fault_new(&f, io, track, seed) < 0)
		return NULL;
	return f;
}

/* Read the file as a power loss left it, with a new io, and release it. */
static void read_back(unsigned char *buf, size_t len, uint64_t off)
{
	vms_io *io;
	memset(buf, 0x55, len);
	if (vms_io_file_open(&io, path_buf, 0, 1) < 0)
		return;
	io->read(io, buf, len, off);
	io->close(io);
}

static void finish(vms_io_fault *f)
{
	vms_io_fault_free(f);
	unlink(path_buf);
}

static int all_bytes(const unsigned char *p, size_t len, unsigned char v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

static int write_pattern(vms_io *io, unsigned char v, size_t len, uint64_t off)
{
	unsigned char *b = malloc(len);
	memset(b, v, len);
	int rc = io->write(io, b, len, off);
	free(b);
	return rc;
}

TEST(reads_see_unsynced_writes_and_sync_makes_them_durable)
{
	vms_io_fault *f = fresh(1, 1);
	REQUIRE(f);
	vms_io *io = vms_io_fault_io(f);
	unsigned char buf[4096];
	CHECK_OK(write_pattern(io, 1, 4096, 4096));
	CHECK_OK(write_pattern(io, 2, 1024, 5120)); /* overlaps the first */
	CHECK_OK(io->read(io, buf, 4096, 4096));
	CHECK(all_bytes(buf, 1024, 1) && all_bytes(buf + 1024, 1024, 2) && all_bytes(buf + 2048, 2048, 1));
	read_back(buf, 4096, 4096);
	CHECK(all_bytes(buf, 4096, 0xEE)); /* nothing below yet */
	vms_io_fault_stats st;
	vms_io_fault_stats_get(&st, f);
	CHECK(st.pending == 2 && st.pending_bytes == 5120 && st.writes == 2 && st.reads == 1);
	CHECK_OK(io->sync(io));
	read_back(buf, 4096, 4096);
	CHECK(all_bytes(buf, 1024, 1) && all_bytes(buf + 1024, 1024, 2));
	vms_io_fault_stats_get(&st, f);
	CHECK(st.pending == 0 && st.syncs == 1);
	/* a write past the end grows size() before the sync */
	uint64_t sz;
	CHECK_OK(write_pattern(io, 3, 512, FILE_SIZE + 512));
	CHECK_OK(io->size(io, &sz));
	CHECK(sz == FILE_SIZE + 1024);
	io->close(io); /* the engine's close: the controller stays */
	vms_io_fault_stats_get(&st, f);
	CHECK(st.closed == 1);
	finish(f); /* applies the log: the process exits, the page cache stays */
}

TEST(nth_and_repeat_failures)
{
	vms_io_fault *f = fresh(0, 2);
	REQUIRE(f);
	vms_io *io = vms_io_fault_io(f);
	unsigned char buf[512];
	vms_fault_rule r = {.ops = VMS_FAULT_WRITE, .nth = 3, .error = VMS_ENOSPC};
	CHECK(vms_io_fault_add(f, &r) >= 0);
	CHECK_OK(write_pattern(io, 1, 512, 0));
	CHECK_OK(io->read(io, buf, 512, 0)); /* reads do not count for a write rule */
	CHECK_OK(write_pattern(io, 1, 512, 512));
	CHECK(write_pattern(io, 9, 512, 1024) == VMS_ENOSPC);
	CHECK(vms_error_last_code() == VMS_ENOSPC);
	CHECK_OK(write_pattern(io, 1, 512, 1536)); /* only the 3rd */
	CHECK_OK(io->read(io, buf, 512, 1024));
	CHECK(all_bytes(buf, 512, 0xEE)); /* the failed write changed nothing */
	vms_io_fault_clear(f);
	r = (vms_fault_rule){.ops = VMS_FAULT_SYNC | VMS_FAULT_READ, .nth = 2, .repeat = 1};
	CHECK(vms_io_fault_add(f, &r) >= 0);
	CHECK_OK(io->sync(io));
	CHECK(io->read(io, buf, 512, 0) == VMS_EIO);
	CHECK(io->sync(io) == VMS_EIO);
	CHECK(io->read(io, buf, 512, 0) == VMS_EIO);
	CHECK_OK(write_pattern(io, 1, 512, 0));
	vms_io_fault_stats st;
	vms_io_fault_stats_get(&st, f);
	CHECK(st.failed == 4 && st.writes == 5 && st.syncs == 2 && st.reads == 4);
	/* bad rules are refused */
	r = (vms_fault_rule){.ops = 0, .nth = 1};
	CHECK(vms_io_fault_add(f, &r) == VMS_EINVAL);
	r = (vms_fault_rule){.ops = VMS_FAULT_READ, .probability = 2};
	CHECK(vms_io_fault_add(f, &r) == VMS_EINVAL);
	r = (vms_fault_rule){.ops = VMS_FAULT_READ, .nth = 1, .error = VMS_EINVAL};
	CHECK(vms_io_fault_add(f, &r) == VMS_EINVAL);
	finish(f);
}

/* Probability rules are reproducible from the seed and near p. */
static int count_failures(uint64_t seed, double p, int n)
{
	vms_io_fault *f = fresh(0, seed);
	if (!f)
		return -1;
	vms_io *io = vms_io_fault_io(f);
	vms_fault_rule r = {.ops = VMS_FAULT_READ, .probability = p};
	vms_io_fault_add(f, &r);
	unsigned char buf[512];
	int failed = 0;
	for (int i = 0; i < n; i++)
		failed += io->read(io, buf, 512, 0) < 0;
	finish(f);
	return failed;
}

TEST(probability_is_seeded)
{
	int a = count_failures(42, 0.1, 2000), b = count_failures(42, 0.1, 2000);
	int c = count_failures(43, 0.1, 2000);
	CHECK(a == b);
	CHECK(a > 120 && a < 280);
	CHECK(c > 120 && c < 280);
	CHECK(count_failures(7, 0, 500) == 0);
	CHECK(count_failures(7, 1, 500) == 500);
}

/* Write sectors 0..n-1 with values 1..n (one write each), then cut. */
static vms_io_fault *cut_after_writes(vms_fault_cut mode, uint64_t seed, int n,
                                      unsigned char *out)
{
	vms_io_fault *f = fresh(1, seed);
	if (!f)
		return NULL;
	vms_io *io = vms_io_fault_io(f);
	for (int i = 0; i < n; i++)
		write_pattern(io, (unsigned char)(i + 1), 512, (uint64_t)i * 512);
	vms_io_fault_cut(f, mode);
	read_back(out, (size_t)n * 512, 0);
	return f;
}

TEST(cut_modes_keep_what_a_disk_could)
{
	enum { N = 16 };
	unsigned char buf[N * 512];
	int saw_reorder = 0, saw_partial_prefix = 0;
	for (uint64_t seed = 1; seed <= 40; seed++) {
		for (int m = 0; m < VMS_CUT_MODES; m++) {
			vms_io_fault *f = cut_after_writes((vms_fault_cut)m, seed, N, buf);
			REQUIRE(f);
			int kept[N], nkept = 0, first_lost = -1, kept_after_lost = 0;
			for (int i = 0; i < N; i++) {
				int k = all_bytes(buf + i * 512, 512, (unsigned char)(i + 1));
				CHECK(k || all_bytes(buf + i * 512, 512, 0xEE)); /* whole sectors */
				kept[i] = k;
				nkept += k;
				if (!k && first_lost < 0)
					first_lost = i;
				if (k && first_lost >= 0)
					kept_after_lost = 1;
			}
			vms_io_fault_stats st;
			vms_io_fault_stats_get(&st, f);
			CHECK(st.dead && st.pending == 0 && st.cuts == 1);
			CHECK((int)st.cut_kept == nkept);
			switch (m) {
			case VMS_CUT_DROP_ALL: CHECK(nkept == 0); break;
			case VMS_CUT_KEEP_ALL: CHECK(nkept == N); break;
			case VMS_CUT_PREFIX:
			case VMS_CUT_TORN: /* 512-byte writes cannot tear */
				CHECK(!kept_after_lost);
				saw_partial_prefix |= nkept > 0 && nkept < N;
				break;
			case VMS_CUT_REORDER:
				CHECK(kept[N - 1] && first_lost >= 0 && kept_after_lost);
				saw_reorder = 1;
				break;
			case VMS_CUT_RANDOM:
				saw_reorder |= kept_after_lost;
				break;
			}
			/* the dead device refuses everything and changes nothing */
			vms_io *io = vms_io_fault_io(f);
			CHECK(write_pattern(io, 0x77, 512, 0) == VMS_EIO);
			CHECK(io->sync(io) == VMS_EIO);
			CHECK(io->read(io, buf, 512, 0) == VMS_EIO);
			finish(f);
		}
	}
	CHECK(saw_reorder && saw_partial_prefix);
}

TEST(torn_write_falls_on_sector_boundaries)
{
	int saw_head = 0, saw_tail = 0;
	unsigned char buf[8192];
	for (uint64_t seed = 1; seed <= 60; seed++) {
		vms_io_fault *f = fresh(1, seed);
		REQUIRE(f);
		vms_io *io = vms_io_fault_io(f);
		CHECK_OK(write_pattern(io, 0xA1, 8192, 8192)); /* the only write: k = 0, torn */
		CHECK_OK(vms_io_fault_cut(f, VMS_CUT_TORN));
		vms_io_fault_stats st;
		vms_io_fault_stats_get(&st, f);
		CHECK(st.cut_torn == 1);
		read_back(buf, 8192, 8192);
		int nsec = 0, first_new = -1, last_new = -1;
		for (int s = 0; s < 16; s++) {
			int is_new = all_bytes(buf + s * 512, 512, 0xA1);
			CHECK(is_new || all_bytes(buf + s * 512, 512, 0xEE));
			if (is_new) {
				nsec++;
				if (first_new < 0)
					first_new = s;
				last_new = s;
			}
		}
		CHECK(nsec >= 1 && nsec <= 15);
		CHECK(last_new - first_new + 1 == nsec); /* contiguous */
		CHECK(first_new == 0 || last_new == 15);
		saw_head |= first_new == 0;
		saw_tail |= last_new == 15 && first_new > 0;
		finish(f);
	}
	CHECK(saw_head && saw_tail);
}

TEST(cut_rule_on_nth_sync_and_revive)
{
	vms_io_fault *f = fresh(1, 5);
	REQUIRE(f);
	vms_io *io = vms_io_fault_io(f);
	unsigned char buf[1024];
	vms_fault_rule r = {.ops = VMS_FAULT_SYNC, .nth = 2, .action = VMS_FAULT_CUT,
	                    .cut = VMS_CUT_DROP_ALL};
	CHECK(vms_io_fault_add(f, &r) >= 0);
	CHECK_OK(write_pattern(io, 1, 512, 0));
	CHECK_OK(io->sync(io));              /* durable */
	CHECK_OK(write_pattern(io, 2, 512, 512));
	CHECK(io->sync(io) == VMS_EIO);      /* the cut: the second write is lost */
	read_back(buf, 1024, 0);
	CHECK(all_bytes(buf, 512, 1) && all_bytes(buf + 512, 512, 0xEE));
	vms_io_fault_revive(f);
	vms_io_fault_stats st;
	vms_io_fault_stats_get(&st, f);
	CHECK(!st.dead && st.cuts == 1 && st.syncs == 2);
	CHECK_OK(io->read(io, buf, 1024, 0));
	CHECK(all_bytes(buf, 512, 1) && all_bytes(buf + 512, 512, 0xEE));
	CHECK_OK(write_pattern(io, 3, 512, 512));
	CHECK_OK(io->sync(io));              /* the rule is gone after revive */
	/* a cut at the nth write: that write and the unsynced ones before it vanish */
	r = (vms_fault_rule){.ops = VMS_FAULT_WRITE, .nth = 2, .action = VMS_FAULT_CUT,
	                     .cut = VMS_CUT_KEEP_ALL};
	CHECK(vms_io_fault_add(f, &r) >= 0);
	CHECK_OK(write_pattern(io, 4, 512, 0));
	CHECK(write_pattern(io, 5, 512, 512) == VMS_EIO);
	read_back(buf, 1024, 0);
	CHECK(all_bytes(buf, 512, 4) && all_bytes(buf + 512, 512, 3)); /* keep-all: 1st survives */
	finish(f);
}

TEST(failed_sync_keeps_the_log)
{
	vms_io_fault *f = fresh(1, 9);
	REQUIRE(f);
	vms_io *io = vms_io_fault_io(f);
	unsigned char buf[512];
	vms_fault_rule r = {.ops = VMS_FAULT_SYNC, .nth = 1};
	CHECK(vms_io_fault_add(f, &r) >= 0);
	CHECK_OK(write_pattern(io, 6, 512, 0));
	CHECK(io->sync(io) == VMS_EIO);
	read_back(buf, 512, 0);
	CHECK(all_bytes(buf, 512, 0xEE));
	CHECK_OK(io->read(io, buf, 512, 0));
	CHECK(all_bytes(buf, 512, 6));
	CHECK_OK(io->sync(io));
	read_back(buf, 512, 0);
	CHECK(all_bytes(buf, 512, 6));
	finish(f);
}

TEST_MAIN()
