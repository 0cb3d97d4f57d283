// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "addr.h"
#include "blocks.h"
#include "cgroup.h"
#include "dns.h"
#include "dnsproxy.h"
#include "domains.h"
#include "event.h"
#include "keymap.h"
#include "loader.h"
#include "metrics.h"
#include "log.h"
#include "policy.h"
#include "procfs.h"
#include "queue.h"
#include "rules.h"
#include "runtime.h"
#include "store.h"
#include "tracker.h"
#include "util.h"

#define TICK_MS 100           /* commit interval, and how often the loop looks around */
#define BATCH_MAX 1000        /* events per transaction at most */
#define CGMAP_CAP 4096        /* cgroups remembered by the writer */
#define SCOPES_CAP 1024       /* cgroups whose scope the main thread remembers */
#define SCOPE_IDX_MAX 1023    /* scopes with rules of their own that the kernel can tell apart */
#define FD_CB_MAX 8
#define FINISH_SETTLE_MS 1000 /* how long queries in flight at the end may wait for their answer */
/* The domains cache under no scope's name ('*' is not valid in one): any scope's answers. */
#define ANY_SCOPE "*"
#define STATS_BUSY_INTERVAL_NS (60 * 1000000000LL)

struct cg_entry {
	uint64_t id;
	int64_t run_id;
	char scope[65];
};

struct scope_entry {
	uint64_t id;
	char scope[65];
};

struct fd_cb {
	int fd;
	tracker_fd_cb cb;
	void *ctx;
};

struct tracker {
	struct tracker_opts o;
	struct loader *loader;
	struct dnsproxy *dns;
	struct ring_buffer *rb;
	struct store *store; /* the writer thread's */
	struct queue q;
	pthread_t writer;
	int writer_started;
	int epfd, timerfd;
	struct fd_cb fds[FD_CB_MAX];
	int n_fds;
	int64_t boot_to_wall_ns;
	unsigned ticks;
	unsigned queued_since_tick;
	struct keymap seen;  /* main thread: processes already sent to the writer */
	/* main thread: the rules, as the DNS proxy applies them */
	struct store *rules_store; /* read-only: polled for rule changes */
	struct rules_cursor rules_cur;
	struct policy *policy;
	int policy_unsent;         /* the writer has not been handed t->policy yet */
	struct scope_entry *scopes;
	/* main thread: address enforcement */
	struct blocks *blocks;
	char *scope_names[SCOPE_IDX_MAX]; /* scope i + 1 in the kernel: never reused */
	char *scope_dirs[SCOPE_IDX_MAX];  /* <runs root>/<scope>, held while the tracker lives */
	int scope_fds[SCOPE_IDX_MAX];
	size_t n_scope_names;
	uint32_t scope_levels;
	char cg_mount[4096];
	int policy_active;
	int blocks_preloaded;
	unsigned rules_failures;   /* loads failed in a row */
	uint64_t bpf_egress_blocked;
	/* main thread writes, the HTTP thread reads (relaxed 64-bit atomics): for /metrics */
	struct blocks_counts blocks_seen;
	uint64_t rules_in_force, rules_version_seen;
	/* writer thread only */
	struct keymap proc_ids;
	struct cg_entry *cgmap;
	struct domains domains;
	struct policy *wpolicy;    /* the rules for the events being written */
	int64_t stats_last[QI_STATS_MAX];
	int64_t stats_written_ns[QI_STATS_MAX]; /* 0: never; reset when a transaction is lost */
	int reset_seen;                          /* writer -> main: forget which processes were sent */
	time_t failure_logged_s;
	int64_t pruned_seen;     /* agent_state.pruned_ns last seen (0: none); -1 before a look */
	struct runs_cursor runs;   /* what metrics counted of the runs table */
	int64_t runs_checked;      /* second of the last look */
	int store_failing;       /* the store refused the last write (cleared by a commit) */
	int64_t pruned_checked;  /* tenth of a second of the last look */
	/* counters: main thread writes the first four, the writer the last two */
	uint64_t queue_full, bad, bpf_ringbuf_full, bpf_argv_fault, bpf_dns_unredirected;
	uint64_t dns_queue_full;
	struct dnsproxy_counts dns_final; /* the proxy's counts once it is closed */
	uint64_t stored, store_failed;
};

static int64_t wall_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t atomic_get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void atomic_add(uint64_t *p, uint64_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static struct proc_key conn_proc_key(const struct conn_record *c)
{
	return (struct proc_key){ .start_ns = c->start_ns, .pid = c->pid, .exec_id = c->exec_id };
}

/* ---- writer thread: cgroups --------------------------------------------------------------- */

struct cg_search {
	uint64_t id;
	char *found; /* heap path, when found */
	unsigned visited;
};

/* Depth-first search below dir for the cgroup directory whose inode is s->id. */
static void cg_search_dir(const char *dir, int depth, struct cg_search *s)
{
	DIR *d;
	struct dirent *de;

	if (depth > 32 || s->found || s->visited > 100000)
		return;
	d = opendir(dir);
	if (!d)
		return;
	while (!s->found && (de = readdir(d)) != NULL) {
		char sub[4096];

		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		s->visited++;
		if (snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name) >= (int)sizeof(sub))
			continue;
		if (de->d_ino == s->id) {
			s->found = strdup(sub);
			break;
		}
		cg_search_dir(sub, depth + 1, s);
	}
	closedir(d);
}

/* The run owning path: the nearest ancestor (up to the watch root) that is a run's cgroup. */
static int cg_find_run_up(struct tracker *t, const struct watch *w, char *path,
			  struct cg_entry *ret)
{
	size_t root_len = strlen(w->path);

	while (strlen(path) >= root_len) {
		uint64_t id;
		char *slash;

		if (cgroup_id(path, &id) == 0 &&
		    store_find_run(t->store, id, &ret->run_id, ret->scope, sizeof(ret->scope)) == 1)
			return 1;
		slash = strrchr(path, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	return 0;
}

static void cg_scope_from_path(const struct watch *w, const char *path, char *scope, size_t len)
{
	const char *rel = path + strlen(w->path);
	size_t n;

	if (!w->runs_root) {
		snprintf(scope, len, "%s", w->scope);
		return;
	}
	/* <runs root>/<scope>/<run>/...: a process outside any run still has its scope. */
	while (*rel == '/')
		rel++;
	n = strcspn(rel, "/");
	if (n == 0 || n >= len)
		snprintf(scope, len, "%s", "unscoped");
	else
		snprintf(scope, len, "%.*s", (int)n, rel);
}

/* The watch and path of a cgroup below the watches: the path on the heap, or NULL if gone. */
static char *cg_find(struct tracker *t, uint64_t id, const struct watch **ret_w)
{
	char *path = NULL;

	for (int i = 0; i < t->o.n_watches && !path; i++) {
		struct cg_search s = { .id = id };
		uint64_t root_id;

		*ret_w = &t->o.watches[i];
		if (cgroup_id((*ret_w)->path, &root_id) == 0 && root_id == id)
			path = strdup((*ret_w)->path);
		else {
			cg_search_dir((*ret_w)->path, 0, &s);
			path = s.found;
		}
	}
	return path;
}

static void cg_resolve(struct tracker *t, uint64_t id, struct cg_entry *ret)
{
	_cleanup_free_ char *path = NULL;
	const struct watch *w = NULL;

	ret->id = id;
	ret->run_id = 0;
	if (store_find_run(t->store, id, &ret->run_id, ret->scope, sizeof(ret->scope)) == 1) {
		store_put_cgroup(t->store, id, NULL, ret->scope, ret->run_id, wall_now_ns());
		return;
	}
	path = cg_find(t, id, &w);
	if (path) {
		char *up = strdup(path);

		if (!up || !cg_find_run_up(t, w, up, ret))
			cg_scope_from_path(w, path, ret->scope, sizeof(ret->scope));
		free(up);
	} else {
		/*
		 * Gone before we looked. With one watch it was below that one, and belongs to
		 * that watch's run if it is one (an embedded run watches its own cgroup).
		 */
		uint64_t root_id;

		w = &t->o.watches[0];
		snprintf(ret->scope, sizeof(ret->scope), "%s",
			 t->o.n_watches == 1 && !w->runs_root ? w->scope : "unknown");
		if (t->o.n_watches == 1 && cgroup_id(w->path, &root_id) == 0)
			store_find_run(t->store, root_id, &ret->run_id, ret->scope, sizeof(ret->scope));
		log_debug("cgroup %llu vanished before it could be named", (unsigned long long)id);
	}
	store_put_cgroup(t->store, id, path, ret->scope, ret->run_id, wall_now_ns());
}

static const struct cg_entry *cg_lookup(struct tracker *t, uint64_t id)
{
	size_t i = (size_t)(id * 0x9E3779B97F4A7C15ULL >> 52) & (CGMAP_CAP - 1);

	for (size_t probes = 0; probes < CGMAP_CAP; probes++, i = (i + 1) & (CGMAP_CAP - 1)) {
		if (t->cgmap[i].id == id)
			return &t->cgmap[i];
		if (t->cgmap[i].id == 0)
			break;
	}
	if (t->cgmap[i].id != 0) /* full: start over */
		memset(t->cgmap, 0, CGMAP_CAP * sizeof(*t->cgmap));
	cg_resolve(t, id, &t->cgmap[i]);
	return &t->cgmap[i];
}

/* ---- writer thread: rows ------------------------------------------------------------------ */

static int writer_put_proc(struct tracker *t, struct proc_item *p)
{
	const struct cg_entry *cg = cg_lookup(t, p->row.cgroup_id);
	int64_t id;
	int r;

	p->row.scope = cg->scope;
	p->row.run_id = cg->run_id;
	r = store_put_process(t->store, &p->row, &id);
	if (r == 0) {
		struct proc_key k = { p->row.start_ns, p->row.pid, p->row.exec_id };

		keymap_put(&t->proc_ids, &k, id);
	}
	return r;
}

/* The process row of an event; a minimal one if its QI_PROC item was forgotten or refused. */
static int writer_process_id(struct tracker *t, const struct conn_record *c, int64_t *ret)
{
	struct process_row row = {
		.pid = c->pid, .start_ns = c->start_ns, .exec_id = c->exec_id, .ppid = c->ppid,
		.uid = c->uid, .gid = c->gid, .cgroup_id = c->cgroup_id, .first_seen_ns = c->time_ns,
	};
	struct proc_key k = conn_proc_key(c);
	const struct cg_entry *cg;
	int r;

	if (keymap_get(&t->proc_ids, &k, ret))
		return 0;
	r = store_find_process(t->store, c->pid, c->start_ns, c->exec_id, ret);
	if (r < 0)
		return r;
	if (r == 0) {
		cg = cg_lookup(t, c->cgroup_id);
		row.scope = cg->scope;
		row.run_id = cg->run_id;
		r = store_put_process(t->store, &row, ret);
		if (r < 0)
			return r;
	}
	keymap_put(&t->proc_ids, &k, *ret);
	return 0;
}

/*
 * What the rules say of a connection, by the name its scope resolved the address to: the
 * kernel refuses only addresses of enforced names (its verdict and rule id stand); one that
 * a rule or default would block but that went through is would_block.
 */
static void writer_conn_verdict(struct tracker *t, struct conn_record *c, const char *scope,
				const char *domain, const char *chain, struct policy_decision *d)
{
	if (c->family == AF_UNIX)
		return;
	if (c->verdict == NT_VERDICT_BLOCKED) {
		if (c->rule_id == NT_RULE_DEFAULT) { /* a scope default decided */
			c->rule_id = 0;
			c->rule = "default";
		} else if (policy_rule_by_id(t->wpolicy, c->rule_id, d)) {
			c->rule = d->rule;
		}
		return;
	}
	if (!domain)
		return; /* rules speak of names: an address nobody resolved has none */
	/* As its lookup was: by the name with its answer's CNAME chain. */
	policy_decide_chain(t->wpolicy, scope, domain, chain, d);
	if (!d->rule[0])
		return;
	c->verdict = d->mode == POLICY_ALLOW ? NT_VERDICT_ALLOWED : NT_VERDICT_WOULD_BLOCK;
	c->rule_id = d->rule_id;
	c->rule = d->rule;
}

static int writer_put_conn(struct tracker *t, struct conn_record *c)
{
	const struct cg_entry *cg;
	const char *domain = NULL, *chain = NULL;
	struct policy_decision d;
	uint8_t key[16];
	int64_t pid_row;
	int r;

	r = writer_process_id(t, c, &pid_row);
	if (r < 0)
		return r;
	cg = cg_lookup(t, c->cgroup_id);
	if (addr_key(c->family, c->addr, key) == 0) {
		domain = domains_get(&t->domains, cg->scope, key, c->time_ns);
		/* Refused for a name another scope resolved: that name is why. */
		if (!domain && c->verdict == NT_VERDICT_BLOCKED)
			domain = domains_get(&t->domains, ANY_SCOPE, key, c->time_ns);
		chain = domain ? domains_chain(domain) : NULL;
	}
	writer_conn_verdict(t, c, cg->scope, domain, chain, &d);
	if (t->o.metrics) {
		char pbuf[16];

		metrics_connect(t->o.metrics, cg->scope, event_verdict_name(c->verdict),
				c->family == AF_UNIX ? "unix" : addr_proto_name(c->proto, pbuf, sizeof(pbuf)),
				c->family == AF_INET ? "ipv4" : c->family == AF_INET6 ? "ipv6" : "unix");
		if (c->rule)
			metrics_rule_match(t->o.metrics, cg->scope, c->rule, "connect",
					   event_verdict_name(c->verdict));
	}
	return store_insert_connection(t->store, c, pid_row, cg->scope, cg->run_id, domain);
}

static void dns_metrics(struct tracker *t, const struct dns_record *d, const char *scope)
{
	char tbuf[16], rbuf[16], pbuf[16];

	metrics_dns(t->o.metrics, scope, event_verdict_name(d->verdict),
		    d->rcode >= 0 ? dns_rcode_name((unsigned)d->rcode, rbuf) : NULL,
		    dns_type_name(d->qtype, tbuf), addr_proto_name(d->proto, pbuf, sizeof(pbuf)));
	if (d->rule[0])
		metrics_rule_match(t->o.metrics, scope, d->rule, "dns", event_verdict_name(d->verdict));
	if (d->latency_ns >= 0)
		metrics_dns_upstream_seconds(t->o.metrics, (double)d->latency_ns / 1e9);
}

/*
 * The scope of a query whose sender is not known: the only one there is (a single watch that
 * is not the runs root), else "unknown". The rules decide such a query by the same scope.
 */
static const char *unattributed_scope(const struct tracker *t)
{
	return t->o.n_watches == 1 && !t->o.watches[0].runs_root ? t->o.watches[0].scope :
								     "unknown";
}

/*
 * A query, and what its answer tells about the connections that follow: each address names
 * the queried name (not the CNAME target: the name the process asked for is the one an
 * operator knows) for the TTL and the grace period.
 */
static int writer_put_dns(struct tracker *t, const struct dns_record *d)
{
	const struct cg_entry *cg = NULL;
	int64_t pid_row = 0;
	int r;

	/*
	 * A refused name's addresses name a refused connect (any scope's, the fallback for those)
	 * but not the scope's own connects: the scope never got them, and an allowed name it did
	 * resolve to a shared address keeps naming it.
	 */
	if (d->learned) {
		for (unsigned i = 0; i < d->n_rrs; i++) {
			const struct dns_record_rr *rr = &d->rrs[i];
			int64_t expires = d->time_ns + (int64_t)rr->ttl * 1000000000LL + t->o.dns_grace_ns;
			uint8_t key[16];

			if (rr->target || addr_key(rr->family, rr->addr, key) < 0)
				continue;
			domains_put_chain(&t->domains, ANY_SCOPE, key, d->qname, d->chain, expires);
		}
		return 0;
	}
	if (d->attributed) {
		struct conn_record c = {
			.pid = d->origin.pid, .tid = d->origin.tid, .start_ns = d->origin.start_ns,
			.exec_id = d->origin.exec_id, .cgroup_id = d->origin.cgroup_id,
			.time_ns = d->time_ns,
		};

		r = writer_process_id(t, &c, &pid_row);
		if (r < 0)
			return r;
		cg = cg_lookup(t, d->origin.cgroup_id);
	}
	r = store_insert_dns(t->store, d, pid_row, cg ? cg->scope : unattributed_scope(t),
			     cg ? cg->run_id : 0);
	if (t->o.metrics)
		dns_metrics(t, d, cg ? cg->scope : unattributed_scope(t));
	if (r < 0 || !cg)
		return r;
	for (unsigned i = 0; i < d->n_rrs; i++) {
		const struct dns_record_rr *rr = &d->rrs[i];
		int64_t expires = d->time_ns + (int64_t)rr->ttl * 1000000000LL + t->o.dns_grace_ns;
		uint8_t key[16];

		if (rr->target || addr_key(rr->family, rr->addr, key) < 0)
			continue;
		domains_put_chain(&t->domains, cg->scope, key, d->qname, d->chain, expires);
		domains_put_chain(&t->domains, ANY_SCOPE, key, d->qname, d->chain, expires);
	}
	return 0;
}

/*
 * A counter gets a row when it changes (and once at start and at the end), not every tick:
 * an idle agent must not grow the database. A loss counter is written at the first tick it
 * changes, so that a report sees it; the others, busy by nature, at most once a minute.
 * Returns -1 if a row could not be written.
 */
static int stat_due(struct tracker *t, const struct stats_item *st, int i)
{
	int is_loss = !strncmp(st->names[i], "events_lost_", strlen("events_lost_"));

	if (!t->stats_written_ns[i])
		return 1;
	if (t->stats_last[i] == st->values[i])
		return 0;
	return is_loss || st->time_ns - t->stats_written_ns[i] >= STATS_BUSY_INTERVAL_NS;
}

/* Whether any counter of st is due: an idle agent must not even open a transaction. */
static int stats_due(struct tracker *t, const struct stats_item *st)
{
	for (int i = 0; i < st->n; i++)
		if (stat_due(t, st, i))
			return 1;
	return 0;
}

static int writer_put_stats(struct tracker *t, const struct stats_item *st, int force)
{
	int r = 0;

	for (int i = 0; i < st->n; i++) {
		if (!force && !stat_due(t, st, i))
			continue;
		if (store_add_stat(t->store, st->time_ns, t->o.source, st->names[i],
				   st->values[i]) < 0) {
			r = -1;
			continue;
		}
		t->stats_last[i] = st->values[i];
		t->stats_written_ns[i] = st->time_ns;
	}
	return r;
}

struct writer_tx {
	int open;
	unsigned events;     /* connection rows in the open transaction */
	int64_t sync_ns;     /* to publish once committed; 0: none */
	struct timespec opened;
};

/* A failing disk must not flood the log: one line per 10 s, with what was lost since. */
static void writer_log_failure(struct tracker *t, const char *what)
{
	struct timespec now;

	__atomic_store_n(&t->store_failing, 1, __ATOMIC_RELAXED); /* until a commit succeeds */
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (t->failure_logged_s && now.tv_sec - t->failure_logged_s < 10)
		return;
	t->failure_logged_s = now.tv_sec;
	log_err("failed to %s: %s (%llu events lost to store errors so far)", what,
		store_errmsg(t->store), (unsigned long long)atomic_get(&t->store_failed));
}

/*
 * The open transaction is gone (a failed commit, or SQLite rolled it back after an error):
 * its events are counted lost, and the ids cached since it began may name rows that no
 * longer exist, so the caches start over.
 */
/*
 * Rows the writer knows by id may be gone: it forgets them, writes the counters again, and
 * has the main thread send process details again.
 */
static void writer_forget(struct tracker *t)
{
	keymap_clear(&t->proc_ids);
	memset(t->cgmap, 0, CGMAP_CAP * sizeof(*t->cgmap));
	memset(t->stats_written_ns, 0, sizeof(t->stats_written_ns));
	__atomic_store_n(&t->reset_seen, 1, __ATOMIC_RELEASE);
}

/* `nettrail prune` deleted rows (agent_state.pruned_ns changed): forget them, at most 10/s. */
static void writer_check_pruned(struct tracker *t)
{
	struct timespec now;
	int64_t pruned = 0;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec * 10 + now.tv_nsec / 100000000 == t->pruned_checked)
		return;
	t->pruned_checked = now.tv_sec * 10 + now.tv_nsec / 100000000;
	if (store_get_state(t->store, "pruned_ns", &pruned) < 0)
		return;
	if (t->pruned_seen >= 0 && pruned != t->pruned_seen)
		writer_forget(t);
	t->pruned_seen = pruned; /* the first look only learns where things stand */
}

static void count_run(void *ctx, const char *scope, const char *status)
{
	struct tracker *t = ctx;

	metrics_run(t->o.metrics, scope, status);
}

/*
 * Runs started and ended in the database since the last look, once a second: the runs are
 * written by `nettrail run` itself, which the agent only learns of through the store.
 */
static void writer_count_runs(struct tracker *t)
{
	struct timespec now;

	if (!t->o.metrics)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec == t->runs_checked)
		return;
	t->runs_checked = now.tv_sec;
	store_runs_since(t->store, &t->runs, count_run, t);
}

static void writer_abort(struct tracker *t, struct writer_tx *tx)
{
	store_rollback(t->store);
	atomic_add(&t->store_failed, tx->events);
	writer_forget(t);
	tx->open = 0;
	tx->events = 0;
	tx->sync_ns = 0;
}

static void writer_commit(struct tracker *t, struct writer_tx *tx)
{
	struct timespec t0, t1;
	int r;

	if (!tx->open)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = store_commit(t->store);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	__atomic_store_n(&t->store_failing, r < 0, __ATOMIC_RELAXED);
	if (r < 0) {
		writer_log_failure(t, "commit events");
		writer_abort(t, tx);
		return;
	}
	metrics_commit_seconds(t->o.metrics, (double)(t1.tv_sec - t0.tv_sec) +
						(double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	atomic_add(&t->stored, tx->events);
	tx->open = 0;
	tx->events = 0;
	if (tx->sync_ns && t->o.publish_sync)
		store_set_state(t->store, "synced_ns", tx->sync_ns);
	tx->sync_ns = 0;
}

static void writer_apply(struct tracker *t, struct writer_tx *tx, struct qitem *it)
{
	int r = 0;

	if (it->type == QI_POLICY) {
		policy_unref(t->wpolicy);
		t->wpolicy = it->policy; /* the item's reference is the writer's now */
		return;
	}
	if (it->type == QI_STATS && !stats_due(t, it->stats))
		goto out_free;
	if (it->type == QI_DNS && it->dns->learned) { /* names for the cache, nothing stored */
		writer_put_dns(t, it->dns);
		goto out_free;
	}
	if (!tx->open && it->type != QI_SYNC) {
		if (store_begin(t->store) < 0) {
			if (it->type == QI_CONN || it->type == QI_DNS)
				atomic_add(&t->store_failed, 1);
			writer_log_failure(t, "begin a transaction");
			goto out_free;
		}
		tx->open = 1;
		clock_gettime(CLOCK_MONOTONIC, &tx->opened);
	}
	switch (it->type) {
	case QI_CONN:
		r = writer_put_conn(t, &it->conn);
		if (r < 0) {
			atomic_add(&t->store_failed, 1);
			writer_log_failure(t, "store an event");
		} else
			tx->events++;
		break;
	case QI_PROC:
		r = writer_put_proc(t, it->proc);
		if (r < 0)
			writer_log_failure(t, "store a process");
		break;
	case QI_STATS:
		writer_put_stats(t, it->stats, 0);
		break;
	case QI_POLICY:
		break;
	case QI_SYNC:
		if (it->sync_ns)
			tx->sync_ns = it->sync_ns;
		break;
	case QI_DNS:
		r = writer_put_dns(t, it->dns);
		if (r < 0) {
			atomic_add(&t->store_failed, 1);
			writer_log_failure(t, "store a DNS query");
		} else
			tx->events++;
		break;
	}
	if (r < 0 && !store_in_transaction(t->store))
		writer_abort(t, tx);
out_free:
	if (it->type == QI_PROC)
		free(it->proc);
	else if (it->type == QI_STATS)
		free(it->stats);
	else if (it->type == QI_DNS)
		free(it->dns);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000L + (now.tv_nsec - t0->tv_nsec) / 1000000L;
}

static void *writer_main(void *arg)
{
	struct tracker *t = arg;
	struct writer_tx tx = { 0 };
	struct qitem batch[256];
	int n;

	while ((n = queue_pop(&t->q, batch, ARRAY_SIZE(batch), TICK_MS)) != -EPIPE) {
		int sync = 0;

		if (!tx.open) {
			writer_check_pruned(t);
			writer_count_runs(t);
		}
		for (int i = 0; i < n; i++) {
			sync |= batch[i].type == QI_SYNC;
			writer_apply(t, &tx, &batch[i]);
		}
		if (sync && !tx.open && tx.sync_ns && t->o.publish_sync) {
			store_set_state(t->store, "synced_ns", tx.sync_ns);
			tx.sync_ns = 0;
		}
		/*
		 * The write lock is held only while there is work: with the queue empty the batch
		 * is committed, so that `nettrail policy` or a starting run gets its turn (SQLite's
		 * busy wait is polling, and would miss a lock let go for an instant every 100 ms).
		 */
		if (tx.open && (sync || tx.events >= BATCH_MAX || ms_since(&tx.opened) >= TICK_MS ||
				queue_len(&t->q) == 0))
			writer_commit(t, &tx);
	}
	writer_commit(t, &tx);
	return NULL;
}

/* ---- main thread: ring buffer ------------------------------------------------------------- */

/*
 * The command line from the argv captured in BPF; argv that filled the capture buffer was
 * probably cut, which the text then says with a trailing "...".
 */
static void argv_text(const struct nt_event *e, char *out, size_t len)
{
	size_t n = procfs_argv_to_text(e->argv, e->argv_len, out, len);

	if (e->argv_len == NT_ARGV_LEN && e->argv[NT_ARGV_LEN - 1] != '\0' && n + 4 < len)
		memcpy(out + n, " ...", 5);
}

/* The details of a process seen for the first time, in one allocation sized to them. */
static struct proc_item *proc_item_new(const struct nt_event *e, const struct conn_record *c)
{
	struct proc_extra *x = malloc(sizeof(*x));
	const char *cmdline, *exe = "";
	size_t cl, el;
	struct proc_item *p;
	int from_proc;

	if (!x)
		return NULL;
	/* /proc adds the full command line and exe, if this pid is still that process. */
	from_proc = procfs_read_process((pid_t)c->pid, c->start_ns, e->argv, e->argv_len, x) == 0;
	if (!from_proc)
		argv_text(e, x->cmdline, sizeof(x->cmdline));
	else
		exe = x->exe;
	cmdline = x->cmdline;
	cl = strlen(cmdline) + 1;
	el = strlen(exe) + 1;
	p = calloc(1, sizeof(*p) + cl + el);
	if (p) {
		memcpy(p->comm, e->comm, NT_COMM_LEN);
		memcpy(p->strings, cmdline, cl);
		memcpy(p->strings + cl, exe, el);
		p->row = (struct process_row){
			.pid = c->pid, .start_ns = c->start_ns, .exec_id = c->exec_id,
			.ppid = c->ppid, .uid = c->uid, .gid = c->gid, .comm = p->comm,
			.cmdline = p->strings, .exe = el > 1 ? p->strings + cl : NULL,
			.cmdline_from_proc = from_proc, .cgroup_id = c->cgroup_id,
			.first_seen_ns = c->time_ns,
		};
	}
	free(x);
	return p;
}

/*
 * The writer lost process rows (a failed transaction, a prune): send every process's details
 * again, and have BPF capture argv again at each program's next event.
 */
static void tracker_check_forget(struct tracker *t)
{
	if (!__atomic_exchange_n(&t->reset_seen, 0, __ATOMIC_ACQ_REL))
		return;
	keymap_clear(&t->seen);
	loader_forget_procs(t->loader);
}

/*
 * The hook sees a connect to a resolver's path before the kernel looks the path up: glibc
 * tries nscd's socket on every host without nscd. Only a socket that exists, in the process's
 * own mount namespace, is a way around the proxy worth an event.
 */
static int resolver_socket_exists(const struct conn_record *c)
{
	const char *path = event_resolver_path(c->addr[0]);
	char in_ns[4200];
	struct stat st;

	if (!path)
		return 0;
	snprintf(in_ns, sizeof(in_ns), "/proc/%u/root%s", c->pid, path);
	if (stat(in_ns, &st) == 0)
		return S_ISSOCK(st.st_mode);
	if (errno != ENOENT && errno != ENOTDIR)
		return 1; /* cannot tell: keep it */
	snprintf(in_ns, sizeof(in_ns), "/proc/%u", c->pid);
	if (access(in_ns, F_OK) == 0)
		return 0; /* the process is there, the socket is not */
	return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static int on_sample(void *ctx, void *data, size_t len)
{
	struct tracker *t = ctx;
	const struct nt_event *e = data;
	struct qitem it = { .type = QI_CONN };
	struct proc_key k;
	int64_t dummy;

	if (event_decode(data, len, t->boot_to_wall_ns, &it.conn) < 0) {
		t->bad++;
		return 0;
	}
	k = conn_proc_key(&it.conn);
	tracker_check_forget(t);
	if (!keymap_get(&t->seen, &k, &dummy)) {
		struct qitem pit = { .type = QI_PROC, .proc = proc_item_new(e, &it.conn) };

		if (pit.proc && queue_push(&t->q, &pit) == 0)
			keymap_put(&t->seen, &k, 1);
		else
			free(pit.proc); /* the writer will store what the event itself carries */
	}
	/* Dropped only now: the process's argv came with this event, its later ones lack it. */
	if (it.conn.kind == NT_EV_UNIX && !resolver_socket_exists(&it.conn))
		return 0;
	if (queue_push(&t->q, &it) < 0)
		t->queue_full++;
	else
		t->queued_since_tick++;
	return 0;
}

/* ---- main thread: rules -------------------------------------------------------------------- */

/* The scope of a watched cgroup, from its path: what the rules of a DNS query go by. */
static const char *tracker_scope_of(struct tracker *t, uint64_t id)
{
	size_t i = (size_t)(id * 0x9E3779B97F4A7C15ULL >> 54) & (SCOPES_CAP - 1);
	_cleanup_free_ char *path = NULL;
	const struct watch *w = NULL;
	struct scope_entry *e;

	for (size_t probes = 0; probes < SCOPES_CAP; probes++, i = (i + 1) & (SCOPES_CAP - 1)) {
		if (t->scopes[i].id == id)
			return t->scopes[i].scope;
		if (t->scopes[i].id == 0)
			break;
	}
	if (t->scopes[i].id != 0) /* full: start over */
		memset(t->scopes, 0, SCOPES_CAP * sizeof(*t->scopes));
	e = &t->scopes[i];
	e->id = id;
	path = cg_find(t, id, &w);
	if (path)
		cg_scope_from_path(w, path, e->scope, sizeof(e->scope));
	else /* gone already: with one watch that is not the runs root, its scope */
		snprintf(e->scope, sizeof(e->scope), "%s",
			 t->o.n_watches == 1 && !t->o.watches[0].runs_root ? t->o.watches[0].scope :
									       "unknown");
	return e->scope;
}

static int64_t boot_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int blocks_put(void *ctx, const struct nt_block_key *k, const struct nt_block_val *v)
{
	return loader_block_put(ctx, k, v);
}

static int blocks_del(void *ctx, const struct nt_block_key *k)
{
	return loader_block_del(ctx, k);
}

/* The hooks look up addresses only while there is something to refuse. */
static void tracker_blocks_sync(struct tracker *t)
{
	struct blocks_counts c;

	blocks_counts(t->blocks, &c);
	__atomic_store_n(&t->blocks_seen.entries, c.entries, __ATOMIC_RELAXED);
	__atomic_store_n(&t->blocks_seen.blocked, c.blocked, __ATOMIC_RELAXED);
	__atomic_store_n(&t->blocks_seen.shared, c.shared, __ATOMIC_RELAXED);
	__atomic_store_n(&t->blocks_seen.dropped, c.dropped, __ATOMIC_RELAXED);
	__atomic_store_n(&t->blocks_seen.errors, c.errors, __ATOMIC_RELAXED);
	__atomic_store_n(&t->blocks_seen.addrs, c.addrs, __ATOMIC_RELAXED);
	__atomic_store_n(&t->blocks_seen.evicted, c.evicted, __ATOMIC_RELAXED);
	if ((c.entries > 0) == t->policy_active)
		return;
	t->policy_active = c.entries > 0;
	loader_policy_set(t->loader, t->policy_active, t->scope_levels);
}

/* The depth of a cgroup below the cgroup2 mount, as bpf_get_current_ancestor_cgroup_id counts. */
static int cgroup_depth(const struct tracker *t, const char *path)
{
	const char *rel = path + strlen(t->cg_mount);
	int depth = 0;

	if (strncmp(path, t->cg_mount, strlen(t->cg_mount)))
		return -1;
	for (; *rel; rel++)
		depth += rel[0] == '/' && rel[1] && rel[1] != '/';
	return depth;
}

static void scope_cgroup_put(struct tracker *t, const char *path, uint32_t idx)
{
	uint64_t id;
	int depth = cgroup_depth(t, path);

	if (depth <= 0 || depth >= NT_SCOPE_LEVELS || cgroup_id(path, &id) < 0 ||
	    loader_scope_put(t->loader, id, idx) < 0) {
		log_warn("failed to name cgroup %s for its scope's rules: addresses are enforced "
			 "there by the rules of every scope only", path);
		return;
	}
	t->scope_levels |= 1u << depth;
}

/*
 * The kernel tells a scope with rules of its own by its cgroups: the scope's directory under
 * the runs root (made and held here, so that it keeps its id), and the watches of that scope.
 */
static void tracker_scope_add(struct tracker *t, const char *scope)
{
	size_t i = t->n_scope_names;
	uint32_t idx = (uint32_t)i + 1;

	t->scope_names[i] = strdup(scope);
	t->scope_fds[i] = -1;
	if (!t->scope_names[i])
		return;
	t->n_scope_names++;
	for (int w = 0; w < t->o.n_watches; w++) {
		const struct watch *wa = &t->o.watches[w];
		char dir[4200];

		if (!wa->runs_root) {
			if (!strcmp(wa->scope, scope))
				scope_cgroup_put(t, wa->path, idx);
			continue;
		}
		snprintf(dir, sizeof(dir), "%s/%s", wa->path, scope);
		t->scope_fds[i] = cgroup_dir_hold(dir, NULL);
		if (t->scope_fds[i] < 0) {
			log_warn("failed to create and hold cgroup %s: %s", dir, strerror(-t->scope_fds[i]));
			continue;
		}
		t->scope_dirs[i] = strdup(dir);
		scope_cgroup_put(t, dir, idx);
	}
	loader_policy_set(t->loader, t->policy_active, t->scope_levels);
}

/*
 * Whether an answer's address (a key: IPv6, or ::ffff:IPv4) may be refused. Never the
 * unspecified or a multicast address; a loopback address only with --enforce-loopback: a
 * sinkhole's 127.0.0.1 for an enforced name must not cut the scope off from its own host's
 * services (the name itself is still refused by DNS).
 */
static int addr_enforceable(const struct tracker *t, const uint8_t k[16])
{
	static const uint8_t v4_prefix[12] = { [10] = 0xff, [11] = 0xff };
	static const uint8_t zero[16];

	if (!memcmp(k, v4_prefix, 12)) {
		if (k[12] == 0 || (k[12] & 0xf0) == 0xe0) /* 0.0.0.0/8, 224.0.0.0/4 */
			return 0;
		return k[12] != 127 || t->o.enforce_loopback;
	}
	if (!memcmp(k, zero, 15) && k[15] <= 1) /* :: and ::1 */
		return k[15] == 1 && t->o.enforce_loopback;
	return k[0] != 0xff; /* ff00::/8 */
}

static void block_preload_one(void *ctx, const char *scope, const char *qname,
			      const char *targets, const uint8_t key[16], int64_t expires_ns)
{
	struct tracker *t = ctx;
	int64_t boot = expires_ns + t->o.dns_grace_ns - t->boot_to_wall_ns;
	char *chain;

	if (!qname || boot <= boot_now_ns() || !addr_enforceable(t, key))
		return;
	chain = policy_chain_from_text(targets);
	blocks_learn(t->blocks, qname, chain, key, boot);
	free(chain);
}

/*
 * The addresses of the rules from now on: every scope with rules of its own gets its index,
 * and what the store says was resolved lately (by this agent or any run) is decided again.
 */
static void tracker_blocks_reload(struct tracker *t)
{
	const char *in_policy[SCOPE_IDX_MAX], *active[SCOPE_IDX_MAX] = { 0 };
	size_t n = policy_scopes(t->policy, in_policy, SCOPE_IDX_MAX);
	int64_t since = wall_now_ns() - 86400 * 1000000000LL - t->o.dns_grace_ns;

	if (n > SCOPE_IDX_MAX) {
		log_warn("%zu scopes have rules of their own; addresses are enforced by scope for "
			 "the first %d only", n, SCOPE_IDX_MAX);
		n = SCOPE_IDX_MAX;
	}
	for (size_t i = 0; i < n; i++) {
		size_t j = 0;

		while (j < t->n_scope_names && strcmp(t->scope_names[j], in_policy[i]))
			j++;
		if (j == t->n_scope_names && j < SCOPE_IDX_MAX)
			tracker_scope_add(t, in_policy[i]);
		if (j < t->n_scope_names)
			active[j] = t->scope_names[j];
	}
	if (blocks_apply(t->blocks, t->policy, active, t->n_scope_names) < 0)
		log_warn("failed to apply the rules to addresses: out of memory");
	/*
	 * What was resolved before this agent started, once: from then on every answer goes
	 * through this process and is remembered as it comes.
	 */
	if (!t->blocks_preloaded) {
		if (store_recent_answers(t->rules_store, since, (int)t->o.block_addrs,
					 block_preload_one, t) < 0)
			log_warn("failed to read recent DNS answers (tried again at the next change "
				 "of the rules): %s", store_errmsg(t->rules_store));
		else
			t->blocks_preloaded = 1;
	}
	tracker_blocks_sync(t);
}

/* The writer gets every new rule set through the queue, so that events keep their order. */
static void tracker_policy_send(struct tracker *t)
{
	struct qitem it = { .type = QI_POLICY };

	if (!t->policy_unsent)
		return;
	it.policy = policy_ref(t->policy);
	if (queue_push(&t->q, &it) < 0) {
		policy_unref(it.policy); /* full: again at the next tick */
		return;
	}
	t->policy_unsent = 0;
	/*
	 * The kernel's table follows only once the writer has the rules: a refused connect's
	 * rule id is then always one the writer knows.
	 */
	if (t->blocks)
		tracker_blocks_reload(t);
}

/* The rules from the store; on failure the ones in force stay. */
static void tracker_rules_load(struct tracker *t)
{
	struct policy *p;
	int r = rules_load(t->rules_store, &p);

	if (r < 0) {
		/* Said once, then once a minute while it lasts; tried again every second. */
		if (t->rules_failures++ % 60 == 0)
			log_err("failed to load the rules: %s; the rules in force stay, and loading is "
				"tried again every second",
				r == -EIO ? store_errmsg(t->rules_store) : strerror(-r));
		t->rules_cur.rules_version = -1; /* the poll says "changed" until a load works */
		return;
	}
	if (t->rules_failures)
		log_info("the rules loaded again after %u failed attempts", t->rules_failures);
	t->rules_failures = 0;
	if (t->policy || policy_n_rules(p))
		log_info("rules version %lld: %zu rule%s in force", (long long)t->rules_cur.rules_version,
			 policy_n_rules(p), policy_n_rules(p) == 1 ? "" : "s");
	/* Events made under the old rules go to the writer ahead of the new ones. */
	if (t->rb)
		ring_buffer__consume(t->rb);
	policy_unref(t->policy);
	t->policy = p;
	t->policy_unsent = 1;
	__atomic_store_n(&t->rules_in_force, (uint64_t)policy_n_rules(p), __ATOMIC_RELAXED);
	__atomic_store_n(&t->rules_version_seen, (uint64_t)t->rules_cur.rules_version,
			 __ATOMIC_RELAXED);
	tracker_policy_send(t);
}

/* Every tick: a change of the rules applies from the next query and event on. */
static void tracker_poll_rules(struct tracker *t)
{
	int r;

	if (!t->rules_store || (t->rules_failures && t->ticks % (1000 / TICK_MS)))
		return;
	r = rules_poll(t->rules_store, &t->rules_cur);
	if (r == 1)
		tracker_rules_load(t);
	tracker_policy_send(t);
}

/* ---- main thread: DNS proxy hooks ----------------------------------------------------------- */

static void dns_decide(void *ctx, const struct nt_dns_origin *o, const char *name,
		       const char *chain, struct dnsproxy_decision *ret)
{
	struct tracker *t = ctx;
	struct policy_decision d;

	const char *scope = o ? tracker_scope_of(t, o->cgroup_id) : unattributed_scope(t);

	policy_decide_chain(t->policy, scope, name, chain, &d);
	ret->verdict = (uint8_t)policy_verdict(d.mode);
	ret->rule_id = d.rule_id;
	snprintf(ret->rule, sizeof(ret->rule), "%s", d.rule);
}

/* The connect or sendto event of the query's socket goes to the writer before the query. */
static void dns_before_query(void *ctx)
{
	struct tracker *t = ctx;

	ring_buffer__consume(t->rb);
}

static int dns_origin(void *ctx, const struct nt_dns_key *key, struct nt_dns_origin *ret)
{
	struct tracker *t = ctx;

	return loader_dns_origin(t->loader, key, ret);
}

/* An answer's addresses, in case the rules enforce the name asked (now or later). */
static void dns_learn(struct tracker *t, const struct dns_record *rec)
{
	int64_t now = boot_now_ns();

	for (unsigned i = 0; i < rec->n_rrs; i++) {
		const struct dns_record_rr *rr = &rec->rrs[i];
		uint8_t key[16];

		if (!rr->target && addr_key(rr->family, rr->addr, key) == 0 &&
		    addr_enforceable(t, key))
			blocks_learn(t->blocks, rec->qname, rec->chain, key,
				     now + (int64_t)rr->ttl * 1000000000LL + t->o.dns_grace_ns);
	}
	tracker_blocks_sync(t);
}

static void dns_record_done(void *ctx, struct dns_record *rec)
{
	struct tracker *t = ctx;
	struct qitem it = { .type = QI_DNS, .dns = rec };

	if (t->blocks && rec->n_rrs)
		dns_learn(t, rec);
	if (rec->learned && !rec->n_rrs) {
		free(rec); /* a blocked name's addresses: none */
		return;
	}
	/* The sender's connect or sendto event, and its process, go to the writer first. */
	ring_buffer__consume(t->rb);
	if (queue_push(&t->q, &it) < 0) {
		t->dns_queue_full += !rec->learned; /* a learned answer is no event */
		free(rec);
	} else {
		t->queued_since_tick++;
	}
}

static void tracker_read_bpf_counters(struct tracker *t)
{
	uint64_t c[NT_CNT_MAX];

	if (loader_counters(t->loader, c) == 0) {
		t->bpf_ringbuf_full = c[NT_CNT_RINGBUF_FULL];
		t->bpf_argv_fault = c[NT_CNT_ARGV_FAULT];
		t->bpf_dns_unredirected = c[NT_CNT_DNS_UNREDIRECTED];
		t->bpf_egress_blocked = c[NT_CNT_EGRESS_BLOCKED];
	}
}

void tracker_metrics_snapshot(struct tracker *t, struct metrics_snapshot *ret)
{
	uint64_t c[NT_CNT_MAX] = { 0 };
	struct dnsproxy_counts d = { 0 };

	memset(ret, 0, sizeof(*ret));
	loader_counters(t->loader, c);
	ret->lost_ringbuf = c[NT_CNT_RINGBUF_FULL];
	ret->dns_unredirected = c[NT_CNT_DNS_UNREDIRECTED];
	/* The main thread's counters, read as they stand (aligned 64-bit loads). */
	ret->lost_queue = __atomic_load_n(&t->queue_full, __ATOMIC_RELAXED);
	ret->lost_undecodable = __atomic_load_n(&t->bad, __ATOMIC_RELAXED);
	ret->lost_dns_queue = __atomic_load_n(&t->dns_queue_full, __ATOMIC_RELAXED);
	ret->lost_store = atomic_get(&t->store_failed);
	ret->stored = atomic_get(&t->stored);
	loader_ringbuf_usage(t->loader, &ret->ringbuf_used_bytes, &ret->ringbuf_size_bytes);
	ret->watched_cgroups = (uint64_t)t->o.n_watches;
	ret->dns = t->o.dns;
	if (t->dns)
		dnsproxy_counts(t->dns, &d);
	ret->dns_received = d.queries;
	ret->dns_malformed = d.malformed;
	ret->dns_unattributed = d.unattributed;
	ret->dns_overload = d.overload;
	ret->dns_upstream_timeout = d.upstream_timeout;
	ret->dns_upstream_error = d.upstream_error;
	ret->dns_upstream_mismatch = d.upstream_mismatch;
	ret->dns_blocked = d.blocked;
	ret->dns_blocked_resolved = d.learn_sent;
	ret->packets_blocked = c[NT_CNT_EGRESS_BLOCKED];
	ret->rules_in_force = __atomic_load_n(&t->rules_in_force, __ATOMIC_RELAXED);
	ret->rules_version = __atomic_load_n(&t->rules_version_seen, __ATOMIC_RELAXED);
	ret->block_entries = __atomic_load_n(&t->blocks_seen.entries, __ATOMIC_RELAXED);
	ret->block_addrs_shared = __atomic_load_n(&t->blocks_seen.shared, __ATOMIC_RELAXED);
	ret->block_answers_dropped = __atomic_load_n(&t->blocks_seen.dropped, __ATOMIC_RELAXED);
	ret->block_map_errors = __atomic_load_n(&t->blocks_seen.errors, __ATOMIC_RELAXED);
	ret->block_addrs = __atomic_load_n(&t->blocks_seen.addrs, __ATOMIC_RELAXED);
	ret->block_addrs_evicted = __atomic_load_n(&t->blocks_seen.evicted, __ATOMIC_RELAXED);
}

int tracker_ready(struct tracker *t, const char **why)
{
	if (__atomic_load_n(&t->store_failing, __ATOMIC_RELAXED)) {
		*why = "the database refused the last write (see the log)";
		return 0;
	}
	if (t->o.dns && !t->dns) {
		*why = "the DNS proxy is not serving";
		return 0;
	}
	return 1;
}

void tracker_counts(struct tracker *t, struct tracker_counts *ret)
{
	tracker_read_bpf_counters(t);
	ret->ringbuf_full = t->bpf_ringbuf_full;
	ret->argv_fault = t->bpf_argv_fault;
	ret->queue_full = t->queue_full;
	ret->bad = t->bad;
	ret->stored = atomic_get(&t->stored);
	ret->store_failed = atomic_get(&t->store_failed);
	ret->dns_queue_full = t->dns_queue_full;
	ret->dns_unredirected = t->bpf_dns_unredirected;
	ret->egress_blocked = t->bpf_egress_blocked;
	ret->dns = t->dns_final;
	if (t->dns)
		dnsproxy_counts(t->dns, &ret->dns);
}

static void stats_snapshot(struct tracker *t, struct stats_item *st)
{
	struct tracker_counts c;

	tracker_counts(t, &c);
	st->n = 0;
	st->time_ns = wall_now_ns();
	st->names[st->n] = "events_lost_ringbuf";
	st->values[st->n++] = (int64_t)c.ringbuf_full;
	st->names[st->n] = "events_lost_queue";
	st->values[st->n++] = (int64_t)c.queue_full;
	st->names[st->n] = "events_lost_store";
	st->values[st->n++] = (int64_t)c.store_failed;
	st->names[st->n] = "events_lost_undecodable";
	st->values[st->n++] = (int64_t)c.bad;
	st->names[st->n] = "events_stored";
	st->values[st->n++] = (int64_t)c.stored;
	st->names[st->n] = "argv_unreadable";
	st->values[st->n++] = (int64_t)c.argv_fault;
	st->names[st->n] = "packets_blocked";
	st->values[st->n++] = (int64_t)c.egress_blocked;
	st->names[st->n] = "block_answers_dropped";
	st->values[st->n++] = (int64_t)__atomic_load_n(&t->blocks_seen.dropped, __ATOMIC_RELAXED);
	st->names[st->n] = "block_addresses_evicted";
	st->values[st->n++] = (int64_t)__atomic_load_n(&t->blocks_seen.evicted, __ATOMIC_RELAXED);
	if (!t->o.dns)
		return;
	st->names[st->n] = "events_lost_dns_queue";
	st->values[st->n++] = (int64_t)c.dns_queue_full;
	st->names[st->n] = "dns_queries";
	st->values[st->n++] = (int64_t)c.dns.queries;
	st->names[st->n] = "dns_malformed";
	st->values[st->n++] = (int64_t)c.dns.malformed;
	st->names[st->n] = "dns_unattributed";
	st->values[st->n++] = (int64_t)c.dns.unattributed;
	st->names[st->n] = "dns_upstream_timeouts";
	st->values[st->n++] = (int64_t)c.dns.upstream_timeout;
	st->names[st->n] = "dns_upstream_errors";
	st->values[st->n++] = (int64_t)c.dns.upstream_error;
	st->names[st->n] = "dns_overload";
	st->values[st->n++] = (int64_t)c.dns.overload;
	st->names[st->n] = "dns_unredirected";
	st->values[st->n++] = (int64_t)c.dns_unredirected;
	st->names[st->n] = "dns_blocked";
	st->values[st->n++] = (int64_t)c.dns.blocked;
}

static void tracker_push_stats(struct tracker *t)
{
	struct stats_item *st = calloc(1, sizeof(*st));
	struct qitem it = { .type = QI_STATS, .stats = st };

	if (!st)
		return;
	stats_snapshot(t, st);
	if (queue_push(&t->q, &it) < 0)
		free(st);
}

/* Everything in the ring buffer before `now` goes to the writer, then a sync marker. */
static void tracker_tick(struct tracker *t)
{
	struct qitem it = { .type = QI_SYNC };
	int64_t now = wall_now_ns();

	ring_buffer__consume(t->rb);
	tracker_check_forget(t);
	tracker_poll_rules(t);
	if (t->dns)
		dnsproxy_tick(t->dns);
	/*
	 * synced_ns is published only when events came in or a `run` waits for it (runtime.h):
	 * an idle agent writes nothing.
	 */
	if (t->o.publish_sync && (t->queued_since_tick || sync_requested()))
		it.sync_ns = now;
	t->queued_since_tick = 0;
	/* Counters go with every sync, so a report waiting for it also sees the losses. */
	tracker_push_stats(t);
	queue_push(&t->q, &it);
	if (++t->ticks % (1000 / TICK_MS) == 0) {
		t->boot_to_wall_ns = event_boot_to_wall_ns(); /* follow clock steps */
		if (t->blocks) {
			blocks_expire(t->blocks, boot_now_ns());
			tracker_blocks_sync(t);
		}
	}
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static int tracker_epoll_add(struct tracker *t, int fd, uint32_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = tag };

	return epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

enum { TAG_RINGBUF = 1000, TAG_TIMER = 1001, TAG_DNS = 1002 };

static int tracker_setup_loop(struct tracker *t)
{
	struct itimerspec its = {
		.it_interval = { 0, TICK_MS * 1000000L },
		.it_value = { 0, TICK_MS * 1000000L },
	};
	int r;

	t->rb = ring_buffer__new(loader_ringbuf_fd(t->loader), on_sample, t, NULL);
	if (!t->rb)
		return -errno;
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	t->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (t->epfd < 0 || t->timerfd < 0)
		return -errno;
	if (timerfd_settime(t->timerfd, 0, &its, NULL) < 0)
		return -errno;
	r = tracker_epoll_add(t, ring_buffer__epoll_fd(t->rb), TAG_RINGBUF);
	if (r == 0)
		r = tracker_epoll_add(t, t->timerfd, TAG_TIMER);
	if (r == 0 && t->dns)
		r = tracker_epoll_add(t, dnsproxy_fd(t->dns), TAG_DNS);
	return r;
}

static void tracker_free(struct tracker *t)
{
	if (t->writer_started) {
		queue_close(&t->q);
		pthread_join(t->writer, NULL);
	}
	dnsproxy_close(t->dns);
	ring_buffer__free(t->rb);
	blocks_free(t->blocks); /* its entries go from the map, which goes next */
	loader_close(t->loader);
	for (size_t i = 0; i < t->n_scope_names; i++) {
		if (t->scope_fds[i] >= 0)
			close(t->scope_fds[i]);
		if (t->scope_dirs[i])
			cgroup_dir_remove_if_unheld(t->scope_dirs[i]);
		free(t->scope_dirs[i]);
		free(t->scope_names[i]);
	}
	store_close(t->store);
	if (t->q.items)
		queue_destroy(&t->q);
	if (t->epfd >= 0)
		close(t->epfd);
	if (t->timerfd >= 0)
		close(t->timerfd);
	keymap_free(&t->seen);
	keymap_free(&t->proc_ids);
	domains_free(&t->domains);
	store_close(t->rules_store);
	policy_unref(t->policy);
	policy_unref(t->wpolicy);
	free(t->scopes);
	free(t->cgmap);
	free(t);
}

static void domain_preload_one(void *ctx, const char *scope, const char *qname,
			       const char *targets, const uint8_t key[16], int64_t expires_ns)
{
	struct tracker *t = ctx;

	if (scope && qname && expires_ns + t->o.dns_grace_ns > wall_now_ns()) {
		char *chain = policy_chain_from_text(targets);

		domains_put_chain(&t->domains, scope, key, qname, chain, expires_ns + t->o.dns_grace_ns);
		domains_put_chain(&t->domains, ANY_SCOPE, key, qname, chain,
				  expires_ns + t->o.dns_grace_ns);
		free(chain);
	}
}

/*
 * What the scopes resolved before this agent (or run) started, still within TTL and grace:
 * a connection to an address resolved by an earlier run of the scope, or before a restart,
 * gets its name too. Answers of the last day at most, the latest DOMAINS_CAP of them.
 */
static void domains_preload(struct tracker *t)
{
	int64_t since = wall_now_ns() - 86400 * 1000000000LL - t->o.dns_grace_ns;

	if (store_recent_answers(t->store, since, DOMAINS_CAP, domain_preload_one, t) < 0)
		log_warn("failed to read recent DNS answers: %s", store_errmsg(t->store));
}

int tracker_start(const struct tracker_opts *o, struct tracker **ret, const char **why)
{
	struct tracker *t;
	int r;

	*why = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->o = *o;
	t->epfd = t->timerfd = -1;
	t->pruned_seen = -1;
	t->boot_to_wall_ns = event_boot_to_wall_ns();
	t->cgmap = calloc(CGMAP_CAP, sizeof(*t->cgmap));
	t->scopes = calloc(SCOPES_CAP, sizeof(*t->scopes));
	if (!t->cgmap || !t->scopes || keymap_init(&t->seen) < 0 || keymap_init(&t->proc_ids) < 0 ||
	    domains_init(&t->domains) < 0) {
		r = -ENOMEM;
		goto out_free;
	}
	r = queue_init(&t->q, o->queue_cap);
	if (r < 0)
		goto out_free;
	r = store_open(o->db_path, 0, &t->store);
	if (r < 0) {
		*why = "failed to open the database";
		goto out_free;
	}
	if (o->dns)
		domains_preload(t);
	/* The rules apply from the first event: loaded before anything is attached. */
	r = store_open(o->db_path, STORE_READONLY, &t->rules_store);
	if (r < 0) {
		*why = "failed to open the database to read the rules";
		goto out_free;
	}
	t->rules_cur.rules_version = -1;
	if (rules_poll(t->rules_store, &t->rules_cur) < 0) {
		*why = "failed to read the rules";
		r = -EIO;
		goto out_free;
	}
	tracker_rules_load(t);
	if (!t->policy) {
		*why = "failed to load the rules";
		r = -EIO;
		goto out_free;
	}
	/* Only runs from now on are counted: counters start at zero with the process. */
	t->runs.last_id = -1;
	if (o->metrics)
		store_runs_since(t->store, &t->runs, NULL, NULL);
	if (o->dns) {
		struct dnsproxy_hooks hooks = {
			.ctx = t, .before_query = dns_before_query, .origin = dns_origin,
			.record = dns_record_done, .decide = dns_decide,
		};

		r = dnsproxy_open(&o->dns_opts, &hooks, &t->dns, why);
		if (r < 0)
			goto out_free;
	}
	r = loader_open(&(struct loader_opts){
				.ringbuf_size = o->ringbuf_size,
				.excluded = o->excluded,
				.n_excluded = o->n_excluded,
				.dns_port = t->dns ? dnsproxy_port(t->dns) : 0,
				.dns_v6 = t->dns ? dnsproxy_has_v6(t->dns) : 0,
				.allow_resolver_sockets = o->allow_resolver_sockets,
			},
			&t->loader, why);
	if (r < 0)
		goto out_free;
	/* Enforced addresses are in the kernel before the first hook is attached. */
	t->blocks = blocks_new(&(struct blocks_ops){ .ctx = t->loader, .put = blocks_put,
						     .del = blocks_del },
			       o->shared_block ? BLOCKS_SHARED_BLOCK : BLOCKS_SHARED_ALLOW,
			       o->block_addrs);
	r = t->blocks ? cgroup_find_mount(t->cg_mount, sizeof(t->cg_mount)) : -ENOMEM;
	if (r < 0) {
		*why = "failed to set up address enforcement";
		goto out_free;
	}
	tracker_blocks_reload(t);
	for (int i = 0; i < o->n_watches; i++) {
		r = loader_attach(t->loader, o->watches[i].path);
		if (r < 0) {
			*why = "failed to attach to a watched cgroup";
			goto out_free;
		}
	}
	r = tracker_setup_loop(t);
	if (r < 0)
		goto out_free;
	r = -pthread_create(&t->writer, NULL, writer_main, t);
	if (r < 0)
		goto out_free;
	t->writer_started = 1;
	*ret = t;
	return 0;
out_free:
	tracker_free(t);
	return r;
}

uint16_t tracker_dns_port(struct tracker *t)
{
	return t->dns ? dnsproxy_port(t->dns) : 0;
}

int tracker_dns_v6(struct tracker *t)
{
	return t->dns ? dnsproxy_has_v6(t->dns) : 0;
}

int tracker_has_unix_hook(struct tracker *t)
{
	return loader_has_unix_hook(t->loader);
}

void tracker_log_dns(struct tracker *t)
{
	char up[64] = "the resolver each process asks for";

	if (!t->dns) {
		log_info("DNS is not redirected (--no-dns): queries are not recorded");
		return;
	}
	if (t->o.dns_opts.upstream.len)
		dnsproxy_format_addr_sa(&t->o.dns_opts.upstream.addr, up, sizeof(up));
	log_info("DNS of the watched cgroups goes through the proxy on 127.0.0.1:%u%s, to %s",
		 dnsproxy_port(t->dns),
		 dnsproxy_has_v6(t->dns) ? " and [::1]" : " only (no ::1: IPv6 resolvers are left alone)",
		 up);
	if (!loader_has_unix_hook(t->loader))
		log_warn("this kernel (before 6.7) cannot see connects to nscd or systemd-resolved: "
			 "lookups through them are not recorded");
}

int tracker_add_fd(struct tracker *t, int fd, tracker_fd_cb cb, void *ctx)
{
	int r;

	if (t->n_fds == FD_CB_MAX)
		return -E2BIG;
	r = tracker_epoll_add(t, fd, (uint32_t)t->n_fds);
	if (r < 0)
		return r;
	t->fds[t->n_fds++] = (struct fd_cb){ .fd = fd, .cb = cb, .ctx = ctx };
	return 0;
}

int tracker_unexclude(struct tracker *t, uint64_t cgroup_id)
{
	return loader_unexclude(t->loader, cgroup_id);
}

int tracker_run(struct tracker *t)
{
	struct epoll_event evs[8];

	for (;;) {
		int n = epoll_wait(t->epfd, evs, ARRAY_SIZE(evs), -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (int i = 0; i < n; i++) {
			uint32_t tag = evs[i].data.u32;
			uint64_t expirations;
			int r;

			if (tag == TAG_RINGBUF) {
				ring_buffer__consume(t->rb);
			} else if (tag == TAG_DNS) {
				dnsproxy_dispatch(t->dns);
			} else if (tag == TAG_TIMER) {
				if (read(t->timerfd, &expirations, sizeof(expirations)) > 0)
					tracker_tick(t);
			} else if (tag < (uint32_t)t->n_fds) {
				r = t->fds[tag].cb(t, t->fds[tag].fd, t->fds[tag].ctx);
				if (r != 0)
					return r < 0 ? r : 0;
			}
		}
	}
}

int tracker_finish(struct tracker *t, struct tracker_counts *ret)
{
	struct qitem it = { .type = QI_SYNC };
	struct stats_item final;

	/* No new events once detached; then everything still in the ring buffer is stored. */
	loader_detach(t->loader);
	ring_buffer__consume(t->rb);
	/*
	 * What arrived before the detach is handled, and what still waits for the upstream gets
	 * a moment to be answered (the process that asked may be gone, the record is not); then
	 * the rest is answered SERVFAIL and recorded.
	 */
	if (t->dns) {
		dnsproxy_dispatch(t->dns);
		dnsproxy_settle(t->dns, FINISH_SETTLE_MS < t->o.dns_opts.timeout_ms ?
						FINISH_SETTLE_MS : t->o.dns_opts.timeout_ms);
		dnsproxy_abandon(t->dns);
		dnsproxy_counts(t->dns, &t->dns_final);
		dnsproxy_close(t->dns);
		t->dns = NULL;
	}
	it.sync_ns = wall_now_ns();
	queue_push(&t->q, &it);
	queue_close(&t->q);
	pthread_join(t->writer, NULL);
	t->writer_started = 0;
	/* The writer is done, so its counts are final: one last row of every counter. */
	stats_snapshot(t, &final);
	if (writer_put_stats(t, &final, 1) < 0)
		log_err("failed to record the final counters: %s", store_errmsg(t->store));
	if (ret)
		tracker_counts(t, ret);
	tracker_free(t);
	return 0;
}
