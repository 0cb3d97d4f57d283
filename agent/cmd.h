/* SPDX-License-Identifier: MIT */
#ifndef NT_CMD_H
#define NT_CMD_H

#include <stddef.h>

/* Exit codes of nettrail's own commands (`run` passes its command's status through). */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,  /* could not do the job: missing privilege or BPF, bad database, ... */
	EXIT_USAGE = 2, /* bad command line */
};

#define DEFAULT_DB "/var/lib/nettrail/nettrail.db"
#define DEFAULT_RINGBUF (8u << 20)
#define DEFAULT_QUEUE (1u << 18)

int cmd_agent(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_deps(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_policy(int argc, char **argv);

/* --db, else $NETTRAIL_DB, else DEFAULT_DB. */
const char *db_path_default(void);
/*
 * The database path made absolute, its directory resolved (the file may not exist yet), so
 * that an agent started in one directory and a run started in another name the same file.
 */
int db_path_absolute(const char *in, char *out, size_t len);
/* 1 if a and b name the same database file. */
int db_path_same(const char *a, const char *b);
/* Creates the database's directory (0750) if missing. 0 or -errno. */
int db_dir_ensure(const char *db_path);
/*
 * Opens (creating, migrating) the database read-write. 0, or -1 after a message. Commands
 * check that BPF can work before, so that a host without it is left no database file.
 */
struct store;
int db_open(const char *db_path, struct store **ret);
/*
 * For reading only (also on a read-only file system): an existing database, migrated first
 * if its schema is older. 0, or EXIT_FAIL after a message (none there: "no database at").
 */
int db_open_readonly(const char *db, struct store **ret);
/* <cgroup2 mount>/nettrail, where `run` makes its cgroups. 0 or -errno. */
int runs_root_path(char *ret, size_t len);
/* Parses --ringbuf-size and --queue-size values; 0 or EXIT_USAGE after a message. */
int opt_ringbuf_size(const char *arg, size_t *ret);
int opt_queue_size(const char *arg, size_t *ret);

/* The DNS options `agent` and `run` share: getopt codes, long options, help text. */
enum {
	OPT_DNS_FIRST = 0x100,
	OPT_DNS_PORT = OPT_DNS_FIRST,
	OPT_UPSTREAM,
	OPT_DNS_TIMEOUT,
	OPT_DNS_GRACE,
	OPT_NO_DNS,
	OPT_ALLOW_RESOLVER_SOCKETS,
	OPT_BLOCK_ANSWER,
	OPT_SHARED_ADDRESS,
	OPT_ENFORCE_LOOPBACK,
	OPT_BLOCK_ADDRESSES,
	OPT_DNS_END /* past the last: a code in [OPT_DNS_FIRST, OPT_DNS_END) goes to opt_dns */
};
#define DNS_LONG_OPTIONS                                                                       \
	{ "dns-port", required_argument, NULL, OPT_DNS_PORT },                                  \
	{ "upstream", required_argument, NULL, OPT_UPSTREAM },                                  \
	{ "dns-timeout", required_argument, NULL, OPT_DNS_TIMEOUT },                            \
	{ "dns-grace", required_argument, NULL, OPT_DNS_GRACE },                                \
	{ "no-dns", no_argument, NULL, OPT_NO_DNS },                                            \
	{ "allow-resolver-sockets", no_argument, NULL, OPT_ALLOW_RESOLVER_SOCKETS },              \
	{ "block-answer", required_argument, NULL, OPT_BLOCK_ANSWER },                          \
	{ "shared-address", required_argument, NULL, OPT_SHARED_ADDRESS },                      \
	{ "enforce-loopback", no_argument, NULL, OPT_ENFORCE_LOOPBACK },                        \
	{ "block-addresses", required_argument, NULL, OPT_BLOCK_ADDRESSES }
#define DNS_USAGE                                                                              \
	"      --upstream ADDR[:PORT]  send every query there, not to the resolver each\n"      \
	"                              process asked for\n"                                     \
	"      --dns-port PORT         the DNS proxy's port on 127.0.0.1 and ::1 (default: a\n" \
	"                              free one)\n"                                              \
	"      --dns-timeout DURATION  SERVFAIL when the upstream has not answered (500ms, 5s;\n" \
	"                              default 2s)\n"                                          \
	"      --dns-grace DURATION    a resolved name names its address this long past the\n"  \
	"                              answer's TTL (default 2m)\n"                              \
	"      --allow-resolver-sockets  let watched processes use nscd and systemd-resolved's\n" \
	"                              socket (their queries then go unrecorded)\n"             \
	"      --no-dns                leave DNS alone: no proxy, no DNS records\n"               \
	"      --block-answer RCODE    the answer to a lookup of an enforced name: nxdomain\n"  \
	"                              (default; final for every resolver) or refused\n"        \
	"      --shared-address MODE   an address an enforced and a reachable name share:\n"   \
	"                              allow (default: the reachable name keeps working) or\n"  \
	"                              block\n"                                                 \
	"      --enforce-loopback      refuse also loopback addresses an enforced name resolved\n" \
	"                              to (default: the host's own services stay reachable)\n" \
	"      --block-addresses N     answer addresses remembered for enforcement (default\n" \
	"                              16384): raise it when nettrail_block_answers_dropped_total\n" \
	"                              grows\n"
struct tracker_opts;
/* Sets the DNS defaults in o. */
void opt_dns_defaults(struct tracker_opts *o);
/* Handles one DNS option (c is its code); 0, or EXIT_USAGE after a message. */
int opt_dns(int c, const char *arg, struct tracker_opts *o);

#endif /* NT_CMD_H */
