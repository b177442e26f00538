/*
 * main.c - `vmsnap <noun> <verb> [args]`: option parsing, dispatch to the
 * command tables of the groups, and help generated from those tables.
 *
 * Options follow GNU conventions: they may come before the noun (common
 * options only) or anywhere after the verb, "--opt=value" or "--opt value",
 * short flags may be bundled ("-rn"), and "--" ends the options.  An
 * argument that looks like a negative number ("-1") is taken as a
 * positional, so that "vdi resize vm1/root -1" is refused as a bad size
 * rather than as an unknown option.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vmsnap/error.h"

/* Options every command accepts. */
static const cli_opt common_opts[] = {
	{"home", 0, "DIR", "catalog directory (default $VMSNAP_HOME, else /var/lib/vmsnap)"},
	{"json", 0, NULL, "print the response envelope {\"output_version\":1,...} as is"},
	{"no-daemon", 0, NULL, "run in process even when vmsnapd answers on <home>/control.sock"},
	{"scripted", 'H', NULL, "no header, fields separated by one tab"},
	{"parsable", 'p', NULL, "exact numbers: bytes, epoch seconds"},
	{"columns", 'o', "COL,...", "columns (or properties) to print"},
	{"sort", 's', "COL", "sort rows by COL, ascending (repeatable)"},
	{"sort-desc", 'S', "COL", "sort rows by COL, descending (repeatable)"},
	{"help", 'h', NULL, "show this help"},
	{0},
};

const cli_opt cli_opts_force_dry_run[] = {
	CLI_OPT_FORCE,
	CLI_OPT_DRY_RUN,
	{0},
};

typedef struct cli_group {
	const char *name;
	const char *alias;
	const char *summary;
	const cli_command *commands;
} cli_group;

static const cli_group groups[] = {
	{"sr", NULL, "storage repositories (where disks and snapshots live)", cli_sr_commands},
	{"vm", NULL, "virtual machines: their disks, clones, rollback, tree", cli_vm_commands},
	{"vdi", "disk", "virtual disks of a VM", cli_vdi_commands},
	{"snapshot", "snap", "VM snapshots (every disk of the VM at once)", cli_snapshot_commands},
	{"policy", NULL, "snapshot policies: schedule, retention (prune), holds", cli_policy_commands},
	{NULL, NULL, "exports, health, space, version", cli_misc_commands},
};

static const char exit_codes_help[] =
	"exit codes:\n"
	"  0  success\n"
	"  1  error (EXISTS, NOSPC, NOTSUP, IO, CORRUPT, READONLY, PERM, no daemon/catalog)\n"
	"  2  usage error, or invalid argument, name or selector (INVALID; ambiguous selectors\n"
	"     list the candidates)\n"
	"  3  not found (NOTFOUND)\n"
	"  4  refused because other objects depend on it (DEPENDENTS; the message names them\n"
	"     and the flag that overrides: --recursive, --defer)\n"
	"  5  busy: a disk is open for writing by a client (BUSY; --force overrides)\n";

static const char selectors_help[] =
	"addressing:\n"
	"  SR, VM       name or UUID\n"
	"  disk         VM/DISK or UUID\n"
	"  snapshot     UUID, or VM@S where S is a full name (nightly_20261123T10:00:00), a user\n"
	"               name (nightly; refused when ambiguous), latest, latest~N,\n"
	"               before:TIME, after:TIME, or a snapshot UUID\n"
	"  TIME         ISO 8601 UTC: 2026-11-23T10:00:00Z, 2026-11-23T10:00, 2026-11-23,\n"
	"               20261123T10:00:00, @EPOCH\n"
	"  SIZE         bytes or with a binary suffix: 512, 4K, 2G, 1.5T\n";

/* ---- messages ------------------------------------------------------------ */

int cli_exit_code(const char *code)
{
	if (!code)
		return CLI_EXIT_ERROR;
	if (!strcmp(code, "INVALID"))
		return CLI_EXIT_USAGE;
	if (!strcmp(code, "NOTFOUND"))
		return CLI_EXIT_NOTFOUND;
	if (!strcmp(code, "DEPENDENTS"))
		return CLI_EXIT_DEPENDENTS;
	if (!strcmp(code, "BUSY"))
		return CLI_EXIT_BUSY;
	return CLI_EXIT_ERROR;
}

static int vfail(cli_ctx *ctx, const char *code, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof msg, fmt, ap);
	fprintf(stderr, "vmsnap: %s\n", msg);
	if (ctx && ctx->json) {
		/* Scripts reading stdout get an envelope for every failure. */
		vms_json *env = vms_json_new_object(), *err = vms_json_new_object();
		char *text = NULL;
		if (env && err && vms_json_object_set_string(err, "code", code) == 0 &&
		    vms_json_object_set_string(err, "message", msg) == 0 &&
		    vms_json_object_set_int(env, "output_version", 1) == 0) {
			vms_json_object_set(env, "error", err);
			err = NULL;
			if (vms_json_serialize(&text, env, 0) == 0)
				printf("%s\n", text);
		}
		free(text);
		vms_json_free(err);
		vms_json_free(env);
	}
	return cli_exit_code(code);
}

int cli_fail(cli_ctx *ctx, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vfail(ctx, code, fmt, ap);
	va_end(ap);
	return rc;
}

int cli_usage(cli_ctx *ctx, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (ctx && ctx->cmd)
		return cli_fail(ctx, "INVALID", "%s (see 'vmsnap help %s%s%s')", msg,
		                ctx->cmd->noun, ctx->cmd->verb ? " " : "",
		                ctx->cmd->verb ? ctx->cmd->verb : "");
	return cli_fail(ctx, "INVALID", "%s (see 'vmsnap help')", msg);
}

int cli_nomem(cli_ctx *ctx)
{
	return cli_fail(ctx, "NOMEM", "out of memory");
}

/* ---- option parsing ------------------------------------------------------- */

const char *cli_opt_get(const cli_args *a, const char *name)
{
	const char *v = NULL;
	for (int i = 0; i < a->nset; i++)
		if (!strcmp(a->set[i].opt->name, name))
			v = a->set[i].val;
	return v;
}

int cli_opt_has(const cli_args *a, const char *name)
{
	return cli_opt_get(a, name) != NULL;
}

static const cli_opt *find_long(const cli_opt *opts, const char *name, size_t len)
{
	for (; opts && opts->name; opts++)
		if (strlen(opts->name) == len && !strncmp(opts->name, name, len))
			return opts;
	return NULL;
}

static const cli_opt *find_short(const cli_opt *opts, char c)
{
	for (; opts && opts->name; opts++)
		if (opts->short_name == c)
			return opts;
	return NULL;
}

/* Apply a common option to the context (the others stay in cli_args). */
static int apply_common(cli_ctx *ctx, const cli_opt *o, const char *val)
{
	if (!strcmp(o->name, "home"))
		ctx->home = val;
	else if (!strcmp(o->name, "json"))
		ctx->json = 1;
	else if (!strcmp(o->name, "no-daemon"))
		ctx->no_daemon = 1;
	else if (!strcmp(o->name, "scripted"))
		ctx->scripted = 1;
	else if (!strcmp(o->name, "parsable"))
		ctx->parsable = 1;
	else if (!strcmp(o->name, "columns"))
		ctx->columns = val;
	else if (!strcmp(o->name, "sort") || !strcmp(o->name, "sort-desc")) {
		if (ctx->nsort >= (int)(sizeof ctx->sort / sizeof ctx->sort[0]))
			return cli_usage(ctx, "too many sort columns");
		ctx->sort[ctx->nsort].col = val;
		ctx->sort[ctx->nsort].desc = !strcmp(o->name, "sort-desc");
		ctx->nsort++;
	} else if (!strcmp(o->name, "dry-run"))
		ctx->dry_run = 1;
	else if (!strcmp(o->name, "all"))
		ctx->show_deleted = 1;
	return 0;
}

static int looks_positional(const char *s)
{
	return s[0] != '-' || s[1] == '\0' || isdigit((unsigned char)s[1]) || s[1] == '.';
}

static int record(cli_ctx *ctx, cli_args *a, const cli_opt *o, const char *val, int common)
{
	if (a->nset >= CLI_MAX_SET)
		return cli_usage(ctx, "too many options");
	a->set[a->nset].opt = o;
	a->set[a->nset].val = val;
	a->nset++;
	if (common || !strcmp(o->name, "dry-run") || !strcmp(o->name, "all"))
		return apply_common(ctx, o, val);
	return 0;
}

/* Parse argv[*i..argc).  stop_at_positional: leading options only (before
 * the noun).  Returns 0 or an exit code. */
static int parse_args(cli_ctx *ctx, cli_args *a, const cli_opt *cmd_opts, int argc, char **argv,
                      int *i, int stop_at_positional)
{
	int dashdash = 0;
	for (; *i < argc; (*i)++) {
		const char *arg = argv[*i];
		if (dashdash || looks_positional(arg)) {
			if (stop_at_positional)
				return 0;
			if (a->npos >= CLI_MAX_POS)
				return cli_usage(ctx, "too many arguments");
			a->pos[a->npos++] = arg;
			continue;
		}
		if (!strcmp(arg, "--")) {
			if (stop_at_positional) {
				(*i)++;
				return 0;
			}
			dashdash = 1;
			continue;
		}
		if (arg[1] == '-') {
			const char *name = arg + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			const cli_opt *o = find_long(cmd_opts, name, len);
			int common = 0;
			if (!o) {
				o = find_long(common_opts, name, len);
				common = o != NULL;
			}
			if (!o)
				return cli_usage(ctx, "unknown option '--%.*s'", (int)len, name);
			const char *val = "1";
			if (o->metavar) {
				if (eq)
					val = eq + 1;
				else if (*i + 1 < argc)
					val = argv[++(*i)];
				else
					return cli_usage(ctx, "option '--%s' needs a value (%s)", o->name, o->metavar);
			} else if (eq) {
				return cli_usage(ctx, "option '--%s' takes no value", o->name);
			}
			int rc = record(ctx, a, o, val, common);
			if (rc)
				return rc;
			continue;
		}
		for (const char *c = arg + 1; *c; c++) {
			const cli_opt *o = find_short(cmd_opts, *c);
			int common = 0;
			if (!o) {
				o = find_short(common_opts, *c);
				common = o != NULL;
			}
			if (!o)
				return cli_usage(ctx, "unknown option '-%c'", *c);
			const char *val = "1";
			if (o->metavar) {
				if (c[1])
					val = c + 1;
				else if (*i + 1 < argc)
					val = argv[++(*i)];
				else
					return cli_usage(ctx, "option '-%c' needs a value (%s)", *c, o->metavar);
			}
			int rc = record(ctx, a, o, val, common);
			if (rc)
				return rc;
			if (o->metavar)
				break;
		}
	}
	return 0;
}

/* ---- help ------------------------------------------------------------------ */

static void print_opts(FILE *f, const cli_opt *opts)
{
	for (; opts && opts->name; opts++) {
		char left[64];
		if (opts->short_name)
			snprintf(left, sizeof left, "-%c, --%s%s%s", opts->short_name, opts->name,
			         opts->metavar ? " " : "", opts->metavar ? opts->metavar : "");
		else
			snprintf(left, sizeof left, "    --%s%s%s", opts->name, opts->metavar ? " " : "",
			         opts->metavar ? opts->metavar : "");
		fprintf(f, "  %-26s %s\n", left, opts->help);
	}
}

static void command_line(char *out, size_t cap, const cli_command *c)
{
	snprintf(out, cap, "vmsnap %s%s%s%s%s", c->noun, c->verb ? " " : "", c->verb ? c->verb : "",
	         c->usage && *c->usage ? " " : "", c->usage ? c->usage : "");
}

static void help_command(FILE *f, const cli_command *c)
{
	char line[256];
	command_line(line, sizeof line, c);
	fprintf(f, "usage: %s\n\n%s\n", line, c->summary);
	if (c->opts && c->opts->name) {
		fprintf(f, "\noptions:\n");
		print_opts(f, c->opts);
	}
	if (c->columns) {
		fprintf(f, "\ncolumns for -o, -s, -S (* = shown by default):\n ");
		for (const cli_column *col = c->columns; col->name; col++)
			fprintf(f, " %s%s", col->name, col->dflt ? "*" : "");
		fprintf(f, "\n");
	}
	if (c->details)
		fprintf(f, "\n%s", c->details);
	fprintf(f, "\ncommon options:\n");
	print_opts(f, common_opts);
}

static void help_group(FILE *f, const cli_group *g)
{
	char line[256];
	fprintf(f, "vmsnap %s%s%s%s: %s\n\n", g->name ? g->name : "", g->alias ? " (alias " : "",
	        g->alias ? g->alias : "", g->alias ? ")" : "", g->summary);
	for (const cli_command *c = g->commands; c->noun; c++) {
		command_line(line, sizeof line, c);
		fprintf(f, "  %s\n      %s\n", line, c->summary);
	}
	for (const cli_command *c = cli_extra_commands; g->name && c->noun; c++) {
		if (strcmp(c->noun, g->name) != 0)
			continue;
		command_line(line, sizeof line, c);
		fprintf(f, "  %s\n      %s\n", line, c->summary);
	}
	fprintf(f, "\n'vmsnap help %s <verb>' shows the options of one command.\n", g->name ? g->name : "<command>");
}

static void help_all(FILE *f)
{
	fprintf(f, "usage: vmsnap [common options] <noun> <verb> [arguments] [options]\n\n"
	           "vmsnap manages VM disks and their non-chained snapshots.  It talks to vmsnapd\n"
	           "through <home>/control.sock when a daemon runs, else works on the catalog in\n"
	           "process.  'vmsnap help <noun> [<verb>]' shows the help of one command.\n\n");
	for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
		const cli_group *g = &groups[i];
		char line[256];
		if (g->name)
			fprintf(f, "%s%s%s%s:\n", g->name, g->alias ? " (alias " : "", g->alias ? g->alias : "",
			        g->alias ? ")" : "");
		else
			fprintf(f, "other:\n");
		for (const cli_command *c = g->commands; c->noun; c++) {
			command_line(line, sizeof line, c);
			fprintf(f, "  %s\n", line + strlen("vmsnap "));
		}
		for (const cli_command *c = cli_extra_commands; g->name && c->noun; c++)
			if (!strcmp(c->noun, g->name)) {
				command_line(line, sizeof line, c);
				fprintf(f, "  %s\n", line + strlen("vmsnap "));
			}
		fprintf(f, "\n");
	}
	fprintf(f, "common options:\n");
	print_opts(f, common_opts);
	fprintf(f, "\n%s\n%s\nThe reference with examples is docs/cli.md.\n", selectors_help, exit_codes_help);
}

/* ---- dispatch -------------------------------------------------------------- */

static const cli_group *find_group(const char *noun)
{
	for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
		const cli_group *g = &groups[i];
		if (g->name && (!strcmp(g->name, noun) || (g->alias && !strcmp(g->alias, noun))))
			return g;
	}
	return NULL;
}

/* Misc commands are looked up by their own noun ("check", "export"). */
static const cli_command *find_misc(const char *noun)
{
	for (const cli_command *c = cli_misc_commands; c->noun; c++)
		if (!strcmp(c->noun, noun))
			return c;
	return NULL;
}

static const cli_command *find_verb(const cli_command *cmds, const char *noun, const char *verb)
{
	for (const cli_command *c = cmds; c->noun; c++)
		if (!strcmp(c->noun, noun) && c->verb && !strcmp(c->verb, verb))
			return c;
	return NULL;
}

static void verbs_of(char *out, size_t cap, const cli_command *cmds, const char *noun)
{
	size_t n = 0;
	out[0] = '\0';
	for (const cli_command *c = cmds; c->noun && n < cap; c++)
		if (!strcmp(c->noun, noun) && c->verb)
			n += snprintf(out + n, cap - n, "%s%s", n ? ", " : "", c->verb);
}

/* Resolve noun [verb] to a command; NULL (message printed, *rc set) when
 * unknown. */
static const cli_command *resolve(cli_ctx *ctx, const char *noun, const char *verb, int *used_verb, int *rc)
{
	const cli_group *g = find_group(noun);
	const cli_command *cmds = g ? g->commands : cli_misc_commands;
	const char *canon = g ? g->name : noun;
	char verbs[256];
	*used_verb = 0;
	if (!g) {
		const cli_command *m = find_misc(noun);
		if (!m) {
			*rc = cli_usage(ctx, "unknown command '%s'", noun);
			return NULL;
		}
		if (!m->verb)
			return m;
	}
	verbs_of(verbs, sizeof verbs, cmds, canon);
	size_t len = strlen(verbs);
	if (g && len + 3 < sizeof verbs) {
		verbs_of(verbs + len + 2, sizeof verbs - len - 2, cli_extra_commands, canon);
		if (verbs[len + 2]) {
			verbs[len] = ',';
			verbs[len + 1] = ' ';
		}
	}
	if (!verb) {
		*rc = cli_fail(ctx, "INVALID", "'%s' needs a verb: %s (see 'vmsnap help %s')", noun, verbs, noun);
		return NULL;
	}
	const cli_command *c = find_verb(cmds, canon, verb);
	if (!c)
		c = find_verb(cli_extra_commands, canon, verb);
	if (!c) {
		*rc = cli_fail(ctx, "INVALID", "unknown verb '%s %s' (verbs: %s; see 'vmsnap help %s')", noun, verb,
		               verbs, noun);
		return NULL;
	}
	*used_verb = 1;
	return c;
}

/* The verbs of a noun of the other commands ("daemon"); returns their count. */
static int help_misc_noun(FILE *f, const char *noun)
{
	int n = 0;
	char line[256];
	for (const cli_command *c = cli_misc_commands; c->noun; c++)
		if (!strcmp(c->noun, noun) && c->verb) {
			if (!n)
				fprintf(f, "vmsnap %s:\n\n", noun);
			command_line(line, sizeof line, c);
			fprintf(f, "  %s\n      %s\n", line, c->summary);
			n++;
		}
	return n;
}

static int run_help(cli_ctx *ctx, int argc, char **argv)
{
	if (argc == 0) {
		help_all(stdout);
		return 0;
	}
	const cli_group *g = find_group(argv[0]);
	if (g && argc == 1) {
		help_group(stdout, g);
		return 0;
	}
	if (!g && argc == 1 && help_misc_noun(stdout, argv[0]))
		return 0;
	int used, rc = 0;
	const cli_command *c = resolve(ctx, argv[0], argc > 1 ? argv[1] : NULL, &used, &rc);
	if (!c)
		return rc;
	help_command(stdout, c);
	return 0;
}

int main(int argc, char **argv)
{
	cli_ctx ctx = {0};
	cli_args a = {0}, lead = {0};
	int i = 1, rc;

	ctx.sock = -1;
	if ((rc = parse_args(&ctx, &lead, NULL, argc, argv, &i, 1)) != 0)
		return rc;
	if (cli_opt_has(&lead, "help")) {
		help_all(stdout);
		return 0;
	}
	if (i >= argc) {
		help_all(stderr);
		return CLI_EXIT_USAGE;
	}
	const char *noun = argv[i++];
	if (!strcmp(noun, "help"))
		return run_help(&ctx, argc - i, argv + i);

	/* Nouns with verbs take common options before the verb too
	 * ("vmsnap vm -H list", "vmsnap vm --help"). */
	const cli_group *g = find_group(noun);
	const cli_command *m = g ? NULL : find_misc(noun);
	if (g || (m && m->verb)) {
		if ((rc = parse_args(&ctx, &lead, NULL, argc, argv, &i, 1)) != 0)
			return rc;
		if (i >= argc) {
			int help = cli_opt_has(&lead, "help");
			if (g)
				help_group(help ? stdout : stderr, g);
			else
				help_misc_noun(help ? stdout : stderr, noun);
			return help ? 0 : CLI_EXIT_USAGE;
		}
	}
	const char *verb = i < argc && looks_positional(argv[i]) ? argv[i] : NULL;
	int used_verb;
	const cli_command *cmd = resolve(&ctx, noun, verb, &used_verb, &rc);
	if (!cmd)
		return rc;
	if (used_verb)
		i++;
	ctx.cmd = cmd;
	if ((rc = parse_args(&ctx, &a, cmd->opts, argc, argv, &i, 0)) != 0)
		return rc;
	if (cli_opt_has(&a, "help")) {
		help_command(stdout, cmd);
		return 0;
	}
	if (a.npos < cmd->min_pos)
		return cli_usage(&ctx, "missing argument: usage: vmsnap %s%s%s %s", cmd->noun,
		                 cmd->verb ? " " : "", cmd->verb ? cmd->verb : "", cmd->usage);
	if (a.npos > cmd->max_pos)
		return cli_usage(&ctx, "unexpected argument '%s'", a.pos[cmd->max_pos]);
	if (!ctx.home || !*ctx.home) {
		const char *env = getenv("VMSNAP_HOME");
		ctx.home = env && *env ? env : "/var/lib/vmsnap";
	}
	rc = cmd->run(&ctx, &a);
	cli_transport_close(&ctx);
	fflush(stdout);
	if (ferror(stdout)) {
		fprintf(stderr, "vmsnap: cannot write the output\n");
		return rc ? rc : CLI_EXIT_ERROR;
	}
	return rc;
}
