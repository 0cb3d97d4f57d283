// SPDX-License-Identifier: MIT
/*
 * DNS wire format for the DNS proxy. The bytes come from the network: every read below is
 * preceded by a check against the length it may read up to, and every loop has a fixed bound
 * (a record count from the 16-bit header, or the step limit of a name).
 */
#include <stdio.h>
#include <string.h>
#include "dns.h"

/* The fixed part of a resource record after its owner name: type, class, TTL, rdlength. */
#define DNS_RR_FIXED 10
/* The fixed part of a question after its name: type, class. */
#define DNS_Q_FIXED 4
/*
 * A name step takes either a label (at least 2 wire bytes, so at most 127 fit in 255) or a
 * pointer (at most DNS_MAX_JUMPS). The checks inside stop a name before this bound; it is
 * here so that the loop is bounded on its face.
 */
#define DNS_NAME_STEPS (DNS_NAME_WIRE_MAX / 2 + DNS_MAX_JUMPS + 1)

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

uint16_t dns_get_id(const uint8_t *msg)
{
	return get16(msg);
}

void dns_set_id(uint8_t *msg, uint16_t id)
{
	put16(msg, id);
}

/* ---- names ----------------------------------------------------------------------------- */

/* The presentation form being built; buf is NULL when the caller only walks the name. */
struct name_text {
	char *buf;
	size_t pos;
};

/* Where a name is being read: run is where the current sequence of labels started. */
struct name_cursor {
	size_t pos;
	size_t run;
	size_t end;     /* the in-place end, fixed by the first pointer; 0 until then */
	size_t wire;    /* uncompressed wire length so far, the root byte included */
	unsigned jumps;
};

static int text_put(struct name_text *t, const char *s, size_t n)
{
	if (!t->buf)
		return DNS_OK;
	/* Cannot happen: 255 wire bytes give at most 1012 characters. */
	if (n >= DNS_NAME_TEXT - t->pos)
		return DNS_ENAME;
	memcpy(t->buf + t->pos, s, n);
	t->pos += n;
	t->buf[t->pos] = '\0';
	return DNS_OK;
}

/* Bytes kept as they are; everything else becomes \DDD so the text is printable and unambiguous. */
static int text_plain(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static int text_label(struct name_text *t, const uint8_t *label, size_t n)
{
	char esc[4] = { '\\' };
	size_t i;
	int r;

	if (t->pos > 0 && (r = text_put(t, ".", 1)) != DNS_OK)
		return r;
	for (i = 0; i < n; i++) {
		uint8_t c = label[i];

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (text_plain(c)) {
			r = text_put(t, (const char *)&c, 1);
		} else {
			esc[1] = '0' + c / 100;
			esc[2] = '0' + c / 10 % 10;
			esc[3] = '0' + c % 10;
			r = text_put(t, esc, sizeof(esc));
		}
		if (r != DNS_OK)
			return r;
	}
	return DNS_OK;
}

/*
 * Loops: a pointer must point at or after the header and strictly before the start of the
 * labels it ends (the name's own start, or the previous pointer's target). The start of
 * the current run of labels therefore decreases with every jump, so no chain of pointers
 * can come back to itself. The count of jumps is capped as well, so that a long descending
 * chain of pointers to pointers costs no more than a real name.
 */
static int name_follow(const uint8_t *msg, size_t len, struct name_cursor *c)
{
	size_t target;

	if (len - c->pos < 2)
		return DNS_ETRUNC;
	target = (size_t)(msg[c->pos] & 0x3f) << 8 | msg[c->pos + 1];
	if (target < DNS_HDR_LEN || target >= c->run || ++c->jumps > DNS_MAX_JUMPS)
		return DNS_EPTR;
	if (c->end == 0)
		c->end = c->pos + 2;
	c->pos = c->run = target;
	return DNS_OK;
}

static int name_label(const uint8_t *msg, size_t len, struct name_cursor *c, struct name_text *t)
{
	size_t n = msg[c->pos];
	int r;

	c->wire += 1 + n;
	if (c->wire > DNS_NAME_WIRE_MAX)
		return DNS_ENAME;
	if (n >= len - c->pos) /* the label's bytes are pos + 1 .. pos + n */
		return DNS_ETRUNC;
	r = text_label(t, msg + c->pos + 1, n);
	c->pos += 1 + n;
	return r;
}

/*
 * Reads the name at off, reading no byte at or past len. *next is where the record goes on:
 * after the root byte, or after the first pointer (RFC 1035 4.1.4). text, if not NULL, gets
 * the presentation form (DNS_NAME_TEXT bytes), or "" on an error.
 */
static int name_read(const uint8_t *msg, size_t len, size_t off, char *text, size_t *next)
{
	struct name_cursor c = { .pos = off, .run = off, .wire = 1 };
	struct name_text t = { text, 0 };
	unsigned step;
	int r = DNS_ENAME;

	if (text)
		text[0] = '\0';
	for (step = 0; step < DNS_NAME_STEPS; step++) {
		uint8_t n;

		if (c.pos >= len) {
			r = DNS_ETRUNC;
			break;
		}
		n = msg[c.pos];
		if (n == 0) {
			*next = c.end ? c.end : c.pos + 1;
			return t.pos ? DNS_OK : text_put(&t, ".", 1); /* the root */
		}
		if ((n & 0xc0) == 0xc0)
			r = name_follow(msg, len, &c);
		else if (n & 0xc0) /* 0x40 (extended) and 0x80: label types nobody uses */
			r = DNS_ELABEL;
		else
			r = name_label(msg, len, &c, &t);
		if (r != DNS_OK)
			break;
	}
	if (text)
		text[0] = '\0';
	return r;
}

/* ---- sections -------------------------------------------------------------------------- */

/* A resource record as it sits in the message. */
struct rr_wire {
	size_t off;     /* of the owner name */
	uint16_t type;
	uint16_t rclass;
	uint32_t ttl;
	size_t rdoff;
	uint16_t rdlen;
};

int dns_parse_header(const uint8_t *msg, size_t len, struct dns_header *h)
{
	if (!msg || len < DNS_HDR_LEN)
		return DNS_ETRUNC;
	h->id = get16(msg);
	h->flags = get16(msg + 2);
	h->qdcount = get16(msg + 4);
	h->ancount = get16(msg + 6);
	h->nscount = get16(msg + 8);
	h->arcount = get16(msg + 10);
	return DNS_OK;
}

/* A message that ends where a counted question or record should start has lying counts. */
static int question_read(const uint8_t *msg, size_t len, size_t off, struct dns_question *q)
{
	size_t next;
	int r;

	if (off >= len)
		return DNS_ECOUNT;
	r = name_read(msg, len, off, q->name, &next);
	if (r != DNS_OK)
		return r;
	if (len - next < DNS_Q_FIXED)
		return DNS_ETRUNC;
	q->qtype = get16(msg + next);
	q->qclass = get16(msg + next + 2);
	q->wire_off = off;
	q->wire_len = next + DNS_Q_FIXED - off;
	return DNS_OK;
}

/* Reads the record at *off and moves *off past its rdata. owner as in name_read(). */
static int rr_read(const uint8_t *msg, size_t len, size_t *off, char *owner, struct rr_wire *rr)
{
	size_t p;
	int r;

	if (*off >= len)
		return DNS_ECOUNT;
	r = name_read(msg, len, *off, owner, &p);
	if (r != DNS_OK)
		return r;
	if (len - p < DNS_RR_FIXED)
		return DNS_ETRUNC;
	rr->off = *off;
	rr->type = get16(msg + p);
	rr->rclass = get16(msg + p + 2);
	rr->ttl = get32(msg + p + 4);
	rr->rdlen = get16(msg + p + 8);
	rr->rdoff = p + DNS_RR_FIXED;
	if (rr->rdlen > len - rr->rdoff)
		return DNS_ETRUNC;
	*off = rr->rdoff + rr->rdlen;
	return DNS_OK;
}

static int section_skip(const uint8_t *msg, size_t len, size_t *off, unsigned count)
{
	struct rr_wire rr;
	unsigned i;
	int r;

	for (i = 0; i < count; i++) {
		r = rr_read(msg, len, off, NULL, &rr);
		if (r != DNS_OK)
			return r;
	}
	return DNS_OK;
}

/* ---- queries --------------------------------------------------------------------------- */

static int query_header_ok(const struct dns_header *h)
{
	return !dns_qr(h->flags) && dns_opcode(h->flags) == 0 && h->qdcount == 1 &&
	       h->ancount == 0 && h->nscount == 0;
}

/* RFC 6891 6.1.1: one OPT at most, owned by the root; its class is the UDP payload size. */
static int query_opt(const uint8_t *msg, const struct rr_wire *rr, struct dns_query *out)
{
	if (out->has_edns || msg[rr->off] != 0)
		return DNS_EFORMAT;
	out->has_edns = 1;
	out->edns_udp_size = rr->rclass;
	return DNS_OK;
}

int dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *out)
{
	struct rr_wire rr;
	size_t off;
	unsigned i;
	int r;

	memset(out, 0, sizeof(*out));
	r = dns_parse_header(msg, len, &out->hdr);
	if (r != DNS_OK)
		return r;
	if (!query_header_ok(&out->hdr))
		return DNS_EFORMAT;
	r = question_read(msg, len, DNS_HDR_LEN, &out->q);
	if (r != DNS_OK)
		return r;
	off = DNS_HDR_LEN + out->q.wire_len;
	for (i = 0; i < out->hdr.arcount; i++) {
		r = rr_read(msg, len, &off, NULL, &rr);
		if (r == DNS_OK && rr.type == DNS_T_OPT)
			r = query_opt(msg, &rr, out);
		if (r != DNS_OK)
			return r;
	}
	return off == len ? DNS_OK : DNS_ETRAIL;
}

/* ---- responses ------------------------------------------------------------------------- */

/* Fills rr from an answer the store keeps; 0 for any other answer, which is no error. */
static int answer_keep(const uint8_t *msg, const struct rr_wire *w, struct dns_rr *rr)
{
	size_t end;

	if (w->rclass != DNS_C_IN)
		return 0;
	rr->type = w->type;
	rr->ttl = (w->ttl & 0x80000000u) ? 0 : w->ttl;
	memset(rr->addr, 0, sizeof(rr->addr));
	rr->target[0] = '\0';
	switch (w->type) {
	case DNS_T_A:
		if (w->rdlen != 4)
			return 0;
		memcpy(rr->addr, msg + w->rdoff, 4);
		return 1;
	case DNS_T_AAAA:
		if (w->rdlen != 16)
			return 0;
		memcpy(rr->addr, msg + w->rdoff, 16);
		return 1;
	case DNS_T_CNAME:
		/* Read as if the message ended with the rdata: the in-place part must fit in it. */
		return name_read(msg, w->rdoff + w->rdlen, w->rdoff, rr->target, &end) == DNS_OK;
	}
	return 0;
}

static int answer_read(const uint8_t *msg, size_t len, size_t *off, struct dns_response *out)
{
	struct dns_rr *slot = out->n_rrs < DNS_MAX_RRS ? &out->rrs[out->n_rrs] : NULL;
	struct rr_wire w;
	int r;

	r = rr_read(msg, len, off, slot ? slot->name : NULL, &w);
	if (r != DNS_OK)
		return r;
	out->n_answers++;
	if (slot && answer_keep(msg, &w, slot))
		out->n_rrs++;
	return DNS_OK;
}

static int response_sections(const uint8_t *msg, size_t len, size_t *off, struct dns_response *out)
{
	unsigned i;
	int r;

	if (out->hdr.qdcount == 1) {
		r = question_read(msg, len, *off, &out->q);
		if (r != DNS_OK) {
			memset(&out->q, 0, sizeof(out->q));
			return r;
		}
		*off += out->q.wire_len;
	}
	for (i = 0; i < out->hdr.ancount; i++) {
		r = answer_read(msg, len, off, out);
		if (r != DNS_OK)
			return r;
	}
	r = section_skip(msg, len, off, out->hdr.nscount);
	if (r != DNS_OK)
		return r;
	return section_skip(msg, len, off, out->hdr.arcount);
}

int dns_parse_response(const uint8_t *msg, size_t len, struct dns_response *out)
{
	size_t off = DNS_HDR_LEN;
	int r;

	/* Not the answers: only rrs[0 .. n_rrs) are defined, and the array is 130 KiB. */
	memset(out, 0, offsetof(struct dns_response, rrs));
	out->truncated = 0;
	r = dns_parse_header(msg, len, &out->hdr);
	if (r != DNS_OK)
		return r;
	if (!dns_qr(out->hdr.flags) || out->hdr.qdcount > 1)
		return DNS_EFORMAT;
	out->truncated = dns_tc(out->hdr.flags);
	r = response_sections(msg, len, &off, out);
	if (r == DNS_OK)
		return off == len ? DNS_OK : DNS_ETRAIL;
	/* A TC answer ends where the server's buffer did; what came before it stands. */
	if (out->truncated && (r == DNS_ETRUNC || r == DNS_ECOUNT))
		return DNS_OK;
	return r;
}

/* ---- building and comparing ------------------------------------------------------------ */

/* The first question of any message, query or response. */
static int first_question(const uint8_t *msg, size_t len, struct dns_question *q)
{
	struct dns_header h;
	int r;

	r = dns_parse_header(msg, len, &h);
	if (r != DNS_OK)
		return r;
	if (h.qdcount == 0)
		return DNS_ECOUNT;
	return question_read(msg, len, DNS_HDR_LEN, q);
}

/*
 * The question is copied byte for byte: a question name starts at the header's end, where
 * no pointer can satisfy name_follow(), so its wire form stands on its own.
 */
size_t dns_make_error(const uint8_t *query, size_t qlen, int rcode, uint8_t *out, size_t cap)
{
	struct dns_question q;
	struct dns_header h;
	uint16_t flags, qd = 0;

	if (!out || cap < DNS_HDR_LEN || dns_parse_header(query, qlen, &h) != DNS_OK)
		return 0;
	flags = DNS_F_QR | (h.flags & (DNS_F_OPCODE | DNS_F_RD)) | DNS_F_RA | (rcode & 0xf);
	if (first_question(query, qlen, &q) == DNS_OK && q.wire_len <= cap - DNS_HDR_LEN) {
		memmove(out + DNS_HDR_LEN, query + DNS_HDR_LEN, q.wire_len);
		qd = 1;
	}
	put16(out, h.id);
	put16(out + 2, flags);
	put16(out + 4, qd);
	memset(out + 6, 0, 6);
	return DNS_HDR_LEN + (qd ? q.wire_len : 0);
}

/* The questions are compared in normalised form, which folds ASCII case and nothing else. */
int dns_same_question(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	struct dns_question qa, qb;

	if (first_question(a, alen, &qa) != DNS_OK || first_question(b, blen, &qb) != DNS_OK)
		return 0;
	return qa.qtype == qb.qtype && qa.qclass == qb.qclass && strcmp(qa.name, qb.name) == 0;
}

/* ---- names of things ------------------------------------------------------------------- */

const char *dns_strerror(int status)
{
	static const char *const words[] = {
		[DNS_OK] = "ok",
		[DNS_ETRUNC] = "truncated",
		[DNS_EPTR] = "bad compression pointer",
		[DNS_ELABEL] = "bad label type",
		[DNS_ENAME] = "name too long",
		[DNS_ECOUNT] = "record count exceeds message",
		[DNS_ETRAIL] = "trailing bytes",
		[DNS_EFORMAT] = "malformed message",
	};

	if (status < 0 || (size_t)status >= sizeof(words) / sizeof(words[0]))
		return "unknown error";
	return words[status];
}

const char *dns_type_name(uint16_t type, char buf[16])
{
	static const struct {
		uint16_t type;
		const char *name;
	} names[] = {
		{ DNS_T_A, "A" }, { DNS_T_NS, "NS" }, { DNS_T_CNAME, "CNAME" }, { DNS_T_SOA, "SOA" },
		{ DNS_T_PTR, "PTR" }, { DNS_T_MX, "MX" }, { DNS_T_TXT, "TXT" }, { DNS_T_AAAA, "AAAA" },
		{ DNS_T_SRV, "SRV" }, { DNS_T_OPT, "OPT" }, { DNS_T_SVCB, "SVCB" },
		{ DNS_T_HTTPS, "HTTPS" }, { DNS_T_ANY, "ANY" },
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].type == type)
			return names[i].name;
	snprintf(buf, 16, "TYPE%u", (unsigned)type);
	return buf;
}

const char *dns_rcode_name(unsigned rcode, char buf[16])
{
	static const char *const names[] = {
		[DNS_R_NOERROR] = "NOERROR", [DNS_R_FORMERR] = "FORMERR",
		[DNS_R_SERVFAIL] = "SERVFAIL", [DNS_R_NXDOMAIN] = "NXDOMAIN",
		[DNS_R_NOTIMP] = "NOTIMP", [DNS_R_REFUSED] = "REFUSED",
	};

	if (rcode < sizeof(names) / sizeof(names[0]))
		return names[rcode];
	snprintf(buf, 16, "RCODE%u", rcode);
	return buf;
}
