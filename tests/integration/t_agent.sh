# The long-running agent, and `nettrail run` through it.

# Starts an agent on $DB with extra arguments; waits until it watches. Its pid in AGENT.
start_agent() {
	"$NETTRAIL" agent --db "$DB" "$@" 2>"$T/agent.log" &
	AGENT=$!
	BG_PIDS+=("$AGENT")
	wait_for "$T/agent.log" "watching|error" || fail "agent did not start"
	grep -q error "$T/agent.log" && fail "agent: $(cat "$T/agent.log")"
}

stop_agent() {
	kill -TERM "$AGENT"
	wait "$AGENT"
	AGENT_RC=$?
}

test_agent_records_run() {
	serve_tcp 18101
	start_agent
	"$NETTRAIL" run --scope deploy -- "$PY" "$NETUTIL" connect 127.0.0.1 18101 2>"$T/report"
	expect_eq "$?" 0 "run through the agent"
	expect_match "$(cat "$T/report")" "recording through the running agent" "run found the agent"
	# The report is printed only once the agent has committed the run's events.
	expect_match "$(cat "$T/report")" "deploy +- +tcp +127.0.0.1 +18101 +1 " "report row"
	expect_eq "$(q "$DB" "select r.mode, c.scope, c.port from connections c join runs r on r.id = c.run_id")" \
		"agent|deploy|18101" "stored by the agent"
	# A second run through the same agent, whose command fails: still recorded, status kept.
	"$NETTRAIL" run --scope deploy -- sh -c "$PY $NETUTIL connect 127.0.0.1 18104; exit 5" 2>"$T/report2"
	expect_eq "$?" 5 "exit status through the agent"
	expect_match "$(cat "$T/report2")" "deploy +- +tcp +127.0.0.1 +18104 +1 " "second report row"
	expect_eq "$(q "$DB" "select group_concat(exit_status) from runs")" "0,5" "runs"
	[ -d "$CG2/nettrail" ] || fail "a run removed the runs root the agent watches"
	stop_agent
	expect_eq "$AGENT_RC" 0 "clean stop"
	expect_match "$(cat "$T/agent.log")" "stopped: 2 events stored" "shutdown summary"
	[ -e "$CG2/nettrail" ] && fail "runs root left behind by the agent"
	true
}

test_run_with_other_runtime_dir_keeps_agents_root() {
	# The runs root is one per host: a `run` that does not see this agent (another runtime
	# directory) must not remove the root the agent's hooks are on when it finishes.
	serve_tcp 18120
	start_agent
	NETTRAIL_RUNTIME_DIR="$T/other-run" "$NETTRAIL" run --no-report --db "$T/other.db" -- true
	expect_eq "$?" 0 "embedded run beside the agent"
	[ -d "$CG2/nettrail" ] || fail "a run with another runtime directory removed the agent's runs root"
	"$NETTRAIL" run --scope after -- "$PY" "$NETUTIL" connect 127.0.0.1 18120 2>"$T/report"
	expect_eq "$(q "$DB" "select scope, port from connections")" "after|18120" "later run still recorded"
	expect_eq "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9874/readyz)" 200 "ready"
	stop_agent
	[ -e "$CG2/nettrail" ] && fail "runs root left behind by the agent"
	true
}

test_agent_notices_its_root_removed() {
	# Removed by hand, the root takes the hooks with it: the agent says so and is not ready.
	start_agent
	rmdir "$CG2/nettrail" || fail "rmdir the runs root"
	wait_for "$T/agent.log" "runs root .* was removed" 60 || fail "no error logged"
	expect_eq "$(curl -s -o "$T/body" -w '%{http_code}' http://127.0.0.1:9874/readyz)" 503 "not ready"
	expect_match "$(cat "$T/body")" "runs root cgroup was removed" "why"
	stop_agent
	expect_eq "$AGENT_RC" 0 "clean stop"
}

test_agent_watches_a_service_cgroup() {
	local svc="$CG2/nettrail-test-svc-$$"
	mkdir "$svc"
	start_agent --watch "$svc:billing"
	# A process inside the service's cgroup, and one outside it.
	sh -c "echo \$\$ > $svc/cgroup.procs; exec $PY $NETUTIL connect 127.0.0.1 18102" >/dev/null
	"$PY" "$NETUTIL" connect 127.0.0.1 18103 >/dev/null
	stop_agent
	rmdir "$svc"
	expect_eq "$(q "$DB" "select scope, port, run_id is null from connections")" "billing|18102|1" "only the service's connect"
	expect_eq "$(q "$DB" "select path from cgroups")" "$svc" "cgroup path"
}

test_second_agent_refused() {
	start_agent
	"$NETTRAIL" agent --db "$T/other.db" 2>"$T/second.log"
	expect_eq "$?" 1 "second agent exit status"
	expect_match "$(cat "$T/second.log")" "another nettrail agent is running on this host \\(database $DB\\)" "message"
	"$NETTRAIL" run --db "$T/other.db" -- true 2>"$T/run.log"
	expect_eq "$?" 1 "run with another database than the agent's"
	expect_match "$(cat "$T/run.log")" "an agent is running with database" "message"
	stop_agent
}

test_agent_drains_on_sigterm() {
	# Everything sent before SIGTERM is stored or counted lost: nothing vanishes.
	local svc="$CG2/nettrail-test-drain-$$" n=5000 rows lost
	mkdir "$svc"
	start_agent --watch "$svc:drain"
	sh -c "echo \$\$ > $svc/cgroup.procs; exec $PY $NETUTIL udp-flood 127.0.0.1 30000 $n" >/dev/null
	stop_agent
	rmdir "$svc"
	rows=$(q "$DB" "select count(*) from connections where scope = 'drain'")
	lost=$(q "$DB" "select coalesce(sum(events), 0) from events_lost")
	expect_eq "$rows|$lost" "$n|0" "stored|lost at the default sizes"
	# Zero is a claim only if the counters were recorded: every loss reason has its row.
	expect_eq "$(q "$DB" "select count(distinct reason) from events_lost where source like 'agent:%'")" 5 \
		"loss counters recorded"
	expect_eq "$(q "$DB" "select max(value) from stats where name = 'events_stored' and source like 'agent:%'")" \
		"$n" "events_stored counter"
	expect_eq "$AGENT_RC" 0 "exit status"
}

test_agent_leaves_embedded_runs_alone() {
	# A run that loaded its own programs before the agent started keeps recording itself;
	# the agent must not record its events a second time.
	serve_tcp 18105
	"$NETTRAIL" run --scope early --db "$DB" -- sh -c \
		"touch $T/started; while [ ! -e $T/go ]; do sleep 0.05; done; $PY $NETUTIL connect 127.0.0.1 18105" \
		2>"$T/report" &
	local run=$!
	wait_for_file "$T/started"
	start_agent
	expect_match "$(cat "$T/agent.log")" "1 running .nettrail run.s record themselves" "agent saw the run"
	touch "$T/go"
	wait $run
	expect_eq "$?" 0 "embedded run"
	# A run started now goes through the agent, and is recorded once too.
	"$NETTRAIL" run --scope late -- "$PY" "$NETUTIL" connect 127.0.0.1 18105 2>/dev/null
	stop_agent
	expect_eq "$(q "$DB" "select r.scope, r.mode, count(*) from connections c join runs r on r.id = c.run_id group by r.id order by r.id")" \
		"early|embedded|1
late|agent|1" "one row per connect"
	[ -z "$(ls "$NETTRAIL_RUNTIME_DIR/embedded" 2>/dev/null)" ] || fail "registrations left behind"
}

test_agent_takes_over_a_dead_embedded_run() {
	# An embedded run killed while its command goes on: the agent, which had left the run's
	# cgroup to it, records the command from then on.
	serve_tcp 18106
	"$NETTRAIL" run --scope orphan --db "$DB" -- sh -c \
		"echo \$\$ > $T/cmdpid; while [ ! -e $T/go ]; do sleep 0.05; done; $PY $NETUTIL connect 127.0.0.1 18106; touch $T/done" \
		2>/dev/null &
	local run=$!
	wait_for_file "$T/cmdpid"
	start_agent
	kill -KILL "$run"
	wait "$run" 2>/dev/null
	wait_for "$T/agent.log" "has ended; the agent records it now" 100 || fail "agent did not take over"
	touch "$T/go"
	wait_for_file "$T/done"
	stop_agent
	expect_eq "$(q "$DB" "select r.scope, r.mode, c.port from connections c join runs r on r.id = c.run_id")" \
		"orphan|embedded|18106" "the orphaned command's connect, under its run"
	local cg
	cg=$(q "$DB" "select cgroup from runs where scope = 'orphan'")
	rmdir "$cg" "$(dirname "$cg")" 2>/dev/null
	true
}

test_idle_agent_writes_nothing() {
	# On a database host an idle agent must not keep writing: no event, no write.
	start_agent
	sleep 0.5 # the first counters are written at the first tick
	local before after
	before=$(stat -c '%n %y' "$DB" "$DB-wal" 2>/dev/null)
	sleep 2
	after=$(stat -c '%n %y' "$DB" "$DB-wal" 2>/dev/null)
	expect_eq "$after" "$before" "database files untouched while idle"
	stop_agent
}

test_relative_database_path() {
	# An agent started with a relative --db, and runs started elsewhere, use one file.
	mkdir -p "$T/a" "$T/b"
	(cd "$T/a" && exec "$NETTRAIL" agent --db rel.db 2>"$T/agent.log") &
	AGENT=$!
	BG_PIDS+=("$AGENT")
	wait_for "$T/agent.log" "watching|error" || fail "agent did not start"
	(cd "$T/b" && "$NETTRAIL" run --scope rel -- "$PY" "$NETUTIL" udp-connect 127.0.0.1 18107 2>"$T/r1.log")
	expect_match "$(cat "$T/r1.log")" "database $T/a/rel.db" "run found the agent's database"
	(cd "$T/a" && "$NETTRAIL" run --db rel.db --scope rel -- true 2>"$T/r2.log")
	expect_eq "$?" 0 "--db naming the agent's file relatively"
	(cd "$T/b" && "$NETTRAIL" run --db ../a/rel.db --scope rel -- true 2>"$T/r3.log")
	expect_eq "$?" 0 "--db naming it by another path"
	stop_agent
	[ -e "$T/b/rel.db" ] && fail "a second database was created"
	expect_eq "$(q "$T/a/rel.db" "select count(*) from runs; select r.scope || ':' || c.port from connections c join runs r on r.id = c.run_id")" \
		"3
rel:18107" "runs and connection in the agent's database"
}

test_agent_keeps_what_a_run_left_behind() {
	# A run that leaves a daemon behind: the agent records it under the run, survives a
	# SIGHUP, and removes the run's cgroup once the daemon is gone.
	serve_tcp 18108
	start_agent
	"$NETTRAIL" run --scope bg -- sh -c \
		"setsid sh -c 'while [ ! -e $T/go ]; do sleep 0.05; done; $PY $NETUTIL connect 127.0.0.1 18108 >/dev/null; touch $T/done' &" \
		2>"$T/report"
	expect_match "$(cat "$T/report")" "left behind stay in .*the agent records them" "warning"
	local cg
	cg=$(q "$DB" "select cgroup from runs where scope = 'bg'")
	[ -d "$cg" ] || fail "the run's cgroup should stay while its daemon lives"
	kill -HUP "$AGENT"
	touch "$T/go"
	wait_for_file "$T/done"
	for _ in $(seq 60); do [ -d "$cg" ] || break; sleep 0.1; done
	[ -d "$cg" ] && fail "the run's cgroup was not removed once empty"
	stop_agent
	expect_eq "$AGENT_RC" 0 "the agent survived SIGHUP and stopped cleanly"
	expect_eq "$(q "$DB" "select r.scope, c.port from connections c join runs r on r.id = c.run_id")" \
		"bg|18108" "the daemon's connect, under its run"
}

test_prune_under_a_running_agent() {
	# A process the agent knows has its rows pruned, then connects again: its new row must
	# name it, not a stale id (the agent forgets what prune may have deleted).
	local svc="$CG2/nettrail-test-prune-$$"
	mkdir "$svc"
	start_agent --watch "$svc:svc"
	sh -c "echo \$\$ > $svc/cgroup.procs; exec $PY $NETUTIL connect-wait-connect 127.0.0.1 18109 18110 $T/go" >/dev/null &
	local p=$!
	for _ in $(seq 100); do [ "$(q "$DB" "select count(*) from connections")" = 1 ] && break; sleep 0.05; done
	local d40=$((40 * 86400 * 1000000000))
	q "$DB" "update connections set time_ns = time_ns - $d40; update processes set first_seen_ns = first_seen_ns - $d40;
		update cgroups set first_seen_ns = first_seen_ns - $d40"
	expect_match "$("$NETTRAIL" prune --db "$DB" --older-than 30d)" "^deleted 1 connections, 0 DNS queries, 1 processes, 0 runs, 1 cgroups" "prune"
	sleep 0.3 # the writer looks for a prune every 100 ms
	touch "$T/go"
	wait $p
	stop_agent
	rmdir "$svc"
	expect_eq "$(q "$DB" "select c.port, p.cmdline like '%connect-wait-connect 127.0.0.1 18109 18110%' from connections c join processes p on p.id = c.process_id")" \
		"18110|1" "the second connect names its process"
	expect_eq "$(q "$DB" "select count(*) from connections c left join processes p on p.id = c.process_id where p.id is null")" 0 \
		"no connection names a deleted process"
	expect_eq "$(q "$DB" "select count(*) from cgroups")" 1 "the cgroup is recorded again"
}

test_stale_sync_request_is_ignored() {
	# A run killed while it waited for the agent leaves its request behind: the agent must
	# see that nobody waits on it, remove it, and stay idle.
	mkdir -p "$NETTRAIL_RUNTIME_DIR"
	touch "$NETTRAIL_RUNTIME_DIR/sync-999999"
	start_agent
	sleep 0.5
	local before after
	before=$(stat -c '%n %y' "$DB" "$DB-wal" 2>/dev/null)
	sleep 1.5
	after=$(stat -c '%n %y' "$DB" "$DB-wal" 2>/dev/null)
	expect_eq "$after" "$before" "database files untouched"
	[ -e "$NETTRAIL_RUNTIME_DIR/sync-999999" ] && fail "stale request not removed"
	stop_agent
}
