// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include "util.h"

int read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	size_t used = 0, cap = 4096;
	char *buf = NULL;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n;

		if (!buf || used + 1 >= cap) {
			char *nb;

			if (buf)
				cap *= 2;
			nb = realloc(buf, cap);
			if (!nb) {
				r = -ENOMEM;
				goto out_close;
			}
			buf = nb;
		}
		n = read(fd, buf + used, cap - used - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out_close;
		}
		if (n == 0)
			break;
		used += (size_t)n;
		if (used > max) {
			r = -EFBIG;
			goto out_close;
		}
	}
	buf[used] = '\0';
	*ret = buf;
	if (ret_len)
		*ret_len = used;
	buf = NULL;
out_close:
	free(buf);
	close(fd);
	return r;
}
