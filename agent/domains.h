/* SPDX-License-Identifier: MIT */
#ifndef NT_DOMAINS_H
#define NT_DOMAINS_H

#include <stdint.h>

/*
 * Which name a scope most recently resolved to an address, until the answer's TTL (plus a
 * grace period, set by the caller) runs out: how a connection gets its domain. A fixed table,
 * so memory is bounded: when a neighbourhood is full, the entry that expires first gives way.
 */
#define DOMAINS_CAP 16384 /* each answer is kept twice: for its scope, and for any */
#define DOMAIN_NAME_MAX 254 /* 253 characters of a name, and the NUL */

struct domain_entry {
	uint64_t scope_hash;
	int64_t expires_ns; /* 0: free */
	uint8_t addr[16];   /* addr_key() form */
	char name[DOMAIN_NAME_MAX];
};

struct domains {
	struct domain_entry *e;
};

int domains_init(struct domains *d);
void domains_free(struct domains *d);
/* Remembers that scope resolved name to addr, valid until expires_ns. Longer names are not kept. */
void domains_put(struct domains *d, const char *scope, const uint8_t addr[16], const char *name,
		 int64_t expires_ns);
/* The name scope resolved to addr that was still valid at at_ns, or NULL. */
const char *domains_get(const struct domains *d, const char *scope, const uint8_t addr[16],
			int64_t at_ns);
void domains_clear(struct domains *d);

#endif /* NT_DOMAINS_H */
