// SPDX-License-Identifier: MIT
/* Unit tests for agent/parse.c: the strict parsers behind command-line options and scopes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <string.h>
#include <cmocka.h>
#include "parse.h"

#define SENTINEL UINT64_C(0xdeadbeefcafef00d)

/* Accepted input: 0 and the parsed value. */
static void check_u64_ok(const char *s, uint64_t min, uint64_t max, uint64_t want)
{
	uint64_t v = SENTINEL;

	assert_int_equal(parse_u64(s, min, max, &v), 0);
	assert_true(v == want);
}

static void check_u64_err(const char *s, uint64_t min, uint64_t max, int err)
{
	uint64_t v = SENTINEL;

	assert_int_equal(parse_u64(s, min, max, &v), err);
}

static void check_size_ok(const char *s, uint64_t min, uint64_t max, uint64_t want)
{
	uint64_t v = SENTINEL;

	assert_int_equal(parse_size(s, min, max, &v), 0);
	assert_true(v == want);
}

static void check_size_err(const char *s, uint64_t min, uint64_t max, int err)
{
	uint64_t v = SENTINEL;

	assert_int_equal(parse_size(s, min, max, &v), err);
}

/* ---- parse_u64 ------------------------------------------------------------------------- */

static void test_u64_accepts_plain_decimal(void **state)
{
	(void)state;
	check_u64_ok("0", 0, UINT64_MAX, 0);
	check_u64_ok("1", 0, UINT64_MAX, 1);
	check_u64_ok("42", 0, UINT64_MAX, 42);
	check_u64_ok("4294967296", 0, UINT64_MAX, UINT64_C(4294967296)); /* past 32 bits */
	/* The largest value that fits is accepted, not mistaken for an overflow. */
	check_u64_ok("18446744073709551615", 0, UINT64_MAX, UINT64_MAX);
}

/* Strict means strict: anything strtoull would quietly tolerate is refused. */
static void test_u64_rejects_non_decimal(void **state)
{
	(void)state;
	check_u64_err(NULL, 0, UINT64_MAX, -EINVAL);
	check_u64_err("", 0, UINT64_MAX, -EINVAL);
	check_u64_err("-1", 0, UINT64_MAX, -EINVAL);   /* strtoull would wrap to UINT64_MAX */
	check_u64_err("-0", 0, UINT64_MAX, -EINVAL);
	check_u64_err("+1", 0, UINT64_MAX, -EINVAL);
	check_u64_err(" 1", 0, UINT64_MAX, -EINVAL);
	check_u64_err("\t1", 0, UINT64_MAX, -EINVAL);
	check_u64_err("1 ", 0, UINT64_MAX, -EINVAL);
	check_u64_err("1\n", 0, UINT64_MAX, -EINVAL);
	check_u64_err("1x", 0, UINT64_MAX, -EINVAL);
	check_u64_err("0x10", 0, UINT64_MAX, -EINVAL);
	check_u64_err("1.5", 0, UINT64_MAX, -EINVAL);
	check_u64_err("1e3", 0, UINT64_MAX, -EINVAL);
	check_u64_err("x", 0, UINT64_MAX, -EINVAL);
}

/* A value past 64 bits is a range error, never a wrapped or saturated value. */
static void test_u64_overflow(void **state)
{
	(void)state;
	check_u64_err("18446744073709551616", 0, UINT64_MAX, -ERANGE); /* UINT64_MAX + 1 */
	check_u64_err("99999999999999999999", 0, UINT64_MAX, -ERANGE);
	check_u64_err("100000000000000000000000000000", 0, UINT64_MAX, -ERANGE);
}

/* [min, max] is inclusive at both ends; one past either end is -ERANGE. */
static void test_u64_range(void **state)
{
	(void)state;
	check_u64_ok("10", 10, 20, 10);
	check_u64_ok("20", 10, 20, 20);
	check_u64_ok("15", 10, 20, 15);
	check_u64_err("9", 10, 20, -ERANGE);
	check_u64_err("21", 10, 20, -ERANGE);
	check_u64_err("0", 1, UINT64_MAX, -ERANGE);
	check_u64_ok("7", 7, 7, 7);
	check_u64_err("6", 7, 7, -ERANGE);
	check_u64_err("8", 7, 7, -ERANGE);
	/* Syntax is checked before range: garbage is -EINVAL even outside the range. */
	check_u64_err("1x", 10, 20, -EINVAL);
}

/* ---- parse_size ------------------------------------------------------------------------ */

/* Suffixes are powers of 1024; no suffix means bytes. */
static void test_size_suffixes(void **state)
{
	(void)state;
	check_size_ok("0", 0, UINT64_MAX, 0);
	check_size_ok("512", 0, UINT64_MAX, 512);
	check_size_ok("1K", 0, UINT64_MAX, UINT64_C(1024));
	check_size_ok("4K", 0, UINT64_MAX, UINT64_C(4096));
	check_size_ok("1M", 0, UINT64_MAX, UINT64_C(1048576));
	check_size_ok("64M", 0, UINT64_MAX, UINT64_C(64) << 20);
	check_size_ok("1G", 0, UINT64_MAX, UINT64_C(1073741824));
	check_size_ok("3G", 0, UINT64_MAX, UINT64_C(3) << 30);
	check_size_ok("0K", 0, UINT64_MAX, 0);
}

/* The number part obeys parse_u64's rules; a suffix alone or an unknown suffix is refused. */
static void test_size_rejects_bad_syntax(void **state)
{
	(void)state;
	check_size_err(NULL, 0, UINT64_MAX, -EINVAL);
	check_size_err("", 0, UINT64_MAX, -EINVAL);
	check_size_err("K", 0, UINT64_MAX, -EINVAL);
	check_size_err("M", 0, UINT64_MAX, -EINVAL);
	check_size_err("1KB", 0, UINT64_MAX, -EINVAL);
	check_size_err("1KK", 0, UINT64_MAX, -EINVAL);
	check_size_err("1T", 0, UINT64_MAX, -EINVAL);
	check_size_err("1B", 0, UINT64_MAX, -EINVAL);
	check_size_err("1 K", 0, UINT64_MAX, -EINVAL);
	check_size_err(" 1K", 0, UINT64_MAX, -EINVAL);
	check_size_err("-1K", 0, UINT64_MAX, -EINVAL);
	check_size_err("0x10K", 0, UINT64_MAX, -EINVAL);
	check_size_err("1.5M", 0, UINT64_MAX, -EINVAL);
}

/* n<<shift must not wrap: the largest n that fits is accepted, one more is -ERANGE. */
static void test_size_overflow(void **state)
{
	(void)state;
	check_size_ok("18014398509481983K", 0, UINT64_MAX, (UINT64_MAX >> 10) << 10);
	check_size_err("18014398509481984K", 0, UINT64_MAX, -ERANGE); /* 2^54 K = 2^64 */
	check_size_ok("17592186044415M", 0, UINT64_MAX, (UINT64_MAX >> 20) << 20);
	check_size_err("17592186044416M", 0, UINT64_MAX, -ERANGE); /* 2^44 M = 2^64 */
	check_size_ok("17179869183G", 0, UINT64_MAX, (UINT64_MAX >> 30) << 30);
	check_size_err("17179869184G", 0, UINT64_MAX, -ERANGE); /* 2^34 G = 2^64 */
	check_size_err("17179869185G", 0, UINT64_MAX, -ERANGE);
	check_size_err("18446744073709551616", 0, UINT64_MAX, -ERANGE);
	check_size_ok("18446744073709551615", 0, UINT64_MAX, UINT64_MAX);
}

/* The range applies to the byte count after the suffix, inclusive at both ends. */
static void test_size_range(void **state)
{
	(void)state;
	check_size_ok("4K", 4096, 1 << 20, 4096);
	check_size_ok("1M", 4096, 1 << 20, 1 << 20);
	check_size_ok("1024K", 4096, 1 << 20, 1 << 20);
	check_size_ok("4096", 4096, 1 << 20, 4096);
	check_size_err("4095", 4096, 1 << 20, -ERANGE);
	check_size_err("3K", 4096, 1 << 20, -ERANGE);
	check_size_err("1025K", 4096, 1 << 20, -ERANGE);
	check_size_err("2M", 4096, 1 << 20, -ERANGE);
	check_size_err("1048577", 4096, 1 << 20, -ERANGE);
}

/* ---- parse_scope ----------------------------------------------------------------------- */

/* A scope becomes a directory name: only [A-Za-z0-9_.-], 1-64 bytes, no leading dot. */
static void test_scope_valid(void **state)
{
	char name[65];

	(void)state;
	assert_int_equal(parse_scope("a"), 0);
	assert_int_equal(parse_scope("web"), 0);
	assert_int_equal(parse_scope("Build_42"), 0);
	assert_int_equal(parse_scope("ci.nightly-run_7"), 0);
	assert_int_equal(parse_scope("a.b"), 0);
	assert_int_equal(parse_scope("a."), 0);
	assert_int_equal(parse_scope("-x"), 0);
	assert_int_equal(parse_scope("_"), 0);
	assert_int_equal(parse_scope("0123456789"), 0);
	assert_int_equal(parse_scope("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), 0);

	memset(name, 'x', 64); /* exactly 64: the longest allowed */
	name[64] = '\0';
	assert_int_equal(parse_scope(name), 0);
}

static void test_scope_invalid(void **state)
{
	char name[66];

	(void)state;
	assert_int_equal(parse_scope(NULL), -EINVAL);
	assert_int_equal(parse_scope(""), -EINVAL);
	/* Leading dot: ".", ".." and hidden directories. */
	assert_int_equal(parse_scope("."), -EINVAL);
	assert_int_equal(parse_scope(".."), -EINVAL);
	assert_int_equal(parse_scope(".hidden"), -EINVAL);
	/* Anything that could leave the scope directory or confuse a shell. */
	assert_int_equal(parse_scope("a/b"), -EINVAL);
	assert_int_equal(parse_scope("/"), -EINVAL);
	assert_int_equal(parse_scope("../etc"), -EINVAL);
	assert_int_equal(parse_scope("x/.."), -EINVAL);
	assert_int_equal(parse_scope("a b"), -EINVAL);
	assert_int_equal(parse_scope("a\tb"), -EINVAL);
	assert_int_equal(parse_scope("a\nb"), -EINVAL);
	assert_int_equal(parse_scope("a\\b"), -EINVAL);
	assert_int_equal(parse_scope("a:b"), -EINVAL);
	assert_int_equal(parse_scope("a*"), -EINVAL);
	assert_int_equal(parse_scope("a$b"), -EINVAL);
	assert_int_equal(parse_scope("caf\xc3\xa9"), -EINVAL); /* non-ASCII (UTF-8 e-acute) */
	assert_int_equal(parse_scope("\x7f"), -EINVAL);

	memset(name, 'x', 65); /* one past the limit */
	name[65] = '\0';
	assert_int_equal(parse_scope(name), -EINVAL);
}

/* Durations (--older-than, --dns-timeout): a number and one unit, nothing else, no overflow. */
/* --since: that long before now, on the wall clock; a zero or bad age refused. */
static void test_since(void **state)
{
	struct timespec a, b;
	int64_t since, lo, hi;

	(void)state;
	clock_gettime(CLOCK_REALTIME, &a);
	assert_int_equal(parse_since("1h", &since), 0);
	clock_gettime(CLOCK_REALTIME, &b);
	lo = (int64_t)a.tv_sec * 1000000000LL + a.tv_nsec - 3600 * 1000000000LL;
	hi = (int64_t)b.tv_sec * 1000000000LL + b.tv_nsec - 3600 * 1000000000LL;
	assert_in_range(since, lo, hi);
	assert_int_equal(parse_since("0s", &since), -EINVAL);
	assert_true(parse_since("7x", &since) < 0);
	assert_true(parse_since("", &since) < 0);
}

static void test_duration(void **state)
{
	int64_t ns = -1;

	(void)state;
	assert_int_equal(parse_duration("30d", &ns), 0);
	assert_true(ns == 30LL * 86400 * 1000000000LL);
	assert_int_equal(parse_duration("12h", &ns), 0);
	assert_true(ns == 12LL * 3600 * 1000000000LL);
	assert_int_equal(parse_duration("90m", &ns), 0);
	assert_true(ns == 90LL * 60 * 1000000000LL);
	assert_int_equal(parse_duration("2w", &ns), 0);
	assert_true(ns == 14LL * 86400 * 1000000000LL);
	assert_int_equal(parse_duration("0s", &ns), 0);
	assert_true(ns == 0);
	assert_int_equal(parse_duration("500ms", &ns), 0);
	assert_true(ns == 500LL * 1000000);
	assert_int_equal(parse_duration("5m", &ns), 0); /* minutes, not a cut-off "ms" */
	assert_true(ns == 300LL * 1000000000LL);
	ns = 7;
	assert_int_equal(parse_duration("ms", &ns), -EINVAL);
	assert_int_equal(parse_duration("1.5s", &ns), -EINVAL);
	assert_int_equal(parse_duration("30", &ns), -EINVAL);
	assert_int_equal(parse_duration("d", &ns), -EINVAL);
	assert_int_equal(parse_duration("30x", &ns), -EINVAL);
	assert_int_equal(parse_duration("-1d", &ns), -EINVAL);
	assert_int_equal(parse_duration("3 d", &ns), -EINVAL);
	assert_int_equal(parse_duration("", &ns), -EINVAL);
	assert_int_equal(parse_duration(NULL, &ns), -EINVAL);
	assert_int_equal(parse_duration("999999999999w", &ns), -ERANGE);
	assert_true(ns == 7); /* untouched on failure */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_since),
		cmocka_unit_test(test_u64_accepts_plain_decimal),
		cmocka_unit_test(test_u64_rejects_non_decimal),
		cmocka_unit_test(test_u64_overflow),
		cmocka_unit_test(test_u64_range),
		cmocka_unit_test(test_size_suffixes),
		cmocka_unit_test(test_size_rejects_bad_syntax),
		cmocka_unit_test(test_size_overflow),
		cmocka_unit_test(test_size_range),
		cmocka_unit_test(test_scope_valid),
		cmocka_unit_test(test_scope_invalid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
