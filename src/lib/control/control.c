/*
 * The control module: the JSON envelope, op dispatch, the adapter (SR
 * handle cache keyed by the SR's type from the catalog) and the per-VM
 * snapshot index cache.  See control_private.h for the map of the module
 * and docs/control.md for the contract.
 *
 * Cache invalidation: a vms_control holds one catalog connection.  Another
 * process (CLI next to the daemon) may commit at any time; PRAGMA
 * data_version changes when it did, and every request starts by comparing
 * it with the value the caches were built at, dropping them on change.  Our
 * own commits do not change our data_version, so every op that changes a
 * VM's snapshots updates or drops that VM's cached index itself.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "control/control_private.h"

#define REQUEST_MAX (1u << 20)

/* ---- op table -------------------------------------------------------------- */

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static const struct ctl_op {
	const char *name;
	ctl_op_fn fn;
	const char *const *args;
} ops[] = {
	{"sr.create", ctl_op_sr_create, ARGS("name", "type", "location", "size", "options")},
	{"sr.list", ctl_op_sr_list, ARGS(NULL)},
	{"sr.show", ctl_op_sr_show, ARGS("sr")},
	{"sr.destroy", ctl_op_sr_destroy, ARGS("sr", "dry_run")},
	{"vm.create", ctl_op_vm_create, ARGS("name", "sr", "disks")},
	{"vm.list", ctl_op_vm_list, ARGS("sr", "all")},
	{"vm.show", ctl_op_vm_show, ARGS("vm", "all")},
	{"vm.delete", ctl_op_vm_delete, ARGS("vm", "recursive", "defer", "force", "dry_run")},
	{"vm.clone", ctl_op_vm_clone, ARGS("snapshot", "name")},
	{"vm.rollback", ctl_op_vm_rollback, ARGS("vm", "snapshot", "force", "dry_run")},
	{"vm.tree", ctl_op_vm_tree, ARGS("vm", "all")},
	{"vdi.create", ctl_op_vdi_create, ARGS("vm", "name", "size", "device")},
	{"vdi.list", ctl_op_vdi_list, ARGS("vm", "sr", "all")},
	{"vdi.show", ctl_op_vdi_show, ARGS("vdi")},
	{"vdi.delete", ctl_op_vdi_delete, ARGS("vdi", "force", "dry_run")},
	{"vdi.resize", ctl_op_vdi_resize, ARGS("vdi", "size", "force")},
	{"snapshot.create", ctl_op_snapshot_create, ARGS("vm", "name")},
	{"snapshot.list", ctl_op_snapshot_list, ARGS("vm", "name", "since", "until", "all", "limit")},
	{"snapshot.show", ctl_op_snapshot_show, ARGS("snapshot")},
	{"snapshot.find", ctl_op_snapshot_find, ARGS("snapshot")},
	{"snapshot.delete", ctl_op_snapshot_delete, ARGS("snapshot", "defer", "force", "dry_run")},
	{"snapshot.rollback", ctl_op_snapshot_rollback, ARGS("snapshot", "force", "dry_run")},
	{"export.list", ctl_op_export_list, ARGS(NULL)},
	{"check", ctl_op_check, ARGS("sr", "data", "repair", "dry_run")},
	{"stats", ctl_op_stats_io, ARGS("sr", "vm", "snapshot")},
	/* policies, holds, reports, import/export (ops_policy.c, ops_import.c) */
	{"policy.set", ctl_op_policy_set,
	 ARGS("vm", "sr", "spec", "schedule", "keep", "name", "enabled", "prune_manual")},
	{"policy.show", ctl_op_policy_show, ARGS("vm", "sr")},
	{"policy.list", ctl_op_policy_list, ARGS(NULL)},
	{"policy.delete", ctl_op_policy_delete, ARGS("vm", "sr")},
	{"policy.prune", ctl_op_policy_prune, ARGS("vm", "dry_run")},
	{"policy.run", ctl_op_policy_run, ARGS("vm", "force")},
	{"snapshot.hold", ctl_op_snapshot_hold, ARGS("snapshot", "tag")},
	{"snapshot.release", ctl_op_snapshot_release, ARGS("snapshot")},
	{"vm.report", ctl_op_vm_report, ARGS("vm")},
	{"vdi.import", ctl_op_vdi_import, ARGS("vm", "name", "source", "format", "device")},
	{"vdi.export", ctl_op_vdi_export, ARGS("vdi", "snapshot", "path", "format", "overwrite")},
};

/* ---- open / close ------------------------------------------------------------ */

static int64_t wall_clock(void *ctx)
{
	(void)ctx;
	return (int64_t)time(NULL);
}

int vms_control_open(vms_control **out, const char *home)
{
	int rc = 0;
	char *path = NULL;
	vms_control *ctl = NULL;
	struct stat st;

	if (!home || !*home)
		return vms_error_set(VMS_EINVAL, "no home directory given");
	if (mkdir(home, 0700) < 0 && errno != EEXIST)
		return vms_error_set_errno(errno, "cannot create home directory %s", home);
	if (stat(home, &st) < 0)
		return vms_error_set_errno(errno, "home directory %s", home);
	if (!S_ISDIR(st.st_mode))
		return vms_error_set(VMS_EINVAL, "home %s is not a directory", home);
	ctl = calloc(1, sizeof(*ctl));
	if (ctl)
		ctl->lock_fd = -1;
	if (!ctl || !(ctl->home = strdup(home)) || asprintf(&path, "%s/catalog.db", home) < 0) {
		path = NULL;
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	ctl->clock = wall_clock;
	ctl->lock_fd = -1;
	if ((rc = vms_catalog_open(&ctl->cat, path)) < 0)
		goto done;
	ctl->data_version = vms_catalog_data_version(ctl->cat);
	/* Every control holds <home>/control.lock shared.  The one that finds
	 * it free (exclusive) is alone, so rows left unsettled are a crash's,
	 * not another process's operation in flight: reconcile, then share. */
	free(path);
	if (asprintf(&path, "%s/control.lock", home) < 0) {
		path = NULL;
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((ctl->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		rc = vms_error_set_errno(errno, "cannot open %s", path);
		goto done;
	}
	if (flock(ctl->lock_fd, LOCK_EX | LOCK_NB) == 0) {
		if ((rc = ctl_reconcile(ctl)) < 0) {
			vms_error_wrap(rc, "reconciling the catalog with its SRs");
			goto done;
		}
	}
	if (flock(ctl->lock_fd, LOCK_SH) < 0) {
		rc = vms_error_set_errno(errno, "cannot lock %s", path);
		goto done;
	}
	*out = ctl;
	ctl = NULL;
done:
	free(path);
	if (ctl)
		vms_control_close(ctl);
	return rc;
}

void vms_control_close(vms_control *ctl)
{
	if (!ctl)
		return;
	ctl_index_drop_all(ctl);
	for (size_t i = 0; i < ctl->nsrs; i++)
		if (ctl->srs[i].h)
			ctl->srs[i].be->sr_close(ctl->srs[i].h);
	free(ctl->srs);
	vms_catalog_close(ctl->cat);
	if (ctl->lock_fd >= 0)
		close(ctl->lock_fd);
	free(ctl->home);
	free(ctl);
}

void vms_control_set_hooks(vms_control *ctl, const vms_control_hooks *hooks, void *ctx)
{
	memset(&ctl->hooks, 0, sizeof(ctl->hooks));
	ctl->have_hooks = 0;
	ctl->hooks_ctx = ctx;
	if (!hooks)
		return;
	size_t n = hooks->size < sizeof(ctl->hooks) ? hooks->size : sizeof(ctl->hooks);
	memcpy(&ctl->hooks, hooks, n);
	ctl->have_hooks = 1;
}

void vms_control_set_clock(vms_control *ctl, int64_t (*clock)(void *ctx), void *ctx)
{
	ctl->clock = clock ? clock : wall_clock;
	ctl->clock_ctx = clock ? ctx : NULL;
}

int64_t ctl_now(vms_control *ctl)
{
	return ctl->clock(ctl->clock_ctx);
}

/* ---- hooks --------------------------------------------------------------------- */

int ctl_disk_in_use(vms_control *ctl, const char *vdi_uuid)
{
	if (!ctl->have_hooks || !ctl->hooks.disk_in_use)
		return 0;
	return ctl->hooks.disk_in_use(ctl->hooks_ctx, vdi_uuid) > 0;
}

void ctl_disk_changed(vms_control *ctl, const char *vdi_uuid)
{
	if (ctl->have_hooks && ctl->hooks.disk_changed)
		ctl->hooks.disk_changed(ctl->hooks_ctx, vdi_uuid);
}

int ctl_check_busy(ctl_req *r, const vms_cat_vdi *disks, size_t n, int force, const char *what)
{
	int rc, busy = 0;
	char first[VMS_NAME_MAX + 1] = "";
	if (force)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!ctl_disk_in_use(r->ctl, disks[i].uuid))
			continue;
		if (!busy++)
			snprintf(first, sizeof(first), "%s", disks[i].name);
		if ((rc = ctl_extra_add(r, "busy", "vdi", disks[i].uuid, disks[i].name)) < 0)
			return rc;
	}
	if (busy)
		return vms_error_set(VMS_EBUSY, "cannot %s: disk '%s'%s open for writing by a client; "
		                     "retry when it is closed or pass force", what, first,
		                     busy > 1 ? " (and others) are" : " is");
	return 0;
}

/* ---- adapter: SR type -> backend table, opened lazily ------------------------- */

static const struct {
	uint64_t cap;
	const char *name;
} cap_names[] = {
	{VMS_CAP_SNAPSHOT, "snapshot"},     {VMS_CAP_CLONE, "clone"},
	{VMS_CAP_ROLLBACK_ANY, "rollback_any"}, {VMS_CAP_ATOMIC_MULTI, "atomic_multi"},
	{VMS_CAP_TRIM, "trim"},             {VMS_CAP_BLOCK_STATUS, "block_status"},
	{VMS_CAP_DIFF, "diff"},             {VMS_CAP_UNIQUE_BYTES, "unique_bytes"},
	{VMS_CAP_CHECK, "check"},           {VMS_CAP_RESIZE, "resize"},
	{VMS_CAP_DEFER_DELETE, "defer_delete"},
};

const char *ctl_cap_name(uint64_t cap)
{
	for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
		if (cap_names[i].cap == cap)
			return cap_names[i].name;
	return "unknown";
}

int ctl_caps_json(vms_json **out, uint64_t caps)
{
	vms_json *a = vms_json_new_array();
	int rc = a ? 0 : VMS_ENOMEM;
	for (size_t i = 0; rc == 0 && i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
		if (caps & cap_names[i].cap)
			rc = vms_json_array_append(a, vms_json_new_string(cap_names[i].name));
	if (rc < 0) {
		vms_json_free(a);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	*out = a;
	return 0;
}

int ctl_need_cap(const vms_backend *be, uint64_t cap, const char *sr_name)
{
	if (be->caps & cap)
		return 0;
	return vms_error_set(VMS_ENOTSUP, "SR '%s' (type %s) does not support '%s' (see the SR's caps)",
	                     sr_name ? sr_name : "?", be->type, ctl_cap_name(cap));
}

/* Type analysis and open: the SR's type from the catalog picks the backend,
 * which opens the SR's location (read-only where the backend can and
 * read_only asks it; *opened_ro says which open ran). */
static int sr_open(const vms_backend **be, vms_sr_handle **h, int *opened_ro, vms_control *ctl,
                   const char *sr_uuid, int read_only)
{
	int rc;
	vms_cat_sr sr;
	*opened_ro = 0;
	if ((rc = vms_cat_sr_get(&sr, ctl->cat, sr_uuid)) < 0)
		return rc;
	const vms_backend *b = vms_backend_find(sr.type);
	if (!b) {
		rc = vms_error_set(VMS_ENOTSUP, "SR '%s' has type '%s', which this vmsnap has no backend "
		                   "for", sr.name, sr.type);
		goto done;
	}
	*opened_ro = read_only &&
	             b->size >= offsetof(vms_backend, sr_open_readonly) + sizeof(b->sr_open_readonly) &&
	             b->sr_open_readonly;
	if ((rc = (*opened_ro ? b->sr_open_readonly : b->sr_open)(h, sr.location)) < 0) {
		vms_error_wrap(rc, "opening SR '%s' (%s at %s%s)", sr.name, sr.type, sr.location,
		               *opened_ro ? ", read-only" : "");
		goto done;
	}
	*be = b;
done:
	vms_cat_sr_clear(&sr);
	return rc;
}

/* Keep an opened SR for the requests to come; closed on failure. */
static int sr_keep(vms_control *ctl, const char *sr_uuid, const vms_backend *b, vms_sr_handle *hd)
{
	ctl_sr *n = realloc(ctl->srs, (ctl->nsrs + 1) * sizeof(*n));
	if (!n) {
		b->sr_close(hd);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	ctl->srs = n;
	memset(&n[ctl->nsrs], 0, sizeof(n[0]));
	snprintf(n[ctl->nsrs].uuid, sizeof(n[0].uuid), "%s", sr_uuid);
	n[ctl->nsrs].be = b;
	n[ctl->nsrs].h = hd;
	ctl->nsrs++;
	return 0;
}

/* The SR's cached handle, else a new one: kept in the cache, unless it was
 * opened read-only (*owned = 1: the caller closes it). */
static int sr_get(const vms_backend **be, vms_sr_handle **h, int *owned, vms_control *ctl, const char *sr_uuid,
                  int read_only)
{
	int rc, ro;
	*owned = 0;
	for (size_t i = 0; i < ctl->nsrs; i++) {
		if (strcmp(ctl->srs[i].uuid, sr_uuid) == 0) {
			*be = ctl->srs[i].be;
			*h = ctl->srs[i].h;
			return 0;
		}
	}
	if ((rc = sr_open(be, h, &ro, ctl, sr_uuid, read_only)) < 0)
		return rc;
	if (ro) {
		*owned = 1;
		return 0;
	}
	return sr_keep(ctl, sr_uuid, *be, *h);
}

int ctl_sr_backend(const vms_backend **be, vms_sr_handle **h, vms_control *ctl, const char *sr_uuid)
{
	int owned;
	return sr_get(be, h, &owned, ctl, sr_uuid, 0);
}

int ctl_sr_backend_readonly(const vms_backend **be, vms_sr_handle **h, int *owned, vms_control *ctl,
                            const char *sr_uuid)
{
	return sr_get(be, h, owned, ctl, sr_uuid, 1);
}

void ctl_sr_forget(vms_control *ctl, const char *sr_uuid)
{
	for (size_t i = 0; i < ctl->nsrs; i++) {
		if (strcmp(ctl->srs[i].uuid, sr_uuid) != 0)
			continue;
		ctl->srs[i].be->sr_close(ctl->srs[i].h);
		ctl->srs[i] = ctl->srs[--ctl->nsrs];
		return;
	}
}

/* ---- retrieval: the per-VM snapshot index cache -------------------------------- */

static void index_slot_free(ctl_index *x)
{
	vms_snapindex_free(x->idx);
	memset(x, 0, sizeof(*x));
}

void ctl_index_drop(vms_control *ctl, const char *vm_uuid)
{
	for (size_t i = 0; i < CTL_INDEX_SLOTS; i++)
		if (ctl->index[i].idx && strcmp(ctl->index[i].vm_uuid, vm_uuid) == 0)
			index_slot_free(&ctl->index[i]);
}

void ctl_index_drop_all(vms_control *ctl)
{
	for (size_t i = 0; i < CTL_INDEX_SLOTS; i++)
		if (ctl->index[i].idx)
			index_slot_free(&ctl->index[i]);
}

void ctl_index_added(vms_control *ctl, const vms_cat_snapshot *s)
{
	for (size_t i = 0; i < CTL_INDEX_SLOTS; i++) {
		ctl_index *x = &ctl->index[i];
		if (!x->idx || strcmp(x->vm_uuid, s->vm_uuid) != 0)
			continue;
		if (vms_snapindex_insert(x->idx, s->time, s->seq, (uint64_t)s->rowid, s->name) < 0)
			index_slot_free(x);   /* rebuilt from the catalog on next use */
	}
}

static int index_build(vms_snapindex **out, vms_control *ctl, const char *vm_uuid, int all)
{
	vms_cat_snapshot *v = NULL;
	size_t n = 0;
	vms_snapindex *idx = NULL;
	int rc;
	if ((rc = vms_cat_snapshot_list(&v, &n, ctl->cat, vm_uuid, all)) < 0)
		return rc;
	if ((rc = vms_snapindex_new(&idx)) < 0)
		goto done;
	for (size_t i = 0; i < n; i++) {
		if (v[i].state != VMS_STATE_READY)
			continue;
		if ((rc = vms_snapindex_add(idx, v[i].time, v[i].seq, (uint64_t)v[i].rowid, v[i].name)) < 0)
			goto done;
	}
	if ((rc = vms_snapindex_sort(idx)) < 0)
		goto done;
	*out = idx;
	idx = NULL;
done:
	vms_snapindex_free(idx);
	free(v);
	return rc;
}

void ctl_sync(vms_control *ctl)
{
	int64_t dv = vms_catalog_data_version(ctl->cat);
	if (dv != ctl->data_version) {
		ctl_index_drop_all(ctl);
		ctl->data_version = dv;
	}
}

int ctl_index_get(vms_snapindex **out, vms_control *ctl, const char *vm_uuid, int all)
{
	int rc;
	ctl_index *victim = &ctl->index[0];
	all = !!all;
	for (size_t i = 0; i < CTL_INDEX_SLOTS; i++) {
		ctl_index *x = &ctl->index[i];
		if (x->idx && x->all == all && strcmp(x->vm_uuid, vm_uuid) == 0) {
			x->last_use = ++ctl->use_clock;
			*out = x->idx;
			return 0;
		}
		if (!x->idx || (victim->idx && x->last_use < victim->last_use))
			victim = x;
	}
	vms_snapindex *idx;
	if ((rc = index_build(&idx, ctl, vm_uuid, all)) < 0)
		return rc;
	if (victim->idx)
		index_slot_free(victim);
	snprintf(victim->vm_uuid, sizeof(victim->vm_uuid), "%s", vm_uuid);
	victim->all = all;
	victim->idx = idx;
	victim->last_use = ++ctl->use_clock;
	*out = idx;
	return 0;
}

/* ---- arguments -------------------------------------------------------------------- */

int ctl_arg_str(const char **out, ctl_req *r, const char *key, int required)
{
	*out = NULL;
	return vms_json_get_string(out, r->args, key, required);
}

int ctl_arg_bool(ctl_req *r, const char *key, int *out)
{
	*out = 0;
	return vms_json_get_bool(out, r->args, key, 0);
}

int ctl_arg_size(uint64_t *out, ctl_req *r, const char *key, int required)
{
	return vms_json_get_size(out, r->args, key, required);
}

int ctl_begin(vms_control *ctl)
{
	return vms_catalog_begin(ctl->cat);
}

int ctl_commit(vms_control *ctl)
{
	return vms_catalog_commit(ctl->cat);
}

int ctl_extra_add(ctl_req *r, const char *key, const char *kind, const char *uuid, const char *name)
{
	int rc;
	if (!r->extra && !(r->extra = vms_json_new_object()))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	vms_json *arr = (vms_json *)vms_json_object_get(r->extra, key);
	if (!arr) {
		if ((rc = vms_json_object_set(r->extra, key, vms_json_new_array())) < 0)
			return rc;
		arr = (vms_json *)vms_json_object_get(r->extra, key);
	}
	return vms_json_array_append(arr, ctl_ref_obj(kind, uuid, name));
}

/* ---- exec ---------------------------------------------------------------------------- */

static int check_args(const struct ctl_op *op, const vms_json *args)
{
	if (!args)
		return 0;
	if (vms_json_type_of(args) != VMS_JSON_OBJECT)
		return vms_error_set(VMS_EINVAL, "'args' must be an object");
	for (size_t i = 0; i < vms_json_object_len(args); i++) {
		const char *k = vms_json_object_key_at(args, i);
		int ok = 0;
		for (const char *const *a = op->args; *a && !ok; a++)
			ok = strcmp(*a, k) == 0;
		if (!ok) {
			char allowed[512] = "";
			size_t len = 0;
			for (const char *const *a = op->args; *a; a++)
				len += (size_t)snprintf(allowed + len, len < sizeof(allowed) ?
				                        sizeof(allowed) - len : 0, "%s%s",
				                        len ? ", " : "", *a);
			return vms_error_set(VMS_EINVAL, "%s: unknown argument '%.64s' (accepted: %s)",
			                     op->name, k, *op->args ? allowed : "none");
		}
	}
	return 0;
}

static int respond(char **out, int code, vms_json *result, vms_json *extra)
{
	int rc;
	vms_json *env = vms_json_new_object();
	if (!env) {
		vms_json_free(result);
		vms_json_free(extra);
		return VMS_ENOMEM;
	}
	rc = vms_json_object_set_int(env, "output_version", 1);
	if (code == 0) {
		if (rc == 0)
			rc = vms_json_object_set(env, "result", result ? result : vms_json_new_object());
		vms_json_free(extra);
	} else {
		vms_json_free(result);
		vms_json *e = vms_json_new_object();
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vms_error_last());
		if (!msg[0])
			snprintf(msg, sizeof(msg), "%s", vms_error_name(code));
		if (e) {
			vms_json_object_set_string(e, "code", vms_error_name(code));
			vms_json_object_set_string(e, "message", msg);
			for (size_t i = 0; extra && i < vms_json_object_len(extra); i++)
				vms_json_object_set(e, vms_json_object_key_at(extra, i),
				                    vms_json_copy(vms_json_object_value_at(extra, i)));
		}
		vms_json_free(extra);
		if (rc == 0)
			rc = vms_json_object_set(env, "error", e);
		else
			vms_json_free(e);
		if (rc == 0)
			vms_error_set(code, "%s", msg);   /* keep the op's message for the caller */
	}
	char *text = NULL;
	if (rc == 0)
		rc = vms_json_serialize(&text, env, 0);
	vms_json_free(env);
	if (rc < 0)
		return rc;
	*out = text;
	return 0;
}

int vms_control_exec(char **out, vms_control *ctl, const char *request)
{
	int rc;
	vms_json *req = NULL, *result = NULL;
	ctl_req r = {.ctl = ctl};
	const struct ctl_op *op = NULL;
	const char *name = NULL;
	*out = NULL;
	vms_error_clear();
	if (!request) {
		rc = vms_error_set(VMS_EINVAL, "empty request");
		goto done;
	}
	size_t len = strnlen(request, REQUEST_MAX + 1);
	if (len > REQUEST_MAX) {
		rc = vms_error_set(VMS_EINVAL, "request larger than %u bytes", REQUEST_MAX);
		goto done;
	}
	vms_json_limits lim = {.max_bytes = REQUEST_MAX, .max_depth = 64};
	if ((rc = vms_json_parse_ex(&req, request, len, &lim)) < 0)
		goto done;
	if (vms_json_type_of(req) != VMS_JSON_OBJECT) {
		rc = vms_error_set(VMS_EINVAL, "a request is a JSON object {\"op\":...,\"args\":{...}}");
		goto done;
	}
	for (size_t i = 0; i < vms_json_object_len(req); i++) {
		const char *k = vms_json_object_key_at(req, i);
		if (strcmp(k, "op") != 0 && strcmp(k, "args") != 0) {
			rc = vms_error_set(VMS_EINVAL, "unknown request member '%.64s' (a request has 'op' "
			                   "and 'args')", k);
			goto done;
		}
	}
	if ((rc = vms_json_get_string(&name, req, "op", 1)) < 0)
		goto done;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]) && !op; i++)
		if (strcmp(ops[i].name, name) == 0)
			op = &ops[i];
	if (!op) {
		rc = vms_error_set(VMS_EINVAL, "unknown op '%.64s'", name);
		goto done;
	}
	r.args = vms_json_object_get(req, "args");
	if (vms_json_type_of(r.args) == VMS_JSON_NULL)
		r.args = NULL;
	if ((rc = check_args(op, r.args)) < 0)
		goto done;
	ctl_sync(ctl);
	rc = op->fn(&result, &r);
	if (rc < 0) {
		vms_json_free(result);
		result = NULL;
	}
done:
	/* a failed op never leaves a transaction open */
	vms_catalog_rollback(ctl->cat);
	vms_json_free(req);
	if (rc < 0 && rc > VMS_EPERM - 1 && vms_error_last_code() == 0)
		vms_error_set(rc, "%s", vms_error_name(rc));
	int wrc = respond(out, rc < 0 ? rc : 0, rc < 0 ? NULL : result, r.extra);
	if (wrc < 0)
		return wrc;
	return rc < 0 ? rc : 0;
}
