// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "report.h"

static const char deps_sql[] =
	"WITH g AS ("
	"  SELECT scope, proto, addr_key, port, count(*) AS attempts, min(id) AS first_id,"
	"         count(DISTINCT process_id) AS processes, group_concat(DISTINCT verdict) AS verdicts,"
	"         max(time_ns) AS last_ns, group_concat(DISTINCT domain) AS domains"
	"  FROM connections"
	"  WHERE (?1 IS NULL OR scope = ?1) AND (?2 IS NULL OR run_id = ?2) AND time_ns >= ?3"
	"  GROUP BY scope, proto, addr_key, port)"
	" SELECT g.scope, g.proto, c.addr, g.port, g.attempts, g.processes, g.verdicts,"
	"        coalesce(p.cmdline, p.comm, ''),"
	"        strftime('%Y-%m-%dT%H:%M:%fZ', g.last_ns / 1e9, 'unixepoch'), g.domains"
	" FROM g JOIN connections c ON c.id = g.first_id LEFT JOIN processes p ON p.id = c.process_id"
	" ORDER BY g.scope, g.attempts DESC, g.addr_key, g.port, g.proto";

/* CSV field: quoted when it holds a comma, quote or line break. */
static void csv_field(FILE *out, const char *s, const char *sep)
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

#define COLS 10 /* the query's columns; the table shows all but last_seen */

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

/* The table is printed once every row is known, so columns fit their longest value. */
struct table {
	char **cells; /* COLS per row */
	size_t rows, cap;
	int w_scope, w_addr, w_domain;
};

static int table_add(struct table *t, sqlite3_stmt *st)
{
	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **c = realloc(t->cells, cap * COLS * sizeof(*c));

		if (!c)
			return -ENOMEM;
		t->cells = c;
		t->cap = cap;
	}
	for (int i = 0; i < COLS; i++) {
		const char *v = (const char *)sqlite3_column_text(st, i);
		char **cell = &t->cells[t->rows * COLS + i];

		v = v ? v : "";
		if (i == 7) { /* only what is shown of a command line is kept */
			int n = report_cut(v, REPORT_CMDLINE_SHOWN);

			if (asprintf(cell, "%.*s%s", n, v, v[n] ? "..." : "") < 0)
				*cell = NULL;
		} else
			*cell = strdup(v);
		if (!*cell)
			return -ENOMEM;
	}
	if ((int)strlen(t->cells[t->rows * COLS]) > t->w_scope)
		t->w_scope = (int)strlen(t->cells[t->rows * COLS]);
	if ((int)strlen(t->cells[t->rows * COLS + 2]) > t->w_addr)
		t->w_addr = (int)strlen(t->cells[t->rows * COLS + 2]);
	if ((int)strlen(t->cells[t->rows * COLS + 9]) > t->w_domain)
		t->w_domain = (int)strlen(t->cells[t->rows * COLS + 9]);
	t->rows++;
	return 0;
}

static void table_print(const struct table *t, FILE *out)
{
	fprintf(out, "%-*s %-*s %-5s %-*s %5s %8s %5s %-12s %s\n", t->w_scope, "SCOPE",
		t->w_domain, "DOMAIN", "PROTO", t->w_addr, "ADDRESS", "PORT", "ATTEMPTS", "PROCS",
		"VERDICTS", "FIRST PROCESS");
	for (size_t r = 0; r < t->rows; r++) {
		char **c = &t->cells[r * COLS];

		fprintf(out, "%-*s %-*s %-5s %-*s %5s %8s %5s %-12s %s\n", t->w_scope, c[0],
			t->w_domain, c[9][0] ? c[9] : "-", c[1], t->w_addr, c[2], c[3], c[4], c[5],
			c[6], c[7]);
	}
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->rows * COLS; i++)
		free(t->cells[i]);
	free(t->cells);
}

static void csv_row(FILE *out, sqlite3_stmt *st)
{
	for (int i = 0; i < COLS; i++) {
		const char *v = (const char *)sqlite3_column_text(st, i);

		csv_field(out, v ? v : "", i == COLS - 1 ? "\n" : ",");
	}
}

int report_deps(sqlite3 *db, const struct report_filter *f, enum report_format fmt, FILE *out)
{
	struct table t = { .w_scope = 5, .w_addr = 7, .w_domain = 6 };
	sqlite3_stmt *st;
	int n = 0, rc, r = 0;

	if (sqlite3_prepare_v2(db, deps_sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	if (f->scope)
		sqlite3_bind_text(st, 1, f->scope, -1, SQLITE_STATIC);
	if (f->run_id > 0)
		sqlite3_bind_int64(st, 2, f->run_id);
	sqlite3_bind_int64(st, 3, f->since_ns);
	if (fmt == REPORT_CSV)
		fputs("scope,proto,addr,port,attempts,processes,verdicts,first_cmdline,last_seen,domain\n",
		      out);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (f->limit && ++n > f->limit)
			continue; /* counted, not shown */
		if (!f->limit)
			n++;
		if (fmt == REPORT_CSV)
			csv_row(out, st);
		else if (r == 0)
			r = table_add(&t, st);
	}
	sqlite3_finalize(st);
	if (fmt == REPORT_TABLE && t.rows > 0)
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
