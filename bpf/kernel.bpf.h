/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel fields nettrail reads, declared by hand and relocated by CO-RE
 * (preserve_access_index), instead of a generated vmlinux.h of every kernel type.
 */
#ifndef NETTRAIL_KERNEL_BPF_H
#define NETTRAIL_KERNEL_BPF_H

#include <linux/types.h>

/* From the libc headers, which a BPF build does not include. */
#define AF_INET 2
#define AF_INET6 10
#define ENOSPC 28
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* The kernel's side of a socket-address hook's context (6.7+: it carries the unix path). */
struct sockaddr;
struct bpf_sock_addr_kern {
	struct sockaddr *uaddr;
	__u32 uaddrlen;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct mm_struct *mm;
	__u64 start_boottime;
	__u64 self_exec_id;
	char comm[16];
} __attribute__((preserve_access_index));

#endif /* NETTRAIL_KERNEL_BPF_H */
