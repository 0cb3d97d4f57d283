// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "parse.h"
#include "procfs.h"
#include "util.h"

int procfs_parse_stat(const char *buf, struct proc_stat *ret)
{
	const char *open_paren = strchr(buf, '(');
	const char *close_paren = strrchr(buf, ')');
	unsigned long long start;
	size_t comm_len;
	int pid, ppid;
	char state;

	if (!open_paren || !close_paren || close_paren < open_paren)
		return -EBADMSG;
	if (sscanf(buf, "%d ", &pid) != 1)
		return -EBADMSG;
	/* After ") ": state(3) ppid(4) ... starttime(22), i.e. 18 fields after ppid. */
	if (sscanf(close_paren + 1,
		   " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &state, &ppid, &start) != 3)
		return -EBADMSG;
	comm_len = (size_t)(close_paren - open_paren - 1);
	if (comm_len >= sizeof(ret->comm))
		comm_len = sizeof(ret->comm) - 1;
	ret->pid = pid;
	ret->ppid = ppid;
	memcpy(ret->comm, open_paren + 1, comm_len);
	ret->comm[comm_len] = '\0';
	ret->start_ticks = start;
	return 0;
}

static int arg_needs_quotes(const char *a, size_t n)
{
	if (n == 0)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (strchr(" \t'\"\\$`;&|<>(){}*?!#~", a[i]))
			return 1;
	return 0;
}

/* Appends s[0..n) to out at *o, escaping control bytes. -1 once out is full. */
static int text_append(char *out, size_t outlen, size_t *o, const char *s, size_t n, int quoted)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		size_t elen;

		if (c < 0x20 || c == 0x7f)
			elen = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", c);
		else if (quoted && c == '\'')
			elen = (size_t)snprintf(esc, sizeof(esc), "'\\''");
		else {
			esc[0] = (char)c;
			elen = 1;
		}
		if (*o + elen >= outlen)
			return -1;
		memcpy(out + *o, esc, elen);
		*o += elen;
	}
	return 0;
}

/* One argument, quoted if a shell would need it. -1 once out is full. */
static int text_append_arg(char *out, size_t outlen, size_t *o, const char *a, size_t n)
{
	int quoted = arg_needs_quotes(a, n);

	if (*o > 0 && text_append(out, outlen, o, " ", 1, 0) < 0)
		return -1;
	if (quoted && text_append(out, outlen, o, "'", 1, 0) < 0)
		return -1;
	if (text_append(out, outlen, o, a, n, quoted) < 0)
		return -1;
	if (quoted && text_append(out, outlen, o, "'", 1, 0) < 0)
		return -1;
	return 0;
}

size_t procfs_argv_to_text(const char *argv, size_t len, char *out, size_t outlen)
{
	size_t o = 0, i = 0;

	if (outlen == 0)
		return 0;
	out[0] = '\0';
	if (len == 0)
		return 0;
	/* The NUL after the last argument ends it; it does not start an empty one. */
	if (argv[len - 1] == '\0')
		len--;
	while (i <= len) {
		const char *a = argv + i;
		const char *nul = memchr(a, '\0', len - i);
		size_t n = nul ? (size_t)(nul - a) : len - i;

		/* Text cut short stops at a whole piece, never at a half-escaped one. */
		if (text_append_arg(out, outlen, &o, a, n) < 0)
			break;
		if (!nul)
			break;
		i += n + 1;
	}
	out[o] = '\0';
	return o;
}

int procfs_read_process(pid_t pid, uint64_t start_ns, const char *argv, size_t argv_len,
			struct proc_extra *ret)
{
	_cleanup_free_ char *stat = NULL, *cmdline = NULL;
	uint64_t ns_per_tick = 1000000000ULL / (uint64_t)sysconf(_SC_CLK_TCK);
	char path[64], exe[sizeof(ret->exe)];
	struct proc_stat st;
	size_t len;
	ssize_t n;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	r = read_file(path, 4096, &stat, NULL);
	if (r < 0)
		return r == -ENOENT ? -ESRCH : r;
	if (procfs_parse_stat(stat, &st) < 0)
		return -EBADMSG;
	if (st.start_ticks != start_ns / ns_per_tick)
		return -ESRCH; /* the pid now names another process */

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	r = read_file(path, 1 << 20, &cmdline, &len);
	if (r < 0)
		return r == -ENOENT ? -ESRCH : r;
	/* An exited process not yet reaped has an empty command line: it is gone. */
	if (len == 0)
		return -ESRCH;
	/* An exec after the event would show another program under the same pid and start. */
	if (argv_len > len || memcmp(cmdline, argv, argv_len) != 0)
		return -ESTALE;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';

	ret->ppid = st.ppid;
	procfs_argv_to_text(cmdline, len, ret->cmdline, sizeof(ret->cmdline));
	memcpy(ret->exe, exe, sizeof(exe));
	return 0;
}
