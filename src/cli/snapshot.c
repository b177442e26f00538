/*
 * snapshot.c - vmsnap snapshot (alias snap) create|list|show|find|delete|rollback.
 *
 * Snapshots are named VM@SNAPSHOT on output (as zfs and rbd do) so that any
 * name printed can be pasted back as a selector.  Without a VM, "snapshot
 * list" walks every VM (one snapshot.list per VM) and prints one table; its
 * --json output is then an envelope the CLI builds in the same shape as the
 * control module's ({"output_version":1,"result":{"count","snapshots"}}).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void get_fullname(cli_cell *c, const vms_json *rec)
{
	const char *vm = cli_json_str(rec, "vm"), *name = cli_json_str(rec, "name");
	if (!name)
		return;
	c->kind = 1;
	snprintf(c->text, sizeof c->text, "%s@%s", vm ? vm : cli_json_str(rec, "vm_uuid"), name);
}

const cli_column cli_snapshot_columns[] = {
	{"name", "NAME", CLI_COL_STR, NULL, get_fullname, 1},
	{"time", "TIME", CLI_COL_TIME, "time", NULL, 1},
	{"disks", "DISKS", CLI_COL_INT, "disks", NULL, 1},
	{"clones", "CLONES", CLI_COL_INT, "clones", NULL, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 1},
	{"snapshot", "SNAPSHOT", CLI_COL_STR, "name", NULL, 0},
	{"user_name", "USER_NAME", CLI_COL_STR, "user_name", NULL, 0},
	{"vm", "VM", CLI_COL_STR, "vm", NULL, 0},
	{"seq", "SEQ", CLI_COL_INT, "seq", NULL, 0},
	{"state", "STATE", CLI_COL_STR, "state", NULL, 0},
	{"deleted", "DELETED", CLI_COL_BOOL, "is_deleted", NULL, 0},
	{"vm_uuid", "VM_UUID", CLI_COL_STR, "vm_uuid", NULL, 0},
	{0},
};

static const cli_column find_columns[] = {
	{"name", "NAME", CLI_COL_STR, NULL, get_fullname, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 1},
	{"time", "TIME", CLI_COL_TIME, "time", NULL, 1},
	{"rank", "RANK", CLI_COL_INT, "rank", NULL, 1},
	{"count", "COUNT", CLI_COL_INT, "count", NULL, 1},
	{0},
};

static const cli_column snapdisk_columns[] = {
	{"name", "DISK", CLI_COL_STR, "name", NULL, 1},
	{"device", "DEVICE", CLI_COL_INT, "device", NULL, 1},
	{"size", "SIZE", CLI_COL_SIZE, "size", NULL, 1},
	{"export", "EXPORT", CLI_COL_STR, "export", NULL, 1},
	{0},
};

static const cli_column clone_columns[] = {
	{"name", "CLONE", CLI_COL_STR, "name", NULL, 1},
	{"deleted", "DELETED", CLI_COL_BOOL, "is_deleted", NULL, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 1},
	{0},
};

/* ---- create --------------------------------------------------------------------- */

static int render_created(cli_ctx *ctx, const vms_json *r)
{
	cli_cell c = {0};
	get_fullname(&c, r);
	if (ctx->scripted)
		printf("%s\t%s\n", c.text, cli_json_str(r, "uuid"));
	else
		printf("created snapshot %s (%s), %zu disk(s)\n", c.text, cli_json_str(r, "uuid"),
		       vms_json_array_len(vms_json_object_get(r, "disks")));
	return 0;
}

static int snapshot_create(cli_ctx *ctx, const cli_args *a)
{
	if (strchr(a->pos[0], '@'))
		return cli_usage(ctx, "snapshot create takes VM NAME ('%s' names a snapshot)", a->pos[0]);
	vms_json *args = cli_args_with(a, "vm", a->pos[0], NULL);
	if (!args || vms_json_object_set_string(args, "name", a->pos[1]) < 0) {
		vms_json_free(args);
		return cli_nomem(ctx);
	}
	return cli_simple(ctx, "snapshot.create", args, render_created);
}

/* ---- list ------------------------------------------------------------------------ */

static int render_list(cli_ctx *ctx, const vms_json *r)
{
	return cli_table(ctx, cli_snapshot_columns, vms_json_object_get(r, "snapshots"));
}

/* snapshot.list arguments shared by the per-VM requests. */
static int list_args(cli_ctx *ctx, vms_json **out, const cli_args *a, const char *vm)
{
	vms_json *args = cli_args_with(a, "vm", vm, "name since until all");
	int rc;
	*out = NULL;
	if (!args)
		return cli_nomem(ctx);
	if (cli_opt_has(a, "limit") && (rc = cli_arg_uint(ctx, args, "limit", cli_opt_get(a, "limit"))) != 0) {
		vms_json_free(args);
		return rc;
	}
	*out = args;
	return 0;
}

/* Every VM's snapshots, one request per VM. */
static int list_all_vms(cli_ctx *ctx, const cli_args *a)
{
	cli_response vms = {0};
	vms_json *all = vms_json_new_array(), *env = NULL, *res = NULL;
	char *text = NULL;
	int rc;

	if (!all)
		return cli_nomem(ctx);
	vms_json *vargs = cli_args_with(a, NULL, NULL, "all");
	if (!vargs) {
		rc = cli_nomem(ctx);
		goto done;
	}
	if ((rc = cli_call(ctx, "vm.list", vargs, &vms)) != 0)
		goto done;
	const vms_json *list = vms_json_object_get(vms.result, "vms");
	for (size_t i = 0; i < vms_json_array_len(list); i++) {
		const char *uuid = cli_json_str(vms_json_array_get(list, i), "uuid");
		vms_json *args;
		cli_response r;
		if (!uuid)
			continue;
		if ((rc = list_args(ctx, &args, a, uuid)) != 0)
			goto done;
		if ((rc = cli_call(ctx, "snapshot.list", args, &r)) != 0)
			goto done;
		const vms_json *snaps = vms_json_object_get(r.result, "snapshots");
		for (size_t j = 0; j < vms_json_array_len(snaps); j++)
			if (vms_json_array_append(all, vms_json_copy(vms_json_array_get(snaps, j))) < 0) {
				cli_response_free(&r);
				rc = cli_nomem(ctx);
				goto done;
			}
		cli_response_free(&r);
	}
	if (!ctx->json) {
		rc = cli_table(ctx, cli_snapshot_columns, all);
		goto done;
	}
	if (!(env = vms_json_new_object()) || !(res = vms_json_new_object()) ||
	    vms_json_object_set_int(env, "output_version", 1) < 0 ||
	    vms_json_object_set_int(res, "count", (int64_t)vms_json_array_len(all)) < 0 ||
	    vms_json_object_set(res, "snapshots", all) < 0) {
		all = NULL;
		rc = cli_nomem(ctx);
		goto done;
	}
	all = NULL;
	if (vms_json_object_set(env, "result", res) < 0) {
		res = NULL;
		rc = cli_nomem(ctx);
		goto done;
	}
	res = NULL;
	if (vms_json_serialize(&text, env, 0) < 0) {
		rc = cli_nomem(ctx);
		goto done;
	}
	printf("%s\n", text);
done:
	free(text);
	vms_json_free(res);
	vms_json_free(env);
	vms_json_free(all);
	cli_response_free(&vms);
	return rc;
}

static int snapshot_list(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args;
	int rc;
	if (cli_opt_has(a, "tree"))
		return cli_vm_tree(ctx, a, a->npos ? a->pos[0] : NULL);
	if ((rc = cli_columns_check(ctx, cli_snapshot_columns)) != 0)
		return rc;
	if (!a->npos)
		return list_all_vms(ctx, a);
	if ((rc = list_args(ctx, &args, a, a->pos[0])) != 0)
		return rc;
	return cli_simple(ctx, "snapshot.list", args, render_list);
}

/* ---- show, find ----------------------------------------------------------------------- */

static int render_show(cli_ctx *ctx, const vms_json *r)
{
	int rc = cli_record(ctx, cli_snapshot_columns, r);
	if (rc || ctx->columns || ctx->scripted)
		return rc;
	cli_ctx sub = *ctx;
	sub.columns = NULL;
	sub.nsort = 0;
	printf("\ndisks:\n");
	if (vms_json_array_len(vms_json_object_get(r, "disks")))
		rc = cli_table(&sub, snapdisk_columns, vms_json_object_get(r, "disks"));
	else
		printf("  (none)\n");
	printf("\nclones:\n");
	if (!rc && vms_json_array_len(vms_json_object_get(r, "clones")))
		rc = cli_table(&sub, clone_columns, vms_json_object_get(r, "clones"));
	else
		printf("  (none)\n");
	return rc;
}

static int snapshot_show(cli_ctx *ctx, const cli_args *a)
{
	int rc = cli_columns_check(ctx, cli_snapshot_columns);
	return rc ? rc : cli_one_arg(ctx, "snapshot.show", "snapshot", a->pos[0], render_show);
}

static int snapshot_find(cli_ctx *ctx, const cli_args *a)
{
	return cli_show(ctx, a, "snapshot.find", "snapshot");
}

/* ---- delete, rollback ------------------------------------------------------------------ */

static int snapshot_delete(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args = cli_args_with(a, "snapshot", a->pos[0], "defer force dry-run");
	return args ? cli_simple(ctx, "snapshot.delete", args, cli_render_deletion) : cli_nomem(ctx);
}

static int snapshot_rollback(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args = cli_args_with(a, "snapshot", a->pos[0], "force dry-run");
	return args ? cli_simple(ctx, "snapshot.rollback", args, cli_render_rollback) : cli_nomem(ctx);
}

static const cli_opt list_opts[] = {
	{"name", 0, "NAME", "only snapshots with this user name"},
	{"since", 0, "TIME", "only snapshots taken at or after TIME"},
	{"until", 0, "TIME", "only snapshots taken at or before TIME"},
	{"limit", 0, "N", "only the newest N"},
	CLI_OPT_ALL,
	{"tree", 't', NULL, "show parentage: snapshots and the clones made from them"},
	{0},
};
static const cli_opt delete_opts[] = {
	{"defer", 0, NULL, "when clones depend on it: mark it deleted, reclaimed with its last clone"},
	CLI_OPT_FORCE,
	CLI_OPT_DRY_RUN,
	{0},
};

const cli_command cli_snapshot_commands[] = {
	{"snapshot", "create", "VM NAME", "Snapshot every disk of a VM at once, named NAME_YYYYMMDDTHH:MM:SS (UTC)",
	 2, 2, NULL, "example:\n  vmsnap snapshot create vm1 nightly\n", snapshot_create, NULL},
	{"snapshot", "list", "[VM] [--name NAME] [--since TIME] [--until TIME] [--limit N] [--all] [--tree]",
	 "List snapshots, oldest first (every VM's when no VM is given)", 0, 1, list_opts,
	 "examples:\n"
	 "  vmsnap snapshot list vm1 --since 2026-11-01 --until 2026-11-23\n"
	 "  vmsnap snapshot list vm1 --name nightly --limit 7 -H -o name\n",
	 snapshot_list, cli_snapshot_columns},
	{"snapshot", "show", "VM@SNAPSHOT|UUID", "Show a snapshot with its disks and clones", 1, 1, NULL,
	 "examples:\n  vmsnap snapshot show vm1@nightly_20261123T10:00:00\n  vmsnap snapshot show vm1@latest\n",
	 snapshot_show, cli_snapshot_columns},
	{"snapshot", "find", "VM@SELECTOR", "Resolve a selector to one snapshot and its rank (0 = oldest)", 1, 1,
	 NULL,
	 "selectors: full name, user name, latest, latest~N, before:TIME, after:TIME, UUID\n"
	 "examples:\n  vmsnap snapshot find vm1@before:2026-11-23T10:00\n  vmsnap snapshot find vm1@latest~2\n",
	 snapshot_find, find_columns},
	{"snapshot", "delete", "VM@SNAPSHOT|UUID [--defer] [--force] [-n]",
	 "Delete a snapshot (refused while clones depend on it, unless --defer)", 1, 1, delete_opts,
	 "example:\n  vmsnap snapshot delete vm1@nightly --defer\n", snapshot_delete, NULL},
	{"snapshot", "rollback", "VM@SNAPSHOT|UUID [--force] [-n]",
	 "Restore every disk of the snapshot's VM to it, keeping newer snapshots", 1, 1,
	 cli_opts_force_dry_run, NULL,
	 snapshot_rollback, NULL},
	{0},
};
