// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include "addr.h"
#include "dns.h"
#include "event.h"
#include "store.h"
#include "util.h"

enum stmt_id {
	ST_PROCESS_INSERT,
	ST_PROCESS_FIND,
	ST_CONN_INSERT,
	ST_DNS_INSERT,
	ST_DNS_ANSWER_INSERT,
	ST_RUN_BEGIN,
	ST_RUN_END,
	ST_RUN_DELETE,
	ST_RUN_DELETE_STATS,
	ST_RUN_FIND,
	ST_CGROUP_PUT,
	ST_STAT_ADD,
	ST_STATE_SET,
	ST_STATE_GET,
	ST_MAX,
};

static const char *const stmt_sql[ST_MAX] = {
	[ST_PROCESS_INSERT] =
		"INSERT INTO processes (pid, start_ns, ppid, uid, gid, comm, exe, cmdline,"
		" cmdline_source, cgroup_id, scope, run_id, first_seen_ns, exec_id, boot_id)"
		" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
		" ON CONFLICT (pid, start_ns, exec_id, boot_id) DO NOTHING",
	[ST_PROCESS_FIND] =
		"SELECT id FROM processes WHERE pid = ? AND start_ns = ? AND exec_id = ? AND boot_id = ?",
	[ST_CONN_INSERT] =
		"INSERT INTO connections (time_ns, process_id, run_id, scope, cgroup_id, kind,"
		" family, proto, addr, addr_key, port, verdict, tid, domain, id, rule, rule_id)"
		" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
	[ST_DNS_INSERT] =
		"INSERT INTO dns_queries (time_ns, process_id, tid, run_id, scope, cgroup_id, qname,"
		" qtype, rcode, transport, resolver, upstream, latency_ns, verdict, rule, answers, error,"
		" id, rule_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
	[ST_DNS_ANSWER_INSERT] =
		"INSERT INTO dns_answers (query_id, name, type, value, addr_key, ttl) VALUES (?,?,?,?,?,?)",
	[ST_RUN_BEGIN] =
		"INSERT INTO runs (scope, cgroup, cgroup_id, command, host, mode, started_ns, boot_id)"
		" VALUES (?,?,?,?,?,?,?,?)",
	[ST_RUN_END] = "UPDATE runs SET ended_ns = ?, exit_status = ? WHERE id = ?",
	[ST_RUN_DELETE] = "DELETE FROM runs WHERE id = ?",
	[ST_RUN_DELETE_STATS] = "DELETE FROM stats WHERE source = 'run:' || ?",
	[ST_RUN_FIND] = "SELECT id, scope FROM runs WHERE cgroup_id = ? AND boot_id = ?"
			" ORDER BY id DESC LIMIT 1",
	[ST_CGROUP_PUT] =
		"INSERT INTO cgroups (id, path, scope, run_id, first_seen_ns, boot_id)"
		" VALUES (?1, coalesce(?2, (SELECT cgroup FROM runs WHERE id = ?4)), ?3, ?4, ?5, ?6)"
		" ON CONFLICT (boot_id, id) DO UPDATE SET path = excluded.path, scope = excluded.scope,"
		" run_id = excluded.run_id",
	[ST_STAT_ADD] = "INSERT INTO stats (time_ns, source, name, value) VALUES (?,?,?,?)",
	[ST_STATE_SET] =
		"INSERT INTO agent_state (key, value) VALUES (?, ?)"
		" ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[ST_STATE_GET] = "SELECT value FROM agent_state WHERE key = ?",
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_MAX];
	int flags;
	/* Event ids of the open transaction: the last one given, read at the first. */
	int64_t event_seq;
	int seq_read, seq_dirty;
};

/*
 * This boot's id: cgroup ids, pids and start times repeat across reboots, so rows that name
 * them carry it.
 */
static const char *boot_id(void)
{
	static char id[40];

	if (!id[0]) {
		FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

		if (!f || !fgets(id, sizeof(id), f))
			snprintf(id, sizeof(id), "unknown");
		id[strcspn(id, "\n")] = '\0';
		if (f)
			fclose(f);
	}
	return id;
}

static int store_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return 0;
	case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_READONLY: return -EROFS;
	case SQLITE_CANTOPEN: return -EACCES;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_NOTADB: case SQLITE_CORRUPT: return -EBADMSG;
	default: return -EIO;
	}
}

int store_errno_of(int rc)
{
	return store_errno(rc);
}

/* SQLite's own words for the last failed store_open() of this thread. */
static __thread char open_errmsg[256];

const char *store_strerror(int r)
{
	if (r == -EIO && open_errmsg[0])
		return open_errmsg;
	switch (r) {
	case -EPROTO: return "it was written by a newer nettrail";
	case -EBADMSG: return "not an SQLite database, or damaged";
	case -ENOMEDIUM: return "its schema is older than this nettrail; open it once read-write";
	default: return strerror(-r);
	}
}

const char *store_errmsg(struct store *s)
{
	return s && s->db ? sqlite3_errmsg(s->db) : "out of memory";
}

sqlite3 *store_db(struct store *s)
{
	return s->db;
}

static int store_exec(struct store *s, const char *sql)
{
	return store_errno(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

int store_schema_latest(void)
{
	const char *p = nt_schema_sql;
	int latest = 0, n;

	while ((p = strstr(p, "\n-- migration ")) != NULL) {
		p += strlen("\n-- migration ");
		if (sscanf(p, "%d", &n) == 1 && n > latest)
			latest = n;
	}
	return latest;
}

int store_schema_version(struct store *s)
{
	sqlite3_stmt *st;
	int rc, v;

	rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return store_errno(rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	else
		v = rc == SQLITE_DONE ? -EIO : store_errno(rc);
	sqlite3_finalize(st);
	return v;
}

/* The text of migration n: from its marker line to the next marker. NULL if absent. */
static char *migration_text(int n)
{
	char marker[32];
	const char *start, *end;

	snprintf(marker, sizeof(marker), "\n-- migration %d\n", n);
	start = strstr(nt_schema_sql, marker);
	if (!start)
		return NULL;
	start += strlen(marker);
	end = strstr(start, "\n-- migration ");
	if (!end)
		end = start + strlen(start);
	return strndup(start, (size_t)(end - start));
}

/*
 * One migration step under the write lock, the version read inside it: of several processes
 * opening a new database at once, one migrates and the others find it done.
 * 1: a step was applied; 0: nothing left to do; or -errno.
 */
static int store_migrate_step(struct store *s, int to)
{
	_cleanup_free_ char *sql = NULL;
	char pragma[64];
	int v, r;

	r = store_exec(s, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	v = store_schema_version(s);
	if (v < 0 || v > store_schema_latest() || v >= to) {
		store_rollback(s);
		return v < 0 ? v : v > store_schema_latest() ? -EPROTO : 0;
	}
	sql = migration_text(v + 1);
	if (!sql) {
		store_rollback(s);
		return -ENOENT;
	}
	snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
	r = store_exec(s, sql);
	if (r == 0)
		r = store_exec(s, pragma);
	if (r == 0)
		r = store_exec(s, "COMMIT");
	if (r < 0) {
		/* SQLite's words for the failure, before the rollback replaces them. */
		snprintf(open_errmsg, sizeof(open_errmsg), "migration %d: %s", v + 1,
			 sqlite3_errmsg(s->db));
		store_rollback(s);
		return r;
	}
	return 1;
}

int store_migrate(struct store *s, int to)
{
	int r;

	while ((r = store_migrate_step(s, to)) == 1)
		;
	return r;
}

static int store_prepare(struct store *s)
{
	for (int i = 0; i < ST_MAX; i++) {
		int rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					    &s->stmt[i], NULL);
		if (rc != SQLITE_OK)
			return store_errno(rc);
	}
	return 0;
}

static int store_setup(struct store *s)
{
	int r, v;

	r = store_exec(s, "PRAGMA busy_timeout = 5000");
	if (r < 0)
		return r;
	/* A database from a newer nettrail is refused before anything is changed in it. */
	v = store_schema_version(s);
	if (v < 0)
		return v;
	if (v > store_schema_latest())
		return -EPROTO;
	if (s->flags & STORE_READONLY) {
		if (v < store_schema_latest())
			return -ENOMEDIUM; /* not yet written by this version; open it read-write */
		return store_prepare(s);
	}
	/* WAL: readers (sqlite3 shell, reports) never block the writer, nor it them. */
	r = store_exec(s, "PRAGMA journal_mode = WAL");
	if (r == 0)
		r = store_exec(s, "PRAGMA synchronous = NORMAL");
	if (r == 0)
		r = store_migrate(s, store_schema_latest());
	if (r == 0)
		r = store_prepare(s);
	return r;
}

/*
 * SQLite quietly opens a file it cannot write read-only, then fails later with a vague
 * reason: ask the file system first (access() reports EROFS even to root).
 */
static int store_check_writable(const char *path)
{
	char dir[4096];
	char *slash;

	if (access(path, W_OK) == 0)
		return 0;
	if (errno != ENOENT)
		return -errno;
	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	return access(dir, W_OK) == 0 ? 0 : -errno;
}

static int store_open_once(const char *path, int flags, struct store **ret);

/*
 * Connections that open a new database together (runs started at once, each with its
 * read-only reader of the rules) can get SQLITE_BUSY where SQLite does not wait, e.g. while
 * one switches the file to WAL: the open is tried again for up to 5 s.
 */
int store_open(const char *path, int flags, struct store **ret)
{
	int r;

	for (int tries = 0;; tries++) {
		r = store_open_once(path, flags, ret);
		if (r != -EBUSY || tries == 50)
			return r;
		nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
}

/*
 * A database on a read-only file system (a copy kept after an incident, a snapshot) has no
 * writer, and SQLite cannot make the WAL index it would want to read it: opened as immutable.
 * "file:" URI of path into buf, or NULL when not on such a file system or too long.
 */
static const char *readonly_fs_uri(const char *path, char *buf, size_t len)
{
	struct statvfs sv;
	size_t n = 0;

	if (statvfs(path, &sv) < 0 || !(sv.f_flag & ST_RDONLY))
		return NULL;
	n = (size_t)snprintf(buf, len, "file:");
	for (const char *c = path; *c && n + 4 < len; c++) {
		if (*c == '%' || *c == '?' || *c == '#')
			n += (size_t)snprintf(buf + n, len - n, "%%%02X", (unsigned char)*c);
		else
			buf[n++] = *c;
	}
	if (n + sizeof("?immutable=1") > len)
		return NULL;
	memcpy(buf + n, "?immutable=1", sizeof("?immutable=1"));
	return buf;
}

static int store_open_once(const char *path, int flags, struct store **ret)
{
	int oflags = (flags & STORE_READONLY) ? SQLITE_OPEN_READONLY
					      : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	char uri[4200];
	const char *ro_uri = NULL;
	struct store *s;
	int rc, r;

	open_errmsg[0] = '\0';
	if (!(flags & STORE_READONLY)) {
		r = store_check_writable(path);
		if (r < 0)
			return r;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->flags = flags;
	if (flags & STORE_READONLY)
		ro_uri = readonly_fs_uri(path, uri, sizeof(uri));
	rc = sqlite3_open_v2(ro_uri ? ro_uri : path, &s->db,
			     oflags | SQLITE_OPEN_NOMUTEX | (ro_uri ? SQLITE_OPEN_URI : 0), NULL);
	if (rc != SQLITE_OK) {
		/* The operating system's reason says more than SQLITE_CANTOPEN. */
		r = sqlite3_system_errno(s->db) ? -sqlite3_system_errno(s->db) : store_errno(rc);
		goto out_close;
	}
	sqlite3_extended_result_codes(s->db, 1);
	r = store_setup(s);
	if (r < 0)
		goto out_close;
	*ret = s;
	return 0;
out_close:
	if (sqlite3_errcode(s->db) != SQLITE_OK || !open_errmsg[0])
		snprintf(open_errmsg, sizeof(open_errmsg), "%s", store_errmsg(s));
	store_close(s);
	return r;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (int i = 0; i < ST_MAX; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close_v2(s->db);
	free(s);
}

int store_begin(struct store *s)
{
	s->seq_read = s->seq_dirty = 0;
	return store_exec(s, "BEGIN IMMEDIATE");
}

int store_commit(struct store *s)
{
	/*
	 * SQLite may have rolled the transaction back on an error: then the ids it gave are gone
	 * with it, and writing the sequence alone could move it back below another writer's.
	 */
	if (sqlite3_get_autocommit(s->db)) {
		s->seq_read = s->seq_dirty = 0;
		return -EIO;
	}
	if (s->seq_dirty && store_set_state(s, "event_seq", s->event_seq) < 0)
		return -EIO;
	s->seq_read = s->seq_dirty = 0;
	return store_exec(s, "COMMIT");
}

/*
 * The next event id. Only inside a transaction, whose write lock makes the sequence read,
 * the ids given and the sequence written at commit one step for every other writer.
 */
int store_next_event_id(struct store *s, int64_t *ret)
{
	if (sqlite3_get_autocommit(s->db))
		return -EINVAL;
	if (!s->seq_read) {
		int64_t v = 0;
		int r = store_get_state(s, "event_seq", &v);

		if (r < 0)
			return r;
		s->event_seq = v;
		s->seq_read = 1;
	}
	*ret = ++s->event_seq;
	s->seq_dirty = 1;
	return 0;
}

int store_in_transaction(struct store *s)
{
	return !sqlite3_get_autocommit(s->db);
}

void store_rollback(struct store *s)
{
	s->seq_read = s->seq_dirty = 0;
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Steps a prepared statement to completion and resets it. */
static int stmt_run(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : store_errno(rc);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static void bind_id(sqlite3_stmt *st, int i, int64_t id)
{
	if (id > 0)
		sqlite3_bind_int64(st, i, id);
	else
		sqlite3_bind_null(st, i);
}

int store_find_process(struct store *s, uint32_t pid, uint64_t start_ns, uint32_t exec_id,
		       int64_t *ret_id)
{
	sqlite3_stmt *st = s->stmt[ST_PROCESS_FIND];
	int rc, r = 0;

	sqlite3_bind_int64(st, 1, pid);
	sqlite3_bind_int64(st, 2, (int64_t)start_ns);
	sqlite3_bind_int64(st, 3, exec_id);
	sqlite3_bind_text(st, 4, boot_id(), -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret_id = sqlite3_column_int64(st, 0);
		r = 1;
	} else if (rc != SQLITE_DONE)
		r = store_errno(rc);
	sqlite3_reset(st);
	return r;
}

int store_put_process(struct store *s, const struct process_row *p, int64_t *ret_id)
{
	sqlite3_stmt *st = s->stmt[ST_PROCESS_INSERT];
	int r;

	sqlite3_bind_int64(st, 1, p->pid);
	sqlite3_bind_int64(st, 2, (int64_t)p->start_ns);
	sqlite3_bind_int64(st, 3, p->ppid);
	sqlite3_bind_int64(st, 4, p->uid);
	sqlite3_bind_int64(st, 5, p->gid);
	bind_text(st, 6, p->comm);
	bind_text(st, 7, p->exe);
	bind_text(st, 8, p->cmdline);
	bind_text(st, 9, p->cmdline_from_proc ? "proc" : "bpf");
	sqlite3_bind_int64(st, 10, (int64_t)p->cgroup_id);
	bind_text(st, 11, p->scope);
	bind_id(st, 12, p->run_id);
	sqlite3_bind_int64(st, 13, p->first_seen_ns);
	sqlite3_bind_int64(st, 14, p->exec_id);
	sqlite3_bind_text(st, 15, boot_id(), -1, SQLITE_STATIC);
	r = stmt_run(st);
	if (r < 0)
		return r;
	if (sqlite3_changes(s->db) == 1) {
		*ret_id = sqlite3_last_insert_rowid(s->db);
		return 0;
	}
	r = store_find_process(s, p->pid, p->start_ns, p->exec_id, ret_id);
	return r == 1 ? 0 : (r < 0 ? r : -ENOENT);
}

static void hex_key(const uint8_t key[16], char hex[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
}

/*
 * One connection row. A connect to a local resolver's unix socket has its path as the address,
 * 'unix' as family and protocol, no key and no port.
 */
static int insert_connection(struct store *s, const struct conn_record *c, int64_t process_id,
			     const char *scope, int64_t run_id, const char *domain)
{
	sqlite3_stmt *st = s->stmt[ST_CONN_INSERT];
	char text[ADDR_TEXT_MAX], pbuf[16], hex[33] = "";
	const char *family = "unix", *proto = "unix", *addr;
	uint8_t key[16];
	int64_t id;
	int r;

	if (c->family == AF_UNIX) {
		addr = event_resolver_path(c->addr[0]);
		if (!addr)
			return -EAFNOSUPPORT;
	} else {
		if (addr_format(c->family, c->addr, text, sizeof(text)) < 0 ||
		    addr_key(c->family, c->addr, key) < 0)
			return -EAFNOSUPPORT;
		hex_key(key, hex);
		addr = text;
		family = c->family == AF_INET ? "ipv4" : "ipv6";
		proto = addr_proto_name(c->proto, pbuf, sizeof(pbuf));
	}
	r = store_next_event_id(s, &id);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, c->time_ns);
	sqlite3_bind_int64(st, 2, process_id);
	bind_id(st, 3, run_id);
	sqlite3_bind_text(st, 4, scope, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, (int64_t)c->cgroup_id);
	sqlite3_bind_text(st, 6, event_kind_name(c->kind), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, family, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, proto, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 9, addr, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 10, hex, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 11, c->family == AF_UNIX ? 0 : c->port);
	sqlite3_bind_text(st, 12, event_verdict_name(c->verdict), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 13, c->tid);
	bind_text(st, 14, c->family == AF_UNIX ? NULL : domain);
	sqlite3_bind_int64(st, 15, id);
	bind_text(st, 16, c->rule);
	bind_id(st, 17, c->rule_id);
	return stmt_run(st);
}

/* Event rows take their id in a transaction: the caller's, or one of their own. */
static int own_transaction_begin(struct store *s, int *own)
{
	*own = sqlite3_get_autocommit(s->db);
	return *own ? store_begin(s) : 0;
}

static int own_transaction_end(struct store *s, int own, int r)
{
	if (!own)
		return r;
	if (r == 0)
		return store_commit(s);
	store_rollback(s);
	return r;
}

int store_insert_connection(struct store *s, const struct conn_record *c, int64_t process_id,
			    const char *scope, int64_t run_id, const char *domain)
{
	int own, r = own_transaction_begin(s, &own);

	if (r < 0)
		return r;
	r = insert_connection(s, c, process_id, scope, run_id, domain);
	return own_transaction_end(s, own, r);
}

static int insert_dns_answer(struct store *s, int64_t query_id, const struct dns_record_rr *rr)
{
	sqlite3_stmt *st = s->stmt[ST_DNS_ANSWER_INSERT];
	char tbuf[16], text[ADDR_TEXT_MAX], hex[33];
	uint8_t key[16];

	sqlite3_bind_int64(st, 1, query_id);
	bind_text(st, 2, rr->name);
	sqlite3_bind_text(st, 3, dns_type_name(rr->type, tbuf), -1, SQLITE_TRANSIENT);
	if (rr->target) {
		bind_text(st, 4, rr->target);
		sqlite3_bind_null(st, 5);
	} else {
		if (addr_format(rr->family, rr->addr, text, sizeof(text)) < 0 ||
		    addr_key(rr->family, rr->addr, key) < 0) {
			sqlite3_reset(st);
			return -EAFNOSUPPORT;
		}
		hex_key(key, hex);
		sqlite3_bind_text(st, 4, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 5, hex, 32, SQLITE_TRANSIENT);
	}
	sqlite3_bind_int64(st, 6, rr->ttl);
	return stmt_run(st);
}

static int insert_dns(struct store *s, const struct dns_record *d, int64_t process_id,
		      const char *scope, int64_t run_id)
{
	sqlite3_stmt *st = s->stmt[ST_DNS_INSERT];
	char tbuf[16], rbuf[16], pbuf[16];
	int64_t id;
	int r;

	r = store_next_event_id(s, &id);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 18, id);
	sqlite3_bind_int64(st, 1, d->time_ns);
	bind_id(st, 2, process_id);
	if (d->attributed)
		sqlite3_bind_int64(st, 3, d->origin.tid);
	else
		sqlite3_bind_null(st, 3);
	bind_id(st, 4, run_id);
	sqlite3_bind_text(st, 5, scope, -1, SQLITE_STATIC);
	if (d->attributed)
		sqlite3_bind_int64(st, 6, (int64_t)d->origin.cgroup_id);
	else
		sqlite3_bind_null(st, 6);
	bind_text(st, 7, d->qname);
	sqlite3_bind_text(st, 8, dns_type_name(d->qtype, tbuf), -1, SQLITE_TRANSIENT);
	if (d->rcode >= 0)
		sqlite3_bind_text(st, 9, dns_rcode_name((unsigned)d->rcode, rbuf), -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 9);
	sqlite3_bind_text(st, 10, addr_proto_name(d->proto, pbuf, sizeof(pbuf)), -1, SQLITE_TRANSIENT);
	bind_text(st, 11, d->resolver[0] ? d->resolver : NULL);
	bind_text(st, 12, d->upstream[0] ? d->upstream : NULL);
	if (d->latency_ns >= 0)
		sqlite3_bind_int64(st, 13, d->latency_ns);
	else
		sqlite3_bind_null(st, 13);
	sqlite3_bind_text(st, 14, event_verdict_name(d->verdict), -1, SQLITE_STATIC);
	bind_text(st, 15, d->rule[0] ? d->rule : NULL);
	bind_id(st, 19, d->rule_id);
	sqlite3_bind_int64(st, 16, d->answers);
	bind_text(st, 17, d->error);
	r = stmt_run(st);
	for (unsigned i = 0; i < d->n_rrs && r == 0; i++)
		r = insert_dns_answer(s, id, &d->rrs[i]);
	return r;
}

int store_insert_dns(struct store *s, const struct dns_record *d, int64_t process_id,
		     const char *scope, int64_t run_id)
{
	int own, r = own_transaction_begin(s, &own);

	if (r < 0)
		return r;
	r = insert_dns(s, d, process_id, scope, run_id);
	return own_transaction_end(s, own, r);
}

static int hex_to_key(const unsigned char *hex, uint8_t key[16])
{
	for (int i = 0; i < 16; i++) {
		unsigned v;

		if (!hex || sscanf((const char *)hex + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		key[i] = (uint8_t)v;
	}
	return 0;
}

int store_recent_answers(struct store *s, int64_t since_ns, int max, store_answer_fn fn,
			 void *ctx)
{
	static const char sql[] =
		"SELECT scope, qname, addr_key, expires,"
		"       (SELECT group_concat(c.value, '>') FROM dns_answers c"
		"        WHERE c.query_id = r.qid AND c.type = 'CNAME') FROM ("
		"  SELECT a.rowid AS n, q.id AS qid, q.scope, q.qname, a.addr_key,"
		"         q.time_ns + a.ttl * 1000000000 AS expires"
		"  FROM dns_queries q JOIN dns_answers a ON a.query_id = q.id"
		"  WHERE q.time_ns >= ?1 AND a.addr_key IS NOT NULL AND q.process_id IS NOT NULL"
		"  ORDER BY a.rowid DESC LIMIT ?2) r"
		" ORDER BY n";
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(st, 1, since_ns);
	sqlite3_bind_int(st, 2, max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint8_t key[16];

		if (hex_to_key(sqlite3_column_text(st, 2), key) < 0)
			continue;
		fn(ctx, (const char *)sqlite3_column_text(st, 0),
		   (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 4),
		   key, sqlite3_column_int64(st, 3));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : store_errno(rc);
}

static int runs_open_find(const struct runs_cursor *c, int64_t id)
{
	for (int i = 0; i < c->n_open; i++)
		if (c->open[i] == id)
			return i;
	return -1;
}

int store_runs_since(struct store *s, struct runs_cursor *c, store_run_fn fn, void *ctx)
{
	static const char sql[] =
		"SELECT id, scope, ended_ns IS NOT NULL, exit_status FROM runs WHERE id > ?1 ORDER BY id";
	int positioned = c->last_id >= 0;
	int64_t from = positioned ? c->last_id : -1;
	sqlite3_stmt *st;
	int rc;

	for (int i = 0; i < c->n_open; i++)
		if (c->open[i] - 1 < from)
			from = c->open[i] - 1;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(st, 1, from);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		const char *scope = (const char *)sqlite3_column_text(st, 1);
		int ended = sqlite3_column_int(st, 2), fresh = id > c->last_id;
		int open = runs_open_find(c, id);

		scope = scope ? scope : "";
		if (fresh) {
			if (positioned && fn)
				fn(ctx, scope, "started");
			c->last_id = id;
		}
		if (ended && open >= 0) {
			c->open[open] = c->open[--c->n_open];
		}
		if (ended && (open >= 0 || (fresh && positioned)) && fn)
			fn(ctx, scope, sqlite3_column_int(st, 3) ? "failed" : "succeeded");
		if (!ended && fresh && c->n_open < RUNS_OPEN_MAX)
			c->open[c->n_open++] = id;
	}
	sqlite3_finalize(st);
	if (c->last_id < 0)
		c->last_id = 0;
	return rc == SQLITE_DONE ? 0 : store_errno(rc);
}

int store_run_begin(struct store *s, const struct run_row *r, int64_t *ret_id)
{
	sqlite3_stmt *st = s->stmt[ST_RUN_BEGIN];
	int err;

	bind_text(st, 1, r->scope);
	bind_text(st, 2, r->cgroup);
	sqlite3_bind_int64(st, 3, (int64_t)r->cgroup_id);
	bind_text(st, 4, r->command);
	bind_text(st, 5, r->host);
	bind_text(st, 6, r->mode);
	sqlite3_bind_int64(st, 7, r->started_ns);
	sqlite3_bind_text(st, 8, boot_id(), -1, SQLITE_STATIC);
	err = stmt_run(st);
	if (err < 0)
		return err;
	*ret_id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

int store_run_end(struct store *s, int64_t run_id, int64_t ended_ns, int exit_status)
{
	sqlite3_stmt *st = s->stmt[ST_RUN_END];

	sqlite3_bind_int64(st, 1, ended_ns);
	sqlite3_bind_int(st, 2, exit_status);
	sqlite3_bind_int64(st, 3, run_id);
	return stmt_run(st);
}

int store_run_delete(struct store *s, int64_t run_id)
{
	sqlite3_stmt *st = s->stmt[ST_RUN_DELETE_STATS];
	int r;

	/* With its counters: a run that never ran has nothing to count. */
	sqlite3_bind_int64(st, 1, run_id);
	r = stmt_run(st);
	if (r < 0)
		return r;
	st = s->stmt[ST_RUN_DELETE];
	sqlite3_bind_int64(st, 1, run_id);
	return stmt_run(st);
}

int store_find_run(struct store *s, uint64_t cgroup_id, int64_t *ret_run_id, char *scope,
		   size_t scope_len)
{
	sqlite3_stmt *st = s->stmt[ST_RUN_FIND];
	int rc, r = 0;

	sqlite3_bind_int64(st, 1, (int64_t)cgroup_id);
	sqlite3_bind_text(st, 2, boot_id(), -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret_run_id = sqlite3_column_int64(st, 0);
		snprintf(scope, scope_len, "%s", (const char *)sqlite3_column_text(st, 1));
		r = 1;
	} else if (rc != SQLITE_DONE)
		r = store_errno(rc);
	sqlite3_reset(st);
	return r;
}

int store_put_cgroup(struct store *s, uint64_t id, const char *path, const char *scope,
		     int64_t run_id, int64_t now_ns)
{
	sqlite3_stmt *st = s->stmt[ST_CGROUP_PUT];

	sqlite3_bind_int64(st, 1, (int64_t)id);
	bind_text(st, 2, path);
	bind_text(st, 3, scope);
	bind_id(st, 4, run_id);
	sqlite3_bind_int64(st, 5, now_ns);
	sqlite3_bind_text(st, 6, boot_id(), -1, SQLITE_STATIC);
	return stmt_run(st);
}

int store_add_stat(struct store *s, int64_t time_ns, const char *source, const char *name,
		   int64_t value)
{
	sqlite3_stmt *st = s->stmt[ST_STAT_ADD];

	sqlite3_bind_int64(st, 1, time_ns);
	bind_text(st, 2, source);
	bind_text(st, 3, name);
	sqlite3_bind_int64(st, 4, value);
	return stmt_run(st);
}

/* Runs one DELETE (with ?1 = before_ns) again and again until it deletes nothing. */
static int store_delete_batches(struct store *s, const char *sql, int64_t before_ns,
				int64_t *count)
{
	sqlite3_stmt *st;
	int rc, r = 0, n;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	do {
		r = store_begin(s);
		if (r < 0)
			break;
		sqlite3_bind_int64(st, 1, before_ns);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		n = sqlite3_changes(s->db);
		r = rc == SQLITE_DONE ? store_commit(s) : store_errno(rc);
		if (r < 0) {
			store_rollback(s);
			break;
		}
		*count += n;
	} while (n > 0);
	sqlite3_finalize(st);
	return r;
}

int store_prune(struct store *s, int64_t before_ns, struct prune_counts *ret)
{
	static const char *const sql[] = {
		"DELETE FROM connections WHERE id IN"
		" (SELECT id FROM connections WHERE time_ns < ?1 LIMIT 10000)",
		/* Answers first: they name their query. */
		"DELETE FROM dns_answers WHERE rowid IN (SELECT a.rowid FROM dns_queries q"
		" JOIN dns_answers a ON a.query_id = q.id WHERE q.time_ns < ?1 LIMIT 10000)",
		"DELETE FROM dns_queries WHERE id IN"
		" (SELECT id FROM dns_queries WHERE time_ns < ?1 LIMIT 10000)",
		"DELETE FROM processes WHERE id IN (SELECT id FROM processes p WHERE first_seen_ns < ?1"
		" AND NOT EXISTS (SELECT 1 FROM connections c WHERE c.process_id = p.id)"
		" AND NOT EXISTS (SELECT 1 FROM dns_queries d WHERE d.process_id = p.id) LIMIT 10000)",
		"DELETE FROM runs WHERE id IN (SELECT id FROM runs r WHERE ended_ns < ?1"
		" AND NOT EXISTS (SELECT 1 FROM connections c WHERE c.run_id = r.id)"
		" AND NOT EXISTS (SELECT 1 FROM dns_queries d WHERE d.run_id = r.id) LIMIT 10000)",
		/* One scan of connections for all cgroups: there is no index by cgroup. */
		"DELETE FROM cgroups WHERE first_seen_ns < ?1"
		" AND id NOT IN (SELECT DISTINCT cgroup_id FROM connections)"
		" AND id NOT IN (SELECT DISTINCT cgroup_id FROM dns_queries WHERE cgroup_id IS NOT NULL)",
		"DELETE FROM stats WHERE rowid IN (SELECT rowid FROM stats s WHERE time_ns < ?1"
		" AND time_ns < (SELECT max(time_ns) FROM stats l WHERE l.source = s.source"
		" AND l.name = s.name) LIMIT 10000)",
	};
	int64_t answers = 0;
	int64_t *counts[] = { &ret->connections, &answers, &ret->dns_queries, &ret->processes,
			      &ret->runs, &ret->cgroups, &ret->stats };

	struct timespec now;
	int r = 0;

	*ret = (struct prune_counts){ 0 };
	for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]) && r == 0; i++)
		r = store_delete_batches(s, sql[i], before_ns, counts[i]);
	/* A running agent forgets the ids it cached: some rows may be gone. */
	clock_gettime(CLOCK_REALTIME, &now);
	if (store_set_state(s, "pruned_ns", (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec) < 0 &&
	    r == 0)
		r = -EIO;
	return r;
}

int store_set_state(struct store *s, const char *key, int64_t value)
{
	sqlite3_stmt *st = s->stmt[ST_STATE_SET];

	bind_text(st, 1, key);
	sqlite3_bind_int64(st, 2, value);
	return stmt_run(st);
}

int store_get_state(struct store *s, const char *key, int64_t *ret)
{
	sqlite3_stmt *st = s->stmt[ST_STATE_GET];
	int rc, r = 0;

	bind_text(st, 1, key);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret = sqlite3_column_int64(st, 0);
		r = 1;
	} else if (rc != SQLITE_DONE)
		r = store_errno(rc);
	sqlite3_reset(st);
	return r;
}
