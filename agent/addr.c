// SPDX-License-Identifier: MIT
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include "addr.h"

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int addr_normalize(int family, uint8_t addr[16])
{
	if (family != AF_INET6 || memcmp(addr, v4mapped_prefix, sizeof(v4mapped_prefix)) != 0)
		return family;
	memmove(addr, addr + 12, 4);
	memset(addr + 4, 0, 12);
	return AF_INET;
}

int addr_format(int family, const uint8_t addr[16], char *buf, size_t len)
{
	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	if (!inet_ntop(family, addr, buf, len))
		return -ENOSPC;
	return 0;
}

int addr_key(int family, const uint8_t addr[16], uint8_t key[16])
{
	switch (family) {
	case AF_INET:
		memcpy(key, v4mapped_prefix, sizeof(v4mapped_prefix));
		memcpy(key + 12, addr, 4);
		return 0;
	case AF_INET6:
		memcpy(key, addr, 16);
		return 0;
	default:
		return -EAFNOSUPPORT;
	}
}

const char *addr_proto_name(int proto, char *buf, size_t len)
{
	if (proto == IPPROTO_TCP)
		return "tcp";
	if (proto == IPPROTO_UDP)
		return "udp";
	snprintf(buf, len, "ip%d", proto);
	return buf;
}
