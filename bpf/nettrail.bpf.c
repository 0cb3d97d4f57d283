// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * nettrail's cgroup hooks: every connect() and every first datagram of an unconnected UDP
 * socket to a new destination, from any process in a watched cgroup, becomes one event on
 * the ring buffer, with the process captured here, at event time: a process that lives
 * 5 ms is gone before the agent could look at /proc.
 *
 * Every hook allows the operation: this file only observes. An event that cannot be
 * delivered is counted in `counters`, never dropped silently.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "kernel.bpf.h"
#include "nettrail.h"

#define SOCK_ALLOW 1

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The agent sizes it before load (--ringbuf-size); this is the default. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Unconnected UDP: one event per socket and destination, not one per datagram. */
struct udp_dest_key {
	__u64 cookie;
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 _pad[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct udp_dest_key);
	__type(value, __u8);
} udp_seen SEC(".maps");

/*
 * An agent started while `nettrail run`s that loaded their own programs are going leaves
 * those runs' cgroups (and their descendants) to them: no event twice. The runs' depth in
 * the hierarchy is not assumed (cgroup namespaces move the root), so every ancestor up to
 * EXCLUDED_MAX_DEPTH is looked up, only on hosts where such runs were found.
 */
#define EXCLUDED_MAX_DEPTH 16
const volatile __u32 exclusions = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} excluded SEC(".maps");

static __always_inline int cgroup_excluded(void)
{
	if (!exclusions)
		return 0;
#pragma unroll
	for (int level = 1; level <= EXCLUDED_MAX_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		if (!id) /* deeper than the current cgroup */
			return 0;
		if (bpf_map_lookup_elem(&excluded, &id))
			return 1;
	}
	return 0;
}

static __always_inline void counter_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

/* Processes that already had an event: the agent knows them. */
struct proc_key {
	__u64 start_ns;
	__u32 tgid;
	__u32 exec_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct proc_key);
	__type(value, __u8);
} procs_seen SEC(".maps");

/* 1 for the first event of this process image (and marks it seen), else 0. */
static __always_inline int proc_first_event(const struct nt_event *e)
{
	struct proc_key key = { .start_ns = e->start_ns, .tgid = e->pid, .exec_id = e->exec_id };
	__u8 one = 1;

	if (bpf_map_lookup_elem(&procs_seen, &key))
		return 0;
	bpf_map_update_elem(&procs_seen, &key, &one, BPF_ANY);
	return 1;
}

/*
 * Waking the agent for every event costs the watched process a context switch per connect.
 * The agent drains the ring buffer on its own every 100 ms anyway, so wake it only for the
 * first event of a process (the agent then reads /proc while the process most likely still
 * exists) or once a sixteenth of the buffer is in use (a burst wakes it long before the
 * buffer is full).
 */
static __always_inline __u64 ringbuf_wakeup_flags(int first)
{
	__u64 used, size;

	if (first)
		return BPF_RB_FORCE_WAKEUP;
	used = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	return used >= size / 16 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* The first bytes of argv, straight from the process's memory. */
static __always_inline void task_read_argv(struct task_struct *task, struct nt_event *e)
{
	unsigned long start = 0, end = 0, len;
	struct mm_struct *mm = task->mm;

	e->argv_len = 0;
	if (!mm) /* a kernel thread */
		return;
	start = mm->arg_start;
	end = mm->arg_end;
	if (end <= start)
		return;
	len = end - start;
	if (len > NT_ARGV_LEN)
		len = NT_ARGV_LEN;
	if (bpf_probe_read_user(e->argv, len, (const void *)start)) {
		counter_inc(NT_CNT_ARGV_FAULT);
		return;
	}
	e->argv_len = len;
}

/* Who is connecting; argv only for a process image's first event, the agent has it after. */
static __always_inline int event_fill_task(struct nt_event *e)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 uid_gid = bpf_get_current_uid_gid();
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	e->ts_ns = bpf_ktime_get_boot_ns();
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	/* The process is its thread group: a thread's own start time is not the process's. */
	e->start_ns = task->group_leader->start_boottime;
	e->ppid = task->real_parent->tgid;
	e->exec_id = (__u32)task->group_leader->self_exec_id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (!proc_first_event(e)) {
		e->argv_len = 0;
		return 0;
	}
	task_read_argv(task, e);
	return 1;
}

static __always_inline void sock4_dest(struct bpf_sock_addr *ctx, __u8 addr[16])
{
	__u32 ip = ctx->user_ip4;

	__builtin_memcpy(addr, &ip, 4);
}

static __always_inline void sock6_dest(struct bpf_sock_addr *ctx, __u8 addr[16])
{
	__u32 w[4];

	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	__builtin_memcpy(addr, w, 16);
}

/* Emit one event for this socket address; -ENOSPC when the ring buffer is full. */
static __always_inline int sock_emit(struct bpf_sock_addr *ctx, __u8 kind, __u8 family)
{
	struct nt_event *e;
	int first;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		counter_inc(NT_CNT_RINGBUF_FULL);
		return -ENOSPC;
	}
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	if (family == AF_INET)
		sock4_dest(ctx, e->addr);
	else
		sock6_dest(ctx, e->addr);
	e->family = family;
	e->port = bpf_ntohs((__u16)ctx->user_port);
	e->proto = ctx->protocol;
	e->kind = kind;
	e->verdict = NT_VERDICT_ALLOWED;
	e->sock_cookie = bpf_get_socket_cookie(ctx);
	first = event_fill_task(e);
	bpf_ringbuf_submit(e, ringbuf_wakeup_flags(first));
	return 0;
}

/*
 * sendmsg hooks run for every datagram that names its destination. Only the first one per
 * (socket, destination) is an event; the key is marked seen only once the event is on the
 * ring buffer, so a datagram whose event was lost (and counted) lets the next one try again.
 */
static __always_inline int sock_sendmsg(struct bpf_sock_addr *ctx, __u8 family)
{
	struct udp_dest_key key = {};
	__u8 one = 1;

	key.cookie = bpf_get_socket_cookie(ctx);
	key.family = family;
	key.port = (__u16)ctx->user_port;
	if (family == AF_INET)
		sock4_dest(ctx, key.addr);
	else
		sock6_dest(ctx, key.addr);
	if (bpf_map_lookup_elem(&udp_seen, &key))
		return 0;
	if (sock_emit(ctx, NT_EV_SENDMSG, family) == 0)
		bpf_map_update_elem(&udp_seen, &key, &one, BPF_ANY);
	return 0;
}

SEC("cgroup/connect4")
int nt_connect4(struct bpf_sock_addr *ctx)
{
	if (!cgroup_excluded())
		sock_emit(ctx, NT_EV_CONNECT, AF_INET);
	return SOCK_ALLOW;
}

SEC("cgroup/connect6")
int nt_connect6(struct bpf_sock_addr *ctx)
{
	if (!cgroup_excluded())
		sock_emit(ctx, NT_EV_CONNECT, AF_INET6);
	return SOCK_ALLOW;
}

SEC("cgroup/sendmsg4")
int nt_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (!cgroup_excluded())
		sock_sendmsg(ctx, AF_INET);
	return SOCK_ALLOW;
}

SEC("cgroup/sendmsg6")
int nt_sendmsg6(struct bpf_sock_addr *ctx)
{
	if (!cgroup_excluded())
		sock_sendmsg(ctx, AF_INET6);
	return SOCK_ALLOW;
}
