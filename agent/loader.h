/* SPDX-License-Identifier: MIT */
#ifndef NT_LOADER_H
#define NT_LOADER_H

#include <stddef.h>
#include <stdint.h>
#include "nettrail.h"

struct loader;

struct loader_opts {
	size_t ringbuf_size;      /* a power of two, at least the page size */
	const uint64_t *excluded; /* cgroups (and their descendants) not this loader's to record */
	int n_excluded;
	uint16_t dns_port;        /* the DNS proxy's port on loopback; 0: no redirect */
	int dns_v6;               /* the proxy also listens on ::1 */
	int allow_resolver_sockets; /* let watched processes reach nscd/systemd-resolved */
};


/*
 * Can this process load and attach nettrail's programs here? 0, or -1 with *why saying in
 * one sentence what is missing (a capability, BTF, a kernel feature). Cheap; creates nothing.
 */
int loader_probe(const char **why);

/* Opens and loads the BPF programs. On failure, *why says in one sentence what is missing. */
int loader_open(const struct loader_opts *o, struct loader **ret, const char **why);

/* Attaches every hook to the cgroup at path; its descendants are covered. */
int loader_attach(struct loader *l, const char *path);

/* The ring-buffer map's fd, and the sum over CPUs of each counter. */
int loader_ringbuf_fd(struct loader *l);
int loader_counters(struct loader *l, uint64_t out[NT_CNT_MAX]);

/* 1 if unix-socket resolver connects can be seen here (kernel 6.7 and later). */
int loader_has_unix_hook(struct loader *l);

/*
 * The origin of a DNS query that reached the proxy (who sent it, and to which resolver),
 * taken out of the map: 1 found, 0 not.
 */
int loader_dns_origin(struct loader *l, const struct nt_dns_key *key, struct nt_dns_origin *ret);

/* Bytes of the ring buffer not yet consumed, and its size. */
void loader_ringbuf_usage(struct loader *l, uint64_t *used, uint64_t *size);

/* Forgets which programs had an event: their next event carries argv and wakes the agent. */
void loader_forget_procs(struct loader *l);

/* Records that cgroup again (its embedded run has ended). */
int loader_unexclude(struct loader *l, uint64_t cgroup_id);

/*
 * Address enforcement (bpf/nettrail.h): an entry of blocked_addrs, a cgroup naming a scope,
 * and whether the hooks look at all (active) and at which cgroup depths scopes are (levels,
 * a bit per depth). 0 or -errno.
 */
int loader_block_put(struct loader *l, const struct nt_block_key *k, const struct nt_block_val *v);
int loader_block_del(struct loader *l, const struct nt_block_key *k);
int loader_scope_put(struct loader *l, uint64_t cgroup_id, uint32_t scope);
void loader_policy_set(struct loader *l, int active, uint32_t levels);

/* Detaches every hook: from now on no event is produced; the ring buffer stays readable. */
void loader_detach(struct loader *l);

/* Detaches everything and frees. */
void loader_close(struct loader *l);

#endif /* NT_LOADER_H */
