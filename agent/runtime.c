// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

static int sync_path(char *buf, size_t len)
{
	char name[64];

	snprintf(name, sizeof(name), "sync-%d", (int)getpid());
	return runtime_path(buf, len, name);
}

/* The request's file is locked while the run waits: a file nobody locks is a dead request. */
static int sync_fd = -1;

int sync_request(void)
{
	char path[4096];

	if (sync_path(path, sizeof(path)) < 0)
		return -ENAMETOOLONG;
	sync_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (sync_fd < 0)
		return -errno;
	if (flock(sync_fd, LOCK_EX) < 0) {
		close(sync_fd);
		sync_fd = -1;
		unlink(path);
		return -errno;
	}
	return 0;
}

void sync_release(void)
{
	char path[4096];

	if (sync_path(path, sizeof(path)) == 0)
		unlink(path);
	if (sync_fd >= 0)
		close(sync_fd);
	sync_fd = -1;
}

/*
 * A registration (sync request, embedded run) is alive while its owner holds a lock on it:
 * opens path and asks check, which removes a dead one. 0 if there is no such file.
 */
static int lockfile_alive(const char *path, int (*check)(int fd, const char *path))
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), alive;

	if (fd < 0)
		return 0;
	alive = check(fd, path);
	close(fd);
	return alive;
}

static int sync_check(int fd, const char *path)
{
	if (flock(fd, LOCK_SH | LOCK_NB) < 0)
		return 1; /* its run holds it: waiting */
	unlink(path); /* a run killed while it waited */
	return 0;
}

static int sync_alive(const char *name)
{
	char path[4096];

	return runtime_path(path, sizeof(path), name) == 0 && lockfile_alive(path, sync_check);
}

int sync_requested(void)
{
	struct dirent *de;
	int found = 0;
	DIR *d = opendir(runtime_dir());

	if (!d)
		return 0;
	while (!found && (de = readdir(d)) != NULL)
		found = !strncmp(de->d_name, "sync-", 5) && sync_alive(de->d_name);
	closedir(d);
	return found;
}

/* Takes a shared lock on an open fd (or passes its error on): the fd, or -errno. */
static int hold_shared(int fd)
{
	int r;

	if (fd < 0)
		return fd < -1 ? fd : -errno;
	if (flock(fd, LOCK_SH) == 0)
		return fd;
	r = -errno;
	close(fd);
	return r;
}

int run_cgroup_hold(const char *path)
{
	return hold_shared(open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

int run_cgroup_remove_if_abandoned(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), removed = 0;

	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		removed = rmdir(path) == 0; /* EBUSY while processes live in it */
	close(fd);
	return removed;
}

/*
 * The lock is on the cgroup directory itself, not on a file in the runtime directory: the
 * runs root is one per host, whatever runtime directory each nettrail was started with.
 * A `run` removes its scope's directory, and the runs root, only when it can lock them.
 */
int cgroup_dir_hold(const char *root, ino_t *ret_ino)
{
	struct stat st, fst;

	for (int tries = 0; tries < 100; tries++) {
		int fd;

		if (mkdir(root, 0755) < 0 && errno != EEXIST)
			return -errno;
		fd = hold_shared(open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		if (fd == -ENOENT)
			continue; /* removed between the mkdir and the open */
		if (fd < 0)
			return fd;
		/* A remover that had the lock first left us a directory that is gone: again. */
		if (fstat(fd, &fst) == 0 && stat(root, &st) == 0 && st.st_ino == fst.st_ino &&
		    st.st_dev == fst.st_dev) {
			if (ret_ino)
				*ret_ino = fst.st_ino;
			return fd;
		}
		close(fd);
	}
	return -EAGAIN;
}

int cgroup_dir_same(const char *root, ino_t ino)
{
	struct stat st;

	return stat(root, &st) == 0 && st.st_ino == ino;
}

void cgroup_dir_remove_if_unheld(const char *root)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	/* Exclusive: no agent holds it, and none can start watching until the rmdir is done. */
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		rmdir(root); /* EBUSY while other runs' cgroups are in it */
	close(fd);
}

static int embedded_path(char *buf, size_t len, uint64_t cgroup_id)
{
	char name[64];

	snprintf(name, sizeof(name), "embedded/%llu", (unsigned long long)cgroup_id);
	return runtime_path(buf, len, name);
}

int embedded_register(uint64_t cgroup_id, int *ret_fd)
{
	char dir[4096], path[4096], pid[32];
	int fd, n;

	if (runtime_path(dir, sizeof(dir), "embedded") < 0 ||
	    embedded_path(path, sizeof(path), cgroup_id) < 0)
		return -ENAMETOOLONG;
	if ((mkdir(runtime_dir(), 0755) < 0 && errno != EEXIST) ||
	    (mkdir(dir, 0755) < 0 && errno != EEXIST))
		return -errno;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (flock(fd, LOCK_EX) < 0 || write(fd, pid, (size_t)n) != n) {
		int r = -errno;

		unlink(path);
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

void embedded_decide(uint64_t cgroup_id, int fd, int embedded)
{
	if (fd < 0)
		return;
	if (embedded)
		flock(fd, LOCK_SH); /* alive, decided: an agent may now read it */
	else
		embedded_unregister(cgroup_id, fd);
}

void embedded_unregister(uint64_t cgroup_id, int fd)
{
	char path[4096];

	if (fd < 0)
		return;
	if (embedded_path(path, sizeof(path), cgroup_id) == 0)
		unlink(path);
	close(fd);
}

/*
 * 1 if the run behind an open registry file is alive and recording itself, 0 if not (the
 * file is then removed if stale). Waits up to 2 s for a run that is still deciding.
 */
static int embedded_check(int fd, const char *path)
{
	struct stat st;
	int i;

	for (i = 0; i < 200 && flock(fd, LOCK_SH | LOCK_NB) < 0; i++)
		usleep(10000);
	if (i == 200)
		return 1; /* still deciding after 2 s: leave its cgroup to it, to be safe */
	if (fstat(fd, &st) < 0 || st.st_nlink == 0)
		return 0; /* it went to an agent and unregistered */
	flock(fd, LOCK_UN);
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		unlink(path); /* nobody holds it: the run died without cleaning up */
		return 0;
	}
	return 1;
}

int embedded_alive(uint64_t cgroup_id)
{
	char path[4096];

	return embedded_path(path, sizeof(path), cgroup_id) == 0 &&
	       lockfile_alive(path, embedded_check);
}

int embedded_list(uint64_t *ids, int max)
{
	char dir[4096];
	struct dirent *de;
	int n = 0;
	DIR *d;

	if (runtime_path(dir, sizeof(dir), "embedded") < 0 || !(d = opendir(dir)))
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		uint64_t id;

		if (parse_u64(de->d_name, 1, UINT64_MAX, &id) == 0 && embedded_alive(id))
			ids[n++] = id;
	}
	closedir(d);
	return n;
}
