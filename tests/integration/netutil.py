#!/usr/bin/env python3
"""Network workloads for nettrail's integration tests. Loopback addresses only."""
import os
import socket
import sys
import threading
import time

LOOPBACK = ("127.", "::1", "::ffff:127.")


def check_loopback(host):
    if not host.startswith(LOOPBACK):
        sys.exit(f"netutil: refusing non-loopback address {host}")


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve_tcp(port):
    """Accept and close connections on 127.0.0.1:port and [::1]:port until killed."""
    socks = []
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(1024)
        socks.append(s)

    def loop(s):
        while True:
            c, _ = s.accept()
            c.close()

    for s in socks:
        threading.Thread(target=loop, args=(s,), daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def connect_linger(host, port, secs):
    """Connect, then stay alive: /proc still shows the process when the agent looks."""
    connect(host, port)
    time.sleep(secs)


def thread_connect(host, port, outfile):
    """Connect from the main thread, then from a second one; write "pid tid" of the second."""
    connect(host, port)

    def run():
        with open(outfile, "w") as f:
            f.write(f"{os.getpid()} {threading.get_native_id()}\n")
        connect(host, port)
    th = threading.Thread(target=run)
    th.start()
    th.join()


def connect_wait_connect(host, port, port2, waitfile):
    """Connect, wait until waitfile exists, connect again: one process, two connects."""
    connect(host, port)
    sys.stdout.flush()
    while not os.path.exists(waitfile):
        time.sleep(0.02)
    connect(host, port2)


def exec_connect(host, port, port2):
    """Connect, then exec a new program in the same process that connects elsewhere."""
    connect(host, port)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, __file__, "connect", host, str(port2)])


def connect(host, port, count=1):
    check_loopback(host)
    refused = 0
    for _ in range(count):
        s = socket.socket(family_of(host), socket.SOCK_STREAM)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            refused += 1
        s.close()
    print(f"attempts={count} refused={refused}")


def udp_connect(host, port):
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.connect((host, port))
    s.send(b"x")
    s.close()


def udp_send(host, port, count, nsockets=1, ndests=1):
    """count datagrams from each of nsockets sockets to each of ndests ports from port on."""
    check_loopback(host)
    for _ in range(nsockets):
        s = socket.socket(family_of(host), socket.SOCK_DGRAM)
        for _ in range(count):
            for d in range(ndests):
                s.sendto(b"x", (host, port + d))
        s.close()


def udp_flood(host, base, n):
    """One datagram to each of n ports: n distinct destinations, so n events."""
    check_loopback(host)
    if base + n > 65536:
        sys.exit("netutil: udp-flood needs base + n <= 65536")
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    for i in range(n):
        s.sendto(b"x", (host, base + i))
    print(f"attempts={n}")


def wait_file(path, secs=5.0):
    for _ in range(int(secs / 0.01)):
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return True
        time.sleep(0.01)
    return False


def connect_report(host, port, outfile):
    """Write our pid and parent, connect, then say so in outfile.done."""
    with open(outfile, "w") as f:
        f.write(f"{os.getpid()} {os.getppid()}\n")
    connect(host, port)
    with open(outfile + ".done", "w") as f:
        f.write("done\n")


def double_fork(host, port, outfile, marker):
    """fork, setsid, fork, exec: a daemon-style grandchild that connects.

    The middle process stays until the grandchild has connected, so the parent the kernel
    sees at the connect is the one the grandchild wrote down."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, __file__, "connect-report",
                                      host, str(port), outfile, marker])
        wait_file(outfile + ".done")
        os._exit(0)
    os.wait()
    wait_file(outfile + ".done")


def quick(host, port):
    """Connect and exit at once: the process is gone before anyone reads /proc."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        s.connect((host, port))
    except OSError:
        pass
    os._exit(0)


def resolve(name, family="any"):
    """glibc's getaddrinfo, as most programs resolve; prints one address per line."""
    fam = {"any": 0, "4": socket.AF_INET, "6": socket.AF_INET6}[family]
    try:
        infos = socket.getaddrinfo(name, 80, fam, socket.SOCK_STREAM)
    except socket.gaierror as e:
        print(f"error {e.errno}")
        sys.exit(1)
    for addr in sorted({i[4][0] for i in infos}):
        print(addr)


def unix_serve(path):
    """A listening unix socket at path, as nscd or systemd-resolved would have."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        c.close()


def unix_connect(path):
    """Prints ok, or the errno name the connect failed with."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        print("ok")
    except OSError as e:
        print(errno_name(e.errno))


def errno_name(n):
    import errno
    return errno.errorcode.get(n, str(n))


def udp_sink(host, port):
    """A resolver that never answers."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    print("ready", flush=True)
    while True:
        s.recvfrom(65535)


def dns_slow(host, port, delay_ms):
    """A resolver that answers every query after delay_ms: one A record, 127.0.0.10."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    print("ready", flush=True)
    while True:
        q, peer = s.recvfrom(65535)
        time.sleep(delay_ms / 1000)
        end = 12
        while q[end]:
            end += 1 + q[end]
        end += 5  # the root label, QTYPE, QCLASS
        answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([127, 0, 0, 10])
        s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:end] + answer, peer)


def dns_garbage(host, port, n):
    """n datagrams that are not DNS (short, random, lying counts) to host:port."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    bad = [b"", b"\x01", b"\x12\x34\x01\x00\x00\x01", b"\x12\x34\x01\x00\x00\x05\x00\x00\x00\x00\x00\x00\x03abc",
           b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", os.urandom(300)]
    for i in range(n):
        s.sendto(bad[i % len(bad)], (host, port))


def tcp_hang(host, port):
    """A TCP resolver that accepts and never answers."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(16)
    print("ready", flush=True)
    conns = []
    while True:
        conns.append(s.accept()[0])
        print("accepted", flush=True)


def dns_query(name, qtype=1, ident=0x1234):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (ident.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" +
            labels + b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01")


def dns_tcp_halfclose(host, name):
    """One query over TCP to host:53, then shutdown(SHUT_WR): prints the answer's rcode."""
    check_loopback(host)
    s = socket.create_connection((host, 53), timeout=10)
    q = dns_query(name)
    s.sendall(len(q).to_bytes(2, "big") + q)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print(f"rcode {data[5] & 0xf}" if len(data) >= 6 else "no answer")


def dns_send_exit(host, name):
    """One UDP query to host:53, and exit at once, without waiting for the answer."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.sendto(dns_query(name), (host, 53))
    os._exit(0)


def dns_answer_name(msg):
    """The question name of a DNS message, lowercase, without the trailing dot."""
    labels, i = [], 12
    while msg[i]:
        labels.append(msg[i + 1:i + 1 + msg[i]].decode().lower())
        i += 1 + msg[i]
    return ".".join(labels)


def dns_tcp_pipeline(host, *names):
    """Every query on one TCP connection before reading any answer; prints "id name rcode"
    for each answer in the order they come."""
    check_loopback(host)
    s = socket.create_connection((host, 53), timeout=5)
    for i, name in enumerate(names):
        q = dns_query(name, ident=0x100 + i)
        s.sendall(len(q).to_bytes(2, "big") + q)
    buf = b""
    for _ in names:
        while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
            chunk = s.recv(4096)
            if not chunk:
                sys.exit("connection closed early")
            buf += chunk
        n = int.from_bytes(buf[:2], "big")
        msg, buf = buf[2:2 + n], buf[2 + n:]
        print(f"{int.from_bytes(msg[:2], 'big'):#x} {dns_answer_name(msg)} {msg[3] & 0xf}")


def dns_same_id(host, name):
    """One query with the id every other caller of this uses too (0x1234), unconnected UDP;
    prints "ok" if the answer has that id and this name, else what came back."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(dns_query(name, ident=0x1234), (host, 53))
    msg, peer = s.recvfrom(4096)
    ident, got = int.from_bytes(msg[:2], "big"), dns_answer_name(msg)
    print("ok" if ident == 0x1234 and got == name.lower() else f"got {ident:#x} {got}")


def dns_peer(host):
    """What the socket API shows of the resolver: getpeername of connected UDP and TCP
    sockets, and the source of an answer to an unconnected UDP query. One line each."""
    check_loopback(host)
    fam = family_of(host)
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.connect((host, 53))
    print("udp-connected", u.getpeername()[:2])
    u.send(dns_query("ci.example.test"))
    u.settimeout(5)
    u.recv(4096)
    t = socket.create_connection((host, 53), timeout=5)
    print("tcp", t.getpeername()[:2])
    v = socket.socket(fam, socket.SOCK_DGRAM)
    v.settimeout(5)
    v.sendto(dns_query("ci.example.test"), (host, 53))
    _, peer = v.recvfrom(4096)
    print("udp-from", peer[:2])


def dns_burst(host, n):
    """n queries from one unconnected UDP socket as fast as it can send them (ids 0..n-1,
    names q<i>.many.example.test), then the answers; prints how many came back."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    for i in range(n):
        s.sendto(dns_query(f"q{i}.many.example.test", ident=i), (host, 53))
    s.settimeout(5)
    got = 0
    try:
        while got < n:
            s.recvfrom(4096)
            got += 1
    except socket.timeout:
        pass
    print(got)


def attempt(kind, host, port):
    """One attempt: tcp (connect), udp (connect, send) or sendto; prints 'KIND ok' or the errno."""
    check_loopback(host)
    t = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family_of(host), t)
    try:
        if kind == "sendto":
            s.sendto(b"x", (host, port))
        else:
            s.connect((host, port))
            if kind == "udp":
                s.send(b"x")
        print(f"{kind} ok")
    except ConnectionRefusedError:
        print(f"{kind} ok")  # reached the host: nobody listens
    except OSError as e:
        print(f"{kind} {errno_name(e.errno)}")
    finally:
        s.close()


def udp_log(host, port, outfile):
    """Appends every datagram received to outfile, one per line."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    print("ready", flush=True)
    while True:
        data, _ = s.recvfrom(65535)
        with open(outfile, "a") as f:
            f.write(data.decode(errors="replace") + "\n")


def udp_hold(host, port, waitfile):
    """A connected UDP socket: 'before', then once waitfile exists 'after' five times."""
    check_loopback(host)
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.connect((host, port))
    s.send(b"before")
    wait_file(waitfile, 10)
    sent = 0
    for _ in range(5):
        try:
            s.send(b"after")
            sent += 1
        except OSError:
            pass
        time.sleep(0.05)
    print(f"sent={sent}")


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "serve-tcp":
        serve_tcp(int(args[0]))
    elif cmd == "connect":
        connect(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 1)
    elif cmd == "thread-connect":
        thread_connect(args[0], int(args[1]), args[2])
    elif cmd == "connect-wait-connect":
        connect_wait_connect(args[0], int(args[1]), int(args[2]), args[3])
    elif cmd == "exec-connect":
        exec_connect(args[0], int(args[1]), int(args[2]))
    elif cmd == "connect-linger":
        connect_linger(args[0], int(args[1]), float(args[2]))
    elif cmd == "udp-connect":
        udp_connect(args[0], int(args[1]))
    elif cmd == "udp-send":
        udp_send(args[0], int(args[1]), int(args[2]), *(int(a) for a in args[3:5]))
    elif cmd == "udp-flood":
        udp_flood(args[0], int(args[1]), int(args[2]))
    elif cmd == "connect-report":
        connect_report(args[0], int(args[1]), args[2])
    elif cmd == "double-fork":
        double_fork(args[0], int(args[1]), args[2], args[3])
    elif cmd == "resolve":
        resolve(*args)
    elif cmd == "unix-serve":
        unix_serve(args[0])
    elif cmd == "unix-connect":
        unix_connect(args[0])
    elif cmd == "udp-sink":
        udp_sink(args[0], int(args[1]))
    elif cmd == "dns-slow":
        dns_slow(args[0], int(args[1]), int(args[2]))
    elif cmd == "dns-garbage":
        dns_garbage(args[0], int(args[1]), int(args[2]))
    elif cmd == "tcp-hang":
        tcp_hang(args[0], int(args[1]))
    elif cmd == "dns-tcp-halfclose":
        dns_tcp_halfclose(args[0], args[1])
    elif cmd == "dns-send-exit":
        dns_send_exit(args[0], args[1])
    elif cmd == "dns-tcp-pipeline":
        dns_tcp_pipeline(args[0], *args[1:])
    elif cmd == "dns-same-id":
        dns_same_id(args[0], args[1])
    elif cmd == "dns-peer":
        dns_peer(args[0])
    elif cmd == "dns-burst":
        dns_burst(args[0], int(args[1]))
    elif cmd == "attempt":
        attempt(args[0], args[1], int(args[2]))
    elif cmd == "udp-log":
        udp_log(args[0], int(args[1]), args[2])
    elif cmd == "udp-hold":
        udp_hold(args[0], int(args[1]), args[2])
    elif cmd == "quick":
        quick(args[0], int(args[1]))
    else:
        sys.exit(f"netutil: unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
