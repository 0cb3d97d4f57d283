/* SPDX-License-Identifier: MIT */
#ifndef NT_PROCFS_H
#define NT_PROCFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROCFS_CMDLINE_MAX 4096

struct proc_stat {
	pid_t pid;
	pid_t ppid;
	char comm[16];
	uint64_t start_ticks; /* field 22: clock ticks after boot */
};

/* Parses the text of /proc/PID/stat (comm may hold spaces and parentheses). 0 or -EBADMSG. */
int procfs_parse_stat(const char *buf, struct proc_stat *ret);

/*
 * Turns NUL-separated argv bytes into one line a shell user can read: arguments joined by
 * spaces, an argument with spaces or quotes single-quoted, control bytes as \xNN. Always
 * NUL-terminates out (truncating); returns the length written.
 */
size_t procfs_argv_to_text(const char *argv, size_t len, char *out, size_t outlen);

/* What /proc adds to an event: the full command line and the executable. */
struct proc_extra {
	pid_t ppid;
	char cmdline[PROCFS_CMDLINE_MAX];
	char exe[4096];
};

/*
 * Reads /proc/PID if it is still the process that started at start_ns (boot-time ns, as
 * task->start_boottime) and its command line still begins with the argv bytes seen at event
 * time: -ESRCH when it is gone or the pid was reused, -ESTALE when it has exec'd since.
 */
int procfs_read_process(pid_t pid, uint64_t start_ns, const char *argv, size_t argv_len,
			struct proc_extra *ret);

#endif /* NT_PROCFS_H */
