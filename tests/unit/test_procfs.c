// SPDX-License-Identifier: MIT
/* Unit tests for agent/procfs.c: /proc/PID/stat parsing, argv rendering, and reading a live
 * process only while it is still the one seen at event time. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "procfs.h"

/* ---- helpers, independent of the code under test --------------------------------------- */

/* Reads a whole (small) file; returns its length, or -1. */
static ssize_t slurp(const char *path, char *buf, size_t size)
{
	size_t used = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while (used < size) {
		ssize_t n = read(fd, buf + used, size - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	return (ssize_t)used;
}

static uint64_t ns_per_tick(void)
{
	return 1000000000ULL / (uint64_t)sysconf(_SC_CLK_TCK);
}

/* Field 22 (starttime) of /proc/PID/stat, counting fields after the last ')'. 0 or -1. */
static int read_start_ticks(pid_t pid, uint64_t *ret)
{
	char path[64], buf[4096], *p, *save = NULL;
	ssize_t n;
	int field = 3;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	n = slurp(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	for (char *tok = strtok_r(p + 1, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		if (field++ == 22) {
			*ret = strtoull(tok, NULL, 10);
			return 0;
		}
	}
	return -1;
}

static uint64_t start_ticks_of(pid_t pid)
{
	uint64_t ticks = 0;

	if (read_start_ticks(pid, &ticks) < 0)
		fail_msg("cannot read field 22 of /proc/%d/stat", (int)pid);
	return ticks;
}

/* start_ns as the BPF side reports it (task->start_boottime), for a process on this machine. */
static uint64_t start_ns_of(pid_t pid)
{
	return start_ticks_of(pid) * ns_per_tick();
}

static int ends_with(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);

	return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* ---- procfs_parse_stat ----------------------------------------------------------------- */

/* A full 52-field line as the kernel prints it. */
static void test_stat_real_line(void **state)
{
	static const char line[] =
		"4242 (bash) S 4200 4242 4242 34816 4300 4194560 2345 11 0 0 3 1 0 0 20 0 1 0 "
		"987654 9158656 1312 18446744073709551615 94209183690752 94209184581069 "
		"140727607302144 0 0 65536 3670020 1266777851 1 0 0 17 2 0 0 0 0 0 "
		"94209184816432 94209184865096 94209214644224 140727607304829 140727607304835 "
		"140727607304835 140727607308270 0\n";
	struct proc_stat st;

	(void)state;
	memset(&st, 0xaa, sizeof(st));
	assert_int_equal(procfs_parse_stat(line, &st), 0);
	assert_int_equal(st.pid, 4242);
	assert_int_equal(st.ppid, 4200);
	assert_string_equal(st.comm, "bash");
	assert_true(st.start_ticks == 987654);
}

/* comm is whatever the process named itself: spaces and parentheses included. Only the
 * last ')' ends it. 22 fields are all the parser needs. */
static void test_stat_tricky_comm(void **state)
{
	struct proc_stat st;

	(void)state;
	assert_int_equal(procfs_parse_stat("1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 "
					   "0 0 0 0 20 0 1 0 5555", &st), 0);
	assert_int_equal(st.pid, 1234);
	assert_int_equal(st.ppid, 1);
	assert_string_equal(st.comm, "a) b (c)");
	assert_true(st.start_ticks == 5555);

	/* A comm that mimics the rest of the line cannot shift the fields. */
	assert_int_equal(procfs_parse_stat("77 () R 1 2 3 4 ) S 9 77 77 0 -1 0 0 0 0 0 0 0 0 0 "
					   "20 0 1 0 31337 0 0\n", &st), 0);
	assert_int_equal(st.pid, 77);
	assert_int_equal(st.ppid, 9);
	assert_string_equal(st.comm, ") R 1 2 3 4 ");
	assert_true(st.start_ticks == 31337);

	/* Empty comm; 15 characters (TASK_COMM_LEN - 1), the longest the kernel prints. */
	assert_int_equal(procfs_parse_stat("5 () S 2 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7\n", &st), 0);
	assert_string_equal(st.comm, "");
	assert_int_equal(procfs_parse_stat("5 (abcdefghijklmno) S 2 0 0 0 -1 0 0 0 0 0 0 0 0 0 "
					   "20 0 1 0 7\n", &st), 0);
	assert_string_equal(st.comm, "abcdefghijklmno");
}

/* init's ppid is 0; negative tty/priority/nice; a start time past 32 bits. */
static void test_stat_field_values(void **state)
{
	struct proc_stat st;

	(void)state;
	assert_int_equal(procfs_parse_stat("1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 "
					   "-51 -20 1 0 5000000000 1 2\n", &st), 0);
	assert_int_equal(st.pid, 1);
	assert_int_equal(st.ppid, 0);
	assert_string_equal(st.comm, "systemd");
	assert_true(st.start_ticks == UINT64_C(5000000000));
}

/* Anything cut short or not shaped like a stat line is -EBADMSG. */
static void test_stat_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"\n",
		"1234",
		"1234 (bash",                                  /* cut inside comm */
		"1234 bash) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7",
		"1234 (bash S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7",
		"1234 )bash( S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7",
		"(bash) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", /* no pid */
		"x (bash) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7",
		"1234 (bash)",
		"1234 (bash) ",
		"1234 (bash) S",
		"1234 (bash) S 1",
		"1234 (bash) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0",  /* 21 fields, no starttime */
		"1234 (bash) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 \n",
		"1234 (bash) S x 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", /* ppid not a number */
		"1234 (bash) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x", /* starttime not a number */
		"1234 (a) b (c)) S 1 0 0 0",                   /* tricky comm, then cut */
		"1234 (a) b",                                  /* cut inside a tricky comm */
	};
	struct proc_stat st;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = procfs_parse_stat(bad[i], &st);

		if (r != -EBADMSG)
			fail_msg("procfs_parse_stat(\"%s\") = %d, want -EBADMSG", bad[i], r);
	}
}

/* Our own /proc/self/stat parses to our pid, parent and start time. */
static void test_stat_self(void **state)
{
	char buf[4096];
	struct proc_stat st;
	ssize_t n;

	(void)state;
	n = slurp("/proc/self/stat", buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_int_equal(procfs_parse_stat(buf, &st), 0);
	assert_int_equal(st.pid, getpid());
	assert_int_equal(st.ppid, getppid());
	assert_true(st.start_ticks == start_ticks_of(getpid()));
	/* comm is the first 15 bytes of the program's name. */
	assert_int_equal(strncmp(st.comm, program_invocation_short_name, 15), 0);
}

/* ---- procfs_argv_to_text --------------------------------------------------------------- */

/* Renders argv (a string literal: its own final NUL is not counted) into a roomy buffer. */
#define ARGV(lit) (lit), (sizeof(lit) - 1)

static void check_argv(const char *argv, size_t len, const char *want)
{
	char out[256];
	size_t n;

	memset(out, 'G', sizeof(out));
	n = procfs_argv_to_text(argv, len, out, sizeof(out));
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

/* Plain arguments are joined by single spaces; the trailing NUL adds nothing. */
static void test_argv_plain(void **state)
{
	(void)state;
	check_argv(ARGV("curl\0-fsSL\0https://x/\0"), "curl -fsSL https://x/");
	check_argv(ARGV("ls\0"), "ls");
	check_argv(ARGV("/usr/bin/env\0A=1\0--foo=bar,baz\0"), "/usr/bin/env A=1 --foo=bar,baz");
}

/* Arguments a shell would split or interpret are single-quoted; a quote inside becomes '\''. */
static void test_argv_quoting(void **state)
{
	(void)state;
	check_argv(ARGV("echo\0a b\0"), "echo 'a b'");
	check_argv(ARGV("sh\0-c\0curl -s http://h/ | sh\0"), "sh -c 'curl -s http://h/ | sh'");
	check_argv(ARGV("echo\0it's\0"), "echo 'it'\\''s'");
	check_argv(ARGV("echo\0'\0"), "echo ''\\'''");
	check_argv(ARGV("echo\0say \"hi\"\0"), "echo 'say \"hi\"'");
	check_argv(ARGV("echo\0$HOME\0"), "echo '$HOME'");
	check_argv(ARGV("echo\0a;b\0"), "echo 'a;b'");
	check_argv(ARGV("echo\0a\tb\0"), "echo 'a\\x09b'"); /* tab: quoted and escaped */
}

/* An empty argument between others is shown as '' so the argument count stays visible. */
static void test_argv_empty_argument(void **state)
{
	(void)state;
	check_argv(ARGV("a\0\0b\0"), "a '' b");
	check_argv(ARGV("ssh\0\0\0host\0"), "ssh '' '' host");
}

/* The same for an empty LAST argument: argv {"printf", ""} is "printf\0\0" and must not
 * read as plain "printf"; argv {""} is "\0". Only one trailing NUL ends the argv. */
static void test_argv_empty_last_argument(void **state)
{
	(void)state;
	check_argv(ARGV("printf\0\0"), "printf ''");
	check_argv(ARGV("a\0b\0\0"), "a b ''");
	check_argv(ARGV("\0"), "''");
}

/* Control bytes (< 0x20, 0x7f) are shown as \xNN, never raw (no terminal escapes in logs). */
static void test_argv_control_bytes(void **state)
{
	char out[64];

	(void)state;
	check_argv(ARGV("a\x01" "b\0"), "a\\x01b");
	check_argv(ARGV("x\x10y\x19z\0"), "x\\x10y\\x19z");
	check_argv(ARGV("a\nb\0"), "a\\x0ab");
	assert_int_equal(procfs_argv_to_text(ARGV("\x1b[31m\0"), out, sizeof(out)), 8);
	assert_true(strcasecmp(out, "\\x1b[31m") == 0);
	assert_int_equal(procfs_argv_to_text(ARGV("del\x7f\0"), out, sizeof(out)), 7);
	assert_true(strcasecmp(out, "del\\x7f") == 0);
	for (size_t i = 0; out[i]; i++)
		assert_true((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
}

/* argv captured in BPF is cut at NT_ARGV_LEN: no final NUL, the last argument is partial. */
static void test_argv_no_trailing_nul(void **state)
{
	(void)state;
	check_argv(ARGV("curl\0-fsS"), "curl -fsS");
	check_argv(ARGV("curl"), "curl");
	check_argv(ARGV("echo\0a b"), "echo 'a b'");
}

static void test_argv_len0(void **state)
{
	char out[8];

	(void)state;
	memset(out, 'G', sizeof(out));
	assert_int_equal(procfs_argv_to_text("ignored", 0, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(out[1], 'G');
	/* No room at all: nothing written. */
	assert_int_equal(procfs_argv_to_text(ARGV("curl\0"), out, 0), 0);
	assert_int_equal(out[0], '\0');
	assert_int_equal(out[1], 'G');
}

/* Every output size: NUL-terminated, never a byte past outlen, return == strlen. */
static void test_argv_truncation_bounds(void **state)
{
	static const char argv[] = "curl\0-H\0X-Token: it's\x01secret\0https://example.com/\0";
	char out[128];

	(void)state;
	for (size_t outlen = 1; outlen <= 80; outlen++) {
		size_t n;

		memset(out, 'G', sizeof(out));
		n = procfs_argv_to_text(argv, sizeof(argv) - 1, out, outlen);
		assert_true(n < outlen);
		assert_int_equal(out[n], '\0');
		assert_int_equal(strlen(out), n);
		for (size_t i = outlen; i < sizeof(out); i++)
			if (out[i] != 'G')
				fail_msg("outlen %zu: byte %zu past the buffer was written", outlen, i);
	}
	check_argv(ARGV("curl\0-fsSL\0"), "curl -fsSL");
	memset(out, 'G', sizeof(out));
	assert_int_equal(procfs_argv_to_text(ARGV("curl\0-fsSL\0"), out, 5), 4);
	assert_string_equal(out, "curl");
	assert_int_equal(out[5], 'G');
}

/* "Truncating": a short buffer holds the beginning of the full text, never a text with
 * pieces left out in the middle (that would read as a different, complete command). */
static void test_argv_truncation_is_prefix(void **state)
{
	static const char argv[] = "curl\0-H\0X-Token: it's\x01secret\0https://example.com/\0";
	char full[256], out[256];
	size_t full_len;

	(void)state;
	full_len = procfs_argv_to_text(argv, sizeof(argv) - 1, full, sizeof(full));
	assert_string_equal(full, "curl -H 'X-Token: it'\\''s\\x01secret' https://example.com/");
	for (size_t outlen = 1; outlen <= full_len + 1; outlen++) {
		size_t n = procfs_argv_to_text(argv, sizeof(argv) - 1, out, outlen);

		if (strncmp(out, full, n) != 0)
			fail_msg("outlen %zu: \"%s\" is not a prefix of \"%s\"", outlen, out, full);
	}
}

/* ---- procfs_read_process --------------------------------------------------------------- */

/* The first bytes of our own /proc/self/cmdline, as BPF would have captured them. */
static size_t self_argv(char *buf, size_t size)
{
	ssize_t n = slurp("/proc/self/cmdline", buf, size);

	assert_true(n > 0);
	return (size_t)n;
}

/* Still the same process and program: 0, with the parent, command line and executable. */
static void test_read_self(void **state)
{
	char argv[64], suffix[256];
	struct proc_extra exbuf = { 0 }, *ex = &exbuf;
	uint64_t start = start_ns_of(getpid());
	size_t len = self_argv(argv, sizeof(argv));

	(void)state;
	assert_int_equal(procfs_read_process(getpid(), start, argv, len, ex), 0);
	assert_int_equal(ex->ppid, getppid());
	assert_non_null(strstr(ex->cmdline, program_invocation_short_name));
	snprintf(suffix, sizeof(suffix), "/%s", program_invocation_short_name);
	if (!ends_with(ex->exe, suffix))
		fail_msg("exe \"%s\" does not end in \"%s\"", ex->exe, suffix);

	/* BPF's start_ns is not tick-aligned: any ns within the start tick names the process. */
	memset(ex, 0, sizeof(*ex));
	assert_int_equal(procfs_read_process(getpid(), start + ns_per_tick() - 1, argv, len, ex), 0);
	assert_non_null(strstr(ex->cmdline, program_invocation_short_name));

	/* Nothing captured (argv unreadable in BPF): nothing to contradict. */
	assert_int_equal(procfs_read_process(getpid(), start, argv, 0, ex), 0);
}

/* Another start time means another process under a reused pid. */
static void test_read_self_wrong_start(void **state)
{
	char argv[64];
	struct proc_extra exbuf = { 0 }, *ex = &exbuf;
	uint64_t start = start_ns_of(getpid());
	size_t len = self_argv(argv, sizeof(argv));

	(void)state;
	assert_int_equal(procfs_read_process(getpid(), start + ns_per_tick(), argv, len, ex), -ESRCH);
	assert_int_equal(procfs_read_process(getpid(), start - 1, argv, len, ex), -ESRCH);
	assert_int_equal(procfs_read_process(getpid(), start + 1000000000ULL, argv, len, ex), -ESRCH);
}

/* Same process, but its command line no longer begins with the captured bytes. */
static void test_read_self_stale_argv(void **state)
{
	char argv[PROCFS_CMDLINE_MAX + 8];
	struct proc_extra exbuf = { 0 }, *ex = &exbuf;
	uint64_t start = start_ns_of(getpid());
	size_t len = self_argv(argv, PROCFS_CMDLINE_MAX);

	(void)state;
	argv[0] ^= 0x20;
	assert_int_equal(procfs_read_process(getpid(), start, argv, len, ex), -ESTALE);
	argv[0] ^= 0x20;
	argv[len - 1] ^= 0x20; /* the last byte counts too */
	assert_int_equal(procfs_read_process(getpid(), start, argv, len, ex), -ESTALE);
	argv[len - 1] ^= 0x20;
	/* Captured bytes longer than the real command line cannot be its beginning. */
	memcpy(argv + len, "more\0", 5);
	assert_int_equal(procfs_read_process(getpid(), start, argv, len + 5, ex), -ESTALE);
	argv[len] = '\0'; /* even one extra NUL, though /proc's text ends in one */
	assert_int_equal(procfs_read_process(getpid(), start, argv, len + 1, ex), -ESTALE);
	/* And the unmodified bytes still match. */
	assert_int_equal(procfs_read_process(getpid(), start, argv, len, ex), 0);
}

/* Waits up to 5 s until /proc/PID/cmdline begins with prefix. */
static int wait_cmdline(pid_t pid, const char *prefix, size_t len)
{
	char path[64], buf[256];

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	for (int i = 0; i < 500; i++) {
		ssize_t n = slurp(path, buf, sizeof(buf));

		if (n >= (ssize_t)len && memcmp(buf, prefix, len) == 0)
			return 0;
		usleep(10000);
	}
	return -1;
}

/* A child that exec'd after the event: same pid and start, another program: -ESTALE for
 * the old argv, 0 for the new one. */
static void test_read_child_exec(void **state)
{
	char argv[64];
	struct proc_extra exbuf = { 0 }, *ex = &exbuf;
	size_t len = self_argv(argv, sizeof(argv));
	uint64_t start;
	pid_t pid;
	int r_old, r_new, status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execlp("sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	if (read_start_ticks(pid, &start) < 0 || wait_cmdline(pid, "sleep\0" "30\0", 9) < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail_msg("child never became sleep 30");
	}
	start *= ns_per_tick();
	r_old = procfs_read_process(pid, start, argv, len, ex);
	r_new = procfs_read_process(pid, start, "sleep\0" "30\0", 9, ex);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);

	assert_int_equal(r_old, -ESTALE);
	assert_int_equal(r_new, 0);
	assert_int_equal(ex->ppid, getpid());
	assert_string_equal(ex->cmdline, "sleep 30");
	assert_true(ends_with(ex->exe, "/sleep"));
}

/* A child that has exited and been reaped: its pid names nothing, -ESRCH. While it is alive
 * (a fork of this test: same command line) it reads fine, with us as its parent. */
static void test_read_child_gone(void **state)
{
	char argv[64], c;
	struct proc_extra exbuf = { 0 }, *ex = &exbuf;
	size_t len = self_argv(argv, sizeof(argv));
	uint64_t start;
	int fds[2], r_alive, status;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[1]);
		(void)!read(fds[0], &c, 1); /* until the parent closes its end */
		_exit(0);
	}
	close(fds[0]);
	start = 0;
	r_alive = read_start_ticks(pid, &start);
	if (r_alive == 0) {
		start *= ns_per_tick();
		r_alive = procfs_read_process(pid, start, argv, len, ex);
	}
	close(fds[1]); /* the child exits */
	assert_int_equal(waitpid(pid, &status, 0), pid);

	assert_int_equal(r_alive, 0);
	assert_int_equal(ex->ppid, getpid());
	assert_int_equal(procfs_read_process(pid, start, argv, len, ex), -ESRCH);
	assert_int_equal(procfs_read_process(pid, 0, NULL, 0, ex), -ESRCH);
}

/* An exited child not yet reaped (a zombie) is gone too: it has not exec'd, so the answer
 * is -ESRCH, not -ESTALE. Short-lived commands (curl, wget) are often in this state when
 * their event is processed. */
static void test_read_child_zombie(void **state)
{
	char argv[64];
	struct proc_extra exbuf = { 0 }, *ex = &exbuf;
	size_t len = self_argv(argv, sizeof(argv));
	uint64_t start;
	siginfo_t si;
	int r_zombie;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	kill(pid, SIGKILL);
	memset(&si, 0, sizeof(si));
	assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	start = start_ns_of(pid); /* a zombie keeps its stat, start time included */
	r_zombie = procfs_read_process(pid, start, argv, len, ex);
	assert_int_equal(waitpid(pid, NULL, 0), pid);

	assert_int_equal(r_zombie, -ESRCH);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stat_real_line),
		cmocka_unit_test(test_stat_tricky_comm),
		cmocka_unit_test(test_stat_field_values),
		cmocka_unit_test(test_stat_malformed),
		cmocka_unit_test(test_stat_self),
		cmocka_unit_test(test_argv_plain),
		cmocka_unit_test(test_argv_quoting),
		cmocka_unit_test(test_argv_empty_argument),
		cmocka_unit_test(test_argv_empty_last_argument),
		cmocka_unit_test(test_argv_control_bytes),
		cmocka_unit_test(test_argv_no_trailing_nul),
		cmocka_unit_test(test_argv_len0),
		cmocka_unit_test(test_argv_truncation_bounds),
		cmocka_unit_test(test_argv_truncation_is_prefix),
		cmocka_unit_test(test_read_self),
		cmocka_unit_test(test_read_self_wrong_start),
		cmocka_unit_test(test_read_self_stale_argv),
		cmocka_unit_test(test_read_child_exec),
		cmocka_unit_test(test_read_child_gone),
		cmocka_unit_test(test_read_child_zombie),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
