// SPDX-License-Identifier: MIT
/* Unit tests for agent/dns.c: DNS wire-format parsing of queries and responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "dns.h"

/* ---- messages -------------------------------------------------------------------------- */

/* www.Example.COM A? with RD; the question is 21 bytes at offset 12. */
static const uint8_t q_a[] = {
	0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
	3, 'w', 'w', 'w', 7, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'C', 'O', 'M', 0,
	0, DNS_T_A, 0, 1,
};

/* www.example.com AAAA? with RD and AD, and an OPT: 1232 bytes, DO, a cookie option. */
static const uint8_t q_edns[] = {
	0xbe, 0xef, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1,
	3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
	0, DNS_T_AAAA, 0, 1,
	0, 0, DNS_T_OPT, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 12,
	0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
};

/* Two A answers, both owners compressed to the question (0xc00c). 65 bytes. */
static const uint8_t r_a[] = {
	0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
	3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
	0, DNS_T_A, 0, 1,
	0xc0, 0x0c, 0, DNS_T_A, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 93, 184, 216, 34,
	0xc0, 0x0c, 0, DNS_T_A, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1,
};

/* v6.example.org AAAA 2001:db8::1, TTL 300. */
static const uint8_t r_aaaa[] = {
	0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
	2, 'v', '6', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'o', 'r', 'g', 0,
	0, DNS_T_AAAA, 0, 1,
	0xc0, 0x0c, 0, DNS_T_AAAA, 0, 1, 0, 0, 0x01, 0x2c, 0, 16,
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
};

/*
 * www.example.com CNAME cdn.example.net (at 45), cdn.example.net CNAME edge + pointer to 45
 * (edge at 74), edge.cdn.example.net A 192.0.2.7. 97 bytes.
 */
static const uint8_t r_cname[] = {
	0x00, 0x07, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0,
	3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
	0, DNS_T_A, 0, 1,
	/* 33 */ 0xc0, 0x0c, 0, DNS_T_CNAME, 0, 1, 0, 0, 1, 0x2c, 0, 17,
	/* 45 */ 3, 'c', 'd', 'n', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'n', 'e', 't', 0,
	/* 62 */ 0xc0, 45, 0, DNS_T_CNAME, 0, 1, 0, 0, 0, 60, 0, 7,
	/* 74 */ 4, 'e', 'd', 'g', 'e', 0xc0, 45,
	/* 81 */ 0xc0, 74, 0, DNS_T_A, 0, 1, 0, 0, 0, 20, 0, 4, 192, 0, 2, 7,
};

/* ---- a builder for the messages too long or too regular to write out ------------------- */

struct msg {
	uint8_t b[8192];
	size_t n;
};

static void m_bytes(struct msg *m, const void *p, size_t n)
{
	assert_true(n <= sizeof(m->b) - m->n);
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void m_u8(struct msg *m, uint8_t v)
{
	m_bytes(m, &v, 1);
}

static void m_u16(struct msg *m, uint16_t v)
{
	m_u8(m, v >> 8);
	m_u8(m, v & 0xff);
}

static void m_u32(struct msg *m, uint32_t v)
{
	m_u16(m, v >> 16);
	m_u16(m, v & 0xffff);
}

static void m_header(struct msg *m, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
		     uint16_t ar)
{
	m->n = 0;
	m_u16(m, 0x4242);
	m_u16(m, flags);
	m_u16(m, qd);
	m_u16(m, an);
	m_u16(m, ns);
	m_u16(m, ar);
}

/* A label of n copies of c. */
static void m_label(struct msg *m, uint8_t n, char c)
{
	m_u8(m, n);
	while (n--)
		m_u8(m, (uint8_t)c);
}

/* A dotted name of plain labels, then the root. */
static void m_name(struct msg *m, const char *dotted)
{
	while (*dotted) {
		size_t n = strcspn(dotted, ".");

		m_u8(m, (uint8_t)n);
		m_bytes(m, dotted, n);
		dotted += n;
		if (*dotted == '.')
			dotted++;
	}
	m_u8(m, 0);
}

static void m_ptr(struct msg *m, uint16_t off)
{
	m_u16(m, 0xc000 | off);
}

/* What follows an owner name: type, class, TTL, rdlength. */
static void m_rr(struct msg *m, uint16_t type, uint16_t rclass, uint32_t ttl, uint16_t rdlen)
{
	m_u16(m, type);
	m_u16(m, rclass);
	m_u32(m, ttl);
	m_u16(m, rdlen);
}

/* ---- fixtures -------------------------------------------------------------------------- */

/* struct dns_response is ~130 KiB: one per test, on the heap. */
static int resp_setup(void **state)
{
	*state = test_calloc(1, sizeof(struct dns_response));
	return *state ? 0 : -1;
}

static int resp_teardown(void **state)
{
	test_free(*state);
	return 0;
}

static uint8_t *copy_of(const uint8_t *src, size_t len, size_t cap)
{
	uint8_t *p = test_calloc(1, cap);

	assert_non_null(p);
	memcpy(p, src, len);
	return p;
}

/* ---- header ---------------------------------------------------------------------------- */

static void test_header(void **state)
{
	struct dns_header h;

	(void)state;
	assert_int_equal(dns_parse_header(r_a, sizeof(r_a), &h), DNS_OK);
	assert_int_equal(h.id, 0x1234);
	assert_int_equal(h.flags, 0x8180);
	assert_int_equal(h.qdcount, 1);
	assert_int_equal(h.ancount, 2);
	assert_int_equal(h.nscount, 0);
	assert_int_equal(h.arcount, 0);
	assert_int_equal(dns_qr(h.flags), 1);
	assert_int_equal(dns_opcode(h.flags), 0);
	assert_int_equal(dns_tc(h.flags), 0);
	assert_int_equal(dns_rcode(h.flags), DNS_R_NOERROR);
	assert_int_equal(dns_opcode(0x2800), 5);  /* UPDATE */
	assert_int_equal(dns_tc(0x8380), 1);
	assert_int_equal(dns_rcode(0x8183), DNS_R_NXDOMAIN);
	assert_int_equal(dns_parse_header(r_a, DNS_HDR_LEN - 1, &h), DNS_ETRUNC);
	assert_int_equal(dns_parse_header(NULL, 0, &h), DNS_ETRUNC);
}

static void test_get_set_id(void **state)
{
	uint8_t buf[sizeof(q_a)];

	(void)state;
	memcpy(buf, q_a, sizeof(q_a));
	assert_int_equal(dns_get_id(buf), 0x1234);
	dns_set_id(buf, 0xfe01);
	assert_int_equal(dns_get_id(buf), 0xfe01);
	assert_int_equal(buf[0], 0xfe);
	assert_int_equal(buf[1], 0x01);
	assert_memory_equal(buf + 2, q_a + 2, sizeof(q_a) - 2);
}

/* ---- queries --------------------------------------------------------------------------- */

/* Upper case is folded, there is no trailing dot, offsets point at the question. */
static void test_query_a(void **state)
{
	struct dns_query q;

	(void)state;
	assert_int_equal(dns_parse_query(q_a, sizeof(q_a), &q), DNS_OK);
	assert_int_equal(q.hdr.id, 0x1234);
	assert_string_equal(q.q.name, "www.example.com");
	assert_int_equal(q.q.qtype, DNS_T_A);
	assert_int_equal(q.q.qclass, 1);
	assert_int_equal(q.q.wire_off, 12);
	assert_int_equal(q.q.wire_len, 21);
	assert_int_equal(q.has_edns, 0);
	assert_int_equal(q.edns_udp_size, 0);
}

static void test_query_edns(void **state)
{
	struct dns_query q;

	(void)state;
	assert_int_equal(dns_parse_query(q_edns, sizeof(q_edns), &q), DNS_OK);
	assert_string_equal(q.q.name, "www.example.com");
	assert_int_equal(q.q.qtype, DNS_T_AAAA);
	assert_int_equal(q.has_edns, 1);
	assert_int_equal(q.edns_udp_size, 1232);
	assert_int_equal(q.hdr.arcount, 1);
}

/* The root is ".", its question 5 bytes. */
static void test_query_root(void **state)
{
	static const uint8_t root[] = {
		0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, DNS_T_NS, 0, 1,
	};
	struct dns_query q;

	(void)state;
	assert_int_equal(dns_parse_query(root, sizeof(root), &q), DNS_OK);
	assert_string_equal(q.q.name, ".");
	assert_int_equal(q.q.qtype, DNS_T_NS);
	assert_int_equal(q.q.wire_len, 5);
}

/* Dots, spaces, backslashes, NULs and high bytes inside labels are \DDD; '-' and '_' are not. */
static void test_query_escapes(void **state)
{
	static const uint8_t esc[] = {
		0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
		3, 'A', '.', 'b', 3, 'x', ' ', 'y', 1, 0xff, 4, '_', 't', 'c', 'p',
		1, '\\', 2, 'a', 0, 3, 'm', '-', 'Z', 0,
		0, DNS_T_SRV, 0, 1,
	};
	struct dns_query q;

	(void)state;
	assert_int_equal(dns_parse_query(esc, sizeof(esc), &q), DNS_OK);
	assert_string_equal(q.q.name, "a\\046b.x\\032y.\\255._tcp.\\092.a\\000.m-z");
	assert_int_equal(q.q.qtype, DNS_T_SRV);
}

static void test_query_rejects(void **state)
{
	uint8_t buf[sizeof(q_edns) + 32];
	struct dns_query q;

	(void)state;
	/* Two questions, or none. */
	memcpy(buf, q_a, sizeof(q_a));
	buf[5] = 2;
	assert_int_equal(dns_parse_query(buf, sizeof(q_a), &q), DNS_EFORMAT);
	buf[5] = 0;
	assert_int_equal(dns_parse_query(buf, sizeof(q_a), &q), DNS_EFORMAT);
	/* A response is not a query. */
	assert_int_equal(dns_parse_query(r_a, sizeof(r_a), &q), DNS_EFORMAT);
	/* Answers or authority in a query. */
	memcpy(buf, q_a, sizeof(q_a));
	buf[7] = 1;
	assert_int_equal(dns_parse_query(buf, sizeof(q_a), &q), DNS_EFORMAT);
	buf[7] = 0;
	buf[9] = 1;
	assert_int_equal(dns_parse_query(buf, sizeof(q_a), &q), DNS_EFORMAT);
	/* Opcode STATUS (2). */
	memcpy(buf, q_a, sizeof(q_a));
	buf[2] |= 2 << 3;
	assert_int_equal(dns_parse_query(buf, sizeof(q_a), &q), DNS_EFORMAT);
	/* Trailing bytes. */
	memcpy(buf, q_a, sizeof(q_a));
	buf[sizeof(q_a)] = 0;
	assert_int_equal(dns_parse_query(buf, sizeof(q_a) + 1, &q), DNS_ETRAIL);
	/* An additional record announced but absent; one cut short. */
	memcpy(buf, q_a, sizeof(q_a));
	buf[11] = 1;
	assert_int_equal(dns_parse_query(buf, sizeof(q_a), &q), DNS_ECOUNT);
	assert_int_equal(dns_parse_query(q_edns, sizeof(q_edns) - 1, &q), DNS_ETRUNC);
	/* A question cut short. */
	assert_int_equal(dns_parse_query(q_a, sizeof(q_a) - 1, &q), DNS_ETRUNC);
	assert_int_equal(dns_parse_query(q_a, 20, &q), DNS_ETRUNC);
}

static void test_query_opt_rules(void **state)
{
	uint8_t buf[sizeof(q_edns) * 2];
	size_t opt = sizeof(q_edns) - 23;  /* the OPT record: 11 fixed bytes and 12 of rdata */
	struct dns_query q;

	(void)state;
	/* Two OPT records. */
	memcpy(buf, q_edns, sizeof(q_edns));
	memcpy(buf + sizeof(q_edns), q_edns + opt, 23);
	buf[11] = 2;
	assert_int_equal(dns_parse_query(buf, sizeof(q_edns) + 23, &q), DNS_EFORMAT);
	/* An OPT not owned by the root: a pointer to www.example.com. */
	memcpy(buf, q_edns, opt);
	buf[opt] = 0xc0;
	buf[opt + 1] = 12;
	memcpy(buf + opt + 2, q_edns + opt + 1, 22);
	assert_int_equal(dns_parse_query(buf, sizeof(q_edns) + 1, &q), DNS_EFORMAT);
	/* Another record before the OPT is walked, and the OPT still found. */
	memcpy(buf, q_edns, opt);
	buf[11] = 2;
	memcpy(buf + opt, (const uint8_t[]){ 0xc0, 12, 0, DNS_T_A, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4 }, 16);
	memcpy(buf + opt + 16, q_edns + opt, 23);
	assert_int_equal(dns_parse_query(buf, sizeof(q_edns) + 16, &q), DNS_OK);
	assert_int_equal(q.has_edns, 1);
	assert_int_equal(q.edns_udp_size, 1232);
}

/* ---- responses ------------------------------------------------------------------------- */

static void test_response_a(void **state)
{
	struct dns_response *r = *state;
	static const uint8_t want0[16] = { 93, 184, 216, 34 };
	static const uint8_t want1[16] = { 10, 0, 0, 1 };

	assert_int_equal(dns_parse_response(r_a, sizeof(r_a), r), DNS_OK);
	assert_int_equal(r->hdr.id, 0x1234);
	assert_string_equal(r->q.name, "www.example.com");
	assert_int_equal(r->q.qtype, DNS_T_A);
	assert_int_equal(r->n_answers, 2);
	assert_int_equal(r->n_rrs, 2);
	assert_int_equal(r->truncated, 0);
	assert_string_equal(r->rrs[0].name, "www.example.com");
	assert_int_equal(r->rrs[0].type, DNS_T_A);
	assert_int_equal(r->rrs[0].ttl, 3600);
	assert_memory_equal(r->rrs[0].addr, want0, 16);
	assert_string_equal(r->rrs[0].target, "");
	assert_string_equal(r->rrs[1].name, "www.example.com");
	assert_int_equal(r->rrs[1].ttl, 60);
	assert_memory_equal(r->rrs[1].addr, want1, 16);
}

static void test_response_aaaa(void **state)
{
	struct dns_response *r = *state;
	static const uint8_t want[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };

	assert_int_equal(dns_parse_response(r_aaaa, sizeof(r_aaaa), r), DNS_OK);
	assert_string_equal(r->q.name, "v6.example.org");
	assert_int_equal(r->n_rrs, 1);
	assert_string_equal(r->rrs[0].name, "v6.example.org");
	assert_int_equal(r->rrs[0].type, DNS_T_AAAA);
	assert_int_equal(r->rrs[0].ttl, 300);
	assert_memory_equal(r->rrs[0].addr, want, 16);
}

/* Targets and owners put together from pointers into earlier rdata. */
static void test_response_cname_chain(void **state)
{
	struct dns_response *r = *state;
	static const uint8_t want[16] = { 192, 0, 2, 7 };

	assert_int_equal(dns_parse_response(r_cname, sizeof(r_cname), r), DNS_OK);
	assert_int_equal(r->n_answers, 3);
	assert_int_equal(r->n_rrs, 3);
	assert_string_equal(r->rrs[0].name, "www.example.com");
	assert_int_equal(r->rrs[0].type, DNS_T_CNAME);
	assert_string_equal(r->rrs[0].target, "cdn.example.net");
	assert_int_equal(r->rrs[0].ttl, 300);
	assert_string_equal(r->rrs[1].name, "cdn.example.net");
	assert_int_equal(r->rrs[1].type, DNS_T_CNAME);
	assert_string_equal(r->rrs[1].target, "edge.cdn.example.net");
	assert_string_equal(r->rrs[2].name, "edge.cdn.example.net");
	assert_int_equal(r->rrs[2].type, DNS_T_A);
	assert_int_equal(r->rrs[2].ttl, 20);
	assert_memory_equal(r->rrs[2].addr, want, 16);
}

/*
 * Every answer is walked; only IN A/AAAA of the right size and CNAMEs whose target fits in
 * the rdata are kept. The authority (SOA) and additional (OPT) sections are walked too.
 */
static void test_response_keeps_only_addresses(void **state)
{
	struct dns_response *r = *state;
	struct msg m = { .n = 0 };
	static const uint8_t want[16] = { 198, 51, 100, 9 };

	m_header(&m, 0x8180, 1, 8, 1, 1);
	m_name(&m, "example.com");
	m_u16(&m, DNS_T_ANY);
	m_u16(&m, 1);
	m_ptr(&m, 12); m_rr(&m, DNS_T_MX, 1, 60, 4); m_u16(&m, 10); m_ptr(&m, 12);
	m_ptr(&m, 12); m_rr(&m, DNS_T_TXT, 1, 60, 3); m_u8(&m, 2); m_bytes(&m, "hi", 2);
	m_ptr(&m, 12); m_rr(&m, DNS_T_A, 3, 60, 4); m_u32(&m, 0x7f000001);       /* class CH */
	m_ptr(&m, 12); m_rr(&m, DNS_T_A, 1, 60, 5); m_bytes(&m, "\1\2\3\4\5", 5); /* 5 bytes */
	m_ptr(&m, 12); m_rr(&m, DNS_T_AAAA, 1, 60, 4); m_u32(&m, 1);               /* 4 bytes */
	/* A CNAME whose target runs past its rdlength (the rest of the name is the next RR). */
	m_ptr(&m, 12); m_rr(&m, DNS_T_CNAME, 1, 60, 2); m_label(&m, 1, 'x');
	/* A CNAME whose target has a bad pointer. */
	m_ptr(&m, 12); m_rr(&m, DNS_T_CNAME, 1, 60, 2); m_ptr(&m, 0x3fff);
	/* The one kept: TTL with the top bit set counts as 0. */
	m_ptr(&m, 12); m_rr(&m, DNS_T_A, 1, 0x80000001u, 4); m_bytes(&m, want, 4);
	/* Authority: SOA. */
	m_ptr(&m, 12); m_rr(&m, DNS_T_SOA, 1, 60, 2 + 2 + 20); m_ptr(&m, 12); m_ptr(&m, 12);
	m_u32(&m, 1); m_u32(&m, 2); m_u32(&m, 3); m_u32(&m, 4); m_u32(&m, 5);
	/* Additional: OPT. */
	m_u8(&m, 0); m_rr(&m, DNS_T_OPT, 1232, 0, 0);

	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_OK);
	assert_int_equal(r->q.qtype, DNS_T_ANY);
	assert_int_equal(r->n_answers, 8);
	assert_int_equal(r->n_rrs, 1);
	assert_int_equal(r->rrs[0].type, DNS_T_A);
	assert_string_equal(r->rrs[0].name, "example.com");
	assert_int_equal(r->rrs[0].ttl, 0);
	assert_memory_equal(r->rrs[0].addr, want, 16);
}

/* More answers than DNS_MAX_RRS: all counted, the first 64 kept. */
static void test_response_many_answers(void **state)
{
	struct dns_response *r = *state;
	struct msg m = { .n = 0 };
	unsigned i;

	m_header(&m, 0x8180, 1, 70, 0, 0);
	m_name(&m, "many.example");
	m_u16(&m, DNS_T_A);
	m_u16(&m, 1);
	for (i = 0; i < 70; i++) {
		m_ptr(&m, 12);
		m_rr(&m, DNS_T_A, 1, i, 4);
		m_u32(&m, 0x0a000000u | i);
	}
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_OK);
	assert_int_equal(r->n_answers, 70);
	assert_int_equal(r->n_rrs, DNS_MAX_RRS);
	assert_int_equal(r->rrs[63].ttl, 63);
	assert_int_equal(r->rrs[63].addr[3], 63);
	assert_string_equal(r->rrs[63].name, "many.example");
}

/* NXDOMAIN with an SOA in the authority section; and an error with no question at all. */
static void test_response_nxdomain(void **state)
{
	struct dns_response *r = *state;
	struct msg m = { .n = 0 };
	char buf[16];

	m_header(&m, 0x8183, 1, 0, 1, 0);
	m_name(&m, "nope.example.com");
	m_u16(&m, DNS_T_A);
	m_u16(&m, 1);
	m_u8(&m, 7); m_bytes(&m, "example", 7); m_u8(&m, 3); m_bytes(&m, "com", 3); m_u8(&m, 0);
	m_rr(&m, DNS_T_SOA, 1, 900, 22);
	m_u8(&m, 0); m_u8(&m, 0);
	m_u32(&m, 1); m_u32(&m, 2); m_u32(&m, 3); m_u32(&m, 4); m_u32(&m, 5);
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_OK);
	assert_int_equal(dns_rcode(r->hdr.flags), DNS_R_NXDOMAIN);
	assert_string_equal(dns_rcode_name(dns_rcode(r->hdr.flags), buf), "NXDOMAIN");
	assert_string_equal(r->q.name, "nope.example.com");
	assert_int_equal(r->n_answers, 0);
	assert_int_equal(r->n_rrs, 0);

	m_header(&m, 0x8182, 0, 0, 0, 0);
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_OK);
	assert_int_equal(r->q.qtype, 0);
	assert_string_equal(r->q.name, "");
	assert_int_equal(dns_rcode(r->hdr.flags), DNS_R_SERVFAIL);
}

/* A query is not a response; nor is a response with two questions. */
static void test_response_rejects(void **state)
{
	struct dns_response *r = *state;
	uint8_t *buf = copy_of(r_a, sizeof(r_a), sizeof(r_a) + 1);

	assert_int_equal(dns_parse_response(q_a, sizeof(q_a), r), DNS_EFORMAT);
	buf[5] = 2;
	assert_int_equal(dns_parse_response(buf, sizeof(r_a), r), DNS_EFORMAT);
	buf[5] = 1;
	/* Trailing garbage. */
	buf[sizeof(r_a)] = 0xee;
	assert_int_equal(dns_parse_response(buf, sizeof(r_a) + 1, r), DNS_ETRAIL);
	test_free(buf);
}

/* ---- counts and truncation ------------------------------------------------------------- */

/* ancount says 3, the message holds 2: a lie, unless TC says the rest did not fit. */
static void test_lying_counts(void **state)
{
	struct dns_response *r = *state;
	uint8_t *buf = copy_of(r_a, sizeof(r_a), sizeof(r_a));

	buf[7] = 3;
	assert_int_equal(dns_parse_response(buf, sizeof(r_a), r), DNS_ECOUNT);
	buf[7] = 2;  /* an arcount the message does not hold is as much a lie */
	buf[11] = 1;
	assert_int_equal(dns_parse_response(buf, sizeof(r_a), r), DNS_ECOUNT);
	buf[11] = 0;
	buf[7] = 3;
	buf[2] |= DNS_F_TC >> 8;
	assert_int_equal(dns_parse_response(buf, sizeof(r_a), r), DNS_OK);
	assert_int_equal(r->truncated, 1);
	assert_int_equal(r->n_answers, 2);
	assert_int_equal(r->n_rrs, 2);
	/* qdcount 1 and nothing after the header. */
	buf[2] &= ~(DNS_F_TC >> 8);
	assert_int_equal(dns_parse_response(buf, DNS_HDR_LEN, r), DNS_ECOUNT);
	test_free(buf);
}

/* The message ends inside the second answer. */
static void test_truncated(void **state)
{
	struct dns_response *r = *state;
	uint8_t *buf = copy_of(r_a, sizeof(r_a), sizeof(r_a));
	size_t cut;

	for (cut = sizeof(r_a) - 15; cut < sizeof(r_a); cut++)
		assert_int_equal(dns_parse_response(buf, cut, r), DNS_ETRUNC);
	buf[2] |= DNS_F_TC >> 8;
	for (cut = sizeof(r_a) - 15; cut < sizeof(r_a); cut++) {
		assert_int_equal(dns_parse_response(buf, cut, r), DNS_OK);
		assert_int_equal(r->truncated, 1);
		assert_int_equal(r->n_answers, 1);
		assert_int_equal(r->n_rrs, 1);
		assert_int_equal(r->rrs[0].addr[0], 93);
	}
	/* Cut inside the question: the question is not half-kept. */
	assert_int_equal(dns_parse_response(buf, 20, r), DNS_OK);
	assert_int_equal(r->truncated, 1);
	assert_int_equal(r->q.qtype, 0);
	assert_string_equal(r->q.name, "");
	assert_int_equal(r->n_answers, 0);
	/* TC on a complete message still says truncated. */
	assert_int_equal(dns_parse_response(buf, sizeof(r_a), r), DNS_OK);
	assert_int_equal(r->truncated, 1);
	assert_int_equal(r->n_answers, 2);
	/* TC does not excuse a header cut short, or a bad pointer. */
	assert_int_equal(dns_parse_response(buf, 11, r), DNS_ETRUNC);
	buf[sizeof(r_a) - 15] = 0x3f;
	assert_int_equal(dns_parse_response(buf, sizeof(r_a), r), DNS_EPTR);
	test_free(buf);
}

/* ---- names: the error classes ---------------------------------------------------------- */

/* A response whose only answer's owner is the bytes given, with an A rdata after them. */
static void answer_owned_by(struct msg *m, const uint8_t *owner, size_t n)
{
	m_header(m, 0x8180, 1, 1, 0, 0);
	m_name(m, "a");                  /* 12: 1 'a' 0, then type and class: 19 */
	m_u16(m, DNS_T_A);
	m_u16(m, 1);
	m_bytes(m, owner, n);
	m_rr(m, DNS_T_A, 1, 1, 4);
	m_u32(m, 0x01020304);
}

static void test_pointer_loops(void **state)
{
	struct dns_response *r = *state;
	struct msg m = { .n = 0 };
	static const uint8_t self[] = { 0xc0, 19 };               /* points at itself */
	static const uint8_t pair[] = { 0xc0, 21, 0xc0, 19 };     /* 19 -> 21 -> 19 */
	static const uint8_t label_loop[] = { 1, 'b', 0xc0, 19 };  /* b.b.b... */
	static const uint8_t back[] = { 1, 'b', 0xc0, 12 };        /* fine: b.a */
	struct dns_query q;

	answer_owned_by(&m, self, sizeof(self));
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_EPTR);
	answer_owned_by(&m, pair, sizeof(pair));
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_EPTR);
	answer_owned_by(&m, label_loop, sizeof(label_loop));
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_EPTR);
	answer_owned_by(&m, back, sizeof(back));
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_OK);
	assert_string_equal(r->rrs[0].name, "b.a");
	/* A question cannot hold a pointer: nothing before it may be pointed at. */
	m_header(&m, 0x0100, 1, 0, 0, 0);
	m_ptr(&m, 12);
	m_u16(&m, DNS_T_A);
	m_u16(&m, 1);
	assert_int_equal(dns_parse_query(m.b, m.n, &q), DNS_EPTR);
}

static void test_pointer_out_of_range(void **state)
{
	struct dns_response *r = *state;
	struct msg m = { .n = 0 };
	static const uint8_t past_end[] = { 0xc0, 0xff };
	static const uint8_t far[] = { 0xff, 0xff };
	static const uint8_t header[] = { 0xc0, 2 };
	static const uint8_t ahead[] = { 0xc0, 25 };   /* forward, into this very record */

	answer_owned_by(&m, past_end, sizeof(past_end));
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_EPTR);
	answer_owned_by(&m, far, sizeof(far));
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_EPTR);
	answer_owned_by(&m, header, sizeof(header));
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_EPTR);
	answer_owned_by(&m, ahead, sizeof(ahead));
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_EPTR);
	/* A pointer whose second byte is past the end. */
	answer_owned_by(&m, past_end, 1);
	assert_int_equal(dns_parse_response(m.b, 20, r), DNS_ETRUNC);
}

/*
 * The jump cap: a descending chain of pointers, each to the one before, ending at the root.
 * 127 jumps are followed, the 128th is not.
 */
static void chain_response(struct msg *m, unsigned links)
{
	unsigned i;

	m_header(m, 0x8180, 0, 2, 0, 0);
	m_u8(m, 0);                                 /* 12: the root, owner of a TXT record */
	m_rr(m, DNS_T_TXT, 1, 1, (uint16_t)(2 * links));
	for (i = 0; i < links; i++)                 /* 23 + 2i points at 23 + 2(i - 1), or 12 */
		m_ptr(m, i ? 23 + 2 * (i - 1) : 12);
	m_ptr(m, 23 + 2 * (links - 1));             /* the second owner: one more jump */
	m_rr(m, DNS_T_A, 1, 1, 4);
	m_u32(m, 0x01020304);
}

static void test_pointer_jump_cap(void **state)
{
	struct dns_response *r = *state;
	struct msg m = { .n = 0 };

	chain_response(&m, DNS_MAX_JUMPS - 1);
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_OK);
	assert_int_equal(r->n_rrs, 1);
	assert_string_equal(r->rrs[0].name, ".");
	chain_response(&m, DNS_MAX_JUMPS);
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_EPTR);
}

/* Label lengths 64..191 (type 0x40) and 128.. (0x80) are not lengths. */
static void test_label_64(void **state)
{
	struct msg m = { .n = 0 };
	struct dns_query q;

	(void)state;
	m_header(&m, 0x0100, 1, 0, 0, 0);
	m_label(&m, 63, 'a');
	m_u8(&m, 0);
	m_u16(&m, DNS_T_A);
	m_u16(&m, 1);
	assert_int_equal(dns_parse_query(m.b, m.n, &q), DNS_OK);
	assert_int_equal(strlen(q.q.name), 63);
	m.b[12] = 64;
	assert_int_equal(dns_parse_query(m.b, m.n, &q), DNS_ELABEL);
	m.b[12] = 0x80;
	assert_int_equal(dns_parse_query(m.b, m.n, &q), DNS_ELABEL);
}

/* 255 wire bytes are a name; 256 are not, also when compression puts them together. */
static void test_name_256(void **state)
{
	struct dns_response *r = *state;
	struct msg m = { .n = 0 };
	struct dns_query q;

	m_header(&m, 0x0100, 1, 0, 0, 0);
	m_label(&m, 63, 'a'); m_label(&m, 63, 'b'); m_label(&m, 63, 'c'); m_label(&m, 61, 'd');
	m_u8(&m, 0);                                /* 3 * 64 + 62 + 1 = 255 */
	m_u16(&m, DNS_T_A);
	m_u16(&m, 1);
	assert_int_equal(dns_parse_query(m.b, m.n, &q), DNS_OK);
	assert_int_equal(strlen(q.q.name), 63 * 3 + 61 + 3);
	assert_int_equal(q.q.wire_len, 255 + 4);

	m_header(&m, 0x0100, 1, 0, 0, 0);
	m_label(&m, 63, 'a'); m_label(&m, 63, 'b'); m_label(&m, 63, 'c'); m_label(&m, 62, 'd');
	m_u8(&m, 0);                                /* 256 */
	m_u16(&m, DNS_T_A);
	m_u16(&m, 1);
	assert_int_equal(dns_parse_query(m.b, m.n, &q), DNS_ENAME);

	/* 191 bytes in the question, 128 more in front of a pointer to it. */
	m_header(&m, 0x8180, 1, 1, 0, 0);
	m_label(&m, 63, 'a'); m_label(&m, 63, 'b'); m_label(&m, 61, 'c');
	m_u8(&m, 0);
	m_u16(&m, DNS_T_A);
	m_u16(&m, 1);
	m_label(&m, 63, 'x'); m_label(&m, 63, 'y'); m_ptr(&m, 12);
	m_rr(&m, DNS_T_A, 1, 1, 4);
	m_u32(&m, 1);
	assert_int_equal(dns_parse_response(m.b, m.n, r), DNS_ENAME);
}

/* ---- building and comparing ------------------------------------------------------------ */

/* A SERVFAIL built for a query parses as the answer to it; the OPT is left out. */
static void test_make_error_round_trip(void **state)
{
	struct dns_response *r = *state;
	uint8_t out[512];
	size_t n;

	n = dns_make_error(q_edns, sizeof(q_edns), DNS_R_SERVFAIL, out, sizeof(out));
	assert_int_equal(n, DNS_HDR_LEN + 21);
	assert_int_equal(dns_parse_response(out, n, r), DNS_OK);
	assert_int_equal(r->hdr.id, 0xbeef);
	assert_int_equal(dns_qr(r->hdr.flags), 1);
	assert_int_equal(dns_opcode(r->hdr.flags), 0);
	assert_int_equal(dns_rd(r->hdr.flags), 1);
	assert_true(r->hdr.flags & DNS_F_RA);
	assert_false(r->hdr.flags & 0x0020);  /* AD is not copied */
	assert_int_equal(dns_rcode(r->hdr.flags), DNS_R_SERVFAIL);
	assert_int_equal(r->hdr.qdcount, 1);
	assert_int_equal(r->hdr.ancount, 0);
	assert_int_equal(r->hdr.nscount, 0);
	assert_int_equal(r->hdr.arcount, 0);
	assert_string_equal(r->q.name, "www.example.com");
	assert_int_equal(r->q.qtype, DNS_T_AAAA);
	assert_int_equal(r->truncated, 0);
	assert_int_equal(dns_same_question(q_edns, sizeof(q_edns), out, n), 1);
	assert_memory_equal(out + DNS_HDR_LEN, q_edns + DNS_HDR_LEN, 21);
}

static void test_make_error_edges(void **state)
{
	struct dns_response *r = *state;
	uint8_t out[512];
	uint8_t *buf;
	size_t n;

	/* No RD in, no RD out; the opcode is kept (NOTIFY, 4). */
	buf = copy_of(q_a, sizeof(q_a), sizeof(q_a));
	buf[2] = 4 << 3;
	n = dns_make_error(buf, sizeof(q_a), DNS_R_NOTIMP, out, sizeof(out));
	assert_int_equal(n, sizeof(q_a));
	assert_int_equal(dns_parse_response(out, n, r), DNS_OK);
	assert_int_equal(dns_rd(r->hdr.flags), 0);
	assert_int_equal(dns_opcode(r->hdr.flags), 4);
	assert_int_equal(dns_rcode(r->hdr.flags), DNS_R_NOTIMP);
	/* In place. */
	memcpy(buf, q_a, sizeof(q_a));
	n = dns_make_error(buf, sizeof(q_a), DNS_R_REFUSED, buf, sizeof(q_a));
	assert_int_equal(n, sizeof(q_a));
	assert_int_equal(dns_parse_response(buf, n, r), DNS_OK);
	assert_int_equal(dns_rcode(r->hdr.flags), DNS_R_REFUSED);
	assert_string_equal(r->q.name, "www.example.com");
	assert_int_equal(dns_get_id(buf), 0x1234);
	/* A question that does not parse: header only. */
	memcpy(buf, q_a, sizeof(q_a));
	buf[12] = 64;
	n = dns_make_error(buf, sizeof(q_a), DNS_R_FORMERR, out, sizeof(out));
	assert_int_equal(n, DNS_HDR_LEN);
	assert_int_equal(dns_parse_response(out, n, r), DNS_OK);
	assert_int_equal(r->hdr.qdcount, 0);
	assert_int_equal(r->q.qtype, 0);
	assert_int_equal(dns_rcode(r->hdr.flags), DNS_R_FORMERR);
	assert_int_equal(dns_get_id(out), 0x1234);
	/* Room for the header but not the question. */
	n = dns_make_error(q_a, sizeof(q_a), DNS_R_SERVFAIL, out, sizeof(q_a) - 1);
	assert_int_equal(n, DNS_HDR_LEN);
	assert_int_equal(out[5], 0);
	/* Not even a header. */
	assert_int_equal(dns_make_error(q_a, DNS_HDR_LEN - 1, DNS_R_SERVFAIL, out, sizeof(out)), 0);
	assert_int_equal(dns_make_error(q_a, sizeof(q_a), DNS_R_SERVFAIL, out, DNS_HDR_LEN - 1), 0);
	/* A bare header as query: header only, qdcount 0. */
	n = dns_make_error(q_a, DNS_HDR_LEN, DNS_R_FORMERR, out, sizeof(out));
	assert_int_equal(n, DNS_HDR_LEN);
	test_free(buf);
}

static void test_same_question(void **state)
{
	uint8_t *buf = copy_of(r_a, sizeof(r_a), sizeof(r_a));
	uint8_t other[sizeof(r_a)];

	(void)state;
	/* www.Example.COM A IN against www.example.com A IN. */
	assert_int_equal(dns_same_question(q_a, sizeof(q_a), r_a, sizeof(r_a)), 1);
	assert_int_equal(dns_same_question(r_a, sizeof(r_a), q_a, sizeof(q_a)), 1);
	assert_int_equal(dns_same_question(q_a, sizeof(q_a), q_edns, sizeof(q_edns)), 0); /* AAAA */
	buf[26] = 'r';  /* .crm */
	assert_int_equal(dns_same_question(q_a, sizeof(q_a), buf, sizeof(r_a)), 0);
	buf[26] = 'o';
	buf[32] = 3;    /* class CH */
	assert_int_equal(dns_same_question(q_a, sizeof(q_a), buf, sizeof(r_a)), 0);
	buf[32] = 1;
	buf[5] = 0;     /* no question */
	assert_int_equal(dns_same_question(q_a, sizeof(q_a), buf, sizeof(r_a)), 0);
	buf[5] = 1;
	assert_int_equal(dns_same_question(q_a, sizeof(q_a), buf, 20), 0);
	/* Only ASCII letters fold: '[' and '{' differ by 0x20 too. */
	buf[13] = '[';
	memcpy(other, buf, sizeof(r_a));
	other[13] = '{';
	assert_int_equal(dns_same_question(buf, sizeof(r_a), other, sizeof(r_a)), 0);
	other[13] = '[';
	assert_int_equal(dns_same_question(buf, sizeof(r_a), other, sizeof(r_a)), 1);
	test_free(buf);
}

/* ---- names of things ------------------------------------------------------------------- */

static void test_names(void **state)
{
	char buf[16];

	(void)state;
	assert_string_equal(dns_type_name(DNS_T_A, buf), "A");
	assert_string_equal(dns_type_name(DNS_T_AAAA, buf), "AAAA");
	assert_string_equal(dns_type_name(DNS_T_CNAME, buf), "CNAME");
	assert_string_equal(dns_type_name(DNS_T_MX, buf), "MX");
	assert_string_equal(dns_type_name(DNS_T_HTTPS, buf), "HTTPS");
	assert_string_equal(dns_type_name(DNS_T_ANY, buf), "ANY");
	assert_string_equal(dns_type_name(123, buf), "TYPE123");
	assert_string_equal(dns_type_name(65535, buf), "TYPE65535");
	assert_string_equal(dns_rcode_name(DNS_R_NOERROR, buf), "NOERROR");
	assert_string_equal(dns_rcode_name(DNS_R_FORMERR, buf), "FORMERR");
	assert_string_equal(dns_rcode_name(DNS_R_SERVFAIL, buf), "SERVFAIL");
	assert_string_equal(dns_rcode_name(DNS_R_NXDOMAIN, buf), "NXDOMAIN");
	assert_string_equal(dns_rcode_name(DNS_R_NOTIMP, buf), "NOTIMP");
	assert_string_equal(dns_rcode_name(DNS_R_REFUSED, buf), "REFUSED");
	assert_string_equal(dns_rcode_name(9, buf), "RCODE9");
	assert_string_equal(dns_rcode_name(4294967295u, buf), "RCODE4294967295");
	assert_string_equal(dns_strerror(DNS_OK), "ok");
	assert_string_equal(dns_strerror(DNS_ETRUNC), "truncated");
	assert_string_equal(dns_strerror(DNS_EPTR), "bad compression pointer");
	assert_string_equal(dns_strerror(DNS_ENAME), "name too long");
	assert_string_equal(dns_strerror(DNS_EFORMAT), "malformed message");
	assert_string_equal(dns_strerror(-1), "unknown error");
	assert_string_equal(dns_strerror(DNS_EFORMAT + 1), "unknown error");
}

#define RESP_TEST(f) cmocka_unit_test_setup_teardown(f, resp_setup, resp_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_get_set_id),
		cmocka_unit_test(test_query_a),
		cmocka_unit_test(test_query_edns),
		cmocka_unit_test(test_query_root),
		cmocka_unit_test(test_query_escapes),
		cmocka_unit_test(test_query_rejects),
		cmocka_unit_test(test_query_opt_rules),
		RESP_TEST(test_response_a),
		RESP_TEST(test_response_aaaa),
		RESP_TEST(test_response_cname_chain),
		RESP_TEST(test_response_keeps_only_addresses),
		RESP_TEST(test_response_many_answers),
		RESP_TEST(test_response_nxdomain),
		RESP_TEST(test_response_rejects),
		RESP_TEST(test_lying_counts),
		RESP_TEST(test_truncated),
		RESP_TEST(test_pointer_loops),
		RESP_TEST(test_pointer_out_of_range),
		RESP_TEST(test_pointer_jump_cap),
		cmocka_unit_test(test_label_64),
		RESP_TEST(test_name_256),
		RESP_TEST(test_make_error_round_trip),
		RESP_TEST(test_make_error_edges),
		cmocka_unit_test(test_same_question),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
