#!/bin/sh
# The built-in example: a short "deploy" whose dependencies nettrail reveals.
# Everything it reaches is on this machine's loopback; nothing leaves the host.
set -u
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT

# An "artifact server" the deploy downloads from (started by the script itself).
echo "release 1.2.3" >"$dir/release.txt"
python3 -m http.server 18480 --bind 127.0.0.1 --directory "$dir" >/dev/null 2>&1 &
server=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do
	curl -s --noproxy '*' -o /dev/null http://127.0.0.1:18480/ && break
	sleep 0.2
done

echo "deploy: looking up the artifact server"
# A local stub resolver's address. `make example` runs the site's DNS (resolver.py) on
# loopback and points nettrail's proxy at it with --upstream: the query never leaves.
addr=$(dig +short +time=2 +tries=2 @127.0.0.53 artifacts.deploy.test)
echo "deploy: artifacts.deploy.test is ${addr:-unknown}"
dig +short +time=2 +tries=2 @127.0.0.53 old-mirror.example.invalid >/dev/null

echo "deploy: fetching the release"
curl -fsS --noproxy '*' -o "$dir/fetched.txt" "http://${addr:-127.0.0.1}:18480/release.txt"

echo "deploy: telling the metrics daemon (UDP, fire and forget)"
python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b"deploy.done:1|c", ("127.0.0.1", 8125)) for _ in range(100)]'

echo "deploy: checking the internal API on IPv6 (nothing listens: the attempt still counts)"
python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.settimeout(1)
try: s.connect(("::1", 18443))
except OSError as e: print("deploy: internal API unreachable:", e.strerror)'

echo "deploy: done"
