// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * nettrail's cgroup hooks: every connect() and every first datagram of an unconnected UDP
 * socket to a new destination, from any process in a watched cgroup, becomes one event on
 * the ring buffer, with the process captured here, at event time: a process that lives
 * 5 ms is gone before the agent could look at /proc.
 *
 * The hooks observe: they allow every connect, except a watched process's connect to a local
 * resolver's unix socket (see below) and, once an operator enforces a rule, a connect to an
 * address that an enforced name resolved to (see "address enforcement"). DNS sockets are
 * pointed at the agent's proxy, which records and forwards each query. An event that cannot
 * be delivered is counted in `counters`, never dropped silently.
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

/* ---- address enforcement ---------------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NT_BLOCK_ENTRIES);
	__type(key, struct nt_block_key);
	__type(value, struct nt_block_val);
} blocked_addrs SEC(".maps");

/* The cgroups that name a scope with rules of its own (a runs-root scope, a watch). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} scope_cgroups SEC(".maps");

/*
 * Set by the agent at run time: whether blocked_addrs holds anything (until then the hooks
 * pay nothing), and whether any scope has rules of its own (non-zero: scope_cgroups is
 * looked up).
 */
__u32 policy_active = 0;
__u32 scope_levels = 0; /* non-zero: some scope has rules of its own */

static __always_inline __u32 scope_of(__u64 (*ancestor)(void *, int), void *ctx)
{
	/*
	 * Levels count from the hierarchy's root, which a cgroup namespace hides from the agent:
	 * every ancestor is looked at, from the top, until the current cgroup is passed.
	 */
	if (!scope_levels)
		return 0;
#pragma unroll
	for (int level = 1; level < NT_SCOPE_LEVELS; level++) {
		__u64 id = ancestor(ctx, level);
		__u32 *idx;

		if (!id)
			return 0;
		idx = bpf_map_lookup_elem(&scope_cgroups, &id);
		if (idx)
			return *idx;
	}
	return 0;
}

/* The entry deciding an address for a scope: the scope's own, else every scope's. */
static __always_inline struct nt_block_val *block_lookup(__u32 scope, const __u8 addr[16])
{
	struct nt_block_key key = { .scope = scope };
	struct nt_block_val *v = 0;

	__builtin_memcpy(key.addr, addr, 16);
	if (scope)
		v = bpf_map_lookup_elem(&blocked_addrs, &key);
	if (!v) {
		key.scope = 0;
		v = bpf_map_lookup_elem(&blocked_addrs, &key);
	}
	if (!v || v->verdict != NT_VERDICT_BLOCKED)
		return 0;
	if (v->expires_ns && v->expires_ns < bpf_ktime_get_boot_ns())
		return 0; /* the answer ran out: the agent removes it soon */
	return v;
}

static __u64 current_ancestor(void *ctx, int level)
{
	return bpf_get_current_ancestor_cgroup_id(level);
}

/* The rule id if the current scope may not reach addr (IPv6 or v4-mapped), else 0. */
static __always_inline __u32 sock_blocked(const __u8 addr[16])
{
	struct nt_block_val *v;

	if (!policy_active)
		return 0;
	v = block_lookup(scope_of(current_ancestor, 0), addr);
	return v ? (v->rule_id ? v->rule_id : 1) : 0;
}

/* The address a socket hook names, as a block key holds it. */
static __always_inline void sock_key_addr(struct bpf_sock_addr *ctx, __u8 family, __u8 addr[16])
{
	__u32 w[4] = { 0, 0, bpf_htonl(0xffff), ctx->user_ip4 };

	if (family == AF_INET6) {
		w[0] = ctx->user_ip6[0];
		w[1] = ctx->user_ip6[1];
		w[2] = ctx->user_ip6[2];
		w[3] = ctx->user_ip6[3];
	}
	__builtin_memcpy(addr, w, 16);
}

/*
 * DNS goes to the proxy whatever the resolver's address: the proxy enforces names. Other
 * connects and datagrams to an enforced name's address are refused (EPERM).
 */
static __always_inline __u32 sock_check(struct bpf_sock_addr *ctx, __u8 family)
{
	__u8 addr[16];

	if (!policy_active || ctx->user_port == bpf_htons(53))
		return 0;
	sock_key_addr(ctx, family, addr);
	return sock_blocked(addr);
}

/* Emit one event for this socket address; -ENOSPC when the ring buffer is full. */
static __always_inline int sock_emit(struct bpf_sock_addr *ctx, __u8 kind, __u8 family,
				     __u32 rule_id)
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
	e->verdict = rule_id ? NT_VERDICT_BLOCKED : NT_VERDICT_ALLOWED;
	e->rule_id = rule_id;
	e->_pad = 0;
	e->sock_cookie = bpf_get_socket_cookie(ctx);
	first = event_fill_task(e);
	bpf_ringbuf_submit(e, ringbuf_wakeup_flags(first));
	return 0;
}

/*
 * sendmsg hooks run for every datagram that names its destination. Only the first one per
 * (socket, destination) is an event; the key is marked seen only once the event is on the
 * ring buffer, so a datagram whose event was lost (and counted) lets the next one try again.
 * Every datagram to an enforced address is refused, the first one recorded.
 */
static __always_inline int sock_sendmsg(struct bpf_sock_addr *ctx, __u8 family, __u32 rule_id)
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
	/* A verdict of its own: a destination that was allowed, then blocked, is an event again. */
	key._pad[0] = rule_id != 0;
	if (bpf_map_lookup_elem(&udp_seen, &key))
		return 0;
	if (sock_emit(ctx, NT_EV_SENDMSG, family, rule_id) == 0)
		bpf_map_update_elem(&udp_seen, &key, &one, BPF_ANY);
	return 0;
}

/* ---- DNS: redirect to the agent's proxy ----------------------------------------------------- */

/*
 * The proxy's port on 127.0.0.1 (and on ::1 when dns_v6), network byte order; 0 when there is
 * no proxy, and then nothing is redirected. The agent's own sockets (its upstream queries) and
 * sockets of another network namespace (whose loopback is not the proxy's) are left alone.
 */
const volatile __u16 dns_port = 0;
const volatile __u8 dns_v6 = 0;
const volatile __u32 agent_tgid = 0;
const volatile __u64 agent_netns = 0; /* 0: unknown, not checked */
const volatile __u8 refuse_resolver_sockets = 1;

#define DNS_PORT_BE bpf_htons(53)
#define LOOPBACK4_BE bpf_htonl(0x7f000001) /* INADDR_LOOPBACK */

/* Per socket: the resolver it asked for, and who asked. Freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct nt_dns_origin);
} dns_socks SEC(".maps");

/* Per query, keyed as the proxy sees it; the proxy takes the oldest out as it reads. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nt_dns_key);
	__type(value, struct nt_dns_origins);
} dns_origin SEC(".maps");

/* The same id to several resolvers: queued behind the earlier copies, up to NT_DNS_ORIGIN_Q. */
static __always_inline void dns_file_origin(const struct nt_dns_key *key, __u64 cookie,
					    const struct nt_dns_origin *o)
{
	struct nt_dns_origins *q = bpf_map_lookup_elem(&dns_origin, key);
	struct nt_dns_origins fresh = { .cookie = cookie, .n = 1 };
	__u32 n;

	if (q && q->cookie == cookie && q->n < NT_DNS_ORIGIN_Q) {
		n = q->n & (NT_DNS_ORIGIN_Q - 1);
		__builtin_memcpy(&q->o[n], o, sizeof(*o));
		q->n = n + 1;
		return;
	}
	__builtin_memcpy(&fresh.o[0], o, sizeof(*o));
	bpf_map_update_elem(&dns_origin, key, &fresh, BPF_ANY);
}

static __always_inline int dns_should_redirect(struct bpf_sock_addr *ctx)
{
	if (!dns_port || ctx->user_port != DNS_PORT_BE)
		return 0;
	if (ctx->protocol != IPPROTO_UDP && ctx->protocol != IPPROTO_TCP)
		return 0;
	if (bpf_get_current_pid_tgid() >> 32 == agent_tgid)
		return 0;
	if (agent_netns && bpf_get_netns_cookie(ctx) != agent_netns)
		return 0;
	return 1;
}

/* Remembers the resolver and the caller with the socket; 0 if it could not. */
static __always_inline int dns_remember(struct bpf_sock_addr *ctx, __u8 family)
{
	struct nt_dns_origin *o;
	struct bpf_sock *sk = ctx->sk;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task;

	if (!sk)
		return 0;
	o = bpf_sk_storage_get(&dns_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o) {
		counter_inc(NT_CNT_DNS_UNREDIRECTED);
		return 0;
	}
	task = bpf_get_current_task_btf();
	o->pid = pid_tgid >> 32;
	o->tid = (__u32)pid_tgid;
	o->start_ns = task->group_leader->start_boottime;
	o->exec_id = (__u32)task->group_leader->self_exec_id;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->port = (__u16)ctx->user_port;
	o->family = family;
	__builtin_memset(o->addr, 0, sizeof(o->addr));
	if (family == AF_INET)
		sock4_dest(ctx, o->addr);
	else
		sock6_dest(ctx, o->addr);
	return 1;
}

static __always_inline void dns_redirect4(struct bpf_sock_addr *ctx)
{
	if (!dns_should_redirect(ctx) || !dns_remember(ctx, AF_INET))
		return;
	ctx->user_ip4 = LOOPBACK4_BE;
	ctx->user_port = dns_port;
}

/* A v4-mapped resolver goes to the proxy's IPv4 socket, a native one to ::1 if it listens. */
static __always_inline void dns_redirect6(struct bpf_sock_addr *ctx)
{
	int mapped;

	if (!dns_should_redirect(ctx))
		return;
	/*
	 * A link-local resolver (fe80::1%eth0) is reached through a scope id the hook cannot
	 * see: the proxy could not reach it, so it is left alone.
	 */
	if ((ctx->user_ip6[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000))
		return;
	mapped = ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 &&
		 ctx->user_ip6[2] == bpf_htonl(0xffff);
	if (!mapped && !dns_v6)
		return;
	if (!dns_remember(ctx, AF_INET6))
		return;
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = mapped ? bpf_htonl(0xffff) : 0;
	ctx->user_ip6[3] = mapped ? LOOPBACK4_BE : bpf_htonl(1);
	ctx->user_port = dns_port;
}

/* Replies come from the proxy: show them as the resolver's, as the client expects. */
static __always_inline struct nt_dns_origin *dns_origin_of(struct bpf_sock_addr *ctx)
{
	if (!dns_port || ctx->user_port != dns_port || !ctx->sk)
		return 0;
	return bpf_sk_storage_get(&dns_socks, ctx->sk, 0, 0);
}

static __always_inline void dns_unredirect4(struct bpf_sock_addr *ctx)
{
	struct nt_dns_origin *o;
	__u32 ip;

	if (ctx->user_ip4 != LOOPBACK4_BE)
		return;
	o = dns_origin_of(ctx);
	if (!o || o->family != AF_INET)
		return;
	__builtin_memcpy(&ip, o->addr, 4);
	ctx->user_ip4 = ip;
	ctx->user_port = o->port;
}

static __always_inline void dns_unredirect6(struct bpf_sock_addr *ctx)
{
	struct nt_dns_origin *o;
	__u32 w[4] = { 0, 0, bpf_htonl(0xffff), 0 };
	int mapped;

	if (ctx->user_ip6[0] != 0 || ctx->user_ip6[1] != 0)
		return;
	mapped = ctx->user_ip6[2] == bpf_htonl(0xffff) && ctx->user_ip6[3] == LOOPBACK4_BE;
	if (!mapped && !(ctx->user_ip6[2] == 0 && ctx->user_ip6[3] == bpf_htonl(1)))
		return;
	o = dns_origin_of(ctx);
	if (!o)
		return;
	/*
	 * An IPv6 socket sending to a v4-mapped resolver without connecting goes through the
	 * IPv4 sendmsg hook, which keeps an IPv4 origin: the reply shows it v4-mapped again.
	 */
	if (o->family == AF_INET6)
		__builtin_memcpy(w, o->addr, 16);
	else if (mapped)
		__builtin_memcpy(&w[3], o->addr, 4);
	else
		return;
	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
	ctx->user_port = o->port;
}

struct ip4_hdr {
	__u8 ver_ihl, tos;
	__u16 len, id, frag;
	__u8 ttl, proto;
	__u16 csum;
	__u32 saddr, daddr;
};

struct ip6_hdr {
	__u32 flow;
	__u16 len;
	__u8 next, hops;
	__u32 saddr[4], daddr[4];
};

/*
 * A packet to the proxy leaves a redirected socket: file its origin under what the proxy will
 * see of it, the client's port and, for UDP, the query id (a port reused by another socket
 * within the same moment cannot then take this query's origin). For TCP, the SYN does it.
 */
static __always_inline int dns_packet_key(struct __sk_buff *skb, struct nt_dns_key *key)
{
	__u16 ports[2], id;
	__u32 l4;
	__u8 flags;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct ip4_hdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.daddr != LOOPBACK4_BE)
			return 0;
		l4 = (ip.ver_ihl & 0xf) * 4;
		key->proto = ip.proto;
		key->family = AF_INET;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ip6_hdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		if (ip.daddr[0] || ip.daddr[1] || ip.daddr[2] || ip.daddr[3] != bpf_htonl(1))
			return 0;
		l4 = sizeof(ip);
		key->proto = ip.next;
		key->family = AF_INET6;
	} else {
		return 0;
	}
	if (key->proto != IPPROTO_UDP && key->proto != IPPROTO_TCP)
		return 0;
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) || ports[1] != dns_port)
		return 0;
	key->port = bpf_ntohs(ports[0]);
	if (key->proto == IPPROTO_UDP) {
		if (bpf_skb_load_bytes(skb, l4 + 8, &id, sizeof(id)))
			return 0;
		key->id = bpf_ntohs(id);
		return 1;
	}
	if (bpf_skb_load_bytes(skb, l4 + 13, &flags, 1) || !(flags & 0x02 /* SYN */))
		return 0;
	return 1;
}

static __u64 skb_ancestor(void *ctx, int level)
{
	return bpf_skb_ancestor_cgroup_id(ctx, level);
}

/*
 * The backstop: a socket connected before its address was enforced (or one that never
 * connects, e.g. raw) sends no more to it. Its packets are dropped and counted, not recorded
 * one by one. Packets to the DNS proxy always pass: the proxy enforces names.
 */
static __always_inline int egress_blocked(struct __sk_buff *skb)
{
	__u32 w[4] = { 0, 0, bpf_htonl(0xffff), 0 };
	__u16 ports[2];
	__u32 l4;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct ip4_hdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		w[3] = ip.daddr;
		l4 = (ip.ver_ihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ip6_hdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		__builtin_memcpy(w, ip.daddr, 16);
		l4 = sizeof(ip);
	} else {
		return 0;
	}
	if (!block_lookup(scope_of(skb_ancestor, skb), (const __u8 *)w))
		return 0;
	/* The proxy listens on 127.0.0.1 and ::1 only. */
	if (dns_port && bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) == 0 &&
	    ports[1] == dns_port &&
	    ((w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff) && w[3] == bpf_htonl(0x7f000001)) ||
	     (w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == bpf_htonl(1))))
		return 0;
	return 1;
}

SEC("cgroup_skb/egress")
int nt_egress(struct __sk_buff *skb)
{
	struct nt_dns_key key = {};
	struct nt_dns_origin *o;
	struct bpf_sock *sk;

	/*
	 * Every packet of a watched cgroup comes here: only a socket that was pointed at the
	 * proxy has an origin, and that lookup is cheaper than reading the packet's headers.
	 */
	if (policy_active && egress_blocked(skb)) {
		counter_inc(NT_CNT_EGRESS_BLOCKED);
		return 0;
	}
	if (!dns_port)
		return 1;
	sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	o = bpf_sk_storage_get(&dns_socks, sk, 0, 0);
	if (o && dns_packet_key(skb, &key))
		dns_file_origin(&key, bpf_get_socket_cookie(skb), o);
	return 1;
}

/* ---- hooks ----------------------------------------------------------------------------------- */

SEC("cgroup/connect4")
int nt_connect4(struct bpf_sock_addr *ctx)
{
	__u32 rule;

	if (cgroup_excluded())
		return SOCK_ALLOW;
	rule = sock_check(ctx, AF_INET);
	sock_emit(ctx, NT_EV_CONNECT, AF_INET, rule);
	if (rule)
		return 0; /* EPERM */
	dns_redirect4(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/connect6")
int nt_connect6(struct bpf_sock_addr *ctx)
{
	__u32 rule;

	if (cgroup_excluded())
		return SOCK_ALLOW;
	rule = sock_check(ctx, AF_INET6);
	sock_emit(ctx, NT_EV_CONNECT, AF_INET6, rule);
	if (rule)
		return 0;
	dns_redirect6(ctx);
	return SOCK_ALLOW;
}

/* The event names the resolver; the datagram then goes to the proxy. */
SEC("cgroup/sendmsg4")
int nt_sendmsg4(struct bpf_sock_addr *ctx)
{
	__u32 rule;

	if (cgroup_excluded())
		return SOCK_ALLOW;
	rule = sock_check(ctx, AF_INET);
	sock_sendmsg(ctx, AF_INET, rule);
	if (rule)
		return 0;
	dns_redirect4(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/sendmsg6")
int nt_sendmsg6(struct bpf_sock_addr *ctx)
{
	__u32 rule;

	if (cgroup_excluded())
		return SOCK_ALLOW;
	rule = sock_check(ctx, AF_INET6);
	sock_sendmsg(ctx, AF_INET6, rule);
	if (rule)
		return 0;
	dns_redirect6(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/recvmsg4")
int nt_recvmsg4(struct bpf_sock_addr *ctx)
{
	dns_unredirect4(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/recvmsg6")
int nt_recvmsg6(struct bpf_sock_addr *ctx)
{
	dns_unredirect6(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/getpeername4")
int nt_getpeername4(struct bpf_sock_addr *ctx)
{
	dns_unredirect4(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/getpeername6")
int nt_getpeername6(struct bpf_sock_addr *ctx)
{
	dns_unredirect6(ctx);
	return SOCK_ALLOW;
}

/* ---- unix-socket resolvers ------------------------------------------------------------------- */

/*
 * glibc asks nscd or systemd-resolved over a unix socket where nsswitch says so: the query
 * would then leave from the daemon, not from the watched process. Such connects are events,
 * and refused unless the agent was told otherwise, so that glibc falls back to port 53.
 * The section name is one libbpf knows; the loader sets the real attach type
 * (BPF_CGROUP_UNIX_CONNECT, kernel 6.7) and loads this program only where it exists.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, char[NT_RESOLVER_PATH_LEN]);
	__type(value, __u32);
} resolver_paths SEC(".maps");

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* The connect's path, zero-padded, or 0 if it cannot be a resolver's. */
static __always_inline int unix_path(struct bpf_sock_addr *ctx, char path[NT_RESOLVER_PATH_LEN])
{
	struct bpf_sock_addr_kern *sa = bpf_cast_to_kern_ctx(ctx);
	__u32 plen;
	long n;

	if (sa->uaddrlen <= 2)
		return 0;
	plen = sa->uaddrlen - 2;
	n = bpf_probe_read_kernel_str(path, NT_RESOLVER_PATH_LEN, (char *)sa->uaddr + 2);
	if (n <= 1)
		return 0;
	/* A path not NUL-terminated within the address ends at its length. */
#pragma unroll
	for (__u32 i = 0; i < NT_RESOLVER_PATH_LEN; i++)
		if (i >= plen || i >= (__u32)n - 1)
			path[i] = 0;
	return 1;
}

SEC("cgroup/connect4")
int nt_connect_unix(struct bpf_sock_addr *ctx)
{
	char path[NT_RESOLVER_PATH_LEN] = {};
	struct nt_event *e;
	__u32 *idx;
	int first;

	if (cgroup_excluded() || !unix_path(ctx, path))
		return SOCK_ALLOW;
	idx = bpf_map_lookup_elem(&resolver_paths, path);
	if (!idx)
		return SOCK_ALLOW;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		__builtin_memset(e->addr, 0, sizeof(e->addr));
		e->addr[0] = (__u8)*idx;
		e->family = NT_AF_UNIX;
		e->port = 0;
		e->proto = 0;
		e->kind = NT_EV_UNIX;
		e->verdict = refuse_resolver_sockets ? NT_VERDICT_BLOCKED : NT_VERDICT_ALLOWED;
		e->rule_id = 0;
		e->_pad = 0;
		e->sock_cookie = bpf_get_socket_cookie(ctx);
		first = event_fill_task(e);
		bpf_ringbuf_submit(e, ringbuf_wakeup_flags(first));
	} else {
		counter_inc(NT_CNT_RINGBUF_FULL);
	}
	return refuse_resolver_sockets ? 0 : SOCK_ALLOW;
}
