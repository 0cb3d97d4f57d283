/* SPDX-License-Identifier: MIT */
#ifndef NT_FEED_H
#define NT_FEED_H

#include <stddef.h>
#include <stdint.h>

/*
 * The event feed (/v1/events): the store's connections, DNS queries and rule changes in
 * event-id order, encoded as schema/nettrail.proto's Event. A consumer resumes after the last
 * id it holds, so one that reconnects loses nothing the store still has.
 *
 * A reader has its own SQLite connection and scratch memory: one thread at a time uses it
 * (a server with several threads opens one per thread).
 *
 * Functions return 0 (or a count) or -errno: -EBUSY when the database stayed locked,
 * -ENOMEM, -EIO for another SQLite error, -ENOMEDIUM for a database whose schema predates
 * the feed (open it once with the agent), -EINVAL for bad arguments.
 */

enum feed_format {
	FEED_PROTOBUF, /* each Event preceded by its length as a varint (writeDelimitedTo) */
	FEED_NDJSON,   /* one Event per line in proto3's JSON mapping */
};

enum feed_kind {
	FEED_KIND_CONNECT = 1 << 0,
	FEED_KIND_DNS = 1 << 1,
	FEED_KIND_RULE_CHANGE = 1 << 2, /* of a rule or a scope default */
	FEED_KIND_ALL = 7,
};

struct feed_filter {
	/* NULL: all. A rule change for every scope (scope '') passes any scope filter. */
	const char *scope;
	unsigned kinds;    /* FEED_KIND_* mask; 0 means all, as FEED_KIND_ALL */
};

/* A growable output buffer: start zeroed, append with feed_read, release with feed_buf_free. */
struct feed_buf {
	uint8_t *data;
	size_t len, cap;
};

struct feed_reader;

/* Opens the database read-only (its own sqlite3 connection, WAL reader; busy timeout 5 s). */
int feed_open(const char *db_path, struct feed_reader **ret);
void feed_close(struct feed_reader *r);

/*
 * Appends to out the events with id > after_id that pass the filter (NULL: all), oldest
 * first, at most max of them, each as one varint-length-delimited Event or one JSON object
 * per line. Sets *last_id to the id of the last event appended (unchanged if none). Returns
 * the number of events appended, or -errno with out and *last_id as they were. Reads in one
 * short read transaction so a long feed never holds up the writer's checkpoints: bound max.
 */
int feed_read(struct feed_reader *r, const struct feed_filter *f, int64_t after_id, size_t max,
	      enum feed_format fmt, struct feed_buf *out, int64_t *last_id);

/* The highest event id committed so far (agent_state.event_seq), or 0. */
int feed_last_id(struct feed_reader *r, int64_t *ret);

void feed_buf_free(struct feed_buf *b);

#endif /* NT_FEED_H */
