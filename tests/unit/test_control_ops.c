/*
 * The control module end to end: JSON requests through vms_control_exec on a
 * native SR in a temporary directory, every op of docs/control.md, every
 * delete-constraint case, bad input, data verified through the backend disk
 * API after rollback and clone, and reconciliation of rows a crash left
 * unsettled.  Time tags come from a fake clock.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "vmsnap/catalog.h"
#include "vmsnap/control.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

#define MiB (1024u * 1024u)
#define T0 INT64_C(1795428000) /* 2026-11-23T10:00:00Z */

static int64_t fake_now = T0;
static int64_t fake_clock(void *ctx)
{
	(void)ctx;
	return fake_now;
}

typedef struct env {
	char home[64];
	char srdir[96];
	vms_control *ctl;
} env;

static void rm_rf(const char *path)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", path);
}

static int env_open(env *e)
{
	snprintf(e->home, sizeof(e->home), "/tmp/vms_ctl_XXXXXX");
	if (!mkdtemp(e->home))
		return -1;
	snprintf(e->srdir, sizeof(e->srdir), "%s/sr1", e->home);
	if (vms_control_open(&e->ctl, e->home) < 0) {
		fprintf(stderr, "open: %s\n", vms_error_last());
		return -1;
	}
	fake_now = T0;
	vms_control_set_clock(e->ctl, fake_clock, NULL);
	return 0;
}

static void env_close(env *e)
{
	vms_control_close(e->ctl);
	rm_rf(e->home);
}

/* Run a request built with printf; returns the parsed response (caller frees). */
static vms_json *req(env *e, int *rc_out, const char *fmt, ...)
{
	char buf[8192], *out = NULL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	int rc = vms_control_exec(&out, e->ctl, buf);
	if (rc_out)
		*rc_out = rc;
	vms_json *j = NULL;
	if (!out || vms_json_parse(&j, out, strlen(out)) < 0) {
		fprintf(stderr, "  bad response to %s: %s\n", buf, out ? out : "(null)");
		free(out);
		return NULL;
	}
	if (getenv("VMS_TEST_VERBOSE"))
		fprintf(stderr, "  > %s\n  < %s\n", buf, out);
	free(out);
	return j;
}

/* Path lookup: "result.snapshots.0.name". */
static const vms_json *jget(const vms_json *j, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	char *save = NULL;
	for (char *p = strtok_r(buf, ".", &save); p && j; p = strtok_r(NULL, ".", &save)) {
		if (vms_json_type_of(j) == VMS_JSON_ARRAY)
			j = vms_json_array_get(j, (size_t)strtoul(p, NULL, 10));
		else
			j = vms_json_object_get(j, p);
	}
	return j;
}

static const char *jstr(const vms_json *j, const char *path)
{
	const char *s = vms_json_string(jget(j, path));
	return s ? s : "";
}

static int64_t jint(const vms_json *j, const char *path)
{
	int64_t v = -1;
	if (!vms_json_is_int(jget(j, path), &v))
		return -1;
	return v;
}

static size_t jlen(const vms_json *j, const char *path)
{
	return vms_json_array_len(jget(j, path));
}

/* Succeeds and returns the response. */
static vms_json *ok(env *e, const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	int rc;
	vms_json *j = req(e, &rc, "%s", buf);
	if (rc != 0 || !jget(j, "result")) {
		fprintf(stderr, "  request failed: %s -> %s: %s\n", buf, jstr(j, "error.code"),
		        jstr(j, "error.message"));
		test_failures_in_case++;
	}
	return j;
}

/* Fails with `code`; returns the response. */
static vms_json *fails(env *e, const char *code, const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	int rc;
	vms_json *j = req(e, &rc, "%s", buf);
	if (rc == 0 || strcmp(jstr(j, "error.code"), code) != 0 || jint(j, "output_version") != 1 ||
	    !*jstr(j, "error.message")) {
		fprintf(stderr, "  expected %s from %s, got rc %d code '%s' message '%s'\n", code, buf, rc,
		        jstr(j, "error.code"), jstr(j, "error.message"));
		test_failures_in_case++;
	}
	return j;
}

#define OK(...) vms_json_free(ok(e, __VA_ARGS__))
#define FAILS(code, ...) vms_json_free(fails(e, code, __VA_ARGS__))

/* ---- data through the backend disk API ---------------------------------- */

static void fill(unsigned char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 9));
}

static int disk_write_pattern(env *e, const char *export, uint64_t off, size_t len, unsigned seed)
{
	vms_disk *d = NULL;
	const vms_backend *be = NULL;
	unsigned char *buf = malloc(len);
	int rc = vms_control_disk_open(&d, &be, NULL, e->ctl, export, 0);
	if (rc == 0) {
		fill(buf, len, seed);
		rc = be->disk_write(d, buf, len, off, 0);
		be->disk_close(d);
	}
	free(buf);
	if (rc < 0)
		fprintf(stderr, "  write %s: %s\n", export, vms_error_last());
	return rc;
}

/* 1 when [off, off+len) of the export holds the pattern `seed` (0 = zeros). */
static int disk_has_pattern(env *e, const char *export, uint64_t off, size_t len, unsigned seed)
{
	vms_disk *d = NULL;
	const vms_backend *be = NULL;
	unsigned char *buf = malloc(len), *want = malloc(len);
	int same = 0;
	if (vms_control_disk_open(&d, &be, NULL, e->ctl, export, VMS_DISK_READONLY) == 0) {
		if (be->disk_read(d, buf, len, off) == 0) {
			if (seed)
				fill(want, len, seed);
			else
				memset(want, 0, len);
			same = memcmp(buf, want, len) == 0;
		}
		be->disk_close(d);
	} else {
		fprintf(stderr, "  open %s: %s\n", export, vms_error_last());
	}
	free(buf);
	free(want);
	return same;
}

static void setup_vm(env *e)
{
	OK("{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\",\"location\":\"%s\","
	   "\"size\":\"256M\",\"options\":\"block_size=4096,checksums=on\"}}", e->srdir);
	OK("{\"op\":\"vm.create\",\"args\":{\"name\":\"vm1\",\"sr\":\"sr1\",\"disks\":["
	   "{\"name\":\"a\",\"size\":\"8M\"},{\"name\":\"b\",\"size\":4194304}]}}");
}

/* ---- tests ------------------------------------------------------------------ */

TEST(envelope_and_bad_requests)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	FAILS("INVALID", "not json");
	FAILS("INVALID", "[1,2]");
	FAILS("INVALID", "{\"op\":\"nope\"}");
	FAILS("INVALID", "{\"args\":{}}");
	FAILS("INVALID", "{\"op\":\"sr.list\",\"args\":[1]}");
	FAILS("INVALID", "{\"op\":\"sr.list\",\"extra\":1}");
	FAILS("INVALID", "{\"op\":\"sr.list\",\"args\":{\"typo\":true}}");
	FAILS("INVALID", "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"x\",\"defered\":true}}");
	vms_json *j = ok(e, "{\"op\":\"sr.list\"}");
	CHECK(jint(j, "output_version") == 1);
	CHECK(jlen(j, "result.srs") == 0);
	vms_json_free(j);
	/* a request over 1 MiB */
	size_t big = (1u << 20) + 100;
	char *r = malloc(big + 1), *out = NULL;
	memset(r, ' ', big);
	memcpy(r, "{\"op\":\"sr.list\"}", 15);
	r[big] = 0;
	CHECK(vms_control_exec(&out, e->ctl, r) == VMS_EINVAL);
	CHECK(out && strstr(out, "\"INVALID\""));
	free(out);
	free(r);
	env_close(e);
}

TEST(sr_lifecycle_and_names)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	FAILS("INVALID", "{\"op\":\"sr.create\",\"args\":{\"name\":\"../x\",\"type\":\"native\","
	      "\"location\":\"%s\",\"size\":\"64M\"}}", e->srdir);
	FAILS("INVALID", "{\"op\":\"sr.create\",\"args\":{\"name\":\"s\",\"type\":\"ntfs\","
	      "\"location\":\"%s\",\"size\":\"64M\"}}", e->srdir);
	FAILS("INVALID", "{\"op\":\"sr.create\",\"args\":{\"name\":\"s\",\"type\":\"native\","
	      "\"location\":\"relative/dir\",\"size\":\"64M\"}}");
	FAILS("INVALID", "{\"op\":\"sr.create\",\"args\":{\"name\":\"s\",\"type\":\"native\","
	      "\"location\":\"%s\",\"size\":\"64M\",\"options\":\"block_size=3000\"}}", e->srdir);
	FAILS("INVALID", "{\"op\":\"sr.create\",\"args\":{\"name\":\"s\",\"type\":\"native\","
	      "\"location\":\"%s\"}}", e->srdir);
	/* failed creates left no row */
	vms_json *j = ok(e, "{\"op\":\"sr.list\"}");
	CHECK(jlen(j, "result.srs") == 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\","
	          "\"location\":\"%s\",\"size\":\"64M\"}}", e->srdir);
	CHECK(strcmp(jstr(j, "result.type"), "native") == 0);
	CHECK(strcmp(jstr(j, "result.state"), "ready") == 0);
	CHECK(jint(j, "result.space.total") > 0);
	CHECK(jlen(j, "result.caps") >= 5);
	CHECK(strcmp(jstr(j, "result.created_time_iso"), "2026-11-23T10:00:00Z") == 0);
	char uuid[64];
	snprintf(uuid, sizeof(uuid), "%s", jstr(j, "result.uuid"));
	vms_json_free(j);
	FAILS("EXISTS", "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\","
	      "\"location\":\"%s/other\",\"size\":\"64M\"}}", e->home);
	j = ok(e, "{\"op\":\"sr.show\",\"args\":{\"sr\":\"%s\"}}", uuid);
	CHECK(strcmp(jstr(j, "result.name"), "sr1") == 0);
	vms_json_free(j);
	FAILS("NOTFOUND", "{\"op\":\"sr.show\",\"args\":{\"sr\":\"sr9\"}}");
	FAILS("INVALID", "{\"op\":\"sr.show\",\"args\":{\"sr\":\"../../etc\"}}");
	OK("{\"op\":\"vm.create\",\"args\":{\"name\":\"vm1\",\"sr\":\"sr1\"}}");
	j = fails(e, "DEPENDENTS", "{\"op\":\"sr.destroy\",\"args\":{\"sr\":\"sr1\"}}");
	CHECK(jlen(j, "error.dependents") == 1);
	CHECK(strcmp(jstr(j, "error.dependents.0.name"), "vm1") == 0);
	vms_json_free(j);
	OK("{\"op\":\"vm.delete\",\"args\":{\"vm\":\"vm1\"}}");
	j = ok(e, "{\"op\":\"sr.destroy\",\"args\":{\"sr\":\"sr1\",\"dry_run\":true}}");
	CHECK(vms_json_bool(jget(j, "result.dry_run")));
	vms_json_free(j);
	CHECK(access(e->srdir, F_OK) == 0);
	OK("{\"op\":\"sr.destroy\",\"args\":{\"sr\":\"sr1\"}}");
	CHECK(access(e->srdir, F_OK) < 0);
	FAILS("NOTFOUND", "{\"op\":\"sr.show\",\"args\":{\"sr\":\"sr1\"}}");
	env_close(e);
}

/* Native option index=radix|keys: the pool's format and index in the SR
 * record's properties, from the pool (format 3 by default). */
TEST(sr_native_index_option)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	vms_json *j = fails(e, "INVALID", "{\"op\":\"sr.create\",\"args\":{\"name\":\"s\",\"type\":\"native\","
	                    "\"location\":\"%s\",\"size\":\"64M\",\"options\":\"index=btree\"}}", e->srdir);
	CHECK(strstr(jstr(j, "error.message"), "radix") && strstr(jstr(j, "error.message"), "keys"));
	vms_json_free(j);
	j = ok(e, "{\"op\":\"sr.create\",\"args\":{\"name\":\"k\",\"type\":\"native\","
	          "\"location\":\"%s\",\"size\":\"64M\",\"options\":\"index=keys\"}}", e->srdir);
	CHECK(jint(j, "result.properties.format_version") == 3);
	CHECK(strcmp(jstr(j, "result.properties.index"), "keys") == 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"sr.create\",\"args\":{\"name\":\"r\",\"type\":\"native\","
	          "\"location\":\"%s/r\",\"size\":\"64M\",\"options\":\"index=radix\"}}", e->home);
	CHECK(jint(j, "result.properties.format_version") == 2);
	CHECK(strcmp(jstr(j, "result.properties.index"), "radix") == 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"sr.create\",\"args\":{\"name\":\"d\",\"type\":\"native\","
	          "\"location\":\"%s/d\",\"size\":\"64M\"}}", e->home);
	CHECK(jint(j, "result.properties.format_version") == 3); /* the default */
	CHECK(strcmp(jstr(j, "result.properties.index"), "keys") == 0);
	CHECK(jint(j, "result.properties.block_size") == 4096);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"sr.show\",\"args\":{\"sr\":\"k\"}}");
	CHECK(jint(j, "result.properties.format_version") == 3);
	vms_json_free(j);
	env_close(e);
}

/* The adapter picks the backend by type; what a type cannot do on this
 * storage comes back as NOTSUP with the reason (reflink on tmpfs). */
TEST(sr_type_refusal_is_notsup)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	if (access("/dev/shm", W_OK) < 0) {
		fprintf(stderr, "  no writable /dev/shm: skipped\n");
		env_close(e);
		return;
	}
	char loc[64];
	snprintf(loc, sizeof(loc), "/dev/shm/vms_ctl_reflink_%d", (int)getpid());
	vms_json *j = fails(e, "NOTSUP", "{\"op\":\"sr.create\",\"args\":{\"name\":\"r\",\"type\":\"reflink\","
	                              "\"location\":\"%s\"}}", loc);
	vms_json_free(j);
	CHECK(access(loc, F_OK) < 0);
	j = ok(e, "{\"op\":\"sr.list\"}");
	CHECK(jlen(j, "result.srs") == 0);
	vms_json_free(j);
	env_close(e);
}

TEST(vm_and_vdi_ops)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	vms_json *j = ok(e, "{\"op\":\"vm.show\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(jlen(j, "result.disks") == 2);
	CHECK(strcmp(jstr(j, "result.disks.0.name"), "a") == 0);
	CHECK(jint(j, "result.disks.1.device") == 1);
	CHECK(jint(j, "result.disks.1.size") == 4 * MiB);
	CHECK(vms_json_type_of(jget(j, "result.parent")) == VMS_JSON_NULL);
	vms_json_free(j);
	FAILS("EXISTS", "{\"op\":\"vm.create\",\"args\":{\"name\":\"vm1\",\"sr\":\"sr1\"}}");
	FAILS("INVALID", "{\"op\":\"vm.create\",\"args\":{\"name\":\"vm-2\",\"sr\":\"sr1\"}}");
	FAILS("INVALID", "{\"op\":\"vm.create\",\"args\":{\"name\":\"vm2\",\"sr\":\"sr1\",\"disks\":["
	      "{\"name\":\"../x\",\"size\":1048576}]}}");
	FAILS("INVALID", "{\"op\":\"vm.create\",\"args\":{\"name\":\"vm2\",\"sr\":\"sr1\",\"disks\":["
	      "{\"name\":\"a\",\"size\":1048576,\"sise\":1}]}}");
	FAILS("EXISTS", "{\"op\":\"vm.create\",\"args\":{\"name\":\"vm2\",\"sr\":\"sr1\",\"disks\":["
	      "{\"name\":\"a\",\"size\":1048576},{\"name\":\"a\",\"size\":1048576}]}}");
	FAILS("INVALID", "{\"op\":\"vm.create\",\"args\":{\"name\":\"%065d\",\"sr\":\"sr1\"}}", 1);
	/* the failed creates left nothing */
	j = ok(e, "{\"op\":\"vm.list\",\"args\":{\"all\":true}}");
	CHECK(jlen(j, "result.vms") == 1);
	vms_json_free(j);

	/* vdi */
	j = ok(e, "{\"op\":\"vdi.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"c\",\"size\":\"1M\"}}");
	CHECK(jint(j, "result.device") == 2);
	CHECK(strcmp(jstr(j, "result.export"), "vm1/c") == 0);
	vms_json_free(j);
	FAILS("EXISTS", "{\"op\":\"vdi.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"c\",\"size\":\"1M\"}}");
	FAILS("EXISTS", "{\"op\":\"vdi.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"d\",\"size\":\"1M\","
	      "\"device\":0}}");
	j = ok(e, "{\"op\":\"vdi.resize\",\"args\":{\"vdi\":\"vm1/c\",\"size\":\"2M\"}}");
	CHECK(jint(j, "result.size") == 2 * MiB);
	vms_json_free(j);
	FAILS("INVALID", "{\"op\":\"vdi.resize\",\"args\":{\"vdi\":\"vm1/c\",\"size\":\"1M\"}}");
	j = ok(e, "{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"vm1/c\"}}");
	char uuid[64];
	snprintf(uuid, sizeof(uuid), "%s", jstr(j, "result.uuid"));
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"%s\"}}", uuid);
	CHECK(strcmp(jstr(j, "result.name"), "c") == 0);
	vms_json_free(j);
	FAILS("INVALID", "{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"vm1/../c\"}}");
	FAILS("INVALID", "{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"c\"}}");
	FAILS("NOTFOUND", "{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"vm1/zz\"}}");
	j = ok(e, "{\"op\":\"vdi.list\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(jlen(j, "result.vdis") == 3);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vdi.delete\",\"args\":{\"vdi\":\"vm1/c\",\"dry_run\":true}}");
	CHECK(jlen(j, "result.deleted") == 1);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vdi.delete\",\"args\":{\"vdi\":\"vm1/c\"}}");
	CHECK(!vms_json_bool(jget(j, "result.dry_run")));
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vdi.list\",\"args\":{\"vm\":\"vm1\",\"all\":true}}");
	CHECK(jlen(j, "result.vdis") == 2);   /* no snapshot covered it: gone for good */
	vms_json_free(j);
	env_close(e);
}

TEST(snapshots_selectors_and_retrieval)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	/* nightly twice in different seconds, hourly, and one in the same second */
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"nightly\"}}");
	FAILS("EXISTS", "{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"nightly\"}}");
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"hourly\"}}"); /* same second */
	fake_now = T0 + 3600;
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"nightly\"}}");
	fake_now = T0 + 60; /* the clock stepped back */
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"back\"}}");
	FAILS("INVALID", "{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"latest\"}}");
	FAILS("INVALID", "{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"a.b\"}}");

	/* time order: nightly@T0 (seq1), hourly@T0 (seq2), back@T0+60, nightly@T0+3600 */
	vms_json *j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(jint(j, "result.count") == 4);
	CHECK(strcmp(jstr(j, "result.snapshots.0.name"), "nightly_20261123T10:00:00") == 0);
	CHECK(strcmp(jstr(j, "result.snapshots.1.name"), "hourly_20261123T10:00:00") == 0);
	CHECK(strcmp(jstr(j, "result.snapshots.2.name"), "back_20261123T10:01:00") == 0);
	CHECK(strcmp(jstr(j, "result.snapshots.3.name"), "nightly_20261123T11:00:00") == 0);
	CHECK(strcmp(jstr(j, "result.snapshots.3.user_name"), "nightly") == 0);
	CHECK(jlen(j, "result.snapshots.0.disks") == 2);
	CHECK(strcmp(jstr(j, "result.snapshots.0.disks.0.export"), "vm1/a@nightly_20261123T10:00:00") == 0);
	CHECK(strcmp(jstr(j, "result.snapshots.2.time_iso"), "2026-11-23T10:01:00Z") == 0);
	char uuid2[64];
	snprintf(uuid2, sizeof(uuid2), "%s", jstr(j, "result.snapshots.2.uuid"));
	vms_json_free(j);

	j = fails(e, "INVALID", "{\"op\":\"snapshot.show\",\"args\":{\"snapshot\":\"vm1@nightly\"}}");
	CHECK(jlen(j, "error.candidates") == 2);
	CHECK(strcmp(jstr(j, "error.candidates.0.kind"), "snapshot") == 0);
	vms_json_free(j);
	struct {
		const char *sel, *name;
		int64_t rank;
	} cases[] = {
		{"vm1@latest", "nightly_20261123T11:00:00", 3},
		{"vm1@latest~0", "nightly_20261123T11:00:00", 3},
		{"vm1@latest~1", "back_20261123T10:01:00", 2},
		{"vm1@latest~3", "nightly_20261123T10:00:00", 0},
		{"vm1@hourly", "hourly_20261123T10:00:00", 1},
		{"vm1@nightly_20261123T10:00:00", "nightly_20261123T10:00:00", 0},
		{"vm1@before:2026-11-23T10:00:30Z", "hourly_20261123T10:00:00", 1},
		{"vm1@before:2026-11-23T10:30", "back_20261123T10:01:00", 2},
		{"vm1@after:2026-11-23T10:00:01Z", "back_20261123T10:01:00", 2},
		{"vm1@after:@1795428000", "nightly_20261123T10:00:00", 0},
		{"vm1@before:20261123T23:00:00", "nightly_20261123T11:00:00", 3},
		{"vm1@after:2026-11-23", "nightly_20261123T10:00:00", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		j = ok(e, "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"%s\"}}", cases[i].sel);
		if (strcmp(jstr(j, "result.name"), cases[i].name) != 0 || jint(j, "result.rank") != cases[i].rank) {
			fprintf(stderr, "  %s -> %s rank %lld\n", cases[i].sel, jstr(j, "result.name"),
			        (long long)jint(j, "result.rank"));
			test_failures_in_case++;
		}
		CHECK(jint(j, "result.count") == 4);
		vms_json_free(j);
	}
	j = ok(e, "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"%s\"}}", uuid2);
	CHECK(jint(j, "result.rank") == 2);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@%s\"}}", uuid2);
	CHECK(jint(j, "result.rank") == 2);
	vms_json_free(j);
	FAILS("NOTFOUND", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@latest~4\"}}");
	FAILS("NOTFOUND", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@before:2026-11-22\"}}");
	FAILS("NOTFOUND", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@after:2026-11-24\"}}");
	FAILS("NOTFOUND", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@weekly\"}}");
	FAILS("NOTFOUND", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@nightly_20261123T10:00:01\"}}");
	FAILS("NOTFOUND", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm9@latest\"}}");
	FAILS("INVALID", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@before:2026-11-23T10:00+02:00\"}}");
	FAILS("INVALID", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@latest~x\"}}");
	FAILS("INVALID", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@../x\"}}");
	FAILS("INVALID", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"../vm1@latest\"}}");
	FAILS("INVALID", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"latest\"}}");
	FAILS("INVALID", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@\"}}");

	/* list filters */
	j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"name\":\"nightly\"}}");
	CHECK(jint(j, "result.count") == 2);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"since\":\"2026-11-23T10:00:30Z\","
	          "\"until\":\"2026-11-23T10:59:59Z\"}}");
	CHECK(jint(j, "result.count") == 1);
	CHECK(strcmp(jstr(j, "result.snapshots.0.user_name"), "back") == 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"limit\":2}}");
	CHECK(jint(j, "result.count") == 2);
	CHECK(strcmp(jstr(j, "result.snapshots.1.user_name"), "nightly") == 0);
	CHECK(strcmp(jstr(j, "result.snapshots.0.user_name"), "back") == 0);
	vms_json_free(j);
	FAILS("INVALID", "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"limit\":-1}}");
	FAILS("INVALID", "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"since\":\"yesterday\"}}");

	/* the index follows deletes */
	OK("{\"op\":\"snapshot.delete\",\"args\":{\"snapshot\":\"vm1@latest\"}}");
	j = ok(e, "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@nightly\"}}");
	CHECK(strcmp(jstr(j, "result.name"), "nightly_20261123T10:00:00") == 0);
	CHECK(jint(j, "result.count") == 3);
	vms_json_free(j);
	env_close(e);
}

TEST(rollback_and_clone_data)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	CHECK(disk_write_pattern(e, "vm1/a", 0, 65536, 1) == 0);
	CHECK(disk_write_pattern(e, "vm1/b", 4096, 8192, 2) == 0);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s1\"}}");
	fake_now += 10;
	CHECK(disk_write_pattern(e, "vm1/a", 0, 65536, 3) == 0);
	CHECK(disk_write_pattern(e, "vm1/b", 4096, 8192, 4) == 0);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s2\"}}");
	fake_now += 10;
	CHECK(disk_write_pattern(e, "vm1/a", 0, 65536, 5) == 0);
	/* snapshots hold their data */
	CHECK(disk_has_pattern(e, "vm1/a@s1", 0, 65536, 1));
	CHECK(disk_has_pattern(e, "vm1/b@s1", 4096, 8192, 2));
	CHECK(disk_has_pattern(e, "vm1/a@latest", 0, 65536, 3));
	CHECK(disk_has_pattern(e, "vm1/a", 0, 65536, 5));
	/* snapshots are read-only whatever the flags */
	{
		vms_disk *d = NULL;
		const vms_backend *be = NULL;
		char *vdi = NULL;
		char buf[512] = {0};
		CHECK(vms_control_disk_open(&d, &be, &vdi, e->ctl, "vm1/a@s1", 0) == 0);
		if (d) {
			CHECK(be->disk_write(d, buf, sizeof(buf), 0, 0) == VMS_EROFS);
			be->disk_close(d);
		}
		CHECK(vdi && strlen(vdi) == 36);
		free(vdi);
		CHECK(vms_control_disk_open(&d, &be, NULL, e->ctl, "vm1/../a", 0) == VMS_EINVAL);
		CHECK(vms_control_disk_open(&d, &be, NULL, e->ctl, "vm1", 0) == VMS_EINVAL);
		CHECK(vms_control_disk_open(&d, &be, NULL, e->ctl, "vm1/a@nope", 0) == VMS_ENOTFOUND);
	}
	/* rollback to s1 (not the latest): a dry run first */
	vms_json *j = ok(e, "{\"op\":\"vm.rollback\",\"args\":{\"vm\":\"vm1\",\"snapshot\":\"s1\","
	                    "\"dry_run\":true}}");
	CHECK(vms_json_bool(jget(j, "result.dry_run")));
	CHECK(jlen(j, "result.disks") == 2);
	vms_json_free(j);
	CHECK(disk_has_pattern(e, "vm1/a", 0, 65536, 5));
	j = ok(e, "{\"op\":\"vm.rollback\",\"args\":{\"vm\":\"vm1\",\"snapshot\":\"s1\"}}");
	CHECK(strcmp(jstr(j, "result.snapshot"), "s1_20261123T10:00:00") == 0);
	vms_json_free(j);
	CHECK(disk_has_pattern(e, "vm1/a", 0, 65536, 1));
	CHECK(disk_has_pattern(e, "vm1/b", 4096, 8192, 2));
	/* the newer snapshot is kept */
	CHECK(disk_has_pattern(e, "vm1/a@s2", 0, 65536, 3));
	j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(jint(j, "result.count") == 2);
	vms_json_free(j);
	/* and to the newer one through snapshot.rollback */
	OK("{\"op\":\"snapshot.rollback\",\"args\":{\"snapshot\":\"vm1@s2\"}}");
	CHECK(disk_has_pattern(e, "vm1/a", 0, 65536, 3));
	CHECK(disk_has_pattern(e, "vm1/b", 4096, 8192, 4));
	FAILS("NOTFOUND", "{\"op\":\"vm.rollback\",\"args\":{\"vm\":\"vm1\",\"snapshot\":\"vm2@s1\"}}");

	/* clone from s1: all disks, sharing blocks, independent */
	j = ok(e, "{\"op\":\"vm.clone\",\"args\":{\"snapshot\":\"vm1@s1\",\"name\":\"c1\"}}");
	CHECK(jlen(j, "result.disks") == 2);
	CHECK(strcmp(jstr(j, "result.parent.vm"), "vm1") == 0);
	CHECK(strcmp(jstr(j, "result.parent.snapshot"), "s1_20261123T10:00:00") == 0);
	vms_json_free(j);
	CHECK(disk_has_pattern(e, "c1/a", 0, 65536, 1));
	CHECK(disk_has_pattern(e, "c1/b", 4096, 8192, 2));
	CHECK(disk_write_pattern(e, "c1/a", 0, 65536, 9) == 0);
	CHECK(disk_has_pattern(e, "vm1/a@s1", 0, 65536, 1));
	CHECK(disk_has_pattern(e, "vm1/a", 0, 65536, 3));
	FAILS("EXISTS", "{\"op\":\"vm.clone\",\"args\":{\"snapshot\":\"vm1@s1\",\"name\":\"c1\"}}");
	FAILS("INVALID", "{\"op\":\"vm.clone\",\"args\":{\"snapshot\":\"s1\",\"name\":\"c2\"}}");
	j = ok(e, "{\"op\":\"vm.show\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(jint(j, "result.clone_count") == 1);
	CHECK(jint(j, "result.snapshot_count") == 2);
	CHECK(jlen(j, "result.snapshots") == 2);
	CHECK(jlen(j, "result.snapshots.0.clones") == 1);
	vms_json_free(j);
	/* a disk added after s1 makes the rollback refuse, naming it */
	OK("{\"op\":\"vdi.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"c\",\"size\":\"1M\"}}");
	j = fails(e, "INVALID", "{\"op\":\"vm.rollback\",\"args\":{\"vm\":\"vm1\",\"snapshot\":\"s1\"}}");
	CHECK(strstr(jstr(j, "error.message"), "'c'") != NULL);
	vms_json_free(j);
	/* a disk deleted since: detached and kept for the snapshots */
	OK("{\"op\":\"vdi.delete\",\"args\":{\"vdi\":\"vm1/c\"}}");
	OK("{\"op\":\"vdi.delete\",\"args\":{\"vdi\":\"vm1/b\"}}");
	CHECK(disk_has_pattern(e, "vm1/b@s1", 4096, 8192, 2));
	j = ok(e, "{\"op\":\"vdi.list\",\"args\":{\"vm\":\"vm1\",\"all\":true}}");
	CHECK(jlen(j, "result.vdis") == 1);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vdi.list\",\"args\":{\"all\":true}}");
	CHECK(jlen(j, "result.vdis") == 4);   /* vm1/a, c1/a, c1/b, detached b */
	vms_json_free(j);
	j = fails(e, "INVALID", "{\"op\":\"vm.rollback\",\"args\":{\"vm\":\"vm1\",\"snapshot\":\"s1\"}}");
	CHECK(strstr(jstr(j, "error.message"), "'b'") != NULL);
	vms_json_free(j);
	/* tree */
	j = ok(e, "{\"op\":\"vm.tree\"}");
	CHECK(jlen(j, "result.tree") == 1);
	CHECK(strcmp(jstr(j, "result.tree.0.name"), "vm1") == 0);
	CHECK(strcmp(jstr(j, "result.tree.0.children.0.kind"), "snapshot") == 0);
	CHECK(strcmp(jstr(j, "result.tree.0.children.0.children.0.name"), "c1") == 0);
	vms_json_free(j);
	/* exports: live disks and snapshot disks */
	j = ok(e, "{\"op\":\"export.list\"}");
	size_t nexp = jlen(j, "result.exports");
	CHECK(nexp == 3 + 4);   /* vm1/a, c1/a, c1/b; s1 a+b, s2 a+b */
	vms_json_free(j);
	char *ex = NULL;
	CHECK(vms_control_list_exports(&ex, e->ctl) == 0);
	CHECK(ex && strstr(ex, "\"vm1/b@s1_20261123T10:00:00\"") && strstr(ex, "\"readonly\":true"));
	free(ex);
	/* stats and check */
	j = ok(e, "{\"op\":\"stats\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(jlen(j, "result.snapshots") == 2);
	CHECK(jint(j, "result.disks.0.referenced") > 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"stats\",\"args\":{\"snapshot\":\"vm1@s1\"}}");
	CHECK(jint(j, "result.referenced") >= 65536 + 8192);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"stats\"}");
	CHECK(jint(j, "result.srs.0.snapshot_count") == 2);
	CHECK(jint(j, "result.srs.0.vm_count") == 2);
	vms_json_free(j);
	FAILS("INVALID", "{\"op\":\"stats\",\"args\":{\"vm\":\"vm1\",\"sr\":\"sr1\"}}");
	j = ok(e, "{\"op\":\"check\",\"args\":{\"data\":true}}");
	CHECK(vms_json_bool(jget(j, "result.ok")));
	CHECK(vms_json_bool(jget(j, "result.catalog.ok")));
	CHECK(vms_json_bool(jget(j, "result.srs.0.ok")));
	CHECK(jlen(j, "result.unsettled") == 0);
	vms_json_free(j);
	env_close(e);
}

/* Snapshot with clones, clone of a clone, deleting the middle of a tree,
 * defer and the upward cascade. */
TEST(delete_constraints)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	CHECK(disk_write_pattern(e, "vm1/a", 0, 4096, 3) == 0);
	CHECK(disk_write_pattern(e, "vm1/a", 4096, 4096, 1) == 0);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s1\"}}");
	OK("{\"op\":\"vm.clone\",\"args\":{\"snapshot\":\"vm1@s1\",\"name\":\"c1\"}}");
	fake_now += 5;
	CHECK(disk_write_pattern(e, "c1/a", 0, 4096, 2) == 0);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"c1\",\"name\":\"cs\"}}");
	OK("{\"op\":\"vm.clone\",\"args\":{\"snapshot\":\"c1@cs\",\"name\":\"c2\"}}");
	fake_now += 5;
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"lonely\"}}");

	/* a snapshot with clones: refused naming them */
	vms_json *j = fails(e, "DEPENDENTS", "{\"op\":\"snapshot.delete\",\"args\":{\"snapshot\":\"vm1@s1\"}}");
	CHECK(jlen(j, "error.dependents") == 1);
	CHECK(strcmp(jstr(j, "error.dependents.0.name"), "c1") == 0);
	CHECK(strcmp(jstr(j, "error.dependents.0.kind"), "vm") == 0);
	vms_json_free(j);
	/* a clone-free snapshot: dry run with bytes, then for real */
	CHECK(disk_write_pattern(e, "vm1/a", 0, 1 << 20, 7) == 0);
	j = ok(e, "{\"op\":\"snapshot.delete\",\"args\":{\"snapshot\":\"vm1@lonely\",\"dry_run\":true}}");
	CHECK(vms_json_bool(jget(j, "result.dry_run")));
	CHECK(jlen(j, "result.deleted") == 1);
	CHECK(jint(j, "result.bytes_freed") >= 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@lonely\"}}");
	vms_json_free(j);
	OK("{\"op\":\"snapshot.delete\",\"args\":{\"snapshot\":\"vm1@lonely\"}}");
	FAILS("NOTFOUND", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@lonely\"}}");

	/* defer: hidden, kept while c1 lives */
	j = ok(e, "{\"op\":\"snapshot.delete\",\"args\":{\"snapshot\":\"vm1@s1\",\"defer\":true,"
	          "\"dry_run\":true}}");
	CHECK(jlen(j, "result.deferred") == 1 && jlen(j, "result.deleted") == 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"snapshot.delete\",\"args\":{\"snapshot\":\"vm1@s1\",\"defer\":true}}");
	CHECK(jlen(j, "result.deferred") == 1 && jlen(j, "result.deleted") == 0);
	vms_json_free(j);
	FAILS("NOTFOUND", "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@s1\"}}");
	j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(jint(j, "result.count") == 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"all\":true}}");
	CHECK(jint(j, "result.count") == 1);
	CHECK(vms_json_bool(jget(j, "result.snapshots.0.is_deleted")));
	vms_json_free(j);
	CHECK(disk_has_pattern(e, "c1/a", 0, 4096, 2));
	CHECK(disk_has_pattern(e, "c1/a", 4096, 4096, 1));

	/* deleting the middle of the tree (c1: has a snapshot that c2 depends on) */
	j = fails(e, "DEPENDENTS", "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"c1\"}}");
	CHECK(strcmp(jstr(j, "error.dependents.0.kind"), "snapshot") == 0);
	vms_json_free(j);
	j = fails(e, "DEPENDENTS", "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"c1\",\"recursive\":true}}");
	CHECK(strcmp(jstr(j, "error.dependents.0.name"), "c2") == 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"c1\",\"recursive\":true,\"defer\":true,"
	          "\"dry_run\":true}}");
	CHECK(jlen(j, "result.deferred") == 2);   /* cs and c1 */
	CHECK(jlen(j, "result.deleted") == 2);    /* c1's disks a, b */
	vms_json_free(j);
	FAILS("NOTFOUND", "{\"op\":\"vm.show\",\"args\":{\"vm\":\"c9\"}}");
	OK("{\"op\":\"vm.show\",\"args\":{\"vm\":\"c1\"}}");
	j = ok(e, "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"c1\",\"recursive\":true,\"defer\":true}}");
	CHECK(jlen(j, "result.deferred") == 2);
	vms_json_free(j);
	FAILS("NOTFOUND", "{\"op\":\"vm.show\",\"args\":{\"vm\":\"c1\"}}");
	j = ok(e, "{\"op\":\"vm.list\"}");
	CHECK(jlen(j, "result.vms") == 2);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vm.list\",\"args\":{\"all\":true}}");
	CHECK(jlen(j, "result.vms") == 3);
	vms_json_free(j);
	/* c2 still reads its data through the deferred chain */
	CHECK(disk_has_pattern(e, "c2/a", 0, 4096, 2));
	CHECK(disk_has_pattern(e, "c2/a", 4096, 4096, 1));
	/* tree without all still shows the deferred path to c2 */
	j = ok(e, "{\"op\":\"vm.tree\"}");
	CHECK(strcmp(jstr(j, "result.tree.0.children.0.children.0.name"), "c1") == 0);
	CHECK(vms_json_bool(jget(j, "result.tree.0.children.0.children.0.is_deleted")));
	CHECK(strcmp(jstr(j, "result.tree.0.children.0.children.0.children.0.children.0.name"), "c2") == 0);
	vms_json_free(j);
	/* the same name can be reused for a new VM while c1 is deferred */
	OK("{\"op\":\"vm.create\",\"args\":{\"name\":\"c1\",\"sr\":\"sr1\"}}");
	OK("{\"op\":\"vm.delete\",\"args\":{\"vm\":\"c1\"}}");

	/* deleting the last clone cascades upwards: c2, cs, c1, s1 */
	j = ok(e, "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"c2\",\"dry_run\":true}}");
	CHECK(jlen(j, "result.deleted") == 6);    /* c2's disks a, b, c2, cs, c1, s1 */
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vm.list\",\"args\":{\"all\":true}}");
	CHECK(jlen(j, "result.vms") == 3);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"c2\"}}");
	CHECK(jlen(j, "result.deleted") == 6);
	CHECK(jlen(j, "result.deferred") == 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vm.list\",\"args\":{\"all\":true}}");
	CHECK(jlen(j, "result.vms") == 1);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"all\":true}}");
	CHECK(jint(j, "result.count") == 0);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"check\"}");
	CHECK(vms_json_bool(jget(j, "result.ok")));
	vms_json_free(j);

	/* a VM with clone-free snapshots: recursive reclaims everything */
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"x\"}}");
	FAILS("DEPENDENTS", "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"vm1\"}}");
	j = ok(e, "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"vm1\",\"recursive\":true}}");
	CHECK(jlen(j, "result.deleted") == 4);    /* x, a, b, vm1 */
	vms_json_free(j);
	OK("{\"op\":\"sr.destroy\",\"args\":{\"sr\":\"sr1\"}}");
	env_close(e);
}

/* ---- hooks ---------------------------------------------------------------- */

static int hook_busy, hook_quiesce_on, hook_quiesce_off, hook_changed;
static int h_quiesce(void *ctx, const char *vm, int hold)
{
	(void)ctx;
	(void)vm;
	if (hold)
		hook_quiesce_on++;
	else
		hook_quiesce_off++;
	return 0;
}
static int h_in_use(void *ctx, const char *vdi)
{
	(void)ctx;
	(void)vdi;
	return hook_busy;
}
static void h_changed(void *ctx, const char *vdi)
{
	(void)ctx;
	(void)vdi;
	hook_changed++;
}

TEST(hooks_busy_force_quiesce)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	vms_control_hooks h = {.size = sizeof(h), .quiesce = h_quiesce, .disk_in_use = h_in_use,
	                       .disk_changed = h_changed};
	vms_control_set_hooks(e->ctl, &h, NULL);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s\"}}");
	CHECK(hook_quiesce_on == 1 && hook_quiesce_off == 1);
	hook_busy = 1;
	vms_json *j = fails(e, "BUSY", "{\"op\":\"vm.rollback\",\"args\":{\"vm\":\"vm1\",\"snapshot\":\"s\"}}");
	CHECK(jlen(j, "error.busy") == 2);
	CHECK(strcmp(jstr(j, "error.busy.0.kind"), "vdi") == 0);
	vms_json_free(j);
	FAILS("BUSY", "{\"op\":\"vdi.delete\",\"args\":{\"vdi\":\"vm1/a\"}}");
	FAILS("BUSY", "{\"op\":\"vdi.resize\",\"args\":{\"vdi\":\"vm1/a\",\"size\":\"16M\"}}");
	FAILS("BUSY", "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"vm1\",\"recursive\":true}}");
	CHECK(hook_changed == 0);
	OK("{\"op\":\"vm.rollback\",\"args\":{\"vm\":\"vm1\",\"snapshot\":\"s\",\"force\":true}}");
	CHECK(hook_changed == 2);
	OK("{\"op\":\"vdi.resize\",\"args\":{\"vdi\":\"vm1/a\",\"size\":\"16M\",\"force\":true}}");
	CHECK(hook_changed == 3);
	hook_busy = 0;
	/* holds: a held snapshot is never deleted */
	j = ok(e, "{\"op\":\"snapshot.show\",\"args\":{\"snapshot\":\"vm1@s\"}}");
	char uuid[64];
	snprintf(uuid, sizeof(uuid), "%s", jstr(j, "result.uuid"));
	CHECK(vms_json_type_of(jget(j, "result.hold")) == VMS_JSON_NULL);
	vms_json_free(j);
	{
		vms_catalog *cat;
		char path[128];
		snprintf(path, sizeof(path), "%s/catalog.db", e->home);
		REQUIRE(vms_catalog_open(&cat, path) == 0);
		CHECK_OK(vms_cat_snapshot_set_hold(cat, uuid, "keep"));
		vms_catalog_close(cat);
	}
	j = fails(e, "BUSY", "{\"op\":\"snapshot.delete\",\"args\":{\"snapshot\":\"vm1@s\"}}");
	CHECK(strstr(jstr(j, "error.message"), "keep") != NULL);
	vms_json_free(j);
	FAILS("BUSY", "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"vm1\",\"recursive\":true}}");
	j = ok(e, "{\"op\":\"snapshot.show\",\"args\":{\"snapshot\":\"%s\"}}", uuid);
	CHECK(strcmp(jstr(j, "result.hold"), "keep") == 0);
	vms_json_free(j);
	env_close(e);
}

/* ---- reconciliation --------------------------------------------------------- */

/* "Crash": close the control and open the catalog directly to plant the
 * rows a crash would leave. */
static vms_catalog *crash(env *e)
{
	vms_catalog *cat = NULL;
	char path[128];
	vms_control_close(e->ctl);
	e->ctl = NULL;
	snprintf(path, sizeof(path), "%s/catalog.db", e->home);
	if (vms_catalog_open(&cat, path) < 0)
		fprintf(stderr, "  catalog: %s\n", vms_error_last());
	return cat;
}

/* "Restart": reopen the control, which reconciles. */
static int restart(env *e, vms_catalog *cat)
{
	vms_catalog_close(cat);
	if (vms_control_open(&e->ctl, e->home) < 0)
		return -1;
	vms_control_set_clock(e->ctl, fake_clock, NULL);
	return 0;
}

TEST(reconcile_unsettled_rows)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	CHECK(disk_write_pattern(e, "vm1/a", 0, 4096, 1) == 0);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"gone\"}}");
	fake_now++;
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"kept\"}}");
	vms_json *j = ok(e, "{\"op\":\"snapshot.show\",\"args\":{\"snapshot\":\"vm1@gone\"}}");
	char snap[64], ref[32];
	snprintf(snap, sizeof(snap), "%s", jstr(j, "result.uuid"));
	snprintf(ref, sizeof(ref), "%s", jstr(j, "result.disks.0.ref"));
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vm.show\",\"args\":{\"vm\":\"vm1\"}}");
	char vm[64], sr[64];
	snprintf(vm, sizeof(vm), "%s", jstr(j, "result.uuid"));
	snprintf(sr, sizeof(sr), "%s", jstr(j, "result.sr_uuid"));
	vms_json_free(j);

	/* a crash left: a snapshot 'deleting', a VM and its disk 'creating', a
	 * snapshot 'creating' */
	vms_catalog *cat = crash(e);
	REQUIRE(cat);
	{
		CHECK_OK(vms_cat_snapshot_set_state(cat, snap, VMS_STATE_DELETING));
		vms_cat_vm v = {0};
		vms_uuid_generate(v.uuid);
		snprintf(v.name, sizeof(v.name), "half");
		snprintf(v.sr_uuid, sizeof(v.sr_uuid), "%s", sr);
		v.state = VMS_STATE_CREATING;
		v.created = T0;
		CHECK_OK(vms_cat_vm_insert(cat, &v));
		vms_cat_vdi d = {0};
		vms_uuid_generate(d.uuid);
		vms_uuid_generate(d.vbd_uuid);
		snprintf(d.name, sizeof(d.name), "x");
		snprintf(d.sr_uuid, sizeof(d.sr_uuid), "%s", sr);
		snprintf(d.vm_uuid, sizeof(d.vm_uuid), "%s", v.uuid);
		d.size = MiB;
		d.state = VMS_STATE_CREATING;
		d.created = T0;
		CHECK_OK(vms_cat_vdi_insert(cat, &d));
		vms_cat_snapshot s = {0};
		vms_uuid_generate(s.uuid);
		snprintf(s.vm_uuid, sizeof(s.vm_uuid), "%s", vm);
		snprintf(s.name, sizeof(s.name), "torn");
		s.time = T0 + 100;
		s.seq = 99;
		s.state = VMS_STATE_CREATING;
		s.created = s.time;
		CHECK_OK(vms_cat_snapshot_insert(cat, &s, NULL, 0));
	}
	REQUIRE(restart(e, cat) == 0);
	j = ok(e, "{\"op\":\"check\"}");
	CHECK(jlen(j, "result.unsettled") == 0);
	CHECK(jlen(j, "result.orphans") == 1);   /* the half VM's disk never got a ref */
	CHECK(vms_json_bool(jget(j, "result.ok")));
	vms_json_free(j);
	FAILS("NOTFOUND", "{\"op\":\"snapshot.show\",\"args\":{\"snapshot\":\"%s\"}}", snap);
	FAILS("NOTFOUND", "{\"op\":\"vm.show\",\"args\":{\"vm\":\"half\"}}");
	j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"all\":true}}");
	CHECK(jint(j, "result.count") == 1);
	CHECK(strcmp(jstr(j, "result.snapshots.0.user_name"), "kept") == 0);
	vms_json_free(j);
	/* the backend snapshot of 'gone' was deleted too */
	{
		vms_disk *d = NULL;
		const vms_backend *be = NULL;
		CHECK(vms_control_disk_open(&d, &be, NULL, e->ctl, "vm1/a", 0) == 0);
		if (d)
			be->disk_close(d);
		j = ok(e, "{\"op\":\"sr.show\",\"args\":{\"sr\":\"sr1\"}}");
		vms_json_free(j);
	}
	j = ok(e, "{\"op\":\"check\",\"args\":{\"sr\":\"sr1\"}}");
	CHECK(jint(j, "result.srs.0.report.unkeyed_count") == 0);
	CHECK(jint(j, "result.srs.0.report.disk_count") == 2);
	vms_json_free(j);
	(void)ref;
	env_close(e);
}

/* Deletes a crash interrupted are finished on the next open, keeping what
 * clones still need (defer semantics). */
TEST(reconcile_finishes_deletes)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	CHECK(disk_write_pattern(e, "vm1/a", 0, 4096, 5) == 0);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"base\"}}");
	OK("{\"op\":\"vm.clone\",\"args\":{\"snapshot\":\"vm1@base\",\"name\":\"c1\"}}");
	fake_now++;
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"free\"}}");
	OK("{\"op\":\"vm.create\",\"args\":{\"name\":\"vm2\",\"sr\":\"sr1\",\"disks\":[{\"name\":\"d\","
	   "\"size\":\"1M\"},{\"name\":\"e\",\"size\":\"1M\"}]}}");
	vms_json *j = ok(e, "{\"op\":\"vm.show\",\"args\":{\"vm\":\"vm1\"}}");
	char vm1[64];
	snprintf(vm1, sizeof(vm1), "%s", jstr(j, "result.uuid"));
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"vm2/e\"}}");
	char vdi_e[64];
	snprintf(vdi_e, sizeof(vdi_e), "%s", jstr(j, "result.uuid"));
	vms_json_free(j);
	/* the crash: vm.delete of vm1 and vdi.delete of vm2/e had only written
	 * their intent */
	vms_catalog *cat = crash(e);
	REQUIRE(cat);
	CHECK_OK(vms_cat_vm_set_state(cat, vm1, VMS_STATE_DELETING));
	CHECK_OK(vms_cat_vdi_set_state(cat, vdi_e, VMS_STATE_DELETING));
	REQUIRE(restart(e, cat) == 0);
	FAILS("NOTFOUND", "{\"op\":\"vm.show\",\"args\":{\"vm\":\"vm1\"}}");
	j = ok(e, "{\"op\":\"vm.show\",\"args\":{\"vm\":\"%s\",\"all\":true}}", vm1);
	CHECK(vms_json_bool(jget(j, "result.is_deleted")));
	CHECK(strcmp(jstr(j, "result.state"), "ready") == 0);
	CHECK(jlen(j, "result.snapshots") == 1);   /* base, kept for c1; free reclaimed */
	CHECK(vms_json_bool(jget(j, "result.snapshots.0.is_deleted")));
	vms_json_free(j);
	CHECK(disk_has_pattern(e, "c1/a", 0, 4096, 5));
	FAILS("NOTFOUND", "{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"vm2/e\"}}");
	j = ok(e, "{\"op\":\"vm.show\",\"args\":{\"vm\":\"vm2\"}}");
	CHECK(jlen(j, "result.disks") == 1);
	vms_json_free(j);
	j = ok(e, "{\"op\":\"check\"}");
	CHECK(vms_json_bool(jget(j, "result.ok")));
	CHECK(jlen(j, "result.unsettled") == 0);
	CHECK(jint(j, "result.srs.0.report.unkeyed_count") == 0);
	CHECK(jint(j, "result.srs.0.report.disk_count") == 3);   /* c1/a, c1/b, vm2/d */
	vms_json_free(j);
	/* and the cascade still works from there */
	j = ok(e, "{\"op\":\"vm.delete\",\"args\":{\"vm\":\"c1\"}}");
	CHECK(jlen(j, "result.deleted") == 5);   /* c1's a and b, c1, base, vm1 */
	vms_json_free(j);
	j = ok(e, "{\"op\":\"vm.list\",\"args\":{\"all\":true}}");
	CHECK(jlen(j, "result.vms") == 1);
	vms_json_free(j);
	env_close(e);
}

/* A rollback a crash interrupted (its intent recorded, not cleared) is
 * done again on the next open, for every disk. */
TEST(reconcile_redoes_rollback)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	CHECK(disk_write_pattern(e, "vm1/a", 0, 4096, 1) == 0);
	CHECK(disk_write_pattern(e, "vm1/b", 0, 4096, 2) == 0);
	vms_json *j = ok(e, "{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s\"}}");
	char snap[64], vm[64];
	snprintf(snap, sizeof(snap), "%s", jstr(j, "result.uuid"));
	snprintf(vm, sizeof(vm), "%s", jstr(j, "result.vm_uuid"));
	vms_json_free(j);
	CHECK(disk_write_pattern(e, "vm1/a", 0, 4096, 3) == 0);
	CHECK(disk_write_pattern(e, "vm1/b", 0, 4096, 4) == 0);
	/* a rollback that completes leaves no intent behind */
	fake_now++;
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"t\"}}");
	OK("{\"op\":\"vm.rollback\",\"args\":{\"vm\":\"vm1\",\"snapshot\":\"t\"}}");
	vms_catalog *cat = crash(e);
	REQUIRE(cat);
	vms_cat_vm v;
	CHECK_OK(vms_cat_vm_get(&v, cat, vm, 0));
	CHECK(v.pending_rollback[0] == 0);
	/* the crash: the rollback to s had written its intent only */
	CHECK_OK(vms_cat_vm_set_pending_rollback(cat, vm, snap));
	REQUIRE(restart(e, cat) == 0);
	CHECK(disk_has_pattern(e, "vm1/a", 0, 4096, 1));
	CHECK(disk_has_pattern(e, "vm1/b", 0, 4096, 2));
	CHECK(disk_has_pattern(e, "vm1/a@t", 0, 4096, 3));
	cat = crash(e);
	REQUIRE(cat);
	CHECK_OK(vms_cat_vm_get(&v, cat, vm, 0));
	CHECK(v.pending_rollback[0] == 0);
	REQUIRE(restart(e, cat) == 0);
	env_close(e);
}

/* The native SR's key log: a torn last record (crash while appending) is
 * cut off on open; damage before it is CORRUPT, never silently ignored. */
TEST(native_key_log_torn_and_damaged)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	CHECK(disk_write_pattern(e, "vm1/a", 0, 4096, 4) == 0);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s\"}}");
	char log[160];
	snprintf(log, sizeof(log), "%s/keys.log", e->srdir);
	vms_catalog_close(crash(e));
	FILE *f = fopen(log, "a");
	REQUIRE(f);
	fputs("0badf00d A vm/disk 12", f);   /* no newline: torn */
	fclose(f);
	REQUIRE(vms_control_open(&e->ctl, e->home) == 0);
	CHECK(disk_has_pattern(e, "vm1/a@s", 0, 4096, 4));
	fake_now++;
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"t\"}}");
	{
		char text[8192] = "";
		FILE *lf = fopen(log, "r");
		REQUIRE(lf);
		size_t got = fread(text, 1, sizeof(text) - 1, lf);
		text[got] = 0;
		fclose(lf);
		CHECK(strstr(text, "0badf00d") == NULL);       /* the torn record is gone */
		CHECK(got > 0 && text[got - 1] == '\n');      /* and the new one complete */
	}
	vms_json *j = ok(e, "{\"op\":\"check\",\"args\":{\"sr\":\"sr1\"}}");
	CHECK(vms_json_bool(jget(j, "result.ok")));
	CHECK(jint(j, "result.srs.0.report.unkeyed_count") == 0);
	vms_json_free(j);
	vms_catalog_close(crash(e));
	/* flip a byte inside the first record */
	f = fopen(log, "r+");
	REQUIRE(f);
	char head[64];
	REQUIRE(fgets(head, sizeof(head), f) != NULL);   /* header line */
	long pos = ftell(f);
	fseek(f, pos + 12, SEEK_SET);
	int c = fgetc(f);
	fseek(f, pos + 12, SEEK_SET);
	fputc(c == 'a' ? 'b' : 'a', f);
	fclose(f);
	REQUIRE(vms_control_open(&e->ctl, e->home) == 0);
	vms_disk *d = NULL;
	const vms_backend *be = NULL;
	CHECK(vms_control_disk_open(&d, &be, NULL, e->ctl, "vm1/a", 0) == VMS_ECORRUPT);
	CHECK(strstr(vms_error_last(), "keys.log") != NULL);
	j = ok(e, "{\"op\":\"check\"}");
	CHECK(!vms_json_bool(jget(j, "result.ok")));
	vms_json_free(j);
	env_close(e);
}

/* Mutated requests (random byte edits of valid ones) always get one
 * well-formed envelope and never crash (seed printed; VMS_SEED replays). */
TEST(mutated_requests_get_envelopes)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	setup_vm(e);
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s\"}}");
	static const char *base[] = {
		"{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm1@before:2026-11-23T10:00:00Z\"}}",
		"{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\",\"since\":\"2026-11-23\",\"limit\":3}}",
		"{\"op\":\"vm.show\",\"args\":{\"vm\":\"vm1\",\"all\":true}}",
		"{\"op\":\"vdi.show\",\"args\":{\"vdi\":\"vm1/a\"}}",
		"{\"op\":\"vm.tree\",\"args\":{\"vm\":\"vm1\"}}",
		"{\"op\":\"vm.delete\",\"args\":{\"vm\":\"vm1\",\"dry_run\":true,\"recursive\":true}}",
		"{\"op\":\"stats\",\"args\":{\"snapshot\":\"vm1@latest\"}}",
		"{\"op\":\"vm.rollback\",\"args\":{\"vm\":\"vm1\",\"snapshot\":\"latest\",\"dry_run\":true}}",
	};
	const char *envs = getenv("VMS_SEED");
	uint64_t x = envs ? strtoull(envs, NULL, 0) : (uint64_t)time(NULL);
	fprintf(stderr, "  seed %llu (VMS_SEED to replay)\n", (unsigned long long)x);
	if (!x)
		x = 1;
	static const char alphabet[] = "{}[]\":,@/.~-_0123456789azAZ \\\x01\xc3\xff";
	for (int it = 0; it < 3000 && !test_failures_in_case; it++) {
		char buf[512];
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		snprintf(buf, sizeof(buf), "%s", base[x % (sizeof(base) / sizeof(base[0]))]);
		for (int m = 0, nm = 1 + (int)(x >> 8) % 4; m < nm; m++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			size_t len = strlen(buf), pos = (size_t)(x >> 16) % (len + 1);
			char ch = alphabet[(x >> 40) % (sizeof(alphabet) - 1)];
			switch (x % 3) {
			case 0: /* replace */
				if (pos < len)
					buf[pos] = ch;
				break;
			case 1: /* delete */
				if (pos < len)
					memmove(buf + pos, buf + pos + 1, len - pos);
				break;
			default: /* insert */
				if (len + 2 < sizeof(buf)) {
					memmove(buf + pos + 1, buf + pos, len - pos + 1);
					buf[pos] = ch;
				}
			}
		}
		char *out = NULL;
		int rc = vms_control_exec(&out, e->ctl, buf);
		vms_json *j = NULL;
		if (!out || vms_json_parse(&j, out, strlen(out)) < 0 || jint(j, "output_version") != 1 ||
		    (rc == 0) != (jget(j, "result") != NULL) ||
		    (rc != 0 && strcmp(jstr(j, "error.code"), vms_error_name(rc)) != 0)) {
			fprintf(stderr, "  request %s -> rc %d, response %s\n", buf, rc, out ? out : "(null)");
			test_failures_in_case++;
		}
		vms_json_free(j);
		free(out);
	}
	/* the data is still there */
	vms_json *j = ok(e, "{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(jint(j, "result.count") == 1);
	vms_json_free(j);
	env_close(e);
}

/* A second control on the same home (the CLI next to the daemon) sees the
 * first one's commits: the cached snapshot index follows data_version. */
TEST(index_cache_follows_other_connections)
{
	env ev, *e = &ev;
	REQUIRE(env_open(e) == 0);
	FAILS("NOTFOUND", "{\"op\":\"vm.create\",\"args\":{\"name\":\"vm1\",\"sr\":\"nosr\"}}");
	/* a VM without disks needs no SR backend I/O, so both controls can act */
	OK("{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\",\"location\":\"%s\","
	   "\"size\":\"64M\"}}", e->srdir);
	OK("{\"op\":\"vm.create\",\"args\":{\"name\":\"vm0\",\"sr\":\"sr1\"}}");
	OK("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm0\",\"name\":\"one\"}}");
	vms_json *j = ok(e, "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm0@latest\"}}");
	CHECK(strcmp(jstr(j, "result.user_name"), "one") == 0);
	vms_json_free(j);
	{
		/* another process (the policy engine, a CLI) commits a snapshot row */
		vms_catalog *cat;
		char path[128];
		vms_cat_vm vm;
		snprintf(path, sizeof(path), "%s/catalog.db", e->home);
		REQUIRE(vms_catalog_open(&cat, path) == 0);
		REQUIRE(vms_cat_vm_get(&vm, cat, "vm0", 0) == 0);
		vms_cat_snapshot sn = {0};
		vms_uuid_generate(sn.uuid);
		snprintf(sn.vm_uuid, sizeof(sn.vm_uuid), "%s", vm.uuid);
		snprintf(sn.name, sizeof(sn.name), "two");
		sn.time = T0 + 10;
		sn.created = sn.time;
		sn.state = VMS_STATE_READY;
		CHECK_OK(vms_catalog_begin(cat));
		CHECK_OK(vms_cat_vm_next_seq(&sn.seq, cat, vm.uuid));
		CHECK_OK(vms_cat_snapshot_insert(cat, &sn, NULL, 0));
		CHECK_OK(vms_catalog_commit(cat));
		vms_catalog_close(cat);
	}
	j = ok(e, "{\"op\":\"snapshot.find\",\"args\":{\"snapshot\":\"vm0@latest\"}}");
	CHECK(strcmp(jstr(j, "result.user_name"), "two") == 0);
	CHECK(jint(j, "result.count") == 2);
	vms_json_free(j);
	env_close(e);
}

TEST_MAIN()
