/*
 * test_control_caps.c - the adapter's capability checks: a verb that an
 * SR type's backend does not report is refused with NOTSUP naming the SR,
 * the type and the capability (the message the CLI prints), and caps are
 * listed by name (sr show).  Every registered type has the verbs checked
 * today, so a table without them stands in for a future type.
 */
#include <string.h>

#include "control/control_private.h"
#include "test.h"

static const vms_backend lacking = {
	.size = sizeof(vms_backend),
	.type = "tape",
	.caps = VMS_CAP_SNAPSHOT | VMS_CAP_CHECK | VMS_CAP_NAMED_LOCATION,
};

TEST(missing_verb_is_notsup_with_the_reason)
{
	CHECK(ctl_need_cap(&lacking, VMS_CAP_SNAPSHOT, "sr1") == 0);
	CHECK(ctl_need_cap(&lacking, VMS_CAP_CLONE, "sr1") == VMS_ENOTSUP);
	CHECK(strstr(vms_error_last(), "SR 'sr1' (type tape) does not support 'clone'") != NULL);
	CHECK(ctl_need_cap(&lacking, VMS_CAP_ROLLBACK_ANY, "sr1") == VMS_ENOTSUP);
	CHECK(strstr(vms_error_last(), "'rollback_any'") != NULL);
	CHECK(ctl_need_cap(&lacking, VMS_CAP_RESIZE, "sr1") == VMS_ENOTSUP);
	CHECK(strstr(vms_error_last(), "'resize'") != NULL);
	vms_error_clear();
}

TEST(caps_are_listed_by_name)
{
	vms_json *a = NULL;
	char *s = NULL;
	REQUIRE(ctl_caps_json(&a, VMS_CAP_SNAPSHOT | VMS_CAP_DEFER_DELETE | VMS_CAP_NAMED_LOCATION) == 0);
	REQUIRE(vms_json_serialize(&s, a, 0) == 0);
	/* NAMED_LOCATION is not a verb: not listed */
	CHECK(strcmp(s, "[\"snapshot\",\"defer_delete\"]") == 0);
	free(s);
	vms_json_free(a);
}

TEST(registered_types_report_what_the_docs_say)
{
	const vms_backend *z = vms_backend_find("zfs"), *r = vms_backend_find("reflink"),
	                  *n = vms_backend_find("native");
	REQUIRE(z && r && n);
	/* only zfs defers in the storage and names its locations itself */
	CHECK((z->caps & VMS_CAP_DEFER_DELETE) && z->snapshot_defer_delete);
	CHECK(!(r->caps & VMS_CAP_DEFER_DELETE) && !(n->caps & VMS_CAP_DEFER_DELETE));
	CHECK((z->caps & VMS_CAP_NAMED_LOCATION) && !(r->caps & VMS_CAP_NAMED_LOCATION) &&
	      !(n->caps & VMS_CAP_NAMED_LOCATION));
	/* a backend without the notion: no op, or a no-op that checks its arguments */
	CHECK(r->snapshot_defer_delete);
	if (r->snapshot_defer_delete) {
		const char *refs[] = {"vm1@s1/d1"};
		CHECK(r->snapshot_defer_delete(NULL, "vm1", "s1", refs, 1) == 0);
		CHECK(r->snapshot_defer_delete(NULL, "vm1", "../s1", refs, 1) == VMS_EINVAL);
		CHECK(r->snapshot_defer_delete(NULL, "vm2", "s1", refs, 1) == VMS_EINVAL);
		vms_error_clear();
	}
}

TEST_MAIN()
