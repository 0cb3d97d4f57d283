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
/* The name and what of its answer's CNAME chain fits after it: 130 bytes past a longest name. */
#define DOMAIN_TEXT_MAX 384

struct domain_entry {
	uint64_t scope_hash;
	int64_t expires_ns; /* 0: free */
	uint8_t addr[16];   /* addr_key() form */
	char name[DOMAIN_TEXT_MAX]; /* "name\0target\0target\0\0" */
};

struct domains {
	struct domain_entry *e;
};

int domains_init(struct domains *d);
void domains_free(struct domains *d);
/* Remembers that scope resolved name to addr, valid until expires_ns. Longer names are not kept. */
void domains_put(struct domains *d, const char *scope, const uint8_t addr[16], const char *name,
		 int64_t expires_ns);
/*
 * The same, with the answer's CNAME chain ("a\0b\0\0", NULL: none): its targets are kept
 * as far as they fit in DOMAIN_TEXT_MAX, from the first that does not on none.
 */
void domains_put_chain(struct domains *d, const char *scope, const uint8_t addr[16],
		       const char *name, const char *chain, int64_t expires_ns);
/* The name scope resolved to addr that was still valid at at_ns, or NULL. */
const char *domains_get(const struct domains *d, const char *scope, const uint8_t addr[16],
			int64_t at_ns);
/* The chain kept with a name domains_get returned ("a\0b\0\0"), or NULL for none. */
const char *domains_chain(const char *name);
void domains_clear(struct domains *d);

#endif /* NT_DOMAINS_H */
