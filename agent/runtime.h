/* SPDX-License-Identifier: MIT */
#ifndef NT_RUNTIME_H
#define NT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

/*
 * Coordination on one host, through files in $NETTRAIL_RUNTIME_DIR (else /run/nettrail):
 * - agent.lock: held (flock, exclusive) by the one agent, holds its database path; `run`
 *   probes it to record through the agent rather than load the programs a second time.
 * - embedded/<cgroup id>: a `run` that loads the programs itself, with its pid. An agent
 *   started later leaves those cgroups to their run instead of recording them twice.
 */
#define RUNTIME_DIR_DEFAULT "/run/nettrail"

const char *agent_lock_path(void);
/* Takes the lock and writes db_path in it; -EBUSY (and the holder's db in busy_db) if held. */
int agent_lock_take(const char *db_path, int *ret_fd, char *busy_db, size_t len);
/* 1 and the agent's database if an agent holds the lock, 0 if none. */
int agent_lock_probe(char *db, size_t len);

/* Registers the cgroup of an embedded run (before it probes for an agent). 0 or -errno. */
int embedded_register(uint64_t cgroup_id);
void embedded_unregister(uint64_t cgroup_id);
/* The cgroup ids of embedded runs still alive, at most max; stale entries are removed. */
int embedded_list(uint64_t *ids, int max);

#endif /* NT_RUNTIME_H */
