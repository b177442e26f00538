/*
 * vmsnap/io_fault.h - a fault-injecting vms_io for tests (after SQLite's
 * testvfs and ZFS's zio_inject).
 *
 * A vms_io_fault wraps another vms_io ("below") and hands out a vms_io that
 * the engine uses as usual.  It can
 *   - fail reads, writes or syncs with VMS_EIO or VMS_ENOSPC: the Nth one,
 *     every one from the Nth on, or each one with probability p (seeded);
 *   - simulate a power cut.  With tracking on, writes are not passed below
 *     until the next successful sync: they wait in a log (reads see them),
 *     and a sync applies the log in order and syncs below.  A power cut
 *     (now, or instead of the Nth write or sync) applies only what a disk
 *     could have kept of the log - nothing, a random subset (so later writes
 *     survive while earlier ones are lost: reordering), a prefix, or a prefix
 *     whose last write is torn at a 512-byte boundary - and then the device
 *     is dead: every later operation fails with VMS_EIO and changes nothing.
 *     The file below is left as it would be after the power loss; the test
 *     closes the pool and reopens it on a fresh vms_io of that file.
 *
 * Ownership: vms_io_fault_new() takes "below" (closed by vms_io_fault_free,
 * not by the wrapper's close).  The vms_io from vms_io_fault_io() may be given
 * to vms_pool_create/open, which then "owns" it: its close() only marks the
 * wrapper closed, so the controller stays usable until vms_io_fault_free().
 *
 * Thread safety: every function may be called from any thread; the state is
 * guarded by one mutex (operations on the file below run under it, which
 * serialises them - fine for tests).
 *
 * Resizes pass straight through (not subject to power cuts); writes in the
 * log past the end of the file below extend size().
 */
#ifndef VMSNAP_IO_FAULT_H
#define VMSNAP_IO_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "vmsnap/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vms_io_fault vms_io_fault;

/* Operation classes, also used as a mask in rules. */
#define VMS_FAULT_READ  1u
#define VMS_FAULT_WRITE 2u
#define VMS_FAULT_SYNC  4u
#define VMS_FAULT_ALL   7u

/* What a power cut keeps of the writes not yet made durable by sync. */
typedef enum vms_fault_cut {
	VMS_CUT_DROP_ALL = 0, /* nothing since the last sync survives */
	VMS_CUT_KEEP_ALL,     /* everything survives (a process crash, not a power cut) */
	VMS_CUT_RANDOM,       /* each write survives with probability 1/2, any order */
	VMS_CUT_PREFIX,       /* the first k writes survive (k random, 0..n) */
	VMS_CUT_TORN,         /* a random prefix, and the next write is torn: a random
	                       * whole number of its 512-byte sectors survive (its first
	                       * sectors, or with probability 1/2 its last ones) */
	VMS_CUT_REORDER,      /* the last writes survive from a random point on, and
	                       * some earlier ones are lost: later writes reach the disk
	                       * before earlier ones */
	VMS_CUT_MODES
} vms_fault_cut;

/* What a rule does when it fires. */
typedef enum vms_fault_action {
	VMS_FAULT_FAIL = 0,   /* the operation fails with `error`; nothing changes */
	VMS_FAULT_CUT         /* power cut instead of the operation (mode `cut`);
	                       * the operation fails with VMS_EIO */
} vms_fault_action;

/* A rule counts the operations of the classes in `ops` from the moment it is
 * added; it fires on the nth one (1-based), and with `repeat` on every one
 * after that too.  With nth == 0 it fires on each operation with probability
 * `probability` (0..1, from the controller's seed).  A CUT rule fires once. */
typedef struct vms_fault_rule {
	unsigned ops;               /* VMS_FAULT_READ | ... */
	uint64_t nth;
	int repeat;
	double probability;
	vms_fault_action action;
	int error;                  /* VMS_EIO or VMS_ENOSPC (FAIL); 0 = VMS_EIO */
	vms_fault_cut cut;          /* CUT */
} vms_fault_rule;

typedef struct vms_io_fault_stats {
	uint64_t reads, writes, syncs;          /* calls seen (including failed ones) */
	uint64_t bytes_read, bytes_written;
	uint64_t failed;                        /* operations failed by a rule or a dead device */
	uint64_t pending;                       /* writes waiting for a sync (tracking on) */
	uint64_t pending_bytes;
	uint64_t cuts;                          /* power cuts (0 or 1 until revived) */
	uint64_t cut_kept, cut_dropped;         /* writes kept/dropped by the last cut */
	uint64_t cut_torn;                      /* 1 when the last cut tore a write */
	int dead;
	int closed;                             /* the wrapper's close() was called */
} vms_io_fault_stats;

/*
 * Wrap `below` (owned by the controller from now on, also on failure).
 * `track` = 1 keeps unsynced writes in the log (power cuts drop them);
 * 0 passes writes straight through (a power cut then behaves as KEEP_ALL).
 * `seed` drives every random choice.  *out is owned by the caller.
 */
int vms_io_fault_new(vms_io_fault **out, vms_io *below, int track, uint64_t seed);

/* The vms_io to hand to the engine (same pointer every call). */
vms_io *vms_io_fault_io(vms_io_fault *f);

/* Add a rule (up to 16 active).  Returns the rule's index or VMS_EINVAL. */
int vms_io_fault_add(vms_io_fault *f, const vms_fault_rule *rule);

/* Remove every rule (counters and the log stay). */
void vms_io_fault_clear(vms_io_fault *f);

/* Power cut now with mode `cut`: the log is applied as the mode says and
 * the device dies.  Returns 0, or the error of the file below. */
int vms_io_fault_cut(vms_io_fault *f, vms_fault_cut cut);

/* Bring a dead device back (after the test closed the pool): the rules are
 * removed, the log is empty, counters stay.  The wrapper's close flag is
 * cleared, so the same controller can be handed to vms_pool_open again. */
void vms_io_fault_revive(vms_io_fault *f);

void vms_io_fault_stats_get(vms_io_fault_stats *out, vms_io_fault *f);

/* Release the controller and close `below`.  Writes still in the log are
 * applied first (the process exits, the page cache survives) unless the
 * device is dead.  The wrapper's vms_io must no longer be in use (close the
 * pool first). */
void vms_io_fault_free(vms_io_fault *f);

/* Short name of a cut mode ("drop-all", ...), for test logs. */
const char *vms_fault_cut_name(vms_fault_cut cut);

#ifdef __cplusplus
}
#endif
#endif
