# The event feed (/v1/events) read with real clients: curl, python3-protobuf's decoder, and
# compared with what the sqlite3 shell reads from the same store.

FEED_PORT=19875
FEED="http://127.0.0.1:$FEED_PORT/v1/events"
FEEDDECODE="$here/feeddecode.py"

# The store's events in feeddecode.py's line format, oldest first ($1: an SQL condition).
store_events() {
	q "$DB" "SELECT * FROM (
		SELECT c.id AS id, 'connect' AS kind, c.scope AS scope, p.pid, c.addr, c.port,
		       c.verdict, c.domain
		FROM connections c LEFT JOIN processes p ON p.id = c.process_id
		UNION ALL
		SELECT d.id, 'dns', d.scope, p.pid, d.qname, d.qtype, d.verdict, d.rcode
		FROM dns_queries d LEFT JOIN processes p ON p.id = d.process_id)
	 WHERE ${1:-1} ORDER BY id"
}

# Some connects (to the serve_tcp port $1) and DNS queries in two scopes, through a running
# agent.
feed_workload() {
	"$NETTRAIL" run --scope alpha -- sh -c "$PY $NETUTIL connect 127.0.0.1 $1 3;
		dig +short +time=2 +tries=1 @$RESOLVER ci.example.test;
		dig +short +time=2 +tries=1 @$RESOLVER www.example.test AAAA" >/dev/null 2>&1
	"$NETTRAIL" run --scope beta -- sh -c "dig +short +time=2 +tries=1 @$RESOLVER api.example.test;
		$PY $NETUTIL connect 127.0.0.1 $1 2" >/dev/null 2>&1
}

test_feed_equals_the_store() {
	start_dnsmasq
	start_agent --listen "127.0.0.1:$FEED_PORT"
	serve_tcp 18401
	feed_workload 18401
	curl -sf "$FEED" >"$T/feed.bin" || fail "GET /v1/events"
	"$FEEDDECODE" <"$T/feed.bin" >"$T/feed.txt" || fail "decode"
	store_events >"$T/store.txt"
	expect_eq "$(wc -l <"$T/store.txt")" 11 "events in the store: 5 connects, 3 resolver connects, 3 queries"
	expect_eq "$(cat "$T/feed.txt")" "$(cat "$T/store.txt")" "feed = store, event for event"
	# The same events as JSON lines, in the same order.
	curl -sf "$FEED?format=ndjson" | "$PY" -c 'import json, sys
print("\n".join(json.loads(l)["id"] for l in sys.stdin))' >"$T/ndjson.ids"
	expect_eq "$(cat "$T/ndjson.ids")" "$(cut -d'|' -f1 "$T/store.txt")" "ndjson ids"
	# Filters.
	expect_eq "$(curl -sf "$FEED?scope=beta" | "$FEEDDECODE")" "$(store_events "scope = 'beta'")" "scope=beta"
	expect_eq "$(curl -sf "$FEED?kind=dns" | "$FEEDDECODE")" \
		"$(store_events "kind = 'dns'")" "kind=dns"
	expect_eq "$(curl -sf "$FEED?kind=dns&scope=alpha&limit=1" | "$FEEDDECODE" | cut -d'|' -f2,3,5)" \
		"dns|alpha|ci.example.test" "kind, scope and limit together"
	curl -s -D "$T/headers" -o /dev/null "$FEED"
	expect_match "$(cat "$T/headers")" "Content-Type: application/x-protobuf" "content type"
	stop_agent
}

test_feed_resume_misses_nothing_repeats_nothing() {
	local last=0 chunk n=0
	start_dnsmasq
	start_agent --listen "127.0.0.1:$FEED_PORT"
	serve_tcp 18403
	feed_workload 18403
	# Read in chunks of 5, each resuming after the last id received.
	: >"$T/chunks.txt"
	while :; do
		chunk=$(curl -sf "$FEED?since=$last&limit=5" | "$FEEDDECODE")
		[ -n "$chunk" ] || break
		echo "$chunk" >>"$T/chunks.txt"
		last=$(echo "$chunk" | tail -1 | cut -d'|' -f1)
		n=$((n + 1))
		[ "$n" -lt 100 ] || { fail "no end"; break; }
	done
	expect_eq "$(cat "$T/chunks.txt")" "$(store_events)" "chunked reads = the store"
	# A follower that disconnects, and resumes with the last id it holds.
	curl -sfN "$FEED?follow=1" >"$T/follow1.bin" &
	local follower=$!
	sleep 0.5
	kill "$follower"
	wait "$follower" 2>/dev/null
	last=$("$FEEDDECODE" <"$T/follow1.bin" | tail -1 | cut -d'|' -f1)
	feed_workload 18403 # events committed while it was away
	curl -sf "$FEED?since=$last" >"$T/follow2.bin"
	cat "$T/follow1.bin" "$T/follow2.bin" | "$FEEDDECODE" >"$T/resumed.txt"
	expect_eq "$(cat "$T/resumed.txt")" "$(store_events)" "before + after the disconnect = the store"
	stop_agent
}

test_feed_follow_delivers_within_a_second() {
	start_agent --listen "127.0.0.1:$FEED_PORT"
	serve_tcp 18402
	curl -sfN "$FEED?follow=1&format=ndjson&scope=late" >"$T/follow.ndjson" &
	local follower=$! t0 waited=0
	sleep 0.3
	# `run` returns once the agent has committed the run's events: the clock starts then.
	"$NETTRAIL" run --scope late -- "$PY" "$NETUTIL" connect 127.0.0.1 18402 >/dev/null 2>&1
	t0=$(date +%s%N)
	until grep -q '"port":18402' "$T/follow.ndjson"; do
		sleep 0.02
		waited=$((($(date +%s%N) - t0) / 1000000))
		[ "$waited" -lt 3000 ] || break
	done
	expect_match "$(cat "$T/follow.ndjson")" '"scope":"late"' "the event arrived"
	[ "$waited" -le 1000 ] || fail "the event took $waited ms to arrive"
	kill "$follower"
	wait "$follower" 2>/dev/null
	stop_agent
	expect_match "$(cat "$T/agent.log")" "stopped:" "the agent stopped with a follower connected"
}

test_feed_followers_leave_room_for_scrapes() {
	# 48 following streams are served; one more gets 503, and /metrics and /healthz still
	# answer: a feed consumer cannot take the probes' connections.
	local i pids=()
	start_agent --listen "127.0.0.1:$FEED_PORT"
	for i in $(seq 48); do
		curl -sfN "$FEED?follow=1" >/dev/null &
		pids+=($!)
	done
	sleep 1
	expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "$FEED?follow=1")" 503 "the 49th follower"
	expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FEED_PORT/metrics")" 200 "/metrics"
	expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FEED_PORT/healthz")" 200 "/healthz"
	kill "${pids[@]}"
	wait "${pids[@]}" 2>/dev/null
	sleep 0.5
	expect_eq "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$FEED?limit=1")" 200 "served again"
	stop_agent
}
