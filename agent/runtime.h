/* SPDX-License-Identifier: MIT */
#ifndef NT_RUNTIME_H
#define NT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Coordination on one host, through files in $NETTRAIL_RUNTIME_DIR (else /run/nettrail):
 * - agent.lock: held (flock, exclusive) by the one agent, holds its database path; `run`
 *   probes it to record through the agent rather than load the programs a second time.
 * - embedded/<cgroup id>: a `run` that loads the programs itself. It holds a lock on the file
 *   for its whole life (exclusive while it decides between agent and embedded, shared
 *   after), so the lock, not a pid that may be reused, says whether it is alive. An agent
 *   started later leaves those cgroups to their run instead of recording them twice.
 *
 * The runs root <cgroup2>/nettrail is one per host: an agent holds a shared lock on that
 * directory itself for its life, so that the last `run` to finish (with whatever runtime
 * directory) removes it only when no agent watches it.
 */
#define RUNTIME_DIR_DEFAULT "/run/nettrail"

const char *agent_lock_path(void);
/* Takes the lock and writes db_path in it; -EBUSY (and the holder's db in busy_db) if held. */
int agent_lock_take(const char *db_path, int *ret_fd, char *busy_db, size_t len);
/* 1 and the agent's database if an agent holds the lock, 0 if none. */
int agent_lock_probe(char *db, size_t len);

/* Registers a run's cgroup before it looks for an agent; the fd holds the lock. 0 or -errno. */
int embedded_register(uint64_t cgroup_id, int *ret_fd);
/* After looking: keep the registration (recording itself) or drop it (an agent records). */
void embedded_decide(uint64_t cgroup_id, int fd, int embedded);
/* At the end of an embedded run. */
void embedded_unregister(uint64_t cgroup_id, int fd);
/* The cgroup ids of embedded runs still alive, at most max; stale entries are removed. */
int embedded_list(uint64_t *ids, int max);
/* 1 while the embedded run of that cgroup is alive. */
int embedded_alive(uint64_t cgroup_id);

/*
 * sync-<pid>: a `run` waiting for the agent to commit its last events. The agent publishes
 * agent_state.synced_ns when events came in or while such a request exists, so an idle agent
 * writes nothing.
 */
int sync_request(void);
void sync_release(void);
int sync_requested(void);

/*
 * A run holds a shared lock on its cgroup directory for its life: the agent removes a run's
 * cgroup only when it can take that lock (the run is gone), whatever pid namespace it ran in.
 */
int run_cgroup_hold(const char *path);
/* Removes the cgroup of a run that is gone; 1 removed, 0 not. */
int run_cgroup_remove_if_abandoned(const char *path);

/*
 * A cgroup directory an agent needs to stay (the runs root; the directory of a scope with
 * rules of its own, whose id the hooks know): created if missing and held with a shared lock
 * for the agent's life. The fd (and the directory's inode in ret_ino), or -errno.
 */
int cgroup_dir_hold(const char *path, ino_t *ret_ino);
/* 1 while path is still the directory of that inode (not removed, or removed and re-made). */
int cgroup_dir_same(const char *path, ino_t ino);
/* Removes such a directory if nobody holds it and nothing is in it. */
void cgroup_dir_remove_if_unheld(const char *path);

#endif /* NT_RUNTIME_H */
