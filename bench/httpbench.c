// SPDX-License-Identifier: MIT
/*
 * httpbench: latency of a /metrics scrape of the agent's HTTP server (exporters/http.c) when
 * the metrics hold SCOPES scopes, each with 12 connect series (3 verdicts x 2 protocols x
 * 2 families), SERIES DNS series and RULES rules that matched (a lookup and a connect series
 * each, with names as long as real ones), against /healthz on the same server in the same run
 * (the baseline: HTTP and the server's thread, without rendering). Loopback only.
 *
 *   httpbench [-s SCOPES] [-r SERIES] [-m RULES] [-n REQUESTS] PORT
 *
 * Prints p50 and p99 of each, their ratio, and the size of a scrape.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "http.h"
#include "metrics.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void fill(struct metrics *m, int scopes, int series, int rules)
{
	static const char *const verdicts[] = { "allowed", "would_block", "blocked" };
	static const char *const rcodes[] = { "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "none" };
	static const char *const qtypes[] = { "A", "AAAA", "CNAME", "MX", "TXT", "SRV", "HTTPS", "PTR",
					      "NS", "SOA" };
	char scope[32], rule[64];

	for (int s = 0; s < scopes; s++) {
		snprintf(scope, sizeof(scope), "scope-%03d", s);
		for (int v = 0; v < 3; v++) {
			for (int i = 0; i < 4; i++)
				metrics_connect(m, scope, verdicts[v], i & 1 ? "udp" : "tcp",
						i & 2 ? "ipv6" : "ipv4");
		}
		for (int i = 0; i < series; i++)
			metrics_dns(m, scope, verdicts[i % 3], rcodes[(i / 3) % 5],
				    qtypes[(i / 15) % 10], i / 150 % 2 ? "tcp" : "udp");
		for (int i = 0; i < rules; i++) {
			snprintf(rule, sizeof(rule), "%sservice-%03d.internal.example.com",
				 i % 4 ? "" : "=", i);
			metrics_rule_match(m, scope, rule, "dns", verdicts[i % 3]);
			metrics_rule_match(m, scope, rule, "connect", verdicts[i % 3]);
		}
	}
}

/* One GET over a new connection; its duration in ms, the body's length in *bytes. */
static double get(uint16_t port, const char *path, size_t *bytes)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char req[128], buf[65536];
	double t0 = now_ms();
	size_t total = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		perror("httpbench: connect");
		exit(1);
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
		 path);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		perror("httpbench: write");
		exit(1);
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += (size_t)n;
	close(fd);
	if (strncmp(buf, "HTTP/1.1 200", 12) != 0 && total < 12) {
		fprintf(stderr, "httpbench: %s failed\n", path);
		exit(1);
	}
	*bytes = total;
	return now_ms() - t0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
	return v[(int)((n - 1) * p)];
}

int main(int argc, char **argv)
{
	int scopes = 100, series = 50, rules = 10, n = 1000, c;
	struct http_opts o = { .db_path = "/nonexistent" };
	struct sockaddr_in *sin = (struct sockaddr_in *)&o.addr;
	double *scrape, *health;
	size_t bytes = 0, hb;
	struct http *h;
	const char *why;
	uint16_t port;

	while ((c = getopt(argc, argv, "s:r:m:n:")) != -1) {
		switch (c) {
		case 's': scopes = atoi(optarg); break;
		case 'r': series = atoi(optarg); break;
		case 'm': rules = atoi(optarg); break;
		case 'n': n = atoi(optarg); break;
		default: return 2;
		}
	}
	if (optind >= argc || n < 2)
		return 2;
	port = (uint16_t)atoi(argv[optind]);
	o.metrics = metrics_new(NULL, NULL);
	fill(o.metrics, scopes, series, rules);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	o.addr_len = sizeof(*sin);
	if (http_start(&o, &h, &why) < 0) {
		fprintf(stderr, "httpbench: %s\n", why);
		return 1;
	}
	scrape = calloc((size_t)n, sizeof(*scrape));
	health = calloc((size_t)n, sizeof(*health));
	for (int i = 0; i < 20; i++) /* warm up */
		get(port, "/metrics", &bytes);
	for (int i = 0; i < n; i++) { /* interleaved: the same noise for both */
		scrape[i] = get(port, "/metrics", &bytes);
		health[i] = get(port, "/healthz", &hb);
	}
	qsort(scrape, (size_t)n, sizeof(*scrape), cmp);
	qsort(health, (size_t)n, sizeof(*health), cmp);
	printf("  %d scopes x (12 connect + %d DNS + %d rule series) = %d series, %zu bytes per "
	       "scrape\n", scopes, series, 2 * rules, scopes * (12 + series + 2 * rules), bytes);
	printf("  /metrics: p50 %.2f ms  p99 %.2f ms  (target: p99 under 10 ms)\n",
	       pct(scrape, n, 0.5), pct(scrape, n, 0.99));
	printf("  /healthz: p50 %.2f ms  p99 %.2f ms  (baseline: the server without rendering)\n",
	       pct(health, n, 0.5), pct(health, n, 0.99));
	printf("  ratio /metrics to /healthz: p50 %.1f  p99 %.1f  over %d requests each\n",
	       pct(scrape, n, 0.5) / pct(health, n, 0.5), pct(scrape, n, 0.99) / pct(health, n, 0.99),
	       n);
	http_stop(h);
	metrics_free(o.metrics);
	free(scrape);
	free(health);
	return 0;
}
