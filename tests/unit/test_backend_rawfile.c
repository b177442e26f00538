/*
 * test_backend_rawfile.c - the raw-file helpers shared by the zfs and
 * reflink backends: key and ref validation (traversal, empty, too long,
 * slashes), disk I/O bounds, read-only handles, trim/zero, block status,
 * crash-safe create/copy/reflink, resize, FIEMAP accounting.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmsnap/error.h"
#include "backend/rawfile_private.h"
#include "test.h"

static char g_dir[256];

static const char *tdir(void)
{
	if (!g_dir[0]) {
		snprintf(g_dir, sizeof(g_dir), "%s/vms-rawfile-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(g_dir))
			abort();
	}
	return g_dir;
}

static char *tpath(const char *name)
{
	static char buf[8][512];
	static int i;
	char *p = buf[i++ % 8];
	snprintf(p, 512, "%s/%s", tdir(), name);
	return p;
}

TEST(keys)
{
	char k64[65], k65[66];
	memset(k64, 'a', 64);
	k64[64] = 0;
	memset(k65, 'b', 65);
	k65[65] = 0;
	CHECK(vms_raw__check_key("k", "3f2a7c1e-0b1d-4e5f-9a8b-7c6d5e4f3a2b") == 0);
	CHECK(vms_raw__check_key("k", "vm_1-A") == 0);
	CHECK(vms_raw__check_key("k", k64) == 0);
	CHECK(vms_raw__check_key("k", k65) == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "longer than 64") != NULL);
	static const char *bad[] = {"", "..", ".", "../x", "a/b", "/", "-lead", "_lead", "a b", "a.b", "a@b",
	                            "a\\b", "a\nb", "é"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(vms_raw__check_key("disk key", bad[i]) == VMS_EINVAL);
	CHECK(vms_raw__check_key("disk key", NULL) == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "disk key") != NULL);
}

TEST(refs)
{
	char vm[VMS_KEY_MAX], snap[VMS_KEY_MAX], disk[VMS_KEY_MAX], *ref = NULL;
	vms_raw_ref r;

	CHECK_OK(vms_raw__parse_ref("vm1/d1", vm, snap, disk));
	CHECK(!strcmp(vm, "vm1") && !snap[0] && !strcmp(disk, "d1"));
	CHECK_OK(vms_raw__parse_ref("vm1@s1/d1", vm, snap, disk));
	CHECK(!strcmp(vm, "vm1") && !strcmp(snap, "s1") && !strcmp(disk, "d1"));

	char longref[200];
	memset(longref, 'a', 70);
	strcpy(longref + 70, "/d");
	static const char *bad[] = {"", "../x", "vm/../d", "vm/..", "../../etc/passwd", "vm", "vm/", "/d",
	                            "vm//d", "vm/a/b", "vm@/d", "@s/d", "vm@s/", "vm@s@t/d", "vm/d@s", ".x/d",
	                            "vm/.d", "vm/d.raw", "v m/d", NULL};
	for (size_t i = 0; bad[i]; i++) {
		CHECK(vms_raw__parse_ref(bad[i], vm, snap, disk) == VMS_EINVAL);
		CHECK(strstr(vms_error_last(), "ref") != NULL);
	}
	CHECK(vms_raw__parse_ref(longref, vm, snap, disk) == VMS_EINVAL);
	CHECK(vms_raw__parse_ref(NULL, vm, snap, disk) == VMS_EINVAL);

	CHECK_OK(vms_raw__make_ref(&ref, "vm1", NULL, "d1"));
	CHECK(ref && !strcmp(ref, "vm1/d1"));
	free(ref);
	CHECK_OK(vms_raw__make_ref(&ref, "vm1", "s1", "d1"));
	CHECK(ref && !strcmp(ref, "vm1@s1/d1"));
	free(ref);
	CHECK_OK(vms_raw__make_ref(&ref, "vm1", "", "d1"));
	CHECK(ref && !strcmp(ref, "vm1/d1"));
	free(ref);
	CHECK(vms_raw__make_ref(&ref, "..", NULL, "d1") == VMS_EINVAL && ref == NULL);
	CHECK(vms_raw__make_ref(&ref, "vm", "s/x", "d1") == VMS_EINVAL && ref == NULL);
	CHECK(vms_raw__make_ref(&ref, "vm", NULL, "") == VMS_EINVAL && ref == NULL);

	CHECK_OK(vms_raw__ref(&r, "a@b/c", 1));
	CHECK(vms_raw__ref(&r, "a@b/c", 0) == VMS_EINVAL);
	CHECK(vms_raw__ref(&r, "a/c", 1) == VMS_EINVAL);
	CHECK_OK(vms_raw__ref(&r, "a/c", -1));
	const char *refs[] = {"vm1/a", "vm1/b", "vm2/c"};
	CHECK_OK(vms_raw__check_refs("vm1", refs, 2, 0));
	CHECK(vms_raw__check_refs("vm1", refs, 3, 0) == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "vm2/c") != NULL);
	CHECK_OK(vms_raw__check_refs(NULL, refs, 3, 0));
	CHECK(vms_raw__check_refs(NULL, NULL, 1, 0) == VMS_EINVAL);
}

TEST(join)
{
	char *p = NULL, big[5000];
	CHECK_OK(vms_raw__join(&p, "/a", "b"));
	CHECK(p && !strcmp(p, "/a/b"));
	free(p);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	CHECK(vms_raw__join(&p, "/a", big) == VMS_EINVAL && p == NULL);
}

TEST(io_bounds_and_readonly)
{
	const char *path = tpath("io.raw");
	vms_disk *d = NULL, *ro = NULL;
	char buf[8192], z[8192] = {0};

	unlink(path);
	CHECK_OK(vms_raw__create_file(path, 1 << 20));
	CHECK(vms_raw__create_file(path, 1 << 20) == VMS_EEXISTS);
	REQUIRE(vms_raw__open(&d, path, 0) == 0);
	CHECK(vms_raw__size(d) == 1 << 20);
	memset(buf, 0xab, sizeof(buf));
	CHECK_OK(vms_raw__write(d, buf, sizeof(buf), 4096, 1));
	CHECK_OK(vms_raw__read(d, z, sizeof(z), 4096));
	CHECK(memcmp(buf, z, sizeof(buf)) == 0);
	CHECK(vms_raw__write(d, buf, 2, (1 << 20) - 1, 0) == VMS_EINVAL);
	CHECK(vms_raw__read(d, buf, 1, 1 << 20) == VMS_EINVAL);
	CHECK(vms_raw__read(d, buf, 1, UINT64_MAX) == VMS_EINVAL);
	CHECK(vms_raw__write(d, buf, sizeof(buf), UINT64_MAX - 10, 0) == VMS_EINVAL);
	CHECK(vms_raw__trim(d, 4096, (1 << 20) - 100) == VMS_EINVAL);
	CHECK_OK(vms_raw__read(d, buf, 0, 1 << 20));      /* empty read at the end */
	REQUIRE(vms_raw__open(&ro, path, VMS_DISK_READONLY) == 0);
	CHECK(vms_raw__write(ro, buf, 1, 0, 0) == VMS_EROFS);
	CHECK(vms_raw__trim(ro, 4096, 0) == VMS_EROFS);
	CHECK(vms_raw__zero(ro, 4096, 0, 0) == VMS_EROFS);
	/* the file shrinks under the handle: reads inside the old size give zeros */
	CHECK(truncate(path, 4096) == 0);
	memset(buf, 1, sizeof(buf));
	CHECK_OK(vms_raw__read(ro, buf, 4096, 8192));
	CHECK(memcmp(buf, (char[4096]){0}, 4096) == 0);
	vms_raw__close(ro);
	vms_raw__close(d);
	vms_raw__close(NULL);
	CHECK(vms_raw__open(&d, tpath("missing.raw"), 0) == VMS_ENOTFOUND && d == NULL);
	CHECK(vms_raw__open(&d, tdir(), VMS_DISK_READONLY) < 0 && d == NULL);
	unlink(path);
}

typedef struct bs {
	uint64_t next, alloc, holes;
	int gaps, calls, stop_after;
} bs;

static int bs_cb(void *ctx, uint64_t off, uint64_t len, int allocated)
{
	bs *b = ctx;
	if (off != b->next || !len)
		b->gaps++;
	b->next = off + len;
	if (allocated)
		b->alloc += len;
	else
		b->holes += len;
	b->calls++;
	if (b->stop_after && b->calls >= b->stop_after)
		return 1;
	return 0;
}

static int bs_fail(void *ctx, uint64_t off, uint64_t len, int allocated)
{
	(void)ctx; (void)off; (void)len; (void)allocated;
	return vms_error_set(VMS_EIO, "callback failed");
}

TEST(trim_zero_block_status)
{
	const char *path = tpath("bs.raw");
	vms_disk *d = NULL;
	char buf[65536];
	bs b = {0};

	unlink(path);
	REQUIRE(vms_raw__create_file(path, 4 << 20) == 0);
	REQUIRE(vms_raw__open(&d, path, 0) == 0);
	memset(buf, 0x11, sizeof(buf));
	for (int i = 0; i < 8; i++)
		CHECK_OK(vms_raw__write(d, buf, sizeof(buf), (1 << 20) + (uint64_t)i * sizeof(buf), 0));
	CHECK_OK(vms_raw__flush(d));
	CHECK_OK(vms_raw__block_status(d, 0, 4 << 20, bs_cb, &b));
	CHECK(b.gaps == 0 && b.next == 4 << 20);
	CHECK(b.alloc >= 8 * sizeof(buf));
	CHECK(b.holes > 0);            /* SEEK_HOLE works on the test filesystem */
	/* a sub-range */
	memset(&b, 0, sizeof(b));
	b.next = 1 << 20;
	CHECK_OK(vms_raw__block_status(d, 1 << 20, 65536, bs_cb, &b));
	CHECK(b.gaps == 0 && b.next == (1 << 20) + 65536 && b.alloc == 65536);
	/* the callback stops early (positive) or fails (negative) */
	memset(&b, 0, sizeof(b));
	b.stop_after = 1;
	CHECK_OK(vms_raw__block_status(d, 0, 4 << 20, bs_cb, &b));
	CHECK(b.calls == 1);
	CHECK(vms_raw__block_status(d, 0, 4 << 20, bs_fail, NULL) == VMS_EIO);
	CHECK(vms_raw__block_status(d, 0, (4 << 20) + 1, bs_cb, &b) == VMS_EINVAL);

	CHECK_OK(vms_raw__trim(d, 2 * 65536, 1 << 20));
	CHECK_OK(vms_raw__zero(d, 65536, (1 << 20) + 3 * 65536, 1));
	CHECK_OK(vms_raw__zero(d, 100, (1 << 20) + 5 * 65536 + 7, 0));   /* unaligned */
	CHECK_OK(vms_raw__trim(d, 0, 0));
	memset(buf, 0x55, sizeof(buf));
	CHECK_OK(vms_raw__read(d, buf, sizeof(buf), 1 << 20));
	CHECK(memcmp(buf, (char[65536]){0}, sizeof(buf)) == 0);
	CHECK_OK(vms_raw__read(d, buf, sizeof(buf), (1 << 20) + 3 * 65536));
	CHECK(memcmp(buf, (char[65536]){0}, sizeof(buf)) == 0);
	CHECK_OK(vms_raw__read(d, buf, 200, (1 << 20) + 5 * 65536));
	CHECK(buf[6] == 0x11 && buf[7] == 0 && buf[106] == 0 && buf[107] == 0x11);
	memset(&b, 0, sizeof(b));
	b.next = 1 << 20;
	CHECK_OK(vms_raw__block_status(d, 1 << 20, 2 * 65536, bs_cb, &b));
	CHECK(b.holes == 2 * 65536);   /* the trimmed range is a hole again */
	vms_raw__close(d);
	unlink(path);
}

TEST(resize)
{
	const char *path = tpath("rs.raw");
	struct stat st;

	unlink(path);
	REQUIRE(vms_raw__create_file(path, 1 << 20) == 0);
	CHECK_OK(vms_raw__resize_file(path, 3 << 20));
	CHECK(stat(path, &st) == 0 && st.st_size == 3 << 20);
	CHECK_OK(vms_raw__resize_file(path, 1 << 19));
	CHECK(stat(path, &st) == 0 && st.st_size == 1 << 19);
	CHECK(vms_raw__resize_file(path, UINT64_MAX) == VMS_EINVAL);
	CHECK(vms_raw__resize_file(tpath("nope.raw"), 1) == VMS_ENOTFOUND);
	CHECK(vms_raw__create_file(tpath("huge.raw"), UINT64_MAX) == VMS_EINVAL);
	unlink(path);
}

static void fill_file(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char buf[65536];
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		abort();
	for (int i = 0; i < 4; i++) {
		memset(buf, 'a' + i, sizeof(buf));
		if (pwrite(fd, buf, sizeof(buf), (off_t)(i * (size / 4))) != (ssize_t)sizeof(buf))
			abort();
	}
	close(fd);
}

static int same_content(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	int same = fa && fb, ca, cb;
	while (same) {
		ca = fgetc(fa);
		cb = fgetc(fb);
		if (ca != cb)
			same = 0;
		if (ca == EOF || cb == EOF)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return same;
}

TEST(copy_and_reflink)
{
	const char *src = tpath("src.raw"), *dst = tpath("dst.raw"), *rl = tpath("rl.raw");
	char tmp[600];
	struct stat st;
	uint64_t alloc = 0, unshared = 0;
	int rc;

	unlink(dst);
	unlink(rl);
	fill_file(src, 8 << 20);
	/* a stale temp file from a crash does not get in the way */
	snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
	fill_file(tmp, 4096);
	CHECK_OK(vms_raw__copy_file(dst, src, 1));
	CHECK(same_content(src, dst));
	CHECK(access(tmp, F_OK) != 0);
	CHECK(stat(dst, &st) == 0 && st.st_size == 8 << 20 && (uint64_t)st.st_blocks * 512 < (2u << 20));
	CHECK(vms_raw__copy_file(dst, src, 1) == VMS_EEXISTS);
	fill_file(src, 1 << 20);
	CHECK_OK(vms_raw__copy_file(dst, src, 0));        /* replace */
	CHECK(same_content(src, dst));
	CHECK(vms_raw__copy_file(dst, tpath("none.raw"), 0) == VMS_ENOTFOUND);
	CHECK(same_content(src, dst));                    /* a failed copy changes nothing */

	CHECK_OK(vms_raw__allocated(&alloc, dst));
	CHECK(alloc >= 4 * 65536);
	rc = vms_raw__unshared(&unshared, dst);
	CHECK(rc == 0 || rc == VMS_ENOTSUP);
	if (rc == 0)
		CHECK(unshared == alloc);

	rc = vms_raw__reflink_file(rl, src, 1);
	if (rc == VMS_ENOTSUP) {
		CHECK(strstr(vms_error_last(), "reflink") != NULL);
		CHECK(access(rl, F_OK) != 0);
		snprintf(tmp, sizeof(tmp), "%s.tmp", rl);
		CHECK(access(tmp, F_OK) != 0);
	} else {
		CHECK(rc == 0);
		CHECK(same_content(src, rl));
		CHECK(vms_raw__reflink_file(rl, src, 1) == VMS_EEXISTS);
		if (vms_raw__unshared(&unshared, rl) == 0)
			CHECK(unshared == 0);                   /* every extent is shared */
		uint64_t w = 1;
		CHECK_OK(vms_raw__written(&w, rl, src));
		CHECK(w == 0);                                  /* nothing written since the clone */
		int fd = open(rl, O_WRONLY);
		char blk[8192];
		memset(blk, 0x77, sizeof(blk));
		CHECK(fd >= 0 && pwrite(fd, blk, sizeof(blk), 4096) == (ssize_t)sizeof(blk));
		if (fd >= 0)
			close(fd);
		CHECK_OK(vms_raw__written(&w, rl, src));
		CHECK(w == sizeof(blk));
		CHECK_OK(vms_raw__written(&w, src, rl));
		CHECK(w == sizeof(blk));                        /* symmetric: the old blocks differ too */
	}
	if (rc == 0 || rc == VMS_ENOTSUP) {
		uint64_t w = 0;
		int wrc = vms_raw__written(&w, dst, NULL);
		CHECK(wrc == 0 || wrc == VMS_ENOTSUP);
		if (wrc == 0)
			CHECK(w == alloc);                      /* no previous: everything allocated */
		if (wrc == 0 && vms_raw__written(&w, dst, src) == 0)
			CHECK(w == alloc);                      /* a plain copy shares nothing */
	}
	CHECK_OK(vms_raw__fsync_parent(dst));
	CHECK_OK(vms_raw__fsync_dir(tdir()));
	CHECK(vms_raw__fsync_dir(tpath("nodir")) == VMS_ENOTFOUND);
	unlink(src);
	unlink(dst);
	unlink(rl);
	rmdir(tdir());
}

TEST_MAIN()
