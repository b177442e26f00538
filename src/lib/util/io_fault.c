/*
 * A fault-injecting vms_io for tests (see include/vmsnap/io_fault.h).
 *
 * Design.  With tracking on, the file below only ever holds what a disk
 * would hold after a power cut right now: the state at the last sync.  Every
 * write since then waits in `log` (in issue order, each with its own copy of
 * the data); reads overlay the log on the file below, so the engine sees its
 * own writes.  A successful sync applies the log in order, syncs below and
 * empties the log.  A power cut applies a subset of the log chosen by the
 * cut mode (in issue order, so the last kept write covering a byte wins),
 * syncs below and kills the device.  Without tracking, writes go straight
 * below and a cut only kills the device.
 *
 * Invariants: `log` is empty when the device is dead; a rule's `count` only
 * counts operations of its classes issued while it was active; a CUT rule
 * fires at most once.  Everything is guarded by `lock`.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/io_fault.h"

#define MAX_RULES 16

typedef struct pending_write {
	uint64_t off;
	size_t len;
	unsigned char *data;
} pending_write;

typedef struct active_rule {
	vms_fault_rule rule;
	uint64_t count;
	int used;
} active_rule;

struct vms_io_fault {
	vms_io io;            /* handed to the engine; first so a cast works */
	vms_io *below;
	int track;
	uint64_t rng;
	pthread_mutex_t lock;
	active_rule rules[MAX_RULES];
	pending_write *log;
	size_t log_len, log_cap;
	uint64_t log_lo, log_hi;   /* byte range touched by the log, for fast reads */
	vms_io_fault_stats st;
};

static uint64_t next_random(vms_io_fault *f)
{
	/* splitmix64: good enough and reproducible from the seed */
	uint64_t z = (f->rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t random_below(vms_io_fault *f, uint64_t n)
{
	return n ? next_random(f) % n : 0;
}

static void log_clear(vms_io_fault *f)
{
	for (size_t i = 0; i < f->log_len; i++)
		free(f->log[i].data);
	f->log_len = 0;
	f->log_lo = UINT64_MAX;
	f->log_hi = 0;
	f->st.pending = 0;
	f->st.pending_bytes = 0;
}

/* Decide whether an operation of class `op` is failed or turned into a
 * power cut.  Returns 0 (go on), or the error to return with *cut set when
 * the device must die first. */
static int consult_rules(vms_io_fault *f, unsigned op, int *cut_mode)
{
	int result = 0;
	*cut_mode = -1;
	for (int i = 0; i < MAX_RULES; i++) {
		active_rule *r = &f->rules[i];
		if (!r->used || !(r->rule.ops & op))
			continue;
		r->count++;
		int fires;
		if (r->rule.nth)
			fires = r->count == r->rule.nth || (r->rule.repeat && r->count > r->rule.nth);
		else
			fires = (double)(next_random(f) >> 11) * (1.0 / 9007199254740992.0) <
			        r->rule.probability;
		if (!fires || result)
			continue; /* keep counting in the other rules */
		if (r->rule.action == VMS_FAULT_CUT) {
			*cut_mode = (int)r->rule.cut;
			r->used = 0;
			result = VMS_EIO;
		} else {
			result = r->rule.error ? r->rule.error : VMS_EIO;
		}
	}
	return result;
}

static int apply_write(vms_io_fault *f, const pending_write *w, size_t skip, size_t len)
{
	return f->below->write(f->below, w->data + skip, len, w->off + skip);
}

/* The power cut proper; called with the lock held. */
static int do_cut(vms_io_fault *f, vms_fault_cut mode)
{
	size_t n = f->log_len;
	int rc = 0;
	unsigned char *keep = calloc(n ? n : 1, 1);
	if (!keep)
		return vms_error_set(VMS_ENOMEM, "fault shim: out of memory");
	size_t torn = SIZE_MAX, torn_skip = 0, torn_len = 0;
	switch (mode) {
	case VMS_CUT_DROP_ALL:
		break;
	case VMS_CUT_KEEP_ALL:
		memset(keep, 1, n);
		break;
	case VMS_CUT_RANDOM:
		for (size_t i = 0; i < n; i++)
			keep[i] = next_random(f) & 1;
		break;
	case VMS_CUT_PREFIX:
		memset(keep, 1, random_below(f, n + 1));
		break;
	case VMS_CUT_TORN: {
		if (n == 0)
			break;
		size_t k = random_below(f, n);
		memset(keep, 1, k);
		const pending_write *w = &f->log[k];
		/* whole sectors of the device, so the tear falls on absolute
		 * 512-byte boundaries inside the write */
		uint64_t first = (w->off + 511) / 512 * 512, end = (w->off + w->len) / 512 * 512;
		uint64_t nsec = end > first ? (end - first) / 512 : 0;
		if (nsec >= 2) {
			uint64_t s = 1 + random_below(f, nsec - 1); /* 1..nsec-1 sectors survive */
			torn = k;
			if (next_random(f) & 1) { /* the first sectors */
				torn_skip = 0;
				torn_len = (size_t)(first + s * 512 - w->off);
			} else {                  /* the last sectors */
				torn_skip = (size_t)(end - s * 512 - w->off);
				torn_len = w->len - torn_skip;
			}
		}
		break;
	}
	case VMS_CUT_REORDER: {
		if (n < 2)
			break;
		size_t pivot = 1 + random_below(f, n - 1); /* 1..n-1 */
		for (size_t i = pivot; i < n; i++)
			keep[i] = 1;
		for (size_t i = 0; i < pivot; i++)
			keep[i] = next_random(f) & 1;
		keep[random_below(f, pivot)] = 0; /* at least one earlier write lost */
		break;
	}
	default:
		free(keep);
		return vms_error_set(VMS_EINVAL, "fault shim: bad cut mode %d", (int)mode);
	}
	f->st.cut_kept = f->st.cut_dropped = f->st.cut_torn = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (i == torn) {
			rc = apply_write(f, &f->log[i], torn_skip, torn_len);
			f->st.cut_torn = 1;
		} else if (keep[i]) {
			rc = apply_write(f, &f->log[i], 0, f->log[i].len);
			f->st.cut_kept++;
		} else {
			f->st.cut_dropped++;
		}
	}
	if (rc == 0 && n)
		rc = f->below->sync(f->below);
	free(keep);
	log_clear(f);
	f->st.dead = 1;
	f->st.cuts++;
	return rc;
}

/* Common entry of every operation: count, consult the rules, cut if asked.
 * Returns 0 to proceed or the error to return (message set). */
static int enter(vms_io_fault *f, unsigned op, const char *what)
{
	if (f->st.dead) {
		f->st.failed++;
		return vms_error_set(VMS_EIO, "fault shim: %s after power cut", what);
	}
	int cut;
	int rc = consult_rules(f, op, &cut);
	if (rc == 0)
		return 0;
	f->st.failed++;
	if (cut >= 0) {
		do_cut(f, (vms_fault_cut)cut);
		return vms_error_set(VMS_EIO, "fault shim: power cut at %s", what);
	}
	return vms_error_set(rc, "fault shim: injected %s error on %s",
	                     rc == VMS_ENOSPC ? "ENOSPC" : "EIO", what);
}

static int sh_read(vms_io *io, void *buf, size_t len, uint64_t off)
{
	vms_io_fault *f = (vms_io_fault *)io;
	pthread_mutex_lock(&f->lock);
	f->st.reads++;
	int rc = enter(f, VMS_FAULT_READ, "read");
	if (rc == 0)
		rc = f->below->read(f->below, buf, len, off);
	if (rc == 0 && f->log_len && off < f->log_hi && off + len > f->log_lo) {
		for (size_t i = 0; i < f->log_len; i++) {
			const pending_write *w = &f->log[i];
			uint64_t lo = w->off > off ? w->off : off;
			uint64_t hi = w->off + w->len < off + len ? w->off + w->len : off + len;
			if (lo < hi)
				memcpy((unsigned char *)buf + (lo - off), w->data + (lo - w->off), hi - lo);
		}
	}
	if (rc == 0)
		f->st.bytes_read += len;
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static int sh_write(vms_io *io, const void *buf, size_t len, uint64_t off)
{
	vms_io_fault *f = (vms_io_fault *)io;
	pthread_mutex_lock(&f->lock);
	f->st.writes++;
	int rc = enter(f, VMS_FAULT_WRITE, "write");
	if (rc == 0 && !f->track) {
		rc = f->below->write(f->below, buf, len, off);
	} else if (rc == 0) {
		if (f->log_len == f->log_cap) {
			size_t cap = f->log_cap ? f->log_cap * 2 : 64;
			pending_write *nl = realloc(f->log, cap * sizeof(*nl));
			if (!nl) {
				rc = vms_error_set(VMS_ENOMEM, "fault shim: out of memory");
				goto done;
			}
			f->log = nl;
			f->log_cap = cap;
		}
		unsigned char *copy = malloc(len ? len : 1);
		if (!copy) {
			rc = vms_error_set(VMS_ENOMEM, "fault shim: out of memory");
			goto done;
		}
		memcpy(copy, buf, len);
		f->log[f->log_len++] = (pending_write){off, len, copy};
		if (off < f->log_lo)
			f->log_lo = off;
		if (off + len > f->log_hi)
			f->log_hi = off + len;
		f->st.pending++;
		f->st.pending_bytes += len;
	}
	if (rc == 0)
		f->st.bytes_written += len;
done:
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static int sh_sync(vms_io *io)
{
	vms_io_fault *f = (vms_io_fault *)io;
	pthread_mutex_lock(&f->lock);
	f->st.syncs++;
	int rc = enter(f, VMS_FAULT_SYNC, "sync");
	for (size_t i = 0; rc == 0 && i < f->log_len; i++)
		rc = apply_write(f, &f->log[i], 0, f->log[i].len);
	if (rc == 0)
		rc = f->below->sync(f->below);
	if (rc == 0)
		log_clear(f);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static int sh_size(vms_io *io, uint64_t *out)
{
	vms_io_fault *f = (vms_io_fault *)io;
	pthread_mutex_lock(&f->lock);
	int rc = f->st.dead ? vms_error_set(VMS_EIO, "fault shim: size after power cut")
	                    : f->below->size(f->below, out);
	if (rc == 0 && f->log_len && f->log_hi > *out)
		*out = f->log_hi;
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static int sh_resize(vms_io *io, uint64_t size)
{
	vms_io_fault *f = (vms_io_fault *)io;
	pthread_mutex_lock(&f->lock);
	int rc = f->st.dead ? vms_error_set(VMS_EIO, "fault shim: resize after power cut")
	                    : f->below->resize(f->below, size);
	if (rc == 0 && f->log_hi > size) {
		/* a shrink cuts pending writes too */
		uint64_t hi = 0;
		for (size_t i = 0; i < f->log_len; i++) {
			pending_write *w = &f->log[i];
			if (w->off >= size)
				w->len = 0;
			else if (w->off + w->len > size)
				w->len = (size_t)(size - w->off);
			if (w->off + w->len > hi)
				hi = w->off + w->len;
		}
		f->log_hi = hi;
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static void sh_close(vms_io *io)
{
	vms_io_fault *f = (vms_io_fault *)io;
	pthread_mutex_lock(&f->lock);
	f->st.closed = 1;
	pthread_mutex_unlock(&f->lock);
}

int vms_io_fault_new(vms_io_fault **out, vms_io *below, int track, uint64_t seed)
{
	vms_io_fault *f = calloc(1, sizeof(*f));
	if (!f) {
		below->close(below);
		return vms_error_set(VMS_ENOMEM, "fault shim: out of memory");
	}
	pthread_mutex_init(&f->lock, NULL);
	f->below = below;
	f->track = track;
	f->rng = seed;
	f->log_lo = UINT64_MAX;
	f->io.read = sh_read;
	f->io.write = sh_write;
	f->io.sync = sh_sync;
	f->io.size = sh_size;
	f->io.resize = sh_resize;
	f->io.close = sh_close;
	*out = f;
	return 0;
}

vms_io *vms_io_fault_io(vms_io_fault *f)
{
	return &f->io;
}

int vms_io_fault_add(vms_io_fault *f, const vms_fault_rule *rule)
{
	if (!rule || !(rule->ops & VMS_FAULT_ALL) || rule->probability < 0 || rule->probability > 1 ||
	    (rule->action != VMS_FAULT_FAIL && rule->action != VMS_FAULT_CUT) ||
	    (rule->action == VMS_FAULT_CUT && (unsigned)rule->cut >= VMS_CUT_MODES) ||
	    (rule->error != 0 && rule->error != VMS_EIO && rule->error != VMS_ENOSPC))
		return vms_error_set(VMS_EINVAL, "fault shim: bad rule");
	pthread_mutex_lock(&f->lock);
	int idx = VMS_EINVAL;
	for (int i = 0; i < MAX_RULES; i++) {
		if (!f->rules[i].used) {
			f->rules[i] = (active_rule){*rule, 0, 1};
			idx = i;
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (idx < 0)
		return vms_error_set(VMS_EINVAL, "fault shim: more than %d rules", MAX_RULES);
	return idx;
}

void vms_io_fault_clear(vms_io_fault *f)
{
	pthread_mutex_lock(&f->lock);
	memset(f->rules, 0, sizeof(f->rules));
	pthread_mutex_unlock(&f->lock);
}

int vms_io_fault_cut(vms_io_fault *f, vms_fault_cut cut)
{
	pthread_mutex_lock(&f->lock);
	int rc = f->st.dead ? 0 : do_cut(f, cut);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

void vms_io_fault_revive(vms_io_fault *f)
{
	pthread_mutex_lock(&f->lock);
	memset(f->rules, 0, sizeof(f->rules));
	log_clear(f);
	f->st.dead = 0;
	f->st.closed = 0;
	pthread_mutex_unlock(&f->lock);
}

void vms_io_fault_stats_get(vms_io_fault_stats *out, vms_io_fault *f)
{
	pthread_mutex_lock(&f->lock);
	*out = f->st;
	pthread_mutex_unlock(&f->lock);
}

void vms_io_fault_free(vms_io_fault *f)
{
	if (!f)
		return;
	if (!f->st.dead)
		for (size_t i = 0; i < f->log_len; i++)
			apply_write(f, &f->log[i], 0, f->log[i].len);
	log_clear(f);
	free(f->log);
	f->below->close(f->below);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

const char *vms_fault_cut_name(vms_fault_cut cut)
{
	static const char *names[] = {"drop-all", "keep-all", "random", "prefix", "torn", "reorder"};
	return (unsigned)cut < VMS_CUT_MODES ? names[cut] : "?";
}
