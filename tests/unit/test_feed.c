// SPDX-License-Identifier: MIT
/*
 * Unit tests for exporters/feed.c against a database written by the real store: connections
 * of every family (ipv4, ipv6, unix) and DNS queries with CNAME chains, attributed or not,
 * read back as varint-delimited protobuf (decoded by protobuf-c's generated code, every field
 * checked) and as NDJSON (exact lines, and every line valid JSON); resuming after an id in
 * small batches; the scope and kind filters; UTF-8 repair of command lines; feed_last_id.
 * Rule changes, with ids of the same sequence taken between the events', come out in id order
 * among them, through the same filters and cursor; a database of schema 3 has none.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>
#include "dns.h"
#include "event.h"
#include "feed.h"
#include "nettrail.pb-c.h"
#include "store.h"
#include "tmpdir.h"

#define T0 1700000000123456789LL /* 2023-11-14T22:13:20.123456789Z */
#define SEC 1000000000LL
#define FFFD "\xef\xbf\xbd"       /* U+REPLACEMENT CHARACTER in UTF-8 */
#define LONG_CMDLINE 20000        /* past 16383: a 3-byte length prefix */

/* ---- the data set ---------------------------------------------------------------------- */

struct want_proc {
	uint32_t pid, ppid, uid, gid;
	uint64_t start_ns;
	const char *comm, *exe, *cmdline;
	const char *comm_out, *exe_out, *cmdline_out; /* as the feed gives them; NULL: as stored */
};

struct want_answer {
	const char *name, *type, *value; /* value: the address text, or the CNAME target */
	uint32_t ttl;
};

/* One event as inserted, and as the feed must give it back. */
struct want {
	unsigned kind;   /* FEED_KIND_CONNECT or FEED_KIND_DNS */
	int64_t time_ns;
	const char *scope;
	int run;         /* 0: none, 1: run "web", 2: run "db" */
	int verdict;     /* enum nt_verdict */
	const char *rule; /* set afterwards by SQL: the store has no rule yet */
	uint64_t cgroup_id;
	int proc;        /* 1 + index into procs; 0: no process row */
	uint32_t tid;    /* 0: not known */
	/* connect */
	uint8_t ckind;   /* NT_EV_* */
	int family;      /* AF_INET, AF_INET6, AF_UNIX */
	uint8_t proto;
	const char *addr;
	uint16_t port;
	const char *domain;
	/* dns */
	const char *qname;
	uint16_t qtype;
	int rcode;       /* -1: none sent */
	const char *resolver, *upstream;
	int64_t latency_ns; /* -1: none */
	uint32_t answer_count;
	const char *error;
	unsigned n_answers;
	struct want_answer answers[4];
};

static char long_cmdline[LONG_CMDLINE + 1];

static const struct want_proc procs[] = {
	{ .pid = 100, .ppid = 1, .uid = 1000, .gid = 1001, .start_ns = 5, .comm = "curl",
	  .exe = "/usr/bin/curl", .cmdline = "curl -s https://www.example.com/" },
	/* Quotes, a backslash, a newline, a tab and a byte that is not UTF-8. */
	{ .pid = 200, .ppid = 100, .uid = 0, .gid = 0, .start_ns = 6, .comm = "sh", .exe = NULL,
	  .cmdline = "sh -c \"echo a\\b\"\n\tdone \xff!",
	  .cmdline_out = "sh -c \"echo a\\b\"\n\tdone " FFFD "!" },
	{ .pid = 300, .ppid = 1, .uid = 70, .gid = 70, .start_ns = 7, .comm = "python3",
	  .exe = "/usr/bin/python3.11", .cmdline = long_cmdline },
	/*
	 * Ill-formed UTF-8, each maximal subpart one U+FFFD: a truncated 3-byte sequence, a
	 * surrogate, an overlong '/', a 4-byte sequence past U+10FFFF; an emoji kept; a control.
	 */
	{ .pid = 400, .ppid = 300, .uid = 1000, .gid = 1000, .start_ns = 8, .comm = "odd\x80",
	  .exe = "/opt/\xffodd",
	  .cmdline = "odd \xe2\x82 \xed\xa0\x80 \xc0\xaf \xf0\x9f\x98\x80 \xf4\x90\x80\x80 \x01 end",
	  .comm_out = "odd" FFFD, .exe_out = "/opt/" FFFD "odd",
	  .cmdline_out = "odd " FFFD " " FFFD FFFD FFFD " " FFFD FFFD " \xf0\x9f\x98\x80 "
			 FFFD FFFD FFFD FFFD " \x01 end" },
};

static const struct want events[] = {
	{ .kind = FEED_KIND_CONNECT, .time_ns = T0, .scope = "web", .run = 1,
	  .verdict = NT_VERDICT_ALLOWED, .rule = "www.example.com", .cgroup_id = 77, .proc = 1,
	  .tid = 101, .ckind = NT_EV_CONNECT, .family = AF_INET, .proto = IPPROTO_TCP,
	  .addr = "10.0.0.1", .port = 443, .domain = "www.example.com" },
	{ .kind = FEED_KIND_DNS, .time_ns = T0 + 1, .scope = "web", .run = 1,
	  .verdict = NT_VERDICT_ALLOWED, .cgroup_id = 77, .proc = 1, .tid = 101,
	  .qname = "www.example.com", .qtype = DNS_T_A, .rcode = DNS_R_NOERROR, .proto = IPPROTO_UDP,
	  .resolver = "127.0.0.53:53", .upstream = "192.0.2.1:53", .latency_ns = 1234567,
	  .answer_count = 3, .n_answers = 3,
	  .answers = { { "www.example.com", "CNAME", "cdn.example.net", 300 },
		       { "cdn.example.net", "A", "127.0.0.10", 60 },
		       { "cdn.example.net", "AAAA", "::1", 30 } } },
	{ .kind = FEED_KIND_CONNECT, .time_ns = T0 + 2 * SEC, .scope = "web", .run = 1,
	  .verdict = NT_VERDICT_WOULD_BLOCK, .cgroup_id = 78, .proc = 2, .tid = 201,
	  .ckind = NT_EV_SENDMSG, .family = AF_INET6, .proto = IPPROTO_UDP, .addr = "2001:db8::7",
	  .port = 53 },
	{ .kind = FEED_KIND_CONNECT, .time_ns = T0 + 3 * SEC, .scope = "web", .run = 1,
	  .verdict = NT_VERDICT_BLOCKED, .cgroup_id = 78, .proc = 2, .tid = 202,
	  .ckind = NT_EV_UNIX, .family = AF_UNIX, .addr = "/run/nscd/socket" },
	/* Nobody known asked, nobody answered. */
	{ .kind = FEED_KIND_DNS, .time_ns = T0 + 4 * SEC, .scope = "unknown",
	  .verdict = NT_VERDICT_BLOCKED, .qname = "odd.example", .qtype = 65534, .rcode = -1,
	  .proto = IPPROTO_TCP, .latency_ns = -1, .error = "upstream timeout" },
	/* The thread is known, its process row is not; answered at once, with no record. */
	{ .kind = FEED_KIND_DNS, .time_ns = T0 + 5 * SEC, .scope = "db", .run = 2,
	  .verdict = NT_VERDICT_WOULD_BLOCK, .rule = "=gone.example", .cgroup_id = 99, .tid = 4242,
	  .qname = "gone.example", .qtype = DNS_T_AAAA, .rcode = DNS_R_NXDOMAIN,
	  .proto = IPPROTO_UDP, .resolver = "[::1]:53", .latency_ns = 0 },
	{ .kind = FEED_KIND_CONNECT, .time_ns = T0 + 6 * SEC, .scope = "db", .run = 2,
	  .verdict = NT_VERDICT_ALLOWED, .cgroup_id = 79, .proc = 3, .tid = 301,
	  .ckind = NT_EV_CONNECT, .family = AF_INET, .proto = IPPROTO_TCP, .addr = "192.0.2.7",
	  .port = 5432, .domain = "db.internal" },
	/* A chain of two CNAMEs; the answer also had a record that is not kept. */
	{ .kind = FEED_KIND_DNS, .time_ns = T0 + 7 * SEC, .scope = "db", .run = 2,
	  .verdict = NT_VERDICT_ALLOWED, .cgroup_id = 80, .proc = 4, .tid = 401,
	  .qname = "a.b.example", .qtype = DNS_T_A, .rcode = DNS_R_NOERROR, .proto = IPPROTO_UDP,
	  .resolver = "127.0.0.53:53", .upstream = "192.0.2.1:53", .latency_ns = 5000,
	  .answer_count = 5, .n_answers = 4,
	  .answers = { { "a.b.example", "CNAME", "c.example", 10 },
		       { "c.example", "CNAME", "d.example", 20 },
		       { "d.example", "A", "192.0.2.10", 30 },
		       { "d.example", "A", "192.0.2.11", 40 } } },
};

#define N_EVENTS ((int)(sizeof(events) / sizeof(events[0])))

/* One rule_changes row as `nettrail policy` writes it, and as the feed must give it back. */
struct want_change {
	int64_t time_ns;
	const char *action, *scope;
	const char *pattern;            /* NULL for a scope default */
	const char *old_mode, *new_mode; /* NULL: none */
	const char *by, *note;
	int64_t rule_id;                /* 0: NULL, a scope default */
	const char *by_out, *note_out;  /* as the feed gives them; NULL: as stored */
};

static const struct want_change changes[] = {
	{ .time_ns = T0 - SEC, .action = "add", .scope = "", .pattern = "example.com",
	  .new_mode = "monitor", .by = "alice (uid 0 via sudo)", .note = "watch first",
	  .rule_id = 1 },
	/* A scope's first default: no pattern, no rule, no old mode, no note. */
	{ .time_ns = T0 + SEC + 500, .action = "default", .scope = "web", .new_mode = "enforce",
	  .by = "root (uid 0)" },
	/* Quotes, a newline and bytes that are not UTF-8, in who and why. */
	{ .time_ns = T0 + 3 * SEC + 7, .action = "set", .scope = "db", .pattern = "=gone.example",
	  .old_mode = "monitor", .new_mode = "enforce", .by = "b\xff" "ob (uid 1000)",
	  .note = "incident \"7\"\n\xc0\xaf", .rule_id = 2, .by_out = "b" FFFD "ob (uid 1000)",
	  .note_out = "incident \"7\"\n" FFFD FFFD },
	{ .time_ns = T0 + 6 * SEC + 1, .action = "rm", .scope = "", .pattern = "example.com",
	  .old_mode = "monitor", .by = "alice (uid 0 via sudo)", .rule_id = 1 },
	/* The default of every scope, changed after the last event. */
	{ .time_ns = T0 + 9 * SEC, .action = "default", .scope = "", .old_mode = "allow",
	  .new_mode = "monitor", .by = "root (uid 0)", .note = "audit week" },
};

#define N_CHANGES ((int)(sizeof(changes) / sizeof(changes[0])))

/*
 * The mixed data set: events and rule changes in the order their ids are taken, so item i
 * has id i + 1. EV(n) is events[n], RC(n) changes[n].
 */
#define EV(n) (n)
#define RC(n) (-1 - (n))
static const int mixed[] = {
	RC(0), EV(0), EV(1), RC(1), EV(2), EV(3), RC(2), EV(4), EV(5), EV(6), RC(3), EV(7), RC(4),
};

#define N_MIXED ((int)(sizeof(mixed) / sizeof(mixed[0])))

struct fixture {
	char dir[1024];
	char path[1024 + 16];
	struct store *s;
	struct feed_reader *r;
	int64_t run[3];  /* run ids by want.run */
	int64_t proc[5]; /* process row ids by want.proc */
};

/* ---- fixtures -------------------------------------------------------------------------- */

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (!f)
		return 0;
	feed_close(f->r);
	store_close(f->s);
	tmpdir_remove(f->dir);
	free(f);
	*state = NULL;
	return 0;
}

static int setup_dir(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (tmpdir_make("feed", f->dir, sizeof(f->dir), f->path, sizeof(f->path)) < 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

/* An empty store, and a feed reader on it. */
static int setup_empty(void **state)
{
	struct fixture *f;

	if (setup_dir(state) < 0)
		return -1;
	f = *state;
	if (store_open(f->path, 0, &f->s) < 0 || feed_open(f->path, &f->r) < 0) {
		teardown(state);
		return -1;
	}
	return 0;
}

static int64_t put_proc(struct store *s, const struct want_proc *w, const char *scope, int64_t run)
{
	struct process_row p = {
		.pid = w->pid, .start_ns = w->start_ns, .ppid = w->ppid, .uid = w->uid, .gid = w->gid,
		.comm = w->comm, .exe = w->exe, .cmdline = w->cmdline, .cmdline_from_proc = 1,
		.cgroup_id = 77, .scope = scope, .run_id = run, .first_seen_ns = T0,
	};
	int64_t id = -1;

	assert_int_equal(store_put_process(s, &p, &id), 0);
	return id;
}

static void insert_want_conn(struct fixture *f, const struct want *w)
{
	struct conn_record c = {
		.time_ns = w->time_ns, .start_ns = procs[w->proc - 1].start_ns, .cgroup_id = w->cgroup_id,
		.pid = procs[w->proc - 1].pid, .tid = w->tid, .port = w->port,
		.family = (uint8_t)w->family, .proto = w->proto, .kind = w->ckind,
		.verdict = (uint8_t)w->verdict,
	};

	if (w->family == AF_UNIX)
		c.addr[0] = 1; /* event_resolver_path(1): /run/nscd/socket */
	else
		assert_int_equal(inet_pton(w->family, w->addr, c.addr), 1);
	assert_int_equal(store_insert_connection(f->s, &c, f->proc[w->proc], w->scope, f->run[w->run],
						 w->domain), 0);
}

static void insert_want_dns(struct fixture *f, const struct want *w)
{
	struct dns_record_rr rrs[4] = { { 0 } };
	struct dns_record d = {
		.time_ns = w->time_ns, .attributed = w->tid != 0,
		.origin = { .cgroup_id = w->cgroup_id, .tid = w->tid },
		.qname = w->qname, .qtype = w->qtype, .rcode = w->rcode, .proto = w->proto,
		.verdict = (uint8_t)w->verdict, .latency_ns = w->latency_ns, .error = w->error,
		.answers = w->answer_count, .n_rrs = w->n_answers, .rrs = rrs,
	};

	snprintf(d.resolver, sizeof(d.resolver), "%s", w->resolver ? w->resolver : "");
	snprintf(d.upstream, sizeof(d.upstream), "%s", w->upstream ? w->upstream : "");
	for (unsigned i = 0; i < w->n_answers; i++) {
		const struct want_answer *a = &w->answers[i];

		rrs[i].name = a->name;
		rrs[i].ttl = a->ttl;
		if (strcmp(a->type, "CNAME") == 0) {
			rrs[i].type = DNS_T_CNAME;
			rrs[i].target = a->value;
		} else {
			rrs[i].type = strcmp(a->type, "A") == 0 ? DNS_T_A : DNS_T_AAAA;
			rrs[i].family = rrs[i].type == DNS_T_A ? AF_INET : AF_INET6;
			assert_int_equal(inet_pton(rrs[i].family, a->value, rrs[i].addr), 1);
		}
	}
	assert_int_equal(store_insert_dns(f->s, &d, f->proc[w->proc], w->scope, f->run[w->run]), 0);
}

/*
 * A rule change with the next id of the store's sequence, inside its transaction, as
 * agent/rules.c records one (that module is not linked here: the feed reads this table only).
 */
static void insert_change(struct fixture *f, const struct want_change *c)
{
	sqlite3_stmt *st;
	int64_t id;

	assert_int_equal(store_next_event_id(f->s, &id), 0);
	assert_int_equal(sqlite3_prepare_v2(store_db(f->s),
					    "INSERT INTO rule_changes (id, time_ns, by, action,"
					    " rule_id, scope, pattern, old_mode, new_mode, note)"
					    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, c->time_ns);
	sqlite3_bind_text(st, 3, c->by, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, c->action, -1, SQLITE_STATIC);
	if (c->rule_id)
		sqlite3_bind_int64(st, 5, c->rule_id);
	sqlite3_bind_text(st, 6, c->scope, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, c->pattern, -1, SQLITE_STATIC); /* NULL binds NULL */
	sqlite3_bind_text(st, 8, c->old_mode, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 9, c->new_mode, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 10, c->note, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

/* The runs and processes the events name. */
static void insert_owners(struct fixture *f)
{
	struct run_row web = { .scope = "web", .cgroup = "/sys/fs/cgroup/nettrail/web/1",
			       .cgroup_id = 77, .command = "./deploy.sh", .host = "h", .mode = "agent",
			       .started_ns = T0 };
	struct run_row db = web;

	db.scope = "db";
	db.cgroup_id = 79;
	assert_int_equal(store_run_begin(f->s, &web, &f->run[1]), 0);
	assert_int_equal(store_run_begin(f->s, &db, &f->run[2]), 0);
	for (int i = 0; i < 4; i++)
		f->proc[i + 1] = put_proc(f->s, &procs[i], i < 2 ? "web" : "db", f->run[i < 2 ? 1 : 2]);
}

/*
 * The items of order (EV and RC, as in mixed[]) in one writer transaction, so item i gets id
 * i + 1; then each event's rule by SQL.
 */
static void insert_items(struct fixture *f, const int *order, int n)
{
	char sql[256];

	insert_owners(f);
	assert_int_equal(store_begin(f->s), 0);
	for (int i = 0; i < n; i++) {
		if (order[i] < 0)
			insert_change(f, &changes[-1 - order[i]]);
		else if (events[order[i]].kind == FEED_KIND_CONNECT)
			insert_want_conn(f, &events[order[i]]);
		else
			insert_want_dns(f, &events[order[i]]);
	}
	assert_int_equal(store_commit(f->s), 0);
	for (int i = 0; i < n; i++) {
		const struct want *w = order[i] >= 0 ? &events[order[i]] : NULL;

		if (!w || !w->rule)
			continue;
		snprintf(sql, sizeof(sql), "UPDATE %s SET rule = '%s' WHERE id = %d",
			 w->kind == FEED_KIND_CONNECT ? "connections" : "dns_queries", w->rule,
			 i + 1);
		assert_int_equal(sqlite3_exec(store_db(f->s), sql, NULL, NULL, NULL), SQLITE_OK);
	}
}

/* The events alone, ids 1..N_EVENTS. */
static void insert_events(struct fixture *f)
{
	int order[N_EVENTS];

	for (int i = 0; i < N_EVENTS; i++)
		order[i] = EV(i);
	insert_items(f, order, N_EVENTS);
}

static int setup_events(void **state)
{
	struct fixture *f;

	memset(long_cmdline, 'x', LONG_CMDLINE);
	memcpy(long_cmdline, "python3 -c ", 11);
	if (setup_empty(state) < 0)
		return -1;
	f = *state;
	insert_events(f);
	return 0;
}

/* The events and rule changes of mixed[], ids 1..N_MIXED. */
static int setup_mixed(void **state)
{
	memset(long_cmdline, 'x', LONG_CMDLINE);
	memcpy(long_cmdline, "python3 -c ", 11);
	if (setup_empty(state) < 0)
		return -1;
	insert_items(*state, mixed, N_MIXED);
	return 0;
}

/* ---- decoding -------------------------------------------------------------------------- */

/* A varint at p (len bytes left): bytes used, or 0 when it is cut short or too long. */
static size_t varint_get(const uint8_t *p, size_t len, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < len && i < 10; i++) {
		*v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80))
			return i + 1;
	}
	return 0;
}

/*
 * Splits a delimited stream into its messages, each unpacked by protobuf-c: the count, with
 * each message's prefix length in prefix[] when given. The stream must end at a message end.
 */
static size_t decode_stream(const struct feed_buf *b, Nettrail__V1__Event **evs, size_t max,
			    size_t *prefix)
{
	size_t off = 0, n = 0;

	while (off < b->len) {
		uint64_t len;
		size_t k = varint_get(b->data + off, b->len - off, &len);

		assert_true(k > 0);
		assert_true(n < max);
		assert_true(len <= b->len - off - k);
		evs[n] = nettrail__v1__event__unpack(NULL, (size_t)len, b->data + off + k);
		assert_non_null(evs[n]);
		if (prefix)
			prefix[n] = k;
		off += k + (size_t)len;
		n++;
	}
	assert_int_equal(off, b->len);
	return n;
}

static void free_events(Nettrail__V1__Event **evs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		nettrail__v1__event__free_unpacked(evs[i], NULL);
}

static int pb_verdict(int v)
{
	switch (v) {
	case NT_VERDICT_ALLOWED: return NETTRAIL__V1__VERDICT__ALLOWED;
	case NT_VERDICT_WOULD_BLOCK: return NETTRAIL__V1__VERDICT__WOULD_BLOCK;
	default: return NETTRAIL__V1__VERDICT__BLOCKED;
	}
}

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

static void check_process(const Nettrail__V1__Event *ev, const struct want *w)
{
	const struct want_proc *p = w->proc ? &procs[w->proc - 1] : NULL;

	if (!p && !w->tid) {
		assert_null(ev->process);
		return;
	}
	assert_non_null(ev->process);
	assert_int_equal(ev->process->tid, w->tid);
	assert_int_equal(ev->process->pid, p ? p->pid : 0);
	assert_int_equal(ev->process->ppid, p ? p->ppid : 0);
	assert_int_equal(ev->process->uid, p ? p->uid : 0);
	assert_int_equal(ev->process->gid, p ? p->gid : 0);
	assert_int_equal(ev->process->start_ns, p ? p->start_ns : 0);
	assert_string_equal(ev->process->comm, !p ? "" : p->comm_out ? p->comm_out : p->comm);
	assert_string_equal(ev->process->exe, !p ? "" : p->exe_out ? p->exe_out : or_empty(p->exe));
	assert_string_equal(ev->process->cmdline,
			    !p ? "" : p->cmdline_out ? p->cmdline_out : p->cmdline);
}

static void check_connect(const Nettrail__V1__Connect *c, const struct want *w)
{
	assert_non_null(c);
	assert_string_equal(c->kind, w->ckind == NT_EV_SENDMSG ? "sendto" : "connect");
	assert_string_equal(c->family, w->family == AF_INET ? "ipv4" : w->family == AF_INET6 ? "ipv6"
											     : "unix");
	assert_string_equal(c->proto, w->family == AF_UNIX ? "unix"
				      : w->proto == IPPROTO_TCP ? "tcp" : "udp");
	assert_string_equal(c->addr, w->addr);
	assert_int_equal(c->port, w->port);
	assert_string_equal(c->domain, or_empty(w->domain));
}

static void check_dns(const Nettrail__V1__DnsQuery *q, const struct want *w)
{
	char tbuf[16], rbuf[16];

	assert_non_null(q);
	assert_string_equal(q->qname, w->qname);
	assert_string_equal(q->qtype, dns_type_name(w->qtype, tbuf));
	assert_string_equal(q->rcode, w->rcode < 0 ? "" : dns_rcode_name((unsigned)w->rcode, rbuf));
	assert_string_equal(q->transport, w->proto == IPPROTO_TCP ? "tcp" : "udp");
	assert_string_equal(q->resolver, or_empty(w->resolver));
	assert_string_equal(q->upstream, or_empty(w->upstream));
	if (w->latency_ns < 0) {
		assert_int_equal(q->latency_case, NETTRAIL__V1__DNS_QUERY__LATENCY__NOT_SET);
	} else {
		assert_int_equal(q->latency_case, NETTRAIL__V1__DNS_QUERY__LATENCY_LATENCY_NS);
		assert_int_equal(q->latency_ns, w->latency_ns);
	}
	assert_int_equal(q->answer_count, w->answer_count);
	assert_string_equal(q->error, or_empty(w->error));
	assert_int_equal(q->n_answers, w->n_answers);
	for (unsigned i = 0; i < w->n_answers; i++) {
		assert_string_equal(q->answers[i]->name, w->answers[i].name);
		assert_string_equal(q->answers[i]->type, w->answers[i].type);
		assert_string_equal(q->answers[i]->value, w->answers[i].value);
		assert_int_equal(q->answers[i]->ttl, w->answers[i].ttl);
	}
}

/* Every field of a decoded event against events[idx], which has id `id`. */
static void check_event_id(const struct fixture *f, const Nettrail__V1__Event *ev, int idx,
			   int64_t id)
{
	const struct want *w = &events[idx];

	assert_int_equal(ev->id, id);
	assert_non_null(ev->time);
	assert_int_equal(ev->time->seconds, w->time_ns / SEC);
	assert_int_equal(ev->time->nanos, w->time_ns % SEC);
	assert_string_equal(ev->scope, w->scope);
	assert_int_equal(ev->run_id, w->run ? f->run[w->run] : 0);
	assert_int_equal(ev->verdict, pb_verdict(w->verdict));
	assert_string_equal(ev->rule, or_empty(w->rule));
	assert_int_equal(ev->cgroup_id, w->cgroup_id);
	check_process(ev, w);
	if (w->kind == FEED_KIND_CONNECT) {
		assert_int_equal(ev->kind_case, NETTRAIL__V1__EVENT__KIND_CONNECT);
		check_connect(ev->connect, w);
	} else {
		assert_int_equal(ev->kind_case, NETTRAIL__V1__EVENT__KIND_DNS);
		check_dns(ev->dns, w);
	}
}

/* The same, for the data set of events alone: events[idx] has id idx + 1. */
static void check_event(const struct fixture *f, const Nettrail__V1__Event *ev, int idx)
{
	check_event_id(f, ev, idx, idx + 1);
}

/* Every field of a decoded rule change against changes[idx], which has id `id`. */
static void check_change(const Nettrail__V1__Event *ev, int idx, int64_t id)
{
	const struct want_change *c = &changes[idx];
	const Nettrail__V1__RuleChange *rc = ev->rule_change;

	assert_int_equal(ev->id, id);
	assert_non_null(ev->time);
	assert_int_equal(ev->time->seconds, c->time_ns / SEC);
	assert_int_equal(ev->time->nanos, c->time_ns % SEC);
	/* The event's scope is the rule's; nothing of a connect or a query is set. */
	assert_string_equal(ev->scope, c->scope);
	assert_null(ev->process);
	assert_int_equal(ev->run_id, 0);
	assert_int_equal(ev->verdict, NETTRAIL__V1__VERDICT__VERDICT_UNSPECIFIED);
	assert_string_equal(ev->rule, "");
	assert_int_equal(ev->cgroup_id, 0);
	assert_int_equal(ev->kind_case, NETTRAIL__V1__EVENT__KIND_RULE_CHANGE);
	assert_non_null(rc);
	assert_string_equal(rc->pattern, or_empty(c->pattern));
	assert_string_equal(rc->scope, c->scope);
	assert_string_equal(rc->old_mode, or_empty(c->old_mode));
	assert_string_equal(rc->new_mode, or_empty(c->new_mode));
	assert_string_equal(rc->by, c->by_out ? c->by_out : c->by);
	assert_string_equal(rc->note, c->note_out ? c->note_out : or_empty(c->note));
	assert_string_equal(rc->action, c->action);
	assert_int_equal(rc->rule_id, c->rule_id);
}

/* A decoded event of the mixed data set against mixed[i]. */
static void check_mixed(const struct fixture *f, const Nettrail__V1__Event *ev, int i)
{
	if (mixed[i] < 0)
		check_change(ev, -1 - mixed[i], i + 1);
	else
		check_event_id(f, ev, mixed[i], i + 1);
}

/* The ids of a delimited stream, as "1 2 3". */
static const char *stream_ids(const struct feed_buf *b, char *buf, size_t len)
{
	Nettrail__V1__Event *evs[64];
	size_t n = decode_stream(b, evs, 64, NULL), used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? " " : "",
					 (unsigned long long)evs[i]->id);
	free_events(evs, n);
	return buf;
}

/* ---- a JSON checker, independent of the encoder --------------------------------------- */

static const char *js_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	return p;
}

/* One UTF-8 character of a JSON string (RFC 3629 forms only): past it, or NULL. */
static const char *js_utf8(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	int n = u[0] >= 0xf0 ? 3 : u[0] >= 0xe0 ? 2 : 1;
	uint32_t c = u[0] & (n == 3 ? 0x07 : n == 2 ? 0x0f : 0x1f);

	if (u[0] < 0xc2 || u[0] > 0xf4)
		return NULL;
	for (int i = 1; i <= n; i++) {
		if ((u[i] & 0xc0) != 0x80)
			return NULL;
		c = c << 6 | (u[i] & 0x3f);
	}
	if ((n == 2 && c < 0x800) || (n == 3 && c < 0x10000) || c > 0x10ffff ||
	    (c >= 0xd800 && c <= 0xdfff))
		return NULL;
	return p + n + 1;
}

static const char *js_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p != '"') {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20)
			return NULL;
		if (c == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
						return NULL;
				p += 5;
			} else if (*p && strchr("\"\\/bfnrt", *p)) {
				p++;
			} else {
				return NULL;
			}
		} else if (c >= 0x80) {
			if (!(p = js_utf8(p)))
				return NULL;
		} else {
			p++;
		}
	}
	return p + 1;
}

static const char *js_value(const char *p);

/* An object or array: open, members (key: value for objects), close. */
static const char *js_compound(const char *p, char close, int object)
{
	p = js_ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (object) {
			if (!(p = js_string(p)))
				return NULL;
			p = js_ws(p);
			if (*p++ != ':')
				return NULL;
		}
		if (!(p = js_value(p)))
			return NULL;
		p = js_ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
		p = js_ws(p);
	}
}

static const char *js_value(const char *p)
{
	p = js_ws(p);
	if (*p == '{')
		return js_compound(p, '}', 1);
	if (*p == '[')
		return js_compound(p, ']', 0);
	if (*p == '"')
		return js_string(p);
	if (*p == '-' || (*p >= '0' && *p <= '9')) {
		p += *p == '-';
		if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
		return p;
	}
	for (const char *const *lit = (const char *const[]){ "true", "false", "null", NULL }; *lit;
	     lit++)
		if (strncmp(p, *lit, strlen(*lit)) == 0)
			return p + strlen(*lit);
	return NULL;
}

/* A line is one JSON object and nothing else. */
static int json_line_valid(const char *line)
{
	const char *end = js_ws(line);

	if (*end != '{')
		return 0;
	end = js_value(line);
	return end && *js_ws(end) == '\0';
}

/* ---- tests ----------------------------------------------------------------------------- */

/* Every event, every field, in id order, each delimited by its exact length. */
static void test_protobuf_fields(void **state)
{
	struct fixture *f = *state;
	struct feed_buf b = { 0 };
	Nettrail__V1__Event *evs[16];
	size_t prefix[16], n;
	int64_t last = -1;

	assert_int_equal(feed_read(f->r, NULL, 0, 100, FEED_PROTOBUF, &b, &last), N_EVENTS);
	assert_int_equal(last, N_EVENTS);
	n = decode_stream(&b, evs, 16, prefix);
	assert_int_equal(n, N_EVENTS);
	for (int i = 0; i < N_EVENTS; i++)
		check_event(f, evs[i], i);
	/* Prefixes of 1 byte (the small query, under 128 bytes) and 2 (a whole process). */
	assert_int_equal(prefix[4], 1);
	assert_int_equal(prefix[0], 2);
	assert_true(b.data[0] >= 0x80 && b.data[1] < 0x80);
	/* The long command line's event: a 3-byte prefix, continuation bits on the first two. */
	assert_int_equal(prefix[6], 3);
	assert_int_equal(evs[6]->process->cmdline[LONG_CMDLINE - 1], 'x');
	assert_int_equal(strlen(evs[6]->process->cmdline), LONG_CMDLINE);
	free_events(evs, n);
	feed_buf_free(&b);
}

/* Reading in batches of 1, 2, 3 gives the same bytes as one read: no repeat, no gap. */
static void test_resume_batches(void **state)
{
	struct fixture *f = *state;
	struct feed_buf all = { 0 }, part = { 0 };
	int64_t last_all = 0;

	assert_int_equal(feed_read(f->r, NULL, 0, 1000, FEED_PROTOBUF, &all, &last_all), N_EVENTS);
	for (size_t max = 1; max <= 3; max++) {
		int64_t last = 0, prev;
		int k, reads = 0;

		part.len = 0;
		do {
			prev = last;
			k = feed_read(f->r, NULL, last, max, FEED_PROTOBUF, &part, &last);
			assert_true(k >= 0 && (size_t)k <= max);
			assert_true(k == 0 ? last == prev : last > prev);
			reads++;
		} while (k > 0);
		assert_int_equal(reads, (N_EVENTS + (int)max - 1) / (int)max + 1);
		assert_int_equal(last, last_all);
		assert_int_equal(part.len, all.len);
		assert_memory_equal(part.data, all.data, all.len);
	}
	/* Past the end: nothing, and the cursor stays. */
	{
		int64_t last = 77;

		part.len = 0;
		assert_int_equal(feed_read(f->r, NULL, N_EVENTS, 10, FEED_PROTOBUF, &part, &last), 0);
		assert_int_equal(last, 77);
		assert_int_equal(part.len, 0);
	}
	feed_buf_free(&all);
	feed_buf_free(&part);
}

/* What one filter returns, read in batches of max, as the ids of the events. */
static const char *filtered(struct fixture *f, const char *scope, unsigned kinds, size_t max,
			    enum feed_format fmt, char *buf, size_t len)
{
	struct feed_filter flt = { .scope = scope, .kinds = kinds };
	struct feed_buf b = { 0 };
	int64_t last = 0;
	int k;

	while ((k = feed_read(f->r, &flt, last, max, fmt, &b, &last)) > 0)
		;
	assert_int_equal(k, 0);
	if (fmt == FEED_PROTOBUF) {
		stream_ids(&b, buf, len);
	} else {
		/* The "id" member comes first on every line. */
		const char *p = (const char *)b.data, *end = p + b.len, *nl;
		size_t used = 0;

		buf[0] = '\0';
		for (; p < end; p = nl + 1) {
			nl = memchr(p, '\n', (size_t)(end - p));
			assert_non_null(nl);
			assert_memory_equal(p, "{\"id\":\"", 7);
			used += (size_t)snprintf(buf + used, len - used, "%s%lld", used ? " " : "",
						 strtoll(p + 7, NULL, 10));
		}
	}
	feed_buf_free(&b);
	return buf;
}

static void test_filters(void **state)
{
	struct fixture *f = *state;
	char buf[256];

	for (size_t max = 1; max <= 100; max += 99) {
		for (int fmt = FEED_PROTOBUF; fmt <= FEED_NDJSON; fmt++) {
			assert_string_equal(filtered(f, NULL, 0, max, fmt, buf, sizeof(buf)),
					    "1 2 3 4 5 6 7 8");
			assert_string_equal(filtered(f, NULL, FEED_KIND_ALL, max, fmt, buf, sizeof(buf)),
					    "1 2 3 4 5 6 7 8");
			assert_string_equal(filtered(f, "web", FEED_KIND_ALL, max, fmt, buf, sizeof(buf)),
					    "1 2 3 4");
			assert_string_equal(filtered(f, "db", 0, max, fmt, buf, sizeof(buf)), "6 7 8");
			assert_string_equal(filtered(f, NULL, FEED_KIND_CONNECT, max, fmt, buf, sizeof(buf)),
					    "1 3 4 7");
			assert_string_equal(filtered(f, NULL, FEED_KIND_DNS, max, fmt, buf, sizeof(buf)),
					    "2 5 6 8");
			/* The answers cursor skips the queries filtered out (2, 5) and seeks again. */
			assert_string_equal(filtered(f, "db", FEED_KIND_DNS, max, fmt, buf, sizeof(buf)),
					    "6 8");
			assert_string_equal(filtered(f, "nope", 0, max, fmt, buf, sizeof(buf)), "");
			assert_string_equal(filtered(f, NULL, FEED_KIND_RULE_CHANGE, max, fmt, buf,
						     sizeof(buf)), "");
		}
	}
	/* Filtered events are decoded with their own answers, not a skipped query's. */
	{
		struct feed_filter flt = { .scope = "db", .kinds = FEED_KIND_DNS };
		struct feed_buf b = { 0 };
		Nettrail__V1__Event *evs[4];
		int64_t last = 0;

		assert_int_equal(feed_read(f->r, &flt, 0, 10, FEED_PROTOBUF, &b, &last), 2);
		assert_int_equal(decode_stream(&b, evs, 4, NULL), 2);
		check_event(f, evs[0], 5);
		check_event(f, evs[1], 7);
		free_events(evs, 2);
		feed_buf_free(&b);
	}
}

/* Each line of an NDJSON buffer, by index; the buffer is changed (newlines to NULs). */
static size_t split_lines(struct feed_buf *b, char **lines, size_t max)
{
	size_t n = 0;
	char *p = (char *)b->data, *end = p + b->len;

	assert_true(b->len > 0 && end[-1] == '\n');
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));

		assert_non_null(nl);
		assert_true(n < max);
		*nl = '\0';
		lines[n++] = p;
		p = nl + 1;
	}
	return n;
}

static void test_ndjson(void **state)
{
	struct fixture *f = *state;
	struct feed_buf b = { 0 };
	char *lines[16], *copy;
	int64_t last = 0;

	assert_int_equal(feed_read(f->r, NULL, 0, 100, FEED_NDJSON, &b, &last), N_EVENTS);
	assert_int_equal(last, N_EVENTS);
	assert_int_equal(split_lines(&b, lines, 16), N_EVENTS);
	for (int i = 0; i < N_EVENTS; i++)
		assert_true(json_line_valid(lines[i]));
	assert_string_equal(lines[0],
		"{\"id\":\"1\",\"time\":{\"seconds\":\"1700000000\",\"nanos\":123456789},"
		"\"connect\":{\"kind\":\"connect\",\"family\":\"ipv4\",\"proto\":\"tcp\","
		"\"addr\":\"10.0.0.1\",\"port\":443,\"domain\":\"www.example.com\"},"
		"\"process\":{\"pid\":100,\"ppid\":1,\"uid\":1000,\"gid\":1001,\"comm\":\"curl\","
		"\"exe\":\"/usr/bin/curl\",\"cmdline\":\"curl -s https://www.example.com/\","
		"\"startNs\":\"5\",\"tid\":101},\"scope\":\"web\",\"runId\":\"1\","
		"\"verdict\":\"ALLOWED\",\"rule\":\"www.example.com\",\"cgroupId\":\"77\"}");
	assert_string_equal(lines[1],
		"{\"id\":\"2\",\"time\":{\"seconds\":\"1700000000\",\"nanos\":123456790},"
		"\"dns\":{\"qname\":\"www.example.com\",\"qtype\":\"A\",\"rcode\":\"NOERROR\","
		"\"transport\":\"udp\",\"resolver\":\"127.0.0.53:53\",\"upstream\":\"192.0.2.1:53\","
		"\"latencyNs\":\"1234567\",\"answerCount\":3,\"answers\":["
		"{\"name\":\"www.example.com\",\"type\":\"CNAME\",\"value\":\"cdn.example.net\",\"ttl\":300},"
		"{\"name\":\"cdn.example.net\",\"type\":\"A\",\"value\":\"127.0.0.10\",\"ttl\":60},"
		"{\"name\":\"cdn.example.net\",\"type\":\"AAAA\",\"value\":\"::1\",\"ttl\":30}]},"
		"\"process\":{\"pid\":100,\"ppid\":1,\"uid\":1000,\"gid\":1001,\"comm\":\"curl\","
		"\"exe\":\"/usr/bin/curl\",\"cmdline\":\"curl -s https://www.example.com/\","
		"\"startNs\":\"5\",\"tid\":101},\"scope\":\"web\",\"runId\":\"1\","
		"\"verdict\":\"ALLOWED\",\"cgroupId\":\"77\"}");
	/* Quotes, backslash, newline, tab and a 0xff byte in the command line; no exe, uid 0. */
	assert_string_equal(lines[2],
		"{\"id\":\"3\",\"time\":{\"seconds\":\"1700000002\",\"nanos\":123456789},"
		"\"connect\":{\"kind\":\"sendto\",\"family\":\"ipv6\",\"proto\":\"udp\","
		"\"addr\":\"2001:db8::7\",\"port\":53},"
		"\"process\":{\"pid\":200,\"ppid\":100,\"comm\":\"sh\","
		"\"cmdline\":\"sh -c \\\"echo a\\\\b\\\"\\n\\tdone \\ufffd!\","
		"\"startNs\":\"6\",\"tid\":201},\"scope\":\"web\",\"runId\":\"1\","
		"\"verdict\":\"WOULD_BLOCK\",\"cgroupId\":\"78\"}");
	assert_string_equal(lines[3],
		"{\"id\":\"4\",\"time\":{\"seconds\":\"1700000003\",\"nanos\":123456789},"
		"\"connect\":{\"kind\":\"connect\",\"family\":\"unix\",\"proto\":\"unix\","
		"\"addr\":\"/run/nscd/socket\"},"
		"\"process\":{\"pid\":200,\"ppid\":100,\"comm\":\"sh\","
		"\"cmdline\":\"sh -c \\\"echo a\\\\b\\\"\\n\\tdone \\ufffd!\","
		"\"startNs\":\"6\",\"tid\":202},\"scope\":\"web\",\"runId\":\"1\","
		"\"verdict\":\"BLOCKED\",\"cgroupId\":\"78\"}");
	/* No process at all: no "process" member; no answer: no rcode, no latency. */
	assert_string_equal(lines[4],
		"{\"id\":\"5\",\"time\":{\"seconds\":\"1700000004\",\"nanos\":123456789},"
		"\"dns\":{\"qname\":\"odd.example\",\"qtype\":\"TYPE65534\",\"transport\":\"tcp\","
		"\"error\":\"upstream timeout\"},\"scope\":\"unknown\",\"verdict\":\"BLOCKED\"}");
	/* Only the thread known; a latency of 0 is a measured one and is written. */
	assert_string_equal(lines[5],
		"{\"id\":\"6\",\"time\":{\"seconds\":\"1700000005\",\"nanos\":123456789},"
		"\"dns\":{\"qname\":\"gone.example\",\"qtype\":\"AAAA\",\"rcode\":\"NXDOMAIN\","
		"\"transport\":\"udp\",\"resolver\":\"[::1]:53\",\"latencyNs\":\"0\"},"
		"\"process\":{\"tid\":4242},\"scope\":\"db\",\"runId\":\"2\","
		"\"verdict\":\"WOULD_BLOCK\",\"rule\":\"=gone.example\",\"cgroupId\":\"99\"}");
	/* Ill-formed UTF-8 as \ufffd per maximal subpart, an emoji as is, a control as \u0001. */
	copy = strstr(lines[7], "\"cmdline\":");
	assert_non_null(copy);
	assert_memory_equal(copy,
		"\"cmdline\":\"odd \\ufffd \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd \xf0\x9f\x98\x80 "
		"\\ufffd\\ufffd\\ufffd\\ufffd \\u0001 end\",",
		strlen("\"cmdline\":\"odd \\ufffd \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd \xf0\x9f\x98\x80 "
		       "\\ufffd\\ufffd\\ufffd\\ufffd \\u0001 end\","));
	assert_non_null(strstr(lines[7], "\"comm\":\"odd\\ufffd\",\"exe\":\"/opt/\\ufffdodd\""));
	/* The long command line is there whole. */
	assert_non_null(strstr(lines[6], "\"cmdline\":\"python3 -c xxxx"));
	assert_true(strlen(lines[6]) > LONG_CMDLINE);
	feed_buf_free(&b);
}

/* Events are appended: what out held stays, and a failed call leaves it as it was. */
static void test_append_and_args(void **state)
{
	struct fixture *f = *state;
	struct feed_buf b = { 0 };
	struct feed_filter flt = { .kinds = FEED_KIND_CONNECT };
	int64_t last = 5;

	assert_int_equal(feed_read(f->r, NULL, 0, 1, FEED_NDJSON, &b, &last), 1);
	assert_int_equal(last, 1);
	assert_int_equal(feed_read(f->r, &flt, last, 1, FEED_NDJSON, &b, &last), 1);
	assert_int_equal(last, 3);
	assert_int_equal(memcmp(b.data, "{\"id\":\"1\"", 9), 0);
	assert_non_null(memmem(b.data, b.len, "\n{\"id\":\"3\"", 10));
	assert_int_equal(feed_read(f->r, NULL, 0, 0, FEED_NDJSON, &b, &last), 0);
	assert_int_equal(feed_read(f->r, NULL, 0, 5, (enum feed_format)9, &b, &last), -EINVAL);
	assert_int_equal(feed_read(f->r, NULL, 0, 5, FEED_NDJSON, NULL, &last), -EINVAL);
	assert_int_equal(feed_read(f->r, NULL, 0, 5, FEED_NDJSON, &b, NULL), -EINVAL);
	assert_int_equal(last, 3);
	/* A huge max is fine: the count is bounded by what there is. */
	assert_int_equal(feed_read(f->r, NULL, 3, SIZE_MAX, FEED_PROTOBUF, &b, &last), N_EVENTS - 3);
	assert_int_equal(last, N_EVENTS);
	feed_buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	feed_buf_free(NULL);
}

/* feed_last_id follows the writer's commits; a reader sees each commit on its next read. */
static void test_last_id(void **state)
{
	struct fixture *f = *state;
	struct conn_record c = { .time_ns = T0, .family = AF_INET, .proto = IPPROTO_TCP,
				 .kind = NT_EV_CONNECT, .port = 80, .addr = { 10, 0, 0, 9 } };
	struct feed_buf b = { 0 };
	int64_t id = -1, last = 0, pid;

	assert_int_equal(feed_last_id(f->r, &id), 0);
	assert_int_equal(id, 0);
	assert_int_equal(feed_read(f->r, NULL, 0, 10, FEED_PROTOBUF, &b, &last), 0);
	assert_int_equal(last, 0);

	pid = put_proc(f->s, &procs[0], "web", 0);
	assert_int_equal(store_insert_connection(f->s, &c, pid, "web", 0, NULL), 0);
	assert_int_equal(feed_last_id(f->r, &id), 0);
	assert_int_equal(id, 1);
	assert_int_equal(feed_read(f->r, NULL, last, 10, FEED_PROTOBUF, &b, &last), 1);
	assert_int_equal(last, 1);

	/* A transaction in progress is not seen, by either. */
	assert_int_equal(store_begin(f->s), 0);
	assert_int_equal(store_insert_connection(f->s, &c, pid, "web", 0, NULL), 0);
	assert_int_equal(store_insert_connection(f->s, &c, pid, "web", 0, NULL), 0);
	assert_int_equal(feed_last_id(f->r, &id), 0);
	assert_int_equal(id, 1);
	assert_int_equal(feed_read(f->r, NULL, last, 10, FEED_PROTOBUF, &b, &last), 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(feed_last_id(f->r, &id), 0);
	assert_int_equal(id, 3);
	assert_int_equal(feed_read(f->r, NULL, last, 10, FEED_PROTOBUF, &b, &last), 2);
	assert_int_equal(last, 3);
	feed_buf_free(&b);
}

/* ---- rule changes ---------------------------------------------------------------------- */

/* Rule changes come out in id order among the events, every field of both as stored. */
static void test_rule_changes_protobuf(void **state)
{
	struct fixture *f = *state;
	struct feed_buf b = { 0 };
	Nettrail__V1__Event *evs[32];
	int64_t last = -1;
	size_t n;

	assert_int_equal(feed_read(f->r, NULL, 0, 100, FEED_PROTOBUF, &b, &last), N_MIXED);
	assert_int_equal(last, N_MIXED); /* the last one is a rule change */
	n = decode_stream(&b, evs, 32, NULL);
	assert_int_equal(n, N_MIXED);
	for (int i = 0; i < N_MIXED; i++)
		check_mixed(f, evs[i], i);
	free_events(evs, n);
	feed_buf_free(&b);
}

/* The since-cursor resumes past rule changes as past events: no repeat, no gap. */
static void test_rule_changes_resume(void **state)
{
	struct fixture *f = *state;
	struct feed_filter rules = { .kinds = FEED_KIND_RULE_CHANGE };
	struct feed_buf all = { 0 }, part = { 0 };
	Nettrail__V1__Event *evs[4];
	int64_t last_all = 0, last;
	char buf[64];

	for (int fmt = FEED_PROTOBUF; fmt <= FEED_NDJSON; fmt++) {
		all.len = 0;
		assert_int_equal(feed_read(f->r, NULL, 0, 1000, fmt, &all, &last_all), N_MIXED);
		for (size_t max = 1; max <= 4; max++) {
			int k;

			part.len = 0;
			last = 0;
			while ((k = feed_read(f->r, NULL, last, max, fmt, &part, &last)) > 0)
				assert_true((size_t)k <= max);
			assert_int_equal(k, 0);
			assert_int_equal(last, last_all);
			assert_int_equal(part.len, all.len);
			assert_memory_equal(part.data, all.data, all.len);
		}
	}
	/* One at a time: the first is a rule change, and the cursor stops on it. */
	part.len = 0;
	last = 0;
	assert_int_equal(feed_read(f->r, NULL, last, 1, FEED_PROTOBUF, &part, &last), 1);
	assert_int_equal(last, 1);
	assert_int_equal(decode_stream(&part, evs, 4, NULL), 1);
	check_change(evs[0], 0, 1);
	free_events(evs, 1);
	/* Resuming after a rule change (id 4) gives the event after it, then the next change. */
	part.len = 0;
	assert_int_equal(feed_read(f->r, NULL, 4, 3, FEED_PROTOBUF, &part, &last), 3);
	assert_int_equal(last, 7);
	assert_string_equal(stream_ids(&part, buf, sizeof(buf)), "5 6 7");
	assert_int_equal(decode_stream(&part, evs, 4, NULL), 3);
	check_event_id(f, evs[0], 2, 5);
	check_change(evs[2], 2, 7);
	free_events(evs, 3);
	/* Rule changes alone, two at a time: each read resumes after the last change. */
	last = 0;
	for (const char *const *want = (const char *const[]){ "1 4", "7 11", "13", NULL }; *want;
	     want++) {
		part.len = 0;
		assert_int_equal(feed_read(f->r, &rules, last, 2, FEED_PROTOBUF, &part, &last),
				 strchr(*want, ' ') ? 2 : 1);
		assert_string_equal(stream_ids(&part, buf, sizeof(buf)), *want);
	}
	assert_int_equal(last, 13);
	part.len = 0;
	assert_int_equal(feed_read(f->r, &rules, last, 2, FEED_PROTOBUF, &part, &last), 0);
	assert_int_equal(last, 13);
	assert_int_equal(part.len, 0);
	feed_buf_free(&all);
	feed_buf_free(&part);
}

/*
 * The kind filter selects rule changes; the scope filter keeps those of its scope and those
 * for every scope (scope ''), which concern it too.
 */
static void test_rule_changes_filters(void **state)
{
	struct fixture *f = *state;
	const unsigned rc = FEED_KIND_RULE_CHANGE;
	char buf[256];

	for (size_t max = 1; max <= 100; max += 99) {
		for (int fmt = FEED_PROTOBUF; fmt <= FEED_NDJSON; fmt++) {
			assert_string_equal(filtered(f, NULL, 0, max, fmt, buf, sizeof(buf)),
					    "1 2 3 4 5 6 7 8 9 10 11 12 13");
			assert_string_equal(filtered(f, NULL, rc, max, fmt, buf, sizeof(buf)),
					    "1 4 7 11 13");
			assert_string_equal(filtered(f, NULL, FEED_KIND_CONNECT, max, fmt, buf,
						     sizeof(buf)), "2 5 6 10");
			assert_string_equal(filtered(f, NULL, FEED_KIND_DNS, max, fmt, buf, sizeof(buf)),
					    "3 8 9 12");
			assert_string_equal(filtered(f, NULL, FEED_KIND_CONNECT | rc, max, fmt, buf,
						     sizeof(buf)), "1 2 4 5 6 7 10 11 13");
			assert_string_equal(filtered(f, NULL, FEED_KIND_CONNECT | FEED_KIND_DNS, max,
						     fmt, buf, sizeof(buf)), "2 3 5 6 8 9 10 12");
			assert_string_equal(filtered(f, "web", 0, max, fmt, buf, sizeof(buf)),
					    "1 2 3 4 5 6 11 13");
			assert_string_equal(filtered(f, "db", 0, max, fmt, buf, sizeof(buf)),
					    "1 7 9 10 11 12 13");
			assert_string_equal(filtered(f, "unknown", 0, max, fmt, buf, sizeof(buf)),
					    "1 8 11 13");
			assert_string_equal(filtered(f, "web", rc, max, fmt, buf, sizeof(buf)),
					    "1 4 11 13");
			assert_string_equal(filtered(f, "db", FEED_KIND_DNS, max, fmt, buf, sizeof(buf)),
					    "9 12");
			/* A scope with no event of its own still has the changes for every scope. */
			assert_string_equal(filtered(f, "nope", 0, max, fmt, buf, sizeof(buf)),
					    "1 11 13");
			assert_string_equal(filtered(f, "nope", FEED_KIND_DNS, max, fmt, buf,
						     sizeof(buf)), "");
		}
	}
}

/* Rule changes as JSON lines: the proto3 JSON names, empty and absent members left out. */
static void test_rule_changes_ndjson(void **state)
{
	struct fixture *f = *state;
	struct feed_buf b = { 0 };
	char *lines[32];
	int64_t last = 0;
	int n_changes = 0;

	assert_int_equal(feed_read(f->r, NULL, 0, 100, FEED_NDJSON, &b, &last), N_MIXED);
	assert_int_equal(last, N_MIXED);
	assert_int_equal(split_lines(&b, lines, 32), N_MIXED);
	for (int i = 0; i < N_MIXED; i++) {
		char id[32];

		assert_true(json_line_valid(lines[i]));
		snprintf(id, sizeof(id), "{\"id\":\"%d\",", i + 1);
		assert_memory_equal(lines[i], id, strlen(id));
		assert_true((strstr(lines[i], "\"ruleChange\":") != NULL) == (mixed[i] < 0));
		n_changes += mixed[i] < 0;
	}
	assert_int_equal(n_changes, N_CHANGES);
	/* A rule for every scope: no scope member, in the change or the event. */
	assert_string_equal(lines[0],
		"{\"id\":\"1\",\"time\":{\"seconds\":\"1699999999\",\"nanos\":123456789},"
		"\"ruleChange\":{\"pattern\":\"example.com\",\"newMode\":\"monitor\","
		"\"by\":\"alice (uid 0 via sudo)\",\"note\":\"watch first\",\"action\":\"add\","
		"\"ruleId\":\"1\"}}");
	/* The event after it is the connect it was, with its new id. */
	assert_memory_equal(lines[1],
		"{\"id\":\"2\",\"time\":{\"seconds\":\"1700000000\",\"nanos\":123456789},"
		"\"connect\":{\"kind\":\"connect\",",
		strlen("{\"id\":\"2\",\"time\":{\"seconds\":\"1700000000\",\"nanos\":123456789},"
		       "\"connect\":{\"kind\":\"connect\","));
	/* A scope's default: no pattern, no rule id, no old mode; the scope in both places. */
	assert_string_equal(lines[3],
		"{\"id\":\"4\",\"time\":{\"seconds\":\"1700000001\",\"nanos\":123457289},"
		"\"ruleChange\":{\"scope\":\"web\",\"newMode\":\"enforce\",\"by\":\"root (uid 0)\","
		"\"action\":\"default\"},\"scope\":\"web\"}");
	/* Quotes and a newline escaped, ill-formed UTF-8 as \ufffd. */
	assert_string_equal(lines[6],
		"{\"id\":\"7\",\"time\":{\"seconds\":\"1700000003\",\"nanos\":123456796},"
		"\"ruleChange\":{\"pattern\":\"=gone.example\",\"scope\":\"db\",\"oldMode\":\"monitor\","
		"\"newMode\":\"enforce\",\"by\":\"b\\ufffdob (uid 1000)\","
		"\"note\":\"incident \\\"7\\\"\\n\\ufffd\\ufffd\",\"action\":\"set\",\"ruleId\":\"2\"},"
		"\"scope\":\"db\"}");
	/* A rule removed: no new mode. */
	assert_string_equal(lines[10],
		"{\"id\":\"11\",\"time\":{\"seconds\":\"1700000006\",\"nanos\":123456790},"
		"\"ruleChange\":{\"pattern\":\"example.com\",\"oldMode\":\"monitor\","
		"\"by\":\"alice (uid 0 via sudo)\",\"action\":\"rm\",\"ruleId\":\"1\"}}");
	/* The default of every scope. */
	assert_string_equal(lines[12],
		"{\"id\":\"13\",\"time\":{\"seconds\":\"1700000009\",\"nanos\":123456789},"
		"\"ruleChange\":{\"oldMode\":\"allow\",\"newMode\":\"monitor\",\"by\":\"root (uid 0)\","
		"\"note\":\"audit week\",\"action\":\"default\"}}");
	feed_buf_free(&b);
}

/* A change committed later is read after the last id, as a follower polls; not before. */
static void test_rule_change_committed_later(void **state)
{
	struct fixture *f = *state;
	struct feed_filter web = { .scope = "web", .kinds = FEED_KIND_RULE_CHANGE };
	struct feed_filter db = { .scope = "db" };
	struct feed_buf b = { 0 };
	Nettrail__V1__Event *evs[2];
	int64_t last = 0, seq = 0, db_last = N_MIXED;

	assert_int_equal(feed_read(f->r, NULL, 0, 100, FEED_PROTOBUF, &b, &last), N_MIXED);
	assert_int_equal(store_begin(f->s), 0);
	insert_change(f, &changes[1]); /* web's default, again */
	assert_int_equal(feed_last_id(f->r, &seq), 0);
	assert_int_equal(seq, N_MIXED);
	b.len = 0;
	assert_int_equal(feed_read(f->r, &web, last, 100, FEED_PROTOBUF, &b, &last), 0);
	assert_int_equal(store_commit(f->s), 0);
	assert_int_equal(feed_last_id(f->r, &seq), 0);
	assert_int_equal(seq, N_MIXED + 1);
	assert_int_equal(feed_read(f->r, &web, last, 100, FEED_PROTOBUF, &b, &last), 1);
	assert_int_equal(last, N_MIXED + 1);
	assert_int_equal(decode_stream(&b, evs, 2, NULL), 1);
	check_change(evs[0], 1, N_MIXED + 1);
	free_events(evs, 1);
	/* Another scope's follower does not get it. */
	b.len = 0;
	assert_int_equal(feed_read(f->r, &db, db_last, 100, FEED_PROTOBUF, &b, &db_last), 0);
	assert_int_equal(db_last, N_MIXED);
	feed_buf_free(&b);
}

/*
 * A database of schema 3 (before rule_changes) is served as before: its events, and no rule
 * change for any filter.
 */
static void test_rule_changes_schema3(void **state)
{
	struct fixture *f = *state;
	struct feed_filter rules = { .kinds = FEED_KIND_RULE_CHANGE };
	struct feed_reader *r = NULL;
	struct feed_buf b = { 0 };
	int64_t last = 0;
	char marker[32];
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	for (int v = 1; v <= 3; v++) {
		const char *start, *end;
		char *sql;

		snprintf(marker, sizeof(marker), "\n-- migration %d\n", v);
		start = strstr(nt_schema_sql, marker);
		assert_non_null(start);
		start += strlen(marker);
		end = strstr(start, "\n-- migration ");
		sql = strndup(start, end ? (size_t)(end - start) : strlen(start));
		assert_non_null(sql);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
		free(sql);
	}
	assert_int_equal(sqlite3_exec(db,
		"INSERT INTO processes (id, pid, start_ns, exec_id, cmdline_source, first_seen_ns,"
		" boot_id) VALUES (1, 100, 5, 0, 'proc', 0, 'b');"
		"INSERT INTO connections (id, time_ns, process_id, tid, scope, cgroup_id, kind, family,"
		" proto, addr, addr_key, port, verdict) VALUES (1, 0, 1, 100, 'web', 7, 'connect',"
		" 'ipv4', 'tcp', '10.0.0.1', '00000000000000000000ffff0a000001', 80, 'allowed');"
		"UPDATE agent_state SET value = 1 WHERE key = 'event_seq';"
		"PRAGMA user_version = 3", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(feed_open(f->path, &r), 0);
	assert_int_equal(feed_read(r, &rules, 0, 10, FEED_NDJSON, &b, &last), 0);
	assert_int_equal(last, 0);
	assert_int_equal(feed_read(r, NULL, 0, 10, FEED_NDJSON, &b, &last), 1);
	assert_int_equal(last, 1);
	assert_memory_equal(b.data, "{\"id\":\"1\",\"time\":{},\"connect\":", 30);
	feed_close(r);
	feed_buf_free(&b);
}

/* Files the feed cannot serve are refused with a reason. */
static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	struct feed_reader *r = NULL;
	char path[1100];
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/missing.db", f->dir);
	assert_int_equal(feed_open(path, &r), -ENOENT);
	assert_null(r);
	assert_int_equal(feed_open(NULL, &r), -EINVAL);

	/* Schema 2: before connections and DNS queries shared their ids. */
	snprintf(path, sizeof(path), "%s/old.db", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x); PRAGMA user_version = 2", NULL, NULL,
				      NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(feed_open(path, &r), -ENOMEDIUM);
	assert_null(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_protobuf_fields, setup_events, teardown),
		cmocka_unit_test_setup_teardown(test_resume_batches, setup_events, teardown),
		cmocka_unit_test_setup_teardown(test_filters, setup_events, teardown),
		cmocka_unit_test_setup_teardown(test_ndjson, setup_events, teardown),
		cmocka_unit_test_setup_teardown(test_append_and_args, setup_events, teardown),
		cmocka_unit_test_setup_teardown(test_last_id, setup_empty, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup_dir, teardown),
		cmocka_unit_test_setup_teardown(test_rule_changes_protobuf, setup_mixed, teardown),
		cmocka_unit_test_setup_teardown(test_rule_changes_resume, setup_mixed, teardown),
		cmocka_unit_test_setup_teardown(test_rule_changes_filters, setup_mixed, teardown),
		cmocka_unit_test_setup_teardown(test_rule_changes_ndjson, setup_mixed, teardown),
		cmocka_unit_test_setup_teardown(test_rule_change_committed_later, setup_mixed,
						teardown),
		cmocka_unit_test_setup_teardown(test_rule_changes_schema3, setup_dir, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
