// SPDX-License-Identifier: MIT
/* nettrail agent: watch cgroups until SIGINT or SIGTERM. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include "cgroup.h"
#include "http.h"
#include "cmd.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "parse.h"
#include "store.h"
#include "runtime.h"
#include "tracker.h"
#include "util.h"

static const char agent_usage[] =
	"usage: nettrail agent [--watch PATH[:SCOPE]]... [OPTIONS]\n"
	"\n"
	"Watches cgroups until SIGINT or SIGTERM and records every connect attempt and DNS query\n"
	"made from them or their descendants: their DNS goes through the agent's proxy on\n"
	"loopback. Always watches <cgroup2>/nettrail, where `nettrail run` puts its runs; one\n"
	"agent per host.\n"
	"\n"
	"  -w, --watch PATH[:SCOPE]  also watch this cgroup2 directory; SCOPE defaults to its name\n"
	"  -d, --db PATH             database (default $NETTRAIL_DB, else " DEFAULT_DB ")\n"
	"      --ringbuf-size SIZE   BPF ring buffer, a power of two (default 8M)\n"
	"      --queue-size N        events held for the store writer (default 262144)\n"
	"      --listen ADDR:PORT    serve /metrics and the event feed /v1/events there\n"
	"                            (default " HTTP_DEFAULT_LISTEN ")\n"
	"      --listen-remote       allow a --listen address other than loopback\n"
	"      --no-listen           no HTTP endpoint\n"
	DNS_USAGE
	"  -v, --verbose             debug logging, libbpf's included\n"
	"  -h, --help                this text\n"
	"\n"
	"Exit status: 0 after a clean stop, 1 if it could not start, 2 for a bad command line.\n";

struct agent_args {
	const char *db;
	struct watch watches[WATCH_MAX];
	int n_watches;
	size_t ringbuf_size, queue_size;
	struct tracker_opts tracker; /* the DNS options */
	const char *listen;          /* NULL: no HTTP endpoint */
	int listen_remote;           /* a non-loopback --listen is meant */
	struct sockaddr_storage listen_addr;
	socklen_t listen_len;
};

/* PATH[:SCOPE] -> a checked watch. */
static int agent_add_watch(struct agent_args *a, const char *arg)
{
	struct watch *w = &a->watches[a->n_watches];
	const char *colon = strrchr(arg, ':');
	char real[PATH_MAX];
	const char *base;
	size_t plen = colon ? (size_t)(colon - arg) : strlen(arg);
	int r;

	if (a->n_watches == WATCH_MAX) {
		log_err("at most %d --watch options", WATCH_MAX - 1);
		return EXIT_USAGE;
	}
	if (plen == 0 || plen >= sizeof(w->path)) {
		log_err("bad --watch '%s'", arg);
		return EXIT_USAGE;
	}
	memcpy(w->path, arg, plen);
	w->path[plen] = '\0';
	while (plen > 1 && w->path[plen - 1] == '/')
		w->path[--plen] = '\0';
	base = strrchr(w->path, '/');
	base = base ? base + 1 : w->path;
	snprintf(w->scope, sizeof(w->scope), "%s", colon ? colon + 1 : base);
	if (parse_scope(w->scope) < 0) {
		log_err("bad scope '%s' for --watch %s: use 1-64 of A-Z a-z 0-9 _ . -", w->scope,
			w->path);
		return EXIT_USAGE;
	}
	r = cgroup_check_dir(w->path);
	if (r < 0) {
		log_err("--watch %s is not a cgroup2 directory: %s", w->path,
			r == -EMEDIUMTYPE ? "not on a cgroup2 file system" : strerror(-r));
		return EXIT_FAIL;
	}
	/* One spelling per directory, so that overlapping watches are seen as such. */
	if (!realpath(w->path, real) || strlen(real) >= sizeof(w->path)) {
		log_err("failed to resolve --watch %s: %s", w->path, strerror(errno));
		return EXIT_FAIL;
	}
	memcpy(w->path, real, strlen(real) + 1);
	a->n_watches++;
	return 0;
}

/* Two watches where one contains the other would record events twice. */
static int agent_check_overlap(const struct agent_args *a)
{
	for (int i = 0; i < a->n_watches; i++)
		for (int j = 0; j < a->n_watches; j++) {
			const char *p = a->watches[i].path, *q = a->watches[j].path;
			size_t n = strlen(p);

			if (i != j && !strncmp(p, q, n) && (q[n] == '/' || q[n] == '\0')) {
				log_err("watched cgroups overlap: %s contains %s", p, q);
				return EXIT_USAGE;
			}
		}
	return 0;
}

static int agent_parse(int argc, char **argv, struct agent_args *a)
{
	static const struct option opts[] = {
		{ "watch", required_argument, NULL, 'w' },
		{ "db", required_argument, NULL, 'd' },
		{ "ringbuf-size", required_argument, NULL, 'R' },
		{ "queue-size", required_argument, NULL, 'Q' },
		{ "listen", required_argument, NULL, 'L' },
		{ "listen-remote", no_argument, NULL, 'X' },
		{ "no-listen", no_argument, NULL, 'N' },
		DNS_LONG_OPTIONS,
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c, r;

	a->db = db_path_default();
	a->ringbuf_size = DEFAULT_RINGBUF;
	a->queue_size = DEFAULT_QUEUE;
	a->listen = HTTP_DEFAULT_LISTEN;
	opt_dns_defaults(&a->tracker);
	/* Room for the runs root, which is always watched. */
	a->n_watches = 1;
	while ((c = getopt_long(argc, argv, "w:d:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'w': r = agent_add_watch(a, optarg); break;
		case 'd': a->db = optarg; r = 0; break;
		case 'R': r = opt_ringbuf_size(optarg, &a->ringbuf_size); break;
		case 'Q': r = opt_queue_size(optarg, &a->queue_size); break;
		case 'v': log_set_level(NT_LOG_DEBUG); r = 0; break;
		case 'L': a->listen = optarg; r = 0; break;
		case 'X': a->listen_remote = 1; r = 0; break;
		case 'N': a->listen = NULL; r = 0; break;
		case 'h': fputs(agent_usage, stdout); exit(EXIT_OK);
		default:
			if (c < OPT_DNS_FIRST || c >= OPT_DNS_END) {
				fputs("Try 'nettrail agent --help'.\n", stderr);
				return EXIT_USAGE;
			}
			r = opt_dns(c, optarg, &a->tracker);
		}
		if (r)
			return r;
	}
	if (a->listen && http_parse_listen(a->listen, &a->listen_addr, &a->listen_len) < 0) {
		log_err("--listen must be ADDR:PORT or [ADDR6]:PORT, e.g. 127.0.0.1:9874, not '%s'",
			a->listen);
		return EXIT_USAGE;
	}
	if (a->listen && !http_is_loopback(&a->listen_addr) && !a->listen_remote) {
		log_err("--listen %s is not a loopback address: the feed shows every command line "
			"recorded; add --listen-remote to serve it beyond this host", a->listen);
		return EXIT_USAGE;
	}
	if (optind < argc) {
		log_err("unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	return 0;
}

/* What the agent looks after once a second besides events. */
struct housekeeping {
	uint64_t excluded[1024]; /* cgroups of embedded runs, left to them while they live */
	int n_excluded;
	const char *runs_root;
	ino_t root_ino;
	int root_lost; /* the runs root was removed: runs made now are not watched */
};

/* An embedded run that has ended (or died) no longer records its cgroup: the agent does. */
static void housekeeping_exclusions(struct tracker *t, struct housekeeping *h)
{
	for (int i = 0; i < h->n_excluded; i++) {
		if (embedded_alive(h->excluded[i]))
			continue;
		if (tracker_unexclude(t, h->excluded[i]) == 0)
			log_info("the run recording cgroup %llu has ended; the agent records it now",
				 (unsigned long long)h->excluded[i]);
		h->excluded[i--] = h->excluded[--h->n_excluded];
	}
}

/*
 * Run cgroups whose `nettrail run` is gone stay while processes it left behind live in
 * them (the agent records those); once empty, they are removed here, with empty scopes.
 */
static void housekeeping_sweep(const char *root)
{
	char scope[4096], run[8192];
	struct dirent *se, *re;
	DIR *rd, *sd;

	rd = opendir(root);
	if (!rd)
		return;
	while ((se = readdir(rd)) != NULL) {
		if (se->d_type != DT_DIR || se->d_name[0] == '.')
			continue;
		snprintf(scope, sizeof(scope), "%s/%s", root, se->d_name);
		sd = opendir(scope);
		if (!sd)
			continue;
		while ((re = readdir(sd)) != NULL) {
			if (re->d_type != DT_DIR || strncmp(re->d_name, "run-", 4))
				continue;
			snprintf(run, sizeof(run), "%s/%s", scope, re->d_name);
			if (run_cgroup_remove_if_abandoned(run))
				log_info("removed the cgroup of a finished run: %s", run);
		}
		closedir(sd);
		/* EBUSY while runs of the scope live; a new run retries its mkdir. */
		cgroup_dir_remove_if_unheld(scope);
	}
	closedir(rd);
}

static int on_housekeeping(struct tracker *t, int fd, void *ctx)
{
	struct housekeeping *h = ctx;
	uint64_t expirations;

	if (read(fd, &expirations, sizeof(expirations)) < 0)
		return 0;
	housekeeping_exclusions(t, h);
	if (!__atomic_load_n(&h->root_lost, __ATOMIC_RELAXED) &&
	    !cgroup_dir_same(h->runs_root, h->root_ino)) {
		/* Only a hand could do it: nettrail removes the root only when no agent holds it. */
		log_err("the runs root %s was removed: the hooks went with it, and runs started now "
			"are not recorded; restart the agent", h->runs_root);
		__atomic_store_n(&h->root_lost, 1, __ATOMIC_RELAXED);
	}
	housekeeping_sweep(h->runs_root);
	return 0;
}

/* The 1 s housekeeping timer; its fd, or -1 after a warning. */
static int agent_housekeeping(struct tracker *t, struct housekeeping *h)
{
	struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);

	if (fd < 0 || timerfd_settime(fd, 0, &its, NULL) < 0 ||
	    tracker_add_fd(t, fd, on_housekeeping, h) < 0) {
		log_warn("failed to start housekeeping: embedded runs keep their cgroups, and "
			 "finished runs' cgroups stay");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int on_signal(struct tracker *t, int fd, void *ctx)
{
	struct signalfd_siginfo si;

	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return 0;
	if (si.ssi_signo == SIGHUP) {
		/* Nothing to reload; and a hang-up must not stop the record. */
		log_info("received SIGHUP: nothing to reload, still running");
		return 0;
	}
	log_info("received %s, stopping", strsignal((int)si.ssi_signo));
	return 1;
}

/*
 * The runs root, created if missing and held (so that no finishing run removes it under the
 * agent); removed at exit if no run is left in it. Its fd, or -1 after a message.
 */
static int agent_runs_root(struct watch *w, ino_t *ret_ino)
{
	int r = runs_root_path(w->path, sizeof(w->path)), fd;

	if (r < 0) {
		log_err("failed to find the cgroup2 mount in /proc/self/mounts: %s",
			r == -ENOENT ? "cgroup2 is not mounted" : strerror(-r));
		return -1;
	}
	fd = cgroup_dir_hold(w->path, ret_ino);
	if (fd < 0) {
		log_err("failed to create and hold cgroup %s: %s", w->path, strerror(-fd));
		return -1;
	}
	snprintf(w->scope, sizeof(w->scope), "%s", "unscoped");
	w->runs_root = 1;
	return fd;
}

struct agent_ctx {
	struct tracker *t;
	const struct housekeeping *hk;
};

static void agent_snapshot(void *ctx, struct metrics_snapshot *ret)
{
	struct agent_ctx *x = ctx;

	if (x->t)
		tracker_metrics_snapshot(x->t, ret);
	else
		memset(ret, 0, sizeof(*ret));
}

static int agent_ready(void *ctx, const char **why)
{
	struct agent_ctx *x = ctx;

	if (!x->t) {
		*why = "starting";
		return 0;
	}
	if (__atomic_load_n(&x->hk->root_lost, __ATOMIC_RELAXED)) {
		*why = "the runs root cgroup was removed (see the log)";
		return 0;
	}
	return tracker_ready(x->t, why);
}

/* The HTTP endpoint; 0, or -1 after a message. */
static int agent_http_start(struct agent_args *a, struct agent_ctx *x, struct metrics *m,
			    struct http **ret)
{
	struct http_opts ho = { .addr = a->listen_addr, .addr_len = a->listen_len,
				.db_path = a->db, .metrics = m, .ready = agent_ready, .ctx = x };
	const char *why;

	*ret = NULL;
	if (!a->listen)
		return 0;
	if (http_start(&ho, ret, &why) < 0) {
		log_err("failed to serve HTTP on %s: %s", a->listen, why);
		return -1;
	}
	if (!http_is_loopback(&a->listen_addr))
		log_warn("serving /metrics and /v1/events on %s, beyond this host: the feed shows "
			 "every recorded command line", a->listen);
	log_info("serving /metrics and /v1/events on http://%s/", a->listen);
	return 0;
}

/* Runs until stopped. */
static int agent_serve(struct agent_args *a, ino_t root_ino)
{
	static struct agent_ctx x;
	struct metrics *m = metrics_new(agent_snapshot, &x);
	struct http *http = NULL;
	struct tracker_opts o = a->tracker;
	/* The DNS options came with a->tracker; the rest is set here. */
	o.db_path = a->db;
	o.watches = a->watches;
	o.n_watches = a->n_watches;
	o.ringbuf_size = a->ringbuf_size;
	o.queue_cap = a->queue_size;
	o.publish_sync = 1;
	o.metrics = m;
	static struct housekeeping hk;
	int xfd;
	struct tracker_counts c;
	struct tracker *t;
	struct rusage ru;
	const char *why;
	char source[64];
	sigset_t mask;
	int sfd, r;

	/* pid@start: a pid reused by a later agent starts a new series of counters. */
	snprintf(source, sizeof(source), "agent:%d@%lld", (int)getpid(), (long long)time(NULL));
	o.source = source;
	/* Runs that loaded their own programs before this agent took the lock keep recording. */
	hk.n_excluded = o.n_excluded = embedded_list(hk.excluded, (int)ARRAY_SIZE(hk.excluded));
	o.excluded = hk.excluded;
	hk.runs_root = a->watches[0].path;
	hk.root_ino = root_ino;
	x.hk = &hk;
	if (o.n_excluded > 0)
		log_info("%d running `nettrail run`s record themselves; their cgroups are left to them",
			 o.n_excluded);
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		log_err("failed to create a signalfd: %s", strerror(errno));
		return EXIT_FAIL;
	}
	r = tracker_start(&o, &t, &why);
	if (r < 0) {
		log_err("failed to start: %s%s%s", why ? why : strerror(-r), why ? ": " : "",
			why ? strerror(-r) : "");
		close(sfd);
		metrics_free(m);
		return EXIT_FAIL;
	}
	x.t = t;
	if (agent_http_start(a, &x, m, &http) < 0) {
		tracker_finish(t, NULL);
		close(sfd);
		metrics_free(m);
		return EXIT_FAIL;
	}
	if (tracker_add_fd(t, sfd, on_signal, NULL) < 0) {
		log_err("failed to watch for signals");
		http_stop(http);
		x.t = NULL;
		tracker_finish(t, NULL);
		close(sfd);
		metrics_free(m);
		return EXIT_FAIL;
	}
	xfd = agent_housekeeping(t, &hk);
	log_info("watching %d cgroup%s (runs under %s); database %s", a->n_watches,
		 a->n_watches == 1 ? "" : "s", a->watches[0].path, a->db);
	tracker_log_dns(t);
	r = tracker_run(t);
	if (r < 0)
		log_err("event loop failed: %s", strerror(-r));
	http_stop(http);
	x.t = NULL;
	tracker_finish(t, &c);
	metrics_free(m);
	getrusage(RUSAGE_SELF, &ru);
	log_info("stopped: %llu events stored, lost %llu (ring buffer full), %llu (queue full), "
		 "%llu (store failed); peak RSS %ld KiB", (unsigned long long)c.stored,
		 (unsigned long long)c.ringbuf_full, (unsigned long long)c.queue_full,
		 (unsigned long long)c.store_failed, ru.ru_maxrss);
	close(sfd);
	if (xfd >= 0)
		close(xfd);
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}

int cmd_agent(int argc, char **argv)
{
	struct agent_args a = { 0 };
	char busy_db[4096], db_abs[PATH_MAX];
	int lock_fd = -1, root_fd, r;
	ino_t root_ino;
	const char *why;
	struct store *st;

	r = agent_parse(argc, argv, &a);
	if (r)
		return r;
	if (geteuid() != 0) {
		log_err("nettrail agent needs root (CAP_BPF, CAP_SYS_ADMIN, CAP_PERFMON, CAP_NET_ADMIN)");
		return EXIT_FAIL;
	}
	root_fd = agent_runs_root(&a.watches[0], &root_ino);
	if (root_fd < 0)
		return EXIT_FAIL;
	r = agent_check_overlap(&a);
	if (r)
		goto out_rmdir;
	/* The lock holds the absolute path: `run` may be started from any directory. */
	if (db_path_absolute(a.db, db_abs, sizeof(db_abs)) < 0) {
		log_err("failed to resolve the database path %s", a.db);
		r = EXIT_FAIL;
		goto out_rmdir;
	}
	a.db = db_abs;
	r = agent_lock_take(a.db, &lock_fd, busy_db, sizeof(busy_db));
	if (r == -EBUSY) {
		log_err("another nettrail agent is running on this host (database %s)", busy_db);
		r = EXIT_FAIL;
		goto out_rmdir;
	} else if (r < 0) {
		log_err("failed to take %s: %s", agent_lock_path(), strerror(-r));
		r = EXIT_FAIL;
		goto out_rmdir;
	}
	/* BPF must be possible before a database is created, which must open before loading. */
	if (loader_probe(&why) < 0) {
		log_err("cannot record here: %s", why);
		r = EXIT_FAIL;
	} else if (db_open(a.db, &st) < 0) {
		r = EXIT_FAIL;
	} else {
		store_close(st);
		r = agent_serve(&a, root_ino);
	}
	close(lock_fd);
out_rmdir:
	close(root_fd);
	cgroup_dir_remove_if_unheld(a.watches[0].path);
	return r;
}
