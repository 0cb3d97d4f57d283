// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for agent/dns.c: one input is one DNS message, handed to every function
 * that takes a message: dns_parse_query(), dns_parse_response(), dns_make_error() (whose
 * output is parsed again) and dns_same_question().
 *
 * Besides the sanitizers, the target aborts when a documented promise is broken: a name
 * that is not printable, unambiguous presentation text; counts out of their bounds; an
 * error answer that does not parse as a response to the query it was built for.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dns.h"

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_dns: %s\n", what);
	abort();
}

/* \DDD with DDD at most 255; returns the bytes it takes, 0 if it is not one. */
static size_t escape_len(const char *s)
{
	int v;

	if (s[0] != '\\' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' ||
	    s[3] < '0' || s[3] > '9')
		return 0;
	v = (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	return v <= 255 ? 4 : 0;
}

/* Presentation form: "." alone, or non-empty labels of [a-z0-9-_] and \DDD joined by dots. */
static void check_name(const char *name)
{
	size_t i = 0, label = 0;

	if (memchr(name, '\0', DNS_NAME_TEXT) == NULL)
		fail("name not terminated");
	if (strcmp(name, ".") == 0)
		return;
	while (name[i]) {
		char c = name[i];
		size_t n = 1;

		if (c == '.') {
			if (label == 0)
				fail("empty label in name");
			label = 0;
		} else if (c == '\\') {
			n = escape_len(name + i);
			if (n == 0)
				fail("bad escape in name");
			label++;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
			label++;
		} else {
			fail("unexpected character in name");
		}
		if (label > 63)
			fail("label longer than 63 bytes");
		i += n;
	}
	if (i > 0 && label == 0)
		fail("name ends with a dot");
}

static void check_question(const struct dns_question *q, size_t size)
{
	check_name(q->name);
	if (q->wire_off != DNS_HDR_LEN || q->wire_len < 5 || q->wire_len > 255 + 4 ||
	    q->wire_off + q->wire_len > size)
		fail("question outside the message");
	if (q->name[0] == '\0')
		fail("parsed question without a name");
}

static void check_query(const uint8_t *msg, size_t size)
{
	struct dns_query q;
	int r = dns_parse_query(msg, size, &q);

	if (r < DNS_OK || r > DNS_EFORMAT)
		fail("query: status out of range");
	(void)dns_strerror(r);
	if (r != DNS_OK)
		return;
	check_question(&q.q, size);
	if (dns_qr(q.hdr.flags) || q.hdr.qdcount != 1 || q.hdr.ancount || q.hdr.nscount)
		fail("query: accepted a header it should refuse");
	if (q.has_edns != 0 && q.has_edns != 1)
		fail("query: has_edns not 0/1");
	if (!q.has_edns && q.edns_udp_size)
		fail("query: UDP size without EDNS");
	if (!dns_same_question(msg, size, msg, size))
		fail("query: question differs from itself");
}

static void check_rr(const struct dns_rr *rr)
{
	char buf[16];

	check_name(rr->name);
	if (rr->ttl & 0x80000000u)
		fail("response: TTL with the top bit kept");
	if (rr->type == DNS_T_CNAME)
		check_name(rr->target);
	else if (rr->type != DNS_T_A && rr->type != DNS_T_AAAA)
		fail("response: kept a type it should not");
	else if (rr->target[0] != '\0')
		fail("response: address record with a target");
	if (rr->type == DNS_T_A && memcmp(rr->addr + 4, "\0\0\0\0\0\0\0\0\0\0\0\0", 12) != 0)
		fail("response: A record with more than 4 address bytes");
	(void)dns_type_name(rr->type, buf);
}

static void check_response(const uint8_t *msg, size_t size, struct dns_response *resp)
{
	unsigned i;
	int r = dns_parse_response(msg, size, resp);

	if (r < DNS_OK || r > DNS_EFORMAT)
		fail("response: status out of range");
	if (r != DNS_OK)
		return;
	if (!dns_qr(resp->hdr.flags) || resp->hdr.qdcount > 1)
		fail("response: accepted a header it should refuse");
	if (resp->truncated != dns_tc(resp->hdr.flags))
		fail("response: truncated differs from TC");
	if (resp->n_rrs > DNS_MAX_RRS || resp->n_rrs > resp->n_answers ||
	    resp->n_answers > resp->hdr.ancount)
		fail("response: counts out of bounds");
	if (!resp->truncated && resp->n_answers != resp->hdr.ancount)
		fail("response: answers missing without TC");
	/* Under TC a question cut short is zeroed; otherwise qdcount 1 means one was parsed. */
	if (resp->hdr.qdcount == 1 && (resp->q.name[0] != '\0' || !resp->truncated))
		check_question(&resp->q, size);
	if (resp->hdr.qdcount == 0 && (resp->q.qtype != 0 || resp->q.name[0] != '\0'))
		fail("response: question without qdcount");
	for (i = 0; i < resp->n_rrs; i++)
		check_rr(&resp->rrs[i]);
}

/* The error answer parses as a response, and to the same question when the query has one. */
static void check_make_error(const uint8_t *msg, size_t size, size_t cap,
			     struct dns_response *resp)
{
	struct dns_query q;
	uint8_t *out = malloc(cap ? cap : 1);
	int rcode = (int)(size % 16);
	size_t n;
	char buf[16];

	if (!out)
		return;
	n = dns_make_error(msg, size, rcode, out, cap);
	if (size < DNS_HDR_LEN || cap < DNS_HDR_LEN) {
		if (n != 0)
			fail("make_error: built from less than a header");
		goto out;
	}
	if (n < DNS_HDR_LEN || n > cap)
		fail("make_error: length out of bounds");
	if (dns_parse_response(out, n, resp) != DNS_OK)
		fail("make_error: output does not parse as a response");
	if (resp->hdr.id != dns_get_id(msg) || dns_rcode(resp->hdr.flags) != rcode ||
	    resp->hdr.ancount || resp->hdr.nscount || resp->hdr.arcount || resp->truncated)
		fail("make_error: header differs");
	(void)dns_rcode_name(dns_rcode(resp->hdr.flags), buf);
	if (resp->hdr.qdcount == 1 && !dns_same_question(msg, size, out, n))
		fail("make_error: question differs from the query's");
	if (cap >= DNS_HDR_LEN + 255 + 4 && dns_parse_query(msg, size, &q) == DNS_OK &&
	    resp->hdr.qdcount != 1)
		fail("make_error: question of a good query left out");
out:
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dns_response resp; /* ~130 KiB: not on the stack */
	uint8_t *copy;

	if (size > DNS_MSG_MAX)
		return 0;
	/* An exact-size heap copy: ASan reports any read past the message, also for size 0. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	if (size)
		memcpy(copy, data, size);

	check_query(copy, size);
	check_response(copy, size, &resp);
	check_make_error(copy, size, 512, &resp);
	check_make_error(copy, size, size, &resp);
	(void)dns_same_question(copy, size, copy, size / 2);
	free(copy);
	return 0;
}
