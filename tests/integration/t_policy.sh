# Policy: rules per domain, monitor (would_block, nothing blocked), enforce (NXDOMAIN and
# EPERM) and allow, per scope, switched live. DNS from dnsmasq on loopback (t_dns.sh).

pol() { "$NETTRAIL" policy --db "$DB" "$@" >>"$T/policy.out" 2>&1 || fail "policy $*: $(tail -1 "$T/policy.out")"; }

# The value of an unlabelled series in the scrape in $T/metrics.
metric() { awk -v n="$1" '$1 == n { print $2 }' "$T/metrics"; }

# "qname verdict rule rcode" per query of a scope, in order.
dns_verdicts() {
	q "$DB" "select qname, verdict, coalesce(rule, '-'), coalesce(rcode, '-') from dns_queries
		where scope = '$1' order by id" | tr '|' ' '
}

test_policy_monitor_records_would_block_and_blocks_nothing() {
	start_dnsmasq
	serve_tcp 18501
	pol add example.test --note "checking what needs it"
	nrun --scope deploy -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER ci.example.test;
		$PY $NETUTIL connect 127.0.0.10 18501" >"$T/out"
	expect_eq "$RC" 0 "the script ran green"
	expect_eq "$(head -1 "$T/out")" "127.0.0.10" "the answer came through"
	expect_eq "$(dns_verdicts deploy)" "ci.example.test would_block example.test NOERROR" "query"
	expect_eq "$(q "$DB" "select d.rule_id = r.id from dns_queries d, rules r where r.pattern = 'example.test'")" \
		1 "the query names its rule by id"
	expect_eq "$(q "$DB" "select verdict, rule, domain from connections where port = 18501" | tr '|' ' ')" \
		"would_block example.test ci.example.test" "the connection to its address"
	# A name no rule matches stays allowed, without a rule.
	nrun --scope deploy -- dig +short +time=2 +tries=1 @$RESOLVER other.test >/dev/null
	expect_eq "$(q "$DB" "select verdict, rule is null from dns_queries where qname = 'other.test'" | tr '|' ' ')" \
		"allowed 1" "unmatched name"
}

test_policy_enforce_refuses_lookups_over_udp_tcp_and_ipv6() {
	start_dnsmasq
	pol add example.test --scope deploy --mode enforce
	nrun --scope deploy -- sh -c "dig +time=2 +tries=1 @$RESOLVER api.example.test;
		dig +tcp +time=2 +tries=1 @$RESOLVER ci.example.test;
		dig -6 +time=2 +tries=1 @::1 ci.example.test AAAA;
		$PY $NETUTIL resolve www.example.test 4 || echo resolve-failed" >"$T/dig.out"
	expect_eq "$(grep -c 'status: NXDOMAIN' "$T/dig.out")" 3 "NXDOMAIN to dig, UDP, TCP and IPv6"
	grep -q "unexpected source" "$T/dig.out" && fail "dig saw the proxy"
	expect_eq "$(q "$DB" "select qname, qtype, transport, verdict, rule, rcode, error from dns_queries
		where scope = 'deploy' and qtype in ('A', 'AAAA') and process_id in
		(select id from processes where comm like 'isc%' or exe like '%dig')
		order by id" | tr '|' ' ')" \
		"api.example.test A udp blocked example.test NXDOMAIN blocked by rule
ci.example.test A tcp blocked example.test NXDOMAIN blocked by rule
ci.example.test AAAA udp blocked example.test NXDOMAIN blocked by rule" "recorded as blocked"
	# The clients got no address: the upstream's answer (asked for the name's addresses, to
	# refuse them too) went no further than the proxy.
	grep -q "127.0.0.10" "$T/dig.out" && fail "a blocked lookup got an address: $(cat "$T/dig.out")"
	# getaddrinfo (python, glibc through the resolv.conf of the test) fails fast.
	in_private_resolv "$NETTRAIL" run --db "$DB" --scope deploy -- \
		"$PY" "$NETUTIL" resolve www.example.test 4 >"$T/gai.out" 2>"$T/gai.err"
	expect_eq "$?" 1 "the resolving program failed"
	expect_eq "$(cat "$T/gai.out")" "error -2" "getaddrinfo: EAI_NONAME, the name does not exist"
	expect_eq "$(q "$DB" "select count(*) from dns_queries where qname = 'www.example.test'
		and verdict = 'blocked'")" "$(q "$DB" "select count(*) from dns_queries where qname = 'www.example.test'")" \
		"every lookup of it blocked"
}

test_policy_scope_isolation_and_exact_rules() {
	start_dnsmasq
	pol add =ci.example.test --scope deploy --mode enforce
	pol add =many.example.test --scope deploy --mode enforce
	# While deploy's run holds its hooks: a process outside any watched cgroup is neither
	# redirected nor recorded, and resolves the name.
	bg "$NETTRAIL" run --db "$DB" --scope deploy -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER ci.example.test;
		dig +short +time=2 +tries=1 @$RESOLVER api.example.test;
		dig +short +time=2 +tries=1 @$RESOLVER many.example.test;
		dig +short +time=2 +tries=1 @$RESOLVER www.many.example.test; echo held >$T/held;
		while [ ! -e $T/go ]; do sleep 0.05; done" >"$T/deploy.out" 2>/dev/null
	local held=$BG_PID
	wait_for "$T/held" held || fail "the deploy run did not get to its lookups' end"
	dig +short +time=2 +tries=1 @$RESOLVER ci.example.test >"$T/outside.out"
	touch "$T/go"
	wait "$held"
	nrun --scope other -- dig +short +time=2 +tries=1 @$RESOLVER ci.example.test >"$T/other.out"
	expect_eq "$(cat "$T/deploy.out")" "127.0.0.1
127.0.0.12" "deploy: ci and many blocked; api and www.many (not below an exact rule) answered"
	expect_eq "$(cat "$T/other.out")" "127.0.0.10" "another scope resolves it"
	expect_eq "$(cat "$T/outside.out")" "127.0.0.10" "a process outside resolves it"
	expect_eq "$(q "$DB" "select count(*) from dns_queries where scope = 'deploy'")" 4 "the outside lookup is not recorded"
	expect_eq "$(dns_verdicts deploy)" "ci.example.test blocked =ci.example.test NXDOMAIN
api.example.test allowed - NOERROR
many.example.test blocked =many.example.test NXDOMAIN
www.many.example.test allowed - NOERROR" "deploy's queries"
	expect_eq "$(dns_verdicts other)" "ci.example.test allowed - NOERROR" "other's query"
}

test_policy_scope_default_and_allow_rules() {
	start_dnsmasq
	pol default --scope locked enforce
	pol add api.example.test --scope locked --mode allow
	nrun --scope locked -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER api.example.test;
		dig +short +time=2 +tries=1 @$RESOLVER ci.example.test" >"$T/out"
	expect_eq "$(cat "$T/out")" "127.0.0.1" "only the allowed name resolves"
	expect_eq "$(dns_verdicts locked)" "api.example.test allowed api.example.test NOERROR
ci.example.test blocked default NXDOMAIN" "verdicts under a lock-down"
	# A dry run of the lock-down: monitor as the default records, blocks nothing.
	pol default --scope locked monitor
	nrun --scope locked -- dig +short +time=2 +tries=1 @$RESOLVER ci.example.test >"$T/out2"
	expect_eq "$(cat "$T/out2")" "127.0.0.10" "monitor default blocks nothing"
	expect_eq "$(dns_verdicts locked | tail -1)" "ci.example.test would_block default NOERROR" "dry run"
}

# Queries of scope $1 made more than 1 s after rule change $2 whose verdict is not $3.
late_wrong() {
	q "$DB" "select count(*) from dns_queries d, rule_changes c where c.id = $2 and d.scope = '$1'
		and d.time_ns > c.time_ns + 1000000000 and d.verdict <> '$3'
		and d.time_ns < coalesce((select min(time_ns) from rule_changes where id > $2), 1e19)"
}

test_policy_live_switch_under_a_running_agent() {
	local n
	start_dnsmasq
	start_agent
	pol add ci.example.test --scope loop
	bg "$NETTRAIL" run --scope loop -- sh -c "while [ ! -e $T/stop ]; do
		dig +time=2 +tries=1 @$RESOLVER ci.example.test | grep -o 'status: [A-Z]*'; sleep 0.02; done" \
		>"$T/loop.out" 2>"$T/loop.err"
	local run=$BG_PID
	wait_for "$T/loop.out" "NOERROR" || fail "the loop did not start"
	sleep 1.5
	pol set ci.example.test --scope loop --mode enforce
	wait_for "$T/loop.out" "NXDOMAIN" 60 || fail "enforce did not take effect"
	sleep 1.5
	pol set ci.example.test --scope loop --mode monitor
	sleep 1.5
	touch "$T/stop"
	wait "$run"
	expect_eq "$?" 0 "the looping script ended green"
	# No restart: the agent that started is the one that stops.
	kill -0 "$AGENT" || fail "the agent is gone"
	curl -sf http://127.0.0.1:9874/metrics >"$T/metrics" || fail "scrape"
	stop_agent
	expect_eq "$AGENT_RC" 0 "clean stop"
	expect_match "$(cat "$T/agent.log")" "rules version 3: 1 rule in force" "the agent saw the changes"
	n=$(wc -l <"$T/loop.out")
	expect_ge "$n" 20 "lookups made"
	# No event lost: every lookup is recorded, and every one has the verdict of its time.
	expect_eq "$(q "$DB" "select count(*) from dns_queries where scope = 'loop'")" "$n" "every lookup recorded"
	expect_eq "$(q "$DB" "select coalesce(sum(events), 0) from events_lost")" 0 "nothing lost"
	local add set1 set2
	add=$(q "$DB" "select id from rule_changes where action = 'add'")
	set1=$(q "$DB" "select min(id) from rule_changes where action = 'set'")
	set2=$(q "$DB" "select max(id) from rule_changes where action = 'set'")
	expect_eq "$(late_wrong loop "$add" would_block)" 0 "would_block from 1 s after the rule was added"
	expect_eq "$(late_wrong loop "$set1" blocked)" 0 "blocked from 1 s after the switch to enforce"
	expect_eq "$(late_wrong loop "$set2" would_block)" 0 "would_block again from 1 s after the switch back"
	expect_ge "$(q "$DB" "select count(*) from dns_queries where scope = 'loop' and verdict = 'blocked'")" 5 "blocked lookups"
	# The client saw exactly what was recorded.
	expect_eq "$(metric nettrail_dns_blocked_total)" \
		"$(q "$DB" "select count(*) from dns_queries where verdict = 'blocked'")" "blocked lookups counted"
	expect_eq "$(grep -c NXDOMAIN "$T/loop.out")" \
		"$(q "$DB" "select count(*) from dns_queries where scope = 'loop' and rcode = 'NXDOMAIN'")" "NXDOMAIN seen = recorded"
	# Per rule and verdict, /metrics counts what the record holds.
	local v
	for v in blocked would_block; do
		expect_eq "$(metric "nettrail_rule_matches_total{scope=\"loop\",rule=\"ci.example.test\",kind=\"dns\",verdict=\"$v\"}")" \
			"$(q "$DB" "select count(*) from dns_queries where scope = 'loop' and verdict = '$v' and rule = 'ci.example.test'")" \
			"rule matches, $v"
	done
	expect_eq "$(grep -c '^nettrail_rule_matches_total{' "$T/metrics")" 2 "series: blocked and would_block of the one rule"
	# The history for the timeline.
	expect_eq "$(q "$DB" "select action, scope, pattern, coalesce(old_mode, '-'), new_mode from rule_changes order by id" | tr '|' ' ')" \
		"add loop ci.example.test - monitor
set loop ci.example.test monitor enforce
set loop ci.example.test enforce monitor" "rule_changes"
	expect_eq "$(q "$DB" "select count(*) from rule_changes where id <= $add")" 1 "ids from the event sequence"
}

test_policy_changes_under_load_get_their_turn() {
	# The agent's writer must not hold the database while it waits for events: a change of
	# the rules (or a starting run) gets its turn under a steady stream of lookups.
	local i failed=0
	start_dnsmasq
	start_agent
	pol add ci.example.test --scope busy
	bg "$NETTRAIL" run --scope busy -- sh -c "while [ ! -e $T/stop ]; do
		dig +short +time=2 +tries=1 @$RESOLVER api.example.test >/dev/null; done" 2>/dev/null
	local run=$BG_PID
	wait_for_file "$T/agent.log"
	sleep 0.5
	for i in $(seq 30); do # each a change: enforce, monitor, enforce, ...
		"$NETTRAIL" policy set ci.example.test --scope busy --mode "$([ $((i % 2)) = 1 ] && echo enforce || echo monitor)" \
			--db "$DB" >/dev/null 2>>"$T/err" || failed=$((failed + 1))
	done
	touch "$T/stop"
	wait "$run"
	stop_agent
	expect_eq "$failed" 0 "changes refused under load ($(sort -u "$T/err" 2>/dev/null))"
	expect_eq "$(q "$DB" "select count(*) from rule_changes where action = 'set'")" 30 "every change recorded"
	expect_ge "$(q "$DB" "select count(*) from dns_queries d where scope = 'busy' and time_ns between (select min(time_ns) from rule_changes where action = 'set') and (select max(time_ns) from rule_changes)")" 5 "lookups while the rules changed"
}

# One attempt of each kind to host:port from a run of scope $1: "tcp ok", "udp EPERM", ...
attempts() {
	local scope=$1 host=$2 port=$3
	nrun ${ATTEMPT_OPTS:-} --scope "$scope" -- sh -c "for k in tcp udp sendto; do $PY $NETUTIL attempt \$k $host $port; done"
}

test_policy_enforce_refuses_connects_to_resolved_addresses() {
	# The script resolved the name while it was monitored; then it is enforced: a connect to
	# the address it has (cached, or written into the script) is refused, IPv4 and IPv6.
	start_dnsmasq
	serve_tcp 18503
	pol add ci.example.test
	nrun --scope deploy -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER ci.example.test A;
		dig +short +time=2 +tries=1 @$RESOLVER ci.example.test AAAA" >"$T/resolved"
	expect_eq "$(tr '\n' ' ' <"$T/resolved")" "127.0.0.10 ::1 " "resolved while monitored"
	expect_eq "$(attempts deploy 127.0.0.10 18503 | tr '\n' ' ')" "tcp ok udp ok sendto ok " "monitor: reachable"
	pol set ci.example.test --mode enforce
	# A loopback address stays reachable unless asked: a sinkhole's 127.0.0.1 for an enforced
	# name must not cut the scope off from its host. These tests' addresses are all loopback.
	expect_eq "$(attempts deploy 127.0.0.10 18503 | tr '\n' ' ')" "tcp ok udp ok sendto ok " "loopback kept by default"
	local ATTEMPT_OPTS=--enforce-loopback
	expect_eq "$(attempts deploy 127.0.0.10 18503 | tr '\n' ' ')" "tcp EPERM udp EPERM sendto EPERM " "IPv4 refused"
	expect_eq "$(attempts deploy ::1 18503 | tr '\n' ' ')" "tcp EPERM udp EPERM sendto EPERM " "IPv6 refused"
	expect_eq "$(attempts deploy ::ffff:127.0.0.10 18503 | tr '\n' ' ')" "tcp EPERM udp EPERM sendto EPERM " "v4-mapped refused"
	# Another address (api.example.test's) is not touched.
	expect_eq "$(attempts deploy 127.0.0.1 18503 | tr '\n' ' ')" "tcp ok udp ok sendto ok " "other address"
	expect_eq "$(q "$DB" "select proto, addr, kind, verdict, rule, domain from connections
		where port = 18503 and verdict = 'blocked' order by id" | tr '|' ' ')" \
		"tcp 127.0.0.10 connect blocked ci.example.test ci.example.test
udp 127.0.0.10 connect blocked ci.example.test ci.example.test
udp 127.0.0.10 sendto blocked ci.example.test ci.example.test
tcp ::1 connect blocked ci.example.test ci.example.test
udp ::1 connect blocked ci.example.test ci.example.test
udp ::1 sendto blocked ci.example.test ci.example.test
tcp 127.0.0.10 connect blocked ci.example.test ci.example.test
udp 127.0.0.10 connect blocked ci.example.test ci.example.test
udp 127.0.0.10 sendto blocked ci.example.test ci.example.test" "recorded blocked, with the rule"
	expect_eq "$(q "$DB" "select count(distinct c.rule_id) from connections c join rules r on r.id = c.rule_id
		where c.verdict = 'blocked'")" 1 "rule id"
	# Monitor again: the addresses are reachable at once.
	pol set ci.example.test --mode monitor
	expect_eq "$(attempts deploy 127.0.0.10 18503 | tr '\n' ' ')" "tcp ok udp ok sendto ok " "back to monitor"
	pol set ci.example.test --mode enforce
	pol rm ci.example.test
	expect_eq "$(attempts deploy ::1 18503 | tr '\n' ' ')" "tcp ok udp ok sendto ok " "rule removed"
}

test_policy_enforce_addresses_per_scope_under_an_agent() {
	start_dnsmasq
	serve_tcp 18504
	start_agent --enforce-loopback
	pol add ci.example.test --scope deploy
	nrun --scope deploy -- dig +short +time=2 +tries=1 @$RESOLVER ci.example.test >/dev/null
	# A socket connected while the name is monitored, still sending after it is enforced.
	bg "$PY" "$NETUTIL" udp-log 127.0.0.10 18505 "$T/udp.log" >"$T/udp.ready"
	wait_for "$T/udp.ready" ready || fail "udp server"
	bg "$NETTRAIL" run --scope deploy -- "$PY" "$NETUTIL" udp-hold 127.0.0.10 18505 "$T/go" >"$T/hold.out" 2>/dev/null
	local hold=$BG_PID
	wait_for "$T/udp.log" before || fail "the held socket's first datagram"
	pol set ci.example.test --scope deploy --mode enforce
	sleep 1 # the agent applies a change within a second
	expect_eq "$(attempts deploy 127.0.0.10 18504 | tr '\n' ' ')" "tcp EPERM udp EPERM sendto EPERM " "deploy refused"
	expect_eq "$(attempts other 127.0.0.10 18504 | tr '\n' ' ')" "tcp ok udp ok sendto ok " "another scope is not"
	expect_eq "$("$PY" "$NETUTIL" attempt tcp 127.0.0.10 18504)" "tcp ok" "nor a process outside"
	echo go >"$T/go"
	wait "$hold"
	# The kernel tells the sender: its send() fails with EPERM (the packet is dropped).
	expect_eq "$(cat "$T/hold.out")" "sent=0" "the held socket's sends refused"
	sleep 0.3
	expect_eq "$(grep -c after "$T/udp.log")" 0 "its packets were dropped"
	# What /metrics says: the rule, the change applied, the table, the drops.
	curl -sf http://127.0.0.1:9874/metrics >"$T/metrics" || fail "scrape"
	expect_eq "$(metric nettrail_rules)" 1 "rules in force"
	expect_eq "$(metric nettrail_rules_version)" 2 "rules version: add, set"
	expect_eq "$(metric nettrail_block_entries)" 1 "ci.example.test's address (A only was asked), for deploy"
	expect_ge "$(metric nettrail_packets_blocked_total)" 5 "packets dropped"
	expect_eq "$(metric nettrail_block_answers_dropped_total)" 0 "no answer left out"
	expect_eq "$(metric nettrail_block_update_errors_total)" 0 "no map update failed"
	# Back to monitor, enforced again, removed: each applied within a second, by the agent that
	# runs (the addresses leave the kernel's table and come back, no restart).
	pol set ci.example.test --scope deploy --mode monitor
	sleep 1
	curl -sf http://127.0.0.1:9874/metrics >"$T/metrics" || fail "scrape"
	expect_eq "$(metric nettrail_block_entries)" 0 "monitor: the kernel's table is empty"
	expect_eq "$(attempts deploy 127.0.0.10 18504 | tr '\n' ' ')" "tcp ok udp ok sendto ok " "monitor: reachable again"
	pol set ci.example.test --scope deploy --mode enforce
	sleep 1
	expect_eq "$(attempts deploy 127.0.0.10 18504 | tr '\n' ' ')" "tcp EPERM udp EPERM sendto EPERM " "enforced again"
	pol rm ci.example.test --scope deploy
	sleep 1
	curl -sf http://127.0.0.1:9874/metrics >"$T/metrics" || fail "scrape"
	expect_eq "$(metric nettrail_block_entries)" 0 "removed: the kernel's table is empty"
	expect_eq "$(attempts deploy 127.0.0.10 18504 | tr '\n' ' ')" "tcp ok udp ok sendto ok " "removed: reachable"
	kill -0 "$AGENT" || fail "the agent is gone"
	stop_agent
	expect_ge "$(q "$DB" "select max(value) from stats where name = 'packets_blocked'")" 5 "and counted"
	# The scope's directory the agent held is gone with it, as are the runs.
	[ -e "$CG2/nettrail" ] && fail "cgroups left behind: $(find "$CG2/nettrail" -maxdepth 2 -type d)"
	true
}

test_policy_curl_and_python_fail_fast_on_an_enforced_name() {
	local t0 t1
	start_dnsmasq
	serve_tcp 18507
	pol add example.test --scope deploy
	in_private_resolv "$NETTRAIL" run --no-report --db "$DB" --scope deploy -- \
		curl -sS --max-time 5 -o /dev/null http://ci.example.test:18507/ 2>"$T/curl1.err"
	local rc=$?
	[ "$rc" = 6 ] && fail "monitor: curl could not resolve ($(cat "$T/curl1.err"))"
	expect_eq "$(q "$DB" "select distinct verdict, rcode from dns_queries where qname = 'ci.example.test'" | tr '|' ' ')" \
		"would_block NOERROR" "monitor: curl's lookups answered, recorded would_block"
	pol set example.test --scope deploy --mode enforce
	t0=$(date +%s%N)
	in_private_resolv "$NETTRAIL" run --no-report --db "$DB" --scope deploy -- \
		curl -sS --max-time 5 -o /dev/null http://ci.example.test:18507/ 2>"$T/curl2.err"
	expect_eq "$?" 6 "enforce: curl exits 6, could not resolve host"
	t1=$(date +%s%N)
	expect_match "$(cat "$T/curl2.err")" "Could not resolve host" "curl's message"
	# Fast: an answer at once, not a timeout (the resolver's is 2 s).
	[ $(((t1 - t0) / 1000000)) -lt 1900 ] || fail "curl took $(((t1 - t0) / 1000000)) ms to fail"
	expect_eq "$(q "$DB" "select distinct verdict, rule from dns_queries where qname = 'ci.example.test'
		and time_ns > $t0" | tr '|' ' ')" "blocked example.test" "curl's lookups recorded blocked"
}

test_policy_block_answer_refused_and_bad_options() {
	start_dnsmasq
	pol add example.test --mode enforce
	nrun --block-answer refused --scope deploy -- dig +time=2 +tries=1 @$RESOLVER ci.example.test >"$T/dig.out"
	expect_match "$(cat "$T/dig.out")" "status: REFUSED" "--block-answer refused"
	expect_eq "$(q "$DB" "select rcode, verdict from dns_queries where qname = 'ci.example.test'" | tr '|' ' ')" \
		"REFUSED blocked" "recorded"
	"$NETTRAIL" run --block-answer servfail --db "$DB" -- true 2>"$T/err"
	expect_eq "$?" 2 "bad --block-answer"
	"$NETTRAIL" agent --shared-address maybe --db "$DB" 2>"$T/err"
	expect_eq "$?" 2 "bad --shared-address"
	expect_match "$(cat "$T/err")" "--shared-address must be allow or block" "its message"
	# A bad pattern or mode: a clear error, exit 2, nothing written.
	local before
	before=$(q "$DB" "select count(*) from rule_changes")
	for bad in "bad-.example" "a..b" "exa mple.test" "$(printf 'x%.0s' $(seq 64)).test" "=" "" \
		127.0.0.20 "*.example.test"; do
		"$NETTRAIL" policy add "$bad" --db "$DB" 2>"$T/err"
		expect_eq "$?" 2 "pattern '$bad' refused"
		expect_match "$(cat "$T/err")" "bad pattern" "a reason for '$bad'"
	done
	"$NETTRAIL" policy add --db "$DB" -- -bad.example 2>"$T/err"
	expect_eq "$?" 2 "a label starting with '-'"
	"$NETTRAIL" policy add ok.test --mode block --db "$DB" 2>"$T/err"
	expect_eq "$?" 2 "bad mode"
	"$NETTRAIL" policy set missing.test --mode enforce --db "$DB" 2>"$T/err"
	expect_eq "$?" 1 "set of a rule that does not exist"
	"$NETTRAIL" policy add EXAMPLE.test. --mode enforce --db "$DB" 2>"$T/err"
	expect_eq "$?" 1 "the same rule, normalised, exists already"
	expect_eq "$(q "$DB" "select count(*) from rule_changes")" "$before" "nothing written"
	"$NETTRAIL" policy add XN--BCHER-KVA.Example. --scope deploy --db "$DB" >/dev/null || fail "IDN in xn-- form"
	expect_eq "$(q "$DB" "select pattern, scope from rules where name like 'xn--%'" | tr '|' ' ')" \
		"xn--bcher-kva.example deploy" "lowercased, trailing dot dropped"
	# ls and history of a scope: its own and the rules for every scope, not another scope's.
	"$NETTRAIL" policy ls --scope deploy --format csv --db "$DB" >"$T/ls.csv" || fail "ls"
	expect_eq "$(cut -d, -f1-3 "$T/ls.csv")" "scope,pattern,mode
*,example.test,enforce
deploy,xn--bcher-kva.example,monitor" "ls --scope deploy"
	# Setting the mode a rule has writes nothing; a scope never seen is warned of.
	"$NETTRAIL" policy set example.test --mode enforce --db "$DB" >"$T/same.out" 2>&1 || fail "same mode"
	expect_match "$(cat "$T/same.out")" "is enforce already; nothing changed" "no-op set"
	"$NETTRAIL" policy add other.test --scope deploi --db "$DB" >/dev/null 2>"$T/typo.err" || fail "typo scope"
	expect_match "$(cat "$T/typo.err")" "nothing was recorded for scope 'deploi' yet" "a typo is warned of"
	"$NETTRAIL" policy rm other.test --db "$DB" >/dev/null 2>"$T/rm.err"
	expect_eq "$?" 1 "rm in the wrong scope"
	expect_match "$(cat "$T/rm.err")" "it has a rule in: --scope deploi" "where it has one"
	"$NETTRAIL" policy rm other.test --scope deploi --db "$DB" >/dev/null || fail "rm"
	# A --db that does not exist is not read as empty.
	"$NETTRAIL" policy ls --db "$T/nope/nettrail.db" 2>"$T/nope.err"
	expect_eq "$?" 1 "ls of no database"
	expect_match "$(cat "$T/nope.err")" "no database at" "said"
	[ -e "$T/nope" ] && fail "ls created $T/nope"
	"$NETTRAIL" policy history --scope other --format csv --db "$DB" >"$T/hist.csv" || fail "history"
	expect_eq "$(cut -d, -f2-4 "$T/hist.csv")" "scope,action,pattern
*,add,example.test" "history --scope other: the change for every scope only"
	expect_eq "$(q "$DB" "select count(*) from rule_changes where new_mode = old_mode")" 0 "no no-op in the history"
}

test_policy_report_shows_what_would_break() {
	start_dnsmasq
	serve_tcp 18508
	nrun --scope deploy -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER ci.example.test;
		$PY $NETUTIL connect 127.0.0.10 18508" >/dev/null
	expect_eq "$RC" 0 "discovery"
	"$NETTRAIL" deps --scope deploy --since 7d --db "$DB" >"$T/deps0.out" || fail "deps"
	grep -q "would break" "$T/deps0.out" && fail "no rule, nothing would break: $(cat "$T/deps0.out")"
	pol add example.test --scope deploy --mode monitor
	"$NETTRAIL" deps --scope deploy --since 7d --db "$DB" >"$T/deps.out" || fail "deps"
	expect_match "$(cat "$T/deps.out")" "monitor +example.test +deploy +would break: 2 processes, last at [0-9-]+ [0-9:]+ UTC, .[^ ]*python3 [^\`]+. in run [0-9]+ .sh -c .dig" \
		"the blast radius before enforcing"
	expect_match "$(grep 127.0.0.10 "$T/deps.out")" "ci.example.test .* monitor example.test " "the destination's rule"
	"$NETTRAIL" deps --scope deploy --format json --db "$DB" >"$T/deps.json" || fail "deps json"
	expect_eq "$("$PY" -c 'import json,sys
for d in json.load(open(sys.argv[1])):
    if d["addr"] == "127.0.0.10":
        print(d["domains"], d["verdicts"], d["port"], d["rule"], d["attempts"], d["first_seen"] == d["last_seen"] != "",
              len(d["cmdlines"]), d["cmdlines"][0].endswith("connect 127.0.0.10 18508"))' "$T/deps.json")" \
		"['ci.example.test'] ['allowed'] 18508 monitor example.test 1 True 1 True" \
		"json: names, verdicts, port, rule, attempts, first and last seen, command lines"
	nrun --scope deploy -- dig +short +time=2 +tries=1 @$RESOLVER ci.example.test >/dev/null
	expect_match "$(cat "$T/report")" "monitor +example.test +deploy +would break: 1 process" "the run's summary, monitor"
	pol set example.test --scope deploy --mode enforce
	nrun --scope deploy -- dig +short +time=2 +tries=1 @$RESOLVER ci.example.test >/dev/null
	expect_match "$(cat "$T/report")" "enforce +example.test +deploy +breaks: 1 process" "the run's summary, enforce"
	# The refused name, never connected to, is still a line of the run's summary.
	expect_match "$(grep ' dns ' "$T/report")" "^deploy +ci.example.test +dns +- +- +1 +1 blocked .* enforce example.test +dig " \
		"the refused lookup's line"
	# Another scope that used the same name is not in the report of deploy's rules.
	nrun --scope other -- "$PY" "$NETUTIL" connect 127.0.0.10 18508 >/dev/null
	"$NETTRAIL" deps --scope other --db "$DB" >"$T/other.out" 2>&1
	expect_match "$(cat "$T/other.out")" "127.0.0.10 +18508" "other's destination is listed"
	grep -q "example.test\|break" "$T/other.out" && fail "another scope's report names deploy's rule: $(cat "$T/other.out")"
	true
}

test_policy_suggest_apply_then_lock_down_keeps_the_script_green() {
	start_dnsmasq --local=/example.test/
	serve_tcp 18506
	cat >"$T/deploy.sh" <<-EOF
	#!/bin/sh
	set -e
	dig +short +time=2 +tries=1 @$RESOLVER ci.example.test
	dig +short +time=2 +tries=1 @$RESOLVER api.example.test
	dig +short +time=2 +tries=1 @$RESOLVER nothere.example.test
	$PY $NETUTIL connect 127.0.0.10 18506
	$PY $NETUTIL connect 127.0.0.3 18506
	EOF
	chmod +x "$T/deploy.sh"
	nrun --scope deploy -- "$T/deploy.sh" >"$T/run1.out"
	expect_eq "$RC" 0 "the discovery run"
	"$NETTRAIL" policy suggest --scope deploy --db "$DB" >"$T/suggest.out" 2>&1 || fail "suggest"
	expect_eq "$(grep -v '^#' "$T/suggest.out" | sed 's/ *#.*//')" \
		"nettrail policy add =api.example.test --scope deploy --mode allow
nettrail policy add =ci.example.test --scope deploy --mode allow" "one exact allow rule per name that exists"
	expect_match "$(cat "$T/suggest.out")" "#   tcp 127.0.0.3 port 18506, 1 attempt" "an address with no name, listed apart"
	expect_eq "$(q "$DB" "select count(*) from rules")" 0 "suggest alone writes nothing"
	"$NETTRAIL" policy suggest --scope deploy --apply --db "$DB" >"$T/apply.out" 2>&1 || fail "suggest --apply"
	expect_match "$(cat "$T/apply.out")" "added 2 allow rules for deploy" "applied"
	pol default --scope deploy enforce
	expect_eq "$(q "$DB" "select pattern, mode, scope from rules order by name" | tr '|' ' ')" \
		"=api.example.test allow deploy
=ci.example.test allow deploy" "the rules"
	"$NETTRAIL" policy suggest --scope deploy --db "$DB" >"$T/suggest2.out"
	expect_match "$(cat "$T/suggest2.out")" "nothing to allow" "nothing left to suggest"
	# Locked down: the observed script runs green, the same as before.
	nrun --scope deploy -- "$T/deploy.sh" >"$T/run2.out"
	expect_eq "$RC" 0 "the locked-down run"
	expect_eq "$(cat "$T/run2.out")" "$(cat "$T/run1.out")" "the same output"
	# A new destination is refused.
	nrun --scope deploy -- dig +time=2 +tries=1 @$RESOLVER many.example.test >"$T/new.out"
	expect_match "$(cat "$T/new.out")" "status: NXDOMAIN" "a new name"
	expect_eq "$(q "$DB" "select verdict, rule from dns_queries where qname = 'many.example.test'" | tr '|' ' ')" \
		"blocked default" "recorded blocked by the scope default"
	expect_eq "$(q "$DB" "select distinct verdict, rule from dns_queries where qname = 'ci.example.test'
		and run_id = (select max(run_id) - 1 from dns_queries)" | tr '|' ' ')" \
		"allowed =ci.example.test" "allowed by its rule"
	# Another scope is not locked down.
	nrun --scope other -- dig +short +time=2 +tries=1 @$RESOLVER many.example.test >"$T/other.out"
	expect_eq "$(cat "$T/other.out")" "127.0.0.12" "another scope resolves it"
	# Its address, known now, is refused to the locked-down scope: by the scope's default.
	local ATTEMPT_OPTS=--enforce-loopback
	expect_eq "$(attempts deploy 127.0.0.12 18506 | tr '\n' ' ')" "tcp EPERM udp EPERM sendto EPERM " "by address"
	expect_eq "$(q "$DB" "select distinct verdict, rule, coalesce(rule_id, '-'), domain from connections
		where addr = '127.0.0.12' and scope = 'deploy'" | tr '|' ' ')" "blocked default - many.example.test" \
		"recorded as the default's, with no rule id"
	expect_eq "$(attempts other 127.0.0.12 18506 | tr '\n' ' ')" "tcp ok udp ok sendto ok " "the other scope reaches it"
}

test_policy_shared_address_is_decided_by_an_option_and_reported() {
	# A CDN's address: an enforced name and a name that may be reached both resolve to it.
	start_dnsmasq --host-record=shared.other.test,127.0.0.10
	serve_tcp 18509
	nrun --scope deploy -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER ci.example.test;
		dig +short +time=2 +tries=1 @$RESOLVER shared.other.test;
		$PY $NETUTIL connect 127.0.0.10 18509" >/dev/null
	pol add example.test --scope deploy --mode enforce
	local ATTEMPT_OPTS=--enforce-loopback
	expect_eq "$(attempts deploy 127.0.0.10 18509 | tr '\n' ' ')" "tcp ok udp ok sendto ok " \
		"by default the name that may be reached keeps the address"
	ATTEMPT_OPTS="--enforce-loopback --shared-address block"
	expect_eq "$(attempts deploy 127.0.0.10 18509 | tr '\n' ' ')" "tcp EPERM udp EPERM sendto EPERM " \
		"--shared-address block refuses it"
	"$NETTRAIL" deps --scope deploy --db "$DB" >"$T/deps.out" || fail "deps"
	expect_match "$(grep '18509' "$T/deps.out" | head -1)" "enforce example.test \+shared" "the conflict in the report"
	expect_match "$(cat "$T/deps.out")" "\+shared: a name that may be reached resolved to this address too" "explained"
}

test_policy_a_full_address_table_makes_room_and_counts_what_it_drops() {
	# Two addresses remembered. Where shared addresses are refused, the allowed names'
	# addresses give way to the refused ones', and once every address remembered refuses
	# something, a refused name's address is dropped: reachable, and counted in /metrics and
	# in stats. By default nothing gives way (a reachable name keeps what it resolved to).
	start_dnsmasq --host-record=a1.other.test,127.0.0.21 --host-record=a2.other.test,127.0.0.22 \
		--host-record=b1.blocked.test,127.0.0.31 --host-record=b2.blocked.test,127.0.0.32 \
		--host-record=b3.blocked.test,127.0.0.33
	serve_tcp 18513
	pol add blocked.test --scope deploy --mode enforce
	local script="
		dig +short +time=2 +tries=1 @$RESOLVER a1.other.test; dig +short +time=2 +tries=1 @$RESOLVER a2.other.test
		for n in 1 2 3; do
			dig +short +time=2 +tries=1 @$RESOLVER b\$n.blocked.test
			sleep 0.3 # the proxy's own lookup answered, however loaded the machine
			$PY $NETUTIL attempt tcp 127.0.0.3\$n 18513
		done"
	start_agent --enforce-loopback --block-addresses 2 --shared-address block
	"$NETTRAIL" run --scope deploy -- sh -c "$script" >"$T/out" 2>"$T/report"
	expect_eq "$(cat "$T/out")" "127.0.0.21
127.0.0.22
tcp EPERM
tcp EPERM
tcp ok" "the first two refused names' addresses found room, the third's did not"
	curl -sf http://127.0.0.1:9874/metrics >"$T/metrics" || fail "scrape"
	expect_eq "$(metric nettrail_block_addresses)" 2 "addresses remembered: the cap"
	expect_eq "$(metric nettrail_block_addresses_evicted_total)" 2 "a1's and a2's gave way"
	expect_eq "$(metric nettrail_block_answers_dropped_total)" 1 "b3's answer was dropped"
	expect_eq "$(q "$DB" "select verdict, coalesce(domain, '-') from connections where port = 18513 order by id" | tr '|' ' ')" \
		"blocked b1.blocked.test
blocked b2.blocked.test
allowed -" "recorded"
	stop_agent
	expect_eq "$(q "$DB" "select name, max(value) from stats where name like 'block_%' and source like 'agent:%'
		group by name order by name" | tr '|' ' ')" "block_addresses_evicted 2
block_answers_dropped 1" "the counts are kept in stats"
	# The default, --shared-address allow: a1's and a2's addresses are kept.
	nrun --enforce-loopback --block-addresses 2 --scope deploy -- sh -c "$script" >"$T/out"
	expect_eq "$(tail -3 "$T/out" | tr '\n' ' ')" "tcp ok tcp ok tcp ok " "no room: not refused by address"
	expect_eq "$(q "$DB" "select name, max(value) from stats where name like 'block_%' and source like 'run:%'
		group by name order by name" | tr '|' ' ')" "block_addresses_evicted 0
block_answers_dropped 3" "each dropped, counted"
	"$NETTRAIL" agent --block-addresses 0 --db "$DB" 2>"$T/err"
	expect_eq "$?" 2 "bad --block-addresses"
	expect_match "$(cat "$T/err")" "--block-addresses must be a number from 1 to" "its message"
}

test_policy_a_cname_target_rule_decides_the_chain() {
	# www.example.test is a CNAME of ci.example.test (dnsmasq): a rule of the target decides
	# a lookup of the alias, over UDP and TCP, and its addresses; a rule of the alias's own
	# allowing it wins; another scope is not touched.
	start_dnsmasq
	serve_tcp 18514
	pol add =ci.example.test --scope deploy --mode monitor
	nrun --scope deploy -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER www.example.test
		$PY $NETUTIL attempt tcp 127.0.0.10 18514" >"$T/out"
	expect_eq "$(tail -2 "$T/out")" "127.0.0.10
tcp ok" "monitor: answered, reachable"
	# The report weighs the chain too: the destination's rule, and what would break.
	"$NETTRAIL" deps --scope deploy --db "$DB" >"$T/deps.out" || fail "deps"
	expect_match "$(grep 18514 "$T/deps.out")" "www.example.test .* monitor =ci.example.test " "the destination's rule"
	expect_match "$(cat "$T/deps.out")" "monitor +=ci.example.test +deploy +would break: 2 processes" "what would break"
	pol set =ci.example.test --scope deploy --mode enforce
	nrun --enforce-loopback --scope deploy -- sh -c "dig +time=2 +tries=1 @$RESOLVER www.example.test | grep -o 'status: [A-Z]*'
		dig +tcp +time=2 +tries=1 @$RESOLVER www.example.test | grep -o 'status: [A-Z]*'
		$PY $NETUTIL attempt tcp 127.0.0.10 18514" >"$T/out"
	expect_eq "$(cat "$T/out")" "status: NXDOMAIN
status: NXDOMAIN
tcp EPERM" "enforce: the alias refused over UDP and TCP, and the target's address"
	expect_eq "$(q "$DB" "select transport, verdict, rule, rcode, coalesce(error, '-') from dns_queries
		where qname = 'www.example.test' order by id" | tr '|' ' ')" "udp would_block =ci.example.test NOERROR -
udp blocked =ci.example.test NXDOMAIN blocked by rule: CNAME
tcp blocked =ci.example.test NXDOMAIN blocked by rule: CNAME" "recorded with the target's rule"
	# Connections are judged as their name's lookup was, chain and all: the monitored connect
	# is would_block by the target's rule, as its lookup was; the refused one carries it too.
	expect_eq "$(q "$DB" "select verdict, coalesce(nullif(rule, ''), '-'), domain from connections where port = 18514 order by id" | tr '|' ' ')" \
		"would_block =ci.example.test www.example.test
blocked =ci.example.test www.example.test" "the connects: the target's rule, the name asked"
	expect_eq "$(q "$DB" "select a.type, a.value from dns_answers a join dns_queries q on q.id = a.query_id
		where q.error = 'blocked by rule: CNAME' and q.transport = 'udp'" | tr '|' ' ')" \
		"CNAME ci.example.test" "the refusal keeps the chain, not the addresses"
	"$NETTRAIL" deps --scope deploy --db "$DB" >"$T/deps.out" || fail "deps"
	expect_match "$(cat "$T/deps.out")" "enforce +=ci.example.test +deploy +breaks: 5 processes" "the report under enforce: every process that asked for the alias or reached it"
	# A new run learns the chain from the store: an address it never resolved is refused.
	nrun --enforce-loopback --scope deploy -- "$PY" "$NETUTIL" attempt tcp 127.0.0.10 18514 >"$T/out"
	expect_eq "$(cat "$T/out")" "tcp EPERM" "remembered with its chain"
	nrun --scope other -- dig +short +time=2 +tries=1 @$RESOLVER www.example.test >"$T/out"
	expect_eq "$(tail -1 "$T/out")" 127.0.0.10 "another scope resolves it"
	pol add =www.example.test --scope deploy --mode allow
	nrun --scope deploy -- dig +short +time=2 +tries=1 @$RESOLVER www.example.test >"$T/out"
	expect_eq "$(tail -1 "$T/out")" 127.0.0.10 "the alias's own allow rule wins"
}

test_policy_a_blocked_lookup_still_learns_the_addresses() {
	# Enforced before anyone resolved it: the lookup is refused, and the proxy asks the
	# upstream anyway, so the script's fallback to an address it has is refused too, at once.
	local t0 t1
	start_dnsmasq
	serve_tcp 18510
	pol add ci.example.test --scope deploy --mode enforce
	t0=$(date +%s%N)
	nrun --enforce-loopback --scope deploy -- sh -c "dig +time=2 +tries=1 @$RESOLVER ci.example.test |
		grep -o 'status: [A-Z]*'; $PY $NETUTIL attempt tcp 127.0.0.10 18510" >"$T/out"
	t1=$(date +%s%N)
	expect_eq "$(cat "$T/out")" "status: NXDOMAIN
tcp EPERM" "refused by name, then by address"
	[ $(((t1 - t0) / 1000000)) -lt 1900 ] || fail "took $(((t1 - t0) / 1000000)) ms"
	expect_eq "$(q "$DB" "select verdict, rule, domain from connections where port = 18510" | tr '|' ' ')" \
		"blocked ci.example.test ci.example.test" "the refused connect names the rule and the name"
	expect_eq "$(q "$DB" "select count(*) from dns_queries where qname = 'ci.example.test'")" 1 \
		"the proxy's own question is not a query of the script's"
	grep -q "query\[A\] ci.example.test" "$T/dnsmasq.log" || fail "the upstream was not asked"
}

test_policy_a_refused_name_does_not_rename_a_shared_address() {
	# The scope resolved an allowed name to an address, then was refused a name that the
	# upstream says has the same address: the address stays reachable (shared) and keeps
	# the name the scope got.
	start_dnsmasq --host-record=shared.other.test,127.0.0.10
	serve_tcp 18511
	pol add ci.example.test --scope deploy --mode enforce
	nrun --enforce-loopback --scope deploy -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER shared.other.test;
		dig +short +time=2 +tries=1 @$RESOLVER ci.example.test; $PY $NETUTIL attempt tcp 127.0.0.10 18511" >"$T/out"
	expect_eq "$(cat "$T/out")" "127.0.0.10
tcp ok" "allowed name resolved, refused name empty, shared address reachable"
	expect_eq "$(q "$DB" "select verdict, domain, coalesce(rule, '-') from connections where port = 18511" | tr '|' ' ')" \
		"allowed shared.other.test -" "the connect keeps the scope's name"
}

test_policy_says_which_runs_apply_a_change() {
	# Without an agent, a run going on now follows the rules: policy says so.
	start_dnsmasq
	bg "$NETTRAIL" run --db "$DB" --scope live -- sh -c "while [ ! -e $T/stop ]; do sleep 0.05; done" 2>/dev/null
	local run=$BG_PID
	wait_for_file "$DB"
	for _ in $(seq 100); do
		[ "$(q "$DB" "select count(*) from runs where ended_ns is null" 2>/dev/null)" = 1 ] && break
		sleep 0.05
	done
	"$NETTRAIL" policy add example.test --scope live --db "$DB" >"$T/add.out" 2>&1 || fail "add"
	expect_match "$(cat "$T/add.out")" "1 .nettrail run. going on now applies it within a second" "the live run"
	touch "$T/stop"
	wait "$run"
	"$NETTRAIL" policy set example.test --scope live --mode enforce --db "$DB" >"$T/set.out" 2>&1 || fail "set"
	expect_match "$(cat "$T/set.out")" "no agent or run uses this database now: the next one applies it" "none now"
}
