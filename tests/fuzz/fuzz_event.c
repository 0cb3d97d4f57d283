// SPDX-License-Identifier: MIT
/*
 * libFuzzer target for agent/event.c: event_decode() on ring-buffer samples of any length
 * and content, then addr_format() and addr_key() (agent/addr.c) on what it accepted.
 *
 * Every sample event_decode() accepts has a family the rest of the agent can format and
 * key, or is a connect to a known local resolver's unix socket; anything else is a bug in
 * the checks, so the target aborts.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "addr.h"
#include "event.h"

/* A plausible CLOCK_REALTIME - CLOCK_BOOTTIME (2023-11-14), as event_boot_to_wall_ns() gives. */
#define BOOT_TO_WALL 1700000000000000000LL

static void check_record(const struct conn_record *r)
{
	char text[ADDR_TEXT_MAX];
	uint8_t key[16];

	/* A local resolver's unix socket: a known path, and nothing of an IP address. */
	if (r->kind == NT_EV_UNIX) {
		if (r->family != NT_AF_UNIX || !event_resolver_path(r->addr[0])) {
			fprintf(stderr, "event_decode accepted a unix event of family %u, path %u\n",
				r->family, r->addr[0]);
			abort();
		}
		if (r->verdict > NT_VERDICT_BLOCKED)
			abort();
		(void)event_kind_name(r->kind);
		return;
	}
	if (r->family != AF_INET && r->family != AF_INET6) {
		fprintf(stderr, "event_decode accepted family %u\n", r->family);
		abort();
	}
	if (r->kind != NT_EV_CONNECT && r->kind != NT_EV_SENDMSG) {
		fprintf(stderr, "event_decode accepted kind %u\n", r->kind);
		abort();
	}
	if (r->verdict > NT_VERDICT_BLOCKED) {
		fprintf(stderr, "event_decode accepted verdict %u\n", r->verdict);
		abort();
	}
	if (addr_format(r->family, r->addr, text, sizeof(text)) != 0) {
		fprintf(stderr, "addr_format failed for accepted family %u\n", r->family);
		abort();
	}
	if (memchr(text, '\0', sizeof(text)) == NULL)
		abort();
	if (addr_key(r->family, r->addr, key) != 0) {
		fprintf(stderr, "addr_key failed for accepted family %u\n", r->family);
		abort();
	}
	/* IPv4 keys are ::ffff:a.b.c.d; a v4-mapped IPv6 address must have become AF_INET. */
	if (r->family == AF_INET6 && key[10] == 0xff && key[11] == 0xff &&
	    memcmp(key, "\0\0\0\0\0\0\0\0\0\0", 10) == 0) {
		fprintf(stderr, "v4-mapped address left as AF_INET6\n");
		abort();
	}
	(void)event_kind_name(r->kind);
	(void)event_verdict_name(r->verdict);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn_record r;
	void *copy;

	/* An exact-size heap copy: ASan reports any read past the sample, also for size 0. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	if (size)
		memcpy(copy, data, size);

	memset(&r, 0, sizeof(r));
	if (event_decode(copy, size, 0, &r) == 0)
		check_record(&r);

	memset(&r, 0, sizeof(r));
	if (event_decode(copy, size, BOOT_TO_WALL, &r) == 0)
		check_record(&r);

	/* A sample at an odd address, as the ring buffer may hand out. */
	if (size == sizeof(struct nt_event)) {
		uint8_t *odd = malloc(size + 1);

		if (odd) {
			memcpy(odd + 1, data, size);
			memset(&r, 0, sizeof(r));
			if (event_decode(odd + 1, size, BOOT_TO_WALL, &r) == 0)
				check_record(&r);
			free(odd);
		}
	}
	free(copy);
	return 0;
}
