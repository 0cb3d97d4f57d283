/* SPDX-License-Identifier: MIT */
#ifndef NT_TRACKER_H
#define NT_TRACKER_H

#include <stddef.h>
#include <stdint.h>
#include "dnsproxy.h"

/*
 * The pipeline shared by `nettrail agent` and the embedded agent of `nettrail run`:
 * BPF hooks on the watched cgroups -> ring buffer -> decode and enrich (one epoll loop in the
 * caller's thread) -> bounded queue -> store writer thread (batched SQLite transactions).
 */

#define WATCH_MAX 16

struct watch {
	char path[4096];
	char scope[65];
	int runs_root;   /* <cgroup2>/nettrail: scope and run come from the path and the runs table */
};

struct tracker_opts {
	const char *db_path;
	const struct watch *watches;
	int n_watches;
	size_t ringbuf_size;
	size_t queue_cap;
	const char *source;  /* names this tracker's rows in `stats` */
	int publish_sync;    /* keep agent_state.synced_ns current (for `run` with an agent) */
	const uint64_t *excluded; /* see struct loader_opts */
	int n_excluded;
	int dns;                  /* redirect the watched cgroups' DNS to a proxy */
	struct dnsproxy_opts dns_opts;
	int64_t dns_grace_ns;     /* a resolved name names its address this long past the TTL */
	int allow_resolver_sockets;
	int shared_block;         /* refuse an address an enforced and a reachable name share */
	int enforce_loopback;     /* refuse loopback addresses of enforced names too */
	size_t block_addrs;       /* answer addresses remembered for enforcement */
	struct metrics *metrics;  /* counted into when set (the agent's /metrics) */
};

struct tracker_counts {
	uint64_t ringbuf_full;  /* lost in BPF: ring buffer full */
	uint64_t queue_full;    /* lost in the agent: writer queue full */
	uint64_t store_failed;  /* lost in the agent: a transaction failed */
	uint64_t bad;           /* samples that did not decode */
	uint64_t stored;        /* connection rows committed */
	uint64_t argv_fault;    /* events whose argv could not be read in BPF */
	uint64_t dns_queue_full;   /* DNS queries answered but lost: writer queue full */
	uint64_t dns_unredirected; /* DNS sockets left to their resolver (BPF out of memory) */
	uint64_t egress_blocked;   /* packets dropped: to an enforced address (already connected) */
	struct dnsproxy_counts dns;
};

struct tracker;

/* Opens the store, loads and attaches. On failure *why may hold one sentence for the user. */
int tracker_start(const struct tracker_opts *o, struct tracker **ret, const char **why);

/* Adds an fd to the loop; cb returns 1 to end tracker_run, 0 to go on, <0 on error. */
typedef int (*tracker_fd_cb)(struct tracker *t, int fd, void *ctx);
int tracker_add_fd(struct tracker *t, int fd, tracker_fd_cb cb, void *ctx);

/* Records that cgroup again: the embedded run it was left to has ended. */
int tracker_unexclude(struct tracker *t, uint64_t cgroup_id);

/* The DNS proxy's port, 0 without one; whether it is on ::1 too; unix resolver hook present. */
uint16_t tracker_dns_port(struct tracker *t);
int tracker_dns_v6(struct tracker *t);
int tracker_has_unix_hook(struct tracker *t);

/* One line on where the watched cgroups' DNS goes, and what is not covered here. */
void tracker_log_dns(struct tracker *t);

/* Runs the event loop until a callback ends it. */
int tracker_run(struct tracker *t);

/* Detaches, drains the ring buffer, commits everything, stops the writer, frees. */
int tracker_finish(struct tracker *t, struct tracker_counts *ret);

void tracker_counts(struct tracker *t, struct tracker_counts *ret);

/* What /metrics shows of the agent; callable from any thread. */
struct metrics_snapshot;
void tracker_metrics_snapshot(struct tracker *t, struct metrics_snapshot *ret);

/* 1 if events are being recorded: attached, the last commit succeeded, DNS proxy serving. */
int tracker_ready(struct tracker *t, const char **why);

#endif /* NT_TRACKER_H */
