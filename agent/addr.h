/* SPDX-License-Identifier: MIT */
#ifndef NT_ADDR_H
#define NT_ADDR_H

#include <stddef.h>
#include <stdint.h>

#define ADDR_TEXT_MAX 46 /* INET6_ADDRSTRLEN */

/*
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) names an IPv4 destination: turn it into
 * AF_INET with the address in the first 4 bytes. Returns the (possibly new) family.
 */
int addr_normalize(int family, uint8_t addr[16]);

/* Text form ("127.0.0.1", "::1"). 0, or -EAFNOSUPPORT / -ENOSPC. */
int addr_format(int family, const uint8_t addr[16], char *buf, size_t len);

/*
 * The 16-byte sortable key stored beside the text: IPv6 as is, IPv4 as ::ffff:a.b.c.d, so
 * that ORDER BY and BETWEEN work across families in SQLite (blobs compare with memcmp).
 */
int addr_key(int family, const uint8_t addr[16], uint8_t key[16]);

/* Protocol name for an IPPROTO_ number: "tcp", "udp", or "ip"+number into buf. */
const char *addr_proto_name(int proto, char *buf, size_t len);

#endif /* NT_ADDR_H */
