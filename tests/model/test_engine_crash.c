/*
 * Crash and fault tests of the native pool engine, through the fault shim
 * (include/vmsnap/io_fault.h) under the pool.
 *
 * power_cuts_recover_the_last_commit: random workloads (writes, FUA writes,
 * trims, snapshots, clones, rollbacks, deletes, resizes, flushes) on a pool
 * whose unsynced writes live only in the shim's log; a power cut at a random
 * write or sync (often in the middle of a commit), with a random cut mode
 * (drop all, random subset, prefix, torn write, reordered); then the pool is
 * reopened on what the file kept.  It must equal the model as of the last
 * successful commit - or, when the cut hit a commit, as of that commit -
 * never a mix; every snapshot reads back exactly; the check is clean with no
 * leak; the reaper finishes what was queued.  The workload then goes on on
 * the recovered pool, and at the end every block must come back.
 *
 * power_cuts_during_concurrent_commits: a writer thread writes stamped
 * sectors into one volume without pause while the main thread commits and
 * flushes, so cuts land while the next transaction's I/O runs concurrently
 * with a commit's writes and syncs.  After each cut the volume must hold
 * exactly the writer's first k writes for some k at least the count the
 * last successful commit covered (commits close at an I/O boundary), and
 * the check is clean.  Thread timing varies, so a seed replays the choices
 * but not the exact interleaving.
 *
 * The other tests inject EIO and ENOSPC: failed data writes and reads are
 * clean errors, a failed commit turns the pool read-only (writes get
 * VMS_EROFS, reads go on) and reopening recovers the last good commit; a
 * full pool refuses writes with VMS_ENOSPC and still deletes and commits.
 *
 * Knobs: VMS_SEED replays; VMS_CRASH_ITERS sets the number of cut points
 * (default 1000, 500 under sanitizers); VMS_CRASH_CONFIG=i runs only the i-th
 * pool configuration of crash_configs; VMS_TRACE=1 prints every operation.
 */
#undef NDEBUG
#include <pthread.h>
#include <unistd.h>

#include "vmsnap/io_fault.h"
#include "test_engine_model.h"

#define MAX_VOLS 14
#define POOL_SIZE (32ull << 20)

typedef struct crun {
	rng r;
	char path[128];
	vms_io_fault *f;
	vms_pool *pool;
	vms_pool_options opts;
	model m;           /* what the pool holds now */
	model committed;   /* as of the last successful commit */
	uint64_t txg;      /* stats.txg of that commit */
	int have_after;    /* the failed op was a commit: `after` is a candidate too */
	model after;
} crun;

static uint64_t pool_txg(vms_pool *pool)
{
	vms_pool_stats st;
	return vms_pool_stats_get(&st, pool) == 0 ? st.txg : 0;
}

static int dead_f(vms_io_fault *f)
{
	vms_io_fault_stats st;
	vms_io_fault_stats_get(&st, f);
	return st.dead;
}

static int dead(crun *c)
{
	return dead_f(c->f);
}

static model_vol *pick(crun *c, int writable)
{
	return model_pick(&c->m, &c->r, writable);
}

static void pick_range(crun *c, const model_vol *v, uint64_t *off, uint64_t *len)
{
	uint64_t sectors = v->size / 512;
	uint64_t n = rng_below(&c->r, 2) ? 1 + rng_below(&c->r, 8) : 1 + rng_below(&c->r, 96);
	if (n > sectors)
		n = sectors;
	*off = rng_below(&c->r, sectors - n + 1) * 512;
	*len = n * 512;
}

/*
 * One random operation.  Returns 1 when it succeeded (model updated), 0 when
 * it failed because the device died (the cut), -1 on a real failure.  When
 * the failing operation was a commit, c->after holds the state it was
 * committing.
 */
static int crash_op(crun *c)
{
	unsigned w = (unsigned)rng_below(&c->r, 100);
	int rc = 0;
	model_vol *v = pick(c, 1);
	c->have_after = 0;
	if (!v || (w >= 90 && c->m.n < MAX_VOLS)) { /* create */
		uint64_t size = (64 + rng_below(&c->r, 193)) * 1024;
		vms_vol_id id = 0;
		rc = vms_vol_create(&id, c->pool, size);
		trace("create %" PRIu64 " -> %d id %" PRIu64, size, rc, id);
		if (rc == 0)
			model_add(&c->m, id, VMS_VOL_VOLUME, size, 0, NULL);
	} else if (w < 45) { /* write, sometimes FUA */
		uint64_t off, len;
		pick_range(c, v, &off, &len);
		unsigned char *buf = malloc(len);
		rng_fill(&c->r, buf, len);
		unsigned flags = rng_below(&c->r, 12) == 0 ? VMS_IO_FUA : 0;
		rc = vms_vol_write(c->pool, v->id, buf, len, off, flags);
		trace("write vol %" PRIu64 " off %" PRIu64 " len %" PRIu64 " flags %u -> %d", v->id,
		      off, len, flags, rc);
		if (rc == 0) {
			memcpy(v->data + off, buf, len);
		} else if (flags & VMS_IO_FUA) {
			model_copy(&c->after, &c->m);
			memcpy(model_find(&c->after, v->id)->data + off, buf, len);
			c->have_after = 1;
		}
		free(buf);
	} else if (w < 50) { /* write zeroes */
		uint64_t off, len;
		pick_range(c, v, &off, &len);
		rc = vms_vol_write_zeroes(c->pool, v->id, len, off, 0);
		trace("write_zeroes vol %" PRIu64 " off %" PRIu64 " len %" PRIu64 " -> %d", v->id, off,
		      len, rc);
		if (rc == 0)
			memset(v->data + off, 0, len);
	} else if (w < 54) { /* trim whole blocks (a partial one may keep data) */
		uint64_t off, len;
		pick_range(c, v, &off, &len);
		rc = vms_vol_trim(c->pool, v->id, len, off);
		trace("trim vol %" PRIu64 " off %" PRIu64 " len %" PRIu64 " -> %d", v->id, off, len, rc);
		if (rc == 0) {
			unsigned char *buf = malloc(len);
			rc = vms_vol_read(c->pool, v->id, buf, len, off);
			for (uint64_t s = 0; rc == 0 && s < len; s += 512)
				if (!is_zero(buf + s, 512) && memcmp(buf + s, v->data + off + s, 512)) {
					fail("after trim, sector at %" PRIu64 " of vol %" PRIu64
					     " is neither old nor zero",
					     off + s, v->id);
					free(buf);
					return -1;
				}
			if (rc == 0)
				memcpy(v->data + off, buf, len);
			free(buf);
		}
	} else if (w < 62) { /* snapshot of one or two volumes */
		if (c->m.n + 2 > MAX_VOLS)
			return 1;
		vms_vol_id src[2] = {v->id, 0}, out[2] = {0, 0};
		model_vol *v2 = pick(c, 1);
		size_t n = v2 && v2 != v ? 2 : 1;
		if (n == 2)
			src[1] = v2->id;
		rc = vms_vol_snapshot(out, c->pool, src, n);
		trace("snapshot %" PRIu64 " %" PRIu64 " -> %d (%" PRIu64 " %" PRIu64 ")", src[0], src[1],
		      rc, out[0], out[1]);
		for (size_t i = 0; rc == 0 && i < n; i++) {
			model_vol *s = model_find(&c->m, src[i]);
			model_add(&c->m, out[i], VMS_VOL_SNAPSHOT, s->size, s->id, s->data);
		}
	} else if (w < 66) { /* clone of anything */
		if (c->m.n >= MAX_VOLS)
			return 1;
		model_vol *s = pick(c, 0);
		vms_vol_id id = 0;
		rc = vms_vol_clone(&id, c->pool, s->id);
		trace("clone %" PRIu64 " -> %d id %" PRIu64, s->id, rc, id);
		if (rc == 0) {
			s = model_find(&c->m, s->id);
			model_add(&c->m, id, VMS_VOL_VOLUME, s->size, s->id, s->data);
		}
	} else if (w < 70) { /* rollback */
		model_vol *s = pick(c, 0);
		if (s == v)
			return 1;
		rc = vms_vol_rollback(c->pool, v->id, s->id);
		trace("rollback %" PRIu64 " to %" PRIu64 " -> %d", v->id, s->id, rc);
		if (rc == 0) {
			model_resize(v, s->size);
			memcpy(v->data, s->data, s->size);
			v->origin_known = 0;
		}
	} else if (w < 77) { /* delete anything */
		model_vol *d = pick(c, 0);
		vms_vol_id id = d->id;
		rc = vms_vol_delete(c->pool, id);
		trace("delete %" PRIu64 " -> %d", id, rc);
		if (rc == 0)
			model_remove(&c->m, id);
	} else if (w < 80) { /* resize */
		uint64_t size = (64 + rng_below(&c->r, 193)) * 1024;
		rc = vms_vol_resize(c->pool, v->id, size);
		trace("resize %" PRIu64 " to %" PRIu64 " -> %d", v->id, size, rc);
		if (rc == 0)
			model_resize(v, size);
	} else if (w < 88) { /* flush or commit */
		int flush = rng_below(&c->r, 2);
		rc = flush ? vms_vol_flush(c->pool, v->id) : vms_pool_commit(c->pool);
		trace("%s -> %d", flush ? "flush" : "commit", rc);
		if (rc < 0) {
			model_copy(&c->after, &c->m);
			c->have_after = 1;
		}
	} else { /* read something */
		model_vol *s = pick(c, 0);
		uint64_t off, len;
		pick_range(c, s, &off, &len);
		unsigned char *buf = malloc(len);
		rc = vms_vol_read(c->pool, s->id, buf, len, off);
		trace("read %" PRIu64 " off %" PRIu64 " len %" PRIu64 " -> %d", s->id, off, len, rc);
		if (rc == 0 && memcmp(buf, s->data + off, len) != 0) {
			fail("read of vol %" PRIu64 " [%" PRIu64 ", +%" PRIu64 ") differs from the model",
			     s->id, off, len);
			free(buf);
			return -1;
		}
		free(buf);
	}
	if (rc < 0) {
		if (dead(c))
			return 0;
		fail("operation failed with a live device: %d %s", rc, vms_error_last());
		return -1;
	}
	/* a commit happened (flush, FUA, or on the engine's own): new baseline */
	uint64_t txg = pool_txg(c->pool);
	if (txg != c->txg) {
		model_copy(&c->committed, &c->m);
		c->txg = txg;
	}
	return 1;
}

/* Quiet comparison: 1 when the pool holds exactly `m` (ids, kind, size,
 * origin where known, content), else 0 with the reason in why. */
static int pool_equals(vms_pool *pool, const model *m, char *why, size_t cap)
{
	vms_vol_id ids[256];
	int64_t n = vms_vol_list(ids, 256, pool);
	if (n < 0 || n > 256) {
		snprintf(why, cap, "vms_vol_list: %" PRId64, n);
		return 0;
	}
	size_t live = 0;
	for (int64_t j = 0; j < n; j++) {
		vms_vol_info info;
		if (vms_vol_info_get(&info, pool, ids[j]) < 0) {
			snprintf(why, cap, "listed vol %" PRIu64 " has no info", ids[j]);
			return 0;
		}
		if (info.deleting)
			continue;
		live++;
		const model_vol *v = model_find((model *)m, ids[j]);
		if (!v) {
			snprintf(why, cap, "vol %" PRIu64 " exists but not in the model", ids[j]);
			return 0;
		}
		if (info.kind != v->kind || info.size != v->size ||
		    (v->origin_known && info.origin != v->origin)) {
			snprintf(why, cap,
			         "vol %" PRIu64 ": kind %d size %" PRIu64 " origin %" PRIu64
			         ", model kind %d size %" PRIu64 " origin %" PRIu64,
			         ids[j], (int)info.kind, info.size, info.origin, (int)v->kind, v->size,
			         v->origin);
			return 0;
		}
		unsigned char *buf = malloc(v->size);
		int rc = vms_vol_read(pool, v->id, buf, v->size, 0);
		size_t d = rc == 0 ? first_diff(buf, v->data, v->size) : 0;
		free(buf);
		if (rc < 0 || d < v->size) {
			snprintf(why, cap, "vol %" PRIu64 " (%s): %s at byte %zu", v->id,
			         v->kind == VMS_VOL_SNAPSHOT ? "snapshot" : "volume",
			         rc < 0 ? "read failed" : "content differs", d);
			return 0;
		}
	}
	if (live != m->n) {
		snprintf(why, cap, "%zu live volumes, model has %zu", live, m->n);
		return 0;
	}
	return 1;
}

static int open_on_shim(crun *c)
{
	vms_pool_options o = c->opts;
	int rc = vms_pool_open(&c->pool, vms_io_fault_io(c->f), &o);
	if (rc < 0) {
		c->pool = NULL;
		fail("reopen after the cut failed: %d %s", rc, vms_error_last());
		return 0;
	}
	return 1;
}

/* After a cut: reopen on what the file kept and compare. */
static int recover(crun *c, const char *how)
{
	vms_pool_close(c->pool); /* its final commit fails on the dead device */
	c->pool = NULL;
	vms_io_fault_revive(c->f);
	if (!open_on_shim(c))
		return 0;
	char why_old[200] = "", why_new[200] = "";
	uint64_t txg = pool_txg(c->pool);
	const model *got = NULL;
	if (pool_equals(c->pool, &c->committed, why_old, sizeof(why_old)))
		got = &c->committed;
	else if (c->have_after && pool_equals(c->pool, &c->after, why_new, sizeof(why_new)))
		got = &c->after;
	if (!got) {
		fail("after a power cut (%s): the pool (txg %" PRIu64 ") matches neither the last "
		     "commit (txg %" PRIu64 ": %s) nor the interrupted one (%s)",
		     how, txg, c->txg, why_old, c->have_after ? why_new : "no commit was in flight");
		return 0;
	}
	if (txg < c->txg) {
		fail("after a power cut (%s): txg went back from %" PRIu64 " to %" PRIu64, how, c->txg,
		     txg);
		return 0;
	}
	model_copy(&c->m, got);
	if (got != &c->committed)
		model_copy(&c->committed, got);
	c->txg = txg;
	trace("recovered (%s) at txg %" PRIu64 " with %zu volumes", how, txg, c->m.n);
	if (!check_pool_clean(c->pool, "after recovery"))
		return 0;
	/* the reaper resumes what the last commit had queued */
	int rc = vms_pool_reap_wait(c->pool);
	vms_pool_stats st;
	if (rc < 0 || vms_pool_stats_get(&st, c->pool) < 0 || st.deleting) {
		fail("reaper after recovery: rc %d, %" PRIu64 " still deleting: %s", rc, st.deleting,
		     vms_error_last());
		return 0;
	}
	c->txg = st.txg; /* the check commits (the same state) before it looks */
	return 1;
}

static const int crash_ops[] = {VMS_FAULT_WRITE, VMS_FAULT_SYNC};

/* One pool, `cuts` power cuts in a row.  Returns the cuts done. */
static int crash_run(uint64_t seed, int cuts, const vms_pool_options *opts, int *done)
{
	crun c = {.r = {seed}, .opts = *opts};
	trace_seed = seed;
	trace_count = 0;
	*done = 0;
	if (model_pool_path(c.path, sizeof(c.path), "crash") < 0)
		return 0;
	vms_io *file;
	int rc = vms_io_file_open(&file, c.path, 1, 0);
	if (rc == 0)
		rc = vms_io_fault_new(&c.f, file, 1, seed ^ 0x5eed);
	if (rc == 0)
		rc = vms_pool_create(&c.pool, vms_io_fault_io(c.f), POOL_SIZE, &c.opts);
	if (rc < 0) {
		fail("create pool: %d %s", rc, vms_error_last());
		goto done;
	}
	rc = vms_pool_commit(c.pool);
	rc = rc < 0 ? rc : vms_pool_commit(c.pool);
	vms_pool_stats st;
	vms_pool_stats_get(&st, c.pool);
	vms_pool_stats initial = st;
	c.txg = st.txg;
	uint64_t writes_per_op = 4;
	for (int k = 0; k < cuts && !model_failed; k++) {
		/* arm the cut: at a random write or sync from now, often in a commit */
		vms_io_fault_stats fs0;
		vms_io_fault_stats_get(&fs0, c.f);
		int nops = 8 + (int)rng_below(&c.r, 40);
		vms_fault_rule rule = {.action = VMS_FAULT_CUT,
		                       .cut = (vms_fault_cut)rng_below(&c.r, VMS_CUT_MODES)};
		rule.ops = crash_ops[rng_below(&c.r, 2)];
		rule.nth = rule.ops == VMS_FAULT_SYNC ? 1 + rng_below(&c.r, 1 + nops / 8)
		                                      : 1 + rng_below(&c.r, writes_per_op * nops);
		vms_io_fault_add(c.f, &rule);
		int r = 1;
		for (int i = 0; r == 1 && i < nops; i++)
			r = crash_op(&c);
		if (r < 0)
			break;
		const char *how;
		char howbuf[64];
		if (r == 1) { /* the rule did not fire: cut here, between operations */
			vms_fault_cut mode = (vms_fault_cut)rng_below(&c.r, VMS_CUT_MODES);
			vms_io_fault_cut(c.f, mode);
			c.have_after = 0;
			snprintf(howbuf, sizeof(howbuf), "%s between operations", vms_fault_cut_name(mode));
		} else {
			snprintf(howbuf, sizeof(howbuf), "%s at %s %" PRIu64, vms_fault_cut_name(rule.cut),
			         rule.ops == VMS_FAULT_SYNC ? "sync" : "write", rule.nth);
		}
		how = howbuf;
		vms_io_fault_stats fs1;
		vms_io_fault_stats_get(&fs1, c.f);
		writes_per_op = (fs1.writes - fs0.writes) / (uint64_t)nops + 1;
		trace("power cut: %s (kept %" PRIu64 ", dropped %" PRIu64 ", torn %" PRIu64 ")", how,
		      fs1.cut_kept, fs1.cut_dropped, fs1.cut_torn);
		if (!recover(&c, how))
			break;
		(*done)++;
	}
	/* the recovered pool gives every block back */
	for (size_t i = c.m.n; !model_failed && c.pool && i-- > 0;) {
		if ((rc = vms_vol_delete(c.pool, c.m.v[i].id)) < 0)
			fail("delete at the end: %d %s", rc, vms_error_last());
	}
	if (!model_failed && c.pool) {
		model_free(&c.m);
		rc = vms_pool_reap_wait(c.pool);
		for (int i = 0; rc == 0 && i < 3; i++)
			rc = vms_pool_commit(c.pool);
		if (rc < 0)
			fail("reap or commit after deleting everything: %d %s", rc, vms_error_last());
		else if (check_space_returned(c.pool, &initial, "after deleting everything"))
			check_pool_clean(c.pool, "empty pool after the cuts");
	}
done:
	if (c.pool)
		vms_pool_close(c.pool);
	if (c.f)
		vms_io_fault_free(c.f);
	model_free(&c.m);
	model_free(&c.committed);
	model_free(&c.after);
	unlink(c.path);
	return !model_failed;
}

static const vms_pool_options crash_configs[] = {
	{.block_size = 4096, .commit_interval_ms = UINT32_MAX},
	{.block_size = 4096, .data_checksums = 1, .cache_bytes = 128 << 10,
	 .commit_interval_ms = UINT32_MAX},
	{.block_size = 16384, .data_checksums = 1, .commit_interval_ms = UINT32_MAX},
	/* format 3: the versioned-key index */
	{.block_size = 4096, .data_checksums = 1, .cache_bytes = 128 << 10,
	 .commit_interval_ms = UINT32_MAX, .index = VMS_INDEX_KEYS},
	{.block_size = 16384, .commit_interval_ms = UINT32_MAX, .index = VMS_INDEX_KEYS},
};
#define NCRASH_CONFIGS (sizeof(crash_configs) / sizeof(crash_configs[0]))

TEST(power_cuts_recover_the_last_commit)
{
	uint64_t seed = test_seed("engine crash");
	uint64_t iters = env_u64("VMS_CRASH_ITERS", VMS_TEST_SCALE(1000));
	uint64_t total = 0;
	const int per_pool = 10;
	uint64_t only = env_u64("VMS_CRASH_CONFIG", UINT64_MAX);
	for (uint64_t run = 0; total < iters && !test_failures_in_case; run++) {
		if (only < NCRASH_CONFIGS && run % NCRASH_CONFIGS != only)
			continue;
		const vms_pool_options *o = &crash_configs[run % NCRASH_CONFIGS];
		int done;
		crash_run(seed * 1000003 + run, per_pool, o, &done);
		total += (uint64_t)done;
		if (test_failures_in_case)
			printf("  failed in run %" PRIu64 " (block %u, checksums %d, cache %" PRIu64
			       ", index %s): replay with VMS_SEED=%" PRIu64 "\n",
			       run, o->block_size, o->data_checksums, o->cache_bytes,
			       o->index ? "keys" : "radix", seed);
	}
	printf("  %" PRIu64 " power cuts survived\n", total);
}

/* ---- cuts while the next transaction's I/O runs ---------------------------- */

/* The writer's volume: 256 MiB of virtual size, of which the writer uses
 * one 4 KiB block per MiB (CW_SECTORS sectors in all), so that every write
 * lands in its own index leaf and each commit has hundreds of nodes to
 * write while the small cache evicts. */
#define CW_SLOTS 256u
#define CW_SECTORS (CW_SLOTS * 8u)
#define CW_STRIDE (1ull << 20)
#define CW_VOLSIZE (CW_SLOTS * CW_STRIDE)

static uint64_t cw_byte(uint32_t sector)
{
	return (uint64_t)(sector / 8) * CW_STRIDE + (uint64_t)(sector % 8) * 512;
}

typedef struct cwlog {
	uint32_t off, n;               /* sectors */
	uint64_t seq;
} cwlog;

typedef struct cwriter {
	vms_pool *pool;
	vms_io_fault *f;
	vms_vol_id vol;
	rng r;
	pthread_mutex_t mu;
	cwlog *log;                    /* successful writes, in order */
	size_t nlog, cap;
	uint64_t seq;                  /* last stamp handed out */
	int stop;
	int err;                       /* a write failed on a live device */
	char why[160];
} cwriter;

static void cw_stamp(unsigned char *sec, uint64_t seq, uint32_t sector)
{
	for (unsigned i = 0; i < 512; i += 16) {
		memcpy(sec + i, &seq, 8);
		uint64_t s64 = sector;
		memcpy(sec + i + 8, &s64, 8);
	}
}

static void *cw_main(void *arg)
{
	cwriter *w = arg;
	unsigned char *buf = malloc(64 * 512);
	for (;;) {
		pthread_mutex_lock(&w->mu);
		int stop = w->stop;
		uint64_t seq = ++w->seq;
		uint32_t n = 1 + (uint32_t)rng_below(&w->r, 8); /* within one slot */
		uint32_t off = (uint32_t)rng_below(&w->r, CW_SLOTS) * 8 +
		               (uint32_t)rng_below(&w->r, 8 - n + 1);
		pthread_mutex_unlock(&w->mu);
		if (stop)
			break;
		for (uint32_t i = 0; i < n; i++)
			cw_stamp(buf + 512 * i, seq, off + i);
		int rc = vms_vol_write(w->pool, w->vol, buf, 512ull * n, cw_byte(off), 0);
		if (rc < 0) {
			if ((rc != VMS_EIO && rc != VMS_EROFS) || !dead_f(w->f)) {
				pthread_mutex_lock(&w->mu);
				w->err = rc;
				snprintf(w->why, sizeof(w->why), "%s", vms_error_last());
				pthread_mutex_unlock(&w->mu);
			}
			break; /* the device died (or a real error, reported) */
		}
		pthread_mutex_lock(&w->mu);
		if (w->nlog == w->cap) {
			w->cap = w->cap ? 2 * w->cap : 1024;
			w->log = realloc(w->log, w->cap * sizeof(*w->log));
		}
		w->log[w->nlog++] = (cwlog){off, n, seq};
		pthread_mutex_unlock(&w->mu);
	}
	free(buf);
	return NULL;
}

/* Read the volume into per-sector stamps (0 = zeros); -1 on a bad sector. */
static int cw_read_stamps(vms_pool *pool, vms_vol_id vol, uint64_t *st)
{
	unsigned char *buf = malloc(CW_SECTORS * 512), want[512];
	int rc = 0;
	for (uint32_t s = 0; rc == 0 && s < CW_SLOTS; s++)
		rc = vms_vol_read(pool, vol, buf + 4096 * s, 4096, (uint64_t)s * CW_STRIDE);
	for (uint32_t i = 0; rc == 0 && i < CW_SECTORS; i++) {
		unsigned char *sec = buf + 512 * i;
		if (is_zero(sec, 512)) {
			st[i] = 0;
			continue;
		}
		memcpy(&st[i], sec, 8);
		cw_stamp(want, st[i], i);
		if (memcmp(want, sec, 512) != 0)
			rc = -1;
	}
	free(buf);
	return rc;
}

TEST(power_cuts_during_concurrent_commits)
{
	uint64_t seed = test_seed("engine concurrent crash");
	uint64_t iters = env_u64("VMS_CRASH_ITERS", VMS_TEST_SCALE(1000)) / 4;
	rng r = {seed};
	char path[128];
	vms_io *file;
	vms_io_fault *f = NULL;
	vms_pool *pool = NULL;
	vms_pool_options o = {.block_size = 4096, .data_checksums = 1, .cache_bytes = 256 << 10,
	                      .commit_interval_ms = UINT32_MAX};
	REQUIRE(model_pool_path(path, sizeof(path), "ccrash") == 0);
	REQUIRE(vms_io_file_open(&file, path, 1, 0) == 0);
	REQUIRE(vms_io_fault_new(&f, file, 1, seed ^ 0xc0c0) == 0);
	REQUIRE(vms_pool_create(&pool, vms_io_fault_io(f), 16ull << 20, &o) == 0);
	vms_vol_id vol = 0;
	REQUIRE(vms_vol_create(&vol, pool, CW_VOLSIZE) == 0);
	REQUIRE(vms_pool_commit(pool) == 0);
	static uint64_t base[CW_SECTORS], got[CW_SECTORS], exp[CW_SECTORS];
	memset(base, 0, sizeof(base));
	uint64_t seq = 0, cuts = 0, commits = 0, during = 0, concurrent_writes = 0;
	for (uint64_t it = 0; it < iters && !test_failures_in_case; it++) {
		cwriter w = {.pool = pool, .f = f, .vol = vol, .r = {rng_next(&r)}, .seq = seq};
		pthread_mutex_init(&w.mu, NULL);
		vms_fault_rule rule = {.action = VMS_FAULT_CUT,
		                       .cut = (vms_fault_cut)rng_below(&r, VMS_CUT_MODES)};
		rule.ops = rng_below(&r, 3) ? VMS_FAULT_WRITE : VMS_FAULT_SYNC;
		rule.nth = rule.ops == VMS_FAULT_SYNC ? 1 + rng_below(&r, 8) : 1 + rng_below(&r, 1500);
		vms_io_fault_add(f, &rule);
		pthread_t th;
		REQUIRE(pthread_create(&th, NULL, cw_main, &w) == 0);
		size_t floor_n = 0;  /* writes the last successful commit covers */
		for (int k = 0; k < 200; k++) {
			pthread_mutex_lock(&w.mu);
			size_t n = w.nlog;
			pthread_mutex_unlock(&w.mu);
			int rc = rng_below(&r, 2) ? vms_vol_flush(pool, vol) : vms_pool_commit(pool);
			if (rc < 0)
				break; /* the cut */
			floor_n = n;
			commits++;
			pthread_mutex_lock(&w.mu);
			concurrent_writes += w.nlog - n; /* written while that commit ran */
			pthread_mutex_unlock(&w.mu);
			/* short gaps, or long ones: commits of a few nodes or of
			 * more than the cache holds */
			usleep((useconds_t)rng_below(&r, (it & 1) ? 300 : 4000));
		}
		if (!dead_f(f))
			vms_io_fault_cut(f, (vms_fault_cut)rng_below(&r, VMS_CUT_MODES));
		pthread_mutex_lock(&w.mu);
		w.stop = 1;
		pthread_mutex_unlock(&w.mu);
		pthread_join(th, NULL);
		seq = w.seq;
		if (w.err) {
			fail("cut %" PRIu64 ": a write failed on a live device: %d %s", it, w.err, w.why);
			break;
		}
		vms_pool_close(pool);
		pool = NULL;
		vms_io_fault_revive(f);
		if (vms_pool_open(&pool, vms_io_fault_io(f), &o) < 0) {
			fail("reopen after cut %" PRIu64 ": %s", it, vms_error_last());
			pool = NULL;
			break;
		}
		cuts++;
		if (cw_read_stamps(pool, vol, got) < 0) {
			fail("cut %" PRIu64 ": the volume holds a sector no write wrote", it);
			break;
		}
		/* which prefix of the writes survived? at least floor_n of them */
		memcpy(exp, base, sizeof(exp));
		size_t k;
		int match = -1;
		for (k = 0; k <= w.nlog; k++) {
			if (k > 0)
				for (uint32_t i = 0; i < w.log[k - 1].n; i++)
					exp[w.log[k - 1].off + i] = w.log[k - 1].seq;
			if (k >= floor_n && memcmp(exp, got, sizeof(exp)) == 0) {
				match = (int)k;
				break;
			}
		}
		if (match < 0) {
			fail("cut %" PRIu64 ": the volume is no prefix of the %zu writes from the %zu the "
			     "last commit covered on (replay with VMS_SEED=%" PRIu64 ")",
			     it, w.nlog, floor_n, seed);
			break;
		}
		if ((size_t)match > floor_n)
			during++; /* a commit in flight at the cut made it */
		memcpy(base, got, sizeof(base));
		free(w.log);
		pthread_mutex_destroy(&w.mu);
		if (!check_pool_clean(pool, "after a concurrent cut"))
			break;
	}
	if (pool)
		vms_pool_close(pool);
	vms_io_fault_free(f);
	unlink(path);
	printf("  %" PRIu64 " power cuts with a writer thread, %" PRIu64 " commits, %" PRIu64
	       " writes done while a commit ran, %" PRIu64 " recoveries to a commit in flight\n",
	       cuts, commits, concurrent_writes, during);
	CHECK(cuts == iters);
}

/* ---- EIO / ENOSPC -------------------------------------------------------- */

typedef struct fixture {
	char path[128];
	vms_io_fault *f;
	vms_pool *pool;
	vms_vol_id vol;
	unsigned char *committed; /* volume content at the last commit */
	unsigned char *now;
} fixture;

#define FX_VOL (256u << 10)

static int fx_open(fixture *x, uint64_t pool_size)
{
	memset(x, 0, sizeof(*x));
	vms_io *file;
	if (model_pool_path(x->path, sizeof(x->path), "crash") < 0 ||
	    vms_io_file_open(&file, x->path, 1, 0) < 0 ||
	    vms_io_fault_new(&x->f, file, 1, 77) < 0)
		return 0;
	vms_pool_options o = {.commit_interval_ms = UINT32_MAX};
	if (vms_pool_create(&x->pool, vms_io_fault_io(x->f), pool_size, &o) < 0 ||
	    vms_vol_create(&x->vol, x->pool, FX_VOL) < 0)
		return 0;
	x->committed = calloc(1, FX_VOL);
	x->now = calloc(1, FX_VOL);
	for (uint64_t off = 0; off < FX_VOL; off += 4096) {
		memset(x->now + off, (int)(off / 4096 + 1), 4096);
		if (vms_vol_write(x->pool, x->vol, x->now + off, 4096, off, 0) < 0)
			return 0;
	}
	memcpy(x->committed, x->now, FX_VOL);
	return vms_pool_commit(x->pool) == 0;
}

static int fx_reopen(fixture *x)
{
	vms_pool_close(x->pool);
	x->pool = NULL;
	vms_io_fault_revive(x->f);
	vms_pool_options o = {.commit_interval_ms = UINT32_MAX};
	return vms_pool_open(&x->pool, vms_io_fault_io(x->f), &o) == 0;
}

static int fx_content_is(fixture *x, const unsigned char *want)
{
	unsigned char *buf = malloc(FX_VOL);
	int rc = vms_vol_read(x->pool, x->vol, buf, FX_VOL, 0);
	int ok = rc == 0 && memcmp(buf, want, FX_VOL) == 0;
	if (!ok)
		fprintf(stderr, "  content mismatch (read rc %d: %s) at byte %zu\n", rc,
		        vms_error_last(), rc ? 0 : first_diff(buf, want, FX_VOL));
	free(buf);
	return ok;
}

static int fx_clean(fixture *x)
{
	vms_check_report rep;
	memset(&rep, 0, sizeof(rep));
	int rc = vms_pool_check(&rep, x->pool, VMS_CHECK_DATA);
	if (rc != 0 || rep.leaked_blocks || rep.corrupt)
		fprintf(stderr, "  check: rc %d leaked %" PRIu64 " corrupt %" PRIu64 ": %s\n", rc,
		        rep.leaked_blocks, rep.corrupt, rep.first_error);
	return rc == 0 && !rep.leaked_blocks && !rep.corrupt;
}

static void fx_close(fixture *x)
{
	if (x->pool)
		vms_pool_close(x->pool);
	if (x->f)
		vms_io_fault_free(x->f);
	free(x->committed);
	free(x->now);
	unlink(x->path);
}

static void failed_data_write(int error)
{
	fixture x;
	REQUIRE(fx_open(&x, 16ull << 20));
	unsigned char buf[8192];
	memset(buf, 0xC3, sizeof(buf));
	vms_fault_rule r = {.ops = VMS_FAULT_WRITE, .nth = 1, .error = error};
	CHECK(vms_io_fault_add(x.f, &r) >= 0);
	/* a sub-block write into a committed block, and a whole-block one */
	int rc = vms_vol_write(x.pool, x.vol, buf, 2048, 4096 + 1024, 0);
	/* ENOSPC may be retried after a commit (freed blocks become usable),
	 * and the retry succeeds: the rule fired once */
	CHECK(rc == error || (error == VMS_ENOSPC && rc == 0));
	if (rc == 0)
		memcpy(x.now + 4096 + 1024, buf, 2048);
	CHECK(fx_content_is(&x, x.now)); /* redirect-on-write: the old block stands */
	vms_io_fault_clear(x.f);
	r.nth = 2; /* the second block of a two-block write */
	CHECK(vms_io_fault_add(x.f, &r) >= 0);
	rc = vms_vol_write(x.pool, x.vol, buf, 8192, 16384, 0);
	CHECK(rc == error || rc == 0); /* 0: the engine wrote both blocks at once */
	vms_io_fault_clear(x.f);
	/* the first block may have been written: each block is old or new */
	unsigned char got[8192];
	CHECK_OK(vms_vol_read(x.pool, x.vol, got, 8192, 16384));
	for (int b = 0; b < 2; b++) {
		int is_old = memcmp(got + b * 4096, x.now + 16384 + b * 4096, 4096) == 0;
		int is_new = memcmp(got + b * 4096, buf, 4096) == 0;
		CHECK(is_old || is_new);
	}
	memcpy(x.now + 16384, got, 8192);
	vms_pool_stats st;
	CHECK_OK(vms_pool_stats_get(&st, x.pool));
	CHECK(!st.readonly); /* a failed data write is not a failed commit */
	CHECK_OK(vms_vol_write(x.pool, x.vol, buf, 2048, 4096 + 1024, 0));
	memcpy(x.now + 4096 + 1024, buf, 2048);
	CHECK_OK(vms_pool_commit(x.pool));
	CHECK(fx_content_is(&x, x.now));
	CHECK(fx_clean(&x)); /* the blocks of the failed writes were given back */
	CHECK(fx_reopen(&x));
	CHECK(fx_content_is(&x, x.now));
	CHECK(fx_clean(&x));
	fx_close(&x);
}

TEST(failed_data_write_eio_is_clean)
{
	failed_data_write(VMS_EIO);
}

TEST(failed_data_write_enospc_is_clean)
{
	failed_data_write(VMS_ENOSPC);
}

TEST(failed_read_is_clean)
{
	fixture x;
	REQUIRE(fx_open(&x, 16ull << 20));
	REQUIRE(fx_reopen(&x)); /* a cold cache: reads of index nodes fail too */
	vms_fault_rule r = {.ops = VMS_FAULT_READ, .nth = 1, .error = VMS_EIO};
	unsigned char buf[4096];
	for (int i = 0; i < 4; i++) { /* the first index read, then data reads */
		CHECK(vms_io_fault_add(x.f, &r) >= 0);
		CHECK(vms_vol_read(x.pool, x.vol, buf, 4096, 8192 * (uint64_t)i) == VMS_EIO);
		vms_io_fault_clear(x.f);
	}
	CHECK(fx_content_is(&x, x.now));
	CHECK(fx_clean(&x));
	fx_close(&x);
}

/* Fail (or cut) the k-th write / sync of a commit, for every k the commit
 * has: the commit fails, the pool turns read-only, reads go on, and reopening
 * recovers the previous commit. */
static void failed_commit(unsigned ops, int error)
{
	int fired = 1;
	for (uint64_t k = 1; fired && k < 400; k++) {
		fixture x;
		REQUIRE(fx_open(&x, 16ull << 20));
		unsigned char buf[4096];
		for (int i = 0; i < 20; i++) { /* dirty some index and space-map pages */
			memset(buf, 0x40 + i, sizeof(buf));
			uint64_t off = (uint64_t)(i * 37 % 64) * 4096 + (i % 3) * 512;
			CHECK_OK(vms_vol_write(x.pool, x.vol, buf, 2048, off, 0));
			memcpy(x.now + off, buf, 2048);
		}
		vms_vol_id snap;
		CHECK_OK(vms_vol_snapshot(&snap, x.pool, &x.vol, 1));
		vms_fault_rule r = {.ops = ops, .nth = k, .error = error};
		CHECK(vms_io_fault_add(x.f, &r) >= 0);
		int rc = vms_pool_commit(x.pool);
		vms_io_fault_stats fs;
		vms_io_fault_stats_get(&fs, x.f);
		fired = fs.failed > 0;
		if (!fired) { /* k is past the commit's last operation: done */
			CHECK(rc == 0);
			fx_close(&x);
			break;
		}
		vms_io_fault_clear(x.f);
		CHECK(rc < 0);
		vms_pool_stats st;
		CHECK_OK(vms_pool_stats_get(&st, x.pool));
		CHECK(st.readonly);
		CHECK(vms_vol_write(x.pool, x.vol, buf, 4096, 0, 0) == VMS_EROFS);
		CHECK(vms_vol_write_zeroes(x.pool, x.vol, 4096, 0, 0) == VMS_EROFS);
		vms_vol_id id2;
		CHECK(vms_vol_create(&id2, x.pool, 1 << 20) == VMS_EROFS);
		CHECK(vms_pool_commit(x.pool) < 0);
		CHECK(fx_content_is(&x, x.now)); /* reads go on, uncommitted writes included */
		CHECK(fx_reopen(&x));
		CHECK(fx_content_is(&x, x.committed));
		vms_vol_info info;
		CHECK(vms_vol_info_get(&info, x.pool, snap) == VMS_ENOTFOUND);
		CHECK(fx_clean(&x));
		CHECK_OK(vms_vol_write(x.pool, x.vol, buf, 4096, 0, 0)); /* writable again */
		CHECK_OK(vms_pool_commit(x.pool));
		CHECK(fx_clean(&x));
		fx_close(&x);
		if (test_failures_in_case) {
			fprintf(stderr, "  (failing the %" PRIu64 "th %s of the commit with %s)\n", k,
			        ops == VMS_FAULT_SYNC ? "sync" : "write", vms_error_name(error));
			break;
		}
	}
	CHECK(!fired);
}

TEST(failed_commit_write_turns_read_only)
{
	failed_commit(VMS_FAULT_WRITE, VMS_EIO);
}

TEST(failed_commit_write_enospc_turns_read_only)
{
	failed_commit(VMS_FAULT_WRITE, VMS_ENOSPC);
}

TEST(failed_commit_sync_turns_read_only)
{
	failed_commit(VMS_FAULT_SYNC, VMS_EIO);
}

/* Random EIO on writes and syncs during a workload: every operation either
 * works or fails cleanly; after a failed commit, reopening recovers. */
TEST(random_io_errors_never_corrupt)
{
	uint64_t seed = test_seed("engine io errors");
	rng r = {seed};
	fixture x;
	REQUIRE(fx_open(&x, 16ull << 20));
	vms_fault_rule rule = {.ops = VMS_FAULT_WRITE | VMS_FAULT_SYNC, .probability = 0.02};
	CHECK(vms_io_fault_add(x.f, &rule) >= 0);
	int readonly_seen = 0, failures = 0;
	unsigned char buf[8192];
	for (int i = 0; i < 3000 && !test_failures_in_case; i++) {
		uint64_t off = rng_below(&r, (FX_VOL - 8192) / 512) * 512;
		size_t len = (1 + rng_below(&r, 16)) * 512;
		rng_fill(&r, buf, len);
		int rc;
		if (rng_below(&r, 10) == 0) {
			rc = vms_pool_commit(x.pool);
			if (rc == 0)
				memcpy(x.committed, x.now, FX_VOL);
		} else {
			rc = vms_vol_write(x.pool, x.vol, buf, len, off, 0);
			if (rc == 0) {
				memcpy(x.now + off, buf, len);
			} else {
				/* a failed write leaves each sector old or new */
				unsigned char got[8192];
				vms_io_fault_clear(x.f);
				CHECK_OK(vms_vol_read(x.pool, x.vol, got, len, off));
				for (size_t s = 0; s < len; s += 512)
					CHECK(!memcmp(got + s, buf + s, 512) || !memcmp(got + s, x.now + off + s, 512));
				memcpy(x.now + off, got, len);
				vms_io_fault_add(x.f, &rule);
			}
		}
		if (rc < 0) {
			failures++;
			CHECK(rc == VMS_EIO || rc == VMS_EROFS);
		}
		vms_pool_stats st;
		CHECK_OK(vms_pool_stats_get(&st, x.pool));
		if (st.readonly) {
			readonly_seen++;
			vms_io_fault_clear(x.f);
			CHECK(vms_vol_write(x.pool, x.vol, buf, 512, 0, 0) == VMS_EROFS);
			CHECK(fx_content_is(&x, x.now));
			CHECK(fx_reopen(&x));
			CHECK(fx_content_is(&x, x.committed));
			CHECK(fx_clean(&x));
			memcpy(x.now, x.committed, FX_VOL);
			vms_io_fault_add(x.f, &rule);
		}
	}
	vms_io_fault_clear(x.f);
	CHECK_OK(vms_pool_commit(x.pool));
	CHECK(fx_content_is(&x, x.now));
	CHECK(fx_clean(&x));
	CHECK(readonly_seen > 0 && failures > 0);
	printf("  %d injected failures, %d times read-only and recovered\n", failures, readonly_seen);
	if (test_failures_in_case)
		printf("  replay with VMS_SEED=%" PRIu64 "\n", seed);
	fx_close(&x);
}

/* A full pool: writes get VMS_ENOSPC, nothing written before is lost, and
 * delete and commit still work (the reserve). */
TEST(full_pool_is_a_clean_enospc)
{
	fixture x;
	REQUIRE(fx_open(&x, 4ull << 20)); /* 1024 blocks */
	vms_vol_id big, snap;
	CHECK_OK(vms_vol_create(&big, x.pool, 64ull << 20));
	unsigned char buf[4096];
	uint64_t off = 0;
	int rc = 0;
	for (; off < (64ull << 20); off += 4096) {
		memset(buf, (int)(off / 4096 % 251 + 1), sizeof(buf));
		if ((rc = vms_vol_write(x.pool, big, buf, 4096, off, 0)) < 0)
			break;
	}
	CHECK(rc == VMS_ENOSPC);
	uint64_t written = off;
	CHECK(written > (1ull << 20));
	CHECK_OK(vms_pool_commit(x.pool));
	/* a snapshot (itself may need a block), then overwrites of shared
	 * blocks: success while space lasts, then ENOSPC, never corruption */
	rc = vms_vol_snapshot(&snap, x.pool, &x.vol, 1);
	CHECK(rc == 0 || rc == VMS_ENOSPC);
	for (uint64_t o = 0; rc == 0 && o < FX_VOL; o += 4096) {
		memset(buf, 0xEE, sizeof(buf));
		rc = vms_vol_write(x.pool, x.vol, buf, 4096, o, 0);
		if (rc == 0)
			memcpy(x.now + o, buf, 4096);
	}
	CHECK(rc == 0 || rc == VMS_ENOSPC);
	CHECK(fx_content_is(&x, x.now));
	for (uint64_t o = 0; o < written; o += 4096 * 7) {
		unsigned char want[4096];
		memset(want, (int)(o / 4096 % 251 + 1), sizeof(want));
		CHECK_OK(vms_vol_read(x.pool, big, buf, 4096, o));
		CHECK(memcmp(buf, want, 4096) == 0);
	}
	CHECK(fx_clean(&x));
	CHECK_OK(vms_vol_delete(x.pool, big));
	CHECK_OK(vms_pool_reap_wait(x.pool));
	CHECK_OK(vms_pool_commit(x.pool));
	CHECK_OK(vms_pool_commit(x.pool));
	memset(buf, 0xEE, sizeof(buf));
	CHECK_OK(vms_vol_write(x.pool, x.vol, buf, 4096, 0, 0));
	memcpy(x.now, buf, 4096);
	CHECK_OK(vms_pool_commit(x.pool));
	CHECK(fx_content_is(&x, x.now));
	CHECK(fx_clean(&x));
	fx_close(&x);
}

TEST_MAIN()
