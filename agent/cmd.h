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
/* <cgroup2 mount>/nettrail, where `run` makes its cgroups. 0 or -errno. */
int runs_root_path(char *ret, size_t len);
/* Parses --ringbuf-size and --queue-size values; 0 or EXIT_USAGE after a message. */
int opt_ringbuf_size(const char *arg, size_t *ret);
int opt_queue_size(const char *arg, size_t *ret);

#endif /* NT_CMD_H */
