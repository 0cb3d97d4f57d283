/* SPDX-License-Identifier: MIT */
#ifndef NT_QUEUE_H
#define NT_QUEUE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "event.h"
#include "store.h"

/*
 * The hand-off from the ring-buffer consumer to the store writer: a bounded single-producer,
 * single-consumer queue, so that a slow disk makes the queue grow, not the ring buffer
 * overflow. A full queue refuses the item and the producer counts it as lost.
 */
enum qitem_type {
	QI_CONN,  /* a connection event */
	QI_PROC,  /* a process seen for the first time: precedes its first QI_CONN */
	QI_STATS, /* counter values to record */
	QI_SYNC,  /* commit now; if .sync_ns, everything before it is queued: say so once committed */
	QI_DNS,   /* a DNS query the proxy answered */
	QI_POLICY, /* the rules from now on: the events after it follow them */
};

/* A process's details; row.cmdline and row.exe point into strings, sized to fit. */
struct proc_item {
	struct process_row row;
	char comm[17];
	char strings[];
};

#define QI_STATS_MAX 24
struct stats_item {
	int64_t time_ns;
	int n;
	const char *names[QI_STATS_MAX]; /* static strings */
	int64_t values[QI_STATS_MAX];
};

struct qitem {
	enum qitem_type type;
	union {
		struct conn_record conn;
		struct proc_item *proc;   /* owned by the item */
		struct stats_item *stats; /* owned by the item */
		struct dns_record *dns;   /* owned by the item */
		struct policy *policy;    /* a reference, owned by the item */
		int64_t sync_ns;
	};
};

struct queue {
	pthread_mutex_t lock;
	pthread_cond_t nonempty;
	struct qitem *items;
	size_t cap, head, len;
	int closed;
};

int queue_init(struct queue *q, size_t cap);
void queue_destroy(struct queue *q);
/* -ENOBUFS when full (the item stays the caller's). */
int queue_push(struct queue *q, const struct qitem *it);
/*
 * Takes up to max items, waiting at most timeout_ms for the first. Returns the count; 0 on
 * timeout; -EPIPE once the queue is closed and empty.
 */
int queue_pop(struct queue *q, struct qitem *out, size_t max, int timeout_ms);
void queue_close(struct queue *q);
size_t queue_len(struct queue *q);

#endif /* NT_QUEUE_H */
