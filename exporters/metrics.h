/* SPDX-License-Identifier: MIT */
#ifndef NT_METRICS_H
#define NT_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * The agent's Prometheus metrics, kept in memory: scraping never reads SQLite. The writer
 * thread counts what it stores and how long commits take; the rest (losses, the proxy's
 * counters, the ring buffer) is read from the agent at render time through a callback.
 * Counters start at zero with the process, as Prometheus expects of a restarted target.
 *
 * Label values are bounded by the operator (scopes, rule patterns) or by the code (verdicts,
 * protocols, families, rcodes, a fixed list of query types): no pid, address or domain that a
 * program asked for is a label.
 * A family keeps at most METRICS_SERIES_MAX series; what would make more is counted in
 * nettrail_metrics_series_dropped_total instead.
 */
#define METRICS_SERIES_MAX 10000

struct metrics;

/* Values owned by the agent, read when /metrics is rendered. */
struct metrics_snapshot {
	uint64_t lost_ringbuf, lost_queue, lost_store, lost_undecodable, lost_dns_queue;
	uint64_t stored;
	uint64_t ringbuf_used_bytes, ringbuf_size_bytes;
	uint64_t watched_cgroups;
	int dns;                          /* the DNS proxy runs: its families are shown */
	uint64_t dns_received, dns_malformed, dns_unattributed, dns_overload;
	uint64_t dns_upstream_timeout, dns_upstream_error, dns_upstream_mismatch;
	uint64_t dns_unredirected;
	/* the rules (docs/policy.md) */
	uint64_t rules_in_force, rules_version;
	uint64_t dns_blocked;             /* queries answered by the proxy: their name is enforced */
	uint64_t dns_blocked_resolved;    /* of those, asked of the upstream for their addresses */
	uint64_t packets_blocked;         /* egress packets dropped: to an enforced name's address */
	uint64_t block_entries, block_addrs_shared;
	uint64_t block_answers_dropped;   /* answers not remembered for enforcement: tables full */
	uint64_t block_map_errors;        /* kernel map updates that failed */
	uint64_t block_addrs;             /* answer addresses remembered for enforcement */
	uint64_t block_addrs_evicted;     /* of those, forgotten to make room (they refused nothing) */
};

typedef void (*metrics_snapshot_fn)(void *ctx, struct metrics_snapshot *ret);

struct metrics *metrics_new(metrics_snapshot_fn fn, void *ctx);
void metrics_free(struct metrics *m);

/* The writer thread's counts: one call per event, thread-safe. */
void metrics_connect(struct metrics *m, const char *scope, const char *verdict,
		     const char *proto, const char *family);
void metrics_dns(struct metrics *m, const char *scope, const char *verdict, const char *rcode,
		 const char *qtype, const char *transport);
/*
 * An attempt a rule decided: rule is its pattern as written ("=github.com") or "default" for a
 * scope default; kind "connect" or "dns".
 */
void metrics_rule_match(struct metrics *m, const char *scope, const char *rule, const char *kind,
			const char *verdict);
void metrics_dns_upstream_seconds(struct metrics *m, double seconds);
void metrics_commit_seconds(struct metrics *m, double seconds);
/* A run started, or ended: status "started", "succeeded" or "failed". */
void metrics_run(struct metrics *m, const char *scope, const char *status);

/* The query types that are label values as they are; any other is "other". */
const char *metrics_qtype_label(const char *qtype);

/* Renders every family in the Prometheus text format 0.0.4 into a heap buffer. */
int metrics_render(struct metrics *m, char **ret, size_t *ret_len);

#endif /* NT_METRICS_H */
