/*
 * vmsnap/policy.h - snapshot policies: a schedule, retention classes with
 * Proxmox's prune semantics, holds; and the per-VM analysis report.
 *
 * The library is pure: no clock, no threads, no global state, no I/O.  The
 * caller (vmsnapd's scheduler, the control module's policy.* ops) passes
 * "now" in, stores the canonical spec text where it likes (the catalog's
 * policy table) and acts on the decisions.  docs/policy.md describes the
 * format and the rules; this header is the C contract.
 *
 * Everything is UTC: calendar schedules, the hour/day/ISO-week/month/year
 * periods of the retention classes, and every time printed.  Times are
 * seconds since the epoch in [0, VMS_POLICY_TIME_MAX] (1970..9999).
 *
 * Functions returning int return 0 or a negative vms_error_code with a
 * message (vms_error_last()).  Parse errors name the field:
 *   "policy: keep.daily must be an integer 0..1000000, not -1"
 */
#ifndef VMSNAP_POLICY_H
#define VMSNAP_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "vmsnap/json.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_POLICY_TIME_MAX INT64_C(253402300799)  /* 9999-12-31T23:59:59Z */
#define VMS_POLICY_NAME_MAX 64                     /* as VMS_NAME_MAX */
#define VMS_POLICY_KEEP_MAX 1000000u               /* per retention class */
#define VMS_POLICY_INTERVAL_MIN 60                 /* seconds */
#define VMS_POLICY_INTERVAL_MAX (366 * 86400)

/* "Never": returned by vms_policy_next_run() for a disabled policy or one
 * without a schedule; passed as last_run when the policy never ran. */
#define VMS_POLICY_NEVER INT64_MAX
#define VMS_POLICY_NO_RUN INT64_MIN

typedef enum vms_schedule_kind {
	VMS_SCHEDULE_NONE = 0,   /* retention only: no automatic snapshots */
	VMS_SCHEDULE_INTERVAL,   /* every N seconds, aligned to the epoch (UTC) */
	VMS_SCHEDULE_DAILY,      /* at HH:MM every day */
	VMS_SCHEDULE_WEEKLY,     /* on a weekday at HH:MM */
	VMS_SCHEDULE_MONTHLY     /* on day D (clamped to the month's last day) at HH:MM */
} vms_schedule_kind;

typedef struct vms_schedule {
	vms_schedule_kind kind;
	int64_t interval;        /* INTERVAL: seconds, VMS_POLICY_INTERVAL_MIN..MAX */
	unsigned minute_of_day;  /* DAILY, WEEKLY, MONTHLY: 0..1439 */
	unsigned weekday;        /* WEEKLY: 0 = Monday .. 6 = Sunday (ISO order) */
	unsigned mday;           /* MONTHLY: 1..31 */
} vms_schedule;

/* The retention classes, in the order Proxmox processes them. */
typedef enum vms_keep_class {
	VMS_KEEP_LAST = 0,
	VMS_KEEP_HOURLY,
	VMS_KEEP_DAILY,
	VMS_KEEP_WEEKLY,
	VMS_KEEP_MONTHLY,
	VMS_KEEP_YEARLY,
	VMS_KEEP_CLASSES
} vms_keep_class;

/* Counts per class; 0 = class not used.  All zero = keep everything
 * (Proxmox's keep-all): a policy without retention never removes. */
typedef struct vms_policy_keep {
	uint32_t n[VMS_KEEP_CLASSES];
} vms_policy_keep;

/* A parsed, validated policy.  A plain value: copy it freely. */
typedef struct vms_policy {
	vms_schedule schedule;
	vms_policy_keep keep;
	char name[VMS_POLICY_NAME_MAX + 1];  /* user name of automatic snapshots */
	int enabled;                         /* 0: no automatic snapshots, no automatic prune */
	int prune_manual;                    /* 1: snapshots made by hand are pruned too */
} vms_policy;

/* "last", "hourly", ... (the JSON key) and "keep-last", ... (Proxmox's name). */
const char *vms_keep_class_key(int cls);
const char *vms_keep_class_name(int cls);

/* ---- spec: parse, validate, serialise ------------------------------------
 *
 * {"schedule": "hourly" | "every 15m" | "daily 02:30" | "weekly sun 03:00" |
 *              "monthly 1 04:00" | {"interval":900} | "none",
 *  "keep": {"last":3,"hourly":24,"daily":7,"weekly":4,"monthly":6,"yearly":1},
 *  "name": "auto", "enabled": true, "prune_manual": false}
 * Every member is optional (defaults: schedule none, keep all, name "auto",
 * enabled, prune_manual false); unknown members are refused. */

/* The defaults above. */
void vms_policy_init(vms_policy *p);

/* Parse `len` bytes of JSON text.  *out is only written on success. */
int vms_policy_parse(vms_policy *out, const char *text, size_t len);
/* The same from an already parsed JSON object. */
int vms_policy_from_json(vms_policy *out, const vms_json *obj);
/* Validate a policy built in C (ranges, name): 0 or VMS_EINVAL. */
int vms_policy_validate(const vms_policy *p);

/* Canonical JSON object: every top-level member, in the order schedule,
 * keep, name, enabled, prune_manual; the schedule as its canonical string;
 * keep classes in class order, zero counts left out.  Parsing the
 * canonical text gives the same policy back, and serialising that gives
 * the same text.  *out owned by the caller. */
int vms_policy_to_json(vms_json **out, const vms_policy *p);
/* The same as compact text (malloc'd, caller frees): what the catalog stores. */
int vms_policy_serialize(char **out, const vms_policy *p);

/* Parse / format a schedule string alone ("every 15m", ...).  `cap` >= 32. */
int vms_schedule_parse(vms_schedule *out, const char *s);
int vms_schedule_format(char *out, size_t cap, const vms_schedule *s);

/* ---- schedule -------------------------------------------------------------
 *
 * The schedule is a fixed set of UTC instants ("slots"): every multiple of
 * the interval since the epoch, or every calendar point.  A run stands for
 * the newest slot at or before the time it happens.
 *
 *   last_run == VMS_POLICY_NO_RUN: the policy never ran; the first run is
 *     the first slot at or after now (creating a policy does not snapshot
 *     at once).
 *   last_run <= now: the next run is the first slot after last_run.  If
 *     that slot is already past, the run is due now, and every further
 *     slot up to now is collapsed into this same run: *missed counts the
 *     slots skipped that way (0 = on time).  After the run the caller sets
 *     last_run = now, so however long the daemon was down, it catches up
 *     with exactly ONE snapshot, never a burst.
 *     Exception: when now is already in the last quarter of the newest
 *     slot's period (e.g. 10:50 for an hourly 10:00 slot), the run is left
 *     to the next slot (11:00), which then stands for the skipped ones too;
 *     so two runs are never closer together than a quarter period.
 *   last_run > now: the clock went backwards (or last_run was written by a
 *     clock that was ahead).  The next run is the first slot after now;
 *     nothing is due at once and nothing is counted as missed.
 *
 * *next is the due time; the caller runs when *next <= now.  A disabled
 * policy or one without a schedule gives VMS_POLICY_NEVER.  missed may be
 * NULL.  VMS_EINVAL for times outside 0..VMS_POLICY_TIME_MAX. */
int vms_policy_next_run(int64_t *next, uint64_t *missed, const vms_policy *p, int64_t last_run,
                        int64_t now);

/* The first slot of `s` strictly after t, and the newest slot at or before
 * t (VMS_ENOTFOUND if none / the schedule is NONE). */
int vms_schedule_next_after(int64_t *out, const vms_schedule *s, int64_t t);
int vms_schedule_prev_at_or_before(int64_t *out, const vms_schedule *s, int64_t t);

/* ---- prune ----------------------------------------------------------------
 *
 * Exactly proxmox-backup's compute_prune_info() (pbs-datastore/src/prune.rs)
 * for the classes, with two vmsnap rules around it (docs/policy.md):
 *   - held snapshots are kept and not counted by any class (Proxmox's
 *     "protected"); snapshots made by hand likewise unless prune_manual;
 *   - the newest snapshot is never removed.
 * The result does not depend on "now": a clock that jumps forward prunes
 * nothing more than before. */

typedef struct vms_prune_snap {
	int64_t time;             /* the snapshot's time tag, UTC seconds */
	uint64_t id;              /* caller's key, unique; among equal times a
	                           * larger id is the newer (pass the creation
	                           * sequence or the catalog row id) */
	int held;                 /* held: never removed */
	const char *hold_reason;  /* optional: the hold tag ("backup"), up to 64
	                           * characters shown in the reason */
	int manual;               /* made by hand, not by the policy */
} vms_prune_snap;

/* Why a snapshot is kept or removed (bits of vms_prune_decision.why). */
#define VMS_PRUNE_WHY_CLASS   0x01u  /* kept by class `cls` for `period` */
#define VMS_PRUNE_WHY_HELD    0x02u
#define VMS_PRUNE_WHY_MANUAL  0x04u  /* made by hand, outside the policy */
#define VMS_PRUNE_WHY_NEWEST  0x08u
#define VMS_PRUNE_WHY_KEEPALL 0x10u  /* no retention class set */
#define VMS_PRUNE_WHY_COVERED 0x20u  /* removed: a newer snapshot is `cls`'s pick for `period` */
#define VMS_PRUNE_WHY_BEYOND  0x40u  /* removed: beyond every class's count */

typedef struct vms_prune_decision {
	uint64_t id;
	int64_t time;
	int keep;          /* 1 keep, 0 remove */
	unsigned why;      /* VMS_PRUNE_WHY_* */
	int cls;           /* vms_keep_class for WHY_CLASS / WHY_COVERED, else -1 */
	char period[24];   /* that class's period: "2026-11-23T10", "2026-11-23",
	                    * "2026-W48", "2026-11", "2026", or "#2" for keep-last */
	char reason[160];  /* every reason, "; "-separated, e.g.
	                    * "keep-daily 2026-11-23; newest" or "held: backup" */
} vms_prune_decision;

/* Decide for each of the n snapshots (any order); out[i] answers snaps[i].
 * *out is malloc'd (caller frees with free()); n == 0 gives *out = NULL.
 * VMS_EINVAL for duplicate ids or times out of range. */
int vms_prune_compute(vms_prune_decision **out, const vms_policy *p, const vms_prune_snap *snaps,
                      size_t n);

/* The dry-run result as JSON:
 *   {"keep":K,"remove":R,"snapshots":[{"id","time","time_iso","action":"keep"|"remove",
 *    "reasons":["keep-daily 2026-11-23","newest"]}, ...]}  (newest first).
 * *out owned by the caller. */
int vms_prune_to_json(vms_json **out, const vms_prune_decision *d, size_t n);

/* ---- calendar helpers (UTC) --------------------------------------------- */

/* "YYYY-MM-DDTHH:MM:SSZ" into out (>= 21 bytes). */
int vms_policy_time_iso(char *out, size_t cap, int64_t t);

/* ---- the per-VM report ----------------------------------------------------
 *
 * Figures per snapshot come from the backend (stats op); a figure the
 * backend cannot tell is -1 and becomes null.  */

typedef struct vms_report_snap {
	const char *uuid;         /* may be NULL */
	const char *name;         /* full name; may be NULL */
	uint64_t id;              /* as for prune */
	int64_t time;
	int64_t referenced;       /* bytes mapped; -1 unknown */
	int64_t unique;           /* bytes only it holds; -1 unknown */
	int64_t written;          /* bytes written since its predecessor; -1 unknown */
	uint32_t chain_depth;     /* 1 for vmsnap's non-chained snapshots; >1 for
	                           * an imported backing chain; 0 is taken as 1 */
	int held;
	const char *hold_reason;
	int manual;
} vms_report_snap;

typedef struct vms_report_input {
	const char *vm;           /* may be NULL */
	const char *vm_uuid;      /* may be NULL */
	int64_t now;
	const vms_policy *policy; /* NULL: no policy, nothing would be pruned */
	const vms_report_snap *snaps;
	size_t n;
} vms_report_input;

/* Build the report (docs/policy.md lists the members):
 *   {"vm","vm_uuid","now_time","now_time_iso","snapshot_count","held_count","manual_count",
 *    "oldest","newest" ({"uuid","name","time","time_iso","age_seconds"} or null),
 *    "age_seconds":{"min","max","median"} | null,
 *    "space":{"referenced","unique","written"},                 (sums; null if unknown)
 *    "growth":{"referenced_bytes_per_day","written_bytes_per_day","samples"},
 *    "chain_depth":{"max","chained_snapshots"},
 *    "policy": <canonical spec> | null,
 *    "prune":{"keep","remove","unique_bytes_freed"} | null,
 *    "snapshots":[{"uuid","name","time","time_iso","age_seconds","id","referenced",
 *                  "unique","written","chain_depth","held","manual",
 *                  "prune":"keep"|"remove"|null,"reasons":[...]|null}]}  (oldest first)
 * Growth rates are least-squares slopes over time (null with fewer than two
 * distinct times).  *out owned by the caller. */
int vms_report_vm(vms_json **out, const vms_report_input *in);

/* Least-squares slope dy/dx of n points; VMS_EINVAL when fewer than two
 * distinct x.  Exposed for tests and for the SR growth figure. */
int vms_linear_slope(double *slope, const double *x, const double *y, size_t n);

#ifdef __cplusplus
}
#endif
#endif
