/* Unit tests for src/lib/util/json.c: strict parsing, limits, round trips. */
#undef NDEBUG
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmsnap/error.h"
#include "vmsnap/json.h"
#include "test.h"

static vms_json *parse(const char *s)
{
	vms_json *v = NULL;
	if (vms_json_parse(&v, s, strlen(s)) < 0)
		return NULL;
	return v;
}

static int rejects(const char *s, const char *msg_part)
{
	vms_json *v = NULL;
	int rc = vms_json_parse(&v, s, strlen(s));
	if (rc != VMS_EINVAL || v != NULL) {
		fprintf(stderr, "  accepted: %s\n", s);
		vms_json_free(v);
		return 0;
	}
	if (msg_part && !strstr(vms_error_last(), msg_part)) {
		fprintf(stderr, "  message for %s: %s\n", s, vms_error_last());
		return 0;
	}
	return 1;
}

static char *ser(const vms_json *v, unsigned flags)
{
	char *s = NULL;
	if (vms_json_serialize(&s, v, flags) < 0)
		return NULL;
	return s;
}

TEST(parse_scalars_and_containers)
{
	vms_json *v = parse(" {\"op\":\"vm.create\",\"args\":{\"name\":\"vm1\",\"size\":1073741824,"
	                    "\"neg\":-5,\"f\":1.5e3,\"t\":true,\"n\":null,\"a\":[1,\"x\",[]]}} ");
	REQUIRE(v);
	CHECK(vms_json_type_of(v) == VMS_JSON_OBJECT);
	CHECK(strcmp(vms_json_string(vms_json_object_get(v, "op")), "vm.create") == 0);
	const vms_json *args = vms_json_object_get(v, "args");
	int64_t i = 0;
	CHECK(vms_json_is_int(vms_json_object_get(args, "size"), &i) && i == 1073741824);
	CHECK(vms_json_is_int(vms_json_object_get(args, "neg"), &i) && i == -5);
	CHECK(vms_json_is_int(vms_json_object_get(args, "f"), &i) && i == 1500);
	CHECK(vms_json_bool(vms_json_object_get(args, "t")) == 1);
	CHECK(vms_json_type_of(vms_json_object_get(args, "n")) == VMS_JSON_NULL);
	const vms_json *a = vms_json_object_get(args, "a");
	CHECK(vms_json_array_len(a) == 3);
	CHECK(strcmp(vms_json_string(vms_json_array_get(a, 1)), "x") == 0);
	CHECK(vms_json_array_get(a, 3) == NULL);
	CHECK(vms_json_object_get(args, "missing") == NULL);
	vms_json_free(v);
}

TEST(int64_exact_and_overflow_to_double)
{
	vms_json *v = parse("[9223372036854775807,-9223372036854775808,9223372036854775808,0.5]");
	REQUIRE(v);
	int64_t i;
	CHECK(vms_json_is_int(vms_json_array_get(v, 0), &i) && i == INT64_MAX);
	CHECK(vms_json_is_int(vms_json_array_get(v, 1), &i) && i == INT64_MIN);
	CHECK(!vms_json_is_int(vms_json_array_get(v, 2), &i));
	CHECK(!vms_json_is_int(vms_json_array_get(v, 3), &i));
	char *s = ser(v, 0);
	CHECK(s && strncmp(s, "[9223372036854775807,-9223372036854775808,", 42) == 0);
	free(s);
	vms_json_free(v);
}

TEST(strings_escapes_and_unicode)
{
	vms_json *v = parse("\"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\ud83d\\ude00\\u0000z\"");
	REQUIRE(v);
	const char *s = vms_json_string(v);
	CHECK(vms_json_string_len(v) == strlen("a\"b\\c/d\n\t\xC3\xA9\xF0\x9F\x98\x80") + 2);
	CHECK(memcmp(s, "a\"b\\c/d\n\t\xC3\xA9\xF0\x9F\x98\x80\0z", vms_json_string_len(v)) == 0);
	/* get_string refuses embedded NULs (names must not be truncated silently) */
	vms_json *o = vms_json_new_object();
	vms_json_object_set(o, "k", vms_json_copy(v));
	const char *out = NULL;
	CHECK(vms_json_get_string(&out, o, "k", 1) == VMS_EINVAL);
	char *txt = ser(v, 0);
	REQUIRE(txt);
	CHECK(strcmp(txt, "\"a\\\"b\\\\c/d\\n\\t\xC3\xA9\xF0\x9F\x98\x80\\u0000z\"") == 0);
	vms_json *back = parse(txt);
	CHECK(back && vms_json_string_len(back) == vms_json_string_len(v) &&
	      memcmp(vms_json_string(back), s, vms_json_string_len(v)) == 0);
	vms_json_free(back);
	free(txt);
	vms_json_free(o);
	vms_json_free(v);
}

TEST(serializer_repairs_invalid_utf8_in_built_strings)
{
	vms_json *v = vms_json_new_string("ok\xff\xc3(");
	char *s = ser(v, 0);
	CHECK(s && strcmp(s, "\"ok\xEF\xBF\xBD\xEF\xBF\xBD(\"") == 0);
	vms_json *back = parse(s);
	CHECK(back != NULL);
	vms_json_free(back);
	free(s);
	vms_json_free(v);
}

TEST(rejects_malformed_input_with_position)
{
	CHECK(rejects("", "end of input"));
	CHECK(rejects("   ", "end of input"));
	CHECK(rejects("{", NULL));
	CHECK(rejects("[1,]", NULL));
	CHECK(rejects("{\"a\":1,}", "string key"));
	CHECK(rejects("{\"a\" 1}", "expected ':'"));
	CHECK(rejects("{\"a\":1 \"b\":2}", "expected ','"));
	CHECK(rejects("{\"a\":1,\"a\":2}", "duplicate key"));
	CHECK(rejects("[01]", "leading zeros"));
	CHECK(rejects("[1.]", "decimal point"));
	CHECK(rejects("[1e]", "exponent"));
	CHECK(rejects("[-]", "invalid number"));
	CHECK(rejects("[NaN]", "unexpected character 'N'"));
	CHECK(rejects("[1e999]", "out of range"));
	CHECK(rejects("\"abc", "unterminated string"));
	CHECK(rejects("\"a\\x\"", "invalid escape"));
	CHECK(rejects("\"\\u12g4\"", "hex digit"));
	CHECK(rejects("\"\\ud800\"", "surrogate"));
	CHECK(rejects("\"\\udc00\"", "surrogate"));
	CHECK(rejects("\"a\tb\"", "control character"));
	CHECK(rejects("\"\xc0\xaf\"", "UTF-8"));       /* overlong */
	CHECK(rejects("\"\xed\xa0\x80\"", "UTF-8"));   /* encoded surrogate */
	CHECK(rejects("\"\xf4\x90\x80\x80\"", "UTF-8")); /* > U+10FFFF */
	CHECK(rejects("\xef\xbb\xbf{}", NULL));         /* BOM */
	CHECK(rejects("{} {}", "after the value"));
	CHECK(rejects("tru", NULL));
	CHECK(rejects("{\"a\\u0000b\":1}", "NUL"));
	CHECK(rejects("{\"a\":1}\n\n  x", "line 3 column 3"));
}

TEST(limits_depth_size_members)
{
	/* depth: 64 nested arrays pass, 65 fail; a very deep input cannot
	 * exhaust the stack. */
	char deep[200001];
	for (int i = 0; i < 64; i++)
		deep[i] = '[';
	for (int i = 0; i < 64; i++)
		deep[64 + i] = ']';
	vms_json *v = NULL;
	CHECK(vms_json_parse(&v, deep, 128) == 0);
	vms_json_free(v);
	v = NULL;
	memset(deep, '[', 100000);
	memset(deep + 100000, ']', 100000);
	CHECK(vms_json_parse(&v, deep, 200000) == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "nesting deeper than 64") != NULL);

	vms_json_limits lim = {.max_bytes = 10, .max_depth = 2, .max_members = 3};
	CHECK(vms_json_parse_ex(&v, "[1,2,3,4,5,6]", 13, &lim) == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "exceeds the limit") != NULL);
	CHECK(vms_json_parse_ex(&v, "[1,2,3,4]", 9, &lim) == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "more than 3") != NULL);
	CHECK(vms_json_parse_ex(&v, "[[[]]]", 6, &lim) == VMS_EINVAL);
	CHECK(vms_json_parse_ex(&v, "[[1],2]", 7, &lim) == 0);
	vms_json_free(v);
}

TEST(build_and_serialize_compact_and_pretty)
{
	vms_json *o = vms_json_new_object();
	CHECK_OK(vms_json_object_set_string(o, "name", "vm1"));
	CHECK_OK(vms_json_object_set_int(o, "size", 4096));
	CHECK_OK(vms_json_object_set_bool(o, "readonly", 0));
	CHECK_OK(vms_json_object_set_string(o, "parent", NULL));
	vms_json *a = vms_json_new_array();
	CHECK_OK(vms_json_array_append(a, vms_json_new_int(1)));
	CHECK_OK(vms_json_array_append(a, vms_json_new_double(0.25)));
	CHECK_OK(vms_json_object_set(o, "list", a));
	CHECK_OK(vms_json_object_set_int(o, "size", 8192)); /* replace keeps position */
	char *s = ser(o, 0);
	CHECK(s && strcmp(s, "{\"name\":\"vm1\",\"size\":8192,\"readonly\":false,\"parent\":null,"
	                     "\"list\":[1,0.25]}") == 0);
	free(s);
	s = ser(o, VMS_JSON_PRETTY);
	CHECK(s && strstr(s, "{\n  \"name\": \"vm1\",\n") == s);
	free(s);
	CHECK(vms_json_object_remove(o, "readonly") == 1);
	CHECK(vms_json_object_remove(o, "readonly") == 0);
	CHECK(vms_json_object_len(o) == 4);
	CHECK(strcmp(vms_json_object_key_at(o, 2), "parent") == 0);
	/* set/append take ownership of NULL (failed allocation) gracefully */
	CHECK(vms_json_object_set(o, "x", NULL) == VMS_ENOMEM);
	CHECK(vms_json_array_append(o, vms_json_new_int(1)) == VMS_EINVAL);
	vms_json *c = vms_json_copy(o);
	char *s1 = ser(o, 0), *s2 = ser(c, 0);
	CHECK(s1 && s2 && strcmp(s1, s2) == 0);
	free(s1);
	free(s2);
	vms_json_free(c);
	vms_json_free(o);
	vms_json *nan = vms_json_new_double(0.0 / 0.0);
	s = ser(nan, 0);
	CHECK(s && strcmp(s, "null") == 0);
	free(s);
	vms_json_free(nan);
}

TEST(typed_argument_access)
{
	vms_json *o = parse("{\"s\":\"x\",\"i\":7,\"b\":true,\"z\":\"1.5G\",\"neg\":-1,\"n\":null,"
	                    "\"bad\":\"12Q\",\"big\":\"99999999999P\"}");
	REQUIRE(o);
	const char *s = "unchanged";
	int64_t i = 0;
	int b = 0;
	uint64_t z = 0;
	CHECK(vms_json_get_string(&s, o, "s", 1) == 0 && strcmp(s, "x") == 0);
	CHECK(vms_json_get_string(&s, o, "i", 1) == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "'i' must be a string") != NULL);
	s = "unchanged";
	CHECK(vms_json_get_string(&s, o, "absent", 0) == 0 && strcmp(s, "unchanged") == 0);
	CHECK(vms_json_get_string(&s, o, "n", 0) == 0 && strcmp(s, "unchanged") == 0);
	CHECK(vms_json_get_string(&s, o, "absent", 1) == VMS_EINVAL);
	CHECK(strstr(vms_error_last(), "missing argument 'absent'") != NULL);
	CHECK(vms_json_get_int(&i, o, "i", 1) == 0 && i == 7);
	CHECK(vms_json_get_bool(&b, o, "b", 1) == 0 && b == 1);
	CHECK(vms_json_get_bool(&b, o, "i", 1) == VMS_EINVAL);
	CHECK(vms_json_get_size(&z, o, "z", 1) == 0 && z == 1610612736ull);
	CHECK(vms_json_get_size(&z, o, "i", 1) == 0 && z == 7);
	CHECK(vms_json_get_size(&z, o, "neg", 1) == VMS_EINVAL);
	CHECK(vms_json_get_size(&z, o, "bad", 1) == VMS_EINVAL);
	CHECK(vms_json_get_size(&z, o, "big", 1) == VMS_EINVAL);
	vms_json_free(o);
}

TEST(parse_size_units)
{
	uint64_t v;
	CHECK(vms_parse_size(&v, "512") == 0 && v == 512);
	CHECK(vms_parse_size(&v, "4K") == 0 && v == 4096);
	CHECK(vms_parse_size(&v, "4k") == 0 && v == 4096);
	CHECK(vms_parse_size(&v, "2G") == 0 && v == (2ull << 30));
	CHECK(vms_parse_size(&v, "1.5T") == 0 && v == (3ull << 39));
	CHECK(vms_parse_size(&v, "3MiB") == 0 && v == (3ull << 20));
	CHECK(vms_parse_size(&v, "1GB") == 0 && v == (1ull << 30));
	CHECK(vms_parse_size(&v, "100B") == 0 && v == 100);
	CHECK(vms_parse_size(&v, "16383P") == 0);
	CHECK(vms_parse_size(&v, "16384P") == VMS_EINVAL);
	CHECK(vms_parse_size(&v, "18446744073709551615") == 0 && v == UINT64_MAX);
	CHECK(vms_parse_size(&v, "18446744073709551616") == VMS_EINVAL);
	CHECK(vms_parse_size(&v, "") == VMS_EINVAL);
	CHECK(vms_parse_size(&v, "G") == VMS_EINVAL);
	CHECK(vms_parse_size(&v, "1.5") == VMS_EINVAL);
	CHECK(vms_parse_size(&v, "-1") == VMS_EINVAL);
	CHECK(vms_parse_size(&v, "4 K") == VMS_EINVAL);
	CHECK(vms_parse_size(&v, "4KX") == VMS_EINVAL);
}

/* Random mutations of valid documents must parse or fail cleanly (ASan
 * catches any out-of-bounds read); whatever parses must round-trip. */
TEST(random_mutations_never_crash)
{
	const char *seeds[] = {
		"{\"op\":\"snapshot.create\",\"args\":{\"vm\":\"vm1\",\"name\":\"nightly\"}}",
		"[1,-2.5e3,\"\\u00e9\\ud83d\\ude00\",true,false,null,{\"a\":[[]]}]",
		"\"\\\\\\\"\\n\"",
	};
	unsigned seed = (unsigned)time(NULL);
	const char *env = getenv("VMS_TEST_SEED");
	if (env)
		seed = (unsigned)strtoul(env, NULL, 0);
	fprintf(stderr, "  seed %u (replay with VMS_TEST_SEED=%u)\n", seed, seed);
	srand(seed);
	char buf[256];
	for (int iter = 0; iter < 20000; iter++) {
		const char *s = seeds[iter % 3];
		size_t n = strlen(s);
		memcpy(buf, s, n);
		int muts = 1 + rand() % 4;
		for (int m = 0; m < muts; m++) {
			size_t at = (size_t)rand() % n;
			switch (rand() % 3) {
			case 0: buf[at] = (char)(rand() % 256); break;
			case 1: if (n > 1) { memmove(buf + at, buf + at + 1, n - at - 1); n--; } break;
			case 2: if (n < sizeof(buf) - 1) { memmove(buf + at + 1, buf + at, n - at); buf[at] = "{}[]\",:\\0e-"[rand() % 11]; n++; } break;
			}
		}
		/* parse exactly n bytes from a heap copy so ASan sees overreads */
		char *h = malloc(n ? n : 1);
		memcpy(h, buf, n);
		vms_json *v = NULL;
		int rc = vms_json_parse(&v, h, n);
		if (rc == 0) {
			char *out = ser(v, 0);
			vms_json *w = NULL;
			CHECK(out && vms_json_parse(&w, out, strlen(out)) == 0);
			char *out2 = w ? ser(w, 0) : NULL;
			CHECK(out2 && strcmp(out, out2) == 0);
			free(out);
			free(out2);
			vms_json_free(w);
			vms_json_free(v);
		} else {
			CHECK(rc == VMS_EINVAL && v == NULL);
		}
		free(h);
	}
}

/* Found by fuzz_json: -1e-400 is the double -0.0; it was written "-0", read
 * back as the integer 0 and then written "0".  Serialising must be a fixed point:
 * what is written and read back is written the same way again. */
TEST(serialising_doubles_is_a_fixed_point)
{
	static const char *const in[] = {"[-1e-400]", "[2.0]", "[1e300]", "[-0.5]", "[-0.0]"};
	static const char *const want[] = {"[0]", "[2]", "[1.0000000000000001e+300]", "[-0.5]", "[0]"};
	for (size_t k = 0; k < sizeof in / sizeof in[0]; k++) {
		vms_json *a = NULL, *b = NULL;
		char *t1 = NULL, *t2 = NULL;
		CHECK_OK(vms_json_parse(&a, in[k], strlen(in[k])));
		REQUIRE(a);
		CHECK_OK(vms_json_serialize(&t1, a, 0));
		REQUIRE(t1);
		CHECK(strcmp(t1, want[k]) == 0);
		CHECK_OK(vms_json_parse(&b, t1, strlen(t1)));
		REQUIRE(b);
		CHECK_OK(vms_json_serialize(&t2, b, 0));
		REQUIRE(t2);
		CHECK(strcmp(t1, t2) == 0);
		free(t1);
		free(t2);
		vms_json_free(a);
		vms_json_free(b);
	}
}

TEST_MAIN()
