// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/utsname.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "event.h"
#include "log.h"
#include "util.h"
#include "loader.h"
#include "nettrail.skel.h"

#define LOADER_MAX_LINKS 64

#define BPF_CGROUP_UNIX_CONNECT_TYPE 49 /* UAPI value; the build's headers may predate it */

struct loader {
	struct nettrail_bpf *skel;
	struct bpf_link *links[LOADER_MAX_LINKS];
	int n_links;
	int ncpus;
	int unix_hook;
	/* The ring buffer's positions, mapped read-only for loader_ringbuf_usage. */
	const volatile unsigned long *rb_consumer, *rb_producer;
	size_t rb_size;
};



static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[1024];
	size_t n;

	if (level == LIBBPF_DEBUG && log_get_level() < NT_LOG_DEBUG)
		return 0;
	if (level == LIBBPF_INFO && log_get_level() < NT_LOG_DEBUG)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	if (n > 0 && line[n - 1] == '\n')
		line[n - 1] = '\0';
	log_debug("libbpf: %s", line);
	return 0;
}

/* This network namespace's cookie (SO_NETNS_COOKIE, 5.14+); 0 where the kernel cannot say. */
static uint64_t netns_cookie(void)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0;
	if (getsockopt(fd, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &len) < 0)
		cookie = 0;
	close(fd);
	return cookie;
}

/* 1 if the running kernel is at least major.minor. */
static int kernel_at_least(int major, int minor)
{
	struct utsname u;
	int ma = 0, mi = 0;

	if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
		return 1; /* unknown: let the probes below speak */
	return ma > major || (ma == major && mi >= minor);
}

/* The capabilities in the effective set that loading and attaching need, as one line. */
static const char *caps_missing(void)
{
	static const struct { int cap; const char *name; } needed[] = {
		{ 39 /* CAP_BPF */, "CAP_BPF" }, { CAP_SYS_ADMIN, "CAP_SYS_ADMIN" },
		{ 38 /* CAP_PERFMON */, "CAP_PERFMON" }, { CAP_NET_ADMIN, "CAP_NET_ADMIN" },
	};
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };
	static char msg[160];
	size_t o;

	if (syscall(SYS_capget, &hdr, data) < 0)
		return NULL;
	o = (size_t)snprintf(msg, sizeof(msg), "nettrail needs root; missing:");
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		int c = needed[i].cap;

		if (!(data[c / 32].effective & (1u << (c % 32))) && o < sizeof(msg))
			o += (size_t)snprintf(msg + o, sizeof(msg) - o, " %s", needed[i].name);
	}
	return strchr(msg, ' ') && o > strlen("nettrail needs root; missing:") ? msg : NULL;
}

/* One sentence on why loading cannot work here, or NULL if nothing obvious is missing. */
static const char *loader_diagnose(void)
{
	const char *caps = caps_missing();

	if (caps)
		return caps;
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
		return "the kernel has no BTF (/sys/kernel/btf/vmlinux): CONFIG_DEBUG_INFO_BTF is needed";
	if (!kernel_at_least(5, 11))
		return "the kernel is older than 5.11, which nettrail needs (ring buffer, BPF links, "
		       "cgroup-charged BPF memory)";
	if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, NULL) != 1)
		return "the kernel cannot run cgroup socket-address programs "
		       "(CONFIG_CGROUP_BPF is needed)";
	if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) != 1)
		return "the kernel has no BPF ring buffer";
	return NULL;
}

int loader_probe(const char **why)
{
	*why = loader_diagnose();
	return *why ? -1 : 0;
}

/* The ring buffer's consumer and producer pages, read-only: how full it is, from any thread. */
static void ringbuf_map_positions(struct loader *l)
{
	long page = sysconf(_SC_PAGESIZE);
	int fd = bpf_map__fd(l->skel->maps.events);
	void *c = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, 0);
	void *p = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, page);

	if (c == MAP_FAILED || p == MAP_FAILED) {
		if (c != MAP_FAILED)
			munmap(c, (size_t)page);
		if (p != MAP_FAILED)
			munmap(p, (size_t)page);
		return;
	}
	l->rb_size = bpf_map__max_entries(l->skel->maps.events);
	l->rb_producer = p;
	l->rb_consumer = c;
}

int loader_open(const struct loader_opts *o, struct loader **ret, const char **why)
{
	struct loader *l;
	int r;

	*why = NULL;
	libbpf_set_print(libbpf_log);
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->ncpus = libbpf_num_possible_cpus();
	if (l->ncpus <= 0) {
		r = l->ncpus < 0 ? l->ncpus : -EINVAL;
		goto out_free;
	}
	l->skel = nettrail_bpf__open();
	if (!l->skel) {
		r = -errno;
		goto out_free;
	}
	r = bpf_map__set_max_entries(l->skel->maps.events, (__u32)o->ringbuf_size);
	if (r < 0)
		goto out_free;
	l->skel->rodata->exclusions = o->n_excluded > 0;
	l->skel->rodata->dns_port = htons(o->dns_port);
	l->skel->rodata->dns_v6 = o->dns_v6 != 0;
	l->skel->rodata->agent_tgid = (uint32_t)getpid();
	l->skel->rodata->agent_netns = netns_cookie();
	l->skel->rodata->refuse_resolver_sockets = !o->allow_resolver_sockets;
	l->unix_hook = kernel_at_least(6, 7);
	if (l->unix_hook)
		bpf_program__set_expected_attach_type(l->skel->progs.nt_connect_unix,
						      BPF_CGROUP_UNIX_CONNECT_TYPE);
	else
		bpf_program__set_autoload(l->skel->progs.nt_connect_unix, false);
	/* libbpf 1.x charges BPF memory to the cgroup on kernels >= 5.11: no RLIMIT_MEMLOCK bump. */
	r = nettrail_bpf__load(l->skel);
	if (r < 0) {
		*why = loader_diagnose();
		if (!*why && r == -EPERM)
			*why = "loading BPF programs was refused: CAP_BPF and CAP_SYS_ADMIN are needed";
		goto out_free;
	}
	for (int i = 0; i < o->n_excluded; i++) {
		__u8 one = 1;

		r = bpf_map__update_elem(l->skel->maps.excluded, &o->excluded[i],
					 sizeof(o->excluded[i]), &one, sizeof(one), BPF_ANY);
		if (r < 0)
			goto out_free;
	}
	ringbuf_map_positions(l);
	for (unsigned i = 0; event_resolver_path(i); i++) {
		char key[NT_RESOLVER_PATH_LEN] = { 0 };
		__u32 idx = i;

		strncpy(key, event_resolver_path(i), sizeof(key) - 1);
		r = bpf_map__update_elem(l->skel->maps.resolver_paths, key, sizeof(key), &idx,
					 sizeof(idx), BPF_ANY);
		if (r < 0)
			goto out_free;
	}
	*ret = l;
	return 0;
out_free:
	if (!*why)
		*why = loader_diagnose();
	loader_close(l);
	return r;
}

int loader_attach(struct loader *l, const char *path)
{
	struct bpf_program *progs[] = {
		l->skel->progs.nt_connect4, l->skel->progs.nt_connect6,
		l->skel->progs.nt_sendmsg4, l->skel->progs.nt_sendmsg6,
		l->skel->progs.nt_recvmsg4, l->skel->progs.nt_recvmsg6,
		l->skel->progs.nt_getpeername4, l->skel->progs.nt_getpeername6,
		l->skel->progs.nt_egress, l->skel->progs.nt_connect_unix,
	};
	size_t n = l->unix_hook ? ARRAY_SIZE(progs) : ARRAY_SIZE(progs) - 1;
	int fd, r = 0;

	if (l->n_links + (int)n > LOADER_MAX_LINKS)
		return -E2BIG;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/*
	 * bpf_link: the attachment, DNS redirect included, lives exactly as long as this process
	 * (fail open).
	 */
	for (size_t i = 0; i < n; i++) {
		struct bpf_link *link = bpf_program__attach_cgroup(progs[i], fd);

		if (!link) {
			r = -errno;
			break;
		}
		l->links[l->n_links++] = link;
	}
	close(fd);
	return r;
}

int loader_unexclude(struct loader *l, uint64_t cgroup_id)
{
	int r = bpf_map__delete_elem(l->skel->maps.excluded, &cgroup_id, sizeof(cgroup_id), 0);

	return r == -ENOENT ? 0 : r;
}

int loader_block_put(struct loader *l, const struct nt_block_key *k, const struct nt_block_val *v)
{
	return bpf_map__update_elem(l->skel->maps.blocked_addrs, k, sizeof(*k), v, sizeof(*v),
				    BPF_ANY);
}

int loader_block_del(struct loader *l, const struct nt_block_key *k)
{
	int r = bpf_map__delete_elem(l->skel->maps.blocked_addrs, k, sizeof(*k), 0);

	return r == -ENOENT ? 0 : r;
}

int loader_scope_put(struct loader *l, uint64_t cgroup_id, uint32_t scope)
{
	return bpf_map__update_elem(l->skel->maps.scope_cgroups, &cgroup_id, sizeof(cgroup_id),
				    &scope, sizeof(scope), BPF_ANY);
}

void loader_policy_set(struct loader *l, int active, uint32_t levels)
{
	/* .bss is mapped into this process: the hooks see the values at their next run. */
	__atomic_store_n(&l->skel->bss->scope_levels, levels, __ATOMIC_RELEASE);
	__atomic_store_n(&l->skel->bss->policy_active, active ? 1u : 0u, __ATOMIC_RELEASE);
}

int loader_has_unix_hook(struct loader *l)
{
	return l->unix_hook;
}

int loader_dns_origin(struct loader *l, const struct nt_dns_key *key, struct nt_dns_origin *ret)
{
	int fd = bpf_map__fd(l->skel->maps.dns_origin);
	struct nt_dns_origins q;

	if (bpf_map_lookup_elem(fd, key, &q) < 0 || q.n == 0 || q.n > NT_DNS_ORIGIN_Q)
		return 0;
	/* The oldest copy is the packet the proxy reads now: packets of a socket stay in order. */
	*ret = q.o[0];
	if (q.n == 1) {
		bpf_map_delete_elem(fd, key);
		return 1;
	}
	memmove(&q.o[0], &q.o[1], (q.n - 1) * sizeof(q.o[0]));
	q.n--;
	bpf_map_update_elem(fd, key, &q, BPF_EXIST);
	return 1;
}

void loader_forget_procs(struct loader *l)
{
	int fd = bpf_map__fd(l->skel->maps.procs_seen);
	__u8 key[16], next[16];

	/* Delete the first key until none is left: deleting while iterating would skip some. */
	while (bpf_map_get_next_key(fd, NULL, next) == 0) {
		memcpy(key, next, sizeof(key));
		if (bpf_map_delete_elem(fd, key) < 0)
			break;
	}
}

void loader_ringbuf_usage(struct loader *l, uint64_t *used, uint64_t *size)
{
	unsigned long cons, prod;

	*used = *size = 0;
	if (!l->rb_consumer)
		return;
	*size = l->rb_size;
	/* Consumer first: read after it, the producer is never behind it. */
	cons = __atomic_load_n(l->rb_consumer, __ATOMIC_ACQUIRE);
	prod = __atomic_load_n(l->rb_producer, __ATOMIC_ACQUIRE);
	*used = prod > cons ? prod - cons : 0;
	if (*used > *size)
		*used = *size;
}

int loader_ringbuf_fd(struct loader *l)
{
	return bpf_map__fd(l->skel->maps.events);
}

int loader_counters(struct loader *l, uint64_t out[NT_CNT_MAX])
{
	uint64_t vals[l->ncpus];
	int fd = bpf_map__fd(l->skel->maps.counters);

	for (__u32 k = 0; k < NT_CNT_MAX; k++) {
		if (bpf_map_lookup_elem(fd, &k, vals) < 0)
			return -errno;
		out[k] = 0;
		for (int c = 0; c < l->ncpus; c++)
			out[k] += vals[c];
	}
	return 0;
}

void loader_detach(struct loader *l)
{
	for (int i = 0; i < l->n_links; i++)
		bpf_link__destroy(l->links[i]);
	l->n_links = 0;
}

void loader_close(struct loader *l)
{
	if (!l)
		return;
	if (l->rb_consumer) {
		munmap((void *)l->rb_consumer, (size_t)sysconf(_SC_PAGESIZE));
		munmap((void *)l->rb_producer, (size_t)sysconf(_SC_PAGESIZE));
	}
	loader_detach(l);
	nettrail_bpf__destroy(l->skel);
	free(l);
}
