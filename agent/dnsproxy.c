// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "addr.h"
#include "dns.h"
#include "dnsproxy.h"
#include "log.h"
#include "policy.h"
#include "util.h"

#define PENDING_MAX 65536   /* one slot per upstream id */
#define INFLIGHT_MAX 16384  /* UDP queries in flight: a quarter of the ids, so a free one is found
			       in under 1.4 random draws on average */
#define UPSTREAM_MAX 32     /* resolvers talked to at once over UDP */
#define TCP_CONN_MAX 256
#define TCP_PIPELINE_MAX 64 /* queries in flight on one TCP connection */
#define TCP_IDLE_MS 10000
#define TCP_OUT_MAX (256 * 1024) /* a client that does not read its answers is dropped */
#define FRAME_MAX (2 + DNS_MSG_MAX)
#define LEARN_WAIT_MS 100   /* a blocked query waits this long (a tick more at most) for its
			       addresses before it is refused */
#define UDP_BATCH 64        /* datagrams per wake-up and socket, so no socket starves another */
#define QUERY_MAX 4096      /* a real query is a few hundred bytes: larger ones are refused, so
			       16384 queries in flight hold at most 64 MiB */

enum pfd_kind { PFD_UDP_LISTEN, PFD_TCP_LISTEN, PFD_UPSTREAM_UDP, PFD_TCP_CLIENT, PFD_TCP_UPSTREAM };

/* What an epoll event points at. */
struct pfd {
	enum pfd_kind kind;
	int fd;
	uint32_t events;
	void *obj;
};

struct upstream {
	struct pfd pfd;
	struct dnsproxy_upstream addr;
	char text[64];
	unsigned inflight;
	int64_t last_used_ms;
	struct upstream *next_dead;
};

/* What a query's record needs, whichever way it is answered. */
struct query_meta {
	int64_t time_ns;
	int64_t sent_ms;      /* CLOCK_MONOTONIC, for the deadline; -1 until sent */
	int64_t sent_ns;      /* CLOCK_MONOTONIC, for the latency */
	int attributed;
	struct nt_dns_origin origin;
	uint8_t proto;
	char resolver[64];
	char upstream[64];
	struct dnsproxy_decision dec;
};

/* A UDP query in flight, allocated with its bytes; slots[id] names it by upstream id. */
struct pending {
	struct pending *prev, *next; /* the deadline list: oldest first */
	int listener;                /* index into udp listeners */
	uint16_t id;                 /* the proxy's, towards the upstream */
	uint16_t client_id;
	struct sockaddr_storage client;
	socklen_t client_len;
	struct upstream *up;
	struct query_meta meta;
	int learn;                   /* a blocked name, asked for its addresses only */
	int reply_waiting;           /* learn: the client's refusal is not sent yet */
	int64_t reply_by_ms;         /* learn: sent by then whatever the upstream does */
	uint8_t reply_rcode;
	uint16_t qlen;
	uint8_t query[];             /* as forwarded, with the proxy's id */
};

struct buf {
	uint8_t *data;
	size_t len, cap;
};

struct tcp_pending {
	int used;
	uint16_t id;
	struct query_meta meta;
	uint8_t *query;
	uint16_t qlen;
};

struct tcpconn {
	struct pfd pfd;    /* the client */
	struct pfd up_pfd; /* the upstream, fd -1 until the first query */
	int up_connected;
	int client_eof;
	struct sockaddr_storage client;
	socklen_t client_len;
	int attributed;
	struct nt_dns_origin origin;
	struct dnsproxy_upstream upstream;
	uint8_t in[FRAME_MAX];
	size_t in_len;
	uint8_t up_in[FRAME_MAX];
	size_t up_in_len;
	struct buf out, up_out;
	struct tcp_pending pend[TCP_PIPELINE_MAX];
	unsigned n_pend;
	int64_t last_active_ms;
	struct tcpconn *next;
};

struct dnsproxy {
	struct dnsproxy_opts o;
	struct dnsproxy_hooks h;
	int epfd;
	uint16_t port;
	int has_v6;
	struct pfd udp[2], tcp[2]; /* [0] IPv4, [1] IPv6 (fd -1 when absent) */
	struct pending **slots;      /* PENDING_MAX: a pointer per id, the queries only as needed */
	struct pending *head, *tail;
	unsigned inflight;
	unsigned learn_waiting;      /* learn queries whose client waits for its refusal */
	uint8_t rnd[4096];
	size_t rnd_pos;
	struct upstream *ups[UPSTREAM_MAX];
	struct tcpconn *conns;
	unsigned n_conns;
	/* Closed during one epoll batch, freed after it: later events of the batch may name them. */
	struct tcpconn *dead_conns;
	struct upstream *dead_ups;
	struct dnsproxy_counts c;
	struct dns_query q;      /* scratch: large, kept off the stack */
	struct dns_response *resp;
	const uint8_t *resp_of;  /* the answer resp holds, parsed just before its record_emit */
	uint8_t buf[DNS_MSG_MAX + 1];
};

/* ---- small helpers ------------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Upstream ids come from the kernel's CSPRNG, a buffer at a time: an id an attacker saw must
 * not predict the next (a linear generator would), or spoofing an answer needs no guess.
 */
static uint16_t random_id(struct dnsproxy *p)
{
	uint16_t id;

	if (p->rnd_pos + sizeof(id) > sizeof(p->rnd)) {
		if (getrandom(p->rnd, sizeof(p->rnd), 0) != (ssize_t)sizeof(p->rnd)) {
			/* Not expected once the pool is initialised; still differ from the last. */
			for (size_t i = 0; i < sizeof(p->rnd); i++)
				p->rnd[i] ^= (uint8_t)(wall_ns() >> (i % 8));
		}
		p->rnd_pos = 0;
	}
	memcpy(&id, p->rnd + p->rnd_pos, sizeof(id));
	p->rnd_pos += sizeof(id);
	return id;
}

void dnsproxy_format_addr(int family, const uint8_t *addr, uint16_t port_be, char *buf, size_t len)
{
	uint8_t a[16] = { 0 };
	char text[INET6_ADDRSTRLEN];

	memcpy(a, addr, family == AF_INET ? 4 : 16);
	family = addr_normalize(family, a);
	if (!inet_ntop(family, a, text, sizeof(text)))
		snprintf(text, sizeof(text), "?");
	if (family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", text, ntohs(port_be));
	else
		snprintf(buf, len, "%s:%u", text, ntohs(port_be));
}

void dnsproxy_format_addr_sa(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		dnsproxy_format_addr(AF_INET, (const uint8_t *)&s->sin_addr, s->sin_port, buf, len);
	} else {
		const struct sockaddr_in6 *s = (const void *)ss;

		dnsproxy_format_addr(AF_INET6, s->sin6_addr.s6_addr, s->sin6_port, buf, len);
	}
}

int dnsproxy_parse_upstream(const char *s, struct dnsproxy_upstream *ret)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port_text = NULL, *colon;
	unsigned long port = 53;
	struct sockaddr_in *s4 = (void *)&ret->addr;
	struct sockaddr_in6 *s6 = (void *)&ret->addr;
	size_t n;

	memset(ret, 0, sizeof(*ret));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || (end[1] != '\0' && end[1] != ':'))
			return -EINVAL;
		n = (size_t)(end - s - 1);
		if (end[1] == ':')
			port_text = end + 2;
		s++;
	} else {
		colon = strchr(s, ':');
		/* One colon: IPv4 with a port; more: a bare IPv6 address. */
		if (colon && !strchr(colon + 1, ':')) {
			n = (size_t)(colon - s);
			port_text = colon + 1;
		} else {
			n = strlen(s);
		}
	}
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	if (port_text) {
		size_t digits = strspn(port_text, "0123456789");

		/* Digits only: no sign, no spaces, at most 5 of them. */
		if (digits == 0 || digits > 5 || port_text[digits] != '\0')
			return -EINVAL;
		port = strtoul(port_text, NULL, 10);
		if (port == 0 || port > 65535)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		ret->len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		ret->len = sizeof(*s6);
		return 0;
	}
	return -EINVAL;
}

/* The resolver a process asked for, as a socket address. */
static void origin_upstream(const struct nt_dns_origin *o, struct dnsproxy_upstream *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (o->family == AF_INET) {
		struct sockaddr_in *s = (void *)&ret->addr;

		s->sin_family = AF_INET;
		s->sin_port = o->port;
		memcpy(&s->sin_addr, o->addr, 4);
		ret->len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (void *)&ret->addr;

		s->sin6_family = AF_INET6;
		s->sin6_port = o->port;
		memcpy(&s->sin6_addr, o->addr, 16);
		ret->len = sizeof(*s);
	}
}

static int upstream_equal(const struct dnsproxy_upstream *a, const struct dnsproxy_upstream *b)
{
	return a->len == b->len && memcmp(&a->addr, &b->addr, a->len) == 0;
}

/* Forwarding to the proxy's own port would loop. */
static int upstream_is_self(const struct dnsproxy *p, const struct dnsproxy_upstream *u)
{
	static const uint8_t mapped_lo[16] = { [10] = 0xff, [11] = 0xff, 127, 0, 0, 1 };
	const struct sockaddr_in *s4 = (const void *)&u->addr;
	const struct sockaddr_in6 *s6 = (const void *)&u->addr;

	if (u->addr.ss_family == AF_INET)
		return ntohs(s4->sin_port) == p->port && (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	return ntohs(s6->sin6_port) == p->port &&
	       (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) ||
		memcmp(s6->sin6_addr.s6_addr, mapped_lo, 13) == 0);
}

/* Where this query goes: --upstream, else the resolver its process asked for. 0 if nowhere. */
static int choose_upstream(const struct dnsproxy *p, const struct query_meta *m,
			   struct dnsproxy_upstream *ret)
{
	if (p->o.upstream.len)
		*ret = p->o.upstream;
	else if (m->attributed)
		origin_upstream(&m->origin, ret);
	else
		return 0;
	return 1;
}

static int pfd_watch(struct dnsproxy *p, struct pfd *f, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = f };
	int op = f->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

	if (f->events == events)
		return 0;
	if (events == 0) {
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, f->fd, NULL);
		f->events = 0;
		return 0;
	}
	if (epoll_ctl(p->epfd, op, f->fd, &ev) < 0)
		return -errno;
	f->events = events;
	return 0;
}

static void pfd_close(struct dnsproxy *p, struct pfd *f)
{
	if (f->fd < 0)
		return;
	pfd_watch(p, f, 0);
	close(f->fd);
	f->fd = -1;
}

/* ---- records ------------------------------------------------------------------------------- */

static void meta_init(struct dnsproxy *p, struct query_meta *m, uint8_t proto, int attributed,
		      const struct nt_dns_origin *o)
{
	memset(m, 0, sizeof(*m));
	m->time_ns = wall_ns();
	m->sent_ms = -1;
	m->proto = proto;
	m->attributed = attributed;
	if (attributed) {
		m->origin = *o;
		dnsproxy_format_addr(o->family, o->addr, o->port, m->resolver, sizeof(m->resolver));
	}
}

static size_t str_size(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

static char *pool_put(char **pool, const char *s)
{
	char *at = *pool;
	size_t n = strlen(s) + 1;

	memcpy(at, s, n);
	*pool += n;
	return at;
}

/*
 * The record of one query, answered with `answer` (NULL when the proxy answered itself with
 * rcode). The query is parsed again here: pending queries keep only their bytes.
 */
/*
 * The CNAME targets of an answer as policy_decide_chain takes them ("a\0b\0\0"), into buf:
 * the length with the last '\0', or 0 when there are none. Of a chain longer than buf, the
 * targets that fit.
 */
static size_t chain_build(const struct dns_response *r, char *buf, size_t cap)
{
	size_t n = 0;

	for (unsigned i = 0; i < r->n_rrs; i++) {
		size_t len = strlen(r->rrs[i].target) + 1;

		/* A name with \DDD escapes is one no rule can name; from one that does not fit on,
		 * none is looked at. */
		if (r->rrs[i].type != DNS_T_CNAME || len == 1 || strchr(r->rrs[i].target, '\\'))
			continue;
		if (n + len + 1 > cap)
			break;
		memcpy(buf + n, r->rrs[i].target, len);
		n += len;
	}
	if (n)
		buf[n++] = '\0';
	return n;
}

/*
 * What a record says of an answer: REC_QUERY what the client got; REC_LEARNED an answer the
 * client did not get, for its addresses only (rec->learned); REC_CHAIN a refusal for the
 * answer's CNAME chain, which it keeps (no addresses: the client got none), with rcode.
 */
enum rec_kind { REC_QUERY, REC_LEARNED, REC_CHAIN };

static int rr_kept(enum rec_kind kind, const struct dns_rr *rr)
{
	return kind != REC_CHAIN || rr->type == DNS_T_CNAME;
}

static void record_emit(struct dnsproxy *p, const struct query_meta *m, const uint8_t *query,
			size_t qlen, const uint8_t *answer, size_t alen, int rcode, const char *error,
			enum rec_kind kind)
{
	const struct dns_response *resp = NULL;
	struct dns_record *rec;
	size_t size, strings;
	unsigned n_rrs = 0, answers = 0, kept = 0;
	char *pool, chain[POLICY_CHAIN_MAX];
	size_t chain_len;
	const uint8_t *parsed = p->resp_of; /* good for this one record */

	p->resp_of = NULL;
	if (dns_parse_query(query, qlen, &p->q) != DNS_OK)
		return; /* only well-formed queries are forwarded: cannot happen */
	if (answer) {
		int r = answer == parsed ? DNS_OK : dns_parse_response(answer, alen, p->resp);

		if (r == DNS_OK) {
			resp = p->resp;
			n_rrs = resp->n_rrs;
			answers = resp->n_answers;
		} else if (!error) {
			error = dns_strerror(r);
		}
		if (kind != REC_CHAIN)
			rcode = alen >= DNS_HDR_LEN ? (answer[3] & 0xf) : rcode;
		if (!resp && alen >= DNS_HDR_LEN)
			answers = (unsigned)answer[6] << 8 | answer[7];
	}
	chain_len = resp ? chain_build(resp, chain, sizeof(chain)) : 0;
	strings = str_size(p->q.q.name) + chain_len;
	for (unsigned i = 0; i < n_rrs; i++) {
		if (!rr_kept(kind, &resp->rrs[i]))
			continue;
		strings += str_size(resp->rrs[i].name) + str_size(resp->rrs[i].target);
		kept++;
	}
	if (kind == REC_CHAIN)
		answers = kept;
	size = sizeof(*rec) + kept * sizeof(rec->rrs[0]) + strings;
	rec = calloc(1, size);
	if (!rec)
		return;
	rec->rrs = (struct dns_record_rr *)(rec + 1);
	pool = (char *)(rec->rrs + kept);
	rec->time_ns = m->time_ns;
	rec->attributed = m->attributed;
	rec->origin = m->origin;
	rec->qname = pool_put(&pool, p->q.q.name);
	if (chain_len) {
		rec->chain = memcpy(pool, chain, chain_len);
		pool += chain_len;
	}
	rec->qtype = p->q.q.qtype;
	rec->rcode = rcode;
	rec->proto = m->proto;
	rec->verdict = m->dec.verdict;
	rec->rule_id = m->dec.rule_id;
	memcpy(rec->rule, m->dec.rule, sizeof(rec->rule));
	memcpy(rec->resolver, m->resolver, sizeof(rec->resolver));
	memcpy(rec->upstream, m->upstream, sizeof(rec->upstream));
	rec->latency_ns = answer && m->sent_ms >= 0 ? mono_ns() - m->sent_ns : -1;
	rec->error = error;
	rec->answers = answers;
	rec->n_rrs = kept;
	rec->learned = kind == REC_LEARNED;
	for (unsigned i = 0, k = 0; i < n_rrs; i++) {
		const struct dns_rr *rr = &resp->rrs[i];
		struct dns_record_rr *out = &rec->rrs[k];

		if (!rr_kept(kind, rr))
			continue;
		k++;
		out->type = rr->type;
		out->ttl = rr->ttl;
		out->name = pool_put(&pool, rr->name);
		if (rr->type == DNS_T_CNAME) {
			out->target = pool_put(&pool, rr->target);
		} else {
			out->family = rr->type == DNS_T_A ? AF_INET : AF_INET6;
			memcpy(out->addr, rr->addr, sizeof(out->addr));
		}
	}
	p->h.record(p->h.ctx, rec);
}

/*
 * What a message the proxy does not forward gets: nothing if it is not a query (answering a
 * response could start a loop between two reflectors) or has no header; NOTIMP for an opcode
 * other than QUERY; FORMERR otherwise. Returns the answer's length, or 0.
 */
static size_t query_reject(const uint8_t *msg, size_t len, uint8_t *out, size_t cap)
{
	struct dns_header h;

	if (dns_parse_header(msg, len, &h) != DNS_OK || dns_qr(h.flags))
		return 0;
	return dns_make_error(msg, len, dns_opcode(h.flags) ? DNS_R_NOTIMP : DNS_R_FORMERR, out,
			      cap);
}

/*
 * Counts a message and parses it into p->q: 1 if it is a query to forward; else 0, with the
 * answer it gets (if any) in out, *n bytes.
 */
static int query_admit(struct dnsproxy *p, const uint8_t *msg, size_t len,
		       uint8_t out[DNS_MSG_MAX], size_t *n)
{
	p->c.queries++;
	*n = 0;
	if (len <= QUERY_MAX && dns_parse_query(msg, len, &p->q) == DNS_OK)
		return 1;
	p->c.malformed++;
	*n = query_reject(msg, len, out, DNS_MSG_MAX);
	return 0;
}

/* What the rules say of the query in p->q, into m: 1 if it is to be answered here, blocked. */
static int query_blocked(struct dnsproxy *p, struct query_meta *m)
{
	if (!p->h.decide)
		return 0;
	p->h.decide(p->h.ctx, m->attributed ? &m->origin : NULL, p->q.q.name, NULL, &m->dec);
	if (m->dec.verdict != NT_VERDICT_BLOCKED)
		return 0;
	p->c.blocked++;
	return 1;
}

#define CHAIN_BLOCKED "blocked by rule: CNAME"

/*
 * An answer whose CNAME chain leads to a name a rule enforces (policy_decide_chain): 1 if it
 * is to be refused, and then it is recorded, as learned first, so that its addresses are
 * refused before the client has the refusal, then as refused with its chain: the caller only
 * sends the refusal. Otherwise m->dec may now name a target's monitor rule, and the answer is
 * parsed for the record_emit that follows.
 */
static int answer_chain_blocked(struct dnsproxy *p, struct query_meta *m, const uint8_t *query,
				size_t qlen, const uint8_t *answer, size_t alen)
{
	char chain[POLICY_CHAIN_MAX];

	p->resp_of = NULL;
	if (!p->h.decide || dns_parse_response(answer, alen, p->resp) != DNS_OK)
		return 0;
	p->resp_of = answer;
	if (!chain_build(p->resp, chain, sizeof(chain)) ||
	    dns_parse_query(query, qlen, &p->q) != DNS_OK)
		return 0;
	p->h.decide(p->h.ctx, m->attributed ? &m->origin : NULL, p->q.q.name, chain, &m->dec);
	if (m->dec.verdict != NT_VERDICT_BLOCKED)
		return 0;
	p->c.blocked++;
	record_emit(p, m, query, qlen, answer, alen, -1, NULL, REC_LEARNED);
	p->resp_of = answer; /* parsed still: the refusal's record keeps the chain */
	record_emit(p, m, query, qlen, answer, alen, p->o.block_rcode, CHAIN_BLOCKED, REC_CHAIN);
	return 1;
}

/* ---- UDP ----------------------------------------------------------------------------------- */

static void udp_reply(struct dnsproxy *p, int listener, const uint8_t *msg, size_t len,
		      const struct sockaddr_storage *to, socklen_t tolen)
{
	/* A client that is gone, or a full socket buffer: the client will retry. */
	(void)!sendto(p->udp[listener].fd, msg, len, MSG_DONTWAIT, (const struct sockaddr *)to, tolen);
}

/* Answers the client with rcode itself, and records it (error NULL: recorded already). */
static void udp_answer_error(struct dnsproxy *p, int listener, const struct query_meta *m,
			     const uint8_t *query, size_t qlen, uint16_t client_id, int rcode,
			     const char *error, const struct sockaddr_storage *to, socklen_t tolen)
{
	uint8_t out[DNS_MSG_MAX];
	size_t n = dns_make_error(query, qlen, rcode, out, sizeof(out));

	if (n >= DNS_HDR_LEN) {
		dns_set_id(out, client_id);
		if (error)
			record_emit(p, m, query, qlen, NULL, 0, rcode, error, REC_QUERY);
		udp_reply(p, listener, out, n, to, tolen);
	}
}

static void pending_unlink(struct dnsproxy *p, struct pending *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		p->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		p->tail = e->prev;
	e->prev = e->next = NULL;
}

static void pending_free(struct dnsproxy *p, struct pending *e)
{
	pending_unlink(p, e);
	if (e->up)
		e->up->inflight--;
	p->slots[e->id] = NULL;
	free(e);
	p->inflight--;
}

/* A free id, chosen at random: ids the upstream sees say nothing of the clients'. */
static int32_t pending_id(struct dnsproxy *p)
{
	if (p->inflight >= INFLIGHT_MAX)
		return -1;
	for (;;) {
		int32_t i = random_id(p);

		if (!p->slots[i])
			return i;
	}
}

/* A blocked query's refusal, sent once (its record was made when it came). */
static void learn_reply(struct dnsproxy *p, struct pending *e)
{
	uint8_t out[DNS_MSG_MAX];
	size_t n;

	if (!e->reply_waiting)
		return;
	e->reply_waiting = 0;
	p->learn_waiting--;
	n = dns_make_error(e->query, e->qlen, e->reply_rcode, out, sizeof(out));
	if (n >= DNS_HDR_LEN) {
		dns_set_id(out, e->client_id);
		udp_reply(p, e->listener, out, n, &e->client, e->client_len);
	}
}

/* Gives up a pending query: SERVFAIL to its client (a blocked one: its refusal). */
static void pending_fail(struct dnsproxy *p, struct pending *e, const char *error)
{
	if (e->learn) {
		learn_reply(p, e);
		pending_free(p, e);
		return;
	}
	udp_answer_error(p, e->listener, &e->meta, e->query, e->qlen, e->client_id, DNS_R_SERVFAIL,
			 error, &e->client, e->client_len);
	pending_free(p, e);
}

static struct upstream *upstream_get(struct dnsproxy *p, const struct dnsproxy_upstream *addr)
{
	struct upstream *u;
	int free_slot = -1, idle = -1;

	for (int i = 0; i < UPSTREAM_MAX; i++) {
		u = p->ups[i];
		if (!u) {
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (upstream_equal(&u->addr, addr)) {
			u->last_used_ms = mono_ms();
			return u;
		}
		if (u->inflight == 0 && (idle < 0 || u->last_used_ms < p->ups[idle]->last_used_ms))
			idle = i;
	}
	if (free_slot < 0 && idle >= 0) {
		pfd_close(p, &p->ups[idle]->pfd);
		p->ups[idle]->next_dead = p->dead_ups;
		p->dead_ups = p->ups[idle];
		p->ups[idle] = NULL;
		free_slot = idle;
	}
	if (free_slot < 0)
		return NULL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->addr = *addr;
	u->pfd = (struct pfd){ .kind = PFD_UPSTREAM_UDP, .obj = u };
	dnsproxy_format_addr_sa(&addr->addr, u->text, sizeof(u->text));
	/*
	 * Connected: the kernel drops datagrams from any other address, and an unreachable port
	 * comes back as ECONNREFUSED on this socket.
	 */
	u->pfd.fd = socket(addr->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->pfd.fd < 0 || connect(u->pfd.fd, (const struct sockaddr *)&addr->addr, addr->len) < 0 ||
	    pfd_watch(p, &u->pfd, EPOLLIN) < 0) {
		if (u->pfd.fd >= 0)
			close(u->pfd.fd);
		free(u);
		return NULL;
	}
	u->last_used_ms = mono_ms();
	p->ups[free_slot] = u;
	return u;
}

static void upstream_fail_all(struct dnsproxy *p, struct upstream *u, const char *error)
{
	for (struct pending *e = p->head, *next; e; e = next) {
		next = e->next;
		if (e->up == u) {
			p->c.upstream_error += !e->learn;
			pending_fail(p, e, error);
		}
	}
}

/* A query about to be sent to up joins the deadline list. */
static void pending_queue(struct dnsproxy *p, struct pending *e, struct upstream *up)
{
	e->up = up;
	e->meta.sent_ms = mono_ms();
	e->meta.sent_ns = mono_ns();
	up->inflight++;
	p->inflight++;
	e->prev = p->tail;
	e->next = NULL;
	if (p->tail)
		p->tail->next = e;
	else
		p->head = e;
	p->tail = e;
}

/*
 * A blocked query is still asked of the upstream: the addresses of the answer are enforced
 * too, so a program that falls back to an address it has (cached, or written in a script)
 * is refused. A UDP client's refusal (client not NULL) waits for the answer, so that the
 * addresses are in the kernel before the program can try them, but no more than
 * LEARN_WAIT_MS. Best effort: not when there is nowhere to ask, nor when half the ids are in
 * flight (clients' queries come first). 1 if the refusal is left to the pending query.
 */
static int learn_send(struct dnsproxy *p, const struct query_meta *m, const uint8_t *msg,
		      size_t len, int listener, uint16_t client_id,
		      const struct sockaddr_storage *client, socklen_t client_len)
{
	struct dnsproxy_upstream up_addr;
	struct upstream *up;
	struct pending *e;
	int32_t i;

	if (!p->o.learn_blocked || !choose_upstream(p, m, &up_addr) ||
	    upstream_is_self(p, &up_addr) || p->inflight >= INFLIGHT_MAX / 2)
		return 0;
	up = upstream_get(p, &up_addr);
	if (!up || (i = pending_id(p)) < 0)
		return 0;
	e = calloc(1, sizeof(*e) + len);
	if (!e)
		return 0;
	memcpy(e->query, msg, len);
	dns_set_id(e->query, (uint16_t)i);
	e->id = (uint16_t)i;
	e->qlen = (uint16_t)len;
	e->learn = 1;
	e->listener = listener;
	if (client) {
		e->reply_waiting = 1;
		e->reply_by_ms = mono_ms() + LEARN_WAIT_MS;
		e->reply_rcode = (uint8_t)p->o.block_rcode;
		e->client_id = client_id;
		memcpy(&e->client, client, client_len);
		e->client_len = client_len;
		p->learn_waiting++;
	}
	p->slots[i] = e;
	e->meta = *m;
	dnsproxy_format_addr_sa(&up_addr.addr, e->meta.upstream, sizeof(e->meta.upstream));
	pending_queue(p, e, up);
	if (send(up->pfd.fd, e->query, len, MSG_DONTWAIT) < 0) {
		/* As for a client's query: a refusing resolver fails every query waiting on it. */
		if (errno == ECONNREFUSED)
			upstream_fail_all(p, up, "upstream refused");
		else
			pending_fail(p, e, NULL);
		return client != NULL;
	}
	p->c.learn_sent++;
	return client != NULL;
}

static void udp_query(struct dnsproxy *p, int listener, uint8_t *msg, size_t len,
		      const struct sockaddr_storage *from, socklen_t fromlen)
{
	struct nt_dns_key key = { .proto = IPPROTO_UDP };
	uint8_t out[DNS_MSG_MAX];
	size_t n;
	struct nt_dns_origin origin;
	struct dnsproxy_upstream up_addr;
	struct query_meta m;
	struct upstream *up;
	struct pending *e;
	int32_t i;
	int r;

	if (!query_admit(p, msg, len, out, &n)) {
		if (n)
			udp_reply(p, listener, out, n, from, fromlen);
		return;
	}
	key.id = p->q.hdr.id;
	key.family = listener == 0 ? AF_INET : AF_INET6;
	key.port = ntohs(((const struct sockaddr_in *)from)->sin_port); /* same offset in sin6 */
	r = p->h.origin(p->h.ctx, &key, &origin);
	if (!r)
		p->c.unattributed++;
	meta_init(p, &m, IPPROTO_UDP, r, &origin);
	if (query_blocked(p, &m)) {
		/* Recorded now; refused once the upstream has told the addresses (or soon). */
		if (learn_send(p, &m, msg, len, listener, key.id, from, fromlen))
			record_emit(p, &m, msg, len, NULL, 0, p->o.block_rcode, "blocked by rule", REC_QUERY);
		else
			udp_answer_error(p, listener, &m, msg, len, key.id, p->o.block_rcode,
					 "blocked by rule", from, fromlen);
		return;
	}
	if (!choose_upstream(p, &m, &up_addr)) {
		udp_answer_error(p, listener, &m, msg, len, key.id, DNS_R_SERVFAIL,
				 "sender unknown and no --upstream", from, fromlen);
		return;
	}
	dnsproxy_format_addr_sa(&up_addr.addr, m.upstream, sizeof(m.upstream));
	if (upstream_is_self(p, &up_addr)) {
		udp_answer_error(p, listener, &m, msg, len, key.id, DNS_R_SERVFAIL,
				 "the resolver is the proxy itself", from, fromlen);
		return;
	}
	up = upstream_get(p, &up_addr);
	if (!up) {
		p->c.upstream_error++;
		udp_answer_error(p, listener, &m, msg, len, key.id, DNS_R_SERVFAIL,
				 "upstream unreachable", from, fromlen);
		return;
	}
	i = pending_id(p);
	if (i < 0) {
		p->c.overload++;
		udp_answer_error(p, listener, &m, msg, len, key.id, DNS_R_SERVFAIL, "overloaded",
				 from, fromlen);
		return;
	}
	e = calloc(1, sizeof(*e) + len);
	if (!e) {
		udp_answer_error(p, listener, &m, msg, len, key.id, DNS_R_SERVFAIL, "out of memory",
				 from, fromlen);
		return;
	}
	memcpy(e->query, msg, len);
	dns_set_id(e->query, (uint16_t)i);
	e->id = (uint16_t)i;
	e->qlen = (uint16_t)len;
	p->slots[i] = e;
	e->listener = listener;
	e->client_id = key.id;
	memcpy(&e->client, from, fromlen);
	e->client_len = fromlen;
	e->meta = m;
	pending_queue(p, e, up);
	if (send(up->pfd.fd, e->query, len, MSG_DONTWAIT) < 0) {
		/* An ICMP error from an earlier datagram, reported now: the resolver is not there. */
		if (errno == ECONNREFUSED) {
			upstream_fail_all(p, up, "upstream refused");
		} else {
			p->c.upstream_error++;
			pending_fail(p, e, "upstream unreachable");
		}
	}
}

static void udp_listener_readable(struct dnsproxy *p, int listener)
{
	for (int n = 0; n < UDP_BATCH; n++) {
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t len = recvfrom(p->udp[listener].fd, p->buf, DNS_MSG_MAX, MSG_DONTWAIT,
				       (struct sockaddr *)&from, &fromlen);

		if (len < 0)
			return;
		if (n == 0 && p->h.before_query)
			p->h.before_query(p->h.ctx);
		udp_query(p, listener, p->buf, (size_t)len, &from, fromlen);
	}
}

static void upstream_readable(struct dnsproxy *p, struct upstream *u)
{
	for (int n = 0; n < UDP_BATCH; n++) {
		ssize_t len = recv(u->pfd.fd, p->buf, DNS_MSG_MAX, MSG_DONTWAIT);
		struct pending *e;

		if (len < 0) {
			if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)
				upstream_fail_all(p, u, "upstream refused");
			return;
		}
		if (len < DNS_HDR_LEN) {
			p->c.upstream_mismatch++;
			continue;
		}
		e = p->slots[dns_get_id(p->buf)];
		if (!e || e->up != u ||
		    !dns_same_question(e->query, e->qlen, p->buf, (size_t)len)) {
			p->c.upstream_mismatch++;
			continue;
		}
		if (e->learn) {
			/* The addresses reach the kernel (by the record hook) before the refusal. */
			record_emit(p, &e->meta, e->query, e->qlen, p->buf, (size_t)len, -1, NULL, REC_LEARNED);
			learn_reply(p, e);
			pending_free(p, e);
			continue;
		}
		if (answer_chain_blocked(p, &e->meta, e->query, e->qlen, p->buf, (size_t)len)) {
			udp_answer_error(p, e->listener, &e->meta, e->query, e->qlen, e->client_id,
					 p->o.block_rcode, NULL, &e->client, e->client_len);
			pending_free(p, e);
			continue;
		}
		/* Recorded before the client has the answer: its connect comes after the record. */
		record_emit(p, &e->meta, e->query, e->qlen, p->buf, (size_t)len, -1, NULL, REC_QUERY);
		dns_set_id(p->buf, e->client_id);
		udp_reply(p, e->listener, p->buf, (size_t)len, &e->client, e->client_len);
		pending_free(p, e);
	}
}

/* ---- TCP ----------------------------------------------------------------------------------- */

static int buf_append(struct buf *b, const uint8_t *data, size_t len)
{
	if (b->len + len > TCP_OUT_MAX)
		return -ENOBUFS;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *d;

		while (cap < b->len + len)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

/* A length and its message, or neither: half a frame would garble the stream. */
static int buf_append_frame(struct buf *b, const uint8_t *msg, size_t len)
{
	uint8_t hdr[2] = { (uint8_t)(len >> 8), (uint8_t)len };
	int r;

	if (b->len + 2 + len > TCP_OUT_MAX)
		return -ENOBUFS;
	r = buf_append(b, hdr, 2);
	return r < 0 ? r : buf_append(b, msg, len);
}

/* Writes what it can; -1 when the peer is gone. */
static int buf_flush(struct buf *b, int fd)
{
	while (b->len) {
		ssize_t n = send(fd, b->data, b->len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		memmove(b->data, b->data + n, b->len - (size_t)n);
		b->len -= (size_t)n;
	}
	return 0;
}

static void tcp_close(struct dnsproxy *p, struct tcpconn *c);

static void tcp_update_watch(struct dnsproxy *p, struct tcpconn *c)
{
	/* After the client's EOF its socket stays readable: watching that would spin. */
	pfd_watch(p, &c->pfd, (c->client_eof ? 0 : EPOLLIN) | (c->out.len ? EPOLLOUT : 0));
	if (c->up_pfd.fd >= 0)
		pfd_watch(p, &c->up_pfd,
			  EPOLLIN | (!c->up_connected || c->up_out.len ? EPOLLOUT : 0));
}

static void tcp_send_client(struct dnsproxy *p, struct tcpconn *c, const uint8_t *msg, size_t len)
{
	if (buf_append_frame(&c->out, msg, len) < 0 || buf_flush(&c->out, c->pfd.fd) < 0)
		c->client_eof = 2; /* unwritable: closed by tcp_finish */
}

/* As udp_answer_error. */
static void tcp_answer_error(struct dnsproxy *p, struct tcpconn *c, const struct query_meta *m,
			     const uint8_t *query, size_t qlen, int rcode, const char *error)
{
	uint8_t out[DNS_MSG_MAX];
	size_t n = dns_make_error(query, qlen, rcode, out, sizeof(out));

	if (n >= DNS_HDR_LEN) {
		if (error)
			record_emit(p, m, query, qlen, NULL, 0, rcode, error, REC_QUERY);
		tcp_send_client(p, c, out, n);
	}
}

static void tcp_pending_fail(struct dnsproxy *p, struct tcpconn *c, struct tcp_pending *q,
			     const char *error)
{
	tcp_answer_error(p, c, &q->meta, q->query, q->qlen, DNS_R_SERVFAIL, error);
	free(q->query);
	memset(q, 0, sizeof(*q));
	c->n_pend--;
}

static void tcp_fail_all(struct dnsproxy *p, struct tcpconn *c, const char *error)
{
	for (int i = 0; i < TCP_PIPELINE_MAX; i++) {
		if (c->pend[i].used) {
			p->c.upstream_error++;
			tcp_pending_fail(p, c, &c->pend[i], error);
		}
	}
	pfd_close(p, &c->up_pfd);
	c->up_connected = 0;
	c->up_out.len = 0;
	c->up_in_len = 0;
}

static int tcp_connect_upstream(struct dnsproxy *p, struct tcpconn *c)
{
	int fd = socket(c->upstream.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&c->upstream.addr, c->upstream.len) < 0 &&
	    errno != EINPROGRESS) {
		close(fd);
		return -errno;
	}
	c->up_pfd = (struct pfd){ .kind = PFD_TCP_UPSTREAM, .fd = fd, .obj = c };
	c->up_connected = 0;
	return 0;
}

static void tcp_query(struct dnsproxy *p, struct tcpconn *c, const uint8_t *msg, size_t len)
{
	uint8_t out[DNS_MSG_MAX];
	size_t n;
	struct query_meta m;
	struct tcp_pending *q = NULL;
	int r;

	if (!query_admit(p, msg, len, out, &n)) {
		if (n)
			tcp_send_client(p, c, out, n);
		return;
	}
	meta_init(p, &m, IPPROTO_TCP, c->attributed, &c->origin);
	if (query_blocked(p, &m)) {
		tcp_answer_error(p, c, &m, msg, len, p->o.block_rcode, "blocked by rule");
		learn_send(p, &m, msg, len, 0, 0, NULL, 0); /* the refusal is sent: no wait */
		return;
	}
	if (!choose_upstream(p, &m, &c->upstream)) {
		tcp_answer_error(p, c, &m, msg, len, DNS_R_SERVFAIL, "sender unknown and no --upstream");
		return;
	}
	dnsproxy_format_addr_sa(&c->upstream.addr, m.upstream, sizeof(m.upstream));
	if (upstream_is_self(p, &c->upstream)) {
		tcp_answer_error(p, c, &m, msg, len, DNS_R_SERVFAIL, "the resolver is the proxy itself");
		return;
	}
	for (int i = 0; i < TCP_PIPELINE_MAX && !q; i++)
		if (!c->pend[i].used)
			q = &c->pend[i];
	if (!q) {
		p->c.overload++;
		tcp_answer_error(p, c, &m, msg, len, DNS_R_SERVFAIL, "overloaded");
		return;
	}
	if (c->up_pfd.fd < 0 && (r = tcp_connect_upstream(p, c)) < 0) {
		p->c.upstream_error++;
		tcp_answer_error(p, c, &m, msg, len, DNS_R_SERVFAIL, "upstream unreachable");
		return;
	}
	q->query = malloc(len);
	if (!q->query || buf_append_frame(&c->up_out, msg, len) < 0) {
		free(q->query);
		q->query = NULL;
		tcp_answer_error(p, c, &m, msg, len, DNS_R_SERVFAIL, "out of memory");
		return;
	}
	memcpy(q->query, msg, len);
	q->qlen = (uint16_t)len;
	q->id = p->q.hdr.id;
	q->used = 1;
	q->meta = m;
	q->meta.sent_ms = mono_ms();
	q->meta.sent_ns = mono_ns();
	c->n_pend++;
	if (c->up_connected && buf_flush(&c->up_out, c->up_pfd.fd) < 0)
		tcp_fail_all(p, c, "upstream closed the connection");
}

/* Complete frames in buf: handled by fn, the rest kept. */
static void frames_take(uint8_t *buf, size_t *len, void (*fn)(struct dnsproxy *, struct tcpconn *,
							       const uint8_t *, size_t),
			struct dnsproxy *p, struct tcpconn *c)
{
	size_t off = 0;

	while (*len - off >= 2) {
		size_t flen = (size_t)buf[off] << 8 | buf[off + 1];

		if (*len - off - 2 < flen)
			break;
		fn(p, c, buf + off + 2, flen);
		off += 2 + flen;
	}
	memmove(buf, buf + off, *len - off);
	*len -= off;
}

static void tcp_answer(struct dnsproxy *p, struct tcpconn *c, const uint8_t *msg, size_t len)
{
	struct tcp_pending *q = NULL;

	if (len >= DNS_HDR_LEN) {
		uint16_t id = dns_get_id(msg);

		for (int i = 0; i < TCP_PIPELINE_MAX && !q; i++)
			if (c->pend[i].used && c->pend[i].id == id &&
			    dns_same_question(c->pend[i].query, c->pend[i].qlen, msg, len))
				q = &c->pend[i];
	}
	if (!q) {
		p->c.upstream_mismatch++;
		return;
	}
	if (answer_chain_blocked(p, &q->meta, q->query, q->qlen, msg, len)) {
		tcp_answer_error(p, c, &q->meta, q->query, q->qlen, p->o.block_rcode, NULL);
	} else {
		record_emit(p, &q->meta, q->query, q->qlen, msg, len, -1, NULL, REC_QUERY);
		tcp_send_client(p, c, msg, len);
	}
	free(q->query);
	memset(q, 0, sizeof(*q));
	c->n_pend--;
}

static void tcp_client_frame(struct dnsproxy *p, struct tcpconn *c, const uint8_t *msg, size_t len)
{
	tcp_query(p, c, msg, len);
}

static void tcp_client_readable(struct dnsproxy *p, struct tcpconn *c)
{
	ssize_t n = recv(c->pfd.fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		c->client_eof = 1;
		return;
	}
	c->last_active_ms = mono_ms();
	c->in_len += (size_t)n;
	if (p->h.before_query)
		p->h.before_query(p->h.ctx);
	frames_take(c->in, &c->in_len, tcp_client_frame, p, c);
}

static void tcp_upstream_event(struct dnsproxy *p, struct tcpconn *c, uint32_t events)
{
	if (!c->up_connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(c->up_pfd.fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			tcp_fail_all(p, c, "upstream refused");
			return;
		}
		c->up_connected = 1;
	}
	if (c->up_connected && c->up_out.len && buf_flush(&c->up_out, c->up_pfd.fd) < 0) {
		tcp_fail_all(p, c, "upstream closed the connection");
		return;
	}
	if (events & EPOLLIN) {
		ssize_t n = recv(c->up_pfd.fd, c->up_in + c->up_in_len,
				 sizeof(c->up_in) - c->up_in_len, MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
			tcp_fail_all(p, c, "upstream closed the connection");
			return;
		}
		if (n > 0) {
			c->up_in_len += (size_t)n;
			frames_take(c->up_in, &c->up_in_len, tcp_answer, p, c);
		}
	}
}

static void tcp_accept(struct dnsproxy *p, int listener)
{
	for (int n = 0; n < UDP_BATCH; n++) {
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		struct nt_dns_key key = { .proto = IPPROTO_TCP };
		struct tcpconn *c;
		int fd = accept4(p->tcp[listener].fd, (struct sockaddr *)&from, &fromlen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		if (p->n_conns >= TCP_CONN_MAX || !(c = calloc(1, sizeof(*c)))) {
			p->c.overload++;
			close(fd);
			continue;
		}
		c->pfd = (struct pfd){ .kind = PFD_TCP_CLIENT, .fd = fd, .obj = c };
		c->up_pfd = (struct pfd){ .kind = PFD_TCP_UPSTREAM, .fd = -1, .obj = c };
		memcpy(&c->client, &from, fromlen);
		c->client_len = fromlen;
		c->last_active_ms = mono_ms();
		key.family = listener == 0 ? AF_INET : AF_INET6;
		key.port = ntohs(((struct sockaddr_in *)&from)->sin_port);
		if (p->h.before_query)
			p->h.before_query(p->h.ctx);
		c->attributed = p->h.origin(p->h.ctx, &key, &c->origin);
		if (!c->attributed)
			p->c.unattributed++;
		if (pfd_watch(p, &c->pfd, EPOLLIN) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = p->conns;
		p->conns = c;
		p->n_conns++;
	}
}

static void tcp_close(struct dnsproxy *p, struct tcpconn *c)
{
	struct tcpconn **pp;

	/* Queries forwarded but not answered: recorded, there is no one left to answer. */
	for (int i = 0; i < TCP_PIPELINE_MAX; i++) {
		struct tcp_pending *q = &c->pend[i];

		if (q->used) {
			record_emit(p, &q->meta, q->query, q->qlen, NULL, 0, -1, "client gone", REC_QUERY);
			free(q->query);
		}
	}
	pfd_close(p, &c->pfd);
	pfd_close(p, &c->up_pfd);
	free(c->out.data);
	free(c->up_out.data);
	for (pp = &p->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	p->n_conns--;
	c->next = p->dead_conns;
	p->dead_conns = c;
}

static void free_dead(struct dnsproxy *p)
{
	while (p->dead_conns) {
		struct tcpconn *c = p->dead_conns;

		p->dead_conns = c->next;
		free(c);
	}
	while (p->dead_ups) {
		struct upstream *u = p->dead_ups;

		p->dead_ups = u->next_dead;
		free(u);
	}
}

/* Closes a connection that is done: its client left and has every answer, or cannot take one. */
static int tcp_finish(struct dnsproxy *p, struct tcpconn *c)
{
	if (c->client_eof == 2 || (c->client_eof && c->n_pend == 0 && c->out.len == 0)) {
		tcp_close(p, c);
		return 1;
	}
	tcp_update_watch(p, c);
	return 0;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static int bind_socket(int family, int type, uint16_t port, int *ret)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int one = 1, fd;

	fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (family == AF_INET) {
		struct sockaddr_in *s = (void *)&ss;

		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (void *)&ss;

		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		s->sin6_addr = in6addr_loopback;
		len = sizeof(*s);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	}
	if (type == SOCK_STREAM)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    (type == SOCK_STREAM && listen(fd, 128) < 0)) {
		int r = -errno;

		close(fd);
		return r;
	}
	if (type == SOCK_DGRAM) {
		int size = 4 << 20; /* bursts of queries wait here, not in the kernel's drop counter */

		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	}
	*ret = fd;
	return 0;
}

static void close_listeners(struct dnsproxy *p)
{
	for (int i = 0; i < 2; i++) {
		pfd_close(p, &p->udp[i]);
		pfd_close(p, &p->tcp[i]);
	}
}

/* All four sockets on one port; with port 0, retried until the kernel's choice is free on all. */
static int bind_all(struct dnsproxy *p, uint16_t port, const char **why)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);
		int r;

		r = bind_socket(AF_INET, SOCK_DGRAM, port, &p->udp[0].fd);
		if (r == 0 && getsockname(p->udp[0].fd, (struct sockaddr *)&sin, &len) == 0)
			p->port = ntohs(sin.sin_port);
		if (r == 0)
			r = bind_socket(AF_INET, SOCK_STREAM, p->port, &p->tcp[0].fd);
		if (r == 0) {
			int r6 = bind_socket(AF_INET6, SOCK_DGRAM, p->port, &p->udp[1].fd);

			if (r6 == 0)
				r6 = bind_socket(AF_INET6, SOCK_STREAM, p->port, &p->tcp[1].fd);
			if (r6 == -EADDRINUSE) {
				r = r6;
			} else if (r6 < 0) { /* no IPv6 here: IPv6 resolvers are left alone */
				pfd_close(p, &p->udp[1]);
				pfd_close(p, &p->tcp[1]);
			}
		}
		if (r == 0) {
			p->has_v6 = p->udp[1].fd >= 0;
			return 0;
		}
		close_listeners(p);
		if (r != -EADDRINUSE || port != 0) {
			*why = r == -EADDRINUSE ? "the DNS proxy's port is in use on loopback"
						: "failed to open the DNS proxy's sockets on loopback";
			return r;
		}
	}
	*why = "no port was free on loopback for the DNS proxy";
	return -EADDRINUSE;
}

int dnsproxy_open(const struct dnsproxy_opts *o, const struct dnsproxy_hooks *h,
		  struct dnsproxy **ret, const char **why)
{
	struct dnsproxy *p = calloc(1, sizeof(*p));
	int r;

	*why = "out of memory";
	if (!p)
		return -ENOMEM;
	p->o = *o;
	if (!p->o.block_rcode)
		p->o.block_rcode = DNS_R_NXDOMAIN;
	p->h = *h;
	for (int i = 0; i < 2; i++) {
		p->udp[i] = (struct pfd){ .kind = PFD_UDP_LISTEN, .fd = -1, .obj = (void *)(intptr_t)i };
		p->tcp[i] = (struct pfd){ .kind = PFD_TCP_LISTEN, .fd = -1, .obj = (void *)(intptr_t)i };
	}
	p->slots = calloc(PENDING_MAX, sizeof(*p->slots));
	p->resp = malloc(sizeof(*p->resp));
	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!p->slots || !p->resp || p->epfd < 0) {
		r = -ENOMEM;
		goto fail;
	}
	p->rnd_pos = sizeof(p->rnd); /* drawn at the first id */
	r = bind_all(p, o->port, why);
	if (r < 0)
		goto fail;
	for (int i = 0; i < 2; i++) {
		if (p->udp[i].fd >= 0 && (r = pfd_watch(p, &p->udp[i], EPOLLIN)) < 0)
			goto fail;
		if (p->tcp[i].fd >= 0 && (r = pfd_watch(p, &p->tcp[i], EPOLLIN)) < 0)
			goto fail;
	}
	*why = NULL;
	*ret = p;
	return 0;
fail:
	dnsproxy_close(p);
	return r;
}

uint16_t dnsproxy_port(const struct dnsproxy *p)
{
	return p->port;
}

int dnsproxy_has_v6(const struct dnsproxy *p)
{
	return p->has_v6;
}

int dnsproxy_fd(const struct dnsproxy *p)
{
	return p->epfd;
}

void dnsproxy_dispatch(struct dnsproxy *p)
{
	struct epoll_event evs[32];
	int n = epoll_wait(p->epfd, evs, ARRAY_SIZE(evs), 0);

	for (int i = 0; i < n; i++) {
		struct pfd *f = evs[i].data.ptr;
		struct tcpconn *c;

		switch (f->kind) {
		case PFD_UDP_LISTEN:
			udp_listener_readable(p, (int)(intptr_t)f->obj);
			break;
		case PFD_TCP_LISTEN:
			tcp_accept(p, (int)(intptr_t)f->obj);
			break;
		case PFD_UPSTREAM_UDP:
			if (f->fd >= 0)
				upstream_readable(p, f->obj);
			break;
		case PFD_TCP_CLIENT:
			c = f->obj;
			if (c->pfd.fd < 0) /* closed earlier in this batch */
				break;
			if (evs[i].events & EPOLLIN)
				tcp_client_readable(p, c);
			if (c->out.len && buf_flush(&c->out, c->pfd.fd) < 0)
				c->client_eof = 2;
			tcp_finish(p, c);
			break;
		case PFD_TCP_UPSTREAM:
			c = f->obj;
			if (c->pfd.fd < 0 || c->up_pfd.fd < 0)
				break;
			tcp_upstream_event(p, c, evs[i].events);
			tcp_finish(p, c);
			break;
		}
	}
	free_dead(p);
}

void dnsproxy_tick(struct dnsproxy *p)
{
	int64_t now = mono_ms();
	struct tcpconn *c, *next;

	/* Refusals that waited long enough for their addresses. */
	for (struct pending *e = p->head; e && p->learn_waiting; e = e->next) {
		if (e->meta.sent_ms + LEARN_WAIT_MS > now)
			break; /* oldest first: the rest are younger */
		if (e->reply_waiting && e->reply_by_ms <= now)
			learn_reply(p, e);
	}
	while (p->head && p->head->meta.sent_ms + p->o.timeout_ms <= now) {
		p->c.upstream_timeout += !p->head->learn; /* a client's query was let down */
		pending_fail(p, p->head, "upstream timeout");
	}
	for (c = p->conns; c; c = next) {
		next = c->next;
		for (int i = 0; i < TCP_PIPELINE_MAX; i++) {
			struct tcp_pending *q = &c->pend[i];

			if (q->used && q->meta.sent_ms + p->o.timeout_ms <= now) {
				p->c.upstream_timeout++;
				tcp_pending_fail(p, c, q, "upstream timeout");
			}
		}
		if (c->n_pend == 0 && now - c->last_active_ms > TCP_IDLE_MS)
			c->client_eof = 2;
		tcp_finish(p, c);
	}
	free_dead(p);
}

void dnsproxy_counts(const struct dnsproxy *p, struct dnsproxy_counts *ret)
{
	*ret = p->c;
}

/* Whether a client waits for the upstream (not the proxy's own questions, once answered). */
static int in_flight(const struct dnsproxy *p)
{
	for (const struct pending *e = p->head; e; e = e->next)
		if (!e->learn || e->reply_waiting)
			return 1;
	for (const struct tcpconn *c = p->conns; c; c = c->next)
		if (c->n_pend)
			return 1;
	return 0;
}

void dnsproxy_settle(struct dnsproxy *p, int max_ms)
{
	int64_t deadline = mono_ms() + max_ms;

	for (;;) {
		int64_t left = deadline - mono_ms();
		struct epoll_event ev;

		dnsproxy_tick(p);
		if (!in_flight(p) || left <= 0)
			return;
		if (epoll_wait(p->epfd, &ev, 1, (int)(left < 50 ? left : 50)) > 0)
			dnsproxy_dispatch(p);
	}
}

void dnsproxy_abandon(struct dnsproxy *p)
{
	while (p->head)
		pending_fail(p, p->head, "agent stopping");
	while (p->conns) {
		for (int i = 0; i < TCP_PIPELINE_MAX; i++)
			if (p->conns->pend[i].used)
				tcp_pending_fail(p, p->conns, &p->conns->pend[i], "agent stopping");
		buf_flush(&p->conns->out, p->conns->pfd.fd);
		tcp_close(p, p->conns);
	}
}

void dnsproxy_close(struct dnsproxy *p)
{
	if (!p)
		return;
	dnsproxy_abandon(p);
	for (int i = 0; i < UPSTREAM_MAX; i++) {
		if (p->ups[i]) {
			pfd_close(p, &p->ups[i]->pfd);
			free(p->ups[i]);
		}
	}
	free_dead(p);
	close_listeners(p);
	if (p->epfd >= 0)
		close(p->epfd);
	free(p->slots);
	free(p->resp);
	free(p);
}
