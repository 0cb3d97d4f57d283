/* SPDX-License-Identifier: MIT */
#ifndef NT_EVENT_H
#define NT_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include "nettrail.h"

/* The layout the BPF object was built with: a drift fails the build, not the decoding. */
#include <stddef.h>
_Static_assert(sizeof(struct nt_event) == NT_EVENT_SIZE,
	       "struct nt_event differs between bpf/nettrail.h and the agent");
_Static_assert(offsetof(struct nt_event, pid) == 32 && offsetof(struct nt_event, port) == 52 &&
		       offsetof(struct nt_event, argv_len) == 58 &&
		       offsetof(struct nt_event, exec_id) == 60 &&
		       offsetof(struct nt_event, addr) == 64 && offsetof(struct nt_event, comm) == 80 &&
		       offsetof(struct nt_event, argv) == 96 &&
		       offsetof(struct nt_event, rule_id) == 352,
	       "struct nt_event has holes or moved fields");

/* A connection event as the agent keeps it: decoded, normalised, wall-clock time. */
struct conn_record {
	int64_t time_ns;    /* ns since the Unix epoch */
	uint64_t start_ns;  /* process start, boot-time ns */
	uint32_t exec_id;   /* which exec of that process: (pid, start_ns, exec_id) */
	uint64_t cgroup_id;
	uint32_t pid;
	uint32_t tid;       /* the thread that called connect() */
	uint32_t ppid;
	uint32_t uid;
	uint32_t gid;
	uint16_t port;
	uint8_t family;     /* AF_INET or AF_INET6, v4-mapped already turned into AF_INET */
	uint8_t proto;
	uint8_t kind;
	uint8_t verdict;
	uint8_t addr[16];
	int64_t rule_id;    /* the rule that decided the verdict; 0: none */
	const char *rule;   /* its pattern (or "default"), while the caller holds it; NULL: none */
};

/*
 * Checks and decodes one ring-buffer sample. boot_to_wall_ns converts the kernel's boot-time
 * stamp to the Unix epoch (see event_boot_to_wall_ns). 0, or -EBADMSG for a sample of the
 * wrong size or with a family, kind or verdict the agent does not know.
 */
int event_decode(const void *data, size_t len, int64_t boot_to_wall_ns, struct conn_record *ret);

/* CLOCK_REALTIME - CLOCK_BOOTTIME, in ns, measured now. */
int64_t event_boot_to_wall_ns(void);

/* The path of local resolver idx (see NT_EV_UNIX), or NULL past the last. */
const char *event_resolver_path(unsigned idx);

const char *event_verdict_name(int verdict);
const char *event_kind_name(int kind);

#endif /* NT_EVENT_H */
