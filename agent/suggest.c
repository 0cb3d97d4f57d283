// SPDX-License-Identifier: MIT
/* What a lock-down needs allowed, from what a scope was seen doing (suggest.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "report.h"
#include "suggest.h"

/*
 * Per name: attempts, processes, the last time and (bare column of max()) the process then,
 * and whether any lookup of it found it (an NXDOMAIN of the proxy's own, for a rule, counts:
 * the name may well exist).
 */
static const char names_sql[] =
	"WITH e AS ("
	"  SELECT qname AS name, process_id, time_ns,"
	"         (verdict = 'blocked' OR rcode IS NULL OR rcode <> 'NXDOMAIN') AS found"
	"  FROM dns_queries WHERE process_id IS NOT NULL"
	"   AND (?1 IS NULL OR scope = ?1) AND time_ns >= ?2"
	"  UNION ALL"
	"  SELECT domain, process_id, time_ns, 1 FROM connections WHERE domain IS NOT NULL"
	"   AND (?1 IS NULL OR scope = ?1) AND time_ns >= ?2),"
	" g AS (SELECT name, count(*) AS attempts, count(DISTINCT process_id) AS processes,"
	"         max(time_ns) AS last_ns, process_id, sum(found) AS found FROM e GROUP BY name)"
	" SELECT g.name, g.attempts, g.processes, g.last_ns, coalesce(p.cmdline, p.comm, '')"
	" FROM g LEFT JOIN processes p ON p.id = g.process_id WHERE g.found > 0 ORDER BY g.name";

/* The CNAME chains ("a>b") the name's answers had in the scope and window, each once. */
static const char chains_sql[] =
	"SELECT DISTINCT (SELECT group_concat(c.value, '>') FROM dns_answers c"
	"  WHERE c.query_id = q.id AND c.type = 'CNAME')"
	" FROM dns_queries q WHERE q.qname = ?3 AND (?1 IS NULL OR q.scope = ?1) AND q.time_ns >= ?2";

/* Destinations reached with no name (DNS itself aside: it goes to the proxy whatever). */
static const char unnamed_sql[] =
	"SELECT min(addr), proto, port, count(*) FROM connections"
	" WHERE domain IS NULL AND family IN ('ipv4', 'ipv6') AND port <> 53"
	"  AND (?1 IS NULL OR scope = ?1) AND time_ns >= ?2"
	" GROUP BY addr_key, port, proto ORDER BY count(*) DESC, min(addr), port";

static int grow(void **arr, size_t n, size_t *cap, size_t size)
{
	void *p;

	if (n < *cap)
		return 0;
	*cap = *cap ? *cap * 2 : 32;
	p = realloc(*arr, *cap * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	return 0;
}

/*
 * Whether a rule of a CNAME target enforces one of the name's lookups: an allow rule of the
 * name's own would override it (policy_decide_chain), so none is suggested. A target's
 * monitor rule is not asked: under the lock-down the alias would be refused by the default
 * (targets are not asked for less than it), so it needs its allow rule. 1, 0, or -EIO.
 */
static int chain_ruled(sqlite3_stmt *chains, const char *scope, const char *raw,
		       const char *name, const struct policy *p)
{
	int rc, ruled = 0;

	sqlite3_reset(chains);
	sqlite3_bind_text(chains, 3, raw, -1, SQLITE_STATIC);
	while (!ruled && (rc = sqlite3_step(chains)) == SQLITE_ROW) {
		char *chain = policy_chain_from_text((const char *)sqlite3_column_text(chains, 0));
		struct policy_decision d;

		if (!chain)
			continue;
		policy_decide_chain(p, scope, name, chain, &d);
		ruled = d.rule_id != 0 && d.mode == POLICY_ENFORCE;
		free(chain);
	}
	if (!ruled && rc != SQLITE_DONE)
		return -EIO;
	return ruled;
}

static int collect_names(sqlite3_stmt *chains, const char *scope, const struct policy *p,
			 sqlite3_stmt *st, struct suggest_result *ret)
{
	size_t cap = 0;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		const char *cmd = (const char *)sqlite3_column_text(st, 4);
		char norm[POLICY_NAME_MAX];
		struct policy_decision d;
		struct suggestion *s;
		const char *why;
		uint8_t match;
		int n, r;

		ret->n_seen++;
		/* Only what a rule can be written for: an odd name from the wire is left out. */
		if (!name || policy_parse_pattern(name, norm, &match, &why) < 0 ||
		    match != POLICY_SUFFIX)
			continue;
		policy_decide(p, scope ? scope : "", norm, &d);
		if (d.rule_id)
			continue; /* a rule of the operator's decides it already */
		r = chain_ruled(chains, scope ? scope : "", name, norm, p);
		if (r < 0)
			return r;
		if (r)
			continue; /* or one of a name its answers led to */
		if (grow((void **)&ret->names, ret->n_names, &cap, sizeof(*ret->names)) < 0)
			return -ENOMEM;
		s = &ret->names[ret->n_names++];
		memset(s, 0, sizeof(*s));
		memcpy(s->name, norm, sizeof(s->name));
		s->attempts = sqlite3_column_int64(st, 1);
		s->processes = sqlite3_column_int64(st, 2);
		s->last_ns = sqlite3_column_int64(st, 3);
		cmd = cmd ? cmd : "";
		n = report_cut(cmd, (int)sizeof(s->cmdline) - 4);
		snprintf(s->cmdline, sizeof(s->cmdline), "%.*s%s", n, cmd, cmd[n] ? "..." : "");
	}
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static int collect_unnamed(sqlite3_stmt *st, struct suggest_result *ret)
{
	size_t cap = 0;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *addr = (const char *)sqlite3_column_text(st, 0);
		const char *proto = (const char *)sqlite3_column_text(st, 1);
		struct unnamed_dest *u;

		if (grow((void **)&ret->unnamed, ret->n_unnamed, &cap, sizeof(*ret->unnamed)) < 0)
			return -ENOMEM;
		u = &ret->unnamed[ret->n_unnamed++];
		snprintf(u->addr, sizeof(u->addr), "%s", addr ? addr : "");
		snprintf(u->proto, sizeof(u->proto), "%s", proto ? proto : "");
		u->port = sqlite3_column_int64(st, 2);
		u->attempts = sqlite3_column_int64(st, 3);
	}
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static int run_query(sqlite3 *db, const char *sql, const char *scope, int64_t since_ns,
		     sqlite3_stmt **ret)
{
	if (sqlite3_prepare_v2(db, sql, -1, ret, NULL) != SQLITE_OK)
		return -EIO;
	if (scope)
		sqlite3_bind_text(*ret, 1, scope, -1, SQLITE_STATIC);
	sqlite3_bind_int64(*ret, 2, since_ns);
	return 0;
}

int suggest_collect(sqlite3 *db, const char *scope, int64_t since_ns, const struct policy *p,
		    struct suggest_result *ret)
{
	sqlite3_stmt *st, *chains;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = run_query(db, chains_sql, scope, since_ns, &chains);
	if (r < 0)
		return r;
	r = run_query(db, names_sql, scope, since_ns, &st);
	if (r < 0) {
		sqlite3_finalize(chains);
		return r;
	}
	r = collect_names(chains, scope, p, st, ret);
	sqlite3_finalize(st);
	sqlite3_finalize(chains);
	if (r == 0)
		r = run_query(db, unnamed_sql, scope, since_ns, &st);
	if (r == 0) {
		r = collect_unnamed(st, ret);
		sqlite3_finalize(st);
	}
	if (r < 0)
		suggest_free(ret);
	return r;
}

void suggest_free(struct suggest_result *r)
{
	free(r->names);
	free(r->unnamed);
	memset(r, 0, sizeof(*r));
}

void suggest_print(const struct suggest_result *r, const char *scope, FILE *out)
{
	char scope_opt[80] = "";

	if (scope)
		snprintf(scope_opt, sizeof(scope_opt), " --scope %s", scope);
	if (r->n_names == 0 && r->n_seen == 0)
		fprintf(out, "# nothing to allow: no name that resolved was recorded%s%s\n",
			scope ? " for scope " : "", scope ? scope : "");
	else if (r->n_names == 0)
		fprintf(out, "# nothing to allow: every name seen%s%s is decided by a rule already\n",
			scope ? " in scope " : "", scope ? scope : "");
	for (size_t i = 0; i < r->n_names; i++) {
		const struct suggestion *s = &r->names[i];
		time_t t = (time_t)(s->last_ns / 1000000000LL);
		struct tm tm;
		char when[32] = "?";

		if (gmtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
		fprintf(out, "nettrail policy add =%s%s --mode allow  # %lld attempt%s, %lld process%s, "
			"last %s: %s\n",
			s->name, scope_opt, (long long)s->attempts, s->attempts == 1 ? "" : "s",
			(long long)s->processes, s->processes == 1 ? "" : "es", when, s->cmdline);
	}
	if (r->n_unnamed == 0)
		return;
	fprintf(out, "# reached by address, with no name a rule could allow (recorded, not refused "
		     "under a lock-down):\n");
	for (size_t i = 0; i < r->n_unnamed; i++)
		fprintf(out, "#   %s %s port %lld, %lld attempt%s\n", r->unnamed[i].proto,
			r->unnamed[i].addr, (long long)r->unnamed[i].port,
			(long long)r->unnamed[i].attempts, r->unnamed[i].attempts == 1 ? "" : "s");
}
