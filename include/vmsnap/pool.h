/*
 * vmsnap/pool.h - the native pool engine.
 *
 * A pool is one file or block device holding many thin volumes.  Every
 * volume (live disk, snapshot or clone) owns a complete block index (a
 * copy-on-write radix tree), so a read of any volume costs one data I/O
 * whatever the number of snapshots.  Snapshots and clones share tree nodes
 * and data blocks by reference counting (Rodeh, "B-trees, Shadowing, and
 * Clones"); creation is O(1).  See docs/design/engine.md and
 * docs/format.md for the design and the on-disk format.
 *
 * Thread safety: a vms_pool may be used from many threads at once.
 * Ownership: handles returned through `out` parameters belong to the caller.
 * Errors: functions return 0 (or a count) or a negative vms_error_code, with
 * the message in vms_error_last().
 */
#ifndef VMSNAP_POOL_H
#define VMSNAP_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "vmsnap/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vms_pool vms_pool;

/* Volumes are named by a 64-bit id, unique in the pool and never reused.
 * 0 is never a valid id. */
typedef uint64_t vms_vol_id;

#define VMS_SECTOR 512u
#define VMS_MAX_VOLUME_SIZE (16ull << 40)      /* 16 TiB of virtual size */
#define VMS_MIN_BLOCK_SIZE  4096u
#define VMS_MAX_BLOCK_SIZE  65536u

typedef struct vms_pool_options {
	uint32_t block_size;      /* 4096..65536, power of two; 0 = 4096 */
	int data_checksums;       /* store crc32c of every data block in its parent */
	uint64_t cache_bytes;     /* bound on the index node cache; 0 = 64 MiB.  Format 3
	                           * pools add a quarter of it for the view cache
	                           * (resolved block addresses, src/lib/engine/kview.c) */
	uint32_t commit_interval_ms; /* periodic commit; 0 = 5000, UINT32_MAX = never */
	uint32_t reserve_blocks;  /* kept free for delete/commit on a full pool; 0 = default */
	int read_only;            /* vms_pool_open*: never write to the pool (no commit at
	                           * open, no background threads; changes get VMS_EROFS);
	                           * a file is opened O_RDONLY under a shared lock */
	uint32_t index;           /* vms_pool_create: VMS_INDEX_RADIX (format version 2,
	                           * the zero value) or VMS_INDEX_KEYS (format version 3:
	                           * versioned keys, docs/design/index-v3.md; what new
	                           * native SRs use).  Ignored by open. */
	int direct_io;            /* vms_pool_*_file: open the file O_DIRECT (qemu's
	                           * cache=none): data and index I/O bypass the host's
	                           * page cache; VMS_ENOTSUP where the file system has
	                           * no direct I/O.  Not stored in the pool. */
} vms_pool_options;

#define VMS_INDEX_RADIX 0u
#define VMS_INDEX_KEYS  1u

/*
 * Create a new pool of `size` bytes on `io` (which the pool then owns, also
 * on failure).  `opts` may be NULL for defaults.  *out is owned by the caller
 * and released with vms_pool_close().
 */
int vms_pool_create(vms_pool **out, vms_io *io, uint64_t size, const vms_pool_options *opts);

/* Open an existing pool on `io` (owned by the pool, also on failure).
 * `opts` may be NULL; block_size and data_checksums come from the pool. */
int vms_pool_open(vms_pool **out, vms_io *io, const vms_pool_options *opts);

/* Convenience: create or open a pool file by path. */
int vms_pool_create_file(vms_pool **out, const char *path, uint64_t size, const vms_pool_options *opts);
int vms_pool_open_file(vms_pool **out, const char *path, const vms_pool_options *opts);

/* Commit, stop the background threads and release everything.
 * Returns the result of the final commit (the pool is released regardless). */
int vms_pool_close(vms_pool *pool);

/* Make everything written so far durable (commit).  After a crash, the pool
 * reopens at the state of the last successful commit. */
int vms_pool_commit(vms_pool *pool);

/* Grow the pool to `size` bytes. */
int vms_pool_grow(vms_pool *pool, uint64_t size);

/* ---- volumes --------------------------------------------------------- */

typedef enum vms_vol_kind {
	VMS_VOL_VOLUME = 1,   /* writable: a live disk or a clone */
	VMS_VOL_SNAPSHOT = 2  /* read-only point-in-time copy */
} vms_vol_kind;

typedef struct vms_vol_info {
	vms_vol_id id;
	vms_vol_kind kind;
	uint64_t size;            /* virtual size in bytes */
	vms_vol_id origin;        /* volume this was snapshotted/cloned from; 0 = none */
	uint64_t create_txg;      /* commit generation at creation */
	int64_t create_time;      /* seconds since the epoch, UTC */
	uint64_t referenced;      /* bytes of data mapped by this volume */
	uint64_t written;         /* bytes newly written since its previous snapshot
	                           * (for a snapshot: written between its predecessor
	                           * and itself) */
	int deleting;             /* being reclaimed in the background */
} vms_vol_info;

/* Create an empty volume of `size` bytes (multiple of 512, <= 16 TiB). */
int vms_vol_create(vms_vol_id *out, vms_pool *pool, uint64_t size);

/* Snapshot `n` volumes atomically (at one I/O boundary), in O(1) each.
 * out[i] receives the id of the snapshot of vols[i]. */
int vms_vol_snapshot(vms_vol_id *out, vms_pool *pool, const vms_vol_id *vols, size_t n);

/* A writable clone of a volume or snapshot, in O(1). */
int vms_vol_clone(vms_vol_id *out, vms_pool *pool, vms_vol_id src);

/* Make volume `vol` identical to `snap` (any volume or snapshot), in O(1);
 * the volume keeps its id; every other volume and snapshot is untouched.
 * The volume's old blocks are reclaimed in the background. */
int vms_vol_rollback(vms_pool *pool, vms_vol_id vol, vms_vol_id snap);

/* Delete a volume or snapshot.  O(1) now; its blocks that nothing else
 * references are reclaimed by the background reaper, resumably. */
int vms_vol_delete(vms_pool *pool, vms_vol_id vol);

/* Change the virtual size of a writable volume. */
int vms_vol_resize(vms_pool *pool, vms_vol_id vol, uint64_t size);

int vms_vol_info_get(vms_vol_info *out, vms_pool *pool, vms_vol_id vol);

/* List volumes: fills up to `cap` ids, returns the total count (may exceed cap).
 * Volumes being deleted are not listed (vms_vol_info_get still reports them,
 * with deleting = 1, until the reaper has reclaimed them). */
int64_t vms_vol_list(vms_vol_id *out, size_t cap, vms_pool *pool);

/* Bytes that deleting `vol` would free now.  Format 2 walks only its
 * unique part.  Format 3 scans the volume's family once for all its
 * volumes and snapshots and keeps the counts until something that can
 * move one happens (a new block written, a trim, a snapshot, clone,
 * rollback or delete in the family; not an overwrite of a block the
 * volume already wrote since its last snapshot): the questions of a
 * report about many snapshots cost one scan. */
int vms_vol_unique_bytes(uint64_t *out, vms_pool *pool, vms_vol_id vol);

/* ---- I/O ------------------------------------------------------------- */
/* Offsets and lengths are in bytes, multiples of 512.  Reads of unmapped
 * ranges return zeros.  Snapshots refuse writes with VMS_EROFS. */

#define VMS_IO_FUA 1u   /* write: durable before returning */

int vms_vol_read(vms_pool *pool, vms_vol_id vol, void *buf, size_t len, uint64_t off);
int vms_vol_write(vms_pool *pool, vms_vol_id vol, const void *buf, size_t len, uint64_t off,
                  unsigned flags);
int vms_vol_trim(vms_pool *pool, vms_vol_id vol, uint64_t len, uint64_t off);
int vms_vol_write_zeroes(vms_pool *pool, vms_vol_id vol, uint64_t len, uint64_t off,
                         unsigned flags);
/* Flush == commit of the whole pool. */
int vms_vol_flush(vms_pool *pool, vms_vol_id vol);

/* Report the allocation status of [off, off+len): calls `cb` with runs of
 * mapped (allocated=1) and unmapped (allocated=0, reads as zero) bytes in
 * order.  A nonzero return from cb stops the walk and is returned. */
typedef int (*vms_extent_cb)(void *ctx, uint64_t off, uint64_t len, int allocated);
int vms_vol_block_status(vms_pool *pool, vms_vol_id vol, uint64_t off, uint64_t len,
                         vms_extent_cb cb, void *ctx);

/* Changed ranges between two volumes of the same lineage (e.g. two
 * snapshots, or a snapshot and the live volume): calls cb(off, len, 1) for
 * every range whose content may differ.  Format 2 skips shared subtrees,
 * so the cost is proportional to the difference; format 3 scans the
 * family's keys (in bounded batches). */
int vms_vol_diff(vms_pool *pool, vms_vol_id from, vms_vol_id to,
                 vms_extent_cb cb, void *ctx);

/* ---- space and health ------------------------------------------------- */

typedef struct vms_pool_stats {
	uint32_t block_size;
	uint64_t total_blocks;
	uint64_t free_blocks;
	uint64_t data_blocks;      /* blocks holding volume data */
	uint64_t meta_blocks;      /* index, space map and volume table blocks */
	uint64_t reserve_blocks;
	uint64_t volumes;
	uint64_t snapshots;
	uint64_t deleting;         /* volumes queued for reclaim */
	uint64_t txg;              /* last committed generation */
	uint64_t cache_nodes, cache_hits, cache_misses;
	int readonly;              /* set after a failed commit */
	int data_checksums;
	/* meta_blocks by kind: space-map pages and their interior nodes (sized
	 * by the pool, not by the data), volume-table pages and interior nodes,
	 * and the rest: the volume trees' index nodes */
	uint64_t smap_blocks, vtab_blocks, index_blocks;
	uint32_t format_version;   /* on-disk format of the pool as opened: 2, or 3 with the
	                            * versioned-key index (1: a pool of the first format) */
	uint32_t index;            /* VMS_INDEX_RADIX or VMS_INDEX_KEYS */
} vms_pool_stats;

int vms_pool_stats_get(vms_pool_stats *out, vms_pool *pool);

/* Wait until the background reaper has reclaimed every deleted volume
 * (tests and `--wait` flags).  Returns the reaper's error instead when it
 * cannot go on (a damaged tree, a read-only pool). */
int vms_pool_reap_wait(vms_pool *pool);

/* Reaper rate limit in blocks per second (0 = unlimited). */
void vms_pool_set_reap_rate(vms_pool *pool, uint64_t blocks_per_sec);

typedef struct vms_check_report {
	uint64_t nodes_checked, data_checked;
	uint64_t leaked_blocks;     /* space map higher than references: repairable */
	uint64_t corrupt;           /* checksum, shape, bound or refcount-too-low errors */
	char first_error[256];
} vms_check_report;

#define VMS_CHECK_DATA   1u  /* also verify data block checksums */
#define VMS_CHECK_REPAIR 2u  /* fix leaks (only when nothing is corrupt) */

/* Verify commit records, checksums, tree shape and bounds, and recompute
 * every reference count against the space map.  Returns 0 when the pool is
 * clean (leaks alone, when repaired, also count as clean), VMS_ECORRUPT when
 * anything is corrupt; `out` is filled in both cases. */
int vms_pool_check(vms_check_report *out, vms_pool *pool, unsigned flags);

#ifdef __cplusplus
}
#endif
#endif
