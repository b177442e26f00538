/*
 * Unit tests of the native pool engine (include/vmsnap/pool.h): every
 * function, crash recovery by copying the pool file before a commit,
 * damaged pool files, full pools, checks and repairs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine_private.h"
#include "test.h"
#include "vmsnap/error.h"
#include "vmsnap/pool.h"

#define MiB (1ull << 20)

static char tmpdir[256];

static const char *path_of(const char *name)
{
	static char buf[4][512];
	static int k;
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/vms-engine-XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

static vms_pool_options quiet_opts(void)
{
	vms_pool_options o = {0};
	o.commit_interval_ms = UINT32_MAX; /* commits only when the test asks */
	return o;
}

static vms_pool *new_pool(const char *name, uint64_t size, const vms_pool_options *o)
{
	vms_pool *p = NULL;
	unlink(path_of(name));
	int rc = vms_pool_create_file(&p, path_of(name), size, o);
	if (rc < 0)
		fprintf(stderr, "  create %s: %s\n", name, vms_error_last());
	return p;
}

static vms_pool *reopen(const char *name, const vms_pool_options *o)
{
	vms_pool *p = NULL;
	if (vms_pool_open_file(&p, path_of(name), o) < 0)
		fprintf(stderr, "  open %s: %s\n", name, vms_error_last());
	return p;
}

static void fill(uint8_t *b, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (uint8_t)x;
	}
}

static int read_equals(vms_pool *p, vms_vol_id v, const uint8_t *want, size_t len, uint64_t off)
{
	uint8_t *got = malloc(len);
	int rc = vms_vol_read(p, v, got, len, off);
	int ok = rc == 0 && memcmp(got, want, len) == 0;
	if (rc < 0)
		fprintf(stderr, "  read: %s\n", vms_error_last());
	free(got);
	return ok;
}

static int is_zero(vms_pool *p, vms_vol_id v, size_t len, uint64_t off)
{
	uint8_t *z = calloc(1, len);
	int ok = read_equals(p, v, z, len, off);
	free(z);
	return ok;
}

static int check_clean(vms_pool *p)
{
	vms_check_report r;
	int rc = vms_pool_check(&r, p, VMS_CHECK_DATA);
	if (rc < 0 || r.corrupt || r.leaked_blocks)
		fprintf(stderr, "  check: rc %d corrupt %llu leaked %llu: %s / %s\n", rc,
		        (unsigned long long)r.corrupt, (unsigned long long)r.leaked_blocks,
		        r.first_error, vms_error_last());
	return rc == 0 && r.corrupt == 0 && r.leaked_blocks == 0;
}

/* Reopen pool `name`: volume v reads `want` and the check is clean. */
static int reopen_reads(const char *name, const vms_pool_options *o, vms_vol_id v,
                        const uint8_t *want, size_t len)
{
	vms_pool *p = reopen(name, o);
	if (!p)
		return 0;
	int ok = read_equals(p, v, want, len, 0) && check_clean(p);
	return vms_pool_close(p) == 0 && ok;
}

static uint64_t free_blocks(vms_pool *p)
{
	vms_pool_stats st;
	vms_pool_stats_get(&st, p);
	return st.free_blocks;
}

static int copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char buf[65536];
	ssize_t n;
	int ok = in >= 0 && out >= 0;
	while (ok && (n = read(in, buf, sizeof(buf))) > 0)
		ok = write(out, buf, (size_t)n) == n;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return ok ? 0 : -1;
}

static void poke(const char *path, uint64_t off, const void *bytes, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT, 0600);
	if (fd < 0 || pwrite(fd, bytes, len, (off_t)off) != (ssize_t)len)
		abort();
	close(fd);
}

/* ---- tests ------------------------------------------------------------------- */

TEST(create_write_reopen)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("a.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v;
	CHECK_OK(vms_vol_create(&v, p, 32 * MiB));
	uint8_t *buf = malloc(1 * MiB);
	fill(buf, 1 * MiB, 1);
	CHECK_OK(vms_vol_write(p, v, buf, 1 * MiB, 4 * MiB, 0));
	CHECK_OK(vms_vol_write(p, v, buf, 8192, 31 * MiB, 0));
	CHECK(read_equals(p, v, buf, 1 * MiB, 4 * MiB));
	CHECK(is_zero(p, v, 4 * MiB, 0));
	vms_vol_info info;
	CHECK_OK(vms_vol_info_get(&info, p, v));
	CHECK(info.kind == VMS_VOL_VOLUME && info.size == 32 * MiB);
	CHECK(info.referenced == 1 * MiB + 8192);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));

	p = reopen("a.pool", &o);
	REQUIRE(p);
	CHECK(read_equals(p, v, buf, 1 * MiB, 4 * MiB));
	CHECK(read_equals(p, v, buf, 8192, 31 * MiB));
	CHECK(is_zero(p, v, 1 * MiB, 20 * MiB));
	CHECK_OK(vms_vol_info_get(&info, p, v));
	CHECK(info.referenced == 1 * MiB + 8192);
	vms_vol_id ids[4];
	CHECK(vms_vol_list(ids, 4, p) == 1 && ids[0] == v);
	/* bounds and alignment */
	CHECK(vms_vol_read(p, v, buf, 512, 32 * MiB) == VMS_EINVAL);
	CHECK(vms_vol_read(p, v, buf, 100, 0) == VMS_EINVAL);
	CHECK(vms_vol_write(p, v + 100, buf, 512, 0, 0) == VMS_ENOTFOUND);
	CHECK(vms_vol_create(&v, p, 0) == VMS_EINVAL);
	CHECK(vms_vol_create(&v, p, VMS_MAX_VOLUME_SIZE + 512) == VMS_EINVAL);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	free(buf);
}

TEST(snapshot_frozen)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("s.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s, s2;
	uint8_t a[65536], b[65536];
	fill(a, sizeof(a), 2);
	fill(b, sizeof(b), 3);
	CHECK_OK(vms_vol_create(&v, p, 16 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 0, 0));
	CHECK_OK(vms_vol_snapshot(&s, p, &v, 1)); /* snapshot of uncommitted (dirty) tree */
	CHECK_OK(vms_vol_write(p, v, b, sizeof(b), 0, 0));
	CHECK(read_equals(p, s, a, sizeof(a), 0));
	CHECK(read_equals(p, v, b, sizeof(b), 0));
	CHECK(vms_vol_write(p, s, b, 512, 0, 0) == VMS_EROFS);
	CHECK_OK(vms_pool_commit(p));
	CHECK_OK(vms_vol_snapshot(&s2, p, &v, 1)); /* snapshot of a committed tree */
	CHECK_OK(vms_vol_write(p, v, a, 4096, 4096, 0));
	CHECK(read_equals(p, s2, b, sizeof(b), 0));
	CHECK(read_equals(p, s, a, sizeof(a), 0));
	vms_vol_info info;
	CHECK_OK(vms_vol_info_get(&info, p, s));
	CHECK(info.kind == VMS_VOL_SNAPSHOT && info.origin == v && info.written == sizeof(a));
	CHECK_OK(vms_vol_info_get(&info, p, s2));
	CHECK(info.written == sizeof(b));
	CHECK_OK(vms_vol_info_get(&info, p, v));
	CHECK(info.written == 4096);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	p = reopen("s.pool", &o);
	REQUIRE(p);
	CHECK(read_equals(p, s, a, sizeof(a), 0));
	CHECK(read_equals(p, s2, b, sizeof(b), 0));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

TEST(multi_volume_snapshot)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("m.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v[3], s[3];
	uint8_t a[4096];
	for (int i = 0; i < 3; i++) {
		CHECK_OK(vms_vol_create(&v[i], p, 8 * MiB));
		fill(a, sizeof(a), 10 + i);
		CHECK_OK(vms_vol_write(p, v[i], a, sizeof(a), 0, 0));
	}
	CHECK_OK(vms_vol_snapshot(s, p, v, 3));
	vms_vol_id dup[2] = {v[0], v[0]};
	CHECK(vms_vol_snapshot(s, p, dup, 2) == VMS_EINVAL);
	for (int i = 0; i < 3; i++) {
		CHECK_OK(vms_vol_write(p, v[i], a, 512, 0, 0));
		fill(a, sizeof(a), 10 + i);
		CHECK(read_equals(p, s[i], a, sizeof(a), 0));
	}
	vms_pool_stats st;
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.volumes == 3 && st.snapshots == 3);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

TEST(rollback_keeps_newer)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("r.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s1, s2;
	uint8_t a[8192], b[8192], c[8192];
	fill(a, sizeof(a), 4);
	fill(b, sizeof(b), 5);
	fill(c, sizeof(c), 6);
	CHECK_OK(vms_vol_create(&v, p, 8 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 1 * MiB, 0));
	CHECK_OK(vms_vol_snapshot(&s1, p, &v, 1));
	CHECK_OK(vms_pool_commit(p));
	CHECK_OK(vms_vol_write(p, v, b, sizeof(b), 1 * MiB, 0));
	CHECK_OK(vms_vol_snapshot(&s2, p, &v, 1));
	CHECK_OK(vms_vol_write(p, v, c, sizeof(c), 1 * MiB, 0));
	CHECK_OK(vms_vol_rollback(p, v, s1));
	CHECK(read_equals(p, v, a, sizeof(a), 1 * MiB));
	CHECK(read_equals(p, s2, b, sizeof(b), 1 * MiB));
	CHECK_OK(vms_vol_rollback(p, v, s2));
	CHECK(read_equals(p, v, b, sizeof(b), 1 * MiB));
	CHECK(read_equals(p, s1, a, sizeof(a), 1 * MiB));
	CHECK(vms_vol_rollback(p, s1, v) == VMS_EROFS);
	CHECK(vms_vol_rollback(p, v, v) == VMS_EINVAL);
	/* the rolled-back-over trees are reclaimed */
	CHECK_OK(vms_vol_write(p, v, c, 512, 0, 0));
	CHECK_OK(vms_pool_reap_wait(p));
	vms_vol_id ids[8];
	CHECK(vms_vol_list(ids, 8, p) == 3);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	p = reopen("r.pool", &o);
	REQUIRE(p);
	CHECK(read_equals(p, v, b + 512, sizeof(b) - 512, 1 * MiB + 512));
	CHECK(read_equals(p, s1, a, sizeof(a), 1 * MiB));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

TEST(clone_independent)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("c.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s, c1, c2;
	uint8_t a[16384], b[16384];
	fill(a, sizeof(a), 7);
	fill(b, sizeof(b), 8);
	CHECK_OK(vms_vol_create(&v, p, 4 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 0, 0));
	CHECK_OK(vms_vol_snapshot(&s, p, &v, 1));
	CHECK_OK(vms_vol_clone(&c1, p, s));
	CHECK_OK(vms_vol_clone(&c2, p, v));
	CHECK_OK(vms_vol_write(p, c1, b, sizeof(b), 0, 0));
	CHECK(read_equals(p, c1, b, sizeof(b), 0));
	CHECK(read_equals(p, c2, a, sizeof(a), 0));
	CHECK(read_equals(p, v, a, sizeof(a), 0));
	CHECK(read_equals(p, s, a, sizeof(a), 0));
	CHECK_OK(vms_vol_write(p, v, b, 4096, 8192, 0));
	CHECK(read_equals(p, c2, a, sizeof(a), 0));
	vms_vol_info info;
	CHECK_OK(vms_vol_info_get(&info, p, c1));
	CHECK(info.kind == VMS_VOL_VOLUME && info.origin == s);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

TEST(delete_reclaims_exactly)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("d.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, c, s;
	uint8_t *buf = malloc(4 * MiB);
	fill(buf, 4 * MiB, 9);
	CHECK_OK(vms_vol_create(&v, p, 16 * MiB));
	CHECK_OK(vms_vol_write(p, v, buf, 4 * MiB, 0, 0));
	CHECK_OK(vms_pool_commit(p));
	uint64_t f0 = free_blocks(p);

	/* a clone with writes: deleting it frees exactly its unique blocks */
	CHECK_OK(vms_vol_clone(&c, p, v));
	CHECK_OK(vms_vol_write(p, c, buf, 1 * MiB, 512 * 1024, 0));
	CHECK_OK(vms_vol_write(p, c, buf, 4096, 10 * MiB, 0));
	CHECK_OK(vms_pool_commit(p));
	uint64_t uniq = 0;
	CHECK_OK(vms_vol_unique_bytes(&uniq, p, c));
	uint64_t f1 = free_blocks(p);
	CHECK(uniq / 4096 == f0 - f1);
	CHECK(uniq >= 1 * MiB + 4096);
	CHECK_OK(vms_vol_unique_bytes(&uniq, p, v));
	/* lazily shared: only the part the clone overwrote is v's own */
	CHECK(uniq >= 1 * MiB && uniq < 2 * MiB);
	CHECK_OK(vms_vol_delete(p, c));
	vms_vol_info info;
	CHECK(vms_vol_info_get(&info, p, c) == VMS_ENOTFOUND || info.deleting);
	CHECK(vms_vol_read(p, c, buf, 512, 0) == VMS_ENOTFOUND);
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK(vms_vol_info_get(&info, p, c) == VMS_ENOTFOUND);
	CHECK(free_blocks(p) == f0);

	/* a snapshot whose blocks the volume overwrote */
	CHECK_OK(vms_vol_snapshot(&s, p, &v, 1));
	CHECK_OK(vms_vol_write(p, v, buf + 4096, 2 * MiB, 0, 0));
	CHECK_OK(vms_vol_unique_bytes(&uniq, p, s));
	uint64_t f2 = free_blocks(p);
	CHECK_OK(vms_vol_delete(p, s));
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK(free_blocks(p) - f2 == uniq / 4096);
	CHECK(uniq >= 2 * MiB);
	CHECK(read_equals(p, v, buf + 4096, 2 * MiB, 0));
	CHECK(read_equals(p, v, buf + 2 * MiB, 2 * MiB, 2 * MiB));

	/* deleting the volume too returns the pool to empty */
	CHECK_OK(vms_vol_delete(p, v));
	CHECK_OK(vms_pool_reap_wait(p));
	vms_pool_stats st;
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.data_blocks == 0 && st.volumes == 0 && st.deleting == 0);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	free(buf);
}

TEST(volume_table_grows_and_shrinks)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("vt.pool", 16 * MiB, &o);
	REQUIRE(p);
	uint64_t f0 = free_blocks(p);
	vms_vol_id ids[100];
	for (int i = 0; i < 100; i++) /* 31 records per page: four pages and a root */
		CHECK_OK(vms_vol_create(&ids[i], p, 1 * MiB));
	CHECK_OK(vms_pool_commit(p));
	CHECK(free_blocks(p) < f0);
	CHECK_OK(vms_pool_close(p));
	p = reopen("vt.pool", &o);
	REQUIRE(p);
	CHECK(vms_vol_list(NULL, 0, p) == 100);
	for (int i = 99; i >= 0; i -= 2)
		CHECK_OK(vms_vol_delete(p, ids[i]));
	CHECK_OK(vms_pool_reap_wait(p));
	for (int i = 0; i < 100; i += 2)
		CHECK_OK(vms_vol_delete(p, ids[i]));
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK_OK(vms_pool_commit(p));
	CHECK(free_blocks(p) == f0);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	p = reopen("vt.pool", &o);
	REQUIRE(p);
	CHECK(vms_vol_list(NULL, 0, p) == 0);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

TEST(reaper_rate_and_resume)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("rr.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v;
	uint8_t *buf = malloc(8 * MiB);
	fill(buf, 8 * MiB, 11);
	CHECK_OK(vms_vol_create(&v, p, 16 * MiB));
	CHECK_OK(vms_vol_write(p, v, buf, 8 * MiB, 0, 0));
	CHECK_OK(vms_pool_commit(p));
	uint64_t uniq = 0;
	CHECK_OK(vms_vol_unique_bytes(&uniq, p, v));
	uint64_t f_empty_target = free_blocks(p) + uniq / 4096;
	vms_pool_set_reap_rate(p, 1000); /* 2048 data blocks: about two seconds */
	CHECK_OK(vms_vol_delete(p, v));
	usleep(300 * 1000);
	CHECK_OK(vms_pool_commit(p));
	vms_pool_stats st;
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.deleting == 1); /* partially reaped at the commit */
	CHECK(st.data_blocks < 2048 && st.data_blocks > 0);
	CHECK(copy_file(path_of("rr.pool"), path_of("rr-crash.pool")) == 0);
	vms_pool_set_reap_rate(p, 0);
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));

	/* the copy resumes where its last commit left the tree */
	p = reopen("rr-crash.pool", &o);
	REQUIRE(p);
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.data_blocks == 0);
	CHECK(st.free_blocks == f_empty_target);
	if (st.free_blocks != f_empty_target)
		fprintf(stderr, "  free %llu, expected %llu\n", (unsigned long long)st.free_blocks,
		        (unsigned long long)f_empty_target);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	free(buf);
}

TEST(crash_returns_to_last_commit)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("x.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s;
	uint8_t a[65536], b[65536];
	fill(a, sizeof(a), 12);
	fill(b, sizeof(b), 13);
	CHECK_OK(vms_vol_create(&v, p, 8 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 0, 0));
	CHECK_OK(vms_vol_flush(p, v));
	CHECK_OK(vms_vol_snapshot(&s, p, &v, 1));
	CHECK_OK(vms_vol_write(p, v, b, sizeof(b), 0, 0));
	CHECK_OK(vms_vol_write(p, v, b, sizeof(b), 1 * MiB, 0));
	/* power cut: everything since the flush is lost */
	CHECK(copy_file(path_of("x.pool"), path_of("x-crash.pool")) == 0);
	CHECK_OK(vms_vol_write(p, v, b, 4096, 2 * MiB, VMS_IO_FUA));
	CHECK(copy_file(path_of("x.pool"), path_of("x-fua.pool")) == 0);
	CHECK_OK(vms_pool_close(p));

	p = reopen("x-crash.pool", &o);
	REQUIRE(p);
	CHECK(read_equals(p, v, a, sizeof(a), 0));
	CHECK(is_zero(p, v, sizeof(b), 1 * MiB));
	vms_vol_info info;
	CHECK(vms_vol_info_get(&info, p, s) == VMS_ENOTFOUND);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));

	p = reopen("x-fua.pool", &o);
	REQUIRE(p);
	CHECK(read_equals(p, v, b, sizeof(b), 0));
	CHECK(read_equals(p, v, b, 4096, 2 * MiB));
	CHECK(read_equals(p, s, a, sizeof(a), 0));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

TEST(periodic_commit)
{
	vms_pool_options o = {0};
	o.commit_interval_ms = 50;
	vms_pool *p = new_pool("pc.pool", 16 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v;
	uint8_t a[4096];
	fill(a, sizeof(a), 14);
	CHECK_OK(vms_vol_create(&v, p, 1 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 0, 0));
	usleep(400 * 1000);
	CHECK(copy_file(path_of("pc.pool"), path_of("pc-crash.pool")) == 0);
	CHECK_OK(vms_pool_close(p));
	vms_pool_options q = quiet_opts();
	p = reopen("pc-crash.pool", &q);
	REQUIRE(p);
	CHECK(read_equals(p, v, a, sizeof(a), 0));
	CHECK_OK(vms_pool_close(p));
}

TEST(sub_block_writes)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("sb.pool", 32 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s;
	enum { LEN = 256 * 1024 };
	uint8_t *model = calloc(1, LEN), *smodel = NULL, w[8192];
	CHECK_OK(vms_vol_create(&v, p, LEN));
	uint64_t seed = 15;
	for (int round = 0; round < 400; round++) {
		size_t len = 512 * (1 + (size_t)(seed % 16));
		uint64_t off = 512 * ((seed / 16) % (LEN / 512 - 16));
		fill(w, len, seed);
		CHECK_OK(vms_vol_write(p, v, w, len, off, 0));
		memcpy(model + off, w, len);
		if (round == 150) {
			CHECK_OK(vms_vol_snapshot(&s, p, &v, 1));
			smodel = malloc(LEN);
			memcpy(smodel, model, LEN);
		}
		if (round % 97 == 0)
			CHECK_OK(vms_pool_commit(p));
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		seed >>= 1;
	}
	CHECK(read_equals(p, v, model, LEN, 0));
	CHECK(smodel && read_equals(p, s, smodel, LEN, 0));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	CHECK(reopen_reads("sb.pool", &o, v, model, LEN));
	free(model);
	free(smodel);
}

typedef struct seg { uint64_t off, len; int alloc; } seg;
typedef struct segs { seg s[64]; int n; } segs;

static int collect(void *ctx, uint64_t off, uint64_t len, int alloc)
{
	segs *x = ctx;
	if (x->n < 64)
		x->s[x->n++] = (seg){off, len, alloc};
	return 0;
}

TEST(trim_zeroes_block_status)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("t.pool", 32 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s;
	uint8_t *buf = malloc(1 * MiB);
	fill(buf, 1 * MiB, 16);
	CHECK_OK(vms_vol_create(&v, p, 4 * MiB));
	CHECK_OK(vms_vol_write(p, v, buf, 1 * MiB, 1 * MiB, 0));
	CHECK_OK(vms_vol_snapshot(&s, p, &v, 1));
	CHECK_OK(vms_pool_commit(p));
	uint64_t f0 = free_blocks(p);

	segs st = {0};
	CHECK_OK(vms_vol_block_status(p, v, 0, 4 * MiB, collect, &st));
	CHECK(st.n == 3);
	CHECK(st.s[0].off == 0 && st.s[0].len == 1 * MiB && !st.s[0].alloc);
	CHECK(st.s[1].off == 1 * MiB && st.s[1].len == 1 * MiB && st.s[1].alloc);
	CHECK(st.s[2].off == 2 * MiB && st.s[2].len == 2 * MiB && !st.s[2].alloc);

	/* trim: whole blocks unmapped, partial ones kept */
	CHECK_OK(vms_vol_trim(p, v, 64 * 1024 + 1024, 1 * MiB + 512));
	memset(st.s, 0, sizeof(st.s));
	st.n = 0;
	CHECK_OK(vms_vol_block_status(p, v, 1 * MiB, 128 * 1024, collect, &st));
	CHECK(st.n == 3 && st.s[0].alloc && st.s[0].len == 4096 && !st.s[1].alloc &&
	      st.s[1].len == 60 * 1024 && st.s[2].alloc);
	CHECK(is_zero(p, v, 60 * 1024, 1 * MiB + 4096));
	CHECK(read_equals(p, v, buf, 4096, 1 * MiB));
	CHECK(read_equals(p, s, buf, 1 * MiB, 1 * MiB)); /* the snapshot keeps all */

	/* write-zeroes: partial blocks zeroed, whole blocks unmapped */
	CHECK_OK(vms_vol_write_zeroes(p, v, 8192 + 1024, 1 * MiB + 512 * 1024 + 512, 0));
	CHECK(is_zero(p, v, 8192 + 1024, 1 * MiB + 512 * 1024 + 512));
	CHECK(read_equals(p, v, buf + 512 * 1024, 512, 1 * MiB + 512 * 1024));
	CHECK(read_equals(p, v, buf + 512 * 1024 + 9216 + 512, 4096 - 1536,
	                  1 * MiB + 512 * 1024 + 9216 + 512));
	vms_vol_info info;
	CHECK_OK(vms_vol_info_get(&info, p, v));
	CHECK(info.referenced == 1 * MiB - 60 * 1024 - 4096);

	/* trims and zeroes over holes allocate nothing */
	CHECK_OK(vms_pool_commit(p));
	uint64_t f1 = free_blocks(p);
	CHECK_OK(vms_vol_trim(p, v, 1 * MiB, 3 * MiB));
	CHECK_OK(vms_vol_write_zeroes(p, v, 512 * 1024, 0, 0));
	CHECK_OK(vms_pool_commit(p));
	CHECK(free_blocks(p) == f1);
	(void)f0;

	/* unshared blocks come back once trimmed */
	CHECK_OK(vms_vol_delete(p, s));
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK_OK(vms_pool_commit(p));
	f1 = free_blocks(p);
	CHECK_OK(vms_vol_trim(p, v, 4 * MiB, 0));
	CHECK_OK(vms_pool_commit(p));
	CHECK(free_blocks(p) >= f1 + 200);
	CHECK(is_zero(p, v, 4 * MiB, 0));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	free(buf);
}

TEST(diff_between_snapshots)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("df.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s1, s2;
	uint8_t *buf = malloc(2 * MiB);
	fill(buf, 2 * MiB, 17);
	CHECK_OK(vms_vol_create(&v, p, 32 * MiB));
	CHECK_OK(vms_vol_write(p, v, buf, 2 * MiB, 0, 0));
	CHECK_OK(vms_vol_snapshot(&s1, p, &v, 1));
	CHECK_OK(vms_vol_write(p, v, buf, 8192, 1 * MiB, 0));
	CHECK_OK(vms_vol_write(p, v, buf, 512, 20 * MiB + 4096, 0));
	CHECK_OK(vms_vol_trim(p, v, 4096, 64 * 1024));
	CHECK_OK(vms_vol_snapshot(&s2, p, &v, 1));
	segs d = {0};
	CHECK_OK(vms_vol_diff(p, s1, s2, collect, &d));
	CHECK(d.n == 3);
	CHECK(d.s[0].off == 64 * 1024 && d.s[0].len == 4096);
	CHECK(d.s[1].off == 1 * MiB && d.s[1].len == 8192);
	CHECK(d.s[2].off == 20 * MiB + 4096 && d.s[2].len == 4096);
	memset(&d, 0, sizeof(d));
	CHECK_OK(vms_vol_diff(p, s2, v, collect, &d));
	CHECK(d.n == 0);
	CHECK_OK(vms_vol_write(p, v, buf, 4096, 31 * MiB, 0));
	CHECK_OK(vms_vol_diff(p, s2, v, collect, &d));
	CHECK(d.n == 1 && d.s[0].off == 31 * MiB && d.s[0].len == 4096);
	/* diff against a grown clone (deeper tree) */
	vms_vol_id c;
	CHECK_OK(vms_vol_clone(&c, p, s2));
	CHECK_OK(vms_vol_resize(p, c, 2ull << 30));
	memset(&d, 0, sizeof(d));
	CHECK_OK(vms_vol_diff(p, s2, c, collect, &d));
	CHECK(d.n == 0);
	CHECK_OK(vms_vol_write(p, c, buf, 4096, 1ull << 30, 0));
	CHECK_OK(vms_vol_diff(p, s2, c, collect, &d));
	CHECK(d.n == 1 && d.s[0].off == 1ull << 30);
	CHECK(read_equals(p, c, buf, 64 * 1024, 0));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	free(buf);
}

TEST(resize_and_grow)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("g.pool", 16 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v;
	uint8_t a[8192];
	fill(a, sizeof(a), 18);
	CHECK_OK(vms_vol_create(&v, p, 1 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 1 * MiB - 8192, 0));
	CHECK_OK(vms_vol_resize(p, v, 1 * MiB - 4096 - 512));
	CHECK_OK(vms_vol_resize(p, v, 4ull << 30));
	CHECK(read_equals(p, v, a, 3584, 1 * MiB - 8192));
	CHECK(is_zero(p, v, 4096 + 512, 1 * MiB - 4096 - 512));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), (4ull << 30) - 8192, 0));
	CHECK(read_equals(p, v, a, sizeof(a), (4ull << 30) - 8192));
	vms_pool_stats st;
	CHECK_OK(vms_pool_stats_get(&st, p));
	uint64_t total = st.total_blocks;
	CHECK_OK(vms_pool_grow(p, 48 * MiB));
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.total_blocks == total + 8192);
	CHECK(vms_pool_grow(p, 8 * MiB) == VMS_EINVAL);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	p = reopen("g.pool", &o);
	REQUIRE(p);
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.total_blocks == total + 8192);
	CHECK(read_equals(p, v, a, sizeof(a), (4ull << 30) - 8192));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

TEST(enospc_then_delete_in_reserve)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("full.pool", 2 * MiB, &o); /* 512 blocks */
	REQUIRE(p);
	vms_vol_id v, s;
	uint8_t a[65536];
	fill(a, sizeof(a), 19);
	CHECK_OK(vms_vol_create(&v, p, 8 * MiB));
	int rc = 0;
	uint64_t off = 0;
	while (off < 8 * MiB && (rc = vms_vol_write(p, v, a, sizeof(a), off, 0)) == 0)
		off += sizeof(a);
	CHECK(rc == VMS_ENOSPC);
	CHECK(off > 0);
	CHECK(read_equals(p, v, a, sizeof(a), 0));
	CHECK(check_clean(p));
	/* a snapshot plus overwrites of the written part also hits ENOSPC cleanly */
	CHECK_OK(vms_vol_snapshot(&s, p, &v, 1));
	CHECK(vms_vol_write(p, v, a, sizeof(a), 0, 0) == VMS_ENOSPC ||
	      vms_vol_write(p, v, a, sizeof(a), 65536, 0) == VMS_ENOSPC);
	CHECK(check_clean(p));
	/* deletes and commits go through on the full pool */
	CHECK_OK(vms_vol_delete(p, s));
	CHECK_OK(vms_vol_delete(p, v));
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK_OK(vms_pool_commit(p));
	CHECK_OK(vms_pool_commit(p));
	vms_pool_stats st;
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.data_blocks == 0);
	CHECK(!st.readonly);
	CHECK(check_clean(p));
	CHECK_OK(vms_vol_create(&v, p, 1 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 0, 0));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

static uint64_t root_block(vms_pool *p, vms_vol_id v)
{
	pthread_mutex_lock(&p->lock);
	vrec *r = vol_find(p, v);
	uint64_t b = r ? r->root : 0;
	pthread_mutex_unlock(&p->lock);
	return b;
}

TEST(corrupt_metadata_detected)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("cm.pool", 16 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, w;
	uint8_t a[8192];
	fill(a, sizeof(a), 20);
	CHECK_OK(vms_vol_create(&v, p, 4 * MiB));
	CHECK_OK(vms_vol_create(&w, p, 4 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 0, 0));
	CHECK_OK(vms_vol_write(p, w, a, sizeof(a), 0, 0));
	CHECK_OK(vms_pool_commit(p));
	uint64_t root = root_block(p, v);
	CHECK(root >= 2);
	CHECK_OK(vms_pool_close(p));
	uint8_t x = 0x5a;
	poke(path_of("cm.pool"), root * 4096 + 100, &x, 1);
	p = reopen("cm.pool", &o);
	REQUIRE(p);
	uint8_t got[8192];
	CHECK(vms_vol_read(p, v, got, sizeof(got), 0) == VMS_ECORRUPT);
	CHECK(read_equals(p, w, a, sizeof(a), 0));
	vms_check_report rep;
	CHECK(vms_pool_check(&rep, p, 0) == VMS_ECORRUPT);
	CHECK(rep.corrupt >= 1 && strstr(rep.first_error, "checksum"));
	CHECK(vms_pool_check(&rep, p, VMS_CHECK_REPAIR) == VMS_ECORRUPT);
	CHECK_OK(vms_pool_close(p));
}

/* The data block of logical block lblk (its path must be cached). */
static uint64_t data_block_of(vms_pool *p, vms_vol_id v, uint64_t lblk)
{
	pthread_mutex_lock(&p->lock);
	vrec *r = vol_find(p, v);
	uint64_t b = r->root;
	for (int lev = r->depth - 1; lev >= 0 && b; lev--) {
		node *n = cache_find(p, b);
		b = n ? ent_blk(n, tree_index(p, lblk, lev)) : 0;
	}
	pthread_mutex_unlock(&p->lock);
	return b;
}

TEST(data_checksums)
{
	vms_pool_options o = quiet_opts();
	o.data_checksums = 1;
	o.block_size = 8192;
	vms_pool *p = new_pool("dc.pool", 16 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v;
	uint8_t a[16384];
	fill(a, sizeof(a), 21);
	CHECK_OK(vms_vol_create(&v, p, 4 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 0, 0));
	CHECK_OK(vms_vol_write(p, v, a, 1024, 8192 + 512, 0)); /* in place, re-checksummed */
	CHECK(read_equals(p, v, a, 8192, 0));
	CHECK(read_equals(p, v, a, 1024, 8192 + 512));
	CHECK(check_clean(p));
	vms_pool_stats st;
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.data_checksums && st.block_size == 8192);
	/* find the data block of logical block 0 and flip a byte */
	uint64_t data = data_block_of(p, v, 0);
	CHECK(data >= 2);
	CHECK_OK(vms_pool_close(p));
	uint8_t x = 0xa5;
	poke(path_of("dc.pool"), data * 8192 + 77, &x, 1);
	vms_pool_options q = quiet_opts();
	p = reopen("dc.pool", &q);
	REQUIRE(p);
	uint8_t got[512];
	CHECK(vms_vol_read(p, v, got, 512, 0) == VMS_ECORRUPT);
	CHECK(vms_vol_read(p, v, got, 512, 8192) == 0);
	vms_check_report rep;
	CHECK(vms_pool_check(&rep, p, 0) == 0);
	CHECK(vms_pool_check(&rep, p, VMS_CHECK_DATA) == VMS_ECORRUPT && rep.corrupt == 1);
	CHECK_OK(vms_pool_close(p));
}

static uint32_t file_crc(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t buf[65536];
	uint32_t c = 0;
	size_t n;
	if (!f)
		return 0;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		c = vms_crc32c(c, buf, n);
	fclose(f);
	return c;
}

/* A read-only open never writes: not at open (no commit), not in the check
 * (which finds the damage), not on close; changes get VMS_EROFS; several
 * read-only opens may share a pool, a writer may not join them. */
TEST(read_only_open_writes_nothing)
{
	vms_pool_options o = quiet_opts();
	o.data_checksums = 1;
	vms_pool *p = new_pool("ro.pool", 16 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s;
	uint8_t a[8192];
	fill(a, sizeof(a), 31);
	CHECK_OK(vms_vol_create(&v, p, 4 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 0, 0));
	CHECK_OK(vms_vol_snapshot(&s, p, &v, 1));
	uint64_t data = data_block_of(p, v, 1);
	CHECK(data >= 2);
	CHECK_OK(vms_pool_close(p));
	uint8_t x = 0x5a;
	poke(path_of("ro.pool"), data * 4096 + 9, &x, 1); /* damage one data block */
	uint32_t before = file_crc(path_of("ro.pool"));
	struct stat st0, st1;
	CHECK(stat(path_of("ro.pool"), &st0) == 0);

	vms_pool_options q = quiet_opts();
	q.read_only = 1;
	vms_pool *r1 = reopen("ro.pool", &q), *r2 = reopen("ro.pool", &q);
	REQUIRE(r1 && r2);
	vms_pool *w = NULL;
	vms_pool_options rw = quiet_opts();
	CHECK(vms_pool_open_file(&w, path_of("ro.pool"), &rw) == VMS_EBUSY && !w);
	vms_check_report rep;
	CHECK(vms_pool_check(&rep, r1, VMS_CHECK_DATA) == VMS_ECORRUPT && rep.corrupt == 1);
	CHECK(vms_pool_check(&rep, r1, VMS_CHECK_DATA | VMS_CHECK_REPAIR) == VMS_ECORRUPT);
	CHECK(vms_pool_check(&rep, r2, 0) == 0 && rep.leaked_blocks == 0);
	CHECK(read_equals(r1, v, a, 4096, 0));
	uint8_t got[4096];
	CHECK(vms_vol_read(r1, v, got, 4096, 4096) == VMS_ECORRUPT);
	CHECK(vms_vol_write(r1, v, a, 4096, 0, 0) == VMS_EROFS);
	vms_vol_id n;
	CHECK(vms_vol_create(&n, r1, MiB) == VMS_EROFS);
	CHECK(vms_vol_snapshot(&n, r1, &v, 1) == VMS_EROFS);
	CHECK(vms_pool_commit(r1) == VMS_EROFS);
	CHECK(vms_vol_flush(r1, v) == 0); /* nothing of its own to make durable */
	vms_pool_stats ps;
	CHECK_OK(vms_pool_stats_get(&ps, r1));
	CHECK(ps.readonly && ps.snapshots == 1);
	CHECK_OK(vms_pool_close(r1));
	CHECK_OK(vms_pool_close(r2));
	CHECK(file_crc(path_of("ro.pool")) == before);
	CHECK(stat(path_of("ro.pool"), &st1) == 0);
	CHECK(st1.st_mtim.tv_sec == st0.st_mtim.tv_sec && st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec);
	/* a writer may open it again (and commits at once) */
	p = reopen("ro.pool", &rw);
	REQUIRE(p);
	CHECK_OK(vms_vol_delete(p, s));
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK_OK(vms_pool_commit(p));
	CHECK(file_crc(path_of("ro.pool")) != before);
	CHECK_OK(vms_pool_close(p));
}

/* Space-map pages whose blocks are all free are holes (format version 2):
 * the space map's size follows the part of the pool in use, not the pool. */
static uint64_t smap_blocks_of(vms_pool *p)
{
	vms_pool_stats st;
	if (vms_pool_stats_get(&st, p) < 0)
		return UINT64_MAX;
	return st.smap_blocks;
}

TEST(space_map_holes_follow_the_data)
{
	vms_pool_options o = quiet_opts();
	/* 4 GiB: 1,048,576 blocks, 1,028 space-map pages of 1,020 counts */
	vms_pool *p = new_pool("holes.pool", 4096 * MiB, &o);
	REQUIRE(p);
	CHECK_OK(vms_pool_commit(p));
	uint64_t empty = smap_blocks_of(p);
	CHECK(empty < 16); /* interior nodes and the pages of the first blocks */
	CHECK(check_clean(p));
	vms_vol_id v;
	CHECK_OK(vms_vol_create(&v, p, 1024 * MiB));
	size_t len = 64 * MiB;
	uint8_t *a = malloc(len);
	REQUIRE(a);
	fill(a, len, 77);
	CHECK_OK(vms_vol_write(p, v, a, len, 0, 0));
	CHECK_OK(vms_pool_commit(p));
	uint64_t full = smap_blocks_of(p);
	fprintf(stderr, "  space map: %llu blocks empty, %llu with 64 MiB written\n", (unsigned long long)empty,
	        (unsigned long long)full);
	/* 16,384 data blocks and their index: about 17 pages more */
	CHECK(full >= empty + 16 && full < empty + 40);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));

	/* the record says version 2; holes read back as free blocks */
	uint8_t rec[8];
	int fd = open(path_of("holes.pool"), O_RDONLY);
	REQUIRE(fd >= 0);
	CHECK(pread(fd, rec, 8, 8) == 8 && get32(rec) == SB_VERSION && SB_VERSION == 2);
	close(fd);
	p = reopen("holes.pool", &o);
	REQUIRE(p);
	CHECK(smap_blocks_of(p) == full);
	CHECK(read_equals(p, v, a, len, 0));
	CHECK(check_clean(p));
	vms_pool_stats st;
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.free_blocks > 1048576 - 20000 && st.free_blocks < 1048576 - 16384);

	/* freed again: the pages become holes again */
	CHECK_OK(vms_vol_delete(p, v));
	CHECK_OK(vms_pool_reap_wait(p));
	for (int i = 0; i < 3; i++)
		CHECK_OK(vms_pool_commit(p));
	CHECK(smap_blocks_of(p) < empty + 8);
	CHECK(check_clean(p));
	/* and blocks far into the pool are allocated and counted again */
	CHECK_OK(vms_vol_create(&v, p, 1024 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, len, 0, 0));
	CHECK_OK(vms_pool_commit(p));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	CHECK(reopen_reads("holes.pool", &o, v, a, len));

	/* a version-1 record with holes is damage, not free space */
	fd = open(path_of("holes.pool"), O_RDWR);
	REQUIRE(fd >= 0);
	for (int slot = 0; slot < 2; slot++) {
		uint8_t sb[SB_SIZE];
		REQUIRE(pread(fd, sb, SB_SIZE, (off_t)slot * 4096) == SB_SIZE);
		put32(sb + 8, 1);
		put32(sb + SB_SIZE - 4, vms_crc32c(0, sb, SB_SIZE - 4));
		REQUIRE(pwrite(fd, sb, SB_SIZE, (off_t)slot * 4096) == SB_SIZE);
	}
	close(fd);
	vms_pool *q = NULL;
	CHECK(vms_pool_open_file(&q, path_of("holes.pool"), &o) == VMS_ECORRUPT && !q);
	CHECK(strstr(vms_error_last(), "space map") != NULL);
	free(a);
	unlink(path_of("holes.pool"));
}

TEST(leak_reported_and_repaired)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("lk.pool", 16 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v;
	uint8_t a[4096];
	fill(a, sizeof(a), 22);
	CHECK_OK(vms_vol_create(&v, p, 4 * MiB));
	CHECK_OK(vms_vol_write(p, v, a, sizeof(a), 0, 0));
	uint64_t f0 = free_blocks(p);
	pthread_mutex_lock(&p->lock); /* leak: a count with no reference */
	uint64_t b;
	CHECK(sm_alloc(p, 0, &b) == 0);
	pthread_mutex_unlock(&p->lock);
	vms_check_report rep;
	CHECK(vms_pool_check(&rep, p, 0) == 0);
	CHECK(rep.leaked_blocks == 1 && rep.corrupt == 0);
	CHECK(vms_pool_check(&rep, p, VMS_CHECK_REPAIR) == 0);
	CHECK(check_clean(p));
	CHECK(free_blocks(p) == f0);
	/* a count one too high on a tree node is a leak as well */
	uint64_t root = root_block(p, v);
	pthread_mutex_lock(&p->lock);
	sm_ref(p, root);
	pthread_mutex_unlock(&p->lock);
	CHECK(vms_pool_check(&rep, p, 0) == 0 && rep.leaked_blocks == 1);
	CHECK(vms_pool_check(&rep, p, VMS_CHECK_REPAIR) == 0);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

TEST(bad_pool_files)
{
	vms_pool *p = NULL;
	vms_pool_options o = quiet_opts();
	/* missing, empty, garbage */
	CHECK(vms_pool_open_file(&p, path_of("nope.pool"), &o) == VMS_ENOTFOUND && !p);
	int fd = open(path_of("empty.pool"), O_CREAT | O_TRUNC | O_WRONLY, 0600);
	close(fd);
	CHECK(vms_pool_open_file(&p, path_of("empty.pool"), &o) == VMS_ECORRUPT && !p);
	CHECK(strstr(vms_error_last(), "not a vmsnap pool") != NULL);
	uint8_t junk[65536];
	fill(junk, sizeof(junk), 23);
	poke(path_of("junk.pool"), 0, junk, sizeof(junk));
	CHECK(vms_pool_open_file(&p, path_of("junk.pool"), &o) == VMS_ECORRUPT && !p);

	/* a good pool, then damaged copies */
	p = new_pool("good.pool", 16 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v;
	CHECK_OK(vms_vol_create(&v, p, 1 * MiB));
	CHECK_OK(vms_vol_write(p, v, junk, 4096, 0, 0));
	vms_pool *p2 = NULL;
	CHECK(vms_pool_open_file(&p2, path_of("good.pool"), &o) == VMS_EBUSY && !p2);
	CHECK(strstr(vms_error_last(), "in use by another process") != NULL);
	CHECK(vms_pool_create_file(&p2, path_of("good.pool"), 16 * MiB, &o) == VMS_EEXISTS);
	CHECK_OK(vms_pool_close(p));
	struct stat stt;
	CHECK(stat(path_of("good.pool"), &stt) == 0);

	/* truncated */
	CHECK(copy_file(path_of("good.pool"), path_of("trunc.pool")) == 0);
	CHECK(truncate(path_of("trunc.pool"), 8 * MiB) == 0);
	CHECK(vms_pool_open_file(&p, path_of("trunc.pool"), &o) == VMS_ECORRUPT && !p);
	CHECK(strstr(vms_error_last(), "truncated") != NULL);

	/* bad magic in both records */
	CHECK(copy_file(path_of("good.pool"), path_of("magic.pool")) == 0);
	poke(path_of("magic.pool"), 0, "XXXX", 4);
	poke(path_of("magic.pool"), 4096, "XXXX", 4);
	CHECK(vms_pool_open_file(&p, path_of("magic.pool"), &o) == VMS_ECORRUPT && !p);

	/* one bad record: falls back to the other (previous commit) */
	CHECK(copy_file(path_of("good.pool"), path_of("one.pool")) == 0);
	poke(path_of("one.pool"), 50, "\x01", 1);
	CHECK(vms_pool_open_file(&p, path_of("one.pool"), &o) == 0 && p);
	if (p) {
		CHECK(check_clean(p));
		vms_pool_close(p);
	}
	/* bit flips in both records */
	CHECK(copy_file(path_of("good.pool"), path_of("flip.pool")) == 0);
	poke(path_of("flip.pool"), 50, "\x01", 1);
	poke(path_of("flip.pool"), 4096 + 50, "\x01", 1);
	CHECK(vms_pool_open_file(&p, path_of("flip.pool"), &o) == VMS_ECORRUPT && !p);
	CHECK(strstr(vms_error_last(), "damaged") != NULL);

	/* a newer format version (with a valid checksum) */
	CHECK(copy_file(path_of("good.pool"), path_of("ver.pool")) == 0);
	for (int slot = 0; slot < 2; slot++) {
		uint8_t rec[SB_SIZE];
		int f = open(path_of("ver.pool"), O_RDWR);
		CHECK(pread(f, rec, SB_SIZE, slot * 4096) == SB_SIZE);
		put32(rec + 8, 99);
		put32(rec + SB_SIZE - 4, vms_crc32c(0, rec, SB_SIZE - 4));
		CHECK(pwrite(f, rec, SB_SIZE, slot * 4096) == SB_SIZE);
		close(f);
	}
	CHECK(vms_pool_open_file(&p, path_of("ver.pool"), &o) == VMS_ENOTSUP && !p);
	CHECK(strstr(vms_error_last(), "version 99") != NULL);

	/* a damaged space-map page (valid records) */
	CHECK(copy_file(path_of("good.pool"), path_of("sm.pool")) == 0);
	{
		uint8_t rec[SB_SIZE];
		int f = open(path_of("sm.pool"), O_RDWR);
		uint64_t best = 0, smroot = 0;
		for (int slot = 0; slot < 2; slot++) {
			CHECK(pread(f, rec, SB_SIZE, slot * 4096) == SB_SIZE);
			if (get64(rec + 40) >= best) {
				best = get64(rec + 40);
				smroot = get64(rec + 56);
			}
		}
		close(f);
		poke(path_of("sm.pool"), smroot * 4096 + 200, "\x07", 1);
	}
	CHECK(vms_pool_open_file(&p, path_of("sm.pool"), &o) == VMS_ECORRUPT && !p);

	/* bad arguments to create */
	vms_pool_options bad = quiet_opts();
	bad.block_size = 3000;
	CHECK(vms_pool_create_file(&p, path_of("bs.pool"), 16 * MiB, &bad) == VMS_EINVAL && !p);
	CHECK(stat(path_of("bs.pool"), &stt) < 0); /* nothing left behind */
	CHECK(vms_pool_create_file(&p, path_of("tiny.pool"), 4096, &o) == VMS_EINVAL && !p);
	/* the intact original still opens */
	p = reopen("good.pool", &o);
	REQUIRE(p);
	CHECK(read_equals(p, v, junk, 4096, 0));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

typedef struct worker {
	vms_pool *p;
	vms_vol_id v;
	uint64_t base;
	int id, errors;
} worker;

static void *io_worker(void *arg)
{
	worker *w = arg;
	uint8_t a[8192], b[8192];
	for (int i = 0; i < 600; i++) {
		uint64_t off = w->base + (uint64_t)((i * 7 + w->id) % 60) * MiB;
		fill(a, sizeof(a), (uint64_t)w->id * 100000 + (uint64_t)i);
		if (vms_vol_write(w->p, w->v, a, sizeof(a), off, 0) < 0 ||
		    vms_vol_read(w->p, w->v, b, sizeof(b), off) < 0 || memcmp(a, b, sizeof(a)) != 0)
			w->errors++;
	}
	return NULL;
}

TEST(concurrent_io)
{
	vms_pool_options o = {0};
	o.commit_interval_ms = 20;
	o.cache_bytes = 256 * 1024; /* small: misses and evictions under load */
	vms_pool *p = new_pool("cc.pool", 128 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v[2];
	CHECK_OK(vms_vol_create(&v[0], p, 64 * MiB));
	CHECK_OK(vms_vol_create(&v[1], p, 64 * MiB));
	worker w[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (worker){p, v[i % 2], (uint64_t)(i / 2) * 64 * 1024, i, 0};
		pthread_create(&t[i], NULL, io_worker, &w[i]);
	}
	for (int k = 0; k < 20; k++) { /* snapshots and deletes while I/O runs */
		vms_vol_id s[2];
		if (vms_vol_snapshot(s, p, v, 2) == 0 && k % 2 == 0) {
			vms_vol_delete(p, s[0]);
			vms_vol_delete(p, s[1]);
		}
		usleep(2000);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK(w[i].errors == 0);
	}
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK(check_clean(p));
	vms_pool_stats st;
	CHECK_OK(vms_pool_stats_get(&st, p));
	CHECK(st.snapshots == 20);
	CHECK(st.cache_misses > 0);
	CHECK_OK(vms_pool_close(p));
}

typedef struct racer {
	vms_pool *p;
	vms_vol_id v;
	atomic_int stop;
	int rounds, failures, last_rc;
} racer;

static void *rewrite_worker(void *arg)
{
	racer *r = arg;
	uint8_t a[4096];
	for (int i = 0; i < r->rounds; i++) {
		memset(a, i & 0xff, sizeof(a));
		/* whole block (in place while fresh), then half a block
		 * (read-merge-write), then a commit now and then so that
		 * the block is redirected too */
		if (vms_vol_write(r->p, r->v, a, 4096, 0, 0) < 0 ||
		    vms_vol_write(r->p, r->v, a, 2048, 2048, 0) < 0)
			r->failures++;
		if (i % 64 == 63)
			(void)vms_pool_commit(r->p);
	}
	r->stop = 1;
	return NULL;
}

/*
 * A read racing a rewrite of the same block may return the old or the new
 * data (or a mix: overlapping requests in flight have no order), but never
 * an error: a block rewritten in place between the read's lookup and its
 * pread no longer matches the checksum the read looked up, and the read
 * must look again rather than report corruption.
 */
TEST(reads_racing_rewrites_see_no_false_corruption)
{
	vms_pool_options o = quiet_opts();
	o.data_checksums = 1;
	vms_pool *p = new_pool("race.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v;
	CHECK_OK(vms_vol_create(&v, p, 4 * MiB));
	uint8_t buf[4096];
	memset(buf, 0, sizeof(buf));
	CHECK_OK(vms_vol_write(p, v, buf, sizeof(buf), 0, 0));
	racer r = {.p = p, .v = v, .rounds = 20000};
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, rewrite_worker, &r) == 0);
	int reads = 0, bad = 0, last = 0;
	while (!r.stop) {
		int rc = vms_vol_read(p, v, buf, sizeof(buf), 0);
		reads++;
		if (rc < 0) {
			bad++;
			last = rc;
		}
	}
	pthread_join(t, NULL);
	if (bad)
		fprintf(stderr, "  %d of %d reads failed (last rc %d: %s)\n", bad, reads, last,
		        vms_error_last());
	CHECK(bad == 0);
	CHECK(r.failures == 0);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

typedef struct halfwriter {
	vms_pool *p;
	vms_vol_id v;
	uint64_t off;                    /* its half of each block */
	int rounds, errors;
} halfwriter;

/* Rewrite one half of blocks 0-3 again and again, reading it back each time. */
static void *half_worker(void *arg)
{
	halfwriter *h = arg;
	uint8_t a[2048], b[2048];
	for (int i = 0; i < h->rounds; i++) {
		uint64_t off = (uint64_t)(i % 4) * 4096 + h->off;
		memset(a, (int)((h->off ? 0x80 : 0) | (i & 0x7f)), sizeof(a));
		if (vms_vol_write(h->p, h->v, a, sizeof(a), off, 0) < 0 ||
		    vms_vol_read(h->p, h->v, b, sizeof(b), off) < 0 || memcmp(a, b, sizeof(a)) != 0)
			h->errors++;
		if (i % 97 == 96)
			(void)vms_pool_commit(h->p); /* so that blocks get redirected too */
	}
	return NULL;
}

/*
 * Two writers of the two halves of the same blocks: each write of half a
 * block is a read-merge-write of the whole block, so writes into one block
 * must not run their I/O at the same time (claims), or one half is lost.
 */
TEST(writes_into_two_halves_of_a_block_both_persist)
{
	for (int csum = 0; csum < 2; csum++) {
		vms_pool_options o = quiet_opts();
		o.data_checksums = csum;
		vms_pool *p = new_pool("halves.pool", 64 * MiB, &o);
		REQUIRE(p);
		vms_vol_id v;
		CHECK_OK(vms_vol_create(&v, p, 4 * MiB));
		halfwriter h[2] = {{p, v, 0, 4000, 0}, {p, v, 2048, 4000, 0}};
		pthread_t t[2];
		for (int i = 0; i < 2; i++)
			REQUIRE(pthread_create(&t[i], NULL, half_worker, &h[i]) == 0);
		for (int i = 0; i < 2; i++) {
			pthread_join(t[i], NULL);
			CHECK(h[i].errors == 0);
		}
		uint8_t want[4096], got[4096];
		for (int blk = 0; blk < 4; blk++) {
			int last = 3996 + blk; /* the last round that wrote this block */
			memset(want, last & 0x7f, 2048);
			memset(want + 2048, 0x80 | (last & 0x7f), 2048);
			CHECK_OK(vms_vol_read(p, v, got, sizeof(got), (uint64_t)blk * 4096));
			CHECK(memcmp(want, got, sizeof(want)) == 0);
		}
		CHECK(check_clean(p));
		CHECK_OK(vms_pool_close(p));
	}
}

TEST(many_snapshots_reads_flat)
{
	vms_pool_options o = quiet_opts();
	vms_pool *p = new_pool("ms.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s[200];
	uint8_t a[4096];
	CHECK_OK(vms_vol_create(&v, p, 16 * MiB));
	for (int i = 0; i < 200; i++) {
		fill(a, sizeof(a), 1000 + (uint64_t)i);
		CHECK_OK(vms_vol_write(p, v, a, sizeof(a), (uint64_t)(i % 50) * 4096, 0));
		CHECK_OK(vms_vol_snapshot(&s[i], p, &v, 1));
		if (i % 40 == 0)
			CHECK_OK(vms_pool_commit(p));
	}
	for (int i = 150; i < 200; i++) {
		fill(a, sizeof(a), 1000 + (uint64_t)i);
		CHECK(read_equals(p, s[i], a, sizeof(a), (uint64_t)(i % 50) * 4096));
		CHECK(read_equals(p, v, a, sizeof(a), (uint64_t)(i % 50) * 4096));
	}
	fill(a, sizeof(a), 1000 + 7);
	CHECK(read_equals(p, s[7], a, sizeof(a), 7 * 4096));
	for (int i = 0; i < 200; i += 2)
		CHECK_OK(vms_vol_delete(p, s[i]));
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK(read_equals(p, s[7], a, sizeof(a), 7 * 4096));
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

/* ---- an in-memory vms_io, for damage tests that reopen many images ---- */

typedef struct memio {
	vms_io io;
	uint8_t *buf;
	uint64_t size;
} memio;

static int m_read(vms_io *io, void *b, size_t len, uint64_t off)
{
	memio *m = (memio *)io;
	memset(b, 0, len);
	if (off < m->size)
		memcpy(b, m->buf + off, off + len <= m->size ? len : m->size - off);
	return 0;
}

static int m_write(vms_io *io, const void *b, size_t len, uint64_t off)
{
	memio *m = (memio *)io;
	if (off + len > m->size)
		return vms_error_set(VMS_ENOSPC, "memio: write past the end");
	memcpy(m->buf + off, b, len);
	return 0;
}

static int m_sync(vms_io *io) { (void)io; return 0; }
static int m_size(vms_io *io, uint64_t *out) { *out = ((memio *)io)->size; return 0; }

static int m_resize(vms_io *io, uint64_t size)
{
	memio *m = (memio *)io;
	uint8_t *b = realloc(m->buf, size);
	if (!b)
		return vms_error_set(VMS_ENOMEM, "memio");
	if (size > m->size)
		memset(b + m->size, 0, size - m->size);
	m->buf = b;
	m->size = size;
	return 0;
}

static void m_close(vms_io *io)
{
	memio *m = (memio *)io;
	free(m->buf);
	free(m);
}

static vms_io *memio_new(const uint8_t *image, uint64_t size)
{
	memio *m = calloc(1, sizeof(*m));
	m->buf = malloc(size ? size : 1);
	if (image)
		memcpy(m->buf, image, size);
	else
		memset(m->buf, 0, size);
	m->size = size;
	m->io = (vms_io){m_read, m_write, m_sync, m_size, m_resize, m_close};
	return &m->io;
}

static int count_ok(void *ctx, uint64_t off, uint64_t len, int alloc)
{
	(void)off; (void)len; (void)alloc;
	(*(int *)ctx)++;
	return 0;
}

/* Random bit flips anywhere in a pool image: open, I/O, queries, check and
 * close return errors or work, never crash (run under ASan in CI). */
TEST(random_damage_never_crashes)
{
	uint64_t seed = getenv("VMS_SEED") ? strtoull(getenv("VMS_SEED"), NULL, 0) : (uint64_t)time(NULL);
	printf("  random_damage_never_crashes: seed %llu (replay with VMS_SEED)\n", (unsigned long long)seed);
	const uint64_t size = 4 * MiB;
	vms_pool_options o = quiet_opts();
	vms_pool *p = NULL;
	REQUIRE(vms_pool_create(&p, memio_new(NULL, size), size, &o) == 0);
	vms_vol_id v, s, c;
	uint8_t *buf = malloc(1 * MiB);
	fill(buf, 1 * MiB, seed);
	CHECK_OK(vms_vol_create(&v, p, 2 * MiB));
	CHECK_OK(vms_vol_write(p, v, buf, 1 * MiB, 0, 0));
	CHECK_OK(vms_vol_snapshot(&s, p, &v, 1));
	CHECK_OK(vms_vol_write(p, v, buf, 8192, 4096, 0));
	CHECK_OK(vms_vol_clone(&c, p, s));
	CHECK_OK(vms_vol_delete(p, s));
	CHECK_OK(vms_pool_commit(p));
	/* keep the image: closing would reap and commit; copy it out instead */
	uint8_t *image = malloc(size);
	memcpy(image, ((memio *)p->io)->buf, size);
	vms_pool_close(p);
	uint64_t x = seed | 1;
	int opened = 0;
	for (int it = 0; it < 300; it++) {
		vms_io *io = memio_new(image, size);
		uint8_t *img = ((memio *)io)->buf;
		int flips = 1 + (int)(x % 4);
		for (int k = 0; k < flips; k++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			/* metadata lives in the first blocks mostly: aim there half the time */
			uint64_t span = (x & 1) ? 64 * 4096 : size;
			img[(x >> 8) % span] ^= (uint8_t)(1u << ((x >> 3) % 8));
		}
		if (vms_pool_open(&p, io, &o) < 0) {
			CHECK(p == NULL);
			continue;
		}
		opened++;
		vms_vol_id ids[16];
		int64_t n = vms_vol_list(ids, 16, p);
		for (int64_t j = 0; j < n && j < 16; j++) {
			int cnt = 0;
			uint64_t u;
			vms_vol_read(p, ids[j], buf, 1 * MiB, 0);
			vms_vol_write(p, ids[j], buf, 4096, 8192, 0);
			vms_vol_block_status(p, ids[j], 0, 1 * MiB, count_ok, &cnt);
			vms_vol_unique_bytes(&u, p, ids[j]);
			vms_vol_diff(p, ids[j], ids[0], count_ok, &cnt);
		}
		vms_check_report rep;
		vms_pool_check(&rep, p, VMS_CHECK_DATA);
		vms_pool_reap_wait(p);
		vms_pool_close(p);
	}
	CHECK(opened > 0);
	free(image);
	free(buf);
}

static void cleanup(void)
{
	char cmd[300];
	if (tmpdir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup failed\n");
	}
}

/* ---- commits that do not stall I/O ------------------------------------------ */

/* A vms_io over a file whose next write, once armed, blocks until the test
 * opens the gate: a commit stuck in its writes, for as long as we like. */
typedef struct gate_io {
	vms_io io;
	vms_io *below;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int armed, blocked, open;
} gate_io;

static int g_read(vms_io *io, void *buf, size_t len, uint64_t off)
{
	gate_io *g = (gate_io *)io;
	return g->below->read(g->below, buf, len, off);
}

static int g_write(vms_io *io, const void *buf, size_t len, uint64_t off)
{
	gate_io *g = (gate_io *)io;
	pthread_mutex_lock(&g->mu);
	if (g->armed) {
		g->armed = 0;
		g->blocked = 1;
		pthread_cond_broadcast(&g->cv);
		while (!g->open)
			pthread_cond_wait(&g->cv, &g->mu);
		g->blocked = 0;
	}
	pthread_mutex_unlock(&g->mu);
	return g->below->write(g->below, buf, len, off);
}

static int g_sync(vms_io *io)
{
	gate_io *g = (gate_io *)io;
	return g->below->sync(g->below);
}

static int g_size(vms_io *io, uint64_t *out)
{
	gate_io *g = (gate_io *)io;
	return g->below->size(g->below, out);
}

static int g_resize(vms_io *io, uint64_t size)
{
	gate_io *g = (gate_io *)io;
	return g->below->resize(g->below, size);
}

static void g_close(vms_io *io)
{
	gate_io *g = (gate_io *)io;
	g->below->close(g->below);
	g->below = NULL;
}

static void *commit_thread(void *arg)
{
	vms_pool *p = arg;
	return (void *)(intptr_t)vms_pool_commit(p);
}

typedef struct flusher {
	vms_pool *p;
	vms_vol_id vol;
	uint64_t off;
	int wrote, rc;
	uint64_t txg_after_write, durable_after_flush;
} flusher;

static void *flush_thread(void *arg)
{
	flusher *f = arg;
	unsigned char buf[4096];
	memset(buf, 0x70 + (int)(f->off >> 20), sizeof(buf)); /* slots 1, 3, 5 */
	f->rc = vms_vol_write(f->p, f->vol, buf, sizeof(buf), f->off, 0);
	pthread_mutex_lock(&f->p->lock);
	f->txg_after_write = f->p->txg; /* the txg the write went to */
	f->wrote = 1;
	pthread_mutex_unlock(&f->p->lock);
	if (f->rc == 0)
		f->rc = vms_vol_flush(f->p, f->vol);
	pthread_mutex_lock(&f->p->lock);
	f->durable_after_flush = f->p->durable_txg;
	pthread_mutex_unlock(&f->p->lock);
	return NULL;
}

static int slot_is(vms_pool *p, vms_vol_id v, uint64_t slot, int val)
{
	unsigned char buf[4096], want[4096];
	memset(want, val, sizeof(want));
	return vms_vol_read(p, v, buf, sizeof(buf), slot << 20) == 0 && !memcmp(buf, want, sizeof(buf));
}

/*
 * While a commit is stuck in its first write (the gate), reads, writes and
 * snapshots go on: the commit holds the exclusive lock only while it closes
 * the transaction.  The closed transaction's 257 index nodes are more than
 * the small cache holds: they stay pinned until written, so reads of them
 * never hit the disk early.  Flushes arriving meanwhile share one commit
 * (group commit) and each returns only once its write is durable.
 */
TEST(io_goes_on_while_a_commit_writes)
{
	gate_io g = {.io = {g_read, g_write, g_sync, g_size, g_resize, g_close}};
	pthread_mutex_init(&g.mu, NULL);
	pthread_cond_init(&g.cv, NULL);
	unlink(path_of("gate.pool"));
	REQUIRE(vms_io_file_open(&g.below, path_of("gate.pool"), 1, 0) == 0);
	vms_pool_options o = quiet_opts();
	o.cache_bytes = 64 * 1024; /* 64 nodes */
	vms_pool *p = NULL;
	REQUIRE(vms_pool_create(&p, &g.io, 64 * MiB, &o) == 0);
	vms_vol_id v;
	CHECK_OK(vms_vol_create(&v, p, 256 * MiB));
	unsigned char buf[4096];
	memset(buf, 1, sizeof(buf));
	for (uint64_t s = 0; s < 256; s++) /* one block per leaf */
		CHECK_OK(vms_vol_write(p, v, buf, sizeof(buf), s << 20, 0));
	CHECK_OK(vms_pool_commit(p));
	memset(buf, 2, sizeof(buf));
	for (uint64_t s = 0; s < 256; s++)
		CHECK_OK(vms_vol_write(p, v, buf, sizeof(buf), s << 20, 0));
	vms_pool_stats st0, st1;
	CHECK_OK(vms_pool_stats_get(&st0, p));

	pthread_mutex_lock(&g.mu);
	g.armed = 1;
	pthread_mutex_unlock(&g.mu);
	pthread_t ct;
	REQUIRE(pthread_create(&ct, NULL, commit_thread, p) == 0);
	pthread_mutex_lock(&g.mu);
	while (!g.blocked)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);

	/* the commit of the 256 rewrites is stuck in its writes: */
	int ok = 1;
	for (uint64_t s = 0; s < 256; s++)
		ok &= slot_is(p, v, s, 2);
	CHECK(ok);
	vms_vol_id snap;
	CHECK_OK(vms_vol_snapshot(&snap, p, &v, 1));
	memset(buf, 3, sizeof(buf));
	for (uint64_t s = 0; s < 256; s += 16) /* under the dirty bound (half the cache) */
		CHECK_OK(vms_vol_write(p, v, buf, sizeof(buf), s << 20, 0));
	flusher fl[3];
	pthread_t ft[3];
	for (int i = 0; i < 3; i++) {
		fl[i] = (flusher){.p = p, .vol = v, .off = (uint64_t)(1 + 2 * i) << 20};
		REQUIRE(pthread_create(&ft[i], NULL, flush_thread, &fl[i]) == 0);
	}
	for (int i = 0; i < 3; i++) { /* their writes complete; their flushes wait */
		for (;;) {
			pthread_mutex_lock(&p->lock);
			int w = fl[i].wrote;
			pthread_mutex_unlock(&p->lock);
			if (w)
				break;
			usleep(1000);
		}
	}
	CHECK_OK(vms_pool_stats_get(&st1, p));
	CHECK(st1.txg == st0.txg); /* nothing durable yet */

	pthread_mutex_lock(&g.mu);
	g.open = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	void *crc;
	pthread_join(ct, &crc);
	CHECK((intptr_t)crc == 0);
	for (int i = 0; i < 3; i++) {
		pthread_join(ft[i], NULL);
		CHECK(fl[i].rc == 0);
		CHECK(fl[i].durable_after_flush >= fl[i].txg_after_write);
	}
	CHECK_OK(vms_pool_stats_get(&st1, p));
	/* the stuck commit, then one commit for all three flushes */
	CHECK(st1.txg == st0.txg + 2);
	for (uint64_t s = 0; s < 256; s++)
		ok &= slot_is(p, v, s, s % 16 == 0 ? 3 : (s == 1 || s == 3 || s == 5) ? 0x70 + (int)(s >> 0) : 2);
	for (uint64_t s = 0; s < 256; s++)
		ok &= slot_is(p, snap, s, 2);
	CHECK(ok);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	p = reopen("gate.pool", &o);
	REQUIRE(p);
	for (uint64_t s = 0; s < 256; s++)
		ok &= slot_is(p, v, s, s % 16 == 0 ? 3 : (s == 1 || s == 3 || s == 5) ? 0x70 + (int)(s >> 0) : 2);
	CHECK(ok);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
	pthread_mutex_destroy(&g.mu);
	pthread_cond_destroy(&g.cv);
}

/* ---- queries in bounded holds ------------------------------------------------ */

typedef struct blockset {
	uint8_t hit[1024];
	uint64_t ranges, outside;
} blockset;

static int mark_blocks(void *ctx, uint64_t off, uint64_t len, int alloc)
{
	blockset *b = ctx;
	b->ranges++;
	if (!alloc || off % MiB || len != 4096 || off / MiB >= 1024)
		b->outside++; /* every changed block sits alone at the start of a MiB */
	else
		b->hit[off / MiB] = 1;
	return 0;
}

/* unique_bytes and diff over trees much larger than one hold of the locks
 * (64 new nodes): 600 leaves, a cache of 64 nodes (misses on the way).  The
 * diff reports exactly the rewritten blocks; unique_bytes says exactly what
 * deleting the snapshot frees. */
TEST(queries_walk_large_trees_in_bounded_holds)
{
	vms_pool_options o = quiet_opts();
	o.cache_bytes = 64 * 1024;
	vms_pool *p = new_pool("q.pool", 64 * MiB, &o);
	REQUIRE(p);
	vms_vol_id v, s1, s2;
	uint8_t buf[4096];
	CHECK_OK(vms_vol_create(&v, p, 1024 * MiB));
	for (uint64_t m = 0; m < 600; m++) { /* one block per leaf (a leaf maps ~1 MiB) */
		memset(buf, (int)(m & 0xff), sizeof(buf));
		CHECK_OK(vms_vol_write(p, v, buf, sizeof(buf), m * MiB, 0));
	}
	CHECK_OK(vms_vol_snapshot(&s1, p, &v, 1));
	CHECK_OK(vms_pool_commit(p));
	blockset want = {0};
	for (uint64_t m = 0; m < 600; m += 3) {
		memset(buf, 0xee, sizeof(buf));
		CHECK_OK(vms_vol_write(p, v, buf, sizeof(buf), m * MiB, 0));
		want.hit[m] = 1;
	}
	CHECK_OK(vms_vol_snapshot(&s2, p, &v, 1));
	CHECK_OK(vms_pool_commit(p));
	blockset got = {0};
	CHECK_OK(vms_vol_diff(p, s1, s2, mark_blocks, &got));
	CHECK(got.outside == 0 && got.ranges == 200);
	CHECK(memcmp(got.hit, want.hit, sizeof(want.hit)) == 0);
	blockset none = {0};
	CHECK_OK(vms_vol_diff(p, s2, v, mark_blocks, &none));
	CHECK(none.ranges == 0);
	uint64_t u1 = 0, u2 = 1;
	CHECK_OK(vms_vol_unique_bytes(&u1, p, s1));
	CHECK_OK(vms_vol_unique_bytes(&u2, p, s2));
	CHECK(u2 == 0);             /* s2 shares everything with the volume */
	CHECK(u1 >= 400 * 4096ull); /* 200 data blocks and 200 leaves at least */
	uint64_t f0 = free_blocks(p);
	CHECK_OK(vms_vol_delete(p, s1));
	CHECK_OK(vms_pool_reap_wait(p));
	CHECK_OK(vms_pool_commit(p));
	CHECK_OK(vms_pool_commit(p));
	CHECK(free_blocks(p) - f0 == u1 / 4096);
	CHECK(check_clean(p));
	CHECK_OK(vms_pool_close(p));
}

__attribute__((destructor)) static void at_end(void)
{
	cleanup();
}

TEST_MAIN()
