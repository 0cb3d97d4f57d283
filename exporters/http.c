// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <microhttpd.h>
#include "feed.h"
#include "http.h"
#include "log.h"
#include "parse.h"

#define REQUEST_TIMEOUT_S 10      /* an idle connection is closed after this */
#define REQUEST_MEMORY (32 * 1024) /* headers beyond this: 431, connection closed */
#define FEED_BATCH 1000            /* events read from the store at a time, per stream */
#define FOLLOW_POLL_MS 100         /* how often a following stream looks for new events */
#define FOLLOW_MAX 48              /* following streams: the other connections stay for probes */

struct http {
	struct MHD_Daemon *d;
	struct http_opts o;
	volatile int stopping;
	int followers; /* following streams open (atomic) */
};

/* ---- small helpers ------------------------------------------------------------------------- */

int http_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port_text;
	uint64_t port;
	size_t n;

	memset(ret, 0, sizeof(*ret));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		n = (size_t)(end - s - 1);
		s++;
		port_text = end + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon || strchr(s, ':') != colon)
			return -EINVAL;
		n = (size_t)(colon - s);
		port_text = colon + 1;
	}
	if (n == 0 || n >= sizeof(host) || parse_u64(port_text, 1, 65535, &port) < 0)
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ret)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ret;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*ret_len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ret)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ret;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*ret_len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

int http_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
			     const char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, mode);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	return reply(c, status, "text/plain; charset=utf-8", text, strlen(text),
		     MHD_RESPMEM_MUST_COPY);
}

/* ---- /v1/events ---------------------------------------------------------------------------- */

struct stream {
	struct http *h;
	struct MHD_Connection *conn;
	struct feed_reader *reader;
	struct feed_filter filter;
	char scope[65];
	enum feed_format fmt;
	int follow;
	uint64_t limit, sent;  /* limit 0: none */
	int64_t last_id;
	struct feed_buf buf;
	size_t off;
};

/* The client hung up (a following stream only learns it this way while idle). */
static int peer_gone(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct pollfd p;

	if (!ci)
		return 1;
	p = (struct pollfd){ .fd = ci->connect_fd, .events = POLLRDHUP };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * Runs in the connection's own thread: reading the store here never holds up the agent, and
 * a slow client only makes this thread wait on its socket, with one batch in memory.
 */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct stream *s = cls;

	for (;;) {
		size_t batch = FEED_BATCH;
		int64_t seq = 0;
		int n;

		if (s->off < s->buf.len) {
			size_t len = s->buf.len - s->off < max ? s->buf.len - s->off : max;

			memcpy(out, s->buf.data + s->off, len);
			s->off += len;
			return (ssize_t)len;
		}
		s->buf.len = s->off = 0;
		if (s->limit && s->sent >= s->limit)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (s->limit && s->limit - s->sent < batch)
			batch = (size_t)(s->limit - s->sent);
		/* Read before the events: every id up to it is committed when they are read. */
		if (feed_last_id(s->reader, &seq) < 0)
			seq = 0;
		n = feed_read(s->reader, &s->filter, s->last_id, batch, s->fmt, &s->buf, &s->last_id);
		if (n < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		s->sent += (uint64_t)n;
		if (n > 0)
			continue;
		/*
		 * Nothing passed the filter up to seq: later polls start there, instead of scanning
		 * again every event of other scopes or kinds since the last one sent.
		 */
		if (seq > s->last_id)
			s->last_id = seq;
		if (!s->follow)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (s->h->stopping || peer_gone(s->conn))
			return MHD_CONTENT_READER_END_OF_STREAM;
		nanosleep(&(struct timespec){ 0, FOLLOW_POLL_MS * 1000000L }, NULL);
	}
}

static void stream_free(void *cls)
{
	struct stream *s = cls;

	if (s->follow)
		__atomic_sub_fetch(&s->h->followers, 1, __ATOMIC_RELAXED);
	feed_close(s->reader);
	feed_buf_free(&s->buf);
	free(s);
}

/* One query parameter into the stream's settings; NULL, or the reason it is refused. */
static const char *stream_param(struct stream *s, const char *key, const char *value)
{
	uint64_t v;

	if (strcmp(key, "since") == 0) {
		if (parse_u64(value, 0, INT64_MAX, &v) < 0)
			return "since must be an event id (a decimal number)";
		s->last_id = (int64_t)v;
	} else if (strcmp(key, "follow") == 0) {
		if (strcmp(value, "1") && strcmp(value, "0") && strcmp(value, "true") &&
		    strcmp(value, "false"))
			return "follow must be 1 or 0";
		s->follow = value[0] == '1' || value[0] == 't';
	} else if (strcmp(key, "scope") == 0) {
		if (parse_scope(value) < 0)
			return "scope must be 1-64 of A-Z a-z 0-9 _ . -";
		snprintf(s->scope, sizeof(s->scope), "%s", value);
		s->filter.scope = s->scope;
	} else if (strcmp(key, "kind") == 0) {
		s->filter.kinds = 0;
		for (const char *k = value; *k;) {
			size_t n = strcspn(k, ",");

			if (n == 7 && !strncmp(k, "connect", n))
				s->filter.kinds |= FEED_KIND_CONNECT;
			else if (n == 3 && !strncmp(k, "dns", n))
				s->filter.kinds |= FEED_KIND_DNS;
			else if (n == 11 && !strncmp(k, "rule_change", n))
				s->filter.kinds |= FEED_KIND_RULE_CHANGE;
			else
				return "kind must be connect, dns or rule_change (comma-separated)";
			k += n + (k[n] == ',');
		}
		if (!s->filter.kinds)
			return "kind must be connect, dns or rule_change (comma-separated)";
	} else if (strcmp(key, "limit") == 0) {
		if (parse_u64(value, 1, 1000000000, &v) < 0)
			return "limit must be a number of events from 1 to 1000000000";
		s->limit = v;
	} else if (strcmp(key, "format") == 0) {
		if (!strcmp(value, "protobuf"))
			s->fmt = FEED_PROTOBUF;
		else if (!strcmp(value, "ndjson"))
			s->fmt = FEED_NDJSON;
		else
			return "format must be protobuf or ndjson";
	} else {
		return "unknown parameter (since, follow, scope, kind, limit, format)";
	}
	return NULL;
}

struct param_walk {
	struct stream *s;
	const char *error;
	char key[64];
};

static enum MHD_Result param_cb(void *cls, enum MHD_ValueKind kind, const char *key,
				const char *value)
{
	struct param_walk *w = cls;

	w->error = stream_param(w->s, key, value ? value : "");
	if (w->error)
		snprintf(w->key, sizeof(w->key), "%s", key);
	return w->error ? MHD_NO : MHD_YES;
}

static enum MHD_Result serve_events(struct http *h, struct MHD_Connection *c)
{
	struct stream *s = calloc(1, sizeof(*s));
	struct param_walk w = { .s = s };
	struct MHD_Response *r;
	enum MHD_Result ret;
	char msg[160];

	if (!s)
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	s->h = h;
	s->conn = c;
	s->filter.kinds = FEED_KIND_ALL;
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, param_cb, &w);
	if (w.error) {
		snprintf(msg, sizeof(msg), "bad parameter %.60s: %s\n", w.key, w.error);
		free(s);
		return reply_text(c, MHD_HTTP_BAD_REQUEST, msg);
	}
	/* A follower holds its connection: past FOLLOW_MAX, scrapes and probes keep theirs. */
	if (s->follow && __atomic_add_fetch(&h->followers, 1, __ATOMIC_RELAXED) > FOLLOW_MAX) {
		__atomic_sub_fetch(&h->followers, 1, __ATOMIC_RELAXED);
		free(s);
		return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
				  "too many following streams: try again later\n");
	}
	if (feed_open(h->o.db_path, &s->reader) < 0) {
		if (s->follow)
			__atomic_sub_fetch(&h->followers, 1, __ATOMIC_RELAXED);
		free(s);
		return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the store cannot be read\n");
	}
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read, s,
					      stream_free);
	if (!r) {
		stream_free(s);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				s->fmt == FEED_NDJSON ? "application/x-ndjson"
						      : "application/x-protobuf");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- the rest ------------------------------------------------------------------------------ */

static const char index_html[] =
	"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>nettrail</title></head><body>\n"
	"<h1>nettrail agent</h1>\n<ul>\n"
	"<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n"
	"<li><a href=\"/v1/events?format=ndjson&amp;limit=100\">/v1/events</a>: the event feed, "
	"varint-delimited protobuf (schema/nettrail.proto), or format=ndjson; since=ID, "
	"follow=1, scope=, kind=connect,dns,rule_change, limit=</li>\n"
	"<li><a href=\"/healthz\">/healthz</a>: the process is up</li>\n"
	"<li><a href=\"/readyz\">/readyz</a>: BPF attached, store writable, DNS proxy serving</li>\n"
	"</ul>\n</body></html>\n";

static enum MHD_Result serve_metrics(struct http *h, struct MHD_Connection *c)
{
	char *text;
	size_t len;

	if (metrics_render(h->o.metrics, &text, &len) < 0)
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
		     MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result serve_ready(struct http *h, struct MHD_Connection *c)
{
	const char *why = "not ready";
	char msg[256];

	if (h->o.ready && h->o.ready(h->o.ctx, &why))
		return reply_text(c, MHD_HTTP_OK, "ready\n");
	snprintf(msg, sizeof(msg), "not ready: %s\n", why);
	return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct http *h = cls;
	static int first;

	/* The first call only announces the headers; answer on the second (no body is read). */
	if (!*con_cls) {
		*con_cls = &first;
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0; /* a body is not wanted: dropped */
		return MHD_YES;
	}
	if (strcmp(url, "/") && strcmp(url, "/metrics") && strcmp(url, "/v1/events") &&
	    strcmp(url, "/healthz") && strcmp(url, "/readyz"))
		return reply_text(c, MHD_HTTP_NOT_FOUND,
				  "not found: see / for the endpoints\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET or HEAD\n");
	if (!strcmp(url, "/metrics"))
		return serve_metrics(h, c);
	if (!strcmp(url, "/v1/events"))
		return serve_events(h, c);
	if (!strcmp(url, "/healthz"))
		return reply_text(c, MHD_HTTP_OK, "ok\n");
	if (!strcmp(url, "/readyz"))
		return serve_ready(h, c);
	return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", index_html,
		     sizeof(index_html) - 1, MHD_RESPMEM_PERSISTENT);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	log_debug("http: %s", line);
}

int http_start(const struct http_opts *o, struct http **ret, const char **why)
{
	struct http *h = calloc(1, sizeof(*h));
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_ERROR_LOG | MHD_USE_POLL;

	*why = "out of memory";
	if (!h)
		return -ENOMEM;
	h->o = *o;
	if (o->addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, h,
				MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&h->o.addr,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_MAX,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)REQUEST_TIMEOUT_S,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)REQUEST_MEMORY,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_END);
	if (!h->d) {
		*why = "failed to listen for HTTP (address in use, or not an address of this host)";
		free(h);
		return -EADDRINUSE;
	}
	*why = NULL;
	*ret = h;
	return 0;
}

void http_stop(struct http *h)
{
	if (!h)
		return;
	h->stopping = 1; /* following streams end within FOLLOW_POLL_MS */
	MHD_stop_daemon(h->d);
	free(h);
}
