// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "parse.h"
#include "runtime.h"

static const char *runtime_dir(void)
{
	const char *env = getenv("NETTRAIL_RUNTIME_DIR");

	return env && *env ? env : RUNTIME_DIR_DEFAULT;
}

static int runtime_path(char *buf, size_t len, const char *name)
{
	if (snprintf(buf, len, "%s/%s", runtime_dir(), name) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

const char *agent_lock_path(void)
{
	static char path[4096];

	runtime_path(path, sizeof(path), "agent.lock");
	return path;
}

static void read_first_line(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

int agent_lock_take(const char *db_path, int *ret_fd, char *busy_db, size_t len)
{
	size_t n = strlen(db_path);
	int fd, r;

	if (mkdir(runtime_dir(), 0755) < 0 && errno != EEXIST)
		return -errno;
	fd = open(agent_lock_path(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		read_first_line(fd, busy_db, len);
		close(fd);
		return -EBUSY;
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, db_path, n, 0) != (ssize_t)n ||
	    pwrite(fd, "\n", 1, (off_t)n) != 1) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int agent_lock_probe(char *db, size_t len)
{
	int fd = open(agent_lock_path(), O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		close(fd); /* nobody holds it: no agent */
		return 0;
	}
	read_first_line(fd, db, len);
	close(fd);
	return 1;
}

static int embedded_path(char *buf, size_t len, uint64_t cgroup_id)
{
	char name[64];

	snprintf(name, sizeof(name), "embedded/%llu", (unsigned long long)cgroup_id);
	return runtime_path(buf, len, name);
}

int embedded_register(uint64_t cgroup_id)
{
	char dir[4096], path[4096], pid[32];
	int fd, n, r = 0;

	if (runtime_path(dir, sizeof(dir), "embedded") < 0 ||
	    embedded_path(path, sizeof(path), cgroup_id) < 0)
		return -ENAMETOOLONG;
	if ((mkdir(runtime_dir(), 0755) < 0 && errno != EEXIST) ||
	    (mkdir(dir, 0755) < 0 && errno != EEXIST))
		return -errno;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (write(fd, pid, (size_t)n) != n)
		r = -errno;
	close(fd);
	return r;
}

void embedded_unregister(uint64_t cgroup_id)
{
	char path[4096];

	if (embedded_path(path, sizeof(path), cgroup_id) == 0)
		unlink(path);
}

/* 1 if the registry entry's run is alive; its pid must also still be that run. */
static int embedded_alive(const char *path)
{
	char buf[32] = "";
	uint64_t pid;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	read_first_line(fd, buf, sizeof(buf));
	close(fd);
	if (parse_u64(buf, 1, INT32_MAX, &pid) < 0)
		return 0;
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

int embedded_list(uint64_t *ids, int max)
{
	char dir[4096], path[8192];
	struct dirent *de;
	int n = 0;
	DIR *d;

	if (runtime_path(dir, sizeof(dir), "embedded") < 0 || !(d = opendir(dir)))
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		uint64_t id;

		if (parse_u64(de->d_name, 1, UINT64_MAX, &id) < 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (embedded_alive(path))
			ids[n++] = id;
		else
			unlink(path); /* a run that died without cleaning up */
	}
	closedir(d);
	return n;
}
