/*
 * export.c - shared, gated exports (see export.h).
 *
 * Design and invariants
 *  - xs->lock guards the list of exports and their reference counts; an
 *    export stays in the list while refs > 0 or while it waits for reopen.
 *  - The gate: hold_writes/hold_all (counters, holds nest) and
 *    inflight_reads/inflight_writes are atomics.  An I/O first counts
 *    itself in flight, then looks at the holds (both sequentially
 *    consistent); a holder first sets its hold, then waits, under e->lock,
 *    for the in-flight count to drain.  So either the I/O sees the hold
 *    and backs off, or the holder sees the I/O and waits for it: the fast
 *    path takes no lock.  Waits (holders, backed-off I/O) happen on
 *    e->cond under e->lock; whoever changes a hold or drains the last I/O
 *    while a hold is set broadcasts under e->lock, so no wake-up is lost.
 *  - e->disk is only replaced or closed while hold_all > 0 and no I/O is in
 *    flight, so an I/O that entered the gate always uses a live handle.
 *  - A writable export is found by its key (the VDI uuid) and by name;
 *    a read-only one by name only.  Both always by (name|key, readonly).
 *    A writable disk therefore has at most one export and one handle
 *    whatever names its clients used, which makes CAN_MULTI_CONN safe.
 *  - Sources are called without xs->lock (they take the control lock).
 */
#include "export.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vmsnap/error.h"

struct vmsd_export {
	struct vmsd_export_info info; /* info.name points at name */
	vmsd_exports *xs;
	char *name;
	char *key;
	unsigned flags;        /* flags it was opened with */
	vms_disk *disk;

	/* under xs->lock */
	unsigned refs;
	unsigned writers;
	int reopen_pending;    /* 1: waits for vmsd_exports_reopen, 2: being reopened */
	struct vmsd_export *next;

	/* under lock: the gate */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Atomic (sequentially consistent), so that an I/O enters and leaves
	 * the gate without the lock while nothing is held (see enter). */
	_Atomic unsigned hold_writes;
	_Atomic unsigned hold_all;
	_Atomic unsigned inflight_reads;
	_Atomic unsigned inflight_writes;
	_Atomic int dead;      /* the disk went away: every I/O fails */
	int dirty;             /* written since the last flush on release */
};

struct vmsd_exports {
	pthread_mutex_t lock;
	vmsd_source *sources;
	size_t nsources;
	int force_readonly;
	struct vmsd_export *head;
};

int vmsd_exports_new(vmsd_exports **out, const vmsd_source *sources, size_t nsources,
                     int force_readonly)
{
	vmsd_exports *xs = calloc(1, sizeof *xs);
	if (!xs)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	xs->sources = calloc(nsources ? nsources : 1, sizeof *sources);
	if (!xs->sources) {
		free(xs);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	memcpy(xs->sources, sources, nsources * sizeof *sources);
	xs->nsources = nsources;
	xs->force_readonly = force_readonly;
	pthread_mutex_init(&xs->lock, NULL);
	*out = xs;
	return 0;
}

static void export_destroy(struct vmsd_export *e)
{
	if (e->disk) {
		if (!e->info.readonly && e->dirty && e->info.be->disk_flush &&
		    e->info.be->disk_flush(e->disk) < 0)
			vmsd_error("export %s: flush on close failed: %s", e->name, vms_error_last());
		e->info.be->disk_close(e->disk);
	}
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	free(e->name);
	free(e->key);
	free(e);
}

void vmsd_exports_free(vmsd_exports *xs)
{
	if (!xs)
		return;
	struct vmsd_export *e = xs->head;
	while (e) {
		struct vmsd_export *next = e->next;
		if (e->refs)
			vmsd_warn("export %s still has %u users at exit", e->name, e->refs);
		export_destroy(e);
		e = next;
	}
	pthread_mutex_destroy(&xs->lock);
	free(xs->sources);
	free(xs);
}

static struct vmsd_export *find_locked(vmsd_exports *xs, const char *name, const char *key,
                                       int readonly)
{
	for (struct vmsd_export *e = xs->head; e; e = e->next) {
		/* An export waiting for its reopen is shared too: its I/O is
		 * held until the reopen, then uses the new handle. */
		if (e->info.readonly != readonly)
			continue;
		if (e->dead)
			continue;
		if (name && strcmp(e->name, name) == 0)
			return e;
		if (key && !readonly && strcmp(e->key, key) == 0)
			return e;
	}
	return NULL;
}

static int source_open(vmsd_exports *xs, vms_disk **disk, const vms_backend **be, char **key,
                       unsigned *min_block, const char *name, unsigned flags)
{
	int rc = vms_error_set(VMS_ENOTFOUND, "no export named '%s'", name);
	for (size_t i = 0; i < xs->nsources; i++) {
		rc = xs->sources[i].open(xs->sources[i].ctx, disk, be, key, name, flags);
		*min_block = xs->sources[i].min_block ? xs->sources[i].min_block : 1;
		if (rc != VMS_ENOTFOUND)
			return rc;
	}
	return rc;
}

int vmsd_export_open(vmsd_export **out, vmsd_exports *xs, const char *name, int writer)
{
	int readonly = xs->force_readonly || strchr(name, '@') != NULL;
	for (size_t i = 0; !readonly && i < xs->nsources; i++)
		if (xs->sources[i].is_readonly && xs->sources[i].is_readonly(xs->sources[i].ctx, name))
			readonly = 1;
	unsigned flags = readonly ? VMS_DISK_READONLY : 0;
	struct vmsd_export *e;

	pthread_mutex_lock(&xs->lock);
	e = find_locked(xs, name, NULL, readonly);
	if (e)
		goto take;
	pthread_mutex_unlock(&xs->lock);

	vms_disk *disk = NULL;
	const vms_backend *be = NULL;
	char *key = NULL;
	unsigned min_block = 1;
	int rc = source_open(xs, &disk, &be, &key, &min_block, name, flags);
	if (rc < 0)
		return rc;
	if (!key || !be || !disk) {
		free(key);
		if (disk && be)
			be->disk_close(disk);
		return vms_error_set(VMS_EIO, "export '%s': source returned no disk", name);
	}

	pthread_mutex_lock(&xs->lock);
	e = find_locked(xs, name, key, readonly);
	if (e) {
		/* Another connection opened it meanwhile, or under another name
		 * (same key): share that handle so flushes cover every writer. */
		pthread_mutex_unlock(&xs->lock);
		be->disk_close(disk);
		free(key);
		pthread_mutex_lock(&xs->lock);
		goto take;
	}
	e = calloc(1, sizeof *e);
	if (!e || !(e->name = strdup(name))) {
		pthread_mutex_unlock(&xs->lock);
		if (e)
			free(e);
		be->disk_close(disk);
		free(key);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	e->xs = xs;
	e->key = key;
	e->disk = disk;
	e->flags = flags;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	e->info.name = e->name;
	e->info.be = be;
	e->info.size = be->disk_size(disk);
	e->info.readonly = readonly;
	e->info.can_trim = be->disk_trim != NULL;
	e->info.can_zero = be->disk_zero != NULL;
	e->info.can_block_status = be->disk_block_status != NULL;
	e->info.min_block = min_block;
	e->next = xs->head;
	xs->head = e;
	vmsd_info("export %s opened (%s, %llu bytes, key %s)", name, readonly ? "read-only" : "read-write",
	          (unsigned long long)e->info.size, key);
take:
	e->refs++;
	if (writer && !e->info.readonly)
		e->writers++;
	pthread_mutex_unlock(&xs->lock);
	*out = e;
	return 0;
}

void vmsd_export_release(vmsd_export *e, int writer)
{
	vmsd_exports *xs = e->xs;
	pthread_mutex_lock(&xs->lock);
	if (writer && !e->info.readonly && e->writers)
		e->writers--;
	if (--e->refs > 0 || e->reopen_pending) {
		pthread_mutex_unlock(&xs->lock);
		return;
	}
	for (struct vmsd_export **p = &xs->head; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			break;
		}
	pthread_mutex_unlock(&xs->lock);
	vmsd_info("export %s closed", e->name);
	export_destroy(e);
}

const struct vmsd_export_info *vmsd_export_info(const vmsd_export *e)
{
	return &e->info;
}

static int held(struct vmsd_export *e, int write)
{
	return e->hold_all || (write && e->hold_writes);
}

static void gate_out(struct vmsd_export *e, int write)
{
	unsigned left = write ? --e->inflight_writes : --e->inflight_reads;
	if (left == 0 && (e->hold_all || e->hold_writes)) {
		/* A holder may be waiting for this drain. */
		pthread_mutex_lock(&e->lock);
		pthread_cond_broadcast(&e->cond);
		pthread_mutex_unlock(&e->lock);
	}
}

vms_disk *vmsd_export_enter(vmsd_export *e, int write)
{
	for (;;) {
		if (write)
			e->inflight_writes++;
		else
			e->inflight_reads++;
		if (!held(e, write) && !e->dead)
			return e->disk; /* stable while we are counted in flight */
		gate_out(e, write);
		pthread_mutex_lock(&e->lock);
		while (!e->dead && held(e, write))
			pthread_cond_wait(&e->cond, &e->lock);
		pthread_mutex_unlock(&e->lock);
		if (e->dead) {
			vms_error_set(VMS_EIO, "export %s: the disk was removed or could not be reopened",
			              e->name);
			return NULL;
		}
	}
}

void vmsd_export_leave(vmsd_export *e, int write)
{
	gate_out(e, write);
}

void vmsd_export_dirty(vmsd_export *e)
{
	/* A plain store would do; the lock keeps ThreadSanitizer quiet and the
	 * cost is nothing next to the write it follows. */
	if (!__atomic_load_n(&e->dirty, __ATOMIC_RELAXED))
		__atomic_store_n(&e->dirty, 1, __ATOMIC_RELAXED);
}

static int key_matches(const struct vmsd_export *e, const char *const *keys, size_t nkeys)
{
	if (!keys)
		return 1;
	for (size_t i = 0; i < nkeys; i++)
		if (keys[i] && strcmp(keys[i], e->key) == 0)
			return 1;
	return 0;
}

int vmsd_exports_quiesce(vmsd_exports *xs, const char *const *keys, size_t nkeys, int hold)
{
	int n = 0;
	pthread_mutex_lock(&xs->lock);
	for (struct vmsd_export *e = xs->head; e; e = e->next) {
		if (e->info.readonly || !key_matches(e, keys, nkeys))
			continue;
		n++;
		pthread_mutex_lock(&e->lock);
		if (hold) {
			e->hold_writes++;
			while (e->inflight_writes > 0)
				pthread_cond_wait(&e->cond, &e->lock);
		} else if (e->hold_writes > 0) {
			if (--e->hold_writes == 0)
				pthread_cond_broadcast(&e->cond);
		}
		pthread_mutex_unlock(&e->lock);
	}
	pthread_mutex_unlock(&xs->lock);
	return n;
}

int vmsd_exports_writers(vmsd_exports *xs, const char *key)
{
	int n = 0;
	pthread_mutex_lock(&xs->lock);
	for (struct vmsd_export *e = xs->head; e; e = e->next)
		if (!e->info.readonly && strcmp(e->key, key) == 0)
			n += (int)e->writers;
	pthread_mutex_unlock(&xs->lock);
	return n;
}

void vmsd_exports_changed(vmsd_exports *xs, const char *key)
{
	pthread_mutex_lock(&xs->lock);
	for (struct vmsd_export *e = xs->head; e; e = e->next) {
		if (strcmp(e->key, key) != 0 || e->reopen_pending)
			continue;
		pthread_mutex_lock(&e->lock);
		e->hold_all++;
		while (e->inflight_writes > 0 || e->inflight_reads > 0)
			pthread_cond_wait(&e->cond, &e->lock);
		pthread_mutex_unlock(&e->lock);
		e->reopen_pending = 1;
		vmsd_info("export %s: disk changed, I/O held until it is reopened", e->name);
	}
	pthread_mutex_unlock(&xs->lock);
}

void vmsd_exports_reopen(vmsd_exports *xs)
{
	for (;;) {
		pthread_mutex_lock(&xs->lock);
		struct vmsd_export *e = xs->head;
		while (e && e->reopen_pending != 1)
			e = e->next;
		if (e)
			e->reopen_pending = 2; /* ours: a concurrent reopen skips it */
		pthread_mutex_unlock(&xs->lock);
		if (!e)
			return;
		/* e cannot go away: release() keeps reopen_pending exports. */
		vms_disk *disk = NULL;
		const vms_backend *be = NULL;
		char *key = NULL;
		unsigned min_block = 1;
		int rc = source_open(xs, &disk, &be, &key, &min_block, e->name, e->flags);
		pthread_mutex_lock(&xs->lock);
		pthread_mutex_lock(&e->lock);
		if (rc < 0) {
			vmsd_error("export %s: reopen after change failed, failing its I/O: %s", e->name,
			           vms_error_last());
			e->dead = 1;
		} else {
			if (e->disk)
				e->info.be->disk_close(e->disk);
			e->disk = disk;
			e->info.be = be;
			uint64_t size = be->disk_size(disk);
			if (size != e->info.size)
				vmsd_warn("export %s: size changed from %llu to %llu on reopen; clients keep "
				          "the old size until they reconnect",
				          e->name, (unsigned long long)e->info.size, (unsigned long long)size);
			free(key);
			vmsd_info("export %s reopened", e->name);
		}
		e->hold_all--;
		pthread_cond_broadcast(&e->cond);
		pthread_mutex_unlock(&e->lock);
		e->reopen_pending = 0;
		int gone = e->refs == 0;
		if (gone)
			for (struct vmsd_export **p = &xs->head; *p; p = &(*p)->next)
				if (*p == e) {
					*p = e->next;
					break;
				}
		pthread_mutex_unlock(&xs->lock);
		if (gone)
			export_destroy(e);
	}
}

int vmsd_exports_list(vms_json **out, vmsd_exports *xs)
{
	vms_json *arr = vms_json_new_array();
	if (!arr)
		return VMS_ENOMEM;
	for (size_t i = 0; i < xs->nsources; i++) {
		if (!xs->sources[i].list)
			continue;
		int rc = xs->sources[i].list(xs->sources[i].ctx, arr);
		if (rc < 0) {
			vms_json_free(arr);
			return rc;
		}
	}
	*out = arr;
	return 0;
}

vms_json *vmsd_exports_status(vmsd_exports *xs)
{
	vms_json *arr = vms_json_new_array();
	if (!arr)
		return NULL;
	pthread_mutex_lock(&xs->lock);
	for (struct vmsd_export *e = xs->head; e; e = e->next) {
		vms_json *o = vms_json_new_object();
		pthread_mutex_lock(&e->lock);
		int rc = vms_json_object_set_string(o, "name", e->name);
		if (!rc) rc = vms_json_object_set_string(o, "key", e->key);
		if (!rc) rc = vms_json_object_set_int(o, "size", (int64_t)e->info.size);
		if (!rc) rc = vms_json_object_set_bool(o, "readonly", e->info.readonly);
		if (!rc) rc = vms_json_object_set_int(o, "clients", e->refs);
		if (!rc) rc = vms_json_object_set_int(o, "writers", e->writers);
		if (!rc) rc = vms_json_object_set_bool(o, "held", e->hold_all || e->hold_writes);
		if (!rc) rc = vms_json_object_set_bool(o, "failed", e->dead);
		pthread_mutex_unlock(&e->lock);
		if (rc < 0 || vms_json_array_append(arr, o) < 0) {
			if (rc < 0)
				vms_json_free(o);
			pthread_mutex_unlock(&xs->lock);
			vms_json_free(arr);
			return NULL;
		}
	}
	pthread_mutex_unlock(&xs->lock);
	return arr;
}

int vmsd_exports_flush_all(vmsd_exports *xs)
{
	int ret = 0;
	pthread_mutex_lock(&xs->lock);
	for (struct vmsd_export *e = xs->head; e; e = e->next) {
		if (e->info.readonly || !e->info.be->disk_flush)
			continue;
		vms_disk *d = vmsd_export_enter(e, 1);
		if (!d)
			continue;
		int rc = e->info.be->disk_flush(d);
		vmsd_export_leave(e, 1);
		if (rc < 0) {
			vmsd_error("export %s: flush failed: %s", e->name, vms_error_last());
			ret = rc;
		}
	}
	pthread_mutex_unlock(&xs->lock);
	return ret;
}
