/* SPDX-License-Identifier: MIT */
#ifndef NT_POLICY_H
#define NT_POLICY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Rules: a domain pattern with a mode, for one scope or for all. `github.com` matches that
 * name and every name below it; `=github.com` the name alone.
 *
 * Which rule decides a name, for a scope (docs/policy.md has the table):
 * 1. rules of the scope itself over rules for all scopes;
 * 2. then an exact rule over a suffix rule of the same name;
 * 3. then the longer suffix over the shorter;
 * 4. at equal specificity (only possible in a rule set not built from the store, where a
 *    pattern is unique per scope) enforce over monitor over allow.
 * Where no rule matches, the scope's default decides (else the default set for every scope):
 * out of the box `allow` (recorded, nothing blocked); `monitor` records every unmatched name as would_block (a dry run of a
 * lock-down), `enforce` blocks it.
 */

enum policy_mode {
	POLICY_ALLOW = 0,
	POLICY_MONITOR = 1,
	POLICY_ENFORCE = 2,
};

enum policy_match {
	POLICY_SUFFIX = 0,
	POLICY_EXACT = 1,
};

#define POLICY_NAME_MAX 254  /* 253 characters and the NUL */
#define POLICY_SCOPE_MAX 65  /* as struct watch */
#define POLICY_CHAIN_MAX 2048 /* bytes of an answer's CNAME targets the rules look at */
#define POLICY_RULES_MAX 100000

struct policy_rule {
	int64_t id;
	char name[POLICY_NAME_MAX];   /* normalised: lowercase, no trailing dot */
	uint8_t match;                /* enum policy_match */
	uint8_t mode;                 /* enum policy_mode */
	char scope[POLICY_SCOPE_MAX]; /* "" for every scope */
};

struct policy_default {
	char scope[POLICY_SCOPE_MAX];
	uint8_t mode;
};

/*
 * A user's pattern into a normalised name and a match kind: lowercased, one trailing dot
 * removed, each label 1-63 characters of [a-z0-9_-] not starting or ending with '-', the name
 * at most 253. Internationalised names in their ASCII (xn--) form. 0, or -EINVAL with one
 * sentence in *why.
 */
int policy_parse_pattern(const char *in, char name[POLICY_NAME_MAX], uint8_t *ret_match,
			 const char **why);
/* The pattern as a user writes it: "github.com" or "=github.com". */
void policy_format_pattern(const char *name, int match, char *buf, size_t len);

/* "allow", "monitor", "enforce": 0 and the mode, or -EINVAL. */
int policy_parse_mode(const char *s, uint8_t *ret);
const char *policy_mode_name(int mode);

/* A compiled rule set: immutable, shared between threads by reference counting. */
struct policy;

/* NULL with errno set (ENOMEM, E2BIG past POLICY_RULES_MAX). n may be 0. */
struct policy *policy_build(const struct policy_rule *rules, size_t n,
			    const struct policy_default *defaults, size_t n_defaults);
struct policy *policy_ref(struct policy *p);
/* Accepts NULL; returns NULL. */
struct policy *policy_unref(struct policy *p);
size_t policy_n_rules(const struct policy *p);

struct policy_decision {
	uint8_t mode;          /* what applies: the rule's, or the scope default */
	int64_t rule_id;       /* 0: no rule matched, the default decided */
	char rule[POLICY_NAME_MAX + 1]; /* the pattern as written; "default" when a scope default
					  other than allow decided; "" when nothing matched */
	char rule_scope[POLICY_SCOPE_MAX]; /* the rule's scope, "" for all */
};

/* What applies in scope where no rule matches: its default, else every scope's, else allow. */
uint8_t policy_default_mode(const struct policy *p, const char *scope);

/* What the rules say of a name asked by a scope; a NULL policy allows everything. */
void policy_decide(const struct policy *p, const char *scope, const char *name,
		   struct policy_decision *ret);

/*
 * What the rules say of a name whose answer was a chain of CNAMEs: chain holds the targets,
 * each ending in '\0', and the list ends in an empty one ("a\0b\0\0"; NULL: no chain). A
 * rule of a target decides where it says monitor or enforce and that is more than the name's
 * own decision, unless a rule of the name's own allows it. Scope defaults are not asked of the
 * targets: under a lock-down every CDN name behind an allowed name would be refused. At equal
 * mode, a target's rule is named where only a default decided the name.
 */
void policy_decide_chain(const struct policy *p, const char *scope, const char *name,
			 const char *chain, struct policy_decision *ret);
/*
 * A chain from its text, "a>b" (as the store's queries give it), with what the proxy looks
 * at live (dnsproxy.c): targets with \DDD escapes left out, POLICY_CHAIN_MAX bytes at most.
 * malloc'd; NULL for none.
 */
char *policy_chain_from_text(const char *text);

/* The rule of that id (mode, pattern, scope) into *ret: 1, or 0 if the set has none. */
int policy_rule_by_id(const struct policy *p, int64_t id, struct policy_decision *ret);

/*
 * The scopes with rules or a default of their own, each once, into out (at most max): the
 * strings live as long as p. Returns how many there are (also past max).
 */
size_t policy_scopes(const struct policy *p, const char **out, size_t max);

/* The verdict of an attempt the rule set decided: an enum nt_verdict. */
int policy_verdict(int mode);

#endif /* NT_POLICY_H */
