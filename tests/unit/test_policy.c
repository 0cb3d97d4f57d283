// SPDX-License-Identifier: MIT
/*
 * Unit tests for agent/policy.c: how a user's pattern is read, and which rule (or default)
 * decides a name for a scope, in the order policy.h documents.
 */
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

#define ALLOW POLICY_ALLOW
#define MONITOR POLICY_MONITOR
#define ENFORCE POLICY_ENFORCE

/* ---- fixtures -------------------------------------------------------------------------- */

/* The rule sets a test built (through build() or keep()), released whatever the outcome. */
struct fixture {
	struct policy *p[4];
	size_t n;
};

static int setup(void **state)
{
	*state = calloc(1, sizeof(struct fixture));
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < f->n; i++)
		assert_null(policy_unref(f->p[i]));
	free(f);
	return 0;
}

/* ---- helpers --------------------------------------------------------------------------- */

static struct policy_default dflt(const char *scope, uint8_t mode)
{
	struct policy_default d = { .mode = mode };

	snprintf(d.scope, sizeof(d.scope), "%s", scope);
	return d;
}

/* Hands a built rule set to the fixture. */
static struct policy *keep(void **state, struct policy *p)
{
	struct fixture *f = *state;

	assert_non_null(p);
	assert_true(f->n < sizeof(f->p) / sizeof(f->p[0]));
	f->p[f->n++] = p;
	return p;
}

/* Builds a rule set owned by the fixture. */
static struct policy *build(void **state, const struct policy_rule *r, size_t n,
			    const struct policy_default *d, size_t nd)
{
	return keep(state, policy_build(r, n, d, nd));
}

/* The whole decision for (scope, name), reported at the caller's line when it differs. */
static void check_(const struct policy *p, const char *scope, const char *name, int mode,
		   int64_t id, const char *rule_text, const char *rule_scope, const char *file,
		   int line)
{
	struct policy_decision d;

	memset(&d, 0xa5, sizeof(d)); /* nothing left from before the call */
	policy_decide(p, scope, name, &d);
	if (d.mode == mode && d.rule_id == id && memchr(d.rule, '\0', sizeof(d.rule)) &&
	    !strcmp(d.rule, rule_text) && memchr(d.rule_scope, '\0', sizeof(d.rule_scope)) &&
	    !strcmp(d.rule_scope, rule_scope))
		return;
	print_error("decide(scope \"%s\", \"%s\"): want %s id %lld rule \"%s\" scope \"%s\", "
		    "got %s id %lld rule \"%.*s\" scope \"%.*s\"\n",
		    scope ? scope : "(NULL)", name ? name : "(NULL)", policy_mode_name(mode),
		    (long long)id, rule_text, rule_scope, policy_mode_name(d.mode),
		    (long long)d.rule_id, (int)sizeof(d.rule), d.rule, (int)sizeof(d.rule_scope),
		    d.rule_scope);
	_fail(file, line);
}
#define check(p, scope, name, mode, id, rule_text, rule_scope) \
	check_(p, scope, name, mode, id, rule_text, rule_scope, __FILE__, __LINE__)
/* No rule matched: the default decided, named "default" unless it allows (policy.h). */
#define check_default(p, scope, name, mode) \
	check(p, scope, name, mode, 0, (mode) == ALLOW ? "" : "default", "")

/* A pattern that parses into name and match; *why reported if not. */
static void parses_(const char *in, const char *want_name, int want_match, const char *file,
		    int line)
{
	char name[POLICY_NAME_MAX];
	uint8_t match = 0xee;
	const char *why = NULL;
	int r = policy_parse_pattern(in, name, &match, &why);

	if (r == 0 && match == want_match && !strcmp(name, want_name))
		return;
	print_error("parse(\"%s\"): want \"%s\" match %d, got %d (%s) \"%s\" match %d\n", in,
		    want_name, want_match, r, why ? why : "-", r == 0 ? name : "", match);
	_fail(file, line);
}
#define parses(in, want_name, want_match) parses_(in, want_name, want_match, __FILE__, __LINE__)

/* A pattern rejected with -EINVAL, a reason, and ret_match untouched; returns the reason. */
static const char *rejected_(const char *in, const char *file, int line)
{
	char name[POLICY_NAME_MAX];
	uint8_t match = 0xee;
	const char *why = NULL;
	int r = policy_parse_pattern(in, name, &match, &why);

	if (r == -EINVAL && why && *why && match == 0xee)
		return why;
	print_error("parse(\"%s\"): want -EINVAL with a reason, got %d why %s match %d\n", in, r,
		    why ? why : "NULL", match);
	_fail(file, line);
	return NULL;
}
#define rejected(in) rejected_(in, __FILE__, __LINE__)

/* n copies of c, then tail, into buf. */
static char *repeat(char *buf, char c, size_t n, const char *tail)
{
	memset(buf, c, n);
	strcpy(buf + n, tail);
	return buf;
}

/* ---- patterns and modes ---------------------------------------------------------------- */

static void test_parse_accepted(void **state)
{
	parses("github.com", "github.com", POLICY_SUFFIX);
	parses("=github.com", "github.com", POLICY_EXACT);
	parses("GitHub.COM", "github.com", POLICY_SUFFIX);
	parses("=API.GitHub.Com", "api.github.com", POLICY_EXACT);
	parses("github.com.", "github.com", POLICY_SUFFIX);
	parses("=github.com.", "github.com", POLICY_EXACT);
	parses("xn--bcher-kva.example", "xn--bcher-kva.example", POLICY_SUFFIX);
	parses("_dmarc.example.com", "_dmarc.example.com", POLICY_SUFFIX);
	parses("com", "com", POLICY_SUFFIX);
	parses("a-b.c0", "a-b.c0", POLICY_SUFFIX);
}

/* A 63-character label and a 253-character name are the largest accepted. */
static void test_parse_lengths(void **state)
{
	char in[400], want[400];

	parses(repeat(in, 'a', 63, ".com"), repeat(want, 'a', 63, ".com"), POLICY_SUFFIX);
	rejected(repeat(in, 'a', 64, ".com"));
	rejected(repeat(in, 'a', 64, ""));

	/* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 */
	snprintf(want, sizeof(want), "%s", repeat(in, 'a', 63, "."));
	strcat(want, repeat(in, 'b', 63, "."));
	strcat(want, repeat(in, 'c', 63, "."));
	strcat(want, repeat(in, 'd', 61, ""));
	assert_int_equal(strlen(want), 253);
	parses(want, want, POLICY_SUFFIX);
	snprintf(in, sizeof(in), "=%s", want);
	parses(in, want, POLICY_EXACT);
	snprintf(in, sizeof(in), "%s.", want); /* the root's dot is not part of the 253 */
	parses(in, want, POLICY_SUFFIX);

	snprintf(in, sizeof(in), "%sd", want); /* 254 */
	assert_int_equal(strlen(in), 254);
	rejected(in);
	snprintf(in, sizeof(in), "%s.e", want); /* 255 */
	rejected(in);
}

static void test_parse_rejected(void **state)
{
	static const char *const bad[] = {
		"", "=", ".", "=.", "..", "a..b", ".a", "-a.com", "a-.com", "a.-b.com", "a.b-.com",
		"github.com..", "=github.com..", "git hub.com", " github.com", "github.com/x",
		"a/b.com", "*.github.com", "github.*", "==github.com", "github.com=", "a:b.com",
	};
	const char *why;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		rejected(bad[i]);
	rejected(NULL);

	/* A UTF-8 name is pointed at its ASCII form. */
	why = rejected("bücher.de");
	assert_non_null(strstr(why, "xn--"));
	why = rejected("=www.bücher.de");
	assert_non_null(strstr(why, "xn--"));
	/* ...and a plain syntax error is not. */
	why = rejected("a/b.com");
	assert_null(strstr(why, "xn--"));

	/* An address is not a name: said so, whatever its form. */
	for (size_t i = 0; i < 4; i++) {
		static const char *const addrs[] = { "127.0.0.20", "=10.0.0.1", "1.2", "abc.123." };

		why = rejected(addrs[i]);
		assert_non_null(strstr(why, "an address, not a name"));
	}
	/* ...but a reverse-lookup name is one. */
	parses("4.3.2.1.in-addr.arpa", "4.3.2.1.in-addr.arpa", POLICY_SUFFIX);
	/* A wildcard is pointed at what a pattern already means. */
	why = rejected("*.github.com");
	assert_non_null(strstr(why, "no wildcards"));
}

static void test_format_pattern(void **state)
{
	char buf[POLICY_NAME_MAX + 1];

	policy_format_pattern("github.com", POLICY_SUFFIX, buf, sizeof(buf));
	assert_string_equal(buf, "github.com");
	policy_format_pattern("github.com", POLICY_EXACT, buf, sizeof(buf));
	assert_string_equal(buf, "=github.com");
}

static void test_modes(void **state)
{
	static const char *const bad[] = { "", "Allow", "ENFORCE", "block", "enforce ", "allo",
					   "monitors", "0" };
	uint8_t m;

	for (int mode = POLICY_ALLOW; mode <= POLICY_ENFORCE; mode++) {
		m = 0xee;
		assert_int_equal(policy_parse_mode(policy_mode_name(mode), &m), 0);
		assert_int_equal(m, mode);
	}
	assert_string_equal(policy_mode_name(POLICY_ALLOW), "allow");
	assert_string_equal(policy_mode_name(POLICY_MONITOR), "monitor");
	assert_string_equal(policy_mode_name(POLICY_ENFORCE), "enforce");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		m = 0xee;
		assert_int_equal(policy_parse_mode(bad[i], &m), -EINVAL);
		assert_int_equal(m, 0xee);
	}
	m = 0xee;
	assert_int_equal(policy_parse_mode(NULL, &m), -EINVAL);
	assert_int_equal(m, 0xee);

	/* An out-of-range mode has a name, and not one of the three. */
	assert_non_null(policy_mode_name(7));
	assert_int_equal(policy_parse_mode(policy_mode_name(7), &m), -EINVAL);
}

static void test_verdict(void **state)
{
	assert_int_equal(policy_verdict(POLICY_ALLOW), NT_VERDICT_ALLOWED);
	assert_int_equal(policy_verdict(POLICY_MONITOR), NT_VERDICT_WOULD_BLOCK);
	assert_int_equal(policy_verdict(POLICY_ENFORCE), NT_VERDICT_BLOCKED);
}

/* ---- matching -------------------------------------------------------------------------- */

/* A suffix rule matches the name and the names below it, at a label boundary only. */
static void test_suffix_match(void **state)
{
	struct policy_rule r[] = { rule(7, "github.com", ENFORCE, "") };
	struct policy *p = build(state, r, 1, NULL, 0);

	check(p, "web", "github.com", ENFORCE, 7, "github.com", "");
	check(p, "web", "api.github.com", ENFORCE, 7, "github.com", "");
	check(p, "web", "a.b.github.com", ENFORCE, 7, "github.com", "");
	check(p, NULL, "api.github.com", ENFORCE, 7, "github.com", "");
	check(p, "", "api.github.com", ENFORCE, 7, "github.com", "");
	check_default(p, "web", "notgithub.com", ALLOW);
	check_default(p, "web", "github.com.evil", ALLOW);
	check_default(p, "web", "com", ALLOW);
	check_default(p, "web", "hub.com", ALLOW);
	check_default(p, "web", "github.co", ALLOW);
	check_default(p, "web", "github.comm", ALLOW);
	check_default(p, "web", "", ALLOW);
}

/* An exact rule matches the name alone. */
static void test_exact_match(void **state)
{
	struct policy_rule r[] = { rule(3, "=github.com", ENFORCE, "") };
	struct policy *p = build(state, r, 1, NULL, 0);

	check(p, "web", "github.com", ENFORCE, 3, "=github.com", "");
	check_default(p, "web", "api.github.com", ALLOW);
	check_default(p, "web", "a.b.github.com", ALLOW);
	check_default(p, "web", "notgithub.com", ALLOW);
	check_default(p, "web", "com", ALLOW);
}

/* ---- precedence (policy.h) -------------------------------------------------------------- */

/* 1. A rule of the scope beats one for all scopes, however specific, whatever its mode. */
static void test_scope_beats_global(void **state)
{
	struct policy_rule r[] = {
		rule(1, "=api.github.com", ENFORCE, ""),
		rule(2, "com", ALLOW, "web"),
		rule(3, "github.com", MONITOR, "db"),
		rule(4, "api.github.com", ALLOW, ""),
	};
	struct policy *p = build(state, r, 4, NULL, 0);

	/* web: its "com" over the global exact name and the global longer suffix. */
	check(p, "web", "api.github.com", ALLOW, 2, "com", "web");
	check(p, "web", "x.api.github.com", ALLOW, 2, "com", "web");
	/* db: its "github.com" over the global ones, stricter or not. */
	check(p, "db", "api.github.com", MONITOR, 3, "github.com", "db");
	check(p, "db", "x.api.github.com", MONITOR, 3, "github.com", "db");
	/* Another scope gets the global rules, in their own order. */
	check(p, "batch", "api.github.com", ENFORCE, 1, "=api.github.com", "");
	check(p, "batch", "x.api.github.com", ALLOW, 4, "api.github.com", "");
	check(p, NULL, "api.github.com", ENFORCE, 1, "=api.github.com", "");
}

/* A scope's rule that does not match the name leaves it to the global rules. */
static void test_scope_falls_through(void **state)
{
	struct policy_rule r[] = {
		rule(1, "=github.com", ENFORCE, "web"),
		rule(2, "github.com", MONITOR, ""),
	};
	struct policy *p = build(state, r, 2, NULL, 0);

	check(p, "web", "github.com", ENFORCE, 1, "=github.com", "web");
	check(p, "web", "api.github.com", MONITOR, 2, "github.com", "");
	check(p, "db", "github.com", MONITOR, 2, "github.com", "");
}

/* 2. An exact rule beats the suffix rule of the same name, in either order, either mode. */
static void test_exact_beats_suffix(void **state)
{
	struct policy_rule r[] = {
		rule(1, "github.com", ENFORCE, ""),
		rule(2, "=github.com", ALLOW, ""),
		rule(3, "=gitlab.com", ENFORCE, "web"),
		rule(4, "gitlab.com", ALLOW, "web"),
	};
	struct policy *p = build(state, r, 4, NULL, 0);

	check(p, "db", "github.com", ALLOW, 2, "=github.com", "");
	check(p, "db", "api.github.com", ENFORCE, 1, "github.com", "");
	check(p, "web", "gitlab.com", ENFORCE, 3, "=gitlab.com", "web");
	check(p, "web", "api.gitlab.com", ALLOW, 4, "gitlab.com", "web");
	check_default(p, "db", "gitlab.com", ALLOW);
}

/* 3. The longer suffix beats the shorter, in either order, either mode. */
static void test_longer_suffix_wins(void **state)
{
	struct policy_rule r[] = {
		rule(1, "com", ENFORCE, ""),
		rule(2, "github.com", ALLOW, ""),
		rule(3, "api.github.com", MONITOR, ""),
		rule(4, "example.org", ALLOW, ""),
		rule(5, "org", MONITOR, ""),
	};
	struct policy *p = build(state, r, 5, NULL, 0);

	check(p, "web", "api.github.com", MONITOR, 3, "api.github.com", "");
	check(p, "web", "v1.api.github.com", MONITOR, 3, "api.github.com", "");
	check(p, "web", "www.github.com", ALLOW, 2, "github.com", "");
	check(p, "web", "github.com", ALLOW, 2, "github.com", "");
	check(p, "web", "gitlab.com", ENFORCE, 1, "com", "");
	check(p, "web", "com", ENFORCE, 1, "com", "");
	check(p, "web", "www.example.org", ALLOW, 4, "example.org", "");
	check(p, "web", "example.net.org", MONITOR, 5, "org", "");
}

/* The brief's case: global "com" enforce and global "github.com" allow. */
static void test_longer_suffix_allow(void **state)
{
	struct policy_rule r[] = {
		rule(1, "com", ENFORCE, ""),
		rule(2, "github.com", ALLOW, ""),
	};
	struct policy *p = build(state, r, 2, NULL, 0);

	check(p, "web", "api.github.com", ALLOW, 2, "github.com", "");
	check(p, "web", "api.gitlab.com", ENFORCE, 1, "com", "");
}

/* 4. The same pattern twice in a scope: enforce over monitor over allow, in any order. */
static void test_equal_specificity(void **state)
{
	struct policy_rule r[] = {
		/* ascending, suffix, global */
		rule(1, "a.example", ALLOW, ""),
		rule(2, "a.example", MONITOR, ""),
		rule(3, "a.example", ENFORCE, ""),
		/* descending, exact, global */
		rule(4, "=b.example", ENFORCE, ""),
		rule(5, "=b.example", MONITOR, ""),
		rule(6, "=b.example", ALLOW, ""),
		/* mixed, in a scope */
		rule(7, "c.example", MONITOR, "web"),
		rule(8, "c.example", ENFORCE, "web"),
		rule(9, "c.example", ALLOW, "web"),
		/* monitor over allow, allow last */
		rule(10, "d.example", MONITOR, ""),
		rule(11, "d.example", ALLOW, ""),
		/* monitor over allow, allow first */
		rule(12, "=e.example", ALLOW, "web"),
		rule(13, "=e.example", MONITOR, "web"),
	};
	struct policy *p = build(state, r, sizeof(r) / sizeof(r[0]), NULL, 0);

	assert_int_equal(policy_n_rules(p), 13);
	check(p, "web", "x.a.example", ENFORCE, 3, "a.example", "");
	check(p, "web", "b.example", ENFORCE, 4, "=b.example", "");
	check(p, "web", "x.c.example", ENFORCE, 8, "c.example", "web");
	check(p, "web", "d.example", MONITOR, 10, "d.example", "");
	check(p, "web", "e.example", MONITOR, 13, "=e.example", "web");
}

/* A rule of another scope never applies, not even to a scope whose name it starts. */
static void test_other_scope(void **state)
{
	struct policy_rule r[] = {
		rule(1, "github.com", ENFORCE, "db"),
		rule(2, "=gitlab.com", ENFORCE, "web"),
	};
	struct policy *p = build(state, r, 2, NULL, 0);

	check(p, "db", "api.github.com", ENFORCE, 1, "github.com", "db");
	check_default(p, "web", "api.github.com", ALLOW);
	check_default(p, "dbx", "api.github.com", ALLOW);
	check_default(p, "d", "api.github.com", ALLOW);
	check_default(p, "", "api.github.com", ALLOW);
	check_default(p, NULL, "api.github.com", ALLOW);
	check(p, "web", "gitlab.com", ENFORCE, 2, "=gitlab.com", "web");
	check_default(p, "db", "gitlab.com", ALLOW);
}

/* ---- defaults --------------------------------------------------------------------------- */

/* No rules and no defaults: allow, no rule. */
static void test_default_none(void **state)
{
	struct policy *p = build(state, NULL, 0, NULL, 0);

	assert_int_equal(policy_n_rules(p), 0);
	check_default(p, "web", "github.com", ALLOW);
	check_default(p, NULL, "github.com", ALLOW);
}

/* A scope's default is that scope's alone. */
static void test_default_scope(void **state)
{
	struct policy_rule r[] = { rule(1, "=allowed.example", ALLOW, "") };
	struct policy_default d[] = { dflt("web", ENFORCE), dflt("db", MONITOR) };
	struct policy *p = build(state, r, 1, d, 2);

	check_default(p, "web", "github.com", ENFORCE);
	check_default(p, "db", "github.com", MONITOR);
	check_default(p, "batch", "github.com", ALLOW);
	check_default(p, "webx", "github.com", ALLOW);
	check_default(p, "", "github.com", ALLOW);
	check_default(p, NULL, "github.com", ALLOW);
	check(p, "web", "allowed.example", ALLOW, 1, "=allowed.example", "");
}

/* The default for all scopes, where a scope has none. */
static void test_default_global(void **state)
{
	struct policy_default d[] = { dflt("", MONITOR) };
	struct policy *p = build(state, NULL, 0, d, 1);

	check_default(p, "web", "github.com", MONITOR);
	check_default(p, "", "github.com", MONITOR);
	check_default(p, NULL, "github.com", MONITOR);
}

/* A scope's own default beats the global one, whichever comes first. */
static void test_default_scope_over_global(void **state)
{
	struct policy_default d[] = {
		dflt("", MONITOR), dflt("web", ENFORCE), dflt("db", ALLOW), dflt("batch", ENFORCE),
	};
	struct policy_default rev[] = { dflt("web", ALLOW), dflt("", ENFORCE) };
	struct policy *p = build(state, NULL, 0, d, 4);
	struct policy *q;

	check_default(p, "web", "github.com", ENFORCE);
	check_default(p, "db", "github.com", ALLOW);
	check_default(p, "batch", "github.com", ENFORCE);
	check_default(p, "other", "github.com", MONITOR);
	check_default(p, NULL, "github.com", MONITOR);

	q = build(state, NULL, 0, rev, 2);
	check_default(q, "web", "github.com", ALLOW);
	check_default(q, "db", "github.com", ENFORCE);
}

/* policy_default_mode: the scope's, else every scope's, else allow; in any order. */
static void test_default_mode(void **state)
{
	struct policy_default d[] = { dflt("", MONITOR), dflt("web", ENFORCE), dflt("db", ALLOW) };
	struct policy_default rev[] = {
		dflt("db", ALLOW), dflt("web", ENFORCE), dflt("", MONITOR),
	};
	struct policy_default only[] = { dflt("web", ENFORCE) };
	struct policy *p = build(state, NULL, 0, d, 3);
	struct policy *q = build(state, NULL, 0, rev, 3);
	struct policy *o = build(state, NULL, 0, only, 1);

	assert_int_equal(policy_default_mode(p, "web"), ENFORCE);
	assert_int_equal(policy_default_mode(p, "db"), ALLOW);
	assert_int_equal(policy_default_mode(p, "other"), MONITOR);
	assert_int_equal(policy_default_mode(p, ""), MONITOR);
	assert_int_equal(policy_default_mode(p, NULL), MONITOR);
	assert_int_equal(policy_default_mode(q, "web"), ENFORCE);
	assert_int_equal(policy_default_mode(q, "db"), ALLOW);
	assert_int_equal(policy_default_mode(q, "other"), MONITOR);
	assert_int_equal(policy_default_mode(o, "web"), ENFORCE);
	assert_int_equal(policy_default_mode(o, "other"), ALLOW);
	assert_int_equal(policy_default_mode(o, NULL), ALLOW);
	assert_int_equal(policy_default_mode(NULL, "web"), ALLOW);
}

/* A default that allows is not named: the decision has no rule at all. */
static void test_default_allow_unnamed(void **state)
{
	struct policy_default d[] = { dflt("", ENFORCE), dflt("web", ALLOW) };
	struct policy *p = build(state, NULL, 0, d, 2);
	struct policy_decision dec;

	policy_decide(p, "web", "github.com", &dec);
	assert_int_equal(dec.mode, ALLOW);
	assert_string_equal(dec.rule, "");
	policy_decide(p, "db", "github.com", &dec);
	assert_int_equal(dec.mode, ENFORCE);
	assert_int_equal(dec.rule_id, 0);
	assert_string_equal(dec.rule, "default");
	assert_string_equal(dec.rule_scope, "");
}

/* policy_rule_by_id: what a verdict given by id refers to. */
static void test_rule_by_id(void **state)
{
	struct policy_rule r[] = {
		rule(1, "github.com", ENFORCE, ""),
		rule(2, "=pypi.org", MONITOR, "web"),
		rule(40, "=github.com", ALLOW, ""),
		rule(0, "noid.example", ENFORCE, ""),
	};
	struct policy *p = build(state, r, 4, NULL, 0);
	struct policy_decision d;

	memset(&d, 0xa5, sizeof(d));
	assert_int_equal(policy_rule_by_id(p, 1, &d), 1);
	assert_int_equal(d.mode, ENFORCE);
	assert_int_equal(d.rule_id, 1);
	assert_string_equal(d.rule, "github.com");
	assert_string_equal(d.rule_scope, "");
	assert_int_equal(policy_rule_by_id(p, 2, &d), 1);
	assert_int_equal(d.mode, MONITOR);
	assert_int_equal(d.rule_id, 2);
	assert_string_equal(d.rule, "=pypi.org");
	assert_string_equal(d.rule_scope, "web");
	/* The exact rule sharing the suffix rule's name is told apart. */
	assert_int_equal(policy_rule_by_id(p, 40, &d), 1);
	assert_int_equal(d.mode, ALLOW);
	assert_string_equal(d.rule, "=github.com");
	/* No such id: 0 and an empty decision. */
	memset(&d, 0xa5, sizeof(d));
	assert_int_equal(policy_rule_by_id(p, 3, &d), 0);
	assert_int_equal(d.rule_id, 0);
	assert_string_equal(d.rule, "");
	assert_int_equal(policy_rule_by_id(p, 0, &d), 0);
	assert_int_equal(policy_rule_by_id(p, -1, &d), 0);
	assert_int_equal(policy_rule_by_id(p, 41, &d), 0);
	assert_int_equal(policy_rule_by_id(NULL, 1, &d), 0);
}

/* Any matching rule beats the defaults, stricter or not. */
static void test_rule_beats_default(void **state)
{
	struct policy_rule r[] = {
		rule(1, "github.com", ALLOW, ""),
		rule(2, "=pypi.org", MONITOR, "web"),
		rule(3, "evil.example", ENFORCE, ""),
	};
	struct policy_default d[] = { dflt("", ENFORCE), dflt("web", ENFORCE), dflt("db", ALLOW) };
	struct policy *p = build(state, r, 3, d, 3);

	check(p, "web", "api.github.com", ALLOW, 1, "github.com", "");
	check(p, "batch", "api.github.com", ALLOW, 1, "github.com", "");
	check(p, "web", "pypi.org", MONITOR, 2, "=pypi.org", "web");
	check(p, "db", "x.evil.example", ENFORCE, 3, "evil.example", "");
	check_default(p, "web", "files.pypi.org", ENFORCE);
	check_default(p, "db", "pypi.org", ALLOW);
	check_default(p, "batch", "pypi.org", ENFORCE);
}

/* ---- the rule set ----------------------------------------------------------------------- */

/* A NULL policy allows everything; so does a NULL name, whatever the rules say. */
static void test_null(void **state)
{
	struct policy_rule r[] = { rule(1, "com", ENFORCE, ""), rule(2, "com", ENFORCE, "web") };
	struct policy_default d[] = { dflt("", ENFORCE), dflt("web", ENFORCE) };
	struct policy *p = build(state, r, 2, d, 2);

	check_default(NULL, "web", "github.com", ALLOW);
	check_default(NULL, NULL, "github.com", ALLOW);
	check_default(NULL, "web", NULL, ALLOW);
	check_default(p, "web", NULL, ALLOW);
	check_default(p, NULL, NULL, ALLOW);
	/* ...while a name is decided by the rules. */
	check(p, "web", "github.com", ENFORCE, 2, "com", "web");
	assert_int_equal(policy_n_rules(NULL), 0);
	assert_null(policy_unref(NULL));
}

/* The rule set keeps its own copy: the caller's arrays may go once it is built. */
static void test_build_copies(void **state)
{
	struct policy_rule r[] = { rule(5, "github.com", ENFORCE, "web") };
	struct policy_default d[] = { dflt("db", MONITOR) };
	struct policy *p = build(state, r, 1, d, 1);

	memset(r, 0, sizeof(r));
	memset(d, 0, sizeof(d));
	check(p, "web", "api.github.com", ENFORCE, 5, "github.com", "web");
	check_default(p, "db", "api.github.com", MONITOR);
	check_default(p, "web", "gitlab.com", ALLOW);
}

/*
 * Rules r0..r9999 in four zones: every fifth exact, the modes in turn (allow, enforce,
 * monitor), the scopes in turn (all, web, db, batch).
 */
#define BIG 10000
static const char *const big_scopes[] = { "", "web", "db", "batch" };
static const char *const big_zones[] = { "example.com", "corp.example.net", "svc.cluster.local",
					 "io" };

static void big_rule(struct policy_rule *r, int i)
{
	static const uint8_t modes[] = { ALLOW, ENFORCE, MONITOR };
	char pattern[128];

	snprintf(pattern, sizeof(pattern), "%sr%d.%s", i % 5 == 0 ? "=" : "", i,
		 big_zones[(i / 4) % 4]);
	*r = rule(i + 1, pattern, modes[i % 3], big_scopes[i % 4]);
}

static void test_many_rules(void **state)
{
	struct policy_rule *r = calloc(BIG, sizeof(*r));
	struct policy_default d[] = { dflt("", MONITOR) };
	struct policy *p;

	assert_non_null(r);
	for (int i = 0; i < BIG; i++)
		big_rule(&r[i], i);
	p = policy_build(r, BIG, d, 1);
	free(r);
	keep(state, p);
	assert_int_equal(policy_n_rules(p), BIG);

	/* r1: suffix, enforce, web */
	check(p, "web", "r1.example.com", ENFORCE, 2, "r1.example.com", "web");
	check(p, "web", "a.b.r1.example.com", ENFORCE, 2, "r1.example.com", "web");
	check_default(p, "db", "r1.example.com", MONITOR);
	/* r9990: exact, allow, db */
	check(p, "db", "r9990.corp.example.net", ALLOW, 9991, "=r9990.corp.example.net", "db");
	check_default(p, "db", "www.r9990.corp.example.net", MONITOR);
	check_default(p, "web", "r9990.corp.example.net", MONITOR);
	/* r7204: suffix, enforce, all scopes */
	check(p, "db", "x.r7204.corp.example.net", ENFORCE, 7205, "r7204.corp.example.net", "");
	check(p, NULL, "r7204.corp.example.net", ENFORCE, 7205, "r7204.corp.example.net", "");
	/* r4994: suffix, monitor, db; r9999: suffix, allow, batch */
	check(p, "db", "a.r4994.example.com", MONITOR, 4995, "r4994.example.com", "db");
	check(p, "batch", "v1.api.r9999.io", ALLOW, 10000, "r9999.io", "batch");
	/* A zone is not a rule; a name under another zone, or under none, is not r's. */
	check_default(p, "web", "r1.io", MONITOR);
	check_default(p, "web", "example.com", MONITOR);
	check_default(p, "web", "r10000.example.com", MONITOR);
	check_default(p, "web", "r1", MONITOR);
	/* Every rule can be found by its id. */
	for (int i = 0; i < BIG; i += 97) {
		struct policy_decision dd;
		char want[128];

		assert_int_equal(policy_rule_by_id(p, i + 1, &dd), 1);
		snprintf(want, sizeof(want), "%sr%d.%s", i % 5 == 0 ? "=" : "", i,
			 big_zones[(i / 4) % 4]);
		assert_string_equal(dd.rule, want);
		assert_string_equal(dd.rule_scope, big_scopes[i % 4]);
	}
	assert_int_equal(policy_rule_by_id(p, BIG + 1, &(struct policy_decision){ 0 }), 0);
}

/* POLICY_RULES_MAX rules build; one more is E2BIG. */
static void test_rules_max(void **state)
{
	size_t n = POLICY_RULES_MAX + 1;
	struct policy_rule *r = calloc(n, sizeof(*r));
	struct policy *p;

	assert_non_null(r);
	for (size_t i = 0; i < n; i++) {
		r[i].id = (int64_t)i + 1;
		snprintf(r[i].name, sizeof(r[i].name), "h%zu.example", i);
		r[i].mode = ENFORCE;
	}
	errno = 0;
	assert_null(policy_build(r, n, NULL, 0));
	assert_int_equal(errno, E2BIG);
	p = policy_build(r, POLICY_RULES_MAX, NULL, 0);
	free(r);
	keep(state, p);
	assert_int_equal(policy_n_rules(p), POLICY_RULES_MAX);
	check(p, "web", "a.h99999.example", ENFORCE, 100000, "h99999.example", "");
	check_default(p, "web", "h100000.example", ALLOW);
}

/* decide_chain's answer for (scope, name, chain): mode, rule id and pattern. */
static void chain_(const struct policy *p, const char *scope, const char *name, const char *chain,
		   int mode, int64_t id, const char *rule_text, const char *file, int line)
{
	struct policy_decision d;

	memset(&d, 0xa5, sizeof(d));
	policy_decide_chain(p, scope, name, chain, &d);
	if (d.mode == mode && d.rule_id == id && !strcmp(d.rule, rule_text))
		return;
	print_error("decide_chain(\"%s\", \"%s\"): want %s id %lld \"%s\", got %s id %lld \"%s\"\n",
		    scope, name, policy_mode_name(mode), (long long)id, rule_text,
		    policy_mode_name(d.mode), (long long)d.rule_id, d.rule);
	_fail(file, line);
}
#define chain(p, scope, name, c, mode, id, rule_text) \
	chain_(p, scope, name, c, mode, id, rule_text, __FILE__, __LINE__)

/*
 * An answer's CNAME chain: a target's monitor or enforce rule decides where it says more than
 * the name's own decision; the name's own allow rule wins; defaults are not asked of targets.
 */
static void test_cname_chain(void **state)
{
	struct policy_rule r[] = {
		rule(1, "cdn.example", ENFORCE, ""),     rule(2, "=edge.example", MONITOR, ""),
		rule(3, "=ok.test", ALLOW, "deploy"),     rule(4, "watched.test", MONITOR, ""),
		rule(5, "=allowed.example", ALLOW, ""),
	};
	struct policy_default d[] = { dflt("locked", ENFORCE), dflt("", MONITOR) };
	struct policy *p = build(state, r, 5, d, 2);

	/* No chain, or a chain of names no rule names: the name's own decision. */
	chain(p, "web", "www.site.test", NULL, MONITOR, 0, "default");
	chain(p, "web", "www.site.test", "x.other\0\0", MONITOR, 0, "default");
	/* A target's enforce rule over the name's default, wherever it is in the chain. */
	chain(p, "web", "www.site.test", "edge.example\0a.cdn.example\0\0", ENFORCE, 1, "cdn.example");
	/* A target's monitor rule names a decision only a default made, at the same mode. */
	chain(p, "web", "www.site.test", "edge.example\0\0", MONITOR, 2, "=edge.example");
	/* ... but not one a rule of the name's own made. */
	chain(p, "web", "a.watched.test", "edge.example\0\0", MONITOR, 4, "watched.test");
	/* The name's own allow rule wins, in its scope only. */
	chain(p, "deploy", "ok.test", "a.cdn.example\0\0", ALLOW, 3, "=ok.test");
	chain(p, "web", "ok.test", "a.cdn.example\0\0", ENFORCE, 1, "cdn.example");
	/* A target's allow rule does not lift the name's default. */
	chain(p, "web", "www.site.test", "allowed.example\0\0", MONITOR, 0, "default");
	/* Under a lock-down the default is not asked of the targets: a rule's monitor stays. */
	chain(p, "locked", "a.watched.test", "x.other\0\0", MONITOR, 4, "watched.test");
	chain(p, "locked", "www.site.test", NULL, ENFORCE, 0, "default");
}

/* The length of a chain list "a\0b\0\0", its last NUL included. */
static size_t chain_len(const char *c)
{
	size_t n = 0;

	while (c[n])
		n += strlen(c + n) + 1;
	return n + 1;
}

/*
 * A chain from the store's text keeps what the proxy looks at live: targets in order, not
 * those a rule cannot name (\DDD escapes), not empty ones, POLICY_CHAIN_MAX bytes at most.
 */
static void test_chain_from_text(void **state)
{
	char *c, *text;
	size_t n = 0;

	assert_null(policy_chain_from_text(NULL));
	assert_null(policy_chain_from_text(""));
	assert_null(policy_chain_from_text(">>"));
	c = policy_chain_from_text("a.example>b.example");
	assert_non_null(c);
	assert_int_equal(chain_len(c), sizeof("a.example\0b.example\0"));
	assert_memory_equal(c, "a.example\0b.example\0", sizeof("a.example\0b.example\0"));
	free(c);
	c = policy_chain_from_text("we\\032ird.example>>b.example");
	assert_non_null(c);
	assert_memory_equal(c, "b.example\0", sizeof("b.example\0"));
	free(c);
	assert_null(policy_chain_from_text("only\\046escaped.example"));
	/* 100 targets of 40 bytes: those that fit in POLICY_CHAIN_MAX, and no part of one more. */
	text = malloc(100 * 41);
	assert_non_null(text);
	for (int i = 0; i < 100; i++)
		n += (size_t)sprintf(text + n, "%starget-%02d.a-cdn-name-of-some-length.net", i ? ">" : "", i);
	c = policy_chain_from_text(text);
	assert_non_null(c);
	assert_true(chain_len(c) <= POLICY_CHAIN_MAX);
	assert_true(chain_len(c) + 40 > POLICY_CHAIN_MAX);
	assert_string_equal(c, "target-00.a-cdn-name-of-some-length.net");
	free(c);
	free(text);
	(void)state;
}

/* Two references: the first unref leaves the set usable, the second frees it (ASan). */
static void test_refcount(void **state)
{
	struct policy_rule r[] = { rule(1, "github.com", ENFORCE, "") };
	struct policy *p = policy_build(r, 1, NULL, 0);

	assert_non_null(p);
	assert_ptr_equal(policy_ref(p), p);
	assert_null(policy_unref(p));
	check(p, "web", "api.github.com", ENFORCE, 1, "github.com", "");
	assert_int_equal(policy_n_rules(p), 1);
	assert_null(policy_unref(p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_accepted),
		cmocka_unit_test(test_parse_lengths),
		cmocka_unit_test(test_parse_rejected),
		cmocka_unit_test(test_format_pattern),
		cmocka_unit_test(test_modes),
		cmocka_unit_test(test_verdict),
		cmocka_unit_test_setup_teardown(test_suffix_match, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exact_match, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scope_beats_global, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scope_falls_through, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exact_beats_suffix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_longer_suffix_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_longer_suffix_allow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_equal_specificity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_scope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_scope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_global, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_scope_over_global, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_allow_unnamed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rule_by_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rule_beats_default, setup, teardown),
		cmocka_unit_test_setup_teardown(test_null, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_copies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rules_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cname_chain, setup, teardown),
		cmocka_unit_test(test_chain_from_text),
		cmocka_unit_test(test_refcount),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
