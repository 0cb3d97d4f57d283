// SPDX-License-Identifier: MIT
/*
 * Unit tests for agent/rules.c against real SQLite files: adding, changing and removing
 * rules and scope defaults as the tables rules, scope_defaults and rule_changes hold them,
 * the ids of the change history taken from the event sequence, agent_state.rules_version and
 * polling it from another connection, compiling the tables into a policy, and who a change
 * is recorded as made by. Each test gets its own mkdtemp directory and database.
 */
#include <errno.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>
#include "policy.h"
#include "rules.h"
#include "store.h"
#include "tmpdir.h"

#define ALICE "alice (uid 1000)"
#define BOB "bob (uid 0 via sudo)"

struct fixture {
	char dir[1024];
	char path[1024 + 16]; /* dir/nettrail.db */
	struct store *s;     /* opened by setup_store */
	struct store *s2;    /* a second connection to the same file, opened by open_second */
};

/* ---- fixtures -------------------------------------------------------------------------- */

static int teardown(void **state);

static int setup_store(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int r;

	if (!f)
		return -1;
	if (tmpdir_make("rules", f->dir, sizeof(f->dir), f->path, sizeof(f->path)) < 0) {
		free(f);
		return -1;
	}
	*state = f;
	r = store_open(f->path, 0, &f->s);
	if (r < 0) {
		fprintf(stderr, "store_open(%s): %d\n", f->path, r);
		f->s = NULL;
		teardown(state);
		return -1;
	}
	return 0;
}

/* Closes both connections and removes the directory with every file SQLite left in it. */
static int teardown(void **state)
{
	struct fixture *f = *state;

	if (!f)
		return 0;
	if (f->s2)
		store_close(f->s2);
	if (f->s)
		store_close(f->s);
	tmpdir_remove(f->dir);
	free(f);
	*state = NULL;
	return 0;
}

static struct store *open_second(struct fixture *f)
{
	assert_null(f->s2);
	assert_int_equal(store_open(f->path, 0, &f->s2), 0);
	assert_non_null(f->s2);
	return f->s2;
}

/* ---- helpers --------------------------------------------------------------------------- */

static const char *vformat(char *buf, size_t len, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static const char *vformat(char *buf, size_t len, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf, len, fmt, ap);

	assert_true(n >= 0 && (size_t)n < len);
	return buf;
}

/* The single integer an SQL query returns (NULL reads as 0). */
static int64_t sql_int(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int64_t sql_int(struct store *s, const char *fmt, ...)
{
	sqlite3 *db = store_db(s);
	char sql[2048];
	sqlite3_stmt *st;
	int64_t v;
	va_list ap;

	va_start(ap, fmt);
	vformat(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("prepare %s: %s", sql, sqlite3_errmsg(db));
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/*
 * The single row an SQL query returns, its columns joined by '|', NULL as "NULL": one
 * assertion checks every column, and a failure shows the whole row.
 */
static const char *sql_row(struct store *s, char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static const char *sql_row(struct store *s, char *buf, size_t len, const char *fmt, ...)
{
	sqlite3 *db = store_db(s);
	char sql[2048];
	sqlite3_stmt *st;
	size_t used = 0;
	va_list ap;

	va_start(ap, fmt);
	vformat(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("prepare %s: %s", sql, sqlite3_errmsg(db));
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	buf[0] = '\0';
	for (int i = 0; i < sqlite3_column_count(st); i++) {
		const unsigned char *t = sqlite3_column_text(st, i);
		int n = snprintf(buf + used, len - used, "%s%s", i ? "|" : "",
				 t ? (const char *)t : "NULL");

		assert_true(n >= 0 && (size_t)n < len - used);
		used += (size_t)n;
	}
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	return buf;
}

static void sql_exec(struct store *s, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(store_db(s), sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : "?");
}

static int64_t now_ns(void)
{
	struct timespec ts;

	assert_int_equal(clock_gettime(CLOCK_REALTIME, &ts), 0);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Everything a change writes: the three tables whole and agent_state, as one text, so that
 * "nothing written" is one comparison of before and after.
 */
#define DUMP_MAX 16384
static const char *dump(struct store *s, char *buf)
{
	return sql_row(s, buf, DUMP_MAX, "%s",
		"SELECT"
		" (SELECT coalesce(group_concat(id || ',' || pattern || ',' || name || ',' || match"
		"  || ',' || mode || ',' || scope || ',' || coalesce(note, '~') || ',' || created_ns"
		"  || ',' || created_by || ',' || updated_ns || ',' || updated_by, ';'), '')"
		"  FROM (SELECT * FROM rules ORDER BY id)),"
		" (SELECT coalesce(group_concat(scope || ',' || mode || ',' || updated_ns || ','"
		"  || updated_by, ';'), '') FROM (SELECT * FROM scope_defaults ORDER BY scope)),"
		" (SELECT count(*) || ',' || coalesce(max(id), 0) FROM rule_changes),"
		" (SELECT coalesce(group_concat(key || '=' || value, ';'), '')"
		"  FROM (SELECT * FROM agent_state ORDER BY key))");
}

static int64_t version_of(struct store *s)
{
	int64_t v = -42;

	assert_int_equal(rules_version(s, &v), 0);
	return v;
}

static int64_t add(struct store *s, const char *pattern, const char *scope, int mode,
		   const char *note, const char *by)
{
	struct rule_change c = { .pattern = pattern, .scope = scope, .mode = (uint8_t)mode,
				 .note = note, .by = by };
	int64_t id = -42;

	assert_int_equal(rules_add(s, &c, &id), 0);
	assert_true(id > 0);
	return id;
}

static int set_mode(struct store *s, const char *pattern, const char *scope, int mode,
		    const char *note, const char *by)
{
	struct rule_change c = { .pattern = pattern, .scope = scope, .mode = (uint8_t)mode,
				 .note = note, .by = by };
	int old = -42;

	assert_int_equal(rules_set(s, &c, &old), 0);
	return old;
}

static int rm(struct store *s, const char *pattern, const char *scope, const char *by)
{
	struct rule_change c = { .pattern = pattern, .scope = scope, .by = by };
	int old = -42;

	assert_int_equal(rules_rm(s, &c, &old), 0);
	return old;
}

static int set_default(struct store *s, const char *scope, int mode, const char *by)
{
	struct rule_change c = { .scope = scope, .mode = (uint8_t)mode, .by = by };
	int old = -42;

	assert_int_equal(rules_set_default(s, &c, &old), 0);
	return old;
}

static struct policy *load(struct store *s)
{
	struct policy *p = NULL;

	assert_int_equal(rules_load(s, &p), 0);
	assert_non_null(p);
	return p;
}

/* ---- rules_add ------------------------------------------------------------------------- */

static void test_add_suffix(void **state)
{
	struct fixture *f = *state;
	struct rule_change c = { .pattern = "GitHub.com.", .scope = "", .mode = POLICY_ENFORCE,
				 .note = "ci needs it", .by = ALICE };
	int64_t id = -42, before, after;
	char buf[1024];

	before = now_ns();
	assert_int_equal(rules_add(f->s, &c, &id), 0);
	after = now_ns();
	assert_true(id > 0);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules"), 1);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT id = %lld, pattern, name, match, mode, scope, note,"
				    " created_by, updated_by, created_ns = updated_ns FROM rules",
				    (long long)id),
			    "1|github.com|github.com|suffix|enforce||ci needs it|" ALICE "|" ALICE "|1");
	assert_in_range(sql_int(f->s, "SELECT created_ns FROM rules"), before, after);
	assert_in_range(sql_int(f->s, "SELECT updated_ns FROM rules"), before, after);

	/* The history row. */
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rule_changes"), 1);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT action, rule_id = %lld, scope, pattern, old_mode, new_mode,"
				    " note, by FROM rule_changes",
				    (long long)id),
			    "add|1||github.com|NULL|enforce|ci needs it|" ALICE);
	assert_in_range(sql_int(f->s, "SELECT time_ns FROM rule_changes"), before, after);
	assert_int_equal(version_of(f->s), 1);
}

static void test_add_exact(void **state)
{
	struct fixture *f = *state;
	char buf[1024];
	int64_t id, id2, id3;

	id = add(f->s, "=api.github.com", "deploy", POLICY_MONITOR, NULL, BOB);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT pattern, name, match, mode, scope, note, created_by,"
				    " updated_by FROM rules WHERE id = %lld",
				    (long long)id),
			    "=api.github.com|api.github.com|exact|monitor|deploy|NULL|" BOB "|" BOB);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT action, rule_id = %lld, scope, pattern, old_mode, new_mode,"
				    " note, by FROM rule_changes",
				    (long long)id),
			    "add|1|deploy|=api.github.com|NULL|monitor|NULL|" BOB);

	/* Written another way, still normalised; the suffix rule of the name is another rule. */
	assert_int_equal(rules_add(f->s, &(struct rule_change){ .pattern = "=API.GitHub.COM.",
								  .scope = "", .mode = POLICY_ALLOW,
								  .by = ALICE },
				   NULL),
			 0);
	id2 = sql_int(f->s, "SELECT max(id) FROM rules");
	assert_true(id2 > id);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT pattern, name, match, mode, scope FROM rules WHERE id = %lld",
				    (long long)id2),
			    "=api.github.com|api.github.com|exact|allow|");
	id3 = add(f->s, "api.github.com", "deploy", POLICY_ENFORCE, NULL, ALICE);
	assert_true(id3 > id2);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT pattern, match, mode, scope FROM rules WHERE id = %lld",
				    (long long)id3),
			    "api.github.com|suffix|enforce|deploy");
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules"), 3);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rule_changes WHERE action = 'add'"), 3);
	assert_int_equal(version_of(f->s), 3);
}

/* The longest name there is, 253 characters, kept whole as a suffix and an exact pattern. */
static void test_add_longest_name(void **state)
{
	struct fixture *f = *state;
	char name[POLICY_NAME_MAX], exact[POLICY_NAME_MAX + 1], buf[1024], want[1024];
	struct policy_decision d;
	struct policy *p;
	int64_t id;

	/* 3 labels of 63 and one of 61: 63 * 3 + 61 + 3 dots = 253. */
	memset(name, 'a', 253);
	name[63] = name[127] = name[191] = '.';
	name[253] = '\0';
	snprintf(exact, sizeof(exact), "=%s", name);

	add(f->s, name, "", POLICY_MONITOR, NULL, ALICE);
	id = add(f->s, exact, "", POLICY_ENFORCE, NULL, ALICE);
	snprintf(want, sizeof(want), "%s|%s|exact", exact, name);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT pattern, name, match FROM rules WHERE id = %lld",
				    (long long)id),
			    want);
	assert_int_equal(sql_int(f->s, "SELECT length(pattern) FROM rule_changes WHERE rule_id = %lld",
				 (long long)id),
			 254);

	p = load(f->s);
	policy_decide(p, "any", name, &d);
	assert_int_equal(d.mode, POLICY_ENFORCE);
	assert_int_equal(d.rule_id, id);
	assert_string_equal(d.rule, exact);
	policy_unref(p);
}

static void test_add_duplicate(void **state)
{
	struct fixture *f = *state;
	struct rule_change c = { .pattern = "GITHUB.COM.", .scope = "", .mode = POLICY_ALLOW,
				 .note = "again", .by = BOB };
	char before[DUMP_MAX], after[DUMP_MAX];
	int64_t id = 12345;

	add(f->s, "github.com", "", POLICY_ENFORCE, "first", ALICE);
	dump(f->s, before);
	assert_int_equal(rules_add(f->s, &c, &id), -EEXIST);
	assert_int_equal(id, 12345); /* untouched on failure */
	assert_string_equal(dump(f->s, after), before);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules"), 1);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rule_changes"), 1);
	assert_int_equal(version_of(f->s), 1);
	assert_false(store_in_transaction(f->s));

	/* The same written the same way, and the exact one. */
	c.pattern = "github.com";
	assert_int_equal(rules_add(f->s, &c, NULL), -EEXIST);
	assert_string_equal(dump(f->s, after), before);
	add(f->s, "=github.com", "", POLICY_ALLOW, NULL, BOB);
	c.pattern = "=GitHub.com";
	assert_int_equal(rules_add(f->s, &c, NULL), -EEXIST);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules"), 2);
	assert_int_equal(version_of(f->s), 2);
}

static void test_add_other_scope(void **state)
{
	struct fixture *f = *state;
	int64_t all, deploy, build;
	char buf[256];

	all = add(f->s, "github.com", "", POLICY_ALLOW, NULL, ALICE);
	deploy = add(f->s, "github.com", "deploy", POLICY_ENFORCE, NULL, ALICE);
	build = add(f->s, "GitHub.com", "build", POLICY_MONITOR, NULL, ALICE);
	assert_true(all < deploy && deploy < build);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT group_concat(scope || ':' || mode, ',') FROM"
				    " (SELECT * FROM rules WHERE name = 'github.com' ORDER BY id)"),
			    ":allow,deploy:enforce,build:monitor");
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rule_changes"), 3);
	assert_int_equal(version_of(f->s), 3);
	/* Each is its own rule: a duplicate in one scope doesn't stop the others. */
	assert_int_equal(rules_add(f->s, &(struct rule_change){ .pattern = "github.com",
								  .scope = "deploy", .by = ALICE },
				   NULL),
			 -EEXIST);
	assert_int_equal(version_of(f->s), 3);
}

static void test_add_invalid(void **state)
{
	struct fixture *f = *state;
	char long_label[80], long_name[300], before[DUMP_MAX], after[DUMP_MAX];
	const char *bad[] = { "", "=", ".", "=.", "-github.com", "github-.com", "git hub.com",
			      "a..b", ".github.com", "github.com..", "gith*b.com", "g\xc3\xafthub.com",
			      long_label, long_name, NULL };

	memset(long_label, 'a', 64);
	snprintf(long_label + 64, sizeof(long_label) - 64, ".com"); /* a label of 64 */
	for (int i = 0; i < 254; i++)
		long_name[i] = i % 2 ? '.' : 'a';
	long_name[253] = 'a'; /* 254 characters, labels of one */
	long_name[254] = '\0';

	add(f->s, "github.com", "", POLICY_ALLOW, NULL, ALICE);
	dump(f->s, before);
	for (int i = 0; bad[i]; i++) {
		struct rule_change c = { .pattern = bad[i], .scope = "", .mode = POLICY_ENFORCE,
					 .by = ALICE };
		int64_t id = 12345;
		int old = 7;

		if (rules_add(f->s, &c, &id) != -EINVAL)
			fail_msg("rules_add(\"%s\") did not fail with -EINVAL", bad[i]);
		assert_int_equal(id, 12345);
		assert_int_equal(rules_set(f->s, &c, &old), -EINVAL);
		assert_int_equal(old, -1);
		old = 7;
		assert_int_equal(rules_rm(f->s, &c, &old), -EINVAL);
		assert_int_equal(old, -1);
		assert_string_equal(dump(f->s, after), before);
	}
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules"), 1);
	assert_int_equal(version_of(f->s), 1);
	assert_false(store_in_transaction(f->s));
}

/* A mode that isn't one fails and writes nothing (the CHECK of the table, or the callee). */
static void test_add_bad_mode(void **state)
{
	struct fixture *f = *state;
	char before[DUMP_MAX], after[DUMP_MAX];
	struct rule_change c = { .pattern = "github.com", .scope = "", .mode = 3, .by = ALICE };
	int old = 7;

	add(f->s, "example.org", "", POLICY_ALLOW, NULL, ALICE);
	dump(f->s, before);
	assert_true(rules_add(f->s, &c, NULL) < 0);
	assert_string_equal(dump(f->s, after), before);
	c.pattern = "example.org";
	assert_true(rules_set(f->s, &c, &old) < 0);
	assert_int_equal(old, -1);
	assert_string_equal(dump(f->s, after), before);
	assert_true(rules_set_default(f->s, &c, &old) < 0);
	assert_int_equal(old, -1);
	assert_string_equal(dump(f->s, after), before);
	assert_false(store_in_transaction(f->s));
}

/* ---- rules_set ------------------------------------------------------------------------- */

static void test_set(void **state)
{
	struct fixture *f = *state;
	int64_t id, before, after;
	char buf[1024];

	id = add(f->s, "github.com", "deploy", POLICY_ENFORCE, "first", ALICE);
	/* Back-date it, so that an update of the times shows. */
	sql_exec(f->s, "UPDATE rules SET created_ns = 1000, updated_ns = 2000");

	before = now_ns();
	assert_int_equal(set_mode(f->s, "GitHub.com.", "deploy", POLICY_MONITOR, NULL, BOB),
			 POLICY_ENFORCE);
	after = now_ns();
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT id = %lld, pattern, mode, scope, note, created_ns,"
				    " created_by, updated_by FROM rules",
				    (long long)id),
			    "1|github.com|monitor|deploy|first|1000|" ALICE "|" BOB);
	assert_in_range(sql_int(f->s, "SELECT updated_ns FROM rules"), before, after);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT action, rule_id = %lld, scope, pattern, old_mode, new_mode,"
				    " note, by FROM rule_changes WHERE id = (SELECT max(id) FROM"
				    " rule_changes)",
				    (long long)id),
			    "set|1|deploy|github.com|enforce|monitor|NULL|" BOB);
	assert_in_range(sql_int(f->s, "SELECT max(time_ns) FROM rule_changes"), before, after);

	/* A note given replaces the rule's. */
	assert_int_equal(set_mode(f->s, "github.com", "deploy", POLICY_ALLOW, "second", ALICE),
			 POLICY_MONITOR);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT mode, note, updated_by FROM rules"),
			    "allow|second|" ALICE);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT action, old_mode, new_mode, note, by FROM rule_changes"
				    " WHERE id = (SELECT max(id) FROM rule_changes)"),
			    "set|monitor|allow|second|" ALICE);

	/* Setting the mode it has, with no note, changes nothing and records nothing. */
	assert_int_equal(rules_set(f->s, &(struct rule_change){ .pattern = "github.com",
								.scope = "deploy",
								.mode = POLICY_ALLOW, .by = ALICE },
				   &(int){ 0 }),
			 -EALREADY);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf), "SELECT mode, note FROM rules"),
			    "allow|second");
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rule_changes"), 3);
	assert_int_equal(version_of(f->s), 3);
	/* With a note it is a change: the note is the point. */
	assert_int_equal(set_mode(f->s, "github.com", "deploy", POLICY_ALLOW, "why", ALICE),
			 POLICY_ALLOW);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rule_changes"), 4);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules"), 1);
	assert_int_equal(version_of(f->s), 4);
}

/* Only the rule of that scope and that kind of match is changed. */
static void test_set_only_that_rule(void **state)
{
	struct fixture *f = *state;
	char buf[256];

	add(f->s, "github.com", "", POLICY_ALLOW, NULL, ALICE);
	add(f->s, "github.com", "deploy", POLICY_ALLOW, NULL, ALICE);
	add(f->s, "=github.com", "deploy", POLICY_ALLOW, NULL, ALICE);
	assert_int_equal(set_mode(f->s, "github.com", "deploy", POLICY_ENFORCE, NULL, ALICE),
			 POLICY_ALLOW);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT group_concat(pattern || '@' || scope || ':' || mode, ',')"
				    " FROM (SELECT * FROM rules ORDER BY id)"),
			    "github.com@:allow,github.com@deploy:enforce,=github.com@deploy:allow");
}

static void test_set_missing(void **state)
{
	struct fixture *f = *state;
	const struct rule_change missing[] = {
		{ .pattern = "example.org", .scope = "", .mode = POLICY_ENFORCE, .by = BOB },
		{ .pattern = "github.com", .scope = "deploy", .mode = POLICY_ENFORCE, .by = BOB },
		{ .pattern = "=github.com", .scope = "", .mode = POLICY_ENFORCE, .by = BOB },
		{ .pattern = "api.github.com", .scope = "", .mode = POLICY_ENFORCE, .by = BOB },
	};
	char before[DUMP_MAX], after[DUMP_MAX];

	add(f->s, "github.com", "", POLICY_MONITOR, "kept", ALICE);
	dump(f->s, before);
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
		int old = 7;

		assert_int_equal(rules_set(f->s, &missing[i], &old), -ENOENT);
		assert_int_equal(old, -1);
		assert_string_equal(dump(f->s, after), before);
	}
	assert_int_equal(version_of(f->s), 1);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rule_changes"), 1);
	assert_false(store_in_transaction(f->s));
}

/* ---- rules_rm -------------------------------------------------------------------------- */

static void test_rm(void **state)
{
	struct fixture *f = *state;
	struct rule_change c = { .pattern = "github.com", .scope = "deploy", .by = BOB };
	char buf[1024], before[DUMP_MAX], after[DUMP_MAX];
	int64_t id, kept, again;
	int old;

	id = add(f->s, "github.com", "deploy", POLICY_ENFORCE, "n", ALICE);
	kept = add(f->s, "github.com", "", POLICY_MONITOR, NULL, ALICE);
	assert_int_equal(rm(f->s, "GitHub.com.", "deploy", BOB), POLICY_ENFORCE);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules WHERE id = %lld", (long long)id), 0);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules WHERE id = %lld", (long long)kept),
			 1);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules"), 1);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT action, rule_id = %lld, scope, pattern, old_mode, new_mode,"
				    " by FROM rule_changes WHERE id = (SELECT max(id) FROM rule_changes)",
				    (long long)id),
			    "rm|1|deploy|github.com|enforce|NULL|" BOB);
	assert_int_equal(version_of(f->s), 3);

	/* Gone: a second rm finds nothing and writes nothing. */
	dump(f->s, before);
	old = 7;
	assert_int_equal(rules_rm(f->s, &c, &old), -ENOENT);
	assert_int_equal(old, -1);
	c.pattern = "=github.com";
	c.scope = "";
	old = 7;
	assert_int_equal(rules_rm(f->s, &c, &old), -ENOENT);
	assert_int_equal(old, -1);
	assert_string_equal(dump(f->s, after), before);
	assert_int_equal(version_of(f->s), 3);

	/* The id of a removed rule is never given again: the history names it. */
	again = add(f->s, "github.com", "deploy", POLICY_ALLOW, NULL, ALICE);
	assert_true(again > kept && again != id);
	assert_int_equal(rm(f->s, "github.com", "deploy", ALICE), POLICY_ALLOW);
	assert_int_equal(rm(f->s, "github.com", "", ALICE), POLICY_MONITOR);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules"), 0);
}

/* ---- rules_set_default ----------------------------------------------------------------- */

static void test_default(void **state)
{
	struct fixture *f = *state;
	int64_t before, after;
	char buf[1024];

	before = now_ns();
	assert_int_equal(set_default(f->s, "deploy", POLICY_ENFORCE, ALICE), -1);
	after = now_ns();
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT count(*), scope, mode, updated_by FROM scope_defaults"),
			    "1|deploy|enforce|" ALICE);
	assert_in_range(sql_int(f->s, "SELECT updated_ns FROM scope_defaults"), before, after);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT action, rule_id, scope, pattern, old_mode, new_mode, note,"
				    " by FROM rule_changes"),
			    "default|NULL|deploy|NULL|NULL|enforce|NULL|" ALICE);
	assert_in_range(sql_int(f->s, "SELECT time_ns FROM rule_changes"), before, after);

	sql_exec(f->s, "UPDATE scope_defaults SET updated_ns = 1000");
	before = now_ns();
	assert_int_equal(set_default(f->s, "deploy", POLICY_MONITOR, BOB), POLICY_ENFORCE);
	after = now_ns();
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT count(*), scope, mode, updated_by FROM scope_defaults"),
			    "1|deploy|monitor|" BOB);
	assert_in_range(sql_int(f->s, "SELECT updated_ns FROM scope_defaults"), before, after);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT action, rule_id, scope, pattern, old_mode, new_mode, by"
				    " FROM rule_changes WHERE id = (SELECT max(id) FROM rule_changes)"),
			    "default|NULL|deploy|NULL|enforce|monitor|" BOB);
	assert_int_equal(set_default(f->s, "deploy", POLICY_ALLOW, BOB), POLICY_MONITOR);
	assert_int_equal(set_default(f->s, "deploy", POLICY_ENFORCE, BOB), POLICY_ALLOW);

	/* Every scope's default is a scope of its own. */
	assert_int_equal(set_default(f->s, "", POLICY_MONITOR, ALICE), -1);
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT group_concat(scope || ':' || mode, ',') FROM"
				    " (SELECT * FROM scope_defaults ORDER BY scope)"),
			    ":monitor,deploy:enforce");
	assert_string_equal(sql_row(f->s, buf, sizeof(buf),
				    "SELECT scope, old_mode, new_mode FROM rule_changes"
				    " WHERE id = (SELECT max(id) FROM rule_changes)"),
			    "|NULL|monitor");
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rule_changes WHERE action = 'default'"),
			 5);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rules"), 0);
	assert_int_equal(version_of(f->s), 5);
}

/* ---- rule_changes and the event sequence ------------------------------------------------ */

/* A change that succeeds: its history row is the newest, with an id above every before it. */
static int64_t expect_new_change(struct store *s, int64_t last, const char *action)
{
	char buf[64];
	int64_t id = sql_int(s, "SELECT max(id) FROM rule_changes");

	assert_true(id > last);
	assert_string_equal(sql_row(s, buf, sizeof(buf),
				    "SELECT action FROM rule_changes WHERE id = %lld", (long long)id),
			    action);
	assert_int_equal(sql_int(s, "SELECT value FROM agent_state WHERE key = 'event_seq'"), id);
	return id;
}

static int64_t take_event_id(struct store *s)
{
	int64_t id = -42;

	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_next_event_id(s, &id), 0);
	assert_int_equal(store_commit(s), 0);
	return id;
}

static void test_changes_event_seq(void **state)
{
	struct fixture *f = *state;
	struct rule_change dup = { .pattern = "github.com", .scope = "", .by = ALICE };
	int64_t last, e, seq;
	struct store *s2;

	/* An event before the changes comes before them. */
	e = take_event_id(f->s);
	assert_true(e > 0);
	last = e;

	add(f->s, "github.com", "", POLICY_ENFORCE, NULL, ALICE);
	last = expect_new_change(f->s, last, "add");
	set_mode(f->s, "github.com", "", POLICY_MONITOR, NULL, ALICE);
	last = expect_new_change(f->s, last, "set");
	set_default(f->s, "", POLICY_ENFORCE, ALICE);
	last = expect_new_change(f->s, last, "default");

	/* A failed change takes no id. */
	seq = sql_int(f->s, "SELECT value FROM agent_state WHERE key = 'event_seq'");
	assert_int_equal(rules_add(f->s, &dup, NULL), -EEXIST);
	assert_int_equal(sql_int(f->s, "SELECT value FROM agent_state WHERE key = 'event_seq'"), seq);

	/* Writers on other connections share the one sequence, in either order. */
	s2 = open_second(f);
	add(s2, "example.org", "build", POLICY_ALLOW, NULL, BOB);
	last = expect_new_change(f->s, last, "add");
	e = take_event_id(f->s);
	assert_true(e > last);
	last = e;
	rm(f->s, "github.com", "", ALICE);
	last = expect_new_change(f->s, last, "rm");
	set_default(s2, "build", POLICY_MONITOR, BOB);
	last = expect_new_change(s2, last, "default");
	e = take_event_id(s2);
	assert_true(e > last);
	last = e;
	set_mode(f->s, "example.org", "build", POLICY_ENFORCE, NULL, ALICE);
	last = expect_new_change(f->s, last, "set");

	/* An event after them comes after every one. */
	e = take_event_id(f->s);
	assert_true(e > sql_int(f->s, "SELECT max(id) FROM rule_changes"));
	assert_int_equal(sql_int(f->s, "SELECT value FROM agent_state WHERE key = 'event_seq'"), e);
	assert_int_equal(sql_int(f->s, "SELECT count(*) FROM rule_changes"), 7);
}

/* ---- rules_version and rules_poll --------------------------------------------------------- */

static void test_version(void **state)
{
	struct fixture *f = *state;
	struct rule_change c = { .pattern = "nope.example", .scope = "", .by = ALICE };
	int old;

	assert_int_equal(version_of(f->s), 0);
	add(f->s, "github.com", "", POLICY_ALLOW, NULL, ALICE);
	assert_int_equal(version_of(f->s), 1);
	assert_int_equal(rules_add(f->s, &(struct rule_change){ .pattern = "github.com",
								  .scope = "", .by = ALICE },
				   NULL),
			 -EEXIST);
	assert_int_equal(rules_set(f->s, &c, &old), -ENOENT);
	assert_int_equal(rules_rm(f->s, &c, &old), -ENOENT);
	c.pattern = "bad..name";
	assert_int_equal(rules_add(f->s, &c, NULL), -EINVAL);
	assert_int_equal(version_of(f->s), 1);
	set_mode(f->s, "github.com", "", POLICY_ENFORCE, NULL, ALICE);
	assert_int_equal(version_of(f->s), 2);
	set_default(f->s, "x", POLICY_ENFORCE, ALICE);
	assert_int_equal(version_of(f->s), 3);
	rm(f->s, "github.com", "", ALICE);
	assert_int_equal(version_of(f->s), 4);
	/* What agents read is the table's. */
	assert_int_equal(sql_int(f->s, "SELECT value FROM agent_state WHERE key = 'rules_version'"), 4);
}

static void test_poll(void **state)
{
	struct fixture *f = *state;
	struct rules_cursor cur = { .data_version = 0, .rules_version = -1 };
	struct rules_cursor fresh = { .data_version = 0, .rules_version = -1 };
	struct rule_change dup = { .pattern = "github.com", .scope = "", .by = BOB };
	struct store *s2;

	assert_int_equal(rules_poll(f->s, &cur), 1);
	assert_int_equal(cur.rules_version, 0);
	assert_int_equal(rules_poll(f->s, &cur), 0);
	assert_int_equal(rules_poll(f->s, &cur), 0);

	s2 = open_second(f);
	add(s2, "github.com", "", POLICY_ENFORCE, NULL, BOB);
	assert_int_equal(rules_poll(f->s, &cur), 1);
	assert_int_equal(cur.rules_version, 1);
	assert_int_equal(rules_poll(f->s, &cur), 0);

	/* Others' commits that change no rule, and failed changes, are no change. */
	assert_int_equal(store_set_state(s2, "unrelated", 5), 0);
	assert_int_equal(rules_poll(f->s, &cur), 0);
	assert_int_equal(rules_add(s2, &dup, NULL), -EEXIST);
	assert_int_equal(rules_poll(f->s, &cur), 0);
	assert_int_equal(cur.rules_version, 1);

	/* Several changes between two polls: one change seen, at the newest version. */
	set_mode(s2, "github.com", "", POLICY_MONITOR, NULL, BOB);
	set_default(s2, "", POLICY_ENFORCE, BOB);
	assert_int_equal(rules_poll(f->s, &cur), 1);
	assert_int_equal(cur.rules_version, 3);
	assert_int_equal(rules_poll(f->s, &cur), 0);

	/* A cursor that never looked sees the rules as changed, whatever has been. */
	assert_int_equal(rules_poll(s2, &fresh), 1);
	assert_int_equal(fresh.rules_version, 3);
	assert_int_equal(rules_poll(s2, &fresh), 0);
}

/* ---- rules_load ------------------------------------------------------------------------ */

static void expect_decision(const struct policy *p, const char *scope, const char *name,
			    int mode, int64_t rule_id, const char *rule)
{
	struct policy_decision d;

	memset(&d, 0xa5, sizeof(d));
	policy_decide(p, scope, name, &d);
	if (d.mode != mode || d.rule_id != rule_id || strcmp(d.rule, rule) != 0)
		fail_msg("(%s, %s): got %s, rule %lld '%s'; want %s, rule %lld '%s'", scope, name,
			 policy_mode_name(d.mode), (long long)d.rule_id, d.rule,
			 policy_mode_name(mode), (long long)rule_id, rule);
}

static void test_load_empty(void **state)
{
	struct fixture *f = *state;
	struct policy *p = load(f->s);

	assert_int_equal(policy_n_rules(p), 0);
	expect_decision(p, "deploy", "github.com", POLICY_ALLOW, 0, "");
	assert_int_equal(policy_default_mode(p, "deploy"), POLICY_ALLOW);
	policy_unref(p);
}

static void test_load(void **state)
{
	struct fixture *f = *state;
	struct policy_decision d;
	int64_t gh, ex;
	struct policy *p;

	gh = add(f->s, "GitHub.com", "deploy", POLICY_ENFORCE, NULL, ALICE);
	p = load(f->s);
	assert_int_equal(policy_n_rules(p), 1);
	expect_decision(p, "deploy", "api.github.com", POLICY_ENFORCE, gh, "github.com");
	expect_decision(p, "deploy", "github.com", POLICY_ENFORCE, gh, "github.com");
	policy_decide(p, "deploy", "api.github.com", &d);
	assert_string_equal(d.rule_scope, "deploy");
	expect_decision(p, "other", "api.github.com", POLICY_ALLOW, 0, "");
	expect_decision(p, "deploy", "notgithub.com", POLICY_ALLOW, 0, "");
	policy_unref(p);

	/* A rule for every scope, and scope defaults. */
	ex = add(f->s, "=example.org", "", POLICY_ALLOW, NULL, ALICE);
	set_default(f->s, "other", POLICY_MONITOR, ALICE);
	p = load(f->s);
	assert_int_equal(policy_n_rules(p), 2);
	assert_int_equal(policy_default_mode(p, "other"), POLICY_MONITOR);
	assert_int_equal(policy_default_mode(p, "third"), POLICY_ALLOW);
	expect_decision(p, "other", "api.github.com", POLICY_MONITOR, 0, "default");
	expect_decision(p, "other", "example.org", POLICY_ALLOW, ex, "=example.org");
	expect_decision(p, "other", "www.example.org", POLICY_MONITOR, 0, "default");
	expect_decision(p, "deploy", "api.github.com", POLICY_ENFORCE, gh, "github.com");
	expect_decision(p, "third", "www.example.org", POLICY_ALLOW, 0, "");
	policy_decide(p, "other", "example.org", &d);
	assert_string_equal(d.rule_scope, "");
	policy_unref(p);

	set_default(f->s, "", POLICY_ENFORCE, ALICE);
	p = load(f->s);
	expect_decision(p, "third", "www.example.org", POLICY_ENFORCE, 0, "default");
	expect_decision(p, "third", "example.org", POLICY_ALLOW, ex, "=example.org");
	expect_decision(p, "other", "www.example.org", POLICY_MONITOR, 0, "default");
	policy_unref(p);

	/* A changed mode, and the rule the history names. */
	set_mode(f->s, "github.com", "deploy", POLICY_MONITOR, NULL, ALICE);
	p = load(f->s);
	expect_decision(p, "deploy", "api.github.com", POLICY_MONITOR, gh, "github.com");
	assert_int_equal(policy_rule_by_id(p, gh, &d), 1);
	assert_string_equal(d.rule, "github.com");
	assert_string_equal(d.rule_scope, "deploy");
	assert_int_equal(d.mode, POLICY_MONITOR);
	policy_unref(p);

	/* Removed: the reloaded policy no longer knows it. */
	rm(f->s, "github.com", "deploy", ALICE);
	p = load(f->s);
	assert_int_equal(policy_n_rules(p), 1);
	expect_decision(p, "deploy", "api.github.com", POLICY_ENFORCE, 0, "default");
	assert_int_equal(policy_rule_by_id(p, gh, &d), 0);
	policy_unref(p);
	set_default(f->s, "", POLICY_ALLOW, ALICE);
	p = load(f->s);
	expect_decision(p, "deploy", "api.github.com", POLICY_ALLOW, 0, "");
	expect_decision(p, "deploy", "example.org", POLICY_ALLOW, ex, "=example.org");
	policy_unref(p);
}

/* A policy loaded stays as it was: changes show in the next load only. */
static void test_load_snapshot(void **state)
{
	struct fixture *f = *state;
	struct policy *old, *cur;
	int64_t id;

	id = add(f->s, "github.com", "", POLICY_ENFORCE, NULL, ALICE);
	old = load(f->s);
	rm(f->s, "github.com", "", ALICE);
	cur = load(f->s);
	expect_decision(old, "x", "github.com", POLICY_ENFORCE, id, "github.com");
	expect_decision(cur, "x", "github.com", POLICY_ALLOW, 0, "");
	policy_unref(old);
	policy_unref(cur);
}

/* ---- rules_actor ----------------------------------------------------------------------- */

static void test_actor(void **state)
{
	const char *saved = getenv("SUDO_USER");
	char *keep = saved ? strdup(saved) : NULL;
	struct passwd *pw = getpwuid(getuid());
	char buf[256], want[256];

	if (saved && !keep)
		fail_msg("strdup: out of memory");
	assert_int_equal(unsetenv("SUDO_USER"), 0);
	memset(buf, 'x', sizeof(buf));
	rules_actor(buf, sizeof(buf));
	snprintf(want, sizeof(want), "%s (uid %u)", pw ? pw->pw_name : "?", (unsigned)getuid());
	assert_string_equal(buf, want);

	/* sudo's variables, when they agree with the user database. */
	assert_int_equal(setenv("SUDO_USER", "nobody", 1), 0);
	assert_int_equal(setenv("SUDO_UID", "65534", 1), 0);
	memset(buf, 'x', sizeof(buf));
	rules_actor(buf, sizeof(buf));
	snprintf(want, sizeof(want), "nobody (uid %u via sudo from uid 65534)", (unsigned)getuid());
	assert_string_equal(buf, want);

	/* A short buffer gets what fits, terminated. */
	memset(buf, 'x', sizeof(buf));
	rules_actor(buf, 7);
	assert_string_equal(buf, "nobody");
	assert_int_equal(buf[7], 'x');

	/* A name set by hand, not matching the uid sudo gave, or no such user: not believed. */
	snprintf(want, sizeof(want), "%s (uid %u)", pw ? pw->pw_name : "?", (unsigned)getuid());
	assert_int_equal(setenv("SUDO_UID", "1234", 1), 0);
	rules_actor(buf, sizeof(buf));
	assert_string_equal(buf, want);
	assert_int_equal(setenv("SUDO_USER", "no-such-user-here", 1), 0);
	rules_actor(buf, sizeof(buf));
	assert_string_equal(buf, want);
	assert_int_equal(unsetenv("SUDO_UID"), 0);
	assert_int_equal(setenv("SUDO_USER", "nobody", 1), 0);
	rules_actor(buf, sizeof(buf));
	assert_string_equal(buf, want);

	if (keep)
		assert_int_equal(setenv("SUDO_USER", keep, 1), 0);
	else
		assert_int_equal(unsetenv("SUDO_USER"), 0);
	free(keep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_add_suffix, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_add_exact, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_add_longest_name, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_add_duplicate, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_add_other_scope, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_add_invalid, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_add_bad_mode, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_set, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_set_only_that_rule, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_set_missing, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_rm, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_default, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_changes_event_seq, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_version, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_poll, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_load_empty, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_load, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_load_snapshot, setup_store, teardown),
		cmocka_unit_test(test_actor),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
