// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "policy.h"
#include "report.h"
#include "utf8.h"

/* How many distinct command lines csv and json give per destination (the table: the first). */
#define CMDLINES_SHOWN "10"
#define COL_CMDLINES 12

/*
 * A lookup the upstream answered NXDOMAIN breaks nothing when refused: the name does not
 * exist (a search domain tried, a typo). One the proxy refused for a rule may well exist.
 */
#define NAME_EXISTS " AND (verdict = 'blocked' OR rcode IS NULL OR rcode <> 'NXDOMAIN')"

/*
 * The distinct command lines of the processes of rows x of table, matched by cond (and the
 * filters ?2, ?3), first seen first, CMDLINES_SHOWN at most, separated by char(31): for csv
 * and json only (?4).
 */
#define CMDLINES_OF(table, cond)                                                               \
	" CASE WHEN ?4 THEN (SELECT group_concat(cmd, char(31)) FROM ("                        \
	"  SELECT coalesce(p.cmdline, p.comm, '') AS cmd FROM " table " x"                     \
	"  JOIN processes p ON p.id = x.process_id WHERE " cond                                \
	"   AND (?2 IS NULL OR x.run_id = ?2) AND x.time_ns >= ?3"                             \
	"  GROUP BY cmd ORDER BY min(x.id) LIMIT " CMDLINES_SHOWN ")) END"

/* A query's name with its answer's CNAME targets, "name>target>target" (decide_entry). */
#define CHAIN_OF(q)                                                                            \
	" || coalesce((SELECT '>' || group_concat(c.value, '>') FROM dns_answers c"            \
	" WHERE c.query_id = " q ".id AND c.type = 'CNAME'), '')"

static const char deps_sql[] =
	"WITH g AS ("
	"  SELECT scope, proto, addr_key, port, count(*) AS attempts, min(id) AS first_id,"
	"         count(DISTINCT process_id) AS processes, group_concat(DISTINCT verdict) AS verdicts,"
	"         max(time_ns) AS last_ns, group_concat(DISTINCT domain) AS domains,"
	"         min(time_ns) AS first_ns"
	"  FROM connections"
	"  WHERE (?1 IS NULL OR scope = ?1) AND (?2 IS NULL OR run_id = ?2) AND time_ns >= ?3"
	"  GROUP BY scope, proto, addr_key, port),"
	/*
	 * Every name the scope resolved to each address in the same window, for the rules (a
	 * CDN's address has several), with the CNAME chain of its latest answer: once per scope
	 * and address.
	 */
	" d AS (SELECT DISTINCT scope, addr_key FROM g),"
	" l AS (SELECT d.scope, d.addr_key, q.qname, max(q.id) AS id"
	"  FROM d JOIN dns_answers a ON a.addr_key = d.addr_key"
	"  JOIN dns_queries q ON q.id = a.query_id AND q.scope = d.scope"
	"  WHERE q.time_ns >= ?3 AND (?2 IS NULL OR q.run_id = ?2)"
	"  GROUP BY d.scope, d.addr_key, q.qname),"
	/* And the names its connections carried, with the chain of the scope's latest answer. */
	" k AS (SELECT DISTINCT scope, addr_key, domain FROM connections"
	"  WHERE domain IS NOT NULL AND (?1 IS NULL OR scope = ?1) AND (?2 IS NULL OR run_id = ?2)"
	"   AND time_ns >= ?3),"
	" n AS (SELECT scope, addr_key, group_concat(name) AS names FROM ("
	"   SELECT scope, addr_key, qname" CHAIN_OF("l") " AS name FROM l"
	"   UNION"
	"   SELECT k.scope, k.addr_key, k.domain || coalesce((SELECT '>' || group_concat(c.value, '>')"
	"    FROM dns_answers c WHERE c.type = 'CNAME' AND c.query_id = (SELECT max(q.id)"
	"     FROM dns_queries q WHERE q.qname = k.domain AND q.scope = k.scope AND q.answers > 0)),"
	"    '') FROM k)"
	"  GROUP BY scope, addr_key),"
	/*
	 * And the names the scope looked up but connected to by none of their addresses in the
	 * window: refused ones above all (not those the upstream said do not exist: the run's DNS
	 * line has them). Each with the chain of its latest answer (or refusal), for the rules.
	 */
	" dq AS (SELECT q0.scope, q0.qname, count(*) AS attempts, min(q0.id) AS first_id,"
	"         count(DISTINCT q0.process_id) AS processes,"
	"         group_concat(DISTINCT q0.verdict) AS verdicts, max(q0.time_ns) AS last_ns,"
	"         min(q0.time_ns) AS first_ns,"
	"         coalesce(max(CASE WHEN q0.answers > 0 THEN q0.id END), max(q0.id)) AS id"
	"  FROM dns_queries q0 WHERE q0.process_id IS NOT NULL" NAME_EXISTS
	"   AND (?1 IS NULL OR q0.scope = ?1) AND (?2 IS NULL OR q0.run_id = ?2) AND q0.time_ns >= ?3"
	"  GROUP BY q0.scope, q0.qname"
	"  HAVING NOT EXISTS (SELECT 1 FROM connections x WHERE x.domain = q0.qname"
	"   AND x.scope = q0.scope AND (?2 IS NULL OR x.run_id = ?2) AND x.time_ns >= ?3))"
	" SELECT * FROM ("
	" SELECT g.scope, g.proto, c.addr, g.port, g.attempts, g.processes, g.verdicts,"
	"        coalesce(p.cmdline, p.comm, ''),"
	"        strftime('%Y-%m-%dT%H:%M:%fZ', g.last_ns / 1e9, 'unixepoch'), g.domains,"
	"        strftime('%Y-%m-%dT%H:%M:%fZ', g.first_ns / 1e9, 'unixepoch'), n.names,"
	CMDLINES_OF("connections", "x.addr_key = g.addr_key AND x.port = g.port"
				   " AND x.scope = g.scope AND x.proto = g.proto") ","
	"        0, g.addr_key, g.port"
	" FROM g JOIN connections c ON c.id = g.first_id LEFT JOIN processes p ON p.id = c.process_id"
	" LEFT JOIN n ON n.scope = g.scope AND n.addr_key = g.addr_key"
	" UNION ALL"
	" SELECT dq.scope, 'dns', NULL, NULL, dq.attempts, dq.processes, dq.verdicts,"
	"        coalesce(p.cmdline, p.comm, ''),"
	"        strftime('%Y-%m-%dT%H:%M:%fZ', dq.last_ns / 1e9, 'unixepoch'), dq.qname,"
	"        strftime('%Y-%m-%dT%H:%M:%fZ', dq.first_ns / 1e9, 'unixepoch'),"
	"        dq.qname" CHAIN_OF("dq") ","
	CMDLINES_OF("dns_queries", "x.qname = dq.qname AND x.scope = dq.scope") ","
	"        1, dq.qname, 0"
	" FROM dq JOIN dns_queries q ON q.id = dq.first_id LEFT JOIN processes p ON p.id = q.process_id)"
	/* Per scope: the destinations connected to, most attempts first, then the names only
	 * looked up. */
	" ORDER BY 1, 14, 5 DESC, 15, 16, 2";

/* CSV field: quoted when it holds a comma, quote or line break. */
void report_csv_field(FILE *out, const char *s, const char *sep)
{
	if (strpbrk(s, ",\"\r\n")) {
		fputc('"', out);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', out);
			fputc(*s, out);
		}
		fputc('"', out);
	} else
		fputs(s, out);
	fputs(sep, out);
}

#define COLS 11  /* the query's columns; the table shows all but last_seen and first_seen */
#define CELLS 12 /* and what the rules say of the destination's names */

int report_cut(const char *s, int max)
{
	int n = (int)strlen(s);

	if (n <= max)
		return n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

/*
 * What the rules say of a name as the queries give it, "name>target>target" (its answer's
 * CNAME chain, for policy_decide_chain): the name alone is left in entry.
 */
static void decide_entry(const struct policy *p, const char *scope, char *entry,
			 struct policy_decision *d)
{
	char *targets = strchr(entry, '>'), *chain;

	if (targets)
		*targets++ = '\0';
	chain = policy_chain_from_text(targets);
	policy_decide_chain(p, scope, entry, chain, d);
	free(chain);
}

/* Whether decision a says more than b: a stronger mode, or the same one named by a rule. */
static int decision_stricter(const struct policy_decision *a, const struct policy_decision *b)
{
	return a->mode > b->mode || (a->mode == b->mode && a->rule[0] && !b->rule[0]);
}

/*
 * What the rules say of a destination, by every name its scope resolved to it, with their
 * CNAME chains (resolved), and the names its connections carried (domains; comma-separated
 * both): the strictest decision, "+shared" when another of its names is not enforced (the
 * address stays reachable unless the agent runs with --shared-address block). "" when no rule
 * speaks of them. A name that comes with several chains (the answer that gave this address,
 * the scope's latest) is what the strictest of them makes it.
 */
static void dest_rule(const struct policy *p, const char *scope, const char *domains,
		      const char *resolved, char *buf, size_t len)
{
	struct policy_decision best = { 0 };
	char *names = NULL, **name = NULL;
	uint8_t *mode = NULL;
	size_t n = 0, max = 1;
	int found = 0, enforced = 0, reachable = 0;

	buf[0] = '\0';
	domains = domains ? domains : "";
	resolved = resolved ? resolved : "";
	if (!p || (!*domains && !*resolved) ||
	    asprintf(&names, "%s,%s", resolved, domains) < 0)
		return;
	for (const char *c = names; *c; c++)
		max += *c == ',';
	name = calloc(max, sizeof(*name));
	mode = calloc(max, sizeof(*mode));
	for (char *save = NULL, *e = name && mode ? strtok_r(names, ",", &save) : NULL; e;
	     e = strtok_r(NULL, ",", &save)) {
		struct policy_decision d;
		size_t i;

		decide_entry(p, scope, e, &d); /* e is now the name alone */
		if (d.rule[0] && (!found || decision_stricter(&d, &best))) {
			best = d;
			found = 1;
		}
		for (i = 0; i < n && strcmp(name[i], e); i++)
			;
		if (i == n) {
			name[n] = e;
			mode[n++] = d.mode;
		} else if (d.mode > mode[i]) {
			mode[i] = d.mode;
		}
	}
	for (size_t i = 0; i < n; i++) {
		enforced += mode[i] == POLICY_ENFORCE;
		reachable += mode[i] != POLICY_ENFORCE;
	}
	free(mode);
	free(name);
	free(names);
	if (found)
		snprintf(buf, len, "%s %s%s", policy_mode_name(best.mode), best.rule,
			 enforced && reachable ? " +shared" : "");
}

/* The table is printed once every row is known, so columns fit their longest value. */
struct table {
	char **cells; /* CELLS per row */
	size_t rows, cap;
	int w_scope, w_addr, w_domain, w_rule, w_verdicts;
	int shared, loopback;
};

/* An ISO time of the store as a table shows it: "2026-12-04 14:02:07" (UTC). */
static const char *table_time(const char *iso, char buf[20])
{
	if (strlen(iso) < 19)
		return "-";
	snprintf(buf, 20, "%.10s %.8s", iso, iso + 11);
	return buf;
}

static int is_loopback(const char *addr)
{
	return !strncmp(addr, "127.", 4) || !strcmp(addr, "::1");
}

static void widen(int *w, const char *s)
{
	if ((int)strlen(s) > *w)
		*w = (int)strlen(s);
}

static int table_add(struct table *t, sqlite3_stmt *st, const char *rule)
{
	char **row;

	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **c = realloc(t->cells, cap * CELLS * sizeof(*c));

		if (!c)
			return -ENOMEM;
		t->cells = c;
		t->cap = cap;
	}
	row = &t->cells[t->rows * CELLS];
	memset(row, 0, CELLS * sizeof(*row));
	t->rows++; /* counted now: table_free frees what was made of it */
	for (int i = 0; i < COLS; i++) {
		const char *v = (const char *)sqlite3_column_text(st, i);

		v = v ? v : "";
		if (i == 7) { /* only what is shown of a command line is kept */
			int n = report_cut(v, REPORT_CMDLINE_SHOWN);

			if (asprintf(&row[i], "%.*s%s", n, v, v[n] ? "..." : "") < 0)
				row[i] = NULL;
		} else
			row[i] = strdup(v);
		if (!row[i])
			return -ENOMEM;
	}
	row[11] = strdup(rule[0] ? rule : "-");
	if (!row[11])
		return -ENOMEM;
	widen(&t->w_scope, row[0]);
	widen(&t->w_addr, row[2]);
	widen(&t->w_domain, row[9]);
	widen(&t->w_rule, row[11]);
	widen(&t->w_verdicts, row[6]);
	t->shared |= strstr(rule, "+shared") != NULL;
	t->loopback |= !strncmp(rule, "enforce ", 8) && is_loopback(row[2]);
	return 0;
}

static void table_print(const struct table *t, FILE *out)
{
	fprintf(out, "%-*s %-*s %-5s %-*s %5s %8s %5s %-*s %-19s %-19s %-*s %s\n", t->w_scope,
		"SCOPE", t->w_domain, "DOMAIN", "PROTO", t->w_addr, "ADDRESS", "PORT", "ATTEMPTS",
		"PROCS", t->w_verdicts, "VERDICTS", "FIRST SEEN (UTC)", "LAST SEEN (UTC)", t->w_rule,
		"RULE", "FIRST PROCESS");
	for (size_t r = 0; r < t->rows; r++) {
		char **c = &t->cells[r * CELLS], first[20], last[20];

		fprintf(out, "%-*s %-*s %-5s %-*s %5s %8s %5s %-*s %-19s %-19s %-*s %s\n", t->w_scope,
			c[0], t->w_domain, c[9][0] ? c[9] : "-", c[1], t->w_addr, c[2][0] ? c[2] : "-",
			c[3][0] ? c[3] : "-", c[4],
			c[5], t->w_verdicts, c[6], table_time(c[10], first), table_time(c[8], last),
			t->w_rule, c[11], c[7]);
	}
	if (t->shared)
		fputs("+shared: a name that may be reached resolved to this address too: it stays "
		      "reachable (the agent's --shared-address block refuses it)\n", out);
	if (t->loopback)
		fputs("an enforced name's loopback address stays reachable unless the agent (or run) "
		      "has --enforce-loopback: the host's own services are not cut off\n", out);
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->rows * CELLS; i++)
		free(t->cells[i]);
	free(t->cells);
}

/*
 * A JSON string, escaped as RFC 8259 asks; an ill-formed UTF-8 subpart (a command line may
 * hold any bytes) as \ufffd, so that the output stays JSON.
 */
static void json_str(FILE *out, const char *s)
{
	size_t n = s ? strlen(s) : 0, k, bad;
	const unsigned char *u = (const unsigned char *)s;

	fputc('"', out);
	for (size_t i = 0; i < n; i += k) {
		unsigned char c = u[i];

		k = 1;
		if (c == '"' || c == '\\') {
			fprintf(out, "\\%c", c);
		} else if (c < 0x20) {
			fprintf(out, "\\u%04x", c);
		} else if (c < 0x80) {
			fputc(c, out);
		} else if ((k = utf8_next(u + i, n - i, &bad))) {
			fwrite(u + i, 1, k, out);
		} else {
			fputs("\\ufffd", out);
			k = bad;
		}
	}
	fputc('"', out);
}

/* A list of the store, its items separated by sep (names, verdicts: ','), as a JSON array. */
static void json_list_sep(FILE *out, const char *s, char sep)
{
	const char seps[2] = { sep, '\0' };

	fputc('[', out);
	for (int first = 1; s && *s; first = 0) {
		size_t n = strcspn(s, seps);
		char *item = strndup(s, n);

		if (!first)
			fputs(", ", out);
		json_str(out, item ? item : "");
		free(item);
		s += n + (s[n] == sep);
	}
	fputc(']', out);
}

static void json_list(FILE *out, const char *s)
{
	json_list_sep(out, s, ',');
}

/* What separates the command lines of a destination in the query's column (char(31)). */
#define CMDLINES_SEP '\x1f'

static void csv_row(FILE *out, sqlite3_stmt *st, const char *rule)
{
	char *json = NULL;
	size_t len = 0;
	FILE *j;

	for (int i = 0; i < COLS; i++) {
		const char *v = (const char *)sqlite3_column_text(st, i);

		report_csv_field(out, v ? v : "", ",");
	}
	report_csv_field(out, rule, ",");
	/* The command lines as the JSON array json gives: a command line may hold any byte. */
	j = open_memstream(&json, &len);
	if (j) {
		json_list_sep(j, (const char *)sqlite3_column_text(st, COL_CMDLINES), CMDLINES_SEP);
		if (fclose(j) != 0) {
			free(json);
			json = NULL;
		}
	}
	report_csv_field(out, json ? json : "[]", "\n");
	free(json);
}

static void json_row(FILE *out, sqlite3_stmt *st, const char *rule, int first)
{
	static const char *const names[COLS] = { "scope", "proto", "addr", "port", "attempts",
						 "processes", "verdicts", "first_cmdline",
						 "last_seen", "domains", "first_seen" };

	fputs(first ? "\n  {" : ",\n  {", out);
	for (int i = 0; i < COLS; i++) {
		fprintf(out, "\"%s\": ", names[i]);
		if ((i == 2 || i == 3) && sqlite3_column_type(st, i) == SQLITE_NULL)
			fputs("null", out); /* a name only looked up: no address, no port */
		else if (i == 3 || i == 4 || i == 5)
			fprintf(out, "%lld", (long long)sqlite3_column_int64(st, i));
		else if (i == 6 || i == 9)
			json_list(out, (const char *)sqlite3_column_text(st, i));
		else
			json_str(out, (const char *)sqlite3_column_text(st, i));
		fputs(", ", out);
	}
	fputs("\"rule\": ", out);
	json_str(out, rule);
	fputs(", \"cmdlines\": ", out);
	json_list_sep(out, (const char *)sqlite3_column_text(st, COL_CMDLINES), CMDLINES_SEP);
	fputc('}', out);
}

int report_deps(sqlite3 *db, const struct report_filter *f, const struct policy *p,
		enum report_format fmt, FILE *out)
{
	struct table t = { .w_scope = 5, .w_addr = 7, .w_domain = 6, .w_rule = 4, .w_verdicts = 8 };
	sqlite3_stmt *st;
	int n = 0, rc, r = 0;

	if (sqlite3_prepare_v2(db, deps_sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	if (f->scope)
		sqlite3_bind_text(st, 1, f->scope, -1, SQLITE_STATIC);
	if (f->run_id > 0)
		sqlite3_bind_int64(st, 2, f->run_id);
	sqlite3_bind_int64(st, 3, f->since_ns);
	sqlite3_bind_int(st, 4, fmt != REPORT_TABLE);
	if (fmt == REPORT_CSV)
		fputs("scope,proto,addr,port,attempts,processes,verdicts,first_cmdline,last_seen,domain,"
		      "first_seen,rule,cmdlines\n", out);
	else if (fmt == REPORT_JSON)
		fputc('[', out);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char rule[512];

		if (f->limit && ++n > f->limit)
			continue; /* counted, not shown */
		if (!f->limit)
			n++;
		dest_rule(p, (const char *)sqlite3_column_text(st, 0),
			  (const char *)sqlite3_column_text(st, 9),
			  (const char *)sqlite3_column_text(st, COLS), rule, sizeof(rule));
		if (fmt == REPORT_CSV)
			csv_row(out, st, rule);
		else if (fmt == REPORT_JSON)
			json_row(out, st, rule, n == 1);
		else if (r == 0)
			r = table_add(&t, st, rule);
	}
	sqlite3_finalize(st);
	if (fmt == REPORT_JSON)
		fputs(n ? "\n]\n" : "]\n", out);
	if (fmt == REPORT_TABLE && t.rows > 0 && r == 0)
		table_print(&t, out);
	table_free(&t);
	if (r < 0)
		return r;
	return rc == SQLITE_DONE ? n : -EIO;
}

void report_dns_summary(sqlite3 *db, int64_t run_id, FILE *out)
{
	static const char totals_sql[] =
		"SELECT count(*), count(DISTINCT qname),"
		" count(*) FILTER (WHERE rcode IS NULL OR rcode NOT IN ('NOERROR'))"
		" FROM dns_queries WHERE run_id = ?1";
	static const char failed_sql[] =
		"SELECT qname || ' ' || qtype, group_concat(DISTINCT coalesce(rcode, 'no answer'))"
		" FROM dns_queries WHERE run_id = ?1 AND (rcode IS NULL OR rcode <> 'NOERROR')"
		" GROUP BY qname, qtype ORDER BY min(id) LIMIT 5";
	sqlite3_stmt *st;
	int64_t queries = 0, names = 0, failed = 0;
	const char *sep = ": ";

	if (sqlite3_prepare_v2(db, totals_sql, -1, &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(st, 1, run_id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		queries = sqlite3_column_int64(st, 0);
		names = sqlite3_column_int64(st, 1);
		failed = sqlite3_column_int64(st, 2);
	}
	sqlite3_finalize(st);
	if (queries == 0)
		return;
	fprintf(out, "DNS: %lld quer%s for %lld name%s, %lld without an answer", (long long)queries,
		queries == 1 ? "y" : "ies", (long long)names, names == 1 ? "" : "s", (long long)failed);
	if (failed && sqlite3_prepare_v2(db, failed_sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, run_id);
		while (sqlite3_step(st) == SQLITE_ROW) {
			fprintf(out, "%s%s (%s)", sep, sqlite3_column_text(st, 0),
				sqlite3_column_text(st, 1));
			sep = ", ";
		}
		sqlite3_finalize(st);
	}
	fputc('\n', out);
}

int64_t report_lost_between(sqlite3 *db, int64_t from_ns, int64_t to_ns)
{
	/* Per source and reason: the last value by to_ns minus the last value before from_ns. */
	static const char sql[] =
		"SELECT coalesce(sum(hi - lo), 0) FROM ("
		"  SELECT (SELECT value FROM stats s2 WHERE s2.source = s.source AND s2.name = s.name"
		"          AND s2.time_ns <= ?2 ORDER BY time_ns DESC LIMIT 1) AS hi,"
		"         coalesce((SELECT value FROM stats s3 WHERE s3.source = s.source"
		"          AND s3.name = s.name AND s3.time_ns < ?1 ORDER BY time_ns DESC LIMIT 1), 0) AS lo"
		"  FROM stats s WHERE s.name LIKE 'events_lost_%' AND s.time_ns <= ?2"
		"  GROUP BY s.source, s.name)";
	sqlite3_stmt *st;
	int64_t v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, from_ns);
	sqlite3_bind_int64(st, 2, to_ns);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* ---- what the rules break -------------------------------------------------------------- */

/* The names of one scope that one rule (or a scope default) decides. */
struct rule_group {
	char scope[65];
	char rule[256];
	uint8_t mode;
	char *names;  /* a JSON array, for json_each() */
	size_t n_names;
};

/* Every group, as many as there are (a thousand rules may each stop something). */
struct groups {
	struct rule_group *g;
	size_t n, cap;
};

static int group_add_name(struct rule_group *g, const char *name)
{
	char *grown;
	size_t len = g->names ? strlen(g->names) : 0;

	/* Names are lowercase DNS text: [a-z0-9._-] and \DDD escapes, whose backslash JSON doubles. */
	grown = realloc(g->names, len + 2 * strlen(name) + 4);
	if (!grown)
		return -ENOMEM;
	g->names = grown;
	if (len == 0)
		g->names[len++] = '[';
	else
		g->names[len - 1] = ',';
	g->names[len++] = '"';
	for (const char *c = name; *c; c++) {
		if (*c == '"' || *c == '\\')
			g->names[len++] = '\\';
		g->names[len++] = *c;
	}
	memcpy(g->names + len, "\"]", 3);
	g->n_names++;
	return 0;
}

/* The group of scope and decision d, made if there is none yet; NULL without memory. */
static struct rule_group *group_of(struct groups *gs, const char *scope,
				   const struct policy_decision *d)
{
	struct rule_group *g;

	for (size_t i = 0; i < gs->n; i++) {
		g = &gs->g[i];
		if (!strcmp(g->scope, scope) && !strcmp(g->rule, d->rule) && g->mode == d->mode)
			return g;
	}
	if (gs->n == gs->cap) {
		size_t cap = gs->cap ? gs->cap * 2 : 16;

		g = realloc(gs->g, cap * sizeof(*g));
		if (!g)
			return NULL;
		gs->g = g;
		gs->cap = cap;
	}
	g = &gs->g[gs->n++];
	memset(g, 0, sizeof(*g));
	snprintf(g->scope, sizeof(g->scope), "%s", scope);
	snprintf(g->rule, sizeof(g->rule), "%s", d->rule);
	g->mode = d->mode;
	return g;
}

/* A name in the group of its decision, if a rule or default would stop it. */
static int group_put(struct groups *gs, const char *scope, const char *name,
		     const struct policy_decision *d)
{
	struct rule_group *grp;

	if (!name || d->mode == POLICY_ALLOW)
		return 0;
	grp = group_of(gs, scope, d);
	return grp ? group_add_name(grp, name) : -ENOMEM;
}

/* Every name the filtered scopes looked up or connected to, and what rule decides it. */
static int groups_collect(sqlite3 *db, const struct report_filter *f, const struct policy *p,
			  struct groups *gs)
{
	static const char sql[] =
		/* Each name with the chain of its latest answer (a refusal keeps its chain). */
		"WITH l AS (SELECT scope, qname,"
		"   coalesce(max(CASE WHEN answers > 0 THEN id END), max(id)) AS id FROM dns_queries"
		"  WHERE process_id IS NOT NULL" NAME_EXISTS
		"   AND (?1 IS NULL OR scope = ?1) AND (?2 IS NULL OR run_id = ?2) AND time_ns >= ?3"
		"  GROUP BY scope, qname),"
		/* And the names connections carried, with the chain of the scope's latest answer. */
		" k AS (SELECT DISTINCT scope, domain FROM connections WHERE domain IS NOT NULL"
		"   AND (?1 IS NULL OR scope = ?1) AND (?2 IS NULL OR run_id = ?2) AND time_ns >= ?3)"
		" SELECT scope, qname, qname" CHAIN_OF("l") " FROM l"
		" UNION"
		" SELECT k.scope, k.domain, k.domain || coalesce((SELECT '>' || group_concat(c.value, '>')"
		"  FROM dns_answers c WHERE c.type = 'CNAME' AND c.query_id = (SELECT max(q.id)"
		"   FROM dns_queries q WHERE q.qname = k.domain AND q.scope = k.scope AND q.answers > 0)),"
		"  '') FROM k"
		" ORDER BY 1, 2";
	struct policy_decision d, pd;
	char *pscope = NULL, *pname = NULL;
	sqlite3_stmt *st;
	int rc, r = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	if (f->scope)
		sqlite3_bind_text(st, 1, f->scope, -1, SQLITE_STATIC);
	if (f->run_id > 0)
		sqlite3_bind_int64(st, 2, f->run_id);
	sqlite3_bind_int64(st, 3, f->since_ns);
	/* A name may come with two chains (its latest lookup's, its connections'): its rows are
	 * next to each other, and the strictest decision of them is the name's. */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *scope = (const char *)sqlite3_column_text(st, 0);
		const char *entry = (const char *)sqlite3_column_text(st, 2);
		char *name = entry ? strdup(entry) : NULL;

		if (!name || !scope) {
			free(name);
			r = -ENOMEM;
			break;
		}
		decide_entry(p, scope, name, &d);
		if (pname && !strcmp(pscope, scope) && !strcmp(pname, name)) {
			if (decision_stricter(&d, &pd))
				pd = d;
			free(name);
			continue;
		}
		r = group_put(gs, pscope, pname, &pd);
		free(pscope);
		free(pname);
		pscope = strdup(scope);
		pname = name;
		pd = d;
		if (r < 0 || !pscope)
			break;
	}
	if (rc == SQLITE_DONE)
		r = group_put(gs, pscope, pname, &pd);
	free(pscope);
	free(pname);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE && r == 0 ? 0 : r < 0 ? r : -EIO;
}

/* One line on a group: how many processes depended on its names, and the last one. */
static void group_print(sqlite3 *db, const struct report_filter *f, const struct rule_group *g,
			FILE *out)
{
	static const char sql[] =
		"WITH e AS ("
		"  SELECT process_id, time_ns, run_id FROM connections WHERE scope = ?4"
		"   AND domain IN (SELECT value FROM json_each(?5))"
		"   AND (?2 IS NULL OR run_id = ?2) AND time_ns >= ?3"
		"  UNION ALL"
		"  SELECT process_id, time_ns, run_id FROM dns_queries WHERE scope = ?4"
		"   AND process_id IS NOT NULL" NAME_EXISTS
		"   AND qname IN (SELECT value FROM json_each(?5))"
		"   AND (?2 IS NULL OR run_id = ?2) AND time_ns >= ?3)"
		" SELECT count(DISTINCT process_id),"
		"  strftime('%Y-%m-%d %H:%M:%S', max(time_ns) / 1e9, 'unixepoch'),"
		"  (SELECT coalesce(p.cmdline, p.comm, '') FROM e JOIN processes p ON p.id = e.process_id"
		"   ORDER BY e.time_ns DESC LIMIT 1),"
		/* The run of that last one: what the operator started, a script more often than not. */
		"  (SELECT r.id || ' ' || r.command FROM e JOIN runs r ON r.id = e.run_id"
		"   ORDER BY e.time_ns DESC LIMIT 1)"
		" FROM e";
	sqlite3_stmt *st;
	const char *verb = g->mode == POLICY_ENFORCE ? "breaks" : "would break";

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return;
	if (f->run_id > 0)
		sqlite3_bind_int64(st, 2, f->run_id);
	sqlite3_bind_int64(st, 3, f->since_ns);
	sqlite3_bind_text(st, 4, g->scope, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, g->names, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		int64_t procs = sqlite3_column_int64(st, 0);
		const char *last = (const char *)sqlite3_column_text(st, 1);
		const char *cmd = (const char *)sqlite3_column_text(st, 2);
		const char *run = (const char *)sqlite3_column_text(st, 3);
		int cut = report_cut(cmd ? cmd : "", REPORT_CMDLINE_SHOWN);
		const char *run_cmd = run ? strchr(run, ' ') : NULL;

		fprintf(out, "  %-8s %-32s %-16s %s: %lld process%s, last at %s UTC, `%.*s%s`",
			policy_mode_name(g->mode), g->rule, g->scope, verb, (long long)procs,
			procs == 1 ? "" : "es", last ? last : "-", cut, cmd ? cmd : "",
			cmd && cmd[cut] ? "..." : "");
		if (run_cmd) {
			int rcut = report_cut(run_cmd + 1, REPORT_CMDLINE_SHOWN);

			fprintf(out, " in run %.*s `%.*s%s`", (int)(run_cmd - run), run, rcut,
				run_cmd + 1, run_cmd[1 + rcut] ? "..." : "");
		}
		fputc('\n', out);
	}
	sqlite3_finalize(st);
}

int report_rules(sqlite3 *db, const struct report_filter *f, const struct policy *p, FILE *out)
{
	struct groups gs = { 0 };
	int r;

	r = groups_collect(db, f, p, &gs);
	if (r == 0 && gs.n > 0) {
		int monitored = 0;

		for (size_t i = 0; i < gs.n; i++)
			monitored |= gs.g[i].mode == POLICY_MONITOR;
		fprintf(out, "What the rules stop%s:\n",
			monitored ? " (monitor: what would break once enforced)" : "");
		for (size_t i = 0; i < gs.n; i++)
			group_print(db, f, &gs.g[i], out);
	}
	for (size_t i = 0; i < gs.n; i++)
		free(gs.g[i].names);
	free(gs.g);
	return r < 0 ? r : (int)gs.n;
}
