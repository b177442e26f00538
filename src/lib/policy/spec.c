/*
 * Policy specs: strict parsing of the JSON form, validation, and the one
 * canonical serialisation the catalog stores.
 *
 * Every error names the member it is about ("policy: keep.daily ...") and
 * says what would be accepted; unknown members are refused so that a typo
 * ("keep":{"dayly":7}) never silently turns into "keep everything".
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/policy.h"

static const char *const class_keys[VMS_KEEP_CLASSES] = {"last", "hourly", "daily",
                                                         "weekly", "monthly", "yearly"};
static const char *const class_names[VMS_KEEP_CLASSES] = {
	"keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly"};
static const char *const weekdays[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

const char *vms_keep_class_key(int cls)
{
	return cls >= 0 && cls < VMS_KEEP_CLASSES ? class_keys[cls] : "?";
}

const char *vms_keep_class_name(int cls)
{
	return cls >= 0 && cls < VMS_KEEP_CLASSES ? class_names[cls] : "?";
}

void vms_policy_init(vms_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->schedule.kind = VMS_SCHEDULE_NONE;
	strcpy(p->name, "auto");
	p->enabled = 1;
	p->prune_manual = 0;
}

/* ---- schedule strings --------------------------------------------------- */

/* Split s on spaces into at most 4 tokens of at most 15 characters. */
static int tokenize(char tok[4][16], const char *s)
{
	int n = 0;
	while (*s) {
		while (*s == ' ')
			s++;
		if (!*s)
			break;
		if (n == 4)
			return -1;
		size_t len = 0;
		while (s[len] && s[len] != ' ')
			len++;
		if (len >= 16)
			return -1;
		memcpy(tok[n], s, len);
		tok[n][len] = '\0';
		n++;
		s += len;
	}
	return n;
}

/* Parse a decimal integer of 1..9 digits; -1 on anything else. */
static int64_t parse_uint(const char *s, size_t len)
{
	if (len == 0 || len > 9)
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int parse_hhmm(unsigned *out, const char *s, const char *sched)
{
	const char *colon = strchr(s, ':');
	if (colon && strlen(colon + 1) == 2) {
		int64_t h = parse_uint(s, (size_t)(colon - s));
		int64_t m = parse_uint(colon + 1, 2);
		if (colon - s <= 2 && h >= 0 && h <= 23 && m >= 0 && m <= 59) {
			*out = (unsigned)(h * 60 + m);
			return 0;
		}
	}
	return vms_error_set(VMS_EINVAL, "policy: schedule '%s': bad time '%s' (expected HH:MM, "
	                     "00:00..23:59, UTC)", sched, s);
}

static int bad_schedule(const char *s)
{
	return vms_error_set(VMS_EINVAL, "policy: bad schedule '%s' (expected \"hourly\", \"every 15m\", "
	                     "\"daily 02:30\", \"weekly sun 03:00\", \"monthly 1 04:00\", "
	                     "{\"interval\":900} or \"none\")", s);
}

static int check_interval(int64_t secs, const char *what)
{
	if (secs < VMS_POLICY_INTERVAL_MIN || secs > VMS_POLICY_INTERVAL_MAX)
		return vms_error_set(VMS_EINVAL, "policy: schedule %s: the interval must be %d seconds "
		                     "to 366 days", what, VMS_POLICY_INTERVAL_MIN);
	return 0;
}

int vms_schedule_parse(vms_schedule *out, const char *s)
{
	char tok[4][16];
	vms_schedule sc;
	int rc, n = tokenize(tok, s);

	memset(&sc, 0, sizeof(sc));
	if (n <= 0)
		return bad_schedule(s);
	if (!strcmp(tok[0], "none") && n == 1) {
		sc.kind = VMS_SCHEDULE_NONE;
	} else if (!strcmp(tok[0], "hourly") && n == 1) {
		sc.kind = VMS_SCHEDULE_INTERVAL;
		sc.interval = 3600;
	} else if (!strcmp(tok[0], "every") && n == 2) {
		size_t len = strlen(tok[1]);
		int64_t mult;
		switch (len ? tok[1][len - 1] : 0) {
		case 's': mult = 1; break;
		case 'm': mult = 60; break;
		case 'h': mult = 3600; break;
		case 'd': mult = 86400; break;
		default:
			return vms_error_set(VMS_EINVAL, "policy: schedule '%s': the interval needs a unit "
			                     "s, m, h or d (\"every 15m\")", s);
		}
		int64_t v = parse_uint(tok[1], len - 1);
		if (v < 0)
			return bad_schedule(s);
		if ((rc = check_interval(v * mult, s)) < 0)
			return rc;
		sc.kind = VMS_SCHEDULE_INTERVAL;
		sc.interval = v * mult;
	} else if (!strcmp(tok[0], "daily") && n <= 2) {
		sc.kind = VMS_SCHEDULE_DAILY;
		if (n == 2 && (rc = parse_hhmm(&sc.minute_of_day, tok[1], s)) < 0)
			return rc;
	} else if (!strcmp(tok[0], "weekly") && n <= 3) {
		sc.kind = VMS_SCHEDULE_WEEKLY;
		if (n >= 2) {
			unsigned i;
			for (i = 0; i < 7 && strcmp(tok[1], weekdays[i]); i++)
				;
			if (i == 7)
				return vms_error_set(VMS_EINVAL, "policy: schedule '%s': bad weekday '%s' "
				                     "(mon, tue, wed, thu, fri, sat, sun)", s, tok[1]);
			sc.weekday = i;
		}
		if (n == 3 && (rc = parse_hhmm(&sc.minute_of_day, tok[2], s)) < 0)
			return rc;
	} else if (!strcmp(tok[0], "monthly") && n <= 3) {
		sc.kind = VMS_SCHEDULE_MONTHLY;
		sc.mday = 1;
		if (n >= 2) {
			int64_t d = parse_uint(tok[1], strlen(tok[1]));
			if (d < 1 || d > 31)
				return vms_error_set(VMS_EINVAL, "policy: schedule '%s': bad day of month '%s' "
				                     "(1..31; a day past the month's end means its last day)",
				                     s, tok[1]);
			sc.mday = (unsigned)d;
		}
		if (n == 3 && (rc = parse_hhmm(&sc.minute_of_day, tok[2], s)) < 0)
			return rc;
	} else {
		return bad_schedule(s);
	}
	*out = sc;
	return 0;
}

int vms_schedule_format(char *out, size_t cap, const vms_schedule *s)
{
	int len;
	unsigned h = s->minute_of_day / 60, m = s->minute_of_day % 60;

	switch (s->kind) {
	case VMS_SCHEDULE_NONE:
		len = snprintf(out, cap, "none");
		break;
	case VMS_SCHEDULE_INTERVAL:
		if (s->interval == 3600)
			len = snprintf(out, cap, "hourly");
		else if (s->interval % 86400 == 0)
			len = snprintf(out, cap, "every %lldd", (long long)(s->interval / 86400));
		else if (s->interval % 3600 == 0)
			len = snprintf(out, cap, "every %lldh", (long long)(s->interval / 3600));
		else if (s->interval % 60 == 0)
			len = snprintf(out, cap, "every %lldm", (long long)(s->interval / 60));
		else
			len = snprintf(out, cap, "every %llds", (long long)s->interval);
		break;
	case VMS_SCHEDULE_DAILY:
		len = snprintf(out, cap, "daily %02u:%02u", h, m);
		break;
	case VMS_SCHEDULE_WEEKLY:
		len = snprintf(out, cap, "weekly %s %02u:%02u", weekdays[s->weekday % 7], h, m);
		break;
	case VMS_SCHEDULE_MONTHLY:
		len = snprintf(out, cap, "monthly %u %02u:%02u", s->mday, h, m);
		break;
	default:
		return vms_error_set(VMS_EINVAL, "policy: unknown schedule kind %d", (int)s->kind);
	}
	if (len < 0 || (size_t)len >= cap)
		return vms_error_set(VMS_EINVAL, "policy: schedule buffer too small");
	return 0;
}

/* ---- validation ---------------------------------------------------------- */

static int check_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > VMS_POLICY_NAME_MAX)
		return vms_error_set(VMS_EINVAL, "policy: name must be 1..%d characters",
		                     VMS_POLICY_NAME_MAX);
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '_')
			return vms_error_set(VMS_EINVAL, "policy: name '%s' may hold only letters, digits "
			                     "and '_'", name);
	if (!strcmp(name, "latest"))
		return vms_error_set(VMS_EINVAL, "policy: name 'latest' is reserved");
	return 0;
}

int vms_policy_validate(const vms_policy *p)
{
	int rc;
	const vms_schedule *s = &p->schedule;

	switch (s->kind) {
	case VMS_SCHEDULE_NONE:
		break;
	case VMS_SCHEDULE_INTERVAL:
		if ((rc = check_interval(s->interval, "interval")) < 0)
			return rc;
		break;
	case VMS_SCHEDULE_WEEKLY:
		if (s->weekday > 6)
			return vms_error_set(VMS_EINVAL, "policy: weekday %u out of range 0..6", s->weekday);
		/* fall through */
	case VMS_SCHEDULE_DAILY:
	case VMS_SCHEDULE_MONTHLY:
		if (s->minute_of_day >= 1440)
			return vms_error_set(VMS_EINVAL, "policy: time of day %u out of range",
			                     s->minute_of_day);
		if (s->kind == VMS_SCHEDULE_MONTHLY && (s->mday < 1 || s->mday > 31))
			return vms_error_set(VMS_EINVAL, "policy: day of month %u out of range 1..31",
			                     s->mday);
		break;
	default:
		return vms_error_set(VMS_EINVAL, "policy: unknown schedule kind %d", (int)s->kind);
	}
	for (int c = 0; c < VMS_KEEP_CLASSES; c++)
		if (p->keep.n[c] > VMS_POLICY_KEEP_MAX)
			return vms_error_set(VMS_EINVAL, "policy: keep.%s must be 0..%u", class_keys[c],
			                     VMS_POLICY_KEEP_MAX);
	if (memchr(p->name, '\0', sizeof(p->name)) == NULL)
		return vms_error_set(VMS_EINVAL, "policy: name is not terminated");
	return check_name(p->name);
}

/* ---- JSON ------------------------------------------------------------------ */

static int parse_schedule_member(vms_schedule *out, const vms_json *v)
{
	int64_t secs;
	int rc;

	switch (vms_json_type_of(v)) {
	case VMS_JSON_STRING:
		if (strlen(vms_json_string(v)) != vms_json_string_len(v))
			return vms_error_set(VMS_EINVAL, "policy: schedule contains a NUL character");
		return vms_schedule_parse(out, vms_json_string(v));
	case VMS_JSON_OBJECT:
		for (size_t i = 0; i < vms_json_object_len(v); i++)
			if (strcmp(vms_json_object_key_at(v, i), "interval"))
				return vms_error_set(VMS_EINVAL, "policy: unknown member schedule.%s (a schedule "
				                     "object holds only \"interval\")",
				                     vms_json_object_key_at(v, i));
		if (!vms_json_is_int(vms_json_object_get(v, "interval"), &secs))
			return vms_error_set(VMS_EINVAL, "policy: schedule.interval must be an integer "
			                     "number of seconds");
		if ((rc = check_interval(secs, "interval")) < 0)
			return rc;
		memset(out, 0, sizeof(*out));
		out->kind = VMS_SCHEDULE_INTERVAL;
		out->interval = secs;
		return 0;
	default:
		return vms_error_set(VMS_EINVAL, "policy: schedule must be a string or {\"interval\":N}, "
		                     "not %s", vms_json_type_name(vms_json_type_of(v)));
	}
}

static int parse_keep_member(vms_policy_keep *out, const vms_json *v)
{
	vms_policy_keep k;
	int all = 0;

	memset(&k, 0, sizeof(k));
	if (vms_json_type_of(v) != VMS_JSON_OBJECT)
		return vms_error_set(VMS_EINVAL, "policy: keep must be an object such as "
		                     "{\"daily\":7,\"weekly\":4}, not %s",
		                     vms_json_type_name(vms_json_type_of(v)));
	for (size_t i = 0; i < vms_json_object_len(v); i++) {
		const char *key = vms_json_object_key_at(v, i);
		const vms_json *m = vms_json_object_value_at(v, i);
		int64_t n;
		int c;

		if (!strcmp(key, "all")) {
			if (vms_json_type_of(m) != VMS_JSON_BOOL || !vms_json_bool(m))
				return vms_error_set(VMS_EINVAL, "policy: keep.all may only be true "
				                     "(leave it out and set classes to prune)");
			all = 1;
			continue;
		}
		for (c = 0; c < VMS_KEEP_CLASSES && strcmp(key, class_keys[c]); c++)
			;
		if (c == VMS_KEEP_CLASSES)
			return vms_error_set(VMS_EINVAL, "policy: unknown member keep.%s (known: all, last, "
			                     "hourly, daily, weekly, monthly, yearly)", key);
		if (!vms_json_is_int(m, &n) || n < 0 || n > (int64_t)VMS_POLICY_KEEP_MAX) {
			char *txt = NULL;
			vms_json_serialize(&txt, m, 0);
			vms_error_set(VMS_EINVAL, "policy: keep.%s must be an integer 0..%u, not %.40s", key,
			              VMS_POLICY_KEEP_MAX, txt ? txt : "?");
			free(txt);
			return VMS_EINVAL;
		}
		k.n[c] = (uint32_t)n;
	}
	if (all) {
		for (int c = 0; c < VMS_KEEP_CLASSES; c++)
			if (k.n[c])
				return vms_error_set(VMS_EINVAL, "policy: keep.all conflicts with keep.%s",
				                     class_keys[c]);
	}
	*out = k;
	return 0;
}

int vms_policy_from_json(vms_policy *out, const vms_json *obj)
{
	vms_policy p;
	int rc;

	vms_policy_init(&p);
	if (vms_json_type_of(obj) != VMS_JSON_OBJECT)
		return vms_error_set(VMS_EINVAL, "policy: must be a JSON object, not %s",
		                     vms_json_type_name(vms_json_type_of(obj)));
	for (size_t i = 0; i < vms_json_object_len(obj); i++) {
		const char *key = vms_json_object_key_at(obj, i);
		const vms_json *v = vms_json_object_value_at(obj, i);

		if (!strcmp(key, "schedule")) {
			if ((rc = parse_schedule_member(&p.schedule, v)) < 0)
				return rc;
		} else if (!strcmp(key, "keep")) {
			if ((rc = parse_keep_member(&p.keep, v)) < 0)
				return rc;
		} else if (!strcmp(key, "name")) {
			const char *s = vms_json_string(v);
			if (!s || strlen(s) != vms_json_string_len(v))
				return vms_error_set(VMS_EINVAL, "policy: name must be a string");
			if ((rc = check_name(s)) < 0)
				return rc;
			strcpy(p.name, s);
		} else if (!strcmp(key, "enabled") || !strcmp(key, "prune_manual")) {
			if (vms_json_type_of(v) != VMS_JSON_BOOL)
				return vms_error_set(VMS_EINVAL, "policy: %s must be true or false", key);
			*(key[0] == 'e' ? &p.enabled : &p.prune_manual) = vms_json_bool(v);
		} else {
			return vms_error_set(VMS_EINVAL, "policy: unknown member '%.64s' (known: schedule, "
			                     "keep, name, enabled, prune_manual)", key);
		}
	}
	*out = p;
	return 0;
}

int vms_policy_parse(vms_policy *out, const char *text, size_t len)
{
	vms_json *obj = NULL;
	vms_json_limits lim = {.max_bytes = 64 * 1024, .max_depth = 8, .max_members = 64};
	int rc;

	if ((rc = vms_json_parse_ex(&obj, text, len, &lim)) < 0)
		return vms_error_wrap(rc, "policy");
	rc = vms_policy_from_json(out, obj);
	vms_json_free(obj);
	return rc;
}

int vms_policy_to_json(vms_json **out, const vms_policy *p)
{
	vms_json *o = NULL, *keep = NULL;
	char sched[48];
	int rc, any = 0;

	if ((rc = vms_policy_validate(p)) < 0)
		return rc;
	if ((rc = vms_schedule_format(sched, sizeof(sched), &p->schedule)) < 0)
		return rc;
	if (!(o = vms_json_new_object()) || !(keep = vms_json_new_object())) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	for (int c = 0; c < VMS_KEEP_CLASSES; c++) {
		if (!p->keep.n[c])
			continue;
		any = 1;
		if ((rc = vms_json_object_set_int(keep, class_keys[c], p->keep.n[c])) < 0)
			goto done;
	}
	if (!any && (rc = vms_json_object_set_bool(keep, "all", 1)) < 0)
		goto done;
	if ((rc = vms_json_object_set_string(o, "schedule", sched)) < 0)
		goto done;
	rc = vms_json_object_set(o, "keep", keep);
	keep = NULL;
	if (rc < 0 || (rc = vms_json_object_set_string(o, "name", p->name)) < 0 ||
	    (rc = vms_json_object_set_bool(o, "enabled", p->enabled != 0)) < 0 ||
	    (rc = vms_json_object_set_bool(o, "prune_manual", p->prune_manual != 0)) < 0)
		goto done;
	*out = o;
	o = NULL;
done:
	vms_json_free(keep);
	vms_json_free(o);
	return rc;
}

int vms_policy_serialize(char **out, const vms_policy *p)
{
	vms_json *o = NULL;
	int rc = vms_policy_to_json(&o, p);
	if (rc == 0)
		rc = vms_json_serialize(out, o, 0);
	vms_json_free(o);
	return rc;
}
