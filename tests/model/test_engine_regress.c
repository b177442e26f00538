/*
 * Regression tests of the native pool engine: the smallest reproducers of
 * the bugs the model-based and crash tests found (tests/model/
 * test_engine_model.c and test_engine_crash.c), one test each, named after
 * what must hold.  Each comment says how it was found.
 */
#undef NDEBUG
#include "vmsnap/io_fault.h"
#include "test_engine_model.h"

/* A new pool file with the given index (VMS_INDEX_RADIX or VMS_INDEX_KEYS). */
static vms_pool *fresh_pool_index(char *path, size_t cap, uint64_t size, uint32_t index)
{
	vms_pool *pool = NULL;
	vms_pool_options o = {.commit_interval_ms = UINT32_MAX, .index = index};
	if (model_pool_path(path, cap, "regress") < 0 ||
	    vms_pool_create_file(&pool, path, size, &o) < 0)
		return NULL;
	return pool;
}

static vms_pool *fresh_pool(char *path, size_t cap, uint64_t size)
{
	return fresh_pool_index(path, cap, size, VMS_INDEX_RADIX);
}

/* The same with the versioned-key index (format 3). */
static vms_pool *fresh_keys_pool(char *path, size_t cap, uint64_t size)
{
	return fresh_pool_index(path, cap, size, VMS_INDEX_KEYS);
}

static vms_pool *reopen(vms_pool *pool, const char *path)
{
	vms_pool_options o = {.commit_interval_ms = UINT32_MAX};
	if (vms_pool_close(pool) < 0 || vms_pool_open_file(&pool, path, &o) < 0)
		return NULL;
	return pool;
}

/* Found by test_engine_model (seed 546233693, ASan): after a reopen the
 * id index was allocated for exactly the volumes found, but creating a
 * volume only grows it when its count is a multiple of 64, so the next
 * creates wrote past its end (heap corruption, "realloc(): invalid
 * pointer" without ASan). */
TEST(creating_volumes_after_reopen)
{
	char path[128];
	vms_pool *pool = fresh_pool(path, sizeof(path), 64ull << 20);
	REQUIRE(pool);
	vms_vol_id first;
	CHECK_OK(vms_vol_create(&first, pool, 1 << 20));
	pool = reopen(pool, path);
	REQUIRE(pool);
	vms_vol_id ids[100];
	for (int i = 0; i < 100; i++)
		CHECK_OK(vms_vol_create(&ids[i], pool, 1 << 20));
	for (int i = 0; i < 100; i++) {
		vms_vol_info info;
		CHECK_OK(vms_vol_info_get(&info, pool, ids[i]));
		CHECK(info.id == ids[i] && info.size == (1 << 20));
	}
	CHECK(vms_vol_list(NULL, 0, pool) == 101);
	CHECK_OK(vms_pool_close(pool));
	unlink(path);
}

static int pool_clean(vms_pool *pool)
{
	vms_check_report rep;
	memset(&rep, 0, sizeof(rep));
	int rc = vms_pool_check(&rep, pool, VMS_CHECK_DATA);
	if (rc != 0 || rep.corrupt || rep.leaked_blocks)
		fprintf(stderr, "  check: rc %d corrupt %" PRIu64 " leaked %" PRIu64 ": %s\n", rc,
		        rep.corrupt, rep.leaked_blocks, rep.first_error);
	return rc == 0 && !rep.corrupt && !rep.leaked_blocks;
}

/* Found by test_engine_model (seed 546233693, op 870): shrinking a volume
 * whose size is not a multiple of the block size trimmed [new size rounded
 * up, old size) as an ordinary trim, which keeps partial blocks - so the old
 * last block stayed mapped beyond the new size: the check reported "entry
 * beyond the volume's size" (corrupt) and a leak, and growing the volume
 * again showed the old data instead of zeros. */
TEST(shrinking_drops_the_partial_last_block)
{
	char path[128];
	vms_pool *pool = fresh_pool(path, sizeof(path), 64ull << 20);
	REQUIRE(pool);
	vms_vol_id vol;
	const uint64_t old_size = 892416, new_size = 718336; /* 217.875 and 175.375 blocks */
	unsigned char buf[512], zero[512] = {0};
	memset(buf, 0x5A, sizeof(buf));
	CHECK_OK(vms_vol_create(&vol, pool, old_size));
	CHECK_OK(vms_vol_write(pool, vol, buf, 512, old_size - 512, 0));
	CHECK_OK(vms_vol_resize(pool, vol, new_size));
	CHECK(pool_clean(pool));
	CHECK_OK(vms_vol_resize(pool, vol, old_size));
	CHECK_OK(vms_vol_read(pool, vol, buf, 512, old_size - 512));
	CHECK(memcmp(buf, zero, 512) == 0);
	CHECK_OK(vms_pool_commit(pool));
	CHECK(pool_clean(pool));
	CHECK_OK(vms_pool_close(pool));
	unlink(path);
}

/* Found by test_engine_crash (failed_data_write_*, random_io_errors_*):
 * when the data write of a redirect-on-write fails (EIO or ENOSPC from
 * below), the leaf entry was already pointed at the new, never written
 * block and the old block released: the volume's old data is lost (reads
 * show whatever the new block held), and a commit makes that permanent.
 * A failed write must leave each block old or new - here the old one, since
 * the only data write failed. */
static void failed_write_keeps_old_data(size_t len, uint64_t off, int csum)
{
	char path[128];
	vms_io *file;
	vms_io_fault *f = NULL;
	vms_pool *pool = NULL;
	REQUIRE(model_pool_path(path, sizeof(path), "regress") == 0);
	REQUIRE(vms_io_file_open(&file, path, 1, 0) == 0);
	REQUIRE(vms_io_fault_new(&f, file, 1, 1) == 0);
	vms_pool_options o = {.commit_interval_ms = UINT32_MAX, .data_checksums = csum};
	REQUIRE(vms_pool_create(&pool, vms_io_fault_io(f), 16ull << 20, &o) == 0);
	vms_vol_id vol;
	unsigned char old[16384], buf[16384], got[16384];
	memset(old, 0x11, sizeof(old));
	memset(buf, 0x22, sizeof(buf));
	CHECK_OK(vms_vol_create(&vol, pool, 1 << 20));
	CHECK_OK(vms_vol_write(pool, vol, old, sizeof(old), 0, 0));
	CHECK_OK(vms_pool_commit(pool));
	/* fail every write from now on: no data write of this request lands */
	vms_fault_rule r = {.ops = VMS_FAULT_WRITE, .nth = 1, .repeat = 1, .error = VMS_EIO};
	CHECK(vms_io_fault_add(f, &r) >= 0);
	CHECK(vms_vol_write(pool, vol, buf, len, off, 0) == VMS_EIO);
	vms_io_fault_clear(f);
	CHECK_OK(vms_vol_read(pool, vol, got, sizeof(got), 0));
	CHECK(memcmp(got, old, sizeof(old)) == 0);
	CHECK_OK(vms_pool_commit(pool));
	CHECK_OK(vms_vol_read(pool, vol, got, sizeof(got), 0));
	CHECK(memcmp(got, old, sizeof(old)) == 0);
	CHECK(pool_clean(pool));
	vms_pool_close(pool);
	vms_io_fault_free(f);
	unlink(path);
}

/* Found by test_engine_model (VMS_SEED=779282210, config 3, 64 KiB blocks):
 * a shrink whose old and new sizes end in the same block zeroed nothing
 * (the tail to zero was computed up to the new size's block end, and
 * skipped when that lay past the old size), so a later grow showed the old
 * bytes between the two sizes instead of zeros. */
TEST(shrinking_within_the_last_block_zeroes_the_tail)
{
	char path[128];
	vms_pool *pool = NULL;
	vms_pool_options o = {.commit_interval_ms = UINT32_MAX, .block_size = 65536};
	REQUIRE(model_pool_path(path, sizeof(path), "regress") == 0);
	REQUIRE(vms_pool_create_file(&pool, path, 64ull << 20, &o) == 0);
	vms_vol_id v;
	CHECK_OK(vms_vol_create(&v, pool, 127488)); /* 1 block + 61,952 bytes */
	unsigned char *buf = malloc(308224);
	memset(buf, 0xbe, 127488);
	CHECK_OK(vms_vol_write(pool, v, buf, 127488, 0, 0));
	CHECK_OK(vms_vol_resize(pool, v, 67072));   /* same last block */
	CHECK_OK(vms_vol_resize(pool, v, 308224));
	CHECK_OK(vms_vol_read(pool, v, buf, 308224, 0));
	size_t bad = 308224;
	for (size_t i = 0; i < 308224 && bad == 308224; i++)
		if (buf[i] != (i < 67072 ? 0xbe : 0))
			bad = i;
	CHECK(bad == 308224);
	free(buf);
	CHECK_OK(vms_pool_close(pool));
	unlink(path);
}

TEST(failed_sub_block_write_keeps_the_old_data)
{
	failed_write_keeps_old_data(2048, 4096 + 1024, 0);
}

TEST(failed_full_block_write_keeps_the_old_data)
{
	failed_write_keeps_old_data(8192, 4096, 0);
}

TEST(failed_write_keeps_the_old_data_with_checksums)
{
	failed_write_keeps_old_data(8192, 4096, 1);
}

/* Found by test_engine_stress, format 3 (seed 99220064, config 4): a
 * partial-block zero or trim over a block whose nearest key is an
 * ancestor's tombstone left the chunk's status at 1 (the lookup's "found").
 * When that block ended a chunk (the last block before a multiple of the
 * fanout, 255 at 4 KiB), the status ended the operation: the blocks after
 * it kept their data although the call returned 0. */
TEST(zeroes_after_a_partial_block_over_a_tombstone_reach_the_end)
{
	char path[128];
	vms_pool *pool = fresh_keys_pool(path, sizeof(path), 64ull << 20);
	REQUIRE(pool);
	enum { BS = 4096, N = 4 };
	const uint64_t at = 254 * (uint64_t)BS; /* block 254 ends the first chunk */
	static unsigned char buf[N * BS], got[N * BS], zero[N * BS];
	memset(buf, 0xA5, sizeof(buf));
	vms_vol_id vol, snap;
	CHECK_OK(vms_vol_create(&vol, pool, 4 << 20));
	for (int pass = 0; pass < 2; pass++) { /* write_zeroes, then trim */
		CHECK_OK(vms_vol_write(pool, vol, buf, sizeof(buf), at, 0));
		CHECK_OK(vms_vol_snapshot(&snap, pool, &vol, 1));
		CHECK_OK(vms_vol_write_zeroes(pool, vol, BS, at, 0)); /* a tombstone over the snapshot's */
		CHECK_OK(vms_vol_snapshot(&snap, pool, &vol, 1));     /* now an ancestor's */
		/* the second half of block 254 (over the tombstone: nothing to
		 * do), then blocks 255 and 256 whole */
		uint64_t len = BS / 2 + 2 * BS, off = at + BS / 2;
		CHECK_OK(pass ? vms_vol_trim(pool, vol, len, off) : vms_vol_write_zeroes(pool, vol, len, off, 0));
		CHECK_OK(vms_vol_read(pool, vol, got, sizeof(got), at));
		CHECK(memcmp(got, zero, 3 * BS) == 0);
		CHECK(memcmp(got + 3 * BS, buf, BS) == 0);
	}
	CHECK(pool_clean(pool));
	CHECK_OK(vms_pool_close(pool));
	unlink(path);
}

/* Found by test_engine_model once its volumes grew past one leaf (255
 * blocks at 4 KiB) and its ranges straddled leaf boundaries (seed 2): a
 * shrink unmapped the blocks past the new end but kept the index nodes
 * that held them, now empty, hooked into the tree past the volume's size;
 * the check reported "entry 1 beyond the volume's size" (corrupt) and the
 * nodes as leaked.  With and without a snapshot sharing the nodes. */
TEST(shrinking_drops_the_index_nodes_past_the_end)
{
	char path[128];
	vms_pool *pool = fresh_pool(path, sizeof(path), 64ull << 20);
	REQUIRE(pool);
	static unsigned char buf[64 << 10], got[64 << 10];
	memset(buf, 0x5A, sizeof(buf));
	for (int snap = 0; snap < 2; snap++) {
		vms_vol_id vol, s = 0;
		uint64_t big = 8ull << 20; /* 2,048 blocks: a tree of depth 2 */
		CHECK_OK(vms_vol_create(&vol, pool, big));
		CHECK_OK(vms_vol_write(pool, vol, buf, sizeof(buf), 0, 0));
		CHECK_OK(vms_vol_write(pool, vol, buf, sizeof(buf), 2ull << 20, 0));
		CHECK_OK(vms_vol_write(pool, vol, buf, sizeof(buf), big - sizeof(buf), 0));
		if (snap)
			CHECK_OK(vms_vol_snapshot(&s, pool, &vol, 1));
		CHECK_OK(vms_vol_resize(pool, vol, 700 * 1024 + 512)); /* inside the first leaf */
		CHECK(pool_clean(pool));
		CHECK_OK(vms_vol_resize(pool, vol, big));
		CHECK_OK(vms_vol_read(pool, vol, got, sizeof(got), 2ull << 20));
		CHECK(is_zero(got, sizeof(got)));
		CHECK_OK(vms_vol_read(pool, vol, got, sizeof(got), 0));
		CHECK(memcmp(got, buf, sizeof(buf)) == 0);
		if (snap) {
			CHECK_OK(vms_vol_read(pool, s, got, sizeof(got), big - sizeof(got)));
			CHECK(memcmp(got, buf, sizeof(buf)) == 0);
		}
		CHECK(pool_clean(pool));
		pool = reopen(pool, path);
		REQUIRE(pool);
		CHECK(pool_clean(pool));
	}
	CHECK_OK(vms_pool_close(pool));
	unlink(path);
}

/* Found by running the suite with format 3 as the SR default
 * (tests/integration/test_fault_daemon.sh, part B): after a volume's last
 * snapshot was deleted, the frozen version it left kept its keys while its
 * only child was the live volume, so the blocks the volume overwrote were
 * not freed until its next snapshot, and rewriting a disk on a full pool
 * failed with ENOSPC where format 2 frees them. */
TEST(rewriting_after_deleting_the_last_snapshot_frees_space_format_3)
{
	char path[128];
	vms_pool *pool = fresh_keys_pool(path, sizeof(path), 14ull << 20);
	REQUIRE(pool);
	static unsigned char buf[1 << 20], got[1 << 20];
	vms_vol_id vol, snap;
	CHECK_OK(vms_vol_create(&vol, pool, 8 << 20));
	for (int pass = 0; pass < 3; pass++) {
		memset(buf, 0x30 + pass, sizeof(buf));
		if (pass == 1) { /* the disk is in the snapshot: rewriting it needs the space back */
			CHECK_OK(vms_vol_snapshot(&snap, pool, &vol, 1));
			CHECK_OK(vms_vol_delete(pool, snap));
			CHECK_OK(vms_pool_reap_wait(pool));
		}
		for (int i = 0; i < 8; i++) { /* a MiB at a time: freed blocks come back at commits */
			int rc = vms_vol_write(pool, vol, buf, sizeof(buf), (uint64_t)i << 20, 0);
			if (rc == VMS_ENOSPC) { /* the collector may still be at it */
				CHECK_OK(vms_pool_reap_wait(pool));
				CHECK_OK(vms_pool_commit(pool));
				rc = vms_vol_write(pool, vol, buf, sizeof(buf), (uint64_t)i << 20, 0);
			}
			CHECK_OK(rc);
			CHECK_OK(vms_pool_commit(pool));
		}
		for (int i = 0; i < 8; i++) {
			CHECK_OK(vms_vol_read(pool, vol, got, sizeof(got), (uint64_t)i << 20));
			CHECK(memcmp(got, buf, sizeof(buf)) == 0);
		}
	}
	CHECK_OK(vms_pool_reap_wait(pool));
	CHECK(pool_clean(pool));
	CHECK_OK(vms_pool_close(pool));
	unlink(path);
}

/* Block-sized write of `fill` at off into src, a snapshot of it, and src
 * and the snapshot read it back. */
static int write_then_snapshot_reads_it(vms_pool *pool, vms_vol_id src, int fill, uint64_t off)
{
	unsigned char buf[4096], got[4096];
	vms_vol_id snap;
	memset(buf, fill, sizeof(buf));
	if (vms_vol_write(pool, src, buf, sizeof(buf), off, 0) < 0 ||
	    vms_vol_snapshot(&snap, pool, &src, 1) < 0)
		return 0;
	vms_vol_id who[2] = {src, snap};
	for (int i = 0; i < 2; i++)
		if (vms_vol_read(pool, who[i], got, sizeof(got), off) < 0 ||
		    memcmp(got, buf, sizeof(buf)) != 0)
			return 0;
	return 1;
}

/* Found by test_engine_crash on format 3 (intermittent, likelier under CPU
 * load): a clone reads its source's view-cache entries for blocks it has
 * no key of its own for, checking its own delta region first.  A snapshot
 * of the clone moves what it wrote into the frozen version, so the check
 * missed it and the clone read its source's old data (or a block freed
 * and reused since).  The same for a volume rolled back and then
 * snapshotted.  A freeze now ends the source fallback. */
TEST(a_clone_reads_its_own_writes_after_a_snapshot_of_it_format_3)
{
	char path[128];
	vms_pool *pool = fresh_keys_pool(path, sizeof(path), 64ull << 20);
	REQUIRE(pool);
	unsigned char a[4096], got[4096];
	memset(a, 0xAA, sizeof(a));
	vms_vol_id vol, snap, clone, rolled;
	CHECK_OK(vms_vol_create(&vol, pool, 1 << 20));
	CHECK_OK(vms_vol_write(pool, vol, a, sizeof(a), 8192, 0));
	CHECK_OK(vms_vol_snapshot(&snap, pool, &vol, 1));
	CHECK_OK(vms_vol_read(pool, snap, got, sizeof(got), 8192)); /* snap's entry cached */
	CHECK_OK(vms_vol_clone(&clone, pool, snap));
	CHECK(write_then_snapshot_reads_it(pool, clone, 0xBB, 8192));
	/* a rollback: the volume reads the snapshot's view, then its own */
	CHECK_OK(vms_vol_create(&rolled, pool, 1 << 20));
	CHECK_OK(vms_vol_rollback(pool, rolled, snap));
	CHECK(write_then_snapshot_reads_it(pool, rolled, 0xCC, 8192));
	CHECK_OK(vms_vol_read(pool, snap, got, sizeof(got), 8192));
	CHECK(memcmp(got, a, sizeof(a)) == 0);
	CHECK_OK(vms_pool_reap_wait(pool));
	CHECK(pool_clean(pool));
	CHECK_OK(vms_pool_close(pool));
	unlink(path);
}

static int add_len(void *ctx, uint64_t off, uint64_t len, int allocated)
{
	(void)off;
	if (allocated)
		*(uint64_t *)ctx += len;
	return 0;
}

/* Unique bytes and diff scan a family in batches of keys.  Keys in delta
 * regions (a volume's before its first snapshot, a snapshot's until the
 * collector flushes it) came in one batch from the cursor to the end, so
 * a fully written disk that never had a snapshot took one key per block
 * of it in memory at once; now a region gives a batch at most too, and the
 * batch ends where the first region stopped.  Here a volume and its clone
 * write over a sparse frozen parent: the clone sparsely (fewer keys than a
 * batch, over the whole disk, its region walked first), the volume every
 * block (4 batches): the batches must meet without losing or doubling a
 * key, with the parent's keys in its region and then flushed. */
TEST(queries_over_large_delta_regions_format_3)
{
	char path[128];
	vms_pool *pool = fresh_keys_pool(path, sizeof(path), 256ull << 20);
	REQUIRE(pool);
	static unsigned char buf[1 << 20];
	vms_vol_id vol, clone;
	uint64_t u = 0, d = 0;
	CHECK_OK(vms_vol_create(&vol, pool, 64 << 20));
	for (int pass = 0; pass < 2; pass++) { /* every 8th block: 2,048 keys */
		memset(buf, 0x11 + pass, sizeof(buf));
		for (uint64_t off = 0; off < (64u << 20); off += 32768)
			CHECK_OK(vms_vol_write(pool, pass ? clone : vol, buf, 4096, off, 0));
		if (!pass)
			CHECK_OK(vms_vol_clone(&clone, pool, vol));
	}
	memset(buf, 0xEE, sizeof(buf));
	for (int i = 0; i < 64; i++) /* every block: 16,384 keys */
		CHECK_OK(vms_vol_write(pool, vol, buf, sizeof(buf), (uint64_t)i << 20, 0));
	for (int pass = 0; pass < 2; pass++) { /* the parent's keys in its region, then flushed */
		CHECK_OK(vms_vol_unique_bytes(&u, pool, vol));
		CHECK(u == 64ull << 20);
		CHECK_OK(vms_vol_unique_bytes(&u, pool, clone));
		CHECK(u == 8ull << 20);
		d = 0;
		CHECK_OK(vms_vol_diff(pool, clone, vol, add_len, &d));
		CHECK(d == 64ull << 20);
		CHECK_OK(vms_pool_reap_wait(pool));
	}
	CHECK(pool_clean(pool));
	CHECK_OK(vms_pool_close(pool));
	unlink(path);
}

TEST_MAIN()
