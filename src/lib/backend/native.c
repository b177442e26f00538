/*
 * native.c - the "native" SR type: a directory holding one pool file of the
 * embedded engine (include/vmsnap/pool.h), every disk, snapshot and clone a
 * volume in it.
 *
 * Layout of an SR directory:
 *   pool.vms   the pool (created as pool.vms.tmp and renamed when complete,
 *              so a crash during sr_create never leaves a half pool under
 *              the final name)
 *   keys.log   the key map: which catalog keys ("<vm>/<disk>" for a disk or
 *              clone, "<vm>@<snap>" for a VM snapshot) own which volume ids
 *
 * Refs are volume ids in decimal ("17"): the engine never reuses an id, so a
 * stale ref can never reach another object.  A multi-disk snapshot is one
 * vms_vol_snapshot() call (atomic at one I/O boundary, hence
 * VMS_CAP_ATOMIC_MULTI); rollback, clone and resize are O(1) engine calls.
 *
 * Durability: every metadata-changing verb commits the pool before it
 * returns, so a ref the control layer records always survives a crash.  The
 * key map is then appended and fsync'd.  A crash between the two leaves a
 * volume without a key: `check` lists such volumes as "unkeyed" (the
 * control layer has recorded the interrupted create as an orphan note).
 *
 * keys.log: a header line "vmsnap-native-keys 1", then records
 *   <crc32c of the rest, 8 hex> <A|R|X> <key or -> <id>[,<id>...]
 * A = key owns these ids, R = key removed, X = id removed.  Replay verifies
 * every crc; a torn last record (crash while appending) is cut off, damage
 * before it is VMS_ECORRUPT.  The log is compacted on open when dead records
 * outnumber live ones.
 *
 * A read-only open (sr_open_readonly, for check) writes nothing: the pool is
 * opened with vms_pool_options.read_only (no commit at open), the key log is
 * read but neither cut, compacted nor created, and no append descriptor is
 * kept, so every changing verb fails with VMS_EROFS.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmsnap/backend.h"
#include "vmsnap/crc32c.h"
#include "vmsnap/error.h"
#include "vmsnap/json.h"
#include "vmsnap/pool.h"
#include "backend/rawfile_private.h"

#define POOL_FILE "pool.vms"
#define POOL_TMP "pool.vms.tmp"
#define KEYS_FILE "keys.log"
#define KEYS_TMP "keys.log.tmp"
#define KEYS_HEADER "vmsnap-native-keys 1\n"
#define KEY_MAX (2 * VMS_KEY_MAX + 2)
#define LINE_MAX_LEN (1u << 20)

/* ---- the key map ----------------------------------------------------------- */

typedef struct key_ent {
	char *key;            /* NULL = free slot */
	uint64_t *ids;
	size_t n;
} key_ent;

typedef struct id_ref {
	uint64_t id;
	uint32_t ent;         /* index in ents, UINT32_MAX = removed */
} id_ref;

struct vms_sr_handle {
	vms_pool *pool;
	char *dir;
	int read_only;            /* opened by native_sr_open_readonly */
	int log_fd;               /* append descriptor of the key log; -1 when read-only */
	pthread_mutex_t lock;     /* the key map and the log */
	key_ent *ents;
	size_t nents, capents;
	uint32_t *hash;           /* key -> ents index + 1; 0 empty, UINT32_MAX tombstone */
	size_t hcap, hused;       /* hused counts live + tombstones */
	id_ref *byid;             /* sorted by id */
	size_t nbyid, capbyid, deadbyid;
	size_t live_records, log_records;
};

typedef struct native_disk {
	vms_pool *pool;
	vms_vol_id id;
	unsigned flags;
} native_disk;

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int hash_rebuild(vms_sr_handle *sr, size_t cap)
{
	uint32_t *h = calloc(cap, sizeof(*h));
	if (!h)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	sr->hused = 0;
	for (size_t i = 0; i < sr->nents; i++) {
		if (!sr->ents[i].key)
			continue;
		size_t p = hash_str(sr->ents[i].key) & (cap - 1);
		while (h[p])
			p = (p + 1) & (cap - 1);
		h[p] = (uint32_t)i + 1;
		sr->hused++;
	}
	free(sr->hash);
	sr->hash = h;
	sr->hcap = cap;
	return 0;
}

/* Slot in hash of `key`, or -1. */
static int64_t hash_find(const vms_sr_handle *sr, const char *key)
{
	if (!sr->hcap)
		return -1;
	size_t p = hash_str(key) & (sr->hcap - 1);
	for (size_t probes = 0; probes < sr->hcap; probes++, p = (p + 1) & (sr->hcap - 1)) {
		uint32_t v = sr->hash[p];
		if (v == 0)
			return -1;
		if (v != UINT32_MAX && strcmp(sr->ents[v - 1].key, key) == 0)
			return (int64_t)p;
	}
	return -1;
}

static key_ent *key_get(const vms_sr_handle *sr, const char *key)
{
	int64_t p = hash_find(sr, key);
	return p < 0 ? NULL : &sr->ents[sr->hash[p] - 1];
}

static size_t byid_lower(const vms_sr_handle *sr, uint64_t id)
{
	size_t lo = 0, hi = sr->nbyid;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sr->byid[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int byid_add(vms_sr_handle *sr, uint64_t id, uint32_t ent)
{
	if (sr->nbyid == sr->capbyid) {
		size_t nc = sr->capbyid ? sr->capbyid * 2 : 64;
		id_ref *n = realloc(sr->byid, nc * sizeof(*n));
		if (!n)
			return vms_error_set(VMS_ENOMEM, "out of memory");
		sr->byid = n;
		sr->capbyid = nc;
	}
	size_t p = byid_lower(sr, id);
	if (p < sr->nbyid && sr->byid[p].id == id) {
		if (sr->byid[p].ent == UINT32_MAX)
			sr->deadbyid--;
		sr->byid[p].ent = ent;
		return 0;
	}
	memmove(sr->byid + p + 1, sr->byid + p, (sr->nbyid - p) * sizeof(*sr->byid));
	sr->byid[p].id = id;
	sr->byid[p].ent = ent;
	sr->nbyid++;
	return 0;
}

static void byid_drop(vms_sr_handle *sr, uint64_t id)
{
	size_t p = byid_lower(sr, id);
	if (p < sr->nbyid && sr->byid[p].id == id && sr->byid[p].ent != UINT32_MAX) {
		sr->byid[p].ent = UINT32_MAX;
		sr->deadbyid++;
	}
	if (sr->deadbyid > 1024 && sr->deadbyid > sr->nbyid / 2) {
		size_t k = 0;
		for (size_t i = 0; i < sr->nbyid; i++)
			if (sr->byid[i].ent != UINT32_MAX)
				sr->byid[k++] = sr->byid[i];
		sr->nbyid = k;
		sr->deadbyid = 0;
	}
}

static key_ent *key_of_id(const vms_sr_handle *sr, uint64_t id)
{
	size_t p = byid_lower(sr, id);
	if (p < sr->nbyid && sr->byid[p].id == id && sr->byid[p].ent != UINT32_MAX)
		return &sr->ents[sr->byid[p].ent];
	return NULL;
}

static void map_remove_key(vms_sr_handle *sr, const char *key)
{
	int64_t p = hash_find(sr, key);
	if (p < 0)
		return;
	key_ent *e = &sr->ents[sr->hash[p] - 1];
	for (size_t i = 0; i < e->n; i++)
		byid_drop(sr, e->ids[i]);
	free(e->key);
	free(e->ids);
	memset(e, 0, sizeof(*e));
	sr->hash[p] = UINT32_MAX;
	sr->live_records--;
}

static void map_remove_id(vms_sr_handle *sr, uint64_t id)
{
	key_ent *e = key_of_id(sr, id);
	if (!e)
		return;
	for (size_t i = 0; i < e->n; i++) {
		if (e->ids[i] == id) {
			e->ids[i] = e->ids[--e->n];
			break;
		}
	}
	byid_drop(sr, id);
	if (e->n == 0)
		map_remove_key(sr, e->key);   /* the key is used before it is freed */
}

static int map_add(vms_sr_handle *sr, const char *key, const uint64_t *ids, size_t n)
{
	int rc;
	if (key_get(sr, key))
		map_remove_key(sr, key);
	if ((sr->hused + 1) * 2 > sr->hcap && (rc = hash_rebuild(sr, sr->hcap ? sr->hcap * 2 : 64)) < 0)
		return rc;
	if (sr->nents == sr->capents) {
		size_t nc = sr->capents ? sr->capents * 2 : 64;
		key_ent *ne = realloc(sr->ents, nc * sizeof(*ne));
		if (!ne)
			return vms_error_set(VMS_ENOMEM, "out of memory");
		sr->ents = ne;
		sr->capents = nc;
	}
	if (sr->nents >= UINT32_MAX - 1)
		return vms_error_set(VMS_ENOSPC, "native SR key map is full");
	key_ent *e = &sr->ents[sr->nents];
	memset(e, 0, sizeof(*e));
	if (!(e->key = strdup(key)) || !(e->ids = malloc((n ? n : 1) * sizeof(*ids)))) {
		free(e->key);
		e->key = NULL;
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	memcpy(e->ids, ids, n * sizeof(*ids));
	e->n = n;
	uint32_t idx = (uint32_t)sr->nents++;
	size_t p = hash_str(key) & (sr->hcap - 1);
	while (sr->hash[p] && sr->hash[p] != UINT32_MAX)
		p = (p + 1) & (sr->hcap - 1);
	if (!sr->hash[p])
		sr->hused++;
	sr->hash[p] = idx + 1;
	for (size_t i = 0; i < n; i++)
		if ((rc = byid_add(sr, ids[i], idx)) < 0)
			return rc;
	sr->live_records++;
	return 0;
}

static void map_free(vms_sr_handle *sr)
{
	for (size_t i = 0; i < sr->nents; i++) {
		free(sr->ents[i].key);
		free(sr->ents[i].ids);
	}
	free(sr->ents);
	free(sr->hash);
	free(sr->byid);
	sr->ents = NULL;
	sr->hash = NULL;
	sr->byid = NULL;
	sr->nents = sr->capents = sr->hcap = sr->hused = sr->nbyid = sr->capbyid = sr->deadbyid = 0;
	sr->live_records = 0;
}

/* ---- the key log ---------------------------------------------------------- */

static int write_all(int fd, const char *buf, size_t len, const char *what)
{
	while (len) {
		ssize_t w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return vms_error_set_errno(errno, "writing %s", what);
		}
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Format one record (with its newline) into buf. */
static int record(char *buf, size_t cap, char type, const char *key, const uint64_t *ids, size_t n)
{
	char body[LINE_MAX_LEN];
	size_t len = (size_t)snprintf(body, sizeof(body), "%c %s ", type, key ? key : "-");
	for (size_t i = 0; i < n && len < sizeof(body) - 24; i++)
		len += (size_t)snprintf(body + len, sizeof(body) - len, "%s%" PRIu64, i ? "," : "", ids[i]);
	if (n == 0)
		len += (size_t)snprintf(body + len, sizeof(body) - len, "0");
	if (len >= sizeof(body) - 24)
		return vms_error_set(VMS_EINVAL, "native key record too long");
	int w = snprintf(buf, cap, "%08x %s\n", vms_crc32c(0, body, len), body);
	if (w < 0 || (size_t)w >= cap)
		return vms_error_set(VMS_EINVAL, "native key record too long");
	return w;
}

static int log_append(vms_sr_handle *sr, const char *recs, size_t len)
{
	int rc;
	if (sr->read_only)
		return vms_error_set(VMS_EROFS, "native SR %s is open read-only", sr->dir);
	if ((rc = write_all(sr->log_fd, recs, len, KEYS_FILE)) < 0)
		return rc;
	if (fdatasync(sr->log_fd) < 0)
		return vms_error_set_errno(errno, "syncing %s", KEYS_FILE);
	for (size_t i = 0; i < len; i++)
		if (recs[i] == '\n')
			sr->log_records++;
	return 0;
}

static int parse_ids(uint64_t **out, size_t *n, const char *s)
{
	size_t cap = 1, k = 0;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	uint64_t *v = malloc(cap * sizeof(*v));
	if (!v)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	while (*s) {
		char *end;
		errno = 0;
		if (*s < '0' || *s > '9') {
			free(v);
			return VMS_ECORRUPT;
		}
		unsigned long long x = strtoull(s, &end, 10);
		if (errno || (*end && *end != ',')) {
			free(v);
			return VMS_ECORRUPT;
		}
		v[k++] = x;
		s = *end ? end + 1 : end;
	}
	*out = v;
	*n = k;
	return 0;
}

/* Apply one record line (without newline); VMS_ECORRUPT if malformed. */
static int apply_line(vms_sr_handle *sr, char *line, size_t len)
{
	if (len < 14 || line[8] != ' ')
		return VMS_ECORRUPT;
	char hex[9];
	memcpy(hex, line, 8);
	hex[8] = 0;
	char *end;
	unsigned long crc = strtoul(hex, &end, 16);
	if (*end || crc != vms_crc32c(0, line + 9, len - 9))
		return VMS_ECORRUPT;
	char *body = line + 9;
	char type = body[0];
	if (body[1] != ' ')
		return VMS_ECORRUPT;
	char *key = body + 2, *sp = strchr(key, ' ');
	if (!sp)
		return VMS_ECORRUPT;
	*sp = 0;
	uint64_t *ids = NULL;
	size_t n = 0;
	int rc = parse_ids(&ids, &n, sp + 1);
	if (rc < 0)
		return rc;
	switch (type) {
	case 'A': rc = map_add(sr, key, ids, n); break;
	case 'R': map_remove_key(sr, key); break;
	case 'X': for (size_t i = 0; i < n; i++) map_remove_id(sr, ids[i]); break;
	default: rc = VMS_ECORRUPT;
	}
	free(ids);
	sr->log_records++;
	return rc;
}

static int join(char **out, const char *dir, const char *name)
{
	return vms_raw__join(out, dir, name);
}

/* Write a fresh log holding the live map (compaction / creation). */
static int log_rewrite(vms_sr_handle *sr)
{
	int rc = 0, fd = -1;
	char *tmp = NULL, *path = NULL, line[LINE_MAX_LEN + 32];
	if ((rc = join(&tmp, sr->dir, KEYS_TMP)) < 0 || (rc = join(&path, sr->dir, KEYS_FILE)) < 0)
		goto done;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		rc = vms_error_set_errno(errno, "creating %s", tmp);
		goto done;
	}
	if ((rc = write_all(fd, KEYS_HEADER, strlen(KEYS_HEADER), tmp)) < 0)
		goto done;
	size_t nrec = 0;
	for (size_t i = 0; i < sr->nents; i++) {
		if (!sr->ents[i].key)
			continue;
		int w = record(line, sizeof(line), 'A', sr->ents[i].key, sr->ents[i].ids, sr->ents[i].n);
		if (w < 0 || (rc = write_all(fd, line, (size_t)w, tmp)) < 0) {
			rc = w < 0 ? w : rc;
			goto done;
		}
		nrec++;
	}
	if (fsync(fd) < 0) {
		rc = vms_error_set_errno(errno, "syncing %s", tmp);
		goto done;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = vms_error_set_errno(errno, "renaming %s", tmp);
		goto done;
	}
	if ((rc = vms_raw__fsync_dir(sr->dir)) < 0)
		goto done;
	if (sr->log_fd >= 0)
		close(sr->log_fd);
	if ((sr->log_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0) {
		rc = vms_error_set_errno(errno, "opening %s", path);
		goto done;
	}
	sr->log_records = nrec;
done:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && tmp)
		unlink(tmp);
	free(tmp);
	free(path);
	return rc;
}

static int log_load(vms_sr_handle *sr)
{
	int rc = 0, fd;
	char *path = NULL, *buf = NULL;
	struct stat st;
	if ((rc = join(&path, sr->dir, KEYS_FILE)) < 0)
		return rc;
	if ((fd = open(path, (sr->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC)) < 0) {
		if (errno == ENOENT) {
			/* an SR made before keys existed, or a crash right after the
			 * pool rename: start an empty map */
			free(path);
			return sr->read_only ? 0 : log_rewrite(sr);
		}
		rc = vms_error_set_errno(errno, "opening %s", path);
		goto done;
	}
	if (fstat(fd, &st) < 0) {
		rc = vms_error_set_errno(errno, "stat %s", path);
		goto done;
	}
	size_t len = (size_t)st.st_size, got = 0;
	if (!(buf = malloc(len + 1))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	while (got < len) {
		ssize_t r = pread(fd, buf + got, len - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = vms_error_set_errno(r < 0 ? errno : EIO, "reading %s", path);
			goto done;
		}
		got += (size_t)r;
	}
	buf[len] = 0;
	size_t hl = strlen(KEYS_HEADER);
	if (len < hl || memcmp(buf, KEYS_HEADER, hl) != 0) {
		rc = vms_error_set(VMS_ECORRUPT, "%s: not a native key log (bad header)", path);
		goto done;
	}
	size_t pos = hl, good = hl;
	while (pos < len) {
		char *nl = memchr(buf + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (buf + pos)) : len - pos;
		buf[pos + ll] = 0;
		int arc = nl ? apply_line(sr, buf + pos, ll) : VMS_ECORRUPT;
		if (arc == VMS_ENOMEM) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			goto done;
		}
		if (arc < 0) {
			if (!nl || pos + ll + 1 >= len)
				break;   /* torn last record: cut off below */
			rc = vms_error_set(VMS_ECORRUPT, "%s: damaged record at byte %zu", path, pos);
			goto done;
		}
		pos += ll + 1;
		good = pos;
	}
	if (sr->read_only)
		goto done;   /* a torn end is left for the next writer to cut */
	if (good < len && ftruncate(fd, (off_t)good) < 0) {
		rc = vms_error_set_errno(errno, "truncating the torn end of %s", path);
		goto done;
	}
	close(fd);
	fd = -1;
	if ((sr->log_fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0) {
		rc = vms_error_set_errno(errno, "opening %s", path);
		goto done;
	}
	if (sr->log_records > 2 * sr->live_records + 1024)
		rc = log_rewrite(sr);
done:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(path);
	return rc;
}

/* ---- refs and keys ---------------------------------------------------------- */

static int parse_ref(vms_vol_id *out, const char *ref)
{
	uint64_t v = 0;
	*out = 0; /* 0 is never a volume id; also keeps -O3's flow analysis quiet */
	if (!ref || !*ref || strlen(ref) > 20 || ref[0] == '0')
		goto bad;
	for (const char *p = ref; *p; p++) {
		if (*p < '0' || *p > '9')
			goto bad;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			goto bad;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
bad:
	return vms_error_set(VMS_EINVAL, "invalid native ref '%.40s' (a volume id)", ref ? ref : "");
}

static int make_ref(char **out, vms_vol_id id)
{
	if (asprintf(out, "%" PRIu64, id) < 0) {
		*out = NULL;
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	return 0;
}

static int make_key(char out[KEY_MAX], const char *vm, char sep, const char *obj, const char *what)
{
	int rc;
	if ((rc = vms_raw__check_key("VM key", vm)) < 0 || (rc = vms_raw__check_key(what, obj)) < 0)
		return rc;
	snprintf(out, KEY_MAX, "%s%c%s", vm, sep, obj);
	return 0;
}

/* A live volume (not being deleted). */
static int vol_info(vms_vol_info *out, vms_pool *pool, vms_vol_id id)
{
	int rc = vms_vol_info_get(out, pool, id);
	if (rc == 0 && out->deleting)
		rc = vms_error_set(VMS_ENOTFOUND, "volume %" PRIu64 " was deleted", id);
	return rc;
}

/* ---- SR lifecycle ------------------------------------------------------------ */

static int check_location(const char *location)
{
	if (!location || location[0] != '/')
		return vms_error_set(VMS_EINVAL, "native SR location '%.200s' must be an absolute path",
		                     location ? location : "");
	if (strlen(location) >= PATH_MAX - 32)
		return vms_error_set(VMS_EINVAL, "native SR location is too long");
	for (const char *p = location; *p; p++) {
		if (p[0] == '/' && p[1] == '.' && p[2] == '.' && (p[3] == '/' || p[3] == 0))
			return vms_error_set(VMS_EINVAL, "native SR location '%.200s' must not contain '..'",
			                     location);
	}
	return 0;
}

static int native_direct_io;

void vms_backend_native_set_direct_io(int on)
{
	native_direct_io = !!on;
}

static int parse_options(vms_pool_options *o, const char *options)
{
	memset(o, 0, sizeof(*o));
	o->index = VMS_INDEX_KEYS; /* new SRs: format 3 (docs/design/index-v3.md) */
	o->data_checksums = 1;
	o->direct_io = native_direct_io;
	if (!options || !*options)
		return 0;
	char buf[1024];
	if (strlen(options) >= sizeof(buf))
		return vms_error_set(VMS_EINVAL, "native SR options too long");
	snprintf(buf, sizeof(buf), "%s", options);
	char *save = NULL;
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq)
			return vms_error_set(VMS_EINVAL, "native SR option '%s' is not key=value", kv);
		*eq = 0;
		const char *v = eq + 1;
		if (strcmp(kv, "block_size") == 0) {
			uint64_t bs;
			if (vms_parse_size(&bs, v) < 0 || bs < VMS_MIN_BLOCK_SIZE || bs > VMS_MAX_BLOCK_SIZE ||
			    (bs & (bs - 1)))
				return vms_error_set(VMS_EINVAL, "native SR option block_size=%s: a power of two "
				                     "from %u to %u", v, VMS_MIN_BLOCK_SIZE, VMS_MAX_BLOCK_SIZE);
			o->block_size = (uint32_t)bs;
		} else if (strcmp(kv, "checksums") == 0) {
			if (strcmp(v, "on") == 0)
				o->data_checksums = 1;
			else if (strcmp(v, "off") == 0)
				o->data_checksums = 0;
			else
				return vms_error_set(VMS_EINVAL, "native SR option checksums=%s: on or off", v);
		} else if (strcmp(kv, "index") == 0) {
			if (strcmp(v, "radix") == 0)
				o->index = VMS_INDEX_RADIX;
			else if (strcmp(v, "keys") == 0)
				o->index = VMS_INDEX_KEYS;
			else
				return vms_error_set(VMS_EINVAL, "native SR option index=%s: radix (format 2) or "
				                     "keys (format 3, versioned keys, the default)", v);
		} else {
			return vms_error_set(VMS_EINVAL, "unknown native SR option '%s' (known: block_size, "
			                     "checksums, index)", kv);
		}
	}
	return 0;
}

/* mkdir -p with mode 0700 for the parts it creates; *created = 1 if the
 * last component was made here. */
static int mkdirs(const char *path, int *created)
{
	char buf[PATH_MAX];
	*created = 0;
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return vms_error_set_errno(errno, "creating %s", buf);
		*p = '/';
	}
	if (mkdir(buf, 0700) == 0)
		*created = 1;
	else if (errno != EEXIST)
		return vms_error_set_errno(errno, "creating %s", buf);
	struct stat st;
	if (stat(buf, &st) < 0)
		return vms_error_set_errno(errno, "%s", buf);
	if (!S_ISDIR(st.st_mode))
		return vms_error_set(VMS_EINVAL, "native SR location %s is not a directory", buf);
	return 0;
}

static int dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d)
		return vms_error_set_errno(errno, "opening %s", dir);
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		closedir(d);
		return vms_error_set(VMS_EEXISTS, "native SR location %s is not empty (holds '%.100s')",
		                     dir, e->d_name);
	}
	closedir(d);
	return 0;
}

static int native_sr_create(const char *location, uint64_t size, const char *options)
{
	int rc, created = 0;
	vms_pool_options opts;
	vms_pool *pool = NULL;
	char *pool_path = NULL, *tmp = NULL;
	vms_sr_handle sr;
	memset(&sr, 0, sizeof(sr));
	sr.log_fd = -1;
	if ((rc = check_location(location)) < 0 || (rc = parse_options(&opts, options)) < 0)
		return rc;
	if (size == 0)
		return vms_error_set(VMS_EINVAL, "a native SR needs a size (the pool file's size in bytes)");
	if ((rc = mkdirs(location, &created)) < 0)
		return rc;
	if ((rc = join(&pool_path, location, POOL_FILE)) < 0 || (rc = join(&tmp, location, POOL_TMP)) < 0)
		goto done;
	if (access(pool_path, F_OK) == 0) {
		rc = vms_error_set(VMS_EEXISTS, "%s already holds a native SR", location);
		goto done;
	}
	unlink(tmp);   /* a crash during an earlier create */
	/* the directory must be empty: an SR never adopts files it did not make */
	if ((rc = dir_empty(location)) < 0)
		goto done;
	if ((rc = vms_pool_create_file(&pool, tmp, size, &opts)) < 0) {
		vms_error_wrap(rc, "creating the pool of native SR %s", location);
		goto done;
	}
	rc = vms_pool_close(pool);
	pool = NULL;
	if (rc < 0)
		goto done;
	if (rename(tmp, pool_path) < 0) {
		rc = vms_error_set_errno(errno, "renaming %s", tmp);
		goto done;
	}
	sr.dir = (char *)location;
	if ((rc = log_rewrite(&sr)) < 0)
		goto done;
	rc = vms_raw__fsync_dir(location);
done:
	if (sr.log_fd >= 0)
		close(sr.log_fd);
	if (rc < 0 && rc != VMS_EEXISTS) {
		if (tmp)
			unlink(tmp);
		if (created) {
			char *k = NULL;
			if (join(&k, location, KEYS_FILE) == 0)
				unlink(k);
			free(k);
			if (pool_path)
				unlink(pool_path);
			rmdir(location);
		}
	}
	free(pool_path);
	free(tmp);
	return rc;
}

static int sr_open(vms_sr_handle **out, const char *location, int read_only)
{
	int rc;
	char *pool_path = NULL;
	vms_pool_options opts;
	vms_sr_handle *sr = calloc(1, sizeof(*sr));
	if (!sr)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	sr->log_fd = -1;
	sr->read_only = read_only;
	memset(&opts, 0, sizeof(opts));
	opts.read_only = read_only;
	opts.direct_io = native_direct_io;
	pthread_mutex_init(&sr->lock, NULL);
	if ((rc = check_location(location)) < 0)
		goto done;
	if (!(sr->dir = strdup(location))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = join(&pool_path, location, POOL_FILE)) < 0)
		goto done;
	if (access(pool_path, F_OK) < 0) {
		rc = vms_error_set_errno(errno, "native SR %s: no pool file %s", location, POOL_FILE);
		goto done;
	}
	if ((rc = vms_pool_open_file(&sr->pool, pool_path, &opts)) < 0)
		goto done;
	if ((rc = log_load(sr)) < 0)
		goto done;
	*out = sr;
	sr = NULL;
done:
	free(pool_path);
	if (sr) {
		if (sr->pool)
			vms_pool_close(sr->pool);
		if (sr->log_fd >= 0)
			close(sr->log_fd);
		map_free(sr);
		pthread_mutex_destroy(&sr->lock);
		free(sr->dir);
		free(sr);
	}
	return rc;
}

static int native_sr_open(vms_sr_handle **out, const char *location)
{
	return sr_open(out, location, 0);
}

static int native_sr_open_readonly(vms_sr_handle **out, const char *location)
{
	return sr_open(out, location, 1);
}

static int native_sr_close(vms_sr_handle *sr)
{
	int rc;
	if (!sr)
		return 0;
	rc = vms_pool_close(sr->pool);
	if (sr->log_fd >= 0)
		close(sr->log_fd);
	map_free(sr);
	pthread_mutex_destroy(&sr->lock);
	free(sr->dir);
	free(sr);
	return rc;
}

static int native_sr_destroy(const char *location)
{
	int rc;
	vms_pool *pool = NULL;
	char *pool_path = NULL, *keys = NULL;
	if ((rc = check_location(location)) < 0)
		return rc;
	if ((rc = join(&pool_path, location, POOL_FILE)) < 0 || (rc = join(&keys, location, KEYS_FILE)) < 0)
		goto done;
	if (access(pool_path, F_OK) < 0) {
		rc = vms_error_set(VMS_ENOTFOUND, "no native SR at %s", location);
		goto done;
	}
	if ((rc = vms_pool_open_file(&pool, pool_path, NULL)) < 0) {
		vms_error_wrap(rc, "native SR %s (still open elsewhere?)", location);
		goto done;
	}
	int64_t n = vms_vol_list(NULL, 0, pool);
	if (n < 0) {
		rc = (int)n;
		goto done;
	}
	vms_vol_id *ids = malloc(((size_t)n + 1) * sizeof(*ids));
	if (!ids) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	int64_t got = vms_vol_list(ids, (size_t)n, pool);
	size_t live = 0;
	for (int64_t i = 0; i < got && i < n; i++) {
		vms_vol_info vi;
		if (vms_vol_info_get(&vi, pool, ids[i]) == 0 && !vi.deleting)
			live++;
	}
	free(ids);
	vms_error_clear();
	if (live) {
		rc = vms_error_set(VMS_EBUSY, "native SR %s still holds %zu volume%s", location, live,
		                   live == 1 ? "" : "s");
		goto done;
	}
	vms_pool_close(pool);
	pool = NULL;
	if (unlink(pool_path) < 0) {
		rc = vms_error_set_errno(errno, "removing %s", pool_path);
		goto done;
	}
	unlink(keys);
	if (rmdir(location) < 0 && errno != ENOTEMPTY && errno != EEXIST)
		rc = vms_error_set_errno(errno, "removing %s", location);
done:
	if (pool)
		vms_pool_close(pool);
	free(pool_path);
	free(keys);
	return rc;
}

/* The index as the option index= and the reports name it. */
static const char *index_name(uint32_t index)
{
	return index == VMS_INDEX_KEYS ? "keys" : "radix";
}

static int native_sr_properties(char **out_json, vms_sr_handle *sr)
{
	vms_pool_stats st;
	int rc = vms_pool_stats_get(&st, sr->pool);
	*out_json = NULL;
	if (rc < 0)
		return rc;
	if (asprintf(out_json, "{\"block_size\":%u,\"format_version\":%u,\"index\":\"%s\",\"checksums\":%s}",
	             st.block_size, st.format_version, index_name(st.index),
	             st.data_checksums ? "true" : "false") < 0) {
		*out_json = NULL;
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	return 0;
}

static int native_sr_space(vms_sr_space *out, vms_sr_handle *sr)
{
	vms_pool_stats st;
	int rc = vms_pool_stats_get(&st, sr->pool);
	if (rc < 0)
		return rc;
	out->total_bytes = st.total_blocks * st.block_size;
	out->free_bytes = st.free_blocks * st.block_size;
	out->used_bytes = out->total_bytes - out->free_bytes;
	return 0;
}

/* ---- disks, snapshots, clones ------------------------------------------------- */

static int commit(vms_sr_handle *sr)
{
	int rc = vms_pool_commit(sr->pool);
	return rc < 0 ? vms_error_wrap(rc, "committing native SR %s", sr->dir) : 0;
}

static int native_disk_create(char **out_ref, vms_sr_handle *sr, const char *vm_key, const char *disk_key,
                              uint64_t size)
{
	int rc;
	char key[KEY_MAX], line[KEY_MAX + 64];
	vms_vol_id id = 0;
	*out_ref = NULL;
	if ((rc = make_key(key, vm_key, '/', disk_key, "disk key")) < 0)
		return rc;
	pthread_mutex_lock(&sr->lock);
	if (key_get(sr, key)) {
		rc = vms_error_set(VMS_EEXISTS, "native SR %s: disk %s exists", sr->dir, key);
		goto done;
	}
	if ((rc = vms_vol_create(&id, sr->pool, size)) < 0 || (rc = commit(sr)) < 0)
		goto undo;
	int w = record(line, sizeof(line), 'A', key, &id, 1);
	if (w < 0 || (rc = log_append(sr, line, (size_t)w)) < 0 || (rc = map_add(sr, key, &id, 1)) < 0) {
		rc = w < 0 ? w : rc;
		goto undo;
	}
	rc = make_ref(out_ref, id);
	goto done;
undo:
	if (id) {
		vms_vol_delete(sr->pool, id);
		vms_pool_commit(sr->pool);
	}
done:
	pthread_mutex_unlock(&sr->lock);
	return rc;
}

static int delete_ids(vms_sr_handle *sr, const vms_vol_id *ids, size_t n, const char *key)
{
	int rc = 0;
	char line[LINE_MAX_LEN + 32];
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = vms_vol_delete(sr->pool, ids[i]);
		if (rc == VMS_ENOTFOUND && key)
			rc = 0;   /* a snapshot delete run again (reclaim, reconciliation) */
	}
	if (rc < 0)
		return rc;
	if ((rc = commit(sr)) < 0)
		return rc;
	int w = key ? record(line, sizeof(line), 'R', key, ids, n) : record(line, sizeof(line), 'X', NULL, ids, n);
	if (w < 0)
		return w;
	if ((rc = log_append(sr, line, (size_t)w)) < 0)
		return rc;
	if (key)
		map_remove_key(sr, key);
	for (size_t i = 0; i < n; i++)
		map_remove_id(sr, ids[i]);
	return 0;
}

static int native_disk_delete(vms_sr_handle *sr, const char *ref)
{
	int rc;
	vms_vol_id id;
	vms_vol_info vi;
	if ((rc = parse_ref(&id, ref)) < 0)
		return rc;
	pthread_mutex_lock(&sr->lock);
	if ((rc = vol_info(&vi, sr->pool, id)) == 0)
		rc = delete_ids(sr, &id, 1, NULL);
	pthread_mutex_unlock(&sr->lock);
	return rc;
}

static int native_disk_resize(vms_sr_handle *sr, const char *ref, uint64_t size)
{
	int rc;
	vms_vol_id id;
	if ((rc = parse_ref(&id, ref)) < 0)
		return rc;
	if ((rc = vms_vol_resize(sr->pool, id, size)) < 0)
		return rc;
	return commit(sr);
}

static int native_snapshot_create(char **out_refs, vms_sr_handle *sr, const char *vm_key,
                                  const char *snap_key, const char *const *refs, size_t n)
{
	int rc;
	char key[KEY_MAX], *line = NULL;
	vms_vol_id *src = NULL, *dst = NULL;
	int made = 0;
	if ((rc = make_key(key, vm_key, '@', snap_key, "snapshot key")) < 0)
		return rc;
	if (n == 0)
		return vms_error_set(VMS_EINVAL, "a native snapshot needs at least one disk");
	src = calloc(n, sizeof(*src));
	dst = calloc(n, sizeof(*dst));
	line = malloc(LINE_MAX_LEN + 32);
	if (!src || !dst || !line) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if ((rc = parse_ref(&src[i], refs[i])) < 0)
			goto out;
	pthread_mutex_lock(&sr->lock);
	if (key_get(sr, key)) {
		rc = vms_error_set(VMS_EEXISTS, "native SR %s: snapshot %s exists", sr->dir, key);
		goto done;
	}
	/* one engine call: every disk at the same I/O boundary */
	if ((rc = vms_vol_snapshot(dst, sr->pool, src, n)) < 0)
		goto done;
	made = 1;
	if ((rc = commit(sr)) < 0)
		goto done;
	int w = record(line, LINE_MAX_LEN + 32, 'A', key, dst, n);
	if (w < 0 || (rc = log_append(sr, line, (size_t)w)) < 0 || (rc = map_add(sr, key, dst, n)) < 0) {
		rc = w < 0 ? w : rc;
		goto done;
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = make_ref(&out_refs[i], dst[i]);
done:
	if (rc < 0 && made) {
		for (size_t i = 0; i < n; i++)
			vms_vol_delete(sr->pool, dst[i]);
		vms_pool_commit(sr->pool);
		for (size_t i = 0; i < n; i++) {
			free(out_refs[i]);
			out_refs[i] = NULL;
		}
	}
	pthread_mutex_unlock(&sr->lock);
out:
	free(src);
	free(dst);
	free(line);
	return rc;
}

static int native_snapshot_delete(vms_sr_handle *sr, const char *vm_key, const char *snap_key,
                                  const char *const *snap_refs, size_t n)
{
	int rc;
	char key[KEY_MAX];
	vms_vol_id *ids = NULL;
	if ((rc = make_key(key, vm_key, '@', snap_key, "snapshot key")) < 0)
		return rc;
	if (!(ids = calloc(n + 1, sizeof(*ids))))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		if ((rc = parse_ref(&ids[i], snap_refs[i])) < 0)
			goto out;
	pthread_mutex_lock(&sr->lock);
	key_ent *e = key_get(sr, key);
	for (size_t i = 0; e && i < n; i++) {
		size_t k = 0;
		while (k < e->n && e->ids[k] != ids[i])
			k++;
		if (k == e->n) {
			rc = vms_error_set(VMS_EINVAL, "native SR %s: volume %s is not part of snapshot %s",
			                   sr->dir, snap_refs[i], key);
			goto done;
		}
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		vms_vol_info vi;
		if (vms_vol_info_get(&vi, sr->pool, ids[i]) == 0 && vi.kind != VMS_VOL_SNAPSHOT)
			rc = vms_error_set(VMS_EINVAL, "native SR %s: volume %s is not a snapshot", sr->dir,
			                   snap_refs[i]);
	}
	vms_error_clear();
	if (rc == 0)
		rc = delete_ids(sr, ids, n, key);
done:
	pthread_mutex_unlock(&sr->lock);
out:
	free(ids);
	return rc;
}

static int native_rollback(char **new_refs, vms_sr_handle *sr, const char *vm_key, const char *const *refs,
                           const char *const *snap_refs, size_t n)
{
	int rc;
	(void)vm_key;
	for (size_t i = 0; i < n; i++) {
		vms_vol_id vol, snap;
		new_refs[i] = NULL;
		if ((rc = parse_ref(&vol, refs[i])) < 0 || (rc = parse_ref(&snap, snap_refs[i])) < 0)
			return rc;
	}
	for (size_t i = 0; i < n; i++) {
		vms_vol_id vol, snap;
		parse_ref(&vol, refs[i]);
		parse_ref(&snap, snap_refs[i]);
		if ((rc = vms_vol_rollback(sr->pool, vol, snap)) < 0)
			return vms_error_wrap(rc, "rolling back volume %s to %s", refs[i], snap_refs[i]);
	}
	return commit(sr);
}

static int native_clone(char **out_refs, vms_sr_handle *sr, const char *dst_vm_key,
                        const char *const *dst_disk_keys, const char *const *src_refs, size_t n)
{
	int rc = 0;
	char (*keys)[KEY_MAX] = NULL, *line = NULL;
	vms_vol_id *dst = NULL;
	size_t made = 0;
	keys = calloc(n + 1, sizeof(*keys));
	dst = calloc(n + 1, sizeof(*dst));
	line = malloc(LINE_MAX_LEN + 32);
	if (!keys || !dst || !line) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		vms_vol_id src;
		if ((rc = make_key(keys[i], dst_vm_key, '/', dst_disk_keys[i], "disk key")) < 0 ||
		    (rc = parse_ref(&src, src_refs[i])) < 0)
			goto out;
	}
	pthread_mutex_lock(&sr->lock);
	for (size_t i = 0; i < n; i++) {
		if (key_get(sr, keys[i])) {
			rc = vms_error_set(VMS_EEXISTS, "native SR %s: disk %s exists", sr->dir, keys[i]);
			goto done;
		}
	}
	for (made = 0; made < n; made++) {
		vms_vol_id src;
		parse_ref(&src, src_refs[made]);
		if ((rc = vms_vol_clone(&dst[made], sr->pool, src)) < 0)
			goto done;
	}
	if ((rc = commit(sr)) < 0)
		goto done;
	size_t len = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		int w = record(line + len, LINE_MAX_LEN + 32 - len, 'A', keys[i], &dst[i], 1);
		if (w < 0)
			rc = w;
		else
			len += (size_t)w;
	}
	if (rc == 0)
		rc = log_append(sr, line, len);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = map_add(sr, keys[i], &dst[i], 1);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = make_ref(&out_refs[i], dst[i]);
done:
	if (rc < 0) {
		for (size_t i = 0; i < made; i++) {
			vms_vol_delete(sr->pool, dst[i]);
			free(out_refs[i]);
			out_refs[i] = NULL;
		}
		if (made)
			vms_pool_commit(sr->pool);
	}
	pthread_mutex_unlock(&sr->lock);
out:
	free(keys);
	free(dst);
	free(line);
	return rc;
}

static int native_ref_space(vms_ref_space *out, vms_sr_handle *sr, const char *ref)
{
	int rc;
	vms_vol_id id;
	vms_vol_info vi;
	uint64_t unique;
	if ((rc = parse_ref(&id, ref)) < 0 || (rc = vol_info(&vi, sr->pool, id)) < 0)
		return rc;
	if ((rc = vms_vol_unique_bytes(&unique, sr->pool, id)) < 0)
		return rc;
	out->referenced = vi.referenced;
	out->unique = unique;
	out->written = vi.written;
	return 0;
}

/* ---- I/O ------------------------------------------------------------------------ */

static int native_disk_open(vms_disk **out, vms_sr_handle *sr, const char *ref, unsigned flags)
{
	int rc;
	vms_vol_id id;
	vms_vol_info vi;
	*out = NULL;
	if ((rc = parse_ref(&id, ref)) < 0 || (rc = vol_info(&vi, sr->pool, id)) < 0)
		return rc;
	native_disk *d = calloc(1, sizeof(*d));
	if (!d)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	d->pool = sr->pool;
	d->id = id;
	d->flags = flags | (vi.kind == VMS_VOL_SNAPSHOT ? VMS_DISK_READONLY : 0);
	*out = (vms_disk *)d;
	return 0;
}

static void native_disk_close(vms_disk *d)
{
	free(d);
}

static uint64_t native_disk_size(vms_disk *disk)
{
	native_disk *d = (native_disk *)disk;
	vms_vol_info vi;
	return vms_vol_info_get(&vi, d->pool, d->id) == 0 ? vi.size : 0;
}

static int native_disk_read(vms_disk *disk, void *buf, size_t len, uint64_t off)
{
	native_disk *d = (native_disk *)disk;
	return vms_vol_read(d->pool, d->id, buf, len, off);
}

static int writable(const native_disk *d)
{
	if (d->flags & VMS_DISK_READONLY)
		return vms_error_set(VMS_EROFS, "volume %" PRIu64 " is open read-only", d->id);
	return 0;
}

static int native_disk_write(vms_disk *disk, const void *buf, size_t len, uint64_t off, unsigned fua)
{
	native_disk *d = (native_disk *)disk;
	int rc = writable(d);
	return rc < 0 ? rc : vms_vol_write(d->pool, d->id, buf, len, off, fua ? VMS_IO_FUA : 0);
}

static int native_disk_flush(vms_disk *disk)
{
	native_disk *d = (native_disk *)disk;
	return vms_vol_flush(d->pool, d->id);
}

static int native_disk_trim(vms_disk *disk, uint64_t len, uint64_t off)
{
	native_disk *d = (native_disk *)disk;
	int rc = writable(d);
	return rc < 0 ? rc : vms_vol_trim(d->pool, d->id, len, off);
}

static int native_disk_zero(vms_disk *disk, uint64_t len, uint64_t off, unsigned fua)
{
	native_disk *d = (native_disk *)disk;
	int rc = writable(d);
	return rc < 0 ? rc : vms_vol_write_zeroes(d->pool, d->id, len, off, fua ? VMS_IO_FUA : 0);
}

static int native_disk_block_status(vms_disk *disk, uint64_t off, uint64_t len, vms_range_cb cb, void *ctx)
{
	native_disk *d = (native_disk *)disk;
	return vms_vol_block_status(d->pool, d->id, off, len, cb, ctx);
}

/* ---- health ---------------------------------------------------------------------- */

#define CHECK_LIST_MAX 1000

static int native_check(vms_sr_handle *sr, unsigned flags, char **out_report_json)
{
	int rc;
	vms_check_report rep;
	vms_pool_stats st;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	*out_report_json = NULL;
	memset(&rep, 0, sizeof(rep));
	rc = vms_pool_check(&rep, sr->pool, flags & (VMS_CHECK_DATA | VMS_CHECK_REPAIR));
	int crc = rc;
	if (rc < 0 && rc != VMS_ECORRUPT)
		return rc;
	if ((rc = vms_pool_stats_get(&st, sr->pool)) < 0)
		return rc;
	if (!(f = open_memstream(&buf, &len)))
		return vms_error_set(VMS_ENOMEM, "out of memory");
	fprintf(f, "{\"ok\":%s,\"nodes_checked\":%" PRIu64 ",\"data_checked\":%" PRIu64
	        ",\"leaked_blocks\":%" PRIu64 ",\"corrupt\":%" PRIu64 ",\"first_error\":\"",
	        crc == 0 ? "true" : "false", rep.nodes_checked, rep.data_checked, rep.leaked_blocks,
	        rep.corrupt);
	for (const char *p = rep.first_error; *p && p < rep.first_error + sizeof(rep.first_error); p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fputc('?', f);
		else
			fputc(c, f);
	}
	fprintf(f, "\",\"block_size\":%u,\"format_version\":%u,\"index\":\"%s\",\"total_blocks\":%" PRIu64
	        ",\"free_blocks\":%" PRIu64 ",\"volumes\":%" PRIu64 ",\"snapshots\":%" PRIu64
	        ",\"deleting\":%" PRIu64 ",\"disks\":[",
	        st.block_size, st.format_version, index_name(st.index), st.total_blocks, st.free_blocks,
	        st.volumes, st.snapshots, st.deleting);
	/* live volumes: disks listed by ref and key; volumes without a key
	 * (an interrupted create) listed as unkeyed */
	int64_t n = vms_vol_list(NULL, 0, sr->pool);
	vms_vol_id *ids = n > 0 ? malloc((size_t)n * sizeof(*ids)) : NULL;
	int64_t got = ids ? vms_vol_list(ids, (size_t)n, sr->pool) : 0;
	size_t ndisk = 0, nunkeyed = 0;
	pthread_mutex_lock(&sr->lock);
	for (int64_t i = 0; i < got && i < n; i++) {
		vms_vol_info vi;
		key_ent *e = key_of_id(sr, ids[i]);
		if (vms_vol_info_get(&vi, sr->pool, ids[i]) < 0 || vi.deleting || vi.kind != VMS_VOL_VOLUME)
			continue;
		if (ndisk++ < CHECK_LIST_MAX)
			fprintf(f, "%s{\"ref\":\"%" PRIu64 "\",\"key\":\"%s\"}", ndisk > 1 ? "," : "", ids[i],
			        e ? e->key : "");
	}
	fprintf(f, "],\"unkeyed\":[");
	for (int64_t i = 0; i < got && i < n; i++) {
		vms_vol_info vi;
		if (key_of_id(sr, ids[i]) || vms_vol_info_get(&vi, sr->pool, ids[i]) < 0 || vi.deleting)
			continue;
		if (nunkeyed++ < CHECK_LIST_MAX)
			fprintf(f, "%s\"%" PRIu64 "\"", nunkeyed > 1 ? "," : "", ids[i]);
	}
	pthread_mutex_unlock(&sr->lock);
	vms_error_clear();
	fprintf(f, "],\"disk_count\":%zu,\"unkeyed_count\":%zu}", ndisk, nunkeyed);
	free(ids);
	if (fclose(f) != 0 || !buf) {
		free(buf);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	*out_report_json = buf;
	if (crc < 0)
		return vms_error_set(VMS_ECORRUPT, "native SR %s: %s", sr->dir,
		                     rep.first_error[0] ? rep.first_error : "pool check found corruption");
	return 0;
}

/* ---- enumerate --------------------------------------------------------------- */

/* Every live volume: writable ones as "disk", snapshots as "snapshot_disk",
 * with the keys the key map gives them ("<vm>/<disk>" or "<vm>@<snap>"). */
static int native_enumerate(vms_sr_handle *sr, unsigned flags, char **out_json)
{
	int rc = 0;
	vms_json *root = vms_json_new_object(), *arr = vms_json_new_array();
	vms_vol_id *ids = NULL;
	(void)flags;
	*out_json = NULL;
	if (!root || !arr) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto done;
	}
	pthread_mutex_lock(&sr->lock);
	int64_t n = vms_vol_list(NULL, 0, sr->pool), got = 0;
	if (n < 0) {
		rc = (int)n;
		goto unlock;
	}
	if (n > 0 && !(ids = malloc((size_t)n * sizeof(*ids)))) {
		rc = vms_error_set(VMS_ENOMEM, "out of memory");
		goto unlock;
	}
	if (n > 0 && (got = vms_vol_list(ids, (size_t)n, sr->pool)) < 0) {
		rc = (int)got;
		goto unlock;
	}
	for (int64_t i = 0; i < got && i < n && rc == 0; i++) {
		vms_vol_info vi;
		char ref[24], name[48];
		vms_json *o;
		if (vms_vol_info_get(&vi, sr->pool, ids[i]) < 0 || vi.deleting) {
			vms_error_clear();
			continue;
		}
		key_ent *e = key_of_id(sr, ids[i]);
		snprintf(ref, sizeof(ref), "%" PRIu64, ids[i]);
		snprintf(name, sizeof(name), "volume %" PRIu64, ids[i]);
		if (!(o = vms_json_new_object())) {
			rc = vms_error_set(VMS_ENOMEM, "out of memory");
			break;
		}
		rc = vms_json_object_set_string(o, "kind", vi.kind == VMS_VOL_SNAPSHOT ? "snapshot_disk" : "disk");
		if (rc == 0)
			rc = vms_json_object_set_string(o, "ref", ref);
		if (rc == 0 && e) {
			char vm[KEY_MAX];
			size_t l = strcspn(e->key, "/@");
			snprintf(vm, sizeof(vm), "%.*s", (int)l, e->key);
			rc = vms_json_object_set_string(o, "vm", vm);
			if (rc == 0 && e->key[l])
				rc = vms_json_object_set_string(o, e->key[l] == '@' ? "snapshot" : "disk", e->key + l + 1);
		}
		if (rc == 0)
			rc = vms_json_object_set_string(o, "name", name);
		if (rc == 0)
			rc = vms_json_object_set_int(o, "size", (int64_t)vi.size);
		if (rc == 0)
			rc = vms_json_object_set_int(o, "referenced", (int64_t)vi.referenced);
		if (rc == 0)
			rc = vms_json_array_append(arr, o);
		else
			vms_json_free(o);
	}
unlock:
	pthread_mutex_unlock(&sr->lock);
	if (rc < 0)
		goto done;
	if ((rc = vms_json_object_set(root, "objects", arr)) < 0) {
		arr = NULL;
		goto done;
	}
	arr = NULL;
	rc = vms_json_serialize(out_json, root, 0);
done:
	free(ids);
	vms_json_free(arr);
	vms_json_free(root);
	return rc;
}

const vms_backend vms_backend_native = {
	.size = sizeof(vms_backend),
	.type = "native",
	.caps = VMS_CAP_SNAPSHOT | VMS_CAP_CLONE | VMS_CAP_ROLLBACK_ANY | VMS_CAP_ATOMIC_MULTI |
	        VMS_CAP_TRIM | VMS_CAP_BLOCK_STATUS | VMS_CAP_UNIQUE_BYTES | VMS_CAP_CHECK | VMS_CAP_RESIZE,
	.sr_create = native_sr_create,
	.sr_open = native_sr_open,
	.sr_close = native_sr_close,
	.sr_destroy = native_sr_destroy,
	.sr_space = native_sr_space,
	.disk_create = native_disk_create,
	.disk_delete = native_disk_delete,
	.disk_resize = native_disk_resize,
	.snapshot_create = native_snapshot_create,
	.snapshot_delete = native_snapshot_delete,
	.rollback = native_rollback,
	.clone = native_clone,
	.ref_space = native_ref_space,
	.disk_open = native_disk_open,
	.disk_close = native_disk_close,
	.disk_size = native_disk_size,
	.disk_read = native_disk_read,
	.disk_write = native_disk_write,
	.disk_flush = native_disk_flush,
	.disk_trim = native_disk_trim,
	.disk_zero = native_disk_zero,
	.disk_block_status = native_disk_block_status,
	.check = native_check,
	.enumerate = native_enumerate,
	.sr_open_readonly = native_sr_open_readonly,
	.sr_properties = native_sr_properties,
};
