/* SPDX-License-Identifier: MIT */
#ifndef NT_DNSREC_H
#define NT_DNSREC_H

#include <stdint.h>
#include "nettrail.h"

/* One answer record kept with a query: A, AAAA or CNAME. */
struct dns_record_rr {
	const char *name;   /* owner */
	const char *target; /* CNAME target; NULL for an address */
	uint16_t type;
	uint8_t family;     /* AF_INET or AF_INET6 for an address */
	uint32_t ttl;
	uint8_t addr[16];
};

/*
 * A DNS query as the proxy saw it and answered it, on its way to the store: one allocation
 * (dns_record_new) holding the strings and answers, freed with free().
 */
struct dns_record {
	int64_t time_ns;             /* when the query reached the proxy, ns since the Unix epoch */
	int attributed;              /* origin is known */
	struct nt_dns_origin origin; /* who asked, and which resolver they asked */
	const char *qname;           /* lowercase, no trailing dot */
	uint16_t qtype;
	int rcode;                   /* as answered to the client; -1 when none was sent */
	uint8_t proto;               /* IPPROTO_UDP or IPPROTO_TCP */
	uint8_t verdict;             /* enum nt_verdict */
	int64_t rule_id;             /* the rule that decided it (rules.id); 0: none */
	char rule[256];              /* its pattern, "default" for a scope default; "": none */
	char resolver[64];           /* the resolver the process asked, "addr:port"; "" unknown */
	char upstream[64];           /* where the proxy sent it; "" when not forwarded */
	int64_t latency_ns;          /* upstream round trip; -1 when there was none */
	const char *error;           /* static text, or NULL */
	unsigned answers;            /* every record of the answer section */
	unsigned n_rrs;
	struct dns_record_rr *rrs;
	int learned;                 /* not a client's query: the proxy asked the upstream for
					a blocked name's addresses, only to enforce them */
	const char *chain;           /* the answer's CNAME targets ("a\0b\0\0"), or NULL */
};

#endif /* NT_DNSREC_H */
