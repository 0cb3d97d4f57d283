/* SPDX-License-Identifier: MIT */
#ifndef NT_STORE_H
#define NT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>
#include "dnsrec.h"
#include "event.h"

/*
 * The SQLite store. Functions return 0 (or a count) or -errno: -EIO for an SQLite error
 * (store_errmsg() says which), -EBUSY when the database stayed locked, -EROFS when it is
 * read-only, -EPROTO for a database written by a newer nettrail.
 */
struct store;

enum store_flags {
	STORE_READONLY = 1 << 0, /* open an existing database for queries only */
};

extern const char nt_schema_sql[];

int store_open(const char *path, int flags, struct store **ret);
void store_close(struct store *s);
const char *store_errmsg(struct store *s);
/* A user-facing reason for a negative return of store_open. */
const char *store_strerror(int r);
sqlite3 *store_db(struct store *s);

/* The newest schema version this build knows, and the database's. */
int store_schema_latest(void);
int store_schema_version(struct store *s);
/* Applies the migrations up to version `to` (tests use it to build an older database). */
int store_migrate(struct store *s, int to);

int store_begin(struct store *s);
/* The next id of the one event sequence; inside a transaction only, else -EINVAL. */
int store_next_event_id(struct store *s, int64_t *ret);
/* An SQLite result code as -errno (-EBUSY, -EROFS, -EIO, ...). */
int store_errno_of(int rc);
int store_commit(struct store *s);
void store_rollback(struct store *s);
/* 1 while a transaction is open (SQLite rolls one back by itself after some errors). */
int store_in_transaction(struct store *s);

struct process_row {
	uint32_t pid;
	uint64_t start_ns;
	uint32_t exec_id;
	uint32_t ppid, uid, gid;
	const char *comm;
	const char *exe;       /* NULL when unknown */
	const char *cmdline;
	int cmdline_from_proc; /* 1: full, from /proc; 0: first bytes captured in BPF */
	uint64_t cgroup_id;
	const char *scope;
	int64_t run_id;        /* 0: none */
	int64_t first_seen_ns;
};

/* Inserts the process, or finds the row of the same (pid, start_ns, exec_id). */
int store_put_process(struct store *s, const struct process_row *p, int64_t *ret_id);
/* 1 and its id if known, 0 if not, or -errno. */
int store_find_process(struct store *s, uint32_t pid, uint64_t start_ns, uint32_t exec_id,
		       int64_t *ret_id);

/* domain: the name this scope resolved to the address, or NULL. */
int store_insert_connection(struct store *s, const struct conn_record *c, int64_t process_id,
			    const char *scope, int64_t run_id, const char *domain);

/* A DNS query and its answers; process_id and run_id 0 when unknown. */
int store_insert_dns(struct store *s, const struct dns_record *d, int64_t process_id,
		     const char *scope, int64_t run_id);

/*
 * The addresses that answers gave since since_ns, oldest first, at most the latest max of
 * them: fn gets the scope, the name asked for, the answer's CNAME targets ("a>b", as
 * policy_chain_from_text takes them; NULL: none), the address's addr_key bytes, and when the
 * answer's TTL ran out. 0 or -errno.
 */
typedef void (*store_answer_fn)(void *ctx, const char *scope, const char *qname,
				const char *targets, const uint8_t key[16], int64_t expires_ns);
int store_recent_answers(struct store *s, int64_t since_ns, int max, store_answer_fn fn,
			 void *ctx);

struct run_row {
	const char *scope;
	const char *cgroup;
	uint64_t cgroup_id;
	const char *command;
	const char *host;
	const char *mode;
	int64_t started_ns;
};

int store_run_begin(struct store *s, const struct run_row *r, int64_t *ret_id);

/*
 * Where a reader of the runs table stands: the last run it saw start, and the runs it saw
 * start that had not ended (a run ends when its row is updated, in any order).
 */
#define RUNS_OPEN_MAX 256
struct runs_cursor {
	int64_t last_id; /* -1: not positioned yet */
	int64_t open[RUNS_OPEN_MAX];
	int n_open;
};

/*
 * Runs started and ended since the cursor: fn gets each new run with "started", and each run
 * seen open with "succeeded" or "failed" (exit status not 0) once it has ended. A cursor not
 * positioned yet is moved to where the table stands, with no calls.
 */
typedef void (*store_run_fn)(void *ctx, const char *scope, const char *status);
int store_runs_since(struct store *s, struct runs_cursor *c, store_run_fn fn, void *ctx);
int store_run_delete(struct store *s, int64_t run_id);
int store_run_end(struct store *s, int64_t run_id, int64_t ended_ns, int exit_status);
/* The run whose cgroup this is: 1 found, 0 not, or -errno. */
int store_find_run(struct store *s, uint64_t cgroup_id, int64_t *ret_run_id, char *scope,
		   size_t scope_len);

int store_put_cgroup(struct store *s, uint64_t id, const char *path, const char *scope,
		     int64_t run_id, int64_t now_ns);

int store_add_stat(struct store *s, int64_t time_ns, const char *source, const char *name,
		   int64_t value);

struct prune_counts {
	int64_t connections, dns_queries, processes, runs, cgroups, stats;
};

/*
 * Deletes what was recorded before before_ns: connections; then processes, runs and cgroups
 * left with none; counter samples, except each counter's last (totals stay right). Works in
 * small transactions so that a running agent is never held up for long.
 */
int store_prune(struct store *s, int64_t before_ns, struct prune_counts *ret);

int store_set_state(struct store *s, const char *key, int64_t value);
/* 1 found, 0 not, or -errno. */
int store_get_state(struct store *s, const char *key, int64_t *ret);

#endif /* NT_STORE_H */
