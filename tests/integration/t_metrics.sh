# The agent's HTTP endpoint: /metrics read by the real promtool and a real Prometheus, the
# dashboard's every query run against what that Prometheus scraped, and the HTTP server's
# answers to bad requests and its limits. Uses start_agent/stop_agent (t_agent.sh) and
# start_dnsmasq/$RESOLVER (t_dns.sh). Loopback only, like every test here.

METRICS_LISTEN=127.0.0.1:19874
METRICS_URL="http://$METRICS_LISTEN"
PROM_LISTEN=127.0.0.1:19090
PROM_URL="http://$PROM_LISTEN"
DASHBOARD="$here/../../dashboards/nettrail.json"
DOCS="$here/../../docs"
LOST_REASONS="ringbuf_full queue_full store_error undecodable dns_queue_full"

mcurl() { # curl to loopback, never through a proxy from the environment
	curl -s --noproxy '*' --max-time 5 "$@"
}

# Runs "$@" inside cgroup $1 (a watched service's cgroup).
in_cg() {
	sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$@"
}

# The value of the one series of family $2 with labels $3... (name=value) in the scrape $1;
# "none" when no series matches, "N series" when several do.
metric_value() {
	"$PY" - "$@" <<'EOF'
import re, sys
path, name = sys.argv[1], sys.argv[2]
want = dict(a.split("=", 1) for a in sys.argv[3:])
line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
found = []
for line in open(path):
    m = line_re.match(line.rstrip("\n"))
    if not m or m.group(1) != name:
        continue
    labels = dict(label_re.findall(m.group(2) or ""))
    if all(labels.get(k) == v for k, v in want.items()):
        found.append(m.group(3))
print(found[0] if len(found) == 1 else "none" if not found else f"{len(found)} series")
EOF
}

# Scrapes into $T/metrics until series $2 $3... has value $1 (5 s at most).
wait_metric() {
	local want=$1
	shift
	for _ in $(seq 50); do
		mcurl "$METRICS_URL/metrics" >"$T/metrics"
		[ "$(metric_value "$T/metrics" "$@")" = "$want" ] && return 0
		sleep 0.1
	done
	fail "$* never reached $want: $(metric_value "$T/metrics" "$@")"
}

# An instant query to the test's Prometheus: the value of its one series, "none" for an empty
# result, "N series", or "error: ...".
prom_value() {
	"$PY" - "$PROM_URL" "$1" <<'EOF'
import json, sys, urllib.error, urllib.parse, urllib.request
url, expr = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=5) as r:
        res = json.load(r)["data"]["result"]
except (urllib.error.URLError, OSError, ValueError) as e:
    print(f"error: {e}")
    sys.exit()
print(res[0]["value"][1] if len(res) == 1 else "none" if not res else f"{len(res)} series")
EOF
}

# Waits until the test's Prometheus answers $1 with $2 (10 s at most).
wait_prom() {
	for _ in $(seq 100); do
		[ "$(prom_value "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	fail "Prometheus never answered $2 to $1: $(prom_value "$1")"
}

# The fenced code block of markdown file $1 whose first line is $2; fails when there is none.
doc_block() {
	"$PY" - "$@" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
for block in re.findall(r"^```[a-z]*\n(.*?)^```$", text, re.S | re.M):
    if block.split("\n", 1)[0] == sys.argv[2]:
        sys.stdout.write(block)
        sys.exit(0)
sys.exit(f"no block starting with {sys.argv[2]} in {sys.argv[1]}")
EOF
}

test_metrics_promtool_clean() {
	local svc="$CG2/nettrail-test-metrics-$$" connects=3 digs=2
	command -v promtool >/dev/null || { fail "promtool missing (make deps installs prometheus)"; return; }
	start_dnsmasq
	serve_tcp 18411
	mkdir "$svc"
	start_agent --listen "$METRICS_LISTEN" --watch "$svc:billing"
	in_cg "$svc" "$PY" "$NETUTIL" connect 127.0.0.1 18411 "$connects" >/dev/null
	for _ in $(seq "$digs"); do
		in_cg "$svc" dig +short +time=2 +tries=1 @"$RESOLVER" ci.example.test >>"$T/dig.out"
	done
	wait_metric "$digs" nettrail_dns_queries_total scope=billing
	# Every event committed too: the tcp connects, each dig's query and its udp connect.
	wait_metric $((connects + 2 * digs)) nettrail_events_stored_total
	mcurl -D "$T/headers" "$METRICS_URL/metrics" >"$T/metrics"
	expect_match "$(cat "$T/headers")" "Content-Type: text/plain; version=0.0.4; charset=utf-8" "content type"
	promtool check metrics <"$T/metrics" >"$T/promtool.out" 2>&1
	expect_eq "$?" 0 "promtool check metrics exit status"
	expect_eq "$(cat "$T/promtool.out")" "" "promtool check metrics output"
	# Every family the agent exports is in docs/metrics.md's table, and nothing else is.
	expect_eq "$(awk '/^# TYPE / { print $3 }' "$T/metrics" | sort)" \
		"$(grep -oE '^\| `(nettrail|process)_[a-z_]+`' "$DOCS/metrics.md" | tr -d '|` ' | sort -u)" "the families docs/metrics.md lists"
	# The scrape configuration and the alerting rules the documentation gives are valid.
	doc_block "$DOCS/grafana.md" "# prometheus.yml" >"$T/prometheus.yml" 2>"$T/check-config.out" &&
		promtool check config "$T/prometheus.yml" >"$T/check-config.out" 2>&1 ||
		fail "docs/grafana.md's prometheus.yml: $(cat "$T/check-config.out")"
	doc_block "$DOCS/metrics.md" "# nettrail.rules.yml" >"$T/rules.yml" 2>"$T/check-rules.out" &&
		promtool check rules "$T/rules.yml" >"$T/check-rules.out" 2>&1 ||
		fail "docs/metrics.md's alerting rules: $(cat "$T/check-rules.out")"
	expect_eq "$(metric_value "$T/metrics" nettrail_connect_attempts_total scope=billing verdict=allowed proto=tcp family=ipv4)" \
		"$connects" "tcp connects"
	expect_eq "$(metric_value "$T/metrics" nettrail_connect_attempts_total scope=billing verdict=allowed proto=udp family=ipv4)" \
		"$digs" "dig's udp connects to its resolver"
	expect_eq "$(metric_value "$T/metrics" nettrail_dns_queries_total scope=billing verdict=allowed rcode=NOERROR qtype=A transport=udp)" \
		"$digs" "digs"
	expect_eq "$(grep -c '^nettrail_events_lost_total{' "$T/metrics")" 5 "one lost series per reason"
	for r in $LOST_REASONS; do
		expect_eq "$(metric_value "$T/metrics" nettrail_events_lost_total reason="$r")" 0 "lost ($r)"
	done
	expect_eq "$(metric_value "$T/metrics" nettrail_watched_cgroups)" 2 "watched cgroups (runs root and billing)"
	expect_eq "$(metric_value "$T/metrics" nettrail_dns_received_total)" "$digs" "DNS messages received"
	expect_eq "$(metric_value "$T/metrics" nettrail_build_info version="$(cat "$here/../../VERSION")")" 1 "build info"
	stop_agent
	rmdir "$svc"
	expect_eq "$AGENT_RC" 0 "clean stop"
	# What the counters say is what the database holds.
	expect_eq "$(q "$DB" "select count(*) from connections where scope = 'billing' and proto = 'tcp';
		select count(*) from dns_queries where scope = 'billing'")" "$connects
$digs" "stored"
}

# Dashboard checks and queries: one "ok ..." or "FAIL ..." line each.
dashboard_check() { # dashboard.json prometheus-url
	"$PY" - "$@" <<'EOF'
import json, re, sys, urllib.error, urllib.parse, urllib.request
path, url = sys.argv[1], sys.argv[2]
d = json.load(open(path))
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DS = {"type": "prometheus", "uid": "${datasource}"}
SCOPED = ("nettrail_connect_attempts_total", "nettrail_dns_queries_total", "nettrail_runs_total",
          "nettrail_rule_matches_total")
SUBST = [(r"\$\{?__rate_interval\}?", "10s"), (r"\$\{?__range\}?", "5m"),
         (r"\$\{?__interval\}?", "1s"), (r"\$\{scope(?::\w+)?\}|\$scope\b", ".*")]

def out(ok, what):
    print(("ok   " if ok else "FAIL ") + what)

def query(expr):
    try:
        with opener.open(url + "/api/v1/query",
                         urllib.parse.urlencode({"query": expr}).encode(), timeout=5) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 400/422: the body says why
        return json.load(e)

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))

out(d.get("schemaVersion", 0) >= 39, f"schemaVersion {d.get('schemaVersion')}")
v = {t["name"]: t for t in d["templating"]["list"]}
ds = v.get("datasource", {})
out(ds.get("type") == "datasource" and ds.get("query") == "prometheus", "datasource variable")
sc = v.get("scope", {})
scope_q = sc.get("query", {})
scope_q = scope_q.get("query") if isinstance(scope_q, dict) else scope_q
out(sc.get("type") == "query" and sc.get("datasource") == DS and sc.get("multi") is True
    and sc.get("includeAll") is True and sc.get("allValue") == ".*"
    and scope_q == "label_values(nettrail_connect_attempts_total, scope)", "scope variable")
m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", scope_q or "")
if m:
    res = query(f"count by ({m.group(2)}) ({m.group(1)})")
    vals = sorted(s["metric"].get(m.group(2), "") for s in res.get("data", {}).get("result", []))
    out(res.get("status") == "success" and vals, f"scope values: {' '.join(vals)}")

ids, n = set(), 0
for p in walk(d["panels"]):
    if p.get("id") in ids:
        out(False, f"duplicate panel id {p.get('id')}")
    ids.add(p.get("id"))
    if p["type"] == "row":
        continue
    title = p.get("title")
    out(p.get("datasource") == DS and p.get("targets"), f"{title}: datasource and targets")
    for t in p.get("targets", []):
        expr = t.get("expr", "")
        n += 1
        if t.get("datasource", DS) != DS:
            out(False, f"{title}: target datasource {t.get('datasource')}")
        for name in SCOPED:
            for sel in re.finditer(name + r"(\{[^}]*\})?", expr):
                if 'scope=~"$scope"' not in (sel.group(1) or ""):
                    out(False, f'{title}: {name} without scope=~"$scope": {expr}')
        q = expr
        for pat, rep in SUBST:
            q = re.sub(pat, rep, q)
        if "$" in q:
            out(False, f"{title}: variable left unsubstituted in {q}")
            continue
        res = query(q)
        result = res.get("data", {}).get("result", [])
        if res.get("status") != "success":
            out(False, f"{title}: {q}: {res.get('errorType')}: {res.get('error')}")
        elif not result:
            out(False, f"{title}: {q}: empty result")
        elif "nettrail_events_lost_total" in q and (
                len(result) != 5 or any(float(s["value"][1]) != 0 for s in result)):
            out(False, f"{title}: {q}: lost events not visibly zero: {result}")
        else:
            out(True, f"{title}: {q} -> {len(result)} series")
print(f"{n} expressions")
EOF
}

# Runs every expression of the ```promql blocks of markdown file $1 (separated by blank lines)
# against Prometheus $2: one "ok ..." or "FAIL ..." line each. Empty results are fine: most
# ask whether something went wrong.
docs_promql_check() {
	"$PY" - "$@" <<'EOF'
import json, re, sys, urllib.error, urllib.parse, urllib.request
path, url = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
n = 0
for block in re.findall(r"^```promql\n(.*?)^```$", open(path).read(), re.S | re.M):
    for expr in (e.strip() for e in re.split(r"\n\s*\n", block)):
        if not expr:
            continue
        n += 1
        try:
            with opener.open(url + "/api/v1/query",
                             urllib.parse.urlencode({"query": expr}).encode(), timeout=5) as r:
                res = json.load(r)
        except urllib.error.HTTPError as e:
            res = json.load(e)
        ok = res.get("status") == "success"
        print(("ok   " if ok else "FAIL ") + " ".join(expr.split()) +
              ("" if ok else f": {res.get('error')}"))
print(f"{n} expressions")
EOF
}

test_metrics_prometheus_scrapes_and_dashboard_queries_run() {
	local svc="$CG2/nettrail-test-prom-$$" connects=5 digs=3
	command -v prometheus >/dev/null || { fail "prometheus missing (make deps installs it)"; return; }
	start_dnsmasq --local=/nx.example.test/
	serve_tcp 18412
	mkdir "$svc"
	# A monitor rule for the missing name: its lookup is counted under the rule.
	"$NETTRAIL" policy --db "$DB" add nx.example.test --scope web --mode monitor >"$T/policy.out" 2>&1 ||
		fail "policy add"
	start_agent --listen "$METRICS_LISTEN" --watch "$svc:web"
	cat >"$T/prom.yml" <<-EOF
	global:
	  scrape_interval: 1s
	  scrape_timeout: 1s
	  evaluation_interval: 1s
	scrape_configs:
	  - job_name: nettrail
	    static_configs:
	      - targets: ['$METRICS_LISTEN']
	EOF
	bg prometheus --config.file="$T/prom.yml" --storage.tsdb.path="$T/tsdb" \
		--web.listen-address="$PROM_LISTEN" --log.level=warn >"$T/prometheus.log" 2>&1
	local prom=$BG_PID
	wait_prom 'up{job="nettrail"}' 1
	# The workload: connects and lookups (one of a name that does not exist) from the
	# service, and two `nettrail run`s through the agent, the second failing.
	in_cg "$svc" sh -c "$PY $NETUTIL connect 127.0.0.1 18412 $connects >/dev/null;
		for i in \$(seq $digs); do dig +short +time=2 +tries=1 @$RESOLVER ci.example.test; done;
		dig +time=2 +tries=1 @$RESOLVER missing.nx.example.test" >"$T/dig.out"
	expect_match "$(cat "$T/dig.out")" "status: NXDOMAIN" "the missing name"
	"$NETTRAIL" run --scope batch -- "$PY" "$NETUTIL" connect 127.0.0.1 18412 >/dev/null 2>&1
	expect_eq "$?" 0 "run through the agent"
	"$NETTRAIL" run --scope batch -- sh -c "$PY $NETUTIL connect 127.0.0.1 18412; exit 3" >/dev/null 2>&1
	expect_eq "$?" 3 "failing run through the agent"
	# Scraped once everything is committed (tcp and resolver connects, queries, the runs').
	local stored=$((connects + 2 * (digs + 1) + 2))
	wait_prom nettrail_events_stored_total "$stored"
	# Runs are counted from the database's runs table, looked at once a second.
	wait_prom 'nettrail_runs_total{scope="batch",status="failed"}' 1
	sleep 2 # two more scrapes: rate() has two samples of the newest series
	expect_eq "$(prom_value 'nettrail_connect_attempts_total{scope="web",verdict="allowed",proto="tcp",family="ipv4"}')" \
		"$connects" "tcp connects"
	expect_eq "$(prom_value 'nettrail_connect_attempts_total{scope="web",verdict="allowed",proto="udp",family="ipv4"}')" \
		$((digs + 1)) "resolver connects"
	expect_eq "$(prom_value 'nettrail_dns_queries_total{scope="web",verdict="allowed",rcode="NOERROR",qtype="A",transport="udp"}')" \
		"$digs" "answered queries"
	expect_eq "$(prom_value 'nettrail_dns_queries_total{scope="web",verdict="would_block",rcode="NXDOMAIN",qtype="A",transport="udp"}')" \
		1 "NXDOMAIN, under the monitor rule"
	expect_eq "$(prom_value 'nettrail_rule_matches_total{scope="web",rule="nx.example.test",kind="dns",verdict="would_block"}')" \
		1 "the rule's match"
	expect_eq "$(prom_value 'count(nettrail_rule_matches_total)')" 1 "no other rule matched"
	expect_eq "$(prom_value 'nettrail_connect_attempts_total{scope="batch",proto="tcp"}')" 2 "the runs' connects"
	expect_eq "$(prom_value 'nettrail_runs_total{scope="batch",status="started"}')" 2 "runs started"
	expect_eq "$(prom_value 'nettrail_runs_total{scope="batch",status="succeeded"}')" 1 "runs succeeded"
	expect_eq "$(prom_value 'count(nettrail_runs_total)')" 3 "runs series: started, succeeded, failed"
	expect_eq "$(prom_value 'sum(nettrail_events_lost_total)')" 0 "nothing lost"
	expect_eq "$(prom_value 'nettrail_dns_upstream_duration_seconds_count')" $((digs + 1)) "upstream latencies observed"
	expect_eq "$(q "$DB" "select count(*) from connections; select count(*) from dns_queries")" \
		"$((connects + digs + 3))
$((digs + 1))" "the database agrees"
	# Every query of the dashboard runs and returns data.
	dashboard_check "$DASHBOARD" "$PROM_URL" >"$T/dashboard.out" 2>&1
	while read -r line; do fail "dashboard: $line"; done < <(grep -v '^ok   \|expressions$' "$T/dashboard.out")
	expect_ge "$(awk '/ expressions$/ { print $1 }' "$T/dashboard.out")" 20 "expressions found in the dashboard"
	expect_match "$(grep 'scope values' "$T/dashboard.out")" "scope values: batch web$" "the scope variable's values"
	# And so does every example of docs/metrics.md.
	docs_promql_check "$DOCS/metrics.md" "$PROM_URL" >"$T/docs.out" 2>&1
	while read -r line; do fail "docs/metrics.md: $line"; done < <(grep -v '^ok   \|expressions$' "$T/docs.out")
	expect_ge "$(awk '/ expressions$/ { print $1 }' "$T/docs.out")" 10 "expressions found in docs/metrics.md"
	kill "$prom"
	wait "$prom" 2>/dev/null
	stop_agent
	rmdir "$svc"
}

# Sends one request with a 100 KB header: the status the agent answers, or "closed".
big_header_request() {
	"$PY" - "$1" "$2" <<'EOF'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
try:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
except (BrokenPipeError, ConnectionResetError):
    pass
try:
    data = s.recv(4096)
except ConnectionResetError:
    data = b""
except socket.timeout:
    data = b"timeout "
print(data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "closed" if not data
      else data.split(b" ")[0].decode())
EOF
}

# Opens $3 connections to $1:$2, holds them 1 s, closes them: "opened N".
many_connections() {
	"$PY" - "$@" <<'EOF'
import socket, sys, time
socks = []
for _ in range(int(sys.argv[3])):
    try:
        socks.append(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2))
    except OSError:
        pass
time.sleep(1)
for s in socks:
    s.close()
print(f"opened {len(socks)}")
EOF
}

test_http_bad_requests_and_limits() {
	local code
	start_agent --listen "$METRICS_LISTEN"
	code=$(mcurl -o "$T/body" -w '%{http_code}' "$METRICS_URL/nope")
	expect_eq "$code" 404 "unknown path"
	code=$(mcurl -o "$T/body" -D "$T/headers" -w '%{http_code}' -X POST "$METRICS_URL/metrics")
	expect_eq "$code" 405 "POST /metrics"
	expect_match "$(tr -d '\r' <"$T/headers")" $'\nAllow: GET, HEAD\n' "Allow header"
	code=$(mcurl -o "$T/body" -w '%{http_code}' "$METRICS_URL/v1/events?since=abc")
	expect_eq "$code|$(wc -l <"$T/body")" "400|1" "since=abc: status|lines"
	expect_match "$(cat "$T/body")" "since" "since=abc: the reason"
	code=$(mcurl -o "$T/body" -w '%{http_code}' "$METRICS_URL/v1/events?kind=bogus")
	expect_eq "$code|$(wc -l <"$T/body")" "400|1" "kind=bogus: status|lines"
	expect_match "$(cat "$T/body")" "kind" "kind=bogus: the reason"
	expect_match "$(big_header_request 127.0.0.1 19874)" "^(431|closed)$" "100 KB header"
	expect_match "$(many_connections 127.0.0.1 19874 200)" "^opened " "200 connections"
	# Once they are gone the agent serves again at once.
	for _ in $(seq 30); do
		[ "$(mcurl -o "$T/body" -w '%{http_code}' "$METRICS_URL/healthz")" = 200 ] && break
		sleep 0.1
	done
	kill -0 "$AGENT" 2>/dev/null || fail "the agent died"
	code=$(mcurl -o "$T/body" -w '%{http_code}' "$METRICS_URL/healthz")
	expect_eq "$code|$(cat "$T/body")" "200|ok" "/healthz"
	code=$(mcurl -o "$T/body" -w '%{http_code}' "$METRICS_URL/readyz")
	expect_eq "$code|$(cat "$T/body")" "200|ready" "/readyz"
	code=$(mcurl -o "$T/body" -D "$T/headers" -w '%{http_code}' "$METRICS_URL/")
	expect_eq "$code" 200 "/"
	expect_match "$(cat "$T/headers")" "Content-Type: text/html" "/ is HTML"
	for e in /metrics /v1/events /healthz /readyz; do
		grep -q "href=\"$e" "$T/body" || fail "/ does not link $e"
	done
	stop_agent
	expect_eq "$AGENT_RC" 0 "clean stop after all that"
	# Refused at start. The non-loopback address is only parsed: nothing is sent to it.
	timeout 10 "$NETTRAIL" agent --db "$T/remote.db" --listen 10.1.2.3:9874 2>"$T/remote.log"
	expect_eq "$?" 2 "non-loopback --listen without --listen-remote"
	expect_match "$(cat "$T/remote.log")" "not a loopback address.*--listen-remote" "message"
	timeout 10 "$NETTRAIL" agent --db "$T/remote.db" --listen localhost 2>"$T/bad.log"
	expect_eq "$?" 2 "--listen without a port"
	serve_tcp 18413
	timeout 10 "$NETTRAIL" agent --db "$T/busy.db" --listen 127.0.0.1:18413 2>"$T/busy.log"
	expect_eq "$?" 1 "--listen on a port in use"
	expect_match "$(cat "$T/busy.log")" "failed to serve HTTP on 127.0.0.1:18413: .*address in use" "message"
	[ -e "$CG2/nettrail" ] && fail "runs root left behind by the agent that could not start"
	true
}

test_metrics_lost_events_match_the_database() {
	# Forced loss (a 4 KiB ring buffer, a 64-event queue): what /metrics says was stored and
	# lost adds up to what was sent, and is what the database says.
	local svc="$CG2/nettrail-test-loss-$$" n=20000 stored rb qf sum=none
	mkdir "$svc"
	start_agent --listen "$METRICS_LISTEN" --ringbuf-size 4096 --queue-size 64 --watch "$svc:flood"
	in_cg "$svc" "$PY" "$NETUTIL" udp-flood 127.0.0.1 30000 "$n" >/dev/null
	for _ in $(seq 50); do
		mcurl "$METRICS_URL/metrics" >"$T/metrics"
		stored=$(metric_value "$T/metrics" nettrail_events_stored_total)
		rb=$(metric_value "$T/metrics" nettrail_events_lost_total reason=ringbuf_full)
		qf=$(metric_value "$T/metrics" nettrail_events_lost_total reason=queue_full)
		# Values checked before arithmetic: "none" there would end run-all (set -u).
		[[ "$stored$rb$qf" =~ ^[0-9]+$ ]] && sum=$((stored + rb + qf)) && [ "$sum" = "$n" ] && break
		sleep 0.1
	done
	expect_eq "$sum" "$n" "stored ($stored) + lost ($rb, $qf) = attempts"
	[[ "$rb$qf" =~ ^[0-9]+$ ]] && [ $((rb + qf)) -ge 1 ] || fail "loss was not forced: $rb, $qf"
	expect_eq "$(metric_value "$T/metrics" nettrail_connect_attempts_total scope=flood proto=udp)" "$stored" \
		"attempts counted = stored (lost ones are counted lost only)"
	promtool check metrics <"$T/metrics" >"$T/promtool.out" 2>&1
	expect_eq "$?|$(cat "$T/promtool.out")" "0|" "promtool check metrics"
	stop_agent
	rmdir "$svc"
	expect_eq "$(q "$DB" "select count(*) from connections;
		select group_concat(events) from (select events from events_lost
		where reason in ('events_lost_ringbuf', 'events_lost_queue') order by reason desc)")" "$stored
$rb,$qf" "the database agrees"
}
