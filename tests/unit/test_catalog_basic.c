/*
 * The SQLite catalog: every function of vmsnap/catalog.h, the constraints
 * the schema enforces, schema migrations (1 -> 2 on an old catalog with
 * data), and the refusal of a newer schema, of a foreign SQLite file and of
 * a file that is not a database.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "vmsnap/catalog.h"
#include "vmsnap/error.h"

static char dir[64];
static char path[128];

static vms_catalog *fresh(void)
{
	vms_catalog *cat = NULL;
	snprintf(dir, sizeof(dir), "/tmp/vms_cat_XXXXXX");
	if (!mkdtemp(dir))
		return NULL;
	snprintf(path, sizeof(path), "%s/catalog.db", dir);
	if (vms_catalog_open(&cat, path) < 0) {
		fprintf(stderr, "open: %s\n", vms_error_last());
		return NULL;
	}
	return cat;
}

static void cleanup(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void mk_sr(vms_cat_sr *sr, const char *name, const char *loc)
{
	memset(sr, 0, sizeof(*sr));
	vms_uuid_generate(sr->uuid);
	snprintf(sr->name, sizeof(sr->name), "%s", name);
	snprintf(sr->type, sizeof(sr->type), "native");
	sr->location = (char *)loc;
	sr->size = 1 << 20;
	sr->state = VMS_STATE_READY;
	sr->created = 100;
}

static void mk_vm(vms_cat_vm *vm, const char *name, const char *sr, const char *parent)
{
	memset(vm, 0, sizeof(*vm));
	vms_uuid_generate(vm->uuid);
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	snprintf(vm->sr_uuid, sizeof(vm->sr_uuid), "%s", sr);
	if (parent)
		snprintf(vm->parent_snapshot, sizeof(vm->parent_snapshot), "%s", parent);
	vm->state = VMS_STATE_READY;
	vm->created = 200;
}

static void mk_vdi(vms_cat_vdi *d, const char *name, const char *sr, const char *vm, uint32_t dev)
{
	memset(d, 0, sizeof(*d));
	vms_uuid_generate(d->uuid);
	vms_uuid_generate(d->vbd_uuid);
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->sr_uuid, sizeof(d->sr_uuid), "%s", sr);
	if (vm)
		snprintf(d->vm_uuid, sizeof(d->vm_uuid), "%s", vm);
	d->device = dev;
	d->size = 4096 * (dev + 1);
	d->ref = NULL;
	d->state = VMS_STATE_CREATING;
	d->created = 300;
}

/* The usual fixture: SR sr1 holding VM vm1. */
static int world(vms_cat_sr *sr, vms_cat_vm *vm, vms_catalog *cat)
{
	mk_sr(sr, "sr1", "/srv/a");
	mk_vm(vm, "vm1", sr->uuid, NULL);
	if (vms_cat_sr_insert(cat, sr) < 0 || vms_cat_vm_insert(cat, vm) < 0) {
		fprintf(stderr, "  fixture: %s\n", vms_error_last());
		return -1;
	}
	return 0;
}

TEST(sr_rows)
{
	vms_catalog *cat = fresh();
	REQUIRE(cat);
	CHECK(vms_catalog_schema_version(cat) == VMS_CATALOG_SCHEMA_VERSION);
	vms_cat_sr a, b, got;
	mk_sr(&a, "sr1", "/srv/a");
	mk_sr(&b, "sr2", "/srv/b");
	b.options = (char *)"checksums=off";
	CHECK_OK(vms_cat_sr_insert(cat, &a));
	CHECK_OK(vms_cat_sr_insert(cat, &b));
	vms_cat_sr dup;
	mk_sr(&dup, "sr1", "/srv/c");
	CHECK(vms_cat_sr_insert(cat, &dup) == VMS_EEXISTS);
	mk_sr(&dup, "sr3", "/srv/a");
	CHECK(vms_cat_sr_insert(cat, &dup) == VMS_EEXISTS);
	CHECK_OK(vms_cat_sr_get(&got, cat, "sr2"));
	CHECK(strcmp(got.uuid, b.uuid) == 0 && strcmp(got.location, "/srv/b") == 0);
	CHECK(got.options && strcmp(got.options, "checksums=off") == 0);
	CHECK(got.size == 1 << 20 && got.created == 100 && got.state == VMS_STATE_READY);
	vms_cat_sr_clear(&got);
	CHECK_OK(vms_cat_sr_get(&got, cat, a.uuid));
	CHECK(strcmp(got.name, "sr1") == 0 && got.options == NULL);
	vms_cat_sr_clear(&got);
	CHECK(vms_cat_sr_get(&got, cat, "nope") == VMS_ENOTFOUND);
	vms_cat_sr *v = NULL;
	size_t n = 0;
	CHECK_OK(vms_cat_sr_list(&v, &n, cat));
	CHECK(n == 2 && strcmp(v[0].name, "sr1") == 0 && strcmp(v[1].name, "sr2") == 0);
	vms_cat_sr_list_free(v, n);
	CHECK_OK(vms_cat_sr_set_state(cat, a.uuid, VMS_STATE_DELETING));
	CHECK(vms_cat_sr_set_state(cat, "00000000-0000-4000-8000-000000000000", 1) == VMS_ENOTFOUND);
	CHECK(vms_cat_sr_set_state(cat, a.uuid, 7) == VMS_EINVAL);   /* CHECK constraint */
	CHECK_OK(vms_cat_sr_get(&got, cat, a.uuid));
	CHECK(got.state == VMS_STATE_DELETING);
	vms_cat_sr_clear(&got);
	CHECK(strcmp(vms_obj_state_name(VMS_STATE_DELETING), "deleting") == 0);
	CHECK(strcmp(vms_obj_state_name(42), "unknown") == 0);
	/* an SR with a VM cannot go (foreign key) */
	vms_cat_vm vm;
	mk_vm(&vm, "vm1", b.uuid, NULL);
	CHECK_OK(vms_cat_vm_insert(cat, &vm));
	CHECK(vms_cat_sr_delete(cat, b.uuid) < 0);
	CHECK_OK(vms_cat_sr_delete(cat, a.uuid));
	CHECK(vms_cat_sr_delete(cat, a.uuid) == VMS_ENOTFOUND);
	vms_catalog_close(cat);
	cleanup();
}

TEST(vm_vdi_rows)
{
	vms_catalog *cat = fresh();
	REQUIRE(cat);
	vms_cat_sr sr;
	vms_cat_vm vm, vm2, got, bad;
	REQUIRE(world(&sr, &vm, cat) == 0);
	mk_vm(&vm2, "vm2", sr.uuid, NULL);
	CHECK_OK(vms_cat_vm_insert(cat, &vm2));
	mk_vm(&bad, "vm1", sr.uuid, NULL);
	CHECK(vms_cat_vm_insert(cat, &bad) == VMS_EEXISTS);
	mk_vm(&bad, "vm3", "00000000-0000-4000-8000-000000000000", NULL);
	CHECK(vms_cat_vm_insert(cat, &bad) == VMS_EINVAL);   /* no such SR: foreign key */
	mk_vm(&bad, "vm3", sr.uuid, "00000000-0000-4000-8000-000000000000");
	CHECK(vms_cat_vm_insert(cat, &bad) == VMS_EINVAL);   /* no such parent snapshot */
	CHECK_OK(vms_cat_vm_get(&got, cat, "vm1", 0));
	CHECK(strcmp(got.uuid, vm.uuid) == 0 && got.next_seq == 1 && got.parent_snapshot[0] == 0);
	uint64_t seq = 0;
	CHECK_OK(vms_cat_vm_next_seq(&seq, cat, vm.uuid));
	CHECK(seq == 1);
	CHECK_OK(vms_cat_vm_next_seq(&seq, cat, vm.uuid));
	CHECK(seq == 2);
	CHECK(vms_cat_vm_next_seq(&seq, cat, "00000000-0000-4000-8000-000000000000") == VMS_ENOTFOUND);
	CHECK_OK(vms_cat_vm_set_state(cat, vm.uuid, VMS_STATE_CREATING));
	CHECK_OK(vms_cat_vm_get(&got, cat, vm.uuid, 0));
	CHECK(got.state == VMS_STATE_CREATING && got.next_seq == 3);

	/* disks */
	vms_cat_vdi d0, d1, d2, dg;
	mk_vdi(&d0, "a", sr.uuid, vm.uuid, 0);
	mk_vdi(&d1, "b", sr.uuid, vm.uuid, 1);
	mk_vdi(&d2, "c", sr.uuid, vm.uuid, 1);
	CHECK_OK(vms_cat_vdi_insert(cat, &d0));
	CHECK_OK(vms_cat_vdi_insert(cat, &d1));
	CHECK(vms_cat_vdi_insert(cat, &d2) == VMS_EEXISTS);   /* device 1 taken */
	CHECK_OK(vms_cat_vdi_get(&dg, cat, d0.uuid));
	CHECK(strcmp(dg.vm_uuid, vm.uuid) == 0 && dg.ref == NULL && dg.state == VMS_STATE_CREATING);
	vms_cat_vdi_clear(&dg);
	CHECK_OK(vms_cat_vdi_set_ref(cat, d0.uuid, "17", VMS_STATE_READY));
	CHECK_OK(vms_cat_vdi_set_size(cat, d0.uuid, 8192));
	CHECK_OK(vms_cat_vdi_get_by_name(&dg, cat, vm.uuid, "a"));
	CHECK(dg.ref && strcmp(dg.ref, "17") == 0 && dg.size == 8192 && dg.state == VMS_STATE_READY);
	vms_cat_vdi_clear(&dg);
	CHECK(vms_cat_vdi_get_by_name(&dg, cat, vm2.uuid, "a") == VMS_ENOTFOUND);
	CHECK_OK(vms_cat_vdi_set_state(cat, d1.uuid, VMS_STATE_DELETING));
	vms_cat_vdi *v = NULL;
	size_t n = 0;
	CHECK_OK(vms_cat_vdi_list(&v, &n, cat, vm.uuid, NULL, 0));
	CHECK(n == 2 && strcmp(v[0].name, "a") == 0 && v[1].device == 1);
	vms_cat_vdi_list_free(v, n);
	CHECK_OK(vms_cat_vdi_list(&v, &n, cat, NULL, sr.uuid, 0));
	CHECK(n == 2);
	vms_cat_vdi_list_free(v, n);
	/* a detached (deleted) disk is hidden but kept */
	CHECK_OK(vms_cat_vdi_set_deleted(cat, d1.uuid));
	CHECK_OK(vms_cat_vdi_list(&v, &n, cat, vm.uuid, NULL, 0));
	CHECK(n == 1);
	vms_cat_vdi_list_free(v, n);
	CHECK_OK(vms_cat_vdi_list(&v, &n, cat, NULL, NULL, 1));
	CHECK(n == 2);
	vms_cat_vdi_list_free(v, n);
	CHECK_OK(vms_cat_vdi_get(&dg, cat, d1.uuid));
	CHECK(dg.is_deleted && dg.vm_uuid[0] == 0);
	vms_cat_vdi_clear(&dg);
	CHECK(vms_cat_vdi_snapshot_refs(cat, d0.uuid) == 0);

	/* deleted VMs: hidden from names, visible by uuid with include_deleted */
	CHECK_OK(vms_cat_vm_set_deleted(cat, vm2.uuid));
	CHECK(vms_cat_vm_get(&got, cat, "vm2", 1) == VMS_ENOTFOUND);
	CHECK(vms_cat_vm_get(&got, cat, vm2.uuid, 0) == VMS_ENOTFOUND);
	CHECK_OK(vms_cat_vm_get(&got, cat, vm2.uuid, 1));
	CHECK(got.is_deleted);
	mk_vm(&bad, "vm2", sr.uuid, NULL);   /* the name is free again */
	CHECK_OK(vms_cat_vm_insert(cat, &bad));
	vms_cat_vm *vl = NULL;
	CHECK_OK(vms_cat_vm_list(&vl, &n, cat, sr.uuid, 0));
	CHECK(n == 2);
	free(vl);
	CHECK_OK(vms_cat_vm_list(&vl, &n, cat, NULL, 1));
	CHECK(n == 3);
	free(vl);
	CHECK(vms_cat_vm_delete(cat, vm.uuid) < 0);   /* still has a VBD */
	CHECK_OK(vms_cat_vdi_delete(cat, d0.uuid));
	CHECK_OK(vms_cat_vdi_delete(cat, d1.uuid));
	CHECK(vms_cat_vdi_delete(cat, d1.uuid) == VMS_ENOTFOUND);
	CHECK_OK(vms_cat_vm_delete(cat, vm.uuid));
	CHECK(vms_cat_vm_delete(cat, vm.uuid) == VMS_ENOTFOUND);
	vms_catalog_close(cat);
	cleanup();
}

TEST(snapshot_rows_children_holds)
{
	vms_catalog *cat = fresh();
	REQUIRE(cat);
	vms_cat_sr sr;
	vms_cat_vm vm;
	REQUIRE(world(&sr, &vm, cat) == 0);
	vms_cat_vdi d;
	mk_vdi(&d, "a", sr.uuid, vm.uuid, 0);
	CHECK_OK(vms_cat_vdi_insert(cat, &d));

	vms_cat_snapshot s = {0}, t = {0}, got;
	vms_uuid_generate(s.uuid);
	snprintf(s.vm_uuid, sizeof(s.vm_uuid), "%s", vm.uuid);
	snprintf(s.name, sizeof(s.name), "nightly");
	s.time = 1000;
	s.seq = 1;
	s.created = 1000;
	vms_cat_snapdisk sd = {0};
	snprintf(sd.snapshot_uuid, sizeof(sd.snapshot_uuid), "%s", s.uuid);
	snprintf(sd.vdi_uuid, sizeof(sd.vdi_uuid), "%s", d.uuid);
	snprintf(sd.disk_name, sizeof(sd.disk_name), "a");
	sd.size = 4096;
	CHECK_OK(vms_cat_snapshot_insert(cat, &s, &sd, 1));
	t = s;
	vms_uuid_generate(t.uuid);
	t.seq = 2;
	CHECK(vms_cat_snapshot_insert(cat, &t, NULL, 0) == VMS_EEXISTS);   /* same full name */
	CHECK(strstr(vms_error_last(), "nightly_19700101T00:16:40") != NULL);
	t.time = 1001;
	t.seq = 1;
	CHECK(vms_cat_snapshot_insert(cat, &t, NULL, 0) == VMS_EEXISTS);   /* same seq */
	t.seq = 2;
	snprintf(t.hold, sizeof(t.hold), "pinned");
	CHECK_OK(vms_cat_snapshot_insert(cat, &t, NULL, 0));
	CHECK_OK(vms_cat_snapshot_get(&got, cat, t.uuid));
	CHECK(strcmp(got.hold, "pinned") == 0 && got.time == 1001 && got.state == VMS_STATE_CREATING);
	CHECK_OK(vms_cat_snapshot_get(&got, cat, s.uuid));
	int64_t rowid = got.rowid;
	CHECK(got.hold[0] == 0);
	CHECK_OK(vms_cat_snapshot_get_rowid(&got, cat, rowid));
	CHECK(strcmp(got.uuid, s.uuid) == 0);
	CHECK(vms_cat_snapshot_get_rowid(&got, cat, 99999) == VMS_ENOTFOUND);
	CHECK(vms_cat_vdi_snapshot_refs(cat, d.uuid) == 1);

	/* disks of a snapshot, refs */
	vms_cat_snapdisk *sv = NULL;
	size_t n = 0;
	CHECK_OK(vms_cat_snapshot_disks(&sv, &n, cat, s.uuid));
	CHECK(n == 1 && sv[0].ref == NULL && sv[0].size == 4096);
	vms_cat_snapdisk_list_free(sv, n);
	CHECK_OK(vms_cat_snapshot_set_disk_ref(cat, s.uuid, d.uuid, "42"));
	CHECK(vms_cat_snapshot_set_disk_ref(cat, t.uuid, d.uuid, "42") == VMS_ENOTFOUND);
	CHECK_OK(vms_cat_snapshot_disks(&sv, &n, cat, s.uuid));
	CHECK(n == 1 && sv[0].ref && strcmp(sv[0].ref, "42") == 0);
	vms_cat_snapdisk_list_free(sv, n);

	/* holds */
	CHECK_OK(vms_cat_snapshot_set_hold(cat, s.uuid, "keep_1"));
	CHECK(vms_cat_snapshot_set_hold(cat, s.uuid, "bad tag") == VMS_EINVAL);
	CHECK(vms_cat_snapshot_set_hold(cat, s.uuid, "") == VMS_EINVAL);
	CHECK_OK(vms_cat_snapshot_get(&got, cat, s.uuid));
	CHECK(strcmp(got.hold, "keep_1") == 0);
	CHECK_OK(vms_cat_snapshot_clear_hold(cat, s.uuid));
	CHECK_OK(vms_cat_snapshot_get(&got, cat, s.uuid));
	CHECK(got.hold[0] == 0);

	/* the intent of a rollback */
	CHECK_OK(vms_cat_vm_set_pending_rollback(cat, vm.uuid, s.uuid));
	vms_cat_vm gv;
	CHECK_OK(vms_cat_vm_get(&gv, cat, vm.uuid, 0));
	CHECK(strcmp(gv.pending_rollback, s.uuid) == 0);
	CHECK(vms_cat_vm_set_pending_rollback(cat, vm.uuid, "00000000-0000-4000-8000-000000000000") < 0);
	CHECK_OK(vms_cat_vm_set_pending_rollback(cat, vm.uuid, NULL));
	CHECK_OK(vms_cat_vm_get(&gv, cat, vm.uuid, 0));
	CHECK(gv.pending_rollback[0] == 0);

	/* lists and counts */
	CHECK_OK(vms_cat_snapshot_set_state(cat, s.uuid, VMS_STATE_READY));
	CHECK_OK(vms_cat_snapshot_set_deleted(cat, t.uuid));
	vms_cat_snapshot *list = NULL;
	int64_t cnt = -1;
	CHECK_OK(vms_cat_snapshot_list(&list, &n, cat, vm.uuid, 0));
	CHECK(n == 1 && strcmp(list[0].uuid, s.uuid) == 0);
	free(list);
	CHECK_OK(vms_cat_snapshot_list(&list, &n, cat, vm.uuid, 1));
	CHECK(n == 2);
	free(list);
	CHECK_OK(vms_cat_snapshot_count(&cnt, cat, vm.uuid, 0));
	CHECK(cnt == 1);
	CHECK_OK(vms_cat_snapshot_count(&cnt, cat, vm.uuid, 1));
	CHECK(cnt == 2);

	/* a clone: children and clone counts */
	vms_cat_vm c1, c2;
	mk_vm(&c1, "c1", sr.uuid, s.uuid);
	mk_vm(&c2, "c2", sr.uuid, s.uuid);
	CHECK_OK(vms_cat_vm_insert(cat, &c1));
	CHECK_OK(vms_cat_vm_insert(cat, &c2));
	CHECK_OK(vms_cat_vm_set_deleted(cat, c2.uuid));
	vms_cat_vm *kids = NULL;
	CHECK_OK(vms_cat_vm_children(&kids, &n, cat, s.uuid));
	CHECK(n == 2);
	free(kids);
	CHECK_OK(vms_cat_vm_clone_count(&cnt, cat, vm.uuid, 0));
	CHECK(cnt == 1);
	CHECK_OK(vms_cat_vm_clone_count(&cnt, cat, vm.uuid, 1));
	CHECK(cnt == 2);
	CHECK(vms_cat_snapshot_delete(cat, s.uuid) < 0);   /* clones refer to it */
	CHECK_OK(vms_cat_vm_delete(cat, c1.uuid));
	CHECK_OK(vms_cat_vm_delete(cat, c2.uuid));
	CHECK_OK(vms_cat_snapshot_delete(cat, s.uuid));    /* its disks go with it */
	CHECK(vms_cat_vdi_snapshot_refs(cat, d.uuid) == 0);
	CHECK(vms_cat_snapshot_delete(cat, s.uuid) == VMS_ENOTFOUND);
	vms_catalog_close(cat);
	cleanup();
}

TEST(unsettled_orphans_policies_tx)
{
	vms_catalog *cat = fresh();
	REQUIRE(cat);
	vms_cat_sr sr;
	mk_sr(&sr, "sr1", "/srv/a");
	sr.state = VMS_STATE_CREATING;
	CHECK_OK(vms_cat_sr_insert(cat, &sr));
	vms_cat_vm vm;
	mk_vm(&vm, "vm1", sr.uuid, NULL);
	vm.state = VMS_STATE_DELETING;
	CHECK_OK(vms_cat_vm_insert(cat, &vm));
	char **u = NULL;
	int *st = NULL;
	size_t n = 0;
	CHECK_OK(vms_cat_unsettled(&u, &st, &n, cat, "sr"));
	CHECK(n == 1 && strcmp(u[0], sr.uuid) == 0 && st[0] == VMS_STATE_CREATING);
	vms_cat_strv_free(u, n);
	free(st);
	CHECK_OK(vms_cat_unsettled(&u, &st, &n, cat, "vm"));
	CHECK(n == 1 && st[0] == VMS_STATE_DELETING);
	vms_cat_strv_free(u, n);
	free(st);
	CHECK_OK(vms_cat_unsettled(&u, &st, &n, cat, "snapshot"));
	CHECK(n == 0);
	vms_cat_strv_free(u, n);
	free(st);
	CHECK(vms_cat_unsettled(&u, &st, &n, cat, "table") == VMS_EINVAL);

	CHECK_OK(vms_cat_orphan_note(cat, sr.uuid, "vdi", vm.uuid, "left over"));
	CHECK_OK(vms_cat_orphan_list(&u, &n, cat));
	CHECK(n == 1 && strstr(u[0], "left over") && strstr(u[0], "vdi "));
	vms_cat_strv_free(u, n);

	/* policies */
	vms_cat_policy p;
	CHECK(vms_cat_policy_get(&p, cat, vm.uuid) == VMS_ENOTFOUND);
	CHECK_OK(vms_cat_policy_set(cat, vm.uuid, "vm", "keep-last=3", 10));
	CHECK_OK(vms_cat_policy_set(cat, sr.uuid, "sr", "keep-daily=7", 11));
	CHECK(vms_cat_policy_set(cat, sr.uuid, "disk", "x", 1) == VMS_EINVAL);
	CHECK(vms_cat_policy_set(cat, "not-a-uuid", "vm", "x", 1) == VMS_EINVAL);
	CHECK_OK(vms_cat_policy_set(cat, vm.uuid, "vm", "keep-last=5", 12));   /* replace */
	CHECK_OK(vms_cat_policy_get(&p, cat, vm.uuid));
	CHECK(strcmp(p.spec, "keep-last=5") == 0 && p.updated == 12 && strcmp(p.target_kind, "vm") == 0);
	vms_cat_policy_clear(&p);
	vms_cat_policy *pl = NULL;
	CHECK_OK(vms_cat_policy_list(&pl, &n, cat));
	CHECK(n == 2 && strcmp(pl[0].target_kind, "sr") == 0);
	vms_cat_policy_list_free(pl, n);
	CHECK_OK(vms_cat_policy_delete(cat, sr.uuid));
	CHECK(vms_cat_policy_delete(cat, sr.uuid) == VMS_ENOTFOUND);
	/* a VM's policy goes with the VM */
	CHECK_OK(vms_cat_vm_delete(cat, vm.uuid));
	CHECK(vms_cat_policy_get(&p, cat, vm.uuid) == VMS_ENOTFOUND);

	/* transactions */
	CHECK_OK(vms_catalog_begin(cat));
	CHECK(vms_catalog_begin(cat) == VMS_EINVAL);
	CHECK_OK(vms_cat_sr_set_state(cat, sr.uuid, VMS_STATE_READY));
	vms_catalog_rollback(cat);
	vms_cat_sr got;
	CHECK_OK(vms_cat_sr_get(&got, cat, sr.uuid));
	CHECK(got.state == VMS_STATE_CREATING);
	vms_cat_sr_clear(&got);
	CHECK_OK(vms_catalog_begin(cat));
	CHECK_OK(vms_cat_sr_set_state(cat, sr.uuid, VMS_STATE_READY));
	CHECK_OK(vms_catalog_commit(cat));
	CHECK_OK(vms_cat_sr_get(&got, cat, sr.uuid));
	CHECK(got.state == VMS_STATE_READY);
	vms_cat_sr_clear(&got);

	/* data_version changes with another connection's commit only */
	int64_t dv = vms_catalog_data_version(cat);
	CHECK_OK(vms_cat_sr_set_state(cat, sr.uuid, VMS_STATE_READY));
	CHECK(vms_catalog_data_version(cat) == dv);
	vms_catalog *other;
	REQUIRE(vms_catalog_open(&other, path) == 0);
	CHECK_OK(vms_cat_orphan_note(other, NULL, "sr", sr.uuid, "x"));
	vms_catalog_close(other);
	CHECK(vms_catalog_data_version(cat) != dv);

	char *rep = NULL;
	CHECK(vms_catalog_integrity(&rep, cat) == 0);
	CHECK(rep && strcmp(rep, "ok") == 0);
	free(rep);
	vms_catalog_close(cat);
	cleanup();
}

static int sql(const char *p, const char *stmt)
{
	sqlite3 *db;
	if (sqlite3_open(p, &db) != SQLITE_OK)
		return -1;
	int rc = sqlite3_exec(db, stmt, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		fprintf(stderr, "  sql: %s\n", sqlite3_errmsg(db));
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

TEST(migrations_from_1_keep_data)
{
	vms_catalog *cat = fresh();
	REQUIRE(cat);
	vms_cat_sr sr;
	vms_cat_vm vm;
	REQUIRE(world(&sr, &vm, cat) == 0);
	vms_cat_snapshot s = {0};
	vms_uuid_generate(s.uuid);
	snprintf(s.vm_uuid, sizeof(s.vm_uuid), "%s", vm.uuid);
	snprintf(s.name, sizeof(s.name), "old");
	s.time = 5;
	s.seq = 1;
	s.state = VMS_STATE_READY;
	CHECK_OK(vms_cat_snapshot_insert(cat, &s, NULL, 0));
	vms_catalog_close(cat);
	/* turn it into a schema-1 catalog, as the first release wrote it */
	REQUIRE(sql(path, "DROP TABLE policy; ALTER TABLE snapshot DROP COLUMN hold; "
	                  "ALTER TABLE vm DROP COLUMN pending_rollback; PRAGMA user_version = 1;") == 0);
	REQUIRE(vms_catalog_open(&cat, path) == 0);
	CHECK(vms_catalog_schema_version(cat) == VMS_CATALOG_SCHEMA_VERSION);
	vms_cat_vm gv;
	CHECK_OK(vms_cat_vm_get(&gv, cat, vm.uuid, 0));
	CHECK(gv.pending_rollback[0] == 0);
	vms_cat_snapshot got;
	CHECK_OK(vms_cat_snapshot_get(&got, cat, s.uuid));
	CHECK(strcmp(got.name, "old") == 0 && got.hold[0] == 0);
	CHECK_OK(vms_cat_snapshot_set_hold(cat, s.uuid, "h"));
	CHECK_OK(vms_cat_policy_set(cat, vm.uuid, "vm", "keep-last=1", 1));
	vms_catalog_close(cat);
	cleanup();
}

TEST(refuses_newer_foreign_and_non_databases)
{
	vms_catalog *cat = fresh();
	REQUIRE(cat);
	vms_catalog_close(cat);
	REQUIRE(sql(path, "PRAGMA user_version = 99;") == 0);
	CHECK(vms_catalog_open(&cat, path) == VMS_ENOTSUP);
	CHECK(strstr(vms_error_last(), "newer") != NULL);
	/* the refused file is untouched */
	char reset[64];
	snprintf(reset, sizeof(reset), "PRAGMA user_version = %d;", VMS_CATALOG_SCHEMA_VERSION);
	REQUIRE(sql(path, reset) == 0);
	CHECK_OK(vms_catalog_open(&cat, path));
	vms_catalog_close(cat);

	char foreign[160];
	snprintf(foreign, sizeof(foreign), "%s/other.db", dir);
	REQUIRE(sql(foreign, "CREATE TABLE t(x); INSERT INTO t VALUES(1);") == 0);
	CHECK(vms_catalog_open(&cat, foreign) == VMS_ECORRUPT);
	CHECK(strstr(vms_error_last(), "not a vmsnap catalog") != NULL);
	CHECK(sql(foreign, "SELECT x FROM t;") == 0);   /* left alone */

	char junk[160];
	snprintf(junk, sizeof(junk), "%s/junk.db", dir);
	FILE *f = fopen(junk, "w");
	REQUIRE(f);
	for (int i = 0; i < 400; i++)
		fputs("this is not an sqlite database at all. ", f);
	fclose(f);
	CHECK(vms_catalog_open(&cat, junk) == VMS_ECORRUPT);

	char nodir[160];
	snprintf(nodir, sizeof(nodir), "%s/missing/dir/catalog.db", dir);
	CHECK(vms_catalog_open(&cat, nodir) < 0);
	cleanup();
}

TEST_MAIN()
