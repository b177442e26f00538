/*
 * policy.c - vmsnap policy set|show|list|delete|prune|run, and the verbs
 * of other nouns that policies and monitoring brought: snapshot
 * hold|release, vm report, vdi import|export; plus the live I/O table
 * that `vmsnap stats` prints when vmsnapd serves disks.
 * Requests and results: docs/control.md; the policy format: docs/policy.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const KEEP_CLASSES[] = {"last", "hourly", "daily", "weekly", "monthly", "yearly"};
#define NKEEP (sizeof(KEEP_CLASSES) / sizeof(KEEP_CLASSES[0]))

/* "last=3 daily=7" or "all" */
static void fmt_keep(char *out, size_t cap, const vms_json *keep)
{
	size_t n = 0;
	out[0] = 0;
	for (size_t i = 0; i < NKEEP; i++) {
		int64_t v;
		if (vms_json_is_int(vms_json_object_get(keep, KEEP_CLASSES[i]), &v) && v > 0)
			n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s=%lld", n ? "," : "",
			                      KEEP_CLASSES[i], (long long)v);
	}
	if (!n)
		snprintf(out, cap, "all");
}

static void get_keep(cli_cell *c, const vms_json *rec)
{
	c->kind = 1;
	fmt_keep(c->text, sizeof c->text, cli_json_path(rec, "policy.keep"));
}

static void get_reasons(cli_cell *c, const vms_json *rec)
{
	const vms_json *r = vms_json_object_get(rec, "reasons");
	size_t n = 0;
	c->kind = 1;
	c->text[0] = 0;
	for (size_t i = 0; i < vms_json_array_len(r); i++) {
		const char *s = vms_json_string(vms_json_array_get(r, i));
		n += (size_t)snprintf(c->text + n, n < sizeof c->text ? sizeof c->text - n : 0, "%s%s",
		                      n ? "; " : "", s ? s : "");
	}
}

static const cli_column policy_columns[] = {
	{"target", "TARGET", CLI_COL_STR, "target", NULL, 1},
	{"kind", "KIND", CLI_COL_STR, "target_kind", NULL, 1},
	{"schedule", "SCHEDULE", CLI_COL_STR, "policy.schedule", NULL, 1},
	{"keep", "KEEP", CLI_COL_STR, NULL, get_keep, 1},
	{"name", "NAME", CLI_COL_STR, "policy.name", NULL, 1},
	{"enabled", "ENABLED", CLI_COL_BOOL, "policy.enabled", NULL, 1},
	{"prune_manual", "PRUNE_MANUAL", CLI_COL_BOOL, "policy.prune_manual", NULL, 0},
	{"source", "SOURCE", CLI_COL_STR, "source", NULL, 0},
	{"next", "NEXT_RUN", CLI_COL_TIME, "next_time", NULL, 0},
	{"last", "LAST_RUN", CLI_COL_TIME, "last_run_time", NULL, 0},
	{"updated", "UPDATED", CLI_COL_TIME, "updated_time", NULL, 0},
	{"target_uuid", "TARGET_UUID", CLI_COL_STR, "target_uuid", NULL, 0},
	{0},
};

static const cli_column prune_columns[] = {
	{"action", "ACTION", CLI_COL_STR, "action", NULL, 1},
	{"name", "SNAPSHOT", CLI_COL_STR, "name", NULL, 1},
	{"time", "TIME", CLI_COL_TIME, "time", NULL, 0},
	{"reasons", "WHY", CLI_COL_STR, NULL, get_reasons, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 0},
	{0},
};

static const cli_column report_columns[] = {
	{"name", "SNAPSHOT", CLI_COL_STR, "name", NULL, 1},
	{"age", "AGE_S", CLI_COL_INT, "age_seconds", NULL, 1},
	{"referenced", "REFERENCED", CLI_COL_SIZE, "referenced", NULL, 1},
	{"unique", "UNIQUE", CLI_COL_SIZE, "unique", NULL, 1},
	{"written", "WRITTEN", CLI_COL_SIZE, "written", NULL, 1},
	{"depth", "DEPTH", CLI_COL_INT, "chain_depth", NULL, 1},
	{"held", "HELD", CLI_COL_BOOL, "held", NULL, 1},
	{"prune", "PRUNE", CLI_COL_STR, "prune", NULL, 1},
	{"time", "TIME", CLI_COL_TIME, "time", NULL, 0},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 0},
	{0},
};

static void get_lat(cli_cell *c, const vms_json *rec, const char *path)
{
	const vms_json *v = cli_json_path(rec, path);
	if (vms_json_type_of(v) != VMS_JSON_NUMBER)
		return;
	c->kind = 1;
	snprintf(c->text, sizeof c->text, "%.0f", vms_json_double(v));
}
static void get_rp50(cli_cell *c, const vms_json *r) { get_lat(c, r, "io.read.latency_us.p50"); }
static void get_rp99(cli_cell *c, const vms_json *r) { get_lat(c, r, "io.read.latency_us.p99"); }
static void get_wp50(cli_cell *c, const vms_json *r) { get_lat(c, r, "io.write.latency_us.p50"); }
static void get_wp99(cli_cell *c, const vms_json *r) { get_lat(c, r, "io.write.latency_us.p99"); }
static void get_riops(cli_cell *c, const vms_json *r) { get_lat(c, r, "io.read.ops_per_second"); }
static void get_wiops(cli_cell *c, const vms_json *r) { get_lat(c, r, "io.write.ops_per_second"); }

static const cli_column io_columns[] = {
	{"export", "EXPORT", CLI_COL_STR, "export", NULL, 1},
	{"reads", "READS", CLI_COL_INT, "io.read.ops", NULL, 1},
	{"read_bytes", "READ", CLI_COL_SIZE, "io.read.bytes", NULL, 1},
	{"writes", "WRITES", CLI_COL_INT, "io.write.ops", NULL, 1},
	{"write_bytes", "WRITTEN", CLI_COL_SIZE, "io.write.bytes", NULL, 1},
	{"flushes", "FLUSHES", CLI_COL_INT, "io.flush.ops", NULL, 1},
	{"trims", "TRIMS", CLI_COL_INT, "io.trim.ops", NULL, 0},
	{"errors_read", "READ_ERRORS", CLI_COL_INT, "io.read.errors", NULL, 0},
	{"errors_write", "WRITE_ERRORS", CLI_COL_INT, "io.write.errors", NULL, 0},
	{"read_p50", "R_P50_US", CLI_COL_STR, NULL, get_rp50, 1},
	{"read_p99", "R_P99_US", CLI_COL_STR, NULL, get_rp99, 1},
	{"write_p50", "W_P50_US", CLI_COL_STR, NULL, get_wp50, 1},
	{"write_p99", "W_P99_US", CLI_COL_STR, NULL, get_wp99, 1},
	{"read_iops", "R_IOPS", CLI_COL_STR, NULL, get_riops, 0},
	{"write_iops", "W_IOPS", CLI_COL_STR, NULL, get_wiops, 0},
	{0},
};

/* The live I/O table of a stats result (nothing when no daemon serves). */
int cli_render_io(cli_ctx *ctx, const vms_json *result)
{
	const vms_json *io = vms_json_object_get(result, "io");
	if (!io || ctx->columns || ctx->nsort)
		return 0;
	if (!ctx->scripted)
		printf("\nlive I/O (vmsnapd, since each export was first opened; latency in microseconds):\n");
	if (vms_json_array_len(io) == 0) {
		if (!ctx->scripted)
			printf("  no disk has been opened yet\n");
		return 0;
	}
	return cli_table(ctx, io_columns, io);
}

/* ---- policy set / show / list / delete ------------------------------------------ */

static const char *target_key(const cli_args *a)
{
	return cli_opt_has(a, "sr") ? "sr" : "vm";
}

static int render_policy(cli_ctx *ctx, const vms_json *r)
{
	return cli_record(ctx, policy_columns, r);
}

static int policy_set(cli_ctx *ctx, const cli_args *a)
{
	int rc;
	vms_json *args = cli_args_with(a, target_key(a), a->pos[0], "schedule name");
	if (!args)
		return cli_nomem(ctx);
	const char *spec = cli_opt_get(a, "spec");
	if (spec) {
		vms_json *j = NULL;
		if (vms_json_parse(&j, spec, strlen(spec)) < 0) {
			vms_json_free(args);
			return cli_usage(ctx, "--spec: not JSON: %s", spec);
		}
		vms_json_object_set(args, "spec", j);
	}
	vms_json *keep = NULL;
	for (size_t i = 0; i < NKEEP; i++) {
		char name[32];
		snprintf(name, sizeof name, "keep-%s", KEEP_CLASSES[i]);
		const char *v = cli_opt_get(a, name);
		if (!v)
			continue;
		if (!keep && !(keep = vms_json_new_object())) {
			vms_json_free(args);
			return cli_nomem(ctx);
		}
		if ((rc = cli_arg_uint(ctx, keep, KEEP_CLASSES[i], v)) != 0) {
			vms_json_free(keep);
			vms_json_free(args);
			return rc;
		}
	}
	if (cli_opt_has(a, "keep-all")) {
		if (keep) {
			vms_json_free(keep);
			vms_json_free(args);
			return cli_usage(ctx, "--keep-all cannot be combined with --keep-CLASS");
		}
		if (!(keep = vms_json_new_object()))
			return cli_nomem(ctx);
		vms_json_object_set_bool(keep, "all", 1);
	}
	if (keep)
		vms_json_object_set(args, "keep", keep);
	if (cli_opt_has(a, "enable") && cli_opt_has(a, "disable")) {
		vms_json_free(args);
		return cli_usage(ctx, "give --enable or --disable, not both");
	}
	if (cli_opt_has(a, "enable") || cli_opt_has(a, "disable"))
		vms_json_object_set_bool(args, "enabled", cli_opt_has(a, "enable"));
	const char *pm = cli_opt_get(a, "prune-manual");
	if (pm) {
		if (strcmp(pm, "yes") && strcmp(pm, "no")) {
			vms_json_free(args);
			return cli_usage(ctx, "--prune-manual takes yes or no");
		}
		vms_json_object_set_bool(args, "prune_manual", !strcmp(pm, "yes"));
	}
	return cli_simple(ctx, "policy.set", args, render_policy);
}

static int policy_show(cli_ctx *ctx, const cli_args *a)
{
	int rc = cli_columns_check(ctx, policy_columns);
	return rc ? rc : cli_one_arg(ctx, "policy.show", target_key(a), a->pos[0], render_policy);
}

static int render_policy_list(cli_ctx *ctx, const vms_json *r)
{
	return cli_table(ctx, policy_columns, vms_json_object_get(r, "policies"));
}

static int policy_list(cli_ctx *ctx, const cli_args *a)
{
	(void)a;
	int rc = cli_columns_check(ctx, policy_columns);
	return rc ? rc : cli_simple(ctx, "policy.list", NULL, render_policy_list);
}

static int render_policy_deleted(cli_ctx *ctx, const vms_json *r)
{
	if (!ctx->scripted)
		printf("deleted the policy of %s %s\n", cli_json_str(r, "deleted.kind"),
		       cli_json_str(r, "deleted.name"));
	return 0;
}

static int policy_delete(cli_ctx *ctx, const cli_args *a)
{
	return cli_one_arg(ctx, "policy.delete", target_key(a), a->pos[0], render_policy_deleted);
}

/* ---- prune / run --------------------------------------------------------------------- */

static int render_prune(cli_ctx *ctx, const vms_json *r)
{
	int rc = cli_table(ctx, prune_columns, vms_json_object_get(r, "snapshots"));
	if (rc || ctx->scripted)
		return rc;
	int dry = vms_json_bool(vms_json_object_get(r, "dry_run"));
	printf("\n%s: keep %lld, %s %lld", cli_json_str(r, "vm"), (long long)cli_json_int(r, "keep", 0),
	       dry ? "would remove" : "remove", (long long)cli_json_int(r, "remove", 0));
	if (!dry)
		printf(" (deleted %zu, skipped %zu)", vms_json_array_len(vms_json_object_get(r, "deleted")),
		       vms_json_array_len(vms_json_object_get(r, "skipped")));
	printf("\n");
	const vms_json *sk = vms_json_object_get(r, "skipped");
	for (size_t i = 0; i < vms_json_array_len(sk); i++)
		printf("  kept %s: %s\n", cli_json_str(vms_json_array_get(sk, i), "name"),
		       cli_json_str(vms_json_array_get(sk, i), "reason"));
	return 0;
}

static int policy_prune(cli_ctx *ctx, const cli_args *a)
{
	int rc = cli_columns_check(ctx, prune_columns);
	if (rc)
		return rc;
	vms_json *args = cli_args_with(a, "vm", a->pos[0], "dry-run");
	if (args && ctx->dry_run)
		vms_json_object_set_bool(args, "dry_run", 1);
	return args ? cli_simple(ctx, "policy.prune", args, render_prune) : cli_nomem(ctx);
}

static int render_run(cli_ctx *ctx, const vms_json *r)
{
	const vms_json *runs = vms_json_object_get(r, "runs");
	char t[64];
	for (size_t i = 0; i < vms_json_array_len(runs); i++) {
		const vms_json *x = vms_json_array_get(runs, i);
		const char *err = cli_json_str(x, "error");
		if (err) {
			printf("%s: failed: %s\n", cli_json_str(x, "vm"), err);
			continue;
		}
		const vms_json *s = vms_json_object_get(x, "snapshot");
		if (vms_json_type_of(s) == VMS_JSON_OBJECT) {
			printf("%s: snapshot %s@%s", cli_json_str(x, "vm"), cli_json_str(x, "vm"),
			       cli_json_str(s, "name"));
			if (cli_json_int(x, "missed", 0) > 0)
				printf(" (one catch-up for %lld missed runs)", (long long)cli_json_int(x, "missed", 0));
			printf("; pruned %zu", vms_json_array_len(cli_json_path(x, "prune.deleted")));
		} else {
			printf("%s: not due", cli_json_str(x, "vm"));
		}
		if (cli_json_path(x, "next_time") && vms_json_type_of(cli_json_path(x, "next_time")) == VMS_JSON_NUMBER) {
			cli_fmt_time(t, sizeof t, cli_json_int(x, "next_time", 0), ctx->parsable);
			printf("; next run %s", t);
		}
		printf("\n");
	}
	if (!vms_json_array_len(runs) && !ctx->scripted)
		printf("no VM has a policy\n");
	return 0;
}

static int policy_run(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args = cli_args_with(a, a->npos ? "vm" : NULL, a->npos ? a->pos[0] : NULL, "force");
	return args ? cli_simple(ctx, "policy.run", args, render_run) : cli_nomem(ctx);
}

/* ---- snapshot hold / release, vm report -------------------------------------------------- */

static int render_hold(cli_ctx *ctx, const vms_json *r)
{
	if (ctx->scripted)
		return 0;
	const char *hold = cli_json_str(r, "hold");
	printf("%s@%s: %s%s\n", cli_json_str(r, "vm"), cli_json_str(r, "name"), hold ? "held: " : "released",
	       hold ? hold : "");
	return 0;
}

static int snapshot_hold(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args = cli_args_with(a, "snapshot", a->pos[0], "tag");
	return args ? cli_simple(ctx, "snapshot.hold", args, render_hold) : cli_nomem(ctx);
}

static int snapshot_release(cli_ctx *ctx, const cli_args *a)
{
	return cli_one_arg(ctx, "snapshot.release", "snapshot", a->pos[0], render_hold);
}

static void print_size(const char *label, const vms_json *v, int parsable)
{
	char b[64];
	int64_t n;
	if (vms_json_is_int(v, &n))
		cli_fmt_size(b, sizeof b, n, parsable);
	else
		snprintf(b, sizeof b, "-");
	printf("  %-22s %s\n", label, b);
}

static int render_report(cli_ctx *ctx, const vms_json *r)
{
	char t[64];
	if (ctx->scripted || ctx->columns)
		return cli_table(ctx, report_columns, vms_json_object_get(r, "snapshots"));
	printf("VM %s (%s)\n", cli_json_str(r, "vm"), cli_json_str(r, "vm_uuid"));
	printf("  %-22s %lld (%lld held, %lld manual)\n", "snapshots", (long long)cli_json_int(r, "snapshot_count", 0),
	       (long long)cli_json_int(r, "held_count", 0), (long long)cli_json_int(r, "manual_count", 0));
	if (vms_json_type_of(vms_json_object_get(r, "oldest")) == VMS_JSON_OBJECT) {
		cli_fmt_time(t, sizeof t, cli_json_int(r, "oldest.time", 0), ctx->parsable);
		printf("  %-22s %s (%lld s old)\n", "oldest", t, (long long)cli_json_int(r, "oldest.age_seconds", 0));
		cli_fmt_time(t, sizeof t, cli_json_int(r, "newest.time", 0), ctx->parsable);
		printf("  %-22s %s (%lld s old)\n", "newest", t, (long long)cli_json_int(r, "newest.age_seconds", 0));
	}
	print_size("space referenced", cli_json_path(r, "space.referenced"), ctx->parsable);
	print_size("space unique", cli_json_path(r, "space.unique"), ctx->parsable);
	print_size("space written", cli_json_path(r, "space.written"), ctx->parsable);
	const vms_json *g = cli_json_path(r, "growth.written_bytes_per_day");
	if (vms_json_type_of(g) == VMS_JSON_NUMBER)
		printf("  %-22s %.0f bytes/day\n", "growth (written)", vms_json_double(g));
	printf("  %-22s %lld (non-chained)\n", "chain depth", (long long)cli_json_int(r, "chain_depth.max", 1));
	const vms_json *disks = vms_json_object_get(r, "disks");
	for (size_t i = 0; i < vms_json_array_len(disks); i++) {
		const vms_json *d = vms_json_array_get(disks, i);
		if (vms_json_type_of(vms_json_object_get(d, "imported")) != VMS_JSON_OBJECT)
			continue;
		printf("  disk %-17s imported from %s (%s, backing chain depth %lld), now depth 1\n",
		       cli_json_str(d, "name"), cli_json_str(d, "imported.source"), cli_json_str(d, "imported.format"),
		       (long long)cli_json_int(d, "imported.source_chain_depth", 1));
	}
	if (vms_json_type_of(vms_json_object_get(r, "prune")) == VMS_JSON_OBJECT)
		printf("  %-22s keep %lld, would remove %lld\n", "policy prune", (long long)cli_json_int(r, "prune.keep", 0),
		       (long long)cli_json_int(r, "prune.remove", 0));
	else
		printf("  %-22s none\n", "policy");
	printf("\n");
	return cli_table(ctx, report_columns, vms_json_object_get(r, "snapshots"));
}

static int vm_report(cli_ctx *ctx, const cli_args *a)
{
	int rc = cli_columns_check(ctx, report_columns);
	return rc ? rc : cli_one_arg(ctx, "vm.report", "vm", a->pos[0], render_report);
}

/* ---- vdi import / export ---------------------------------------------------------------- */

static int render_import(cli_ctx *ctx, const vms_json *r)
{
	char b[64];
	if (ctx->scripted) {
		printf("%s\t%s\n", cli_json_str(r, "export"), cli_json_str(r, "uuid"));
		return 0;
	}
	cli_fmt_size(b, sizeof b, cli_json_int(r, "size", 0), ctx->parsable);
	printf("imported %s (%s, backing chain depth %lld) as disk %s (%s), %s\n", cli_json_str(r, "import.source"),
	       cli_json_str(r, "import.format"), (long long)cli_json_int(r, "import.source_chain_depth", 1),
	       cli_json_str(r, "export"), cli_json_str(r, "uuid"), b);
	return 0;
}

static int vdi_import(cli_ctx *ctx, const cli_args *a)
{
	char *abs = realpath(a->pos[2], NULL);
	if (!abs)
		return cli_fail(ctx, "NOTFOUND", "import source %s: not found", a->pos[2]);
	vms_json *args = cli_args_with(a, "vm", a->pos[0], "format");
	int rc;
	if (!args) {
		free(abs);
		return cli_nomem(ctx);
	}
	vms_json_object_set_string(args, "name", a->pos[1]);
	vms_json_object_set_string(args, "source", abs);
	free(abs);
	const char *dev = cli_opt_get(a, "device");
	if (dev && (rc = cli_arg_uint(ctx, args, "device", dev)) != 0) {
		vms_json_free(args);
		return rc;
	}
	return cli_simple(ctx, "vdi.import", args, render_import);
}

static int render_export(cli_ctx *ctx, const vms_json *r)
{
	char b[64];
	if (ctx->scripted)
		return 0;
	cli_fmt_size(b, sizeof b, cli_json_int(r, "size", 0), ctx->parsable);
	printf("exported %s to %s (%s, %s)\n", cli_json_str(r, "source"), cli_json_str(r, "path"),
	       cli_json_str(r, "format"), b);
	return 0;
}

static int vdi_export(cli_ctx *ctx, const cli_args *a)
{
	char disk[512], path[4096];
	const char *at = strchr(a->pos[0], '@');
	snprintf(disk, sizeof disk, "%.*s", at ? (int)(at - a->pos[0]) : (int)strlen(a->pos[0]), a->pos[0]);
	/* the path need not exist yet: make it absolute against the cwd */
	if (a->pos[1][0] == '/') {
		snprintf(path, sizeof path, "%s", a->pos[1]);
	} else {
		char *cwd = realpath(".", NULL);
		if (!cwd)
			return cli_fail(ctx, "IO", "cannot resolve the current directory");
		snprintf(path, sizeof path, "%s/%s", cwd, a->pos[1]);
		free(cwd);
	}
	vms_json *args = cli_args_with(a, "vdi", disk, "format overwrite");
	if (!args)
		return cli_nomem(ctx);
	if (at)
		vms_json_object_set_string(args, "snapshot", at + 1);
	vms_json_object_set_string(args, "path", path);
	return cli_simple(ctx, "vdi.export", args, render_export);
}

/* ---- tables ---------------------------------------------------------------------------------- */

static const cli_opt target_opts[] = {
	{"sr", 0, NULL, "TARGET is an SR: its default policy for VMs without their own"},
	{0},
};

static const cli_opt set_opts[] = {
	{"sr", 0, NULL, "TARGET is an SR: its default policy for VMs without their own"},
	{"spec", 0, "JSON", "the whole policy as JSON (docs/policy.md)"},
	{"schedule", 0, "SCHED", "hourly, 'every 15m', 'daily 02:30', 'weekly sun 03:00', 'monthly 1', none"},
	{"keep-last", 0, "N", "keep the N newest"},
	{"keep-hourly", 0, "N", "keep the newest of each of the last N hours"},
	{"keep-daily", 0, "N", "keep the newest of each of the last N days"},
	{"keep-weekly", 0, "N", "keep the newest of each of the last N ISO weeks"},
	{"keep-monthly", 0, "N", "keep the newest of each of the last N months"},
	{"keep-yearly", 0, "N", "keep the newest of each of the last N years"},
	{"keep-all", 0, NULL, "no retention: never prune"},
	{"name", 0, "NAME", "user name of automatic snapshots (default auto)"},
	{"enable", 0, NULL, "run the policy (the default)"},
	{"disable", 0, NULL, "no automatic snapshots or prunes"},
	{"prune-manual", 0, "yes|no", "also prune snapshots made by hand"},
	{0},
};

static const cli_opt prune_opts[] = {CLI_OPT_DRY_RUN, {0}};
static const cli_opt run_opts[] = {{"force", 'f', NULL, "snapshot now even if not due"}, {0}};
static const cli_opt hold_opts[] = {{"tag", 't', "TAG", "hold tag (default hold)"}, {0}};
static const cli_opt import_opts[] = {
	{"format", 'F', "FMT", "source format: raw, qcow2, vmdk, vhdx, vpc, vdi (default: probed)"},
	{"device", 0, "N", "device position (default: first free)"},
	{0},
};
static const cli_opt export_opts[] = {
	{"format", 'F', "FMT", "raw (default) or qcow2"},
	{"overwrite", 0, NULL, "replace PATH if it exists"},
	{0},
};

const cli_command cli_policy_commands[] = {
	{"policy", "set", "TARGET [--sr] [--spec JSON | --schedule S --keep-CLASS N ...]",
	 "Set the policy of a VM (or with --sr the default of an SR); fields change the current policy", 1, 1,
	 set_opts,
	 "examples:\n  vmsnap policy set vm1 --schedule 'daily 02:30' --keep-daily 7 --keep-weekly 4\n"
	 "  vmsnap policy set sr1 --sr --spec '{\"schedule\":\"hourly\",\"keep\":{\"last\":24}}'\n"
	 "  vmsnap policy set vm1 --disable\n",
	 policy_set, policy_columns},
	{"policy", "show", "TARGET [--sr]", "Show a VM's effective policy (its own, else its SR's) or an SR's",
	 1, 1, target_opts, NULL, policy_show, policy_columns},
	{"policy", "list", "", "List every policy", 0, 0, NULL, NULL, policy_list, policy_columns},
	{"policy", "delete", "TARGET [--sr]", "Delete the policy of a VM or SR", 1, 1, target_opts, NULL,
	 policy_delete, NULL},
	{"policy", "prune", "VM [--dry-run]",
	 "Prune a VM's snapshots by its policy; --dry-run shows what would be kept and removed, and why", 1, 1,
	 prune_opts, "example:\n  vmsnap policy prune vm1 -n\n", policy_prune, prune_columns},
	{"policy", "run", "[VM] [--force]",
	 "Take the scheduled snapshot now if due (vmsnapd does this by itself) and prune", 0, 1, run_opts,
	 NULL, policy_run, NULL},
	{0},
};

const cli_command cli_extra_commands[] = {
	{"snapshot", "hold", "VM@SNAPSHOT|UUID [--tag TAG]",
	 "Hold a snapshot: never pruned nor deleted until released", 1, 1, hold_opts,
	 "example:\n  vmsnap snapshot hold vm1@latest --tag backup\n", snapshot_hold, NULL},
	{"snapshot", "release", "VM@SNAPSHOT|UUID", "Release a snapshot's hold", 1, 1, NULL, NULL,
	 snapshot_release, NULL},
	{"vm", "report", "VM",
	 "Analysis of a VM: snapshot count and ages, space, growth, chain depth, what the policy would prune",
	 1, 1, NULL, NULL, vm_report, report_columns},
	{"vdi", "import", "VM NAME SOURCE [--format FMT] [--device N]",
	 "Import an image (raw, qcow2 with its backing chain, vmdk, ...) as a new disk of a VM", 3, 3,
	 import_opts, "example:\n  vmsnap vdi import vm1 data /images/top.qcow2\n", vdi_import, NULL},
	{"vdi", "export", "VM/DISK[@SNAPSHOT] PATH [--format raw|qcow2] [--overwrite]",
	 "Export a disk or a snapshot of it to a raw or qcow2 file", 2, 2, export_opts,
	 "examples:\n  vmsnap vdi export vm1/d0 /backup/d0.raw\n"
	 "  vmsnap vdi export vm1/d0@latest /backup/d0.qcow2 --format qcow2\n",
	 vdi_export, NULL},
	{0},
};
