/* SPDX-License-Identifier: MIT */
#ifndef NT_DNSPROXY_H
#define NT_DNSPROXY_H

#include <stdint.h>
#include <sys/socket.h>
#include "dnsrec.h"
#include "nettrail.h"

/*
 * The DNS proxy the watched cgroups' DNS is redirected to: UDP and TCP on 127.0.0.1 (and ::1
 * where the host has it), one port for all four sockets. Each query is forwarded to the resolver
 * its process asked for (or to --upstream), under an id of the proxy's choosing, so concurrent
 * clients never collide; the answer goes back with the client's id. A query that cannot be
 * answered gets SERVFAIL quickly, never silence.
 *
 * Single-threaded: the proxy has its own epoll set, whose fd the caller polls.
 */
struct dnsproxy;

struct dnsproxy_upstream {
	struct sockaddr_storage addr;
	socklen_t len; /* 0: none; forward to the resolver each process asked for */
};

struct dnsproxy_opts {
	uint16_t port;                 /* 0: a free one */
	struct dnsproxy_upstream upstream;
	int timeout_ms;                /* upstream answer deadline */
	int block_rcode;               /* the answer to a blocked query: NXDOMAIN (0: NXDOMAIN) */
	int learn_blocked;             /* ask the upstream for a blocked name's addresses anyway:
					  records with .learned set come to the record hook */
};

/* What the rules say of one query. */
struct dnsproxy_decision {
	uint8_t verdict;   /* enum nt_verdict: NT_VERDICT_BLOCKED is answered by the proxy */
	int64_t rule_id;   /* 0: none */
	char rule[256];    /* "" : none */
};

struct dnsproxy_hooks {
	void *ctx;
	/* Called before a query is handled (the caller drains the events that precede it). */
	void (*before_query)(void *ctx);
	/* The origin of the query whose packet the proxy got: 1 found, 0 not. */
	int (*origin)(void *ctx, const struct nt_dns_key *key, struct nt_dns_origin *ret);
	/* A query is answered (or given up); the record is the callee's, to free(). */
	void (*record)(void *ctx, struct dns_record *rec);
	/*
	 * What the rules say of a query for name (origin NULL: the sender is not known), and
	 * once answered, with the answer's CNAME chain (policy_decide_chain; NULL: none).
	 */
	void (*decide)(void *ctx, const struct nt_dns_origin *origin, const char *name,
		       const char *chain, struct dnsproxy_decision *ret);
};

struct dnsproxy_counts {
	uint64_t queries;       /* queries received, well-formed or not */
	uint64_t malformed;     /* queries that did not parse: FORMERR, or dropped without a header */
	uint64_t unattributed;  /* queries whose sender was not known */
	uint64_t upstream_timeout;
	uint64_t upstream_error;   /* refused, unreachable, or an answer that did not fit */
	uint64_t upstream_mismatch;/* answers for no pending query (late, or spoofed): dropped */
	uint64_t overload;      /* queries refused with SERVFAIL: too many in flight or connections */
	uint64_t blocked;       /* queries answered by the proxy because a rule enforces their name
				   (or a name of their answer's CNAME chain) */
	uint64_t learn_sent;    /* of those, asked of the upstream for their addresses */
};

/* Binds the sockets (before the BPF programs are loaded, which need the port). */
int dnsproxy_open(const struct dnsproxy_opts *o, const struct dnsproxy_hooks *h,
		  struct dnsproxy **ret, const char **why);
uint16_t dnsproxy_port(const struct dnsproxy *p);
int dnsproxy_has_v6(const struct dnsproxy *p);
int dnsproxy_fd(const struct dnsproxy *p);

/* Handles whatever is ready; never blocks. */
void dnsproxy_dispatch(struct dnsproxy *p);
/* Answers SERVFAIL to what waited past the deadline; call at least every 100 ms. */
void dnsproxy_tick(struct dnsproxy *p);
void dnsproxy_counts(const struct dnsproxy *p, struct dnsproxy_counts *ret);
/*
 * Handles what comes until nothing waits for the upstream, or for max_ms at most: the queries
 * in flight when the proxy stops get their answers and rcodes recorded, not SERVFAIL.
 */
void dnsproxy_settle(struct dnsproxy *p, int max_ms);
/* Gives up every pending query: recorded, SERVFAIL to the client. */
void dnsproxy_abandon(struct dnsproxy *p);
/* Abandons what is pending, closes every socket, frees. */
void dnsproxy_close(struct dnsproxy *p);

/* "ADDR" or "ADDR:PORT" / "[ADDR6]:PORT" into an upstream (port 53 by default); -EINVAL. */
int dnsproxy_parse_upstream(const char *s, struct dnsproxy_upstream *ret);
/* "ADDR:PORT" text of an address, IPv6 in brackets. */
void dnsproxy_format_addr(int family, const uint8_t *addr, uint16_t port_be, char *buf, size_t len);
void dnsproxy_format_addr_sa(const struct sockaddr_storage *ss, char *buf, size_t len);

#endif /* NT_DNSPROXY_H */
