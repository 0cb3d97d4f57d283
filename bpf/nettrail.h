/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The layout shared by bpf/nettrail.bpf.c and the agent: UAPI types only, explicit padding.
 * The agent checks sizeof(struct nt_event) at build time, so a drift fails the build.
 */
#ifndef NETTRAIL_H
#define NETTRAIL_H

#include <linux/types.h>

#define NT_COMM_LEN 16
#define NT_ARGV_LEN 256 /* first bytes of argv, NUL-separated as in /proc/PID/cmdline */

enum nt_event_kind {
	NT_EV_CONNECT = 1, /* connect(): TCP, or a connected UDP socket */
	NT_EV_SENDMSG = 2, /* first datagram of an unconnected UDP socket to one destination */
	NT_EV_UNIX = 3,    /* connect() to a local resolver's unix socket; addr[0] names which */
};

#define NT_AF_UNIX 1
#define NT_RESOLVER_PATH_LEN 64 /* key of `resolver_paths`: the path, zero-padded */

enum nt_verdict {
	NT_VERDICT_ALLOWED = 0,
	NT_VERDICT_WOULD_BLOCK = 1,
	NT_VERDICT_BLOCKED = 2,
};

/* Indices of the per-CPU counter map `counters`. */
enum nt_counter {
	NT_CNT_RINGBUF_FULL = 0, /* event not delivered: bpf_ringbuf_reserve failed */
	NT_CNT_ARGV_FAULT = 1,   /* event delivered without argv: user memory not readable */
	NT_CNT_DNS_UNREDIRECTED = 2, /* a DNS socket left to its resolver: no per-socket memory */
	NT_CNT_EGRESS_BLOCKED = 3,   /* packets dropped: to an enforced name's address */
	NT_CNT_MAX = 4,
};

struct nt_event {
	__u64 ts_ns;       /* bpf_ktime_get_boot_ns() */
	__u64 start_ns;    /* task start, boot-time ns: (pid, start_ns) names a process */
	__u64 cgroup_id;
	__u64 sock_cookie;
	__u32 pid;         /* tgid */
	__u32 tid;
	__u32 ppid;        /* tgid of the real parent */
	__u32 uid;
	__u32 gid;
	__u16 port;        /* host byte order */
	__u8 family;       /* AF_INET or AF_INET6 */
	__u8 proto;        /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 kind;         /* enum nt_event_kind */
	__u8 verdict;      /* enum nt_verdict */
	__u16 argv_len;    /* bytes valid in argv; 0 after the first event of a process image */
	__u32 exec_id;     /* task->self_exec_id: (pid, start_ns, exec_id) names one image */
	__u8 addr[16];     /* network byte order; IPv4 in the first 4 bytes */
	char comm[NT_COMM_LEN];
	char argv[NT_ARGV_LEN];
	__u32 rule_id;     /* NT_VERDICT_BLOCKED: the rule whose address it was (rules.id) */
	__u32 _pad;
};

#define NT_EVENT_SIZE 360

/*
 * DNS redirect. A watched process's DNS socket is pointed at the agent's proxy on loopback;
 * the resolver it asked for and who asked are kept with the socket, then, once its packet to
 * the proxy leaves, under the key the proxy can see: the client's port and the query id.
 */
struct nt_dns_origin {
	__u64 start_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u32 tid;
	__u32 exec_id;
	__u16 port;    /* the resolver's port, network byte order */
	__u8 family;   /* AF_INET or AF_INET6, as the socket named the resolver */
	__u8 _pad;
	__u8 addr[16]; /* the resolver, network byte order, as the socket named it */
};

/*
 * The origins filed under one key, oldest first: a socket may send one query to several
 * resolvers at once (musl does), each copy with the same port and id, and the proxy reads
 * them in the order they were sent.
 */
#define NT_DNS_ORIGIN_Q 4
struct nt_dns_origins {
	__u64 cookie; /* the socket's: another socket's packet under the key starts over */
	__u32 n;      /* valid entries in o */
	__u32 _pad;
	struct nt_dns_origin o[NT_DNS_ORIGIN_Q];
};

struct nt_dns_key {
	__u16 port;   /* the client's port, host byte order */
	__u16 id;     /* the query's id, host byte order; 0 for TCP, where the connection is the key */
	__u8 family;  /* of the packet that reached the proxy: AF_INET or AF_INET6 */
	__u8 proto;   /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 _pad[2];
};

/*
 * Address enforcement. The agent files the addresses of enforced names (as DNS answers gave
 * them) under the scope whose rules decided, 0 for the rules of every scope; a scope with
 * rules of its own is named by the cgroups in `scope_cgroups`. The hooks look up the
 * connecting scope's entry first, then scope 0's: an ALLOWED entry of a scope overrides a
 * block of scope 0 (an allow rule of that scope).
 */
struct nt_block_key {
	__u32 scope;   /* 0: every scope */
	__u8 addr[16]; /* IPv6, or IPv4 as ::ffff:a.b.c.d, network byte order */
};

struct nt_block_val {
	__u64 expires_ns; /* boot-time ns: the answer's TTL and the grace period; 0: never */
	__u32 rule_id;    /* rules.id, or NT_RULE_DEFAULT */
	__u8 verdict;     /* NT_VERDICT_BLOCKED, or NT_VERDICT_ALLOWED to override scope 0 */
	__u8 _pad[3];
};

#define NT_RULE_DEFAULT 0xffffffffu /* rule_id of an entry a scope default decided */
#define NT_BLOCK_ENTRIES 65536 /* size of blocked_addrs: the agent keeps within it */
#define NT_SCOPE_LEVELS 32 /* cgroup depths a scope's cgroup may be at: bits of scope_levels */

#endif /* NETTRAIL_H */
