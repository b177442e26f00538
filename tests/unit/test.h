/*
 * A tiny test harness in the spirit of libgit2's clar: named tests, a CHECK
 * that reports file:line and keeps going within the run, and a summary line.
 * Usage: TEST(name) { ... CHECK(cond); ... }   and TEST_MAIN() at the end.
 * Run one test: ./test_x name
 */
#ifndef VMS_TEST_H
#define VMS_TEST_H
#undef NDEBUG
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
struct test_case { const char *name; test_fn fn; };

#define TEST_MAX 256
static struct test_case test_cases[TEST_MAX];
static int test_count;
static int test_failures_in_case;

#define TEST(name)                                                              \
	static void test_##name(void);                                          \
	__attribute__((constructor)) static void register_##name(void)          \
	{                                                                       \
		if (test_count < TEST_MAX)                                      \
			test_cases[test_count++] = (struct test_case){#name, test_##name}; \
	}                                                                       \
	static void test_##name(void)

#define CHECK(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failures_in_case++;                                \
		}                                                               \
	} while (0)

/* CHECK that stops the current test (for preconditions). */
#define REQUIRE(cond)                                                           \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "  %s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failures_in_case++;                                \
			return;                                                 \
		}                                                               \
	} while (0)

#define CHECK_OK(expr)                                                          \
	do {                                                                    \
		int rc__ = (expr);                                              \
		if (rc__ < 0) {                                                 \
			fprintf(stderr, "  %s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, \
			        rc__, vms_error_last());                        \
			test_failures_in_case++;                                \
		}                                                               \
	} while (0)

#define TEST_MAIN()                                                             \
	int main(int argc, char **argv)                                         \
	{                                                                       \
		int passed = 0, failed = 0;                                     \
		for (int i = 0; i < test_count; i++) {                          \
			if (argc > 1 && strcmp(argv[1], test_cases[i].name) != 0) \
				continue;                                       \
			test_failures_in_case = 0;                              \
			test_cases[i].fn();                                     \
			if (test_failures_in_case) {                            \
				failed++;                                       \
				fprintf(stderr, "FAIL %s\n", test_cases[i].name); \
			} else {                                                \
				passed++;                                       \
				fprintf(stderr, "ok   %s\n", test_cases[i].name); \
			}                                                       \
		}                                                               \
		printf("%d passed, %d failed\n", passed, failed);               \
		return failed ? 1 : 0;                                          \
	}

#endif
