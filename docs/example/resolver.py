#!/usr/bin/env python3
"""The example's own DNS server, on loopback: *.deploy.test is 127.0.0.1 (A) and ::1 (AAAA),
with a TTL of 300 s; any other name is NXDOMAIN. Usage: resolver.py PORT"""
import socket
import struct
import sys

ZONE = b"\x06deploy\x04test\x00"


def answer(query):
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    end = 12
    while end < len(query) and query[end] != 0:
        end += 1 + query[end]
    qname, (qtype, qclass) = query[12:end + 1], struct.unpack("!HH", query[end + 1:end + 5])
    question = query[12:end + 5]
    rdata = {1: socket.inet_pton(socket.AF_INET, "127.0.0.1"),
             28: socket.inet_pton(socket.AF_INET6, "::1")}.get(qtype)
    known = qname.lower().endswith(ZONE)
    rcode = 0 if known else 3
    records = b""
    if known and rdata:
        records = b"\xc0\x0c" + struct.pack("!HHIH", qtype, qclass, 300, len(rdata)) + rdata
    header = struct.pack("!HHHHHH", ident, 0x8180 | (flags & 0x0100) | rcode, 1,
                         1 if records else 0, 0, 0)
    return header + question + records


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    while True:
        query, peer = s.recvfrom(512)
        try:
            s.sendto(answer(query), peer)
        except (struct.error, IndexError):
            pass  # not a query this example understands


if __name__ == "__main__":
    main()
