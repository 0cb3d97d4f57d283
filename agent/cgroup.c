// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include "cgroup.h"
#include "util.h"

static int is_octal(char c)
{
	return c >= '0' && c <= '7';
}

/* Copies one mount-table field, decoding \ooo escapes. -ENAMETOOLONG if it does not fit. */
static int mount_field_unescape(const char *s, size_t n, char *ret, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '\\' && n - i > 3 && is_octal(s[i + 1]) &&
		    is_octal(s[i + 2]) && is_octal(s[i + 3])) {
			c = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
			i += 3;
		}
		if (o + 1 >= len)
			return -ENAMETOOLONG;
		ret[o++] = c;
	}
	ret[o] = '\0';
	return 0;
}

int cgroup_parse_mounts(const char *text, char *ret, size_t len)
{
	const char *line = text;

	while (line && *line) {
		const char *eol = strchr(line, '\n');
		const char *end = eol ? eol : line + strlen(line);
		const char *f[3];
		size_t flen[3];
		const char *p = line;
		int n = 0;

		/* fields: device mountpoint fstype options ... */
		while (n < 3 && p < end) {
			while (p < end && *p == ' ')
				p++;
			f[n] = p;
			while (p < end && *p != ' ')
				p++;
			flen[n] = (size_t)(p - f[n]);
			if (flen[n] > 0)
				n++;
		}
		if (n == 3 && flen[2] == 7 && memcmp(f[2], "cgroup2", 7) == 0)
			return mount_field_unescape(f[1], flen[1], ret, len);
		line = eol ? eol + 1 : NULL;
	}
	return -ENOENT;
}

int cgroup_find_mount(char *ret, size_t len)
{
	char *text;
	int r;

	r = read_file("/proc/self/mounts", 1 << 20, &text, NULL);
	if (r < 0)
		return r;
	r = cgroup_parse_mounts(text, ret, len);
	free(text);
	return r;
}

int cgroup_check_dir(const char *path)
{
	struct statfs sfs;
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (statfs(path, &sfs) < 0)
		return -errno;
	if (sfs.f_type != CGROUP2_SUPER_MAGIC)
		return -EMEDIUMTYPE;
	return 0;
}

int cgroup_id(const char *path, uint64_t *ret)
{
	struct stat st;

	/* On cgroup2 the directory's inode number is the kernfs node id, the cgroup id. */
	if (stat(path, &st) < 0)
		return -errno;
	*ret = (uint64_t)st.st_ino;
	return 0;
}

int cgroup_mkdir_p(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char saved = *p;

			*p = '\0';
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = saved;
			if (saved == '\0')
				break;
		}
	}
	return 0;
}

int cgroup_enter(const char *path, pid_t pid)
{
	char file[4096], num[32];
	int fd, n, r = 0;

	if (snprintf(file, sizeof(file), "%s/cgroup.procs", path) >= (int)sizeof(file))
		return -ENAMETOOLONG;
	n = snprintf(num, sizeof(num), "%d\n", (int)pid);
	fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, num, (size_t)n) != n)
		r = -errno;
	close(fd);
	return r;
}

int cgroup_remove(const char *path)
{
	if (rmdir(path) < 0)
		return -errno;
	return 0;
}
