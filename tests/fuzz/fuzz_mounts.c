// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for agent/cgroup.c: cgroup_parse_mounts() on the text of a mount table
 * (/proc/self/mounts format, octal escapes such as \040).
 *
 * Input: byte 0 picks the size of the output buffer (0, 1, 7, 64, 4096 or PATH_MAX + 1);
 * the rest, as a NUL-terminated copy, is the mount table.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cgroup.h"

static const size_t out_sizes[] = { 0, 1, 7, 64, 4096, PATH_MAX + 1 };

#define BIG 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t outlen;
	char *text, *out, *big;
	int r, rbig;

	if (size == 0)
		return 0;
	outlen = out_sizes[data[0] % (sizeof(out_sizes) / sizeof(out_sizes[0]))];
	data++;
	size--;

	text = malloc(size + 1);
	out = malloc(outlen ? outlen : 1); /* exact size, so ASan sees any overflow */
	big = malloc(BIG);
	if (!text || !out || !big)
		goto out;
	memcpy(text, data, size);
	text[size] = '\0';
	if (outlen)
		memset(out, 'X', outlen);

	r = cgroup_parse_mounts(text, out, outlen);
	if (r != 0 && r != -ENOENT && r != -ENAMETOOLONG) {
		fprintf(stderr, "unexpected return %d\n", r);
		abort();
	}
	if (r == 0 && (outlen == 0 || memchr(out, '\0', outlen) == NULL)) {
		fprintf(stderr, "returned 0 but result not NUL-terminated within %zu bytes\n", outlen);
		abort();
	}

	/* A larger buffer finds the same mount; what fit in the small one is the same text. */
	rbig = cgroup_parse_mounts(text, big, BIG);
	if (r == -ENOENT && rbig != -ENOENT) {
		fprintf(stderr, "-ENOENT with %zu bytes but %d with %d\n", outlen, rbig, BIG);
		abort();
	}
	if (r == 0 && (rbig != 0 || strcmp(out, big) != 0)) {
		fprintf(stderr, "result with %zu bytes differs from result with %d\n", outlen, BIG);
		abort();
	}
out:
	free(big);
	free(out);
	free(text);
	return 0;
}
