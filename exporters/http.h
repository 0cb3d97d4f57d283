/* SPDX-License-Identifier: MIT */
#ifndef NT_HTTP_H
#define NT_HTTP_H

#include <sys/socket.h>
#include "metrics.h"

/*
 * The agent's HTTP endpoints (libmicrohttpd, its own threads): /metrics, /v1/events, /healthz,
 * /readyz and an index at /. Bounded: HTTP_CONN_MAX connections, a request idle timeout, and
 * a request header limit; what does not fit is refused, and the agent keeps serving.
 */
#define HTTP_DEFAULT_LISTEN "127.0.0.1:9874"
#define HTTP_CONN_MAX 64

struct http;

struct http_opts {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	const char *db_path;          /* the feed reads the store, never the agent's memory */
	struct metrics *metrics;
	/* 1 if the agent is ready; else 0 and *why says what is not. */
	int (*ready)(void *ctx, const char **why);
	void *ctx;
};

int http_start(const struct http_opts *o, struct http **ret, const char **why);
void http_stop(struct http *h);

/* "ADDR:PORT" or "[ADDR6]:PORT" into a socket address; -EINVAL. */
int http_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len);
/* 1 if the address is a loopback one (127.0.0.0/8, ::1). */
int http_is_loopback(const struct sockaddr_storage *ss);

#endif /* NT_HTTP_H */
