// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "blocks.h"
#include "policy.h"

#define BUCKETS 4096     /* the kernel entries' buckets */
#define EVICT_SAMPLE 64  /* addresses looked at for one to give way when the table is full, */
#define EVICT_SCAN 1024  /* or up to this many while none of them may */

struct name_ref {
	char *name; /* and after it the CNAME chain its answer had ("a\0b\0\0"), or "" */
	int64_t expires_ns;
};

struct addr_node {
	struct addr_node *next;
	uint8_t addr[16];
	unsigned n;
	struct name_ref names[BLOCKS_NAMES_PER_ADDR];
	int shared;
	int unfit;  /* an entry it needs had no room at its last decision */
	int active; /* it has kernel entries: a block, or a scope's override */
};

/* A kernel entry as it was last written. */
struct entry_node {
	struct entry_node *next;
	struct nt_block_key key;
	struct nt_block_val val;
};

struct blocks {
	struct blocks_ops ops;
	int shared_mode;
	struct policy *p;
	const char **scopes; /* copies of the pointers: the caller keeps the strings */
	size_t n_scopes;
	size_t addr_cap;
	unsigned addr_mask;  /* addrs has addr_mask + 1 buckets */
	unsigned evict_hand; /* the bucket the next search for an address to give way starts at */
	struct addr_node **addrs;
	struct entry_node *entries[BUCKETS];
	struct blocks_counts c;
};

/* The bytes of a chain with its last '\0' (1 for none). */
static size_t chain_size(const char *chain)
{
	const char *t = chain;

	if (!chain)
		return 1;
	while (*t)
		t += strlen(t) + 1;
	return (size_t)(t - chain) + 1;
}

/*
 * The bytes of a chain that are kept, without the last '\0': the targets that fit in
 * BLOCKS_CHAIN_MAX, so that answers with long chains cannot grow the table.
 */
static size_t chain_kept(const char *chain)
{
	size_t c = 0;

	for (const char *t = chain; t && *t && c + strlen(t) + 2 <= BLOCKS_CHAIN_MAX;
	     t += strlen(t) + 1)
		c += strlen(t) + 1;
	return c;
}

/* A name and what is kept of its chain in one allocation, as name_ref keeps them. */
static char *name_dup(const char *name, const char *chain)
{
	size_t n = strlen(name) + 1, c = chain_kept(chain);
	char *r;

	r = malloc(n + c + 1);
	if (!r)
		return NULL;
	memcpy(r, name, n);
	memcpy(r + n, chain ? chain : "", c);
	r[n + c] = '\0';
	return r;
}

/* The chain kept after a name, or NULL. */
static const char *name_chain(const char *ref)
{
	const char *c = ref + strlen(ref) + 1;

	return *c ? c : NULL;
}

/* What the rules say of a kept name in scope (NULL: every scope's rules), its chain too. */
static void name_decide(const struct blocks *b, const char *scope, const char *ref,
			struct policy_decision *d)
{
	policy_decide_chain(b->p, scope, ref, name_chain(ref), d);
}

static unsigned addr_hash(const uint8_t addr[16], uint32_t scope)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ scope;

	for (int i = 0; i < 16; i++)
		h = (h ^ addr[i]) * 0x100000001b3ULL;
	return (unsigned)(h >> 32);
}

struct blocks *blocks_new(const struct blocks_ops *ops, int shared, size_t addr_cap)
{
	struct blocks *b;
	size_t buckets = 64;

	if (addr_cap == 0 || addr_cap > BLOCKS_ADDR_CAP_MAX) {
		errno = EINVAL;
		return NULL;
	}
	while (buckets < addr_cap / 4) /* chains of about four at the cap */
		buckets *= 2;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->addrs = calloc(buckets, sizeof(*b->addrs));
	if (!b->addrs) {
		free(b);
		return NULL;
	}
	b->ops = *ops;
	b->shared_mode = shared;
	b->addr_cap = addr_cap;
	b->addr_mask = (unsigned)buckets - 1;
	return b;
}

static struct entry_node **entry_find(struct blocks *b, const struct nt_block_key *k)
{
	struct entry_node **e = &b->entries[addr_hash(k->addr, k->scope) & (BUCKETS - 1)];

	while (*e && memcmp(&(*e)->key, k, sizeof(*k)))
		e = &(*e)->next;
	return e;
}

static void entry_remove(struct blocks *b, struct entry_node **e)
{
	struct entry_node *n = *e;

	if (b->ops.del(b->ops.ctx, &n->key) < 0)
		b->c.errors++; /* forgotten all the same: a block left there lapses at its expiry */
	b->c.entries--;
	b->c.blocked -= n->val.verdict == NT_VERDICT_BLOCKED;
	*e = n->next;
	free(n);
}

/*
 * The kernel entry for k becomes v (NULL: none): 0, or -ENOSPC if it had no room. What is kept
 * here is what the kernel holds: an update that fails leaves it as it was, to be tried again at
 * the next decision.
 */
static int entry_set(struct blocks *b, const struct nt_block_key *k, const struct nt_block_val *v)
{
	struct entry_node **e = entry_find(b, k), *n = *e;
	int fresh = !n;

	if (!v) {
		if (n)
			entry_remove(b, e);
		return 0;
	}
	if (n && !memcmp(&n->val, v, sizeof(*v)))
		return 0;
	if (fresh && (b->c.entries >= BLOCKS_ENTRY_CAP || !(n = calloc(1, sizeof(*n)))))
		return -ENOSPC;
	if (b->ops.put(b->ops.ctx, k, v) < 0) {
		b->c.errors++;
		if (fresh)
			free(n);
		return 0;
	}
	if (fresh) {
		n->key = *k;
		*e = n;
		b->c.entries++;
	} else {
		b->c.blocked -= n->val.verdict == NT_VERDICT_BLOCKED;
	}
	n->val = *v;
	b->c.blocked += v->verdict == NT_VERDICT_BLOCKED;
	return 0;
}

struct verdict {
	int blocked;
	int shared;
	uint32_t rule_id;
	int64_t expires_ns;
};

/* What the names of an address say in one scope (NULL: the rules of every scope). */
static struct verdict addr_decide(const struct blocks *b, const struct addr_node *a,
				  const char *scope)
{
	struct verdict v = { 0 };
	unsigned enforced = 0;

	for (unsigned i = 0; i < a->n; i++) {
		struct policy_decision d;

		name_decide(b, scope, a->names[i].name, &d);
		if (d.mode != POLICY_ENFORCE)
			continue;
		enforced++;
		if (!v.rule_id)
			v.rule_id = d.rule_id > 0 && d.rule_id < NT_RULE_DEFAULT ? (uint32_t)d.rule_id :
									      NT_RULE_DEFAULT;
		if (a->names[i].expires_ns > v.expires_ns)
			v.expires_ns = a->names[i].expires_ns;
	}
	v.shared = enforced && enforced < a->n;
	v.blocked = enforced && (!v.shared || b->shared_mode == BLOCKS_SHARED_BLOCK);
	return v;
}

/* The entry a verdict asks for: 1 and *ret, or 0 for none. */
static int verdict_val(const struct verdict *v, struct nt_block_val *ret)
{
	*ret = (struct nt_block_val){ .expires_ns = (uint64_t)v->expires_ns, .rule_id = v->rule_id,
				      .verdict = NT_VERDICT_BLOCKED };
	return v->blocked;
}

/*
 * Decides an address in every scope again and writes what changed. A scope gets an entry of
 * its own where scope 0's would say otherwise: another verdict (ALLOWED overrides a block),
 * or a block under the scope's own rule or for longer. An address whose entries first stop
 * fitting counts as dropped, once.
 */
static void addr_update(struct blocks *b, struct addr_node *a)
{
	struct nt_block_key k = { 0 };
	struct nt_block_val top, val;
	struct verdict all = addr_decide(b, a, NULL);
	int shared = all.shared, top_blocked = verdict_val(&all, &top), unfit = 0;
	int active = top_blocked;

	memcpy(k.addr, a->addr, 16);
	unfit |= entry_set(b, &k, top_blocked ? &top : NULL) < 0;
	for (size_t i = 0; i < b->n_scopes; i++) {
		struct verdict v;
		int own;

		k.scope = (uint32_t)(i + 1);
		if (!b->scopes[i] || a->n == 0) {
			entry_set(b, &k, NULL);
			continue;
		}
		v = addr_decide(b, a, b->scopes[i]);
		shared |= v.shared;
		if (verdict_val(&v, &val)) {
			own = !top_blocked || memcmp(&val, &top, sizeof(val));
		} else {
			own = top_blocked;
			val = top;
			val.verdict = NT_VERDICT_ALLOWED;
		}
		unfit |= entry_set(b, &k, own ? &val : NULL) < 0; /* none: scope 0's says it */
		active |= own;
	}
	b->c.shared += (size_t)shared - (size_t)a->shared;
	a->shared = shared;
	b->c.dropped += unfit && !a->unfit;
	a->unfit = unfit;
	a->active = active;
}

static struct addr_node **addr_find(struct blocks *b, const uint8_t addr[16])
{
	struct addr_node **a = &b->addrs[addr_hash(addr, 0) & b->addr_mask];

	while (*a && memcmp((*a)->addr, addr, 16))
		a = &(*a)->next;
	return a;
}

static void addr_drop(struct blocks *b, struct addr_node **link)
{
	struct addr_node *a = *link;

	for (unsigned i = 0; i < a->n; i++)
		free(a->names[i].name);
	a->n = 0;
	addr_update(b, a); /* no names: every entry goes */
	b->c.shared -= (size_t)a->shared;
	*link = a->next;
	free(a);
	b->c.addrs--;
}

/* Whether the rules of every scope, or of a scope with rules of its own, enforce a kept name. */
static int name_enforced(const struct blocks *b, const char *name)
{
	struct policy_decision d;

	name_decide(b, NULL, name, &d);
	if (d.mode == POLICY_ENFORCE)
		return 1;
	for (size_t s = 0; s < b->n_scopes; s++) {
		if (!b->scopes[s])
			continue;
		name_decide(b, b->scopes[s], name, &d);
		if (d.mode == POLICY_ENFORCE)
			return 1;
	}
	return 0;
}

/*
 * The name a full address gives up for a new one: one no rule enforces before one a rule
 * does (a busy CDN address must not lose the name it is refused for), then the one whose
 * answer runs out first.
 */
static unsigned name_victim(const struct blocks *b, const struct addr_node *a)
{
	unsigned victim = 0;
	int victim_enf = name_enforced(b, a->names[0].name);

	for (unsigned i = 1; i < a->n; i++) {
		int enf = name_enforced(b, a->names[i].name);

		if (enf < victim_enf ||
		    (enf == victim_enf && a->names[i].expires_ns < a->names[victim].expires_ns)) {
			victim = i;
			victim_enf = enf;
		}
	}
	return victim;
}

/*
 * Makes room for one address in a full table: an address that refuses nothing anywhere gives
 * way (not a shared one), the one whose answers run out first of the next EVICT_SAMPLE looked
 * at (EVICT_SCAN while none may), from where the last search ended. 1 if one did.
 *
 * Only where shared addresses are refused: otherwise what is remembered of the names that
 * may be reached is what keeps their address reachable when an enforced name resolves to it
 * later, and forgetting it would refuse them. There the new answer is dropped instead.
 */
static int addr_evict(struct blocks *b)
{
	struct addr_node **victim = NULL;
	int64_t victim_expires = 0;
	unsigned seen = 0, h = b->evict_hand;

	if (b->shared_mode != BLOCKS_SHARED_BLOCK)
		return 0;
	for (unsigned n = 0; n <= b->addr_mask && seen < (victim ? EVICT_SAMPLE : EVICT_SCAN); n++) {
		h = (b->evict_hand + n) & b->addr_mask;
		for (struct addr_node **link = &b->addrs[h]; *link; link = &(*link)->next) {
			const struct addr_node *a = *link;
			int64_t expires = 0;

			seen++;
			if (a->active || a->shared || a->unfit)
				continue;
			for (unsigned i = 0; i < a->n; i++)
				if (a->names[i].expires_ns > expires)
					expires = a->names[i].expires_ns;
			if (!victim || expires < victim_expires) {
				victim = link;
				victim_expires = expires;
			}
		}
	}
	b->evict_hand = (h + 1) & b->addr_mask;
	if (!victim)
		return 0;
	addr_drop(b, victim);
	b->c.evicted++;
	return 1;
}

void blocks_learn(struct blocks *b, const char *name, const char *chain, const uint8_t addr[16],
		  int64_t expires_ns)
{
	struct addr_node **link = addr_find(b, addr), *a = *link;
	unsigned i, victim = 0;
	int unfit;

	if (!a) {
		if ((b->c.addrs >= b->addr_cap && !addr_evict(b)) || !(a = calloc(1, sizeof(*a)))) {
			b->c.dropped++;
			return;
		}
		memcpy(a->addr, addr, 16);
		link = addr_find(b, addr); /* the victim may have been before it in its bucket */
		*link = a;
		b->c.addrs++;
	}
	for (i = 0; i < a->n; i++) {
		if (!strcmp(a->names[i].name, name))
			break;
	}
	if (i == a->n && a->n == BLOCKS_NAMES_PER_ADDR)
		victim = name_victim(b, a);
	unfit = a->unfit;
	if (i < a->n) {
		const char *had = name_chain(a->names[i].name);
		size_t kept = chain_kept(chain);
		int same = chain_size(had) == kept + 1 && (!kept || !memcmp(had, chain, kept));

		if (expires_ns <= a->names[i].expires_ns && same && !unfit)
			return; /* nothing new */
		if (!same) { /* the name's answer leads elsewhere now */
			char *copy = name_dup(name, chain);

			if (copy) {
				free(a->names[i].name);
				a->names[i].name = copy;
			}
		}
		if (expires_ns > a->names[i].expires_ns)
			a->names[i].expires_ns = expires_ns;
	} else {
		char *copy = name_dup(name, chain);

		if (!copy) {
			b->c.dropped++;
			return;
		}
		if (a->n == BLOCKS_NAMES_PER_ADDR)
			free(a->names[victim].name);
		else
			victim = a->n++;
		a->names[victim] = (struct name_ref){ copy, expires_ns };
	}
	addr_update(b, a);
	b->c.dropped += unfit && a->unfit; /* not enforced either: dropped, as this answer */
}

void blocks_expire(struct blocks *b, int64_t now_ns)
{
	for (unsigned h = 0; h <= b->addr_mask; h++) {
		struct addr_node **link = &b->addrs[h];

		while (*link) {
			struct addr_node *a = *link;
			unsigned kept = 0, before = a->n;

			for (unsigned i = 0; i < a->n; i++) {
				if (a->names[i].expires_ns > now_ns)
					a->names[kept++] = a->names[i];
				else
					free(a->names[i].name);
			}
			a->n = kept;
			if (kept == 0) {
				addr_drop(b, link);
				continue;
			}
			if (kept != before)
				addr_update(b, a);
			link = &a->next;
		}
	}
}

int blocks_apply(struct blocks *b, struct policy *p, const char *const *scopes, size_t n)
{
	const char **copy = n ? calloc(n, sizeof(*copy)) : NULL;

	if (n && !copy)
		return -ENOMEM;
	if (n)
		memcpy(copy, scopes, n * sizeof(*copy));
	/* Entries of scope indexes past the new list go first: nothing would visit them. */
	for (unsigned h = 0; h < BUCKETS; h++) {
		for (struct entry_node *e = b->entries[h], *next; e; e = next) {
			next = e->next;
			if (e->key.scope > n)
				entry_set(b, &e->key, NULL);
		}
	}
	policy_unref(b->p);
	b->p = policy_ref(p);
	free(b->scopes);
	b->scopes = copy;
	b->n_scopes = n;
	for (unsigned h = 0; h <= b->addr_mask; h++)
		for (struct addr_node *a = b->addrs[h]; a; a = a->next)
			addr_update(b, a);
	return 0;
}

void blocks_counts(const struct blocks *b, struct blocks_counts *ret)
{
	*ret = b->c;
}

void blocks_free(struct blocks *b)
{
	if (!b)
		return;
	for (unsigned h = 0; h <= b->addr_mask; h++)
		while (b->addrs[h])
			addr_drop(b, &b->addrs[h]);
	for (unsigned h = 0; h < BUCKETS; h++) {
		while (b->entries[h]) {
			struct nt_block_key k = b->entries[h]->key;

			entry_set(b, &k, NULL);
		}
	}
	policy_unref(b->p);
	free(b->scopes);
	free(b->addrs);
	free(b);
}
