// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "metrics.h"

#define BUCKETS_MAX 16
#define SERIES_HASH 1024

/* One labelled counter: its labels as they are rendered, name="value",... */
struct series {
	struct series *next;
	uint64_t value;
	char labels[];
};

struct family {
	struct series *hash[SERIES_HASH];
	unsigned n;
};

struct histogram {
	const double *bounds; /* upper bounds, ascending; +Inf implied */
	int n_bounds;
	uint64_t counts[BUCKETS_MAX]; /* per bound, not cumulative */
	uint64_t inf, count;
	double sum;
};

static const double commit_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					0.1, 0.25, 0.5, 1, 2.5 };
static const double dns_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
				     0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };

struct metrics {
	pthread_mutex_t lock;
	struct family connect, dns, runs, rule_matches;
	struct histogram commit, dns_upstream;
	uint64_t series_dropped;
	metrics_snapshot_fn snapshot;
	void *ctx;
	double start_time; /* Unix seconds */
};

/* ---- labelled counters --------------------------------------------------------------------- */

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* name="value" with the value escaped as the text format wants: \\, \" and \n. */
static size_t label_put(char *out, size_t cap, size_t o, const char *name, const char *value)
{
	o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%s%s=\"", o ? "," : "", name);
	for (const char *v = value ? value : ""; *v && o + 3 < cap; v++) {
		if (*v == '\\' || *v == '"') {
			out[o++] = '\\';
			out[o++] = *v;
		} else if (*v == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *v;
		}
	}
	if (o + 2 < cap) {
		out[o++] = '"';
		out[o] = '\0';
	}
	return o;
}

/* Adds 1 to the series of these labels; the caller holds the lock. */
static void family_inc(struct metrics *m, struct family *f, const char *labels)
{
	uint32_t h = hash_str(labels) % SERIES_HASH;
	struct series *s;
	size_t len;

	for (s = f->hash[h]; s; s = s->next) {
		if (strcmp(s->labels, labels) == 0) {
			s->value++;
			return;
		}
	}
	if (f->n >= METRICS_SERIES_MAX) {
		m->series_dropped++;
		return;
	}
	len = strlen(labels) + 1;
	s = malloc(sizeof(*s) + len);
	if (!s) {
		m->series_dropped++;
		return;
	}
	memcpy(s->labels, labels, len);
	s->value = 1;
	s->next = f->hash[h];
	f->hash[h] = s;
	f->n++;
}

static void family_free(struct family *f)
{
	for (int i = 0; i < SERIES_HASH; i++) {
		while (f->hash[i]) {
			struct series *s = f->hash[i];

			f->hash[i] = s->next;
			free(s);
		}
	}
}

/* Adds 1 to the series of these label names and values (NULL-terminated names). */
static void count(struct metrics *m, struct family *f, const char *const names[],
		  const char *const values[])
{
	char labels[512];
	size_t o = 0;

	if (!m)
		return;
	for (int i = 0; names[i]; i++)
		o = label_put(labels, sizeof(labels), o, names[i], values[i]);
	pthread_mutex_lock(&m->lock);
	family_inc(m, f, labels);
	pthread_mutex_unlock(&m->lock);
}

void metrics_connect(struct metrics *m, const char *scope, const char *verdict,
		     const char *proto, const char *family)
{
	static const char *const names[] = { "scope", "verdict", "proto", "family", NULL };

	count(m, m ? &m->connect : NULL, names,
	      (const char *const[]){ scope, verdict, proto, family });
}

const char *metrics_qtype_label(const char *qtype)
{
	static const char *const known[] = { "A", "AAAA", "CNAME", "MX", "TXT", "PTR", "SRV", "NS",
					     "SOA", "HTTPS", "SVCB", "ANY", "CAA", "DS", "DNSKEY" };

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (qtype && strcmp(qtype, known[i]) == 0)
			return known[i];
	return "other";
}

void metrics_dns(struct metrics *m, const char *scope, const char *verdict, const char *rcode,
		 const char *qtype, const char *transport)
{
	static const char *const names[] = { "scope", "verdict", "rcode", "qtype", "transport", NULL };

	count(m, m ? &m->dns : NULL, names,
	      (const char *const[]){ scope, verdict, rcode ? rcode : "none",
				     metrics_qtype_label(qtype), transport });
}

void metrics_rule_match(struct metrics *m, const char *scope, const char *rule, const char *kind,
			const char *verdict)
{
	static const char *const names[] = { "scope", "rule", "kind", "verdict", NULL };

	count(m, m ? &m->rule_matches : NULL, names,
	      (const char *const[]){ scope, rule, kind, verdict });
}

void metrics_run(struct metrics *m, const char *scope, const char *status)
{
	static const char *const names[] = { "scope", "status", NULL };

	count(m, m ? &m->runs : NULL, names, (const char *const[]){ scope, status });
}

/* ---- histograms ---------------------------------------------------------------------------- */

static void histogram_observe(struct metrics *m, struct histogram *h, double v)
{
	int i;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < h->n_bounds && v > h->bounds[i]; i++)
		;
	if (i < h->n_bounds)
		h->counts[i]++;
	else
		h->inf++;
	h->count++;
	h->sum += v;
	pthread_mutex_unlock(&m->lock);
}

void metrics_commit_seconds(struct metrics *m, double seconds)
{
	if (m)
		histogram_observe(m, &m->commit, seconds);
}

void metrics_dns_upstream_seconds(struct metrics *m, double seconds)
{
	if (m)
		histogram_observe(m, &m->dns_upstream, seconds);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

/* This process's start, from /proc: field 22 of stat (ticks after boot) and btime. */
static double process_start_time(void)
{
	char buf[4096], *p;
	unsigned long long start = 0, btime = 0;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f = fopen("/proc/self/stat", "re");
	size_t n;

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* comm may hold spaces: fields are counted after it */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
			 "%*d %*d %llu", &start) != 1)
		return 0;
	f = fopen("/proc/stat", "re");
	if (!f)
		return 0;
	while (fgets(buf, sizeof(buf), f))
		if (sscanf(buf, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	return hz > 0 ? (double)btime + (double)start / (double)hz : 0;
}

struct metrics *metrics_new(metrics_snapshot_fn fn, void *ctx)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	m->commit.bounds = commit_bounds;
	m->commit.n_bounds = (int)(sizeof(commit_bounds) / sizeof(commit_bounds[0]));
	m->dns_upstream.bounds = dns_bounds;
	m->dns_upstream.n_bounds = (int)(sizeof(dns_bounds) / sizeof(dns_bounds[0]));
	m->snapshot = fn;
	m->ctx = ctx;
	m->start_time = process_start_time();
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	family_free(&m->connect);
	family_free(&m->dns);
	family_free(&m->rule_matches);
	family_free(&m->runs);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* ---- rendering ----------------------------------------------------------------------------- */

struct out {
	char *buf;
	size_t len, cap;
	int failed;
};

__attribute__((format(printf, 2, 3))) static void out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = 1;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		char *b = realloc(o->buf, o->cap * 2 + (size_t)n);

		if (!b) {
			o->failed = 1;
			return;
		}
		o->buf = b;
		o->cap = o->cap * 2 + (size_t)n;
	}
}

static void header(struct out *o, const char *name, const char *type, const char *help)
{
	out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void simple(struct out *o, const char *name, const char *type, const char *help,
		   uint64_t value)
{
	header(o, name, type, help);
	out_printf(o, "%s %llu\n", name, (unsigned long long)value);
}

static int series_cmp(const void *a, const void *b)
{
	return strcmp((*(struct series *const *)a)->labels, (*(struct series *const *)b)->labels);
}

/* A labelled family, its series sorted by labels (a stable scrape is easier to read). */
static void family_render(struct out *o, struct family *f, const char *name, const char *help)
{
	struct series **all = f->n ? malloc(f->n * sizeof(*all)) : NULL;
	unsigned n = 0;

	header(o, name, "counter", help);
	if (f->n && !all) {
		o->failed = 1;
		return;
	}
	for (int i = 0; i < SERIES_HASH; i++)
		for (struct series *s = f->hash[i]; s; s = s->next)
			all[n++] = s;
	if (n > 1) /* qsort with no array is undefined, even for no elements */
		qsort(all, n, sizeof(*all), series_cmp);
	for (unsigned i = 0; i < n; i++)
		out_printf(o, "%s{%s} %llu\n", name, all[i]->labels, (unsigned long long)all[i]->value);
	free(all);
}

static void histogram_render(struct out *o, const struct histogram *h, const char *name,
			     const char *help)
{
	uint64_t cum = 0;

	header(o, name, "histogram", help);
	for (int i = 0; i < h->n_bounds; i++) {
		cum += h->counts[i];
		out_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
	}
	out_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)(cum + h->inf));
	out_printf(o, "%s_sum %.9g\n", name, h->sum);
	out_printf(o, "%s_count %llu\n", name, (unsigned long long)h->count);
}

static void lost_render(struct out *o, const struct metrics_snapshot *s)
{
	static const char *const reasons[] = { "ringbuf_full", "queue_full", "store_error",
					       "undecodable", "dns_queue_full" };
	const uint64_t values[] = { s->lost_ringbuf, s->lost_queue, s->lost_store,
				    s->lost_undecodable, s->lost_dns_queue };

	header(o, "nettrail_events_lost_total", "counter",
	       "Events (connections, DNS queries) that could not be stored, by reason.");
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		out_printf(o, "nettrail_events_lost_total{reason=\"%s\"} %llu\n", reasons[i],
			   (unsigned long long)values[i]);
}

static void dns_render(struct out *o, const struct metrics_snapshot *s)
{
	simple(o, "nettrail_dns_received_total", "counter",
	       "DNS messages the proxy received, well-formed or not.", s->dns_received);
	simple(o, "nettrail_dns_malformed_total", "counter",
	       "DNS messages the proxy could not parse: answered FORMERR or dropped.",
	       s->dns_malformed);
	simple(o, "nettrail_dns_unattributed_total", "counter",
	       "DNS queries whose sending process was not known.", s->dns_unattributed);
	simple(o, "nettrail_dns_overload_total", "counter",
	       "DNS queries answered SERVFAIL because too many were in flight.", s->dns_overload);
	simple(o, "nettrail_dns_unredirected_total", "counter",
	       "DNS sockets of watched processes left to their resolver (kernel memory).",
	       s->dns_unredirected);
	header(o, "nettrail_dns_upstream_errors_total", "counter",
	       "Upstream failures of the DNS proxy, by reason; the client got SERVFAIL "
	       "(unmatched answers are dropped).");
	out_printf(o, "nettrail_dns_upstream_errors_total{reason=\"timeout\"} %llu\n",
		   (unsigned long long)s->dns_upstream_timeout);
	out_printf(o, "nettrail_dns_upstream_errors_total{reason=\"error\"} %llu\n",
		   (unsigned long long)s->dns_upstream_error);
	out_printf(o, "nettrail_dns_upstream_errors_total{reason=\"unmatched_answer\"} %llu\n",
		   (unsigned long long)s->dns_upstream_mismatch);
}

static void policy_render(struct out *o, const struct metrics_snapshot *s)
{
	simple(o, "nettrail_rules", "gauge", "Rules in force (nettrail policy ls).", s->rules_in_force);
	simple(o, "nettrail_rules_version", "gauge",
	       "Changes of the rules the agent has applied (agent_state.rules_version).",
	       s->rules_version);
	simple(o, "nettrail_dns_blocked_total", "counter",
	       "DNS queries answered by the proxy because a rule enforces their name, or a name of "
	       "their answer's CNAME chain.", s->dns_blocked);
	simple(o, "nettrail_dns_blocked_resolved_total", "counter",
	       "Refused lookups whose name the proxy asked the upstream for itself, to refuse the "
	       "answer's addresses too.", s->dns_blocked_resolved);
	simple(o, "nettrail_packets_blocked_total", "counter",
	       "Packets of watched sockets dropped at egress: to an enforced name's address.",
	       s->packets_blocked);
	simple(o, "nettrail_block_entries", "gauge",
	       "Entries of the kernel's address table: blocked addresses and per-scope overrides.",
	       s->block_entries);
	simple(o, "nettrail_block_addresses", "gauge",
	       "Addresses of DNS answers remembered for address enforcement (--block-addresses).",
	       s->block_addrs);
	simple(o, "nettrail_block_addresses_evicted_total", "counter",
	       "Remembered addresses that refused nothing, forgotten to make room for new answers "
	       "(--shared-address block).",
	       s->block_addrs_evicted);
	simple(o, "nettrail_block_addresses_shared", "gauge",
	       "Addresses an enforced name and a reachable name both resolved to (a CDN's).",
	       s->block_addrs_shared);
	simple(o, "nettrail_block_answers_dropped_total", "counter",
	       "DNS answers not remembered for address enforcement: the tables were full.",
	       s->block_answers_dropped);
	simple(o, "nettrail_block_update_errors_total", "counter",
	       "Updates of the kernel's address table that failed.", s->block_map_errors);
}

static void process_render(struct out *o, const struct metrics *m)
{
	struct rusage ru;
	struct rlimit rl;
	long page = sysconf(_SC_PAGESIZE);
	unsigned long long vsz = 0, rss = 0;
	uint64_t fds = 0;
	FILE *f = fopen("/proc/self/statm", "re");
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (f) {
		if (fscanf(f, "%llu %llu", &vsz, &rss) != 2)
			vsz = rss = 0;
		fclose(f);
	}
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			fds++;
	if (d) {
		closedir(d);
		fds--; /* the directory's own descriptor */
	}
	getrusage(RUSAGE_SELF, &ru);
	header(o, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
	out_printf(o, "process_cpu_seconds_total %.6f\n",
		   (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		   (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	header(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	out_printf(o, "process_resident_memory_bytes %llu\n", rss * (unsigned long long)page);
	header(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	out_printf(o, "process_virtual_memory_bytes %llu\n", vsz * (unsigned long long)page);
	simple(o, "process_open_fds", "gauge", "Number of open file descriptors.", fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		simple(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
		       (uint64_t)rl.rlim_cur);
	header(o, "process_start_time_seconds", "gauge",
	       "Start time of the process since the Unix epoch, in seconds.");
	out_printf(o, "process_start_time_seconds %.2f\n", m->start_time);
}

int metrics_render(struct metrics *m, char **ret, size_t *ret_len)
{
	struct metrics_snapshot s = { 0 };
	struct out o = { .cap = 16384 };

	o.buf = malloc(o.cap);
	if (!o.buf)
		return -ENOMEM;
	if (m->snapshot)
		m->snapshot(m->ctx, &s);
	header(&o, "nettrail_build_info", "gauge", "nettrail's version; always 1.");
	out_printf(&o, "nettrail_build_info{version=\"%s\"} 1\n", NT_VERSION);
	simple(&o, "nettrail_events_stored_total", "counter",
	       "Events (connections, DNS queries) committed to the database.", s.stored);
	lost_render(&o, &s);
	simple(&o, "nettrail_ringbuf_used_bytes", "gauge",
	       "Bytes of the BPF ring buffer not yet read by the agent.", s.ringbuf_used_bytes);
	simple(&o, "nettrail_ringbuf_size_bytes", "gauge", "Size of the BPF ring buffer in bytes.",
	       s.ringbuf_size_bytes);
	simple(&o, "nettrail_watched_cgroups", "gauge",
	       "Cgroups the agent attached to (each with its descendants).", s.watched_cgroups);
	pthread_mutex_lock(&m->lock);
	family_render(&o, &m->connect, "nettrail_connect_attempts_total",
		      "Connect attempts of watched processes, by scope, verdict, protocol and family.");
	if (s.dns)
		family_render(&o, &m->dns, "nettrail_dns_queries_total",
			      "DNS queries of watched processes, by scope, verdict, answer code, query "
			      "type and transport.");
	family_render(&o, &m->rule_matches, "nettrail_rule_matches_total",
		      "Connect attempts and DNS queries a rule (or a scope default) decided, by "
		      "scope, rule, kind and verdict.");
	family_render(&o, &m->runs, "nettrail_runs_total",
		      "Runs (nettrail run) recorded in the agent's database, by scope and status: "
		      "started, then succeeded or failed.");
	histogram_render(&o, &m->commit, "nettrail_store_commit_duration_seconds",
			 "Time to commit one batch of events to SQLite.");
	if (s.dns)
		histogram_render(&o, &m->dns_upstream, "nettrail_dns_upstream_duration_seconds",
				 "Time from forwarding a DNS query to its upstream answer.");
	simple(&o, "nettrail_metrics_series_dropped_total", "counter",
	       "Increments not shown because a family reached its series limit.",
	       m->series_dropped);
	pthread_mutex_unlock(&m->lock);
	if (s.dns)
		dns_render(&o, &s);
	policy_render(&o, &s);
	process_render(&o, m);
	if (o.failed) {
		free(o.buf);
		return -ENOMEM;
	}
	*ret = o.buf;
	*ret_len = o.len;
	return 0;
}
