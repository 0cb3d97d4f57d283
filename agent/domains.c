// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "domains.h"

#define PROBE 8 /* slots looked at per key: a bounded neighbourhood */

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t scope_hash(const char *scope)
{
	return fnv1a(0xcbf29ce484222325ULL, scope, strlen(scope));
}

static size_t slot_of(uint64_t sh, const uint8_t addr[16])
{
	return (size_t)(fnv1a(sh, addr, 16) % DOMAINS_CAP);
}

int domains_init(struct domains *d)
{
	d->e = calloc(DOMAINS_CAP, sizeof(*d->e));
	return d->e ? 0 : -ENOMEM;
}

void domains_free(struct domains *d)
{
	free(d->e);
	d->e = NULL;
}

void domains_clear(struct domains *d)
{
	memset(d->e, 0, DOMAINS_CAP * sizeof(*d->e));
}

void domains_put(struct domains *d, const char *scope, const uint8_t addr[16], const char *name,
		 int64_t expires_ns)
{
	domains_put_chain(d, scope, addr, name, NULL, expires_ns);
}

/* name, then as many of chain's targets as fit, then the empty string that ends them. */
static void text_put(char *text, const char *name, size_t len, const char *chain)
{
	size_t o = len + 1;

	memcpy(text, name, o);
	for (const char *c = chain; c && *c; c += strlen(c) + 1) {
		size_t n = strlen(c) + 1;

		if (o + n + 1 > DOMAIN_TEXT_MAX)
			break;
		memcpy(text + o, c, n);
		o += n;
	}
	text[o] = '\0';
}

void domains_put_chain(struct domains *d, const char *scope, const uint8_t addr[16],
		       const char *name, const char *chain, int64_t expires_ns)
{
	uint64_t sh = scope_hash(scope);
	size_t start = slot_of(sh, addr), len = strlen(name);
	struct domain_entry *victim = NULL;

	for (size_t i = 0; i < PROBE; i++) {
		struct domain_entry *e = &d->e[(start + i) % DOMAINS_CAP];

		if (e->expires_ns && e->scope_hash == sh && memcmp(e->addr, addr, 16) == 0) {
			victim = e; /* the most recent answer wins */
			break;
		}
		if (len >= DOMAIN_NAME_MAX)
			continue; /* not kept; only an older name for the address is to go */
		if (!victim || e->expires_ns < victim->expires_ns)
			victim = e;
	}
	if (len >= DOMAIN_NAME_MAX) {
		/* Too long to keep: the address's older name must not outlive this answer. */
		if (victim && victim->expires_ns && victim->scope_hash == sh &&
		    memcmp(victim->addr, addr, 16) == 0)
			victim->expires_ns = 0;
		return;
	}
	victim->scope_hash = sh;
	victim->expires_ns = expires_ns;
	memcpy(victim->addr, addr, 16);
	text_put(victim->name, name, len, chain);
}

const char *domains_chain(const char *name)
{
	const char *c = name + strlen(name) + 1;

	return *c ? c : NULL;
}

const char *domains_get(const struct domains *d, const char *scope, const uint8_t addr[16],
			int64_t at_ns)
{
	uint64_t sh = scope_hash(scope);
	size_t start = slot_of(sh, addr);

	for (size_t i = 0; i < PROBE; i++) {
		const struct domain_entry *e = &d->e[(start + i) % DOMAINS_CAP];

		if (e->expires_ns && e->scope_hash == sh && memcmp(e->addr, addr, 16) == 0)
			return e->expires_ns >= at_ns ? e->name : NULL;
	}
	return NULL;
}
