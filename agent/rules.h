/* SPDX-License-Identifier: MIT */
#ifndef NT_RULES_H
#define NT_RULES_H

#include <stddef.h>
#include <stdint.h>
#include "policy.h"

/*
 * Rules and scope defaults in the store (tables rules, scope_defaults, rule_changes). Every
 * change is one transaction that also records it in rule_changes and bumps
 * agent_state.rules_version, which running agents poll. Functions return 0 or -errno:
 * -EEXIST (add: the pattern has a rule in that scope), -ENOENT (set, rm: it has none),
 * -EALREADY (set, default: that mode already, and no note: nothing written),
 * -EIO and the like from the store (store_errmsg says which).
 */
struct store;

struct rule_change {
	const char *pattern; /* as the user wrote it; normalised by the callee */
	const char *scope;   /* "" for every scope */
	uint8_t mode;
	const char *note;    /* NULL: none (set: keep the rule's) */
	const char *by;      /* who, see rules_actor */
};

/* Who is making a change: "alice (uid 0 via sudo from uid 1000)" or "root (uid 0)". */
void rules_actor(char *buf, size_t len);

/* ret_old_mode: the mode before (set, rm, default), or -1 when there was none. */
int rules_add(struct store *s, const struct rule_change *c, int64_t *ret_id);
/* Every rule of c, in one transaction: all are added, or none (the first error). */
int rules_add_many(struct store *s, const struct rule_change *c, size_t n);
int rules_set(struct store *s, const struct rule_change *c, int *ret_old_mode);
int rules_rm(struct store *s, const struct rule_change *c, int *ret_old_mode);
int rules_set_default(struct store *s, const struct rule_change *c, int *ret_old_mode);

/* Where agent_state.rules_version stands (0 before any change). */
int rules_version(struct store *s, int64_t *ret);

/*
 * Whether the rules changed since the version in *seen (-1: never looked), which is moved
 * on: 1 changed, 0 not, or -errno. Cheap enough for every tick: SQLite's data_version says
 * first whether anyone committed at all.
 */
struct rules_cursor {
	int64_t data_version;
	int64_t rules_version;
};
int rules_poll(struct store *s, struct rules_cursor *c);

/* The whole rule set, compiled. */
int rules_load(struct store *s, struct policy **ret);

#endif /* NT_RULES_H */
