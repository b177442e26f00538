/*
 * vmsnap/snapindex.h - a VM's snapshots sorted by time, for retrieval by
 * binary search (the paper's section 3.2.3: quicksort, then O(log n) lookup).
 *
 * Order: by (time, seq).  `time` is the snapshot's time tag (UTC seconds);
 * `seq` is the VM's creation sequence number, unique and increasing per VM.
 * Several snapshots in one second, or a clock that went backwards, thus still
 * have one deterministic order: equal tags are ordered by creation, and a
 * snapshot taken after the clock stepped back sorts by its (earlier) tag,
 * i.e. "latest" means the newest time tag, ties broken by creation order.
 *
 * A second order by (name, time, seq) answers user-name lookups in O(log n).
 *
 * Positions ("ranks") are 0-based in time order.  An index is not thread-
 * safe; the owner serialises access.  Names are copied into the index.
 */
#ifndef VMSNAP_SNAPINDEX_H
#define VMSNAP_SNAPINDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vms_snapindex vms_snapindex;

typedef struct vms_snapindex_entry {
	int64_t time;      /* seconds since the epoch, UTC */
	uint64_t seq;      /* creation sequence within the VM */
	uint64_t id;       /* caller's key (the catalog's row id) */
	const char *name;  /* user name; owned by the index */
} vms_snapindex_entry;

int vms_snapindex_new(vms_snapindex **out);
void vms_snapindex_free(vms_snapindex *idx);

/* Bulk loading: append in any order, then call vms_snapindex_sort() once
 * (quicksort, O(n log n)) before querying. */
int vms_snapindex_add(vms_snapindex *idx, int64_t time, uint64_t seq, uint64_t id, const char *name);
int vms_snapindex_sort(vms_snapindex *idx);

/* Insert keeping both orders sorted (O(log n) search + O(n) move of 4-byte
 * slots; appending in time order is the common case and moves nothing in
 * the time order).  VMS_EEXISTS if (time, seq) is already present. */
int vms_snapindex_insert(vms_snapindex *idx, int64_t time, uint64_t seq, uint64_t id, const char *name);

/* Remove the entry with this (time, seq); VMS_ENOTFOUND if absent. */
int vms_snapindex_remove(vms_snapindex *idx, int64_t time, uint64_t seq);

size_t vms_snapindex_count(const vms_snapindex *idx);

/* Entry at a time-order rank (0 = oldest).  VMS_ENOTFOUND past the end. */
int vms_snapindex_at(vms_snapindex_entry *out, const vms_snapindex *idx, size_t rank);

/* ---- queries: each returns a rank >= 0, or VMS_ENOTFOUND (no message set:
 * the caller knows what the user asked for and says so). */

/* The snapshot `back` positions before the newest (0 = latest). */
int64_t vms_snapindex_latest(const vms_snapindex *idx, uint64_t back);
/* The newest snapshot with time <= t. */
int64_t vms_snapindex_at_or_before(const vms_snapindex *idx, int64_t t);
/* The oldest snapshot with time >= t. */
int64_t vms_snapindex_at_or_after(const vms_snapindex *idx, int64_t t);
/* Snapshots with t1 <= time <= t2: *first rank and *count (0 if none). */
void vms_snapindex_between(size_t *first, size_t *count, const vms_snapindex *idx, int64_t t1, int64_t t2);

/* Exact full name (user name + time tag): the number of matches (0, or 1;
 * more only if the caller inserted duplicates), first one's rank in *rank. */
size_t vms_snapindex_find_exact(int64_t *rank, const vms_snapindex *idx, const char *name, int64_t t);

/* By user name: number of snapshots with that name; their ranks (time
 * order) are written to ranks[0..min(count,cap)-1], oldest first. */
size_t vms_snapindex_find_name(int64_t *ranks, size_t cap, const vms_snapindex *idx, const char *name);

#ifdef __cplusplus
}
#endif
#endif
