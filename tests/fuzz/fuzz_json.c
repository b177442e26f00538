/*
 * fuzz_json.c - libFuzzer target for the JSON parser (src/lib/util/json.c),
 * which reads every control-socket request.
 *
 * Beyond "no crash, no sanitizer report, no hang":
 *   - a rejected input leaves *out NULL and sets an error message;
 *   - an accepted value serializes (compact) to one line: no raw newline or
 *     control byte, valid UTF-8;
 *   - that text parses again and serializes to the same bytes (round trip),
 *     also through the pretty form and through vms_json_copy();
 *   - the accessors walk the whole tree consistently (lengths, keys, types).
 * The first input byte picks the limits (depth, members), so the limit
 * paths are fuzzed too; the rest is the text.
 *
 * Build: tests/fuzz/run.sh (clang, -DVMS_FUZZ=ON); by hand:
 *   ./fuzz_json -max_total_time=60 tests/fuzz/corpus/fuzz_json
 */
#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmsnap/error.h"
#include "vmsnap/json.h"

static int valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			k = 1, cp = c & 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			k = 2, cp = c & 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			k = 3, cp = c & 0x07;
		} else {
			return 0;
		}
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += k + 1;
	}
	return 1;
}

static void walk(const vms_json *v, unsigned depth)
{
	assert(depth <= 1000);
	vms_json_type t = vms_json_type_of(v);
	assert(vms_json_type_name(t) != NULL);
	switch (t) {
	case VMS_JSON_OBJECT: {
		size_t n = vms_json_object_len(v);
		for (size_t i = 0; i < n; i++) {
			const char *k = vms_json_object_key_at(v, i);
			assert(k != NULL);
			assert(vms_json_object_value_at(v, i) != NULL);
			/* keys are unique (duplicates are refused or replaced): lookup finds one */
			assert(vms_json_object_get(v, k) != NULL);
			walk(vms_json_object_value_at(v, i), depth + 1);
		}
		assert(vms_json_object_key_at(v, n) == NULL);
		break;
	}
	case VMS_JSON_ARRAY: {
		size_t n = vms_json_array_len(v);
		for (size_t i = 0; i < n; i++) {
			assert(vms_json_array_get(v, i) != NULL);
			walk(vms_json_array_get(v, i), depth + 1);
		}
		assert(vms_json_array_get(v, n) == NULL);
		break;
	}
	case VMS_JSON_STRING:
		assert(vms_json_string(v) != NULL);
		assert(vms_json_string(v)[vms_json_string_len(v)] == '\0');
		break;
	case VMS_JSON_NUMBER: {
		int64_t i;
		(void)vms_json_is_int(v, &i);
		(void)vms_json_double(v);
		break;
	}
	default:
		break;
	}
}

static char *ser(const vms_json *v, unsigned flags)
{
	char *s = NULL;
	int rc = vms_json_serialize(&s, v, flags);
	assert(rc == 0 && s != NULL);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	vms_json_limits lim = {0};
	lim.max_depth = 1 + (data[0] & 0x3F);          /* 1..64 */
	lim.max_members = (data[0] & 0x40) ? 4 : 0;   /* tiny or the default */
	const char *text = (const char *)data + 1;
	size_t len = size - 1;

	vms_json *v = NULL;
	int rc = vms_json_parse_ex(&v, text, len, (data[0] & 0x80) ? NULL : &lim);
	if (rc < 0) {
		assert(v == NULL);
		assert(vms_error_last() != NULL && vms_error_last()[0] != '\0');
		return 0;
	}
	assert(rc == 0 && v != NULL);
	walk(v, 0);

	char *s1 = ser(v, 0);
	size_t n1 = strlen(s1);
	for (size_t i = 0; i < n1; i++)
		assert((unsigned char)s1[i] >= 0x20);   /* one line: no raw newline or control byte */
	assert(valid_utf8((const unsigned char *)s1, n1));

	vms_json *w = NULL;
	rc = vms_json_parse(&w, s1, n1);
	assert(rc == 0 && w != NULL);
	char *s2 = ser(w, 0);
	assert(strcmp(s1, s2) == 0);

	char *p = ser(v, VMS_JSON_PRETTY);
	vms_json *pv = NULL;
	rc = vms_json_parse(&pv, p, strlen(p));
	assert(rc == 0 && pv != NULL);
	char *s3 = ser(pv, 0);
	assert(strcmp(s1, s3) == 0);

	vms_json *c = vms_json_copy(v);
	assert(c != NULL);
	char *s4 = ser(c, 0);
	assert(strcmp(s1, s4) == 0);

	/* the size parser reads argument strings */
	if (vms_json_type_of(v) == VMS_JSON_STRING) {
		uint64_t sz;
		(void)vms_parse_size(&sz, vms_json_string(v));
	}

	free(s1);
	free(s2);
	free(p);
	free(s3);
	free(s4);
	vms_json_free(v);
	vms_json_free(w);
	vms_json_free(pv);
	vms_json_free(c);
	return 0;
}
