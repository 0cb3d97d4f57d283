// SPDX-License-Identifier: MIT
/* nettrail deps, events and prune: read and tidy the store. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cmd.h"
#include "log.h"
#include "parse.h"
#include "policy.h"
#include "report.h"
#include "rules.h"
#include "store.h"

static const char deps_usage[] =
	"usage: nettrail deps [OPTIONS]\n"
	"\n"
	"Prints what was reached, one line per scope and destination (and per name only looked\n"
	"up: PROTO dns): the names the scope resolved to it, protocol, address, port, attempts,\n"
	"distinct processes, verdicts, the rule that decides its names and the command line of\n"
	"the first process (csv and json: up to 10 distinct command lines). Then, for each rule\n"
	"that would block or blocks something, what it stops: how many processes, the last one\n"
	"and when (`nettrail policy` sets the rules).\n"
	"\n"
	"  -s, --scope NAME    only this scope\n"
	"  -r, --run ID        only this run\n"
	"      --since AGE     only what happened in the last AGE (30m, 7d)\n"
	"  -f, --format FMT    table (default), csv or json (destinations only)\n"
	"  -d, --db PATH       database (default $NETTRAIL_DB, else " DEFAULT_DB ")\n"
	"  -h, --help          this text\n"
	"\n"
	"Exit status: 0, 1 if the database cannot be read, 2 for a bad command line.\n";

static const char events_usage[] =
	"usage: nettrail events [OPTIONS]\n"
	"\n"
	"Prints the most recent connection events, newest last.\n"
	"\n"
	"  -s, --scope NAME    only this scope\n"
	"  -r, --run ID        only this run\n"
	"  -n, --limit N       at most N events (default 50, at most 1000000)\n"
	"  -d, --db PATH       database (default $NETTRAIL_DB, else " DEFAULT_DB ")\n"
	"  -h, --help          this text\n"
	"\n"
	"Exit status: 0, 1 if the database cannot be read, 2 for a bad command line.\n";

struct query_args {
	const char *db;
	struct report_filter f;
	enum report_format fmt;
	uint64_t limit;
};

static int64_t now_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* deps takes --format, events --limit: each command accepts only the options it uses. */
static int query_parse(int argc, char **argv, struct query_args *q, const char *usage,
		       int is_events)
{
	static const struct option deps_opts[] = {
		{ "scope", required_argument, NULL, 's' },
		{ "run", required_argument, NULL, 'r' },
		{ "format", required_argument, NULL, 'f' },
		{ "since", required_argument, NULL, 'S' },
		{ "db", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const struct option events_opts[] = {
		{ "scope", required_argument, NULL, 's' },
		{ "run", required_argument, NULL, 'r' },
		{ "limit", required_argument, NULL, 'n' },
		{ "db", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t v;
	int c;

	q->db = db_path_default();
	q->limit = 50;
	while ((c = getopt_long(argc, argv, is_events ? "s:r:n:d:h" : "s:r:f:d:h",
				is_events ? events_opts : deps_opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_scope(optarg) < 0) {
				log_err("bad scope '%s'", optarg);
				return EXIT_USAGE;
			}
			q->f.scope = optarg;
			break;
		case 'r':
			if (parse_u64(optarg, 1, INT64_MAX, &v) < 0) {
				log_err("bad run id '%s'", optarg);
				return EXIT_USAGE;
			}
			q->f.run_id = (int64_t)v;
			break;
		case 'f':
			if (!strcmp(optarg, "table"))
				q->fmt = REPORT_TABLE;
			else if (!strcmp(optarg, "csv"))
				q->fmt = REPORT_CSV;
			else if (!strcmp(optarg, "json"))
				q->fmt = REPORT_JSON;
			else {
				log_err("bad format '%s': table, csv or json", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'S':
			if (parse_since(optarg, &q->f.since_ns) < 0) {
				log_err("bad --since '%s': an age such as 30m, 12h or 7d", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'n':
			if (parse_u64(optarg, 1, 1000000, &q->limit) < 0) {
				log_err("bad limit '%s': 1 to 1000000", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd': q->db = optarg; break;
		case 'h': fputs(usage, stdout); exit(EXIT_OK);
		default: fprintf(stderr, "Try '%s --help'.\n", argv[0]); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		log_err("unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	return 0;
}

int cmd_deps(int argc, char **argv)
{
	struct query_args q = { 0 };
	struct policy *p = NULL;
	struct store *st;
	int r;

	r = query_parse(argc, argv, &q, deps_usage, 0);
	if (r)
		return r;
	r = db_open_readonly(q.db, &st);
	if (r)
		return r;
	r = rules_load(st, &p);
	if (r == 0)
		r = report_deps(store_db(st), &q.f, p, q.fmt, stdout);
	if (r >= 0 && q.fmt == REPORT_TABLE) {
		int n = r;

		if (n == 0)
			fprintf(stderr, "no destinations recorded%s%s\n",
				q.f.scope ? " for scope " : "", q.f.scope ? q.f.scope : "");
		r = report_rules(store_db(st), &q.f, p, stdout);
		if (r > 0 && n > 0)
			r = 0;
	}
	if (r < 0)
		log_err("failed to read %s: %s", q.db, store_errmsg(st));
	policy_unref(p);
	store_close(st);
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}

static const char events_sql[] =
	"SELECT * FROM (SELECT c.id, c.time, c.scope, coalesce(c.run_id, ''), coalesce(p.pid, ''), c.proto,"
	"  c.addr, c.port, c.verdict, coalesce(p.cmdline, p.comm, ''), coalesce(c.domain, '-')"
	" FROM connections c LEFT JOIN processes p ON p.id = c.process_id"
	" WHERE (?1 IS NULL OR c.scope = ?1) AND (?2 IS NULL OR c.run_id = ?2)"
	" ORDER BY c.id DESC LIMIT ?3) ORDER BY 1";

int cmd_events(int argc, char **argv)
{
	struct query_args q = { 0 };
	sqlite3_stmt *stmt;
	struct store *st;
	int r, rc;

	r = query_parse(argc, argv, &q, events_usage, 1);
	if (r)
		return r;
	r = db_open_readonly(q.db, &st);
	if (r)
		return r;
	if (sqlite3_prepare_v2(store_db(st), events_sql, -1, &stmt, NULL) != SQLITE_OK) {
		log_err("failed to read %s: %s", q.db, store_errmsg(st));
		store_close(st);
		return EXIT_FAIL;
	}
	if (q.f.scope)
		sqlite3_bind_text(stmt, 1, q.f.scope, -1, SQLITE_STATIC);
	if (q.f.run_id)
		sqlite3_bind_int64(stmt, 2, q.f.run_id);
	sqlite3_bind_int64(stmt, 3, (int64_t)q.limit);
	printf("%-8s %-24s %-12s %-5s %-7s %-5s %-15s %5s %-20s %-11s %s\n", "ID", "TIME", "SCOPE",
	       "RUN", "PID", "PROTO", "ADDRESS", "PORT", "DOMAIN", "VERDICT", "COMMAND");
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *cmd = (const char *)sqlite3_column_text(stmt, 9);
		int n = report_cut(cmd, REPORT_CMDLINE_SHOWN);

		/* Columns grow for long scopes and addresses rather than cut them. */
		printf("%-8s %-24s %-12s %-5s %-7s %-5s %-15s %5s %-20s %-11s %.*s%s\n",
		       sqlite3_column_text(stmt, 0), sqlite3_column_text(stmt, 1),
		       sqlite3_column_text(stmt, 2), sqlite3_column_text(stmt, 3),
		       sqlite3_column_text(stmt, 4), sqlite3_column_text(stmt, 5),
		       sqlite3_column_text(stmt, 6), sqlite3_column_text(stmt, 7),
		       sqlite3_column_text(stmt, 10), sqlite3_column_text(stmt, 8), n, cmd,
		       cmd[n] ? "..." : "");
	}
	sqlite3_finalize(stmt);
	store_close(st);
	if (rc != SQLITE_DONE) {
		log_err("failed to read %s", q.db);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static const char prune_usage[] =
	"usage: nettrail prune --older-than DURATION [--db PATH]\n"
	"\n"
	"Deletes the connections recorded more than DURATION ago (30d, 12h, 90m, 2w), then the\n"
	"processes, runs and cgroups left with none, and old counter samples (each counter's last\n"
	"sample stays, so loss totals stay right). Safe while an agent records: it works in small\n"
	"transactions. Freed space is reused by new rows; VACUUM shrinks the file.\n"
	"\n"
	"  -o, --older-than DURATION  what to delete (required)\n"
	"  -d, --db PATH              database (default $NETTRAIL_DB, else " DEFAULT_DB ")\n"
	"  -h, --help                 this text\n"
	"\n"
	"Exit status: 0, 1 if the database cannot be written, 2 for a bad command line.\n";

int cmd_prune(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "older-than", required_argument, NULL, 'o' },
		{ "db", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *db = db_path_default();
	struct prune_counts n;
	int64_t age = -1;
	struct store *st;
	int c, r;

	while ((c = getopt_long(argc, argv, "o:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (parse_duration(optarg, &age) < 0) {
				log_err("bad --older-than '%s': a number and s, m, h, d or w", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'd': db = optarg; break;
		case 'h': fputs(prune_usage, stdout); exit(EXIT_OK);
		default: fprintf(stderr, "Try '%s --help'.\n", argv[0]); return EXIT_USAGE;
		}
	}
	if (age < 0 || optind < argc) {
		log_err(age < 0 ? "--older-than is required" : "unexpected argument");
		return EXIT_USAGE;
	}
	if (access(db, F_OK) < 0) {
		log_err("no database at %s", db);
		return EXIT_FAIL;
	}
	if (db_open(db, &st) < 0)
		return EXIT_FAIL;
	r = store_prune(st, now_wall_ns() - age, &n);
	if (r < 0)
		log_err("failed to prune %s: %s", db, store_errmsg(st));
	else
		printf("deleted %lld connections, %lld DNS queries, %lld processes, %lld runs, "
		       "%lld cgroups, %lld counter samples\n", (long long)n.connections,
		       (long long)n.dns_queries, (long long)n.processes, (long long)n.runs,
		       (long long)n.cgroups, (long long)n.stats);
	store_close(st);
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}
