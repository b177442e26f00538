/* Policy spec: parsing, every error, canonical round trips. */
#include <inttypes.h>
#include <time.h>

#include "test.h"
#include "vmsnap/error.h"
#include "vmsnap/policy.h"

static int parse(vms_policy *p, const char *text)
{
	return vms_policy_parse(p, text, strlen(text));
}

static char *canon(const char *text)
{
	vms_policy p;
	char *out = NULL;
	if (parse(&p, text) < 0 || vms_policy_serialize(&out, &p) < 0) {
		fprintf(stderr, "  %s: %s\n", text, vms_error_last());
		return NULL;
	}
	return out;
}

static int canon_is(const char *text, const char *want)
{
	char *got = canon(text);
	int ok = got && !strcmp(got, want);
	if (!ok)
		fprintf(stderr, "  canon(%s)\n    = %s\n want %s\n", text, got ? got : "(error)", want);
	free(got);
	return ok;
}

/* Parsing fails with VMS_EINVAL and a message containing `needle`. */
static int refused(const char *text, const char *needle)
{
	vms_policy p;
	int rc = parse(&p, text);
	int ok = rc == VMS_EINVAL && strstr(vms_error_last(), needle);
	if (!ok)
		fprintf(stderr, "  %s: rc %d, message '%s', wanted '%s'\n", text, rc, vms_error_last(), needle);
	return ok;
}

TEST(full_example)
{
	vms_policy p;
	CHECK_OK(parse(&p, "{\"schedule\":\"daily 02:30\",\"keep\":{\"last\":3,\"hourly\":24,\"daily\":7,"
	                   "\"weekly\":4,\"monthly\":6,\"yearly\":1},\"name\":\"auto\",\"enabled\":true}"));
	CHECK(p.schedule.kind == VMS_SCHEDULE_DAILY && p.schedule.minute_of_day == 150);
	CHECK(p.keep.n[VMS_KEEP_LAST] == 3 && p.keep.n[VMS_KEEP_HOURLY] == 24);
	CHECK(p.keep.n[VMS_KEEP_DAILY] == 7 && p.keep.n[VMS_KEEP_WEEKLY] == 4);
	CHECK(p.keep.n[VMS_KEEP_MONTHLY] == 6 && p.keep.n[VMS_KEEP_YEARLY] == 1);
	CHECK(!strcmp(p.name, "auto") && p.enabled == 1 && p.prune_manual == 0);
}

TEST(defaults)
{
	CHECK(canon_is("{}", "{\"schedule\":\"none\",\"keep\":{\"all\":true},\"name\":\"auto\","
	                     "\"enabled\":true,\"prune_manual\":false}"));
	CHECK(canon_is("{\"keep\":{\"all\":true}}", "{\"schedule\":\"none\",\"keep\":{\"all\":true},"
	                     "\"name\":\"auto\",\"enabled\":true,\"prune_manual\":false}"));
}

TEST(schedule_forms)
{
	static const char *const cases[][2] = {
		{"\"hourly\"", "hourly"},
		{"\"every 1h\"", "hourly"},
		{"{\"interval\":3600}", "hourly"},
		{"{\"interval\":900}", "every 15m"},
		{"\"every 15m\"", "every 15m"},
		{"\"every 900s\"", "every 15m"},
		{"\"every 90s\"", "every 90s"},
		{"\"every 120m\"", "every 2h"},
		{"\"every 2d\"", "every 2d"},
		{"\"daily\"", "daily 00:00"},
		{"\"daily 2:30\"", "daily 02:30"},
		{"\"daily  02:30 \"", "daily 02:30"},
		{"\"weekly\"", "weekly mon 00:00"},
		{"\"weekly sun 03:00\"", "weekly sun 03:00"},
		{"\"weekly sat\"", "weekly sat 00:00"},
		{"\"monthly\"", "monthly 1 00:00"},
		{"\"monthly 1 04:00\"", "monthly 1 04:00"},
		{"\"monthly 31 23:59\"", "monthly 31 23:59"},
		{"\"none\"", "none"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[128], want[256];
		snprintf(in, sizeof(in), "{\"schedule\":%s,\"keep\":{\"daily\":7}}", cases[i][0]);
		snprintf(want, sizeof(want), "{\"schedule\":\"%s\",\"keep\":{\"daily\":7},\"name\":\"auto\","
		         "\"enabled\":true,\"prune_manual\":false}", cases[i][1]);
		CHECK(canon_is(in, want));
	}
}

TEST(bad_fields)
{
	CHECK(refused("[]", "must be a JSON object"));
	CHECK(refused("{\"schedul\":\"hourly\"}", "unknown member 'schedul'"));
	CHECK(refused("{\"schedule\":\"hourly\",", "JSON"));
	CHECK(refused("{\"schedule\":\"hourly\",\"schedule\":\"daily\"}", "duplicate"));
	CHECK(refused("{\"schedule\":\"twice a day\"}", "bad schedule 'twice a day'"));
	CHECK(refused("{\"schedule\":\"\"}", "bad schedule ''"));
	CHECK(refused("{\"schedule\":\"every 15\"}", "needs a unit"));
	CHECK(refused("{\"schedule\":\"every 15x\"}", "needs a unit"));
	CHECK(refused("{\"schedule\":\"every 30s\"}", "must be 60 seconds"));
	CHECK(refused("{\"schedule\":\"every 0m\"}", "must be 60 seconds"));
	CHECK(refused("{\"schedule\":\"every 367d\"}", "366 days"));
	CHECK(refused("{\"schedule\":\"every -5m\"}", "bad schedule"));
	CHECK(refused("{\"schedule\":\"daily 24:00\"}", "bad time '24:00'"));
	CHECK(refused("{\"schedule\":\"daily 02:60\"}", "bad time"));
	CHECK(refused("{\"schedule\":\"daily 2:3\"}", "bad time"));
	CHECK(refused("{\"schedule\":\"daily 02:30 extra\"}", "bad schedule"));
	CHECK(refused("{\"schedule\":\"weekly sunday 03:00\"}", "bad weekday 'sunday'"));
	CHECK(refused("{\"schedule\":\"monthly 0 04:00\"}", "bad day of month '0'"));
	CHECK(refused("{\"schedule\":\"monthly 32\"}", "bad day of month"));
	CHECK(refused("{\"schedule\":\"Hourly\"}", "bad schedule"));
	CHECK(refused("{\"schedule\":{\"interval\":30}}", "must be 60 seconds"));
	CHECK(refused("{\"schedule\":{\"interval\":\"15m\"}}", "integer number of seconds"));
	CHECK(refused("{\"schedule\":{\"interval\":90.5}}", "integer number of seconds"));
	CHECK(refused("{\"schedule\":{\"every\":900}}", "unknown member schedule.every"));
	CHECK(refused("{\"schedule\":{}}", "integer number of seconds"));
	CHECK(refused("{\"schedule\":15}", "must be a string or"));
	CHECK(refused("{\"keep\":7}", "keep must be an object"));
	CHECK(refused("{\"keep\":{\"dayly\":7}}", "unknown member keep.dayly"));
	CHECK(refused("{\"keep\":{\"daily\":-1}}", "keep.daily must be an integer 0..1000000, not -1"));
	CHECK(refused("{\"keep\":{\"daily\":1000001}}", "not 1000001"));
	CHECK(refused("{\"keep\":{\"daily\":1.5}}", "not 1.5"));
	CHECK(refused("{\"keep\":{\"daily\":\"7\"}}", "not \"7\""));
	CHECK(refused("{\"keep\":{\"all\":false}}", "keep.all may only be true"));
	CHECK(refused("{\"keep\":{\"all\":true,\"daily\":3}}", "keep.all conflicts with keep.daily"));
	CHECK(refused("{\"name\":\"\"}", "1..64 characters"));
	CHECK(refused("{\"name\":\"a-b\"}", "only letters, digits"));
	CHECK(refused("{\"name\":\"latest\"}", "reserved"));
	CHECK(refused("{\"name\":7}", "name must be a string"));
	CHECK(refused("{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
	              "1..64"));
	CHECK(refused("{\"enabled\":1}", "enabled must be true or false"));
	CHECK(refused("{\"prune_manual\":\"yes\"}", "prune_manual must be true or false"));
	CHECK(refused("{\"schedule\":\"daily\\u0000 02:00\"}", "NUL"));
}

TEST(zero_counts_dropped)
{
	CHECK(canon_is("{\"keep\":{\"yearly\":1,\"last\":0,\"daily\":2},\"name\":\"nightly\","
	               "\"enabled\":false,\"prune_manual\":true}",
	               "{\"schedule\":\"none\",\"keep\":{\"daily\":2,\"yearly\":1},\"name\":\"nightly\","
	               "\"enabled\":false,\"prune_manual\":true}"));
	CHECK(canon_is("{\"keep\":{\"daily\":0}}", "{\"schedule\":\"none\",\"keep\":{\"all\":true},"
	               "\"name\":\"auto\",\"enabled\":true,\"prune_manual\":false}"));
}

TEST(round_trip_is_fixed_point)
{
	const char *inputs[] = {
		"{\"schedule\":\"weekly sun 03:00\",\"keep\":{\"weekly\":4,\"last\":2}}",
		"{\"prune_manual\":true,\"schedule\":{\"interval\":86400},\"keep\":{\"hourly\":24}}",
		"{\"schedule\":\"monthly 31 04:05\",\"name\":\"m\",\"keep\":{\"monthly\":6,\"yearly\":3}}",
	};
	for (size_t i = 0; i < 3; i++) {
		char *a = canon(inputs[i]);
		REQUIRE(a);
		char *b = canon(a);
		CHECK(b && !strcmp(a, b));
		vms_policy p1, p2;
		CHECK_OK(parse(&p1, inputs[i]));
		CHECK_OK(parse(&p2, a));
		CHECK(!memcmp(&p1.keep, &p2.keep, sizeof(p1.keep)));
		CHECK(p1.schedule.kind == p2.schedule.kind && p1.schedule.interval == p2.schedule.interval &&
		      p1.schedule.minute_of_day == p2.schedule.minute_of_day &&
		      p1.schedule.weekday == p2.schedule.weekday && p1.schedule.mday == p2.schedule.mday);
		free(a);
		free(b);
	}
}

TEST(validate_c_built)
{
	vms_policy p;
	vms_policy_init(&p);
	CHECK_OK(vms_policy_validate(&p));
	p.keep.n[VMS_KEEP_DAILY] = VMS_POLICY_KEEP_MAX + 1;
	CHECK(vms_policy_validate(&p) == VMS_EINVAL);
	vms_policy_init(&p);
	p.schedule.kind = VMS_SCHEDULE_INTERVAL;
	p.schedule.interval = 59;
	CHECK(vms_policy_validate(&p) == VMS_EINVAL);
	p.schedule.kind = VMS_SCHEDULE_WEEKLY;
	p.schedule.weekday = 7;
	CHECK(vms_policy_validate(&p) == VMS_EINVAL);
	p.schedule.kind = (vms_schedule_kind)42;
	CHECK(vms_policy_validate(&p) == VMS_EINVAL);
	vms_policy_init(&p);
	memset(p.name, 'a', sizeof(p.name));
	CHECK(vms_policy_validate(&p) == VMS_EINVAL);
	char *txt = NULL;
	CHECK(vms_policy_serialize(&txt, &p) == VMS_EINVAL && txt == NULL);
	CHECK(!strcmp(vms_keep_class_name(VMS_KEEP_WEEKLY), "keep-weekly"));
	CHECK(!strcmp(vms_keep_class_key(VMS_KEEP_YEARLY), "yearly"));
}

/* Mutated specs (bytes replaced, dropped, duplicated): parsing never
 * crashes; it fails with INVALID and a "policy" message, or it succeeds
 * and then the canonical text is a fixed point. */
TEST(random_mutations)
{
	const char *env = getenv("VMS_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	fprintf(stderr, "  seed %" PRIu64 " (replay with VMS_SEED=%" PRIu64 ")\n", seed, seed);
	srand((unsigned)seed);
	const char *base[] = {
		"{\"schedule\":\"weekly sun 03:00\",\"keep\":{\"last\":3,\"daily\":7},\"name\":\"auto\"}",
		"{\"schedule\":{\"interval\":900},\"keep\":{\"hourly\":24},\"enabled\":false}",
		"{\"schedule\":\"monthly 31 04:00\",\"keep\":{\"all\":true},\"prune_manual\":true}",
	};
	const char alphabet[] = "{}[]\":,0123456789 -.aehlmnorstuwy\\";
	int accepted = 0;
	for (int round = 0; round < 20000; round++) {
		char buf[256];
		const char *b = base[rand() % 3];
		size_t len = strlen(b);
		memcpy(buf, b, len);
		for (int k = 1 + rand() % 3; k > 0; k--) {
			size_t at = (size_t)rand() % len;
			switch (rand() % 3) {
			case 0:
				buf[at] = alphabet[rand() % (sizeof(alphabet) - 1)];
				break;
			case 1:
				memmove(buf + at, buf + at + 1, len - at - 1);
				len--;
				break;
			default:
				if (len + 1 < sizeof(buf)) {
					memmove(buf + at + 1, buf + at, len - at);
					len++;
				}
			}
		}
		vms_policy p;
		int rc = vms_policy_parse(&p, buf, len);
		if (rc < 0) {
			if (rc != VMS_EINVAL || strncmp(vms_error_last(), "policy", 6)) {
				fprintf(stderr, "  %.*s: rc %d %s\n", (int)len, buf, rc, vms_error_last());
				CHECK(0);
				break;
			}
			continue;
		}
		accepted++;
		char *a = NULL, *c = NULL;
		vms_policy q;
		CHECK_OK(vms_policy_serialize(&a, &p));
		REQUIRE(a);
		CHECK_OK(vms_policy_parse(&q, a, strlen(a)));
		CHECK_OK(vms_policy_serialize(&c, &q));
		CHECK(c && !strcmp(a, c));
		free(a);
		free(c);
	}
	fprintf(stderr, "  %d of 20000 mutants accepted\n", accepted);
	CHECK(accepted > 0);
}

TEST_MAIN()
