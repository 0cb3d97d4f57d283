/* SPDX-License-Identifier: MIT */
#ifndef NT_BLOCKS_H
#define NT_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include "nettrail.h"
#include "policy.h"

/*
 * The user-space half of address enforcement: which names resolved to which addresses (the
 * answers the proxy saw, and those the store holds), until their TTL and grace run out; and
 * from that and the rules, the entries the kernel must hold (struct nt_block_key), kept in
 * step through ops. Scope 0 holds what the rules of every scope say; scope i what the rules
 * of the i-th scope with rules of its own say, where it differs.
 *
 * An address that an enforced name and a name that is not enforced both resolved to (a CDN's,
 * a load balancer's) is refused only with BLOCKS_SHARED_BLOCK: by default the name that may
 * be reached keeps its address, and the enforced name is still refused by DNS.
 */
#define BLOCKS_ADDR_CAP 16384       /* addresses remembered by default (--block-addresses) */
#define BLOCKS_ADDR_CAP_MAX (1u << 20)
#define BLOCKS_NAMES_PER_ADDR 8     /* names per address; the one expiring first gives way */
#define BLOCKS_CHAIN_MAX 256        /* bytes of a name's CNAME chain kept: the targets that fit */
#define BLOCKS_ENTRY_CAP NT_BLOCK_ENTRIES /* kernel entries: the size of the BPF map */

enum blocks_shared { BLOCKS_SHARED_ALLOW = 0, BLOCKS_SHARED_BLOCK = 1 };

struct blocks_ops {
	void *ctx;
	int (*put)(void *ctx, const struct nt_block_key *k, const struct nt_block_val *v);
	int (*del)(void *ctx, const struct nt_block_key *k);
};

struct blocks_counts {
	size_t addrs;        /* addresses known */
	uint64_t evicted;    /* addresses that refused nothing, forgotten to make room for others
				(BLOCKS_SHARED_BLOCK only) */
	size_t entries;      /* kernel entries: blocked, and allowed overrides */
	size_t blocked;      /* of those, blocked */
	size_t shared;       /* addresses with an enforced and a reachable name (in some scope) */
	uint64_t dropped;    /* answers not remembered for want of room: the address cap reached
				and no address could give way (each answer), or BLOCKS_ENTRY_CAP (an
				address once when its entries stop fitting, then each answer for it
				while they do not) */
	uint64_t errors;     /* kernel updates that failed (each is tried again at the next
				decision of its address; a failed delete is not) */
};

struct blocks;

/*
 * Remembers up to addr_cap addresses (1 to BLOCKS_ADDR_CAP_MAX); when full, with
 * BLOCKS_SHARED_BLOCK one that refuses nothing gives way to a new one, else the new answer is
 * dropped. NULL with errno set.
 */
struct blocks *blocks_new(const struct blocks_ops *ops, int shared, size_t addr_cap);
/* Deletes every kernel entry it made, frees; accepts NULL. */
void blocks_free(struct blocks *b);

/*
 * The rules from now on, and the scopes with rules of their own: scopes[i] has index i + 1
 * in the kernel (NULL: an index no longer in use). Every address is decided again.
 */
int blocks_apply(struct blocks *b, struct policy *p, const char *const *scopes, size_t n);

/*
 * name resolved to addr (IPv6 or ::ffff:IPv4) until expires_ns (boot-time ns), through the
 * CNAME chain (policy_decide_chain; NULL: none), which the rules of its targets decide too.
 */
void blocks_learn(struct blocks *b, const char *name, const char *chain, const uint8_t addr[16],
		  int64_t expires_ns);

/* Forgets the answers that ran out by now_ns, and the entries they made. */
void blocks_expire(struct blocks *b, int64_t now_ns);

void blocks_counts(const struct blocks *b, struct blocks_counts *ret);

#endif /* NT_BLOCKS_H */
