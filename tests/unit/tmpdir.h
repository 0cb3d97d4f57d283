/* SPDX-License-Identifier: MIT */
/* A private directory per test, for a database and the files SQLite leaves beside it. */
#ifndef NT_TEST_TMPDIR_H
#define NT_TEST_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Makes $TMPDIR/nettrail-test-<name>.XXXXXX (else under /tmp) into dir, and names the
 * database in it, dir/nettrail.db, in path. 0, or -1 if the directory could not be made.
 */
static inline int tmpdir_make(const char *name, char *dir, size_t dir_len, char *path,
			      size_t path_len)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, dir_len, "%s/nettrail-test-%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, path_len, "%s/nettrail.db", dir);
	return 0;
}

/* Removes dir and every file in it. */
static inline void tmpdir_remove(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d) {
		while ((de = readdir(d)) != NULL)
			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
				unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
	}
	rmdir(dir);
}

#endif /* NT_TEST_TMPDIR_H */
