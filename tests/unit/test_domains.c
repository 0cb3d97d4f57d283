// SPDX-License-Identifier: MIT
/*
 * Unit tests for agent/domains.c: which name a scope resolved to an address, until the
 * answer expires; a fixed table whose neighbourhoods give up the entry that expires first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "domains.h"

#define SEC 1000000000LL
#define T0 1700000000000000000LL

/* ---- fixtures -------------------------------------------------------------------------- */

static int setup(void **state)
{
	struct domains *d = calloc(1, sizeof(*d));

	if (!d || domains_init(d) < 0) {
		free(d);
		return -1;
	}
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct domains *d = *state;

	domains_free(d);
	assert_null(d->e);
	free(d);
	return 0;
}

/* ---- helpers --------------------------------------------------------------------------- */

/* The addr_key() form of a.b.c.d: ::ffff:a.b.c.d. */
static void key4(uint8_t key[16], uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	memset(key, 0, 16);
	key[10] = 0xff;
	key[11] = 0xff;
	key[12] = a;
	key[13] = b;
	key[14] = c;
	key[15] = d;
}

/* A distinct IPv6 key per number: 2001:db8::<n>. */
static void key6(uint8_t key[16], uint32_t n)
{
	memset(key, 0, 16);
	key[0] = 0x20;
	key[1] = 0x01;
	key[2] = 0x0d;
	key[3] = 0xb8;
	key[12] = (uint8_t)(n >> 24);
	key[13] = (uint8_t)(n >> 16);
	key[14] = (uint8_t)(n >> 8);
	key[15] = (uint8_t)n;
}

/* The name domains_get returns, compared as a string (NULL fails, naming the call). */
#define assert_name(got, want)                                                              \
	do {                                                                                 \
		const char *got_ = (got);                                                    \
		if (!got_)                                                                   \
			fail_msg("%s: NULL, not \"%s\"", #got, (want));                     \
		assert_string_equal(got_, (want));                                           \
	} while (0)

/* ---- tests ----------------------------------------------------------------------------- */

/* Nothing is known in a new table. */
static void test_empty(void **state)
{
	struct domains *d = *state;
	uint8_t k[16];

	key4(k, 10, 0, 0, 1);
	assert_null(domains_get(d, "web", k, T0));
	assert_null(domains_get(d, "", k, 0));
}

/* A name is returned, as put, until it expires; then NULL. */
static void test_put_get_expiry(void **state)
{
	struct domains *d = *state;
	uint8_t k[16];
	const char *name;

	key4(k, 93, 184, 216, 34);
	domains_put(d, "web", k, "www.example.com", T0 + 60 * SEC);
	name = domains_get(d, "web", k, T0);
	assert_non_null(name);
	assert_string_equal(name, "www.example.com");
	assert_name(domains_get(d, "web", k, T0 + 60 * SEC - 1), "www.example.com");
	assert_null(domains_get(d, "web", k, T0 + 60 * SEC + 1));
	assert_null(domains_get(d, "web", k, T0 + 3600 * SEC));
	/* The caller's buffer is copied, not kept. */
	{
		char buf[32];

		snprintf(buf, sizeof(buf), "api.example.com");
		key4(k, 10, 0, 0, 2);
		domains_put(d, "web", k, buf, T0 + SEC);
		memset(buf, 'x', sizeof(buf) - 1);
		assert_name(domains_get(d, "web", k, T0), "api.example.com");
	}
}

/* What one scope resolved is not another scope's: scopes are separate. */
static void test_scopes_separate(void **state)
{
	struct domains *d = *state;
	uint8_t k[16];

	key4(k, 10, 0, 0, 1);
	domains_put(d, "web", k, "web.internal", T0 + 60 * SEC);
	assert_null(domains_get(d, "db", k, T0));
	assert_null(domains_get(d, "webx", k, T0));
	assert_null(domains_get(d, "we", k, T0));

	domains_put(d, "db", k, "db.internal", T0 + 60 * SEC);
	assert_name(domains_get(d, "web", k, T0), "web.internal");
	assert_name(domains_get(d, "db", k, T0), "db.internal");

	/*
	 * Many other scopes, so that some look for the address in the neighbourhood where web's
	 * entry is: still none sees it.
	 */
	for (uint32_t i = 0; i < 4 * DOMAINS_CAP; i++) {
		char scope[32];

		snprintf(scope, sizeof(scope), "scope-%u", i);
		assert_null(domains_get(d, scope, k, T0));
	}
}

/*
 * The most recent answer for (scope, addr) wins, even when it expires before the name it
 * replaces: the address now belongs to the new name, and after its TTL to none.
 */
static void test_most_recent_wins(void **state)
{
	struct domains *d = *state;
	uint8_t k[16];

	key4(k, 192, 0, 2, 7);
	domains_put(d, "web", k, "old.example", T0 + 3600 * SEC);
	assert_name(domains_get(d, "web", k, T0), "old.example");
	domains_put(d, "web", k, "new.example", T0 + 30 * SEC);
	assert_name(domains_get(d, "web", k, T0), "new.example");
	assert_null(domains_get(d, "web", k, T0 + 31 * SEC));

	/* A longer-lived later answer extends it. */
	domains_put(d, "web", k, "new.example", T0 + 120 * SEC);
	assert_name(domains_get(d, "web", k, T0 + 31 * SEC), "new.example");
	/* A shorter name over a longer one leaves nothing of the old one behind. */
	domains_put(d, "web", k, "a.io", T0 + 120 * SEC);
	assert_name(domains_get(d, "web", k, T0), "a.io");
}

/*
 * IPv4 10.0.0.1 (::ffff:10.0.0.1), the IPv4-compatible ::10.0.0.1 and 2001:db8::a00:1 share
 * their last four bytes, yet are three addresses.
 */
static void test_families_distinct(void **state)
{
	struct domains *d = *state;
	uint8_t v4[16], compat[16], v6[16];

	key4(v4, 10, 0, 0, 1);
	memset(compat, 0, sizeof(compat));
	memcpy(compat + 12, v4 + 12, 4);
	key6(v6, 0x0a000001);

	domains_put(d, "web", v4, "four.example", T0 + 60 * SEC);
	assert_null(domains_get(d, "web", compat, T0));
	assert_null(domains_get(d, "web", v6, T0));
	domains_put(d, "web", v6, "six.example", T0 + 60 * SEC);
	domains_put(d, "web", compat, "compat.example", T0 + 60 * SEC);
	assert_name(domains_get(d, "web", v4, T0), "four.example");
	assert_name(domains_get(d, "web", v6, T0), "six.example");
	assert_name(domains_get(d, "web", compat, T0), "compat.example");

	/*
	 * Many IPv6 addresses ending in the same four bytes, so that some are looked for in the
	 * neighbourhood where the IPv4 entry is: none is taken for it.
	 */
	for (uint32_t i = 0; i < 4 * DOMAINS_CAP; i++) {
		memcpy(v6, v4, sizeof(v6));
		v6[0] = 0x20;
		v6[1] = 0x01;
		v6[4] = (uint8_t)(i >> 8);
		v6[5] = (uint8_t)i;
		v6[10] = v6[11] = 0;
		assert_null(domains_get(d, "web", v6, T0));
	}
}

/* A name of DOMAIN_NAME_MAX - 1 characters is kept whole; a longer one is not kept. */
static void test_name_length(void **state)
{
	struct domains *d = *state;
	char longest[DOMAIN_NAME_MAX], too_long[DOMAIN_NAME_MAX + 1], huge[1024];
	uint8_t k[16];
	const char *got;

	memset(longest, 'a', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	memset(too_long, 'b', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = '\0';
	memset(huge, 'c', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	assert_int_equal(strlen(longest), DOMAIN_NAME_MAX - 1);
	assert_int_equal(strlen(too_long), DOMAIN_NAME_MAX);

	key4(k, 10, 0, 0, 1);
	domains_put(d, "web", k, longest, T0 + 60 * SEC);
	got = domains_get(d, "web", k, T0);
	assert_non_null(got);
	assert_int_equal(strlen(got), DOMAIN_NAME_MAX - 1);
	assert_string_equal(got, longest);

	key4(k, 10, 0, 0, 2);
	domains_put(d, "web", k, too_long, T0 + 60 * SEC);
	assert_null(domains_get(d, "web", k, T0));
	key4(k, 10, 0, 0, 3);
	domains_put(d, "web", k, huge, T0 + 60 * SEC);
	assert_null(domains_get(d, "web", k, T0));

	/* A name too long to keep still ends the older name of its address. */
	key4(k, 10, 0, 0, 1);
	domains_put(d, "web", k, too_long, T0 + 60 * SEC);
	assert_null(domains_get(d, "web", k, T0));
}

/*
 * A name is kept with its answer's CNAME chain, for the rules to weigh as its lookup was: the
 * targets in order, as far as they fit (from the first that does not, none), none for a name
 * put without one, and a newer answer's chain (or none) replaces the older.
 */
static void test_chain(void **state)
{
	struct domains *d = *state;
	char longest[DOMAIN_NAME_MAX], chain[1024];
	const char *got, *c;
	size_t o = 0, n = 0;
	uint8_t k[16];

	key4(k, 10, 0, 1, 1);
	domains_put_chain(d, "web", k, "www.site.test", "edge.cdn.test\0a.cdn.test\0", T0 + 60 * SEC);
	got = domains_get(d, "web", k, T0);
	assert_name(got, "www.site.test");
	c = domains_chain(got);
	assert_non_null(c);
	assert_memory_equal(c, "edge.cdn.test\0a.cdn.test\0", sizeof("edge.cdn.test\0a.cdn.test\0"));

	domains_put(d, "web", k, "www.site.test", T0 + 60 * SEC);
	assert_null(domains_chain(domains_get(d, "web", k, T0)));
	domains_put_chain(d, "web", k, "www.site.test", NULL, T0 + 60 * SEC);
	assert_null(domains_chain(domains_get(d, "web", k, T0)));

	/* A longest name leaves room for 130 bytes of chain (its end included): 3 targets of 34. */
	memset(longest, 'a', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	for (int i = 0; i < 10; i++)
		o += (size_t)sprintf(chain + o, "t%02d.a-cdn-name-of-some-length.net", i) + 1;
	chain[o] = '\0';
	key4(k, 10, 0, 1, 2);
	domains_put_chain(d, "web", k, longest, chain, T0 + 60 * SEC);
	got = domains_get(d, "web", k, T0);
	assert_name(got, longest);
	for (c = domains_chain(got); c && *c; c += strlen(c) + 1)
		n++;
	assert_int_equal(strlen(chain) + 1, 34);
	assert_int_equal(n, (DOMAIN_TEXT_MAX - DOMAIN_NAME_MAX - 1) / 34);
	assert_int_equal(n, 3);
	assert_string_equal(domains_chain(got), "t00.a-cdn-name-of-some-length.net");
}

/*
 * Far more answers than the table holds: memory stays bounded (at most DOMAINS_CAP names
 * are found afterwards), every name found is the one put for its address, the newest are
 * there, and a long-lived entry outlives a flood of shorter-lived ones put after it (the
 * entry that expires first gives way, not the oldest).
 */
static void test_bounded_eviction(void **state)
{
	const uint32_t n = 8 * DOMAINS_CAP;
	struct domains *d = *state;
	uint8_t k[16], lived[16], first[16];
	uint32_t found = 0, newest_found = 0;
	char name[64];

	key4(lived, 203, 0, 113, 1);
	domains_put(d, "web", lived, "long.example", T0 + 86400 * SEC);
	/* Each later answer lives longer than the one before, all far shorter than lived. */
	for (uint32_t i = 0; i < n; i++) {
		key6(k, i);
		snprintf(name, sizeof(name), "h%u.example", i);
		domains_put(d, "web", k, name, T0 + 60 * SEC + i);
	}
	assert_name(domains_get(d, "web", lived, T0), "long.example");

	for (uint32_t i = 0; i < n; i++) {
		const char *got;

		key6(k, i);
		got = domains_get(d, "web", k, T0);
		if (!got)
			continue;
		snprintf(name, sizeof(name), "h%u.example", i);
		assert_string_equal(got, name);
		found++;
		if (i >= n - 64)
			newest_found++;
	}
	assert_true(found <= DOMAINS_CAP - 1); /* lived holds one slot */
	assert_true(found >= DOMAINS_CAP / 2);  /* the table is used, not thrown away */
	assert_int_equal(newest_found, 64);     /* the last answers are never the ones evicted */
	key6(first, 0);
	assert_null(domains_get(d, "web", first, T0)); /* the first to expire is gone */

	/* A short-lived entry put now gives way to the longer-lived ones that follow it. */
	key4(k, 198, 51, 100, 1);
	domains_put(d, "web", k, "short.example", T0 + 1);
	for (uint32_t i = 0; i < n; i++) {
		key6(first, n + i);
		domains_put(d, "web", first, "later.example", T0 + 3600 * SEC + i);
	}
	assert_null(domains_get(d, "web", k, T0));
	assert_name(domains_get(d, "web", lived, T0), "long.example");
}

/* domains_clear forgets every scope's names; the table is usable afterwards. */
static void test_clear(void **state)
{
	struct domains *d = *state;
	uint8_t k[16];

	for (uint32_t i = 0; i < 100; i++) {
		key6(k, i);
		domains_put(d, i % 2 ? "web" : "db", k, "x.example", T0 + 60 * SEC);
	}
	key6(k, 7);
	assert_name(domains_get(d, "web", k, T0), "x.example");
	domains_clear(d);
	for (uint32_t i = 0; i < 100; i++) {
		key6(k, i);
		assert_null(domains_get(d, "web", k, T0));
		assert_null(domains_get(d, "db", k, T0));
	}
	key6(k, 7);
	domains_put(d, "web", k, "y.example", T0 + 60 * SEC);
	assert_name(domains_get(d, "web", k, T0), "y.example");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_get_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scopes_separate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_most_recent_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_families_distinct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounded_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clear, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
