/*
 * Time-sorted snapshot index (see vmsnap/snapindex.h).
 *
 * Layout: entries live in a slot pool (parallel arrays time/seq/id/name
 * offset, names in one arena) that only grows; two permutations of 32-bit
 * slot numbers give the orders:
 *   torder: slots sorted by (time, seq)          -> ranks, time queries
 *   norder: slots sorted by (name, time, seq)    -> user-name lookups
 * Both hold exactly the live slots.  Keys (time, seq) are unique, so both
 * orders are total and every query result is deterministic.
 *
 * Sorting is the paper's quicksort: median-of-three pivot, insertion sort
 * below 16 elements, recursion into the smaller side only (stack depth
 * O(log n) whatever the input, e.g. already sorted catalogs).
 *
 * Memory at 1,000,000 snapshots: 8+8+8+8 bytes per slot plus 2x4 for the
 * orders plus the names, about 50 MB with 10-byte names.
 */
#include <stdlib.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/snapindex.h"

#define MAX_ENTRIES 0xFFFFFFF0u

struct vms_snapindex {
	int64_t *time;
	uint64_t *seq, *id, *name_off;
	size_t nslots, cap;
	char *arena;
	size_t arena_len, arena_cap;
	uint32_t *torder, *norder;
	size_t count;     /* live entries: length of torder and norder */
	int sorted;       /* torder/norder valid (cleared by add) */
};

int vms_snapindex_new(vms_snapindex **out)
{
	vms_snapindex *idx = calloc(1, sizeof(*idx));
	if (!idx)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	idx->sorted = 1;
	*out = idx;
	return 0;
}

void vms_snapindex_free(vms_snapindex *idx)
{
	if (!idx)
		return;
	free(idx->time);
	free(idx->seq);
	free(idx->id);
	free(idx->name_off);
	free(idx->arena);
	free(idx->torder);
	free(idx->norder);
	free(idx);
}

static int grow_array(void **p, size_t elem, size_t ncap)
{
	void *n = realloc(*p, elem * ncap);
	if (!n)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	*p = n;
	return 0;
}

/* Append a slot to the pool; returns its number or a negative code. */
static int64_t slot_new(vms_snapindex *idx, int64_t time, uint64_t seq, uint64_t id, const char *name)
{
	int rc;
	if (idx->nslots >= MAX_ENTRIES)
		return vms_error_set(VMS_ENOSPC, "snapshot index is full");
	if (idx->nslots == idx->cap) {
		size_t ncap = idx->cap ? idx->cap * 2 : 64;
		if ((rc = grow_array((void **)&idx->time, sizeof(int64_t), ncap)) < 0 ||
		    (rc = grow_array((void **)&idx->seq, sizeof(uint64_t), ncap)) < 0 ||
		    (rc = grow_array((void **)&idx->id, sizeof(uint64_t), ncap)) < 0 ||
		    (rc = grow_array((void **)&idx->name_off, sizeof(uint64_t), ncap)) < 0 ||
		    (rc = grow_array((void **)&idx->torder, sizeof(uint32_t), ncap)) < 0 ||
		    (rc = grow_array((void **)&idx->norder, sizeof(uint32_t), ncap)) < 0)
			return rc;
		idx->cap = ncap;
	}
	size_t nl = strlen(name ? name : "") + 1;
	if (idx->arena_len + nl > idx->arena_cap) {
		size_t ncap = idx->arena_cap ? idx->arena_cap : 1024;
		while (ncap < idx->arena_len + nl)
			ncap *= 2;
		if ((rc = grow_array((void **)&idx->arena, 1, ncap)) < 0)
			return rc;
		idx->arena_cap = ncap;
	}
	memcpy(idx->arena + idx->arena_len, name ? name : "", nl);
	size_t s = idx->nslots++;
	idx->time[s] = time;
	idx->seq[s] = seq;
	idx->id[s] = id;
	idx->name_off[s] = idx->arena_len;
	idx->arena_len += nl;
	return (int64_t)s;
}

static inline const char *slot_name(const vms_snapindex *idx, uint32_t s)
{
	return idx->arena + idx->name_off[s];
}

/* (time, seq) order of slot a versus key. */
static inline int cmp_time_key(const vms_snapindex *idx, uint32_t a, int64_t t, uint64_t q)
{
	if (idx->time[a] != t)
		return idx->time[a] < t ? -1 : 1;
	if (idx->seq[a] != q)
		return idx->seq[a] < q ? -1 : 1;
	return 0;
}

static int cmp_time(const vms_snapindex *idx, uint32_t a, uint32_t b)
{
	return cmp_time_key(idx, a, idx->time[b], idx->seq[b]);
}

static int cmp_name(const vms_snapindex *idx, uint32_t a, uint32_t b)
{
	int c = strcmp(slot_name(idx, a), slot_name(idx, b));
	return c ? c : cmp_time(idx, a, b);
}

typedef int (*cmp_fn)(const vms_snapindex *idx, uint32_t a, uint32_t b);

static void insertion_sort(const vms_snapindex *idx, uint32_t *v, size_t n, cmp_fn cmp)
{
	for (size_t i = 1; i < n; i++) {
		uint32_t x = v[i];
		size_t j = i;
		while (j > 0 && cmp(idx, v[j - 1], x) > 0) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
}

static void quicksort(const vms_snapindex *idx, uint32_t *v, size_t n, cmp_fn cmp)
{
	while (n > 16) {
		/* median of three to the middle, then Hoare partition */
		size_t mid = n / 2;
		uint32_t t;
		if (cmp(idx, v[mid], v[0]) < 0) { t = v[mid]; v[mid] = v[0]; v[0] = t; }
		if (cmp(idx, v[n - 1], v[0]) < 0) { t = v[n - 1]; v[n - 1] = v[0]; v[0] = t; }
		if (cmp(idx, v[n - 1], v[mid]) < 0) { t = v[n - 1]; v[n - 1] = v[mid]; v[mid] = t; }
		uint32_t pivot = v[mid];
		size_t i = 0, j = n - 1;
		for (;;) {
			while (cmp(idx, v[i], pivot) < 0)
				i++;
			while (cmp(idx, v[j], pivot) > 0)
				j--;
			if (i >= j)
				break;
			t = v[i]; v[i] = v[j]; v[j] = t;
			i++;
			j--;
		}
		/* [0, j] <= pivot <= [j+1, n) */
		size_t left = j + 1, right = n - left;
		if (left < right) {
			quicksort(idx, v, left, cmp);
			v += left;
			n = right;
		} else {
			quicksort(idx, v + left, right, cmp);
			n = left;
		}
	}
	insertion_sort(idx, v, n, cmp);
}

int vms_snapindex_add(vms_snapindex *idx, int64_t time, uint64_t seq, uint64_t id, const char *name)
{
	int64_t s = slot_new(idx, time, seq, id, name);
	if (s < 0)
		return (int)s;
	idx->torder[idx->count] = (uint32_t)s;
	idx->norder[idx->count] = (uint32_t)s;
	idx->count++;
	idx->sorted = 0;
	return 0;
}

int vms_snapindex_sort(vms_snapindex *idx)
{
	quicksort(idx, idx->torder, idx->count, cmp_time);
	quicksort(idx, idx->norder, idx->count, cmp_name);
	for (size_t i = 1; i < idx->count; i++)
		if (cmp_time(idx, idx->torder[i - 1], idx->torder[i]) == 0)
			return vms_error_set(VMS_EEXISTS, "two snapshots with time %lld and sequence %llu",
			                     (long long)idx->time[idx->torder[i]],
			                     (unsigned long long)idx->seq[idx->torder[i]]);
	idx->sorted = 1;
	return 0;
}

/* First position in torder whose key is >= (t, q). */
static size_t lower_time(const vms_snapindex *idx, int64_t t, uint64_t q)
{
	size_t lo = 0, hi = idx->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cmp_time_key(idx, idx->torder[mid], t, q) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* First position in norder whose key is >= (name, t, q). */
static size_t lower_name(const vms_snapindex *idx, const char *name, int64_t t, uint64_t q)
{
	size_t lo = 0, hi = idx->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t s = idx->norder[mid];
		int c = strcmp(slot_name(idx, s), name);
		if (!c)
			c = cmp_time_key(idx, s, t, q);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int vms_snapindex_insert(vms_snapindex *idx, int64_t time, uint64_t seq, uint64_t id, const char *name)
{
	int rc;
	if (!idx->sorted && (rc = vms_snapindex_sort(idx)) < 0)
		return rc;
	size_t tp = lower_time(idx, time, seq);
	if (tp < idx->count && cmp_time_key(idx, idx->torder[tp], time, seq) == 0)
		return vms_error_set(VMS_EEXISTS, "snapshot with time %lld and sequence %llu already "
		                     "indexed", (long long)time, (unsigned long long)seq);
	size_t np = lower_name(idx, name ? name : "", time, seq);
	int64_t s = slot_new(idx, time, seq, id, name);
	if (s < 0)
		return (int)s;
	memmove(idx->torder + tp + 1, idx->torder + tp, (idx->count - tp) * sizeof(uint32_t));
	idx->torder[tp] = (uint32_t)s;
	memmove(idx->norder + np + 1, idx->norder + np, (idx->count - np) * sizeof(uint32_t));
	idx->norder[np] = (uint32_t)s;
	idx->count++;
	return 0;
}

int vms_snapindex_remove(vms_snapindex *idx, int64_t time, uint64_t seq)
{
	int rc;
	if (!idx->sorted && (rc = vms_snapindex_sort(idx)) < 0)
		return rc;
	size_t tp = lower_time(idx, time, seq);
	if (tp >= idx->count || cmp_time_key(idx, idx->torder[tp], time, seq) != 0)
		return VMS_ENOTFOUND;
	uint32_t s = idx->torder[tp];
	size_t np = lower_name(idx, slot_name(idx, s), time, seq);
	memmove(idx->torder + tp, idx->torder + tp + 1, (idx->count - tp - 1) * sizeof(uint32_t));
	memmove(idx->norder + np, idx->norder + np + 1, (idx->count - np - 1) * sizeof(uint32_t));
	idx->count--;
	/* The slot stays in the pool (unreferenced) until the index is freed;
	 * the control layer rebuilds indexes from the catalog when it reopens. */
	return 0;
}

size_t vms_snapindex_count(const vms_snapindex *idx) { return idx->count; }

int vms_snapindex_at(vms_snapindex_entry *out, const vms_snapindex *idx, size_t rank)
{
	if (rank >= idx->count)
		return VMS_ENOTFOUND;
	uint32_t s = idx->torder[rank];
	out->time = idx->time[s];
	out->seq = idx->seq[s];
	out->id = idx->id[s];
	out->name = slot_name(idx, s);
	return 0;
}

int64_t vms_snapindex_latest(const vms_snapindex *idx, uint64_t back)
{
	if (back >= idx->count)
		return VMS_ENOTFOUND;
	return (int64_t)(idx->count - 1 - back);
}

int64_t vms_snapindex_at_or_before(const vms_snapindex *idx, int64_t t)
{
	if (t == INT64_MAX)
		return idx->count ? (int64_t)idx->count - 1 : VMS_ENOTFOUND;
	size_t p = lower_time(idx, t + 1, 0); /* first with time > t */
	return p ? (int64_t)p - 1 : VMS_ENOTFOUND;
}

int64_t vms_snapindex_at_or_after(const vms_snapindex *idx, int64_t t)
{
	size_t p = lower_time(idx, t, 0);
	return p < idx->count ? (int64_t)p : VMS_ENOTFOUND;
}

void vms_snapindex_between(size_t *first, size_t *count, const vms_snapindex *idx, int64_t t1, int64_t t2)
{
	*first = 0;
	*count = 0;
	if (t1 > t2)
		return;
	size_t a = lower_time(idx, t1, 0);
	size_t b = t2 == INT64_MAX ? idx->count : lower_time(idx, t2 + 1, 0);
	*first = a;
	*count = b > a ? b - a : 0;
}

size_t vms_snapindex_find_exact(int64_t *rank, const vms_snapindex *idx, const char *name, int64_t t)
{
	size_t n = 0;
	for (size_t p = lower_time(idx, t, 0); p < idx->count && idx->time[idx->torder[p]] == t; p++) {
		if (strcmp(slot_name(idx, idx->torder[p]), name) == 0) {
			if (!n && rank)
				*rank = (int64_t)p;
			n++;
		}
	}
	return n;
}

size_t vms_snapindex_find_name(int64_t *ranks, size_t cap, const vms_snapindex *idx, const char *name)
{
	size_t n = 0;
	for (size_t p = lower_name(idx, name, INT64_MIN, 0);
	     p < idx->count && strcmp(slot_name(idx, idx->norder[p]), name) == 0; p++) {
		if (n < cap) {
			uint32_t s = idx->norder[p];
			ranks[n] = (int64_t)lower_time(idx, idx->time[s], idx->seq[s]);
		}
		n++;
	}
	return n;
}
