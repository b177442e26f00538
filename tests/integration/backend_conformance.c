/*
 * backend_conformance.c - one scenario run through include/vmsnap/backend.h
 * against any SR type: it_backend_conformance TYPE LOCATION [SR_SIZE].
 *
 * Every verb of the strategy interface is exercised and the data of every
 * disk, snapshot and clone is compared with an in-memory model after every
 * step: sr create/open/space, disk create/resize/delete, a two-disk
 * snapshot, rollback to an old snapshot keeping the newer ones, clones and a
 * clone of a clone (independence verified both ways), snapshot delete with
 * and without clones, ref_space, block status, trim/zero, check, bad refs,
 * SR destroy refused while not empty.  Written data is pseudo-random from a
 * seed printed at start (VMS_SEED=N replays it).
 *
 * Exit status 0 when every check passed.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmsnap/backend.h"
#include "vmsnap/error.h"
#include "vmsnap/pool.h"
#include "vmsnap/run.h"
#include "vmsnap/uuid.h"

#define MiB (1024u * 1024u)
#define BLK (64u * 1024u)

static int g_pass, g_fail;
static const vms_backend *be;
static vms_sr_handle *sr;
static uint64_t g_rng;

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (cond) {                                                       \
			g_pass++;                                                 \
		} else {                                                          \
			g_fail++;                                                 \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                             \
			fprintf(stderr, " [last error: %s]\n", vms_error_last()); \
		}                                                                 \
	} while (0)
#define CHECK_OK(expr, ...) CHECK((expr) == 0, __VA_ARGS__)

static uint64_t rnd(void)
{
	g_rng ^= g_rng << 13;
	g_rng ^= g_rng >> 7;
	g_rng ^= g_rng << 17;
	return g_rng;
}

static void step(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "-- ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* ---- a disk and its model ------------------------------------------------ */

typedef struct mdisk {
	char key[VMS_UUID_BUF];
	char *ref;
	uint64_t size;
	unsigned char *data;     /* model of the content */
} mdisk;

static void model_resize(mdisk *d, uint64_t size)
{
	d->data = realloc(d->data, size ? size : 1);
	if (!d->data)
		abort();
	if (size > d->size)
		memset(d->data + d->size, 0, size - d->size);
	d->size = size;
}

static mdisk model_copy(const mdisk *d, const char *ref)
{
	mdisk c = *d;
	c.ref = strdup(ref);
	c.data = malloc(d->size ? d->size : 1);
	if (!c.ref || !c.data)
		abort();
	memcpy(c.data, d->data, d->size);
	return c;
}

static void model_free(mdisk *d)
{
	free(d->ref);
	free(d->data);
	d->ref = NULL;
	d->data = NULL;
}

/* Write len random bytes at off to the disk and the model. */
static void put(mdisk *d, uint64_t off, size_t len)
{
	vms_disk *h = NULL;
	unsigned char *buf = malloc(len);

	if (!buf)
		abort();
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = rnd();
		memcpy(buf + i, &x, len - i < 8 ? len - i : 8);
	}
	CHECK_OK(be->disk_open(&h, sr, d->ref, 0), "open %s for writing", d->ref);
	if (h) {
		CHECK_OK(be->disk_write(h, buf, len, off, 0), "write %zu at %" PRIu64 " of %s", len, off, d->ref);
		CHECK_OK(be->disk_flush(h), "flush %s", d->ref);
		be->disk_close(h);
		memcpy(d->data + off, buf, len);
	}
	free(buf);
}

/* The whole disk (or snapshot) must equal the model. */
static void verify(const mdisk *d, const char *what)
{
	vms_disk *h = NULL;
	unsigned char *buf = malloc(MiB);
	uint64_t off;

	if (!buf)
		abort();
	CHECK_OK(be->disk_open(&h, sr, d->ref, VMS_DISK_READONLY), "open %s (%s)", d->ref, what);
	if (!h) {
		free(buf);
		return;
	}
	CHECK(be->disk_size(h) == d->size, "%s: size %" PRIu64 ", expected %" PRIu64, what, be->disk_size(h), d->size);
	for (off = 0; off < d->size; off += MiB) {
		size_t n = d->size - off < MiB ? (size_t)(d->size - off) : MiB;
		if (be->disk_read(h, buf, n, off) != 0) {
			CHECK(0, "%s: read at %" PRIu64 " failed", what, off);
			break;
		}
		if (memcmp(buf, d->data + off, n) != 0) {
			size_t i = 0;
			while (buf[i] == d->data[off + i])
				i++;
			CHECK(0, "%s (%s): data differs from the model at byte %" PRIu64, what, d->ref, off + i);
			break;
		}
	}
	g_pass++;
	be->disk_close(h);
	free(buf);
}

static void new_disk(mdisk *d, const char *vm, uint64_t size)
{
	memset(d, 0, sizeof(*d));
	vms_uuid_generate(d->key);
	model_resize(d, size);
	CHECK_OK(be->disk_create(&d->ref, sr, vm, d->key, size), "create disk of %" PRIu64 " bytes", size);
	if (!d->ref)
		d->ref = strdup("missing");
}

/* Snapshot disks d[0..n) of vm; models of the snapshot into s[]. */
static int snap(mdisk *s, const char *vm, char key[VMS_UUID_BUF], mdisk *d, size_t n)
{
	const char *refs[8];
	char *out[8] = {0};
	int rc;

	vms_uuid_generate(key);
	for (size_t i = 0; i < n; i++)
		refs[i] = d[i].ref;
	rc = be->snapshot_create(out, sr, vm, key, refs, n);
	CHECK_OK(rc, "snapshot %s of %zu disks", key, n);
	for (size_t i = 0; i < n; i++) {
		s[i] = model_copy(&d[i], rc == 0 ? out[i] : "missing");
		free(out[i]);
	}
	return rc;
}

static int rollback(const char *vm, mdisk *d, const mdisk *s, size_t n)
{
	const char *refs[8], *srefs[8];
	char *nr[8] = {0};
	int rc;

	for (size_t i = 0; i < n; i++) {
		refs[i] = d[i].ref;
		srefs[i] = s[i].ref;
	}
	rc = be->rollback(nr, sr, vm, refs, srefs, n);
	CHECK_OK(rc, "rollback to %s", s[0].ref);
	for (size_t i = 0; i < n; i++) {
		if (nr[i]) {
			free(d[i].ref);
			d[i].ref = nr[i];
		}
		if (rc == 0) {
			model_resize(&d[i], s[i].size);
			memcpy(d[i].data, s[i].data, s[i].size);
		}
	}
	return rc;
}

static int clone(mdisk *c, const char *dst_vm, const mdisk *src, size_t n)
{
	const char *keys[8], *srcs[8];
	char *out[8] = {0};
	int rc;

	for (size_t i = 0; i < n; i++) {
		c[i] = model_copy(&src[i], "missing");
		vms_uuid_generate(c[i].key);
		keys[i] = c[i].key;
		srcs[i] = src[i].ref;
	}
	rc = be->clone(out, sr, dst_vm, keys, srcs, n);
	CHECK_OK(rc, "clone %zu disks from %s", n, src[0].ref);
	for (size_t i = 0; i < n; i++)
		if (out[i]) {
			free(c[i].ref);
			c[i].ref = out[i];
		}
	return rc;
}

static int snap_delete(const char *vm, const char *key, const mdisk *s, size_t n)
{
	const char *refs[8];
	for (size_t i = 0; i < n; i++)
		refs[i] = s[i].ref;
	return be->snapshot_delete(sr, vm, key, refs, n);
}

/* What the control module does when the catalog defers a snapshot's delete
 * (isDeleted): tell a backend that has the notion (VMS_CAP_DEFER_DELETE). */
static int snap_defer(const char *vm, const char *key, const mdisk *s, size_t n)
{
	const char *refs[8];
	for (size_t i = 0; i < n; i++)
		refs[i] = s[i].ref;
	if (!be->snapshot_defer_delete) {
		CHECK(!(be->caps & VMS_CAP_DEFER_DELETE), "a backend with defer_delete has the op");
		return 0;
	}
	return be->snapshot_defer_delete(sr, vm, key, refs, n);
}

/* ---- block status ---------------------------------------------------------- */

typedef struct bs_ctx {
	uint64_t next;       /* ranges must be contiguous */
	int gaps;
	uint64_t alloc_at_probe, hole_bytes;
	uint64_t probe;
} bs_ctx;

static int bs_cb(void *ctx, uint64_t off, uint64_t len, int allocated)
{
	bs_ctx *c = ctx;
	if (off != c->next || len == 0)
		c->gaps++;
	c->next = off + len;
	if (c->probe >= off && c->probe < off + len && allocated)
		c->alloc_at_probe = 1;
	if (!allocated)
		c->hole_bytes += len;
	return 0;
}

static void block_status(const mdisk *d, uint64_t probe, bs_ctx *c)
{
	vms_disk *h = NULL;

	memset(c, 0, sizeof(*c));
	c->probe = probe;
	CHECK_OK(be->disk_open(&h, sr, d->ref, VMS_DISK_READONLY), "open %s", d->ref);
	if (!h)
		return;
	CHECK_OK(be->disk_block_status(h, 0, d->size, bs_cb, c), "block status of %s", d->ref);
	CHECK(c->gaps == 0 && c->next == d->size, "block status ranges of %s are contiguous and cover the "
	      "disk (gaps %d, end %" PRIu64 ")", d->ref, c->gaps, c->next);
	be->disk_close(h);
}

/* ---- the scenario ------------------------------------------------------------- */

static const vms_backend *pick(const char *type)
{
#if __has_include("backend/registry.c")
	return vms_backend_find(type);
#else
	if (strcmp(type, "zfs") == 0)
		return &vms_backend_zfs;
	if (strcmp(type, "reflink") == 0)
		return &vms_backend_reflink;
	vms_error_set(VMS_ENOTFOUND, "unknown SR type '%s' (no backend registry yet)", type);
	return NULL;
#endif
}

static void bad_refs(void)
{
	static const char *bad[] = {
		"", "../x", "a/../../etc/passwd", "vm/", "/disk", "vm//disk", "vm/a/b", "vm@/disk", "vm@s/",
		".hidden/disk", "vm/..", "x@y@z/d",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/d",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vms_disk *h = NULL;
		vms_ref_space rs;
		int rc = be->disk_open(&h, sr, bad[i], VMS_DISK_READONLY);
		CHECK(rc < 0 && h == NULL, "disk_open of bad ref '%s' is refused", bad[i]);
		if (h)
			be->disk_close(h);
		CHECK(be->disk_delete(sr, bad[i]) < 0, "disk_delete of bad ref '%s' is refused", bad[i]);
		CHECK(be->ref_space(&rs, sr, bad[i]) < 0, "ref_space of bad ref '%s' is refused", bad[i]);
	}
	{
		char *ref = NULL;
		CHECK(be->disk_create(&ref, sr, "../evil", "d", MiB) < 0 && !ref, "a VM key with '..' is refused");
		CHECK(be->disk_create(&ref, sr, "vm", "a/b", MiB) < 0 && !ref, "a disk key with '/' is refused");
		free(ref);
	}
}

static void touch(const char *path)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL, "create %s", path);
	if (f)
		fclose(f);
}

static int zcmd(const char *const *argv, char *out, size_t n)
{
	vms_run_result r;
	int rc = vms_run(&r, argv, 60000);
	if (rc == 0 && r.exit_status != 0)
		rc = -1;
	if (out)
		snprintf(out, n, "%.*s", (int)strcspn(r.out ? r.out : "", "\n"), r.out ? r.out : "");
	vms_run_result_free(&r);
	return rc;
}

/* zfs: a property of <loc>/<vm>@<snap> ("" when the snapshot is gone). */
static void zsnap_prop(char *out, size_t n, const char *loc, const char *vm, const char *snap, const char *prop)
{
	char ds[600];
	snprintf(ds, sizeof(ds), "%s/%s@%s", loc, vm, snap);
	const char *argv[] = {"zfs", "get", "-H", "-p", "-o", "value", prop, ds, NULL};
	if (zcmd(argv, out, n) < 0)
		out[0] = '\0';
}

/*
 * The leftovers of an interrupted operation, made by hand in the backend's
 * layout (docs/backends.md): check must report them (CORRUPT) and check with
 * repair must remove them.
 */
static void leftovers(const char *type, const char *loc, const char *vm, const char *snap, const char *disk)
{
	char p[4096], ds[512], mnt[4096];
	char *report = NULL;
	int rc;

	/* a new handle, as after a restart (zfs: idle snapshot views go) */
	CHECK_OK(be->sr_close(sr), "sr_close");
	if (be->sr_open(&sr, loc) < 0) {
		fprintf(stderr, "FAIL: sr_open %s again: %s\n", loc, vms_error_last());
		exit(1);
	}
	if (strcmp(type, "reflink") == 0) {
		snprintf(p, sizeof(p), "%s/%s/disks/%s.raw.tmp", loc, vm, disk);
		touch(p);
		snprintf(p, sizeof(p), "%s/%s/snapshots/%s.tmp", loc, vm, snap);
		CHECK(mkdir(p, 0700) == 0, "mkdir %s", p);
		snprintf(p, sizeof(p), "%s/%s/snapshots/%s.tmp/%s.raw", loc, vm, snap, disk);
		touch(p);
	} else if (strcmp(type, "zfs") == 0) {
		snprintf(ds, sizeof(ds), "%s/%s", loc, vm);
		const char *get[] = {"zfs", "get", "-H", "-p", "-o", "value", "mountpoint", ds, NULL};
		CHECK(zcmd(get, mnt, sizeof(mnt)) == 0, "zfs get mountpoint %s", ds);
		snprintf(p, sizeof(p), "%s/%s.raw.tmp", mnt, disk);
		touch(p);
		char snapds[600], view[600];
		snprintf(snapds, sizeof(snapds), "%s@%s", ds, snap);
		snprintf(view, sizeof(view), "%s.view.%s", ds, snap);
		const char *clone[] = {"zfs", "clone", snapds, view, NULL};
		CHECK(zcmd(clone, NULL, 0) == 0, "zfs clone %s %s (a view left by a crash)", snapds, view);
	} else {
		return;
	}
	rc = be->check(sr, 0, &report);
	CHECK(rc == VMS_ECORRUPT && report && strstr(report, "\"ok\":false"),
	      "check reports the leftovers: %s", report ? report : "(no report)");
	CHECK(report && strstr(report, ".tmp"), "the report names the temporary file: %s", report ? report : "");
	if (strcmp(type, "zfs") == 0)
		CHECK(report && strstr(report, "view"), "the report names the stale view: %s", report ? report : "");
	free(report);
	report = NULL;
	rc = be->check(sr, VMS_CHECK_REPAIR, &report);
	CHECK(rc == 0, "check with repair removes them: %s", report ? report : "(no report)");
	free(report);
	report = NULL;
	rc = be->check(sr, 0, &report);
	CHECK(rc == 0, "check is clean again: %s", report ? report : "(no report)");
	free(report);
}

int main(int argc, char **argv)
{
	const char *type, *loc, *seed_env = getenv("VMS_SEED");
	uint64_t sr_size = argc > 3 && argv[1][0] != '-' ? strtoull(argv[3], NULL, 10) : 512ull * MiB;
	char vm[VMS_UUID_BUF], c1[VMS_UUID_BUF], c2[VMS_UUID_BUF], c3[VMS_UUID_BUF];
	char s1k[VMS_UUID_BUF], s2k[VMS_UUID_BUF], s3k[VMS_UUID_BUF], cs1k[VMS_UUID_BUF];
	mdisk d[2], s1[2], s2[2], s3[2], cl1[2], cs1[2], cl2[2], cl3[1], extra;
	vms_sr_space sp;
	char *report = NULL;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: %s TYPE LOCATION [SR_SIZE]\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "--expect-refused") == 0) {
		/* sr_create must fail clearly and leave nothing behind */
		if (argc < 4 || !(be = pick(argv[2]))) {
			fprintf(stderr, "usage: %s --expect-refused TYPE LOCATION\n", argv[0]);
			return 2;
		}
		rc = be->sr_create(argv[3], sr_size, NULL);
		fprintf(stderr, "sr_create %s %s: %s\n", argv[2], argv[3], rc < 0 ? vms_error_last() : "succeeded");
		CHECK(rc == VMS_ENOTSUP, "sr_create on an unsuitable filesystem is NOTSUP");
		CHECK(rc == 0 || access(argv[3], F_OK) < 0, "nothing is left at %s", argv[3]);
		printf("%s refused: %d passed, %d failed\n", argv[2], g_pass, g_fail);
		return g_fail ? 1 : 0;
	}
	type = argv[1];
	loc = argv[2];
	g_rng = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
	if (!g_rng)
		g_rng = 1;
	fprintf(stderr, "backend conformance: type %s, location %s, seed %" PRIu64 " (VMS_SEED to replay)\n",
	        type, loc, g_rng);
	if (!(be = pick(type))) {
		fprintf(stderr, "FAIL: %s\n", vms_error_last());
		return 1;
	}
	CHECK(be->size >= sizeof(vms_backend) && strcmp(be->type, type) == 0, "backend table of %s", type);

	step("SR create / open / space");
	CHECK_OK(be->sr_create(loc, sr_size, NULL), "sr_create %s", loc);
	CHECK(be->sr_create(loc, sr_size, NULL) < 0, "a second sr_create on the same location is refused");
	if (be->sr_open(&sr, loc) < 0) {
		fprintf(stderr, "FAIL: sr_open %s: %s\n", loc, vms_error_last());
		return 1;
	}
	CHECK_OK(be->sr_space(&sp, sr), "sr_space");
	CHECK(sp.total_bytes > 0 && sp.free_bytes <= sp.total_bytes && sp.used_bytes <= sp.total_bytes,
	      "space figures: total %" PRIu64 " free %" PRIu64 " used %" PRIu64, sp.total_bytes, sp.free_bytes,
	      sp.used_bytes);

	step("bad refs and keys");
	bad_refs();

	step("disks: create, write, read back");
	vms_uuid_generate(vm);
	new_disk(&d[0], vm, 8 * MiB);
	new_disk(&d[1], vm, 4 * MiB);
	{
		char *ref = NULL;
		CHECK(be->disk_create(&ref, sr, vm, d[0].key, MiB) == VMS_EEXISTS, "creating an existing disk is EXISTS");
		free(ref);
	}
	verify(&d[0], "new disk A reads zeros");
	put(&d[0], 0, BLK);
	put(&d[0], 1 * MiB, 3 * BLK);
	put(&d[0], 8 * MiB - BLK, BLK);
	put(&d[1], 0, 2 * BLK);
	put(&d[1], 2 * MiB + 512, 4096);
	verify(&d[0], "disk A after writes");
	verify(&d[1], "disk B after writes");
	{
		vms_disk *h = NULL;
		char b[512];
		CHECK_OK(be->disk_open(&h, sr, d[0].ref, 0), "open A");
		if (h) {
			CHECK(be->disk_read(h, b, sizeof(b), 8 * MiB) < 0, "a read past the end is refused");
			CHECK(be->disk_write(h, b, sizeof(b), 8 * MiB - 256, 0) < 0, "a write past the end is refused");
			be->disk_close(h);
		}
	}

	step("snapshots s1, s2, s3 of both disks, data changed between them");
	snap(s1, vm, s1k, d, 2);
	put(&d[0], 1 * MiB + BLK, BLK);
	put(&d[0], 3 * MiB, 2 * BLK);
	put(&d[1], 0, BLK);
	snap(s2, vm, s2k, d, 2);
	put(&d[0], 0, 4 * BLK);
	put(&d[1], 3 * MiB, BLK);
	snap(s3, vm, s3k, d, 2);
	put(&d[0], 5 * MiB, BLK);
	put(&d[1], 1 * MiB, BLK);
	verify(&s1[0], "s1 disk A");
	verify(&s1[1], "s1 disk B");
	verify(&s2[0], "s2 disk A");
	verify(&s2[1], "s2 disk B");
	verify(&s3[0], "s3 disk A");
	verify(&s3[1], "s3 disk B");
	verify(&d[0], "disk A after the snapshots");
	verify(&d[1], "disk B after the snapshots");
	{
		vms_disk *h = NULL;
		char b[512] = {0};
		CHECK_OK(be->disk_open(&h, sr, s1[0].ref, 0), "open snapshot s1/A");
		if (h) {
			CHECK(be->disk_write(h, b, sizeof(b), 0, 0) == VMS_EROFS, "a snapshot is read-only");
			CHECK(be->disk_trim(h, BLK, 0) < 0, "a snapshot cannot be trimmed");
			be->disk_close(h);
		}
		char *dup[2] = {0};
		const char *refs[2] = {d[0].ref, d[1].ref};
		CHECK(be->snapshot_create(dup, sr, vm, s1k, refs, 2) < 0, "a snapshot key used twice is refused");
		free(dup[0]);
		free(dup[1]);
	}

	step("ref_space: the sums over a snapshot's disks are known and sane");
	{
		uint64_t data = 0, ref_sum = 0, uniq_sum = 0;
		int ref_known = 1, uniq_known = 1, per_vm = 0, charged = 0;
		for (int i = 0; i < 2; i++) {
			vms_ref_space rs;
			uint64_t own = 0;
			for (uint64_t b = 0; b < s1[i].size; b++)
				own += s1[i].data[b] != 0;
			data += own;
			memset(&rs, 0, sizeof(rs));      /* the caller zeroes granularity */
			CHECK_OK(be->ref_space(&rs, sr, s1[i].ref), "ref_space of %s", s1[i].ref);
			/* granularity: a disk's own figures, or the VM snapshot's
			 * charged to one disk (0 on the others) */
			CHECK(rs.granularity == VMS_SPACE_PER_DISK || rs.granularity == VMS_SPACE_PER_VM,
			      "granularity %u of %s", rs.granularity, s1[i].ref);
			if (rs.granularity == VMS_SPACE_PER_VM) {
				per_vm++;
				charged += rs.referenced != 0;
			} else if (rs.referenced != UINT64_MAX) {
				CHECK(rs.referenced >= own, "per disk: %s references %" PRIu64 " bytes, at least its own %"
				      PRIu64 " non-zero bytes", s1[i].ref, rs.referenced, own);
			}
			CHECK(rs.unique == UINT64_MAX || rs.referenced == UINT64_MAX || rs.unique <= rs.referenced,
			      "unique %" PRIu64 " <= referenced %" PRIu64, rs.unique, rs.referenced);
			if (rs.referenced == UINT64_MAX) ref_known = 0; else ref_sum += rs.referenced;
			if (rs.unique == UINT64_MAX) uniq_known = 0; else uniq_sum += rs.unique;
			CHECK_OK(be->ref_space(&rs, sr, d[i].ref), "ref_space of %s", d[i].ref);
		}
		CHECK(per_vm == 0 || per_vm == 2, "all disks of a snapshot have one granularity (%d per VM)", per_vm);
		if (per_vm)
			CHECK(charged == 1, "per VM: the snapshot's figures are charged to exactly one disk (%d)", charged);
		if (strcmp(type, "zfs") == 0) {
			char v[64];
			CHECK(per_vm == 2, "zfs reports space per VM snapshot (granularity vm)");
			zsnap_prop(v, sizeof(v), loc, vm, s1k, "referenced");
			CHECK(ref_known && strtoull(v, NULL, 10) == ref_sum, "zfs: the sum %" PRIu64 " is the snapshot "
			      "dataset's referenced %s", ref_sum, v);
		} else {
			CHECK(per_vm == 0, "%s reports space per disk", type);
		}
		if (be->caps & VMS_CAP_UNIQUE_BYTES)
			CHECK(uniq_known, "unique bytes of snapshot s1 are known");
		CHECK(ref_known, "referenced bytes of snapshot s1 are known");
		CHECK(!ref_known || ref_sum >= data, "s1 references %" PRIu64 " bytes, at least its %" PRIu64
		      " non-zero bytes", ref_sum, data);
		CHECK(!uniq_known || uniq_sum <= ref_sum, "unique %" PRIu64 " <= referenced %" PRIu64, uniq_sum, ref_sum);
		fprintf(stderr, "   s1: %" PRIu64 " data bytes, referenced %" PRIu64 ", unique %" PRIu64 "\n", data,
		        ref_sum, uniq_sum);
	}
	{
		/* between s1 and s2, disk A got 3 blocks of 64 KiB and disk B one */
		vms_ref_space a, b;
		CHECK_OK(be->ref_space(&a, sr, s2[0].ref), "ref_space of %s", s2[0].ref);
		CHECK_OK(be->ref_space(&b, sr, s2[1].ref), "ref_space of %s", s2[1].ref);
		if (a.written != UINT64_MAX && b.written != UINT64_MAX)
			CHECK(a.written + b.written == 4 * BLK, "s2 wrote %" PRIu64 " + %" PRIu64 " bytes since s1, "
			      "expected %u", a.written, b.written, 4 * BLK);
		fprintf(stderr, "   s2: written %" PRIu64 " + %" PRIu64 " (UINT64_MAX = unknown)\n", a.written, b.written);
		if (strcmp(type, "reflink") == 0)
			CHECK(a.written != UINT64_MAX, "reflink reports written");
	}

	step("rollback to s1 (not the latest): s2 and s3 are kept");
	rollback(vm, d, s1, 2);
	verify(&d[0], "disk A rolled back to s1");
	verify(&d[1], "disk B rolled back to s1");
	verify(&s2[0], "s2 disk A after rollback to s1");
	verify(&s2[1], "s2 disk B after rollback to s1");
	verify(&s3[0], "s3 disk A after rollback to s1");
	verify(&s3[1], "s3 disk B after rollback to s1");
	put(&d[0], 2 * MiB, BLK);
	verify(&s1[0], "s1 disk A unchanged by writes after the rollback");
	step("rollback to s3 (the latest)");
	rollback(vm, d, s3, 2);
	verify(&d[0], "disk A rolled back to s3");
	verify(&d[1], "disk B rolled back to s3");
	verify(&s1[0], "s1 disk A after rollback to s3");
	verify(&s2[1], "s2 disk B after rollback to s3");
	step("rollback to s2 (middle)");
	rollback(vm, d, s2, 2);
	verify(&d[0], "disk A rolled back to s2");
	verify(&d[1], "disk B rolled back to s2");
	verify(&s3[0], "s3 disk A after rollback to s2");
	put(&d[1], 0, BLK);

	step("clone c1 from s2, snapshot cs1 of c1, clone c2 from cs1 (clone of a clone)");
	vms_uuid_generate(c1);
	clone(cl1, c1, s2, 2);
	verify(&cl1[0], "c1 disk A = s2");
	verify(&cl1[1], "c1 disk B = s2");
	put(&cl1[0], 0, BLK);
	put(&cl1[1], 3 * MiB, BLK);
	verify(&s2[0], "s2 unchanged by writes to its clone");
	verify(&d[0], "source VM unchanged by writes to the clone");
	snap(cs1, c1, cs1k, cl1, 2);
	vms_uuid_generate(c2);
	clone(cl2, c2, cs1, 2);
	verify(&cl2[0], "c2 disk A = cs1");
	put(&cl2[0], 6 * MiB, BLK);
	put(&cl1[0], 6 * MiB, BLK);
	verify(&cl2[0], "c2 independent of c1");
	verify(&cl1[0], "c1 independent of c2");
	verify(&cs1[0], "cs1 unchanged");
	verify(&cl2[1], "c2 disk B = cs1");

	step("clone c3 from a live disk");
	vms_uuid_generate(c3);
	clone(cl3, c3, d, 1);
	verify(&cl3[0], "c3 = disk A");
	put(&cl3[0], BLK, BLK);
	verify(&d[0], "disk A unchanged by writes to c3");

	step("resize");
	{
		vms_disk *h = NULL;
		CHECK_OK(be->disk_resize(sr, d[0].ref, 12 * MiB), "grow disk A to 12 MiB");
		model_resize(&d[0], 12 * MiB);
		verify(&d[0], "disk A grown: new space reads zeros");
		put(&d[0], 11 * MiB, BLK);
		verify(&s2[0], "s2 disk A keeps its size");
		CHECK_OK(be->disk_open(&h, sr, d[0].ref, 0), "open A");
		if (h) {
			CHECK(be->disk_size(h) == 12 * MiB, "disk_size after resize");
			be->disk_close(h);
		}
	}

	step("trim, zero and block status");
	new_disk(&extra, vm, 4 * MiB);
	put(&extra, 1 * MiB, 2 * BLK);
	put(&extra, 2 * MiB, 4 * BLK);
	{
		bs_ctx c;
		vms_disk *h = NULL;
		block_status(&extra, 1 * MiB, &c);
		if (be->caps & VMS_CAP_BLOCK_STATUS) {
			CHECK(c.alloc_at_probe, "written data is reported allocated");
			CHECK(c.hole_bytes > 0, "never-written space is reported as a hole");
		}
		CHECK_OK(be->disk_open(&h, sr, extra.ref, 0), "open extra");
		if (h) {
			CHECK_OK(be->disk_trim(h, 2 * BLK, 1 * MiB), "trim");
			memset(extra.data + 1 * MiB, 0, 2 * BLK);
			CHECK_OK(be->disk_zero(h, BLK, 2 * MiB + BLK, 1), "zero");
			memset(extra.data + 2 * MiB + BLK, 0, BLK);
			CHECK(be->disk_trim(h, BLK, 4 * MiB) < 0, "a trim past the end is refused");
			be->disk_close(h);
		}
		verify(&extra, "trimmed and zeroed ranges read zeros");
		block_status(&extra, 1 * MiB, &c);
		if ((be->caps & VMS_CAP_BLOCK_STATUS) && (be->caps & VMS_CAP_TRIM))
			CHECK(!c.alloc_at_probe, "a trimmed range is no longer allocated");
	}
	CHECK_OK(be->disk_delete(sr, extra.ref), "delete the extra disk");

	step("delete disk B: its snapshots keep their data");
	CHECK_OK(be->disk_delete(sr, d[1].ref), "delete disk B");
	{
		vms_disk *h = NULL;
		CHECK(be->disk_open(&h, sr, d[1].ref, 0) < 0, "a deleted disk cannot be opened");
		if (h)
			be->disk_close(h);
	}
	verify(&s1[1], "s1 disk B after disk B was deleted");
	verify(&s3[1], "s3 disk B after disk B was deleted");

	step("snapshot delete without clones (s3)");
	CHECK_OK(snap_delete(vm, s3k, s3, 2), "delete s3");
	{
		vms_disk *h = NULL;
		CHECK(be->disk_open(&h, sr, s3[0].ref, VMS_DISK_READONLY) < 0, "a deleted snapshot cannot be opened");
		if (h)
			be->disk_close(h);
	}
	verify(&s1[0], "s1 after deleting s3");
	verify(&s2[0], "s2 after deleting s3");

	step("deferred delete of s2 (clone c1 depends on it), s2 open for reading meanwhile");
	{
		vms_disk *h = NULL;
		char v[64];
		CHECK_OK(be->disk_open(&h, sr, s2[0].ref, VMS_DISK_READONLY), "open s2/A (zfs: its view)");
		CHECK_OK(snap_defer(vm, s2k, s2, 2), "defer the delete of s2");
		CHECK_OK(snap_defer(vm, s2k, s2, 2), "deferring it again changes nothing");
		if (h)
			be->disk_close(h);
		if (strcmp(type, "zfs") == 0) {
			CHECK(be->caps & VMS_CAP_DEFER_DELETE, "zfs reports defer_delete");
			zsnap_prop(v, sizeof(v), loc, vm, s2k, "defer_destroy");
			CHECK(strcmp(v, "on") == 0, "zfs: s2 has defer_destroy=on (got '%s')", v);
		} else {
			CHECK(!(be->caps & VMS_CAP_DEFER_DELETE), "%s has no storage-side deferral", type);
			verify(&s2[0], "without storage deferral s2 is kept as it was until reclaimed");
		}
	}
	verify(&cl1[0], "c1 disk A intact after its origin snapshot was deleted");
	verify(&cl1[1], "c1 disk B intact after its origin snapshot was deleted");
	verify(&cl2[0], "c2 intact");
	{
		/* a clone made by copying (into an existing VM) does not depend on
		 * its source snapshot in the storage: deferring it keeps it */
		mdisk cp[1];
		char v[64];
		clone(cp, c3, s1, 1);
		verify(&cp[0], "c3's copy of s1 disk A");
		CHECK_OK(snap_defer(vm, s1k, s1, 2), "defer s1 (its only clone is a copy)");
		if (strcmp(type, "zfs") == 0) {
			zsnap_prop(v, sizeof(v), loc, vm, s1k, "defer_destroy");
			CHECK(strcmp(v, "off") == 0, "zfs: s1 without a ZFS clone is not marked (got '%s')", v);
		}
		verify(&s1[0], "s1 is kept");
		CHECK_OK(be->disk_delete(sr, cp[0].ref), "delete c3's copy");
		model_free(&cp[0]);
	}

	step("check");
	rc = be->check(sr, 0, &report);
	CHECK(rc == 0 && report, "check is clean: %s", report ? report : "(no report)");
	if (report) {
		CHECK(strstr(report, d[0].ref) != NULL, "the check report lists disk %s", d[0].ref);
		if (strcmp(type, "zfs") == 0)
			CHECK(strstr(report, s2k) != NULL && strstr(report, "\"deferred\":[\"") != NULL,
			      "zfs keeps s2 as a deferred-destroy snapshot while c1 exists: %s", report);
		fprintf(stderr, "check report: %s\n", report);
	}
	free(report);
	report = NULL;

	if (strcmp(type, "zfs") == 0) {
		step("zfs: an idle snapshot view destroyed by another process is made again");
		char view[600];
		snprintf(view, sizeof(view), "%s/%s.view.%s", loc, vm, s1k);
		verify(&s1[0], "s1 disk A (makes its view)");
		const char *destroy[] = {"zfs", "destroy", "-f", view, NULL};
		int gone = 0;
		for (int i = 0; i < 20 && !gone; i++) {
			gone = zcmd(destroy, NULL, 0) == 0;
			if (!gone)
				usleep(200000);
		}
		CHECK(gone, "zfs destroy -f %s", view);
		verify(&s1[0], "s1 disk A read again after its view was destroyed");
	}

	step("check finds what a crash leaves behind, repair removes it");
	leftovers(type, loc, vm, s1k, d[0].key);

	step("SR destroy is refused while it holds disks");
	CHECK(be->sr_destroy(loc) < 0, "sr_destroy of a non-empty SR is refused");

	step("tear down: clone of clone, clone, snapshots, disks (deferred snapshot reclaimed)");
	CHECK_OK(be->disk_delete(sr, cl2[0].ref), "delete c2/A");
	CHECK_OK(be->disk_delete(sr, cl2[1].ref), "delete c2/B");
	CHECK_OK(snap_delete(c1, cs1k, cs1, 2), "delete cs1 (its clone is gone)");
	CHECK_OK(be->disk_delete(sr, cl1[0].ref), "delete c1/A");
	if (strcmp(type, "zfs") == 0) {
		char v[64];
		zsnap_prop(v, sizeof(v), loc, vm, s2k, "defer_destroy");
		CHECK(strcmp(v, "on") == 0, "zfs: s2 stays while c1 still has a disk (got '%s')", v);
	}
	CHECK_OK(be->disk_delete(sr, cl1[1].ref), "delete c1/B (its last disk: the clone dataset goes)");
	if (strcmp(type, "zfs") == 0) {
		char v[64];
		zsnap_prop(v, sizeof(v), loc, vm, s2k, "defer_destroy");
		CHECK(v[0] == '\0', "zfs destroyed the deferred s2 itself with its last clone (got '%s')", v);
	}
	CHECK_OK(snap_delete(vm, s2k, s2, 2), "deleting s2 at reclaim succeeds (zfs: it is gone already)");
	CHECK_OK(be->disk_delete(sr, cl3[0].ref), "delete c3/A");
	verify(&s1[0], "s1 still intact");
	CHECK_OK(snap_delete(vm, s1k, s1, 2), "delete s1");
	CHECK_OK(be->disk_delete(sr, d[0].ref), "delete disk A");
	rc = be->check(sr, 0, &report);
	CHECK(rc == 0, "check after tear down: %s", report ? report : "(no report)");
	if (report && strcmp(type, "zfs") == 0)
		CHECK(strstr(report, s2k) == NULL, "the deferred snapshot s2 is gone: %s", report);
	free(report);
	CHECK_OK(be->sr_close(sr), "sr_close");
	CHECK_OK(be->sr_destroy(loc), "sr_destroy of the empty SR");

	for (int i = 0; i < 2; i++) {
		model_free(&d[i]);
		model_free(&s1[i]);
		model_free(&s2[i]);
		model_free(&s3[i]);
		model_free(&cl1[i]);
		model_free(&cs1[i]);
		model_free(&cl2[i]);
	}
	model_free(&cl3[0]);
	model_free(&extra);
	printf("%s: %d passed, %d failed\n", type, g_pass, g_fail);
	return g_fail ? 1 : 0;
}
