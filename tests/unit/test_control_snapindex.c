/*
 * The time-sorted snapshot index (the paper's retrieval algorithm): order
 * by (time, seq), snapshots in the same second, a clock that went
 * backwards, every query against a brute-force reference on random
 * indexes (seed printed; VMS_SEED replays), incremental inserts and
 * removes equal to a bulk sort, and 1,000,000 entries in one VM
 * (correctness only; speed is in bench/bench_retrieval.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "vmsnap/error.h"
#include "vmsnap/snapindex.h"

static uint64_t rng;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void seed_rng(void)
{
	const char *env = getenv("VMS_SEED");
	uint64_t s = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	fprintf(stderr, "  seed %llu (VMS_SEED to replay)\n", (unsigned long long)s);
	rng = s ? s : 1;
}

static const char *name_at(const vms_snapindex *idx, size_t rank)
{
	vms_snapindex_entry e;
	return vms_snapindex_at(&e, idx, rank) == 0 ? e.name : "?";
}

TEST(empty)
{
	vms_snapindex *idx;
	REQUIRE(vms_snapindex_new(&idx) == 0);
	size_t first = 9, count = 9;
	int64_t r;
	CHECK(vms_snapindex_count(idx) == 0);
	CHECK(vms_snapindex_latest(idx, 0) == VMS_ENOTFOUND);
	CHECK(vms_snapindex_at_or_before(idx, 100) == VMS_ENOTFOUND);
	CHECK(vms_snapindex_at_or_before(idx, INT64_MAX) == VMS_ENOTFOUND);
	CHECK(vms_snapindex_at_or_after(idx, 0) == VMS_ENOTFOUND);
	vms_snapindex_between(&first, &count, idx, 0, 100);
	CHECK(count == 0);
	CHECK(vms_snapindex_find_exact(&r, idx, "a", 1) == 0);
	CHECK(vms_snapindex_find_name(NULL, 0, idx, "a") == 0);
	vms_snapindex_entry e;
	CHECK(vms_snapindex_at(&e, idx, 0) == VMS_ENOTFOUND);
	CHECK(vms_snapindex_remove(idx, 1, 1) == VMS_ENOTFOUND);
	CHECK(vms_snapindex_sort(idx) == 0);
	vms_snapindex_free(idx);
	vms_snapindex_free(NULL);
}

TEST(same_second_and_clock_backwards)
{
	vms_snapindex *idx;
	REQUIRE(vms_snapindex_new(&idx) == 0);
	/* creation order: seq 1..5; the clock stepped back before seq 4 */
	CHECK(vms_snapindex_insert(idx, 100, 1, 11, "a") == 0);
	CHECK(vms_snapindex_insert(idx, 100, 2, 12, "b") == 0);   /* same second */
	CHECK(vms_snapindex_insert(idx, 200, 3, 13, "a") == 0);
	CHECK(vms_snapindex_insert(idx, 150, 4, 14, "c") == 0);   /* clock went back */
	CHECK(vms_snapindex_insert(idx, 100, 5, 15, "a") == 0);   /* back to the first second */
	CHECK(vms_snapindex_insert(idx, 100, 5, 16, "x") == VMS_EEXISTS);
	CHECK(vms_snapindex_count(idx) == 5);
	/* time order: (100,1) (100,2) (100,5) (150,4) (200,3) */
	const char *want[] = {"a", "b", "a", "c", "a"};
	uint64_t want_id[] = {11, 12, 15, 14, 13};
	for (size_t i = 0; i < 5; i++) {
		vms_snapindex_entry e;
		CHECK(vms_snapindex_at(&e, idx, i) == 0);
		CHECK(strcmp(e.name, want[i]) == 0 && e.id == want_id[i]);
	}
	CHECK(vms_snapindex_latest(idx, 0) == 4);        /* newest tag, not newest created */
	CHECK(vms_snapindex_latest(idx, 2) == 2);
	CHECK(vms_snapindex_latest(idx, 5) == VMS_ENOTFOUND);
	CHECK(vms_snapindex_at_or_before(idx, 100) == 2);   /* last of the second */
	CHECK(vms_snapindex_at_or_after(idx, 100) == 0);    /* first of the second */
	CHECK(vms_snapindex_at_or_before(idx, 149) == 2);
	CHECK(vms_snapindex_at_or_after(idx, 101) == 3);
	CHECK(vms_snapindex_at_or_before(idx, 99) == VMS_ENOTFOUND);
	CHECK(vms_snapindex_at_or_after(idx, 201) == VMS_ENOTFOUND);
	CHECK(vms_snapindex_at_or_before(idx, INT64_MAX) == 4);
	CHECK(vms_snapindex_at_or_after(idx, INT64_MIN) == 0);
	size_t first, count;
	vms_snapindex_between(&first, &count, idx, 100, 150);
	CHECK(first == 0 && count == 4);
	vms_snapindex_between(&first, &count, idx, 101, 199);
	CHECK(first == 3 && count == 1);
	vms_snapindex_between(&first, &count, idx, INT64_MIN, INT64_MAX);
	CHECK(first == 0 && count == 5);
	vms_snapindex_between(&first, &count, idx, 150, 100);
	CHECK(count == 0);
	int64_t ranks[8], r = -1;
	CHECK(vms_snapindex_find_name(ranks, 8, idx, "a") == 3);
	CHECK(ranks[0] == 0 && ranks[1] == 2 && ranks[2] == 4);
	CHECK(vms_snapindex_find_name(ranks, 1, idx, "a") == 3 && ranks[0] == 0);
	CHECK(vms_snapindex_find_exact(&r, idx, "a", 100) == 2 && r == 0);
	CHECK(vms_snapindex_find_exact(&r, idx, "c", 150) == 1 && r == 3);
	CHECK(vms_snapindex_find_exact(&r, idx, "c", 100) == 0);
	CHECK(vms_snapindex_find_name(NULL, 0, idx, "") == 0);
	/* remove keeps both orders */
	CHECK(vms_snapindex_remove(idx, 100, 2) == 0);
	CHECK(vms_snapindex_remove(idx, 100, 2) == VMS_ENOTFOUND);
	CHECK(vms_snapindex_count(idx) == 4);
	CHECK(strcmp(name_at(idx, 1), "a") == 0);
	CHECK(vms_snapindex_find_name(ranks, 8, idx, "b") == 0);
	CHECK(vms_snapindex_find_name(ranks, 8, idx, "a") == 3 && ranks[1] == 1);
	vms_snapindex_free(idx);
}

TEST(bulk_sort_refuses_duplicate_keys)
{
	vms_snapindex *idx;
	REQUIRE(vms_snapindex_new(&idx) == 0);
	CHECK(vms_snapindex_add(idx, 5, 1, 1, "a") == 0);
	CHECK(vms_snapindex_add(idx, 5, 1, 2, "b") == 0);
	CHECK(vms_snapindex_sort(idx) == VMS_EEXISTS);
	vms_snapindex_free(idx);
}

/* Brute-force reference over the same entries. */
typedef struct ref_e {
	int64_t time;
	uint64_t seq;
	char name[8];
	int live;
} ref_e;

static int ref_cmp(const void *a, const void *b)
{
	const ref_e *x = a, *y = b;
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

TEST(random_against_reference)
{
	seed_rng();
	for (int round = 0; round < 30 && !test_failures_in_case; round++) {
		size_t n = 1 + rnd() % 400;
		ref_e *ref = calloc(n, sizeof(*ref));
		vms_snapindex *bulk, *inc;
		REQUIRE(vms_snapindex_new(&bulk) == 0 && vms_snapindex_new(&inc) == 0);
		int64_t clock = 1000;
		for (size_t i = 0; i < n; i++) {
			/* a clock that mostly advances, often stays, sometimes steps back */
			uint64_t k = rnd() % 10;
			clock += k < 4 ? 0 : k < 9 ? (int64_t)(rnd() % 5) : -(int64_t)(rnd() % 30);
			ref[i].time = clock;
			ref[i].seq = i + 1;
			snprintf(ref[i].name, sizeof(ref[i].name), "n%u", (unsigned)(rnd() % 6));
			ref[i].live = 1;
			CHECK(vms_snapindex_add(bulk, ref[i].time, ref[i].seq, i, ref[i].name) == 0);
			CHECK(vms_snapindex_insert(inc, ref[i].time, ref[i].seq, i, ref[i].name) == 0);
		}
		CHECK(vms_snapindex_sort(bulk) == 0);
		/* remove a few from the incremental index and the reference */
		for (size_t i = 0; i < n; i++) {
			if (rnd() % 7 == 0) {
				ref[i].live = 0;
				CHECK(vms_snapindex_remove(inc, ref[i].time, ref[i].seq) == 0);
				CHECK(vms_snapindex_remove(bulk, ref[i].time, ref[i].seq) == 0);
			}
		}
		size_t live = 0;
		for (size_t i = 0; i < n; i++)
			if (ref[i].live)
				ref[live++] = ref[i];
		qsort(ref, live, sizeof(*ref), ref_cmp);
		CHECK(vms_snapindex_count(bulk) == live && vms_snapindex_count(inc) == live);
		for (size_t i = 0; i < live; i++) {
			vms_snapindex_entry a, b;
			CHECK(vms_snapindex_at(&a, bulk, i) == 0 && vms_snapindex_at(&b, inc, i) == 0);
			CHECK(a.time == ref[i].time && a.seq == ref[i].seq && strcmp(a.name, ref[i].name) == 0);
			CHECK(b.time == ref[i].time && b.seq == ref[i].seq && b.id == a.id);
		}
		for (int q = 0; q < 200; q++) {
			int64_t t = 900 + (int64_t)(rnd() % 400);
			int64_t before = -1, after = -1;
			for (size_t i = 0; i < live; i++) {
				if (ref[i].time <= t)
					before = (int64_t)i;
				if (after < 0 && ref[i].time >= t)
					after = (int64_t)i;
			}
			int64_t rb = vms_snapindex_at_or_before(inc, t), ra = vms_snapindex_at_or_after(inc, t);
			CHECK(rb == (before < 0 ? VMS_ENOTFOUND : before));
			CHECK(ra == (after < 0 ? VMS_ENOTFOUND : after));
			int64_t t2 = t + (int64_t)(rnd() % 50);
			size_t first, count, want = 0, wfirst = 0;
			for (size_t i = 0; i < live; i++)
				if (ref[i].time >= t && ref[i].time <= t2 && !want++)
					wfirst = i;
			vms_snapindex_between(&first, &count, bulk, t, t2);
			CHECK(count == want && (want == 0 || first == wfirst));
			char nm[8];
			snprintf(nm, sizeof(nm), "n%u", (unsigned)(rnd() % 7));
			int64_t ranks[512];
			size_t got = vms_snapindex_find_name(ranks, 512, inc, nm), k = 0;
			for (size_t i = 0; i < live; i++) {
				if (strcmp(ref[i].name, nm) != 0)
					continue;
				CHECK(k < got && ranks[k] == (int64_t)i);
				k++;
			}
			CHECK(k == got);
			uint64_t back = rnd() % (live + 2);
			int64_t lr = vms_snapindex_latest(bulk, back);
			CHECK(lr == (back < live ? (int64_t)(live - 1 - back) : VMS_ENOTFOUND));
			if (live) {
				size_t pick = rnd() % live;
				int64_t rank = -1;
				size_t m = vms_snapindex_find_exact(&rank, inc, ref[pick].name, ref[pick].time);
				CHECK(m >= 1 && rank >= 0 && ref[rank].time == ref[pick].time &&
				      strcmp(ref[rank].name, ref[pick].name) == 0 && rank <= (int64_t)pick);
			}
		}
		vms_snapindex_free(bulk);
		vms_snapindex_free(inc);
		free(ref);
	}
}

TEST(one_million_entries)
{
	const size_t n = 1000000;
	seed_rng();
	vms_snapindex *idx;
	REQUIRE(vms_snapindex_new(&idx) == 0);
	/* time i/4 (four per second), names cycling over 10, added in a
	 * shuffled order (an unordered catalog scan) */
	uint32_t *perm = malloc(n * sizeof(*perm));
	REQUIRE(perm);
	for (size_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = rnd() % (i + 1);
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t k = 0; k < n; k++) {
		size_t i = perm[k];
		char nm[16];
		snprintf(nm, sizeof(nm), "s%zu", i % 10);
		if (vms_snapindex_add(idx, (int64_t)(i / 4), i + 1, i, nm) < 0) {
			CHECK(0);
			break;
		}
	}
	free(perm);
	REQUIRE(vms_snapindex_sort(idx) == 0);
	REQUIRE(vms_snapindex_count(idx) == n);
	for (size_t i = 0; i < n; i += 997) {
		vms_snapindex_entry e;
		CHECK(vms_snapindex_at(&e, idx, i) == 0 && e.id == i && e.seq == i + 1);
	}
	CHECK(vms_snapindex_latest(idx, 0) == (int64_t)(n - 1));
	CHECK(vms_snapindex_latest(idx, n - 1) == 0);
	for (int q = 0; q < 3000; q++) {
		int64_t t = (int64_t)(rnd() % (n / 4 + 10));
		int64_t b = vms_snapindex_at_or_before(idx, t), a = vms_snapindex_at_or_after(idx, t);
		int64_t last_sec = (int64_t)(n / 4) - 1;
		CHECK(b == (t > last_sec ? (int64_t)n - 1 : t * 4 + 3));
		CHECK(a == (t > last_sec ? VMS_ENOTFOUND : t * 4));
		size_t first, count;
		vms_snapindex_between(&first, &count, idx, t, t + 9);
		if (t <= last_sec - 9)
			CHECK(first == (size_t)t * 4 && count == 40);
		int64_t rank = -1;
		size_t i = (size_t)(rnd() % n);
		char nm[16];
		snprintf(nm, sizeof(nm), "s%zu", i % 10);
		CHECK(vms_snapindex_find_exact(&rank, idx, nm, (int64_t)(i / 4)) == 1 && rank == (int64_t)i);
	}
	int64_t ranks[4];
	CHECK(vms_snapindex_find_name(ranks, 4, idx, "s3") == n / 10);
	CHECK(ranks[0] == 3 && ranks[1] == 13 && ranks[3] == 33);
	/* incremental appends at the end of a big index stay ordered */
	CHECK(vms_snapindex_insert(idx, (int64_t)(n / 4), n + 1, n, "new") == 0);
	CHECK(vms_snapindex_latest(idx, 0) == (int64_t)n);
	CHECK(strcmp(name_at(idx, n), "new") == 0);
	CHECK(vms_snapindex_remove(idx, 0, 1) == 0);
	CHECK(vms_snapindex_count(idx) == n);
	CHECK(vms_snapindex_find_name(ranks, 4, idx, "s0") == n / 10 - 1);
	vms_snapindex_free(idx);
}

TEST_MAIN()
