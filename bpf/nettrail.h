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
};

enum nt_verdict {
	NT_VERDICT_ALLOWED = 0,
	NT_VERDICT_WOULD_BLOCK = 1,
	NT_VERDICT_BLOCKED = 2,
};

/* Indices of the per-CPU counter map `counters`. */
enum nt_counter {
	NT_CNT_RINGBUF_FULL = 0, /* event not delivered: bpf_ringbuf_reserve failed */
	NT_CNT_ARGV_FAULT = 1,   /* event delivered without argv: user memory not readable */
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
};

#define NT_EVENT_SIZE 352

#endif /* NETTRAIL_H */
