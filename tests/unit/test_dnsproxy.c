// SPDX-License-Identifier: MIT
/*
 * Unit tests for the pure functions of agent/dnsproxy.c: parsing --upstream into a socket
 * address, and the "addr:port" text stored as a query's resolver and upstream.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>
#include "dnsproxy.h"

/* ---- helpers --------------------------------------------------------------------------- */

/* Parses s and checks it names the IPv4 address text at port (host order). */
static void check_v4(const char *s, const char *text, uint16_t port)
{
	struct dnsproxy_upstream u;
	const struct sockaddr_in *s4 = (const void *)&u.addr;
	struct in_addr want;

	memset(&u, 0xa5, sizeof(u));
	assert_int_equal(inet_pton(AF_INET, text, &want), 1);
	if (dnsproxy_parse_upstream(s, &u) != 0)
		fail_msg("\"%s\" refused", s);
	assert_int_equal(s4->sin_family, AF_INET);
	assert_int_equal(u.len, sizeof(struct sockaddr_in));
	assert_int_equal(s4->sin_port, htons(port)); /* network byte order, as connect() wants */
	assert_memory_equal(&s4->sin_addr, &want, sizeof(want));
}

static void check_v6(const char *s, const char *text, uint16_t port)
{
	struct dnsproxy_upstream u;
	const struct sockaddr_in6 *s6 = (const void *)&u.addr;
	struct in6_addr want;

	memset(&u, 0xa5, sizeof(u));
	assert_int_equal(inet_pton(AF_INET6, text, &want), 1);
	if (dnsproxy_parse_upstream(s, &u) != 0)
		fail_msg("\"%s\" refused", s);
	assert_int_equal(s6->sin6_family, AF_INET6);
	assert_int_equal(u.len, sizeof(struct sockaddr_in6));
	assert_int_equal(s6->sin6_port, htons(port));
	assert_memory_equal(&s6->sin6_addr, &want, sizeof(want));
	/* No stray scope or flow label from whatever was in the buffer. */
	assert_int_equal(s6->sin6_scope_id, 0);
	assert_int_equal(s6->sin6_flowinfo, 0);
}

static void check_refused(const char *s)
{
	struct dnsproxy_upstream u;
	int r;

	memset(&u, 0, sizeof(u));
	r = dnsproxy_parse_upstream(s, &u);
	if (r != -EINVAL)
		fail_msg("\"%s\": %d, not -EINVAL", s, r);
}

static const char *format(int family, const uint8_t *addr, uint16_t port, char *buf, size_t len)
{
	dnsproxy_format_addr(family, addr, htons(port), buf, len);
	return buf;
}

/* ---- dnsproxy_parse_upstream ----------------------------------------------------------- */

/* An IPv4 address, with or without a port; 53 by default. */
static void test_parse_v4(void **state)
{
	check_v4("192.0.2.1", "192.0.2.1", 53);
	check_v4("192.0.2.1:5353", "192.0.2.1", 5353);
	check_v4("127.0.0.53:53", "127.0.0.53", 53);
	check_v4("10.1.2.3:1", "10.1.2.3", 1);
	check_v4("10.1.2.3:65535", "10.1.2.3", 65535);
}

/* An IPv6 address bare (every colon is the address's) or in brackets with a port. */
static void test_parse_v6(void **state)
{
	check_v6("2001:db8::1", "2001:db8::1", 53);
	check_v6("[2001:db8::1]:5353", "2001:db8::1", 5353);
	check_v6("[::1]", "::1", 53);
	check_v6("::1", "::1", 53);
	check_v6("[fd00::53]:53", "fd00::53", 53);
	check_v6("[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535",
		 "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", 65535);
}

/* Anything else is -EINVAL: names, empty or out-of-range ports, broken brackets. */
static void test_parse_rejects(void **state)
{
	static const char *const bad[] = {
		"", "host.example", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:+53", "192.0.2.1: 53", "[::1]:\t53", "192.0.2.1:053535",
		"192.0.2.1:99999999999999999999999", "192.0.2.1:53x", "192.0.2.1:-1",
		"[::1", "[::1]x", "[::1]:", "[::1]:0", "[::1]:65536", "[]", "[]:53",
		"1.2.3.4:53:1", "::1]:53", "192.0.2.256", "192.0.2", ":53", "localhost:53",
		"[host.example]:53",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_refused(bad[i]);
}

/* Input longer than any address is refused without overrunning anything. */
static void test_parse_long(void **state)
{
	char s[512];

	memset(s, '1', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	check_refused(s);
	s[0] = '[';
	s[300] = ']';
	s[301] = '\0';
	check_refused(s);
	memset(s, 0, sizeof(s));
	memset(s, '1', 200);
	s[200] = ':';
	s[201] = '5';
	s[202] = '3';
	check_refused(s);
}

/* ---- dnsproxy_format_addr -------------------------------------------------------------- */

static void test_format(void **state)
{
	static const uint8_t v4[4] = { 127, 0, 0, 2 };
	static const uint8_t v6[16] = { [15] = 1 };
	static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, [12] = 10, [15] = 1 };
	static const uint8_t doc[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x53 };
	char buf[64];

	/* v4 reads 4 bytes only: the sockaddr_in's address is no longer. */
	assert_string_equal(format(AF_INET, v4, 53, buf, sizeof(buf)), "127.0.0.2:53");
	assert_string_equal(format(AF_INET6, v6, 53, buf, sizeof(buf)), "[::1]:53");
	assert_string_equal(format(AF_INET6, mapped, 53, buf, sizeof(buf)), "10.0.0.1:53");
	/* The port is given in network byte order and shown in host order. */
	assert_string_equal(format(AF_INET, v4, 5353, buf, sizeof(buf)), "127.0.0.2:5353");
	assert_string_equal(format(AF_INET6, doc, 65535, buf, sizeof(buf)), "[2001:db8::53]:65535");

	/* A short buffer gets a terminated prefix. */
	memset(buf, 'x', sizeof(buf));
	format(AF_INET, v4, 53, buf, 8);
	assert_string_equal(buf, "127.0.0");
	assert_int_equal(buf[8], 'x');
}

/* What parse accepts, format prints back in the canonical form. */
static void test_round_trip(void **state)
{
	static const char *const in[][2] = {
		{ "192.0.2.1", "192.0.2.1:53" },
		{ "192.0.2.1:5353", "192.0.2.1:5353" },
		{ "2001:db8::1", "[2001:db8::1]:53" },
		{ "[2001:DB8:0::1]:5353", "[2001:db8::1]:5353" },
		{ "[::ffff:192.0.2.9]:53", "192.0.2.9:53" },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		struct dnsproxy_upstream u;

		assert_int_equal(dnsproxy_parse_upstream(in[i][0], &u), 0);
		if (u.addr.ss_family == AF_INET) {
			const struct sockaddr_in *s4 = (const void *)&u.addr;

			dnsproxy_format_addr(AF_INET, (const uint8_t *)&s4->sin_addr, s4->sin_port,
					     buf, sizeof(buf));
		} else {
			const struct sockaddr_in6 *s6 = (const void *)&u.addr;

			dnsproxy_format_addr(AF_INET6, s6->sin6_addr.s6_addr, s6->sin6_port, buf,
					     sizeof(buf));
		}
		assert_string_equal(buf, in[i][1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_v4),
		cmocka_unit_test(test_parse_v6),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_parse_long),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
