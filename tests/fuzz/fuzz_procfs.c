// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for agent/procfs.c: procfs_parse_stat() on the text of /proc/PID/stat and
 * procfs_argv_to_text() on /proc/PID/cmdline bytes, both read from processes the agent does
 * not control.
 *
 * Input: byte 0 picks the output buffer size for procfs_argv_to_text (0, 1, 7, 64 or 4096);
 * the rest is the stat text (as a NUL-terminated copy) and the argv bytes (as they are).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "procfs.h"

static const size_t out_sizes[] = { 0, 1, 7, 64, 4096 };

static void check_stat(const uint8_t *data, size_t size)
{
	struct proc_stat st;
	char *text = malloc(size + 1);

	if (!text)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	memset(&st, 0xa5, sizeof(st));
	if (procfs_parse_stat(text, &st) == 0 && memchr(st.comm, '\0', sizeof(st.comm)) == NULL) {
		fprintf(stderr, "procfs_parse_stat left comm unterminated\n");
		abort();
	}
	free(text);
}

/* Runs procfs_argv_to_text into an exact-size heap buffer; returns it, or NULL. */
static char *argv_text(const char *argv, size_t len, size_t outlen, size_t *ret)
{
	/* malloc(0) may return NULL; keep a real, still exact-size, allocation then. */
	char *out = malloc(outlen ? outlen : 1);
	size_t n;

	if (!out)
		return NULL;
	if (outlen)
		memset(out, 'X', outlen);
	n = procfs_argv_to_text(argv, len, out, outlen);
	if (outlen == 0) {
		if (n != 0) {
			fprintf(stderr, "outlen 0 but returned %zu\n", n);
			abort();
		}
	} else {
		const char *nul = memchr(out, '\0', outlen);

		if (!nul) {
			fprintf(stderr, "output not NUL-terminated within %zu bytes\n", outlen);
			abort();
		}
		if (n != (size_t)(nul - out)) {
			fprintf(stderr, "returned %zu, strlen(out) %zu\n", n, (size_t)(nul - out));
			abort();
		}
		/* Control bytes in argv are shown as \xNN: none may reach the text raw. */
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)out[i];

			if (c < 0x20 || c == 0x7f) {
				fprintf(stderr, "raw control byte 0x%02x at %zu\n", c, i);
				abort();
			}
		}
	}
	*ret = n;
	return out;
}

static void check_argv(const uint8_t *data, size_t size, size_t outlen)
{
	/* An exact-size copy, not NUL-terminated: cmdline bytes are not a C string. */
	char *argv = malloc(size ? size : 1);
	char *small, *big;
	size_t nsmall, nbig;

	if (!argv)
		return;
	if (size)
		memcpy(argv, data, size);
	small = argv_text(argv, size, outlen, &nsmall);
	big = argv_text(argv, size, PROCFS_CMDLINE_MAX, &nbig);
	/* Text cut short is the start of the text a larger buffer gets. */
	if (small && big && outlen > 0 && (nsmall > nbig || memcmp(small, big, nsmall) != 0)) {
		fprintf(stderr, "text for %zu bytes is not a prefix of the text for %d\n", outlen,
			PROCFS_CMDLINE_MAX);
		abort();
	}
	free(small);
	free(big);
	free(argv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t outlen;

	if (size == 0)
		return 0;
	outlen = out_sizes[data[0] % (sizeof(out_sizes) / sizeof(out_sizes[0]))];
	data++;
	size--;

	check_stat(data, size);
	check_argv(data, size, outlen);
	return 0;
}
