/*
 * call.c - how a request reaches the control module, and how its errors
 * become one readable line and an exit code.
 *
 * Transport: when <home>/control.sock accepts a connection, vmsnapd owns the
 * catalog and the pools, so the request goes there (one JSON request per
 * line, one JSON response per line).  When the socket is absent (ENOENT) or
 * nobody listens on it (ECONNREFUSED: a stale socket left by a daemon that
 * died), the request runs in process through vms_control_open() +
 * vms_control_exec(); should a daemon still hold the pools, the control
 * module refuses with BUSY rather than the CLI guessing.  --no-daemon forces
 * the in-process path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "vmsnap/control.h"
#include "vmsnap/error.h"

/* A response larger than this is refused (a VM with a million snapshots
 * listed in full is about 400 MiB). */
#define CLI_MAX_RESPONSE ((size_t)1 << 30)

static int fail_lib(cli_ctx *ctx, int rc, const char *what)
{
	return cli_fail(ctx, vms_error_name(rc), "%s: %s", what, vms_error_last());
}

static int transport_open(cli_ctx *ctx)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int rc;

	if (ctx->transport_ready)
		return 0;
	if (ctx->no_daemon && ctx->need_daemon)
		return cli_usage(ctx, "only vmsnapd can answer this; drop --no-daemon");
	int n = snprintf(path, sizeof path, "%s/control.sock", ctx->home);
	if ((n < 0 || (size_t)n >= sizeof path) && ctx->need_daemon)
		return cli_fail(ctx, "INVALID", "home directory path too long for a socket: %s", ctx->home);
	/* No daemon can listen on a path that long: work in process.  Neither
	 * does one where the socket is absent (ENOENT, ENOTDIR) or stale
	 * (ECONNREFUSED). */
	if (!ctx->no_daemon && n > 0 && (size_t)n < sizeof path) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		memcpy(sa.sun_path, path, (size_t)n + 1);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return cli_fail(ctx, "IO", "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
			ctx->sock = fd;
			ctx->transport_ready = 1;
			return 0;
		}
		int e = errno;
		close(fd);
		if (ctx->need_daemon)
			return cli_fail(ctx, "IO", "no vmsnapd answers on %s: %s", path, strerror(e));
		if (e != ENOENT && e != ECONNREFUSED && e != ENOTDIR)
			return cli_fail(ctx, e == EACCES ? "PERM" : "IO", "cannot reach vmsnapd at %s: %s", path,
			                strerror(e));
	}
	if ((rc = vms_control_open(&ctx->ctl, ctx->home)) < 0) {
		if (strstr(vms_error_last(), ctx->home))
			return cli_fail(ctx, vms_error_name(rc), "%s", vms_error_last());
		return fail_lib(ctx, rc, ctx->home);
	}
	ctx->transport_ready = 1;
	return 0;
}

void cli_transport_close(cli_ctx *ctx)
{
	if (ctx->sock >= 0)
		close(ctx->sock);
	ctx->sock = -1;
	if (ctx->ctl)
		vms_control_close(ctx->ctl);
	ctx->ctl = NULL;
	ctx->transport_ready = 0;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read one line (without its newline) from the daemon. */
static int recv_line(cli_ctx *ctx, char **out)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return cli_nomem(ctx);
	for (;;) {
		if (len + 1 >= cap) {
			if (cap >= CLI_MAX_RESPONSE) {
				free(buf);
				return cli_fail(ctx, "IO", "vmsnapd response larger than %zu bytes", CLI_MAX_RESPONSE);
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return cli_nomem(ctx);
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(ctx->sock, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : 0;
			free(buf);
			return cli_fail(ctx, "IO", "vmsnapd closed the control connection%s%s",
			                e ? ": " : " before answering", e ? strerror(e) : "");
		}
		char *nl = memchr(buf + len, '\n', (size_t)n);
		len += (size_t)n;
		if (nl) {
			*nl = '\0';
			*out = buf;
			return 0;
		}
	}
}

static int exchange(cli_ctx *ctx, const char *request, char **out)
{
	int rc;
	if ((rc = transport_open(ctx)) != 0)
		return rc;
	if (ctx->sock >= 0) {
		size_t len = strlen(request);
		char *line = malloc(len + 2);
		if (!line)
			return cli_nomem(ctx);
		memcpy(line, request, len);
		line[len] = '\n';
		line[len + 1] = '\0';
		int e = send_all(ctx->sock, line, len + 1);
		free(line);
		if (e < 0)
			return cli_fail(ctx, "IO", "cannot send to vmsnapd: %s", strerror(-e));
		return recv_line(ctx, out);
	}
	*out = NULL;
	vms_control_exec(out, ctx->ctl, request);
	if (!*out)
		return cli_nomem(ctx);
	return 0;
}

/* ---- error rendering --------------------------------------------------------- */

/* Append ": a, b, c" naming the objects of `list` unless `msg` names them
 * all already; the kind goes before each name when kinds are mixed. */
static size_t append_names(char *out, size_t cap, size_t n, const char *msg, const vms_json *list)
{
	size_t len = vms_json_array_len(list), missing = 0;
	int mixed = 0;
	const char *kind0 = cli_json_str(vms_json_array_get(list, 0), "kind");
	for (size_t i = 0; i < len; i++) {
		const vms_json *o = vms_json_array_get(list, i);
		const char *name = cli_json_str(o, "name"), *kind = cli_json_str(o, "kind");
		if (!name || !strstr(msg, name))
			missing++;
		if (kind && kind0 && strcmp(kind, kind0))
			mixed = 1;
	}
	if (!missing)
		return n;
	for (size_t i = 0; i < len && n < cap; i++) {
		const vms_json *o = vms_json_array_get(list, i);
		const char *name = cli_json_str(o, "name"), *kind = cli_json_str(o, "kind");
		const char *uuid = cli_json_str(o, "uuid");
		n += (size_t)snprintf(out + n, cap - n, "%s%s%s%s", i ? ", " : ": ", mixed && kind ? kind : "",
		                      mixed && kind ? " " : "", name ? name : uuid ? uuid : "?");
	}
	return n;
}

static int has_kind(const vms_json *list, const char *kind)
{
	for (size_t i = 0; i < vms_json_array_len(list); i++) {
		const char *k = cli_json_str(vms_json_array_get(list, i), "kind");
		if (k && !strcmp(k, kind))
			return 1;
	}
	return 0;
}

static int cmd_is(const cli_ctx *ctx, const char *noun, const char *verb)
{
	return ctx->cmd && !strcmp(ctx->cmd->noun, noun) && ctx->cmd->verb && !strcmp(ctx->cmd->verb, verb);
}

/* The CLI's words for the flag that overrides a refusal (the control module
 * speaks of JSON arguments: "pass defer"); NULL keeps its advice. */
static const char *hint_for(const cli_ctx *ctx, const char *code, const vms_json *err)
{
	if (!strcmp(code, "DEPENDENTS")) {
		if (cmd_is(ctx, "vm", "delete"))
			return has_kind(vms_json_object_get(err, "dependents"), "snapshot")
			               ? "use --recursive to delete its snapshots too"
			               : "use --defer to mark them deleted (reclaimed when their last clone goes)";
		if (cmd_is(ctx, "snapshot", "delete"))
			return "use --defer to mark it deleted (reclaimed when its last clone goes)";
		return NULL;
	}
	if (!strcmp(code, "BUSY") && vms_json_object_get(err, "busy"))
		return "retry when it is closed, or use --force";
	return NULL;
}

/* The control module names the arguments that override a refusal as JSON
 * ("pass force", "pass defer"); say it with the command's flags instead
 * ("use --force") when the command has that option. */
static void translate(char *out, size_t cap, const char *msg, const cli_ctx *ctx)
{
	size_t n = 0;
	while (*msg && n + 1 < cap) {
		if (!strncmp(msg, "pass ", 5) && ctx->cmd) {
			const char *w = msg + 5;
			size_t len = strspn(w, "abcdefghijklmnopqrstuvwxyz_");
			for (const cli_opt *o = ctx->cmd->opts; o && o->name && len; o++) {
				size_t i = 0;
				while (i < len && o->name[i] && (o->name[i] == w[i] || (o->name[i] == '-' && w[i] == '_')))
					i++;
				if (i == len && !o->name[i]) {
					n += (size_t)snprintf(out + n, cap - n, "use --%s", o->name);
					msg = w + len;
					goto next;
				}
			}
		}
		out[n++] = *msg++;
	next:;
	}
	out[n < cap ? n : cap - 1] = '\0';
}

/* One line: what went wrong, the objects in the way, what to do about it. */
static int print_error(cli_ctx *ctx, const vms_json *err, const char *text)
{
	static const char *const lists[] = {"dependents", "candidates", "busy"};
	const char *code = cli_json_str(err, "code");
	const char *msg = cli_json_str(err, "message");
	const char *advice, *hint;
	char line[4096];
	size_t n, core;

	char said[2048];

	if (!code)
		code = "IO";
	translate(said, sizeof said, msg ? msg : code, ctx);
	msg = said;
	advice = strstr(msg, "; ");
	core = advice ? (size_t)(advice - msg) : strlen(msg);
	/* "has 2 clones (first: 'vm2')": the full list follows, so the
	 * parenthesis that names only the first one goes. */
	const char *first = strstr(msg, " (first: ");
	const char *close = first ? strchr(first, ')') : NULL;
	if (first && close && close < msg + core && vms_json_array_len(vms_json_object_get(err, "dependents")) > 1)
		n = (size_t)snprintf(line, sizeof line, "%.*s%.*s", (int)(first - msg), msg,
		                     (int)(msg + core - close - 1), close + 1);
	else
		n = (size_t)snprintf(line, sizeof line, "%.*s", (int)core, msg);
	for (size_t i = 0; i < sizeof lists / sizeof lists[0] && n < sizeof line; i++) {
		const vms_json *l = vms_json_object_get(err, lists[i]);
		if (vms_json_array_len(l))
			n = append_names(line, sizeof line, n, msg, l);
	}
	hint = hint_for(ctx, code, err);
	if (n < sizeof line && (hint || advice))
		snprintf(line + n, sizeof line - n, "; %s", hint ? hint : advice + 2);
	fprintf(stderr, "vmsnap: %s\n", line);
	if (ctx->json)
		printf("%s\n", text);
	return cli_exit_code(code);
}

/* ---- requests ------------------------------------------------------------------ */

void cli_response_free(cli_response *r)
{
	free(r->text);
	vms_json_free(r->root);
	memset(r, 0, sizeof *r);
}

int cli_call(cli_ctx *ctx, const char *op, vms_json *args, cli_response *out)
{
	vms_json *req = vms_json_new_object();
	char *reqtext = NULL;
	int rc;

	memset(out, 0, sizeof *out);
	if (!req || vms_json_object_set_string(req, "op", op) < 0 ||
	    (args && vms_json_object_set(req, "args", args) < 0)) {
		if (!req)
			vms_json_free(args);
		vms_json_free(req);
		return cli_nomem(ctx);
	}
	args = NULL;
	rc = vms_json_serialize(&reqtext, req, 0);
	vms_json_free(req);
	if (rc < 0)
		return fail_lib(ctx, rc, "request");
	rc = exchange(ctx, reqtext, &out->text);
	free(reqtext);
	if (rc)
		return rc;

	vms_json_limits lim = {.max_bytes = strlen(out->text) + 1, .max_depth = 1024, .max_members = (size_t)1 << 32};
	if ((rc = vms_json_parse_ex(&out->root, out->text, strlen(out->text), &lim)) < 0) {
		rc = cli_fail(ctx, "IO", "malformed response from the control module: %s", vms_error_last());
		cli_response_free(out);
		return rc;
	}
	const vms_json *err = vms_json_object_get(out->root, "error");
	if (err) {
		rc = print_error(ctx, err, out->text);
		cli_response_free(out);
		return rc;
	}
	out->result = vms_json_object_get(out->root, "result");
	if (vms_json_type_of(out->result) != VMS_JSON_OBJECT) {
		rc = cli_fail(ctx, "IO", "response without a result object");
		cli_response_free(out);
		return rc;
	}
	return 0;
}

int cli_simple(cli_ctx *ctx, const char *op, vms_json *args,
               int (*render)(cli_ctx *ctx, const vms_json *result))
{
	cli_response r;
	int rc = cli_call(ctx, op, args, &r);
	if (rc)
		return rc;
	if (ctx->json)
		printf("%s\n", r.text);
	else
		rc = render(ctx, r.result);
	cli_response_free(&r);
	return rc;
}

int cli_one_arg(cli_ctx *ctx, const char *op, const char *key, const char *val,
                int (*render)(cli_ctx *ctx, const vms_json *result))
{
	vms_json *args = cli_args_with(NULL, key, val, NULL);
	return args ? cli_simple(ctx, op, args, render) : cli_nomem(ctx);
}

static int render_record(cli_ctx *ctx, const vms_json *r)
{
	return cli_record(ctx, ctx->cmd->columns, r);
}

int cli_show(cli_ctx *ctx, const cli_args *a, const char *op, const char *key)
{
	int rc = cli_columns_check(ctx, ctx->cmd->columns);
	return rc ? rc : cli_one_arg(ctx, op, key, a->pos[0], render_record);
}

/* ---- argument builders -------------------------------------------------------- */

vms_json *cli_args_with(const cli_args *a, const char *key, const char *val, const char *opts)
{
	vms_json *args = vms_json_new_object();
	char name[64];
	if (!args || (key && vms_json_object_set_string(args, key, val) < 0))
		goto fail;
	while (opts && *opts) {
		size_t len = strcspn(opts, " ");
		if (len && len < sizeof name) {
			memcpy(name, opts, len);
			name[len] = '\0';
			const cli_opt *o = NULL;
			const char *v = NULL;
			for (int i = 0; i < a->nset; i++)
				if (!strcmp(a->set[i].opt->name, name)) {
					o = a->set[i].opt;
					v = a->set[i].val;
				}
			for (char *p = name; *p; p++)
				if (*p == '-')
					*p = '_';
			if (o && (o->metavar ? vms_json_object_set_string(args, name, v)
			                     : vms_json_object_set_bool(args, name, 1)) < 0)
				goto fail;
		}
		opts += len;
		opts += strspn(opts, " ");
	}
	return args;
fail:
	vms_json_free(args);
	return NULL;
}

int cli_arg_size(cli_ctx *ctx, vms_json *args, const char *key, const char *text)
{
	uint64_t v;
	if (vms_parse_size(&v, text) < 0 || v > (uint64_t)INT64_MAX)
		return cli_usage(ctx, "bad size '%s' for %s: use bytes or 512, 4K, 2G, 1.5T", text, key);
	if (vms_json_object_set_int(args, key, (int64_t)v) < 0)
		return cli_nomem(ctx);
	return 0;
}

int cli_arg_uint(cli_ctx *ctx, vms_json *args, const char *key, const char *text)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (!*text || *text == '-' || *text == '+' || *end || errno || v > (unsigned long long)INT64_MAX)
		return cli_usage(ctx, "bad number '%s' for %s", text, key);
	if (vms_json_object_set_int(args, key, (int64_t)v) < 0)
		return cli_nomem(ctx);
	return 0;
}
