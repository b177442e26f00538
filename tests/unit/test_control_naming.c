/*
 * Naming rules and time tags (the paper's section 3.2.3): user names,
 * the "<name>_YYYYMMDDTHH:MM:SS" full name, ISO times, the accepted time
 * syntaxes, and a randomized round trip (seed printed; VMS_SEED replays).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "vmsnap/error.h"
#include "vmsnap/naming.h"

TEST(user_names)
{
	char n64[VMS_NAME_MAX + 2];
	memset(n64, 'a', VMS_NAME_MAX);
	n64[VMS_NAME_MAX] = 0;
	CHECK(vms_name_check("snapshot_1", "snapshot") == 0);
	CHECK(vms_name_check("A_b_9", "vm") == 0);
	CHECK(vms_name_check("_", "vm") == 0);
	CHECK(vms_name_check(n64, "vm") == 0);
	n64[VMS_NAME_MAX] = 'a';
	n64[VMS_NAME_MAX + 1] = 0;
	CHECK(vms_name_check(n64, "vm") == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "longer than 64") != NULL);
	static const char *bad[] = {"", "a-b", "a.b", "../x", "a/b", "a b", "a@b", "a:b", "é", "a\tb",
	                            "..", ".", "x\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(vms_name_check(bad[i], "vm") == VMS_EINVAL);
		CHECK(strstr(vms_error_last(), "vm name") != NULL);
	}
	CHECK(vms_name_check(NULL, "vm") == VMS_EINVAL);
	CHECK(vms_name_check("latest", "snapshot") == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "reserved") != NULL);
	CHECK(vms_name_check("latest", "vm") == 0);
	CHECK(vms_name_check("Latest", "snapshot") == 0);
}

TEST(tags_and_iso)
{
	char tag[VMS_TAG_LEN + 1], iso[VMS_ISO_BUF];
	CHECK(vms_time_tag(tag, sizeof(tag), 0) == 0 && strcmp(tag, "19700101T00:00:00") == 0);
	CHECK(vms_time_tag(tag, sizeof(tag), INT64_C(1392778364)) == 0 &&
	      strcmp(tag, "20140219T02:52:44") == 0);
	CHECK(vms_time_tag(tag, sizeof(tag), VMS_TIME_MAX) == 0 && strcmp(tag, "99991231T23:59:59") == 0);
	CHECK(vms_time_tag(tag, sizeof(tag), VMS_TIME_MAX + 1) == VMS_EINVAL);
	CHECK(vms_time_tag(tag, sizeof(tag), -1) == VMS_EINVAL);
	CHECK(vms_time_tag(tag, VMS_TAG_LEN, 0) == VMS_EINVAL);
	CHECK(vms_time_iso(iso, sizeof(iso), INT64_C(1709164800)) == 0 &&
	      strcmp(iso, "2024-02-29T00:00:00Z") == 0);
	CHECK(vms_time_iso(iso, VMS_ISO_BUF - 1, 0) == VMS_EINVAL);
	CHECK(vms_days_from_civil(1970, 1, 1) == 0);
	CHECK(vms_days_from_civil(2000, 3, 1) == 11017);
	CHECK(vms_days_from_civil(1969, 12, 31) == -1);
}

TEST(full_names)
{
	char full[VMS_FULLNAME_MAX + 1], name[VMS_NAME_MAX + 1];
	int64_t t = 0;
	CHECK(vms_snapshot_fullname(full, sizeof(full), "snapshot_1", INT64_C(1392778364)) == 0);
	CHECK(strcmp(full, "snapshot_1_20140219T02:52:44") == 0);
	/* the tag is the last 18 characters, so user names may end in digits
	 * and underscores */
	CHECK(vms_snapshot_fullname_parse(name, &t, "snapshot_1_20140219T02:52:44") == 0);
	CHECK(strcmp(name, "snapshot_1") == 0 && t == INT64_C(1392778364));
	CHECK(vms_snapshot_fullname_parse(name, &t, "a_20140219_20140219T02:52:44") == 0);
	CHECK(strcmp(name, "a_20140219") == 0);
	CHECK(vms_snapshot_fullname_parse(name, &t, "__20000101T00:00:00") == 0 && strcmp(name, "_") == 0);
	static const char *bad[] = {
		"", "x", "_20140219T02:52:44", "snap20140219T02:52:44", "snap_20140219T02:52",
		"snap_20140230T02:52:44", "snap_20140219T24:00:00", "snap_20140219T02:60:00",
		"snap_20140219T02:52:60", "sn-p_20140219T02:52:44", "../x_20140219T02:52:44",
		"snap_2014021XT02:52:44", "snap_20140219 02:52:44", "latest_20140219T02:52:44",
		"snap_19691231T23:59:59", "snap_21000229T00:00:00",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (vms_snapshot_fullname_parse(name, &t, bad[i]) != VMS_EINVAL) {
			fprintf(stderr, "  accepted '%s'\n", bad[i]);
			test_failures_in_case++;
		}
	}
	CHECK(vms_snapshot_fullname_parse(name, &t, "x_20000229T00:00:00") == 0);   /* leap year */
	CHECK(vms_snapshot_fullname_parse(NULL, NULL, "x_20000229T00:00:00") == 0);
	CHECK(vms_snapshot_fullname(full, sizeof(full), "bad name", 0) == VMS_EINVAL);
	CHECK(vms_snapshot_fullname(full, 10, "abc", 0) == VMS_EINVAL);
}

TEST(time_parse)
{
	struct {
		const char *s;
		int64_t t;
	} good[] = {
		{"2026-11-23T10:00:00Z", INT64_C(1795428000)},
		{"2026-11-23T10:00:00", INT64_C(1795428000)},
		{"2026-11-23T10:00:00+00:00", INT64_C(1795428000)},
		{"2026-11-23T10:00", INT64_C(1795428000)},
		{"2026-11-23 10:00:05", INT64_C(1795428005)},
		{"2026-11-23", INT64_C(1795392000)},
		{"2026-11-23z", INT64_C(1795392000)},
		{"20261123T10:00:00", INT64_C(1795428000)},
		{"@0", 0},
		{"@1795428000", INT64_C(1795428000)},
		{"9999-12-31T23:59:59Z", VMS_TIME_MAX},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int64_t t = -1;
		int rc = vms_time_parse(&t, good[i].s);
		if (rc != 0 || t != good[i].t) {
			fprintf(stderr, "  '%s' -> rc %d t %lld: %s\n", good[i].s, rc, (long long)t, vms_error_last());
			test_failures_in_case++;
		}
	}
	static const char *bad[] = {
		"", "now", "2026-11-23T10:00:00+02:00", "2026-11-23T10:00-05:00", "2026-13-01", "2026-02-29",
		"1969-12-31", "2026-11-23T25:00", "2026-11-23T10", "2026-11-23T10:00:00ZZ", "@", "@-1",
		"@99999999999999", "@12x", "2026/11/23", "20261123T10:00", " 2026-11-23",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t t;
		if (vms_time_parse(&t, bad[i]) != VMS_EINVAL) {
			fprintf(stderr, "  accepted '%s'\n", bad[i]);
			test_failures_in_case++;
		}
	}
	int64_t t;
	CHECK(vms_time_parse(&t, "2026-11-23T10:00+02:00") == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "only UTC") != NULL);
	CHECK(vms_time_parse(&t, NULL) == VMS_EINVAL);
}

/* Every representation round-trips, and agrees with the C library's gmtime. */
TEST(random_round_trip)
{
	const char *env = getenv("VMS_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	fprintf(stderr, "  seed %llu (VMS_SEED to replay)\n", (unsigned long long)seed);
	uint64_t x = seed ? seed : 1;
	for (int i = 0; i < 20000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		int64_t t = (int64_t)(x % (uint64_t)(VMS_TIME_MAX + 1));
		char tag[VMS_TAG_LEN + 1], iso[VMS_ISO_BUF], full[VMS_FULLNAME_MAX + 1], name[VMS_NAME_MAX + 1];
		int64_t back = -1, back2 = -1, back3 = -1;
		CHECK(vms_time_tag(tag, sizeof(tag), t) == 0);
		CHECK(vms_time_iso(iso, sizeof(iso), t) == 0);
		CHECK(vms_time_parse(&back, tag) == 0 && back == t);
		CHECK(vms_time_parse(&back2, iso) == 0 && back2 == t);
		CHECK(vms_snapshot_fullname(full, sizeof(full), "n_1", t) == 0);
		CHECK(vms_snapshot_fullname_parse(name, &back3, full) == 0 && back3 == t && strcmp(name, "n_1") == 0);
		time_t tt = (time_t)t;
		struct tm tm;
		char ref[32];
		if (gmtime_r(&tt, &tm)) {
			strftime(ref, sizeof(ref), "%Y-%m-%dT%H:%M:%SZ", &tm);
			if (strcmp(ref, iso) != 0) {
				fprintf(stderr, "  %lld: %s vs gmtime %s\n", (long long)t, iso, ref);
				test_failures_in_case++;
				break;
			}
		}
		if (test_failures_in_case)
			break;
	}
}

TEST_MAIN()
