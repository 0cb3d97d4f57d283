/* SPDX-License-Identifier: MIT */
#ifndef NT_SUGGEST_H
#define NT_SUGGEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sqlite3.h>
#include "policy.h"

/*
 * `nettrail policy suggest`: the allow rules a lock-down (`policy default enforce`) needs so
 * that what a scope was seen doing keeps working. One exact rule (=name) per name the scope
 * looked up or connected to by name, except:
 * - names a rule already decides (an allow rule is not needed; an enforce or monitor rule is
 *   the operator's decision and is not overridden), or an enforce rule of a CNAME target of
 *   one of their answers (an allow rule of the alias's own would override it);
 * - names every lookup of which the upstream answered NXDOMAIN (they do not exist: a search
 *   domain tried, a typo), which a lock-down answers the same way.
 * Exact rules, not suffixes: a lock-down should allow what was seen and no more.
 * Addresses reached with no name are listed apart: rules speak of names, so a lock-down
 * records them (verdict allowed) and does not refuse them.
 */
struct suggestion {
	char name[POLICY_NAME_MAX];
	int64_t attempts;  /* lookups and connects */
	int64_t processes; /* distinct processes */
	int64_t last_ns;
	char cmdline[128]; /* of the last process, cut */
};

struct unnamed_dest {
	char addr[64];
	char proto[8];
	int64_t port;
	int64_t attempts;
};

struct suggest_result {
	struct suggestion *names;
	size_t n_names;
	size_t n_seen;     /* names seen, suggested or not */
	struct unnamed_dest *unnamed;
	size_t n_unnamed;
};

/*
 * For scope (NULL: every scope, suggesting rules for every scope) since since_ns (wall ns),
 * under the rules in p. 0, or -EIO (sqlite3_errmsg says why) or -ENOMEM.
 */
int suggest_collect(sqlite3 *db, const char *scope, int64_t since_ns, const struct policy *p,
		    struct suggest_result *ret);
void suggest_free(struct suggest_result *r);

/*
 * The result as commands to paste: `nettrail policy add =NAME [--scope S] --mode allow`, each
 * with a comment of what needed it, then the unnamed destinations as comments.
 */
void suggest_print(const struct suggest_result *r, const char *scope, FILE *out);

#endif /* NT_SUGGEST_H */
