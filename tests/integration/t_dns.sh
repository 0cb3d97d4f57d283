# DNS: the watched cgroups' queries go through the agent's proxy to a real resolver (dnsmasq
# on loopback, answering test names with loopback addresses), and every query is recorded.
#
# The host's /etc/resolv.conf names a resolver these tests must never reach: tests that use
# the system resolver (glibc, python, curl) get their own resolv.conf in a private mount
# namespace (in_private_resolv).

DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
RESOLVER=127.0.0.2 # dnsmasq's IPv4 address; ::1 is its IPv6 one

# dnsmasq on 127.0.0.2:53 and [::1]:53 with the test zone; waits until it answers.
start_dnsmasq() {
	if [ -n "${DNSMASQ_PID:-}" ]; then # the previous test's
		kill "$DNSMASQ_PID" 2>/dev/null
		wait "$DNSMASQ_PID" 2>/dev/null
	fi
	ip addr add 127.0.0.2/8 dev lo 2>/dev/null
	bg "$DNSMASQ" --keep-in-foreground --no-resolv --no-hosts --no-poll --user=root \
		--bind-interfaces --listen-address="$RESOLVER,::1" --port=53 --pid-file= \
		--log-queries --log-facility="$T/dnsmasq.log" --local-ttl="${DNSMASQ_TTL:-60}" \
		--host-record=ci.example.test,127.0.0.10,::1 \
		--host-record=api.example.test,127.0.0.1 \
		--cname=www.example.test,ci.example.test \
		--address=/many.example.test/127.0.0.12 \
		"$@"
	DNSMASQ_PID=$BG_PID
	for _ in $(seq 100); do
		[ "$(dig +short +time=1 +tries=1 @"$RESOLVER" ci.example.test 2>/dev/null)" = 127.0.0.10 ] &&
			return 0
		sleep 0.05
	done
	fail "dnsmasq did not start: $(cat "$T/dnsmasq.log" 2>/dev/null)"
}

# Runs "$@" in a private mount namespace whose resolv.conf names only $RESOLVER (or the
# addresses in $NAMESERVERS).
in_private_resolv() {
	{ for ns in ${NAMESERVERS:-$RESOLVER}; do echo "nameserver $ns"; done
	  echo "options timeout:2 attempts:1"; } >"$T/resolv.conf"
	printf 'hosts: files dns\n' >"$T/nsswitch.conf"
	unshare -m -- sh -c 'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/nsswitch.conf &&
		shift 2 && exec "$@"' sh "$T/resolv.conf" "$T/nsswitch.conf" "$@"
}

# The program's name: comm may be a thread's (dig's is isc-net-0000).
PROG="replace(p.exe, rtrim(p.exe, replace(p.exe, '/', '')), '')"

# One line per query: "program qname qtype rcode transport resolver".
dns_rows() {
	q "$DB" "select $PROG, d.qname, d.qtype, d.rcode, d.transport, d.resolver
		 from dns_queries d left join processes p on p.id = d.process_id order by d.id" | tr '|' ' '
}

test_dns_dig_udp_tcp_ipv6() {
	start_dnsmasq
	nrun --scope dns -- sh -c "dig +time=2 +tries=1 @$RESOLVER ci.example.test;
		dig +tcp +time=2 +tries=1 @$RESOLVER www.example.test;
		dig -6 +time=2 +tries=1 @::1 ci.example.test AAAA" >"$T/dig.out"
	expect_eq "$RC" 0 "exit status"
	# dig checks that the answer comes from the server it asked: the redirect is invisible.
	grep -q "unexpected source" "$T/dig.out" && fail "dig saw the proxy: $(cat "$T/dig.out")"
	expect_eq "$(grep -E '^[a-z].*IN' "$T/dig.out" | grep -v '^;' | awk '{print $1, $4, $5}')" \
		"ci.example.test. A 127.0.0.10
www.example.test. CNAME ci.example.test.
ci.example.test. A 127.0.0.10
ci.example.test. AAAA ::1" "answers as dnsmasq gives them"
	expect_match "$(grep -c 'SERVER: 127.0.0.2#53' "$T/dig.out")" "^2$" "dig names the resolver it asked"
	# dig asks with EDNS0 (and a cookie): the OPT record comes back through the proxy.
	expect_eq "$(grep -c 'EDNS: version: 0' "$T/dig.out")" 3 "EDNS0 passed through"
	expect_eq "$(dns_rows)" "dig ci.example.test A NOERROR udp 127.0.0.2:53
dig www.example.test A NOERROR tcp 127.0.0.2:53
dig ci.example.test AAAA NOERROR udp [::1]:53" "dns_queries"
	# The whole chain of the CNAME answer, with the TTL dnsmasq gave.
	expect_eq "$(q "$DB" "select a.name, a.type, a.value, a.ttl from dns_answers a join dns_queries d
		on d.id = a.query_id where d.qname = 'www.example.test' order by a.rowid" | tr '|' ' ')" \
		"www.example.test CNAME ci.example.test 60
ci.example.test A 127.0.0.10 60" "CNAME chain"
	expect_eq "$(q "$DB" "select count(*) from dns_queries where scope = 'dns' and run_id = 1
		and latency_ns > 0 and verdict = 'allowed' and answers >= 1 and error is null")" 3 "query details"
	# Each query's process is the dig that sent it, with its command line.
	expect_match "$(q "$DB" "select p.cmdline from dns_queries d join processes p on p.id = d.process_id
		where d.qtype = 'AAAA'")" "^dig -6 .*@::1 ci.example.test AAAA$" "cmdline of the AAAA query"
	# The resolver connects are recorded too: the script depends on its resolver.
	expect_eq "$(q "$DB" "select proto, addr, port from connections order by id" | tr '|' ' ')" \
		"udp 127.0.0.2 53
tcp 127.0.0.2 53
udp ::1 53" "resolver connections"
}

test_dns_glibc_python_and_curl_name_the_connection() {
	start_dnsmasq
	serve_tcp 18301
	in_private_resolv "$NETTRAIL" run --db "$DB" --scope app -- sh -c "
		getent ahostsv4 ci.example.test | head -1;
		$PY $NETUTIL resolve www.example.test 4;
		curl -s --noproxy '*' --max-time 3 -o /dev/null -w '%{remote_ip}\n' http://api.example.test:18301/" \
		>"$T/out" 2>"$T/report"
	expect_eq "$(cat "$T/out")" "127.0.0.10      STREAM ci.example.test
127.0.0.10
127.0.0.1" "what the clients resolved"
	expect_match "$(q "$DB" "select distinct $PROG, d.qname, d.rcode from dns_queries d
		join processes p on p.id = d.process_id where d.qtype = 'A' order by d.id" | tr '|' ' ')" \
		"^getent ci.example.test NOERROR
python3[.0-9]* www.example.test NOERROR
curl api.example.test NOERROR$" "A queries, each with its process"
	expect_eq "$(q "$DB" "select count(*) from dns_queries where process_id is null")" 0 "all attributed"
	# The connection to the address curl resolved carries the name.
	expect_eq "$(q "$DB" "select addr, port, domain from connections where port = 18301" | tr '|' ' ')" \
		"127.0.0.1 18301 api.example.test" "connection domain"
	expect_match "$(q "$DB" "select domain, addr, port from dependencies where port = 18301" | tr '|' ' ')" \
		"^api.example.test 127.0.0.1 18301$" "dependencies view"
}

test_dns_resolver_nobody_listens_on_with_upstream() {
	# 127.0.0.99 has no resolver: only the redirect, to --upstream, can answer.
	start_dnsmasq
	nrun --upstream "$RESOLVER" -- dig +short +time=2 +tries=1 @127.0.0.99 ci.example.test
	expect_eq "$RC" 0 "exit status"
	expect_eq "$(q "$DB" "select qname, rcode, resolver, upstream from dns_queries" | tr '|' ' ')" \
		"ci.example.test NOERROR 127.0.0.99:53 127.0.0.2:53" "resolver asked vs upstream used"
	# Without --upstream the proxy goes where the process asked: nothing there, a quick SERVFAIL.
	nrun -- dig +time=3 +tries=1 @127.0.0.99 ci.example.test >"$T/dig.out"
	expect_match "$(cat "$T/dig.out")" "status: SERVFAIL" "SERVFAIL, not a hang"
	expect_eq "$(q "$DB" "select rcode, error from dns_queries where run_id = 2" | tr '|' ' ')" \
		"SERVFAIL upstream refused" "recorded with the reason"
	expect_match "$(cat "$T/report")" \
		"DNS: 1 query for 1 name, 1 without an answer: ci.example.test A \\(SERVFAIL\\)" "run report"
	expect_eq "$(q "$DB" "select max(value) from stats where source = 'run:2' and name = 'dns_upstream_errors'")" \
		1 "counted as an upstream error"
}

test_dns_upstream_timeout_is_servfail() {
	bg "$PY" "$NETUTIL" udp-sink 127.0.0.97 53 >"$T/sink"
	wait_for "$T/sink" ready || fail "sink did not start"
	local t0=$SECONDS
	nrun --dns-timeout 1s -- dig +time=5 +tries=1 @127.0.0.97 ci.example.test >"$T/dig.out"
	expect_match "$(cat "$T/dig.out")" "status: SERVFAIL" "SERVFAIL after the upstream timeout"
	[ $((SECONDS - t0)) -le 4 ] || fail "took $((SECONDS - t0)) s: the client's own timeout, not the proxy's"
	expect_eq "$(q "$DB" "select rcode, error, latency_ns is null from dns_queries" | tr '|' ' ')" \
		"SERVFAIL upstream timeout 1" "recorded"
	expect_eq "$(q "$DB" "select max(value) from stats where name = 'dns_upstream_timeouts'")" 1 "counted"
}

test_dns_outside_processes_untouched() {
	local cg="$CG2/nettrail-test-dns-$$"
	start_dnsmasq
	mkdir -p "$cg"
	start_agent --watch "$cg:svc" --upstream "$RESOLVER"
	# Inside the watched cgroup, 127.0.0.99 (no resolver) is answered through the agent's
	# --upstream; outside it stays unanswered, and 127.0.0.2 answers directly, unrecorded.
	sh -c "echo \$\$ > $cg/cgroup.procs; exec dig +short +time=2 +tries=1 @127.0.0.99 ci.example.test" >"$T/in"
	dig +short +time=1 +tries=1 @127.0.0.99 www.example.test >"$T/out1"
	expect_eq "$(cat "$T/in")" 127.0.0.10 "the watched process is redirected"
	expect_match "$(cat "$T/out1")" "timed out|no servers" "no redirect outside"
	expect_eq "$(dig +short +time=2 +tries=1 @$RESOLVER api.example.test)" 127.0.0.1 "direct answer"
	stop_agent
	rmdir "$cg"
	expect_eq "$(q "$DB" "select scope, qname, resolver, upstream from dns_queries" | tr '|' ' ')" \
		"svc ci.example.test 127.0.0.99:53 127.0.0.2:53" "only the watched query recorded"
}

test_dns_tcp_pipelined_queries() {
	# Three queries on one TCP connection before any answer is read: three answers, each
	# with its own id and name, and three rows.
	start_dnsmasq
	nrun -- "$PY" "$NETUTIL" dns-tcp-pipeline "$RESOLVER" ci.example.test www.example.test api.example.test \
		>"$T/out"
	expect_eq "$(sort "$T/out")" "0x100 ci.example.test 0
0x101 www.example.test 0
0x102 api.example.test 0" "answers"
	expect_eq "$(q "$DB" "select count(*), count(distinct qname), group_concat(distinct transport),
		count(distinct process_id) from dns_queries")" "3|3|tcp|1" "rows"
}

test_dns_same_id_from_many_clients() {
	# 30 processes send the same query id at once: the proxy gives each its own id upstream,
	# and each gets its own answer back under the id it sent.
	start_dnsmasq
	mkdir -p "$T/same"
	nrun -- sh -c "for i in \$(seq 1 30); do
		$PY $NETUTIL dns-same-id $RESOLVER s\$i.many.example.test >$T/same/\$i & done; wait"
	expect_eq "$(cat "$T"/same/* | sort | uniq -c | awk '{ print $1, $2 }')" "30 ok" \
		"each of the 30 clients got its own answer"
	expect_eq "$(q "$DB" "select count(*) from dns_queries d join processes p on p.id = d.process_id
		where p.cmdline like '% ' || d.qname")" 30 "each row with its process"
}

test_dns_domain_expires_after_ttl_and_grace() {
	# A 1 s TTL and no grace: a connect right after the lookup has the name, one 2.5 s later
	# does not.
	DNSMASQ_TTL=1 start_dnsmasq
	serve_tcp 18304
	nrun --dns-grace 0s -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER api.example.test >/dev/null;
		$PY $NETUTIL connect 127.0.0.1 18304; sleep 2.5; $PY $NETUTIL connect 127.0.0.1 18304"
	expect_eq "$(q "$DB" "select ttl from dns_answers")" 1 "TTL as answered"
	expect_eq "$(q "$DB" "select coalesce(domain, '-') from connections where port = 18304 order by id" |
		paste -sd' ')" "api.example.test -" "named within the TTL, not after"
}

test_dns_replies_seem_to_come_from_the_resolver() {
	# What programs check: getpeername of connected UDP and TCP sockets, and the source of an
	# answer to an unconnected query, over IPv4, IPv6 and v4-mapped IPv6.
	start_dnsmasq
	nrun -- sh -c "$PY $NETUTIL dns-peer $RESOLVER; $PY $NETUTIL dns-peer ::1;
		$PY $NETUTIL dns-peer ::ffff:$RESOLVER; dig +tcp -6 +short +time=2 +tries=1 @::1 ci.example.test AAAA" \
		>"$T/out"
	expect_eq "$(cat "$T/out")" "udp-connected ('127.0.0.2', 53)
tcp ('127.0.0.2', 53)
udp-from ('127.0.0.2', 53)
udp-connected ('::1', 53)
tcp ('::1', 53)
udp-from ('::1', 53)
udp-connected ('::ffff:127.0.0.2', 53)
tcp ('::ffff:127.0.0.2', 53)
udp-from ('::ffff:127.0.0.2', 53)
::1" "the resolver, never the proxy"
	expect_eq "$(q "$DB" "select transport, resolver from dns_queries where qtype = 'AAAA'" | tr '|' ' ')" \
		"tcp [::1]:53" "TCP over IPv6 recorded"
	expect_eq "$(q "$DB" "select count(*) from dns_queries where process_id is null")" 0 "all attributed"
}

test_dns_concurrent_short_lived_processes() {
	# 200 processes resolve 200 names at once and exit: each query names its own process.
	start_dnsmasq
	nrun -- sh -c "for i in \$(seq 0 199); do dig +short +time=3 +tries=1 @$RESOLVER n\$i.many.example.test >/dev/null & done; wait"
	expect_eq "$(q "$DB" "select count(*), count(distinct qname), count(distinct process_id) from dns_queries")" \
		"200|200|200" "200 queries, names, processes"
	expect_eq "$(q "$DB" "select count(*) from dns_queries d join processes p on p.id = d.process_id
		where p.cmdline like '% ' || d.qname and d.rcode = 'NOERROR'")" 200 "each with the dig that asked"
	expect_eq "$(grep -c 'n[0-9]*.many.example.test is 127.0.0.12' "$T/dnsmasq.log")" 200 "all reached dnsmasq"
}

test_dns_fail_open_on_sigkill() {
	# The agent dies mid-loop: the redirect dies with it and the next queries go direct.
	local cg="$CG2/nettrail-test-dns-$$"
	start_dnsmasq
	mkdir -p "$cg"
	start_agent --watch "$cg:loop"
	sh -c "echo \$\$ > $cg/cgroup.procs; for i in \$(seq 60); do
		dig +short +time=1 +tries=1 @$RESOLVER ci.example.test; sleep 0.05; done" >"$T/loop.out" &
	local loop=$!
	wait_for "$T/loop.out" 127.0.0.10 || fail "no answer through the agent"
	sleep 0.3
	kill -KILL "$AGENT"
	wait "$AGENT" 2>/dev/null
	local before
	before=$(grep -c 127.0.0.10 "$T/loop.out")
	wait "$loop"
	rmdir "$cg" 2>/dev/null
	expect_eq "$(grep -vc 127.0.0.10 "$T/loop.out")" 0 "every query answered, before and after"
	expect_ge "$(($(grep -c 127.0.0.10 "$T/loop.out") - before))" 10 "answers after the kill"
	expect_ge "$(q "$DB" "select count(*) from dns_queries")" 1 "queries through the agent recorded"
}

test_dns_malformed_queries_counted_proxy_serves() {
	start_dnsmasq
	nrun --dns-port 15353 -- sh -c "$PY $NETUTIL dns-garbage 127.0.0.1 15353 60;
		dig +short +time=2 +tries=1 @$RESOLVER ci.example.test" >"$T/out"
	expect_eq "$(cat "$T/out")" 127.0.0.10 "still answering"
	expect_eq "$(q "$DB" "select max(value) from stats where name = 'dns_malformed'")" 60 "malformed counted"
	expect_eq "$(q "$DB" "select count(*) from dns_queries")" 1 "only the real query recorded"
}

test_dns_port_in_use_refused() {
	bg "$PY" "$NETUTIL" udp-sink 127.0.0.1 15354 >"$T/sink"
	wait_for "$T/sink" ready || fail "sink did not start"
	"$NETTRAIL" run --db "$DB" --dns-port 15354 -- true 2>"$T/err"
	expect_eq "$?" 1 "exit status"
	expect_match "$(cat "$T/err")" "port is in use" "message"
	"$NETTRAIL" run --db "$DB" --upstream example.test -- true 2>"$T/err"
	expect_eq "$?" 2 "bad --upstream"
}

test_dns_truncated_answer_retried_over_tcp() {
	# A 1000-byte TXT answer does not fit a 512-byte UDP reply: TC passes through, dig retries
	# over TCP, and both attempts are recorded.
	start_dnsmasq --txt-record=big.example.test,"$(printf 'x%.0s' $(seq 250))","$(printf 'y%.0s' $(seq 250))","$(printf 'z%.0s' $(seq 250))","$(printf 'w%.0s' $(seq 250))"
	nrun -- dig +noedns +time=2 +tries=1 @$RESOLVER big.example.test TXT >"$T/dig.out"
	expect_match "$(cat "$T/dig.out")" "Truncated, retrying in TCP mode" "dig saw TC"
	expect_match "$(cat "$T/dig.out")" "status: NOERROR" "answered over TCP"
	expect_eq "$(q "$DB" "select transport, qtype, rcode from dns_queries order by id" | tr '|' ' ')" \
		"udp TXT NOERROR
tcp TXT NOERROR" "both attempts"
}

test_dns_resolver_unix_socket_refused() {
	# nscd's socket, served in a private mount namespace: a watched process is refused (and
	# glibc would fall back to port 53), recorded; an unwatched one gets through.
	T="$T" PY="$PY" NETUTIL="$NETUTIL" NETTRAIL="$NETTRAIL" DB="$DB" unshare -m -- sh -c '
		mkdir -p /run/nscd && mount -t tmpfs none /run/nscd || exit 1
		"$PY" "$NETUTIL" unix-serve /run/nscd/socket >"$T/serve" & srv=$!
		for i in $(seq 100); do grep -q ready "$T/serve" 2>/dev/null && break; sleep 0.05; done
		"$NETTRAIL" run --db "$DB" -- "$PY" "$NETUTIL" unix-connect /run/nscd/socket >"$T/watched" 2>/dev/null
		"$NETTRAIL" run --db "$DB" --allow-resolver-sockets -- "$PY" "$NETUTIL" unix-connect /run/nscd/socket >"$T/allowed" 2>/dev/null
		"$PY" "$NETUTIL" unix-connect /run/nscd/socket >"$T/outside"
		kill $srv' sh
	expect_eq "$(cat "$T/watched")" EPERM "watched connect refused"
	expect_eq "$(cat "$T/allowed")" ok "--allow-resolver-sockets"
	expect_eq "$(cat "$T/outside")" ok "outside untouched"
	expect_eq "$(q "$DB" "select run_id, family, addr, port, verdict from connections order by id" | tr '|' ' ')" \
		"1 unix /run/nscd/socket 0 blocked
2 unix /run/nscd/socket 0 allowed" "recorded"
}

test_dns_tcp_client_gone_quiet_and_answered() {
	# A TCP client sends a query and closes its side while the upstream never answers: the
	# proxy must wait for the answer without spinning, then answer SERVFAIL at its deadline.
	bg "$PY" "$NETUTIL" tcp-hang 127.0.0.96 53 >"$T/hang"
	wait_for "$T/hang" ready || fail "hanging resolver did not start"
	"$NETTRAIL" run --db "$DB" --dns-timeout 3s -- "$PY" "$NETUTIL" dns-tcp-halfclose 127.0.0.96 ci.example.test \
		>"$T/out" 2>"$T/report" &
	local run=$! cpu0 cpu
	# CPU time of nettrail itself (utime + stime, in clock ticks) over 1 s while the query
	# waits: from when the proxy has connected upstream (loading the programs is not counted).
	wait_for "$T/hang" accepted 200 || fail "the proxy did not connect upstream"
	sleep 0.1
	cpu0=$(awk '{ print $14 + $15 }' "/proc/$run/stat")
	sleep 1
	cpu=$(($(awk '{ print $14 + $15 }' "/proc/$run/stat") - cpu0))
	wait "$run"
	expect_eq "$(cat "$T/out")" "rcode 2" "SERVFAIL at the deadline"
	[ "$cpu" -le 20 ] || fail "nettrail used $cpu ticks of CPU in 1 s while waiting"
	expect_eq "$(q "$DB" "select transport, rcode, error from dns_queries" | tr '|' ' ')" \
		"tcp SERVFAIL upstream timeout" "recorded"
}

test_dns_musl_asks_every_nameserver_at_once() {
	# musl sends one query, one id, from one socket, to every nameserver at once: each copy
	# goes to its own resolver and is recorded as such. 127.0.0.3 has no resolver.
	command -v musl-gcc >/dev/null || { fail "musl-gcc missing (make deps installs musl-tools)"; return; }
	musl-gcc -static -O1 -o "$T/musl_resolve" "$here/musl_resolve.c" || { fail "build"; return; }
	start_dnsmasq
	NAMESERVERS="127.0.0.2 127.0.0.3" in_private_resolv "$NETTRAIL" run --db "$DB" -- \
		"$T/musl_resolve" ci.example.test >"$T/out" 2>"$T/report"
	expect_eq "$(cat "$T/out")" 127.0.0.10 "musl resolved"
	expect_eq "$(q "$DB" "select distinct resolver, upstream, rcode from dns_queries where qtype = 'A'
		order by resolver" | tr '|' ' ')" \
		"127.0.0.2:53 127.0.0.2:53 NOERROR
127.0.0.3:53 127.0.0.3:53 SERVFAIL" "each copy to the resolver it was sent to"
	expect_eq "$(q "$DB" "select count(*) from dns_queries d join processes p on p.id = d.process_id
		where p.exe like '%/musl_resolve'")" "$(q "$DB" "select count(*) from dns_queries")" \
		"all attributed to the musl program"
}

test_dns_sender_gone_before_the_answer() {
	# The process is gone before the proxy even reads its query: the row still names it.
	# What is asserted is attribution, not latency: a loaded machine gets a generous upstream
	# deadline (the default 2 s answered SERVFAIL once under load).
	start_dnsmasq
	nrun --dns-timeout 10s -- "$PY" "$NETUTIL" dns-send-exit "$RESOLVER" ci.example.test
	expect_eq "$(q "$DB" "select coalesce(d.error, '-') from dns_queries d")" "-" "answered by the upstream"
	expect_eq "$(q "$DB" "select d.qname, d.rcode, p.pid > 0, p.cmdline like '%netutil.py dns-send-exit $RESOLVER ci.example.test'
		from dns_queries d join processes p on p.id = d.process_id" | tr '|' ' ')" \
		"ci.example.test NOERROR 1 1" "attributed with its command line"
}

test_dns_answer_after_the_run_ended_is_recorded() {
	# The script asks and exits at once; the upstream answers 150 ms later, after the run's
	# command is gone: the run waits for that answer (a second at most), so the record has
	# the upstream's rcode, not the SERVFAIL of a proxy that stopped.
	bg "$PY" "$NETUTIL" dns-slow 127.0.0.96 53 150 >"$T/slow"
	wait_for "$T/slow" ready || fail "slow resolver did not start"
	nrun --dns-timeout 10s -- "$PY" "$NETUTIL" dns-send-exit 127.0.0.96 ci.example.test
	expect_eq "$RC" 0 "run"
	expect_eq "$(q "$DB" "select rcode, coalesce(error, '-'), latency_ns >= 150000000 from dns_queries" | tr '|' ' ')" \
		"NOERROR - 1" "answered after the run's command ended"
	# A resolver that never answers holds the run's end up for a second, not for the timeout.
	bg "$PY" "$NETUTIL" udp-sink 127.0.0.95 53 >"$T/sink"
	wait_for "$T/sink" ready || fail "sink did not start"
	local t0=$SECONDS
	nrun --dns-timeout 30s -- "$PY" "$NETUTIL" dns-send-exit 127.0.0.95 ci.example.test
	[ $((SECONDS - t0)) -le 10 ] || fail "the run's end waited $((SECONDS - t0)) s for the upstream"
	expect_eq "$(q "$DB" "select rcode, error from dns_queries order by id desc limit 1" | tr '|' ' ')" \
		"SERVFAIL agent stopping" "recorded as given up"
}

test_dns_domain_remembered_across_runs_of_a_scope() {
	# A run resolves a name; the next run of the scope connects to the address it cached:
	# the scope resolved it a moment ago, so the connection has the name. Another scope not.
	start_dnsmasq
	serve_tcp 18302
	nrun --scope app -- dig +short +time=2 +tries=1 @$RESOLVER api.example.test
	nrun --scope app -- "$PY" "$NETUTIL" connect 127.0.0.1 18302
	nrun --scope other -- "$PY" "$NETUTIL" connect 127.0.0.1 18302
	expect_eq "$(q "$DB" "select scope, port, coalesce(domain, '-') from connections where port = 18302
		order by id" | tr '|' ' ')" "app 18302 api.example.test
other 18302 -" "domain from the scope's earlier run only"
	"$NETTRAIL" events --db "$DB" --scope app >"$T/events"
	expect_match "$(cat "$T/events")" "127.0.0.1 +18302 api.example.test" "events show the domain"
}

test_dns_queue_loss_is_counted() {
	# A writer queue of 4 items cannot take a burst of answered queries: the records that do
	# not fit are counted lost, and stored + lost is every query the proxy answered.
	local n=2000 rows lost
	start_dnsmasq
	nrun --queue-size 4 -- "$PY" "$NETUTIL" dns-burst "$RESOLVER" "$n" >"$T/out"
	rows=$(q "$DB" "select count(*) from dns_queries")
	lost=$(q "$DB" "select events from events_lost where source = 'run:1' and reason = 'events_lost_dns_queue'")
	expect_eq "$(cat "$T/out")" "$n" "every query answered"
	expect_ge "$lost" 1 "loss was forced"
	expect_eq "$((rows + ${lost:-0}))" "$n" "stored ($rows) + lost ($lost) = queries"
	expect_match "$(cat "$T/report")" "events lost: [1-9]" "the report shows the loss"
}
