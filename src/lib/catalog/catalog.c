/*
 * The SQLite catalog (see vmsnap/catalog.h and docs/design/catalog.md).
 *
 * Invariants kept by the schema itself:
 *   - every foreign key holds (PRAGMA foreign_keys=ON on every connection):
 *     a VBD names an existing VM and VDI, a snapshot_disk an existing
 *     snapshot and VDI, a clone's parent an existing snapshot;
 *   - names are unique where selectors need them: SR names globally, live
 *     VM names globally, a live snapshot's (vm, name, time) i.e. its full
 *     name; a VDI is attached to at most one VM, one per device position;
 *   - snapshot (vm, seq) is unique: seq totally orders a VM's snapshots
 *     that share a time tag.
 * Durability: WAL with synchronous=FULL, so a commit is on disk before the
 * control layer asks a backend to act on it (write-ahead intent).
 *
 * Schema versions: PRAGMA user_version holds the version; `migrations[i]`
 * takes a catalog from version i to i+1 inside one transaction.  The file
 * carries PRAGMA application_id 'vmsn' so that another SQLite file is not
 * mistaken for a catalog.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>

#include "vmsnap/catalog.h"
#include "vmsnap/error.h"

#define APPLICATION_ID 0x766d736e /* 'vmsn' */
#define BUSY_TIMEOUT_MS 10000

struct vms_catalog {
	sqlite3 *db;
	char *path;
	int in_tx;
};

static const char *const migrations[] = {
	/* 0 -> 1: the object model */
	"CREATE TABLE sr("
	"  uuid TEXT PRIMARY KEY NOT NULL CHECK(length(uuid) = 36),"
	"  name TEXT NOT NULL UNIQUE,"
	"  type TEXT NOT NULL,"
	"  location TEXT NOT NULL UNIQUE,"
	"  options TEXT,"
	"  size INTEGER NOT NULL DEFAULT 0,"
	"  state INTEGER NOT NULL DEFAULT 0 CHECK(state IN (0, 1, 2)),"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE vm("
	"  uuid TEXT PRIMARY KEY NOT NULL CHECK(length(uuid) = 36),"
	"  name TEXT NOT NULL,"
	"  sr_uuid TEXT NOT NULL REFERENCES sr(uuid),"
	"  parent_snapshot TEXT REFERENCES snapshot(uuid),"
	"  is_deleted INTEGER NOT NULL DEFAULT 0 CHECK(is_deleted IN (0, 1)),"
	"  state INTEGER NOT NULL DEFAULT 0 CHECK(state IN (0, 1, 2)),"
	"  created INTEGER NOT NULL,"
	"  next_seq INTEGER NOT NULL DEFAULT 1);"
	"CREATE UNIQUE INDEX vm_name ON vm(name) WHERE is_deleted = 0;"
	"CREATE INDEX vm_parent ON vm(parent_snapshot);"
	"CREATE INDEX vm_sr ON vm(sr_uuid);"
	"CREATE TABLE vdi("
	"  uuid TEXT PRIMARY KEY NOT NULL CHECK(length(uuid) = 36),"
	"  name TEXT NOT NULL,"
	"  sr_uuid TEXT NOT NULL REFERENCES sr(uuid),"
	"  size INTEGER NOT NULL,"
	"  ref TEXT,"
	"  is_deleted INTEGER NOT NULL DEFAULT 0 CHECK(is_deleted IN (0, 1)),"
	"  state INTEGER NOT NULL DEFAULT 0 CHECK(state IN (0, 1, 2)),"
	"  created INTEGER NOT NULL);"
	"CREATE INDEX vdi_sr ON vdi(sr_uuid);"
	"CREATE TABLE vbd("
	"  uuid TEXT PRIMARY KEY NOT NULL CHECK(length(uuid) = 36),"
	"  vm_uuid TEXT NOT NULL REFERENCES vm(uuid),"
	"  vdi_uuid TEXT NOT NULL UNIQUE REFERENCES vdi(uuid),"
	"  device INTEGER NOT NULL CHECK(device >= 0),"
	"  UNIQUE(vm_uuid, device));"
	"CREATE TABLE snapshot("
	"  uuid TEXT NOT NULL UNIQUE CHECK(length(uuid) = 36),"
	"  vm_uuid TEXT NOT NULL REFERENCES vm(uuid),"
	"  name TEXT NOT NULL,"
	"  time INTEGER NOT NULL,"
	"  seq INTEGER NOT NULL,"
	"  is_deleted INTEGER NOT NULL DEFAULT 0 CHECK(is_deleted IN (0, 1)),"
	"  state INTEGER NOT NULL DEFAULT 0 CHECK(state IN (0, 1, 2)),"
	"  created INTEGER NOT NULL,"
	"  UNIQUE(vm_uuid, seq));"
	"CREATE UNIQUE INDEX snapshot_fullname ON snapshot(vm_uuid, name, time) WHERE is_deleted = 0;"
	"CREATE TABLE snapshot_disk("
	"  snapshot_uuid TEXT NOT NULL REFERENCES snapshot(uuid) ON DELETE CASCADE,"
	"  vdi_uuid TEXT NOT NULL REFERENCES vdi(uuid),"
	"  disk_name TEXT NOT NULL,"
	"  device INTEGER NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  ref TEXT,"
	"  PRIMARY KEY(snapshot_uuid, vdi_uuid));"
	"CREATE INDEX snapshot_disk_vdi ON snapshot_disk(vdi_uuid);"
	"CREATE TABLE orphan("
	"  id INTEGER PRIMARY KEY,"
	"  sr_uuid TEXT,"
	"  kind TEXT NOT NULL,"
	"  uuid TEXT NOT NULL,"
	"  detail TEXT,"
	"  time INTEGER NOT NULL);",
	/* 1 -> 2: retention policies and snapshot holds */
	"CREATE TABLE policy("
	"  target_uuid TEXT PRIMARY KEY,"
	"  target_kind TEXT NOT NULL CHECK(target_kind IN ('sr','vm')),"
	"  spec TEXT NOT NULL,"
	"  updated INTEGER NOT NULL);"
	"ALTER TABLE snapshot ADD COLUMN hold TEXT;",
	/* 2 -> 3: the intent of a rollback in progress (reconciliation redoes it) */
	"ALTER TABLE vm ADD COLUMN pending_rollback TEXT REFERENCES snapshot(uuid);",
};

#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))
_Static_assert(NMIGRATIONS == VMS_CATALOG_SCHEMA_VERSION, "one migration per schema version");

const char *vms_obj_state_name(int state)
{
	switch (state) {
	case VMS_STATE_CREATING: return "creating";
	case VMS_STATE_READY: return "ready";
	case VMS_STATE_DELETING: return "deleting";
	}
	return "unknown";
}

/* Map an SQLite result to a vms code with a message. */
static int db_error(vms_catalog *cat, int src, const char *what)
{
	const char *msg = cat && cat->db ? sqlite3_errmsg(cat->db) : sqlite3_errstr(src);
	int code;
	switch (src & 0xff) {
	case SQLITE_CONSTRAINT:
		code = (src == SQLITE_CONSTRAINT_UNIQUE || src == SQLITE_CONSTRAINT_PRIMARYKEY)
		               ? VMS_EEXISTS : VMS_EINVAL;
		break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: code = VMS_EBUSY; break;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB: code = VMS_ECORRUPT; break;
	case SQLITE_FULL: code = VMS_ENOSPC; break;
	case SQLITE_NOMEM: code = VMS_ENOMEM; break;
	case SQLITE_READONLY: code = VMS_EROFS; break;
	case SQLITE_CANTOPEN:
	case SQLITE_PERM: code = VMS_EPERM; break;
	default: code = VMS_EIO; break;
	}
	return vms_error_set(code, "catalog: %s: %s", what, msg);
}

static int exec(vms_catalog *cat, const char *sql)
{
	int src = sqlite3_exec(cat->db, sql, NULL, NULL, NULL);
	return src == SQLITE_OK ? 0 : db_error(cat, src, "exec");
}

static int prep(sqlite3_stmt **st, vms_catalog *cat, const char *sql)
{
	int src = sqlite3_prepare_v2(cat->db, sql, -1, st, NULL);
	return src == SQLITE_OK ? 0 : db_error(cat, src, "prepare");
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s && *s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

/* Step a statement that returns no rows; finalizes it. */
static int run(vms_catalog *cat, sqlite3_stmt *st, const char *what)
{
	int src = sqlite3_step(st);
	int rc = src == SQLITE_DONE ? 0 : db_error(cat, sqlite3_extended_errcode(cat->db), what);
	sqlite3_finalize(st);
	return rc;
}

/* Step an UPDATE/DELETE of one row by key: ENOTFOUND if nothing changed. */
static int run_one(vms_catalog *cat, sqlite3_stmt *st, const char *what, const char *key)
{
	int rc = run(cat, st, what);
	if (rc == 0 && sqlite3_changes(cat->db) == 0)
		rc = vms_error_set(VMS_ENOTFOUND, "catalog: %s: no such object %s", what, key);
	return rc;
}

static void col_copy(char *dst, size_t cap, sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	return s ? strdup((const char *)s) : NULL;
}

static int64_t pragma_int(vms_catalog *cat, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;
	if (prep(&st, cat, sql) < 0)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

int vms_catalog_schema_version(vms_catalog *cat)
{
	return (int)pragma_int(cat, "PRAGMA user_version");
}

int64_t vms_catalog_data_version(vms_catalog *cat)
{
	return pragma_int(cat, "PRAGMA data_version");
}

static int migrate(vms_catalog *cat)
{
	int rc;
	if ((rc = exec(cat, "BEGIN IMMEDIATE")) < 0)
		return rc;
	int64_t version = pragma_int(cat, "PRAGMA user_version");
	int64_t appid = pragma_int(cat, "PRAGMA application_id");
	int64_t tables = pragma_int(cat, "SELECT count(*) FROM sqlite_master");
	char sql[96];
	if (version < 0 || appid < 0 || tables < 0) {
		rc = vms_error_set(VMS_ECORRUPT, "catalog %s: cannot read its header", cat->path);
		goto done;
	}
	if (appid != APPLICATION_ID && (appid != 0 || tables != 0)) {
		rc = vms_error_set(VMS_ECORRUPT, "%s is an SQLite database but not a vmsnap catalog "
		                   "(application_id %#llx)", cat->path, (unsigned long long)appid);
		goto done;
	}
	if (version > VMS_CATALOG_SCHEMA_VERSION) {
		rc = vms_error_set(VMS_ENOTSUP, "catalog %s has schema version %lld, newer than this "
		                   "vmsnap understands (%d): upgrade vmsnap", cat->path,
		                   (long long)version, VMS_CATALOG_SCHEMA_VERSION);
		goto done;
	}
	for (int64_t v = version; v < VMS_CATALOG_SCHEMA_VERSION; v++) {
		if ((rc = exec(cat, migrations[v])) < 0) {
			vms_error_wrap(rc, "catalog migration %lld -> %lld", (long long)v, (long long)v + 1);
			goto done;
		}
	}
	/* Set only what differs: writing the same header values again still
	 * rewrites the header, and an open that reads (check) must leave the
	 * file as it was. */
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", VMS_CATALOG_SCHEMA_VERSION);
	if (version != VMS_CATALOG_SCHEMA_VERSION && (rc = exec(cat, sql)) < 0)
		goto done;
	snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", APPLICATION_ID);
	if (appid != APPLICATION_ID && (rc = exec(cat, sql)) < 0)
		goto done;
	rc = exec(cat, "COMMIT");
done:
	if (rc < 0)
		sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int vms_catalog_open(vms_catalog **out, const char *path)
{
	int rc = 0;
	vms_catalog *cat = calloc(1, sizeof(*cat));
	if (!cat || !(cat->path = strdup(path))) {
		free(cat);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	/* The catalog names every object and path: owner only.  SQLite would
	 * create it 0644, and it gives the -wal and -shm files the mode of the
	 * database file, so creating that file 0600 first covers all three.
	 * (An existing file keeps its mode; a failure here is SQLite's to
	 * report.) */
	if (path[0] && strcmp(path, ":memory:") != 0 && strncmp(path, "file:", 5) != 0) {
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	int src = sqlite3_open_v2(path, &cat->db,
	                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (src != SQLITE_OK) {
		rc = db_error(cat, src, path);
		goto done;
	}
	sqlite3_extended_result_codes(cat->db, 1);
	sqlite3_busy_timeout(cat->db, BUSY_TIMEOUT_MS);
	/* journal_mode returns a row; exec ignores it.  A file that is not a
	 * database fails here with SQLITE_NOTADB. */
	if ((rc = exec(cat, "PRAGMA journal_mode = WAL")) < 0 ||
	    (rc = exec(cat, "PRAGMA synchronous = FULL")) < 0 ||
	    (rc = exec(cat, "PRAGMA foreign_keys = ON")) < 0 ||
	    (rc = migrate(cat)) < 0)
		goto done;
	if (pragma_int(cat, "PRAGMA foreign_keys") != 1) {
		rc = vms_error_set(VMS_ENOTSUP, "catalog: this SQLite cannot enforce foreign keys");
		goto done;
	}
	*out = cat;
	return 0;
done:
	vms_error_wrap(rc, "opening catalog %s", path);
	sqlite3_close(cat->db);
	free(cat->path);
	free(cat);
	return rc;
}

void vms_catalog_close(vms_catalog *cat)
{
	if (!cat)
		return;
	if (cat->in_tx)
		sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(cat->db);
	free(cat->path);
	free(cat);
}

int vms_catalog_begin(vms_catalog *cat)
{
	int rc;
	if (cat->in_tx)
		return vms_error_set(VMS_EINVAL, "catalog: transaction already open");
	if ((rc = exec(cat, "BEGIN IMMEDIATE")) < 0)
		return rc;
	cat->in_tx = 1;
	return 0;
}

int vms_catalog_commit(vms_catalog *cat)
{
	int rc = exec(cat, "COMMIT");
	if (rc < 0) {
		sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
		cat->in_tx = 0;
		return rc;
	}
	cat->in_tx = 0;
	return 0;
}

void vms_catalog_rollback(vms_catalog *cat)
{
	if (!cat->in_tx)
		return;
	sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
	cat->in_tx = 0;
}

int vms_catalog_integrity(char **out, vms_catalog *cat)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "PRAGMA integrity_check(20)")) < 0)
		return rc;
	size_t len = 0, cap = 256;
	char *buf = malloc(cap);
	int ok = 0;
	if (!buf) {
		sqlite3_finalize(st);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	buf[0] = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *line = (const char *)sqlite3_column_text(st, 0);
		if (!line)
			continue;
		if (strcmp(line, "ok") == 0)
			ok = 1;
		size_t n = strlen(line);
		if (len + n + 2 > cap) {
			cap = (len + n + 2) * 2;
			char *nb = realloc(buf, cap);
			if (!nb)
				break;
			buf = nb;
		}
		if (len)
			buf[len++] = '\n';
		memcpy(buf + len, line, n + 1);
		len += n;
	}
	sqlite3_finalize(st);
	/* foreign key violations count as corruption of the object model */
	if (ok && pragma_int(cat, "SELECT count(*) FROM pragma_foreign_key_check") > 0) {
		ok = 0;
		free(buf);
		buf = strdup("foreign key violations (PRAGMA foreign_key_check)");
	}
	*out = buf;
	return ok ? 0 : VMS_ECORRUPT;
}

/* Several statements as one: a savepoint works inside and outside a
 * caller's transaction, so a failed insert leaves no half-made object. */
static int savepoint(vms_catalog *cat)
{
	return exec(cat, "SAVEPOINT vms_insert");
}

static int savepoint_end(vms_catalog *cat, int rc)
{
	if (rc < 0) {
		sqlite3_exec(cat->db, "ROLLBACK TO vms_insert; RELEASE vms_insert", NULL, NULL, NULL);
		return rc;
	}
	return exec(cat, "RELEASE vms_insert");
}

/* ---- SR ---------------------------------------------------------------- */

#define SR_COLS "uuid, name, type, location, options, size, state, created"

static void sr_row(vms_cat_sr *o, sqlite3_stmt *st)
{
	memset(o, 0, sizeof(*o));
	col_copy(o->uuid, sizeof(o->uuid), st, 0);
	col_copy(o->name, sizeof(o->name), st, 1);
	col_copy(o->type, sizeof(o->type), st, 2);
	o->location = col_dup(st, 3);
	o->options = col_dup(st, 4);
	o->size = (uint64_t)sqlite3_column_int64(st, 5);
	o->state = sqlite3_column_int(st, 6);
	o->created = sqlite3_column_int64(st, 7);
}

void vms_cat_sr_clear(vms_cat_sr *sr)
{
	if (!sr)
		return;
	free(sr->location);
	free(sr->options);
	sr->location = sr->options = NULL;
}

void vms_cat_sr_list_free(vms_cat_sr *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		vms_cat_sr_clear(&v[i]);
	free(v);
}

int vms_cat_sr_insert(vms_catalog *cat, const vms_cat_sr *sr)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "INSERT INTO sr(" SR_COLS ") VALUES(?,?,?,?,?,?,?,?)")) < 0)
		return rc;
	bind_text(st, 1, sr->uuid);
	bind_text(st, 2, sr->name);
	bind_text(st, 3, sr->type);
	bind_text(st, 4, sr->location);
	bind_text(st, 5, sr->options);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)sr->size);
	sqlite3_bind_int(st, 7, sr->state);
	sqlite3_bind_int64(st, 8, sr->created);
	rc = run(cat, st, "insert sr");
	if (rc == VMS_EEXISTS)
		vms_error_set(rc, "an SR named '%s' or at location '%s' already exists", sr->name,
		              sr->location);
	return rc;
}

/* Generic "list rows of a query" for the typed lists below. */
#define DEFINE_LIST(fn_name, type, rowfn)                                              \
	static int fn_name(type **out, size_t *n, vms_catalog *cat, sqlite3_stmt *st)  \
	{                                                                              \
		size_t len = 0, cap = 16;                                              \
		type *v = malloc(cap * sizeof(type));                                  \
		int src, rc = 0;                                                       \
		if (!v) {                                                              \
			sqlite3_finalize(st);                                          \
			return vms_error_set(VMS_ENOMEM, "out of memory");             \
		}                                                                      \
		while ((src = sqlite3_step(st)) == SQLITE_ROW) {                       \
			if (len == cap) {                                              \
				type *nv = realloc(v, cap * 2 * sizeof(type));         \
				if (!nv) {                                             \
					rc = vms_error_set(VMS_ENOMEM, "out of memory"); \
					break;                                         \
				}                                                      \
				v = nv;                                                \
				cap *= 2;                                              \
			}                                                              \
			rowfn(&v[len++], st);                                          \
		}                                                                      \
		if (rc == 0 && src != SQLITE_DONE)                                     \
			rc = db_error(cat, sqlite3_extended_errcode(cat->db), "list"); \
		sqlite3_finalize(st);                                                  \
		*out = v;                                                              \
		*n = len;                                                              \
		return rc;                                                             \
	}

DEFINE_LIST(collect_sr, vms_cat_sr, sr_row)

int vms_cat_sr_get(vms_cat_sr *out, vms_catalog *cat, const char *key)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " SR_COLS " FROM sr WHERE uuid = ?1 OR name = ?1")) < 0)
		return rc;
	bind_text(st, 1, key);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		sr_row(out, st);
		rc = 0;
	} else if (src == SQLITE_DONE) {
		rc = vms_error_set(VMS_ENOTFOUND, "no SR '%s'", key);
	} else {
		rc = db_error(cat, src, "get sr");
	}
	sqlite3_finalize(st);
	return rc;
}

int vms_cat_sr_list(vms_cat_sr **out, size_t *n, vms_catalog *cat)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " SR_COLS " FROM sr ORDER BY name")) < 0)
		return rc;
	rc = collect_sr(out, n, cat, st);
	if (rc < 0) {
		vms_cat_sr_list_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

static int set_int_col(vms_catalog *cat, const char *sql, int v, const char *uuid, const char *what)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, sql)) < 0)
		return rc;
	sqlite3_bind_int(st, 1, v);
	bind_text(st, 2, uuid);
	return run_one(cat, st, what, uuid);
}

static int delete_by_uuid(vms_catalog *cat, const char *sql, const char *uuid, const char *what)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, sql)) < 0)
		return rc;
	bind_text(st, 1, uuid);
	return run_one(cat, st, what, uuid);
}

int vms_cat_sr_set_state(vms_catalog *cat, const char *uuid, int state)
{
	return set_int_col(cat, "UPDATE sr SET state = ?1 WHERE uuid = ?2", state, uuid, "sr state");
}

static int sr_delete_steps(vms_catalog *cat, const char *uuid)
{
	int rc;
	sqlite3_stmt *st;
	if ((rc = prep(&st, cat, "DELETE FROM policy WHERE target_uuid = ?1")) < 0)
		return rc;
	bind_text(st, 1, uuid);
	if ((rc = run(cat, st, "delete sr policy")) < 0)
		return rc;
	return delete_by_uuid(cat, "DELETE FROM sr WHERE uuid = ?1", uuid, "delete sr");
}

int vms_cat_sr_delete(vms_catalog *cat, const char *uuid)
{
	int rc;
	if ((rc = savepoint(cat)) < 0)
		return rc;
	return savepoint_end(cat, sr_delete_steps(cat, uuid));
}

/* ---- VM ---------------------------------------------------------------- */

#define VM_INSERT_COLS "uuid, name, sr_uuid, parent_snapshot, is_deleted, state, created, next_seq"
#define VM_COLS VM_INSERT_COLS ", pending_rollback"

static void vm_row(vms_cat_vm *o, sqlite3_stmt *st)
{
	memset(o, 0, sizeof(*o));
	col_copy(o->uuid, sizeof(o->uuid), st, 0);
	col_copy(o->name, sizeof(o->name), st, 1);
	col_copy(o->sr_uuid, sizeof(o->sr_uuid), st, 2);
	col_copy(o->parent_snapshot, sizeof(o->parent_snapshot), st, 3);
	o->is_deleted = sqlite3_column_int(st, 4);
	o->state = sqlite3_column_int(st, 5);
	o->created = sqlite3_column_int64(st, 6);
	o->next_seq = (uint64_t)sqlite3_column_int64(st, 7);
	col_copy(o->pending_rollback, sizeof(o->pending_rollback), st, 8);
}

DEFINE_LIST(collect_vm, vms_cat_vm, vm_row)

int vms_cat_vm_insert(vms_catalog *cat, const vms_cat_vm *vm)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "INSERT INTO vm(" VM_INSERT_COLS ") VALUES(?,?,?,?,?,?,?,?)")) < 0)
		return rc;
	bind_text(st, 1, vm->uuid);
	bind_text(st, 2, vm->name);
	bind_text(st, 3, vm->sr_uuid);
	bind_text(st, 4, vm->parent_snapshot);
	sqlite3_bind_int(st, 5, vm->is_deleted);
	sqlite3_bind_int(st, 6, vm->state);
	sqlite3_bind_int64(st, 7, vm->created);
	sqlite3_bind_int64(st, 8, vm->next_seq ? (sqlite3_int64)vm->next_seq : 1);
	rc = run(cat, st, "insert vm");
	if (rc == VMS_EEXISTS)
		vms_error_set(rc, "a VM named '%s' already exists", vm->name);
	return rc;
}

int vms_cat_vm_get(vms_cat_vm *out, vms_catalog *cat, const char *key, int include_deleted)
{
	sqlite3_stmt *st;
	int rc;
	const char *sql = include_deleted
		? "SELECT " VM_COLS " FROM vm WHERE uuid = ?1 OR (name = ?1 AND is_deleted = 0)"
		: "SELECT " VM_COLS " FROM vm WHERE (uuid = ?1 OR name = ?1) AND is_deleted = 0";
	if ((rc = prep(&st, cat, sql)) < 0)
		return rc;
	bind_text(st, 1, key);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		vm_row(out, st);
		rc = 0;
	} else if (src == SQLITE_DONE) {
		rc = vms_error_set(VMS_ENOTFOUND, "no VM '%s'", key);
	} else {
		rc = db_error(cat, src, "get vm");
	}
	sqlite3_finalize(st);
	return rc;
}

int vms_cat_vm_list(vms_cat_vm **out, size_t *n, vms_catalog *cat, const char *sr_uuid,
                    int include_deleted)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " VM_COLS " FROM vm WHERE (?1 IS NULL OR sr_uuid = ?1) "
	                         "AND (?2 OR is_deleted = 0) ORDER BY name, created")) < 0)
		return rc;
	bind_text(st, 1, sr_uuid);
	sqlite3_bind_int(st, 2, include_deleted);
	rc = collect_vm(out, n, cat, st);
	if (rc < 0) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

int vms_cat_vm_children(vms_cat_vm **out, size_t *n, vms_catalog *cat, const char *snapshot_uuid)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " VM_COLS " FROM vm WHERE parent_snapshot = ?1 "
	                         "ORDER BY created, name")) < 0)
		return rc;
	bind_text(st, 1, snapshot_uuid);
	rc = collect_vm(out, n, cat, st);
	if (rc < 0) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

int vms_cat_vm_set_state(vms_catalog *cat, const char *uuid, int state)
{
	return set_int_col(cat, "UPDATE vm SET state = ?1 WHERE uuid = ?2", state, uuid, "vm state");
}

int vms_cat_vm_set_deleted(vms_catalog *cat, const char *uuid)
{
	return set_int_col(cat, "UPDATE vm SET is_deleted = ?1 WHERE uuid = ?2", 1, uuid, "vm deleted");
}

int vms_cat_vm_set_pending_rollback(vms_catalog *cat, const char *uuid, const char *snapshot_uuid)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "UPDATE vm SET pending_rollback = ?1 WHERE uuid = ?2")) < 0)
		return rc;
	bind_text(st, 1, snapshot_uuid);
	bind_text(st, 2, uuid);
	return run_one(cat, st, "vm pending rollback", uuid);
}

int vms_cat_vm_next_seq(uint64_t *out, vms_catalog *cat, const char *uuid)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "UPDATE vm SET next_seq = next_seq + 1 WHERE uuid = ?1 "
	                         "RETURNING next_seq - 1")) < 0)
		return rc;
	bind_text(st, 1, uuid);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		*out = (uint64_t)sqlite3_column_int64(st, 0);
		rc = 0;
	} else if (src == SQLITE_DONE) {
		rc = vms_error_set(VMS_ENOTFOUND, "no VM %s", uuid);
	} else {
		rc = db_error(cat, src, "vm sequence");
	}
	sqlite3_finalize(st);
	return rc;
}

static int count_query(int64_t *out, vms_catalog *cat, const char *sql, const char *key, int flag)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, sql)) < 0)
		return rc;
	bind_text(st, 1, key);
	sqlite3_bind_int(st, 2, flag);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = 0;
	} else {
		rc = db_error(cat, sqlite3_extended_errcode(cat->db), "count");
	}
	sqlite3_finalize(st);
	return rc;
}

int vms_cat_vm_clone_count(int64_t *out, vms_catalog *cat, const char *vm_uuid, int include_deleted)
{
	return count_query(out, cat, "SELECT count(*) FROM vm c JOIN snapshot s ON c.parent_snapshot = "
	                   "s.uuid WHERE s.vm_uuid = ?1 AND (?2 OR c.is_deleted = 0)", vm_uuid,
	                   include_deleted);
}

static int vm_delete_steps(vms_catalog *cat, const char *uuid)
{
	int rc;
	sqlite3_stmt *st;
	if ((rc = prep(&st, cat, "DELETE FROM policy WHERE target_uuid = ?1")) < 0)
		return rc;
	bind_text(st, 1, uuid);
	if ((rc = run(cat, st, "delete vm policy")) < 0)
		return rc;
	return delete_by_uuid(cat, "DELETE FROM vm WHERE uuid = ?1", uuid, "delete vm");
}

int vms_cat_vm_delete(vms_catalog *cat, const char *uuid)
{
	int rc;
	if ((rc = savepoint(cat)) < 0)
		return rc;
	return savepoint_end(cat, vm_delete_steps(cat, uuid));
}

/* ---- VDI and VBD ------------------------------------------------------- */

#define VDI_COLS "d.uuid, d.name, d.sr_uuid, b.vm_uuid, b.uuid, b.device, d.size, d.ref, " \
                 "d.is_deleted, d.state, d.created"
#define VDI_FROM " FROM vdi d LEFT JOIN vbd b ON b.vdi_uuid = d.uuid "

static void vdi_row(vms_cat_vdi *o, sqlite3_stmt *st)
{
	memset(o, 0, sizeof(*o));
	col_copy(o->uuid, sizeof(o->uuid), st, 0);
	col_copy(o->name, sizeof(o->name), st, 1);
	col_copy(o->sr_uuid, sizeof(o->sr_uuid), st, 2);
	col_copy(o->vm_uuid, sizeof(o->vm_uuid), st, 3);
	col_copy(o->vbd_uuid, sizeof(o->vbd_uuid), st, 4);
	o->device = (uint32_t)sqlite3_column_int64(st, 5);
	o->size = (uint64_t)sqlite3_column_int64(st, 6);
	o->ref = col_dup(st, 7);
	o->is_deleted = sqlite3_column_int(st, 8);
	o->state = sqlite3_column_int(st, 9);
	o->created = sqlite3_column_int64(st, 10);
}

DEFINE_LIST(collect_vdi, vms_cat_vdi, vdi_row)

void vms_cat_vdi_clear(vms_cat_vdi *v)
{
	if (v) {
		free(v->ref);
		v->ref = NULL;
	}
}

void vms_cat_vdi_list_free(vms_cat_vdi *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		vms_cat_vdi_clear(&v[i]);
	free(v);
}

static int vdi_insert(vms_catalog *cat, const vms_cat_vdi *vdi)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "INSERT INTO vdi(uuid, name, sr_uuid, size, ref, is_deleted, state, "
	                         "created) VALUES(?,?,?,?,?,?,?,?)")) < 0)
		return rc;
	bind_text(st, 1, vdi->uuid);
	bind_text(st, 2, vdi->name);
	bind_text(st, 3, vdi->sr_uuid);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)vdi->size);
	bind_text(st, 5, vdi->ref);
	sqlite3_bind_int(st, 6, vdi->is_deleted);
	sqlite3_bind_int(st, 7, vdi->state);
	sqlite3_bind_int64(st, 8, vdi->created);
	if ((rc = run(cat, st, "insert vdi")) < 0)
		return rc;
	if (!vdi->vm_uuid[0])
		return 0;
	if ((rc = prep(&st, cat, "INSERT INTO vbd(uuid, vm_uuid, vdi_uuid, device) VALUES(?,?,?,?)")) < 0)
		return rc;
	bind_text(st, 1, vdi->vbd_uuid);
	bind_text(st, 2, vdi->vm_uuid);
	bind_text(st, 3, vdi->uuid);
	sqlite3_bind_int64(st, 4, vdi->device);
	rc = run(cat, st, "insert vbd");
	if (rc == VMS_EEXISTS)
		vms_error_set(rc, "device position %u of the VM is taken", vdi->device);
	return rc;
}

int vms_cat_vdi_insert(vms_catalog *cat, const vms_cat_vdi *vdi)
{
	int rc;
	if ((rc = savepoint(cat)) < 0)
		return rc;
	return savepoint_end(cat, vdi_insert(cat, vdi));
}

static int vdi_get1(vms_cat_vdi *out, vms_catalog *cat, sqlite3_stmt *st, const char *key)
{
	int rc, src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		vdi_row(out, st);
		rc = 0;
	} else if (src == SQLITE_DONE) {
		rc = vms_error_set(VMS_ENOTFOUND, "no disk '%s'", key);
	} else {
		rc = db_error(cat, src, "get vdi");
	}
	sqlite3_finalize(st);
	return rc;
}

int vms_cat_vdi_get(vms_cat_vdi *out, vms_catalog *cat, const char *uuid)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " VDI_COLS VDI_FROM "WHERE d.uuid = ?1")) < 0)
		return rc;
	bind_text(st, 1, uuid);
	return vdi_get1(out, cat, st, uuid);
}

int vms_cat_vdi_get_by_name(vms_cat_vdi *out, vms_catalog *cat, const char *vm_uuid, const char *name)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " VDI_COLS VDI_FROM
	                         "WHERE b.vm_uuid = ?1 AND d.name = ?2 AND d.is_deleted = 0")) < 0)
		return rc;
	bind_text(st, 1, vm_uuid);
	bind_text(st, 2, name);
	return vdi_get1(out, cat, st, name);
}

int vms_cat_vdi_list(vms_cat_vdi **out, size_t *n, vms_catalog *cat, const char *vm_uuid,
                     const char *sr_uuid, int include_deleted)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " VDI_COLS VDI_FROM
	                         "WHERE (?1 IS NULL OR b.vm_uuid = ?1) AND (?2 IS NULL OR d.sr_uuid = ?2)"
	                         " AND (?3 OR d.is_deleted = 0) ORDER BY b.vm_uuid, b.device, d.name")) < 0)
		return rc;
	bind_text(st, 1, vm_uuid);
	bind_text(st, 2, sr_uuid);
	sqlite3_bind_int(st, 3, include_deleted);
	rc = collect_vdi(out, n, cat, st);
	if (rc < 0) {
		vms_cat_vdi_list_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

int vms_cat_vdi_set_ref(vms_catalog *cat, const char *uuid, const char *ref, int state)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "UPDATE vdi SET ref = ?1, state = ?2 WHERE uuid = ?3")) < 0)
		return rc;
	bind_text(st, 1, ref);
	sqlite3_bind_int(st, 2, state);
	bind_text(st, 3, uuid);
	return run_one(cat, st, "vdi ref", uuid);
}

int vms_cat_vdi_set_state(vms_catalog *cat, const char *uuid, int state)
{
	return set_int_col(cat, "UPDATE vdi SET state = ?1 WHERE uuid = ?2", state, uuid, "vdi state");
}

int vms_cat_vdi_set_size(vms_catalog *cat, const char *uuid, uint64_t size)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "UPDATE vdi SET size = ?1 WHERE uuid = ?2")) < 0)
		return rc;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
	bind_text(st, 2, uuid);
	return run_one(cat, st, "vdi size", uuid);
}

static int vdi_set_deleted_steps(vms_catalog *cat, const char *uuid)
{
	int rc;
	sqlite3_stmt *st;
	if ((rc = prep(&st, cat, "DELETE FROM vbd WHERE vdi_uuid = ?1")) < 0)
		return rc;
	bind_text(st, 1, uuid);
	if ((rc = run(cat, st, "detach vdi")) < 0)
		return rc;
	return set_int_col(cat, "UPDATE vdi SET is_deleted = ?1 WHERE uuid = ?2", 1, uuid, "vdi deleted");
}

int vms_cat_vdi_set_deleted(vms_catalog *cat, const char *uuid)
{
	int rc;
	if ((rc = savepoint(cat)) < 0)
		return rc;
	return savepoint_end(cat, vdi_set_deleted_steps(cat, uuid));
}

static int vdi_delete_steps(vms_catalog *cat, const char *uuid)
{
	int rc;
	sqlite3_stmt *st;
	if ((rc = prep(&st, cat, "DELETE FROM vbd WHERE vdi_uuid = ?1")) < 0)
		return rc;
	bind_text(st, 1, uuid);
	if ((rc = run(cat, st, "delete vbd")) < 0)
		return rc;
	return delete_by_uuid(cat, "DELETE FROM vdi WHERE uuid = ?1", uuid, "delete vdi");
}

int vms_cat_vdi_delete(vms_catalog *cat, const char *uuid)
{
	int rc;
	if ((rc = savepoint(cat)) < 0)
		return rc;
	return savepoint_end(cat, vdi_delete_steps(cat, uuid));
}

int64_t vms_cat_vdi_snapshot_refs(vms_catalog *cat, const char *uuid)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT count(*) FROM snapshot_disk WHERE vdi_uuid = ?1")) < 0)
		return rc;
	bind_text(st, 1, uuid);
	int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0)
	                                           : db_error(cat, sqlite3_errcode(cat->db), "count");
	sqlite3_finalize(st);
	return v;
}

/* ---- snapshots --------------------------------------------------------- */

#define SNAP_COLS "uuid, vm_uuid, name, time, seq, is_deleted, state, created, rowid, hold"

static void snap_row(vms_cat_snapshot *o, sqlite3_stmt *st)
{
	memset(o, 0, sizeof(*o));
	col_copy(o->uuid, sizeof(o->uuid), st, 0);
	col_copy(o->vm_uuid, sizeof(o->vm_uuid), st, 1);
	col_copy(o->name, sizeof(o->name), st, 2);
	o->time = sqlite3_column_int64(st, 3);
	o->seq = (uint64_t)sqlite3_column_int64(st, 4);
	o->is_deleted = sqlite3_column_int(st, 5);
	o->state = sqlite3_column_int(st, 6);
	o->created = sqlite3_column_int64(st, 7);
	o->rowid = sqlite3_column_int64(st, 8);
	col_copy(o->hold, sizeof(o->hold), st, 9);
}

DEFINE_LIST(collect_snap, vms_cat_snapshot, snap_row)

static void snapdisk_row(vms_cat_snapdisk *o, sqlite3_stmt *st)
{
	memset(o, 0, sizeof(*o));
	col_copy(o->snapshot_uuid, sizeof(o->snapshot_uuid), st, 0);
	col_copy(o->vdi_uuid, sizeof(o->vdi_uuid), st, 1);
	col_copy(o->disk_name, sizeof(o->disk_name), st, 2);
	o->device = (uint32_t)sqlite3_column_int64(st, 3);
	o->size = (uint64_t)sqlite3_column_int64(st, 4);
	o->ref = col_dup(st, 5);
}

DEFINE_LIST(collect_snapdisk, vms_cat_snapdisk, snapdisk_row)

void vms_cat_snapdisk_list_free(vms_cat_snapdisk *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].ref);
	free(v);
}

static int snapshot_insert(vms_catalog *cat, const vms_cat_snapshot *s, const vms_cat_snapdisk *disks,
                            size_t n)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "INSERT INTO snapshot(uuid, vm_uuid, name, time, seq, is_deleted, "
	                         "state, created, hold) VALUES(?,?,?,?,?,?,?,?,?)")) < 0)
		return rc;
	bind_text(st, 1, s->uuid);
	bind_text(st, 2, s->vm_uuid);
	bind_text(st, 3, s->name);
	sqlite3_bind_int64(st, 4, s->time);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)s->seq);
	sqlite3_bind_int(st, 6, s->is_deleted);
	sqlite3_bind_int(st, 7, s->state);
	sqlite3_bind_int64(st, 8, s->created);
	bind_text(st, 9, s->hold);
	rc = run(cat, st, "insert snapshot");
	if (rc == VMS_EEXISTS) {
		/* the full name, formatted here: the catalog does not link naming */
		char tag[32] = "?";
		struct tm tm;
		time_t t = (time_t)s->time;
		if (gmtime_r(&t, &tm))
			strftime(tag, sizeof(tag), "%Y%m%dT%H:%M:%S", &tm);
		return vms_error_set(rc, "the VM already has a snapshot named %s_%s (one snapshot per "
		                     "name and second)", s->name, tag);
	}
	if (rc < 0)
		return rc;
	if ((rc = prep(&st, cat, "INSERT INTO snapshot_disk(snapshot_uuid, vdi_uuid, disk_name, device, "
	                         "size, ref) VALUES(?,?,?,?,?,?)")) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		sqlite3_reset(st);
		bind_text(st, 1, s->uuid);
		bind_text(st, 2, disks[i].vdi_uuid);
		bind_text(st, 3, disks[i].disk_name);
		sqlite3_bind_int64(st, 4, disks[i].device);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)disks[i].size);
		bind_text(st, 6, disks[i].ref);
		if (sqlite3_step(st) != SQLITE_DONE) {
			rc = db_error(cat, sqlite3_extended_errcode(cat->db), "insert snapshot disk");
			break;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

int vms_cat_snapshot_insert(vms_catalog *cat, const vms_cat_snapshot *s, const vms_cat_snapdisk *disks,
                            size_t n)
{
	int rc;
	if ((rc = savepoint(cat)) < 0)
		return rc;
	return savepoint_end(cat, snapshot_insert(cat, s, disks, n));
}

static int snap_get1(vms_cat_snapshot *out, vms_catalog *cat, sqlite3_stmt *st, const char *key)
{
	int rc, src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		snap_row(out, st);
		rc = 0;
	} else if (src == SQLITE_DONE) {
		rc = vms_error_set(VMS_ENOTFOUND, "no snapshot %s", key);
	} else {
		rc = db_error(cat, src, "get snapshot");
	}
	sqlite3_finalize(st);
	return rc;
}

int vms_cat_snapshot_get(vms_cat_snapshot *out, vms_catalog *cat, const char *uuid)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " SNAP_COLS " FROM snapshot WHERE uuid = ?1")) < 0)
		return rc;
	bind_text(st, 1, uuid);
	return snap_get1(out, cat, st, uuid);
}

int vms_cat_snapshot_get_rowid(vms_cat_snapshot *out, vms_catalog *cat, int64_t rowid)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " SNAP_COLS " FROM snapshot WHERE rowid = ?1")) < 0)
		return rc;
	sqlite3_bind_int64(st, 1, rowid);
	return snap_get1(out, cat, st, "(by row)");
}

int vms_cat_snapshot_list(vms_cat_snapshot **out, size_t *n, vms_catalog *cat, const char *vm_uuid,
                          int include_deleted)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT " SNAP_COLS " FROM snapshot WHERE vm_uuid = ?1 "
	                         "AND (?2 OR is_deleted = 0)")) < 0)
		return rc;
	bind_text(st, 1, vm_uuid);
	sqlite3_bind_int(st, 2, include_deleted);
	rc = collect_snap(out, n, cat, st);
	if (rc < 0) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

int vms_cat_snapshot_count(int64_t *out, vms_catalog *cat, const char *vm_uuid, int include_deleted)
{
	return count_query(out, cat, "SELECT count(*) FROM snapshot WHERE vm_uuid = ?1 "
	                   "AND (?2 OR is_deleted = 0)", vm_uuid, include_deleted);
}

int vms_cat_snapshot_disks(vms_cat_snapdisk **out, size_t *n, vms_catalog *cat, const char *snapshot_uuid)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT snapshot_uuid, vdi_uuid, disk_name, device, size, ref FROM "
	                         "snapshot_disk WHERE snapshot_uuid = ?1 ORDER BY device, disk_name")) < 0)
		return rc;
	bind_text(st, 1, snapshot_uuid);
	rc = collect_snapdisk(out, n, cat, st);
	if (rc < 0) {
		vms_cat_snapdisk_list_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

int vms_cat_snapshot_set_disk_ref(vms_catalog *cat, const char *snapshot_uuid, const char *vdi_uuid,
                                  const char *ref)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "UPDATE snapshot_disk SET ref = ?1 WHERE snapshot_uuid = ?2 AND "
	                         "vdi_uuid = ?3")) < 0)
		return rc;
	bind_text(st, 1, ref);
	bind_text(st, 2, snapshot_uuid);
	bind_text(st, 3, vdi_uuid);
	return run_one(cat, st, "snapshot disk ref", snapshot_uuid);
}

int vms_cat_snapshot_set_state(vms_catalog *cat, const char *uuid, int state)
{
	return set_int_col(cat, "UPDATE snapshot SET state = ?1 WHERE uuid = ?2", state, uuid,
	                   "snapshot state");
}

int vms_cat_snapshot_set_deleted(vms_catalog *cat, const char *uuid)
{
	return set_int_col(cat, "UPDATE snapshot SET is_deleted = ?1 WHERE uuid = ?2", 1, uuid,
	                   "snapshot deleted");
}

int vms_cat_snapshot_delete(vms_catalog *cat, const char *uuid)
{
	/* snapshot_disk rows go with it (ON DELETE CASCADE) */
	return delete_by_uuid(cat, "DELETE FROM snapshot WHERE uuid = ?1", uuid, "delete snapshot");
}

/* ---- reconciliation support -------------------------------------------- */

void vms_cat_strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

int vms_cat_unsettled(char ***out_uuids, int **out_states, size_t *n, vms_catalog *cat, const char *kind)
{
	const char *sql;
	if (strcmp(kind, "sr") == 0)
		sql = "SELECT uuid, state FROM sr WHERE state != 1";
	else if (strcmp(kind, "vm") == 0)
		sql = "SELECT uuid, state FROM vm WHERE state != 1";
	else if (strcmp(kind, "vdi") == 0)
		sql = "SELECT uuid, state FROM vdi WHERE state != 1";
	else if (strcmp(kind, "snapshot") == 0)
		sql = "SELECT uuid, state FROM snapshot WHERE state != 1 ORDER BY rowid";
	else
		return vms_error_set(VMS_EINVAL, "unknown object kind '%s'", kind);
	sqlite3_stmt *st;
	int rc, src;
	if ((rc = prep(&st, cat, sql)) < 0)
		return rc;
	size_t len = 0, cap = 0;
	char **u = NULL;
	int *s = NULL;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			char **nu = realloc(u, cap * sizeof(*u));
			if (nu)
				u = nu;
			int *ns = realloc(s, cap * sizeof(*s));
			if (ns)
				s = ns;
			if (!nu || !ns) {
				rc = vms_error_set(VMS_ENOMEM, "out of memory");
				break;
			}
		}
		u[len] = col_dup(st, 0);
		s[len] = sqlite3_column_int(st, 1);
		if (!u[len]) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			break;
		}
		len++;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = db_error(cat, src, "unsettled");
	sqlite3_finalize(st);
	if (rc < 0) {
		vms_cat_strv_free(u, len);
		free(s);
		return rc;
	}
	*out_uuids = u;
	*out_states = s;
	*n = len;
	return 0;
}

int vms_cat_orphan_note(vms_catalog *cat, const char *sr_uuid, const char *kind, const char *uuid,
                        const char *detail)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "INSERT INTO orphan(sr_uuid, kind, uuid, detail, time) "
	                         "VALUES(?, ?, ?, ?, strftime('%s','now'))")) < 0)
		return rc;
	bind_text(st, 1, sr_uuid);
	bind_text(st, 2, kind);
	bind_text(st, 3, uuid);
	bind_text(st, 4, detail);
	return run(cat, st, "orphan note");
}

int vms_cat_orphan_notes(vms_cat_orphan **out, size_t *n, vms_catalog *cat)
{
	sqlite3_stmt *st;
	int rc, src;
	size_t len = 0, cap = 0;
	vms_cat_orphan *v = NULL;
	*out = NULL;
	*n = 0;
	if ((rc = prep(&st, cat, "SELECT id, coalesce(sr_uuid, ''), kind, uuid FROM orphan ORDER BY id")) < 0)
		return rc;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			vms_cat_orphan *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				rc = vms_error_set(VMS_ENOMEM, "out of memory");
				break;
			}
			v = nv;
		}
		v[len].id = sqlite3_column_int64(st, 0);
		col_copy(v[len].sr_uuid, sizeof(v[len].sr_uuid), st, 1);
		col_copy(v[len].kind, sizeof(v[len].kind), st, 2);
		col_copy(v[len].uuid, sizeof(v[len].uuid), st, 3);
		len++;
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = db_error(cat, src, "orphan notes");
	sqlite3_finalize(st);
	if (rc < 0) {
		free(v);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

int vms_cat_orphan_forget(vms_catalog *cat, int64_t id)
{
	sqlite3_stmt *st;
	int rc;
	char key[24];
	if ((rc = prep(&st, cat, "DELETE FROM orphan WHERE id = ?")) < 0)
		return rc;
	sqlite3_bind_int64(st, 1, id);
	snprintf(key, sizeof(key), "%lld", (long long)id);
	return run_one(cat, st, "orphan note", key);
}

int vms_cat_orphan_list(char ***out, size_t *n, vms_catalog *cat)
{
	sqlite3_stmt *st;
	int rc, src;
	if ((rc = prep(&st, cat, "SELECT kind || ' ' || uuid || ' in SR ' || coalesce(sr_uuid, '?') || "
	                         "': ' || coalesce(detail, '') FROM orphan ORDER BY id")) < 0)
		return rc;
	size_t len = 0, cap = 0;
	char **v = NULL;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 8;
			char **nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				rc = vms_error_set(VMS_ENOMEM, "out of memory");
				break;
			}
			v = nv;
		}
		if (!(v[len] = col_dup(st, 0))) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			break;
		}
		len++;
	}
	sqlite3_finalize(st);
	if (rc < 0) {
		vms_cat_strv_free(v, len);
		return rc;
	}
	*out = v;
	*n = len;
	return 0;
}

/* ---- holds and policies (schema 2) ------------------------------------- */

static int check_tag(const char *tag, const char *what)
{
	size_t n = 0;
	if (!tag || !*tag)
		return vms_error_set(VMS_EINVAL, "%s is empty", what);
	for (const char *p = tag; *p; p++, n++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
			return vms_error_set(VMS_EINVAL, "%s '%.80s' is invalid: only letters, digits and "
			                     "underscore are allowed", what, tag);
		if (n >= VMS_HOLD_MAX)
			return vms_error_set(VMS_EINVAL, "%s is longer than %d characters", what, VMS_HOLD_MAX);
	}
	return 0;
}

static int set_text_col(vms_catalog *cat, const char *sql, const char *v, const char *uuid,
                        const char *what)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, sql)) < 0)
		return rc;
	bind_text(st, 1, v);
	bind_text(st, 2, uuid);
	return run_one(cat, st, what, uuid);
}

int vms_cat_snapshot_set_hold(vms_catalog *cat, const char *uuid, const char *tag)
{
	int rc;
	if ((rc = check_tag(tag, "hold tag")) < 0)
		return rc;
	return set_text_col(cat, "UPDATE snapshot SET hold = ?1 WHERE uuid = ?2", tag, uuid,
	                    "snapshot hold");
}

int vms_cat_snapshot_clear_hold(vms_catalog *cat, const char *uuid)
{
	return set_text_col(cat, "UPDATE snapshot SET hold = ?1 WHERE uuid = ?2", NULL, uuid,
	                    "snapshot hold");
}

static void policy_row(vms_cat_policy *o, sqlite3_stmt *st)
{
	memset(o, 0, sizeof(*o));
	col_copy(o->target_uuid, sizeof(o->target_uuid), st, 0);
	col_copy(o->target_kind, sizeof(o->target_kind), st, 1);
	o->spec = col_dup(st, 2);
	o->updated = sqlite3_column_int64(st, 3);
}

DEFINE_LIST(collect_policy, vms_cat_policy, policy_row)

void vms_cat_policy_clear(vms_cat_policy *p)
{
	if (p) {
		free(p->spec);
		p->spec = NULL;
	}
}

void vms_cat_policy_list_free(vms_cat_policy *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		vms_cat_policy_clear(&v[i]);
	free(v);
}

int vms_cat_policy_set(vms_catalog *cat, const char *target_uuid, const char *target_kind,
                       const char *spec, int64_t updated)
{
	sqlite3_stmt *st;
	int rc;
	if (!target_uuid || !vms_uuid_valid(target_uuid))
		return vms_error_set(VMS_EINVAL, "policy target '%.64s' is not a UUID",
		                     target_uuid ? target_uuid : "");
	if (!target_kind || (strcmp(target_kind, "sr") != 0 && strcmp(target_kind, "vm") != 0))
		return vms_error_set(VMS_EINVAL, "policy target kind must be 'sr' or 'vm'");
	if (!spec)
		return vms_error_set(VMS_EINVAL, "policy spec is missing");
	if ((rc = prep(&st, cat, "INSERT INTO policy(target_uuid, target_kind, spec, updated) "
	                         "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(target_uuid) DO UPDATE SET "
	                         "target_kind = ?2, spec = ?3, updated = ?4")) < 0)
		return rc;
	bind_text(st, 1, target_uuid);
	bind_text(st, 2, target_kind);
	sqlite3_bind_text(st, 3, spec, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 4, updated);
	return run(cat, st, "set policy");
}

int vms_cat_policy_get(vms_cat_policy *out, vms_catalog *cat, const char *target_uuid)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT target_uuid, target_kind, spec, updated FROM policy "
	                         "WHERE target_uuid = ?1")) < 0)
		return rc;
	bind_text(st, 1, target_uuid);
	int src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		policy_row(out, st);
		rc = out->spec ? 0 : vms_error_set(VMS_ENOMEM, "out of memory");
	} else if (src == SQLITE_DONE) {
		rc = vms_error_set(VMS_ENOTFOUND, "no policy for %s", target_uuid ? target_uuid : "");
	} else {
		rc = db_error(cat, src, "get policy");
	}
	sqlite3_finalize(st);
	return rc;
}

int vms_cat_policy_list(vms_cat_policy **out, size_t *n, vms_catalog *cat)
{
	sqlite3_stmt *st;
	int rc;
	if ((rc = prep(&st, cat, "SELECT target_uuid, target_kind, spec, updated FROM policy "
	                         "ORDER BY target_kind, target_uuid")) < 0)
		return rc;
	rc = collect_policy(out, n, cat, st);
	if (rc < 0) {
		vms_cat_policy_list_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

int vms_cat_policy_delete(vms_catalog *cat, const char *target_uuid)
{
	return delete_by_uuid(cat, "DELETE FROM policy WHERE target_uuid = ?1", target_uuid,
	                      "delete policy");
}
