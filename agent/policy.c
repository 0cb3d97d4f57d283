// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nettrail.h"
#include "policy.h"

/*
 * The rule set is a hash table of (scope, name) -> the exact and the suffix rule of that
 * name: deciding a name costs one lookup per label of it, per scope pass (the scope's own
 * rules, then the rules for all), whatever the number of rules.
 */
struct slot {
	uint64_t hash;      /* 0: empty */
	const char *scope;  /* into the pool */
	const char *name;
	int64_t id[2];      /* [POLICY_SUFFIX], [POLICY_EXACT]; 0: no such rule */
	uint8_t mode[2];
};

/* A rule by its id: the slot holding it, and which of its two rules. */
struct id_ref {
	int64_t id;
	const struct slot *slot;
	int match;
};

struct policy {
	int refs;
	struct id_ref *ids;
	size_t n_ids;
	size_t n_rules;
	size_t mask;        /* slots - 1 */
	struct slot *slots;
	struct policy_default *defaults;
	size_t n_defaults;
	char *pool;
};

int policy_parse_mode(const char *s, uint8_t *ret)
{
	static const char *const names[] = { "allow", "monitor", "enforce" };

	for (uint8_t i = 0; i < 3; i++) {
		if (s && !strcmp(s, names[i])) {
			*ret = i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *policy_mode_name(int mode)
{
	switch (mode) {
	case POLICY_ALLOW: return "allow";
	case POLICY_MONITOR: return "monitor";
	case POLICY_ENFORCE: return "enforce";
	}
	return "unknown";
}

int policy_verdict(int mode)
{
	return mode == POLICY_ENFORCE ? NT_VERDICT_BLOCKED :
	       mode == POLICY_MONITOR ? NT_VERDICT_WOULD_BLOCK : NT_VERDICT_ALLOWED;
}

static int label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* One label of [a-z0-9_-], 1-63 long, no '-' at either end; its length, or -1 with *why. */
static int label_check(const char *l, size_t n, const char **why)
{
	if (n == 0) {
		*why = "empty label (two dots in a row, or a leading dot)";
		return -1;
	}
	if (n > 63) {
		*why = "a label is longer than 63 characters";
		return -1;
	}
	if (l[0] == '-' || l[n - 1] == '-') {
		*why = "a label starts or ends with '-'";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!label_char(l[i])) {
			*why = (unsigned char)l[i] >= 0x80 ?
				       "not ASCII: write an internationalised name in its xn-- form" :
				       "a name has only letters, digits, '-', '_' and dots";
			return -1;
		}
	}
	return 0;
}

/* Where the last label of a name starts. */
static size_t last_label(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot ? (size_t)(dot - name) + 1 : 0;
}

int policy_parse_pattern(const char *in, char ret_name[POLICY_NAME_MAX], uint8_t *ret_match,
			 const char **why)
{
	uint8_t match = POLICY_SUFFIX;
	char name[POLICY_NAME_MAX];
	size_t n, start = 0;

	*why = NULL;
	if (!in || !*in) {
		*why = "the pattern is empty";
		return -EINVAL;
	}
	if (in[0] == '=') {
		match = POLICY_EXACT;
		in++;
	}
	if (in[0] == '*') {
		*why = "no wildcards: a pattern such as example.com matches the name and every name "
		       "below it already (=example.com the name alone)";
		return -EINVAL;
	}
	n = strlen(in);
	if (n > 0 && in[n - 1] == '.')
		n--; /* the root's dot: "github.com." is "github.com" */
	if (n == 0) {
		*why = "the pattern names no domain";
		return -EINVAL;
	}
	if (n > POLICY_NAME_MAX - 1) {
		*why = "the name is longer than 253 characters";
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		char c = in[i];

		name[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	name[n] = '\0';
	for (size_t i = 0; i <= n; i++) {
		if (i < n && name[i] != '.')
			continue;
		if (label_check(name + start, i - start, why) < 0)
			return -EINVAL;
		start = i + 1;
	}
	/* No top-level domain is all digits: this is an address, which rules cannot name. */
	if (strspn(name + last_label(name), "0123456789") == strlen(name + last_label(name))) {
		*why = "an address, not a name: rules decide names, and the addresses those resolve "
		       "to follow";
		return -EINVAL;
	}
	memcpy(ret_name, name, n + 1);
	*ret_match = match;
	return 0;
}

void policy_format_pattern(const char *name, int match, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", match == POLICY_EXACT ? "=" : "", name);
}

/* FNV-1a over the scope, a separator no scope or name holds, and the name's first n bytes. */
static uint64_t key_hash(const char *scope, const char *name, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const char *s = scope; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	h = (h ^ '/') * 0x100000001b3ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)name[i]) * 0x100000001b3ULL;
	return h ? h : 1;
}

static struct slot *slot_find(const struct policy *p, const char *scope, const char *name,
			      size_t n, uint64_t h)
{
	for (size_t i = h & p->mask;; i = (i + 1) & p->mask) {
		struct slot *s = &p->slots[i];

		if (!s->hash)
			return s;
		if (s->hash == h && !strcmp(s->scope, scope) && strlen(s->name) == n &&
		    !memcmp(s->name, name, n))
			return s;
	}
}

static char *pool_add(char **at, const char *s)
{
	char *r = *at;
	size_t n = strlen(s) + 1;

	memcpy(r, s, n);
	*at += n;
	return r;
}

static void policy_add_rule(struct policy *p, const struct policy_rule *r, char **pool)
{
	size_t n = strlen(r->name);
	uint64_t h = key_hash(r->scope, r->name, n);
	struct slot *s = slot_find(p, r->scope, r->name, n, h);
	int m = r->match == POLICY_EXACT;

	if (!s->hash) {
		s->hash = h;
		s->scope = pool_add(pool, r->scope);
		s->name = pool_add(pool, r->name);
	}
	/* The same pattern twice: the stricter mode (the store keeps patterns unique). */
	if (!s->id[m] || r->mode > s->mode[m]) {
		s->id[m] = r->id ? r->id : -1;
		s->mode[m] = r->mode;
	}
}

static int id_cmp(const void *a, const void *b)
{
	int64_t x = ((const struct id_ref *)a)->id, y = ((const struct id_ref *)b)->id;

	return x < y ? -1 : x > y;
}

/* The rules by id, for the verdicts the kernel gives by id: sorted once, at build. */
static int policy_index_ids(struct policy *p)
{
	size_t n = 0;

	p->ids = calloc(p->n_rules ? p->n_rules * 2 : 1, sizeof(*p->ids));
	if (!p->ids)
		return -ENOMEM;
	for (size_t i = 0; i <= p->mask; i++) {
		for (int m = 0; m < 2; m++) {
			if (p->slots[i].hash && p->slots[i].id[m] > 0)
				p->ids[n++] = (struct id_ref){ p->slots[i].id[m], &p->slots[i], m };
		}
	}
	qsort(p->ids, n, sizeof(*p->ids), id_cmp);
	p->n_ids = n;
	return 0;
}

struct policy *policy_build(const struct policy_rule *rules, size_t n,
			    const struct policy_default *defaults, size_t n_defaults)
{
	struct policy *p;
	size_t slots = 16, pool = 1;
	char *at;

	if (n > POLICY_RULES_MAX) {
		errno = E2BIG;
		return NULL;
	}
	while (slots < 2 * n)
		slots *= 2;
	for (size_t i = 0; i < n; i++)
		pool += strlen(rules[i].scope) + strlen(rules[i].name) + 2;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->refs = 1;
	p->slots = calloc(slots, sizeof(*p->slots));
	p->pool = malloc(pool);
	p->defaults = n_defaults ? calloc(n_defaults, sizeof(*p->defaults)) : NULL;
	if (!p->slots || !p->pool || (n_defaults && !p->defaults)) {
		policy_unref(p);
		errno = ENOMEM;
		return NULL;
	}
	p->mask = slots - 1;
	at = p->pool;
	for (size_t i = 0; i < n; i++)
		policy_add_rule(p, &rules[i], &at);
	p->n_rules = n;
	if (policy_index_ids(p) < 0) {
		policy_unref(p);
		errno = ENOMEM;
		return NULL;
	}
	if (n_defaults)
		memcpy(p->defaults, defaults, n_defaults * sizeof(*defaults));
	p->n_defaults = n_defaults;
	return p;
}

struct policy *policy_ref(struct policy *p)
{
	if (p)
		__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

struct policy *policy_unref(struct policy *p)
{
	if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return NULL;
	free(p->slots);
	free(p->ids);
	free(p->pool);
	free(p->defaults);
	free(p);
	return NULL;
}

size_t policy_n_rules(const struct policy *p)
{
	return p ? p->n_rules : 0;
}

/* The most specific rule of one scope pass for name: 1 and *ret, or 0. */
static int decide_in(const struct policy *p, const char *scope, const char *name,
		     struct policy_decision *ret)
{
	size_t len = strlen(name);

	for (size_t off = 0; off < len;) {
		size_t n = len - off;
		const struct slot *s = slot_find(p, scope, name + off, n, key_hash(scope, name + off, n));
		int m = -1;

		if (s->hash) {
			if (off == 0 && s->id[POLICY_EXACT])
				m = POLICY_EXACT;
			else if (s->id[POLICY_SUFFIX])
				m = POLICY_SUFFIX;
		}
		if (m >= 0) {
			ret->mode = s->mode[m];
			ret->rule_id = s->id[m];
			policy_format_pattern(s->name, m, ret->rule, sizeof(ret->rule));
			snprintf(ret->rule_scope, sizeof(ret->rule_scope), "%s", scope);
			return 1;
		}
		while (off < len && name[off] != '.')
			off++;
		off++; /* past the dot: the next shorter suffix */
	}
	return 0;
}

static size_t scope_add(const char *s, const char **out, size_t n, size_t max)
{
	if (!s[0])
		return n;
	for (size_t i = 0; i < n && i < max; i++)
		if (!strcmp(out[i], s))
			return n;
	if (n < max)
		out[n] = s;
	return n + 1;
}

size_t policy_scopes(const struct policy *p, const char **out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; p && i <= p->mask; i++)
		if (p->slots[i].hash)
			n = scope_add(p->slots[i].scope, out, n, max);
	for (size_t i = 0; p && i < p->n_defaults; i++)
		n = scope_add(p->defaults[i].scope, out, n, max);
	return n;
}

uint8_t policy_default_mode(const struct policy *p, const char *scope)
{
	uint8_t mode = POLICY_ALLOW;

	/* The scope's own default, else the default for all scopes, else allow. */
	for (size_t i = 0; p && i < p->n_defaults; i++) {
		if (scope && *scope && !strcmp(p->defaults[i].scope, scope))
			return p->defaults[i].mode;
		if (!p->defaults[i].scope[0])
			mode = p->defaults[i].mode;
	}
	return mode;
}

void policy_decide(const struct policy *p, const char *scope, const char *name,
		   struct policy_decision *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->mode = POLICY_ALLOW;
	if (!p || !name)
		return;
	if (p->n_rules && ((scope && *scope && decide_in(p, scope, name, ret)) ||
			   decide_in(p, "", name, ret)))
		return;
	ret->mode = policy_default_mode(p, scope);
	if (ret->mode != POLICY_ALLOW)
		snprintf(ret->rule, sizeof(ret->rule), "%s", "default");
}

void policy_decide_chain(const struct policy *p, const char *scope, const char *name,
			 const char *chain, struct policy_decision *ret)
{
	policy_decide(p, scope, name, ret);
	if (!chain || (ret->rule_id && ret->mode == POLICY_ALLOW))
		return;
	for (const char *t = chain; *t && ret->mode != POLICY_ENFORCE; t += strlen(t) + 1) {
		struct policy_decision d;

		policy_decide(p, scope, t, &d);
		if (d.rule_id && d.mode != POLICY_ALLOW &&
		    (d.mode > ret->mode || (d.mode == ret->mode && !ret->rule_id)))
			*ret = d;
	}
}

char *policy_chain_from_text(const char *text)
{
	size_t n = text ? strlen(text) : 0, o = 0;
	char *chain = n ? malloc(n + 2) : NULL;

	if (!chain)
		return NULL;
	for (const char *t = text; *t;) {
		size_t len = strcspn(t, ">");

		if (o + len + 2 > POLICY_CHAIN_MAX)
			break;
		if (len && !memchr(t, '\\', len)) {
			memcpy(chain + o, t, len);
			o += len;
			chain[o++] = '\0';
		}
		t += len + (t[len] == '>');
	}
	if (!o) {
		free(chain);
		return NULL;
	}
	chain[o] = '\0';
	return chain;
}

int policy_rule_by_id(const struct policy *p, int64_t id, struct policy_decision *ret)
{
	struct id_ref key = { .id = id };
	const struct id_ref *r;

	memset(ret, 0, sizeof(*ret));
	if (!p || !p->n_ids || id <= 0)
		return 0;
	r = bsearch(&key, p->ids, p->n_ids, sizeof(*p->ids), id_cmp);
	if (!r)
		return 0;
	ret->mode = r->slot->mode[r->match];
	ret->rule_id = id;
	policy_format_pattern(r->slot->name, r->match, ret->rule, sizeof(ret->rule));
	snprintf(ret->rule_scope, sizeof(ret->rule_scope), "%s", r->slot->scope);
	return 1;
}

