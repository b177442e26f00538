/*
 * output.c - tables and records for humans and scripts.
 *
 * A table is a list of JSON records (the control module's result) seen
 * through a set of columns.  Humans get aligned columns with a header,
 * human sizes (3 significant digits, powers of 1024 as zfs prints them) and
 * ISO 8601 UTC times; -H drops the header and separates fields with one tab;
 * -p prints exact bytes and epoch seconds; -o picks columns; -s/-S sort
 * (stable, by number when both cells are numbers).  A missing or null value
 * prints as "-".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vmsnap/naming.h"

/* ---- JSON access ------------------------------------------------------------- */

const vms_json *cli_json_path(const vms_json *rec, const char *path)
{
	char key[64];
	while (rec && *path) {
		const char *dot = strchr(path, '.');
		size_t len = dot ? (size_t)(dot - path) : strlen(path);
		if (len >= sizeof key)
			return NULL;
		memcpy(key, path, len);
		key[len] = '\0';
		rec = vms_json_object_get(rec, key);
		path += len + (dot ? 1 : 0);
	}
	return rec;
}

const char *cli_json_str(const vms_json *rec, const char *path)
{
	return vms_json_string(cli_json_path(rec, path));
}

int64_t cli_json_int(const vms_json *rec, const char *path, int64_t dflt)
{
	int64_t v;
	return vms_json_is_int(cli_json_path(rec, path), &v) ? v : dflt;
}

/* ---- formatting ---------------------------------------------------------------- */

void cli_fmt_size(char *out, size_t cap, int64_t bytes, int parsable)
{
	static const char units[] = "KMGTPE";
	if (parsable || bytes < 1024) {
		snprintf(out, cap, "%lld", (long long)bytes);
		return;
	}
	double v = (double)bytes;
	int u = -1;
	uint64_t div = 1;
	while (v >= 1024.0 && u < 5) {
		v /= 1024.0;
		div *= 1024;
		u++;
	}
	if ((uint64_t)bytes % div == 0)
		snprintf(out, cap, "%llu%c", (unsigned long long)((uint64_t)bytes / div), units[u]);
	else if (v < 9.995)
		snprintf(out, cap, "%.2f%c", v, units[u]);
	else if (v < 99.95)
		snprintf(out, cap, "%.1f%c", v, units[u]);
	else
		snprintf(out, cap, "%.0f%c", v, units[u]);
}

void cli_fmt_time(char *out, size_t cap, int64_t t, int parsable)
{
	if (parsable || vms_time_iso(out, cap, t) < 0)
		snprintf(out, cap, "%lld", (long long)t);
}

static void cell_from_json(cli_cell *c, const vms_json *v)
{
	int64_t i;
	memset(c, 0, sizeof *c);
	switch (vms_json_type_of(v)) {
	case VMS_JSON_STRING:
		c->kind = 1;
		c->str = vms_json_string(v);
		break;
	case VMS_JSON_NUMBER:
		c->kind = 2;
		c->num = vms_json_is_int(v, &i) ? i : (int64_t)vms_json_double(v);
		break;
	case VMS_JSON_BOOL:
		c->kind = 2;
		c->num = vms_json_bool(v);
		break;
	case VMS_JSON_ARRAY:
		c->kind = 2;
		c->num = (int64_t)vms_json_array_len(v);
		break;
	default:
		break;
	}
}

static void cell_compute(cli_cell *c, const cli_column *col, const vms_json *rec)
{
	if (col->path) {
		cell_from_json(c, cli_json_path(rec, col->path));
	} else {
		memset(c, 0, sizeof *c);
		col->get(c, rec);
	}
}

static const char *cell_str(const cli_cell *c)
{
	return c->str ? c->str : c->text;
}

/* The printed form of a cell; may return c's own string instead of out. */
static const char *cell_text(char *out, size_t cap, const cli_ctx *ctx, const cli_column *col, const cli_cell *c)
{
	if (c->kind == 0)
		return "-";
	if (c->kind == 1) {
		const char *s = cell_str(c);
		if (!ctx->scripted || !s[strcspn(s, "\t\n")])
			return s;
		snprintf(out, cap, "%s", s);
	} else {
		switch (col->type) {
		case CLI_COL_SIZE:
			cli_fmt_size(out, cap, c->num, ctx->parsable);
			break;
		case CLI_COL_TIME:
			cli_fmt_time(out, cap, c->num, ctx->parsable);
			break;
		case CLI_COL_BOOL:
			snprintf(out, cap, "%s", ctx->parsable ? (c->num ? "true" : "false") : (c->num ? "yes" : "no"));
			break;
		default:
			snprintf(out, cap, "%lld", (long long)c->num);
			break;
		}
	}
	if (ctx->scripted)
		for (char *p = out; *p; p++)
			if (*p == '\t' || *p == '\n')
				*p = ' ';
	return out;
}

/* ---- column selection ------------------------------------------------------------ */

static int find_col(const cli_column *cols, const char *name, size_t len)
{
	for (int i = 0; cols[i].name; i++)
		if (strlen(cols[i].name) == len && !strncmp(cols[i].name, name, len))
			return i;
	return -1;
}

static void col_names(char *out, size_t cap, const cli_column *cols)
{
	size_t n = 0;
	out[0] = '\0';
	for (int i = 0; cols[i].name && n < cap; i++)
		n += snprintf(out + n, cap - n, "%s%s", i ? "," : "", cols[i].name);
}

/* Fill sel[] with the indexes of the columns to print; returns the count or
 * -exit code. */
static int select_cols(cli_ctx *ctx, const cli_column *cols, int *sel, int cap, int all_default)
{
	int n = 0;
	char names[512];
	if (!ctx->columns || !strcmp(ctx->columns, "all")) {
		for (int i = 0; cols[i].name && n < cap; i++)
			if (all_default || cols[i].dflt || ctx->columns ||
			    (ctx->show_deleted && !strcmp(cols[i].name, "deleted")))
				sel[n++] = i;
		return n;
	}
	const char *p = ctx->columns;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		int i = find_col(cols, p, len);
		if (i < 0) {
			col_names(names, sizeof names, cols);
			return -cli_usage(ctx, "unknown column '%.*s' (columns: %s)", (int)len, p, names);
		}
		if (n < cap)
			sel[n++] = i;
		p += len + (comma ? 1 : 0);
	}
	if (!n)
		return -cli_usage(ctx, "-o needs at least one column");
	return n;
}

int cli_columns_check(cli_ctx *ctx, const cli_column *cols)
{
	int sel[64];
	char names[512];
	int n = select_cols(ctx, cols, sel, 64, 0);
	if (n < 0)
		return -n;
	for (int s = 0; s < ctx->nsort; s++)
		if (find_col(cols, ctx->sort[s].col, strlen(ctx->sort[s].col)) < 0) {
			col_names(names, sizeof names, cols);
			return cli_usage(ctx, "unknown sort column '%s' (columns: %s)", ctx->sort[s].col, names);
		}
	return 0;
}

/* ---- tables ------------------------------------------------------------------------ */

/* Rows keep only the columns printed or sorted on, strings borrowed from
 * the records where they can be: a listing of a million snapshots must not
 * cost a cell buffer per column. */
typedef struct stored_cell {
	int kind;
	int64_t num;
	const char *str;
	char *owned;
} stored_cell;

typedef struct row {
	size_t index;        /* original position: the sort is stable */
	stored_cell *cells;  /* one per needed column */
} row;

typedef struct sort_key {
	int slot;
	int desc;
} sort_key;

static const sort_key *sort_keys;
static int nsort_keys;

static int cell_cmp(const stored_cell *a, const stored_cell *b)
{
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if (a->kind == 2)
		return a->num < b->num ? -1 : a->num > b->num;
	if (a->kind == 1)
		return strcmp(a->str, b->str);
	return 0;
}

static int row_cmp(const void *pa, const void *pb)
{
	const row *a = pa, *b = pb;
	for (int s = 0; s < nsort_keys; s++) {
		int c = cell_cmp(&a->cells[sort_keys[s].slot], &b->cells[sort_keys[s].slot]);
		if (c)
			return sort_keys[s].desc ? -c : c;
	}
	/* Ties keep the control module's order (time, then creation), reversed
	 * when the last key sorts descending: -S time is exactly newest first. */
	int c = a->index < b->index ? -1 : a->index > b->index;
	return nsort_keys && sort_keys[nsort_keys - 1].desc ? -c : c;
}

static int store_cell(stored_cell *out, const cli_column *col, const vms_json *rec)
{
	cli_cell c;
	cell_compute(&c, col, rec);
	out->kind = c.kind;
	out->num = c.num;
	out->str = c.kind == 1 ? c.str : NULL;
	out->owned = NULL;
	if (c.kind == 1 && !c.str) {
		if (!(out->owned = strdup(c.text)))
			return -1;
		out->str = out->owned;
	}
	return 0;
}

static const char *stored_text(char *buf, size_t cap, const cli_ctx *ctx, const cli_column *col,
                               const stored_cell *sc)
{
	cli_cell c = {.kind = sc->kind, .str = sc->str, .num = sc->num};
	return cell_text(buf, cap, ctx, col, &c);
}

int cli_table(cli_ctx *ctx, const cli_column *cols, const vms_json *records)
{
	int sel[64], slot_of[64], need[64], nneed = 0, nsel, rc = 0;
	size_t nrows = vms_json_array_len(records), width[64] = {0};
	sort_key keys[8];
	row *rows = NULL;
	char buf[512];

	if ((rc = cli_columns_check(ctx, cols)) != 0)
		return rc;
	nsel = select_cols(ctx, cols, sel, 64, 0);
	if (nsel < 0)
		return -nsel;
	for (int i = 0; i < 64; i++)
		slot_of[i] = -1;
	for (int s = 0; s < nsel; s++)
		if (slot_of[sel[s]] < 0) {
			slot_of[sel[s]] = nneed;
			need[nneed++] = sel[s];
		}
	for (int s = 0; s < ctx->nsort && s < 8; s++) {
		int i = find_col(cols, ctx->sort[s].col, strlen(ctx->sort[s].col));
		if (slot_of[i] < 0) {
			slot_of[i] = nneed;
			need[nneed++] = i;
		}
		keys[s].slot = slot_of[i];
		keys[s].desc = ctx->sort[s].desc;
	}
	rows = calloc(nrows ? nrows : 1, sizeof *rows);
	if (!rows)
		return cli_nomem(ctx);
	for (size_t r = 0; r < nrows; r++) {
		rows[r].index = r;
		rows[r].cells = calloc((size_t)nneed, sizeof(stored_cell));
		if (!rows[r].cells) {
			rc = cli_nomem(ctx);
			goto done;
		}
		for (int k = 0; k < nneed; k++)
			if (store_cell(&rows[r].cells[k], &cols[need[k]], vms_json_array_get(records, r)) < 0) {
				rc = cli_nomem(ctx);
				goto done;
			}
	}
	if (ctx->nsort) {
		sort_keys = keys;
		nsort_keys = ctx->nsort < 8 ? ctx->nsort : 8;
		qsort(rows, nrows, sizeof *rows, row_cmp);
	}

	if (!ctx->scripted) {
		for (int s = 0; s < nsel; s++)
			width[s] = strlen(cols[sel[s]].header);
		for (size_t r = 0; r < nrows; r++)
			for (int s = 0; s < nsel; s++) {
				size_t w = strlen(stored_text(buf, sizeof buf, ctx, &cols[sel[s]],
				                              &rows[r].cells[slot_of[sel[s]]]));
				if (w > width[s])
					width[s] = w;
			}
		for (int s = 0; s < nsel; s++) {
			int right = cols[sel[s]].type == CLI_COL_SIZE || cols[sel[s]].type == CLI_COL_INT;
			if (s == nsel - 1 && !right)
				printf("%s", cols[sel[s]].header);
			else
				printf(right ? "%*s" : "%-*s", (int)width[s], cols[sel[s]].header);
			printf(s == nsel - 1 ? "\n" : "  ");
		}
	}
	for (size_t r = 0; r < nrows; r++)
		for (int s = 0; s < nsel; s++) {
			const cli_column *col = &cols[sel[s]];
			int right = col->type == CLI_COL_SIZE || col->type == CLI_COL_INT;
			const char *t = stored_text(buf, sizeof buf, ctx, col, &rows[r].cells[slot_of[sel[s]]]);
			if (ctx->scripted)
				printf("%s%s", t, s == nsel - 1 ? "\n" : "\t");
			else if (s == nsel - 1 && !right)
				printf("%s\n", t);
			else
				printf(right ? "%*s%s" : "%-*s%s", (int)width[s], t, s == nsel - 1 ? "\n" : "  ");
		}
done:
	for (size_t r = 0; r < nrows; r++) {
		for (int k = 0; rows[r].cells && k < nneed; k++)
			free(rows[r].cells[k].owned);
		free(rows[r].cells);
	}
	free(rows);
	return rc;
}

int cli_record(cli_ctx *ctx, const cli_column *cols, const vms_json *rec)
{
	int sel[64], nsel;
	size_t w = 0;
	char buf[512];
	cli_cell cell;

	nsel = select_cols(ctx, cols, sel, 64, 1);
	if (nsel < 0)
		return -nsel;
	for (int s = 0; s < nsel; s++)
		if (strlen(cols[sel[s]].name) > w)
			w = strlen(cols[sel[s]].name);
	for (int s = 0; s < nsel; s++) {
		cell_compute(&cell, &cols[sel[s]], rec);
		const char *t = cell_text(buf, sizeof buf, ctx, &cols[sel[s]], &cell);
		if (ctx->scripted)
			printf("%s\t%s\n", cols[sel[s]].name, t);
		else
			printf("%-*s  %s\n", (int)w, cols[sel[s]].name, t);
	}
	return 0;
}

/* ---- results shared by several groups ------------------------------------------------ */

static void print_objects(cli_ctx *ctx, const char *action, const vms_json *list)
{
	for (size_t i = 0; i < vms_json_array_len(list); i++) {
		const vms_json *o = vms_json_array_get(list, i);
		const char *kind = cli_json_str(o, "kind"), *name = cli_json_str(o, "name");
		const char *uuid = cli_json_str(o, "uuid");
		if (ctx->scripted)
			printf("%s\t%s\t%s\t%s\n", action, kind ? kind : "-", name ? name : "-", uuid ? uuid : "-");
		else
			printf("%s %s %s (%s)\n", action, kind ? kind : "object", name ? name : "-", uuid ? uuid : "-");
	}
}

int cli_render_deletion(cli_ctx *ctx, const vms_json *result)
{
	int dry = vms_json_bool(vms_json_object_get(result, "dry_run"));
	const vms_json *freed = vms_json_object_get(result, "bytes_freed");
	int64_t n;
	char size[64];

	print_objects(ctx, dry ? "would delete" : "deleted", vms_json_object_get(result, "deleted"));
	print_objects(ctx, dry ? "would mark deleted (kept for clones)" : "marked deleted (kept for clones)",
	              vms_json_object_get(result, "deferred"));
	if (vms_json_is_int(freed, &n))
		cli_fmt_size(size, sizeof size, n, ctx->parsable);
	else
		snprintf(size, sizeof size, "-");
	if (ctx->scripted)
		printf("%s\t%s\n", dry ? "would_free" : "freed", size);
	else
		printf("%s %s\n", dry ? "would free" : "freed", size);
	return 0;
}

int cli_render_rollback(cli_ctx *ctx, const vms_json *result)
{
	int dry = vms_json_bool(vms_json_object_get(result, "dry_run"));
	const vms_json *disks = vms_json_object_get(result, "disks");
	char size[64];

	if (ctx->scripted) {
		printf("%s\t%s\t%s\n", dry ? "would_rollback" : "rolled_back", cli_json_str(result, "vm"),
		       cli_json_str(result, "snapshot"));
	} else {
		printf("%s VM %s to snapshot %s\n", dry ? "would roll back" : "rolled back",
		       cli_json_str(result, "vm"), cli_json_str(result, "snapshot"));
	}
	for (size_t i = 0; i < vms_json_array_len(disks); i++) {
		const vms_json *d = vms_json_array_get(disks, i);
		cli_fmt_size(size, sizeof size, cli_json_int(d, "size", 0), ctx->parsable);
		if (ctx->scripted)
			printf("disk\t%s\t%s\n", cli_json_str(d, "name"), size);
		else
			printf("  disk %s  %s\n", cli_json_str(d, "name"), size);
	}
	return 0;
}

static void tree_node(cli_ctx *ctx, const vms_json *node, const char *prefix, int root, int last)
{
	const char *kind = cli_json_str(node, "kind");
	const char *name = cli_json_str(node, "name");
	int is_snap = kind && !strcmp(kind, "snapshot");
	int deleted = vms_json_bool(vms_json_object_get(node, "is_deleted"));
	char next[1024];

	printf("%s%s%s%s%s", prefix, root ? "" : last ? "`-- " : "|-- ", is_snap ? "@" : "",
	       name ? name : "?", deleted ? " [deleted]" : "");
	if (ctx->parsable)
		printf(" %s", cli_json_str(node, "uuid") ? cli_json_str(node, "uuid") : "");
	printf("\n");
	snprintf(next, sizeof next, "%s%s", prefix, root ? "" : last ? "    " : "|   ");
	const vms_json *children = vms_json_object_get(node, "children");
	size_t n = vms_json_array_len(children);
	for (size_t i = 0; i < n; i++)
		tree_node(ctx, vms_json_array_get(children, i), next, 0, i + 1 == n);
}

int cli_render_tree(cli_ctx *ctx, const vms_json *result)
{
	const vms_json *roots = vms_json_object_get(result, "tree");
	for (size_t i = 0; i < vms_json_array_len(roots); i++)
		tree_node(ctx, vms_json_array_get(roots, i), "", 1, 1);
	return 0;
}
