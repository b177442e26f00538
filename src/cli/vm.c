/*
 * vm.c - vmsnap vm create|list|show|delete|clone|rollback|tree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void get_disk_total(cli_cell *c, const vms_json *rec)
{
	const vms_json *disks = vms_json_object_get(rec, "disks");
	if (!disks)
		return;
	c->kind = 2;
	for (size_t i = 0; i < vms_json_array_len(disks); i++)
		c->num += cli_json_int(vms_json_array_get(disks, i), "size", 0);
}

static void get_parent(cli_cell *c, const vms_json *rec)
{
	const vms_json *p = vms_json_object_get(rec, "parent");
	if (vms_json_type_of(p) != VMS_JSON_OBJECT)
		return;
	const char *vm = cli_json_str(p, "vm"), *snap = cli_json_str(p, "snapshot");
	c->kind = 1;
	snprintf(c->text, sizeof c->text, "%s@%s", vm ? vm : cli_json_str(p, "vm_uuid"),
	         snap ? snap : cli_json_str(p, "snapshot_uuid"));
}

const cli_column cli_vm_columns[] = {
	{"name", "NAME", CLI_COL_STR, "name", NULL, 1},
	{"sr", "SR", CLI_COL_STR, "sr", NULL, 1},
	{"disks", "DISKS", CLI_COL_INT, "disks", NULL, 1},
	{"size", "SIZE", CLI_COL_SIZE, NULL, get_disk_total, 1},
	{"snapshots", "SNAPSHOTS", CLI_COL_INT, "snapshot_count", NULL, 1},
	{"clones", "CLONES", CLI_COL_INT, "clone_count", NULL, 1},
	{"parent", "PARENT", CLI_COL_STR, NULL, get_parent, 1},
	{"created", "CREATED", CLI_COL_TIME, "created_time", NULL, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 0},
	{"state", "STATE", CLI_COL_STR, "state", NULL, 0},
	{"deleted", "DELETED", CLI_COL_BOOL, "is_deleted", NULL, 0},
	{"sr_uuid", "SR_UUID", CLI_COL_STR, "sr_uuid", NULL, 0},
	{0},
};

static const cli_column disk_columns[] = {
	{"name", "DISK", CLI_COL_STR, "name", NULL, 1},
	{"device", "DEVICE", CLI_COL_INT, "device", NULL, 1},
	{"size", "SIZE", CLI_COL_SIZE, "size", NULL, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 1},
	{0},
};

/* ---- create ------------------------------------------------------------------ */

static int render_vm_created(cli_ctx *ctx, const vms_json *r)
{
	char parent[300] = "";
	cli_cell c = {0};
	get_parent(&c, r);
	if (c.kind)
		snprintf(parent, sizeof parent, " from %s", c.text);
	if (ctx->scripted)
		printf("%s\t%s\n", cli_json_str(r, "name"), cli_json_str(r, "uuid"));
	else
		printf("created VM %s (%s)%s\n", cli_json_str(r, "name"), cli_json_str(r, "uuid"), parent);
	return 0;
}

/* "--disk NAME:SIZE" -> {"name":NAME,"size":bytes} */
static int disk_spec(cli_ctx *ctx, vms_json *disks, const char *spec)
{
	const char *colon = strchr(spec, ':');
	vms_json *d;
	char name[128];
	int rc;
	if (!colon || colon == spec || !colon[1] || (size_t)(colon - spec) >= sizeof name)
		return cli_usage(ctx, "bad disk '%s': use NAME:SIZE, e.g. root:20G", spec);
	memcpy(name, spec, (size_t)(colon - spec));
	name[colon - spec] = '\0';
	if (!(d = vms_json_new_object()) || vms_json_object_set_string(d, "name", name) < 0) {
		vms_json_free(d);
		return cli_nomem(ctx);
	}
	if ((rc = cli_arg_size(ctx, d, "size", colon + 1)) != 0) {
		vms_json_free(d);
		return rc;
	}
	return vms_json_array_append(disks, d) < 0 ? cli_nomem(ctx) : 0;
}

static int vm_create(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args = vms_json_new_object(), *disks = vms_json_new_array();
	int rc = 0;
	if (!args || !disks) {
		rc = cli_nomem(ctx);
		goto done;
	}
	if (!cli_opt_has(a, "sr")) {
		rc = cli_usage(ctx, "vm create needs --sr SR");
		goto done;
	}
	for (int i = 0; i < a->nset; i++)
		if (!strcmp(a->set[i].opt->name, "disk") && (rc = disk_spec(ctx, disks, a->set[i].val)) != 0)
			goto done;
	if (vms_json_object_set_string(args, "name", a->pos[0]) < 0 ||
	    vms_json_object_set_string(args, "sr", cli_opt_get(a, "sr")) < 0) {
		rc = cli_nomem(ctx);
		goto done;
	}
	if (vms_json_object_set(args, "disks", disks) < 0) {
		disks = NULL;
		rc = cli_nomem(ctx);
		goto done;
	}
	disks = NULL;
	rc = cli_simple(ctx, "vm.create", args, render_vm_created);
	args = NULL;
done:
	vms_json_free(disks);
	vms_json_free(args);
	return rc;
}

/* ---- list, tree, show -------------------------------------------------------------- */

static int render_vm_list(cli_ctx *ctx, const vms_json *r)
{
	return cli_table(ctx, cli_vm_columns, vms_json_object_get(r, "vms"));
}

/* vm.tree of one VM (NULL: every root VM); also "vm list --tree" and
 * "snapshot list --tree". */
int cli_vm_tree(cli_ctx *ctx, const cli_args *a, const char *vm)
{
	vms_json *args = cli_args_with(a, vm ? "vm" : NULL, vm, "all");
	return args ? cli_simple(ctx, "vm.tree", args, cli_render_tree) : cli_nomem(ctx);
}

static int vm_list(cli_ctx *ctx, const cli_args *a)
{
	int rc;
	if (cli_opt_has(a, "tree")) {
		if (cli_opt_has(a, "sr"))
			return cli_usage(ctx, "--tree shows every VM; it does not take --sr");
		return cli_vm_tree(ctx, a, NULL);
	}
	if ((rc = cli_columns_check(ctx, cli_vm_columns)) != 0)
		return rc;
	vms_json *args = cli_args_with(a, NULL, NULL, "sr all");
	return args ? cli_simple(ctx, "vm.list", args, render_vm_list) : cli_nomem(ctx);
}

static int vm_tree(cli_ctx *ctx, const cli_args *a)
{
	return cli_vm_tree(ctx, a, a->npos ? a->pos[0] : NULL);
}

/* Print a sub-table of a record (disks, snapshots) with default columns. */
static int sub_table(cli_ctx *ctx, const char *title, const cli_column *cols, const vms_json *list)
{
	cli_ctx sub = *ctx;
	sub.columns = NULL;
	sub.nsort = 0;
	if (!ctx->scripted)
		printf("\n%s:\n", title);
	if (!vms_json_array_len(list)) {
		if (!ctx->scripted)
			printf("  (none)\n");
		return 0;
	}
	return cli_table(&sub, cols, list);
}

static int render_vm_show(cli_ctx *ctx, const vms_json *r)
{
	int rc = cli_record(ctx, cli_vm_columns, r);
	if (rc || ctx->columns || ctx->scripted)
		return rc;
	if ((rc = sub_table(ctx, "disks", disk_columns, vms_json_object_get(r, "disks"))) != 0)
		return rc;
	if (vms_json_object_get(r, "snapshots"))
		rc = sub_table(ctx, "snapshots", cli_snapshot_columns, vms_json_object_get(r, "snapshots"));
	return rc;
}

static int vm_show(cli_ctx *ctx, const cli_args *a)
{
	int rc = cli_columns_check(ctx, cli_vm_columns);
	if (rc)
		return rc;
	vms_json *args = cli_args_with(a, "vm", a->pos[0], "all");
	return args ? cli_simple(ctx, "vm.show", args, render_vm_show) : cli_nomem(ctx);
}

/* ---- delete, clone, rollback ------------------------------------------------------------ */

static int vm_delete(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args = cli_args_with(a, "vm", a->pos[0], "recursive defer force dry-run");
	return args ? cli_simple(ctx, "vm.delete", args, cli_render_deletion) : cli_nomem(ctx);
}

static int vm_clone(cli_ctx *ctx, const cli_args *a)
{
	if (!strchr(a->pos[0], '@') && !strchr(a->pos[0], '-'))
		return cli_usage(ctx, "'%s' is not a snapshot: use VM@SNAPSHOT (e.g. vm1@nightly, vm1@latest) or a "
		                      "snapshot UUID", a->pos[0]);
	vms_json *args = cli_args_with(a, "snapshot", a->pos[0], NULL);
	if (!args || vms_json_object_set_string(args, "name", a->pos[1]) < 0) {
		vms_json_free(args);
		return cli_nomem(ctx);
	}
	return cli_simple(ctx, "vm.clone", args, render_vm_created);
}

static int vm_rollback(cli_ctx *ctx, const cli_args *a)
{
	char vm[512];
	const char *snap;
	if (a->npos == 2) {
		snprintf(vm, sizeof vm, "%s", a->pos[0]);
		snap = a->pos[1];
	} else {
		const char *at = strchr(a->pos[0], '@');
		if (!at)
			return cli_usage(ctx, "which snapshot? use 'vm rollback VM SNAPSHOT' or 'vm rollback VM@SNAPSHOT'");
		snprintf(vm, sizeof vm, "%.*s", (int)(at - a->pos[0]), a->pos[0]);
		snap = a->pos[0];
	}
	vms_json *args = cli_args_with(a, "vm", vm, "force dry-run");
	if (!args || vms_json_object_set_string(args, "snapshot", snap) < 0) {
		vms_json_free(args);
		return cli_nomem(ctx);
	}
	return cli_simple(ctx, "vm.rollback", args, cli_render_rollback);
}

static const cli_opt create_opts[] = {
	{"sr", 0, "SR", "the SR that holds the VM's disks and snapshots (required)"},
	{"disk", 'd', "NAME:SIZE", "add a disk, repeatable; device positions 0,1,... in order"},
	{0},
};
static const cli_opt list_opts[] = {
	{"sr", 0, "SR", "only the VMs of this SR"},
	CLI_OPT_ALL,
	{"tree", 't', NULL, "show parentage: VMs, their snapshots and the clones made from them"},
	{0},
};
static const cli_opt show_opts[] = {
	CLI_OPT_ALL,
	{0},
};
static const cli_opt delete_opts[] = {
	{"recursive", 'r', NULL, "also delete the VM's snapshots"},
	{"defer", 0, NULL, "snapshots with clones: mark them (and the VM) deleted, reclaimed with their last clone"},
	CLI_OPT_FORCE,
	CLI_OPT_DRY_RUN,
	{0},
};

const cli_command cli_vm_commands[] = {
	{"vm", "create", "NAME --sr SR [--disk NAME:SIZE]...", "Create a VM, with its disks", 1, 1, create_opts,
	 "example:\n  vmsnap vm create vm1 --sr sr1 --disk root:20G --disk data:100G\n", vm_create, NULL},
	{"vm", "list", "[--sr SR] [--all] [--tree]", "List VMs", 0, 0, list_opts,
	 NULL, vm_list, cli_vm_columns},
	{"vm", "show", "VM [--all]", "Show a VM with its disks and snapshots", 1, 1, show_opts, NULL, vm_show,
	 cli_vm_columns},
	{"vm", "delete", "VM [--recursive] [--defer] [--force] [-n]",
	 "Delete a VM and its disks (refused while it has snapshots, unless --recursive; refused while clones "
	 "depend on its snapshots, unless --defer)",
	 1, 1, delete_opts,
	 "examples:\n  vmsnap vm delete vm2\n  vmsnap vm delete vm1 --recursive --defer -n\n", vm_delete, NULL},
	{"vm", "clone", "VM@SNAPSHOT NAME", "Create VM NAME from a snapshot (every disk, sharing blocks)", 2, 2, NULL,
	 "examples:\n  vmsnap vm clone vm1@nightly vm2\n  vmsnap vm clone vm1@latest~1 test\n", vm_clone, NULL},
	{"vm", "rollback", "VM SNAPSHOT | VM@SNAPSHOT [--force] [-n]",
	 "Restore every disk of the VM to a snapshot, any snapshot, keeping the newer ones", 1, 2,
	 cli_opts_force_dry_run,
	 "examples:\n  vmsnap vm rollback vm1 nightly_20261123T10:00:00\n  vmsnap vm rollback vm1@latest~2\n",
	 vm_rollback, NULL},
	{"vm", "tree", "[VM] [--all]", "Show VMs, their snapshots and the clones made from them", 0, 1, show_opts,
	 NULL, vm_tree, NULL},
	{0},
};
