// SPDX-License-Identifier: MIT
/* nettrail policy: the rules that turn an attempt into allowed, would_block or blocked. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sqlite3.h>
#include "cmd.h"
#include "log.h"
#include "parse.h"
#include "policy.h"
#include "report.h"
#include "rules.h"
#include "runtime.h"
#include "store.h"
#include "suggest.h"

static const char policy_usage[] =
	"usage: nettrail policy COMMAND [OPTIONS]\n"
	"\n"
	"Rules decide, per domain, what happens to the watched scopes' lookups:\n"
	"  monitor  recorded as would_block, nothing is blocked (what `add` makes by default)\n"
	"  enforce  lookups of the names it matches are refused (NXDOMAIN), and connects to\n"
	"           their addresses (EPERM); recorded as blocked\n"
	"  allow    recorded as allowed, also under an enforcing scope default\n"
	"A running agent applies a change within a second, without a restart.\n"
	"\n"
	"commands:\n"
	"  add PATTERN [--mode MODE] [--note TEXT]   a new rule (default mode: monitor)\n"
	"  set PATTERN --mode MODE [--note TEXT]     change a rule's mode\n"
	"  rm PATTERN [--note TEXT]                  remove a rule\n"
	"  ls [--format table|csv]                   list the rules and scope defaults\n"
	"  default [MODE]                            show or set what applies where no rule\n"
	"                                            matches (out of the box: allow)\n"
	"  history [-n N]                            every change: when, who, old and new mode\n"
	"                                            (with --scope: its own and every scope's)\n"
	"  suggest [--since AGE] [--apply]           the allow rules a lock-down needs for what\n"
	"                                            the scope was seen doing; --apply adds them\n"
	"\n"
	"PATTERN: github.com matches it and every subdomain; =github.com only itself. Names are\n"
	"lowercased, a trailing dot dropped; internationalised names in their xn-- form.\n"
	"\n"
	"options:\n"
	"  -s, --scope NAME    the rule is for this scope only (default: every scope); ls,\n"
	"                      history, suggest: that scope's\n"
	"  -m, --mode MODE     monitor, enforce or allow\n"
	"      --note TEXT     why: kept with the rule and in the history\n"
	"  -f, --format FMT    ls: table (default) or csv\n"
	"  -n, --limit N       history: the last N changes (default 50)\n"
	"      --since AGE     suggest: only what was seen in the last AGE (30m, 7d)\n"
	"      --apply         suggest: add the rules it prints, all in one change\n"
	"  -d, --db PATH       database (default $NETTRAIL_DB, else " DEFAULT_DB ")\n"
	"  -h, --help          this text\n"
	"\n"
	"Exit status: 0; 1 if the database cannot be written or read, or the rule does (add) or\n"
	"does not (set, rm) exist; 2 for a bad command line or pattern.\n";

enum { OPT_NOTE = 0x200, OPT_SINCE, OPT_APPLY };

struct policy_args {
	const char *cmd;
	const char *pattern;
	const char *mode_arg;
	const char *db;
	const char *scope; /* "" for every scope */
	const char *note;
	int have_mode;
	uint8_t mode;
	int csv;
	uint64_t limit;
	int64_t since_ns; /* suggest: wall ns; 0: everything */
	int apply;
};

static int policy_opt(int c, const char *arg, struct policy_args *a)
{
	switch (c) {
	case 's':
		if (parse_scope(arg) < 0) {
			log_err("bad scope '%s': use 1-64 of A-Z a-z 0-9 _ . -, not starting with '.'",
				arg);
			return EXIT_USAGE;
		}
		a->scope = arg;
		return 0;
	case 'm':
		if (policy_parse_mode(arg, &a->mode) < 0) {
			log_err("bad mode '%s': monitor, enforce or allow", arg);
			return EXIT_USAGE;
		}
		a->have_mode = 1;
		return 0;
	case OPT_NOTE: a->note = arg; return 0;
	case OPT_APPLY: a->apply = 1; return 0;
	case OPT_SINCE:
		if (parse_since(arg, &a->since_ns) < 0) {
			log_err("bad --since '%s': an age such as 30m, 12h or 7d", arg);
			return EXIT_USAGE;
		}
		return 0;
	case 'd': a->db = arg; return 0;
	case 'f':
		if (strcmp(arg, "table") && strcmp(arg, "csv")) {
			log_err("bad format '%s': table or csv", arg);
			return EXIT_USAGE;
		}
		a->csv = !strcmp(arg, "csv");
		return 0;
	case 'n':
		if (parse_u64(arg, 1, 1000000, &a->limit) < 0) {
			log_err("bad limit '%s': 1 to 1000000", arg);
			return EXIT_USAGE;
		}
		return 0;
	case 'h': fputs(policy_usage, stdout); exit(EXIT_OK);
	}
	fputs("Try 'nettrail policy --help'.\n", stderr);
	return EXIT_USAGE;
}

/* What each command takes besides its options: a pattern, an optional mode, nothing. */
static int policy_positional(struct policy_args *a, int argc, char **argv)
{
	int takes_pattern = !strcmp(a->cmd, "add") || !strcmp(a->cmd, "set") ||
			    !strcmp(a->cmd, "rm");
	int takes_mode = !strcmp(a->cmd, "default");

	if (takes_pattern) {
		if (optind >= argc) {
			log_err("policy %s: which pattern? e.g. github.com or =github.com", a->cmd);
			return EXIT_USAGE;
		}
		a->pattern = argv[optind++];
	} else if (takes_mode && optind < argc) {
		if (policy_parse_mode(argv[optind], &a->mode) < 0) {
			log_err("bad mode '%s': monitor, enforce or allow", argv[optind]);
			return EXIT_USAGE;
		}
		a->have_mode = 1;
		optind++;
	}
	if (optind < argc) {
		log_err("unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	if (!strcmp(a->cmd, "set") && !a->have_mode) {
		log_err("policy set: which mode? --mode monitor, enforce or allow");
		return EXIT_USAGE;
	}
	return 0;
}

static int policy_parse(int argc, char **argv, struct policy_args *a)
{
	static const struct option opts[] = {
		{ "scope", required_argument, NULL, 's' },
		{ "mode", required_argument, NULL, 'm' },
		{ "note", required_argument, NULL, OPT_NOTE },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "apply", no_argument, NULL, OPT_APPLY },
		{ "format", required_argument, NULL, 'f' },
		{ "limit", required_argument, NULL, 'n' },
		{ "db", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static const char *const cmds[] = { "add", "set", "rm", "ls", "default", "history",
					    "suggest" };
	int c, r, known = 0;

	a->db = db_path_default();
	a->scope = "";
	a->limit = 50;
	a->mode = POLICY_MONITOR;
	while ((c = getopt_long(argc, argv, "s:m:f:n:d:h", opts, NULL)) != -1) {
		r = policy_opt(c, optarg, a);
		if (r)
			return r;
	}
	if (optind >= argc) {
		log_err("policy: which command? add, set, rm, ls, default, history or suggest");
		return EXIT_USAGE;
	}
	a->cmd = argv[optind++];
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		known |= !strcmp(a->cmd, cmds[i]);
	if (!known) {
		log_err("policy: unknown command '%s' (add, set, rm, ls, default, history, suggest)",
			a->cmd);
		return EXIT_USAGE;
	}
	return policy_positional(a, argc, argv);
}

static const char *scope_text(const char *scope)
{
	return scope[0] ? scope : "(every scope)";
}

/* Where a change takes effect: the agent's or the next run's. */
/* Runs of this database going on now without an agent: unended, their cgroup still there. */
static int live_embedded_runs(struct store *s)
{
	sqlite3_stmt *st;
	int n = 0;

	if (sqlite3_prepare_v2(store_db(s),
			       "SELECT cgroup FROM runs WHERE mode = 'embedded' AND ended_ns IS NULL",
			       -1, &st, NULL) != SQLITE_OK)
		return 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *cg = (const char *)sqlite3_column_text(st, 0);

		n += cg && access(cg, F_OK) == 0;
	}
	sqlite3_finalize(st);
	return n;
}

/* Where a change takes effect: the agent's, the runs' going on now, or the next ones. */
static void policy_say_applied(const char *db, struct store *s)
{
	char agent_db[4096];
	int runs;

	if (agent_lock_probe(agent_db, sizeof(agent_db)) && db_path_same(agent_db, db)) {
		printf("the running agent applies it within a second\n");
		return;
	}
	runs = live_embedded_runs(s);
	if (runs > 0)
		printf("%d `nettrail run`%s going on now appl%s it within a second\n", runs,
		       runs == 1 ? "" : "s", runs == 1 ? "ies" : "y");
	else
		printf("no agent or run uses this database now: the next one applies it\n");
}

/* set or rm of a pattern with no rule in that scope: where it has one. */
static void policy_hint_scopes(struct store *s, const char *name, uint8_t match, const char *scope)
{
	sqlite3_stmt *st;
	char list[512] = "";
	size_t len = 0;

	if (sqlite3_prepare_v2(store_db(s),
			       "SELECT CASE scope WHEN '' THEN '(every scope)' ELSE '--scope ' || scope END"
			       " FROM rules WHERE name = ?1 AND match = ?2 AND scope <> ?3 ORDER BY scope",
			       -1, &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, match == POLICY_EXACT ? "exact" : "suffix", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, scope, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW && len < sizeof(list) - 1) {
		int n = snprintf(list + len, sizeof(list) - len, "%s%s", len ? ", " : "",
				 (const char *)sqlite3_column_text(st, 0));

		len += n > 0 ? (size_t)n : 0;
	}
	sqlite3_finalize(st);
	if (len)
		log_info("it has a rule in: %s", list);
}

/* A scope nothing was recorded for yet is most likely a typo: said, not refused. */
static void policy_check_scope(struct store *s, const char *scope)
{
	static const char sql[] =
		"SELECT EXISTS (SELECT 1 FROM runs WHERE scope = ?1)"
		" OR EXISTS (SELECT 1 FROM cgroups WHERE scope = ?1)"
		" OR EXISTS (SELECT 1 FROM rules WHERE scope = ?1)"
		" OR EXISTS (SELECT 1 FROM scope_defaults WHERE scope = ?1)";
	sqlite3_stmt *st;

	if (!scope[0] || sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0)
		log_warn("nothing was recorded for scope '%s' yet: if that is a typo, the rule will "
			 "never apply (`nettrail deps` lists the scopes seen)", scope);
	sqlite3_finalize(st);
}

static int policy_change(struct policy_args *a, struct store *s)
{
	char by[128], pattern[POLICY_NAME_MAX + 1], name[POLICY_NAME_MAX];
	struct rule_change c = { .pattern = a->pattern, .scope = a->scope, .mode = a->mode,
				 .note = a->note, .by = by };
	const char *why;
	uint8_t match;
	int old = -1, r;

	rules_actor(by, sizeof(by));
	if (a->pattern) {
		if (policy_parse_pattern(a->pattern, name, &match, &why) < 0) {
			log_err("bad pattern '%s': %s", a->pattern, why);
			return EXIT_USAGE;
		}
		policy_format_pattern(name, match, pattern, sizeof(pattern));
	}
	if (!strcmp(a->cmd, "add") || !strcmp(a->cmd, "default"))
		policy_check_scope(s, a->scope);
	if (!strcmp(a->cmd, "add"))
		r = rules_add(s, &c, NULL);
	else if (!strcmp(a->cmd, "set"))
		r = rules_set(s, &c, &old);
	else if (!strcmp(a->cmd, "rm"))
		r = rules_rm(s, &c, &old);
	else
		r = rules_set_default(s, &c, &old);
	if (r == -EEXIST) {
		log_err("%s already has a rule in %s; change it with `nettrail policy set`", pattern,
			scope_text(a->scope));
		return EXIT_FAIL;
	}
	if (r == -EALREADY) {
		if (!strcmp(a->cmd, "default"))
			printf("default for %s is %s already; nothing changed\n", scope_text(a->scope),
			       policy_mode_name(a->mode));
		else
			printf("%s for %s is %s already; nothing changed\n", pattern,
			       scope_text(a->scope), policy_mode_name(a->mode));
		return EXIT_OK;
	}
	if (r == -ENOENT) {
		log_err("%s has no rule in %s (`nettrail policy ls` lists them)", pattern,
			scope_text(a->scope));
		policy_hint_scopes(s, name, match, a->scope);
		return EXIT_FAIL;
	}
	if (r < 0) {
		log_err("failed to change the rules in %s: %s", a->db,
			r == -EIO ? store_errmsg(s) : strerror(-r));
		return EXIT_FAIL;
	}
	if (!strcmp(a->cmd, "default"))
		printf("default for %s: %s (was %s); ", scope_text(a->scope), policy_mode_name(a->mode),
		       old < 0 ? "allow, unset" : policy_mode_name(old));
	else if (!strcmp(a->cmd, "rm"))
		printf("removed %s (%s) for %s; ", pattern, policy_mode_name(old), scope_text(a->scope));
	else if (old >= 0)
		printf("%s for %s: %s (was %s); ", pattern, scope_text(a->scope),
		       policy_mode_name(a->mode), policy_mode_name(old));
	else
		printf("added %s for %s: %s; ", pattern, scope_text(a->scope), policy_mode_name(a->mode));
	policy_say_applied(a->db, s);
	return EXIT_OK;
}

/*
 * Prints the rows of sql: csv, or a table whose columns have the widths given (the last one
 * unpadded), under a header of the column names; ?1 is bind, ?2 bind2 (when not NULL).
 * -EIO on an SQLite error.
 */
static int print_rows(struct store *s, const char *sql, const char *bind, const char *bind2,
		      const int *widths, int csv)
{
	sqlite3_stmt *st;
	int rc, cols;

	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, bind, -1, SQLITE_STATIC);
	if (bind2)
		sqlite3_bind_text(st, 2, bind2, -1, SQLITE_STATIC);
	cols = sqlite3_column_count(st);
	for (int i = 0; i < cols; i++) {
		if (csv)
			report_csv_field(stdout, sqlite3_column_name(st, i), i == cols - 1 ? "\n" : ",");
		else
			printf("%-*s%s", i == cols - 1 ? 0 : widths[i], sqlite3_column_name(st, i),
			       i == cols - 1 ? "\n" : " ");
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (int i = 0; i < cols; i++) {
			const char *v = (const char *)sqlite3_column_text(st, i);

			if (csv)
				report_csv_field(stdout, v ? v : "", i == cols - 1 ? "\n" : ",");
			else
				printf("%-*s%s", i == cols - 1 ? 0 : widths[i], v ? v : "",
				       i == cols - 1 ? "\n" : " ");
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static int policy_ls(struct policy_args *a, struct store *s)
{
	static const char rules_sql[] =
		"SELECT CASE scope WHEN '' THEN '*' ELSE scope END AS scope, pattern, mode, updated,"
		" updated_by AS by, coalesce(note, '') AS note FROM rules"
		" WHERE ?1 = '' OR scope IN ('', ?1) ORDER BY scope, name, match";
	static const char defaults_sql[] =
		"SELECT CASE scope WHEN '' THEN '*' ELSE scope END AS scope, mode AS default_mode,"
		" strftime('%Y-%m-%dT%H:%M:%fZ', updated_ns / 1e9, 'unixepoch') AS updated, updated_by AS by"
		" FROM scope_defaults WHERE ?1 = '' OR scope IN ('', ?1) ORDER BY scope";
	int r;

	r = print_rows(s, rules_sql, a->scope, NULL, (const int[]){ 16, 32, 8, 24, 24 }, a->csv);
	if (r == 0 && !a->csv) {
		printf("\n");
		r = print_rows(s, defaults_sql, a->scope, NULL, (const int[]){ 16, 12, 24 }, 0);
		printf("(a scope with no default of its own: the one for *, else allow)\n");
	}
	return r;
}

static int policy_history(struct policy_args *a, struct store *s)
{
	static const char sql[] =
		"SELECT * FROM (SELECT time, CASE scope WHEN '' THEN '*' ELSE scope END AS scope,"
		" action, coalesce(pattern, '(default)') AS pattern, coalesce(old_mode, '-') AS old,"
		" coalesce(new_mode, '-') AS new, by, coalesce(note, '') AS note"
		" FROM rule_changes WHERE ?2 = '' OR scope IN ('', ?2)"
		" ORDER BY id DESC LIMIT CAST(?1 AS INTEGER)) ORDER BY time";
	char limit[32];

	snprintf(limit, sizeof(limit), "%llu", (unsigned long long)a->limit);
	return print_rows(s, sql, limit, a->scope, (const int[]){ 24, 16, 7, 32, 8, 8, 28 }, a->csv);
}

static int policy_show_default(struct policy_args *a, struct store *s)
{
	struct policy *p;
	int r = rules_load(s, &p);

	if (r < 0)
		return r;
	printf("default for %s: %s\n", scope_text(a->scope),
	       policy_mode_name(policy_default_mode(p, a->scope)));
	policy_unref(p);
	return 0;
}

static int policy_suggest(struct policy_args *a, struct store *s)
{
	const char *scope = a->scope[0] ? a->scope : NULL;
	struct suggest_result res;
	struct rule_change *c;
	struct policy *p;
	char by[128];
	int r;

	r = rules_load(s, &p);
	if (r < 0)
		return r;
	r = suggest_collect(store_db(s), scope, a->since_ns, p, &res);
	policy_unref(p);
	if (r < 0)
		return r;
	suggest_print(&res, scope, stdout);
	if (!a->apply || res.n_names == 0) {
		if (a->apply)
			printf("nothing to apply\n");
		suggest_free(&res);
		return 0;
	}
	c = calloc(res.n_names, sizeof(*c));
	if (!c) {
		suggest_free(&res);
		return -ENOMEM;
	}
	rules_actor(by, sizeof(by));
	for (size_t i = 0; i < res.n_names; i++) {
		/* The names are normalised already: "=name" is a valid exact pattern. */
		char *pat = malloc(strlen(res.names[i].name) + 2);

		if (pat)
			sprintf(pat, "=%s", res.names[i].name);
		c[i] = (struct rule_change){ .pattern = pat, .scope = a->scope, .mode = POLICY_ALLOW,
					     .note = a->note ? a->note : "policy suggest --apply",
					     .by = by };
		if (!pat)
			r = -ENOMEM;
	}
	if (r == 0)
		r = rules_add_many(s, c, res.n_names);
	for (size_t i = 0; i < res.n_names; i++)
		free((char *)c[i].pattern);
	free(c);
	if (r == 0) {
		printf("added %zu allow rule%s for %s; ", res.n_names, res.n_names == 1 ? "" : "s",
		       scope_text(a->scope));
		policy_say_applied(a->db, s);
	} else {
		log_err("failed to add the suggested rules to %s (none was added): %s", a->db,
			r == -EIO ? store_errmsg(s) : strerror(-r));
		r = EXIT_FAIL;
	}
	suggest_free(&res);
	return r;
}

int cmd_policy(int argc, char **argv)
{
	struct policy_args a = { 0 };
	struct store *s;
	int r, ro;

	r = policy_parse(argc, argv, &a);
	if (r)
		return r;
	ro = !strcmp(a.cmd, "ls") || !strcmp(a.cmd, "history") || !strcmp(a.cmd, "suggest") ||
	     (!strcmp(a.cmd, "default") && !a.have_mode);
	/*
	 * Reading needs a database that exists, and works on a read-only copy; a mistyped --db
	 * must not become a database of its own that nothing reads.
	 */
	if (ro && (!a.apply || access(a.db, F_OK) < 0)) {
		if (db_open_readonly(a.db, &s))
			return EXIT_FAIL;
	} else {
		if (access(a.db, F_OK) < 0 && errno == ENOENT)
			log_warn("no database at %s yet: creating it; a run or agent must use this "
				 "--db to apply these rules", a.db);
		if (db_open(a.db, &s) < 0)
			return EXIT_FAIL;
	}
	if (!ro)
		r = policy_change(&a, s);
	else if (!strcmp(a.cmd, "ls"))
		r = policy_ls(&a, s);
	else if (!strcmp(a.cmd, "history"))
		r = policy_history(&a, s);
	else if (!strcmp(a.cmd, "suggest"))
		r = policy_suggest(&a, s);
	else
		r = policy_show_default(&a, s);
	if (r < 0) {
		log_err("failed to read the rules in %s: %s", a.db, store_errmsg(s));
		r = EXIT_FAIL;
	}
	store_close(s);
	return r;
}
