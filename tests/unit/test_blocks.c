// SPDX-License-Identifier: MIT
/*
 * Unit tests for agent/blocks.c: from the names the DNS answers resolved and the rules, which
 * entries the kernel's address table holds. The ops write into an in-memory table that stands
 * for the BPF hash map `blocked_addrs` (same key and value, same max_entries), so each test
 * asserts exactly which entries exist after each step; every teardown frees the blocks and
 * checks that the table is empty and that nothing was deleted that was not there.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "nettrail.h"
#include "policy.h"
#include "testrule.h"
#include "blocks.h"

#define ALLOW POLICY_ALLOW
#define MONITOR POLICY_MONITOR
#define ENFORCE POLICY_ENFORCE
#define BLOCKED NT_VERDICT_BLOCKED
#define ALLOWED NT_VERDICT_ALLOWED

_Static_assert(sizeof(struct nt_block_key) == 20, "nt_block_key: no padding for memcmp");
_Static_assert(sizeof(struct nt_block_val) == 16, "nt_block_val: explicit padding");

/* ---- the kernel map, in memory ------------------------------------------------------------ */

#define MAP_MAX 65536 /* max_entries of blocked_addrs in bpf/nettrail.bpf.c */
#define MAP_BUCKETS 65536

struct map_node {
	struct map_node *next;
	struct nt_block_key key;
	struct nt_block_val val;
};

struct fake_map {
	struct map_node *buckets[MAP_BUCKETS];
	size_t n;
	size_t puts, dels;
	size_t stray_dels; /* deletes of keys the map did not hold */
	int fail_put;      /* put returns this (a -errno) while non-zero */
	int fail_del;
};

static unsigned map_hash(const struct nt_block_key *k)
{
	const uint8_t *p = (const uint8_t *)k;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 16777619u;
	return h & (MAP_BUCKETS - 1);
}

static struct map_node **map_find(struct fake_map *m, const struct nt_block_key *k)
{
	struct map_node **n = &m->buckets[map_hash(k)];

	while (*n && memcmp(&(*n)->key, k, sizeof(*k)))
		n = &(*n)->next;
	return n;
}

/* As bpf_map_update_elem(BPF_ANY) on a hash map: -E2BIG for a new key in a full map. */
static int map_put(void *ctx, const struct nt_block_key *k, const struct nt_block_val *v)
{
	struct fake_map *m = ctx;
	struct map_node **n = map_find(m, k);

	m->puts++;
	if (m->fail_put)
		return m->fail_put;
	if (!*n) {
		if (m->n >= MAP_MAX)
			return -E2BIG;
		*n = calloc(1, sizeof(**n));
		if (!*n)
			return -ENOMEM;
		(*n)->key = *k;
		m->n++;
	}
	(*n)->val = *v;
	return 0;
}

/* As loader_block_del: a key that is not there is no error (but the test counts it). */
static int map_del(void *ctx, const struct nt_block_key *k)
{
	struct fake_map *m = ctx;
	struct map_node **n = map_find(m, k), *gone;

	m->dels++;
	if (m->fail_del)
		return m->fail_del;
	if (!*n) {
		m->stray_dels++;
		return 0;
	}
	gone = *n;
	*n = gone->next;
	free(gone);
	m->n--;
	return 0;
}

static void map_clear(struct fake_map *m)
{
	for (size_t h = 0; h < MAP_BUCKETS; h++) {
		while (m->buckets[h]) {
			struct map_node *n = m->buckets[h];

			m->buckets[h] = n->next;
			free(n);
		}
	}
	m->n = 0;
}

static size_t map_count_verdict(const struct fake_map *m, int verdict)
{
	size_t c = 0;

	for (size_t h = 0; h < MAP_BUCKETS; h++)
		for (const struct map_node *n = m->buckets[h]; n; n = n->next)
			c += n->val.verdict == verdict;
	return c;
}

/* ---- fixtures ------------------------------------------------------------------------------ */

struct fixture {
	struct fake_map *m;
	struct blocks *b;
	struct policy *p[8];
	size_t np;
};

static int setup_mode(void **state, int shared, size_t addr_cap)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->m = calloc(1, sizeof(*f->m));
	if (!f->m) {
		free(f);
		return -1;
	}
	f->b = blocks_new(&(struct blocks_ops){ .ctx = f->m, .put = map_put, .del = map_del },
			  shared, addr_cap);
	if (!f->b) {
		free(f->m);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_mode(state, BLOCKS_SHARED_ALLOW, BLOCKS_ADDR_CAP);
}

static int setup_shared_block(void **state)
{
	return setup_mode(state, BLOCKS_SHARED_BLOCK, BLOCKS_ADDR_CAP);
}

/* --block-addresses 4 */
static int setup_four(void **state)
{
	return setup_mode(state, BLOCKS_SHARED_ALLOW, 4);
}

/* --block-addresses 4 --shared-address block */
static int setup_four_shared_block(void **state)
{
	return setup_mode(state, BLOCKS_SHARED_BLOCK, 4);
}

/* blocks_free takes every entry it made out of the map, and only those. */
static int teardown(void **state)
{
	struct fixture *f = *state;
	size_t left, stray;

	f->m->fail_put = f->m->fail_del = 0;
	blocks_free(f->b);
	left = f->m->n;
	stray = f->m->stray_dels;
	map_clear(f->m);
	free(f->m);
	for (size_t i = 0; i < f->np; i++)
		policy_unref(f->p[i]);
	free(f);
	assert_int_equal(left, 0);
	assert_int_equal(stray, 0);
	return 0;
}

/* ---- helpers ------------------------------------------------------------------------------- */

/* A rule set owned by the fixture (blocks_apply takes its own reference). */
static struct policy *build(struct fixture *f, const struct policy_rule *r, size_t n)
{
	struct policy *p = policy_build(r, n, NULL, 0);

	assert_non_null(p);
	assert_true(f->np < sizeof(f->p) / sizeof(f->p[0]));
	f->p[f->np++] = p;
	return p;
}

/* Builds the rules and applies them with the scopes (scopes[i] is kernel index i + 1). */
static void apply_(struct fixture *f, const struct policy_rule *r, size_t n,
		   const char *const *scopes, size_t n_scopes)
{
	assert_int_equal(blocks_apply(f->b, build(f, r, n), scopes, n_scopes), 0);
}
#define apply(f, rules, scopes, n_scopes) \
	apply_(f, rules, sizeof(rules) / sizeof((rules)[0]), scopes, n_scopes)

/* An address as a block key holds it, from its text: "192.0.2.1" becomes ::ffff:192.0.2.1. */
static const uint8_t *ip(const char *text, uint8_t buf[16])
{
	struct in_addr a4;

	if (inet_pton(AF_INET, text, &a4) == 1) {
		memset(buf, 0, 10);
		buf[10] = buf[11] = 0xff;
		memcpy(buf + 12, &a4, 4);
		return buf;
	}
	if (inet_pton(AF_INET6, text, buf) != 1)
		fail_msg("not an address: %s", text);
	return buf;
}

static void learn(struct fixture *f, const char *name, const char *addr, int64_t expires_ns)
{
	uint8_t a[16];

	blocks_learn(f->b, name, NULL, ip(addr, a), expires_ns);
}

static struct blocks_counts counts(const struct fixture *f)
{
	struct blocks_counts c;

	memset(&c, 0xa5, sizeof(c));
	blocks_counts(f->b, &c);
	return c;
}

/*
 * The entry (scope, addr) is there with that verdict, rule and expiry (verdict -1: it is not
 * there); reported at the caller's line.
 */
static void entry_(struct fixture *f, uint32_t scope, const char *addr, int verdict,
		   uint32_t rule_id, int64_t expires_ns, const char *file, int line)
{
	struct nt_block_key k = { .scope = scope };
	struct map_node *n;

	ip(addr, k.addr);
	n = *map_find(f->m, &k);
	if (verdict < 0 && !n)
		return;
	if (verdict >= 0 && n && n->val.verdict == verdict && n->val.rule_id == rule_id &&
	    n->val.expires_ns == (uint64_t)expires_ns && !memcmp(n->val._pad, "\0\0\0", 3))
		return;
	if (n)
		print_error("entry (%u, %s): want %s, got verdict %u rule %u expires %llu\n", scope,
			    addr, verdict < 0 ? "none" : "another", n->val.verdict, n->val.rule_id,
			    (unsigned long long)n->val.expires_ns);
	else
		print_error("entry (%u, %s): want verdict %d rule %u expires %lld, got none\n",
			    scope, addr, verdict, rule_id, (long long)expires_ns);
	_fail(file, line);
}
#define entry(f, scope, addr, verdict, rule_id, expires) \
	entry_(f, scope, addr, verdict, rule_id, expires, __FILE__, __LINE__)
#define no_entry(f, scope, addr) entry_(f, scope, addr, -1, 0, 0, __FILE__, __LINE__)

/* The map holds n entries, and the counts say what it holds. */
static void holds_(struct fixture *f, size_t n, const char *file, int line)
{
	struct blocks_counts c = counts(f);
	size_t blocked = map_count_verdict(f->m, BLOCKED);

	if (f->m->n == n && c.entries == n && c.blocked == blocked)
		return;
	print_error("map holds %zu entries (%zu blocked), want %zu; counts say %zu (%zu blocked)\n",
		    f->m->n, blocked, n, c.entries, c.blocked);
	_fail(file, line);
}
#define holds(f, n) holds_(f, n, __FILE__, __LINE__)

/* ---- a name's address, enforced ------------------------------------------------------------ */

static void test_learn_then_apply(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(3, "api.example.test", ENFORCE, "") };

	learn(f, "api.example.test", "192.0.2.1", 5000);
	holds(f, 0); /* no rules yet: nothing to refuse */
	assert_int_equal(counts(f).addrs, 1);
	apply(f, r, NULL, 0);
	entry(f, 0, "192.0.2.1", BLOCKED, 3, 5000);
	holds(f, 1);
	assert_int_equal(counts(f).blocked, 1);
	assert_int_equal(counts(f).addrs, 1);
	assert_int_equal(counts(f).shared, 0);
	assert_int_equal(counts(f).dropped, 0);
	assert_int_equal(counts(f).errors, 0);
}

static void test_suffix_covers_subdomain(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(4, "example.test", ENFORCE, "") };

	learn(f, "ci.build.example.test", "192.0.2.1", 5000);
	learn(f, "example.test", "192.0.2.2", 6000);
	learn(f, "example.test.other", "192.0.2.3", 7000);
	learn(f, "notexample.test", "192.0.2.4", 7000);
	apply(f, r, NULL, 0);
	entry(f, 0, "192.0.2.1", BLOCKED, 4, 5000);
	entry(f, 0, "192.0.2.2", BLOCKED, 4, 6000);
	no_entry(f, 0, "192.0.2.3");
	no_entry(f, 0, "192.0.2.4");
	holds(f, 2);
}

static void test_exact_rule_not_subdomain(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(5, "=example.test", ENFORCE, "") };

	learn(f, "example.test", "192.0.2.1", 5000);
	learn(f, "api.example.test", "192.0.2.2", 5000);
	apply(f, r, NULL, 0);
	entry(f, 0, "192.0.2.1", BLOCKED, 5, 5000);
	no_entry(f, 0, "192.0.2.2");
	holds(f, 1);
}

/* An address the answers gave several times: its entry lasts as long as the latest. */
static void test_renewed_answer_extends(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, "") };

	apply(f, r, NULL, 0);
	learn(f, "example.test", "192.0.2.1", 5000);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	learn(f, "example.test", "192.0.2.1", 9000);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 9000);
	learn(f, "example.test", "192.0.2.1", 7000); /* an older answer changes nothing */
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 9000);
	learn(f, "www.example.test", "192.0.2.1", 8000); /* another enforced name: the latest */
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 9000);
	learn(f, "www.example.test", "192.0.2.1", 12000);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 12000);
	holds(f, 1);
	assert_int_equal(counts(f).addrs, 1);
}

/* ---- rules that change ---------------------------------------------------------------------- */

static void test_switch_to_monitor_deletes(void **state)
{
	struct fixture *f = *state;
	struct policy_rule enforce[] = { rule(1, "example.test", ENFORCE, "") };
	struct policy_rule monitor[] = { rule(1, "example.test", MONITOR, "") };
	size_t dels;

	learn(f, "api.example.test", "192.0.2.1", 5000);
	apply(f, enforce, NULL, 0);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	dels = f->m->dels;
	apply(f, monitor, NULL, 0);
	no_entry(f, 0, "192.0.2.1");
	holds(f, 0);
	assert_int_equal(f->m->dels, dels + 1);
	assert_int_equal(counts(f).addrs, 1); /* the answer stays, for when it is enforced again */
	apply(f, enforce, NULL, 0);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	holds(f, 1);
}

static void test_rule_removed_deletes(void **state)
{
	struct fixture *f = *state;
	struct policy_rule both[] = { rule(1, "example.test", ENFORCE, ""),
				      rule(2, "other.test", ENFORCE, "") };
	struct policy_rule one[] = { rule(2, "other.test", ENFORCE, "") };

	learn(f, "api.example.test", "192.0.2.1", 5000);
	learn(f, "other.test", "2001:db8::1", 5000);
	apply(f, both, NULL, 0);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	entry(f, 0, "2001:db8::1", BLOCKED, 2, 5000);
	apply(f, one, NULL, 0);
	no_entry(f, 0, "192.0.2.1");
	entry(f, 0, "2001:db8::1", BLOCKED, 2, 5000);
	holds(f, 1);
	assert_int_equal(blocks_apply(f->b, NULL, NULL, 0), 0); /* no rules at all */
	holds(f, 0);
}

static void test_learn_after_apply(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(7, "example.test", ENFORCE, "") };

	apply(f, r, NULL, 0);
	holds(f, 0);
	learn(f, "allowed.test", "192.0.2.9", 5000);
	holds(f, 0);
	learn(f, "api.example.test", "192.0.2.1", 5000);
	entry(f, 0, "192.0.2.1", BLOCKED, 7, 5000);
	holds(f, 1);
}

/* ---- expiry ----------------------------------------------------------------------------- */

static void test_expire(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, "") };

	apply(f, r, NULL, 0);
	learn(f, "a.example.test", "192.0.2.1", 5000);
	learn(f, "b.example.test", "192.0.2.2", 8000);
	blocks_expire(f->b, 4999);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	entry(f, 0, "192.0.2.2", BLOCKED, 1, 8000);
	assert_int_equal(counts(f).addrs, 2);
	blocks_expire(f->b, 5001);
	no_entry(f, 0, "192.0.2.1");
	entry(f, 0, "192.0.2.2", BLOCKED, 1, 8000);
	holds(f, 1);
	assert_int_equal(counts(f).addrs, 1);
	blocks_expire(f->b, 9000);
	holds(f, 0);
	assert_int_equal(counts(f).addrs, 0);
	learn(f, "a.example.test", "192.0.2.1", 20000); /* answered again */
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 20000);
}

/* One of an address's names runs out: the entry lasts as long as the names left say. */
static void test_expire_one_name(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, "") };

	apply(f, r, NULL, 0);
	learn(f, "a.example.test", "192.0.2.1", 9000);
	learn(f, "b.example.test", "192.0.2.1", 5000);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 9000);
	blocks_expire(f->b, 6000);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 9000);
	assert_int_equal(counts(f).addrs, 1);
	holds(f, 1);
}

/* ---- scopes with rules of their own ---------------------------------------------------------- */

static void test_scope_rule(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(5, "example.test", ENFORCE, "deploy") };
	const char *scopes[] = { "build", "deploy" };

	learn(f, "api.example.test", "192.0.2.1", 5000);
	apply(f, r, scopes, 2);
	entry(f, 2, "192.0.2.1", BLOCKED, 5, 5000);
	no_entry(f, 0, "192.0.2.1");
	no_entry(f, 1, "192.0.2.1");
	holds(f, 1);
	learn(f, "example.test", "2001:db8::5", 6000); /* learnt afterwards */
	entry(f, 2, "2001:db8::5", BLOCKED, 5, 6000);
	holds(f, 2);
}

/* An allow rule of a scope over a global enforce: an ALLOWED entry that overrides scope 0. */
static void test_scope_allow_overrides_global(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, ""),
				   rule(2, "api.example.test", ALLOW, "deploy") };
	const char *scopes[] = { "deploy" };

	learn(f, "api.example.test", "192.0.2.1", 5000);
	learn(f, "www.example.test", "192.0.2.2", 5000);
	apply(f, r, scopes, 1);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	entry(f, 1, "192.0.2.1", ALLOWED, 1, 5000);
	entry(f, 0, "192.0.2.2", BLOCKED, 1, 5000);
	no_entry(f, 1, "192.0.2.2"); /* the scope says what scope 0 says */
	holds(f, 3);
	assert_int_equal(counts(f).blocked, 2);
}

/*
 * A scope's own enforce rule for a name the rules of every scope enforce too: the scope's
 * attempts are refused under its own rule, as its DNS queries are.
 */
static void test_scope_enforce_over_global_enforce(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, ""),
				   rule(9, "example.test", ENFORCE, "deploy") };
	const char *scopes[] = { "deploy", "build" };

	learn(f, "api.example.test", "192.0.2.1", 5000);
	apply(f, r, scopes, 2);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	entry(f, 1, "192.0.2.1", BLOCKED, 9, 5000);
	no_entry(f, 2, "192.0.2.1"); /* build has no rule of its own for it */
	holds(f, 2);
}

/* A scope that no longer has rules: NULL at its index, or past the end of the list. */
static void test_scope_gone(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, "a"),
				   rule(2, "example.test", ENFORCE, "b"),
				   rule(3, "example.test", ENFORCE, "c") };
	struct policy_rule r2[] = { rule(2, "example.test", ENFORCE, "b") };
	const char *scopes[] = { "a", "b", "c" };
	const char *scopes2[] = { NULL, "b" };

	learn(f, "example.test", "192.0.2.1", 5000);
	apply(f, r, scopes, 3);
	entry(f, 1, "192.0.2.1", BLOCKED, 1, 5000);
	entry(f, 2, "192.0.2.1", BLOCKED, 2, 5000);
	entry(f, 3, "192.0.2.1", BLOCKED, 3, 5000);
	holds(f, 3);
	apply(f, r2, scopes2, 2);
	no_entry(f, 1, "192.0.2.1");
	entry(f, 2, "192.0.2.1", BLOCKED, 2, 5000);
	no_entry(f, 3, "192.0.2.1");
	holds(f, 1);
	blocks_expire(f->b, 6000);
	holds(f, 0);
}

/* ---- shared addresses (a CDN's) --------------------------------------------------------------- */

static void test_shared_allow(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "bad.test", ENFORCE, ""),
				   rule(2, "good.test", ALLOW, "") };

	apply(f, r, NULL, 0);
	learn(f, "cdn.bad.test", "192.0.2.1", 5000);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	learn(f, "www.good.test", "192.0.2.1", 3000);
	no_entry(f, 0, "192.0.2.1");
	holds(f, 0);
	assert_int_equal(counts(f).shared, 1);
	assert_int_equal(counts(f).addrs, 1);
	blocks_expire(f->b, 4000); /* the reachable name ran out: the enforced one alone */
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	assert_int_equal(counts(f).shared, 0);
	holds(f, 1);
}

static void test_shared_block(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "bad.test", ENFORCE, "") };

	apply(f, r, NULL, 0);
	learn(f, "cdn.bad.test", "2001:db8::1", 5000);
	learn(f, "www.good.test", "2001:db8::1", 9000); /* no rule: allowed by default */
	entry(f, 0, "2001:db8::1", BLOCKED, 1, 5000); /* as long as the enforced name's answer */
	holds(f, 1);
	assert_int_equal(counts(f).shared, 1);
	blocks_expire(f->b, 6000);
	holds(f, 0);
	assert_int_equal(counts(f).shared, 0);
	assert_int_equal(counts(f).addrs, 1);
}

/* Shared in one scope only: there, the address is left to the reachable name. */
static void test_shared_in_scope(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "bad.test", ENFORCE, ""),
				   rule(2, "good.test", ENFORCE, ""),
				   rule(3, "good.test", ALLOW, "deploy") };
	const char *scopes[] = { "deploy" };

	learn(f, "bad.test", "192.0.2.1", 5000);
	learn(f, "good.test", "192.0.2.1", 5000);
	apply(f, r, scopes, 1);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	entry(f, 1, "192.0.2.1", ALLOWED, 1, 5000);
	assert_int_equal(counts(f).shared, 1);
	holds(f, 2);
}

/*
 * An address keeps BLOCKS_NAMES_PER_ADDR names: the one expiring first gives way. Here that is
 * the reachable name that kept the address shared, so the address is then refused.
 */
static void test_names_per_addr(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "bad.test", ENFORCE, "") };
	char name[32];

	apply(f, r, NULL, 0);
	learn(f, "good.test", "192.0.2.1", 1000);
	for (int i = 0; i < BLOCKS_NAMES_PER_ADDR - 1; i++) {
		snprintf(name, sizeof(name), "n%d.bad.test", i);
		learn(f, name, "192.0.2.1", 2000 + i);
	}
	holds(f, 0);
	assert_int_equal(counts(f).shared, 1);
	learn(f, "x.bad.test", "192.0.2.1", 3000); /* one too many: good.test goes */
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 3000);
	holds(f, 1);
	assert_int_equal(counts(f).shared, 0);
	assert_int_equal(counts(f).addrs, 1);
	assert_int_equal(counts(f).dropped, 0);
}

/*
 * A full address gives up a name no rule enforces before one a rule does, even when the
 * enforced name's answer runs out first: a busy CDN address keeps the name it is refused for.
 */
static void test_names_per_addr_keeps_the_enforced(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "bad.test", ENFORCE, "") };
	char name[32];

	apply(f, r, NULL, 0);
	learn(f, "bad.test", "192.0.2.1", 1000);
	for (int i = 0; i < BLOCKS_NAMES_PER_ADDR - 1; i++) {
		snprintf(name, sizeof(name), "n%d.good.test", i);
		learn(f, name, "192.0.2.1", 2000 + i);
	}
	assert_int_equal(counts(f).shared, 1);
	learn(f, "z.good.test", "192.0.2.1", 3000); /* n0.good.test goes, not bad.test */
	assert_int_equal(counts(f).shared, 1);
	holds(f, 0);
}

/* The same with shared addresses refused: the address stays refused. */
static void test_names_per_addr_stays_refused(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "bad.test", ENFORCE, "") };
	char name[32];

	apply(f, r, NULL, 0);
	learn(f, "bad.test", "192.0.2.2", 1000);
	for (int i = 0; i < BLOCKS_NAMES_PER_ADDR; i++) {
		snprintf(name, sizeof(name), "n%d.good.test", i);
		learn(f, name, "192.0.2.2", 2000 + i);
	}
	entry(f, 0, "192.0.2.2", BLOCKED, 1, 1000);
	holds(f, 1);
}

/* ---- forced loss --------------------------------------------------------------------------- */

static const uint8_t *nth_addr(unsigned i, uint8_t buf[16])
{
	memset(buf, 0, 16);
	buf[0] = 0x20;
	buf[1] = 0x01;
	buf[2] = 0x0d;
	buf[3] = 0xb8;
	buf[12] = (uint8_t)(i >> 24);
	buf[13] = (uint8_t)(i >> 16);
	buf[14] = (uint8_t)(i >> 8);
	buf[15] = (uint8_t)i;
	return buf;
}

static void test_addr_cap(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, "") };
	const unsigned excess = 37;
	uint8_t a[16];

	apply(f, r, NULL, 0);
	for (unsigned i = 0; i < BLOCKS_ADDR_CAP + excess; i++)
		blocks_learn(f->b, "example.test", NULL, nth_addr(i, a), 5000);
	assert_int_equal(counts(f).addrs, BLOCKS_ADDR_CAP);
	assert_int_equal(counts(f).dropped, excess);
	holds(f, BLOCKS_ADDR_CAP);
	/* A known address's answer is remembered; a dropped one's is dropped again. */
	blocks_learn(f->b, "www.example.test", NULL, nth_addr(0, a), 6000);
	assert_int_equal(counts(f).dropped, excess);
	blocks_learn(f->b, "example.test", NULL, nth_addr(BLOCKS_ADDR_CAP, a), 5000);
	assert_int_equal(counts(f).dropped, excess + 1);
	/* Re-deciding what is remembered loses nothing more. */
	apply(f, r, NULL, 0);
	assert_int_equal(counts(f).dropped, excess + 1);
	/* Room again once answers run out. */
	blocks_expire(f->b, 5500);
	assert_int_equal(counts(f).addrs, 1);
	blocks_learn(f->b, "example.test", NULL, nth_addr(BLOCKS_ADDR_CAP, a), 7000);
	assert_int_equal(counts(f).addrs, 2);
	assert_int_equal(counts(f).dropped, excess + 1);
	holds(f, 2);
	assert_int_equal(counts(f).errors, 0);
}

/*
 * A full table makes room where shared addresses are refused: an address that refuses nothing
 * gives way (the one whose answer runs out first), never one that is refused; only when every
 * address refuses something is an answer dropped, and counted.
 */
static void test_full_table_evicts_what_refuses_nothing(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "bad.test", ENFORCE, "") };
	struct blocks_counts c;

	apply(f, r, NULL, 0);
	learn(f, "ok.test", "192.0.2.1", 300);
	learn(f, "ok.test", "192.0.2.2", 100); /* runs out first */
	learn(f, "bad.test", "192.0.2.3", 5000);
	learn(f, "ok.test", "192.0.2.4", 5000); /* shared, so refused */
	learn(f, "bad.test", "192.0.2.4", 5000);
	assert_int_equal(counts(f).addrs, 4);
	assert_int_equal(counts(f).shared, 1);
	learn(f, "bad.test", "192.0.2.5", 5000);
	entry(f, 0, "192.0.2.5", BLOCKED, 1, 5000);
	c = counts(f);
	assert_int_equal(c.addrs, 4);
	assert_int_equal(c.evicted, 1);
	assert_int_equal(c.dropped, 0);
	/* 192.0.2.2 was forgotten, 192.0.2.1 is still known: a new answer for it takes no room. */
	learn(f, "ok.test", "192.0.2.1", 400);
	assert_int_equal(counts(f).evicted, 1);
	learn(f, "ok.test", "192.0.2.6", 5000); /* 192.0.2.1 gives way */
	learn(f, "bad.test", "192.0.2.2", 5000); /* 192.0.2.6 gives way */
	entry(f, 0, "192.0.2.2", BLOCKED, 1, 5000);
	c = counts(f);
	assert_int_equal(c.evicted, 3);
	assert_int_equal(c.dropped, 0);
	assert_int_equal(c.shared, 1);
	holds(f, 4);
	/* Every address refuses something: new answers are dropped, counted. */
	learn(f, "bad.test", "192.0.2.7", 5000);
	learn(f, "ok.test", "192.0.2.8", 5000);
	no_entry(f, 0, "192.0.2.7");
	c = counts(f);
	assert_int_equal(c.addrs, 4);
	assert_int_equal(c.evicted, 3);
	assert_int_equal(c.dropped, 2);
	/* The rule goes: nothing is refused, and the next answer finds room. */
	{
		struct policy_rule none[] = { rule(2, "other.test", ENFORCE, "") };

		apply(f, none, NULL, 0);
	}
	holds(f, 0);
	learn(f, "bad.test", "192.0.2.7", 5000);
	c = counts(f);
	assert_int_equal(c.evicted, 4);
	assert_int_equal(c.dropped, 2);
	assert_int_equal(c.errors, 0);
}

/*
 * Where shared addresses stay reachable (the default), nothing gives way: a reachable name's
 * address forgotten would be refused once an enforced name resolved to it. The new answer is
 * dropped, counted, and the reachable name keeps its address.
 */
static void test_full_table_keeps_reachable_addresses(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "bad.test", ENFORCE, "") };
	struct blocks_counts c;

	apply(f, r, NULL, 0);
	learn(f, "ok.test", "192.0.2.1", 100);
	learn(f, "ok.test", "192.0.2.2", 100);
	learn(f, "ok.test", "192.0.2.3", 100);
	learn(f, "bad.test", "192.0.2.9", 5000);
	learn(f, "bad.test", "192.0.2.10", 5000);
	no_entry(f, 0, "192.0.2.10");
	learn(f, "bad.test", "192.0.2.1", 5000); /* a CDN's: ok.test keeps it */
	no_entry(f, 0, "192.0.2.1");
	c = counts(f);
	assert_int_equal(c.addrs, 4);
	assert_int_equal(c.evicted, 0);
	assert_int_equal(c.dropped, 1);
	assert_int_equal(c.shared, 1);
	holds(f, 1);
}

/*
 * A name whose answer was a CNAME chain is decided by the rules of its targets too: an
 * enforced target refuses the address, with its rule; when the name's answer no longer leads
 * there, nor does the block.
 */
static void test_cname_chain(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "cdn.example", ENFORCE, "") };
	uint8_t a[16];

	apply(f, r, NULL, 0);
	blocks_learn(f->b, "www.site.test", "edge.example\0x.cdn.example\0", ip("192.0.2.1", a),
		     5000);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	/* Another name resolved to it with no chain: shared, so reachable by default. */
	blocks_learn(f->b, "other.test", NULL, ip("192.0.2.1", a), 5000);
	no_entry(f, 0, "192.0.2.1");
	assert_int_equal(counts(f).shared, 1);
	/* www.site.test's answer now has no chain: nothing is enforced there. */
	blocks_learn(f->b, "www.site.test", NULL, ip("192.0.2.1", a), 4000);
	assert_int_equal(counts(f).shared, 0);
	holds(f, 0);
	/* ... and a chain again, on another address. */
	blocks_learn(f->b, "www.site.test", "y.cdn.example\0", ip("192.0.2.2", a), 6000);
	entry(f, 0, "192.0.2.2", BLOCKED, 1, 6000);
	holds(f, 1);
}

/*
 * Of a long chain, the targets that fit in BLOCKS_CHAIN_MAX are kept: a rule on one of them
 * refuses the address, a rule on a target past them does not (the proxy still refuses the
 * lookup). Learning the same long chain again changes nothing.
 */
static void test_cname_chain_cap(void **state)
{
	struct fixture *f = *state;
	struct policy_rule kept[] = { rule(1, "z0.test", ENFORCE, "") };
	struct policy_rule past[] = { rule(2, "zlast.test", ENFORCE, "") };
	char chain[4 * BLOCKS_CHAIN_MAX], *at = chain, label[63];
	uint8_t a[16];

	/* Targets of 70 bytes: "xx…x.zN.test"; then zlast.test, past BLOCKS_CHAIN_MAX. */
	memset(label, 'x', sizeof(label) - 1);
	label[sizeof(label) - 1] = '\0';
	for (int i = 0; at - chain < BLOCKS_CHAIN_MAX; i++)
		at += sprintf(at, "%s.z%d.test", label, i) + 1;
	at += sprintf(at, "zlast.test") + 1;
	*at = '\0';
	apply(f, kept, NULL, 0);
	blocks_learn(f->b, "www.site.test", chain, ip("192.0.2.1", a), 5000);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	blocks_learn(f->b, "www.site.test", chain, ip("192.0.2.1", a), 5000); /* nothing new */
	holds(f, 1);
	apply(f, past, NULL, 0);
	holds(f, 0);
}

/* The cap is checked: 0 and more than the most are refused. */
static void test_addr_cap_bounds(void **state)
{
	const struct blocks_ops ops = { .put = map_put, .del = map_del };
	struct blocks *b;

	(void)state;
	errno = 0;
	assert_null(blocks_new(&ops, BLOCKS_SHARED_ALLOW, 0));
	assert_int_equal(errno, EINVAL);
	assert_null(blocks_new(&ops, BLOCKS_SHARED_ALLOW, BLOCKS_ADDR_CAP_MAX + 1));
	b = blocks_new(&ops, BLOCKS_SHARED_ALLOW, 1);
	assert_non_null(b);
	blocks_free(b);
}

/*
 * More entries than the kernel map holds: every address of example.test needs one in each of
 * five scopes, 5 * BLOCKS_ADDR_CAP > BLOCKS_ENTRY_CAP. The addresses whose entries did not fit
 * are counted once each, however often the rules are applied again.
 */
static void test_entry_cap(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, "s1"),
				   rule(2, "example.test", ENFORCE, "s2"),
				   rule(3, "example.test", ENFORCE, "s3"),
				   rule(4, "example.test", ENFORCE, "s4"),
				   rule(5, "example.test", ENFORCE, "s5") };
	const char *scopes[] = { "s1", "s2", "s3", "s4", "s5" };
	const unsigned fit = BLOCKS_ENTRY_CAP / 5; /* addresses with all five entries */
	uint8_t a[16];
	uint64_t dropped;

	apply(f, r, scopes, 5);
	for (unsigned i = 0; i < BLOCKS_ADDR_CAP; i++)
		blocks_learn(f->b, "example.test", NULL, nth_addr(i, a), 5000);
	dropped = BLOCKS_ADDR_CAP - fit;
	assert_int_equal(counts(f).addrs, BLOCKS_ADDR_CAP);
	holds(f, BLOCKS_ENTRY_CAP);
	assert_int_equal(counts(f).dropped, dropped);
	assert_int_equal(counts(f).errors, 0); /* never past the map's max_entries */
	apply(f, r, scopes, 5);
	holds(f, BLOCKS_ENTRY_CAP);
	assert_int_equal(counts(f).dropped, dropped);
	/* Another answer for an address that does not fit is not enforced either: one more. */
	blocks_learn(f->b, "www.example.test", NULL, nth_addr(BLOCKS_ADDR_CAP - 1, a), 6000);
	assert_int_equal(counts(f).dropped, dropped + 1);
	/* Fewer scopes: what no longer has a place goes, and everything fits. */
	apply(f, r, scopes, 1);
	holds(f, BLOCKS_ADDR_CAP);
	assert_int_equal(counts(f).dropped, dropped + 1);
	assert_int_equal(counts(f).errors, 0);
}

static void test_put_fails(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, "") };

	apply(f, r, NULL, 0);
	f->m->fail_put = -ENOMEM;
	learn(f, "example.test", "192.0.2.1", 5000);
	assert_int_equal(counts(f).errors, 1);
	holds(f, 0); /* the counts say what the kernel holds */
	f->m->fail_put = 0;
	apply(f, r, NULL, 0); /* tried again */
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	holds(f, 1);
	assert_int_equal(counts(f).errors, 1);

	/* An update that fails leaves the kernel's entry as it was, and is tried again. */
	f->m->fail_put = -ENOMEM;
	learn(f, "example.test", "192.0.2.1", 9000);
	assert_int_equal(counts(f).errors, 2);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	f->m->fail_put = 0;
	apply(f, r, NULL, 0);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 9000);
	holds(f, 1);
	assert_int_equal(counts(f).errors, 2);
	assert_int_equal(counts(f).dropped, 0);
}

static void test_del_fails(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, "") };

	apply(f, r, NULL, 0);
	learn(f, "example.test", "192.0.2.1", 5000);
	holds(f, 1);
	f->m->fail_del = -EIO;
	blocks_expire(f->b, 6000);
	assert_int_equal(counts(f).errors, 1);
	assert_int_equal(counts(f).entries, 0);
	assert_int_equal(counts(f).addrs, 0);
	f->m->fail_del = 0;
	map_clear(f->m); /* what the kernel's own expiry check makes of it */
}

/* ---- lifetime, address families ---------------------------------------------------------------- */

static void test_free_deletes_everything(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, ""),
				   rule(2, "api.example.test", ALLOW, "deploy"),
				   rule(3, "other.test", ENFORCE, "build") };
	const char *scopes[] = { "deploy", "build" };

	learn(f, "api.example.test", "192.0.2.1", 5000);
	learn(f, "www.example.test", "2001:db8::1", 5000);
	learn(f, "other.test", "192.0.2.3", 5000);
	learn(f, "unrelated.test", "192.0.2.4", 5000);
	apply(f, r, scopes, 2);
	holds(f, 4);
	blocks_free(f->b);
	f->b = NULL;
	assert_int_equal(f->m->n, 0);
	assert_int_equal(f->m->stray_dels, 0);
	blocks_free(NULL);
}

static void test_address_families(void **state)
{
	struct fixture *f = *state;
	struct policy_rule r[] = { rule(1, "example.test", ENFORCE, "") };
	const uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1 };
	const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	const uint8_t compat[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 1 };
	struct nt_block_key k = { 0 };

	apply(f, r, NULL, 0);
	blocks_learn(f->b, "example.test", NULL, mapped, 5000);
	blocks_learn(f->b, "example.test", NULL, v6, 5000);
	blocks_learn(f->b, "other.test", NULL, compat, 5000); /* ::192.0.2.1 is another address */
	memcpy(k.addr, mapped, 16);
	assert_non_null(*map_find(f->m, &k));
	memcpy(k.addr, v6, 16);
	assert_non_null(*map_find(f->m, &k));
	entry(f, 0, "::ffff:192.0.2.1", BLOCKED, 1, 5000);
	entry(f, 0, "192.0.2.1", BLOCKED, 1, 5000);
	entry(f, 0, "2001:db8::1", BLOCKED, 1, 5000);
	no_entry(f, 0, "::192.0.2.1");
	holds(f, 2);
	assert_int_equal(counts(f).addrs, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_learn_then_apply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suffix_covers_subdomain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exact_rule_not_subdomain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renewed_answer_extends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_switch_to_monitor_deletes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rule_removed_deletes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_learn_after_apply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_one_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scope_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scope_allow_overrides_global, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scope_enforce_over_global_enforce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scope_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_allow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_block, setup_shared_block, teardown),
		cmocka_unit_test_setup_teardown(test_shared_in_scope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names_per_addr_keeps_the_enforced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names_per_addr_stays_refused, setup_shared_block,
						teardown),
		cmocka_unit_test_setup_teardown(test_names_per_addr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_addr_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_table_evicts_what_refuses_nothing,
						setup_four_shared_block, teardown),
		cmocka_unit_test_setup_teardown(test_full_table_keeps_reachable_addresses,
						setup_four, teardown),
		cmocka_unit_test(test_addr_cap_bounds),
		cmocka_unit_test_setup_teardown(test_cname_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cname_chain_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_entry_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_deletes_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_address_families, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
