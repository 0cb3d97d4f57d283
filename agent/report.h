/* SPDX-License-Identifier: MIT */
#ifndef NT_REPORT_H
#define NT_REPORT_H

#include <stdint.h>
#include <stdio.h>
#include <sqlite3.h>

struct report_filter {
	const char *scope; /* NULL: every scope */
	int64_t run_id;    /* 0: every run */
	int64_t since_ns;  /* 0: from the start */
	int limit;         /* 0: every destination */
};

enum report_format { REPORT_TABLE, REPORT_CSV, REPORT_JSON };

struct policy;

/*
 * The dependency report: one line per destination (proto, address, port) with the names the
 * scope resolved to it, attempts, distinct processes, verdicts and the command line of the
 * first process that made it; and, by the rules in p (NULL: none), the rule that decides its
 * names ("monitor github.com").
 * Returns the number of destinations (also those past the limit), or -EIO.
 */
int report_deps(sqlite3 *db, const struct report_filter *f, const struct policy *p,
		enum report_format fmt, FILE *out);

/*
 * What the rules in p would stop: per rule (and scope default) that is not allow, the names
 * of the filtered scopes it decides, how many processes looked them up or connected to them,
 * when last and with what command line. Nothing when no rule speaks of them. The number of
 * such rules, or -errno.
 */
int report_rules(sqlite3 *db, const struct report_filter *f, const struct policy *p, FILE *out);

/* How much of a command line tables show, in bytes. */
#define REPORT_CMDLINE_SHOWN 80

/* How many bytes of s to show in at most max, never cutting a UTF-8 sequence. */
int report_cut(const char *s, int max);

/* One CSV field then sep: quoted when it holds a comma, quote or line break (RFC 4180). */
void report_csv_field(FILE *out, const char *s, const char *sep);

/*
 * One line on a run's DNS: how many queries for how many names, and the names that did not
 * resolve (up to 5, with type and rcode). Nothing when the run made no query.
 */
void report_dns_summary(sqlite3 *db, int64_t run_id, FILE *out);

/* Events lost by any source between two times (counter deltas from `stats`). */
int64_t report_lost_between(sqlite3 *db, int64_t from_ns, int64_t to_ns);

#endif /* NT_REPORT_H */
