#!/usr/bin/python3
# Decodes nettrail's event feed (/v1/events, protobuf): a stream of Event messages, each
# preceded by its length as a varint (protobuf's writeDelimitedTo format), read from stdin.
# It uses the real protobuf decoder of python3-protobuf, with the Python module generated at
# run time from schema/nettrail.proto by protoc (protobuf-compiler).
#
#   feeddecode.py [--schema DIR] [--count | --json] < stream
#
# Default output, one line per event, fields joined by '|' as the sqlite3 shell joins them
# (its default list mode; an absent value prints as nothing, as the shell prints NULL):
#
#   id|kind|scope|pid|addr_or_qname|port_or_qtype|verdict|domain_or_rcode
#
#   id               the event id
#   kind             'connect', 'dns' or 'rule_change' (which member of Event.kind is set)
#   scope            Event.scope
#   pid              Process.pid; empty when the event names no process row (pid 0), and
#                    for a rule change
#   addr_or_qname    connect: Connect.addr;   dns: DnsQuery.qname; rule_change: pattern
#                    (empty for a change of a scope default)
#   port_or_qtype    connect: Connect.port;   dns: DnsQuery.qtype; rule_change: new_mode
#   verdict          'allowed', 'would_block' or 'blocked' (the enum's name in lowercase,
#                    as the store writes it); empty for VERDICT_UNSPECIFIED (a rule change)
#   domain_or_rcode  connect: Connect.domain; dns: DnsQuery.rcode; rule_change: old_mode
#
# The same lines from the database:
#
#   sqlite3 DB "SELECT c.id, 'connect', c.scope, p.pid, c.addr, c.port, c.verdict, c.domain
#               FROM connections c LEFT JOIN processes p ON p.id = c.process_id
#               UNION ALL
#               SELECT q.id, 'dns', q.scope, p.pid, q.qname, q.qtype, q.verdict, q.rcode
#               FROM dns_queries q LEFT JOIN processes p ON p.id = q.process_id
#               UNION ALL
#               SELECT id, 'rule_change', scope, NULL, pattern, new_mode, NULL, old_mode
#               FROM rule_changes
#               ORDER BY 1"
#
# Strings are written as UTF-8 (the feed has replaced bytes that were not, by U+FFFD).
# --count prints only the number of events; --json prints each event as protobuf's own JSON
# mapping (json_format), one object per line, to compare with the NDJSON feed.
#
# Exit status: 0, or 1 with a message on stderr when the stream is not a whole number of
# valid messages (a cut-short stream is an error, not a shorter feed).

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

MAX_MESSAGE = 64 << 20  # a sanity bound: no event comes near it
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, which python3-protobuf installs into

# Run as `python3 feeddecode.py`, the python3 on PATH may be another one (a pyenv shim)
# without python3-protobuf: then start again under Debian's.
try:
    import google.protobuf  # noqa: F401
except ImportError:
    if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON) and \
            os.access(SYSTEM_PYTHON, os.X_OK):
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.realpath(__file__)] + sys.argv[1:])
    sys.exit("feeddecode: google.protobuf not found (Debian package python3-protobuf)")


def load_module(schema_dir):
    """Generates nettrail_pb2 from nettrail.proto into a temporary directory and imports it."""
    protoc = shutil.which("protoc")
    if not protoc:
        sys.exit("feeddecode: protoc not found (Debian package protobuf-compiler)")
    tmp = tempfile.mkdtemp(prefix="feeddecode.")
    try:
        subprocess.run([protoc, "--python_out=" + tmp, "--proto_path=" + schema_dir,
                        "nettrail.proto"], check=True)
        sys.path.insert(0, tmp)
        return importlib.import_module("nettrail_pb2")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_varint(f):
    """The next varint of f and its length in bytes, or None at a clean end of the stream."""
    value = shift = 0
    for i in range(10):
        b = f.read(1)
        if not b:
            if i == 0:
                return None
            raise ValueError("stream ends inside a length prefix")
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value, i + 1
        shift += 7
    raise ValueError("length prefix longer than 10 bytes")


def messages(f, event_cls):
    """Each Event of the delimited stream f."""
    offset = 0
    while True:
        prefix = read_varint(f)
        if prefix is None:
            return
        n, k = prefix
        offset += k
        if n > MAX_MESSAGE:
            raise ValueError("message at byte %d claims %d bytes" % (offset, n))
        data = f.read(n)
        if len(data) != n:
            raise ValueError("stream ends inside a message (%d of %d bytes) at byte %d"
                             % (len(data), n, offset))
        ev = event_cls()
        ev.ParseFromString(data)  # raises DecodeError on a malformed message
        yield ev
        offset += n


def line(ev, pb):
    kind = ev.WhichOneof("kind") or ""
    pid = str(ev.process.pid) if ev.HasField("process") and ev.process.pid else ""
    verdict = pb.Verdict.Name(ev.verdict).lower() if ev.verdict else ""
    if kind == "connect":
        c = ev.connect
        rest = [c.addr, str(c.port), verdict, c.domain]
    elif kind == "dns":
        q = ev.dns
        rest = [q.qname, q.qtype, verdict, q.rcode]
    elif kind == "rule_change":
        r = ev.rule_change
        rest = [r.pattern, r.new_mode, verdict, r.old_mode]
    else:
        rest = ["", "", verdict, ""]
    return "|".join([str(ev.id), kind, ev.scope, pid] + rest)


def main():
    here = os.path.dirname(os.path.realpath(__file__))
    ap = argparse.ArgumentParser(description="Decode a varint-delimited stream of nettrail "
                                 "Event messages from stdin.")
    ap.add_argument("--schema", default=os.path.join(here, "..", "..", "schema"),
                    help="directory holding nettrail.proto (default: the repository's)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--count", action="store_true", help="print only the number of events")
    mode.add_argument("--json", action="store_true",
                      help="print each event in protobuf's JSON mapping, one per line")
    args = ap.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly

    pb = load_module(args.schema)
    from google.protobuf import json_format

    out = open(sys.stdout.fileno(), "w", encoding="utf-8", newline="\n", closefd=False)
    count = 0
    try:
        for ev in messages(sys.stdin.buffer, pb.Event):
            count += 1
            if args.json:
                d = json_format.MessageToDict(ev)
                out.write(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n")
            elif not args.count:
                out.write(line(ev, pb) + "\n")
    except Exception as e:  # DecodeError, ValueError
        out.flush()
        print("feeddecode: event %d: %s" % (count + 1, e), file=sys.stderr)
        return 1
    if args.count:
        out.write("%d\n" % count)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
