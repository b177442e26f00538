/* The per-VM report: figures, growth by linear fit, chain depth, prune. */
#include <math.h>

#include "test.h"
#include "vmsnap/error.h"
#include "vmsnap/policy.h"

#define MIB (1024 * 1024LL)
#define DAY 86400

static int64_t geti(const vms_json *o, const char *path1, const char *path2)
{
	const vms_json *v = vms_json_object_get(o, path1);
	int64_t x = -999;
	if (path2)
		v = vms_json_object_get(v, path2);
	vms_json_is_int(v, &x);
	return x;
}

static double getd(const vms_json *o, const char *a, const char *b)
{
	const vms_json *v = vms_json_object_get(vms_json_object_get(o, a), b);
	return vms_json_type_of(v) == VMS_JSON_NUMBER ? vms_json_double(v) : NAN;
}

TEST(linear_slope)
{
	double x[] = {1e9, 1e9 + 1, 1e9 + 2, 1e9 + 3}, y[] = {1, 3, 5, 7}, s = 0;
	CHECK_OK(vms_linear_slope(&s, x, y, 4));
	CHECK(fabs(s - 2.0) < 1e-9);
	double y2[] = {0, 1, 0, 1};
	CHECK_OK(vms_linear_slope(&s, x, y2, 4));
	CHECK(fabs(s - 0.2) < 1e-9);
	double same[] = {5, 5, 5};
	CHECK(vms_linear_slope(&s, same, y, 3) == VMS_EINVAL);
	CHECK(vms_linear_slope(&s, x, y, 1) == VMS_EINVAL);
}

TEST(full_report)
{
	int64_t t0 = 1795000000;   /* 2026-11-18T... */
	vms_report_snap s[6];
	for (int i = 0; i < 6; i++)
		s[i] = (vms_report_snap){.uuid = NULL, .name = "auto", .id = (uint64_t)i + 1,
		                         .time = t0 + (int64_t)i * DAY, .referenced = 1024 * MIB + i * 100 * MIB,
		                         .unique = 10 * MIB, .written = 100 * MIB, .chain_depth = 0};
	s[1].held = 1;
	s[1].hold_reason = "backup";
	s[2].manual = 1;
	s[3].chain_depth = 3;
	vms_policy p;
	vms_policy_init(&p);
	p.keep.n[VMS_KEEP_DAILY] = 2;
	vms_report_input in = {.vm = "vm1", .vm_uuid = "u-1", .now = t0 + 6 * DAY, .policy = &p,
	                       .snaps = s, .n = 6};
	vms_json *r = NULL;
	CHECK_OK(vms_report_vm(&r, &in));
	REQUIRE(r);
	CHECK(geti(r, "snapshot_count", NULL) == 6 && geti(r, "held_count", NULL) == 1);
	CHECK(geti(r, "manual_count", NULL) == 1);
	CHECK(geti(r, "oldest", "time") == t0 && geti(r, "newest", "age_seconds") == DAY);
	CHECK(geti(r, "age_seconds", "min") == DAY && geti(r, "age_seconds", "max") == 6 * DAY);
	CHECK(geti(r, "age_seconds", "median") == 3 * DAY + DAY / 2);
	CHECK(geti(r, "space", "referenced") == 6 * 1024 * MIB + 1500 * MIB);
	CHECK(geti(r, "space", "unique") == 60 * MIB && geti(r, "space", "written") == 600 * MIB);
	CHECK(fabs(getd(r, "growth", "referenced_bytes_per_day") - 100.0 * MIB) < 1.0);
	CHECK(fabs(getd(r, "growth", "written_bytes_per_day") - 100.0 * MIB) < 1.0);
	CHECK(geti(r, "growth", "samples") == 6);
	CHECK(geti(r, "chain_depth", "max") == 3 && geti(r, "chain_depth", "chained_snapshots") == 1);
	/* keep-daily=2 over the four counted snapshots (1 held, 1 manual):
	 * keeps days 6 and 5 (ids 6, 5); removes ids 1 and 4. */
	CHECK(geti(r, "prune", "keep") == 4 && geti(r, "prune", "remove") == 2);
	CHECK(geti(r, "prune", "unique_bytes_freed") == 20 * MIB);
	const vms_json *snaps = vms_json_object_get(r, "snapshots");
	REQUIRE(vms_json_array_len(snaps) == 6);
	const vms_json *first = vms_json_array_get(snaps, 0), *second = vms_json_array_get(snaps, 1);
	CHECK(!strcmp(vms_json_string(vms_json_object_get(first, "prune")), "remove"));
	CHECK(!strcmp(vms_json_string(vms_json_array_get(vms_json_object_get(first, "reasons"), 0)),
	              "beyond retention"));
	CHECK(!strcmp(vms_json_string(vms_json_array_get(vms_json_object_get(second, "reasons"), 0)),
	              "held: backup"));
	CHECK(geti(vms_json_array_get(snaps, 3), "chain_depth", NULL) == 3);
	CHECK(geti(first, "chain_depth", NULL) == 1);
	CHECK(vms_json_type_of(vms_json_object_get(first, "uuid")) == VMS_JSON_NULL);
	char *txt = NULL;
	CHECK_OK(vms_json_serialize(&txt, vms_json_object_get(r, "policy"), 0));
	CHECK(txt && !strcmp(txt, "{\"schedule\":\"none\",\"keep\":{\"daily\":2},\"name\":\"auto\","
	                          "\"enabled\":true,\"prune_manual\":false}"));
	free(txt);
	vms_json_free(r);
}

TEST(unknown_figures_and_no_policy)
{
	vms_report_snap s[] = {
		{.id = 2, .time = 2000000, .referenced = 100, .unique = -1, .written = -1, .chain_depth = 1},
		{.id = 1, .time = 1000000, .referenced = -1, .unique = -1, .written = -1, .chain_depth = 1},
	};
	vms_report_input in = {.now = 3000000, .snaps = s, .n = 2};
	vms_json *r = NULL;
	char *txt = NULL;
	CHECK_OK(vms_report_vm(&r, &in));
	REQUIRE(r);
	CHECK_OK(vms_json_serialize(&txt, r, 0));
	REQUIRE(txt);
	CHECK(strstr(txt, "\"space\":{\"referenced\":null,\"unique\":null,\"written\":null}"));
	CHECK(strstr(txt, "\"growth\":{\"referenced_bytes_per_day\":null,\"written_bytes_per_day\":null,"
	                  "\"samples\":1}"));
	CHECK(strstr(txt, "\"policy\":null,\"prune\":null"));
	CHECK(strstr(txt, "\"vm\":null,\"vm_uuid\":null,\"now_time\":3000000,"
	                  "\"now_time_iso\":\"1970-02-04T17:20:00Z\""));
	/* oldest first in the list */
	CHECK(geti(vms_json_array_get(vms_json_object_get(r, "snapshots"), 0), "id", NULL) == 1);
	CHECK(strstr(txt, "\"prune\":null,\"reasons\":null}"));
	free(txt);
	vms_json_free(r);

	in.n = 0;
	CHECK_OK(vms_report_vm(&r, &in));
	REQUIRE(r);
	CHECK_OK(vms_json_serialize(&txt, r, 0));
	CHECK(txt && strstr(txt, "\"snapshot_count\":0,\"held_count\":0,\"manual_count\":0,"
	                         "\"oldest\":null,\"newest\":null,\"age_seconds\":null,"
	                         "\"space\":{\"referenced\":0,\"unique\":0,\"written\":0}"));
	CHECK(txt && strstr(txt, "\"chain_depth\":{\"max\":0,\"chained_snapshots\":0}"));
	CHECK(txt && strstr(txt, "\"snapshots\":[]}"));
	free(txt);
	vms_json_free(r);

	in.n = 2;
	in.now = -1;
	CHECK(vms_report_vm(&r, &in) == VMS_EINVAL);
	in.now = 3000000;
	s[0].time = -5;
	CHECK(vms_report_vm(&r, &in) == VMS_EINVAL);
}

TEST_MAIN()
