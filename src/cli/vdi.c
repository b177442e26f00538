/*
 * vdi.c - vmsnap vdi (alias disk) create|list|show|delete|resize.
 * A disk is addressed as VM/DISK or by its UUID.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

const cli_column cli_vdi_columns[] = {
	{"name", "NAME", CLI_COL_STR, "export", NULL, 1},
	{"device", "DEVICE", CLI_COL_INT, "device", NULL, 1},
	{"size", "SIZE", CLI_COL_SIZE, "size", NULL, 1},
	{"sr", "SR", CLI_COL_STR, "sr", NULL, 1},
	{"created", "CREATED", CLI_COL_TIME, "created_time", NULL, 1},
	{"vm", "VM", CLI_COL_STR, "vm", NULL, 0},
	{"disk", "DISK", CLI_COL_STR, "name", NULL, 0},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 0},
	{"state", "STATE", CLI_COL_STR, "state", NULL, 0},
	{"deleted", "DELETED", CLI_COL_BOOL, "is_deleted", NULL, 0},
	{"ref", "REF", CLI_COL_STR, "ref", NULL, 0},
	{"vm_uuid", "VM_UUID", CLI_COL_STR, "vm_uuid", NULL, 0},
	{0},
};

static int render_created(cli_ctx *ctx, const vms_json *r)
{
	char size[64];
	cli_fmt_size(size, sizeof size, cli_json_int(r, "size", 0), ctx->parsable);
	if (ctx->scripted)
		printf("%s\t%s\t%s\n", cli_json_str(r, "export"), cli_json_str(r, "uuid"), size);
	else
		printf("created disk %s (%s), %s, device %lld\n", cli_json_str(r, "export"), cli_json_str(r, "uuid"),
		       size, (long long)cli_json_int(r, "device", -1));
	return 0;
}

static int vdi_create(cli_ctx *ctx, const cli_args *a)
{
	const char *spec = a->pos[0], *slash = strchr(spec, '/');
	const char *size = a->npos > 1 ? a->pos[1] : cli_opt_get(a, "size");
	char vm[256];
	int rc;

	if (!slash || slash == spec || !slash[1] || (size_t)(slash - spec) >= sizeof vm)
		return cli_usage(ctx, "bad disk '%s': use VM/DISK, e.g. vm1/data", spec);
	if (!size)
		return cli_usage(ctx, "vdi create needs a size: VM/DISK SIZE");
	if (a->npos > 1 && cli_opt_has(a, "size"))
		return cli_usage(ctx, "size given twice");
	snprintf(vm, sizeof vm, "%.*s", (int)(slash - spec), spec);
	vms_json *args = vms_json_new_object();
	if (!args || vms_json_object_set_string(args, "vm", vm) < 0 ||
	    vms_json_object_set_string(args, "name", slash + 1) < 0) {
		vms_json_free(args);
		return cli_nomem(ctx);
	}
	if ((rc = cli_arg_size(ctx, args, "size", size)) != 0 ||
	    (cli_opt_has(a, "device") && (rc = cli_arg_uint(ctx, args, "device", cli_opt_get(a, "device"))) != 0)) {
		vms_json_free(args);
		return rc;
	}
	return cli_simple(ctx, "vdi.create", args, render_created);
}

static int render_list(cli_ctx *ctx, const vms_json *r)
{
	return cli_table(ctx, cli_vdi_columns, vms_json_object_get(r, "vdis"));
}

static int vdi_list(cli_ctx *ctx, const cli_args *a)
{
	int rc = cli_columns_check(ctx, cli_vdi_columns);
	if (rc)
		return rc;
	if (a->npos && cli_opt_has(a, "sr"))
		return cli_usage(ctx, "give a VM or --sr, not both");
	vms_json *args = cli_args_with(a, a->npos ? "vm" : NULL, a->pos[0], "sr all");
	return args ? cli_simple(ctx, "vdi.list", args, render_list) : cli_nomem(ctx);
}

static int vdi_show(cli_ctx *ctx, const cli_args *a)
{
	return cli_show(ctx, a, "vdi.show", "vdi");
}

static int vdi_delete(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args = cli_args_with(a, "vdi", a->pos[0], "force dry-run");
	return args ? cli_simple(ctx, "vdi.delete", args, cli_render_deletion) : cli_nomem(ctx);
}

static int render_resized(cli_ctx *ctx, const vms_json *r)
{
	char size[64];
	cli_fmt_size(size, sizeof size, cli_json_int(r, "size", 0), ctx->parsable);
	if (ctx->scripted)
		printf("%s\t%s\n", cli_json_str(r, "export"), size);
	else
		printf("resized disk %s to %s\n", cli_json_str(r, "export"), size);
	return 0;
}

static int vdi_resize(cli_ctx *ctx, const cli_args *a)
{
	const char *size = a->npos > 1 ? a->pos[1] : cli_opt_get(a, "size");
	int rc;
	if (!size)
		return cli_usage(ctx, "vdi resize needs the new size: VDI SIZE");
	if (a->npos > 1 && cli_opt_has(a, "size"))
		return cli_usage(ctx, "size given twice");
	vms_json *args = cli_args_with(a, "vdi", a->pos[0], "force");
	if (!args)
		return cli_nomem(ctx);
	if ((rc = cli_arg_size(ctx, args, "size", size)) != 0) {
		vms_json_free(args);
		return rc;
	}
	return cli_simple(ctx, "vdi.resize", args, render_resized);
}

static const cli_opt create_opts[] = {
	{"size", 0, "SIZE", "virtual size (or give it as the second argument)"},
	{"device", 0, "N", "device position (default: the first free one)"},
	{0},
};
static const cli_opt list_opts[] = {
	{"sr", 0, "SR", "only the disks of this SR"},
	CLI_OPT_ALL,
	{0},
};
static const cli_opt resize_opts[] = {
	{"size", 0, "SIZE", "new size (or give it as the second argument)"},
	{"force", 'f', NULL, "allow shrinking (data past the new end is lost), or resize a disk in use"},
	{0},
};

const cli_command cli_vdi_commands[] = {
	{"vdi", "create", "VM/DISK SIZE [--device N]", "Add a disk to a VM", 1, 2, create_opts,
	 "example:\n  vmsnap vdi create vm1/scratch 4G\n", vdi_create, NULL},
	{"vdi", "list", "[VM] [--sr SR] [--all]", "List disks", 0, 1, list_opts,
	 NULL, vdi_list, cli_vdi_columns},
	{"vdi", "show", "VM/DISK|UUID", "Show one disk", 1, 1, NULL, NULL, vdi_show, cli_vdi_columns},
	{"vdi", "delete", "VM/DISK|UUID [--force] [-n]",
	 "Delete a disk (space held by snapshots stays with them until they go)", 1, 1,
	 cli_opts_force_dry_run, NULL,
	 vdi_delete, NULL},
	{"vdi", "resize", "VM/DISK|UUID SIZE [--force]", "Grow a disk (shrinking needs --force)", 1, 2,
	 resize_opts, "example:\n  vmsnap vdi resize vm1/data 200G\n", vdi_resize, NULL},
	{0},
};
