// SPDX-License-Identifier: MIT
/*
 * Unit tests for agent/store.c and agent/report.c against real SQLite files: schema creation
 * and migration, refusing databases it must not touch, read-only opens, runs, processes,
 * batched connection inserts (with their domain, or a unix socket), DNS queries and their
 * answers, pruning, the `dependencies` view, the CSV report, lost-event counting and the
 * agent's key/value state. Each test gets its own mkdtemp directory.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>
#include "dns.h"
#include "event.h"
#include "report.h"
#include "store.h"
#include "tmpdir.h"

#define T0 1700000000123456789LL /* 2023-11-14T22:13:20.123456789Z */
#define SEC 1000000000LL

struct fixture {
	char dir[1024];
	char path[1024 + 16]; /* dir/nettrail.db */
	struct store *s;     /* opened by setup_store, closed by teardown */
};

/* ---- fixtures -------------------------------------------------------------------------- */

static int teardown(void **state);

static int setup_dir(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (tmpdir_make("store", f->dir, sizeof(f->dir), f->path, sizeof(f->path)) < 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int setup_store(void **state)
{
	struct fixture *f;
	int r;

	if (setup_dir(state) < 0)
		return -1;
	f = *state;
	r = store_open(f->path, 0, &f->s);
	if (r < 0) {
		fprintf(stderr, "store_open(%s): %d\n", f->path, r);
		f->s = NULL;
		teardown(state);
		return -1;
	}
	return 0;
}

/* Closes the store and removes the directory with every file SQLite left in it. */
static int teardown(void **state)
{
	struct fixture *f = *state;

	if (!f)
		return 0;
	store_close(f->s);
	tmpdir_remove(f->dir);
	free(f);
	*state = NULL;
	return 0;
}

/* ---- helpers --------------------------------------------------------------------------- */

/* The single integer an SQL query returns. */
static int64_t sql_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("prepare %s: %s", sql, sqlite3_errmsg(db));
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The single text value an SQL query returns, into buf ("(null)" for NULL). */
static const char *sql_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *st;
	const unsigned char *t;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("prepare %s: %s", sql, sqlite3_errmsg(db));
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	t = sqlite3_column_text(st, 0);
	snprintf(buf, len, "%s", t ? (const char *)t : "(null)");
	sqlite3_finalize(st);
	return buf;
}

static void sql_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : "?");
}

/*
 * The single row an SQL query returns, its columns joined by '|', NULL as "NULL": one
 * assertion checks every column, and a failure shows the whole row.
 */
static const char *sql_row(sqlite3 *db, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *st;
	size_t used = 0;

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

/* A plain SQLite handle, as the sqlite3 shell or an older nettrail would use. */
static sqlite3 *raw_open(const char *path, int readonly)
{
	sqlite3 *db = NULL;
	int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

	assert_int_equal(sqlite3_open_v2(path, &db, flags, NULL), SQLITE_OK);
	return db;
}

static int64_t raw_user_version(const char *path)
{
	sqlite3 *db = raw_open(path, 1);
	int64_t v = sql_int(db, "PRAGMA user_version");

	sqlite3_close(db);
	return v;
}

/* Applies "-- migration 1" .. "-- migration upto" of the embedded schema by hand. */
static void raw_migrate(sqlite3 *db, int upto)
{
	for (int v = 1; v <= upto; v++) {
		char marker[32], pragma[64], *sql;
		const char *start, *end;

		snprintf(marker, sizeof(marker), "\n-- migration %d\n", v);
		start = strstr(nt_schema_sql, marker);
		assert_non_null(start);
		start += strlen(marker);
		end = strstr(start, "\n-- migration ");
		if (!end)
			end = start + strlen(start);
		sql = strndup(start, (size_t)(end - start));
		assert_non_null(sql);
		sql_exec(db, sql);
		free(sql);
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v);
		sql_exec(db, pragma);
	}
}

static int same_set(const char *list, const char *const *items, int n);

static int64_t put_process(struct store *s, uint32_t pid, uint64_t start_ns, const char *cmdline,
			   const char *scope, int64_t run_id)
{
	struct process_row p = {
		.pid = pid, .start_ns = start_ns, .ppid = 1, .uid = 1000, .gid = 1000,
		.comm = "proc", .exe = "/usr/bin/proc", .cmdline = cmdline, .cmdline_from_proc = 1,
		.cgroup_id = 77, .scope = scope, .run_id = run_id, .first_seen_ns = T0,
	};
	int64_t id = -1;

	assert_int_equal(store_put_process(s, &p, &id), 0);
	assert_true(id > 0);
	return id;
}

static struct conn_record conn(int family, const char *addr, uint16_t port, uint8_t proto,
			       uint8_t kind, uint8_t verdict, int64_t time_ns)
{
	struct conn_record c = {
		.time_ns = time_ns, .start_ns = 5, .cgroup_id = 77, .pid = 100, .ppid = 1,
		.uid = 1000, .gid = 1000, .port = port, .family = (uint8_t)family, .proto = proto,
		.kind = kind, .verdict = verdict,
	};

	assert_int_equal(inet_pton(family, addr, c.addr), 1);
	return c;
}

static void insert_conn(struct store *s, int family, const char *addr, uint16_t port,
			uint8_t proto, uint8_t verdict, int64_t time_ns, int64_t process_id,
			const char *scope, int64_t run_id)
{
	struct conn_record c = conn(family, addr, port, proto, NT_EV_CONNECT, verdict, time_ns);

	assert_int_equal(store_insert_connection(s, &c, process_id, scope, run_id, NULL), 0);
}

static int64_t begin_run(struct store *s, const char *scope, uint64_t cgroup_id)
{
	struct run_row r = {
		.scope = scope, .cgroup = "/sys/fs/cgroup/nettrail/x", .cgroup_id = cgroup_id,
		.command = "make test", .host = "builder", .mode = "agent", .started_ns = T0,
	};
	int64_t id = -1;

	assert_int_equal(store_run_begin(s, &r, &id), 0);
	assert_true(id > 0);
	return id;
}

/* ---- opening, schema, migrations ------------------------------------------------------- */

/* A new file gets the whole schema at the latest version, in WAL mode. */
static void test_open_new(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	char buf[64];

	assert_true(store_schema_latest() >= 1);
	assert_int_equal(store_schema_version(f->s), store_schema_latest());
	assert_string_equal(sql_text(db, "PRAGMA journal_mode", buf, sizeof(buf)), "wal");
	assert_int_equal(sql_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN"
				     " ('runs', 'cgroups', 'processes', 'connections', 'stats',"
				     " 'agent_state', 'events_lost', 'dependencies')"), 8);
	/* Another program sees the same version in the file. */
	assert_int_equal(raw_user_version(f->path), store_schema_latest());
}

/*
 * A database written by the previous schema version (user_version 0 with one migration)
 * is migrated to the latest on open, and what was in it survives.
 */
static void test_migrate_from_previous(void **state)
{
	struct fixture *f = *state;
	int prev = store_schema_latest() - 1;
	sqlite3 *db = raw_open(f->path, 0);
	int64_t v;

	raw_migrate(db, prev);
	sql_exec(db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
		     " INSERT INTO notes (body) VALUES ('one'), ('two'), ('three')");
	if (prev >= 1)
		sql_exec(db, "INSERT INTO agent_state (key, value) VALUES ('before', 7)");
	sqlite3_close(db);
	assert_int_equal(raw_user_version(f->path), prev);

	assert_int_equal(store_open(f->path, 0, &f->s), 0);
	assert_int_equal(store_schema_version(f->s), store_schema_latest());
	assert_int_equal(sql_int(store_db(f->s), "SELECT count(*) FROM notes"), 3);
	assert_int_equal(sql_int(store_db(f->s), "SELECT count(*) FROM notes WHERE body = 'two'"), 1);
	if (prev >= 1) {
		assert_int_equal(store_get_state(f->s, "before", &v), 1);
		assert_int_equal(v, 7);
	}
	/* The migrated database is fully usable. */
	assert_int_equal(store_set_state(f->s, "after", 8), 0);
}

/* Opening an up-to-date database again changes nothing and keeps every row. */
static void test_reopen_idempotent(void **state)
{
	struct fixture *f = *state;
	int64_t pid_row, id, v, objects;

	pid_row = put_process(f->s, 100, 5, "a b", "web", 0);
	assert_int_equal(store_set_state(f->s, "synced_ns", 1234), 0);
	objects = sql_int(store_db(f->s), "SELECT count(*) FROM sqlite_master");
	store_close(f->s);
	f->s = NULL;

	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_open(f->path, 0, &f->s), 0);
		assert_int_equal(store_schema_version(f->s), store_schema_latest());
		assert_int_equal(sql_int(store_db(f->s), "SELECT count(*) FROM sqlite_master"), objects);
		assert_int_equal(sql_int(store_db(f->s), "SELECT count(*) FROM processes"), 1);
		assert_int_equal(store_find_process(f->s, 100, 5, 0, &id), 1);
		assert_int_equal(id, pid_row);
		assert_int_equal(store_get_state(f->s, "synced_ns", &v), 1);
		assert_int_equal(v, 1234);
		store_close(f->s);
		f->s = NULL;
	}
}

/* Migrating to a version this build does not have fails and leaves the version alone. */
static void test_migrate_unknown_version(void **state)
{
	struct fixture *f = *state;
	int latest = store_schema_latest();

	assert_int_equal(store_migrate(f->s, latest), 0); /* nothing to do */
	assert_true(store_migrate(f->s, latest + 1) < 0);
	assert_int_equal(store_schema_version(f->s), latest);
}

/* A database from a newer nettrail is refused with -EPROTO, and its version is not touched. */
static void test_newer_version(void **state)
{
	struct fixture *f = *state;
	int newer = store_schema_latest() + 1;
	char pragma[64];
	sqlite3 *db = raw_open(f->path, 0);
	struct store *s = NULL;

	snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", newer);
	sql_exec(db, "CREATE TABLE future (x INTEGER); INSERT INTO future VALUES (42)");
	sql_exec(db, pragma);
	sqlite3_close(db);

	assert_int_equal(store_open(f->path, 0, &s), -EPROTO);
	assert_int_equal(raw_user_version(f->path), newer);
	assert_int_equal(store_open(f->path, STORE_READONLY, &s), -EPROTO);
	assert_int_equal(raw_user_version(f->path), newer);

	db = raw_open(f->path, 1);
	assert_int_equal(sql_int(db, "SELECT x FROM future"), 42);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'connections'"), 0);
	sqlite3_close(db);
}

/* A file that is not a database is an error, not a crash, and is left as it was. */
static void test_not_a_database(void **state)
{
	struct fixture *f = *state;
	unsigned char garbage[4096], back[sizeof(garbage) + 1];
	struct store *s = NULL;
	FILE *fp;

	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (unsigned char)(i * 131 + 7);
	fp = fopen(f->path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(garbage, 1, sizeof(garbage), fp), sizeof(garbage));
	fclose(fp);

	assert_true(store_open(f->path, 0, &s) < 0);
	assert_true(store_open(f->path, STORE_READONLY, &s) < 0);

	fp = fopen(f->path, "rb");
	assert_non_null(fp);
	assert_int_equal(fread(back, 1, sizeof(back), fp), sizeof(garbage));
	fclose(fp);
	assert_memory_equal(back, garbage, sizeof(garbage));
}

/* A path in a directory that does not exist is an error; nothing gets created. */
static void test_missing_directory(void **state)
{
	struct fixture *f = *state;
	char sub[1024 + 16], path[1024 + 32];
	struct store *s = NULL;
	struct stat stb;

	snprintf(sub, sizeof(sub), "%s/missing", f->dir);
	snprintf(path, sizeof(path), "%s/nettrail.db", sub);
	assert_true(store_open(path, 0, &s) < 0);
	assert_true(store_open(path, STORE_READONLY, &s) < 0);
	assert_int_equal(stat(sub, &stb), -1);
}

/* STORE_READONLY on a missing file fails and does not create it. */
static void test_readonly_missing_file(void **state)
{
	struct fixture *f = *state;
	struct store *s = NULL;

	assert_true(store_open(f->path, STORE_READONLY, &s) < 0);
	assert_int_equal(access(f->path, F_OK), -1);
}

/* Reports open the database read-only: reading works, writing is refused with -EROFS. */
static void test_readonly_uptodate(void **state)
{
	struct fixture *f = *state;
	struct store *ro = NULL;
	int64_t proc, id = 0, v = 0;

	proc = put_process(f->s, 100, 5, "a b", "web", 0);
	assert_int_equal(store_set_state(f->s, "pid", 4242), 0);
	store_close(f->s);
	f->s = NULL;

	assert_int_equal(store_open(f->path, STORE_READONLY, &ro), 0);
	assert_int_equal(store_schema_version(ro), store_schema_latest());
	assert_int_equal(store_get_state(ro, "pid", &v), 1);
	assert_int_equal(v, 4242);
	assert_int_equal(store_find_process(ro, 100, 5, 0, &id), 1);
	assert_int_equal(id, proc);
	assert_int_equal(sql_int(store_db(ro), "SELECT count(*) FROM processes"), 1);
	assert_int_equal(store_set_state(ro, "pid", 1), -EROFS);
	store_close(ro);

	/* A read-only open while the writer is open works too (the normal report case). */
	assert_int_equal(store_open(f->path, 0, &f->s), 0);
	assert_int_equal(store_set_state(f->s, "pid", 99), 0);
	assert_int_equal(store_open(f->path, STORE_READONLY, &ro), 0);
	assert_int_equal(store_get_state(ro, "pid", &v), 1);
	assert_int_equal(v, 99);
	store_close(ro);
}

/* A read-only open cannot migrate, so an older database is refused with -ENOMEDIUM. */
static void test_readonly_older(void **state)
{
	struct fixture *f = *state;
	int prev = store_schema_latest() - 1;
	sqlite3 *db = raw_open(f->path, 0);
	struct store *s = NULL;

	raw_migrate(db, prev);
	sql_exec(db, "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('kept')");
	sqlite3_close(db);

	assert_int_equal(store_open(f->path, STORE_READONLY, &s), -ENOMEDIUM);
	assert_int_equal(raw_user_version(f->path), prev);
}

/*
 * A database of schema version 1 with a run, a process and two connections, as an older
 * nettrail wrote them: store_open migrates it, every row keeps its values, the DNS tables
 * appear, and the `dependencies` view (now every domain, not the largest) shows the old rows.
 */
static void test_migrate_1_to_2_keeps_rows(void **state)
{
	static const char *const v1_rows =
		"INSERT INTO runs (id, scope, cgroup, cgroup_id, command, host, mode, boot_id,"
		" started_ns, ended_ns, exit_status) VALUES (7, 'web', '/sys/fs/cgroup/nettrail/web',"
		" 4711, 'make test', 'builder', 'agent', 'old-boot', 1700000000123456789,"
		" 1700000005123456789, 2);"
		"INSERT INTO processes (id, pid, start_ns, exec_id, ppid, uid, gid, comm, exe, cmdline,"
		" cmdline_source, cgroup_id, scope, run_id, first_seen_ns, boot_id) VALUES (42, 100, 5,"
		" 3, 1, 1000, 1001, 'curl', '/usr/bin/curl', 'curl https://a', 'proc', 4711, 'web', 7,"
		" 1700000000123456789, 'old-boot');"
		"INSERT INTO connections (id, time_ns, process_id, tid, run_id, scope, cgroup_id, kind,"
		" family, proto, addr, addr_key, port, verdict) VALUES"
		" (1, 1700000000123456789, 42, 101, 7, 'web', 4711, 'connect', 'ipv4', 'tcp',"
		" '10.0.0.1', '00000000000000000000ffff0a000001', 443, 'allowed'),"
		" (2, 1700000001123456789, 42, 102, 7, 'web', 4711, 'sendto', 'ipv6', 'udp',"
		" '2001:db8::1', '20010db8000000000000000000000001', 53, 'would_block')";
	static const char *const domains[] = { "a.example", "b.example" };
	struct fixture *f = *state;
	sqlite3 *db = raw_open(f->path, 0);
	char buf[512];

	raw_migrate(db, 1);
	sql_exec(db, v1_rows);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'dns_queries'"), 0);
	sqlite3_close(db);
	assert_int_equal(raw_user_version(f->path), 1);

	assert_int_equal(store_open(f->path, 0, &f->s), 0);
	assert_int_equal(store_schema_version(f->s), store_schema_latest());
	assert_int_equal(raw_user_version(f->path), store_schema_latest());
	db = store_db(f->s);

	/* Every row, every column, as it was written. */
	assert_int_equal(sql_int(db, "SELECT count(*) FROM runs"), 1);
	assert_string_equal(sql_row(db, "SELECT id, scope, cgroup, cgroup_id, command, host, mode,"
				    " boot_id, started_ns, ended_ns, exit_status, started, ended FROM runs",
				    buf, sizeof(buf)),
			    "7|web|/sys/fs/cgroup/nettrail/web|4711|make test|builder|agent|old-boot|"
			    "1700000000123456789|1700000005123456789|2|"
			    "2023-11-14T22:13:20.123Z|2023-11-14T22:13:25.123Z");
	assert_int_equal(sql_int(db, "SELECT count(*) FROM processes"), 1);
	assert_string_equal(sql_row(db, "SELECT id, pid, start_ns, exec_id, ppid, uid, gid, comm, exe,"
				    " cmdline, cmdline_source, cgroup_id, scope, run_id, first_seen_ns,"
				    " boot_id FROM processes", buf, sizeof(buf)),
			    "42|100|5|3|1|1000|1001|curl|/usr/bin/curl|curl https://a|proc|4711|web|7|"
			    "1700000000123456789|old-boot");
	assert_int_equal(sql_int(db, "SELECT count(*) FROM connections"), 2);
	assert_string_equal(sql_row(db, "SELECT id, time_ns, process_id, tid, run_id, scope, cgroup_id,"
				    " kind, family, proto, addr, addr_key, port, verdict, domain, rule, time"
				    " FROM connections WHERE id = 1", buf, sizeof(buf)),
			    "1|1700000000123456789|42|101|7|web|4711|connect|ipv4|tcp|10.0.0.1|"
			    "00000000000000000000ffff0a000001|443|allowed|NULL|NULL|2023-11-14T22:13:20.123Z");
	assert_string_equal(sql_row(db, "SELECT id, time_ns, process_id, tid, run_id, scope, cgroup_id,"
				    " kind, family, proto, addr, addr_key, port, verdict, domain, rule"
				    " FROM connections WHERE id = 2", buf, sizeof(buf)),
			    "2|1700000001123456789|42|102|7|web|4711|sendto|ipv6|udp|2001:db8::1|"
			    "20010db8000000000000000000000001|53|would_block|NULL|NULL");

	/* The DNS tables are there, empty, and usable. */
	assert_int_equal(sql_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				     " AND name IN ('dns_queries', 'dns_answers')"), 2);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_queries"), 0);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_answers"), 0);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'view'"
				     " AND name = 'dependencies'"
				     " AND sql LIKE '%group_concat(DISTINCT domain)%'"), 1);

	/* The view shows the old rows, with no domain. */
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dependencies"), 2);
	assert_string_equal(sql_row(db, "SELECT scope, domain, proto, addr, port, attempts, first_seen,"
				    " last_seen, processes, verdicts, first_cmdline FROM dependencies"
				    " WHERE proto = 'tcp'", buf, sizeof(buf)),
			    "web|NULL|tcp|10.0.0.1|443|1|2023-11-14T22:13:20.123Z|"
			    "2023-11-14T22:13:20.123Z|1|allowed|curl https://a");
	assert_string_equal(sql_row(db, "SELECT scope, domain, proto, addr, port, attempts, first_seen,"
				    " last_seen, processes, verdicts, first_cmdline FROM dependencies"
				    " WHERE proto = 'udp'", buf, sizeof(buf)),
			    "web|NULL|udp|2001:db8::1|53|1|2023-11-14T22:13:21.123Z|"
			    "2023-11-14T22:13:21.123Z|1|would_block|curl https://a");

	/* New rows with two names for the old destination: the view lists both. */
	for (int i = 0; i < 2; i++) {
		struct conn_record c = conn(AF_INET, "10.0.0.1", 443, IPPROTO_TCP, NT_EV_CONNECT,
					    NT_VERDICT_ALLOWED, T0 + (2 + i) * SEC);

		assert_int_equal(store_insert_connection(f->s, &c, 42, "web", 7, domains[i]), 0);
	}
	assert_int_equal(sql_int(db, "SELECT attempts FROM dependencies WHERE proto = 'tcp'"), 3);
	assert_true(same_set(sql_text(db, "SELECT domain FROM dependencies WHERE proto = 'tcp'", buf,
				      sizeof(buf)), domains, 2));
	assert_string_equal(sql_text(db, "SELECT first_cmdline FROM dependencies WHERE proto = 'tcp'",
				     buf, sizeof(buf)), "curl https://a");
}

/* ---- runs ------------------------------------------------------------------------------ */

/* A run is found by its cgroup id (how the agent attributes events), ended, and deleted. */
static void test_runs(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	char scope[64], small[4], buf[64];
	int64_t run, other, found = 0;

	run = begin_run(f->s, "webapp", 4711);
	other = begin_run(f->s, "db", 4712);
	assert_int_not_equal(run, other);

	assert_int_equal(store_find_run(f->s, 4711, &found, scope, sizeof(scope)), 1);
	assert_int_equal(found, run);
	assert_string_equal(scope, "webapp");
	assert_int_equal(store_find_run(f->s, 4712, &found, scope, sizeof(scope)), 1);
	assert_int_equal(found, other);
	assert_string_equal(scope, "db");
	assert_int_equal(store_find_run(f->s, 999, &found, scope, sizeof(scope)), 0);
	/* Cgroup ids start over at each boot: a run of another boot is never this cgroup's. */
	assert_int_equal(sqlite3_exec(db, "INSERT INTO runs (scope, cgroup, cgroup_id, command, host,"
					  " mode, started_ns, boot_id) VALUES ('old', '/x', 5555, 'c',"
					  " 'h', 'agent', 1, 'another-boot')", NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(store_find_run(f->s, 5555, &found, scope, sizeof(scope)), 0);
	assert_int_equal(sqlite3_exec(db, "DELETE FROM runs WHERE boot_id = 'another-boot'", NULL,
				      NULL, NULL), SQLITE_OK);
	/* A short buffer gets a truncated, terminated scope. */
	assert_int_equal(store_find_run(f->s, 4711, &found, small, sizeof(small)), 1);
	assert_string_equal(small, "web");

	assert_int_equal(store_run_end(f->s, run, T0 + 2 * SEC, 130), 0);
	assert_int_equal(sql_int(db, "SELECT exit_status FROM runs WHERE id = 1"), 130);
	assert_int_equal(sql_int(db, "SELECT ended_ns FROM runs WHERE id = 1"), T0 + 2 * SEC);
	assert_string_equal(sql_text(db, "SELECT ended FROM runs WHERE id = 1", buf, sizeof(buf)),
			    "2023-11-14T22:13:22.123Z");
	assert_string_equal(sql_text(db, "SELECT started FROM runs WHERE id = 1", buf, sizeof(buf)),
			    "2023-11-14T22:13:20.123Z");
	assert_int_equal(sql_int(db, "SELECT ended_ns IS NULL FROM runs WHERE id = 2"), 1);

	/* A cgroup used again by a later run (same id) belongs to the later run. */
	{
		int64_t again = begin_run(f->s, "webapp2", 4711);

		assert_int_equal(store_find_run(f->s, 4711, &found, scope, sizeof(scope)), 1);
		assert_int_equal(found, again);
		assert_string_equal(scope, "webapp2");
		assert_int_equal(store_run_delete(f->s, again), 0);
		assert_int_equal(store_find_run(f->s, 4711, &found, scope, sizeof(scope)), 1);
		assert_int_equal(found, run);
	}

	assert_int_equal(store_run_delete(f->s, run), 0);
	assert_int_equal(store_find_run(f->s, 4711, &found, scope, sizeof(scope)), 0);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM runs"), 1);
	assert_int_equal(store_find_run(f->s, 4712, &found, scope, sizeof(scope)), 1);
	assert_int_equal(found, other);
}

/* ---- processes ------------------------------------------------------------------------- */

/* (pid, start_ns) names a process: the same pair gives the same row, a reused pid a new one. */
static void test_processes(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	int64_t a, a2, b, c, id = 0;
	char buf[64];

	assert_int_equal(store_find_process(f->s, 100, 5, 0, &id), 0);

	a = put_process(f->s, 100, 5, "curl http://x", "web", 0);
	assert_int_equal(store_find_process(f->s, 100, 5, 0, &id), 1);
	assert_int_equal(id, a);

	a2 = put_process(f->s, 100, 5, "curl http://x", "web", 0);
	assert_int_equal(a2, a);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM processes"), 1);

	b = put_process(f->s, 100, 6, "other", "web", 0); /* pid reused by a later process */
	assert_int_not_equal(b, a);
	c = put_process(f->s, 101, 5, "third", "web", 0);
	assert_int_not_equal(c, a);
	assert_int_not_equal(c, b);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM processes"), 3);
	assert_int_equal(store_find_process(f->s, 100, 6, 0, &id), 1);
	assert_int_equal(id, b);
	assert_int_equal(store_find_process(f->s, 102, 5, 0, &id), 0);

	/* The same process after an exec is a new image: a row of its own, with its cmdline. */
	{
		struct process_row p = { .pid = 100, .start_ns = 5, .exec_id = 1, .comm = "python3",
					 .cmdline = "python3 after-exec", .scope = "web",
					 .first_seen_ns = 1 };
		int64_t e1;

		assert_int_equal(store_put_process(f->s, &p, &e1), 0);
		assert_int_not_equal(e1, a);
		assert_int_equal(store_find_process(f->s, 100, 5, 1, &id), 1);
		assert_int_equal(id, e1);
		assert_int_equal(store_find_process(f->s, 100, 5, 0, &id), 1);
		assert_int_equal(id, a);
		assert_int_equal(sql_int(db, "SELECT count(*) FROM processes"), 4);
	}

	/* The second put inside a transaction still finds the first row (the agent batches). */
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(put_process(f->s, 100, 6, "other", "web", 0), b);
	assert_int_equal(store_commit(f->s), 0);

	/* A process without exe and with a BPF-captured cmdline. */
	{
		struct process_row p = {
			.pid = 200, .start_ns = 9, .comm = "sh", .exe = NULL, .cmdline = "sh",
			.cmdline_from_proc = 0, .scope = "web", .first_seen_ns = T0,
		};
		assert_int_equal(store_put_process(f->s, &p, &id), 0);
		assert_int_equal(sql_int(db, "SELECT exe IS NULL FROM processes WHERE pid = 200"), 1);
		assert_string_equal(sql_text(db, "SELECT cmdline_source FROM processes WHERE pid = 200",
					     buf, sizeof(buf)), "bpf");
		assert_string_equal(sql_text(db, "SELECT cmdline_source FROM processes WHERE pid = 101",
					     buf, sizeof(buf)), "proc");
	}
}

/* ---- connections ----------------------------------------------------------------------- */

/* 1000 connections in one transaction all land, each column in the form queries expect. */
static void test_connections_batch(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	int64_t proc, run;
	sqlite3_stmt *st;

	run = begin_run(f->s, "web", 4711);
	proc = put_process(f->s, 100, 5, "curl", "web", run);
	assert_int_equal(store_begin(f->s), 0);
	for (int i = 0; i < 1000; i++) {
		struct conn_record c;
		char addr[64];

		if (i == 0)
			c = conn(AF_INET, "127.0.0.1", 80, IPPROTO_TCP, NT_EV_CONNECT,
				 NT_VERDICT_ALLOWED, T0);
		else if (i == 1)
			c = conn(AF_INET6, "2001:db8::1", 53, IPPROTO_UDP, NT_EV_SENDMSG,
				 NT_VERDICT_WOULD_BLOCK, T0 + 1);
		else if (i % 2 == 0) {
			snprintf(addr, sizeof(addr), "10.0.%d.%d", i / 256, i % 256);
			c = conn(AF_INET, addr, (uint16_t)(1000 + i), IPPROTO_TCP, NT_EV_CONNECT,
				 (uint8_t)(i % 3), T0 + i);
		} else {
			snprintf(addr, sizeof(addr), "2001:db8::%x", i);
			c = conn(AF_INET6, addr, (uint16_t)(1000 + i), IPPROTO_UDP, NT_EV_SENDMSG,
				 (uint8_t)(i % 3), T0 + i);
		}
		assert_int_equal(store_insert_connection(f->s, &c, proc, "web", run, NULL), 0);
	}
	assert_int_equal(store_commit(f->s), 0);

	assert_int_equal(sql_int(db, "SELECT count(*) FROM connections"), 1000);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM connections WHERE family = 'ipv4'"), 500);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM connections WHERE family = 'ipv6'"), 500);
	assert_int_equal(sql_int(db, "SELECT count(DISTINCT addr_key) FROM connections"), 1000);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM connections WHERE length(addr_key) != 32"), 0);
	/* Visible to another connection after the commit. */
	{
		sqlite3 *other = raw_open(f->path, 1);

		assert_int_equal(sql_int(other, "SELECT count(*) FROM connections"), 1000);
		sqlite3_close(other);
	}

	/* The first row, column by column. */
	assert_int_equal(sqlite3_prepare_v2(db,
		"SELECT addr, family, proto, kind, verdict, addr_key, port, time, time_ns,"
		" process_id, run_id, scope, cgroup_id FROM connections"
		" WHERE time_ns = 1700000000123456789", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "127.0.0.1");
	assert_string_equal((const char *)sqlite3_column_text(st, 1), "ipv4");
	assert_string_equal((const char *)sqlite3_column_text(st, 2), "tcp");
	assert_string_equal((const char *)sqlite3_column_text(st, 3), "connect");
	assert_string_equal((const char *)sqlite3_column_text(st, 4), "allowed");
	/* The key is readable in `select *`: 32 lowercase hex digits, sortable as text. */
	assert_int_equal(sqlite3_column_type(st, 5), SQLITE_TEXT);
	assert_string_equal((const char *)sqlite3_column_text(st, 5),
			    "00000000000000000000ffff7f000001");
	assert_int_equal(sqlite3_column_int(st, 6), 80);
	assert_string_equal((const char *)sqlite3_column_text(st, 7), "2023-11-14T22:13:20.123Z");
	assert_int_equal(sqlite3_column_int64(st, 8), T0);
	assert_int_equal(sqlite3_column_int64(st, 9), proc);
	assert_int_equal(sqlite3_column_int64(st, 10), run);
	assert_string_equal((const char *)sqlite3_column_text(st, 11), "web");
	assert_int_equal(sqlite3_column_int64(st, 12), 77);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);

	/* The IPv6 row: text form, raw 16-byte key, the UDP/sendto/would_block names. */
	{
		assert_int_equal(sqlite3_prepare_v2(db,
			"SELECT addr, family, proto, kind, verdict, addr_key, port FROM connections"
			" WHERE time_ns = 1700000000123456790", -1, &st, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(st, 0), "2001:db8::1");
		assert_string_equal((const char *)sqlite3_column_text(st, 1), "ipv6");
		assert_string_equal((const char *)sqlite3_column_text(st, 2), "udp");
		assert_string_equal((const char *)sqlite3_column_text(st, 3), "sendto");
		assert_string_equal((const char *)sqlite3_column_text(st, 4), "would_block");
		assert_string_equal((const char *)sqlite3_column_text(st, 5),
				    "20010db8000000000000000000000001");
		assert_int_equal(sqlite3_column_int(st, 6), 53);
		sqlite3_finalize(st);
	}
	/* Rows 2..999 carry verdict i % 3: every verdict name counted right. */
	{
		int want[3] = { 1, 1, 0 }; /* rows 0 (allowed) and 1 (would_block) */

		for (int i = 2; i < 1000; i++)
			want[i % 3]++;
		assert_int_equal(sql_int(db, "SELECT count(*) FROM connections"
					     " WHERE verdict = 'allowed'"), want[0]);
		assert_int_equal(sql_int(db, "SELECT count(*) FROM connections"
					     " WHERE verdict = 'would_block'"), want[1]);
		assert_int_equal(sql_int(db, "SELECT count(*) FROM connections"
					     " WHERE verdict = 'blocked'"), want[2]);
	}
}

/*
 * addr_key orders addresses across families (IPv4 as ::ffff:a.b.c.d), numerically, not as
 * text: ::1 < ::ffff:10.0.0.2 < ::ffff:10.0.0.10 < 2001:db8::1.
 */
static void test_connections_addr_key_order(void **state)
{
	struct fixture *f = *state;
	int64_t proc = put_process(f->s, 100, 5, "x", "web", 0);
	char buf[128];

	insert_conn(f->s, AF_INET6, "2001:db8::1", 1, IPPROTO_TCP, 0, T0, proc, "web", 0);
	insert_conn(f->s, AF_INET, "10.0.0.10", 1, IPPROTO_TCP, 0, T0, proc, "web", 0);
	insert_conn(f->s, AF_INET6, "::1", 1, IPPROTO_TCP, 0, T0, proc, "web", 0);
	insert_conn(f->s, AF_INET, "10.0.0.2", 1, IPPROTO_TCP, 0, T0, proc, "web", 0);
	assert_string_equal(sql_text(store_db(f->s),
		"SELECT group_concat(addr, ' ') FROM (SELECT addr FROM connections ORDER BY addr_key)",
		buf, sizeof(buf)), "::1 10.0.0.2 10.0.0.10 2001:db8::1");
	assert_int_equal(sql_int(store_db(f->s), "SELECT count(*) FROM connections WHERE addr_key"
				 " BETWEEN '00000000000000000000ffff0a000000'"
				 " AND '00000000000000000000ffff0a0000ff'"), 2);
}

/* A rolled-back batch leaves nothing behind, and the store keeps working afterwards. */
static void test_rollback(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	int64_t proc = put_process(f->s, 100, 5, "x", "web", 0);

	assert_int_equal(store_begin(f->s), 0);
	for (int i = 0; i < 10; i++)
		insert_conn(f->s, AF_INET, "10.0.0.1", 443, IPPROTO_TCP, 0, T0 + i, proc, "web", 0);
	assert_int_equal(store_set_state(f->s, "synced_ns", 5), 0);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM connections"), 10);
	store_rollback(f->s);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM connections"), 0);
	{
		int64_t v;

		assert_int_equal(store_get_state(f->s, "synced_ns", &v), 0);
	}
	store_rollback(f->s); /* no transaction open: harmless */

	assert_int_equal(store_begin(f->s), 0);
	insert_conn(f->s, AF_INET, "10.0.0.1", 443, IPPROTO_TCP, 0, T0, proc, "web", 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM connections"), 1);
}

/* WAL: a reader never waits for the writer's open transaction, nor the writer for a reader. */
static void test_wal_readers(void **state)
{
	struct fixture *f = *state;
	int64_t proc = put_process(f->s, 100, 5, "x", "web", 0);
	sqlite3 *reader = raw_open(f->path, 1);

	sqlite3_busy_timeout(reader, 0);
	insert_conn(f->s, AF_INET, "10.0.0.1", 443, IPPROTO_TCP, 0, T0, proc, "web", 0);

	assert_int_equal(store_begin(f->s), 0);
	insert_conn(f->s, AF_INET, "10.0.0.2", 443, IPPROTO_TCP, 0, T0, proc, "web", 0);
	assert_int_equal(sql_int(reader, "SELECT count(*) FROM connections"), 1);

	sql_exec(reader, "BEGIN");
	assert_int_equal(sql_int(reader, "SELECT count(*) FROM connections"), 1);
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(sql_int(reader, "SELECT count(*) FROM connections"), 1); /* its snapshot */
	sql_exec(reader, "COMMIT");
	assert_int_equal(sql_int(reader, "SELECT count(*) FROM connections"), 2);
	sqlite3_close(reader);
}

/* The domain the agent resolved for a connection is stored as given, NULL as NULL. */
static void test_connection_domain(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	int64_t proc = put_process(f->s, 100, 5, "curl", "web", 0);
	struct conn_record named = conn(AF_INET6, "2001:db8::7", 443, IPPROTO_TCP, NT_EV_CONNECT,
					NT_VERDICT_ALLOWED, T0);
	struct conn_record anon = conn(AF_INET, "10.0.0.7", 443, IPPROTO_TCP, NT_EV_CONNECT,
				       NT_VERDICT_ALLOWED, T0 + 1);
	char buf[128];

	assert_int_equal(store_insert_connection(f->s, &named, proc, "web", 0, "api.example.com"), 0);
	assert_int_equal(store_insert_connection(f->s, &anon, proc, "web", 0, NULL), 0);
	assert_string_equal(sql_text(db, "SELECT domain FROM connections WHERE addr = '2001:db8::7'",
				     buf, sizeof(buf)), "api.example.com");
	assert_int_equal(sql_int(db, "SELECT domain IS NULL FROM connections WHERE addr = '10.0.0.7'"), 1);
	assert_string_equal(sql_text(db, "SELECT domain FROM dependencies WHERE addr = '2001:db8::7'",
				     buf, sizeof(buf)), "api.example.com");
}

/*
 * A connect to a local resolver's unix socket (addr[0] indexes the known paths): the path is
 * the address, family and proto 'unix', port 0. An index past the known paths is refused.
 */
static void test_connection_unix(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	int64_t run = begin_run(f->s, "web", 4711);
	int64_t proc = put_process(f->s, 100, 5, "getent hosts a", "web", run);
	struct conn_record c = {
		.time_ns = T0, .start_ns = 5, .cgroup_id = 77, .pid = 100, .tid = 103,
		.family = AF_UNIX, .proto = 0, .kind = NT_EV_UNIX, .verdict = NT_VERDICT_ALLOWED,
		.port = 0, .addr = { 1 },
	};
	char buf[512];

	assert_int_equal(store_insert_connection(f->s, &c, proc, "web", run, NULL), 0);
	assert_string_equal(sql_row(db, "SELECT time_ns, process_id, tid, run_id, scope, cgroup_id,"
				    " kind, family, proto, addr, port, verdict, domain FROM connections",
				    buf, sizeof(buf)),
			    "1700000000123456789|1|103|1|web|77|connect|unix|unix|/run/nscd/socket|0|"
			    "allowed|NULL");
	assert_int_equal(proc, 1);
	assert_int_equal(run, 1);

	c.addr[0] = 200; /* no such resolver path */
	assert_true(store_insert_connection(f->s, &c, proc, "web", run, NULL) < 0);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM connections"), 1);
}

/* ---- the dependencies view and the report ---------------------------------------------- */

struct deps_data {
	int64_t run_a, run_a2, run_b;
	int64_t p1, p2, p3;
};

/*
 * Scope "web", run_a: p2 (its cmdline has a comma and quotes) connects first to
 * 10.0.0.1:443/tcp, then p1 twice (allowed) -> one destination, 3 attempts, 2 processes.
 * p1 also connects to 10.0.0.2:443/tcp once. In run_a2 of "web", p1 sends to 10.0.0.1:443/udp
 * (another destination: other proto). Scope "db", run_b: p3 to 10.0.0.1:443/tcp.
 * p2 gets the higher process id, so "first" cannot be confused with min(process_id).
 */
static void insert_deps(struct store *s, struct deps_data *d)
{
	d->run_a = begin_run(s, "web", 11);
	d->run_a2 = begin_run(s, "web", 12);
	d->run_b = begin_run(s, "db", 13);
	d->p1 = put_process(s, 100, 1, "curl https://a", "web", d->run_a);
	d->p2 = put_process(s, 200, 2, "sh -c \"wget a,b\"", "web", d->run_a);
	d->p3 = put_process(s, 300, 3, "psql", "db", d->run_b);
	assert_true(d->p2 > d->p1);

	assert_int_equal(store_begin(s), 0);
	insert_conn(s, AF_INET, "10.0.0.1", 443, IPPROTO_TCP, NT_VERDICT_WOULD_BLOCK, T0, d->p2,
		    "web", d->run_a);
	insert_conn(s, AF_INET, "10.0.0.1", 443, IPPROTO_TCP, NT_VERDICT_ALLOWED, T0 + SEC, d->p1,
		    "web", d->run_a);
	insert_conn(s, AF_INET, "10.0.0.2", 443, IPPROTO_TCP, NT_VERDICT_ALLOWED, T0 + SEC, d->p1,
		    "web", d->run_a);
	insert_conn(s, AF_INET, "10.0.0.1", 443, IPPROTO_TCP, NT_VERDICT_ALLOWED, T0 + 2 * SEC,
		    d->p1, "web", d->run_a);
	insert_conn(s, AF_INET, "10.0.0.1", 443, IPPROTO_UDP, NT_VERDICT_ALLOWED, T0 + 3 * SEC,
		    d->p1, "web", d->run_a2);
	insert_conn(s, AF_INET, "10.0.0.1", 443, IPPROTO_TCP, NT_VERDICT_BLOCKED, T0 + 4 * SEC,
		    d->p3, "db", d->run_b);
	assert_int_equal(store_commit(s), 0);
}

/* Whether a comma-separated list holds exactly the given items, in any order. */
static int same_set(const char *list, const char *const *items, int n)
{
	char copy[256], *save = NULL, *tok;
	int count = 0;

	snprintf(copy, sizeof(copy), "%s", list);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int found = 0;

		for (int i = 0; i < n; i++)
			if (strcmp(tok, items[i]) == 0)
				found = 1;
		if (!found)
			return 0;
		count++;
	}
	return count == n;
}

/* One row per (scope, proto, addr, port), with counts, verdicts and the first command line. */
static void test_dependencies_view(void **state)
{
	static const char *const v_web[] = { "would_block", "allowed" };
	static const char *const v_allowed[] = { "allowed" };
	static const char *const v_blocked[] = { "blocked" };
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	struct deps_data d;
	sqlite3_stmt *st;
	int rows = 0;

	insert_deps(f->s, &d);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dependencies"), 4);
	assert_int_equal(sqlite3_prepare_v2(db,
		"SELECT scope, proto, addr, port, attempts, processes, verdicts, first_cmdline,"
		" first_seen, last_seen FROM dependencies ORDER BY scope, proto, addr, port",
		-1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *scope = (const char *)sqlite3_column_text(st, 0);
		const char *proto = (const char *)sqlite3_column_text(st, 1);
		const char *addr = (const char *)sqlite3_column_text(st, 2);
		int port = sqlite3_column_int(st, 3);
		int attempts = sqlite3_column_int(st, 4), procs = sqlite3_column_int(st, 5);
		const char *verdicts = (const char *)sqlite3_column_text(st, 6);
		const char *cmd = (const char *)sqlite3_column_text(st, 7);
		const char *first = (const char *)sqlite3_column_text(st, 8);
		const char *last = (const char *)sqlite3_column_text(st, 9);

		assert_int_equal(port, 443);
		switch (rows++) {
		case 0:
			assert_string_equal(scope, "db");
			assert_string_equal(proto, "tcp");
			assert_string_equal(addr, "10.0.0.1");
			assert_int_equal(attempts, 1);
			assert_int_equal(procs, 1);
			assert_true(same_set(verdicts, v_blocked, 1));
			assert_string_equal(cmd, "psql");
			break;
		case 1:
			assert_string_equal(scope, "web");
			assert_string_equal(proto, "tcp");
			assert_string_equal(addr, "10.0.0.1");
			assert_int_equal(attempts, 3);
			assert_int_equal(procs, 2);
			assert_true(same_set(verdicts, v_web, 2));
			assert_string_equal(cmd, "sh -c \"wget a,b\"");
			assert_string_equal(first, "2023-11-14T22:13:20.123Z");
			assert_string_equal(last, "2023-11-14T22:13:22.123Z");
			break;
		case 2:
			assert_string_equal(scope, "web");
			assert_string_equal(proto, "tcp");
			assert_string_equal(addr, "10.0.0.2");
			assert_int_equal(attempts, 1);
			assert_int_equal(procs, 1);
			assert_true(same_set(verdicts, v_allowed, 1));
			assert_string_equal(cmd, "curl https://a");
			break;
		case 3:
			assert_string_equal(scope, "web");
			assert_string_equal(proto, "udp");
			assert_string_equal(addr, "10.0.0.1");
			assert_int_equal(attempts, 1);
			assert_int_equal(procs, 1);
			assert_string_equal(cmd, "curl https://a");
			break;
		}
	}
	sqlite3_finalize(st);
	assert_int_equal(rows, 4);
}

/* Splits one CSV line (RFC 4180 quoting) into fields. Returns the number of fields. */
static int csv_split(const char *line, char fields[][128], int max)
{
	int n = 0;

	while (n < max) {
		size_t len = 0;

		if (*line == '"') {
			for (line++; *line; line++) {
				if (*line == '"' && line[1] == '"')
					line++;
				else if (*line == '"') {
					line++;
					break;
				}
				if (len < 127)
					fields[n][len++] = *line;
			}
		} else {
			for (; *line && *line != ',' && *line != '\n'; line++)
				if (len < 127)
					fields[n][len++] = *line;
		}
		fields[n++][len] = '\0';
		if (*line != ',')
			break;
		line++;
	}
	return n;
}

/* Runs report_deps in CSV into memory; returns its result and the lines in lines[]. */
static int run_report(sqlite3 *db, const struct report_filter *flt, char lines[][256], int max,
		      int *nlines)
{
	char *buf = NULL, *save = NULL, *line;
	size_t size = 0;
	FILE *out = open_memstream(&buf, &size);
	int r;

	assert_non_null(out);
	r = report_deps(db, flt, NULL, REPORT_CSV, out);
	assert_int_equal(fclose(out), 0);
	*nlines = 0;
	/* Every line ends in a newline. */
	assert_true(size > 0 && buf[size - 1] == '\n');
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		assert_true(*nlines < max);
		snprintf(lines[(*nlines)++], 256, "%s", line);
	}
	free(buf);
	return r;
}

#define CSV_HEADER "scope,proto,addr,port,attempts,processes,verdicts,first_cmdline,last_seen,domain,first_seen,rule,cmdlines"

/* The CSV report: header, one line per destination, quoting that survives a CSV reader. */
static void test_report_csv(void **state)
{
	static const char *const v_web[] = { "would_block", "allowed" };
	struct fixture *f = *state;
	struct report_filter flt = { 0 };
	char lines[16][256], fields[13][128];
	struct deps_data d;
	int n, found = 0;

	insert_deps(f->s, &d);
	assert_int_equal(run_report(store_db(f->s), &flt, lines, 16, &n), 4);
	assert_int_equal(n, 5);
	assert_string_equal(lines[0], CSV_HEADER);
	for (int i = 1; i < n; i++) {
		assert_int_equal(csv_split(lines[i], fields, 14), 13);
		if (strcmp(fields[0], "web") || strcmp(fields[1], "tcp") || strcmp(fields[2], "10.0.0.1"))
			continue;
		found++;
		/* The command line with a comma and quotes is one quoted field, quotes doubled. */
		assert_non_null(strstr(lines[i], ",\"sh -c \"\"wget a,b\"\"\","));
		assert_string_equal(fields[3], "443");
		assert_string_equal(fields[4], "3");
		assert_string_equal(fields[5], "2");
		assert_true(same_set(fields[6], v_web, 2));
		assert_string_equal(fields[7], "sh -c \"wget a,b\"");
		assert_string_equal(fields[8], "2023-11-14T22:13:22.123Z");
		/* Every command line that made its attempts, once, first seen first, as JSON. */
		assert_string_equal(fields[12], "[\"sh -c \\\"wget a,b\\\"\", \"curl https://a\"]");
	}
	assert_int_equal(found, 1);

	/* The table format reports the same number of destinations. */
	{
		char *buf = NULL;
		size_t size = 0;
		FILE *out = open_memstream(&buf, &size);

		assert_non_null(out);
		assert_int_equal(report_deps(store_db(f->s), &flt, NULL, REPORT_TABLE, out), 4);
		fclose(out);
		assert_non_null(strstr(buf, "10.0.0.2"));
		free(buf);
	}
}

/*
 * A command line is whatever bytes the program was given: the JSON report stays JSON, each
 * ill-formed UTF-8 part a U+FFFD, well-formed text (é) as it is, control characters escaped.
 */
static void test_report_json_any_bytes(void **state)
{
	struct fixture *f = *state;
	struct report_filter flt = { 0 };
	char *buf = NULL;
	size_t size = 0;
	FILE *out;
	int64_t p;

	p = put_process(f->s, 100, 1, "curl \xff\xfe caf\xc3\xa9\t\x1b[0m", "web", 0);
	assert_int_equal(store_begin(f->s), 0);
	insert_conn(f->s, AF_INET, "10.0.0.9", 443, IPPROTO_TCP, NT_VERDICT_ALLOWED, T0, p, "web", 0);
	assert_int_equal(store_commit(f->s), 0);
	out = open_memstream(&buf, &size);
	assert_non_null(out);
	assert_int_equal(report_deps(store_db(f->s), &flt, NULL, REPORT_JSON, out), 1);
	assert_int_equal(fclose(out), 0);
	assert_non_null(strstr(buf, "\"first_cmdline\": \"curl \\ufffd\\ufffd caf\xc3\xa9\\u0009\\u001b[0m\""));
	assert_non_null(strstr(buf, "\"cmdlines\": [\"curl \\ufffd\\ufffd caf\xc3\xa9\\u0009\\u001b[0m\"]"));
	free(buf);
}

/* Filters: by scope, by run, by time; an empty result is the header alone and 0. */
static void test_report_filters(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	char lines[16][256], fields[13][128];
	struct report_filter flt = { 0 };
	struct deps_data d;
	int n;

	insert_deps(f->s, &d);

	flt.scope = "db";
	assert_int_equal(run_report(db, &flt, lines, 16, &n), 1);
	assert_int_equal(n, 2);
	assert_int_equal(csv_split(lines[1], fields, 14), 13);
	assert_string_equal(fields[0], "db");
	assert_string_equal(fields[7], "psql");
	assert_string_equal(fields[12], "[\"psql\"]");

	flt.scope = "web";
	assert_int_equal(run_report(db, &flt, lines, 16, &n), 3);
	assert_int_equal(n, 4);

	flt.scope = NULL;
	flt.run_id = d.run_a2;
	assert_int_equal(run_report(db, &flt, lines, 16, &n), 1);
	assert_int_equal(csv_split(lines[1], fields, 14), 13);
	assert_string_equal(fields[0], "web");
	assert_string_equal(fields[1], "udp");

	/* Run a: 10.0.0.1/tcp counted from run a's rows only (3), not run b's. */
	flt.run_id = d.run_a;
	assert_int_equal(run_report(db, &flt, lines, 16, &n), 2);
	flt.scope = "db"; /* run a is in scope web: nothing */
	assert_int_equal(run_report(db, &flt, lines, 16, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(lines[0], CSV_HEADER);

	flt.scope = NULL;
	flt.run_id = 0;
	flt.since_ns = T0 + 3 * SEC; /* the udp one and the db one */
	assert_int_equal(run_report(db, &flt, lines, 16, &n), 2);
	flt.since_ns = T0 + 10 * SEC;
	assert_int_equal(run_report(db, &flt, lines, 16, &n), 0);
	assert_int_equal(n, 1);
}

/* ---- DNS queries ----------------------------------------------------------------------- */

/*
 * www.example.com A? from tid 4242 in cgroup 77, answered NOERROR over UDP through the CNAME
 * chain www.example.com -> cdn.example.net -> 127.0.0.10 and ::1.
 */
static struct dns_record dns_attributed(struct dns_record_rr rrs[3])
{
	struct dns_record d = {
		.time_ns = T0, .attributed = 1,
		.origin = { .start_ns = 5, .cgroup_id = 77, .pid = 100, .tid = 4242, .port = htons(53),
			    .family = AF_INET, .addr = { 127, 0, 0, 53 } },
		.qname = "www.example.com", .qtype = DNS_T_A, .rcode = DNS_R_NOERROR,
		.proto = IPPROTO_UDP, .verdict = NT_VERDICT_ALLOWED,
		.resolver = "127.0.0.53:53", .upstream = "192.0.2.1:53", .latency_ns = 1234567,
		.error = NULL, .answers = 3, .n_rrs = 3, .rrs = rrs,
	};

	rrs[0] = (struct dns_record_rr){ .name = "www.example.com", .target = "cdn.example.net",
					 .type = DNS_T_CNAME, .ttl = 300 };
	rrs[1] = (struct dns_record_rr){ .name = "cdn.example.net", .type = DNS_T_A,
					 .family = AF_INET, .ttl = 60, .addr = { 127, 0, 0, 10 } };
	rrs[2] = (struct dns_record_rr){ .name = "cdn.example.net", .type = DNS_T_AAAA,
					 .family = AF_INET6, .ttl = 30, .addr = { [15] = 1 } };
	return d;
}

/* An attributed query: every column of the query, and the chain in answer order. */
static void test_dns_insert_attributed(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	struct dns_record_rr rrs[3];
	struct dns_record d = dns_attributed(rrs);
	int64_t run = begin_run(f->s, "web", 77);
	int64_t proc = put_process(f->s, 100, 5, "curl https://www.example.com", "web", run);
	char buf[512], want[512];

	assert_int_equal(store_insert_dns(f->s, &d, proc, "web", run), 0);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_queries"), 1);
	snprintf(want, sizeof(want),
		 "1700000000123456789|2023-11-14T22:13:20.123Z|www.example.com|A|NOERROR|udp|"
		 "127.0.0.53:53|192.0.2.1:53|1234567|allowed|NULL|3|NULL|4242|77|web|%lld|%lld",
		 (long long)run, (long long)proc);
	assert_string_equal(sql_row(db, "SELECT time_ns, time, qname, qtype, rcode, transport,"
				    " resolver, upstream, latency_ns, verdict, rule, answers, error, tid,"
				    " cgroup_id, scope, run_id, process_id FROM dns_queries",
				    buf, sizeof(buf)), want);
	/* Stored as integers, so that they compare and sum as numbers. */
	assert_int_equal(sql_int(db, "SELECT typeof(latency_ns) = 'integer' AND typeof(tid) = 'integer'"
				     " AND typeof(cgroup_id) = 'integer' FROM dns_queries"), 1);

	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_answers"), 3);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_answers a JOIN dns_queries q"
				     " ON q.id = a.query_id"), 3);
	assert_string_equal(sql_row(db, "SELECT group_concat(r, ';') FROM (SELECT name || ',' || type"
				    " || ',' || value || ',' || coalesce(addr_key, 'NULL') || ',' || ttl"
				    " AS r FROM dns_answers ORDER BY rowid)", buf, sizeof(buf)),
			    "www.example.com,CNAME,cdn.example.net,NULL,300;"
			    "cdn.example.net,A,127.0.0.10,00000000000000000000ffff7f00000a,60;"
			    "cdn.example.net,AAAA,::1,00000000000000000000000000000001,30");
	/* The keys join against connections.addr_key. */
	insert_conn(f->s, AF_INET, "127.0.0.10", 443, IPPROTO_TCP, NT_VERDICT_ALLOWED, T0 + 1, proc,
		    "web", run);
	assert_string_equal(sql_text(db, "SELECT q.qname FROM connections c JOIN dns_answers a"
				     " ON a.addr_key = c.addr_key JOIN dns_queries q ON q.id = a.query_id",
				     buf, sizeof(buf)), "www.example.com");
}

/*
 * A query whose sender is unknown, that got no answer from anyone: no process, thread,
 * cgroup or run; no rcode, latency, resolver or upstream; the error says why.
 */
static void test_dns_insert_unattributed(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	struct dns_record d = {
		.time_ns = T0 + SEC, .attributed = 0,
		.origin = { .cgroup_id = 99, .pid = 7, .tid = 8 }, /* not to be trusted: not stored */
		.qname = "odd.example", .qtype = 65534, .rcode = -1, .proto = IPPROTO_TCP,
		.verdict = NT_VERDICT_BLOCKED, .resolver = "", .upstream = "", .latency_ns = -1,
		.error = "upstream timeout", .answers = 0, .n_rrs = 0, .rrs = NULL,
	};
	char buf[512];

	assert_int_equal(store_insert_dns(f->s, &d, 0, "unknown", 0), 0);
	assert_string_equal(sql_row(db, "SELECT time_ns, qname, qtype, rcode, transport, resolver,"
				    " upstream, latency_ns, verdict, answers, error, tid, cgroup_id, scope,"
				    " run_id, process_id FROM dns_queries", buf, sizeof(buf)),
			    "1700000001123456789|odd.example|TYPE65534|NULL|tcp|NULL|NULL|NULL|blocked|"
			    "0|upstream timeout|NULL|NULL|unknown|NULL|NULL");
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_answers"), 0);

	/* An attributed query may still lack parts: each missing one is NULL on its own. */
	{
		struct dns_record_rr rrs[3];
		struct dns_record a = dns_attributed(rrs);

		a.rcode = DNS_R_NXDOMAIN;
		a.latency_ns = 0; /* an answer in no measurable time is an answer */
		a.upstream[0] = '\0';
		a.n_rrs = 0;
		a.answers = 0;
		assert_int_equal(store_insert_dns(f->s, &a, 0, "web", 0), 0);
		assert_string_equal(sql_row(db, "SELECT rcode, resolver, upstream, latency_ns, tid,"
					    " cgroup_id, process_id, run_id FROM dns_queries"
					    " WHERE qname = 'www.example.com'", buf, sizeof(buf)),
				    "NXDOMAIN|127.0.0.53:53|NULL|0|4242|77|NULL|NULL");
	}
}

/*
 * Pruning: old queries go with their answers and are counted; a recent query keeps its
 * answers, and the process and run only it names.
 */
static void test_prune_dns(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);
	struct prune_counts pc;
	struct dns_record_rr rrs[3];
	struct dns_record d = dns_attributed(rrs);
	int64_t run_old, run_kept, p_old, p_kept, kept_id;

	run_old = begin_run(f->s, "web", 1);
	run_kept = begin_run(f->s, "web", 2);
	assert_int_equal(store_run_end(f->s, run_old, T0, 0), 0);
	assert_int_equal(store_run_end(f->s, run_kept, T0, 0), 0);
	p_old = put_process(f->s, 200, 2, "old", "web", run_old);
	p_kept = put_process(f->s, 100, 1, "kept", "web", run_kept);

	/* Three old queries of three answers each, one old unattributed without answers. */
	for (int i = 0; i < 3; i++) {
		d.time_ns = T0 + i;
		assert_int_equal(store_insert_dns(f->s, &d, p_old, "web", run_old), 0);
	}
	d.n_rrs = 0;
	d.attributed = 0;
	assert_int_equal(store_insert_dns(f->s, &d, 0, "unknown", 0), 0);
	/* The recent one, with one answer. */
	d.time_ns = T0 + 10 * SEC;
	d.attributed = 1;
	d.rrs = &rrs[1];
	d.n_rrs = 1;
	assert_int_equal(store_insert_dns(f->s, &d, p_kept, "web", run_kept), 0);
	kept_id = sql_int(db, "SELECT id FROM dns_queries WHERE time_ns = 1700000010123456789");
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_queries"), 5);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_answers"), 10);

	assert_int_equal(store_prune(f->s, T0 + 5 * SEC, &pc), 0);
	assert_int_equal(pc.dns_queries, 4);
	assert_int_equal(pc.connections, 0);
	assert_int_equal(pc.processes, 1);
	assert_int_equal(pc.runs, 1);

	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_queries"), 1);
	assert_int_equal(sql_int(db, "SELECT id FROM dns_queries"), kept_id);
	assert_int_equal(sql_int(db, "SELECT time_ns FROM dns_queries"), T0 + 10 * SEC);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_answers"), 1);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_answers WHERE query_id = (SELECT id"
				     " FROM dns_queries) AND value = '127.0.0.10'"), 1);
	/* The process and run only the kept query names are kept; the others are gone. */
	assert_int_equal(sql_int(db, "SELECT count(*) FROM processes"), 1);
	assert_int_equal(sql_int(db, "SELECT id FROM processes"), p_kept);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM runs"), 1);
	assert_int_equal(sql_int(db, "SELECT id FROM runs"), run_kept);
	assert_int_not_equal(p_old, p_kept);

	/* Pruning again removes nothing more. */
	assert_int_equal(store_prune(f->s, T0 + 5 * SEC, &pc), 0);
	assert_int_equal(pc.dns_queries, 0);
	assert_int_equal(pc.processes, 0);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM dns_answers"), 1);
}

/* ---- stats ----------------------------------------------------------------------------- */

/* Lost events between two times are counter deltas; other counters do not count. */
static void test_lost_between(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = store_db(f->s);

	assert_int_equal(report_lost_between(db, 0, 1000), 0); /* no stats at all */
	assert_int_equal(store_add_stat(f->s, 100, "agent:1", "events_lost_ringbuf", 0), 0);
	assert_int_equal(store_add_stat(f->s, 100, "agent:1", "events_stored", 10), 0);
	assert_int_equal(store_add_stat(f->s, 200, "agent:1", "events_lost_ringbuf", 5), 0);
	assert_int_equal(store_add_stat(f->s, 200, "agent:1", "events_stored", 500), 0);
	assert_int_equal(store_add_stat(f->s, 300, "agent:1", "events_lost_ringbuf", 9), 0);
	assert_int_equal(store_add_stat(f->s, 300, "agent:1", "events_stored", 1000), 0);

	assert_int_equal(report_lost_between(db, 150, 250), 5);
	assert_int_equal(report_lost_between(db, 150, 350), 9);
	assert_int_equal(report_lost_between(db, 0, 50), 0);
	assert_int_equal(report_lost_between(db, 250, 350), 4);
	assert_int_equal(report_lost_between(db, 350, 400), 0);

	/* Both ends are inclusive: a sample taken exactly at from_ns or to_ns is in the window. */
	assert_int_equal(report_lost_between(db, 200, 300), 9);
	assert_int_equal(report_lost_between(db, 100, 200), 5);

	/* Other sources and reasons add up; each counter's delta is taken within its source. */
	assert_int_equal(store_add_stat(f->s, 220, "run:7", "events_lost_queue", 2), 0);
	assert_int_equal(report_lost_between(db, 150, 250), 7);
	assert_int_equal(store_add_stat(f->s, 100, "agent:2", "events_lost_ringbuf", 10), 0);
	assert_int_equal(store_add_stat(f->s, 220, "agent:2", "events_lost_ringbuf", 13), 0);
	assert_int_equal(report_lost_between(db, 150, 250), 10);
	assert_int_equal(report_lost_between(db, 250, 350), 4);
	assert_int_equal(sql_int(db, "SELECT count(*) FROM stats"), 9);
}

/* ---- agent state ----------------------------------------------------------------------- */

/* The agent's key/value state: set, overwrite, read back; a missing key is 0 (not found). */
static void test_state(void **state)
{
	struct fixture *f = *state;
	int64_t v = -1;

	assert_int_equal(store_get_state(f->s, "synced_ns", &v), 0);
	assert_int_equal(v, -1); /* not written when not found */
	assert_int_equal(store_set_state(f->s, "synced_ns", T0), 0);
	assert_int_equal(store_get_state(f->s, "synced_ns", &v), 1);
	assert_int_equal(v, T0);
	assert_int_equal(store_set_state(f->s, "synced_ns", -5), 0);
	assert_int_equal(store_get_state(f->s, "synced_ns", &v), 1);
	assert_int_equal(v, -5);
	assert_int_equal(store_set_state(f->s, "pid", 4242), 0);
	assert_int_equal(store_get_state(f->s, "synced_ns", &v), 1);
	assert_int_equal(v, -5);
	assert_int_equal(store_get_state(f->s, "pid", &v), 1);
	assert_int_equal(v, 4242);
	assert_int_equal(sql_int(store_db(f->s),
				 "SELECT count(*) FROM agent_state WHERE key NOT IN ('event_seq', 'rules_version')"), 2);
}

/* ---- runs as metrics see them ------------------------------------------------------------ */

static void collect_run(void *ctx, const char *scope, const char *status)
{
	char *out = ctx;
	size_t n = strlen(out);

	snprintf(out + n, 256 - n, "%s%s:%s", n ? " " : "", scope, status);
}

/*
 * Each run counts once as started, and once as succeeded or failed, whatever the order its
 * row is ended in; runs before the cursor was positioned do not count as started.
 */
static void test_runs_since(void **state)
{
	struct fixture *f = *state;
	struct runs_cursor c = { .last_id = -1 };
	char got[256] = "";
	int64_t old = begin_run(f->s, "old", 1), a, b;

	assert_int_equal(store_runs_since(f->s, &c, collect_run, got), 0);
	assert_string_equal(got, "");
	a = begin_run(f->s, "a", 2);
	b = begin_run(f->s, "b", 3);
	assert_int_equal(store_run_end(f->s, b, T0 + 2 * SEC, 0), 0);
	assert_int_equal(store_runs_since(f->s, &c, collect_run, got), 0);
	assert_string_equal(got, "a:started b:started b:succeeded");
	/* a ends after b was seen ended, with an earlier end time: still counted. */
	got[0] = '\0';
	assert_int_equal(store_run_end(f->s, a, T0 + 1 * SEC, 3), 0);
	assert_int_equal(store_run_end(f->s, old, T0 + 3 * SEC, 0), 0);
	assert_int_equal(store_runs_since(f->s, &c, collect_run, got), 0);
	assert_string_equal(got, "old:succeeded a:failed");
	got[0] = '\0';
	assert_int_equal(store_runs_since(f->s, &c, collect_run, got), 0);
	assert_string_equal(got, "");
}

/* ---- event ids ------------------------------------------------------------------------- */

/*
 * Connections and DNS queries share one sequence of ids, across writers of one database,
 * growing in commit order, never reused after a prune: the feed resumes after an id.
 */
static void test_event_ids_one_sequence(void **state)
{
	struct fixture *f = *state;
	struct store *other;
	struct dns_record_rr rrs[3];
	struct dns_record d = dns_attributed(rrs);
	struct conn_record c = conn(AF_INET, "10.0.0.1", 443, IPPROTO_TCP, NT_EV_CONNECT, 0, T0);
	struct prune_counts pc;
	char buf[128];
	int64_t proc = put_process(f->s, 100, 5, "a", "web", 0);

	assert_int_equal(store_open(f->path, 0, &other), 0);
	/* A batch of this writer, then one of another, then one insert on its own. */
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_insert_connection(f->s, &c, proc, "web", 0, NULL), 0);
	assert_int_equal(store_insert_dns(f->s, &d, proc, "web", 0), 0);
	assert_int_equal(store_insert_connection(f->s, &c, proc, "web", 0, NULL), 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(store_begin(other), 0);
	assert_int_equal(store_insert_dns(other, &d, proc, "web", 0), 0);
	assert_int_equal(store_insert_connection(other, &c, proc, "web", 0, NULL), 0);
	assert_int_equal(store_commit(other), 0);
	assert_int_equal(store_insert_dns(f->s, &d, proc, "web", 0), 0);
	/* A rolled-back batch leaves no gap in meaning: its ids were never seen. */
	assert_int_equal(store_begin(other), 0);
	assert_int_equal(store_insert_connection(other, &c, proc, "web", 0, NULL), 0);
	store_rollback(other);
	store_close(other);

	assert_string_equal(sql_text(store_db(f->s),
		"SELECT group_concat(k || id, ' ') FROM (SELECT 'c' AS k, id FROM connections"
		" UNION ALL SELECT 'd', id FROM dns_queries ORDER BY id)", buf, sizeof(buf)),
		"c1 d2 c3 d4 c5 d6");
	/* Answers name their query by its event id. */
	assert_int_equal(sql_int(store_db(f->s),
		"SELECT count(*) FROM dns_answers WHERE query_id IN (2, 4, 6)"), 9);

	/* Everything pruned: the next event still comes after the last one given. */
	assert_int_equal(store_prune(f->s, T0 + 1, &pc), 0);
	assert_int_equal(sql_int(store_db(f->s), "SELECT count(*) FROM connections"), 0);
	assert_int_equal(store_insert_connection(f->s, &c, proc, "web", 0, NULL), 0);
	assert_int_equal(sql_int(store_db(f->s), "SELECT max(id) FROM connections"), 7);
}

/* Migration 3 gives DNS queries recorded before it ids after the connections'. */
static void test_migrate_2_to_3_renumbers_dns(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db = raw_open(f->path, 0);
	char buf[128];

	raw_migrate(db, 2);
	sql_exec(db, "INSERT INTO processes (id, pid, start_ns, exec_id, cmdline_source,"
		     " first_seen_ns, boot_id) VALUES (1, 100, 5, 0, 'bpf', 1, 'b')");
	sql_exec(db, "INSERT INTO connections (id, time_ns, process_id, tid, scope, cgroup_id, kind,"
		     " family, proto, addr, addr_key, port, verdict) VALUES"
		     " (1, 1, 1, 100, 'web', 7, 'connect', 'ipv4', 'tcp', '10.0.0.1', 'k', 443, 'allowed'),"
		     " (2, 2, 1, 100, 'web', 7, 'connect', 'ipv4', 'tcp', '10.0.0.1', 'k', 443, 'allowed')");
	/* More queries than connections: moving ids up in place would collide. */
	sql_exec(db, "INSERT INTO dns_queries (id, time_ns, process_id, scope, qname, qtype,"
		     " transport, verdict, answers) VALUES"
		     " (1, 3, 1, 'web', 'a.example', 'A', 'udp', 'allowed', 1),"
		     " (2, 4, 1, 'web', 'b.example', 'A', 'udp', 'allowed', 1),"
		     " (3, 5, 1, 'web', 'c.example', 'A', 'udp', 'allowed', 0)");
	sql_exec(db, "INSERT INTO dns_answers (query_id, name, type, value, ttl)"
		     " VALUES (1, 'a.example', 'A', '10.0.0.1', 60), (2, 'b.example', 'A', '10.0.0.2', 60)");
	sqlite3_close(db);

	assert_int_equal(store_open(f->path, 0, &f->s), 0);
	assert_string_equal(sql_text(store_db(f->s), "SELECT group_concat(id || ' ' || qname, ', ')"
				     " FROM (SELECT * FROM dns_queries ORDER BY id)", buf, sizeof(buf)),
			    "3 a.example, 4 b.example, 5 c.example");
	assert_string_equal(sql_text(store_db(f->s), "SELECT group_concat(query_id || ' ' || value, ', ')"
				     " FROM (SELECT * FROM dns_answers ORDER BY query_id)", buf, sizeof(buf)),
			    "3 10.0.0.1, 4 10.0.0.2");
	assert_int_equal(sql_int(store_db(f->s),
		"SELECT value FROM agent_state WHERE key = 'event_seq'"), 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_new, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_event_ids_one_sequence, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_runs_since, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_2_to_3_renumbers_dns, setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_from_previous, setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_idempotent, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_unknown_version, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_newer_version, setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_database, setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_missing_directory, setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_missing_file, setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_uptodate, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_older, setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_1_to_2_keeps_rows, setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_runs, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_processes, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_connections_batch, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_connections_addr_key_order, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_rollback, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_wal_readers, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_connection_domain, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_connection_unix, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_dependencies_view, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_report_csv, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_report_json_any_bytes, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_report_filters, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_dns_insert_attributed, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_dns_insert_unattributed, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_prune_dns, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_lost_between, setup_store, teardown),
		cmocka_unit_test_setup_teardown(test_state, setup_store, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
