// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include "addr.h"
#include "event.h"

int event_decode(const void *data, size_t len, int64_t boot_to_wall_ns, struct conn_record *ret)
{
	struct nt_event e;

	if (len != sizeof(e))
		return -EBADMSG;
	memcpy(&e, data, sizeof(e)); /* the sample may not be aligned for direct access */
	if (e.kind == NT_EV_UNIX) {
		if (e.family != NT_AF_UNIX || !event_resolver_path(e.addr[0]))
			return -EBADMSG;
	} else if (e.kind != NT_EV_CONNECT && e.kind != NT_EV_SENDMSG) {
		return -EBADMSG;
	} else if (e.family != AF_INET && e.family != AF_INET6) {
		return -EBADMSG;
	}
	if (e.verdict > NT_VERDICT_BLOCKED || e.argv_len > NT_ARGV_LEN)
		return -EBADMSG;
	/* No real boot clock comes near this; a sample that does is not to be trusted. */
	if (e.ts_ns > INT64_MAX || __builtin_add_overflow((int64_t)e.ts_ns, boot_to_wall_ns, &ret->time_ns))
		return -EBADMSG;

	ret->start_ns = e.start_ns;
	ret->exec_id = e.exec_id;
	ret->cgroup_id = e.cgroup_id;
	ret->pid = e.pid;
	ret->tid = e.tid;
	ret->ppid = e.ppid;
	ret->uid = e.uid;
	ret->gid = e.gid;
	ret->port = e.port;
	ret->proto = e.proto;
	ret->kind = e.kind;
	ret->verdict = e.verdict;
	ret->rule_id = e.verdict == NT_VERDICT_BLOCKED ? e.rule_id : 0;
	ret->rule = NULL;
	memcpy(ret->addr, e.addr, sizeof(ret->addr));
	ret->family = (uint8_t)addr_normalize(e.family, ret->addr);
	return 0;
}

/*
 * glibc's local resolvers: nss-resolve's varlink socket, and nscd's under both names glibc
 * may use. An NT_EV_UNIX event's addr[0] is an index here, so the order is fixed.
 */
static const char *const resolver_paths[] = {
	"/run/systemd/resolve/io.systemd.Resolve",
	"/run/nscd/socket",
	"/var/run/nscd/socket",
};

const char *event_resolver_path(unsigned idx)
{
	return idx < sizeof(resolver_paths) / sizeof(resolver_paths[0]) ? resolver_paths[idx] : NULL;
}

int64_t event_boot_to_wall_ns(void)
{
	struct timespec rt, bt;

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_BOOTTIME, &bt);
	return ((int64_t)rt.tv_sec - bt.tv_sec) * 1000000000LL + ((int64_t)rt.tv_nsec - bt.tv_nsec);
}

const char *event_verdict_name(int verdict)
{
	switch (verdict) {
	case NT_VERDICT_ALLOWED: return "allowed";
	case NT_VERDICT_WOULD_BLOCK: return "would_block";
	case NT_VERDICT_BLOCKED: return "blocked";
	default: return "unknown";
	}
}

const char *event_kind_name(int kind)
{
	switch (kind) {
	case NT_EV_CONNECT: return "connect";
	case NT_EV_SENDMSG: return "sendto";
	case NT_EV_UNIX: return "connect";
	default: return "unknown";
	}
}
