// SPDX-License-Identifier: MIT
/* Unit tests for agent/addr.c: address normalisation, text form, sort keys, protocol names. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>
#include "addr.h"

/* A 16-byte address buffer from text, as the BPF side fills it (v4 in the first 4 bytes). */
static void pton(int family, const char *text, uint8_t addr[16])
{
	memset(addr, 0, 16);
	assert_int_equal(inet_pton(family, text, addr), 1);
}

/* ---- addr_normalize -------------------------------------------------------------------- */

/* ::ffff:a.b.c.d becomes AF_INET a.b.c.d; the 12 bytes after the v4 address are zeroed. */
static void test_normalize_v4mapped(void **state)
{
	static const uint8_t want[16] = { 127, 0, 0, 1 };
	static const uint8_t want2[16] = { 192, 0, 2, 255 };
	uint8_t a[16];

	(void)state;
	pton(AF_INET6, "::ffff:127.0.0.1", a);
	assert_int_equal(addr_normalize(AF_INET6, a), AF_INET);
	assert_memory_equal(a, want, 16);

	pton(AF_INET6, "::ffff:192.0.2.255", a);
	assert_int_equal(addr_normalize(AF_INET6, a), AF_INET);
	assert_memory_equal(a, want2, 16);
}

/* Real IPv6 addresses, including ones that merely look close to v4-mapped, stay as they are. */
static void test_normalize_v6_untouched(void **state)
{
	static const char *const v6[] = {
		"::1",
		"::",
		"2001:db8::1",
		"::127.0.0.1",        /* deprecated v4-compatible form: not v4-mapped */
		"::ffff:0:7f00:1",    /* IPv4-translated ::ffff:0:a.b.c.d (RFC 2765) */
		"::fffe:7f00:1",
		"64:ff9b::7f00:1",    /* NAT64 well-known prefix */
		"1::ffff:7f00:1",     /* mapped suffix, but a nonzero first word */
	};
	uint8_t a[16], orig[16];

	(void)state;
	for (size_t i = 0; i < sizeof(v6) / sizeof(v6[0]); i++) {
		pton(AF_INET6, v6[i], a);
		memcpy(orig, a, 16);
		assert_int_equal(addr_normalize(AF_INET6, a), AF_INET6);
		assert_memory_equal(a, orig, 16);
	}
}

/* AF_INET (and anything not AF_INET6) is returned as is, bytes untouched. */
static void test_normalize_v4_untouched(void **state)
{
	uint8_t a[16], orig[16];

	(void)state;
	pton(AF_INET, "10.1.2.3", a);
	memcpy(orig, a, 16);
	assert_int_equal(addr_normalize(AF_INET, a), AF_INET);
	assert_memory_equal(a, orig, 16);

	/* Even bytes that would be v4-mapped in an AF_INET6 buffer are left alone. */
	pton(AF_INET6, "::ffff:127.0.0.1", a);
	memcpy(orig, a, 16);
	assert_int_equal(addr_normalize(AF_INET, a), AF_INET);
	assert_memory_equal(a, orig, 16);
	assert_int_equal(addr_normalize(AF_UNIX, a), AF_UNIX);
	assert_memory_equal(a, orig, 16);
}

/* ---- addr_format ----------------------------------------------------------------------- */

static void test_format_v4_v6(void **state)
{
	char buf[ADDR_TEXT_MAX];
	uint8_t a[16];

	(void)state;
	pton(AF_INET, "127.0.0.1", a);
	assert_int_equal(addr_format(AF_INET, a, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "127.0.0.1");

	pton(AF_INET, "255.255.255.255", a);
	assert_int_equal(addr_format(AF_INET, a, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "255.255.255.255");

	pton(AF_INET6, "::1", a);
	assert_int_equal(addr_format(AF_INET6, a, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "::1");

	pton(AF_INET6, "2001:db8::8:800:200c:417a", a);
	assert_int_equal(addr_format(AF_INET6, a, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "2001:db8::8:800:200c:417a");

	/* A normalised v4-mapped address prints as plain IPv4. */
	pton(AF_INET6, "::ffff:10.0.0.1", a);
	assert_int_equal(addr_format(addr_normalize(AF_INET6, a), a, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "10.0.0.1");

	/* ADDR_TEXT_MAX holds the longest IPv6 text. */
	memset(a, 0xff, 16);
	assert_int_equal(addr_format(AF_INET6, a, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

static void test_format_bad_family(void **state)
{
	char buf[ADDR_TEXT_MAX];
	uint8_t a[16] = { 127, 0, 0, 1 };

	(void)state;
	assert_int_equal(addr_format(AF_UNSPEC, a, buf, sizeof(buf)), -EAFNOSUPPORT);
	assert_int_equal(addr_format(AF_UNIX, a, buf, sizeof(buf)), -EAFNOSUPPORT);
	assert_int_equal(addr_format(AF_PACKET, a, buf, sizeof(buf)), -EAFNOSUPPORT);
	assert_int_equal(addr_format(-1, a, buf, sizeof(buf)), -EAFNOSUPPORT);
}

/* A buffer one byte short of text+NUL is -ENOSPC, and nothing is written past it. */
static void test_format_small_buffer(void **state)
{
	char buf[32];
	uint8_t a[16];

	(void)state;
	pton(AF_INET, "127.0.0.1", a);
	memset(buf, 'G', sizeof(buf));
	assert_int_equal(addr_format(AF_INET, a, buf, 10), 0); /* 9 chars + NUL: fits exactly */
	assert_string_equal(buf, "127.0.0.1");
	memset(buf, 'G', sizeof(buf));
	assert_int_equal(addr_format(AF_INET, a, buf, 9), -ENOSPC);
	assert_int_equal(buf[9], 'G');
	assert_int_equal(addr_format(AF_INET, a, buf, 0), -ENOSPC);

	pton(AF_INET6, "2001:db8::1", a);
	memset(buf, 'G', sizeof(buf));
	assert_int_equal(addr_format(AF_INET6, a, buf, 12), 0);
	assert_string_equal(buf, "2001:db8::1");
	memset(buf, 'G', sizeof(buf));
	assert_int_equal(addr_format(AF_INET6, a, buf, 11), -ENOSPC);
	assert_int_equal(buf[11], 'G');
}

/* ---- addr_key -------------------------------------------------------------------------- */

static void key_of(int family, const char *text, uint8_t key[16])
{
	uint8_t a[16];

	pton(family, text, a);
	memset(key, 0xaa, 16);
	assert_int_equal(addr_key(family, a, key), 0);
}

/* IPv4 keys are ::ffff:a.b.c.d; IPv6 keys are the address itself. */
static void test_key_layout(void **state)
{
	static const uint8_t want_v4[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1 };
	uint8_t key[16], a[16];

	(void)state;
	key_of(AF_INET, "127.0.0.1", key);
	assert_memory_equal(key, want_v4, 16);

	pton(AF_INET6, "2001:db8::1", a);
	key_of(AF_INET6, "2001:db8::1", key);
	assert_memory_equal(key, a, 16);

	/* An IPv4 buffer's trailing 12 bytes are not part of the key. */
	memset(a, 0x55, 16);
	a[0] = 127, a[1] = 0, a[2] = 0, a[3] = 1;
	assert_int_equal(addr_key(AF_INET, a, key), 0);
	assert_memory_equal(key, want_v4, 16);

	assert_int_equal(addr_key(AF_UNIX, a, key), -EAFNOSUPPORT);
	assert_int_equal(addr_key(AF_UNSPEC, a, key), -EAFNOSUPPORT);
}

/* The same destination gets the same key whether it arrived v4-mapped or as plain IPv4. */
static void test_key_same_for_mapped_and_v4(void **state)
{
	uint8_t a[16], k_mapped[16], k_norm[16], k_v4[16];
	int family;

	(void)state;
	pton(AF_INET6, "::ffff:198.51.100.7", a);
	assert_int_equal(addr_key(AF_INET6, a, k_mapped), 0);
	family = addr_normalize(AF_INET6, a);
	assert_int_equal(addr_key(family, a, k_norm), 0);
	key_of(AF_INET, "198.51.100.7", k_v4);
	assert_memory_equal(k_mapped, k_v4, 16);
	assert_memory_equal(k_norm, k_v4, 16);
}

/*
 * memcmp order of keys is numeric address order across families: ::1 (0...01) sorts before
 * every v4 key (0...ffff:...), v4 keys sort in network byte order (9.x before 10.x, unlike
 * text), and global IPv6 sorts after all of IPv4.
 */
static void test_key_ordering(void **state)
{
	static const struct {
		int family;
		const char *text;
	} sorted[] = {
		{ AF_INET6, "::" },
		{ AF_INET6, "::1" },
		{ AF_INET, "0.0.0.0" },
		{ AF_INET, "1.0.0.255" },
		{ AF_INET, "1.0.1.0" },
		{ AF_INET, "9.255.255.255" },
		{ AF_INET, "10.0.0.0" },
		{ AF_INET, "127.0.0.1" },
		{ AF_INET, "127.0.0.2" },
		{ AF_INET, "255.255.255.255" },
		{ AF_INET6, "::1:0:0:0" },
		{ AF_INET6, "2001:db8::1" },
		{ AF_INET6, "fe80::1" },
		{ AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" },
	};
	const size_t n = sizeof(sorted) / sizeof(sorted[0]);
	uint8_t keys[sizeof(sorted) / sizeof(sorted[0])][16];

	(void)state;
	for (size_t i = 0; i < n; i++)
		key_of(sorted[i].family, sorted[i].text, keys[i]);
	for (size_t i = 0; i + 1 < n; i++) {
		if (memcmp(keys[i], keys[i + 1], 16) >= 0)
			fail_msg("key(%s) should sort before key(%s)", sorted[i].text, sorted[i + 1].text);
	}

	/* The pairs named in the design: 127.0.0.1 < 127.0.0.2, and ::1 before both. */
	uint8_t k1[16], k2[16], k6[16];

	key_of(AF_INET, "127.0.0.1", k1);
	key_of(AF_INET, "127.0.0.2", k2);
	key_of(AF_INET6, "::1", k6);
	assert_true(memcmp(k1, k2, 16) < 0);
	assert_true(memcmp(k6, k1, 16) < 0);
	assert_true(memcmp(k6, k2, 16) < 0);
}

/* ---- addr_proto_name ------------------------------------------------------------------- */

static void test_proto_name(void **state)
{
	char buf[16];

	(void)state;
	assert_string_equal(addr_proto_name(IPPROTO_TCP, buf, sizeof(buf)), "tcp");
	assert_string_equal(addr_proto_name(6, buf, sizeof(buf)), "tcp");
	assert_string_equal(addr_proto_name(17, buf, sizeof(buf)), "udp");

	/* Other numbers are formatted into buf and buf is returned. */
	assert_ptr_equal(addr_proto_name(1, buf, sizeof(buf)), buf);
	assert_string_equal(buf, "ip1");
	assert_string_equal(addr_proto_name(0, buf, sizeof(buf)), "ip0");
	assert_string_equal(addr_proto_name(IPPROTO_SCTP, buf, sizeof(buf)), "ip132");
	assert_string_equal(addr_proto_name(IPPROTO_UDPLITE, buf, sizeof(buf)), "ip136");
	assert_string_equal(addr_proto_name(255, buf, sizeof(buf)), "ip255");
}

/* A short buffer gets a NUL-terminated prefix and nothing past its end. */
static void test_proto_name_small_buffer(void **state)
{
	char buf[8];
	const char *r;

	(void)state;
	memset(buf, 'G', sizeof(buf));
	r = addr_proto_name(132, buf, 4);
	assert_ptr_equal(r, buf);
	assert_true(strnlen(buf, 4) < 4);
	assert_memory_equal(buf, "ip132", strlen(buf)); /* a prefix of the full name */
	assert_int_equal(buf[4], 'G');
	/* tcp/udp do not need the buffer at all. */
	assert_string_equal(addr_proto_name(6, buf, 1), "tcp");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalize_v4mapped),
		cmocka_unit_test(test_normalize_v6_untouched),
		cmocka_unit_test(test_normalize_v4_untouched),
		cmocka_unit_test(test_format_v4_v6),
		cmocka_unit_test(test_format_bad_family),
		cmocka_unit_test(test_format_small_buffer),
		cmocka_unit_test(test_key_layout),
		cmocka_unit_test(test_key_same_for_mapped_and_v4),
		cmocka_unit_test(test_key_ordering),
		cmocka_unit_test(test_proto_name),
		cmocka_unit_test(test_proto_name_small_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
