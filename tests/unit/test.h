/*
 * test.h - the unit-test harness: each test is a function; RUN() prints one line
 * "PASS name", "FAIL name: ..." or "SKIP name: reason" that scripts/run-tests.sh counts.
 * The binary exits 1 if any test failed.
 */
#ifndef ORCH_TEST_H
#define ORCH_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_cur_failed, test_cur_skipped, test_any_failed;
static char test_skip_reason[256];

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
			test_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)
#define CHECK_EQ_U64(a, b)                                                                         \
	do {                                                                                       \
		unsigned long long _a = (a), _b = (b);                                             \
		if (_a != _b) {                                                                    \
			printf("  %s:%d: %s == %llu, expected %s == %llu\n", __FILE__, __LINE__,   \
			       #a, _a, #b, _b);                                                    \
			test_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)
#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *_a = (a), *_b = (b);                                                   \
		if (!_a || !_b || strcmp(_a, _b)) {                                                \
			printf("  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
			       _a ? _a : "(null)", _b ? _b : "(null)");                            \
			test_cur_failed = 1;                                                       \
		}                                                                                  \
	} while (0)
/* Stop the current test with a skip (only when the environment cannot run it). */
#define SKIP(...)                                                                                  \
	do {                                                                                       \
		snprintf(test_skip_reason, sizeof(test_skip_reason), __VA_ARGS__);                 \
		test_cur_skipped = 1;                                                              \
		return;                                                                            \
	} while (0)

static inline void test_run(const char *name, void (*fn)(void))
{
	test_cur_failed = test_cur_skipped = 0;
	fflush(stdout);
	fn();
	if (test_cur_skipped && !test_cur_failed)
		printf("SKIP %s: %s\n", name, test_skip_reason);
	else if (test_cur_failed) {
		printf("FAIL %s\n", name);
		test_any_failed = 1;
	} else
		printf("PASS %s\n", name);
	fflush(stdout);
}
#define RUN(fn) test_run(#fn, fn)
#define TEST_EXIT() return test_any_failed ? 1 : 0

#endif
