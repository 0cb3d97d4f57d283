// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "report.h"

static const char deps_sql[] =
	"WITH g AS ("
	"  SELECT scope, proto, addr_key, port, count(*) AS attempts, min(id) AS first_id,"
	"         count(DISTINCT process_id) AS processes, group_concat(DISTINCT verdict) AS verdicts,"
	"         max(time_ns) AS last_ns"
	"  FROM connections"
	"  WHERE (?1 IS NULL OR scope = ?1) AND (?2 IS NULL OR run_id = ?2) AND time_ns >= ?3"
	"  GROUP BY scope, proto, addr_key, port)"
	" SELECT g.scope, g.proto, c.addr, g.port, g.attempts, g.processes, g.verdicts,"
	"        coalesce(p.cmdline, p.comm, ''),"
	"        strftime('%Y-%m-%dT%H:%M:%SZ', g.last_ns / 1e9, 'unixepoch')"
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

static void print_row(FILE *out, enum report_format fmt, sqlite3_stmt *st)
{
	const char *col[9];

	for (int i = 0; i < 9; i++) {
		col[i] = (const char *)sqlite3_column_text(st, i);
		if (!col[i])
			col[i] = "";
	}
	if (fmt == REPORT_CSV) {
		for (int i = 0; i < 9; i++)
			csv_field(out, col[i], i == 8 ? "\n" : ",");
		return;
	}
	fprintf(out, "%-12.12s %-5s %-39s %5s %8s %5s %-12s %.70s\n", col[0], col[1], col[2],
		col[3], col[4], col[5], col[6], col[7]);
}

int report_deps(sqlite3 *db, const struct report_filter *f, enum report_format fmt, FILE *out)
{
	sqlite3_stmt *st;
	int n = 0, rc;

	if (sqlite3_prepare_v2(db, deps_sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	if (f->scope)
		sqlite3_bind_text(st, 1, f->scope, -1, SQLITE_STATIC);
	if (f->run_id > 0)
		sqlite3_bind_int64(st, 2, f->run_id);
	sqlite3_bind_int64(st, 3, f->since_ns);
	if (fmt == REPORT_CSV)
		fputs("scope,proto,addr,port,attempts,processes,verdicts,first_cmdline,last_seen\n", out);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n++ == 0 && fmt == REPORT_TABLE)
			fprintf(out, "%-12s %-5s %-39s %5s %8s %5s %-12s %s\n", "SCOPE", "PROTO",
				"ADDRESS", "PORT", "ATTEMPTS", "PROCS", "VERDICTS", "FIRST PROCESS");
		if (!f->limit || n <= f->limit)
			print_row(out, fmt, st);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? n : -EIO;
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
