/* SPDX-License-Identifier: MIT */
#ifndef NT_CGROUP_H
#define NT_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Finds the cgroup2 mount point in the text of a mount table (/proc/self/mounts format,
 * octal escapes such as \040 decoded). 0, or -ENOENT when no cgroup2 is mounted.
 */
int cgroup_parse_mounts(const char *text, char *ret, size_t len);

/* The same, from /proc/self/mounts. */
int cgroup_find_mount(char *ret, size_t len);

/* 0 if path is a directory on a cgroup2 file system; -ENOTDIR, -EMEDIUMTYPE or -errno. */
int cgroup_check_dir(const char *path);

/* The cgroup id of a cgroup2 directory: what bpf_get_current_cgroup_id() reports. */
int cgroup_id(const char *path, uint64_t *ret);

/* mkdir -p below an existing cgroup2 directory. */
int cgroup_mkdir_p(const char *path);

/* Moves a process (0: the caller) into the cgroup. */
int cgroup_enter(const char *path, pid_t pid);

/* Removes the cgroup if it has no processes and no children; -EBUSY otherwise. */
int cgroup_remove(const char *path);

#endif /* NT_CGROUP_H */
