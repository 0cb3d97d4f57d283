// SPDX-License-Identifier: MIT
/*
 * feedbench: events/s of the event feed's encoder (exporters/feed.c), reading a database
 * the way /v1/events does, in batches resumed after the last id.
 *
 *   feedbench [-n EVENTS] [-b BATCH] [-o PREFIX] DB
 *
 * A DB that does not exist is filled first through the store API with EVENTS events
 * (default 1,000,000): 60% connections (IPv4, IPv6), 40% DNS queries with a CNAME and two
 * addresses, from 1,000 processes with 60-byte command lines. Then the whole feed is read
 * once as protobuf and once as NDJSON, BATCH events a call (default 1,000), timed with the
 * output buffer reused, as a server sending each batch would. -o writes each stream to
 * PREFIX.pb and PREFIX.ndjson.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "dns.h"
#include "event.h"
#include "feed.h"
#include "store.h"

#define NPROC 1000
#define T0 1700000000000000000LL

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int put_processes(struct store *s, int64_t *ids)
{
	char cmd[96];
	int r = 0;

	for (int i = 0; i < NPROC && r == 0; i++) {
		struct process_row p = {
			.pid = 1000 + (uint32_t)i, .start_ns = 5, .ppid = 1, .uid = 1000, .gid = 1000,
			.comm = "curl", .exe = "/usr/bin/curl", .cmdline = cmd, .cmdline_from_proc = 1,
			.cgroup_id = 77, .scope = "deploy", .first_seen_ns = T0,
		};

		snprintf(cmd, sizeof(cmd), "curl -fsSL https://mirror-%04d.example.com/pool/main/pkg.deb", i);
		r = store_put_process(s, &p, &ids[i]);
	}
	return r;
}

static int put_event(struct store *s, long i, const int64_t *procs)
{
	int64_t pid = procs[i % NPROC];

	if (i % 5 < 3) {
		struct conn_record c = {
			.time_ns = T0 + i * 1000, .cgroup_id = 77, .pid = 1000 + (uint32_t)(i % NPROC),
			.tid = 1000 + (uint32_t)(i % NPROC), .port = 443, .proto = IPPROTO_TCP,
			.kind = NT_EV_CONNECT, .family = i % 2 ? AF_INET : AF_INET6,
		};

		inet_pton(c.family, c.family == AF_INET ? "192.0.2.1" : "2001:db8::1", c.addr);
		c.addr[c.family == AF_INET ? 3 : 15] = (uint8_t)i;
		return store_insert_connection(s, &c, pid, "deploy", 0, "mirror.example.com");
	} else {
		struct dns_record_rr rrs[3] = {
			{ .name = "mirror.example.com", .target = "cdn.example.net", .type = DNS_T_CNAME,
			  .ttl = 300 },
			{ .name = "cdn.example.net", .type = DNS_T_A, .family = AF_INET, .ttl = 60,
			  .addr = { 192, 0, 2, 10 } },
			{ .name = "cdn.example.net", .type = DNS_T_A, .family = AF_INET, .ttl = 60,
			  .addr = { 192, 0, 2, 11 } },
		};
		struct dns_record d = {
			.time_ns = T0 + i * 1000, .attributed = 1,
			.origin = { .cgroup_id = 77, .tid = 1000 + (uint32_t)(i % NPROC) },
			.qname = "mirror.example.com", .qtype = DNS_T_A, .rcode = DNS_R_NOERROR,
			.proto = IPPROTO_UDP, .resolver = "127.0.0.53:53", .upstream = "192.0.2.53:53",
			.latency_ns = 250000, .answers = 3, .n_rrs = 3, .rrs = rrs,
		};

		return store_insert_dns(s, &d, pid, "deploy", 0);
	}
}

static int fill(const char *path, long n)
{
	int64_t procs[NPROC];
	struct store *s;
	double t = now_s();
	int r;

	r = store_open(path, 0, &s);
	if (r < 0) {
		fprintf(stderr, "feedbench: failed to open %s: %s\n", path, store_strerror(r));
		return r;
	}
	r = put_processes(s, procs);
	for (long i = 0; i < n && r == 0; i += 10000) {
		r = store_begin(s);
		for (long j = i; j < i + 10000 && j < n && r == 0; j++)
			r = put_event(s, j, procs);
		r = r == 0 ? store_commit(s) : r;
	}
	if (r < 0)
		fprintf(stderr, "feedbench: failed to fill %s: %s\n", path, store_errmsg(s));
	else
		fprintf(stderr, "filled %s with %ld events in %.1f s\n", path, n, now_s() - t);
	store_close(s);
	return r;
}

/* Reads the whole feed in batches; events/s on stdout, the stream to out if given. */
static int run(struct feed_reader *fr, enum feed_format fmt, size_t batch, FILE *out)
{
	struct feed_buf b = { 0 };
	int64_t last = 0;
	long events = 0;
	size_t bytes = 0;
	double t = now_s();
	int k;

	do {
		b.len = 0;
		k = feed_read(fr, NULL, last, batch, fmt, &b, &last);
		if (k > 0) {
			events += k;
			bytes += b.len;
			if (out && fwrite(b.data, 1, b.len, out) != b.len)
				k = -EIO;
		}
	} while (k > 0);
	t = now_s() - t;
	feed_buf_free(&b);
	if (k < 0) {
		fprintf(stderr, "feedbench: failed to read the feed: %s\n", strerror(-k));
		return k;
	}
	printf("%-8s %ld events in %.3f s: %.0f events/s, %.1f MB/s, %.0f bytes/event\n",
	       fmt == FEED_PROTOBUF ? "protobuf" : "ndjson", events, t, events / t, bytes / t / 1e6,
	       events ? (double)bytes / events : 0.0);
	return 0;
}

int main(int argc, char **argv)
{
	long n = 1000000;
	size_t batch = 1000;
	const char *prefix = NULL;
	struct feed_reader *fr;
	int opt, r = 0;

	while ((opt = getopt(argc, argv, "n:b:o:")) != -1) {
		char *end = NULL;

		errno = 0;
		if (opt == 'n')
			n = strtol(optarg, &end, 10);
		else if (opt == 'b')
			batch = strtoul(optarg, &end, 10);
		else if (opt == 'o')
			prefix = optarg;
		else
			return 2;
		if (end && (errno || *end || n <= 0 || batch == 0 || batch > INT_MAX)) {
			fprintf(stderr, "feedbench: bad value for -%c\n", opt);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: feedbench [-n EVENTS] [-b BATCH] [-o PREFIX] DB\n");
		return 2;
	}
	if (access(argv[optind], F_OK) != 0 && fill(argv[optind], n) < 0)
		return 1;
	r = feed_open(argv[optind], &fr);
	if (r < 0) {
		fprintf(stderr, "feedbench: failed to open %s: %s\n", argv[optind], strerror(-r));
		return 1;
	}
	for (int fmt = FEED_PROTOBUF; fmt <= FEED_NDJSON && r == 0; fmt++) {
		char path[4096];
		FILE *out = NULL;

		if (prefix) {
			snprintf(path, sizeof(path), "%s.%s", prefix, fmt == FEED_PROTOBUF ? "pb" : "ndjson");
			out = fopen(path, "we");
			if (!out) {
				fprintf(stderr, "feedbench: failed to create %s: %m\n", path);
				r = -errno;
				break;
			}
		}
		r = run(fr, fmt, batch, out);
		if (out && fclose(out) != 0)
			r = -EIO;
	}
	feed_close(fr);
	return r < 0;
}
