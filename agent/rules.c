// SPDX-License-Identifier: MIT
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include "log.h"
#include "parse.h"
#include "policy.h"
#include "rules.h"
#include "store.h"

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void rules_actor(char *buf, size_t len)
{
	const char *sudo = getenv("SUDO_USER"), *sudo_uid = getenv("SUDO_UID");
	struct passwd *pw = getpwuid(getuid()), *spw;
	char uid[32], suid[32], name[64];

	/* Copied now: getpwnam may reuse the buffer getpwuid returned. */
	snprintf(name, sizeof(name), "%s", pw ? pw->pw_name : "?");
	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	/*
	 * sudo's account of who asked, taken only when its two variables agree with the user
	 * database (anyone can set one of them by hand).
	 */
	if (sudo && *sudo && sudo_uid && (spw = getpwnam(sudo)) &&
	    snprintf(suid, sizeof(suid), "%u", (unsigned)spw->pw_uid) > 0 && !strcmp(suid, sudo_uid))
		snprintf(buf, len, "%s (uid %s via sudo from uid %s)", sudo, uid, suid);
	else
		snprintf(buf, len, "%s (uid %s)", name, uid);
}

/* One statement with text parameters bound in order (NULL binds NULL); stepped once. */
static int exec_bound(struct store *s, const char *sql, int *ret_changes, int64_t *ret_int,
		      int n, const char *const *args)
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return store_errno_of(rc);
	for (int i = 0; i < n; i++)
		sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && ret_int)
		*ret_int = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE && ret_int)
		*ret_int = -2; /* no row */
	sqlite3_finalize(st);
	if (ret_changes)
		*ret_changes = sqlite3_changes(db);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_errno_of(rc);
}

struct change_row {
	const char *action;
	int64_t rule_id;       /* 0: none */
	const char *scope, *pattern, *old_mode, *new_mode, *note, *by;
};

/* The history row, with an id of the event sequence, and the version agents poll. */
static int record_change(struct store *s, const struct change_row *c)
{
	char ids[2][32], time[32];
	int64_t id;
	int r = store_next_event_id(s, &id);

	if (r < 0)
		return r;
	snprintf(ids[0], sizeof(ids[0]), "%lld", (long long)id);
	snprintf(ids[1], sizeof(ids[1]), "%lld", (long long)c->rule_id);
	snprintf(time, sizeof(time), "%lld", (long long)wall_ns());
	r = exec_bound(s,
		       "INSERT INTO rule_changes (id, time_ns, by, action, rule_id, scope, pattern,"
		       " old_mode, new_mode, note) VALUES (CAST(?1 AS INTEGER), CAST(?2 AS INTEGER),"
		       " ?3, ?4, nullif(CAST(?5 AS INTEGER), 0), ?6, ?7, ?8, ?9, ?10)",
		       NULL, NULL, 10,
		       (const char *const[]){ ids[0], time, c->by, c->action, ids[1], c->scope,
					      c->pattern, c->old_mode, c->new_mode, c->note });
	if (r == 0)
		r = exec_bound(s,
			       "INSERT INTO agent_state (key, value) VALUES ('rules_version', 1)"
			       " ON CONFLICT (key) DO UPDATE SET value = value + 1",
			       NULL, NULL, 0, NULL);
	return r;
}

/* The pattern of a change, normalised: name and how it matches, as the table holds them. */
struct pattern {
	char name[POLICY_NAME_MAX];
	char text[POLICY_NAME_MAX + 1];
	const char *match;
};

static int pattern_of(const struct rule_change *c, struct pattern *ret)
{
	uint8_t match;
	const char *why;

	if (policy_parse_pattern(c->pattern, ret->name, &match, &why) < 0)
		return -EINVAL;
	policy_format_pattern(ret->name, match, ret->text, sizeof(ret->text));
	ret->match = match == POLICY_EXACT ? "exact" : "suffix";
	return 0;
}

/* The rule's id and mode: 0 found, -ENOENT not. */
static int rule_find(struct store *s, const char *scope, const struct pattern *p, int64_t *ret_id,
		     int *ret_mode)
{
	int64_t id, mode;
	int r;

	r = exec_bound(s, "SELECT id FROM rules WHERE scope = ? AND name = ? AND match = ?", NULL,
		       &id, 3, (const char *const[]){ scope, p->name, p->match });
	if (r < 0)
		return r;
	if (id < 0)
		return -ENOENT;
	r = exec_bound(s, "SELECT CASE mode WHEN 'allow' THEN 0 WHEN 'monitor' THEN 1 ELSE 2 END"
			  " FROM rules WHERE scope = ? AND name = ? AND match = ?",
		       NULL, &mode, 3, (const char *const[]){ scope, p->name, p->match });
	*ret_id = id;
	*ret_mode = (int)mode;
	return r;
}

/* Runs fn inside one write transaction: committed if it returns 0, else rolled back. */
static int in_transaction(struct store *s, int (*fn)(struct store *, const struct rule_change *,
						      void *),
			  const struct rule_change *c, void *out)
{
	int r;

	/* What the tables' checks would refuse, refused here with a reason a caller can use. */
	if (c->mode > POLICY_ENFORCE || !c->scope || (c->scope[0] && parse_scope(c->scope) < 0))
		return -EINVAL;
	r = store_begin(s);

	if (r < 0)
		return r;
	r = fn(s, c, out);
	if (r == 0)
		r = store_commit(s);
	if (r < 0)
		store_rollback(s);
	return r;
}

static int do_add(struct store *s, const struct rule_change *c, void *out)
{
	struct pattern p;
	char now[32];
	int64_t id;
	int mode, r;

	if (pattern_of(c, &p) < 0)
		return -EINVAL;
	r = rule_find(s, c->scope, &p, &id, &mode);
	if (r != -ENOENT)
		return r < 0 ? r : -EEXIST;
	snprintf(now, sizeof(now), "%lld", (long long)wall_ns());
	r = exec_bound(s,
		       "INSERT INTO rules (pattern, name, match, mode, scope, note, created_ns,"
		       " created_by, updated_ns, updated_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
		       " CAST(?7 AS INTEGER), ?8, CAST(?7 AS INTEGER), ?8)",
		       NULL, NULL, 8,
		       (const char *const[]){ p.text, p.name, p.match, policy_mode_name(c->mode),
					      c->scope, c->note, now, c->by });
	if (r < 0)
		return r;
	id = sqlite3_last_insert_rowid(store_db(s));
	*(int64_t *)out = id;
	return record_change(s, &(struct change_row){
					.action = "add", .rule_id = id, .scope = c->scope,
					.pattern = p.text, .new_mode = policy_mode_name(c->mode),
					.note = c->note, .by = c->by });
}

struct add_many {
	const struct rule_change *c;
	size_t n;
};

static int do_add_many(struct store *s, const struct rule_change *unused, void *out)
{
	const struct add_many *m = out;
	int64_t id;

	(void)unused;
	for (size_t i = 0; i < m->n; i++) {
		const struct rule_change *c = &m->c[i];
		int r;

		if (c->mode > POLICY_ENFORCE || !c->scope || (c->scope[0] && parse_scope(c->scope) < 0))
			return -EINVAL;
		r = do_add(s, c, &id);
		if (r < 0)
			return r;
	}
	return 0;
}

int rules_add_many(struct store *s, const struct rule_change *c, size_t n)
{
	struct add_many m = { .c = c, .n = n };

	if (n == 0)
		return 0;
	return in_transaction(s, do_add_many, &c[0], &m);
}

int rules_add(struct store *s, const struct rule_change *c, int64_t *ret_id)
{
	int64_t id = 0;
	int r = in_transaction(s, do_add, c, &id);

	if (r == 0 && ret_id)
		*ret_id = id;
	return r;
}

static int do_set(struct store *s, const struct rule_change *c, void *out)
{
	struct pattern p;
	char now[32], ids[32];
	int64_t id;
	int r;

	if (pattern_of(c, &p) < 0)
		return -EINVAL;
	r = rule_find(s, c->scope, &p, &id, (int *)out);
	if (r < 0)
		return r;
	if (*(int *)out == c->mode && !c->note)
		return -EALREADY; /* nothing to change, nothing to record */
	snprintf(now, sizeof(now), "%lld", (long long)wall_ns());
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	r = exec_bound(s,
		       "UPDATE rules SET mode = ?1, note = coalesce(?2, note),"
		       " updated_ns = CAST(?3 AS INTEGER), updated_by = ?4"
		       " WHERE id = CAST(?5 AS INTEGER)",
		       NULL, NULL, 5,
		       (const char *const[]){ policy_mode_name(c->mode), c->note, now, c->by, ids });
	if (r < 0)
		return r;
	return record_change(s, &(struct change_row){
					.action = "set", .rule_id = id, .scope = c->scope,
					.pattern = p.text, .old_mode = policy_mode_name(*(int *)out),
					.new_mode = policy_mode_name(c->mode), .note = c->note,
					.by = c->by });
}

/* A change that reports the mode before it: -1 when there was none, or on failure. */
static int change_with_old(struct store *s,
			   int (*fn)(struct store *, const struct rule_change *, void *),
			   const struct rule_change *c, int *ret_old_mode)
{
	int old = -1;
	int r = in_transaction(s, fn, c, &old);

	if (ret_old_mode)
		*ret_old_mode = r == 0 ? old : -1;
	return r;
}

int rules_set(struct store *s, const struct rule_change *c, int *ret_old_mode)
{
	return change_with_old(s, do_set, c, ret_old_mode);
}

static int do_rm(struct store *s, const struct rule_change *c, void *out)
{
	struct pattern p;
	char ids[32];
	int64_t id;
	int r;

	if (pattern_of(c, &p) < 0)
		return -EINVAL;
	r = rule_find(s, c->scope, &p, &id, (int *)out);
	if (r < 0)
		return r;
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	r = exec_bound(s, "DELETE FROM rules WHERE id = CAST(? AS INTEGER)", NULL, NULL, 1,
		       (const char *const[]){ ids });
	if (r < 0)
		return r;
	return record_change(s, &(struct change_row){
					.action = "rm", .rule_id = id, .scope = c->scope,
					.pattern = p.text, .old_mode = policy_mode_name(*(int *)out),
					.note = c->note, .by = c->by });
}

int rules_rm(struct store *s, const struct rule_change *c, int *ret_old_mode)
{
	return change_with_old(s, do_rm, c, ret_old_mode);
}

static int do_default(struct store *s, const struct rule_change *c, void *out)
{
	char now[32];
	int64_t old;
	int r;

	r = exec_bound(s,
		       "SELECT CASE mode WHEN 'allow' THEN 0 WHEN 'monitor' THEN 1 ELSE 2 END"
		       " FROM scope_defaults WHERE scope = ?",
		       NULL, &old, 1, (const char *const[]){ c->scope });
	if (r < 0)
		return r;
	*(int *)out = old < 0 ? -1 : (int)old;
	if (old == c->mode && !c->note)
		return -EALREADY;
	snprintf(now, sizeof(now), "%lld", (long long)wall_ns());
	r = exec_bound(s,
		       "INSERT INTO scope_defaults (scope, mode, updated_ns, updated_by)"
		       " VALUES (?1, ?2, CAST(?3 AS INTEGER), ?4) ON CONFLICT (scope) DO UPDATE SET"
		       " mode = excluded.mode, updated_ns = excluded.updated_ns,"
		       " updated_by = excluded.updated_by",
		       NULL, NULL, 4,
		       (const char *const[]){ c->scope, policy_mode_name(c->mode), now, c->by });
	if (r < 0)
		return r;
	return record_change(s, &(struct change_row){
					.action = "default", .scope = c->scope,
					.old_mode = old < 0 ? NULL : policy_mode_name((int)old),
					.new_mode = policy_mode_name(c->mode), .note = c->note,
					.by = c->by });
}

int rules_set_default(struct store *s, const struct rule_change *c, int *ret_old_mode)
{
	return change_with_old(s, do_default, c, ret_old_mode);
}

int rules_version(struct store *s, int64_t *ret)
{
	int64_t v = 0;
	int r = store_get_state(s, "rules_version", &v);

	if (r < 0)
		return r;
	*ret = v;
	return 0;
}

int rules_poll(struct store *s, struct rules_cursor *c)
{
	int64_t dv, rv;
	int r;

	r = exec_bound(s, "PRAGMA data_version", NULL, &dv, 0, NULL);
	if (r < 0)
		return r;
	if (dv == c->data_version && c->rules_version >= 0)
		return 0;
	c->data_version = dv;
	r = rules_version(s, &rv);
	if (r < 0)
		return r;
	if (rv == c->rules_version)
		return 0;
	c->rules_version = rv;
	return 1;
}

/* Rows of one query into an array grown as needed; fn fills one element from a row. */
static int load_rows(struct store *s, const char *sql, size_t elem, void **ret, size_t *n,
		     int (*fn)(sqlite3_stmt *, void *))
{
	sqlite3_stmt *st;
	size_t cap = 0;
	char *arr = NULL;
	int rc;

	*n = 0;
	rc = sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return store_errno_of(rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == POLICY_RULES_MAX) {
			rc = SQLITE_TOOBIG;
			break;
		}
		if (*n == cap) {
			char *grown = realloc(arr, (cap ? cap * 2 : 64) * elem);

			if (!grown) {
				rc = SQLITE_NOMEM;
				break;
			}
			arr = grown;
			cap = cap ? cap * 2 : 64;
		}
		memset(arr + *n * elem, 0, elem);
		if (fn(st, arr + *n * elem) == 0)
			(*n)++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(arr);
		return rc == SQLITE_TOOBIG ? -E2BIG : store_errno_of(rc);
	}
	*ret = arr;
	return 0;
}

static void copy_text(sqlite3_stmt *st, int col, char *out, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	snprintf(out, len, "%s", t ? (const char *)t : "");
}

static uint8_t mode_of(sqlite3_stmt *st, int col)
{
	uint8_t m = POLICY_ALLOW;

	policy_parse_mode((const char *)sqlite3_column_text(st, col), &m);
	return m;
}

/*
 * A scope names cgroup directories the agent creates: a row written by hand with one that
 * `nettrail policy` would refuse (`../x`) is left out, and said so.
 */
static int scope_ok(const char *scope, const char *what)
{
	if (!scope[0] || parse_scope(scope) == 0)
		return 0;
	log_warn("%s for scope '%s' left out: not a valid scope name", what, scope);
	return -EINVAL;
}

static int rule_from_row(sqlite3_stmt *st, void *out)
{
	struct policy_rule *r = out;
	char name[POLICY_NAME_MAX];
	const char *why;
	uint8_t match;

	r->id = sqlite3_column_int64(st, 0);
	copy_text(st, 1, r->name, sizeof(r->name));
	r->match = !strcmp((const char *)sqlite3_column_text(st, 2), "exact") ? POLICY_EXACT :
										  POLICY_SUFFIX;
	r->mode = mode_of(st, 3);
	copy_text(st, 4, r->scope, sizeof(r->scope));
	if (policy_parse_pattern(r->name, name, &match, &why) < 0 || strcmp(name, r->name)) {
		log_warn("rule %lld (%s) left out: %s", (long long)r->id, r->name,
			 "not a valid name");
		return -EINVAL;
	}
	return scope_ok(r->scope, "a rule");
}

static int default_from_row(sqlite3_stmt *st, void *out)
{
	struct policy_default *d = out;

	copy_text(st, 0, d->scope, sizeof(d->scope));
	d->mode = mode_of(st, 1);
	return scope_ok(d->scope, "a default");
}

int rules_load(struct store *s, struct policy **ret)
{
	void *rules = NULL, *defs = NULL;
	size_t n = 0, nd = 0;
	int r;

	r = load_rows(s, "SELECT id, name, match, mode, scope FROM rules", sizeof(struct policy_rule),
		      &rules, &n, rule_from_row);
	if (r == 0)
		r = load_rows(s, "SELECT scope, mode FROM scope_defaults",
			      sizeof(struct policy_default), &defs, &nd, default_from_row);
	if (r == 0) {
		struct policy *p = policy_build(rules, n, defs, nd);

		if (p)
			*ret = p;
		else
			r = -errno;
	}
	free(rules);
	free(defs);
	return r;
}
