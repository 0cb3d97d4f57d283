// SPDX-License-Identifier: MIT
/* Unit tests for agent/cgroup.c: finding the cgroup2 mount and checking cgroup2 directories. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "cgroup.h"

/* systemd's hybrid layout: v1 controllers plus cgroup2 at .../unified. */
static const char hybrid_table[] =
	"sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
	"proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
	"tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\n"
	"cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0\n"
	"cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0\n"
	"cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n"
	"cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"
	"cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0\n";

/* Debian 12 default: only the unified hierarchy. */
static const char unified_table[] =
	"sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
	"proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
	"/dev/vda1 / ext4 rw,relatime,errors=remount-ro 0 0\n"
	"cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0\n"
	"pstore /sys/fs/pstore pstore rw,nosuid,nodev,noexec,relatime 0 0\n";

/* Fills ret with 'G' first, so a missing NUL or a stray write shows. */
static int parse(const char *text, char *ret, size_t len)
{
	memset(ret, 'G', len);
	return cgroup_parse_mounts(text, ret, len);
}

/* ---- cgroup_parse_mounts --------------------------------------------------------------- */

static void test_parse_hybrid(void **state)
{
	char buf[PATH_MAX];

	(void)state;
	assert_int_equal(parse(hybrid_table, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/sys/fs/cgroup/unified");
}

static void test_parse_unified(void **state)
{
	char buf[PATH_MAX];

	(void)state;
	assert_int_equal(parse(unified_table, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/sys/fs/cgroup");
}

/* Only the file-system type (third field) counts: v1 "cgroup" lines, a device named
 * "cgroup2" or a mount point containing "cgroup2" are not cgroup2 mounts. */
static void test_parse_no_cgroup2(void **state)
{
	char buf[PATH_MAX];

	(void)state;
	assert_int_equal(parse("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n", buf,
			       sizeof(buf)), -ENOENT);
	assert_int_equal(parse("cgroup2 /mnt/fake tmpfs rw 0 0\n", buf, sizeof(buf)), -ENOENT);
	assert_int_equal(parse("none /cgroup2 ext4 rw 0 0\n", buf, sizeof(buf)), -ENOENT);
	assert_int_equal(parse("none /x cgroup2fs rw 0 0\n", buf, sizeof(buf)), -ENOENT);
	assert_int_equal(parse("none /x cgroup rw,cgroup2 0 0\n", buf, sizeof(buf)), -ENOENT);
	/* The hybrid table without its cgroup2 line. */
	assert_int_equal(parse("tmpfs /sys/fs/cgroup tmpfs ro 0 0\n"
			       "cgroup /sys/fs/cgroup/systemd cgroup rw,name=systemd 0 0\n"
			       "cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n",
			       buf, sizeof(buf)), -ENOENT);
}

static void test_parse_empty(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(parse("", buf, sizeof(buf)), -ENOENT);
	assert_int_equal(parse("\n\n", buf, sizeof(buf)), -ENOENT);
}

/* The kernel ends every line with '\n', but a text cut after the last field still parses;
 * blank and short lines before it are skipped. */
static void test_parse_line_shapes(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(parse("proc /proc proc rw 0 0\ncgroup2 /cg cgroup2 rw 0 0", buf,
			       sizeof(buf)), 0);
	assert_string_equal(buf, "/cg");
	assert_int_equal(parse("cgroup2 /cg cgroup2", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/cg");
	assert_int_equal(parse("\n\ncgroup2 /cg2 cgroup2 rw 0 0\n", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/cg2");
	assert_int_equal(parse("cgroup2 /short\ncgroup2 /cg3 cgroup2 rw 0 0\n", buf,
			       sizeof(buf)), 0);
	assert_string_equal(buf, "/cg3");
}

/* Mount points are escaped in the table (\040 space, \011 tab, \012 newline, \134 '\');
 * the result is the real path. */
static void test_parse_octal_escapes(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(parse("cgroup2 /mnt/my\\040cgroup cgroup2 rw 0 0\n", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/mnt/my cgroup");
	/* An escape as the last bytes of the field. */
	assert_int_equal(parse("cgroup2 /mnt/cg\\040 cgroup2 rw 0 0\n", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/mnt/cg ");
	assert_int_equal(parse("cgroup2 /a\\011b\\012c\\134d cgroup2 rw 0 0\n", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/a\tb\nc\\d");
}

/* A buffer that cannot hold the path and its NUL is -ENAMETOOLONG, never overrun. */
static void test_parse_small_buffer(void **state)
{
	const char *line = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"; /* 14 chars */
	char buf[32];

	(void)state;
	assert_int_equal(parse(line, buf, 15), 0); /* exact fit */
	assert_string_equal(buf, "/sys/fs/cgroup");

	memset(buf, 'G', sizeof(buf));
	assert_int_equal(cgroup_parse_mounts(line, buf, 14), -ENAMETOOLONG);
	assert_int_equal(buf[14], 'G');
	memset(buf, 'G', sizeof(buf));
	assert_int_equal(cgroup_parse_mounts(line, buf, 1), -ENAMETOOLONG);
	assert_int_equal(buf[1], 'G');
	assert_int_equal(cgroup_parse_mounts(line, buf, 0), -ENAMETOOLONG);
	assert_int_equal(buf[0], 'G');

	/* The limit is on the decoded path: "/a\040b" needs 4+1 bytes, not 7+1. */
	assert_int_equal(parse("cgroup2 /a\\040b cgroup2 rw 0 0\n", buf, 5), 0);
	assert_string_equal(buf, "/a b");
	assert_int_equal(cgroup_parse_mounts("cgroup2 /a\\040b cgroup2 rw 0 0\n", buf, 4),
			 -ENAMETOOLONG);
}

/* ---- cgroup_check_dir ------------------------------------------------------------------ */

/* Directories elsewhere are -EMEDIUMTYPE; missing paths and non-directories are refused. */
static void test_check_dir_not_cgroup2(void **state)
{
	char file[] = "/tmp/nettrail-test-cgroup-XXXXXX";
	int fd;

	(void)state;
	assert_int_equal(cgroup_check_dir("/tmp"), -EMEDIUMTYPE);
	assert_int_equal(cgroup_check_dir("/proc"), -EMEDIUMTYPE);
	assert_int_equal(cgroup_check_dir("/"), -EMEDIUMTYPE);

	assert_int_equal(cgroup_check_dir("/nonexistent-nettrail-test/x"), -ENOENT);

	fd = mkstemp(file);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(cgroup_check_dir(file), -ENOTDIR);
	unlink(file);
	assert_int_equal(cgroup_check_dir(file), -ENOENT);

	assert_int_equal(cgroup_check_dir("/dev/null"), -ENOTDIR);
}

/* ---- on this machine's cgroup2, when there is one -------------------------------------- */

/* The cgroup id the kernel exports in a file handle (FILEID_KERNFS: the 64-bit id). */
static int kernel_cgroup_id(const char *path, uint64_t *ret)
{
	struct {
		struct file_handle fh;
		unsigned char bytes[MAX_HANDLE_SZ];
	} h;
	int mount_id;

	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0)
		return -errno;
	if (h.fh.handle_bytes != sizeof(*ret))
		return -EPROTO;
	memcpy(ret, h.fh.f_handle, sizeof(*ret));
	return 0;
}

static void test_live_cgroup2(void **state)
{
	char mnt[PATH_MAX], path[PATH_MAX + 32];
	uint64_t id = 0, kid = 0;
	int r;

	(void)state;
	r = cgroup_find_mount(mnt, sizeof(mnt));
	if (r == -ENOENT) {
		print_message("no cgroup2 mounted here: skipping the live cgroup2 checks\n");
		skip();
	}
	assert_int_equal(r, 0);
	assert_true(mnt[0] == '/');

	/* The mount found is a cgroup2 directory; its files are not directories. */
	assert_int_equal(cgroup_check_dir(mnt), 0);
	snprintf(path, sizeof(path), "%s/cgroup.procs", mnt);
	assert_int_equal(cgroup_check_dir(path), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/no-such-cgroup-nettrail-test", mnt);
	assert_int_equal(cgroup_check_dir(path), -ENOENT);

	/* A too-small buffer is refused for the real table too. */
	assert_int_equal(cgroup_find_mount(mnt, 2), -ENAMETOOLONG);
	assert_int_equal(cgroup_find_mount(mnt, sizeof(mnt)), 0);

	/* The id is nonzero and is the one the kernel itself reports for the directory. */
	assert_int_equal(cgroup_id(mnt, &id), 0);
	assert_true(id != 0);
	r = kernel_cgroup_id(mnt, &kid);
	if (r < 0)
		print_message("name_to_handle_at(%s): %s; id cross-check skipped\n", mnt, strerror(-r));
	else
		assert_true(id == kid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_hybrid),
		cmocka_unit_test(test_parse_unified),
		cmocka_unit_test(test_parse_no_cgroup2),
		cmocka_unit_test(test_parse_empty),
		cmocka_unit_test(test_parse_line_shapes),
		cmocka_unit_test(test_parse_octal_escapes),
		cmocka_unit_test(test_parse_small_buffer),
		cmocka_unit_test(test_check_dir_not_cgroup2),
		cmocka_unit_test(test_live_cgroup2),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
