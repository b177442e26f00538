/*
 * cli.h - what the files of the `vmsnap` command line share.
 *
 * vmsnap <noun> <verb> [args] turns its arguments into one control request
 * (docs/control.md), runs it through vmsnapd's control socket when a daemon
 * answers there, else in process through vms_control_exec(), and prints the
 * response: a human table or record by default, the response envelope as is
 * with --json.  Every command is one entry of a cli_command table (one table
 * per command group: sr.c, vm.c, vdi.c, snapshot.c, misc.c); main.c parses
 * the options each entry declares and generates its help from them.
 *
 * Exit codes (docs/control.md, docs/cli.md): 0 ok, 1 error, 2 usage error or
 * INVALID, 3 NOTFOUND, 4 DEPENDENTS, 5 BUSY.
 */
#ifndef VMS_CLI_H
#define VMS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "vmsnap/json.h"

#define VMS_CLI_VERSION "0.1.0"

enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,
	CLI_EXIT_USAGE = 2,     /* bad usage, or INVALID from the control module */
	CLI_EXIT_NOTFOUND = 3,
	CLI_EXIT_DEPENDENTS = 4,
	CLI_EXIT_BUSY = 5
};

/* ---- options ------------------------------------------------------------ */

typedef struct cli_opt {
	const char *name;      /* long name, without "--" */
	char short_name;       /* 0 = none */
	const char *metavar;   /* NULL = a flag without argument */
	const char *help;
} cli_opt;

#define CLI_MAX_SET 64
#define CLI_MAX_POS 16

/* The parsed arguments of one command: positionals and the options given,
 * in command-line order (values borrowed from argv). */
typedef struct cli_args {
	int npos;
	const char *pos[CLI_MAX_POS];
	int nset;
	struct {
		const cli_opt *opt;
		const char *val;   /* "1" for a flag */
	} set[CLI_MAX_SET];
} cli_args;

/* Last value of option `name`, or NULL when absent. */
const char *cli_opt_get(const cli_args *a, const char *name);
int cli_opt_has(const cli_args *a, const char *name);

/* ---- the context of one run --------------------------------------------- */

struct vms_control;

typedef struct cli_sort {
	const char *col;
	int desc;
} cli_sort;

typedef struct cli_ctx {
	const char *home;
	int json;          /* --json: print the response envelope */
	int scripted;      /* -H: no header, tab-separated */
	int parsable;      /* -p: exact bytes, epoch seconds */
	int no_daemon;     /* --no-daemon: always in process */
	int need_daemon;   /* daemon.* ops: only vmsnapd can answer */
	int dry_run;       /* -n/--dry-run */
	int show_deleted;  /* --all: the "deleted" column joins the default ones */
	const char *columns;             /* -o col,col */
	int nsort;
	cli_sort sort[8];                /* -s/-S, in order of precedence */
	const struct cli_command *cmd;   /* the command being run */
	/* transport, opened on first use */
	int sock;                        /* connected control socket, or -1 */
	struct vms_control *ctl;         /* in-process control, or NULL */
	int transport_ready;
} cli_ctx;

typedef struct cli_command {
	const char *noun;
	const char *verb;
	const char *usage;       /* arguments after "vmsnap noun verb" */
	const char *summary;     /* one line */
	int min_pos, max_pos;
	const cli_opt *opts;     /* command options, {0}-terminated; may be NULL */
	const char *details;     /* more help text (examples), may be NULL */
	int (*run)(cli_ctx *ctx, const cli_args *a);
	const struct cli_column *columns;   /* listed in the help (-o), may be NULL */
} cli_command;

/* Command tables of the groups, {0}-terminated. */
extern const cli_command cli_sr_commands[];
extern const cli_command cli_vm_commands[];
extern const cli_command cli_vdi_commands[];
extern const cli_command cli_snapshot_commands[];
extern const cli_command cli_misc_commands[];
/* policy.c: the policy group, and verbs it adds to other nouns (snapshot
 * hold/release, vm report, vdi import/export), found after a group's own. */
extern const cli_command cli_policy_commands[];
extern const cli_command cli_extra_commands[];
/* The live I/O table of a stats result (policy.c). */
int cli_render_io(cli_ctx *ctx, const vms_json *result);

/* Shared option entries. */
#define CLI_OPT_DRY_RUN {"dry-run", 'n', NULL, "change nothing; print what would go and the bytes it would free"}
#define CLI_OPT_FORCE {"force", 'f', NULL, "go ahead although a client has a disk open for writing"}
#define CLI_OPT_ALL {"all", 'a', NULL, "include deleted objects (kept for their clones)"}
/* --force and --dry-run, the options of most destructive verbs. */
extern const cli_opt cli_opts_force_dry_run[];

/* ---- messages ----------------------------------------------------------- */

/* Print "vmsnap: <message>" on stderr (and, with --json, an error envelope
 * with `code` on stdout) and return the exit code of `code` ("INVALID", ...). */
int cli_fail(cli_ctx *ctx, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A usage error: exit 2, with a pointer to the command's help. */
int cli_usage(cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_exit_code(const char *code);

/* ---- requests ----------------------------------------------------------- */

typedef struct cli_response {
	char *text;               /* the response line (malloc'd) */
	vms_json *root;           /* parsed */
	const vms_json *result;   /* root.result on success */
} cli_response;

/* Send {"op":op,"args":args} (args owned and consumed, may be NULL) to the
 * daemon or run it in process.  On success returns 0 with *out filled; on
 * an error response prints it (readable line on stderr, envelope on stdout
 * with --json) and returns the exit code. */
int cli_call(cli_ctx *ctx, const char *op, vms_json *args, cli_response *out);
void cli_response_free(cli_response *r);
void cli_transport_close(cli_ctx *ctx);

/* Run one request whose result is printed by `render` (or, with --json, the
 * envelope as is).  Returns the exit code. */
int cli_simple(cli_ctx *ctx, const char *op, vms_json *args,
               int (*render)(cli_ctx *ctx, const vms_json *result));

/* A request with one string argument {key: val}. */
int cli_one_arg(cli_ctx *ctx, const char *op, const char *key, const char *val,
                int (*render)(cli_ctx *ctx, const vms_json *result));

/* New request arguments {key: val} (key NULL: {}) plus, for each option
 * name in the space-separated `opts` that was given, the option as a
 * member: a flag becomes true, an option with a value its string; "-" in
 * option names becomes "_" ("dry-run" -> "dry_run").  NULL when out of
 * memory. */
vms_json *cli_args_with(const cli_args *a, const char *key, const char *val, const char *opts);

/* A "show" verb: request {key: first argument}, the result printed as a
 * record through the command's columns (-o checked first). */
int cli_show(cli_ctx *ctx, const cli_args *a, const char *op, const char *key);

/* Builders of request arguments; return 0 or an exit code (message printed). */
int cli_arg_size(cli_ctx *ctx, vms_json *args, const char *key, const char *text);
int cli_arg_uint(cli_ctx *ctx, vms_json *args, const char *key, const char *text);
/* vm.tree of one VM (NULL: every root VM), option --all. */
int cli_vm_tree(cli_ctx *ctx, const cli_args *a, const char *vm);
/* Out of memory while building a request. */
int cli_nomem(cli_ctx *ctx);

/* ---- output (output.c) -------------------------------------------------- */

typedef enum cli_col_type {
	CLI_COL_STR,
	CLI_COL_SIZE,   /* bytes: human "20G" or exact with -p */
	CLI_COL_TIME,   /* epoch seconds: ISO 8601 UTC or epoch with -p */
	CLI_COL_INT,
	CLI_COL_BOOL
} cli_col_type;

/* A cell value computed from a record: a string or a number.  A column's
 * get() writes a string into text and sets kind 1; strings found in the
 * record are borrowed through str instead (no copy, no length limit). */
typedef struct cli_cell {
	int kind;            /* 0 null, 1 string, 2 number */
	const char *str;     /* kind 1: the string (NULL = text) */
	char text[256];
	int64_t num;
} cli_cell;

typedef struct cli_column {
	const char *name;      /* for -o, -s, -S: lowercase */
	const char *header;
	cli_col_type type;
	const char *path;      /* member path in the record ("space.total"), or NULL */
	void (*get)(cli_cell *out, const vms_json *rec);   /* when path is NULL */
	int dflt;              /* shown without -o */
} cli_column;

/* Print `records` (a JSON array of objects) as a table: -H, -p, -o, -s, -S
 * applied.  Returns 0 or an exit code (unknown column). */
int cli_table(cli_ctx *ctx, const cli_column *cols, const vms_json *records);
/* Print one record as "property value" lines (all columns, or -o). */
int cli_record(cli_ctx *ctx, const cli_column *cols, const vms_json *rec);
/* Check -o/-s/-S against the columns before any request is sent. */
int cli_columns_check(cli_ctx *ctx, const cli_column *cols);

/* Formatting helpers. */
void cli_fmt_size(char *out, size_t cap, int64_t bytes, int parsable);
void cli_fmt_time(char *out, size_t cap, int64_t t, int parsable);
const vms_json *cli_json_path(const vms_json *rec, const char *path);
const char *cli_json_str(const vms_json *rec, const char *path);   /* NULL when absent */
int64_t cli_json_int(const vms_json *rec, const char *path, int64_t dflt);

/* Deletion result {"dry_run","deleted","deferred","bytes_freed"}. */
int cli_render_deletion(cli_ctx *ctx, const vms_json *result);
/* Rollback result. */
int cli_render_rollback(cli_ctx *ctx, const vms_json *result);
/* vm.tree result {"tree":[Node...]}. */
int cli_render_tree(cli_ctx *ctx, const vms_json *result);

/* Column sets shared by several groups. */
extern const cli_column cli_snapshot_columns[];
extern const cli_column cli_vm_columns[];
extern const cli_column cli_vdi_columns[];

#endif
