/*
 * Schedule tests with a controllable clock: slots, missed runs (one
 * catch-up, never a burst), a clock that goes backwards, and calendar
 * slots checked against a brute-force search with libc's gmtime.
 * Randomized tests print their seed; VMS_SEED=<n> replays one.
 */
#include <inttypes.h>
#include <stdint.h>
#include <time.h>

#include "test.h"
#include "vmsnap/error.h"
#include "vmsnap/policy.h"

static int64_t T(const char *iso)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!strptime(iso, "%Y-%m-%dT%H:%M:%SZ", &tm))
		abort();
	return (int64_t)timegm(&tm);
}

static vms_policy sched(const char *s)
{
	vms_policy p;
	vms_policy_init(&p);
	if (vms_schedule_parse(&p.schedule, s) < 0) {
		fprintf(stderr, "bad schedule %s: %s\n", s, vms_error_last());
		abort();
	}
	return p;
}

static int next_is(const char *schedule, int64_t last, int64_t now, int64_t want, uint64_t want_missed)
{
	vms_policy p = sched(schedule);
	int64_t next = -1;
	uint64_t missed = 99;
	int rc = vms_policy_next_run(&next, &missed, &p, last, now);
	if (rc < 0 || next != want || missed != want_missed) {
		fprintf(stderr, "  %s last=%lld now=%lld: rc %d next %lld missed %llu, want %lld / %llu\n",
		        schedule, (long long)last, (long long)now, rc, (long long)next,
		        (unsigned long long)missed, (long long)want, (unsigned long long)want_missed);
		return 0;
	}
	return 1;
}

TEST(interval_aligned)
{
	CHECK(next_is("every 15m", T("2026-11-25T10:00:00Z"), T("2026-11-25T10:07:00Z"),
	              T("2026-11-25T10:15:00Z"), 0));
	/* On time: exactly at the slot it is due. */
	CHECK(next_is("every 15m", T("2026-11-25T10:00:00Z"), T("2026-11-25T10:15:00Z"),
	              T("2026-11-25T10:15:00Z"), 0));
	/* A run that happened late still stands for its slot. */
	CHECK(next_is("every 15m", T("2026-11-25T10:14:59Z"), T("2026-11-25T10:15:01Z"),
	              T("2026-11-25T10:15:00Z"), 0));
	CHECK(next_is("hourly", T("2026-11-25T10:00:00Z"), T("2026-11-25T10:00:00Z"),
	              T("2026-11-25T11:00:00Z"), 0));
}

TEST(missed_runs_collapse)
{
	/* Down from 10:00 to 15:30: 11..14 missed, one run for 15:00 now. */
	CHECK(next_is("hourly", T("2026-11-25T10:00:00Z"), T("2026-11-25T15:30:00Z"),
	              T("2026-11-25T15:00:00Z"), 4));
	/* And after that run (last_run = now) nothing is due until 16:00. */
	CHECK(next_is("hourly", T("2026-11-25T15:30:00Z"), T("2026-11-25T15:30:01Z"),
	              T("2026-11-25T16:00:00Z"), 0));
	/* Two years down with a 1-minute schedule: counted, not iterated. */
	CHECK(next_is("every 1m", T("2024-11-25T00:00:00Z"), T("2026-11-25T00:00:30Z"),
	              T("2026-11-25T00:00:00Z"), (uint64_t)(730 * 1440 - 1)));
	CHECK(next_is("monthly 1 04:00", T("2026-01-01T04:00:00Z"), T("2026-06-15T00:00:00Z"),
	              T("2026-06-01T04:00:00Z"), 4));
	CHECK(next_is("weekly sun 03:00", T("2026-11-01T03:00:00Z"), T("2026-11-25T00:00:00Z"),
	              T("2026-11-22T03:00:00Z"), 2));
}

TEST(late_run_folded_into_next_slot)
{
	/* 10:00 not run by 10:50 (last quarter of its hour): wait for 11:00,
	 * which stands for 10:00 too, instead of two runs ten minutes apart. */
	CHECK(next_is("hourly", T("2026-11-25T09:00:00Z"), T("2026-11-25T10:50:00Z"),
	              T("2026-11-25T11:00:00Z"), 1));
	/* At 10:45 exactly (three quarters) it still runs. */
	CHECK(next_is("hourly", T("2026-11-25T09:00:00Z"), T("2026-11-25T10:45:00Z"),
	              T("2026-11-25T10:00:00Z"), 0));
	/* Daily at 02:30, down two days, up at 22:00: 4.5 h to the next slot. */
	CHECK(next_is("daily 02:30", T("2026-11-23T02:30:00Z"), T("2026-11-25T22:00:00Z"),
	              T("2026-11-26T02:30:00Z"), 2));
	/* Up at 15:00 instead: 11.5 h to go, so catch up now. */
	CHECK(next_is("daily 02:30", T("2026-11-23T02:30:00Z"), T("2026-11-25T15:00:00Z"),
	              T("2026-11-25T02:30:00Z"), 1));
}

TEST(clock_backwards_and_first_run)
{
	/* Last run recorded at 12:00 by a clock that was ahead; now 10:05. */
	CHECK(next_is("hourly", T("2026-11-25T12:00:00Z"), T("2026-11-25T10:05:00Z"),
	              T("2026-11-25T11:00:00Z"), 0));
	CHECK(next_is("daily 02:30", T("2027-01-01T02:30:00Z"), T("2026-11-25T02:30:00Z"),
	              T("2026-11-26T02:30:00Z"), 0));
	/* Never ran: the first slot at or after now. */
	CHECK(next_is("daily 02:30", VMS_POLICY_NO_RUN, T("2026-11-25T04:00:00Z"),
	              T("2026-11-26T02:30:00Z"), 0));
	CHECK(next_is("daily 02:30", VMS_POLICY_NO_RUN, T("2026-11-25T02:30:00Z"),
	              T("2026-11-25T02:30:00Z"), 0));
	CHECK(next_is("hourly", VMS_POLICY_NO_RUN, 0, 0, 0));
}

TEST(calendar_slots)
{
	CHECK(next_is("daily 02:30", T("2026-11-23T02:30:00Z"), T("2026-11-24T02:29:59Z"),
	              T("2026-11-24T02:30:00Z"), 0));
	CHECK(next_is("weekly sun 03:00", T("2026-11-25T00:00:00Z"), T("2026-11-25T00:00:00Z"),
	              T("2026-11-29T03:00:00Z"), 0));
	CHECK(next_is("weekly mon 00:00", T("2026-11-29T23:59:59Z"), T("2026-11-29T23:59:59Z"),
	              T("2026-11-30T00:00:00Z"), 0));
	/* Day 31 clamps to the month's last day, leap years included. */
	CHECK(next_is("monthly 31 04:00", T("2026-02-01T00:00:00Z"), T("2026-02-01T00:00:00Z"),
	              T("2026-02-28T04:00:00Z"), 0));
	CHECK(next_is("monthly 31 04:00", T("2024-02-01T00:00:00Z"), T("2024-02-01T00:00:00Z"),
	              T("2024-02-29T04:00:00Z"), 0));
	CHECK(next_is("monthly 31 04:00", T("2026-04-30T05:00:00Z"), T("2026-04-30T05:00:00Z"),
	              T("2026-05-31T04:00:00Z"), 0));
	CHECK(next_is("monthly 1 04:00", T("2026-12-01T04:00:00Z"), T("2026-12-01T04:00:00Z"),
	              T("2027-01-01T04:00:00Z"), 0));
}

TEST(disabled_none_and_errors)
{
	vms_policy p = sched("hourly");
	int64_t next = 0;
	p.enabled = 0;
	CHECK_OK(vms_policy_next_run(&next, NULL, &p, VMS_POLICY_NO_RUN, 1000));
	CHECK(next == VMS_POLICY_NEVER);
	p = sched("none");
	CHECK_OK(vms_policy_next_run(&next, NULL, &p, 0, 1000));
	CHECK(next == VMS_POLICY_NEVER);
	p = sched("hourly");
	CHECK(vms_policy_next_run(&next, NULL, &p, 0, -1) == VMS_EINVAL);
	CHECK(vms_policy_next_run(&next, NULL, &p, -5, 100) == VMS_EINVAL);
	CHECK(vms_policy_next_run(&next, NULL, &p, 0, VMS_POLICY_TIME_MAX + 1) == VMS_EINVAL);
	p = sched("none");
	CHECK(vms_schedule_next_after(&next, &p.schedule, 100) == VMS_ENOTFOUND);
	p = sched("daily 02:30");
	CHECK(vms_schedule_prev_at_or_before(&next, &p.schedule, 100) == VMS_ENOTFOUND);
}

/* A daemon loop on a fake clock: it wakes every `tick` seconds while up,
 * runs when due, and is down during some windows.  Hours of schedule in
 * milliseconds of test. */
TEST(simulated_daemon)
{
	static const char *const schedules[] = {"every 15m", "hourly", "daily 02:30",
	                                        "weekly sun 03:00", "monthly 31 04:00"};
	/* The shortest distance between two slots of each schedule. */
	static const int64_t min_gap[] = {900, 3600, 86400, 7 * 86400, 28 * 86400};
	int64_t start = T("2026-01-01T00:00:00Z"), end = T("2027-01-01T00:00:00Z");
	for (size_t si = 0; si < 5; si++) {
		vms_policy p = sched(schedules[si]);
		int64_t last = VMS_POLICY_NO_RUN, prev_slot = -1;
		uint64_t runs = 0, catchups = 0, downs = 0;
		int up = 1, burst = 0, double_slot = 0;
		for (int64_t now = start; now < end; now += 300) {
			/* Down 3 days every 40 days, plus 7h50m every 9 days. */
			int64_t day = (now - start) / 86400;
			int was_up = up;
			up = !(day % 40 >= 37) && !((now - start) % (9 * 86400) < 7 * 3600 + 50 * 60 && day > 0);
			if (was_up && !up)
				downs++;
			if (!up)
				continue;
			int64_t next;
			uint64_t missed;
			CHECK_OK(vms_policy_next_run(&next, &missed, &p, last, now));
			if (next > now)
				continue;
			/* The run stands for slot `next`; never the same slot twice,
			 * and two runs at least a quarter period apart. */
			if (next == prev_slot)
				double_slot = 1;
			if (last != VMS_POLICY_NO_RUN && now - last < min_gap[si] / 4)
				burst = 1;
			prev_slot = next;
			runs++;
			catchups += missed > 0;
			last = now;
		}
		CHECK(!burst && !double_slot);
		CHECK(runs > 0 && catchups <= downs);
		if (si == 1)   /* hourly: about 8760 minus the hours spent down */
			CHECK(runs > 7500 && runs < 8760);
		if (si == 4)
			CHECK(runs >= 11 && runs <= 12);
	}
}

/* Brute force: the first whole minute after t matching a calendar slot. */
static int64_t brute_next(const vms_schedule *s, int64_t t)
{
	for (int64_t m = (t / 60 + 1) * 60;; m += 60) {
		time_t tt = (time_t)m;
		struct tm tm;
		gmtime_r(&tt, &tm);
		if ((unsigned)(tm.tm_hour * 60 + tm.tm_min) != s->minute_of_day)
			continue;
		if (s->kind == VMS_SCHEDULE_DAILY)
			return m;
		if (s->kind == VMS_SCHEDULE_WEEKLY && (unsigned)((tm.tm_wday + 6) % 7) == s->weekday)
			return m;
		if (s->kind == VMS_SCHEDULE_MONTHLY) {
			struct tm next = tm;
			next.tm_mday += 1;
			time_t nt = timegm(&next);
			struct tm n2;
			gmtime_r(&nt, &n2);
			int last_day = n2.tm_mon != tm.tm_mon;
			if ((unsigned)tm.tm_mday == s->mday || (last_day && (unsigned)tm.tm_mday < s->mday))
				return m;
		}
	}
}

TEST(random_calendar_vs_brute_force)
{
	const char *env = getenv("VMS_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
	fprintf(stderr, "  seed %" PRIu64 " (replay with VMS_SEED=%" PRIu64 ")\n", seed, seed);
	srand((unsigned)seed);
	for (int i = 0; i < 150; i++) {
		vms_schedule s;
		memset(&s, 0, sizeof(s));
		s.kind = (vms_schedule_kind)(VMS_SCHEDULE_DAILY + rand() % 3);
		s.minute_of_day = (unsigned)(rand() % 1440);
		s.weekday = (unsigned)(rand() % 7);
		s.mday = 1 + (unsigned)(rand() % 31);
		int64_t t = (int64_t)(((uint64_t)rand() << 20) ^ (uint64_t)rand()) % T("2100-01-01T00:00:00Z");
		if (rand() % 4 == 0)
			t -= t % 60;   /* exactly on a minute, sometimes on a slot */
		int64_t got, want = brute_next(&s, t), prev;
		CHECK_OK(vms_schedule_next_after(&got, &s, t));
		if (got != want) {
			fprintf(stderr, "  kind %d %u/%u/%u t=%lld: got %lld want %lld\n", (int)s.kind,
			        s.minute_of_day, s.weekday, s.mday, (long long)t, (long long)got,
			        (long long)want);
			CHECK(got == want);
			break;
		}
		if (vms_schedule_prev_at_or_before(&prev, &s, t) == 0) {
			int64_t again;
			CHECK(prev <= t);
			CHECK_OK(vms_schedule_next_after(&again, &s, prev));
			CHECK(again == got);
		}
		CHECK_OK(vms_schedule_prev_at_or_before(&prev, &s, got));
		CHECK(prev == got);
	}
}

TEST(iso_time)
{
	char buf[32];
	CHECK_OK(vms_policy_time_iso(buf, sizeof(buf), 0));
	CHECK(!strcmp(buf, "1970-01-01T00:00:00Z"));
	CHECK_OK(vms_policy_time_iso(buf, sizeof(buf), VMS_POLICY_TIME_MAX));
	CHECK(!strcmp(buf, "9999-12-31T23:59:59Z"));
	CHECK_OK(vms_policy_time_iso(buf, sizeof(buf), T("2024-02-29T12:34:56Z")));
	CHECK(!strcmp(buf, "2024-02-29T12:34:56Z"));
	CHECK(vms_policy_time_iso(buf, sizeof(buf), -1) == VMS_EINVAL);
	CHECK(vms_policy_time_iso(buf, 10, 0) == VMS_EINVAL);
}

TEST_MAIN()
