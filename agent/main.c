// SPDX-License-Identifier: MIT
/* nettrail: what does this script reach over the network, and what would break without it? */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "blocks.h"
#include "cgroup.h"
#include "cmd.h"
#include "dns.h"
#include "dnsproxy.h"
#include "log.h"
#include "parse.h"
#include "store.h"
#include "tracker.h"

static const char usage[] =
	"usage: nettrail COMMAND [OPTIONS]\n"
	"\n"
	"Records every connect and DNS attempt of chosen cgroups, with the process that made it.\n"
	"\n"
	"commands:\n"
	"  run      run a command in a watched cgroup and print what it reached\n"
	"  agent    watch cgroups until stopped (long-running, for systemd)\n"
	"  deps     print the recorded dependencies, one line per destination\n"
	"  events   print the most recent recorded connections\n"
	"  prune    delete what was recorded before a given age\n"
	"  policy   rules per domain: monitor, enforce or allow, applied live\n"
	"  version  print the version\n"
	"\n"
	"`nettrail COMMAND --help` describes each. The database is --db PATH, else $NETTRAIL_DB,\n"
	"else " DEFAULT_DB ".\n";

const char *db_path_default(void)
{
	const char *env = getenv("NETTRAIL_DB");

	return env && *env ? env : DEFAULT_DB;
}

int db_path_absolute(const char *in, char *out, size_t len)
{
	char joined[PATH_MAX], dir[PATH_MAX], real[PATH_MAX];
	const char *base;
	char *slash;

	if (in[0] == '/') {
		if (snprintf(joined, sizeof(joined), "%s", in) >= (int)sizeof(joined))
			return -ENAMETOOLONG;
	} else {
		if (!getcwd(dir, sizeof(dir)))
			return -errno;
		if (snprintf(joined, sizeof(joined), "%s/%s", dir, in) >= (int)sizeof(joined))
			return -ENAMETOOLONG;
	}
	memcpy(dir, joined, sizeof(dir));
	slash = strrchr(dir, '/');
	base = joined + (slash - dir) + 1;
	*slash = '\0';
	/* A directory that does not exist yet is kept as written; db_dir_ensure makes it. */
	if (!realpath(dir[0] ? dir : "/", real))
		snprintf(real, sizeof(real), "%s", dir);
	if (snprintf(out, len, "%s/%s", strcmp(real, "/") ? real : "", base) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int db_path_same(const char *a, const char *b)
{
	char ra[PATH_MAX], rb[PATH_MAX];
	struct stat sa, sb;

	if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	return db_path_absolute(a, ra, sizeof(ra)) == 0 && db_path_absolute(b, rb, sizeof(rb)) == 0 &&
	       !strcmp(ra, rb);
}

int db_dir_ensure(const char *db_path)
{
	char dir[4096];
	struct stat st;
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", db_path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return -errno;
	if (stat(dir, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int db_open_readonly(const char *db, struct store **ret)
{
	int r;

	if (access(db, F_OK) < 0) {
		log_err("no database at %s: nothing has been recorded there (see --db)", db);
		return EXIT_FAIL;
	}
	r = store_open(db, STORE_READONLY, ret);
	if (r == -ENOMEDIUM)
		r = store_open(db, 0, ret); /* an older schema: migrate it first */
	if (r < 0) {
		log_err("failed to open database %s: %s", db, store_strerror(r));
		return EXIT_FAIL;
	}
	return 0;
}

int db_open(const char *db_path, struct store **ret)
{
	int r = db_dir_ensure(db_path);

	if (r < 0) {
		log_err("failed to create the directory of %s: %s", db_path, strerror(-r));
		return -1;
	}
	r = store_open(db_path, 0, ret);
	if (r < 0) {
		log_err("failed to open database %s: %s", db_path, store_strerror(r));
		return -1;
	}
	return 0;
}

int runs_root_path(char *ret, size_t len)
{
	char mnt[4096];
	int r = cgroup_find_mount(mnt, sizeof(mnt));

	if (r < 0)
		return r;
	if (snprintf(ret, len, "%s/nettrail", mnt) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

int opt_ringbuf_size(const char *arg, size_t *ret)
{
	uint64_t v;

	if (parse_size(arg, 4096, 1ULL << 30, &v) < 0 || (v & (v - 1)) != 0) {
		log_err("--ringbuf-size must be a power of two from 4K to 1G, not '%s'", arg);
		return EXIT_USAGE;
	}
	*ret = (size_t)v;
	return 0;
}

int opt_queue_size(const char *arg, size_t *ret)
{
	uint64_t v;

	if (parse_u64(arg, 1, 1ULL << 24, &v) < 0) {
		log_err("--queue-size must be a number of events from 1 to 16777216, not '%s'", arg);
		return EXIT_USAGE;
	}
	*ret = (size_t)v;
	return 0;
}

void opt_dns_defaults(struct tracker_opts *o)
{
	o->dns = 1;
	o->dns_opts.timeout_ms = 2000;
	o->dns_opts.learn_blocked = 1;
	o->dns_grace_ns = 120 * 1000000000LL;
	o->block_addrs = BLOCKS_ADDR_CAP;
}

int opt_dns(int c, const char *arg, struct tracker_opts *o)
{
	uint64_t v;
	int64_t ns;

	switch (c) {
	case OPT_DNS_PORT:
		if (parse_u64(arg, 1, 65535, &v) < 0) {
			log_err("--dns-port must be a port from 1 to 65535, not '%s'", arg);
			return EXIT_USAGE;
		}
		o->dns_opts.port = (uint16_t)v;
		return 0;
	case OPT_UPSTREAM:
		if (dnsproxy_parse_upstream(arg, &o->dns_opts.upstream) < 0) {
			log_err("--upstream must be an IP address with an optional port "
				"(192.0.2.1, 192.0.2.1:5353, [2001:db8::1]:53), not '%s'", arg);
			return EXIT_USAGE;
		}
		return 0;
	case OPT_DNS_TIMEOUT:
		if (parse_duration(arg, &ns) < 0 || ns < 100000000LL || ns > 60000000000LL) {
			log_err("--dns-timeout must be a duration from 100ms to 60s, not '%s'", arg);
			return EXIT_USAGE;
		}
		o->dns_opts.timeout_ms = (int)(ns / 1000000);
		return 0;
	case OPT_DNS_GRACE:
		if (parse_duration(arg, &ns) < 0) {
			log_err("--dns-grace must be a duration (30s, 5m, 1h), not '%s'", arg);
			return EXIT_USAGE;
		}
		o->dns_grace_ns = ns;
		return 0;
	case OPT_NO_DNS:
		o->dns = 0;
		return 0;
	case OPT_ALLOW_RESOLVER_SOCKETS:
		o->allow_resolver_sockets = 1;
		return 0;
	case OPT_BLOCK_ANSWER:
		if (!strcmp(arg, "nxdomain"))
			o->dns_opts.block_rcode = DNS_R_NXDOMAIN;
		else if (!strcmp(arg, "refused"))
			o->dns_opts.block_rcode = DNS_R_REFUSED;
		else {
			log_err("--block-answer must be nxdomain or refused, not '%s'", arg);
			return EXIT_USAGE;
		}
		return 0;
	case OPT_SHARED_ADDRESS:
		if (strcmp(arg, "allow") && strcmp(arg, "block")) {
			log_err("--shared-address must be allow or block, not '%s'", arg);
			return EXIT_USAGE;
		}
		o->shared_block = !strcmp(arg, "block");
		return 0;
	case OPT_ENFORCE_LOOPBACK:
		o->enforce_loopback = 1;
		return 0;
	case OPT_BLOCK_ADDRESSES:
		if (parse_u64(arg, 1, BLOCKS_ADDR_CAP_MAX, &v) < 0) {
			log_err("--block-addresses must be a number from 1 to %u, not '%s'",
				BLOCKS_ADDR_CAP_MAX, arg);
			return EXIT_USAGE;
		}
		o->block_addrs = (size_t)v;
		return 0;
	}
	return EXIT_USAGE;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "run", cmd_run }, { "agent", cmd_agent }, { "deps", cmd_deps }, { "events", cmd_events },
	{ "prune", cmd_prune },
	{ "policy", cmd_policy },
};

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;
	static char prog[32];

	if (!cmd) {
		fputs(usage, stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		fputs(usage, stdout);
		return EXIT_OK;
	}
	if (!strcmp(cmd, "version") && argc > 2 &&
	    (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
		puts("usage: nettrail version\n\nPrints nettrail's version and the schema version it writes.");
		return EXIT_OK;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("nettrail %s (schema %d)\n", NT_VERSION, store_schema_latest());
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(cmd, commands[i].name))
			continue;
		/* getopt's own messages then read "nettrail run: unrecognized option ...". */
		snprintf(prog, sizeof(prog), "nettrail %s", cmd);
		argv[1] = prog;
		return commands[i].fn(argc - 1, argv + 1);
	}
	fprintf(stderr, "nettrail: unknown command '%s'\n\n%s", cmd, usage);
	return EXIT_USAGE;
}
