/*
 * fuzz_control_json.c - libFuzzer target for the control protocol:
 * vms_control_exec() (src/lib/control) on a real catalog with a small
 * native SR, as vmsnapd runs it for each control-socket line.
 *
 * State: a home with a native SR (1 MiB pool), vm1 with two disks, a
 * snapshot s1 and a clone vm2 is made once; before every input the home is
 * restored byte for byte from that template, so each input runs from the
 * same state and every crash replays.  An input holds up to 4 requests,
 * one per line, run in order on one vms_control (so create-then-delete
 * sequences are reached).
 *
 * Asserted for every request: a response always comes back, it is one line
 * of JSON, an object with "output_version":1 and exactly one of "result"
 * and "error"; an error has a known "code" and a non-empty "message"; the
 * return code is 0 exactly when there is a result, and matches the code.
 *
 * Kept out: sr.create of anything but a native SR inside the scratch home
 * (the fuzzer runs as root: a zfs or reflink SR would reach real pools and
 * directories elsewhere on the machine).  That op's argument validation is
 * still fuzzed for native SRs under the home.
 *
 * Build: tests/fuzz/run.sh; by hand ./fuzz_control_json -max_total_time=60 DIR
 */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmsnap/control.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"

static char g_work[256], g_tmpl[256], g_root[256];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level == 0)
		return 0;
	return remove(path);
}

static void rm_contents(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *g_copy_from, *g_copy_to;

static int copy_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	char dst[512];
	if (ftw->level == 0)
		return 0;
	snprintf(dst, sizeof(dst), "%s%s", g_copy_to, path + strlen(g_copy_from));
	if (flag == FTW_D)
		return mkdir(dst, st->st_mode & 07777) < 0 && errno != EEXIST ? -1 : 0;
	if (flag != FTW_F)
		return 0;
	int in = open(path, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, st->st_mode & 07777);
	assert(in >= 0 && out >= 0);
	static char buf[1 << 16];
	ssize_t n;
	off_t off = 0;
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		int zero = 1;
		for (ssize_t i = 0; i < n && zero; i++)
			zero = buf[i] == 0;
		if (!zero)   /* keep the pool file sparse */
			assert(pwrite(out, buf, (size_t)n, off) == n);
		off += n;
	}
	assert(n == 0 && ftruncate(out, off) == 0);
	close(in);
	close(out);
	return 0;
}

static void copy_tree(const char *from, const char *to)
{
	g_copy_from = from;
	g_copy_to = to;
	assert(nftw(from, copy_one, 16, FTW_PHYS) == 0);
}

static void cleanup(void)
{
	rm_contents(g_root);
	rmdir(g_root);
}

static void must(vms_control *ctl, const char *req)
{
	char *out = NULL;
	int rc = vms_control_exec(&out, ctl, req);
	if (rc < 0) {
		fprintf(stderr, "fuzz_control_json setup: %s -> %s\n", req, out ? out : "(null)");
		abort();
	}
	free(out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(g_root, sizeof(g_root), "%s/vms-fuzz-ctl.XXXXXX", base);
	assert(mkdtemp(g_root));
	atexit(cleanup);
	snprintf(g_work, sizeof(g_work), "%s/home", g_root);
	snprintf(g_tmpl, sizeof(g_tmpl), "%s/template", g_root);
	assert(mkdir(g_work, 0700) == 0 && mkdir(g_tmpl, 0700) == 0);
	vms_control *ctl = NULL;
	assert(vms_control_open(&ctl, g_work) == 0);
	char req[1024];
	snprintf(req, sizeof(req),
	         "{\"op\":\"sr.create\",\"args\":{\"name\":\"sr1\",\"type\":\"native\","
	         "\"location\":\"%s/sr1\",\"size\":\"1M\"}}", g_work);
	must(ctl, req);
	must(ctl, "{\"op\":\"vm.create\",\"args\":{\"name\":\"vm1\",\"sr\":\"sr1\","
	          "\"disks\":[{\"name\":\"root\",\"size\":\"64K\"},{\"name\":\"data\",\"size\":4096}]}}");
	must(ctl, "{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"s1\"}}");
	must(ctl, "{\"op\":\"vm.clone\",\"args\":{\"snapshot\":\"vm1@s1\",\"name\":\"vm2\"}}");
	vms_control_close(ctl);
	copy_tree(g_work, g_tmpl);
	return 0;
}

static const char *const codes[] = {"NOTFOUND", "EXISTS", "BUSY", "NOSPC", "CORRUPT", "INVALID",
                                    "IO", "NOMEM", "READONLY", "NOTSUP", "DEPENDENTS", "PERM"};

/* 1 when the request may run: sr.create only of a native SR inside the home. */
static int allowed(const char *req, size_t len)
{
	vms_json *j = NULL;
	if (vms_json_parse(&j, req, len) < 0)
		return 1;  /* unparsable: the control module must refuse it, let it */
	int ok = 1;
	const char *op = vms_json_string(vms_json_object_get(j, "op"));
	if (op && strstr(op, "sr.create")) {
		const vms_json *a = vms_json_object_get(j, "args");
		const char *type = vms_json_string(vms_json_object_get(a, "type"));
		const char *loc = vms_json_string(vms_json_object_get(a, "location"));
		ok = (!type || strcmp(type, "native") == 0) &&
		     (!loc || (strncmp(loc, g_work, strlen(g_work)) == 0 && !strstr(loc, "..")));
	}
	vms_json_free(j);
	return ok;
}

static void check_response(const char *req, const char *out, int rc)
{
	assert(out != NULL);
	size_t n = strlen(out);
	assert(n > 0 && !memchr(out, '\n', n));
	vms_json *j = NULL;
	if (vms_json_parse(&j, out, n) < 0) {
		fprintf(stderr, "request %s\ngave unparsable response %s\n", req, out);
		abort();
	}
	int64_t ver = 0;
	assert(vms_json_type_of(j) == VMS_JSON_OBJECT);
	assert(vms_json_is_int(vms_json_object_get(j, "output_version"), &ver) && ver == 1);
	const vms_json *res = vms_json_object_get(j, "result"), *err = vms_json_object_get(j, "error");
	assert((res != NULL) != (err != NULL));
	if (res) {
		assert(rc == 0);
	} else {
		assert(rc < 0);
		assert(vms_json_type_of(err) == VMS_JSON_OBJECT);
		const char *code = vms_json_string(vms_json_object_get(err, "code"));
		const char *msg = vms_json_string(vms_json_object_get(err, "message"));
		assert(code && msg && msg[0]);
		int known = 0;
		for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
			known |= strcmp(code, codes[i]) == 0;
		if (!known) {
			fprintf(stderr, "request %s\ngave unknown error code %s\n", req, out);
			abort();
		}
	}
	vms_json_free(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024)
		return 0;
	char *buf = malloc(size + 1);
	assert(buf);
	memcpy(buf, data, size);
	buf[size] = '\0';
	/* split into at most 4 requests at newlines (NULs end a request early,
	 * as they would in the daemon's C string) */
	char *reqs[4];
	int nreq = 0;
	for (char *p = buf, *nl; p && nreq < 4; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		if (!allowed(p, strlen(p))) {
			free(buf);
			return 0;
		}
		reqs[nreq++] = p;
	}
	rm_contents(g_work);
	copy_tree(g_tmpl, g_work);
	vms_control *ctl = NULL;
	assert(vms_control_open(&ctl, g_work) == 0);
	for (int i = 0; i < nreq; i++) {
		char *out = NULL;
		int rc = vms_control_exec(&out, ctl, reqs[i]);
		check_response(reqs[i], out, rc);
		free(out);
	}
	vms_control_close(ctl);
	free(buf);
	return 0;
}
