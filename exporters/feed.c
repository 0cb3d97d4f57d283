// SPDX-License-Identifier: MIT
/*
 * The event feed: connections, DNS queries (with their answers) and rule changes read from
 * the store in event-id order and encoded as schema/nettrail.proto's Event, varint-delimited
 * protobuf or NDJSON in proto3's JSON mapping.
 *
 * Each table is read by its INTEGER PRIMARY KEY (id > ?, in id order, LIMIT max), connections
 * and queries joined to their process row; the three cursors are merged in C. Answers come
 * from one cursor over dns_answers in (query_id, rowid) order that moves along with the
 * queries, and seeks again only when a filter skipped queries. One read transaction per call
 * gives one snapshot, so the merge never sees a later event without the earlier ones.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include "feed.h"
#include "utf8.h"
#include "nettrail.pb-c.h"

/* Migration 3 gave connections and DNS queries one sequence of ids; 4 added rule_changes. */
#define FEED_SCHEMA_MIN 3
#define FEED_SCHEMA_RULES 4

enum feed_stmt {
	ST_CONN,
	ST_DNS,
	ST_RULES, /* NULL on a database of schema 3: it has no rule changes */
	ST_ANSWERS,
	ST_SEQ,
	ST_BEGIN,
	ST_COMMIT,
	ST_MAX,
};

/* Columns of ST_CONN and ST_DNS: the same first ones, then the kind's own. */
enum {
	C_ID, C_TIME, C_SCOPE, C_RUN, C_VERDICT, C_RULE, C_CGROUP, C_TID,
	C_PROC, C_PID, C_PPID, C_UID, C_GID, C_COMM, C_EXE, C_CMDLINE, C_START,
	C_KIND_FIRST,
	/* connections */
	C_CONN_KIND = C_KIND_FIRST, C_FAMILY, C_PROTO, C_ADDR, C_PORT, C_DOMAIN,
	/* dns_queries */
	C_QNAME = C_KIND_FIRST, C_QTYPE, C_RCODE, C_TRANSPORT, C_RESOLVER, C_UPSTREAM, C_LATENCY,
	C_ANSWERS, C_ERROR,
};

/* Columns of ST_RULES: id, time and scope where the events have them, then its own. */
enum {
	R_BY = C_SCOPE + 1, R_ACTION, R_RULE_ID, R_PATTERN, R_OLD_MODE, R_NEW_MODE, R_NOTE,
};

#define COMMON_COLS(t)                                                                          \
	"SELECT " t ".id, " t ".time_ns, " t ".scope, " t ".run_id, " t ".verdict, " t ".rule, " \
	t ".cgroup_id, " t ".tid, p.id, p.pid, p.ppid, p.uid, p.gid, p.comm, p.exe, p.cmdline,"  \
	" p.start_ns, "
#define FROM_WHERE(table, t)                                                                    \
	" FROM " table " " t " LEFT JOIN processes p ON p.id = " t ".process_id"                 \
	" WHERE " t ".id > ?1 AND (?2 IS NULL OR " t ".scope = ?2) ORDER BY " t ".id LIMIT ?3"

static const char *const stmt_sql[ST_MAX] = {
	[ST_CONN] = COMMON_COLS("c") "c.kind, c.family, c.proto, c.addr, c.port, c.domain"
		FROM_WHERE("connections", "c"),
	[ST_DNS] = COMMON_COLS("q") "q.qname, q.qtype, q.rcode, q.transport, q.resolver,"
		" q.upstream, q.latency_ns, q.answers, q.error" FROM_WHERE("dns_queries", "q"),
	/* A change of a rule for every scope (scope '') concerns each scope: any filter has it. */
	[ST_RULES] = "SELECT id, time_ns, scope, \"by\", action, rule_id, pattern, old_mode,"
		     " new_mode, note FROM rule_changes"
		     " WHERE id > ?1 AND (?2 IS NULL OR scope = ?2 OR scope = '')"
		     " ORDER BY id LIMIT ?3",
	/* dns_answers_by_query holds (query_id, rowid): answer order without a sort. */
	[ST_ANSWERS] = "SELECT query_id, name, type, value, ttl FROM dns_answers"
		       " WHERE query_id >= ?1 ORDER BY query_id, rowid",
	[ST_SEQ] = "SELECT value FROM agent_state WHERE key = 'event_seq'",
	[ST_BEGIN] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
};

/* One answer of the query being encoded: offsets into feed_reader.text. */
struct answer_ref {
	size_t name, type, value;
	uint32_t ttl;
};

struct feed_reader {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_MAX];

	/* The answers cursor: not started, on a row (ans_qid), or past the last. */
	enum { ANS_IDLE, ANS_ROW, ANS_DONE } ans_state;
	int64_t ans_qid;

	/* The current query's answers, copied out of the cursor (each step overwrites it). */
	struct answer_ref *ans;
	size_t n_ans, cap_ans;
	char *text;
	size_t text_len, text_cap;

	/* Protobuf scratch for the answers, and the UTF-8-repaired copies of one event. */
	Nettrail__V1__DnsAnswer *pb_ans;
	Nettrail__V1__DnsAnswer **pb_ansp;
	size_t cap_pb, cap_pbp;
	char **fixes;
	size_t n_fixes, cap_fixes;
};

static int feed_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return 0;
	case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_CANTOPEN: return -EACCES;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_NOTADB: case SQLITE_CORRUPT: return -EBADMSG;
	default: return -EIO;
	}
}

/* p (an array of *cap items of size sz) grown to hold at least need items, or NULL. */
static void *grow_array(void *p, size_t *cap, size_t need, size_t sz)
{
	size_t n = *cap ? *cap : 16;

	if (need <= *cap && p)
		return p;
	while (n < need) {
		if (n > SIZE_MAX / 2 / sz)
			return NULL;
		n *= 2;
	}
	p = realloc(p, n * sz);
	if (p)
		*cap = n;
	return p;
}

/* Grows array p to hold need items: 0 or -ENOMEM (p unchanged). */
#define GROW(p, cap, need)                                                     \
	({                                                                     \
		void *q_ = grow_array((p), &(cap), (need), sizeof(*(p)));      \
		if (q_)                                                        \
			(p) = q_;                                              \
		q_ ? 0 : -ENOMEM;                                              \
	})

static int buf_reserve(struct feed_buf *b, size_t more)
{
	if (more > SIZE_MAX - b->len)
		return -ENOMEM;
	return GROW(b->data, b->cap, b->len + more);
}

void feed_buf_free(struct feed_buf *b)
{
	if (!b)
		return;
	free(b->data);
	*b = (struct feed_buf){ 0 };
}

/* ---- text ---------------------------------------------------------------------------- */

static int utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k, bad;

	while (i < n) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		k = utf8_next(u + i, n - i, &bad);
		if (!k)
			return 0;
		i += k;
	}
	return 1;
}

/* ---- protobuf ------------------------------------------------------------------------ */

/* s as protobuf-c wants a string: never NULL, valid UTF-8 (a repaired copy if need be). */
static char *pb_str(struct feed_reader *r, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n, i = 0, k, bad;
	char *copy, *o;

	if (!s)
		return (char *)protobuf_c_empty_string;
	n = strlen(s);
	if (utf8_valid(s, n))
		return (char *)s;
	if (GROW(r->fixes, r->cap_fixes, r->n_fixes + 1) < 0 ||
	    !(copy = malloc(3 * n + 1)))
		return NULL;
	r->fixes[r->n_fixes++] = copy;
	for (o = copy; i < n; i += k ? k : bad) {
		k = utf8_next(u + i, n - i, &bad);
		if (k) {
			memcpy(o, u + i, k);
			o += k;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	*o = '\0';
	return copy;
}

static void pb_fixes_free(struct feed_reader *r)
{
	for (size_t i = 0; i < r->n_fixes; i++)
		free(r->fixes[i]);
	r->n_fixes = 0;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static int col_null(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL;
}

static int verdict_of(const char *v)
{
	if (!v)
		return NETTRAIL__V1__VERDICT__VERDICT_UNSPECIFIED;
	if (strcmp(v, "allowed") == 0)
		return NETTRAIL__V1__VERDICT__ALLOWED;
	if (strcmp(v, "would_block") == 0)
		return NETTRAIL__V1__VERDICT__WOULD_BLOCK;
	if (strcmp(v, "blocked") == 0)
		return NETTRAIL__V1__VERDICT__BLOCKED;
	return NETTRAIL__V1__VERDICT__VERDICT_UNSPECIFIED;
}

static const char *const verdict_names[] = {
	[NETTRAIL__V1__VERDICT__VERDICT_UNSPECIFIED] = "VERDICT_UNSPECIFIED",
	[NETTRAIL__V1__VERDICT__ALLOWED] = "ALLOWED",
	[NETTRAIL__V1__VERDICT__WOULD_BLOCK] = "WOULD_BLOCK",
	[NETTRAIL__V1__VERDICT__BLOCKED] = "BLOCKED",
};

/* Seconds and non-negative nanoseconds of a Unix-epoch ns time, as Timestamp has them. */
static void split_ns(int64_t t, int64_t *sec, int32_t *nsec)
{
	int64_t s = t / 1000000000, ns = t % 1000000000;

	if (ns < 0) {
		ns += 1000000000;
		s--;
	}
	*sec = s;
	*nsec = (int32_t)ns;
}

/* The process of the row: 1 if the event has one (its row, or at least its thread). */
static int pb_process(struct feed_reader *r, sqlite3_stmt *st, Nettrail__V1__Process *p)
{
	if (col_null(st, C_PROC) && col_null(st, C_TID))
		return 0;
	p->tid = (uint32_t)sqlite3_column_int64(st, C_TID);
	if (col_null(st, C_PROC))
		return 1;
	p->pid = (uint32_t)sqlite3_column_int64(st, C_PID);
	p->ppid = (uint32_t)sqlite3_column_int64(st, C_PPID);
	p->uid = (uint32_t)sqlite3_column_int64(st, C_UID);
	p->gid = (uint32_t)sqlite3_column_int64(st, C_GID);
	p->start_ns = (uint64_t)sqlite3_column_int64(st, C_START);
	p->comm = pb_str(r, col_text(st, C_COMM));
	p->exe = pb_str(r, col_text(st, C_EXE));
	p->cmdline = pb_str(r, col_text(st, C_CMDLINE));
	return p->comm && p->exe && p->cmdline ? 1 : -ENOMEM;
}

static int pb_connect(struct feed_reader *r, sqlite3_stmt *st, Nettrail__V1__Connect *c)
{
	c->kind = pb_str(r, col_text(st, C_CONN_KIND));
	c->family = pb_str(r, col_text(st, C_FAMILY));
	c->proto = pb_str(r, col_text(st, C_PROTO));
	c->addr = pb_str(r, col_text(st, C_ADDR));
	c->port = (uint32_t)sqlite3_column_int64(st, C_PORT);
	c->domain = pb_str(r, col_text(st, C_DOMAIN));
	return c->kind && c->family && c->proto && c->addr && c->domain ? 0 : -ENOMEM;
}

static int pb_answers(struct feed_reader *r, Nettrail__V1__DnsQuery *q)
{
	static const Nettrail__V1__DnsAnswer init = NETTRAIL__V1__DNS_ANSWER__INIT;

	if (GROW(r->pb_ans, r->cap_pb, r->n_ans) < 0 || GROW(r->pb_ansp, r->cap_pbp, r->n_ans) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_ans; i++) {
		Nettrail__V1__DnsAnswer *a = &r->pb_ans[i];

		*a = init;
		a->name = pb_str(r, r->text + r->ans[i].name);
		a->type = pb_str(r, r->text + r->ans[i].type);
		a->value = pb_str(r, r->text + r->ans[i].value);
		a->ttl = r->ans[i].ttl;
		if (!a->name || !a->type || !a->value)
			return -ENOMEM;
		r->pb_ansp[i] = a;
	}
	q->n_answers = r->n_ans;
	q->answers = r->pb_ansp;
	return 0;
}

static int pb_dns(struct feed_reader *r, sqlite3_stmt *st, Nettrail__V1__DnsQuery *q)
{
	q->qname = pb_str(r, col_text(st, C_QNAME));
	q->qtype = pb_str(r, col_text(st, C_QTYPE));
	q->rcode = pb_str(r, col_text(st, C_RCODE));
	q->transport = pb_str(r, col_text(st, C_TRANSPORT));
	q->resolver = pb_str(r, col_text(st, C_RESOLVER));
	q->upstream = pb_str(r, col_text(st, C_UPSTREAM));
	q->error = pb_str(r, col_text(st, C_ERROR));
	if (!col_null(st, C_LATENCY)) {
		q->latency_case = NETTRAIL__V1__DNS_QUERY__LATENCY_LATENCY_NS;
		q->latency_ns = sqlite3_column_int64(st, C_LATENCY);
	}
	q->answer_count = (uint32_t)sqlite3_column_int64(st, C_ANSWERS);
	if (!q->qname || !q->qtype || !q->rcode || !q->transport || !q->resolver || !q->upstream ||
	    !q->error)
		return -ENOMEM;
	return pb_answers(r, q);
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Packs the event, its length first, onto out. */
static int pb_append(const Nettrail__V1__Event *ev, struct feed_buf *out)
{
	size_t len = nettrail__v1__event__get_packed_size(ev);

	if (buf_reserve(out, len + 10) < 0)
		return -ENOMEM;
	out->len += varint_put(out->data + out->len, len);
	out->len += nettrail__v1__event__pack(ev, out->data + out->len);
	return 0;
}

static int pb_rule_change(struct feed_reader *r, sqlite3_stmt *st, Nettrail__V1__RuleChange *c)
{
	c->pattern = pb_str(r, col_text(st, R_PATTERN)); /* NULL for a scope default: "" */
	c->scope = pb_str(r, col_text(st, C_SCOPE));
	c->old_mode = pb_str(r, col_text(st, R_OLD_MODE));
	c->new_mode = pb_str(r, col_text(st, R_NEW_MODE));
	c->by = pb_str(r, col_text(st, R_BY));
	c->note = pb_str(r, col_text(st, R_NOTE));
	c->action = pb_str(r, col_text(st, R_ACTION));
	c->rule_id = (uint64_t)sqlite3_column_int64(st, R_RULE_ID);
	return c->pattern && c->scope && c->old_mode && c->new_mode && c->by && c->note && c->action
		       ? 0 : -ENOMEM;
}

/* The members every kind has: id, time and scope (ev->scope NULL when out of memory). */
static void pb_header(struct feed_reader *r, sqlite3_stmt *st, Nettrail__V1__Event *ev,
		      Nettrail__V1__Timestamp *ts)
{
	ev->id = (uint64_t)sqlite3_column_int64(st, C_ID);
	split_ns(sqlite3_column_int64(st, C_TIME), &ts->seconds, &ts->nanos);
	ev->time = ts;
	ev->scope = pb_str(r, col_text(st, C_SCOPE));
}

/* The rule change on the row of st (ST_RULES) as a delimited Event. */
static int pb_rule_event(struct feed_reader *r, sqlite3_stmt *st, struct feed_buf *out)
{
	Nettrail__V1__Event ev = NETTRAIL__V1__EVENT__INIT;
	Nettrail__V1__Timestamp ts = NETTRAIL__V1__TIMESTAMP__INIT;
	Nettrail__V1__RuleChange rc = NETTRAIL__V1__RULE_CHANGE__INIT;
	int k;

	pb_header(r, st, &ev, &ts);
	ev.kind_case = NETTRAIL__V1__EVENT__KIND_RULE_CHANGE;
	ev.rule_change = &rc;
	k = ev.scope ? pb_rule_change(r, st, &rc) : -ENOMEM;
	if (k >= 0)
		k = pb_append(&ev, out);
	pb_fixes_free(r);
	return k;
}

/* The connect or DNS query (kind) on the row of st as a delimited Event; answers in r. */
static int pb_event(struct feed_reader *r, unsigned kind, sqlite3_stmt *st, struct feed_buf *out)
{
	Nettrail__V1__Event ev = NETTRAIL__V1__EVENT__INIT;
	Nettrail__V1__Timestamp ts = NETTRAIL__V1__TIMESTAMP__INIT;
	Nettrail__V1__Process proc = NETTRAIL__V1__PROCESS__INIT;
	Nettrail__V1__Connect conn = NETTRAIL__V1__CONNECT__INIT;
	Nettrail__V1__DnsQuery dns = NETTRAIL__V1__DNS_QUERY__INIT;
	int k;

	pb_header(r, st, &ev, &ts);
	ev.run_id = (uint64_t)sqlite3_column_int64(st, C_RUN);
	ev.verdict = verdict_of(col_text(st, C_VERDICT));
	ev.rule = pb_str(r, col_text(st, C_RULE));
	ev.cgroup_id = (uint64_t)sqlite3_column_int64(st, C_CGROUP);
	k = ev.scope && ev.rule ? pb_process(r, st, &proc) : -ENOMEM;
	if (k == 1)
		ev.process = &proc;
	if (k >= 0 && kind == FEED_KIND_CONNECT) {
		ev.kind_case = NETTRAIL__V1__EVENT__KIND_CONNECT;
		ev.connect = &conn;
		k = pb_connect(r, st, &conn);
	} else if (k >= 0) {
		ev.kind_case = NETTRAIL__V1__EVENT__KIND_DNS;
		ev.dns = &dns;
		k = pb_dns(r, st, &dns);
	}
	if (k >= 0)
		k = pb_append(&ev, out);
	pb_fixes_free(r);
	return k;
}

/* ---- JSON ---------------------------------------------------------------------------- */

/*
 * A JSON writer onto a feed_buf. The first error sticks and later writes do nothing, so an
 * event is written straight through and checked once.
 */
struct jw {
	struct feed_buf *b;
	int err;
	int first; /* no member written yet in the innermost object */
};

static int jw_reserve(struct jw *w, size_t n)
{
	if (!w->err && buf_reserve(w->b, n) < 0)
		w->err = -ENOMEM;
	return !w->err;
}

static void jw_raw(struct jw *w, const char *s, size_t n)
{
	if (jw_reserve(w, n)) {
		memcpy(w->b->data + w->b->len, s, n);
		w->b->len += n;
	}
}

#define jw_lit(w, s) jw_raw(w, s, sizeof(s) - 1)

/* "key": after a comma unless it is the object's first member. key is a plain name. */
static void jw_key(struct jw *w, const char *key)
{
	size_t n = strlen(key);

	if (!jw_reserve(w, n + 4))
		return;
	if (!w->first)
		w->b->data[w->b->len++] = ',';
	w->first = 0;
	w->b->data[w->b->len++] = '"';
	memcpy(w->b->data + w->b->len, key, n);
	w->b->len += n;
	w->b->data[w->b->len++] = '"';
	w->b->data[w->b->len++] = ':';
}

static void jw_open(struct jw *w, const char *key)
{
	if (key)
		jw_key(w, key);
	jw_lit(w, "{");
	w->first = 1;
}

static void jw_close(struct jw *w)
{
	jw_lit(w, "}");
	w->first = 0;
}

/*
 * s as a JSON string: quote and backslash escaped, control characters as \n, \t, ... or
 * \u00XX, each ill-formed UTF-8 subpart as \ufffd, and the rest as is.
 */
static void jw_string(struct jw *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k, bad;
	uint8_t *o;

	if (!jw_reserve(w, 6 * n + 2))
		return;
	o = w->b->data + w->b->len;
	*o++ = '"';
	while (i < n) {
		unsigned char c = u[i];

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			*o++ = c;
			i++;
			continue;
		}
		if (c >= 0x80) {
			k = utf8_next(u + i, n - i, &bad);
			if (k) {
				memcpy(o, u + i, k);
				o += k;
				i += k;
			} else {
				memcpy(o, "\\ufffd", 6);
				o += 6;
				i += bad;
			}
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		default:
			memcpy(o, "u00", 3);
			o[3] = hex[c >> 4];
			o[4] = hex[c & 0xf];
			o += 5;
		}
		i++;
	}
	*o++ = '"';
	w->b->len = (size_t)(o - w->b->data);
}

/* A string member, left out when NULL or empty (proto3's default). */
static void jw_str(struct jw *w, const char *key, const char *s)
{
	if (s && *s) {
		jw_key(w, key);
		jw_string(w, s, strlen(s));
	}
}

/* Decimal digits of v (optionally quoted, as proto3 JSON wants 64-bit integers). */
static void jw_num(struct jw *w, uint64_t v, int negative, int quoted)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	if (quoted)
		tmp[--i] = '"';
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (negative)
		tmp[--i] = '-';
	if (quoted)
		tmp[--i] = '"';
	jw_raw(w, tmp + i, sizeof(tmp) - i);
}

static void jw_u32(struct jw *w, const char *key, uint32_t v)
{
	if (v) {
		jw_key(w, key);
		jw_num(w, v, 0, 0);
	}
}

static void jw_i32(struct jw *w, const char *key, int32_t v)
{
	if (v) {
		jw_key(w, key);
		jw_num(w, v < 0 ? -(uint64_t)(int64_t)v : (uint64_t)v, v < 0, 0);
	}
}

static void jw_u64(struct jw *w, const char *key, uint64_t v)
{
	if (v) {
		jw_key(w, key);
		jw_num(w, v, 0, 1);
	}
}

/* An int64 member; present says whether 0 is written too (a oneof member is). */
static void jw_i64(struct jw *w, const char *key, int64_t v, int present)
{
	if (v || present) {
		jw_key(w, key);
		jw_num(w, v < 0 ? -(uint64_t)v : (uint64_t)v, v < 0, 1);
	}
}

static void json_process(struct jw *w, sqlite3_stmt *st)
{
	if (col_null(st, C_PROC) && col_null(st, C_TID))
		return;
	jw_open(w, "process");
	if (!col_null(st, C_PROC)) {
		jw_u32(w, "pid", (uint32_t)sqlite3_column_int64(st, C_PID));
		jw_u32(w, "ppid", (uint32_t)sqlite3_column_int64(st, C_PPID));
		jw_u32(w, "uid", (uint32_t)sqlite3_column_int64(st, C_UID));
		jw_u32(w, "gid", (uint32_t)sqlite3_column_int64(st, C_GID));
		jw_str(w, "comm", col_text(st, C_COMM));
		jw_str(w, "exe", col_text(st, C_EXE));
		jw_str(w, "cmdline", col_text(st, C_CMDLINE));
		jw_u64(w, "startNs", (uint64_t)sqlite3_column_int64(st, C_START));
	}
	jw_u32(w, "tid", (uint32_t)sqlite3_column_int64(st, C_TID));
	jw_close(w);
}

static void json_connect(struct jw *w, sqlite3_stmt *st)
{
	jw_open(w, "connect");
	jw_str(w, "kind", col_text(st, C_CONN_KIND));
	jw_str(w, "family", col_text(st, C_FAMILY));
	jw_str(w, "proto", col_text(st, C_PROTO));
	jw_str(w, "addr", col_text(st, C_ADDR));
	jw_u32(w, "port", (uint32_t)sqlite3_column_int64(st, C_PORT));
	jw_str(w, "domain", col_text(st, C_DOMAIN));
	jw_close(w);
}

static void json_dns(struct feed_reader *r, struct jw *w, sqlite3_stmt *st)
{
	jw_open(w, "dns");
	jw_str(w, "qname", col_text(st, C_QNAME));
	jw_str(w, "qtype", col_text(st, C_QTYPE));
	jw_str(w, "rcode", col_text(st, C_RCODE));
	jw_str(w, "transport", col_text(st, C_TRANSPORT));
	jw_str(w, "resolver", col_text(st, C_RESOLVER));
	jw_str(w, "upstream", col_text(st, C_UPSTREAM));
	jw_i64(w, "latencyNs", sqlite3_column_int64(st, C_LATENCY), !col_null(st, C_LATENCY));
	jw_u32(w, "answerCount", (uint32_t)sqlite3_column_int64(st, C_ANSWERS));
	if (r->n_ans) {
		jw_key(w, "answers");
		jw_lit(w, "[");
		for (size_t i = 0; i < r->n_ans; i++) {
			if (i)
				jw_lit(w, ",");
			jw_open(w, NULL);
			jw_str(w, "name", r->text + r->ans[i].name);
			jw_str(w, "type", r->text + r->ans[i].type);
			jw_str(w, "value", r->text + r->ans[i].value);
			jw_u32(w, "ttl", r->ans[i].ttl);
			jw_close(w);
		}
		jw_lit(w, "]");
	}
	jw_str(w, "error", col_text(st, C_ERROR));
	jw_close(w);
}

static void json_rule_change(struct jw *w, sqlite3_stmt *st)
{
	jw_open(w, "ruleChange");
	jw_str(w, "pattern", col_text(st, R_PATTERN));
	jw_str(w, "scope", col_text(st, C_SCOPE));
	jw_str(w, "oldMode", col_text(st, R_OLD_MODE));
	jw_str(w, "newMode", col_text(st, R_NEW_MODE));
	jw_str(w, "by", col_text(st, R_BY));
	jw_str(w, "note", col_text(st, R_NOTE));
	jw_str(w, "action", col_text(st, R_ACTION));
	jw_u64(w, "ruleId", (uint64_t)sqlite3_column_int64(st, R_RULE_ID));
	jw_close(w);
}

/* The members of a connect or a DNS query (kind) that follow its time. */
static void json_attempt(struct feed_reader *r, struct jw *w, unsigned kind, sqlite3_stmt *st)
{
	int v = verdict_of(col_text(st, C_VERDICT));

	if (kind == FEED_KIND_CONNECT)
		json_connect(w, st);
	else
		json_dns(r, w, st);
	json_process(w, st);
	jw_str(w, "scope", col_text(st, C_SCOPE));
	jw_u64(w, "runId", (uint64_t)sqlite3_column_int64(st, C_RUN));
	if (v != NETTRAIL__V1__VERDICT__VERDICT_UNSPECIFIED)
		jw_str(w, "verdict", verdict_names[v]);
	jw_str(w, "rule", col_text(st, C_RULE));
	jw_u64(w, "cgroupId", (uint64_t)sqlite3_column_int64(st, C_CGROUP));
}

/*
 * The event on the row of st as one line of JSON, members in field-number order. A rule
 * change has no process, run, verdict, rule or cgroup: only its scope follows it.
 */
static int json_event(struct feed_reader *r, unsigned kind, sqlite3_stmt *st, struct feed_buf *out)
{
	struct jw w = { .b = out };
	int64_t sec;
	int32_t nsec;

	jw_open(&w, NULL);
	jw_u64(&w, "id", (uint64_t)sqlite3_column_int64(st, C_ID));
	split_ns(sqlite3_column_int64(st, C_TIME), &sec, &nsec);
	jw_open(&w, "time");
	jw_i64(&w, "seconds", sec, 0);
	jw_i32(&w, "nanos", nsec);
	jw_close(&w);
	if (kind == FEED_KIND_RULE_CHANGE) {
		json_rule_change(&w, st);
		jw_str(&w, "scope", col_text(st, C_SCOPE));
	} else {
		json_attempt(r, &w, kind, st);
	}
	jw_close(&w);
	jw_lit(&w, "\n");
	return w.err;
}

/* ---- reading ------------------------------------------------------------------------- */

/* Steps st: 1 on a row, 0 past the last, or -errno. */
static int step(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : feed_errno(rc);
}

static int answers_step(struct feed_reader *r)
{
	int k = step(r->stmt[ST_ANSWERS]);

	if (k < 0)
		return k;
	r->ans_state = k ? ANS_ROW : ANS_DONE;
	if (k)
		r->ans_qid = sqlite3_column_int64(r->stmt[ST_ANSWERS], 0);
	return 0;
}

/* Copies the answer on the cursor's row into r->ans and r->text. */
static int answer_copy(struct feed_reader *r)
{
	sqlite3_stmt *st = r->stmt[ST_ANSWERS];
	size_t len[3], need = 0;
	struct answer_ref *a;

	for (int i = 0; i < 3; i++) {
		sqlite3_column_text(st, 1 + i); /* as text first: then bytes is its length */
		len[i] = (size_t)sqlite3_column_bytes(st, 1 + i);
		need += len[i] + 1;
	}
	if (GROW(r->ans, r->cap_ans, r->n_ans + 1) < 0 ||
	    GROW(r->text, r->text_cap, r->text_len + need) < 0)
		return -ENOMEM;
	a = &r->ans[r->n_ans++];
	a->ttl = (uint32_t)sqlite3_column_int64(st, 4);
	for (int i = 0; i < 3; i++) {
		const char *s = col_text(st, 1 + i);
		size_t *off = i == 0 ? &a->name : i == 1 ? &a->type : &a->value;

		*off = r->text_len;
		if (len[i])
			memcpy(r->text + r->text_len, s, len[i]);
		r->text[r->text_len + len[i]] = '\0';
		r->text_len += len[i] + 1;
	}
	return 0;
}

/*
 * The answers of query qid, in answer order, into r->ans. The cursor moves on from the last
 * query's answers; it seeks afresh when it is behind qid (queries were filtered out).
 */
static int answers_collect(struct feed_reader *r, int64_t qid)
{
	sqlite3_stmt *st = r->stmt[ST_ANSWERS];
	int k;

	r->n_ans = 0;
	r->text_len = 0;
	if (r->ans_state == ANS_IDLE || (r->ans_state == ANS_ROW && r->ans_qid < qid)) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, qid);
		k = answers_step(r);
		if (k < 0)
			return k;
	}
	while (r->ans_state == ANS_ROW && r->ans_qid == qid) {
		k = answer_copy(r);
		if (k == 0)
			k = answers_step(r);
		if (k < 0)
			return k;
	}
	return 0;
}

/* The table cursors of the merge: one per kind. */
static const struct {
	unsigned kind;
	enum feed_stmt stmt;
} cursors[] = {
	{ FEED_KIND_CONNECT, ST_CONN },
	{ FEED_KIND_DNS, ST_DNS },
	{ FEED_KIND_RULE_CHANGE, ST_RULES },
};

#define N_CURSORS (sizeof(cursors) / sizeof(cursors[0]))

/* The event on the row of st, of kind, appended to out. */
static int emit(struct feed_reader *r, unsigned kind, sqlite3_stmt *st, enum feed_format fmt,
		struct feed_buf *out)
{
	int k = 0;

	if (kind == FEED_KIND_DNS)
		k = answers_collect(r, sqlite3_column_int64(st, C_ID));
	else
		r->n_ans = 0;
	if (k < 0)
		return k;
	if (fmt == FEED_NDJSON)
		return json_event(r, kind, st, out);
	if (kind == FEED_KIND_RULE_CHANGE)
		return pb_rule_event(r, st, out);
	return pb_event(r, kind, st, out);
}

/*
 * Binds a table cursor and steps to its first row: 1, 0 (none, kind not wanted, or a table
 * the schema does not have yet), or -errno.
 */
static int cursor_start(struct feed_reader *r, int which, int wanted, const char *scope,
			int64_t after_id, size_t max)
{
	sqlite3_stmt *st = r->stmt[which];

	if (!wanted || !st)
		return 0;
	sqlite3_bind_int64(st, 1, after_id);
	if (scope)
		sqlite3_bind_text(st, 2, scope, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_int64(st, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	return step(st);
}

static void reset_all(struct feed_reader *r)
{
	for (int i = 0; i < ST_MAX; i++)
		sqlite3_reset(r->stmt[i]);
	r->ans_state = ANS_IDLE;
}

/* The cursor (index into cursors) on the lowest id of those on a row, or -1 when none is. */
static int cursor_lowest(struct feed_reader *r, const int *have, int64_t *ret_id)
{
	int best = -1;

	for (size_t i = 0; i < N_CURSORS; i++) {
		int64_t id;

		if (!have[i])
			continue;
		id = sqlite3_column_int64(r->stmt[cursors[i].stmt], C_ID);
		if (best < 0 || id < *ret_id) {
			best = (int)i;
			*ret_id = id;
		}
	}
	return best;
}

/* The merge of the cursors, in one transaction already begun. Events appended, or -errno. */
static int feed_merge(struct feed_reader *r, unsigned kinds, const char *scope, int64_t after_id,
		      size_t max, enum feed_format fmt, struct feed_buf *out, int64_t *last)
{
	int have[N_CURSORS], n = 0, i, k;
	int64_t id = 0;

	for (i = 0; i < (int)N_CURSORS; i++) {
		have[i] = cursor_start(r, cursors[i].stmt, kinds & cursors[i].kind, scope, after_id,
				       max);
		if (have[i] < 0)
			return have[i];
	}
	while ((size_t)n < max && (i = cursor_lowest(r, have, &id)) >= 0) {
		sqlite3_stmt *st = r->stmt[cursors[i].stmt];

		k = emit(r, cursors[i].kind, st, fmt, out);
		if (k < 0)
			return k;
		*last = id;
		n++;
		k = have[i] = step(st);
		if (k < 0)
			return k;
	}
	return n;
}

int feed_read(struct feed_reader *r, const struct feed_filter *f, int64_t after_id, size_t max,
	      enum feed_format fmt, struct feed_buf *out, int64_t *last_id)
{
	unsigned kinds = f && f->kinds ? f->kinds : FEED_KIND_ALL;
	size_t start_len;
	int64_t last = 0;
	int n, k;

	if (!r || !out || !last_id || (fmt != FEED_PROTOBUF && fmt != FEED_NDJSON))
		return -EINVAL;
	if (max > INT_MAX)
		max = INT_MAX; /* the count is returned as an int */
	if (max == 0 || !(kinds & FEED_KIND_ALL))
		return 0;
	start_len = out->len;
	k = step(r->stmt[ST_BEGIN]);
	sqlite3_reset(r->stmt[ST_BEGIN]);
	if (k < 0)
		return k;
	n = feed_merge(r, kinds, f ? f->scope : NULL, after_id, max, fmt, out, &last);
	reset_all(r);
	k = step(r->stmt[ST_COMMIT]);
	sqlite3_reset(r->stmt[ST_COMMIT]);
	if (k < 0 && !sqlite3_get_autocommit(r->db))
		sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
	if (n < 0 || k < 0) {
		out->len = start_len;
		return n < 0 ? n : k;
	}
	if (n > 0)
		*last_id = last;
	return n;
}

int feed_last_id(struct feed_reader *r, int64_t *ret)
{
	sqlite3_stmt *st = r->stmt[ST_SEQ];
	int k = step(st);

	if (k > 0)
		*ret = sqlite3_column_int64(st, 0);
	else if (k == 0)
		*ret = 0;
	sqlite3_reset(st);
	return k < 0 ? k : 0;
}

/* ---- opening ------------------------------------------------------------------------- */

static int schema_version(sqlite3 *db)
{
	sqlite3_stmt *st;
	int rc, v;

	rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return feed_errno(rc);
	rc = sqlite3_step(st);
	v = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : rc == SQLITE_DONE ? -EIO : feed_errno(rc);
	sqlite3_finalize(st);
	return v;
}

static int feed_setup(struct feed_reader *r)
{
	int v, rc;

	sqlite3_extended_result_codes(r->db, 1);
	sqlite3_busy_timeout(r->db, 5000);
	v = schema_version(r->db);
	if (v < 0)
		return v;
	if (v < FEED_SCHEMA_MIN)
		return -ENOMEDIUM;
	for (int i = 0; i < ST_MAX; i++) {
		if (i == ST_RULES && v < FEED_SCHEMA_RULES)
			continue;
		rc = sqlite3_prepare_v3(r->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&r->stmt[i], NULL);
		if (rc != SQLITE_OK)
			return feed_errno(rc);
	}
	return 0;
}

int feed_open(const char *db_path, struct feed_reader **ret)
{
	struct feed_reader *r;
	int rc, k;

	if (!db_path || !ret)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	rc = sqlite3_open_v2(db_path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		/* The operating system's reason says more than SQLITE_CANTOPEN. */
		k = r->db && sqlite3_system_errno(r->db) ? -sqlite3_system_errno(r->db) : feed_errno(rc);
		goto out_close;
	}
	k = feed_setup(r);
	if (k < 0)
		goto out_close;
	*ret = r;
	return 0;
out_close:
	feed_close(r);
	return k;
}

void feed_close(struct feed_reader *r)
{
	if (!r)
		return;
	for (int i = 0; i < ST_MAX; i++)
		sqlite3_finalize(r->stmt[i]);
	sqlite3_close_v2(r->db);
	pb_fixes_free(r);
	free(r->fixes);
	free(r->ans);
	free(r->text);
	free(r->pb_ans);
	free(r->pb_ansp);
	free(r);
}
