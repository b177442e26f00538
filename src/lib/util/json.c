/*
 * A small JSON value tree (see include/vmsnap/json.h).
 *
 * Design: a recursive-descent parser over a bounded buffer.  Every read of
 * the input goes through the cursor (pos < len checks), recursion depth is
 * counted and capped, container sizes are capped, and a failed parse frees
 * everything it built.  Objects are arrays of (key, value) pairs kept in
 * insertion order, so output is deterministic and lookups are linear; the
 * objects we handle (requests, result records) have tens of members, while
 * long lists are arrays.
 *
 * Invariants: a string value is always NUL-terminated at s[len]; a parsed
 * tree holds only valid UTF-8; is_int numbers keep the exact int64.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/json.h"

#define DEFAULT_MAX_BYTES   (16u << 20)
#define DEFAULT_MAX_DEPTH   64u
#define DEFAULT_MAX_MEMBERS 1000000u

struct member {
	char *key;
	vms_json *val;
};

struct vms_json {
	vms_json_type type;
	union {
		int b;
		struct {
			int is_int;
			int64_t i;
			double d;
		} num;
		struct {
			char *s;
			size_t len;
		} str;
		struct {
			vms_json **items;
			size_t len, cap;
		} arr;
		struct {
			struct member *items;
			size_t len, cap;
		} obj;
	} u;
};

/* ---- build -------------------------------------------------------------- */

static vms_json *alloc_value(vms_json_type t)
{
	vms_json *v = calloc(1, sizeof(*v));
	if (!v) {
		vms_error_set(VMS_ENOMEM, "out of memory");
		return NULL;
	}
	v->type = t;
	return v;
}

vms_json *vms_json_new_null(void) { return alloc_value(VMS_JSON_NULL); }

vms_json *vms_json_new_bool(int b)
{
	vms_json *v = alloc_value(VMS_JSON_BOOL);
	if (v)
		v->u.b = b ? 1 : 0;
	return v;
}

vms_json *vms_json_new_int(int64_t i)
{
	vms_json *v = alloc_value(VMS_JSON_NUMBER);
	if (v) {
		v->u.num.is_int = 1;
		v->u.num.i = i;
		v->u.num.d = (double)i;
	}
	return v;
}

vms_json *vms_json_new_double(double d)
{
	vms_json *v = alloc_value(VMS_JSON_NUMBER);
	if (v)
		v->u.num.d = d;
	return v;
}

vms_json *vms_json_new_stringn(const char *s, size_t n)
{
	vms_json *v = alloc_value(VMS_JSON_STRING);
	if (!v)
		return NULL;
	v->u.str.s = malloc(n + 1);
	if (!v->u.str.s) {
		free(v);
		vms_error_set(VMS_ENOMEM, "out of memory");
		return NULL;
	}
	if (n)
		memcpy(v->u.str.s, s, n);
	v->u.str.s[n] = 0;
	v->u.str.len = n;
	return v;
}

vms_json *vms_json_new_string(const char *s)
{
	if (!s)
		return vms_json_new_null();
	return vms_json_new_stringn(s, strlen(s));
}

vms_json *vms_json_new_array(void) { return alloc_value(VMS_JSON_ARRAY); }
vms_json *vms_json_new_object(void) { return alloc_value(VMS_JSON_OBJECT); }

void vms_json_free(vms_json *v)
{
	if (!v)
		return;
	switch (v->type) {
	case VMS_JSON_STRING:
		free(v->u.str.s);
		break;
	case VMS_JSON_ARRAY:
		for (size_t i = 0; i < v->u.arr.len; i++)
			vms_json_free(v->u.arr.items[i]);
		free(v->u.arr.items);
		break;
	case VMS_JSON_OBJECT:
		for (size_t i = 0; i < v->u.obj.len; i++) {
			free(v->u.obj.items[i].key);
			vms_json_free(v->u.obj.items[i].val);
		}
		free(v->u.obj.items);
		break;
	default:
		break;
	}
	free(v);
}

static int grow(void **items, size_t *cap, size_t len, size_t elem)
{
	if (len < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 4;
	if (ncap > SIZE_MAX / elem)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	void *n = realloc(*items, ncap * elem);
	if (!n)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	*items = n;
	*cap = ncap;
	return 0;
}

int vms_json_array_append(vms_json *arr, vms_json *val)
{
	if (!val)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if (!arr || arr->type != VMS_JSON_ARRAY) {
		vms_json_free(val);
		return vms_error_set(VMS_EINVAL, "JSON: append to a non-array");
	}
	void *items = arr->u.arr.items;
	int rc = grow(&items, &arr->u.arr.cap, arr->u.arr.len, sizeof(vms_json *));
	arr->u.arr.items = items;
	if (rc < 0) {
		vms_json_free(val);
		return rc;
	}
	arr->u.arr.items[arr->u.arr.len++] = val;
	return 0;
}

static struct member *find_member(const vms_json *obj, const char *key)
{
	if (!obj || obj->type != VMS_JSON_OBJECT || !key)
		return NULL;
	for (size_t i = 0; i < obj->u.obj.len; i++)
		if (strcmp(obj->u.obj.items[i].key, key) == 0)
			return &obj->u.obj.items[i];
	return NULL;
}

int vms_json_object_set(vms_json *obj, const char *key, vms_json *val)
{
	if (!val)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	if (!obj || obj->type != VMS_JSON_OBJECT || !key) {
		vms_json_free(val);
		return vms_error_set(VMS_EINVAL, "JSON: set on a non-object");
	}
	struct member *m = find_member(obj, key);
	if (m) {
		vms_json_free(m->val);
		m->val = val;
		return 0;
	}
	char *k = strdup(key);
	if (!k) {
		vms_json_free(val);
		return vms_error_set(VMS_ENOMEM, "out of memory");
	}
	void *items = obj->u.obj.items;
	int rc = grow(&items, &obj->u.obj.cap, obj->u.obj.len, sizeof(struct member));
	obj->u.obj.items = items;
	if (rc < 0) {
		free(k);
		vms_json_free(val);
		return rc;
	}
	obj->u.obj.items[obj->u.obj.len].key = k;
	obj->u.obj.items[obj->u.obj.len].val = val;
	obj->u.obj.len++;
	return 0;
}

int vms_json_object_set_string(vms_json *obj, const char *key, const char *s)
{
	return vms_json_object_set(obj, key, vms_json_new_string(s));
}

int vms_json_object_set_int(vms_json *obj, const char *key, int64_t i)
{
	return vms_json_object_set(obj, key, vms_json_new_int(i));
}

int vms_json_object_set_bool(vms_json *obj, const char *key, int b)
{
	return vms_json_object_set(obj, key, vms_json_new_bool(b));
}

int vms_json_object_remove(vms_json *obj, const char *key)
{
	struct member *m = find_member(obj, key);
	if (!m)
		return 0;
	size_t i = (size_t)(m - obj->u.obj.items);
	free(m->key);
	vms_json_free(m->val);
	memmove(&obj->u.obj.items[i], &obj->u.obj.items[i + 1],
	        (obj->u.obj.len - i - 1) * sizeof(struct member));
	obj->u.obj.len--;
	return 1;
}

vms_json *vms_json_copy(const vms_json *v)
{
	if (!v)
		return NULL;
	vms_json *c = NULL;
	switch (v->type) {
	case VMS_JSON_NULL:
		return vms_json_new_null();
	case VMS_JSON_BOOL:
		return vms_json_new_bool(v->u.b);
	case VMS_JSON_NUMBER:
		c = alloc_value(VMS_JSON_NUMBER);
		if (c)
			c->u.num = v->u.num;
		return c;
	case VMS_JSON_STRING:
		return vms_json_new_stringn(v->u.str.s, v->u.str.len);
	case VMS_JSON_ARRAY:
		c = vms_json_new_array();
		for (size_t i = 0; c && i < v->u.arr.len; i++)
			if (vms_json_array_append(c, vms_json_copy(v->u.arr.items[i])) < 0) {
				vms_json_free(c);
				return NULL;
			}
		return c;
	case VMS_JSON_OBJECT:
		c = vms_json_new_object();
		for (size_t i = 0; c && i < v->u.obj.len; i++)
			if (vms_json_object_set(c, v->u.obj.items[i].key,
			                        vms_json_copy(v->u.obj.items[i].val)) < 0) {
				vms_json_free(c);
				return NULL;
			}
		return c;
	}
	return NULL;
}

/* ---- inspect ------------------------------------------------------------ */

vms_json_type vms_json_type_of(const vms_json *v) { return v ? v->type : VMS_JSON_NULL; }

const char *vms_json_type_name(vms_json_type t)
{
	switch (t) {
	case VMS_JSON_NULL: return "null";
	case VMS_JSON_BOOL: return "boolean";
	case VMS_JSON_NUMBER: return "number";
	case VMS_JSON_STRING: return "string";
	case VMS_JSON_ARRAY: return "array";
	case VMS_JSON_OBJECT: return "object";
	}
	return "?";
}

const vms_json *vms_json_object_get(const vms_json *obj, const char *key)
{
	struct member *m = find_member(obj, key);
	return m ? m->val : NULL;
}

size_t vms_json_object_len(const vms_json *obj)
{
	return obj && obj->type == VMS_JSON_OBJECT ? obj->u.obj.len : 0;
}

const char *vms_json_object_key_at(const vms_json *obj, size_t i)
{
	return i < vms_json_object_len(obj) ? obj->u.obj.items[i].key : NULL;
}

const vms_json *vms_json_object_value_at(const vms_json *obj, size_t i)
{
	return i < vms_json_object_len(obj) ? obj->u.obj.items[i].val : NULL;
}

size_t vms_json_array_len(const vms_json *arr)
{
	return arr && arr->type == VMS_JSON_ARRAY ? arr->u.arr.len : 0;
}

const vms_json *vms_json_array_get(const vms_json *arr, size_t i)
{
	return i < vms_json_array_len(arr) ? arr->u.arr.items[i] : NULL;
}

const char *vms_json_string(const vms_json *v)
{
	return v && v->type == VMS_JSON_STRING ? v->u.str.s : NULL;
}

size_t vms_json_string_len(const vms_json *v)
{
	return v && v->type == VMS_JSON_STRING ? v->u.str.len : 0;
}

int vms_json_bool(const vms_json *v) { return v && v->type == VMS_JSON_BOOL ? v->u.b : 0; }

double vms_json_double(const vms_json *v)
{
	return v && v->type == VMS_JSON_NUMBER ? v->u.num.d : 0.0;
}

int vms_json_is_int(const vms_json *v, int64_t *out)
{
	if (!v || v->type != VMS_JSON_NUMBER)
		return 0;
	if (v->u.num.is_int) {
		if (out)
			*out = v->u.num.i;
		return 1;
	}
	double d = v->u.num.d;
	/* 2^63 is exactly representable; the range check excludes it. */
	if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
		return 0;
	if (out)
		*out = (int64_t)d;
	return 1;
}

/* ---- typed member access ---------------------------------------------- */

static const vms_json *arg_lookup(int *rc, const vms_json *obj, const char *key, int required)
{
	const vms_json *v = vms_json_object_get(obj, key);
	*rc = 0;
	if (!v || v->type == VMS_JSON_NULL) {
		if (required)
			*rc = vms_error_set(VMS_EINVAL, "missing argument '%s'", key);
		return NULL;
	}
	return v;
}

int vms_json_get_string(const char **out, const vms_json *obj, const char *key, int required)
{
	int rc;
	const vms_json *v = arg_lookup(&rc, obj, key, required);
	if (!v)
		return rc;
	if (v->type != VMS_JSON_STRING)
		return vms_error_set(VMS_EINVAL, "argument '%s' must be a string, not %s", key,
		                     vms_json_type_name(v->type));
	if (strlen(v->u.str.s) != v->u.str.len)
		return vms_error_set(VMS_EINVAL, "argument '%s' contains a NUL character", key);
	*out = v->u.str.s;
	return 0;
}

int vms_json_get_int(int64_t *out, const vms_json *obj, const char *key, int required)
{
	int rc;
	const vms_json *v = arg_lookup(&rc, obj, key, required);
	if (!v)
		return rc;
	if (!vms_json_is_int(v, out))
		return vms_error_set(VMS_EINVAL, "argument '%s' must be an integer", key);
	return 0;
}

int vms_json_get_size(uint64_t *out, const vms_json *obj, const char *key, int required)
{
	int rc;
	const vms_json *v = arg_lookup(&rc, obj, key, required);
	if (!v)
		return rc;
	int64_t i;
	if (v->type == VMS_JSON_STRING) {
		if ((rc = vms_parse_size(out, v->u.str.s)) < 0)
			return vms_error_wrap(rc, "argument '%s'", key);
		return 0;
	}
	if (!vms_json_is_int(v, &i) || i < 0)
		return vms_error_set(VMS_EINVAL, "argument '%s' must be a size in bytes (a non-negative "
		                     "integer or a string such as \"4G\")", key);
	*out = (uint64_t)i;
	return 0;
}

int vms_json_get_bool(int *out, const vms_json *obj, const char *key, int required)
{
	int rc;
	const vms_json *v = arg_lookup(&rc, obj, key, required);
	if (!v)
		return rc;
	if (v->type != VMS_JSON_BOOL)
		return vms_error_set(VMS_EINVAL, "argument '%s' must be true or false", key);
	*out = v->u.b;
	return 0;
}

int vms_parse_size(uint64_t *out, const char *s)
{
	if (!s || !*s)
		return vms_error_set(VMS_EINVAL, "empty size");
	const char *p = s;
	uint64_t whole = 0;
	int digits = 0;
	while (*p >= '0' && *p <= '9') {
		unsigned d = (unsigned)(*p - '0');
		if (whole > (UINT64_MAX - d) / 10)
			return vms_error_set(VMS_EINVAL, "size '%s' is too large", s);
		whole = whole * 10 + d;
		p++;
		digits++;
	}
	/* Up to 9 fractional digits, kept as an exact fraction num/den. */
	uint64_t frac = 0, den = 1;
	if (*p == '.') {
		p++;
		int fd = 0;
		while (*p >= '0' && *p <= '9') {
			if (fd < 9) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				den *= 10;
			}
			fd++;
			p++;
		}
		if (!fd)
			return vms_error_set(VMS_EINVAL, "size '%s': digits expected after '.'", s);
		digits += fd;
	}
	if (!digits)
		return vms_error_set(VMS_EINVAL, "size '%s' must start with a number", s);
	unsigned shift = 0;
	switch (*p) {
	case 'k': case 'K': shift = 10; p++; break;
	case 'm': case 'M': shift = 20; p++; break;
	case 'g': case 'G': shift = 30; p++; break;
	case 't': case 'T': shift = 40; p++; break;
	case 'p': case 'P': shift = 50; p++; break;
	case 'b': case 'B': if (p[1] == 0) p++; break;
	default: break;
	}
	if (shift) {
		if (p[0] == 'i' && (p[1] == 'B' || p[1] == 'b'))
			p += 2;
		else if (p[0] == 'B' || p[0] == 'b')
			p++;
	}
	if (*p)
		return vms_error_set(VMS_EINVAL, "size '%s': unknown unit (use K, M, G, T or P)", s);
	if (shift == 0 && frac)
		return vms_error_set(VMS_EINVAL, "size '%s': a byte count must be whole", s);
	if (whole > (UINT64_MAX >> shift))
		return vms_error_set(VMS_EINVAL, "size '%s' is too large", s);
	uint64_t bytes = whole << shift;
	if (frac) {
		/* frac/den * 2^shift, exact when it divides; truncated otherwise. */
		unsigned __int128 f = ((unsigned __int128)frac << shift) / den;
		if (f > UINT64_MAX - bytes)
			return vms_error_set(VMS_EINVAL, "size '%s' is too large", s);
		bytes += (uint64_t)f;
	}
	*out = bytes;
	return 0;
}

/* ---- parse -------------------------------------------------------------- */

struct parser {
	const unsigned char *p;
	size_t len, pos;
	unsigned depth, max_depth;
	size_t max_members;
};

static int perr(struct parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(struct parser *ps, const char *fmt, ...)
{
	/* Report line and column of the cursor (1-based, columns in bytes). */
	size_t line = 1, col = 1;
	for (size_t i = 0; i < ps->pos && i < ps->len; i++) {
		if (ps->p[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vms_error_set(VMS_EINVAL, "JSON line %zu column %zu: %s", line, col, msg);
}

static void skip_ws(struct parser *ps)
{
	while (ps->pos < ps->len) {
		unsigned char c = ps->p[ps->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		ps->pos++;
	}
}

static int literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);
	if (ps->len - ps->pos < n || memcmp(ps->p + ps->pos, word, n) != 0)
		return 0;
	ps->pos += n;
	return 1;
}

/* Length of a valid UTF-8 sequence at s (max n bytes), 0 if invalid
 * (overlong forms, surrogates and code points past U+10FFFF refused). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF) {
		if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
			return 0;
		if (c == 0xE0 && s[1] < 0xA0)
			return 0;
		if (c == 0xED && s[1] >= 0xA0)
			return 0;
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
			return 0;
		if (c == 0xF0 && s[1] < 0x90)
			return 0;
		if (c == 0xF4 && s[1] >= 0x90)
			return 0;
		return 4;
	}
	return 0;
}

static size_t utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static int hex4(struct parser *ps, uint32_t *out)
{
	if (ps->len - ps->pos < 4)
		return perr(ps, "truncated \\u escape");
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = ps->p[ps->pos + (size_t)i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return perr(ps, "bad hex digit in \\u escape");
	}
	ps->pos += 4;
	*out = v;
	return 0;
}

/* Parse a string starting at the opening quote into a malloc'd buffer. */
static int parse_string_raw(struct parser *ps, char **out, size_t *out_len)
{
	ps->pos++; /* opening quote */
	/* The decoded string is never longer than its source. */
	size_t start = ps->pos, end = start;
	while (end < ps->len && ps->p[end] != '"') {
		if (ps->p[end] == '\\')
			end++;
		end++;
	}
	if (end >= ps->len)
		return perr(ps, "unterminated string");
	char *buf = malloc(end - start + 1);
	if (!buf)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	size_t o = 0;
	int rc = 0;
	while (ps->pos < ps->len) {
		unsigned char c = ps->p[ps->pos];
		if (c == '"') {
			ps->pos++;
			buf[o] = 0;
			*out = buf;
			*out_len = o;
			return 0;
		}
		if (c < 0x20) {
			rc = perr(ps, "control character 0x%02x in string (must be escaped)", c);
			goto fail;
		}
		if (c == '\\') {
			ps->pos++;
			if (ps->pos >= ps->len)
				break;
			c = ps->p[ps->pos++];
			switch (c) {
			case '"': buf[o++] = '"'; break;
			case '\\': buf[o++] = '\\'; break;
			case '/': buf[o++] = '/'; break;
			case 'b': buf[o++] = '\b'; break;
			case 'f': buf[o++] = '\f'; break;
			case 'n': buf[o++] = '\n'; break;
			case 'r': buf[o++] = '\r'; break;
			case 't': buf[o++] = '\t'; break;
			case 'u': {
				uint32_t cp, lo;
				if ((rc = hex4(ps, &cp)) < 0)
					goto fail;
				if (cp >= 0xDC00 && cp <= 0xDFFF) {
					rc = perr(ps, "unpaired low surrogate in \\u escape");
					goto fail;
				}
				if (cp >= 0xD800 && cp <= 0xDBFF) {
					if (ps->len - ps->pos < 2 || ps->p[ps->pos] != '\\' ||
					    ps->p[ps->pos + 1] != 'u') {
						rc = perr(ps, "unpaired high surrogate in \\u escape");
						goto fail;
					}
					ps->pos += 2;
					if ((rc = hex4(ps, &lo)) < 0)
						goto fail;
					if (lo < 0xDC00 || lo > 0xDFFF) {
						rc = perr(ps, "bad low surrogate in \\u escape");
						goto fail;
					}
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				}
				/* \uXXXX is 6 source bytes, at most 4 decoded (and a
				 * pair is 12 -> 4), so buf cannot overflow. */
				o += utf8_put(buf + o, cp);
				break;
			}
			default:
				ps->pos--;
				rc = perr(ps, "invalid escape '\\%c'", c >= 0x20 && c < 0x7f ? c : '?');
				goto fail;
			}
			continue;
		}
		size_t n = utf8_seq(ps->p + ps->pos, ps->len - ps->pos);
		if (!n) {
			rc = perr(ps, "invalid UTF-8 in string");
			goto fail;
		}
		memcpy(buf + o, ps->p + ps->pos, n);
		o += n;
		ps->pos += n;
	}
	rc = perr(ps, "unterminated string");
fail:
	free(buf);
	return rc;
}

static int parse_number(struct parser *ps, vms_json **out)
{
	size_t start = ps->pos;
	const unsigned char *p = ps->p;
	size_t i = ps->pos;
	int is_int = 1;
	if (i < ps->len && p[i] == '-')
		i++;
	if (i >= ps->len || !(p[i] >= '0' && p[i] <= '9'))
		return perr(ps, "invalid number");
	if (p[i] == '0') {
		i++;
		if (i < ps->len && p[i] >= '0' && p[i] <= '9')
			return perr(ps, "leading zeros are not allowed in numbers");
	} else {
		while (i < ps->len && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	if (i < ps->len && p[i] == '.') {
		is_int = 0;
		i++;
		if (i >= ps->len || !(p[i] >= '0' && p[i] <= '9')) {
			ps->pos = i;
			return perr(ps, "digits expected after decimal point");
		}
		while (i < ps->len && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	if (i < ps->len && (p[i] == 'e' || p[i] == 'E')) {
		is_int = 0;
		i++;
		if (i < ps->len && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= ps->len || !(p[i] >= '0' && p[i] <= '9')) {
			ps->pos = i;
			return perr(ps, "digits expected in exponent");
		}
		while (i < ps->len && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	size_t n = i - start;
	char tmp[64];
	char *num = n < sizeof(tmp) ? tmp : malloc(n + 1);
	if (!num)
		return vms_error_set(VMS_ENOMEM, "out of memory");
	memcpy(num, p + start, n);
	num[n] = 0;
	vms_json *v = alloc_value(VMS_JSON_NUMBER);
	if (!v) {
		if (num != tmp)
			free(num);
		return VMS_ENOMEM;
	}
	if (is_int) {
		errno = 0;
		long long ll = strtoll(num, NULL, 10);
		if (errno == ERANGE) {
			is_int = 0;
		} else {
			v->u.num.is_int = 1;
			v->u.num.i = ll;
			v->u.num.d = (double)ll;
		}
	}
	if (!is_int) {
		double d = strtod(num, NULL);
		if (!isfinite(d)) {
			if (num != tmp)
				free(num);
			free(v);
			return perr(ps, "number out of range");
		}
		v->u.num.d = d;
	}
	if (num != tmp)
		free(num);
	ps->pos = i;
	*out = v;
	return 0;
}

static int parse_value(struct parser *ps, vms_json **out);

static int parse_array(struct parser *ps, vms_json **out)
{
	int rc;
	vms_json *arr = vms_json_new_array();
	if (!arr)
		return VMS_ENOMEM;
	ps->pos++; /* [ */
	skip_ws(ps);
	if (ps->pos < ps->len && ps->p[ps->pos] == ']') {
		ps->pos++;
		*out = arr;
		return 0;
	}
	for (;;) {
		vms_json *item = NULL;
		if (arr->u.arr.len >= ps->max_members) {
			rc = perr(ps, "array has more than %zu elements", ps->max_members);
			goto fail;
		}
		if ((rc = parse_value(ps, &item)) < 0)
			goto fail;
		if ((rc = vms_json_array_append(arr, item)) < 0)
			goto fail;
		skip_ws(ps);
		if (ps->pos >= ps->len) {
			rc = perr(ps, "unterminated array");
			goto fail;
		}
		if (ps->p[ps->pos] == ',') {
			ps->pos++;
			continue;
		}
		if (ps->p[ps->pos] == ']') {
			ps->pos++;
			*out = arr;
			return 0;
		}
		rc = perr(ps, "expected ',' or ']' in array");
		goto fail;
	}
fail:
	vms_json_free(arr);
	return rc;
}

static int parse_object(struct parser *ps, vms_json **out)
{
	int rc;
	vms_json *obj = vms_json_new_object();
	if (!obj)
		return VMS_ENOMEM;
	ps->pos++; /* { */
	skip_ws(ps);
	if (ps->pos < ps->len && ps->p[ps->pos] == '}') {
		ps->pos++;
		*out = obj;
		return 0;
	}
	for (;;) {
		char *key = NULL;
		size_t klen = 0;
		vms_json *val = NULL;
		skip_ws(ps);
		if (ps->pos >= ps->len || ps->p[ps->pos] != '"') {
			rc = perr(ps, "expected a string key in object");
			goto fail;
		}
		if (obj->u.obj.len >= ps->max_members) {
			rc = perr(ps, "object has more than %zu members", ps->max_members);
			goto fail;
		}
		size_t key_pos = ps->pos;
		if ((rc = parse_string_raw(ps, &key, &klen)) < 0)
			goto fail;
		if (strlen(key) != klen) {
			ps->pos = key_pos;
			free(key);
			rc = perr(ps, "object key contains a NUL character");
			goto fail;
		}
		if (find_member(obj, key)) {
			ps->pos = key_pos;
			rc = perr(ps, "duplicate key \"%.64s\"", key);
			free(key);
			goto fail;
		}
		skip_ws(ps);
		if (ps->pos >= ps->len || ps->p[ps->pos] != ':') {
			free(key);
			rc = perr(ps, "expected ':' after key");
			goto fail;
		}
		ps->pos++;
		if ((rc = parse_value(ps, &val)) < 0) {
			free(key);
			goto fail;
		}
		/* Append without the duplicate scan object_set would repeat. */
		void *items = obj->u.obj.items;
		rc = grow(&items, &obj->u.obj.cap, obj->u.obj.len, sizeof(struct member));
		obj->u.obj.items = items;
		if (rc < 0) {
			free(key);
			vms_json_free(val);
			goto fail;
		}
		obj->u.obj.items[obj->u.obj.len].key = key;
		obj->u.obj.items[obj->u.obj.len].val = val;
		obj->u.obj.len++;
		skip_ws(ps);
		if (ps->pos >= ps->len) {
			rc = perr(ps, "unterminated object");
			goto fail;
		}
		if (ps->p[ps->pos] == ',') {
			ps->pos++;
			continue;
		}
		if (ps->p[ps->pos] == '}') {
			ps->pos++;
			*out = obj;
			return 0;
		}
		rc = perr(ps, "expected ',' or '}' in object");
		goto fail;
	}
fail:
	vms_json_free(obj);
	return rc;
}

static int parse_value(struct parser *ps, vms_json **out)
{
	int rc;
	skip_ws(ps);
	if (ps->pos >= ps->len)
		return perr(ps, "unexpected end of input, expected a value");
	unsigned char c = ps->p[ps->pos];
	switch (c) {
	case '{':
	case '[':
		if (ps->depth >= ps->max_depth)
			return perr(ps, "nesting deeper than %u levels", ps->max_depth);
		ps->depth++;
		rc = c == '{' ? parse_object(ps, out) : parse_array(ps, out);
		ps->depth--;
		return rc;
	case '"': {
		char *s;
		size_t n;
		if ((rc = parse_string_raw(ps, &s, &n)) < 0)
			return rc;
		vms_json *v = alloc_value(VMS_JSON_STRING);
		if (!v) {
			free(s);
			return VMS_ENOMEM;
		}
		v->u.str.s = s;
		v->u.str.len = n;
		*out = v;
		return 0;
	}
	case 't':
		if (literal(ps, "true"))
			return (*out = vms_json_new_bool(1)) ? 0 : VMS_ENOMEM;
		break;
	case 'f':
		if (literal(ps, "false"))
			return (*out = vms_json_new_bool(0)) ? 0 : VMS_ENOMEM;
		break;
	case 'n':
		if (literal(ps, "null"))
			return (*out = vms_json_new_null()) ? 0 : VMS_ENOMEM;
		break;
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return parse_number(ps, out);
		break;
	}
	if (c >= 0x20 && c < 0x7f)
		return perr(ps, "unexpected character '%c'", c);
	return perr(ps, "unexpected byte 0x%02x", c);
}

int vms_json_parse_ex(vms_json **out, const char *text, size_t len, const vms_json_limits *limits)
{
	struct parser ps = {0};
	size_t max_bytes = limits && limits->max_bytes ? limits->max_bytes : DEFAULT_MAX_BYTES;
	ps.max_depth = limits && limits->max_depth ? limits->max_depth : DEFAULT_MAX_DEPTH;
	ps.max_members = limits && limits->max_members ? limits->max_members : DEFAULT_MAX_MEMBERS;
	if (!out || (!text && len))
		return vms_error_set(VMS_EINVAL, "JSON: no input");
	if (len > max_bytes)
		return vms_error_set(VMS_EINVAL, "JSON input of %zu bytes exceeds the limit of %zu", len,
		                     max_bytes);
	ps.p = (const unsigned char *)text;
	ps.len = len;
	/* A UTF-8 byte order mark is not JSON (RFC 8259 section 8.1). */
	vms_json *v = NULL;
	int rc = parse_value(&ps, &v);
	if (rc < 0)
		return rc;
	skip_ws(&ps);
	if (ps.pos != ps.len) {
		vms_json_free(v);
		return perr(&ps, "unexpected data after the value");
	}
	*out = v;
	return 0;
}

int vms_json_parse(vms_json **out, const char *text, size_t len)
{
	return vms_json_parse_ex(out, text, len, NULL);
}

/* ---- serialize ---------------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t ncap = b->cap ? b->cap : 256;
		while (ncap < b->len + n + 1)
			ncap *= 2;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_string(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	put(b, "\"", 1);
	size_t i = 0, run = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[7];
		size_t seq = 1;
		if (c == '"')
			esc = "\\\"";
		else if (c == '\\')
			esc = "\\\\";
		else if (c == '\n')
			esc = "\\n";
		else if (c == '\r')
			esc = "\\r";
		else if (c == '\t')
			esc = "\\t";
		else if (c == '\b')
			esc = "\\b";
		else if (c == '\f')
			esc = "\\f";
		else if (c < 0x20 || c == 0x7f) {
			u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
			u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = 0;
			esc = u;
		} else if (c >= 0x80) {
			seq = utf8_seq((const unsigned char *)s + i, n - i);
			if (!seq) {
				esc = "\xEF\xBF\xBD"; /* U+FFFD */
				seq = 1;
			}
		}
		if (esc) {
			put(b, s + i - run, run);
			run = 0;
			puts_(b, esc);
			i += seq;
		} else {
			run += seq;
			i += seq;
		}
	}
	put(b, s + n - run, run);
	put(b, "\"", 1);
}

static void indent(struct buf *b, unsigned flags, unsigned level)
{
	if (!(flags & VMS_JSON_PRETTY))
		return;
	put(b, "\n", 1);
	for (unsigned i = 0; i < level; i++)
		put(b, "  ", 2);
}

static void emit(struct buf *b, const vms_json *v, unsigned flags, unsigned level)
{
	char tmp[64];
	switch (v ? v->type : VMS_JSON_NULL) {
	case VMS_JSON_NULL:
		puts_(b, "null");
		break;
	case VMS_JSON_BOOL:
		puts_(b, v->u.b ? "true" : "false");
		break;
	case VMS_JSON_NUMBER:
		if (v->u.num.is_int)
			snprintf(tmp, sizeof(tmp), "%lld", (long long)v->u.num.i);
		else if (!isfinite(v->u.num.d))
			snprintf(tmp, sizeof(tmp), "null");
		else if (v->u.num.d == 0)
			/* -0.0 would be written "-0" and read back as the
			 * integer 0: write what reading gives, so that
			 * serialising is a fixed point. */
			snprintf(tmp, sizeof(tmp), "0");
		else
			snprintf(tmp, sizeof(tmp), "%.17g", v->u.num.d);
		puts_(b, tmp);
		break;
	case VMS_JSON_STRING:
		put_string(b, v->u.str.s, v->u.str.len);
		break;
	case VMS_JSON_ARRAY:
		put(b, "[", 1);
		for (size_t i = 0; i < v->u.arr.len; i++) {
			if (i)
				put(b, ",", 1);
			indent(b, flags, level + 1);
			emit(b, v->u.arr.items[i], flags, level + 1);
		}
		if (v->u.arr.len)
			indent(b, flags, level);
		put(b, "]", 1);
		break;
	case VMS_JSON_OBJECT:
		put(b, "{", 1);
		for (size_t i = 0; i < v->u.obj.len; i++) {
			if (i)
				put(b, ",", 1);
			indent(b, flags, level + 1);
			put_string(b, v->u.obj.items[i].key, strlen(v->u.obj.items[i].key));
			put(b, flags & VMS_JSON_PRETTY ? ": " : ":", flags & VMS_JSON_PRETTY ? 2 : 1);
			emit(b, v->u.obj.items[i].val, flags, level + 1);
		}
		if (v->u.obj.len)
			indent(b, flags, level);
		put(b, "}", 1);
		break;
	}
}

int vms_json_serialize(char **out, const vms_json *v, unsigned flags)
{
	struct buf b = {0};
	emit(&b, v, flags, 0);
	if (b.oom || !b.p) {
		free(b.p);
		return vms_error_set(VMS_ENOMEM, "out of memory serializing JSON");
	}
	*out = b.p;
	return 0;
}
