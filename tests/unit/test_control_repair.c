/*
 * check and check --repair against a native SR (src/lib/control/repair.c):
 * the SR's objects compared with the catalog both ways, the repairs that
 * lose nothing, and what repair refuses to do.  The damage is made the way
 * it happens: through the backend table with the control closed (what a
 * crash or a hand leaves), through the engine without keys, and through the
 * catalog API.  Data is checked through the control's disk API.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "vmsnap/backend.h"
#include "vmsnap/catalog.h"
#include "vmsnap/control.h"
#include "vmsnap/crc32c.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"
#include "vmsnap/pool.h"

#define MiB (1024u * 1024u)

typedef struct env {
	char home[64];
	char srdir[96];
	char vm[40], sr[40];
	vms_control *ctl;
} env;

static vms_json *req(env *e, int *rc_out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static vms_json *req(env *e, int *rc_out, const char *fmt, ...)
{
	char buf[4096], *out = NULL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	int rc = vms_control_exec(&out, e->ctl, buf);
	vms_json *j = NULL;
	if (rc_out)
		*rc_out = rc;
	if (!out || vms_json_parse(&j, out, strlen(out)) < 0)
		fprintf(stderr, "  bad response to %s\n", buf);
	if (getenv("VMS_TEST_VERBOSE"))
		fprintf(stderr, "  > %s\n  < %s\n", buf, out ? out : "(null)");
	free(out);
	return j;
}

static const vms_json *jget(const vms_json *j, const char *path)
{
	char buf[256], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = strtok_r(buf, ".", &save); p && j; p = strtok_r(NULL, ".", &save))
		j = vms_json_type_of(j) == VMS_JSON_ARRAY ? vms_json_array_get(j, (size_t)strtoul(p, NULL, 10))
		                                           : vms_json_object_get(j, p);
	return j;
}

static const char *jstr(const vms_json *j, const char *path)
{
	const char *s = vms_json_string(jget(j, path));
	return s ? s : "";
}

/* A request that must succeed. */
static vms_json *ok(env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static vms_json *ok(env *e, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	int rc;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	vms_json *j = req(e, &rc, "%s", buf);
	if (rc != 0 || !jget(j, "result")) {
		fprintf(stderr, "  request failed: %s -> %s\n", buf, jstr(j, "error.message"));
		test_failures_in_case++;
	}
	return j;
}

#define OK(...) vms_json_free(ok(e, __VA_ARGS__))

/* The check result and a few facts about it. */
typedef struct ck {
	vms_json *j;
	int ok;
	size_t missing, orphans, problems, repairs;
} ck;

static ck check(env *e, const char *args)
{
	ck c;
	memset(&c, 0, sizeof(c));
	c.j = ok(e, "{\"op\":\"check\",\"args\":{%s}}", args);
	c.ok = vms_json_bool(jget(c.j, "result.ok"));
	const vms_json *s = jget(c.j, "result.srs.0");
	c.missing = vms_json_array_len(vms_json_object_get(s, "missing"));
	c.orphans = vms_json_array_len(vms_json_object_get(s, "orphans"));
	c.repairs = vms_json_array_len(vms_json_object_get(s, "repairs"));
	for (size_t i = 0; i < c.orphans; i++)
		c.problems += vms_json_bool(
		        vms_json_object_get(vms_json_array_get(vms_json_object_get(s, "orphans"), i), "problem"));
	return c;
}

/* A repair entry whose message contains `what`. */
static int repaired(const ck *c, const char *what)
{
	const vms_json *r = jget(c->j, "result.srs.0.repairs");
	for (size_t i = 0; i < vms_json_array_len(r); i++)
		if (strstr(jstr(vms_json_array_get(r, i), "message"), what))
			return 1;
	return 0;
}

static void rm_rf(const char *path)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", path);
}

static void fill(unsigned char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 9));
}

static int has_pattern(env *e, const char *export, size_t len, unsigned seed)
{
	vms_disk *d = NULL;
	const vms_backend *be = NULL;
	unsigned char *buf = malloc(len), *want = malloc(len);
	int same = 0;
	if (vms_control_disk_open(&d, &be, NULL, e->ctl, export, VMS_DISK_READONLY) == 0) {
		fill(want, len, seed);
		same = be->disk_read(d, buf, len, 0) == 0 && memcmp(buf, want, len) == 0;
		be->disk_close(d);
	} else {
		fprintf(stderr, "  open %s: %s\n", export, vms_error_last());
	}
	free(buf);
	free(want);
	return same;
}

static int write_pattern(env *e, const char *export, size_t len, unsigned seed)
{
	vms_disk *d = NULL;
	const vms_backend *be = NULL;
	unsigned char *buf = malloc(len);
	int rc = vms_control_disk_open(&d, &be, NULL, e->ctl, export, 0);
	if (rc == 0) {
		fill(buf, len, seed);
		rc = be->disk_write(d, buf, len, 0, 1);
		be->disk_close(d);
	}
	free(buf);
	return rc;
}

static int env_open(env *e)
{
	snprintf(e->home, sizeof(e->home), "/tmp/vms_rep_XXXXXX");
	if (!mkdtemp(e->home))
		return -1;
	snprintf(e->srdir, sizeof(e->srdir), "%s/sr1", e->home);
	if (vms_control_open(&e->ctl, e->home) < 0)
		return -1;
	OK("{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\",\"location\":\"%s\","
	   "\"size\":\"64M\"}}", e->srdir);
	OK("{\"op\":\"vm.create\",\"args\":{\"name\":\"vm1\",\"sr\":\"sr1\","
	   "\"disks\":[{\"name\":\"a\",\"size\":\"1M\"},{\"name\":\"b\",\"size\":\"1M\"}]}}");
	vms_json *j = ok(e, "{\"op\":\"vm.show\",\"args\":{\"vm\":\"vm1\"}}");
	snprintf(e->vm, sizeof(e->vm), "%s", jstr(j, "result.uuid"));
	snprintf(e->sr, sizeof(e->sr), "%s", jstr(j, "result.sr_uuid"));
	vms_json_free(j);
	if (write_pattern(e, "vm1/a", 64 * 1024, 1) < 0 || write_pattern(e, "vm1/b", 64 * 1024, 2) < 0)
		return -1;
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s1\"}}");
	return 0;
}

static void env_close(env *e)
{
	vms_control_close(e->ctl);
	rm_rf(e->home);
}

/* With the control closed (nobody has the pool open): act on the SR
 * through the backend, as a crash or a hand would have. */
static vms_sr_handle *sr_alone(env *e)
{
	vms_sr_handle *h = NULL;
	vms_control_close(e->ctl);
	e->ctl = NULL;
	if (vms_backend_native.sr_open(&h, e->srdir) < 0)
		fprintf(stderr, "  sr_open: %s\n", vms_error_last());
	return h;
}

static int reopen(env *e, vms_sr_handle *h)
{
	if (h)
		vms_backend_native.sr_close(h);
	return vms_control_open(&e->ctl, e->home);
}

static char *orphan_disk(vms_sr_handle *h, const char *vm_key, const char *disk_key, unsigned seed)
{
	char *ref = NULL;
	vms_disk *d = NULL;
	unsigned char buf[4096];
	if (vms_backend_native.disk_create(&ref, h, vm_key, disk_key, MiB) < 0)
		return NULL;
	if (seed && vms_backend_native.disk_open(&d, h, ref, 0) == 0) {
		fill(buf, sizeof(buf), seed);
		vms_backend_native.disk_write(d, buf, sizeof(buf), 0, 1);
		vms_backend_native.disk_close(d);
	}
	return ref;
}

static int note(env *e, const char *kind, const char *uuid)
{
	vms_catalog *cat = NULL;
	char path[128];
	int rc;
	snprintf(path, sizeof(path), "%s/catalog.db", e->home);
	if ((rc = vms_catalog_open(&cat, path)) < 0)
		return rc;
	rc = vms_cat_orphan_note(cat, e->sr, kind, uuid, "test");
	vms_catalog_close(cat);
	return rc;
}

TEST(clean_sr_compares_clean)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	ck c = check(e, "");
	CHECK(c.ok);
	CHECK(vms_json_bool(jget(c.j, "result.srs.0.compared")));
	CHECK(c.missing == 0 && c.orphans == 0);
	vms_json_free(c.j);
	/* dry_run alone is refused: check alone changes nothing */
	int rc;
	vms_json *j = req(e, &rc, "{\"op\":\"check\",\"args\":{\"dry_run\":true}}");
	CHECK(rc == VMS_EINVAL && strcmp(jstr(j, "error.code"), "INVALID") == 0);
	vms_json_free(j);
	env_close(e);
}

/* A crash between the backend snapshot and the catalog's 'ready': the note
 * names it, check lists it (harmless), repair removes it, the note goes. */
TEST(noted_crash_leftover_is_removed)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	vms_json *j = ok(e, "{\"op\":\"vm.show\",\"args\":{\"vm\":\"vm1\"}}");
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vdi.list\",\"args\":{\"vm\":\"vm1\"}}");
	char ra[24], rb[24];
	snprintf(ra, sizeof(ra), "%s", jstr(j, "result.vdis.0.ref"));
	snprintf(rb, sizeof(rb), "%s", jstr(j, "result.vdis.1.ref"));
	vms_json_free(j);
	vms_sr_handle *h = sr_alone(e);
	REQUIRE(h);
	char snap[VMS_UUID_BUF], *out[2] = {NULL, NULL};
	const char *refs[2] = {ra, rb};
	vms_uuid_generate(snap);
	CHECK_OK(vms_backend_native.snapshot_create(out, h, e->vm, snap, refs, 2));
	free(out[0]);
	free(out[1]);
	REQUIRE(reopen(e, h) == 0);
	REQUIRE(note(e, "snapshot", snap) == 0);

	ck c = check(e, "");
	CHECK(c.ok);                      /* a recorded leftover is not a problem */
	CHECK(c.orphans == 1 && c.problems == 0);
	CHECK(vms_json_bool(jget(c.j, "result.srs.0.orphans.0.noted")));
	CHECK(strcmp(jstr(c.j, "result.srs.0.orphans.0.action"), "remove") == 0);
	CHECK(vms_json_array_len(jget(c.j, "result.orphans")) == 1);
	vms_json_free(c.j);

	c = check(e, "\"repair\":true");
	CHECK(c.ok && repaired(&c, "removed orphan snapshot") && repaired(&c, "settled the orphan note"));
	vms_json_free(c.j);
	c = check(e, "");
	CHECK(c.ok && c.orphans == 0 && vms_json_array_len(jget(c.j, "result.orphans")) == 0);
	vms_json_free(c.j);
	/* no lost_found VM: nothing was adopted */
	j = ok(e, "{\"op\":\"vm.list\"}");
	CHECK(vms_json_array_len(jget(j, "result.vms")) == 1);
	vms_json_free(j);
	CHECK(has_pattern(e, "vm1/a@s1", 64 * 1024, 1));
	env_close(e);
}

/* Orphans with data are adopted (dry run first: nothing changes); empty
 * ones without keys are removed. */
TEST(orphans_with_data_are_adopted)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	vms_sr_handle *h = sr_alone(e);
	REQUIRE(h);
	char *ref = orphan_disk(h, "0a1b2c3d-0000-4000-8000-000000000001", "0a1b2c3d-0000-4000-8000-000000000002", 9);
	CHECK(ref != NULL);
	free(ref);
	REQUIRE(reopen(e, h) == 0);
	/* an empty volume and one with data that no key owns, made through the engine */
	{
		char pool[160];
		vms_pool *p = NULL;
		vms_vol_id empty = 0, full = 0;
		unsigned char buf[4096];
		vms_control_close(e->ctl);
		e->ctl = NULL;
		snprintf(pool, sizeof(pool), "%s/pool.vms", e->srdir);
		REQUIRE(vms_pool_open_file(&p, pool, NULL) == 0);
		CHECK_OK(vms_vol_create(&empty, p, MiB));
		CHECK_OK(vms_vol_create(&full, p, MiB));
		fill(buf, sizeof(buf), 11);
		CHECK_OK(vms_vol_write(p, full, buf, sizeof(buf), 0, 1));
		CHECK_OK(vms_pool_close(p));
		REQUIRE(reopen(e, NULL) == 0);
	}
	ck c = check(e, "");
	CHECK(!c.ok && c.orphans == 3 && c.problems == 2);   /* the empty one is only listed */
	vms_json_free(c.j);

	c = check(e, "\"repair\":true,\"dry_run\":true");
	CHECK(!c.ok && c.repairs == 3 && repaired(&c, "would adopt") && repaired(&c, "would remove"));
	vms_json_free(c.j);
	c = check(e, "");
	CHECK(!c.ok && c.orphans == 3);                      /* unchanged */
	vms_json_free(c.j);

	c = check(e, "\"repair\":true");
	CHECK(c.ok);
	CHECK(repaired(&c, "adopted orphan disk") && repaired(&c, "(no key) (it held no data)"));
	vms_json_free(c.j);
	c = check(e, "");
	CHECK(c.ok && c.orphans == 0 && c.missing == 0);
	vms_json_free(c.j);
	/* the two adopted disks read back, under lost_found VMs */
	vms_json *j = ok(e, "{\"op\":\"vdi.list\"}");
	int seen9 = 0, seen11 = 0;
	for (size_t i = 0; i < vms_json_array_len(jget(j, "result.vdis")); i++) {
		const vms_json *v = vms_json_array_get(jget(j, "result.vdis"), i);
		char exp[160];
		if (strncmp(jstr(v, "vm"), "lost_found_", 11) != 0)
			continue;
		snprintf(exp, sizeof(exp), "%s/%s", jstr(v, "vm"), jstr(v, "name"));
		if (strstr(jstr(v, "name"), "0a1b2c3d"))
			seen9 += has_pattern(e, exp, 4096, 9);
		else if (strstr(jstr(v, "name"), "volume_"))
			seen11 += has_pattern(e, exp, 4096, 11);
	}
	vms_json_free(j);
	CHECK(seen9 == 1 && seen11 == 1);
	CHECK(has_pattern(e, "vm1/a", 64 * 1024, 1) && has_pattern(e, "vm1/b@s1", 64 * 1024, 2));
	env_close(e);
}

/* A snapshot whose backing went: its surviving disk is adopted, the
 * snapshot is reclaimed, or deferred while a clone hangs below it (then
 * reclaimed with the clone, as a delete would). */
TEST(snapshots_without_backing)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s2\"}}");
	OK("{\"op\":\"vm.clone\",\"args\":{\"snapshot\":\"vm1@s2\",\"name\":\"c1\"}}");
	vms_json *j1 = ok(e, "{\"op\":\"snapshot.show\",\"args\":{\"snapshot\":\"vm1@s1\"}}");
	vms_json *j2 = ok(e, "{\"op\":\"snapshot.show\",\"args\":{\"snapshot\":\"vm1@s2\"}}");
	char r1[24], r2[24];
	snprintf(r1, sizeof(r1), "%s", jstr(j1, "result.disks.0.ref"));   /* disk a of s1 */
	snprintf(r2, sizeof(r2), "%s", jstr(j2, "result.disks.0.ref"));
	vms_json_free(j1);
	vms_json_free(j2);
	vms_sr_handle *h = sr_alone(e);
	REQUIRE(h);
	CHECK_OK(vms_backend_native.disk_delete(h, r1));
	CHECK_OK(vms_backend_native.disk_delete(h, r2));
	REQUIRE(reopen(e, h) == 0);

	ck c = check(e, "");
	CHECK(!c.ok && c.missing == 2 && c.orphans == 0);
	vms_json_free(c.j);
	c = check(e, "\"repair\":true");
	CHECK(c.ok);
	CHECK(repaired(&c, "adopted the 1 remaining disk(s) of snapshot vm1@s1"));
	CHECK(repaired(&c, "removed snapshot vm1@s1"));
	CHECK(repaired(&c, "marked snapshot vm1@s2"));
	vms_json_free(c.j);
	c = check(e, "");
	CHECK(c.ok && c.missing == 0);
	vms_json_free(c.j);
	vms_json *j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"all\":true}}");
	CHECK(vms_json_array_len(jget(j, "result.snapshots")) == 1);
	CHECK(vms_json_bool(jget(j, "result.snapshots.0.is_deleted")));
	vms_json_free(j);
	/* disk b of s1 lives on in a lost_found VM */
	j = ok(e, "{\"op\":\"vm.list\"}");
	char lf[80] = "";
	for (size_t i = 0; i < vms_json_array_len(jget(j, "result.vms")); i++)
		if (!strncmp(jstr(vms_json_array_get(jget(j, "result.vms"), i), "name"), "lost_found_", 11))
			snprintf(lf, sizeof(lf), "%s/b", jstr(vms_json_array_get(jget(j, "result.vms"), i), "name"));
	vms_json_free(j);
	CHECK(lf[0] && has_pattern(e, lf, 64 * 1024, 2));
	CHECK(has_pattern(e, "c1/b", 64 * 1024, 2));
	/* the clone goes: the deferred snapshot is reclaimed with it */
	OK("{\"op\":\"vm.delete\",\"args\":{\"vm\":\"c1\"}}");
	j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"all\":true}}");
	CHECK(vms_json_array_len(jget(j, "result.snapshots")) == 0);
	vms_json_free(j);
	c = check(e, "");
	CHECK(c.ok);
	vms_json_free(c.j);
	env_close(e);
}

/* A VM disk without backing is never dropped by repair: it stays reported
 * until the user deletes it. */
TEST(vm_disk_without_backing_is_kept)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	vms_json *j = ok(e, "{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"vm1/b\"}}");
	char ref[24];
	snprintf(ref, sizeof(ref), "%s", jstr(j, "result.ref"));
	vms_json_free(j);
	vms_sr_handle *h = sr_alone(e);
	REQUIRE(h);
	CHECK_OK(vms_backend_native.disk_delete(h, ref));
	REQUIRE(reopen(e, h) == 0);
	ck c = check(e, "\"repair\":true");
	CHECK(!c.ok && c.missing == 1);
	CHECK(strcmp(jstr(c.j, "result.srs.0.missing.0.kind"), "vdi") == 0);
	CHECK(strstr(jstr(c.j, "result.srs.0.missing.0.message"), "vdi delete") != NULL);
	vms_json_free(c.j);
	j = ok(e, "{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"vm1/b\"}}");   /* still there */
	vms_json_free(j);
	OK("{\"op\":\"vdi.delete\",\"args\":{\"vdi\":\"vm1/b\"}}");
	c = check(e, "");
	CHECK(c.ok);
	vms_json_free(c.j);
	CHECK(has_pattern(e, "vm1/b@s1", 64 * 1024, 2));
	env_close(e);
}

/* Repair needs the home to itself; a dry run does not. */
TEST(repair_refused_while_shared)
{
	env ev, *e = &ev;
	vms_control *other = NULL;
	REQUIRE(env_open(e) == 0);
	REQUIRE(vms_control_open(&other, e->home) == 0);
	int rc;
	vms_json *j = req(e, &rc, "{\"op\":\"check\",\"args\":{\"repair\":true}}");
	CHECK(rc == VMS_EBUSY && strstr(jstr(j, "error.message"), "another process"));
	vms_json_free(j);
	ck c = check(e, "\"repair\":true,\"dry_run\":true");
	CHECK(c.ok);
	vms_json_free(c.j);
	vms_control_close(other);
	c = check(e, "\"repair\":true");
	CHECK(c.ok);
	vms_json_free(c.j);
	env_close(e);
}

/* The disks of a VM the catalog does not know go together: noted ones (an
 * interrupted vm create) are removed, others adopted as one VM. */
TEST(unknown_vm_disks_go_together)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	vms_sr_handle *h = sr_alone(e);
	REQUIRE(h);
	const char *vk = "0a1b2c3d-0000-4000-8000-0000000000a1", *nk = "0a1b2c3d-0000-4000-8000-0000000000b1";
	const char *d1 = "0a1b2c3d-0000-4000-8000-0000000000a2", *d2 = "0a1b2c3d-0000-4000-8000-0000000000a3";
	const char *n1 = "0a1b2c3d-0000-4000-8000-0000000000b2", *n2 = "0a1b2c3d-0000-4000-8000-0000000000b3";
	char *r[4] = {orphan_disk(h, vk, d1, 21), orphan_disk(h, vk, d2, 22), orphan_disk(h, nk, n1, 23),
	              orphan_disk(h, nk, n2, 24)};
	for (int i = 0; i < 4; i++) {
		CHECK(r[i] != NULL);
		free(r[i]);
	}
	REQUIRE(reopen(e, h) == 0);
	REQUIRE(note(e, "vdi", n1) == 0 && note(e, "vdi", n2) == 0);
	ck c = check(e, "");
	CHECK(!c.ok && c.orphans == 2 && c.problems == 1);
	CHECK(vms_json_array_len(jget(c.j, "result.srs.0.orphans.0.refs")) == 2);
	vms_json_free(c.j);
	c = check(e, "\"repair\":true");
	CHECK(c.ok && c.repairs == 4);   /* adopted, removed, two notes settled */
	CHECK(repaired(&c, "adopted orphan 2 disks of VM key") && repaired(&c, "removed orphan 2 disks"));
	vms_json_free(c.j);
	vms_json *j = ok(e, "{\"op\":\"vm.list\"}");
	CHECK(vms_json_array_len(jget(j, "result.vms")) == 2);
	char lf[80];
	snprintf(lf, sizeof(lf), "%s", jstr(j, "result.vms.0.name"));
	if (strcmp(lf, "vm1") == 0)
		snprintf(lf, sizeof(lf), "%s", jstr(j, "result.vms.1.name"));
	vms_json_free(j);
	char a[160], b[160];
	snprintf(a, sizeof(a), "%s/0a1b2c3d_0000_4000_8000_0000000000a2", lf);
	snprintf(b, sizeof(b), "%s/0a1b2c3d_0000_4000_8000_0000000000a3", lf);
	CHECK(has_pattern(e, a, 4096, 21) && has_pattern(e, b, 4096, 22));
	env_close(e);
}

/* Objects of a row another process has in flight ('creating') are not
 * orphans: that row is listed under "unsettled". */
TEST(rows_in_flight_are_not_orphans)
{
	env ev, *e = &ev;
	vms_control *other = NULL;
	REQUIRE(env_open(e) == 0);
	vms_json *j = ok(e, "{\"op\":\"vdi.list\",\"args\":{\"vm\":\"vm1\"}}");
	char ra[24], vdi[40];
	snprintf(ra, sizeof(ra), "%s", jstr(j, "result.vdis.0.ref"));
	snprintf(vdi, sizeof(vdi), "%s", jstr(j, "result.vdis.0.uuid"));
	vms_json_free(j);
	vms_sr_handle *h = sr_alone(e);
	REQUIRE(h);
	char snap[VMS_UUID_BUF], *out[1] = {NULL};
	const char *refs[1] = {ra};
	vms_uuid_generate(snap);
	CHECK_OK(vms_backend_native.snapshot_create(out, h, e->vm, snap, refs, 1));
	free(out[0]);
	vms_backend_native.sr_close(h);
	/* the other process: holds the home (so nobody reconciles) and has
	 * written the row 'creating' */
	REQUIRE(vms_control_open(&other, e->home) == 0);
	{
		vms_catalog *cat = NULL;
		char path[128];
		snprintf(path, sizeof(path), "%s/catalog.db", e->home);
		REQUIRE(vms_catalog_open(&cat, path) == 0);
		vms_cat_snapshot s;
		vms_cat_snapdisk d;
		memset(&s, 0, sizeof(s));
		memset(&d, 0, sizeof(d));
		snprintf(s.uuid, sizeof(s.uuid), "%s", snap);
		snprintf(s.vm_uuid, sizeof(s.vm_uuid), "%s", e->vm);
		snprintf(s.name, sizeof(s.name), "inflight");
		s.time = s.created = 1795428000;
		s.seq = 77;
		s.state = VMS_STATE_CREATING;
		snprintf(d.snapshot_uuid, sizeof(d.snapshot_uuid), "%s", snap);
		snprintf(d.vdi_uuid, sizeof(d.vdi_uuid), "%s", vdi);
		snprintf(d.disk_name, sizeof(d.disk_name), "a");
		d.size = MiB;
		CHECK_OK(vms_cat_snapshot_insert(cat, &s, &d, 1));
		vms_catalog_close(cat);
	}
	REQUIRE(reopen(e, NULL) == 0);
	ck c = check(e, "");
	CHECK(c.ok && c.orphans == 0 && c.missing == 0);
	CHECK(vms_json_array_len(jget(c.j, "result.unsettled")) == 1);
	vms_json_free(c.j);
	vms_control_close(other);
	env_close(e);
}

/* crc32c of the SR's and the home's files (pool, key log, catalog), or 0
 * when one cannot be read. */
static uint32_t files_crc(env *e)
{
	static const char *const files[] = {"sr1/pool.vms", "sr1/keys.log", "catalog.db"};
	static unsigned char buf[1 << 16];
	uint32_t crc = 0;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[160];
		size_t n;
		snprintf(path, sizeof(path), "%s/%s", e->home, files[i]);
		FILE *f = fopen(path, "rb");
		if (!f)
			return 0;
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
			crc = vms_crc32c(crc, buf, n);
		fclose(f);
	}
	return crc ? crc : 1;
}

/* check without repair, and a dry run, open the native SR read-only: the
 * pool is not committed at open, nothing of the SR or the catalog is
 * written, and the handle is closed again (a writer may open the SR). */
TEST(check_opens_sr_read_only)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	REQUIRE(reopen(e, sr_alone(e)) == 0);   /* a fresh control: no SR open yet */
	uint32_t before = files_crc(e);
	CHECK(before != 0);
	ck c = check(e, "\"data\":true");
	CHECK(c.ok && vms_json_bool(jget(c.j, "result.srs.0.compared")));
	vms_json_free(c.j);
	c = check(e, "\"repair\":true,\"dry_run\":true");
	CHECK(c.ok);
	vms_json_free(c.j);
	CHECK(files_crc(e) == before);
	/* no handle left behind: the SR opens for writing beside the control */
	vms_sr_handle *h = NULL;
	CHECK_OK(vms_backend_native.sr_open(&h, e->srdir));
	if (h)
		vms_backend_native.sr_close(h);
	/* the read-only handle refuses changes and leaves the files as they were */
	before = files_crc(e);
	h = NULL;
	REQUIRE(vms_backend_native.sr_open_readonly(&h, e->srdir) == 0);
	char *ref = NULL;
	CHECK(vms_backend_native.disk_create(&ref, h, e->vm, "0a1b2c3d-0000-4000-8000-000000000001", MiB) ==
	      VMS_EROFS && !ref);
	vms_backend_native.sr_close(h);
	CHECK(files_crc(e) == before);
	/* a repair opens it for writing */
	c = check(e, "\"repair\":true");
	CHECK(c.ok);
	vms_json_free(c.j);
	env_close(e);
}

TEST_MAIN()
