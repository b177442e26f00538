/*
 * sr.c - vmsnap sr create|list|show|destroy: storage repositories.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "vmsnap/backend.h"
#include "vmsnap/error.h"

static void get_caps(cli_cell *c, const vms_json *rec)
{
	const vms_json *caps = vms_json_object_get(rec, "caps");
	size_t n = 0;
	if (!caps)
		return;
	c->kind = 1;
	for (size_t i = 0; i < vms_json_array_len(caps) && n < sizeof c->text; i++)
		n += snprintf(c->text + n, sizeof c->text - n, "%s%s", i ? "," : "",
		              vms_json_string(vms_json_array_get(caps, i)));
}

static const cli_column sr_columns[] = {
	{"name", "NAME", CLI_COL_STR, "name", NULL, 1},
	{"type", "TYPE", CLI_COL_STR, "type", NULL, 1},
	{"size", "SIZE", CLI_COL_SIZE, "space.total", NULL, 1},
	{"used", "USED", CLI_COL_SIZE, "space.used", NULL, 1},
	{"free", "FREE", CLI_COL_SIZE, "space.free", NULL, 1},
	{"vms", "VMS", CLI_COL_INT, "vm_count", NULL, 1},
	{"state", "STATE", CLI_COL_STR, "state", NULL, 1},
	{"location", "LOCATION", CLI_COL_STR, "location", NULL, 1},
	{"uuid", "UUID", CLI_COL_STR, "uuid", NULL, 0},
	{"created", "CREATED", CLI_COL_TIME, "created_time", NULL, 0},
	{"options", "OPTIONS", CLI_COL_STR, "options", NULL, 0},
	{"caps", "CAPS", CLI_COL_STR, NULL, get_caps, 0},
	{"format", "FORMAT", CLI_COL_INT, "properties.format_version", NULL, 0},
	{"index", "INDEX", CLI_COL_STR, "properties.index", NULL, 0},
	{"block_size", "BLOCK_SIZE", CLI_COL_SIZE, "properties.block_size", NULL, 0},
	{0},
};

/* ---- create ---------------------------------------------------------------- */

static int render_created(cli_ctx *ctx, const vms_json *r)
{
	if (ctx->scripted)
		printf("%s\t%s\n", cli_json_str(r, "name"), cli_json_str(r, "uuid"));
	else
		printf("created SR %s (%s)\n", cli_json_str(r, "name"), cli_json_str(r, "uuid"));
	return 0;
}

static int sr_create(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args = vms_json_new_object();
	const char *type = cli_opt_get(a, "type"), *size = cli_opt_get(a, "size");
	char options[1024];
	size_t n = 0;
	int rc;

	if (!args)
		return cli_nomem(ctx);
	options[0] = '\0';
	for (int i = 0; i < a->nset; i++)
		if (!strcmp(a->set[i].opt->name, "option") && n < sizeof options)
			n += snprintf(options + n, sizeof options - n, "%s%s", n ? "," : "", a->set[i].val);
	if (n >= sizeof options) {
		rc = cli_usage(ctx, "options too long");
		goto done;
	}
	/* A directory given relative to the shell's working directory means
	 * nothing to vmsnapd; the backend says when a location is a name of its
	 * own (zfs: a dataset), not a path.  An unknown type is refused later. */
	const char *location = a->pos[1];
	const vms_backend *be = vms_backend_find(type ? type : "native");
	char abs[PATH_MAX], cwd[PATH_MAX];
	vms_error_clear();
	if (location[0] != '/' && !(be && (be->caps & VMS_CAP_NAMED_LOCATION))) {
		if (!getcwd(cwd, sizeof cwd)) {
			rc = cli_fail(ctx, "IO", "cannot resolve '%s': %s", location, strerror(errno));
			goto done;
		}
		if ((size_t)snprintf(abs, sizeof abs, "%s/%s", strcmp(cwd, "/") ? cwd : "", location) >= sizeof abs) {
			rc = cli_usage(ctx, "location too long");
			goto done;
		}
		location = abs;
	}
	if (vms_json_object_set_string(args, "name", a->pos[0]) < 0 ||
	    vms_json_object_set_string(args, "type", type ? type : "native") < 0 ||
	    vms_json_object_set_string(args, "location", location) < 0 ||
	    (n && vms_json_object_set_string(args, "options", options) < 0)) {
		rc = cli_nomem(ctx);
		goto done;
	}
	if (size && (rc = cli_arg_size(ctx, args, "size", size)) != 0)
		goto done;
	rc = cli_simple(ctx, "sr.create", args, render_created);
	args = NULL;
done:
	vms_json_free(args);
	return rc;
}

/* ---- list, show -------------------------------------------------------------- */

static int render_list(cli_ctx *ctx, const vms_json *r)
{
	return cli_table(ctx, sr_columns, vms_json_object_get(r, "srs"));
}

static int sr_list(cli_ctx *ctx, const cli_args *a)
{
	int rc = cli_columns_check(ctx, sr_columns);
	return rc ? rc : cli_simple(ctx, "sr.list", NULL, render_list);
}

static int sr_show(cli_ctx *ctx, const cli_args *a)
{
	return cli_show(ctx, a, "sr.show", "sr");
}

/* ---- destroy ------------------------------------------------------------------ */

static int render_destroyed(cli_ctx *ctx, const vms_json *r)
{
	int dry = vms_json_bool(vms_json_object_get(r, "dry_run"));
	const vms_json *d = vms_json_object_get(r, "destroyed");
	if (ctx->scripted)
		printf("%s\tsr\t%s\t%s\n", dry ? "would destroy" : "destroyed", cli_json_str(d, "name"),
		       cli_json_str(d, "uuid"));
	else
		printf("%s SR %s (%s)\n", dry ? "would destroy" : "destroyed", cli_json_str(d, "name"),
		       cli_json_str(d, "uuid"));
	return 0;
}

static int sr_destroy(cli_ctx *ctx, const cli_args *a)
{
	vms_json *args = cli_args_with(a, "sr", a->pos[0], "dry-run");
	return args ? cli_simple(ctx, "sr.destroy", args, render_destroyed) : cli_nomem(ctx);
}

static const cli_opt create_opts[] = {
	{"type", 't', "TYPE", "native (default), zfs or reflink"},
	{"size", 0, "SIZE", "pool size (native: required), e.g. 10G"},
	{"option", 'O', "KEY=VALUE", "backend option, repeatable; native: block_size=4096..65536, "
	 "checksums=on|off, index=radix|keys"},
	{0},
};

static const cli_opt destroy_opts[] = {
	CLI_OPT_DRY_RUN,
	{0},
};

const cli_command cli_sr_commands[] = {
	{"sr", "create", "NAME LOCATION --type TYPE [--size SIZE] [-O KEY=VALUE]...",
	 "Create an SR: native (a pool file in directory LOCATION), zfs (LOCATION is a dataset), "
	 "reflink (a directory on XFS/btrfs/OCFS2)",
	 2, 2, create_opts,
	 "native index: keys (format 3, the default: versioned keys, index metadata under 1% of\n"
	 "the data rewritten between snapshots) or radix (format 2: a radix tree per volume and\n"
	 "snapshot); docs/design/index-v3.md\n"
	 "examples:\n"
	 "  vmsnap sr create sr1 --type native --size 10G /var/lib/vmsnap/sr1\n"
	 "  vmsnap sr create fast --size 100G -O block_size=16384 -O checksums=off /srv/fast\n"
	 "  vmsnap sr create old --size 100G -O index=radix /srv/old\n",
	 sr_create, NULL},
	{"sr", "list", "", "List SRs with their space", 0, 0, NULL,
	 NULL, sr_list, sr_columns},
	{"sr", "show", "SR", "Show one SR (name or UUID)", 1, 1, NULL, NULL, sr_show, sr_columns},
	{"sr", "destroy", "SR [-n]", "Destroy an empty SR (refused while it holds VMs, deleted ones included)",
	 1, 1, destroy_opts, NULL, sr_destroy, NULL},
	{0},
};
