/*
 * Policy ops of the control module with a controllable clock: the schedule
 * run over simulated days (policy.run at 10-minute steps), prune against
 * Proxmox's worked examples through the catalog and the backend, holds
 * never pruned, manual snapshots kept, missed runs (one catch-up, no burst,
 * no mass prune, late runs left to the next slot, clock stepped back), the
 * VM report, and import/export of a raw image round trip (qemu-img).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "vmsnap/control.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

#define T0 INT64_C(1795428000) /* 2026-11-23T10:00:00Z, a Monday */
#define HOUR 3600
#define DAY 86400

static int64_t now_t = T0;
static int64_t clock_fn(void *ctx)
{
	(void)ctx;
	return now_t;
}

static char home[64];
static vms_control *ctl;

/* One request; *code gets "" on success or the error code.  Returns the
 * parsed response (caller frees). */
static vms_json *call(char *code, size_t cap, const char *fmt, ...)
{
	char buf[4096], *out = NULL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	int rc = vms_control_exec(&out, ctl, buf);
	vms_json *j = NULL;
	if (!out || vms_json_parse(&j, out, strlen(out)) < 0) {
		fprintf(stderr, "  no response to %s\n", buf);
		test_failures_in_case++;
	}
	const char *c = vms_json_string(vms_json_object_get(vms_json_object_get(j, "error"), "code"));
	snprintf(code, cap, "%s", rc == 0 ? "" : c ? c : "?");
	if (getenv("VMS_TEST_VERBOSE"))
		fprintf(stderr, "  > %s\n  < %s\n", buf, out ? out : "");
	free(out);
	return j;
}

static const vms_json *at(const vms_json *j, const char *path)
{
	char buf[256], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = strtok_r(buf, ".", &save); p && j; p = strtok_r(NULL, ".", &save))
		j = vms_json_type_of(j) == VMS_JSON_ARRAY ? vms_json_array_get(j, strtoul(p, NULL, 10))
		                                           : vms_json_object_get(j, p);
	return j;
}

static int64_t num(const vms_json *j, const char *path)
{
	int64_t v = -1;
	return vms_json_is_int(at(j, path), &v) ? v : -1;
}

static const char *str(const vms_json *j, const char *path)
{
	const char *s = vms_json_string(at(j, path));
	return s ? s : "";
}

/* Expect success (want == NULL) or the error code `want`. */
#define EXPECT(want, ...)                                                                   \
	do {                                                                                \
		char code_[32];                                                             \
		vms_json *j_ = call(code_, sizeof(code_), __VA_ARGS__);                     \
		if (strcmp(code_, (want) ? (want) : "") != 0) {                             \
			fprintf(stderr, "  %s:%d: wanted '%s', got '%s': %s\n", __FILE__, __LINE__, \
			        (want) ? (want) : "success", code_, str(j_, "error.message"));      \
			test_failures_in_case++;                                                    \
		}                                                                           \
		vms_json_free(j_);                                                          \
	} while (0)

/* Succeeds; returns the result's parent response (caller frees). */
static vms_json *get(const char *fmt, ...)
{
	char buf[4096], code[32];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	vms_json *j = call(code, sizeof(code), "%s", buf);
	if (code[0]) {
		fprintf(stderr, "  %s failed: %s %s\n", buf, code, str(j, "error.message"));
		test_failures_in_case++;
	}
	return j;
}

static int setup(void)
{
	char cmd[128];
	/* tmpfs when there is one: hundreds of catalog commits per test */
	snprintf(home, sizeof(home), "%s/vms_pol_XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(home))
		return -1;
	if (vms_control_open(&ctl, home) < 0) {
		fprintf(stderr, "open: %s\n", vms_error_last());
		return -1;
	}
	now_t = T0;
	vms_control_set_clock(ctl, clock_fn, NULL);
	snprintf(cmd, sizeof(cmd), "%s/sr1", home);
	char code[32];
	vms_json *j = call(code, sizeof(code),
	                   "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\","
	                   "\"location\":\"%s\",\"size\":\"64M\"}}", cmd);
	vms_json_free(j);
	if (code[0])
		return -1;
	j = call(code, sizeof(code), "{\"op\":\"vm.create\",\"args\":{\"name\":\"vm1\",\"sr\":\"sr1\","
	         "\"disks\":[{\"name\":\"d0\",\"size\":\"1M\"}]}}");
	vms_json_free(j);
	return code[0] ? -1 : 0;
}

static void teardown(void)
{
	char cmd[128];
	vms_control_close(ctl);
	ctl = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", home);
}

static int64_t snapshot_count(void)
{
	vms_json *j = get("{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\"}}");
	int64_t n = num(j, "result.count");
	vms_json_free(j);
	return n;
}

/* A snapshot at time t with user name `name`. */
static void snap_at(int64_t t, const char *name)
{
	int64_t keep = now_t;
	now_t = t;
	vms_json_free(get("{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"%s\"}}", name));
	now_t = keep;
}

/* The time tags of vm1's snapshots, oldest first, as "YYYY-MM-DD" list. */
static void snapshot_days(char *out, size_t cap)
{
	vms_json *j = get("{\"op\":\"snapshot.list\",\"args\":{\"vm\":\"vm1\"}}");
	size_t len = 0;
	out[0] = 0;
	for (size_t i = 0; i < vms_json_array_len(at(j, "result.snapshots")); i++) {
		char p[32];
		snprintf(p, sizeof(p), "result.snapshots.%zu.time_iso", i);
		len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%.10s", len ? " " : "",
		                        str(j, p));
	}
	vms_json_free(j);
}

TEST(set_show_list_delete)
{
	REQUIRE(setup() == 0);
	/* no policy yet */
	EXPECT("NOTFOUND", "{\"op\":\"policy.show\",\"args\":{\"vm\":\"vm1\"}}");
	/* bad specs: clear errors, nothing stored */
	EXPECT("INVALID", "{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"spec\":{\"keep\":{\"dayly\":3}}}}");
	EXPECT("INVALID", "{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"schedule\":\"daily 24:00\"}}");
	EXPECT("INVALID", "{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"sr\":\"sr1\",\"schedule\":\"hourly\"}}");
	EXPECT("INVALID", "{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\"}}");
	EXPECT("INVALID", "{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"spec\":{},\"schedule\":\"hourly\"}}");
	EXPECT("NOTFOUND", "{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm9\",\"schedule\":\"hourly\"}}");
	EXPECT("NOTFOUND", "{\"op\":\"policy.show\",\"args\":{\"vm\":\"vm1\"}}");
	/* SR default, seen by the VM */
	vms_json *j = get("{\"op\":\"policy.set\",\"args\":{\"sr\":\"sr1\",\"spec\":"
	                  "\"{\\\"schedule\\\":\\\"daily 02:30\\\",\\\"keep\\\":{\\\"daily\\\":7}}\"}}");
	CHECK(strcmp(str(j, "result.policy.schedule"), "daily 02:30") == 0);
	CHECK(num(j, "result.policy.keep.daily") == 7);
	vms_json_free(j);
	j = get("{\"op\":\"policy.show\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(strcmp(str(j, "result.source"), "sr") == 0);
	CHECK(strcmp(str(j, "result.next_time_iso"), "2026-11-24T02:30:00Z") == 0);
	CHECK(vms_json_type_of(at(j, "result.last_run_time")) == VMS_JSON_NULL);
	vms_json_free(j);
	/* the VM's own, by fields, then a field changed alone */
	vms_json_free(get("{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"schedule\":\"every 15m\","
	                  "\"keep\":{\"last\":4}}}"));
	j = get("{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"enabled\":false}}");
	CHECK(strcmp(str(j, "result.policy.schedule"), "every 15m") == 0);
	CHECK(num(j, "result.policy.keep.last") == 4);
	CHECK(vms_json_bool(at(j, "result.policy.enabled")) == 0);
	vms_json_free(j);
	j = get("{\"op\":\"policy.show\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(strcmp(str(j, "result.source"), "vm") == 0);
	CHECK(vms_json_type_of(at(j, "result.next_time")) == VMS_JSON_NULL);   /* disabled */
	vms_json_free(j);
	j = get("{\"op\":\"policy.list\"}");
	CHECK(vms_json_array_len(at(j, "result.policies")) == 2);
	vms_json_free(j);
	vms_json_free(get("{\"op\":\"policy.delete\",\"args\":{\"vm\":\"vm1\"}}"));
	EXPECT("NOTFOUND", "{\"op\":\"policy.delete\",\"args\":{\"vm\":\"vm1\"}}");
	j = get("{\"op\":\"policy.show\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(strcmp(str(j, "result.source"), "sr") == 0);
	vms_json_free(j);
	EXPECT(NULL, "{\"op\":\"policy.delete\",\"args\":{\"sr\":\"sr1\"}}");
	EXPECT("NOTFOUND", "{\"op\":\"policy.show\",\"args\":{\"sr\":\"sr1\"}}");
	teardown();
}

TEST(schedule_over_days)
{
	REQUIRE(setup() == 0);
	vms_json_free(get("{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"schedule\":\"hourly\","
	                  "\"keep\":{\"last\":3,\"hourly\":6,\"daily\":3}}}"));
	/* a manual snapshot: never pruned, not counted */
	snap_at(T0 - 5 * DAY, "nightly");
	int taken = 0, max_kept = 0;
	for (now_t = T0; now_t <= T0 + 5 * DAY; now_t += 1200) {
		vms_json *j = get("{\"op\":\"policy.run\"}");
		const vms_json *run = at(j, "result.runs.0");
		if (vms_json_type_of(at(run, "snapshot")) == VMS_JSON_OBJECT) {
			taken++;
			/* snapshots land on the slots */
			CHECK(num(run, "snapshot.time") % HOUR == 0);
			CHECK(vms_json_array_len(at(run, "prune.skipped")) == 0);
		}
		CHECK(num(j, "result.failures") == 0);
		if (vms_json_type_of(at(run, "snapshot")) == VMS_JSON_OBJECT) {
			int64_t n = snapshot_count();
			if (n > max_kept)
				max_kept = (int)n;
		}
		vms_json_free(j);
	}
	/* one snapshot per hourly slot, the first at the first slot after the
	 * policy was set (T0) */
	CHECK(taken == 5 * 24);
	/* last 3 + 6 hours + 3 earlier days + the manual one */
	CHECK(snapshot_count() == 3 + 6 + 3 + 1);
	CHECK(max_kept <= 3 + 6 + 3 + 1 + 1);
	/* pruning again removes nothing */
	vms_json *j = get("{\"op\":\"policy.prune\",\"args\":{\"vm\":\"vm1\",\"dry_run\":true}}");
	CHECK(num(j, "result.remove") == 0);
	CHECK(num(j, "result.keep") == 13);
	vms_json_free(j);
	char days[1024];
	snapshot_days(days, sizeof(days));
	CHECK(strcmp(days, "2026-11-18 2026-11-25 2026-11-26 2026-11-27 2026-11-28 2026-11-28 2026-11-28 "
	                   "2026-11-28 2026-11-28 2026-11-28 2026-11-28 2026-11-28 2026-11-28") == 0);
	if (strncmp(days, "2026-11-18 2026-11-25", 21) != 0)
		fprintf(stderr, "  days: %s\n", days);
	teardown();
}

/* Proxmox's tests/prune.rs backups, as automatic snapshots at 11:59:15. */
static const char *const PBS_DATES[] = {"2018-11-15", "2019-11-15", "2019-11-21", "2019-11-22",
                                        "2019-11-29", "2019-12-01", "2019-12-02", "2019-12-03",
                                        "2019-12-04"};

static int64_t parse_day(const char *d)
{
	struct tm tm = {0};
	sscanf(d, "%d-%d-%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) + 11 * HOUR + 59 * 60 + 15;
}

static void pbs_snapshots(void)
{
	for (size_t i = 0; i < sizeof(PBS_DATES) / sizeof(PBS_DATES[0]); i++)
		snap_at(parse_day(PBS_DATES[i]), "auto");
}

TEST(prune_worked_examples)
{
	static const struct {
		const char *keep, *kept;
	} cases[] = {
		{"{\"daily\":1}", "2019-12-04"},
		{"{\"last\":1,\"daily\":1}", "2019-12-03 2019-12-04"},
		{"{\"daily\":1,\"weekly\":1}", "2019-12-01 2019-12-04"},
		{"{\"daily\":1,\"weekly\":1,\"monthly\":1}", "2019-11-22 2019-12-01 2019-12-04"},
		{"{\"monthly\":1,\"yearly\":1}", "2018-11-15 2019-12-04"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		REQUIRE(setup() == 0);
		pbs_snapshots();
		vms_json_free(get("{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"keep\":%s}}", cases[c].keep));
		/* the dry run changes nothing and explains every decision */
		vms_json *j = get("{\"op\":\"policy.prune\",\"args\":{\"vm\":\"vm1\",\"dry_run\":true}}");
		size_t nk = 1;
		for (const char *p = cases[c].kept; *p; p++)
			nk += *p == ' ';
		CHECK(num(j, "result.keep") == (int64_t)nk);
		CHECK(num(j, "result.remove") == (int64_t)(9 - nk));
		CHECK(vms_json_bool(at(j, "result.dry_run")) == 1);
		CHECK(strncmp(str(j, "result.snapshots.0.name"), "auto_2019", 9) == 0);
		CHECK(vms_json_array_len(at(j, "result.snapshots.0.reasons")) >= 1);
		vms_json_free(j);
		CHECK(snapshot_count() == 9);
		j = get("{\"op\":\"policy.prune\",\"args\":{\"vm\":\"vm1\"}}");
		CHECK(vms_json_array_len(at(j, "result.deleted")) == 9 - nk);
		vms_json_free(j);
		char days[512];
		snapshot_days(days, sizeof(days));
		if (strcmp(days, cases[c].kept) != 0) {
			fprintf(stderr, "  keep %s: kept %s, wanted %s\n", cases[c].keep, days, cases[c].kept);
			test_failures_in_case++;
		}
		teardown();
	}
}

TEST(holds_never_pruned)
{
	REQUIRE(setup() == 0);
	pbs_snapshots();
	vms_json_free(get("{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"keep\":{\"daily\":1}}}"));
	vms_json *j = get("{\"op\":\"snapshot.hold\",\"args\":{\"snapshot\":\"vm1@before:2019-11-30\","
	                  "\"tag\":\"backup\"}}");
	CHECK(strcmp(str(j, "result.hold"), "backup") == 0);
	CHECK(strncmp(str(j, "result.time_iso"), "2019-11-29", 10) == 0);
	vms_json_free(j);
	EXPECT("INVALID", "{\"op\":\"snapshot.hold\",\"args\":{\"snapshot\":\"vm1@latest\",\"tag\":\"a b\"}}");
	j = get("{\"op\":\"policy.prune\",\"args\":{\"vm\":\"vm1\",\"dry_run\":true}}");
	CHECK(num(j, "result.keep") == 2);
	int seen = 0;
	for (size_t i = 0; i < 9; i++) {
		char p[64];
		snprintf(p, sizeof(p), "result.snapshots.%zu", i);
		const vms_json *s = at(j, p);
		if (strncmp(str(s, "time_iso"), "2019-11-29", 10) == 0) {
			seen = 1;
			CHECK(strcmp(str(s, "action"), "keep") == 0);
			CHECK(strcmp(str(s, "reasons.0"), "held: backup") == 0);
		}
	}
	CHECK(seen);
	vms_json_free(j);
	vms_json_free(get("{\"op\":\"policy.prune\",\"args\":{\"vm\":\"vm1\"}}"));
	char days[256];
	snapshot_days(days, sizeof(days));
	CHECK(strcmp(days, "2019-11-29 2019-12-04") == 0);
	/* a held snapshot cannot be deleted by hand either; released, it goes */
	EXPECT("BUSY", "{\"op\":\"snapshot.delete\",\"args\":{\"snapshot\":\"vm1@latest~1\"}}");
	EXPECT(NULL, "{\"op\":\"snapshot.release\",\"args\":{\"snapshot\":\"vm1@latest~1\"}}");
	EXPECT("INVALID", "{\"op\":\"snapshot.release\",\"args\":{\"snapshot\":\"vm1@latest~1\"}}");
	vms_json_free(get("{\"op\":\"policy.prune\",\"args\":{\"vm\":\"vm1\"}}"));
	snapshot_days(days, sizeof(days));
	CHECK(strcmp(days, "2019-12-04") == 0);
	teardown();
}

TEST(missed_runs)
{
	REQUIRE(setup() == 0);
	vms_json_free(get("{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"schedule\":\"hourly\","
	                  "\"keep\":{\"last\":5}}}"));
	/* ten hours of normal runs */
	for (now_t = T0; now_t < T0 + 10 * HOUR; now_t += HOUR)
		vms_json_free(get("{\"op\":\"policy.run\",\"args\":{\"vm\":\"vm1\"}}"));
	CHECK(snapshot_count() == 5);
	/* the daemon was down three days: one catch-up snapshot, no burst, and
	 * the prune keeps the retention (not "everything older than ...") */
	now_t = T0 + 3 * DAY + 5 * 60;
	vms_json *j = get("{\"op\":\"policy.run\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(vms_json_bool(at(j, "result.runs.0.due")) == 1);
	CHECK(num(j, "result.runs.0.missed") == 3 * 24 - 10);
	CHECK(num(j, "result.runs.0.snapshot.time") == now_t);
	CHECK(vms_json_array_len(at(j, "result.runs.0.prune.deleted")) == 1);
	CHECK(num(j, "result.runs.0.next_time") == T0 + 3 * DAY + HOUR);
	vms_json_free(j);
	CHECK(snapshot_count() == 5);
	j = get("{\"op\":\"policy.run\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(vms_json_bool(at(j, "result.runs.0.due")) == 0);
	CHECK(vms_json_type_of(at(j, "result.runs.0.snapshot")) != VMS_JSON_OBJECT);
	vms_json_free(j);
	CHECK(snapshot_count() == 5);
	/* down again until 10:50 of a later day: too late for the 10:00 slot,
	 * the run is left to 11:00 */
	now_t = T0 + 5 * DAY + 50 * 60;
	j = get("{\"op\":\"policy.run\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(vms_json_bool(at(j, "result.runs.0.due")) == 0);
	CHECK(num(j, "result.runs.0.next_time") == T0 + 5 * DAY + HOUR);
	vms_json_free(j);
	now_t = T0 + 5 * DAY + HOUR;
	j = get("{\"op\":\"policy.run\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(vms_json_type_of(at(j, "result.runs.0.snapshot")) == VMS_JSON_OBJECT);
	vms_json_free(j);
	/* the clock stepped back a day: nothing due at once */
	now_t = T0 + 4 * DAY;
	j = get("{\"op\":\"policy.run\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(vms_json_bool(at(j, "result.runs.0.due")) == 0);
	CHECK(num(j, "result.runs.0.missed") == 0);
	vms_json_free(j);
	CHECK(snapshot_count() == 5);
	/* a disabled policy takes nothing, even when due; force takes one now */
	vms_json_free(get("{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"enabled\":false}}"));
	now_t = T0 + 9 * DAY;
	j = get("{\"op\":\"policy.run\"}");
	CHECK(vms_json_type_of(at(j, "result.runs.0.snapshot")) != VMS_JSON_OBJECT);
	vms_json_free(j);
	j = get("{\"op\":\"policy.run\",\"args\":{\"vm\":\"vm1\",\"force\":true}}");
	CHECK(vms_json_type_of(at(j, "result.runs.0.snapshot")) != VMS_JSON_OBJECT);
	vms_json_free(j);
	vms_json_free(get("{\"op\":\"policy.set\",\"args\":{\"vm\":\"vm1\",\"enabled\":true}}"));
	j = get("{\"op\":\"policy.run\",\"args\":{\"vm\":\"vm1\",\"force\":true}}");
	CHECK(vms_json_type_of(at(j, "result.runs.0.snapshot")) == VMS_JSON_OBJECT);
	vms_json_free(j);
	teardown();
}

TEST(report)
{
	REQUIRE(setup() == 0);
	snap_at(T0 - 2 * DAY, "auto");
	snap_at(T0 - DAY, "auto");
	snap_at(T0 - HOUR, "manual1");
	vms_json *j = get("{\"op\":\"vm.report\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(num(j, "result.snapshot_count") == 3);
	CHECK(num(j, "result.chain_depth.max") == 1);
	CHECK(vms_json_type_of(at(j, "result.policy")) == VMS_JSON_NULL);
	CHECK(num(j, "result.oldest.age_seconds") == 2 * DAY);
	CHECK(num(j, "result.disks.0.chain_depth") == 1);
	CHECK(vms_json_type_of(at(j, "result.disks.0.imported")) == VMS_JSON_NULL);
	vms_json_free(j);
	vms_json_free(get("{\"op\":\"policy.set\",\"args\":{\"sr\":\"sr1\",\"keep\":{\"last\":1}}}"));
	j = get("{\"op\":\"vm.report\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(strcmp(str(j, "result.policy_source"), "sr") == 0);
	CHECK(num(j, "result.manual_count") == 1);
	CHECK(num(j, "result.prune.remove") == 1);   /* the older auto one */
	CHECK(strcmp(str(j, "result.snapshots.0.prune"), "remove") == 0);
	vms_json_free(j);
	teardown();
}

TEST(import_export_raw)
{
	if (system("command -v qemu-img >/dev/null 2>&1") != 0) {
		fprintf(stderr, "  qemu-img missing: skipped\n");
		return;
	}
	REQUIRE(setup() == 0);
	char src[128], dst[128], cmd[512];
	snprintf(src, sizeof(src), "%s/src.qcow2", home);
	snprintf(dst, sizeof(dst), "%s/out.raw", home);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 %s 2M && qemu-io -f qcow2 -c "
	         "'write -P 0x5a 64k 128k' -c 'write -P 0x33 1536k 4k' %s >/dev/null", src, src);
	REQUIRE(system(cmd) == 0);
	vms_json *j = get("{\"op\":\"vdi.import\",\"args\":{\"vm\":\"vm1\",\"name\":\"imp\",\"source\":\"%s\"}}",
	                  src);
	CHECK(num(j, "result.size") == 2 * 1024 * 1024);
	CHECK(num(j, "result.import.source_chain_depth") == 1);
	CHECK(strcmp(str(j, "result.import.format"), "qcow2") == 0);
	CHECK(num(j, "result.import.bytes_copied") == 128 * 1024 + 4096);
	vms_json_free(j);
	EXPECT("EXISTS", "{\"op\":\"vdi.import\",\"args\":{\"vm\":\"vm1\",\"name\":\"imp\",\"source\":\"%s\"}}", src);
	EXPECT("INVALID", "{\"op\":\"vdi.import\",\"args\":{\"vm\":\"vm1\",\"name\":\"x\",\"source\":\"rel.img\"}}");
	EXPECT("INVALID", "{\"op\":\"vdi.import\",\"args\":{\"vm\":\"vm1\",\"name\":\"x\",\"source\":\"%s\","
	       "\"format\":\"ntfs\"}}", src);
	vms_json_free(get("{\"op\":\"vdi.export\",\"args\":{\"vdi\":\"vm1/imp\",\"path\":\"%s\"}}", dst));
	EXPECT("EXISTS", "{\"op\":\"vdi.export\",\"args\":{\"vdi\":\"vm1/imp\",\"path\":\"%s\"}}", dst);
	snprintf(cmd, sizeof(cmd), "qemu-img compare -q %s %s", src, dst);
	CHECK(system(cmd) == 0);
	j = get("{\"op\":\"vm.report\",\"args\":{\"vm\":\"vm1\"}}");
	CHECK(num(j, "result.disks.1.imported.source_chain_depth") == 1);
	vms_json_free(j);
	/* vmdk in, qcow2 out */
	char vmdk[128], q2[128];
	snprintf(vmdk, sizeof(vmdk), "%s/src.vmdk", home);
	snprintf(q2, sizeof(q2), "%s/out.qcow2", home);
	snprintf(cmd, sizeof(cmd), "qemu-img convert -f qcow2 -O vmdk %s %s", src, vmdk);
	REQUIRE(system(cmd) == 0);
	j = get("{\"op\":\"vdi.import\",\"args\":{\"vm\":\"vm1\",\"name\":\"vmdk\",\"source\":\"%s\"}}", vmdk);
	CHECK(strcmp(str(j, "result.import.format"), "vmdk") == 0);
	vms_json_free(j);
	vms_json_free(get("{\"op\":\"vdi.export\",\"args\":{\"vdi\":\"vm1/vmdk\",\"path\":\"%s\","
	                  "\"format\":\"qcow2\"}}", q2));
	snprintf(cmd, sizeof(cmd), "qemu-img compare -q -f qcow2 -F qcow2 %s %s", src, q2);
	CHECK(system(cmd) == 0);
	teardown();
}

TEST_MAIN()
