/*
 * Model-based test of the native pool engine (include/vmsnap/pool.h).
 *
 * Random sequences of create / write / trim / write-zeroes / read /
 * snapshot (several volumes at once) / clone / rollback / delete / resize /
 * flush / commit / close+reopen / reap-wait, each checked against a plain
 * in-memory copy of every volume (test_engine_model.h).  Every read is
 * compared byte for byte; vms_vol_info's exactly defined fields (kind, size,
 * origin), block_status (unallocated ranges must read as zero), diff (every
 * changed sector must be reported) and vms_pool_check are verified along
 * the way; at the end everything is deleted and the free-block count must
 * come back to its initial value.
 *
 * Knobs: VMS_SEED=n replays a run; VMS_MODEL_OPS=n sets the number of
 * operations (default 6000 over four pool configurations, half under
 * sanitizers); VMS_TRACE=1 prints every operation.  Keep small volumes: the
 * model is dense.
 */
#undef NDEBUG
#include <pthread.h>
#include <unistd.h>

#include "test_engine_model.h"

#define MAX_VOLS 40
#define MIN_VOL (64u << 10)
#define MAX_VOL (2u << 20)  /* past the first chunk boundary (255 blocks at 4 KiB) */
#define POOL_SIZE (256ull << 20)

typedef struct run {
	rng r;
	vms_pool *pool;
	model m;
	char path[128];
	vms_pool_options opts;
	uint64_t ops;
	vms_vol_id *used;  /* every id ever handed out: ids are never reused */
	size_t nused;
} run;

/* A new id must be nonzero and never seen before in this pool. */
static int fresh_id(run *t, vms_vol_id id, const char *what)
{
	for (size_t i = 0; i < t->nused && id; i++) {
		if (t->used[i] == id) {
			id = 0;
			break;
		}
	}
	if (!id) {
		fail("%s returned an id that is zero or was used before", what);
		return 0;
	}
	t->used = realloc(t->used, (t->nused + 1) * sizeof(*t->used));
	t->used[t->nused++] = id;
	return 1;
}

static uint64_t random_vol_size(rng *r)
{
	/* multiples of 512, often not of the block size */
	return (MIN_VOL + rng_below(r, MAX_VOL - MIN_VOL + 1)) / 512 * 512;
}

static model_vol *pick(run *t, int writable)
{
	return model_pick(&t->m, &t->r, writable);
}

/* A random 512-aligned range inside a volume: mostly sub-block or a few
 * blocks, sometimes large. */
static void pick_range(run *t, const model_vol *v, uint64_t *off, uint64_t *len)
{
	uint64_t sectors = v->size / 512;
	uint64_t n, spb = (t->opts.block_size ? t->opts.block_size : 4096) / 512;
	uint64_t fanout = spb * 512 / 16 - 1; /* blocks per format 2 leaf: write chunks end there */
	if (sectors > fanout * spb && rng_below(&t->r, 4) == 0) {
		/* at a chunk boundary: whole blocks, or from a partial one */
		uint64_t b = fanout * spb, s = b - spb;  /* the chunk's last block, whole */
		n = spb * (1 + rng_below(&t->r, 3));
		if (rng_below(&t->r, 2)) {                /* or from inside it */
			s = b - 1 - rng_below(&t->r, spb - 1);
			n = 1 + rng_below(&t->r, 4 * spb);
		}
		if (s + n > sectors)
			n = sectors - s;
		*off = s * 512;
		*len = n * 512;
		return;
	}
	switch (rng_below(&t->r, 4)) {
	case 0: n = 1 + rng_below(&t->r, 8); break;                   /* sub-block */
	case 1: n = 1 + rng_below(&t->r, 32); break;
	case 2: n = 8 * (1 + rng_below(&t->r, 16)); break;            /* whole 4K blocks */
	default: n = 1 + rng_below(&t->r, 512); break;                /* up to 256 KiB */
	}
	if (n > sectors)
		n = sectors;
	uint64_t s = rng_below(&t->r, sectors - n + 1);
	if (rng_below(&t->r, 3) == 0)
		s = s / 8 * 8; /* block aligned start */
	*off = s * 512;
	*len = n * 512;
}

static int op_create(run *t)
{
	if (t->m.n >= MAX_VOLS)
		return 1;
	uint64_t size = random_vol_size(&t->r);
	vms_vol_id id;
	int rc = vms_vol_create(&id, t->pool, size);
	trace("create size %" PRIu64 " -> %d id %" PRIu64, size, rc, rc ? 0 : id);
	if (rc < 0) {
		fail("create of %" PRIu64 " bytes failed: %d %s", size, rc, vms_error_last());
		return 0;
	}
	if (!fresh_id(t, id, "create"))
		return 0;
	model_add(&t->m, id, VMS_VOL_VOLUME, size, 0, NULL);
	return 1;
}

static int op_write(run *t)
{
	model_vol *v = pick(t, 1);
	if (!v)
		return op_create(t);
	uint64_t off, len;
	pick_range(t, v, &off, &len);
	unsigned char *buf = malloc(len);
	rng_fill(&t->r, buf, len);
	if (rng_below(&t->r, 4) == 0) /* runs of equal bytes and zeros too */
		memset(buf, rng_below(&t->r, 3) ? (int)rng_below(&t->r, 256) : 0, len);
	unsigned flags = rng_below(&t->r, 16) == 0 ? VMS_IO_FUA : 0;
	int rc = vms_vol_write(t->pool, v->id, buf, len, off, flags);
	trace("write vol %" PRIu64 " off %" PRIu64 " len %" PRIu64 " flags %u -> %d", v->id, off,
	      len, flags, rc);
	if (rc < 0) {
		fail("write failed: %d %s", rc, vms_error_last());
		free(buf);
		return 0;
	}
	memcpy(v->data + off, buf, len);
	free(buf);
	/* read it straight back, and a little around it */
	uint64_t lo = off >= 4096 ? off - 4096 : 0;
	uint64_t hi = off + len + 4096 <= v->size ? off + len + 4096 : v->size;
	return check_range(t->pool, v, lo, (size_t)(hi - lo), "read after write");
}

static int op_bad_io(run *t)
{
	model_vol *v = pick(t, 0);
	if (!v)
		return 1;
	unsigned char buf[4096];
	memset(buf, 0xAB, sizeof(buf));
	int rc, expect_erofs = 0;
	const char *what;
	switch (rng_below(&t->r, 4)) {
	case 0:
		what = "write past the end";
		rc = vms_vol_write(t->pool, v->id, buf, 4096, v->size - 512, 0);
		break;
	case 1:
		what = "unaligned write";
		rc = vms_vol_write(t->pool, v->id, buf, 1000, 512, 0);
		break;
	case 2:
		what = "read past the end";
		rc = vms_vol_read(t->pool, v->id, buf, 1024, v->size);
		break;
	default:
		if (v->kind != VMS_VOL_SNAPSHOT)
			return 1;
		what = "write to a snapshot";
		expect_erofs = 1;
		rc = vms_vol_write(t->pool, v->id, buf, 4096, 0, 0);
		break;
	}
	trace("%s vol %" PRIu64 " -> %d", what, v->id, rc);
	if (rc >= 0 || (expect_erofs && rc != VMS_EROFS)) {
		fail("%s on vol %" PRIu64 " returned %d, expected %s", what, v->id, rc,
		     expect_erofs ? "VMS_EROFS" : "an error");
		return 0;
	}
	return check_range(t->pool, v, 0, (size_t)(v->size < 8192 ? v->size : 8192), what);
}

static int op_trim(run *t, int zeroes)
{
	model_vol *v = pick(t, 1);
	if (!v)
		return 1;
	uint64_t off, len;
	pick_range(t, v, &off, &len);
	int rc = zeroes ? vms_vol_write_zeroes(t->pool, v->id, len, off, 0)
	                : vms_vol_trim(t->pool, v->id, len, off);
	trace("%s vol %" PRIu64 " off %" PRIu64 " len %" PRIu64 " -> %d",
	      zeroes ? "write_zeroes" : "trim", v->id, off, len, rc);
	if (rc < 0) {
		fail("%s failed: %d %s", zeroes ? "write_zeroes" : "trim", rc, vms_error_last());
		return 0;
	}
	if (zeroes) {
		memset(v->data + off, 0, len);
		return check_range(t->pool, v, off, len, "read after write_zeroes");
	}
	/* The contract lets a trim keep data it cannot drop (a partial block):
	 * every sector must read as before or as zeros; the model adopts it. */
	unsigned char *buf = malloc(len);
	rc = vms_vol_read(t->pool, v->id, buf, len, off);
	int ok = rc == 0;
	for (uint64_t s = 0; ok && s < len; s += 512) {
		if (!is_zero(buf + s, 512) && memcmp(buf + s, v->data + off + s, 512) != 0) {
			fail("after trim, sector at %" PRIu64 " of vol %" PRIu64
			     " is neither the old content nor zeros",
			     off + s, v->id);
			ok = 0;
		}
	}
	if (rc < 0)
		fail("read after trim failed: %d %s", rc, vms_error_last());
	if (ok)
		memcpy(v->data + off, buf, len);
	free(buf);
	return ok;
}

static int op_read(run *t)
{
	model_vol *v = pick(t, 0);
	if (!v)
		return 1;
	uint64_t off, len;
	pick_range(t, v, &off, &len);
	trace("read vol %" PRIu64 " off %" PRIu64 " len %" PRIu64, v->id, off, len);
	return check_range(t->pool, v, off, (size_t)len, "read");
}

static int op_snapshot(run *t)
{
	if (t->m.n + 3 > MAX_VOLS)
		return 1;
	vms_vol_id src[3], out[3] = {0};
	size_t n = 1 + rng_below(&t->r, 3);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		model_vol *v = pick(t, 1);
		if (!v)
			break;
		int dup = 0;
		for (size_t j = 0; j < k; j++)
			dup |= src[j] == v->id;
		if (!dup)
			src[k++] = v->id;
	}
	if (k == 0)
		return 1;
	int rc = vms_vol_snapshot(out, t->pool, src, k);
	trace("snapshot %zu vols (%" PRIu64 " %" PRIu64 " %" PRIu64 ") -> %d (%" PRIu64 " %" PRIu64
	      " %" PRIu64 ")",
	      k, src[0], k > 1 ? src[1] : 0, k > 2 ? src[2] : 0, rc, out[0], out[1], out[2]);
	if (rc < 0) {
		fail("snapshot failed: %d %s", rc, vms_error_last());
		return 0;
	}
	for (size_t i = 0; i < k; i++) {
		model_vol *v = model_find(&t->m, src[i]);
		if (!fresh_id(t, out[i], "snapshot"))
			return 0;
		model_vol *s = model_add(&t->m, out[i], VMS_VOL_SNAPSHOT, v->size, v->id, v->data);
		if (!check_volume(t->pool, s, "new snapshot"))
			return 0;
	}
	return 1;
}

static int op_clone(run *t)
{
	if (t->m.n >= MAX_VOLS)
		return 1;
	model_vol *v = pick(t, 0);
	if (!v)
		return 1;
	vms_vol_id id;
	int rc = vms_vol_clone(&id, t->pool, v->id);
	trace("clone of %" PRIu64 " -> %d id %" PRIu64, v->id, rc, rc ? 0 : id);
	if (rc < 0) {
		fail("clone failed: %d %s", rc, vms_error_last());
		return 0;
	}
	if (!fresh_id(t, id, "clone"))
		return 0;
	model_vol *c = model_add(&t->m, id, VMS_VOL_VOLUME, v->size, v->id, v->data);
	return check_volume(t->pool, c, "new clone");
}

static int op_rollback(run *t)
{
	model_vol *v = pick(t, 1);
	model_vol *s = pick(t, 0);
	if (!v || !s || v == s)
		return 1;
	vms_vol_id vid = v->id, sid = s->id;
	int rc = vms_vol_rollback(t->pool, vid, sid);
	trace("rollback vol %" PRIu64 " to %" PRIu64 " -> %d", vid, sid, rc);
	if (rc < 0) {
		fail("rollback failed: %d %s", rc, vms_error_last());
		return 0;
	}
	/* "identical to snap": content and size */
	model_resize(v, s->size);
	memcpy(v->data, s->data, s->size);
	v->origin_known = 0;
	return check_volume(t->pool, v, "after rollback");
}

static int op_reap_wait(run *t);
static int op_flush(run *t, int how);

/* Data blocks in use once the collector is done and the frees are
 * committed. */
static int settled_data_blocks(run *t, uint64_t *out)
{
	vms_pool_stats st;
	if (!op_reap_wait(t) || !op_flush(t, 1) || !op_flush(t, 1) || !op_flush(t, 1))
		return 0;
	int rc = vms_pool_stats_get(&st, t->pool);
	if (rc < 0) {
		fail("stats: %d %s", rc, vms_error_last());
		return 0;
	}
	*out = st.data_blocks;
	return 1;
}

static int op_delete(run *t)
{
	model_vol *v = pick(t, 0);
	if (!v)
		return 1;
	vms_vol_id id = v->id;
	/* format 3, one delete in two: unique bytes are what the delete frees
	 * (format 2 counts its index nodes too) */
	int oracle = t->opts.index == VMS_INDEX_KEYS && rng_below(&t->r, 2);
	uint64_t before = 0, after = 0, uniq = 0;
	if (oracle && !settled_data_blocks(t, &before))
		return 0;
	if (oracle && vms_vol_unique_bytes(&uniq, t->pool, id) < 0) {
		fail("unique bytes of %" PRIu64 ": %s", id, vms_error_last());
		return 0;
	}
	int rc = vms_vol_delete(t->pool, id);
	trace("delete %" PRIu64 " -> %d", id, rc);
	if (rc < 0) {
		fail("delete failed: %d %s", rc, vms_error_last());
		return 0;
	}
	if (oracle && !settled_data_blocks(t, &after))
		return 0;
	if (oracle && before - after != uniq / t->opts.block_size) {
		fail("unique bytes of %" PRIu64 " said %" PRIu64 " blocks, deleting it freed %" PRId64,
		     id, uniq / t->opts.block_size, (int64_t)(before - after));
		return 0;
	}
	model_remove(&t->m, id);
	vms_vol_info info;
	rc = vms_vol_info_get(&info, t->pool, id);
	if (rc == 0 && !info.deleting) {
		fail("deleted vol %" PRIu64 " still has info without deleting flag", id);
		return 0;
	}
	unsigned char buf[512] = {0};
	rc = vms_vol_write(t->pool, id, buf, 512, 0, 0);
	if (rc >= 0) {
		fail("write to deleted vol %" PRIu64 " succeeded", id);
		return 0;
	}
	if (vms_vol_delete(t->pool, id) >= 0) {
		fail("second delete of vol %" PRIu64 " succeeded", id);
		return 0;
	}
	return 1;
}

static int op_resize(run *t)
{
	model_vol *v = pick(t, 0);
	if (!v)
		return 1;
	uint64_t size = random_vol_size(&t->r);
	int rc = vms_vol_resize(t->pool, v->id, size);
	trace("resize %s %" PRIu64 " from %" PRIu64 " to %" PRIu64 " -> %d",
	      v->kind == VMS_VOL_SNAPSHOT ? "snapshot" : "volume", v->id, v->size, size, rc);
	if (v->kind == VMS_VOL_SNAPSHOT) {
		if (rc >= 0) {
			fail("resize of snapshot %" PRIu64 " succeeded", v->id);
			return 0;
		}
		return check_volume(t->pool, v, "snapshot after refused resize");
	}
	if (rc < 0) {
		fail("resize failed: %d %s", rc, vms_error_last());
		return 0;
	}
	/* a shrink forgets the tail: growing again shows zeros */
	model_resize(v, size);
	return check_volume(t->pool, v, "after resize");
}

struct extents {
	uint64_t next;        /* where the next run must start */
	const model_vol *v;
	unsigned char *changed; /* per sector, for diff */
	uint64_t end;
	int bad;
	char why[200];
};

static int status_cb(void *ctx, uint64_t off, uint64_t len, int allocated)
{
	struct extents *e = ctx;
	if (off != e->next || len == 0 || off + len > e->end) {
		snprintf(e->why, sizeof(e->why),
		         "run [%" PRIu64 ", +%" PRIu64 ") does not follow at %" PRIu64 " (end %" PRIu64 ")",
		         off, len, e->next, e->end);
		e->bad = 1;
		return 1;
	}
	if (!allocated && !is_zero(e->v->data + off, len)) {
		snprintf(e->why, sizeof(e->why),
		         "run [%" PRIu64 ", +%" PRIu64 ") reported unallocated holds data", off, len);
		e->bad = 1;
		return 1;
	}
	e->next = off + len;
	return 0;
}

static int op_block_status(run *t)
{
	model_vol *v = pick(t, 0);
	if (!v)
		return 1;
	uint64_t off, len;
	if (rng_below(&t->r, 2)) {
		off = 0;
		len = v->size;
	} else {
		pick_range(t, v, &off, &len);
	}
	struct extents e = {.next = off, .v = v, .end = off + len};
	int rc = vms_vol_block_status(t->pool, v->id, off, len, status_cb, &e);
	trace("block_status vol %" PRIu64 " off %" PRIu64 " len %" PRIu64 " -> %d", v->id, off, len,
	      rc);
	if (e.bad || rc != 0 || e.next != off + len) {
		fail("block_status of vol %" PRIu64 " [%" PRIu64 ", +%" PRIu64 "): rc %d, %s (covered up "
		     "to %" PRIu64 ")",
		     v->id, off, len, rc, e.bad ? e.why : "", e.next);
		return 0;
	}
	return 1;
}

static int diff_cb(void *ctx, uint64_t off, uint64_t len, int allocated)
{
	struct extents *e = ctx;
	(void)allocated;
	if (off % 512 || len % 512 || off + len > e->end + (64u << 10)) {
		snprintf(e->why, sizeof(e->why), "diff range [%" PRIu64 ", +%" PRIu64 ") out of bounds",
		         off, len);
		e->bad = 1;
		return 1;
	}
	for (uint64_t s = off / 512; s < (off + len) / 512 && s < e->end / 512; s++)
		e->changed[s] = 1;
	return 0;
}

/* A snapshot against its origin, or two snapshots of one volume. */
static int op_diff(run *t)
{
	model_vol *a = pick(t, 0);
	if (!a || a->kind != VMS_VOL_SNAPSHOT || !a->origin_known)
		return 1;
	model_vol *b = model_find(&t->m, a->origin);
	if (rng_below(&t->r, 2)) { /* a sibling snapshot instead */
		for (size_t i = 0; i < t->m.n; i++)
			if (&t->m.v[i] != a && t->m.v[i].kind == VMS_VOL_SNAPSHOT &&
			    t->m.v[i].origin_known && t->m.v[i].origin == a->origin)
				b = &t->m.v[i];
	}
	if (!b || b->size != a->size)
		return 1;
	if (b->id < a->id) { /* older first */
		model_vol *x = a;
		a = b;
		b = x;
	}
	struct extents e = {.end = a->size, .changed = calloc(a->size / 512 + 1, 1)};
	int rc = vms_vol_diff(t->pool, a->id, b->id, diff_cb, &e);
	trace("diff %" PRIu64 " -> %" PRIu64 " -> %d", a->id, b->id, rc);
	int ok = 1;
	if (rc != 0 || e.bad) {
		fail("diff %" PRIu64 " -> %" PRIu64 ": rc %d %s %s", a->id, b->id, rc,
		     e.bad ? e.why : "", vms_error_last());
		ok = 0;
	}
	for (uint64_t s = 0; ok && s < a->size / 512; s++) {
		if (!e.changed[s] && memcmp(a->data + s * 512, b->data + s * 512, 512) != 0) {
			fail("diff %" PRIu64 " -> %" PRIu64 " misses changed sector at byte %" PRIu64,
			     a->id, b->id, s * 512);
			ok = 0;
		}
	}
	free(e.changed);
	return ok;
}

static int op_flush(run *t, int how)
{
	int rc;
	const char *what;
	if (how == 0) {
		model_vol *v = pick(t, 0);
		if (!v)
			return 1;
		what = "flush";
		rc = vms_vol_flush(t->pool, v->id);
	} else {
		what = "commit";
		rc = vms_pool_commit(t->pool);
	}
	trace("%s -> %d", what, rc);
	if (rc < 0) {
		fail("%s failed: %d %s", what, rc, vms_error_last());
		return 0;
	}
	return 1;
}

static int open_pool(run *t)
{
	vms_pool_options o = t->opts;
	int rc = vms_pool_open_file(&t->pool, t->path, &o);
	if (rc < 0) {
		t->pool = NULL;
		fail("reopen of %s failed: %d %s", t->path, rc, vms_error_last());
		return 0;
	}
	return 1;
}

static int op_reopen(run *t)
{
	int rc = vms_pool_close(t->pool);
	t->pool = NULL;
	trace("close+reopen -> %d", rc);
	if (rc < 0) {
		fail("close failed: %d %s", rc, vms_error_last());
		return 0;
	}
	if (!open_pool(t))
		return 0;
	return check_all(t->pool, &t->m, "after reopen");
}

static int op_reap_wait(run *t)
{
	int rc = vms_pool_reap_wait(t->pool);
	trace("reap_wait -> %d", rc);
	if (rc < 0) {
		fail("reap_wait failed: %d %s", rc, vms_error_last());
		return 0;
	}
	vms_pool_stats st;
	rc = vms_pool_stats_get(&st, t->pool);
	if (rc < 0 || st.deleting != 0) {
		fail("after reap_wait: stats rc %d, %" PRIu64 " volumes still deleting", rc, st.deleting);
		return 0;
	}
	return 1;
}

static int check_stats(run *t)
{
	vms_pool_stats st;
	int rc = vms_pool_stats_get(&st, t->pool);
	uint64_t snaps = 0;
	for (size_t i = 0; i < t->m.n; i++)
		snaps += t->m.v[i].kind == VMS_VOL_SNAPSHOT;
	uint32_t bs = t->opts.block_size ? t->opts.block_size : 4096;
	if (rc < 0 || st.block_size != bs || st.free_blocks > st.total_blocks ||
	    st.total_blocks != POOL_SIZE / bs || st.snapshots != snaps || st.readonly ||
	    st.data_checksums != !!t->opts.data_checksums) {
		fail("stats: rc %d block_size %u total %" PRIu64 " free %" PRIu64 " snapshots %" PRIu64
		     " (model %" PRIu64 ") readonly %d checksums %d",
		     rc, st.block_size, st.total_blocks, st.free_blocks, st.snapshots, snaps,
		     st.readonly, st.data_checksums);
		return 0;
	}
	for (size_t i = 0; i < t->m.n; i++) {
		vms_vol_info info;
		const model_vol *v = &t->m.v[i];
		uint64_t cap = (v->size + bs - 1) / bs * bs;
		if (vms_vol_info_get(&info, t->pool, v->id) < 0 || info.referenced > cap ||
		    info.referenced % bs) {
			fail("vol %" PRIu64 ": referenced %" PRIu64 " beyond its size %" PRIu64
			     " or not whole blocks",
			     v->id, info.referenced, v->size);
			return 0;
		}
	}
	return 1;
}

/* Empty the pool: every block must come back. */
static int drain(run *t, const vms_pool_stats *initial)
{
	while (t->m.n) {
		vms_vol_id id = t->m.v[t->m.n - 1].id;
		int rc = vms_vol_delete(t->pool, id);
		trace("delete %" PRIu64 " (drain) -> %d", id, rc);
		if (rc < 0) {
			fail("delete failed: %d %s", rc, vms_error_last());
			return 0;
		}
		model_remove(&t->m, id);
	}
	if (!op_reap_wait(t) || !op_flush(t, 1) || !op_flush(t, 1) || !op_flush(t, 1))
		return 0;
	if (!check_space_returned(t->pool, initial, "after deleting everything"))
		return 0;
	return check_pool_clean(t->pool, "empty pool");
}

/* One run: a fresh pool with the given options and `ops` random operations. */
static void model_run(uint64_t seed, uint64_t ops, const vms_pool_options *opts)
{
	run t = {.r = {seed}, .opts = *opts};
	trace_seed = seed;
	trace_count = 0;
	model_failed = 0;
	REQUIRE(model_pool_path(t.path, sizeof(t.path), "model") == 0);
	int rc = vms_pool_create_file(&t.pool, t.path, POOL_SIZE, &t.opts);
	if (rc < 0) {
		fail("create pool: %d %s", rc, vms_error_last());
		unlink(t.path);
		return;
	}
	vms_pool_stats st;
	vms_pool_commit(t.pool);
	vms_pool_commit(t.pool);
	vms_pool_stats_get(&st, t.pool);
	vms_pool_stats initial = st;
	int ok = 1;
	for (uint64_t i = 0; ok && i < ops; i++) {
		unsigned w = (unsigned)rng_below(&t.r, 100);
		if (t.m.n == 0)
			ok = op_create(&t);
		else if (w < 28)
			ok = op_write(&t);
		else if (w < 40)
			ok = op_read(&t);
		else if (w < 44)
			ok = op_trim(&t, 0);
		else if (w < 48)
			ok = op_trim(&t, 1);
		else if (w < 54)
			ok = op_snapshot(&t);
		else if (w < 58)
			ok = op_clone(&t);
		else if (w < 61)
			ok = op_rollback(&t);
		else if (w < 67)
			ok = op_delete(&t);
		else if (w < 71)
			ok = op_create(&t);
		else if (w < 74)
			ok = op_resize(&t);
		else if (w < 78)
			ok = op_flush(&t, 0);
		else if (w < 80)
			ok = op_flush(&t, 1);
		else if (w < 82)
			ok = op_reopen(&t);
		else if (w < 84)
			ok = op_reap_wait(&t);
		else if (w < 89)
			ok = op_block_status(&t);
		else if (w < 94)
			ok = op_diff(&t);
		else if (w < 97)
			ok = op_bad_io(&t);
		else
			ok = check_stats(&t);
		if (ok && i % 250 == 249) {
			trace("check (periodic)");
			ok = check_pool_clean(t.pool, "periodic check") &&
			     check_all(t.pool, &t.m, "periodic full compare");
		}
	}
	if (ok)
		ok = check_all(t.pool, &t.m, "end of run") && check_pool_clean(t.pool, "end of run") &&
		     op_reopen(&t) && check_pool_clean(t.pool, "after the last reopen") &&
		     drain(&t, &initial);
	if (t.pool)
		vms_pool_close(t.pool);
	model_free(&t.m);
	free(t.used);
	unlink(t.path);
}

static const vms_pool_options configs[] = {
	{.block_size = 4096, .commit_interval_ms = UINT32_MAX},
	{.block_size = 4096, .data_checksums = 1, .cache_bytes = 256 << 10, .commit_interval_ms = 20},
	{.block_size = 8192, .data_checksums = 1, .commit_interval_ms = UINT32_MAX},
	{.block_size = 65536, .cache_bytes = 1 << 20, .commit_interval_ms = 50},
	/* format 3: the versioned-key index */
	{.block_size = 4096, .data_checksums = 1, .cache_bytes = 256 << 10, .commit_interval_ms = 20,
	 .index = VMS_INDEX_KEYS},
	{.block_size = 8192, .commit_interval_ms = UINT32_MAX, .index = VMS_INDEX_KEYS},
};

TEST(random_operations_match_the_model)
{
	uint64_t seed = test_seed("engine model");
	uint64_t total = env_u64("VMS_MODEL_OPS", VMS_TEST_SCALE(6000));
	size_t nconf = sizeof(configs) / sizeof(configs[0]);
	for (size_t c = 0; c < nconf && !test_failures_in_case; c++) {
		uint64_t run_seed = seed * 31 + c;
		printf("  config %zu: block %u checksums %d cache %" PRIu64 " commit %u ms index %s, run "
		       "seed %" PRIu64 ", %" PRIu64 " ops\n",
		       c, configs[c].block_size, configs[c].data_checksums, configs[c].cache_bytes,
		       configs[c].commit_interval_ms, configs[c].index ? "keys" : "radix", run_seed,
		       total / nconf);
		fflush(stdout);
		if (getenv("VMS_CONFIG") && (size_t)atoi(getenv("VMS_CONFIG")) != c)
			continue;
		model_run(run_seed, total / nconf, &configs[c]);
	}
	if (test_failures_in_case)
		printf("  replay: VMS_SEED=%" PRIu64 " (VMS_CONFIG=n runs one configuration)\n", seed);
}

/* ---- concurrency: writers on two volumes, snapshots in between --------- */

#define CW_WRITES 300
#define CW_VOL (512u << 10)

struct writer {
	vms_pool *pool;
	vms_vol_id vol;
	unsigned id;
	uint64_t offs[CW_WRITES];
	int rc;
};

static void stamp(unsigned char *buf, unsigned writer, unsigned seq)
{
	for (size_t i = 0; i < 4096; i += 4) {
		buf[i] = (unsigned char)writer;
		buf[i + 1] = (unsigned char)seq;
		buf[i + 2] = (unsigned char)(seq >> 8);
		buf[i + 3] = (unsigned char)(i >> 4);
	}
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	unsigned char buf[4096], rd[4096];
	for (unsigned s = 0; s < CW_WRITES; s++) {
		stamp(buf, w->id, s + 1);
		/* sub-block writes half of the time: 2 KiB at a 512-aligned offset */
		size_t len = s % 2 ? 2048 : 4096;
		if ((w->rc = vms_vol_write(w->pool, w->vol, buf, len, w->offs[s], 0)) < 0)
			return NULL;
		if ((w->rc = vms_vol_read(w->pool, w->vol, rd, len, w->offs[s])) < 0)
			return NULL;
		if (memcmp(rd, buf, len) != 0) {
			w->rc = -1000;
			return NULL;
		}
	}
	return NULL;
}

/* The volume content after the first n writes of w. */
static void replay(unsigned char *img, const struct writer *w, unsigned n)
{
	unsigned char buf[4096];
	memset(img, 0, CW_VOL);
	for (unsigned s = 0; s < n; s++) {
		stamp(buf, w->id, s + 1);
		memcpy(img + w->offs[s], buf, s % 2 ? 2048 : 4096);
	}
}

TEST(snapshots_during_concurrent_writes_are_atomic)
{
	uint64_t seed = test_seed("engine concurrency");
	rng r = {seed};
	char path[128];
	REQUIRE(model_pool_path(path, sizeof(path), "model") == 0);
	vms_pool *pool;
	vms_pool_options o = {.commit_interval_ms = 10};
	REQUIRE(vms_pool_create_file(&pool, path, 64ull << 20, &o) == 0);
	struct writer w[2];
	pthread_t th[2];
	for (unsigned i = 0; i < 2; i++) {
		w[i] = (struct writer){.pool = pool, .id = i + 1};
		CHECK_OK(vms_vol_create(&w[i].vol, pool, CW_VOL));
		for (unsigned s = 0; s < CW_WRITES; s++)
			w[i].offs[s] = rng_below(&r, (CW_VOL - 4096) / 512) * 512;
	}
	for (unsigned i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, writer_main, &w[i]);
	enum { NSNAP = 12 };
	vms_vol_id snaps[NSNAP][2];
	vms_vol_id vols[2] = {w[0].vol, w[1].vol};
	for (int k = 0; k < NSNAP; k++) {
		CHECK_OK(vms_vol_snapshot(snaps[k], pool, vols, 2));
		usleep(300);
	}
	for (unsigned i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		CHECK(w[i].rc == 0);
	}
	/* each snapshot equals its volume after some prefix of the writes, and
	 * the prefixes never go backwards from one snapshot to the next */
	unsigned char *img = malloc(CW_VOL), *got = malloc(CW_VOL);
	for (unsigned i = 0; i < 2; i++) {
		unsigned from = 0;
		for (int k = 0; k < NSNAP; k++) {
			CHECK_OK(vms_vol_read(pool, snaps[k][i], got, CW_VOL, 0));
			int found = -1;
			unsigned char buf[4096];
			replay(img, &w[i], from);
			for (unsigned n = from; n <= CW_WRITES && found < 0; n++) {
				if (memcmp(img, got, CW_VOL) == 0)
					found = (int)n;
				else if (n < CW_WRITES) { /* apply write n+1 */
					stamp(buf, w[i].id, n + 1);
					memcpy(img + w[i].offs[n], buf, n % 2 ? 2048 : 4096);
				}
			}
			if (found < 0)
				fprintf(stderr, "  snapshot %d of writer %u matches no prefix of its writes\n",
				        k, i);
			CHECK(found >= 0);
			if (found >= 0)
				from = (unsigned)found;
		}
		replay(img, &w[i], CW_WRITES);
		CHECK_OK(vms_vol_read(pool, w[i].vol, got, CW_VOL, 0));
		CHECK(memcmp(img, got, CW_VOL) == 0);
	}
	free(img);
	free(got);
	vms_check_report rep;
	CHECK(vms_pool_check(&rep, pool, VMS_CHECK_DATA) == 0);
	CHECK(rep.leaked_blocks == 0 && rep.corrupt == 0);
	CHECK_OK(vms_pool_close(pool));
	unlink(path);
}

TEST_MAIN()
