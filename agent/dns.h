/* SPDX-License-Identifier: MIT */
#ifndef NT_DNS_H
#define NT_DNS_H

/*
 * DNS wire format (RFC 1035) for the agent's DNS proxy: pure functions over the bytes of one
 * message, every read bounds-checked, so that they can be fuzzed (tests/fuzz/fuzz_dns.c).
 *
 * Names: a compression pointer must point into the message body (at or after the header)
 * and strictly before the labels it is met in; at most DNS_MAX_JUMPS are followed.
 */
#include <stddef.h>
#include <stdint.h>

#define DNS_HDR_LEN 12
#define DNS_NAME_TEXT 1024   /* presentation form buffer: escapes (\DDD) can expand 255 wire bytes */
#define DNS_MAX_RRS 64       /* answers kept per response; more are counted, not kept */
#define DNS_MSG_MAX 65535
#define DNS_NAME_WIRE_MAX 255 /* RFC 1035 3.1: length bytes, labels and the root byte */
#define DNS_MAX_JUMPS 127    /* a 255-byte name has at most 127 labels, so 127 pointers */

enum dns_status { DNS_OK = 0, DNS_ETRUNC, DNS_EPTR, DNS_ELABEL, DNS_ENAME, DNS_ECOUNT, DNS_ETRAIL, DNS_EFORMAT };
const char *dns_strerror(int status);   /* short words: "truncated", "bad compression pointer", ... */

enum { DNS_T_A = 1, DNS_T_NS = 2, DNS_T_CNAME = 5, DNS_T_SOA = 6, DNS_T_PTR = 12, DNS_T_MX = 15, DNS_T_TXT = 16,
       DNS_T_AAAA = 28, DNS_T_SRV = 33, DNS_T_OPT = 41, DNS_T_SVCB = 64, DNS_T_HTTPS = 65, DNS_T_ANY = 255 };
enum { DNS_R_NOERROR = 0, DNS_R_FORMERR = 1, DNS_R_SERVFAIL = 2, DNS_R_NXDOMAIN = 3, DNS_R_NOTIMP = 4, DNS_R_REFUSED = 5 };
enum { DNS_C_IN = 1 };

/* Header flag bits (RFC 1035 4.1.1). */
#define DNS_F_QR 0x8000
#define DNS_F_OPCODE 0x7800
#define DNS_F_TC 0x0200
#define DNS_F_RD 0x0100
#define DNS_F_RA 0x0080

struct dns_header { uint16_t id, flags, qdcount, ancount, nscount, arcount; };

static inline int dns_qr(uint16_t f) { return (f >> 15) & 1; }
static inline int dns_opcode(uint16_t f) { return (f >> 11) & 0xf; }
static inline int dns_tc(uint16_t f) { return (f >> 9) & 1; }
static inline int dns_rd(uint16_t f) { return (f >> 8) & 1; }
static inline int dns_rcode(uint16_t f) { return f & 0xf; }

struct dns_question {
	char name[DNS_NAME_TEXT];  /* presentation form, lowercase ASCII, no trailing dot; the root is "." ;
	                              bytes outside [a-z0-9-_] and '.' inside a label are written as \DDD (decimal, like dig), so the text is always printable and unambiguous */
	uint16_t qtype, qclass;
	size_t wire_len;           /* bytes of the question section in the message (name + 4) */
	size_t wire_off;           /* offset of the question in the message */
};

struct dns_rr {                /* an answer of a kind the store keeps: A, AAAA, CNAME */
	char name[DNS_NAME_TEXT];  /* owner, normalised as above */
	uint16_t type;
	uint32_t ttl;              /* TTLs with the top bit set are treated as 0 (RFC 2181) */
	uint8_t addr[16];          /* A: 4 bytes, AAAA: 16 bytes (the rest zero) */
	char target[DNS_NAME_TEXT];/* CNAME target, normalised ("" for A and AAAA) */
};

struct dns_query {             /* a parsed client query */
	struct dns_header hdr;
	struct dns_question q;
	int has_edns;              /* an OPT RR in the additional section */
	uint16_t edns_udp_size;    /* as sent; RFC 6891 says a value below 512 means 512 */
};

struct dns_response {
	struct dns_header hdr;
	struct dns_question q;     /* zeroed with q.qtype==0 when qdcount is 0 (some error answers) */
	unsigned n_rrs;            /* kept A/AAAA/CNAME answers, at most DNS_MAX_RRS */
	unsigned n_answers;        /* every RR in the answer section, kept or not */
	struct dns_rr rrs[DNS_MAX_RRS];
	int truncated;             /* TC set, or the message ended early and TC was set (then parse what is there, return DNS_OK) */
};

/*
 * The parsers return DNS_OK or another enum dns_status. On an error the output holds what was
 * parsed before it and must not be used. struct dns_response is large (~130 KiB): keep it off
 * small stacks. Only rrs[0 .. n_rrs) are written.
 */
int dns_parse_header(const uint8_t *msg, size_t len, struct dns_header *h);
/* A query: QR clear, opcode 0 (QUERY) else DNS_EFORMAT, exactly one question, ancount 0, nscount 0 (else DNS_EFORMAT); additional section parsed only to find OPT (at most one OPT, owned by the root, else EFORMAT);
   bytes after the last record -> DNS_ETRAIL. */
int dns_parse_query(const uint8_t *msg, size_t len, struct dns_query *out);
/* A response: QR set; qdcount 0 or 1; walks every answer RR (any type, bounded by rdlength and message length), keeps A/AAAA/CNAME (class IN, rdlength exactly 4/16, CNAME rdata a valid name that ends inside the rdata); authority and additional sections are walked for bounds only. Counts that claim more records than the message holds -> DNS_ECOUNT unless TC is set (then DNS_OK with what was parsed, truncated=1). Trailing bytes after all sections -> DNS_ETRAIL.
   Without TC, a message that ends between records is DNS_ECOUNT, one that ends inside a record DNS_ETRUNC. An answer that breaks the keep rules is counted, not kept, and is no error. */
int dns_parse_response(const uint8_t *msg, size_t len, struct dns_response *out);
/* Build a minimal error answer to `query` (qlen bytes) in out (cap bytes): same id, QR=1, opcode copied, RD copied, RA=1, rcode; the question section is copied when the query's header and first question parse (qdcount=1), else qdcount=0. If the query has an OPT record, you may omit it. Returns the length written, or 0 if even a header cannot be built (qlen < 12 or cap too small).
   rcode is masked to 4 bits; the OPT record is omitted. out may be query (an in-place rewrite). */
size_t dns_make_error(const uint8_t *query, size_t qlen, int rcode, uint8_t *out, size_t cap);
uint16_t dns_get_id(const uint8_t *msg);        /* caller guarantees len >= 2 */
void dns_set_id(uint8_t *msg, uint16_t id);
/* Same question (name case-insensitively, type, class) — wire compare of two messages' first question sections; used to check an upstream answer belongs to the query. Returns 1 if equal. */
int dns_same_question(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
const char *dns_type_name(uint16_t type, char buf[16]);   /* "A", "AAAA", "CNAME", "MX", ..., else "TYPE123" */
const char *dns_rcode_name(unsigned rcode, char buf[16]); /* "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", else "RCODE9" */

#endif /* NT_DNS_H */
