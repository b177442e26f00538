/*
 * misc.c - vmsnap check, stats, export list, version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- check ------------------------------------------------------------------------- */

/* Print a report (string or any JSON) indented under its heading. */
static void print_report(const vms_json *report)
{
	char *text = NULL;
	if (!report || vms_json_type_of(report) == VMS_JSON_NULL)
		return;
	if (vms_json_type_of(report) == VMS_JSON_STRING) {
		const char *s = vms_json_string(report);
		if (!*s)
			return;
		printf("    ");
		for (; *s; s++) {
			putchar(*s);
			if (*s == '\n' && s[1])
				printf("    ");
		}
		if (s[-1] != '\n')
			putchar('\n');
		return;
	}
	if (vms_json_serialize(&text, report, VMS_JSON_PRETTY) == 0) {
		printf("    ");
		for (const char *s = text; *s; s++) {
			putchar(*s);
			if (*s == '\n')
				printf("    ");
		}
		putchar('\n');
	}
	free(text);
}

static void print_items(const char *title, const vms_json *list)
{
	size_t n = vms_json_array_len(list);
	printf("%s: %s\n", title, n ? "" : "none");
	for (size_t i = 0; i < n; i++) {
		const vms_json *o = vms_json_array_get(list, i);
		char *text = NULL;
		if (vms_json_type_of(o) == VMS_JSON_STRING)
			printf("  %s\n", vms_json_string(o));
		else if (vms_json_serialize(&text, o, 0) == 0)
			printf("  %s\n", text);
		free(text);
	}
}

static int check_ok(const vms_json *r)
{
	return vms_json_bool(vms_json_object_get(r, "ok"));
}

/* One line per entry of a list of objects carrying "message". */
static size_t print_messages(const char *indent, const vms_json *list, const char *prefix)
{
	size_t n = vms_json_array_len(list);
	for (size_t i = 0; i < n; i++) {
		const char *m = cli_json_str(vms_json_array_get(list, i), "message");
		if (m)
			printf("%s%s%s\n", indent, prefix ? prefix : "", m);
	}
	return n;
}

static size_t count_problems(const vms_json *s)
{
	const vms_json *orph = vms_json_object_get(s, "orphans");
	size_t n = vms_json_array_len(vms_json_object_get(s, "missing"));
	for (size_t i = 0; i < vms_json_array_len(orph); i++)
		n += vms_json_bool(vms_json_object_get(vms_json_array_get(orph, i), "problem"));
	return n;
}

static int render_check(cli_ctx *ctx, const vms_json *r)
{
	const vms_json *cat = vms_json_object_get(r, "catalog");
	const vms_json *srs = vms_json_object_get(r, "srs");
	if (ctx->scripted) {
		printf("catalog\t%s\n", check_ok(cat) ? "ok" : "error");
		for (size_t i = 0; i < vms_json_array_len(srs); i++) {
			const vms_json *s = vms_json_array_get(srs, i);
			printf("sr\t%s\t%s\t%zu\t%zu\n", cli_json_str(s, "sr"), check_ok(s) ? "ok" : "error",
			       count_problems(s), vms_json_array_len(vms_json_object_get(s, "repairs")));
		}
		printf("orphans\t%zu\nunsettled\t%zu\nresult\t%s\n",
		       vms_json_array_len(vms_json_object_get(r, "orphans")),
		       vms_json_array_len(vms_json_object_get(r, "unsettled")), check_ok(r) ? "ok" : "error");
		return 0;
	}
	printf("catalog: %s\n", check_ok(cat) ? "ok" : "PROBLEMS");
	if (!check_ok(cat))
		print_report(vms_json_object_get(cat, "report"));
	for (size_t i = 0; i < vms_json_array_len(srs); i++) {
		const vms_json *s = vms_json_array_get(srs, i), *rep = vms_json_object_get(s, "report");
		const char *cmp = cli_json_str(s, "compare_error");
		printf("sr %s (%s): %s\n", cli_json_str(s, "sr"), cli_json_str(s, "type") ? cli_json_str(s, "type") : "?",
		       check_ok(s) ? "ok" : "PROBLEMS");
		if (vms_json_type_of(rep) != VMS_JSON_OBJECT || !vms_json_bool(vms_json_object_get(rep, "ok")))
			print_report(rep);
		if (cmp)
			printf("    cannot compare with the catalog: %s\n", cmp);
		print_messages("    ", vms_json_object_get(s, "missing"), "missing: ");
		print_messages("    ", vms_json_object_get(s, "orphans"), "orphan: ");
		print_messages("    ", vms_json_object_get(s, "repairs"), NULL);
	}
	print_items("orphans", vms_json_object_get(r, "orphans"));
	print_items("unsettled", vms_json_object_get(r, "unsettled"));
	printf("check: %s\n", check_ok(r) ? "ok" : "PROBLEMS FOUND");
	return 0;
}

static int cmd_check(cli_ctx *ctx, const cli_args *a)
{
	cli_response r;
	vms_json *args = cli_args_with(a, NULL, NULL, "sr data repair");
	int rc;
	if (!args)
		return cli_nomem(ctx);
	if (ctx->dry_run) {
		if (!cli_opt_has(a, "repair")) {
			vms_json_free(args);
			return cli_usage(ctx, "--dry-run goes with --repair");
		}
		vms_json_object_set_bool(args, "dry_run", 1);
	}
	if ((rc = cli_call(ctx, "check", args, &r)) != 0)
		return rc;
	if (ctx->json)
		printf("%s\n", r.text);
	else
		rc = render_check(ctx, r.result);
	/* Like fsck and thin_check: problems found (and not repaired) are a failure. */
	if (!rc && !check_ok(r.result)) {
		fprintf(stderr, "vmsnap: check found problems%s\n",
		        cli_opt_has(a, "repair") && !ctx->dry_run ? " that repair cannot fix (see above)"
		                                                   : " (see above; --repair fixes what is safe to fix)");
		rc = CLI_EXIT_ERROR;
	}
	cli_response_free(&r);
	return rc;
}

/* ---- stats ------------------------------------------------------------------------------ */

static const cli_column sr_stats_columns[] = {
	{"name", "SR", CLI_COL_STR, "name", NULL, 1},
	{"type", "TYPE", CLI_COL_STR, "type", NULL, 1},
	{"total", "TOTAL", CLI_COL_SIZE, "total", NULL, 1},
	{"used", "USED", CLI_COL_SIZE, "used", NULL, 1},
	{"free", "FREE", CLI_COL_SIZE, "free", NULL, 1},
	{"vms", "VMS", CLI_COL_INT, "vm_count", NULL, 1},
	{"vdis", "DISKS", CLI_COL_INT, "vdi_count", NULL, 1},
	{"snapshots", "SNAPSHOTS", CLI_COL_INT, "snapshot_count", NULL, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 0},
	{0},
};

static const cli_column space_columns[] = {
	{"name", "NAME", CLI_COL_STR, "name", NULL, 1},
	{"time", "TIME", CLI_COL_TIME, "time", NULL, 1},
	{"referenced", "REFERENCED", CLI_COL_SIZE, "referenced", NULL, 1},
	{"unique", "UNIQUE", CLI_COL_SIZE, "unique", NULL, 1},
	{"written", "WRITTEN", CLI_COL_SIZE, "written", NULL, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 0},
	{0},
};

static const cli_column disk_space_columns[] = {
	{"name", "DISK", CLI_COL_STR, "name", NULL, 1},
	{"referenced", "REFERENCED", CLI_COL_SIZE, "referenced", NULL, 1},
	{"unique", "UNIQUE", CLI_COL_SIZE, "unique", NULL, 1},
	{"written", "WRITTEN", CLI_COL_SIZE, "written", NULL, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 0},
	{0},
};

static const cli_column snap_space_columns[] = {
	{"snapshot", "SNAPSHOT", CLI_COL_STR, "snapshot", NULL, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 1},
	{"referenced", "REFERENCED", CLI_COL_SIZE, "referenced", NULL, 1},
	{"unique", "UNIQUE", CLI_COL_SIZE, "unique", NULL, 1},
	{"written", "WRITTEN", CLI_COL_SIZE, "written", NULL, 1},
	{0},
};

/* Where the SR accounts space per VM snapshot (zfs), a disk has no figures
 * of its own: say so under the disk table, with the disks' total. */
static void note_per_vm(const cli_ctx *ctx, const vms_json *total, const char *what)
{
	const char *g = cli_json_str(total, "granularity");
	const char *key[] = {"referenced", "unique", "written"};
	char b[3][64];
	int64_t n;
	if (ctx->scripted || !g || strcmp(g, "vm") != 0)
		return;
	for (int i = 0; i < 3; i++) {
		if (vms_json_is_int(cli_json_path(total, key[i]), &n))
			cli_fmt_size(b[i], sizeof b[i], n, ctx->parsable);
		else
			snprintf(b[i], sizeof b[i], "-");
	}
	printf("(this SR accounts space per VM snapshot, not per disk: %s together: referenced %s, "
	       "unique %s, written %s)\n", what, b[0], b[1], b[2]);
}

static int render_stats(cli_ctx *ctx, const vms_json *r)
{
	const vms_json *srs = vms_json_object_get(r, "srs");
	const vms_json *disks = vms_json_object_get(r, "disks");
	const vms_json *snaps = vms_json_object_get(r, "snapshots");
	cli_ctx sub = *ctx;
	int rc;
	if (srs)
		return cli_table(ctx, sr_stats_columns, srs);
	if (snaps) {
		/* A VM: its disks, then its snapshots (-o/-s apply to the snapshots). */
		sub.columns = NULL;
		sub.nsort = 0;
		if (!ctx->scripted)
			printf("VM %s\n\ndisks:\n", cli_json_str(r, "vm"));
		if ((rc = cli_table(&sub, disk_space_columns, disks)) != 0)
			return rc;
		note_per_vm(ctx, vms_json_object_get(r, "live"), "the disks");
		if (!ctx->scripted)
			printf("\nsnapshots:\n");
		return cli_table(ctx, space_columns, snaps);
	}
	if ((rc = cli_record(ctx, snap_space_columns, r)) != 0 || ctx->scripted || ctx->columns)
		return rc;
	sub.columns = NULL;
	sub.nsort = 0;
	printf("\ndisks:\n");
	if ((rc = cli_table(&sub, disk_space_columns, disks)) == 0)
		note_per_vm(ctx, r, "the snapshot's disks");
	return rc;
}

/* The space figures, then the live I/O table when vmsnapd serves (policy.c). */
static int render_stats_io(cli_ctx *ctx, const vms_json *r)
{
	int rc = render_stats(ctx, r);
	return rc ? rc : cli_render_io(ctx, r);
}

static int cmd_stats(cli_ctx *ctx, const cli_args *a)
{
	int n = cli_opt_has(a, "sr") + cli_opt_has(a, "vm") + cli_opt_has(a, "snapshot");
	if (n > 1)
		return cli_usage(ctx, "stats takes one of --sr, --vm, --snapshot");
	vms_json *args = cli_args_with(a, NULL, NULL, "sr vm snapshot");
	return args ? cli_simple(ctx, "stats", args, render_stats_io) : cli_nomem(ctx);
}

/* ---- export list ----------------------------------------------------------------------- */

static const cli_column export_columns[] = {
	{"name", "NAME", CLI_COL_STR, "name", NULL, 1},
	{"size", "SIZE", CLI_COL_SIZE, "size", NULL, 1},
	{"readonly", "RO", CLI_COL_BOOL, "readonly", NULL, 1},
	{"description", "DESCRIPTION", CLI_COL_STR, "description", NULL, 1},
	{0},
};

static int render_exports(cli_ctx *ctx, const vms_json *r)
{
	return cli_table(ctx, export_columns, vms_json_object_get(r, "exports"));
}

static int cmd_export_list(cli_ctx *ctx, const cli_args *a)
{
	int rc = cli_columns_check(ctx, export_columns);
	return rc ? rc : cli_simple(ctx, "export.list", NULL, render_exports);
}

/* ---- daemon status|stop ---------------------------------------------------------------- */

static const cli_column daemon_columns[] = {
	{"pid", "PID", CLI_COL_INT, "pid", NULL, 1},
	{"uptime", "UPTIME", CLI_COL_INT, "uptime", NULL, 1},
	{"home", "HOME", CLI_COL_STR, "home", NULL, 1},
	{"nbd", "NBD", CLI_COL_STR, "sockets.nbd", NULL, 1},
	{"control", "CONTROL", CLI_COL_STR, "sockets.control", NULL, 1},
	{"tcp", "TCP", CLI_COL_STR, "sockets.tcp", NULL, 1},
	{"clients", "CLIENTS", CLI_COL_INT, "clients", NULL, 1},
	{"connections", "CONNECTIONS", CLI_COL_INT, "connections", NULL, 1},
	{"exports", "EXPORTS", CLI_COL_INT, "exports", NULL, 1},
	{0},
};

static int render_daemon_status(cli_ctx *ctx, const vms_json *r)
{
	return cli_record(ctx, daemon_columns, r);
}

static int render_daemon_stop(cli_ctx *ctx, const vms_json *r)
{
	printf("vmsnapd is stopping\n");
	return 0;
}

static int cmd_daemon_status(cli_ctx *ctx, const cli_args *a)
{
	int rc = cli_columns_check(ctx, daemon_columns);
	ctx->need_daemon = 1;
	return rc ? rc : cli_simple(ctx, "daemon.status", NULL, render_daemon_status);
}

static int cmd_daemon_stop(cli_ctx *ctx, const cli_args *a)
{
	ctx->need_daemon = 1;
	return cli_simple(ctx, "daemon.stop", NULL, render_daemon_stop);
}

/* ---- version ----------------------------------------------------------------------------- */

static int cmd_version(cli_ctx *ctx, const cli_args *a)
{
	if (ctx->json)
		printf("{\"output_version\":1,\"result\":{\"version\":\"%s\"}}\n", VMS_CLI_VERSION);
	else
		printf("vmsnap %s (output_version 1)\n", VMS_CLI_VERSION);
	return 0;
}

static const cli_opt check_opts[] = {
	{"sr", 0, "SR", "only this SR (default: the catalog and every SR)"},
	{"data", 0, NULL, "also verify data checksums (reads every block)"},
	{"repair", 0, NULL, "repair what is safe to repair: leaked blocks, temporaries, orphans (removed when "
	                     "vmsnap's own or empty, else adopted into a lost_found VM), snapshots without backing"},
	CLI_OPT_DRY_RUN,
	{0},
};
static const cli_opt stats_opts[] = {
	{"sr", 0, "SR", "space of one SR"},
	{"vm", 0, "VM", "space of a VM's disks and snapshots"},
	{"snapshot", 0, "VM@SNAPSHOT", "space of one snapshot"},
	{0},
};

const cli_command cli_misc_commands[] = {
	{"export", "list", "", "List the NBD exports vmsnapd serves: VM/DISK and VM/DISK@SNAPSHOT", 0, 0, NULL,
	 NULL, cmd_export_list, export_columns},
	{"check", NULL, "[--sr SR] [--data] [--repair [-n]]",
	 "Verify the catalog and the SRs, and that they agree (exit 1 when problems are found)", 0, 0, check_opts,
	 NULL, cmd_check, NULL},
	{"stats", NULL, "[--sr SR | --vm VM | --snapshot VM@SNAPSHOT]",
	 "Space: per SR, or referenced/unique/written per disk and snapshot", 0, 0, stats_opts,
	 "examples:\n  vmsnap stats\n  vmsnap stats --vm vm1 -S unique\n", cmd_stats, NULL},
	{"daemon", "status", "", "Show vmsnapd's sockets, clients and exports (exit 1 when no daemon answers)", 0,
	 0, NULL, NULL, cmd_daemon_status, NULL},
	{"daemon", "stop", "", "Ask vmsnapd to stop (drain, flush, commit, exit)", 0, 0, NULL, NULL, cmd_daemon_stop,
	 NULL},
	{"version", NULL, "", "Print the version", 0, 0, NULL, NULL, cmd_version, NULL},
	{0},
};
