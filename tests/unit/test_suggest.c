// SPDX-License-Identifier: MIT
/*
 * What the rules say of a real store's rows: policy suggest (which allow rules a lock-down
 * needs), and the rule column and "what the rules stop" lines of deps.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "policy.h"
#include "report.h"
#include "rules.h"
#include "store.h"
#include "suggest.h"
#include "tmpdir.h"

struct fixture {
	char dir[256];
	char path[300];
	struct store *s;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	*state = f;
	if (tmpdir_make("suggest", f->dir, sizeof(f->dir), f->path, sizeof(f->path)) < 0 ||
	    store_open(f->path, 0, &f->s) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	store_close(f->s);
	tmpdir_remove(f->dir);
	free(f);
	return 0;
}

static void sql(struct fixture *f, const char *q)
{
	char *err = NULL;

	if (sqlite3_exec(store_db(f->s), q, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", q, err);
}

/*
 * Two processes of scope deploy (and one of scope other): lookups of ci (found), of
 * typo (NXDOMAIN upstream: does not exist), of blocked (NXDOMAIN by a rule: exists, as
 * far as anyone knows), a connect to ci's address and one to an address with no name.
 */
static void fill(struct fixture *f)
{
	sql(f, "INSERT INTO processes (id, pid, start_ns, exec_id, comm, cmdline, cmdline_source,"
	       " first_seen_ns, boot_id) VALUES"
	       " (1, 10, 1, 1, 'dig', 'dig ci.example.test', 'proc', 1, 'b'),"
	       " (2, 11, 1, 1, 'curl', 'curl -fsSL https://ci.example.test/x', 'proc', 1, 'b'),"
	       " (3, 12, 1, 1, 'dig', 'dig other.test', 'proc', 1, 'b')");
	sql(f, "INSERT INTO dns_queries (id, time_ns, process_id, scope, qname, qtype, rcode,"
	       " transport, verdict, rule, answers) VALUES"
	       " (1, 1000000000000, 1, 'deploy', 'ci.example.test', 'A', 'NOERROR', 'udp', 'allowed', NULL, 1),"
	       " (2, 2000000000000, 2, 'deploy', 'ci.example.test', 'A', 'NOERROR', 'udp', 'allowed', NULL, 1),"
	       " (3, 2000000000000, 2, 'deploy', 'typo.example.test', 'A', 'NXDOMAIN', 'udp', 'allowed', NULL, 0),"
	       " (4, 2000000000000, 2, 'deploy', 'blocked.test', 'A', 'NXDOMAIN', 'udp', 'blocked', 'default', 0),"
	       " (5, 2000000000000, NULL, 'deploy', 'unknown-sender.test', 'A', 'NOERROR', 'udp', 'allowed', NULL, 1),"
	       " (6, 2000000000000, 3, 'other', 'other.test', 'A', 'NOERROR', 'udp', 'allowed', NULL, 1)");
	sql(f, "INSERT INTO connections (id, time_ns, process_id, tid, scope, cgroup_id, kind, family,"
	       " proto, addr, addr_key, port, verdict, domain) VALUES"
	       " (7, 3000000000000, 2, 11, 'deploy', 1, 'connect', 'ipv4', 'tcp', '127.0.0.10',"
	       "  '00000000000000000000ffff7f00000a', 443, 'allowed', 'ci.example.test'),"
	       " (8, 3000000000000, 2, 11, 'deploy', 1, 'connect', 'ipv4', 'tcp', '127.0.0.3',"
	       "  '00000000000000000000ffff7f000003', 5432, 'allowed', NULL),"
	       " (9, 3000000000000, 2, 11, 'deploy', 1, 'connect', 'ipv4', 'udp', '127.0.0.2',"
	       "  '00000000000000000000ffff7f000002', 53, 'allowed', NULL)");
}

static struct policy *load(struct fixture *f)
{
	struct policy *p = NULL;

	assert_int_equal(rules_load(f->s, &p), 0);
	return p;
}

static void add(struct fixture *f, const char *pattern, const char *scope, int mode)
{
	struct rule_change c = { .pattern = pattern, .scope = scope, .mode = (uint8_t)mode,
				 .by = "test" };

	assert_int_equal(rules_add(f->s, &c, NULL), 0);
}

static char *print(const struct suggest_result *r, const char *scope)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	suggest_print(r, scope, out);
	assert_int_equal(fclose(out), 0);
	return buf;
}

/* What a report prints, into a heap string: deps in fmt, or with RULES the rules' lines. */
#define RULES (-1)
static char *report_text(struct fixture *f, const struct report_filter *flt,
			 const struct policy *p, int fmt, int want)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	assert_int_equal(fmt == RULES ? report_rules(store_db(f->s), flt, p, out) :
		 report_deps(store_db(f->s), flt, p, (enum report_format)fmt, out), want);
	assert_int_equal(fclose(out), 0);
	return buf;
}

/* The names that exist, once each, with what needed them; not a name that does not exist. */
static void test_suggest_names(void **state)
{
	struct fixture *f = *state;
	struct suggest_result r;
	struct policy *p;

	fill(f);
	p = load(f);
	assert_int_equal(suggest_collect(store_db(f->s), "deploy", 0, p, &r), 0);
	assert_int_equal(r.n_names, 2);
	assert_string_equal(r.names[0].name, "blocked.test");
	assert_string_equal(r.names[1].name, "ci.example.test");
	assert_int_equal(r.names[1].attempts, 3); /* two lookups and a connect */
	assert_int_equal(r.names[1].processes, 2);
	assert_int_equal(r.names[1].last_ns, 3000000000000LL);
	assert_string_equal(r.names[1].cmdline, "curl -fsSL https://ci.example.test/x");
	/* By address, with no name: listed apart; DNS itself is not. */
	assert_int_equal(r.n_unnamed, 1);
	assert_string_equal(r.unnamed[0].addr, "127.0.0.3");
	assert_int_equal(r.unnamed[0].port, 5432);
	suggest_free(&r);
	policy_unref(p);
}

/* The output is commands to paste, each with its reason; then the addresses as comments. */
static void test_suggest_output(void **state)
{
	struct fixture *f = *state;
	struct suggest_result r;
	struct policy *p;
	char *out;

	fill(f);
	p = load(f);
	assert_int_equal(suggest_collect(store_db(f->s), "deploy", 0, p, &r), 0);
	out = print(&r, "deploy");
	assert_string_equal(
		out,
		"nettrail policy add =blocked.test --scope deploy --mode allow  # 1 attempt, 1 process, "
		"last 1970-01-01 00:33:20Z: curl -fsSL https://ci.example.test/x\n"
		"nettrail policy add =ci.example.test --scope deploy --mode allow  # 3 attempts, "
		"2 processes, last 1970-01-01 00:50:00Z: curl -fsSL https://ci.example.test/x\n"
		"# reached by address, with no name a rule could allow (recorded, not refused under "
		"a lock-down):\n"
		"#   tcp 127.0.0.3 port 5432, 1 attempt\n");
	free(out);
	suggest_free(&r);
	policy_unref(p);
}

/* A rule decides a name already: an allow rule needs no twin, an enforce rule is not undone. */
static void test_suggest_skips_ruled_names(void **state)
{
	struct fixture *f = *state;
	struct suggest_result r;
	struct policy *p;
	char *out;

	fill(f);
	add(f, "example.test", "", POLICY_ALLOW);         /* every scope's allow covers ci */
	add(f, "=blocked.test", "deploy", POLICY_ENFORCE); /* the operator's decision */
	p = load(f);
	assert_int_equal(suggest_collect(store_db(f->s), "deploy", 0, p, &r), 0);
	assert_int_equal(r.n_names, 0);
	out = print(&r, "deploy");
	assert_non_null(strstr(out, "# nothing to allow"));
	free(out);
	suggest_free(&r);
	policy_unref(p);
}

/*
 * An alias whose answer led to a name the operator enforces: an allow rule of the alias's own
 * would win over the target's rule (policy_decide_chain), so none is suggested; an alias whose
 * target has no rule, or a monitor rule (the lock-down's default would refuse the alias), is
 * suggested as before.
 */
static void test_suggest_skips_aliases_of_ruled_targets(void **state)
{
	struct fixture *f = *state;
	struct suggest_result r;
	struct policy *p;

	fill(f);
	sql(f, "INSERT INTO dns_queries (id, time_ns, process_id, scope, qname, qtype, rcode,"
	       " transport, verdict, rule, answers) VALUES"
	       " (10, 2000000000000, 2, 'deploy', 'www.alias.test', 'A', 'NXDOMAIN', 'udp', 'blocked', 'cdn.test', 1),"
	       " (11, 2000000000000, 2, 'deploy', 'www.free.test', 'A', 'NOERROR', 'udp', 'allowed', NULL, 2),"
	       " (12, 2000000000000, 2, 'deploy', 'www.watched.test', 'A', 'NOERROR', 'udp', 'would_block', 'watched-cdn.test', 1)");
	sql(f, "INSERT INTO dns_answers (query_id, name, type, value, addr_key, ttl) VALUES"
	       " (10, 'www.alias.test', 'CNAME', 'edge.cdn.test', NULL, 60),"
	       " (11, 'www.free.test', 'CNAME', 'edge.other-cdn.test', NULL, 60),"
	       " (11, 'edge.other-cdn.test', 'A', '127.0.0.20', '00000000000000000000ffff7f000014', 60),"
	       " (12, 'www.watched.test', 'CNAME', 'edge.watched-cdn.test', NULL, 60)");
	add(f, "cdn.test", "", POLICY_ENFORCE);
	add(f, "watched-cdn.test", "", POLICY_MONITOR);
	p = load(f);
	assert_int_equal(suggest_collect(store_db(f->s), "deploy", 0, p, &r), 0);
	assert_int_equal(r.n_names, 4);
	assert_string_equal(r.names[0].name, "blocked.test");
	assert_string_equal(r.names[1].name, "ci.example.test");
	assert_string_equal(r.names[2].name, "www.free.test");
	assert_string_equal(r.names[3].name, "www.watched.test");
	suggest_free(&r);
	policy_unref(p);
}

/*
 * In run 1, www.alias.test was answered with a CNAME to edge.cdn.test (enforced) and
 * 127.0.0.30, which curl connected to; in run 2, with no CNAME. For run 1, the name comes
 * with both chains (run 1's lookup, the scope's latest answer), and the stricter decides:
 * deps names the enforce rule for the destination, and the "what the rules stop" lines put
 * the name under it, once, not also under the scope's monitor default.
 */
static void test_report_takes_the_strictest_of_a_names_chains(void **state)
{
	struct fixture *f = *state;
	struct rule_change def = { .pattern = "", .scope = "deploy", .mode = POLICY_MONITOR,
				   .by = "test" };
	struct report_filter flt = { .scope = "deploy", .run_id = 1 };
	struct policy *p;
	char *buf;

	sql(f, "INSERT INTO runs (id, scope, cgroup, cgroup_id, command, host, mode, boot_id,"
	       " started_ns) VALUES (1, 'deploy', '/x/1', 1, './deploy.sh', 'h', 'agent', 'b', 1),"
	       " (2, 'deploy', '/x/2', 2, './deploy.sh', 'h', 'agent', 'b', 3000000000000)");
	sql(f, "INSERT INTO processes (id, pid, start_ns, exec_id, comm, cmdline, cmdline_source,"
	       " first_seen_ns, boot_id) VALUES"
	       " (2, 11, 1, 1, 'curl', 'curl -fsSL https://www.alias.test/x', 'proc', 1, 'b')");
	sql(f, "INSERT INTO dns_queries (id, time_ns, process_id, scope, qname, qtype, rcode,"
	       " transport, verdict, rule, answers, run_id) VALUES"
	       " (20, 1000000000000, 2, 'deploy', 'www.alias.test', 'A', 'NOERROR', 'udp', 'allowed', NULL, 2, 1),"
	       " (21, 4000000000000, 2, 'deploy', 'www.alias.test', 'A', 'NOERROR', 'udp', 'allowed', NULL, 1, 2)");
	sql(f, "INSERT INTO dns_answers (query_id, name, type, value, addr_key, ttl) VALUES"
	       " (20, 'www.alias.test', 'CNAME', 'edge.cdn.test', NULL, 60),"
	       " (20, 'edge.cdn.test', 'A', '127.0.0.30', '00000000000000000000ffff7f00001e', 60),"
	       " (21, 'www.alias.test', 'A', '127.0.0.31', '00000000000000000000ffff7f00001f', 60)");
	sql(f, "INSERT INTO connections (id, time_ns, process_id, tid, scope, cgroup_id, kind, family,"
	       " proto, addr, addr_key, port, verdict, domain, run_id) VALUES"
	       " (22, 2000000000000, 2, 11, 'deploy', 1, 'connect', 'ipv4', 'tcp', '127.0.0.30',"
	       "  '00000000000000000000ffff7f00001e', 443, 'allowed', 'www.alias.test', 1)");
	add(f, "cdn.test", "", POLICY_ENFORCE);
	assert_int_equal(rules_set_default(f->s, &def, NULL), 0);
	p = load(f);

	buf = report_text(f, &flt, p, REPORT_CSV, 1);
	assert_non_null(strstr(buf, "127.0.0.30"));
	assert_non_null(strstr(buf, "enforce cdn.test"));
	free(buf);

	buf = report_text(f, &flt, p, RULES, 1);
	assert_non_null(strstr(buf, "enforce  cdn.test"));
	assert_null(strstr(buf, "default"));
	free(buf);
	policy_unref(p);
}

/*
 * deps lists the names a scope looked up and connected to by none of their addresses (a
 * refused one, here blocked.test), after the destinations connected to, with no address or
 * port; not a name the upstream said does not exist, nor one connected to (ci.example.test).
 */
static void test_report_names_only_looked_up(void **state)
{
	struct fixture *f = *state;
	struct report_filter flt = { .scope = "deploy" };
	struct policy *p;
	char *buf;

	fill(f);
	add(f, "=blocked.test", "deploy", POLICY_ENFORCE);
	p = load(f);
	buf = report_text(f, &flt, p, REPORT_JSON, 4);
	assert_non_null(strstr(buf, "{\"scope\": \"deploy\", \"proto\": \"dns\", \"addr\": null, "
				    "\"port\": null, \"attempts\": 1, \"processes\": 1, "
				    "\"verdicts\": [\"blocked\"], "
				    "\"first_cmdline\": \"curl -fsSL https://ci.example.test/x\""));
	assert_non_null(strstr(buf, "\"domains\": [\"blocked.test\"]"));
	assert_non_null(strstr(buf, "\"rule\": \"enforce =blocked.test\", \"cmdlines\": "
				    "[\"curl -fsSL https://ci.example.test/x\"]}"));
	assert_null(strstr(buf, "typo.example.test"));
	assert_null(strstr(buf, "\"domains\": [\"ci.example.test\"], \"first_seen\": \"1970-01-01T00:16"));
	/* Last of its scope, after the addresses. */
	assert_true(strstr(buf, "\"proto\": \"dns\"") > strstr(buf, "127.0.0.3"));
	free(buf);

	buf = report_text(f, &flt, p, REPORT_TABLE, 4);
	assert_non_null(strstr(buf, "deploy blocked.test    dns   -              -        1     1 blocked"));
	free(buf);
	policy_unref(p);
}

/* Every rule that stops something gets its line, however many there are. */
static void test_report_every_rule_that_stops_something(void **state)
{
	enum { N = 300 };
	struct fixture *f = *state;
	struct report_filter flt = { .scope = "deploy" };
	static char patterns[N][16];
	struct rule_change c[N];
	struct policy *p;
	char *buf, *line;
	int lines = 0;

	sql(f, "INSERT INTO processes (id, pid, start_ns, exec_id, comm, cmdline, cmdline_source,"
	       " first_seen_ns, boot_id) VALUES (1, 10, 1, 1, 'dig', 'dig', 'proc', 1, 'b')");
	sql(f, "WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n < 299)"
	       " INSERT INTO dns_queries (id, time_ns, process_id, scope, qname, qtype, rcode,"
	       " transport, verdict, answers)"
	       " SELECT 100 + n, 1000000000000 + n, 1, 'deploy', printf('n%03d.test', n), 'A',"
	       " 'NOERROR', 'udp', 'would_block', 1 FROM i");
	for (int i = 0; i < N; i++) {
		snprintf(patterns[i], sizeof(patterns[i]), "=n%03d.test", i);
		c[i] = (struct rule_change){ .pattern = patterns[i], .scope = "deploy",
					     .mode = POLICY_MONITOR, .by = "test" };
	}
	assert_int_equal(rules_add_many(f->s, c, N), 0);
	p = load(f);
	buf = report_text(f, &flt, p, RULES, N);
	for (line = strstr(buf, "would break: 1 process"); line;
	     line = strstr(line + 1, "would break: 1 process"))
		lines++;
	assert_int_equal(lines, N);
	assert_non_null(strstr(buf, "=n299.test"));
	free(buf);
	policy_unref(p);
}

/* --since, and another scope's names stay out of a scope's suggestion. */
static void test_suggest_since_and_scope(void **state)
{
	struct fixture *f = *state;
	struct suggest_result r;
	struct policy *p;

	fill(f);
	p = load(f);
	assert_int_equal(suggest_collect(store_db(f->s), "deploy", 2500000000000LL, p, &r), 0);
	assert_int_equal(r.n_names, 1);
	assert_string_equal(r.names[0].name, "ci.example.test");
	assert_int_equal(r.names[0].attempts, 1); /* the connect only */
	suggest_free(&r);
	assert_int_equal(suggest_collect(store_db(f->s), "other", 0, p, &r), 0);
	assert_int_equal(r.n_names, 1);
	assert_string_equal(r.names[0].name, "other.test");
	assert_int_equal(r.n_unnamed, 0);
	suggest_free(&r);
	/* Every scope: every name that exists. */
	assert_int_equal(suggest_collect(store_db(f->s), NULL, 0, p, &r), 0);
	assert_int_equal(r.n_names, 3);
	suggest_free(&r);
	policy_unref(p);
}

/* --apply's write: all the rules in one change, or none. */
static void test_add_many_all_or_nothing(void **state)
{
	struct fixture *f = *state;
	struct rule_change c[3] = {
		{ .pattern = "=a.test", .scope = "deploy", .mode = POLICY_ALLOW, .by = "t" },
		{ .pattern = "=b.test", .scope = "deploy", .mode = POLICY_ALLOW, .by = "t" },
		{ .pattern = "=a.test", .scope = "deploy", .mode = POLICY_ALLOW, .by = "t" },
	};
	sqlite3_stmt *st;

	assert_int_equal(rules_add_many(f->s, c, 3), -EEXIST);
	assert_int_equal(sqlite3_prepare_v2(store_db(f->s), "SELECT count(*) FROM rules", -1, &st,
					    NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 0);
	sqlite3_reset(st);
	assert_int_equal(rules_add_many(f->s, c, 2), 0);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 2);
	sqlite3_finalize(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_suggest_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suggest_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suggest_skips_ruled_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suggest_skips_aliases_of_ruled_targets, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_suggest_since_and_scope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_every_rule_that_stops_something, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_report_names_only_looked_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_takes_the_strictest_of_a_names_chains,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_many_all_or_nothing, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
