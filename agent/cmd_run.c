// SPDX-License-Identifier: MIT
/*
 * nettrail run: runs a command in a cgroup of its own and reports what it reached.
 * Without an agent it loads the BPF programs itself, for the life of the command; with one,
 * it only makes the cgroup under the agent's runs root and the agent records it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cgroup.h"
#include "cmd.h"
#include "loader.h"
#include "log.h"
#include "parse.h"
#include "procfs.h"
#include "policy.h"
#include "report.h"
#include "rules.h"
#include "store.h"
#include "runtime.h"
#include "tracker.h"

static const char run_usage[] =
	"usage: nettrail run [OPTIONS] [--] COMMAND [ARG]...\n"
	"\n"
	"Runs COMMAND in a cgroup of its own, records every connect attempt it and its children\n"
	"make, and prints a dependency report on stderr when it exits. Without a running agent it\n"
	"loads the BPF programs itself for the life of the command.\n"
	"\n"
	"  -s, --scope NAME        what is being watched, e.g. deploy (default: default)\n"
	"  -d, --db PATH           database (default $NETTRAIL_DB, else " DEFAULT_DB ")\n"
	"      --ringbuf-size SIZE BPF ring buffer when no agent runs, a power of two (default 8M)\n"
	"      --queue-size N      events held for the store writer (default 262144)\n"
	"      --no-report         print no report\n"
	"DNS and enforcement, when no agent runs (an agent's own options apply under it):\n"
	DNS_USAGE
	"  -v, --verbose           more logging\n"
	"  -h, --help              this text\n"
	"\n"
	"Exit status: the command's (128+N if killed by signal N); 127 if it was not found, 126 if\n"
	"it could not be executed; 1 if nettrail itself could not start; 2 for a bad command line.\n";

struct run_args {
	const char *scope;
	const char *db;
	int db_given;
	int report;
	size_t ringbuf_size, queue_size;
	struct tracker_opts tracker; /* the DNS options */
	int dns_given;
	char **cmd;
};

struct run_state {
	struct run_args *a;
	char cgroup[4096];
	char scope_dir[4096];
	uint64_t cgroup_id;
	int64_t run_id;
	int64_t started_ns, ended_ns;
	pid_t child;
	int pidfd, sigfd;
	int status;          /* exit status to return */
	int agent;           /* recording through a running agent */
	int cgroup_fd;       /* the run's hold on its cgroup directory */
	int child_done;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int run_parse(int argc, char **argv, struct run_args *a)
{
	static const struct option opts[] = {
		{ "scope", required_argument, NULL, 's' },
		{ "db", required_argument, NULL, 'd' },
		{ "ringbuf-size", required_argument, NULL, 'R' },
		{ "queue-size", required_argument, NULL, 'Q' },
		{ "no-report", no_argument, NULL, 'N' },
		DNS_LONG_OPTIONS,
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c, r = 0;

	a->scope = "default";
	a->db = db_path_default();
	a->report = 1;
	a->ringbuf_size = DEFAULT_RINGBUF;
	a->queue_size = DEFAULT_QUEUE;
	opt_dns_defaults(&a->tracker);
	/* '+': stop at the command, whose own options are not ours. */
	while ((c = getopt_long(argc, argv, "+s:d:vh", opts, NULL)) != -1) {
		switch (c) {
		case 's': a->scope = optarg; break;
		case 'd': a->db = optarg; a->db_given = 1; break;
		case 'R': r = opt_ringbuf_size(optarg, &a->ringbuf_size); break;
		case 'Q': r = opt_queue_size(optarg, &a->queue_size); break;
		case 'N': a->report = 0; break;
		case 'v': log_set_level(NT_LOG_DEBUG); break;
		case 'h': fputs(run_usage, stdout); exit(EXIT_OK);
		default:
			if (c < OPT_DNS_FIRST || c >= OPT_DNS_END) {
				fputs("Try 'nettrail run --help'.\n", stderr);
				return EXIT_USAGE;
			}
			r = opt_dns(c, optarg, &a->tracker);
			a->dns_given = 1;
		}
		if (r)
			return r;
	}
	if (parse_scope(a->scope) < 0) {
		log_err("bad scope '%s': use 1-64 of A-Z a-z 0-9 _ . -, not starting with '.'", a->scope);
		return EXIT_USAGE;
	}
	if (optind >= argc) {
		log_err("no command to run");
		fputs(run_usage, stderr);
		return EXIT_USAGE;
	}
	a->cmd = argv + optind;
	return 0;
}

/* The command as one line for the runs table. */
/* The command as one line for the runs table, quoted like processes.cmdline. */
static void run_command_text(char **cmd, char *buf, size_t len)
{
	char argv[4096];
	size_t o = 0;

	for (int i = 0; cmd[i]; i++) {
		size_t n = strlen(cmd[i]) + 1;

		if (o + n > sizeof(argv))
			break;
		memcpy(argv + o, cmd[i], n);
		o += n;
	}
	procfs_argv_to_text(argv, o, buf, len);
}

static int run_make_cgroup(struct run_state *s)
{
	char root[4096];
	int r;

	r = runs_root_path(root, sizeof(root));
	if (r < 0) {
		log_err("failed to find the cgroup2 mount in /proc/self/mounts: %s",
			r == -ENOENT ? "cgroup2 is not mounted" : strerror(-r));
		return -1;
	}
	if (snprintf(s->scope_dir, sizeof(s->scope_dir), "%s/%s", root, s->a->scope) >=
	    (int)sizeof(s->scope_dir))
		return -1;
	if (snprintf(s->cgroup, sizeof(s->cgroup), "%s/run-%lld-%d", s->scope_dir,
		     (long long)(s->started_ns / 1000000000LL), (int)getpid()) >= (int)sizeof(s->cgroup))
		return -1;
	/*
	 * The run's own directory must be new (EEXIST is an error); a concurrent run may remove
	 * the scope directory between the two mkdirs: try again.
	 */
	for (int tries = 0; tries < 5; tries++) {
		r = cgroup_mkdir_p(s->scope_dir);
		if (r == 0)
			r = mkdir(s->cgroup, 0755) < 0 ? -errno : 0;
		if (r != -ENOENT)
			break;
	}
	if (r == 0)
		r = cgroup_id(s->cgroup, &s->cgroup_id);
	/* Held for the run's life: the agent's housekeeping leaves the cgroup alone meanwhile. */
	if (r == 0) {
		s->cgroup_fd = run_cgroup_hold(s->cgroup);
		if (s->cgroup_fd < 0)
			r = s->cgroup_fd;
	}
	if (r < 0) {
		log_err("failed to create cgroup %s: %s", s->cgroup, strerror(-r));
		return -1;
	}
	return 0;
}

/*
 * Removes the run's cgroup, its scope's when this was the scope's last run, and the runs
 * root when no agent watches it (an agent's hooks would not follow a new one).
 */
static void run_remove_cgroup(struct run_state *s)
{
	char root[4096];

	if (cgroup_remove(s->cgroup) < 0) {
		if (errno == EBUSY && s->agent)
			log_warn("processes the command left behind stay in %s; the agent records "
				 "them and removes the cgroup once they are gone", s->cgroup);
		else if (errno == EBUSY)
			log_warn("processes the command left behind stay in %s; they are no longer "
				 "watched", s->cgroup);
		return;
	}
	/* EBUSY while other runs of the scope are alive; an agent may hold it (scope rules). */
	cgroup_dir_remove_if_unheld(s->scope_dir);
	if (runs_root_path(root, sizeof(root)) == 0)
		cgroup_dir_remove_if_unheld(root);
}

struct exec_failure {
	int stage; /* 1: entering the cgroup, 2: exec */
	int err;
};

static void run_child(struct run_state *s, int errpipe)
{
	struct exec_failure f = { .stage = 1 };
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	f.err = -cgroup_enter(s->cgroup, 0);
	if (f.err == 0) {
		f.stage = 2;
		execvp(s->a->cmd[0], s->a->cmd);
		f.err = errno;
	}
	if (write(errpipe, &f, sizeof(f)) < 0)
		_exit(EXIT_FAIL);
	_exit(f.stage == 1 ? EXIT_FAIL : f.err == ENOENT ? 127 : 126);
}

/* nettrail cannot go on: the command, with all it started, must not run unwatched. */
static void run_kill_child(struct run_state *s)
{
	char path[4096 + 16];
	int fd;

	snprintf(path, sizeof(path), "%s/cgroup.kill", s->cgroup);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1) /* cgroup.kill: kernel 5.14 and later */
		kill(s->child, SIGKILL);
	if (fd >= 0)
		close(fd);
	waitpid(s->child, NULL, 0);
	s->child_done = 1;
}

/*
 * Forks the command into the run's cgroup. 0 once it runs; 127 or 126 when it could not be
 * executed (a run that ended at once, as a shell reports it); -1 when nettrail failed.
 */
static int run_spawn(struct run_state *s)
{
	struct exec_failure f;
	int pipefd[2];
	ssize_t n;

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		log_err("failed to create a pipe: %s", strerror(errno));
		return -1;
	}
	s->child = fork();
	if (s->child < 0) {
		log_err("failed to fork: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (s->child == 0) {
		close(pipefd[0]);
		run_child(s, pipefd[1]);
	}
	close(pipefd[1]);
	/* EOF: exec succeeded (the write end was close-on-exec). */
	n = read(pipefd[0], &f, sizeof(f));
	close(pipefd[0]);
	if (n == sizeof(f)) {
		waitpid(s->child, NULL, 0);
		s->child_done = 1;
		s->ended_ns = now_ns();
		if (f.stage == 1) {
			log_err("failed to enter cgroup %s: %s", s->cgroup, strerror(f.err));
			return -1;
		}
		log_err("failed to execute %s: %s", s->a->cmd[0], strerror(f.err));
		s->status = f.err == ENOENT ? 127 : 126;
		return s->status;
	}
	s->pidfd = (int)syscall(SYS_pidfd_open, s->child, 0);
	if (s->pidfd < 0) {
		log_err("failed to watch the command (pidfd_open): %s", strerror(errno));
		run_kill_child(s);
		return -1;
	}
	return 0;
}

static void run_reap(struct run_state *s)
{
	int wstatus;

	if (waitpid(s->child, &wstatus, 0) < 0)
		return;
	s->ended_ns = now_ns();
	s->child_done = 1;
	if (WIFEXITED(wstatus))
		s->status = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		s->status = 128 + WTERMSIG(wstatus);
}

/*
 * Signals sent to nettrail run go to the command. A terminal's Ctrl-C already reaches the
 * whole foreground process group, so SIGINT and SIGQUIT are forwarded only when sent by kill.
 */
static void run_forward_signal(struct run_state *s)
{
	struct signalfd_siginfo si;

	if (read(s->sigfd, &si, sizeof(si)) != sizeof(si))
		return;
	if ((si.ssi_signo == SIGINT || si.ssi_signo == SIGQUIT) && si.ssi_code != SI_USER)
		return;
	kill(s->child, (int)si.ssi_signo);
}

static int on_child_exit(struct tracker *t, int fd, void *ctx)
{
	run_reap(ctx);
	return 1;
}

static int on_run_signal(struct tracker *t, int fd, void *ctx)
{
	run_forward_signal(ctx);
	return 0;
}

/* With an agent: wait for the command, forwarding signals. */
static void run_wait_plain(struct run_state *s)
{
	struct pollfd p[2] = { { .fd = s->pidfd, .events = POLLIN }, { .fd = s->sigfd, .events = POLLIN } };

	while (!s->child_done) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents & POLLIN)
			run_forward_signal(s);
		if (p[0].revents & POLLIN)
			run_reap(s);
	}
	if (!s->child_done)
		run_reap(s);
}

/* With an agent: wait (at most 5 s) until it has committed everything up to the end. */
static void run_wait_agent_sync(struct store *st, int64_t until_ns)
{
	int r = sync_request();

	for (int i = 0; r == 0 && i < 100; i++) {
		int64_t synced = 0;

		if (store_get_state(st, "synced_ns", &synced) == 1 && synced >= until_ns) {
			sync_release();
			return;
		}
		usleep(50000);
	}
	sync_release();
	log_warn("the agent has not stored the run's last events yet; the report may be short");
}

static void run_report(struct run_state *s, struct store *st, int64_t lost)
{
	struct report_filter f = { .run_id = s->run_id, .limit = 40 };
	struct policy *p = NULL;
	int n;

	if (rules_load(st, &p) < 0)
		log_warn("failed to read the rules: the report shows no rule column");
	fprintf(stderr, "\nnettrail: run %lld (scope %s) exited %d after %.2f s; events lost: %lld%s\n",
		(long long)s->run_id, s->a->scope, s->status,
		(double)(s->ended_ns - s->started_ns) / 1e9, (long long)lost,
		s->agent ? " (by the agent while the run lasted)" : "");
	n = report_deps(store_db(st), &f, p, REPORT_TABLE, stderr);
	if (n == 0)
		fprintf(stderr, "no network destinations recorded\n");
	else if (n > f.limit)
		fprintf(stderr, "... and %d more destinations: nettrail deps --run %lld --db %s\n",
			n - f.limit, (long long)s->run_id, s->a->db);
	report_dns_summary(store_db(st), s->run_id, stderr);
	report_rules(store_db(st), &(struct report_filter){ .run_id = s->run_id }, p, stderr);
	policy_unref(p);
	fprintf(stderr, "database: %s  (sqlite3 %s \"select * from connections where run_id = %lld\")\n",
		s->a->db, s->a->db, (long long)s->run_id);
}

static int run_block_signals(struct run_state *s)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGQUIT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	s->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	return s->sigfd < 0 ? -errno : 0;
}

/* Runs the command with this process as the agent. Returns the exit status. */
static int run_embedded(struct run_state *s, struct store *st, int64_t *lost)
{
	struct watch w = { .runs_root = 0 };
	struct tracker_opts o = s->a->tracker;
	/* The DNS options came with s->a->tracker; the rest is set here. */
	o.db_path = s->a->db;
	o.watches = &w;
	o.n_watches = 1;
	o.ringbuf_size = s->a->ringbuf_size;
	o.queue_cap = s->a->queue_size;
	struct tracker_counts c;
	struct tracker *t;
	struct rusage ru;
	const char *why;
	char source[64];
	int r;

	snprintf(w.path, sizeof(w.path), "%s", s->cgroup);
	snprintf(w.scope, sizeof(w.scope), "%s", s->a->scope);
	snprintf(source, sizeof(source), "run:%lld", (long long)s->run_id);
	o.source = source;
	r = tracker_start(&o, &t, &why);
	if (r < 0) {
		log_err("failed to start: %s%s%s", why ? why : strerror(-r), why ? ": " : "",
			why ? strerror(-r) : "");
		return -1;
	}
	r = run_spawn(s);
	if (r == 0) {
		if (tracker_add_fd(t, s->pidfd, on_child_exit, s) < 0 ||
		    tracker_add_fd(t, s->sigfd, on_run_signal, s) < 0) {
			log_err("failed to watch the command in the event loop");
			run_kill_child(s);
			r = -1;
		} else if (tracker_run(t) < 0) {
			log_err("the event loop failed; stopping the command");
			run_kill_child(s);
			r = -1;
		}
	}
	tracker_finish(t, &c);
	getrusage(RUSAGE_SELF, &ru);
	log_debug("embedded agent: %llu events stored, peak RSS %ld KiB",
		  (unsigned long long)c.stored, ru.ru_maxrss);
	*lost = (int64_t)(c.ringbuf_full + c.queue_full + c.store_failed + c.bad + c.dns_queue_full);
	if (*lost)
		log_warn("%lld events lost: %llu ring buffer full, %llu queue full (%llu DNS queries), "
			 "%llu store failed", (long long)*lost, (unsigned long long)c.ringbuf_full,
			 (unsigned long long)(c.queue_full + c.dns_queue_full),
			 (unsigned long long)c.dns_queue_full, (unsigned long long)c.store_failed);
	return r == 0 ? s->status : r;
}

static int run_with_agent(struct run_state *s, struct store *st, int64_t *lost)
{
	int r = run_spawn(s);

	if (r != 0)
		return r;
	run_wait_plain(s);
	run_wait_agent_sync(st, s->ended_ns);
	*lost = report_lost_between(store_db(st), s->started_ns, now_ns());
	return s->status;
}

/* The database to use: an agent's, when one runs. NULL after a message if they conflict. */
static const char *run_pick_db(struct run_args *a, char *agent_db, size_t len, int *agent)
{
	*agent = agent_lock_probe(agent_db, len);
	if (!*agent)
		return a->db;
	if (a->db_given && !db_path_same(a->db, agent_db)) {
		log_err("an agent is running with database %s; pass --db %s or stop the agent",
			agent_db, agent_db);
		return NULL;
	}
	log_info("recording through the running agent (database %s)", agent_db);
	if (a->dns_given)
		log_warn("the DNS and enforcement options apply to a run without an agent; the "
			 "agent's own apply");
	return agent_db;
}

/* Records the run's start; 0, or -1 after a message. */
static int run_begin(struct run_state *s, struct store *st, int agent)
{
	char command[4096], host[256] = "";
	struct run_row row;

	gethostname(host, sizeof(host) - 1);
	run_command_text(s->a->cmd, command, sizeof(command));
	row = (struct run_row){ .scope = s->a->scope, .cgroup = s->cgroup,
				.cgroup_id = s->cgroup_id, .command = command, .host = host,
				.started_ns = s->started_ns, .mode = agent ? "agent" : "embedded" };
	if (store_run_begin(st, &row, &s->run_id) < 0) {
		log_err("failed to record the run in %s: %s", s->a->db, store_errmsg(st));
		return -1;
	}
	return 0;
}

/* The command has exited (status): record it, clean up, report. */
static void run_end(struct run_state *s, struct store *st, int64_t lost)
{
	if (!s->ended_ns)
		s->ended_ns = now_ns();
	if (store_run_end(st, s->run_id, s->ended_ns, s->status) < 0)
		log_warn("failed to record the end of run %lld: %s", (long long)s->run_id,
			 store_errmsg(st));
	run_remove_cgroup(s);
	if (s->a->report)
		run_report(s, st, lost);
}

int cmd_run(int argc, char **argv)
{
	struct run_args a = { 0 };
	struct run_state s = { .a = &a, .pidfd = -1, .sigfd = -1, .cgroup_fd = -1 };
	char agent_db[4096];
	struct store *st = NULL;
	const char *why;
	int agent, r, reg_fd = -1;
	int64_t lost = 0;

	r = run_parse(argc, argv, &a);
	if (r)
		return r;
	if (geteuid() != 0) {
		log_err("nettrail run needs root (CAP_BPF, CAP_SYS_ADMIN, CAP_PERFMON, CAP_NET_ADMIN)");
		return EXIT_FAIL;
	}
	s.started_ns = now_ns();
	if (run_make_cgroup(&s) < 0)
		return EXIT_FAIL;
	/*
	 * Registered before looking for an agent: an agent that takes its lock after this look
	 * finds the registration and leaves this run's cgroup to us (see runtime.h).
	 */
	if (embedded_register(s.cgroup_id, &reg_fd) < 0)
		log_warn("failed to register the run next to %s", agent_lock_path());
	a.db = run_pick_db(&a, agent_db, sizeof(agent_db), &agent);
	embedded_decide(s.cgroup_id, reg_fd, !agent);
	s.agent = agent;
	if (agent)
		reg_fd = -1;
	r = -1;
	if (!agent && loader_probe(&why) < 0)
		log_err("cannot record here: %s", why);
	else if (a.db && db_open(a.db, &st) == 0 && run_block_signals(&s) == 0 &&
		 run_begin(&s, st, agent) == 0)
		r = agent ? run_with_agent(&s, st, &lost) : run_embedded(&s, st, &lost);
	embedded_unregister(s.cgroup_id, reg_fd);
	if (r < 0) {
		/* nettrail could not do its job: leave no trace of a run that never ran. */
		if (s.run_id)
			store_run_delete(st, s.run_id);
		run_remove_cgroup(&s);
		store_close(st);
		r = EXIT_FAIL;
	} else {
		run_end(&s, st, lost);
		store_close(st);
		r = s.status;
	}
	if (s.pidfd >= 0)
		close(s.pidfd);
	if (s.sigfd >= 0)
		close(s.sigfd);
	if (s.cgroup_fd >= 0)
		close(s.cgroup_fd);
	return r;
}
