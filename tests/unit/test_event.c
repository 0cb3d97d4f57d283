// SPDX-License-Identifier: MIT
/*
 * Unit tests for agent/event.c: decoding and validating ring-buffer samples (struct nt_event
 * from bpf/nettrail.h), the boot-time to wall-clock offset, and the verdict/kind names.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <cmocka.h>
#include "event.h"

#define BOOT_TO_WALL 1700000000000000000LL /* 2023-11-14T22:13:20Z, a plausible offset */

/* A well-formed sample as the BPF program writes it: TCP connect to 127.0.0.1:80. */
static void make_event(struct nt_event *e)
{
	memset(e, 0, sizeof(*e));
	e->ts_ns = 123456789012ULL;
	e->start_ns = 98765432100ULL;
	e->cgroup_id = 0x1234567890ULL;
	e->sock_cookie = 42;
	e->pid = 4242;
	e->tid = 4243;
	e->ppid = 1;
	e->uid = 1000;
	e->gid = 1001;
	e->port = 80;
	e->family = AF_INET;
	e->proto = IPPROTO_TCP;
	e->kind = NT_EV_CONNECT;
	e->verdict = NT_VERDICT_ALLOWED;
	assert_int_equal(inet_pton(AF_INET, "127.0.0.1", e->addr), 1);
	memcpy(e->comm, "curl", 5);
	memcpy(e->argv, "curl\0http://localhost/", 22);
	e->argv_len = 22;
}

/* ---- well-formed samples --------------------------------------------------------------- */

/* Every field the store relies on is copied; time is boot time + offset (the wall clock). */
static void test_decode_ipv4(void **state)
{
	static const uint8_t want_addr[16] = { 127, 0, 0, 1 };
	struct nt_event e;
	struct conn_record r;

	(void)state;
	make_event(&e);
	assert_int_equal(event_decode(&e, sizeof(e), BOOT_TO_WALL, &r), 0);
	assert_int_equal(r.time_ns, BOOT_TO_WALL + 123456789012LL);
	assert_int_equal(r.start_ns, 98765432100ULL);
	assert_int_equal(r.cgroup_id, 0x1234567890ULL);
	assert_int_equal(r.pid, 4242);
	assert_int_equal(r.ppid, 1);
	assert_int_equal(r.uid, 1000);
	assert_int_equal(r.gid, 1001);
	assert_int_equal(r.port, 80);
	assert_int_equal(r.family, AF_INET);
	assert_int_equal(r.proto, IPPROTO_TCP);
	assert_int_equal(r.kind, NT_EV_CONNECT);
	assert_int_equal(r.verdict, NT_VERDICT_ALLOWED);
	assert_memory_equal(r.addr, want_addr, 16);
}

/* An IPv6 UDP sendmsg event keeps its family, address, kind and verdict. */
static void test_decode_ipv6(void **state)
{
	static const uint8_t loopback6[16] = { [15] = 1 };
	struct nt_event e;
	struct conn_record r;

	(void)state;
	make_event(&e);
	e.family = AF_INET6;
	memcpy(e.addr, loopback6, 16);
	e.proto = IPPROTO_UDP;
	e.port = 53;
	e.kind = NT_EV_SENDMSG;
	e.verdict = NT_VERDICT_BLOCKED;
	assert_int_equal(event_decode(&e, sizeof(e), BOOT_TO_WALL, &r), 0);
	assert_int_equal(r.family, AF_INET6);
	assert_memory_equal(r.addr, loopback6, 16);
	assert_int_equal(r.proto, IPPROTO_UDP);
	assert_int_equal(r.port, 53);
	assert_int_equal(r.kind, NT_EV_SENDMSG);
	assert_int_equal(r.verdict, NT_VERDICT_BLOCKED);
	assert_int_equal(r.time_ns, BOOT_TO_WALL + 123456789012LL);
}

/* The offset is added as given, whatever its sign: no clamping, no reinterpretation. */
static void test_decode_zero_offset(void **state)
{
	struct nt_event e;
	struct conn_record r;

	(void)state;
	make_event(&e);
	assert_int_equal(event_decode(&e, sizeof(e), 0, &r), 0);
	assert_int_equal(r.time_ns, 123456789012LL);
	assert_int_equal(event_decode(&e, sizeof(e), -12, &r), 0);
	assert_int_equal(r.time_ns, 123456789000LL);
}

/* ::ffff:127.0.0.2 (a dual-stack socket connecting to IPv4) is stored as IPv4 127.0.0.2. */
static void test_decode_v4mapped(void **state)
{
	static const uint8_t want_addr[16] = { 127, 0, 0, 2 };
	struct nt_event e;
	struct conn_record r;

	(void)state;
	make_event(&e);
	e.family = AF_INET6;
	memset(e.addr, 0, 16);
	assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.2", e.addr), 1);
	assert_int_equal(event_decode(&e, sizeof(e), BOOT_TO_WALL, &r), 0);
	assert_int_equal(r.family, AF_INET);
	assert_memory_equal(r.addr, want_addr, 16);
}

/* The ring buffer gives no alignment guarantee to the consumer: an odd address must work. */
static void test_decode_unaligned(void **state)
{
	static const uint8_t want_addr[16] = { 127, 0, 0, 1 };
	char buf[sizeof(struct nt_event) + 8];
	struct nt_event e;
	struct conn_record r;

	(void)state;
	make_event(&e);
	e.ts_ns = 0x0102030405060708ULL;
	memcpy(buf + 1, &e, sizeof(e));
	assert_int_equal(event_decode(buf + 1, sizeof(e), 0, &r), 0);
	assert_int_equal(r.time_ns, 0x0102030405060708LL);
	assert_int_equal(r.pid, 4242);
	assert_int_equal(r.cgroup_id, 0x1234567890ULL);
	assert_int_equal(r.port, 80);
	assert_memory_equal(r.addr, want_addr, 16);
}

/* argv_len == NT_ARGV_LEN (argv filled up) is the largest valid value, not an error. */
static void test_decode_argv_full(void **state)
{
	struct nt_event e;
	struct conn_record r;

	(void)state;
	make_event(&e);
	e.argv_len = NT_ARGV_LEN;
	assert_int_equal(event_decode(&e, sizeof(e), 0, &r), 0);
	e.argv_len = 0;
	assert_int_equal(event_decode(&e, sizeof(e), 0, &r), 0);
}

/* ---- malformed samples ----------------------------------------------------------------- */

/* A sample of another size is a layout drift between BPF and agent: reject, never read past. */
static void test_decode_bad_length(void **state)
{
	char buf[sizeof(struct nt_event) + 1];
	struct nt_event e;
	struct conn_record r;

	(void)state;
	make_event(&e);
	memcpy(buf, &e, sizeof(e));
	buf[sizeof(e)] = 0;
	assert_int_equal(event_decode(buf, sizeof(e) - 1, 0, &r), -EBADMSG);
	assert_int_equal(event_decode(buf, sizeof(e) + 1, 0, &r), -EBADMSG);
	assert_int_equal(event_decode(buf, 0, 0, &r), -EBADMSG);
}

/* Only AF_INET and AF_INET6 can be formatted and stored. */
static void test_decode_bad_family(void **state)
{
	static const int families[] = { AF_UNIX, AF_UNSPEC, AF_PACKET, 255 };
	struct nt_event e;
	struct conn_record r;

	(void)state;
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		make_event(&e);
		e.family = (__u8)families[i];
		assert_int_equal(event_decode(&e, sizeof(e), 0, &r), -EBADMSG);
	}
}

/* Kinds outside enum nt_event_kind (0, 3, 255) are rejected. */
static void test_decode_bad_kind(void **state)
{
	static const int kinds[] = { 0, 3, 255 };
	struct nt_event e;
	struct conn_record r;

	(void)state;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		make_event(&e);
		e.kind = (__u8)kinds[i];
		assert_int_equal(event_decode(&e, sizeof(e), 0, &r), -EBADMSG);
	}
}

/* Verdicts past NT_VERDICT_BLOCKED are rejected; each known one is accepted. */
static void test_decode_bad_verdict(void **state)
{
	struct nt_event e;
	struct conn_record r;

	(void)state;
	make_event(&e);
	for (int v = NT_VERDICT_ALLOWED; v <= NT_VERDICT_BLOCKED; v++) {
		e.verdict = (__u8)v;
		assert_int_equal(event_decode(&e, sizeof(e), 0, &r), 0);
		assert_int_equal(r.verdict, v);
	}
	e.verdict = NT_VERDICT_BLOCKED + 1;
	assert_int_equal(event_decode(&e, sizeof(e), 0, &r), -EBADMSG);
	e.verdict = 255;
	assert_int_equal(event_decode(&e, sizeof(e), 0, &r), -EBADMSG);
}

/* argv_len larger than the argv array would make a reader overrun it. */
static void test_decode_bad_argv_len(void **state)
{
	struct nt_event e;
	struct conn_record r;

	(void)state;
	make_event(&e);
	e.argv_len = NT_ARGV_LEN + 1;
	assert_int_equal(event_decode(&e, sizeof(e), 0, &r), -EBADMSG);
	e.argv_len = 0xffff;
	assert_int_equal(event_decode(&e, sizeof(e), 0, &r), -EBADMSG);
}

/* ---- clocks and names ------------------------------------------------------------------ */

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	assert_int_equal(clock_gettime(clk, &ts), 0);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * boot time + the offset is the wall clock: event times land at the real time. Best of a few
 * tries, so that a preemption between the clock reads cannot fail the test; 50 ms is far
 * below the error of a wrong formula (a sign slip in the ns part is off by up to 2 s).
 */
static void test_boot_to_wall(void **state)
{
	int64_t best = INT64_MAX, off = 0, boot = 0;

	(void)state;
	for (int i = 0; i < 5; i++) {
		int64_t wall, diff;

		off = event_boot_to_wall_ns();
		boot = now_ns(CLOCK_BOOTTIME);
		wall = now_ns(CLOCK_REALTIME);
		diff = boot + off - wall;
		if (diff < 0)
			diff = -diff;
		if (diff < best)
			best = diff;
	}
	assert_true(best < 50000000LL);
	/* The result is an epoch time (after 2020-01-01) minus an uptime. */
	assert_true(off + boot > 1577836800LL * 1000000000LL);
}

/* These strings are stored in the database and matched by queries and reports. */
static void test_names(void **state)
{
	(void)state;
	assert_string_equal(event_verdict_name(NT_VERDICT_ALLOWED), "allowed");
	assert_string_equal(event_verdict_name(NT_VERDICT_WOULD_BLOCK), "would_block");
	assert_string_equal(event_verdict_name(NT_VERDICT_BLOCKED), "blocked");
	assert_string_equal(event_verdict_name(3), "unknown");
	assert_string_equal(event_verdict_name(-1), "unknown");
	assert_string_equal(event_kind_name(NT_EV_CONNECT), "connect");
	assert_string_equal(event_kind_name(NT_EV_SENDMSG), "sendto");
	assert_string_equal(event_kind_name(NT_EV_UNIX), "connect");
	assert_string_equal(event_kind_name(0), "unknown");
	assert_string_equal(event_kind_name(4), "unknown");
	/* NT_EV_UNIX events store an index into this table: its order is part of the format. */
	assert_string_equal(event_resolver_path(0), "/run/systemd/resolve/io.systemd.Resolve");
	assert_string_equal(event_resolver_path(1), "/run/nscd/socket");
	assert_string_equal(event_resolver_path(2), "/var/run/nscd/socket");
	assert_null(event_resolver_path(3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_ipv4),
		cmocka_unit_test(test_decode_ipv6),
		cmocka_unit_test(test_decode_zero_offset),
		cmocka_unit_test(test_decode_v4mapped),
		cmocka_unit_test(test_decode_unaligned),
		cmocka_unit_test(test_decode_argv_full),
		cmocka_unit_test(test_decode_bad_length),
		cmocka_unit_test(test_decode_bad_family),
		cmocka_unit_test(test_decode_bad_kind),
		cmocka_unit_test(test_decode_bad_verdict),
		cmocka_unit_test(test_decode_bad_argv_len),
		cmocka_unit_test(test_boot_to_wall),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
