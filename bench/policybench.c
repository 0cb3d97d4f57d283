// SPDX-License-Identifier: MIT
/*
 * policybench [-q]: ns per decision of the rule set (agent/policy.c) against a linear scan of
 * the same rules with the same precedence, in one run, for 10 to 100,000 rules.
 *
 * Rules rN.<zone>, every fourth exact (some beside a suffix rule of the same name), the modes
 * and scopes in turn, and "cluster.local" for one scope under longer ones. Queries: 256 names
 * of 3-6 labels, a quarter at or below a rule's name. About 0.2 s a measurement (-q: 0.02 s).
 * Exit 1 if the two decide any query differently.
 *
 * Then the address table (agent/blocks.c) under 1,000 of those rules, its kernel writes
 * counted, not made, with --shared-address block: ns per answer learnt while there is room,
 * and once the table is full (each new address has another give way, or is dropped), and the
 * time a change of the rules takes to decide every remembered address again, for the default
 * cap.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "blocks.h"
#include "policy.h"

#define NQ 256

struct bench {
	struct policy *p;
	const struct policy_rule *rules;
	size_t n;
	char scope[NQ][POLICY_SCOPE_MAX];
	char name[NQ][POLICY_NAME_MAX];
};

typedef void decide_fn(const struct bench *b, const char *scope, const char *name,
		       struct policy_decision *ret);

static const char *const zones[] = { "example.com", "corp.example.net", "svc.cluster.local",
				     "co.uk" };
static const char *const rule_scopes[] = { "", "web", "db", "batch" };
static const char *const query_scopes[] = { "web", "db", "batch", "other" };
static const char *const prefixes[] = { "", "www.", "v1.api.", "x" }; /* x: no boundary */
static const struct policy_default defaults[] = { { "", POLICY_ALLOW }, { "db", POLICY_MONITOR } };
#define N_DEFAULTS (sizeof(defaults) / sizeof(defaults[0]))

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t)(*s >> 33);
}

static void make_rules(struct policy_rule *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t at = i - (i % 8 == 7); /* 7 mod 8: exact, beside the suffix rule of 6 */

		r[i] = (struct policy_rule){ .id = (int64_t)i + 1, .match = i % 4 == 3,
					     .mode = (uint8_t)(i % 3) };
		snprintf(r[i].name, sizeof(r[i].name), "r%zu.%s", at, zones[(at / 4) % 4]);
		snprintf(r[i].scope, sizeof(r[i].scope), "%s", rule_scopes[at % 4]);
	}
	r[0] = (struct policy_rule){ 1, "cluster.local", POLICY_SUFFIX, POLICY_ENFORCE, "batch" };
}

/* A quarter of the names are a rule's (in a scope it applies to), the rest no rule's. */
static void make_queries(struct bench *b)
{
	uint64_t seed = 42;

	for (size_t q = 0; q < NQ; q++) {
		size_t j = rnd(&seed) % (4 * b->n);
		const char *scope = query_scopes[rnd(&seed) % 4];

		if (j < b->n && b->rules[j].scope[0])
			scope = b->rules[j].scope;
		snprintf(b->scope[q], sizeof(b->scope[q]), "%s", scope);
		snprintf(b->name[q], sizeof(b->name[q]), "%sr%zu.%s", prefixes[rnd(&seed) % 4],
			 j - (j % 8 == 7 && j < b->n), zones[(j / 4) % 4]);
	}
}

static void set_decide(const struct bench *b, const char *scope, const char *name,
		       struct policy_decision *ret)
{
	policy_decide(b->p, scope, name, ret);
}

/* policy.h's order as one key: the scope's own, then the longer name, exact, the mode. */
static void linear_decide(const struct bench *b, const char *scope, const char *name,
			  struct policy_decision *ret)
{
	const struct policy_rule *best = NULL;
	size_t len = strlen(name);
	long best_key = -1;

	memset(ret, 0, sizeof(*ret));
	for (size_t i = 0; i < b->n; i++) {
		const struct policy_rule *r = &b->rules[i];
		size_t rl = strlen(r->name);
		long key;

		if ((r->scope[0] && strcmp(r->scope, scope)) || rl > len ||
		    memcmp(name + len - rl, r->name, rl) ||
		    (rl < len && (r->match == POLICY_EXACT || name[len - rl - 1] != '.')))
			continue;
		key = (long)(r->scope[0] != 0) << 12 | (long)rl << 3 | r->match << 2 | r->mode;
		if (key > best_key) {
			best_key = key;
			best = r;
		}
	}
	if (best) {
		ret->mode = best->mode;
		ret->rule_id = best->id ? best->id : -1;
		policy_format_pattern(best->name, best->match, ret->rule, sizeof(ret->rule));
		snprintf(ret->rule_scope, sizeof(ret->rule_scope), "%s", best->scope);
		return;
	}
	for (size_t i = 0; i < N_DEFAULTS; i++) {
		if (!strcmp(defaults[i].scope, scope)) {
			ret->mode = defaults[i].mode;
			break;
		}
		if (!defaults[i].scope[0])
			ret->mode = defaults[i].mode;
	}
	if (ret->mode != POLICY_ALLOW)
		snprintf(ret->rule, sizeof(ret->rule), "default");
}

/* ns per decision over the queries, repeated until a run lasts at least target seconds. */
static double measure(decide_fn *fn, const struct bench *b, double target)
{
	struct policy_decision d;
	static volatile unsigned sink;
	long passes = 1;

	for (;;) {
		double t = now_s(), elapsed;

		for (long i = 0; i < passes; i++) {
			for (size_t q = 0; q < NQ; q++) {
				fn(b, b->scope[q], b->name[q], &d);
				sink += d.mode;
			}
		}
		elapsed = now_s() - t;
		if (elapsed >= target)
			return elapsed * 1e9 / ((double)passes * NQ);
		passes = elapsed > target / 100 ? (long)(passes * target * 1.2 / elapsed) + 1
						: passes * 10;
	}
}

/* The two agree on every query: the number that matched a rule, or -1. */
static int cross_check(const struct bench *b)
{
	struct policy_decision x, y;
	int matched = 0;

	for (size_t q = 0; q < NQ; q++) {
		set_decide(b, b->scope[q], b->name[q], &x);
		linear_decide(b, b->scope[q], b->name[q], &y);
		if (x.mode != y.mode || x.rule_id != y.rule_id || strcmp(x.rule, y.rule) ||
		    strcmp(x.rule_scope, y.rule_scope)) {
			fprintf(stderr, "policybench: %zu rules, scope %s, %s: rule set %s %lld"
				" \"%s\" (%s), linear scan %s %lld \"%s\" (%s)\n", b->n,
				b->scope[q], b->name[q], policy_mode_name(x.mode),
				(long long)x.rule_id, x.rule, x.rule_scope, policy_mode_name(y.mode),
				(long long)y.rule_id, y.rule, y.rule_scope);
			return -1;
		}
		matched += x.rule_id != 0;
	}
	return matched;
}

static int count_put(void *ctx, const struct nt_block_key *k, const struct nt_block_val *v)
{
	(void)k;
	(void)v;
	++*(unsigned long *)ctx;
	return 0;
}

static int count_del(void *ctx, const struct nt_block_key *k)
{
	(void)k;
	++*(unsigned long *)ctx;
	return 0;
}

/* Learns n answers from address first on, names from the queries in turn: ns per answer. */
static double learn_answers(struct blocks *t, const struct bench *b, uint32_t first, size_t n)
{
	double t0 = now_s();

	for (size_t i = 0; i < n; i++) {
		uint8_t addr[16] = { [10] = 0xff, [11] = 0xff };
		uint32_t a = first + (uint32_t)i;

		memcpy(addr + 12, &a, 4);
		blocks_learn(t, b->name[i % NQ], NULL, addr, (int64_t)1 << 62);
	}
	return (now_s() - t0) * 1e9 / (double)n;
}

static char table_out[1024]; /* printed after the rule matching's lines */

static int address_table(const struct bench *b)
{
	static const char *const scopes[] = { "web", "db", "batch" };
	unsigned long writes = 0;
	struct blocks *t = blocks_new(&(struct blocks_ops){ .ctx = &writes, .put = count_put,
							    .del = count_del },
				      BLOCKS_SHARED_BLOCK, BLOCKS_ADDR_CAP);
	struct blocks_counts c;
	double room_ns, full_ns, apply_s = 1e9;

	if (!t || blocks_apply(t, b->p, scopes, 3) < 0) {
		fprintf(stderr, "policybench: failed to set up the address table\n");
		return -1;
	}
	room_ns = learn_answers(t, b, 1, BLOCKS_ADDR_CAP);
	for (int i = 0; i < 5; i++) {
		double t0 = now_s();

		blocks_apply(t, b->p, scopes, 3);
		if (now_s() - t0 < apply_s)
			apply_s = now_s() - t0;
	}
	full_ns = learn_answers(t, b, 1 + BLOCKS_ADDR_CAP, BLOCKS_ADDR_CAP);
	blocks_counts(t, &c);
	snprintf(table_out, sizeof(table_out),
		 "== policy: address table, %u addresses (--block-addresses default), %zu rules,"
		 " 3 scopes with rules of their own, --shared-address block\n"
		 "  learn an answer: %.0f ns with room, %.0f ns when full  ratio full/room %.2f"
		 "  (%llu gave way, %llu dropped, %zu kernel entries)\n"
		 "  a change of the rules decides every address again: %.1f ms, %.0f ns per"
		 " address (best of 5)\n",
		 BLOCKS_ADDR_CAP, b->n, room_ns, full_ns, full_ns / room_ns,
		 (unsigned long long)c.evicted, (unsigned long long)c.dropped, c.entries,
		 apply_s * 1e3, apply_s * 1e9 / BLOCKS_ADDR_CAP);
	blocks_free(t);
	return 0;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 10, 1000, 10000, 100000 };
	static struct bench b;
	double target = 0.2;
	int opt;

	while ((opt = getopt(argc, argv, "q")) != -1) {
		if (opt != 'q') {
			fprintf(stderr, "usage: policybench [-q]\n");
			return 2;
		}
		target = 0.02;
	}
	printf("== policy: rule matching, %d names (3-6 labels) against N rules, rule set vs linear"
	       " scan, %.2f s a measurement\n", NQ, target);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct policy_rule *rules = calloc(sizes[k], sizeof(*rules));
		double set_ns, lin_ns;
		int matched;

		if (rules)
			make_rules(rules, sizes[k]);
		b.rules = rules;
		b.n = sizes[k];
		b.p = rules ? policy_build(rules, b.n, defaults, N_DEFAULTS) : NULL;
		if (!b.p) {
			fprintf(stderr, "policybench: failed to build %zu rules: %s\n", b.n,
				strerror(errno));
			return 1;
		}
		make_queries(&b);
		if ((matched = cross_check(&b)) < 0)
			return 1;
		set_ns = measure(set_decide, &b, target);
		lin_ns = measure(linear_decide, &b, target);
		printf("  N=%-6zu rule set %7.1f ns/decision  linear scan %11.1f ns/decision  "
		       "ratio linear/rule set %9.1f  (%d/%d names matched a rule)\n", b.n, set_ns,
		       lin_ns, lin_ns / set_ns, matched, NQ);
		fflush(stdout);
		if (b.n == 1000 && address_table(&b) < 0)
			return 1;
		b.p = policy_unref(b.p);
		free(rules);
	}
	fputs(table_out, stdout);
	return 0;
}
