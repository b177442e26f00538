/*
 * fault.c - vmsnapd's log of I/O errors on pool files, and its TEST-ONLY
 * fault injection below the engine.
 *
 * vmsd_fault_setup() hooks vms_io_file_open() (include/vmsnap/io.h): every
 * pool file the daemon opens read-write gets a thin wrapper between the
 * engine and the file.
 *
 * 1. Always: a failed read or write is logged as a warning with the file,
 *    offset and length; a failed sync as an error saying what it means.  The
 *    engine syncs only inside a commit, and a failed commit turns the pool
 *    read-only until it is reopened (docs/design/engine.md), so that line is
 *    the daemon's record of the moment a pool went read-only.  (A commit that
 *    fails on a write, not a sync, shows as the failed write here and as
 *    "pool is read-only: commit failed: ..." on every later write request.)
 *
 * 2. Only for tests: when vmsnapd starts with VMSNAPD_FAULT in its
 *    environment, the fault shim of include/vmsnap/io_fault.h is put under
 *    the matching pool files and fails operations with EIO or ENOSPC as the
 *    rule says.  The variable is read once, here, at startup; nothing a
 *    client sends (NBD or control socket) can set, change or arm it; a rule
 *    with arm=signal is armed by SIGUSR2, which only root or the daemon's
 *    own user can send.  Without the variable nothing but the error log is
 *    in the I/O path.  A startup warning says the daemon runs with faults.
 *
 *    VMSNAPD_FAULT is one rule, comma-separated key=value pairs:
 *      op=write     operations: read, write, sync, joined with '+' (write)
 *      err=EIO      the error: EIO or ENOSPC (EIO)
 *      after=N      let N matching operations through first (0)
 *      count=K      then fail K of them, 1..16; 0 = every one from then on (1)
 *      minlen=B     reads and writes shorter than B bytes are not matched,
 *                   so B = 2 x the pool's block size picks data writes of
 *                   several blocks and never metadata (a block each) (0)
 *      path=TEXT    only pool files whose path contains TEXT (every one)
 *      arm=start    count from the pool's open (start), or from each SIGUSR2
 *                   received (signal): each signal re-arms the rule, with its
 *                   counts from zero, on every matching open pool
 *    e.g. VMSNAPD_FAULT=op=sync,err=EIO,arm=signal: after a SIGUSR2, the next
 *    sync (of the next commit) fails.
 *
 * Thread safety: the wrappers take no lock of their own; the shim serialises
 * the operations that go through it (fine for tests).  The list of open
 * wrappers is guarded by `reg_lock` (opens, closes and arming).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "vmsnap/error.h"
#include "vmsnap/io.h"
#include "vmsnap/io_fault.h"

#define MAX_COUNT 16

static struct {
	int active;          /* VMSNAPD_FAULT given */
	unsigned ops;        /* VMS_FAULT_READ | ... */
	int error;           /* VMS_EIO or VMS_ENOSPC */
	uint64_t after;
	unsigned count;      /* 0 = every one */
	uint64_t minlen;
	char *path;          /* NULL = every pool file */
	int by_signal;
	const char *text;    /* the variable, for the log */
} spec;

typedef struct wrap {
	vms_io io;           /* handed to the engine; first so a cast works */
	vms_io *below;       /* the file (owned by `f` when there is one) */
	vms_io_fault *f;     /* the shim, only under VMSNAPD_FAULT */
	char *path;
	struct wrap *next;   /* in `wraps` when f != NULL */
} wrap;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static wrap *wraps;
static int armed;        /* the rule is live (at once, or after a SIGUSR2) */
static unsigned arm_gen; /* SIGUSR2s received */

/* ---- the rule ------------------------------------------------------------- */

/* (Re)arm the rule on one shim: reg_lock held. */
static void arm_one(wrap *w)
{
	vms_io_fault_clear(w->f);
	unsigned n = spec.count ? spec.count : 1;
	for (unsigned i = 0; i < n; i++) {
		vms_fault_rule r = {
			.ops = spec.ops,
			.nth = spec.after + 1 + i,
			.repeat = spec.count == 0,
			.action = VMS_FAULT_FAIL,
			.error = spec.error,
		};
		(void)vms_io_fault_add(w->f, &r); /* cannot fail: checked at setup */
	}
}

static void *arm_main(void *arg)
{
	(void)arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	for (;;) {
		int sig = 0;
		if (sigwait(&s, &sig) != 0 || sig != SIGUSR2)
			continue;
		unsigned n = 0;
		pthread_mutex_lock(&reg_lock);
		armed = 1;
		arm_gen++;
		for (wrap *w = wraps; w; w = w->next, n++)
			arm_one(w);
		unsigned gen = arm_gen;
		pthread_mutex_unlock(&reg_lock);
		vmsd_warn("TEST-ONLY fault injection armed (SIGUSR2 #%u) on %u pool file(s): %s", gen, n,
		          spec.text);
	}
	return NULL;
}

static int parse_u64(uint64_t *out, const char *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || end == v || *end || *v == '-')
		return -1;
	*out = x;
	return 0;
}

static int parse_ops(unsigned *out, const char *v)
{
	*out = 0;
	while (*v) {
		size_t n = strcspn(v, "+");
		if (n == 4 && strncmp(v, "read", 4) == 0)
			*out |= VMS_FAULT_READ;
		else if (n == 5 && strncmp(v, "write", 5) == 0)
			*out |= VMS_FAULT_WRITE;
		else if (n == 4 && strncmp(v, "sync", 4) == 0)
			*out |= VMS_FAULT_SYNC;
		else
			return -1;
		v += n;
		if (*v == '+' && *++v == '\0')
			return -1;
	}
	return *out ? 0 : -1;
}

/* Parse VMSNAPD_FAULT into `spec`.  Returns 0 or -1 with *why set. */
static int parse_spec(const char *text, const char **why)
{
	int rc = -1;
	char *copy = strdup(text), *save = NULL;
	if (!copy) {
		*why = "out of memory";
		return -1;
	}
	spec.ops = VMS_FAULT_WRITE;
	spec.error = VMS_EIO;
	spec.count = 1;
	for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *v = strchr(kv, '=');
		uint64_t x;
		if (!v) {
			*why = "expected key=value pairs separated by commas";
			goto done;
		}
		*v++ = '\0';
		if (strcmp(kv, "op") == 0) {
			if (parse_ops(&spec.ops, v) < 0) {
				*why = "op is read, write or sync, joined with '+'";
				goto done;
			}
		} else if (strcmp(kv, "err") == 0) {
			if (strcmp(v, "EIO") == 0) {
				spec.error = VMS_EIO;
			} else if (strcmp(v, "ENOSPC") == 0) {
				spec.error = VMS_ENOSPC;
			} else {
				*why = "err is EIO or ENOSPC";
				goto done;
			}
		} else if (strcmp(kv, "after") == 0) {
			if (parse_u64(&spec.after, v) < 0 || spec.after > UINT64_MAX / 2) {
				*why = "after is a number of operations";
				goto done;
			}
		} else if (strcmp(kv, "count") == 0) {
			if (parse_u64(&x, v) < 0 || x > MAX_COUNT) {
				*why = "count is 0 (every one) to 16";
				goto done;
			}
			spec.count = (unsigned)x;
		} else if (strcmp(kv, "minlen") == 0) {
			if (parse_u64(&spec.minlen, v) < 0) {
				*why = "minlen is a number of bytes";
				goto done;
			}
		} else if (strcmp(kv, "path") == 0) {
			free(spec.path);
			if (!*v || !(spec.path = strdup(v))) {
				*why = "path is a non-empty text";
				goto done;
			}
		} else if (strcmp(kv, "arm") == 0) {
			if (strcmp(v, "start") == 0) {
				spec.by_signal = 0;
			} else if (strcmp(v, "signal") == 0) {
				spec.by_signal = 1;
			} else {
				*why = "arm is start or signal";
				goto done;
			}
		} else {
			*why = "unknown key (op, err, after, count, minlen, path, arm)";
			goto done;
		}
	}
	rc = 0;
done:
	free(copy);
	return rc;
}

/* ---- the wrapper ---------------------------------------------------------- */

/* Where an operation of `len` bytes goes: through the shim, or past it when
 * the rule's minlen leaves it out (the shim passes writes straight through:
 * it is created without tracking, so going around it loses nothing). */
static vms_io *route(wrap *w, uint64_t len)
{
	return w->f && len >= spec.minlen ? vms_io_fault_io(w->f) : w->below;
}

/* Log a failed read or write; returns rc. */
static int logged(int rc, const wrap *w, const char *what, size_t len, uint64_t off)
{
	if (rc < 0)
		vmsd_warn("pool file %s: %s of %zu bytes at %" PRIu64 " failed: %s", w->path, what, len,
		          off, vms_error_last());
	return rc;
}

static int w_read(vms_io *io, void *buf, size_t len, uint64_t off)
{
	vms_io *to = route((wrap *)io, len);
	return logged(to->read(to, buf, len, off), (wrap *)io, "read", len, off);
}

static int w_write(vms_io *io, const void *buf, size_t len, uint64_t off)
{
	vms_io *to = route((wrap *)io, len);
	return logged(to->write(to, buf, len, off), (wrap *)io, "write", len, off);
}

static int w_sync(vms_io *io)
{
	wrap *w = (wrap *)io;
	vms_io *to = route(w, UINT64_MAX);
	int rc = to->sync(to);
	if (rc < 0)
		vmsd_error("pool file %s: sync failed: %s; the commit in progress failed, so the pool is "
		           "READ-ONLY from now on (writes fail, reads go on); restart vmsnapd to reopen it "
		           "at its last good commit",
		           w->path, vms_error_last());
	return rc;
}

static int w_size(vms_io *io, uint64_t *out)
{
	vms_io *to = route((wrap *)io, UINT64_MAX);
	return to->size(to, out);
}

static int w_resize(vms_io *io, uint64_t size)
{
	wrap *w = (wrap *)io;
	vms_io *to = route(w, UINT64_MAX);
	int rc = to->resize(to, size);
	if (rc < 0)
		vmsd_warn("pool file %s: resize to %" PRIu64 " bytes failed: %s", w->path, size,
		          vms_error_last());
	return rc;
}

static void w_close(vms_io *io)
{
	wrap *w = (wrap *)io;
	if (w->f) {
		pthread_mutex_lock(&reg_lock);
		for (wrap **pp = &wraps; *pp; pp = &(*pp)->next) {
			if (*pp == w) {
				*pp = w->next;
				break;
			}
		}
		pthread_mutex_unlock(&reg_lock);
		vms_io_fault_stats st;
		vms_io_fault_stats_get(&st, w->f);
		vmsd_warn("TEST-ONLY fault injection on %s: %" PRIu64 " operation(s) failed (the shim "
		          "saw %" PRIu64 " reads, %" PRIu64 " writes, %" PRIu64 " syncs)",
		          w->path, st.failed, st.reads, st.writes, st.syncs);
		vms_io_fault_free(w->f); /* closes below */
	} else {
		w->below->close(w->below);
	}
	free(w->path);
	free(w);
}

static int hook(vms_io **io, const char *path)
{
	wrap *w = calloc(1, sizeof(*w));
	if (!w || !(w->path = strdup(path))) {
		free(w);
		(*io)->close(*io);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	w->below = *io;
	if (spec.active && (!spec.path || strstr(path, spec.path))) {
		if (vms_io_fault_new(&w->f, w->below, 0, 1) < 0) { /* closed below */
			free(w->path);
			free(w);
			return VMS_ENOMEM;
		}
		pthread_mutex_lock(&reg_lock);
		w->next = wraps;
		wraps = w;
		int now = armed;
		if (now)
			arm_one(w);
		pthread_mutex_unlock(&reg_lock);
		vmsd_warn("TEST-ONLY fault injection under %s (%s): %s", path,
		          now ? "armed" : "armed at SIGUSR2", spec.text);
	}
	w->io.read = w_read;
	w->io.write = w_write;
	w->io.sync = w_sync;
	w->io.size = w_size;
	w->io.resize = w_resize;
	w->io.close = w_close;
	*io = &w->io;
	return 0;
}

int vmsd_fault_setup(void)
{
	const char *text = getenv("VMSNAPD_FAULT");
	if (text && *text) {
		const char *why = NULL;
		if (parse_spec(text, &why) < 0) {
			vmsd_error("VMSNAPD_FAULT=%s: %s", text, why);
			return -1;
		}
		spec.text = text;
		spec.active = 1;
		armed = !spec.by_signal;
		if (spec.by_signal) {
			/* SIGUSR2 blocked here (and so in every thread started from
			 * now on), taken by a thread of its own with every other
			 * signal blocked: the daemon's signalfd keeps SIGTERM & co. */
			sigset_t usr2, all, old;
			sigemptyset(&usr2);
			sigaddset(&usr2, SIGUSR2);
			sigfillset(&all);
			pthread_t t;
			pthread_sigmask(SIG_BLOCK, &usr2, NULL);
			pthread_sigmask(SIG_BLOCK, &all, &old);
			int e = pthread_create(&t, NULL, arm_main, NULL);
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			if (e != 0) {
				vmsd_error("VMSNAPD_FAULT: cannot start the SIGUSR2 thread: %s", strerror(e));
				return -1;
			}
			pthread_detach(t);
		}
		vmsd_warn("TEST-ONLY fault injection from VMSNAPD_FAULT=%s (%s): pool I/O will fail on "
		          "purpose; never set it outside tests",
		          text, spec.by_signal ? "armed by SIGUSR2" : "armed at each pool's open");
	}
	vms_io_file_set_hook(hook);
	return 0;
}
